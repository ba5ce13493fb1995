/*
 * pipeline_restore: the pipeline's decisions around an automatic restore
 * (see pipeline_restore.h).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "history.h"
#include "pipeline_restore.h"
#include "xalloc.h"

int guard_policy_stop(struct sm_error *err)
{
	const char *v = opt.on_concurrent_writes;

	if (!v || !strcmp(v, "restore"))
		return 0;
	if (!strcmp(v, "stop"))
		return 1;
	return err_set(err, ERR_USAGE, "--on-concurrent-writes takes 'restore' or 'stop', not '%s'",
		       v);
}

int guard_start(struct restore_guard *g, struct engine *e, int count_writes,
		struct sm_error *err)
{
	struct strbuf sb = STRBUF_INIT;

	guard_release(g);
	if (e->ops->user_schemas) {
		if (e->ops->user_schemas(e, &sb, err) < 0) {
			sb_release(&sb);
			return -1;
		}
		g->schemas = sb_detach(&sb);
	}
	if (e->ops->outside_state) {
		if (e->ops->outside_state(e, &sb, err) < 0) {
			sb_release(&sb);
			return -1;
		}
		g->outside = sb_detach(&sb);
	}
	if (count_writes && e->ops->writes_mark && e->ops->writes_mark(e, &g->mark, err) < 0)
		return -1;
	return 0;
}

void guard_release(struct restore_guard *g)
{
	free(g->mark);
	free(g->schemas);
	free(g->outside);
	g->mark = NULL;
	g->schemas = NULL;
	g->outside = NULL;
}

int guard_foreign_writes(const struct restore_guard *g, struct engine *e, struct strbuf *out,
			 struct sm_error *err)
{
	if (!g->mark || !e->ops->writes_since)
		return 0;
	return e->ops->writes_since(e, g->mark, out, err);
}

/* Appends each line of a that b does not hold, after "MARK " (mark NULL:
 * as it is). */
static void lines_missing(const char *a, const char *b, const char *mark, struct strbuf *out)
{
	for (const char *p = a; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		if (len && !lines_contain(b, p, len))
			sb_addf(out, "%s%s%.*s\n", mark ? mark : "", mark ? " " : "", (int)len, p);
		p += len + (nl ? 1 : 0);
	}
}

int guard_outside_changes(const char *before, struct engine *e, struct strbuf *out,
			  struct sm_error *err)
{
	struct strbuf now = STRBUF_INIT;

	if (!before || !e->ops->outside_state)
		return 0;
	if (e->ops->outside_state(e, &now, err) < 0) {
		sb_release(&now);
		return -1;
	}
	lines_missing(now.buf, before, "+", out);
	lines_missing(before, now.buf, "-", out);
	sb_release(&now);
	return 0;
}

int guard_new_schemas(const struct restore_guard *g, struct engine *e, struct strbuf *out,
		      struct sm_error *err)
{
	struct strbuf now = STRBUF_INIT;

	if (!g->schemas || !e->ops->user_schemas)
		return 0;
	if (e->ops->user_schemas(e, &now, err) < 0) {
		sb_release(&now);
		return -1;
	}
	lines_missing(now.buf, g->schemas, NULL, out);
	sb_release(&now);
	return 0;
}

int guard_version_absent(struct engine *e, const char *version)
{
	struct sm_error ignored = SM_ERROR_INIT;
	const char *const params[] = { version };
	char *n = NULL;
	int absent;

	if (e->in_tx ||
	    engine_scalar(e, "SELECT count(*) FROM " HIST_TABLE " WHERE version = $1", 1, params,
			  &n, &ignored) < 0)
		return 0;
	absent = n && !strcmp(n, "0");
	free(n);
	return absent;
}

static volatile sig_atomic_t n_signals, cancel;
static struct engine *volatile watched;
static struct sigaction old_int, old_term;

static void on_restore_signal(int sig)
{
	static const char msg[] =
		"safe-migrate: a restore is running: the database is being put back. Interrupt "
		"again to cancel it (the database then stays as the failed run left it)\n";

	(void)sig;
	if (++n_signals == 1) {
		ssize_t ignored = write(STDERR_FILENO, msg, sizeof(msg) - 1);
		(void)ignored;
		return;
	}
	cancel = 1;
	if (watched)
		watched->ops->interrupt(watched);
}

void restore_signals_begin(void)
{
	struct sigaction sa;

	n_signals = 0;
	cancel = 0;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_restore_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
}

void restore_signals_end(void)
{
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	watched = NULL;
}

volatile sig_atomic_t *restore_signals_cancel(void)
{
	return &cancel;
}

void restore_watch(struct engine *e)
{
	watched = e;
}
