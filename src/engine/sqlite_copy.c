/*
 * sqlite_copy: whole-database copies with the backup API (see sqlite_copy.h).
 */
#include "sqlite_copy.h"

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
