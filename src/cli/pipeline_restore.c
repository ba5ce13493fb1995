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

/* 1 when the len bytes at p are a line that another session wrote during
 * the run (see ENGINE_OUTSIDE_THEIRS). */
static int line_theirs(const char *p, size_t len)
{
	size_t n = strlen(ENGINE_OUTSIDE_THEIRS);

	return len >= n && !memcmp(p + len - n, ENGINE_OUTSIDE_THEIRS, n);
}

/* The length of the object a line names: up to its first ": ". */
static size_t line_object(const char *p, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++)
		if (p[i] == ':' && p[i + 1] == ' ')
			return i;
	return len;
}

/* 1 when lines holds a line another session wrote about the object of the
 * len bytes at p. */
static int object_theirs(const char *lines, const char *p, size_t len)
{
	size_t obj = line_object(p, len);

	for (const char *q = lines; *q;) {
		const char *nl = strchr(q, '\n');
		size_t qlen = nl ? (size_t)(nl - q) : strlen(q);

		if (line_theirs(q, qlen) && line_object(q, qlen) == obj && !memcmp(q, p, obj))
			return 1;
		q += qlen + (nl ? 1 : 0);
	}
	return 0;
}

/* Appends each line of a that b does not hold, after "MARK ": to theirs
 * when now (the state after the run) says another session changed its
 * object, else to out. */
static void changes_split(const char *a, const char *b, const char *mark, const char *now,
			  struct strbuf *out, struct strbuf *theirs)
{
	for (const char *p = a; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		if (len && !lines_contain(b, p, len))
			sb_addf(object_theirs(now, p, len) ? theirs : out, "%s %.*s\n", mark,
				(int)len, p);
		p += len + (nl ? 1 : 0);
	}
}

int guard_outside_changes(const char *before, struct engine *e, struct strbuf *out,
			  struct strbuf *theirs, struct sm_error *err)
{
	struct strbuf now = STRBUF_INIT;

	if (!before || !e->ops->outside_state)
		return 0;
	if (e->ops->outside_state(e, &now, err) < 0) {
		sb_release(&now);
		return -1;
	}
	changes_split(now.buf, before, "+", now.buf, out, theirs);
	changes_split(before, now.buf, "-", now.buf, out, theirs);
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
