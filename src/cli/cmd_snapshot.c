/*
 * cmd_snapshot: the snapshot commands: backup, list-backups, verify,
 * restore, prune and drop-tables.  The work is done by backup/, restore/ and
 * src/snapshot/; this file parses arguments, asks for confirmation, prints
 * and picks exit codes.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "cli.h"
#include "fsutil.h"
#include "journal.h"
#include "pipeline.h"
#include "progress.h"
#include "restore.h"
#include "schema.h"
#include "session.h"
#include "snapshot.h"
#include "strbuf.h"
#include "xalloc.h"

static void human_bytes(char *out, size_t n, uint64_t b)
{
	if (b >= ((uint64_t)1 << 30))
		snprintf(out, n, "%.1f GiB", (double)b / (double)((uint64_t)1 << 30));
	else if (b >= ((uint64_t)1 << 20))
		snprintf(out, n, "%.1f MiB", (double)b / (double)((uint64_t)1 << 20));
	else if (b >= 1024)
		snprintf(out, n, "%.1f KiB", (double)b / 1024.0);
	else
		snprintf(out, n, "%llu B", (unsigned long long)b);
}

static int want_args(struct cmd_ctx *ctx, int min, int max)
{
	if (ctx->argc < min) {
		err_set(&ctx->err, ERR_USAGE, "missing argument; usage: safe-migrate %s",
			ctx->cmd->usage);
		return -1;
	}
	if (ctx->argc > max) {
		err_set(&ctx->err, ERR_USAGE, "unexpected argument '%s'; usage: safe-migrate %s",
			ctx->argv[max], ctx->cmd->usage);
		return -1;
	}
	return 0;
}

/* SNAPSHOT "-": the snapshot comes through stdin (or goes to stdout). */
static int is_stream_arg(const char *arg)
{
	return arg && !strcmp(arg, "-");
}

int cmd_backup(struct cmd_ctx *ctx)
{
	struct engine *e = NULL;
	struct backup_result res = BACKUP_RESULT_INIT;
	cJSON *manifest = NULL;
	const int stream = is_stream_arg(opt.output);
	int code, rc;

	if (want_args(ctx, 0, 0) < 0)
		return report_error(ctx, &ctx->err);
	if (opt.output && opt.name) {
		err_set(&ctx->err, ERR_USAGE, "--name and --output exclude each other (--name names "
			"a snapshot in the backup directory, --output writes it elsewhere)");
		return report_error(ctx, &ctx->err);
	}
	if (stream) {
		if (isatty(1)) {
			err_set(&ctx->err, ERR_USAGE, "refusing to write a snapshot to a terminal; "
				"redirect or pipe stdout, or use --output FILE");
			return report_error(ctx, &ctx->err);
		}
		/* stdout is the snapshot from here on: every result goes to stderr */
		opt.stdout_taken = 1;
		/* a reader that goes away (aws s3 cp failing, ssh dropped) is an
		 * error with a message and exit 1, not a silent death by SIGPIPE */
		signal(SIGPIPE, SIG_IGN);
	}
	if (engine_open(&e, &ctx->url, 0, &ctx->err) < 0) {
		code = report_error(ctx, &ctx->err);
		goto out;
	}
	/* Ctrl-C or SIGTERM: the server's query is cancelled, the temp file
	 * removed, nothing published (exit 130) */
	signals_watch(e);
	rc = port_backup_to(ctx, e, opt.name, "backup", !opt.no_check, opt.output, &res,
			    stream ? &manifest : NULL, &ctx->err);
	signals_unwatch();
	if (rc < 0) {
		code = report_error(ctx, &ctx->err);
		goto out;
	}
	if (stream) {
		/* sha256sum's own line for stdin: `--sha256-file` reads it back */
		char b[32];

		human_bytes(b, sizeof(b), res.bytes);
		if (!opt.json)
			fprintf(stderr, "%s  -\n", res.sha256);
		info("snapshot written to stdout: %s, %d entries, engine %s, revision %s", b,
		     cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(manifest, "entries")),
		     cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(manifest, "engine")),
		     cJSON_IsString(cJSON_GetObjectItemCaseSensitive(manifest, "revision")) ?
		     cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(manifest, "revision")) :
		     "base");
	} else {
		out("%s\n", res.path);
	}
	if (!opt.json && !stream) {
		char b[32];
		human_bytes(b, sizeof(b), res.bytes);
		verbose("%s, sha256 %s", b, res.sha256);
	}
	if (res.check && strcmp(res.check, "ok"))
		warning("the database fails PRAGMA quick_check (the snapshot keeps it as it is; "
			"a restore gives back these problems, with 'restore "
			"--accept-recorded-problems'): %.*s", (int)strcspn(res.check, "\n"),
			res.check);
	if (ctx->json) {
		cJSON_AddStringToObject(ctx->json, "path", res.path);
		cJSON_AddStringToObject(ctx->json, "sha256", res.sha256);
		cJSON_AddNumberToObject(ctx->json, "bytes", (double)res.bytes);
		if (res.check)
			cJSON_AddStringToObject(ctx->json, "quick_check", res.check);
		if (manifest) {
			cJSON_AddItemToObject(ctx->json, "manifest", manifest);
			manifest = NULL;
		}
	}
	code = EXIT_OK;
out:
	cJSON_Delete(manifest);
	backup_result_release(&res);
	engine_close(e);
	return code;
}

/* key: value, or null when there is none (--json keeps every key). */
static void add_str_or_null(cJSON *obj, const char *key, const char *value)
{
	if (value)
		cJSON_AddStringToObject(obj, key, value);
	else
		cJSON_AddNullToObject(obj, key);
}

int cmd_list_backups(struct cmd_ctx *ctx)
{
	struct snap_list l = SNAP_LIST_INIT;
	cJSON *arr = NULL;

	if (want_args(ctx, 0, 0) < 0 || snap_list(ctx->backup_dir, &l, &ctx->err) < 0)
		return report_error(ctx, &ctx->err);
	if (ctx->json)
		arr = cJSON_AddArrayToObject(ctx->json, "snapshots");
	if (!l.n)
		info("no snapshots in '%s'", ctx->backup_dir);
	else
		out("%-36s %-24s %10s  %-10s %-14s %s\n", "NAME", "CREATED", "SIZE", "ENGINE",
		    "REVISION", "SOURCE");
	/* newest first: the one an operator most likely wants is on top */
	for (size_t i = l.n; i-- > 0;) {
		const struct snap_info *s = &l.items[i];
		char b[32];

		human_bytes(b, sizeof(b), s->bytes);
		if (s->damaged)
			out("%-36s %-24s %10s  DAMAGED: %s\n", fs_basename(s->path),
			    s->created_at ? s->created_at : "-", b, s->problem);
		else
			out("%-36s %-24s %10s  %-10s %-14s %s\n", fs_basename(s->path),
			    s->created_at ? s->created_at : "-", b, s->engine ? s->engine : "-",
			    s->revision ? s->revision : "base", s->source ? s->source : "-");
		if (arr) {
			cJSON *o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "path", s->path);
			cJSON_AddStringToObject(o, "name", fs_basename(s->path));
			add_str_or_null(o, "created_at", s->created_at);
			cJSON_AddNumberToObject(o, "bytes", (double)s->bytes);
			add_str_or_null(o, "engine", s->engine);
			add_str_or_null(o, "revision", s->revision);
			/* which database: prune's rules hold per database */
			add_str_or_null(o, "source", s->source);
			add_str_or_null(o, "database", s->database);
			cJSON_AddBoolToObject(o, "damaged", s->damaged);
			if (s->problem)
				cJSON_AddStringToObject(o, "problem", s->problem);
			cJSON_AddItemToArray(arr, o);
		}
	}
	snap_list_release(&l);
	return EXIT_OK;
}

/* A snapshot argument: as given, or else relative to the backup directory. */
static char *snapshot_arg(struct cmd_ctx *ctx, const char *arg)
{
	if (!fs_exists(arg) && ctx->backup_dir && !strchr(arg, '/')) {
		char *p = fs_join(ctx->backup_dir, arg);
		if (fs_exists(p))
			return p;
		free(p);
	}
	return xstrdup(arg);
}

/* Compares what was restored with what the snapshot recorded; each
 * difference is a problem. */
static void compare_restored(const cJSON *manifest, const struct backup_summary *got,
			     struct snap_problems *pr)
{
	const cJSON *extra = cJSON_GetObjectItemCaseSensitive(manifest, "extra");
	const char *fp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(extra,
										 "schema_sha256"));
	const cJSON *rc = cJSON_GetObjectItemCaseSensitive(manifest, "row_counts"), *t;
	const char *differs = backup_content_differs(extra, got);

	if (differs)
		snap_problems_add(pr, "table %s: the restored content differs from the snapshot's "
			    "(content checksum)", differs);
	if (fp && got->schema_sha256[0] && strcmp(fp, got->schema_sha256))
		snap_problems_add(pr, "the restored schema differs from the snapshot's (fingerprint %.12s, "
			    "recorded %.12s)", got->schema_sha256, fp);
	if (!got->row_counts)
		return;
	cJSON_ArrayForEach(t, rc) {
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(got->row_counts, t->string);

		if (!cJSON_IsNumber(n))
			snap_problems_add(pr, "table %s was not restored", t->string);
		else if (n->valuedouble != t->valuedouble)
			snap_problems_add(pr, "table %s: %.0f rows restored, the snapshot recorded %.0f",
				    t->string, n->valuedouble, t->valuedouble);
	}
	cJSON_ArrayForEach(t, got->row_counts)
		if (!cJSON_GetObjectItemCaseSensitive(rc, t->string))
			snap_problems_add(pr, "table %s is not in the snapshot but was restored", t->string);
}

/*
 * verify --restore-to URL: restores the snapshot into a scratch database
 * (empty, or a new SQLite file) and compares the result with the schema
 * fingerprint and row counts the snapshot recorded.  A restore that fails
 * or a difference is a problem (exit 7); an unusable scratch database is
 * an error.
 */
static int restore_check(struct cmd_ctx *ctx, const char *path, const cJSON *manifest,
			 struct snap_problems *pr, struct sm_error *err)
{
	struct db_url to = DB_URL_INIT;
	struct engine *e = NULL;
	struct schema_model m = SCHEMA_MODEL_INIT;
	struct backup_summary got = BACKUP_SUMMARY_INIT;
	struct restore_opts ro;
	int ret = -1, existed = 1, rc;

	memset(&ro, 0, sizeof(ro));
	if (url_parse(opt.restore_to, NULL, &to, err) < 0)
		goto out;
	if (to.path && !fs_exists(to.path))
		existed = 0;
	if (engine_open(&e, &to, ENGINE_CREATE, err) < 0 ||
	    e->ops->lock(e, opt.lock_timeout_ms, err) < 0 || schema_load(e, &m, err) < 0)
		goto out;
	if (m.n) {
		err_set(err, ERR_USAGE, "scratch database '%s' is not empty (%zu object%s, e.g. "
			"'%s'); verify --restore-to needs an empty or new database", to.redacted,
			m.n, m.n == 1 ? "" : "s", m.items[0].name);
		goto out;
	}
	ro.jobs = opt.jobs;
	ro.to_other = 1;
	ro.target_new = !existed;
	ro.check_again = 1; /* the point of verify: trust nothing the snapshot says */
	ro.lock_timeout_ms = opt.lock_timeout_ms;
	ro.interrupted = &cli_interrupted;
	signals_watch(e);
	rc = restore_snapshot(path, e, &ro, err);
	signals_unwatch();
	if (rc < 0) {
		if (cli_interrupted)
			err->kind = ERR_INTERRUPTED;
		if (err->kind == ERR_INTERRUPTED || err->kind == ERR_USAGE)
			goto out;
		snap_problems_add(pr, "cannot be restored into '%s': %s", to.redacted, err->msg);
		err_clear(err);
		ret = 0;
		goto out;
	}
	got.want_content = 1;
	if (backup_describe(e, cJSON_GetObjectItemCaseSensitive(manifest, "extra"), &got, err) < 0)
		goto out;
	compare_restored(manifest, &got, pr);
	if (ctx->json)
		cJSON_AddStringToObject(ctx->json, "restored_to", to.redacted);
	info("restored into '%s'%s", to.redacted,
	     got.table_sha256 ? ", compared with the schema fingerprint, row counts and table "
				"checksums the snapshot recorded" :
	     got.schema_sha256[0] ? ", compared with the schema fingerprint and row counts the "
				    "snapshot recorded" :
	     got.row_counts ? ", compared with the row counts the snapshot recorded" : "");
	ret = 0;
out:
	backup_summary_release(&got);
	schema_release(&m);
	engine_close(e);
	url_release(&to);
	return ret;
}

/*
 * The stream's expected SHA-256, from --sha256 HEX or --sha256-file F (its
 * first line in sha256sum format, "HEX  NAME"; what `backup --output -`
 * prints).  *sha NULL when neither is given.  Only for a stream: a file is
 * checked against its own .sha256 sidecar.  A stream is never a terminal.
 */
static int expected_sha(const char *snapshot, char buf[HASH_HEX_LEN + 1], const char **sha,
			struct sm_error *err)
{
	struct strbuf sb = STRBUF_INIT;
	const char *text = opt.sha256;

	*sha = NULL;
	if (is_stream_arg(snapshot) && isatty(0))
		return err_set(err, ERR_USAGE, "refusing to read a snapshot from a terminal; "
			       "redirect or pipe stdin");
	if (!opt.sha256 && !opt.sha256_file)
		return 0;
	if (opt.sha256 && opt.sha256_file)
		return err_set(err, ERR_USAGE, "--sha256 and --sha256-file exclude each other");
	if (!is_stream_arg(snapshot))
		return err_set(err, ERR_USAGE, "--sha256 and --sha256-file are for a snapshot read "
			       "from stdin ('-'); a snapshot file is checked against its .sha256 "
			       "sidecar");
	if (opt.sha256_file) {
		if (fs_read_file(opt.sha256_file, &sb, 4096, err) < 0)
			return -1;
		if (sb.len > HASH_HEX_LEN && !strchr(" \t\n", sb.buf[HASH_HEX_LEN])) {
			sb_release(&sb);
			return err_set(err, ERR_USAGE, "'%s' does not start with a SHA-256 (64 hex "
				       "digits, as sha256sum writes)", opt.sha256_file);
		}
		if (sb.len > HASH_HEX_LEN)
			sb_setlen(&sb, HASH_HEX_LEN);
		text = sb.buf;
	}
	if (!snap_sha256_valid(text)) {
		err_set(err, ERR_USAGE, "invalid SHA-256 %s%s%s: expected 64 hex digits",
			opt.sha256_file ? "in '" : "'", opt.sha256_file ? opt.sha256_file : text,
			"'");
		sb_release(&sb);
		return -1;
	}
	memcpy(buf, text, HASH_HEX_LEN);
	buf[HASH_HEX_LEN] = '\0';
	*sha = buf;
	sb_release(&sb);
	return 0;
}

int cmd_verify(struct cmd_ctx *ctx)
{
	struct snap_problems pr = SNAP_PROBLEMS_INIT;
	char *path = NULL;
	cJSON *arr = NULL, *manifest = NULL;
	char shabuf[HASH_HEX_LEN + 1];
	const char *sha = NULL;
	int code, stream;

	if (want_args(ctx, 1, 1) < 0)
		return report_error(ctx, &ctx->err);
	if (opt.jobs > 1 && !opt.restore_to) {
		err_set(&ctx->err, ERR_USAGE, "--jobs is for 'verify --restore-to URL'");
		return report_error(ctx, &ctx->err);
	}
	stream = is_stream_arg(ctx->argv[0]);
	if (expected_sha(ctx->argv[0], shabuf, &sha, &ctx->err) < 0)
		return report_error(ctx, &ctx->err);
	if (stream && opt.restore_to) {
		err_set(&ctx->err, ERR_USAGE, "verify - --restore-to: a stream is read once; use "
			"'restore - --to URL', which verifies before it commits");
		return report_error(ctx, &ctx->err);
	}
	if (stream && !sha)
		warning("no --sha256 or --sha256-file: the stream is checked against its own "
			"manifest only, not against a checksum kept apart from it");
	path = stream ? xstrdup("-") : snapshot_arg(ctx, ctx->argv[0]);
	if ((stream ? snap_verify_fd(0, path, sha, &pr, &manifest, &ctx->err) :
		      snap_verify(path, &pr, &manifest, &ctx->err)) < 0 ||
	    (opt.restore_to && !pr.n && restore_check(ctx, path, manifest, &pr, &ctx->err) < 0)) {
		code = report_error(ctx, &ctx->err);
		goto out;
	}
	if (ctx->json) {
		cJSON_AddStringToObject(ctx->json, "path", path);
		cJSON_AddBoolToObject(ctx->json, "ok", pr.n == 0);
		arr = cJSON_AddArrayToObject(ctx->json, "problems");
		for (size_t i = 0; i < pr.n; i++)
			cJSON_AddItemToArray(arr, cJSON_CreateString(pr.items[i]));
	}
	if (!pr.n) {
		crypt_verify_report(ctx, manifest);
		out("ok: %s\n", path);
		code = EXIT_OK;
		goto out;
	}
	out("damaged: %s\n", path);
	for (size_t i = 0; i < pr.n; i++)
		out("  - %s\n", pr.items[i]);
	if (!opt.json)
		error_msg("snapshot '%s' is damaged: %s", path, pr.items[0]);
	code = EXIT_PROBLEMS;
out:
	cJSON_Delete(manifest);
	snap_problems_release(&pr);
	free(path);
	return code;
}

struct restore_ui {
	struct cmd_ctx *ctx;
	struct engine *target;
	const char *snapshot;
	int safety;             /* take a safety snapshot before applying */
	int in_place;           /* the target is the configured database (not a scratch --to) */
	struct backup_result safety_res;
	struct progress *pr;
};

/* An in-place restore puts back the database the snapshot was taken from;
 * one of another database (a shared backup directory, a mistyped name) is
 * refused unless --force.  Compared by identity (engine.h), not URL text. */
static int compare_source(const struct restore_ui *ui, const cJSON *src_id, const cJSON *src,
			  struct sm_error *err)
{
	struct engine_identity id;

	if (!cJSON_IsString(src_id))
		return 0; /* an older snapshot, or the source would not tell */
	if (ui->target->ops->identity(ui->target, &id, err) < 0)
		return -1;
	if (!strcmp(id.key, src_id->valuestring))
		return 0;
	if (opt.force) {
		warning("snapshot '%s' was taken from '%s', not from '%s' (%s); restoring it anyway "
			"(--force)", fs_basename(ui->snapshot),
			cJSON_IsString(src) ? src->valuestring : "?", ui->target->url.redacted,
			id.label);
		return 0;
	}
	return err_set(err, ERR_FAIL, "snapshot '%s' was taken from another database ('%s', "
		       "identity %s), not from '%s' (%s, identity %s); nothing was restored. Pass "
		       "--force to restore it over '%s' anyway (a SQLite file replaced by a "
		       "copy, or a PostgreSQL database re-created, counts as another database)",
		       fs_basename(ui->snapshot), cJSON_IsString(src) ? src->valuestring : "?",
		       src_id->valuestring, ui->target->url.redacted, id.label, id.key,
		       ui->target->url.redacted);
}

static int check_source(const struct restore_ui *ui, const cJSON *manifest,
			const cJSON *header, struct sm_error *err)
{
	/* a driver that verifies while applying hands over no manifest yet:
	 * the header carries the same fields (checked equal to the manifest's,
	 * and the whole file against its sidecar, before anything commits) */
	const cJSON *m = manifest ? manifest : header;

	return compare_source(ui, cJSON_GetObjectItemCaseSensitive(m, "source_identity"),
			      cJSON_GetObjectItemCaseSensitive(m, "source"), err);
}

/* Between verification and touching the target: confirm, safety snapshot. */
static int before_apply(void *ud, const cJSON *manifest, const cJSON *header,
			struct sm_error *err)
{
	struct restore_ui *ui = ud;
	struct strbuf q = STRBUF_INIT;
	int ok;

	progress_end(ui->pr);
	if (ui->in_place && check_source(ui, manifest, header, err) < 0)
		return -1;
	sb_addf(&q, "replace the contents of '%s' with snapshot '%s'?", ui->target->url.redacted,
		fs_basename(ui->snapshot));
	ok = confirm(q.buf, err);
	sb_release(&q);
	if (!ok)
		return -1;
	if (ui->safety) {
		if (port_backup(ui->ctx, ui->target, NULL, "safety snapshot", 0, &ui->safety_res, err) < 0)
			return err_prefix(err, "cannot take the safety snapshot; nothing was "
					  "restored");
		info("safety snapshot of the current database: %s", ui->safety_res.path);
	}
	return 0;
}

int cmd_restore(struct cmd_ctx *ctx)
{
	struct db_url to = DB_URL_INIT;
	const struct db_url *target_url = &ctx->url;
	struct engine *e = NULL;
	struct restore_ui ui;
	struct restore_opts ro;
	struct progress pr;
	struct strbuf notes = STRBUF_INIT;
	char *path = NULL;
	char shabuf[HASH_HEX_LEN + 1];
	const char *sha = NULL;
	int code, rc, existed = 1, stream;

	memset(&ui, 0, sizeof(ui));
	memset(&ro, 0, sizeof(ro));
	if (want_args(ctx, 1, 1) < 0)
		return report_error(ctx, &ctx->err);
	stream = is_stream_arg(ctx->argv[0]);
	if (expected_sha(ctx->argv[0], shabuf, &sha, &ctx->err) < 0)
		return report_error(ctx, &ctx->err);
	path = stream ? xstrdup("-") : snapshot_arg(ctx, ctx->argv[0]);
	if (opt.to_url) {
		if (url_parse(opt.to_url, NULL, &to, &ctx->err) < 0) {
			code = report_error(ctx, &ctx->err);
			goto out;
		}
		target_url = &to;
	} else if (!ctx->have_url) {
		err_set(&ctx->err, ERR_USAGE, "no database configured: pass -d URL or --to URL");
		code = report_error(ctx, &ctx->err);
		goto out;
	}
	if (!opt.yes && (stream || !isatty(0))) {
		err_set(&ctx->err, ERR_USAGE, "restore replaces the database's contents: refusing "
			"without confirmation; %s, so pass --yes to proceed",
			stream ? "stdin carries the snapshot" : "stdin is not a terminal");
		code = report_error(ctx, &ctx->err);
		goto out;
	}
	if (stream && !sha)
		warning("no --sha256 or --sha256-file: the stream is checked against its own "
			"manifest only, not against a checksum kept apart from it");
	if (!stream && !fs_exists(path)) {
		err_set(&ctx->err, ERR_FAIL, "cannot open snapshot '%s': No such file or directory",
			path);
		code = report_error(ctx, &ctx->err);
		goto out;
	}
	if (target_url->path && !fs_exists(target_url->path))
		existed = 0;
	/* a new database only for --to: restoring "over" a mistyped -d path
	 * would silently create a stray file */
	if (engine_open(&e, target_url, opt.to_url ? ENGINE_CREATE : 0, &ctx->err) < 0 ||
	    e->ops->lock(e, opt.lock_timeout_ms, &ctx->err) < 0) {
		code = report_error(ctx, &ctx->err);
		goto out;
	}
	/* --to naming the configured database (by identity: ./app.db, a
	 * keyword/value conninfo) is an in-place restore */
	ui.in_place = !opt.to_url;
	if (opt.to_url && ctx->have_url &&
	    engine_same_database(e, &ctx->url, &ui.in_place, &ctx->err) < 0) {
		code = report_error(ctx, &ctx->err);
		goto out;
	}
	if (opt.jobs > 1 && ui.in_place) {
		/* in place the restore is one transaction: all or nothing */
		err_set(&ctx->err, ERR_USAGE, "--jobs %d: a parallel restore is not atomic, so it is "
			"only for 'restore --to URL' into a scratch database; '%s' is the database "
			"itself, and an in-place restore is one transaction (omit --jobs)", opt.jobs,
			e->url.redacted);
		code = report_error(ctx, &ctx->err);
		goto out;
	}
	progress_init(&pr, "restore");
	ui.ctx = ctx;
	ui.target = e;
	ui.snapshot = path;
	ui.safety = !opt.no_safety_backup && existed;
	ui.pr = &pr;
	ro.before_apply = before_apply;
	ro.ud = &ui;
	ro.progress = progress_cb;
	ro.progress_ud = &pr;
	ro.jobs = opt.jobs;
	ro.to_other = !ui.in_place;
	ro.lock_timeout_ms = opt.lock_timeout_ms;
	ro.target_new = !existed && opt.to_url;
	ro.check_again = opt.check_again;
	ro.accept_recorded_problems = opt.accept_recorded_problems;
	ro.notes = &notes;
	ro.interrupted = &cli_interrupted;
	/* Ctrl-C or SIGTERM: the restore stops at its next block or statement,
	 * the statement running on the server is cancelled, and the target is
	 * left as the restore's atomicity promises (exit 130) */
	signals_watch(e);
	rc = stream ? restore_snapshot_fd(0, path, sha, e, &ro, &ctx->err) :
		      restore_snapshot(path, e, &ro, &ctx->err);
	signals_unwatch();
	if (rc < 0) {
		if (cli_interrupted)
			ctx->err.kind = ERR_INTERRUPTED;
		progress_end(&pr);
		if (ui.safety_res.path)
			err_prefix(&ctx->err, "(safety snapshot: %s)", ui.safety_res.path);
		code = report_error(ctx, &ctx->err);
		goto out;
	}
	progress_end(&pr);
	warning_lines(notes.buf);
	info("restored '%s' into '%s'", path, e->url.redacted);
	out("%s\n", e->url.redacted);
	if (ctx->json) {
		cJSON_AddStringToObject(ctx->json, "restored", path);
		cJSON_AddStringToObject(ctx->json, "target", e->url.redacted);
		add_str_or_null(ctx->json, "safety_snapshot", ui.safety_res.path);
	}
	code = EXIT_OK;
out:
	if (!existed && code != EXIT_OK && e && opt.to_url) {
		/* do not leave the empty file we created for a failed --to */
		char *p = xstrdup(e->url.path);
		engine_close(e);
		e = NULL;
		unlink(p);
		free(p);
	}
	engine_close(e);
	backup_result_release(&ui.safety_res);
	url_release(&to);
	sb_release(&notes);
	free(path);
	return code;
}

/* --- prune ----------------------------------------------------------------- */

/* The n-digit decimal number at p, or -1. */
static long long digits_at(const char *p, int n)
{
	long long v = 0;

	for (int i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	return v;
}

/* When a snapshot was taken: its header's created_at
 * ("YYYY-MM-DDTHH:MM:SS.mmmZ", UTC), else its file's mtime. */
static time_t snap_time(const struct snap_info *s)
{
	const char *c = s->created_at;
	long long y, mo, d, h, mi, sec, yy, era, yoe, doy, doe;

	if (!c || strlen(c) < 19 || c[4] != '-' || c[7] != '-' || c[10] != 'T' || c[13] != ':' ||
	    c[16] != ':')
		return s->mtime;
	y = digits_at(c, 4);
	mo = digits_at(c + 5, 2);
	d = digits_at(c + 8, 2);
	h = digits_at(c + 11, 2);
	mi = digits_at(c + 14, 2);
	sec = digits_at(c + 17, 2);
	if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || mi < 0 || sec < 0)
		return s->mtime;
	/* days since 1970-01-01 of a proleptic Gregorian date (no timegm in C11) */
	yy = y - (mo <= 2);
	era = (yy >= 0 ? yy : yy - 399) / 400;
	yoe = yy - era * 400;
	doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return (time_t)((era * 146097 + doe - 719468) * 86400 + h * 3600 + mi * 60 + sec);
}

/* "90m", "36h", "7d", "2w" (also "s", "min") into seconds. */
static int parse_retention(const char *text, long long *secs)
{
	static const struct { const char *unit; long long secs; } units[] = {
		{ "s", 1 }, { "m", 60 }, { "min", 60 }, { "h", 3600 }, { "d", 86400 },
		{ "w", 604800 },
	};
	char *end;
	long long v;

	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno || end == text || v < 0 || v > 100LL * 366 * 86400 || text[0] == '+')
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcmp(end, units[i].unit)) {
			*secs = v * units[i].secs;
			return 0;
		}
	return -1;
}

static int parse_count(const char *text, const char *flag, long *out, struct sm_error *err)
{
	char *end;

	errno = 0;
	*out = strtol(text, &end, 10);
	if (errno || end == text || *end || *out < 0 || text[0] == '-' || text[0] == '+' ||
	    text[0] == ' ')
		return err_set(err, ERR_USAGE, "invalid %s '%s': expected a non-negative integer",
			       flag, text);
	return 0;
}

/* Why each snapshot stays (NULL: it goes), by the user's rules. */
static void retention_rules(const struct snap_list *l, long keep, long long within,
			    long daily, time_t now, const char **why)
{
	long days = 0;
	long long last_day = 0;

	for (size_t k = 0; k < l->n; k++) {
		size_t i = l->n - 1 - k; /* newest first */
		time_t t = snap_time(&l->items[i]);
		long long day = (long long)(t >= 0 ? t / 86400 : (t - 86399) / 86400);

		why[i] = NULL;
		if (keep >= 0 && (long)k < keep)
			why[i] = "--keep";
		else if (within >= 0 && (long long)(now - t) <= within)
			why[i] = "--keep-within";
		if (daily > 0 && days < daily && (days == 0 || day != last_day)) {
			if (!why[i])
				why[i] = "--keep-daily";
			days++;
			last_day = day;
		}
	}
}

/* What the rules may not delete: a snapshot an unfinished run names (its
 * journal). */
static int retention_open_runs(struct cmd_ctx *ctx, const struct snap_list *l, const char **why)
{
	struct strbuf open_runs = STRBUF_INIT;

	if (journal_open_snapshots(ctx->backup_dir, &open_runs, &ctx->err) < 0) {
		sb_release(&open_runs);
		return -1;
	}
	for (size_t i = 0; i < l->n; i++) {
		const char *base = fs_basename(l->items[i].path);

		if (lines_contain(open_runs.buf, base, strlen(base)))
			why[i] = "an unfinished run's snapshot (see 'safe-migrate recover')";
	}
	sb_release(&open_runs);
	return 0;
}

/* Nor the newest snapshot that passes verification. */
static int retention_newest_verified(struct cmd_ctx *ctx, const struct snap_list *l,
				     const char **why)
{
	for (size_t k = 0; k < l->n; k++) {
		size_t i = l->n - 1 - k;
		struct snap_problems pr = SNAP_PROBLEMS_INIT;
		int good;

		if (l->items[i].damaged)
			continue;
		if (snap_verify(l->items[i].path, &pr, NULL, &ctx->err) < 0)
			return -1;
		good = pr.n == 0;
		snap_problems_release(&pr);
		if (good) {
			if (!why[i])
				why[i] = "the newest verified snapshot";
			break;
		}
	}
	return 0;
}

static int same_database(const struct snap_info *a, const struct snap_info *b)
{
	if (a->database && b->database)
		return !strcmp(a->database, b->database);
	return !a->database && !b->database;
}

/* The rules and the newest-verified guard hold for each database's
 * snapshots (the database its header names; those naming none are one
 * more lot), so one backup directory may serve several databases: pruning
 * after one's backups never takes another's last snapshot.  A damaged
 * snapshot, whose header says nothing, is judged by the rules among all
 * of them, as if the directory served one database. */
static int retention_per_database(struct cmd_ctx *ctx, const struct snap_list *l, long keep,
				  long long within, long daily, const char **why)
{
	struct snap_list lot = SNAP_LIST_INIT;
	const char **lot_why = xcalloc(l->n + 1, sizeof(*lot_why));
	size_t *at = xcalloc(l->n + 1, sizeof(*at));
	unsigned char *taken = xcalloc(l->n + 1, 1);
	time_t now = time(NULL);
	int ret = 0;

	lot.items = xcalloc(l->n + 1, sizeof(*lot.items)); /* borrowed copies */
	retention_rules(l, keep, within, daily, now, lot_why);
	for (size_t i = 0; i < l->n; i++)
		if (l->items[i].damaged) {
			taken[i] = 1;
			why[i] = lot_why[i];
		}
	for (size_t first = 0; first < l->n && ret == 0; first++) {
		if (taken[first])
			continue;
		lot.n = 0;
		for (size_t i = first; i < l->n; i++)
			if (!taken[i] && same_database(&l->items[first], &l->items[i])) {
				taken[i] = 1;
				at[lot.n] = i;
				lot.items[lot.n++] = l->items[i]; /* oldest first, as l */
			}
		retention_rules(&lot, keep, within, daily, now, lot_why);
		ret = retention_newest_verified(ctx, &lot, lot_why);
		for (size_t k = 0; k < lot.n; k++)
			why[at[k]] = lot_why[k];
	}
	free(lot.items);
	free(lot_why);
	free(at);
	free(taken);
	return ret;
}

int cmd_prune(struct cmd_ctx *ctx)
{
	struct snap_list l = SNAP_LIST_INIT;
	cJSON *removed = NULL, *kept = NULL, *reasons = NULL;
	const char **why = NULL;
	long keep = -1, daily = 0;
	long long within = -1;
	int code = EXIT_OK;

	if (want_args(ctx, 0, 0) < 0)
		return report_error(ctx, &ctx->err);
	if (!opt.keep && !opt.keep_within && !opt.keep_daily) {
		err_set(&ctx->err, ERR_USAGE, "prune needs --keep N (the number of newest snapshots "
			"to keep), --keep-within DURATION or --keep-daily N");
		return report_error(ctx, &ctx->err);
	}
	if ((opt.keep && parse_count(opt.keep, "--keep", &keep, &ctx->err) < 0) ||
	    (opt.keep_daily && parse_count(opt.keep_daily, "--keep-daily", &daily, &ctx->err) < 0))
		return report_error(ctx, &ctx->err);
	if (opt.keep_within && parse_retention(opt.keep_within, &within) < 0) {
		err_set(&ctx->err, ERR_USAGE, "invalid --keep-within '%s': expected a duration such "
			"as 90m, 36h, 7d or 2w", opt.keep_within);
		return report_error(ctx, &ctx->err);
	}
	if (snap_list(ctx->backup_dir, &l, &ctx->err) < 0)
		return report_error(ctx, &ctx->err);
	why = xcalloc(l.n + 1, sizeof(*why));
	if (retention_per_database(ctx, &l, keep, within, daily, why) < 0 ||
	    retention_open_runs(ctx, &l, why) < 0) {
		err_prefix(&ctx->err, "nothing was pruned");
		code = report_error(ctx, &ctx->err);
		goto out;
	}
	if (ctx->json) {
		removed = cJSON_AddArrayToObject(ctx->json, "removed");
		kept = cJSON_AddArrayToObject(ctx->json, "kept");
		reasons = cJSON_AddObjectToObject(ctx->json, "kept_because");
	}
	for (size_t i = 0; i < l.n; i++) {
		const char *p = l.items[i].path;

		if (why[i]) {
			if (kept) {
				cJSON_AddItemToArray(kept, cJSON_CreateString(p));
				cJSON_AddStringToObject(reasons, p, why[i]);
			}
			verbose("kept %s (%s)", p, why[i]);
			continue;
		}
		if (snap_remove(p, &ctx->err) < 0) {
			code = report_error(ctx, &ctx->err);
			break;
		}
		out("removed %s\n", p);
		if (removed)
			cJSON_AddItemToArray(removed, cJSON_CreateString(p));
	}
out:
	free(why);
	snap_list_release(&l);
	return code;
}

/* --- drop-tables ------------------------------------------------------------ */

/* Drops every user object.  The engine interface has no "list user
 * objects" and this is the only command that needs it, so each engine gives
 * the query that lists them here; one loop drops them all. */
/* Drops everything the engine's drop_list_sql lists, in one transaction;
 * dropped gets "kind name" lines. */
static int drop_all(struct engine *e, struct strbuf *dropped, struct sm_error *err)
{
	struct eng_rows rows = ENG_ROWS_INIT;
	struct strbuf sql = STRBUF_INIT;
	int ret = -1;

	if (e->ops->drop_prepare_sql && engine_exec(e, e->ops->drop_prepare_sql, err) < 0)
		return -1;
	if (e->ops->begin(e, err) < 0)
		return -1;
	if (e->ops->query(e, e->ops->drop_list_sql, 0, NULL, &rows, err) < 0)
		goto out;
	for (size_t i = 0; i < rows.nrows; i++) {
		const char *kind = rows_get(&rows, i, 0);

		sb_reset(&sql);
		sb_addf(&sql, "DROP %s IF EXISTS %s%s", kind, rows_get(&rows, i, 1),
			e->ops->drop_suffix);
		if (engine_exec(e, sql.buf, err) < 0)
			goto out;
		sb_addf(dropped, "%s %s\n", kind, rows_get(&rows, i, 2));
	}
	if (e->ops->commit(e, err) < 0)
		goto out;
	ret = 0;
out:
	if (ret < 0) {
		struct sm_error ignored = SM_ERROR_INIT;
		e->ops->rollback(e, &ignored);
	}
	rows_release(&rows);
	sb_release(&sql);
	return ret;
}

int cmd_drop_tables(struct cmd_ctx *ctx)
{
	struct engine *e = NULL;
	struct backup_result res = BACKUP_RESULT_INIT;
	struct strbuf dropped = STRBUF_INIT, q = STRBUF_INIT;
	int code;

	if (want_args(ctx, 0, 0) < 0)
		return report_error(ctx, &ctx->err);
	if (engine_open(&e, &ctx->url, 0, &ctx->err) < 0)
		goto fail;
	if (!e->ops->drop_list_sql) {
		err_set(&ctx->err, ERR_FAIL, "drop-tables is not supported for %s in this build",
			e->ops->display_name);
		goto fail;
	}
	sb_addf(&q, "drop every table, view and sequence in '%s' (a snapshot is taken first)?",
		e->url.redacted);
	if (!confirm(q.buf, &ctx->err))
		goto fail;
	if (e->ops->lock(e, opt.lock_timeout_ms, &ctx->err) < 0)
		goto fail;
	if (port_backup(ctx, e, NULL, "safety snapshot", 0, &res, &ctx->err) < 0) {
		err_prefix(&ctx->err, "cannot take the safety snapshot; nothing was dropped");
		goto fail;
	}
	info("safety snapshot: %s (undo with: safe-migrate restore %s)", res.path, res.path);
	if (drop_all(e, &dropped, &ctx->err) < 0) {
		err_prefix(&ctx->err, "drop-tables failed and was rolled back (snapshot: %s)",
			   res.path);
		goto fail;
	}
	out("%s\n", res.path);
	if (ctx->json) {
		cJSON *arr = cJSON_AddArrayToObject(ctx->json, "dropped");
		const char *p = dropped.buf, *nl;
		cJSON_AddStringToObject(ctx->json, "snapshot", res.path);
		for (; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
			char *item = xstrndup(p, (size_t)(nl - p));
			cJSON_AddItemToArray(arr, cJSON_CreateString(item));
			free(item);
		}
	}
	code = EXIT_OK;
	goto out;
fail:
	code = report_error(ctx, &ctx->err);
out:
	engine_close(e);
	backup_result_release(&res);
	sb_release(&dropped);
	sb_release(&q);
	return code;
}
