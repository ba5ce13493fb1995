/*
 * journal: durable run journal and the append-only runs log (see journal.h).
 */
#include "journal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "history.h"
#include "plan.h"
#include "strbuf.h"
#include "xalloc.h"

void journal_start(struct journal *j, const char *backup_dir, const char *command,
		   const char *database_redacted)
{
	char when[32], id[64];
	char *user = hist_os_user();
	struct timespec ts;

	memset(j, 0, sizeof(*j));
	j->dir = xstrdup(backup_dir);
	j->path = fs_join(backup_dir, JOURNAL_FILE);
	j->t0 = plan_now_ms();
	hist_now_iso(when);
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(id, sizeof(id), "%lld-%ld", (long long)ts.tv_sec, (long)getpid());
	j->doc = cJSON_CreateObject();
	cJSON_AddStringToObject(j->doc, "run_id", id);
	cJSON_AddStringToObject(j->doc, "started_at", when);
	cJSON_AddNumberToObject(j->doc, "pid", (double)getpid());
	cJSON_AddStringToObject(j->doc, "user", user);
	cJSON_AddStringToObject(j->doc, "database", database_redacted);
	cJSON_AddStringToObject(j->doc, "command", command);
	cJSON_AddStringToObject(j->doc, "phase", "start");
	cJSON_AddNullToObject(j->doc, "snapshot");
	cJSON_AddNullToObject(j->doc, "outcome");
	cJSON_AddArrayToObject(j->doc, "phases");
	free(user);
}

static int journal_write(struct journal *j, struct sm_error *err)
{
	char *text = cJSON_PrintUnformatted(j->doc);
	struct strbuf sb = STRBUF_INIT;
	int rc;

	sb_adds(&sb, text);
	sb_addch(&sb, '\n');
	free(text);
	if (fs_mkdirs(j->dir, 0700, err) < 0) {
		sb_release(&sb);
		return -1;
	}
	rc = fs_write_atomic(j->path, sb.buf, sb.len, 0600, err);
	sb_release(&sb);
	return rc;
}

int journal_phase(struct journal *j, const char *phase, const char *snapshot,
		  struct sm_error *err)
{
	cJSON_ReplaceItemInObject(j->doc, "phase", cJSON_CreateString(phase));
	if (snapshot)
		cJSON_ReplaceItemInObject(j->doc, "snapshot", cJSON_CreateString(snapshot));
	return journal_write(j, err);
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

int journal_finish(struct journal *j, const char *outcome, const cJSON *extra,
		   struct sm_error *err)
{
	char when[32];
	char *line;
	struct strbuf sb = STRBUF_INIT;
	char *log_path;
	cJSON *copy;
	int rc;

	hist_now_iso(when);
	cJSON_ReplaceItemInObject(j->doc, "outcome", cJSON_CreateString(outcome));
	cJSON_ReplaceItemInObject(j->doc, "phase", cJSON_CreateString("done"));
	cJSON_DeleteItemFromObject(j->doc, "finished_at");
	cJSON_AddStringToObject(j->doc, "finished_at", when);
	cJSON_DeleteItemFromObject(j->doc, "ms");
	cJSON_AddNumberToObject(j->doc, "ms", (double)(plan_now_ms() - j->t0));
	if (journal_write(j, err) < 0)
		return -1;
	copy = cJSON_Duplicate(j->doc, 1);
	cJSON_DeleteItemFromObject(copy, "phase");
	for (const cJSON *it = extra ? extra->child : NULL; it; it = it->next) {
		cJSON_DeleteItemFromObject(copy, it->string);
		cJSON_AddItemToObject(copy, it->string, cJSON_Duplicate(it, 1));
	}
	line = cJSON_PrintUnformatted(copy);
	cJSON_Delete(copy);
	sb_adds(&sb, line);
	sb_addch(&sb, '\n');
	free(line);
	log_path = fs_join(j->dir, RUNS_LOG_FILE);
	rc = fs_append_durable(log_path, sb.buf, 0600, err);
	free(log_path);
	sb_release(&sb);
	return rc;
}

void journal_release(struct journal *j)
{
	cJSON_Delete(j->doc);
	free(j->path);
	free(j->dir);
	memset(j, 0, sizeof(*j));
}

int journal_drop_own(const char *backup_dir, struct sm_error *err)
{
	char *path = fs_join(backup_dir, JOURNAL_FILE);
	cJSON *doc = NULL;
	const cJSON *pid;
	int ret = -1;

	if (journal_read(backup_dir, &doc, err) < 0)
		goto out;
	pid = cJSON_GetObjectItem(doc, "pid");
	if (!doc || !journal_unfinished(doc) || !cJSON_IsNumber(pid) ||
	    (pid_t)pid->valuedouble != getpid()) {
		ret = 0;
		goto out;
	}
	if (unlink(path) < 0) {
		err_sys(err, "cannot remove the run journal '%s'", path);
		goto out;
	}
	ret = fs_fsync_dir(backup_dir, err);
out:
	cJSON_Delete(doc);
	free(path);
	return ret;
}

int journal_read(const char *backup_dir, cJSON **doc, struct sm_error *err)
{
	char *path = fs_join(backup_dir, JOURNAL_FILE);
	struct strbuf text = STRBUF_INIT;
	int ret = -1;

	*doc = NULL;
	if (!fs_exists(path)) {
		ret = 0;
		goto out;
	}
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
	free(path);
	return ret;
}

int journal_unfinished(const cJSON *doc)
{
	const cJSON *outcome = cJSON_GetObjectItem(doc, "outcome");
	const cJSON *pid = cJSON_GetObjectItem(doc, "pid");

	if (!doc || (outcome && !cJSON_IsNull(outcome)))
		return 0;
	if (cJSON_IsNumber(pid) && pid->valuedouble > 0 &&
	    kill((pid_t)pid->valuedouble, 0) == 0 && (pid_t)pid->valuedouble != getpid())
		return 0; /* still running: the migration lock will keep us apart */
	return 1;
}

int journal_close_unfinished(const char *backup_dir, const char *outcome, struct sm_error *err)
{
	struct journal j;
	cJSON *doc = NULL;
	int rc;

	if (journal_read(backup_dir, &doc, err) < 0)
		return -1;
	if (!doc)
		return 0;
	memset(&j, 0, sizeof(j));
	j.dir = xstrdup(backup_dir);
	j.path = fs_join(backup_dir, JOURNAL_FILE);
	j.doc = doc;
	j.t0 = plan_now_ms();
	rc = journal_finish(&j, outcome, NULL, err);
	journal_release(&j);
	return rc;
}
