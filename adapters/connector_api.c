/* connector_api.c — one authenticated GET of a connector's API (connector.check, report.fetch). */
#include "adapters/connector_api.h"

#include <string.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/db.h"
#include "common/secret.h"
#include "common/str.h"

/* The connector's bearer token, whatever kind of credential holds it.  *token: sl_credential_free. */
static int
bearer_token(const struct sl_cred_env *env, const char *connector_id, const char *auth_kind,
             char **token, struct sl_err *err)
{
	json_object *secrets = NULL, *t;
	int rc;

	*token = NULL;
	if (!strncmp(auth_kind, "oauth2", 6))
		return sl_credential_access_token(env, connector_id, token, err);
	if (strcmp(auth_kind, "bearer_token"))
		return sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "a generic call does not know how to "
		                  "authenticate %s connectors; their adapter does", auth_kind);
	rc = sl_credential_load(env, connector_id, 0, &secrets, NULL, err);
	if (rc)
		return rc;
	if (json_object_object_get_ex(secrets, "token", &t) && json_object_is_type(t, json_type_string))
		*token = sl_strdup(json_object_get_string(t));
	json_object_put(secrets);
	if (!*token)
		return sl_err_set(err, SL_EAUTH, SL_RETRY_NO, "connector %s has no token", connector_id);
	return 0;
}

int
sl_connector_get(const struct sl_cred_env *env, const char *connector_id, const char *path_query,
                 const char *what, size_t max_body, long timeout_ms,
                 struct sl_http_response *resp, struct sl_err *err)
{
	struct sl_buf url, auth;
	PGresult *res = NULL;
	char *token = NULL;
	const char *base;
	int rc;

	sl_buf_init(&url, 8192);
	sl_buf_init(&auth, 8192);
	rc = sl_db_query(env->db, &res, "SELECT auth_kind, api_base_url"
	                 " FROM sluice.connector_endpoints($1::uuid)", 1,
	                 (const char *const[]){ connector_id }, err);
	if (rc)
		goto out;
	base = PQntuples(res) == 1 ? sl_pg_get(res, 0, "api_base_url") : NULL;
	if (!base) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "connector %s has no API base URL",
		                connector_id);
		goto out;
	}
	rc = bearer_token(env, connector_id, sl_pg_get(res, 0, "auth_kind"), &token, err);
	if (rc)
		goto out;
	if (sl_buf_addf(&url, "%s%s", base, path_query) ||
	    sl_buf_addf(&auth, "Authorization: Bearer %s", token)) {
		rc = sl_err_set(err, SL_ETOOLARGE, SL_RETRY_NO, "%s: URL or token too long", what);
		goto out;
	}
	{
		const char *headers[] = { auth.data, "Accept: application/json", NULL };
		struct sl_http_request req = {
			.method = "GET", .url = url.data, .headers = headers,
			.timeout_ms = timeout_ms > 0 ? timeout_ms : env->timeout_ms,
			.ca_file = env->ca_file, .max_body = max_body,
		};

		rc = sl_http_do(&req, resp, err);
	}
	if (!rc)
		rc = sl_http_check(resp, what, err);
	if (rc && err->retry == SL_RETRY_REAUTH)
		err->retry = SL_RETRY_BACKOFF;   /* a refused token: the next attempt refreshes */
out:
	sl_credential_free(token);
	sl_secret_wipe(&auth);
	sl_buf_release(&url);
	PQclear(res);
	return rc;
}
