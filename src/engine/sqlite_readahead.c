/*
 * sqlite_readahead: large-block reads of a private database file (see
 * sqlite_readahead.h).  The wrapped file keeps RA_SLOTS aligned blocks of
 * RA_BLOCK bytes and replaces the least recently used one on a miss.
 *
 * Pages are copied out of the blocks (xRead) or, with PRAGMA mmap_size,
 * lent to SQLite in place (xFetch) the way it would use a memory map; a
 * lent page pins its block until xUnfetch.  A block is loaded only for a
 * miss that continues a forward scan or falls in a block read densely
 * (ra_local); other misses read one page, so random lookups cost what they
 * cost SQLite without this VFS.  (A thread loading the next
 * block ahead was tried: on a file in the page cache a block is copied in
 * less time than it takes to hand it over, and the check got slower.)
 */
#include "sqlite_readahead.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

#define RA_BLOCK 524288 /* 512 KiB; a literal, so int and 64-bit uses agree */
#define RA_SLOTS 4

struct ra_slot {
	unsigned char *buf; /* RA_BLOCK bytes, allocated on first use */
	sqlite3_int64 off;  /* the block held; -1: none */
	int len;            /* valid bytes; 0: empty */
	int pins;           /* pages lent by xFetch (or being copied out) */
	unsigned long used;
};

struct ra_file {
	sqlite3_file base; /* must be first */
	sqlite3_file *real;
	struct ra_slot slot[RA_SLOTS];
	unsigned long tick;
	sqlite3_int64 last_miss; /* block of the last miss (loaded or read plain) */
	int misses;              /* plain reads in that block since */
	sqlite3_int64 map_limit; /* xFetch lends pages below it (PRAGMA mmap_size) */
};

/* Where the wrapped VFS's file lives, after ours, suitably aligned. */
#define RA_REAL_OFFSET ((sizeof(struct ra_file) + 15) & ~(size_t)15)

static sqlite3_vfs *real_vfs(sqlite3_vfs *v)
{
	return v->pAppData;
}

/* The slot holding the block at base, or -1. */
static int ra_find(const struct ra_file *f, sqlite3_int64 base)
{
	for (int i = 0; i < RA_SLOTS; i++)
		if (f->slot[i].off == base && f->slot[i].len)
			return i;
	return -1;
}

/* The least recently used slot that no lent page pins, with a buffer; -1
 * if every slot is pinned. */
static int ra_victim(struct ra_file *f)
{
	int s = -1;

	for (int i = 0; i < RA_SLOTS; i++) {
		const struct ra_slot *c = &f->slot[i];
		if (c->pins)
			continue;
		if (s < 0 || c->used < f->slot[s].used)
			s = i;
	}
	if (s >= 0 && !f->slot[s].buf)
		f->slot[s].buf = xmalloc(RA_BLOCK);
	return s;
}

/* Forgets every block: the file may have changed.  Lent pages keep their
 * memory (a pinned slot is never refilled) but are not found again. */
static void ra_drop(struct ra_file *f)
{
	for (int i = 0; i < RA_SLOTS; i++) {
		f->slot[i].off = -1;
		f->slot[i].len = 0;
	}
}

static int ra_close(sqlite3_file *sf)
{
	struct ra_file *f = (struct ra_file *)sf;
	int rc = f->real->pMethods ? f->real->pMethods->xClose(f->real) : SQLITE_OK;

	for (int i = 0; i < RA_SLOTS; i++)
		free(f->slot[i].buf);
	return rc;
}

/* Loads the block at base into a free slot; the slot comes back pinned,
 * -1 if none is free (*rc SQLITE_OK) or the read failed (*rc set). */
static int ra_load(struct ra_file *f, sqlite3_int64 base, int *rc)
{
	struct ra_slot *c;
	sqlite3_int64 size = 0;
	int s = ra_victim(f), len = RA_BLOCK;

	*rc = SQLITE_OK;
	if (s < 0)
		return -1;
	c = &f->slot[s];
	c->off = base;
	c->len = 0;
	*rc = f->real->pMethods->xRead(f->real, c->buf, RA_BLOCK, base);
	if (*rc == SQLITE_IOERR_SHORT_READ) {
		/* the file ends inside the block: keep only what exists */
		*rc = f->real->pMethods->xFileSize(f->real, &size);
		len = *rc != SQLITE_OK || size <= base ? 0 :
		      (int)(size - base < RA_BLOCK ? size - base : RA_BLOCK);
	} else if (*rc != SQLITE_OK) {
		len = 0;
	}
	if (!len) {
		c->off = -1;
		return -1;
	}
	c->len = len;
	c->pins = 1;
	return s;
}

/* Plain reads in one block after which the block is loaded. */
#define RA_DENSE 4

/* Whether a miss in the block at base is worth loading the whole block
 * for: it continues a forward scan (the last miss lay in the block before),
 * or this block has been read page by page RA_DENSE times in a row.  A
 * lookup that jumps around the file (an index probe of PRAGMA
 * integrity_check, count(*) over an index whose pages are scattered, a
 * walk that visits a page or two per block) reads its one page, as SQLite
 * would, instead of 512 KiB. */
static int ra_local(const struct ra_file *f, sqlite3_int64 base)
{
	return f->last_miss + RA_BLOCK == base ||
	       (f->last_miss == base && f->misses >= RA_DENSE);
}

/* Records a page read the plain way in the block at base. */
static void ra_plain_miss(struct ra_file *f, sqlite3_int64 base)
{
	if (f->last_miss == base) {
		f->misses++;
	} else {
		f->last_miss = base;
		f->misses = 1;
	}
}

/* Pins the slot holding the page [off, off + amt) of one block, loading
 * the block if need be; -1 when the page must be read the plain way (it
 * crosses a block, lies past the end of the file, no slot is free, or the
 * access does not look like a scan) or the read failed (*rc set).  plain:
 * the caller reads the page itself if -1 comes back, so a miss counts
 * towards the scan detection (xFetch's misses come back through xRead). */
static int ra_pin(struct ra_file *f, sqlite3_int64 off, int amt, int plain, int *rc)
{
	sqlite3_int64 base = off - off % RA_BLOCK;
	int s;

	*rc = SQLITE_OK;
	if (amt <= 0 || off < 0 || off + amt > base + RA_BLOCK)
		return -1;
	s = ra_find(f, base);
	if (s >= 0) {
		f->slot[s].pins++;
	} else if (!ra_local(f, base)) {
		if (plain)
			ra_plain_miss(f, base);
		return -1;
	} else {
		f->last_miss = base;
		f->misses = 0;
		s = ra_load(f, base, rc);
	}
	if (s >= 0 && off + amt > base + f->slot[s].len) {
		f->slot[s].pins--;
		s = -1;
	}
	if (s >= 0)
		f->slot[s].used = ++f->tick;
	return s;
}

static int ra_read(sqlite3_file *sf, void *buf, int amt, sqlite3_int64 off)
{
	struct ra_file *f = (struct ra_file *)sf;
	int rc, s = ra_pin(f, off, amt, 1, &rc);

	if (rc != SQLITE_OK)
		return rc;
	/* past the end of the file (the wrapped VFS reports it properly), or
	 * every block is pinned by lent pages */
	if (s < 0)
		return f->real->pMethods->xRead(f->real, buf, amt, off);
	memcpy(buf, f->slot[s].buf + (off - f->slot[s].off), (size_t)amt);
	f->slot[s].pins--;
	return SQLITE_OK;
}

static int ra_fetch(sqlite3_file *sf, sqlite3_int64 off, int amt, void **pp)
{
	struct ra_file *f = (struct ra_file *)sf;
	int rc = SQLITE_OK, s = -1;

	*pp = NULL;
	if (off + amt <= f->map_limit)
		s = ra_pin(f, off, amt, 0, &rc);
	/* NULL: SQLite reads the page with xRead instead */
	if (s >= 0)
		*pp = f->slot[s].buf + (off - f->slot[s].off);
	return rc;
}

static int ra_unfetch(sqlite3_file *sf, sqlite3_int64 off, void *p)
{
	struct ra_file *f = (struct ra_file *)sf;

	(void)off;
	/* p == NULL: SQLite lets go of every mapping; nothing is mapped */
	if (!p)
		return SQLITE_OK;
	for (int i = 0; i < RA_SLOTS; i++) {
		unsigned char *b = f->slot[i].buf;
		if (b && (unsigned char *)p >= b && (unsigned char *)p < b + RA_BLOCK) {
			f->slot[i].pins--;
			return SQLITE_OK;
		}
	}
	return SQLITE_OK;
}

static int ra_write(sqlite3_file *sf, const void *buf, int amt, sqlite3_int64 off)
{
	struct ra_file *f = (struct ra_file *)sf;

	ra_drop(f);
	return f->real->pMethods->xWrite(f->real, buf, amt, off);
}

static int ra_truncate(sqlite3_file *sf, sqlite3_int64 size)
{
	struct ra_file *f = (struct ra_file *)sf;

	ra_drop(f);
	return f->real->pMethods->xTruncate(f->real, size);
}

#define REAL(sf) (((struct ra_file *)(sf))->real)

static int ra_sync(sqlite3_file *sf, int flags)
{
	return REAL(sf)->pMethods->xSync(REAL(sf), flags);
}

static int ra_file_size(sqlite3_file *sf, sqlite3_int64 *size)
{
	return REAL(sf)->pMethods->xFileSize(REAL(sf), size);
}

static int ra_lock(sqlite3_file *sf, int level)
{
	/* a new transaction may see what others wrote since the last one */
	if (level == SQLITE_LOCK_SHARED)
		ra_drop((struct ra_file *)sf);
	return REAL(sf)->pMethods->xLock(REAL(sf), level);
}

static int ra_unlock(sqlite3_file *sf, int level)
{
	/* another process may write once we let go of the lock */
	ra_drop((struct ra_file *)sf);
	return REAL(sf)->pMethods->xUnlock(REAL(sf), level);
}

static int ra_check_reserved(sqlite3_file *sf, int *out)
{
	return REAL(sf)->pMethods->xCheckReservedLock(REAL(sf), out);
}

static int ra_file_control(sqlite3_file *sf, int op, void *arg)
{
	struct ra_file *f = (struct ra_file *)sf;

	if (op == SQLITE_FCNTL_MMAP_SIZE) {
		/* the limit of xFetch: kept here, so the wrapped file never maps */
		sqlite3_int64 limit = *(sqlite3_int64 *)arg;

		*(sqlite3_int64 *)arg = f->map_limit;
		if (limit >= 0)
			f->map_limit = limit;
		return SQLITE_OK;
	}
	return REAL(sf)->pMethods->xFileControl(REAL(sf), op, arg);
}

static int ra_sector_size(sqlite3_file *sf)
{
	return REAL(sf)->pMethods->xSectorSize(REAL(sf));
}

static int ra_device_characteristics(sqlite3_file *sf)
{
	return REAL(sf)->pMethods->xDeviceCharacteristics(REAL(sf));
}

static int ra_shm_map(sqlite3_file *sf, int pg, int pgsz, int extend, void volatile **p)
{
	return REAL(sf)->pMethods->xShmMap(REAL(sf), pg, pgsz, extend, p);
}

static int ra_shm_lock(sqlite3_file *sf, int offset, int n, int flags)
{
	/* WAL mode: the file's SHARED lock stays for the connection's life,
	 * and a read transaction begins (and ends) with a shared lock on one of
	 * the WAL-index's read marks instead.  What the database file held when
	 * a block was read need not be what the next transaction may read
	 * from it (a checkpoint may have copied newer pages in since): the
	 * blocks last no longer than the transaction that read them. */
	if (flags & SQLITE_SHM_SHARED)
		ra_drop((struct ra_file *)sf);
	return REAL(sf)->pMethods->xShmLock(REAL(sf), offset, n, flags);
}

static void ra_shm_barrier(sqlite3_file *sf)
{
	REAL(sf)->pMethods->xShmBarrier(REAL(sf));
}

static int ra_shm_unmap(sqlite3_file *sf, int del)
{
	return REAL(sf)->pMethods->xShmUnmap(REAL(sf), del);
}

/* Version 3: xFetch lends pages out of the blocks (nothing is mapped). */
static const sqlite3_io_methods ra_io = {
	.iVersion = 3,
	.xFetch = ra_fetch,
	.xUnfetch = ra_unfetch,
	.xClose = ra_close,
	.xRead = ra_read,
	.xWrite = ra_write,
	.xTruncate = ra_truncate,
	.xSync = ra_sync,
	.xFileSize = ra_file_size,
	.xLock = ra_lock,
	.xUnlock = ra_unlock,
	.xCheckReservedLock = ra_check_reserved,
	.xFileControl = ra_file_control,
	.xSectorSize = ra_sector_size,
	.xDeviceCharacteristics = ra_device_characteristics,
	.xShmMap = ra_shm_map,
	.xShmLock = ra_shm_lock,
	.xShmBarrier = ra_shm_barrier,
	.xShmUnmap = ra_shm_unmap,
};

static int ra_open(sqlite3_vfs *v, const char *name, sqlite3_file *sf, int flags, int *out)
{
	sqlite3_vfs *rv = real_vfs(v);
	struct ra_file *f = (struct ra_file *)sf;
	int rc;

	if (!(flags & SQLITE_OPEN_MAIN_DB))
		return rv->xOpen(rv, name, sf, flags, out);
	memset(f, 0, sizeof(*f));
	for (int i = 0; i < RA_SLOTS; i++)
		f->slot[i].off = -1;
	/* a read of the first pages starts a scan */
	f->last_miss = -RA_BLOCK;
	f->real = (sqlite3_file *)((char *)sf + RA_REAL_OFFSET);
	rc = rv->xOpen(rv, name, f->real, flags, out);
	if (rc != SQLITE_OK || !f->real->pMethods || f->real->pMethods->iVersion < 2) {
		if (rc == SQLITE_OK) {
			if (f->real->pMethods)
				f->real->pMethods->xClose(f->real);
			rc = SQLITE_CANTOPEN;
		}
		sf->pMethods = NULL;
		return rc;
	}
	sf->pMethods = &ra_io;
	return SQLITE_OK;
}

static int ra_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
	return real_vfs(v)->xDelete(real_vfs(v), name, sync_dir);
}

static int ra_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
	return real_vfs(v)->xAccess(real_vfs(v), name, flags, out);
}

static int ra_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
	return real_vfs(v)->xFullPathname(real_vfs(v), name, n, out);
}

static void *ra_dl_open(sqlite3_vfs *v, const char *name)
{
	return real_vfs(v)->xDlOpen(real_vfs(v), name);
}

static void ra_dl_error(sqlite3_vfs *v, int n, char *out)
{
	real_vfs(v)->xDlError(real_vfs(v), n, out);
}

static void (*ra_dl_sym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
	return real_vfs(v)->xDlSym(real_vfs(v), h, sym);
}

static void ra_dl_close(sqlite3_vfs *v, void *h)
{
	real_vfs(v)->xDlClose(real_vfs(v), h);
}

static int ra_randomness(sqlite3_vfs *v, int n, char *out)
{
	return real_vfs(v)->xRandomness(real_vfs(v), n, out);
}

static int ra_sleep(sqlite3_vfs *v, int us)
{
	return real_vfs(v)->xSleep(real_vfs(v), us);
}

static int ra_current_time(sqlite3_vfs *v, double *out)
{
	return real_vfs(v)->xCurrentTime(real_vfs(v), out);
}

static int ra_last_error(sqlite3_vfs *v, int n, char *out)
{
	return real_vfs(v)->xGetLastError(real_vfs(v), n, out);
}

static sqlite3_vfs ra_vfs = {
	.iVersion = 1,
	.mxPathname = 512,
	.zName = SQLITE_READAHEAD_VFS,
	.xOpen = ra_open,
	.xDelete = ra_delete,
	.xAccess = ra_access,
	.xFullPathname = ra_full_pathname,
	.xDlOpen = ra_dl_open,
	.xDlError = ra_dl_error,
	.xDlSym = ra_dl_sym,
	.xDlClose = ra_dl_close,
	.xRandomness = ra_randomness,
	.xSleep = ra_sleep,
	.xCurrentTime = ra_current_time,
	.xGetLastError = ra_last_error,
};

int sqlite_readahead_register(void)
{
	sqlite3_vfs *rv;

	if (sqlite3_vfs_find(SQLITE_READAHEAD_VFS))
		return SQLITE_OK;
	rv = sqlite3_vfs_find(NULL);
	if (!rv)
		return SQLITE_ERROR;
	ra_vfs.pAppData = rv;
	ra_vfs.mxPathname = rv->mxPathname;
	ra_vfs.szOsFile = (int)(RA_REAL_OFFSET + (size_t)rv->szOsFile);
	return sqlite3_vfs_register(&ra_vfs, 0);
}
