/* test_woocommerce.c — seed 002's sync: mapping, idempotency, runs, order, failures and a resumed run, against the fake shop. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness.h"

static char url[256], log_path[128];
static PGconn *db;
static long long org;
static struct t_shop shop;
static char conn[37];

static void
setup(void)
{
	t_db_create(url, sizeof(url));
	db = t_connect(url);
	org = t_org(db, "goldsphere");
	snprintf(log_path, sizeof(log_path), "/tmp/sluice-woo-test-%ld.log", (long)getpid());
	t_exec(db, "UPDATE sluice.setting SET value = '200 milliseconds' WHERE name = 'backoff_base'");
	/* The shop's customers are the platform's users (seed 002: orders find theirs by e-mail). */
	t_execf(db, "INSERT INTO sluice.app_user (org_id, email, name)"
	        " SELECT %lld, 'Customer-' || i || '@Example.com', 'Customer ' || i"
	        " FROM generate_series(1, 50) i", org);
}

static void
teardown(void)
{
	t_shop_stop(&shop);
	PQfinish(db);
	unlink(log_path);
}

/* Seals the shop keys as conn's credential. */
static void
store_keys(const char *key, const char *secret)
{
	json_object *secrets = json_object_new_object();

	json_object_object_add(secrets, "consumer_key", json_object_new_string(key));
	json_object_object_add(secrets, "consumer_secret", json_object_new_string(secret));
	t_store_secrets(url, conn, secrets);
	json_object_put(secrets);
}

/* A WooCommerce connector of org on base_url with keys, its sync config paged by page_size. */
static void
woo_connector(const char *base_url, const char *key, const char *secret, int page_size)
{
	char config[256];

	snprintf(config, sizeof(config), "{\"base_url\": \"%s\", \"currency\": \"eur\"}", base_url);
	t_connector(db, org, "woocommerce", config, conn);
	store_keys(key, secret);
	t_execf(db, "INSERT INTO sluice.external_sync_config (connector_id, page_size) VALUES ('%s', %d)",
	        conn, page_size);
}

static pid_t
worker(const char *const *extra)
{
	char ca[256];
	const char *env[8] = { ca, "SLUICE_WORKER_REAP_INTERVAL=500ms", NULL };
	int i;

	snprintf(ca, sizeof(ca), "SLUICE_CA_FILE=%s", shop.ca_file);
	for (i = 0; extra && extra[i] && i < 5; i++)
		env[2 + i] = extra[i];
	env[2 + i] = NULL;
	return t_worker_start(url, env, log_path);
}

static void
stop(pid_t pid)
{
	t_stop(pid, SIGTERM);
	t_wait_exit(pid, 20000);
}

/* Asks for a manual sync; its run id into run[37]. */
static void
request_sync(char *run)
{
	char sql[160];

	snprintf(sql, sizeof(sql), "SELECT sluice.woo_request_sync('%s', 'manual')", conn);
	t_text(db, sql, run, 37);
	ck_assert_int_eq(strlen(run), 36);
}

/* Waits until the run has ended, and returns whether it ended with status. */
static int
await_run(const char *run, const char *status)
{
	char sql[256];

	snprintf(sql, sizeof(sql), "SELECT status NOT IN ('queued', 'running') FROM sluice.external_sync_run"
	         " WHERE id = '%s'", run);
	ck_assert_msg(t_wait_until_log(db, sql, 90000, log_path), "run %s did not end", run);
	return t_intf(db, "SELECT (status = '%s')::int FROM sluice.external_sync_run WHERE id = '%s'",
	              status, run) == 1;
}

static long long
stat_of(const char *run, const char *entity, const char *what)
{
	return t_intf(db, "SELECT coalesce((stats_json #>> '{%s,%s}')::bigint, -1)"
	              " FROM sluice.external_sync_run WHERE id = '%s'", entity, what, run);
}

/* How many products (variations included) the shop lists, by what the first run stored. */
static long long
catalogue_size(void)
{
	return t_intf(db, "SELECT count(*) FILTER (WHERE parent_external_id IS NULL)"
	              " + coalesce(sum(jsonb_array_length(raw_payload_json -> 'variations'))"
	              "            FILTER (WHERE raw_payload_json ->> 'type' = 'variable'), 0)"
	              " FROM sluice.external_product WHERE connector_id = '%s'", conn);
}

/* ---- mapping (SQL) ---------------------------------------------------------------- */

/* The mapping of one record by the rules in force for conn, as (error or "", mapped). */
static void
map_one(const char *entity, const char *doc, char *error, size_t esz, char *mapped, size_t msz)
{
	const char *params[3] = { conn, entity, doc };
	PGresult *res;

	res = t_query(db, "SELECT coalesce(m.error, '') AS error, coalesce(m.mapped::text, '') AS mapped"
	              "  FROM sluice.connector c,"
	              "       sluice.map_record(sluice.mapping_rules(c.id, $2), $3::jsonb,"
	              "           jsonb_build_object('org_id', c.org_id, 'source', sluice.woo_source(c.id),"
	              "                              'config', c.config)) m"
	              " WHERE c.id = $1::uuid", 3, params);
	ck_assert_int_eq(PQntuples(res), 1);
	snprintf(error, esz, "%s", PQgetvalue(res, 0, 0));
	snprintf(mapped, msz, "%s", PQgetvalue(res, 0, 1));
	PQclear(res);
}

/* A value of the last mapping: mapped ->> path (a text[] path like {pricing,totalAmount}). */
static void
mapped_get(const char *mapped, const char *path, char *out, size_t n)
{
	t_text_p(db, "SELECT $1::jsonb #>> $2::text[]", mapped, path, out, n);
}

START_TEST(mapping_transforms_and_required_fields)
{
	char error[1024], mapped[4096], v[256];
	char product_ref[37];

	woo_connector("https://shop.example", "ck_x", "cs_x", 100);
	/* Products: decimal prices, currency from the connector's config, upper-cased; type and metal. */
	map_one("product", "{\"id\": 7, \"name\": \"Krugerrand 1 oz Gold Coin\", \"sku\": \"KR-1\","
	        " \"price\": \"1999.50\", \"stock_status\": \"instock\", \"stock_quantity\": 4,"
	        " \"categories\": [{\"name\": \"Bestseller\"}, {\"name\": \"Gold Coins\"}],"
	        " \"images\": [{\"src\": \"https://shop.example/a.jpg\"}, {\"src\": \"https://shop.example/b.jpg\"}]}",
	        error, sizeof(error), mapped, sizeof(mapped));
	ck_assert_str_eq(error, "");
	mapped_get(mapped, "{price}", v, sizeof(v));
	ck_assert_str_eq(v, "1999.50");
	mapped_get(mapped, "{currency}", v, sizeof(v));
	ck_assert_str_eq(v, "EUR");
	mapped_get(mapped, "{productType}", v, sizeof(v));
	ck_assert_str_eq(v, "COIN");
	mapped_get(mapped, "{metal}", v, sizeof(v));
	ck_assert_str_eq(v, "GOLD");
	mapped_get(mapped, "{inStock}", v, sizeof(v));
	ck_assert_str_eq(v, "true");
	mapped_get(mapped, "{images,1}", v, sizeof(v));
	ck_assert_str_eq(v, "https://shop.example/b.jpg");
	/* An unparseable price and a missing name fail the record, naming the field. */
	map_one("product", "{\"id\": 8, \"name\": \"Bar\", \"price\": \"12,3x\"}", error, sizeof(error),
	        mapped, sizeof(mapped));
	ck_assert_str_eq(error, "price: not a decimal number: 12,3x");
	ck_assert_str_eq(mapped, "");
	map_one("product", "{\"id\": 9, \"price\": \"1.00\"}", error, sizeof(error), mapped, sizeof(mapped));
	ck_assert_str_eq(error, "name: required field missing (from name)");

	/* Orders: the status map, currency, totals, line items through external_reference. */
	t_execf(db, "INSERT INTO sluice.app_product (id, org_id, name, sku, price, currency)"
	        " VALUES (gen_random_uuid(), %lld, 'Krugerrand', 'KR-1', 1, 'EUR') RETURNING id", org);
	t_text(db, "SELECT id FROM sluice.app_product WHERE sku = 'KR-1'", product_ref, sizeof(product_ref));
	t_execf(db, "SELECT sluice.reference_put(sluice.woo_source('%s'), 'product', '7', '%s'),"
	        " sluice.reference_put(sluice.woo_source('%s'), 'product_sku', 'KR-1', '%s')",
	        conn, product_ref, conn, product_ref);
	map_one("order", "{\"id\": 100, \"status\": \"on-hold\", \"currency\": \"usd\", \"total\": \"2010.00\","
	        " \"total_tax\": \"10.50\", \"date_created_gmt\": \"2024-05-01T08:30:00\","
	        " \"billing\": {\"email\": \"customer-3@example.com\"},"
	        " \"line_items\": [{\"product_id\": 7, \"variation_id\": 0, \"quantity\": 2, \"subtotal\": \"1999.50\"},"
	        "                  {\"product_id\": 555, \"variation_id\": 0, \"sku\": \"KR-1\", \"quantity\": 1,"
	        "                   \"subtotal\": \"0.50\"}]}",
	        error, sizeof(error), mapped, sizeof(mapped));
	ck_assert_str_eq(error, "");
	mapped_get(mapped, "{status}", v, sizeof(v));
	ck_assert_str_eq(v, "PENDING");
	mapped_get(mapped, "{type}", v, sizeof(v));
	ck_assert_str_eq(v, "BUY");
	mapped_get(mapped, "{currency}", v, sizeof(v));
	ck_assert_str_eq(v, "USD");
	mapped_get(mapped, "{pricing,totalAmount}", v, sizeof(v));
	ck_assert_str_eq(v, "2010.00");
	mapped_get(mapped, "{pricing,subtotal}", v, sizeof(v));
	ck_assert_str_eq(v, "2000.00");
	mapped_get(mapped, "{pricing,taxes}", v, sizeof(v));
	ck_assert_str_eq(v, "10.50");
	mapped_get(mapped, "{placedAt}", v, sizeof(v));
	ck_assert_str_eq(v, "2024-05-01T08:30:00Z");
	mapped_get(mapped, "{items,0,productId}", v, sizeof(v));
	ck_assert_str_eq(v, product_ref);
	mapped_get(mapped, "{items,1,productId}", v, sizeof(v));   /* by SKU */
	ck_assert_str_eq(v, product_ref);
	mapped_get(mapped, "{items,0,quantity}", v, sizeof(v));
	ck_assert_str_eq(v, "2");
	ck_assert_int_eq(t_int_p(db, "SELECT count(*) FROM sluice.app_user WHERE id = ($1::jsonb ->> 'userId')::uuid"
	                         " AND email = 'Customer-3@Example.com'", mapped, NULL), 1);
	/* Bad records of the seed: no billing e-mail, an unknown product, a status nobody mapped. */
	map_one("order", "{\"id\": 101, \"status\": \"completed\", \"currency\": \"EUR\", \"total\": \"1\","
	        " \"billing\": {}, \"line_items\": [{\"product_id\": 7, \"quantity\": 1}]}",
	        error, sizeof(error), mapped, sizeof(mapped));
	ck_assert_str_eq(error, "userId: required field missing (from billing.email)");
	map_one("order", "{\"id\": 102, \"status\": \"completed\", \"currency\": \"EUR\", \"total\": \"1\","
	        " \"billing\": {\"email\": \"nobody@example.com\"}, \"line_items\": []}",
	        error, sizeof(error), mapped, sizeof(mapped));
	ck_assert_str_eq(error, "userId: no user with e-mail nobody@example.com");
	map_one("order", "{\"id\": 103, \"status\": \"completed\", \"currency\": \"EUR\", \"total\": \"1\","
	        " \"billing\": {\"email\": \"customer-1@example.com\"},"
	        " \"line_items\": [{\"product_id\": 7, \"quantity\": 1}, {\"product_id\": 999999999,"
	        "  \"variation_id\": 0, \"sku\": null, \"quantity\": 1}]}",
	        error, sizeof(error), mapped, sizeof(mapped));
	ck_assert_str_eq(error, "items[1].productId: no product with id 999999999");
	map_one("order", "{\"id\": 104, \"status\": \"trash\", \"currency\": \"EUR\", \"total\": \"1\","
	        " \"billing\": {\"email\": \"customer-1@example.com\"}, \"line_items\": [{\"product_id\": 7,"
	        " \"quantity\": 1}]}", error, sizeof(error), mapped, sizeof(mapped));
	ck_assert_str_eq(error, "status: no mapping for trash");
	map_one("order", "{\"id\": 105, \"status\": \"completed\", \"currency\": \"EURO\", \"total\": \"1\","
	        " \"billing\": {\"email\": \"customer-1@example.com\"}, \"line_items\": [{\"product_id\": 7,"
	        " \"quantity\": 1}]}", error, sizeof(error), mapped, sizeof(mapped));
	ck_assert_str_eq(error, "currency: not an ISO 4217 currency code: EURO");
	map_one("order", "{\"id\": 106, \"status\": \"completed\", \"currency\": \"EUR\", \"total\": \"1\","
	        " \"billing\": {\"email\": \"customer-1@example.com\"}, \"line_items\": []}",
	        error, sizeof(error), mapped, sizeof(mapped));
	ck_assert_str_eq(error, "items: required field missing (from line_items)");

	/* A connector's own rules replace the template's for their fields. */
	t_execf(db, "UPDATE sluice.external_sync_config SET mappings_json = '{\"order\": [{\"source_field\":"
	        " \"status\", \"target_field\": \"status\", \"required\": true, \"transform_json\": {\"type\": \"enum\","
	        " \"map\": {\"completed\": \"CONFIRMED\"}, \"default\": \"PENDING\"}}, {\"source_field\": \"\","
	        " \"target_field\": \"type\", \"transform_json\": {\"type\": \"constant\", \"value\": \"SELL\"}}]}'"
	        " WHERE connector_id = '%s'", conn);
	map_one("order", "{\"id\": 107, \"status\": \"completed\", \"currency\": \"EUR\", \"total\": \"1\","
	        " \"billing\": {\"email\": \"customer-1@example.com\"}, \"line_items\": [{\"product_id\": 7,"
	        " \"quantity\": 1}]}", error, sizeof(error), mapped, sizeof(mapped));
	ck_assert_str_eq(error, "");
	mapped_get(mapped, "{status}", v, sizeof(v));
	ck_assert_str_eq(v, "CONFIRMED");
	mapped_get(mapped, "{type}", v, sizeof(v));
	ck_assert_str_eq(v, "SELL");
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.external_mapping_rule WHERE connector_id = '%s'",
	                        conn), 2);
	/* Other connectors keep the template. */
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.external_mapping_rule WHERE connector_id IS NULL"
	                           " AND entity_type = 'order' AND target_field = 'status'"
	                           " AND transform_json -> 'map' ->> 'completed' = 'COMPLETED'"), 1);
	/* Bad rules are refused, naming mappingsJson. */
	{
		static const char *const bad[] = {
			"{\"orders\": []}",
			"{\"order\": [{\"target_field\": \"items[].x\", \"source_field\": \"total\"}]}",
			"{\"order\": [{\"target_field\": \"a b\", \"source_field\": \"total\"}]}",
			"{\"order\": [{\"source_field\": \"total\"}]}",
		};
		size_t i;

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			const char *params[2] = { bad[i], conn };
			PGresult *res = PQexecParams(db, "UPDATE sluice.external_sync_config SET mappings_json = $1::jsonb"
			                             " WHERE connector_id = $2::uuid", 2, NULL, params, NULL, NULL, 0);

			ck_assert_msg(PQresultStatus(res) == PGRES_FATAL_ERROR, "accepted %s", bad[i]);
			ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "22023");
			ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_COLUMN_NAME), "mappingsJson");
			PQclear(res);
		}
	}
}
END_TEST

/* external_reference: the seed's unique index, and a second put of the same id changes nothing. */
START_TEST(references_are_unique)
{
	PGresult *res;

	t_exec(db, "INSERT INTO sluice.external_reference (source, entity_type, external_id, internal_id)"
	           " VALUES ('woocommerce:x', 'product', '1', gen_random_uuid())");
	res = PQexec(db, "INSERT INTO sluice.external_reference (source, entity_type, external_id, internal_id)"
	                 " VALUES ('woocommerce:x', 'product', '1', gen_random_uuid())");
	ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "23505");
	PQclear(res);
	t_exec(db, "SELECT sluice.reference_put('woocommerce:x', 'product', '1',"
	           " (SELECT internal_id FROM sluice.external_reference))");
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.external_reference"), 1);
	/* Another shop's id 1 is another record. */
	t_exec(db, "SELECT sluice.reference_put('woocommerce:y', 'product', '1', gen_random_uuid())");
	ck_assert_int_eq(t_int(db, "SELECT count(DISTINCT internal_id) FROM sluice.external_reference"), 2);
}
END_TEST

/* ---- syncs against the fake shop --------------------------------------------------- */

/*
 * A full sync over HTTPS: products first (with their variations), then
 * orders, every record once; then a second run changes nothing, a delta
 * after changes in the shop updates exactly those, and a full re-read
 * creates nothing twice.
 */
START_TEST(full_then_delta_sync)
{
	static const char *const args[] = { "--products", "40", "--orders", "120", NULL };
	char run[37], run2[37], run3[37], run4[37];
	long long products, first_order_job, last_product_job;
	pid_t w;

	t_shop_start(&shop, args);
	woo_connector(shop.https_url, T_SHOP_KEY, T_SHOP_SECRET, 25);
	w = worker(NULL);
	request_sync(run);
	ck_assert(await_run(run, "success"));

	products = catalogue_size();
	ck_assert_int_gt(products, 40);   /* variations too */
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.external_product WHERE connector_id = '%s'"
	                        " AND status = 'mapped' AND internal_id IS NOT NULL", conn), products);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.app_product WHERE org_id = %lld", org), products);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.app_product WHERE parent_id IS NOT NULL"
	                        " AND org_id = %lld", org), products - 40);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.external_order WHERE connector_id = '%s'"
	                        " AND status = 'mapped'", conn), 120);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.app_order WHERE org_id = %lld", org), 120);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.app_order_item i JOIN sluice.app_order o"
	                        " ON o.id = i.order_id WHERE o.org_id = %lld", org),
	                 t_intf(db, "SELECT sum(jsonb_array_length(raw_payload_json -> 'line_items'))"
	                        " FROM sluice.external_order WHERE connector_id = '%s'", conn));
	ck_assert_int_eq(stat_of(run, "product", "fetched"), products);
	ck_assert_int_eq(stat_of(run, "product", "created"), products);
	ck_assert_int_eq(stat_of(run, "order", "fetched"), 120);
	ck_assert_int_eq(stat_of(run, "order", "created"), 120);
	ck_assert_int_eq(stat_of(run, "order", "pages"), 5);   /* 120 by 25 */
	ck_assert_int_eq(stat_of(run, "order", "failed"), 0);
	/* Products before orders: the last product call ran before the first order call. */
	last_product_job = t_int(db, "SELECT max(id) FROM sluice.job_archive WHERE kind = 'woocommerce.sync'"
	                             " AND result ->> 'path' LIKE 'products%'");
	first_order_job = t_int(db, "SELECT min(id) FROM sluice.job_archive WHERE kind = 'woocommerce.sync'"
	                            " AND result ->> 'path' = 'orders'");
	ck_assert_int_lt(last_product_job, first_order_job);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job_archive WHERE kind = 'woocommerce.sync'"
	                           " AND state <> 'done'"), 0);
	/* Its reads set the watermarks; the connector shows the sync; the next run is scheduled. */
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.external_sync_state WHERE connector_id = '%s'",
	                        conn), 2);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.connector WHERE id = '%s'"
	                        " AND last_sync_at IS NOT NULL AND status = 'connected'"
	                        " AND next_sync_at > now() + interval '23 hours'", conn), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.external_sync_run WHERE connector_id = '%s'"
	                        " AND status = 'queued' AND trigger = 'scheduled'"
	                        " AND due_at > now() + interval '23 hours'", conn), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.event WHERE type = 'sync_completed'"
	                        " AND data ->> 'run_id' = '%s' AND data ->> 'status' = 'success'", run), 1);

	/* The second run (the scheduled one, brought forward): a delta that finds nothing new. */
	request_sync(run2);
	ck_assert(await_run(run2, "success"));
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.external_sync_run WHERE id = '%s'"
	                        " AND trigger = 'manual'", run2), 1);
	ck_assert_int_eq(stat_of(run2, "product", "created") + stat_of(run2, "order", "created"), 0);
	ck_assert_int_eq(stat_of(run2, "order", "fetched"), 0);

	/* 5 % of orders and 3 products change in the shop: the delta reads and updates exactly those. */
	t_fake_post(&shop.control, "/__control/modify", "{\"orders\": {\"percent\": 5}, \"products\": {\"ids\": [11, 16, 20]}}");
	request_sync(run3);
	ck_assert(await_run(run3, "success"));
	ck_assert_int_eq(stat_of(run3, "order", "fetched"), 6);
	ck_assert_int_eq(stat_of(run3, "order", "updated"), 6);
	ck_assert_int_eq(stat_of(run3, "order", "created"), 0);
	ck_assert_int_ge(stat_of(run3, "product", "updated"), 3);
	ck_assert_int_eq(stat_of(run3, "product", "created"), 0);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.app_order WHERE org_id = %lld", org), 120);
	/* The fee the shop added is in the platform's totals. */
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.external_order x JOIN sluice.app_order o"
	                        " ON o.id = x.internal_id WHERE x.connector_id = '%s'"
	                        " AND o.total_amount = (x.raw_payload_json ->> 'total')::numeric", conn), 120);

	/* A full re-read (watermarks forgotten): everything unchanged, nothing twice. */
	t_execf(db, "DELETE FROM sluice.external_sync_state WHERE connector_id = '%s'", conn);
	request_sync(run4);
	ck_assert(await_run(run4, "success"));
	stop(w);
	ck_assert_int_eq(stat_of(run4, "order", "unchanged"), 120);
	ck_assert_int_eq(stat_of(run4, "product", "unchanged"), products);
	ck_assert_int_eq(stat_of(run4, "product", "created") + stat_of(run4, "product", "updated"), 0);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.app_product WHERE org_id = %lld", org), products);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM (SELECT source, entity_type, external_id"
	                           " FROM sluice.external_reference GROUP BY 1, 2, 3 HAVING count(*) > 1) d"), 0);
}
END_TEST

/* Bad records are recorded and skipped; the run goes on and ends partial, counting them. */
START_TEST(bad_records_make_a_partial_run)
{
	static const char *const args[] = { "--products", "20", "--orders", "30", NULL };
	char run[37], body[256];
	json_object *info;
	long long first_order, dependent;
	pid_t w;

	t_shop_start(&shop, args);
	info = t_fake_get(&shop.control, "/__control/info");
	first_order = json_object_get_int64(json_object_array_get_idx(
	                  json_object_object_get(info, "order_ids"), 0));
	json_object_put(info);
	snprintf(body, sizeof(body), "{\"missing_email\": [%lld], \"unknown_product\": [%lld],"
	         " \"bad_price\": [%lld, 16]}", first_order, first_order + 1, first_order + 2);
	t_fake_post(&shop.control, "/__control/bad_records", body);
	woo_connector(shop.https_url, T_SHOP_KEY, T_SHOP_SECRET, 10);
	w = worker(NULL);
	request_sync(run);
	ck_assert(await_run(run, "partial"));
	stop(w);
	/* The three bad orders, and the orders of product 16 (its price is bad, so it is not there). */
	dependent = t_intf(db, "SELECT count(*) FROM sluice.external_order WHERE connector_id = '%s'"
	                   " AND external_id::bigint > %lld AND EXISTS (SELECT 1 FROM"
	                   " jsonb_array_elements(raw_payload_json -> 'line_items') li"
	                   " WHERE (li ->> 'product_id')::bigint = 16)", conn, first_order + 2);
	ck_assert_int_eq(stat_of(run, "order", "failed"), 3 + dependent);
	ck_assert_int_eq(stat_of(run, "order", "created"), 27 - dependent);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.external_order WHERE connector_id = '%s'"
	                        " AND external_id::bigint > %lld AND status = 'failed'"
	                        " AND error LIKE 'items[%%].productId: no product with id %%'", conn, first_order + 2),
	                 dependent);
	ck_assert_int_ge(stat_of(run, "product", "failed"), 1);   /* product 16 (and its variations) */
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.external_order WHERE connector_id = '%s'"
	                        " AND external_id = '%lld' AND status = 'failed'"
	                        " AND error = 'userId: required field missing (from billing.email)'",
	                        conn, first_order), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.external_order WHERE connector_id = '%s'"
	                        " AND external_id = '%lld' AND status = 'failed'"
	                        " AND error = 'items[0].productId: no product with id 999999999'",
	                        conn, first_order + 1), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.external_order WHERE connector_id = '%s'"
	                        " AND external_id = '%lld' AND status = 'failed'"
	                        " AND error = 'pricing.totalAmount: not a decimal number: 12,3x'",
	                        conn, first_order + 2), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.external_product WHERE connector_id = '%s'"
	                        " AND external_id = '16' AND status = 'failed'"
	                        " AND error = 'price: not a decimal number: abc'", conn), 1);
	ck_assert_int_eq(t_intf(db, "SELECT jsonb_array_length(errors_json) FROM sluice.external_sync_run"
	                        " WHERE id = '%s'", run),
	                 stat_of(run, "order", "failed") + stat_of(run, "product", "failed"));
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.app_order WHERE org_id = %lld", org), 27 - dependent);
}
END_TEST

/* Refused keys: the run fails, the connector needs its admin; a shop without WooCommerce: error. */
START_TEST(permanent_failures)
{
	char run[37];
	pid_t w;

	t_shop_start(&shop, NULL);
	woo_connector(shop.https_url, T_SHOP_KEY, "cs_wrong_secret_0000000000000000000000000000000", 10);
	w = worker(NULL);
	request_sync(run);
	ck_assert(await_run(run, "failed"));
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.connector WHERE id = '%s'"
	                        " AND status = 'reauth_required' AND status_message LIKE '%%Consumer secret is invalid.%%'",
	                        conn), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.external_sync_run WHERE id = '%s'"
	                        " AND error LIKE '%%Consumer secret is invalid.%%' AND finished_at IS NOT NULL", run), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.event WHERE type = 'sync_failed'"
	                        " AND data ->> 'run_id' = '%s'", run), 1);
	/* Attempts: one; keys do not get better by retrying. */
	ck_assert_int_eq(t_int(db, "SELECT max(attempts) FROM sluice.job_archive WHERE kind = 'woocommerce.sync'"), 1);

	/* WooCommerce gone from the URL. */
	t_fake_post(&shop.control, "/__control/root_404", "true");
	t_execf(db, "SELECT sluice.set_connector_status('%s', 'pending')", conn);
	store_keys(T_SHOP_KEY, T_SHOP_SECRET);
	request_sync(run);
	ck_assert(await_run(run, "failed"));
	stop(w);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.connector WHERE id = '%s' AND status = 'error'"
	                        " AND status_message LIKE '%%WooCommerce REST API not found at this URL%%'", conn), 1);
}
END_TEST

/* 429 with Retry-After, a 5xx burst and a malformed page on the way: retried, the run succeeds. */
START_TEST(transient_failures_are_retried)
{
	static const char *const args[] = { "--products", "10", "--orders", "40", NULL };
	char run[37];
	pid_t w;

	t_shop_start(&shop, args);
	woo_connector(shop.https_url, T_SHOP_KEY, T_SHOP_SECRET, 10);
	t_fake_post(&shop.control, "/__control/fault", "{\"status\": 503, \"count\": 2, \"path\": \"/products\"}");
	t_fake_post(&shop.control, "/__control/malformed", "{\"count\": 1, \"after\": 3}");
	w = worker(NULL);
	request_sync(run);
	ck_assert(await_run(run, "success"));
	ck_assert_int_eq(stat_of(run, "order", "created"), 40);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.external_order WHERE connector_id = '%s'", conn), 40);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job_archive WHERE kind = 'woocommerce.sync'"
	                           " AND errors::text LIKE '%HTTP 503%'"), 1);   /* two attempts of one call */
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job_archive WHERE kind = 'woocommerce.sync'"
	                           " AND errors::text LIKE '%malformed page%'"), 1);
	/* A 429 with Retry-After: the bucket is blocked for every worker, no attempt spent. */
	t_fake_post(&shop.control, "/__control/fault", "{\"status\": 429, \"count\": 1, \"retry_after\": 1,"
	            " \"path\": \"/orders\"}");
	t_execf(db, "DELETE FROM sluice.external_sync_state WHERE connector_id = '%s'", conn);
	request_sync(run);
	ck_assert(await_run(run, "success"));
	stop(w);
	ck_assert_int_eq(stat_of(run, "order", "unchanged"), 40);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.event WHERE type = 'rate_limit_hit'"
	                        " AND connector_id = '%s'", conn), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.job_archive WHERE kind = 'woocommerce.sync'"
	                        " AND payload ->> 'run_id' = '%s' AND attempts > 1", run), 0);
}
END_TEST

/* Plain HTTP: OAuth 1.0a signatures, as WooCommerce requires there. */
START_TEST(oauth1_over_http)
{
	static const char *const args[] = { "--products", "8", "--orders", "12", NULL };
	char run[37];
	json_object *log, *list;
	size_t i, signed_calls = 0;
	pid_t w;

	t_shop_start(&shop, args);
	woo_connector(shop.http_url, T_SHOP_KEY, T_SHOP_SECRET, 100);
	w = worker(NULL);
	request_sync(run);
	ck_assert(await_run(run, "success"));
	stop(w);
	ck_assert_int_eq(stat_of(run, "order", "created"), 12);
	log = t_fake_get(&shop.control, "/__control/requests");
	list = json_object_object_get(log, "requests");
	for (i = 0; i < json_object_array_length(list); i++) {
		const char *path = json_object_get_string(json_object_array_get_idx(json_object_array_get_idx(list, i), 1));

		ck_assert(strstr(path, "consumer_secret") == NULL);
		signed_calls += strstr(path, "oauth_signature_method=HMAC-SHA256") != NULL;
	}
	ck_assert_uint_eq(signed_calls, json_object_array_length(list));
	json_object_put(log);
}
END_TEST

/*
 * A worker killed mid-run: another takes the run over from the last page
 * stored, and the rows are exactly right (every record once, stats exact).
 */
START_TEST(resumed_after_kill)
{
	static const char *const args[] = { "--products", "30", "--orders", "200", NULL };
	char run[37];
	long long products;
	pid_t w;

	t_shop_start(&shop, args);
	woo_connector(shop.https_url, T_SHOP_KEY, T_SHOP_SECRET, 10);
	t_exec(db, "UPDATE sluice.setting SET value = '2 seconds' WHERE name = 'lease'");
	t_fake_post(&shop.control, "/__control/slow", "{\"ms\": 150}");
	w = worker(NULL);
	request_sync(run);
	{
		char sql[256];

		snprintf(sql, sizeof(sql), "SELECT coalesce((stats_json #>> '{order,pages}')::int, 0) >= 5"
		         " FROM sluice.external_sync_run WHERE id = '%s'", run);
		ck_assert(t_wait_until_log(db, sql, 60000, log_path));
	}
	t_stop(w, SIGKILL);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.external_sync_run WHERE id = '%s'"
	                        " AND status = 'running'", run), 1);
	w = worker(NULL);
	ck_assert(await_run(run, "success"));
	stop(w);
	products = catalogue_size();
	ck_assert_int_eq(stat_of(run, "order", "fetched"), 200);
	ck_assert_int_eq(stat_of(run, "order", "created"), 200);
	ck_assert_int_eq(stat_of(run, "order", "pages"), 20);
	ck_assert_int_eq(stat_of(run, "product", "fetched"), products);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.external_order WHERE connector_id = '%s'", conn), 200);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.app_order WHERE org_id = %lld", org), 200);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.app_product WHERE org_id = %lld", org), products);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM (SELECT source, entity_type, external_id"
	                           " FROM sluice.external_reference GROUP BY 1, 2, 3 HAVING count(*) > 1) d"), 0);
}
END_TEST

/* One live run per connector; a manual request joins it; a queued scheduled one is brought forward. */
START_TEST(one_run_at_a_time)
{
	char a[37], b[37], other[37];
	PGresult *res;

	woo_connector("https://shop.example", "ck_x", "cs_x", 100);
	t_execf(db, "SELECT sluice.woo_request_sync('%s', 'scheduled', NULL, NULL, now() + interval '1 day')", conn);
	t_text(db, "SELECT id FROM sluice.external_sync_run", a, sizeof(a));
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job WHERE kind = 'woocommerce.sync'"
	                           " AND coalesce(gate_after, run_at) > now() + interval '23 hours'"), 1);
	request_sync(b);
	ck_assert_str_eq(a, b);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.external_sync_run"), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.external_sync_run WHERE trigger = 'manual'"
	                           " AND due_at <= now()"), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job WHERE kind = 'woocommerce.sync'"
	                           " AND coalesce(gate_after, run_at) <= now() AND priority = 2"), 1);
	res = PQexec(db, "INSERT INTO sluice.external_sync_run (org_id, connector_id, trigger, sync_products,"
	                 " sync_orders) SELECT org_id, connector_id, 'manual', true, true FROM sluice.external_sync_run");
	ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "23505");
	PQclear(res);
	/* A new interval moves the next scheduled run (after the manual one ends). */
	t_execf(db, "SELECT sluice.woo_finish_run('%s', NULL)", a);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.external_sync_run WHERE status = 'queued'"
	                           " AND trigger = 'scheduled' AND due_at > now() + interval '23 hours'"), 1);
	t_execf(db, "UPDATE sluice.external_sync_config SET sync_interval = '1 hour' WHERE connector_id = '%s'", conn);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.external_sync_run r JOIN sluice.job j ON j.id = r.job_id"
	                           " WHERE r.status = 'queued' AND r.trigger = 'scheduled'"
	                           " AND r.due_at BETWEEN now() + interval '59 minutes' AND now() + interval '61 minutes'"
	                           " AND coalesce(j.gate_after, j.run_at) = r.due_at"), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.connector c JOIN sluice.external_sync_run r"
	                        " ON r.connector_id = c.id AND r.status = 'queued' WHERE c.id = '%s'"
	                        " AND c.next_sync_at = r.due_at", conn), 1);
	/* Not a WooCommerce connector: no run. */
	t_connector(db, org, "trustfile", "{\"base_url\": \"http://127.0.0.1:9\"}", other);
	ck_assert_int_eq(t_intf(db, "SELECT (sluice.woo_request_sync('%s', 'manual') IS NULL)::int", other), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.external_sync_run WHERE connector_id = '%s'",
	                        other), 0);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("woocommerce");
	TCase *tc = tcase_create("sql");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, mapping_transforms_and_required_fields);
	tcase_add_test(tc, references_are_unique);
	tcase_add_test(tc, one_run_at_a_time);
	suite_add_tcase(s, tc);
	tc = tcase_create("sync");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, full_then_delta_sync);
	tcase_add_test(tc, bad_records_make_a_partial_run);
	tcase_add_test(tc, permanent_failures);
	tcase_add_test(tc, transient_failures_are_retried);
	tcase_add_test(tc, oauth1_over_http);
	tcase_add_test(tc, resumed_after_kill);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	t_use_master_key();
	return t_run(make_suite());
}
