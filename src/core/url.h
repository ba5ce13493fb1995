/*
 * url: database URLs as the contract defines them.
 *
 *   sqlite:///relative.db  sqlite:////abs/path.db  (SQLAlchemy's convention)
 *   postgresql://user:pass@host:port/db?sslmode=require, postgres://...,
 *   postgresql+psycopg2://... (the +driver suffix is accepted and ignored),
 *   or a libpq keyword/value conninfo string ("host=... dbname=...").
 *
 * The parsed form keeps the secret-bearing string (conninfo) apart from the
 * printable one (redacted), so that no caller needs to know how to hide a
 * password: print `redacted`, hand `conninfo` to libpq, never the reverse.
 */
#ifndef SM_URL_H
#define SM_URL_H

#include "error.h"

struct db_url {
	char *scheme;    /* "sqlite" or "postgresql"; selects the engine */
	char *path;      /* sqlite: file path, relative to base_dir if given */
	char *conninfo;  /* postgresql: what libpq gets; may hold a password, never print */
	char *redacted;  /* printable form, password replaced by "***" */
};

#define DB_URL_INIT { NULL, NULL, NULL, NULL }

/*
 * Parses text.  base_dir, if not NULL, is prepended to relative SQLite paths
 * (config-file URLs are relative to the config file's directory).
 * Returns 0, or -1 with ERR_USAGE and a message that never contains the password.
 */
int url_parse(const char *text, const char *base_dir, struct db_url *out, struct sm_error *err);
void url_release(struct db_url *u);
/* Copies src into dst (dst must be released or fresh). */
void url_copy(struct db_url *dst, const struct db_url *src);
/* Returns a newly allocated copy of any URL-ish text with passwords masked. */
char *url_redact(const char *text);
/* u's redacted form, with a SQLite file's path made absolute: the URL a
 * command printed for an operator to paste takes, wherever it is run
 * from.  Caller frees. */
char *url_redacted_absolute(const struct db_url *u);

#endif
