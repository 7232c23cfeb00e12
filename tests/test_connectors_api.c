/* test_connectors_api.c — sluice-api's connector, OAuth, event and audit routes, run as a CGI program. */
#include <check.h>
#include <ctype.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "adapters/credential.h"
#include "api/job_input.h"
#include "common/crypto.h"
#include "common/db.h"
#include "common/secret.h"
#include "common/str.h"
#include "tests/api_client.h"
#include "tests/harness.h"

/* ---- running the CGI program ------------------------------------------ */

static char url[256];
static PGconn *db;
static long long org_a, org_b, kid_a_write, kid_a_admin, kid_b_write;
static char key_a_write[64], key_a_read[64], key_a_admin[64], key_b_write[64];
static struct t_api_resp R;

/* Strings that must never appear in an answer, a log line or a readable row. */
#define PLANTED   "PlantedSecret-7f3c9e1a-never-show-me"
#define PLANTED_2 "SecondSecret-41d0b2aa-never-show-me"
/*
 * Runs sluice-api on rq (tests/api_client.h) against this test's database,
 * logging at debug; the answer lands in R.  It must leak no secret.
 */
static void
call(const struct t_api_req *rq)
{
	struct t_api_req r = *rq;

	r.db_url = url;
	r.log_level = "debug";
	t_api_call(&r, &R);
}

static void
call_simple(const char *method, const char *path, const char *key, const char *body)
{
	call(&(struct t_api_req){ .method = method, .path = path, .key = key, .body = body });
}

static void
call_query(const char *path, const char *query, const char *key)
{
	call(&(struct t_api_req){ .method = "GET", .path = path, .query = query, .key = key });
}

/* ---- JSON and row helpers --------------------------------------------- */

/* Shorthands on the last answer R and the test's database (tests/api_client.h, harness.h). */
#define jstr(path)                        t_api_str(&R, (path))
#define jint(path)                        t_api_int(&R, (path))
#define assert_error(status, code, field) t_api_assert_error(&R, (status), (code), (field))
#define q_int(sql, p1, p2)                t_int_p(db, (sql), (p1), (p2))
#define q_text(sql, p1, p2, out, n)       t_text_p(db, (sql), (p1), (p2), (out), (n))
#define jbool(path)                       t_api_bool(&R, (path))
#define jnull(path)                       t_api_is_null(&R, (path))
#define jlen(path)                        t_api_len(&R, (path))
#define rid()                             t_api_request_id(&R)
#define assert_audit(r, key, org, action, target, outcome, status) \
	t_api_assert_audit(db, (r), (key), (org), (action), (target), (outcome), (status))
#define assert_no_secret_in_rows()        t_api_assert_secrets_absent(db)
#define stored_secrets(id)                t_load_secrets(url, (id))

/* Rows of table (an identifier we write) that belong to org. */
static long long
org_rows(const char *table, long long org)
{
	char sql[256];

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE org_id = %lld", table, org);
	return t_int(db, sql);
}

/* ---- fixture ------------------------------------------------------------ */

static void
setup(void)
{
	memset(&R, 0, sizeof(R));
	t_api_forget_all();
	t_api_never_show(PLANTED);
	t_api_never_show(PLANTED_2);
	t_use_master_key();
	t_api_never_show(T_MASTER_KEY);
	t_db_create(url, sizeof(url));
	db = t_connect(url);
	org_a = t_org(db, "org a");
	org_b = t_org(db, "org b");
	kid_a_write = t_key(url, org_a, "write", key_a_write);
	(void)t_key(url, org_a, "read", key_a_read);
	kid_a_admin = t_key(url, org_a, "admin", key_a_admin);
	kid_b_write = t_key(url, org_b, "write", key_b_write);
}

static void
teardown(void)
{
	t_api_resp_clear(&R);
	PQfinish(db);
	db = NULL;
}

/* Creates a connector through the API; its id goes to id[37]. */
static void
post_connector(const char *key, const char *body, char id[37])
{
	call_simple("POST", "/api/v1/connectors", key, body);
	ck_assert_msg(R.status == 201, "POST %s: %d %s", body, R.status, R.body);
	ck_assert_ptr_nonnull(jstr("connector.id"));
	snprintf(id, 37, "%s", jstr("connector.id"));
}

#define WOO_BODY                                                                          \
	"{\"type\":\"WooCommerce\",\"label\":\"Main shop\","                                   \
	"\"config\":{\"base_url\":\"https://shop.example.com\",\"page_size\":50,\"delta\":true}," \
	"\"credentials\":{\"consumer_key\":\"ck_" PLANTED "\",\"consumer_secret\":\"" PLANTED "\"}}"

/* The connector object in R at prefix has every field of the contract, typed. */
static void
assert_connector_shape(const char *prefix)
{
	static const char *const strings[] = { "id", "type", "label", "direction", "status",
	                                       "status_changed_at", "created_at", "updated_at" };
	static const char *const nullable[] = { "status_message", "account_id", "account_name",
	                                        "host_system_identifier", "last_sync_at",
	                                        "next_sync_at", "last_test_at" };
	char path[128];
	size_t i;

	ck_assert_int_eq(jlen(prefix), 20);
	for (i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
		snprintf(path, sizeof(path), "%s.%s", prefix, strings[i]);
		ck_assert_msg(jstr(path) != NULL, "%s is not a string in %s", path, R.body);
	}
	for (i = 0; i < sizeof(nullable) / sizeof(nullable[0]); i++) {
		json_object *v;

		snprintf(path, sizeof(path), "%s.%s", prefix, nullable[i]);
		v = t_json_get(R.json, path);
		ck_assert_msg(jnull(path) || (v && json_object_is_type(v, json_type_string)),
		              "%s is neither null nor a string in %s", path, R.body);
	}
	snprintf(path, sizeof(path), "%s.id", prefix);
	ck_assert(api_is_uuid(jstr(path)));
	snprintf(path, sizeof(path), "%s.created_at", prefix);
	ck_assert(api_is_rfc3339(jstr(path)));
	ck_assert_int_eq(jstr(path)[strlen(jstr(path)) - 1], 'Z');
	snprintf(path, sizeof(path), "%s.status_changed_at", prefix);
	ck_assert(api_is_rfc3339(jstr(path)));
	snprintf(path, sizeof(path), "%s.enabled", prefix);
	(void)jbool(path);
	snprintf(path, sizeof(path), "%s.has_credentials", prefix);
	(void)jbool(path);
	snprintf(path, sizeof(path), "%s.config", prefix);
	ck_assert(json_object_is_type(t_json_get(R.json, path), json_type_object));
	/* Seed 001's rate_limit: the tightest window of the connector's policy. */
	snprintf(path, sizeof(path), "%s.rate_limit", prefix);
	if (!jnull(path)) {
		ck_assert_int_eq(jlen(path), 3);
		snprintf(path, sizeof(path), "%s.rate_limit.limit", prefix);
		ck_assert_int_gt(jint(path), 0);
		snprintf(path, sizeof(path), "%s.rate_limit.remaining", prefix);
		ck_assert_int_ge(jint(path), 0);
		snprintf(path, sizeof(path), "%s.rate_limit.reset_at", prefix);
		ck_assert(api_is_rfc3339(jstr(path)));
	}
	/* Seed 001's health object. */
	snprintf(path, sizeof(path), "%s.health", prefix);
	ck_assert_int_eq(jlen(path), 4);
	snprintf(path, sizeof(path), "%s.health.status", prefix);
	ck_assert_ptr_nonnull(jstr(path));
	snprintf(path, sizeof(path), "%s.health.last_check", prefix);
	ck_assert(jnull(path) || api_is_rfc3339(jstr(path)));
	snprintf(path, sizeof(path), "%s.health.latency_ms", prefix);
	ck_assert(t_json_get(R.json, path) == NULL);
	snprintf(path, sizeof(path), "%s.health.error_rate", prefix);
	ck_assert(t_json_get(R.json, path) == NULL);
}

/*
 * What the credential calls need, as the test itself (actor "test"): the
 * test's master key and a session of its own to the test's database.
 * Release with cred_env_close().
 */
static void
cred_env_open(struct sl_cred_env *env)
{
	struct sl_err err;

	memset(env, 0, sizeof(*env));
	ck_assert_int_eq(sl_keyring_new(&env->kr, T_MASTER_KEY, &err), 0);
	ck_assert_msg(sl_db_open(&env->db, url, "test", &err) == 0, "%s", err.msg);
	env->actor = "test";
}

static void
cred_env_close(struct sl_cred_env *env)
{
	sl_db_free(env->db);
	sl_keyring_free(env->kr);
	memset(env, 0, sizeof(*env));
}

/* ---- CRUD ---------------------------------------------------------------- */

START_TEST(create_201_shape_rows_audit)
{
	char id[37], want[512], got[512], path[96];
	json_object *secrets;

	post_connector(key_a_write, WOO_BODY, id);
	ck_assert_str_eq(t_api_hdr(&R, "Content-Type"), "application/json");
	snprintf(path, sizeof(path), "/api/v1/connectors/%s", id);
	ck_assert_str_eq(t_api_hdr(&R, "Location"), path);
	ck_assert_int_eq(json_object_object_length(R.json), 1);
	assert_connector_shape("connector");
	ck_assert_str_eq(jstr("connector.type"), "woocommerce");
	ck_assert_str_eq(jstr("connector.label"), "Main shop");
	ck_assert_str_eq(jstr("connector.direction"), "source");
	ck_assert_str_eq(jstr("connector.status"), "pending");
	ck_assert(jnull("connector.status_message"));
	ck_assert(jnull("connector.account_id"));
	ck_assert_int_eq(jbool("connector.enabled"), 1);
	ck_assert_int_eq(jbool("connector.has_credentials"), 1);
	ck_assert_str_eq(jstr("connector.config.base_url"), "https://shop.example.com");
	ck_assert_int_eq(jint("connector.config.page_size"), 50);
	ck_assert_int_eq(jbool("connector.config.delta"), 1);
	ck_assert_int_eq(jlen("connector.config"), 3);
	ck_assert_str_eq(jstr("connector.health.status"), "unknown");
	ck_assert(jnull("connector.health.last_check"));
	ck_assert(jnull("connector.last_sync_at"));

	/* The row. */
	snprintf(want, sizeof(want), "%lld|woocommerce|source|Main shop|t|pending|"
	         "{\"delta\": true, \"base_url\": \"https://shop.example.com\", \"page_size\": 50}|t",
	         org_a);
	q_text("SELECT concat_ws('|', org_id, type, direction, label, enabled, status, config::text,"
	       "                 deleted_at IS NULL)"
	       "  FROM sluice.connector WHERE id = $1::uuid", id, NULL, got, sizeof(got));
	ck_assert_str_eq(got, want);

	/* The secrets: encrypted, and exactly what was sent. */
	ck_assert_int_eq(q_int("SELECT count(*) FROM sluice.credential WHERE connector_id = $1::uuid",
	                       id, NULL), 1);
	secrets = stored_secrets(id);
	ck_assert_str_eq(json_object_get_string(t_json_get(secrets, "consumer_secret")), PLANTED);
	ck_assert_str_eq(json_object_get_string(t_json_get(secrets, "consumer_key")), "ck_" PLANTED);
	ck_assert_int_eq(json_object_object_length(secrets), 2);
	json_object_put(secrets);

	/* The audit row: in the change's transaction, naming fields, never values. */
	snprintf(want, sizeof(want), "key:%lld|connector.create|connector:%s|ok|201|%lld",
	         kid_a_write, id, org_a);
	q_text("SELECT concat_ws('|', actor, action, target, outcome, http_status, org_id)"
	       "  FROM sluice.audit WHERE action = 'connector.create'", NULL, NULL, got, sizeof(got));
	ck_assert_str_eq(got, want);
	q_text("SELECT detail::text FROM sluice.audit WHERE action = 'connector.create'", NULL, NULL,
	       got, sizeof(got));
	ck_assert_ptr_nonnull(strstr(got, "consumer_secret"));
	ck_assert_ptr_nonnull(strstr(got, "\"type\": \"woocommerce\""));
	assert_no_secret_in_rows();
}
END_TEST

START_TEST(get_and_list)
{
	char a1[37], a2[37], b1[37], path[96];

	post_connector(key_a_write, WOO_BODY, a1);
	post_connector(key_a_write, "{\"type\":\"ttd\",\"label\":\"Trade desk\","
	               "\"credentials\":{\"api_key\":\"" PLANTED_2 "\"}}", a2);
	post_connector(key_b_write, "{\"type\":\"dv360\",\"label\":\"B's DV360\"}", b1);

	call_simple("GET", "/api/v1/connectors", key_a_read, NULL);
	ck_assert_int_eq(R.status, 200);
	ck_assert_int_eq(json_object_object_length(R.json), 1);
	ck_assert_int_eq(jlen("connectors"), 2);
	/* Oldest first. */
	ck_assert_str_eq(jstr("connectors.0.id"), a1);
	ck_assert_str_eq(jstr("connectors.1.id"), a2);
	assert_connector_shape("connectors.0");
	assert_connector_shape("connectors.1");
	ck_assert_str_eq(jstr("connectors.1.type"), "ttd");
	ck_assert_int_eq(jbool("connectors.1.has_credentials"), 1);
	ck_assert_ptr_null(strstr(R.body, b1));

	call_simple("GET", "/api/v1/connectors", key_b_write, NULL);
	ck_assert_int_eq(jlen("connectors"), 1);
	ck_assert_str_eq(jstr("connectors.0.id"), b1);
	ck_assert_int_eq(jbool("connectors.0.has_credentials"), 0);
	ck_assert_str_eq(jstr("connectors.0.status"), "pending");

	snprintf(path, sizeof(path), "/api/v1/connectors/%s", a2);
	call_simple("GET", path, key_a_read, NULL);
	ck_assert_int_eq(R.status, 200);
	ck_assert_int_eq(json_object_object_length(R.json), 1);
	assert_connector_shape("connector");
	ck_assert_str_eq(jstr("connector.id"), a2);
	ck_assert_str_eq(jstr("connector.label"), "Trade desk");

	/* The id in upper case names the same connector; HEAD answers too. */
	{
		char upper[96];
		size_t i;

		snprintf(upper, sizeof(upper), "%s", path);
		for (i = strlen("/api/v1/connectors/"); upper[i]; i++)
			upper[i] = (char)toupper((unsigned char)upper[i]);
		call_simple("GET", upper, key_a_read, NULL);
		ck_assert_int_eq(R.status, 200);
		ck_assert_str_eq(jstr("connector.id"), a2);
	}

	/* Reads are not audited; the list is empty for a fresh org. */
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.audit WHERE action LIKE 'connector.%'"
	                           "   AND action <> 'connector.create'"), 0);
	assert_no_secret_in_rows();
}
END_TEST

START_TEST(client_credentials_enqueue_first_fetch)
{
	char id[37], want[256], got[256];

	post_connector(key_a_write, "{\"type\":\"paypal\",\"label\":\"PayPal\","
	               "\"credentials\":{\"client_id\":\"AbC\",\"client_secret\":\"" PLANTED "\"}}", id);
	snprintf(want, sizeof(want), "oauth.refresh|2|queued|%lld", org_a);
	q_text("SELECT concat_ws('|', kind, priority, state, org_id) FROM sluice.jobs"
	       " WHERE connector_id = $1::uuid", id, NULL, got, sizeof(got));
	ck_assert_str_eq(got, want);
	/* An oauth2_code type takes no credentials and enqueues nothing. */
	post_connector(key_a_write, "{\"type\":\"dv360\",\"label\":\"DV\"}", id);
	ck_assert_int_eq(q_int("SELECT count(*) FROM sluice.jobs WHERE connector_id = $1::uuid", id,
	                       NULL), 0);
	ck_assert_int_eq(jbool("connector.has_credentials"), 0);
	assert_no_secret_in_rows();
}
END_TEST

START_TEST(update_merges_credentials)
{
	char id[37], path[96], got[512], target[64];
	json_object *secrets;
	long long events_before;

	post_connector(key_a_write, WOO_BODY, id);
	snprintf(path, sizeof(path), "/api/v1/connectors/%s", id);

	/* Label and config; credentials untouched. */
	call_simple("PUT", path, key_a_write, "{\"label\":\"Renamed\",\"config\":"
	            "{\"base_url\":\"https://other.example.com/\"}}");
	ck_assert_msg(R.status == 200, "%d %s", R.status, R.body);
	assert_connector_shape("connector");
	ck_assert_str_eq(jstr("connector.label"), "Renamed");
	ck_assert_str_eq(jstr("connector.config.base_url"), "https://other.example.com/");
	ck_assert_int_eq(jlen("connector.config"), 1);
	snprintf(target, sizeof(target), "connector:%s", id);
	assert_audit(rid(), kid_a_write, org_a, "connector.update", target, "ok", 200);
	q_text("SELECT concat_ws('|', label, config->>'base_url') FROM sluice.connector"
	       " WHERE id = $1::uuid", id, NULL, got, sizeof(got));
	ck_assert_str_eq(got, "Renamed|https://other.example.com/");

	/* One credential field: merged into the stored ones. */
	call_simple("PUT", path, key_a_write, "{\"credentials\":{\"consumer_secret\":\"" PLANTED_2
	            "\"}}");
	ck_assert_msg(R.status == 200, "%d %s", R.status, R.body);
	ck_assert_int_eq(jbool("connector.has_credentials"), 1);
	ck_assert_str_eq(jstr("connector.label"), "Renamed");
	secrets = stored_secrets(id);
	ck_assert_str_eq(json_object_get_string(t_json_get(secrets, "consumer_secret")), PLANTED_2);
	ck_assert_str_eq(json_object_get_string(t_json_get(secrets, "consumer_key")), "ck_" PLANTED);
	json_object_put(secrets);
	q_text("SELECT detail::text FROM sluice.audit WHERE request_id = $1"
	       "   AND action = 'connector.update'", rid(), NULL, got, sizeof(got));
	ck_assert_ptr_nonnull(strstr(got, "consumer_secret"));
	ck_assert_int_eq(q_int("SELECT version FROM sluice.credential WHERE connector_id = $1::uuid",
	                       id, NULL), 2);

	/* A connector that needed re-authorisation goes back to pending with new credentials. */
	t_exec(db, "SELECT sluice.set_connector_status(id, 'reauth_required', 'key revoked')"
	           "  FROM sluice.connector");
	events_before = t_int(db, "SELECT count(*) FROM sluice.event");
	call_simple("PUT", path, key_a_write, "{\"credentials\":{\"consumer_key\":\"ck_new\"}}");
	ck_assert_msg(R.status == 200, "%d %s", R.status, R.body);
	ck_assert_str_eq(jstr("connector.status"), "pending");
	secrets = stored_secrets(id);
	ck_assert_str_eq(json_object_get_string(t_json_get(secrets, "consumer_key")), "ck_new");
	ck_assert_str_eq(json_object_get_string(t_json_get(secrets, "consumer_secret")), PLANTED_2);
	json_object_put(secrets);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.event") - events_before, 1);
	q_text("SELECT concat_ws('|', type, data->>'from', data->>'to') FROM sluice.event"
	       " ORDER BY id DESC LIMIT 1", NULL, NULL, got, sizeof(got));
	ck_assert_str_eq(got, "connector_status_changed|reauth_required|pending");

	/* A disabled one stays disabled, and comes back pending rather than in trouble. */
	t_exec(db, "SELECT sluice.set_connector_status(id, 'error', 'boom') FROM sluice.connector");
	t_exec(db, "SELECT sluice.set_connector_enabled(id, false) FROM sluice.connector");
	call_simple("PUT", path, key_a_write, "{\"credentials\":{\"consumer_key\":\"ck_newer\"}}");
	ck_assert_msg(R.status == 200, "%d %s", R.status, R.body);
	ck_assert_str_eq(jstr("connector.status"), "disabled");
	{
		char p2[128];

		snprintf(p2, sizeof(p2), "%s/enable", path);
		call_simple("POST", p2, key_a_write, NULL);
	}
	ck_assert_str_eq(jstr("connector.status"), "pending");

	/* Fields that cannot change, and bad values, name themselves. */
	call_simple("PUT", path, key_a_write, "{\"type\":\"ttd\"}");
	assert_error(422, "validation_failed", "type");
	call_simple("PUT", path, key_a_write, "{\"config\":{\"page_size\":5}}");
	assert_error(422, "validation_failed", "config.base_url");
	call_simple("PUT", path, key_a_write, "{\"config\":{\"base_url\":\"ftp://x\"}}");
	assert_error(422, "validation_failed", "config.base_url");
	call_simple("PUT", path, key_a_write, "{\"credentials\":{\"consumer_key\":7}}");
	assert_error(422, "validation_failed", "credentials.consumer_key");
	assert_audit(rid(), kid_a_write, org_a, "connector.update", target, "refused", 422);
	call_simple("PUT", path, key_a_write, "{\"label\":\"\"}");
	assert_error(422, "validation_failed", "label");
	q_text("SELECT label FROM sluice.connector WHERE id = $1::uuid", id, NULL, got, sizeof(got));
	ck_assert_str_eq(got, "Renamed");
	assert_no_secret_in_rows();
}
END_TEST

START_TEST(oauth_code_types_take_no_credentials)
{
	char id[37], path[96];

	post_connector(key_a_write, "{\"type\":\"dv360\",\"label\":\"DV\"}", id);
	snprintf(path, sizeof(path), "/api/v1/connectors/%s", id);
	call_simple("PUT", path, key_a_write, "{\"credentials\":{\"access_token\":\"" PLANTED "\"}}");
	assert_error(422, "validation_failed", "credentials");
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.credential"), 0);
}
END_TEST

START_TEST(enable_disable_events)
{
	char id[37], path[128], got[512], want[512];

	post_connector(key_a_write, WOO_BODY, id);
	snprintf(path, sizeof(path), "/api/v1/connectors/%s/disable", id);
	call_simple("POST", path, key_a_write, NULL);
	ck_assert_msg(R.status == 200, "%d %s", R.status, R.body);
	assert_connector_shape("connector");
	ck_assert_int_eq(jbool("connector.enabled"), 0);
	ck_assert_str_eq(jstr("connector.status"), "disabled");
	ck_assert_str_eq(jstr("connector.status_message"), "disabled by a user");
	snprintf(want, sizeof(want), "connector:%s", id);
	assert_audit(rid(), kid_a_write, org_a, "connector.disable", want, "ok", 200);

	/* Again: no change, still 200. */
	call_simple("POST", path, key_a_write, NULL);
	ck_assert_int_eq(R.status, 200);
	ck_assert_int_eq(jbool("connector.enabled"), 0);

	snprintf(path, sizeof(path), "/api/v1/connectors/%s/enable", id);
	call_simple("POST", path, key_a_write, NULL);
	ck_assert_int_eq(R.status, 200);
	ck_assert_int_eq(jbool("connector.enabled"), 1);
	ck_assert_str_eq(jstr("connector.status"), "pending");
	assert_audit(rid(), kid_a_write, org_a, "connector.enable", want, "ok", 200);

	q_text("SELECT string_agg(concat_ws(':', type, connector_id, data->>'from', data->>'to'), ','"
	       "                  ORDER BY id) FROM sluice.event", NULL, NULL, got, sizeof(got));
	snprintf(want, sizeof(want), "connector_status_changed:%s:pending:disabled,"
	         "connector_status_changed:%s:disabled:pending", id, id);
	ck_assert_str_eq(got, want);

	/* The same through the API. */
	call_query("/api/v1/events", NULL, key_a_read);
	ck_assert_int_eq(R.status, 200);
	ck_assert_int_eq(json_object_object_length(R.json), 2);
	ck_assert_int_eq(jlen("events"), 2);
	ck_assert_int_eq(jlen("events.0"), 5);
	ck_assert_str_eq(jstr("events.0.type"), "connector_status_changed");
	ck_assert_str_eq(jstr("events.0.connector_id"), id);
	ck_assert_str_eq(jstr("events.0.data.from"), "pending");
	ck_assert_str_eq(jstr("events.0.data.to"), "disabled");
	ck_assert_str_eq(jstr("events.1.data.from"), "disabled");
	ck_assert_str_eq(jstr("events.1.data.to"), "pending");
	ck_assert(api_is_rfc3339(jstr("events.0.at")));
	ck_assert_int_lt(jint("events.0.id"), jint("events.1.id"));
	ck_assert_int_eq(jint("next_after"), jint("events.1.id"));
	{
		char q[64], one[64];
		long long first = jint("events.0.id"), second = jint("events.1.id");

		/* Paging by id. */
		snprintf(q, sizeof(q), "after=%lld&limit=1", first);
		call_query("/api/v1/events", q, key_a_read);
		ck_assert_int_eq(jlen("events"), 1);
		ck_assert_int_eq(jint("events.0.id"), second);
		ck_assert_int_eq(jint("next_after"), second);
		snprintf(q, sizeof(q), "after=%lld", second);
		call_query("/api/v1/events", q, key_a_read);
		ck_assert_int_eq(jlen("events"), 0);
		ck_assert_int_eq(jint("next_after"), second);
		call_query("/api/v1/events", "limit=1", key_a_read);
		ck_assert_int_eq(jlen("events"), 1);
		ck_assert_int_eq(jint("next_after"), first);

		/* One event. */
		snprintf(one, sizeof(one), "/api/v1/events/%lld", first);
		call_simple("GET", one, key_a_read, NULL);
		ck_assert_int_eq(R.status, 200);
		ck_assert_int_eq(json_object_object_length(R.json), 1);
		ck_assert_int_eq(jint("event.id"), first);
		ck_assert_str_eq(jstr("event.type"), "connector_status_changed");
		ck_assert_str_eq(jstr("event.data.to"), "disabled");
		call_simple("GET", "/api/v1/events/99999999", key_a_read, NULL);
		assert_error(404, "not_found", NULL);
		call_simple("GET", "/api/v1/events/abc", key_a_read, NULL);
		assert_error(404, "not_found", NULL);
	}
}
END_TEST

START_TEST(delete_keeps_row_destroys_secrets_cancels_jobs)
{
	char id[37], path[96], body[256], got[256], want[256], target[64];
	long long held, queued;

	post_connector(key_a_write, WOO_BODY, id);
	snprintf(path, sizeof(path), "/api/v1/connectors/%s", id);
	snprintf(target, sizeof(target), "connector:%s", id);

	/* A job held because the connector needs a person, and one queued. */
	snprintf(body, sizeof(body), "{\"kind\":\"sync.orders\",\"connector_id\":\"%s\"}", id);
	call_simple("POST", "/api/v1/jobs", key_a_write, body);
	ck_assert_msg(R.status == 201, "%d %s", R.status, R.body);
	held = jint("job.id");
	t_exec(db, "SELECT sluice.set_connector_status(id, 'reauth_required', 'x')"
	           "  FROM sluice.connector");
	call_simple("POST", "/api/v1/jobs", key_a_write, body);
	ck_assert_int_eq(R.status, 201);
	queued = jint("job.id");
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job WHERE run_at = sluice.held_run_at()"),
	                 1);

	call_simple("DELETE", path, key_a_write, NULL);
	ck_assert_msg(R.status == 204, "%d %s", R.status, R.body);
	ck_assert_str_eq(R.body, "");
	assert_audit(rid(), kid_a_write, org_a, "connector.delete", target, "ok", 204);

	/* The row stays, deleted and disabled; the secrets are gone; the jobs cancelled. */
	q_text("SELECT concat_ws('|', deleted_at IS NOT NULL, enabled, status) FROM sluice.connector"
	       " WHERE id = $1::uuid", id, NULL, got, sizeof(got));
	ck_assert_str_eq(got, "t|f|disabled");
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.credential"), 0);
	snprintf(want, sizeof(want), "%lld:cancelled,%lld:cancelled", held, queued);
	q_text("SELECT string_agg(id || ':' || state, ',' ORDER BY id) FROM sluice.jobs"
	       " WHERE connector_id = $1::uuid", id, NULL, got, sizeof(got));
	ck_assert_str_eq(got, want);

	/* Gone for the API. */
	call_simple("DELETE", path, key_a_write, NULL);
	assert_error(404, "not_found", NULL);
	assert_audit(rid(), kid_a_write, org_a, "connector.delete", target, "refused", 404);
	call_simple("GET", path, key_a_read, NULL);
	assert_error(404, "not_found", NULL);
	call_simple("GET", "/api/v1/connectors", key_a_read, NULL);
	ck_assert_int_eq(jlen("connectors"), 0);
	/* No new job may name it. */
	call_simple("POST", "/api/v1/jobs", key_a_write, body);
	assert_error(422, "validation_failed", "connector_id");
}
END_TEST

/* ---- bad input ------------------------------------------------------------- */

static const struct {
	const char *body, *field;
} bad_creates[] = {
	{ "{}", "type" },
	{ "{\"type\":7,\"label\":\"x\"}", "type" },
	{ "{\"type\":\"nope\",\"label\":\"x\"}", "type" },
	{ "{\"type\":\"woocommerce\"}", "label" },
	{ "{\"type\":\"dv360\",\"label\":\"\"}", "label" },
	{ "{\"type\":\"dv360\",\"label\":12}", "label" },
	{ "{\"type\":\"dv360\",\"label\":\"x\",\"direction\":\"sideways\"}", "direction" },
	{ "{\"type\":\"dv360\",\"label\":\"x\",\"direction\":\"destination\"}", "direction" },
	{ "{\"type\":\"dv360\",\"label\":\"x\",\"config\":\"x\"}", "config" },
	{ "{\"type\":\"dv360\",\"label\":\"x\",\"config\":{\"a\":{}}}", "config.a" },
	{ "{\"type\":\"dv360\",\"label\":\"x\",\"config\":{\"a\":[1]}}", "config.a" },
	{ "{\"type\":\"dv360\",\"label\":\"x\",\"colour\":\"red\"}", "colour" },
	{ "{\"type\":\"dv360\",\"label\":\"x\",\"credentials\":{\"access_token\":\"" PLANTED "\"}}",
	  "credentials" },
	{ "{\"type\":\"woocommerce\",\"label\":\"x\",\"config\":{\"base_url\":\"https://a.example\"},"
	  "\"credentials\":{\"consumer_key\":\"" PLANTED "\"}}", "credentials.consumer_secret" },
	{ "{\"type\":\"woocommerce\",\"label\":\"x\",\"config\":{\"base_url\":\"https://a.example\"}}",
	  "credentials.consumer_key" },
	{ "{\"type\":\"woocommerce\",\"label\":\"x\",\"config\":{\"base_url\":\"https://a.example\"},"
	  "\"credentials\":{\"consumer_key\":7,\"consumer_secret\":\"" PLANTED "\"}}",
	  "credentials.consumer_key" },
	{ "{\"type\":\"woocommerce\",\"label\":\"x\",\"credentials\":{\"consumer_key\":\"" PLANTED
	  "\",\"consumer_secret\":\"" PLANTED "\"}}", "config.base_url" },
	{ "{\"type\":\"woocommerce\",\"label\":\"x\",\"config\":{\"base_url\":\"javascript:x\"},"
	  "\"credentials\":{\"consumer_key\":\"" PLANTED "\",\"consumer_secret\":\"" PLANTED "\"}}",
	  "config.base_url" },
	{ "[1]", NULL },
};

START_TEST(create_422_names_the_field)
{
	call_simple("POST", "/api/v1/connectors", key_a_write, bad_creates[_i].body);
	assert_error(422, "validation_failed", bad_creates[_i].field);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.connector"), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.credential"), 0);
	assert_audit(rid(), kid_a_write, org_a, "connector.create", NULL, "refused", 422);
	assert_no_secret_in_rows();
}
END_TEST

START_TEST(label_of_201_characters)
{
	char body[1024], label[256];

	memset(label, 'x', 200);
	label[200] = '\0';
	snprintf(body, sizeof(body), "{\"type\":\"dv360\",\"label\":\"%s\"}", label);
	call_simple("POST", "/api/v1/connectors", key_a_write, body);
	ck_assert_int_eq(R.status, 201);
	/* 200 characters of two bytes each are still 200 characters. */
	{
		char wide[512];
		int i;

		for (i = 0; i < 200; i++)
			memcpy(wide + 2 * i, "\xc3\xa9", 2);
		wide[400] = '\0';
		snprintf(body, sizeof(body), "{\"type\":\"dv360\",\"label\":\"%s\"}", wide);
		call_simple("POST", "/api/v1/connectors", key_a_write, body);
		ck_assert_int_eq(R.status, 201);
		ck_assert_str_eq(jstr("connector.label"), wide);
	}
	snprintf(body, sizeof(body), "{\"type\":\"dv360\",\"label\":\"%sx\"}", label);
	call_simple("POST", "/api/v1/connectors", key_a_write, body);
	assert_error(422, "validation_failed", "label");
}
END_TEST

static const struct {
	const char *method, *path;
} with_bodies[] = {
	{ "POST", "/api/v1/connectors" },
	{ "PUT", "/api/v1/connectors/0b6e3d1c-5f1a-4c1e-9a53-2f0d7c1b9e42" },
	{ "POST", "/api/v1/connectors/oauth/initiate" },
	{ "POST", "/api/v1/connectors/oauth/callback" },
};

START_TEST(malformed_json_400_and_413)
{
	static const char *const malformed[] = { "{", "{\"type\":}", "nope", "{'a':1}", "\xff" };
	char *big;
	size_t i;

	for (i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		call_simple(with_bodies[_i].method, with_bodies[_i].path, key_a_write, malformed[i]);
		assert_error(400, "malformed_json", NULL);
	}
	/* Over 1 MiB: refused before it is read. */
	call(&(struct t_api_req){ .method = with_bodies[_i].method, .path = with_bodies[_i].path,
	                          .key = key_a_write, .body = "{}", .content_length = "1048577" });
	assert_error(413, "payload_too_large", NULL);
	big = malloc((1u << 20) + 64);
	ck_assert_ptr_nonnull(big);
	memset(big, ' ', (1u << 20) + 10);
	big[0] = '{';
	big[(1u << 20) + 9] = '}';
	big[(1u << 20) + 10] = '\0';
	call_simple(with_bodies[_i].method, with_bodies[_i].path, key_a_write, big);
	free(big);
	assert_error(413, "payload_too_large", NULL);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.connector"), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.audit WHERE outcome <> 'refused'"), 0);
}
END_TEST

static const char *const unknown_paths[] = {
	"/api/v1/connector", "/api/v1/connectors/", "/api/v1/connectors/x/y",
	"/api/v1/connectors/0b6e3d1c-5f1a-4c1e-9a53-2f0d7c1b9e42/frobnicate",
	"/api/v1/connectors/oauth", "/api/v1/connectors/oauth/x", "/api/v1/events/", "/api/v1/events/1/x",
	"/api/v1/audit/1", "/oauth", "/oauth/callback/x",
};

START_TEST(unknown_route_404)
{
	call(&(struct t_api_req){ .method = "GET", .path = unknown_paths[_i], .key = key_a_admin });
	assert_error(404, "not_found", NULL);
}
END_TEST

static const struct {
	const char *method, *path, *allow;
} wrong_methods[] = {
	{ "DELETE", "/api/v1/connectors", "GET, HEAD, POST" },
	{ "PATCH", "/api/v1/connectors/0b6e3d1c-5f1a-4c1e-9a53-2f0d7c1b9e42", "GET, HEAD, PUT, DELETE" },
	{ "POST", "/api/v1/connectors/nope", "GET, HEAD, PUT, DELETE" },
	{ "GET", "/api/v1/connectors/0b6e3d1c-5f1a-4c1e-9a53-2f0d7c1b9e42/enable", "POST" },
	{ "DELETE", "/api/v1/connectors/0b6e3d1c-5f1a-4c1e-9a53-2f0d7c1b9e42/disable", "POST" },
	{ "GET", "/api/v1/connectors/oauth/initiate", "POST" },
	{ "PUT", "/api/v1/connectors/oauth/callback", "POST" },
	{ "POST", "/api/v1/events", "GET, HEAD" },
	{ "DELETE", "/api/v1/events/1", "GET, HEAD" },
	{ "POST", "/api/v1/audit", "GET, HEAD" },
	{ "POST", "/oauth/callback", "GET, HEAD" },
};

START_TEST(wrong_method_405)
{
	call(&(struct t_api_req){ .method = wrong_methods[_i].method, .path = wrong_methods[_i].path,
	                          .body = "{}" });
	assert_error(405, "method_not_allowed", NULL);
	ck_assert_str_eq(t_api_hdr(&R, "Allow"), wrong_methods[_i].allow);
}
END_TEST

static const char *const bad_ids[] = {
	"nope", "123", "0b6e3d1c5f1a4c1e9a532f0d7c1b9e42", "0b6e3d1c-5f1a-4c1e-9a53-2f0d7c1b9e4g",
	"0b6e3d1c-5f1a-4c1e-9a53-2f0d7c1b9e42a", "%7B0b6e3d1c%7D", "0b6e3d1c-5f1a-4c1e-9a53-2f0d7c1b9e42",
	"'%20OR%201=1", "..",
};

START_TEST(bad_uuid_404)
{
	static const struct {
		const char *method, *suffix, *body;
	} routes[] = {
		{ "GET", "", NULL }, { "PUT", "", "{\"label\":\"x\"}" }, { "DELETE", "", NULL },
		{ "POST", "/enable", NULL }, { "POST", "/disable", NULL },
	};
	char path[256], id[37];
	size_t i;

	post_connector(key_a_write, "{\"type\":\"dv360\",\"label\":\"DV\"}", id);
	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		snprintf(path, sizeof(path), "/api/v1/connectors/%s%s", bad_ids[_i], routes[i].suffix);
		call_simple(routes[i].method, path, key_a_write, routes[i].body);
		assert_error(404, "not_found", NULL);
		ck_assert_str_eq(jstr("error.message"), "no such connector");
	}
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.connector WHERE label = 'DV'"
	                           "   AND enabled AND deleted_at IS NULL"), 1);
}
END_TEST

static const struct {
	const char *path, *query, *field;
	int status;
} bad_pages[] = {
	{ "/api/v1/events", "after=-1", "after", 422 },
	{ "/api/v1/events", "after=x", "after", 422 },
	{ "/api/v1/events", "after=", "after", 422 },
	{ "/api/v1/events", "after=1&after=2", "after", 422 },
	{ "/api/v1/events", "after=99999999999999999999", "after", 422 },
	{ "/api/v1/events", "limit=0", "limit", 422 },
	{ "/api/v1/events", "limit=1001", "limit", 422 },
	{ "/api/v1/events", "limit=1.5", "limit", 422 },
	{ "/api/v1/events", "limit=%2B5", "limit", 422 },
	{ "/api/v1/events", "colour=red", "colour", 422 },
	{ "/api/v1/events", "after=%zz", NULL, 400 },
	{ "/api/v1/audit", "after=-5", "after", 422 },
	{ "/api/v1/audit", "limit=abc", "limit", 422 },
	{ "/api/v1/audit", "limit=100000", "limit", 422 },
};

START_TEST(bad_after_limit)
{
	call_query(bad_pages[_i].path, bad_pages[_i].query, key_a_admin);
	assert_error(bad_pages[_i].status, bad_pages[_i].status == 400 ? "bad_request"
	                                                               : "validation_failed",
	             bad_pages[_i].field);
}
END_TEST

START_TEST(limits_accepted)
{
	call_query("/api/v1/events", "limit=1000&after=0", key_a_read);
	ck_assert_int_eq(R.status, 200);
	ck_assert_int_eq(jlen("events"), 0);
	ck_assert_int_eq(jint("next_after"), 0);
	call_query("/api/v1/events", "after=42", key_a_read);
	ck_assert_int_eq(jint("next_after"), 42);
	call_query("/api/v1/audit", "limit=1", key_a_admin);
	ck_assert_int_eq(R.status, 200);
}
END_TEST

/* ---- tenant isolation ------------------------------------------------------- */

START_TEST(tenant_isolation)
{
	char a_id[37], b_id[37], path[128], body[256], missing[256], got[256];
	long long b_job, b_event, a_event;
	static const struct {
		const char *method, *suffix, *body;
	} routes[] = {
		{ "GET", "", NULL }, { "PUT", "", "{\"label\":\"stolen\"}" },
		{ "PUT", "", "{\"credentials\":{\"consumer_key\":\"" PLANTED_2 "\"}}" },
		{ "POST", "/enable", NULL }, { "POST", "/disable", NULL }, { "DELETE", "", NULL },
	};
	size_t i;

	post_connector(key_a_write, WOO_BODY, a_id);
	post_connector(key_b_write, "{\"type\":\"woocommerce\",\"label\":\"B shop\",\"config\":"
	               "{\"base_url\":\"https://b.example.com\"},\"credentials\":"
	               "{\"consumer_key\":\"b_key\",\"consumer_secret\":\"" PLANTED "\"}}", b_id);
	snprintf(body, sizeof(body), "{\"kind\":\"sync.orders\",\"connector_id\":\"%s\"}", b_id);
	call_simple("POST", "/api/v1/jobs", key_b_write, body);
	ck_assert_int_eq(R.status, 201);
	b_job = jint("job.id");
	snprintf(path, sizeof(path), "/api/v1/connectors/%s/disable", b_id);
	call_simple("POST", path, key_b_write, NULL);
	ck_assert_int_eq(R.status, 200);
	b_event = t_int(db, "SELECT max(id) FROM sluice.event");
	snprintf(path, sizeof(path), "/api/v1/connectors/%s/disable", a_id);
	call_simple("POST", path, key_a_write, NULL);
	a_event = t_int(db, "SELECT max(id) FROM sluice.event");

	/* What a connector that never was looks like to A ... */
	call_simple("GET", "/api/v1/connectors/0b6e3d1c-5f1a-4c1e-9a53-2f0d7c1b9e42", key_a_write,
	            NULL);
	assert_error(404, "not_found", NULL);
	snprintf(missing, sizeof(missing), "%s", jstr("error.message"));

	/* ... is what B's looks like, on every route. */
	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		snprintf(path, sizeof(path), "/api/v1/connectors/%s%s", b_id, routes[i].suffix);
		call_simple(routes[i].method, path, key_a_write, routes[i].body);
		assert_error(404, "not_found", NULL);
		ck_assert_str_eq(jstr("error.message"), missing);
		ck_assert_ptr_null(strstr(R.body, "B shop"));
	}
	snprintf(path, sizeof(path), "/api/v1/jobs/%lld", b_job);
	call_simple("GET", path, key_a_write, NULL);
	assert_error(404, "not_found", NULL);
	call_simple("DELETE", path, key_a_write, NULL);
	assert_error(404, "not_found", NULL);
	snprintf(path, sizeof(path), "/api/v1/events/%lld", b_event);
	call_simple("GET", path, key_a_write, NULL);
	assert_error(404, "not_found", NULL);
	snprintf(path, sizeof(path), "/api/v1/events/%lld", a_event);
	call_simple("GET", path, key_a_write, NULL);
	ck_assert_int_eq(R.status, 200);

	/* A job of A cannot name B's connector. */
	call_simple("POST", "/api/v1/jobs", key_a_write, body);
	assert_error(422, "validation_failed", "connector_id");
	snprintf(body, sizeof(body), "{\"jobs\":[{\"kind\":\"a\",\"connector_id\":\"%s\"},"
	         "{\"kind\":\"b\",\"connector_id\":\"%s\"}]}", a_id, b_id);
	call_simple("POST", "/api/v1/jobs", key_a_write, body);
	assert_error(422, "validation_failed", "jobs[1].connector_id");
	/* An escaped member name is the same member. */
	snprintf(body, sizeof(body), "{\"kind\":\"a\",\"connector\\u005fid\":\"%s\"}", b_id);
	call_simple("POST", "/api/v1/jobs", key_a_write, body);
	assert_error(422, "validation_failed", "connector_id");
	ck_assert_int_eq(org_rows("sluice.job", org_a), 0);

	/* B's connector, job and secrets are untouched. */
	q_text("SELECT concat_ws('|', label, enabled, status, deleted_at IS NULL) FROM sluice.connector"
	       " WHERE id = $1::uuid", b_id, NULL, got, sizeof(got));
	ck_assert_str_eq(got, "B shop|f|disabled|t");
	ck_assert_int_eq(q_int("SELECT count(*) FROM sluice.credential WHERE connector_id = $1::uuid",
	                       b_id, NULL), 1);
	{
		json_object *s;

		/* Disabled connectors refuse loads; look with the status set aside. */
		t_exec(db, "UPDATE sluice.connector SET status = 'pending' WHERE label = 'B shop'");
		s = stored_secrets(b_id);
		ck_assert_str_eq(json_object_get_string(t_json_get(s, "consumer_key")), "b_key");
		json_object_put(s);
		t_exec(db, "UPDATE sluice.connector SET status = 'disabled' WHERE label = 'B shop'");
	}
	{
		char job[32];

		snprintf(job, sizeof(job), "%lld", b_job);
		q_text("SELECT state FROM sluice.jobs WHERE id = $1::bigint", job, NULL, got, sizeof(got));
		ck_assert_str_eq(got, "queued");
	}

	/* A's lists hold none of B's rows. */
	call_simple("GET", "/api/v1/connectors", key_a_read, NULL);
	ck_assert_int_eq(jlen("connectors"), 1);
	ck_assert_str_eq(jstr("connectors.0.id"), a_id);
	call_query("/api/v1/events", "limit=1000", key_a_read);
	ck_assert_ptr_null(strstr(R.body, b_id));
	ck_assert_int_eq((long long)jlen("events"), org_rows("sluice.event", org_a));
	ck_assert_int_gt((long long)jlen("events"), 0);
	call_query("/api/v1/audit", "limit=1000", key_a_admin);
	ck_assert_int_eq(R.status, 200);
	/* A's own refused attempts name the id A sent; none of B's rows is there. */
	{
		char b_actor[64];

		snprintf(b_actor, sizeof(b_actor), "\"key:%lld\"", kid_b_write);
		ck_assert_ptr_null(strstr(R.body, b_actor));
		ck_assert_ptr_null(strstr(R.body, "B shop"));
	}
	ck_assert_int_eq((long long)jlen("entries"), org_rows("sluice.audit", org_a));
	ck_assert_int_lt(org_rows("sluice.audit", org_a), t_int(db, "SELECT count(*) FROM sluice.audit"));
	/* B's view of the audit log sees its own rows only (B's key is write: 403). */
	call_query("/api/v1/audit", NULL, key_b_write);
	assert_error(403, "forbidden", NULL);
	assert_no_secret_in_rows();
}
END_TEST

/* ---- audit ------------------------------------------------------------------- */

START_TEST(audit_log_route)
{
	char id[37], path[128];
	long long first;

	post_connector(key_a_write, WOO_BODY, id);
	snprintf(path, sizeof(path), "/api/v1/connectors/%s", id);
	call_simple("PUT", path, key_a_write, "{\"label\":\"L2\"}");
	call_simple("PUT", path, key_a_write, "{\"label\":\"\"}");
	snprintf(path, sizeof(path), "/api/v1/connectors/%s/disable", id);
	call_simple("POST", path, key_a_write, NULL);
	snprintf(path, sizeof(path), "/api/v1/connectors/%s", id);
	call_simple("DELETE", path, key_a_write, NULL);

	/* admin only. */
	call_query("/api/v1/audit", NULL, key_a_read);
	assert_error(403, "forbidden", NULL);
	call_query("/api/v1/audit", NULL, key_a_write);
	assert_error(403, "forbidden", NULL);
	call_query("/api/v1/audit", NULL, NULL);
	assert_error(401, "unauthorized", NULL);

	call_query("/api/v1/audit", NULL, key_a_admin);
	ck_assert_int_eq(R.status, 200);
	ck_assert_int_eq(json_object_object_length(R.json), 2);
	{
		static const char *const actions[] = { "connector.create", "connector.update",
		                                       "connector.update", "connector.disable",
		                                       "connector.delete" };
		static const char *const outcomes[] = { "ok", "ok", "refused", "ok", "ok" };
		static const int statuses[] = { 201, 200, 422, 200, 204 };
		char p[64], target[64];
		size_t i, k = 0, n = jlen("entries");

		snprintf(target, sizeof(target), "connector:%s", id);
		for (i = 0; i < n; i++) {
			snprintf(p, sizeof(p), "entries.%zu.action", i);
			if (!strcmp(jstr(p), "credential.decrypt"))
				continue;
			ck_assert_str_eq(jstr(p), actions[k]);
			snprintf(p, sizeof(p), "entries.%zu", i);
			ck_assert_int_eq(jlen(p), 9);
			snprintf(p, sizeof(p), "entries.%zu.outcome", i);
			ck_assert_str_eq(jstr(p), outcomes[k]);
			snprintf(p, sizeof(p), "entries.%zu.http_status", i);
			ck_assert_int_eq(jint(p), statuses[k]);
			snprintf(p, sizeof(p), "entries.%zu.target", i);
			ck_assert_str_eq(jstr(p), target);
			snprintf(p, sizeof(p), "entries.%zu.actor", i);
			ck_assert_ptr_nonnull(sl_starts_with(jstr(p), "key:") ? jstr(p) : NULL);
			snprintf(p, sizeof(p), "entries.%zu.at", i);
			ck_assert(api_is_rfc3339(jstr(p)));
			snprintf(p, sizeof(p), "entries.%zu.request_id", i);
			ck_assert_ptr_nonnull(jstr(p));
			snprintf(p, sizeof(p), "entries.%zu.detail", i);
			ck_assert(json_object_is_type(t_json_get(R.json, p), json_type_object));
			k++;
		}
		ck_assert_int_eq(k, 5);
		/* Ascending by id, and paged. */
		first = jint("entries.0.id");
		ck_assert_int_lt(first, jint("entries.1.id"));
		snprintf(p, sizeof(p), "entries.%zu.id", n - 1);
		ck_assert_int_eq(jint("next_after"), jint(p));
	}
	{
		char q[64];
		long long second;

		call_query("/api/v1/audit", "limit=1", key_a_admin);
		ck_assert_int_eq(jlen("entries"), 1);
		ck_assert_int_eq(jint("entries.0.id"), first);
		ck_assert_int_eq(jint("next_after"), first);
		snprintf(q, sizeof(q), "after=%lld&limit=1", first);
		call_query("/api/v1/audit", q, key_a_admin);
		ck_assert_int_eq(jlen("entries"), 1);
		second = jint("entries.0.id");
		ck_assert_int_gt(second, first);
	}
	assert_no_secret_in_rows();
}
END_TEST

START_TEST(no_master_key_503)
{
	call(&(struct t_api_req){ .method = "POST", .path = "/api/v1/connectors", .key = key_a_write,
	                          .body = WOO_BODY, .no_master_key = 1 });
	assert_error(503, "unavailable", NULL);
	ck_assert_str_eq(jstr("error.message"), "secrets are not configured (SLUICE_MASTER_KEY)");
	ck_assert_ptr_nonnull(strstr(R.log, "SLUICE_MASTER_KEY"));
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.connector"), 0);
	assert_audit(rid(), kid_a_write, org_a, "connector.create", NULL, "failed", 503);

	call(&(struct t_api_req){ .method = "POST", .path = "/api/v1/connectors/oauth/initiate",
	                          .key = key_a_write, .no_master_key = 1,
	                          .body = "{\"connector_type\":\"dv360\",\"callback_url\":\"https://x\"}" });
	assert_error(503, "unavailable", NULL);

	/* Routes without secrets work without it. */
	call(&(struct t_api_req){ .method = "POST", .path = "/api/v1/connectors", .key = key_a_write,
	                          .body = "{\"type\":\"dv360\",\"label\":\"x\"}", .no_master_key = 1 });
	ck_assert_int_eq(R.status, 201);
}
END_TEST

/* ---- OAuth 2.0 against a real authorization server --------------------------- */

static struct t_oauth O;

#define CALLBACK "https://app.example.com/oauth/callback"
#define RETURN   "https://app.example.com/settings?tab=connectors"

static void
setup_oauth(void)
{
	struct sl_cred_env env;
	struct sl_err err;
	char sql[1024];

	setup();
	t_oauth_start(&O);
	t_api_never_show(O.client_secret);
	cred_env_open(&env);
	ck_assert_msg(sl_oauth_app_store(&env, org_a, "dv360", O.client_id, O.client_secret, &err) == 0,
	              "%s", err.msg);
	cred_env_close(&env);
	snprintf(sql, sizeof(sql), "SELECT sluice.set_provider_override(%lld, 'dv360', '%s/authorize',"
	         " '%s/token', '%s')", org_a, O.url, O.url, O.url);
	t_exec(db, sql);
	snprintf(sql, sizeof(sql), "SELECT sluice.allow_redirect_uri(%lld, '" CALLBACK "'),"
	         " sluice.allow_redirect_uri(%lld, '" RETURN "')", org_a, org_a);
	t_exec(db, sql);
}

static void
teardown_oauth(void)
{
	t_oauth_stop(&O);
	teardown();
}

/* POST initiate; the state goes to state[64], the URL to authz[4096]. */
static void
initiate(const char *extra, char *state, char *authz)
{
	char body[1024];

	snprintf(body, sizeof(body), "{\"connector_type\":\"DV360\",\"callback_url\":\"" CALLBACK
	         "\"%s}", extra ? extra : "");
	call_simple("POST", "/api/v1/connectors/oauth/initiate", key_a_write, body);
	ck_assert_msg(R.status == 200, "%d %s", R.status, R.body);
	snprintf(state, 64, "%s", jstr("state"));
	snprintf(authz, 4096, "%s", jstr("authorization_url"));
}

/* Plays the browser at the provider: the code goes to code[512]. */
static void
authorize(const char *authz, const char *state, char *code)
{
	char back_state[128];

	ck_assert_int_eq(t_oauth_authorize(&O, authz, code, 512, back_state, sizeof(back_state)), 0);
	ck_assert_str_eq(back_state, state);
	t_api_never_show(code);
}

START_TEST(oauth_full_flow)
{
	char state[64], authz[4096], code[512], body[1024], id[37], got[512], want[512];
	json_object *secrets;
	const char *access;

	initiate(NULL, state, authz);
	ck_assert_int_eq(json_object_object_length(R.json), 3);
	ck_assert_int_eq(strlen(state), 43);
	ck_assert(api_is_rfc3339(jstr("expires_at")));
	ck_assert(sl_starts_with(authz, O.url));
	ck_assert_ptr_nonnull(strstr(authz, "/authorize?"));
	ck_assert_ptr_nonnull(strstr(authz, "response_type=code"));
	ck_assert_ptr_nonnull(strstr(authz, "code_challenge_method=S256"));
	ck_assert_ptr_nonnull(strstr(authz, "code_challenge="));
	ck_assert_ptr_nonnull(strstr(authz, "access_type=offline"));
	ck_assert_ptr_nonnull(strstr(authz, "client_id=sluice-test-client"));
	ck_assert_ptr_nonnull(strstr(authz, "redirect_uri=https%3A%2F%2Fapp.example.com"
	                                    "%2Foauth%2Fcallback"));
	ck_assert_ptr_nonnull(strstr(authz, "display-video"));
	assert_audit(rid(), kid_a_write, org_a, "oauth.initiate", NULL, "ok", 200);
	/* Only the state's hash is stored, with the flow. */
	snprintf(want, sizeof(want), "%lld|dv360|" CALLBACK "|key:%lld|t|t", org_a, kid_a_write);
	q_text("SELECT concat_ws('|', org_id, type, redirect_uri, actor, used_at IS NULL,"
	       "   expires_at BETWEEN now() + interval '9 minutes' AND now() + interval '11 minutes')"
	       "  FROM sluice.oauth_state WHERE state_hash = sha256(convert_to($1, 'UTF8'))",
	       state, NULL, got, sizeof(got));
	ck_assert_str_eq(got, want);

	authorize(authz, state, code);
	snprintf(body, sizeof(body), "{\"code\":\"%s\",\"state\":\"%s\"}", code, state);
	call_simple("POST", "/api/v1/connectors/oauth/callback", key_a_write, body);
	ck_assert_msg(R.status == 200, "%d %s", R.status, R.body);
	ck_assert_int_eq(json_object_object_length(R.json), 3);
	ck_assert_str_eq(jstr("status"), "connected");
	snprintf(id, sizeof(id), "%s", jstr("connector_id"));
	ck_assert(api_is_uuid(id));
	ck_assert_int_eq(jlen("accounts"), 1);
	ck_assert_str_eq(jstr("accounts.0.id"), "johndoe");
	ck_assert(jnull("accounts.0.name"));
	ck_assert_int_eq(t_oauth_stat(&O, "authorization_code"), 1);

	/* The connector: made by the flow, connected, its account recorded. */
	snprintf(want, sizeof(want), "%lld|dv360|DV360|connected|johndoe|t", org_a);
	q_text("SELECT concat_ws('|', org_id, type, label, status, account_id, enabled)"
	       "  FROM sluice.connector WHERE id = $1::uuid", id, NULL, got, sizeof(got));
	ck_assert_str_eq(got, want);
	/* The tokens: stored encrypted (the ciphertext does not hold them). */
	secrets = stored_secrets(id);
	access = json_object_get_string(t_json_get(secrets, "access_token"));
	ck_assert_ptr_nonnull(access);
	ck_assert_ptr_nonnull(json_object_get_string(t_json_get(secrets, "refresh_token")));
	t_api_never_show(access);
	t_api_never_show(json_object_get_string(t_json_get(secrets, "refresh_token")));
	json_object_put(secrets);
	ck_assert_int_eq(q_int("SELECT count(*) FROM sluice.credential WHERE connector_id = $1::uuid",
	                       id, NULL), 1);
	/* The oauth_connected event. */
	ck_assert_int_eq(q_int("SELECT count(*) FROM sluice.event WHERE type = 'oauth_connected'"
	                       "   AND connector_id = $1::uuid", id, NULL), 1);
	snprintf(want, sizeof(want), "connector:%s", id);
	assert_audit(rid(), kid_a_write, org_a, "oauth.callback", want, "ok", 200);
	call_query("/api/v1/events", NULL, key_a_read);
	ck_assert_ptr_nonnull(strstr(R.body, "oauth_connected"));
	{
		char path[96];

		snprintf(path, sizeof(path), "/api/v1/connectors/%s", id);
		call_simple("GET", path, key_a_read, NULL);
		ck_assert_int_eq(jbool("connector.has_credentials"), 1);
		ck_assert_str_eq(jstr("connector.account_id"), "johndoe");
	}

	/* The same state again: spent. */
	call_simple("POST", "/api/v1/connectors/oauth/callback", key_a_write, body);
	assert_error(409, "conflict", NULL);
	ck_assert_str_eq(jstr("error.message"), "state was already used");
	assert_audit(rid(), kid_a_write, org_a, "oauth.callback", NULL, "refused", 409);
	ck_assert_int_eq(t_oauth_stat(&O, "authorization_code"), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.connector"), 1);
	assert_no_secret_in_rows();
}
END_TEST

START_TEST(oauth_reauthorise_existing)
{
	char state[64], authz[4096], code[512], body[1024], id[37], extra[128];

	post_connector(key_a_write, "{\"type\":\"dv360\",\"label\":\"Existing\"}", id);
	t_exec(db, "SELECT sluice.set_connector_status(id, 'reauth_required', 'revoked')"
	           "  FROM sluice.connector");
	snprintf(extra, sizeof(extra), ",\"connector_id\":\"%s\"", id);
	initiate(extra, state, authz);
	authorize(authz, state, code);
	snprintf(body, sizeof(body), "{\"code\":\"%s\",\"state\":\"%s\"}", code, state);
	call_simple("POST", "/api/v1/connectors/oauth/callback", key_a_write, body);
	ck_assert_msg(R.status == 200, "%d %s", R.status, R.body);
	ck_assert_str_eq(jstr("connector_id"), id);
	ck_assert_str_eq(jstr("status"), "connected");
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.connector"), 1);
	ck_assert_int_eq(q_int("SELECT count(*) FROM sluice.connector WHERE id = $1::uuid"
	                       "   AND status = 'connected' AND label = 'Existing'", id, NULL), 1);
	assert_no_secret_in_rows();
}
END_TEST

START_TEST(oauth_expired_state_422)
{
	char state[64], authz[4096], code[512], body[1024];

	initiate(",\"label\":\"Mine\"", state, authz);
	authorize(authz, state, code);
	t_exec(db, "UPDATE sluice.oauth_state SET expires_at = now() - interval '1 second'");
	snprintf(body, sizeof(body), "{\"code\":\"%s\",\"state\":\"%s\"}", code, state);
	call_simple("POST", "/api/v1/connectors/oauth/callback", key_a_write, body);
	assert_error(422, "validation_failed", "state");
	ck_assert_str_eq(jstr("error.message"), "state expired");
	assert_audit(rid(), kid_a_write, org_a, "oauth.callback", NULL, "refused", 422);
	ck_assert_int_eq(t_oauth_stat(&O, "authorization_code"), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.connector"), 0);
	/* Spent by that attempt. */
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.oauth_state WHERE used_at IS NOT NULL"),
	                 1);
}
END_TEST

START_TEST(oauth_bad_input)
{
	char state[64], authz[4096], body[1024], id[37], bid[37];
	static const struct {
		const char *body, *field;
	} bad[] = {
		{ "{}", "connector_type" },
		{ "{\"connector_type\":\"dv360\"}", "callback_url" },
		{ "{\"connector_type\":5,\"callback_url\":\"" CALLBACK "\"}", "connector_type" },
		{ "{\"connector_type\":\"nope\",\"callback_url\":\"" CALLBACK "\"}", "connector_type" },
		{ "{\"connector_type\":\"woocommerce\",\"callback_url\":\"" CALLBACK "\"}",
		  "connector_type" },
		{ "{\"connector_type\":\"dv360\",\"callback_url\":\"https://evil.example/cb\"}",
		  "callback_url" },
		{ "{\"connector_type\":\"dv360\",\"callback_url\":\"" CALLBACK "/\"}", "callback_url" },
		{ "{\"connector_type\":\"dv360\",\"callback_url\":\"" CALLBACK "\","
		  "\"return_url\":\"https://evil.example/\"}", "return_url" },
		{ "{\"connector_type\":\"dv360\",\"callback_url\":\"" CALLBACK "\",\"connector_id\":\"x\"}",
		  "connector_id" },
		{ "{\"connector_type\":\"dv360\",\"callback_url\":\"" CALLBACK "\","
		  "\"connector_id\":\"0b6e3d1c-5f1a-4c1e-9a53-2f0d7c1b9e42\"}", "connector_id" },
		{ "{\"connector_type\":\"dv360\",\"callback_url\":\"" CALLBACK "\",\"label\":\"\"}",
		  "label" },
		{ "{\"connector_type\":\"dv360\",\"callback_url\":\"" CALLBACK "\",\"scope\":\"x\"}",
		  "scope" },
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		call_simple("POST", "/api/v1/connectors/oauth/initiate", key_a_write, bad[i].body);
		assert_error(422, "validation_failed", bad[i].field);
		assert_audit(rid(), kid_a_write, org_a, "oauth.initiate", NULL, "refused", 422);
	}
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.oauth_state"), 0);

	/* A connector of another type, and one of another org. */
	post_connector(key_a_write, "{\"type\":\"google_ads\",\"label\":\"GA\"}", id);
	post_connector(key_b_write, "{\"type\":\"dv360\",\"label\":\"B\"}", bid);
	snprintf(body, sizeof(body), "{\"connector_type\":\"dv360\",\"callback_url\":\"" CALLBACK
	         "\",\"connector_id\":\"%s\"}", id);
	call_simple("POST", "/api/v1/connectors/oauth/initiate", key_a_write, body);
	assert_error(422, "validation_failed", "connector_id");
	snprintf(body, sizeof(body), "{\"connector_type\":\"dv360\",\"callback_url\":\"" CALLBACK
	         "\",\"connector_id\":\"%s\"}", bid);
	call_simple("POST", "/api/v1/connectors/oauth/initiate", key_a_write, body);
	assert_error(422, "validation_failed", "connector_id");

	/* No OAuth app for the type in this org: 409 saying how to configure one. */
	t_exec(db, "SELECT sluice.allow_redirect_uri(org_id, '" CALLBACK "') FROM sluice.connector");
	call_simple("POST", "/api/v1/connectors/oauth/initiate", key_b_write,
	            "{\"connector_type\":\"dv360\",\"callback_url\":\"" CALLBACK "\"}");
	assert_error(409, "conflict", NULL);
	ck_assert_ptr_nonnull(strstr(jstr("error.message"), "sluicectl oauth-app set"));

	/* Callback bodies. */
	call_simple("POST", "/api/v1/connectors/oauth/callback", key_a_write, "{}");
	assert_error(422, "validation_failed", "code");
	call_simple("POST", "/api/v1/connectors/oauth/callback", key_a_write, "{\"code\":\"abc\"}");
	assert_error(422, "validation_failed", "state");
	call_simple("POST", "/api/v1/connectors/oauth/callback", key_a_write,
	            "{\"code\":\"abc\",\"state\":7}");
	assert_error(422, "validation_failed", "state");
	call_simple("POST", "/api/v1/connectors/oauth/callback", key_a_write,
	            "{\"code\":\"abc\",\"state\":\"unknownunknownunknownunknownunknownunknown1\"}");
	assert_error(422, "validation_failed", "state");
	ck_assert_str_eq(jstr("error.message"), "state is unknown");
	call_simple("POST", "/api/v1/connectors/oauth/callback", key_a_write,
	            "{\"code\":\"abc\",\"state\":\"x\",\"extra\":1}");
	assert_error(422, "validation_failed", "extra");

	/* Another org's state is unknown to A, and stays usable by B. */
	initiate(NULL, state, authz);
	snprintf(body, sizeof(body), "{\"code\":\"abc\",\"state\":\"%s\"}", state);
	call_simple("POST", "/api/v1/connectors/oauth/callback", key_b_write, body);
	assert_error(422, "validation_failed", "state");
	ck_assert_str_eq(jstr("error.message"), "state is unknown");
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.oauth_state WHERE used_at IS NULL"), 1);
}
END_TEST

START_TEST(oauth_token_error_502)
{
	char state[64], authz[4096], code[512], body[1024];

	initiate(NULL, state, authz);
	authorize(authz, state, code);
	t_oauth_control(&O, "fault", "{\"status\":400,\"error\":\"invalid_grant\",\"count\":1,"
	                "\"description\":\"code was revoked\"}");
	snprintf(body, sizeof(body), "{\"code\":\"%s\",\"state\":\"%s\"}", code, state);
	call_simple("POST", "/api/v1/connectors/oauth/callback", key_a_write, body);
	ck_assert_msg(R.status == 502, "%d %s", R.status, R.body);
	ck_assert_str_eq(jstr("error.code"), "bad_gateway");
	ck_assert_ptr_nonnull(strstr(jstr("error.message"), "invalid_grant"));
	ck_assert_str_eq(jstr("error.request_id"), t_api_hdr(&R, "X-Request-Id"));
	assert_audit(rid(), kid_a_write, org_a, "oauth.callback", NULL, "failed", 502);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.connector"), 0);
	/* Spent all the same. */
	call_simple("POST", "/api/v1/connectors/oauth/callback", key_a_write, body);
	assert_error(409, "conflict", NULL);
	assert_no_secret_in_rows();
}
END_TEST

START_TEST(oauth_browser_flow_302)
{
	char state[64], authz[4096], code[512], query[1024], id[37], want[1024], got[512];

	initiate(",\"return_url\":\"" RETURN "\",\"label\":\"From the browser\"", state, authz);
	authorize(authz, state, code);
	/* The browser comes back with no key; its query is percent-encoded (a '-' as %2D). */
	{
		size_t o = 0, i;

		o += (size_t)snprintf(query, sizeof(query), "code=");
		for (i = 0; code[i] && o < sizeof(query) - 4; i++)
			o += (size_t)snprintf(query + o, sizeof(query) - o, code[i] == '-' ? "%%2D" : "%c",
			                      code[i]);
		snprintf(query + o, sizeof(query) - o, "&state=%s", state);
	}
	/* A link checker's HEAD first: answered, and the state is left for the GET. */
	call(&(struct t_api_req){ .method = "HEAD", .path = "/oauth/callback", .query = query });
	ck_assert_int_eq(R.status, 200);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.oauth_state WHERE used_at IS NULL"), 1);
	call_query("/oauth/callback", query, NULL);
	ck_assert_msg(R.status == 302, "%d %s", R.status, R.body);
	ck_assert(sl_starts_with(t_api_hdr(&R, "Location"), RETURN "&connector_id="));
	ck_assert_ptr_nonnull(strstr(t_api_hdr(&R, "Location"), "&status=connected"));
	snprintf(id, sizeof(id), "%s", t_api_hdr(&R, "Location") + strlen(RETURN "&connector_id="));
	ck_assert(api_is_uuid(id));
	snprintf(want, sizeof(want), RETURN "&connector_id=%s&status=connected", id);
	ck_assert_str_eq(t_api_hdr(&R, "Location"), want);
	q_text("SELECT concat_ws('|', label, status, account_id) FROM sluice.connector"
	       " WHERE id = $1::uuid", id, NULL, got, sizeof(got));
	ck_assert_str_eq(got, "From the browser|connected|johndoe");
	/* Audited as the key that began the flow, in its org. */
	snprintf(want, sizeof(want), "connector:%s", id);
	assert_audit(rid(), kid_a_write, org_a, "oauth.callback", want, "ok", 200);

	/* Again: spent; back to return_url with the error. */
	call_query("/oauth/callback", query, NULL);
	ck_assert_int_eq(R.status, 302);
	ck_assert_str_eq(t_api_hdr(&R, "Location"), RETURN "&error=state_used");
	assert_audit(rid(), kid_a_write, org_a, "oauth.callback", NULL, "refused", 302);

	/* Without a return_url: a short HTML page. */
	initiate(NULL, state, authz);
	authorize(authz, state, code);
	snprintf(query, sizeof(query), "code=%s&state=%s", code, state);
	call_query("/oauth/callback", query, NULL);
	ck_assert_int_eq(R.status, 200);
	ck_assert(sl_starts_with(t_api_hdr(&R, "Content-Type"), "text/html"));
	ck_assert_ptr_nonnull(strstr(R.body, "connected"));

	/* An unknown state: 400, nowhere to send the browser. */
	call_query("/oauth/callback", "code=x&state=unknownunknownunknownunknownunknownunknown1", NULL);
	assert_error(400, "bad_request", NULL);
	call_query("/oauth/callback", "code=x", NULL);
	assert_error(400, "bad_request", NULL);
	assert_no_secret_in_rows();
}
END_TEST

START_TEST(oauth_browser_provider_error_302)
{
	char state[64], authz[4096], query[1024];

	initiate(",\"return_url\":\"" RETURN "\"", state, authz);
	snprintf(query, sizeof(query), "error=access_denied&error_description=The+user+said+no"
	         "&state=%s", state);
	call_query("/oauth/callback", query, NULL);
	ck_assert_int_eq(R.status, 302);
	ck_assert_str_eq(t_api_hdr(&R, "Location"), RETURN "&error=access_denied");
	assert_audit(rid(), kid_a_write, org_a, "oauth.callback", NULL, "refused", 302);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.oauth_state WHERE used_at IS NOT NULL"),
	                 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.connector"), 0);

	/* Without a return_url: 400. */
	initiate(NULL, state, authz);
	snprintf(query, sizeof(query), "error=access_denied&state=%s", state);
	call_query("/oauth/callback", query, NULL);
	assert_error(400, "bad_request", NULL);
	ck_assert_ptr_nonnull(strstr(jstr("error.message"), "access_denied"));
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("connectors_api");
	TCase *tc;

	tc = tcase_create("crud");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, create_201_shape_rows_audit);
	tcase_add_test(tc, get_and_list);
	tcase_add_test(tc, client_credentials_enqueue_first_fetch);
	tcase_add_test(tc, update_merges_credentials);
	tcase_add_test(tc, oauth_code_types_take_no_credentials);
	tcase_add_test(tc, enable_disable_events);
	tcase_add_test(tc, delete_keeps_row_destroys_secrets_cancels_jobs);
	tcase_add_test(tc, audit_log_route);
	tcase_add_test(tc, no_master_key_503);
	suite_add_tcase(s, tc);

	tc = tcase_create("bad_input");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, create_422_names_the_field, 0,
	                    sizeof(bad_creates) / sizeof(bad_creates[0]));
	tcase_add_test(tc, label_of_201_characters);
	tcase_add_loop_test(tc, malformed_json_400_and_413, 0,
	                    sizeof(with_bodies) / sizeof(with_bodies[0]));
	tcase_add_loop_test(tc, unknown_route_404, 0, sizeof(unknown_paths) / sizeof(unknown_paths[0]));
	tcase_add_loop_test(tc, wrong_method_405, 0, sizeof(wrong_methods) / sizeof(wrong_methods[0]));
	tcase_add_loop_test(tc, bad_uuid_404, 0, sizeof(bad_ids) / sizeof(bad_ids[0]));
	tcase_add_loop_test(tc, bad_after_limit, 0, sizeof(bad_pages) / sizeof(bad_pages[0]));
	tcase_add_test(tc, limits_accepted);
	suite_add_tcase(s, tc);

	tc = tcase_create("isolation");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, tenant_isolation);
	suite_add_tcase(s, tc);

	tc = tcase_create("oauth");
	tcase_add_checked_fixture(tc, setup_oauth, teardown_oauth);
	tcase_add_test(tc, oauth_full_flow);
	tcase_add_test(tc, oauth_reauthorise_existing);
	tcase_add_test(tc, oauth_expired_state_422);
	tcase_add_test(tc, oauth_bad_input);
	tcase_add_test(tc, oauth_token_error_502);
	tcase_add_test(tc, oauth_browser_flow_302);
	tcase_add_test(tc, oauth_browser_provider_error_302);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return t_run(make_suite());
}
