/*
 * child: running another tool's migration command for `run -- COMMAND`.
 *
 * The command is started with posix_spawnp (never through a shell) with
 * stdin, stdout and stderr passed through, and DATABASE_URL and
 * SAFE_MIGRATE_DATABASE_URL set for it.  SIGINT/SIGTERM received while it
 * runs are forwarded to it.
 */
#ifndef SM_CHILD_H
#define SM_CHILD_H

#include <sys/types.h>

#include "error.h"

struct spawn_result {
	int exited;    /* 1 if it exited, 0 if a signal ended it */
	int status;    /* exit status, or the signal number */
};

/* Runs argv[0] (looked up in PATH) with extra environment variables
 * (NULL-terminated "NAME=value" list, borrowed) and waits for it.
 * Fails only if it could not be started. */
int spawn_run(char *const argv[], char *const extra_env[], struct spawn_result *res,
	      struct sm_error *err);

#endif
