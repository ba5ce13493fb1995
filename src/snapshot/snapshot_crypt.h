/*
 * snapshot_crypt: encryption at rest of snapshot entries (format 3), a layer
 * under snapshot_write.c and snapshot_read.c.  All cryptography is
 * OpenSSL's (EVP): AES-256-GCM or ChaCha20-Poly1305, HKDF-SHA256, X25519,
 * HMAC-SHA256.  docs/snapshot-format.md describes the layout in full.
 *
 * Keys.  A key file is either a secret key (64 hex digits: 32 random
 * bytes) or an X25519 private key (PEM, as `openssl genpkey -algorithm
 * X25519` writes it); both must be regular files of the user, mode 0600 or
 * stricter, and not symbolic links (refused as ssh refuses an unprotected
 * private key).  A public key (PEM) is what --encrypt-to names.
 *
 * Sessions.  A snapshot has a random 32-byte salt; its data key is
 * HKDF(key material, salt), the key material being the secret key, or the
 * X25519 shared secret of an ephemeral key (one per snapshot) and the
 * recipient's key.  Every entry (but snapshot.json and manifest.json, which
 * stay readable) gets its own key, HKDF(data key, entry name), and is cut
 * into records of SNAP_CRYPT_RECORD plaintext bytes, each compressed (zstd:
 * sealed bytes do not compress, so the archive's own zstd cannot) and then
 * sealed with nonce = record index and AAD = entry name, record index, a
 * final-record flag and the entry's plaintext size, so that a changed,
 * moved, reordered, spliced or truncated record fails to open.  A sealed
 * entry is: the plaintext size (8 bytes, big-endian), then per record its
 * sealed length (4 bytes, big-endian) and the sealed bytes.  manifest.json carries an HMAC (key from the data key) over its
 * own text, so that entries cannot be dropped or the manifest rewritten by
 * someone without the key.
 *
 * The keyring.  The CLI loads the keys once at start-up (before any thread
 * or snapshot exists) into a process-wide keyring; snapshot_write.c
 * encrypts to the keyring's target and snapshot_read.c picks a key by the
 * snapshot's key id, so that every reader (verify, restore, its parallel
 * workers, the pipeline) decrypts without the key being passed down each
 * call chain, and a keyring holding old and new keys reads snapshots of both
 * (key rotation).  Read-only once set up; not for use from several threads
 * while it changes.  It also holds the --require-encryption policy
 * (snap_keyring_require), which readers apply.
 *
 * Why a global, against STYLE.md's "only the options struct is global".
 * The keyring cannot live in the CLI's options struct: snapshot/ sits below
 * cli/ and may not see it.  Passing it down instead means a keyring field in
 * struct snap_write_opts, struct backup_opts and struct restore_opts, and a
 * keyring argument to snap_reader_open, snap_reader_open_fd, snap_verify and
 * snap_verify_fd, filled at every site that writes or reads a snapshot: today
 * backup_take in cmd_snapshot.c and pipeline_ports.c, restore_snapshot(_fd)
 * and snap_verify(_fd) in the same two files, and the readers restore/
 * reopens on its own (restore_pg.c three times, restore_pg_parallel.c's
 * workers), about 15 sites in 8 files, most of them in backup/, restore/
 * and the pipeline, which other work changes too.  Worse than the churn, it
 * fails open: a site that forgets the field (any new one: a fleet command,
 * a safety snapshot) silently writes plaintext or accepts an unencrypted
 * snapshot under --require-encryption, where with the keyring every writer
 * encrypts and every reader applies the policy by construction.  So the
 * keyring stays here as a second, write-once global: set by the CLI before
 * any thread or snapshot exists (cmd_crypt.c), read-only after, and cleared
 * at exit.
 *
 * All functions return 0 (or as documented) or -1 with err filled.
 */
#ifndef SM_SNAPSHOT_CRYPT_H
#define SM_SNAPSHOT_CRYPT_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "strbuf.h"

/* zstd's level for records when the writer chose none (--compression-level
 * unset): 1, as the records are the payload's only compression. */
#define SNAP_CRYPT_LEVEL_DEFAULT 1

/* Plaintext bytes per record, the tag each record adds, the prefixes. */
#define SNAP_CRYPT_RECORD ((size_t)256 << 10)
#define SNAP_CRYPT_TAG 16
#define SNAP_CRYPT_SIZE_PREFIX 8
#define SNAP_CRYPT_LEN_PREFIX 4
#define SNAP_CRYPT_KEY_LEN 32
/* Key ids: 64 hex digits. */
#define SNAP_CRYPT_ID_HEX 64

struct snap_key;

/* Loads a key file: a secret key or an X25519 private key (checked for
 * mode, owner and symbolic link first), or with public set an X25519 public
 * key (PEM; any mode).  *out owned by the caller (snap_key_free). */
int snap_key_load(const char *path, int public, struct snap_key **out, struct sm_error *err);
void snap_key_free(struct snap_key *k);
/* The key id recorded in snapshots (64 hex digits; borrowed): HKDF of a
 * secret key, SHA-256 of the raw X25519 public key (also for the private
 * key, so that either names the same snapshots). */
const char *snap_key_id(const struct snap_key *k);
/* "secret", "x25519-private" or "x25519-public" (static). */
const char *snap_key_kind(const struct snap_key *k);

/* Writes a new key file at out_path (mode 0600, never replacing a file or
 * following a link): a secret key, or with pub_path an X25519 private key
 * and its public key at pub_path (mode 0644). */
int snap_keygen(const char *out_path, const char *pub_path, struct sm_error *err);

/* --- keyring -------------------------------------------------------------- */

/* Adds a key that can decrypt (takes k; a public key is refused). */
int snap_keyring_add(struct snap_key *k, struct sm_error *err);
/* Sets what new snapshots are encrypted to (takes k; NULL: not encrypted,
 * which is the default).  A private key encrypts to its own public key. */
void snap_keyring_encrypt_to(struct snap_key *k);
/* The cipher of new snapshots: "aes-256-gcm" (the default) or
 * "chacha20-poly1305" (faster without AES instructions).  ERR_USAGE for
 * another name. */
int snap_keyring_set_cipher(const char *name, struct sm_error *err);
/* The encryption target, or NULL (borrowed). */
const struct snap_key *snap_keyring_target(void);
/* The decrypting key with this id, or NULL (borrowed). */
const struct snap_key *snap_keyring_find(const char *id);
/* How many decrypting keys there are. */
size_t snap_keyring_count(void);
/* Sets whether readers (snapshot_read.c, when they look for keys) accept
 * only snapshots encrypted with a key of the keyring (--require-encryption):
 * off by default, so that unencrypted older snapshots still restore. */
void snap_keyring_require(int on);
/* 1 if snap_keyring_require was set. */
int snap_keyring_required(void);
/* Frees every key and clears the requirement (at exit, for leak checkers). */
void snap_keyring_clear(void);

/* --- one snapshot's session -------------------------------------------------- */

struct snap_crypt;

/*
 * A writing session for the keyring's target: *out NULL (and 0 returned)
 * when no target is set.  *enc receives the header's "encryption" object
 * (caller owns): cipher, kdf, mode, key_id, salt, chunk size and, for
 * X25519, the ephemeral public key; never key material.  cipher: NULL for
 * the keyring's (snap_keyring_set_cipher), or a name it accepts.
 */
int snap_crypt_begin_write(const char *cipher, struct snap_crypt **out, cJSON **enc,
			   struct sm_error *err);
/*
 * A reading session from a header's "encryption" object: *out NULL (and 0
 * returned) when the keyring holds no key at all (the entries can then be
 * checked only as stored bytes).  Fails (ERR_FAIL, sys_errno EKEYREJECTED)
 * when the keyring holds keys but none with the snapshot's key id (a wrong
 * key), and ERR_DAMAGED when enc is malformed.
 */
int snap_crypt_begin_read(const cJSON *enc, struct snap_crypt **out, struct sm_error *err);
void snap_crypt_free(struct snap_crypt *c);
/* Sets the zstd level of the records a writing session seals (any level
 * zstd has, negative ones included; SNAP_CRYPT_LEVEL_DEFAULT until set).
 * Sealing stays deterministic for one level: entries begun after this use it. */
void snap_crypt_set_level(struct snap_crypt *c, int level);

/* The largest sealed record (without its length prefix) a reader accepts. */
size_t snap_crypt_sealed_max(void);

/* One entry being sealed or opened. */
struct snap_crypt_entry {
	void *ctx;                 /* EVP_CIPHER_CTX, owned */
	const void *cipher;        /* EVP_CIPHER, borrowed */
	void *zc, *zd;             /* ZSTD_CCtx / ZSTD_DCtx, owned, made when needed */
	unsigned char key[SNAP_CRYPT_KEY_LEN];
	char *name;                /* owned */
	uint64_t plain_size;       /* the entry's plaintext size (bound to each record) */
	uint64_t index;            /* the next record's */
	int level;                 /* zstd level of sealed records (the session's) */
	unsigned char *buf;        /* compressed record, owned */
};

/* Starts sealing or opening entry name of plain_size plaintext bytes. */
int snap_crypt_entry_begin(const struct snap_crypt *c, const char *name, uint64_t plain_size,
			   struct snap_crypt_entry *e, struct sm_error *err);
/* Appends the entry's size prefix to out (the first bytes of a sealed entry). */
void snap_crypt_put_size(struct strbuf *out, uint64_t plain_size);
/* Reads a size prefix (SNAP_CRYPT_SIZE_PREFIX bytes). */
uint64_t snap_crypt_get_size(const unsigned char *p);
/* Compresses and seals the next record (len <= SNAP_CRYPT_RECORD) and
 * appends it, with its length prefix, to out. */
int snap_crypt_seal(struct snap_crypt_entry *e, const void *plain, size_t len, int final,
		    struct strbuf *out, struct sm_error *err);
/* Opens the next record (in, len: the sealed bytes after the length
 * prefix) and decompresses it into out (cap bytes at most; *got set).
 * -1 (ERR_DAMAGED) if it fails to authenticate: wrong key, changed bytes,
 * wrong place, wrong final flag or entry size. */
int snap_crypt_open(struct snap_crypt_entry *e, const unsigned char *in, size_t len,
		    int final, void *out, size_t cap, size_t *got, struct sm_error *err);
void snap_crypt_entry_release(struct snap_crypt_entry *e);

/* HMAC-SHA256 of data under the session's manifest key, as 64 hex digits. */
int snap_crypt_mac(const struct snap_crypt *c, const void *data, size_t len,
		   char hex[SNAP_CRYPT_ID_HEX + 1], struct sm_error *err);
/* Compares two hex MACs in constant time: 1 if equal. */
int snap_crypt_mac_equal(const char *a, const char *b);

#endif
