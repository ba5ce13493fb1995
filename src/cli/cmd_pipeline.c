/*
 * cmd_pipeline: the safe-migrate pipeline (`safe-migrate`, `run -- COMMAND`),
 * `recover` after a killed run, and `history --runs`.
 *
 * Both entry points run one table of phases (phases[] below): plan,
 * safety-check, preflight, capture, snapshot (and verify), journal, apply,
 * validate, record; a struct pipeline_kind says what differs (the plan, the
 * preflight, how the change is applied).  On a failure in apply or validate
 * the snapshot this run took (checked by its SHA-256) is restored and the
 * pre-run state (schema, row counts, table contents) is confirmed before the run is
 * reported as "restored" (exit 5).  If the restore fails, exit 6 names the
 * snapshot and the exact command to restore it by hand, and the journal
 * stays unfinished.  The run journal (journal.h), keyed to the database's
 * identity and read only under the migration lock, is written durably before
 * the first change, so a SIGKILL is caught by the next run on that database.
 * After apply the run checks that the database at the URL is still the one
 * it opened: a wrapped command may rename a new SQLite file over it, which
 * the connection and the journal then follow (follow_database).
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "child.h"
#include "fsutil.h"
#include "hash.h"
#include "history.h"
#include "impact_report.h"
#include "journal.h"
#include "pipeline.h"
#include "pipeline_restore.h"
#include "strbuf.h"
#include "xalloc.h"

struct pipeline_kind;

/* One run of the pipeline: what the phases share. */
struct run {
	struct cmd_ctx *ctx;
	const struct pipeline_kind *kind;
	struct session *s;   /* open and locked, borrowed */
	struct plan p;       /* safe-migrate: the steps to apply */
	size_t done;         /* steps applied */
	struct strbuf cmdline; /* run: the command as printed */
	const char *what;    /* the change in messages: "the migration" or "'CMD'" */
	int check_schema;    /* validate against --expected */
	int interrupted;     /* apply ended by SIGINT/SIGTERM */
	int never_started;   /* run: the command could not be started */
	int hist_existed;    /* the version tables existed before the run */
	int code;            /* exit code once the run is over */
	struct engine_identity id; /* the database's: keys the journal */
	int gone;            /* no database was at the URL after apply */
	char sha[HASH_HEX_LEN + 1]; /* the snapshot's SHA-256 ("" without one) */
	struct journal j;
	int journaled;       /* the journal file exists for this run */
	int marked;          /* and its mark in the database (journal_mark) */
	cJSON *phases;       /* ctx->json's "phases" array, or NULL */
	cJSON *applied;      /* ctx->json's "applied" array, or NULL */
	cJSON *findings;     /* ctx->json's "findings" array, or NULL */
	char *snapshot;      /* owned */
	const char *outcome;
	struct db_state before;
	int have_before;
	struct restore_guard guard; /* pre-run facts for an automatic restore */
	cJSON *snap_rows;           /* the snapshot manifest's row_counts, owned */
	cJSON *impact;              /* safe-migrate: the measured locks and rewrites, owned */
	cJSON *snap_extra;          /* its extra (table checksums), owned */
};

/* What differs between the two entry points; the phases are shared. */
struct pipeline_kind {
	const char *command; /* the journal's "command" */
	/* The change goes through the run's own connection (our migrations):
	 * its writes can be told from other sessions', and a migration that
	 * failed in its own transaction may have changed nothing.  0 for a
	 * command that writes through connections of its own. */
	int own_writes;
	/* Before the safety checks: what to do (the plan); may finish the run. */
	int (*plan)(struct run *r);
	/* After the safety checks, before the pre-run state is captured: may
	 * finish the run (a dry run, a refused --no-backup). */
	int (*preflight)(struct run *r);
	/* Makes the change: 0 on success; -1 after printing what failed (sets
	 * r->interrupted when a signal ended it). */
	int (*apply)(struct run *r);
	/* The "done:" line. */
	void (*report_done)(const struct run *r);
};

/* Zeroes r; run_init starts it, run_release frees what run_finish leaves. */
static void run_prepare(struct run *r)
{
	static const struct plan no_plan = PLAN_INIT;
	static const struct strbuf empty = STRBUF_INIT;

	memset(r, 0, sizeof(*r));
	r->p = no_plan;
	r->cmdline = empty;
}

static void run_release(struct run *r)
{
	plan_release(&r->p);
	sb_release(&r->cmdline);
}

static void run_init(struct run *r, struct cmd_ctx *ctx, const char *command)
{
	r->ctx = ctx;
	journal_start(&r->j, ctx->backup_dir, &r->id, command, ctx->url.redacted);
	if (ctx->json) {
		cJSON_AddNullToObject(ctx->json, "outcome");
		cJSON_AddNullToObject(ctx->json, "snapshot");
		r->applied = cJSON_AddArrayToObject(ctx->json, "applied");
		r->phases = cJSON_AddArrayToObject(ctx->json, "phases");
		r->findings = cJSON_AddArrayToObject(ctx->json, "findings");
	}
}

static void phase_done(struct run *r, const char *name, long long t0, int ok)
{
	long long ms = plan_now_ms() - t0;

	journal_add_phase(&r->j, name, ms, ok);
	if (r->phases) {
		cJSON *p = cJSON_CreateObject();
		cJSON_AddStringToObject(p, "name", name);
		cJSON_AddNumberToObject(p, "ms", (double)ms);
		cJSON_AddBoolToObject(p, "ok", ok);
		cJSON_AddItemToArray(r->phases, p);
	}
	info("phase %-12s %s (%lld ms)", name, ok ? "ok" : "FAILED", ms);
}

/* Records the outcome in the JSON output, the journal and the runs log. */
static int run_finish(struct run *r, const char *outcome, int code)
{
	struct sm_error jerr = SM_ERROR_INIT;
	cJSON *extra = cJSON_CreateObject();

	r->outcome = outcome;
	if (r->ctx->json) {
		cJSON_ReplaceItemInObject(r->ctx->json, "outcome", cJSON_CreateString(outcome));
		cJSON_ReplaceItemInObject(r->ctx->json, "snapshot",
					  r->snapshot ? cJSON_CreateString(r->snapshot)
						      : cJSON_CreateNull());
		cJSON_AddNumberToObject(r->ctx->json, "exit_code", code);
	}
	if (r->applied)
		cJSON_AddItemToObject(extra, "applied", cJSON_Duplicate(r->applied, 1));
	if (r->impact) {
		if (r->ctx->json)
			cJSON_AddItemToObject(r->ctx->json, "impact", cJSON_Duplicate(r->impact, 1));
		cJSON_AddItemToObject(extra, "impact", r->impact);
		r->impact = NULL;
	}
	cJSON_AddNumberToObject(extra, "exit_code", code);
	/* the mark goes before the journal closes: a kill in between leaves
	 * the journal to say the run is unfinished, never a mark alone */
	if (r->marked && !journal_stays_open(outcome) &&
	    journal_unmark(r->s->e, journal_str(r->j.doc, "run_id", "?"), &jerr) < 0) {
		warning("cannot remove this run's mark from the database (%s); the next run "
			"removes it once it finds the journal closed", jerr.msg);
		err_clear(&jerr);
	}
	if (fs_mkdirs(r->ctx->backup_dir, 0700, &jerr) == 0 &&
	    journal_finish(&r->j, outcome, extra, &jerr) < 0) {
		warning("cannot record the run in the runs log: %s", jerr.msg);
		/* a journal left saying "unfinished" would send the operator to
		 * `recover`, restoring the snapshot over a database that is fine
		 * (only a failed restore needs recover) */
		if (!journal_stays_open(outcome) && journal_drop_own(&r->j, &jerr) < 0)
			warning("%s; the next run will ask for 'safe-migrate recover --discard' "
				"(the database is %s)", jerr.msg,
				!strcmp(outcome, "applied") ? "migrated" : "as it was before the run");
	}
	cJSON_Delete(extra);
	free(r->snapshot);
	r->snapshot = NULL;
	if (r->have_before)
		port_state_release(&r->before);
	guard_release(&r->guard);
	cJSON_Delete(r->snap_rows);
	r->snap_rows = NULL;
	cJSON_Delete(r->snap_extra);
	r->snap_extra = NULL;
	journal_release(&r->j);
	return code;
}

/* Refuses to start while an earlier run on this database never finished.
 * The caller holds the migration lock, so the journal read here is the
 * truth: a run still going would hold the lock, and a run we waited for
 * has written its last word. */
int check_unfinished(struct cmd_ctx *ctx, struct engine *e, struct engine_identity *id)
{
	struct engine_identity own;
	cJSON *doc = NULL;
	char *path = NULL;
	const char *phase;

	if (!id)
		id = &own;
	if (e->ops->identity(e, id, &ctx->err) < 0 ||
	    journal_find(ctx->backup_dir, id, ctx->url.redacted, &path, &doc, &ctx->err) < 0)
		return report_error(ctx, &ctx->err);
	if (!journal_unfinished(doc)) {
		cJSON_Delete(doc);
		free(path);
		if (!journal_find_replaced(ctx->backup_dir, id, &path, &doc)) {
			/* a run killed with another backup directory */
			if (journal_check_marks(e, id, ctx->backup_dir, 0, NULL, &ctx->err) != 0)
				return report_error(ctx, &ctx->err);
			return 0;
		}
		if (journal_command_was_running(doc))
			err_set(&ctx->err, ERR_BLOCKED,
				"an earlier run on %s (%s) was killed while its command '%s' ran, "
				"and the database there was replaced since (identity %s then, %s "
				"now), perhaps by that command; its snapshot is %s. Run "
				"'safe-migrate recover' to restore that snapshot (the database as "
				"it is now is saved first), or 'safe-migrate recover --discard' to "
				"accept the database as it is now", id->label,
				journal_str(doc, "run_id", "?"), journal_str(doc, "command", "?"),
				journal_str(doc, "identity", "?"), id->key,
				journal_str(doc, "snapshot", "(none)"));
		else
			err_set(&ctx->err, ERR_BLOCKED,
				"an earlier run on %s (%s, phase '%s') did not finish, and the "
				"database there was replaced since (identity %s then, %s now); its "
				"snapshot is %s. Check the database, then accept it with "
				"'safe-migrate recover --discard' (which closes the journal '%s')",
				id->label, journal_str(doc, "run_id", "?"),
				journal_str(doc, "phase", "?"), journal_str(doc, "identity", "?"),
				id->key, journal_str(doc, "snapshot", "(none)"), path);
		cJSON_Delete(doc);
		free(path);
		return report_error(ctx, &ctx->err);
	}
	phase = journal_str(doc, "phase", "?");
	err_set(&ctx->err, ERR_BLOCKED,
		"an earlier run on this database (%s, phase '%s'%s) did not finish; its snapshot "
		"is %s (journal '%s'). Run 'safe-migrate recover' to restore that snapshot, or "
		"'safe-migrate recover --discard' to accept the database as it is now",
		journal_str(doc, "run_id", "?"), phase,
		!strcmp(phase, "restore_failed") ? ": its automatic restore failed"
		: !strcmp(phase, "concurrent_writes") ? ": other sessions wrote, it did not restore"
		: "",
		journal_str(doc, "snapshot", "(none: no change had been made)"), path);
	cJSON_Delete(doc);
	free(path);
	return report_error(ctx, &ctx->err);
}

static int phase_safety(struct run *r, struct session *s)
{
	long long t0 = plan_now_ms();
	int failed = port_safety_check(r->ctx, s, r->findings, &r->ctx->err);

	phase_done(r, "safety-check", t0, failed == 0);
	return failed;
}

/* What the check beside the snapshot's copy found (backup_result.check):
 * problems the database had before the run, which the snapshot keeps and a
 * restore gives back; the run's own checks compare with what was there
 * before, so they are not blamed on it. */
static void snapshot_check_findings(struct run *r, const char *check)
{
	struct finding_list l = FINDING_LIST_INIT;
	size_t n = 1; /* lines: one more than the newlines between them */

	if (!check || !strcmp(check, "ok"))
		return;
	for (const char *p = strchr(check, '\n'); p; p = strchr(p + 1, '\n'))
		n++;
	finding_add(&l, FINDING_CHECK, "integrity", LEVEL_WARN,
		    "the run goes on; its checks count only problems it causes", NULL, 0,
		    "the database already fails PRAGMA quick_check (%zu line%s; the snapshot keeps "
		    "it as it is): %.*s", n, n == 1 ? "" : "s", (int)strcspn(check, "\n"), check);
	port_report_findings(&l, r->findings);
	finding_list_release(&l);
}

/* Takes and verifies the snapshot, then journals durably: after this, a
 * killed run is recoverable. */
static int phase_snapshot(struct run *r, struct engine *e)
{
	long long t0 = plan_now_ms();

	struct backup_result res = BACKUP_RESULT_INIT;

	if (port_backup(r->ctx, e, NULL, "snapshot", 1, &res, &r->ctx->err) < 0)
		goto failed;
	free(r->snapshot);
	r->snapshot = res.path;
	res.path = NULL;
	memcpy(r->sha, res.sha256, sizeof(r->sha));
	journal_set_snapshot_sha(&r->j, r->sha);
	snapshot_check_findings(r, res.check);
	/* the baseline's check of the whole file is the one the backup made
	 * of the pages it copied (or, without one, made now) */
	if (port_baseline_add_whole(e, &r->before, res.check, &r->ctx->err) < 0)
		goto failed;
	backup_result_release(&res);
	phase_done(r, "snapshot", t0, 1);
	info("snapshot %s", r->snapshot);
	t0 = plan_now_ms();
	if (port_verify(r->snapshot, &r->snap_rows, &r->snap_extra, &r->ctx->err) < 0) {
		phase_done(r, "verify", t0, 0);
		return -1;
	}
	phase_done(r, "verify", t0, 1);
	return 0;
failed:
	backup_result_release(&res);
	phase_done(r, "snapshot", t0, 0);
	return -1;
}

static int journal_before_change(struct run *r)
{
	if (journal_phase(&r->j, "apply", r->snapshot, &r->ctx->err) < 0) {
		struct sm_error ignored = SM_ERROR_INIT;

		/* the write may have failed after its rename (the directory's
		 * fsync): a journal of this run left on disk would make the
		 * next run demand a recover although nothing changed */
		r->j.written = 1;
		if (journal_drop_own(&r->j, &ignored) < 0)
			warning("cannot remove this run's journal '%s' (%s); nothing was changed, "
				"so 'safe-migrate recover --discard' clears it", r->j.path, ignored.msg);
		r->j.written = 0;
		err_prefix(&r->ctx->err, "cannot write the run journal; nothing was changed");
		return -1;
	}
	r->journaled = 1;
	return 0;
}

/* Looks up table in "name=N\n" text; -1 when absent. */
static long long count_in(const char *counts, const char *table)
{
	size_t n = strlen(table);

	for (const char *p = counts; p && *p;) {
		const char *nl = strchr(p, '\n');

		if (!strncmp(p, table, n) && p[n] == '=')
			return strtoll(p + n + 1, NULL, 10);
		p = nl ? nl + 1 : p + strlen(p);
	}
	return -1;
}

/* Compares the state after a restore with what the restore must produce:
 * the schema before the run, and the row counts the snapshot's manifest
 * recorded (not a count taken before the snapshot: other sessions may have
 * written in between), and the content checksums it recorded per table
 * (an update changes no count).  snap_rows NULL skips counts and contents: other sessions
 * were writing, so counts read now need not match (the PostgreSQL restore
 * checks them against the manifest before it commits; an SQLite restore is
 * the snapshot's checksummed page image). */
static int state_matches(struct engine *e, const struct db_state *before,
			 const cJSON *snap_rows, const cJSON *snap_extra, struct sm_error *err)
{
	struct db_state now;
	const cJSON *t;
	int same;

	memset(&now, 0, sizeof(now));
	if (port_capture(e, &now, err) < 0)
		return 0;
	same = !strcmp(now.schema_text, before->schema_text);
	if (!same) {
		err_set(err, ERR_FAIL, "the database does not match its pre-run state (schema "
			"differs)");
	} else if (snap_rows) {
		cJSON_ArrayForEach(t, snap_rows) {
			long long want = (long long)cJSON_GetNumberValue(t);
			long long got = count_in(now.row_counts, t->string);

			/* the manifest qualifies every table; the schema model
			 * leaves the default schema out */
			if (got < 0 && strchr(t->string, '.'))
				got = count_in(now.row_counts, strchr(t->string, '.') + 1);
			/* tables outside the schema model (the version table) were
			 * compared with the schema already */
			if (got < 0)
				continue;
			if (got != want) {
				err_set(err, ERR_FAIL, "the database does not match the snapshot: table "
					"'%s' has %lld rows, the snapshot %lld", t->string, got, want);
				same = 0;
				break;
			}
		}
	}
	port_state_release(&now);
	if (same && snap_rows && port_content_check(e, snap_extra, err) != 0)
		same = 0;
	return same;
}

/* Does a saved failed state hold anything of what list names?  Not rows
 * in a table the run dropped ("TABLE\tROWS\tdropped"): the table is gone
 * from the failed state too. */
static int foreign_needs_saving(const char *list)
{
	for (const char *p = list; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		const char *tab = memchr(p, '\t', n);

		if (!tab || !memchr(tab + 1, '\t', n - (size_t)(tab + 1 - p)))
			return 1;
		p += n + (nl ? 1 : 0);
	}
	return 0;
}

/* A command for the operator to paste: "safe-migrate", the global options
 * that make it act where this run did (cli_hand_command), and the words
 * given (up to a NULL), each quoted for the shell.  Caller frees. */
static char *hand(const struct cmd_ctx *ctx, const char *const *words)
{
	struct strbuf sb = STRBUF_INIT;

	cli_hand_command(&sb, ctx);
	for (; *words; words++) {
		sb_addch(&sb, ' ');
		sb_add_shell_word(&sb, *words);
	}
	return sb_detach(&sb);
}

/* The command that restores snapshot by hand, with this run's lock
 * timeout, and the options its extra (the manifest's) needs.  Caller frees. */
static char *hand_restore(const struct cmd_ctx *ctx, const char *snapshot, const cJSON *extra)
{
	const char *more = port_hand_restore_options(extra);
	char timeout[32], *abs = fs_absolute(snapshot), *cmd;

	snprintf(timeout, sizeof(timeout), "%lds", (opt.lock_timeout_ms + 999) / 1000);
	cmd = hand(ctx, (const char *const[]){ "--lock-timeout", timeout, "restore", abs, "--yes",
					       *more ? more + 1 : NULL, NULL });
	free(abs);
	return cmd;
}

/* Reports other sessions' writes (text and JSON); the list is
 * "TABLE\tROWS\n", "TABLE\tROWS\tdropped\n" and "OBJECT\tdefinition\n"
 * (engine_ops.writes_since).  saved: the failed state saved with them;
 * restored: the restore went ahead (it did not stop for them), whether it
 * succeeded or not. */
static void report_foreign_writes(struct run *r, const char *list, const char *saved,
				  int restored)
{
	cJSON *o = r->ctx->json ? cJSON_AddObjectToObject(r->ctx->json, "concurrent_writes") : NULL;
	cJSON *tables = o ? cJSON_AddArrayToObject(o, "tables") : NULL;
	cJSON *defs = o ? cJSON_AddArrayToObject(o, "definitions") : NULL;
	/* only rows in tables the run dropped: nothing to save, by design */
	int lost_only = restored && !saved && !foreign_needs_saving(list), lost = 0;

	error_msg("OTHER SESSIONS WROTE TO THE DATABASE AFTER THE SNAPSHOT WAS TAKEN:");
	for (const char *p = list; *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		char *line = xstrndup(p, n);
		char *tab = strchr(line, '\t'), *dropped = NULL;

		if (tab)
			*tab++ = '\0';
		if (tab && (dropped = strchr(tab, '\t')))
			*dropped++ = '\0';
		if (tab && !strcmp(tab, "definition")) {
			/* (a definition is the run's own only when one of its
			 * transactions wrote it: a transaction:false migration's
			 * cannot be told from another session's) */
			error_msg("    %s: created or changed outside the run's transactions "
				  "(by another session, or a transaction:false migration)", line);
			if (defs)
				cJSON_AddItemToArray(defs, cJSON_CreateString(line));
			free(line);
			p += n + (nl ? 1 : 0);
			continue;
		}
		if (!strcmp(line, "*"))
			error_msg("    tables not known: any may have been written (SQLite: the "
				  "database file changed; PostgreSQL: the activity counters are "
				  "off or were reset)");
		else if (dropped && !strcmp(tab, "?"))
			error_msg("    %s: rows other sessions wrote since the snapshot cannot be "
				  "counted (the run dropped the table where its counters could not be "
				  "read): any are LOST (in neither the restored database nor a saved "
				  "state)", line);
		else if (dropped)
			/* the run's DROP discarded them: said, since no saved
			 * state and no restore can bring them back */
			error_msg("    %s: %s row%s inserted, updated or deleted, then the run dropped "
				  "the table: those rows are LOST (in neither the restored database "
				  "nor a saved state)", line, tab, !strcmp(tab, "1") ? "" : "s");
		else
			error_msg("    %s: %s row%s inserted, updated or deleted", line, tab ? tab : "?",
				  tab && !strcmp(tab, "1") ? "" : "s");
		if (dropped)
			lost = 1;
		if (tables) {
			cJSON *t = cJSON_CreateObject();
			cJSON_AddStringToObject(t, "table", line);
			if (tab && strcmp(tab, "?"))
				cJSON_AddNumberToObject(t, "rows", strtod(tab, NULL));
			else
				cJSON_AddNullToObject(t, "rows");
			if (dropped)
				cJSON_AddTrueToObject(t, "dropped_by_run");
			cJSON_AddItemToArray(tables, t);
		}
		free(line);
		p += n + (nl ? 1 : 0);
	}
	if (saved) {
		error_msg("those writes%s are NOT in the restored database. The failed state, "
			  "with them, is saved in %s", lost ? " (but the LOST ones)" : "", saved);
		char *abs = fs_absolute(saved);
		char *cmd = hand(r->ctx, (const char *const[]){ "restore", abs, NULL });

		error_msg("(restore it elsewhere with '%s --to URL' to copy them back)", cmd);
		free(cmd);
		free(abs);
	} else if (lost_only) {
		/* save_while_blocked saved nothing: it would hold none of them */
		error_msg("no failed state was saved: the only writes of other sessions were to "
			  "tables the run dropped, and no snapshot holds those rows (LOST)");
	}
	if (o) {
		if (saved)
			cJSON_AddStringToObject(o, "saved_state", saved);
		else
			cJSON_AddNullToObject(o, "saved_state");
		cJSON_AddStringToObject(o, "action", saved ? "saved_then_restored" :
						     lost_only ? "lost_not_saved" : "stopped");
	}
}

/* run -- COMMAND: the failed state was saved without knowing whose writes
 * it holds (the command's, and perhaps other sessions'). */
static void report_saved_state(struct run *r, const char *saved)
{
	char *abs = fs_absolute(saved);
	char *cmd = hand(r->ctx, (const char *const[]){ "restore", abs, NULL });

	warning("the command's writes cannot be told from other sessions', so the failed "
		"state was saved before the restore: %s (restore it elsewhere with "
		"'%s --to URL' to copy back anything other sessions wrote)", saved, cmd);
	free(cmd);
	free(abs);
	if (r->ctx->json)
		cJSON_AddStringToObject(r->ctx->json, "saved_state", saved);
}

/* The snapshot of the failed state: next to the run's, named after it. */
static int save_failed_state(struct cmd_ctx *ctx, const char *snapshot, struct engine *e,
			     char **saved, struct sm_error *err)
{
	struct strbuf name = STRBUF_INIT;
	struct backup_result res = BACKUP_RESULT_INIT;
	const char *base = strrchr(snapshot, '/');
	sig_atomic_t was;
	int rc;

	sb_adds(&name, base ? base + 1 : snapshot);
	if (name.len > 8 && !strcmp(name.buf + name.len - 8, ".tar.zst"))
		sb_setlen(&name, name.len - 8);
	sb_adds(&name, "_failed_state");
	/* a signal that ended the run must not stop this save: during the
	 * restore, signals go to restore_signals_begin's handler */
	was = cli_interrupted;
	cli_interrupted = 0;
	rc = port_backup(ctx, e, name.buf, "failed state", 0, &res, err);
	cli_interrupted = was;
	if (rc == 0) {
		*saved = res.path;
		res.path = NULL;
	}
	backup_result_release(&res);
	sb_release(&name);
	return rc;
}

/* Called by the restore once other sessions can no longer write (see
 * restore_opts.writers_blocked): the failed state is saved then, so that
 * nothing they wrote before the restore is lost. */
struct failed_state {
	struct cmd_ctx *ctx;
	const char *snapshot;
	struct engine *e;
	const struct restore_guard *guard; /* NULL: always save (recover) */
	struct strbuf *foreign;            /* other sessions' writes seen so far */
	int stopped;                       /* --on-concurrent-writes stop cancelled it */
	char *saved;                       /* owned */
	/* what the restored state must be (NULL before: not checked) */
	const struct db_state *before;
	const cJSON *snap_rows, *snap_extra;
	int verified;                      /* checked before others could write */
	int save_failed;                   /* the save failed: nothing was restored */
	int gone;                          /* nothing was at the URL (run.gone) */
};

static int save_while_blocked(void *ud, struct sm_error *err)
{
	struct failed_state *fs = ud;

	/* the restore creates the database: it replaces nothing to save */
	if (fs->gone)
		return 0;
	/* a last look, now that no one can write: what came in since the
	 * look before the restore is kept too.  Rows in tables the run
	 * dropped alone are no reason to save: the failed state has not got
	 * them either */
	if (fs->guard && !foreign_needs_saving(fs->foreign->buf)) {
		struct sm_error werr = SM_ERROR_INIT;
		struct strbuf now = STRBUF_INIT;

		/* (the look gives the dropped tables' lines again) */
		if (guard_foreign_writes(fs->guard, fs->e, &now, &werr) < 0) {
			sb_reset(&now);
			sb_add(&now, fs->foreign->buf, fs->foreign->len);
			sb_adds(&now, "*\t?\n");
		}
		sb_reset(fs->foreign);
		sb_add(fs->foreign, now.buf, now.len);
		sb_release(&now);
		if (!foreign_needs_saving(fs->foreign->buf))
			return 0;
		if (guard_policy_stop(&werr) == 1) {
			fs->stopped = 1;
			return err_set(err, ERR_BLOCKED, "other sessions wrote since the snapshot "
				       "(--on-concurrent-writes stop): the restore was cancelled");
		}
	}
	info("saving the failed state first");
	if (save_failed_state(fs->ctx, fs->snapshot, fs->e, &fs->saved, err) < 0) {
		fs->save_failed = 1;
		return err_prefix(err, "cannot save the failed state, so nothing was restored "
				  "(restoring would discard other sessions' writes)");
	}
	return 0;
}

/* Called by the restore once the snapshot is in and before other sessions
 * can write again: the schema, the row counts and the table contents must
 * be the snapshot's, whatever they wrote before the restore (it replaced
 * that) or will write after it. */
static int verify_while_blocked(void *ud, struct engine *target, struct sm_error *err)
{
	struct failed_state *fs = ud;

	if (!fs->before)
		return 0;
	fs->verified = 1;
	return state_matches(target, fs->before, fs->snap_rows, fs->snap_extra, err) ? 0 : -1;
}

/* Before the restore: which tables other sessions wrote since the snapshot
 * ("TABLE\tROWS\n" in list; empty: none seen). */
static void find_foreign_writes(struct run *r, struct engine *e, struct strbuf *list)
{
	struct sm_error werr = SM_ERROR_INIT;

	if (guard_foreign_writes(&r->guard, e, list, &werr) < 0) {
		warning("cannot tell whether other sessions wrote since the snapshot: %s; the "
			"failed state is saved before the restore", werr.msg);
		sb_reset(list);
		sb_adds(list, "*\t?\n");
	}
}

/* --on-concurrent-writes stop: reports and leaves the database as it is. */
static int stop_for_foreign_writes(struct run *r, const char *list)
{
	report_foreign_writes(r, list, NULL, 0);
	error_msg("--on-concurrent-writes stop: the database was NOT restored; it is as the "
		  "failed run left it, %s. The snapshot from before the run is %s",
		  foreign_needs_saving(list) ? "other sessions' writes included" :
		  "without the LOST rows (the run dropped their tables)", r->snapshot);
	{
		char *yes = hand(r->ctx, (const char *const[]){ "recover", "--yes", NULL });
		char *discard =
			hand(r->ctx, (const char *const[]){ "recover", "--discard", NULL });

		error_msg("the run stays open in its journal. To restore the snapshot anyway "
			  "(discarding those writes; the state now is saved first): %s; to keep the "
			  "database as it is: %s", yes, discard);
		free(yes);
		free(discard);
	}
	return EXIT_CONCURRENT_WRITES;
}

/* Makes the run's connection, and its journal, follow the database now at
 * the URL (identity now), which is not the one the run opened. */
static int follow_to(struct run *r, const struct engine_identity *now)
{
	struct engine *e = r->s->e;
	struct sm_error err = SM_ERROR_INIT;

	if (e->ops->reopen(e, &err) < 0) {
		error_msg("cannot open the database now at %s: %s", now->label, err.msg);
		return -1;
	}
	/* a kill from here on is recovered on the database now there */
	if (journal_follow(&r->j, now, &err) < 0)
		warning("the run journal stays under the identity the run began with (%s): %s",
			r->id.key, err.msg);
	r->id = *now;
	return 0;
}

/* Is the database at the URL still the one the run opened (r->id)?  A
 * tool may write a new file and rename it over the SQLite path: the run's
 * connection would go on reading the old one, so validate would check a
 * file nobody uses any more, and a broken new one would pass.  When it was
 * replaced, says so and follows it (follow_to): validate, the look for
 * other sessions' writes (none can be told from the command's now) and
 * the restore all see the database now there.  Engines without reopen
 * always reach the database the URL names.  Returns 0 when it is the one
 * the run opened, 1 when it was replaced and is followed, -1 after saying
 * why not (nothing is there: r->gone). */
static int follow_database(struct run *r)
{
	struct cmd_ctx *ctx = r->ctx;
	struct engine *e = r->s->e;
	struct engine_identity now;
	struct sm_error err = SM_ERROR_INIT;

	if (!e->ops->reopen)
		return 0;
	if (e->ops->identity(e, &now, &err) < 0) {
		r->gone = err.sys_errno == ENOENT;
		if (r->gone)
			error_msg("the database %s is gone after %s (%s): removed, or moved "
				  "elsewhere", r->id.label, r->what, err.msg);
		else
			error_msg("cannot tell whether the database at %s is still the one the run "
				  "opened: %s", r->id.label, err.msg);
		/* (a failed command has said so already) */
		if (ctx->json && !cJSON_HasObjectItem(ctx->json, "error"))
			cJSON_AddStringToObject(ctx->json, "error", r->gone ? "the database is gone"
								    : "the database cannot be checked");
		return -1;
	}
	if (!strcmp(now.key, r->id.key))
		return 0;
	warning("the database %s was replaced during %s: another file is at that path now "
		"(identity %s when the run began, %s now); the run now works on that file, whose "
		"writes cannot be told from other sessions'", r->id.label, r->what, r->id.key,
		now.key);
	if (ctx->json)
		cJSON_AddBoolToObject(ctx->json, "database_replaced", 1);
	return follow_to(r, &now) < 0 ? -1 : 1;
}

/* The database was gone after apply (r->gone), and the restore created it
 * again: the run's connection and journal follow it there, as they follow
 * a replaced one. */
static void follow_restored(struct run *r)
{
	struct engine *e = r->s->e;
	struct engine_identity now;
	struct sm_error err = SM_ERROR_INIT;

	if (e->ops->identity(e, &now, &err) < 0 || follow_to(r, &now) < 0)
		return;
	r->gone = 0;
	info("the restore created the database again at %s", now.label);
}

/* After a restore: what the run changed that no snapshot holds (a
 * publication or an extension it created, a grant on a system catalog,
 * the database's settings, a role...) is still as the run left it.  Named,
 * so that "back in its state before the run" is not taken for more than
 * the snapshot's objects and rows.  What the engine can tell another
 * session changed meanwhile (a role, shared by every database) is not the
 * run's to undo: said apart; the rest is not claimed as the run's unless
 * its line says so. */
static void report_not_undone(struct cmd_ctx *ctx, const char *before, struct engine *e)
{
	struct strbuf left = STRBUF_INIT, theirs = STRBUF_INIT;
	struct sm_error err = SM_ERROR_INIT;

	if (guard_outside_changes(before, e, &left, &theirs, &err) < 0) {
		warning("cannot tell whether the run changed anything outside what a snapshot "
			"holds: %s", err.msg);
		goto out;
	}
	if (left.len) {
		sb_rtrim(&left);
		warning("NOT UNDONE: these changed during the run, and no snapshot holds them or "
			"the restore does not put them back; undo by hand what the run did (+ now, "
			"- before the run; a line not marked as changed by the run may be another "
			"session's change):\n%s", left.buf);
		if (ctx->json)
			cJSON_AddStringToObject(ctx->json, "not_undone", left.buf);
	}
	if (theirs.len) {
		sb_rtrim(&theirs);
		info("other sessions changed these during the run, not the run: they stay as "
		     "those sessions left them (+ now, - before the run):\n%s", theirs.buf);
		if (ctx->json)
			cJSON_AddStringToObject(ctx->json, "changed_by_others", theirs.buf);
	}
out:
	sb_release(&left);
	sb_release(&theirs);
}

/* After a failure: restores the snapshot, confirms the pre-run state, and
 * returns 5 (or 130 when interrupted), or 6 when the restore failed, or 8
 * when other sessions' writes kept it from restoring. */
static int restore_after_failure(struct run *r, struct engine *e, int interrupted)
{
	struct cmd_ctx *ctx = r->ctx;
	struct sm_error rerr = SM_ERROR_INIT;
	struct strbuf foreign = STRBUF_INIT;
	struct failed_state fs = { r->ctx, r->snapshot, e, &r->guard, &foreign, 0, NULL,
				   &r->before, r->snap_rows, r->snap_extra, 0, 0, r->gone };
	long long t0 = plan_now_ms();
	int ok = 0, code = 0, others_wrote;

	/* when the run's own writes were not counted (a wrapped command writes
	 * through connections of its own), they cannot be told from other
	 * sessions': the failed state is always saved before the restore, as
	 * recover does */
	if (!r->guard.mark)
		fs.guard = NULL;
	/* a restore should run to completion: the first SIGINT/SIGTERM only
	 * says so, a second one cancels it (it then changed nothing) */
	restore_signals_begin();
	if (r->journaled)
		journal_phase(&r->j, "restore", NULL, &rerr);
	/* the restore writes through a connection of its own: nothing the
	 * migrations left on this one may lock it out (a transaction a script
	 * began, SQLite's locking_mode=EXCLUSIVE) */
	if (e->ops->release_locks(e, &rerr) < 0) {
		warning("cannot release the run's own locks before the restore: %s", rerr.msg);
		err_clear(&rerr);
	}
	/* (writes to a file no longer at the URL are not lost by the restore) */
	if (r->snapshot && !r->gone)
		find_foreign_writes(r, e, &foreign);
	if (foreign.len && guard_policy_stop(&rerr) == 1) {
		code = stop_for_foreign_writes(r, foreign.buf);
	} else if (r->snapshot) {
		info("restoring %s", r->snapshot);
		ok = port_restore(ctx, r->snapshot, &ctx->url, r->guard.schemas,
				  save_while_blocked, verify_while_blocked, &fs, &rerr) == 0;
		if (r->gone)
			follow_restored(r);
		if (fs.stopped)
			code = stop_for_foreign_writes(r, foreign.buf);
		else if (foreign.len)
			report_foreign_writes(r, foreign.buf, fs.saved, 1);
		else if (fs.saved)
			report_saved_state(r, fs.saved);
		/* other sessions wrote and their writes could not be saved, so
		 * nothing was restored: exit 8.  A restore that failed for
		 * another reason is exit 6, their writes or not */
		if (!fs.stopped && foreign.len && fs.save_failed) {
			/* nothing was restored: the failed state stays, with their writes */
			char *yes = hand(ctx, (const char *const[]){ "recover", "--yes", NULL });

			error_msg("%s", rerr.msg);
			error_msg("the run stays open in its journal; once the failed state can be "
				  "saved: %s (it saves it first), or keep the database as it is: "
				  "recover --discard", yes);
			free(yes);
			code = EXIT_CONCURRENT_WRITES;
		}
	} else if (r->gone) {
		err_set(&rerr, ERR_FAIL, "the database %s is gone, and no snapshot can bring it back",
			r->id.label);
	} else if (r->kind->own_writes) {
		ok = 1; /* --no-backup: the single transaction was rolled back */
	} else {
		/* --no-backup around another tool: what it committed stays */
		err_set(&rerr, ERR_FAIL, "no snapshot was taken (--no-backup), so nothing can undo "
			"what '%s' committed", r->cmdline.buf);
	}
	free(fs.saved);
	if (code) {
		phase_done(r, "restore", t0, 0);
		restore_signals_end();
		cli_interrupted = 0;
		sb_release(&foreign);
		return run_finish(r, "concurrent_writes", code);
	}
	/* not checked while writers were kept out (SQLite in WAL mode, and
	 * another connection committed right after the copy): what others
	 * write now is theirs, so only the schema can be compared */
	if (ok && !fs.verified)
		ok = state_matches(e, &r->before, NULL, NULL, &rerr);
	/* (rows in a table the run dropped are not in the safety snapshot) */
	others_wrote = foreign_needs_saving(foreign.buf);
	sb_release(&foreign);
	phase_done(r, "restore", t0, ok);
	restore_signals_end();
	cli_interrupted = 0;
	if (ok) {
		if (fs.verified)
			info("restored: the database is back in its state before the run (schema, "
			     "row counts and table contents confirmed before other sessions could "
			     "write again)");
		else if (!r->snapshot)
			info("rolled back: the database is back in its state before the run (the "
			     "schema confirmed)");
		else
			info("restored: the database is back in its state before the run (the "
			     "snapshot's checksummed pages; the schema confirmed: other sessions "
			     "wrote right after the copy, so counts were not compared)");
		report_not_undone(r->ctx, r->guard.outside, e);
		if (r->applied)
			while (cJSON_GetArraySize(r->applied))
				cJSON_DeleteItemFromArray(r->applied, 0);
		return run_finish(r, "restored", interrupted ? EXIT_INTERRUPTED : EXIT_RESTORED);
	}
	if (*restore_signals_cancel())
		error_msg("THE AUTOMATIC RESTORE WAS CANCELLED (interrupted twice): %s", rerr.msg);
	else
		error_msg("THE AUTOMATIC RESTORE FAILED: %s", rerr.msg);
	if (rerr.kind == ERR_LOCKED && e->ops->lock_holders) {
		struct strbuf holders = STRBUF_INIT;
		struct sm_error ignored = SM_ERROR_INIT;

		if (e->ops->lock_holders(e, &holders, &ignored) == 0 && holders.len) {
			sb_rtrim(&holders);
			error_msg("sessions holding locks in the database:\n%s", holders.buf);
			if (ctx->json)
				cJSON_AddStringToObject(ctx->json, "blocking_sessions", holders.buf);
		}
		sb_release(&holders);
	}
	if (r->snapshot) {
		error_msg("the database may be in an intermediate state. Restore it by hand now:");
		/* with its safety snapshot: it keeps whatever other sessions
		 * wrote, which the database holds now, before and after the
		 * failure (an application that is still up keeps writing) */
		char *snap = fs_absolute(r->snapshot);
		char *cmd = hand_restore(ctx, r->snapshot, r->snap_extra);
		char *verify = hand(ctx, (const char *const[]){ "verify", snap, NULL });

		error_msg("    %s", cmd);
		error_msg("(that restore first saves the database as it is now in a safety "
			  "snapshot: %s)", others_wrote ? "other sessions wrote since the snapshot, "
			  "and their writes are kept there" : "whatever other sessions write until "
			  "then is kept there");
		error_msg("then check it with 'safe-migrate validate'; the snapshot verifies with "
			  "'%s'", verify);
		free(cmd);
		free(verify);
		free(snap);
		{
			struct strbuf created = STRBUF_INIT;
			struct sm_error ignored = SM_ERROR_INIT;

			/* that restore puts back what the snapshot holds; it
			 * cannot know what this run added beside it */
			if (guard_new_schemas(&r->guard, e, &created, &ignored) == 0 &&
			    created.len) {
				sb_rtrim(&created);
				error_msg("the failed run also created these schemas, which the "
					  "snapshot does not hold; drop them after the restore:\n%s",
					  created.buf);
				if (ctx->json)
					cJSON_AddStringToObject(ctx->json, "created_schemas",
								created.buf);
			}
			sb_release(&created);
		}
	} else {
		error_msg("no snapshot was taken (--no-backup); inspect the database now");
	}
	if (ctx->json)
		cJSON_AddStringToObject(ctx->json, "restore_error", rerr.msg);
	return run_finish(r, "restore_failed", EXIT_RESTORE_FAILED);
}

/* A migration that failed inside its own transaction, with nothing
 * committed before it in this run, changed nothing: there is nothing to
 * restore (and restoring would discard other sessions' writes).  Exit 1
 * (130 when interrupted); the snapshot is kept. */
static int nothing_to_undo(struct run *r, int interrupted)
{
	phase_done(r, "restore", plan_now_ms(), 1);
	error_msg("nothing was changed: the failed migration's transaction was rolled back and "
		  "nothing had been committed before it; no restore was needed");
	if (r->snapshot)
		error_msg("(the snapshot stays at %s)", r->snapshot);
	if (r->applied)
		while (cJSON_GetArraySize(r->applied))
			cJSON_DeleteItemFromArray(r->applied, 0);
	return run_finish(r, "rolled_back", interrupted ? EXIT_INTERRUPTED : EXIT_ERROR);
}

/* Applies all steps in one transaction (--no-backup, dry runs): all or none.
 * commit == 0 rolls back at the end even on success. */
static int apply_single_tx(struct run *r, struct engine *e, const struct plan *p, int commit,
			   size_t *n_done)
{
	struct sm_error ignored = SM_ERROR_INIT;
	struct sm_error *err = &r->ctx->err;
	struct foreign_hist f = FOREIGN_HIST_INIT;
	const struct foreign_hist *mirror = NULL;
	int rc;

	*n_done = 0;
	if (e->ops->begin(e, err) < 0)
		return -1;
	if (hist_ensure(e, err) < 0 || plan_mirror(e, &f, &mirror, err) < 0)
		goto fail;
	for (size_t i = 0; i < p->n; i++) {
		const struct migration *m = p->steps[i].m;
		long long t0 = plan_now_ms(), ms = 0;

		if (cli_interrupted) {
			err_set(err, ERR_INTERRUPTED, "interrupted before version %s", m->version);
			goto fail;
		}
		info("%s %s %s", commit ? "applying" : "rehearsing", m->version, m->description);
		if (run_step(e, &p->steps[i], mirror, &ms, err) < 0) {
			if (cli_interrupted)
				err->kind = ERR_INTERRUPTED;
			goto fail;
		}
		out("%s %s %s (%lld ms)\n", commit ? "applied" : "would apply", m->version,
		    m->description, plan_now_ms() - t0);
		if (r->applied)
			cJSON_AddItemToArray(r->applied, cJSON_CreateString(m->version));
		(*n_done)++;
	}
	rc = commit ? e->ops->commit(e, err) : e->ops->rollback(e, err);
	foreign_release(&f);
	return rc;
fail:
	e->ops->rollback(e, &ignored);
	foreign_release(&f);
	return -1;
}

static int all_transactional(const struct plan *p, const struct migration **bad)
{
	for (size_t i = 0; i < p->n; i++) {
		if (p->steps[i].m->up_no_tx) {
			*bad = p->steps[i].m;
			return 0;
		}
	}
	return 1;
}

static void apply_print_done(void *ud, const struct step *st, long long ms, int ok,
			     const struct sm_error *err)
{
	struct run *r = ud;

	(void)err;
	if (!ok)
		return;
	out("applied %s %s (%lld ms)\n", st->m->version, st->m->description, ms);
	if (r->applied)
		cJSON_AddItemToArray(r->applied, cJSON_CreateString(st->m->version));
}

static void apply_print_start(void *ud, const struct step *st)
{
	(void)ud;
	info("applying %s %s%s", st->m->version, st->m->description,
	     st->m->up_no_tx ? " (transaction:false: runs outside a transaction)" : "");
}

/* The rehearsal: restore a fresh snapshot into --rehearse-url and run the real
 * migrations there. */
/* The pipeline's migrations write only what its snapshot holds: its
 * restore could not undo the rest (engine_ops.confine_writes). */
static int confine(struct engine *e, struct sm_error *err)
{
	return e->ops->confine_writes ? e->ops->confine_writes(e, 1, err) : 0;
}

static int rehearse(struct run *r, struct session *s, const struct plan *p, int *gate)
{
	struct cmd_ctx *ctx = r->ctx;
	struct db_url target = DB_URL_INIT;
	struct engine *re = NULL;
	struct apply_hooks hooks = { r, apply_print_start, apply_print_done };
	struct impact *imp;
	size_t done = 0;
	long long t0;
	int rc = -1, same = 0;

	if (url_parse(opt.rehearse_url, NULL, &target, &ctx->err) < 0)
		return -1;
	/* by identity, not by URL text: ./app.db, a keyword/value conninfo or
	 * another user's URL may all name the database being migrated */
	if (engine_same_database(s->e, &target, &same, &ctx->err) < 0)
		goto out;
	if (same) {
		err_set(&ctx->err, ERR_USAGE, "--rehearse-url '%s' is the database being migrated "
			"('%s'); it must name a scratch database", target.redacted, ctx->url.redacted);
		goto out;
	}
	if (phase_snapshot(r, s->e) < 0)
		goto out;
	t0 = plan_now_ms();
	if (port_restore(ctx, r->snapshot, &target, NULL, NULL, NULL, NULL, &ctx->err) < 0) {
		phase_done(r, "rehearse-restore", t0, 0);
		goto out;
	}
	phase_done(r, "rehearse-restore", t0, 1);
	if (engine_open(&re, &target, 0, &ctx->err) < 0 || confine(re, &ctx->err) < 0)
		goto out;
	t0 = plan_now_ms();
	signals_watch(re);
	imp = impact_watch(re, "rehearse-url");
	rc = apply_plan(re, p, &hooks, &cli_interrupted, &done, &ctx->err);
	signals_unwatch();
	phase_done(r, "rehearse-apply", t0, rc == 0);
	*gate = impact_report(ctx, re, imp);
	if (rc == 0)
		out("rehearsal on %s: all %zu migrations applied\n", target.redacted, p->n);
	else
		out("rehearsal on %s: version %s failed: %s\n", target.redacted,
		    p->steps[done].m->version, ctx->err.msg);
out:
	engine_close(re);
	url_release(&target);
	return rc;
}

/* The in-place rehearsal runs on the live database and holds its locks
 * there: a statement must not queue behind another session's lock (and
 * block everyone queued behind it) longer than the tool waits for a lock.
 * --statement-lock-timeout, when given, was set by session_open. */
static int dry_run_timeouts(struct engine *e, struct sm_error *err)
{
	if (opt.stmt_lock_timeout_ms > 0)
		return 0;
	return e->ops->set_timeouts(e, opt.lock_timeout_ms, 0, err);
}

/* A rehearsal statement that gave up waiting for a lock: the plan could not
 * be rehearsed (exit 3), say which lock holders were in the way.  Returns
 * the exit code, or -1 when the failure was something else. */
static int dry_run_lock_wait(struct run *r, struct engine *e, const struct migration *m)
{
	struct cmd_ctx *ctx = r->ctx;
	long ms = opt.stmt_lock_timeout_ms > 0 ? opt.stmt_lock_timeout_ms : opt.lock_timeout_ms;
	struct strbuf holders = STRBUF_INIT;
	struct sm_error ignored = SM_ERROR_INIT;

	if (strcmp(ctx->err.sqlstate, "55P03") != 0)
		return -1;
	report_error(ctx, &ctx->err);
	error_msg("dry run: a statement of '%s' could not take its lock within the lock timeout "
		  "(%ld ms): another session holds a lock it waits for; nothing was changed and "
		  "the plan was NOT rehearsed", m->path, ms);
	if (e->ops->lock_holders && e->ops->lock_holders(e, &holders, &ignored) == 0 &&
	    holders.len) {
		sb_rtrim(&holders);
		error_msg("sessions holding locks in the database:\n%s", holders.buf);
		if (ctx->json)
			cJSON_AddStringToObject(ctx->json, "blocking_sessions", holders.buf);
	}
	sb_release(&holders);
	if (ctx->json) {
		cJSON_AddStringToObject(ctx->json, "lock_timeout_migration", m->version);
		cJSON_AddNumberToObject(ctx->json, "lock_timeout_ms", (double)ms);
	}
	return run_finish(r, "dry_run", EXIT_PENDING);
}

/* --dry-run without --rehearse-url when a migration must run outside a
 * transaction: the migrations before it are rehearsed in one rolled-back
 * transaction; it and those after it are not.  Says exactly which, and
 * exits EXIT_PENDING (3): CI must not read a partial rehearsal as a pass. */
static int dry_run_prefix(struct run *r, struct session *s, const struct plan *p,
			  const struct migration *bad)
{
	struct cmd_ctx *ctx = r->ctx;
	struct plan prefix = { p->steps, 0, 0 };
	cJSON *arr = ctx->json ? cJSON_AddArrayToObject(ctx->json, "not_rehearsed") : NULL;
	long long t0 = plan_now_ms();
	struct impact *imp;
	size_t done = 0;
	int rc = 0, gate = EXIT_OK;

	while (prefix.n < p->n && p->steps[prefix.n].m != bad)
		prefix.n++;
	warning("migration '%s' runs outside a transaction and cannot be rehearsed in place; "
		"pass --rehearse-url URL to restore a fresh snapshot into a scratch database and "
		"run the real migrations there", bad->path);
	if (prefix.n && dry_run_timeouts(s->e, &ctx->err) < 0) {
		report_error(ctx, &ctx->err);
		return run_finish(r, "dry_run", EXIT_ERROR);
	}
	if (prefix.n) {
		signals_watch(s->e);
		imp = impact_watch(s->e, "in-place");
		rc = apply_single_tx(r, s->e, &prefix, 0, &done);
		signals_unwatch();
		phase_done(r, "rehearse", t0, rc == 0);
		gate = impact_report(ctx, s->e, imp);
	}
	for (size_t i = prefix.n; i < p->n; i++)
		if (arr)
			cJSON_AddItemToArray(arr, cJSON_CreateString(p->steps[i].m->version));
	if (ctx->json) {
		cJSON *reh = cJSON_AddArrayToObject(ctx->json, "rehearsed");
		for (size_t i = 0; i < done; i++)
			cJSON_AddItemToArray(reh, cJSON_CreateString(p->steps[i].m->version));
	}
	if (rc < 0 && (rc = dry_run_lock_wait(r, s->e, prefix.steps[done].m)) >= 0)
		return rc;
	if (rc < 0) {
		out("dry run: version %s would fail\n", prefix.steps[done].m->version);
		if (ctx->json)
			cJSON_AddStringToObject(ctx->json, "would_fail", prefix.steps[done].m->version);
		report_error(ctx, &ctx->err);
		return run_finish(r, "dry_run",
				  ctx->err.kind == ERR_INTERRUPTED ? EXIT_INTERRUPTED : EXIT_ERROR);
	}
	out("dry run: rehearsed %zu of %zu pending migration%s (rolled back); NOT rehearsed: %s "
	    "(outside a transaction)%s%s%s\n", prefix.n, p->n, p->n == 1 ? "" : "s",
	    bad->version, p->n - prefix.n > 1 ? " and the " : "",
	    p->n - prefix.n > 1 ? "migrations after it" : "", "");
	return run_finish(r, "dry_run", gate != EXIT_OK ? gate : EXIT_PENDING);
}

static int dry_run(struct run *r, struct session *s, const struct plan *p)
{
	struct cmd_ctx *ctx = r->ctx;
	const struct migration *bad = NULL;
	struct impact *imp;
	long long t0;
	size_t done = 0;
	int rc, gate = EXIT_OK;

	if (!all_transactional(p, &bad)) {
		if (!opt.rehearse_url)
			return dry_run_prefix(r, s, p, bad);
		rc = rehearse(r, s, p, &gate);
		if (rc < 0 && ctx->err.msg[0])
			report_error(ctx, &ctx->err);
		return run_finish(r, "dry_run", rc == 0 ? gate : EXIT_ERROR);
	}
	if (dry_run_timeouts(s->e, &ctx->err) < 0) {
		report_error(ctx, &ctx->err);
		return run_finish(r, "dry_run", EXIT_ERROR);
	}
	t0 = plan_now_ms();
	signals_watch(s->e);
	imp = impact_watch(s->e, "in-place");
	rc = apply_single_tx(r, s->e, p, 0, &done);
	signals_unwatch();
	phase_done(r, "rehearse", t0, rc == 0);
	gate = impact_report(ctx, s->e, imp);
	if (rc < 0 && (rc = dry_run_lock_wait(r, s->e, p->steps[done].m)) >= 0)
		return rc;
	if (rc < 0) {
		out("dry run: version %s would fail\n", p->steps[done].m->version);
		if (ctx->json)
			cJSON_AddStringToObject(ctx->json, "would_fail", p->steps[done].m->version);
		report_error(ctx, &ctx->err);
		return run_finish(r, "dry_run",
				  ctx->err.kind == ERR_INTERRUPTED ? EXIT_INTERRUPTED : EXIT_ERROR);
	}
	out("dry run: all %zu pending migrations apply cleanly; everything was rolled back\n",
	    p->n);
	return run_finish(r, "dry_run", gate);
}

/* ---- one phase sequence for `safe-migrate` and `run -- COMMAND` ---------- */

/* What a phase tells the sequence: go on, or the run is over (r->code set
 * and the run recorded by run_finish). */
enum { PHASE_NEXT = 0, PHASE_STOP = 1 };

static int stop(struct run *r, const char *outcome, int code)
{
	r->code = run_finish(r, outcome, code);
	return PHASE_STOP;
}

/* Puts the database back after a failed apply or validate: only with the
 * snapshot this run took (checked by its SHA-256: a snapshot replaced
 * meanwhile is another database's or another run's). */
static int undo(struct run *r, int interrupted)
{
	struct sm_error serr = SM_ERROR_INIT;

	if (r->snapshot && port_check_sha(r->snapshot, r->sha, &serr) < 0) {
		error_msg("THE AUTOMATIC RESTORE WAS NOT RUN: %s", serr.msg);
		error_msg("the database may be in an intermediate state; the run stays open in "
			  "its journal: find the snapshot this run took (SHA-256 %s), put it back at "
			  "'%s', then run 'safe-migrate recover'", r->sha, r->snapshot);
		if (r->ctx->json)
			cJSON_AddStringToObject(r->ctx->json, "restore_error", serr.msg);
		return run_finish(r, "restore_failed", EXIT_RESTORE_FAILED);
	}
	return restore_after_failure(r, r->s->e, interrupted);
}

static int phase_plan(struct run *r)
{
	return r->kind->plan ? r->kind->plan(r) : PHASE_NEXT;
}

static int phase_safety_check(struct run *r)
{
	struct cmd_ctx *ctx = r->ctx;

	if (!phase_safety(r, r->s)) {
		if (cli_interrupted) {
			error_msg("interrupted; nothing was changed");
			return stop(r, "error", EXIT_INTERRUPTED);
		}
		return PHASE_NEXT;
	}
	if (cli_interrupted) {
		error_msg("interrupted during the safety checks; nothing was changed");
		return stop(r, "error", EXIT_INTERRUPTED);
	}
	if (ctx->err.msg[0])
		report_error(ctx, &ctx->err);
	error_msg("a safety check failed; nothing was changed");
	return stop(r, "blocked", EXIT_BLOCKED);
}

static int phase_preflight(struct run *r)
{
	return r->kind->preflight ? r->kind->preflight(r) : PHASE_NEXT;
}

static int phase_capture(struct run *r)
{
	struct engine *e = r->s->e;
	struct sm_error *err = &r->ctx->err;
	struct sm_error ignored = SM_ERROR_INIT;
	int rc;

	/* in one read transaction, rolled back (it only reads): one consistent
	 * view, and SQLite takes its shared lock once instead of once per
	 * catalog query (thousands on a schema of many tables) */
	if (engine_exec(e, "BEGIN", err) < 0)
		return stop(r, "error", report_error(r->ctx, err));
	/* our migrations write through e: the baseline's foreign-key checks
	 * wait until the first write that can change them */
	rc = port_capture_before(e, &r->before, r->kind->own_writes, err);
	engine_exec(e, "ROLLBACK", &ignored);
	if (rc < 0)
		return stop(r, "error", report_error(r->ctx, err));
	r->have_before = 1;
	/* apply creates the version tables when they are missing: a commit */
	if (r->kind->own_writes &&
	    (e->ops->table_exists(e, HIST_TABLE, &r->hist_existed, err) < 0 ||
	     (r->hist_existed &&
	      e->ops->table_exists(e, HIST_SCHEMA_TABLE, &r->hist_existed, err) < 0)))
		return stop(r, "error", report_error(r->ctx, err));
	/* a command writes through connections of its own: its writes cannot be
	 * told from other sessions', so only the schemas are recorded */
	if (guard_start(&r->guard, e, r->kind->own_writes && !opt.no_backup, err) < 0)
		return stop(r, "error", report_error(r->ctx, err));
	return PHASE_NEXT;
}

static int phase_take_snapshot(struct run *r)
{
	struct cmd_ctx *ctx = r->ctx;

	if (opt.no_backup ? port_baseline_add_whole(r->s->e, &r->before, NULL, &ctx->err) == 0
			  : phase_snapshot(r, r->s->e) == 0)
		return PHASE_NEXT;
	error_msg("no change was made: %s", ctx->err.msg);
	return stop(r, "error", ctx->err.kind == ERR_INTERRUPTED || cli_interrupted
				? EXIT_INTERRUPTED : EXIT_ERROR);
}

static int phase_journal(struct run *r)
{
	/* recover drops the schemas a killed run created beside these, and
	 * names what it cannot undo against the list beside them */
	if (r->guard.schemas)
		cJSON_AddStringToObject(r->j.doc, "pre_run_schemas", r->guard.schemas);
	if (r->guard.outside)
		cJSON_AddStringToObject(r->j.doc, "pre_run_outside", r->guard.outside);
	if (journal_before_change(r) < 0)
		return stop(r, "error", report_error(r->ctx, &r->ctx->err));
	{
		struct sm_error merr = SM_ERROR_INIT;

		/* without it, only runs given this backup directory see this
		 * one if it is killed: worth a warning, not the run */
		if (journal_mark(&r->j, r->s->e, &merr) < 0)
			warning("cannot mark this run in the database (%s): a run given another "
				"backup directory than '%s' would not see it if it were killed",
				merr.msg, r->ctx->backup_dir);
		else
			r->marked = 1;
	}
	if (cli_interrupted)
		return stop(r, "error", EXIT_INTERRUPTED);
	return PHASE_NEXT;
}

static int phase_apply(struct run *r)
{
	long long t0 = plan_now_ms();
	int rc = r->kind->apply(r), moved = 0;

	/* whatever the change did: what comes next must look at the database
	 * now at the URL */
	if (!r->never_started)
		moved = follow_database(r);
	/* our migrations went into the database the run opened: one that
	 * replaced it does not have them */
	if (rc == 0 && moved > 0 && r->kind->own_writes) {
		error_msg("%s was applied to the database the run opened, which is no longer "
			  "there: the run fails, and restores the file there now", r->what);
		if (r->ctx->json)
			cJSON_AddStringToObject(r->ctx->json, "error", "the database was replaced");
	}
	if (rc == 0 && (moved < 0 || (moved > 0 && r->kind->own_writes))) {
		phase_done(r, "apply", t0, 0);
		r->code = undo(r, 0);
		return PHASE_STOP;
	}
	phase_done(r, "apply", t0, rc == 0);
	if (rc == 0)
		return PHASE_NEXT;
	if (r->never_started)
		return stop(r, "error", EXIT_ERROR);
	/* with --no-backup every step ran in the one transaction; a first
	 * step outside a transaction of ours changed nothing when none of its
	 * statements committed (it failed inside the BEGIN it opened, which
	 * run_step rolled back) */
	if (r->kind->own_writes && r->hist_existed && r->p.n &&
	    (opt.no_backup ||
	     (r->done == 0 && (!r->p.steps[0].m->up_no_tx || !r->s->e->script_committed))) &&
	    guard_version_absent(r->s->e, r->p.steps[0].m->version))
		r->code = nothing_to_undo(r, r->interrupted);
	else
		r->code = undo(r, r->interrupted);
	return PHASE_STOP;
}

static int phase_validate(struct run *r)
{
	struct cmd_ctx *ctx = r->ctx;
	long long t0 = plan_now_ms();
	int rc = port_validate(r->s->e, &r->before, r->check_schema, r->findings, &ctx->err);

	phase_done(r, "validate", t0, rc == 0);
	if (rc == 0)
		return PHASE_NEXT;
	error_msg("validation failed after %s: %s", r->what,
		  ctx->err.msg[0] ? ctx->err.msg : "new problems found (see above)");
	if (ctx->json)
		cJSON_AddStringToObject(ctx->json, "error", "validation failed");
	r->code = undo(r, 0);
	return PHASE_STOP;
}

static int phase_record(struct run *r)
{
	session_record_schema(r->s, r->have_before ? &r->before.model : NULL);
	r->kind->report_done(r);
	return stop(r, "applied", EXIT_OK);
}

/* The pipeline, in order.  A phase either hands on to the next or ends the
 * run; the last one always ends it. */
static const struct phase {
	const char *name;
	int (*run)(struct run *r);
} phases[] = {
	{ "plan", phase_plan },
	{ "safety-check", phase_safety_check },
	{ "preflight", phase_preflight },
	{ "capture", phase_capture },
	{ "snapshot", phase_take_snapshot },
	{ "journal", phase_journal },
	{ "apply", phase_apply },
	{ "validate", phase_validate },
	{ "record", phase_record },
};

/* Runs the phases on an open, locked session; returns the exit code. */
static int run_pipeline(struct cmd_ctx *ctx, const struct pipeline_kind *kind, struct run *r,
			struct session *s)
{
	run_init(r, ctx, kind->command);
	r->kind = kind;
	r->s = s;
	if (r->cmdline.len)
		cJSON_ReplaceItemInObject(r->j.doc, "command", cJSON_CreateString(r->cmdline.buf));
	for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]); i++)
		if (phases[i].run(r) == PHASE_STOP)
			break;
	return r->code;
}

/* ---- safe-migrate: our own migrations ------------------------------------ */

static int migrate_plan(struct run *r)
{
	struct cmd_ctx *ctx = r->ctx;
	struct session *s = r->s;

	if (plan_check_consistent(&s->set, &s->applied, &s->st, opt.allow_out_of_order,
				  &ctx->err) < 0 ||
	    plan_upgrade(&s->set, &s->applied, ctx->argc ? ctx->argv[0] : NULL, &r->p,
			 &ctx->err) < 0) {
		int code = report_error(ctx, &ctx->err);
		return stop(r, "blocked", code == EXIT_USAGE ? EXIT_USAGE : EXIT_BLOCKED);
	}
	if (!r->p.n) {
		out("nothing to do: the database is at %s\n",
		    hist_current(&s->applied) ? hist_current(&s->applied) : "base");
		return stop(r, "nothing_to_do", EXIT_OK);
	}
	return PHASE_NEXT;
}

static int migrate_preflight(struct run *r)
{
	struct cmd_ctx *ctx = r->ctx;
	const struct migration *bad = NULL;

	if (opt.dry_run) {
		r->code = dry_run(r, r->s, &r->p);
		return PHASE_STOP;
	}
	if (!opt.no_backup)
		return PHASE_NEXT;
	if (!all_transactional(&r->p, &bad)) {
		err_set(&ctx->err, ERR_BLOCKED, "--no-backup refused: '%s' is marked "
			"transaction:false, so a failure could not be rolled back", bad->path);
		return stop(r, "blocked", report_error(ctx, &ctx->err));
	}
	warning("*** --no-backup: NO SNAPSHOT IS TAKEN. All %zu migrations run in one "
		"transaction; a failure rolls them all back, but nothing protects against "
		"what a transaction cannot undo ***", r->p.n);
	return PHASE_NEXT;
}

static int migrate_apply(struct run *r)
{
	struct cmd_ctx *ctx = r->ctx;
	const struct plan *p = &r->p;
	const char *failed;
	/* what really happened: recorded in the runs log (history --runs -v) */
	struct impact *imp = impact_watch(r->s->e, "real-run");
	int rc;

	if (opt.no_backup) {
		rc = apply_single_tx(r, r->s->e, p, 1, &r->done);
	} else {
		struct apply_hooks hooks = { r, apply_print_start, apply_print_done };
		rc = apply_plan(r->s->e, p, &hooks, &cli_interrupted, &r->done, &ctx->err);
	}
	r->impact = impact_record(r->s->e, imp);
	if (rc == 0)
		return 0;
	r->interrupted = ctx->err.kind == ERR_INTERRUPTED || cli_interrupted;
	failed = p->steps[r->done < p->n ? r->done : p->n - 1].m->version;
	error_msg("version %s failed: %s", failed, ctx->err.msg);
	if (ctx->json) {
		cJSON_AddStringToObject(ctx->json, "error", ctx->err.msg);
		cJSON_AddStringToObject(ctx->json, "failed_version", failed);
	}
	return -1;
}

static void migrate_done(const struct run *r)
{
	out("done: %zu migration%s applied; snapshot %s\n", r->p.n, r->p.n == 1 ? "" : "s",
	    r->snapshot ? r->snapshot : "(none: --no-backup)");
}

static const struct pipeline_kind migrate_kind = {
	"safe-migrate", 1, migrate_plan, migrate_preflight, migrate_apply, migrate_done,
};
static const struct pipeline_kind dry_run_kind = {
	"safe-migrate --dry-run", 1, migrate_plan, migrate_preflight, migrate_apply, migrate_done,
};

int cmd_safe_migrate(struct cmd_ctx *ctx)
{
	struct session s;
	struct run r;
	int code;

	if (ctx->argc > 1) {
		err_set(&ctx->err, ERR_USAGE, "safe-migrate takes one TARGET, not '%s'", ctx->argv[1]);
		return report_error(ctx, &ctx->err);
	}
	if (opt.rehearse_url && !opt.dry_run) {
		err_set(&ctx->err, ERR_USAGE, "--rehearse-url goes with --dry-run");
		return report_error(ctx, &ctx->err);
	}
	if (opt.report && !opt.dry_run) {
		err_set(&ctx->err, ERR_USAGE, "--report goes with --dry-run");
		return report_error(ctx, &ctx->err);
	}
	if (guard_policy_stop(&ctx->err) < 0)
		return report_error(ctx, &ctx->err);
	if (session_open(&s, ctx, SESSION_LOCK, &ctx->err) < 0)
		return report_error(ctx, &ctx->err);
	run_prepare(&r);
	if ((code = check_unfinished(ctx, s.e, &r.id)) != 0)
		goto out;
	if (confine(s.e, &ctx->err) < 0) {
		code = report_error(ctx, &ctx->err);
		goto out;
	}
	/* SIGINT/SIGTERM from here on: before the first change the run stops
	 * with nothing changed; during apply the statement is cancelled and
	 * the snapshot restored (exit 130 either way) */
	signals_watch(s.e);
	r.what = "the migration";
	r.check_schema = 1;
	code = run_pipeline(ctx, opt.dry_run ? &dry_run_kind : &migrate_kind, &r, &s);
out:
	run_release(&r);
	session_close(&s);
	return code;
}

/* ---- run -- COMMAND: another tool's migrations ---------------------------- */

/* The URL handed to the child: what it needs to connect (password included,
 * never printed). */
static char *child_url(const struct engine *e)
{
	struct strbuf sb = STRBUF_INIT;

	e->ops->client_url(&e->url, &sb);
	return sb_detach(&sb);
}

static int command_preflight(struct run *r)
{
	if (opt.no_backup)
		warning("*** --no-backup: NO SNAPSHOT IS TAKEN; if '%s' fails, safe-migrate cannot "
			"put the database back ***", r->cmdline.buf);
	return PHASE_NEXT;
}

/* Journals the command's pid and process group: `recover` waits for (or
 * refuses while) that group is alive. */
static void command_started(void *ud, pid_t pid, pid_t pgid)
{
	struct run *r = ud;
	struct sm_error err = SM_ERROR_INIT;

	if (journal_set_child(&r->j, pid, pgid, &err) < 0)
		warning("cannot record the command's process in the run journal: %s", err.msg);
}

static int command_apply(struct run *r)
{
	struct cmd_ctx *ctx = r->ctx;
	struct spawn_result res;
	struct strbuf e1 = STRBUF_INIT, e2 = STRBUF_INIT;
	char *env[3];
	char *url = child_url(r->s->e), *prog;
	int rc;

	sb_addf(&e1, "DATABASE_URL=%s", url);
	sb_addf(&e2, "SAFE_MIGRATE_DATABASE_URL=%s", url);
	env[0] = e1.buf;
	env[1] = e2.buf;
	env[2] = NULL;
	info("running: %s", r->cmdline.buf);
	cli_interrupted = 0;
	prog = engine_scrub(&ctx->url, ctx->argv[0]);
	rc = spawn_run(ctx->argv, prog, env, command_started, r, &res, &ctx->err);
	free(prog);
	free(url);
	sb_release(&e1);
	sb_release(&e2);
	if (rc < 0 && !res.started) {
		/* it never started, so it changed nothing */
		report_error(ctx, &ctx->err);
		error_msg("the command never started; nothing was changed");
		r->never_started = 1;
		return -1;
	}
	if (rc < 0) {
		/* it ran, but how it ended is unknown: treat it as a failure */
		error_msg("'%s' ran, but its end is unknown: %s", r->cmdline.buf, ctx->err.msg);
		res.exited = 0;
		res.status = 0;
	} else if (res.exited && res.status == 0) {
		return 0;
	} else if (res.exited) {
		error_msg("'%s' exited with status %d", r->cmdline.buf, res.status);
	} else {
		error_msg("'%s' was killed by signal %d", r->cmdline.buf, res.status);
	}
	r->interrupted = !res.exited && (res.status == SIGINT || res.status == SIGTERM);
	if (ctx->json) {
		cJSON_AddStringToObject(ctx->json, "error", "the command failed");
		cJSON_AddNumberToObject(ctx->json, "command_status", res.status);
	}
	return -1;
}

static void command_done(const struct run *r)
{
	out("done: '%s' succeeded; snapshot %s\n", r->cmdline.buf,
	    r->snapshot ? r->snapshot : "(none: --no-backup)");
}

static const struct pipeline_kind command_kind = {
	"run", 0, NULL, command_preflight, command_apply, command_done,
};

int cmd_run(struct cmd_ctx *ctx)
{
	struct session s;
	struct run r;
	struct strbuf what = STRBUF_INIT;
	int code;

	if (!ctx->argc) {
		err_set(&ctx->err, ERR_USAGE, "run needs a command: safe-migrate run -- alembic "
			"upgrade head");
		return report_error(ctx, &ctx->err);
	}
	if (guard_policy_stop(&ctx->err) < 0)
		return report_error(ctx, &ctx->err);
	if (session_open(&s, ctx, SESSION_LOCK | SESSION_NO_MIGRATIONS, &ctx->err) < 0)
		return report_error(ctx, &ctx->err);
	run_prepare(&r);
	if ((code = check_unfinished(ctx, s.e, &r.id)) != 0)
		goto out;
	/* the command line may carry the URL (dbmate --url ...): it is shown,
	 * journaled and logged with every password masked */
	for (int i = 0; i < ctx->argc; i++) {
		char *shown = engine_scrub(&ctx->url, ctx->argv[i]);
		sb_addf(&r.cmdline, "%s%s", i ? " " : "", shown);
		free(shown);
	}
	sb_addf(&what, "'%s'", r.cmdline.buf);
	r.what = what.buf;
	r.check_schema = opt.validate;
	code = run_pipeline(ctx, &command_kind, &r, &s);
out:
	run_release(&r);
	sb_release(&what);
	session_close(&s);
	return code;
}

/* Says which other databases' runs in this backup directory are unfinished
 * (a `recover -d` of the wrong database finds nothing of its own). */
static void note_other_journals(const struct cmd_ctx *ctx, const struct engine_identity *id)
{
	DIR *d = opendir(ctx->backup_dir);
	const struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)) != NULL) {
		struct sm_error ignored = SM_ERROR_INIT;
		cJSON *doc = NULL;
		char *path;

		if (strncmp(de->d_name, "safe-migrate", 12) ||
		    strcmp(de->d_name + strlen(de->d_name) - 8, ".journal"))
			continue;
		path = fs_join(ctx->backup_dir, de->d_name);
		if (journal_read(path, &doc, &ignored) == 0 && journal_unfinished(doc) &&
		    strcmp(journal_str(doc, "identity", ""), id->key))
			warning("run journal '%s' of another database ('%s') is unfinished; recover "
				"it with 'safe-migrate -d URL-OF-THAT-DATABASE recover'", path,
				journal_str(doc, "database", "?"));
		cJSON_Delete(doc);
		free(path);
	}
	closedir(d);
}

/* A wrapped command of the killed run (run -- COMMAND) may still be running
 * and writing: waits up to --lock-timeout for its process group to end,
 * then refuses. */
static int wait_for_command(const cJSON *doc, struct sm_error *err)
{
	const cJSON *pg = cJSON_GetObjectItemCaseSensitive(doc, "child_pgid");
	pid_t pgid = cJSON_IsNumber(pg) ? (pid_t)pg->valuedouble : 0;
	long long until = plan_now_ms() + opt.lock_timeout_ms;

	if (pgid <= 0 || !child_group_alive(pgid))
		return 0;
	info("waiting for the killed run's command (process group %ld) to end",
	     (long)pgid);
	while (child_group_alive(pgid)) {
		struct timespec ts = { 0, 100000000L }; /* 100 ms */
		if (cli_interrupted || plan_now_ms() >= until)
			return err_set(err, ERR_BLOCKED, "the killed run's command '%s' (process "
				       "group %ld) is still running and may still be writing; nothing "
				       "was changed. Stop it ('kill -TERM -- -%ld'), then run "
				       "'safe-migrate recover' again",
				       journal_str(doc, "command", "?"), (long)pgid, (long)pgid);
		nanosleep(&ts, NULL);
	}
	return 0;
}

/* recover found no unfinished journal under the database's identity, but
 * one of a database at the same place under another (journal_find_replaced):
 * the file was replaced after the run on it began.  When that run was
 * killed while its wrapped command ran, the command may have done it (a
 * tool that renames a new file over the database) before the run could
 * follow (journal_follow): the journal is this database's, and recover goes
 * on with it (the state now is saved before the restore, as always).
 * Otherwise someone else put another database there: only --discard closes
 * that journal; a restore would overwrite a database the run never saw.
 * Returns 0 to go on, else the exit code. */
static int replaced_journal(struct cmd_ctx *ctx, const struct engine_identity *id,
			    const char *path, const cJSON *doc)
{
	if (journal_command_was_running(doc)) {
		warning("the run journal '%s' is of the database that was at %s when the run began "
			"(identity %s, %s now): the run was killed while its command '%s' ran, "
			"which may have replaced the file; recovering it", path, id->label,
			journal_str(doc, "identity", "?"), id->key, journal_str(doc, "command", "?"));
		return 0;
	}
	if (opt.discard) {
		warning("the run journal '%s' is of the database that was at %s when the run began "
			"(identity %s, %s now); discarding it accepts the database now there", path,
			id->label, journal_str(doc, "identity", "?"), id->key);
		return 0;
	}
	err_set(&ctx->err, ERR_BLOCKED, "the unfinished run journal '%s' (%s, phase '%s') is of "
		"the database that was at %s when the run began (identity %s); another database "
		"is there now (%s), which that run never saw, so its snapshot %s is not restored "
		"over it; nothing was changed. Check the database, then accept it with "
		"'safe-migrate recover --discard', or restore the snapshot by hand", path,
		journal_str(doc, "run_id", "?"), journal_str(doc, "phase", "?"), id->label,
		journal_str(doc, "identity", "?"), id->key, journal_str(doc, "snapshot", "(none)"));
	return report_error(ctx, &ctx->err);
}

/* Closes the killed run's journal with outcome, its mark in the database
 * first (journal_mark). */
static int close_killed_run(struct engine *e, const char *path, const cJSON *doc,
			    const char *outcome, struct sm_error *err)
{
	struct sm_error merr = SM_ERROR_INIT;

	if (journal_unmark(e, journal_str(doc, "run_id", "?"), &merr) < 0)
		warning("cannot remove the run's mark from the database (%s); the next run removes "
			"it once it finds the journal closed", merr.msg);
	return journal_close_unfinished(path, outcome, err);
}

int cmd_recover(struct cmd_ctx *ctx)
{
	struct engine *e = NULL;
	struct failed_state fs = { NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, 0, 0,
				   0 };
	struct engine_identity id;
	cJSON *doc = NULL, *extra = NULL;
	char *path = NULL;
	const char *snap, *sha;
	int code = EXIT_OK, rc, replaced = 0;

	if (guard_policy_stop(&ctx->err) < 0)
		return report_error(ctx, &ctx->err);
	/* Lock first, then read: a killed client can leave its server session
	 * running the statement it was sent (PostgreSQL notices the lost client
	 * only when that ends); that session still holds the migration lock. */
	if (engine_open(&e, &ctx->url, 0, &ctx->err) < 0)
		goto fail;
	if (e->ops->lock(e, opt.lock_timeout_ms, &ctx->err) < 0) {
		if (ctx->err.kind == ERR_LOCKED)
			err_prefix(&ctx->err, "the killed run's server session may still be running "
				   "its last statement; wait for it to end (or cancel it), then run "
				   "'safe-migrate recover' again");
		goto fail;
	}
	if (e->ops->identity(e, &id, &ctx->err) < 0 ||
	    journal_find(ctx->backup_dir, &id, ctx->url.redacted, &path, &doc, &ctx->err) < 0)
		goto fail;
	if (!journal_unfinished(doc)) {
		cJSON_Delete(doc);
		free(path);
		if ((replaced = journal_find_replaced(ctx->backup_dir, &id, &path, &doc)) &&
		    (rc = replaced_journal(ctx, &id, path, doc)) != 0) {
			code = rc;
			goto out;
		}
	}
	if (!journal_unfinished(doc)) {
		struct strbuf cleared = STRBUF_INIT;

		/* a run killed with another backup directory, as the database
		 * records it: recovered there, or with --discard accepted here */
		if (journal_check_marks(e, &id, ctx->backup_dir, opt.discard, &cleared,
					&ctx->err) != 0) {
			sb_release(&cleared);
			goto fail;
		}
		if (cleared.len) {
			out("accepted the database as it is; removed the database's marks of these "
			    "unfinished runs, whose journals are not here:\n%s", cleared.buf);
			if (ctx->json) {
				cJSON_AddStringToObject(ctx->json, "outcome", "discarded");
				cJSON_AddStringToObject(ctx->json, "cleared_marks", cleared.buf);
			}
			sb_release(&cleared);
			goto out;
		}
		sb_release(&cleared);
		note_other_journals(ctx, &id);
		out("no interrupted run to recover\n");
		if (ctx->json)
			cJSON_AddStringToObject(ctx->json, "outcome", "nothing_to_do");
		goto out;
	}
	if (!replaced && !journal_belongs(doc, &id, ctx->url.redacted)) {
		err_set(&ctx->err, ERR_BLOCKED, "run journal '%s' belongs to another database "
			"('%s', %s), not to '%s' (%s); nothing was changed", path,
			journal_str(doc, "database", "?"), journal_str(doc, "database_label", "?"),
			ctx->url.redacted, id.label);
		goto fail;
	}
	if (wait_for_command(doc, &ctx->err) < 0)
		goto fail;
	snap = journal_str(doc, "snapshot", NULL);
	sha = journal_str(doc, "snapshot_sha256", NULL);
	if (ctx->json && snap)
		cJSON_AddStringToObject(ctx->json, "snapshot", snap);
	if (opt.discard) {
		if (close_killed_run(e, path, doc, "discarded", &ctx->err) < 0)
			goto fail;
		out("accepted the database as it is; the interrupted run's snapshot stays at %s\n",
		    snap ? snap : "(none)");
		if (ctx->json)
			cJSON_AddStringToObject(ctx->json, "outcome", "discarded");
		goto out;
	}
	if (!snap) {
		/* killed before the snapshot: no change had been made */
		close_killed_run(e, path, doc, "recovered", &ctx->err);
		out("the interrupted run stopped in phase '%s', before any change; nothing to "
		    "restore\n", journal_str(doc, "phase", "?"));
		if (ctx->json)
			cJSON_AddStringToObject(ctx->json, "outcome", "nothing_to_do");
		goto out;
	}
	info("the interrupted run's snapshot is %s", snap);
	/* only the snapshot that run took: the file at that path may have been
	 * replaced since (another run, another database, a hand) */
	if (!confirm("restore the interrupted run's snapshot over the database", &ctx->err) ||
	    (sha && port_check_sha(snap, sha, &ctx->err) < 0) ||
	    port_verify(snap, NULL, &extra, &ctx->err) < 0)
		goto fail;
	/* the killed run's own writes cannot be told from other sessions' now:
	 * the state as it is, theirs included, is saved before the restore
	 * (while they cannot write), and --on-concurrent-writes stop stops */
	if (guard_policy_stop(&ctx->err) == 1) {
		char *yes = hand(ctx, (const char *const[]){ "recover", "--yes", NULL });
		char *discard = hand(ctx, (const char *const[]){ "recover", "--discard", NULL });

		error_msg("--on-concurrent-writes stop: recover cannot tell the killed run's writes "
			  "from other sessions', so it did not restore. Restore anyway (the state "
			  "now is saved first): %s; or keep the database as it is: %s", yes, discard);
		free(yes);
		free(discard);
		code = EXIT_CONCURRENT_WRITES;
		goto out;
	}
	fs.ctx = ctx;
	fs.snapshot = snap;
	fs.e = e;
	restore_signals_begin();
	/* the schemas the run found (journaled before its first change): the
	 * ones it created beside them are dropped with the restore */
	rc = port_restore(ctx, snap, &ctx->url, journal_str(doc, "pre_run_schemas", NULL),
			  save_while_blocked, NULL, &fs, &ctx->err);
	restore_signals_end();
	if (fs.saved) {
		info("the state before this recover, other sessions' writes included, is saved in %s",
		     fs.saved);
		if (ctx->json)
			cJSON_AddStringToObject(ctx->json, "saved_state", fs.saved);
	}
	free(fs.saved);
	if (rc < 0) {
		error_msg("restore failed: %s", ctx->err.msg);
		char *cmd = hand_restore(ctx, snap, extra);

		error_msg("restore by hand: %s", cmd);
		free(cmd);
		code = EXIT_RESTORE_FAILED;
		goto out;
	}
	/* against the killed run's pre-run list */
	report_not_undone(ctx, journal_str(doc, "pre_run_outside", NULL), e);
	if (close_killed_run(e, path, doc, "recovered", &ctx->err) < 0)
		code = report_error(ctx, &ctx->err);
	out("restored %s; the database is back in its state before the interrupted run\n", snap);
	if (ctx->json)
		cJSON_AddStringToObject(ctx->json, "outcome", "restored");
	goto out;
fail:
	code = report_error(ctx, &ctx->err);
out:
	engine_close(e);
	cJSON_Delete(doc);
	cJSON_Delete(extra);
	free(path);
	return code;
}

int cmd_history_runs(struct cmd_ctx *ctx);
int cmd_history_runs(struct cmd_ctx *ctx)
{
	char *path = fs_join(ctx->backup_dir, RUNS_LOG_FILE);
	struct strbuf text = STRBUF_INIT;
	cJSON *arr = ctx->json ? cJSON_AddArrayToObject(ctx->json, "runs") : NULL;
	const char *p;
	int code = EXIT_OK;

	if (!fs_exists(path)) {
		out("no runs recorded in %s yet\n", ctx->backup_dir);
		goto out;
	}
	if (fs_read_file(path, &text, 64u << 20, &ctx->err) < 0) {
		code = report_error(ctx, &ctx->err);
		goto out;
	}
	out("%-20s %-10s %-15s %8s  %-6s %s\n", "STARTED", "USER", "OUTCOME", "MS", "EXIT", "SNAPSHOT");
	for (p = text.buf; *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		char *line = xstrndup(p, n);
		cJSON *o = cJSON_Parse(line);
		free(line);
		p += n + (nl ? 1 : 0);
		if (!o) {
			warning("skipping a damaged line in '%s'", path);
			continue;
		}
#define S(k) (cJSON_IsString(cJSON_GetObjectItem(o, k)) ? cJSON_GetObjectItem(o, k)->valuestring : "-")
		out("%-20s %-10s %-15s %8.0f  %-6.0f %s\n", S("started_at"), S("user"), S("outcome"),
		    cJSON_GetNumberValue(cJSON_GetObjectItem(o, "ms")),
		    cJSON_GetNumberValue(cJSON_GetObjectItem(o, "exit_code")), S("snapshot"));
#undef S
		if (opt.verbose && !ctx->json) {
			struct strbuf sb = STRBUF_INIT;
			impact_render_logged(cJSON_GetObjectItem(o, "impact"), &sb);
			out("%s", sb.buf);
			sb_release(&sb);
		}
		if (arr)
			cJSON_AddItemToArray(arr, o);
		else
			cJSON_Delete(o);
	}
out:
	sb_release(&text);
	free(path);
	return code;
}
