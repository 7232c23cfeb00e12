/* api_client.c — runs the built sluice-api the way a web server does (CGI/1.1) and reads its answer. */
#include "tests/api_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <unistd.h>

#include "common/str.h"
#include "tests/harness.h"

#define ENV_MAX   24
#define ENV_BYTES 4096

void
t_api_resp_clear(struct t_api_resp *r)
{
	free(r->out);
	free(r->headers);
	free(r->log);
	json_object_put(r->json);
	memset(r, 0, sizeof(*r));
}

/* All of fd from its start, as a heap string. */
static char *
read_fd(int fd)
{
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap);
	ssize_t n;

	ck_assert_ptr_nonnull(buf);
	lseek(fd, 0, SEEK_SET);
	while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
		len += (size_t)n;
		if (cap - len < 2) {
			cap *= 2;
			buf = realloc(buf, cap);
			ck_assert_ptr_nonnull(buf);
		}
	}
	buf[len] = '\0';
	return buf;
}

/* An anonymous temporary file, open for reading and writing. */
static int
temp_fd(void)
{
	char path[] = "/tmp/sl-api-test-XXXXXX";
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	unlink(path);
	return fd;
}

const char *
t_api_hdr(const struct t_api_resp *r, const char *name)
{
	static char value[ENV_BYTES];
	const char *p = r->headers;
	size_t n = strlen(name);

	value[0] = '\0';
	while (p && *p) {
		const char *eol = strstr(p, "\r\n");
		size_t len = eol ? (size_t)(eol - p) : strlen(p);

		if (len > n && !strncasecmp(p, name, n) && p[n] == ':') {
			const char *v = p + n + 1;

			while (*v == ' ')
				v++;
			snprintf(value, sizeof(value), "%.*s", (int)(len - (size_t)(v - p)), v);
			return value;
		}
		p = eol ? eol + 2 : p + len;
	}
	return value;
}

/* The environment being built for the child: "NAME=value" strings, NULL-terminated. */
struct env {
	char  *ptr[ENV_MAX + 1];
	char   store[ENV_MAX][ENV_BYTES];
	size_t n;
};

static void
add_env(struct env *e, const char *name, const char *value)
{
	ck_assert_uint_lt(e->n, ENV_MAX);
	snprintf(e->store[e->n], sizeof(e->store[e->n]), "%s=%s", name, value);
	e->ptr[e->n] = e->store[e->n];
	e->ptr[++e->n] = NULL;
}

/* The CGI meta-variables of rq (RFC 3875 4.1), with what passes through from this process. */
static void
build_env(const struct t_api_req *rq, size_t body_len, struct env *e)
{
	static const char *const pass[] = {
		"PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS",
	};
	char len[32];
	size_t i;

	e->n = 0;
	e->ptr[0] = NULL;
	for (i = 0; i < sizeof(pass) / sizeof(pass[0]); i++) {
		if (getenv(pass[i]))
			add_env(e, pass[i], getenv(pass[i]));
	}
	add_env(e, "GATEWAY_INTERFACE", "CGI/1.1");
	add_env(e, "SERVER_PROTOCOL", "HTTP/1.1");
	add_env(e, "SERVER_SOFTWARE", "sluice-tests");
	add_env(e, "REMOTE_ADDR", "127.0.0.1");
	add_env(e, "REQUEST_METHOD", rq->method);
	add_env(e, "PATH_INFO", rq->path);
	add_env(e, "QUERY_STRING", rq->query ? rq->query : "");
	add_env(e, "SLUICE_LOG_LEVEL", rq->log_level ? rq->log_level : "info");
	if (rq->db_url && *rq->db_url)
		add_env(e, "DATABASE_URL", rq->db_url);
	if (!rq->no_master_key && getenv("SLUICE_MASTER_KEY"))
		add_env(e, "SLUICE_MASTER_KEY", getenv("SLUICE_MASTER_KEY"));
	if (getenv("SLUICE_CA_FILE"))
		add_env(e, "SLUICE_CA_FILE", getenv("SLUICE_CA_FILE"));
	if (rq->authorization) {
		add_env(e, "HTTP_AUTHORIZATION", rq->authorization);
	} else if (rq->key) {
		char auth[128];

		snprintf(auth, sizeof(auth), "Bearer %s", rq->key);
		add_env(e, "HTTP_AUTHORIZATION", auth);
	}
	if (rq->request_id)
		add_env(e, "HTTP_X_REQUEST_ID", rq->request_id);
	if (rq->body || rq->content_type) {
		const char *ct = rq->content_type ? rq->content_type : "application/json";

		if (*ct)
			add_env(e, "CONTENT_TYPE", ct);
	}
	snprintf(len, sizeof(len), "%zu", body_len);
	if (rq->content_length) {
		if (*rq->content_length)
			add_env(e, "CONTENT_LENGTH", rq->content_length);
	} else if (rq->body) {
		add_env(e, "CONTENT_LENGTH", len);
	}
}

/* Splits r->out into its header block and body and checks them (see t_api_call). */
static void
parse_answer(const struct t_api_req *rq, struct t_api_resp *r)
{
	char *sep = strstr(r->out, "\r\n\r\n");
	long long clen;

	ck_assert_msg(sep != NULL, "no header block in:\n%s", r->out);
	r->headers = strndup(r->out, (size_t)(sep - r->out) + 2);
	ck_assert_ptr_nonnull(r->headers);
	r->body = sep + 4;
	r->status = 200;
	if (*t_api_hdr(r, "Status")) {
		long long st;

		ck_assert_msg(sl_parse_lln(t_api_hdr(r, "Status"), 3, 100, 599, &st) == 0,
		              "bad Status: %s", t_api_hdr(r, "Status"));
		r->status = (int)st;
	}
	/* The program says how long its body is; it must be right (HEAD: no body at all). */
	ck_assert_int_eq(sl_parse_ll(t_api_hdr(r, "Content-Length"), 0, 1LL << 40, &clen), 0);
	if (!strcmp(rq->method, "HEAD"))
		ck_assert_str_eq(r->body, "");
	else
		ck_assert_int_eq(clen, (long long)strlen(r->body));
	if (sl_starts_with(t_api_hdr(r, "Content-Type"), "application/json") && *r->body) {
		r->json = json_tokener_parse(r->body);
		ck_assert_msg(r->json != NULL, "not JSON: %s", r->body);
	}
}

/* ---- planted secrets ---------------------------------------------------- */

#define HIDDEN_MAX 32
static char hidden[HIDDEN_MAX][512];
static const char *hidden_list[HIDDEN_MAX + 1];
static int n_hidden;

void
t_api_never_show(const char *s)
{
	if (!s || !*s)
		return;
	ck_assert_msg(n_hidden < HIDDEN_MAX, "more than %d planted secrets", HIDDEN_MAX);
	snprintf(hidden[n_hidden], sizeof(hidden[0]), "%s", s);
	hidden_list[n_hidden] = hidden[n_hidden];
	n_hidden++;
	hidden_list[n_hidden] = NULL;
}

void
t_api_forget_all(void)
{
	n_hidden = 0;
	hidden_list[0] = NULL;
}

const char *const *
t_api_hidden(void)
{
	return hidden_list;
}

/* s is in neither r's answer nor its log. */
static void
assert_hidden(const struct t_api_req *rq, const struct t_api_resp *r, const char *s)
{
	ck_assert_msg(!strstr(r->out, s), "a secret is in the answer to %s %s:\n%s",
	              rq->method, rq->path, r->out);
	ck_assert_msg(!strstr(r->log, s), "a secret is in the log of %s %s:\n%s",
	              rq->method, rq->path, r->log);
}

void
t_api_call(const struct t_api_req *rq, struct t_api_resp *r)
{
	static struct env e;
	size_t body_len = rq->body ? (rq->body_len ? rq->body_len : strlen(rq->body)) : 0;
	int in = temp_fd(), out = temp_fd(), err = temp_fd(), code;
	const char *const *s;
	pid_t pid;

	t_api_resp_clear(r);
	build_env(rq, body_len, &e);
	if (body_len)
		ck_assert_int_eq(write(in, rq->body, body_len), (ssize_t)body_len);
	lseek(in, 0, SEEK_SET);

	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char *argv[] = { (char *)"sluice-api", NULL };

		dup2(in, STDIN_FILENO);
		dup2(out, STDOUT_FILENO);
		dup2(err, STDERR_FILENO);
		execve(t_api_bin, argv, e.ptr);
		_exit(127);
	}
	code = t_wait_exit(pid, 60000);
	r->out = read_fd(out);
	r->log = read_fd(err);
	close(in);
	close(out);
	close(err);
	ck_assert_msg(code == 0, "sluice-api exited with %d; stderr:\n%s", code, r->log);

	/* No secret in any answer or log line, whatever happened. */
	for (s = rq->secrets; s && *s; s++)
		assert_hidden(rq, r, *s);
	for (s = t_api_hidden(); *s; s++)
		assert_hidden(rq, r, *s);
	parse_answer(rq, r);
}

json_object *
t_json_get(json_object *o, const char *path)
{
	char part[128];

	while (o && *path) {
		size_t n = strcspn(path, ".");
		long long idx;

		snprintf(part, sizeof(part), "%.*s", (int)n, path);
		if (json_object_is_type(o, json_type_array))
			o = sl_parse_ll(part, 0, 100000, &idx)
			        ? NULL : json_object_array_get_idx(o, (size_t)idx);
		else if (!json_object_object_get_ex(o, part, &o))
			o = NULL;
		path += n + (path[n] == '.');
	}
	return o;
}

const char *
t_api_str(const struct t_api_resp *r, const char *path)
{
	json_object *v = t_json_get(r->json, path);

	return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

long long
t_api_int(const struct t_api_resp *r, const char *path)
{
	json_object *v = t_json_get(r->json, path);

	ck_assert_msg(v && json_object_is_type(v, json_type_int), "%s is not an integer in %s",
	              path, r->body);
	return json_object_get_int64(v);
}

void
t_api_assert_error(const struct t_api_resp *r, int status, const char *code, const char *field)
{
	json_object *e;
	const char *msg = t_api_str(r, "error.message"), *f = t_api_str(r, "error.field");

	ck_assert_msg(r->status == status, "want %d, got %d: %s", status, r->status, r->body);
	ck_assert_str_eq(t_api_hdr(r, "Content-Type"), "application/json");
	ck_assert_ptr_nonnull(r->json);
	ck_assert_int_eq(json_object_object_length(r->json), 1);
	e = t_json_get(r->json, "error");
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(t_api_str(r, "error.code"), code);
	ck_assert_ptr_nonnull(msg);
	ck_assert_int_gt(strlen(msg), 5);
	ck_assert_str_eq(t_api_str(r, "error.request_id"), t_api_hdr(r, "X-Request-Id"));
	if (field) {
		ck_assert_msg(f && !strcmp(f, field), "want field %s in %s", field, r->body);
		ck_assert_int_eq(json_object_object_length(e), 4);
	} else {
		ck_assert_msg(!t_json_get(r->json, "error.field"), "unexpected field in %s",
		              r->body);
		ck_assert_int_eq(json_object_object_length(e), 3);
	}
}

int
t_api_bool(const struct t_api_resp *r, const char *path)
{
	json_object *v = t_json_get(r->json, path);

	ck_assert_msg(v && json_object_is_type(v, json_type_boolean), "%s is not a boolean in %s",
	              path, r->body);
	return json_object_get_boolean(v);
}

int
t_api_is_null(const struct t_api_resp *r, const char *path)
{
	json_object *v = NULL, *parent = r->json;
	const char *dot = strrchr(path, '.');
	char head[256];

	if (dot) {
		snprintf(head, sizeof(head), "%.*s", (int)(dot - path), path);
		parent = t_json_get(r->json, head);
		path = dot + 1;
	}
	return parent && json_object_object_get_ex(parent, path, &v) && v == NULL;
}

size_t
t_api_len(const struct t_api_resp *r, const char *path)
{
	json_object *v = *path ? t_json_get(r->json, path) : r->json;

	ck_assert_msg(v != NULL, "%s is missing in %s", path, r->body);
	return json_object_is_type(v, json_type_array) ? json_object_array_length(v)
	                                               : (size_t)json_object_object_length(v);
}

const char *
t_api_request_id(const struct t_api_resp *r)
{
	static char id[80];

	snprintf(id, sizeof(id), "%s", t_api_hdr(r, "X-Request-Id"));
	return id;
}

void
t_api_assert_audit(PGconn *db, const char *request_id, long long key_id, long long org,
                   const char *action, const char *target, const char *outcome, int status)
{
	char got[512], want[512];

	t_text_p(db, "SELECT concat_ws('|', actor, action, coalesce(target, '-'), outcome, http_status,"
	         "                 org_id)"
	         "  FROM sluice.audit WHERE request_id = $1 AND action NOT LIKE 'credential.%'",
	         request_id, NULL, got, sizeof(got));
	snprintf(want, sizeof(want), "key:%lld|%s|%s|%s|%d|%lld", key_id, action,
	         target ? target : "-", outcome, status, org);
	ck_assert_str_eq(got, want);
}

void
t_api_assert_secrets_absent(PGconn *db)
{
	static const char *const where[] = {
		"SELECT count(*) FROM sluice.audit WHERE strpos(detail::text || coalesce(target, ''), $1) > 0",
		"SELECT count(*) FROM sluice.event WHERE strpos(data::text, $1) > 0",
		"SELECT count(*) FROM sluice.connector"
		" WHERE strpos(config::text || label || coalesce(status_message, ''), $1) > 0",
		"SELECT count(*) FROM sluice.credential WHERE position(convert_to($1, 'UTF8') IN ciphertext) > 0",
		"SELECT count(*) FROM sluice.external_sync_config WHERE strpos(mappings_json::text, $1) > 0",
		"SELECT count(*) FROM sluice.jobs WHERE strpos(payload::text, $1) > 0",
	};
	const char *const *s;
	size_t i;

	for (s = t_api_hidden(); *s; s++) {
		for (i = 0; i < sizeof(where) / sizeof(where[0]); i++)
			ck_assert_msg(t_int_p(db, where[i], *s, NULL) == 0, "a planted secret is readable: %s",
			              where[i]);
	}
}
