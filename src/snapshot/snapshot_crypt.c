/*
 * snapshot_crypt: keys, the keyring and the sealing of snapshot entries
 * (see snapshot_crypt.h; docs/snapshot-format.md has the format).  Every
 * primitive is OpenSSL's EVP: nothing cryptographic is written here, only
 * which inputs go where.
 */
#include "snapshot_crypt.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "fsutil.h"
#include "hash.h"
#include "strbuf.h"
#include "xalloc.h"

#define KEYFILE_MAX 16384
#define SALT_LEN 32
#define X25519_LEN 32
#define NONCE_LEN 12
#define INFO_DATA "safe-migrate snapshot 3 data key"
#define INFO_ENTRY "safe-migrate snapshot 3 entry key"
#define INFO_MAC "safe-migrate snapshot 3 manifest key"
#define INFO_ID "safe-migrate key id"
#define AAD_TAG "safe-migrate snapshot 3 record"

enum key_kind { KEY_SECRET, KEY_PRIVATE, KEY_PUBLIC };

struct snap_key {
	enum key_kind kind;
	unsigned char secret[SNAP_CRYPT_KEY_LEN]; /* KEY_SECRET */
	EVP_PKEY *pkey;                           /* X25519 */
	unsigned char pub[X25519_LEN];            /* X25519: the raw public key */
	char id[SNAP_CRYPT_ID_HEX + 1];
};

struct snap_crypt {
	const EVP_CIPHER *cipher;
	unsigned char data_key[SNAP_CRYPT_KEY_LEN];
	unsigned char mac_key[SNAP_CRYPT_KEY_LEN];
	int level; /* zstd level of sealed records (writing) */
};

static const struct {
	const char *name;
	const EVP_CIPHER *(*get)(void);
} ciphers[] = {
	{ "aes-256-gcm", EVP_aes_256_gcm },
	{ "chacha20-poly1305", EVP_chacha20_poly1305 },
};

static const EVP_CIPHER *cipher_by_name(const char *name)
{
	for (size_t i = 0; i < sizeof(ciphers) / sizeof(ciphers[0]); i++)
		if (!strcmp(ciphers[i].name, name))
			return ciphers[i].get();
	return NULL;
}

static int crypto_fail(struct sm_error *err, const char *what)
{
	return err_set(err, ERR_FAIL, "cannot %s: OpenSSL failed", what);
}

/* HKDF-SHA256 (extract and expand) into out. */
static int hkdf(const unsigned char *ikm, size_t ikm_len, const unsigned char *salt,
		size_t salt_len, const void *info, size_t info_len, unsigned char *out,
		size_t out_len)
{
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
	size_t n = out_len;
	int ok;

	if (!pc)
		return -1;
	ok = EVP_PKEY_derive_init(pc) > 0 && EVP_PKEY_CTX_set_hkdf_md(pc, EVP_sha256()) > 0 &&
	     EVP_PKEY_CTX_set1_hkdf_key(pc, ikm, (int)ikm_len) > 0 &&
	     (!salt_len || EVP_PKEY_CTX_set1_hkdf_salt(pc, salt, (int)salt_len) > 0) &&
	     EVP_PKEY_CTX_add1_hkdf_info(pc, info, (int)info_len) > 0 &&
	     EVP_PKEY_derive(pc, out, &n) > 0 && n == out_len;
	EVP_PKEY_CTX_free(pc);
	return ok ? 0 : -1;
}

static void to_hex(const unsigned char *p, size_t n, char *hex)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		hex[2 * i] = digits[p[i] >> 4];
		hex[2 * i + 1] = digits[p[i] & 15];
	}
	hex[2 * n] = '\0';
}

static int from_hex(const char *hex, unsigned char *out, size_t n)
{
	if (strlen(hex) != 2 * n || strspn(hex, "0123456789abcdefABCDEF") != 2 * n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char two[3] = { hex[2 * i], hex[2 * i + 1], '\0' };

		out[i] = (unsigned char)strtoul(two, NULL, 16);
	}
	return 0;
}

/* --- keys -------------------------------------------------------------------- */

void snap_key_free(struct snap_key *k)
{
	if (!k)
		return;
	EVP_PKEY_free(k->pkey);
	OPENSSL_cleanse(k, sizeof(*k));
	free(k);
}

const char *snap_key_id(const struct snap_key *k)
{
	return k->id;
}

const char *snap_key_kind(const struct snap_key *k)
{
	return k->kind == KEY_SECRET ? "secret" :
	       k->kind == KEY_PRIVATE ? "x25519-private" : "x25519-public";
}

/* The raw public key and the id of an X25519 key. */
static int x25519_finish(struct snap_key *k)
{
	size_t n = X25519_LEN;

	if (EVP_PKEY_get_raw_public_key(k->pkey, k->pub, &n) <= 0 || n != X25519_LEN)
		return -1;
	hash_buf_hex(k->pub, X25519_LEN, k->id);
	return 0;
}

/* Reads a key file as ssh reads a private key: not through a symbolic link,
 * a regular file of ours, nobody else may read or write it. */
static int read_key_file(const char *path, int check_mode, struct strbuf *out,
			 struct sm_error *err)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	int ret = -1;

	if (fd < 0) {
		if (errno == ELOOP)
			return err_set(err, ERR_USAGE, "key file '%s' is a symbolic link; refused "
				       "(name the file itself)", path);
		err_sys(err, "cannot open key file '%s'", path);
		err->kind = ERR_USAGE;
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		err_sys(err, "cannot stat key file '%s'", path);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		err_set(err, ERR_USAGE, "key file '%s' is not a regular file; refused", path);
		goto out;
	}
	if (check_mode && st.st_uid != geteuid()) {
		err_set(err, ERR_USAGE, "key file '%s' is owned by uid %ld, not by you; refused",
			path, (long)st.st_uid);
		goto out;
	}
	if (check_mode && (st.st_mode & 077)) {
		err_set(err, ERR_USAGE, "key file '%s' is accessible by others (mode %04o); it "
			"must be 0600 or stricter: chmod 600 '%s'", path,
			(unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	if (st.st_size > (off_t)KEYFILE_MAX) {
		err_set(err, ERR_USAGE, "key file '%s' is too large to be a key", path);
		goto out;
	}
	sb_grow(out, KEYFILE_MAX + 1);
	for (;;) {
		ssize_t n = read(fd, out->buf + out->len, KEYFILE_MAX + 1 - out->len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err_sys(err, "cannot read key file '%s'", path);
			goto out;
		}
		if (n == 0)
			break;
		sb_setlen(out, out->len + (size_t)n);
		if (out->len > KEYFILE_MAX) {
			err_set(err, ERR_USAGE, "key file '%s' is too large to be a key", path);
			goto out;
		}
	}
	ret = 0;
out:
	close(fd);
	return ret;
}

static int load_pem(struct snap_key *k, const struct strbuf *text, int public)
{
	BIO *bio = BIO_new_mem_buf(text->buf, (int)text->len);

	if (!bio)
		return -1;
	k->pkey = public ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) :
			   PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!k->pkey || EVP_PKEY_id(k->pkey) != EVP_PKEY_X25519)
		return -1;
	return x25519_finish(k);
}

int snap_key_load(const char *path, int public, struct snap_key **out, struct sm_error *err)
{
	struct strbuf text = STRBUF_INIT;
	struct snap_key *k = xcalloc(1, sizeof(*k));
	int ret = -1;

	*out = NULL;
	if (read_key_file(path, !public, &text, err) < 0)
		goto out;
	if (public) {
		k->kind = KEY_PUBLIC;
		if (load_pem(k, &text, 1) < 0) {
			err_set(err, ERR_USAGE, "key file '%s' is not an X25519 public key in PEM "
				"form (openssl pkey -in KEY -pubout)", path);
			goto out;
		}
	} else if (strstr(text.buf, "-----BEGIN")) {
		k->kind = KEY_PRIVATE;
		if (load_pem(k, &text, 0) < 0) {
			err_set(err, ERR_USAGE, "key file '%s' is not an X25519 private key in PEM "
				"form", path);
			goto out;
		}
	} else {
		k->kind = KEY_SECRET;
		sb_rtrim(&text);
		if (from_hex(text.buf + strspn(text.buf, " \t\r\n"), k->secret,
			     SNAP_CRYPT_KEY_LEN) < 0) {
			err_set(err, ERR_USAGE, "key file '%s' holds neither a secret key (64 hex "
				"digits) nor an X25519 private key (PEM)", path);
			goto out;
		}
		{
			unsigned char id[SNAP_CRYPT_KEY_LEN];

			if (hkdf(k->secret, SNAP_CRYPT_KEY_LEN, NULL, 0, INFO_ID, strlen(INFO_ID),
				 id, sizeof(id)) < 0) {
				crypto_fail(err, "derive a key id");
				goto out;
			}
			to_hex(id, sizeof(id), k->id);
		}
	}
	*out = k;
	k = NULL;
	ret = 0;
out:
	OPENSSL_cleanse(text.buf, text.alloc);
	sb_release(&text);
	snap_key_free(k);
	return ret;
}

int snap_keygen(const char *out_path, const char *pub_path, struct sm_error *err)
{
	struct strbuf text = STRBUF_INIT, pubtext = STRBUF_INIT;
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	char *mem;
	long n;
	int ret = -1;

	if (!pub_path) {
		unsigned char key[SNAP_CRYPT_KEY_LEN];
		char hex[2 * SNAP_CRYPT_KEY_LEN + 1];

		if (RAND_bytes(key, sizeof(key)) != 1) {
			crypto_fail(err, "generate a key");
			goto out;
		}
		to_hex(key, sizeof(key), hex);
		sb_addf(&text, "%s\n", hex);
		OPENSSL_cleanse(key, sizeof(key));
		OPENSSL_cleanse(hex, sizeof(hex));
	} else {
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
		if (!pkey || !(bio = BIO_new(BIO_s_mem())) ||
		    !PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL)) {
			crypto_fail(err, "generate an X25519 key");
			goto out;
		}
		n = BIO_get_mem_data(bio, &mem);
		sb_add(&text, mem, (size_t)n);
		BIO_free(bio);
		if (!(bio = BIO_new(BIO_s_mem())) || !PEM_write_bio_PUBKEY(bio, pkey)) {
			crypto_fail(err, "write an X25519 public key");
			goto out;
		}
		n = BIO_get_mem_data(bio, &mem);
		sb_add(&pubtext, mem, (size_t)n);
	}
	if (fs_write_new(out_path, text.buf, text.len, 0600, err) < 0)
		goto out;
	if (pub_path && fs_write_new(pub_path, pubtext.buf, pubtext.len, 0644, err) < 0) {
		unlink(out_path);
		goto out;
	}
	ret = 0;
out:
	if (bio)
		BIO_free(bio);
	EVP_PKEY_free(pkey);
	OPENSSL_cleanse(text.buf, text.alloc);
	sb_release(&text);
	sb_release(&pubtext);
	return ret;
}

/* --- keyring ----------------------------------------------------------------- */

#define KEYRING_MAX 16

static struct {
	struct snap_key *keys[KEYRING_MAX];
	size_t n;
	struct snap_key *target;
	const char *cipher; /* static, or NULL for the default */
	int require;        /* readers refuse what no key of ours encrypted */
} ring;

int snap_keyring_set_cipher(const char *name, struct sm_error *err)
{
	for (size_t i = 0; i < sizeof(ciphers) / sizeof(ciphers[0]); i++)
		if (!strcmp(ciphers[i].name, name)) {
			ring.cipher = ciphers[i].name;
			return 0;
		}
	return err_set(err, ERR_USAGE, "unknown cipher '%s': use aes-256-gcm or "
		       "chacha20-poly1305", name);
}

int snap_keyring_add(struct snap_key *k, struct sm_error *err)
{
	if (k->kind == KEY_PUBLIC) {
		snap_key_free(k);
		return err_set(err, ERR_USAGE, "a public key cannot decrypt: give the private key");
	}
	if (ring.n == KEYRING_MAX) {
		snap_key_free(k);
		return err_set(err, ERR_USAGE, "too many keys (at most %d)", KEYRING_MAX);
	}
	ring.keys[ring.n++] = k;
	return 0;
}

void snap_keyring_encrypt_to(struct snap_key *k)
{
	snap_key_free(ring.target);
	ring.target = k;
}

const struct snap_key *snap_keyring_target(void)
{
	return ring.target;
}

const struct snap_key *snap_keyring_find(const char *id)
{
	for (size_t i = 0; i < ring.n; i++)
		if (!strcmp(ring.keys[i]->id, id))
			return ring.keys[i];
	return NULL;
}

size_t snap_keyring_count(void)
{
	return ring.n;
}

void snap_keyring_require(int on)
{
	ring.require = on;
}

int snap_keyring_required(void)
{
	return ring.require;
}

void snap_keyring_clear(void)
{
	for (size_t i = 0; i < ring.n; i++)
		snap_key_free(ring.keys[i]);
	snap_key_free(ring.target);
	memset(&ring, 0, sizeof(ring));
}

/* --- sessions ---------------------------------------------------------------- */

void snap_crypt_set_level(struct snap_crypt *c, int level)
{
	c->level = level;
}

void snap_crypt_free(struct snap_crypt *c)
{
	if (!c)
		return;
	OPENSSL_cleanse(c, sizeof(*c));
	free(c);
}

/* The X25519 shared secret of priv and the peer's raw public key. */
static int x25519_shared(EVP_PKEY *priv, const unsigned char peer_raw[X25519_LEN],
			 unsigned char out[X25519_LEN])
{
	EVP_PKEY *peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer_raw,
						     X25519_LEN);
	EVP_PKEY_CTX *pc = peer ? EVP_PKEY_CTX_new(priv, NULL) : NULL;
	size_t n = X25519_LEN;
	int ok;

	ok = pc && EVP_PKEY_derive_init(pc) > 0 && EVP_PKEY_derive_set_peer(pc, peer) > 0 &&
	     EVP_PKEY_derive(pc, out, &n) > 0 && n == X25519_LEN;
	EVP_PKEY_CTX_free(pc);
	EVP_PKEY_free(peer);
	return ok ? 0 : -1;
}

/*
 * The data and manifest keys from the key material.  For X25519 the info
 * binds both public keys (the ephemeral and the recipient's), as
 * RFC 9180's key schedule does.
 */
static int derive_session(struct snap_crypt *c, const unsigned char *ikm, size_t ikm_len,
			  const unsigned char salt[SALT_LEN], const char *cipher,
			  const unsigned char *eph, const unsigned char *recip)
{
	struct strbuf info = STRBUF_INIT;
	int ret;

	sb_addf(&info, "%s %s", INFO_DATA, cipher);
	if (eph) {
		sb_add(&info, eph, X25519_LEN);
		sb_add(&info, recip, X25519_LEN);
	}
	ret = hkdf(ikm, ikm_len, salt, SALT_LEN, info.buf, info.len, c->data_key,
		   SNAP_CRYPT_KEY_LEN);
	if (ret == 0)
		ret = hkdf(c->data_key, SNAP_CRYPT_KEY_LEN, NULL, 0, INFO_MAC, strlen(INFO_MAC),
			   c->mac_key, SNAP_CRYPT_KEY_LEN);
	sb_release(&info);
	return ret;
}

int snap_crypt_begin_write(const char *cipher, struct snap_crypt **out, cJSON **enc,
			   struct sm_error *err)
{
	const struct snap_key *k = ring.target;
	struct snap_crypt *c = NULL;
	EVP_PKEY *eph = NULL;
	unsigned char salt[SALT_LEN], shared[X25519_LEN], eph_pub[X25519_LEN];
	char hex[2 * SALT_LEN + 1];
	cJSON *o = NULL;
	int ret = -1;

	*out = NULL;
	*enc = NULL;
	if (!k)
		return 0;
	if (!cipher)
		cipher = ring.cipher ? ring.cipher : "aes-256-gcm";
	c = xcalloc(1, sizeof(*c));
	c->level = SNAP_CRYPT_LEVEL_DEFAULT;
	if (!(c->cipher = cipher_by_name(cipher))) {
		err_set(err, ERR_USAGE, "unknown cipher '%s'", cipher);
		goto out;
	}
	if (RAND_bytes(salt, sizeof(salt)) != 1) {
		crypto_fail(err, "draw a snapshot salt");
		goto out;
	}
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "cipher", cipher);
	cJSON_AddStringToObject(o, "kdf", "hkdf-sha256");
	cJSON_AddNumberToObject(o, "record_size", (double)SNAP_CRYPT_RECORD);
	cJSON_AddStringToObject(o, "key_id", k->id);
	to_hex(salt, SALT_LEN, hex);
	cJSON_AddStringToObject(o, "salt", hex);
	if (k->kind == KEY_SECRET) {
		cJSON_AddStringToObject(o, "mode", "secret");
		if (derive_session(c, k->secret, SNAP_CRYPT_KEY_LEN, salt, cipher, NULL, NULL) < 0) {
			crypto_fail(err, "derive the snapshot key");
			goto out;
		}
	} else {
		size_t n = X25519_LEN;

		/* one ephemeral key per snapshot: its private half is never stored */
		eph = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
		if (!eph || EVP_PKEY_get_raw_public_key(eph, eph_pub, &n) <= 0 ||
		    x25519_shared(eph, k->pub, shared) < 0 ||
		    derive_session(c, shared, X25519_LEN, salt, cipher, eph_pub, k->pub) < 0) {
			crypto_fail(err, "derive the snapshot key (X25519)");
			goto out;
		}
		cJSON_AddStringToObject(o, "mode", "x25519");
		to_hex(eph_pub, X25519_LEN, hex);
		cJSON_AddStringToObject(o, "ephemeral_public_key", hex);
	}
	*out = c;
	*enc = o;
	c = NULL;
	o = NULL;
	ret = 0;
out:
	OPENSSL_cleanse(shared, sizeof(shared));
	EVP_PKEY_free(eph);
	cJSON_Delete(o);
	snap_crypt_free(c);
	return ret;
}

static const char *enc_str(const cJSON *enc, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(enc, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

int snap_crypt_begin_read(const cJSON *enc, struct snap_crypt **out, struct sm_error *err)
{
	const char *cipher = enc_str(enc, "cipher"), *mode = enc_str(enc, "mode");
	const char *id = enc_str(enc, "key_id"), *salt_hex = enc_str(enc, "salt");
	const cJSON *rs = cJSON_GetObjectItemCaseSensitive(enc, "record_size");
	const struct snap_key *k;
	struct snap_crypt *c = NULL;
	unsigned char salt[SALT_LEN], eph[X25519_LEN], shared[X25519_LEN];
	int ret = -1;

	*out = NULL;
	if (!cJSON_IsObject(enc) || !cipher || !mode || !id || !salt_hex ||
	    !cipher_by_name(cipher) || strcmp(enc_str(enc, "kdf") ? enc_str(enc, "kdf") : "",
					      "hkdf-sha256") != 0 ||
	    !cJSON_IsNumber(rs) || rs->valuedouble != (double)SNAP_CRYPT_RECORD ||
	    strlen(id) != SNAP_CRYPT_ID_HEX || from_hex(salt_hex, salt, SALT_LEN) < 0 ||
	    (strcmp(mode, "secret") != 0 && strcmp(mode, "x25519") != 0))
		return err_set(err, ERR_DAMAGED, "the header's \"encryption\" is malformed or "
			       "names a cipher this safe-migrate does not know");
	if (!strcmp(mode, "x25519") &&
	    (!enc_str(enc, "ephemeral_public_key") ||
	     from_hex(enc_str(enc, "ephemeral_public_key"), eph, X25519_LEN) < 0))
		return err_set(err, ERR_DAMAGED, "the header's \"encryption\" has no valid "
			       "ephemeral public key");
	if (!ring.n)
		return 0;
	k = snap_keyring_find(id);
	if (!k) {
		err_set(err, ERR_FAIL, "the snapshot is encrypted with another key (key id "
			"%.16s...); the key given is not it (key id %.16s...)", id, ring.keys[0]->id);
		/* not damage: verify reports it as an error, not a problem */
		err->sys_errno = EKEYREJECTED;
		return -1;
	}
	if ((k->kind == KEY_SECRET) != !strcmp(mode, "secret"))
		return err_set(err, ERR_DAMAGED, "the header's encryption mode '%s' does not fit "
			       "its key id", mode);
	c = xcalloc(1, sizeof(*c));
	c->level = SNAP_CRYPT_LEVEL_DEFAULT;
	c->cipher = cipher_by_name(cipher);
	if (k->kind == KEY_SECRET)
		ret = derive_session(c, k->secret, SNAP_CRYPT_KEY_LEN, salt, cipher, NULL, NULL);
	else
		ret = x25519_shared(k->pkey, eph, shared) < 0 ? -1 :
		      derive_session(c, shared, X25519_LEN, salt, cipher, eph, k->pub);
	OPENSSL_cleanse(shared, sizeof(shared));
	if (ret < 0) {
		snap_crypt_free(c);
		return err_set(err, ERR_DAMAGED, "cannot derive the snapshot key: the header's "
			       "encryption parameters are damaged");
	}
	*out = c;
	return 0;
}

size_t snap_crypt_sealed_max(void)
{
	return ZSTD_COMPRESSBOUND(SNAP_CRYPT_RECORD) + SNAP_CRYPT_TAG;
}

void snap_crypt_put_size(struct strbuf *out, uint64_t plain_size)
{
	for (int i = 7; i >= 0; i--)
		sb_addch(out, (int)((plain_size >> (8 * i)) & 0xff));
}

uint64_t snap_crypt_get_size(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

int snap_crypt_entry_begin(const struct snap_crypt *c, const char *name, uint64_t plain_size,
			   struct snap_crypt_entry *e, struct sm_error *err)
{
	struct strbuf info = STRBUF_INIT;
	int rc;

	memset(e, 0, sizeof(*e));
	/* the name's NUL too: "a" and "a\0..." can never share a key */
	sb_adds(&info, INFO_ENTRY);
	sb_add(&info, "", 1);
	sb_add(&info, name, strlen(name) + 1);
	rc = hkdf(c->data_key, SNAP_CRYPT_KEY_LEN, NULL, 0, info.buf, info.len, e->key,
		  SNAP_CRYPT_KEY_LEN);
	sb_release(&info);
	e->ctx = EVP_CIPHER_CTX_new();
	e->cipher = c->cipher;
	e->name = xstrdup(name);
	e->plain_size = plain_size;
	e->level = c->level;
	e->buf = xmalloc(snap_crypt_sealed_max());
	if (rc < 0 || !e->ctx) {
		snap_crypt_entry_release(e);
		return crypto_fail(err, "derive an entry key");
	}
	return 0;
}

void snap_crypt_entry_release(struct snap_crypt_entry *e)
{
	EVP_CIPHER_CTX_free(e->ctx);
	ZSTD_freeCCtx(e->zc);
	ZSTD_freeDCtx(e->zd);
	free(e->name);
	free(e->buf);
	OPENSSL_cleanse(e, sizeof(*e));
}

/* Nonce: the record index, big-endian, in 12 bytes (unique: the key is the
 * entry's own).  AAD: a tag, the entry name with its NUL, the index, the
 * final flag and the entry's plaintext size. */
static void record_params(const struct snap_crypt_entry *e, int final,
			  unsigned char nonce[NONCE_LEN], struct strbuf *aad)
{
	memset(nonce, 0, NONCE_LEN);
	for (int i = 0; i < 8; i++)
		nonce[NONCE_LEN - 1 - i] = (unsigned char)(e->index >> (8 * i));
	sb_reset(aad);
	sb_add(aad, AAD_TAG, sizeof(AAD_TAG));
	sb_add(aad, e->name, strlen(e->name) + 1);
	sb_add(aad, nonce + NONCE_LEN - 8, 8);
	sb_addch(aad, final ? 1 : 0);
	snap_crypt_put_size(aad, e->plain_size);
}

int snap_crypt_seal(struct snap_crypt_entry *e, const void *plain, size_t len, int final,
		    struct strbuf *out, struct sm_error *err)
{
	unsigned char nonce[NONCE_LEN];
	struct strbuf aad = STRBUF_INIT;
	EVP_CIPHER_CTX *x = e->ctx;
	unsigned char *dst;
	size_t clen, at;
	int n = 0, m = 0, ok;

	if (!e->zc && !(e->zc = ZSTD_createCCtx()))
		xdie_oom();
	/* the payload's only compression (the archive's cannot shrink sealed
	 * bytes), so at the level the user chose for the snapshot */
	clen = ZSTD_compressCCtx(e->zc, e->buf, snap_crypt_sealed_max() - SNAP_CRYPT_TAG, plain,
				 len, e->level);
	if (ZSTD_isError(clen))
		return err_set(err, ERR_FAIL, "cannot compress a snapshot record: %s",
			       ZSTD_getErrorName(clen));
	at = out->len;
	sb_grow(out, SNAP_CRYPT_LEN_PREFIX + clen + SNAP_CRYPT_TAG);
	dst = (unsigned char *)out->buf + at;
	for (int i = 0; i < 4; i++)
		dst[i] = (unsigned char)((clen + SNAP_CRYPT_TAG) >> (8 * (3 - i)));
	dst += SNAP_CRYPT_LEN_PREFIX;
	record_params(e, final, nonce, &aad);
	ok = EVP_EncryptInit_ex(x, e->cipher, NULL, NULL, NULL) == 1 &&
	     EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
	     EVP_EncryptInit_ex(x, NULL, NULL, e->key, nonce) == 1 &&
	     EVP_EncryptUpdate(x, NULL, &n, (const unsigned char *)aad.buf, (int)aad.len) == 1 &&
	     EVP_EncryptUpdate(x, dst, &n, e->buf, (int)clen) == 1 &&
	     EVP_EncryptFinal_ex(x, dst + n, &m) == 1 &&
	     EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, SNAP_CRYPT_TAG, dst + clen) == 1;
	sb_release(&aad);
	if (!ok)
		return crypto_fail(err, "encrypt a snapshot record");
	sb_setlen(out, at + SNAP_CRYPT_LEN_PREFIX + clen + SNAP_CRYPT_TAG);
	e->index++;
	return 0;
}

int snap_crypt_open(struct snap_crypt_entry *e, const unsigned char *in, size_t len,
		    int final, void *out, size_t cap, size_t *got, struct sm_error *err)
{
	unsigned char nonce[NONCE_LEN], tag[SNAP_CRYPT_TAG];
	struct strbuf aad = STRBUF_INIT;
	EVP_CIPHER_CTX *x = e->ctx;
	size_t clen = len - SNAP_CRYPT_TAG, plen;
	int n = 0, m = 0, ok;

	*got = 0;
	if (len < SNAP_CRYPT_TAG || len > snap_crypt_sealed_max())
		return err_set(err, ERR_DAMAGED, "entry '%s', record %llu has an impossible size",
			       e->name, (unsigned long long)e->index);
	memcpy(tag, in + clen, SNAP_CRYPT_TAG);
	record_params(e, final, nonce, &aad);
	ok = EVP_DecryptInit_ex(x, e->cipher, NULL, NULL, NULL) == 1 &&
	     EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
	     EVP_DecryptInit_ex(x, NULL, NULL, e->key, nonce) == 1 &&
	     EVP_DecryptUpdate(x, NULL, &n, (const unsigned char *)aad.buf, (int)aad.len) == 1 &&
	     (clen == 0 || EVP_DecryptUpdate(x, e->buf, &n, in, (int)clen) == 1) &&
	     EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_TAG, SNAP_CRYPT_TAG, tag) == 1 &&
	     EVP_DecryptFinal_ex(x, e->buf + (clen ? n : 0), &m) == 1;
	sb_release(&aad);
	if (!ok)
		return err_set(err, ERR_DAMAGED, "entry '%s', record %llu fails authentication "
			       "(the data was changed, moved or cut short)", e->name,
			       (unsigned long long)e->index);
	if (!e->zd && !(e->zd = ZSTD_createDCtx()))
		xdie_oom();
	/* authenticated, so ours: still, never more than cap */
	plen = ZSTD_decompressDCtx(e->zd, out, cap, e->buf, clen);
	if (ZSTD_isError(plen))
		return err_set(err, ERR_DAMAGED, "entry '%s', record %llu cannot be decompressed: %s",
			       e->name, (unsigned long long)e->index, ZSTD_getErrorName(plen));
	*got = plen;
	e->index++;
	return 0;
}

int snap_crypt_mac(const struct snap_crypt *c, const void *data, size_t len,
		   char hex[SNAP_CRYPT_ID_HEX + 1], struct sm_error *err)
{
	unsigned char md[32];
	size_t n = 0;

	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, c->mac_key, SNAP_CRYPT_KEY_LEN, data,
		       len, md, sizeof(md), &n) || n != sizeof(md))
		return crypto_fail(err, "authenticate the manifest");
	to_hex(md, sizeof(md), hex);
	return 0;
}

int snap_crypt_mac_equal(const char *a, const char *b)
{
	size_t n = strlen(a);

	return n == strlen(b) && CRYPTO_memcmp(a, b, n) == 0;
}
