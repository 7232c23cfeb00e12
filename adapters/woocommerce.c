/* woocommerce.c — the WooCommerce REST API v3 client: authentication, pages, errors a shop admin can read. */
#include "adapters/woocommerce.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "adapters/oauth1.h"
#include "common/json.h"
#include "common/str.h"

/*
 * DESIGN
 *
 * 1. One call is one GET of base_url + "/wp-json/wc/v3/" + path with the
 *    list parameters orderby=id&order=asc&page=P&per_page=N and, for a delta,
 *    modified_after=T&dates_are_gmt=true.  Arguments are checked before any
 *    byte goes out (sl_woo_check_base_url, the path's characters, per_page
 *    within 1..100), so a bad setting is SL_EINVAL, never a 400 from the shop.
 *
 * 2. Authentication follows the URL's scheme, as WC_REST_Authentication
 *    does: https → HTTP Basic (consumer key and secret as user and
 *    password), or with auth_in_query consumer_key= and consumer_secret= in
 *    the query; http (loopback only, sl_http_do enforces it) → OAuth 1.0a
 *    one-legged, signed by adapters/oauth1.c with a fresh nonce per call.
 *    WooCommerce ignores Basic and query keys over http, so there is no
 *    other choice there.  The URL of a call can hold the secret
 *    (auth_in_query): it is wiped before it is freed, and no message ever
 *    holds a query string (http.c leaves it out of its own).
 *
 * 3. A 2xx answer is handed back as it came: the body is not parsed here
 *    (the caller, in the end PostgreSQL, parses the page), only the
 *    headers are: X-WP-Total and X-WP-TotalPages as bounded numbers, Link
 *    for a rel="next" (every Link header is read: WordPress sends several),
 *    and Date for the shop's clock (delta cursors should use it, not ours).
 *
 * 4. Any other answer becomes an error with the retry class woocommerce.h
 *    lists.  WordPress and WooCommerce answer errors with
 *    {"code","message","data":{"status"}}; when the body is that, its code
 *    and message are quoted in err->msg (bounded, control characters and
 *    HTML tags dropped, the key and secret masked should the shop echo
 *    them), because "Consumer secret is invalid." tells the admin more than
 *    any status code.
 *
 * 5. sl_woo_test() makes one cheap call (products, per_page=1) and turns
 *    the outcome into one sentence for the shop's admin: what is wrong and
 *    what to change.
 */

#define BASE_URL_MAX        2000
#define PATH_MAX_LEN        200
#define MODIFIED_AFTER_MAX  64
#define URL_MAX             (BASE_URL_MAX + PATH_MAX_LEN + SL_OAUTH1_MAX_QUERY)
#define COUNT_MAX           1000000000000LL   /* X-WP-Total and X-WP-TotalPages */
#define RETRY_AFTER_DEFAULT_MS 60000L
#define QUOTE_MESSAGE_MAX   120               /* bytes of WooCommerce's message in err->msg */
#define QUOTE_CODE_MAX      64
#define QUOTE_SCAN_MAX      4096              /* bytes of a message looked at */
#define LOCATION_MAX        200

/* What an error answer said, for err->msg and sl_woo_test's sentence. */
struct said {
	char code[QUOTE_CODE_MAX + 1];          /* "" when the body was not WooCommerce's error */
	char message[QUOTE_MESSAGE_MAX + 4];    /* "..." when cut */
	char location[LOCATION_MAX + 1];        /* a 3xx's Location, without query or fragment */
};

void
sl_woo_page_init(struct sl_woo_page *p)
{
	memset(p, 0, sizeof(*p));
	sl_http_response_init(&p->resp);
	p->resp.body.max = SL_WOO_MAX_PAGE_BYTES;
	p->total = p->total_pages = p->server_time = -1;
}

void
sl_woo_page_release(struct sl_woo_page *p)
{
	sl_http_response_release(&p->resp);
	p->total = p->total_pages = p->server_time = -1;
	p->has_next = 0;
}

/* ---- the base URL -------------------------------------------------------- */

static int
bad_url(struct sl_err *err, const char *msg, const char *sentence)
{
	int rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "shop URL %s", msg);

	/* The detail is what sl_woo_test shows: it never repeats the URL, which may hold a password. */
	sl_err_detail(err, "%s", sentence);
	sl_err_field(err, "base_url");
	return rc;
}

int
sl_woo_check_base_url(const char *base_url, struct sl_err *err)
{
	static const char example[] = "such as https://shop.example.com";
	char sentence[256];
	const char *authority;
	size_t n, alen, i;
	CURLU *u = NULL;
	CURLUcode uc;
	int rc = 0;

	if (!base_url || !*base_url)
		return bad_url(err, "is empty", "Enter the shop's address, such as "
		               "https://shop.example.com.");
	n = strlen(base_url);
	if (n > BASE_URL_MAX) {
		snprintf(sentence, sizeof(sentence), "The shop URL is longer than %d characters; enter "
		         "only the shop's address, %s.", BASE_URL_MAX, example);
		return bad_url(err, "is too long", sentence);
	}
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)base_url[i];

		if (c <= 0x20 || c == 0x7f)
			return bad_url(err, "contains spaces or control characters",
			               "Remove the spaces from the shop URL.");
	}
	if (strncasecmp(base_url, "https://", 8) && strncasecmp(base_url, "http://", 7)) {
		snprintf(sentence, sizeof(sentence), "The shop URL must start with https:// (or "
		         "http:// for a shop on this machine), %s.", example);
		return bad_url(err, "is not http or https", sentence);
	}
	authority = strstr(base_url, "://") + 3;
	alen = strcspn(authority, "/?#");
	if (alen == 0 || authority[0] == ':' || authority[0] == '@') {
		snprintf(sentence, sizeof(sentence), "The shop URL has no host name; enter the shop's "
		         "address, %s.", example);
		return bad_url(err, "has no host", sentence);
	}
	if (memchr(authority, '@', alen))
		return bad_url(err, "contains a user name or password",
		               "Remove the user name and password from the shop URL: Sluice signs in "
		               "with the REST API key's consumer key and secret.");
	if (strpbrk(base_url, "?#")) {
		snprintf(sentence, sizeof(sentence), "Remove the query (?...) and fragment (#...) from "
		         "the shop URL; enter only the shop's address, %s.", example);
		return bad_url(err, "contains a query or fragment", sentence);
	}
	u = curl_url();
	if (!u)
		return sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "shop URL: out of memory");
	uc = curl_url_set(u, CURLUPART_URL, base_url, 0);
	if (uc != CURLUE_OK) {
		snprintf(sentence, sizeof(sentence), "The shop URL is not a valid web address (%s); "
		         "enter the shop's address, %s.", uc == CURLUE_BAD_PORT_NUMBER ? "the port is "
		         "not a number from 1 to 65535" : "check the host name", example);
		rc = bad_url(err, "is malformed", sentence);
	}
	curl_url_cleanup(u);
	return rc;
}

/* ---- quoting what the shop said ------------------------------------------ */

/* Replaces every occurrence of secret in b with [redacted]. */
static int
mask(struct sl_buf *b, const char *secret)
{
	static const char masked[] = "[redacted]";
	size_t n = secret ? strlen(secret) : 0, from = 0;
	struct sl_buf out;
	const char *hit;
	int rc = 0;

	if (n < 4 || !strstr(b->data, secret))
		return 0;   /* too short to be a secret: masking it would garble words */
	sl_buf_init(&out, b->max);
	while (!rc && (hit = strstr(b->data + from, secret)) != NULL) {
		rc = sl_buf_add(&out, b->data + from, (size_t)(hit - (b->data + from)));
		if (!rc)
			rc = sl_buf_adds(&out, masked);
		from = (size_t)(hit - b->data) + n;
	}
	if (!rc)
		rc = sl_buf_adds(&out, b->data + from);
	OPENSSL_cleanse(b->data, b->len);
	sl_buf_reset(b);
	if (!rc)
		rc = sl_buf_add(b, out.data, out.len);
	sl_buf_release(&out);
	return rc;
}

/*
 * text made fit for a one-line message into dst (size bytes): HTML tags and
 * control characters dropped, runs of blanks made one space, the shop's key
 * and secret masked, cut on a UTF-8 boundary with "..." when too long.
 * Invalid UTF-8 gives "".
 */
static void
quote(const char *text, const struct sl_woo_shop *shop, char *dst, size_t size)
{
	struct sl_buf b;
	size_t i, n;
	int in_tag = 0, rc = 0;

	dst[0] = '\0';
	sl_buf_init(&b, QUOTE_SCAN_MAX * 2);
	for (i = 0; text[i] && i < QUOTE_SCAN_MAX && !rc; i++) {
		unsigned char c = (unsigned char)text[i];

		if (in_tag) {
			in_tag = c != '>';
			continue;
		}
		in_tag = c == '<';   /* a tag counts as a blank: "</p><p>" separates words */
		if (in_tag || c < 0x20 || c == 0x7f || c == ' ') {
			if (b.len && b.data[b.len - 1] != ' ')
				rc = sl_buf_addc(&b, ' ');
		} else {
			rc = sl_buf_addc(&b, (char)c);
		}
	}
	if (!rc)
		rc = mask(&b, shop->consumer_secret);
	if (!rc)
		rc = mask(&b, shop->consumer_key);
	while (!rc && b.len && b.data[b.len - 1] == ' ')
		b.data[--b.len] = '\0';
	if (rc || !sl_utf8_valid(b.data, b.len)) {
		sl_buf_release(&b);
		return;
	}
	n = b.len;
	if (n + 1 > size) {
		n = size - 4;
		while (n > 0 && ((unsigned char)b.data[n] & 0xC0) == 0x80)
			n--;   /* do not cut a UTF-8 sequence */
	}
	memcpy(dst, b.data, n);
	dst[n] = '\0';
	if (n < b.len)
		memcpy(dst + n, "...", 4);
	OPENSSL_cleanse(b.data, b.len);
	sl_buf_release(&b);
}

/* WooCommerce's error body {"code","message","data"} into said, when the body is one. */
static void
read_error_body(const struct sl_http_response *resp, const struct sl_woo_shop *shop,
                struct said *said)
{
	json_object *doc = NULL, *code, *message;
	struct sl_err jerr;

	if (!resp->body.len || sl_json_parse(resp->body.data, resp->body.len, &doc, &jerr))
		return;
	if (json_object_is_type(doc, json_type_object) &&
	    json_object_object_get_ex(doc, "code", &code) &&
	    json_object_is_type(code, json_type_string) &&
	    json_object_object_get_ex(doc, "message", &message) &&
	    json_object_is_type(message, json_type_string)) {
		quote(json_object_get_string(code), shop, said->code, sizeof(said->code));
		quote(json_object_get_string(message), shop, said->message, sizeof(said->message));
		if (!said->code[0])
			said->message[0] = '\0';
	}
	json_object_put(doc);
}

/* A redirect's target for the admin: printable, without query or fragment (they may echo keys). */
static void
read_location(const struct sl_http_response *resp, struct said *said)
{
	const char *loc = sl_http_header(resp, "Location");
	size_t n, i;

	if (!loc)
		return;
	n = strcspn(loc, "?#");
	if (n > LOCATION_MAX)
		return;
	for (i = 0; i < n; i++)
		if ((unsigned char)loc[i] <= 0x20 || (unsigned char)loc[i] >= 0x7f)
			return;
	memcpy(said->location, loc, n);
	said->location[n] = '\0';
}

/* ---- answers ------------------------------------------------------------- */

/* Turns a non-2xx answer into the error woocommerce.h documents. */
static int
answer_error(const struct sl_http_response *resp, const char *path, const struct sl_woo_shop *shop,
             struct said *said, struct sl_err *err)
{
	long s = resp->status;
	const char *summary;
	char quoted[sizeof(said->message) + sizeof(said->code) + 40] = "";
	int code = SL_EHTTP, retry = SL_RETRY_NO, rc;

	read_error_body(resp, shop, said);
	read_location(resp, said);
	if (said->code[0])
		snprintf(quoted, sizeof(quoted), "; WooCommerce said: %s (%s)", said->message,
		         said->code);
	if (s == 401 || s == 403) {
		code = SL_EAUTH;
		retry = SL_RETRY_REAUTH;
		summary = "the consumer key or secret was refused";
	} else if (s == 404) {
		code = SL_ENOTFOUND;
		summary = "WooCommerce REST API not found at this URL";
	} else if (s == 429) {
		code = SL_ERATELIMIT;
		retry = SL_RETRY_AFTER;
		summary = "the shop is limiting requests";
	} else if (s == 408) {
		retry = SL_RETRY_BACKOFF;
		summary = "the shop timed out reading the request";
	} else if (s == 500) {
		retry = SL_RETRY_BACKOFF;
		summary = "the shop had an internal error";
	} else if (s >= 502 && s <= 504) {
		retry = SL_RETRY_BACKOFF;
		summary = "the shop is unavailable";
	} else if (s >= 500) {
		retry = SL_RETRY_BACKOFF;
		summary = "the shop had an error";
	} else if (s >= 300 && s <= 399) {
		summary = "the shop redirected to another address";
	} else {
		summary = "the shop refused the request";
	}
	rc = sl_err_set(err, code, retry, "woocommerce %s: %s (HTTP %ld)%s", path, summary, s, quoted);
	if (!err)
		return rc;
	err->http_status = (int)s;
	if (s == 429)
		err->retry_after_ms = resp->retry_after_ms >= 0 ? resp->retry_after_ms
		                                                : RETRY_AFTER_DEFAULT_MS;
	if (s == 401 || s == 403)
		sl_err_detail(err, "Check the REST API key under WooCommerce > Settings > Advanced > "
		              "REST API: its consumer key and secret, and that it has Read permission.");
	else if (s == 404)
		sl_err_detail(err, "The shop URL should be the address of the WordPress site, with the "
		              "WooCommerce plugin active and pretty permalinks on (/wp-json/ answers).");
	else if (s >= 300 && s <= 399 && said->location[0])
		sl_err_detail(err, "Redirects are not followed; set the shop URL to the address it "
		              "redirects to (%s).", said->location);
	return rc;
}

static long long
header_count(const struct sl_http_response *resp, const char *name)
{
	const char *v = sl_http_header(resp, name);
	long long n;

	if (!v || sl_parse_ll(v, 0, COUNT_MAX, &n))
		return -1;
	return n;
}

static int
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Whether the space-separated relation types in [p, end) include "next" (RFC 8288 3.3). */
static int
rel_has_next(const char *p, const char *end)
{
	while (p < end) {
		const char *w;

		while (p < end && is_blank(*p))
			p++;
		for (w = p; p < end && !is_blank(*p); p++)
			;
		if (p - w == 4 && !strncasecmp(w, "next", 4))
			return 1;
	}
	return 0;
}

/*
 * Whether a Link header value has a link with rel="next": links are
 * "<URI>; param; param=value", separated by commas (RFC 8288 3).
 */
static int
link_has_next(const char *v)
{
	const char *p = v;

	while ((p = strchr(p, '<')) != NULL) {
		p = strchr(p, '>');   /* a URI-Reference holds no '>' */
		if (!p)
			return 0;
		p++;
		while (*p && *p != ',') {
			const char *name, *val = NULL, *vend = NULL;
			size_t nlen;

			while (*p == ';' || is_blank(*p))
				p++;
			name = p;
			while (*p && *p != '=' && *p != ';' && *p != ',' && !is_blank(*p))
				p++;
			nlen = (size_t)(p - name);
			while (is_blank(*p))
				p++;
			if (*p == '=') {
				p++;
				while (is_blank(*p))
					p++;
				if (*p == '"') {
					val = ++p;
					while (*p && *p != '"')
						p += p[0] == '\\' && p[1] ? 2 : 1;
					vend = p;
					if (*p == '"')
						p++;
				} else {
					val = p;
					while (*p && *p != ';' && *p != ',' && !is_blank(*p))
						p++;
					vend = p;
				}
			}
			if (val && nlen == 3 && !strncasecmp(name, "rel", 3) && rel_has_next(val, vend))
				return 1;
			if (nlen == 0 && !val && *p && *p != ',' && *p != ';')
				p++;   /* a stray character: step over it */
		}
	}
	return 0;
}

static void
read_page_headers(struct sl_woo_page *out)
{
	const char *date = sl_http_header(&out->resp, "Date");
	int i;

	out->total = header_count(&out->resp, "X-WP-Total");
	out->total_pages = header_count(&out->resp, "X-WP-TotalPages");
	out->has_next = 0;
	for (i = 0; i < out->resp.n_headers && !out->has_next; i++)
		if (!strcasecmp(out->resp.headers[i].name, "Link"))
			out->has_next = link_has_next(out->resp.headers[i].value);
	out->server_time = -1;
	if (date) {
		time_t t = curl_getdate(date, NULL);

		out->server_time = t == (time_t)-1 ? -1 : (long long)t;
	}
}

/* ---- the call ------------------------------------------------------------ */

/* "products", "orders", "products/12/variations": no leading, trailing or double slash. */
static int
path_ok(const char *path)
{
	size_t n = path ? strlen(path) : 0;

	return n > 0 && n <= PATH_MAX_LEN && path[0] != '/' && path[n - 1] != '/' &&
	       !strstr(path, "//") &&
	       strspn(path, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-/") == n;
}

static int
check_args(const struct sl_woo_shop *shop, const char *path, long long page, int per_page,
           const char *modified_after, struct sl_err *err)
{
	int rc;

	if (!shop)
		return sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "woocommerce: no shop");
	rc = sl_woo_check_base_url(shop->base_url, err);
	if (rc)
		return rc;
	if (!shop->consumer_key || !*shop->consumer_key || !shop->consumer_secret ||
	    !*shop->consumer_secret) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "woocommerce: a consumer key and secret "
		                "are needed");
		sl_err_detail(err, "Enter the consumer key (ck_...) and consumer secret (cs_...) of a "
		              "WooCommerce REST API key with Read permission.");
		sl_err_field(err, !shop->consumer_key || !*shop->consumer_key ? "consumer_key"
		                                                              : "consumer_secret");
		return rc;
	}
	if (!path_ok(path)) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "woocommerce: bad resource path");
		sl_err_field(err, "path");
		return rc;
	}
	if (page < 1 || page > COUNT_MAX) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "woocommerce %s: page %lld is out of range",
		                path, page);
		sl_err_field(err, "page");
		return rc;
	}
	if (per_page < 1 || per_page > SL_WOO_PER_PAGE_MAX) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "woocommerce %s: per_page %d is not within "
		                "1..%d", path, per_page, SL_WOO_PER_PAGE_MAX);
		sl_err_field(err, "per_page");
		return rc;
	}
	if (modified_after && (!*modified_after || strlen(modified_after) > MODIFIED_AFTER_MAX)) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "woocommerce %s: modified_after must be "
		                "an RFC 3339 time", path);
		sl_err_field(err, "modified_after");
		return rc;
	}
	return 0;
}

/* The whole URL of a call into url: base, route, and the query with the authentication. */
static int
build_url(const struct sl_woo_shop *shop, const char *path, const struct sl_oauth1_param *params,
          size_t n, struct sl_buf *url, struct sl_err *err)
{
	struct sl_buf query;
	size_t blen = strlen(shop->base_url), i;
	int plain = !strncasecmp(shop->base_url, "http://", 7);
	int rc;

	sl_buf_init(&query, SL_OAUTH1_MAX_QUERY);
	while (blen > 0 && shop->base_url[blen - 1] == '/')
		blen--;
	rc = sl_buf_add(url, shop->base_url, blen);
	if (!rc)
		rc = sl_buf_addf(url, "/wp-json/wc/v3/%s", path);
	if (rc) {
		rc = sl_err_set(err, rc, rc == SL_ENOMEM ? SL_RETRY_BACKOFF : SL_RETRY_NO,
		                "woocommerce %s: URL too long", path);
		goto out;
	}
	if (plain) {
		/* WooCommerce looks at nothing but OAuth 1.0a over http. */
		rc = sl_oauth1_sign_query(&query, "GET", url->data, params, n, shop->consumer_key,
		                          shop->consumer_secret, err);
		if (rc)
			goto out;
	} else {
		for (i = 0; i < n && !rc; i++)
			rc = sl_http_form_add(&query, params[i].name, params[i].value);
		if (!rc && shop->auth_in_query)
			rc = sl_http_form_add(&query, "consumer_key", shop->consumer_key);
		if (!rc && shop->auth_in_query)
			rc = sl_http_form_add(&query, "consumer_secret", shop->consumer_secret);
	}
	if (!rc)
		rc = sl_buf_addc(url, '?');
	if (!rc)
		rc = sl_buf_add(url, query.data, query.len);
	if (rc)
		rc = sl_err_set(err, rc, rc == SL_ENOMEM ? SL_RETRY_BACKOFF : SL_RETRY_NO,
		                "woocommerce %s: URL too long", path);
out:
	if (query.cap)
		OPENSSL_cleanse(query.data, query.len);
	sl_buf_release(&query);
	return rc;
}

/* sl_woo_list, telling the caller what the shop said (said may be NULL). */
static int
woo_get(const struct sl_woo_shop *shop, const char *path, long long page, int per_page,
        const char *modified_after, struct sl_woo_page *out, struct said *said,
        struct sl_err *err)
{
	struct said scratch;
	struct sl_oauth1_param params[6];
	struct sl_buf url;
	char page_s[24], per_page_s[16];
	size_t n = 0;
	int rc;

	if (!said)
		said = &scratch;
	memset(said, 0, sizeof(*said));
	sl_buf_init(&url, URL_MAX);
	sl_woo_page_release(out);
	out->resp.body.max = SL_WOO_MAX_PAGE_BYTES;
	rc = check_args(shop, path, page, per_page, modified_after, err);
	if (rc)
		goto out;
	snprintf(page_s, sizeof(page_s), "%lld", page);
	snprintf(per_page_s, sizeof(per_page_s), "%d", per_page);
	/* A stable order, so that page N+1 starts where page N ended. */
	params[n++] = (struct sl_oauth1_param){ "orderby", "id" };
	params[n++] = (struct sl_oauth1_param){ "order", "asc" };
	params[n++] = (struct sl_oauth1_param){ "page", page_s };
	params[n++] = (struct sl_oauth1_param){ "per_page", per_page_s };
	if (modified_after) {
		params[n++] = (struct sl_oauth1_param){ "modified_after", modified_after };
		params[n++] = (struct sl_oauth1_param){ "dates_are_gmt", "true" };
	}
	rc = build_url(shop, path, params, n, &url, err);
	if (rc)
		goto out;
	{
		const char *headers[] = { "Accept: application/json", NULL };
		int query_auth = shop->auth_in_query || !strncasecmp(shop->base_url, "http://", 7);
		struct sl_http_request req = {
			.method = "GET", .url = url.data, .headers = headers,
			.basic_user = query_auth ? NULL : shop->consumer_key,
			.basic_password = query_auth ? NULL : shop->consumer_secret,
			.timeout_ms = shop->timeout_ms, .max_body = SL_WOO_MAX_PAGE_BYTES,
			.ca_file = shop->ca_file,
		};

		rc = sl_http_do(&req, &out->resp, err);
	}
	if (rc)
		goto out;
	if (out->resp.status < 200 || out->resp.status > 299) {
		rc = answer_error(&out->resp, path, shop, said, err);
		goto out;
	}
	read_page_headers(out);
out:
	if (url.cap)
		OPENSSL_cleanse(url.data, url.len);
	sl_buf_release(&url);
	return rc;
}

int
sl_woo_list(const struct sl_woo_shop *shop, const char *path, long long page, int per_page,
            const char *modified_after, struct sl_woo_page *out, struct sl_err *err)
{
	return woo_get(shop, path, page, per_page, modified_after, out, NULL, err);
}

/* ---- test connection ----------------------------------------------------- */

/* The reason libcurl gave, after http.c's "METHOD URL: " label. */
static const char *
transfer_reason(const struct sl_err *err)
{
	const char *p = strstr(err->msg, ": ");

	return p ? p + 2 : err->msg;
}

/* One sentence for the shop's admin about a failed test; never a secret. */
static void
explain(const struct sl_woo_shop *shop, const struct said *said, const struct sl_err *err,
        char *message, size_t size)
{
	char wc[sizeof(said->message) + sizeof(said->code) + 40] = "";

	if (said->code[0])
		snprintf(wc, sizeof(wc), " (WooCommerce said: %s)", said->message);
	if (err->code == SL_EINVAL && err->detail[0] && (!strcmp(err->field, "base_url") ||
	    !strcmp(err->field, "consumer_key") || !strcmp(err->field, "consumer_secret"))) {
		snprintf(message, size, "%s", err->detail);
	} else if (err->code == SL_EINVAL && shop && shop->base_url &&
	           !strncasecmp(shop->base_url, "http://", 7) && strstr(err->msg, "plain http")) {
		snprintf(message, size, "The shop URL must start with https://: plain http:// is only "
		         "allowed for a shop on this machine.");
	} else if (err->code == SL_EHTTP && err->http_status == 0 &&
	           strstr(err->msg, "TLS certificate not trusted")) {
		snprintf(message, size, "The shop's TLS certificate is not trusted: it is not signed by a "
		         "known certificate authority, has expired, or is for another host name. Install "
		         "a valid certificate on the shop (for example from Let's Encrypt), or give the CA "
		         "certificate that signed it.");
	} else if (err->code == SL_EHTTP && err->http_status == 0 &&
	           strstr(err->msg, "connection refused")) {
		snprintf(message, size, "Could not connect to the shop: the connection was refused. Check "
		         "the host and port in the shop URL, and that the shop's web server is running.");
	} else if (err->code == SL_EHTTP && err->http_status == 0 &&
	           strstr(err->msg, "host not found")) {
		snprintf(message, size, "Could not find the shop's host name. Check the shop URL for "
		         "typing errors.");
	} else if (err->code == SL_ETIMEOUT) {
		snprintf(message, size, "The shop did not answer in time. Check that it is up, then try "
		         "again.");
	} else if (err->code == SL_EAUTH) {
		snprintf(message, size, "The shop refused the consumer key or secret%s. Check the REST API "
		         "key under WooCommerce > Settings > Advanced > REST API: copy its consumer key "
		         "and secret again, and give it Read permission.", wc);
	} else if (err->code == SL_ENOTFOUND) {
		snprintf(message, size, "WooCommerce REST API not found at this URL. Check that the shop "
		         "URL is the address of the WordPress site and that the WooCommerce plugin is "
		         "installed and active.");
	} else if (err->code == SL_ERATELIMIT) {
		snprintf(message, size, "The shop is limiting requests right now (HTTP 429); try again in "
		         "%ld seconds.", (err->retry_after_ms + 999) / 1000);
	} else if (err->http_status >= 500 || err->http_status == 408) {
		snprintf(message, size, "The shop answered with a server error (HTTP %d)%s. It may be "
		         "down or under maintenance; try again later, or look at the shop's error log.",
		         err->http_status, wc);
	} else if (err->http_status >= 300 && err->http_status <= 399) {
		if (said->location[0])
			snprintf(message, size, "The shop redirected to another address (HTTP %d). Set the "
			         "shop URL to the address it redirects to: %s", err->http_status,
			         said->location);
		else
			snprintf(message, size, "The shop redirected to another address (HTTP %d). Set the "
			         "shop URL to the shop's own address.", err->http_status);
	} else if (err->http_status >= 400) {
		snprintf(message, size, "The shop refused the request (HTTP %d)%s.", err->http_status, wc);
	} else if (err->code == SL_ETOOLARGE) {
		snprintf(message, size, "The shop's answer was too large to be a WooCommerce page.");
	} else if (err->http_status == 0 && (err->code == SL_EHTTP || err->code == SL_EINVAL)) {
		snprintf(message, size, "Could not reach the shop (%s). Check the shop URL and that the "
		         "shop is up.", transfer_reason(err));
	} else {
		snprintf(message, size, "The connection test failed: %s.", err->msg);
	}
}

int
sl_woo_test(const struct sl_woo_shop *shop, char *message, size_t message_size,
            struct sl_err *err)
{
	struct sl_woo_page page;
	struct said said;
	struct sl_err local;
	int rc;

	if (!err)
		err = &local;
	sl_woo_page_init(&page);
	rc = woo_get(shop, "products", 1, 1, NULL, &page, &said, err);
	if (message && message_size) {
		if (!rc && page.total >= 0)
			snprintf(message, message_size, "Connected to the shop's WooCommerce REST API "
			         "(%lld product%s).", page.total, page.total == 1 ? "" : "s");
		else if (!rc)
			snprintf(message, message_size, "Connected to the shop's WooCommerce REST API.");
		else
			explain(shop, &said, err, message, message_size);
	}
	sl_woo_page_release(&page);
	return rc;
}
