/*
 * test_snapshot_crypt: the record layer of snapshot encryption
 * (snapshot_crypt.h): sealed sizes, seal/open round trips with both
 * ciphers, records that are changed, moved, renamed or carry the wrong
 * final flag, key files (modes, links, formats), a wrong key, a whole
 * encrypted snapshot written and read back through the keyring, the
 * records' compression level, and --require-encryption's refusal.
 */
#include "unit_tmpdir.h"

#include <errno.h>
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

#include "snapshot.h"
#include "snapshot_crypt.h"
#include "strbuf.h"
#include "xalloc.h"

static char tmpdir[256];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/sm-unit-crypt-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	snap_keyring_clear();
	return unit_remove_tree(tmpdir);
}

static char *tmp_path(const char *name)
{
	struct strbuf sb = STRBUF_INIT;

	sb_addf(&sb, "%s/%s", tmpdir, name);
	return sb_detach(&sb);
}

/* A new secret key file "name"; its key loaded. */
static struct snap_key *new_key(const char *name)
{
	struct sm_error err = SM_ERROR_INIT;
	struct snap_key *k = NULL;
	char *p = tmp_path(name);

	assert_int_equal(snap_keygen(p, NULL, &err), 0);
	assert_int_equal(snap_key_load(p, 0, &k, &err), 0);
	free(p);
	return k;
}

static void test_size_prefix(void **state)
{
	struct strbuf sb = STRBUF_INIT;
	const uint64_t v[] = { 0, 1, 255, 256, 16u << 20, UINT64_MAX };

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		sb_reset(&sb);
		snap_crypt_put_size(&sb, v[i]);
		assert_int_equal(sb.len, SNAP_CRYPT_SIZE_PREFIX);
		assert_true(snap_crypt_get_size((const unsigned char *)sb.buf) == v[i]);
	}
	sb_release(&sb);
	assert_true(snap_crypt_sealed_max() > SNAP_CRYPT_RECORD + SNAP_CRYPT_TAG);
}

/* A session for the keyring's target, and one that reads it back. */
static void sessions(const char *cipher, struct snap_crypt **w, struct snap_crypt **r)
{
	struct sm_error err = SM_ERROR_INIT;
	cJSON *enc = NULL;

	assert_int_equal(snap_crypt_begin_write(cipher, w, &enc, &err), 0);
	assert_non_null(*w);
	assert_non_null(enc);
	assert_int_equal(snap_crypt_begin_read(enc, r, &err), 0);
	assert_non_null(*r);
	cJSON_Delete(enc);
}

/* The sealed bytes of record k of out (after its length prefix), and their length. */
static const unsigned char *record_at(const struct strbuf *out, int k, size_t *len)
{
	const unsigned char *p = (const unsigned char *)out->buf;

	for (;;) {
		*len = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
		if (!k--)
			return p + SNAP_CRYPT_LEN_PREFIX;
		p += SNAP_CRYPT_LEN_PREFIX + *len;
	}
}

static int open_one(struct snap_crypt *r, const char *name, uint64_t size, int skip,
		    const unsigned char *in, size_t len, int final, unsigned char *back,
		    size_t *got)
{
	struct sm_error err = SM_ERROR_INIT;
	struct snap_crypt_entry oe;
	int rc;

	assert_int_equal(snap_crypt_entry_begin(r, name, size, &oe, &err), 0);
	oe.index += (uint64_t)skip;
	rc = snap_crypt_open(&oe, in, len, final, back, SNAP_CRYPT_RECORD, got, &err);
	if (rc < 0)
		assert_int_equal(err.kind, ERR_DAMAGED);
	snap_crypt_entry_release(&oe);
	return rc;
}

static void test_seal_open(void **state)
{
	static const char *const ciphers[] = { "aes-256-gcm", "chacha20-poly1305" };
	struct sm_error err = SM_ERROR_INIT;
	unsigned char plain[3000], *back = xmalloc(SNAP_CRYPT_RECORD);
	const uint64_t size = 3 * sizeof(plain);
	struct snap_key *k = NULL;
	char *p = tmp_path("a.key");

	(void)state;
	for (size_t i = 0; i < sizeof(plain); i++)
		plain[i] = (unsigned char)(i * 7 % 13);
	assert_int_equal(snap_keyring_add(new_key("a.key"), &err), 0);
	assert_int_equal(snap_key_load(p, 0, &k, &err), 0);
	snap_keyring_encrypt_to(k);
	free(p);
	for (size_t c = 0; c < 2; c++) {
		struct snap_crypt *w = NULL, *r = NULL;
		struct snap_crypt_entry se, oe;
		struct strbuf out = STRBUF_INIT;
		const unsigned char *rec[3];
		size_t len[3], got;

		sessions(ciphers[c], &w, &r);
		assert_int_equal(snap_crypt_entry_begin(w, "data/x.0000", size, &se, &err), 0);
		for (int i = 0; i < 3; i++)
			assert_int_equal(snap_crypt_seal(&se, plain, sizeof(plain), i == 2, &out, &err), 0);
		snap_crypt_entry_release(&se);
		for (int i = 0; i < 3; i++)
			rec[i] = record_at(&out, i, &len[i]);
		/* compressed (the plaintext repeats), and each record has its own nonce */
		assert_true(len[0] < sizeof(plain));
		assert_int_equal(len[0], len[1]);
		assert_memory_not_equal(rec[0], rec[1], len[0]);

		/* in order, with the right final flags: the plaintext back */
		assert_int_equal(snap_crypt_entry_begin(r, "data/x.0000", size, &oe, &err), 0);
		for (int i = 0; i < 3; i++) {
			assert_int_equal(snap_crypt_open(&oe, rec[i], len[i], i == 2, back,
							 SNAP_CRYPT_RECORD, &got, &err), 0);
			assert_int_equal(got, sizeof(plain));
			assert_memory_equal(back, plain, sizeof(plain));
		}
		snap_crypt_entry_release(&oe);

		/* a record moved (record 1 read as record 0) */
		assert_int_equal(open_one(r, "data/x.0000", size, 0, rec[1], len[1], 0, back, &got), -1);
		/* truncation: a non-final record read as the last one */
		assert_int_equal(open_one(r, "data/x.0000", size, 0, rec[0], len[0], 1, back, &got), -1);
		/* the last record passed off as a middle one */
		assert_int_equal(open_one(r, "data/x.0000", size, 2, rec[2], len[2], 0, back, &got), -1);
		assert_int_equal(open_one(r, "data/x.0000", size, 2, rec[2], len[2], 1, back, &got), 0);
		/* another entry's name, another entry size */
		assert_int_equal(open_one(r, "data/x.0001", size, 0, rec[0], len[0], 0, back, &got), -1);
		assert_int_equal(open_one(r, "data/x.0000", size - 1, 0, rec[0], len[0], 0, back,
					  &got), -1);
		/* one bit changed, anywhere (data or tag) */
		for (size_t at = 0; at < len[0]; at++) {
			unsigned char *m = (unsigned char *)rec[0] + at;

			*m ^= 0x10;
			assert_int_equal(open_one(r, "data/x.0000", size, 0, rec[0], len[0], 0, back,
						  &got), -1);
			*m ^= 0x10;
		}
		assert_int_equal(open_one(r, "data/x.0000", size, 0, rec[0], len[0], 0, back, &got), 0);
		sb_release(&out);
		snap_crypt_free(w);
		snap_crypt_free(r);
	}
	free(back);
}

static void test_wrong_key(void **state)
{
	struct sm_error err = SM_ERROR_INIT;
	struct snap_crypt *w = NULL, *r = NULL;
	cJSON *enc = NULL;

	(void)state;
	snap_keyring_encrypt_to(new_key("w1.key"));
	assert_int_equal(snap_crypt_begin_write(NULL, &w, &enc, &err), 0);
	/* no key at all: a reader that cannot open records, not an error */
	assert_int_equal(snap_crypt_begin_read(enc, &r, &err), 0);
	assert_null(r);
	assert_int_equal(snap_keyring_add(new_key("w2.key"), &err), 0);
	assert_int_equal(snap_crypt_begin_read(enc, &r, &err), -1);
	assert_int_equal(err.sys_errno, EKEYREJECTED);
	assert_non_null(strstr(err.msg, "another key"));
	/* the header records no key material */
	{
		char *text = cJSON_PrintUnformatted(enc);

		assert_null(strstr(text, "secret\":"));
		assert_non_null(strstr(text, snap_key_id(snap_keyring_target())));
		free(text);
	}
	cJSON_Delete(enc);
	snap_crypt_free(w);
}

static void test_key_files(void **state)
{
	struct sm_error err = SM_ERROR_INIT;
	struct snap_key *k = NULL, *pub = NULL;
	char *p = tmp_path("m.key"), *link = tmp_path("m.link"), *x = tmp_path("x.pem"),
	     *xp = tmp_path("x.pub"), *bad = tmp_path("bad.key");
	FILE *f;

	(void)state;
	assert_int_equal(snap_keygen(p, NULL, &err), 0);
	/* never replaces */
	assert_int_equal(snap_keygen(p, NULL, &err), -1);
	assert_int_equal(chmod(p, 0644), 0);
	assert_int_equal(snap_key_load(p, 0, &k, &err), -1);
	assert_non_null(strstr(err.msg, "0644"));
	assert_int_equal(chmod(p, 0600), 0);
	assert_int_equal(symlink(p, link), 0);
	assert_int_equal(snap_key_load(link, 0, &k, &err), -1);
	assert_non_null(strstr(err.msg, "symbolic link"));
	assert_int_equal(snap_key_load(p, 0, &k, &err), 0);
	assert_string_equal(snap_key_kind(k), "secret");
	snap_key_free(k);

	/* X25519: the private and the public key name the same id */
	assert_int_equal(snap_keygen(x, xp, &err), 0);
	assert_int_equal(snap_key_load(x, 0, &k, &err), 0);
	assert_int_equal(snap_key_load(xp, 1, &pub, &err), 0);
	assert_string_equal(snap_key_kind(k), "x25519-private");
	assert_string_equal(snap_key_id(k), snap_key_id(pub));
	/* a public key cannot decrypt */
	assert_int_equal(snap_keyring_add(pub, &err), -1);
	snap_key_free(k);

	f = fopen(bad, "w");
	assert_non_null(f);
	fputs("00112233\n", f);
	fclose(f);
	assert_int_equal(chmod(bad, 0600), 0);
	assert_int_equal(snap_key_load(bad, 0, &k, &err), -1);
	free(p);
	free(link);
	free(x);
	free(xp);
	free(bad);
}

/* A whole snapshot through the writer and the reader: the reader hands
 * back the plaintext and its sizes; without a key it refuses the data. */
static void test_snapshot_round_trip(void **state)
{
	struct sm_error err = SM_ERROR_INIT;
	struct snap_writer *w = NULL;
	struct snap_reader *r = NULL;
	struct snap_entry ent;
	char *path = NULL;
	char sha[HASH_HEX_LEN + 1];
	uint64_t bytes;
	size_t n = 3 * SNAP_CRYPT_RECORD + 5, got, total = 0;
	unsigned char *data = xmalloc(n), *back = xmalloc(n + 1);

	(void)state;
	for (size_t i = 0; i < n; i++)
		data[i] = (unsigned char)(i % 251);
	snap_keyring_encrypt_to(new_key("s.key"));
	assert_int_equal(snap_writer_open(tmpdir, "enc", &w, &err), 0);
	snap_set_engine(w, "testdb", "TestDB 1.0");
	assert_int_equal(snap_add_entry_buf(w, "meta/empty", "", 0, &err), 0);
	assert_int_equal(snap_add_entry_buf(w, "meta/data", data, n, &err), 0);
	assert_int_equal(snap_writer_commit(w, &path, sha, &bytes, &err), 0);

	/* without the key: entries are listed, their data refused */
	assert_int_equal(snap_reader_open(path, &r, &err), 0);
	assert_int_equal(snap_reader_decrypts(r), -1);
	assert_int_equal(snap_reader_next(r, &ent, &err), 1);
	assert_int_equal(snap_reader_read(r, back, n, &got, &err), -1);
	snap_reader_close(r);

	{
		char *kp = tmp_path("s.key");
		struct snap_key *k = NULL;

		assert_int_equal(snap_key_load(kp, 0, &k, &err), 0);
		assert_int_equal(snap_keyring_add(k, &err), 0);
		free(kp);
	}
	assert_int_equal(snap_reader_open(path, &r, &err), 0);
	assert_int_equal(snap_reader_decrypts(r), 1);
	assert_int_equal(snap_reader_next(r, &ent, &err), 1);
	assert_string_equal(ent.name, "meta/empty");
	assert_int_equal(ent.size, 0);
	assert_int_equal(snap_reader_read(r, back, n, &got, &err), 0);
	assert_int_equal(got, 0);
	assert_int_equal(snap_reader_next(r, &ent, &err), 1);
	assert_string_equal(ent.name, "meta/data");
	assert_int_equal(ent.size, n);
	do {
		assert_int_equal(snap_reader_read(r, back + total, 1000, &got, &err), 0);
		total += got;
	} while (got);
	assert_int_equal(total, n);
	assert_memory_equal(back, data, n);
	assert_int_equal(snap_reader_finish(r, &err), 0);
	assert_non_null(cJSON_GetObjectItem(snap_reader_manifest(r), SNAP_MANIFEST_AUTH));
	snap_reader_close(r);
	free(path);
	free(data);
	free(back);
}

/* The record's sealed length at a session level (snap_crypt_set_level),
 * checking it opens back to plain. */
static size_t sealed_len_at(int level, const unsigned char *plain, size_t n)
{
	struct sm_error err = SM_ERROR_INIT;
	struct snap_crypt *w = NULL, *r = NULL;
	struct snap_crypt_entry se;
	struct strbuf out = STRBUF_INIT;
	unsigned char *back = xmalloc(SNAP_CRYPT_RECORD);
	size_t len, got;

	sessions(NULL, &w, &r);
	snap_crypt_set_level(w, level);
	assert_int_equal(snap_crypt_entry_begin(w, "data/t.0000", n, &se, &err), 0);
	assert_int_equal(snap_crypt_seal(&se, plain, n, 1, &out, &err), 0);
	snap_crypt_entry_release(&se);
	record_at(&out, 0, &len);
	assert_int_equal(open_one(r, "data/t.0000", n, 0, record_at(&out, 0, &len), len, 1, back,
				  &got), 0);
	assert_int_equal(got, n);
	assert_memory_equal(back, plain, n);
	snap_crypt_free(w);
	snap_crypt_free(r);
	sb_release(&out);
	free(back);
	return len;
}

static void test_record_level(void **state)
{
	static const char *const words[] = { "order ", "shipped ", "customer ", "invoice ",
					     "pending ", "warehouse ", "Lisbon ", "paid " };
	struct sm_error err = SM_ERROR_INIT;
	struct strbuf text = STRBUF_INIT;
	size_t fast, one, strong;

	(void)state;
	for (unsigned i = 0; text.len < SNAP_CRYPT_RECORD - 64; i++)
		sb_addf(&text, "%s%s#%u %u\n", words[(i * 7) % 8], words[(i * i) % 8], i,
			(unsigned)((i * 2654435761ull) % 1000003));
	assert_int_equal(snap_keyring_add(new_key("l.key"), &err), 0);
	{
		char *kp = tmp_path("l.key");
		struct snap_key *k = NULL;

		assert_int_equal(snap_key_load(kp, 0, &k, &err), 0);
		snap_keyring_encrypt_to(k);
		free(kp);
	}
	fast = sealed_len_at(-5, (const unsigned char *)text.buf, text.len);
	one = sealed_len_at(SNAP_CRYPT_LEVEL_DEFAULT, (const unsigned char *)text.buf, text.len);
	strong = sealed_len_at(19, (const unsigned char *)text.buf, text.len);
	assert_true(strong < one);
	assert_true(one < fast);
	sb_release(&text);
	snap_keyring_clear();
}

/* --require-encryption: a plain snapshot is refused from its header (its
 * header is still described for list-backups); an encrypted one is read;
 * with no key at all, nothing is. */
static void test_require_encryption(void **state)
{
	struct sm_error err = SM_ERROR_INIT;
	struct snap_writer *w = NULL;
	struct snap_reader *r = NULL;
	char *plain = NULL, *enc = NULL, *kp = tmp_path("q.key");
	char sha[HASH_HEX_LEN + 1];
	struct snap_key *k = NULL;
	uint64_t bytes;

	(void)state;
	assert_int_equal(snap_writer_open(tmpdir, "plain", &w, &err), 0);
	snap_set_engine(w, "testdb", "TestDB 1.0");
	assert_int_equal(snap_add_entry_buf(w, "meta/x", "x", 1, &err), 0);
	assert_int_equal(snap_writer_commit(w, &plain, sha, &bytes, &err), 0);
	assert_int_equal(snap_keygen(kp, NULL, &err), 0);
	assert_int_equal(snap_key_load(kp, 0, &k, &err), 0);
	snap_keyring_encrypt_to(k);
	assert_int_equal(snap_writer_open(tmpdir, "enc", &w, &err), 0);
	snap_set_engine(w, "testdb", "TestDB 1.0");
	assert_int_equal(snap_add_entry_buf(w, "meta/x", "x", 1, &err), 0);
	assert_int_equal(snap_writer_commit(w, &enc, sha, &bytes, &err), 0);

	snap_keyring_require(1);
	assert_true(snap_keyring_required());
	/* no key to decrypt with: a usage error, whatever the snapshot */
	assert_int_equal(snap_reader_open(enc, &r, &err), -1);
	assert_int_equal(err.kind, ERR_USAGE);
	assert_non_null(strstr(err.msg, "--require-encryption"));
	err_clear(&err);
	assert_int_equal(snap_key_load(kp, 0, &k, &err), 0);
	assert_int_equal(snap_keyring_add(k, &err), 0);
	assert_int_equal(snap_reader_open(plain, &r, &err), -1);
	assert_int_equal(err.kind, ERR_DAMAGED);
	assert_non_null(strstr(err.msg, "is refused: it is not encrypted"));
	assert_non_null(strstr(err.msg, plain));
	err_clear(&err);
	assert_int_equal(snap_reader_open_header(plain, &r, &err), 0);
	snap_reader_close(r);
	assert_int_equal(snap_reader_open(enc, &r, &err), 0);
	assert_int_equal(snap_reader_decrypts(r), 1);
	snap_reader_close(r);
	/* off again (the default): the plain one is read */
	snap_keyring_require(0);
	assert_int_equal(snap_reader_open(plain, &r, &err), 0);
	snap_reader_close(r);
	free(plain);
	free(enc);
	free(kp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size_prefix),
		cmocka_unit_test_setup_teardown(test_seal_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_record_level, setup, teardown),
		cmocka_unit_test_setup_teardown(test_require_encryption, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
