/*
 * snapshot_read: reading and verifying a snapshot archive (see snapshot.h).
 *
 * One streaming pass: libarchive pulls compressed bytes through our read
 * callback, whose blocks a background thread (bpipe) hashes for the
 * whole-file SHA-256 while decompression goes on, and every entry's data is
 * hashed as the caller reads it.  Nothing is trusted until
 * snap_reader_finish has compared all of it with manifest.json (the last
 * entry) and the .sha256 sidecar.  Entries that could escape a directory or
 * are not plain files are refused on sight, whatever a caller does with them.
 *
 * A stream (snap_reader_open_fd: `restore -`, `verify -`) is read the same
 * way, once: its SHA-256 is the one computed on that pass, compared at
 * snap_reader_finish with the value given out of band instead of a sidecar.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bpipe.h"
#include "fsutil.h"
#include "snapshot.h"
#include "snapshot_crypt.h"
#include "strbuf.h"
#include "xalloc.h"

#define READ_BLOCK ((size_t)1 << 20)
#define HEADER_MAX ((size_t)1 << 20)

struct seen_entry {
	char *name;
	uint64_t size;
	char sha[HASH_HEX_LEN + 1];
};

/* A string-keyed hash table (open addressing), so that the checks over
 * every entry stay linear in the number of entries (a 100k-entry snapshot
 * took minutes with the pairwise scans).  Keys are borrowed. */
struct name_map {
	const char **keys;
	uintptr_t *vals;
	size_t cap, n;
};

static size_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return (size_t)h;
}

static size_t map_slot(const struct name_map *m, const char *key)
{
	size_t i = name_hash(key) & (m->cap - 1);

	while (m->keys[i] && strcmp(m->keys[i], key) != 0)
		i = (i + 1) & (m->cap - 1);
	return i;
}

/* 1 and *val filled if key is there, else 0. */
static int map_get(const struct name_map *m, const char *key, uintptr_t *val)
{
	size_t i;

	if (!m->cap)
		return 0;
	i = map_slot(m, key);
	if (!m->keys[i])
		return 0;
	if (val)
		*val = m->vals[i];
	return 1;
}

static void map_set(struct name_map *m, const char *key, uintptr_t val)
{
	size_t i = map_slot(m, key);

	if (!m->keys[i])
		m->n++;
	m->keys[i] = key;
	m->vals[i] = val;
}

static void map_put(struct name_map *m, const char *key, uintptr_t val)
{
	if (2 * (m->n + 1) > m->cap) {
		const char **keys = m->keys;
		uintptr_t *vals = m->vals;
		size_t old = m->cap;

		/* (rehashed in place of a struct copy, which clang's analyzer
		 * took for a use of the freed table) */
		m->cap = old ? 2 * old : 64;
		m->n = 0;
		m->keys = xcalloc(m->cap, sizeof(*m->keys));
		m->vals = xcalloc(m->cap, sizeof(*m->vals));
		for (size_t j = 0; j < old; j++)
			if (keys[j])
				map_set(m, keys[j], vals[j]);
		free(keys);
		free(vals);
	}
	map_set(m, key, val);
}

static void map_release(struct name_map *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

/* Where the chunks of one payload ("<base>.NNNN") have got to. */
struct chunk_run {
	char *base;
	unsigned next;          /* the index the next chunk must have */
	long long deferred;     /* declared size of a deferred .0000, or -1 */
	int deferred_done;      /* it arrived: no chunk of base may follow */
};

struct snap_reader {
	char *path;
	int fd;
	int stream;        /* snap_reader_open_fd: fd is borrowed, read once */
	const char *expect; /* the stream's expected SHA-256 (points into expect_buf), or NULL */
	char expect_buf[HASH_HEX_LEN + 1];
	struct archive *a;
	unsigned char *buf;  /* compressed input after the archive (finish) */
	struct bpipe *in;    /* compressed input blocks, hashed in the background */
	unsigned char *sink; /* skipped entry data */
	struct hash_ctx file_hash;
	uint64_t file_bytes, file_size;
	int read_errno;
	int file_checked; /* snap_reader_check_file passed: the streaming pass
			   * no longer hashes the whole file (docs/snapshot-format.md) */

	cJSON *header;
	cJSON *manifest;        /* set once the manifest entry was read */
	int manifest_checked;   /* finish succeeded */

	/* current entry */
	int in_entry;
	char *cur_name;
	uint64_t cur_size, cur_read;
	struct hash_ctx cur_hash;
	int hash_elsewhere; /* the caller hashes what it reads (snap_reader_hash) */

	struct seen_entry *seen;
	size_t nseen, seen_alloc;
	struct name_map seen_map;   /* name -> index in seen */
	struct chunk_run *runs;
	size_t nruns, runs_alloc;
	struct name_map run_map;    /* base -> index in runs */
	int at_end;   /* archive EOF reached */
	int broken;   /* a fatal structural error was reported */

	struct snap_problems problems;
	snap_progress_fn progress;
	void *progress_ud;
	volatile sig_atomic_t *interrupt; /* stop reading once set */
	int interrupted;                  /* a read stopped for it */

	/* encryption (snapshot_crypt.h) */
	int encrypted;               /* the header has "encryption" */
	struct snap_crypt *crypt;    /* NULL: no key, entries stay sealed */
	int cur_sealed;              /* the current entry is sealed */
	uint64_t cur_plain;          /* its plaintext size */
	struct snap_crypt_entry opening;
	unsigned char *rec;          /* an opened record's plaintext */
	unsigned char *sealed;       /* a sealed record */
	size_t rec_pos, rec_len;     /* plaintext not yet handed out */
	uint64_t plain_left;         /* plaintext of the entry not yet opened */
};

void snap_problems_add(struct snap_problems *p, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	sb_vaddf(&sb, fmt, ap);
	va_end(ap);
	ALLOC_GROW(p->items, p->n + 1, p->alloc);
	p->items[p->n++] = sb_detach(&sb);
}

void snap_problems_release(struct snap_problems *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->items[i]);
	free(p->items);
	memset(p, 0, sizeof(*p));
}

/* Reports the problems so far as one ERR_DAMAGED error. */
static int damaged(struct snap_reader *r, struct sm_error *err)
{
	if (!r->problems.n)
		snap_problems_add(&r->problems, "snapshot is damaged");
	if (r->problems.n == 1)
		return err_set(err, ERR_DAMAGED, "snapshot '%s' is damaged: %s", r->path,
			       r->problems.items[0]);
	return err_set(err, ERR_DAMAGED, "snapshot '%s' is damaged: %s (and %zu more problems)",
		       r->path, r->problems.items[0], r->problems.n - 1);
}

/* A structural failure: nothing after it can be read. */
static int fatal(struct snap_reader *r, struct sm_error *err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fatal(struct snap_reader *r, struct sm_error *err, const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	sb_vaddf(&sb, fmt, ap);
	va_end(ap);
	/* not the archive's fault: the read was stopped or failed */
	if (r->interrupted || r->read_errno) {
		if (r->interrupted) {
			err_set(err, ERR_INTERRUPTED, "interrupted while reading snapshot '%s'",
				r->path);
		} else {
			err_set(err, ERR_FAIL, "cannot read snapshot '%s': %s", r->path,
				strerror(r->read_errno));
			err->sys_errno = r->read_errno;
		}
		sb_release(&sb);
		r->broken = 1;
		return -1;
	}
	snap_problems_add(&r->problems, "%s", sb.buf);
	sb_release(&sb);
	r->broken = 1;
	return damaged(r, err);
}

static int hash_block(void *ud, const void *buf, size_t len)
{
	struct snap_reader *r = ud;

	hash_update(&r->file_hash, buf, len);
	return 0;
}

static la_ssize_t read_cb(struct archive *a, void *ud, const void **out)
{
	struct snap_reader *r = ud;
	ssize_t n;
	/* once the whole file was checked, one buffer: libarchive keeps only
	 * the last block it was given, and nothing else reads it */
	void *buf = r->file_checked ? r->buf : bpipe_slot(r->in);

	if (r->interrupt && *r->interrupt) {
		r->interrupted = 1;
		if (!r->file_checked)
			bpipe_submit(r->in, 0);
		archive_set_error(a, EINTR, "interrupted");
		return -1;
	}
	do {
		n = read(r->fd, buf, READ_BLOCK);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		r->read_errno = errno;
		if (!r->file_checked)
			bpipe_submit(r->in, 0);
		archive_set_error(a, errno, "%s", strerror(errno));
		return -1;
	}
	if (!r->file_checked)
		bpipe_submit(r->in, (size_t)n);
	r->file_bytes += (uint64_t)n;
	if (r->progress)
		r->progress(r->progress_ud, r->file_bytes, r->file_size);
	*out = buf;
	return n;
}

static const char *arch_msg(struct snap_reader *r)
{
	const char *m = archive_error_string(r->a);

	return m ? m : "unreadable archive";
}

/* Names that could escape the directory a careless extractor writes to. */
static int hostile_name(const char *name)
{
	const char *p = name;

	if (!*name || *name == '/')
		return 1;
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return 1;
		p += n;
		if (*p)
			p++;
	}
	return strchr(name, '\\') != NULL;
}

static int already_seen(const struct snap_reader *r, const char *name)
{
	return map_get(&r->seen_map, name, NULL);
}

/* The payload base of a chunk name ("<base>.NNNN", 4 to 9 digits) as a
 * length, with *index; 0 if name is not a chunk. */
static size_t chunk_base_len(const char *name, unsigned *index)
{
	const char *dot = strrchr(name, '.');
	size_t digits;

	if (!dot || dot == name)
		return 0;
	digits = strlen(dot + 1);
	if (digits < 4 || digits > 9 || strspn(dot + 1, "0123456789") != digits)
		return 0;
	*index = (unsigned)strtoul(dot + 1, NULL, 10);
	return (size_t)(dot - name);
}

static struct chunk_run *chunk_run_of(struct snap_reader *r, const char *base, size_t len)
{
	char *key = xstrndup(base, len);
	uintptr_t i;
	struct chunk_run *c;

	if (map_get(&r->run_map, key, &i)) {
		free(key);
		return &r->runs[i];
	}
	ALLOC_GROW(r->runs, r->nruns + 1, r->runs_alloc);
	c = &r->runs[r->nruns];
	c->base = key;
	c->next = 0;
	c->deferred = -1;
	c->deferred_done = 0;
	/* runs may move (ALLOC_GROW): the map keeps indexes, keys are the
	 * separately allocated base strings */
	map_put(&r->run_map, c->base, r->nruns++);
	return c;
}

/* The layout rules every reader applies (verify and every restore driver
 * go through here, so they can never disagree): entry names and sizes
 * within bounds, each payload's chunks numbered 0, 1, 2... without gaps,
 * except that a chunk .0000 the header declares "deferred" comes after the
 * payload's other chunks, with exactly the declared size. */
static int check_layout(struct snap_reader *r, const char *name, uint64_t size,
			struct sm_error *err)
{
	unsigned idx;
	size_t blen = chunk_base_len(name, &idx);
	struct chunk_run *c;

	if (size > SNAP_SMALL_MAX)
		return fatal(r, err, "entry '%s' is implausibly large (%llu bytes)", name,
			     (unsigned long long)size);
	if (!blen)
		return 0;
	if (size > SNAP_CHUNK_MAX)
		return fatal(r, err, "chunk '%s' holds %llu bytes, more than the %zu a chunk "
			     "may hold", name, (unsigned long long)size, SNAP_CHUNK_MAX);
	c = chunk_run_of(r, name, blen);
	if (c->deferred_done)
		return fatal(r, err, "entry '%s' is out of order: it follows its payload's deferred "
			     "chunk '%s.0000'",
			     name, c->base);
	if (idx == 0 && c->deferred >= 0) {
		if (size != (uint64_t)c->deferred)
			return fatal(r, err, "entry '%s' holds %llu bytes, not the %lld the header "
				     "declares", name, (unsigned long long)size, c->deferred);
		c->deferred_done = 1;
		return 0;
	}
	if (idx != c->next)
		return fatal(r, err, "entry '%s' is out of order: chunk %u of '%s' was expected",
			     name, c->next, c->base);
	c->next++;
	return 0;
}

/* The header's "deferred" object: { "<base>.0000": size, ... }. */
static int read_deferred(struct snap_reader *r, struct sm_error *err)
{
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(r->header, "deferred");
	const cJSON *it;

	if (!d)
		return 0;
	if (!cJSON_IsObject(d))
		return fatal(r, err, "the header's \"deferred\" is not an object");
	cJSON_ArrayForEach(it, d) {
		unsigned idx;
		size_t blen = chunk_base_len(it->string, &idx);
		struct chunk_run *c;

		if (!blen || idx != 0 || strlen(it->string) > SNAP_NAME_MAX ||
		    hostile_name(it->string))
			return fatal(r, err, "the header's \"deferred\" names '%.100s', not a "
				     "first chunk '<payload>.0000'", it->string);
		if (!cJSON_IsNumber(it) || it->valuedouble < 0 ||
		    it->valuedouble > (double)SNAP_CHUNK_MAX ||
		    it->valuedouble != (double)(long long)it->valuedouble)
			return fatal(r, err, "the header's \"deferred\" size of '%s' is not a "
				     "chunk size", it->string);
		c = chunk_run_of(r, it->string, blen);
		if (c->deferred >= 0)
			return fatal(r, err, "the header's \"deferred\" names '%s' twice",
				     it->string);
		c->deferred = (long long)it->valuedouble;
		c->next = 1;
	}
	return 0;
}

/* At the end of the archive: every declared deferred chunk arrived. */
static int check_deferred_arrived(struct snap_reader *r, struct sm_error *err)
{
	for (size_t i = 0; i < r->nruns; i++)
		if (r->runs[i].deferred >= 0 && !r->runs[i].deferred_done)
			return fatal(r, err, "the header declares entry '%s.0000', which is "
				     "missing", r->runs[i].base);
	return 0;
}

static int raw_read(struct snap_reader *r, void *buf, size_t cap, size_t *got,
		    struct sm_error *err);
static int read_exact(struct snap_reader *r, unsigned char *buf, size_t n, struct sm_error *err);

/* Finishes the current entry: skips (and hashes) unread data, records it. */
static int end_entry(struct snap_reader *r, struct sm_error *err)
{
	struct seen_entry *s;
	size_t got;

	if (!r->in_entry)
		return 0;
	/* the caller is done hashing (snap_reader_hash_elsewhere): the rest
	 * is hashed here */
	r->hash_elsewhere = 0;
	for (;;) {
		if (raw_read(r, r->sink, READ_BLOCK, &got, err) < 0)
			return -1;
		if (!got)
			break;
	}
	if (r->cur_sealed) {
		snap_crypt_entry_release(&r->opening);
		r->cur_sealed = 0;
	}
	if (r->cur_read != r->cur_size)
		return fatal(r, err, "entry '%s' holds %llu bytes, its header says %llu",
			     r->cur_name, (unsigned long long)r->cur_read,
			     (unsigned long long)r->cur_size);
	ALLOC_GROW(r->seen, r->nseen + 1, r->seen_alloc);
	s = &r->seen[r->nseen++];
	s->name = r->cur_name;
	s->size = r->cur_size;
	hash_final_hex(&r->cur_hash, s->sha);
	/* the manifest is dropped from seen again (snap_reader_next) */
	if (strcmp(s->name, SNAP_MANIFEST_NAME) != 0)
		map_put(&r->seen_map, s->name, r->nseen - 1);
	r->cur_name = NULL;
	r->in_entry = 0;
	return 0;
}

/* Reads a whole small entry (header or manifest) into sb. */
static int slurp(struct snap_reader *r, struct strbuf *sb, size_t max, struct sm_error *err)
{
	unsigned char tmp[65536];
	size_t got;

	if (r->cur_size > max)
		return fatal(r, err, "entry '%s' is implausibly large (%llu bytes)", r->cur_name,
			     (unsigned long long)r->cur_size);
	for (;;) {
		if (snap_reader_read(r, tmp, sizeof(tmp), &got, err) < 0)
			return -1;
		if (!got)
			break;
		if (sb->len + got > max)
			return fatal(r, err, "entry '%s' is larger than its header says", r->cur_name);
		sb_add(sb, tmp, got);
	}
	return 0;
}

/* Reads the next raw header; 1 entry, 0 end, -1 error. */
static int next_raw(struct snap_reader *r, struct sm_error *err)
{
	struct archive_entry *e = NULL;
	const char *name;
	int rc;

	if (r->broken)
		return damaged(r, err);
	if (end_entry(r, err) < 0)
		return -1;
	if (r->at_end)
		return 0;
	rc = archive_read_next_header(r->a, &e);
	if (rc == ARCHIVE_EOF) {
		r->at_end = 1;
		return check_deferred_arrived(r, err) < 0 ? -1 : 0;
	}
	if (rc != ARCHIVE_OK)
		return fatal(r, err, "%s%s", r->nseen ? "after the last good entry: " : "",
			     arch_msg(r));
	name = archive_entry_pathname(e);
	if (!name)
		return fatal(r, err, "an entry has no name");
	if (strlen(name) > SNAP_NAME_MAX)
		return fatal(r, err, "an entry's name is %zu bytes long (at most %d): '%.60s...'",
			     strlen(name), SNAP_NAME_MAX, name);
	if (hostile_name(name))
		return fatal(r, err, "entry '%s' has an absolute or escaping path; refused", name);
	if (archive_entry_hardlink(e))
		return fatal(r, err, "entry '%s' is a hard link; refused", name);
	if (archive_entry_symlink(e) || archive_entry_filetype(e) == AE_IFLNK)
		return fatal(r, err, "entry '%s' is a symbolic link; refused", name);
	if (archive_entry_filetype(e) != AE_IFREG)
		return fatal(r, err, "entry '%s' is not a regular file; refused", name);
	if (!archive_entry_size_is_set(e) || archive_entry_size(e) < 0)
		return fatal(r, err, "entry '%s' has no size", name);
	if (already_seen(r, name))
		return fatal(r, err, "entry '%s' appears twice; refused", name);
	if (r->manifest)
		return fatal(r, err, "entry '%s' follows the manifest", name);
	r->cur_name = xstrdup(name);
	r->cur_size = (uint64_t)archive_entry_size(e);
	r->cur_plain = r->cur_size;
	r->cur_read = 0;
	hash_init(&r->cur_hash);
	r->hash_elsewhere = 0;
	r->in_entry = 1;
	if (r->encrypted && strcmp(name, SNAP_MANIFEST_NAME) != 0) {
		unsigned char pfx[SNAP_CRYPT_SIZE_PREFIX] = { 0 };

		/* a sealed entry starts with its plaintext size (each record
		 * authenticates it; until then it only serves the layout rules) */
		if (r->cur_size < SNAP_CRYPT_SIZE_PREFIX + SNAP_CRYPT_LEN_PREFIX + SNAP_CRYPT_TAG ||
		    read_exact(r, pfx, sizeof(pfx), err) < 0)
			return r->broken ? -1 : fatal(r, err, "entry '%s' is too short to be an "
						      "encrypted entry", name);
		r->cur_plain = snap_crypt_get_size(pfx);
		if (r->crypt &&
		    snap_crypt_entry_begin(r->crypt, name, r->cur_plain, &r->opening, err) < 0)
			return -1;
		r->cur_sealed = 1;
		r->rec_pos = r->rec_len = 0;
		r->plain_left = r->cur_plain;
	}
	/* the layout's sizes are the payload's, sealed or not */
	if (check_layout(r, name, r->cur_plain, err) < 0)
		return -1;
	return 1;
}

static int read_sidecar(struct snap_reader *r, char hex[HASH_HEX_LEN + 1])
{
	struct strbuf sb = STRBUF_INIT, path = STRBUF_INIT;
	struct sm_error e2 = SM_ERROR_INIT;
	const char *base = fs_basename(r->path);
	int ok = 0;

	sb_addf(&path, "%s%s", r->path, SNAP_SHA_SUFFIX);
	if (fs_read_file(path.buf, &sb, 4096, &e2) < 0) {
		snap_problems_add(&r->problems, "checksum file '%s' cannot be read: %s", path.buf,
			e2.sys_errno ? strerror(e2.sys_errno) : e2.msg);
		goto out;
	}
	sb_rtrim(&sb);
	if (sb.len < HASH_HEX_LEN + 2 || strspn(sb.buf, "0123456789abcdefABCDEF") != HASH_HEX_LEN ||
	    sb.buf[HASH_HEX_LEN] != ' ' ||
	    (sb.buf[HASH_HEX_LEN + 1] != ' ' && sb.buf[HASH_HEX_LEN + 1] != '*') ||
	    strchr(sb.buf, '\n')) {
		snap_problems_add(&r->problems, "checksum file '%s' is not in 'sha256sum -c' format", path.buf);
		goto out;
	}
	if (strcmp(sb.buf + HASH_HEX_LEN + 2, base) != 0) {
		snap_problems_add(&r->problems, "checksum file '%s' names '%s', not '%s'", path.buf,
			sb.buf + HASH_HEX_LEN + 2, base);
		goto out;
	}
	for (int i = 0; i < HASH_HEX_LEN; i++)
		hex[i] = (char)(sb.buf[i] | 0x20);
	hex[HASH_HEX_LEN] = '\0';
	ok = 1;
out:
	sb_release(&sb);
	sb_release(&path);
	return ok;
}

const char *snap_reader_path(const struct snap_reader *r)
{
	return r->path;
}

static int reader_open(const char *path, int use_keys, struct snap_reader **out,
		       struct sm_error *err);

int snap_sha256_valid(const char *text)
{
	return text && strlen(text) == HASH_HEX_LEN &&
	       strspn(text, "0123456789abcdefABCDEF") == HASH_HEX_LEN;
}

int snap_reader_is_stream(const struct snap_reader *r)
{
	return r->stream;
}

static int reader_start(struct snap_reader *r, int use_keys, struct sm_error *err);

int snap_reader_open_fd(int fd, const char *label, const char *sha256, struct snap_reader **out,
			struct sm_error *err)
{
	struct snap_reader *r = xcalloc(1, sizeof(*r));

	*out = NULL;
	r->fd = fd;
	r->stream = 1;
	r->path = xstrdup(label);
	if (sha256) {
		if (!snap_sha256_valid(sha256)) {
			err_set(err, ERR_USAGE, "invalid SHA-256 '%s': expected 64 hex digits", sha256);
			snap_reader_close(r);
			return -1;
		}
		for (int i = 0; i < HASH_HEX_LEN; i++)
			r->expect_buf[i] = (char)(sha256[i] | 0x20);
		r->expect = r->expect_buf;
	}
	if (reader_start(r, 1, err) < 0) {
		snap_reader_close(r);
		return -1;
	}
	*out = r;
	return 0;
}

int snap_reader_open(const char *path, struct snap_reader **out, struct sm_error *err)
{
	return reader_open(path, 1, out, err);
}

int snap_reader_open_header(const char *path, struct snap_reader **out, struct sm_error *err)
{
	return reader_open(path, 0, out, err);
}

static int reader_open(const char *path, int use_keys, struct snap_reader **out,
		       struct sm_error *err)
{
	struct snap_reader *r = xcalloc(1, sizeof(*r));
	struct stat st;

	*out = NULL;
	r->fd = -1;
	r->path = xstrdup(path);
	r->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (r->fd < 0) {
		err_sys(err, "cannot open snapshot '%s'", path);
		goto fail;
	}
	if (fstat(r->fd, &st) < 0) {
		err_sys(err, "cannot stat snapshot '%s'", path);
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		err_set(err, ERR_FAIL, "cannot open snapshot '%s': not a regular file", path);
		goto fail;
	}
	r->file_size = (uint64_t)st.st_size;
	if (st.st_size == 0) {
		fatal(r, err, "the file is empty");
		goto fail;
	}
	if (reader_start(r, use_keys, err) < 0)
		goto fail;
	*out = r;
	return 0;
fail:
	snap_reader_close(r);
	return -1;
}

/*
 * --require-encryption (snap_keyring_require): only a snapshot that a key of
 * the keyring opens is read.  An unencrypted one may be a forgery, put in
 * the backup directory by someone who can write there but cannot seal
 * (snapshot_crypt.h): refused from its header, before any entry is read.
 * An encrypted one's key id is checked by snap_crypt_begin_read.
 */
static int require_encrypted(const struct snap_reader *r, const cJSON *enc,
			     struct sm_error *err)
{
	if (!snap_keyring_count())
		return err_set(err, ERR_USAGE, "cannot read snapshot '%s': --require-encryption "
			       "(require_encryption) accepts only snapshots encrypted with a "
			       "configured key, and no key was given (--encrypt-key FILE)", r->path);
	if (enc)
		return 0;
	return err_set(err, ERR_DAMAGED, "snapshot '%s' is refused: it is not encrypted, and "
		       "--require-encryption (require_encryption) accepts only snapshots "
		       "encrypted with a configured key", r->path);
}

/* Sets up decompression on r->fd and reads the header entry (and, with
 * use_keys, finds the key of an encrypted snapshot in the keyring). */
static int reader_start(struct snap_reader *r, int use_keys, struct sm_error *err)
{
	struct strbuf sb = STRBUF_INIT;
	const cJSON *fv;
	int rc;

	r->buf = xmalloc(READ_BLOCK);
	r->sink = xmalloc(READ_BLOCK);
	hash_init(&r->file_hash);
	/* libarchive keeps only the last block it was given: 4 in flight */
	r->in = bpipe_start(5, READ_BLOCK, hash_block, r);
	r->a = archive_read_new();
	if (!r->a)
		xdie_oom();
	archive_read_support_filter_zstd(r->a);
	archive_read_support_format_tar(r->a);
	if (archive_read_open(r->a, r, NULL, read_cb, NULL) != ARCHIVE_OK) {
		fatal(r, err, "not a zstd-compressed tar archive: %s", arch_msg(r));
		goto fail;
	}
	rc = next_raw(r, err);
	if (rc < 0)
		goto fail;
	if (archive_filter_code(r->a, 0) != ARCHIVE_FILTER_ZSTD) {
		fatal(r, err, "not zstd-compressed");
		goto fail;
	}
	if (rc == 0 || strcmp(r->cur_name, SNAP_HEADER_NAME) != 0) {
		fatal(r, err, "the first entry is not '%s': not a safe-migrate snapshot",
		      SNAP_HEADER_NAME);
		goto fail;
	}
	if (slurp(r, &sb, HEADER_MAX, err) < 0)
		goto fail;
	r->header = cJSON_ParseWithLength(sb.buf, sb.len);
	if (!cJSON_IsObject(r->header)) {
		fatal(r, err, "'%s' is not a JSON object", SNAP_HEADER_NAME);
		goto fail;
	}
	fv = cJSON_GetObjectItemCaseSensitive(r->header, "format_version");
	if (!cJSON_IsNumber(fv)) {
		fatal(r, err, "'%s' has no format_version", SNAP_HEADER_NAME);
		goto fail;
	}
	if (fv->valuedouble != (double)(int)fv->valuedouble) {
		fatal(r, err, "'%s' has format_version %g, not a whole number", SNAP_HEADER_NAME,
		      fv->valuedouble);
		goto fail;
	}
	if (fv->valuedouble > SNAP_FORMAT_VERSION || fv->valuedouble < 1) {
		err_set(err, ERR_FAIL, "snapshot '%s' has format version %g; this safe-migrate "
			"reads version %d (upgrade safe-migrate)", r->path, fv->valuedouble,
			SNAP_FORMAT_VERSION);
		goto fail;
	}
	if (use_keys && snap_keyring_required() &&
	    require_encrypted(r, cJSON_GetObjectItemCaseSensitive(r->header, "encryption"),
			      err) < 0)
		goto fail;
	if (cJSON_GetObjectItemCaseSensitive(r->header, "encryption")) {
		if (fv->valuedouble < 3) {
			fatal(r, err, "format version %g has no encryption", fv->valuedouble);
			goto fail;
		}
		if (use_keys &&
		    snap_crypt_begin_read(cJSON_GetObjectItemCaseSensitive(r->header, "encryption"),
					  &r->crypt, err) < 0) {
			if (err->kind == ERR_DAMAGED) {
				snap_problems_add(&r->problems, "%s", err->msg);
				damaged(r, err);
			} else {
				err_prefix(err, "cannot read snapshot '%s'", r->path);
			}
			goto fail;
		}
		r->encrypted = 1;
		r->rec = xmalloc(SNAP_CRYPT_RECORD);
		r->sealed = xmalloc(snap_crypt_sealed_max());
	}
	if (read_deferred(r, err) < 0)
		goto fail;
	sb_release(&sb);
	return 0;
fail:
	sb_release(&sb);
	return -1;
}

const cJSON *snap_reader_header(const struct snap_reader *r)
{
	return r->header;
}

void snap_reader_set_progress(struct snap_reader *r, snap_progress_fn fn, void *ud)
{
	r->progress = fn;
	r->progress_ud = ud;
}

void snap_reader_set_interrupt(struct snap_reader *r, volatile sig_atomic_t *flag)
{
	r->interrupt = flag;
}

int snap_reader_next(struct snap_reader *r, struct snap_entry *ent, struct sm_error *err)
{
	int rc = next_raw(r, err);

	if (rc <= 0)
		return rc;
	if (!strcmp(r->cur_name, SNAP_MANIFEST_NAME)) {
		struct strbuf sb = STRBUF_INIT;
		cJSON *m;

		if (slurp(r, &sb, SNAP_SMALL_MAX, err) < 0) {
			sb_release(&sb);
			return -1;
		}
		m = cJSON_ParseWithLength(sb.buf, sb.len);
		sb_release(&sb);
		if (!cJSON_IsObject(m)) {
			cJSON_Delete(m);
			return fatal(r, err, "'%s' is not a JSON object", SNAP_MANIFEST_NAME);
		}
		/* the manifest is not listed in itself: drop it from what was seen */
		if (end_entry(r, err) < 0) {
			cJSON_Delete(m);
			return -1;
		}
		r->nseen--;
		free(r->seen[r->nseen].name);
		r->manifest = m;
		rc = next_raw(r, err);
		if (rc <= 0)
			return rc;
	}
	ent->name = r->cur_name;
	ent->size = r->cur_plain;
	return 1;
}

/* Reads exactly n stored bytes of the current entry. */
static int read_exact(struct snap_reader *r, unsigned char *buf, size_t n, struct sm_error *err)
{
	size_t have = 0, got;

	while (have < n) {
		if (raw_read(r, buf + have, n - have, &got, err) < 0)
			return -1;
		if (!got)
			return fatal(r, err, "entry '%s' ends in the middle of a record", r->cur_name);
		have += got;
	}
	return 0;
}

/* Opens the current entry's next sealed record into r->rec. */
static int open_record(struct snap_reader *r, struct sm_error *err)
{
	unsigned char lenb[SNAP_CRYPT_LEN_PREFIX] = { 0 };
	size_t len, got, want = r->plain_left < SNAP_CRYPT_RECORD ? (size_t)r->plain_left :
				SNAP_CRYPT_RECORD;
	struct sm_error e2 = SM_ERROR_INIT;

	if (read_exact(r, lenb, sizeof(lenb), err) < 0)
		return -1;
	len = (size_t)lenb[0] << 24 | (size_t)lenb[1] << 16 | (size_t)lenb[2] << 8 | lenb[3];
	if (len < SNAP_CRYPT_TAG || len > snap_crypt_sealed_max() ||
	    len > r->cur_size - r->cur_read)
		return fatal(r, err, "entry '%s', record %llu has an impossible size (%zu bytes)",
			     r->cur_name, (unsigned long long)r->opening.index, len);
	if (read_exact(r, r->sealed, len, err) < 0)
		return -1;
	/* the record that ends the stored entry must be its final one */
	if (snap_crypt_open(&r->opening, r->sealed, len, r->cur_read == r->cur_size, r->rec,
			    SNAP_CRYPT_RECORD, &got, &e2) < 0)
		return fatal(r, err, "%s", e2.msg);
	/* authenticated, so written by the key holder: still, hold it to the
	 * record layout (full records, then the rest, and nothing after) */
	if (got != want || (r->cur_read == r->cur_size) != (r->plain_left == got))
		return fatal(r, err, "entry '%s', record %llu holds %zu bytes, not %zu",
			     r->cur_name, (unsigned long long)r->opening.index - 1, got, want);
	r->plain_left -= got;
	r->rec_pos = 0;
	r->rec_len = got;
	return 0;
}

int snap_reader_read(struct snap_reader *r, void *buf, size_t cap, size_t *got,
		     struct sm_error *err)
{
	size_t n;

	*got = 0;
	if (!r->in_entry || cap == 0 || !r->cur_sealed)
		return raw_read(r, buf, cap, got, err);
	if (!r->crypt)
		return err_set(err, ERR_FAIL, "snapshot '%s' is encrypted (key id %.16s...): "
			       "give its key with --encrypt-key FILE", r->path,
			       snap_reader_key_id(r));
	while (r->rec_pos == r->rec_len) {
		if (r->cur_read == r->cur_size)
			return 0;
		if (open_record(r, err) < 0)
			return -1;
	}
	n = r->rec_len - r->rec_pos < cap ? r->rec_len - r->rec_pos : cap;
	memcpy(buf, r->rec + r->rec_pos, n);
	r->rec_pos += n;
	*got = n;
	return 0;
}

int snap_reader_hash_elsewhere(struct snap_reader *r)
{
	if (!r->in_entry || r->cur_sealed)
		return -1;
	r->hash_elsewhere = 1;
	return 0;
}

void snap_reader_hash(struct snap_reader *r, const void *buf, size_t len)
{
	hash_update(&r->cur_hash, buf, len);
}

const char *snap_reader_key_id(const struct snap_reader *r)
{
	const cJSON *enc = cJSON_GetObjectItemCaseSensitive(r->header, "encryption");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(enc, "key_id");

	return cJSON_IsString(id) ? id->valuestring : NULL;
}

int snap_reader_decrypts(const struct snap_reader *r)
{
	return !r->encrypted ? 0 : r->crypt ? 1 : -1;
}

/* The stored bytes of the current entry, hashed as they go. */
static int raw_read(struct snap_reader *r, void *buf, size_t cap, size_t *got,
		    struct sm_error *err)
{
	la_ssize_t n;

	*got = 0;
	if (!r->in_entry || cap == 0)
		return 0;
	n = archive_read_data(r->a, buf, cap);
	if (n < 0)
		return fatal(r, err, "entry '%s' cannot be read: %s", r->cur_name, arch_msg(r));
	if (!r->hash_elsewhere)
		hash_update(&r->cur_hash, buf, (size_t)n);
	r->cur_read += (uint64_t)n;
	if (r->cur_read > r->cur_size)
		return fatal(r, err, "entry '%s' is longer than its header says", r->cur_name);
	*got = (size_t)n;
	return 0;
}

static const struct seen_entry *find_seen(const struct snap_reader *r, const char *name)
{
	uintptr_t i;

	return map_get(&r->seen_map, name, &i) ? &r->seen[i] : NULL;
}

/* Compares what was read with the manifest; adds problems. */
static void check_manifest(struct snap_reader *r)
{
	const cJSON *entries = cJSON_GetObjectItemCaseSensitive(r->manifest, "entries");
	const cJSON *e;
	size_t listed = 0;
	struct name_map names = { NULL, NULL, 0, 0 };
	static const char *const same[] = { "format_version", "engine", "created_at", "revision" };

	if (!cJSON_IsArray(entries)) {
		snap_problems_add(&r->problems, "the manifest has no entry list");
		return;
	}
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
		const cJSON *a = cJSON_GetObjectItemCaseSensitive(r->header, same[i]);
		const cJSON *b = cJSON_GetObjectItemCaseSensitive(r->manifest, same[i]);
		if (!a || !b || !cJSON_Compare(a, b, 1))
			snap_problems_add(&r->problems, "the manifest's %s differs from the header's", same[i]);
	}
	{
		/* absent from both when not encrypted */
		const cJSON *a = cJSON_GetObjectItemCaseSensitive(r->header, "encryption");
		const cJSON *b = cJSON_GetObjectItemCaseSensitive(r->manifest, "encryption");

		if ((a || b) && (!a || !b || !cJSON_Compare(a, b, 1)))
			snap_problems_add(&r->problems, "the manifest's encryption differs from the "
					  "header's");
	}
	cJSON_ArrayForEach(e, entries) {
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "name");
		const cJSON *sz = cJSON_GetObjectItemCaseSensitive(e, "size");
		const cJSON *sha = cJSON_GetObjectItemCaseSensitive(e, "sha256");
		const struct seen_entry *s;

		listed++;
		if (!cJSON_IsString(n) || !cJSON_IsNumber(sz) || !cJSON_IsString(sha)) {
			snap_problems_add(&r->problems, "manifest entry %zu is malformed", listed);
			continue;
		}
		map_put(&names, n->valuestring, 1);
		s = find_seen(r, n->valuestring);
		if (!s) {
			snap_problems_add(&r->problems, "entry '%s' is listed in the manifest but missing", n->valuestring);
			continue;
		}
		if ((double)s->size != sz->valuedouble)
			snap_problems_add(&r->problems, "entry '%s' is %llu bytes, the manifest says %.0f", s->name,
				(unsigned long long)s->size, sz->valuedouble);
		else if (strcmp(s->sha, sha->valuestring) != 0)
			snap_problems_add(&r->problems, "entry '%s' fails its SHA-256 check", s->name);
	}
	/* what the header declared up front must hold too (a restore checks it
	 * before it uses the entry, so verify must not pass a snapshot whose
	 * declaration is wrong) */
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(r->header, "checksums")) {
		const struct seen_entry *s = find_seen(r, e->string);

		if (!cJSON_IsString(e) || !s || strcmp(s->sha, e->valuestring) != 0)
			snap_problems_add(&r->problems, "entry '%s' does not match the checksum the header declares",
				e->string);
	}
	for (size_t i = 0; i < r->nseen; i++)
		if (!map_get(&names, r->seen[i].name, NULL))
			snap_problems_add(&r->problems, "entry '%s' is not listed in the manifest", r->seen[i].name);
	map_release(&names);
}

/* An encrypted snapshot's manifest must carry its HMAC; with the key, the
 * HMAC must be right (without it, only the stored bytes can be checked). */
static void check_manifest_mac(struct snap_reader *r)
{
	cJSON *mac;
	char *text;
	char want[SNAP_CRYPT_ID_HEX + 1];
	struct sm_error e2 = SM_ERROR_INIT;

	if (!r->encrypted)
		return;
	mac = cJSON_DetachItemFromObjectCaseSensitive(r->manifest, SNAP_MANIFEST_AUTH);
	if (!cJSON_IsString(mac)) {
		snap_problems_add(&r->problems, "the manifest of an encrypted snapshot has no %s",
				  SNAP_MANIFEST_AUTH);
		cJSON_Delete(mac);
		return;
	}
	if (r->crypt) {
		text = cJSON_PrintUnformatted(r->manifest);
		if (snap_crypt_mac(r->crypt, text, strlen(text), want, &e2) < 0)
			snap_problems_add(&r->problems, "%s", e2.msg);
		else if (!snap_crypt_mac_equal(want, mac->valuestring))
			snap_problems_add(&r->problems, "the manifest fails authentication (it was "
					  "changed, or entries were removed)");
		free(text);
	}
	cJSON_AddItemToObject(r->manifest, SNAP_MANIFEST_AUTH, mac);
}

int snap_reader_finish(struct snap_reader *r, struct sm_error *err)
{
	struct snap_entry ent;
	char want[HASH_HEX_LEN + 1], have[HASH_HEX_LEN + 1];
	int rc;

	while ((rc = snap_reader_next(r, &ent, err)) > 0)
		;
	if (rc < 0)
		return -1;
	if (!r->manifest) {
		snap_problems_add(&r->problems, "'%s' is missing (the snapshot is incomplete)", SNAP_MANIFEST_NAME);
		return damaged(r, err);
	}
	bpipe_finish(r->in);
	check_manifest(r);
	check_manifest_mac(r);
	/* the whole file was checked against its sidecar before this pass
	 * (snap_reader_check_file, on this descriptor): not hashed again */
	if (r->file_checked)
		goto checked;
	/* hash what libarchive did not need to read (padding, trailing bytes) */
	for (;;) {
		ssize_t n = read(r->fd, r->buf, READ_BLOCK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_sys(err, "cannot read snapshot '%s'", r->path);
		if (n == 0)
			break;
		hash_update(&r->file_hash, r->buf, (size_t)n);
		r->file_bytes += (uint64_t)n;
	}
	hash_final_hex(&r->file_hash, have);
	if (r->stream) {
		if (r->expect && strcmp(r->expect, have) != 0)
			snap_problems_add(&r->problems, "the stream's SHA-256 (%s) does not match the "
					  "expected SHA-256 (%s)", have, r->expect);
	} else if (read_sidecar(r, want) && strcmp(want, have) != 0)
		snap_problems_add(&r->problems, "the file's SHA-256 (%s) does not match its checksum file (%s)", have,
			want);
checked:
	if (r->problems.n)
		return damaged(r, err);
	r->manifest_checked = 1;
	return 0;
}

int snap_reader_check_file(struct snap_reader *r, struct sm_error *err)
{
	char want[HASH_HEX_LEN + 1], have[HASH_HEX_LEN + 1];
	struct hash_ctx h = { NULL };
	unsigned char *buf = NULL;
	off_t off = 0;
	int ret = -1;

	/* a stream cannot be read twice: its one pass hashes it all, and
	 * snap_reader_finish compares that with the expected value */
	if (r->stream)
		return 0;
	/* the reader's own descriptor (pread leaves its position alone): the
	 * file checked is the file streamed, even if the path is replaced.
	 * What the streaming pass read so far (the header's block or two) is
	 * hashed already: the check goes on from there instead of reading and
	 * hashing it again (the whole of a small snapshot) */
	if (bpipe_wait(r->in) < 0 || hash_copy(&h, &r->file_hash) < 0) {
		hash_init(&h);
		off = 0;
	} else {
		off = (off_t)r->file_bytes;
	}
	buf = xmalloc(READ_BLOCK);
	for (;;) {
		ssize_t n;

		if (r->interrupt && *r->interrupt) {
			err_set(err, ERR_INTERRUPTED, "interrupted while checking snapshot '%s'",
				r->path);
			goto out;
		}
		n = pread(r->fd, buf, READ_BLOCK, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err_sys(err, "cannot read snapshot '%s'", r->path);
			goto out;
		}
		if (n == 0)
			break;
		hash_update(&h, buf, (size_t)n);
		off += n;
	}
	hash_final_hex(&h, have);
	if (!read_sidecar(r, want)) {
		ret = damaged(r, err);
		goto out;
	}
	if (strcmp(want, have) != 0) {
		snap_problems_add(&r->problems, "the file's SHA-256 (%s) does not match its checksum file (%s)", have,
			want);
		ret = damaged(r, err);
		goto out;
	}
	r->file_checked = 1;
	ret = 0;
out:
	hash_release(&h);
	free(buf);
	return ret;
}

const cJSON *snap_reader_manifest(const struct snap_reader *r)
{
	return r->manifest_checked ? r->manifest : NULL;
}

void snap_reader_close(struct snap_reader *r)
{
	if (!r)
		return;
	if (r->a)
		archive_read_free(r->a);
	bpipe_free(r->in);
	if (r->fd >= 0 && !r->stream)
		close(r->fd);
	hash_release(&r->file_hash);
	hash_release(&r->cur_hash);
	if (r->cur_sealed)
		snap_crypt_entry_release(&r->opening);
	snap_crypt_free(r->crypt);
	free(r->rec);
	free(r->sealed);
	free(r->cur_name);
	for (size_t i = 0; i < r->nseen; i++)
		free(r->seen[i].name);
	free(r->seen);
	map_release(&r->seen_map);
	for (size_t i = 0; i < r->nruns; i++)
		free(r->runs[i].base);
	free(r->runs);
	map_release(&r->run_map);
	cJSON_Delete(r->header);
	cJSON_Delete(r->manifest);
	snap_problems_release(&r->problems);
	free(r->buf);
	free(r->sink);
	free(r->path);
	free(r);
}

int snap_is_chunk_of(const char *name, const char *base, unsigned *index)
{
	size_t n = strlen(base);
	const char *p;
	unsigned v = 0;

	if (strncmp(name, base, n) != 0 || name[n] != '.')
		return 0;
	p = name + n + 1;
	if (strlen(p) < 4 || strspn(p, "0123456789") != strlen(p) || strlen(p) > 9)
		return 0;
	for (; *p; p++)
		v = v * 10 + (unsigned)(*p - '0');
	if (index)
		*index = v;
	return 1;
}

/* snap_verify's common half: opened (rc) or not, the reader's findings
 * become problems. */
static int verify_opened(int rc, struct snap_reader *r, struct sm_error *e2,
			 struct snap_problems *problems, cJSON **manifest, struct sm_error *err)
{
	if (rc < 0) {
		/* a wrong key (EKEYREJECTED) is not damage either */
		if (e2->kind != ERR_DAMAGED && (e2->sys_errno || e2->kind == ERR_USAGE))
			return err_set(err, e2->kind, "%s", e2->msg);
		/* format version too new, not a regular file, damage: all problems */
		ALLOC_GROW(problems->items, problems->n + 1, problems->alloc);
		{
			/* the problem without "snapshot 'X' is damaged: " (or "is
			 * refused: ", require_encrypted's): verify names X itself */
			const char *m = e2->msg;
			const char *colon = strstr(m, "is damaged: ");

			if (!colon)
				colon = strstr(m, "is refused: ");
			problems->items[problems->n++] = xstrdup(colon ? colon + 12 : m);
		}
		return 0;
	}
	if (r->crypt) {
		struct snap_entry ent;
		size_t got;

		while (snap_reader_next(r, &ent, e2) > 0) {
			int rrc;

			do {
				rrc = snap_reader_read(r, r->sink, READ_BLOCK, &got, e2);
			} while (rrc == 0 && got);
			if (rrc < 0)
				break;
		}
	}
	if (e2->kind == ERR_NONE && snap_reader_finish(r, e2) == 0 && manifest)
		*manifest = cJSON_Duplicate(snap_reader_manifest(r), 1);
	if (e2->kind != ERR_NONE && e2->kind != ERR_DAMAGED && !r->problems.n) {
		snap_reader_close(r);
		return err_set(err, e2->kind, "%s", e2->msg);
	}
	for (size_t i = 0; i < r->problems.n; i++) {
		ALLOC_GROW(problems->items, problems->n + 1, problems->alloc);
		problems->items[problems->n++] = r->problems.items[i];
	}
	r->problems.n = 0;
	snap_reader_close(r);
	return 0;
}

int snap_verify(const char *path, struct snap_problems *problems, cJSON **manifest,
		struct sm_error *err)
{
	struct snap_reader *r = NULL;
	struct sm_error e2 = SM_ERROR_INIT;
	struct stat st;
	int rc;

	if (manifest)
		*manifest = NULL;
	if (stat(path, &st) < 0)
		return err_sys(err, "cannot open snapshot '%s'", path);
	rc = snap_reader_open(path, &r, &e2);
	return verify_opened(rc, r, &e2, problems, manifest, err);
}

int snap_verify_fd(int fd, const char *label, const char *sha256,
		   struct snap_problems *problems, cJSON **manifest, struct sm_error *err)
{
	struct snap_reader *r = NULL;
	struct sm_error e2 = SM_ERROR_INIT;
	int rc;

	if (manifest)
		*manifest = NULL;
	rc = snap_reader_open_fd(fd, label, sha256, &r, &e2);
	return verify_opened(rc, r, &e2, problems, manifest, err);
}
