/* job_input.h — checking a POST /api/v1/jobs body field by field before it reaches the database. */
#ifndef SL_API_JOB_INPUT_H
#define SL_API_JOB_INPUT_H

#include <stddef.h>
#include <json-c/json.h>

#include "common/err.h"

/*
 * Checks the parsed body of POST /api/v1/jobs: either one job
 *   {"kind": …, "payload": {…}, "priority": 1-5, "run_at": RFC 3339,
 *    "max_attempts": 1-1000, "dedupe_key": 1-200 characters, "connector_id": UUID}
 * of which only kind is required (null means absent), or
 *   {"jobs": [ 1 to SL_MAX_BATCH_JOBS such objects ]}.
 * Members it does not know are refused, not ignored: a misspelt "priorty"
 * must not quietly become the default.
 *
 * On success returns 0 with *batch = 1 for the {"jobs": […]} form and *n
 * the number of jobs.  On error returns SL_EINVAL with err->http_status 422,
 * err->field naming the first field at fault ("kind", "jobs[3].priority";
 * empty when the body as a whole is wrong) and err->msg saying what a good
 * value looks like.
 */
int api_jobs_check(json_object *body, int *batch, size_t *n, struct sl_err *err)
	__attribute__((warn_unused_result));

/* Whether s is an RFC 3339 date-time: 2024-12-23T10:00:00Z, …T10:00:00.5+02:00. */
int api_is_rfc3339(const char *s);

/* Whether s is a UUID in canonical 8-4-4-4-12 hex form (either case). */
int api_is_uuid(const char *s);

/* Whether s is a job kind: ^[a-z][a-z0-9_.:-]{0,63}$, as sluice.job checks. */
int api_is_kind(const char *s);

#endif
