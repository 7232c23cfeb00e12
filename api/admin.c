/* admin.c — /admin/connectors: seed 002's admin API for WooCommerce connectors (list, create, update, test, sync, runs). */

/*
 * DESIGN
 *
 * 1. Seed 002's contract.  The routes and the DTO field names (camelCase)
 *    are the seed's "Admin API Design (Draft)": ConnectorCreateRequest,
 *    ConnectorUpdateRequest, ConnectorSummaryResponse and the sync run.  The
 *    answers are built in SQL (sluice.woo_connector_doc and
 *    sluice.woo_run_doc of schema/0009_woocommerce.sql), so the API and an
 *    operator at psql read the same document.  Only WooCommerce connectors
 *    live here: a connector of another type, of another org, a deleted one
 *    and an {id} that is not a UUID are all 404 "no such connector".  Every
 *    route needs an admin key.
 *
 * 2. What a connector is made of.  sluice.connector holds the shop
 *    (config.base_url, config.auth_in_query) and its status, sluice.credential
 *    its REST API key (consumer_key and consumer_secret, sealed by
 *    adapters/credential.c), sluice.external_sync_config what to sync and how
 *    often.  Create writes all three, schedules the first sync
 *    (sluice.woo_request_sync, due one interval from now) and writes its
 *    audit row in one transaction; update locks the connector row first and
 *    does the same.  They commit or vanish together.
 *
 * 3. Secrets.  consumerKey and consumerSecret go to sl_credential_store and
 *    nowhere else: never into a statement parameter (the server may log
 *    those), an answer (it says hasCredentials), an audit detail (it names
 *    the fields given, never their values), an error message (validation
 *    names fields, never echoes values) or a log line.  While the test
 *    connection holds them in memory they are on the log's redaction list,
 *    and sl_woo_test() words its message without them.
 *
 * 4. Test connection makes its one call to the shop (sl_woo_test) outside
 *    any transaction, so that no row lock waits on a slow shop.  Then one
 *    transaction records the outcome (sluice.woo_record_test: last_test_at,
 *    and the status connected, or reauth_required when the keys were
 *    refused, else error, with the message as status_message) and its audit
 *    row.  A failed test is still a 200 with success false: the API did its
 *    job, the shop did not.  A disabled connector is neither tested nor
 *    synced (409): recording a test would overwrite its disabled status.
 *
 * 5. Sync now asks sluice.woo_request_sync for a manual run: the live run
 *    when there is one (a queued scheduled run is brought forward and
 *    becomes manual), else a new one, so two clicks make one run.  The run
 *    is a chain of woocommerce.sync jobs (DESIGN 3 of 0009); the answer is a
 *    202 with its id.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "adapters/credential.h"
#include "adapters/woocommerce.h"
#include "api/api.h"
#include "api/audit.h"
#include "api/http.h"
#include "api/session.h"
#include "common/json.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/str.h"

#define LABEL_MAX     200                    /* characters, as sluice.connector's CHECK counts them */
#define KEY_MAX       512                    /* bytes of a consumer key or secret */
#define URL_READ_MAX  4096                   /* sl_woo_check_base_url says what is too long */
#define INTERVAL_MIN  60LL                   /* syncIntervalSeconds: a minute ... */
#define INTERVAL_MAX  (31LL * 24 * 3600)     /* ... to 31 days */
#define RUNS_DEFAULT  20
#define RUNS_MAX      100
#define MESSAGE_MAX   1000                   /* a test's message; status_message holds 1000 */

/* One WooCommerce connector of the org ($1 id, $2 org) as the admin API shows it; no row when none. */
#define DOC_SQL                                                                     \
	"SELECT d::text AS doc FROM sluice.woo_connector_doc($1::uuid, $2::bigint) d" \
	" WHERE d IS NOT NULL"

static int
oom(struct sl_err *err)
{
	return sl_err_set(err, SL_ENOMEM, SL_RETRY_NO, "out of memory");
}

/* ---- input checks ------------------------------------------------------------ */

/* A create or update body, checked.  Strings and mappings are borrowed from the body. */
struct input {
	const char  *base_url;
	const char  *label;            /* NULL: the default (create) or unchanged (update) */
	const char  *consumer_key;     /* NULL: not given (update only) */
	const char  *consumer_secret;
	int          sync_products;
	int          sync_orders;
	int          auth_in_query;
	int          has_auth_in_query;
	long long    interval;         /* syncIntervalSeconds; 0: not given */
	json_object *mappings;         /* mappingsJson; NULL: not given */
};

static const char *const create_fields[] = {
	"type", "label", "baseUrl", "consumerKey", "consumerSecret", "syncProducts", "syncOrders",
	"authInQuery", "syncIntervalSeconds", "mappingsJson", NULL,
};

static const char *const update_fields[] = {
	"label", "baseUrl", "consumerKey", "consumerSecret", "syncProducts", "syncOrders",
	"authInQuery", "syncIntervalSeconds", "mappingsJson", NULL,
};

static const char *const sync_fields[] = { "syncProducts", "syncOrders", NULL };

/* A boolean member; 422 naming it when it is not one, or is required and absent. */
static int
get_bool(json_object *body, const char *key, int required, int *out, int *present,
         struct sl_err *err)
{
	int p = 0;

	if (sl_json_get_bool(body, key, out, &p, err))
		return api_fail(err, 422, key, "field %s must be true or false", key);
	if (!p && required)
		return api_fail(err, 422, key, "field %s is required: true or false", key);
	if (present)
		*present = p;
	return 0;
}

/* consumerKey or consumerSecret: a non-empty string of at most KEY_MAX bytes.  Never echoed. */
static int
get_key(json_object *body, const char *key, int required, const char **out, struct sl_err *err)
{
	int present = 0;

	*out = NULL;
	if (sl_json_get_str(body, key, KEY_MAX, out, &present, err) || (present && !**out)) {
		*out = NULL;
		return api_fail(err, 422, key, "field %s must be a non-empty string of at most %d "
		                "bytes", key, KEY_MAX);
	}
	if (!present && required)
		return api_fail(err, 422, key, "field %s is required: the REST API key's %s", key,
		                !strcmp(key, "consumerKey") ? "consumer key (ck_...)"
		                                            : "consumer secret (cs_...)");
	return 0;
}

/* baseUrl: required, and a shop URL as sl_woo_check_base_url sees one. */
static int
get_base_url(json_object *body, const char **out, struct sl_err *err)
{
	struct sl_err uerr;
	int present = 0, rc;

	*out = NULL;
	if (sl_json_get_str(body, "baseUrl", URL_READ_MAX, out, &present, err))
		return api_fail(err, 422, "baseUrl", "field baseUrl must be the shop's address, such as "
		                "https://shop.example.com");
	if (!present)
		return api_fail(err, 422, "baseUrl", "field baseUrl is required: the shop's address, "
		                "such as https://shop.example.com");
	sl_err_clear(&uerr);
	rc = sl_woo_check_base_url(*out, &uerr);
	if (rc == SL_EINVAL)
		/* The detail is a sentence for the shop's admin, and never repeats the URL. */
		return api_fail(err, 422, "baseUrl", "field baseUrl: %s",
		                uerr.detail[0] ? uerr.detail : uerr.msg);
	if (rc)
		*err = uerr;
	return rc;
}

/*
 * The fields create (create = 1) and update share.  Create needs the keys;
 * both need baseUrl, syncProducts and syncOrders (the seed's DTOs); the
 * rest is optional.
 */
static int
check_input(json_object *body, int create, struct input *in, struct sl_err *err)
{
	json_object *v = NULL;
	int present = 0, rc;

	memset(in, 0, sizeof(*in));
	rc = get_base_url(body, &in->base_url, err);
	if (!rc)
		rc = get_key(body, "consumerKey", create, &in->consumer_key, err);
	if (!rc)
		rc = get_key(body, "consumerSecret", create, &in->consumer_secret, err);
	if (!rc)
		rc = get_bool(body, "syncProducts", 1, &in->sync_products, NULL, err);
	if (!rc)
		rc = get_bool(body, "syncOrders", 1, &in->sync_orders, NULL, err);
	if (!rc)
		rc = get_bool(body, "authInQuery", 0, &in->auth_in_query, &in->has_auth_in_query, err);
	if (rc)
		return rc;

	if (sl_json_get_str(body, "label", 4 * LABEL_MAX, &in->label, &present, err) ||
	    (present && !api_utf8_len_between(in->label, 1, LABEL_MAX)))
		return api_fail(err, 422, "label", "field label must be a string of 1 to %d characters",
		                LABEL_MAX);
	if (sl_json_get_int(body, "syncIntervalSeconds", INTERVAL_MIN, INTERVAL_MAX, &in->interval,
	                    &present, err))
		return api_fail(err, 422, "syncIntervalSeconds", "field syncIntervalSeconds must be an "
		                "integer from %lld (a minute) to %lld (31 days)", INTERVAL_MIN,
		                INTERVAL_MAX);
	if (json_object_object_get_ex(body, "mappingsJson", &v) && v) {
		if (!json_object_is_type(v, json_type_object))
			return api_fail(err, 422, "mappingsJson", "field mappingsJson must be an object: "
			                "{\"product\": [rules], \"order\": [rules]}");
		in->mappings = v;
	}
	return 0;
}

/* The body of a route that may take one: absent, or empty, is no body (*body NULL). */
static int
optional_body(struct api_ctx *c, json_object **body, struct sl_err *err)
{
	int rc;

	*body = NULL;
	if (!c->req->content_length && !c->req->content_type)
		return 0;
	rc = api_read_body(c->req, err);
	if (rc || c->req->body.len == 0)
		return rc;
	return api_body_object(c->req, body, err);
}

/*
 * The default label: "WooCommerce <host of base_url>", cut to LABEL_MAX
 * characters.  base_url passed sl_woo_check_base_url, so it has "://" and a
 * host.
 */
static void
default_label(const char *base_url, char *out, size_t n)
{
	const char *host = strstr(base_url, "://");
	size_t len, i, chars = 0;

	host = host ? host + 3 : base_url;
	if (*host == '[') {
		len = strcspn(host, "]/");
		len += host[len] == ']';
	} else {
		len = strcspn(host, ":/");
	}
	snprintf(out, n, "WooCommerce %.*s", (int)len, host);
	for (i = 0; out[i]; i++) {
		if (((unsigned char)out[i] & 0xC0) != 0x80 && ++chars > LABEL_MAX) {
			out[i] = '\0';
			break;
		}
	}
}

/* The names of the non-secret fields given in in, as a JSON array (for audit details). */
static json_object *
given_fields(const struct input *in, int with_sync_flags)
{
	json_object *a = json_object_new_array();

	if (!a)
		return NULL;
	json_object_array_add(a, json_object_new_string("baseUrl"));
	if (with_sync_flags) {
		json_object_array_add(a, json_object_new_string("syncProducts"));
		json_object_array_add(a, json_object_new_string("syncOrders"));
	}
	if (in->label)
		json_object_array_add(a, json_object_new_string("label"));
	if (in->has_auth_in_query)
		json_object_array_add(a, json_object_new_string("authInQuery"));
	if (in->interval)
		json_object_array_add(a, json_object_new_string("syncIntervalSeconds"));
	if (in->mappings)
		json_object_array_add(a, json_object_new_string("mappingsJson"));
	return a;
}

/* The names of the secrets given, never their values (for audit details). */
static json_object *
given_keys(const struct input *in)
{
	json_object *a = json_object_new_array();

	if (!a)
		return NULL;
	if (in->consumer_key)
		json_object_array_add(a, json_object_new_string("consumer_key"));
	if (in->consumer_secret)
		json_object_array_add(a, json_object_new_string("consumer_secret"));
	return a;
}

/*
 * A statement that validated config.base_url (sluice.create_connector and
 * sluice.expand_url name the column) failed: 422 naming baseUrl.  Other
 * errors keep their mapping.
 */
static int
base_url_error(struct sl_err *err)
{
	if (err->code != SL_EDB || strcmp(err->field, "base_url") || strncmp(err->sqlstate, "23", 2))
		return err->code;
	return api_fail(err, 422, "baseUrl", "field baseUrl must be an http or https URL with a host "
	                "of letters, digits, '.' and '-', an optional port and path, and no query or "
	                "fragment");
}

/* ---- what the mutating calls share ----------------------------------------------- */

/* The connector config members that in sets: base_url, and auth_in_query when given (or create). */
static json_object *
config_of(const struct input *in, int create)
{
	json_object *config = json_object_new_object();

	if (!config)
		return NULL;
	json_object_object_add(config, "base_url", json_object_new_string(in->base_url));
	if (create || in->has_auth_in_query)
		json_object_object_add(config, "auth_in_query",
		                       json_object_new_boolean(in->auth_in_query));
	return config;
}

/*
 * Stores the keys in `in` as the connector's secrets (sl_credential_store),
 * merged into the stored ones when merge is set (load, merge, store: a PUT
 * may give one key alone).  Runs in the caller's transaction.
 */
static int
store_keys(struct api_ctx *c, struct sl_db *db, struct sl_keyring *kr, const char *id,
           const struct input *in, int merge, struct sl_err *err)
{
	json_object *given = json_object_new_object();
	int rc;

	if (!given)
		return oom(err);
	if (in->consumer_key)
		json_object_object_add(given, "consumer_key", json_object_new_string(in->consumer_key));
	if (in->consumer_secret)
		json_object_object_add(given, "consumer_secret", json_object_new_string(in->consumer_secret));
	rc = api_store_secrets(c, db, kr, id, given, merge, err);
	json_object_put(given);
	return rc;
}

/*
 * Writes the connector's sluice.external_sync_config (insert, or update on
 * conflict): the sync flags always, the interval and mappings when given
 * (else the defaults, or what is there).  A bad mappingsJson fails with
 * SQLSTATE 22023 and COLUMN mappingsJson (sluice.write_mappings): a 422
 * naming the field.
 */
static int
write_sync_config(struct sl_db *db, const char *id, const struct input *in, struct sl_err *err)
{
	char interval[32];
	const char *params[5];

	snprintf(interval, sizeof(interval), "%lld", in->interval);
	params[0] = id;
	params[1] = in->sync_products ? "true" : "false";
	params[2] = in->sync_orders ? "true" : "false";
	params[3] = in->interval ? interval : NULL;
	params[4] = in->mappings ? sl_json_text(in->mappings) : NULL;
	if (in->mappings && !params[4])
		return oom(err);
	return sl_db_exec(db,
	                  "INSERT INTO sluice.external_sync_config AS s"
	                  "       (connector_id, sync_products, sync_orders, sync_interval,"
	                  "        mappings_json)"
	                  " VALUES ($1::uuid, $2::boolean, $3::boolean,"
	                  "         coalesce($4::bigint * interval '1 second', interval '1 day'),"
	                  "         coalesce($5::jsonb, '{}'))"
	                  " ON CONFLICT (connector_id) DO UPDATE"
	                  "   SET sync_products = excluded.sync_products,"
	                  "       sync_orders = excluded.sync_orders,"
	                  "       sync_interval = coalesce($4::bigint * interval '1 second',"
	                  "                                s.sync_interval),"
	                  "       mappings_json = coalesce($5::jsonb, s.mappings_json),"
	                  "       updated_at = now()",
	                  5, params, err);
}

/*
 * The first scheduled sync of a new connector: a run due one sync interval
 * from now, with its job (sluice.woo_request_sync), and the connector's
 * next_sync_at saying when.
 */
static int
schedule_first_run(struct sl_db *db, const char *id, struct sl_err *err)
{
	char run[API_UUID_TEXT];
	const char *params[2] = { id, run };
	PGresult *res = NULL;
	int rc;

	rc = sl_db_query(db, &res,
	                 "SELECT sluice.woo_request_sync($1::uuid, 'scheduled', NULL, NULL,"
	                 "                               now() + cfg.sync_interval) AS run_id"
	                 "  FROM sluice.external_sync_config cfg WHERE cfg.connector_id = $1::uuid",
	                 1, params, err);
	if (rc)
		goto out;
	if (PQntuples(res) != 1 || !sl_pg_get(res, 0, "run_id")) {
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "sluice.woo_request_sync made no run");
		goto out;
	}
	snprintf(run, sizeof(run), "%s", sl_pg_get(res, 0, "run_id"));
	rc = sl_db_exec(db,
	                "UPDATE sluice.connector c SET next_sync_at = r.due_at"
	                "  FROM sluice.external_sync_run r"
	                " WHERE c.id = $1::uuid AND r.id = $2::uuid",
	                2, params, err);
out:
	PQclear(res);
	return rc;
}

/* The connector a call on /admin/connectors/{id} acts on, as locked by lock_connector. */
struct target {
	char id[API_UUID_TEXT];
	char status[32];
	char status_before_disable[32];
	char base_url[URL_READ_MAX + 1];
	int  auth_in_query;
};

/* The connector of the {id} segment (404 when it cannot name one), also as c->target. */
static int
target_init(struct api_ctx *c, struct target *t, struct sl_err *err)
{
	memset(t, 0, sizeof(*t));
	return api_path_target(c, "connector", t->id, err);
}

/*
 * Reads the caller's live WooCommerce connector t->id on db, locking its row
 * (FOR UPDATE) when lock is set (the caller has a transaction open); 404
 * "no such connector" when the org has none by that id.
 */
static int
read_connector(struct api_ctx *c, struct sl_db *db, struct target *t, int lock,
               struct sl_err *err)
{
	char org[32];
	const char *params[2] = { t->id, org };
	PGresult *res = NULL;
	const char *s;
	int rc;

#define TARGET_SQL                                                                          \
	"SELECT status, status_before_disable, config ->> 'base_url' AS base_url,"          \
	"       coalesce((config ->> 'auth_in_query')::boolean, false) AS auth_in_query"    \
	"  FROM sluice.connector"                                                           \
	" WHERE id = $1::uuid AND org_id = $2::bigint AND type = 'woocommerce'"             \
	"   AND deleted_at IS NULL"

	snprintf(org, sizeof(org), "%lld", c->org_id);
	rc = sl_db_query(db, &res, lock ? TARGET_SQL " FOR UPDATE" : TARGET_SQL, 2, params, err);
	if (rc)
		goto out;
	if (PQntuples(res) != 1) {
		rc = api_fail(err, 404, NULL, "no such connector");
		goto out;
	}
	snprintf(t->status, sizeof(t->status), "%s", sl_pg_get(res, 0, "status"));
	s = sl_pg_get(res, 0, "status_before_disable");
	snprintf(t->status_before_disable, sizeof(t->status_before_disable), "%s", s ? s : "");
	s = sl_pg_get(res, 0, "base_url");
	snprintf(t->base_url, sizeof(t->base_url), "%s", s ? s : "");
	t->auth_in_query = !strcmp(sl_pg_get(res, 0, "auth_in_query"), "t");
out:
	PQclear(res);
	return rc;
}

/* A disabled connector is left alone until it is enabled again (POST /api/v1/connectors/{id}/enable). */
static int
refuse_disabled(const struct target *t, struct sl_err *err)
{
	if (!strcmp(t->status, "disabled"))
		return api_fail(err, 409, NULL, "the connector is disabled; enable it first");
	return 0;
}

/* ---- GET /admin/connectors --------------------------------------------------------- */

int
api_admin_connector_list(struct api_ctx *c, struct sl_err *err)
{
	char org[32];
	const char *params[1] = { org };

	snprintf(org, sizeof(org), "%lld", c->org_id);
	return api_respond_query(c, 200, NULL,
	                         "SELECT jsonb_build_object('connectors',"
	                         "           coalesce(jsonb_agg(sluice.woo_connector_doc(c.id, c.org_id)"
	                         "                              ORDER BY c.created_at, c.id),"
	                         "                    '[]'::jsonb))::text AS doc"
	                         "  FROM sluice.connector c"
	                         " WHERE c.org_id = $1::bigint AND c.type = 'woocommerce'"
	                         "   AND c.deleted_at IS NULL",
	                         1, params, err);
}

/* ---- POST /admin/connectors ---------------------------------------------------------- */

/* type: "woocommerce" (in any case), the only type this API makes. */
static int
check_type(json_object *body, struct sl_err *err)
{
	const char *type = NULL;
	int present = 0;

	if (sl_json_get_str(body, "type", 64, &type, &present, err) || !present ||
	    strcasecmp(type, "woocommerce"))
		return api_fail(err, 422, "type", "field type %s \"woocommerce\", the only connector "
		                "type of the admin API", present ? "must be" : "is required:");
	return 0;
}

int
api_admin_connector_create(struct api_ctx *c, struct sl_err *err)
{
	json_object *body = NULL, *config = NULL, *detail = NULL, *fields = NULL;
	struct input in;
	struct sl_keyring *kr = NULL;
	struct sl_db *db = NULL;
	PGresult *res = NULL;
	char org[32], id[API_UUID_TEXT], label[4 * LABEL_MAX + 64];
	const char *params[3];
	int rc;

	rc = api_body_object(c->req, &body, err);
	if (!rc)
		rc = api_body_known_fields(body, create_fields, "a WooCommerce connector has type, "
		                           "baseUrl, consumerKey, consumerSecret, syncProducts, "
		                           "syncOrders, label, authInQuery, syncIntervalSeconds and "
		                           "mappingsJson", err);
	if (!rc)
		rc = check_type(body, err);
	if (!rc)
		rc = check_input(body, 1, &in, err);
	if (rc)
		goto out;
	fields = given_fields(&in, 1);
	if (!in.label) {
		default_label(in.base_url, label, sizeof(label));
		in.label = label;
	}
	/* Before anything is written: without the master key no secret can be stored. */
	rc = api_keyring(c, &kr, err);
	if (rc)
		goto out;
	config = config_of(&in, 1);
	if (!config || !fields) {
		rc = oom(err);
		goto out;
	}

	rc = api_tx_begin(c, &db, err);
	if (rc)
		goto out;
	snprintf(org, sizeof(org), "%lld", c->org_id);
	params[0] = org;
	params[1] = in.label;
	params[2] = sl_json_text(config);
	if (!params[2]) {
		rc = oom(err);
		goto out;
	}
	rc = sl_db_query(db, &res,
	                 "SELECT sluice.create_connector($1::bigint, 'woocommerce', $2, 'source',"
	                 "                               $3::jsonb) AS id",
	                 3, params, err);
	if (rc) {
		rc = base_url_error(err);
		goto out;
	}
	snprintf(id, sizeof(id), "%s", sl_pg_get(res, 0, "id"));
	snprintf(c->target, sizeof(c->target), "connector:%s", id);

	rc = store_keys(c, db, kr, id, &in, 0, err);
	if (!rc)
		rc = write_sync_config(db, id, &in, err);
	if (!rc)
		rc = schedule_first_run(db, id, err);
	if (rc)
		goto out;

	detail = json_object_new_object();
	if (!detail) {
		rc = oom(err);
		goto out;
	}
	json_object_object_add(detail, "type", json_object_new_string("woocommerce"));
	json_object_object_add(detail, "label", json_object_new_string(in.label));
	json_object_object_add(detail, "baseUrl", json_object_new_string(in.base_url));
	json_object_object_add(detail, "syncProducts", json_object_new_boolean(in.sync_products));
	json_object_object_add(detail, "syncOrders", json_object_new_boolean(in.sync_orders));
	json_object_object_add(detail, "fields", fields);
	fields = NULL;
	json_object_object_add(detail, "credentials", given_keys(&in));
	rc = api_commit_answer(c, "admin.connector.create", 201, detail, "connector", DOC_SQL, id, err);
	if (!rc)
		(void)!api_add_header(c->resp, "Location", "/admin/connectors/%s", id);
out:
	/* Rolled back: the refusal's audit row must not name a connector that never was. */
	if (rc)
		c->target[0] = '\0';
	api_tx_end(c, rc);
	PQclear(res);
	json_object_put(fields);
	json_object_put(detail);
	json_object_put(config);
	json_object_put(body);
	return rc;
}

/* ---- PUT /admin/connectors/{id} ------------------------------------------------------ */

int
api_admin_connector_update(struct api_ctx *c, struct sl_err *err)
{
	json_object *body = NULL, *config = NULL, *detail = NULL;
	struct input in;
	struct target t;
	struct sl_keyring *kr = NULL;
	struct sl_db *db = NULL;
	const char *params[3];
	int rc, url_changed, keys = 0;

	rc = target_init(c, &t, err);
	if (!rc)
		rc = api_body_object(c->req, &body, err);
	if (!rc)
		rc = api_body_known_fields(body, update_fields, "PUT takes baseUrl, consumerKey, "
		                           "consumerSecret, syncProducts, syncOrders, label, "
		                           "authInQuery, syncIntervalSeconds and mappingsJson", err);
	if (!rc)
		rc = check_input(body, 0, &in, err);
	if (rc)
		goto out;
	keys = in.consumer_key || in.consumer_secret;
	if (keys) {
		rc = api_keyring(c, &kr, err);
		if (rc)
			goto out;
	}
	config = config_of(&in, 0);
	if (!config) {
		rc = oom(err);
		goto out;
	}

	rc = api_tx_begin(c, &db, err);
	if (!rc)
		rc = read_connector(c, db, &t, 1, err);
	if (rc)
		goto out;
	url_changed = strcmp(t.base_url, in.base_url) != 0;
	params[0] = t.id;
	params[1] = sl_json_text(config);
	params[2] = in.label;
	if (!params[1]) {
		rc = oom(err);
		goto out;
	}
	/* The URL must expand as sluice.create_connector demands of a new one. */
	rc = sl_db_exec(db,
	                "UPDATE sluice.connector"
	                "   SET config = config || $2::jsonb, label = coalesce($3, label),"
	                "       updated_at = now()"
	                " WHERE id = $1::uuid"
	                " RETURNING sluice.expand_url('{base_url}', config)",
	                3, params, err);
	if (rc) {
		rc = base_url_error(err);
		goto out;
	}
	if (keys) {
		rc = store_keys(c, db, kr, t.id, &in, 1, err);
		if (rc)
			goto out;
	}
	if (keys || url_changed) {
		/* New keys or a new address deserve a new try: pending until a test or a sync. */
		if (!strcmp(t.status, "reauth_required") || !strcmp(t.status, "error"))
			rc = sl_db_exec(db, "SELECT sluice.set_connector_status($1::uuid, 'pending', NULL)",
			                1, params, err);
		else if (!strcmp(t.status, "disabled") &&
		         (!strcmp(t.status_before_disable, "reauth_required") ||
		          !strcmp(t.status_before_disable, "error")))
			/* Enabling it again returns it to pending, not to the old trouble. */
			rc = sl_db_exec(db, "UPDATE sluice.connector SET status_before_disable = 'pending'"
			                " WHERE id = $1::uuid", 1, params, err);
		if (rc)
			goto out;
	}
	rc = write_sync_config(db, t.id, &in, err);
	if (rc)
		goto out;

	detail = json_object_new_object();
	if (!detail) {
		rc = oom(err);
		goto out;
	}
	json_object_object_add(detail, "fields", given_fields(&in, 1));
	json_object_object_add(detail, "credentials", given_keys(&in));
	json_object_object_add(detail, "baseUrlChanged", json_object_new_boolean(url_changed));
	json_object_object_add(detail, "previousStatus", json_object_new_string(t.status));
	rc = api_commit_answer(c, "admin.connector.update", 200, detail, "connector", DOC_SQL, t.id, err);
out:
	api_tx_end(c, rc);
	json_object_put(detail);
	json_object_put(config);
	json_object_put(body);
	return rc;
}

/* ---- POST /admin/connectors/{id}/test ------------------------------------------------ */

/* What a test found: the answer, and what woo_record_test records. */
struct test_outcome {
	int  ok;
	char status[32];                  /* when not ok: reauth_required or error */
	char message[MESSAGE_MAX + 1];
	int  code;                        /* sl_woo_test's error code; 0 when ok */
	int  http_status;                 /* the shop's, when one came */
};

/*
 * Tests the shop of t with the secrets (sl_woo_test; secrets may be NULL:
 * none are stored), outside any transaction (DESIGN 4), into o.  The keys
 * are on the log's redaction list from here on.
 */
static void
run_test(struct api_ctx *c, const struct target *t, json_object *secrets,
         struct test_outcome *o)
{
	json_object *k = NULL, *s = NULL;
	struct sl_woo_shop shop;
	struct sl_err werr;

	memset(o, 0, sizeof(*o));
	snprintf(o->status, sizeof(o->status), "reauth_required");
	if (!secrets || !json_object_object_get_ex(secrets, "consumer_key", &k) ||
	    !json_object_object_get_ex(secrets, "consumer_secret", &s) ||
	    !json_object_is_type(k, json_type_string) || !json_object_is_type(s, json_type_string)) {
		o->code = SL_EAUTH;
		snprintf(o->message, sizeof(o->message), "No consumer key and secret are stored for "
		         "this connector. Enter the REST API key's consumer key and secret, save, and "
		         "test again.");
		return;
	}
	sl_log_add_secret(json_object_get_string(k));
	sl_log_add_secret(json_object_get_string(s));
	memset(&shop, 0, sizeof(shop));
	shop.base_url = t->base_url;
	shop.consumer_key = json_object_get_string(k);
	shop.consumer_secret = json_object_get_string(s);
	shop.auth_in_query = t->auth_in_query;
	shop.ca_file = c->ca_file;
	shop.timeout_ms = c->oauth_timeout_ms;
	sl_err_clear(&werr);
	o->ok = sl_woo_test(&shop, o->message, sizeof(o->message), &werr) == 0;
	o->code = o->ok ? 0 : werr.code;
	o->http_status = werr.http_status;
	snprintf(o->status, sizeof(o->status), "%s",
	         werr.code == SL_EAUTH ? "reauth_required" : "error");
	/* sl_woo_test promises no secret in its message; should one slip through, say less. */
	if (strstr(o->message, shop.consumer_key) || strstr(o->message, shop.consumer_secret))
		snprintf(o->message, sizeof(o->message), "The connection test failed.");
	if (!o->message[0])
		snprintf(o->message, sizeof(o->message), o->ok ? "Connected." : "The connection test "
		         "failed.");
	sl_log_info("woocommerce connection test", SLF_S("request_id", c->req->request_id),
	            SLF_S("connector_id", t->id), SLF_B("success", o->ok),
	            SLF_S("code", o->ok ? "ok" : sl_code_name(werr.code)),
	            SLF_I("http_status", werr.http_status), SLF_S("error", o->ok ? "" : werr.msg),
	            SLF_END);
}

int
api_admin_connector_test(struct api_ctx *c, struct sl_err *err)
{
	json_object *secrets = NULL, *detail = NULL, *answer = NULL;
	struct target t;
	struct test_outcome o;
	struct sl_keyring *kr = NULL;
	struct sl_cred_env env;
	struct sl_db *db = NULL;
	char actor[40];
	const char *params[4];
	int rc;

	rc = target_init(c, &t, err);
	if (!rc)
		rc = api_keyring(c, &kr, err);
	if (!rc)
		rc = api_db(c, &db, err);
	if (!rc)
		rc = read_connector(c, db, &t, 0, err);
	if (!rc)
		rc = refuse_disabled(&t, err);
	if (rc)
		goto out;
	/* Its own transaction, with its credential.decrypt audit row: no lock is held meanwhile. */
	snprintf(actor, sizeof(actor), "key:%lld", c->key_id);
	api_cred_env(c, db, kr, actor, &env);
	rc = sl_credential_load(&env, t.id, SL_CRED_ANY_STATUS, &secrets, NULL, err);
	if (rc && rc != SL_ENOTFOUND) {
		rc = api_secret_failure(err);
		goto out;
	}
	run_test(c, &t, secrets, &o);

	rc = api_tx_begin(c, &db, err);
	if (!rc)
		rc = read_connector(c, db, &t, 1, err);
	if (!rc)
		rc = refuse_disabled(&t, err);
	if (rc)
		goto out;
	params[0] = t.id;
	params[1] = o.ok ? "true" : "false";
	params[2] = o.status;
	params[3] = o.message;
	rc = sl_db_exec(db, "SELECT sluice.woo_record_test($1::uuid, $2::boolean, $3, $4)", 4,
	                params, err);
	if (rc)
		goto out;

	detail = json_object_new_object();
	answer = json_object_new_object();
	if (!detail || !answer) {
		rc = oom(err);
		goto out;
	}
	json_object_object_add(detail, "success", json_object_new_boolean(o.ok));
	json_object_object_add(detail, "message", json_object_new_string(o.message));
	if (!o.ok) {
		json_object_object_add(detail, "status", json_object_new_string(o.status));
		json_object_object_add(detail, "error", json_object_new_string(sl_code_name(o.code)));
		if (o.http_status)
			json_object_object_add(detail, "shopHttpStatus",
			                       json_object_new_int(o.http_status));
	}
	rc = api_audit_one(c, "admin.connector.test", "ok", 200, c->target, detail, err);
	if (rc)
		goto out;
	json_object_object_add(answer, "success", json_object_new_boolean(o.ok));
	json_object_object_add(answer, "message", json_object_new_string(o.message));
	rc = api_respond_json(c->resp, 200, answer, err);
	if (!rc)
		rc = api_tx_commit_audited(c, err);
out:
	api_tx_end(c, rc);
	json_object_put(answer);
	json_object_put(detail);
	json_object_put(secrets);
	return rc;
}

/* ---- POST /admin/connectors/{id}/sync ------------------------------------------------ */

int
api_admin_connector_sync(struct api_ctx *c, struct sl_err *err)
{
	json_object *body = NULL, *detail = NULL, *answer = NULL;
	struct target t;
	struct sl_db *db = NULL;
	PGresult *res = NULL;
	char run[API_UUID_TEXT], status[32];
	const char *params[4];
	int products = 0, orders = 0, has_products = 0, has_orders = 0, rc;

	rc = target_init(c, &t, err);
	if (!rc)
		rc = optional_body(c, &body, err);
	if (!rc && body)
		rc = api_body_known_fields(body, sync_fields, "a sync takes syncProducts and "
		                           "syncOrders", err);
	if (!rc && body)
		rc = get_bool(body, "syncProducts", 0, &products, &has_products, err);
	if (!rc && body)
		rc = get_bool(body, "syncOrders", 0, &orders, &has_orders, err);
	if (rc)
		goto out;
	if (has_products && has_orders && !products && !orders) {
		rc = api_fail(err, 422, "syncProducts", "a sync must read products, orders or both");
		goto out;
	}

	rc = api_tx_begin(c, &db, err);
	if (!rc)
		rc = read_connector(c, db, &t, 1, err);
	if (!rc)
		rc = refuse_disabled(&t, err);
	if (rc)
		goto out;
	/*
	 * Two statements: a run woo_request_sync inserts is not in the snapshot
	 * of a statement that calls it, so it could not read the run back.
	 */
	params[0] = t.id;
	params[1] = has_products ? (products ? "true" : "false") : NULL;
	params[2] = has_orders ? (orders ? "true" : "false") : NULL;
	rc = sl_db_query(db, &res, "SELECT sluice.woo_request_sync($1::uuid, 'manual', $2::boolean,"
	                 "                               $3::boolean) AS run_id", 3, params, err);
	if (rc)
		goto out;
	if (!sl_pg_get(res, 0, "run_id")) {
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "sluice.woo_request_sync made no run");
		goto out;
	}
	snprintf(run, sizeof(run), "%s", sl_pg_get(res, 0, "run_id"));
	PQclear(res);
	params[0] = run;
	rc = sl_db_query(db, &res, "SELECT status FROM sluice.external_sync_run WHERE id = $1::uuid",
	                 1, params, err);
	if (rc)
		goto out;
	if (PQntuples(res) != 1) {
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "the run of woo_request_sync is gone");
		goto out;
	}
	snprintf(status, sizeof(status), "%s", sl_pg_get(res, 0, "status"));

	detail = json_object_new_object();
	answer = json_object_new_object();
	if (!detail || !answer) {
		rc = oom(err);
		goto out;
	}
	json_object_object_add(detail, "runId", json_object_new_string(run));
	json_object_object_add(detail, "status", json_object_new_string(status));
	if (has_products)
		json_object_object_add(detail, "syncProducts", json_object_new_boolean(products));
	if (has_orders)
		json_object_object_add(detail, "syncOrders", json_object_new_boolean(orders));
	rc = api_audit_one(c, "admin.connector.sync", "ok", 202, c->target, detail, err);
	if (rc)
		goto out;
	json_object_object_add(answer, "runId", json_object_new_string(run));
	json_object_object_add(answer, "status", json_object_new_string(status));
	rc = api_respond_json(c->resp, 202, answer, err);
	if (!rc)
		rc = api_tx_commit_audited(c, err);
out:
	api_tx_end(c, rc);
	PQclear(res);
	json_object_put(answer);
	json_object_put(detail);
	json_object_put(body);
	return rc;
}

/* ---- GET /admin/connectors/{id}/runs ------------------------------------------------- */

/* limit (1..RUNS_MAX, default RUNS_DEFAULT), the only query parameter; 422 naming the parameter. */
static int
runs_limit(const char *qs, long long *limit, struct sl_err *err)
{
	struct api_query q;
	const char *v;
	int i, n, rc;

	*limit = RUNS_DEFAULT;
	rc = api_query_parse(qs, &q, err);
	if (rc)
		return rc;
	for (i = 0; i < q.n; i++) {
		if (strcmp(q.p[i].name, "limit")) {
			rc = api_fail(err, 422, q.p[i].name, "query parameter %.60s is not known (limit "
			              "is)", q.p[i].name);
			goto out;
		}
	}
	v = api_query_get(&q, "limit", &n);
	if (n > 1 || (v && sl_parse_ll(v, 1, RUNS_MAX, limit)))
		rc = api_fail(err, 422, "limit", "query parameter limit must be an integer from 1 to %d",
		              RUNS_MAX);
out:
	api_query_release(&q);
	return rc;
}

int
api_admin_connector_runs(struct api_ctx *c, struct sl_err *err)
{
	struct target t;
	long long limit;
	char org[32], limit_s[32];
	const char *params[3];
	int rc;

	rc = target_init(c, &t, err);
	if (!rc)
		rc = runs_limit(c->req->query, &limit, err);
	if (rc)
		return rc;
	snprintf(org, sizeof(org), "%lld", c->org_id);
	snprintf(limit_s, sizeof(limit_s), "%lld", limit);
	params[0] = t.id;
	params[1] = org;
	params[2] = limit_s;
	return api_respond_query(c, 200, "connector",
	                         "SELECT jsonb_build_object('runs', coalesce(("
	                         "         SELECT jsonb_agg(sluice.woo_run_doc(x.r)"
	                         "                          ORDER BY (x.r).created_at DESC, (x.r).id DESC)"
	                         "           FROM (SELECT r FROM sluice.external_sync_run r"
	                         "                  WHERE r.connector_id = c.id"
	                         "                  ORDER BY r.created_at DESC, r.id DESC"
	                         "                  LIMIT $3::integer) x), '[]'::jsonb))::text AS doc"
	                         "  FROM sluice.connector c"
	                         " WHERE c.id = $1::uuid AND c.org_id = $2::bigint"
	                         "   AND c.type = 'woocommerce' AND c.deleted_at IS NULL",
	                         3, params, err);
}
