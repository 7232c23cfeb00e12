/* api.h — what every sluice-api handler gets: the request, the answer being built, the caller. */
#ifndef SL_API_API_H
#define SL_API_API_H

#include "api/http.h"
#include "common/db.h"
#include "common/err.h"

struct sl_keyring;
struct sl_cred_env;

/*
 * One request's context.  sluice-api serves one request per process, so this
 * is the whole of its state: main.c owns it, the dispatcher fills in the
 * caller, handlers fill in the answer.
 */
struct api_ctx {
	struct api_request  *req;
	struct api_response *resp;
	const char          *database_url;  /* NULL when not configured */
	struct sl_db        *db;            /* opened by api_db(); NULL until then */
	long long            key_id;        /* the caller once authenticated; 0 before */
	long long            org_id;
	const char          *id;            /* the {id} path segment, or NULL */
	char                 target[64];    /* what a mutating call acts on ("job:42"), for its audit row */
	int                  audited;       /* the handler's transaction already wrote the audit row */
	struct sl_keyring   *kr;            /* api_keyring(); NULL until then; main.c frees it */
	long                 oauth_timeout_ms;  /* inline token endpoint calls (SLUICE_OAUTH_TIMEOUT) */
	const char          *ca_file;       /* CA bundle for outside calls (SLUICE_CA_FILE); NULL: the system's */
};

/*
 * A handler answers its route.  On success it returns 0 with c->resp set.
 * On failure it returns an SL_E* code with err filled (err->http_status
 * when the status is not the code's usual one, err->field for a bad
 * field); the dispatcher turns that into the JSON error answer and, for a
 * mutating route, the audit row.  Handlers never write to stdout.
 */
typedef int (*api_handler)(struct api_ctx *c, struct sl_err *err);

/*
 * Routes the request (404, 405 with Allow), authenticates it when the route
 * needs a key (401, 403), reads the body of routes that take one, runs the
 * handler and audits refused and failed mutating calls.  Always leaves an
 * answer in c->resp, except when memory ran out while building even the
 * error answer (c->resp->status is then 0 and the caller must answer 500).
 */
void api_dispatch(struct api_ctx *c);

/* The handlers (jobs.c, queue.c, ops.c, connectors.c, events.c, oauth.c, requests.c, admin.c). */
int api_job_create(struct api_ctx *c, struct sl_err *err);
int api_job_get(struct api_ctx *c, struct sl_err *err);
int api_job_cancel(struct api_ctx *c, struct sl_err *err);
int api_queue_status(struct api_ctx *c, struct sl_err *err);
int api_health(struct api_ctx *c, struct sl_err *err);
int api_metrics(struct api_ctx *c, struct sl_err *err);
int api_connector_list(struct api_ctx *c, struct sl_err *err);
int api_connector_create(struct api_ctx *c, struct sl_err *err);
int api_connector_get(struct api_ctx *c, struct sl_err *err);
int api_connector_update(struct api_ctx *c, struct sl_err *err);
int api_connector_delete(struct api_ctx *c, struct sl_err *err);
int api_connector_enable(struct api_ctx *c, struct sl_err *err);
int api_connector_disable(struct api_ctx *c, struct sl_err *err);
int api_event_list(struct api_ctx *c, struct sl_err *err);
int api_event_get(struct api_ctx *c, struct sl_err *err);
int api_audit_list(struct api_ctx *c, struct sl_err *err);
int api_oauth_initiate(struct api_ctx *c, struct sl_err *err);
int api_oauth_callback(struct api_ctx *c, struct sl_err *err);
int api_oauth_browser_callback(struct api_ctx *c, struct sl_err *err);
int api_fetch_submit(struct api_ctx *c, struct sl_err *err);
int api_fetch_request_get(struct api_ctx *c, struct sl_err *err);
int api_fetch_request_rows(struct api_ctx *c, struct sl_err *err);

/* Seed 002's admin API for WooCommerce connectors (admin.c). */
int api_admin_connector_list(struct api_ctx *c, struct sl_err *err);
int api_admin_connector_create(struct api_ctx *c, struct sl_err *err);
int api_admin_connector_update(struct api_ctx *c, struct sl_err *err);
int api_admin_connector_test(struct api_ctx *c, struct sl_err *err);
int api_admin_connector_sync(struct api_ctx *c, struct sl_err *err);
int api_admin_connector_runs(struct api_ctx *c, struct sl_err *err);

/* ---- shared by the connector, event and OAuth handlers ------------------- */

/*
 * The master keyring, built from the environment (sl_keyring_from_env) on
 * first use and kept in c->kr; *out is borrowed.  When no master key is
 * configured: SL_ECONN with err->http_status 503 and the message "secrets
 * are not configured (SLUICE_MASTER_KEY)", logged once per process.  Any
 * other failure (a malformed key): 500, logged without the key.
 */
int api_keyring(struct api_ctx *c, struct sl_keyring **out, struct sl_err *err)
	__attribute__((warn_unused_result));

/*
 * Fills *e for credential calls on db with the keyring kr, acting as
 * `actor` ("key:<id>"; borrowed, must outlive e) for the request.
 */
void api_cred_env(struct api_ctx *c, struct sl_db *db, struct sl_keyring *kr,
                  const char *actor, struct sl_cred_env *e);

/*
 * A credential or secret call failed: errors that are not the client's
 * (a tampered ciphertext, a data key of another master key) become 500s
 * that the dispatcher logs, rather than the 401 or 422 their codes would
 * map to.  Database errors keep their mapping.  Returns err->code.
 */
int api_secret_failure(struct sl_err *err);

/*
 * Stores given (an object of secret fields, the caller's) as connector id's
 * secrets in db's open transaction, merged into the stored ones when merge
 * is set (load, merge, store; also for a connector that needs a person: new
 * credentials are how a person fixes it), acting as the caller's key.
 * Errors as sl_credential_store, through api_secret_failure().
 */
int api_store_secrets(struct api_ctx *c, struct sl_db *db, struct sl_keyring *kr, const char *id,
                      json_object *given, int merge, struct sl_err *err)
	__attribute__((warn_unused_result));

/*
 * sl_db_query(), and when the statement fails with a COLUMN field (what
 * sluice.create_connector and sluice.expand_url attach to their errors),
 * err->field gets `prefix` followed by that column ("config." + "base_url";
 * the column alone when prefix is NULL and the column is one of `plain`, a
 * NULL-terminated list, e.g. "type").
 */
int api_query_col(struct sl_db *db, PGresult **out, const char *sql, int nparams,
                  const char *const *params, const char *prefix, const char *const *plain,
                  struct sl_err *err) __attribute__((warn_unused_result));

/*
 * Answers `status` with the connector `id` (a canonical lower-case UUID) of
 * the caller's org as {"connector": {...}}, read on the request's session
 * (inside its open transaction, if any: api_respond_query).  A connector
 * that is not the org's, or is deleted, answers 404.
 */
int api_connector_respond(struct api_ctx *c, const char *id, int status, struct sl_err *err)
	__attribute__((warn_unused_result));

/* Whether s holds n_min to n_max UTF-8 characters (s is valid UTF-8). */
int api_utf8_len_between(const char *s, size_t n_min, size_t n_max);

/* A query string (application/x-www-form-urlencoded), decoded. */
#define API_QUERY_MAX 16
struct api_query {
	int n;
	struct {
		char *name;
		char *value;
	} p[API_QUERY_MAX];
};

/*
 * Splits and percent-decodes QUERY_STRING ('+' is a space).  A malformed
 * escape, a name or value that is not UTF-8 or holds NUL, or more than
 * API_QUERY_MAX parameters: SL_EINVAL, 400.  Release with api_query_release.
 */
int api_query_parse(const char *qs, struct api_query *q, struct sl_err *err)
	__attribute__((warn_unused_result));
void api_query_release(struct api_query *q);

/* The value of parameter `name`, or NULL; *count (may be NULL) how many times it appears. */
const char *api_query_get(const struct api_query *q, const char *name, int *count);

#endif
