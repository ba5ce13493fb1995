/*
 * impact: per-statement lock, rewrite and blocking-window measurement of a
 * rehearsal (see impact.h).
 */
#include "impact.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "impact_impl.h"
#include "lint.h"
#include "xalloc.h"

long long impact_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

#define MS(us) ((double)(us) / 1000.0)

static const struct impact_driver *const drivers[] = { &impact_sqlite_driver, &impact_pg_driver };

const char *impact_blocks_name(enum impact_blocks b)
{
	switch (b) {
	case IMPACT_READS: return "reads";
	case IMPACT_WRITES: return "writes";
	case IMPACT_DDL: return "ddl";
	case IMPACT_NONE: break;
	}
	return "none";
}

enum impact_blocks impact_pg_blocks(const char *mode)
{
	if (!strcmp(mode, "AccessExclusiveLock"))
		return IMPACT_READS;
	if (!strcmp(mode, "ExclusiveLock") || !strcmp(mode, "ShareRowExclusiveLock") ||
	    !strcmp(mode, "ShareLock"))
		return IMPACT_WRITES;
	return IMPACT_DDL;
}

struct impact_rel *impact_add_rel(struct impact_stmt *s, const char *name, const char *kind,
				  const char *mode)
{
	struct impact_rel *r;

	ALLOC_GROW(s->rels, s->n_rels + 1, s->alloc);
	r = &s->rels[s->n_rels++];
	memset(r, 0, sizeof(*r));
	r->name = xstrdup(name);
	r->kind = kind;
	r->mode = mode ? xstrdup(mode) : NULL;
	r->blocks = IMPACT_NONE;
	r->bytes = -1;
	r->rows = -1;
	r->held_us = -1;
	r->waited_us = -1;
	return r;
}

void impact_add_object(struct impact_stmt *s, int created, const char *what)
{
	if (created) {
		ALLOC_GROW(s->created, s->n_created + 1, s->created_alloc);
		s->created[s->n_created++] = xstrdup(what);
	} else {
		ALLOC_GROW(s->dropped, s->n_dropped + 1, s->dropped_alloc);
		s->dropped[s->n_dropped++] = xstrdup(what);
	}
}

void impact_diff_objects(struct impact_stmt *s, const struct eng_rows *before,
			 const struct eng_rows *after, int ours_col)
{
	size_t i = 0, j = 0;

	while (i < before->nrows || j < after->nrows) {
		int c = i == before->nrows ? 1 : j == after->nrows ? -1
			: strcmp(rows_get(before, i, 0), rows_get(after, j, 0));
		if (c < 0)
			impact_add_object(s, 0, rows_get(before, i++, 1));
		else if (c > 0 && ours_col >= 0 && strcmp(rows_get(after, j, ours_col), "t"))
			j++;
		else if (c > 0)
			impact_add_object(s, 1, rows_get(after, j++, 1));
		else
			i++, j++;
	}
}

/* The statement on one line, at most 60 characters. */
static char *one_line(const char *text, size_t len)
{
	struct strbuf sb = STRBUF_INIT;
	int space = 0;

	while (len && (text[len - 1] == ';' || text[len - 1] == ' ' || text[len - 1] == '\n' ||
		       text[len - 1] == '\t' || text[len - 1] == '\r'))
		len--;
	for (size_t i = 0; i < len && sb.len < 60; i++) {
		char c = text[i];
		if (c == '\n' || c == '\t' || c == '\r' || c == ' ') {
			space = 1;
			continue;
		}
		if (space && sb.len)
			sb_addch(&sb, ' ');
		space = 0;
		sb_addch(&sb, c);
	}
	if (sb.len >= 60 && len > 60)
		sb_adds(&sb, "...");
	return sb_detach(&sb);
}

static void close_mig(struct impact *imp)
{
	if (imp->n_migs && imp->n_stmts) {
		const struct impact_stmt *last = &imp->stmts[imp->n_stmts - 1];
		imp->migs[imp->n_migs - 1].end_us = last->start_us + last->us;
	}
}

static void obs_before(void *ud, struct engine *e, const char *text, size_t len,
		       const struct exec_source *src, int line)
{
	struct impact *imp = ud;
	const char *file = src ? src->file : NULL;
	struct impact_stmt *s;
	int new_mig;
	struct sm_error err = SM_ERROR_INIT;
	long long enter = impact_now_us(), t = enter - imp->t0 - imp->overhead;

	imp->open = 0;
	if (!file)
		return; /* the tool's own bookkeeping (the version table), not a migration */
	new_mig = !imp->n_migs || strcmp(imp->migs[imp->n_migs - 1].file, file) != 0;
	if (new_mig) {
		struct impact_mig *m;
		close_mig(imp);
		ALLOC_GROW(imp->migs, imp->n_migs + 1, imp->migs_alloc);
		m = &imp->migs[imp->n_migs++];
		m->file = xstrdup(file);
		m->start_us = t;
		m->end_us = m->start_us;
		m->in_tx = e->in_tx;
	}
	if (imp->drv->before(imp->dstate, e, new_mig, &err) < 0 && !imp->err.msg[0])
		imp->err = err;
	ALLOC_GROW(imp->stmts, imp->n_stmts + 1, imp->stmts_alloc);
	s = &imp->stmts[imp->n_stmts++];
	memset(s, 0, sizeof(*s));
	s->mig = imp->n_migs - 1;
	s->line = line;
	s->text = one_line(text, len);
	s->sql = xstrndup(text, len);
	s->in_tx = e->in_tx;
	s->start_us = t;
	imp->open = 1;
	imp->overhead += impact_now_us() - enter;
}

static void obs_after(void *ud, struct engine *e, int ok)
{
	struct impact *imp = ud;
	struct impact_stmt *s;
	struct sm_error err = SM_ERROR_INIT;
	long long enter = impact_now_us();

	if (!imp->open)
		return;
	imp->open = 0;
	s = &imp->stmts[imp->n_stmts - 1];
	s->us = enter - imp->t0 - imp->overhead - s->start_us;
	s->ok = ok;
	s->observed = s->in_tx;
	if (ok && imp->drv->after(imp->dstate, e, s, &err) < 0 && !imp->err.msg[0])
		imp->err = err;
	else if (!ok && imp->drv->failed)
		imp->drv->failed(imp->dstate, s);
	imp->overhead += impact_now_us() - enter;
}

int impact_new(struct impact **out, struct engine *e, const char *rehearsal,
	       struct sm_error *err)
{
	struct impact *imp;
	const struct impact_driver *d = NULL;

	for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
		if (!strcmp(drivers[i]->engine, e->ops->name))
			d = drivers[i];
	if (!d)
		return err_set(err, ERR_FAIL, "no impact measurement for %s", e->ops->display_name);
	imp = xcalloc(1, sizeof(*imp));
	imp->drv = d;
	imp->dstate = d->state_new();
	imp->rehearsal = rehearsal;
	imp->obs.ud = imp;
	imp->obs.before = obs_before;
	imp->obs.after = obs_after;
	imp->t0 = impact_now_us();
	*out = imp;
	return 0;
}

const struct stmt_observer *impact_observer(struct impact *imp)
{
	return &imp->obs;
}

void impact_free(struct impact *imp)
{
	if (!imp)
		return;
	imp->drv->state_free(imp->dstate);
	for (size_t i = 0; i < imp->n_stmts; i++) {
		struct impact_stmt *s = &imp->stmts[i];
		for (size_t k = 0; k < s->n_rels; k++) {
			free(s->rels[k].name);
			free(s->rels[k].mode);
		}
		free(s->rels);
		for (size_t k = 0; k < s->n_created; k++)
			free(s->created[k]);
		for (size_t k = 0; k < s->n_dropped; k++)
			free(s->dropped[k]);
		free(s->created);
		free(s->dropped);
		free(s->text);
		free(s->sql);
	}
	for (size_t i = 0; i < imp->n_migs; i++)
		free(imp->migs[i].file);
	free(imp->stmts);
	free(imp->migs);
	free(imp->wins);
	for (size_t i = 0; i < imp->n_lints; i++)
		free(imp->lints[i].rule);
	free(imp->lints);
	free(imp);
}

static struct impact_window *find_win(struct impact *imp, size_t mig, const char *rel)
{
	for (size_t i = 0; i < imp->n_wins; i++)
		if (imp->wins[i].mig == mig && !strcmp(imp->wins[i].rel, rel))
			return &imp->wins[i];
	return NULL;
}

/* The lint's findings about one statement as it ran. */
static int lint_stmt(const struct impact *imp, const struct impact_stmt *s,
		     struct finding_list *fl)
{
	struct sm_error err = SM_ERROR_INIT;

	return s->sql ? lint_sql(imp->drv->engine, s->sql, imp->migs[s->mig].file, s->line,
				 s->in_tx, fl, &err) : -1;
}

/* What a lint rule claims a statement does, as far as the measurement can
 * tell: a rewrite, or a lock on a table blocking at least `blocks`. */
static const struct {
	const char *rule;
	int rewrite;
	enum impact_blocks blocks;
} claims[] = {
	{ "column-type-change", 1, IMPACT_NONE },
	{ "vacuum-full", 1, IMPACT_NONE },
	{ "create-index-non-concurrently", 0, IMPACT_WRITES },
	{ "drop-index-non-concurrently", 0, IMPACT_READS },
	{ "set-not-null", 0, IMPACT_READS },
	{ "constraint-without-not-valid", 0, IMPACT_WRITES },
};

static const char *blocks_said(enum impact_blocks b)
{
	switch (b) {
	case IMPACT_READS: return "blocks reads";
	case IMPACT_WRITES: return "blocks writes";
	case IMPACT_DDL: return "blocks ddl";
	case IMPACT_NONE: break;
	}
	return "no new lock";
}

static void check_lint(struct impact *imp, size_t i)
{
	const struct impact_stmt *s = &imp->stmts[i];
	struct finding_list fl = FINDING_LIST_INIT;
	enum impact_blocks got = IMPACT_NONE;
	int rewrote = 0;

	/* unobserved or failed: nothing to compare */
	if (!s->ok || !s->observed || lint_stmt(imp, s, &fl) < 0) {
		finding_list_release(&fl);
		return;
	}
	for (size_t k = 0; k < s->n_rels; k++) {
		if (s->rels[k].rewritten)
			rewrote = 1;
		/* what the statement's own new lock blocks (the transaction may hold a
		 * stronger one from before); an index is locked with its table: the
		 * table's lock is the claim */
		if (strcmp(s->rels[k].kind, "index") != 0 && s->rels[k].new_blocks > got)
			got = s->rels[k].new_blocks;
	}
	for (size_t f = 0; f < fl.n; f++)
		for (size_t c = 0; c < sizeof(claims) / sizeof(claims[0]); c++) {
			struct impact_lint *l;
			if (strcmp(fl.items[f].check_or_rule, claims[c].rule) != 0)
				continue;
			ALLOC_GROW(imp->lints, imp->n_lints + 1, imp->lints_alloc);
			l = &imp->lints[imp->n_lints++];
			l->stmt = i;
			l->rule = xstrdup(claims[c].rule);
			if (claims[c].rewrite) {
				l->said = "rewrite";
				l->measured = rewrote ? "rewrite" : "no rewrite";
				l->verdict = rewrote;
			} else {
				l->said = blocks_said(claims[c].blocks);
				l->measured = blocks_said(got);
				l->verdict = got >= claims[c].blocks ? 1 : got == IMPACT_NONE ? -1 : 0;
			}
		}
	finding_list_release(&fl);
}

void impact_end(struct impact *imp)
{
	close_mig(imp);
	for (size_t i = 0; i < imp->n_lints; i++)
		free(imp->lints[i].rule);
	imp->n_lints = 0;
	for (size_t i = 0; i < imp->n_stmts; i++)
		check_lint(imp, i);
	imp->n_wins = 0;
	for (size_t i = 0; i < imp->n_stmts; i++) {
		const struct impact_stmt *s = &imp->stmts[i];
		const struct impact_mig *m = &imp->migs[s->mig];

		for (size_t k = 0; k < s->n_rels; k++) {
			struct impact_rel *r = &s->rels[k];
			struct impact_window *w;

			/* a transaction holds its locks to its end */
			if (s->in_tx && r->new_lock)
				r->held_us = m->end_us - s->start_us;
			if (r->blocks < IMPACT_WRITES)
				continue;
			w = s->in_tx ? find_win(imp, s->mig, r->name) : NULL;
			if (w) {
				if (r->blocks > w->blocks)
					w->blocks = r->blocks;
				if (r->bytes > w->bytes)
					w->bytes = r->bytes;
				continue;
			}
			ALLOC_GROW(imp->wins, imp->n_wins + 1, imp->wins_alloc);
			w = &imp->wins[imp->n_wins++];
			w->rel = r->name;
			w->kind = r->kind;
			w->mig = s->mig;
			w->stmt = i;
			w->blocks = r->blocks;
			/* a transaction holds its locks to its end; outside one, the
			 * statement releases them when it ends */
			w->us = s->in_tx ? m->end_us - s->start_us : s->us;
			w->existing = r->existing;
			w->bytes = r->bytes;
			w->rows = r->rows;
		}
	}
}

void impact_human_size(long long b, char *buf, size_t n)
{
	static const char *const units[] = { "B", "kB", "MB", "GB", "TB" };
	double v = (double)b;
	int u = 0;

	if (b < 0) {
		snprintf(buf, n, "?");
		return;
	}
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

const struct impact_window *impact_longest(const struct impact *imp, enum impact_blocks min)
{
	const struct impact_window *best = NULL;

	/* what the application already uses first: a relation the migration
	 * creates blocks nobody */
	for (int pass = 0; pass < 2 && !best; pass++)
		for (size_t i = 0; i < imp->n_wins; i++)
			if (imp->wins[i].blocks >= min && (pass || imp->wins[i].existing) &&
			    (!best || imp->wins[i].us > best->us))
				best = &imp->wins[i];
	return best;
}

void impact_render_text(const struct impact *imp, struct strbuf *out)
{
	const struct impact_window *w = impact_longest(imp, IMPACT_WRITES);
	int any_rewrite = 0;
	char sz[32];

	sb_addf(out, "impact (%s rehearsal%s):\n", imp->rehearsal,
		!strcmp(imp->rehearsal, "in-place")
			? ": the live database, rolled back; these locks were really held on it "
			  "while the dry run ran"
			: ": a restored snapshot, durations are those of the real data");
	sb_addf(out, "  %-26s %8s  %-22s %-15s %-6s %9s %9s %-7s %s\n", "MIGRATION:LINE", "MS",
		"RELATION", "LOCK", "BLOCKS", "SIZE", "ROWS", "REWRITE", "STATEMENT");
	for (size_t i = 0; i < imp->n_stmts; i++) {
		const struct impact_stmt *s = &imp->stmts[i];
		char where[64];
		const char *base = strrchr(imp->migs[s->mig].file, '/');

		snprintf(where, sizeof(where), "%.20s:%d",
			 base ? base + 1 : imp->migs[s->mig].file, s->line);
		if (!s->n_rels) {
			sb_addf(out, "  %-26s %8.1f  %-22s %-15s %-6s %9s %9s %-7s %s\n", where, MS(s->us),
				!s->ok ? "(failed)" : s->observed ? "(no new lock)"
				: "(not observed)", "", "", "", "", "", s->text);
			continue;
		}
		for (size_t k = 0; k < s->n_rels; k++) {
			const struct impact_rel *r = &s->rels[k];
			char rows[32];
			const char *mode = r->mode ? r->mode : "-";
			size_t ml = strlen(mode);

			impact_human_size(r->bytes, sz, sizeof(sz));
			if (r->rows < 0)
				snprintf(rows, sizeof(rows), "?");
			else
				snprintf(rows, sizeof(rows), "%lld", r->rows);
			/* "AccessExclusiveLock" -> "AccessExclusive" */
			if (ml > 4 && !strcmp(mode + ml - 4, "Lock"))
				ml -= 4;
			if (k)
				sb_addf(out, "  %-26s %8s  ", "", "");
			else
				sb_addf(out, "  %-26s %8.1f  ", where, MS(s->us));
			sb_addf(out, "%-22.22s %-15.*s %-6s %9s %9s %-7s %s%s\n", r->name,
				(int)(ml > 15 ? 15 : ml), mode, impact_blocks_name(r->blocks), sz, rows,
				r->rewritten ? "yes" : "-", k || s->ok ? "" : "(failed) ",
				k ? "" : s->text);
			if (r->rewritten)
				any_rewrite = 1;
		}
	}
	for (size_t i = 0; i < imp->n_stmts; i++)
		for (size_t k = 0; k < imp->stmts[i].n_rels; k++) {
			const struct impact_rel *r = &imp->stmts[i].rels[k];
			if (r->waited_us <= 0)
				continue;
			sb_addf(out, "  waited: %s line %d waited %.1f ms for %s on %s (another "
				"session held a conflicting lock), ", imp->migs[imp->stmts[i].mig].file,
				imp->stmts[i].line, MS(r->waited_us), r->mode, r->name);
			if (imp->stmts[i].ok)
				sb_addf(out, "then held it %.1f ms\n", MS(r->held_us));
			else
				sb_adds(out, "then failed\n");
		}
	for (size_t i = 0; i < imp->n_stmts; i++)
		if (!imp->stmts[i].observed && !imp->stmts[i].n_rels && imp->stmts[i].ok) {
			sb_adds(out, "  (not observed): ran outside a transaction (transaction:false), "
				"where its locks end with the statement, and the lock watcher could not "
				"watch it\n");
			break;
		}
	for (size_t m = 0; m < imp->n_migs; m++) {
		const char *sep = "";
		for (int created = 1; created >= 0; created--) {
			const char *verb = created ? "created" : "dropped";
			for (size_t i = 0; i < imp->n_stmts; i++) {
				const struct impact_stmt *s = &imp->stmts[i];
				size_t n = created ? s->n_created : s->n_dropped;
				if (s->mig != m)
					continue;
				for (size_t k = 0; k < n; k++) {
					if (!*sep)
						sb_addf(out, "  objects: %s: ", imp->migs[m].file);
					sb_addf(out, "%s%s %s", sep, verb, created ? s->created[k]
										 : s->dropped[k]);
					sep = ", ";
				}
			}
		}
		if (*sep)
			sb_adds(out, "\n");
	}
	if (!strcmp(imp->rehearsal, "in-place") && imp->n_migs > 1)
		sb_adds(out, "  note: the in-place dry run runs all migrations in one transaction; a "
			"lock an earlier migration already holds is not seen again (--rehearse-url "
			"measures each migration's own transaction)\n");
	if (w)
		sb_addf(out, "  longest write-blocking window: %s, %.1f ms (blocks %s; from %s line "
			"%d to the end of its %s)\n", w->rel, MS(w->us),
			impact_blocks_name(w->blocks), imp->migs[w->mig].file,
			imp->stmts[w->stmt].line,
			imp->stmts[w->stmt].in_tx ? "transaction" : "statement (no transaction)");
	else
		sb_adds(out, "  no statement blocked writes\n");
	for (size_t i = 0; i < imp->n_stmts; i++)
		for (size_t k = 0; k < imp->stmts[i].n_rels; k++) {
			const struct impact_rel *r = &imp->stmts[i].rels[k];
			if (!r->rewritten)
				continue;
			impact_human_size(r->bytes, sz, sizeof(sz));
			sb_addf(out, "  rewrite: %s %s (%s, %lld rows) by %s line %d\n", r->kind,
				r->name, sz, r->rows, imp->migs[imp->stmts[i].mig].file,
				imp->stmts[i].line);
		}
	if (!any_rewrite)
		sb_adds(out, "  no table or index was rewritten\n");
	for (size_t i = 0; i < imp->n_lints; i++) {
		const struct impact_lint *l = &imp->lints[i];
		const struct impact_stmt *s = &imp->stmts[l->stmt];
		sb_addf(out, "  lint %s: %s line %d: lint said %s, measured: %s (%s)\n", l->rule,
			imp->migs[s->mig].file, s->line, l->said, l->measured,
			impact_lint_verdict(l));
	}
}

const char *impact_lint_verdict(const struct impact_lint *l)
{
	return l->verdict > 0 ? "confirmed" : l->verdict == 0 ? "CONTRADICTED"
			      : "not measurable: an earlier statement already held the lock";
}

/* The statement's created and dropped objects: as arrays of js (when not
 * NULL), and appended to created and dropped (when not NULL). */
static void add_objects(cJSON *js, const struct impact_stmt *s, cJSON *created, cJSON *dropped)
{
	if (js) {
		created = cJSON_AddArrayToObject(js, "created");
		dropped = cJSON_AddArrayToObject(js, "dropped");
	}
	for (size_t k = 0; k < s->n_created; k++)
		cJSON_AddItemToArray(created, cJSON_CreateString(s->created[k]));
	for (size_t k = 0; k < s->n_dropped; k++)
		cJSON_AddItemToArray(dropped, cJSON_CreateString(s->dropped[k]));
}

/* us in milliseconds, or null when unknown (< 0). */
static void add_ms(cJSON *o, const char *key, long long us)
{
	if (us < 0)
		cJSON_AddNullToObject(o, key);
	else
		cJSON_AddNumberToObject(o, key, MS(us));
}

/* full: with every statement; else the migrations, windows and rewrites. */
static cJSON *to_json(const struct impact *imp, int full)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *migs = cJSON_AddArrayToObject(o, "migrations");
	cJSON *wins = cJSON_AddArrayToObject(o, "windows");
	cJSON *rw = cJSON_AddArrayToObject(o, "rewrites"), *lints;
	const struct impact_window *w = impact_longest(imp, IMPACT_WRITES);

	cJSON_AddStringToObject(o, "rehearsal", imp->rehearsal);
	/* in place and in the real run the locks were held on the live database */
	cJSON_AddBoolToObject(o, "live_locks_held", strcmp(imp->rehearsal, "rehearse-url") != 0);
	if (imp->err.msg[0])
		cJSON_AddStringToObject(o, "measurement_error", imp->err.msg);
	cJSON_AddNumberToObject(o, "measurement_overhead_ms", MS(imp->overhead));
	for (size_t m = 0; m < imp->n_migs; m++) {
		cJSON *jm = cJSON_CreateObject(), *stmts, *mc, *md;
		cJSON_AddStringToObject(jm, "file", imp->migs[m].file);
		mc = cJSON_AddArrayToObject(jm, "created");
		md = cJSON_AddArrayToObject(jm, "dropped");
		cJSON_AddBoolToObject(jm, "in_transaction", imp->migs[m].in_tx);
		cJSON_AddNumberToObject(jm, "start_ms", MS(imp->migs[m].start_us));
		cJSON_AddNumberToObject(jm, "end_ms", MS(imp->migs[m].end_us));
		cJSON_AddNumberToObject(jm, "ms", MS(imp->migs[m].end_us - imp->migs[m].start_us));
		stmts = full ? cJSON_AddArrayToObject(jm, "statements") : NULL;
		for (size_t i = 0; i < imp->n_stmts; i++) {
			const struct impact_stmt *s = &imp->stmts[i];
			cJSON *js, *rels;
			if (s->mig != m)
				continue;
			js = cJSON_CreateObject();
			cJSON_AddNumberToObject(js, "line", s->line);
			cJSON_AddStringToObject(js, "statement", s->text);
			cJSON_AddNumberToObject(js, "start_ms", MS(s->start_us));
			cJSON_AddNumberToObject(js, "ms", MS(s->us));
			cJSON_AddBoolToObject(js, "ok", s->ok);
			cJSON_AddBoolToObject(js, "in_transaction", s->in_tx);
			cJSON_AddBoolToObject(js, "locks_observed", s->observed);
			add_objects(js, s, NULL, NULL);
			add_objects(NULL, s, mc, md);
			rels = cJSON_AddArrayToObject(js, "relations");
			for (size_t k = 0; k < s->n_rels; k++) {
				const struct impact_rel *r = &s->rels[k];
				cJSON *jr = cJSON_CreateObject();
				cJSON_AddStringToObject(jr, "name", r->name);
				cJSON_AddStringToObject(jr, "kind", r->kind);
				if (r->mode)
					cJSON_AddStringToObject(jr, "lock", r->mode);
				else
					cJSON_AddNullToObject(jr, "lock");
				cJSON_AddStringToObject(jr, "blocks", impact_blocks_name(r->blocks));
				if (r->new_lock)
					cJSON_AddStringToObject(jr, "new_lock", r->new_lock);
				else
					cJSON_AddNullToObject(jr, "new_lock");
				cJSON_AddBoolToObject(jr, "rewritten", r->rewritten);
				cJSON_AddBoolToObject(jr, "existing", r->existing);
				cJSON_AddNumberToObject(jr, "bytes", (double)r->bytes);
				cJSON_AddNumberToObject(jr, "rows", (double)r->rows);
				add_ms(jr, "held_ms", r->held_us);
				add_ms(jr, "waited_ms", r->waited_us);
				cJSON_AddItemToArray(rels, jr);
				if (r->rewritten) {
					cJSON *x = cJSON_CreateObject();
					cJSON_AddStringToObject(x, "relation", r->name);
					cJSON_AddStringToObject(x, "kind", r->kind);
					cJSON_AddNumberToObject(x, "bytes", (double)r->bytes);
					cJSON_AddNumberToObject(x, "rows", (double)r->rows);
					cJSON_AddStringToObject(x, "migration", imp->migs[m].file);
					cJSON_AddNumberToObject(x, "line", s->line);
					cJSON_AddItemToArray(rw, x);
				}
			}
			if (stmts)
				cJSON_AddItemToArray(stmts, js);
			else
				cJSON_Delete(js);
		}
		cJSON_AddItemToArray(migs, jm);
	}
	for (size_t i = 0; i < imp->n_wins; i++) {
		const struct impact_window *x = &imp->wins[i];
		cJSON *jw = cJSON_CreateObject();
		cJSON_AddStringToObject(jw, "relation", x->rel);
		cJSON_AddStringToObject(jw, "kind", x->kind);
		cJSON_AddStringToObject(jw, "migration", imp->migs[x->mig].file);
		cJSON_AddNumberToObject(jw, "line", imp->stmts[x->stmt].line);
		cJSON_AddStringToObject(jw, "statement", imp->stmts[x->stmt].text);
		cJSON_AddStringToObject(jw, "blocks", impact_blocks_name(x->blocks));
		cJSON_AddNumberToObject(jw, "ms", MS(x->us));
		cJSON_AddBoolToObject(jw, "existing", x->existing);
		cJSON_AddNumberToObject(jw, "bytes", (double)x->bytes);
		cJSON_AddNumberToObject(jw, "rows", (double)x->rows);
		cJSON_AddItemToArray(wins, jw);
	}
	lints = cJSON_AddArrayToObject(o, "lint_checks");
	for (size_t i = 0; i < imp->n_lints; i++) {
		const struct impact_lint *x = &imp->lints[i];
		cJSON *jl = cJSON_CreateObject();
		cJSON_AddStringToObject(jl, "rule", x->rule);
		cJSON_AddStringToObject(jl, "migration", imp->migs[imp->stmts[x->stmt].mig].file);
		cJSON_AddNumberToObject(jl, "line", imp->stmts[x->stmt].line);
		cJSON_AddStringToObject(jl, "statement", imp->stmts[x->stmt].text);
		cJSON_AddStringToObject(jl, "lint_said", x->said);
		cJSON_AddStringToObject(jl, "measured", x->measured);
		if (x->verdict < 0)
			cJSON_AddNullToObject(jl, "confirmed");
		else
			cJSON_AddBoolToObject(jl, "confirmed", x->verdict);
		cJSON_AddItemToArray(lints, jl);
	}
	if (w) {
		cJSON *l = cJSON_AddObjectToObject(o, "longest_write_block");
		cJSON_AddStringToObject(l, "relation", w->rel);
		cJSON_AddNumberToObject(l, "ms", MS(w->us));
		cJSON_AddStringToObject(l, "migration", imp->migs[w->mig].file);
	} else {
		cJSON_AddNullToObject(o, "longest_write_block");
	}
	return o;
}

cJSON *impact_to_json(const struct impact *imp)
{
	return to_json(imp, 1);
}

cJSON *impact_to_json_brief(const struct impact *imp)
{
	return to_json(imp, 0);
}

/* Appends the lint's safer alternative for the statement, if it has one
 * (a rule about the statement itself before the generic lock_timeout one). */
static void add_hint(const struct impact *imp, const struct impact_stmt *s, struct strbuf *out)
{
	struct finding_list fl = FINDING_LIST_INIT;
	const char *hint = NULL;

	if (lint_stmt(imp, s, &fl) < 0) {
		finding_list_release(&fl);
		return;
	}
	for (size_t i = 0; i < fl.n; i++) {
		if (!fl.items[i].hint)
			continue;
		if (!hint || strcmp(fl.items[i].check_or_rule, "missing-lock-timeout") != 0)
			hint = fl.items[i].hint;
		if (strcmp(fl.items[i].check_or_rule, "missing-lock-timeout") != 0)
			break;
	}
	if (hint)
		sb_addf(out, "; hint: %s", hint);
	finding_list_release(&fl);
}

int impact_gate(const struct impact *imp, long long max_blocking_ms, long long max_rewrite_bytes,
		struct strbuf *out)
{
	int n = 0;
	char sz[32], lim[32];

	for (size_t i = 0; max_blocking_ms >= 0 && i < imp->n_wins; i++) {
		const struct impact_window *w = &imp->wins[i];
		/* the application writes tables (SQLite: the database); an index
		 * is blocked with its table */
		if (!strcmp(w->kind, "index") || !w->existing || w->bytes == 0 || w->rows == 0 || w->us <= max_blocking_ms * 1000)
			continue;
		sb_addf(out, "%s line %d ('%s') blocks %s to %s for %.1f ms, over --max-blocking "
			"%lld ms", imp->migs[w->mig].file, imp->stmts[w->stmt].line,
			imp->stmts[w->stmt].text, impact_blocks_name(w->blocks), w->rel, MS(w->us),
			max_blocking_ms);
		add_hint(imp, &imp->stmts[w->stmt], out);
		sb_addch(out, '\n');
		n++;
	}
	for (size_t i = 0; max_rewrite_bytes >= 0 && i < imp->n_stmts; i++)
		for (size_t k = 0; k < imp->stmts[i].n_rels; k++) {
			const struct impact_rel *r = &imp->stmts[i].rels[k];
			if (!r->rewritten || r->bytes <= max_rewrite_bytes)
				continue;
			impact_human_size(r->bytes, sz, sizeof(sz));
			impact_human_size(max_rewrite_bytes, lim, sizeof(lim));
			sb_addf(out, "%s line %d ('%s') rewrites %s %s (%s), over --max-rewrite %s",
				imp->migs[imp->stmts[i].mig].file, imp->stmts[i].line,
				imp->stmts[i].text, r->kind, r->name, sz, lim);
			add_hint(imp, &imp->stmts[i], out);
			sb_addch(out, '\n');
			n++;
		}
	return n;
}

int impact_parse_size(const char *text, long long *bytes)
{
	static const struct { const char *unit; double mul; } units[] = {
		{ "", 1 }, { "B", 1 }, { "kB", 1024.0 }, { "KB", 1024.0 }, { "MB", 1048576.0 },
		{ "GB", 1073741824.0 }, { "TB", 1099511627776.0 },
	};
	char *end;
	double v;

	errno = 0;
	v = strtod(text, &end);
	if (errno || end == text || v < 0)
		return -1;
	while (*end == ' ')
		end++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcasecmp(end, units[i].unit)) {
			v *= units[i].mul;
			if (v > 9e18)
				return -1;
			*bytes = (long long)v;
			return 0;
		}
	return -1;
}
