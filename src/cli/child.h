/*
 * child: running another tool's migration command for `run -- COMMAND`.
 *
 * The command is started with posix_spawn (never through a shell) with
 * stdin, stdout and stderr passed through, and DATABASE_URL and
 * SAFE_MIGRATE_DATABASE_URL set for it.  It never outlives safe-migrate
 * unnoticed:
 *   - it runs in a process group of its own (pgid == its pid), so that
 *     `recover` can tell whether anything of a killed run is still alive;
 *   - it is started through a tiny re-exec of safe-migrate (CHILD_EXEC_ARG)
 *     that sets PR_SET_PDEATHSIG(SIGKILL) before exec'ing the command, so
 *     a SIGKILL of safe-migrate kills the command too;
 *   - SIGINT/SIGTERM are forwarded to its group, from before the spawn;
 *   - when safe-migrate owns the terminal, the command's group gets it for
 *     as long as it runs (Ctrl-C then reaches it directly);
 *   - it starts with SIGCHLD, SIGINT, SIGTERM and SIGPIPE at their defaults.
 */
#ifndef SM_CHILD_H
#define SM_CHILD_H

#include <sys/types.h>

#include "error.h"

/* argv[1] of the re-exec helper: safe-migrate CHILD_EXEC_ARG PPID CMD ARG... */
#define CHILD_EXEC_ARG "--internal-exec-child"

struct spawn_result {
	int started;   /* 1 once the command was started (it may have changed things) */
	int exited;    /* 1 if it exited, 0 if a signal ended it */
	int status;    /* exit status, or the signal number */
};

/* Called once the child runs, before waiting for it (e.g. to journal it). */
typedef void (*spawn_started_fn)(void *ud, pid_t pid, pid_t pgid);

/*
 * Runs argv[0] (looked up in PATH) with extra environment variables
 * (NULL-terminated "NAME=value" list, borrowed) and waits for it.  Messages
 * name it as shown (argv[0] with secrets masked).
 * Returns 0 with res filled; -1 with err when it could not be started
 * (res->started == 0: nothing ran) or when waiting for it failed
 * (res->started == 1: it ran and how it ended is unknown).
 */
int spawn_run(char *const argv[], const char *shown, char *const extra_env[],
	      spawn_started_fn started, void *ud, struct spawn_result *res, struct sm_error *err);

/* The re-exec helper's main: sets the parent-death signal, checks the parent
 * is still the one that started it, and execs argv[3..].  Returns only on
 * failure (exit code 127). */
int child_exec_main(int argc, char **argv);

/* 1 while any process of group pgid is alive. */
int child_group_alive(pid_t pgid);

#endif
