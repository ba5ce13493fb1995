/*
 * impact_html: the impact report as one self-contained XHTML page with an
 * inline SVG timeline (see impact.h).  No scripts, no external styles, fonts,
 * images or links: the page is pasted into change tickets and opened offline.
 * Every name and statement goes through xml_text(), so the page is well-formed
 * XML whatever the migrations contain.
 */
#include "impact.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "impact_impl.h"
#include "xalloc.h"

#define MS(us) ((double)(us) / 1000.0)

/* Layout of the timeline, in SVG user units. */
#define LABEL_W 200
#define PLOT_W 760
#define ROW_H 22
#define TOP 56

/* Appends s with &, <, >, " and ' escaped; bytes that are not valid UTF-8
 * and control characters XML forbids become '?'. */
static void xml_text(struct strbuf *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		size_t n = 1;

		if (*p == '&')
			sb_adds(out, "&amp;");
		else if (*p == '<')
			sb_adds(out, "&lt;");
		else if (*p == '>')
			sb_adds(out, "&gt;");
		else if (*p == '"')
			sb_adds(out, "&quot;");
		else if (*p == '\'')
			sb_adds(out, "&#39;");
		else if (*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r')
			sb_addch(out, '?');
		else if (*p < 0x80)
			sb_addch(out, *p);
		else {
			size_t want = *p >= 0xf0 && *p < 0xf5 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc2 ? 2 : 0;
			size_t k = 1;

			if (*p >= 0xf5)
				want = 0;
			while (want && k < want && (p[k] & 0xc0) == 0x80)
				k++;
			if (want && k == want) {
				sb_add(out, p, want);
				n = want;
			} else {
				sb_addch(out, '?');
			}
		}
		p += n;
	}
}

static const char *blocks_colour(enum impact_blocks b)
{
	switch (b) {
	case IMPACT_READS: return "#c0392b";
	case IMPACT_WRITES: return "#e67e22";
	case IMPACT_DDL: return "#f4d03f";
	case IMPACT_NONE: break;
	}
	return "#bdc3c7";
}

/* A timeline lane: a locked relation other than an index (an index is
 * blocked with its table). */
static int lane_rel(const struct impact_rel *r)
{
	return r->mode && r->blocks != IMPACT_NONE && strcmp(r->kind, "index") != 0;
}

static int has_name(char **names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(names[i], name))
			return 1;
	return 0;
}

/* The timeline runs from the first migration's start (t0) to the last one's
 * end (t0 + total). */
struct scale { long long t0, total; };

static double xpos(long long us, const struct scale *sc)
{
	return LABEL_W + (double)(us - sc->t0) * PLOT_W / (double)sc->total;
}

static void rect(struct strbuf *out, const char *cls, long long from, long long to,
		 const struct scale *sc, int y, int h, const char *fill)
{
	double x = xpos(from, sc), w = xpos(to, sc) - x;

	sb_addf(out, "<rect class=\"%s\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" "
		"fill=\"%s\">", cls, x, y, w < 1 ? 1.0 : w, h, fill);
}

static void svg(const struct impact *imp, char **lanes, size_t n_lanes, struct strbuf *out)
{
	struct scale sc = { imp->n_migs ? imp->migs[0].start_us : 0, 1 };
	int height = TOP + (int)(2 + n_lanes) * ROW_H + 40;
	static const enum impact_blocks legend[] = { IMPACT_READS, IMPACT_WRITES, IMPACT_DDL };

	for (size_t i = 0; i < imp->n_migs; i++)
		if (imp->migs[i].end_us - sc.t0 > sc.total)
			sc.total = imp->migs[i].end_us - sc.t0;
	sb_addf(out, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" width=\"%d\" "
		"height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n",
		LABEL_W + PLOT_W + 20, height, LABEL_W + PLOT_W + 20, height);
	/* legend */
	for (size_t i = 0; i < sizeof(legend) / sizeof(legend[0]); i++) {
		int x = LABEL_W + (int)i * 200;
		sb_addf(out, "<g class=\"legend\"><rect x=\"%d\" y=\"8\" width=\"14\" height=\"14\" "
			"fill=\"%s\"/><text x=\"%d\" y=\"20\">blocks %s</text></g>\n", x,
			blocks_colour(legend[i]), x + 20,
			legend[i] == IMPACT_DDL ? "DDL only" : impact_blocks_name(legend[i]));
	}
	/* time axis */
	sb_addf(out, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#555\"/>\n", LABEL_W,
		TOP - 6, LABEL_W + PLOT_W, TOP - 6);
	for (int t = 0; t <= 4; t++)
		sb_addf(out, "<text class=\"tick\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">"
			"%.1f ms</text>\n", xpos(sc.t0 + sc.total * t / 4, &sc), TOP - 12,
			(double)sc.total * t / 4000.0);
	/* migrations and statements */
	sb_addf(out, "<text x=\"4\" y=\"%d\">migrations</text>\n", TOP + 15);
	for (size_t i = 0; i < imp->n_migs; i++) {
		const struct impact_mig *m = &imp->migs[i];
		rect(out, "migration", m->start_us, m->end_us, &sc, TOP + 2, ROW_H - 4,
		     i % 2 ? "#5d6d7e" : "#85929e");
		sb_adds(out, "<title>");
		xml_text(out, m->file);
		sb_addf(out, ": %.1f ms%s</title></rect>\n", MS(m->end_us - m->start_us),
			m->in_tx ? "" : " (outside a transaction)");
	}
	sb_addf(out, "<text x=\"4\" y=\"%d\">statements</text>\n", TOP + ROW_H + 15);
	for (size_t i = 0; i < imp->n_stmts; i++) {
		const struct impact_stmt *s = &imp->stmts[i];
		rect(out, "statement", s->start_us, s->start_us + s->us, &sc, TOP + ROW_H + 2,
		     ROW_H - 4, s->ok ? "#2e86c1" : "#000000");
		sb_addf(out, "<title>line %d, %.1f ms: ", s->line, MS(s->us));
		xml_text(out, s->text);
		sb_adds(out, "</title></rect>\n");
	}
	/* one lane per locked relation: from each statement that took (or
	 * strengthened) the lock to the end of its migration's transaction, or
	 * of the statement outside one; later, stronger locks drawn on top */
	for (size_t l = 0; l < n_lanes; l++) {
		int y = TOP + (int)(2 + l) * ROW_H;

		sb_adds(out, "<g class=\"lane\" data-relation=\"");
		xml_text(out, lanes[l]);
		sb_addf(out, "\">\n<text x=\"4\" y=\"%d\">", y + 15);
		xml_text(out, lanes[l]);
		sb_adds(out, "</text>\n");
		for (size_t i = 0; i < imp->n_stmts; i++) {
			const struct impact_stmt *s = &imp->stmts[i];
			for (size_t k = 0; k < s->n_rels; k++) {
				const struct impact_rel *r = &s->rels[k];
				long long end = s->in_tx ? imp->migs[s->mig].end_us : s->start_us + s->us;

				if (!lane_rel(r) || strcmp(r->name, lanes[l]) != 0)
					continue;
				rect(out, "window", s->start_us, end, &sc, y + 2, ROW_H - 4,
				     blocks_colour(r->blocks));
				sb_adds(out, "<title>");
				xml_text(out, r->name);
				sb_addf(out, ": %s blocks %s for %.1f ms", r->mode,
					impact_blocks_name(r->blocks), MS(end - s->start_us));
				if (r->waited_us > 0)
					sb_addf(out, " (%.1f ms of it waiting for the lock)",
						MS(r->waited_us));
				sb_adds(out, ", from ");
				xml_text(out, imp->migs[s->mig].file);
				sb_addf(out, " line %d</title></rect>\n", s->line);
			}
		}
		sb_adds(out, "</g>\n");
	}
	sb_adds(out, "</svg>\n");
}

static void summary(const struct impact *imp, struct strbuf *out)
{
	const struct impact_window *w = impact_longest(imp, IMPACT_WRITES);
	int any = 0;
	char sz[32];

	sb_adds(out, "<h2>Summary</h2>\n<ul class=\"summary\">\n");
	if (w) {
		sb_adds(out, "<li>longest write-blocking window: <b>");
		xml_text(out, w->rel);
		sb_addf(out, "</b>, %.1f ms (blocks %s; from ", MS(w->us),
			impact_blocks_name(w->blocks));
		xml_text(out, imp->migs[w->mig].file);
		sb_addf(out, " line %d to the end of its %s)</li>\n", imp->stmts[w->stmt].line,
			imp->stmts[w->stmt].in_tx ? "transaction" : "statement");
	} else {
		sb_adds(out, "<li>no statement blocked writes</li>\n");
	}
	for (size_t i = 0; i < imp->n_stmts; i++)
		for (size_t k = 0; k < imp->stmts[i].n_rels; k++) {
			const struct impact_rel *r = &imp->stmts[i].rels[k];
			if (!r->rewritten)
				continue;
			any = 1;
			impact_human_size(r->bytes, sz, sizeof(sz));
			sb_addf(out, "<li>rewrite: %s <b>", r->kind);
			xml_text(out, r->name);
			sb_addf(out, "</b> (%s, %lld rows) by ", sz, r->rows);
			xml_text(out, imp->migs[imp->stmts[i].mig].file);
			sb_addf(out, " line %d</li>\n", imp->stmts[i].line);
		}
	if (!any)
		sb_adds(out, "<li>no table or index was rewritten</li>\n");
	if (imp->err.msg[0]) {
		sb_adds(out, "<li>the measurement is incomplete: ");
		xml_text(out, imp->err.msg);
		sb_adds(out, "</li>\n");
	}
	sb_adds(out, "</ul>\n");
}

static void cell(struct strbuf *out, const char *text)
{
	sb_adds(out, "<td>");
	xml_text(out, text);
	sb_adds(out, "</td>");
}

/* A duration in milliseconds, or "?" when unknown (< 0). */
static void ms_cell(struct strbuf *out, long long us)
{
	if (us < 0)
		sb_adds(out, "<td>?</td>");
	else
		sb_addf(out, "<td>%.1f</td>", MS(us));
}

static void statements(const struct impact *imp, struct strbuf *out)
{
	char buf[64];

	sb_adds(out, "<h2>Statements</h2>\n<table>\n<tr><th>migration</th><th>line</th>"
		"<th>ms</th><th>relation</th><th>lock</th><th>blocks</th><th>size</th>"
		"<th>rows</th><th>rewrite</th><th>held ms</th><th>waited ms</th>"
		"<th>statement</th></tr>\n");
	for (size_t i = 0; i < imp->n_stmts; i++) {
		const struct impact_stmt *s = &imp->stmts[i];
		size_t n = s->n_rels ? s->n_rels : 1;

		for (size_t k = 0; k < n; k++) {
			const struct impact_rel *r = s->n_rels ? &s->rels[k] : NULL;

			sb_adds(out, "<tr>");
			cell(out, k ? "" : imp->migs[s->mig].file);
			snprintf(buf, sizeof(buf), "%d", s->line);
			cell(out, k ? "" : buf);
			snprintf(buf, sizeof(buf), "%.1f", MS(s->us));
			cell(out, k ? "" : buf);
			if (!r) {
				cell(out, !s->ok ? "(failed)" : s->observed ? "(no new lock)"
				     : "(not observed: outside a transaction, not watched)");
				sb_adds(out, "<td/><td/><td/><td/><td/><td/><td/>");
			} else {
				cell(out, r->name);
				cell(out, r->mode ? r->mode : "-");
				sb_addf(out, "<td class=\"%s\">%s</td>", impact_blocks_name(r->blocks),
					impact_blocks_name(r->blocks));
				impact_human_size(r->bytes, buf, sizeof(buf));
				cell(out, buf);
				if (r->rows < 0)
					snprintf(buf, sizeof(buf), "?");
				else
					snprintf(buf, sizeof(buf), "%lld", r->rows);
				cell(out, buf);
				cell(out, r->rewritten ? "yes" : "-");
				ms_cell(out, r->held_us);
				ms_cell(out, r->waited_us);
			}
			sb_adds(out, !k && r && !s->ok ? "<td>(failed) <code>" : "<td><code>");
			if (!k)
				xml_text(out, s->text);
			sb_adds(out, "</code></td></tr>\n");
		}
	}
	sb_adds(out, "</table>\n");
}

/* The objects each statement created and dropped, in order. */
static void objects(const struct impact *imp, struct strbuf *out)
{
	char buf[32];
	int any = 0;

	for (size_t i = 0; i < imp->n_stmts; i++) {
		const struct impact_stmt *s = &imp->stmts[i];

		for (int created = 1; created >= 0; created--) {
			size_t n = created ? s->n_created : s->n_dropped;

			for (size_t k = 0; k < n; k++) {
				if (!any)
					sb_adds(out, "<h2>Objects created and dropped</h2>\n"
						"<table class=\"objects\">\n<tr><th>migration</th>"
						"<th>line</th><th>change</th><th>object</th></tr>\n");
				any = 1;
				sb_addf(out, "<tr class=\"%s\">", created ? "created" : "dropped");
				cell(out, imp->migs[s->mig].file);
				snprintf(buf, sizeof(buf), "%d", s->line);
				cell(out, buf);
				cell(out, created ? "created" : "dropped");
				cell(out, created ? s->created[k] : s->dropped[k]);
				sb_adds(out, "</tr>\n");
			}
		}
	}
	if (any)
		sb_adds(out, "</table>\n");
	else
		sb_adds(out, "<h2>Objects created and dropped</h2>\n<p class=\"objects\">none</p>\n");
}

static void lint_checks(const struct impact *imp, struct strbuf *out)
{
	char buf[32];

	if (!imp->n_lints)
		return;
	sb_adds(out, "<h2>Lint and measurement</h2>\n<table class=\"lint\">\n<tr><th>rule</th>"
		"<th>migration</th><th>line</th><th>lint said</th><th>measured</th>"
		"<th>verdict</th><th>statement</th></tr>\n");
	for (size_t i = 0; i < imp->n_lints; i++) {
		const struct impact_lint *l = &imp->lints[i];
		const struct impact_stmt *s = &imp->stmts[l->stmt];

		sb_addf(out, "<tr class=\"%s\">", l->verdict > 0 ? "confirmed" : l->verdict == 0
			? "contradicted" : "unmeasured");
		cell(out, l->rule);
		cell(out, imp->migs[s->mig].file);
		snprintf(buf, sizeof(buf), "%d", s->line);
		cell(out, buf);
		cell(out, l->said);
		cell(out, l->measured);
		cell(out, impact_lint_verdict(l));
		sb_adds(out, "<td><code>");
		xml_text(out, s->text);
		sb_adds(out, "</code></td></tr>\n");
	}
	sb_adds(out, "</table>\n");
}

void impact_render_html(const struct impact *imp, struct strbuf *out)
{
	char **lanes = NULL;
	size_t n_lanes = 0, alloc = 0;

	for (size_t i = 0; i < imp->n_stmts; i++)
		for (size_t k = 0; k < imp->stmts[i].n_rels; k++) {
			const struct impact_rel *r = &imp->stmts[i].rels[k];
			if (!lane_rel(r) || has_name(lanes, n_lanes, r->name))
				continue;
			ALLOC_GROW(lanes, n_lanes + 1, alloc);
			lanes[n_lanes++] = r->name;
		}
	sb_adds(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE html>\n"
		"<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n"
		"<meta charset=\"UTF-8\"/>\n<title>safe-migrate impact report</title>\n"
		"<style>\nbody{font-family:sans-serif;margin:1.5em}"
		"table{border-collapse:collapse;font-size:13px}"
		"td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
		"td.reads{background:#f5b7b1}td.writes{background:#f8c471}"
		"td.ddl{background:#fcf3cf}tr.contradicted{background:#f5b7b1}\n</style>\n</head>\n<body>\n"
		"<h1>safe-migrate impact report</h1>\n<p class=\"rehearsal\">");
	if (!strcmp(imp->rehearsal, "in-place"))
		sb_adds(out, "In-place rehearsal: the live database, rolled back. These locks were "
			"really held on it while the dry run ran.");
	else if (!strcmp(imp->rehearsal, "rehearse-url"))
		sb_adds(out, "Rehearsal on a restored snapshot (--rehearse-url): durations are "
			"those of the real data.");
	else
		xml_text(out, imp->rehearsal);
	sb_adds(out, "</p>\n");
	summary(imp, out);
	sb_adds(out, "<h2>Timeline</h2>\n");
	svg(imp, lanes, n_lanes, out);
	statements(imp, out);
	objects(imp, out);
	lint_checks(imp, out);
	sb_adds(out, "</body>\n</html>\n");
	free(lanes);
}
