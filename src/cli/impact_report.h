/*
 * impact_report: the dry run's impact report (safety/impact.h) on stdout and
 * under --json, and its gates (--max-blocking, --max-rewrite).
 */
#ifndef SM_IMPACT_REPORT_H
#define SM_IMPACT_REPORT_H

#include "cli.h"
#include "impact.h"

/* Starts measuring the statements e runs (NULL and a warning when the
 * engine has no measurement); rehearsal: "in-place" or "rehearse-url". */
struct impact *impact_watch(struct engine *e, const char *rehearsal);
/* Stops measuring, prints the report, adds ctx->json's "impact", applies
 * the gates; returns EXIT_OK or EXIT_BLOCKED (a finding names the
 * migration, statement and relation).  Frees imp.  NULL-safe. */
int impact_report(struct cmd_ctx *ctx, struct engine *e, struct impact *imp);

/* The real run: stops measuring and returns what the runs log keeps
 * (impact_to_json_brief; caller owns it).  Frees imp.  NULL-safe. */
cJSON *impact_record(struct engine *e, struct impact *imp);
/* Appends a runs-log line's "impact" (history --runs -v): per migration its
 * duration, per relation its blocking window, every rewrite. */
void impact_render_logged(const cJSON *impact, struct strbuf *out);

#endif
