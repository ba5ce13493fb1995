/*
 * pg_copy: the framing of PostgreSQL's binary COPY format (the "Binary
 * Format" section of the COPY reference page), the one owner of it.
 *
 * A binary COPY stream is a header (a signature, a flags word, a header
 * extension), then one tuple per row (a 16-bit field count, then per field
 * a 32-bit length, -1 for NULL, and that many bytes of the type's send
 * function's output), then a trailer (a field count of -1).  All integers
 * are in network byte order.  What the bytes of a value mean is the
 * server's business: nothing here looks inside one.
 *
 * A snapshot stores a binary table's rows without the header and the
 * trailer (docs/snapshot-postgresql.md): every COPY that loads them, or a
 * part of them, sends its own.
 */
#ifndef SM_PG_COPY_H
#define SM_PG_COPY_H

#include <stddef.h>

/* The header every COPY ... (FORMAT binary) writer sends first: signature,
 * no flags, no header extension. */
#define PGCOPY_HEADER_LEN 19
extern const unsigned char pgcopy_header[PGCOPY_HEADER_LEN];

/* The trailer, sent last. */
#define PGCOPY_TRAILER_LEN 2
extern const unsigned char pgcopy_trailer[PGCOPY_TRAILER_LEN];

/* Reading one COPY ... TO STDOUT, a PQgetCopyData message at a time
 * (the server sends one per row; the header comes in front of the first
 * row, the trailer alone). */
struct pgcopy_out {
	int binary;  /* the COPY was (FORMAT binary) */
	int started; /* the header was seen */
};

#define PGCOPY_OUT_INIT(binary) { (binary), 0 }

/*
 * One message, *msg and *len: in a binary COPY, moves them past the
 * header in the first.  1 when what is left is a row (a text COPY's
 * message always is), 0 when it is the trailer (not a row), -1 when the
 * stream does not have the binary format's shape.
 */
int pgcopy_out_row(struct pgcopy_out *s, const char **msg, size_t *len);

/*
 * Walks the binary tuples of buf[*pos..len), *pos at the start of one,
 * and leaves *pos at the end of the last whole one (where the first that
 * is cut short, or len, starts).  Each tuple costs its field count, not
 * its bytes, so walking again from a tuple cut short is cheap.  0, or -1
 * when a tuple is malformed (a field count below 0, the trailer among
 * them, or a length below -1): *pos is then at its start.
 */
int pgcopy_rows_end(const char *buf, size_t len, size_t *pos);

#endif
