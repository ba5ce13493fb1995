/*
 * snapshot: the snapshot archive format, shared by backup and restore (as
 * pg_dump and pg_restore share one archiver).  Engine-agnostic: it knows
 * entries, checksums and the manifest, never SQL.
 *
 * A snapshot is BACKUP_DIR/NAME.tar.zst, a pax tar compressed with zstd,
 * beside NAME.tar.zst.sha256 ("<hex>  NAME.tar.zst\n", sha256sum -c format).
 * Entry order (docs/snapshot-format.md is the full description):
 *
 *   snapshot.json       header: format version, engine, revision, creation
 *                       time...  written first so list-backups reads it
 *                       without decompressing the whole file
 *   <engine entries>    e.g. data/main.db.0000, data/main.db.0001 ... chunks
 *                       of at most SNAP_CHUNK_MAX bytes each
 *   manifest.json       written LAST: every field of the header plus row
 *                       counts, engine extras and each entry's name, size
 *                       and SHA-256 (so no payload is ever buffered whole)
 *
 * Encryption (format 3, snapshot_crypt.h): with a key in the keyring, the
 * payload entries are sealed; the header and the manifest stay readable and
 * record the cipher and key id.  Readers give callers the plaintext and its
 * size; checksums in the manifest are of the stored (sealed) bytes.
 *
 * Durability: the archive is written to a temp file in the backup directory
 * (mode 0600), fsync'd, renamed to its final name, the .sha256 sidecar is
 * written the same way, and the directory is fsync'd.  A visible .tar.zst is
 * complete.  Temp files are named ".safe-migrate-tmp.<pid>.<what>" and a
 * later writer removes those whose process is gone.
 *
 * All functions return 0 (or as documented) or -1 with err filled.
 */
#ifndef SM_SNAPSHOT_H
#define SM_SNAPSHOT_H

#include <cjson/cJSON.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "error.h"
#include "fsutil.h"
#include "hash.h"

#define SNAP_FORMAT_VERSION 3
/* The manifest member holding its HMAC in an encrypted snapshot. */
#define SNAP_MANIFEST_AUTH "hmac_sha256"
#define SNAP_SUFFIX ".tar.zst"
#define SNAP_SHA_SUFFIX ".sha256"
#define SNAP_HEADER_NAME "snapshot.json"
#define SNAP_MANIFEST_NAME "manifest.json"
#define SNAP_TMP_PREFIX FS_TMP_PREFIX
/* Largest data chunk entry. */
#define SNAP_CHUNK_MAX ((size_t)16 << 20)
/* Chunk size of a stream of unknown size, which buffers one chunk: smaller
 * than SNAP_CHUNK_MAX to keep the writer's memory down. */
#define SNAP_STREAM_CHUNK ((size_t)4 << 20)
/* Largest small entry (header, manifest, engine metadata) read into memory. */
#define SNAP_SMALL_MAX ((size_t)64 << 20)
#define SNAP_SIZE_UNKNOWN UINT64_MAX
/* Longest entry name a reader accepts (the writer's are far shorter). */
#define SNAP_NAME_MAX 255

/* Progress: bytes of payload done so far, and the expected total (0 if unknown). */
typedef void (*snap_progress_fn)(void *ud, uint64_t done, uint64_t total);

/* A payload source for snap_add_entry_stream: fills buf with up to cap
 * bytes and sets *got (0 at end of data).  Returns 0 or -1 with err. */
typedef int (*snap_read_fn)(void *ud, void *buf, size_t cap, size_t *got,
			    struct sm_error *err);

/* --- writing -------------------------------------------------------------- */

struct snap_writer;

/*
 * Starts a snapshot in dir (created with mode 0700 if missing).  name is the
 * final base name without ".tar.zst" (NULL: backup_YYYYMMDD_HHMMSS, with a
 * _N suffix if that exists).  Refuses a name that exists, or contains '/'.
 * Removes recognised leftover temp files of dead processes first.
 * On success *out is owned by the caller: snap_writer_commit or _abort.
 */
int snap_writer_open(const char *dir, const char *name, struct snap_writer **out,
		     struct sm_error *err);

/* zstd's level when none is chosen: -1 (zstd --fast=1), see snapshot_write.c. */
#define SNAP_LEVEL_DEFAULT (-1)

/* Where and how snap_writer_open_opts writes (all optional: zeroed is
 * snap_writer_open's behaviour). */
struct snap_write_opts {
	/* A descriptor to write the archive to (borrowed; stdout for
	 * `backup --output -`), when use_fd is set: nothing is published,
	 * no sidecar is written, and the caller gets the SHA-256 from commit.
	 * An aborted write leaves a stream without a manifest, which every
	 * reader refuses. */
	int fd, use_fd;
	/* A user-named output file instead of dir/NAME.tar.zst (the rules of
	 * fs_write_output): a regular file that does not exist yet is written
	 * to a temp file beside it and published as a snapshot is (sidecar
	 * PATH.sha256 too; an existing file is refused, a symlink never
	 * followed); a FIFO or character device is written in place; a block
	 * device is refused. */
	const char *output;
	int level, has_level; /* zstd level (negative levels too); default SNAP_LEVEL_DEFAULT */
};

/*
 * snap_writer_open with options.  dir stays the scratch directory
 * (snap_writer_dir) even when the archive goes elsewhere.
 */
int snap_writer_open_opts(const char *dir, const char *name, const struct snap_write_opts *o,
			  struct snap_writer **out, struct sm_error *err);
/* Keeps a copy of manifest.json for the caller: *dst receives it (caller
 * frees with cJSON_Delete) when commit writes it.  dst is borrowed until
 * commit or abort. */
void snap_writer_keep_manifest(struct snap_writer *w, cJSON **dst);

/* Manifest fields.  engine, server_version, source and revision must be set
 * before the first entry is added (they go into the header entry too);
 * strings are copied.  revision may be NULL (no version table). */
void snap_set_engine(struct snap_writer *w, const char *engine, const char *server_version);
void snap_set_source(struct snap_writer *w, const char *source_url_redacted);
/* The source database's identity key (engine.h: struct engine_identity), so
 * that an in-place restore can tell a snapshot of another database. */
void snap_set_source_identity(struct snap_writer *w, const char *identity);
void snap_set_revision(struct snap_writer *w, const char *revision);
/* Row count of one table (any time before commit), once per table: a
 * constant-time append, where replacing would search every table recorded
 * so far (and cJSON's search ignores case, which PostgreSQL's quoted names
 * do not). */
void snap_set_row_count(struct snap_writer *w, const char *table, long long rows);
/* Engine-specific manifest data under "extra" (any time before commit);
 * takes ownership of obj, replacing an earlier one. */
void snap_set_extra(struct snap_writer *w, cJSON *obj);
/* Declares in the header that entry name (a payload chunk) comes after the
 * payload's other chunks and holds size bytes, so that a reader can place
 * the others before it arrives.  Before the first entry is added. */
void snap_defer_entry(struct snap_writer *w, const char *name, uint64_t size);
/* Declares in the header the SHA-256 of data, the exact bytes that entry
 * name will hold, so that a reader can check that entry as soon as it has
 * read it (before it runs or trusts it), not only at the manifest, the last
 * entry.  Before the first entry is added.  data is borrowed. */
void snap_declare_checksum(struct snap_writer *w, const char *name, const void *data,
			   size_t len);
/* Progress reporting for the payload; total may be 0 (unknown). */
void snap_set_progress(struct snap_writer *w, snap_progress_fn fn, void *ud, uint64_t total);
/* Makes writing fail once *flag is set (a signal handler's flag; borrowed,
 * may be NULL): checked before every block of compressed output. */
void snap_writer_set_interrupt(struct snap_writer *w, volatile sig_atomic_t *flag);

/* Adds a small entry held in memory.  name is a relative path without "..". */
int snap_add_entry_buf(struct snap_writer *w, const char *name, const void *data, size_t len,
		       struct sm_error *err);
/*
 * Adds a payload read from fn as chunk entries "<name>.0000", "<name>.0001",
 * ... of at most SNAP_CHUNK_MAX bytes each (tar needs each entry's size up
 * front).  With size known, nothing is buffered and a source that ends early
 * or runs long is an error; with SNAP_SIZE_UNKNOWN one chunk of
 * SNAP_STREAM_CHUNK bytes is buffered (the chunks are that size but the last).
 * An empty payload still writes one empty chunk ".0000".
 * The manifest lists every chunk; readers concatenate them in order.
 */
int snap_add_entry_stream(struct snap_writer *w, const char *name, uint64_t size,
			  snap_read_fn fn, void *ud, struct sm_error *err);

/*
 * Push-style payload of exactly size bytes: the writer cuts it into chunk
 * entries "<name>.NNNN" (NNNN from first_index up) of at most SNAP_CHUNK_MAX
 * bytes, hashing as data goes in.  snap_payload_end fails if fewer than
 * size bytes were written; writing more fails at once.  One payload at a
 * time; other entries may not be added in between.
 */
int snap_payload_begin(struct snap_writer *w, const char *name, unsigned first_index,
		       uint64_t size, struct sm_error *err);
int snap_payload_write(struct snap_writer *w, const void *data, size_t len,
		       struct sm_error *err);
int snap_payload_end(struct snap_writer *w, struct sm_error *err);

/*
 * Writes manifest.json, finishes the archive, fsyncs, renames it to its
 * final name, writes the .sha256 sidecar durably and fsyncs the directory.
 * On success: *out_path (caller frees; may be NULL if not wanted), sha256
 * hex of the whole file, *bytes its size.  Always frees w (on failure the
 * temp file is removed).
 */
int snap_writer_commit(struct snap_writer *w, char **out_path, char sha256[HASH_HEX_LEN + 1],
		       uint64_t *bytes, struct sm_error *err);
/* Removes the temp file and frees w.  NULL-safe. */
void snap_writer_abort(struct snap_writer *w);
/* The temp directory to use for engine scratch files (the backup dir).  Borrowed. */
const char *snap_writer_dir(const struct snap_writer *w);

/* Fails with ERR_NOSPACE ("not enough free space in 'dir': need about X,
 * have Y") if dir's file system has fewer than need bytes free. */
int snap_check_space(const char *dir, uint64_t need, struct sm_error *err);
/* Removes ".safe-migrate-tmp.<pid>.*" files in dir whose process is gone,
 * and sidecars ("NAME.tar.zst.sha256") whose snapshot is neither there nor
 * being written (a writer killed while committing). */
void snap_cleanup_temps(const char *dir);

/* --- reading -------------------------------------------------------------- */

struct snap_reader;

struct snap_entry {
	const char *name; /* borrowed until the next snap_reader_next */
	uint64_t size;
};

/*
 * Opens a snapshot for one streaming pass.  Reads the header entry
 * (snapshot.json) immediately; nothing else is trusted yet.  While entries
 * are read, their SHA-256 and the whole file's SHA-256 are computed;
 * snap_reader_finish then compares them with manifest.json and the .sha256
 * sidecar.  A caller that loads data while reading must therefore treat what
 * it loaded as untrusted until snap_reader_finish succeeded.
 * Hostile entries (absolute paths, "..", links, devices, duplicates, sizes
 * that lie) fail with ERR_DAMAGED.  Damage of any kind is ERR_DAMAGED.
 */
int snap_reader_open(const char *path, struct snap_reader **out, struct sm_error *err);
/* Like snap_reader_open, but without looking for the snapshot's key: for
 * describing a snapshot by its header (list-backups), which must not call
 * a snapshot written with an older key damaged.  Its sealed entries cannot
 * be read. */
int snap_reader_open_header(const char *path, struct snap_reader **out, struct sm_error *err);
/*
 * Opens a snapshot streamed through fd (borrowed; stdin for `restore -`),
 * which can be read once only: snap_reader_check_file checks nothing (the
 * whole stream is hashed on the one pass instead), and snap_reader_finish
 * compares the stream's SHA-256 with sha256 (64 hex digits, given out of
 * band) or, when sha256 is NULL, checks the entries against the manifest
 * only.  label names the stream in messages ("-").
 */
int snap_reader_open_fd(int fd, const char *label, const char *sha256, struct snap_reader **out,
			struct sm_error *err);
/* True for a reader of snap_reader_open_fd: it cannot be opened again by
 * its path (snap_reader_path is only a label). */
int snap_reader_is_stream(const struct snap_reader *r);
/* The header entry's JSON (format_version, engine, server_version, source,
 * revision, created_at, tool_version).  Borrowed. */
const cJSON *snap_reader_header(const struct snap_reader *r);
/*
 * Moves to the next payload entry (the header and manifest are handled
 * internally).  Returns 1 with *ent filled, 0 at the end, -1 on error.
 * Unread data of the previous entry is skipped (and still hashed).
 */
int snap_reader_next(struct snap_reader *r, struct snap_entry *ent, struct sm_error *err);
/* Reads the current entry's data; *got is 0 at its end. */
int snap_reader_read(struct snap_reader *r, void *buf, size_t cap, size_t *got,
		     struct sm_error *err);
/*
 * Moves the SHA-256 of the current entry to a thread of the caller's: from
 * now on snap_reader_read does not hash what it returns of this entry, and
 * the caller passes every byte it read, in order, to snap_reader_hash, from
 * one thread at a time, all of them before its next snap_reader_next or
 * snap_reader_finish (which hash what was left unread themselves and check
 * the sum as always).  A restore that writes the bytes out on a thread of
 * its own hashes them there, beside the decompression.  Only for an entry
 * stored in the clear: -1 (and nothing changes) for a sealed one, whose
 * stored bytes snap_reader_read never returns.
 */
int snap_reader_hash_elsewhere(struct snap_reader *r);
void snap_reader_hash(struct snap_reader *r, const void *buf, size_t len);
/*
 * Reads to the end of the archive and checks everything: the manifest exists
 * and lists exactly the entries seen with their sizes and SHA-256, the
 * whole-file SHA-256 matches the sidecar (unless snap_reader_check_file
 * already passed on this reader: then that check stands and the file is not
 * hashed again; docs/snapshot-format.md says why).  On success the manifest
 * is available through snap_reader_manifest.
 */
int snap_reader_finish(struct snap_reader *r, struct sm_error *err);
/*
 * Checks the whole file's SHA-256 against the .sha256 sidecar without
 * decompressing anything (any byte changed, missing or added since the
 * snapshot was written fails, ERR_DAMAGED).  Independent of the streaming
 * pass, but through the reader's own descriptor (pread), so it checks the
 * very file being streamed even if the path is replaced meanwhile.  It does
 * not check the entries against the manifest: a caller that loads from the
 * snapshot still needs snap_reader_finish (on its pass) before it trusts
 * what it loaded.
 */
int snap_reader_check_file(struct snap_reader *r, struct sm_error *err);
/* manifest.json once snap_reader_finish succeeded, else NULL.  Borrowed. */
const cJSON *snap_reader_manifest(const struct snap_reader *r);
void snap_reader_close(struct snap_reader *r);
/* The path the reader was opened on (a driver that streams the snapshot a
 * second time, after verification, reopens it).  Borrowed. */
const char *snap_reader_path(const struct snap_reader *r);
/* Sets progress reporting on compressed bytes read (total: the file size). */
void snap_reader_set_progress(struct snap_reader *r, snap_progress_fn fn, void *ud);
/* Makes reading fail with ERR_INTERRUPTED once *flag is set (a signal
 * handler's flag; borrowed, may be NULL): checked before every block read. */
void snap_reader_set_interrupt(struct snap_reader *r, volatile sig_atomic_t *flag);

/* 0: the snapshot is not encrypted; 1: it is and the keyring holds its key
 * (every byte snap_reader_read returns was authenticated, and
 * snap_reader_finish checks the manifest's HMAC); -1: it is, without the
 * key (snap_reader_read of an entry fails; snap_reader_finish checks the
 * stored bytes only). */
int snap_reader_decrypts(const struct snap_reader *r);
/* The key id an encrypted snapshot names (borrowed), or NULL. */
const char *snap_reader_key_id(const struct snap_reader *r);

/* True if name is a chunk of base ("<base>.NNNN"); sets *index. */
int snap_is_chunk_of(const char *name, const char *base, unsigned *index);
struct strbuf;
/* Appends chunk index's name of entry base ("<base>.NNNN") to out. */
void snap_chunk_name(struct strbuf *out, const char *base, unsigned index);

/* --- verify and list -------------------------------------------------------- */

struct snap_problems {
	char **items; /* each owned */
	size_t n, alloc;
};

#define SNAP_PROBLEMS_INIT { NULL, 0, 0 }

/* Appends one problem, printf-style. */
void snap_problems_add(struct snap_problems *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void snap_problems_release(struct snap_problems *p);

/*
 * Checks a snapshot completely (structure, every entry's checksum, the whole
 * file against the sidecar).  Returns 0 when it could look (problems->n says
 * whether anything is wrong; never crashes whatever the bytes), -1 only when
 * path cannot be read at all.  If manifest is not NULL and the snapshot is
 * good, *manifest receives a copy (caller frees with cJSON_Delete).
 */
int snap_verify(const char *path, struct snap_problems *problems, cJSON **manifest,
		struct sm_error *err);
/* snap_verify of a stream (snap_reader_open_fd's fd, label and sha256). */
int snap_verify_fd(int fd, const char *label, const char *sha256,
		   struct snap_problems *problems, cJSON **manifest, struct sm_error *err);
/* 1 if text is 64 hex digits (an expected SHA-256), else 0. */
int snap_sha256_valid(const char *text);

struct snap_info {
	char *path;        /* owned */
	char *created_at;  /* owned, or NULL when damaged */
	char *engine;      /* owned, or NULL */
	char *revision;    /* owned, or NULL */
	/* owned: the header's source_identity, the database it was taken
	 * from (engine_identity's key), or NULL (not recorded, or damaged) */
	char *database;
	char *source;      /* owned: the header's source, its URL without a
			    * password, or NULL */
	uint64_t bytes;
	time_t mtime;
	int damaged;       /* header unreadable or sidecar missing/malformed */
	char *problem;     /* owned, why it is damaged */
};

struct snap_list {
	struct snap_info *items; /* oldest first (by created_at, then name) */
	size_t n, alloc;
};

#define SNAP_LIST_INIT { NULL, 0, 0 }

/* Lists "*.tar.zst" in dir, reading only each header (fast; a full check is
 * snap_verify's job).  A missing dir is an empty list. */
int snap_list(const char *dir, struct snap_list *out, struct sm_error *err);
void snap_list_release(struct snap_list *l);
/* Deletes a snapshot and its sidecar. */
int snap_remove(const char *path, struct sm_error *err);

#endif
