/*
 * backup: the engine-agnostic half of taking a snapshot (see backup.h).
 *
 * Checks free space against the driver's estimate, opens the snapshot
 * writer, fills in what every engine records (engine, server version,
 * redacted source URL) and lets the engine's driver write its entries,
 * the schema revision first, read inside the driver's own transaction
 * (backup_set_revision): read before it, a migration that another operator
 * committed in between would be in the snapshot under the revision before
 * it.  The writer makes the result durable.
 */
#include <stdlib.h>
#include <string.h>

#include "backup.h"
#include "fsutil.h"
#include "version.h"
#include "xalloc.h"

/* One line per engine: adding an engine's backup is adding its driver here. */
static const struct backup_driver *const drivers[] = {
	&backup_sqlite_driver,
	&backup_pg_driver,
};

const struct backup_driver *backup_find_driver(const struct engine *e)
{
	for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
		if (!strcmp(drivers[i]->engine, e->ops->name))
			return drivers[i];
	return NULL;
}

void backup_result_release(struct backup_result *r)
{
	free(r->path);
	r->path = NULL;
	free(r->check);
	r->check = NULL;
	r->sha256[0] = '\0';
	r->bytes = 0;
}

void backup_newer_version(const char *v, const char **best)
{
	if (v && (!*best || ver_cmp(v, *best) > 0))
		*best = v;
}

int backup_set_revision(struct engine *e, struct snap_writer *w, const struct backup_opts *opts,
			struct sm_error *err)
{
	struct eng_rows rows = ENG_ROWS_INIT;
	const char *best = NULL;
	int exists = 0;

	if (opts && opts->revision) {
		snap_set_revision(w, opts->revision);
		return 0;
	}
	if (e->ops->table_exists(e, "safe_migrate_versions", &exists, err) < 0)
		return -1;
	if (exists &&
	    e->ops->query(e, "SELECT version FROM safe_migrate_versions", 0, NULL, &rows, err) < 0) {
		rows_release(&rows);
		return -1;
	}
	for (size_t i = 0; i < rows.nrows; i++)
		backup_newer_version(rows_get(&rows, i, 0), &best);
	snap_set_revision(w, best);
	rows_release(&rows);
	return 0;
}

int backup_take(struct engine *e, const char *backup_dir, const char *name,
		const struct backup_opts *opts, struct backup_result *out, struct sm_error *err)
{
	static const struct backup_opts no_opts;
	struct backup_opts o;
	const struct backup_driver *d = backup_find_driver(e);
	struct snap_writer *w = NULL;
	struct strbuf version = STRBUF_INIT;
	struct engine_identity id;
	struct snap_write_opts wo;
	struct sm_error ignored = SM_ERROR_INIT;
	uint64_t need = 0;
	int ret = -1;

	memset(out, 0, sizeof(*out));
	o = opts ? *opts : no_opts;
	o.check_result = &out->check;
	opts = &o;
	if (!d)
		return err_set(err, ERR_FAIL, "snapshots of %s databases are not supported in this "
			       "build", e->ops->display_name);
	if (fs_mkdirs(backup_dir, 0700, err) < 0)
		return -1;
	if (d->estimate(e, &need, err) < 0)
		goto out;
	if (!opts->output && !opts->use_output_fd && snap_check_space(backup_dir, need, err) < 0)
		goto out;
	if (opts->output && !fs_exists(opts->output)) {
		/* a new output file: its own directory needs the room */
		char *odir = fs_dirname(opts->output);
		int rc = snap_check_space(odir, need, err);

		free(odir);
		if (rc < 0)
			goto out;
	}
	if (e->ops->server_version(e, &version, err) < 0)
		goto out;
	memset(&wo, 0, sizeof(wo));
	wo.fd = opts->output_fd;
	wo.use_fd = opts->use_output_fd;
	wo.output = opts->output;
	wo.level = opts->level;
	wo.has_level = opts->has_level;
	if (snap_writer_open_opts(backup_dir, name, &wo, &w, err) < 0)
		goto out;
	if (opts->manifest)
		snap_writer_keep_manifest(w, opts->manifest);
	snap_set_engine(w, e->ops->name, version.buf);
	snap_set_source(w, e->url.redacted);
	/* without an identity (no privilege to read it) the snapshot is still
	 * good; an in-place restore then cannot check where it came from */
	if (e->ops->identity(e, &id, &ignored) == 0)
		snap_set_source_identity(w, id.key);
	snap_writer_set_interrupt(w, opts->interrupted);
	if (d->take(e, w, opts, err) < 0)
		goto out;
	/* a signal after the last block: still nothing is published */
	if (opts->interrupted && *opts->interrupted)
		goto out;
	ret = snap_writer_commit(w, &out->path, out->sha256, &out->bytes, err);
	w = NULL;
out:
	if (ret < 0) {
		free(out->check);
		out->check = NULL;
	}
	snap_writer_abort(w);
	if (ret < 0 && opts->interrupted && *opts->interrupted)
		err_set(err, ERR_INTERRUPTED, "interrupted; no snapshot was written");
	sb_release(&version);
	return ret;
}

void backup_summary_release(struct backup_summary *s)
{
	cJSON_Delete(s->row_counts);
	s->row_counts = NULL;
	cJSON_Delete(s->table_sha256);
	s->table_sha256 = NULL;
	s->schema_sha256[0] = '\0';
}

int backup_describe(struct engine *e, const cJSON *extra, struct backup_summary *out,
		    struct sm_error *err)
{
	const struct backup_driver *d = backup_find_driver(e);

	if (!d || !d->describe)
		return 0;
	return d->describe(e, extra, out, err);
}

const char *backup_content_differs(const cJSON *extra, const struct backup_summary *got)
{
	const cJSON *want = cJSON_GetObjectItemCaseSensitive(extra, "table_sha256"), *t;

	if (!cJSON_IsObject(want) || !got->table_sha256)
		return NULL;
	cJSON_ArrayForEach(t, want) {
		const char *have = cJSON_GetStringValue(
			cJSON_GetObjectItemCaseSensitive(got->table_sha256, t->string));

		if (!cJSON_IsString(t) || !have || strcmp(have, t->valuestring))
			return t->string;
	}
	return NULL;
}
