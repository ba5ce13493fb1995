/*
 * pg_copy: the framing of PostgreSQL's binary COPY format (pg_copy.h).
 */
#include <stdint.h>
#include <string.h>

#include "pg_copy.h"

#define SIGNATURE_LEN 11

const unsigned char pgcopy_header[PGCOPY_HEADER_LEN] = {
	'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', '\0', /* signature */
	0, 0, 0, 0,                                                  /* flags */
	0, 0, 0, 0                                                   /* extension length */
};

const unsigned char pgcopy_trailer[PGCOPY_TRAILER_LEN] = { 0xff, 0xff };

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int16_t get16(const unsigned char *p)
{
	return (int16_t)(uint16_t)((unsigned)p[0] << 8 | p[1]);
}

int pgcopy_out_row(struct pgcopy_out *s, const char **msg, size_t *len)
{
	const unsigned char *p = (const unsigned char *)*msg;

	if (!s->binary)
		return 1;
	if (!s->started) {
		uint32_t ext;

		if (*len < PGCOPY_HEADER_LEN || memcmp(p, pgcopy_header, SIGNATURE_LEN) != 0)
			return -1;
		ext = get32(p + SIGNATURE_LEN + 4);
		if (ext > *len - PGCOPY_HEADER_LEN)
			return -1;
		*msg += PGCOPY_HEADER_LEN + ext;
		*len -= PGCOPY_HEADER_LEN + ext;
		p = (const unsigned char *)*msg;
		s->started = 1;
	}
	if (*len == PGCOPY_TRAILER_LEN && get16(p) == -1)
		return 0;
	/* a row: at least its field count */
	return *len >= 2 && get16(p) >= 0 ? 1 : -1;
}

int pgcopy_rows_end(const char *buf, size_t len, size_t *pos)
{
	const unsigned char *b = (const unsigned char *)buf;
	size_t at = *pos;

	while (len - at >= 2) {
		int16_t fields = get16(b + at);
		size_t p = at + 2;
		int f;

		if (fields < 0)
			return -1;
		for (f = 0; f < fields; f++) {
			int32_t flen;

			if (len - p < 4)
				return 0;
			flen = (int32_t)get32(b + p);
			p += 4;
			if (flen < -1)
				return -1;
			if (flen > 0) {
				if ((size_t)flen > len - p)
					return 0;
				p += (size_t)flen;
			}
		}
		*pos = at = p;
	}
	return 0;
}
