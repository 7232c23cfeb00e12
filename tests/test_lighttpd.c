/* test_lighttpd.c — sluice-api behind a real lighttpd on loopback: the CGI wiring end to end. */
#include <check.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/str.h"
#include "tests/harness.h"

#define LIGHTTPD "/usr/sbin/lighttpd"

/* One HTTP exchange through libcurl. */
struct http {
	long          status;
	struct sl_buf headers;
	struct sl_buf body;
	json_object  *json;
};

static size_t
collect(char *p, size_t size, size_t n, void *arg)
{
	/* Capped: an overflow aborts the transfer instead of growing without bound. */
	return sl_buf_add(arg, p, size * n) ? 0 : size * n;
}

static void
http_clear(struct http *h)
{
	sl_buf_release(&h->headers);
	sl_buf_release(&h->body);
	json_object_put(h->json);
	h->json = NULL;
	h->status = 0;
}

/*
 * method url with the key (NULL: none) and body (NULL: none).  Returns
 * libcurl's result; on CURLE_OK h holds the answer, its body parsed when JSON.
 */
static CURLcode
http_do(struct http *h, const char *method, const char *url, const char *key,
        const char *body, const char *request_id)
{
	struct curl_slist *hdrs = NULL;
	char line[128];
	CURL *c = curl_easy_init();
	CURLcode rc;

	ck_assert_ptr_nonnull(c);
	sl_buf_init(&h->headers, 1u << 16);
	sl_buf_init(&h->body, 1u << 22);
	h->json = NULL;
	h->status = 0;
	if (key) {
		snprintf(line, sizeof(line), "Authorization: Bearer %s", key);
		hdrs = curl_slist_append(hdrs, line);
	}
	if (request_id) {
		snprintf(line, sizeof(line), "X-Request-Id: %s", request_id);
		hdrs = curl_slist_append(hdrs, line);
	}
	if (body) {
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &h->body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &h->headers);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	rc = curl_easy_perform(c);
	if (rc == CURLE_OK) {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &h->status);
		if (h->body.len && strstr(h->headers.data, "application/json"))
			h->json = json_tokener_parse(h->body.data);
	}
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	return rc;
}

/* A header of the last answer (case-insensitive name), copied; "" when absent. */
static const char *
header(const struct http *h, const char *name)
{
	static char value[512];
	const char *p = h->headers.data;
	size_t n = strlen(name);

	value[0] = '\0';
	while (*p) {
		size_t len = strcspn(p, "\r\n");

		if (len > n && !strncasecmp(p, name, n) && p[n] == ':') {
			const char *v = p + n + 1;

			v += strspn(v, " ");
			snprintf(value, sizeof(value), "%.*s", (int)(len - (size_t)(v - p)), v);
			return value;
		}
		p += len;
		p += strspn(p, "\r\n");
	}
	return value;
}

static const char *
jstr(const struct http *h, const char *a, const char *b)
{
	json_object *v = h->json;

	if (a && !json_object_object_get_ex(v, a, &v))
		return NULL;
	if (b && !json_object_object_get_ex(v, b, &v))
		return NULL;
	return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static long long
jint(const struct http *h, const char *a, const char *b)
{
	json_object *v = h->json;

	ck_assert_msg(json_object_object_get_ex(v, a, &v), "no %s in %s", a, h->body.data);
	if (b)
		ck_assert_msg(json_object_object_get_ex(v, b, &v), "no %s.%s in %s", a, b, h->body.data);
	ck_assert(json_object_is_type(v, json_type_int));
	return json_object_get_int64(v);
}

/* tools/lighttpd.conf.in with every @NAME@ replaced; sl_free() it. */
static char *
fill_template(const char *const *names, const char *const *values, size_t n)
{
	char path[1024], *tmpl, *p, *out;
	struct sl_buf b;
	size_t i;

	snprintf(path, sizeof(path), "%s/tools/lighttpd.conf.in", t_source_dir);
	tmpl = t_slurp(path);
	ck_assert_msg(tmpl != NULL, "cannot read %s", path);
	sl_buf_init(&b, 1u << 20);
	for (p = tmpl; *p;) {
		for (i = 0; i < n; i++) {
			if (sl_starts_with(p, names[i])) {
				ck_assert_int_eq(sl_buf_adds(&b, values[i]), 0);
				p += strlen(names[i]);
				break;
			}
		}
		if (i == n)
			ck_assert_int_eq(sl_buf_addc(&b, *p++), 0);
	}
	free(tmpl);
	ck_assert_msg(!strstr(b.data, "@PORT@") && !strstr(b.data, "@API_BIN@"),
	              "a placeholder was left in:\n%s", b.data);
	out = sl_buf_detach(&b);
	ck_assert_ptr_nonnull(out);
	return out;
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fputs(text, f) >= 0, 1);
	ck_assert_int_eq(fclose(f), 0);
}

static pid_t
start_lighttpd(const char *conf, const char *out_path)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);

		/* A failed assertion ends the test process: lighttpd must not outlive it. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);

		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
			close(fd);
		}
		execl(LIGHTTPD, "lighttpd", "-D", "-f", conf, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Polls GET /health until it answers 200, lighttpd dies, or the deadline passes. */
static int
await_ready(const char *base, pid_t pid, long timeout_ms)
{
	long long deadline = t_now_ms() + timeout_ms;
	char url[256];
	struct http h;

	snprintf(url, sizeof(url), "%s/health", base);
	for (;;) {
		CURLcode rc = http_do(&h, "GET", url, NULL, NULL, NULL);
		long status = h.status;

		http_clear(&h);
		if (rc == CURLE_OK && status == 200)
			return 1;
		if (waitpid(pid, NULL, WNOHANG) == pid || t_now_ms() >= deadline)
			return 0;
		/* Connection refused until lighttpd listens: look again shortly. */
		usleep(20 * 1000);
	}
}

START_TEST(smoke_through_lighttpd)
{
	char dburl[256], state[] = "/tmp/sl-lighttpd-XXXXXX", conf_path[512], out_path[512];
	char port[16], base[64], url[256], cmd[1024], key[64], location[64];
	const char *names[] = { "@PORT@", "@STATE_DIR@", "@API_BIN@", "@DATABASE_URL@", "@LOG_LEVEL@",
		                "@MASTER_KEY_FILE@" };
	const char *values[6];
	char key_path[512];
	char *conf, *errlog;
	struct http h;
	PGconn *db;
	long long org, id;
	pid_t pid;

	ck_assert_msg(access(LIGHTTPD, X_OK) == 0, LIGHTTPD " is not installed");
	t_db_create(dburl, sizeof(dburl));
	db = t_connect(dburl);
	org = t_org(db, "smoke");
	t_key(dburl, org, "write", key);

	ck_assert_ptr_nonnull(mkdtemp(state));
	snprintf(port, sizeof(port), "%d", t_free_port());
	values[0] = port;
	values[1] = state;
	values[2] = t_api_bin;
	values[3] = dburl;
	values[4] = "info";
	/* The master key reaches sluice-api as a file lighttpd names in its environment. */
	snprintf(key_path, sizeof(key_path), "%s/master.key", state);
	write_file(key_path, T_MASTER_KEY "\n");
	ck_assert_int_eq(chmod(key_path, 0600), 0);
	values[5] = key_path;
	conf = fill_template(names, values, 6);
	snprintf(conf_path, sizeof(conf_path), "%s/lighttpd.conf", state);
	snprintf(out_path, sizeof(out_path), "%s/lighttpd.out", state);
	write_file(conf_path, conf);
	free(conf);

	ck_assert_int_eq(curl_global_init(CURL_GLOBAL_DEFAULT), 0);
	pid = start_lighttpd(conf_path, out_path);
	snprintf(base, sizeof(base), "http://127.0.0.1:%s", port);
	if (!await_ready(base, pid, 30000)) {
		char *out = t_slurp(out_path);

		t_stop(pid, SIGTERM);
		ck_abort_msg("lighttpd did not become ready; its output:\n%s", out ? out : "(none)");
	}

	/* Enqueue through the server: lighttpd hands over method, path, headers and body. */
	snprintf(url, sizeof(url), "%s/api/v1/jobs", base);
	ck_assert_int_eq(http_do(&h, "POST", url, key,
	                         "{\"kind\":\"smoke.test\",\"payload\":{\"n\":1},\"priority\":2}",
	                         "smoke-1"), CURLE_OK);
	ck_assert_msg(h.status == 201, "%ld %s", h.status, h.body.data);
	ck_assert_str_eq(header(&h, "X-Request-Id"), "smoke-1");
	ck_assert_str_eq(jstr(&h, "job", "kind"), "smoke.test");
	ck_assert_str_eq(jstr(&h, "job", "state"), "queued");
	id = jint(&h, "job", "id");
	snprintf(location, sizeof(location), "/api/v1/jobs/%lld", id);
	ck_assert_str_eq(header(&h, "Location"), location);
	http_clear(&h);

	/* Read it back. */
	snprintf(url, sizeof(url), "%s%s", base, location);
	ck_assert_int_eq(http_do(&h, "GET", url, key, NULL, NULL), CURLE_OK);
	ck_assert_int_eq(h.status, 200);
	ck_assert_str_eq(header(&h, "Content-Type"), "application/json");
	ck_assert_int_eq(jint(&h, "job", "id"), id);
	ck_assert_int_eq(jint(&h, "job", "priority"), 2);
	{
		json_object *payload = NULL;

		ck_assert(json_object_object_get_ex(json_object_object_get(h.json, "job"), "payload",
		                                    &payload));
		ck_assert_int_eq(json_object_get_int(json_object_object_get(payload, "n")), 1);
	}
	http_clear(&h);

	/* The queue, in seed 001's shape. */
	snprintf(url, sizeof(url), "%s/api/v1/queue", base);
	ck_assert_int_eq(http_do(&h, "GET", url, key, NULL, NULL), CURLE_OK);
	ck_assert_int_eq(h.status, 200);
	ck_assert_str_eq(h.body.data, "{\"queue_status\":{\"total_queued\":1,\"your_requests\":1,"
	                              "\"positions\":[1],\"estimated_wait_seconds\":null},"
	                              "\"rate_limits\":{}}");
	http_clear(&h);

	/* A connector with a secret: sluice-api found the master key through lighttpd. */
	snprintf(url, sizeof(url), "%s/api/v1/connectors", base);
	ck_assert_int_eq(http_do(&h, "POST", url, key,
	                         "{\"type\":\"ttd\",\"label\":\"Smoke TTD\","
	                         "\"credentials\":{\"api_key\":\"smoke-secret-4f1e9a7c3b\"}}", NULL),
	                 CURLE_OK);
	ck_assert_msg(h.status == 201, "%ld %s", h.status, h.body.data);
	ck_assert_str_eq(jstr(&h, "connector", "type"), "ttd");
	ck_assert_msg(!strstr(h.body.data, "smoke-secret-4f1e9a7c3b"), "the secret came back");
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.credential"), 1);
	http_clear(&h);

	/* No key: 401 with the challenge. */
	snprintf(url, sizeof(url), "%s/api/v1/queue", base);
	ck_assert_int_eq(http_do(&h, "GET", url, NULL, NULL, NULL), CURLE_OK);
	ck_assert_int_eq(h.status, 401);
	ck_assert_str_eq(header(&h, "WWW-Authenticate"), "Bearer realm=\"sluice\"");
	ck_assert_str_eq(jstr(&h, "error", "code"), "unauthorized");
	http_clear(&h);

	/* Unknown route: 404, JSON error carrying the request id. */
	snprintf(url, sizeof(url), "%s/nope", base);
	ck_assert_int_eq(http_do(&h, "GET", url, key, NULL, NULL), CURLE_OK);
	ck_assert_int_eq(h.status, 404);
	ck_assert_str_eq(jstr(&h, "error", "code"), "not_found");
	ck_assert_str_eq(jstr(&h, "error", "request_id"), header(&h, "X-Request-Id"));
	http_clear(&h);

	/* Wrong method: 405 with Allow, as lighttpd passed it on. */
	snprintf(url, sizeof(url), "%s/api/v1/jobs", base);
	ck_assert_int_eq(http_do(&h, "GET", url, key, NULL, NULL), CURLE_OK);
	ck_assert_int_eq(h.status, 405);
	ck_assert_str_eq(header(&h, "Allow"), "POST");
	ck_assert_str_eq(jstr(&h, "error", "code"), "method_not_allowed");
	http_clear(&h);

	/*
	 * lighttpd exits 0 after SIGTERM, or 1 when a client connection was
	 * still open at that moment (its main() keeps rc = 1 unless no
	 * connection is left); anything else is a crash.
	 */
	{
		int code = t_stop(pid, SIGTERM);

		ck_assert_msg(code == 0 || code == 1, "lighttpd exited with %d", code);
	}
	curl_global_cleanup();

	/* The row is there; the CGI's log lines reached api.log (server.breakagelog), without the key. */
	{
		char sql[128];

		snprintf(sql, sizeof(sql), "SELECT count(*) FROM sluice.job WHERE id = %lld AND priority = 2",
		         id);
		ck_assert_int_eq(t_int(db, sql), 1);
	}
	{
		char api_log[600];

		snprintf(api_log, sizeof(api_log), "%s/api.log", state);
		errlog = t_slurp(api_log);
	}
	ck_assert_ptr_nonnull(errlog);
	/*
	 * One line per call, each written before its answer: lighttpd ends a CGI
	 * as soon as it has the whole answer, so a line logged after it is lost.
	 */
	ck_assert_ptr_nonnull(strstr(errlog, "\"request_id\":\"smoke-1\",\"method\":\"POST\","
	                                     "\"path\":\"/api/v1/jobs\",\"status\":201"));
	ck_assert_ptr_nonnull(strstr(errlog, "\"method\":\"GET\",\"path\":\"/api/v1/queue\","
	                                     "\"status\":200"));
	ck_assert_ptr_nonnull(strstr(errlog, "\"method\":\"GET\",\"path\":\"/api/v1/queue\","
	                                     "\"status\":401"));
	ck_assert_ptr_nonnull(strstr(errlog, "\"path\":\"/nope\",\"status\":404"));
	ck_assert_ptr_nonnull(strstr(errlog, "\"method\":\"GET\",\"path\":\"/api/v1/jobs\","
	                                     "\"status\":405"));
	ck_assert_ptr_null(strstr(errlog, key));
	free(errlog);
	PQfinish(db);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", state);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("lighttpd");
	TCase *tc = tcase_create("smoke");

	tcase_add_test(tc, smoke_through_lighttpd);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return t_run(make_suite());
}
