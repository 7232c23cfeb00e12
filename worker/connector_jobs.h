/* connector_jobs.h — job kinds every connector has, whatever its provider: token refresh and a health check. */
#ifndef SL_CONNECTOR_JOBS_H
#define SL_CONNECTOR_JOBS_H

#include "adapters/http.h"
#include "worker/job.h"

/*
 * oauth.refresh — refreshes the job's connector's access token when it is
 * due (sl_credential_refresh with seen_version 0); the first run of a
 * client-credentials connector fetches its first token and connects it.
 * Result {"refreshed": bool}.
 */
int sl_run_oauth_refresh(struct sl_jobctx *ctx, const struct sl_job *job, json_object **result,
                         struct sl_err *err);

/*
 * connector.check — one authenticated GET of the connector's API
 * (api_base_url + payload.path, default "") with its current access token
 * or bearer token, refreshing first when the token has expired.  Records
 * the outcome in the connector's health (sluice.record_connector_check).
 * Result {"status": HTTP status, "latency_ms": N}.
 */
int sl_run_connector_check(struct sl_jobctx *ctx, const struct sl_job *job,
                           json_object **result, struct sl_err *err);

/*
 * A provider whose answer says no calls are left until its window resets:
 * the job's rate-limit bucket is blocked until then for every worker
 * (sluice.rate_limit_hit), before the next call meets a 429.  Errors are
 * ignored: the 429 would say the same.
 */
void sl_connector_quota_check(struct sl_db *db, const struct sl_job *job,
                              const struct sl_http_response *resp);

/*
 * Hands a page from a provider to the SQL that stores it: runs sql, whose
 * one column "outcome" is 'stored', 'completed' or 'skipped', and sets
 * *outcome to that (a static string).  The page reaches PostgreSQL as text
 * and is parsed there (jsonb): a page that is not JSON, or not what the
 * store function takes (SQLSTATE class 22), is the provider's fault, so
 * SL_EHTTP with SL_RETRY_BACKOFF and the message "<what>: <PostgreSQL's>".
 */
int sl_store_page(struct sl_db *db, const char *sql, int nparams, const char *const *params,
                  const char *what, const char **outcome, struct sl_err *err)
	__attribute__((warn_unused_result));

#endif
