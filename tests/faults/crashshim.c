/*
 * crashshim: an LD_PRELOAD library that simulates a power loss at a chosen
 * fsync, in the spirit of SQLite's crash tests (test6.c): whatever was not
 * made durable by then is lost, and the process dies.
 *
 * What it models, for files under SM_CRASH_ROOT only:
 *   - file data: every write, pwrite or ftruncate keeps the bytes (and the
 *     file size) it changes; fsync or fdatasync of the file forgets them;
 *   - directory entries: every create (open with O_CREAT of a new name,
 *     link, mkdir), rename (including the file it replaced) and unlink is
 *     remembered; fsync of the directory forgets those made in it.
 * At the Nth fsync/fdatasync on a file under the root (SM_CRASH_AT=N), before
 * that call runs, everything still remembered is undone in reverse order
 * (directory entries come back or go, data and sizes return to their last
 * synced state) and the process SIGKILLs itself.
 *
 * What it does not model: reordering or partial loss among unsynced
 * operations (all of them are lost, the harshest single outcome), torn
 * sectors, mmap writes (SQLite's WAL index; the tests use rollback
 * journals), and file systems that make a new file's name durable with the
 * file's own fsync (ext4 usually does; POSIX does not promise it).
 *
 * Environment (read once, then removed so that children run unshimmed):
 *   SM_CRASH_ROOT=DIR          only paths under DIR are tracked
 *   SM_CRASH_AT=N              crash at the Nth fsync under DIR
 *   SM_CRASH_COUNT_FILE=PATH   at exit, writes the number of fsyncs there
 *
 * Built without sanitizers, like faultshim.c.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum op { OP_DATA, OP_CREATE, OP_MKDIR, OP_RENAME, OP_UNLINK };

struct rec {
	enum op op;
	char *path;       /* DATA: the file; CREATE/MKDIR/UNLINK: the name; RENAME: to */
	char *from;       /* RENAME: the old name */
	char *aside;      /* RENAME over a file / UNLINK: a hard link to the old file */
	dev_t dev;        /* DATA: the file; others: the directory holding path */
	ino_t ino;
	off_t off, old_size;
	unsigned char *old; /* DATA: the bytes [off, off + len) had (within old_size) */
	size_t len;
	struct rec *prev;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct rec *last;
static char *root;
static size_t root_len;
static unsigned long crash_at, fsyncs, asides;
static char *count_file;
static pid_t owner;

#define REAL(ret, name, ...)                                              \
	static ret (*real_##name)(__VA_ARGS__);                          \
	if (!real_##name)                                                 \
		*(void **)&real_##name = dlsym(RTLD_NEXT, #name)

__attribute__((constructor)) static void crash_init(void)
{
	const char *r = getenv("SM_CRASH_ROOT"), *a = getenv("SM_CRASH_AT");
	const char *c = getenv("SM_CRASH_COUNT_FILE");

	owner = getpid();
	if (r) {
		root = realpath(r, NULL);
		root_len = root ? strlen(root) : 0;
	}
	crash_at = a ? strtoul(a, NULL, 10) : 0;
	if (c)
		count_file = strdup(c);
	unsetenv("LD_PRELOAD");
	unsetenv("SM_CRASH_ROOT");
	unsetenv("SM_CRASH_AT");
	unsetenv("SM_CRASH_COUNT_FILE");
}

__attribute__((destructor)) static void crash_fini(void)
{
	char buf[64];
	int n, fd;

	if (!count_file || getpid() != owner)
		return;
	n = snprintf(buf, sizeof(buf), "fsync %lu\n", fsyncs);
	fd = (int)syscall(SYS_openat, AT_FDCWD, count_file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		syscall(SYS_write, fd, buf, (size_t)n);
		syscall(SYS_close, fd);
	}
}

static int under_root(const char *p)
{
	return root && !strncmp(p, root, root_len) && (p[root_len] == '/' || !p[root_len]);
}

/* The absolute path of dirfd/name (without resolving name's last part);
 * malloc'd, or NULL if not under the root. */
static char *abs_at(int dirfd, const char *name)
{
	char base[PATH_MAX], *out;
	ssize_t n;

	if (!root)
		return NULL;
	if (name[0] == '/') {
		out = strdup(name);
	} else {
		if (dirfd == AT_FDCWD) {
			if (!getcwd(base, sizeof(base)))
				return NULL;
		} else {
			char link[64];
			snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
			n = readlink(link, base, sizeof(base) - 1);
			if (n < 0)
				return NULL;
			base[n] = '\0';
		}
		if (asprintf(&out, "%s/%s", base, name) < 0)
			return NULL;
	}
	if (!under_root(out)) {
		free(out);
		return NULL;
	}
	return out;
}

static char *fd_path(int fd)
{
	char link[64], buf[PATH_MAX];
	ssize_t n;

	if (!root || fd <= 2)
		return NULL;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, buf, sizeof(buf) - 1);
	if (n < 0)
		return NULL;
	buf[n] = '\0';
	return under_root(buf) ? strdup(buf) : NULL;
}

static void dir_of(const char *path, dev_t *dev, ino_t *ino)
{
	char *d = strdup(path), *slash = strrchr(d, '/');
	struct stat st;

	if (slash)
		*slash = '\0';
	if (stat(d, &st) == 0) {
		*dev = st.st_dev;
		*ino = st.st_ino;
	}
	free(d);
}

static struct rec *push(enum op op, char *path)
{
	struct rec *r = calloc(1, sizeof(*r));

	r->op = op;
	r->path = path;
	if (op != OP_DATA)
		dir_of(path, &r->dev, &r->ino);
	r->prev = last;
	last = r;
	return r;
}

/* A hard link to path's current file, so that the file can come back. */
static char *keep_aside(const char *path)
{
	char *aside;

	if (asprintf(&aside, "%s.crashshim-aside.%lu", path, ++asides) < 0)
		return NULL;
	if (syscall(SYS_linkat, AT_FDCWD, path, AT_FDCWD, aside, 0) < 0) {
		free(aside);
		return NULL;
	}
	return aside;
}

static void rec_free(struct rec *r)
{
	if (r->aside)
		syscall(SYS_unlinkat, AT_FDCWD, r->aside, 0);
	free(r->path);
	free(r->from);
	free(r->aside);
	free(r->old);
	free(r);
}

/* Forgets what fsync of (dev, ino) made durable. */
static void forget(dev_t dev, ino_t ino, int is_dir)
{
	struct rec **pp = &last;

	while (*pp) {
		struct rec *r = *pp;
		if (r->dev == dev && r->ino == ino && (r->op == OP_DATA) == !is_dir) {
			*pp = r->prev;
			rec_free(r);
		} else {
			pp = &r->prev;
		}
	}
}

/* A directory whose own entry was never made durable is gone with all it
 * held, whatever was synced inside it. */
static void remove_tree(const char *path)
{
	int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char buf[4096];
	long n;

	if (fd >= 0) {
		while ((n = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0) {
			for (long off = 0; off < n;) {
				struct { unsigned long long ino; long long off; unsigned short reclen;
					 unsigned char type; char name[]; } *de = (void *)(buf + off);
				char *child;

				off += de->reclen;
				if (!strcmp(de->name, ".") || !strcmp(de->name, ".."))
					continue;
				if (asprintf(&child, "%s/%s", path, de->name) < 0)
					continue;
				if (de->type == DT_DIR)
					remove_tree(child);
				else
					syscall(SYS_unlinkat, AT_FDCWD, child, 0);
				free(child);
			}
		}
		syscall(SYS_close, fd);
	}
	syscall(SYS_unlinkat, AT_FDCWD, path, AT_REMOVEDIR);
}

/* Raw system calls only: the interposed wrappers would take mu again. */
static void undo_all(void)
{
	for (struct rec *r = last; r; r = r->prev) {
		switch (r->op) {
		case OP_DATA: {
			int fd = (int)syscall(SYS_openat, AT_FDCWD, r->path, O_WRONLY | O_CLOEXEC);
			if (fd < 0)
				break;
			if (r->len)
				syscall(SYS_pwrite64, fd, r->old, r->len, r->off);
			syscall(SYS_ftruncate, fd, r->old_size);
			syscall(SYS_close, fd);
			break;
		}
		case OP_CREATE:
			syscall(SYS_unlinkat, AT_FDCWD, r->path, 0);
			break;
		case OP_MKDIR:
			remove_tree(r->path);
			break;
		case OP_RENAME:
			syscall(SYS_renameat, AT_FDCWD, r->path, AT_FDCWD, r->from);
			if (r->aside)
				syscall(SYS_renameat, AT_FDCWD, r->aside, AT_FDCWD, r->path);
			break;
		case OP_UNLINK:
			if (r->aside)
				syscall(SYS_renameat, AT_FDCWD, r->aside, AT_FDCWD, r->path);
			break;
		}
	}
}

/* Before a write of len bytes at off (off < 0: the current position, or
 * the end with O_APPEND) or a truncate to len (trunc). */
static void note_data(int fd, off_t off, size_t len, int trunc)
{
	char *p = fd_path(fd);
	struct stat st;
	struct rec *r;

	if (!p)
		return;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		free(p);
		return;
	}
	if (trunc) {
		off = (off_t)len;
		len = off < st.st_size ? (size_t)(st.st_size - off) : 0;
	} else if (off < 0) {
		off = (fcntl(fd, F_GETFL) & O_APPEND) ? st.st_size : lseek(fd, 0, SEEK_CUR);
	}
	r = push(OP_DATA, p);
	r->dev = st.st_dev;
	r->ino = st.st_ino;
	r->off = off;
	r->old_size = st.st_size;
	if (off < st.st_size && len) {
		size_t have = (size_t)(st.st_size - off);
		r->len = len < have ? len : have;
		r->old = malloc(r->len);
		if (pread(fd, r->old, r->len, off) != (ssize_t)r->len)
			r->len = 0;
	}
}

static size_t iov_len(const struct iovec *iov, int cnt)
{
	size_t n = 0;

	for (int i = 0; i < cnt; i++)
		n += iov[i].iov_len;
	return n;
}

#define DATA_CALL(call, fd, off, len)                          \
	do {                                                   \
		ssize_t rv_;                                   \
		pthread_mutex_lock(&mu);                       \
		note_data(fd, off, len, 0);                    \
		rv_ = call;                                    \
		pthread_mutex_unlock(&mu);                     \
		return rv_;                                    \
	} while (0)

ssize_t write(int fd, const void *buf, size_t n)
{
	REAL(ssize_t, write, int, const void *, size_t);
	if (fd <= 2)
		return real_write(fd, buf, n);
	DATA_CALL(real_write(fd, buf, n), fd, -1, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
	DATA_CALL(real_pwrite(fd, buf, n, off), fd, off, n);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	REAL(ssize_t, pwrite64, int, const void *, size_t, off_t);
	DATA_CALL(real_pwrite64(fd, buf, n, off), fd, off, n);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	REAL(ssize_t, writev, int, const struct iovec *, int);
	if (fd <= 2)
		return real_writev(fd, iov, cnt);
	DATA_CALL(real_writev(fd, iov, cnt), fd, -1, iov_len(iov, cnt));
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t);
	DATA_CALL(real_pwritev(fd, iov, cnt, off), fd, off, iov_len(iov, cnt));
}

int ftruncate(int fd, off_t len)
{
	REAL(int, ftruncate, int, off_t);
	int rv;

	pthread_mutex_lock(&mu);
	note_data(fd, 0, (size_t)len, 1);
	rv = real_ftruncate(fd, len);
	pthread_mutex_unlock(&mu);
	return rv;
}

int ftruncate64(int fd, off_t len)
{
	return ftruncate(fd, len);
}

static int sync_call(int fd, int (*real)(int))
{
	struct stat st;
	char *p = fd_path(fd);
	int rv;

	pthread_mutex_lock(&mu);
	if (p && fstat(fd, &st) == 0) {
		if (++fsyncs == crash_at) {
			undo_all();
			kill(getpid(), SIGKILL);
		}
		forget(st.st_dev, st.st_ino, S_ISDIR(st.st_mode));
	}
	free(p);
	rv = real(fd);
	pthread_mutex_unlock(&mu);
	return rv;
}

int fsync(int fd)
{
	REAL(int, fsync, int);
	return sync_call(fd, real_fsync);
}

int fdatasync(int fd)
{
	REAL(int, fdatasync, int);
	return sync_call(fd, real_fdatasync);
}

static int open_common(int dirfd, const char *name, int flags, mode_t mode)
{
	REAL(int, openat, int, const char *, int, ...);
	char *p = (flags & O_CREAT) ? abs_at(dirfd, name) : NULL;
	struct stat st;
	int existed, fd;

	if (!p)
		return real_openat(dirfd, name, flags, mode);
	pthread_mutex_lock(&mu);
	existed = lstat(p, &st) == 0;
	fd = real_openat(dirfd, name, flags, mode);
	if (fd >= 0 && !existed)
		push(OP_CREATE, p);
	else
		free(p);
	pthread_mutex_unlock(&mu);
	return fd;
}

#define MODE_ARG(flags, mode)                                          \
	mode_t mode = 0;                                               \
	if ((flags) & (O_CREAT | O_TMPFILE)) {                         \
		va_list ap;                                            \
		va_start(ap, flags);                                   \
		mode = (mode_t)va_arg(ap, int);                        \
		va_end(ap);                                            \
	}

int open(const char *name, int flags, ...)
{
	MODE_ARG(flags, mode);
	return open_common(AT_FDCWD, name, flags, mode);
}

int open64(const char *name, int flags, ...)
{
	MODE_ARG(flags, mode);
	return open_common(AT_FDCWD, name, flags, mode);
}

int openat(int dirfd, const char *name, int flags, ...)
{
	MODE_ARG(flags, mode);
	return open_common(dirfd, name, flags, mode);
}

int openat64(int dirfd, const char *name, int flags, ...)
{
	MODE_ARG(flags, mode);
	return open_common(dirfd, name, flags, mode);
}

int mkdir(const char *name, mode_t mode)
{
	REAL(int, mkdir, const char *, mode_t);
	char *p = abs_at(AT_FDCWD, name);
	int rv;

	pthread_mutex_lock(&mu);
	rv = real_mkdir(name, mode);
	if (rv == 0 && p)
		push(OP_MKDIR, p);
	else
		free(p);
	pthread_mutex_unlock(&mu);
	return rv;
}

static int rename_common(int dfd1, const char *from, int dfd2, const char *to, unsigned flags)
{
	REAL(int, renameat2, int, const char *, int, const char *, unsigned);
	char *pf = abs_at(dfd1, from), *pt = abs_at(dfd2, to), *aside = NULL;
	struct stat st;
	int rv;

	pthread_mutex_lock(&mu);
	if (pf && pt && lstat(pt, &st) == 0 && !S_ISDIR(st.st_mode))
		aside = keep_aside(pt);
	rv = real_renameat2(dfd1, from, dfd2, to, flags);
	if (rv == 0 && pf && pt) {
		struct rec *r = push(OP_RENAME, pt);
		r->from = pf;
		r->aside = aside;
	} else {
		if (aside)
			syscall(SYS_unlinkat, AT_FDCWD, aside, 0);
		free(aside);
		free(pf);
		free(pt);
	}
	pthread_mutex_unlock(&mu);
	return rv;
}

int rename(const char *from, const char *to)
{
	return rename_common(AT_FDCWD, from, AT_FDCWD, to, 0);
}

int renameat(int dfd1, const char *from, int dfd2, const char *to)
{
	return rename_common(dfd1, from, dfd2, to, 0);
}

int renameat2(int dfd1, const char *from, int dfd2, const char *to, unsigned flags)
{
	return rename_common(dfd1, from, dfd2, to, flags);
}

int linkat(int dfd1, const char *from, int dfd2, const char *to, int flags)
{
	REAL(int, linkat, int, const char *, int, const char *, int);
	char *p = abs_at(dfd2, to);
	int rv;

	pthread_mutex_lock(&mu);
	rv = real_linkat(dfd1, from, dfd2, to, flags);
	if (rv == 0 && p)
		push(OP_CREATE, p);
	else
		free(p);
	pthread_mutex_unlock(&mu);
	return rv;
}

static int unlink_common(int dirfd, const char *name, int flags)
{
	REAL(int, unlinkat, int, const char *, int);
	char *p = (flags & AT_REMOVEDIR) ? NULL : abs_at(dirfd, name), *aside = NULL;
	int rv;

	pthread_mutex_lock(&mu);
	if (p)
		aside = keep_aside(p);
	rv = real_unlinkat(dirfd, name, flags);
	if (rv == 0 && p && aside) {
		push(OP_UNLINK, p)->aside = aside;
	} else {
		if (aside)
			syscall(SYS_unlinkat, AT_FDCWD, aside, 0);
		free(aside);
		free(p);
	}
	pthread_mutex_unlock(&mu);
	return rv;
}

int unlink(const char *name)
{
	return unlink_common(AT_FDCWD, name, 0);
}

int unlinkat(int dirfd, const char *name, int flags)
{
	return unlink_common(dirfd, name, flags);
}
