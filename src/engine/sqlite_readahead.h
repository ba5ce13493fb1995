/*
 * sqlite_readahead: a VFS for reading a private database file fast.
 *
 * SQLite reads one page per system call.  Checking or copying a freshly
 * written database of several hundred megabytes that way spends more time
 * entering the kernel than reading: PRAGMA integrity_check on a 500 MB
 * file makes 130,000 pread calls.  This VFS wraps the default one and reads
 * the main database file in large aligned blocks, serving the pages SQLite
 * asks for from the few blocks it keeps.
 *
 * Only for files nothing else writes while they are open (restore's
 * staging copy): the cache is dropped on every write or truncate through
 * this connection, but writes by other processes would not be seen.
 * Journals, WAL and shared memory pass straight through.
 */
#ifndef SM_SQLITE_READAHEAD_H
#define SM_SQLITE_READAHEAD_H

#define SQLITE_READAHEAD_VFS "safe-migrate-readahead"

/*
 * With PRAGMA mmap_size=N, pages below N are lent to SQLite out of the
 * blocks (xFetch) instead of copied; nothing is memory-mapped.
 */

/* Registers the VFS (once; not as the default).  Returns an SQLite code. */
int sqlite_readahead_register(void);

#endif
