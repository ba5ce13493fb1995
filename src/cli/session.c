/*
 * session: opening the migration state for a command (see session.h).
 */
#include "session.h"

#include "lint.h"

#include <signal.h>
#include <string.h>

static struct engine *watched;

static void on_signal(int sig)
{
	(void)sig;
	cli_interrupted = 1;
	if (watched)
		watched->ops->interrupt(watched);
}

void signals_watch(struct engine *e)
{
	struct sigaction sa;

	watched = e;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

void signals_unwatch(void)
{
	watched = NULL;
}

int session_open(struct session *s, struct cmd_ctx *ctx, unsigned flags, struct sm_error *err)
{
	memset(s, 0, sizeof(*s));
	if (!(flags & SESSION_NO_MIGRATIONS) &&
	    mig_load(&s->set, ctx->mig_dirs, ctx->n_mig_dirs, err) < 0)
		return -1;
	if (engine_open(&s->e, &ctx->url, (flags & SESSION_CREATE) ? ENGINE_CREATE : 0, err) < 0)
		goto fail;
	lint_find_no_tx(&s->set, s->e->ops);
	if (s->e->ops->set_timeouts(s->e, opt.stmt_lock_timeout_ms, opt.statement_timeout_ms,
				    err) < 0)
		goto fail;
	if ((flags & SESSION_LOCK) && s->e->ops->lock(s->e, opt.lock_timeout_ms, err) < 0)
		goto fail;
	if (session_reload(s, err) < 0)
		goto fail;
	return 0;
fail:
	session_close(s);
	return -1;
}

int session_reload(struct session *s, struct sm_error *err)
{
	hist_release(&s->applied);
	plan_status_release(&s->st);
	if (hist_load(s->e, &s->applied, err) < 0)
		return -1;
	plan_status(&s->set, &s->applied, &s->st);
	return 0;
}

void session_close(struct session *s)
{
	signals_unwatch();
	plan_status_release(&s->st);
	hist_release(&s->applied);
	engine_close(s->e);
	mig_set_release(&s->set);
	memset(s, 0, sizeof(*s));
}
