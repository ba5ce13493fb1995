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
#define HASH_LEN 32

struct hash_ctx {
	void *evp; /* EVP_MD_CTX, owned */
};

int hash_init(struct hash_ctx *h);
void hash_update(struct hash_ctx *h, const void *data, size_t len);
/* Starts dst as a copy of src (the same bytes hashed so far); src goes on
 * unchanged.  Returns 0, -1 if it cannot (dst is then zeroed). */
int hash_copy(struct hash_ctx *dst, const struct hash_ctx *src);
/* Writes 64 hex digits and a NUL into hex, and releases the context. */
void hash_final_hex(struct hash_ctx *h, char hex[HASH_HEX_LEN + 1]);
/* Releases a context without finishing it (safe on an initialised or zeroed ctx). */
void hash_release(struct hash_ctx *h);
/* One-shot SHA-256 of a buffer. */
void hash_buf_hex(const void *data, size_t len, char hex[HASH_HEX_LEN + 1]);
/* 64 hex digits and a NUL of a raw digest. */
void hash_hex(const unsigned char md[HASH_LEN], char hex[HASH_HEX_LEN + 1]);
/*
 * An order-independent digest of a multiset of items: adds the SHA-256 of
 * one item to acc (zeroed to start) as a 256-bit big-endian number, mod
 * 2^256.  The same items in any order give the same acc.
 */
void hash_sum_add(unsigned char acc[HASH_LEN], const void *data, size_t len);
/* Adds the digest other (of another multiset, by hash_sum_add) to acc: the
 * digest of the two multisets together, however the items were split. */
void hash_sum_merge(unsigned char acc[HASH_LEN], const unsigned char other[HASH_LEN]);

/*
 * hash_sum_add for many small items (a table's rows): the same digest, but
 * the SHA-256 context is set up once and copied for each item instead of
 * allocated, looked up and freed per item (four to five times faster on
 * rows of 100 bytes).  One per thread; hash_summer_release frees it.
 */
struct hash_summer {
	void *base, *work; /* EVP_MD_CTX, owned */
};

#define HASH_SUMMER_INIT { NULL, NULL }

void hash_summer_init(struct hash_summer *s);
void hash_summer_add(struct hash_summer *s, unsigned char acc[HASH_LEN], const void *data,
		     size_t len);
/* Safe on a zeroed or released summer. */
void hash_summer_release(struct hash_summer *s);

#endif
