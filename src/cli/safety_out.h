/*
 * safety_out: how the CLI shows safety findings (cmd_safety.c), shared with
 * the pipeline's safety ports (pipeline_ports.c).
 */
#ifndef SM_SAFETY_OUT_H
#define SM_SAFETY_OUT_H

#include <cjson/cJSON.h>

#include "finding.h"

/* Prints "LEVEL name: message" (and the hint) for each finding on stdout;
 * PASS findings only when show_pass. */
void cli_print_findings(const struct finding_list *l, int show_pass);
/* Appends each finding to arr as a JSON object (arr may be NULL). */
void cli_findings_to_json(cJSON *arr, const struct finding_list *l);

#endif
