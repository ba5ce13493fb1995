/*
 * output: printing for the CLI, the only layer that prints.
 *
 * stdout carries the command's result (human text, or exactly one JSON
 * object with --json); stderr carries messages.  Verbosity lives in `opt`.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "fsutil.h"

void out(const char *fmt, ...)
{
	va_list ap;

	if (opt.json)
		return;
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
}

static void vmsg(const char *prefix, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void vmsg(const char *prefix, const char *fmt, va_list ap)
{
	fputs("safe-migrate: ", stderr);
	if (prefix)
		fputs(prefix, stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void info(const char *fmt, ...)
{
	va_list ap;

	if (opt.quiet)
		return;
	va_start(ap, fmt);
	vmsg(NULL, fmt, ap);
	va_end(ap);
}

void verbose(const char *fmt, ...)
{
	va_list ap;

	if (!opt.verbose)
		return;
	va_start(ap, fmt);
	vmsg(NULL, fmt, ap);
	va_end(ap);
}

int use_color(int fd)
{
	const char *nc = getenv("NO_COLOR");

	return isatty(fd) && !(nc && *nc);
}

void warning(const char *fmt, ...)
{
	va_list ap;
	int color = use_color(2);

	va_start(ap, fmt);
	vmsg(color ? "\033[33mwarning:\033[0m " : "warning: ", fmt, ap);
	va_end(ap);
}

void warning_lines(const char *text)
{
	while (text && *text) {
		size_t n = strcspn(text, "\n");

		if (n)
			warning("%.*s", (int)n, text);
		text += n + (text[n] == '\n');
	}
}

void error_msg(const char *fmt, ...)
{
	va_list ap;
	int color = use_color(2);

	va_start(ap, fmt);
	vmsg(color ? "\033[31merror:\033[0m " : "error: ", fmt, ap);
	va_end(ap);
}

int exit_code_for(enum err_kind kind)
{
	switch (kind) {
	case ERR_NONE:
		return EXIT_OK;
	case ERR_USAGE:
		return EXIT_USAGE;
	case ERR_BLOCKED:
		return EXIT_BLOCKED;
	case ERR_DAMAGED:
		return EXIT_PROBLEMS;
	case ERR_INTERRUPTED:
		return EXIT_INTERRUPTED;
	case ERR_FAIL:
	case ERR_NOSPACE:
	case ERR_LOCKED:
		break;
	}
	return EXIT_ERROR;
}

int report_error(struct cmd_ctx *ctx, const struct sm_error *err)
{
	int code = exit_code_for(err->kind);

	error_msg("%s", err->msg[0] ? err->msg : "unknown error");
	if (ctx && ctx->json) {
		cJSON_DeleteItemFromObject(ctx->json, "error");
		cJSON_AddStringToObject(ctx->json, "error", err->msg);
		if (err->sqlstate[0]) {
			cJSON_DeleteItemFromObject(ctx->json, "sqlstate");
			cJSON_AddStringToObject(ctx->json, "sqlstate", err->sqlstate);
		}
	}
	return code;
}

int confirm(const char *question, struct sm_error *err)
{
	char line[64];

	if (opt.yes)
		return 1;
	if (!isatty(0)) {
		err_set(err, ERR_USAGE, "%s: refusing without confirmation; stdin is not a "
			"terminal, so pass --yes to proceed", question);
		return 0;
	}
	fprintf(stderr, "%s [y/N] ", question);
	fflush(stderr);
	if (!fgets(line, sizeof(line), stdin)) {
		if (cli_interrupted)
			err_set(err, ERR_INTERRUPTED, "%s: interrupted; nothing was changed", question);
		else
			err_set(err, ERR_FAIL, "%s: no answer", question);
		return 0;
	}
	if (line[0] == 'y' || line[0] == 'Y')
		return 1;
	err_set(err, ERR_FAIL, "%s: not confirmed; nothing was changed", question);
	return 0;
}

/* Appends " OPTION VALUE", the value quoted for the shell. */
static void hand_option(struct strbuf *sb, const char *option, const char *value)
{
	sb_addf(sb, " %s ", option);
	sb_add_shell_word(sb, value);
}

void cli_hand_command(struct strbuf *sb, const struct cmd_ctx *ctx)
{
	char *path;

	sb_adds(sb, "safe-migrate");
	if (ctx->config_path) {
		path = fs_absolute(ctx->config_path);
		hand_option(sb, "-c", path);
		free(path);
	}
	if (ctx->have_url) {
		path = url_redacted_absolute(&ctx->url);
		hand_option(sb, "-d", path);
		free(path);
	}
	if (ctx->backup_dir) {
		path = fs_absolute(ctx->backup_dir);
		hand_option(sb, "-b", path);
		free(path);
	}
	if (opt.encrypt_key) {
		path = fs_absolute(opt.encrypt_key);
		hand_option(sb, "--encrypt-key", path);
		free(path);
	}
}
