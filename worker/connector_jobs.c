/* connector_jobs.c — oauth.refresh and connector.check, the kinds every connector has. */
#include "worker/connector_jobs.h"

#include <stdio.h>
#include <string.h>

#include "adapters/connector_api.h"
#include "adapters/credential.h"
#include "adapters/http.h"
#include "common/alloc.h"
#include "common/buf.h"
#include "common/json.h"
#include "common/str.h"

/* Both kinds need a connector; a job without one is a producer's mistake. */
static int
need_connector(const struct sl_job *job, struct sl_err *err)
{
	if (job->connector_id)
		return 0;
	return sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "%s jobs need a connector_id", job->kind);
}

int
sl_run_oauth_refresh(struct sl_jobctx *ctx, const struct sl_job *job, json_object **result,
                     struct sl_err *err)
{
	struct sl_cred_env env;
	int rc, refreshed = 0;

	rc = need_connector(job, err);
	if (!rc)
		rc = sl_job_cred_env(ctx, &env, err);
	if (!rc)
		rc = sl_credential_refresh(&env, job->connector_id, 0, &refreshed, err);
	if (rc)
		return rc;
	*result = json_object_new_object();
	if (*result)
		json_object_object_add(*result, "refreshed", json_object_new_boolean(refreshed));
	return 0;
}

/* Records a check's outcome in the connector's health. */
static void
record_check(struct sl_db *db, const char *connector_id, int ok, long long latency_ms,
             const char *message)
{
	char latency[24];
	struct sl_err ignored;
	const char *params[] = { connector_id, ok ? "true" : "false", latency, message };

	snprintf(latency, sizeof(latency), "%lld", latency_ms);
	(void)!sl_db_exec(db, "SELECT sluice.record_connector_check($1::uuid, $2::boolean,"
	                  " $3::integer, $4)", 4, params, &ignored);
}

void
sl_connector_quota_check(struct sl_db *db, const struct sl_job *job,
                         const struct sl_http_response *resp)
{
	long ms = sl_http_quota_exhausted_ms(resp);
	char id[24], delay[24];
	const char *params[] = { id, delay, "the provider reports no calls left until its window resets" };
	struct sl_err ignored;

	if (ms < 0)
		return;
	snprintf(id, sizeof(id), "%lld", job->id);
	snprintf(delay, sizeof(delay), "%ld", ms);
	(void)!sl_db_exec(db, "SELECT sluice.rate_limit_hit($1::bigint, clock_timestamp()"
	                  " + make_interval(secs => $2::bigint / 1000.0), $3)", 3, params, &ignored);
}

int
sl_run_connector_check(struct sl_jobctx *ctx, const struct sl_job *job, json_object **result,
                       struct sl_err *err)
{
	struct sl_cred_env env;
	struct sl_http_response resp;
	const char *path = "";
	int rc;

	sl_http_response_init(&resp);
	rc = need_connector(job, err);
	if (!rc)
		rc = sl_json_get_str(job->payload, "path", 1000, &path, NULL, err);
	if (!rc && path[0] && path[0] != '/')
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "payload.path must start with '/'");
	if (rc) {
		err->retry = SL_RETRY_NO;
		goto out;
	}
	rc = sl_job_cred_env(ctx, &env, err);
	if (rc)
		goto out;
	rc = sl_connector_get(&env, job->connector_id, path, "connector check", 1u << 20, 0, &resp,
	                      err);
	if (rc && resp.status == 0 && err->code != SL_EHTTP && err->code != SL_ETIMEOUT)
		goto out;   /* failed before the call (no URL, no token): not the API's health */
	record_check(env.db, job->connector_id, rc == 0, resp.elapsed_ms, rc ? err->msg : NULL);
	if (rc)
		goto out;
	sl_connector_quota_check(env.db, job, &resp);
	*result = json_object_new_object();
	if (*result) {
		json_object_object_add(*result, "status", json_object_new_int64(resp.status));
		json_object_object_add(*result, "latency_ms", json_object_new_int64(resp.elapsed_ms));
	}
out:
	sl_http_response_release(&resp);
	return rc;
}

int
sl_store_page(struct sl_db *db, const char *sql, int nparams, const char *const *params,
              const char *what, const char **outcome, struct sl_err *err)
{
	PGresult *res = NULL;
	const char *v;
	int rc;

	rc = sl_db_query(db, &res, sql, nparams, params, err);
	if (rc && err->code == SL_EDB && !strncmp(err->sqlstate, "22", 2))
		rc = sl_err_set(err, SL_EHTTP, SL_RETRY_BACKOFF, "%s: %s", what, err->msg);
	if (!rc) {
		v = sl_pg_get(res, 0, "outcome");
		*outcome = !v ? "skipped" : !strcmp(v, "completed") ? "completed"
		         : !strcmp(v, "stored") ? "stored" : "skipped";
	}
	PQclear(res);
	return rc;
}
