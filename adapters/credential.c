/* credential.c — a connector's secrets: sealed, opened with an audit row, and refreshed one at a time. */
#include "adapters/credential.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/alloc.h"
#include "common/json.h"
#include "common/log.h"
#include "common/str.h"

#define OWNER_MAX      96            /* "connector:<uuid>", "oauth_client:<org>:<type>" */
#define CREDENTIAL_MAX (256u << 10)  /* one connector's sealed secrets */

/*
 * A job that finds its connector waiting for a person comes back this much
 * later.  Usually sooner: sluice.set_connector_status() holds the
 * connector's waiting jobs and releases them all once it is reconnected;
 * this bounds the wait of a job that was running across the reconnection.
 */
#define REAUTH_RECHECK_MS (3600L * 1000)

/* ---- small helpers ------------------------------------------------------ */

static int
in_transaction(struct sl_db *db)
{
	return PQtransactionStatus(sl_db_conn(db)) == PQTRANS_INTRANS;
}

/* BEGINs unless the caller has a transaction open; *began says which. */
static int
begin_unless_open(struct sl_db *db, int *began, struct sl_err *err)
{
	*began = 0;
	if (in_transaction(db))
		return 0;
	if (sl_db_exec(db, "BEGIN", 0, NULL, err))
		return err->code;
	*began = 1;
	return 0;
}

static int
finish(struct sl_db *db, int began, int ok, struct sl_err *err)
{
	if (!began)
		return 0;
	if (!ok) {
		struct sl_err ignored;

		(void)!sl_db_exec(db, "ROLLBACK", 0, NULL, &ignored);
		return 0;
	}
	return sl_db_exec(db, "COMMIT", 0, NULL, err);
}

static const char *
str_member(json_object *o, const char *name)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

void
sl_credential_free(char *secret)
{
	if (!secret)
		return;
	OPENSSL_cleanse(secret, strlen(secret));
	sl_free(secret);
}

/*
 * One audit row for one decrypt (who, what, outcome), through
 * sluice.audit_write.  Its failure is logged, not returned: the decrypt
 * itself already happened or failed for its own reason.
 */
static void
audit_decrypt(const struct sl_cred_env *e, const char *org_id, const char *target,
              const char *outcome, const char *error)
{
	json_object *detail = json_object_new_object();
	char job[24];
	struct sl_err aerr;

	if (!detail)
		return;
	if (e->job_id) {
		snprintf(job, sizeof(job), "%lld", e->job_id);
		json_object_object_add(detail, "job_id", json_object_new_int64(e->job_id));
	}
	if (error)
		json_object_object_add(detail, "error", json_object_new_string(error));
	{
		const char *params[] = { org_id, e->actor ? e->actor : "unknown", target, outcome,
		                         e->request_id, sl_json_text(detail) };

		if (sl_db_exec(e->db,
		               "SELECT sluice.audit_write($1::bigint, $2, 'credential.decrypt', $3, $4,"
		               " NULL, $5, $6::jsonb)", 6, params, &aerr))
			sl_log_error("cannot write the audit row of a credential decrypt",
			             SLF_S("target", target), SLF_S("error", aerr.msg), SLF_END);
	}
	json_object_put(detail);
}

/* Opens the sealed value in columns key_id, nonce, ciphertext of row 0 of res into plain. */
static int
open_columns(const struct sl_cred_env *e, const PGresult *res, const char *owner,
             struct sl_buf *plain, struct sl_err *err)
{
	struct sl_buf nonce, ct;
	long long key_id;
	int rc;

	sl_buf_init(&nonce, 64);
	sl_buf_init(&ct, CREDENTIAL_MAX);
	if (sl_parse_ll(sl_pg_get(res, 0, "key_id"), 1, 0x7fffffff, &key_id)) {
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "%s: bad key_id", owner);
		goto out;
	}
	rc = sl_bytea_parse(sl_pg_get(res, 0, "nonce"), &nonce, err);
	if (!rc)
		rc = sl_bytea_parse(sl_pg_get(res, 0, "ciphertext"), &ct, err);
	if (!rc && nonce.len != 12)
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "%s: bad nonce", owner);
	if (!rc)
		rc = sl_secret_open(e->kr, e->db, (int)key_id, (const unsigned char *)nonce.data,
		                    (const unsigned char *)ct.data, ct.len, owner, plain, err);
out:
	sl_buf_release(&nonce);
	sl_buf_release(&ct);
	return rc;
}

/* A sealed value as the text of SQL parameters. */
struct sealed_params {
	char  key_id[16];
	char *nonce;
	char *ct;
};

static void
sealed_params_release(struct sealed_params *p)
{
	sl_free(p->nonce);
	sl_free(p->ct);
	p->nonce = p->ct = NULL;
}

/* Seals text for owner into *p (free with sealed_params_release). */
static int
seal_text(const struct sl_cred_env *e, const char *owner, const char *text,
          struct sealed_params *p, struct sl_err *err)
{
	struct sl_sealed s = { 0 };
	int rc;

	memset(p, 0, sizeof(*p));
	rc = sl_secret_seal(e->kr, e->db, owner, text, strlen(text), &s, err);
	if (rc)
		return rc;
	snprintf(p->key_id, sizeof(p->key_id), "%d", s.key_id);
	p->nonce = sl_bytea_param(s.nonce, sizeof(s.nonce));
	p->ct = sl_bytea_param(s.ct, s.ct_len);
	sl_sealed_release(&s);
	if (!p->nonce || !p->ct) {
		sealed_params_release(p);
		return sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "out of memory sealing a secret");
	}
	return 0;
}

/* ---- store and load ------------------------------------------------------ */

/* sl_credential_store(); refreshed also stamps refreshed_at (a token refresh's write). */
static int
store(const struct sl_cred_env *e, const char *connector_id, json_object *secrets,
      long long expires_in, long long expect_version, int refreshed, long long *version,
      struct sl_err *err)
{
	char owner[OWNER_MAX], expires[24], expect[24];
	struct sealed_params p = { 0 };
	PGresult *res = NULL;
	int rc;

	snprintf(owner, sizeof(owner), "connector:%s", connector_id);
	snprintf(expires, sizeof(expires), "%lld", expires_in);
	snprintf(expect, sizeof(expect), "%lld", expect_version);
	rc = seal_text(e, owner, sl_json_text(secrets), &p, err);
	if (rc)
		goto out;
	{
		const char *params[] = { connector_id, p.key_id, p.nonce, p.ct,
		                         expires_in >= 0 ? expires : NULL,
		                         expect_version > 0 ? expect : NULL, refreshed ? "t" : "f" };

		rc = sl_db_query(e->db, &res,
		    "SELECT sluice.write_credential($1::uuid, $2::integer, $3::bytea, $4::bytea,"
		    " clock_timestamp() + make_interval(secs => $5::bigint), $6::bigint,"
		    " $7::boolean) AS version",
		    7, params, err);
	}
	if (rc) {
		if (!strcmp(err->sqlstate, "40001"))
			err->code = rc = SL_ECONFLICT;
		goto out;
	}
	if (version && sl_parse_ll(sl_pg_get(res, 0, "version"), 1, INT64_MAX, version))
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "write_credential returned no version");
out:
	PQclear(res);
	sealed_params_release(&p);
	return rc;
}

int
sl_credential_store(const struct sl_cred_env *e, const char *connector_id, json_object *secrets,
                    long long expires_in, long long expect_version, long long *version,
                    struct sl_err *err)
{
	return store(e, connector_id, secrets, expires_in, expect_version, 0, version, err);
}

/* A connector's credential row, with what decides how it may be used. */
static const char select_sql[] =
	"SELECT k.org_id, k.type, k.status, p.auth_kind, c.key_id, c.nonce, c.ciphertext,"
	"       c.version, coalesce(c.access_expires_at <= clock_timestamp()"
	"                           + interval '30 seconds', false) AS expired"
	"  FROM sluice.connector k"
	"  JOIN sluice.provider p ON p.type = k.type"
	"  LEFT JOIN sluice.credential c ON c.connector_id = k.id"
	" WHERE k.id = $1::uuid AND k.deleted_at IS NULL";
/*
 * A locking read takes the row lock first and then reads in a statement of
 * its own: after waiting for a lock, READ COMMITTED re-reads only the locked
 * row, and the connector's status joined to it would be the stale one.
 */
static const char lock_sql[] =
	"SELECT 1 FROM sluice.credential WHERE connector_id = $1::uuid FOR UPDATE";

int
sl_credential_load(const struct sl_cred_env *e, const char *connector_id, unsigned flags,
                   json_object **secrets, struct sl_cred_meta *meta, struct sl_err *err)
{
	char owner[OWNER_MAX];
	struct sl_buf plain;
	struct sl_cred_meta m;
	PGresult *res = NULL;
	json_object *obj = NULL;
	const char *org = NULL;
	int rc = 0, retried = 0, lock = (flags & SL_CRED_LOCK) != 0;

	*secrets = NULL;
	memset(&m, 0, sizeof(m));
	sl_buf_init(&plain, CREDENTIAL_MAX);
	snprintf(owner, sizeof(owner), "connector:%s", connector_id);
	if (lock)
		rc = sl_db_exec(e->db, lock_sql, 1, (const char *const[]){ connector_id }, err);
again:
	if (!rc)
		rc = sl_db_query(e->db, &res, select_sql, 1, (const char *const[]){ connector_id }, err);
	if (rc)
		goto out;
	if (PQntuples(res) != 1) {
		rc = sl_err_set(err, SL_ENOTFOUND, SL_RETRY_NO, "connector %s does not exist", connector_id);
		goto out;
	}
	org = sl_pg_get(res, 0, "org_id");
	sl_strlcpy(m.auth_kind, sl_pg_get(res, 0, "auth_kind"), sizeof(m.auth_kind));
	sl_strlcpy(m.status, sl_pg_get(res, 0, "status"), sizeof(m.status));
	sl_strlcpy(m.type, sl_pg_get(res, 0, "type"), sizeof(m.type));
	(void)!sl_parse_ll(org, 1, INT64_MAX, &m.org_id);
	m.expired = !strcmp(sl_pg_get(res, 0, "expired"), "t");
	if (!(flags & SL_CRED_ANY_STATUS) &&
	    (!strcmp(m.status, "reauth_required") || !strcmp(m.status, "disabled"))) {
		rc = sl_err_set(err, SL_EAUTH, SL_RETRY_REAUTH, "connector %s is %s", connector_id,
		                m.status);
		err->retry_after_ms = REAUTH_RECHECK_MS;
		goto out;
	}
	if (!sl_pg_get(res, 0, "key_id")) {
		rc = sl_err_set(err, SL_ENOTFOUND, SL_RETRY_NO, "connector %s has no credentials",
		                connector_id);
		goto out;
	}
	(void)!sl_parse_ll(sl_pg_get(res, 0, "version"), 1, INT64_MAX, &m.version);
	rc = open_columns(e, res, owner, &plain, err);
	if (rc == SL_EINVAL && err->retry == SL_RETRY_BACKOFF && !lock && !retried) {
		/* Its data key was retired since we read the row: a rotation moved it. */
		retried = 1;
		rc = 0;
		PQclear(res);
		res = NULL;
		goto again;
	}
	if (!rc) {
		rc = sl_json_parse(plain.data, plain.len, &obj, err);
		if (!rc && !json_object_is_type(obj, json_type_object))
			rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "credential is not a JSON object");
		if (rc) {
			/* The parser's message may quote the text: keep none of it. */
			sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO,
			           "credential of connector %s does not hold a JSON object", connector_id);
		}
	}
	audit_decrypt(e, org, owner, rc ? "failed" : "ok", rc ? err->msg : NULL);
out:
	sl_secret_wipe(&plain);
	PQclear(res);
	if (rc) {
		json_object_put(obj);
	} else {
		*secrets = obj;
	}
	if (meta)
		*meta = m;
	return rc;
}

/* ---- refresh -------------------------------------------------------------- */

/* Where the connector's token endpoint is, and how the client authenticates there. */
struct endpoint {
	char  token_url[1024];
	int   auth_post;
	char *scope;           /* space-separated; heap */
};

static int
load_endpoint(const struct sl_cred_env *e, const char *connector_id, struct endpoint *ep,
              struct sl_err *err)
{
	PGresult *res = NULL;
	const char *url;
	int rc;

	memset(ep, 0, sizeof(*ep));
	rc = sl_db_query(e->db, &res,
	    "SELECT token_url, token_auth, array_to_string(scopes, ' ') AS scope"
	    "  FROM sluice.connector_endpoints($1::uuid)", 1,
	    (const char *const[]){ connector_id }, err);
	if (rc)
		return rc;
	url = PQntuples(res) == 1 ? sl_pg_get(res, 0, "token_url") : NULL;
	if (!url || strlen(url) >= sizeof(ep->token_url)) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO,
		                "connector %s has no token endpoint", connector_id);
		goto out;
	}
	sl_strlcpy(ep->token_url, url, sizeof(ep->token_url));
	ep->auth_post = !strcmp(sl_pg_get(res, 0, "token_auth"), "client_secret_post");
	ep->scope = sl_strdup(sl_pg_get(res, 0, "scope"));
	if (!ep->scope)
		rc = sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "out of memory");
out:
	PQclear(res);
	return rc;
}

/*
 * Sets the connector's status and, for the OAuth events, emits one; runs in
 * the open transaction.
 */
static int
record_status(const struct sl_cred_env *e, const char *connector_id, const char *status,
              const char *message, const char *event, json_object *data, struct sl_err *err)
{
	const char *params[] = { connector_id, status, message, event,
	                         data ? sl_json_text(data) : "{}" };

	return sl_db_exec(e->db,
	    "WITH s AS (SELECT sluice.set_connector_status($1::uuid, $2, $3) AS changed)"
	    " SELECT CASE WHEN $4::text IS NOT NULL"
	    "             THEN sluice.emit_event(c.org_id, $4, c.id, $5::jsonb) END"
	    "   FROM s, sluice.connector c WHERE c.id = $1::uuid",
	    5, params, err);
}

/* Sets obj.name to the string value; a NULL value leaves obj as it is. */
static void
set_member(json_object *obj, const char *name, const char *value)
{
	if (value)
		json_object_object_add(obj, name, json_object_new_string(value));
}

/*
 * The token request itself, for the connector's auth kind: refresh_token
 * grant with the org's OAuth app (code flow), or client_credentials with
 * the connector's own client id and secret.
 */
static int
request_token(const struct sl_cred_env *e, const char *connector_id,
              const struct sl_cred_meta *m, json_object *secrets, struct sl_oauth_token *t,
              struct sl_err *err)
{
	struct endpoint ep;
	struct sl_oauth_client client = { 0 };
	char *app_id = NULL, *app_secret = NULL;
	int rc;

	rc = load_endpoint(e, connector_id, &ep, err);
	if (rc)
		return rc;
	client.token_url = ep.token_url;
	client.auth_post = ep.auth_post;
	client.ca_file = e->ca_file;
	client.timeout_ms = e->timeout_ms;
	if (!strcmp(m->auth_kind, "oauth2_client_credentials")) {
		client.client_id = str_member(secrets, "client_id");
		client.client_secret = str_member(secrets, "client_secret");
		if (!client.client_id || !client.client_secret) {
			rc = sl_err_set(err, SL_EAUTH, SL_RETRY_REAUTH,
			                "connector %s has no client_id and client_secret", connector_id);
			goto out;
		}
		rc = sl_oauth_client_credentials(&client, ep.scope[0] ? ep.scope : NULL, t, err);
	} else if (!strcmp(m->auth_kind, "oauth2_code")) {
		const char *refresh = str_member(secrets, "refresh_token");

		if (!refresh) {
			rc = sl_err_set(err, SL_EAUTH, SL_RETRY_REAUTH,
			                "connector %s has no refresh token", connector_id);
			sl_strlcpy(t->error, "invalid_grant", sizeof(t->error));
			goto out;
		}
		rc = sl_oauth_app_load(e, m->org_id, m->type, &app_id, &app_secret, err);
		if (rc)
			goto out;
		client.client_id = app_id;
		client.client_secret = app_secret;
		rc = sl_oauth_refresh(&client, refresh, t, err);
	} else {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO,
		                "connector %s uses %s: it has no tokens to refresh", connector_id,
		                m->auth_kind);
	}
out:
	sl_credential_free(app_id);
	sl_credential_free(app_secret);
	sl_free(ep.scope);
	return rc;
}

int
sl_credential_refresh(const struct sl_cred_env *e, const char *connector_id,
                      long long seen_version, int *refreshed, struct sl_err *err)
{
	struct sl_oauth_token t = { .expires_in = -1 };
	struct sl_cred_meta m;
	json_object *secrets = NULL, *data = NULL;
	PGresult *res = NULL;
	int rc, began = 0, ok = 0;

	if (refreshed)
		*refreshed = 0;
	rc = begin_unless_open(e->db, &began, err);
	if (rc)
		return rc;
	/* Lock the row and read it again: it may have been refreshed while we waited. */
	rc = sl_credential_load(e, connector_id, SL_CRED_LOCK, &secrets, &m, err);
	if (rc == SL_ENOTFOUND && !strcmp(m.auth_kind, "oauth2_client_credentials"))
		rc = sl_err_set(err, SL_EAUTH, SL_RETRY_REAUTH,
		                "connector %s has no client credentials", connector_id);
	if (rc)
		goto out;
	if (seen_version > 0 && m.version != seen_version) {
		ok = 1;   /* someone else refreshed it: nothing to do */
		goto out;
	}
	if (seen_version == 0 && str_member(secrets, "access_token")) {
		const char *margin_sql =
			"SELECT access_expires_at IS NOT NULL AND access_expires_at <= clock_timestamp()"
			"       + sluice.setting_interval('oauth_refresh_margin') AS due"
			"  FROM sluice.credential WHERE connector_id = $1::uuid";

		rc = sl_db_query(e->db, &res, margin_sql, 1, (const char *const[]){ connector_id }, err);
		if (rc)
			goto out;
		if (strcmp(sl_pg_get(res, 0, "due"), "t")) {
			ok = 1;   /* still fresh: a scheduled refresh that another one overtook */
			goto out;
		}
	}

	rc = request_token(e, connector_id, &m, secrets, &t, err);
	if (rc && err->retry == SL_RETRY_REAUTH && t.error[0]) {
		/*
		 * invalid_grant for the token we hold the lock on: it is not a race
		 * with another refresher, the grant is gone.  A person must reconnect.
		 */
		struct sl_err serr;
		char message[512];

		snprintf(message, sizeof(message),
		         "The authorization was revoked or has expired (%s). Reconnect this connector "
		         "to resume its jobs.", t.error);
		data = json_object_new_object();
		if (data)
			json_object_object_add(data, "reason", json_object_new_string(t.error));
		if (record_status(e, connector_id, "reauth_required", message, "oauth_revoked", data,
		                  &serr)) {
			*err = serr;
			rc = serr.code;
			goto out;
		}
		sl_err_set(err, SL_EAUTH, SL_RETRY_REAUTH, "connector %s is reauth_required",
		           connector_id);
		sl_err_detail(err, "The token endpoint answered %s.", t.error);
		err->retry_after_ms = REAUTH_RECHECK_MS;
		ok = 1;   /* keep the status change; the error still goes back */
		goto out;
	}
	if (rc) {
		ok = 1;   /* keep the decrypt's audit row; nothing else changed */
		goto out;
	}

	set_member(secrets, "access_token", t.access_token);
	set_member(secrets, "refresh_token", t.refresh_token);   /* absent: the old one stays */
	rc = store(e, connector_id, secrets, t.expires_in, m.version, 1, NULL, err);
	if (!rc && strcmp(m.status, "connected"))
		rc = record_status(e, connector_id, "connected", NULL, "oauth_connected", NULL, err);
	if (rc)
		goto out;
	ok = 1;
	if (refreshed)
		*refreshed = 1;
out:
	{
		struct sl_err ferr;
		int saved = rc;

		if (finish(e->db, began, ok, &ferr) && !saved) {
			*err = ferr;
			rc = ferr.code;
		}
	}
	PQclear(res);
	json_object_put(secrets);
	json_object_put(data);
	sl_oauth_token_release(&t);
	return rc;
}

int
sl_credential_access_token(const struct sl_cred_env *e, const char *connector_id, char **token,
                           struct sl_err *err)
{
	struct sl_cred_meta m;
	json_object *secrets = NULL;
	const char *access;
	int rc, tries;

	*token = NULL;
	for (tries = 0;; tries++) {
		rc = sl_credential_load(e, connector_id, 0, &secrets, &m, err);
		if (rc)
			return rc;
		access = str_member(secrets, "access_token");
		if (access && !m.expired)
			break;
		if (strncmp(m.auth_kind, "oauth2", 6)) {
			rc = sl_err_set(err, SL_EAUTH, SL_RETRY_NO,
			                "connector %s has no access token", connector_id);
			goto out;
		}
		if (tries == 1) {
			/* Refreshed, and still expired: the provider's expiry is shorter than our skew. */
			if (access)
				break;
			rc = sl_err_set(err, SL_EAUTH, SL_RETRY_BACKOFF,
			                "connector %s got no access token from its refresh", connector_id);
			goto out;
		}
		json_object_put(secrets);
		secrets = NULL;
		rc = sl_credential_refresh(e, connector_id, m.version ? m.version : -1, NULL, err);
		if (rc)
			return rc;
	}
	*token = sl_strdup(access);
	if (!*token)
		rc = sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "out of memory");
out:
	json_object_put(secrets);
	return rc;
}

int
sl_credential_connected(const struct sl_cred_env *e, const char *connector_id,
                        const struct sl_oauth_token *t, const char *account_id,
                        const char *account_name, struct sl_err *err)
{
	json_object *secrets = NULL, *data = NULL;
	int rc;

	rc = sl_credential_load(e, connector_id, SL_CRED_LOCK | SL_CRED_ANY_STATUS, &secrets, NULL,
	                        err);
	if (rc == SL_ENOTFOUND) {
		/* A first connection. */
		json_object_put(secrets);
		secrets = json_object_new_object();
		rc = secrets ? 0 : sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "out of memory");
	}
	if (rc)
		goto out;
	set_member(secrets, "access_token", t->access_token);
	set_member(secrets, "refresh_token", t->refresh_token);
	rc = sl_credential_store(e, connector_id, secrets, t->expires_in, 0, NULL, err);
	if (rc)
		goto out;
	{
		const char *params[] = { connector_id, account_id, account_name };

		rc = sl_db_exec(e->db,
		    "UPDATE sluice.connector SET account_id = coalesce($2, account_id),"
		    "       account_name = coalesce($3, account_name), updated_at = now()"
		    " WHERE id = $1::uuid", 3, params, err);
	}
	if (rc)
		goto out;
	data = json_object_new_object();
	if (!data) {
		rc = sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "out of memory");
		goto out;
	}
	if (account_id)
		json_object_object_add(data, "account_id", json_object_new_string(account_id));
	rc = record_status(e, connector_id, "connected", NULL, "oauth_connected", data, err);
out:
	json_object_put(secrets);
	json_object_put(data);
	return rc;
}

/* ---- the org's OAuth apps ------------------------------------------------ */

/* "oauth_client:<org>:<type>", the type in lower case as sluice.provider spells it. */
static void
app_owner(char *owner, size_t n, long long org_id, const char *type)
{
	size_t len;

	snprintf(owner, n, "oauth_client:%lld:%s", org_id, type);
	for (len = strlen("oauth_client:"); owner[len]; len++) {
		if (owner[len] >= 'A' && owner[len] <= 'Z')
			owner[len] = (char)(owner[len] - 'A' + 'a');
	}
}

int
sl_oauth_app_store(const struct sl_cred_env *e, long long org_id, const char *type,
                   const char *client_id, const char *client_secret, struct sl_err *err)
{
	char owner[OWNER_MAX], org[24];
	struct sealed_params p = { 0 };
	int rc;

	snprintf(org, sizeof(org), "%lld", org_id);
	app_owner(owner, sizeof(owner), org_id, type);
	rc = seal_text(e, owner, client_secret, &p, err);
	if (rc)
		return rc;
	{
		const char *params[] = { org, type, client_id, p.key_id, p.nonce, p.ct };

		rc = sl_db_exec(e->db,
		    "INSERT INTO sluice.oauth_client (org_id, type, client_id, key_id, nonce, ciphertext)"
		    " VALUES ($1::bigint, lower($2), $3, $4::integer, $5::bytea, $6::bytea)"
		    " ON CONFLICT (org_id, type) DO UPDATE"
		    "    SET client_id = excluded.client_id, key_id = excluded.key_id,"
		    "        nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = now()",
		    6, params, err);
	}
	sealed_params_release(&p);
	return rc;
}

int
sl_oauth_app_load(const struct sl_cred_env *e, long long org_id, const char *type,
                  char **client_id, char **client_secret, struct sl_err *err)
{
	char owner[OWNER_MAX], org[24];
	struct sl_buf plain;
	PGresult *res = NULL;
	int rc;

	*client_id = *client_secret = NULL;
	sl_buf_init(&plain, 64 * 1024);
	snprintf(org, sizeof(org), "%lld", org_id);
	app_owner(owner, sizeof(owner), org_id, type);
	rc = sl_db_query(e->db, &res,
	    "SELECT client_id, key_id, nonce, ciphertext FROM sluice.oauth_client"
	    " WHERE org_id = $1::bigint AND type = lower($2)", 2,
	    (const char *const[]){ org, type }, err);
	if (rc)
		goto out;
	if (PQntuples(res) != 1) {
		rc = sl_err_set(err, SL_ENOTFOUND, SL_RETRY_REAUTH,
		                "no OAuth app is configured for %s in org %lld", type, org_id);
		sl_err_detail(err, "Configure it with `sluicectl oauth-app set %lld %s CLIENT_ID`.",
		              org_id, type);
		goto out;
	}
	rc = open_columns(e, res, owner, &plain, err);
	audit_decrypt(e, org, owner, rc ? "failed" : "ok", rc ? err->msg : NULL);
	if (rc)
		goto out;
	*client_id = sl_strdup(sl_pg_get(res, 0, "client_id"));
	*client_secret = sl_strndup(plain.data, plain.len);
	if (!*client_id || !*client_secret) {
		sl_credential_free(*client_id);
		sl_credential_free(*client_secret);
		*client_id = *client_secret = NULL;
		rc = sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "out of memory");
	}
out:
	sl_secret_wipe(&plain);
	PQclear(res);
	return rc;
}
