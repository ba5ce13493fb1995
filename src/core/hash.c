/*
 * hash: SHA-256 helpers over OpenSSL EVP (see hash.h).
 */
#include "hash.h"

#include <openssl/evp.h>

#include "xalloc.h"

int hash_init(struct hash_ctx *h)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	if (!c)
		xdie_oom();
	if (EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(c);
		h->evp = NULL;
		return -1;
	}
	h->evp = c;
	return 0;
}

int hash_copy(struct hash_ctx *dst, const struct hash_ctx *src)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	if (!c)
		xdie_oom();
	if (EVP_MD_CTX_copy_ex(c, src->evp) != 1) {
		EVP_MD_CTX_free(c);
		dst->evp = NULL;
		return -1;
	}
	dst->evp = c;
	return 0;
}

void hash_update(struct hash_ctx *h, const void *data, size_t len)
{
	if (len)
		EVP_DigestUpdate(h->evp, data, len);
}

void hash_hex(const unsigned char md[HASH_LEN], char hex[HASH_HEX_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < HASH_LEN; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[HASH_HEX_LEN] = '\0';
}

void hash_final_hex(struct hash_ctx *h, char hex[HASH_HEX_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	EVP_DigestFinal_ex(h->evp, md, &n);
	hash_hex(md, hex);
	hash_release(h);
}

void hash_sum_merge(unsigned char acc[HASH_LEN], const unsigned char other[HASH_LEN])
{
	unsigned int carry = 0;

	for (size_t i = HASH_LEN; i-- > 0;) {
		carry += (unsigned int)acc[i] + other[i];
		acc[i] = (unsigned char)carry;
		carry >>= 8;
	}
}

void hash_sum_add(unsigned char acc[HASH_LEN], const void *data, size_t len)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1)
		xdie_oom(); /* only an allocation can fail */
	hash_sum_merge(acc, md);
}

void hash_summer_init(struct hash_summer *s)
{
	EVP_MD_CTX *base = EVP_MD_CTX_new(), *work = EVP_MD_CTX_new();

	if (!base || !work || EVP_DigestInit_ex(base, EVP_sha256(), NULL) != 1)
		xdie_oom(); /* only an allocation can fail */
	s->base = base;
	s->work = work;
}

void hash_summer_add(struct hash_summer *s, unsigned char acc[HASH_LEN], const void *data,
		     size_t len)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	if (EVP_MD_CTX_copy_ex(s->work, s->base) != 1 ||
	    EVP_DigestUpdate(s->work, data, len) != 1 ||
	    EVP_DigestFinal_ex(s->work, md, &n) != 1)
		xdie_oom();
	hash_sum_merge(acc, md);
}

void hash_summer_release(struct hash_summer *s)
{
	EVP_MD_CTX_free(s->base);
	EVP_MD_CTX_free(s->work);
	s->base = s->work = NULL;
}

void hash_release(struct hash_ctx *h)
{
	if (h->evp)
		EVP_MD_CTX_free(h->evp);
	h->evp = NULL;
}

void hash_buf_hex(const void *data, size_t len, char hex[HASH_HEX_LEN + 1])
{
	struct hash_ctx h;

	hash_init(&h);
	hash_update(&h, data, len);
	hash_final_hex(&h, hex);
}
