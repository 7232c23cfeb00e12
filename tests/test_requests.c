/* test_requests.c — seed 001's fetch requests: batching, priorities, stale answers, waits, rows, through SQL, the CGI API and real workers. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/api_client.h"
#include "tests/harness.h"

static char url[256], log_path[128];
static PGconn *db;
static long long org, org_b;
static char key_w[64], key_r[64], key_b[64];
static struct t_api_resp R;
static struct t_fake fake;
static char conn[37];

static void
setup(void)
{
	t_db_create(url, sizeof(url));
	db = t_connect(url);
	org = t_org(db, "acme");
	org_b = t_org(db, "other");
	snprintf(log_path, sizeof(log_path), "/tmp/sluice-requests-test-%ld.log", (long)getpid());
	/* Quick retries, so that the failure tests take seconds. */
	t_exec(db, "UPDATE sluice.setting SET value = '200 milliseconds' WHERE name = 'backoff_base'");
}

static void
teardown(void)
{
	t_api_resp_clear(&R);
	t_fake_stop(&fake);
	PQfinish(db);
	unlink(log_path);
}

/* Starts the fake report host and a connected connector of org on it. */
static void
with_fake(void)
{
	t_fake_start(&fake, "fake_api/server.js", "60");
	t_fake_connector(db, url, org, &fake, conn);
}

static void
keys(void)
{
	(void)t_key(url, org, "write", key_w);
	(void)t_key(url, org, "read", key_r);
	(void)t_key(url, org_b, "write", key_b);
}

static void
call(const char *method, const char *path, const char *query, const char *key, const char *body)
{
	t_api_call(&(struct t_api_req){ .method = method, .path = path, .query = query, .key = key,
	                                .body = body, .db_url = url }, &R);
}

/* POSTs a fetch request for conn; the answer in R.  fields and priority: JSON text or NULL. */
static void
post_fetch(const char *key, const char *report, const char *start, const char *end,
           const char *fields, const char *priority)
{
	char body[1024];

	snprintf(body, sizeof(body), "{\"connector_id\": \"%s\", \"report_type\": \"%s\","
	         " \"date_range\": {\"start\": \"%s\", \"end\": \"%s\"}%s%s%s%s}",
	         conn, report, start, end, fields ? ", \"fields\": " : "", fields ? fields : "",
	         priority ? ", \"priority\": " : "", priority ? priority : "");
	call("POST", "/api/v1/connectors/fetch", NULL, key, body);
}

/* post_fetch() that must succeed; its request id into id[37]. */
static void
fetch_ok(const char *report, const char *start, const char *end, const char *fields,
         const char *priority, char *id)
{
	post_fetch(key_w, report, start, end, fields, priority);
	ck_assert_msg(R.status == 200, "POST /fetch: %d %s", R.status, R.body);
	snprintf(id, 37, "%s", t_api_str(&R, "request_id"));
}

/* GET /api/v1/connectors/requests/<id>, which must answer 200. */
static void
get_request(const char *id)
{
	char path[128];

	snprintf(path, sizeof(path), "/api/v1/connectors/requests/%s", id);
	call("GET", path, NULL, key_r, NULL);
	ck_assert_msg(R.status == 200, "GET %s: %d %s", path, R.status, R.body);
}

/* Submits through SQL; the request's id into id[37]. */
static void
submit(const char *report, const char *start, const char *end, const char *fields,
       const char *priority, char *id)
{
	char sql[512];

	snprintf(sql, sizeof(sql), "SELECT sluice.submit_fetch(%lld, '%s', '%s', '%s', '%s', '%s', %s%s%s)",
	         org, conn, report, start, end, fields ? fields : "{}", priority ? "'" : "",
	         priority ? priority : "NULL", priority ? "'" : "");
	t_text(db, sql, id, 37);
	ck_assert_int_eq(strlen(id), 36);
}

static pid_t
worker(const char *const *env)
{
	return t_worker_start(url, env, log_path);
}

static void
stop(pid_t pid)
{
	t_stop(pid, SIGTERM);
	t_wait_exit(pid, 20000);
}

/* Waits until every request of the org has ended (completed or failed). */
static void
await_requests(long timeout_ms)
{
	ck_assert_msg(t_wait_until_log(db, "SELECT count(*) > 0 AND bool_and(status IN ('completed', 'failed'))"
	                               " FROM sluice.connector_request", timeout_ms, log_path),
	              "the requests did not end");
}

/* The fake's report calls, in order of arrival: [ms, status, path] each. */
static json_object *
report_calls(void)
{
	json_object *doc = t_fake_get(&fake, "/__control/arrivals"), *all, *out = json_object_new_array();
	size_t i;

	all = json_object_object_get(doc, "arrivals");
	for (i = 0; i < json_object_array_length(all); i++) {
		json_object *a = json_object_array_get_idx(all, i);
		const char *path = json_object_get_string(json_object_array_get_idx(a, 2));

		if (path && !strncmp(path, "/reports/", 9))
			json_object_array_add(out, json_object_get(a));
	}
	json_object_put(doc);
	return out;
}

static const char *
call_path(json_object *calls, size_t i)
{
	return json_object_get_string(json_object_array_get_idx(json_object_array_get_idx(calls, i), 2));
}

/* ---- SQL ------------------------------------------------------------------------- */

/* Overlapping requests of one connector and report type share a batch; others do not. */
START_TEST(batching_rules)
{
	char r1[37], r2[37], r3[37], r4[37], r5[37], r6[37], r7[37];

	t_connector(db, org, "trustfile", "{\"base_url\": \"http://127.0.0.1:9\"}", conn);
	submit("perf", "2024-12-01", "2024-12-10", "{clicks}", "backfill", r1);
	submit("perf", "2024-12-05", "2024-12-15", "{impressions}", "premium", r2);
	submit("perf", "2024-12-15", "2024-12-20", NULL, NULL, r3);      /* touches r2's last day */
	submit("perf", "2024-12-21", "2024-12-25", NULL, NULL, r4);      /* overlaps none */
	submit("spend", "2024-12-01", "2024-12-10", NULL, NULL, r5);     /* another report type */
	ck_assert_int_eq(t_int_p(db, "SELECT count(DISTINCT batch_id) FROM sluice.connector_request"
	                         " WHERE id IN ($1::uuid, $2::uuid)", r1, r2), 1);
	ck_assert_int_eq(t_int_p(db, "SELECT count(DISTINCT batch_id) FROM sluice.connector_request"
	                         " WHERE id IN ($1::uuid, $2::uuid)", r1, r3), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.fetch_batch"), 3);
	/* The batch covers the union, every field (r3 asked for all), at the best priority. */
	ck_assert_int_eq(t_int_p(db, "SELECT count(*) FROM sluice.fetch_batch b JOIN sluice.job j"
	                         " ON j.id = b.job_id WHERE b.id = (SELECT batch_id FROM"
	                         " sluice.connector_request WHERE id = $1::uuid)"
	                         " AND b.range_start = '2024-12-01' AND b.range_end = '2024-12-20'"
	                         " AND b.fields = '{}' AND j.priority = 1 AND j.kind = 'report.fetch'"
	                         " AND j.payload ->> 'page' = '1'", r1, NULL), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job"), 3);
	/* Its requests keep their own classes. */
	ck_assert_int_eq(t_int_p(db, "SELECT priority FROM sluice.connector_request WHERE id = $1::uuid",
	                         r1, NULL), 5);
	/* The window: a batch made longer ago than fetch_batch_window takes no one. */
	t_exec(db, "UPDATE sluice.fetch_batch SET created_at = now() - interval '5 minutes 1 second'"
	           " WHERE report_type = 'spend'");
	submit("spend", "2024-12-02", "2024-12-03", NULL, NULL, r6);
	ck_assert_int_eq(t_int_p(db, "SELECT count(DISTINCT batch_id) FROM sluice.connector_request"
	                         " WHERE id IN ($1::uuid, $2::uuid)", r5, r6), 2);
	/* Started: the first page's job has begun, nobody joins any more. */
	t_execf(db, "SELECT sluice.fetch_page_start(b.id, 1, b.job_id, %lld) FROM sluice.fetch_batch b"
	        " JOIN sluice.connector_request r ON r.batch_id = b.id WHERE r.id = '%s'", org, r4);
	submit("perf", "2024-12-22", "2024-12-23", NULL, NULL, r7);
	ck_assert_int_eq(t_int_p(db, "SELECT count(DISTINCT batch_id) FROM sluice.connector_request"
	                         " WHERE id IN ($1::uuid, $2::uuid)", r4, r7), 2);
	ck_assert_int_eq(t_int_p(db, "SELECT count(*) FROM sluice.connector_request WHERE id = $1::uuid"
	                         " AND status = 'running' AND started_at IS NOT NULL", r4, NULL), 1);
	/* Another org cannot submit for this connector. */
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM (SELECT sluice.submit_fetch(%lld, '%s', 'perf',"
	                        " '2024-12-01', '2024-12-02', '{}') AS id) x WHERE id IS NULL", org_b, conn), 1);
}
END_TEST

/* Names and numbers of seed 001's classes, and the values submit_fetch refuses, by field. */
START_TEST(classes_and_bad_values)
{
	static const struct { const char *sql, *column; } bad[] = {
		{ "'x/y', '2024-01-01', '2024-01-02', '{}', NULL", "report_type" },
		{ "'perf', '2024-1-01', '2024-01-02', '{}', NULL", "date_range.start" },
		{ "'perf', '2024-01-01', '2024-02-30', '{}', NULL", "date_range.end" },
		{ "'perf', '2024-01-02', '2024-01-01', '{}', NULL", "date_range" },
		{ "'perf', '2000-01-01', '2024-01-01', '{}', NULL", "date_range" },
		{ "'perf', '2024-01-01', '2024-01-02', '{\"a b\"}', NULL", "fields" },
		{ "'perf', '2024-01-01', '2024-01-02', '{}', 'urgent'", "priority" },
	};
	char sql[512];
	size_t i;

	ck_assert_int_eq(t_int(db, "SELECT sluice.priority_class('premium') * 10000"
	                           " + sluice.priority_class('manual') * 1000"
	                           " + sluice.priority_class('scheduled') * 100"
	                           " + sluice.priority_class('retry') * 10"
	                           " + sluice.priority_class('backfill')"), 12345);
	ck_assert_int_eq(t_int(db, "SELECT sluice.priority_class('normal') + sluice.priority_class(NULL)"
	                           " + sluice.priority_class('PREMIUM') * 10 + sluice.priority_class('5') * 100"), 514);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.kind_policy WHERE kind = 'report.fetch'"
	                           " AND retry_priority = 4"), 1);
	t_connector(db, org, "trustfile", "{\"base_url\": \"http://127.0.0.1:9\"}", conn);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		PGresult *res;

		snprintf(sql, sizeof(sql), "SELECT sluice.submit_fetch(%lld, '%s', %s)", org, conn, bad[i].sql);
		res = PQexec(db, sql);
		ck_assert_msg(PQresultStatus(res) == PGRES_FATAL_ERROR, "accepted: %s", bad[i].sql);
		ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "22023");
		ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_COLUMN_NAME), bad[i].column);
		PQclear(res);
	}
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.connector_request"), 0);
	/* Rows' days: real calendar days only. */
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM unnest(ARRAY['2024-02-29', '2023-02-29',"
	                           " '2024-04-31', '2024-13-01', 'x', NULL, '2024-12-31T10:00:00Z']) d"
	                           " WHERE sluice.day_or_null(d) IS NOT NULL"), 2);
	/* CSV fields (RFC 4180). */
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM (VALUES (sluice.csv_field('a,b'), '\"a,b\"'),"
	                           " (sluice.csv_field('say \"hi\"'), '\"say \"\"hi\"\"\"'),"
	                           " (sluice.csv_field(E'two\\nlines'), E'\"two\\nlines\"'),"
	                           " (sluice.csv_field('plain'), 'plain'), (sluice.csv_field(NULL), ''))"
	                           " v(got, want) WHERE got = want"), 5);
}
END_TEST

/* ---- the API and a worker ------------------------------------------------------------ */

/*
 * Seed 001's shapes field by field, three overlapping requests fetched by
 * one outside call (three pages of it), each with its own rows, paged as
 * JSON and CSV; a data_fetched event each; tenant isolation; bad input.
 */
START_TEST(api_batch_end_to_end)
{
	static const char *const fetch_keys[] = { "request_id", "status", "queue_position",
	                                          "estimated_wait_seconds", "batched_with",
	                                          "rate_limit_status" };
	static const char *const get_keys[] = { "request_id", "status", "progress", "result",
	                                        "execution_time_ms", "cost" };
	char r1[37], r2[37], r3[37], path[160], query[64], next[32];
	json_object *calls, *v;
	long long total_rows = 0;
	size_t i;
	pid_t w;

	with_fake();
	keys();
	/* A policy, so that rate_limit_status has something to say. */
	t_execf(db, "WITH p AS (INSERT INTO sluice.rate_policy (provider, connector_id, per)"
	        " VALUES ('trustfile', '%s', 'connector') RETURNING id)"
	        " INSERT INTO sluice.rate_window SELECT id, 60, 100 FROM p", conn);

	fetch_ok("campaign_performance", "2024-01-01", "2024-06-30", "[\"impressions\", \"clicks\"]",
	         "\"normal\"", r1);
	for (i = 0; i < sizeof(fetch_keys) / sizeof(fetch_keys[0]); i++)
		ck_assert_msg(json_object_object_get_ex(R.json, fetch_keys[i], NULL), "no %s", fetch_keys[i]);
	ck_assert_str_eq(t_api_str(&R, "status"), "queued");
	ck_assert_int_eq(t_api_int(&R, "queue_position"), 1);
	ck_assert_int_eq(t_api_int(&R, "estimated_wait_seconds"), 0);   /* the bucket has room */
	ck_assert_int_eq(json_object_array_length(t_json_get(R.json, "batched_with")), 0);
	ck_assert_int_eq(t_api_int(&R, "rate_limit_status.current"), 0);
	ck_assert_int_eq(t_api_int(&R, "rate_limit_status.limit"), 100);
	ck_assert_int_eq(strlen(t_api_str(&R, "rate_limit_status.reset_at")), 20);
	ck_assert_int_eq(t_api_int(&R, "priority"), 2);

	fetch_ok("campaign_performance", "2024-06-01", "2024-12-31", "[\"clicks\"]", "\"premium\"", r2);
	ck_assert_int_eq(json_object_array_length(t_json_get(R.json, "batched_with")), 1);
	ck_assert_str_eq(json_object_get_string(t_json_get(R.json, "batched_with.0")), r1);
	ck_assert_int_eq(t_api_int(&R, "queue_position"), 1);
	fetch_ok("campaign_performance", "2024-03-01", "2024-03-31", NULL, "3", r3);
	ck_assert_int_eq(json_object_array_length(t_json_get(R.json, "batched_with")), 2);

	get_request(r1);
	for (i = 0; i < sizeof(get_keys) / sizeof(get_keys[0]); i++)
		ck_assert_msg(json_object_object_get_ex(R.json, get_keys[i], NULL), "no %s", get_keys[i]);
	ck_assert_int_eq(t_api_int(&R, "progress"), 0);
	ck_assert(json_object_is_type(t_json_get(R.json, "result"), json_type_null));
	ck_assert_int_eq(json_object_array_length(t_json_get(R.json, "batched_with")), 2);

	/* Bad input, each naming its field; other orgs see nothing. */
	post_fetch(key_w, "campaign_performance", "2024-01-01", "2023-01-01", NULL, NULL);
	t_api_assert_error(&R, 422, "validation_failed", "date_range");
	post_fetch(key_w, "campaign_performance", "2024-01-01", "2024-01-02", "\"clicks\"", NULL);
	t_api_assert_error(&R, 422, "validation_failed", "fields");
	post_fetch(key_w, "campaign_performance", "2024-01-01", "2024-01-02", NULL, "\"urgent\"");
	t_api_assert_error(&R, 422, "validation_failed", "priority");
	post_fetch(key_w, "campaign_performance", "01/01/2024", "2024-01-02", NULL, NULL);
	t_api_assert_error(&R, 422, "validation_failed", "date_range.start");
	post_fetch(key_w, "bad type!", "2024-01-01", "2024-01-02", NULL, NULL);
	t_api_assert_error(&R, 422, "validation_failed", "report_type");
	call("POST", "/api/v1/connectors/fetch", NULL, key_w, "{\"connector_id\": \"x\"}");
	t_api_assert_error(&R, 422, "validation_failed", "connector_id");
	call("POST", "/api/v1/connectors/fetch", NULL, key_w, "{\"report\": 1}");
	t_api_assert_error(&R, 422, "validation_failed", "report");
	post_fetch(key_r, "campaign_performance", "2024-01-01", "2024-01-02", NULL, NULL);
	t_api_assert_error(&R, 403, "forbidden", NULL);
	post_fetch(key_b, "campaign_performance", "2024-01-01", "2024-01-02", NULL, NULL);
	t_api_assert_error(&R, 404, "not_found", "connector_id");
	snprintf(path, sizeof(path), "/api/v1/connectors/requests/%s", r1);
	call("GET", path, NULL, key_b, NULL);
	t_api_assert_error(&R, 404, "not_found", NULL);
	call("GET", "/api/v1/connectors/requests/nope", NULL, key_r, NULL);
	t_api_assert_error(&R, 404, "not_found", NULL);
	snprintf(path, sizeof(path), "/api/v1/connectors/requests/%s/rows", r1);
	call("GET", path, NULL, key_r, NULL);
	t_api_assert_error(&R, 409, "conflict", NULL);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.connector_request"), 3);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.audit WHERE action = 'fetch.submit'"
	                        " AND outcome = 'ok' AND org_id = %lld", org), 3);

	w = worker(NULL);
	await_requests(60000);
	stop(w);

	/* One outside call per page of the union, and nothing else. */
	calls = report_calls();
	ck_assert_int_eq(json_object_array_length(calls), 3);   /* 366 days x 3 rows = 1098: 3 pages of 500 */
	for (i = 0; i < 3; i++) {
		char want[256];

		snprintf(want, sizeof(want), "/reports/campaign_performance?start=2024-01-01&end=2024-12-31"
		         "&page=%zu&per_page=500", i + 1);
		ck_assert_msg(!strcmp(call_path(calls, i), want), "call %zu: %s", i, call_path(calls, i));
	}
	json_object_put(calls);

	get_request(r1);
	ck_assert_str_eq(t_api_str(&R, "status"), "completed");
	ck_assert_int_eq(t_api_int(&R, "progress"), 100);
	ck_assert_int_eq(t_api_int(&R, "result.records_fetched"), 182 * 3);   /* Jan 1 to Jun 30, 2024 */
	ck_assert_int_gt(t_api_int(&R, "result.size_bytes"), 182 * 3 * 40);
	ck_assert(strstr(t_api_str(&R, "result.storage_location"), "postgresql:sluice.fetched_row?batch_id="));
	ck_assert_int_ge(t_api_int(&R, "execution_time_ms"), 0);
	ck_assert(json_object_get_double(t_json_get(R.json, "cost")) > 0.99);   /* 3 calls / 3 requests */
	ck_assert(json_object_get_double(t_json_get(R.json, "cost")) < 1.01);
	ck_assert(json_object_is_type(t_json_get(R.json, "queue_position"), json_type_null));
	get_request(r2);
	ck_assert_int_eq(t_api_int(&R, "result.records_fetched"), 214 * 3);   /* Jun 1 to Dec 31 */
	get_request(r3);
	ck_assert_int_eq(t_api_int(&R, "result.records_fetched"), 31 * 3);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.event WHERE type = 'data_fetched'"
	                        " AND connector_id = '%s' AND data ->> 'request_id' IN ('%s', '%s', '%s')"
	                        " AND (data ->> 'records_fetched')::int > 0", conn, r1, r2, r3), 3);

	/* r2's rows as JSON, 250 a page: its range and its fields only, each row once. */
	snprintf(path, sizeof(path), "/api/v1/connectors/requests/%s/rows", r2);
	snprintf(next, sizeof(next), "0");
	for (i = 0; i < 10 && next[0]; i++) {
		size_t k, n;

		snprintf(query, sizeof(query), "limit=250&after=%s", next);
		call("GET", path, query, key_r, NULL);
		ck_assert_int_eq(R.status, 200);
		v = t_json_get(R.json, "rows");
		n = json_object_array_length(v);
		total_rows += (long long)n;
		for (k = 0; k < n; k++) {
			json_object *row = json_object_array_get_idx(v, k);
			const char *day = json_object_get_string(json_object_object_get(row, "date"));

			ck_assert_msg(strcmp(day, "2024-06-01") >= 0 && strcmp(day, "2024-12-31") <= 0, "%s", day);
			ck_assert_int_eq(json_object_object_length(row), 2);   /* date, clicks */
			ck_assert(json_object_object_get_ex(row, "clicks", NULL));
		}
		v = t_json_get(R.json, "next_after");
		next[0] = '\0';
		if (!json_object_is_type(v, json_type_null)) {
			snprintf(next, sizeof(next), "%s", json_object_get_string(v));
			ck_assert(strstr(t_api_hdr(&R, "Link"), "rel=\"next\""));
		} else {
			ck_assert_str_eq(t_api_hdr(&R, "Link"), "");
		}
	}
	ck_assert_int_eq(total_rows, 214 * 3);
	ck_assert_int_eq(i, 3);

	/* r3's rows as CSV: every column (it asked for all), one line per row. */
	snprintf(path, sizeof(path), "/api/v1/connectors/requests/%s/rows", r3);
	call("GET", path, "format=csv&limit=1000", key_r, NULL);
	ck_assert_int_eq(R.status, 200);
	ck_assert_str_eq(t_api_hdr(&R, "Content-Type"), "text/csv; charset=utf-8");
	ck_assert_msg(!strncmp(R.body, "date,campaign_id,clicks,conversions,impressions,spend\r\n2024-03-01,c1,", 69),
	              "CSV: %.120s", R.body);
	{
		const char *p = R.body;
		int lines = 0;

		while ((p = strstr(p, "\r\n")) != NULL) {
			lines++;
			p += 2;
		}
		ck_assert_int_eq(lines, 1 + 31 * 3);
	}
	call("GET", path, "format=xml", key_r, NULL);
	t_api_assert_error(&R, 422, "validation_failed", "format");
	snprintf(path, sizeof(path), "/api/v1/connectors/requests/%s/rows", r3);
	call("GET", path, NULL, key_b, NULL);
	t_api_assert_error(&R, 404, "not_found", NULL);
}
END_TEST

/* A request arriving once the first has started its call gets its own batch and call. */
START_TEST(late_request_not_merged)
{
	char r1[37], r2[37];
	json_object *calls;
	pid_t w;

	with_fake();
	keys();
	t_fake_post(&fake, "/__control/delay", "{\"ms\": 1500}");
	w = worker(NULL);
	fetch_ok("perf", "2024-01-01", "2024-01-31", NULL, NULL, r1);
	ck_assert(t_wait_until_log(db, "SELECT status = 'running' FROM sluice.connector_request", 20000,
	                           log_path));
	fetch_ok("perf", "2024-01-15", "2024-01-20", NULL, NULL, r2);
	ck_assert_int_eq(json_object_array_length(t_json_get(R.json, "batched_with")), 0);
	await_requests(30000);
	stop(w);
	calls = report_calls();
	ck_assert_int_eq(json_object_array_length(calls), 2);
	ck_assert(strstr(call_path(calls, 0), "start=2024-01-01&end=2024-01-31"));
	ck_assert(strstr(call_path(calls, 1), "start=2024-01-15&end=2024-01-20"));
	json_object_put(calls);
	get_request(r2);
	ck_assert_int_eq(t_api_int(&R, "result.records_fetched"), 6 * 3);
	ck_assert_int_eq(json_object_array_length(t_json_get(R.json, "batched_with")), 0);
}
END_TEST

/* Five classes queued together run premium, manual, scheduled, retry, backfill. */
START_TEST(priority_order)
{
	static const char *const order[] = { "premium", "manual", "scheduled", "retry", "backfill" };
	char id[37], prio[32];
	json_object *calls;
	pid_t w;
	int i;

	with_fake();
	for (i = 4; i >= 0; i--) {   /* the lowest class first */
		snprintf(prio, sizeof(prio), "%s", order[i]);
		submit(order[i], "2024-01-01", "2024-01-01", NULL, prio, id);
	}
	w = worker(NULL);
	await_requests(30000);
	stop(w);
	calls = report_calls();
	ck_assert_int_eq(json_object_array_length(calls), 5);
	for (i = 0; i < 5; i++) {
		char want[64];

		snprintf(want, sizeof(want), "/reports/%s?", order[i]);
		ck_assert_msg(!strncmp(call_path(calls, (size_t)i), want, strlen(want)), "call %d: %s", i,
		              call_path(calls, (size_t)i));
	}
	json_object_put(calls);
}
END_TEST

/*
 * Transient failures on the way: a 500 (its retry drops to class 4), a
 * malformed page, a call that never answers (timeout), a 429 with
 * Retry-After (blocks the bucket, spends no attempt).  The request still
 * completes, its rows stored once.
 */
START_TEST(transient_failures_retry)
{
	static const char *const env[] = { "SLUICE_HTTP_TIMEOUT=1s", NULL };
	char r1[37];
	long long retried;
	pid_t w;

	with_fake();
	t_execf(db, "WITH p AS (INSERT INTO sluice.rate_policy (provider, connector_id, per)"
	        " VALUES ('trustfile', '%s', 'connector') RETURNING id)"
	        " INSERT INTO sluice.rate_window SELECT id, 60, 100 FROM p", conn);
	t_fake_post(&fake, "/__control/fault", "{\"status\": 500, \"count\": 1}");
	submit("perf", "2024-01-01", "2024-01-10", NULL, "premium", r1);
	w = worker(env);
	/* The failed attempt waits for its retry at class 4. */
	ck_assert(t_wait_until_log(db, "SELECT count(*) = 1 FROM sluice.job WHERE kind = 'report.fetch'"
	                           " AND state = 'retrying' AND jsonb_array_length(errors) = 1",
	                           20000, log_path));
	retried = t_int(db, "SELECT priority FROM sluice.job WHERE kind = 'report.fetch'");
	ck_assert_int_eq(retried, 4);
	await_requests(30000);
	/* Then a malformed page, a hang and a 429, in one more request. */
	t_fake_post(&fake, "/__control/report", "{\"malformed\": 1}");
	t_fake_post(&fake, "/__control/hang", "{\"count\": 1}");
	submit("perf", "2024-02-01", "2024-02-10", NULL, "manual", r1);
	await_requests(30000);
	t_fake_post(&fake, "/__control/fault", "{\"status\": 429, \"count\": 1, \"retry_after\": 2}");
	submit("perf", "2024-03-01", "2024-03-10", NULL, "manual", r1);
	await_requests(30000);
	stop(w);

	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.connector_request WHERE status = 'completed'"
	                           " AND (result ->> 'records_fetched')::int = 30"), 3);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.fetched_row"), 90);
	/* Attempts: 2 (500), 3 (malformed, timeout), 1 (the 429 gave its attempt back). */
	{
		char attempts[32];

		t_text(db, "SELECT string_agg(attempts::text, ',' ORDER BY id) FROM sluice.job_archive"
		           " WHERE kind = 'report.fetch' AND state = 'done'", attempts, sizeof(attempts));
		ck_assert_str_eq(attempts, "2,3,1");
	}
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job_archive WHERE kind = 'report.fetch'"
	                           " AND errors::text LIKE '%timed out%'"), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job_archive WHERE kind = 'report.fetch'"
	                           " AND errors::text LIKE '%not a JSON array%'"), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.event WHERE type = 'rate_limit_hit'"
	                        " AND connector_id = '%s'", conn), 1);
}
END_TEST

/* A page job that runs out of attempts fails its requests, with fetch_failed each. */
START_TEST(dead_fetch_fails_requests)
{
	char r1[37], r2[37];
	pid_t w;

	with_fake();
	keys();
	t_exec(db, "UPDATE sluice.kind_policy SET max_attempts = 2 WHERE kind = 'report.fetch'");
	t_fake_post(&fake, "/__control/fault", "{\"status\": 503, \"count\": 100}");
	submit("perf", "2024-01-01", "2024-01-10", NULL, NULL, r1);
	submit("perf", "2024-01-05", "2024-01-12", NULL, NULL, r2);
	w = worker(NULL);
	await_requests(30000);
	stop(w);
	get_request(r2);
	ck_assert_str_eq(t_api_str(&R, "status"), "failed");
	ck_assert(strstr(t_api_str(&R, "error"), "report fetch: HTTP 503"));
	ck_assert(json_object_is_type(t_json_get(R.json, "result"), json_type_null));
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.event WHERE type = 'fetch_failed'"
	                        " AND data ->> 'request_id' IN ('%s', '%s')"
	                        " AND data ->> 'error' LIKE 'report fetch: HTTP 503%%'", r1, r2), 2);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.fetch_batch WHERE state = 'failed'"), 1);
}
END_TEST

/*
 * The circuit's whole cycle as a client sees it: failures open it; a
 * request the last completed batch covers is answered at once from it,
 * stale ("Data may be stale"), with no call; one it does not cover waits
 * until the circuit's trial; the trial succeeds, the circuit closes, the
 * waiting request completes with fresh data.
 */
START_TEST(circuit_cycle_with_stale_answers)
{
	static const char *const env[] = { "SLUICE_WORKER_REAP_INTERVAL=500ms", NULL };
	char fresh[37], failing[37], stale[37], waiting[37];
	long long calls_before;
	json_object *calls;
	pid_t w;

	with_fake();
	keys();
	t_exec(db, "UPDATE sluice.circuit_policy SET failure_threshold = 2, success_threshold = 1,"
	           " recovery_timeout = '3 seconds' WHERE provider = 'trustfile'");
	w = worker(env);
	fetch_ok("perf", "2024-01-01", "2024-01-31", "[\"clicks\"]", NULL, fresh);
	await_requests(20000);

	t_fake_post(&fake, "/__control/fault", "{\"status\": 500, \"count\": 2}");
	fetch_ok("perf", "2024-05-01", "2024-05-31", NULL, NULL, failing);
	ck_assert(t_wait_until_log(db, "SELECT count(*) = 1 FROM sluice.circuit WHERE state = 'open'",
	                           20000, log_path));
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.event WHERE type = 'circuit_opened'"
	                        " AND connector_id = '%s'", conn), 1);
	calls = report_calls();
	calls_before = (long long)json_object_array_length(calls);
	json_object_put(calls);

	/* Covered by the completed January batch: answered now, from it, stale. */
	fetch_ok("perf", "2024-01-10", "2024-01-20", "[\"clicks\"]", "\"premium\"", stale);
	ck_assert_str_eq(t_api_str(&R, "status"), "completed");
	ck_assert(json_object_get_boolean(t_json_get(R.json, "stale")));
	ck_assert_str_eq(t_api_str(&R, "message"), "Data may be stale");
	ck_assert_int_eq(t_api_int(&R, "result.records_fetched"), 11 * 3);
	ck_assert_int_eq(t_api_int(&R, "progress"), 100);
	ck_assert_int_eq(json_object_array_length(t_json_get(R.json, "batched_with")), 0);
	/* Not covered (other fields): it waits, at least until the next trial. */
	fetch_ok("perf", "2024-01-10", "2024-01-20", "[\"spend\"]", NULL, waiting);
	ck_assert_str_eq(t_api_str(&R, "status"), "queued");
	ck_assert_int_ge(t_api_int(&R, "estimated_wait_seconds"), 1);
	ck_assert_int_le(t_api_int(&R, "estimated_wait_seconds"), 3);
	{
		char path[128];

		snprintf(path, sizeof(path), "/api/v1/connectors/requests/%s/rows", stale);
		call("GET", path, "limit=1000", key_r, NULL);
		ck_assert_int_eq(R.status, 200);
		ck_assert_int_eq(json_object_array_length(t_json_get(R.json, "rows")), 11 * 3);
		ck_assert(json_object_get_boolean(t_json_get(R.json, "stale")));
	}
	/* No call while open. */
	calls = report_calls();
	ck_assert_int_eq((long long)json_object_array_length(calls), calls_before);
	json_object_put(calls);

	/* The trial (after 3 s) succeeds: closed, and the rest run. */
	await_requests(30000);
	stop(w);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.circuit WHERE state = 'closed'"), 1);
	get_request(failing);
	ck_assert_str_eq(t_api_str(&R, "status"), "completed");
	ck_assert(!json_object_get_boolean(t_json_get(R.json, "stale")));
	ck_assert_int_eq(t_api_int(&R, "result.records_fetched"), 31 * 3);
	get_request(waiting);
	ck_assert_str_eq(t_api_str(&R, "status"), "completed");
	ck_assert(!json_object_get_boolean(t_json_get(R.json, "stale")));
	/* The trial came no sooner than 3 s after the opening. */
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job_archive j, sluice.event e"
	                           " WHERE e.type = 'circuit_opened' AND j.kind = 'report.fetch'"
	                           " AND j.started_at > (e.data ->> 'opened_at')::timestamptz"
	                           " AND j.started_at < (e.data ->> 'half_open_at')::timestamptz"), 0);
}
END_TEST

/*
 * queue_position and estimated_wait_seconds against what happens: six
 * requests behind a limit of 2 calls per 4 s, told 1..6 and 0, 0, 5, 5,
 * 9, 9 s; one worker then calls in that order, each when its estimate said.
 */
START_TEST(position_and_wait_match_reality)
{
	char ids[6][37], report[16];
	long long pos[6], wait[6], first_ms;
	json_object *calls;
	pid_t w;
	int i;

	with_fake();
	keys();
	t_execf(db, "WITH p AS (INSERT INTO sluice.rate_policy (provider, connector_id, per)"
	        " VALUES ('trustfile', '%s', 'connector') RETURNING id)"
	        " INSERT INTO sluice.rate_window SELECT id, 4, 2 FROM p", conn);
	for (i = 0; i < 6; i++) {
		snprintf(report, sizeof(report), "r%d", i + 1);
		fetch_ok(report, "2024-01-01", "2024-01-01", NULL, NULL, ids[i]);
		pos[i] = t_api_int(&R, "queue_position");
		ck_assert_int_eq(pos[i], i + 1);
		ck_assert_int_eq(t_api_int(&R, "rate_limit_status.limit"), 2);
	}
	/* Asked again now: the same places; waits as the windows say. */
	for (i = 0; i < 6; i++) {
		get_request(ids[i]);
		ck_assert_int_eq(t_api_int(&R, "queue_position"), i + 1);
		wait[i] = t_api_int(&R, "estimated_wait_seconds");
	}
	ck_assert_int_eq(wait[0], 0);
	ck_assert_int_eq(wait[1], 0);
	ck_assert_int_eq(wait[2], 5);   /* a window of 4 s counted in slots of 100 ms: 4.1 s */
	ck_assert_int_eq(wait[3], 5);
	ck_assert_int_eq(wait[4], 9);
	ck_assert_int_eq(wait[5], 9);

	w = worker(NULL);
	await_requests(40000);
	stop(w);
	calls = report_calls();
	ck_assert_int_eq(json_object_array_length(calls), 6);
	first_ms = json_object_get_int64(json_object_array_get_idx(json_object_array_get_idx(calls, 0), 0));
	for (i = 0; i < 6; i++) {
		json_object *a = json_object_array_get_idx(calls, (size_t)i);
		long long at = json_object_get_int64(json_object_array_get_idx(a, 0)) - first_ms;
		char want[16];

		snprintf(want, sizeof(want), "/reports/r%d?", i + 1);
		ck_assert_msg(!strncmp(call_path(calls, (size_t)i), want, strlen(want)), "call %d: %s", i,
		              call_path(calls, (size_t)i));
		/*
		 * Counted from the first call (the estimates assume a worker ready
		 * now): each call comes within its estimate, whole seconds rounded
		 * up, and less than a second before it.
		 */
		ck_assert_msg(at <= wait[i] * 1000 + 300 && at >= (wait[i] - 1) * 1000,
		              "request %d called %lld ms after the first, estimate %lld s", i + 1, at, wait[i]);
	}
	json_object_put(calls);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("requests");
	TCase *tc = tcase_create("sql");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, batching_rules);
	tcase_add_test(tc, classes_and_bad_values);
	suite_add_tcase(s, tc);
	tc = tcase_create("workers");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, api_batch_end_to_end);
	tcase_add_test(tc, late_request_not_merged);
	tcase_add_test(tc, priority_order);
	tcase_add_test(tc, transient_failures_retry);
	tcase_add_test(tc, dead_fetch_fails_requests);
	tcase_add_test(tc, circuit_cycle_with_stale_answers);
	tcase_add_test(tc, position_and_wait_match_reality);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	t_use_master_key();
	return t_run(make_suite());
}
