/* oauth1.c — OAuth 1.0a one-legged request signing (HMAC-SHA256), as WooCommerce checks it over plain http. */
#include "adapters/oauth1.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "adapters/http.h"
#include "common/alloc.h"
#include "common/crypto.h"

/*
 * DESIGN
 *
 * WooCommerce accepts REST API keys over plain http only as OAuth 1.0a
 * "one-legged" requests (WC_REST_Authentication::perform_oauth_authentication):
 * no token, no token secret, every oauth_* value in the query string.
 *
 * 1. The request's parameters are the caller's query parameters plus
 *    oauth_consumer_key, oauth_nonce, oauth_signature_method=HMAC-SHA256
 *    and oauth_timestamp.
 * 2. The signature base string (RFC 5849 3.4.1) is
 *        METHOD "&" enc(base URI) "&" enc(normalized parameters)
 *    where enc is RFC 3986 percent-encoding (sl_http_urlencode), the base
 *    URI is the URL without query, and the normalized parameters are the
 *    pairs enc(name) "=" enc(value), sorted by encoded name then encoded
 *    value, joined with "&".  WooCommerce builds the same string: it
 *    rawurlencode()s names and values, sorts, joins "k=v" pairs and encodes
 *    each again, joining them with "%26" — which is enc() of the "&"-joined
 *    list, since an encoded pair has nothing left for enc to change but '%'
 *    and '='.
 * 3. The signature is base64(HMAC-SHA256(consumer_secret "&", base string)),
 *    added to the query as oauth_signature (percent-encoded: base64 has '+',
 *    '/' and '=').
 * 4. The shop then checks that the timestamp is within 15 minutes of its
 *    clock and that the nonce is new, so a signed query serves one request:
 *    sign again for a retry.
 *
 * The base URI must be the one the shop reconstructs: WooCommerce takes its
 * own home URL plus the request path, so the base URL given here has to be
 * the shop's address as WordPress knows it.  Scheme and host are lower-cased
 * and a default port dropped (RFC 5849 3.4.1.2), as libcurl leaves the
 * default port out of the Host header too.
 */

/* One parameter, percent-encoded, owned. */
struct enc_pair {
	char *name;
	char *value;
};

static void
pairs_free(struct enc_pair *pairs, size_t n)
{
	size_t i;

	if (!pairs)
		return;
	for (i = 0; i < n; i++) {
		sl_free(pairs[i].name);
		sl_free(pairs[i].value);
	}
	sl_free(pairs);
}

static int
buf_error(int rc, struct sl_err *err)
{
	if (rc == SL_ETOOLARGE)
		return sl_err_set(err, SL_ETOOLARGE, SL_RETRY_NO, "oauth1: signed request too long");
	return sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "oauth1: out of memory");
}

/* s percent-encoded into a new string (sl_free), or NULL with *rc set. */
static char *
encode(const char *s, int *rc)
{
	struct sl_buf b;
	char *out;

	sl_buf_init(&b, SL_OAUTH1_MAX_QUERY);
	*rc = sl_http_urlencode(&b, s);
	if (*rc)
		return NULL;
	out = sl_buf_detach(&b);
	if (!out)
		*rc = SL_ENOMEM;
	return out;
}

static int
pair_cmp(const void *a, const void *b)
{
	const struct enc_pair *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : strcmp(x->value, y->value);
}

/* params encoded and sorted (RFC 5849 3.4.1.3.2) into *out (pairs_free). */
static int
encode_sorted(const struct sl_oauth1_param *params, size_t n, struct enc_pair **out,
              struct sl_err *err)
{
	struct enc_pair *pairs;
	size_t i;
	int rc = 0;

	*out = NULL;
	pairs = sl_calloc(n ? n : 1, sizeof(*pairs));
	if (!pairs)
		return buf_error(SL_ENOMEM, err);
	for (i = 0; i < n && !rc; i++) {
		if (!params[i].name || !params[i].value) {
			pairs_free(pairs, n);
			return sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "oauth1: parameter %zu has no "
			                  "name or value", i);
		}
		pairs[i].name = encode(params[i].name, &rc);
		if (!rc)
			pairs[i].value = encode(params[i].value, &rc);
	}
	if (rc) {
		pairs_free(pairs, n);
		return buf_error(rc, err);
	}
	qsort(pairs, n, sizeof(*pairs), pair_cmp);
	*out = pairs;
	return 0;
}

static void
lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/*
 * The base string URI of url (RFC 5849 3.4.1.2) appended to out.  With
 * no_query, a URL that has a query is refused rather than having it dropped.
 */
static int
base_uri(struct sl_buf *out, const char *url, int no_query, struct sl_err *err)
{
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL;
	CURLU *u = curl_url();
	int rc = 0;

	if (!u)
		return buf_error(SL_ENOMEM, err);
	if (!url || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    (strcasecmp(scheme, "http") && strcasecmp(scheme, "https"))) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "oauth1: not an absolute http(s) URL");
		goto out;
	}
	if (no_query && curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "oauth1: the base URL has a query; "
		                "pass its parameters to be signed instead");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_NO_DEFAULT_PORT) != CURLUE_OK)
		port = NULL;
	if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
		path = NULL;
	lower(scheme);
	lower(host);
	rc = sl_buf_addf(out, "%s://%s%s%s%s", scheme, host, port ? ":" : "", port ? port : "",
	                 path ? path : "/");
	if (rc)
		rc = buf_error(rc, err);
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_free(query);
	curl_url_cleanup(u);
	return rc;
}

/* The base string built into a buffer of its own, then appended to out (released on failure). */
static int
base_string(struct sl_buf *out, const char *method, const char *url, int no_query,
            const struct sl_oauth1_param *params, size_t n, struct sl_err *err)
{
	struct enc_pair *pairs = NULL;
	struct sl_buf uri, norm, s;
	size_t i;
	int rc;

	sl_buf_init(&uri, SL_OAUTH1_MAX_QUERY);
	sl_buf_init(&norm, SL_OAUTH1_MAX_QUERY);
	sl_buf_init(&s, SL_OAUTH1_MAX_QUERY * 3);
	if (!method || !*method || strspn(method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(method)) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "oauth1: the method must be an upper-case "
		                "token such as GET");
		goto out;
	}
	rc = base_uri(&uri, url, no_query, err);
	if (!rc)
		rc = encode_sorted(params, n, &pairs, err);
	if (rc)
		goto out;
	for (i = 0; i < n && !rc; i++)
		rc = sl_buf_addf(&norm, "%s%s=%s", i ? "&" : "", pairs[i].name, pairs[i].value);
	if (!rc)
		rc = sl_buf_addf(&s, "%s&", method);
	if (!rc)
		rc = sl_http_urlencode(&s, uri.data);
	if (!rc)
		rc = sl_buf_addc(&s, '&');
	if (!rc)
		rc = sl_http_urlencode(&s, norm.data);
	if (!rc)
		rc = sl_buf_add(out, s.data, s.len);
	if (rc)
		rc = buf_error(rc, err);
out:
	pairs_free(pairs, n);
	sl_buf_release(&uri);
	sl_buf_release(&norm);
	sl_buf_release(&s);
	return rc;
}

int
sl_oauth1_base_string(struct sl_buf *out, const char *method, const char *url,
                      const struct sl_oauth1_param *params, size_t n_params, struct sl_err *err)
{
	return base_string(out, method, url, 0, params, n_params, err);
}

/* base64 of HMAC-SHA256(secret "&", text) into sig (45 bytes: 44 characters and a NUL). */
static int
hmac_sha256_b64(const char *secret, const struct sl_buf *text, char sig[45], struct sl_err *err)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	size_t slen = strlen(secret);
	char *key;
	int rc = 0;

	key = sl_malloc(slen + 2);
	if (!key)
		return buf_error(SL_ENOMEM, err);
	memcpy(key, secret, slen);
	key[slen] = '&';
	key[slen + 1] = '\0';
	if (!HMAC(EVP_sha256(), key, (int)(slen + 1), (const unsigned char *)text->data, text->len,
	          md, &md_len) || md_len != 32) {
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "oauth1: HMAC-SHA256 failed");
		goto out;
	}
	EVP_EncodeBlock((unsigned char *)sig, md, (int)md_len);
out:
	OPENSSL_cleanse(key, slen + 2);
	sl_free(key);
	OPENSSL_cleanse(md, sizeof(md));
	return rc;
}

int
sl_oauth1_sign_query_at(struct sl_buf *out, const char *method, const char *base_url,
                        const struct sl_oauth1_param *params, size_t n_params,
                        const char *consumer_key, const char *consumer_secret, const char *nonce,
                        long long timestamp, struct sl_err *err)
{
	struct sl_oauth1_param *all = NULL;
	struct sl_buf base, q;
	char ts[24], sig[45];
	size_t i;
	int rc = 0;

	sl_buf_init(&base, SL_OAUTH1_MAX_QUERY * 3);
	sl_buf_init(&q, SL_OAUTH1_MAX_QUERY);
	if (!consumer_key || !*consumer_key || !consumer_secret || !*consumer_secret || !nonce ||
	    !*nonce || timestamp < 0 || (n_params && !params)) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "oauth1: a consumer key and secret, a "
		                "nonce and a timestamp are needed");
		goto out;
	}
	for (i = 0; i < n_params; i++) {
		if (params[i].name && !strncmp(params[i].name, "oauth_", 6)) {
			rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "oauth1: parameter %.64s is set by the "
			                "signer itself", params[i].name);
			goto out;
		}
	}
	snprintf(ts, sizeof(ts), "%lld", timestamp);
	all = sl_calloc(n_params + 4, sizeof(*all));
	if (!all) {
		rc = buf_error(SL_ENOMEM, err);
		goto out;
	}
	if (n_params)
		memcpy(all, params, n_params * sizeof(*all));
	all[n_params + 0] = (struct sl_oauth1_param){ "oauth_consumer_key", consumer_key };
	all[n_params + 1] = (struct sl_oauth1_param){ "oauth_nonce", nonce };
	all[n_params + 2] = (struct sl_oauth1_param){ "oauth_signature_method", "HMAC-SHA256" };
	all[n_params + 3] = (struct sl_oauth1_param){ "oauth_timestamp", ts };
	rc = base_string(&base, method, base_url, 1, all, n_params + 4, err);
	if (!rc)
		rc = hmac_sha256_b64(consumer_secret, &base, sig, err);
	if (rc)
		goto out;
	/* The caller's order first, then ours: the order of a query does not matter to the shop. */
	for (i = 0; i < n_params + 4 && !rc; i++)
		rc = sl_http_form_add(&q, all[i].name, all[i].value);
	if (!rc)
		rc = sl_http_form_add(&q, "oauth_signature", sig);
	if (!rc)
		rc = sl_buf_add(out, q.data, q.len);
	if (rc)
		rc = buf_error(rc, err);
out:
	sl_free(all);
	sl_buf_release(&base);
	sl_buf_release(&q);
	return rc;
}

int
sl_oauth1_sign_query(struct sl_buf *out, const char *method, const char *base_url,
                     const struct sl_oauth1_param *params, size_t n_params,
                     const char *consumer_key, const char *consumer_secret, struct sl_err *err)
{
	char nonce[SL_OAUTH1_NONCE_LEN + 1];
	int rc;

	rc = sl_random_token(nonce, SL_OAUTH1_NONCE_LEN, err);
	if (rc)
		return rc;
	return sl_oauth1_sign_query_at(out, method, base_url, params, n_params, consumer_key,
	                               consumer_secret, nonce, (long long)time(NULL), err);
}
