/*
 * child: posix_spawn with a process group, a parent-death signal and signal
 * forwarding (see child.h).
 */
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "xalloc.h"

extern char **environ;

static volatile sig_atomic_t child_pgid;
static volatile sig_atomic_t pending_sig;

/* Forwards to the child's whole group (the command may have children of its
 * own); a signal that lands before the spawn returned is sent after it. */
static void forward(int sig)
{
	if (child_pgid > 0)
		kill(-(pid_t)child_pgid, sig);
	else
		pending_sig = sig;
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

/* helper argv: safe-migrate CHILD_EXEC_ARG PPID FD argv...; caller frees it */
static char **helper_argv(char *const argv[], char *ppid, char *fd)
{
	size_t n = 0;
	char **out;

	while (argv[n])
		n++;
	out = xcalloc(n + 5, sizeof(char *));
	out[0] = (char *)"safe-migrate";
	out[1] = (char *)CHILD_EXEC_ARG;
	out[2] = ppid;
	out[3] = fd;
	for (size_t i = 0; i < n; i++)
		out[4 + i] = argv[i];
	return out;
}

/* Starts the helper, which execs argv.  Returns 0 once argv runs, or an
 * errno when it never started (the helper's exec failed: reported through a
 * close-on-exec pipe, which reads empty once the exec succeeded). */
static int start(char *const argv[], char **env, pid_t *pid)
{
	posix_spawnattr_t attr;
	sigset_t def, none;
	char ppid[32], fdtext[16];
	char **hargv;
	int fds[2], rc, child_errno = 0;
	ssize_t n;

	if (pipe(fds) < 0)
		return errno;
	/* the write end is the helper's; it sets close-on-exec on it itself */
	fcntl(fds[0], F_SETFD, FD_CLOEXEC);
	snprintf(ppid, sizeof(ppid), "%ld", (long)getpid());
	snprintf(fdtext, sizeof(fdtext), "%d", fds[1]);
	hargv = helper_argv(argv, ppid, fdtext);
	sigemptyset(&def);
	sigaddset(&def, SIGCHLD);
	sigaddset(&def, SIGINT);
	sigaddset(&def, SIGTERM);
	sigaddset(&def, SIGPIPE);
	sigemptyset(&none);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF |
					POSIX_SPAWN_SETSIGMASK);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setsigdefault(&attr, &def);
	posix_spawnattr_setsigmask(&attr, &none);
	rc = posix_spawn(pid, "/proc/self/exe", NULL, &attr, hargv, env);
	posix_spawnattr_destroy(&attr);
	free(hargv);
	close(fds[1]);
	if (rc == 0) {
		do
			n = read(fds[0], &child_errno, sizeof(child_errno));
		while (n < 0 && errno == EINTR);
		if (n == (ssize_t)sizeof(child_errno)) {
			rc = child_errno ? child_errno : ECHILD;
			while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR)
				;
		}
	}
	close(fds[0]);
	return rc;
}

int spawn_run(char *const argv[], const char *shown, char *const extra_env[],
	      spawn_started_fn started, void *ud, struct spawn_result *res, struct sm_error *err)
{
	struct sigaction sa, old_int, old_term, old_chld, old_ttou;
	char **env = build_env(extra_env);
	pid_t pid = -1;
	int rc, status = 0, ret = 0, tty = 0;

	memset(res, 0, sizeof(*res));
	/* a SIGCHLD left ignored by our parent would make waitpid fail */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, &old_chld);
	/* forwarding is in place before the child exists */
	pending_sig = 0;
	child_pgid = 0;
	sa.sa_handler = forward;
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	rc = start(argv, env, &pid);
	free(env);
	if (rc != 0) {
		errno = rc;
		err_sys(err, "cannot start '%s'", shown);
		ret = -1;
		goto out;
	}
	child_pgid = pid;
	if (pending_sig)
		kill(-pid, pending_sig);
	if (started)
		started(ud, pid, pid);
	/* its own group is not the terminal's foreground: hand it the terminal
	 * (a prompting tool would stop on SIGTTIN), and wake it if it already
	 * stopped trying */
	if (isatty(STDIN_FILENO) && tcgetpgrp(STDIN_FILENO) == getpgrp()) {
		sa.sa_handler = SIG_IGN;
		sigaction(SIGTTOU, &sa, &old_ttou);
		tty = tcsetpgrp(STDIN_FILENO, pid) == 0;
		if (tty)
			kill(-pid, SIGCONT);
		else
			sigaction(SIGTTOU, &old_ttou, NULL);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			err_sys(err, "cannot wait for '%s'", shown);
			ret = -1;
			break;
		}
	}
	res->started = 1;
	if (ret == 0 && WIFEXITED(status)) {
		res->exited = 1;
		res->status = WEXITSTATUS(status);
	} else if (ret == 0 && WIFSIGNALED(status)) {
		res->exited = 0;
		res->status = WTERMSIG(status);
	}
out:
	if (tty) {
		tcsetpgrp(STDIN_FILENO, getpgrp());
		sigaction(SIGTTOU, &old_ttou, NULL);
	}
	child_pgid = 0;
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGCHLD, &old_chld, NULL);
	return ret;
}

int child_exec_main(int argc, char **argv)
{
	long ppid;
	int fd, e;

	if (argc < 5)
		return 127;
	ppid = strtol(argv[2], NULL, 10);
	fd = (int)strtol(argv[3], NULL, 10);
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	/* the parent-death signal survives exec; if safe-migrate died before it
	 * was set, the parent is already someone else: do not start at all */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		e = errno;
	else if ((long)getppid() != ppid)
		e = ESRCH;
	else {
		execvp(argv[4], argv + 4);
		e = errno;
	}
	if (write(fd, &e, sizeof(e)) < 0)
		return 127;
	return 127;
}

int child_group_alive(pid_t pgid)
{
	return pgid > 0 && (kill(-pgid, 0) == 0 || errno == EPERM);
}
