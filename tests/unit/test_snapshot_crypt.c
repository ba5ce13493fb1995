/*
 * test_snapshot_crypt: the record layer of snapshot encryption
 * (snapshot_crypt.h): sealed sizes, seal/open round trips with both
 * ciphers, records that are changed, moved, renamed or carry the wrong
 * final flag, key files (modes, links, formats), a wrong key, and a whole
 * encrypted snapshot written and read back through the keyring.
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

static void test_sizes(void **state)
{
	const uint64_t rec = SNAP_CRYPT_RECORD, tag = SNAP_CRYPT_TAG;
	const uint64_t plain[] = { 0, 1, rec - 1, rec, rec + 1, 3 * rec, 16u << 20 };
	uint64_t p;

	(void)state;
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		uint64_t s = snap_crypt_sealed_size(plain[i]);

		assert_true(s > plain[i]);
		assert_int_equal(snap_crypt_plain_size(s, &p), 0);
		assert_int_equal(p, plain[i]);
	}
	assert_int_equal(snap_crypt_sealed_size(0), tag);
	assert_int_equal(snap_crypt_sealed_size(rec), rec + tag);
	assert_int_equal(snap_crypt_sealed_size(rec + 1), rec + 1 + 2 * tag);
	/* stored sizes no entry can have: shorter than a tag, or a last
	 * record holding only part of a tag */
	for (uint64_t s = 0; s < tag; s++)
		assert_int_equal(snap_crypt_plain_size(s, &p), -1);
	for (uint64_t s = rec + tag + 1; s < rec + 2 * tag; s++)
		assert_int_equal(snap_crypt_plain_size(s, &p), -1);
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

static void test_seal_open(void **state)
{
	static const char *const ciphers[] = { "aes-256-gcm", "chacha20-poly1305" };
	struct sm_error err = SM_ERROR_INIT;
	unsigned char plain[1000], sealed[3][1000 + SNAP_CRYPT_TAG], back[1000];

	(void)state;
	for (size_t i = 0; i < sizeof(plain); i++)
		plain[i] = (unsigned char)(i * 7);
	assert_int_equal(snap_keyring_add(new_key("a.key"), &err), 0);
	{
		char *p = tmp_path("a.key");
		struct snap_key *k = NULL;

		assert_int_equal(snap_key_load(p, 0, &k, &err), 0);
		snap_keyring_encrypt_to(k);
		free(p);
	}
	for (size_t c = 0; c < 2; c++) {
		struct snap_crypt *w = NULL, *r = NULL;
		struct snap_crypt_entry se, oe;

		sessions(ciphers[c], &w, &r);
		assert_int_equal(snap_crypt_entry_begin(w, "data/x.0000", &se, &err), 0);
		for (int k = 0; k < 3; k++)
			assert_int_equal(snap_crypt_seal(&se, plain, sizeof(plain), k == 2, sealed[k],
							 &err), 0);
		snap_crypt_entry_release(&se);
		/* the records differ: each has its own nonce */
		assert_memory_not_equal(sealed[0], sealed[1], sizeof(plain));

		/* in order, with the right final flags: the plaintext back */
		assert_int_equal(snap_crypt_entry_begin(r, "data/x.0000", &oe, &err), 0);
		for (int k = 0; k < 3; k++) {
			assert_int_equal(snap_crypt_open(&oe, sealed[k], sizeof(sealed[k]), k == 2,
							 back, &err), 0);
			assert_memory_equal(back, plain, sizeof(plain));
		}
		snap_crypt_entry_release(&oe);

		/* a record moved (record 1 read as record 0) */
		assert_int_equal(snap_crypt_entry_begin(r, "data/x.0000", &oe, &err), 0);
		assert_int_equal(snap_crypt_open(&oe, sealed[1], sizeof(sealed[1]), 0, back, &err), -1);
		assert_int_equal(err.kind, ERR_DAMAGED);
		snap_crypt_entry_release(&oe);

		/* truncation: a non-final record read as the last one */
		assert_int_equal(snap_crypt_entry_begin(r, "data/x.0000", &oe, &err), 0);
		assert_int_equal(snap_crypt_open(&oe, sealed[0], sizeof(sealed[0]), 1, back, &err), -1);
		snap_crypt_entry_release(&oe);

		/* another entry's name */
		assert_int_equal(snap_crypt_entry_begin(r, "data/x.0001", &oe, &err), 0);
		assert_int_equal(snap_crypt_open(&oe, sealed[0], sizeof(sealed[0]), 0, back, &err), -1);
		snap_crypt_entry_release(&oe);

		/* one bit changed, in the data and in the tag */
		for (size_t at = 0; at < sizeof(sealed[0]); at += 500) {
			sealed[0][at] ^= 1;
			assert_int_equal(snap_crypt_entry_begin(r, "data/x.0000", &oe, &err), 0);
			assert_int_equal(snap_crypt_open(&oe, sealed[0], sizeof(sealed[0]), 0, back,
							 &err), -1);
			snap_crypt_entry_release(&oe);
			sealed[0][at] ^= 1;
		}
		snap_crypt_free(w);
		snap_crypt_free(r);
	}
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test_setup_teardown(test_seal_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_round_trip, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
