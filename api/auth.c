/* auth.c — bearer API keys looked up by their SHA-256 through sluice.authenticate. */
#include "api/auth.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "api/session.h"
#include "common/crypto.h"
#include "common/str.h"

static const char key_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

int
api_bearer_key(const char *authorization, char *key)
{
	const char *p = authorization;
	size_t n;

	key[0] = '\0';
	if (!p || strncasecmp(p, "Bearer", 6) || (p[6] != ' ' && p[6] != '\t'))
		return SL_EAUTH;
	p += 6;
	while (*p == ' ' || *p == '\t')
		p++;
	n = strlen(p);
	while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
		n--;
	if (n != API_KEY_LEN || strncmp(p, "sk_", 3) || strspn(p + 3, key_alphabet) < n - 3)
		return SL_EAUTH;
	memcpy(key, p, n);
	key[n] = '\0';
	return 0;
}

static int
unauthorized(struct api_ctx *c, const char *challenge, const char *msg, struct sl_err *err)
{
	/* If even the header cannot be added, the 401 still goes out without it. */
	(void)!api_add_header(c->resp, "WWW-Authenticate", "%s", challenge);
	return api_fail(err, 401, NULL, "%s", msg);
}

int
api_authenticate(struct api_ctx *c, const char *scope, struct sl_err *err)
{
	char key[API_KEY_LEN + 1], hex[65], bytea[68];
	unsigned char digest[32];
	const char *params[2] = { bytea, scope };
	const char *granted;
	struct sl_db *db;
	PGresult *res = NULL;
	int rc;

	if (!c->req->authorization) {
		rc = unauthorized(c, "Bearer realm=\"sluice\"",
		                  "an API key is required: Authorization: Bearer <key>", err);
		goto out;
	}
	if (api_bearer_key(c->req->authorization, key)) {
		rc = unauthorized(c, "Bearer realm=\"sluice\", error=\"invalid_token\"",
		                  "the API key is not valid", err);
		goto out;
	}
	sl_sha256(key, strlen(key), digest);
	memset(key, 0, sizeof(key));
	sl_hex(digest, sizeof(digest), hex);
	memcpy(bytea, "\\x", 2);
	memcpy(bytea + 2, hex, sizeof(hex));

	rc = api_db(c, &db, err);
	if (rc)
		goto out;
	rc = sl_db_query(db, &res,
	                 "SELECT a.key_id, a.org_id, sluice.scope_grants(a.scopes, $2) AS granted"
	                 "  FROM sluice.authenticate($1::bytea) a",
	                 2, params, err);
	if (rc)
		goto out;
	if (PQntuples(res) != 1) {
		/* Unknown and revoked keys get the same answer. */
		rc = unauthorized(c, "Bearer realm=\"sluice\", error=\"invalid_token\"",
		                  "the API key is not valid", err);
		goto out;
	}
	if (sl_parse_ll(sl_pg_get(res, 0, "key_id"), 1, INT64_MAX, &c->key_id) ||
	    sl_parse_ll(sl_pg_get(res, 0, "org_id"), 1, INT64_MAX, &c->org_id)) {
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "sluice.authenticate returned a bad row");
		goto out;
	}
	granted = sl_pg_get(res, 0, "granted");
	if (!granted || strcmp(granted, "t")) {
		(void)!api_add_header(c->resp, "WWW-Authenticate",
		                      "Bearer realm=\"sluice\", error=\"insufficient_scope\", scope=\"%s\"",
		                      scope);
		rc = api_fail(err, 403, NULL, "this API key lacks the %s scope", scope);
		goto out;
	}
out:
	PQclear(res);
	return rc;
}
