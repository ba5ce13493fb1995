/*
 * faultshim: an LD_PRELOAD library that makes system calls fail, or kills
 * the process, at a chosen call, so that the fault tests can check what
 * safe-migrate leaves behind when the world fails under it (SQLite's own
 * test suite does the same with its "I/O error" VFS).
 *
 * Call kinds (only calls on descriptors above 2 count, so that stdout and
 * stderr never fail):
 *
 *   write   write, pwrite, pwrite64, writev, pwritev
 *   fsync   fsync, fdatasync
 *   fdatasync  fdatasync alone (a call counts as fsync too): the
 *           background flushes of large files (src/core/flusher.c)
 *   rename  rename, renameat, renameat2
 *   send    send, sendto, sendmsg (libpq talks to the server with send);
 *           a failed send also shuts the socket down, as a broken
 *           connection would be
 *   read0   pread, pread64 at offset 0: SQLite reads a database's first
 *           page (its header) when a connection's view of the file begins,
 *           so a stop there lands between one view and the next
 *
 * Environment (read once at load, then removed from the environment so that
 * child processes run unfaulted):
 *
 *   SM_FAULT=KIND:N[:ERRNO]   the Nth call of KIND fails with ERRNO (EIO by
 *                             default, or ENOSPC, EDQUOT, EROFS, EPIPE)
 *   SM_FAULT_PERSIST=1        ... and so does every later call of KIND
 *   SM_FAULT_KILL=KIND:N      the process SIGKILLs itself at the Nth call
 *                             of KIND, before the call is made
 *   SM_FAULT_STOP=KIND:N      the process SIGSTOPs itself at the Nth call of
 *                             KIND, before the call is made (a test then
 *                             races another process against it, and
 *                             SIGCONTs it)
 *   SM_FAKE_TIME=SECONDS      time() returns SECONDS (two runs "in the same
 *                             second", whenever they run)
 *   SM_FAULT_COUNT_FILE=PATH  at exit, writes "KIND COUNT" lines (one per
 *                             kind) and "fired 0|1" to PATH
 *
 * Built without sanitizers: it is preloaded into the ASan build of
 * safe-migrate, which then needs ASAN_OPTIONS=verify_asan_link_order=0.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum kind { K_WRITE, K_FSYNC, K_RENAME, K_SEND, K_FDATASYNC, K_READ0, K_COUNT };

static const char *const kind_names[K_COUNT] = { "write", "fsync", "rename", "send",
						 "fdatasync", "read0" };

static unsigned long counts[K_COUNT];
static int fault_kind = -1, kill_kind = -1, stop_kind = -1, fault_errno = EIO, persist, fired;
static unsigned long fault_at, kill_at, stop_at;
static long long fake_time = -1;
static char *count_file;
static pid_t owner;

static int parse_kind(const char *s, size_t n)
{
	for (int k = 0; k < K_COUNT; k++)
		if (strlen(kind_names[k]) == n && !strncmp(s, kind_names[k], n))
			return k;
	return -1;
}

static int parse_errno(const char *s)
{
	static const struct { const char *name; int val; } tab[] = {
		{ "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EDQUOT", EDQUOT },
		{ "EROFS", EROFS }, { "EPIPE", EPIPE },
	};

	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (!strcmp(s, tab[i].name))
			return tab[i].val;
	return EIO;
}

/* "KIND:N[:ERRNO]" */
static void parse_spec(const char *spec, int *kind, unsigned long *at, int *eno)
{
	const char *colon = spec ? strchr(spec, ':') : NULL;
	char *end;

	if (!colon)
		return;
	*kind = parse_kind(spec, (size_t)(colon - spec));
	*at = strtoul(colon + 1, &end, 10);
	if (*end == ':' && eno)
		*eno = parse_errno(end + 1);
	if (*kind < 0 || *at == 0)
		*kind = -1;
}

__attribute__((constructor)) static void shim_init(void)
{
	const char *f = getenv("SM_FAULT"), *k = getenv("SM_FAULT_KILL");
	const char *c = getenv("SM_FAULT_COUNT_FILE"), *p = getenv("SM_FAULT_PERSIST");
	const char *st = getenv("SM_FAULT_STOP"), *t = getenv("SM_FAKE_TIME");

	owner = getpid();
	parse_spec(f, &fault_kind, &fault_at, &fault_errno);
	parse_spec(k, &kill_kind, &kill_at, NULL);
	parse_spec(st, &stop_kind, &stop_at, NULL);
	if (t)
		fake_time = strtoll(t, NULL, 10);
	persist = p && *p == '1';
	if (c)
		count_file = strdup(c);
	unsetenv("LD_PRELOAD");
	unsetenv("SM_FAULT");
	unsetenv("SM_FAULT_KILL");
	unsetenv("SM_FAULT_PERSIST");
	unsetenv("SM_FAULT_COUNT_FILE");
	unsetenv("SM_FAULT_STOP");
	unsetenv("SM_FAKE_TIME");
}

__attribute__((destructor)) static void shim_fini(void)
{
	char buf[256];
	int n = 0, fd;

	if (!count_file || getpid() != owner)
		return;
	for (int k = 0; k < K_COUNT; k++)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "%s %lu\n", kind_names[k], counts[k]);
	n += snprintf(buf + n, sizeof(buf) - (size_t)n, "fired %d\n", fired);
	/* raw system calls: not counted, not faulted */
	fd = (int)syscall(SYS_openat, AT_FDCWD, count_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			  0600);
	if (fd >= 0) {
		syscall(SYS_write, fd, buf, (size_t)n);
		syscall(SYS_close, fd);
	}
}

/* Counts one call of kind on fd; returns -1 (errno set) when it must fail.
 * A failed send also breaks the connection, as a real one does: otherwise
 * both ends would wait for each other for ever. */
static int hit(enum kind k, int fd)
{
	unsigned long n = __atomic_add_fetch(&counts[k], 1, __ATOMIC_SEQ_CST);

	if ((int)k == kill_kind && n == kill_at)
		kill(getpid(), SIGKILL);
	if ((int)k == stop_kind && n == stop_at)
		kill(getpid(), SIGSTOP);
	if ((int)k == fault_kind && (n == fault_at || (persist && n > fault_at))) {
		fired = 1;
		if (k == K_SEND)
			shutdown(fd, SHUT_RDWR);
		errno = fault_errno;
		return -1;
	}
	return 0;
}

#define REAL(ret, name, ...)                                              \
	static ret (*real_##name)(__VA_ARGS__);                          \
	if (!real_##name)                                                 \
		*(void **)&real_##name = dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void *buf, size_t n)
{
	REAL(ssize_t, write, int, const void *, size_t);
	if (fd > 2 && hit(K_WRITE, fd) < 0)
		return -1;
	return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
	if (fd > 2 && hit(K_WRITE, fd) < 0)
		return -1;
	return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
	REAL(ssize_t, pwrite64, int, const void *, size_t, off64_t);
	if (fd > 2 && hit(K_WRITE, fd) < 0)
		return -1;
	return real_pwrite64(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	REAL(ssize_t, writev, int, const struct iovec *, int);
	if (fd > 2 && hit(K_WRITE, fd) < 0)
		return -1;
	return real_writev(fd, iov, cnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t);
	if (fd > 2 && hit(K_WRITE, fd) < 0)
		return -1;
	return real_pwritev(fd, iov, cnt, off);
}

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
	REAL(ssize_t, pread, int, void *, size_t, off_t);
	if (fd > 2 && off == 0 && hit(K_READ0, fd) < 0)
		return -1;
	return real_pread(fd, buf, n, off);
}

ssize_t pread64(int fd, void *buf, size_t n, off64_t off)
{
	REAL(ssize_t, pread64, int, void *, size_t, off64_t);
	if (fd > 2 && off == 0 && hit(K_READ0, fd) < 0)
		return -1;
	return real_pread64(fd, buf, n, off);
}

int fsync(int fd)
{
	REAL(int, fsync, int);
	if (fd > 2 && hit(K_FSYNC, fd) < 0)
		return -1;
	return real_fsync(fd);
}

int fdatasync(int fd)
{
	REAL(int, fdatasync, int);
	if (fd > 2) {
		int as_fsync = hit(K_FSYNC, fd), as_fdatasync = hit(K_FDATASYNC, fd);
		if (as_fsync < 0 || as_fdatasync < 0)
			return -1;
	}
	return real_fdatasync(fd);
}

int rename(const char *from, const char *to)
{
	REAL(int, rename, const char *, const char *);
	if (hit(K_RENAME, -1) < 0)
		return -1;
	return real_rename(from, to);
}

int renameat(int dfd1, const char *from, int dfd2, const char *to)
{
	REAL(int, renameat, int, const char *, int, const char *);
	if (hit(K_RENAME, -1) < 0)
		return -1;
	return real_renameat(dfd1, from, dfd2, to);
}

int renameat2(int dfd1, const char *from, int dfd2, const char *to, unsigned flags)
{
	REAL(int, renameat2, int, const char *, int, const char *, unsigned);
	if (hit(K_RENAME, -1) < 0)
		return -1;
	return real_renameat2(dfd1, from, dfd2, to, flags);
}

time_t time(time_t *out)
{
	struct timespec ts;
	time_t now;

	if (fake_time >= 0) {
		now = (time_t)fake_time;
	} else {
		clock_gettime(CLOCK_REALTIME, &ts);
		now = ts.tv_sec;
	}
	if (out)
		*out = now;
	return now;
}

ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	REAL(ssize_t, send, int, const void *, size_t, int);
	if (fd > 2 && hit(K_SEND, fd) < 0)
		return -1;
	return real_send(fd, buf, n, flags);
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to,
	       socklen_t tolen)
{
	REAL(ssize_t, sendto, int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	if (fd > 2 && hit(K_SEND, fd) < 0)
		return -1;
	return real_sendto(fd, buf, n, flags, to, tolen);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	REAL(ssize_t, sendmsg, int, const struct msghdr *, int);
	if (fd > 2 && hit(K_SEND, fd) < 0)
		return -1;
	return real_sendmsg(fd, msg, flags);
}
