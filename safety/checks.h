/*
 * checks: the pre-flight checks run before a migration (`safety-check`,
 * and the first phase of the safe-migrate pipeline).
 *
 * Checks, by name (each yields PASS, WARN or FAIL findings):
 *   connectivity         the database is reachable; its server/library version
 *   database-file        SQLite: a hot journal ("DB-journal") or an unwritable file (FAIL)
 *   backup-dir           the backup directory exists or can be created (0700), and a
 *                        probe file can be written, fsynced and deleted there
 *   disk-space           free space >= database size + 10% (the snapshot estimate)
 *   migration-history    applied versions with no file (WARN), edited applied files
 *                        and out-of-order pending ones (FAIL)
 *   interrupted-run      the database's run journal (journal_path, else
 *                        BACKUP_DIR/safe-migrate.journal) with "outcome": null (FAIL,
 *                        naming the snapshot; `safe-migrate recover [--discard]`),
 *                        unless another run holds the migration lock (a live PID
 *                        alone counts only when there is no connection); and the
 *                        database's mark of a run whose journal is elsewhere
 *                        (unfinished_elsewhere, FAIL)
 *   concurrent-migration another process holds the migration lock (FAIL)
 *   restore-locks        the in-place restore (one transaction) would need more locks
 *                        than the server's lock table guarantees (FAIL; engines whose
 *                        restore_locks op is NULL skip it)
 *   pending-migrations   the pending versions; each is linted and its lint findings
 *                        follow (kind FINDING_RULE; blocking ones FAIL)
 *   long-transactions    PostgreSQL: transactions open longer than a threshold holding
 *                        locks on tables the pending migrations touch (FAIL); the CLI
 *                        takes the threshold from SAFE_MIGRATE_LONG_TX_SECONDS
 *   invalid-indexes      PostgreSQL: invalid indexes already present (WARN)
 */
#ifndef SM_CHECKS_H
#define SM_CHECKS_H

#include "engine.h"
#include "error.h"
#include "finding.h"
#include "history.h"
#include "migration.h"
#include "plan.h"
#include "url.h"

#define SAFETY_JOURNAL_NAME "safe-migrate.journal"
#define SAFETY_LONG_TX_SECONDS 300

struct safety_check_opts {
	struct engine *e;                  /* open engine (borrowed), or NULL if it could not connect */
	const char *backup_dir;            /* where snapshots go */
	const struct migration_set *set;   /* borrowed; NULL skips history and pending checks */
	const struct applied_set *applied; /* borrowed; may be NULL when e is NULL */
	int allow_out_of_order;
	int caller_holds_lock;   /* the caller holds the migration lock: skip that probe */
	const char *journal_path; /* the database's run journal (NULL: the
				   * backup dir's SAFETY_JOURNAL_NAME) */
	const char *unfinished_elsewhere; /* why the database's mark of a run whose
					   * journal is elsewhere blocks, or NULL
					   * (the CLI's journal_check_marks) */
	int skip_backup;         /* --no-backup: skip backup-dir and disk-space */
	long long_tx_seconds;    /* 0: SAFETY_LONG_TX_SECONDS */
	const char *lint_ignore; /* lint rules to silence (lint_ignore()), or NULL */
	const char *target;      /* lint only the pending migrations up to this upgrade
				  * target (plan_upgrade's syntax); NULL: all */
	int foreign_migrations;  /* another tool's migrations run (`run -- ...`): what is
				  * pending is not known here */
};

/* Checks that need no connection (SQLite: hot journal, writability), then
 * opens url: on success *e is the open engine (caller closes) and a PASS
 * "connectivity" finding naming the version is added; on failure *e is NULL
 * and a FAIL finding carries the reason.  Never returns an error itself. */
void safety_check_connect(const struct db_url *url, struct engine **e,
			  struct finding_list *out);

/* Runs every other check.  Findings go to out; -1 only when a check could
 * not run at all (err set).  Checks needing the database are skipped when
 * o->e is NULL. */
int safety_check_run(const struct safety_check_opts *o, struct finding_list *out,
		     struct sm_error *err);

#endif
