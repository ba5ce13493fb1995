/*
 * restore_sqlite: the SQLite driver of restore.
 *
 * load:  the whole file is checked against its .sha256 sidecar first (no
 *        decompression, nothing written); then the data/main.db.NNNN chunks
 *        are concatenated into a staging file next to the target (same file
 *        system, mode 0600).  Backups store
 *        chunk 0000 (the first page) last and declare its size in the
 *        header's "deferred" object; the other chunks go after it.
 * apply: the staging file must pass PRAGMA quick_check; then SQLite's
 *        backup API copies it INTO the live target in one step.  The copy
 *        is one write transaction on the target (journaled, or in the WAL),
 *        so other connections see the old database or the new one, never a
 *        mix, and a failure part-way is rolled back by SQLite itself.  We do
 *        not rename files under a running application.
 *        The one exception is a target this restore created (restore --to a
 *        new file): nobody else can be using it, so the checked staging file
 *        is fsync'd and renamed over the still-empty file, which saves a
 *        page-by-page copy of the whole database.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bpipe.h"
#include "flusher.h"
#include "fsutil.h"
#include "restore.h"
#include "sqlite_copy.h"
#include "sqlite_readahead.h"
#include "strbuf.h"
#include "xalloc.h"

#define PAYLOAD "data/main.db"
#define IO_BLOCK ((size_t)1 << 20)

struct sqlite_stage {
	char *path;            /* the staging database file */
	int fd;                /* still open for writing, -1 if closed */
	struct flusher *flush; /* still making it durable, or NULL */
};

static void stage_free(void *p)
{
	struct sqlite_stage *s = p;
	static const char *const sfx[] = { "", "-wal", "-shm", "-journal" };
	struct strbuf sb = STRBUF_INIT;

	if (!s)
		return;
	flusher_free(s->flush);
	if (s->fd >= 0)
		close(s->fd);
	for (size_t i = 0; s->path && i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		sb_reset(&sb);
		sb_addf(&sb, "%s%s", s->path, sfx[i]);
		unlink(sb.buf);
	}
	sb_release(&sb);
	free(s->path);
	free(s);
}

#define STAGE_TAG ".safe-migrate-restore."

/* Removes staging files (and their -wal/-shm/-journal) that a killed
 * restore of the same target left behind: "<target>.safe-migrate-restore.
 * <pid>.tmp*" whose process is gone. */
static void cleanup_stale_stages(const char *target)
{
	char *dir = fs_dirname(target);
	struct strbuf prefix = STRBUF_INIT;
	DIR *d = opendir(dir);
	struct dirent *de;

	sb_addf(&prefix, "%s%s", fs_basename(target), STAGE_TAG);
	while (d && (de = readdir(d)) != NULL) {
		char *end;
		long pid;

		if (strncmp(de->d_name, prefix.buf, prefix.len) != 0)
			continue;
		pid = strtol(de->d_name + prefix.len, &end, 10);
		if (end == de->d_name + prefix.len || strncmp(end, ".tmp", 4) != 0 || pid <= 0)
			continue;
		if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		{
			char *p = fs_join(dir, de->d_name);
			unlink(p);
			free(p);
		}
	}
	if (d)
		closedir(d);
	sb_release(&prefix);
	free(dir);
}

/* Size of the deferred first chunk, 0 if the snapshot stores it first
 * (format 1), -1 if the header's declaration is malformed. */
static long long deferred_head(struct snap_reader *r)
{
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(snap_reader_header(r), "deferred");
	const cJSON *n;

	if (!d)
		return 0;
	n = cJSON_GetObjectItemCaseSensitive(d, PAYLOAD ".0000");
	if (!cJSON_IsObject(d) || cJSON_GetArraySize(d) != 1 || !cJSON_IsNumber(n) ||
	    n->valuedouble < 512 || n->valuedouble > 65536)
		return -1;
	return (long long)n->valuedouble;
}

/* The staging file's writer: a background thread (bpipe) places the
 * payload's blocks one after the other, and hashes them for the reader,
 * while the main thread decompresses.  (With the hash on the main thread,
 * the decompression waited for it: SHA-256 runs at 1.8 GB/s here, zstd's
 * decompression of the narrow shape at about the same.) */
struct stage_out {
	int fd;
	uint64_t off;          /* where the next block goes */
	struct flusher *flush; /* the file will be fsync'd and become the
				* target: make it durable as it is written */
	struct snap_reader *hash; /* the entry's bytes are hashed here for it
				   * (snap_reader_hash_elsewhere), or NULL; set
				   * only while this thread has nothing queued */
};

static int stage_block(void *ud, const void *buf, size_t len)
{
	struct stage_out *o = ud;

	if (o->hash)
		snap_reader_hash(o->hash, buf, len);
	if (fs_pwrite_all(o->fd, buf, len, (off_t)o->off) < 0)
		return errno ? errno : EIO;
	o->off += len;
	if (o->flush)
		flusher_wrote(o->flush, o->off);
	return 0;
}

/* Streams the current entry into the staging file after what came before;
 * *len receives its length.  The writer's thread hashes the entry (o->hash)
 * and is waited for at its end, before the reader moves on and checks the
 * sum. */
static int pipe_entry(struct snap_reader *r, struct bpipe *p, struct stage_out *o,
		      const char *path, uint64_t *len, struct sm_error *err)
{
	*len = 0;
	o->hash = snap_reader_hash_elsewhere(r) == 0 ? r : NULL;
	for (;;) {
		void *slot = bpipe_slot(p);
		size_t got = 0;
		int rc = snap_reader_read(r, slot, IO_BLOCK, &got, err);

		if (bpipe_submit(p, rc < 0 ? 0 : got) < 0)
			return err_sys(err, "cannot write staging file '%s'", path);
		if (rc < 0)
			return -1;
		if (!got)
			break;
		*len += got;
	}
	if (bpipe_wait(p) < 0)
		return err_sys(err, "cannot write staging file '%s'", path);
	o->hash = NULL;
	return 0;
}

/* Writes the deferred first chunk (the current entry) at offset 0; it must
 * hold exactly head bytes. */
static int write_head(struct snap_reader *r, int fd, const char *name, long long head,
		      const char *path, struct sm_error *err)
{
	unsigned char buf[65536 + 1];
	size_t len = 0, got;

	do {
		if (snap_reader_read(r, buf + len, sizeof(buf) - len, &got, err) < 0)
			return -1;
		len += got;
	} while (got && len < sizeof(buf));
	if (len != (size_t)head)
		return err_set(err, ERR_DAMAGED, "entry '%s' holds %s%zu bytes, not the %lld the "
			       "header declares", name, len == sizeof(buf) ? "over " : "", len, head);
	if (fs_pwrite_all(fd, buf, len, 0) < 0)
		return err_sys(err, "cannot write staging file '%s'", path);
	return 0;
}

static int sqlite_load(struct engine *target, struct snap_reader *r,
		       const struct restore_opts *opts, void **state, struct sm_error *err)
{
	struct sqlite_stage *s = xcalloc(1, sizeof(*s));
	struct strbuf path = STRBUF_INIT;
	struct snap_entry ent;
	struct stage_out o = { -1, 0, NULL, NULL };
	struct bpipe *pipe = NULL;
	unsigned expect, idx, seen = 0;
	long long head = deferred_head(r);
	uint64_t len;
	int rc, ret = -1, head_done;

	s->fd = -1;
	*state = s;
	if (head < 0) {
		err_set(err, ERR_DAMAGED, "the snapshot header's \"deferred\" entry is malformed");
		goto out;
	}
	/* the whole file against its sidecar before anything is written: a
	 * damaged or forged snapshot may expand to far more than it weighs
	 * (what the entries hold is checked on this pass, by restore.c) */
	if (snap_reader_check_file(r, err) < 0)
		goto out;
	cleanup_stale_stages(target->url.path);
	sb_addf(&path, "%s%s%ld.tmp", target->url.path, STAGE_TAG, (long)getpid());
	unlink(path.buf);
	o.fd = open(path.buf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (o.fd < 0) {
		err_sys(err, "cannot create staging file '%s'", path.buf);
		goto out;
	}
	s->path = sb_detach(&path);
	o.off = (uint64_t)head;
	if (opts->target_new)
		o.flush = flusher_start(o.fd, o.off, FLUSHER_STEP);
	pipe = bpipe_start(4, IO_BLOCK, stage_block, &o);
	/* in order: 0000 first, or 0001... and then the deferred 0000 */
	expect = head ? 1 : 0;
	head_done = 0;
	while ((rc = snap_reader_next(r, &ent, err)) > 0) {
		if (!snap_is_chunk_of(ent.name, PAYLOAD, &idx)) {
			err_set(err, ERR_DAMAGED, "unexpected entry '%s' in a SQLite snapshot",
				ent.name);
			goto out;
		}
		if (!head_done && idx == expect) {
			if (pipe_entry(r, pipe, &o, s->path, &len, err) < 0)
				goto out;
			expect++;
		} else if (head && !head_done && idx == 0 && seen) {
			if (bpipe_finish(pipe) < 0) {
				err_sys(err, "cannot write staging file '%s'", s->path);
				goto out;
			}
			if (write_head(r, o.fd, ent.name, head, s->path, err) < 0)
				goto out;
			head_done = 1;
		} else {
			err_set(err, ERR_DAMAGED, "entry '%s' is out of order", ent.name);
			goto out;
		}
		seen++;
	}
	if (rc < 0)
		goto out;
	if (!seen || (head && !head_done)) {
		err_set(err, ERR_DAMAGED, "the snapshot holds no %s ('%s.NNNN' entries)",
			seen ? "first page" : "database", PAYLOAD);
		goto out;
	}
	if (bpipe_finish(pipe) < 0) {
		err_sys(err, "cannot write staging file '%s'", s->path);
		goto out;
	}
	if (o.flush) {
		/* a flush may still run: apply waits for it along with its fsync */
		s->fd = o.fd;
		s->flush = o.flush;
		o.fd = -1;
		o.flush = NULL;
	} else {
		rc = close(o.fd);
		o.fd = -1;
		if (rc < 0) {
			err_sys(err, "cannot write staging file '%s'", s->path);
			goto out;
		}
	}
	ret = 0;
out:
	bpipe_free(pipe);
	flusher_free(o.flush);
	if (o.fd >= 0)
		close(o.fd);
	sb_release(&path);
	return ret;
}

/* PRAGMA quick_check of the staged database, not integrity_check: the
 * bytes are already known to be those the backup copied (every entry's
 * SHA-256 against the manifest), so what is left to catch is a file that
 * is not a sound database (a torn or misplaced page, a bad b-tree, a
 * broken freelist): quick_check reads every page once and finds those.
 * What the full check adds (does every index hold exactly its table's
 * rows, UNIQUE included) was true or false of the source when the
 * snapshot was taken, and restoring gives back that same database; it
 * costs a b-tree probe per row and index, 60 times the load on narrow
 * indexed rows.  A snapshot whose backup ran quick_check on the very
 * pages it copied (extra.quick_check "ok") is not checked again: the
 * SHA-256s prove these are those pages.  See docs/safety.md.
 *
 * A snapshot whose backup found problems (recorded: its manifest's lines)
 * is checked all the same: restored only with accept, and only when the
 * staged copy fails exactly as recorded, line for line.  Anything else
 * is not the database the backup saw. */
static int integrity_check(sqlite3 *db, const char *path, const char *recorded, int accept,
			   struct sm_error *err)
{
	struct strbuf found = STRBUF_INIT, shown = STRBUF_INIT;
	int n = sqlite_quick_check(db, SQLITE_CHECK_MAX_LINES, "\n", &found);
	int same;

	sb_rtrim(&found);
	same = n > 0 && recorded && !strcmp(found.buf, recorded);
	if (n < 0) {
		err_set(err, ERR_DAMAGED, "the snapshot's database is not readable: %s", found.buf);
	} else if (n > 0 && !(same && accept)) {
		/* the first lines, on one line */
		const char *p = found.buf;
		for (int i = 0; i < 3 && *p; i++) {
			size_t len = strcspn(p, "\n");
			sb_addf(&shown, "%s%.*s", i ? "; " : "", (int)len, p);
			p += len + (p[len] == '\n');
		}
		if (same)
			err_set(err, ERR_DAMAGED, "the snapshot's database fails PRAGMA quick_check "
				"(%s): %s; its backup recorded these very problems: restore it as it "
				"was, problems included, with --accept-recorded-problems", path,
				shown.buf);
		else if (recorded && accept)
			err_set(err, ERR_DAMAGED, "the snapshot's database fails PRAGMA quick_check "
				"(%s) otherwise than its backup recorded, so it is not the database the "
				"backup saw: %s", path, shown.buf);
		else
			err_set(err, ERR_DAMAGED, "the snapshot's database fails PRAGMA quick_check "
				"(%s): %s", path, shown.buf);
	}
	sb_release(&found);
	sb_release(&shown);
	return n < 0 || (n > 0 && !(same && accept)) ? -1 : 0;
}

/* Whether the staged database still needs its quick_check: not when the
 * backup checked these very pages (backup_sqlite.c: extra.quick_check) and
 * found them sound, provided the staged file has the size the manifest
 * gives them (the entries' SHA-256s prove their bytes, this their number).
 * Problems it recorded are compared with a check of the copy
 * (integrity_check). */
static int needs_check(const cJSON *manifest, const char *path)
{
	const cJSON *extra = cJSON_GetObjectItemCaseSensitive(manifest, "extra");
	const cJSON *qc = cJSON_GetObjectItemCaseSensitive(extra, "quick_check");
	const cJSON *size = cJSON_GetObjectItemCaseSensitive(extra, "page_size");
	const cJSON *count = cJSON_GetObjectItemCaseSensitive(extra, "page_count");
	struct stat st;

	if (!cJSON_IsString(qc) || strcmp(qc->valuestring, "ok") || !cJSON_IsNumber(size) ||
	    !cJSON_IsNumber(count) || stat(path, &st) < 0)
		return 1;
	return (double)st.st_size != size->valuedouble * count->valuedouble;
}

struct sync_job {
	int fd;
	struct flusher *flush; /* its background flushes must have worked too */
	int rc, saved_errno;
};

static void *sync_thread(void *ud)
{
	struct sync_job *j = ud;

	j->rc = flusher_finish(j->flush) < 0 ? -1 : fsync(j->fd);
	j->saved_errno = errno;
	return NULL;
}

/* The target is still the empty file this restore created. */
static int target_still_empty(const char *path)
{
	struct strbuf side = STRBUF_INIT;
	struct stat st;
	int empty;

	sb_addf(&side, "%s-wal", path);
	empty = stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0 &&
		!fs_exists(side.buf);
	sb_release(&side);
	return empty;
}

/* restore --to a new file: check the staging database while it is being
 * made durable, then rename it over the empty target. */
static int move_into_place(struct sqlite_stage *s, sqlite3 **src, const char *target,
			   int check, const char *recorded, const struct restore_opts *opts,
			   struct sm_error *err)
{
	struct sync_job job = { -1, NULL, 0, 0 };
	pthread_t th;
	int started, ret = -1;
	char *dir = NULL;

	/* the descriptor load wrote through, whose flushes may still run */
	job.fd = s->fd >= 0 ? s->fd : open(s->path, O_RDONLY | O_CLOEXEC);
	s->fd = -1;
	job.flush = s->flush;
	if (job.fd < 0)
		return err_sys(err, "cannot open staging file '%s'", s->path);
	/* the fsync on a thread of its own while the check runs */
	started = check && pthread_create(&th, NULL, sync_thread, &job) == 0;
	if (!started)
		sync_thread(&job);
	ret = check ? integrity_check(*src, s->path, recorded, opts->accept_recorded_problems,
				      err) : 0;
	if (started)
		pthread_join(th, NULL);
	if (close(job.fd) < 0 && job.rc == 0) {
		job.rc = -1;
		job.saved_errno = errno;
	}
	/* closed before the rename: a WAL-mode copy's -wal and -shm go with it */
	sqlite3_close(*src);
	*src = NULL;
	if (ret < 0)
		return -1;
	ret = -1;
	if (job.rc < 0) {
		errno = job.saved_errno;
		return err_sys(err, "cannot make staging file '%s' durable", s->path);
	}
	if (restore_interrupted(opts, err) < 0)
		return -1;
	if (rename(s->path, target) < 0) {
		err_sys(err, "cannot rename '%s' to '%s'", s->path, target);
		goto out;
	}
	dir = fs_dirname(target);
	if (fs_fsync_dir(dir, err) < 0)
		goto out;
	ret = 0;
out:
	free(dir);
	return ret;
}

/* What the staged database's header says of the snapshot's database: its
 * page size (bytes 16-17, 1 for 65536) and whether it was in WAL mode
 * (bytes 18-19: 2), which a restore in place gives back. */
struct stage_head {
	long long page_size;
	int wal;
};

static int read_stage_head(const char *path, struct stage_head *h, struct sm_error *err)
{
	unsigned char b[20];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t got = fd < 0 ? -1 : pread(fd, b, sizeof(b), 0);

	memset(h, 0, sizeof(*h));
	if (fd >= 0)
		close(fd);
	if (got != (ssize_t)sizeof(b))
		return err_sys(err, "cannot read the header of staging file '%s'", path);
	h->page_size = b[16] << 8 | b[17];
	if (h->page_size == 1)
		h->page_size = 65536;
	h->wal = b[18] == 2;
	return 0;
}

/* Before a copy in place into a target in WAL mode.  SQLite's backup API
 * cannot change the page size of a database in WAL mode (it fails with
 * SQLITE_READONLY, "attempt to write a readonly database"), and a copy
 * into one leaves it in WAL mode whatever the snapshot's database was in.
 * So the target leaves WAL mode first when the snapshot's page size
 * differs or its database was not in WAL mode (*left: it did), which
 * needs that no other connection has it open.  When one does, a page size
 * that differs cannot be restored: an error, nothing changed; a journal
 * mode is left to put_journal_mode. */
static int prepare_target(sqlite3 *dst, const char *target, const struct stage_head *h,
			  int *left, struct sm_error *err)
{
	long long size = 0;
	int rc;

	*left = 0;
	if (!sqlite_journal_is_wal(dst))
		return 0;
	if (sqlite_pragma_int(dst, "PRAGMA main.page_size", &size) < 0)
		return err_set(err, ERR_FAIL, "cannot read the page size of '%s': %s", target,
			       sqlite3_errmsg(dst));
	if (size == h->page_size && h->wal)
		return 0;
	rc = sqlite_set_journal_wal(dst, 0);
	if (rc == SQLITE_OK) {
		*left = 1;
		return 0;
	}
	if (size == h->page_size)
		return 0;
	return err_set(err, ERR_LOCKED, "cannot restore into '%s' (nothing was changed): it is in "
		       "WAL mode with pages of %lld bytes, the snapshot's have %lld, and SQLite "
		       "changes the page size only of a database out of WAL mode; leaving WAL mode "
		       "needs that no other connection has '%s' open (%s). Close the other "
		       "connections (stop the application), then restore again", target, size,
		       h->page_size, target, sqlite3_errstr(rc));
}

/* After the copy: the journal mode the snapshot's database was in (a copy
 * into a WAL-mode target leaves it in WAL mode).  Leaving WAL mode needs
 * that no other connection has the database open; when one does, the data
 * is restored all the same and opts->notes says what is left to do. */
static void put_journal_mode(sqlite3 *dst, const char *target, const struct stage_head *h,
			     const struct restore_opts *opts)
{
	int rc;

	if (sqlite_journal_is_wal(dst) == h->wal)
		return;
	rc = sqlite_set_journal_wal(dst, h->wal);
	if (rc != SQLITE_OK && opts->notes)
		sb_addf(opts->notes, "the data is restored, but '%s' stays in %s mode, while the "
			"snapshot's database was in %s mode: other connections have it open (%s); "
			"once they are closed: sqlite3 '%s' 'PRAGMA journal_mode=%s'\n", target,
			h->wal ? "rollback-journal" : "WAL", h->wal ? "WAL" : "rollback-journal",
			sqlite3_errstr(rc), target, h->wal ? "WAL" : "DELETE");
}

/* Rollback-journal mode: takes the target's write lock on the restore's
 * own connection, lets the caller act while other connections can read but
 * not write (opts->writers_blocked), and keeps the lock for the copy: the
 * connection is switched to locking_mode=EXCLUSIVE before the (empty)
 * transaction ends, so it never lets go before the copy has run (*held:
 * restore_release must follow).  (In WAL mode a lock cannot outlive a
 * transaction: there the copy takes it first and the caller acts while it
 * holds it, see copy_held.) */
static int writers_blocked(sqlite3 *dst, const char *target, const struct restore_opts *opts,
			   int *held, struct sm_error *err)
{
	int ret;

	*held = 0;
	if (!opts->writers_blocked)
		return 0;
	sqlite3_busy_timeout(dst, opts->lock_timeout_ms > 0 ? (int)opts->lock_timeout_ms
							    : SQLITE_COPY_GIVE_UP_MS);
	if (sqlite3_exec(dst, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return err_set(err, ERR_LOCKED, "cannot lock '%s' against writes: %s", target,
			       sqlite3_errmsg(dst));
	ret = opts->writers_blocked(opts->writers_blocked_ud, err);
	if (ret == 0 &&
	    sqlite3_exec(dst, "PRAGMA locking_mode = EXCLUSIVE", NULL, NULL, NULL) == SQLITE_OK)
		*held = 1;
	sqlite3_exec(dst, ret == 0 ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL);
	return ret;
}

/* WAL mode: opts->writers_blocked, called by the copy once it holds the
 * target's write lock and before it writes a page (sqlite_copy_whole_held):
 * what the caller saves there is exactly what the copy replaces, with no
 * commit of another connection in between. */
struct copy_held {
	const struct restore_opts *opts;
	struct sm_error *err;
};

static int copy_held(void *ud)
{
	struct copy_held *h = ud;

	return h->opts->writers_blocked(h->opts->writers_blocked_ud, h->err) < 0 ? SQLITE_ABORT
										  : SQLITE_OK;
}

/* Runs opts->verify while other connections cannot write: under the lock
 * writers_blocked kept (held), or else under a new write lock, provided no
 * other connection committed since mark was taken, before the copy (a
 * commit in between could be one the copy overwrote or one it did not: the
 * check is then left to the caller, which knows no one was kept out). */
static int verify_restored(struct engine *target, int held, const char *mark,
			   const struct restore_opts *opts, struct sm_error *err)
{
	sqlite3 *dst = engine_native(target);
	struct strbuf since = STRBUF_INIT;
	struct sm_error ignored = SM_ERROR_INIT;
	int ret = 0;

	if (!opts->verify)
		return 0;
	if (held)
		return opts->verify(opts->verify_ud, target, err);
	if (!mark || sqlite3_exec(dst, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return 0;
	if (target->ops->writes_since(target, mark, &since, &ignored) == 0 && !since.len)
		ret = opts->verify(opts->verify_ud, target, err);
	sqlite3_exec(dst, "ROLLBACK", NULL, NULL, NULL);
	sb_release(&since);
	return ret;
}

/* Gives back the lock writers_blocked kept. */
static void restore_release(sqlite3 *dst)
{
	sqlite3_exec(dst, "PRAGMA locking_mode = NORMAL", NULL, NULL, NULL);
	sqlite3_exec(dst, "SELECT 1 FROM sqlite_master LIMIT 1", NULL, NULL, NULL);
}

static int sqlite_apply(struct engine *target, void *state, const cJSON *manifest,
			const struct restore_opts *opts, struct sm_error *err)
{
	struct sqlite_stage *s = state;
	sqlite3 *src = NULL, *dst = engine_native(target);
	enum sqlite_copy_stage stage;
	struct sm_error ignored = SM_ERROR_INIT;
	char *mark = NULL;
	struct copy_held h = { opts, err };
	const char *recorded =
		restore_recorded_problems(cJSON_GetObjectItemCaseSensitive(manifest, "extra"));
	struct stage_head head;
	long give_up;
	int rc, ret = -1, held = 0, check, wal, to_new, left_wal = 0, copied = 0;

	check = opts->check_again || needs_check(manifest, s->path);
	to_new = opts->target_new && target_still_empty(target->url.path);
	/* the staging file is ours alone, so it is read in large blocks: a
	 * pread per page is most of the cost of checking and copying a large
	 * database.  Restoring --to a new file a snapshot checked when it was
	 * taken, nothing reads the staged copy: it only becomes the target */
	if (check || !to_new) {
		if (sqlite_readahead_register() != SQLITE_OK ||
		    sqlite3_open_v2(s->path, &src, SQLITE_OPEN_READWRITE,
				    SQLITE_READAHEAD_VFS) != SQLITE_OK) {
			err_set(err, ERR_DAMAGED, "cannot open the snapshot's database: %s",
				src ? sqlite3_errmsg(src) : "out of memory");
			goto out;
		}
		/* pages lent out of the blocks, not copied (SQLite caps the limit
		 * at its compiled-in maximum; pages above it are copied) */
		sqlite3_exec(src, "PRAGMA mmap_size=1099511627776", NULL, NULL, NULL);
	}
	if (to_new) {
		ret = move_into_place(s, &src, target->url.path, check, recorded, opts, err);
		goto out;
	}
	if ((check && integrity_check(src, s->path, recorded, opts->accept_recorded_problems,
				      err) < 0) ||
	    restore_interrupted(opts, err) < 0 || read_stage_head(s->path, &head, err) < 0 ||
	    prepare_target(dst, target->url.path, &head, &left_wal, err) < 0)
		goto out;
	wal = opts->writers_blocked && sqlite_journal_is_wal(dst);
	if (!wal && writers_blocked(dst, target->url.path, opts, &held, err) < 0)
		goto out;
	if (opts->verify && !held && target->ops->writes_mark(target, &mark, &ignored) < 0)
		mark = NULL;
	/* --lock-timeout bounds the wait for other connections' locks, the
	 * busy handler's within each step included (the connection's own is
	 * the engine's 10 s) */
	give_up = opts->lock_timeout_ms > 0 ? opts->lock_timeout_ms : SQLITE_COPY_GIVE_UP_MS;
	sqlite3_busy_timeout(dst, (int)give_up);
	rc = sqlite_copy_whole_held(dst, src, give_up, wal ? copy_held : NULL, &h, &stage);
	if (rc != SQLITE_OK) {
		if (stage == SQLITE_COPY_HELD)
			; /* the caller's own error, nothing written */
		else if (stage == SQLITE_COPY_INIT)
			err_set(err, ERR_FAIL, "cannot start restoring into '%s': %s",
				target->url.path, sqlite3_errmsg(dst));
		else if (stage == SQLITE_COPY_LOCKED)
			err_set(err, ERR_LOCKED, "restoring into '%s' failed (the database is "
				"unchanged): other connections kept it locked for %.1f s "
				"(--lock-timeout)", target->url.path, (double)give_up / 1000);
		else if (stage == SQLITE_COPY_STEP)
			err_set(err, rc == SQLITE_FULL ? ERR_NOSPACE : ERR_FAIL,
				"restoring into '%s' failed (the database is unchanged): %s",
				target->url.path, sqlite3_errstr(rc));
		else
			err_set(err, ERR_FAIL, "restoring into '%s' failed: %s", target->url.path,
				sqlite3_errstr(rc));
		goto out;
	}
	copied = 1;
	ret = verify_restored(target, held, mark, opts, err);
	/* while the lock is still held: no reader is in the way */
	if (ret == 0)
		put_journal_mode(dst, target->url.path, &head, opts);
out:
	/* nothing was copied: the target goes back to WAL mode, as it was */
	if (left_wal && !copied)
		(void)sqlite_set_journal_wal(dst, 1);
	if (held)
		restore_release(dst);
	free(mark);
	sqlite3_close(src);
	return ret;
}

const struct restore_driver restore_sqlite_driver = {
	.engine = "sqlite",
	.load = sqlite_load,
	.apply = sqlite_apply,
	.discard = stage_free,
};
