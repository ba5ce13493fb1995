/*
 * main: the safe-migrate entry point.
 *
 * Parses the command line into `opt` (the only global besides verbosity,
 * which lives in it), resolves configuration with the precedence
 * flag > environment > config file > default, looks the command up in
 * commands[] (as git's builtins are) and runs it.  Only this layer prints
 * and chooses exit codes.
 */
#include <archive.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "child.h"
#include "cli.h"
#include "config.h"
#include "fsutil.h"
#include "impact.h"
#include "snapshot_crypt.h"
#include "strbuf.h"
#include "xalloc.h"

struct options opt;
volatile sig_atomic_t cli_interrupted;

static const struct command commands[] = {
	{ "init", cmd_init, OPTIONAL_DB,
	  "init [URL] [--migrate]",
	  "create safe-migrate.ini, the migrations directory and the version table",
	  "With --migrate, upgrades to head afterwards." },
	{ "create", cmd_create, NEED_MIGRATIONS | OPTIONAL_DB,
	  "create MESSAGE [--from-schema FILE]",
	  "write a new migration file with up and down sections", NULL },
	{ "upgrade", cmd_upgrade, NEED_DB | NEED_MIGRATIONS,
	  "upgrade [TARGET] [--allow-out-of-order]",
	  "apply pending migrations up to head (default), a version or +N", NULL },
	{ "downgrade", cmd_downgrade, NEED_DB | NEED_MIGRATIONS,
	  "downgrade TARGET",
	  "revert migrations to -N, a version or base", NULL },
	{ "current", cmd_current, NEED_DB | NEED_MIGRATIONS,
	  "current", "print the current version and how many are pending", NULL },
	{ "history", cmd_history, NEED_DB | NEED_MIGRATIONS,
	  "history [--runs]",
	  "list every migration: applied or pending, when, how long", NULL },
	{ "check", cmd_check, NEED_DB | NEED_MIGRATIONS,
	  "check", "exit 0 if the database is at head, 3 if migrations are pending", NULL },
	{ "stamp", cmd_stamp, NEED_DB | NEED_MIGRATIONS,
	  "stamp TARGET", "record TARGET as current without running SQL",
	  "Also records the current checksum of edited applied files up to TARGET." },
	{ "sql", cmd_sql, NEED_MIGRATIONS | OPTIONAL_DB,
	  "sql [--start A] [--end B]",
	  "print the SQL script of an upgrade range without touching the database", NULL },
	{ "backup", cmd_backup, NEED_DB | NEED_BACKUP_DIR | USES_SNAPSHOTS,
	  "backup [--name NAME | --output FILE|-] [--compression-level N] [--no-owner] "
	  "[--no-tablespaces] [--jobs N] [--no-check]",
	  "take a snapshot and print its path",
	  "--output FILE writes the snapshot to FILE (a new file, published with its\n"
	  "FILE.sha256 sidecar, or a FIFO); --output - writes it to stdout (for aws s3 cp -,\n"
	  "rclone rcat, ssh), with the SHA-256 and size on stderr (or in --json, also on\n"
	  "stderr).  --compression-level N: zstd's level, negative ones included\n"
	  "(default -1; config compression_level); in an encrypted snapshot it is the\n"
	  "level of the sealed records (default 1).\n"
	  "PostgreSQL: --no-owner leaves out who owns each object (the restoring role\n"
	  "will); --no-tablespaces leaves out the tablespaces of tables and indexes (they\n"
	  "are restored into the database's default one).  --jobs N (1 to 64) copies the\n"
	  "rows over N more connections, all reading one exported snapshot, largest\n"
	  "tables first and big tables in ctid ranges; the result is one snapshot file\n"
	  "as without --jobs (SQLite ignores --jobs).\n"
	  "SQLite: PRAGMA quick_check runs beside the copy, on the very pages copied, and\n"
	  "the snapshot records its outcome (a problem is a warning: the snapshot is kept\n"
	  "as the database is); restoring a checked snapshot skips the check, which is most\n"
	  "of a restore's time on indexed data.  --no-check leaves it out (the restore then\n"
	  "checks)." },
	{ "list-backups", cmd_list_backups, NEED_BACKUP_DIR,
	  "list-backups", "list snapshots: name, created, size, engine, revision", NULL },
	{ "verify", cmd_verify, USES_SNAPSHOTS,
	  "verify SNAPSHOT|- [--sha256 HEX | --sha256-file F] [--restore-to URL [--jobs N]]",
	  "check a snapshot's structure and every checksum",
	  "--restore-to URL also restores the snapshot into URL, an empty scratch database\n"
	  "(or a new SQLite file), and compares the result with the schema fingerprint and\n"
	  "the row counts the snapshot recorded: a snapshot that cannot be restored, or\n"
	  "restores differently, is reported like a damaged one (exit 7).\n"
	  "verify - reads the snapshot from stdin; --sha256 HEX or --sha256-file F (a\n"
	  "sha256sum line) gives the whole stream's expected SHA-256." },
	{ "restore", cmd_restore, OPTIONAL_DB | NEED_BACKUP_DIR | USES_SNAPSHOTS,
	  "restore SNAPSHOT|- [--to URL [--jobs N]] [--sha256 HEX | --sha256-file F] "
	  "[--no-safety-backup] [--force] [--check] [--accept-recorded-problems]",
	  "verify a snapshot, take a safety snapshot, and restore",
	  "In place, the restore is one transaction: any failure, a snapshot found\n"
	  "damaged while loading included, leaves the database as it was.  PostgreSQL:\n"
	  "locks held by other sessions are waited for at most --lock-timeout (60s).\n"
	  "--to URL restores into another database (a scratch or staging one).\n"
	  "--jobs N (PostgreSQL, with --to only, 1 to 64) loads with N connections in\n"
	  "parallel, like pg_restore -j N.  A parallel restore is NOT atomic: if it fails,\n"
	  "the target database is left incomplete (drop it, or restore again).\n"
	  "In place (no --to, or --to naming the configured database), a snapshot taken\n"
	  "from another database (by identity: SQLite device and inode, PostgreSQL\n"
	  "system identifier and database OID) is refused unless --force (which also\n"
	  "implies --yes).\n"
	  "restore - reads the snapshot from stdin (needs --yes), once: SQLite stages the\n"
	  "file before moving it into place, PostgreSQL loads in its one transaction.  The\n"
	  "stream's SHA-256 (--sha256 HEX or --sha256-file F) is checked before anything\n"
	  "commits; a mismatch leaves the target as it was.\n"
	  "SQLite: the staged copy is checked with PRAGMA quick_check unless the backup\n"
	  "checked these very pages (the manifest says so); --check checks it anyway.\n"
	  "A snapshot whose backup found problems (backup warned: \"a restore gives back\n"
	  "these problems\") is refused unless --accept-recorded-problems: the staged copy\n"
	  "is checked and restored, problems included, only if it fails exactly as the\n"
	  "manifest recorded; any other outcome is refused (exit 7)." },
	{ "prune", cmd_prune, NEED_BACKUP_DIR,
	  "prune [--keep N] [--keep-within DURATION] [--keep-daily N]",
	  "delete snapshots outside the retention rules",
	  "Keeps a snapshot if any rule keeps it: --keep N the newest N, --keep-within\n"
	  "DURATION (e.g. 36h, 7d, 2w) those created within DURATION of now, --keep-daily N\n"
	  "the newest of each of the last N days (UTC) that have one.  Never deletes the\n"
	  "newest snapshot that passes verification, nor the snapshot of a run that has\n"
	  "not finished (its journal), nor a damaged snapshot." },
	{ "drop-tables", cmd_drop_tables, NEED_DB | NEED_BACKUP_DIR | USES_SNAPSHOTS,
	  "drop-tables", "drop every user table after a safety snapshot", NULL },
	{ "schema", cmd_schema, NEED_DB,
	  "schema [--output FILE]", "print the live schema in canonical text form", NULL },
	{ "validate", cmd_validate, NEED_DB,
	  "validate [--expected FILE]",
	  "check the live schema and the database's integrity", NULL },
	{ "lint", cmd_lint, NEED_MIGRATIONS | OPTIONAL_DB,
	  "lint [FILE...] [--ignore RULE[:VERSION]]", "lint migrations for dangerous operations",
	  "Without FILE: the pending migrations' up sections, then their down sections\n"
	  "(findings in a down section say so).  --ignore silences a rule everywhere, or\n"
	  "RULE:VERSION for one migration (repeatable; config key lint_ignore)." },
	{ "safety-check", cmd_safety_check, NEED_DB | NEED_MIGRATIONS | NEED_BACKUP_DIR,
	  "safety-check [--ignore RULE[:VERSION]]", "run every pre-flight check", NULL },
	{ "safe-migrate", cmd_safe_migrate,
	  NEED_DB | NEED_MIGRATIONS | NEED_BACKUP_DIR | USES_SNAPSHOTS | RESTORES_OWN,
	  "safe-migrate [TARGET] [--dry-run [--max-blocking DUR] [--max-rewrite SIZE] [--report FILE.html]] [--no-backup] [--on-concurrent-writes restore|stop]",
	  "checks, snapshot, apply, validate; restore automatically on failure",
	  "A migration that fails inside its own transaction with nothing committed\n"
	  "before it changed nothing: no restore, exit 1.  If other sessions wrote\n"
	  "after the snapshot, the restore first blocks writes and saves the failed\n"
	  "state as a snapshot of its own (named in the output), then restores;\n"
	  "--on-concurrent-writes stop leaves the database as it is instead (exit 8).\n"
	  "The restore waits for table locks at most --lock-timeout; exit 6 then names\n"
	  "the sessions holding them.  Exit codes: 0 applied, 1 nothing changed,\n"
	  "4 blocked, 5 restored, 6 restore failed, 8 not restored (concurrent writes),\n"
	  "130 interrupted." },
	{ "run", cmd_run, NEED_DB | NEED_BACKUP_DIR | USES_SNAPSHOTS | RESTORES_OWN,
	  "run [--no-backup] [--validate] [--on-concurrent-writes restore|stop] -- COMMAND [ARG...]",
	  "the safe-migrate pipeline around another tool's migration command", NULL },
	{ "recover", cmd_recover, NEED_DB | NEED_BACKUP_DIR | USES_SNAPSHOTS | RESTORES_OWN,
	  "recover [--discard] [--on-concurrent-writes restore|stop]",
	  "finish after a run that was killed (or whose restore failed, or that stopped on writes)",
	  "Acts on this database's run journal only (BACKUP_DIR/safe-migrate-ID.journal,\n"
	  "ID from the database's identity).  Restores the run's snapshot if its SHA-256\n"
	  "is still the journaled one; --discard accepts the database as it is.  Waits up\n"
	  "to --lock-timeout for the migration lock and for a killed 'run -- COMMAND''s\n"
	  "process group to end, and refuses while it runs.\n"
	  "The state as it is (other sessions' writes included) is saved as a snapshot\n"
	  "of its own before the restore; with --on-concurrent-writes stop, recover\n"
	  "does not restore (exit 8)." },
	{ "roundtrip", cmd_roundtrip, NEED_MIGRATIONS | OPTIONAL_DB,
	  "roundtrip [--url SCRATCH] [--keep-going]",
	  "apply, revert and re-apply each migration on a scratch database", NULL },
	{ "keygen", cmd_keygen, 0,
	  "keygen --output FILE [--public PUBFILE]",
	  "write a new snapshot encryption key",
	  "Without --public: a secret key (64 hex digits) for --encrypt-key.  With\n"
	  "--public: an X25519 private key (PEM) in FILE, for --encrypt-key when\n"
	  "restoring, and its public key in PUBFILE, for --encrypt-to.  FILE is created\n"
	  "with mode 0600 and never replaces a file.  Prints the key id that snapshots\n"
	  "record (docs/encryption.md)." },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

enum arg_kind { A_FLAG, A_STR, A_MS, A_INT, A_DIRS, A_LIST };

struct opt_spec {
	const char *lng;
	char shrt;
	enum arg_kind kind;
	void *slot;
	const char *cmds; /* NULL: global; else a space-separated list of commands */
};

static const struct opt_spec specs[] = {
	{ "database-url", 'd', A_STR, &opt.database_url, NULL },
	{ "migrations-dir", 'm', A_DIRS, NULL, NULL },
	{ "backup-dir", 'b', A_STR, &opt.backup_dir, NULL },
	{ "config", 'c', A_STR, &opt.config, NULL },
	{ "verbose", 'v', A_FLAG, &opt.verbose, NULL },
	{ "quiet", 'q', A_FLAG, &opt.quiet, NULL },
	{ "json", 0, A_FLAG, &opt.json, NULL },
	{ "yes", 'y', A_FLAG, &opt.yes, NULL },
	{ "force", 0, A_FLAG, &opt.force, NULL },
	{ "no-progress", 0, A_FLAG, &opt.no_progress, NULL },
	{ "lock-timeout", 0, A_MS, &opt.lock_timeout_ms, NULL },
	{ "statement-lock-timeout", 0, A_MS, &opt.stmt_lock_timeout_ms, NULL },
	{ "statement-timeout", 0, A_MS, &opt.statement_timeout_ms, NULL },
	{ "allow-out-of-order", 0, A_FLAG, &opt.allow_out_of_order, NULL },
	{ "ignore", 0, A_LIST, &opt.lint_ignore, "lint safety-check safe-migrate run" },
	{ "name", 0, A_STR, &opt.name, "backup" },
	{ "to", 0, A_STR, &opt.to_url, "restore" },
	{ "no-safety-backup", 0, A_FLAG, &opt.no_safety_backup, "restore" },
	{ "jobs", 'j', A_INT, &opt.jobs, "backup restore verify" },
	{ "restore-to", 0, A_STR, &opt.restore_to, "verify" },
	{ "keep", 0, A_STR, &opt.keep, "prune" },
	{ "output", 'o', A_STR, &opt.output, "schema backup keygen" },
	{ "public", 0, A_STR, &opt.public_key, "keygen" },
	{ "encrypt-key", 0, A_STR, &opt.encrypt_key, NULL },
	{ "decrypt-key", 0, A_STR, &opt.encrypt_key, NULL },
	{ "encrypt-to", 0, A_STR, &opt.encrypt_to, NULL },
	{ "encrypt-cipher", 0, A_STR, &opt.encrypt_cipher, NULL },
	{ "require-encryption", 0, A_FLAG, &opt.require_encryption, NULL },
	{ "keep-within", 0, A_STR, &opt.keep_within, "prune" },
	{ "keep-daily", 0, A_STR, &opt.keep_daily, "prune" },
	{ "compression-level", 0, A_STR, &opt.compression_level,
	  "backup safe-migrate run restore drop-tables" },
	{ "sha256", 0, A_STR, &opt.sha256, "restore verify" },
	{ "sha256-file", 0, A_STR, &opt.sha256_file, "restore verify" },
	{ "start", 0, A_STR, &opt.start, "sql" },
	{ "end", 0, A_STR, &opt.end, "sql" },
	{ "expected", 0, A_STR, &opt.expected, "validate safe-migrate run" },
	{ "from-schema", 0, A_STR, &opt.from_schema, "create" },
	{ "dry-run", 'n', A_FLAG, &opt.dry_run, "safe-migrate" },
	{ "no-backup", 0, A_FLAG, &opt.no_backup, "safe-migrate run" },
	{ "validate", 0, A_FLAG, &opt.validate, "run" },
	{ "runs", 0, A_FLAG, &opt.runs, "history" },
	{ "discard", 0, A_FLAG, &opt.discard, "recover" },
	{ "url", 0, A_STR, &opt.scratch_url, "roundtrip" },
	{ "keep-going", 'k', A_FLAG, &opt.keep_going, "roundtrip" },
	{ "rehearse-url", 0, A_STR, &opt.rehearse_url, "safe-migrate" },
	{ "max-blocking", 0, A_STR, &opt.max_blocking, "safe-migrate" },
	{ "max-rewrite", 0, A_STR, &opt.max_rewrite, "safe-migrate" },
	{ "report", 0, A_STR, &opt.report, "safe-migrate" },
	{ "no-owner", 0, A_FLAG, &opt.no_owner, "backup" },
	{ "no-tablespaces", 0, A_FLAG, &opt.no_tablespaces, "backup" },
	{ "no-check", 0, A_FLAG, &opt.no_check, "backup" },
	{ "check", 0, A_FLAG, &opt.check_again, "restore" },
	{ "accept-recorded-problems", 0, A_FLAG, &opt.accept_recorded_problems, "restore" },
	{ "migrate", 0, A_FLAG, &opt.migrate, "init" },
	{ "from", 0, A_STR, &opt.stamp_from, "stamp" },
	{ "on-concurrent-writes", 0, A_STR, &opt.on_concurrent_writes, "safe-migrate run recover" },
};

#define N_SPECS (sizeof(specs) / sizeof(specs[0]))

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

static int spec_applies(const struct opt_spec *s, const struct command *cmd)
{
	const char *p;
	size_t n;

	if (!s->cmds)
		return 1;
	if (!cmd)
		return 0;
	n = strlen(cmd->name);
	for (p = s->cmds; (p = strstr(p, cmd->name)) != NULL; p += n)
		if ((p == s->cmds || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
			return 1;
	return 0;
}

/* Parses "60", "60s", "500ms", "2m", "2min" into milliseconds. */
static int parse_duration_ms(const char *text, long *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(text, &end);
	if (errno || end == text || v < 0 || v > 1e9)
		return -1;
	if (!*end || !strcmp(end, "s"))
		v *= 1000;
	else if (!strcmp(end, "ms"))
		;
	else if (!strcmp(end, "m") || !strcmp(end, "min"))
		v *= 60000;
	else
		return -1;
	*out = (long)v;
	return 0;
}

static size_t dirs_alloc;

static void add_migrations_dir(const char *d)
{
	ALLOC_GROW(opt.migrations_dirs, opt.n_migrations_dirs + 1, dirs_alloc);
	opt.migrations_dirs[opt.n_migrations_dirs++] = xstrdup(d);
}

static int set_option(const struct opt_spec *s, const char *value, struct sm_error *err)
{
	char *end;
	long v;

	switch (s->kind) {
	case A_FLAG:
		*(int *)s->slot = 1;
		break;
	case A_STR:
		free(*(char **)s->slot);
		*(char **)s->slot = xstrdup(value);
		break;
	case A_DIRS:
		add_migrations_dir(value);
		break;
	case A_LIST: {
		/* repeatable: the values add up, comma-separated */
		char **slot = s->slot;
		struct strbuf sb = STRBUF_INIT;

		if (*slot)
			sb_addf(&sb, "%s,", *slot);
		sb_adds(&sb, value);
		free(*slot);
		*slot = sb_detach(&sb);
		break;
	}
	case A_MS:
		if (parse_duration_ms(value, (long *)s->slot) < 0)
			return err_set(err, ERR_USAGE, "invalid duration '%s' for --%s (e.g. 60s, "
				       "500ms, 2min)", value, s->lng);
		break;
	case A_INT:
		errno = 0;
		v = strtol(value, &end, 10);
		if (errno || *end || end == value || v < 1 || v > 64)
			return err_set(err, ERR_USAGE, "invalid number '%s' for --%s (1 to 64)",
				       value, s->lng);
		*(int *)s->slot = (int)v;
		break;
	}
	return 0;
}

static int looks_like_number(const char *a)
{
	return a[0] == '-' && a[1] >= '0' && a[1] <= '9';
}

/* Parses argv.  Options may come before or after the command; after "--"
 * everything is positional (for `run`).  Fills *cmd_name, positional[]. */
static int parse_args(int argc, char **argv, const struct command **cmd, const char **cmd_name,
		      char ***pos, int *npos, int *want_help, int *want_version,
		      struct sm_error *err)
{
	int i;

	*pos = xcalloc((size_t)argc + 1, sizeof(char *));
	*npos = 0;
	for (i = 1; i < argc; i++) {
		char *a = argv[i];
		const struct opt_spec *s = NULL;
		const char *value = NULL;

		if (!strcmp(a, "--")) {
			for (i++; i < argc; i++)
				(*pos)[(*npos)++] = argv[i];
			break;
		}
		if (a[0] != '-' || !a[1] || looks_like_number(a)) {
			if (!*cmd_name) {
				*cmd_name = a;
				*cmd = find_command(a);
			} else {
				(*pos)[(*npos)++] = a;
			}
			continue;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			*want_help = 1;
			continue;
		}
		if (!strcmp(a, "--version")) {
			*want_version = 1;
			continue;
		}
		if (a[1] == '-') {
			const char *name = a + 2;
			const char *eq = strchr(name, '=');
			size_t n = eq ? (size_t)(eq - name) : strlen(name);

			for (size_t k = 0; k < N_SPECS && !s; k++)
				if (strlen(specs[k].lng) == n && !strncmp(specs[k].lng, name, n))
					s = &specs[k];
			if (!s)
				return err_set(err, ERR_USAGE, "unknown option '%.*s'", (int)(n + 2), a);
			if (eq)
				value = eq + 1;
		} else {
			for (size_t k = 0; k < N_SPECS && !s; k++)
				if (specs[k].shrt == a[1])
					s = &specs[k];
			if (!s)
				return err_set(err, ERR_USAGE, "unknown option '-%c'", a[1]);
			if (a[2]) {
				if (s->kind == A_FLAG) {
					/* bundled flags: -vy */
					for (const char *c = a + 1; *c; c++) {
						const struct opt_spec *f = NULL;
						for (size_t k = 0; k < N_SPECS && !f; k++)
							if (specs[k].shrt == *c && specs[k].kind == A_FLAG)
								f = &specs[k];
						if (!f)
							return err_set(err, ERR_USAGE,
								       "unknown option '-%c' in '%s'", *c, a);
						*(int *)f->slot = 1;
					}
					continue;
				}
				value = a + 2;
			}
		}
		if (!spec_applies(s, *cmd))
			return err_set(err, ERR_USAGE, "option '--%s' does not apply to %s%s%s", s->lng,
				       *cmd ? "'" : "", *cmd ? (*cmd)->name : "this position",
				       *cmd ? "'" : "");
		if (s->kind == A_FLAG) {
			if (value)
				return err_set(err, ERR_USAGE, "option '--%s' takes no value", s->lng);
		} else if (!value) {
			if (i + 1 >= argc)
				return err_set(err, ERR_USAGE, "option '--%s' needs a value", s->lng);
			value = argv[++i];
		}
		if (set_option(s, value ? value : "", err) < 0)
			return -1;
	}
	return 0;
}

static void print_usage(FILE *f)
{
	fprintf(f, "usage: safe-migrate [GLOBAL OPTIONS] COMMAND [ARGS]\n\n"
		   "Safe schema migrations for SQLite and PostgreSQL: checks, a verified "
		   "snapshot,\nthe migration, validation, and an automatic restore on failure.\n\n"
		   "Commands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nGlobal options:\n"
		   "  -d, --database-url URL   sqlite:///FILE or postgresql://USER@HOST/DB\n"
		   "                           (env SAFE_MIGRATE_DATABASE_URL, DATABASE_URL)\n"
		   "  -m, --migrations-dir DIR migrations directory, repeatable (default: migrations)\n"
		   "  -b, --backup-dir DIR     snapshot directory (default: data/backups)\n"
		   "  -c, --config FILE        config file (default: ./safe-migrate.ini if present)\n"
		   "  -v, --verbose  -q, --quiet  --json  -y, --yes (--force)  --no-progress\n"
		   "  --lock-timeout DUR       wait for another run's migration lock (default 60s)\n"
		   "  --statement-lock-timeout DUR  lock_timeout for migration statements\n"
		   "  --statement-timeout DUR  statement_timeout for migration statements\n"
		   "  --allow-out-of-order     apply pending migrations older than the newest applied\n"
		   "  --encrypt-key FILE       encrypt snapshots with, and read them with, this key\n"
		   "                           (env SAFE_MIGRATE_ENCRYPTION_KEY_FILE)\n"
		   "  --encrypt-to PUBKEY      encrypt new snapshots for this X25519 public key\n"
		   "                           (env SAFE_MIGRATE_ENCRYPT_TO)\n"
		   "  --encrypt-cipher NAME    aes-256-gcm (default) or chacha20-poly1305\n"
		   "  --require-encryption     read only snapshots encrypted with a given key\n"
		   "                           (env SAFE_MIGRATE_REQUIRE_ENCRYPTION)\n"
		   "  --version  -h, --help\n\n"
		   "Run 'safe-migrate help COMMAND' for a command's options.\n");
}

static void print_command_help(const struct command *c)
{
	printf("usage: safe-migrate [GLOBAL OPTIONS] %s\n\n%s\n", c->usage, c->summary);
	if (c->help)
		printf("\n%s\n", c->help);
	printf("\nOptions for %s:\n", c->name);
	for (size_t k = 0; k < N_SPECS; k++) {
		if (!specs[k].cmds || !spec_applies(&specs[k], c))
			continue;
		printf("  --%s%s\n", specs[k].lng, specs[k].kind == A_FLAG ? "" : " VALUE");
	}
	printf("\nGlobal options: see 'safe-migrate --help'.\n");
}

static void print_version(void)
{
	printf("safe-migrate %s\n", SAFE_MIGRATE_VERSION);
	printf("  sqlite %s, libpq %d, zstd %s, %s,\n  %s, cJSON %s\n", sqlite3_libversion(),
	       PQlibVersion(), ZSTD_versionString(), archive_version_details(),
	       OpenSSL_version(OPENSSL_VERSION), cJSON_Version());
}

static const char *env_nonempty(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

/* The dry run's impact gates (--max-blocking, --max-rewrite, or the config's
 * max_blocking, max_rewrite); -1 when not set. */
static int resolve_gates(const struct cfg_file *cfg, int have_cfg, struct sm_error *err)
{
	const char *mb = opt.max_blocking ? opt.max_blocking : have_cfg ? cfg->max_blocking : NULL;
	const char *mr = opt.max_rewrite ? opt.max_rewrite : have_cfg ? cfg->max_rewrite : NULL;
	long ms;

	opt.max_blocking_ms = -1;
	opt.max_rewrite_bytes = -1;
	if (mb) {
		if (parse_duration_ms(mb, &ms) < 0)
			return err_set(err, ERR_USAGE, "invalid duration '%s' for max-blocking (e.g. "
				       "500ms, 2s)", mb);
		opt.max_blocking_ms = ms;
	}
	if (mr && impact_parse_size(mr, &opt.max_rewrite_bytes) < 0)
		return err_set(err, ERR_USAGE, "invalid size '%s' for max-rewrite (e.g. 100MB, "
			       "512kB)", mr);
	return 0;
}

/* The snapshots' zstd level (--compression-level, or the config's
 * compression_level): any level zstd has, negative ones included. */
static int resolve_level(const struct cfg_file *cfg, int have_cfg, struct sm_error *err)
{
	const char *text = opt.compression_level ? opt.compression_level :
			   have_cfg ? cfg->compression_level : NULL;
	char *end;
	long v;

	if (!text)
		return 0;
	errno = 0;
	v = strtol(text, &end, 10);
	if (errno || end == text || *end || v < ZSTD_minCLevel() || v > ZSTD_maxCLevel())
		return err_set(err, ERR_USAGE, "invalid compression level '%s': expected a whole "
			       "number from %d to %d (zstd's levels; negative ones are faster)", text,
			       ZSTD_minCLevel(), ZSTD_maxCLevel());
	opt.level = (int)v;
	opt.has_level = 1;
	return 0;
}

/* Resolves configuration into ctx (flag > env > config > default). */
static int resolve_config(struct cmd_ctx *ctx, struct cfg_file *cfg, int *have_cfg,
			  struct sm_error *err)
{
	const char *cfg_path = opt.config ? opt.config : env_nonempty("SAFE_MIGRATE_CONFIG");
	const char *url_text = NULL, *url_base = NULL;
	const struct command *c = ctx->cmd;

	*have_cfg = 0;
	if (!cfg_path && fs_exists("safe-migrate.ini"))
		cfg_path = "safe-migrate.ini";
	if (cfg_path) {
		if (cfg_load(cfg_path, cfg, err) < 0)
			return -1;
		*have_cfg = 1;
		ctx->config_dir = cfg->dir;
		ctx->config_path = cfg->path;
	}
	if (!opt.lock_timeout_ms && *have_cfg && cfg->migration_lock_timeout &&
	    parse_duration_ms(cfg->migration_lock_timeout, &opt.lock_timeout_ms) < 0)
		return err_set(err, ERR_USAGE, "invalid migration_lock_timeout '%s' in '%s'",
			       cfg->migration_lock_timeout, cfg->path);
	if (!opt.lock_timeout_ms)
		opt.lock_timeout_ms = 60000;
	if (!opt.stmt_lock_timeout_ms && *have_cfg && cfg->lock_timeout &&
	    parse_duration_ms(cfg->lock_timeout, &opt.stmt_lock_timeout_ms) < 0)
		return err_set(err, ERR_USAGE, "invalid lock_timeout '%s' in '%s'", cfg->lock_timeout,
			       cfg->path);
	if (!opt.statement_timeout_ms && *have_cfg && cfg->statement_timeout &&
	    parse_duration_ms(cfg->statement_timeout, &opt.statement_timeout_ms) < 0)
		return err_set(err, ERR_USAGE, "invalid statement_timeout '%s' in '%s'",
			       cfg->statement_timeout, cfg->path);
	if (!opt.expected && *have_cfg && cfg->expected_schema)
		opt.expected = xstrdup(cfg->expected_schema);
	if (resolve_gates(cfg, *have_cfg, err) < 0 || resolve_level(cfg, *have_cfg, err) < 0)
		return -1;
	if (*have_cfg && cfg->lint_ignore) {
		/* the config's ignores and the flags' add up */
		struct strbuf sb = STRBUF_INIT;

		sb_adds(&sb, cfg->lint_ignore);
		if (opt.lint_ignore)
			sb_addf(&sb, ",%s", opt.lint_ignore);
		free(opt.lint_ignore);
		opt.lint_ignore = sb_detach(&sb);
	}

	/* database URL */
	if (opt.database_url)
		url_text = opt.database_url;
	else if ((url_text = env_nonempty("SAFE_MIGRATE_DATABASE_URL")) ||
		 (url_text = env_nonempty("DATABASE_URL")))
		;
	else if (*have_cfg && cfg->database_url) {
		url_text = cfg->database_url;
		url_base = cfg->dir;
	}
	if (c->needs & (NEED_DB | OPTIONAL_DB)) {
		if (url_text) {
			if (url_parse(url_text, url_base, &ctx->url, err) < 0)
				return -1;
			ctx->have_url = 1;
		} else if (c->needs & NEED_DB) {
			return err_set(err, ERR_USAGE,
				       "no database configured: pass -d URL (e.g. -d sqlite:///app.db), "
				       "set SAFE_MIGRATE_DATABASE_URL or DATABASE_URL, or put "
				       "database_url in safe-migrate.ini ('safe-migrate init' writes one)");
		}
	}

	/* migrations directories */
	if (!opt.n_migrations_dirs) {
		const char *env = env_nonempty("SAFE_MIGRATE_MIGRATIONS_DIR");
		if (env) {
			char *copy = xstrdup(env), *save = NULL;
			for (char *t = strtok_r(copy, ":", &save); t; t = strtok_r(NULL, ":", &save))
				add_migrations_dir(t);
			free(copy);
		} else if (*have_cfg && cfg->n_migrations_dirs) {
			for (size_t i = 0; i < cfg->n_migrations_dirs; i++)
				add_migrations_dir(cfg->migrations_dirs[i]);
		} else {
			add_migrations_dir("migrations");
		}
	}
	ctx->mig_dirs = opt.migrations_dirs;
	ctx->n_mig_dirs = opt.n_migrations_dirs;

	/* backup directory */
	if (!opt.backup_dir) {
		const char *env = env_nonempty("SAFE_MIGRATE_BACKUP_DIR");
		if (env)
			opt.backup_dir = xstrdup(env);
		else if (*have_cfg && cfg->backup_dir)
			opt.backup_dir = xstrdup(cfg->backup_dir);
		else
			opt.backup_dir = xstrdup("data/backups");
	}
	ctx->backup_dir = opt.backup_dir;

	/* snapshot encryption: the key files */
	{
		const char *key = opt.encrypt_key, *to = opt.encrypt_to;
		const char *cipher = opt.encrypt_cipher;
		const char *rtext = NULL, *rwhere = NULL;
		int require = opt.require_encryption;

		if (!key && !(key = env_nonempty("SAFE_MIGRATE_ENCRYPTION_KEY_FILE")) && *have_cfg)
			key = cfg->encryption_key_file;
		if (!to && !(to = env_nonempty("SAFE_MIGRATE_ENCRYPT_TO")) && *have_cfg)
			to = cfg->encrypt_to;
		if (!cipher && !(cipher = env_nonempty("SAFE_MIGRATE_ENCRYPTION_CIPHER")) && *have_cfg)
			cipher = cfg->encryption_cipher;
		if (!require) {
			if ((rtext = env_nonempty("SAFE_MIGRATE_REQUIRE_ENCRYPTION")))
				rwhere = "SAFE_MIGRATE_REQUIRE_ENCRYPTION";
			else if (*have_cfg && (rtext = cfg->require_encryption))
				rwhere = cfg->path;
			if (rtext && cfg_parse_bool(rtext, &require) < 0)
				return err_set(err, ERR_USAGE, "invalid require_encryption '%s' in '%s': "
					       "expected true or false", rtext, rwhere);
		}
		return crypt_setup_keys(ctx, key, to, cipher, require, err);
	}
}

static void free_options(char **pos)
{
	free(pos);
	free(opt.database_url);
	for (size_t i = 0; i < opt.n_migrations_dirs; i++)
		free(opt.migrations_dirs[i]);
	free(opt.migrations_dirs);
	free(opt.backup_dir);
	free(opt.config);
	free(opt.name);
	free(opt.to_url);
	free(opt.restore_to);
	free(opt.on_concurrent_writes);
	free(opt.keep);
	free(opt.keep_within);
	free(opt.keep_daily);
	free(opt.output);
	free(opt.compression_level);
	free(opt.sha256);
	free(opt.sha256_file);
	free(opt.start);
	free(opt.end);
	free(opt.expected);
	free(opt.lint_ignore);
	free(opt.stamp_from);
	free(opt.from_schema);
	free(opt.scratch_url);
	free(opt.rehearse_url);
	free(opt.max_blocking);
	free(opt.max_rewrite);
	free(opt.report);
	free(opt.encrypt_key);
	free(opt.encrypt_to);
	free(opt.encrypt_cipher);
	free(opt.public_key);
	snap_keyring_clear();
}

static void fix_utf8(char **s, cJSON *item)
{
	struct strbuf sb = STRBUF_INIT;

	if (!*s || utf8_valid(*s))
		return;
	sb_add_utf8(&sb, *s);
	if (item) {
		cJSON_SetValuestring(item, sb.buf);
		sb_release(&sb);
	} else {
		free(*s);
		*s = sb_detach(&sb);
	}
}

/* JSON is UTF-8, file and table names are bytes: replace what is not
 * UTF-8 (cJSON copies bytes as they are, giving invalid JSON).  Walks the
 * tree with a stack of its own (no recursion on input depth). */
struct json_frame {
	cJSON *first; /* a list of siblings still to fix */
};

static void json_fix_utf8(cJSON *root)
{
	struct json_frame *stack = NULL;
	size_t n = 0, alloc = 0;

	ALLOC_GROW(stack, n + 1, alloc);
	stack[n++].first = root;
	while (n) {
		for (cJSON *item = stack[--n].first; item; item = item->next) {
			fix_utf8(&item->string, NULL);
			if (cJSON_IsString(item))
				fix_utf8(&item->valuestring, item);
			if (item->child) {
				ALLOC_GROW(stack, n + 1, alloc);
				stack[n++].first = item->child;
			}
		}
	}
	free(stack);
}

/* Prints the JSON object and checks that stdout really took everything. */
static int finish_output(cJSON *json, int code)
{
	if (json) {
		/* backup --output -: stdout is the snapshot, the object goes to stderr */
		FILE *f = opt.stdout_taken ? stderr : stdout;

		json_fix_utf8(json);
		char *text = cJSON_Print(json);
		if (text) {
			fputs(text, f);
			fputc('\n', f);
			free(text);
		}
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "safe-migrate: error: cannot write to standard output: %s\n",
			strerror(errno));
		return code ? code : EXIT_ERROR;
	}
	return code;
}

int main(int argc, char **argv)
{
	struct cmd_ctx ctx;
	struct cfg_file cfg;
	const struct command *cmd = NULL;
	const char *cmd_name = NULL;
	char **pos = NULL;
	int npos = 0, want_help = 0, want_version = 0, have_cfg = 0, code;

	/* run -- COMMAND starts the command through this re-exec (child.h) */
	if (argc > 1 && !strcmp(argv[1], CHILD_EXEC_ARG))
		return child_exec_main(argc, argv);
	memset(&ctx, 0, sizeof(ctx));
	memset(&cfg, 0, sizeof(cfg));
	/* keep results and messages in order when both go to one file */
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (parse_args(argc, argv, &cmd, &cmd_name, &pos, &npos, &want_help, &want_version,
		       &ctx.err) < 0) {
		code = report_error(NULL, &ctx.err);
		fprintf(stderr, "Run 'safe-migrate --help' for usage.\n");
		goto out;
	}
	if (opt.force)
		opt.yes = 1; /* --force has always meant --yes too */
	if (want_version) {
		print_version();
		code = finish_output(NULL, EXIT_OK);
		goto out;
	}
	if (cmd_name && !strcmp(cmd_name, "help")) {
		const struct command *c = npos ? find_command(pos[0]) : NULL;
		if (npos && !c) {
			error_msg("unknown command '%s'", pos[0]);
			code = EXIT_USAGE;
			goto out;
		}
		if (c)
			print_command_help(c);
		else
			print_usage(stdout);
		code = finish_output(NULL, EXIT_OK);
		goto out;
	}
	if (!cmd_name) {
		if (want_help) {
			print_usage(stdout);
			code = finish_output(NULL, EXIT_OK);
		} else {
			print_usage(stderr);
			code = EXIT_USAGE;
		}
		goto out;
	}
	if (!cmd) {
		error_msg("unknown command '%s'; run 'safe-migrate --help' for the list", cmd_name);
		code = EXIT_USAGE;
		goto out;
	}
	if (want_help) {
		print_command_help(cmd);
		code = finish_output(NULL, EXIT_OK);
		goto out;
	}
	ctx.cmd = cmd;
	ctx.argc = npos;
	ctx.argv = pos;
	if (opt.json)
		ctx.json = cJSON_CreateObject();
	if (resolve_config(&ctx, &cfg, &have_cfg, &ctx.err) < 0) {
		code = report_error(&ctx, &ctx.err);
	} else {
		code = cmd->fn(&ctx);
	}
	code = finish_output(ctx.json, code);
out:
	cJSON_Delete(ctx.json);
	url_release(&ctx.url);
	if (have_cfg)
		cfg_release(&cfg);
	free_options(pos);
	return code;
}
