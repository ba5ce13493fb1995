/*
 * fsutil: file-system helpers with the durability rules of safe-migrate.
 *
 * A file that other code (or an operator) may trust is written the way
 * redis saves its RDB: to a temp file in the target directory, fsync'd,
 * renamed over the final name, and then the directory is fsync'd.
 * All functions return 0 or -1 with err filled.
 */
#ifndef SM_FSUTIL_H
#define SM_FSUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "strbuf.h"

/* Reads the whole file into out (appended).  Refuses files over max bytes. */
int fs_read_file(const char *path, struct strbuf *out, size_t max, struct sm_error *err);
/* Temp files of durable writes are "<dir>/.safe-migrate-tmp.<pid>.<random>.<name>":
 * the pid lets a later writer remove a dead process's leftovers, the random
 * part (getrandom) makes the name unpredictable. */
#define FS_TMP_PREFIX ".safe-migrate-tmp."

/* Fills out with 2*nbytes hex digits of getrandom() output and a NUL
 * (nbytes at most 32). */
void fs_random_hex(char *out, size_t nbytes);
/* Sets out to a fresh temp base name "FS_TMP_PREFIX<pid>.<random>.<base>". */
int fs_temp_name(struct strbuf *out, const char *base);
/* The <base> of a temp name made by fs_temp_name (points into name), or
 * NULL if name is not one. */
const char *fs_temp_target(const char *name);
/* Renames from to to (both relative to dirfd) unless to exists: -1 with
 * errno EEXIST then.  renameat2(RENAME_NOREPLACE), else link+unlink, else
 * (no hard links either) a look before a plain rename. */
int fs_rename_noreplace(int dirfd, const char *from, const char *to);
/* Opens a directory for the *at calls and fsync; returns the fd or -1. */
int fs_open_dir(const char *dir, struct sm_error *err);

/* Writes data durably to path with the given mode (temp, fsync, rename, fsync
 * dir).  The temp file (fs_temp_name) is created with O_EXCL|O_NOFOLLOW
 * relative to path's directory, opened once; leftovers of killed writers
 * there are removed first (fs_cleanup_temps).  A symlink at path is replaced,
 * never followed; any other non-regular file there is refused. */
int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
		    struct sm_error *err);
/* A user-named output file (schema --output): a regular file, or one that
 * does not exist, is written with fs_write_atomic; a device, FIFO or socket
 * (/dev/null, /dev/stdout) is written in place, never replaced; a block
 * device is refused. */
int fs_write_output(const char *path, const void *data, size_t len, mode_t mode,
		    struct sm_error *err);
/* Like fs_write_atomic but never replaces: when path exists it fails with
 * err->sys_errno == EEXIST and leaves path alone. */
int fs_write_new(const char *path, const void *data, size_t len, mode_t mode,
		 struct sm_error *err);
/* The one cleaner of dead processes' temp files: removes FS_TMP_PREFIX<pid>.*
 * files (durable writes, snapshots being written, backup-dir probes) in dir
 * whose process is gone. */
void fs_cleanup_temps(const char *dir);
/* Appends one line durably (O_APPEND, fsync).  Creates the file with mode
 * (and fsyncs its directory then); never through a symlink, and only a
 * regular file. */
int fs_append_durable(const char *path, const char *line, mode_t mode, struct sm_error *err);
/* Opens (creating with mode) a lock file read-write: never through a
 * symlink, only a regular file (its creation is not fsync'd: a lock holds
 * nothing to lose).  Returns the fd. */
int fs_open_lock(const char *path, mode_t mode, struct sm_error *err);
/* mkdir -p with mode for directories it creates; each creation is made
 * durable by fsyncing the parent directory. */
int fs_mkdirs(const char *path, mode_t mode, struct sm_error *err);
/* fsyncs the directory containing path (or path itself if it is a directory). */
int fs_fsync_dir(const char *dir, struct sm_error *err);
/* Free bytes available to an unprivileged user on the file system holding dir. */
int fs_free_bytes(const char *dir, uint64_t *out, struct sm_error *err);
/* Directory part of path ("." when none); caller frees. */
char *fs_dirname(const char *path);
/* Last component of path; points into path. */
const char *fs_basename(const char *path);
/* Joins a and b with one '/'; caller frees. */
char *fs_join(const char *a, const char *b);
int fs_exists(const char *path);
int fs_is_dir(const char *path);
/* Write all of buf to fd, retrying on EINTR and short writes. */
int fs_write_all(int fd, const void *buf, size_t len);
/* Asks the kernel to start writing a written range to disk now (Linux
 * sync_file_range; nothing elsewhere), so that the final fsync of a large
 * file has little left to wait for.  Not a durability guarantee. */
void fs_start_writeback(int fd, off_t off, off_t len);
/* Like fs_write_all, at offset off (pwrite). */
int fs_pwrite_all(int fd, const void *buf, size_t len, off_t off);
/* Makes path absolute against the current directory; caller frees. */
char *fs_absolute(const char *path);
/* The path with every symbolic link and "." or ".." resolved (realpath),
 * or path as it is when it cannot be (it does not exist); caller frees. */
char *fs_resolve(const char *path);

#endif
