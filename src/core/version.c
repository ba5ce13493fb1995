/*
 * version: parsing and ordering of migration versions (see version.h).
 */
#include "version.h"

#include <ctype.h>
#include <string.h>

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

size_t ver_prefix_len(const char *name)
{
	size_t i = 0;

	if (!is_digit(name[0]))
		return 0;
	for (;;) {
		while (is_digit(name[i]))
			i++;
		/* a separator counts only when a digit follows it */
		if ((name[i] == '.' || name[i] == '_') && is_digit(name[i + 1])) {
			i++;
			continue;
		}
		return i;
	}
}

int ver_valid(const char *s)
{
	size_t n = ver_prefix_len(s);

	return n > 0 && s[n] == '\0';
}

/* Compares one run of digits numerically, whatever its length. */
static int cmp_number(const char *a, size_t alen, const char *b, size_t blen)
{
	while (alen > 1 && *a == '0') {
		a++;
		alen--;
	}
	while (blen > 1 && *b == '0') {
		b++;
		blen--;
	}
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return memcmp(a, b, alen);
}

int ver_cmp(const char *a, const char *b)
{
	for (;;) {
		size_t alen = 0, blen = 0;
		int c;

		while (is_digit(a[alen]))
			alen++;
		while (is_digit(b[blen]))
			blen++;
		if (!alen || !blen) {
			if (alen || blen)
				return alen ? 1 : -1;
			return strcmp(a, b);
		}
		c = cmp_number(a, alen, b, blen);
		if (c)
			return c < 0 ? -1 : 1;
		a += alen;
		b += blen;
		if (!*a || !*b) {
			if (!*a && !*b)
				return 0;
			return *a ? 1 : -1; /* more segments sort later: 2.9 < 2.9.1 */
		}
		a++; /* skip the separator */
		b++;
	}
}
