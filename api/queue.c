/* queue.c — GET /api/v1/queue: the queue as the caller's org sees it, in seed 001's shape. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "api/session.h"
#include "common/json.h"
#include "common/str.h"

/* A bigint column as a JSON number, or null when it is SQL NULL. */
static int
number(const PGresult *res, const char *col, json_object **out, struct sl_err *err)
{
	const char *text = sl_pg_get(res, 0, col);
	long long v;

	*out = NULL;
	if (!text)
		return 0;
	if (sl_parse_ll(text, INT64_MIN, INT64_MAX, &v))
		return sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "sluice.queue_status: bad %s", col);
	*out = json_object_new_int64(v);
	return *out ? 0 : sl_err_set(err, SL_ENOMEM, SL_RETRY_NO, "out of memory");
}

/*
 * {"queue_status": {"total_queued": N, "your_requests": N, "positions": [..],
 *                   "estimated_wait_seconds": N or null},
 *  "rate_limits": {"DV360": {"limit": N, "remaining": N, "reset_at": T}, ...}}
 * rate_limits has one entry per provider of the org's connectors
 * (sluice.org_rate_limits).
 */
int
api_queue_status(struct api_ctx *c, struct sl_err *err)
{
	json_object *answer = NULL, *status = NULL, *v = NULL;
	static const char *const cols[] = { "total_queued", "your_requests", "positions",
	                                    "estimated_wait_seconds" };
	char org[32];
	const char *params[1] = { org };
	struct sl_db *db;
	PGresult *res = NULL;
	size_t i;
	int rc;

	snprintf(org, sizeof(org), "%lld", c->org_id);
	rc = api_db(c, &db, err);
	if (rc)
		goto out;
	rc = sl_db_query(db, &res,
	                 "SELECT q.total_queued, q.your_requests, to_json(q.positions)::text AS positions,"
	                 "       q.estimated_wait_seconds,"
	                 "       sluice.org_rate_limits($1::bigint)::text AS rate_limits"
	                 "  FROM sluice.queue_status($1::bigint) q",
	                 1, params, err);
	if (rc)
		goto out;
	if (PQntuples(res) != 1) {
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "sluice.queue_status returned %d rows",
		                PQntuples(res));
		goto out;
	}
	answer = json_object_new_object();
	status = json_object_new_object();
	if (!answer || !status) {
		rc = sl_err_set(err, SL_ENOMEM, SL_RETRY_NO, "out of memory");
		goto out;
	}
	for (i = 0; i < sizeof(cols) / sizeof(cols[0]); i++) {
		if (!strcmp(cols[i], "positions")) {
			const char *text = sl_pg_get(res, 0, "positions");

			rc = text ? sl_json_parse(text, strlen(text), &v, err) : 0;
			if (!rc && !v)
				v = json_object_new_array();
		} else {
			rc = number(res, cols[i], &v, err);
		}
		if (rc)
			goto out;
		json_object_object_add(status, cols[i], v);
		v = NULL;
	}
	json_object_object_add(answer, "queue_status", status);
	status = NULL;
	{
		const char *text = sl_pg_get(res, 0, "rate_limits");

		rc = sl_json_parse(text, strlen(text), &v, err);
		if (rc)
			goto out;
		json_object_object_add(answer, "rate_limits", v);
		v = NULL;
	}
	rc = api_respond_json(c->resp, 200, answer, err);
out:
	PQclear(res);
	json_object_put(v);
	json_object_put(status);
	json_object_put(answer);
	return rc;
}
