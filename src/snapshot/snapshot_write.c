/*
 * snapshot_write: writing a snapshot archive (see snapshot.h for the format
 * and docs/snapshot-format.md for the full description).
 *
 * The archive goes through libarchive (pax tar + zstd filter, multithreaded
 * zstd when there is more than one CPU) into our own write callback, which
 * queues the compressed bytes for a background thread (bpipe) that hashes
 * and writes them: the whole-file SHA-256 costs no second pass, and neither
 * it nor the write system calls hold up compression.  Entry checksums are computed as payload goes in.
 * zstd runs at level -1 (zstd --fast=1) unless the caller chose another
 * (--compression-level): on database pages it compresses about as well as
 * level 1 at several times the speed, and a snapshot is taken on the
 * critical path of a migration.
 *
 * The archive normally becomes BACKUP_DIR/NAME.tar.zst; snap_writer_open_opts
 * can send it to a user-named file instead (published the same way: temp
 * file beside it, sidecar, rename that never replaces), or to a stream (a
 * descriptor such as stdout, a FIFO or a character device), which is
 * written in place and has no sidecar: its SHA-256 goes to the caller.
 * With a key in the keyring (snapshot_crypt.h), every entry but the header
 * and the manifest is compressed and sealed record by record on its way in
 * (begin_entry/put_data), and held until its last record so that its size
 * can go first in the tar header.  The chosen level then compresses the
 * records (level 1 by default), and the archive's zstd runs at -1 over
 * bytes it cannot shrink.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "bpipe.h"
#include "flusher.h"
#include "fsutil.h"
#include "snapshot.h"
#include "snapshot_crypt.h"
#include "strbuf.h"
#include "xalloc.h"

#define IO_BLOCK ((size_t)1 << 20)

struct snap_writer {
	char *dir;       /* where the archive is published */
	char *scratch;   /* the backup directory: engine scratch files */
	char *final_path;
	char *tmp_path;
	char *stem;      /* default name without suffix, or NULL for a user's name */
	int next_suffix; /* the _N to try next for a default name */
	int dfd;         /* the backup directory, opened once */
	int fd;
	int fd_borrowed; /* the caller's descriptor (stdout): never closed here */
	int stream;      /* written in place: no temp file, no sidecar, no rename */
	cJSON **keep_manifest; /* the caller's copy of manifest.json, or NULL */
	struct archive *a;
	struct bpipe *out;   /* compressed blocks: hashed and written in the background */
	uint64_t out_bytes;    /* the background thread's */
	struct flusher *flush; /* the background thread's until bpipe_finish */
	struct hash_ctx file_hash;
	uint64_t file_bytes;
	int write_errno; /* errno of a failed write in the callback */
	volatile sig_atomic_t *interrupt; /* stop writing once set */
	int header_done;

	cJSON *manifest;     /* owned: built up as we go */
	cJSON *entries;      /* borrowed from manifest */
	cJSON *row_counts;   /* borrowed from manifest */
	cJSON *deferred;     /* owned: the header's "deferred" object, or NULL */
	cJSON *checksums;    /* owned: the header's "checksums" object, or NULL */
	char *created_at;

	unsigned char *block; /* IO_BLOCK bytes */
	snap_progress_fn progress;
	void *progress_ud;
	/* the payload being pushed (snap_payload_begin) */
	int push_active, push_in_chunk;
	struct strbuf push_name, push_chunk;
	unsigned push_index;
	uint64_t push_left, push_chunk_size, push_chunk_left;
	struct hash_ctx push_hash;
	uint64_t progress_total, progress_done;
	/* encryption (snapshot_crypt.h): NULL when the keyring has no target */
	struct snap_crypt *crypt;
	cJSON *encryption;      /* owned: the header's "encryption" object */
	int sealing;            /* the current entry is sealed */
	struct snap_crypt_entry seal;
	char *seal_name;        /* owned: its name */
	unsigned char *rec;     /* the record being filled (SNAP_CRYPT_RECORD) */
	size_t rec_fill;
	uint64_t seal_left;     /* plaintext bytes of the entry not yet sealed */
	/* the sealed entry, held until its last record (tar needs the size
	 * first, and compression makes it known only then): at most a chunk */
	struct strbuf sealed;
	int seal_done;          /* written out */
	uint64_t sealed_size;   /* stored size of the last sealed entry */
};

static void now_iso_ms(char out[40])
{
	struct timeval tv;
	struct tm tm;
	char base[32];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, 40, "%s.%03dZ", base, (int)(tv.tv_usec / 1000));
}

/* The background half of write_cb. */
static int out_block(void *ud, const void *buf, size_t len)
{
	struct snap_writer *w = ud;

	if (fs_write_all(w->fd, buf, len) < 0)
		return errno ? errno : EIO;
	hash_update(&w->file_hash, buf, len);
	w->out_bytes += len;
	/* durable as it goes: the closing fsync then waits for little */
	if (w->flush)
		flusher_wrote(w->flush, w->out_bytes);
	return 0;
}

static la_ssize_t write_cb(struct archive *a, void *ud, const void *buf, size_t len)
{
	struct snap_writer *w = ud;
	const char *p = buf;
	size_t left = len;

	if (w->interrupt && *w->interrupt) {
		w->write_errno = EINTR;
		archive_set_error(a, EINTR, "interrupted");
		return -1;
	}
	while (left) {
		size_t n = left < IO_BLOCK ? left : IO_BLOCK;

		memcpy(bpipe_slot(w->out), p, n);
		if (bpipe_submit(w->out, n) < 0) {
			w->write_errno = errno;
			archive_set_error(a, errno, "%s", strerror(errno));
			return -1;
		}
		p += n;
		left -= n;
	}
	w->file_bytes += len;
	return (la_ssize_t)len;
}

static int arch_fail(struct snap_writer *w, struct sm_error *err, const char *what)
{
	if (w->write_errno) {
		errno = w->write_errno;
		return err_sys(err, "cannot write snapshot '%s'", w->tmp_path);
	}
	return err_set(err, ERR_FAIL, "cannot write snapshot '%s': %s: %s", w->tmp_path, what,
		       archive_error_string(w->a) ? archive_error_string(w->a) : "unknown error");
}

/* Only what the error message names: a name with a newline or a control
 * character would give a sidecar that sha256sum -c, and so restore, cannot
 * read back. */
static int valid_name(const char *name)
{
	if (!name[0] || name[0] == '.' || strlen(name) >= 200)
		return 0;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
			return 0;
	return 1;
}

static int sidecar_exists(const char *snap_path)
{
	struct strbuf side = STRBUF_INIT;
	int ret;

	sb_addf(&side, "%s%s", snap_path, SNAP_SHA_SUFFIX);
	ret = fs_exists(side.buf);
	sb_release(&side);
	return ret;
}

/* Sets final_path to the next free default name stem[_N].tar.zst.  Free
 * here only means "not there now": publishing (snap_writer_commit) never
 * replaces, and comes back here when another writer took the name first. */
static void next_default_name(struct snap_writer *w)
{
	struct strbuf path = STRBUF_INIT;

	for (;; w->next_suffix++) {
		sb_reset(&path);
		if (w->next_suffix == 1)
			sb_addf(&path, "%s/%s%s", w->dir, w->stem, SNAP_SUFFIX);
		else
			sb_addf(&path, "%s/%s_%d%s", w->dir, w->stem, w->next_suffix, SNAP_SUFFIX);
		if (!fs_exists(path.buf) && !sidecar_exists(path.buf))
			break;
	}
	w->next_suffix++;
	free(w->final_path);
	w->final_path = sb_detach(&path);
}

static int pick_name(struct snap_writer *w, const char *name, struct sm_error *err)
{
	struct strbuf base = STRBUF_INIT, path = STRBUF_INIT;
	size_t n;

	if (name) {
		sb_adds(&base, name);
		n = strlen(SNAP_SUFFIX);
		if (base.len > n && !strcmp(base.buf + base.len - n, SNAP_SUFFIX))
			sb_setlen(&base, base.len - n);
		if (!valid_name(base.buf)) {
			err_set(err, ERR_USAGE, "invalid snapshot name '%s': use letters, digits, "
				"'-', '_' and '.', not starting with '.', under 200 characters",
				name);
			sb_release(&base);
			return -1;
		}
		sb_addf(&path, "%s/%s%s", w->dir, base.buf, SNAP_SUFFIX);
		if (fs_exists(path.buf)) {
			err_set(err, ERR_USAGE, "snapshot '%s' already exists", path.buf);
			sb_release(&base);
			sb_release(&path);
			return -1;
		}
		w->final_path = sb_detach(&path);
	} else {
		time_t t = time(NULL);
		struct tm tm;
		char stamp[32];

		gmtime_r(&t, &tm);
		strftime(stamp, sizeof(stamp), "backup_%Y%m%d_%H%M%S", &tm);
		w->stem = xstrdup(stamp);
		w->next_suffix = 1;
		next_default_name(w);
	}
	sb_release(&base);
	return 0;
}

/* (Re)names the temp file after final_path, so that snap_cleanup_temps
 * of another process sees a live writer for that name. */
static int name_temp(struct snap_writer *w, struct sm_error *err)
{
	struct strbuf tmp = STRBUF_INIT;
	int ret = -1;

	for (int tries = 0; tries < 8; tries++) {
		fs_temp_name(&tmp, fs_basename(w->final_path));
		if (!w->tmp_path) {
			w->fd = openat(w->dfd, tmp.buf,
				       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
			ret = w->fd < 0 ? -1 : 0;
		} else {
			ret = fs_rename_noreplace(w->dfd, fs_basename(w->tmp_path), tmp.buf);
		}
		if (ret == 0 || errno != EEXIST)
			break;
	}
	if (ret < 0) {
		err_sys(err, "cannot create '%s/%s'", w->dir, tmp.buf);
	} else {
		free(w->tmp_path);
		w->tmp_path = fs_join(w->dir, tmp.buf);
	}
	sb_release(&tmp);
	return ret;
}

static int zstd_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		n = 1;
	return n > 4 ? 4 : (int)n;
}

/*
 * A user-named output (struct snap_write_opts.output, fs_write_output's
 * rules): a FIFO or a character device is opened and written in place; a
 * new file is written to a temp file in its directory and published like a
 * snapshot.  Never follows a symlink where it creates or publishes.
 */
static int open_output(struct snap_writer *w, const char *path, struct sm_error *err)
{
	struct stat st;

	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
		w->fd = open(path, O_WRONLY | O_NOCTTY | O_CLOEXEC);
		if (w->fd < 0)
			return err_sys(err, "cannot open '%s'", path);
		if (fstat(w->fd, &st) < 0 || S_ISREG(st.st_mode))
			return err_set(err, ERR_FAIL, "cannot write '%s': it changed while being "
				       "opened", path);
		/* a disk (perhaps through a planted symlink) is never an output */
		if (S_ISBLK(st.st_mode))
			return err_set(err, ERR_USAGE, "cannot write '%s': it is a block device",
				       path);
		w->stream = 1;
		w->final_path = xstrdup(path);
		return 0;
	}
	if (!valid_name(fs_basename(path)))
		return err_set(err, ERR_USAGE, "invalid output file name '%s': use letters, digits, "
			       "'-', '_' and '.', not starting with '.', under 200 characters",
			       fs_basename(path));
	if (lstat(path, &st) == 0)
		return err_set(err, ERR_USAGE, "cannot write '%s': it already exists", path);
	free(w->dir);
	w->dir = fs_dirname(path);
	if ((w->dfd = fs_open_dir(w->dir, err)) < 0)
		return -1;
	fs_cleanup_temps(w->dir);
	w->final_path = xstrdup(path);
	return name_temp(w, err);
}

int snap_writer_open(const char *dir, const char *name, struct snap_writer **out,
		     struct sm_error *err)
{
	return snap_writer_open_opts(dir, name, NULL, out, err);
}

int snap_writer_open_opts(const char *dir, const char *name, const struct snap_write_opts *o,
			  struct snap_writer **out, struct sm_error *err)
{
	struct snap_writer *w = xcalloc(1, sizeof(*w));
	char threads[16], level[16];

	sb_init(&w->push_name, 0);
	sb_init(&w->push_chunk, 0);
	sb_init(&w->sealed, 0);

	*out = NULL;
	w->fd = -1;
	w->dfd = -1;
	w->dir = xstrdup(dir);
	w->scratch = xstrdup(dir);
	if (fs_mkdirs(dir, 0700, err) < 0)
		goto fail;
	if (o && o->use_fd) {
		w->fd = o->fd;
		w->fd_borrowed = 1;
		w->stream = 1;
		w->final_path = xstrdup("-");
	} else if (o && o->output) {
		if (open_output(w, o->output, err) < 0)
			goto fail;
	} else {
		if ((w->dfd = fs_open_dir(dir, err)) < 0)
			goto fail;
		snap_cleanup_temps(dir);
		if (pick_name(w, name, err) < 0 || name_temp(w, err) < 0)
			goto fail;
	}
	if (hash_init(&w->file_hash) < 0) {
		err_set(err, ERR_FAIL, "cannot initialise SHA-256");
		goto fail;
	}
	w->manifest = cJSON_CreateObject();
	w->row_counts = cJSON_AddObjectToObject(w->manifest, "row_counts");
	w->entries = cJSON_AddArrayToObject(w->manifest, "entries");
	{
		char now[40];
		now_iso_ms(now);
		w->created_at = xstrdup(now);
	}
	if (snap_crypt_begin_write(NULL, &w->crypt, &w->encryption, err) < 0)
		goto fail;
	/* sealed records carry the payload's compression: the chosen level
	 * applies to them, not only to the archive's zstd */
	if (w->crypt && o && o->has_level)
		snap_crypt_set_level(w->crypt, o->level);
	w->block = xmalloc(IO_BLOCK);
	if (!w->stream)
		w->flush = flusher_start(w->fd, 0, FLUSHER_STEP);
	w->out = bpipe_start(6, IO_BLOCK, out_block, w);

	w->a = archive_write_new();
	if (!w->a)
		xdie_oom();
	snprintf(threads, sizeof(threads), "%d", zstd_threads());
	/* an encrypted archive's zstd sees sealed bytes it cannot shrink: the
	 * fastest level, whatever the records' (a high one would burn CPU) */
	snprintf(level, sizeof(level), "%d",
		 o && o->has_level && !w->crypt ? o->level : SNAP_LEVEL_DEFAULT);
	if (archive_write_set_format_pax_restricted(w->a) != ARCHIVE_OK ||
	    archive_write_add_filter_zstd(w->a) != ARCHIVE_OK ||
	    archive_write_set_filter_option(w->a, "zstd", "compression-level", level) != ARCHIVE_OK) {
		arch_fail(w, err, "cannot set up zstd");
		goto fail;
	}
	/* older libarchive has no threads option: single-threaded is still correct */
	archive_write_set_filter_option(w->a, "zstd", "threads", threads);
	archive_write_set_bytes_per_block(w->a, (int)IO_BLOCK);
	archive_write_set_bytes_in_last_block(w->a, 1);
	if (archive_write_open2(w->a, w, NULL, write_cb, NULL, NULL) != ARCHIVE_OK) {
		arch_fail(w, err, "cannot start archive");
		goto fail;
	}
	*out = w;
	return 0;
fail:
	snap_writer_abort(w);
	return -1;
}

const char *snap_writer_dir(const struct snap_writer *w)
{
	return w->scratch;
}

void snap_writer_keep_manifest(struct snap_writer *w, cJSON **dst)
{
	w->keep_manifest = dst;
}

static void set_str(cJSON *obj, const char *key, const char *val)
{
	cJSON_DeleteItemFromObject(obj, key);
	if (val)
		cJSON_AddStringToObject(obj, key, val);
	else
		cJSON_AddNullToObject(obj, key);
}

void snap_set_engine(struct snap_writer *w, const char *engine, const char *server_version)
{
	set_str(w->manifest, "engine", engine);
	set_str(w->manifest, "server_version", server_version);
}

void snap_set_source(struct snap_writer *w, const char *source_url_redacted)
{
	set_str(w->manifest, "source", source_url_redacted);
}

void snap_set_source_identity(struct snap_writer *w, const char *identity)
{
	set_str(w->manifest, "source_identity", identity);
}

void snap_set_revision(struct snap_writer *w, const char *revision)
{
	set_str(w->manifest, "revision", revision);
}

void snap_set_row_count(struct snap_writer *w, const char *table, long long rows)
{
	cJSON_AddNumberToObject(w->row_counts, table, (double)rows);
}

void snap_set_extra(struct snap_writer *w, cJSON *obj)
{
	cJSON_DeleteItemFromObject(w->manifest, "extra");
	cJSON_AddItemToObject(w->manifest, "extra", obj);
}

void snap_defer_entry(struct snap_writer *w, const char *name, uint64_t size)
{
	if (!w->deferred)
		w->deferred = cJSON_CreateObject();
	cJSON_DeleteItemFromObject(w->deferred, name);
	cJSON_AddNumberToObject(w->deferred, name, (double)size);
}

/* The bytes of entry name, sealed, appended to out. */
static int seal_buf(const struct snap_crypt *c, const char *name, const void *data, size_t len,
		    struct strbuf *out, struct sm_error *err)
{
	struct snap_crypt_entry e;
	const unsigned char *p = data;
	int ret = 0;

	if (snap_crypt_entry_begin(c, name, len, &e, err) < 0)
		return -1;
	snap_crypt_put_size(out, len);
	do {
		size_t n = len < SNAP_CRYPT_RECORD ? len : SNAP_CRYPT_RECORD;

		if (snap_crypt_seal(&e, p, n, n == len, out, err) < 0) {
			ret = -1;
			break;
		}
		p += n;
		len -= n;
	} while (len);
	snap_crypt_entry_release(&e);
	return ret;
}

/* The SHA-256 of the bytes entry name will hold once sealed (sealing is
 * deterministic: the entry's key and nonces follow from its name, and zstd
 * compresses the same bytes the same way).  On a failure the declaration
 * is "" and the snapshot fails verification. */
static void sealed_hash(const struct snap_writer *w, const char *name, const void *data,
			size_t len, char sha[HASH_HEX_LEN + 1])
{
	struct strbuf out = STRBUF_INIT;
	struct sm_error err = SM_ERROR_INIT;

	sha[0] = '\0';
	if (seal_buf(w->crypt, name, data, len, &out, &err) == 0)
		hash_buf_hex(out.buf, out.len, sha);
	sb_release(&out);
}

void snap_declare_checksum(struct snap_writer *w, const char *name, const void *data,
			   size_t len)
{
	char sha[HASH_HEX_LEN + 1];

	if (w->crypt)
		sealed_hash(w, name, data, len, sha);
	else
		hash_buf_hex(data, len, sha);
	if (!w->checksums)
		w->checksums = cJSON_CreateObject();
	cJSON_DeleteItemFromObject(w->checksums, name);
	cJSON_AddStringToObject(w->checksums, name, sha);
}

void snap_writer_set_interrupt(struct snap_writer *w, volatile sig_atomic_t *flag)
{
	w->interrupt = flag;
}

void snap_set_progress(struct snap_writer *w, snap_progress_fn fn, void *ud, uint64_t total)
{
	w->progress = fn;
	w->progress_ud = ud;
	w->progress_total = total;
}

/* The fields shared by the header entry and the manifest. */
static void add_common(const struct snap_writer *w, cJSON *obj)
{
	static const char *const keys[] = { "engine", "server_version", "source",
					    "source_identity", "revision" };

	cJSON_AddNumberToObject(obj, "format_version", SNAP_FORMAT_VERSION);
	cJSON_AddStringToObject(obj, "tool", "safe-migrate");
	cJSON_AddStringToObject(obj, "tool_version", SAFE_MIGRATE_VERSION);
	cJSON_AddStringToObject(obj, "created_at", w->created_at);
	if (w->encryption)
		cJSON_AddItemToObject(obj, "encryption", cJSON_Duplicate(w->encryption, 1));
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(w->manifest, keys[i]);
		if (v)
			cJSON_AddItemToObject(obj, keys[i], cJSON_Duplicate(v, 1));
		else
			cJSON_AddNullToObject(obj, keys[i]);
	}
}

static int is_sealed(const struct snap_writer *w, const char *name);

static void record_entry(struct snap_writer *w, const char *name, uint64_t size,
			 const char *sha)
{
	cJSON *e = cJSON_CreateObject();

	/* the manifest lists what is stored: a sealed entry's stored size */
	if (is_sealed(w, name))
		size = w->sealed_size;
	cJSON_AddStringToObject(e, "name", name);
	cJSON_AddNumberToObject(e, "size", (double)size);
	cJSON_AddStringToObject(e, "sha256", sha);
	cJSON_AddItemToArray(w->entries, e);
}

static int entry_name_ok(const char *name)
{
	const char *p = name;

	if (!*name || *name == '/')
		return 0;
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return 0;
		p += n;
		if (*p)
			p++;
	}
	return 1;
}

/* The header and the manifest stay readable: everything else is sealed
 * when the snapshot is encrypted. */
static int is_sealed(const struct snap_writer *w, const char *name)
{
	return w->crypt && strcmp(name, SNAP_HEADER_NAME) != 0 &&
	       strcmp(name, SNAP_MANIFEST_NAME) != 0;
}

static int put_raw(struct snap_writer *w, const void *data, size_t len, struct hash_ctx *h,
		   struct sm_error *err);
static int seal_record(struct snap_writer *w, struct hash_ctx *h, struct sm_error *err);

static int write_entry_header(struct snap_writer *w, const char *name, uint64_t size,
			      struct sm_error *err);

static void end_sealing(struct snap_writer *w)
{
	if (!w->sealing)
		return;
	snap_crypt_entry_release(&w->seal);
	free(w->seal_name);
	w->seal_name = NULL;
	w->sealing = 0;
}

/* Starts an entry; a sealed one is held (w->sealed) until its last record. */
static int begin_entry(struct snap_writer *w, const char *name, uint64_t size,
		       struct sm_error *err)
{
	end_sealing(w);
	if (!is_sealed(w, name))
		return write_entry_header(w, name, size, err);
	if (snap_crypt_entry_begin(w->crypt, name, size, &w->seal, err) < 0)
		return -1;
	if (!w->rec)
		w->rec = xmalloc(SNAP_CRYPT_RECORD);
	w->seal_name = xstrdup(name);
	w->sealing = 1;
	w->seal_done = 0;
	w->rec_fill = 0;
	w->seal_left = size;
	sb_reset(&w->sealed);
	/* room for the entry at once (it may hold incompressible data): no
	 * reallocation and copy as it grows, and reused by the next entry */
	sb_grow(&w->sealed, (size_t)size + (size_t)size / 64 + 4096);
	snap_crypt_put_size(&w->sealed, size);
	return 0;
}

static int write_entry_header(struct snap_writer *w, const char *name, uint64_t size,
			      struct sm_error *err)
{
	struct archive_entry *e = archive_entry_new();
	int rc;

	if (!e)
		xdie_oom();
	archive_entry_set_pathname(e, name);
	archive_entry_set_size(e, (la_int64_t)size);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0600);
	archive_entry_set_mtime(e, time(NULL), 0);
	rc = archive_write_header(w->a, e);
	archive_entry_free(e);
	if (rc != ARCHIVE_OK)
		return arch_fail(w, err, name);
	return 0;
}

/* Seals the record being filled (the entry's last when nothing is left)
 * and writes it; h hashes the stored, sealed bytes. */
static int seal_record(struct snap_writer *w, struct hash_ctx *h, struct sm_error *err)
{
	if (snap_crypt_seal(&w->seal, w->rec, w->rec_fill, w->seal_left == 0, &w->sealed,
			    err) < 0)
		return -1;
	w->rec_fill = 0;
	if (w->seal_left)
		return 0;
	/* the last record: now the entry's size is known */
	w->seal_done = 1;
	w->sealed_size = w->sealed.len;
	if (write_entry_header(w, w->seal_name, w->sealed.len, err) < 0)
		return -1;
	return put_raw(w, w->sealed.buf, w->sealed.len, h, err);
}

/* Entry data: sealed record by record when the entry is sealed; an empty
 * entry's one (empty) record is sealed by a put_data of no bytes, which
 * each writer of an entry makes. */
static int put_data(struct snap_writer *w, const void *data, size_t len, struct hash_ctx *h,
		    struct sm_error *err)
{
	const unsigned char *p = data;

	if (!w->sealing)
		return put_raw(w, data, len, h, err);
	/* an empty entry is one empty record, so that it cannot be cut off */
	if (!len && !w->seal_left && !w->seal_done)
		return seal_record(w, h, err);
	if (len > w->seal_left)
		return err_set(err, ERR_FAIL, "entry '%s' is longer than announced",
			       w->seal.name);
	while (len) {
		size_t n = SNAP_CRYPT_RECORD - w->rec_fill;

		if (n > len)
			n = len;
		memcpy(w->rec + w->rec_fill, p, n);
		w->rec_fill += n;
		w->seal_left -= n;
		p += n;
		len -= n;
		if ((w->rec_fill == SNAP_CRYPT_RECORD || !w->seal_left) &&
		    seal_record(w, h, err) < 0)
			return -1;
	}
	return 0;
}

static int put_raw(struct snap_writer *w, const void *data, size_t len, struct hash_ctx *h,
		   struct sm_error *err)
{
	const char *p = data;

	while (len) {
		la_ssize_t n = archive_write_data(w->a, p, len);
		if (n <= 0)
			return arch_fail(w, err, "cannot write data");
		hash_update(h, p, (size_t)n);
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_small(struct snap_writer *w, const char *name, const void *data, size_t len,
		       struct sm_error *err)
{
	struct hash_ctx h = { NULL };
	char sha[HASH_HEX_LEN + 1];

	if (begin_entry(w, name, len, err) < 0)
		return -1;
	hash_init(&h);
	if (put_data(w, data, len, &h, err) < 0) {
		hash_release(&h);
		return -1;
	}
	hash_final_hex(&h, sha);
	record_entry(w, name, len, sha);
	return 0;
}

static int write_header(struct snap_writer *w, struct sm_error *err)
{
	cJSON *hdr;
	char *text;
	int ret;

	if (w->header_done)
		return 0;
	w->header_done = 1;
	hdr = cJSON_CreateObject();
	add_common(w, hdr);
	if (w->deferred)
		cJSON_AddItemToObject(hdr, "deferred", cJSON_Duplicate(w->deferred, 1));
	if (w->checksums)
		cJSON_AddItemToObject(hdr, "checksums", cJSON_Duplicate(w->checksums, 1));
	text = cJSON_Print(hdr);
	ret = write_small(w, SNAP_HEADER_NAME, text, strlen(text), err);
	free(text);
	cJSON_Delete(hdr);
	return ret;
}

int snap_add_entry_buf(struct snap_writer *w, const char *name, const void *data, size_t len,
		       struct sm_error *err)
{
	if (!entry_name_ok(name) || !strcmp(name, SNAP_HEADER_NAME) ||
	    !strcmp(name, SNAP_MANIFEST_NAME))
		return err_set(err, ERR_FAIL, "invalid snapshot entry name '%s'", name);
	if (write_header(w, err) < 0)
		return -1;
	return write_small(w, name, data, len, err);
}

static void progress(struct snap_writer *w, size_t n)
{
	w->progress_done += n;
	if (w->progress)
		w->progress(w->progress_ud, w->progress_done, w->progress_total);
}

/* Ends the current chunk entry of the payload being pushed. */
static void payload_close_chunk(struct snap_writer *w)
{
	char sha[HASH_HEX_LEN + 1];

	hash_final_hex(&w->push_hash, sha);
	record_entry(w, w->push_chunk.buf, w->push_chunk_size, sha);
	w->push_in_chunk = 0;
}

void snap_chunk_name(struct strbuf *out, const char *base, unsigned index)
{
	sb_addf(out, "%s.%04u", base, index);
}

/* Starts the next chunk entry "<name>.NNNN" of the payload being pushed. */
static int payload_open_chunk(struct snap_writer *w, struct sm_error *err)
{
	uint64_t n = w->push_left < SNAP_CHUNK_MAX ? w->push_left : SNAP_CHUNK_MAX;

	sb_reset(&w->push_chunk);
	snap_chunk_name(&w->push_chunk, w->push_name.buf, w->push_index++);
	if (begin_entry(w, w->push_chunk.buf, n, err) < 0)
		return -1;
	if (hash_init(&w->push_hash) < 0)
		return err_set(err, ERR_FAIL, "cannot initialise SHA-256");
	w->push_chunk_size = n;
	w->push_chunk_left = n;
	w->push_in_chunk = 1;
	return 0;
}

int snap_payload_begin(struct snap_writer *w, const char *name, unsigned first_index,
		       uint64_t size, struct sm_error *err)
{
	if (!entry_name_ok(name) || w->push_active)
		return err_set(err, ERR_FAIL, "invalid snapshot payload '%s'", name);
	if (write_header(w, err) < 0)
		return -1;
	sb_reset(&w->push_name);
	sb_adds(&w->push_name, name);
	w->push_index = first_index;
	w->push_left = size;
	w->push_active = 1;
	if (size == 0) {
		/* an empty payload is one empty chunk */
		if (payload_open_chunk(w, err) < 0 || put_data(w, "", 0, &w->push_hash, err) < 0)
			return -1;
		payload_close_chunk(w);
	}
	return 0;
}

int snap_payload_write(struct snap_writer *w, const void *data, size_t len,
		       struct sm_error *err)
{
	const char *p = data;

	if (len > w->push_left)
		return err_set(err, ERR_FAIL, "snapshot source for '%s' is longer than its "
			       "announced size", w->push_name.buf);
	while (len) {
		size_t n;

		if (!w->push_in_chunk && payload_open_chunk(w, err) < 0)
			return -1;
		n = len < w->push_chunk_left ? len : (size_t)w->push_chunk_left;
		if (put_data(w, p, n, &w->push_hash, err) < 0)
			return -1;
		p += n;
		len -= n;
		w->push_left -= n;
		w->push_chunk_left -= n;
		progress(w, n);
		if (!w->push_chunk_left)
			payload_close_chunk(w);
	}
	return 0;
}

int snap_payload_end(struct snap_writer *w, struct sm_error *err)
{
	w->push_active = 0;
	if (w->push_left)
		return err_set(err, ERR_FAIL, "snapshot source for '%s' ended %llu bytes early",
			       w->push_name.buf, (unsigned long long)w->push_left);
	return 0;
}

int snap_add_entry_stream(struct snap_writer *w, const char *name, uint64_t size,
			  snap_read_fn fn, void *ud, struct sm_error *err)
{
	struct strbuf chunk = STRBUF_INIT;
	unsigned char *buf = NULL;
	unsigned idx = 0;
	int ret = -1;

	if (!entry_name_ok(name))
		return err_set(err, ERR_FAIL, "invalid snapshot entry name '%s'", name);
	if (write_header(w, err) < 0)
		return -1;
	if (size != SNAP_SIZE_UNKNOWN) {
		size_t got;

		if (snap_payload_begin(w, name, 0, size, err) < 0)
			goto out;
		do {
			got = 0;
			if (fn(ud, w->block, IO_BLOCK, &got, err) < 0 ||
			    (got && snap_payload_write(w, w->block, got, err) < 0))
				goto out;
		} while (got);
		/* a source that ends early or runs long is not what we measured */
		if (snap_payload_end(w, err) < 0)
			goto out;
		ret = 0;
		goto out;
	}
	buf = xmalloc(SNAP_STREAM_CHUNK);
	for (;;) {
		size_t fill = 0, got;
		struct hash_ctx h = { NULL };
		char sha[HASH_HEX_LEN + 1];

		do {
			got = 0;
			if (fn(ud, buf + fill, SNAP_STREAM_CHUNK - fill, &got, err) < 0)
				goto out;
			fill += got;
		} while (got && fill < SNAP_STREAM_CHUNK);
		if (!fill && idx > 0)
			break;
		sb_reset(&chunk);
		snap_chunk_name(&chunk, name, idx++);
		if (begin_entry(w, chunk.buf, fill, err) < 0)
			goto out;
		hash_init(&h);
		if (put_data(w, buf, fill, &h, err) < 0) {
			hash_release(&h);
			goto out;
		}
		hash_final_hex(&h, sha);
		record_entry(w, chunk.buf, fill, sha);
		progress(w, fill);
		if (fill < SNAP_STREAM_CHUNK)
			break;
	}
	ret = 0;
out:
	free(buf);
	sb_release(&chunk);
	return ret;
}

static int write_manifest(struct snap_writer *w, struct sm_error *err)
{
	cJSON *m = cJSON_CreateObject();
	const cJSON *extra = cJSON_GetObjectItemCaseSensitive(w->manifest, "extra");
	char *text;
	int ret;

	add_common(w, m);
	cJSON_AddItemToObject(m, "row_counts", cJSON_Duplicate(w->row_counts, 1));
	cJSON_AddItemToObject(m, "extra", extra ? cJSON_Duplicate(extra, 1) : cJSON_CreateObject());
	cJSON_AddItemToObject(m, "entries", cJSON_Duplicate(w->entries, 1));
	if (w->crypt) {
		/* the manifest as a reader prints it back, unformatted, without
		 * this member: an HMAC only the key holder can make */
		char mac[SNAP_CRYPT_ID_HEX + 1];
		char *plain = cJSON_PrintUnformatted(m);

		ret = snap_crypt_mac(w->crypt, plain, strlen(plain), mac, err);
		free(plain);
		if (ret < 0) {
			cJSON_Delete(m);
			return -1;
		}
		cJSON_AddItemToObject(m, SNAP_MANIFEST_AUTH, cJSON_CreateString(mac));
	}
	text = cJSON_Print(m);
	if (w->keep_manifest) {
		cJSON_Delete(*w->keep_manifest);
		*w->keep_manifest = cJSON_Duplicate(m, 1);
	}
	ret = begin_entry(w, SNAP_MANIFEST_NAME, strlen(text), err);
	if (ret == 0) {
		struct hash_ctx h = { NULL };
		hash_init(&h);
		ret = put_data(w, text, strlen(text), &h, err);
		hash_release(&h);
	}
	free(text);
	cJSON_Delete(m);
	return ret;
}

static void writer_free(struct snap_writer *w)
{
	if (w->a)
		archive_write_free(w->a);
	bpipe_free(w->out);
	flusher_free(w->flush);
	if (w->fd >= 0 && !w->fd_borrowed)
		close(w->fd);
	if (w->dfd >= 0)
		close(w->dfd);
	hash_release(&w->file_hash);
	hash_release(&w->push_hash);
	end_sealing(w);
	sb_release(&w->sealed);
	free(w->rec);
	snap_crypt_free(w->crypt);
	cJSON_Delete(w->encryption);
	sb_release(&w->push_name);
	sb_release(&w->push_chunk);
	cJSON_Delete(w->manifest);
	cJSON_Delete(w->deferred);
	cJSON_Delete(w->checksums);
	free(w->block);
	free(w->created_at);
	free(w->tmp_path);
	free(w->final_path);
	free(w->stem);
	free(w->dir);
	free(w->scratch);
	free(w);
}

/*
 * Publishes the finished temp file: the sidecar first (a visible snapshot
 * always has its checksum), then the archive, neither ever replacing a file
 * (two runs on different databases that start in the same second pick the
 * same default name).  When the name is taken, a default name moves on to
 * the next suffix; a user's name is an error.  Then fsyncs the directory.
 */
static int publish(struct snap_writer *w, const char *hex, struct sm_error *err)
{
	struct strbuf side = STRBUF_INIT, line = STRBUF_INIT;
	int ret = -1;

	for (int attempt = 0;; attempt++) {
		int taken = 0;

		sb_reset(&side);
		sb_reset(&line);
		sb_addf(&side, "%s%s", w->final_path, SNAP_SHA_SUFFIX);
		sb_addf(&line, "%s  %s\n", hex, fs_basename(w->final_path));
		if (fs_write_new(side.buf, line.buf, line.len, 0600, err) < 0) {
			if (err->sys_errno != EEXIST)
				goto out;
			taken = 1;
		} else if (fs_rename_noreplace(w->dfd, fs_basename(w->tmp_path),
					       fs_basename(w->final_path)) < 0) {
			int e = errno;

			unlink(side.buf);
			errno = e;
			if (e != EEXIST) {
				err_sys(err, "cannot rename '%s' to '%s'", w->tmp_path,
					w->final_path);
				goto out;
			}
			taken = 1;
		}
		if (!taken)
			break;
		if (!w->stem || attempt >= 1000) {
			err_set(err, ERR_FAIL, "snapshot '%s' already exists", w->final_path);
			goto out;
		}
		next_default_name(w);
		if (name_temp(w, err) < 0)
			goto out;
	}
	if (fsync(w->dfd) < 0 && errno != EINVAL) {
		err_sys(err, "cannot fsync directory '%s'", w->dir);
		goto out;
	}
	ret = 0;
out:
	sb_release(&side);
	sb_release(&line);
	return ret;
}

int snap_writer_commit(struct snap_writer *w, char **out_path, char sha256[HASH_HEX_LEN + 1],
		       uint64_t *bytes, struct sm_error *err)
{
	char hex[HASH_HEX_LEN + 1];
	int ret = -1;

	if (out_path)
		*out_path = NULL;
	if (write_header(w, err) < 0 || write_manifest(w, err) < 0)
		goto out;
	if (archive_write_close(w->a) != ARCHIVE_OK) {
		arch_fail(w, err, "cannot finish archive");
		goto out;
	}
	archive_write_free(w->a);
	w->a = NULL;
	if (bpipe_finish(w->out) < 0) {
		err_sys(err, "cannot write snapshot '%s'", w->stream ? w->final_path : w->tmp_path);
		goto out;
	}
	if (w->stream) {
		/* a pipe or device: nothing to make durable or publish */
		if (!w->fd_borrowed && close(w->fd) < 0) {
			w->fd = -1;
			err_sys(err, "cannot close '%s'", w->final_path);
			goto out;
		}
		w->fd = -1;
		hash_final_hex(&w->file_hash, hex);
		goto done;
	}
	if (flusher_finish(w->flush) < 0 || fsync(w->fd) < 0) {
		err_sys(err, "cannot fsync '%s'", w->tmp_path);
		goto out;
	}
	if (close(w->fd) < 0) {
		w->fd = -1;
		err_sys(err, "cannot close '%s'", w->tmp_path);
		goto out;
	}
	w->fd = -1;
	hash_final_hex(&w->file_hash, hex);
	if (publish(w, hex, err) < 0)
		goto out;
done:
	if (sha256)
		memcpy(sha256, hex, sizeof(hex));
	if (bytes)
		*bytes = w->file_bytes;
	if (out_path) {
		*out_path = w->final_path;
		w->final_path = NULL;
	}
	ret = 0;
out:
	if (ret < 0 && w->tmp_path)
		unlink(w->tmp_path);
	writer_free(w);
	return ret;
}

void snap_writer_abort(struct snap_writer *w)
{
	if (!w)
		return;
	if (w->tmp_path)
		unlink(w->tmp_path);
	writer_free(w);
}
