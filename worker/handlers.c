/* handlers.c — the registry of job kinds, and the built-in kinds for tests and benchmarks. */
#include "worker/handlers.h"

#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "worker/connector_jobs.h"
#include "worker/report_jobs.h"
#include "worker/woocommerce_jobs.h"

/* noop: does nothing, successfully.  The benchmark's unit of work. */
static int
run_noop(struct sl_jobctx *ctx, const struct sl_job *job, json_object **result,
         struct sl_err *err)
{
	(void)ctx;
	(void)job;
	(void)result;
	(void)err;
	return 0;
}

/* sleep: {"ms": N} — waits N milliseconds, heartbeating, then succeeds. */
static int
run_sleep(struct sl_jobctx *ctx, const struct sl_job *job, json_object **result,
          struct sl_err *err)
{
	long long ms = 0;
	int rc;

	(void)result;
	rc = sl_json_get_int(job->payload, "ms", 0, 24LL * 3600 * 1000, &ms, NULL, err);
	if (rc) {
		err->retry = SL_RETRY_NO;
		return rc;
	}
	return sl_job_wait(ctx, ms, err);
}

/*
 * fail: {"error": "text", "permanent": bool} — fails with that error; a
 * permanent failure ends the job at once, otherwise it is retried.
 */
static int
run_fail(struct sl_jobctx *ctx, const struct sl_job *job, json_object **result,
         struct sl_err *err)
{
	const char *message = "failed on purpose";
	int permanent = 0, rc;

	(void)ctx;
	(void)result;
	rc = sl_json_get_str(job->payload, "error", 1000, &message, NULL, err);
	if (!rc)
		rc = sl_json_get_bool(job->payload, "permanent", &permanent, NULL, err);
	if (rc) {
		err->retry = SL_RETRY_NO;
		return rc;
	}
	return sl_err_set(err, SL_EINVAL, permanent ? SL_RETRY_NO : SL_RETRY_BACKOFF,
	                  "%s", message);
}

/* Every kind this worker runs.  Adapters add their kinds here. */
static const struct sl_handler handlers[] = {
	{ .kind = "noop",  .run = run_noop,  .summary = "does nothing (benchmarks, tests)" },
	{ .kind = "sleep", .run = run_sleep, .summary = "waits payload.ms milliseconds, heartbeating" },
	{ .kind = "fail",  .run = run_fail,
	  .summary = "fails with payload.error; payload.permanent skips the retries" },
	{ .kind = "oauth.refresh", .run = sl_run_oauth_refresh,
	  .summary = "refreshes the connector's OAuth access token when it is due" },
	{ .kind = "connector.check", .run = sl_run_connector_check,
	  .summary = "one authenticated GET of the connector's API; records its health" },
	{ .kind = "report.fetch", .run = sl_run_report_fetch,
	  .summary = "fetches and stores one page of a fetch batch (POST /api/v1/connectors/fetch)" },
	{ .kind = "woocommerce.sync", .run = sl_run_woocommerce_sync,
	  .summary = "makes a WooCommerce sync run's next call and stores its page (seed 002)" },
};

#define N_HANDLERS (sizeof(handlers) / sizeof(handlers[0]))

const struct sl_handler *
sl_handler_find(const char *kind)
{
	size_t i;

	for (i = 0; i < N_HANDLERS; i++) {
		if (!strcmp(handlers[i].kind, kind))
			return &handlers[i];
	}
	return NULL;
}

int
sl_handlers_check(struct sl_err *err)
{
	size_t i, j;

	for (i = 0; i < N_HANDLERS; i++) {
		if (!handlers[i].kind || !handlers[i].run || strlen(handlers[i].kind) > 64)
			return sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "handler %zu is incomplete", i);
		for (j = 0; j < i; j++) {
			if (!strcmp(handlers[i].kind, handlers[j].kind))
				return sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO,
				                  "kind %s is registered twice", handlers[i].kind);
		}
	}
	return 0;
}

void
sl_handlers_print(void)
{
	size_t i;

	for (i = 0; i < N_HANDLERS; i++)
		printf("%-16s %s\n", handlers[i].kind, handlers[i].summary);
}
