/*
 * hash: SHA-256 through OpenSSL's EVP interface.
 *
 * Snapshots, migration checksums and schema fingerprints are all SHA-256,
 * printed as 64 lowercase hex digits.
 */
#ifndef SM_HASH_H
#define SM_HASH_H

#include <stddef.h>

#define HASH_HEX_LEN 64

struct hash_ctx {
	void *evp; /* EVP_MD_CTX, owned */
};

int hash_init(struct hash_ctx *h);
void hash_update(struct hash_ctx *h, const void *data, size_t len);
/* Writes 64 hex digits and a NUL into hex, and releases the context. */
void hash_final_hex(struct hash_ctx *h, char hex[HASH_HEX_LEN + 1]);
/* Releases a context without finishing it (safe on an initialised or zeroed ctx). */
void hash_release(struct hash_ctx *h);
/* One-shot SHA-256 of a buffer. */
void hash_buf_hex(const void *data, size_t len, char hex[HASH_HEX_LEN + 1]);

#endif
