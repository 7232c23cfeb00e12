/* audit.c — audit rows for mutating API calls through sluice.audit_write. */
#include "api/audit.h"

#include <stdio.h>

#include "api/session.h"
#include "common/json.h"

int
api_audit(struct api_ctx *c, const char *action, const char *outcome, int http_status,
          json_object *entries, struct sl_err *err)
{
	char org[32], actor[40], status[16];
	const char *params[7] = { org, actor, action, outcome, status, c->req->request_id, NULL };
	struct sl_db *db;
	int rc;

	snprintf(org, sizeof(org), "%lld", c->org_id);
	snprintf(actor, sizeof(actor), "key:%lld", c->key_id);
	snprintf(status, sizeof(status), "%d", http_status);
	params[6] = sl_json_text(entries);
	if (!params[6]) {
		rc = sl_err_set(err, SL_ENOMEM, SL_RETRY_NO, "cannot serialise the audit rows");
		goto out;
	}
	rc = api_db(c, &db, err);
	if (rc)
		goto out;
	rc = sl_db_exec(db,
	                "SELECT count(sluice.audit_write($1::bigint, $2, $3, e ->> 'target', $4,"
	                "                                $5::integer, $6,"
	                "                                coalesce(e -> 'detail', '{}'::jsonb)))"
	                "  FROM jsonb_array_elements($7::jsonb) AS e",
	                7, params, err);
out:
	return rc;
}

int
api_audit_one(struct api_ctx *c, const char *action, const char *outcome, int http_status,
              const char *target, json_object *detail, struct sl_err *err)
{
	json_object *entries = json_object_new_array();
	json_object *entry = json_object_new_object();
	int rc;

	if (!entries || !entry) {
		json_object_put(entry);
		rc = sl_err_set(err, SL_ENOMEM, SL_RETRY_NO, "out of memory");
		goto out;
	}
	json_object_object_add(entry, "target", target ? json_object_new_string(target) : NULL);
	json_object_object_add(entry, "detail", detail ? json_object_get(detail)
	                                               : json_object_new_object());
	json_object_array_add(entries, entry);
	rc = api_audit(c, action, outcome, http_status, entries, err);
out:
	json_object_put(entries);
	return rc;
}

const char *
api_outcome(int http_status)
{
	if (http_status >= 500)
		return "failed";
	if (http_status >= 400)
		return "refused";
	return "ok";
}
