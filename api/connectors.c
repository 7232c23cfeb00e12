/* connectors.c — /api/v1/connectors: list, create, read, update, delete, enable and disable connectors. */

/*
 * DESIGN
 *
 * 1. A connector is sluice.connector; every change goes through the SQL
 *    functions of schema/0004_connectors.sql (create_connector,
 *    set_connector_status, set_connector_enabled, delete_connector), so the
 *    API, the workers and an operator at psql change it the same way.  Each
 *    mutating call runs in one transaction with its audit row.
 *
 * 2. Secrets.  A body's "credentials" object goes to sl_credential_store and
 *    nowhere else: never to the database as text (the server may log
 *    statement parameters), never into an answer, an audit detail, an error
 *    message or a log line.  Answers say only has_credentials; audit rows
 *    name the credential fields that were given, never their values.
 *    Validation messages name fields, never echo values.
 *
 * 3. An {id} that is not a UUID names nothing: 404, like another org's
 *    connector or a deleted one, before the database sees it.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "adapters/credential.h"
#include "api/api.h"
#include "api/audit.h"
#include "api/http.h"
#include "api/job_input.h"
#include "api/session.h"
#include "common/json.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/str.h"

#define TYPE_MAX       64
#define LABEL_MAX      200   /* characters, as sluice.connector's CHECK counts them */
#define CRED_VALUE_MAX 65536 /* bytes of one secret (an SSH private key fits) */

/* A timestamp as RFC 3339 in UTC with microseconds, whatever the session's TimeZone. */
#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* One sluice.connector row (alias c) as the API shows it.  No secret is in that table. */
#define CONNECTOR_JSON                                                                         \
	"json_build_object('id', c.id, 'type', c.type, 'label', c.label,"                      \
	" 'direction', c.direction, 'enabled', c.enabled, 'status', c.status,"                 \
	" 'status_message', c.status_message,"                                                 \
	" 'status_changed_at', " TS("c.status_changed_at") ","                                 \
	" 'account_id', c.account_id, 'account_name', c.account_name,"                         \
	" 'host_system_identifier', c.host_system_identifier, 'config', c.config,"             \
	" 'health', json_build_object('status', c.health_status,"                              \
	"     'last_check', " TS("c.health_checked_at") ", 'latency_ms', c.latency_ms,"        \
	"     'error_rate', c.error_rate),"                                                    \
	" 'rate_limit', sluice.connector_rate_limit(c.id),"                                   \
	" 'last_sync_at', " TS("c.last_sync_at") ", 'next_sync_at', " TS("c.next_sync_at") "," \
	" 'last_test_at', " TS("c.last_test_at") ","                                           \
	" 'created_at', " TS("c.created_at") ", 'updated_at', " TS("c.updated_at") ","         \
	" 'has_credentials', EXISTS (SELECT 1 FROM sluice.credential cr"                       \
	"                             WHERE cr.connector_id = c.id))"

/* ---- shared helpers (api.h) ----------------------------------------------- */

int
api_keyring(struct api_ctx *c, struct sl_keyring **out, struct sl_err *err)
{
	struct sl_err kerr;
	int rc = 0;

	*out = NULL;
	if (c->kr)
		goto out;
	sl_err_clear(&kerr);
	rc = sl_keyring_from_env(&c->kr, &kerr);
	if (rc == SL_ENOTFOUND) {
		/* The dispatcher logs the answer once; the message says what to set. */
		rc = api_fail(err, 503, NULL, "secrets are not configured (SLUICE_MASTER_KEY)");
		goto out;
	}
	if (rc) {
		/* sl_keyring_from_env never puts the key in its message. */
		rc = api_fail(err, 500, NULL, "cannot load the master key: %s", kerr.msg);
		goto out;
	}
out:
	*out = c->kr;
	return rc;
}

void
api_cred_env(struct api_ctx *c, struct sl_db *db, struct sl_keyring *kr, const char *actor,
             struct sl_cred_env *e)
{
	memset(e, 0, sizeof(*e));
	e->db = db;
	e->kr = kr;
	e->actor = actor;
	e->request_id = c->req->request_id;
	e->job_id = 0;
	e->ca_file = NULL;
	e->timeout_ms = c->oauth_timeout_ms;
}

int
api_secret_failure(struct sl_err *err)
{
	if (err->code == SL_EDB || err->code == SL_ECONN || err->code == SL_ENOMEM)
		return err->code;
	/* Keep the message for the log; the client gets the generic 500 sentence. */
	err->code = SL_EINTERNAL;
	err->http_status = 500;
	err->field[0] = '\0';
	return err->code;
}

int
api_query_col(struct sl_db *db, PGresult **out, const char *sql, int nparams,
              const char *const *params, const char *prefix, const char *const *plain,
              struct sl_err *err)
{
	const char *const *p;
	char col[sizeof(err->field)];
	int rc, is_plain = 0;

	rc = sl_db_query(db, out, sql, nparams, params, err);
	if (!rc || !err->field[0] || !prefix)
		return rc;
	sl_strlcpy(col, err->field, sizeof(col));
	for (p = plain; p && *p; p++)
		is_plain |= !strcmp(*p, col);
	if (!is_plain)
		snprintf(err->field, sizeof(err->field), "%s%s", prefix, col);
	return rc;
}

int
api_utf8_len_between(const char *s, size_t n_min, size_t n_max)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n >= n_min && n <= n_max;
}

/* The answer about one connector: $1 its id, $2 the caller's org. */
static const char connector_doc_sql[] =
	"SELECT json_build_object('connector', " CONNECTOR_JSON ")::text AS doc"
	"  FROM sluice.connector c"
	" WHERE c.id = $1::uuid AND c.org_id = $2::bigint AND c.deleted_at IS NULL";

int
api_connector_respond(struct api_ctx *c, const char *id, int status, struct sl_err *err)
{
	return api_respond_by_id(c, status, "connector", connector_doc_sql, id, err);
}

/* ---- input checks ------------------------------------------------------------ */

static int
oom(struct sl_err *err)
{
	return sl_err_set(err, SL_ENOMEM, SL_RETRY_NO, "out of memory");
}

/* A JSON object member that is present and not null, else NULL. */
static json_object *
member(json_object *o, const char *key)
{
	json_object *v = NULL;

	return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* label: 1 to 200 characters. */
static int
check_label(json_object *body, const char **label, int required, struct sl_err *err)
{
	int present, rc;

	*label = NULL;
	rc = sl_json_get_str(body, "label", 4 * LABEL_MAX, label, &present, err);
	if (rc)
		return api_fail(err, 422, "label", "field label must be a string of 1 to 200 characters");
	if (!present && required)
		return api_fail(err, 422, "label", "field label is required");
	if (present && !api_utf8_len_between(*label, 1, LABEL_MAX))
		return api_fail(err, 422, "label", "field label must be 1 to 200 characters");
	return 0;
}

/* Whether a string holds a NUL (which jsonb cannot store). */
static int
has_nul(json_object *s)
{
	return strlen(json_object_get_string(s)) != (size_t)json_object_get_string_len(s);
}

/* config: an object whose members are strings, numbers or booleans. */
static int
check_config(json_object *config, struct sl_err *err)
{
	char field[sizeof(err->field)];

	if (!json_object_is_type(config, json_type_object))
		return api_fail(err, 422, "config", "field config must be an object of strings, "
		                "numbers and booleans");
	{
		json_object_object_foreach(config, key, val) {
			json_type t = json_object_get_type(val);

			snprintf(field, sizeof(field), "config.%s", key);
			if (t != json_type_string && t != json_type_int && t != json_type_double &&
			    t != json_type_boolean)
				return api_fail(err, 422, field, "field %s must be a string, a number or "
				                "a boolean", field);
			if (t == json_type_string && has_nul(val))
				return api_fail(err, 422, field, "field %s must not hold \\u0000", field);
		}
	}
	return 0;
}

/* credentials: an object of non-empty strings.  Messages never hold a value. */
static int
check_credentials(json_object *creds, struct sl_err *err)
{
	char field[sizeof(err->field)];

	if (!json_object_is_type(creds, json_type_object))
		return api_fail(err, 422, "credentials", "field credentials must be an object of strings");
	{
		json_object_object_foreach(creds, key, val) {
			snprintf(field, sizeof(field), "credentials.%s", key);
			if (!json_object_is_type(val, json_type_string) || has_nul(val) ||
			    json_object_get_string_len(val) == 0 ||
			    json_object_get_string_len(val) > CRED_VALUE_MAX)
				return api_fail(err, 422, field, "field %s must be a non-empty string of at "
				                "most %d bytes", field, CRED_VALUE_MAX);
		}
	}
	return 0;
}

/*
 * Whether o (may be NULL) lacks one of `names` (a JSON array of strings):
 * a member that is absent, null or an empty string.  The first it lacks
 * goes to field (of size n) as prefix + name.
 */
static int
lacks_member(json_object *o, json_object *names, const char *prefix, char *field, size_t n)
{
	size_t i, len = json_object_array_length(names);

	for (i = 0; i < len; i++) {
		const char *name = json_object_get_string(json_object_array_get_idx(names, i));
		json_object *v = member(o, name);

		if (!v || (json_object_is_type(v, json_type_string) &&
		           json_object_get_string_len(v) == 0)) {
			snprintf(field, n, "%s%s", prefix, name);
			return 1;
		}
	}
	return 0;
}

/* The names of an object's members, as a JSON array (for audit details). */
static json_object *
member_names(json_object *o, const char *prefix)
{
	json_object *names = json_object_new_array();
	char name[128];

	if (!names || !o)
		return names;
	{
		json_object_object_foreach(o, key, val) {
			(void)val;
			snprintf(name, sizeof(name), "%s%s", prefix, key);
			json_object_array_add(names, json_object_new_string(name));
		}
	}
	return names;
}

/* A failed SQL call that named a field (api_query_col): 422 with the function's own message. */
static int
field_error(struct sl_err *err)
{
	char msg[sizeof(err->msg)], field[sizeof(err->field)];

	if (err->code != SL_EDB || !err->field[0] || strncmp(err->sqlstate, "23", 2))
		return err->code;
	memcpy(msg, err->msg, sizeof(msg));
	memcpy(field, err->field, sizeof(field));
	return api_fail(err, 422, field, "%s", msg);
}

/* ---- provider lookups ---------------------------------------------------------- */

struct provider {
	char         name[128];
	char         auth_kind[32];
	json_object *credential_fields;   /* JSON array of strings */
	json_object *config_fields;
};

static void
provider_release(struct provider *p)
{
	json_object_put(p->credential_fields);
	json_object_put(p->config_fields);
	memset(p, 0, sizeof(*p));
}

static int
provider_from_row(const PGresult *res, struct provider *p, struct sl_err *err)
{
	const char *cf = sl_pg_get(res, 0, "credential_fields");
	const char *gf = sl_pg_get(res, 0, "config_fields");
	int rc;

	snprintf(p->name, sizeof(p->name), "%s", sl_pg_get(res, 0, "name"));
	snprintf(p->auth_kind, sizeof(p->auth_kind), "%s", sl_pg_get(res, 0, "auth_kind"));
	rc = sl_json_parse(cf, strlen(cf), &p->credential_fields, err);
	if (!rc)
		rc = sl_json_parse(gf, strlen(gf), &p->config_fields, err);
	if (rc || !json_object_is_type(p->credential_fields, json_type_array) ||
	    !json_object_is_type(p->config_fields, json_type_array))
		return sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "sluice.provider_for: bad field lists");
	return 0;
}

/* The provider of `type` as org sees it; 422 field type when there is none. */
static int
provider_load(struct sl_db *db, long long org_id, const char *type, struct provider *p,
              struct sl_err *err)
{
	char org[32];
	const char *params[2] = { org, type };
	PGresult *res = NULL;
	int rc;

	snprintf(org, sizeof(org), "%lld", org_id);
	rc = sl_db_query(db, &res,
	                 "SELECT p.name, p.auth_kind,"
	                 "       to_json(p.credential_fields)::text AS credential_fields,"
	                 "       to_json(p.config_fields)::text AS config_fields"
	                 "  FROM sluice.provider_for($1::bigint, $2) p",
	                 2, params, err);
	if (rc)
		goto out;
	if (PQntuples(res) != 1) {
		rc = api_fail(err, 422, "type", "unknown connector type \"%.64s\"", type);
		goto out;
	}
	rc = provider_from_row(res, p, err);
out:
	PQclear(res);
	return rc;
}

/* The first token fetch of a client-credentials connector, or a new one after new secrets. */
static int
enqueue_token_fetch(struct sl_db *db, const char *org, const char *id, struct sl_err *err)
{
	const char *params[2] = { org, id };

	return sl_db_exec(db,
	                  "SELECT sluice.enqueue($1::bigint, 'oauth.refresh', '{}', 2, NULL, NULL, NULL,"
	                  "                      $2::uuid)",
	                  2, params, err);
}

/* ---- GET /api/v1/connectors ------------------------------------------------------ */

int
api_connector_list(struct api_ctx *c, struct sl_err *err)
{
	char org[32];
	const char *params[1] = { org };

	snprintf(org, sizeof(org), "%lld", c->org_id);
	return api_respond_query(c, 200, NULL,
	                         "SELECT json_build_object('connectors',"
	                         "           coalesce(json_agg(" CONNECTOR_JSON
	                         "                             ORDER BY c.created_at, c.id),"
	                         "                    '[]'::json))::text AS doc"
	                         "  FROM sluice.connector c"
	                         " WHERE c.org_id = $1::bigint AND c.deleted_at IS NULL",
	                         1, params, err);
}

/* ---- what the mutating calls share ----------------------------------------------- */

/* The optional members config and credentials of a body, each checked; NULL when absent. */
static int
check_config_and_credentials(json_object *body, json_object **config, json_object **creds,
                             struct sl_err *err)
{
	int rc = 0;

	*config = member(body, "config");
	*creds = member(body, "credentials");
	if (*config)
		rc = check_config(*config, err);
	if (!rc && *creds)
		rc = check_credentials(*creds, err);
	return rc;
}

/* Connectors that connect through the OAuth code flow take no credentials: 422 when given. */
static int
refuse_oauth_credentials(const struct provider *p, json_object *creds, struct sl_err *err)
{
	if (creds && !strcmp(p->auth_kind, "oauth2_code"))
		return api_fail(err, 422, "credentials", "%s connectors take no credentials: they "
		                "connect through POST /api/v1/connectors/oauth/initiate", p->name);
	return 0;
}

/* ---- POST /api/v1/connectors ----------------------------------------------------- */

static const char *const create_fields[] = {
	"type", "label", "direction", "config", "credentials", NULL,
};

int
api_connector_create(struct api_ctx *c, struct sl_err *err)
{
	static const char *const plain[] = { "type", "direction", NULL };
	json_object *body = NULL, *config = NULL, *creds = NULL, *detail = NULL;
	struct provider prov;
	struct sl_keyring *kr = NULL;
	struct sl_db *db = NULL;
	PGresult *res = NULL;
	char type[TYPE_MAX + 1], org[32], id[37], field[sizeof(err->field)];
	const char *s, *label, *direction = NULL, *params[5];
	size_t i;
	int present, rc;

	memset(&prov, 0, sizeof(prov));
	rc = api_body_object(c->req, &body, err);
	if (rc)
		goto out;
	rc = api_body_known_fields(body, create_fields, "a connector has type, label, direction, "
	                           "config and credentials", err);
	if (rc)
		goto out;

	rc = sl_json_get_str(body, "type", TYPE_MAX, &s, &present, err);
	if (rc || !present) {
		rc = api_fail(err, 422, "type", "field type %s: a connector type such as woocommerce "
		              "or dv360", rc ? "must be a string" : "is required");
		goto out;
	}
	for (i = 0; s[i]; i++)
		type[i] = (char)tolower((unsigned char)s[i]);
	type[i] = '\0';
	rc = check_label(body, &label, 1, err);
	if (rc)
		goto out;
	rc = sl_json_get_str(body, "direction", 16, &direction, &present, err);
	if (rc || (present && strcmp(direction, "source") && strcmp(direction, "destination"))) {
		rc = api_fail(err, 422, "direction", "field direction must be source or destination");
		goto out;
	}
	rc = check_config_and_credentials(body, &config, &creds, err);
	if (rc)
		goto out;

	rc = api_db(c, &db, err);
	if (rc)
		goto out;
	rc = provider_load(db, c->org_id, type, &prov, err);
	if (rc)
		goto out;
	rc = refuse_oauth_credentials(&prov, creds, err);
	if (!rc && strcmp(prov.auth_kind, "oauth2_code") &&
	    lacks_member(creds, prov.credential_fields, "credentials.", field, sizeof(field)))
		rc = api_fail(err, 422, field, "field %s is required for %s connectors", field,
		              prov.name);
	if (rc)
		goto out;
	/* Before anything is written: without the master key no secret can be stored. */
	if (creds) {
		rc = api_keyring(c, &kr, err);
		if (rc)
			goto out;
	}

	rc = api_tx_begin(c, &db, err);
	if (rc)
		goto out;
	snprintf(org, sizeof(org), "%lld", c->org_id);
	params[0] = org;
	params[1] = type;
	params[2] = label;
	params[3] = direction;
	params[4] = config ? sl_json_text(config) : "{}";
	if (!params[4]) {
		rc = oom(err);
		goto out;
	}
	rc = api_query_col(db, &res,
	                   "SELECT sluice.create_connector($1::bigint, $2, $3, $4, $5::jsonb) AS id",
	                   5, params, "config.", plain, err);
	if (rc) {
		rc = field_error(err);
		goto out;
	}
	snprintf(id, sizeof(id), "%s", sl_pg_get(res, 0, "id"));
	PQclear(res);
	res = NULL;
	snprintf(c->target, sizeof(c->target), "connector:%s", id);

	if (creds) {
		rc = api_store_secrets(c, db, kr, id, creds, 0, err);
		if (rc)
			goto out;
	}
	if (!strcmp(prov.auth_kind, "oauth2_client_credentials")) {
		rc = enqueue_token_fetch(db, org, id, err);
		if (rc)
			goto out;
	}

	detail = json_object_new_object();
	if (!detail) {
		rc = oom(err);
		goto out;
	}
	json_object_object_add(detail, "type", json_object_new_string(type));
	json_object_object_add(detail, "label", json_object_new_string(label));
	if (direction)
		json_object_object_add(detail, "direction", json_object_new_string(direction));
	json_object_object_add(detail, "config", member_names(config, ""));
	json_object_object_add(detail, "credentials", member_names(creds, ""));
	rc = api_commit_answer(c, "connector.create", 201, detail, "connector", connector_doc_sql, id, err);
	if (!rc)
		(void)!api_add_header(c->resp, "Location", "/api/v1/connectors/%s", id);
out:
	api_tx_end(c, rc);
	PQclear(res);
	provider_release(&prov);
	json_object_put(detail);
	json_object_put(body);
	return rc;
}

/* ---- GET /api/v1/connectors/{id} ------------------------------------------------- */

int
api_connector_get(struct api_ctx *c, struct sl_err *err)
{
	char id[37];
	int rc;

	rc = api_path_uuid(c->id, "connector", id, err);
	if (rc)
		return rc;
	return api_connector_respond(c, id, 200, err);
}

/* ---- the connector a mutating call acts on ----------------------------------------- */

struct target {
	char         id[37];
	char         type[40];
	char         label[1024];
	char         status[32];
	char         status_before_disable[32];
	int          enabled;
	struct provider prov;
};

/* The connector of the {id} segment (404 when it cannot name one), also as c->target. */
static int
target_init(struct api_ctx *c, struct target *t, struct sl_err *err)
{
	memset(t, 0, sizeof(*t));
	return api_path_target(c, "connector", t->id, err);
}

/*
 * Begins the handler's transaction (api_tx_begin, the session into *db),
 * locks the caller's live connector t->id in it (FOR UPDATE) and reads what
 * the handlers need; 404 when it is not there.
 */
static int
lock_target(struct api_ctx *c, struct sl_db **db, struct target *t, struct sl_err *err)
{
	char org[32];
	const char *params[2] = { t->id, org };
	PGresult *res = NULL;
	int rc;

	rc = api_tx_begin(c, db, err);
	if (rc)
		goto out;
	snprintf(org, sizeof(org), "%lld", c->org_id);
	rc = sl_db_query(*db, &res,
	                 "SELECT c.type, c.label, c.status, c.status_before_disable, c.enabled,"
	                 "       p.name, p.auth_kind,"
	                 "       to_json(p.credential_fields)::text AS credential_fields,"
	                 "       to_json(p.config_fields)::text AS config_fields"
	                 "  FROM sluice.connector c"
	                 " CROSS JOIN LATERAL sluice.provider_for(c.org_id, c.type) p"
	                 " WHERE c.id = $1::uuid AND c.org_id = $2::bigint AND c.deleted_at IS NULL"
	                 "   FOR UPDATE OF c",
	                 2, params, err);
	if (rc)
		goto out;
	if (PQntuples(res) != 1) {
		rc = api_fail(err, 404, NULL, "no such connector");
		goto out;
	}
	snprintf(t->type, sizeof(t->type), "%s", sl_pg_get(res, 0, "type"));
	snprintf(t->label, sizeof(t->label), "%s", sl_pg_get(res, 0, "label"));
	snprintf(t->status, sizeof(t->status), "%s", sl_pg_get(res, 0, "status"));
	snprintf(t->status_before_disable, sizeof(t->status_before_disable), "%s",
	         sl_pg_get(res, 0, "status_before_disable") ? sl_pg_get(res, 0, "status_before_disable")
	                                                    : "");
	t->enabled = !strcmp(sl_pg_get(res, 0, "enabled"), "t");
	rc = provider_from_row(res, &t->prov, err);
out:
	PQclear(res);
	return rc;
}

/* ---- PUT /api/v1/connectors/{id} ------------------------------------------------- */

static const char *const update_fields[] = { "label", "config", "credentials", NULL };

int
api_store_secrets(struct api_ctx *c, struct sl_db *db, struct sl_keyring *kr, const char *id,
                  json_object *given, int merge, struct sl_err *err)
{
	json_object *secrets = NULL;
	struct sl_cred_env env;
	char actor[40];
	int rc = 0;

	snprintf(actor, sizeof(actor), "key:%lld", c->key_id);
	api_cred_env(c, db, kr, actor, &env);
	if (merge) {
		rc = sl_credential_load(&env, id, SL_CRED_LOCK | SL_CRED_ANY_STATUS, &secrets, NULL, err);
		if (rc == SL_ENOTFOUND)
			rc = 0;
		else if (rc)
			rc = api_secret_failure(err);
		if (rc)
			goto out;
	}
	if (!secrets)
		secrets = json_object_new_object();
	if (!secrets) {
		rc = oom(err);
		goto out;
	}
	{
		json_object_object_foreach(given, key, val)
			json_object_object_add(secrets, key, json_object_get(val));
	}
	rc = sl_credential_store(&env, id, secrets, -1, 0, NULL, err);
	if (rc)
		rc = api_secret_failure(err);
out:
	json_object_put(secrets);
	return rc;
}

int
api_connector_update(struct api_ctx *c, struct sl_err *err)
{
	json_object *body = NULL, *config = NULL, *creds = NULL, *detail = NULL, *fields = NULL;
	struct target t;
	struct sl_keyring *kr = NULL;
	struct sl_db *db = NULL;
	PGresult *res = NULL;
	char org[32], field[sizeof(err->field)];
	const char *label, *params[4];
	int rc;

	rc = target_init(c, &t, err);
	if (rc)
		goto out;
	rc = api_body_object(c->req, &body, err);
	if (rc)
		goto out;
	{
		json_object_object_foreach(body, key, val) {
			(void)val;
			if (!strcmp(key, "type") || !strcmp(key, "direction")) {
				rc = api_fail(err, 422, key, "field %s cannot be changed; create another "
				              "connector", key);
				goto out;
			}
		}
	}
	rc = api_body_known_fields(body, update_fields, "PUT takes label, config and credentials",
	                           err);
	if (rc)
		goto out;
	rc = check_label(body, &label, 0, err);
	if (rc)
		goto out;
	rc = check_config_and_credentials(body, &config, &creds, err);
	if (rc)
		goto out;
	if (creds) {
		rc = api_keyring(c, &kr, err);
		if (rc)
			goto out;
	}

	rc = lock_target(c, &db, &t, err);
	if (rc)
		goto out;
	rc = refuse_oauth_credentials(&t.prov, creds, err);
	if (rc)
		goto out;
	snprintf(org, sizeof(org), "%lld", c->org_id);
	if (config) {
		static const char *const plain[] = { NULL };

		/* Worded as sluice.create_connector words it. */
		if (lacks_member(config, t.prov.config_fields, "config.", field, sizeof(field))) {
			rc = api_fail(err, 422, field, "%s is required for %s connectors", field,
			              t.prov.name);
			goto out;
		}
		params[0] = org;
		params[1] = t.type;
		params[2] = sl_json_text(config);
		if (!params[2]) {
			rc = oom(err);
			goto out;
		}
		/* The endpoints must expand with the new config, as create_connector demands. */
		rc = api_query_col(db, &res,
		                   "SELECT sluice.expand_url(p.authorize_url, $3::jsonb),"
		                   "       sluice.expand_url(p.token_url, $3::jsonb),"
		                   "       sluice.expand_url(p.api_base_url, $3::jsonb)"
		                   "  FROM sluice.provider_for($1::bigint, $2) p",
		                   3, params, "config.", plain, err);
		if (rc) {
			rc = field_error(err);
			goto out;
		}
		PQclear(res);
		res = NULL;
	}
	params[0] = t.id;
	params[1] = label;
	params[2] = config ? sl_json_text(config) : NULL;
	if (config && !params[2]) {
		rc = oom(err);
		goto out;
	}
	rc = sl_db_exec(db,
	                "UPDATE sluice.connector"
	                "   SET label = coalesce($2, label), config = coalesce($3::jsonb, config),"
	                "       updated_at = now()"
	                " WHERE id = $1::uuid",
	                3, params, err);
	if (rc)
		goto out;

	if (creds) {
		rc = api_store_secrets(c, db, kr, t.id, creds, 1, err);
		if (rc)
			goto out;
		params[0] = t.id;
		if (!strcmp(t.status, "reauth_required") || !strcmp(t.status, "error")) {
			/* New secrets deserve a new try: pending until a worker uses them. */
			rc = sl_db_exec(db, "SELECT sluice.set_connector_status($1::uuid, 'pending',"
			                "                                   'credentials updated')",
			                1, params, err);
		} else if (!strcmp(t.status, "disabled") &&
		           (!strcmp(t.status_before_disable, "reauth_required") ||
		            !strcmp(t.status_before_disable, "error"))) {
			/* Enabling it again returns it to pending, not to the old trouble. */
			rc = sl_db_exec(db, "UPDATE sluice.connector SET status_before_disable = 'pending'"
			                " WHERE id = $1::uuid", 1, params, err);
		}
		if (rc)
			goto out;
		if (!strcmp(t.prov.auth_kind, "oauth2_client_credentials")) {
			rc = enqueue_token_fetch(db, org, t.id, err);
			if (rc)
				goto out;
		}
	}

	detail = json_object_new_object();
	fields = json_object_new_array();
	if (!detail || !fields) {
		rc = oom(err);
		goto out;
	}
	if (label)
		json_object_array_add(fields, json_object_new_string("label"));
	if (config)
		json_object_array_add(fields, json_object_new_string("config"));
	json_object_object_add(detail, "fields", fields);
	fields = NULL;
	json_object_object_add(detail, "credentials", member_names(creds, ""));
	if (creds)
		json_object_object_add(detail, "previous_status", json_object_new_string(t.status));
	rc = api_commit_answer(c, "connector.update", 200, detail, "connector", connector_doc_sql, t.id,
	                       err);
out:
	api_tx_end(c, rc);
	PQclear(res);
	provider_release(&t.prov);
	json_object_put(fields);
	json_object_put(detail);
	json_object_put(body);
	return rc;
}

/* ---- DELETE /api/v1/connectors/{id} ---------------------------------------------- */

int
api_connector_delete(struct api_ctx *c, struct sl_err *err)
{
	json_object *detail = NULL;
	struct target t;
	struct sl_db *db = NULL;
	const char *params[1];
	int rc;

	rc = target_init(c, &t, err);
	if (!rc)
		rc = lock_target(c, &db, &t, err);
	if (rc)
		goto out;
	/* Secrets destroyed, waiting jobs cancelled, the row kept for history. */
	params[0] = t.id;
	rc = sl_db_exec(db, "SELECT sluice.delete_connector($1::uuid)", 1, params, err);
	if (rc)
		goto out;
	detail = json_object_new_object();
	if (!detail) {
		rc = oom(err);
		goto out;
	}
	json_object_object_add(detail, "type", json_object_new_string(t.type));
	json_object_object_add(detail, "label", json_object_new_string(t.label));
	json_object_object_add(detail, "previous_status", json_object_new_string(t.status));
	rc = api_audit_one(c, "connector.delete", "ok", 204, c->target, detail, err);
	if (rc)
		goto out;
	rc = api_tx_commit_audited(c, err);
	if (rc)
		goto out;
	sl_buf_reset(&c->resp->body);
	c->resp->status = 204;
out:
	api_tx_end(c, rc);
	provider_release(&t.prov);
	json_object_put(detail);
	return rc;
}

/* ---- POST /api/v1/connectors/{id}/enable and /disable ------------------------------ */

static int
set_enabled(struct api_ctx *c, int enable, struct sl_err *err)
{
	json_object *detail = NULL;
	struct target t;
	struct sl_db *db = NULL;
	PGresult *res = NULL;
	const char *params[2];
	const char *action = enable ? "connector.enable" : "connector.disable";
	int changed, rc;

	rc = target_init(c, &t, err);
	if (!rc)
		rc = lock_target(c, &db, &t, err);
	if (rc)
		goto out;
	params[0] = t.id;
	params[1] = enable ? "true" : "false";
	rc = sl_db_query(db, &res,
	                 "SELECT sluice.set_connector_enabled($1::uuid, $2::boolean) AS changed",
	                 2, params, err);
	if (rc)
		goto out;
	changed = sl_pg_get(res, 0, "changed") && !strcmp(sl_pg_get(res, 0, "changed"), "t");
	detail = json_object_new_object();
	if (!detail) {
		rc = oom(err);
		goto out;
	}
	json_object_object_add(detail, "changed", json_object_new_boolean(changed));
	json_object_object_add(detail, "previous_status", json_object_new_string(t.status));
	rc = api_commit_answer(c, action, 200, detail, "connector", connector_doc_sql, t.id, err);
out:
	api_tx_end(c, rc);
	PQclear(res);
	provider_release(&t.prov);
	json_object_put(detail);
	return rc;
}

int
api_connector_enable(struct api_ctx *c, struct sl_err *err)
{
	return set_enabled(c, 1, err);
}

int
api_connector_disable(struct api_ctx *c, struct sl_err *err)
{
	return set_enabled(c, 0, err);
}
