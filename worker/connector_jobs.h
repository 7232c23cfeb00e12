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

#endif
