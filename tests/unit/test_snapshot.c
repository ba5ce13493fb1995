/*
 * test_snapshot: the snapshot archive format: writer/reader round trips,
 * damage at many offsets, truncation, lying sizes and hostile archives
 * (built here with libarchive) must all be refused without a crash.
 */
#include "unit_tmpdir.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fsutil.h"
#include "hash.h"
#include "snapshot.h"
#include "strbuf.h"
#include "xalloc.h"

static char tmpdir[256];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/sm-unit-snap-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return unit_remove_tree(tmpdir);
}

/* A deterministic, poorly compressible byte source of a given length. */
struct gen {
	uint64_t left;
	uint64_t state;
	long long extra; /* bytes to produce beyond left (a lying source), or <0 fewer */
};

static int gen_read(void *ud, void *buf, size_t cap, size_t *got, struct sm_error *err)
{
	struct gen *g = ud;
	unsigned char *p = buf;
	size_t n = cap < g->left ? cap : (size_t)g->left;

	(void)err;
	for (size_t i = 0; i < n; i++) {
		g->state = g->state * 6364136223846793005ULL + 1442695040888963407ULL;
		p[i] = (unsigned char)(g->state >> 56);
	}
	g->left -= n;
	*got = n;
	return 0;
}

static void gen_hash(uint64_t len, uint64_t seed, char hex[HASH_HEX_LEN + 1])
{
	struct gen g = { len, seed, 0 };
	struct hash_ctx h;
	unsigned char buf[65536];
	size_t got;

	hash_init(&h);
	do {
		gen_read(&g, buf, sizeof(buf), &got, NULL);
		hash_update(&h, buf, got);
	} while (got);
	hash_final_hex(&h, hex);
}

/* Writes a snapshot "name" with a small entry, a 2-chunk known-size stream
 * and an unknown-size stream; returns its path (caller frees). */
static char *make_snapshot(const char *name, uint64_t big)
{
	struct snap_writer *w = NULL;
	struct sm_error err = SM_ERROR_INIT;
	struct gen g1 = { big, 1, 0 }, g2 = { 100000, 2, 0 };
	char *path = NULL;
	char sha[HASH_HEX_LEN + 1];
	uint64_t bytes = 0;

	assert_int_equal(snap_writer_open(tmpdir, name, &w, &err), 0);
	snap_set_engine(w, "testdb", "TestDB 1.0");
	snap_set_source(w, "testdb://user:***@host/db");
	snap_set_revision(w, "0042");
	snap_set_row_count(w, "users", 3);
	assert_int_equal(snap_add_entry_buf(w, "meta/info.txt", "hello\n", 6, &err), 0);
	assert_int_equal(snap_add_entry_stream(w, "data/big", big, gen_read, &g1, &err), 0);
	assert_int_equal(snap_add_entry_stream(w, "data/small", SNAP_SIZE_UNKNOWN, gen_read, &g2,
					       &err), 0);
	assert_int_equal(snap_writer_commit(w, &path, sha, &bytes, &err), 0);
	assert_non_null(path);
	assert_true(bytes > 0);
	return path;
}

static void test_round_trip(void **state)
{
	const uint64_t big = SNAP_CHUNK_MAX + 12345;
	struct snap_reader *r = NULL;
	struct sm_error err = SM_ERROR_INIT;
	struct snap_entry ent;
	struct snap_problems pr = SNAP_PROBLEMS_INIT;
	char *path;
	struct hash_ctx h = { NULL };
	char want[HASH_HEX_LEN + 1], have[HASH_HEX_LEN + 1];
	unsigned char buf[70000];
	const char *names[] = { "meta/info.txt", "data/big.0000", "data/big.0001",
				"data/small.0000" };
	size_t i = 0, got;
	struct stat st;
	cJSON *m = NULL;

	(void)state;
	path = make_snapshot("rt", big);
	assert_string_equal(fs_basename(path), "rt.tar.zst");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	assert_int_equal(snap_reader_open(path, &r, &err), 0);
	assert_string_equal(cJSON_GetObjectItem(snap_reader_header(r), "engine")->valuestring,
			    "testdb");
	assert_null(snap_reader_manifest(r));
	hash_init(&h);
	while (snap_reader_next(r, &ent, &err) == 1) {
		assert_true(i < 4);
		assert_string_equal(ent.name, names[i]);
		if (i == 1 || i == 2) {
			do {
				assert_int_equal(snap_reader_read(r, buf, sizeof(buf), &got, &err), 0);
				hash_update(&h, buf, got);
			} while (got);
		}
		i++;
	}
	assert_int_equal(i, 4);
	hash_final_hex(&h, have);
	gen_hash(big, 1, want);
	assert_string_equal(have, want); /* the chunks concatenate to the payload */
	assert_int_equal(snap_reader_finish(r, &err), 0);
	assert_non_null(snap_reader_manifest(r));
	assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(snap_reader_manifest(r),
								 "row_counts"), "users")->valueint, 3);
	snap_reader_close(r);

	assert_int_equal(snap_verify(path, &pr, &m, &err), 0);
	assert_int_equal(pr.n, 0);
	assert_non_null(m);
	assert_string_equal(cJSON_GetObjectItem(m, "revision")->valuestring, "0042");
	cJSON_Delete(m);
	free(path);
}

static char *copy_file(const char *src, const char *name, size_t truncate_to)
{
	struct strbuf data = STRBUF_INIT, side = STRBUF_INIT, line = STRBUF_INIT;
	struct sm_error err = SM_ERROR_INIT;
	char *dst = fs_join(tmpdir, name);

	assert_int_equal(fs_read_file(src, &data, (size_t)1 << 30, &err), 0);
	if (truncate_to < data.len)
		sb_setlen(&data, truncate_to);
	assert_int_equal(fs_write_atomic(dst, data.buf, data.len, 0600, &err), 0);
	/* a sidecar naming the copy with the ORIGINAL checksum */
	sb_addf(&side, "%s%s", src, SNAP_SHA_SUFFIX);
	assert_int_equal(fs_read_file(side.buf, &line, 4096, &err), 0);
	sb_setlen(&line, HASH_HEX_LEN);
	sb_addf(&line, "  %s\n", name);
	sb_reset(&side);
	sb_addf(&side, "%s%s", dst, SNAP_SHA_SUFFIX);
	assert_int_equal(fs_write_atomic(side.buf, line.buf, line.len, 0600, &err), 0);
	sb_release(&data);
	sb_release(&side);
	sb_release(&line);
	return dst;
}

static void flip_byte(const char *path, off_t off)
{
	int fd = open(path, O_RDWR);
	unsigned char c;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &c, 1, off), 1);
	c ^= 0x40;
	assert_int_equal(pwrite(fd, &c, 1, off), 1);
	close(fd);
}

static size_t verify_problems(const char *path)
{
	struct snap_problems pr = SNAP_PROBLEMS_INIT;
	struct sm_error err = SM_ERROR_INIT;
	size_t n;

	assert_int_equal(snap_verify(path, &pr, NULL, &err), 0);
	n = pr.n;
	snap_problems_release(&pr);
	return n;
}

static void test_corruption_and_truncation(void **state)
{
	char *path = make_snapshot("good", 300000);
	struct stat st;
	off_t offsets[6];

	(void)state;
	assert_int_equal(stat(path, &st), 0);
	offsets[0] = 0;
	offsets[1] = 5;
	offsets[2] = 700;
	offsets[3] = st.st_size / 2;
	offsets[4] = st.st_size - 40;
	offsets[5] = st.st_size - 1;
	assert_int_equal(verify_problems(path), 0);
	for (int i = 0; i < 6; i++) {
		char name[32];
		char *c;
		snprintf(name, sizeof(name), "flip%d.tar.zst", i);
		c = copy_file(path, name, SIZE_MAX);
		assert_int_equal(verify_problems(c), 0); /* the copy itself is fine */
		flip_byte(c, offsets[i]);
		assert_true(verify_problems(c) > 0);
		free(c);
	}
	{
		size_t cuts[] = { 0, 1, 100, (size_t)st.st_size / 2, (size_t)st.st_size - 1 };
		for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
			char name[32];
			char *c;
			snprintf(name, sizeof(name), "cut%zu.tar.zst", i);
			c = copy_file(path, name, cuts[i]);
			assert_true(verify_problems(c) > 0);
			free(c);
		}
	}
	free(path);
}

static void test_wrong_sidecar(void **state)
{
	char *path = make_snapshot("side", 1000);
	struct strbuf side = STRBUF_INIT;
	struct sm_error err = SM_ERROR_INIT;
	const char *bad = "0000000000000000000000000000000000000000000000000000000000000000"
			  "  side.tar.zst\n";

	(void)state;
	sb_addf(&side, "%s%s", path, SNAP_SHA_SUFFIX);
	assert_int_equal(fs_write_atomic(side.buf, bad, strlen(bad), 0600, &err), 0);
	assert_true(verify_problems(path) > 0);
	assert_int_equal(fs_write_atomic(side.buf, "garbage\n", 8, 0600, &err), 0);
	assert_true(verify_problems(path) > 0);
	unlink(side.buf);
	assert_true(verify_problems(path) > 0);
	sb_release(&side);
	free(path);
}

/* snap_reader_check_file: the file against its sidecar, nothing else. */
static int check_file(const char *path, enum err_kind *kind)
{
	struct snap_reader *r = NULL;
	struct sm_error err = SM_ERROR_INIT;
	int rc;

	assert_int_equal(snap_reader_open(path, &r, &err), 0);
	rc = snap_reader_check_file(r, &err);
	*kind = err.kind;
	snap_reader_close(r);
	return rc;
}

static void test_check_file(void **state)
{
	char *path = make_snapshot("chk", 300000);
	struct strbuf side = STRBUF_INIT;
	struct sm_error err = SM_ERROR_INIT;
	enum err_kind kind;
	struct stat st;
	char *c;

	(void)state;
	assert_int_equal(check_file(path, &kind), 0);
	/* a byte changed after the header still opens, and fails the check */
	assert_int_equal(stat(path, &st), 0);
	c = copy_file(path, "chk2.tar.zst", SIZE_MAX);
	sb_addf(&side, "%s%s", path, SNAP_SHA_SUFFIX);
	{
		struct strbuf text = STRBUF_INIT, side2 = STRBUF_INIT;

		/* the copy's sidecar: the same hash, its own name */
		sb_addf(&side2, "%s%s", c, SNAP_SHA_SUFFIX);
		assert_int_equal(fs_read_file(side.buf, &text, 4096, &err), 0);
		sb_setlen(&text, HASH_HEX_LEN);
		sb_adds(&text, "  chk2.tar.zst\n");
		assert_int_equal(fs_write_atomic(side2.buf, text.buf, text.len, 0600, &err), 0);
		assert_int_equal(check_file(c, &kind), 0);
		flip_byte(c, st.st_size - 40);
		assert_int_equal(check_file(c, &kind), -1);
		assert_int_equal(kind, ERR_DAMAGED);
		unlink(side2.buf);
		assert_int_equal(check_file(c, &kind), -1); /* no sidecar */
		assert_int_equal(kind, ERR_DAMAGED);
		sb_release(&text);
		sb_release(&side2);
	}
	free(c);
	sb_release(&side);
	free(path);
}

/* After snap_reader_check_file passed, the streaming pass does not hash the
 * whole file again nor compare it with the sidecar a second time
 * (docs/snapshot-format.md): a sidecar replaced between the two passes goes
 * unseen by snap_reader_finish, which still checks every entry against the
 * manifest; without the pre-check, finish compares and fails. */
static void test_check_file_not_rehashed(void **state)
{
	char *path = make_snapshot("once", 300000);
	struct snap_reader *r = NULL;
	struct sm_error err = SM_ERROR_INIT;
	struct strbuf side = STRBUF_INIT, text = STRBUF_INIT;

	(void)state;
	sb_addf(&side, "%s%s", path, SNAP_SHA_SUFFIX);
	sb_addf(&text, "%0*d  once.tar.zst\n", HASH_HEX_LEN, 0);
	assert_int_equal(snap_reader_open(path, &r, &err), 0);
	assert_int_equal(snap_reader_check_file(r, &err), 0);
	unlink(side.buf);
	assert_int_equal(fs_write_atomic(side.buf, text.buf, text.len, 0600, &err), 0);
	assert_int_equal(snap_reader_finish(r, &err), 0);
	snap_reader_close(r);

	assert_int_equal(snap_reader_open(path, &r, &err), 0);
	assert_int_equal(snap_reader_finish(r, &err), -1);
	assert_int_equal(err.kind, ERR_DAMAGED);
	assert_non_null(strstr(err.msg, "checksum file"));
	snap_reader_close(r);
	sb_release(&side);
	sb_release(&text);
	free(path);
}

static void test_foreign_files(void **state)
{
	struct sm_error err = SM_ERROR_INIT;
	char *p = fs_join(tmpdir, "foreign.tar.zst");
	unsigned char junk[4096];

	(void)state;
	assert_int_equal(fs_write_atomic(p, "", 0, 0600, &err), 0);
	assert_true(verify_problems(p) > 0);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(i * 7 + 3);
	assert_int_equal(fs_write_atomic(p, junk, sizeof(junk), 0600, &err), 0);
	assert_true(verify_problems(p) > 0);
	/* zstd magic followed by junk */
	junk[0] = 0x28, junk[1] = 0xb5, junk[2] = 0x2f, junk[3] = 0xfd;
	assert_int_equal(fs_write_atomic(p, junk, sizeof(junk), 0600, &err), 0);
	assert_true(verify_problems(p) > 0);
	free(p);
}

static void test_lying_sources(void **state)
{
	struct snap_writer *w = NULL;
	struct sm_error err = SM_ERROR_INIT;
	struct gen shortg = { 100, 1, 0 }, longg = { 300, 1, 0 };

	(void)state;
	assert_int_equal(snap_writer_open(tmpdir, "liar", &w, &err), 0);
	snap_set_engine(w, "testdb", "1");
	assert_int_equal(snap_add_entry_stream(w, "data/x", 200, gen_read, &shortg, &err), -1);
	assert_non_null(strstr(err.msg, "early"));
	snap_writer_abort(w);
	assert_int_equal(snap_writer_open(tmpdir, "liar", &w, &err), 0);
	assert_int_equal(snap_add_entry_stream(w, "data/x", 200, gen_read, &longg, &err), -1);
	assert_non_null(strstr(err.msg, "longer"));
	snap_writer_abort(w);
	/* nothing visible and no temp file left */
	{
		struct snap_list l = SNAP_LIST_INIT;
		assert_int_equal(snap_list(tmpdir, &l, &err), 0);
		for (size_t i = 0; i < l.n; i++)
			assert_null(strstr(l.items[i].path, "liar"));
		snap_list_release(&l);
	}
	{
		char *t = fs_join(tmpdir, "liar.tar.zst");
		assert_false(fs_exists(t));
		free(t);
	}
}

/* Builds a zstd tar with a valid header entry followed by one hostile entry. */
static char *hostile(const char *name, int kind)
{
	struct archive *a = archive_write_new();
	struct archive_entry *e;
	char *path = fs_join(tmpdir, name);
	const char *hdr = "{\"format_version\": 1, \"engine\": \"sqlite\"}";
	struct strbuf side = STRBUF_INIT, data = STRBUF_INIT;
	struct sm_error err = SM_ERROR_INIT;
	char hex[HASH_HEX_LEN + 1];

	archive_write_set_format_pax_restricted(a);
	archive_write_add_filter_zstd(a);
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	e = archive_entry_new();
	archive_entry_set_pathname(e, SNAP_HEADER_NAME);
	archive_entry_set_size(e, (la_int64_t)strlen(hdr));
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0600);
	archive_write_header(a, e);
	archive_write_data(a, hdr, strlen(hdr));
	archive_entry_clear(e);
	switch (kind) {
	case 0: {
		/* unique, so that the check below cannot see someone else's file */
		struct strbuf up = STRBUF_INIT;
		sb_addf(&up, "../%s-escaped", fs_basename(tmpdir));
		archive_entry_set_pathname(e, up.buf);
		sb_release(&up);
		break;
	}
	case 1:
		archive_entry_set_pathname(e, "/abs/x");
		break;
	case 2:
		archive_entry_set_pathname(e, "data/link");
		archive_entry_set_filetype(e, AE_IFLNK);
		archive_entry_set_symlink(e, "/etc/passwd");
		break;
	case 3:
		archive_entry_set_pathname(e, "data/hard");
		archive_entry_set_hardlink(e, SNAP_HEADER_NAME);
		break;
	case 4:
		archive_entry_set_pathname(e, SNAP_HEADER_NAME); /* a duplicate */
		break;
	case 5:
		archive_entry_set_pathname(e, "data/dev");
		archive_entry_set_filetype(e, AE_IFCHR);
		archive_entry_set_rdev(e, 0x0103);
		break;
	case 6:
		archive_entry_set_pathname(e, "data/a/../../x");
		break;
	}
	if (kind == 0 || kind == 1 || kind == 4 || kind == 6) {
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_size(e, 3);
	}
	archive_entry_set_perm(e, 0600);
	archive_write_header(a, e);
	if (kind == 0 || kind == 1 || kind == 4 || kind == 6)
		archive_write_data(a, "abc", 3);
	archive_entry_free(e);
	archive_write_close(a);
	archive_write_free(a);
	/* a matching sidecar, so only the entry itself is wrong */
	assert_int_equal(fs_read_file(path, &data, (size_t)1 << 20, &err), 0);
	hash_buf_hex(data.buf, data.len, hex);
	sb_addf(&side, "%s%s", path, SNAP_SHA_SUFFIX);
	sb_reset(&data);
	sb_addf(&data, "%s  %s\n", hex, name);
	assert_int_equal(fs_write_atomic(side.buf, data.buf, data.len, 0600, &err), 0);
	sb_release(&side);
	sb_release(&data);
	return path;
}

static void test_hostile_archives(void **state)
{
	(void)state;
	for (int kind = 0; kind <= 6; kind++) {
		char name[32];
		char *p;
		struct snap_reader *r = NULL;
		struct sm_error err = SM_ERROR_INIT;
		struct snap_entry ent;
		int rc;
		struct snap_problems pr = SNAP_PROBLEMS_INIT;

		snprintf(name, sizeof(name), "hostile%d.tar.zst", kind);
		p = hostile(name, kind);
		assert_int_equal(snap_reader_open(p, &r, &err), 0);
		rc = snap_reader_next(r, &ent, &err);
		assert_int_equal(rc, -1);
		assert_int_equal(err.kind, ERR_DAMAGED);
		assert_non_null(strstr(err.msg, "refused"));
		snap_reader_close(r);
		assert_int_equal(snap_verify(p, &pr, NULL, &err), 0);
		assert_true(pr.n > 0);
		snap_problems_release(&pr);
		free(p);
	}
	/* nothing was written outside the directory */
	{
		struct strbuf up = STRBUF_INIT;
		sb_addf(&up, "%s-escaped", tmpdir);
		assert_false(fs_exists(up.buf));
		sb_release(&up);
	}
}

static void test_chunk_names_and_temps(void **state)
{
	unsigned idx = 99;
	char *dead, *mine;
	struct strbuf sb = STRBUF_INIT;
	struct sm_error err = SM_ERROR_INIT;

	(void)state;
	assert_true(snap_is_chunk_of("data/main.db.0000", "data/main.db", &idx));
	assert_int_equal(idx, 0);
	assert_true(snap_is_chunk_of("data/main.db.0012", "data/main.db", &idx));
	assert_int_equal(idx, 12);
	assert_false(snap_is_chunk_of("data/main.db.12", "data/main.db", &idx));
	assert_false(snap_is_chunk_of("data/main.dbx.0001", "data/main.db", &idx));
	assert_false(snap_is_chunk_of("data/main.db.00a1", "data/main.db", &idx));

	/* pid 2^22+1 is above the default pid_max range on most systems */
	sb_addf(&sb, "%s/%s%d.x.tar.zst", tmpdir, SNAP_TMP_PREFIX, 4194305);
	dead = sb_detach(&sb);
	sb_addf(&sb, "%s/%s%ld.y.tar.zst", tmpdir, SNAP_TMP_PREFIX, (long)getpid());
	mine = sb_detach(&sb);
	assert_int_equal(fs_write_atomic(dead, "x", 1, 0600, &err), 0);
	assert_int_equal(fs_write_atomic(mine, "y", 1, 0600, &err), 0);
	snap_cleanup_temps(tmpdir);
	assert_false(fs_exists(dead));
	assert_true(fs_exists(mine));
	unlink(mine);
	free(dead);
	free(mine);

	assert_int_equal(snap_check_space(tmpdir, UINT64_MAX / 2, &err), -1);
	assert_int_equal(err.kind, ERR_NOSPACE);
	assert_int_equal(snap_check_space(tmpdir, 1, &err), 0);
}

static void test_names(void **state)
{
	struct snap_writer *w = NULL;
	struct sm_error err = SM_ERROR_INIT;
	char *p = make_snapshot("dup", 10);

	(void)state;
	assert_int_equal(snap_writer_open(tmpdir, "dup", &w, &err), -1);
	assert_int_equal(err.kind, ERR_USAGE);
	assert_int_equal(snap_writer_open(tmpdir, "../evil", &w, &err), -1);
	assert_int_equal(snap_writer_open(tmpdir, ".hidden", &w, &err), -1);
	assert_int_equal(snap_writer_open(tmpdir, "dup.tar.zst", &w, &err), -1);
	assert_int_equal(snap_writer_open(tmpdir, NULL, &w, &err), 0);
	assert_int_equal(snap_add_entry_buf(w, "../x", "a", 1, &err), -1);
	assert_int_equal(snap_add_entry_buf(w, "/x", "a", 1, &err), -1);
	assert_int_equal(snap_add_entry_buf(w, SNAP_MANIFEST_NAME, "a", 1, &err), -1);
	snap_writer_abort(w);
	free(p);
}

/* A snapshot written to a descriptor (backup --output -) and read back
 * from one (restore -): the same archive, no sidecar and no temp file in
 * the scratch directory; the reader's check_file checks nothing (a stream
 * is read once) and finish compares the stream with the expected SHA-256. */
static void test_stream_fd(void **state)
{
	struct snap_write_opts wo;
	struct snap_writer *w = NULL;
	struct snap_reader *r = NULL;
	struct sm_error err = SM_ERROR_INIT;
	struct gen g = { 3 * SNAP_STREAM_CHUNK + 5, 7, 0 };
	struct strbuf path = STRBUF_INIT, scratch = STRBUF_INIT;
	struct snap_entry ent;
	char sha[HASH_HEX_LEN + 1], bad[HASH_HEX_LEN + 1];
	char *out_path = NULL;
	uint64_t bytes = 0;
	int fd, rc, level = 0;

	(void)state;
	sb_addf(&path, "%s/stream.out", tmpdir);
	sb_addf(&scratch, "%s/scratch", tmpdir);
	fd = open(path.buf, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	memset(&wo, 0, sizeof(wo));
	wo.fd = fd;
	wo.use_fd = 1;
	wo.level = 3;
	wo.has_level = 1;
	assert_int_equal(snap_writer_open_opts(scratch.buf, NULL, &wo, &w, &err), 0);
	assert_string_equal(snap_writer_dir(w), scratch.buf);
	snap_set_engine(w, "testdb", "TestDB 1.0");
	snap_set_source(w, "testdb://h/db");
	snap_set_revision(w, NULL);
	assert_int_equal(snap_add_entry_stream(w, "data/x", SNAP_SIZE_UNKNOWN, gen_read, &g, &err), 0);
	assert_int_equal(snap_writer_commit(w, &out_path, sha, &bytes, &err), 0);
	assert_string_equal(out_path, "-");
	/* the descriptor is the caller's: still open, holding the whole archive */
	assert_int_equal(lseek(fd, 0, SEEK_END), (off_t)bytes);
	/* nothing was published or left in the scratch directory */
	{
		DIR *d = opendir(scratch.buf);
		const struct dirent *de;
		int n = 0;

		assert_non_null(d);
		while ((de = readdir(d)) != NULL)
			n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
		closedir(d);
		assert_int_equal(n, 0);
	}
	/* read back with the right checksum */
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(snap_reader_open_fd(fd, "-", sha, &r, &err), 0);
	assert_true(snap_reader_is_stream(r));
	assert_int_equal(snap_reader_check_file(r, &err), 0);
	while ((rc = snap_reader_next(r, &ent, &err)) == 1)
		level++;
	assert_int_equal(rc, 0);
	assert_int_equal(level, 4); /* data/x.0000 to .0003 */
	assert_int_equal(snap_reader_finish(r, &err), 0);
	snap_reader_close(r);
	/* a wrong one: damaged at finish, after every entry was read */
	memcpy(bad, sha, sizeof(bad));
	bad[0] = bad[0] == '0' ? '1' : '0';
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(snap_reader_open_fd(fd, "-", bad, &r, &err), 0);
	assert_int_equal(snap_reader_finish(r, &err), -1);
	assert_int_equal(err.kind, ERR_DAMAGED);
	assert_non_null(strstr(err.msg, "expected SHA-256"));
	snap_reader_close(r);
	/* not 64 hex digits: refused up front */
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(snap_reader_open_fd(fd, "-", "abc", &r, &err), -1);
	assert_int_equal(err.kind, ERR_USAGE);
	close(fd);
	free(out_path);
	sb_release(&path);
	sb_release(&scratch);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_corruption_and_truncation),
		cmocka_unit_test(test_wrong_sidecar),
		cmocka_unit_test(test_check_file),
		cmocka_unit_test(test_check_file_not_rehashed),
		cmocka_unit_test(test_foreign_files),
		cmocka_unit_test(test_lying_sources),
		cmocka_unit_test(test_hostile_archives),
		cmocka_unit_test(test_chunk_names_and_temps),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_stream_fd),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
