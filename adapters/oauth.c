/* oauth.c — the OAuth 2.0 client side: PKCE, the authorization URL, and the token endpoint. */
#include "adapters/oauth.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "adapters/http.h"
#include "common/alloc.h"
#include "common/caps.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/secret.h"
#include "common/str.h"

#define TOKEN_MAX_STRING   (64u << 10)   /* one token, id_token included */
#define URL_MAX            (64u << 10)

/* ---- base64url (RFC 4648 5), no padding -------------------------------- */

static const char b64url[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Encodes n bytes into out, which holds 4 * ceil(n / 3) + 1 bytes. */
static void
b64url_encode(const unsigned char *in, size_t n, char *out)
{
	size_t i;
	char *o = out;

	for (i = 0; i + 2 < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];

		*o++ = b64url[v >> 18 & 63];
		*o++ = b64url[v >> 12 & 63];
		*o++ = b64url[v >> 6 & 63];
		*o++ = b64url[v & 63];
	}
	if (n - i == 1) {
		unsigned v = (unsigned)in[i] << 16;

		*o++ = b64url[v >> 18 & 63];
		*o++ = b64url[v >> 12 & 63];
	} else if (n - i == 2) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;

		*o++ = b64url[v >> 18 & 63];
		*o++ = b64url[v >> 12 & 63];
		*o++ = b64url[v >> 6 & 63];
	}
	*o = '\0';
}

static int
b64url_value(char c)
{
	const char *p = c ? strchr(b64url, c) : NULL;

	return p ? (int)(p - b64url) : -1;
}

/*
 * Decodes n characters of base64url (no padding, as JWS uses it) into out.
 * Returns 0, or -1 for a character outside the alphabet or an impossible
 * length.
 */
static int
b64url_decode(const char *in, size_t n, struct sl_buf *out)
{
	unsigned acc = 0;
	int bits = 0;
	size_t i;

	if (n % 4 == 1)
		return -1;
	for (i = 0; i < n; i++) {
		int v = b64url_value(in[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6 | (unsigned)v) & 0xFFFFFF;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (sl_buf_addc(out, (char)(acc >> bits & 0xFF)))
				return -1;
		}
	}
	return 0;
}

void
sl_oauth_pkce_challenge(const char *verifier, char out[44])
{
	unsigned char digest[32];

	sl_sha256(verifier, strlen(verifier), digest);
	b64url_encode(digest, sizeof(digest), out);
}

/* ---- the authorization request ----------------------------------------- */

static int
buf_error(int rc, const char *what, struct sl_err *err)
{
	if (rc == SL_ETOOLARGE)
		return sl_err_set(err, SL_ETOOLARGE, SL_RETRY_NO, "%s too long", what);
	return sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "out of memory building %s", what);
}

/* Parameters the authorization request sets itself; extra may not repeat them. */
static const char *const reserved[] = {
	"response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
	"code_challenge_method", NULL,
};

int
sl_oauth_authorize_url(struct sl_buf *out, const char *authorize_url, const char *client_id,
                       const char *redirect_uri, const char *const *scopes, int n_scopes,
                       const char *state, const char *code_challenge, json_object *extra,
                       struct sl_err *err)
{
	struct sl_buf q, scope;
	const char *mark;
	size_t len;
	int rc = 0, i;

	sl_buf_init(&q, URL_MAX);
	sl_buf_init(&scope, URL_MAX);
	if (!authorize_url || !*authorize_url || strchr(authorize_url, '#') || !client_id ||
	    !redirect_uri) {
		/* RFC 6749 3.1: the endpoint URI MUST NOT include a fragment. */
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO,
		                "authorization URL, client_id and redirect_uri are needed (no fragment)");
		goto out;
	}
	if (extra && !json_object_is_type(extra, json_type_object)) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "extra authorization parameters must be "
		                "an object of strings");
		goto out;
	}
	for (i = 0; i < n_scopes && !rc; i++) {
		if (i)
			rc = sl_buf_addc(&scope, ' ');
		if (!rc)
			rc = sl_buf_adds(&scope, scopes[i]);
	}
	if (!rc)
		rc = sl_http_form_add(&q, "response_type", "code");
	if (!rc)
		rc = sl_http_form_add(&q, "client_id", client_id);
	if (!rc)
		rc = sl_http_form_add(&q, "redirect_uri", redirect_uri);
	if (!rc && n_scopes > 0)
		rc = sl_http_form_add(&q, "scope", scope.data);
	if (!rc && state)
		rc = sl_http_form_add(&q, "state", state);
	if (!rc && code_challenge)
		rc = sl_http_form_add(&q, "code_challenge", code_challenge);
	if (!rc && code_challenge)
		rc = sl_http_form_add(&q, "code_challenge_method", "S256");
	if (rc) {
		rc = buf_error(rc, "the authorization URL", err);
		goto out;
	}
	if (extra) {
		json_object_object_foreach(extra, key, val) {
			const char *const *r;

			for (r = reserved; *r && strcmp(*r, key); r++)
				;
			if (*r || !json_object_is_type(val, json_type_string)) {
				rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, *r ?
				                "extra authorization parameter %s is set by Sluice itself" :
				                "extra authorization parameter %s must be a string", key);
				sl_err_field(err, key);
				goto out;
			}
			rc = sl_http_form_add(&q, key, json_object_get_string(val));
			if (rc) {
				rc = buf_error(rc, "the authorization URL", err);
				goto out;
			}
		}
	}
	/* RFC 6749 3.1: the endpoint's own query is kept; ours is added to it. */
	len = strlen(authorize_url);
	mark = strchr(authorize_url, '?');
	rc = sl_buf_adds(out, authorize_url);
	if (!rc && (!mark || (authorize_url[len - 1] != '?' && authorize_url[len - 1] != '&')))
		rc = sl_buf_addc(out, mark ? '&' : '?');
	if (!rc)
		rc = sl_buf_add(out, q.data, q.len);
	if (rc)
		rc = buf_error(rc, "the authorization URL", err);
out:
	sl_buf_release(&q);
	sl_buf_release(&scope);
	return rc;
}

/* ---- the token endpoint ------------------------------------------------ */

static void
wipe_free(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		sl_free(s);
	}
}

void
sl_oauth_token_release(struct sl_oauth_token *t)
{
	wipe_free(t->access_token);
	wipe_free(t->refresh_token);
	wipe_free(t->token_type);
	wipe_free(t->scope);
	wipe_free(t->id_token);
	memset(t, 0, sizeof(*t));
	t->expires_in = -1;
}

/*
 * The secrets of one token request, so that nothing the endpoint echoes
 * back (an error_description quoting our refresh token, a 500 page quoting
 * the form) reaches err.  NULL entries are skipped.
 */
struct secrets {
	const char *s[6];
};

/* Replaces every secret in text with [redacted] (a shorter one with stars); text never grows. */
static void
scrub(char *text, const struct secrets *sec)
{
	static const char mask[] = "[redacted]";
	size_t i;

	for (i = 0; i < sizeof(sec->s) / sizeof(sec->s[0]); i++) {
		const char *s = sec->s[i];
		size_t n = s ? strlen(s) : 0;
		char *hit;

		if (n < 4)
			continue;   /* too short to be a secret; masking it would garble words */
		while ((hit = strstr(text, s)) != NULL) {
			size_t tail = strlen(hit + n);

			if (n >= sizeof(mask) - 1) {
				memcpy(hit, mask, sizeof(mask) - 1);
				memmove(hit + sizeof(mask) - 1, hit + n, tail + 1);
			} else {
				memset(hit, '*', n);
			}
		}
	}
}

static void
scrub_err(struct sl_err *err, const struct secrets *sec)
{
	if (!err)
		return;
	scrub(err->msg, sec);
	scrub(err->detail, sec);
}

/* A copy of member key when it is a string (too long or another type: an error). */
static int
take_str(json_object *obj, const char *key, char **out, struct sl_err *err)
{
	const char *s = NULL;
	int rc = sl_json_get_str(obj, key, TOKEN_MAX_STRING, &s, NULL, err);

	if (rc || !s)
		return rc;
	*out = sl_strdup(s);
	if (!*out)
		return sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "out of memory");
	return 0;
}

/* expires_in is a number, though some providers send it as a string of digits. */
static int
get_expires_in(json_object *obj, long long *out, struct sl_err *err)
{
	json_object *v;

	*out = -1;
	if (!json_object_object_get_ex(obj, "expires_in", &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (json_object_is_type(v, json_type_string) &&
	    !sl_parse_ll(json_object_get_string(v), 0, 100LL * 365 * 86400, out))
		return 0;
	return sl_json_get_int(obj, "expires_in", 0, 100LL * 365 * 86400, out, NULL, err);
}

/* Only printable ASCII of an error_description (RFC 6749 5.2 allows no more), cut short. */
static void
clean_description(const char *in, char *out, size_t size)
{
	size_t i, n = 0;

	for (i = 0; in[i] && n + 1 < size && n < 200; i++)
		out[n++] = in[i] >= 0x20 && in[i] < 0x7f ? in[i] : ' ';
	out[n] = '\0';
}

/* Copies doc's OAuth error code (RFC 6749 5.2) into t->error; 1 when there was one. */
static int
note_error(json_object *doc, struct sl_oauth_token *t)
{
	json_object *e;

	if (!doc || !json_object_object_get_ex(doc, "error", &e) ||
	    !json_object_is_type(e, json_type_string))
		return 0;
	clean_description(json_object_get_string(e), t->error, sizeof(t->error));
	return 1;
}

/* An OAuth refusal in doc (which has an error member): fills t->error and err. */
static int
oauth_refusal(json_object *doc, long status, const char *grant, struct sl_oauth_token *t,
              struct sl_err *err)
{
	json_object *d;
	char desc[256] = "";
	int rc;

	note_error(doc, t);
	if (json_object_object_get_ex(doc, "error_description", &d) &&
	    json_object_is_type(d, json_type_string))
		clean_description(json_object_get_string(d), desc, sizeof(desc));
	/* invalid_grant: the code or refresh token is dead, only a person can get a new one */
	rc = sl_err_set(err, SL_EAUTH, strcmp(t->error, "invalid_grant") ? SL_RETRY_BACKOFF
	                : SL_RETRY_REAUTH, "token endpoint refused the %s grant: %s", grant,
	                t->error);
	if (err) {
		err->http_status = (int)status;
		if (desc[0])
			sl_err_detail(err, "The authorization server said: %s", desc);
	}
	return rc;
}

/* Reads a 2xx answer (RFC 6749 5.1) into t. */
static int
parse_success(json_object *doc, struct sl_oauth_token *t, struct sl_err *err)
{
	int rc;

	rc = take_str(doc, "access_token", &t->access_token, err);
	if (!rc)
		rc = take_str(doc, "refresh_token", &t->refresh_token, err);
	if (!rc)
		rc = take_str(doc, "token_type", &t->token_type, err);
	if (!rc)
		rc = take_str(doc, "scope", &t->scope, err);
	if (!rc)
		rc = take_str(doc, "id_token", &t->id_token, err);
	if (!rc)
		rc = get_expires_in(doc, &t->expires_in, err);
	if (!rc && (!t->access_token || !*t->access_token))
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_BACKOFF,
		                "token endpoint answered without an access_token");
	if (rc) {
		if (err)
			err->retry = SL_RETRY_BACKOFF;   /* a broken answer may be a passing fault */
		return rc;
	}
	return 0;
}

/*
 * POSTs form (which holds the grant's parameters) to the token endpoint
 * with the client's authentication, and reads the answer into t.  sec lists
 * the secrets in form, for scrubbing err.
 */
static int
token_request(const struct sl_oauth_client *c, const char *grant, struct sl_buf *form,
              struct secrets *sec, struct sl_oauth_token *t, struct sl_err *err)
{
	static const char *const headers[] = {
		"Content-Type: application/x-www-form-urlencoded", "Accept: application/json", NULL,
	};
	struct sl_http_request req = {
		.method = "POST", .url = c->token_url, .headers = headers,
		.timeout_ms = c->timeout_ms, .max_body = SL_MAX_TOKEN_BODY, .ca_file = c->ca_file,
	};
	struct sl_http_response resp;
	struct sl_buf user, pass;
	json_object *doc = NULL;
	int rc;

	sl_http_response_init(&resp);
	sl_buf_init(&user, URL_MAX);
	sl_buf_init(&pass, URL_MAX);
	sl_oauth_token_release(t);
	if (!c->token_url || !c->client_id) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "OAuth client has no token URL or client_id");
		goto out;
	}
	sec->s[4] = c->client_secret;
	if (c->auth_post || !c->client_secret) {
		/* client_secret_post, or a public client that only names itself */
		rc = sl_http_form_add(form, "client_id", c->client_id);
		if (!rc && c->client_secret)
			rc = sl_http_form_add(form, "client_secret", c->client_secret);
	} else {
		/* RFC 6749 2.3.1: both form-urlencoded first, then HTTP Basic. */
		rc = sl_http_urlencode(&user, c->client_id);
		if (!rc)
			rc = sl_http_urlencode(&pass, c->client_secret);
		req.basic_user = user.data;
		req.basic_password = pass.data;
		sec->s[5] = pass.data;
	}
	if (rc) {
		rc = buf_error(rc, "the token request", err);
		goto out;
	}
	req.body = form->data;
	req.body_len = form->len;

	rc = sl_http_do(&req, &resp, err);
	if (rc)
		goto out;
	if (resp.body.len && sl_json_parse(resp.body.data, resp.body.len, &doc, NULL))
		doc = NULL;
	if (resp.status >= 200 && resp.status <= 299) {
		if (!doc) {
			rc = sl_err_set(err, SL_EINVAL, SL_RETRY_BACKOFF,
			                "token endpoint: HTTP %ld without a JSON object", resp.status);
		} else if (!json_object_object_get_ex(doc, "access_token", NULL) &&
		           json_object_object_get_ex(doc, "error", NULL)) {
			/* Some providers answer a refusal with 200 and an error member. */
			rc = oauth_refusal(doc, resp.status, grant, t, err);
		} else {
			rc = parse_success(doc, t, err);
		}
	} else if (resp.status == 429 || resp.status >= 500) {
		rc = sl_http_check(&resp, "token endpoint", err);
		if (note_error(doc, t) && err) {
			size_t n = strlen(err->msg);

			snprintf(err->msg + n, sizeof(err->msg) - n, " (%s)", t->error);
		}
	} else if (doc && json_object_object_get_ex(doc, "error", NULL)) {
		rc = oauth_refusal(doc, resp.status, grant, t, err);
	} else if (resp.status == 401) {
		/* RFC 6749 5.2: a bare 401 from a token endpoint is client authentication failing. */
		rc = sl_err_set(err, SL_EAUTH, SL_RETRY_BACKOFF,
		                "token endpoint refused the client: HTTP 401");
		sl_strlcpy(t->error, "invalid_client", sizeof(t->error));
		if (err)
			err->http_status = 401;
	} else {
		rc = sl_http_check(&resp, "token endpoint", err);
		if (!rc)   /* a 1xx or 3xx */
			rc = sl_err_set(err, SL_EHTTP, SL_RETRY_NO, "token endpoint: HTTP %ld",
			                resp.status);
	}
out:
	if (rc) {
		char error[sizeof(t->error)];

		sl_strlcpy(error, t->error, sizeof(error));
		sl_oauth_token_release(t);   /* no half-read answer */
		sl_strlcpy(t->error, error, sizeof(t->error));
		scrub_err(err, sec);
	}
	json_object_put(doc);
	sl_secret_wipe(&resp.body);
	sl_http_response_release(&resp);
	sl_secret_wipe(&user);
	sl_secret_wipe(&pass);
	sl_secret_wipe(form);
	return rc;
}

int
sl_oauth_exchange_code(const struct sl_oauth_client *c, const char *code,
                       const char *redirect_uri, const char *code_verifier,
                       struct sl_oauth_token *t, struct sl_err *err)
{
	struct secrets sec = { { code, code_verifier } };
	struct sl_buf form;
	int rc;

	sl_buf_init(&form, URL_MAX);
	if (!code || !redirect_uri) {
		sl_oauth_token_release(t);
		return sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "code exchange needs the code and "
		                  "the redirect_uri");
	}
	rc = sl_http_form_add(&form, "grant_type", "authorization_code");
	if (!rc)
		rc = sl_http_form_add(&form, "code", code);
	if (!rc)
		rc = sl_http_form_add(&form, "redirect_uri", redirect_uri);
	if (!rc && code_verifier)
		rc = sl_http_form_add(&form, "code_verifier", code_verifier);
	if (rc) {
		sl_secret_wipe(&form);
		sl_oauth_token_release(t);
		return buf_error(rc, "the token request", err);
	}
	return token_request(c, "authorization_code", &form, &sec, t, err);
}

int
sl_oauth_refresh(const struct sl_oauth_client *c, const char *refresh_token,
                 struct sl_oauth_token *t, struct sl_err *err)
{
	struct secrets sec = { { refresh_token } };
	struct sl_buf form;
	int rc;

	sl_buf_init(&form, URL_MAX);
	if (!refresh_token) {
		sl_oauth_token_release(t);
		sl_strlcpy(t->error, "invalid_grant", sizeof(t->error));
		return sl_err_set(err, SL_EAUTH, SL_RETRY_REAUTH, "no refresh token to refresh with");
	}
	rc = sl_http_form_add(&form, "grant_type", "refresh_token");
	if (!rc)
		rc = sl_http_form_add(&form, "refresh_token", refresh_token);
	if (rc) {
		sl_secret_wipe(&form);
		sl_oauth_token_release(t);
		return buf_error(rc, "the token request", err);
	}
	return token_request(c, "refresh_token", &form, &sec, t, err);
}

int
sl_oauth_client_credentials(const struct sl_oauth_client *c, const char *scope,
                            struct sl_oauth_token *t, struct sl_err *err)
{
	struct secrets sec = { { NULL } };
	struct sl_buf form;
	int rc;

	sl_buf_init(&form, URL_MAX);
	rc = sl_http_form_add(&form, "grant_type", "client_credentials");
	if (!rc && scope)
		rc = sl_http_form_add(&form, "scope", scope);
	if (rc) {
		sl_secret_wipe(&form);
		sl_oauth_token_release(t);
		return buf_error(rc, "the token request", err);
	}
	return token_request(c, "client_credentials", &form, &sec, t, err);
}

/* ---- id_token ---------------------------------------------------------- */

json_object *
sl_oauth_id_token_claims(const char *id_token)
{
	const char *dot1, *dot2;
	struct sl_buf json;
	json_object *claims = NULL;
	size_t n;

	if (!id_token)
		return NULL;
	dot1 = strchr(id_token, '.');
	dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	/* A JWS in compact form has exactly three parts; five would be an encrypted JWE. */
	if (!dot2 || dot1 == id_token || strchr(dot2 + 1, '.'))
		return NULL;
	n = (size_t)(dot2 - dot1 - 1);
	while (n > 0 && dot1[n] == '=')
		n--;   /* padding, which JWS omits but a sloppy issuer may add */
	sl_buf_init(&json, TOKEN_MAX_STRING);
	if (!b64url_decode(dot1 + 1, n, &json) && json.len &&
	    !sl_json_parse(json.data, json.len, &claims, NULL) &&
	    !json_object_is_type(claims, json_type_object)) {
		json_object_put(claims);
		claims = NULL;
	}
	sl_buf_release(&json);
	return claims;
}
