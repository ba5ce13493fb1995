/*
 * sqlite_copy: whole-database copies with the backup API (see sqlite_copy.h).
 */
#include "sqlite_copy.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

int sqlite_copy_whole(sqlite3 *dst, sqlite3 *src, enum sqlite_copy_stage *stage)
{
	sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
	struct timespec t0, now;
	int rc;

	*stage = SQLITE_COPY_INIT;
	if (!b)
		return sqlite3_errcode(dst) != SQLITE_OK ? sqlite3_errcode(dst) : SQLITE_ERROR;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		long waited;

		rc = sqlite3_backup_step(b, -1);
		if (rc == SQLITE_DONE)
			break;
		if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) {
			*stage = SQLITE_COPY_STEP;
			sqlite3_backup_finish(b);
			return rc;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		waited = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
		if (waited > SQLITE_COPY_GIVE_UP_MS) {
			*stage = SQLITE_COPY_LOCKED;
			sqlite3_backup_finish(b);
			return rc;
		}
		usleep(5000);
	}
	*stage = SQLITE_COPY_FINISH;
	return sqlite3_backup_finish(b);
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
