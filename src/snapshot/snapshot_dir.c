/*
 * snapshot_dir: the backup directory as a whole: free space, leftover temp
 * files, listing snapshots (from their headers) and removing them.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "snapshot.h"
#include "strbuf.h"
#include "xalloc.h"

static void human(char *out, size_t n, uint64_t b)
{
	if (b >= ((uint64_t)1 << 30))
		snprintf(out, n, "%.1f GiB", (double)b / (double)((uint64_t)1 << 30));
	else
		snprintf(out, n, "%.1f MiB", (double)b / (double)((uint64_t)1 << 20));
}

int snap_check_space(const char *dir, uint64_t need, struct sm_error *err)
{
	uint64_t have;
	char a[32], b[32];

	if (fs_free_bytes(dir, &have, err) < 0)
		return -1;
	if (have >= need)
		return 0;
	human(a, sizeof(a), need);
	human(b, sizeof(b), have);
	return err_set(err, ERR_NOSPACE, "not enough free space in '%s' for the snapshot: need "
		       "about %s, have %s", dir, a, b);
}

/* True if some (live) writer's temp file for snapshot base name exists. */
static int temp_exists_for(const char *dir, const char *snap_name)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t plen = strlen(SNAP_TMP_PREFIX);
	int found = 0;

	while (d && !found && (de = readdir(d)) != NULL) {
		const char *dot;

		if (strncmp(de->d_name, SNAP_TMP_PREFIX, plen) != 0)
			continue;
		dot = fs_temp_target(de->d_name);
		found = dot && !strcmp(dot, snap_name);
	}
	if (d)
		closedir(d);
	return found;
}

void snap_cleanup_temps(const char *dir)
{
	DIR *d;
	struct dirent *de;
	size_t slen = strlen(SNAP_SUFFIX SNAP_SHA_SUFFIX);

	fs_cleanup_temps(dir);
	/* A writer killed between publishing the sidecar and renaming the
	 * archive (snap_writer_commit) leaves a sidecar without its snapshot;
	 * once no writer's temp file for that name is left, it is an orphan. */
	d = opendir(dir);
	while (d && (de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);
		char *side, *snap;

		if (n <= slen || de->d_name[0] == '.' ||
		    strcmp(de->d_name + n - slen, SNAP_SUFFIX SNAP_SHA_SUFFIX) != 0)
			continue;
		side = fs_join(dir, de->d_name);
		snap = xstrndup(side, strlen(side) - strlen(SNAP_SHA_SUFFIX));
		/* the temp file first: a writer's rename makes the snapshot
		 * appear as its temp file goes, so no moment passes unseen */
		if (!temp_exists_for(dir, fs_basename(snap)) && !fs_exists(snap))
			unlink(side);
		free(side);
		free(snap);
	}
	if (d)
		closedir(d);
}

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && !strcmp(s + a - b, suffix);
}

static char *json_str(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(v) ? xstrdup(v->valuestring) : NULL;
}

static void read_info(struct snap_info *s)
{
	struct snap_reader *r = NULL;
	struct sm_error err = SM_ERROR_INIT;
	struct strbuf side = STRBUF_INIT, text = STRBUF_INIT;

	if (snap_reader_open_header(s->path, &r, &err) < 0) {
		s->damaged = 1;
		s->problem = xstrdup(err.msg);
		return;
	}
	s->created_at = json_str(snap_reader_header(r), "created_at");
	s->engine = json_str(snap_reader_header(r), "engine");
	s->revision = json_str(snap_reader_header(r), "revision");
	s->database = json_str(snap_reader_header(r), "source_identity");
	s->source = json_str(snap_reader_header(r), "source");
	snap_reader_close(r);
	sb_addf(&side, "%s%s", s->path, SNAP_SHA_SUFFIX);
	if (fs_read_file(side.buf, &text, 4096, &err) < 0 || text.len < HASH_HEX_LEN + 3 ||
	    strspn(text.buf, "0123456789abcdef") != HASH_HEX_LEN) {
		s->damaged = 1;
		s->problem = xstrdup("its checksum file is missing or malformed");
	}
	sb_release(&side);
	sb_release(&text);
}

/* Sort key: created_at from the header, else the file's mtime in the same form. */
static void sort_key(const struct snap_info *s, char out[48])
{
	struct tm tm;

	if (s->created_at) {
		snprintf(out, 48, "%s", s->created_at);
		return;
	}
	gmtime_r(&s->mtime, &tm);
	strftime(out, 48, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
}

static int cmp_info(const void *a, const void *b)
{
	const struct snap_info *x = a, *y = b;
	char kx[48], ky[48];
	int c;

	sort_key(x, kx);
	sort_key(y, ky);
	c = strcmp(kx, ky);
	return c ? c : strcmp(x->path, y->path);
}

int snap_list(const char *dir, struct snap_list *out, struct sm_error *err)
{
	DIR *d;
	struct dirent *de;

	memset(out, 0, sizeof(*out));
	d = opendir(dir);
	if (!d) {
		if (errno == ENOENT)
			return 0;
		return err_sys(err, "cannot open backup directory '%s'", dir);
	}
	while ((de = readdir(d)) != NULL) {
		struct snap_info *s;
		struct stat st;
		char *p;

		if (de->d_name[0] == '.' || !ends_with(de->d_name, SNAP_SUFFIX))
			continue;
		p = fs_join(dir, de->d_name);
		if (stat(p, &st) < 0 || !S_ISREG(st.st_mode)) {
			free(p);
			continue;
		}
		ALLOC_GROW(out->items, out->n + 1, out->alloc);
		s = &out->items[out->n++];
		memset(s, 0, sizeof(*s));
		s->path = p;
		s->bytes = (uint64_t)st.st_size;
		s->mtime = st.st_mtime;
		read_info(s);
	}
	closedir(d);
	if (out->n)
		qsort(out->items, out->n, sizeof(out->items[0]), cmp_info);
	return 0;
}

void snap_list_release(struct snap_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->items[i].path);
		free(l->items[i].created_at);
		free(l->items[i].engine);
		free(l->items[i].revision);
		free(l->items[i].database);
		free(l->items[i].source);
		free(l->items[i].problem);
	}
	free(l->items);
	memset(l, 0, sizeof(*l));
}

int snap_remove(const char *path, struct sm_error *err)
{
	struct strbuf side = STRBUF_INIT;
	char *dir = fs_dirname(path);
	int ret = -1;

	if (unlink(path) < 0) {
		err_sys(err, "cannot remove '%s'", path);
		goto out;
	}
	sb_addf(&side, "%s%s", path, SNAP_SHA_SUFFIX);
	if (unlink(side.buf) < 0 && errno != ENOENT) {
		err_sys(err, "cannot remove '%s'", side.buf);
		goto out;
	}
	ret = fs_fsync_dir(dir, err);
out:
	sb_release(&side);
	free(dir);
	return ret;
}
