/*
 * impact_report: see impact_report.h.
 */
#include "impact_report.h"

#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "strbuf.h"
#include "xalloc.h"

struct impact *impact_watch(struct engine *e, const char *rehearsal)
{
	struct impact *imp = NULL;
	struct sm_error err = SM_ERROR_INIT;

	if (impact_new(&imp, e, rehearsal, &err) < 0) {
		warning("%s", err.msg);
		return NULL;
	}
	e->observer = impact_observer(imp);
	return imp;
}

int impact_report(struct cmd_ctx *ctx, struct engine *e, struct impact *imp)
{
	struct strbuf sb = STRBUF_INIT;
	cJSON *gate;
	int n, code = EXIT_OK;

	if (!imp)
		return EXIT_OK;
	if (e)
		e->observer = NULL;
	impact_end(imp);
	if (imp->err.msg[0])
		warning("the impact measurement is incomplete: %s", imp->err.msg);
	impact_render_text(imp, &sb);
	out("%s", sb.buf);
	sb_reset(&sb);
	if (opt.report) {
		struct sm_error err = SM_ERROR_INIT;

		/* durable, atomic, never through a symlink: the page may go into a
		 * change ticket, so no half-written file */
		impact_render_html(imp, &sb);
		if (fs_write_output(opt.report, sb.buf, sb.len, 0600, &err) < 0) {
			report_error(ctx, &err);
			code = EXIT_ERROR;
		} else {
			out("impact report written to %s\n", opt.report);
			if (ctx->json)
				cJSON_AddStringToObject(ctx->json, "report", opt.report);
		}
		sb_reset(&sb);
	}
	n = impact_gate(imp, opt.max_blocking_ms, opt.max_rewrite_bytes, &sb);
	gate = cJSON_CreateArray();
	for (const char *p = sb.buf; *p;) {
		const char *nl = strchr(p, '\n');
		char *line = xstrndup(p, nl ? (size_t)(nl - p) : strlen(p));
		error_msg("impact gate: %s", line);
		cJSON_AddItemToArray(gate, cJSON_CreateString(line));
		free(line);
		p = nl ? nl + 1 : p + strlen(p);
	}
	if (ctx->json) {
		cJSON *j = impact_to_json(imp);
		cJSON_AddItemToObject(j, "gate_findings", gate);
		cJSON_AddItemToObject(ctx->json, "impact", j);
	} else {
		cJSON_Delete(gate);
	}
	if (n && code == EXIT_OK)
		code = EXIT_BLOCKED;
	sb_release(&sb);
	impact_free(imp);
	return code;
}

cJSON *impact_record(struct engine *e, struct impact *imp)
{
	cJSON *j;

	if (!imp)
		return NULL;
	if (e)
		e->observer = NULL;
	impact_end(imp);
	if (imp->err.msg[0])
		warning("the impact measurement is incomplete: %s", imp->err.msg);
	j = impact_to_json_brief(imp);
	impact_free(imp);
	return j;
}

static const char *jstr(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsString(v) ? v->valuestring : "?";
}

static double jnum(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

void impact_render_logged(const cJSON *impact, struct strbuf *out)
{
	const cJSON *x;
	int any = 0;

	if (!cJSON_IsObject(impact))
		return;
	cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(impact, "migrations"))
		sb_addf(out, "    migration %s: %.1f ms%s\n", jstr(x, "file"), jnum(x, "ms"),
			cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(x, "in_transaction"))
				? " (outside a transaction)" : "");
	cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(impact, "windows")) {
		if (!strcmp(jstr(x, "kind"), "index"))
			continue; /* blocked with its table (in --json all the same) */
		sb_addf(out, "    blocked %s to %s %s for %.1f ms (%s line %.0f)\n",
			jstr(x, "blocks"), jstr(x, "kind"), jstr(x, "relation"), jnum(x, "ms"),
			jstr(x, "migration"), jnum(x, "line"));
		any = 1;
	}
	if (!any)
		sb_adds(out, "    no statement blocked writes\n");
	cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(impact, "rewrites")) {
		char sz[32];
		impact_human_size((long long)jnum(x, "bytes"), sz, sizeof(sz));
		sb_addf(out, "    rewrote %s %s (%s, %.0f rows) (%s line %.0f)\n", jstr(x, "kind"),
			jstr(x, "relation"), sz, jnum(x, "rows"), jstr(x, "migration"),
			jnum(x, "line"));
	}
	cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(impact, "lint_checks")) {
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(x, "confirmed");
		sb_addf(out, "    lint %s (%s line %.0f): lint said %s, measured: %s (%s)\n",
			jstr(x, "rule"), jstr(x, "migration"), jnum(x, "line"), jstr(x, "lint_said"),
			jstr(x, "measured"), cJSON_IsTrue(c) ? "confirmed" : cJSON_IsFalse(c)
			? "CONTRADICTED" : "not measurable");
	}
	if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(impact, "measurement_error")))
		sb_addf(out, "    the measurement is incomplete: %s\n",
			jstr(impact, "measurement_error"));
}
