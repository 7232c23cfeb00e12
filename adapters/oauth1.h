/* oauth1.h — OAuth 1.0a one-legged request signing (HMAC-SHA256), as WooCommerce checks it over plain http. */
#ifndef SL_ADAPTERS_OAUTH1_H
#define SL_ADAPTERS_OAUTH1_H

#include <stddef.h>

#include "common/buf.h"
#include "common/err.h"

/*
 * One query parameter, not encoded.  Strings are borrowed for the call.
 *
 * WooCommerce reads parameters as PHP's $_GET does, so names should be
 * unique (PHP keeps only the last of a repeated name) and free of '.', ' '
 * and '[' (PHP rewrites those): such a request is signed correctly by RFC
 * 5849 but checked against something else by the shop.
 */
struct sl_oauth1_param {
	const char *name;
	const char *value;
};

#define SL_OAUTH1_NONCE_LEN     32      /* characters of [A-Za-z0-9] in a nonce we make */
#define SL_OAUTH1_MAX_QUERY     (64u << 10)

/*
 * The signature base string of RFC 5849 3.4.1 into out (appended):
 * METHOD & enc(base URI) & enc(normalized parameters), where enc is RFC 3986
 * percent-encoding (all but A-Z a-z 0-9 - . _ ~, upper-case hex), the base
 * URI is url without query or fragment, scheme and host in lower case and a
 * default port (80 for http, 443 for https) dropped, and the parameters are
 * params encoded, sorted by encoded name then encoded value, joined as
 * "name=value" pairs with '&'.  params are taken as they are, oauth_* ones
 * included (the caller leaves out oauth_signature).  Returns 0, SL_EINVAL
 * for a method that is not an upper-case token or a url that is not
 * absolute http(s), SL_ENOMEM or SL_ETOOLARGE.  On error out is as it was,
 * or released when appending to it failed (as sl_buf does).
 */
int sl_oauth1_base_string(struct sl_buf *out, const char *method, const char *url,
                          const struct sl_oauth1_param *params, size_t n_params,
                          struct sl_err *err) __attribute__((warn_unused_result));

/*
 * The whole signed query string, without the leading '?', appended to out:
 * params, then oauth_consumer_key, oauth_nonce, oauth_signature_method
 * (HMAC-SHA256), oauth_timestamp and last oauth_signature, every name and
 * value percent-encoded.  The signature is base64 of HMAC-SHA256 over the
 * base string above (params plus the oauth_* ones) with the key
 * consumer_secret + "&" (one-legged: no token secret; the secret is not
 * percent-encoded first, as WooCommerce does it, which RFC 5849 agrees with
 * for every secret WooCommerce issues).  base_url is the
 * request URL without its query (a query in it is refused: put those
 * parameters in params).  A pure function of its inputs, for known-answer
 * tests: nonce and timestamp are the caller's.  params may not use an oauth_
 * name.  Returns 0, or SL_EINVAL, SL_ENOMEM or SL_ETOOLARGE with out as
 * for sl_oauth1_base_string(); err never holds the key or the secret.
 */
int sl_oauth1_sign_query_at(struct sl_buf *out, const char *method, const char *base_url,
                            const struct sl_oauth1_param *params, size_t n_params,
                            const char *consumer_key, const char *consumer_secret,
                            const char *nonce, long long timestamp, struct sl_err *err)
	__attribute__((warn_unused_result));

/*
 * sl_oauth1_sign_query_at() with a fresh random nonce (SL_OAUTH1_NONCE_LEN
 * characters from common/crypto.h) and the current Unix time.  Each call
 * makes a new nonce, so a signed query is good for one request.
 */
int sl_oauth1_sign_query(struct sl_buf *out, const char *method, const char *base_url,
                         const struct sl_oauth1_param *params, size_t n_params,
                         const char *consumer_key, const char *consumer_secret,
                         struct sl_err *err) __attribute__((warn_unused_result));

#endif
