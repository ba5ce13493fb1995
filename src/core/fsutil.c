/*
 * fsutil: durable writes and small file-system helpers (see fsutil.h).
 */
#define _GNU_SOURCE /* sync_file_range */
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
		    struct sm_error *err)
{
	struct strbuf tmp = STRBUF_INIT;
	char *dir = NULL;
	int fd = -1, ret = -1;

	dir = fs_dirname(path);
	fs_cleanup_temps(dir);
	sb_addf(&tmp, "%s/%s%ld.%s", dir, FS_TMP_PREFIX, (long)getpid(), fs_basename(path));
	fd = open(tmp.buf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0) {
		err_sys(err, "cannot create '%s'", tmp.buf);
		goto out;
	}
	if (fchmod(fd, mode) < 0 || fs_write_all(fd, data, len) < 0) {
		err_sys(err, "cannot write '%s'", tmp.buf);
		goto out;
	}
	if (fsync(fd) < 0) {
		err_sys(err, "cannot fsync '%s'", tmp.buf);
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		err_sys(err, "cannot close '%s'", tmp.buf);
		goto out;
	}
	fd = -1;
	if (rename(tmp.buf, path) < 0) {
		err_sys(err, "cannot rename '%s' to '%s'", tmp.buf, path);
		goto out;
	}
	if (fs_fsync_dir(dir, err) < 0)
		goto out;
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	if (ret < 0 && tmp.len)
		unlink(tmp.buf);
	sb_release(&tmp);
	free(dir);
	return ret;
}

void fs_cleanup_temps(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t plen = strlen(FS_TMP_PREFIX);

	if (!d)
		return;
	while ((de = readdir(d)) != NULL) {
		char *end;
		long pid;

		if (strncmp(de->d_name, FS_TMP_PREFIX, plen) != 0)
			continue;
		pid = strtol(de->d_name + plen, &end, 10);
		if (end == de->d_name + plen || *end != '.' || pid <= 0)
			continue;
		if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue; /* ours or alive: not a leftover */
		{
			char *p = fs_join(dir, de->d_name);
			unlink(p);
			free(p);
		}
	}
	closedir(d);
}

int fs_append_durable(const char *path, const char *line, mode_t mode, struct sm_error *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, mode);
	int ret = -1;

	if (fd < 0)
		return err_sys(err, "cannot open '%s'", path);
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
			if (mkdir(p, mode) < 0 && errno != EEXIST) {
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
