/*
 * stream_vfs: an SQLite VFS whose one database file is a stream.
 *
 * SQLite's online backup API copies a database into another connection's
 * database.  Copying into a real scratch file costs a full write and read
 * of the database, one 4 KiB system call per page each way; this VFS lets
 * the backup write its destination straight into the snapshot instead.
 *
 * The destination pager writes pages 2..N in ascending order (spilling its
 * cache as the copy goes, and at commit), while page 1 stays pinned by the
 * write transaction and is written at commit, after the others it spilled.
 * So the file hands every write at the expected next offset to the sink and
 * keeps page 1 aside (stream_vfs_head) for the caller to store last.  The
 * one page the backup skips is the lock-byte page (the page holding
 * SQLite's PENDING_BYTE, offset 1 GiB): SQLite never reads or writes it, a
 * file copy holds a hole there, and the stream holds a page of zeros, so a
 * database of 1 GiB or more streams like any other.  Any
 * other access pattern (a write elsewhere, a read of something it no longer
 * has) fails the copy with SQLITE_IOERR instead of producing a wrong file:
 * stream_vfs_error says what happened.
 *
 * One stream at a time per process (the file is found through a static
 * slot); the destination connection must use journal_mode=OFF.
 */
#ifndef SM_STREAM_VFS_H
#define SM_STREAM_VFS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define STREAM_VFS_NAME "safe-migrate-stream"

/* Receives the bytes of the file from offset page_size on, in order. */
typedef int (*stream_sink_fn)(void *ud, const void *data, size_t len, struct sm_error *err);

struct stream_vfs {
	uint32_t page_size;
	stream_sink_fn sink;
	void *ud;
	/* filled in by the VFS */
	unsigned char *head;   /* page 1 once written (owned, page_size bytes) */
	uint64_t next;         /* offset the next streamed write must have */
	uint64_t lock_page;    /* offset of the lock-byte page, never written */
	struct sm_error err;   /* the sink's error, or what went wrong */
	int failed;
};

/*
 * Registers the VFS (once) and makes s the file that the next database
 * opened with it streams into.  Returns 0, or -1 if SQLite refused.
 */
int stream_vfs_attach(struct stream_vfs *s, struct sm_error *err);
/*
 * Offset of the lock-byte page for page_size: the page holding SQLite's
 * PENDING_BYTE (0x40000000 unless a test lowered it with
 * SQLITE_TESTCTRL_PENDING_BYTE, which this reads without changing).
 */
uint64_t stream_vfs_lock_page(uint32_t page_size);
/* Detaches s and frees its head.  */
void stream_vfs_detach(struct stream_vfs *s);

#endif
