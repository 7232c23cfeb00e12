/* oauth.c — the OAuth 2.0 authorization code flow: initiate, and the callback by API and by browser. */

/*
 * DESIGN
 *
 * 1. Initiate.  The org's OAuth app (sl_oauth_app_load), the provider's
 *    endpoints (sluice.connector_endpoints for a connector being
 *    re-authorised, sluice.provider_for otherwise) and an allow-listed
 *    redirect URI (sluice.redirect_uri_allowed, exact match, RFC 9700 2.1)
 *    make an authorization URL (RFC 6749 4.1.1) with PKCE (RFC 7636).  The
 *    state is 43 random characters; only its SHA-256 is stored
 *    (sluice.oauth_state, with the flow's org, type, redirect URI, return
 *    URL, connector, label and actor, and expires_at = now() +
 *    oauth_state_ttl).  The PKCE verifier is derived from the state and the
 *    master key (sl_secret_derive "pkce"), so it is never stored: a reader
 *    of the database cannot finish the flow.
 *
 * 2. Callback.  Transaction 1 takes the state (sluice.take_oauth_state) and
 *    commits, so a state is spent by its first use even if what follows
 *    fails.  Unknown states (and another org's, for the API route) answer
 *    422, spent ones 409, expired ones 422.  The code is then exchanged for
 *    tokens at the provider's token endpoint inline, with the derived
 *    verifier and the flow's redirect URI (a provider's refusal answers 502
 *    naming its OAuth error code).  Transaction 2 creates the connector
 *    unless the flow re-authorises one, stores the tokens through
 *    sl_credential_connected (which also records the account, sets the
 *    connector connected and emits oauth_connected) and writes the audit row.
 *
 * 3. Two callbacks.  POST /api/v1/connectors/oauth/callback is for a client
 *    holding an API key (seed 001).  GET /oauth/callback is where a browser
 *    lands from the provider: it has no key, so the flow's org and actor
 *    come from the state, and this file writes its audit rows itself.  It
 *    answers 302 to the flow's return_url with connector_id and
 *    status=connected appended (or error=... when it failed), or a short
 *    HTML page when the flow has no return URL.
 *
 * 4. Secrets.  The state, the code, the client secret and the tokens are
 *    registered with the log's redaction list as soon as they are known,
 *    never reach an answer (but the state, to its owner, at initiate), an
 *    audit detail or a database parameter, and an error message that would
 *    echo one of them is replaced by a generic sentence.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "adapters/credential.h"
#include "adapters/http.h"
#include "adapters/oauth.h"
#include "api/api.h"
#include "api/audit.h"
#include "api/http.h"
#include "api/job_input.h"
#include "api/session.h"
#include "common/alloc.h"
#include "common/buf.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/str.h"

#define STATE_LEN   43
#define URL_MAX     2000    /* as sluice.oauth_redirect_uri's CHECK */
#define CODE_MAX    4096
#define TYPE_MAX    64
#define LABEL_MAX   200
#define SCOPES_MAX  64
#define URL_BUF_MAX (64u << 10)

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* What a taken state says about its flow. */
struct flow {
	int       known;                   /* the state exists: org and actor are set */
	long long org_id;
	char      org[32];
	char      actor[128];
	char      type[40];
	char      redirect_uri[URL_MAX + 1];
	char      return_url[URL_MAX + 1]; /* "" when none */
	char      connector_id[37];        /* "" when the flow makes a new connector */
	char      label[4 * LABEL_MAX + 1];/* "" when none */
};

/* What a completed flow made. */
struct outcome {
	char         connector_id[37];
	char         status[32];
	int          created;
	json_object *accounts;             /* [{id, name}] */
	char         error[64];            /* on failure: an OAuth-style error code for return_url */
};

static int
oom(struct sl_err *err)
{
	return sl_err_set(err, SL_ENOMEM, SL_RETRY_NO, "out of memory");
}

static void
lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* The state's SHA-256 as a bytea parameter, "\x" + 64 hex digits, into out[67]. */
static void
state_hash_param(const char *state, char out[67])
{
	unsigned char digest[32];
	char hex[65];

	sl_sha256(state, strlen(state), digest);
	sl_hex(digest, sizeof(digest), hex);
	memcpy(out, "\\x", 2);
	memcpy(out + 2, hex, sizeof(hex));
}

/* Whether s can be a state we made: 43 characters of [A-Za-z0-9]. */
static int
state_shape(const char *s)
{
	return strlen(s) == STATE_LEN &&
	       strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") == STATE_LEN;
}

/* A message that would carry a secret is replaced: the answer and the log never hold one. */
static void
scrub(struct sl_err *err, const char *const *secrets)
{
	for (; *secrets; secrets++) {
		if (**secrets && (strstr(err->msg, *secrets) || strstr(err->detail, *secrets))) {
			snprintf(err->msg, sizeof(err->msg), "the provider's answer could not be shown");
			err->detail[0] = '\0';
			return;
		}
	}
}

/*
 * One audit row through sluice.audit_write with an explicit org and actor:
 * the browser's callback has no key, so they come from the state.  Runs in
 * the open transaction, if any.
 */
static int
audit_as(struct api_ctx *c, struct sl_db *db, long long org_id, const char *actor,
         const char *outcome, int http_status, const char *target, json_object *detail,
         struct sl_err *err)
{
	char org[32], status[16];
	const char *params[7] = { org, actor, "oauth.callback", target, outcome, status,
	                          c->req->request_id };
	const char *all[8];
	int i;

	snprintf(org, sizeof(org), "%lld", org_id);
	snprintf(status, sizeof(status), "%d", http_status);
	for (i = 0; i < 7; i++)
		all[i] = params[i];
	all[7] = detail ? sl_json_text(detail) : "{}";
	if (!all[7])
		return oom(err);
	return sl_db_exec(db,
	                  "SELECT sluice.audit_write($1::bigint, $2, $3, $4, $5, $6::integer, $7,"
	                  "                          $8::jsonb)",
	                  8, all, err);
}

/* ---- the provider as the flow sees it -------------------------------------------- */

struct endpoints {
	char         name[128];
	char         auth_kind[32];
	char         token_auth[32];
	char        *authorize_url;   /* heap; NULL when the provider has none */
	char        *token_url;
	json_object *scopes;          /* JSON array of strings */
	json_object *params;          /* JSON object: extra authorization request parameters */
};

static void
endpoints_release(struct endpoints *e)
{
	sl_free(e->authorize_url);
	sl_free(e->token_url);
	json_object_put(e->scopes);
	json_object_put(e->params);
	memset(e, 0, sizeof(*e));
}

static int
dup_col(const PGresult *res, const char *col, char **out, struct sl_err *err)
{
	const char *v = sl_pg_get(res, 0, col);

	*out = NULL;
	if (!v)
		return 0;
	*out = sl_strdup(v);
	return *out ? 0 : oom(err);
}

/*
 * The endpoints of `type` for org: with connector_id, that connector's
 * (overrides applied, placeholders filled from its config); else the
 * provider's, which may still hold {placeholders}.  Unknown type: 422 field
 * connector_type.
 */
static int
endpoints_load(struct sl_db *db, const char *org, const char *type, const char *connector_id,
               struct endpoints *e, struct sl_err *err)
{
	static const char *const plain[] = { NULL };
	const char *params[3] = { org, type, connector_id && *connector_id ? connector_id : NULL };
	const char *scopes, *extra;
	PGresult *res = NULL;
	int rc;

	memset(e, 0, sizeof(*e));
	rc = api_query_col(db, &res,
	                   "SELECT p.name, p.auth_kind, p.token_auth,"
	                   "       coalesce(x.authorize_url, p.authorize_url) AS authorize_url,"
	                   "       coalesce(x.token_url, p.token_url) AS token_url,"
	                   "       to_json(p.scopes)::text AS scopes, p.authorize_params::text AS params"
	                   "  FROM sluice.provider_for($1::bigint, $2) p"
	                   "  LEFT JOIN sluice.connector_endpoints($3::uuid) x ON $3::uuid IS NOT NULL",
	                   3, params, "config.", plain, err);
	if (rc) {
		if (err->field[0]) {
			/* The connector's config does not make a valid URL. */
			char msg[sizeof(err->msg)];

			memcpy(msg, err->msg, sizeof(msg));
			rc = api_fail(err, 422, "connector_id", "the connector's endpoints cannot be "
			              "built: %s", msg);
		}
		goto out;
	}
	if (PQntuples(res) != 1) {
		rc = api_fail(err, 422, "connector_type", "unknown connector type \"%.64s\"", type);
		goto out;
	}
	snprintf(e->name, sizeof(e->name), "%s", sl_pg_get(res, 0, "name"));
	snprintf(e->auth_kind, sizeof(e->auth_kind), "%s", sl_pg_get(res, 0, "auth_kind"));
	snprintf(e->token_auth, sizeof(e->token_auth), "%s", sl_pg_get(res, 0, "token_auth"));
	rc = dup_col(res, "authorize_url", &e->authorize_url, err);
	if (!rc)
		rc = dup_col(res, "token_url", &e->token_url, err);
	if (rc)
		goto out;
	scopes = sl_pg_get(res, 0, "scopes");
	extra = sl_pg_get(res, 0, "params");
	rc = sl_json_parse(scopes, strlen(scopes), &e->scopes, err);
	if (!rc)
		rc = sl_json_parse(extra, strlen(extra), &e->params, err);
	if (rc || !json_object_is_type(e->scopes, json_type_array) ||
	    json_object_array_length(e->scopes) > SCOPES_MAX) {
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "sluice.provider_for: bad scopes");
		goto out;
	}
out:
	PQclear(res);
	return rc;
}

/* The org's OAuth app for type; 409 saying how to configure it when there is none. */
static int
app_load(struct api_ctx *c, struct sl_db *db, struct sl_keyring *kr, const char *actor,
         long long org_id, const char *type, const char *provider, char **client_id,
         char **client_secret, struct sl_err *err)
{
	struct sl_cred_env env;
	int rc;

	api_cred_env(c, db, kr, actor, &env);
	rc = sl_oauth_app_load(&env, org_id, type, client_id, client_secret, err);
	if (rc == SL_ENOTFOUND)
		return api_fail(err, 409, NULL, "no OAuth app is configured for %s in this org; an "
		                "operator configures it with `sluicectl oauth-app set %lld %s CLIENT_ID` "
		                "(the client secret on stdin)", provider, org_id, type);
	if (rc)
		return api_secret_failure(err);
	if (*client_secret)
		sl_log_add_secret(*client_secret);
	return 0;
}

/* ---- POST /api/v1/connectors/oauth/initiate ----------------------------------------- */

static const char *const initiate_fields[] = {
	"connector_type", "callback_url", "connector_id", "label", "return_url", NULL,
};

/* An optional or required string member, 422 naming it. */
static int
get_str(json_object *body, const char *key, size_t max, int required, const char **out,
        struct sl_err *err)
{
	int present = 0, rc;

	*out = NULL;
	rc = sl_json_get_str(body, key, max, out, &present, err);
	if (rc)
		return api_fail(err, 422, key, "field %s must be a string of at most %zu bytes", key, max);
	if (!present && required)
		return api_fail(err, 422, key, "field %s is required", key);
	return 0;
}

/* Whether the org allows uri as a redirect (exact match). */
static int
uri_allowed(struct sl_db *db, const char *org, const char *uri, int *allowed, struct sl_err *err)
{
	const char *params[2] = { org, uri };
	PGresult *res = NULL;
	int rc;

	*allowed = 0;
	rc = sl_db_query(db, &res, "SELECT sluice.redirect_uri_allowed($1::bigint, $2) AS ok",
	                 2, params, err);
	if (!rc)
		*allowed = sl_pg_get(res, 0, "ok") && !strcmp(sl_pg_get(res, 0, "ok"), "t");
	PQclear(res);
	return rc;
}

int
api_oauth_initiate(struct api_ctx *c, struct sl_err *err)
{
	json_object *body = NULL, *answer = NULL, *detail = NULL;
	struct endpoints ep;
	struct sl_keyring *kr = NULL;
	struct sl_db *db = NULL;
	struct sl_buf url;
	PGresult *res = NULL;
	char type[TYPE_MAX + 1], conn[37] = "", org[32], actor[40], state[STATE_LEN + 1];
	char hash[67], verifier[44], challenge[44], expires[64];
	const char *s, *callback, *label, *ret, *params[8], *scopes[SCOPES_MAX];
	char *client_id = NULL, *client_secret = NULL;
	size_t i, n_scopes;
	int allowed, rc;

	memset(&ep, 0, sizeof(ep));
	sl_buf_init(&url, URL_BUF_MAX);
	rc = api_body_object(c->req, &body, err);
	if (rc)
		goto out;
	rc = api_body_known_fields(body, initiate_fields, "initiate takes connector_type, "
	                           "callback_url, connector_id, label and return_url", err);
	if (rc)
		goto out;
	rc = get_str(body, "connector_type", TYPE_MAX, 1, &s, err);
	if (rc)
		goto out;
	snprintf(type, sizeof(type), "%s", s);
	lower(type);
	rc = get_str(body, "callback_url", URL_MAX, 1, &callback, err);
	if (rc)
		goto out;
	rc = get_str(body, "connector_id", 36, 0, &s, err);
	if (!rc && s && !api_is_uuid(s))
		rc = api_fail(err, 422, "connector_id", "field connector_id must be a UUID");
	if (rc)
		goto out;
	if (s) {
		snprintf(conn, sizeof(conn), "%s", s);
		lower(conn);
	}
	rc = get_str(body, "label", 4 * LABEL_MAX, 0, &label, err);
	if (!rc && label && !api_utf8_len_between(label, 1, LABEL_MAX))
		rc = api_fail(err, 422, "label", "field label must be 1 to 200 characters");
	if (rc)
		goto out;
	rc = get_str(body, "return_url", URL_MAX, 0, &ret, err);
	if (rc)
		goto out;

	rc = api_keyring(c, &kr, err);
	if (rc)
		goto out;
	rc = api_db(c, &db, err);
	if (rc)
		goto out;
	snprintf(org, sizeof(org), "%lld", c->org_id);
	snprintf(actor, sizeof(actor), "key:%lld", c->key_id);
	if (conn[0]) {
		char ctype[40];

		params[0] = conn;
		params[1] = org;
		rc = sl_db_query(db, &res,
		                 "SELECT c.type FROM sluice.connector c"
		                 " WHERE c.id = $1::uuid AND c.org_id = $2::bigint AND c.deleted_at IS NULL",
		                 2, params, err);
		if (rc)
			goto out;
		if (PQntuples(res) != 1) {
			rc = api_fail(err, 422, "connector_id", "field connector_id names no connector of "
			              "this org");
			goto out;
		}
		snprintf(ctype, sizeof(ctype), "%s", sl_pg_get(res, 0, "type"));
		PQclear(res);
		res = NULL;
		if (strcmp(ctype, type)) {
			rc = api_fail(err, 422, "connector_id", "field connector_id names a %s connector, "
			              "not a %s one", ctype, type);
			goto out;
		}
		snprintf(c->target, sizeof(c->target), "connector:%s", conn);
	}
	rc = endpoints_load(db, org, type, conn, &ep, err);
	if (rc)
		goto out;
	if (strcmp(ep.auth_kind, "oauth2_code") || !ep.authorize_url) {
		rc = api_fail(err, 422, "connector_type", "%s connectors do not connect through the "
		              "OAuth authorization code flow", ep.name);
		goto out;
	}
	rc = uri_allowed(db, org, callback, &allowed, err);
	if (rc)
		goto out;
	if (!allowed) {
		rc = api_fail(err, 422, "callback_url", "field callback_url is not one of this org's "
		              "allowed redirect URIs (an operator adds it with sluice.allow_redirect_uri)");
		goto out;
	}
	if (ret) {
		rc = uri_allowed(db, org, ret, &allowed, err);
		if (rc)
			goto out;
		if (!allowed) {
			rc = api_fail(err, 422, "return_url", "field return_url is not one of this org's "
			              "allowed redirect URIs (an operator adds it with "
			              "sluice.allow_redirect_uri)");
			goto out;
		}
	}
	if (strchr(ep.authorize_url, '{')) {
		rc = api_fail(err, 422, "connector_id", "%s connectors need connector_id: their "
		              "authorization URL depends on the connector's config", ep.name);
		goto out;
	}
	rc = app_load(c, db, kr, actor, c->org_id, type, ep.name, &client_id, &client_secret, err);
	if (rc)
		goto out;

	rc = sl_random_token(state, STATE_LEN, err);
	if (rc)
		goto out;
	sl_log_add_secret(state);
	state_hash_param(state, hash);
	sl_secret_derive(kr, "pkce", state, verifier);
	sl_log_add_secret(verifier);
	sl_oauth_pkce_challenge(verifier, challenge);
	n_scopes = json_object_array_length(ep.scopes);
	for (i = 0; i < n_scopes; i++)
		scopes[i] = json_object_get_string(json_object_array_get_idx(ep.scopes, i));
	rc = sl_oauth_authorize_url(&url, ep.authorize_url, client_id, callback, scopes, (int)n_scopes,
	                            state, challenge, ep.params, err);
	if (rc)
		goto out;

	rc = api_tx_begin(c, &db, err);
	if (rc)
		goto out;
	params[0] = hash;
	params[1] = org;
	params[2] = type;
	params[3] = callback;
	params[4] = ret;
	params[5] = conn[0] ? conn : NULL;
	params[6] = label;
	params[7] = actor;
	rc = sl_db_query(db, &res,
	                 "INSERT INTO sluice.oauth_state (state_hash, org_id, type, redirect_uri,"
	                 "                                return_url, connector_id, label, actor,"
	                 "                                expires_at)"
	                 " VALUES ($1::bytea, $2::bigint, $3, $4, $5, $6::uuid, $7, $8,"
	                 "         now() + sluice.setting_interval('oauth_state_ttl'))"
	                 " RETURNING " TS("expires_at") " AS expires_at",
	                 8, params, err);
	if (rc)
		goto out;
	snprintf(expires, sizeof(expires), "%s", sl_pg_get(res, 0, "expires_at"));

	detail = json_object_new_object();
	answer = json_object_new_object();
	if (!detail || !answer) {
		rc = oom(err);
		goto out;
	}
	json_object_object_add(detail, "connector_type", json_object_new_string(type));
	json_object_object_add(detail, "callback_url", json_object_new_string(callback));
	if (ret)
		json_object_object_add(detail, "return_url", json_object_new_string(ret));
	if (conn[0])
		json_object_object_add(detail, "connector_id", json_object_new_string(conn));
	rc = api_audit_one(c, "oauth.initiate", "ok", 200, c->target[0] ? c->target : NULL, detail,
	                   err);
	if (rc)
		goto out;
	json_object_object_add(answer, "authorization_url", json_object_new_string(url.data));
	json_object_object_add(answer, "state", json_object_new_string(state));
	json_object_object_add(answer, "expires_at", json_object_new_string(expires));
	rc = api_respond_json(c->resp, 200, answer, err);
	if (rc)
		goto out;
	rc = api_tx_commit_audited(c, err);
out:
	api_tx_end(c, rc);
	PQclear(res);
	sl_credential_free(client_id);
	sl_credential_free(client_secret);
	endpoints_release(&ep);
	sl_buf_release(&url);
	json_object_put(answer);
	json_object_put(detail);
	json_object_put(body);
	return rc;
}

/* ---- the callback, shared by both routes ----------------------------------------- */

/*
 * Transaction 1 (DESIGN 2): spends the state.  only_org (the caller's org on
 * the API route; 0 on the browser's) makes another org's state unknown, and
 * leaves it unspent.  f->known says whether org and actor were found; the
 * rest of f is set when the state was known and taken.
 */
static int
take_state(struct api_ctx *c, const char *state, long long only_org, struct flow *f,
           struct sl_err *err)
{
	char hash[67];
	const char *params[1] = { hash };
	const char *problem, *v;
	struct sl_db *db = NULL;
	PGresult *res = NULL;
	int rc;

	memset(f, 0, sizeof(*f));
	if (!state_shape(state)) {
		rc = api_fail(err, 422, "state", "state is unknown");
		goto out;
	}
	state_hash_param(state, hash);
	rc = api_tx_begin(c, &db, err);
	if (rc)
		goto out;
	rc = sl_db_query(db, &res,
	                 "SELECT s.org_id, s.actor FROM sluice.oauth_state s"
	                 " WHERE s.state_hash = $1::bytea FOR UPDATE",
	                 1, params, err);
	if (rc)
		goto out;
	if (PQntuples(res) != 1 ||
	    sl_parse_ll(sl_pg_get(res, 0, "org_id"), 1, INT64_MAX, &f->org_id) ||
	    (only_org && f->org_id != only_org)) {
		f->org_id = 0;
		rc = api_fail(err, 422, "state", "state is unknown");
		goto out;
	}
	f->known = 1;
	snprintf(f->org, sizeof(f->org), "%lld", f->org_id);
	snprintf(f->actor, sizeof(f->actor), "%s", sl_pg_get(res, 0, "actor"));
	PQclear(res);
	res = NULL;
	rc = sl_db_query(db, &res,
	                 "SELECT t.problem, t.type, t.redirect_uri, t.return_url, t.connector_id, t.label"
	                 "  FROM sluice.take_oauth_state($1::bytea) t",
	                 1, params, err);
	if (rc)
		goto out;
	if (PQntuples(res) != 1) {
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "sluice.take_oauth_state returned no row");
		goto out;
	}
	snprintf(f->type, sizeof(f->type), "%s", (v = sl_pg_get(res, 0, "type")) ? v : "");
	snprintf(f->redirect_uri, sizeof(f->redirect_uri), "%s",
	         (v = sl_pg_get(res, 0, "redirect_uri")) ? v : "");
	snprintf(f->return_url, sizeof(f->return_url), "%s",
	         (v = sl_pg_get(res, 0, "return_url")) ? v : "");
	snprintf(f->connector_id, sizeof(f->connector_id), "%s",
	         (v = sl_pg_get(res, 0, "connector_id")) ? v : "");
	snprintf(f->label, sizeof(f->label), "%s", (v = sl_pg_get(res, 0, "label")) ? v : "");
	problem = sl_pg_get(res, 0, "problem");
	/* Spent, whatever comes next (single use even if the rest fails). */
	rc = api_tx_commit(c, err);
	if (rc)
		goto out;
	if (f->connector_id[0])
		snprintf(c->target, sizeof(c->target), "connector:%s", f->connector_id);
	if (problem && !strcmp(problem, "used"))
		rc = api_fail(err, 409, NULL, "state was already used");
	else if (problem && !strcmp(problem, "expired"))
		rc = api_fail(err, 422, "state", "state expired");
	else if (problem)
		rc = api_fail(err, 422, "state", "state is unknown");
out:
	api_tx_rollback(c);
	PQclear(res);
	return rc;
}

/* A claim that is a string of 1 to 255 bytes (what the account columns hold), or NULL. */
static const char *
claim(json_object *claims, const char *name)
{
	json_object *v = NULL;

	if (!json_object_object_get_ex(claims, name, &v) || !json_object_is_type(v, json_type_string) ||
	    json_object_get_string_len(v) < 1 || json_object_get_string_len(v) > 255)
		return NULL;
	return json_object_get_string(v);
}

/*
 * The accounts of an OpenID Connect id_token: [{id: sub, name: name or
 * email}], or [] without one.  *account_id and *account_name are borrowed
 * from *claims (put it when done); NULL when absent.
 */
static json_object *
accounts_from(const struct sl_oauth_token *t, const char **account_id, const char **account_name,
              json_object **claims)
{
	json_object *accounts = json_object_new_array(), *acct;

	*account_id = *account_name = NULL;
	*claims = t->id_token ? sl_oauth_id_token_claims(t->id_token) : NULL;
	if (!accounts || !*claims)
		return accounts;
	*account_id = claim(*claims, "sub");
	*account_name = claim(*claims, "name");
	if (!*account_name)
		*account_name = claim(*claims, "email");
	if (!*account_id)
		return accounts;
	acct = json_object_new_object();
	if (!acct)
		return accounts;
	json_object_object_add(acct, "id", json_object_new_string(*account_id));
	json_object_object_add(acct, "name", *account_name ? json_object_new_string(*account_name)
	                                                   : NULL);
	json_object_array_add(accounts, acct);
	return accounts;
}

/*
 * The rest of the flow after the state was taken: the token exchange, then
 * transaction 2 (DESIGN 2).  actor acts for the credential and audit rows.
 * On failure err is set and o->error holds the error code for a return URL;
 * a provider's refusal or an unreachable token endpoint is http_status 502.
 */
static int
complete(struct api_ctx *c, struct sl_keyring *kr, const struct flow *f, const char *state,
         const char *code, const char *actor, struct outcome *o, struct sl_err *err)
{
	static int http_ready;
	json_object *claims = NULL, *detail = NULL;
	struct endpoints ep;
	struct sl_oauth_client oc;
	struct sl_oauth_token tok;
	struct sl_cred_env env;
	struct sl_err xerr;
	struct sl_db *db = NULL;
	PGresult *res = NULL;
	char verifier[44], target[64];
	const char *params[5], *account_id, *account_name;
	char *client_id = NULL, *client_secret = NULL;
	int rc;

	memset(&ep, 0, sizeof(ep));
	memset(&tok, 0, sizeof(tok));
	tok.expires_in = -1;
	snprintf(o->error, sizeof(o->error), "server_error");
	rc = api_db(c, &db, err);
	if (rc)
		goto out;
	rc = endpoints_load(db, f->org, f->type, f->connector_id, &ep, err);
	if (rc)
		goto out;
	if (!ep.token_url || strchr(ep.token_url, '{')) {
		rc = api_fail(err, 409, NULL, "the token endpoint of %s needs a connector's config; "
		              "start the flow again with connector_id", ep.name);
		goto out;
	}
	rc = app_load(c, db, kr, actor, f->org_id, f->type, ep.name, &client_id, &client_secret,
	              err);
	if (rc)
		goto out;

	/* The exchange, inline: a browser or a client is waiting for it. */
	if (!http_ready) {
		rc = sl_http_global_init(err);
		if (rc)
			goto out;
		http_ready = 1;
	}
	sl_secret_derive(kr, "pkce", state, verifier);
	sl_log_add_secret(verifier);
	memset(&oc, 0, sizeof(oc));
	oc.token_url = ep.token_url;
	oc.client_id = client_id;
	oc.client_secret = client_secret;
	oc.auth_post = !strcmp(ep.token_auth, "client_secret_post");
	oc.ca_file = NULL;
	oc.timeout_ms = c->oauth_timeout_ms;
	sl_err_clear(&xerr);
	rc = sl_oauth_exchange_code(&oc, code, f->redirect_uri, verifier, &tok, &xerr);
	if (tok.access_token)
		sl_log_add_secret(tok.access_token);
	if (tok.refresh_token)
		sl_log_add_secret(tok.refresh_token);
	if (tok.id_token)
		sl_log_add_secret(tok.id_token);
	if (rc) {
		const char *secrets[] = { code, state, verifier, client_secret ? client_secret : "",
		                          NULL };
		char msg[sizeof(xerr.msg)];

		scrub(&xerr, secrets);
		memcpy(msg, xerr.msg, sizeof(msg));
		if (tok.error[0]) {
			snprintf(o->error, sizeof(o->error), "%s", tok.error);
			if (strstr(msg, tok.error))
				rc = api_fail(err, 502, NULL, "the token exchange failed: %s", msg);
			else
				rc = api_fail(err, 502, NULL, "the token exchange failed (%s): %s", tok.error, msg);
		} else {
			snprintf(o->error, sizeof(o->error), "temporarily_unavailable");
			rc = api_fail(err, 502, NULL, "the token exchange failed: %s", msg);
		}
		goto out;
	}

	rc = api_tx_begin(c, &db, err);
	if (rc)
		goto out;
	if (f->connector_id[0]) {
		params[0] = f->connector_id;
		params[1] = f->org;
		rc = sl_db_query(db, &res,
		                 "SELECT 1 FROM sluice.connector"
		                 " WHERE id = $1::uuid AND org_id = $2::bigint AND deleted_at IS NULL"
		                 "   FOR UPDATE",
		                 2, params, err);
		if (rc)
			goto out;
		if (PQntuples(res) != 1) {
			rc = api_fail(err, 409, NULL, "the connector was deleted while it was being "
			              "authorised");
			goto out;
		}
		snprintf(o->connector_id, sizeof(o->connector_id), "%s", f->connector_id);
	} else {
		params[0] = f->org;
		params[1] = f->type;
		params[2] = f->label[0] ? f->label : ep.name;
		rc = sl_db_query(db, &res,
		                 "SELECT sluice.create_connector($1::bigint, $2, $3) AS id",
		                 3, params, err);
		if (rc)
			goto out;
		snprintf(o->connector_id, sizeof(o->connector_id), "%s", sl_pg_get(res, 0, "id"));
		o->created = 1;
	}
	PQclear(res);
	res = NULL;
	snprintf(target, sizeof(target), "connector:%s", o->connector_id);
	snprintf(c->target, sizeof(c->target), "%s", target);

	o->accounts = accounts_from(&tok, &account_id, &account_name, &claims);
	if (!o->accounts) {
		rc = oom(err);
		goto out;
	}
	api_cred_env(c, db, kr, actor, &env);
	rc = sl_credential_connected(&env, o->connector_id, &tok, account_id, account_name, err);
	if (rc) {
		rc = api_secret_failure(err);
		goto out;
	}
	params[0] = o->connector_id;
	rc = sl_db_query(db, &res, "SELECT status FROM sluice.connector WHERE id = $1::uuid",
	                 1, params, err);
	if (rc)
		goto out;
	snprintf(o->status, sizeof(o->status), "%s", sl_pg_get(res, 0, "status"));

	detail = json_object_new_object();
	if (!detail) {
		rc = oom(err);
		goto out;
	}
	json_object_object_add(detail, "connector_type", json_object_new_string(f->type));
	json_object_object_add(detail, "created", json_object_new_boolean(o->created));
	if (account_id)
		json_object_object_add(detail, "account_id", json_object_new_string(account_id));
	rc = audit_as(c, db, f->org_id, actor, "ok", 200, target, detail, err);
	if (rc)
		goto out;
	rc = api_tx_commit(c, err);
	if (rc)
		goto out;
	o->error[0] = '\0';
out:
	api_tx_rollback(c);
	PQclear(res);
	sl_oauth_token_release(&tok);
	sl_credential_free(client_id);
	sl_credential_free(client_secret);
	endpoints_release(&ep);
	json_object_put(claims);
	json_object_put(detail);
	return rc;
}

/* ---- POST /api/v1/connectors/oauth/callback ------------------------------------------ */

/* An audit row for a failed callback, in a transaction of its own. */
static void
audit_failure(struct api_ctx *c, const struct flow *f, const char *actor, const char *outcome,
              int status, const char *error, const char *message)
{
	json_object *detail = json_object_new_object();
	struct sl_err aerr;
	struct sl_db *db;

	if (!detail || !f->known)
		goto out;
	if (error)
		json_object_object_add(detail, "error", json_object_new_string(error));
	if (message)
		json_object_object_add(detail, "message", json_object_new_string(message));
	if (f->type[0])
		json_object_object_add(detail, "connector_type", json_object_new_string(f->type));
	if (api_db(c, &db, &aerr) ||
	    audit_as(c, db, f->org_id, actor, outcome, status, c->target[0] ? c->target : NULL,
	             detail, &aerr))
		sl_log_error("cannot write the audit row of a failed OAuth callback",
		             SLF_S("request_id", c->req->request_id), SLF_S("error", aerr.msg), SLF_END);
out:
	json_object_put(detail);
}

int
api_oauth_callback(struct api_ctx *c, struct sl_err *err)
{
	static const char *const fields[] = { "code", "state", NULL };
	json_object *body = NULL, *answer = NULL;
	struct sl_keyring *kr = NULL;
	struct outcome o;
	struct flow f;
	char actor[40];
	const char *code, *state;
	int rc;

	memset(&o, 0, sizeof(o));
	memset(&f, 0, sizeof(f));
	rc = api_body_object(c->req, &body, err);
	if (rc)
		goto out;
	rc = api_body_known_fields(body, fields, "the callback takes code and state", err);
	if (rc)
		goto out;
	rc = get_str(body, "code", CODE_MAX, 1, &code, err);
	if (!rc && !*code)
		rc = api_fail(err, 422, "code", "field code must not be empty");
	if (rc)
		goto out;
	rc = get_str(body, "state", 256, 1, &state, err);
	if (rc)
		goto out;
	sl_log_add_secret(code);
	sl_log_add_secret(state);
	/* Before the state is spent: without the master key the flow cannot finish. */
	rc = api_keyring(c, &kr, err);
	if (rc)
		goto out;
	rc = take_state(c, state, c->org_id, &f, err);
	if (rc)
		goto out;
	snprintf(actor, sizeof(actor), "key:%lld", c->key_id);
	rc = complete(c, kr, &f, state, code, actor, &o, err);
	if (rc && err->http_status == 502) {
		sl_log_warn("OAuth token exchange failed", SLF_S("request_id", c->req->request_id),
		            SLF_S("connector_type", f.type), SLF_S("error", err->msg), SLF_END);
		audit_failure(c, &f, actor, "failed", 502, o.error, err->msg);
		c->audited = 1;
		goto out;
	}
	if (rc)
		goto out;
	c->audited = 1;
	answer = json_object_new_object();
	if (!answer) {
		rc = oom(err);
		goto out;
	}
	json_object_object_add(answer, "connector_id", json_object_new_string(o.connector_id));
	json_object_object_add(answer, "status", json_object_new_string(o.status));
	json_object_object_add(answer, "accounts", json_object_get(o.accounts));
	rc = api_respond_json(c->resp, 200, answer, err);
out:
	json_object_put(o.accounts);
	json_object_put(answer);
	json_object_put(body);
	return rc;
}

/* ---- GET /oauth/callback (the browser) -------------------------------------------- */

/* Appends s with &, <, >, " and ' escaped. */
static int
html_add(struct sl_buf *b, const char *s)
{
	int rc = 0;

	for (; *s && !rc; s++) {
		switch (*s) {
		case '&': rc = sl_buf_adds(b, "&amp;"); break;
		case '<': rc = sl_buf_adds(b, "&lt;"); break;
		case '>': rc = sl_buf_adds(b, "&gt;"); break;
		case '"': rc = sl_buf_adds(b, "&quot;"); break;
		case '\'': rc = sl_buf_adds(b, "&#39;"); break;
		default: rc = sl_buf_addc(b, *s); break;
		}
	}
	return rc;
}

/* A short HTML page: a heading and one sentence (escaped). */
static int
respond_html(struct api_ctx *c, int status, const char *heading, const char *text,
             struct sl_err *err)
{
	struct sl_buf *b = &c->resp->body;
	int rc;

	sl_buf_reset(b);
	c->resp->status = 0;
	rc = sl_buf_adds(b, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Sluice</title>"
	                    "</head>\n<body><h1>");
	rc = rc ? rc : html_add(b, heading);
	rc = rc ? rc : sl_buf_adds(b, "</h1>\n<p>");
	rc = rc ? rc : html_add(b, text);
	rc = rc ? rc : sl_buf_adds(b, "</p></body></html>\n");
	if (rc)
		return sl_err_set(err, rc, SL_RETRY_NO, "cannot hold the answer");
	c->resp->status = status;
	c->resp->content_type = "text/html; charset=utf-8";
	return 0;
}

/*
 * 302 to base with the pairs (name, value, ..., NULL) appended to its query,
 * percent-encoded.  base came from the org's allowlist, which holds no
 * whitespace, so the Location line cannot be split.
 */
static int
redirect(struct api_ctx *c, const char *base, const char *const *pairs, struct sl_err *err)
{
	struct sl_buf url;
	size_t n = strlen(base);
	int rc;

	sl_buf_init(&url, URL_BUF_MAX);
	rc = sl_buf_adds(&url, base);
	if (!rc && n && base[n - 1] != '?' && base[n - 1] != '&')
		rc = sl_buf_addc(&url, strchr(base, '?') ? '&' : '?');
	for (; !rc && pairs[0] && pairs[1]; pairs += 2) {
		rc = sl_http_urlencode(&url, pairs[0]);
		rc = rc ? rc : sl_buf_addc(&url, '=');
		rc = rc ? rc : sl_http_urlencode(&url, pairs[1]);
		if (!rc && pairs[2])
			rc = sl_buf_addc(&url, '&');
	}
	rc = rc ? rc : respond_html(c, 302, "Redirecting", "You are being sent back.", err);
	rc = rc ? rc : api_add_header(c->resp, "Location", "%s", url.data);
	if (rc) {
		c->resp->status = 0;
		rc = sl_err_set(err, rc, SL_RETRY_NO, "cannot build the redirect");
	}
	sl_buf_release(&url);
	return rc;
}

/*
 * A failed browser flow: back to the flow's return_url with error=... when
 * the state was known and has one; else a 400 JSON error saying what went
 * wrong (the server's own failures keep their 500 or 503).  The audit row
 * goes to the flow's org and actor, with the status the browser gets.
 */
static int
browser_failure(struct api_ctx *c, const struct flow *f, const char *error, const char *outcome,
                struct sl_err *err)
{
	const char *pairs[] = { "error", error, NULL };
	const char *code;
	char msg[sizeof(err->msg) + 64];
	int status, rc;

	api_error_public(err, &status, &code, msg, sizeof(msg));
	if (f->known && f->return_url[0]) {
		rc = redirect(c, f->return_url, pairs, err);
		status = rc ? 500 : 302;
	} else if (status >= 500 && err->http_status != 502) {
		rc = err->code ? err->code : SL_EINTERNAL;
	} else {
		rc = api_fail(err, 400, NULL, "%s", msg);
		status = 400;
	}
	audit_failure(c, f, f->actor, outcome, status, error, msg);
	return rc;
}

int
api_oauth_browser_callback(struct api_ctx *c, struct sl_err *err)
{
	struct sl_keyring *kr = NULL;
	struct api_query q;
	struct outcome o;
	struct flow f;
	const char *code, *state, *perror;
	char perr[64];
	int rc;

	memset(&o, 0, sizeof(o));
	memset(&f, 0, sizeof(f));
	memset(&q, 0, sizeof(q));
	if (c->resp->head_only) {
		/* A link checker's HEAD must not spend the state the person's GET needs. */
		rc = respond_html(c, 200, "Sluice", "The OAuth callback of Sluice.", err);
		goto out;
	}
	rc = api_query_parse(c->req->query, &q, err);
	if (rc)
		goto out;
	code = api_query_get(&q, "code", NULL);
	state = api_query_get(&q, "state", NULL);
	perror = api_query_get(&q, "error", NULL);
	if (code)
		sl_log_add_secret(code);
	if (state)
		sl_log_add_secret(state);
	if (!state || !*state) {
		rc = api_fail(err, 400, NULL, "the provider's redirect carries no state");
		goto out;
	}

	if (perror) {
		/* The person said no, or the provider refused: the flow is over, its state spent. */
		snprintf(perr, sizeof(perr), "%s", *perror ? perror : "invalid_request");
		rc = take_state(c, state, 0, &f, err);
		if (!f.known) {
			rc = browser_failure(c, &f, perr, "refused", err);
			goto out;
		}
		api_fail(err, 400, NULL, "the authorization was not granted: %s", perr);
		rc = browser_failure(c, &f, perr, "refused", err);
		goto out;
	}
	if (!code || !*code || strlen(code) > CODE_MAX) {
		rc = api_fail(err, 400, NULL, "the provider's redirect carries no usable code");
		goto out;
	}
	/* Before the state is spent: without the master key the flow cannot finish. */
	rc = api_keyring(c, &kr, err);
	if (rc)
		goto out;
	rc = take_state(c, state, 0, &f, err);
	if (rc) {
		rc = browser_failure(c, &f, err->http_status == 409 ? "state_used" : "state_expired",
		                     "refused", err);
		goto out;
	}
	rc = complete(c, kr, &f, state, code, f.actor, &o, err);
	if (rc) {
		sl_log_warn("OAuth callback failed", SLF_S("request_id", c->req->request_id),
		            SLF_S("connector_type", f.type), SLF_S("code", sl_code_name(err->code)),
		            SLF_S("error", err->msg), SLF_END);
		rc = browser_failure(c, &f, o.error,
		                     err->http_status >= 500 || !err->http_status ? "failed" : "refused",
		                     err);
		goto out;
	}
	if (f.return_url[0]) {
		const char *pairs[] = { "connector_id", o.connector_id, "status", o.status, NULL };

		rc = redirect(c, f.return_url, pairs, err);
	} else {
		char text[160];

		snprintf(text, sizeof(text), "Connector %s is %s. You can close this window.",
		         o.connector_id, o.status);
		rc = respond_html(c, 200, "Connected", text, err);
	}
out:
	json_object_put(o.accounts);
	api_query_release(&q);
	return rc;
}
