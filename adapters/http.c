/* http.c — the one HTTP client every adapter uses (libcurl): capped bodies, timeouts, errors classified. */
#include "adapters/http.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <limits.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/alloc.h"
#include "common/caps.h"
#include "common/clock.h"
#include "common/str.h"

#define DEFAULT_TIMEOUT_MS          30000L
#define DEFAULT_CONNECT_TIMEOUT_MS  10000L
#define MAX_RETRY_AFTER_S           (7LL * 24 * 3600)
#define DETAIL_BODY_BYTES           300   /* of an error body quoted in err->detail */

/* What the libcurl callbacks share with sl_http_do. */
struct xfer {
	struct sl_http_response *resp;
	int                      toolarge;  /* the body passed its cap */
	int                      nomem;
};

static void
clear_headers(struct sl_http_response *resp)
{
	int i;

	for (i = 0; i < resp->n_headers; i++) {
		sl_free(resp->headers[i].name);
		sl_free(resp->headers[i].value);
		resp->headers[i].name = resp->headers[i].value = NULL;
	}
	resp->n_headers = 0;
}

void
sl_http_response_init(struct sl_http_response *resp)
{
	memset(resp, 0, sizeof(*resp));
	sl_buf_init(&resp->body, SL_MAX_PROVIDER_BODY);
	resp->retry_after_ms = -1;
}

void
sl_http_response_release(struct sl_http_response *resp)
{
	clear_headers(resp);
	sl_buf_release(&resp->body);
	resp->status = 0;
	resp->retry_after_ms = -1;
	resp->elapsed_ms = 0;
}

const char *
sl_http_header(const struct sl_http_response *resp, const char *name)
{
	int i;

	for (i = 0; i < resp->n_headers; i++)
		if (!strcasecmp(resp->headers[i].name, name))
			return resp->headers[i].value;
	return NULL;
}

/* ---- callbacks --------------------------------------------------------- */

static size_t
on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;
	int rc = sl_buf_add(&x->resp->body, ptr, n);

	if (rc == SL_ETOOLARGE)
		x->toolarge = 1;
	else if (rc)
		x->nomem = 1;
	return rc ? 0 : n;   /* short count: libcurl aborts the transfer */
}

static int
is_ows(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * One header line at a time, status lines included.  Each status line
 * starts a new response (a 1xx, a proxy's CONNECT answer), so the headers
 * kept are those of the last one.  Past SL_HTTP_MAX_HEADERS the rest are
 * dropped.
 */
static size_t
on_header(char *line, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	struct sl_http_response *resp = x->resp;
	size_t n = size * nmemb, end = n, start, colon;

	if (n >= 5 && !memcmp(line, "HTTP/", 5)) {
		clear_headers(resp);
		return n;
	}
	while (end > 0 && is_ows(line[end - 1]))
		end--;
	if (end == 0)
		return n;   /* the blank line closing the block */
	if (line[0] == ' ' || line[0] == '\t') {
		/* obs-fold (RFC 9110 5.5): a continuation of the previous value */
		struct sl_http_header *h;
		char *joined;
		size_t old;

		if (resp->n_headers == 0)
			return n;
		h = &resp->headers[resp->n_headers - 1];
		for (start = 0; start < end && is_ows(line[start]); start++)
			;
		old = strlen(h->value);
		joined = sl_realloc(h->value, old + 1 + (end - start) + 1);
		if (!joined) {
			x->nomem = 1;
			return 0;
		}
		joined[old] = ' ';
		memcpy(joined + old + 1, line + start, end - start);
		joined[old + 1 + (end - start)] = '\0';
		h->value = joined;
		return n;
	}
	for (colon = 0; colon < end && line[colon] != ':'; colon++)
		;
	if (colon == end || colon == 0 || resp->n_headers >= SL_HTTP_MAX_HEADERS)
		return n;
	for (start = colon + 1; start < end && is_ows(line[start]); start++)
		;
	resp->headers[resp->n_headers].name = sl_strndup(line, colon);
	resp->headers[resp->n_headers].value = sl_strndup(line + start, end - start);
	if (!resp->headers[resp->n_headers].name || !resp->headers[resp->n_headers].value) {
		sl_free(resp->headers[resp->n_headers].name);
		sl_free(resp->headers[resp->n_headers].value);
		resp->headers[resp->n_headers].name = resp->headers[resp->n_headers].value = NULL;
		x->nomem = 1;
		return 0;
	}
	resp->n_headers++;
	return n;
}

/* ---- URL policy -------------------------------------------------------- */

/* A literal loopback address or the name localhost (never a name that merely resolves to one). */
static int
is_loopback(const char *host)
{
	unsigned char a[16];
	char v6[64];
	size_t len = strlen(host);

	if (!strcasecmp(host, "localhost"))
		return 1;
	if (inet_pton(AF_INET, host, a) == 1)
		return a[0] == 127;
	if (len > 2 && host[0] == '[' && host[len - 1] == ']' && len - 2 < sizeof(v6)) {
		memcpy(v6, host + 1, len - 2);
		v6[len - 2] = '\0';
		return inet_pton(AF_INET6, v6, a) == 1 && IN6_IS_ADDR_LOOPBACK((struct in6_addr *)a);
	}
	return 0;
}

/*
 * Parses req->url into u and checks it against the policy of http.h.
 * label gets "METHOD scheme://host[:port]/path" for messages: no user
 * info, query or fragment.
 */
static int
check_url(const struct sl_http_request *req, CURLU *u, const char *method, char *label,
          size_t labelsz, struct sl_err *err)
{
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
	int rc = 0;

	snprintf(label, labelsz, "%s (malformed URL)", method);
	if (!req->url || curl_url_set(u, CURLUPART_URL, req->url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "%s: not an absolute http(s) URL", method);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK)
		port = NULL;
	if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
		path = NULL;
	snprintf(label, labelsz, "%s %s://%s%s%s%s", method, scheme, host, port ? ":" : "",
	         port ? port : "", path ? path : "/");
	if (strcasecmp(scheme, "http") && strcasecmp(scheme, "https")) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "%s: scheme %s is not allowed", label,
		                scheme);
		sl_err_detail(err, "Only http and https URLs are fetched.");
		goto out;
	}
	if (!strcasecmp(scheme, "http") && !req->insecure_http && !is_loopback(host)) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO,
		                "%s: plain http is only allowed to loopback hosts", label);
		sl_err_detail(err, "Use https; http:// is allowed only to 127.0.0.0/8, ::1 and "
		              "localhost, where nothing crosses a network.");
		goto out;
	}
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	return rc;
}

/* ---- errors ------------------------------------------------------------ */

/* Whether s contains something of the request that may be secret. */
static int
leaks(const char *s, const struct sl_http_request *req)
{
	const char *q = req->url ? strchr(req->url, '?') : NULL;
	size_t i;

	if (q && q[1] && strstr(s, q + 1))
		return 1;
	if ((req->basic_user && *req->basic_user && strstr(s, req->basic_user)) ||
	    (req->basic_password && *req->basic_password && strstr(s, req->basic_password)))
		return 1;
	for (i = 0; req->headers && req->headers[i]; i++) {
		const char *v = strchr(req->headers[i], ':');

		while (v && (*v == ':' || *v == ' '))
			v++;
		if (v && *v && strstr(s, v))
			return 1;
	}
	return 0;
}

/* Records a failed transfer with the retry class http.h promises. */
static int
transfer_error(CURLcode cc, const struct xfer *x, const char *label, const char *errbuf,
               const struct sl_http_request *req, long timeout_ms, struct sl_err *err)
{
	int rc;

	if (x->toolarge || cc == CURLE_FILESIZE_EXCEEDED) {
		rc = sl_err_set(err, SL_ETOOLARGE, SL_RETRY_NO, "%s: response body too large", label);
		sl_err_detail(err, "The answer passed the cap of %zu bytes; the transfer was aborted.",
		              x->resp->body.max);
		return rc;
	}
	if (x->nomem || cc == CURLE_OUT_OF_MEMORY)
		return sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "%s: out of memory", label);
	switch (cc) {
	case CURLE_OPERATION_TIMEDOUT:
		rc = sl_err_set(err, SL_ETIMEOUT, SL_RETRY_BACKOFF, "%s: timed out after %ld ms",
		                label, timeout_ms);
		break;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
		rc = sl_err_set(err, SL_EHTTP, SL_RETRY_NO, "%s: TLS certificate not trusted", label);
		break;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "%s: URL refused", label);
		break;
	case CURLE_COULDNT_CONNECT:
		rc = sl_err_set(err, SL_EHTTP, SL_RETRY_BACKOFF, "%s: connection refused", label);
		break;
	case CURLE_COULDNT_RESOLVE_HOST:
		rc = sl_err_set(err, SL_EHTTP, SL_RETRY_BACKOFF, "%s: host not found", label);
		break;
	default:
		rc = sl_err_set(err, SL_EHTTP, SL_RETRY_BACKOFF, "%s: %s", label,
		                curl_easy_strerror(cc));
		break;
	}
	/* libcurl's own words help (which address, which TLS alert), unless they echo the request. */
	if (errbuf[0] && !leaks(errbuf, req))
		sl_err_detail(err, "libcurl: %s.", errbuf);
	else
		sl_err_detail(err, "libcurl: %s.", curl_easy_strerror(cc));
	return rc;
}

/* ---- the request ------------------------------------------------------- */

/* A header line must be one line: a CR or LF would smuggle in another header. */
static int
header_ok(const char *h)
{
	return strchr(h, ':') && !strpbrk(h, "\r\n");
}

int
sl_http_do(const struct sl_http_request *req, struct sl_http_response *resp, struct sl_err *err)
{
	const char *method = req->method ? req->method : "GET";
	long timeout = req->timeout_ms > 0 ? req->timeout_ms : DEFAULT_TIMEOUT_MS;
	long connect = req->connect_timeout_ms > 0 ? req->connect_timeout_ms
	                                           : DEFAULT_CONNECT_TIMEOUT_MS;
	size_t max = req->max_body ? req->max_body : SL_MAX_PROVIDER_BODY;
	struct xfer x = { .resp = resp };
	struct curl_slist *hdrs = NULL, *more;
	char label[512], errbuf[CURL_ERROR_SIZE] = "";
	CURLU *u = NULL;
	CURL *h = NULL;
	CURLcode cc;
	long long start;
	const char *ra;
	size_t i;
	int rc = 0;

	sl_http_response_release(resp);
	resp->body.max = max;
	u = curl_url();
	h = curl_easy_init();
	if (!u || !h) {
		rc = sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "%s: out of memory", method);
		goto out;
	}
	rc = check_url(req, u, method, label, sizeof(label), err);
	if (rc)
		goto out;

	/* Never "Expect: 100-continue": it costs a round trip and a 1xx. */
	hdrs = curl_slist_append(NULL, "Expect:");
	for (i = 0; hdrs && req->headers && req->headers[i]; i++) {
		if (!header_ok(req->headers[i])) {
			rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "%s: malformed request header",
			                label);
			goto out;
		}
		more = curl_slist_append(hdrs, req->headers[i]);
		if (!more)
			curl_slist_free_all(hdrs);
		hdrs = more;
	}
	if (!hdrs) {
		rc = sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "%s: out of memory", label);
		goto out;
	}

	curl_easy_setopt(h, CURLOPT_CURLU, u);   /* the URL checked above, not a re-parse */
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (req->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, req->ca_file);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "sluice/" SLUICE_VERSION);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
	if (req->basic_user) {
		curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(h, CURLOPT_USERNAME, req->basic_user);
		curl_easy_setopt(h, CURLOPT_PASSWORD, req->basic_password ? req->basic_password : "");
	}
	if (req->body || !strcmp(method, "POST")) {
		/* POST semantics carry the body; another method name replaces the verb only. */
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(req->body ? req->body_len : 0));
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "");
		if (strcmp(method, "POST"))
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	} else if (!strcmp(method, "HEAD")) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(method, "GET")) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	}

	start = sl_mono_ms();
	cc = curl_easy_perform(h);
	resp->elapsed_ms = sl_mono_ms() - start;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
	if (cc != CURLE_OK) {
		rc = transfer_error(cc, &x, label, errbuf, req, timeout, err);
		sl_buf_release(&resp->body);
		goto out;
	}
	ra = sl_http_header(resp, "Retry-After");
	resp->retry_after_ms = ra ? sl_http_retry_after_ms(ra, (long long)time(NULL)) : -1;
	if (resp->retry_after_ms < 0) {
		static const char *const reset_headers[] = {
			"RateLimit-Reset", "X-RateLimit-Reset", "X-Rate-Limit-Reset",
		};
		size_t k;

		for (k = 0; k < sizeof(reset_headers) / sizeof(reset_headers[0]); k++) {
			ra = sl_http_header(resp, reset_headers[k]);
			if (ra && (resp->retry_after_ms = sl_http_reset_after_ms(ra, time(NULL))) >= 0)
				break;
		}
	}
out:
	curl_easy_cleanup(h);   /* before u and hdrs, which it uses */
	curl_url_cleanup(u);
	curl_slist_free_all(hdrs);
	return rc;
}

long
sl_http_quota_exhausted_ms(const struct sl_http_response *resp)
{
	static const char *const names[] = {
		"RateLimit-Remaining", "X-RateLimit-Remaining", "X-Rate-Limit-Remaining",
	};
	const char *v;
	long long left;
	size_t k;

	for (k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		v = sl_http_header(resp, names[k]);
		if (v && !sl_parse_ll(v, 0, LLONG_MAX, &left))
			return left > 0 ? -1 : resp->retry_after_ms >= 0 ? resp->retry_after_ms : 60000;
	}
	return -1;
}

long
sl_http_reset_after_ms(const char *value, long long now)
{
	static const long long max_s = 7LL * 86400;
	long long v;

	while (*value == ' ' || *value == '\t')
		value++;
	if (sl_parse_lln(value, strcspn(value, " \t"), 0, LLONG_MAX / 2, &v))
		return -1;
	if (v > 1000000000LL)   /* a Unix time, not a delay: 2001 and later */
		v = v > now ? v - now : 0;
	return (long)((v > max_s ? max_s : v) * 1000);
}

long
sl_http_retry_after_ms(const char *value, long long now)
{
	size_t n = strlen(value), i, digits = 0;
	long long secs;
	time_t when;

	while (n > 0 && is_ows(value[n - 1]))
		n--;
	while (n > 0 && is_ows(*value)) {
		value++;
		n--;
	}
	for (i = 0; i < n && value[i] >= '0' && value[i] <= '9'; i++)
		digits++;
	if (n > 0 && digits == n) {
		if (sl_parse_lln(value, n, 0, MAX_RETRY_AFTER_S, &secs))
			secs = MAX_RETRY_AFTER_S;   /* absurdly many digits: as long as we wait */
		return (long)(secs * 1000);
	}
	/* curl_getdate reads IMF-fixdate and the two obsolete forms RFC 9110 5.6.7 allows. */
	if (n == 0 || n >= 64 || digits > 0)
		return -1;
	{
		char date[64];

		memcpy(date, value, n);
		date[n] = '\0';
		when = curl_getdate(date, NULL);
	}
	if (when == (time_t)-1)
		return -1;
	secs = (long long)when - now;
	if (secs < 0)
		secs = 0;
	if (secs > MAX_RETRY_AFTER_S)
		secs = MAX_RETRY_AFTER_S;
	return (long)(secs * 1000);
}

/* ---- verdicts and encodings -------------------------------------------- */

/* Quotes the start of a short text body into err->detail; binary bodies are left out. */
static void
quote_body(const struct sl_http_response *resp, struct sl_err *err)
{
	char text[DETAIL_BODY_BYTES + 1];
	size_t n = resp->body.len, i;

	if (n == 0)
		return;
	if (n > DETAIL_BODY_BYTES) {
		n = DETAIL_BODY_BYTES;
		while (n > 0 && ((unsigned char)resp->body.data[n] & 0xC0) == 0x80)
			n--;   /* do not cut a UTF-8 sequence */
	}
	if (!sl_utf8_valid(resp->body.data, n))
		return;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)resp->body.data[i];

		if (c == '\0')
			return;
		text[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	text[n] = '\0';
	sl_err_detail(err, "The answer began: %s%s", text, n < resp->body.len ? " ..." : "");
}

int
sl_http_check(const struct sl_http_response *resp, const char *what, struct sl_err *err)
{
	long s = resp->status;
	int rc;

	if (s >= 200 && s <= 299)
		return 0;
	if (s == 429) {
		rc = sl_err_set(err, SL_ERATELIMIT, SL_RETRY_AFTER, "%s: HTTP %ld", what, s);
		if (err)
			err->retry_after_ms = resp->retry_after_ms >= 0 ? resp->retry_after_ms : 60000;
	} else if (s == 401 || s == 403) {
		rc = sl_err_set(err, SL_EAUTH, SL_RETRY_REAUTH, "%s: HTTP %ld", what, s);
	} else if (s == 503 && resp->retry_after_ms >= 0) {
		rc = sl_err_set(err, SL_EHTTP, SL_RETRY_AFTER, "%s: HTTP %ld", what, s);
		if (err)
			err->retry_after_ms = resp->retry_after_ms;
	} else if (s == 408 || s >= 500 || s == 0) {
		rc = sl_err_set(err, SL_EHTTP, SL_RETRY_BACKOFF, "%s: HTTP %ld", what, s);
	} else {
		rc = sl_err_set(err, SL_EHTTP, SL_RETRY_NO, "%s: HTTP %ld", what, s);
	}
	if (err) {
		err->http_status = (int)s;
		quote_body(resp, err);
	}
	return rc;
}

int
sl_http_urlencode(struct sl_buf *out, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	int rc = 0;

	for (; *s && !rc; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~') {
			rc = sl_buf_addc(out, (char)c);
		} else {
			char esc[3] = { '%', hex[c >> 4], hex[c & 15] };

			rc = sl_buf_add(out, esc, 3);
		}
	}
	return rc;
}

int
sl_http_form_add(struct sl_buf *form, const char *name, const char *value)
{
	int rc = 0;

	if (form->len)
		rc = sl_buf_addc(form, '&');
	if (!rc)
		rc = sl_http_urlencode(form, name);
	if (!rc)
		rc = sl_buf_addc(form, '=');
	if (!rc)
		rc = sl_http_urlencode(form, value);
	return rc;
}

int
sl_http_global_init(struct sl_err *err)
{
	CURLcode cc = curl_global_init(CURL_GLOBAL_DEFAULT);

	if (cc != CURLE_OK)
		return sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "libcurl initialisation failed: %s",
		                  curl_easy_strerror(cc));
	return 0;
}
