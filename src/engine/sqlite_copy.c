/*
 * sqlite_copy: whole-database copies with the backup API (see sqlite_copy.h).
 */
#include "sqlite_copy.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"

/* Steps b n pages at a time (negative: all) until it reports progress or
 * the end, retrying while another connection holds a lock, for up to
 * give_up_ms counted from t0. */
static int step_while_busy(sqlite3_backup *b, int n, const struct timespec *t0, long give_up_ms,
			   enum sqlite_copy_stage *stage)
{
	struct timespec now;
	int rc;

	for (;;) {
		long waited;

		rc = sqlite3_backup_step(b, n);
		if (rc == SQLITE_DONE || (n >= 0 && rc == SQLITE_OK))
			return rc;
		if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) {
			*stage = SQLITE_COPY_STEP;
			return rc;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		waited = (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
		if (waited > give_up_ms) {
			*stage = SQLITE_COPY_LOCKED;
			return rc;
		}
		usleep(5000);
	}
}

int sqlite_copy_whole_held(sqlite3 *dst, sqlite3 *src, long give_up_ms,
			   int (*held)(void *ud), void *ud, enum sqlite_copy_stage *stage)
{
	sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
	struct timespec t0;
	int rc;

	*stage = SQLITE_COPY_INIT;
	if (!b)
		return sqlite3_errcode(dst) != SQLITE_OK ? sqlite3_errcode(dst) : SQLITE_ERROR;
	if (give_up_ms <= 0)
		give_up_ms = SQLITE_COPY_GIVE_UP_MS;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* no page yet: the step only takes dst's write lock, which the backup
	 * keeps until it is done or finished */
	if (held) {
		rc = step_while_busy(b, 0, &t0, give_up_ms, stage);
		if (rc == SQLITE_OK) {
			rc = held(ud);
			if (rc != SQLITE_OK)
				*stage = SQLITE_COPY_HELD;
		}
		if (rc != SQLITE_OK && rc != SQLITE_DONE) {
			sqlite3_backup_finish(b);
			return rc;
		}
	}
	rc = step_while_busy(b, -1, &t0, give_up_ms, stage);
	if (rc != SQLITE_DONE) {
		sqlite3_backup_finish(b);
		return rc;
	}
	*stage = SQLITE_COPY_FINISH;
	return sqlite3_backup_finish(b);
}

int sqlite_copy_whole(sqlite3 *dst, sqlite3 *src, enum sqlite_copy_stage *stage)
{
	return sqlite_copy_whole_held(dst, src, SQLITE_COPY_GIVE_UP_MS, NULL, NULL, stage);
}

int sqlite_pragma_int(sqlite3 *db, const char *sql, long long *out)
{
	sqlite3_stmt *st = NULL;
	int ok = 0;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		ok = 1;
	}
	sqlite3_finalize(st);
	return ok ? 0 : -1;
}

int sqlite_journal_is_wal(sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	int wal = 0;

	if (sqlite3_prepare_v2(db, "PRAGMA main.journal_mode", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		wal = !sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	return wal;
}

int sqlite_set_journal_wal(sqlite3 *db, int wal)
{
	long long busy = 0;
	int rc;

	/* another connection that has the database open in WAL mode keeps it
	 * so until it closes: waiting for it would only delay the answer */
	if (sqlite_pragma_int(db, "PRAGMA busy_timeout", &busy) < 0)
		busy = 0;
	sqlite3_busy_timeout(db, 0);
	rc = sqlite3_exec(db, wal ? "PRAGMA main.journal_mode = WAL"
				  : "PRAGMA main.journal_mode = DELETE", NULL, NULL, NULL);
	sqlite3_busy_timeout(db, (int)busy);
	if (rc == SQLITE_OK && sqlite_journal_is_wal(db) != wal)
		rc = SQLITE_BUSY;
	return rc;
}

int sqlite_quick_check(sqlite3 *db, int max, const char *sep, struct strbuf *problems)
{
	sqlite3_stmt *st = NULL;
	int rc, n = 0;

	if (sqlite3_prepare_v2(db, "PRAGMA main.quick_check", -1, &st, NULL) != SQLITE_OK) {
		sb_adds(problems, sqlite3_errmsg(db));
		return -1;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *line = (const char *)sqlite3_column_text(st, 0);

		if (line && !strcmp(line, "ok"))
			continue;
		if (n++ < max)
			sb_addf(problems, "%s%s", n > 1 ? sep : "", line ? line : "?");
	}
	if (rc != SQLITE_DONE) {
		sb_reset(problems);
		sb_adds(problems, sqlite3_errmsg(db));
		n = -1;
	}
	sqlite3_finalize(st);
	return n;
}

int sqlite_starts_vacuum(const char *p, size_t len)
{
	return len >= 6 && !sqlite3_strnicmp(p, "VACUUM", 6) &&
	       !(len > 6 && ((p[6] >= 'a' && p[6] <= 'z') || (p[6] >= 'A' && p[6] <= 'Z') ||
			     (p[6] >= '0' && p[6] <= '9') || p[6] == '_'));
}

int sqlite_stmt_is_vacuum(sqlite3_stmt *stmt)
{
	const char *sql = sqlite3_sql(stmt);
	size_t skip = sql ? engine_skip_space(sql, strlen(sql)) : 0;

	return sql && sqlite_starts_vacuum(sql + skip, strlen(sql + skip));
}
