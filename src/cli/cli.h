/*
 * cli: what the command handlers share.
 *
 * main.c parses the command line into the one global options struct (`opt`),
 * resolves configuration (flag > environment > config file > default), finds
 * the command in the table and calls its handler with a cmd_ctx.  Handlers
 * print through the helpers below and return an exit code from the table in
 * exitcode.h; they never call exit().
 */
#ifndef SM_CLI_H
#define SM_CLI_H

#include <cjson/cJSON.h>
#include <signal.h>
#include <stddef.h>

#include "error.h"
#include "strbuf.h"
#include "url.h"

/* Exit codes: the contract's table, the only place they are defined. */
enum exit_code {
	EXIT_OK = 0,
	EXIT_ERROR = 1,       /* error; the database was not changed by this run */
	EXIT_USAGE = 2,
	EXIT_PENDING = 3,     /* check: pending migrations */
	EXIT_BLOCKED = 4,     /* a safety check or lint rule blocked the run */
	EXIT_RESTORED = 5,    /* migration failed, database restored */
	EXIT_RESTORE_FAILED = 6,
	EXIT_PROBLEMS = 7,    /* verification or validation found problems */
	/* the run failed, other sessions had written since the snapshot, and
	 * --on-concurrent-writes stop left the database as it was (not restored) */
	EXIT_CONCURRENT_WRITES = 8,
	EXIT_INTERRUPTED = 130,
};

struct options {
	/* global */
	char *database_url;
	char **migrations_dirs;
	size_t n_migrations_dirs;
	char *backup_dir;
	char *config;
	int verbose;
	int quiet;
	int json;
	int yes;
	int force;            /* --force: --yes, and restore accepts another database's snapshot */
	int no_progress;
	long lock_timeout_ms;      /* --lock-timeout: waiting for the migration lock */
	long stmt_lock_timeout_ms; /* --statement-lock-timeout: lock_timeout for statements */
	long statement_timeout_ms; /* --statement-timeout */
	int allow_out_of_order;
	char *lint_ignore; /* --ignore RULE[:VERSION] (repeatable) and config lint_ignore,
			    * comma-separated */

	/* command options (each command documents which it takes) */
	char *name;           /* backup --name */
	char *to_url;         /* restore --to */
	int no_safety_backup; /* restore */
	char *keep;           /* prune --keep */
	char *output;         /* schema --output, backup --output (FILE or - for stdout) */
	int stdout_taken;     /* backup --output -: stdout carries the snapshot, so
			       * the --json object goes to stderr */
	char *compression_level; /* --compression-level (text; resolved into level) */
	int level, has_level; /* resolved zstd level (flag > config), has_level if set */
	char *sha256;         /* restore, verify: the stream's expected SHA-256 */
	char *sha256_file;    /* restore, verify: read it from a sha256sum-format file */
	char *keep_within;    /* prune --keep-within DURATION */
	char *keep_daily;     /* prune --keep-daily N */
	char *start, *end;    /* sql */
	char *expected;       /* validate --expected */
	char *from_schema;    /* create --from-schema */
	int dry_run;          /* safe-migrate */
	int no_backup;        /* safe-migrate, run */
	int validate;         /* run --validate */
	int runs;             /* history --runs */
	int discard;          /* recover --discard */
	char *scratch_url;    /* roundtrip --url */
	int keep_going;       /* roundtrip --keep-going */
	char *rehearse_url;   /* safe-migrate --rehearse-url */
	char *max_blocking;   /* safe-migrate --max-blocking DURATION */
	char *max_rewrite;    /* safe-migrate --max-rewrite SIZE */
	char *report;         /* safe-migrate --dry-run --report FILE.html */
	long long max_blocking_ms;    /* resolved; -1: no gate */
	long long max_rewrite_bytes;  /* resolved; -1: no gate */
	int no_owner;         /* backup --no-owner (PostgreSQL) */
	int no_tablespaces;   /* backup --no-tablespaces (PostgreSQL) */
	int no_check;         /* backup --no-check (SQLite: no quick_check beside the copy) */
	int check_again;      /* restore --check: check the staged copy even if checked at backup */
	int accept_recorded_problems; /* restore: give back the problems the snapshot recorded */
	int jobs;             /* backup --jobs, restore --jobs, verify --jobs */
	char *restore_to;     /* verify --restore-to */
	int migrate;          /* init --migrate */
	int require_encryption; /* --require-encryption: read only snapshots of our keys */
	char *stamp_from;     /* stamp --from TOOL */
	char *on_concurrent_writes; /* safe-migrate, run, recover: "restore" or "stop" */
	char *encrypt_key;    /* --encrypt-key FILE: secret or X25519 private key */
	char *encrypt_to;     /* --encrypt-to PUBKEY: X25519 public key */
	char *encrypt_cipher; /* --encrypt-cipher NAME */
	char *public_key;     /* keygen --public FILE */
};

extern struct options opt;

/* What a command needs resolved before its handler runs. */
#define NEED_DB          0x1 /* a database URL (ctx->url) */
#define NEED_MIGRATIONS  0x2 /* migration directories (ctx->mig_dirs) */
#define NEED_BACKUP_DIR  0x4 /* a backup directory (ctx->backup_dir) */
#define OPTIONAL_DB      0x8 /* use a URL if one is configured */
#define USES_SNAPSHOTS   0x10 /* writes or reads snapshots: the encryption keys apply */
#define RESTORES_OWN     0x20 /* may restore a snapshot it took itself */

struct command;

struct cmd_ctx {
	const struct command *cmd;
	int argc;           /* positional arguments after the command name */
	char **argv;
	struct db_url url;  /* when NEED_DB (or OPTIONAL_DB and configured) */
	int have_url;
	char **mig_dirs;    /* borrowed */
	size_t n_mig_dirs;
	char *backup_dir;   /* borrowed */
	char *config_dir;   /* directory of the config file used, or NULL */
	const char *config_path; /* the config file used, or NULL (borrowed) */
	cJSON *json;        /* the one output object when --json, else NULL */
	struct sm_error err;
};

struct command {
	const char *name;
	int (*fn)(struct cmd_ctx *ctx);
	unsigned needs;
	const char *usage;   /* "upgrade [TARGET]" */
	const char *summary; /* one line */
	const char *help;    /* further paragraphs, or NULL */
};

/* Output: human text on stdout (suppressed with --json), messages on stderr. */
void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));    /* unless -q */
void verbose(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* with -v */
void warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Each line of text (restore_opts.notes, say) as a warning. */
void warning_lines(const char *text);
void error_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Appends "safe-migrate" and the global options that make a command an
 * operator types act where this one did: -c (the config file used), -d
 * (the database, a SQLite path absolute; a password shows as ***), -b (the backup directory,
 * absolute: the journal and the snapshots are there), --encrypt-key (the
 * key file given); each quoted for the shell.  The caller appends the
 * command and its arguments (sb_add_shell_word). */
void cli_hand_command(struct strbuf *sb, const struct cmd_ctx *ctx);
/* Prints err as "safe-migrate: error: ..." and returns the exit code for its kind. */
int report_error(struct cmd_ctx *ctx, const struct sm_error *err);
int exit_code_for(enum err_kind kind);
/* 1 when colour may be used on stream (a TTY and NO_COLOR unset). */
int use_color(int fd);
/* Asks a yes/no question on the terminal; refuses (returns 0, sets err) when
 * stdin is not a TTY and --yes was not given. */
int confirm(const char *question, struct sm_error *err);

/* Handlers, one file per group. */
int cmd_init(struct cmd_ctx *ctx);
int cmd_create(struct cmd_ctx *ctx);
int cmd_upgrade(struct cmd_ctx *ctx);
int cmd_downgrade(struct cmd_ctx *ctx);
int cmd_current(struct cmd_ctx *ctx);
int cmd_history(struct cmd_ctx *ctx);
int cmd_check(struct cmd_ctx *ctx);
int cmd_stamp(struct cmd_ctx *ctx);
int cmd_sql(struct cmd_ctx *ctx);

int cmd_backup(struct cmd_ctx *ctx);
int cmd_list_backups(struct cmd_ctx *ctx);
int cmd_verify(struct cmd_ctx *ctx);
int cmd_restore(struct cmd_ctx *ctx);
int cmd_prune(struct cmd_ctx *ctx);
int cmd_drop_tables(struct cmd_ctx *ctx);

int cmd_schema(struct cmd_ctx *ctx);
int cmd_validate(struct cmd_ctx *ctx);
int cmd_lint(struct cmd_ctx *ctx);
int cmd_safety_check(struct cmd_ctx *ctx);

int cmd_safe_migrate(struct cmd_ctx *ctx);
int cmd_run(struct cmd_ctx *ctx);
int cmd_recover(struct cmd_ctx *ctx);
int cmd_roundtrip(struct cmd_ctx *ctx);
int cmd_keygen(struct cmd_ctx *ctx);

/* cmd_crypt.c: loads the key file (secret or private key; may be NULL) and
 * the public key file to encrypt to (may be NULL), the cipher of new
 * snapshots (NULL: the default) and whether only snapshots encrypted with a
 * configured key are read (require: --require-encryption), all resolved flag >
 * environment > config by main.c, into the snapshot keyring, for commands
 * marked USES_SNAPSHOTS (others refuse the flags). */
int crypt_setup_keys(const struct cmd_ctx *ctx, const char *key, const char *to,
		     const char *cipher, int require, struct sm_error *err);
/* verify: says whether an encrypted snapshot's entries were authenticated
 * (manifest: the verified snapshot's; may be NULL). */
void crypt_verify_report(struct cmd_ctx *ctx, const cJSON *manifest);

/* Set by the SIGINT/SIGTERM handler installed for long operations. */
extern volatile sig_atomic_t cli_interrupted;

#endif
