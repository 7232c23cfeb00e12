/* http.h — the one HTTP client every adapter uses (libcurl): capped bodies, timeouts, errors classified. */
#ifndef SL_ADAPTERS_HTTP_H
#define SL_ADAPTERS_HTTP_H

#include <stddef.h>

#include "common/buf.h"
#include "common/err.h"

#define SL_HTTP_MAX_HEADERS 64

/* One request.  Strings are borrowed for the call. */
struct sl_http_request {
	const char        *method;        /* "GET", "POST", ...; NULL means GET */
	const char        *url;
	const char *const *headers;       /* "Name: value" lines, NULL-terminated; may be NULL */
	const char        *body;          /* may be NULL */
	size_t             body_len;
	const char        *basic_user;    /* HTTP basic auth when not NULL (a secret: never logged) */
	const char        *basic_password;
	long               timeout_ms;    /* whole request; 0: 30 s */
	long               connect_timeout_ms;  /* 0: 10 s */
	size_t             max_body;      /* response body cap; 0: SL_MAX_PROVIDER_BODY */
	const char        *ca_file;       /* CA bundle; NULL: the system's */
	int                insecure_http; /* allow http:// to a non-loopback host (tests, never production) */
};

struct sl_http_header {
	char *name;                       /* as received */
	char *value;                      /* trimmed */
};

/* One response. */
struct sl_http_response {
	long                  status;     /* HTTP status; 0 when no answer came */
	struct sl_buf         body;
	struct sl_http_header headers[SL_HTTP_MAX_HEADERS];  /* of the final response */
	int                   n_headers;
	long                  retry_after_ms;  /* from Retry-After (seconds or HTTP date), else from
	                                          a rate-limit reset header; -1 if neither */
	long long             elapsed_ms;
};

/* A response starts empty (init); release frees its body and headers and leaves it empty again. */
void sl_http_response_init(struct sl_http_response *resp);
void sl_http_response_release(struct sl_http_response *resp);

/* The value of header `name` (case-insensitive), or NULL. */
const char *sl_http_header(const struct sl_http_response *resp, const char *name);

/*
 * Performs the request.  Returns 0 whenever an HTTP answer arrived, whatever
 * its status; the caller decides with sl_http_check().  Otherwise an error
 * with a retry class: connection refused, DNS, TLS handshake, reset:
 * SL_EHTTP + SL_RETRY_BACKOFF; timeout: SL_ETIMEOUT + SL_RETRY_BACKOFF; a
 * TLS certificate that does not verify: SL_EHTTP + SL_RETRY_NO; a body over
 * the cap: SL_ETOOLARGE + SL_RETRY_NO; a URL that is not http(s), or http://
 * to a host that is not loopback without insecure_http: SL_EINVAL.
 * Messages name the method, host and path, never the query string (it may
 * hold a key) nor any header.  resp is emptied first (a response can be
 * reused); after an error it holds what had arrived, its body emptied.
 * Redirects are not followed: a 3xx is the answer, Location in its headers.
 */
int sl_http_do(const struct sl_http_request *req, struct sl_http_response *resp,
               struct sl_err *err) __attribute__((warn_unused_result));

/*
 * Turns a non-2xx answer into an error with the usual retry class:
 *   429           SL_ERATELIMIT + SL_RETRY_AFTER (retry_after_ms from the
 *                 answer, else 60 s)
 *   401, 403      SL_EAUTH + SL_RETRY_REAUTH
 *   408, 5xx      SL_EHTTP + SL_RETRY_BACKOFF (503 with Retry-After: AFTER)
 *   other 4xx     SL_EHTTP + SL_RETRY_NO
 * err->http_status is set, err->msg says "<what>: HTTP <status>", and
 * err->detail holds the start of the body when it is short text (bodies can
 * echo input, never credentials we send).  Returns 0 for 2xx.
 */
int sl_http_check(const struct sl_http_response *resp, const char *what, struct sl_err *err);

/*
 * Milliseconds a Retry-After value asks to wait, `now` being the current
 * Unix time: delta-seconds or an HTTP-date (RFC 9110 10.2.3; a date in the
 * past gives 0), at most 7 days.  -1 when it is neither.
 */
long sl_http_retry_after_ms(const char *value, long long now);

/*
 * Milliseconds until a provider's own rate-limit reset header says its
 * window reopens (RateLimit-Reset, X-RateLimit-Reset, X-Rate-Limit-Reset):
 * seconds from now, or a Unix time when the number is that large (GitHub,
 * Shopify and others send one or the other), at most 7 days.  -1 when it is
 * not a number.  sl_http_do() uses it for retry_after_ms when an answer has
 * no Retry-After.
 */
long sl_http_reset_after_ms(const char *value, long long now);

/*
 * When a successful answer says the provider's quota is used up
 * (RateLimit-Remaining, X-RateLimit-Remaining or X-Rate-Limit-Remaining is
 * 0): milliseconds until it resets (resp->retry_after_ms, else 60 s).  -1
 * while calls are left or the provider does not say.  The caller blocks its
 * rate-limit bucket that long rather than waiting for the 429.
 */
long sl_http_quota_exhausted_ms(const struct sl_http_response *resp);

/*
 * Appends "name=value" (application/x-www-form-urlencoded, '&' between
 * pairs when form is not empty), both percent-encoded as sl_http_urlencode
 * does (a space is %20, which every form decoder reads as a space).
 */
int sl_http_form_add(struct sl_buf *form, const char *name, const char *value)
	__attribute__((warn_unused_result));

/* Appends s percent-encoded (RFC 3986 unreserved characters kept). */
int sl_http_urlencode(struct sl_buf *out, const char *s) __attribute__((warn_unused_result));

/* Once per process, before any thread exists (curl_global_init). */
int sl_http_global_init(struct sl_err *err) __attribute__((warn_unused_result));

#endif
