/*
 * fsutil: durable writes and small file-system helpers (see fsutil.h).
 */
#define _GNU_SOURCE /* sync_file_range, renameat2 */
#include "fsutil.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "xalloc.h"

/* write (off < 0) or pwrite until len bytes are out */
static int write_loop(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;

	while (len) {
		ssize_t n = off < 0 ? write(fd, p, len) : pwrite(fd, p, len, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
		if (off >= 0)
			off += n;
	}
	return 0;
}

int fs_write_all(int fd, const void *buf, size_t len)
{
	return write_loop(fd, buf, len, -1);
}

int fs_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	if (off < 0) {
		errno = EINVAL;
		return -1;
	}
	return write_loop(fd, buf, len, off);
}

void fs_start_writeback(int fd, off_t off, off_t len)
{
#ifdef SYNC_FILE_RANGE_WRITE
	/* a hint: errors surface at the fsync that follows */
	(void)sync_file_range(fd, off, len, SYNC_FILE_RANGE_WRITE);
#else
	(void)fd;
	(void)off;
	(void)len;
#endif
}

int fs_read_file(const char *path, struct strbuf *out, size_t max, struct sm_error *err)
{
	int fd = -1, ret = -1;
	struct stat st;
	char buf[65536];

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err_sys(err, "cannot open '%s'", path);
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		err_sys(err, "cannot stat '%s'", path);
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		err_set(err, ERR_FAIL, "cannot read '%s': is a directory", path);
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err_sys(err, "cannot read '%s'", path);
			goto out;
		}
		if (n == 0)
			break;
		if (out->len + (size_t)n > max) {
			err_set(err, ERR_FAIL, "cannot read '%s': larger than %zu bytes", path, max);
			goto out;
		}
		sb_add(out, buf, (size_t)n);
	}
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

char *fs_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

const char *fs_basename(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

char *fs_join(const char *a, const char *b)
{
	struct strbuf sb = STRBUF_INIT;

	if (b[0] == '/' || !a[0] || !strcmp(a, ".")) {
		sb_adds(&sb, b);
		return sb_detach(&sb);
	}
	sb_adds(&sb, a);
	if (sb.len && sb.buf[sb.len - 1] != '/')
		sb_addch(&sb, '/');
	sb_adds(&sb, b);
	return sb_detach(&sb);
}

char *fs_absolute(const char *path)
{
	char cwd[PATH_MAX];

	if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return xstrdup(path);
	return fs_join(cwd, path);
}

char *fs_resolve(const char *path)
{
	char *real = realpath(path, NULL);
	char *out = xstrdup(real ? real : path);

	free(real);
	return out;
}

int fs_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

int fs_is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int fs_fsync_dir(const char *dir, struct sm_error *err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return err_sys(err, "cannot open directory '%s'", dir);
	if (fsync(fd) < 0 && errno != EINVAL) {
		err_sys(err, "cannot fsync directory '%s'", dir);
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

void fs_random_hex(char *out, size_t nbytes)
{
	static const char digits[] = "0123456789abcdef";
	unsigned char buf[32];
	size_t got = 0;

	if (nbytes > sizeof(buf))
		nbytes = sizeof(buf);
	while (got < nbytes) {
		ssize_t n = getrandom(buf + got, nbytes - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* no entropy source at all: the name is still unique
			 * per process and O_EXCL still refuses what exists */
			for (; got < nbytes; got++)
				buf[got] = (unsigned char)((unsigned long)getpid() >> (got % 4 * 8));
			break;
		}
		got += (size_t)n;
	}
	for (size_t i = 0; i < nbytes; i++) {
		out[2 * i] = digits[buf[i] >> 4];
		out[2 * i + 1] = digits[buf[i] & 15];
	}
	out[2 * nbytes] = '\0';
}

int fs_temp_name(struct strbuf *out, const char *base)
{
	char rnd[2 * 8 + 1];

	fs_random_hex(rnd, 8);
	sb_reset(out);
	sb_addf(out, "%s%ld.%s.%s", FS_TMP_PREFIX, (long)getpid(), rnd, base);
	return 0;
}

const char *fs_temp_target(const char *name)
{
	size_t plen = strlen(FS_TMP_PREFIX);
	const char *p;

	if (strncmp(name, FS_TMP_PREFIX, plen) != 0)
		return NULL;
	p = name + plen;
	for (int field = 0; field < 2; field++) {
		const char *start = p;
		while (*p && *p != '.' && (field ? isxdigit((unsigned char)*p)
						 : isdigit((unsigned char)*p)))
			p++;
		if (p == start || *p != '.')
			return NULL;
		p++;
	}
	return p;
}

int fs_rename_noreplace(int dirfd, const char *from, const char *to)
{
	struct stat st;

#ifdef RENAME_NOREPLACE
	if (renameat2(dirfd, from, dirfd, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
		return -1;
#endif
	/* file systems without RENAME_NOREPLACE: link() never replaces */
	if (linkat(dirfd, from, dirfd, to, 0) == 0) {
		(void)unlinkat(dirfd, from, 0);
		return 0;
	}
	if (errno == EEXIST)
		return -1;
	if (errno != EPERM && errno != EOPNOTSUPP && errno != ENOSYS) /* ENOTSUP too */
		return -1;
	/* nor hard links (some FUSE and network file systems): the best left
	 * is to look first; a writer that wins the gap is still replaced */
	if (fstatat(dirfd, to, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		errno = EEXIST;
		return -1;
	}
	return renameat(dirfd, from, dirfd, to);
}

int fs_open_dir(const char *dir, struct sm_error *err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return err_sys(err, "cannot open directory '%s'", dir);
	return fd;
}

/* fs_write_atomic and fs_write_new: noreplace fails with sys_errno EEXIST
 * when the final name exists */
static int write_durable(const char *path, const void *data, size_t len, mode_t mode,
			 int noreplace, struct sm_error *err)
{
	struct strbuf tmp = STRBUF_INIT;
	char *dir = NULL;
	const char *base = fs_basename(path);
	int dfd = -1, fd = -1, ret = -1, created = 0;

	dir = fs_dirname(path);
	fs_cleanup_temps(dir);
	if ((dfd = fs_open_dir(dir, err)) < 0)
		goto out;
	{
		struct stat st;

		/* a rename over a device node would turn /dev/full into a file */
		if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode) &&
		    !S_ISLNK(st.st_mode)) {
			err_set(err, ERR_FAIL, "cannot replace '%s': not a regular file", path);
			goto out;
		}
	}
	/* a random name opened with O_EXCL|O_NOFOLLOW: nobody can plant a
	 * symlink or a file there beforehand to have us write through it */
	for (int tries = 0; fd < 0; tries++) {
		fs_temp_name(&tmp, base);
		fd = openat(dfd, tmp.buf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			    mode);
		if (fd < 0 && (errno != EEXIST || tries >= 8)) {
			err_sys(err, "cannot create '%s/%s'", dir, tmp.buf);
			goto out;
		}
	}
	created = 1;
	if (fchmod(fd, mode) < 0 || fs_write_all(fd, data, len) < 0) {
		err_sys(err, "cannot write '%s/%s'", dir, tmp.buf);
		goto out;
	}
	if (fsync(fd) < 0) {
		err_sys(err, "cannot fsync '%s/%s'", dir, tmp.buf);
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		err_sys(err, "cannot close '%s/%s'", dir, tmp.buf);
		goto out;
	}
	fd = -1;
	if (noreplace ? fs_rename_noreplace(dfd, tmp.buf, base) < 0
		      : renameat(dfd, tmp.buf, dfd, base) < 0) {
		if (noreplace && errno == EEXIST)
			err_sys(err, "cannot create '%s'", path);
		else
			err_sys(err, "cannot rename '%s/%s' to '%s'", dir, tmp.buf, path);
		goto out;
	}
	created = 0;
	if (fsync(dfd) < 0 && errno != EINVAL) {
		err_sys(err, "cannot fsync directory '%s'", dir);
		goto out;
	}
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	if (created)
		(void)unlinkat(dfd, tmp.buf, 0);
	if (dfd >= 0)
		close(dfd);
	sb_release(&tmp);
	free(dir);
	return ret;
}

int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
		    struct sm_error *err)
{
	return write_durable(path, data, len, mode, 0, err);
}

int fs_write_new(const char *path, const void *data, size_t len, mode_t mode,
		 struct sm_error *err)
{
	return write_durable(path, data, len, mode, 1, err);
}

int fs_write_output(const char *path, const void *data, size_t len, mode_t mode,
		    struct sm_error *err)
{
	struct stat st;
	int fd, ret = -1;

	if (stat(path, &st) < 0 || S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
		return fs_write_atomic(path, data, len, mode, err);
	/* a device, FIFO or socket (/dev/null, /dev/stdout, a pipe): written in
	 * place, never created or replaced */
	fd = open(path, O_WRONLY | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return err_sys(err, "cannot open '%s'", path);
	if (fstat(fd, &st) < 0 || S_ISREG(st.st_mode)) {
		err_set(err, ERR_FAIL, "cannot write '%s': it changed while being opened", path);
		goto out;
	}
	/* a disk (perhaps through a planted symlink) is never an output */
	if (S_ISBLK(st.st_mode)) {
		err_set(err, ERR_USAGE, "cannot write '%s': it is a block device", path);
		goto out;
	}
	if (fs_write_all(fd, data, len) < 0) {
		err_sys(err, "cannot write '%s'", path);
		goto out;
	}
	ret = 0;
out:
	if (close(fd) < 0 && ret == 0)
		ret = err_sys(err, "cannot close '%s'", path);
	return ret;
}

/* The pid that tags a temp file name, or 0 if name is not one: ours
 * (FS_TMP_PREFIX<pid>.) or the probe files of earlier versions
 * (".safe-migrate-probe-<pid>"), which nothing removed. */
static long temp_owner(const char *name)
{
	static const char *const prefixes[] = { FS_TMP_PREFIX, ".safe-migrate-probe-" };

	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		size_t plen = strlen(prefixes[i]);
		char *end;
		long pid;

		if (strncmp(name, prefixes[i], plen) != 0)
			continue;
		pid = strtol(name + plen, &end, 10);
		if (end == name + plen || pid <= 0 || (i == 0 ? *end != '.' : *end != '\0'))
			return 0;
		return pid;
	}
	return 0;
}

void fs_cleanup_temps(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)) != NULL) {
		long pid = temp_owner(de->d_name);

		if (!pid || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue; /* not a temp file, or ours, or its writer is alive */
		(void)unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
}

/* Opens path (not through a symlink, and only a regular file) with flags
 * plus O_CREAT; on creation with durable set, fsyncs its directory so
 * that the new name survives a power loss too.  Returns the
 * fd or -1 with err. */
static int open_regular(const char *path, int flags, mode_t mode, int durable,
			struct sm_error *err)
{
	int fd, created = 0;
	struct stat st;

	flags |= O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK; /* a FIFO must not block us */
	fd = open(path, flags);
	if (fd < 0 && errno == ENOENT) {
		fd = open(path, flags | O_CREAT | O_EXCL, mode);
		created = fd >= 0;
		if (fd < 0 && errno == EEXIST) /* another process created it meanwhile */
			fd = open(path, flags);
	}
	if (fd < 0)
		return err_sys(err, "cannot open '%s'", path);
	if (fstat(fd, &st) < 0) {
		err_sys(err, "cannot stat '%s'", path);
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		err_set(err, ERR_FAIL, "cannot open '%s': not a regular file", path);
		close(fd);
		return -1;
	}
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	if (created && durable) {
		char *dir = fs_dirname(path);
		/* the name; the caller's write is followed by its own fsync */
		int rc = fs_fsync_dir(dir, err);
		free(dir);
		if (rc < 0) {
			close(fd);
			return -1;
		}
	}
	return fd;
}

int fs_open_lock(const char *path, mode_t mode, struct sm_error *err)
{
	/* a lock holds no data: losing its name to a power loss loses nothing */
	return open_regular(path, O_RDWR, mode, 0, err);
}

int fs_append_durable(const char *path, const char *line, mode_t mode, struct sm_error *err)
{
	int fd = open_regular(path, O_WRONLY | O_APPEND, mode, 1, err);
	int ret = -1;

	if (fd < 0)
		return -1;
	if (fs_write_all(fd, line, strlen(line)) < 0) {
		err_sys(err, "cannot write '%s'", path);
		goto out;
	}
	if (fsync(fd) < 0) {
		err_sys(err, "cannot fsync '%s'", path);
		goto out;
	}
	ret = 0;
out:
	close(fd);
	return ret;
}

int fs_mkdirs(const char *path, mode_t mode, struct sm_error *err)
{
	char *p = xstrdup(path);
	int ret = -1;

	for (char *s = p + 1; ; s++) {
		if (*s == '/' || *s == '\0') {
			char c = *s;
			*s = '\0';
			if (mkdir(p, mode) == 0) {
				/* the new entry lives in its parent: make it durable */
				char *parent = fs_dirname(p);
				int rc = fs_fsync_dir(parent, err);
				free(parent);
				if (rc < 0)
					goto out;
			} else if (errno != EEXIST) {
				err_sys(err, "cannot create directory '%s'", p);
				goto out;
			}
			*s = c;
			if (!c)
				break;
		}
	}
	if (!fs_is_dir(path)) {
		err_set(err, ERR_FAIL, "cannot create directory '%s': not a directory", path);
		goto out;
	}
	ret = 0;
out:
	free(p);
	return ret;
}

int fs_free_bytes(const char *dir, uint64_t *out, struct sm_error *err)
{
	struct statvfs vfs;

	if (statvfs(dir, &vfs) < 0)
		return err_sys(err, "cannot read free space of '%s'", dir);
	*out = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
	return 0;
}
