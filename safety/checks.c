/*
 * checks: the pre-flight checks (see checks.h).  Each check tries the real
 * thing where it can (writes a probe file, takes and drops the lock) rather
 * than guessing from permissions.
 */
#include "checks.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "foreign.h"
#include "fsutil.h"
#include "lint.h"
#include "safety_driver.h"
#include "strbuf.h"
#include "xalloc.h"

#define CHECK(out, name, lv, hint, ...) \
	finding_add(out, FINDING_CHECK, name, lv, hint, NULL, 0, __VA_ARGS__)

void safety_check_connect(const struct db_url *url, struct engine **e, struct finding_list *out)
{
	const struct safety_driver *d = safety_driver_find(url->scheme);
	struct sm_error err = SM_ERROR_INIT;
	struct strbuf ver = STRBUF_INIT;

	*e = NULL;
	if (d && d->preopen)
		d->preopen(url, out);
	if (engine_open(e, url, 0, &err) < 0) {
		CHECK(out, "connectivity", LEVEL_FAIL, "check the database URL and that the server "
		      "is running", "%s", err.msg);
		return;
	}
	if ((*e)->ops->server_version(*e, &ver, &err) < 0) {
		CHECK(out, "connectivity", LEVEL_FAIL, NULL,
		      "connected to '%s' but cannot read the server version: %s", url->redacted,
		      err.msg);
		engine_close(*e);
		*e = NULL;
	} else {
		CHECK(out, "connectivity", LEVEL_PASS, NULL, "connected to '%s' (%s)", url->redacted,
		      ver.buf);
	}
	sb_release(&ver);
}

static void human_bytes(unsigned long long n, char out[32])
{
	const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	size_t u = 0;

	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	snprintf(out, 32, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

/* Another user who can write to the backup directory can replace or
 * remove snapshots (and, before safe-migrate refused to follow symlinks,
 * could aim its writes elsewhere): say so. */
static void check_backup_dir_owner(const char *dir, struct finding_list *out)
{
	struct stat st;

	if (stat(dir, &st) < 0)
		return;
	if (st.st_uid != geteuid())
		CHECK(out, "backup-dir-owner", LEVEL_WARN, "use a backup directory of your own, "
		      "mode 0700", "backup directory '%s' is owned by another user (uid %ld)", dir,
		      (long)st.st_uid);
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		CHECK(out, "backup-dir-owner", LEVEL_WARN, "chmod go-w the directory (0700 is "
		      "best)", "backup directory '%s' is %s-writable (mode %04o): other users can "
		      "replace or remove snapshots", dir,
		      (st.st_mode & S_IWOTH) ? "world" : "group", (unsigned)(st.st_mode & 07777));
}

/* Creates the directory if needed and proves it writable: a probe file is
 * created, written, fsynced and removed. */
static int probe_backup_dir(const char *dir, struct finding_list *out)
{
	struct sm_error err = SM_ERROR_INIT;
	struct strbuf probe = STRBUF_INIT, tmp = STRBUF_INIT;
	static const char data[] = "safe-migrate write probe\n";
	int fd = -1, ok = 0, existed = fs_is_dir(dir);

	if (fs_mkdirs(dir, 0700, &err) < 0) {
		CHECK(out, "backup-dir", LEVEL_FAIL, "use -b DIR (or backup_dir in the config) to "
		      "choose a writable directory", "cannot create backup directory '%s': %s",
		      dir, err.msg);
		goto out;
	}
	/* a temp name (random, pid-tagged): a probe left by a killed run is
	 * removed by the one cleaner of dead processes' temp files */
	fs_cleanup_temps(dir);
	fs_temp_name(&tmp, "probe");
	sb_addf(&probe, "%s/%s", dir, tmp.buf);
	fd = open(probe.buf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || fs_write_all(fd, data, sizeof(data) - 1) < 0 || fsync(fd) < 0) {
		CHECK(out, "backup-dir", LEVEL_FAIL, "use -b DIR to choose a writable directory",
		      "cannot write to backup directory '%s': %s", dir, strerror(errno));
		goto out;
	}
	close(fd);
	fd = -1;
	if (unlink(probe.buf) < 0) {
		CHECK(out, "backup-dir", LEVEL_FAIL, NULL,
		      "cannot remove probe file '%s': %s", probe.buf, strerror(errno));
		goto out;
	}
	CHECK(out, "backup-dir", LEVEL_PASS, NULL, "backup directory '%s' %s and writable", dir,
	      existed ? "exists" : "was created");
	check_backup_dir_owner(dir, out);
	ok = 1;
out:
	if (fd >= 0) {
		close(fd);
		unlink(probe.buf);
	}
	sb_release(&probe);
	sb_release(&tmp);
	return ok;
}

/* Whether a and b are directories on one file system. */
static int same_file_system(const char *a, const char *b)
{
	struct stat sa, sb;

	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev;
}

/* The automatic restore must fit too: a migration that fills the disk
 * would otherwise leave the database half-migrated, the restore failing
 * for want of the room its staging copy and journal need (exit 6).  When
 * the backup directory shares that file system, the snapshot's share
 * (snap_need) is counted as well. */
static void check_restore_space(const struct safety_check_opts *o,
				const struct safety_driver *d, unsigned long long size,
				unsigned long long snap_need, struct finding_list *out)
{
	unsigned long long room = 0, need;
	uint64_t avail = 0;
	char *dir = NULL;
	char hr[32], hn[32], ha[32], hs[32];
	struct sm_error e2 = SM_ERROR_INIT;
	int shared;

	if (!d->restore_room)
		return;
	if (d->restore_room(o->e, size, &dir, &room, &e2) < 0) {
		CHECK(out, "restore-space", LEVEL_FAIL, NULL,
		      "cannot estimate the room a restore needs: %s", e2.msg);
		goto out;
	}
	if (fs_free_bytes(dir, &avail, &e2) < 0) {
		CHECK(out, "restore-space", LEVEL_FAIL, NULL, "cannot read free space of '%s': %s",
		      dir, e2.msg);
		goto out;
	}
	shared = same_file_system(dir, o->backup_dir);
	need = room + room / 10 + (shared ? snap_need : 0);
	human_bytes(room, hr);
	human_bytes(need, hn);
	human_bytes(avail, ha);
	human_bytes(snap_need, hs);
	if (avail < need)
		CHECK(out, "restore-space", LEVEL_FAIL, "free space on the database's file system: "
		      "a failed migration could not be rolled back",
		      "only %s free in '%s'; restoring the snapshot there needs about %s (staging "
		      "copy and journal %s + 10%%%s%s)", ha, dir, hn, hr,
		      shared ? ", plus the snapshot's " : "", shared ? hs : "");
	else
		CHECK(out, "restore-space", LEVEL_PASS, NULL, "%s free in '%s'; restoring the "
		      "snapshot there needs about %s (staging copy and journal %s + 10%%%s%s)", ha,
		      dir, hn, hr, shared ? ", plus the snapshot's " : "", shared ? hs : "");
out:
	free(dir);
}

static int check_space(const struct safety_check_opts *o, const struct safety_driver *d,
		       struct finding_list *out)
{
	unsigned long long size = 0, need;
	uint64_t avail = 0;
	char hs[32], hn[32], ha[32];
	struct sm_error e2 = SM_ERROR_INIT;

	if (d->db_size(o->e, &size, &e2) < 0) {
		CHECK(out, "disk-space", LEVEL_FAIL, NULL, "cannot estimate the database size: %s",
		      e2.msg);
		return 0;
	}
	need = size + size / 10;
	if (fs_free_bytes(o->backup_dir, &avail, &e2) < 0) {
		CHECK(out, "disk-space", LEVEL_FAIL, NULL, "cannot read free space of '%s': %s",
		      o->backup_dir, e2.msg);
		return 0;
	}
	human_bytes(size, hs);
	human_bytes(need, hn);
	human_bytes(avail, ha);
	if (avail < need)
		CHECK(out, "disk-space", LEVEL_FAIL, "free space in the backup directory or choose "
		      "another with -b", "only %s free in '%s'; the snapshot needs about %s "
		      "(database %s + 10%%)", ha, o->backup_dir, hn, hs);
	else
		CHECK(out, "disk-space", LEVEL_PASS, NULL, "%s free in '%s'; the snapshot needs "
		      "about %s (database %s + 10%%)", ha, o->backup_dir, hn, hs);
	check_restore_space(o, d, size, need, out);
	return 0;
}

static void check_history(const struct safety_check_opts *o, const struct mig_status *st,
			  struct finding_list *out)
{
	size_t before = out->n;

	for (size_t i = 0; i < st->n_missing; i++)
		CHECK(out, "migration-history", LEVEL_WARN,
		      "restore the file, or check the migrations directory (-m) is the right one",
		      "applied version %s has no migration file in the migrations directory",
		      o->applied->items[st->missing[i]].version);
	for (size_t i = 0; i < st->n_edited; i++)
		CHECK(out, "migration-history", LEVEL_FAIL,
		      "undo the edit and put the change in a new migration (or 'safe-migrate stamp' "
		      "to accept the file as applied)",
		      "applied migration '%s' (version %s) was edited after it was applied",
		      o->set->items[st->edited[i]].path, o->set->items[st->edited[i]].version);
	if (!o->allow_out_of_order)
		for (size_t i = 0; i < st->n_out_of_order; i++)
			CHECK(out, "migration-history", LEVEL_FAIL,
			      "rename it to a newer version, or pass --allow-out-of-order",
			      "pending migration '%s' (version %s) is older than the newest "
			      "applied one", o->set->items[st->out_of_order[i]].path,
			      o->set->items[st->out_of_order[i]].version);
	if (out->n == before)
		CHECK(out, "migration-history", LEVEL_PASS, NULL, "%zu applied, consistent with "
		      "the migrations directory", o->applied->n);
}

/* Does another run hold the migration lock? */
static int run_in_progress(const struct safety_check_opts *o)
{
	struct sm_error err = SM_ERROR_INIT;

	if (!o->e || o->caller_holds_lock)
		return 0;
	if (o->e->ops->lock(o->e, 0, &err) < 0)
		return err.kind == ERR_LOCKED;
	o->e->ops->unlock(o->e);
	return 0;
}

static void check_journal(const struct safety_check_opts *o, struct finding_list *out)
{
	char *path = o->journal_path ? xstrdup(o->journal_path)
				     : fs_join(o->backup_dir, SAFETY_JOURNAL_NAME);
	struct strbuf text = STRBUF_INIT;
	struct sm_error err = SM_ERROR_INIT;
	cJSON *j = NULL;
	const cJSON *outcome, *snap, *run, *pid;

	if (!fs_exists(path)) {
		if (o->unfinished_elsewhere)
			CHECK(out, "interrupted-run", LEVEL_FAIL, NULL, "%s",
			      o->unfinished_elsewhere);
		else
			CHECK(out, "interrupted-run", LEVEL_PASS, NULL, "no interrupted run");
		goto out;
	}
	if (fs_read_file(path, &text, 1 << 20, &err) < 0 || !(j = cJSON_Parse(text.buf))) {
		CHECK(out, "interrupted-run", LEVEL_FAIL, "inspect it; 'safe-migrate recover' "
		      "handles an interrupted run", "run journal '%s' is unreadable%s%s", path,
		      err.msg[0] ? ": " : "", err.msg);
		goto out;
	}
	outcome = cJSON_GetObjectItemCaseSensitive(j, "outcome");
	snap = cJSON_GetObjectItemCaseSensitive(j, "snapshot");
	run = cJSON_GetObjectItemCaseSensitive(j, "run_id");
	pid = cJSON_GetObjectItemCaseSensitive(j, "pid");
	if (outcome && !cJSON_IsNull(outcome)) {
		if (o->unfinished_elsewhere)
			CHECK(out, "interrupted-run", LEVEL_FAIL, NULL, "%s",
			      o->unfinished_elsewhere);
		else
			CHECK(out, "interrupted-run", LEVEL_PASS, NULL, "the last run finished (%s)",
			      cJSON_IsString(outcome) ? outcome->valuestring : "recorded");
		goto out;
	}
	/* a run in progress holds the migration lock; a live PID alone proves
	 * nothing (PIDs are reused) */
	if (run_in_progress(o) ||
	    (!o->e && cJSON_IsNumber(pid) && pid->valuedouble > 0 &&
	     (pid_t)pid->valuedouble != getpid() && kill((pid_t)pid->valuedouble, 0) == 0)) {
		/* still running: the concurrent-migration check reports it */
		CHECK(out, "interrupted-run", LEVEL_PASS, NULL, "run %s (process %.0f) is in "
		      "progress, not interrupted", cJSON_IsString(run) ? run->valuestring : "?",
		      cJSON_GetNumberValue(pid));
		goto out;
	}
	CHECK(out, "interrupted-run", LEVEL_FAIL,
	      "run 'safe-migrate recover' to restore that snapshot, or 'safe-migrate recover "
	      "--discard' to keep the database as it is",
	      "run %s was interrupted%s%s%s (journal '%s')",
	      cJSON_IsString(run) ? run->valuestring : "(unknown)",
	      cJSON_IsString(snap) ? "; its snapshot is '" : "; it took no snapshot",
	      cJSON_IsString(snap) ? snap->valuestring : "",
	      cJSON_IsString(snap) ? "'" : "", path);
out:
	cJSON_Delete(j);
	sb_release(&text);
	free(path);
}

static void check_lock(struct engine *e, struct finding_list *out)
{
	struct sm_error err = SM_ERROR_INIT;

	if (e->ops->lock(e, 0, &err) < 0) {
		CHECK(out, "concurrent-migration", LEVEL_FAIL,
		      "wait for the other migration to finish", "%s", err.msg);
		return;
	}
	e->ops->unlock(e);
	CHECK(out, "concurrent-migration", LEVEL_PASS, NULL, "no other migration holds the lock");
}

/* Another tool's version table: which one, and whether it is adopted. */
static void check_foreign(const struct safety_check_opts *o, struct finding_list *out)
{
	struct foreign_hist f = FOREIGN_HIST_INIT;
	struct applied_set none = APPLIED_SET_INIT;
	struct sm_error err = SM_ERROR_INIT;
	struct strbuf line = STRBUF_INIT;

	if (foreign_load(o->e, &f, &err) < 0) {
		CHECK(out, "foreign-history", LEVEL_WARN, NULL, "%s", err.msg);
	} else if (f.tool != FOREIGN_NONE) {
		int ok = foreign_describe(&f, o->applied ? o->applied : &none, &line);

		CHECK(out, "foreign-history", ok ? LEVEL_PASS : LEVEL_WARN, NULL, "%s", line.buf);
	}
	sb_release(&line);
	foreign_release(&f);
}

static int check_pending(const struct safety_check_opts *o, const struct mig_status *st,
			 struct lint_ctx *lc, struct finding_list *out, struct sm_error *err)
{
	struct strbuf list = STRBUF_INIT;
	struct finding_list lint = FINDING_LIST_INIT;
	struct applied_set none = APPLIED_SET_INIT;
	struct plan p = PLAN_INIT;
	struct sm_error ignored = SM_ERROR_INIT;
	size_t blocking, n_linted;

	if (lint_ignore(lc, o->lint_ignore, err) < 0)
		goto fail;
	/* with a target, only the migrations this run will apply are linted; a
	 * target plan_upgrade rejects is reported by the run itself */
	if (o->target && plan_upgrade(o->set, o->applied ? o->applied : &none, o->target, &p,
				      &ignored) < 0)
		plan_release(&p);
	n_linted = o->target && p.n ? p.n : st->n_pending;
	for (size_t i = 0; i < n_linted; i++) {
		const struct migration *m = o->target && p.n ? p.steps[i].m
							      : &o->set->items[st->pending[i]];
		if (i < 10)
			sb_addf(&list, "%s%s", i ? ", " : "", m->version);
		if (lint_migration_of(lc, m, 0, &lint, err) < 0)
			goto fail;
	}
	if (n_linted > 10)
		sb_addf(&list, ", ... (%zu more)", n_linted - 10);
	if (n_linted < st->n_pending)
		sb_addf(&list, " (up to %s; %zu after it not linted)", o->target,
			st->n_pending - n_linted);
	plan_release(&p);
	blocking = finding_count(&lint, LEVEL_FAIL);
	if (!st->n_pending)
		CHECK(out, "pending-migrations", LEVEL_PASS, NULL, "no pending migrations");
	else
		CHECK(out, "pending-migrations", blocking ? LEVEL_FAIL : LEVEL_PASS,
		      blocking ? "fix them, or silence a rule for one statement with "
				 "'-- safe-migrate:ignore RULE' before it" : NULL,
		      "%zu pending: %s; lint: %zu blocking, %zu warning%s", st->n_pending, list.buf,
		      blocking, finding_count(&lint, LEVEL_WARN),
		      finding_count(&lint, LEVEL_WARN) == 1 ? "" : "s");
	finding_move(out, &lint);
	sb_release(&list);
	return 0;
fail:
	plan_release(&p);
	finding_list_release(&lint);
	sb_release(&list);
	return -1;
}

/* The automatic restore is one transaction: it must fit the server's lock
 * table, or it fails where the snapshot did not (after the migration). */
static void check_restore_locks(const struct safety_check_opts *o, struct finding_list *out)
{
	struct sm_error err = SM_ERROR_INIT;
	long needed = 0, available = -1;

	if (o->skip_backup || !o->e->ops->restore_locks)
		return;
	if (o->e->ops->restore_locks(o->e, &needed, &available, &err) < 0) {
		CHECK(out, "restore-locks", LEVEL_WARN, NULL,
		      "cannot tell whether the restore would fit the server's lock table: %s",
		      err.msg);
		return;
	}
	if (available >= 0 && needed > available)
		CHECK(out, "restore-locks", LEVEL_FAIL,
		      "raise max_locks_per_transaction in postgresql.conf (and restart the server) "
		      "to at least the needed count divided by (max_connections + "
		      "max_prepared_transactions)",
		      "restoring the snapshot in place (one transaction) would take about %ld locks, "
		      "more than the server's lock table guarantees (%ld = max_locks_per_transaction "
		      "x (max_connections + max_prepared_transactions)); a failed migration could "
		      "not be put back", needed, available);
	else
		CHECK(out, "restore-locks", LEVEL_PASS, NULL,
		      available >= 0 ? "the in-place restore needs about %ld locks of %ld"
				     : "the in-place restore needs no lock table (%ld)",
		      needed, available);
}

int safety_check_run(const struct safety_check_opts *o, struct finding_list *out,
		     struct sm_error *err)
{
	const struct safety_driver *d = o->e ? safety_driver_find(o->e->ops->name) : NULL;
	struct mig_status st;
	struct applied_set none = APPLIED_SET_INIT;
	struct lint_ctx *lc = NULL;
	int have_status = 0, ret = -1;

	memset(&st, 0, sizeof(st));
	if (!o->skip_backup && o->backup_dir) {
		if (probe_backup_dir(o->backup_dir, out) && d &&
		    check_space(o, d, out) < 0)
			goto out;
		check_journal(o, out);
	} else if (o->backup_dir) {
		check_journal(o, out);
	}
	if (o->set) {
		plan_status(o->set, o->applied ? o->applied : &none, &st);
		have_status = 1;
		if (o->e)
			check_history(o, &st, out);
	}
	if (o->e)
		check_foreign(o, out);
	if (o->e && !o->caller_holds_lock)
		check_lock(o->e, out);
	if (o->foreign_migrations)
		CHECK(out, "pending-migrations", LEVEL_WARN,
		      "the wrapped tool decides what runs; its SQL is not linted",
		      "the wrapped command's migrations are not known to safe-migrate");
	if (o->e)
		check_restore_locks(o, out);
	if (have_status && o->e) {
		if (lint_begin(&lc, o->e->ops->name, o->e, err) < 0 ||
		    check_pending(o, &st, lc, out, err) < 0)
			goto out;
	}
	if (d && d->live_checks) {
		const char *const *touched = NULL;
		size_t n = 0;

		if (lc)
			touched = lint_touched(lc, &n);
		if (d->live_checks(o->e, o, touched, n, out, err) < 0)
			goto out;
	}
	ret = 0;
out:
	lint_end(lc);
	if (have_status)
		plan_status_release(&st);
	return ret;
}
