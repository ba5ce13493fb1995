/*
 * stream_vfs: an SQLite VFS whose one database file is a stream (see
 * stream_vfs.h for why and for the write order it relies on).
 *
 * Everything but the main database file is refused (the destination runs
 * with journal_mode=OFF, so SQLite asks for nothing else); time, randomness
 * and sleeping are the default VFS's functions.
 */
#include "stream_vfs.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

struct stream_file {
	sqlite3_file base; /* must be first */
	struct stream_vfs *s;
};

/* The stream the next xOpen attaches to (one at a time per process). */
static struct stream_vfs *attached;

/* Records why the copy cannot go on ("the backup copy <what> <off>"). */
static int fail(struct stream_vfs *s, int rc, const char *what, unsigned long long off)
{
	if (!s->failed) {
		s->failed = 1;
		err_set(&s->err, ERR_FAIL, "the backup copy %s %llu", what, off);
	}
	return rc;
}

static uint64_t file_size(const struct stream_vfs *s)
{
	if (s->next > s->page_size)
		return s->next;
	return s->head ? s->page_size : 0;
}

static int sf_close(sqlite3_file *f)
{
	(void)f;
	return SQLITE_OK;
}

static int sf_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off)
{
	struct stream_vfs *s = ((struct stream_file *)f)->s;
	uint64_t end = (uint64_t)off + (uint64_t)amt;

	if (off < 0 || amt < 0)
		return SQLITE_IOERR_READ;
	if ((uint64_t)off >= file_size(s)) {
		/* past the end: what SQLite expects of an empty or short file */
		memset(buf, 0, (size_t)amt);
		return SQLITE_IOERR_SHORT_READ;
	}
	if (s->head && end <= s->page_size) {
		memcpy(buf, s->head + off, (size_t)amt);
		return SQLITE_OK;
	}
	return fail(s, SQLITE_IOERR_READ, "re-read streamed data at offset", (unsigned long long)off);
}

/* Streams one page of zeros (the lock-byte page); -1 with s->err set. */
static int put_zero_page(struct stream_vfs *s)
{
	unsigned char *zero = xcalloc(1, s->page_size);
	int rc = s->sink(s->ud, zero, s->page_size, &s->err);

	free(zero);
	if (rc < 0) {
		s->failed = 1;
		return -1;
	}
	s->next += s->page_size;
	return 0;
}

static int sf_write(sqlite3_file *f, const void *buf, int amt, sqlite3_int64 off)
{
	struct stream_vfs *s = ((struct stream_file *)f)->s;

	if (s->failed)
		return SQLITE_IOERR_WRITE;
	if (off == 0 && (uint32_t)amt == s->page_size) {
		if (!s->head)
			s->head = xmalloc(s->page_size);
		memcpy(s->head, buf, s->page_size);
		return SQLITE_OK;
	}
	if (off >= 0 && (uint64_t)off == s->next + s->page_size && s->next == s->lock_page &&
	    (uint32_t)amt == s->page_size) {
		/* the backup never writes the lock-byte page: in a file it is a
		 * hole, read back as zeros, so the stream holds zeros there */
		if (put_zero_page(s) < 0)
			return s->err.kind == ERR_NOSPACE ? SQLITE_FULL : SQLITE_IOERR_WRITE;
	}
	if (off < 0 || (uint64_t)off != s->next || amt <= 0)
		return fail(s, SQLITE_IOERR_WRITE, "wrote out of order, at offset", (unsigned long long)off);
	if (s->sink(s->ud, buf, (size_t)amt, &s->err) < 0) {
		s->failed = 1;
		return s->err.kind == ERR_NOSPACE ? SQLITE_FULL : SQLITE_IOERR_WRITE;
	}
	s->next += (uint64_t)amt;
	return SQLITE_OK;
}

static int sf_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	struct stream_vfs *s = ((struct stream_file *)f)->s;

	/* a stream can only be "truncated" to what it already is */
	if (size < 0 || (uint64_t)size != file_size(s))
		return fail(s, SQLITE_IOERR_TRUNCATE, "truncated the stream to byte", (unsigned long long)size);
	return SQLITE_OK;
}

static int sf_sync(sqlite3_file *f, int flags)
{
	(void)f;
	(void)flags;
	return SQLITE_OK;
}

static int sf_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	*size = (sqlite3_int64)file_size(((struct stream_file *)f)->s);
	return SQLITE_OK;
}

static int sf_lock(sqlite3_file *f, int level)
{
	(void)f;
	(void)level;
	return SQLITE_OK;
}

static int sf_check_reserved(sqlite3_file *f, int *out)
{
	(void)f;
	*out = 0;
	return SQLITE_OK;
}

static int sf_file_control(sqlite3_file *f, int op, void *arg)
{
	(void)f;
	(void)op;
	(void)arg;
	return SQLITE_NOTFOUND;
}

static int sf_sector_size(sqlite3_file *f)
{
	(void)f;
	return 4096;
}

static int sf_device_characteristics(sqlite3_file *f)
{
	(void)f;
	return 0;
}

static const sqlite3_io_methods stream_io = {
	.iVersion = 1,
	.xClose = sf_close,
	.xRead = sf_read,
	.xWrite = sf_write,
	.xTruncate = sf_truncate,
	.xSync = sf_sync,
	.xFileSize = sf_file_size,
	.xLock = sf_lock,
	.xUnlock = sf_lock,
	.xCheckReservedLock = sf_check_reserved,
	.xFileControl = sf_file_control,
	.xSectorSize = sf_sector_size,
	.xDeviceCharacteristics = sf_device_characteristics,
};

static int sv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
	struct stream_file *sf = (struct stream_file *)f;

	(void)vfs;
	(void)name;
	f->pMethods = NULL;
	if (!(flags & SQLITE_OPEN_MAIN_DB) || !attached)
		return SQLITE_CANTOPEN;
	sf->s = attached;
	f->pMethods = &stream_io;
	if (out_flags)
		*out_flags = flags;
	return SQLITE_OK;
}

static int sv_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
	(void)vfs;
	(void)name;
	(void)sync_dir;
	return SQLITE_OK;
}

static int sv_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	(void)vfs;
	(void)name;
	(void)flags;
	*out = 0; /* no journal, no WAL: nothing but the stream exists */
	return SQLITE_OK;
}

static int sv_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	(void)vfs;
	if ((int)strlen(name) >= n)
		return SQLITE_CANTOPEN;
	memcpy(out, name, strlen(name) + 1);
	return SQLITE_OK;
}

static int sv_last_error(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	if (n > 0)
		out[0] = '\0';
	return 0;
}

static sqlite3_vfs stream_vfs_def = {
	.iVersion = 1,
	.szOsFile = sizeof(struct stream_file),
	.mxPathname = 512,
	.zName = STREAM_VFS_NAME,
	.xOpen = sv_open,
	.xDelete = sv_delete,
	.xAccess = sv_access,
	.xFullPathname = sv_full_pathname,
	.xGetLastError = sv_last_error,
};

uint64_t stream_vfs_lock_page(uint32_t page_size)
{
	/* SQLITE_TESTCTRL_PENDING_BYTE with 0 reads the value without changing
	 * it; a build without test controls returns 0 and uses the default */
	int pending = sqlite3_test_control(SQLITE_TESTCTRL_PENDING_BYTE, 0);
	uint64_t byte = pending > 0 ? (uint64_t)pending : (uint64_t)0x40000000;

	return byte - byte % page_size;
}

int stream_vfs_attach(struct stream_vfs *s, struct sm_error *err)
{
	if (!sqlite3_vfs_find(STREAM_VFS_NAME)) {
		sqlite3_vfs *d = sqlite3_vfs_find(NULL);

		if (!d)
			return err_set(err, ERR_FAIL, "cannot register the SQLite stream VFS");
		/* the default VFS's clock, randomness and sleep do not depend on
		 * which VFS object they are called through */
		stream_vfs_def.xRandomness = d->xRandomness;
		stream_vfs_def.xSleep = d->xSleep;
		stream_vfs_def.xCurrentTime = d->xCurrentTime;
		if (sqlite3_vfs_register(&stream_vfs_def, 0) != SQLITE_OK)
			return err_set(err, ERR_FAIL, "cannot register the SQLite stream VFS");
	}
	s->head = NULL;
	s->next = s->page_size;
	s->failed = 0;
	s->lock_page = stream_vfs_lock_page(s->page_size);
	attached = s;
	return 0;
}

void stream_vfs_detach(struct stream_vfs *s)
{
	if (attached == s)
		attached = NULL;
	free(s->head);
	s->head = NULL;
}
