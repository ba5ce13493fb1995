/*
 * child: posix_spawnp with signal forwarding (see child.h).
 */
#include "child.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "xalloc.h"

extern char **environ;

static volatile pid_t child_pid;

static void forward(int sig)
{
	if (child_pid > 0)
		kill(child_pid, sig);
}

/* Builds environ minus the names in extra, plus extra. Caller frees the array. */
static char **build_env(char *const extra[])
{
	size_t n = 0, m = 0, k = 0;
	char **env;

	while (environ[n])
		n++;
	while (extra && extra[m])
		m++;
	env = xcalloc(n + m + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		int replaced = 0;
		for (size_t x = 0; x < m && !replaced; x++) {
			size_t len = strcspn(extra[x], "=") + 1;
			if (!strncmp(environ[i], extra[x], len))
				replaced = 1;
		}
		if (!replaced)
			env[k++] = environ[i];
	}
	for (size_t x = 0; x < m; x++)
		env[k++] = extra[x];
	env[k] = NULL;
	return env;
}

int spawn_run(char *const argv[], char *const extra_env[], struct spawn_result *res,
	      struct sm_error *err)
{
	struct sigaction sa, old_int, old_term;
	char **env = build_env(extra_env);
	pid_t pid;
	int rc, status;

	memset(res, 0, sizeof(*res));
	rc = posix_spawnp(&pid, argv[0], NULL, NULL, argv, env);
	free(env);
	if (rc != 0) {
		errno = rc;
		err_sys(err, "cannot start '%s'", argv[0]);
		return -1;
	}
	child_pid = pid;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = forward;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			err_sys(err, "cannot wait for '%s'", argv[0]);
			status = -1;
			break;
		}
	}
	child_pid = 0;
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	if (status == -1)
		return -1;
	if (WIFEXITED(status)) {
		res->exited = 1;
		res->status = WEXITSTATUS(status);
	} else if (WIFSIGNALED(status)) {
		res->exited = 0;
		res->status = WTERMSIG(status);
	}
	return 0;
}
