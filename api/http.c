/* http.c — CGI request parsing, response building, and the one sl_err → HTTP mapping. */
#include "api/http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/caps.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/str.h"

#define HEADER_MAX 8192

static const char *
env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);

	return v ? v : fallback;
}

/* An empty meta-variable is the same as an unset one (RFC 3875 4.1). */
static const char *
env_nonempty(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

static int
sane_request_id(const char *s)
{
	size_t n;

	if (!s)
		return 0;
	n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-");
	return n >= 1 && n <= API_REQUEST_ID_MAX && s[n] == '\0';
}

int
api_request_init(struct api_request *req, struct sl_err *err)
{
	const char *incoming = getenv("HTTP_X_REQUEST_ID");
	int rc = 0;

	req->method = env_or("REQUEST_METHOD", "");
	req->path = env_or("PATH_INFO", "");
	req->query = env_or("QUERY_STRING", "");
	req->content_type = env_nonempty("CONTENT_TYPE");
	req->content_length = env_nonempty("CONTENT_LENGTH");
	req->authorization = env_nonempty("HTTP_AUTHORIZATION");
	sl_buf_init(&req->body, SL_MAX_REQUEST_BODY);

	if (sane_request_id(incoming)) {
		sl_strlcpy(req->request_id, incoming, sizeof(req->request_id));
		goto out;
	}
	rc = sl_random_token(req->request_id, 24, err);
	if (rc)
		sl_strlcpy(req->request_id, "unavailable", sizeof(req->request_id));
out:
	return rc;
}

void
api_request_release(struct api_request *req)
{
	sl_buf_release(&req->body);
}

/* "application/json", any case, optionally followed by parameters. */
static int
is_json_media_type(const char *ct)
{
	static const char want[] = "application/json";
	size_t n = strlen(want);

	if (strncasecmp(ct, want, n))
		return 0;
	ct += n;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	return *ct == '\0' || *ct == ';';
}

int
api_read_body(struct api_request *req, struct sl_err *err)
{
	long long length;
	size_t got = 0;
	char chunk[16384];
	int rc = 0;

	if (req->content_type && !is_json_media_type(req->content_type)) {
		rc = api_fail(err, 415, NULL, "the request body must be application/json");
		goto out;
	}
	if (!req->content_length) {
		rc = api_fail(err, 411, NULL, "a request body needs a Content-Length");
		goto out;
	}
	/* Bounded parse: digits only, no sign games, no overflow. */
	if (sl_parse_ll(req->content_length, 0, 999999999999999LL, &length)) {
		rc = api_fail(err, 400, NULL, "Content-Length is not a valid length");
		goto out;
	}
	if (length > (long long)SL_MAX_REQUEST_BODY) {
		/* Refused before reading a byte of it. */
		rc = api_fail(err, 413, NULL, "the request body is %lld bytes; at most %u are accepted",
		              length, SL_MAX_REQUEST_BODY);
		goto out;
	}
	while (got < (size_t)length) {
		size_t want = (size_t)length - got;
		ssize_t n;

		if (want > sizeof(chunk))
			want = sizeof(chunk);
		n = read(STDIN_FILENO, chunk, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = api_fail(err, 400, NULL, "the request body is shorter than its Content-Length");
			goto out;
		}
		rc = sl_buf_add(&req->body, chunk, (size_t)n);
		if (rc) {
			sl_err_set(err, rc, SL_RETRY_NO, "cannot hold the request body");
			goto out;
		}
		got += (size_t)n;
	}
	if (!sl_utf8_valid(req->body.data, req->body.len)) {
		/* RFC 8259 8.1: JSON text exchanged between systems is UTF-8. */
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "malformed JSON: the body is not valid UTF-8");
		err->http_status = 400;
		goto out;
	}
out:
	if (rc)
		sl_buf_release(&req->body);
	return rc;
}

int
api_body_json(const struct api_request *req, json_object **out, struct sl_err *err)
{
	int rc = sl_json_parse(req->body.data, req->body.len, out, err);

	if (rc == SL_EINVAL)
		err->http_status = 400;
	return rc;
}

int
api_body_object(const struct api_request *req, json_object **out, struct sl_err *err)
{
	int rc = api_body_json(req, out, err);

	if (rc)
		return rc;
	if (!json_object_is_type(*out, json_type_object)) {
		json_object_put(*out);
		*out = NULL;
		return api_fail(err, 422, NULL, "the request body must be a JSON object");
	}
	return 0;
}

int
api_body_known_fields(json_object *body, const char *const *known, const char *what,
                      struct sl_err *err)
{
	json_object_object_foreach(body, key, val) {
		const char *const *k;

		(void)val;
		for (k = known; *k && strcmp(*k, key); k++)
			;
		if (!*k)
			return api_fail(err, 422, key, "field %.60s is not known (%s)", key, what);
	}
	return 0;
}

void
api_response_init(struct api_response *resp)
{
	resp->status = 0;
	resp->content_type = "application/json";
	sl_buf_init(&resp->headers, HEADER_MAX);
	sl_buf_init(&resp->body, SL_MAX_JSON_OUT);
	resp->head_only = 0;
}

void
api_response_release(struct api_response *resp)
{
	sl_buf_release(&resp->headers);
	sl_buf_release(&resp->body);
	resp->status = 0;
}

int
api_add_header(struct api_response *resp, const char *name, const char *fmt, ...)
{
	va_list ap;
	int rc;

	rc = sl_buf_addf(&resp->headers, "%s: ", name);
	if (rc)
		goto out;
	va_start(ap, fmt);
	rc = sl_buf_vaddf(&resp->headers, fmt, ap);
	va_end(ap);
	if (rc)
		goto out;
	rc = sl_buf_adds(&resp->headers, "\r\n");
out:
	return rc;
}

int
api_respond_text(struct api_response *resp, int status, const char *content_type,
                 const char *text, struct sl_err *err)
{
	int rc;

	sl_buf_reset(&resp->body);
	resp->status = 0;
	rc = sl_buf_adds(&resp->body, text);
	if (rc)
		return sl_err_set(err, rc, SL_RETRY_NO, "cannot hold the answer");
	resp->status = status;
	resp->content_type = content_type;
	return 0;
}

int
api_respond_json(struct api_response *resp, int status, json_object *doc, struct sl_err *err)
{
	const char *text = sl_json_text(doc);

	if (!text) {
		sl_buf_reset(&resp->body);
		resp->status = 0;
		return sl_err_set(err, SL_ENOMEM, SL_RETRY_NO, "cannot serialise the answer");
	}
	return api_respond_text(resp, status, "application/json", text, err);
}

static int
code_for_status(int status)
{
	switch (status) {
	case 401:
	case 403: return SL_EAUTH;
	case 404: return SL_ENOTFOUND;
	case 409: return SL_ECONFLICT;
	case 413: return SL_ETOOLARGE;
	case 503: return SL_ECONN;
	default:  return status >= 500 ? SL_EINTERNAL : SL_EINVAL;
	}
}

int
api_fail(struct sl_err *err, int status, const char *field, const char *fmt, ...)
{
	int code = code_for_status(status);
	va_list ap;

	if (!err)
		return code;
	sl_err_clear(err);
	err->code = code;
	err->retry = SL_RETRY_NO;
	err->http_status = status;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	if (field)
		sl_err_field(err, field);
	return code;
}

static const struct {
	int         status;
	const char *reason;
	const char *code;      /* the "code" of a JSON error body */
} statuses[] = {
	{ 200, "OK", NULL },
	{ 201, "Created", NULL },
	{ 204, "No Content", NULL },
	{ 302, "Found", NULL },
	{ 400, "Bad Request", "bad_request" },
	{ 401, "Unauthorized", "unauthorized" },
	{ 403, "Forbidden", "forbidden" },
	{ 404, "Not Found", "not_found" },
	{ 405, "Method Not Allowed", "method_not_allowed" },
	{ 409, "Conflict", "conflict" },
	{ 411, "Length Required", "length_required" },
	{ 413, "Payload Too Large", "payload_too_large" },
	{ 415, "Unsupported Media Type", "unsupported_media_type" },
	{ 422, "Unprocessable Entity", "validation_failed" },
	{ 500, "Internal Server Error", "internal_error" },
	{ 502, "Bad Gateway", "bad_gateway" },
	{ 503, "Service Unavailable", "unavailable" },
};

#define N_STATUSES (sizeof(statuses) / sizeof(statuses[0]))

const char *
api_reason(int status)
{
	size_t i;

	for (i = 0; i < N_STATUSES; i++) {
		if (statuses[i].status == status)
			return statuses[i].reason;
	}
	return "Unknown";
}

static const char *
status_code_name(int status)
{
	size_t i;

	for (i = 0; i < N_STATUSES; i++) {
		if (statuses[i].status == status && statuses[i].code)
			return statuses[i].code;
	}
	return status >= 500 ? "internal_error" : "bad_request";
}

/*
 * A database error, by SQLSTATE class (PostgreSQL appendix A).  Class 22
 * (data exception: a bad timestamp, an invalid escape in jsonb) is about the
 * client's values, and its primary message names the value, not our SQL.
 * Class 23 is a constraint: a unique or foreign key clash is a conflict, a
 * check or not-null failure a bad value.  Serialisation failures, resource
 * exhaustion and shutdowns are worth a retry.  Anything else is our bug.
 */
static int
db_status(const char *sqlstate)
{
	if (!strncmp(sqlstate, "22", 2))
		return 422;
	if (!strcmp(sqlstate, "23502") || !strcmp(sqlstate, "23514"))
		return 422;
	if (!strncmp(sqlstate, "23", 2))
		return 409;
	if (!strncmp(sqlstate, "40", 2) || !strncmp(sqlstate, "53", 2) ||
	    !strncmp(sqlstate, "57", 2) || !strncmp(sqlstate, "08", 2))
		return 503;
	return 500;
}

void
api_error_public(const struct sl_err *err, int *status, const char **code,
                 char *msg, size_t msgsz)
{
	int st = err->http_status;

	if (!st) {
		switch (err->code) {
		case SL_EINVAL:     st = 422; break;
		case SL_ETOOLARGE:  st = 413; break;
		case SL_ENOTFOUND:  st = 404; break;
		case SL_ECONFLICT:  st = 409; break;
		case SL_EAUTH:      st = 401; break;
		case SL_ECONN:      st = 503; break;
		case SL_EDB:        st = db_status(err->sqlstate); break;
		default:            st = 500; break;
		}
	}
	*status = st;
	*code = status_code_name(st);
	if (st == 400 && err->code == SL_EINVAL && sl_starts_with(err->msg, "malformed JSON"))
		*code = "malformed_json";

	if (err->code == SL_EDB) {
		/* Only class 22's message is about a value; a constraint's names our schema. */
		if (st == 422 && !strncmp(err->sqlstate, "22", 2))
			snprintf(msg, msgsz, "invalid value: %s", err->msg);
		else if (st == 422)
			snprintf(msg, msgsz, "a value is not allowed here; check the fields against the "
			                     "API documentation");
		else if (st == 409)
			snprintf(msg, msgsz, "the request conflicts with the current state of the resource");
		else if (st == 503)
			snprintf(msg, msgsz, "the database is busy or unavailable; try again shortly");
		else
			snprintf(msg, msgsz, "internal error; an operator can find it by the request id");
	} else if (st == 503) {
		snprintf(msg, msgsz, "%s", err->http_status ? err->msg
		                                            : "the database is unavailable; try again shortly");
	} else if (st == 502) {
		/* An outside system's refusal, in our words (never a secret): worth naming. */
		snprintf(msg, msgsz, "%s", err->msg);
	} else if (st >= 500) {
		snprintf(msg, msgsz, "internal error; an operator can find it by the request id");
	} else {
		snprintf(msg, msgsz, "%s", err->msg[0] ? err->msg : api_reason(st));
	}
}

int
api_respond_error(struct api_response *resp, const struct api_request *req,
                  const struct sl_err *err)
{
	json_object *doc = NULL, *e = NULL;
	const char *code;
	char msg[sizeof(err->msg) + 64];
	struct sl_err e2;
	int status, rc = SL_ENOMEM;

	api_error_public(err, &status, &code, msg, sizeof(msg));
	doc = json_object_new_object();
	e = json_object_new_object();
	if (!doc || !e)
		goto out;
	json_object_object_add(e, "code", json_object_new_string(code));
	json_object_object_add(e, "message", json_object_new_string(msg));
	if (err->field[0])
		json_object_object_add(e, "field", json_object_new_string(err->field));
	json_object_object_add(e, "request_id", json_object_new_string(req->request_id));
	json_object_object_add(doc, "error", e);
	e = NULL;
	rc = api_respond_json(resp, status, doc, &e2);
out:
	json_object_put(e);
	json_object_put(doc);
	return rc;
}

int
api_write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int
api_send(const struct api_response *resp, const struct api_request *req)
{
	struct sl_buf head;
	int rc;

	sl_buf_init(&head, HEADER_MAX + 1024);
	rc = sl_buf_addf(&head, "Status: %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	                 "X-Request-Id: %s\r\nCache-Control: no-store\r\n"
	                 "X-Content-Type-Options: nosniff\r\n%s\r\n",
	                 resp->status, api_reason(resp->status), resp->content_type,
	                 resp->body.len, req->request_id, resp->headers.data);
	if (rc)
		goto out;
	if (api_write_all(STDOUT_FILENO, head.data, head.len) ||
	    (!resp->head_only && api_write_all(STDOUT_FILENO, resp->body.data, resp->body.len)))
		rc = SL_EIO;
out:
	sl_buf_release(&head);
	return rc;
}

size_t
api_static_answer(char *buf, size_t n, int status, const char *code,
                  const char *message, const char *request_id)
{
	char body[512];
	int blen, len;

	blen = snprintf(body, sizeof(body),
	                "{\"error\":{\"code\":\"%s\",\"message\":\"%s\",\"request_id\":\"%s\"}}",
	                code, message, request_id);
	if (blen < 0 || (size_t)blen >= sizeof(body))
		return 0;
	len = snprintf(buf, n, "Status: %d %s\r\nContent-Type: application/json\r\n"
	               "Content-Length: %d\r\nX-Request-Id: %s\r\nCache-Control: no-store\r\n\r\n%s",
	               status, api_reason(status), blen, request_id, body);
	if (len < 0 || (size_t)len >= n)
		return 0;
	return (size_t)len;
}
