/* test_oauth.c — the HTTP client and the OAuth 2.0 client, alone and against a real authorization server. */
#include <check.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adapters/http.h"
#include "adapters/oauth.h"
#include "common/crypto.h"
#include "tests/harness.h"

#define REDIRECT "http://127.0.0.1:9/oauth/callback"

static struct t_oauth srv;
static char token_url[128];

/* No secret of the test may appear in an error: not the client secret, not any token. */
static void
assert_clean(const struct sl_err *err, const char *const *secrets)
{
	size_t i;

	for (i = 0; secrets[i]; i++) {
		if (strlen(secrets[i]) < 4)
			continue;
		ck_assert_msg(!strstr(err->msg, secrets[i]), "secret %zu in msg: %s", i, err->msg);
		ck_assert_msg(!strstr(err->detail, secrets[i]), "secret %zu in detail: %s", i,
		              err->detail);
	}
}

#define CLEAN(err, ...) assert_clean((err), (const char *const[]){ __VA_ARGS__, NULL })

/* ==== unit: no server ==================================================== */

START_TEST(pkce_rfc7636_appendix_b)
{
	char challenge[44];

	sl_oauth_pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", challenge);
	ck_assert_str_eq(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
	ck_assert_uint_eq(strlen(challenge), 43);
}
END_TEST

START_TEST(urlencode_and_form)
{
	struct sl_buf b;

	sl_buf_init(&b, 1024);
	ck_assert_int_eq(sl_http_urlencode(&b, "a b&c=d/\xc3\xa9~._-+:%Z09"), 0);
	ck_assert_str_eq(b.data, "a%20b%26c%3Dd%2F%C3%A9~._-%2B%3A%25Z09");
	sl_buf_reset(&b);
	ck_assert_int_eq(sl_http_form_add(&b, "grant_type", "refresh_token"), 0);
	ck_assert_int_eq(sl_http_form_add(&b, "refresh token", "a+b c"), 0);
	ck_assert_int_eq(sl_http_form_add(&b, "empty", ""), 0);
	ck_assert_str_eq(b.data, "grant_type=refresh_token&refresh%20token=a%2Bb%20c&empty=");
	sl_buf_release(&b);

	/* The cap holds: the buffer is released and the error says so. */
	sl_buf_init(&b, 8);
	ck_assert_int_eq(sl_http_form_add(&b, "k", "\x01\x02\x03"), SL_ETOOLARGE);
	ck_assert_uint_eq(b.len, 0);
	sl_buf_release(&b);
}
END_TEST

/* Splits the query of url into decoded name=value lines joined by '\n'. */
static void
decode_query(const char *url, char *out, size_t size)
{
	CURLU *u = curl_url();
	char *query = NULL, *p, *save = NULL;
	size_t len = 0;

	ck_assert_int_eq(curl_url_set(u, CURLUPART_URL, url, 0), CURLUE_OK);
	ck_assert_int_eq(curl_url_get(u, CURLUPART_QUERY, &query, 0), CURLUE_OK);
	out[0] = '\0';
	for (p = strtok_r(query, "&", &save); p; p = strtok_r(NULL, "&", &save)) {
		char *v = curl_easy_unescape(NULL, p, 0, NULL);

		len += (size_t)snprintf(out + len, size - len, "%s%s", len ? "\n" : "", v);
		curl_free(v);
	}
	curl_free(query);
	curl_url_cleanup(u);
}

START_TEST(authorize_url_shape)
{
	static const char *const scopes[] = { "read", "write:all" };
	struct sl_buf b;
	struct sl_err err;
	json_object *extra = json_object_new_object();
	char q[2048], *host = NULL, *path = NULL, *scheme = NULL;
	CURLU *u = curl_url();

	json_object_object_add(extra, "access_type", json_object_new_string("offline"));
	sl_buf_init(&b, 8192);
	ck_assert_int_eq(sl_oauth_authorize_url(&b, "https://auth.example.com/o/authorize?prompt=consent",
	                                        "my client", "https://app.example.com/cb?x=1",
	                                        scopes, 2, "st 1&2",
	                                        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", extra,
	                                        &err), 0);
	ck_assert_int_eq(curl_url_set(u, CURLUPART_URL, b.data, 0), CURLUE_OK);
	ck_assert_int_eq(curl_url_get(u, CURLUPART_SCHEME, &scheme, 0), CURLUE_OK);
	ck_assert_int_eq(curl_url_get(u, CURLUPART_HOST, &host, 0), CURLUE_OK);
	ck_assert_int_eq(curl_url_get(u, CURLUPART_PATH, &path, 0), CURLUE_OK);
	ck_assert_str_eq(scheme, "https");
	ck_assert_str_eq(host, "auth.example.com");
	ck_assert_str_eq(path, "/o/authorize");
	decode_query(b.data, q, sizeof(q));
	ck_assert_str_eq(q, "prompt=consent\n"
	                    "response_type=code\n"
	                    "client_id=my client\n"
	                    "redirect_uri=https://app.example.com/cb?x=1\n"
	                    "scope=read write:all\n"
	                    "state=st 1&2\n"
	                    "code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\n"
	                    "code_challenge_method=S256\n"
	                    "access_type=offline");
	/* Each value is one parameter: '&' and '=' inside values are encoded. */
	ck_assert_ptr_nonnull(strstr(b.data, "state=st%201%262&"));
	curl_free(scheme);
	curl_free(host);
	curl_free(path);
	curl_url_cleanup(u);

	/* No query yet: '?'; no scopes, state or challenge: those parameters are left out. */
	sl_buf_reset(&b);
	ck_assert_int_eq(sl_oauth_authorize_url(&b, "https://a.example/auth", "c", "https://r/",
	                                        NULL, 0, NULL, NULL, NULL, &err), 0);
	ck_assert_str_eq(b.data, "https://a.example/auth?response_type=code&client_id=c"
	                 "&redirect_uri=https%3A%2F%2Fr%2F");

	/* extra may not override what Sluice sets, and holds strings only. */
	sl_buf_reset(&b);
	json_object_object_add(extra, "state", json_object_new_string("forged"));
	ck_assert_int_eq(sl_oauth_authorize_url(&b, "https://a.example/auth", "c", "https://r/",
	                                        NULL, 0, "s", NULL, extra, &err), SL_EINVAL);
	ck_assert_str_eq(err.field, "state");
	json_object_object_del(extra, "state");
	json_object_object_add(extra, "max_age", json_object_new_int(5));
	ck_assert_int_eq(sl_oauth_authorize_url(&b, "https://a.example/auth", "c", "https://r/",
	                                        NULL, 0, "s", NULL, extra, &err), SL_EINVAL);
	ck_assert_str_eq(err.field, "max_age");
	/* RFC 6749 3.1: no fragment in the endpoint. */
	ck_assert_int_eq(sl_oauth_authorize_url(&b, "https://a.example/auth#x", "c", "https://r/",
	                                        NULL, 0, "s", NULL, NULL, &err), SL_EINVAL);
	json_object_put(extra);
	sl_buf_release(&b);
}
END_TEST

START_TEST(retry_after_both_forms)
{
	/* Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example date. */
	const long long now = 784111777;

	ck_assert_int_eq(sl_http_retry_after_ms("120", now), 120000);
	ck_assert_int_eq(sl_http_retry_after_ms(" 7 ", now), 7000);
	ck_assert_int_eq(sl_http_retry_after_ms("0", now), 0);
	ck_assert_int_eq(sl_http_retry_after_ms("Sun, 06 Nov 1994 08:51:37 GMT", now), 120000);
	ck_assert_int_eq(sl_http_retry_after_ms("Sunday, 06-Nov-94 08:51:37 GMT", now), 120000);
	ck_assert_int_eq(sl_http_retry_after_ms("Sun Nov  6 08:51:37 1994", now), 120000);
	ck_assert_int_eq(sl_http_retry_after_ms("Sun, 06 Nov 1994 08:00:00 GMT", now), 0);
	ck_assert_int_eq(sl_http_retry_after_ms("99999999999999999999999", now), 7L * 86400 * 1000);
	ck_assert_int_eq(sl_http_retry_after_ms("Sun, 06 Nov 2094 08:51:37 GMT", now),
	                 7L * 86400 * 1000);
	ck_assert_int_eq(sl_http_retry_after_ms("soon", now), -1);
	ck_assert_int_eq(sl_http_retry_after_ms("", now), -1);
	ck_assert_int_eq(sl_http_retry_after_ms("-5", now), -1);
	ck_assert_int_eq(sl_http_retry_after_ms("1.5", now), -1);
	ck_assert_int_eq(sl_http_retry_after_ms("12 seconds", now), -1);
}
END_TEST

/* A provider's own reset header: seconds from now, or a Unix time. */
START_TEST(rate_limit_reset_headers)
{
	const long long now = 1784500000;   /* 2026-07-20 */

	ck_assert_int_eq(sl_http_reset_after_ms("30", now), 30000);
	ck_assert_int_eq(sl_http_reset_after_ms(" 0 ", now), 0);
	ck_assert_int_eq(sl_http_reset_after_ms("1784500045", now), 45000);
	ck_assert_int_eq(sl_http_reset_after_ms("1784499000", now), 0);
	ck_assert_int_eq(sl_http_reset_after_ms("99999999", now), 7L * 86400 * 1000);
	ck_assert_int_eq(sl_http_reset_after_ms("soon", now), -1);
	ck_assert_int_eq(sl_http_reset_after_ms("-3", now), -1);
	ck_assert_int_eq(sl_http_reset_after_ms("", now), -1);
}
END_TEST

START_TEST(id_token_claims)
{
	json_object *c, *v;

	c = sl_oauth_id_token_claims("eyJhbGciOiJub25lIn0."
	                             "eyJzdWIiOiJ1MSIsImVtYWlsIjoiYUBiLmMiLCJuIjoxfQ.c2ln");
	ck_assert_ptr_nonnull(c);
	ck_assert(json_object_object_get_ex(c, "sub", &v));
	ck_assert_str_eq(json_object_get_string(v), "u1");
	ck_assert(json_object_object_get_ex(c, "email", &v));
	ck_assert_str_eq(json_object_get_string(v), "a@b.c");
	ck_assert(json_object_object_get_ex(c, "n", &v));
	ck_assert_int_eq(json_object_get_int(v), 1);
	json_object_put(c);
	/* An empty signature (alg none) is still three parts. */
	c = sl_oauth_id_token_claims("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1MSIsImVtYWlsIjoiYUBiLmMiLCJuIjoxfQ.");
	ck_assert_ptr_nonnull(c);
	json_object_put(c);

	ck_assert_ptr_null(sl_oauth_id_token_claims(NULL));
	ck_assert_ptr_null(sl_oauth_id_token_claims("opaque-token"));
	ck_assert_ptr_null(sl_oauth_id_token_claims("a.b"));
	ck_assert_ptr_null(sl_oauth_id_token_claims("a.!!!.c"));
	ck_assert_ptr_null(sl_oauth_id_token_claims("a.bm90IGpzb24.c"));     /* "not json" */
	ck_assert_ptr_null(sl_oauth_id_token_claims("a.WzEsMl0.c"));         /* [1,2] */
	ck_assert_ptr_null(sl_oauth_id_token_claims("a.eyJzdWIiOiJ1MSJ9.c.d.e"));  /* a JWE */
}
END_TEST

/* A URL policy refusal happens before any network use: no DNS, no connection. */
START_TEST(plain_http_only_to_loopback)
{
	static const char *const refused[] = {
		"http://sluice-test.invalid/x?api_key=KEY-123456",
		"http://127.0.0.1.sluice-test.invalid/",   /* a name, not a loopback address */
		"ftp://127.0.0.1/file",
		"file:///etc/passwd",
		"gopher://127.0.0.1/",
		"not a url",
		"/relative/path",
	};
	struct sl_http_response resp;
	struct sl_err err;
	size_t i;

	sl_http_response_init(&resp);
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		struct sl_http_request req = { .url = refused[i] };

		ck_assert_msg(sl_http_do(&req, &resp, &err) == SL_EINVAL, "%s: %s", refused[i], err.msg);
		ck_assert_int_eq(err.retry, SL_RETRY_NO);
		ck_assert_int_eq(resp.status, 0);
		ck_assert_int_eq(resp.elapsed_ms, 0);   /* never got as far as a transfer */
		CLEAN(&err, "KEY-123456", "api_key");
	}
	/* The message names method, host and path, and never the query. */
	{
		struct sl_http_request req = { .method = "POST", .url = refused[0] };

		ck_assert_int_eq(sl_http_do(&req, &resp, &err), SL_EINVAL);
		ck_assert_str_eq(err.msg, "POST http://sluice-test.invalid/x: plain http is only "
		                 "allowed to loopback hosts");
	}
	/* Loopback in every spelling is allowed: the attempt is made (and refused by the OS). */
	{
		static const char *const allowed[] = {
			"http://127.0.0.1:%d/", "http://127.9.8.7:%d/", "http://localhost:%d/",
			"http://LOCALHOST:%d/",
		};
		int port = t_free_port();

		for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
			char url[128];
			struct sl_http_request req = { .url = url, .connect_timeout_ms = 5000 };

			snprintf(url, sizeof(url), allowed[i], port);
			ck_assert_msg(sl_http_do(&req, &resp, &err) == SL_EHTTP, "%s: %s", url, err.msg);
			ck_assert_int_eq(err.retry, SL_RETRY_BACKOFF);
		}
	}
	/* A request header with a line break would smuggle another header. */
	{
		const char *headers[] = { "X-A: 1\r\nX-B: 2", NULL };
		struct sl_http_request req = { .url = "http://127.0.0.1:1/", .headers = headers };

		ck_assert_int_eq(sl_http_do(&req, &resp, &err), SL_EINVAL);
	}
	sl_http_response_release(&resp);
}
END_TEST

/* ==== against the authorization server =================================== */

static void
server_up(void)
{
	t_oauth_start(&srv);
	snprintf(token_url, sizeof(token_url), "%s/token", srv.url);
}

static void
server_down(void)
{
	t_oauth_stop(&srv);
}

static struct sl_oauth_client
client(int auth_post)
{
	return (struct sl_oauth_client){
		.token_url = token_url, .client_id = srv.client_id, .client_secret = srv.client_secret,
		.auth_post = auth_post, .timeout_ms = 10000,
	};
}

/* The browser's part of the code flow: returns the code for verifier's challenge. */
static void
authorize(const char *verifier, char *code, size_t codesz)
{
	static const char *const scopes[] = { "read", "write" };
	char base[128], challenge[44], state[64], got_state[64];
	struct sl_buf url;
	struct sl_err err;

	snprintf(base, sizeof(base), "%s/authorize", srv.url);
	ck_assert_int_eq(sl_random_token(state, 24, &err), 0);
	sl_buf_init(&url, 8192);
	if (verifier)
		sl_oauth_pkce_challenge(verifier, challenge);
	ck_assert_int_eq(sl_oauth_authorize_url(&url, base, srv.client_id, REDIRECT, scopes, 2,
	                                        state, verifier ? challenge : NULL, NULL, &err), 0);
	ck_assert_int_eq(t_oauth_authorize(&srv, url.data, code, codesz, got_state,
	                                   sizeof(got_state)), 0);
	ck_assert_str_eq(got_state, state);
	ck_assert_uint_gt(strlen(code), 10);
	sl_buf_release(&url);
}

static void
new_verifier(char verifier[65])
{
	struct sl_err err;

	ck_assert_int_eq(sl_random_token(verifier, 64, &err), 0);
}

/* The whole code flow; t gets the tokens. */
static void
code_flow(struct sl_oauth_token *t, int auth_post)
{
	struct sl_oauth_client c = client(auth_post);
	char verifier[65], code[128];
	struct sl_err err;

	new_verifier(verifier);
	authorize(verifier, code, sizeof(code));
	ck_assert_msg(sl_oauth_exchange_code(&c, code, REDIRECT, verifier, t, &err) == 0, "%s: %s",
	              err.msg, err.detail);
}

/* GET /resource with token as Bearer; returns sl_http_check's verdict. */
static int
get_resource(const char *token, struct sl_http_response *resp, struct sl_err *err)
{
	char url[128], auth[4096];
	const char *headers[] = { auth, "Accept: application/json", NULL };
	struct sl_http_request req = { .url = url, .headers = headers };
	int rc;

	snprintf(url, sizeof(url), "%s/resource", srv.url);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	rc = sl_http_do(&req, resp, err);
	ck_assert_msg(rc == 0, "%s", err->msg);
	return sl_http_check(resp, "resource", err);
}

START_TEST(code_flow_with_pkce)
{
	struct sl_oauth_token t = { .expires_in = -1 };
	struct sl_http_response resp;
	struct sl_err err;
	json_object *claims, *v;

	code_flow(&t, 0);
	ck_assert_ptr_nonnull(t.access_token);
	ck_assert_ptr_nonnull(t.refresh_token);
	ck_assert_str_eq(t.token_type, "Bearer");
	ck_assert_str_eq(t.scope, "read write");
	ck_assert_int_eq(t.expires_in, 3600);
	ck_assert_str_eq(t.error, "");
	claims = sl_oauth_id_token_claims(t.id_token);
	ck_assert_ptr_nonnull(claims);
	ck_assert(json_object_object_get_ex(claims, "sub", &v));
	ck_assert_str_eq(json_object_get_string(v), "johndoe");
	ck_assert(json_object_object_get_ex(claims, "aud", &v));
	ck_assert_str_eq(json_object_get_string(v), srv.client_id);
	ck_assert(json_object_object_get_ex(claims, "iss", &v));
	ck_assert_str_eq(json_object_get_string(v), srv.url);
	json_object_put(claims);

	sl_http_response_init(&resp);
	ck_assert_int_eq(get_resource(t.access_token, &resp, &err), 0);
	ck_assert_int_eq(resp.status, 200);
	ck_assert_str_eq(resp.body.data, "{\"ok\":true,\"sub\":\"johndoe\"}");
	ck_assert_str_eq(sl_http_header(&resp, "content-type"), "application/json");
	ck_assert_int_ge(resp.elapsed_ms, 0);

	ck_assert_int_eq(t_oauth_stat(&srv, "authorize"), 1);
	ck_assert_int_eq(t_oauth_stat(&srv, "authorization_code"), 1);
	ck_assert_int_eq(t_oauth_stat(&srv, "resource_ok"), 1);
	sl_http_response_release(&resp);
	sl_oauth_token_release(&t);
	ck_assert_ptr_null(t.access_token);
	ck_assert_int_eq(t.expires_in, -1);
}
END_TEST

/* The redirect is the answer: Location is captured, not followed. */
START_TEST(redirect_not_followed)
{
	static const char *const scopes[] = { "read" };
	struct sl_http_response resp;
	struct sl_http_request req = { 0 };
	struct sl_buf url;
	struct sl_err err;
	char base[128];
	const char *loc;

	snprintf(base, sizeof(base), "%s/authorize", srv.url);
	sl_buf_init(&url, 8192);
	ck_assert_int_eq(sl_oauth_authorize_url(&url, base, srv.client_id, REDIRECT, scopes, 1,
	                                        "s1", NULL, NULL, &err), 0);
	sl_http_response_init(&resp);
	req.url = url.data;
	ck_assert_int_eq(sl_http_do(&req, &resp, &err), 0);
	ck_assert_int_eq(resp.status, 302);
	loc = sl_http_header(&resp, "LOCATION");
	ck_assert_ptr_nonnull(loc);
	ck_assert_msg(!strncmp(loc, REDIRECT "?code=", strlen(REDIRECT "?code=")), "%s", loc);
	ck_assert_int_eq(sl_http_check(&resp, "authorize", &err), SL_EHTTP);
	ck_assert_int_eq(err.retry, SL_RETRY_NO);
	ck_assert_int_eq(err.http_status, 302);

	/* An unknown client is told so, not redirected. */
	sl_buf_reset(&url);
	ck_assert_int_eq(sl_oauth_authorize_url(&url, base, "intruder", REDIRECT, scopes, 1, "s1",
	                                        NULL, NULL, &err), 0);
	{
		char code[64], state[64];

		ck_assert_int_eq(t_oauth_authorize(&srv, url.data, code, sizeof(code), state,
		                                   sizeof(state)), 400);
		ck_assert_str_eq(code, "");
	}
	sl_buf_release(&url);
	sl_http_response_release(&resp);
}
END_TEST

START_TEST(wrong_or_missing_verifier_refused)
{
	struct sl_oauth_client c = client(0);
	struct sl_oauth_token t = { .expires_in = -1 };
	char verifier[65], other[65], code[128];
	struct sl_err err;

	new_verifier(verifier);
	new_verifier(other);
	authorize(verifier, code, sizeof(code));
	ck_assert_int_eq(sl_oauth_exchange_code(&c, code, REDIRECT, other, &t, &err), SL_EAUTH);
	ck_assert_int_eq(err.retry, SL_RETRY_REAUTH);
	ck_assert_str_eq(t.error, "invalid_grant");
	ck_assert_int_eq(err.http_status, 400);
	ck_assert_str_eq(err.msg, "token endpoint refused the authorization_code grant: "
	                 "invalid_grant");
	ck_assert_str_eq(err.detail, "The authorization server said: code_verifier does not match "
	                 "the code_challenge");
	ck_assert_ptr_null(t.access_token);
	CLEAN(&err, srv.client_secret, code, other, verifier);

	/* A code issued with a challenge needs its verifier. */
	authorize(verifier, code, sizeof(code));
	ck_assert_int_eq(sl_oauth_exchange_code(&c, code, REDIRECT, NULL, &t, &err), SL_EAUTH);
	ck_assert_int_eq(err.retry, SL_RETRY_REAUTH);
	ck_assert_str_eq(t.error, "invalid_grant");
	ck_assert_ptr_nonnull(strstr(err.detail, "code_verifier required"));

	/* The redirect_uri must be the authorization request's. */
	authorize(verifier, code, sizeof(code));
	ck_assert_int_eq(sl_oauth_exchange_code(&c, code, "http://127.0.0.1:9/elsewhere", verifier,
	                                        &t, &err), SL_EAUTH);
	ck_assert_str_eq(t.error, "invalid_grant");
	ck_assert_ptr_nonnull(strstr(err.detail, "redirect_uri"));
	ck_assert_int_eq(t_oauth_stat(&srv, "authorization_code"), 3);
	sl_oauth_token_release(&t);
}
END_TEST

START_TEST(code_reuse_refused)
{
	struct sl_oauth_client c = client(0);
	struct sl_oauth_token t = { .expires_in = -1 }, again = { .expires_in = -1 };
	struct sl_http_response resp;
	char verifier[65], code[128];
	struct sl_err err;

	new_verifier(verifier);
	authorize(verifier, code, sizeof(code));
	ck_assert_int_eq(sl_oauth_exchange_code(&c, code, REDIRECT, verifier, &t, &err), 0);
	ck_assert_int_eq(sl_oauth_exchange_code(&c, code, REDIRECT, verifier, &again, &err),
	                 SL_EAUTH);
	ck_assert_int_eq(err.retry, SL_RETRY_REAUTH);
	ck_assert_str_eq(again.error, "invalid_grant");
	ck_assert_ptr_nonnull(strstr(err.detail, "already used"));
	CLEAN(&err, srv.client_secret, code, verifier, t.access_token, t.refresh_token);

	/* RFC 6749 4.1.2: the reuse revoked what the code had given. */
	sl_http_response_init(&resp);
	ck_assert_int_eq(get_resource(t.access_token, &resp, &err), SL_EAUTH);
	ck_assert_int_eq(err.retry, SL_RETRY_REAUTH);
	ck_assert_int_eq(resp.status, 401);
	ck_assert_ptr_nonnull(strstr(sl_http_header(&resp, "WWW-Authenticate"), "invalid_token"));
	CLEAN(&err, t.access_token);
	sl_http_response_release(&resp);
	sl_oauth_token_release(&t);
	sl_oauth_token_release(&again);
}
END_TEST

START_TEST(refresh_rotates)
{
	struct sl_oauth_client basic = client(0), post = client(1);
	struct sl_oauth_token first = { .expires_in = -1 }, second = { .expires_in = -1 },
	                      third = { .expires_in = -1 }, stale = { .expires_in = -1 };
	struct sl_http_response resp;
	struct sl_err err;

	code_flow(&first, 0);
	ck_assert_int_eq(sl_oauth_refresh(&basic, first.refresh_token, &second, &err), 0);
	ck_assert_ptr_nonnull(second.refresh_token);
	ck_assert_str_ne(second.refresh_token, first.refresh_token);
	ck_assert_str_ne(second.access_token, first.access_token);
	ck_assert_int_eq(second.expires_in, 3600);

	/* The used one is dead: invalid_grant, and only a person can help. */
	ck_assert_int_eq(sl_oauth_refresh(&basic, first.refresh_token, &stale, &err), SL_EAUTH);
	ck_assert_int_eq(err.retry, SL_RETRY_REAUTH);
	ck_assert_str_eq(stale.error, "invalid_grant");
	ck_assert_ptr_null(stale.access_token);
	ck_assert_ptr_nonnull(strstr(err.detail, "already used"));
	CLEAN(&err, srv.client_secret, first.refresh_token, second.refresh_token,
	      second.access_token);

	/* The new one works, with client_secret_post too, and rotates again. */
	ck_assert_int_eq(sl_oauth_refresh(&post, second.refresh_token, &third, &err), 0);
	ck_assert_str_ne(third.refresh_token, second.refresh_token);
	sl_http_response_init(&resp);
	ck_assert_int_eq(get_resource(third.access_token, &resp, &err), 0);
	ck_assert_int_eq(t_oauth_stat(&srv, "refresh_token"), 3);
	ck_assert_int_eq(t_oauth_stat(&srv, "authorization_code"), 1);
	sl_http_response_release(&resp);
	sl_oauth_token_release(&first);
	sl_oauth_token_release(&second);
	sl_oauth_token_release(&third);
	sl_oauth_token_release(&stale);
}
END_TEST

START_TEST(revoked_refresh_token)
{
	struct sl_oauth_client c = client(0);
	struct sl_oauth_token t = { .expires_in = -1 }, r = { .expires_in = -1 };
	struct sl_err err;

	code_flow(&t, 0);
	t_oauth_control(&srv, "revoke", NULL);
	ck_assert_int_eq(sl_oauth_refresh(&c, t.refresh_token, &r, &err), SL_EAUTH);
	ck_assert_int_eq(err.retry, SL_RETRY_REAUTH);
	ck_assert_str_eq(r.error, "invalid_grant");
	ck_assert_str_eq(err.detail, "The authorization server said: refresh token revoked");
	CLEAN(&err, srv.client_secret, t.refresh_token);

	/* A token the server never issued gets the same answer. */
	ck_assert_int_eq(sl_oauth_refresh(&c, "never-issued-refresh-token", &r, &err), SL_EAUTH);
	ck_assert_int_eq(err.retry, SL_RETRY_REAUTH);
	ck_assert_str_eq(r.error, "invalid_grant");
	CLEAN(&err, "never-issued-refresh-token");
	sl_oauth_token_release(&t);
	sl_oauth_token_release(&r);
}
END_TEST

START_TEST(wrong_client_secret)
{
	struct sl_oauth_token t = { .expires_in = -1 }, r = { .expires_in = -1 };
	struct sl_oauth_client c = client(0);
	struct sl_err err;
	int auth_post;

	code_flow(&t, 0);
	for (auth_post = 0; auth_post <= 1; auth_post++) {
		c = client(auth_post);
		c.client_secret = "wrong:secret+1";
		ck_assert_int_eq(sl_oauth_client_credentials(&c, NULL, &r, &err), SL_EAUTH);
		ck_assert_int_ne(err.retry, SL_RETRY_REAUTH);
		ck_assert_int_eq(err.retry, SL_RETRY_BACKOFF);
		ck_assert_str_eq(r.error, "invalid_client");
		ck_assert_int_eq(err.http_status, 401);
		CLEAN(&err, "wrong:secret+1", srv.client_secret);

		/* A wrong client is not a dead grant: the refresh token is not blamed. */
		ck_assert_int_eq(sl_oauth_refresh(&c, t.refresh_token, &r, &err), SL_EAUTH);
		ck_assert_str_eq(r.error, "invalid_client");
		ck_assert_int_eq(err.retry, SL_RETRY_BACKOFF);
		CLEAN(&err, "wrong:secret+1", srv.client_secret, t.refresh_token);
	}
	/* ... and it still works with the right secret. */
	c = client(0);
	ck_assert_int_eq(sl_oauth_refresh(&c, t.refresh_token, &r, &err), 0);
	sl_oauth_token_release(&t);
	sl_oauth_token_release(&r);
}
END_TEST

/*
 * RFC 6749 2.3.1: the secret has ':', '+', '/' and '%'.  Sent raw in HTTP
 * Basic (no form-encoding first) the server must refuse it; sl_oauth sends
 * it right (every successful basic exchange above proves that).
 */
START_TEST(basic_credentials_are_form_encoded)
{
	static const char *const headers[] = {
		"Content-Type: application/x-www-form-urlencoded", NULL,
	};
	struct sl_http_request req = {
		.method = "POST", .url = token_url, .headers = headers,
		.body = "grant_type=client_credentials", .body_len = 29,
		.basic_user = srv.client_id, .basic_password = srv.client_secret,
	};
	struct sl_http_response resp;
	struct sl_oauth_client c = client(0);
	struct sl_oauth_token t = { .expires_in = -1 };
	struct sl_err err;

	ck_assert_ptr_nonnull(strpbrk(srv.client_secret, ":+/%"));
	sl_http_response_init(&resp);
	ck_assert_int_eq(sl_http_do(&req, &resp, &err), 0);
	ck_assert_int_eq(resp.status, 401);
	ck_assert_ptr_nonnull(strstr(resp.body.data, "\"invalid_client\""));
	ck_assert_int_eq(sl_oauth_client_credentials(&c, NULL, &t, &err), 0);
	sl_http_response_release(&resp);
	sl_oauth_token_release(&t);
}
END_TEST

START_TEST(client_credentials_grant)
{
	struct sl_oauth_client c = client(1);
	struct sl_oauth_token t = { .expires_in = -1 };
	struct sl_http_response resp;
	struct sl_err err;
	char body[256];

	ck_assert_int_eq(sl_oauth_client_credentials(&c, "reports:read", &t, &err), 0);
	ck_assert_ptr_nonnull(t.access_token);
	ck_assert_ptr_null(t.refresh_token);
	ck_assert_str_eq(t.scope, "reports:read");
	ck_assert_int_eq(t.expires_in, 3600);
	sl_http_response_init(&resp);
	ck_assert_int_eq(get_resource(t.access_token, &resp, &err), 0);
	snprintf(body, sizeof(body), "{\"ok\":true,\"sub\":\"%s\"}", srv.client_id);
	ck_assert_str_eq(resp.body.data, body);
	ck_assert_int_eq(t_oauth_stat(&srv, "client_credentials"), 1);
	ck_assert_int_eq(t_oauth_stat(&srv, "token"), 1);

	/* An expired access token is refused: 401 + WWW-Authenticate → REAUTH for sl_http_check. */
	t_oauth_control(&srv, "token_ttl", "{\"seconds\":0}");
	ck_assert_int_eq(sl_oauth_client_credentials(&c, NULL, &t, &err), 0);
	ck_assert_int_eq(t.expires_in, 0);
	ck_assert_int_eq(get_resource(t.access_token, &resp, &err), SL_EAUTH);
	ck_assert_int_eq(err.retry, SL_RETRY_REAUTH);
	ck_assert_ptr_nonnull(strstr(sl_http_header(&resp, "www-authenticate"), "expired"));
	ck_assert_int_eq(t_oauth_stat(&srv, "resource_denied"), 1);
	CLEAN(&err, t.access_token);
	sl_http_response_release(&resp);
	sl_oauth_token_release(&t);
}
END_TEST

START_TEST(rate_limited_with_retry_after)
{
	struct sl_oauth_client c = client(0);
	struct sl_oauth_token t = { .expires_in = -1 };
	struct sl_err err;
	char json[256], date[64];
	time_t when = time(NULL) + 120;
	struct tm tm;

	t_oauth_control(&srv, "fault", "{\"status\":429,\"count\":1,\"retry_after\":7}");
	ck_assert_int_eq(sl_oauth_client_credentials(&c, NULL, &t, &err), SL_ERATELIMIT);
	ck_assert_int_eq(err.retry, SL_RETRY_AFTER);
	ck_assert_int_eq(err.retry_after_ms, 7000);
	ck_assert_int_eq(err.http_status, 429);
	ck_assert_str_eq(t.error, "slow_down");
	ck_assert_str_eq(err.msg, "token endpoint: HTTP 429 (slow_down)");
	ck_assert_ptr_null(t.access_token);
	CLEAN(&err, srv.client_secret);
	/* count 1: the next one goes through */
	ck_assert_int_eq(sl_oauth_client_credentials(&c, NULL, &t, &err), 0);

	/* The HTTP-date form, two minutes ahead. */
	gmtime_r(&when, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	snprintf(json, sizeof(json), "{\"status\":429,\"count\":1,\"retry_after\":\"%s\"}", date);
	t_oauth_control(&srv, "fault", json);
	ck_assert_int_eq(sl_oauth_client_credentials(&c, NULL, &t, &err), SL_ERATELIMIT);
	ck_assert_int_eq(err.retry, SL_RETRY_AFTER);
	ck_assert_msg(err.retry_after_ms > 115000 && err.retry_after_ms <= 120000, "%ld",
	              err.retry_after_ms);

	/* Without Retry-After: a minute. */
	t_oauth_control(&srv, "fault", "{\"status\":429,\"count\":1}");
	ck_assert_int_eq(sl_oauth_client_credentials(&c, NULL, &t, &err), SL_ERATELIMIT);
	ck_assert_int_eq(err.retry_after_ms, 60000);
	ck_assert_int_eq(t_oauth_stat(&srv, "client_credentials"), 4);
	sl_oauth_token_release(&t);
}
END_TEST

START_TEST(server_errors_back_off)
{
	struct sl_oauth_client c = client(0);
	struct sl_oauth_token t = { .expires_in = -1 }, first = { .expires_in = -1 };
	struct sl_err err;

	code_flow(&first, 0);
	t_oauth_control(&srv, "fault", "{\"status\":500,\"count\":2}");
	ck_assert_int_eq(sl_oauth_refresh(&c, first.refresh_token, &t, &err), SL_EHTTP);
	ck_assert_int_eq(err.retry, SL_RETRY_BACKOFF);
	ck_assert_int_eq(err.http_status, 500);
	ck_assert_str_eq(err.msg, "token endpoint: HTTP 500 (server_error)");
	ck_assert_str_eq(t.error, "server_error");
	ck_assert_int_eq(sl_oauth_client_credentials(&c, NULL, &t, &err), SL_EHTTP);
	ck_assert_int_eq(err.retry, SL_RETRY_BACKOFF);

	/* 503: backoff, or the given time when it says Retry-After. */
	t_oauth_control(&srv, "fault", "{\"status\":503,\"count\":1}");
	ck_assert_int_eq(sl_oauth_refresh(&c, first.refresh_token, &t, &err), SL_EHTTP);
	ck_assert_int_eq(err.retry, SL_RETRY_BACKOFF);
	t_oauth_control(&srv, "fault", "{\"status\":503,\"count\":1,\"retry_after\":3}");
	ck_assert_int_eq(sl_oauth_refresh(&c, first.refresh_token, &t, &err), SL_EHTTP);
	ck_assert_int_eq(err.retry, SL_RETRY_AFTER);
	ck_assert_int_eq(err.retry_after_ms, 3000);

	/* The failures did not use the refresh token up. */
	ck_assert_int_eq(sl_oauth_refresh(&c, first.refresh_token, &t, &err), 0);
	sl_oauth_token_release(&t);
	sl_oauth_token_release(&first);
}
END_TEST

/* Whatever the server echoes of what we sent never reaches an error. */
START_TEST(echoed_secrets_are_masked)
{
	struct sl_oauth_client c = client(0);
	struct sl_oauth_token t = { .expires_in = -1 }, r = { .expires_in = -1 };
	struct sl_err err;
	char json[1024];

	code_flow(&t, 0);
	snprintf(json, sizeof(json), "{\"status\":400,\"count\":1,\"error\":\"invalid_grant\","
	         "\"description\":\"refresh token %s of client %s is bad\"}", t.refresh_token,
	         srv.client_secret);
	t_oauth_control(&srv, "fault", json);
	ck_assert_int_eq(sl_oauth_refresh(&c, t.refresh_token, &r, &err), SL_EAUTH);
	ck_assert_ptr_nonnull(strstr(err.detail, "refresh token [redacted] of client [redacted] is bad"));
	CLEAN(&err, t.refresh_token, srv.client_secret);

	/* The same in a 500's body, which sl_http_check quotes. */
	snprintf(json, sizeof(json), "{\"status\":500,\"count\":1,\"error\":\"server_error\","
	         "\"description\":\"echo %s\"}", t.refresh_token);
	t_oauth_control(&srv, "fault", json);
	ck_assert_int_eq(sl_oauth_refresh(&c, t.refresh_token, &r, &err), SL_EHTTP);
	ck_assert_ptr_nonnull(strstr(err.detail, "echo [redacted]"));
	CLEAN(&err, t.refresh_token, srv.client_secret);
	sl_oauth_token_release(&t);
	sl_oauth_token_release(&r);
}
END_TEST

START_TEST(connection_refused_backs_off)
{
	struct sl_oauth_client c = client(0);
	struct sl_oauth_token t = { .expires_in = -1 };
	struct sl_err err;
	char url[128];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/token?tenant=T-SECRET-9", t_free_port());
	c.token_url = url;
	ck_assert_int_eq(sl_oauth_refresh(&c, "some-refresh-token", &t, &err), SL_EHTTP);
	ck_assert_int_eq(err.retry, SL_RETRY_BACKOFF);
	ck_assert_int_eq(err.http_status, 0);
	ck_assert_ptr_nonnull(strstr(err.msg, "connection refused"));
	ck_assert_ptr_nonnull(strstr(err.msg, "POST http://127.0.0.1:"));
	CLEAN(&err, srv.client_secret, "some-refresh-token", "T-SECRET-9");
	ck_assert_str_eq(t.error, "");
}
END_TEST

START_TEST(slow_token_endpoint_times_out)
{
	struct sl_oauth_client c = client(0);
	struct sl_oauth_token t = { .expires_in = -1 };
	struct sl_err err;
	long long start;

	t_oauth_control(&srv, "delay", "{\"ms\":3000}");
	c.timeout_ms = 300;
	start = t_now_ms();
	ck_assert_int_eq(sl_oauth_client_credentials(&c, NULL, &t, &err), SL_ETIMEOUT);
	ck_assert_int_eq(err.retry, SL_RETRY_BACKOFF);
	ck_assert_int_lt(t_now_ms() - start, 2500);
	CLEAN(&err, srv.client_secret);
}
END_TEST

START_TEST(body_cap)
{
	struct sl_http_response resp;
	struct sl_err err;
	char url[128];
	struct sl_http_request req = { .url = url, .max_body = 64 };
	json_object *doc = NULL;

	snprintf(url, sizeof(url), "%s/.well-known/openid-configuration", srv.url);
	sl_http_response_init(&resp);
	ck_assert_int_eq(sl_http_do(&req, &resp, &err), SL_ETOOLARGE);
	ck_assert_int_eq(err.retry, SL_RETRY_NO);
	ck_assert_uint_eq(resp.body.len, 0);
	ck_assert_ptr_nonnull(strstr(err.msg, "/.well-known/openid-configuration"));

	/* Under the cap the same answer is whole; the response is reused. */
	req.max_body = 1u << 20;
	ck_assert_int_eq(sl_http_do(&req, &resp, &err), 0);
	ck_assert_int_eq(resp.status, 200);
	ck_assert_uint_gt(resp.body.len, 64);
	doc = json_tokener_parse(resp.body.data);
	ck_assert_ptr_nonnull(doc);
	json_object_put(doc);
	ck_assert_int_eq(resp.retry_after_ms, -1);
	sl_http_response_release(&resp);
}
END_TEST

/* A JSON POST through sl_http_do: method, body, headers, and a 4xx verdict. */
START_TEST(post_json_and_client_errors)
{
	static const char *const headers[] = { "Content-Type: application/json", NULL };
	struct sl_http_response resp;
	struct sl_err err;
	char url[128];
	struct sl_http_request req = { .method = "POST", .url = url, .headers = headers };

	snprintf(url, sizeof(url), "%s/__control/token_ttl", srv.url);
	req.body = "{\"seconds\":42}";
	req.body_len = strlen(req.body);
	sl_http_response_init(&resp);
	ck_assert_int_eq(sl_http_do(&req, &resp, &err), 0);
	ck_assert_int_eq(resp.status, 200);
	ck_assert_int_eq(sl_http_check(&resp, "control", &err), 0);
	{
		struct sl_oauth_client c = client(0);
		struct sl_oauth_token t = { .expires_in = -1 };

		ck_assert_int_eq(sl_oauth_client_credentials(&c, NULL, &t, &err), 0);
		ck_assert_int_eq(t.expires_in, 42);
		sl_oauth_token_release(&t);
	}

	req.body = "{\"seconds\":-1}";
	req.body_len = strlen(req.body);
	ck_assert_int_eq(sl_http_do(&req, &resp, &err), 0);
	ck_assert_int_eq(resp.status, 400);
	ck_assert_int_eq(sl_http_check(&resp, "control", &err), SL_EHTTP);
	ck_assert_int_eq(err.retry, SL_RETRY_NO);
	ck_assert_int_eq(err.http_status, 400);
	ck_assert_str_eq(err.msg, "control: HTTP 400");
	ck_assert_ptr_nonnull(strstr(err.detail, "seconds must be an integer"));
	sl_http_response_release(&resp);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("oauth");
	TCase *unit = tcase_create("unit"), *live = tcase_create("server");

	tcase_add_test(unit, pkce_rfc7636_appendix_b);
	tcase_add_test(unit, urlencode_and_form);
	tcase_add_test(unit, authorize_url_shape);
	tcase_add_test(unit, retry_after_both_forms);
	tcase_add_test(unit, rate_limit_reset_headers);
	tcase_add_test(unit, id_token_claims);
	tcase_add_test(unit, plain_http_only_to_loopback);
	suite_add_tcase(s, unit);

	tcase_add_checked_fixture(live, server_up, server_down);
	tcase_add_test(live, code_flow_with_pkce);
	tcase_add_test(live, redirect_not_followed);
	tcase_add_test(live, wrong_or_missing_verifier_refused);
	tcase_add_test(live, code_reuse_refused);
	tcase_add_test(live, refresh_rotates);
	tcase_add_test(live, revoked_refresh_token);
	tcase_add_test(live, wrong_client_secret);
	tcase_add_test(live, basic_credentials_are_form_encoded);
	tcase_add_test(live, client_credentials_grant);
	tcase_add_test(live, rate_limited_with_retry_after);
	tcase_add_test(live, server_errors_back_off);
	tcase_add_test(live, echoed_secrets_are_masked);
	tcase_add_test(live, connection_refused_backs_off);
	tcase_add_test(live, slow_token_endpoint_times_out);
	tcase_add_test(live, body_cap);
	tcase_add_test(live, post_json_and_client_errors);
	suite_add_tcase(s, live);
	return s;
}

int
main(void)
{
	struct sl_err err;

	if (sl_http_global_init(&err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	return t_run(make_suite());
}
