/*
 * sm_label: a security label provider for the tests, loaded into a test
 * cluster's sessions (LOAD, or session_preload_libraries) by absolute path.
 *
 * Stock PostgreSQL registers no label provider (sepgsql needs SELinux), so
 * without one no SECURITY LABEL can be set, and the backup's and restore's
 * handling of labels (pg_seclabels, replayed in post-data) could not be
 * tested.  This one, "smtest", accepts a few fixed labels on any object and
 * refuses every other, so a test can also tell a label that was replayed
 * from one that was not.  It is a test fixture, never installed: the build
 * compiles it without the sanitizers (it runs inside the server).
 */
#include "postgres.h"

#include "commands/seclabel.h"
#include "fmgr.h"

PG_MODULE_MAGIC;

void _PG_init(void);

static void smtest_relabel(const ObjectAddress *object, const char *label)
{
	static const char *const known[] = { "public", "internal", "secret 'quoted'" };

	(void)object;
	/* NULL: the label is being removed */
	if (label == NULL)
		return;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(label, known[i]) == 0)
			return;
	ereport(ERROR, (errcode(ERRCODE_INVALID_NAME),
			errmsg("sm_label: unknown security label \"%s\"", label)));
}

void _PG_init(void)
{
	register_label_provider("smtest", smtest_relabel);
}
