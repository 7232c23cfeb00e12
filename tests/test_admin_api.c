/* test_admin_api.c — seed 002's admin API (/admin/connectors) through the CGI program, against the fake WooCommerce shop. */
#include <check.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/credential.h"
#include "api/job_input.h"
#include "common/db.h"
#include "common/secret.h"
#include "tests/api_client.h"
#include "tests/harness.h"

/* ---- running the CGI program ------------------------------------------ */

static char url[256];
static PGconn *db;
static struct t_shop shop;
static long long org_a, org_b, kid_a_admin, kid_b_admin;
static char key_a_admin[64], key_a_write[64], key_a_read[64], key_b_admin[64];
static struct t_api_resp R;

/* Keys that must never appear in an answer, a log line or a readable row. */
#define PLANTED_KEY    "ck_planted_7f3c9e1a_never_show_me_0123456789"
#define PLANTED_SECRET "cs_planted_41d0b2aa_never_show_me_0123456789"
#define WRONG_SECRET   "cs_wrong_9a8b7c6d_never_show_me_0123456789ab"
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

/* Shorthands on the last answer R and the test's database. */
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

/* The audit detail of request id r, as text. */
static void
audit_detail(const char *r, char *out, size_t n)
{
	q_text("SELECT detail::text FROM sluice.audit"
	       " WHERE request_id = $1 AND action LIKE 'admin.%'", r, NULL, out, n);
}

static void
assert_secrets(const char *id, const char *key, const char *secret)
{
	json_object *s = stored_secrets(id);

	ck_assert_int_eq(json_object_object_length(s), 2);
	ck_assert_str_eq(json_object_get_string(t_json_get(s, "consumer_key")), key);
	ck_assert_str_eq(json_object_get_string(t_json_get(s, "consumer_secret")), secret);
	json_object_put(s);
}

/* ---- fixture ------------------------------------------------------------ */

static void
setup(void)
{
	memset(&R, 0, sizeof(R));
	t_api_forget_all();
	t_api_never_show(PLANTED_KEY);
	t_api_never_show(PLANTED_SECRET);
	t_api_never_show(WRONG_SECRET);
	t_api_never_show(T_SHOP_KEY);
	t_api_never_show(T_SHOP_SECRET);
	t_api_never_show(T_MASTER_KEY);
	t_use_master_key();
	t_shop_start(&shop, NULL);
	setenv("SLUICE_CA_FILE", shop.ca_file, 1);
	t_db_create(url, sizeof(url));
	db = t_connect(url);
	org_a = t_org(db, "org a");
	org_b = t_org(db, "org b");
	kid_a_admin = t_key(url, org_a, "admin", key_a_admin);
	(void)t_key(url, org_a, "write", key_a_write);
	(void)t_key(url, org_a, "read", key_a_read);
	kid_b_admin = t_key(url, org_b, "admin", key_b_admin);
}

static void
teardown(void)
{
	t_api_resp_clear(&R);
	PQfinish(db);
	db = NULL;
	t_shop_stop(&shop);
}

/* A create body for the shop at base (NULL: the fake shop over https) with key and secret. */
static const char *
create_body(const char *base, const char *key, const char *secret, const char *extra)
{
	static char body[2048];

	snprintf(body, sizeof(body), "{\"type\":\"woocommerce\",\"baseUrl\":\"%s\","
	         "\"consumerKey\":\"%s\",\"consumerSecret\":\"%s\",\"syncProducts\":true,"
	         "\"syncOrders\":false%s%s}", base ? base : shop.https_url, key, secret,
	         extra ? "," : "", extra ? extra : "");
	return body;
}

/* Creates a connector through the API with key (admin); its id goes to id[37]. */
static void
post_connector(const char *key, const char *body, char id[37])
{
	call_simple("POST", "/admin/connectors", key, body);
	ck_assert_msg(R.status == 201, "POST %s: %d %s", body, R.status, R.body);
	ck_assert_ptr_nonnull(jstr("id"));
	snprintf(id, 37, "%s", jstr("id"));
}

/* A connector of org A on the fake shop with the shop's real keys. */
static void
shop_connector(char id[37])
{
	post_connector(key_a_admin, create_body(NULL, T_SHOP_KEY, T_SHOP_SECRET, NULL), id);
}

static void
path_of(char *out, size_t n, const char *id, const char *suffix)
{
	snprintf(out, n, "/admin/connectors/%s%s", id, suffix);
}

/* R (at prefix, "" for the whole body) is a ConnectorSummaryResponse with every field, typed. */
static void
assert_summary_shape(const char *prefix)
{
	static const char *const strings[] = { "id", "type", "label", "baseUrl", "status",
	                                       "createdAt", "updatedAt" };
	static const char *const nullable[] = { "statusMessage", "lastTestAt", "lastSyncAt",
	                                        "nextSyncAt" };
	static const char *const booleans[] = { "syncProducts", "syncOrders", "authInQuery",
	                                        "hasCredentials" };
	char path[128];
	const char *dot = *prefix ? "." : "";
	size_t i;

	ck_assert_int_eq(jlen(prefix), 18);
	for (i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
		snprintf(path, sizeof(path), "%s%s%s", prefix, dot, strings[i]);
		ck_assert_msg(jstr(path) != NULL, "%s is not a string in %s", path, R.body);
	}
	for (i = 0; i < sizeof(nullable) / sizeof(nullable[0]); i++) {
		snprintf(path, sizeof(path), "%s%s%s", prefix, dot, nullable[i]);
		ck_assert_msg(jnull(path) || jstr(path), "%s is neither null nor a string in %s",
		              path, R.body);
	}
	for (i = 0; i < sizeof(booleans) / sizeof(booleans[0]); i++) {
		snprintf(path, sizeof(path), "%s%s%s", prefix, dot, booleans[i]);
		(void)jbool(path);
	}
	snprintf(path, sizeof(path), "%s%sid", prefix, dot);
	ck_assert(api_is_uuid(jstr(path)));
	snprintf(path, sizeof(path), "%s%screatedAt", prefix, dot);
	ck_assert(api_is_rfc3339(jstr(path)));
	snprintf(path, sizeof(path), "%s%ssyncIntervalSeconds", prefix, dot);
	ck_assert_int_gt(jint(path), 0);
	snprintf(path, sizeof(path), "%s%smappingsJson", prefix, dot);
	ck_assert(json_object_is_type(t_json_get(R.json, path), json_type_object));
	snprintf(path, sizeof(path), "%s%slastRun", prefix, dot);
	ck_assert(jnull(path) || json_object_is_type(t_json_get(R.json, path), json_type_object));
}

/* ---- create ------------------------------------------------------------------ */

START_TEST(create_201_every_field)
{
	char id[37], want[512], got[1024], loc[128], host_label[64];

	post_connector(key_a_admin, create_body(NULL, PLANTED_KEY, PLANTED_SECRET, NULL), id);
	ck_assert_str_eq(t_api_hdr(&R, "Content-Type"), "application/json");
	path_of(loc, sizeof(loc), id, "");
	ck_assert_str_eq(t_api_hdr(&R, "Location"), loc);
	assert_summary_shape("");
	ck_assert_str_eq(jstr("type"), "woocommerce");
	ck_assert_str_eq(jstr("label"), "WooCommerce 127.0.0.1");
	ck_assert_str_eq(jstr("baseUrl"), shop.https_url);
	ck_assert_str_eq(jstr("status"), "pending");
	ck_assert(jnull("statusMessage"));
	ck_assert(jnull("lastTestAt"));
	ck_assert(jnull("lastSyncAt"));
	ck_assert(jnull("lastRun"));
	ck_assert(api_is_rfc3339(jstr("nextSyncAt")));
	ck_assert(api_is_rfc3339(jstr("updatedAt")));
	ck_assert_int_eq(jbool("syncProducts"), 1);
	ck_assert_int_eq(jbool("syncOrders"), 0);
	ck_assert_int_eq(jbool("authInQuery"), 0);
	ck_assert_int_eq(jbool("hasCredentials"), 1);
	ck_assert_int_eq(jint("syncIntervalSeconds"), 86400);
	ck_assert_int_eq(jlen("mappingsJson"), 0);

	/* The rows. */
	snprintf(want, sizeof(want), "%lld|woocommerce|source|WooCommerce 127.0.0.1|t|pending|"
	         "{\"base_url\": \"%s\", \"auth_in_query\": false}", org_a, shop.https_url);
	q_text("SELECT concat_ws('|', org_id, type, direction, label, enabled, status, config::text)"
	       "  FROM sluice.connector WHERE id = $1::uuid", id, NULL, got, sizeof(got));
	ck_assert_str_eq(got, want);
	q_text("SELECT concat_ws('|', sync_products, sync_orders, sync_interval, mappings_json)"
	       "  FROM sluice.external_sync_config WHERE connector_id = $1::uuid", id, NULL, got,
	       sizeof(got));
	ck_assert_str_eq(got, "t|f|1 day|{}");
	assert_secrets(id, PLANTED_KEY, PLANTED_SECRET);

	/* The first scheduled sync: one run a day from now, its job, and nextSyncAt saying when. */
	q_text("SELECT concat_ws('|', r.status, r.trigger, r.sync_products, r.sync_orders,"
	       "                 r.due_at BETWEEN now() + interval '23 hours' AND now() + interval '25 hours',"
	       "                 j.kind, j.payload ->> 'run_id' = r.id::text, j.connector_id = r.connector_id,"
	       "                 c.next_sync_at = r.due_at)"
	       "  FROM sluice.external_sync_run r JOIN sluice.job j ON j.id = r.job_id"
	       "  JOIN sluice.connector c ON c.id = r.connector_id"
	       " WHERE r.connector_id = $1::uuid", id, NULL, got, sizeof(got));
	ck_assert_str_eq(got, "queued|scheduled|t|f|t|woocommerce.sync|t|t|t");
	ck_assert_int_eq(q_int("SELECT count(*) FROM sluice.external_sync_run WHERE connector_id = $1::uuid",
	                       id, NULL), 1);

	/* The audit row: in the change's transaction, naming the fields, never the values. */
	snprintf(want, sizeof(want), "connector:%s", id);
	assert_audit(rid(), kid_a_admin, org_a, "admin.connector.create", want, "ok", 201);
	audit_detail(rid(), got, sizeof(got));
	ck_assert_ptr_nonnull(strstr(got, "\"credentials\": [\"consumer_key\", \"consumer_secret\"]"));
	ck_assert_ptr_nonnull(strstr(got, "\"type\": \"woocommerce\""));
	assert_no_secret_in_rows();

	/* Every optional field, and the type in another case. */
	snprintf(host_label, sizeof(host_label), "Main shop");
	post_connector(key_a_admin,
	               "{\"type\":\"WooCommerce\",\"baseUrl\":\"https://shop.example.com/store\","
	               "\"consumerKey\":\"" PLANTED_KEY "\",\"consumerSecret\":\"" PLANTED_SECRET "\","
	               "\"syncProducts\":false,\"syncOrders\":true,\"label\":\"Main shop\","
	               "\"authInQuery\":true,\"syncIntervalSeconds\":3600,\"mappingsJson\":"
	               "{\"product\":[{\"source_field\":\"meta_data\",\"target_field\":\"metal\","
	               "\"transform_json\":{\"constant\":\"gold\"}}]}}", id);
	assert_summary_shape("");
	ck_assert_str_eq(jstr("label"), host_label);
	ck_assert_str_eq(jstr("baseUrl"), "https://shop.example.com/store");
	ck_assert_int_eq(jbool("syncProducts"), 0);
	ck_assert_int_eq(jbool("syncOrders"), 1);
	ck_assert_int_eq(jbool("authInQuery"), 1);
	ck_assert_int_eq(jint("syncIntervalSeconds"), 3600);
	ck_assert_str_eq(jstr("mappingsJson.product.0.target_field"), "metal");
	ck_assert_int_eq(q_int("SELECT count(*) FROM sluice.external_mapping_rule"
	                       " WHERE connector_id = $1::uuid AND entity_type = 'product'"
	                       "   AND target_field = 'metal'", id, NULL), 1);
	ck_assert_int_eq(q_int("SELECT count(*) FROM sluice.external_sync_run WHERE connector_id = $1::uuid"
	                       "   AND due_at BETWEEN now() + interval '50 minutes'"
	                       "                  AND now() + interval '70 minutes'", id, NULL), 1);
	assert_no_secret_in_rows();
}
END_TEST

/* ---- validation ------------------------------------------------------------------ */

static const struct {
	const char *body;
	const char *field;
} bad_creates[] = {
	{ "{\"type\":\"woocommerce\",\"baseUrl\":\"ftp://shop.example.com\",\"consumerKey\":\""
	  PLANTED_KEY "\",\"consumerSecret\":\"" PLANTED_SECRET "\",\"syncProducts\":true,"
	  "\"syncOrders\":true}", "baseUrl" },
	{ "{\"type\":\"woocommerce\",\"baseUrl\":\"https://user:pw@shop.example.com\",\"consumerKey\":\""
	  PLANTED_KEY "\",\"consumerSecret\":\"" PLANTED_SECRET "\",\"syncProducts\":true,"
	  "\"syncOrders\":true}", "baseUrl" },
	{ "{\"type\":\"woocommerce\",\"baseUrl\":\"https://shop.example.com/?a=1\",\"consumerKey\":\""
	  PLANTED_KEY "\",\"consumerSecret\":\"" PLANTED_SECRET "\",\"syncProducts\":true,"
	  "\"syncOrders\":true}", "baseUrl" },
	{ "{\"type\":\"woocommerce\",\"baseUrl\":\"shop.example.com\",\"consumerKey\":\""
	  PLANTED_KEY "\",\"consumerSecret\":\"" PLANTED_SECRET "\",\"syncProducts\":true,"
	  "\"syncOrders\":true}", "baseUrl" },
	{ "{\"type\":\"woocommerce\",\"baseUrl\":42,\"consumerKey\":\""
	  PLANTED_KEY "\",\"consumerSecret\":\"" PLANTED_SECRET "\",\"syncProducts\":true,"
	  "\"syncOrders\":true}", "baseUrl" },
	{ "{\"type\":\"woocommerce\",\"consumerKey\":\""
	  PLANTED_KEY "\",\"consumerSecret\":\"" PLANTED_SECRET "\",\"syncProducts\":true,"
	  "\"syncOrders\":true}", "baseUrl" },
	{ "{\"type\":\"woocommerce\",\"baseUrl\":\"https://shop.example.com\","
	  "\"consumerSecret\":\"" PLANTED_SECRET "\",\"syncProducts\":true,\"syncOrders\":true}",
	  "consumerKey" },
	{ "{\"type\":\"woocommerce\",\"baseUrl\":\"https://shop.example.com\",\"consumerKey\":\"\","
	  "\"consumerSecret\":\"" PLANTED_SECRET "\",\"syncProducts\":true,\"syncOrders\":true}",
	  "consumerKey" },
	{ "{\"type\":\"woocommerce\",\"baseUrl\":\"https://shop.example.com\",\"consumerKey\":\""
	  PLANTED_KEY "\",\"syncProducts\":true,\"syncOrders\":true}", "consumerSecret" },
	{ "{\"type\":\"woocommerce\",\"baseUrl\":\"https://shop.example.com\",\"consumerKey\":\""
	  PLANTED_KEY "\",\"consumerSecret\":7,\"syncProducts\":true,\"syncOrders\":true}",
	  "consumerSecret" },
	{ "{\"type\":\"woocommerce\",\"baseUrl\":\"https://shop.example.com\",\"consumer_key\":\""
	  PLANTED_KEY "\",\"consumerSecret\":\"" PLANTED_SECRET "\",\"syncProducts\":true,"
	  "\"syncOrders\":true}", "consumer_key" },
	{ "{\"type\":\"shopify\",\"baseUrl\":\"https://shop.example.com\",\"consumerKey\":\""
	  PLANTED_KEY "\",\"consumerSecret\":\"" PLANTED_SECRET "\",\"syncProducts\":true,"
	  "\"syncOrders\":true}", "type" },
	{ "{\"baseUrl\":\"https://shop.example.com\",\"consumerKey\":\""
	  PLANTED_KEY "\",\"consumerSecret\":\"" PLANTED_SECRET "\",\"syncProducts\":true,"
	  "\"syncOrders\":true}", "type" },
	{ "{\"type\":\"woocommerce\",\"baseUrl\":\"https://shop.example.com\",\"consumerKey\":\""
	  PLANTED_KEY "\",\"consumerSecret\":\"" PLANTED_SECRET "\",\"syncProducts\":\"yes\","
	  "\"syncOrders\":true}", "syncProducts" },
	{ "{\"type\":\"woocommerce\",\"baseUrl\":\"https://shop.example.com\",\"consumerKey\":\""
	  PLANTED_KEY "\",\"consumerSecret\":\"" PLANTED_SECRET "\",\"syncProducts\":true}",
	  "syncOrders" },
	{ "{\"type\":\"woocommerce\",\"baseUrl\":\"https://shop.example.com\",\"consumerKey\":\""
	  PLANTED_KEY "\",\"consumerSecret\":\"" PLANTED_SECRET "\",\"syncProducts\":true,"
	  "\"syncOrders\":true,\"authInQuery\":1}", "authInQuery" },
	{ "{\"type\":\"woocommerce\",\"baseUrl\":\"https://shop.example.com\",\"consumerKey\":\""
	  PLANTED_KEY "\",\"consumerSecret\":\"" PLANTED_SECRET "\",\"syncProducts\":true,"
	  "\"syncOrders\":true,\"syncIntervalSeconds\":59}", "syncIntervalSeconds" },
	{ "{\"type\":\"woocommerce\",\"baseUrl\":\"https://shop.example.com\",\"consumerKey\":\""
	  PLANTED_KEY "\",\"consumerSecret\":\"" PLANTED_SECRET "\",\"syncProducts\":true,"
	  "\"syncOrders\":true,\"syncIntervalSeconds\":2678401}", "syncIntervalSeconds" },
	{ "{\"type\":\"woocommerce\",\"baseUrl\":\"https://shop.example.com\",\"consumerKey\":\""
	  PLANTED_KEY "\",\"consumerSecret\":\"" PLANTED_SECRET "\",\"syncProducts\":true,"
	  "\"syncOrders\":true,\"label\":\"\"}", "label" },
	{ "{\"type\":\"woocommerce\",\"baseUrl\":\"https://shop.example.com\",\"consumerKey\":\""
	  PLANTED_KEY "\",\"consumerSecret\":\"" PLANTED_SECRET "\",\"syncProducts\":true,"
	  "\"syncOrders\":true,\"mappingsJson\":[]}", "mappingsJson" },
	/* The trigger's checks (sluice.write_mappings): 22023 naming mappingsJson. */
	{ "{\"type\":\"woocommerce\",\"baseUrl\":\"https://shop.example.com\",\"consumerKey\":\""
	  PLANTED_KEY "\",\"consumerSecret\":\"" PLANTED_SECRET "\",\"syncProducts\":true,"
	  "\"syncOrders\":true,\"mappingsJson\":{\"customer\":[]}}", "mappingsJson" },
	{ "{\"type\":\"woocommerce\",\"baseUrl\":\"https://shop.example.com\",\"consumerKey\":\""
	  PLANTED_KEY "\",\"consumerSecret\":\"" PLANTED_SECRET "\",\"syncProducts\":true,"
	  "\"syncOrders\":true,\"mappingsJson\":{\"order\":[{\"source_field\":\"line_items[].sku\","
	  "\"target_field\":\"sku\"}]}}", "mappingsJson" },
	{ "{\"type\":\"woocommerce\",\"baseUrl\":\"https://shop.example.com\",\"consumerKey\":\""
	  PLANTED_KEY "\",\"consumerSecret\":\"" PLANTED_SECRET "\",\"syncProducts\":true,"
	  "\"syncOrders\":true,\"mappingsJson\":{\"product\":[{\"source_field\":\"name\","
	  "\"target_field\":\"1 bad\"}]}}", "mappingsJson" },
};

START_TEST(create_422_names_the_field)
{
	call_simple("POST", "/admin/connectors", key_a_admin, bad_creates[_i].body);
	assert_error(422, "validation_failed", bad_creates[_i].field);
	/* Nothing was made: not a connector, not a secret, not a run. */
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.connector"), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.credential"), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.external_sync_config"), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.external_sync_run"), 0);
	/* The refusal is audited, without the keys. */
	assert_audit(rid(), kid_a_admin, org_a, "admin.connector.create", NULL, "refused", 422);
	assert_no_secret_in_rows();
}
END_TEST

START_TEST(admin_scope_only)
{
	static const struct {
		const char *method, *suffix, *body;
	} routes[] = {
		{ "GET", NULL, NULL }, { "POST", NULL, "{}" }, { "PUT", "", "{}" },
		{ "POST", "/test", NULL }, { "POST", "/sync", NULL }, { "GET", "/runs", NULL },
	};
	const char *keys[] = { key_a_write, key_a_read };
	char id[37], path[128];
	size_t i, k;

	shop_connector(id);
	for (k = 0; k < 2; k++) {
		for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
			if (routes[i].suffix)
				path_of(path, sizeof(path), id, routes[i].suffix);
			else
				snprintf(path, sizeof(path), "/admin/connectors");
			call_simple(routes[i].method, path, keys[k], routes[i].body);
			assert_error(403, "forbidden", NULL);
		}
	}
	/* Nothing changed: one connector, one scheduled run, no test. */
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.connector"), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.external_sync_run"
	                           " WHERE trigger = 'scheduled'"), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.connector WHERE last_test_at IS NULL"), 1);
	/* No key at all: 401. */
	call_simple("GET", "/admin/connectors", NULL, NULL);
	assert_error(401, "unauthorized", NULL);
}
END_TEST

/* ---- list -------------------------------------------------------------------------- */

START_TEST(list_only_woocommerce_of_the_org)
{
	char a1[37], a2[37], a3[37], b1[37], other[37], path[64];

	call_simple("GET", "/admin/connectors", key_a_admin, NULL);
	ck_assert_int_eq(R.status, 200);
	ck_assert_str_eq(R.body, "{\"connectors\":[]}");

	shop_connector(a1);
	post_connector(key_a_admin, create_body("https://second.example.com", PLANTED_KEY,
	                                        PLANTED_SECRET, "\"label\":\"Second\""), a2);
	post_connector(key_a_admin, create_body("https://third.example.com", PLANTED_KEY,
	                                        PLANTED_SECRET, NULL), a3);
	post_connector(key_b_admin, create_body("https://b.example.com", PLANTED_KEY,
	                                        PLANTED_SECRET, "\"label\":\"B shop\""), b1);
	/* Another type of A's is not shown here, nor a deleted WooCommerce connector. */
	t_connector(db, org_a, "dv360", NULL, other);
	t_execf(db, "SELECT sluice.delete_connector('%s')", a3);

	call_simple("GET", "/admin/connectors", key_a_admin, NULL);
	ck_assert_int_eq(R.status, 200);
	ck_assert_int_eq(jlen(""), 1);
	ck_assert_int_eq(jlen("connectors"), 2);
	assert_summary_shape("connectors.0");
	assert_summary_shape("connectors.1");
	/* Oldest first. */
	ck_assert_str_eq(jstr("connectors.0.id"), a1);
	ck_assert_str_eq(jstr("connectors.1.id"), a2);
	ck_assert_str_eq(jstr("connectors.1.label"), "Second");
	ck_assert_str_eq(jstr("connectors.1.baseUrl"), "https://second.example.com");
	ck_assert_ptr_null(strstr(R.body, "B shop"));
	ck_assert_ptr_null(strstr(R.body, other));

	call_simple("GET", "/admin/connectors", key_b_admin, NULL);
	ck_assert_int_eq(R.status, 200);
	ck_assert_int_eq(jlen("connectors"), 1);
	ck_assert_str_eq(jstr("connectors.0.id"), b1);

	/* A's other connector is not an admin connector on any route either. */
	path_of(path, sizeof(path), other, "/runs");
	call_simple("GET", path, key_a_admin, NULL);
	assert_error(404, "not_found", NULL);
}
END_TEST

/* ---- update ------------------------------------------------------------------------ */

START_TEST(update_keys_optional_and_base_url)
{
	char id[37], path[128], body[1024], got[1024], created[64], target[64];

	post_connector(key_a_admin, create_body("https://old.example.com", PLANTED_KEY, PLANTED_SECRET,
	                                        "\"label\":\"Shop\",\"syncIntervalSeconds\":7200,"
	                                        "\"mappingsJson\":{\"order\":[{\"source_field\":"
	                                        "\"status\",\"target_field\":\"status\","
	                                        "\"transform_json\":{\"constant\":\"PENDING\"}}]}"),
	               id);
	snprintf(created, sizeof(created), "%s", jstr("createdAt"));
	snprintf(target, sizeof(target), "connector:%s", id);
	path_of(path, sizeof(path), id, "");

	/* A new address and flags; no keys: they stay; what was not given stays. */
	snprintf(body, sizeof(body), "{\"baseUrl\":\"%s\",\"syncProducts\":false,\"syncOrders\":true}",
	         shop.https_url);
	call_simple("PUT", path, key_a_admin, body);
	ck_assert_msg(R.status == 200, "%d %s", R.status, R.body);
	assert_summary_shape("");
	ck_assert_str_eq(jstr("id"), id);
	ck_assert_str_eq(jstr("baseUrl"), shop.https_url);
	ck_assert_str_eq(jstr("label"), "Shop");
	ck_assert_str_eq(jstr("createdAt"), created);
	ck_assert_int_eq(jbool("syncProducts"), 0);
	ck_assert_int_eq(jbool("syncOrders"), 1);
	ck_assert_int_eq(jint("syncIntervalSeconds"), 7200);
	ck_assert_str_eq(jstr("mappingsJson.order.0.target_field"), "status");
	ck_assert_int_eq(jbool("hasCredentials"), 1);
	assert_secrets(id, PLANTED_KEY, PLANTED_SECRET);
	assert_audit(rid(), kid_a_admin, org_a, "admin.connector.update", target, "ok", 200);
	audit_detail(rid(), got, sizeof(got));
	ck_assert_ptr_nonnull(strstr(got, "\"credentials\": []"));
	ck_assert_ptr_nonnull(strstr(got, "\"baseUrlChanged\": true"));
	q_text("SELECT config::text FROM sluice.connector WHERE id = $1::uuid", id, NULL, got,
	       sizeof(got));
	snprintf(body, sizeof(body), "{\"base_url\": \"%s\", \"auth_in_query\": false}", shop.https_url);
	ck_assert_str_eq(got, body);
	/* Rules written through: the connector's rule is still there. */
	ck_assert_int_eq(q_int("SELECT count(*) FROM sluice.external_mapping_rule"
	                       " WHERE connector_id = $1::uuid", id, NULL), 1);

	/* One key alone: merged into the stored ones.  The other fields change too. */
	snprintf(body, sizeof(body), "{\"baseUrl\":\"%s\",\"consumerSecret\":\"" T_SHOP_SECRET "\","
	         "\"syncProducts\":true,\"syncOrders\":true,\"label\":\"Renamed\","
	         "\"authInQuery\":true,\"syncIntervalSeconds\":600,\"mappingsJson\":{}}",
	         shop.https_url);
	call_simple("PUT", path, key_a_admin, body);
	ck_assert_msg(R.status == 200, "%d %s", R.status, R.body);
	ck_assert_str_eq(jstr("label"), "Renamed");
	ck_assert_int_eq(jbool("authInQuery"), 1);
	ck_assert_int_eq(jint("syncIntervalSeconds"), 600);
	ck_assert_int_eq(jlen("mappingsJson"), 0);
	ck_assert_int_eq(q_int("SELECT count(*) FROM sluice.external_mapping_rule"
	                       " WHERE connector_id = $1::uuid", id, NULL), 0);
	assert_secrets(id, PLANTED_KEY, T_SHOP_SECRET);
	audit_detail(rid(), got, sizeof(got));
	ck_assert_ptr_nonnull(strstr(got, "\"credentials\": [\"consumer_secret\"]"));
	ck_assert_ptr_nonnull(strstr(got, "\"baseUrlChanged\": false"));

	/* A connector whose keys were refused is pending again once new keys come ... */
	t_execf(db, "SELECT sluice.set_connector_status('%s', 'reauth_required', 'keys refused')", id);
	snprintf(body, sizeof(body), "{\"baseUrl\":\"%s\",\"consumerKey\":\"" T_SHOP_KEY "\","
	         "\"syncProducts\":true,\"syncOrders\":true}", shop.https_url);
	call_simple("PUT", path, key_a_admin, body);
	ck_assert_msg(R.status == 200, "%d %s", R.status, R.body);
	ck_assert_str_eq(jstr("status"), "pending");
	ck_assert(jnull("statusMessage"));
	assert_secrets(id, T_SHOP_KEY, T_SHOP_SECRET);
	audit_detail(rid(), got, sizeof(got));
	ck_assert_ptr_nonnull(strstr(got, "\"previousStatus\": \"reauth_required\""));

	/* ... or a new address; not when nothing about the shop changed. */
	t_execf(db, "SELECT sluice.set_connector_status('%s', 'error', 'down')", id);
	snprintf(body, sizeof(body), "{\"baseUrl\":\"%s\",\"syncProducts\":true,\"syncOrders\":true}",
	         shop.https_url);
	call_simple("PUT", path, key_a_admin, body);
	ck_assert_int_eq(R.status, 200);
	ck_assert_str_eq(jstr("status"), "error");
	ck_assert_str_eq(jstr("statusMessage"), "down");
	call_simple("PUT", path, key_a_admin, "{\"baseUrl\":\"https://new.example.com\","
	            "\"syncProducts\":true,\"syncOrders\":true}");
	ck_assert_int_eq(R.status, 200);
	ck_assert_str_eq(jstr("status"), "pending");
	ck_assert_str_eq(jstr("baseUrl"), "https://new.example.com");

	/* The seed's DTO: baseUrl and the flags are required; type is not a PUT field. */
	call_simple("PUT", path, key_a_admin, "{\"syncProducts\":true,\"syncOrders\":true}");
	assert_error(422, "validation_failed", "baseUrl");
	call_simple("PUT", path, key_a_admin, "{\"baseUrl\":\"https://x.example.com\",\"syncOrders\":true}");
	assert_error(422, "validation_failed", "syncProducts");
	call_simple("PUT", path, key_a_admin, "{\"baseUrl\":\"https://x.example.com\",\"type\":\"woocommerce\","
	            "\"syncProducts\":true,\"syncOrders\":true}");
	assert_error(422, "validation_failed", "type");
	call_simple("PUT", path, key_a_admin, "{\"baseUrl\":\"https://x.example.com\",\"consumerKey\":\"\","
	            "\"syncProducts\":true,\"syncOrders\":true}");
	assert_error(422, "validation_failed", "consumerKey");
	call_simple("PUT", path, key_a_admin, "{\"baseUrl\":\"https://x.example.com\","
	            "\"syncProducts\":true,\"syncOrders\":true,\"mappingsJson\":{\"order\":{}}}");
	assert_error(422, "validation_failed", "mappingsJson");
	assert_audit(rid(), kid_a_admin, org_a, "admin.connector.update", target, "refused", 422);
	/* A URL sl_woo_check_base_url takes but the connector model does not (0004's expand_url). */
	call_simple("PUT", path, key_a_admin, "{\"baseUrl\":\"https://shop.example.com/a+b\","
	            "\"syncProducts\":true,\"syncOrders\":true}");
	assert_error(422, "validation_failed", "baseUrl");
	/* None of those changed anything. */
	call_simple("GET", "/admin/connectors", key_a_admin, NULL);
	ck_assert_str_eq(jstr("connectors.0.baseUrl"), "https://new.example.com");
	ck_assert_int_eq(jint("connectors.0.syncIntervalSeconds"), 600);
	assert_no_secret_in_rows();
}
END_TEST

/* ---- test connection --------------------------------------------------------------- */

START_TEST(test_connection_success)
{
	char id[37], path[128], target[64], got[1024], body[512];

	shop_connector(id);
	snprintf(target, sizeof(target), "connector:%s", id);
	path_of(path, sizeof(path), id, "/test");
	call_simple("POST", path, key_a_admin, NULL);
	ck_assert_msg(R.status == 200, "%d %s", R.status, R.body);
	ck_assert_int_eq(jlen(""), 2);
	ck_assert_int_eq(jbool("success"), 1);
	ck_assert_str_eq(jstr("message"), "Connected to the shop's WooCommerce REST API (50 products).");
	assert_audit(rid(), kid_a_admin, org_a, "admin.connector.test", target, "ok", 200);
	audit_detail(rid(), got, sizeof(got));
	ck_assert_ptr_nonnull(strstr(got, "\"success\": true"));
	/* Opening the keys left its own audit row. */
	ck_assert_int_eq(q_int("SELECT count(*) FROM sluice.audit WHERE request_id = $1"
	                       "   AND action = 'credential.decrypt'", rid(), NULL), 1);

	call_simple("GET", "/admin/connectors", key_a_admin, NULL);
	ck_assert_str_eq(jstr("connectors.0.status"), "connected");
	ck_assert(jnull("connectors.0.statusMessage"));
	ck_assert(api_is_rfc3339(jstr("connectors.0.lastTestAt")));
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.connector"
	                           " WHERE last_test_at > now() - interval '1 minute'"), 1);

	/* The shop saw one authenticated call over https. */
	{
		json_object *stats = t_fake_get(&shop.control, "/__control/stats");

		ck_assert_int_eq(json_object_get_int(t_json_get(stats, "by_status.200")), 1);
		ck_assert_int_eq(json_object_get_int(t_json_get(stats, "auth_failures")), 0);
		json_object_put(stats);
	}

	/* Keys in the query string (authInQuery), and plain http on loopback (OAuth 1.0a). */
	path_of(path, sizeof(path), id, "");
	snprintf(body, sizeof(body), "{\"baseUrl\":\"%s\",\"authInQuery\":true,\"syncProducts\":true,"
	         "\"syncOrders\":true}", shop.https_url);
	call_simple("PUT", path, key_a_admin, body);
	ck_assert_int_eq(R.status, 200);
	path_of(path, sizeof(path), id, "/test");
	call_simple("POST", path, key_a_admin, NULL);
	ck_assert_int_eq(R.status, 200);
	ck_assert_msg(jbool("success"), "%s", R.body);
	path_of(path, sizeof(path), id, "");
	snprintf(body, sizeof(body), "{\"baseUrl\":\"%s\",\"syncProducts\":true,\"syncOrders\":true}",
	         shop.http_url);
	call_simple("PUT", path, key_a_admin, body);
	ck_assert_int_eq(R.status, 200);
	path_of(path, sizeof(path), id, "/test");
	call_simple("POST", path, key_a_admin, NULL);
	ck_assert_int_eq(R.status, 200);
	ck_assert_msg(jbool("success"), "%s", R.body);
	ck_assert_ptr_nonnull(strstr(jstr("message"), "50 products"));
	assert_no_secret_in_rows();
}
END_TEST

START_TEST(test_connection_wrong_secret)
{
	char id[37], path[128], msg[1024], got[1024], body[512];

	post_connector(key_a_admin, create_body(NULL, T_SHOP_KEY, WRONG_SECRET, NULL), id);
	path_of(path, sizeof(path), id, "/test");
	call_simple("POST", path, key_a_admin, NULL);
	ck_assert_msg(R.status == 200, "%d %s", R.status, R.body);
	ck_assert_int_eq(jlen(""), 2);
	ck_assert_int_eq(jbool("success"), 0);
	snprintf(msg, sizeof(msg), "%s", jstr("message"));
	ck_assert_msg(strstr(msg, "refused the consumer key or secret") != NULL, "%s", msg);
	ck_assert_msg(strstr(msg, "Consumer secret is invalid.") != NULL, "%s", msg);
	audit_detail(rid(), got, sizeof(got));
	ck_assert_ptr_nonnull(strstr(got, "\"status\": \"reauth_required\""));

	call_simple("GET", "/admin/connectors", key_a_admin, NULL);
	ck_assert_str_eq(jstr("connectors.0.status"), "reauth_required");
	ck_assert_str_eq(jstr("connectors.0.statusMessage"), msg);
	ck_assert(api_is_rfc3339(jstr("connectors.0.lastTestAt")));

	/* The right secret: pending, then connected. */
	path_of(path, sizeof(path), id, "");
	snprintf(body, sizeof(body), "{\"baseUrl\":\"%s\",\"consumerSecret\":\"" T_SHOP_SECRET "\","
	         "\"syncProducts\":true,\"syncOrders\":true}", shop.https_url);
	call_simple("PUT", path, key_a_admin, body);
	ck_assert_int_eq(R.status, 200);
	ck_assert_str_eq(jstr("status"), "pending");
	path_of(path, sizeof(path), id, "/test");
	call_simple("POST", path, key_a_admin, NULL);
	ck_assert_int_eq(jbool("success"), 1);
	call_simple("GET", "/admin/connectors", key_a_admin, NULL);
	ck_assert_str_eq(jstr("connectors.0.status"), "connected");
	assert_no_secret_in_rows();
}
END_TEST

START_TEST(test_connection_not_woocommerce)
{
	char id[37], path[128];

	shop_connector(id);
	t_fake_post(&shop.control, "/__control/root_404", "true");
	path_of(path, sizeof(path), id, "/test");
	call_simple("POST", path, key_a_admin, NULL);
	ck_assert_int_eq(R.status, 200);
	ck_assert_int_eq(jbool("success"), 0);
	ck_assert_msg(!strncmp(jstr("message"), "WooCommerce REST API not found at this URL",
	                       strlen("WooCommerce REST API not found at this URL")), "%s", R.body);
	call_simple("GET", "/admin/connectors", key_a_admin, NULL);
	ck_assert_str_eq(jstr("connectors.0.status"), "error");
	ck_assert_ptr_nonnull(strstr(jstr("connectors.0.statusMessage"),
	                             "WooCommerce REST API not found at this URL"));
	assert_no_secret_in_rows();
}
END_TEST

START_TEST(test_connection_untrusted_certificate)
{
	char id[37], path[128];
	struct t_shop untrusted;
	const char *args[] = { "--untrusted", NULL };

	/* Our CA is not given: the shop's certificate is not trusted. */
	shop_connector(id);
	path_of(path, sizeof(path), id, "/test");
	unsetenv("SLUICE_CA_FILE");
	call_simple("POST", path, key_a_admin, NULL);
	setenv("SLUICE_CA_FILE", shop.ca_file, 1);
	ck_assert_int_eq(R.status, 200);
	ck_assert_int_eq(jbool("success"), 0);
	ck_assert_msg(strstr(jstr("message"), "certificate is not trusted") != NULL, "%s", R.body);
	call_simple("GET", "/admin/connectors", key_a_admin, NULL);
	ck_assert_str_eq(jstr("connectors.0.status"), "error");

	/* A self-signed certificate, with our CA given. */
	t_shop_start(&untrusted, args);
	post_connector(key_a_admin, create_body(untrusted.https_url, T_SHOP_KEY, T_SHOP_SECRET, NULL),
	               id);
	path_of(path, sizeof(path), id, "/test");
	call_simple("POST", path, key_a_admin, NULL);
	t_shop_stop(&untrusted);
	ck_assert_int_eq(R.status, 200);
	ck_assert_int_eq(jbool("success"), 0);
	ck_assert_msg(strstr(jstr("message"), "certificate") != NULL, "%s", R.body);
	assert_no_secret_in_rows();
}
END_TEST

/* ---- sync and runs ----------------------------------------------------------------- */

START_TEST(sync_202_one_live_run)
{
	char id[37], path[128], run[37], target[64], got[512];

	shop_connector(id);
	snprintf(target, sizeof(target), "connector:%s", id);
	path_of(path, sizeof(path), id, "/sync");
	call_simple("POST", path, key_a_admin, NULL);
	ck_assert_msg(R.status == 202, "%d %s", R.status, R.body);
	ck_assert_int_eq(jlen(""), 2);
	ck_assert(api_is_uuid(jstr("runId")));
	ck_assert_str_eq(jstr("status"), "queued");
	snprintf(run, sizeof(run), "%s", jstr("runId"));
	assert_audit(rid(), kid_a_admin, org_a, "admin.connector.sync", target, "ok", 202);

	/* The scheduled run, brought forward: manual, due now, with its job. */
	q_text("SELECT concat_ws('|', r.connector_id, r.org_id, r.status, r.trigger, r.sync_products,"
	       "                 r.sync_orders, r.due_at <= now(), j.kind, j.payload ->> 'run_id',"
	       "                 j.connector_id = r.connector_id, j.priority)"
	       "  FROM sluice.external_sync_run r JOIN sluice.job j ON j.id = r.job_id"
	       " WHERE r.id = $1::uuid", run, NULL, got, sizeof(got));
	{
		char want[512];

		snprintf(want, sizeof(want), "%s|%lld|queued|manual|t|f|t|woocommerce.sync|%s|t|2", id,
		         org_a, run);
		ck_assert_str_eq(got, want);
	}
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.external_sync_run"), 1);

	/* Twice is once; an empty body is no body; a body may choose what to read. */
	call(&(struct t_api_req){ .method = "POST", .path = path, .key = key_a_admin, .body = "" });
	ck_assert_msg(R.status == 202, "%d %s", R.status, R.body);
	ck_assert_str_eq(jstr("runId"), run);
	call_simple("POST", path, key_a_admin, "{\"syncProducts\":true,\"syncOrders\":true}");
	ck_assert_int_eq(R.status, 202);
	ck_assert_str_eq(jstr("runId"), run);
	ck_assert_str_eq(jstr("status"), "queued");
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.external_sync_run"), 1);
	ck_assert_int_eq(q_int("SELECT count(*) FROM sluice.external_sync_run WHERE id = $1::uuid"
	                       "   AND sync_orders AND sync_products", run, NULL), 1);
	ck_assert_int_eq(q_int("SELECT count(*) FROM sluice.job WHERE kind = 'woocommerce.sync'"
	                       "   AND payload ->> 'run_id' = $1", run, NULL), 1);
	ck_assert_int_eq(q_int("SELECT count(*) FROM sluice.audit WHERE action = 'admin.connector.sync'"
	                       "   AND target = $1 AND outcome = 'ok'", target, NULL), 3);

	/* A running run is the live one too. */
	t_execf(db, "UPDATE sluice.external_sync_run SET status = 'running', started_at = now()"
	        " WHERE id = '%s'", run);
	call_simple("POST", path, key_a_admin, NULL);
	ck_assert_int_eq(R.status, 202);
	ck_assert_str_eq(jstr("runId"), run);
	ck_assert_str_eq(jstr("status"), "running");

	/* Bad bodies. */
	call_simple("POST", path, key_a_admin, "{\"syncProducts\":\"yes\"}");
	assert_error(422, "validation_failed", "syncProducts");
	call_simple("POST", path, key_a_admin, "{\"products\":true}");
	assert_error(422, "validation_failed", "products");
	call_simple("POST", path, key_a_admin, "{\"syncProducts\":false,\"syncOrders\":false}");
	assert_error(422, "validation_failed", "syncProducts");
	call_simple("POST", path, key_a_admin, "[true]");
	assert_error(422, "validation_failed", NULL);
	assert_audit(rid(), kid_a_admin, org_a, "admin.connector.sync", target, "refused", 422);
	assert_no_secret_in_rows();
}
END_TEST

START_TEST(runs_newest_first)
{
	char id[37], path[128], run1[37], run2[37];

	shop_connector(id);
	path_of(path, sizeof(path), id, "/sync");
	call_simple("POST", path, key_a_admin, NULL);
	ck_assert_int_eq(R.status, 202);
	snprintf(run1, sizeof(run1), "%s", jstr("runId"));
	/* The run ends (as a worker would end it): the next scheduled run is queued. */
	t_execf(db, "UPDATE sluice.external_sync_run SET status = 'running', started_at = now(),"
	        " stats_json = '{\"product\": {\"pages\": 1, \"fetched\": 50, \"created\": 50,"
	        " \"updated\": 0, \"unchanged\": 0, \"failed\": 0}}' WHERE id = '%s'", run1);
	t_execf(db, "SELECT sluice.woo_finish_run('%s', NULL)", run1);
	call_simple("POST", path, key_a_admin, "{\"syncOrders\":true}");
	ck_assert_int_eq(R.status, 202);
	snprintf(run2, sizeof(run2), "%s", jstr("runId"));
	ck_assert_str_ne(run1, run2);

	path_of(path, sizeof(path), id, "/runs");
	call_simple("GET", path, key_a_admin, NULL);
	ck_assert_msg(R.status == 200, "%d %s", R.status, R.body);
	ck_assert_int_eq(jlen(""), 1);
	ck_assert_int_eq(jlen("runs"), 2);
	ck_assert_str_eq(jstr("runs.0.id"), run2);
	ck_assert_str_eq(jstr("runs.0.status"), "queued");
	ck_assert_str_eq(jstr("runs.0.trigger"), "manual");
	ck_assert(jnull("runs.0.startedAt"));
	ck_assert(jnull("runs.0.finishedAt"));
	ck_assert_int_eq(jbool("runs.0.syncOrders"), 1);
	ck_assert_str_eq(jstr("runs.1.id"), run1);
	ck_assert_int_eq(jlen("runs.1"), 11);
	ck_assert_str_eq(jstr("runs.1.status"), "success");
	ck_assert_str_eq(jstr("runs.1.trigger"), "manual");
	ck_assert_int_eq(jbool("runs.1.syncProducts"), 1);
	ck_assert_int_eq(jbool("runs.1.syncOrders"), 0);
	ck_assert(api_is_rfc3339(jstr("runs.1.dueAt")));
	ck_assert(api_is_rfc3339(jstr("runs.1.startedAt")));
	ck_assert(api_is_rfc3339(jstr("runs.1.finishedAt")));
	ck_assert_int_eq(jint("runs.1.stats.products.fetched"), 50);
	ck_assert_int_eq(jint("runs.1.stats.products.created"), 50);
	ck_assert_int_eq(jint("runs.1.stats.orders.fetched"), 0);
	ck_assert_int_eq(jlen("runs.1.stats.orders"), 6);
	ck_assert_int_eq(jlen("runs.1.errors"), 0);
	ck_assert(jnull("runs.1.error"));

	call(&(struct t_api_req){ .method = "GET", .path = path, .query = "limit=1",
	                          .key = key_a_admin });
	ck_assert_int_eq(R.status, 200);
	ck_assert_int_eq(jlen("runs"), 1);
	ck_assert_str_eq(jstr("runs.0.id"), run2);
	call(&(struct t_api_req){ .method = "GET", .path = path, .query = "limit=0",
	                          .key = key_a_admin });
	assert_error(422, "validation_failed", "limit");
	call(&(struct t_api_req){ .method = "GET", .path = path, .query = "limit=101",
	                          .key = key_a_admin });
	assert_error(422, "validation_failed", "limit");
	call(&(struct t_api_req){ .method = "GET", .path = path, .query = "page=2",
	                          .key = key_a_admin });
	assert_error(422, "validation_failed", "page");

	/* The summary's lastRun is the last run that started. */
	call_simple("GET", "/admin/connectors", key_a_admin, NULL);
	ck_assert_str_eq(jstr("connectors.0.lastRun.id"), run1);
	ck_assert_str_eq(jstr("connectors.0.lastRun.status"), "success");
	ck_assert_int_eq(jint("connectors.0.lastRun.stats.products.fetched"), 50);
	ck_assert(api_is_rfc3339(jstr("connectors.0.lastSyncAt")));
}
END_TEST

/* ---- isolation ---------------------------------------------------------------------- */

START_TEST(other_org_404_everywhere)
{
	static const struct {
		const char *method, *suffix, *body;
	} routes[] = {
		{ "PUT", "", "{\"baseUrl\":\"https://stolen.example.com\",\"consumerKey\":\"" PLANTED_KEY
		  "\",\"syncProducts\":true,\"syncOrders\":true}" },
		{ "POST", "/test", NULL }, { "POST", "/sync", NULL }, { "GET", "/runs", NULL },
	};
	char a_id[37], other[37], path[128], missing[256], target[64];
	const char *ids[4];
	size_t i, k;

	shop_connector(a_id);
	t_connector(db, org_b, "dv360", NULL, other);
	ids[0] = a_id;            /* A's, asked by B */
	ids[1] = other;           /* B's own, not a WooCommerce connector */
	ids[2] = "0b6e3d1c-5f1a-4c1e-9a53-2f0d7c1b9e42";   /* nobody's */
	ids[3] = "not-a-uuid";

	call_simple("PUT", "/admin/connectors/0b6e3d1c-5f1a-4c1e-9a53-2f0d7c1b9e42", key_b_admin,
	            routes[0].body);
	assert_error(404, "not_found", NULL);
	snprintf(missing, sizeof(missing), "%s", jstr("error.message"));
	ck_assert_str_eq(missing, "no such connector");

	for (k = 0; k < 4; k++) {
		for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
			path_of(path, sizeof(path), ids[k], routes[i].suffix);
			call_simple(routes[i].method, path, key_b_admin, routes[i].body);
			assert_error(404, "not_found", NULL);
			ck_assert_str_eq(jstr("error.message"), missing);
			if (k < 3 && strcmp(routes[i].method, "GET")) {
				snprintf(target, sizeof(target), "connector:%s", ids[k]);
				assert_audit(rid(), kid_b_admin, org_b, routes[i].suffix[0] == '\0'
				             ? "admin.connector.update" : !strcmp(routes[i].suffix, "/test")
				             ? "admin.connector.test" : "admin.connector.sync", target,
				             "refused", 404);
			}
		}
	}
	/* A's connector is untouched: its address, its keys, no test, only its scheduled run. */
	call_simple("GET", "/admin/connectors", key_a_admin, NULL);
	ck_assert_str_eq(jstr("connectors.0.baseUrl"), shop.https_url);
	ck_assert(jnull("connectors.0.lastTestAt"));
	assert_secrets(a_id, T_SHOP_KEY, T_SHOP_SECRET);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.external_sync_run"
	                           " WHERE trigger = 'manual'"), 0);
	/* The shop was never called. */
	{
		json_object *stats = t_fake_get(&shop.control, "/__control/stats");

		ck_assert_int_eq(json_object_get_int(t_json_get(stats, "requests")), 0);
		json_object_put(stats);
	}
	assert_no_secret_in_rows();
}
END_TEST

START_TEST(disabled_connector_409)
{
	char id[37], path[128];

	shop_connector(id);
	t_execf(db, "SELECT sluice.set_connector_enabled('%s', false)", id);
	path_of(path, sizeof(path), id, "/test");
	call_simple("POST", path, key_a_admin, NULL);
	assert_error(409, "conflict", NULL);
	path_of(path, sizeof(path), id, "/sync");
	call_simple("POST", path, key_a_admin, NULL);
	assert_error(409, "conflict", NULL);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.connector WHERE status = 'disabled'"
	                           "   AND last_test_at IS NULL"), 1);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("admin_api");
	TCase *tc;

	tc = tcase_create("connectors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, create_201_every_field);
	tcase_add_loop_test(tc, create_422_names_the_field, 0,
	                    sizeof(bad_creates) / sizeof(bad_creates[0]));
	tcase_add_test(tc, admin_scope_only);
	tcase_add_test(tc, list_only_woocommerce_of_the_org);
	tcase_add_test(tc, update_keys_optional_and_base_url);
	tcase_add_test(tc, other_org_404_everywhere);
	tcase_add_test(tc, disabled_connector_409);
	suite_add_tcase(s, tc);

	tc = tcase_create("shop");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_connection_success);
	tcase_add_test(tc, test_connection_wrong_secret);
	tcase_add_test(tc, test_connection_not_woocommerce);
	tcase_add_test(tc, test_connection_untrusted_certificate);
	tcase_add_test(tc, sync_202_one_live_run);
	tcase_add_test(tc, runs_newest_first);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return t_run(make_suite());
}
