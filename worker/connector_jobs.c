/* connector_jobs.c — oauth.refresh and connector.check, the kinds every connector has. */
#include "worker/connector_jobs.h"

#include <stdio.h>
#include <string.h>

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

/*
 * A provider whose answer says no calls are left until its window resets:
 * the job's rate-limit bucket is blocked until then for every worker
 * (sluice.rate_limit_hit), before the next call meets a 429.
 */
static void
quota_check(struct sl_db *db, const struct sl_job *job, const struct sl_http_response *resp)
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
	struct sl_buf url, auth;
	PGresult *res = NULL;
	json_object *secrets = NULL;
	char *token = NULL;
	const char *path = "", *base, *kind;
	int rc;

	sl_http_response_init(&resp);
	sl_buf_init(&url, 4096);
	sl_buf_init(&auth, 8192);
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
	if (!rc)
		rc = sl_db_query(env.db, &res, "SELECT auth_kind, api_base_url"
		                 " FROM sluice.connector_endpoints($1::uuid)", 1,
		                 (const char *const[]){ job->connector_id }, err);
	if (rc)
		goto out;
	base = PQntuples(res) == 1 ? sl_pg_get(res, 0, "api_base_url") : NULL;
	kind = PQntuples(res) == 1 ? sl_pg_get(res, 0, "auth_kind") : "";
	if (!base) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO,
		                "connector %s has no API base URL to check", job->connector_id);
		goto out;
	}
	if (!strncmp(kind, "oauth2", 6)) {
		rc = sl_credential_access_token(&env, job->connector_id, &token, err);
	} else if (!strcmp(kind, "bearer_token")) {
		rc = sl_credential_load(&env, job->connector_id, 0, &secrets, NULL, err);
		if (!rc) {
			json_object *t;

			if (json_object_object_get_ex(secrets, "token", &t) &&
			    json_object_is_type(t, json_type_string))
				token = sl_strdup(json_object_get_string(t));
			if (!token)
				rc = sl_err_set(err, SL_EAUTH, SL_RETRY_NO,
				                "connector %s has no token", job->connector_id);
		}
	} else {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO,
		                "connector.check does not know how to authenticate %s connectors; "
		                "their adapter checks them", kind);
	}
	if (rc)
		goto out;
	if (sl_buf_addf(&url, "%s%s", base, path) || sl_buf_addf(&auth, "Authorization: Bearer %s", token)) {
		rc = sl_err_set(err, SL_ETOOLARGE, SL_RETRY_NO, "check URL or token too long");
		goto out;
	}
	{
		const char *headers[] = { auth.data, "Accept: application/json", NULL };
		struct sl_http_request req = {
			.method = "GET", .url = url.data, .headers = headers,
			.timeout_ms = env.timeout_ms, .ca_file = env.ca_file,
			.max_body = 1u << 20,
		};

		rc = sl_http_do(&req, &resp, err);
	}
	if (!rc)
		rc = sl_http_check(&resp, "connector check", err);
	if (rc && err->retry == SL_RETRY_REAUTH)
		err->retry = SL_RETRY_BACKOFF;   /* a refused token: the next attempt refreshes */
	record_check(env.db, job->connector_id, rc == 0, resp.elapsed_ms, rc ? err->msg : NULL);
	if (rc)
		goto out;
	quota_check(env.db, job, &resp);
	*result = json_object_new_object();
	if (*result) {
		json_object_object_add(*result, "status", json_object_new_int64(resp.status));
		json_object_object_add(*result, "latency_ms", json_object_new_int64(resp.elapsed_ms));
	}
out:
	sl_credential_free(token);
	sl_secret_wipe(&auth);
	sl_buf_release(&url);
	json_object_put(secrets);
	sl_http_response_release(&resp);
	PQclear(res);
	return rc;
}
