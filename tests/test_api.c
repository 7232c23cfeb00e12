/* test_api.c — sluice-api run as a CGI program: every route, every bad input of the policy, rows and audit. */
#include <check.h>
#include <ctype.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api/http.h"
#include "api/job_input.h"
#include "common/alloc.h"
#include "common/buf.h"
#include "common/crypto.h"
#include "common/str.h"
#include "tests/api_client.h"
#include "tests/harness.h"

/* ---- running the CGI program ------------------------------------------ */

static char url[256];            /* this test's database */
static PGconn *db;
static long long org_a, org_b;
static char key_a_write[64], key_a_read[64], key_a_admin[64], key_b_write[64];
static long long kid_a_write, kid_a_read, kid_b_write;
static struct t_api_resp R;      /* the last answer (freed by t_api_call / teardown) */

/*
 * Runs sluice-api on rq (tests/api_client.h) against this test's database
 * unless rq->db_url says otherwise ("" none); the answer lands in R.
 */
static void
call(const struct t_api_req *rq)
{
	struct t_api_req r = *rq;

	if (!r.db_url)
		r.db_url = url;
	t_api_call(&r, &R);
}

/* Shorthands. */
static void
call_simple(const char *method, const char *path, const char *key, const char *body)
{
	call(&(struct t_api_req){ .method = method, .path = path, .key = key, .body = body });
}

/* ---- JSON and row helpers --------------------------------------------- */

/* Compact JSON text of v; "null" for a missing value. */
static const char *
jtext(json_object *v)
{
	return v ? json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
	                                             JSON_C_TO_STRING_NOSLASHESCAPE)
	         : "null";
}

/* Shorthands on the last answer R and the test's database (tests/api_client.h, harness.h). */
#define jstr(path)                        t_api_str(&R, (path))
#define jint(path)                        t_api_int(&R, (path))
#define assert_error(status, code, field) t_api_assert_error(&R, (status), (code), (field))
#define q_int(sql, p1, p2)                t_int_p(db, (sql), (p1), (p2))
#define q_text(sql, p1, out, n)           t_text_p(db, (sql), (p1), NULL, (out), (n))

static long long
jobs_in_db(void)
{
	return t_int(db, "SELECT count(*) FROM sluice.jobs");
}

/* ---- fixture: a database, two orgs, keys made the way operators make them ---- */

static void
make_key(long long org, const char *scope, char *key, long long *key_id)
{
	long long id = t_key(url, org, scope, key);

	if (key_id)
		*key_id = id;
}

static void
setup(void)
{
	memset(&R, 0, sizeof(R));
	t_db_create(url, sizeof(url));
	db = t_connect(url);
	org_a = t_org(db, "org a");
	org_b = t_org(db, "org b");
	make_key(org_a, "write", key_a_write, &kid_a_write);
	make_key(org_a, "read", key_a_read, &kid_a_read);
	make_key(org_a, "admin", key_a_admin, NULL);
	make_key(org_b, "write", key_b_write, &kid_b_write);
}

static void
teardown(void)
{
	t_api_resp_clear(&R);
	PQfinish(db);
	db = NULL;
}

/* Creates one job for org A through the API; returns its id. */
static long long
post_job(const char *body)
{
	call_simple("POST", "/api/v1/jobs", key_a_write, body);
	ck_assert_msg(R.status == 201, "POST %s: %d %s", body, R.status, R.body);
	return jint("job.id");
}

/* Audit rows matching action/outcome/status for request id rid. */
static long long
audit_rows(const char *rid, const char *action, const char *outcome, int status)
{
	char st[16];
	const char *params[4] = { rid, action, outcome, st };
	PGresult *r;
	long long n;

	snprintf(st, sizeof(st), "%d", status);
	r = t_query(db, "SELECT count(*) FROM sluice.audit WHERE request_id = $1 AND action = $2"
	                " AND outcome = $3 AND http_status = $4::integer", 4, params);
	ck_assert_int_eq(sl_parse_ll(PQgetvalue(r, 0, 0), 0, 1000000, &n), 0);
	PQclear(r);
	return n;
}

/* ---- health ------------------------------------------------------------ */

START_TEST(health_ok)
{
	call(&(struct t_api_req){ .method = "GET", .path = "/health" });
	ck_assert_int_eq(R.status, 200);
	ck_assert_str_eq(t_api_hdr(&R, "Content-Type"), "application/json");
	ck_assert_str_eq(jstr("status"), "ok");
	ck_assert_str_eq(jstr("database"), "ok");
	ck_assert_int_eq(jint("schema_version"),
	                 t_int(db, "SELECT max(version) FROM sluice.schema_migration"));
	ck_assert_int_eq(json_object_object_length(R.json), 3);
	ck_assert_int_gt(strlen(t_api_hdr(&R, "X-Request-Id")), 0);

	/* HEAD: the same headers, no body. */
	call(&(struct t_api_req){ .method = "HEAD", .path = "/health" });
	ck_assert_int_eq(R.status, 200);
	ck_assert_str_eq(R.body, "");
	ck_assert_str_ne(t_api_hdr(&R, "Content-Length"), "0");
}
END_TEST

START_TEST(health_database_unreachable_503)
{
	char dead[128];

	snprintf(dead, sizeof(dead), "postgresql://postgres@127.0.0.1:%d/sluice?connect_timeout=5",
	         t_free_port());
	call(&(struct t_api_req){ .method = "GET", .path = "/health", .db_url = dead });
	ck_assert_int_eq(R.status, 503);
	ck_assert_str_eq(t_api_hdr(&R, "Content-Type"), "application/json");
	ck_assert_str_eq(R.body, "{\"status\":\"unavailable\",\"database\":\"unreachable\"}");
	ck_assert_int_gt(strlen(t_api_hdr(&R, "X-Request-Id")), 0);

	/* No configuration at all is the same to a load balancer. */
	call(&(struct t_api_req){ .method = "GET", .path = "/health", .db_url = "" });
	ck_assert_int_eq(R.status, 503);
	ck_assert_str_eq(jstr("database"), "unreachable");

	/* Routes that need the database answer 503 in the error shape. */
	call(&(struct t_api_req){ .method = "GET", .path = "/api/v1/queue", .key = key_a_read,
	                          .db_url = dead });
	assert_error(503, "unavailable", NULL);
}
END_TEST

/* ---- routing ----------------------------------------------------------- */

static const char *const unknown_paths[] = {
	"/", "", "/nope", "/api/v1", "/api/v1/jobs/", "/api/v1/jobs/1/", "/api/v1/jobs/1/x",
	"/api/v2/jobs", "/API/V1/QUEUE", "/health/", "//health",
};

START_TEST(unknown_route_404)
{
	call(&(struct t_api_req){ .method = "GET", .path = unknown_paths[_i], .key = key_a_admin });
	assert_error(404, "not_found", NULL);
	ck_assert_str_eq(t_api_hdr(&R, "Allow"), "");
}
END_TEST

static const struct {
	const char *method, *path, *allow;
} wrong_methods[] = {
	{ "GET", "/api/v1/jobs", "POST" },
	{ "DELETE", "/api/v1/jobs", "POST" },
	{ "PUT", "/api/v1/jobs/1", "GET, HEAD, DELETE" },
	{ "POST", "/api/v1/jobs/abc", "GET, HEAD, DELETE" },
	{ "POST", "/health", "GET, HEAD" },
	{ "DELETE", "/api/v1/queue", "GET, HEAD" },
	{ "PATCH", "/metrics", "GET, HEAD" },
	{ "OPTIONS", "/api/v1/jobs", "POST" },
};

START_TEST(wrong_method_405_with_allow)
{
	/* 405 comes before authentication: no key needed to learn the methods. */
	call(&(struct t_api_req){ .method = wrong_methods[_i].method, .path = wrong_methods[_i].path,
	                          .body = "{}" });
	assert_error(405, "method_not_allowed", NULL);
	ck_assert_str_eq(t_api_hdr(&R, "Allow"), wrong_methods[_i].allow);
	ck_assert_ptr_nonnull(strstr(jstr("error.message"), wrong_methods[_i].allow));
	ck_assert_int_eq(jobs_in_db(), 0);
}
END_TEST

/* ---- authentication ---------------------------------------------------- */

START_TEST(no_key_401)
{
	call(&(struct t_api_req){ .method = "GET", .path = "/api/v1/queue" });
	assert_error(401, "unauthorized", NULL);
	ck_assert_str_eq(t_api_hdr(&R, "WWW-Authenticate"), "Bearer realm=\"sluice\"");

	call(&(struct t_api_req){ .method = "POST", .path = "/api/v1/jobs", .body = "{\"kind\":\"a\"}" });
	assert_error(401, "unauthorized", NULL);
	/* Not authenticated: nothing is written, not even an audit row without an actor. */
	ck_assert_int_eq(jobs_in_db(), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.audit"), 0);

	call(&(struct t_api_req){ .method = "GET", .path = "/metrics" });
	assert_error(401, "unauthorized", NULL);
}
END_TEST

static const char *const bad_authorizations[] = {
	"Bearer sk_0000000000000000000000000000000000000000",   /* well-formed, unknown */
	"Bearer nope",
	"Bearer ",
	"Bearer sk_00000000000000000000000000000000000000000",  /* one too long */
	"Bearer sk_000000000000000000000000000000000000000!",
	"Basic dXNlcjpwYXNz",
	"sk_0000000000000000000000000000000000000000",
	"Token sk_0000000000000000000000000000000000000000",
};

START_TEST(bad_key_401)
{
	call(&(struct t_api_req){ .method = "GET", .path = "/api/v1/queue",
	                          .authorization = bad_authorizations[_i] });
	assert_error(401, "unauthorized", NULL);
	ck_assert_str_eq(t_api_hdr(&R, "WWW-Authenticate"),
	                 "Bearer realm=\"sluice\", error=\"invalid_token\"");
	/* The answer never echoes what was presented. */
	ck_assert_ptr_null(strstr(R.out, "sk_0000"));
	ck_assert_ptr_null(strstr(R.out, "dXNlcjpwYXNz"));
}
END_TEST

START_TEST(auth_scheme_is_case_insensitive)
{
	char auth[128];

	snprintf(auth, sizeof(auth), "bearer   %s", key_a_read);
	call(&(struct t_api_req){ .method = "GET", .path = "/api/v1/queue", .authorization = auth });
	ck_assert_int_eq(R.status, 200);
}
END_TEST

START_TEST(revoked_key_401)
{
	char cmd[1024];

	call_simple("GET", "/api/v1/queue", key_a_read, NULL);
	ck_assert_int_eq(R.status, 200);
	snprintf(cmd, sizeof(cmd), "'%s' --database '%s' key revoke %lld >/dev/null 2>&1",
	         t_ctl_bin, url, kid_a_read);
	ck_assert_int_eq(system(cmd), 0);
	call_simple("GET", "/api/v1/queue", key_a_read, NULL);
	assert_error(401, "unauthorized", NULL);
	ck_assert_str_eq(t_api_hdr(&R, "WWW-Authenticate"),
	                 "Bearer realm=\"sluice\", error=\"invalid_token\"");
}
END_TEST

START_TEST(read_key_post_403_audited)
{
	char rid[80];

	call_simple("POST", "/api/v1/jobs", key_a_read, "{\"kind\":\"a\"}");
	assert_error(403, "forbidden", NULL);
	ck_assert_ptr_nonnull(strstr(t_api_hdr(&R, "WWW-Authenticate"), "error=\"insufficient_scope\""));
	ck_assert_ptr_nonnull(strstr(jstr("error.message"), "write"));
	ck_assert_int_eq(jobs_in_db(), 0);
	/* Authenticated, so the refusal is audited: who, what, how it ended. */
	snprintf(rid, sizeof(rid), "%s", t_api_hdr(&R, "X-Request-Id"));
	ck_assert_int_eq(audit_rows(rid, "job.create", "refused", 403), 1);
	{
		char actor[64], want[64];

		q_text("SELECT actor || ' ' || org_id FROM sluice.audit WHERE request_id = $1", rid,
		       actor, sizeof(actor));
		snprintf(want, sizeof(want), "key:%lld %lld", kid_a_read, org_a);
		ck_assert_str_eq(actor, want);
	}

	/* DELETE needs write as well. */
	{
		long long id = post_job("{\"kind\":\"a\"}");
		char path[64];

		snprintf(path, sizeof(path), "/api/v1/jobs/%lld", id);
		call_simple("DELETE", path, key_a_read, NULL);
		assert_error(403, "forbidden", NULL);
		ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job WHERE state = 'queued'"), 1);
	}

	/* /metrics needs admin: a write key is not enough. */
	call_simple("GET", "/metrics", key_a_write, NULL);
	assert_error(403, "forbidden", NULL);
	ck_assert_ptr_nonnull(strstr(t_api_hdr(&R, "WWW-Authenticate"), "scope=\"admin\""));
}
END_TEST

/* ---- POST /api/v1/jobs -------------------------------------------------- */

START_TEST(create_single_job_201)
{
	char rid[80], want[64], text[512];
	long long id;

	/* The job names one of org A's connectors (another org's, or none, is refused). */
	snprintf(text, sizeof(text), "INSERT INTO sluice.connector (id, org_id, type, direction, label)"
	         " VALUES ('0b6e3d1c-5f1a-4c1e-9a53-2f0d7c1b9e42', %lld, 'webhook', 'destination', 'w')",
	         org_a);
	t_exec(db, text);
	call_simple("POST", "/api/v1/jobs", key_a_write,
	            "{\"kind\":\"report.fetch\",\"payload\":{\"range\":[1,2],\"x\":1.10},"
	            "\"priority\":2,\"run_at\":\"2099-01-02T03:04:05Z\",\"max_attempts\":7,"
	            "\"dedupe_key\":\"r-1\",\"connector_id\":\"0B6E3D1C-5F1A-4C1E-9A53-2F0D7C1B9E42\"}");
	ck_assert_msg(R.status == 201, "%d %s", R.status, R.body);
	ck_assert_str_eq(t_api_hdr(&R, "Content-Type"), "application/json");
	id = jint("job.id");
	snprintf(want, sizeof(want), "/api/v1/jobs/%lld", id);
	ck_assert_str_eq(t_api_hdr(&R, "Location"), want);
	ck_assert_int_eq(json_object_get_boolean(t_json_get(R.json, "deduplicated")), 0);
	ck_assert_str_eq(jstr("job.kind"), "report.fetch");
	ck_assert_str_eq(jstr("job.state"), "queued");
	ck_assert_int_eq(jint("job.priority"), 2);
	ck_assert_int_eq(jint("job.max_attempts"), 7);
	ck_assert_int_eq(jint("job.attempts"), 0);
	ck_assert_str_eq(jstr("job.run_at"), "2099-01-02T03:04:05.000000Z");
	ck_assert_str_eq(jstr("job.dedupe_key"), "r-1");
	ck_assert_str_eq(jstr("job.connector_id"), "0b6e3d1c-5f1a-4c1e-9a53-2f0d7c1b9e42");
	ck_assert_str_eq(jtext(t_json_get(R.json, "job.payload")), "{\"x\":1.10,\"range\":[1,2]}");
	ck_assert_ptr_nonnull(jstr("job.created_at"));
	ck_assert_int_eq(json_object_get_type(t_json_get(R.json, "job.errors")), json_type_array);
	/* Every field of the job is there, including the empty ones. */
	ck_assert_int_eq(json_object_object_length(t_json_get(R.json, "job")), 16);

	/* The row, as the database has it. */
	snprintf(want, sizeof(want), "%lld", id);
	q_text("SELECT concat_ws('|', org_id, kind, priority, max_attempts, dedupe_key, connector_id,"
	       " payload::text, run_at = '2099-01-02T03:04:05Z', state)"
	       "  FROM sluice.job WHERE id = $1::bigint", want, text, sizeof(text));
	{
		char expect[512];

		snprintf(expect, sizeof(expect), "%lld|report.fetch|2|7|r-1|"
		         "0b6e3d1c-5f1a-4c1e-9a53-2f0d7c1b9e42|{\"x\": 1.10, \"range\": [1, 2]}|t|queued",
		         org_a);
		ck_assert_str_eq(text, expect);
	}

	/* Its audit row: in the same transaction, so it exists exactly when the job does. */
	snprintf(rid, sizeof(rid), "%s", t_api_hdr(&R, "X-Request-Id"));
	ck_assert_int_eq(audit_rows(rid, "job.create", "ok", 201), 1);
	q_text("SELECT concat_ws('|', actor, target, detail->>'kind', detail->>'deduplicated')"
	       "  FROM sluice.audit WHERE request_id = $1", rid, text, sizeof(text));
	snprintf(want, sizeof(want), "key:%lld|job:%lld|report.fetch|false", kid_a_write, id);
	ck_assert_str_eq(text, want);
}
END_TEST

START_TEST(create_with_defaults)
{
	call_simple("POST", "/api/v1/jobs", key_a_write,
	            "{\"kind\":\"noop\",\"payload\":null,\"priority\":null}");
	ck_assert_int_eq(R.status, 201);
	ck_assert_int_eq(jint("job.priority"), 3);
	ck_assert_int_eq(jint("job.max_attempts"),
	                 t_int(db, "SELECT sluice.setting_int('default_max_attempts')"));
	ck_assert_str_eq(jtext(t_json_get(R.json, "job.payload")), "{}");
	ck_assert_ptr_null(t_json_get(R.json, "job.dedupe_key"));
	ck_assert_ptr_null(t_json_get(R.json, "job.started_at"));

	/* application/json with parameters is JSON too. */
	call(&(struct t_api_req){ .method = "POST", .path = "/api/v1/jobs", .key = key_a_write,
	                          .body = "{\"kind\":\"noop\"}",
	                          .content_type = "Application/JSON; charset=utf-8" });
	ck_assert_int_eq(R.status, 201);
	ck_assert_int_eq(jobs_in_db(), 2);
}
END_TEST

START_TEST(create_batch_201)
{
	char rid[80], sql[256];
	long long id0, id2;

	call_simple("POST", "/api/v1/jobs", key_a_write,
	            "{\"jobs\":[{\"kind\":\"a\",\"priority\":1},"
	            "{\"kind\":\"b\",\"dedupe_key\":\"same\"},"
	            "{\"kind\":\"c\",\"payload\":{\"n\":3}},"
	            "{\"kind\":\"b\",\"dedupe_key\":\"same\"}]}");
	ck_assert_msg(R.status == 201, "%d %s", R.status, R.body);
	ck_assert_str_eq(t_api_hdr(&R, "Location"), "");
	ck_assert_int_eq(json_object_array_length(t_json_get(R.json, "jobs")), 4);
	ck_assert_str_eq(jstr("jobs.0.kind"), "a");
	ck_assert_int_eq(jint("jobs.0.priority"), 1);
	ck_assert_str_eq(jstr("jobs.2.kind"), "c");
	ck_assert_int_eq(jint("jobs.2.payload.n"), 3);
	/* A later element with a live dedupe key gets the earlier element's job. */
	ck_assert_int_eq(json_object_get_boolean(t_json_get(R.json, "jobs.1.deduplicated")), 0);
	ck_assert_int_eq(json_object_get_boolean(t_json_get(R.json, "jobs.3.deduplicated")), 1);
	ck_assert_int_eq(jint("jobs.3.id"), jint("jobs.1.id"));
	id0 = jint("jobs.0.id");
	id2 = jint("jobs.2.id");

	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job"), 3);
	snprintf(sql, sizeof(sql), "SELECT priority FROM sluice.job WHERE id = %lld", id0);
	ck_assert_int_eq(t_int(db, sql), 1);
	snprintf(sql, sizeof(sql), "SELECT (payload->>'n')::int FROM sluice.job WHERE id = %lld", id2);
	ck_assert_int_eq(t_int(db, sql), 3);
	snprintf(rid, sizeof(rid), "%s", t_api_hdr(&R, "X-Request-Id"));
	/* One audit row per element, each naming its job. */
	ck_assert_int_eq(audit_rows(rid, "job.create", "ok", 201), 4);
	ck_assert_int_eq(q_int("SELECT count(DISTINCT target) FROM sluice.audit WHERE request_id = $1"
	                       " AND (detail->>'batch_size')::int = 4", rid, NULL), 3);
}
END_TEST

/* A batch body of n jobs, kinds k0..k<mod-1>; sl_free() it. */
static char *
batch_body(size_t n, size_t mod)
{
	struct sl_buf b;
	size_t i;
	char *text;

	sl_buf_init(&b, 1u << 21);
	ck_assert_int_eq(sl_buf_adds(&b, "{\"jobs\":["), 0);
	for (i = 0; i < n; i++)
		ck_assert_int_eq(sl_buf_addf(&b, "%s{\"kind\":\"k%zu\"}", i ? "," : "", i % mod), 0);
	ck_assert_int_eq(sl_buf_adds(&b, "]}"), 0);
	text = sl_buf_detach(&b);
	ck_assert_ptr_nonnull(text);
	return text;
}

START_TEST(create_batch_of_exactly_1000)
{
	char *body = batch_body(1000, 7);

	call_simple("POST", "/api/v1/jobs", key_a_write, body);
	sl_free(body);
	ck_assert_int_eq(R.status, 201);
	ck_assert_int_eq(json_object_array_length(t_json_get(R.json, "jobs")), 1000);
	ck_assert_int_eq(jobs_in_db(), 1000);
}
END_TEST

START_TEST(dedupe_returns_the_first_job)
{
	long long first;
	char rid[80];

	first = post_job("{\"kind\":\"sync\",\"dedupe_key\":\"shop-7\",\"payload\":{\"v\":1}}");
	call_simple("POST", "/api/v1/jobs", key_a_write,
	            "{\"kind\":\"sync\",\"dedupe_key\":\"shop-7\",\"payload\":{\"v\":2}}");
	ck_assert_int_eq(R.status, 200);
	ck_assert_int_eq(json_object_get_boolean(t_json_get(R.json, "deduplicated")), 1);
	ck_assert_int_eq(jint("job.id"), first);
	/* The first job, unchanged. */
	ck_assert_int_eq(jint("job.payload.v"), 1);
	ck_assert_str_eq(t_api_hdr(&R, "Location"), "");
	ck_assert_int_eq(jobs_in_db(), 1);
	snprintf(rid, sizeof(rid), "%s", t_api_hdr(&R, "X-Request-Id"));
	ck_assert_int_eq(audit_rows(rid, "job.create", "ok", 200), 1);
	ck_assert_int_eq(q_int("SELECT count(*) FROM sluice.audit WHERE request_id = $1"
	                       " AND detail->>'deduplicated' = 'true'", rid, NULL), 1);

	/* Another org's identical key is its own. */
	call_simple("POST", "/api/v1/jobs", key_b_write,
	            "{\"kind\":\"sync\",\"dedupe_key\":\"shop-7\"}");
	ck_assert_int_eq(R.status, 201);
	ck_assert_int_ne(jint("job.id"), first);
}
END_TEST

static const char *const malformed[] = {
	"{", "{'kind':'a'}", "", " ", "{\"kind\":\"a\"} x", "{\"kind\":\"a\",}", "[1,]",
	"NaN", "{\"kind\":\"a\"}{}", "{\"kind\":\"\xff\"}", "{\"kind\":\"a\x01\"}",
	"{\"kind\" \"a\"}", "nul",
};

START_TEST(malformed_json_400)
{
	char rid[80];

	call_simple("POST", "/api/v1/jobs", key_a_write, malformed[_i]);
	assert_error(400, "malformed_json", NULL);
	ck_assert_ptr_nonnull(strstr(jstr("error.message"), "malformed JSON"));
	ck_assert_int_eq(jobs_in_db(), 0);
	snprintf(rid, sizeof(rid), "%s", t_api_hdr(&R, "X-Request-Id"));
	ck_assert_int_eq(audit_rows(rid, "job.create", "refused", 400), 1);
}
END_TEST

static const struct {
	const char *body, *field, *says;
} invalid[] = {
	{ "{}", "kind", "required" },
	{ "{\"kind\":null}", "kind", "required" },
	{ "{\"kind\":5}", "kind", "string" },
	{ "{\"kind\":\"Bad Kind\"}", "kind", "^[a-z]" },
	{ "{\"kind\":\"9lives\"}", "kind", "^[a-z]" },
	{ "{\"kind\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}", "kind",
	  "longer" },
	{ "{\"kind\":\"a\",\"payload\":[1]}", "payload", "JSON object" },
	{ "{\"kind\":\"a\",\"payload\":\"{}\"}", "payload", "JSON object" },
	{ "{\"kind\":\"a\",\"payload\":{\"x\":[\"\\u0000\"]}}", "payload", "\\u0000" },
	{ "{\"kind\":\"a\",\"priority\":\"1\"}", "priority", "integer" },
	{ "{\"kind\":\"a\",\"priority\":0}", "priority", "1 to 5" },
	{ "{\"kind\":\"a\",\"priority\":6}", "priority", "1 to 5" },
	{ "{\"kind\":\"a\",\"priority\":2.5}", "priority", "integer" },
	{ "{\"kind\":\"a\",\"priority\":true}", "priority", "integer" },
	{ "{\"kind\":\"a\",\"run_at\":\"tomorrow\"}", "run_at", "RFC 3339" },
	{ "{\"kind\":\"a\",\"run_at\":\"2024-02-30T00:00:00Z\"}", "run_at", "RFC 3339" },
	{ "{\"kind\":\"a\",\"run_at\":\"2023-02-29T00:00:00Z\"}", "run_at", "RFC 3339" },
	{ "{\"kind\":\"a\",\"run_at\":\"2024-01-01 00:00:00\"}", "run_at", "RFC 3339" },
	{ "{\"kind\":\"a\",\"run_at\":\"0000-01-01T00:00:00Z\"}", "run_at", "RFC 3339" },
	{ "{\"kind\":\"a\",\"run_at\":1700000000}", "run_at", "string" },
	{ "{\"kind\":\"a\",\"max_attempts\":0}", "max_attempts", "1 to 1000" },
	{ "{\"kind\":\"a\",\"max_attempts\":1001}", "max_attempts", "1 to 1000" },
	{ "{\"kind\":\"a\",\"max_attempts\":99999999999999999999}", "max_attempts", "1 to 1000" },
	{ "{\"kind\":\"a\",\"dedupe_key\":\"\"}", "dedupe_key", "1 to 200" },
	{ "{\"kind\":\"a\",\"dedupe_key\":[\"x\"]}", "dedupe_key", "string" },
	{ "{\"kind\":\"a\",\"connector_id\":\"nope\"}", "connector_id", "UUID" },
	{ "{\"kind\":\"a\",\"connector_id\":\"0b6e3d1c5f1a4c1e9a532f0d7c1b9e42\"}", "connector_id",
	  "UUID" },
	{ "{\"kind\":\"a\",\"priorty\":1}", "priorty", "not known" },
	{ "[{\"kind\":\"a\"}]", NULL, "JSON object" },
	{ "\"a\"", NULL, "JSON object" },
	{ "null", NULL, "JSON object" },
	{ "{\"jobs\":{}}", "jobs", "array" },
	{ "{\"jobs\":[]}", "jobs", "array" },
	{ "{\"jobs\":null}", "jobs", "array" },
	{ "{\"jobs\":[{\"kind\":\"a\"}],\"kind\":\"a\"}", "kind", "not known" },
	{ "{\"jobs\":[{\"kind\":\"a\"},{\"kind\":\"b\"},{\"kind\":\"c\"},"
	  "{\"kind\":\"d\",\"priority\":\"high\"}]}", "jobs[3].priority", "integer" },
	{ "{\"jobs\":[{\"kind\":\"a\"},5]}", "jobs[1]", "JSON object" },
	{ "{\"jobs\":[{\"kind\":\"a\"},{}]}", "jobs[1].kind", "required" },
	{ "{\"jobs\":[{\"kind\":\"a\",\"extra\":1}]}", "jobs[0].extra", "not known" },
	{ "{\"jobs\":[{\"kind\":\"a\"},{\"kind\":\"b\",\"run_at\":\"2024-13-01T00:00:00Z\"}]}",
	  "jobs[1].run_at", "RFC 3339" },
	{ "{\"jobs\":[{\"kind\":\"a\",\"connector_id\":7}]}", "jobs[0].connector_id", "string" },
	{ "{\"jobs\":[{\"kind\":\"a\",\"payload\":{\"k\":\"\\u0000\"}}]}", "jobs[0].payload",
	  "\\u0000" },
};

START_TEST(invalid_field_422_names_the_field)
{
	char rid[80];

	call_simple("POST", "/api/v1/jobs", key_a_write, invalid[_i].body);
	assert_error(422, "validation_failed", invalid[_i].field);
	ck_assert_msg(strstr(jstr("error.message"), invalid[_i].says) != NULL,
	              "message \"%s\" does not say \"%s\"", jstr("error.message"), invalid[_i].says);
	if (invalid[_i].field)
		ck_assert_ptr_nonnull(strstr(jstr("error.message"), invalid[_i].field));
	/* Checked before the database saw anything: no job, not even the valid ones of a batch. */
	ck_assert_int_eq(jobs_in_db(), 0);
	snprintf(rid, sizeof(rid), "%s", t_api_hdr(&R, "X-Request-Id"));
	ck_assert_int_eq(audit_rows(rid, "job.create", "refused", 422), 1);
	if (invalid[_i].field)
		ck_assert_int_eq(q_int("SELECT count(*) FROM sluice.audit WHERE request_id = $1"
		                       " AND detail->>'field' = $2", rid, invalid[_i].field), 1);
}
END_TEST

START_TEST(dedupe_key_counts_characters)
{
	struct sl_buf b;
	int i;

	/* 200 characters of two bytes each: 400 bytes, still 200 characters. */
	sl_buf_init(&b, 4096);
	ck_assert_int_eq(sl_buf_adds(&b, "{\"kind\":\"a\",\"dedupe_key\":\""), 0);
	for (i = 0; i < 200; i++)
		ck_assert_int_eq(sl_buf_adds(&b, "\xc3\xa9"), 0);
	ck_assert_int_eq(sl_buf_adds(&b, "\"}"), 0);
	call_simple("POST", "/api/v1/jobs", key_a_write, b.data);
	ck_assert_msg(R.status == 201, "%d %s", R.status, R.body);

	sl_buf_reset(&b);
	ck_assert_int_eq(sl_buf_adds(&b, "{\"kind\":\"a\",\"dedupe_key\":\""), 0);
	for (i = 0; i < 201; i++)
		ck_assert_int_eq(sl_buf_addc(&b, 'x'), 0);
	ck_assert_int_eq(sl_buf_adds(&b, "\"}"), 0);
	call_simple("POST", "/api/v1/jobs", key_a_write, b.data);
	sl_buf_release(&b);
	assert_error(422, "validation_failed", "dedupe_key");
	ck_assert_int_eq(jobs_in_db(), 1);
}
END_TEST

START_TEST(too_many_jobs_422)
{
	char *body = batch_body(1001, 1);

	call_simple("POST", "/api/v1/jobs", key_a_write, body);
	sl_free(body);
	assert_error(422, "validation_failed", "jobs");
	ck_assert_ptr_nonnull(strstr(jstr("error.message"), "1001"));
	ck_assert_ptr_nonnull(strstr(jstr("error.message"), "at most 1000"));
	ck_assert_int_eq(jobs_in_db(), 0);
}
END_TEST

/* A valid single-job body of exactly n bytes: {"kind":"a","payload":{"x":"xxx…"}}. */
static char *
body_of_size(size_t n)
{
	static const char head[] = "{\"kind\":\"a\",\"payload\":{\"x\":\"", tail[] = "\"}}";
	char *b = malloc(n + 1);

	ck_assert_ptr_nonnull(b);
	memset(b, 'x', n);
	memcpy(b, head, sizeof(head) - 1);
	memcpy(b + n - (sizeof(tail) - 1), tail, sizeof(tail));
	return b;
}

START_TEST(body_too_large_413)
{
	char *body = body_of_size((1u << 20) + 1), rid[80];

	/* One byte over 1 MiB: refused, and not read. */
	call_simple("POST", "/api/v1/jobs", key_a_write, body);
	free(body);
	assert_error(413, "payload_too_large", NULL);
	ck_assert_ptr_nonnull(strstr(jstr("error.message"), "1048577"));
	ck_assert_int_eq(jobs_in_db(), 0);
	snprintf(rid, sizeof(rid), "%s", t_api_hdr(&R, "X-Request-Id"));
	ck_assert_int_eq(audit_rows(rid, "job.create", "refused", 413), 1);

	/* A Content-Length of a terabyte with nothing behind it: answered at once. */
	call(&(struct t_api_req){ .method = "POST", .path = "/api/v1/jobs", .key = key_a_write,
	                          .body = "{}", .content_length = "1099511627776" });
	assert_error(413, "payload_too_large", NULL);

	/* Exactly 1 MiB is accepted. */
	body = body_of_size(1u << 20);
	call_simple("POST", "/api/v1/jobs", key_a_write, body);
	free(body);
	ck_assert_int_eq(R.status, 201);
	ck_assert_int_eq(jobs_in_db(), 1);
}
END_TEST

START_TEST(content_length_and_type_checked)
{
	static const char *const bad_lengths[] = { "abc", "-1", "1e3", " 12", "12 ", "+12",
	                                           "99999999999999999999999" };
	size_t i;

	call(&(struct t_api_req){ .method = "POST", .path = "/api/v1/jobs", .key = key_a_write,
	                          .body = "{\"kind\":\"a\"}", .content_length = "" });
	assert_error(411, "length_required", NULL);

	for (i = 0; i < sizeof(bad_lengths) / sizeof(bad_lengths[0]); i++) {
		call(&(struct t_api_req){ .method = "POST", .path = "/api/v1/jobs", .key = key_a_write,
		                          .body = "{\"kind\":\"a\"}", .content_length = bad_lengths[i] });
		assert_error(400, "bad_request", NULL);
	}
	/* Fewer bytes than announced. */
	call(&(struct t_api_req){ .method = "POST", .path = "/api/v1/jobs", .key = key_a_write,
	                          .body = "{\"kind\":\"a\"}", .content_length = "40" });
	assert_error(400, "bad_request", NULL);
	ck_assert_ptr_nonnull(strstr(jstr("error.message"), "shorter"));

	call(&(struct t_api_req){ .method = "POST", .path = "/api/v1/jobs", .key = key_a_write,
	                          .body = "kind=a", .content_type = "application/x-www-form-urlencoded" });
	assert_error(415, "unsupported_media_type", NULL);
	ck_assert_int_eq(jobs_in_db(), 0);
}
END_TEST

/* ---- GET /api/v1/jobs/{id} ------------------------------------------------ */

START_TEST(get_job_200)
{
	char path[64];
	long long id = post_job("{\"kind\":\"ticket.push\",\"payload\":{\"a\":\"b\"},\"priority\":4}");

	snprintf(path, sizeof(path), "/api/v1/jobs/%lld", id);
	call_simple("GET", path, key_a_read, NULL);
	ck_assert_int_eq(R.status, 200);
	ck_assert_int_eq(json_object_object_length(R.json), 1);
	ck_assert_int_eq(jint("job.id"), id);
	ck_assert_str_eq(jstr("job.kind"), "ticket.push");
	ck_assert_str_eq(jstr("job.state"), "queued");
	ck_assert_int_eq(jint("job.priority"), 4);
	ck_assert_str_eq(jstr("job.payload.a"), "b");
	ck_assert_int_eq(json_object_object_length(t_json_get(R.json, "job")), 16);
	/* RFC 3339 in UTC. */
	ck_assert(api_is_rfc3339(jstr("job.run_at")));
	ck_assert(api_is_rfc3339(jstr("job.created_at")));
	ck_assert_int_eq(jstr("job.created_at")[strlen(jstr("job.created_at")) - 1], 'Z');

	/* A job that ran and finished: its result and timestamps. */
	t_exec(db, "SELECT sluice.complete_job(c.id, c.claim_token, '{\"rows\": 12}')"
	           "  FROM sluice.claim_jobs('test-worker', 1) c");
	call_simple("GET", path, key_a_read, NULL);
	ck_assert_int_eq(R.status, 200);
	ck_assert_str_eq(jstr("job.state"), "done");
	ck_assert_int_eq(jint("job.result.rows"), 12);
	ck_assert_int_eq(jint("job.attempts"), 1);
	ck_assert(api_is_rfc3339(jstr("job.started_at")));
	ck_assert(api_is_rfc3339(jstr("job.finished_at")));
}
END_TEST

static const char *const no_such_ids[] = {
	"999999", "abc", "0", "-1", "1.0", "+1", "0x10", "99999999999999999999", "9223372036854775808",
	"1%20", "%31",
};

START_TEST(get_job_404)
{
	char path[128], message[256];

	post_job("{\"kind\":\"a\"}");
	snprintf(path, sizeof(path), "/api/v1/jobs/%s", no_such_ids[_i]);
	call_simple("GET", path, key_a_read, NULL);
	assert_error(404, "not_found", NULL);
	snprintf(message, sizeof(message), "%s", jstr("error.message"));
	ck_assert_str_eq(message, "no such job");
}
END_TEST

START_TEST(other_org_is_404_on_get_and_delete)
{
	char path[64], missing_msg[256], rid[80];
	long long id = post_job("{\"kind\":\"a\",\"payload\":{\"secret\":\"of org a\"}}");

	/* What a missing job looks like to org B ... */
	call_simple("GET", "/api/v1/jobs/999999", key_b_write, NULL);
	assert_error(404, "not_found", NULL);
	snprintf(missing_msg, sizeof(missing_msg), "%s", jstr("error.message"));

	/* ... is exactly what org A's job looks like to it. */
	snprintf(path, sizeof(path), "/api/v1/jobs/%lld", id);
	call_simple("GET", path, key_b_write, NULL);
	assert_error(404, "not_found", NULL);
	ck_assert_str_eq(jstr("error.message"), missing_msg);
	ck_assert_ptr_null(strstr(R.body, "of org a"));

	call_simple("DELETE", path, key_b_write, NULL);
	assert_error(404, "not_found", NULL);
	ck_assert_str_eq(jstr("error.message"), missing_msg);
	snprintf(rid, sizeof(rid), "%s", t_api_hdr(&R, "X-Request-Id"));
	ck_assert_int_eq(audit_rows(rid, "job.cancel", "refused", 404), 1);
	{
		char want[64];

		snprintf(want, sizeof(want), "%lld", org_b);
		ck_assert_int_eq(q_int("SELECT count(*) FROM sluice.audit WHERE request_id = $1"
		                       " AND org_id = $2::bigint", rid, want), 1);
	}
	/* Untouched. */
	call_simple("GET", path, key_a_read, NULL);
	ck_assert_int_eq(R.status, 200);
	ck_assert_str_eq(jstr("job.state"), "queued");
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job WHERE state = 'queued'"), 1);
}
END_TEST

/* ---- DELETE /api/v1/jobs/{id} -------------------------------------------- */

START_TEST(cancel_200_then_409)
{
	char path[64], rid[80], sql[256], target[64];
	long long id = post_job("{\"kind\":\"a\"}");

	snprintf(path, sizeof(path), "/api/v1/jobs/%lld", id);
	snprintf(target, sizeof(target), "job:%lld", id);
	call_simple("DELETE", path, key_a_write, NULL);
	ck_assert_msg(R.status == 200, "%d %s", R.status, R.body);
	ck_assert_int_eq(jint("job.id"), id);
	ck_assert_str_eq(jstr("job.state"), "cancelled");
	ck_assert(api_is_rfc3339(jstr("job.finished_at")));
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM sluice.job_archive WHERE id = %lld"
	         " AND state = 'cancelled'", id);
	ck_assert_int_eq(t_int(db, sql), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job"), 0);
	snprintf(rid, sizeof(rid), "%s", t_api_hdr(&R, "X-Request-Id"));
	ck_assert_int_eq(audit_rows(rid, "job.cancel", "ok", 200), 1);
	ck_assert_int_eq(q_int("SELECT count(*) FROM sluice.audit WHERE request_id = $1"
	                       " AND target = $2", rid, target), 1);

	call_simple("DELETE", path, key_a_write, NULL);
	assert_error(409, "conflict", NULL);
	ck_assert_ptr_nonnull(strstr(jstr("error.message"), "cancelled"));
	snprintf(rid, sizeof(rid), "%s", t_api_hdr(&R, "X-Request-Id"));
	ck_assert_int_eq(audit_rows(rid, "job.cancel", "refused", 409), 1);
	ck_assert_int_eq(q_int("SELECT count(*) FROM sluice.audit WHERE request_id = $1"
	                       " AND target = $2", rid, target), 1);
}
END_TEST

START_TEST(cancel_running_and_done_jobs)
{
	char path[64];
	long long running = post_job("{\"kind\":\"a\",\"priority\":1}");
	long long done = post_job("{\"kind\":\"b\",\"priority\":2}");

	/* A worker holds the first: cancelling it takes it from the worker. */
	t_exec(db, "SELECT sluice.claim_jobs('test-worker', 1)");
	snprintf(path, sizeof(path), "/api/v1/jobs/%lld", running);
	call_simple("DELETE", path, key_a_write, NULL);
	ck_assert_int_eq(R.status, 200);
	ck_assert_str_eq(jstr("job.state"), "cancelled");
	ck_assert_int_eq(jint("job.attempts"), 1);

	/* The second ran to the end: 409 naming its state. */
	t_exec(db, "SELECT sluice.complete_job(c.id, c.claim_token)"
	           "  FROM sluice.claim_jobs('test-worker', 1) c");
	snprintf(path, sizeof(path), "/api/v1/jobs/%lld", done);
	call_simple("DELETE", path, key_a_write, NULL);
	assert_error(409, "conflict", NULL);
	ck_assert_ptr_nonnull(strstr(jstr("error.message"), "done"));
}
END_TEST

/* ---- GET /api/v1/queue ----------------------------------------------------- */

START_TEST(queue_status_matches_rows)
{
	PGresult *r;
	char org[32];
	const char *params[1] = { org };

	/* Empty: nothing queued, no wait. */
	call_simple("GET", "/api/v1/queue", key_a_read, NULL);
	ck_assert_int_eq(R.status, 200);
	ck_assert_str_eq(R.body, "{\"queue_status\":{\"total_queued\":0,\"your_requests\":0,"
	                         "\"positions\":[],\"estimated_wait_seconds\":0},\"rate_limits\":{}}");

	/* Org B's job at priority 2 goes before org A's two at priority 3. */
	call_simple("POST", "/api/v1/jobs", key_b_write, "{\"kind\":\"b\",\"priority\":2}");
	ck_assert_int_eq(R.status, 201);
	post_job("{\"kind\":\"a\"}");
	post_job("{\"kind\":\"a\"}");
	/* Scheduled for later: not queued yet, so not counted. */
	post_job("{\"kind\":\"a\",\"run_at\":\"2099-01-01T00:00:00Z\"}");

	call_simple("GET", "/api/v1/queue", key_a_read, NULL);
	ck_assert_int_eq(R.status, 200);
	ck_assert_int_eq(json_object_object_length(R.json), 2);
	ck_assert_int_eq(json_object_object_length(t_json_get(R.json, "queue_status")), 4);
	ck_assert_int_eq(jint("queue_status.total_queued"), 3);
	ck_assert_int_eq(jint("queue_status.your_requests"), 2);
	ck_assert_int_eq(json_object_array_length(t_json_get(R.json, "queue_status.positions")), 2);
	ck_assert_int_eq(jint("queue_status.positions.0"), 2);
	ck_assert_int_eq(jint("queue_status.positions.1"), 3);
	/* No worker has run anything: no rate to estimate from. */
	ck_assert_ptr_null(t_json_get(R.json, "queue_status.estimated_wait_seconds"));
	ck_assert(json_object_object_get_ex(t_json_get(R.json, "queue_status"), "estimated_wait_seconds",
	                                    NULL));
	ck_assert_str_eq(jtext(t_json_get(R.json, "rate_limits")), "{}");

	/* The same numbers as the rows and sluice.queue_status(). */
	snprintf(org, sizeof(org), "%lld", org_a);
	r = t_query(db, "SELECT (SELECT count(*) FROM sluice.job WHERE org_id = $1::bigint"
	                "          AND state <> 'running' AND run_at <= now()),"
	                "       (SELECT count(*) FROM sluice.job WHERE state <> 'running'"
	                "          AND run_at <= now()),"
	                "       (SELECT to_json(positions)::text FROM sluice.queue_status($1::bigint))",
	            1, params);
	{
		char want[64];

		snprintf(want, sizeof(want), "%lld", jint("queue_status.your_requests"));
		ck_assert_str_eq(PQgetvalue(r, 0, 0), want);
		snprintf(want, sizeof(want), "%lld", jint("queue_status.total_queued"));
		ck_assert_str_eq(PQgetvalue(r, 0, 1), want);
	}
	ck_assert_str_eq(jtext(t_json_get(R.json, "queue_status.positions")), PQgetvalue(r, 0, 2));
	PQclear(r);

	/* Org B sees its own share of the same queue. */
	call_simple("GET", "/api/v1/queue", key_b_write, NULL);
	ck_assert_int_eq(jint("queue_status.your_requests"), 1);
	ck_assert_int_eq(jint("queue_status.positions.0"), 1);

	/* Seed 001's path answers the same. */
	{
		char *plain = strdup(R.body);

		call_simple("GET", "/api/v1/connectors/queue", key_b_write, NULL);
		ck_assert_int_eq(R.status, 200);
		ck_assert_str_eq(R.body, plain);
		free(plain);
	}
}
END_TEST

/* ---- GET /metrics ------------------------------------------------------------ */

static int
count_lines_starting(const char *text, const char *prefix)
{
	int n = 0;
	const char *p = text;

	while (p && *p) {
		if (sl_starts_with(p, prefix))
			n++;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return n;
}

START_TEST(metrics_text_format)
{
	const char *p;

	post_job("{\"kind\":\"report.fetch\"}");
	post_job("{\"kind\":\"report.fetch\"}");
	post_job("{\"kind\":\"sync\",\"priority\":1}");
	post_job("{\"kind\":\"sync\",\"run_at\":\"2099-01-01T00:00:00Z\"}");
	/* Another org's jobs are not this org's business. */
	call_simple("POST", "/api/v1/jobs", key_b_write, "{\"kind\":\"other.tenant\"}");
	ck_assert_int_eq(R.status, 201);
	call_simple("GET", "/metrics", key_a_admin, NULL);
	ck_assert_ptr_null(strstr(R.body, "other.tenant"));
	ck_assert_int_eq(R.status, 200);
	ck_assert_str_eq(t_api_hdr(&R, "Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
	ck_assert_ptr_nonnull(strstr(R.body,
	                             "\nsluice_jobs{state=\"queued\",kind=\"report.fetch\",priority=\"3\"} 2\n"));
	ck_assert_ptr_nonnull(strstr(R.body, "\nsluice_jobs{state=\"queued\",kind=\"sync\",priority=\"1\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(R.body,
	                             "\nsluice_jobs{state=\"scheduled\",kind=\"sync\",priority=\"3\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(R.body, "\nsluice_workers{status=\"busy\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(R.body, "\nsluice_up 1\n"));
	/* One HELP and one TYPE per metric name. */
	ck_assert_int_eq(count_lines_starting(R.body, "# HELP sluice_jobs "), 1);
	ck_assert_int_eq(count_lines_starting(R.body, "# TYPE sluice_jobs gauge"), 1);
	ck_assert_int_eq(count_lines_starting(R.body, "# HELP sluice_up "), 1);
	ck_assert_int_eq(count_lines_starting(R.body, "# TYPE sluice_up gauge"), 1);
	ck_assert_int_eq(count_lines_starting(R.body, "# HELP sluice_workers "), 1);
	/* Every line is a comment or "name{labels} number". */
	for (p = R.body; *p; p = strchr(p, '\n') + 1) {
		const char *eol = strchr(p, '\n'), *sp;

		ck_assert_ptr_nonnull(eol);
		if (*p == '#')
			continue;
		ck_assert(isalpha((unsigned char)*p));
		sp = memchr(p, ' ', (size_t)(eol - p));
		ck_assert_ptr_nonnull(sp);
		ck_assert_msg(strspn(sp + 1, "0123456789.e+-") == (size_t)(eol - sp - 1),
		              "bad sample line: %.*s", (int)(eol - p), p);
	}
}
END_TEST

/* ---- request ids, secrets, failures ------------------------------------------ */

static int
generated_id(const char *id)
{
	return strlen(id) == 24 && strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	                                      "0123456789") == 24;
}

START_TEST(request_id_on_every_answer)
{
	static const struct {
		const char *method, *path;
		int key, status;
		const char *body;
	} calls[] = {
		{ "GET", "/health", 0, 200, NULL },
		{ "POST", "/api/v1/jobs", 1, 201, "{\"kind\":\"a\"}" },
		{ "POST", "/api/v1/jobs", 1, 400, "{" },
		{ "POST", "/api/v1/jobs", 1, 422, "{}" },
		{ "GET", "/api/v1/jobs/1", 1, 200, NULL },
		{ "GET", "/api/v1/jobs/77", 1, 404, NULL },
		{ "GET", "/api/v1/queue", 0, 401, NULL },
		{ "GET", "/metrics", 1, 200, NULL },
		{ "GET", "/nope", 0, 404, NULL },
		{ "PUT", "/api/v1/queue", 0, 405, NULL },
	};
	char seen[sizeof(calls) / sizeof(calls[0])][80];
	size_t i, j;

	for (i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		call_simple(calls[i].method, calls[i].path, calls[i].key ? key_a_admin : NULL,
		            calls[i].body);
		ck_assert_msg(R.status == calls[i].status, "%s %s: %d", calls[i].method, calls[i].path,
		              R.status);
		snprintf(seen[i], sizeof(seen[i]), "%s", t_api_hdr(&R, "X-Request-Id"));
		ck_assert_msg(generated_id(seen[i]), "bad request id \"%s\"", seen[i]);
		if (R.status >= 400)
			ck_assert_str_eq(jstr("error.request_id"), seen[i]);
		for (j = 0; j < i; j++)
			ck_assert_str_ne(seen[i], seen[j]);
	}
	/* The log line of a request carries its id too. */
	ck_assert_ptr_nonnull(strstr(R.log, seen[i - 1]));
}
END_TEST

START_TEST(incoming_request_id)
{
	char rid[80];

	call(&(struct t_api_req){ .method = "GET", .path = "/nope", .request_id = "edge-7f3a.b_C" });
	ck_assert_str_eq(t_api_hdr(&R, "X-Request-Id"), "edge-7f3a.b_C");
	ck_assert_str_eq(jstr("error.request_id"), "edge-7f3a.b_C");

	/* Kept in the audit row as well. */
	call(&(struct t_api_req){ .method = "POST", .path = "/api/v1/jobs", .key = key_a_write,
	                          .body = "{\"kind\":\"a\"}", .request_id = "trace-123" });
	ck_assert_int_eq(R.status, 201);
	ck_assert_int_eq(audit_rows("trace-123", "job.create", "ok", 201), 1);

	/* Anything else is replaced, never echoed. */
	call(&(struct t_api_req){ .method = "GET", .path = "/nope", .request_id = "bad id\"}" });
	snprintf(rid, sizeof(rid), "%s", t_api_hdr(&R, "X-Request-Id"));
	ck_assert(generated_id(rid));
	call(&(struct t_api_req){ .method = "GET", .path = "/nope", .request_id =
	                          "12345678901234567890123456789012345678901234567890123456789012345" });
	snprintf(rid, sizeof(rid), "%s", t_api_hdr(&R, "X-Request-Id"));
	ck_assert(generated_id(rid));
}
END_TEST

START_TEST(key_never_logged_or_audited)
{
	unsigned char digest[32];
	char hex[65], prefix[11], path[64];
	PGresult *r;
	int i;
	long long id;

	sl_sha256(key_a_write, strlen(key_a_write), digest);
	sl_hex(digest, sizeof(digest), hex);
	snprintf(prefix, sizeof(prefix), "%.10s", key_a_write);

	/* Successes and refusals, at the most verbose log level. */
	call(&(struct t_api_req){ .method = "POST", .path = "/api/v1/jobs", .key = key_a_write,
	                          .body = "{\"kind\":\"a\"}", .log_level = "debug" });
	ck_assert_int_eq(R.status, 201);
	id = jint("job.id");
	ck_assert_ptr_null(strstr(R.out, key_a_write));
	ck_assert_ptr_null(strstr(R.log, key_a_write));
	ck_assert_ptr_null(strstr(R.log, hex));
	snprintf(path, sizeof(path), "/api/v1/jobs/%lld", id);
	for (i = 0; i < 2; i++) {
		call(&(struct t_api_req){ .method = "DELETE", .path = path, .key = key_a_write,
		                          .log_level = "debug" });
		ck_assert_ptr_null(strstr(R.out, key_a_write));
		ck_assert_ptr_null(strstr(R.log, key_a_write));
	}
	call(&(struct t_api_req){ .method = "POST", .path = "/api/v1/jobs", .key = key_a_write,
	                          .body = "{\"kind\":1}", .log_level = "debug" });
	ck_assert_int_eq(R.status, 422);
	ck_assert_ptr_null(strstr(R.log, key_a_write));
	/* A failure that is logged in full. */
	t_exec(db, "ALTER FUNCTION sluice.queue_status(bigint, integer) RENAME TO queue_status_gone");
	call(&(struct t_api_req){ .method = "GET", .path = "/api/v1/queue", .key = key_a_write,
	                          .log_level = "debug" });
	ck_assert_int_eq(R.status, 500);
	ck_assert_ptr_nonnull(strstr(R.log, "request failed"));
	ck_assert_ptr_null(strstr(R.log, key_a_write));

	/* No audit row holds the key, its hash, or even its prefix. */
	ck_assert_int_ge(t_int(db, "SELECT count(*) FROM sluice.audit"), 4);
	r = t_query(db, "SELECT a::text FROM sluice.audit a", 0, NULL);
	for (i = 0; i < PQntuples(r); i++) {
		const char *row = PQgetvalue(r, i, 0);

		ck_assert_ptr_null(strstr(row, key_a_write));
		ck_assert_ptr_null(strstr(row, prefix));
		ck_assert_ptr_null(strstr(row, hex));
		ck_assert_ptr_null(strstr(row, "Bearer"));
	}
	PQclear(r);
}
END_TEST

START_TEST(internal_error_500_leaks_no_sql)
{
	t_exec(db, "ALTER FUNCTION sluice.queue_status(bigint, integer) RENAME TO queue_status_gone");
	call_simple("GET", "/api/v1/queue", key_a_read, NULL);
	assert_error(500, "internal_error", NULL);
	ck_assert_ptr_null(strstr(R.body, "queue_status"));
	ck_assert_ptr_null(strstr(R.body, "function"));
	ck_assert_ptr_null(strstr(R.body, "SELECT"));
	/* The operator's side has the cause, under the same request id. */
	ck_assert_ptr_nonnull(strstr(R.log, "queue_status"));
	ck_assert_ptr_nonnull(strstr(R.log, jstr("error.request_id")));

	/* A failed mutating call is audited as failed. */
	t_exec(db, "ALTER FUNCTION sluice.enqueue_many(bigint, jsonb) RENAME TO enqueue_many_gone");
	call_simple("POST", "/api/v1/jobs", key_a_write, "{\"kind\":\"a\"}");
	assert_error(500, "internal_error", NULL);
	ck_assert_int_eq(audit_rows(jstr("error.request_id"), "job.create", "failed", 500), 1);
	ck_assert_int_eq(jobs_in_db(), 0);

	/* No configuration: still a well-formed JSON 500. */
	call(&(struct t_api_req){ .method = "GET", .path = "/api/v1/queue", .key = key_a_read,
	                          .db_url = "" });
	assert_error(500, "internal_error", NULL);
}
END_TEST

START_TEST(database_errors_map_to_statuses)
{
	/* A constraint the API does not check itself becomes a 422, not a 500. */
	t_exec(db, "ALTER TABLE sluice.job ADD CONSTRAINT test_no_bad CHECK (kind <> 'forbidden.kind')");
	call_simple("POST", "/api/v1/jobs", key_a_write, "{\"kind\":\"forbidden.kind\"}");
	assert_error(422, "validation_failed", NULL);
	ck_assert_ptr_null(strstr(R.body, "test_no_bad"));
	ck_assert_int_eq(jobs_in_db(), 0);

	/*
	 * A \u0000 in a payload member's name reaches jsonb, which refuses it
	 * (SQLSTATE 22P05): a data exception is the client's value, 422 with
	 * PostgreSQL's words for it, which name the value and not our SQL.
	 */
	call_simple("POST", "/api/v1/jobs", key_a_write,
	            "{\"kind\":\"a\",\"payload\":{\"k\\u0000\":1}}");
	assert_error(422, "validation_failed", NULL);
	ck_assert_msg(sl_starts_with(jstr("error.message"), "invalid value: "), "%s", R.body);
	ck_assert_ptr_null(strstr(R.body, "enqueue"));
	ck_assert_int_eq(jobs_in_db(), 0);
	ck_assert_int_eq(audit_rows(jstr("error.request_id"), "job.create", "refused", 422), 1);
}
END_TEST

/* ---- the pure parts, table-driven ------------------------------------------------ */

static const struct {
	const char *s;
	int ok;
} timestamps[] = {
	{ "2024-12-23T10:00:00Z", 1 }, { "2024-12-23t10:00:00z", 1 },
	{ "2024-12-23T10:00:00.123456Z", 1 }, { "2024-12-23T10:00:00+02:00", 1 },
	{ "2024-12-23T10:00:00-11:30", 1 }, { "2024-02-29T00:00:00Z", 1 },
	{ "2000-02-29T00:00:00Z", 1 }, { "2016-12-31T23:59:60Z", 1 }, { "0001-01-01T00:00:00Z", 1 },
	{ "1900-02-29T00:00:00Z", 0 }, { "2024-12-23T10:00:00", 0 }, { "2024-12-23 10:00:00Z", 0 },
	{ "2024-12-23T24:00:00Z", 0 }, { "2024-12-23T10:60:00Z", 0 }, { "2024-12-32T10:00:00Z", 0 },
	{ "2024-00-01T00:00:00Z", 0 }, { "2024-04-31T00:00:00Z", 0 }, { "2024-12-23T10:00:00.Z", 0 },
	{ "2024-12-23T10:00:00+0200", 0 }, { "2024-12-23T10:00:00+24:00", 0 },
	{ "2024-12-23T10:00:00Z ", 0 }, { "24-12-23T10:00:00Z", 0 }, { "", 0 }, { "now", 0 },
	{ "2024-12-23T10:00:00.1234567890Z", 0 },
};

START_TEST(rfc3339_table)
{
	ck_assert_msg(api_is_rfc3339(timestamps[_i].s) == timestamps[_i].ok, "%s", timestamps[_i].s);
}
END_TEST

START_TEST(uuid_kind_utf8_tables)
{
	ck_assert(api_is_uuid("0b6e3d1c-5f1a-4c1e-9a53-2f0d7c1b9e42"));
	ck_assert(api_is_uuid("0B6E3D1C-5F1A-4C1E-9A53-2F0D7C1B9E42"));
	ck_assert(!api_is_uuid("0b6e3d1c-5f1a-4c1e-9a53-2f0d7c1b9e4"));
	ck_assert(!api_is_uuid("0b6e3d1c-5f1a-4c1e-9a53-2f0d7c1b9e421"));
	ck_assert(!api_is_uuid("{0b6e3d1c-5f1a-4c1e-9a53-2f0d7c1b9e42}"));
	ck_assert(!api_is_uuid("0b6e3d1c5f1a4c1e9a532f0d7c1b9e42"));
	ck_assert(!api_is_uuid("gb6e3d1c-5f1a-4c1e-9a53-2f0d7c1b9e42"));
	ck_assert(api_is_kind("a"));
	ck_assert(api_is_kind("report.fetch:v2-x_y"));
	ck_assert(!api_is_kind(""));
	ck_assert(!api_is_kind("A"));
	ck_assert(!api_is_kind("_a"));
	ck_assert(!api_is_kind("a b"));
	ck_assert(sl_utf8_valid("caf\xc3\xa9 \xf0\x9f\x98\x80", 10));
	ck_assert(!sl_utf8_valid("\xc0\xaf", 2));           /* overlong '/' */
	ck_assert(!sl_utf8_valid("\xed\xa0\x80", 3));       /* a UTF-16 surrogate */
	ck_assert(!sl_utf8_valid("\xf4\x90\x80\x80", 4));   /* past U+10FFFF */
	ck_assert(!sl_utf8_valid("\xe2\x82", 2));           /* cut short */
	ck_assert(!sl_utf8_valid("\xff", 1));
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("api");
	TCase *tc;

	tc = tcase_create("health");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, health_ok);
	tcase_add_test(tc, health_database_unreachable_503);
	suite_add_tcase(s, tc);

	tc = tcase_create("routing");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, unknown_route_404, 0, sizeof(unknown_paths) / sizeof(unknown_paths[0]));
	tcase_add_loop_test(tc, wrong_method_405_with_allow, 0,
	                    sizeof(wrong_methods) / sizeof(wrong_methods[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("auth");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, no_key_401);
	tcase_add_loop_test(tc, bad_key_401, 0,
	                    sizeof(bad_authorizations) / sizeof(bad_authorizations[0]));
	tcase_add_test(tc, auth_scheme_is_case_insensitive);
	tcase_add_test(tc, revoked_key_401);
	tcase_add_test(tc, read_key_post_403_audited);
	suite_add_tcase(s, tc);

	tc = tcase_create("create");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, create_single_job_201);
	tcase_add_test(tc, create_with_defaults);
	tcase_add_test(tc, create_batch_201);
	tcase_add_test(tc, create_batch_of_exactly_1000);
	tcase_add_test(tc, dedupe_returns_the_first_job);
	tcase_add_loop_test(tc, malformed_json_400, 0, sizeof(malformed) / sizeof(malformed[0]));
	tcase_add_loop_test(tc, invalid_field_422_names_the_field, 0,
	                    sizeof(invalid) / sizeof(invalid[0]));
	tcase_add_test(tc, dedupe_key_counts_characters);
	tcase_add_test(tc, too_many_jobs_422);
	tcase_add_test(tc, body_too_large_413);
	tcase_add_test(tc, content_length_and_type_checked);
	suite_add_tcase(s, tc);

	tc = tcase_create("read_cancel");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, get_job_200);
	tcase_add_loop_test(tc, get_job_404, 0, sizeof(no_such_ids) / sizeof(no_such_ids[0]));
	tcase_add_test(tc, other_org_is_404_on_get_and_delete);
	tcase_add_test(tc, cancel_200_then_409);
	tcase_add_test(tc, cancel_running_and_done_jobs);
	suite_add_tcase(s, tc);

	tc = tcase_create("queue_metrics");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, queue_status_matches_rows);
	tcase_add_test(tc, metrics_text_format);
	suite_add_tcase(s, tc);

	tc = tcase_create("cross_cutting");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, request_id_on_every_answer);
	tcase_add_test(tc, incoming_request_id);
	tcase_add_test(tc, key_never_logged_or_audited);
	tcase_add_test(tc, internal_error_500_leaks_no_sql);
	tcase_add_test(tc, database_errors_map_to_statuses);
	suite_add_tcase(s, tc);

	/* No database needed. */
	tc = tcase_create("pure");
	tcase_add_loop_test(tc, rfc3339_table, 0, sizeof(timestamps) / sizeof(timestamps[0]));
	tcase_add_test(tc, uuid_kind_utf8_tables);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return t_run(make_suite());
}
