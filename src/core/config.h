/*
 * config: the [safe-migrate] section of an INI file, read with libinih.
 *
 * The CLI layers flag > environment > config file > default; this module
 * only reads the file.  Relative paths in it are resolved against the config
 * file's directory here, so callers always get usable paths.
 */
#ifndef SM_CONFIG_H
#define SM_CONFIG_H

#include <stddef.h>

#include "error.h"

struct cfg_file {
	char *path;            /* the file read */
	char *dir;             /* its directory */
	char *database_url;    /* raw text; relative sqlite paths still relative to dir */
	char **migrations_dirs;/* resolved against dir */
	size_t n_migrations_dirs;
	char *backup_dir;      /* resolved against dir */
	char *lock_timeout;
	char *statement_timeout;
	char *migration_lock_timeout;
	char *expected_schema; /* resolved against dir */
	char *max_blocking;    /* dry-run gate: a duration */
	char *max_rewrite;     /* dry-run gate: a size */
	char *lint_ignore;     /* "RULE[:VERSION], ..." */
	char *encryption_key_file; /* resolved against dir */
	char *encrypt_to;          /* resolved against dir */
	char *encryption_cipher;   /* "aes-256-gcm" or "chacha20-poly1305" */
	char *compression_level; /* zstd level of snapshots, as text */
	char *require_encryption; /* a boolean, as text (cfg_parse_bool) */
};

/* Reads path.  A missing file is an error (the caller decides whether to try). */
int cfg_load(const char *path, struct cfg_file *out, struct sm_error *err);
void cfg_release(struct cfg_file *c);
/* A boolean setting's text, from the config file or the environment:
 * true/yes/on/1 or false/no/off/0 (any case).  0, or -1 for anything else. */
int cfg_parse_bool(const char *text, int *out);

#endif
