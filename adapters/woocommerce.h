/* woocommerce.h — the WooCommerce REST API v3 client: authentication, pages, errors a shop admin can read. */
#ifndef SL_ADAPTERS_WOOCOMMERCE_H
#define SL_ADAPTERS_WOOCOMMERCE_H

#include <stddef.h>

#include "adapters/http.h"
#include "common/err.h"

/*
 * A shop.  Strings are borrowed for the call.
 *
 * Authentication as WooCommerce requires it (its WC_REST_Authentication):
 * over https, HTTP Basic with the consumer key and secret, or with
 * auth_in_query the query-string form (?consumer_key=&consumer_secret=) some
 * hosts need because they strip the Authorization header; over plain http
 * (allowed only to loopback, like every adapter's http://), OAuth 1.0a
 * one-legged: HMAC-SHA256 signature, nonce and timestamp in the query string
 * (adapters/oauth1.h).  TLS verification is always on; ca_file names the CA
 * bundle when the shop's certificate is not signed by a system CA.
 */
struct sl_woo_shop {
	const char *base_url;         /* "https://shop.example" (a path prefix is allowed), no query */
	const char *consumer_key;     /* ck_... (a secret: never logged, never in an error) */
	const char *consumer_secret;  /* cs_... */
	int         auth_in_query;
	const char *ca_file;          /* NULL: the system's CAs */
	long        timeout_ms;       /* per call; 0: 30 s */
};

/* One page of a list. */
struct sl_woo_page {
	struct sl_http_response resp;  /* resp.body: the page, a JSON array, as the shop sent it */
	long long total;               /* X-WP-Total, -1 when absent */
	long long total_pages;         /* X-WP-TotalPages, -1 when absent */
	int       has_next;            /* a Link header with rel="next" */
	long long server_time;         /* the answer's Date header, epoch seconds; -1 when absent */
};

#define SL_WOO_PER_PAGE_MAX 100
#define SL_WOO_MAX_PAGE_BYTES (16u << 20)   /* a page's body cap */

void sl_woo_page_init(struct sl_woo_page *p);
void sl_woo_page_release(struct sl_woo_page *p);

/*
 * Checks a base URL before any call: http or https, a host, an optional
 * port and path, no user info, query or fragment, at most 2000 bytes.
 * Returns 0 or SL_EINVAL with a message for the shop's admin.
 */
int sl_woo_check_base_url(const char *base_url, struct sl_err *err)
	__attribute__((warn_unused_result));

/*
 * GET base_url/wp-json/wc/v3/<path> with page, per_page (1..100) and, when
 * modified_after is not NULL, modified_after=<it>&dates_are_gmt=true, and
 * orderby=id&order=asc (a stable order for page-by-page reading).  path is
 * "products", "orders" or "products/<id>/variations".  Fills *out (emptied
 * first) on a 2xx answer.
 *
 * Errors, with WooCommerce's own error body {"code","message","data"}
 * quoted in err->msg ("WooCommerce said: <message> (<code>)") when there is
 * one, and never a key or secret:
 *   401, 403          SL_EAUTH, SL_RETRY_REAUTH ("the consumer key or secret
 *                     was refused ..." plus WooCommerce's message);
 *   404 on the list   SL_ENOTFOUND, SL_RETRY_NO, "WooCommerce REST API not
 *                     found at this URL" (a WordPress without WooCommerce, or
 *                     not WordPress at all);
 *   429               SL_ERATELIMIT, SL_RETRY_AFTER, err->retry_after_ms from
 *                     Retry-After (60 s without one);
 *   5xx, 408, timeouts, connection errors   SL_RETRY_BACKOFF;
 *   a TLS certificate that does not verify  SL_EHTTP, SL_RETRY_NO;
 *   other 4xx         SL_EHTTP, SL_RETRY_NO.
 * err->http_status holds the status when one came.
 */
int sl_woo_list(const struct sl_woo_shop *shop, const char *path, long long page, int per_page,
                const char *modified_after, struct sl_woo_page *out, struct sl_err *err)
	__attribute__((warn_unused_result));

/*
 * Test connection: the base URL, TLS and the credentials with one cheap
 * call (GET .../products?per_page=1).  Returns 0 with message ("Connected
 * to the shop's WooCommerce REST API (N products).") or the error as
 * sl_woo_list, with message a sentence for the shop's admin that says what
 * to fix (the URL, the certificate, the keys, the shop being down).  message
 * never holds a secret.
 */
int sl_woo_test(const struct sl_woo_shop *shop, char *message, size_t message_size,
                struct sl_err *err) __attribute__((warn_unused_result));

#endif
