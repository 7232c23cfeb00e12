/* auth.h — bearer API keys: who is calling, for which org, with which scope. */
#ifndef SL_API_AUTH_H
#define SL_API_AUTH_H

#include "api/api.h"

#define API_KEY_LEN 43   /* "sk_" + 40 characters from [A-Za-z0-9] */

/*
 * Takes the key out of an Authorization header value "Bearer <key>" (scheme
 * in any case, RFC 7235) into key[API_KEY_LEN + 1].  Returns 0 when the
 * header holds a well-formed key, else SL_EAUTH; it never says which part
 * was wrong, so that nothing about a near-miss key leaks.
 */
int api_bearer_key(const char *authorization, char *key);

/*
 * Authenticates the request's key through sluice.authenticate (by its
 * SHA-256; the key itself never leaves this process, nor reaches a log) and
 * checks with sluice.scope_grants that it grants `scope` ("read", "write"
 * or "admin").  On success returns 0 with c->key_id and c->org_id set.
 *
 * No key, a malformed, unknown or revoked one: SL_EAUTH with
 * err->http_status 401 and a WWW-Authenticate header on c->resp.  A valid
 * key without the scope: 403, with c->key_id and c->org_id set so that the
 * refusal can be audited.  Database trouble: SL_EDB / SL_ECONN.
 */
int api_authenticate(struct api_ctx *c, const char *scope, struct sl_err *err)
	__attribute__((warn_unused_result));

#endif
