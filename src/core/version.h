/*
 * version: migration version strings (core: the migrate module orders
 * migrations by it, backup names a snapshot's revision by it).
 *
 * A version is the leading run of digits, dots and underscores-between-digits
 * of a file name ("20260223_143052", "0004", "2.10.0").  Versions compare
 * numerically segment by segment, so 2.10.0 sorts after 2.9.0 and "0004"
 * equals "4".
 */
#ifndef SM_VERSION_H
#define SM_VERSION_H

#include <stddef.h>

/* Length of the version prefix of name (0 if name does not start with a digit). */
size_t ver_prefix_len(const char *name);
/* <0, 0, >0 like strcmp, numerically by segment. */
int ver_cmp(const char *a, const char *b);
/* 1 if s is a well-formed version (the whole string is a version prefix). */
int ver_valid(const char *s);

#endif
