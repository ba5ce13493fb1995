/*
 * journal: durable run journal and the append-only runs log (see journal.h).
 */
#include "journal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "hash.h"
#include "history.h"
#include "plan.h"
#include "strbuf.h"
#include "xalloc.h"

char *journal_path(const char *backup_dir, const struct engine_identity *id)
{
	char hex[HASH_HEX_LEN + 1], name[64];

	hash_buf_hex(id->key, strlen(id->key), hex);
	snprintf(name, sizeof(name), "safe-migrate-%.16s.journal", hex);
	return fs_join(backup_dir, name);
}

const char *journal_str(const cJSON *doc, const char *key, const char *def)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, key);

	return cJSON_IsString(v) ? v->valuestring : def;
}

static void set_str(cJSON *doc, const char *key, const char *val)
{
	cJSON_DeleteItemFromObject(doc, key);
	cJSON_AddStringToObject(doc, key, val);
}

void journal_start(struct journal *j, const char *backup_dir, const struct engine_identity *id,
		   const char *command, const char *database_redacted)
{
	char when[32], run_id[64];
	char *user = hist_os_user();
	struct timespec ts;

	memset(j, 0, sizeof(*j));
	j->dir = xstrdup(backup_dir);
	j->path = journal_path(backup_dir, id);
	j->t0 = plan_now_ms();
	hist_now_iso(when);
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(run_id, sizeof(run_id), "%lld.%09ld-%ld", (long long)ts.tv_sec, ts.tv_nsec,
		 (long)getpid());
	j->doc = cJSON_CreateObject();
	cJSON_AddStringToObject(j->doc, "run_id", run_id);
	cJSON_AddStringToObject(j->doc, "started_at", when);
	cJSON_AddNumberToObject(j->doc, "pid", (double)getpid());
	cJSON_AddStringToObject(j->doc, "user", user);
	cJSON_AddStringToObject(j->doc, "database", database_redacted);
	cJSON_AddStringToObject(j->doc, "identity", id->key);
	cJSON_AddStringToObject(j->doc, "database_label", id->label);
	cJSON_AddStringToObject(j->doc, "command", command);
	cJSON_AddStringToObject(j->doc, "phase", "start");
	cJSON_AddNullToObject(j->doc, "snapshot");
	cJSON_AddNullToObject(j->doc, "outcome");
	cJSON_AddArrayToObject(j->doc, "phases");
	free(user);
}

static int write_doc(const char *dir, const char *path, const cJSON *doc, struct sm_error *err)
{
	char *text = cJSON_PrintUnformatted(doc);
	struct strbuf sb = STRBUF_INIT;
	int rc;

	sb_adds(&sb, text);
	sb_addch(&sb, '\n');
	free(text);
	if (fs_mkdirs(dir, 0700, err) < 0) {
		sb_release(&sb);
		return -1;
	}
	rc = fs_write_atomic(path, sb.buf, sb.len, 0600, err);
	sb_release(&sb);
	return rc;
}

/* Writes this run's journal; refuses to replace another run's unfinished
 * one (the caller holds the lock and checked, so this is a last guard). */
static int journal_write(struct journal *j, struct sm_error *err)
{
	cJSON *cur = NULL;

	if (!j->written) {
		if (journal_read(j->path, &cur, err) < 0)
			return -1;
		if (cur && journal_unfinished(cur) &&
		    strcmp(journal_str(cur, "run_id", ""), journal_str(j->doc, "run_id", "?"))) {
			err_set(err, ERR_BLOCKED, "run journal '%s' holds another run (%s) that did "
				"not finish; it is left as it is", j->path,
				journal_str(cur, "run_id", "?"));
			cJSON_Delete(cur);
			return -1;
		}
		cJSON_Delete(cur);
	}
	if (write_doc(j->dir, j->path, j->doc, err) < 0)
		return -1;
	j->written = 1;
	return 0;
}

int journal_phase(struct journal *j, const char *phase, const char *snapshot,
		  struct sm_error *err)
{
	set_str(j->doc, "phase", phase);
	if (snapshot)
		set_str(j->doc, "snapshot", snapshot);
	return journal_write(j, err);
}

void journal_set_snapshot_sha(struct journal *j, const char *sha256)
{
	set_str(j->doc, "snapshot_sha256", sha256);
}

int journal_follow(struct journal *j, const struct engine_identity *id, struct sm_error *err)
{
	char *old = j->path, *was = xstrdup(journal_str(j->doc, "identity", ""));
	int written = j->written, ret = -1;

	j->path = journal_path(j->dir, id);
	set_str(j->doc, "identity", id->key);
	set_str(j->doc, "replaced_identity", was);
	if (!written) {
		ret = 0;
		goto out;
	}
	/* under the new name it is a first write: journal_write's guard
	 * against another run's unfinished journal applies */
	j->written = 0;
	if (journal_write(j, err) < 0) {
		free(j->path);
		j->path = old;
		old = NULL;
		set_str(j->doc, "identity", was);
		cJSON_DeleteItemFromObject(j->doc, "replaced_identity");
		j->written = written;
		goto out;
	}
	if (unlink(old) < 0 && errno != ENOENT) {
		err_sys(err, "cannot remove the run journal '%s'", old);
		goto out;
	}
	ret = fs_fsync_dir(j->dir, err);
out:
	free(old);
	free(was);
	return ret;
}

int journal_set_child(struct journal *j, long pid, long pgid, struct sm_error *err)
{
	cJSON_DeleteItemFromObject(j->doc, "child_pid");
	cJSON_DeleteItemFromObject(j->doc, "child_pgid");
	cJSON_AddNumberToObject(j->doc, "child_pid", (double)pid);
	cJSON_AddNumberToObject(j->doc, "child_pgid", (double)pgid);
	return journal_write(j, err);
}

void journal_add_phase(struct journal *j, const char *name, long long ms, int ok)
{
	cJSON *arr = cJSON_GetObjectItem(j->doc, "phases");
	cJSON *p = cJSON_CreateObject();

	cJSON_AddStringToObject(p, "name", name);
	cJSON_AddNumberToObject(p, "ms", (double)ms);
	cJSON_AddBoolToObject(p, "ok", ok);
	cJSON_AddItemToArray(arr, p);
}

/* Appends doc (with extra merged, without "phase") to the runs log. */
static int append_runs_log(const char *dir, const cJSON *doc, const char *outcome,
			   const cJSON *extra, struct sm_error *err)
{
	cJSON *copy = cJSON_Duplicate(doc, 1);
	struct strbuf sb = STRBUF_INIT;
	char *line, *log_path;
	int rc;

	cJSON_DeleteItemFromObject(copy, "phase");
	set_str(copy, "outcome", outcome);
	for (const cJSON *it = extra ? extra->child : NULL; it; it = it->next) {
		cJSON_DeleteItemFromObject(copy, it->string);
		cJSON_AddItemToObject(copy, it->string, cJSON_Duplicate(it, 1));
	}
	line = cJSON_PrintUnformatted(copy);
	cJSON_Delete(copy);
	sb_adds(&sb, line);
	sb_addch(&sb, '\n');
	free(line);
	log_path = fs_join(dir, RUNS_LOG_FILE);
	rc = fs_append_durable(log_path, sb.buf, 0600, err);
	free(log_path);
	sb_release(&sb);
	return rc;
}

int journal_stays_open(const char *outcome)
{
	return !strcmp(outcome, "restore_failed") || !strcmp(outcome, "concurrent_writes");
}

int journal_finish(struct journal *j, const char *outcome, const cJSON *extra,
		   struct sm_error *err)
{
	char when[32];
	int still_open = journal_stays_open(outcome);

	hist_now_iso(when);
	if (still_open) {
		/* the database may be half-migrated: the journal stays unfinished */
		set_str(j->doc, "phase", outcome);
	} else {
		set_str(j->doc, "outcome", outcome);
		set_str(j->doc, "phase", "done");
	}
	set_str(j->doc, "finished_at", when);
	cJSON_DeleteItemFromObject(j->doc, "ms");
	cJSON_AddNumberToObject(j->doc, "ms", (double)(plan_now_ms() - j->t0));
	/* a run that never reached a change leaves the last run's journal be */
	if ((j->written || still_open) && journal_write(j, err) < 0)
		return -1;
	return append_runs_log(j->dir, j->doc, outcome, extra, err);
}

void journal_release(struct journal *j)
{
	cJSON_Delete(j->doc);
	free(j->path);
	free(j->dir);
	memset(j, 0, sizeof(*j));
}

int journal_drop_own(struct journal *j, struct sm_error *err)
{
	cJSON *doc = NULL;
	int ret = -1;

	if (!j->written)
		return 0;
	if (journal_read(j->path, &doc, err) < 0)
		return -1;
	if (!doc || !journal_unfinished(doc) ||
	    strcmp(journal_str(doc, "run_id", ""), journal_str(j->doc, "run_id", "?"))) {
		ret = 0;
		goto out;
	}
	if (unlink(j->path) < 0) {
		err_sys(err, "cannot remove the run journal '%s'", j->path);
		goto out;
	}
	ret = fs_fsync_dir(j->dir, err);
out:
	cJSON_Delete(doc);
	return ret;
}

int journal_read(const char *path, cJSON **doc, struct sm_error *err)
{
	struct strbuf text = STRBUF_INIT;
	int ret = -1;

	*doc = NULL;
	if (!fs_exists(path))
		return 0;
	if (fs_read_file(path, &text, 1 << 20, err) < 0)
		goto out;
	*doc = cJSON_Parse(text.buf);
	if (!*doc || !cJSON_IsObject(*doc)) {
		cJSON_Delete(*doc);
		*doc = NULL;
		err_set(err, ERR_FAIL, "run journal '%s' is damaged; inspect it, then remove it", path);
		goto out;
	}
	ret = 0;
out:
	sb_release(&text);
	return ret;
}

int journal_find(const char *backup_dir, const struct engine_identity *id,
		 const char *url_redacted, char **path, cJSON **doc, struct sm_error *err)
{
	char *p = journal_path(backup_dir, id);
	cJSON *d = NULL;

	*path = NULL;
	*doc = NULL;
	if (journal_read(p, &d, err) < 0) {
		free(p);
		return -1;
	}
	if (!d) {
		/* an older version's shared journal, for the URL it names */
		free(p);
		p = fs_join(backup_dir, JOURNAL_LEGACY_FILE);
		if (journal_read(p, &d, err) < 0) {
			free(p);
			return -1;
		}
		(void)url_redacted;
		if (d && !journal_unfinished(d)) {
			cJSON_Delete(d);
			d = NULL;
		}
	}
	if (!d) {
		free(p);
		return 0;
	}
	*path = p;
	*doc = d;
	return 0;
}

int journal_unfinished(const cJSON *doc)
{
	const cJSON *outcome = cJSON_GetObjectItem(doc, "outcome");

	return doc && (!outcome || cJSON_IsNull(outcome));
}

int journal_belongs(const cJSON *doc, const struct engine_identity *id, const char *url_redacted)
{
	const char *theirs = journal_str(doc, "identity", NULL);
	const char *url = journal_str(doc, "database", NULL);

	if (theirs)
		return !strcmp(theirs, id->key);
	return !url || !strcmp(url, url_redacted);
}

int journal_close_unfinished(const char *path, const char *outcome, struct sm_error *err)
{
	struct journal j;
	cJSON *doc = NULL;
	char *dir;
	int rc;

	if (journal_read(path, &doc, err) < 0)
		return -1;
	if (!doc)
		return 0;
	dir = fs_dirname(path);
	memset(&j, 0, sizeof(j));
	j.dir = dir;
	j.path = xstrdup(path);
	j.doc = doc;
	j.t0 = plan_now_ms();
	j.written = 1;
	rc = journal_finish(&j, outcome, NULL, err);
	journal_release(&j);
	return rc;
}

/* ---- the run's mark in the database ------------------------------------- */

static const char marks_create_sql[] =
	"CREATE TABLE " HIST_RUNS_TABLE " (run_id TEXT PRIMARY KEY, "
	"journal TEXT NOT NULL, host TEXT NOT NULL, started_at TEXT NOT NULL)";

static void own_host(char host[256])
{
	if (gethostname(host, 256) < 0)
		snprintf(host, 256, "?");
	host[255] = '\0';
}

int journal_mark(const struct journal *j, struct engine *e, struct sm_error *err)
{
	char host[256];
	char *abs = fs_absolute(j->path);
	const char *params[4];
	int exists = 0, rc;

	own_host(host);
	params[0] = journal_str(j->doc, "run_id", "?");
	params[1] = abs;
	params[2] = host;
	params[3] = journal_str(j->doc, "started_at", "?");
	/* not IF NOT EXISTS: PostgreSQL would print a notice on every run; and
	 * a query, not a script: the engine counts what scripts commit as the
	 * migration's (engine.script_committed) */
	rc = e->ops->table_exists(e, HIST_RUNS_TABLE, &exists, err) < 0 ||
	     (!exists && e->ops->query(e, marks_create_sql, 0, NULL, NULL, err) < 0) ||
	     e->ops->query(e, "INSERT INTO " HIST_RUNS_TABLE " (run_id, journal, host, started_at) "
			   "VALUES ($1, $2, $3, $4)", 4, params, NULL, err) < 0 ? -1 : 0;
	if (rc < 0 && !exists) {
		struct sm_error ignored = SM_ERROR_INIT;

		/* the table without the row, when the insert failed */
		journal_unmark(e, params[0], &ignored);
	}
	free(abs);
	return rc;
}

int journal_unmark(struct engine *e, const char *run_id, struct sm_error *err)
{
	struct eng_rows rows = ENG_ROWS_INIT;
	size_t left;
	int exists = 0;

	if (e->ops->table_exists(e, HIST_RUNS_TABLE, &exists, err) < 0)
		return -1;
	if (!exists)
		return 0;
	if (e->ops->query(e, "DELETE FROM " HIST_RUNS_TABLE " WHERE run_id = $1", 1, &run_id, NULL,
			  err) < 0 ||
	    e->ops->query(e, "SELECT 1 FROM " HIST_RUNS_TABLE " LIMIT 1", 0, NULL, &rows, err) < 0)
		return -1;
	/* the table lives only while a mark is in it: a run that changed
	 * nothing leaves the schema as it found it */
	left = rows.nrows;
	rows_release(&rows);
	return left ? 0 : e->ops->query(e, "DROP TABLE " HIST_RUNS_TABLE, 0, NULL, NULL, err);
}

/* 1 if the directories a and b are one (after resolving links). */
static int same_dir(const char *a, const char *b)
{
	char *ra = fs_resolve(a), *rb = fs_resolve(b);
	int same = !strcmp(ra, rb);

	free(ra);
	free(rb);
	return same;
}

/* One mark: 0 stale or not ours to judge, 1 blocks (err set), 2 cleared
 * by discard, -1 error. */
static int check_mark(struct engine *e, const struct engine_identity *id, const char *backup_dir,
		      int discard, const char *run_id, const char *path, const char *host,
		      const char *started, struct sm_error *err)
{
	char here[256];
	char *dir = fs_dirname(path);
	struct strbuf cmd = STRBUF_INIT;
	cJSON *doc = NULL;
	int local, ret = 0;

	sb_adds(&cmd, "safe-migrate -b ");
	sb_add_shell_word(&cmd, dir);
	sb_adds(&cmd, " recover");
	own_host(here);
	local = !strcmp(host, here);
	if (local && journal_read(path, &doc, err) < 0) {
		ret = -1;
		goto out;
	}
	if (doc && (!journal_unfinished(doc) ||
		    strcmp(journal_str(doc, "run_id", ""), run_id))) {
		/* the run ended (a kill between removing the mark and closing
		 * the journal cannot leave this: the mark goes first), or a copy
		 * of the database taken during the run carries it */
		ret = journal_unmark(e, run_id, err);
		goto out;
	}
	if (doc && same_dir(dir, backup_dir))
		goto out; /* journal_find's */
	if (doc) {
		err_set(err, ERR_BLOCKED, "an earlier run on %s (%s, started %s, phase '%s') did not "
			"finish; its journal '%s' is in another backup directory than this one ('%s'). "
			"Recover it there: %s (or recover --discard to accept the database as it is "
			"now)", id->label, run_id, started, journal_str(doc, "phase", "?"), path,
			backup_dir, cmd.buf);
		ret = 1;
		goto out;
	}
	if (discard) {
		if (journal_unmark(e, run_id, err) < 0) {
			ret = -1;
			goto out;
		}
		ret = 2;
		goto out;
	}
	if (local)
		err_set(err, ERR_BLOCKED, "an earlier run on %s (%s, started %s) did not finish, as "
			"the database records, and its journal '%s' is gone, with the name of its "
			"snapshot. Check the database (the snapshot is in '%s' unless it was deleted "
			"too), then accept it as it is with 'safe-migrate recover --discard'", id->label,
			run_id, started, path, dir);
	else
		err_set(err, ERR_BLOCKED, "an earlier run on %s (%s, started %s on host '%s') did "
			"not finish, as the database records; its journal is '%s' on that host. Recover "
			"it there (%s), or, if that run is known to be over or its journal is lost, "
			"check the database and accept it as it is with 'safe-migrate recover "
			"--discard'", id->label, run_id, started, host, path, cmd.buf);
	ret = 1;
out:
	cJSON_Delete(doc);
	sb_release(&cmd);
	free(dir);
	return ret;
}

int journal_check_marks(struct engine *e, const struct engine_identity *id,
			const char *backup_dir, int discard, struct strbuf *cleared,
			struct sm_error *err)
{
	struct eng_rows rows = ENG_ROWS_INIT;
	int exists = 0, ret = 0;

	if (e->ops->table_exists(e, HIST_RUNS_TABLE, &exists, err) < 0)
		return err_prefix(err, "cannot read the marks of unfinished runs");
	if (!exists)
		return 0;
	if (e->ops->query(e, "SELECT run_id, journal, host, started_at FROM " HIST_RUNS_TABLE
			  " ORDER BY started_at", 0, NULL, &rows, err) < 0)
		return err_prefix(err, "cannot read the marks of unfinished runs");
	for (size_t i = 0; i < rows.nrows && ret == 0; i++) {
		const char *run_id = rows_get(&rows, i, 0), *path = rows_get(&rows, i, 1);
		const char *host = rows_get(&rows, i, 2), *started = rows_get(&rows, i, 3);
		int rc;

		rc = check_mark(e, id, backup_dir, discard, run_id ? run_id : "?",
				path ? path : "?", host ? host : "?", started ? started : "?", err);
		if (rc == 2 && cleared)
			sb_addf(cleared, "%s (journal '%s' on host '%s')\n", run_id ? run_id : "?",
				path ? path : "?", host ? host : "?");
		ret = rc == 2 ? 0 : rc;
	}
	rows_release(&rows);
	return ret;
}

char *journal_path_of(const char *backup_dir, struct engine *e, const char *url_redacted)
{
	struct engine_identity id;
	struct sm_error ignored = SM_ERROR_INIT;
	cJSON *doc = NULL;
	char *path = NULL;

	if (e->ops->identity(e, &id, &ignored) < 0)
		return NULL;
	if (journal_find(backup_dir, &id, url_redacted, &path, &doc, &ignored) < 0 || !path)
		path = journal_path(backup_dir, &id);
	cJSON_Delete(doc);
	return path;
}

/* 1 for a journal file name (safe-migrate-<ID>.journal), 2 for the older
 * shared one, 0 for anything else. */
static int journal_file_name(const char *name)
{
	size_t n = strlen(name);

	if (!strcmp(name, JOURNAL_LEGACY_FILE))
		return 2;
	return n >= 21 && !strncmp(name, "safe-migrate-", 13) && !strcmp(name + n - 8, ".journal");
}

int journal_open_snapshots(const char *backup_dir, struct strbuf *names, struct sm_error *err)
{
	DIR *d = opendir(backup_dir);
	const struct dirent *de;
	int ret = 0;

	if (!d)
		return errno == ENOENT ? 0 : err_sys(err, "cannot open '%s'", backup_dir);
	while (ret == 0 && (de = readdir(d)) != NULL) {
		cJSON *cur = NULL;
		char *p;

		if (!journal_file_name(de->d_name))
			continue;
		p = fs_join(backup_dir, de->d_name);
		if (journal_read(p, &cur, err) < 0) {
			err_prefix(err, "cannot tell which snapshot a run may still need");
			ret = -1;
		} else if (cur && journal_unfinished(cur) && journal_str(cur, "snapshot", NULL)) {
			sb_addf(names, "%s\n", fs_basename(journal_str(cur, "snapshot", NULL)));
		}
		cJSON_Delete(cur);
		free(p);
	}
	closedir(d);
	return ret;
}

int journal_find_replaced(const char *backup_dir, const struct engine_identity *id, char **path,
			  cJSON **doc)
{
	DIR *d = opendir(backup_dir);
	const struct dirent *de;
	struct sm_error ignored = SM_ERROR_INIT;
	char *own_path = journal_path(backup_dir, id);
	cJSON *own = NULL;
	const char *own_run;

	*path = NULL;
	*doc = NULL;
	if (journal_read(own_path, &own, &ignored) < 0)
		own = NULL;
	free(own_path);
	own_run = journal_str(own, "run_id", NULL);
	if (!d) {
		cJSON_Delete(own);
		return 0;
	}
	while (!*doc && (de = readdir(d)) != NULL) {
		cJSON *cur = NULL;
		char *p;

		if (journal_file_name(de->d_name) != 1)
			continue;
		p = fs_join(backup_dir, de->d_name);
		if (journal_read(p, &cur, &ignored) == 0 && journal_unfinished(cur) &&
		    !strcmp(journal_str(cur, "database_label", ""), id->label) &&
		    strcmp(journal_str(cur, "identity", ""), id->key) &&
		    (!own_run || strcmp(journal_str(cur, "run_id", ""), own_run))) {
			*path = p;
			*doc = cur;
			break;
		}
		cJSON_Delete(cur);
		free(p);
	}
	closedir(d);
	cJSON_Delete(own);
	return *doc != NULL;
}

int journal_command_was_running(const cJSON *doc)
{
	return journal_unfinished(doc) && !strcmp(journal_str(doc, "phase", ""), "apply") &&
	       cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(doc, "child_pgid"));
}
