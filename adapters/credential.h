/* credential.h — a connector's secrets: sealed at rest, opened with an audit row, access tokens kept fresh. */
#ifndef SL_ADAPTERS_CREDENTIAL_H
#define SL_ADAPTERS_CREDENTIAL_H

#include <json-c/json.h>

#include "adapters/oauth.h"
#include "common/db.h"
#include "common/err.h"
#include "common/secret.h"

/*
 * A connector's secrets are one JSON object, sealed whole (common/secret.h)
 * with "connector:<id>" as associated data.  Its members by auth kind:
 *   oauth2_code                access_token, refresh_token
 *   oauth2_client_credentials  client_id, client_secret, access_token
 *   api_key / bearer_token     api_key / token
 *   basic                      username, password
 *   consumer_key               consumer_key, consumer_secret
 *   ssh_key                    private_key (and passphrase)
 * Only this file seals and opens them.  Every open writes an audit row
 * (action credential.decrypt, the actor, ok or failed) in the caller's
 * transaction when one is open, else in its own.
 */

/* Who is asking, and with what. */
struct sl_cred_env {
	struct sl_db      *db;
	struct sl_keyring *kr;
	const char        *actor;        /* "worker:<id>" or "key:<id>", for the audit row */
	const char        *request_id;   /* audit; may be NULL */
	long long          job_id;       /* audit; 0 when not in a job */
	const char        *ca_file;      /* token endpoint TLS; NULL: system CAs */
	long               timeout_ms;   /* token endpoint; 0: 30 s */
};

/* What a connector's credential row says besides the secret. */
struct sl_cred_meta {
	long long org_id;
	char      type[40];       /* the provider type */
	long long version;
	int       expired;        /* the access token is past, or within 30 s of, its expiry */
	char      auth_kind[32];
	char      status[32];     /* the connector's status */
};

/*
 * Seals `secrets` and writes them (sluice.write_credential).  expires_in >= 0
 * sets the access token's expiry that many seconds from now (and schedules
 * its refresh); -1 leaves none.  expect_version > 0 refuses to overwrite a
 * newer row (SL_ECONFLICT).  *version (may be NULL) gets the new version.
 * Runs in the caller's transaction when one is open.
 */
int sl_credential_store(const struct sl_cred_env *e, const char *connector_id,
                        json_object *secrets, long long expires_in, long long expect_version,
                        long long *version, struct sl_err *err)
	__attribute__((warn_unused_result));

/* How sl_credential_load reads. */
enum {
	SL_CRED_LOCK       = 1,  /* SELECT ... FOR UPDATE (the caller has a transaction open) */
	SL_CRED_ANY_STATUS = 2,  /* also for a connector that needs a person (to fix it) */
};

/*
 * Opens a connector's secrets: *secrets is a new object (put it when done;
 * never log it).  meta may be NULL.  No credential: SL_ENOTFOUND.  A
 * connector that needs a person (reauth_required, disabled): SL_EAUTH with
 * SL_RETRY_REAUTH, unless flags has SL_CRED_ANY_STATUS.
 */
int sl_credential_load(const struct sl_cred_env *e, const char *connector_id, unsigned flags,
                       json_object **secrets, struct sl_cred_meta *meta, struct sl_err *err)
	__attribute__((warn_unused_result));

/*
 * An access token fit to use now (*token: heap, free with sl_credential_free).
 * When the stored one has expired it refreshes first, single-flight across
 * every worker (DESIGN 4 of schema/0004_connectors.sql): of N callers, one
 * asks the token endpoint, the rest wait on the row lock and read its answer.
 */
int sl_credential_access_token(const struct sl_cred_env *e, const char *connector_id,
                               char **token, struct sl_err *err)
	__attribute__((warn_unused_result));

/*
 * Refreshes the connector's access token in one transaction holding the
 * credential row (DESIGN 4 of schema/0004_connectors.sql): lock, re-read,
 * ask the token endpoint (refresh_token grant with the org's OAuth app, or
 * client_credentials with the connector's own client), store the new access
 * token and the rotated refresh token (the old one kept when none came),
 * mark the connector connected (emitting oauth_connected if it was not).
 * Whether to ask at all is decided after the re-read:
 *   seen_version > 0   only if the row still has that version (the caller
 *                      found that version's token expired; a newer row means
 *                      another worker refreshed it meanwhile)
 *   seen_version == 0  only if the token expires within oauth_refresh_margin
 *                      (the scheduled oauth.refresh job)
 *   seen_version < 0   always
 * invalid_grant (the stored refresh token cannot have changed: we hold its
 * row) sets the connector reauth_required with a status message and emits
 * oauth_revoked; the error returned has SL_RETRY_REAUTH.  Other failures
 * change nothing and keep their retry class.  Inside a caller's transaction
 * it runs there; otherwise in its own.  *refreshed (may be NULL) says
 * whether the token endpoint was asked and its answer stored.
 */
int sl_credential_refresh(const struct sl_cred_env *e, const char *connector_id,
                          long long seen_version, int *refreshed, struct sl_err *err)
	__attribute__((warn_unused_result));

/*
 * After a successful token exchange: stores the tokens (merged into the
 * secrets already there), records the account, sets the connector
 * connected and emits oauth_connected, all in the caller's transaction.
 */
int sl_credential_connected(const struct sl_cred_env *e, const char *connector_id,
                            const struct sl_oauth_token *t, const char *account_id,
                            const char *account_name, struct sl_err *err)
	__attribute__((warn_unused_result));

/* An org's OAuth app for a provider: store (sealed) and load.  Load: heap strings. */
int sl_oauth_app_store(const struct sl_cred_env *e, long long org_id, const char *type,
                       const char *client_id, const char *client_secret, struct sl_err *err)
	__attribute__((warn_unused_result));
int sl_oauth_app_load(const struct sl_cred_env *e, long long org_id, const char *type,
                      char **client_id, char **client_secret, struct sl_err *err)
	__attribute__((warn_unused_result));

/* Wipes and frees a secret string.  NULL-safe. */
void sl_credential_free(char *secret);

#endif
