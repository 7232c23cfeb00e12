/* connector_api.h — one authenticated call to a connector's own API, whatever its provider. */
#ifndef SL_CONNECTOR_API_H
#define SL_CONNECTOR_API_H

#include <stddef.h>

#include "adapters/credential.h"
#include "adapters/http.h"
#include "common/err.h"

/*
 * GET api_base_url + path_query of the connector (sluice.connector_endpoints:
 * the org's overrides applied, placeholders filled from its config) with
 * "Authorization: Bearer" and its token: the OAuth access token
 * (sl_credential_access_token: refreshed first when it has expired) or the
 * static token of a bearer_token connector.  Other auth kinds have their own
 * adapters: SL_EINVAL, SL_RETRY_NO.  timeout_ms 0 takes env->timeout_ms.
 *
 * Returns 0 when an answer arrived with status 2xx, resp filled.  Otherwise
 * the error of sl_http_do or sl_http_check (what names the call in its
 * message), resp holding whatever answer came (its elapsed_ms too): a
 * refused token (401) is SL_RETRY_BACKOFF, since the next attempt refreshes
 * it.  The token never appears in err.  resp must be initialised by the
 * caller (sl_http_response_init) and released by it.
 */
int sl_connector_get(const struct sl_cred_env *env, const char *connector_id,
                     const char *path_query, const char *what, size_t max_body, long timeout_ms,
                     struct sl_http_response *resp, struct sl_err *err)
	__attribute__((warn_unused_result));

#endif
