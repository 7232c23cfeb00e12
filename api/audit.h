/* audit.h — audit rows for mutating API calls, written in the transaction of the change. */
#ifndef SL_API_AUDIT_H
#define SL_API_AUDIT_H

#include <json-c/json.h>

#include "api/api.h"

/*
 * Writes one audit row per element of `entries`, a JSON array of
 * {"target": "job:42" or null, "detail": {…}}, through sluice.audit_write:
 * org and actor ("key:<key id>") of the authenticated caller, `action`
 * ("job.create"), `outcome` ("ok", "refused" or "failed"), the HTTP status
 * and the request id.  The statement runs in whatever transaction is open,
 * so a change and its audit row commit or vanish together; outside one it
 * is a transaction of its own.  detail must never hold a secret.
 * Returns 0 or SL_EDB / SL_ECONN / SL_ENOMEM with err filled.
 */
int api_audit(struct api_ctx *c, const char *action, const char *outcome, int http_status,
              json_object *entries, struct sl_err *err) __attribute__((warn_unused_result));

/*
 * api_audit() for a single row.  target may be NULL; detail (may be NULL)
 * stays the caller's.
 */
int api_audit_one(struct api_ctx *c, const char *action, const char *outcome, int http_status,
                  const char *target, json_object *detail, struct sl_err *err)
	__attribute__((warn_unused_result));

/* "ok" for 1xx-3xx, "refused" for 4xx, "failed" for 5xx. */
const char *api_outcome(int http_status);

#endif
