/*
 * plan: target resolution and migration application (see plan.h).
 */
#include "plan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "foreign.h"
#include "version.h"
#include "xalloc.h"

void plan_release(struct plan *p)
{
	free(p->steps);
	memset(p, 0, sizeof(*p));
}

static void plan_add(struct plan *p, const struct migration *m, enum step_dir dir)
{
	ALLOC_GROW(p->steps, p->n + 1, p->alloc);
	p->steps[p->n].m = m;
	p->steps[p->n].dir = dir;
	p->n++;
}

static void push(size_t **arr, size_t *n, size_t v)
{
	*arr = xrealloc(*arr, (*n + 1) * sizeof(**arr));
	(*arr)[(*n)++] = v;
}

void plan_status(const struct migration_set *set, const struct applied_set *applied,
		 struct mig_status *st)
{
	const char *cur = hist_current(applied);

	memset(st, 0, sizeof(*st));
	for (size_t i = 0; i < set->n; i++) {
		long a = hist_index(applied, set->items[i].version);
		if (a < 0) {
			push(&st->pending, &st->n_pending, i);
			if (cur && ver_cmp(set->items[i].version, cur) < 0)
				push(&st->out_of_order, &st->n_out_of_order, i);
		} else if (strcmp(applied->items[a].checksum, set->items[i].checksum)) {
			push(&st->edited, &st->n_edited, i);
		}
	}
	for (size_t i = 0; i < applied->n; i++)
		if (mig_index(set, applied->items[i].version) < 0)
			push(&st->missing, &st->n_missing, i);
}

void plan_status_release(struct mig_status *st)
{
	free(st->pending);
	free(st->edited);
	free(st->missing);
	free(st->out_of_order);
	memset(st, 0, sizeof(*st));
}

int plan_check_consistent(const struct migration_set *set, const struct applied_set *applied,
			  const struct mig_status *st, int allow_out_of_order, struct sm_error *err)
{
	(void)applied;
	if (st->n_edited) {
		const struct migration *m = &set->items[st->edited[0]];
		return err_set(err, ERR_FAIL,
			       "applied migration '%s' (version %s) was edited after it was "
			       "applied (checksum differs)%s; restore the file, or record the "
			       "new text with 'safe-migrate stamp %s'",
			       m->path, m->version, st->n_edited > 1 ? " and others" : "",
			       m->version);
	}
	if (st->n_out_of_order && !allow_out_of_order) {
		struct strbuf names = STRBUF_INIT;
		for (size_t i = 0; i < st->n_out_of_order && i < 5; i++)
			sb_addf(&names, "%s'%s'", i ? ", " : "",
				set->items[st->out_of_order[i]].path);
		err_set(err, ERR_FAIL,
			"pending migration%s %s older than the newest applied version %s (a branch "
			"merged late?); apply with --allow-out-of-order",
			st->n_out_of_order > 1 ? "s" : "", names.buf,
			hist_current(applied) ? hist_current(applied) : "?");
		sb_release(&names);
		return -1;
	}
	return 0;
}

/* Parses "+N" or "-N" with the given sign; returns N > 0 or -1. */
static long parse_relative(const char *t, char sign)
{
	char *end;
	long n;

	if (t[0] != sign || t[1] < '0' || t[1] > '9')
		return -1;
	errno = 0;
	n = strtol(t + 1, &end, 10);
	if (errno || *end || n <= 0)
		return -1;
	return n;
}

static int bad_target(const char *target, const char *what, struct sm_error *err)
{
	return err_set(err, ERR_USAGE, "invalid target '%.100s': expected %s", target, what);
}

int plan_upgrade(const struct migration_set *set, const struct applied_set *applied,
		 const char *target, struct plan *out, struct sm_error *err)
{
	size_t limit = (size_t)-1;
	const char *upto = NULL;
	long n;

	memset(out, 0, sizeof(*out));
	if (!target || !strcmp(target, "head")) {
		/* everything */
	} else if ((n = parse_relative(target, '+')) > 0) {
		limit = (size_t)n;
	} else if (ver_valid(target)) {
		if (mig_index(set, target) < 0)
			return err_set(err, ERR_USAGE, "unknown version '%s': no migration file has it",
				       target);
		upto = target;
	} else {
		return bad_target(target, "head, a version or +N", err);
	}
	for (size_t i = 0; i < set->n && out->n < limit; i++) {
		const struct migration *m = &set->items[i];
		if (upto && ver_cmp(m->version, upto) > 0)
			break;
		if (hist_index(applied, m->version) < 0)
			plan_add(out, m, STEP_UP);
	}
	if (limit != (size_t)-1 && out->n < limit) {
		size_t have = out->n;
		plan_release(out);
		return err_set(err, ERR_USAGE, "cannot upgrade %s: only %zu pending migration%s",
			       target, have, have == 1 ? "" : "s");
	}
	return 0;
}

int plan_downgrade(const struct migration_set *set, const struct applied_set *applied,
		   const char *target, struct plan *out, struct sm_error *err)
{
	size_t count;
	long n;

	memset(out, 0, sizeof(*out));
	if (!target)
		return bad_target("", "-N, a version or base", err);
	if (!strcmp(target, "base")) {
		count = applied->n;
	} else if ((n = parse_relative(target, '-')) > 0) {
		if ((size_t)n > applied->n)
			return err_set(err, ERR_USAGE, "cannot downgrade %s: only %zu applied "
				       "migration%s", target, applied->n, applied->n == 1 ? "" : "s");
		count = (size_t)n;
	} else if (ver_valid(target)) {
		long a = hist_index(applied, target);
		if (a < 0)
			return err_set(err, ERR_USAGE, "version '%s' is not applied; downgrade "
				       "targets an applied version, -N or base", target);
		count = applied->n - (size_t)a - 1;
	} else {
		return bad_target(target, "-N, a version or base", err);
	}
	for (size_t k = 0; k < count; k++) {
		const struct applied *a = &applied->items[applied->n - 1 - k];
		long idx = mig_index(set, a->version);
		const struct migration *m;

		if (idx < 0) {
			plan_release(out);
			return err_set(err, ERR_FAIL, "cannot downgrade version %s: its migration "
				       "file is missing", a->version);
		}
		m = &set->items[idx];
		if (!m->down_sql) {
			plan_release(out);
			return err_set(err, ERR_FAIL,
				       "migration '%s' (version %s) has no down section, so it cannot "
				       "be downgraded by SQL; restore the snapshot taken before it "
				       "('safe-migrate list-backups', then 'safe-migrate restore')",
				       m->path, m->version);
		}
		plan_add(out, m, STEP_DOWN);
	}
	return 0;
}

int plan_stamp_target(const struct migration_set *set, const struct applied_set *applied,
		      const char *target, long *last, struct sm_error *err)
{
	long cur = -1, n;

	/* the current position: the highest set index that is applied */
	for (size_t i = 0; i < set->n; i++)
		if (hist_index(applied, set->items[i].version) >= 0)
			cur = (long)i;
	if (!strcmp(target, "head")) {
		*last = (long)set->n - 1;
	} else if (!strcmp(target, "base")) {
		*last = -1;
	} else if ((n = parse_relative(target, '+')) > 0) {
		if (cur + n >= (long)set->n)
			return err_set(err, ERR_USAGE, "cannot stamp %s: only %ld migration%s after "
				       "the current one", target, (long)set->n - 1 - cur,
				       (long)set->n - 1 - cur == 1 ? "" : "s");
		*last = cur + n;
	} else if ((n = parse_relative(target, '-')) > 0) {
		if (cur - n < -1)
			return err_set(err, ERR_USAGE, "cannot stamp %s: only %ld applied", target,
				       cur + 1);
		*last = cur - n;
	} else if (ver_valid(target)) {
		long idx = mig_index(set, target);
		if (idx < 0)
			return err_set(err, ERR_USAGE, "unknown version '%s': no migration file has it",
				       target);
		*last = idx;
	} else {
		return bad_target(target, "head, base, a version, +N or -N", err);
	}
	return 0;
}

long long plan_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int plan_mirror(struct engine *e, struct foreign_hist *f, const struct foreign_hist **mirror,
		struct sm_error *err)
{
	struct applied_set applied = APPLIED_SET_INIT;
	int ret = -1;

	*mirror = NULL;
	if (foreign_load(e, f, err) < 0 || hist_load(e, &applied, err) < 0)
		goto out;
	if (foreign_in_step(f, &applied))
		*mirror = f;
	ret = 0;
out:
	hist_release(&applied);
	return ret;
}

int plan_record_step(struct engine *e, const struct step *s, long long ms,
		     const struct foreign_hist *mirror, struct sm_error *err)
{
	int up = s->dir == STEP_UP;
	struct applied_set now = APPLIED_SET_INIT;
	int rc;

	if ((up ? hist_record(e, s->m, ms, err) : hist_remove(e, s->m->version, err)) < 0)
		return -1;
	if (!mirror)
		return 0;
	/* golang-migrate's one row goes back to the version before */
	if (!up && hist_load(e, &now, err) < 0)
		return -1;
	rc = foreign_step(e, mirror, s->m, up, up ? NULL : hist_current(&now), err);
	hist_release(&now);
	return rc;
}

/* After a script run outside a transaction of ours (rc: how it went): a
 * transaction it began and did not commit (a statement failed inside its
 * BEGIN, or it has no COMMIT) still holds its locks, on SQLite the write
 * lock on the whole file, and would lock out everything after it, the
 * pipeline's restore included.  It is rolled back here, and err says so. */
static int end_own_tx(struct engine *e, const char *file, int rc, struct sm_error *err)
{
	struct sm_error rerr = SM_ERROR_INIT;
	int rolled_back;
	size_t n;

	if (!e->ops->tx_open(e))
		return 0;
	rolled_back = e->ops->rollback(e, &rerr) == 0;
	if (rc == 0)
		err_set(err, ERR_FAIL, "'%s' left the transaction it began open (a BEGIN "
			"without its COMMIT)", file);
	n = strlen(err->msg);
	if (rolled_back)
		snprintf(err->msg + n, sizeof(err->msg) - n, "; the transaction it began was "
			 "rolled back");
	else
		snprintf(err->msg + n, sizeof(err->msg) - n, "; the transaction it began could not "
			 "be rolled back: %s", rerr.msg);
	return -1;
}

int run_step(struct engine *e, const struct step *s, const struct foreign_hist *mirror,
	     long long *ms, struct sm_error *err)
{
	const struct migration *m = s->m;
	int up = s->dir == STEP_UP;
	const char *sql = up ? m->up_sql : m->down_sql;
	struct exec_source src = { up ? m->path : m->down_path, up ? m->up_line : m->down_line };
	int no_tx = up ? m->up_no_tx : m->down_no_tx;
	int own_tx = !e->in_tx;
	long long t0 = plan_now_ms();

	if (no_tx && !own_tx)
		return err_set(err, ERR_FAIL, "'%s' is marked transaction:false and cannot run inside "
			       "the caller's transaction", up ? m->path : m->down_path);
	if (no_tx) {
		/* statements that cannot run in a transaction (CREATE INDEX
		 * CONCURRENTLY): run them bare, then record in a short transaction */
		int rc;

		e->script_committed = 0;
		rc = e->ops->exec_script(e, sql, &src, err);

		if (end_own_tx(e, up ? m->path : m->down_path, rc, err) < 0 || rc < 0)
			return -1;
		*ms = plan_now_ms() - t0;
		if (e->ops->begin(e, err) < 0)
			return -1;
		if (plan_record_step(e, s, *ms, mirror, err) < 0 || e->ops->commit(e, err) < 0) {
			struct sm_error ignored = SM_ERROR_INIT;
			e->ops->rollback(e, &ignored);
			return -1;
		}
		return 0;
	}
	if (own_tx && e->ops->begin(e, err) < 0)
		return -1;
	if (e->ops->exec_script(e, sql, &src, err) < 0)
		goto fail;
	*ms = plan_now_ms() - t0;
	if (plan_record_step(e, s, *ms, mirror, err) < 0)
		goto fail;
	if (own_tx && e->ops->commit(e, err) < 0)
		goto fail;
	return 0;
fail:
	if (own_tx) {
		struct sm_error ignored = SM_ERROR_INIT;
		e->ops->rollback(e, &ignored);
	}
	return -1;
}

int apply_plan(struct engine *e, const struct plan *p, const struct apply_hooks *hooks,
	       volatile sig_atomic_t *stop, size_t *n_done, struct sm_error *err)
{
	struct foreign_hist f = FOREIGN_HIST_INIT;
	const struct foreign_hist *mirror = NULL;
	int ret = -1;

	*n_done = 0;
	if (!p->n)
		return 0;
	if (hist_ensure(e, err) < 0 || plan_mirror(e, &f, &mirror, err) < 0)
		goto out;
	for (size_t i = 0; i < p->n; i++) {
		const struct step *s = &p->steps[i];
		long long t0 = plan_now_ms(), ms = 0;
		int rc;

		if (stop && *stop) {
			err_set(err, ERR_INTERRUPTED, "interrupted before version %s", s->m->version);
			goto out;
		}
		if (hooks && hooks->on_start)
			hooks->on_start(hooks->ud, s);
		rc = run_step(e, s, mirror, &ms, err);
		if (rc == 0)
			ms = plan_now_ms() - t0;
		if (rc < 0 && stop && *stop)
			err->kind = ERR_INTERRUPTED;
		if (hooks && hooks->on_done)
			hooks->on_done(hooks->ud, s, ms, rc == 0, err);
		if (rc < 0)
			goto out;
		(*n_done)++;
	}
	ret = 0;
out:
	foreign_release(&f);
	return ret;
}

void plan_render_sql(const struct engine_ops *ops, const char *label,
		     const struct migration_set *set, size_t from, size_t to, struct strbuf *out)
{
	char when[32];
	char *user = hist_os_user();

	hist_now_iso(when);
	sb_addf(out, "-- safe-migrate offline upgrade script (%s)\n\n",
		label ? label : ops->display_name);
	sb_addf(out,
		"CREATE TABLE IF NOT EXISTS %s (\n  version TEXT PRIMARY KEY,\n"
		"  description TEXT NOT NULL,\n  checksum TEXT NOT NULL,\n"
		"  applied_at TEXT NOT NULL,\n  applied_by TEXT NOT NULL,\n"
		"  execution_ms BIGINT NOT NULL\n);\n\n", HIST_TABLE);
	for (size_t i = from; i < to && i < set->n; i++) {
		const struct migration *m = &set->items[i];
		size_t len = strlen(m->up_sql);

		sb_addf(out, "-- Running upgrade to %s", m->version);
		if (*m->description)
			sb_addf(out, " (%s)", m->description);
		sb_addf(out, " from '%s'%s\n", m->path,
			m->up_no_tx ? ", outside a transaction (transaction:false)" : "");
		if (!m->up_no_tx)
			sb_adds(out, "BEGIN;\n");
		sb_add(out, m->up_sql, len);
		if (len && m->up_sql[len - 1] != '\n')
			sb_addch(out, '\n');
		{
			/* the statement separator matters when the migration's last
			 * statement lacks one */
			size_t k = out->len;
			while (k && (out->buf[k - 1] == '\n' || out->buf[k - 1] == ' '))
				k--;
			if (k && out->buf[k - 1] != ';')
				sb_adds(out, ";\n");
		}
		sb_addf(out, "INSERT INTO %s (version, description, checksum, applied_at, "
			"applied_by, execution_ms) VALUES (", HIST_TABLE);
		ops->quote_literal(out, m->version);
		sb_adds(out, ", ");
		ops->quote_literal(out, m->description);
		sb_adds(out, ", ");
		ops->quote_literal(out, m->checksum);
		sb_adds(out, ", ");
		ops->quote_literal(out, when);
		sb_adds(out, ", ");
		ops->quote_literal(out, user);
		sb_adds(out, ", 0);\n");
		if (!m->up_no_tx)
			sb_adds(out, "COMMIT;\n");
		sb_addch(out, '\n');
	}
	free(user);
}
