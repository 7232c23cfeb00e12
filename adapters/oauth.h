/* oauth.h — the OAuth 2.0 client side: PKCE, the authorization URL, and the token endpoint. */
#ifndef SL_ADAPTERS_OAUTH_H
#define SL_ADAPTERS_OAUTH_H

#include <json-c/json.h>

#include "common/buf.h"
#include "common/err.h"

/* The S256 code challenge of a verifier (RFC 7636 4.2), 43 characters, into out[44]. */
void sl_oauth_pkce_challenge(const char *verifier, char out[44]);

/*
 * Builds the authorization request URL (RFC 6749 4.1.1 with RFC 7636):
 * authorize_url + response_type=code, client_id, redirect_uri, scope (the
 * scopes joined by spaces), state, code_challenge, code_challenge_method=S256,
 * then each member of extra (a JSON object of strings; may be NULL; a member
 * naming one of the parameters above is SL_EINVAL).  An authorize_url that
 * already has a query gets '&'.  The URL is appended to out (normally
 * empty); values are percent-encoded, so a space in scope is %20.
 * scope is left out when n_scopes is 0, state and the two code_challenge
 * parameters when state or code_challenge is NULL.
 */
int sl_oauth_authorize_url(struct sl_buf *out, const char *authorize_url, const char *client_id,
                           const char *redirect_uri, const char *const *scopes, int n_scopes,
                           const char *state, const char *code_challenge, json_object *extra,
                           struct sl_err *err) __attribute__((warn_unused_result));

/* Where and how to reach a token endpoint. */
struct sl_oauth_client {
	const char *token_url;
	const char *client_id;
	const char *client_secret;   /* may be NULL for a public client */
	int         auth_post;       /* client_secret_post; else client_secret_basic (RFC 6749 2.3.1) */
	const char *ca_file;         /* NULL: the system's CAs */
	long        timeout_ms;      /* 0: 30 s */
};

/*
 * A token endpoint's answer (RFC 6749 5.1).  Every string is heap memory,
 * wiped by sl_oauth_token_release; NULL when the answer did not have it.
 */
struct sl_oauth_token {
	char      *access_token;
	char      *refresh_token;   /* NULL: the provider did not rotate it; keep the old one */
	char      *token_type;
	char      *scope;
	char      *id_token;
	long long  expires_in;      /* seconds; -1 when not given */
	char       error[64];       /* the OAuth error code of a refusal (RFC 6749 5.2), else "" */
};

void sl_oauth_token_release(struct sl_oauth_token *t);

/*
 * The three grants.  Each POSTs application/x-www-form-urlencoded to the
 * token endpoint and parses the answer into *t, which must be zeroed or
 * hold an earlier answer (it is released first).  On error only t->error
 * may be set; every string is NULL.  Errors:
 *   400/401 with {"error": "invalid_grant"}   SL_EAUTH + SL_RETRY_REAUTH, t->error set
 *   other OAuth errors (invalid_client, ...)   SL_EAUTH + SL_RETRY_BACKOFF, t->error set
 *     (also a 200 carrying "error", and a bare 401: t->error "invalid_client")
 *   429                                       SL_ERATELIMIT + SL_RETRY_AFTER
 *   5xx, network, timeout                     SL_RETRY_BACKOFF (from sl_http_check)
 *   a 200 without access_token, not JSON      SL_EINVAL + SL_RETRY_BACKOFF
 * Messages carry the OAuth error code and error_description, never a token:
 * whatever the endpoint echoes of the code, verifier, refresh token or
 * client secret is masked.  client_secret_basic sends the client id and
 * secret form-urlencoded, then base64 (RFC 6749 2.3.1); a client without a
 * secret sends its client_id in the form.
 */
int sl_oauth_exchange_code(const struct sl_oauth_client *c, const char *code,
                           const char *redirect_uri, const char *code_verifier,
                           struct sl_oauth_token *t, struct sl_err *err)
	__attribute__((warn_unused_result));
int sl_oauth_refresh(const struct sl_oauth_client *c, const char *refresh_token,
                     struct sl_oauth_token *t, struct sl_err *err)
	__attribute__((warn_unused_result));
int sl_oauth_client_credentials(const struct sl_oauth_client *c, const char *scope,
                                struct sl_oauth_token *t, struct sl_err *err)
	__attribute__((warn_unused_result));

/*
 * The claims of an OpenID Connect id_token (the payload of a JWS, base64url
 * JSON), read without verifying the signature: valid only for a token that
 * came straight from the token endpoint over TLS (OpenID Connect Core
 * 3.1.3.7, point 6).  Returns a new object, or NULL when it is not a JWT.
 */
json_object *sl_oauth_id_token_claims(const char *id_token);

#endif
