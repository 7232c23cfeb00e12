/* http.h — the CGI/1.1 side of sluice-api: the request from the environment, the answer on stdout. */
#ifndef SL_API_HTTP_H
#define SL_API_HTTP_H

#include <stddef.h>
#include <json-c/json.h>

#include "common/buf.h"
#include "common/err.h"

#define API_REQUEST_ID_MAX 64

/*
 * One request, as RFC 3875 hands it over: meta-variables in the environment
 * and the body on stdin.  The const char * members are borrowed from the
 * environment and live as long as the process.
 */
struct api_request {
	const char   *method;          /* REQUEST_METHOD; "" when unset */
	const char   *path;            /* PATH_INFO; "" when unset */
	const char   *query;           /* QUERY_STRING; "" when unset */
	const char   *content_type;    /* CONTENT_TYPE; NULL when unset or empty */
	const char   *content_length;  /* CONTENT_LENGTH as sent; NULL when unset or empty */
	const char   *authorization;   /* HTTP_AUTHORIZATION; a secret: never log or echo it */
	char          request_id[API_REQUEST_ID_MAX + 1];
	struct sl_buf body;            /* api_read_body(); at most SL_MAX_REQUEST_BODY bytes */
};

/*
 * The answer being built.  Nothing reaches stdout before api_send(), which
 * writes the header block once and then the body, so a failure half-way
 * through a handler can still become a clean error answer.
 */
struct api_response {
	int           status;          /* 0 until an answer is set */
	const char   *content_type;    /* a static string */
	struct sl_buf headers;         /* extra header lines, each "Name: value\r\n" */
	struct sl_buf body;
	int           head_only;       /* HEAD: send the headers, not the body */
};

/*
 * Reads the CGI meta-variables and settles the request id: a sane incoming
 * X-Request-Id ([A-Za-z0-9._-]{1,64}) is kept, anything else is replaced by
 * a fresh random one.  The body is not read.  Returns 0, or SL_EINTERNAL
 * (err filled) when no random id can be made; req->request_id then holds a
 * fixed placeholder so that the error answer still carries one.
 */
int api_request_init(struct api_request *req, struct sl_err *err)
	__attribute__((warn_unused_result));

/* Frees the body.  The request may not be used afterwards. */
void api_request_release(struct api_request *req);

/*
 * Reads the JSON body: checks CONTENT_TYPE (absent or application/json),
 * parses CONTENT_LENGTH with a bound, refuses a body over
 * SL_MAX_REQUEST_BODY without reading it, then reads exactly that many
 * bytes from stdin and checks they are UTF-8.  On error returns non-zero
 * with err->http_status set (400, 411, 413 or 415) and req->body empty.
 */
int api_read_body(struct api_request *req, struct sl_err *err)
	__attribute__((warn_unused_result));

/*
 * Parses the body api_read_body() read into *out (the caller's:
 * json_object_put).  Not JSON: SL_EINVAL with err->http_status 400; or
 * SL_ENOMEM / SL_ETOOLARGE.  On error *out is NULL.
 */
int api_body_json(const struct api_request *req, json_object **out, struct sl_err *err)
	__attribute__((warn_unused_result));

/* api_body_json() for a body that must be a JSON object: any other JSON is 422. */
int api_body_object(const struct api_request *req, json_object **out, struct sl_err *err)
	__attribute__((warn_unused_result));

/*
 * Refuses members of the object body that are not in `known` (NULL-
 * terminated): a misspelt field must not quietly vanish.  422 naming the
 * first unknown member as the field, with the message "field NAME is not
 * known (<what>)"; what says which fields there are.
 */
int api_body_known_fields(json_object *body, const char *const *known, const char *what,
                          struct sl_err *err) __attribute__((warn_unused_result));

void api_response_init(struct api_response *resp);
void api_response_release(struct api_response *resp);

/*
 * Adds the header line "name: value".  value must not hold CR or LF (the
 * callers build it from constants and validated numbers).  Returns 0 or
 * SL_ENOMEM / SL_ETOOLARGE.
 */
int api_add_header(struct api_response *resp, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4), warn_unused_result));

/*
 * Answers status with text as the body, of content_type (a static string).
 * On error (SL_ENOMEM, SL_ETOOLARGE) no answer is set.
 */
int api_respond_text(struct api_response *resp, int status, const char *content_type,
                     const char *text, struct sl_err *err) __attribute__((warn_unused_result));

/*
 * Sets the answer to `status` with doc serialised compactly as the body
 * (Content-Type: application/json).  doc stays the caller's.  Returns 0, or
 * an error (err filled) with the response left without an answer.
 */
int api_respond_json(struct api_response *resp, int status, json_object *doc,
                     struct sl_err *err) __attribute__((warn_unused_result));

/*
 * Records a refusal or failure: err->http_status becomes `status` and err
 * gets a code that matches it (SL_EINVAL for 400/411/415/422, SL_ENOTFOUND
 * for 404 and so on), the message `fmt`, and `field` when a field is at fault
 * (may be NULL).  Returns the (negative) code, for `return api_fail(...)`.
 */
int api_fail(struct sl_err *err, int status, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * How an error is shown to the client: the HTTP status, the error code
 * string of the body, and a message that is safe to show (for a 5xx, or a
 * database error that is not about the client's values, a generic sentence;
 * never SQL text).  msg must hold msgsz bytes.
 */
void api_error_public(const struct sl_err *err, int *status, const char **code,
                      char *msg, size_t msgsz);

/*
 * Sets the answer to the JSON error body
 *   {"error":{"code":…,"message":…,"field":… (when set),"request_id":…}}
 * with the status api_error_public() gives.  Headers added before (Allow,
 * WWW-Authenticate) stay.  Returns 0, or SL_ENOMEM with no answer set.
 */
int api_respond_error(struct api_response *resp, const struct api_request *req,
                      const struct sl_err *err) __attribute__((warn_unused_result));

/* The reason phrase of a status ("Not Found"); "Unknown" for others. */
const char *api_reason(int status);

/*
 * Writes the answer to stdout: the header block (Status line first, then
 * Content-Type, Content-Length, X-Request-Id, the extra headers) in one
 * write, then the body.  Returns 0 or SL_EIO (the client went away).
 */
int api_send(const struct api_response *resp, const struct api_request *req)
	__attribute__((warn_unused_result));

/*
 * Fills buf (of size n) with a complete CGI answer `status` whose JSON body is
 * the error {code, message} with request_id, without allocating, so that a
 * signal handler or exit hook can write it.  code, message and request_id
 * must need no JSON escaping.  Returns its length, or 0 if it does not fit.
 */
size_t api_static_answer(char *buf, size_t n, int status, const char *code,
                         const char *message, const char *request_id);

/* Writes all n bytes to fd, retrying on EINTR.  Async-signal-safe.  0 or -1. */
int api_write_all(int fd, const char *p, size_t n);

#endif
