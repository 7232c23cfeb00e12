/* requests.c — seed 001's fetch requests: POST /api/v1/connectors/fetch, GET .../requests/{id} and its rows. */

/*
 * Batching, priorities, stale answers, positions and waits are SQL's
 * (schema/0008_fetch_requests.sql): submit_fetch() decides, request_doc()
 * builds the one answer both routes give (seed 001's fields of POST /fetch
 * and of GET /requests/{id}, and the rest of what there is to know).  This
 * file checks the body's shape, calls them in one transaction with the
 * audit row, and pages the rows as JSON or CSV.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "api/audit.h"
#include "api/http.h"
#include "api/job_input.h"
#include "api/session.h"
#include "common/json.h"
#include "common/str.h"

#define ROWS_DEFAULT 100
#define ROWS_MAX     1000

/* ---- POST /api/v1/connectors/fetch ---------------------------------------------- */

static const char *const fetch_fields[] = {
	"connector_id", "report_type", "date_range", "fields", "priority", NULL,
};

/* What the body asks for, borrowed from it; fields_json is its "fields" as JSON text or "[]". */
struct fetch_input {
	const char *connector_id;
	const char *report_type;
	const char *start;
	const char *end;
	const char *fields_json;
	const char *priority;       /* NULL: "normal" */
	char        priority_num[4];
};

/* A required string member; 422 naming field when absent or not a string. */
static int
required_str(json_object *o, const char *key, const char *field, size_t max, const char **out,
             struct sl_err *err)
{
	int present = 0, rc;

	*out = NULL;
	rc = sl_json_get_str(o, key, max, out, &present, err);
	if (rc || !present)
		return api_fail(err, 422, field, "%s is required: a string of at most %zu bytes",
		                field, max);
	return 0;
}

static int
fetch_input_parse(json_object *body, struct fetch_input *in, struct sl_err *err)
{
	json_object *range, *fields, *prio;
	size_t i;
	int rc;

	memset(in, 0, sizeof(*in));
	rc = api_body_known_fields(body, fetch_fields, "connector_id, report_type, date_range, "
	                           "fields and priority are", err);
	if (!rc)
		rc = required_str(body, "connector_id", "connector_id", 36, &in->connector_id, err);
	if (!rc && !api_is_uuid(in->connector_id))
		rc = api_fail(err, 422, "connector_id", "connector_id must be a connector's id (a UUID)");
	if (!rc)
		rc = required_str(body, "report_type", "report_type", 100, &in->report_type, err);
	if (rc)
		return rc;
	if (!json_object_object_get_ex(body, "date_range", &range) ||
	    !json_object_is_type(range, json_type_object))
		return api_fail(err, 422, "date_range", "date_range is required: "
		                "{\"start\": \"YYYY-MM-DD\", \"end\": \"YYYY-MM-DD\"}");
	rc = required_str(range, "start", "date_range.start", 10, &in->start, err);
	if (!rc)
		rc = required_str(range, "end", "date_range.end", 10, &in->end, err);
	if (rc)
		return rc;
	in->fields_json = "[]";
	if (json_object_object_get_ex(body, "fields", &fields) && fields) {
		if (!json_object_is_type(fields, json_type_array))
			return api_fail(err, 422, "fields", "fields must be an array of field names");
		for (i = 0; i < json_object_array_length(fields); i++) {
			if (!json_object_is_type(json_object_array_get_idx(fields, i), json_type_string))
				return api_fail(err, 422, "fields", "fields must be an array of field names");
		}
		in->fields_json = sl_json_text(fields);
		if (!in->fields_json)
			return sl_err_set(err, SL_ENOMEM, SL_RETRY_NO, "out of memory");
	}
	if (json_object_object_get_ex(body, "priority", &prio) && prio) {
		if (json_object_is_type(prio, json_type_int)) {
			int64_t n = json_object_get_int64(prio);

			if (n < 1 || n > 5)
				return api_fail(err, 422, "priority", "priority must be premium, manual, "
				                "normal, scheduled, retry or backfill (or 1 to 5)");
			snprintf(in->priority_num, sizeof(in->priority_num), "%d", (int)n);
			in->priority = in->priority_num;
		} else if (json_object_is_type(prio, json_type_string)) {
			in->priority = json_object_get_string(prio);
		} else {
			return api_fail(err, 422, "priority", "priority must be a class name or 1 to 5");
		}
	}
	return 0;
}

/* The request's answer, sluice.request_doc(); 404 when the org has no such request. */
static int
respond_request(struct api_ctx *c, const char *id, int status, struct sl_err *err)
{
	return api_respond_by_id(c, status, "request",
	                         "SELECT d::text AS doc"
	                         "  FROM sluice.request_doc($1::uuid, $2::bigint) d"
	                         " WHERE d IS NOT NULL",
	                         id, err);
}

int
api_fetch_submit(struct api_ctx *c, struct sl_err *err)
{
	static const char *const plain[] = { "report_type", "priority", "fields", "date_range",
	                                     "date_range.start", "date_range.end", NULL };
	struct fetch_input in;
	json_object *body = NULL, *detail = NULL;
	struct sl_db *db;
	PGresult *res = NULL;
	char org[32], id[API_UUID_TEXT];
	const char *params[7];
	int rc;

	rc = api_body_object(c->req, &body, err);
	if (!rc)
		rc = fetch_input_parse(body, &in, err);
	if (rc)
		goto out;
	snprintf(org, sizeof(org), "%lld", c->org_id);
	params[0] = org;
	params[1] = in.connector_id;
	params[2] = in.report_type;
	params[3] = in.start;
	params[4] = in.end;
	params[5] = in.fields_json;
	params[6] = in.priority;
	rc = api_tx_begin(c, &db, err);
	if (!rc)
		rc = api_query_col(db, &res,
		                   "SELECT sluice.submit_fetch($1::bigint, $2::uuid, $3, $4, $5,"
		                   "    ARRAY(SELECT jsonb_array_elements_text($6::jsonb)), $7) AS id",
		                   7, params, "", plain, err);
	if (rc)
		goto out;
	if (!sl_pg_get(res, 0, "id")) {
		rc = api_fail(err, 404, "connector_id", "no such connector");
		goto out;
	}
	sl_strlcpy(id, sl_pg_get(res, 0, "id"), sizeof(id));
	snprintf(c->target, sizeof(c->target), "request:%s", id);
	detail = json_object_new_object();
	if (!detail) {
		rc = sl_err_set(err, SL_ENOMEM, SL_RETRY_NO, "out of memory");
		goto out;
	}
	json_object_object_add(detail, "connector_id", json_object_new_string(in.connector_id));
	json_object_object_add(detail, "report_type", json_object_new_string(in.report_type));
	rc = api_audit_one(c, "fetch.submit", "ok", 200, c->target, detail, err);
	if (!rc)
		rc = respond_request(c, id, 200, err);
	if (!rc)
		rc = api_tx_commit_audited(c, err);
out:
	api_tx_end(c, rc);
	PQclear(res);
	json_object_put(detail);
	json_object_put(body);
	return rc;
}

/* ---- GET /api/v1/connectors/requests/{id} ------------------------------------------ */

int
api_fetch_request_get(struct api_ctx *c, struct sl_err *err)
{
	char id[API_UUID_TEXT];
	int rc;

	rc = api_path_uuid(c->id, "request", id, err);
	if (rc)
		return rc;
	return respond_request(c, id, 200, err);
}

/* ---- GET /api/v1/connectors/requests/{id}/rows ------------------------------------- */

struct rows_query {
	int       csv;
	long long after;
	long long limit;
};

/* format (json, csv), after (>= 0) and limit (1..1000) from the query string; 422 naming it. */
static int
rows_query_parse(const char *qs, struct rows_query *rq, struct sl_err *err)
{
	struct api_query q;
	const char *v;
	int i, n, rc = 0;

	rq->csv = 0;
	rq->after = 0;
	rq->limit = ROWS_DEFAULT;
	if (api_query_parse(qs, &q, err))
		return err->code;
	for (i = 0; i < q.n && !rc; i++) {
		if (strcmp(q.p[i].name, "format") && strcmp(q.p[i].name, "after") &&
		    strcmp(q.p[i].name, "limit"))
			rc = api_fail(err, 422, q.p[i].name, "query parameter %.60s is not known (format, "
			              "after and limit are)", q.p[i].name);
	}
	v = api_query_get(&q, "format", &n);
	if (!rc && (n > 1 || (v && strcmp(v, "json") && strcmp(v, "csv"))))
		rc = api_fail(err, 422, "format", "query parameter format must be json or csv");
	rq->csv = v && !strcmp(v, "csv");
	v = api_query_get(&q, "after", &n);
	if (!rc && (n > 1 || (v && sl_parse_ll(v, 0, INT64_MAX, &rq->after))))
		rc = api_fail(err, 422, "after", "query parameter after must be a row number from 0");
	v = api_query_get(&q, "limit", &n);
	if (!rc && (n > 1 || (v && sl_parse_ll(v, 1, ROWS_MAX, &rq->limit))))
		rc = api_fail(err, 422, "limit", "query parameter limit must be an integer from 1 to %d",
		              ROWS_MAX);
	api_query_release(&q);
	return rc;
}

/*
 * One page of a completed request's rows: "doc" the JSON answer, or "csv"
 * the CSV text (a header line, then a line per row, CRLF-terminated), and
 * "next_after" the row number to ask after for the next page (NULL on the
 * last).  No row when the org has no such request; "status" says whether
 * it has completed.
 */
static const char rows_sql[] =
	"WITH r AS (SELECT * FROM sluice.connector_request"
	"            WHERE id = $1::uuid AND org_id = $2::bigint),"
	" cols AS (SELECT sluice.request_columns($1::uuid) AS names),"
	" page AS (SELECT x.row_no, x.data FROM r, sluice.request_rows(r.id, $3::bigint,"
	"                                                              $4::integer + 1) x"
	"           WHERE r.status = 'completed'),"
	" shown AS (SELECT * FROM page ORDER BY row_no LIMIT $4::integer)"
	" SELECT r.status,"
	"        CASE WHEN (SELECT count(*) FROM page) > $4::integer"
	"             THEN (SELECT max(row_no) FROM shown) END AS next_after,"
	"        json_build_object('request_id', r.id, 'status', r.status, 'stale', r.stale,"
	"            'columns', (SELECT names FROM cols),"
	"            'rows', coalesce((SELECT json_agg(data ORDER BY row_no) FROM shown), '[]'),"
	"            'next_after', CASE WHEN (SELECT count(*) FROM page) > $4::integer"
	"                               THEN (SELECT max(row_no) FROM shown) END)::text AS doc,"
	"        coalesce((SELECT string_agg(sluice.csv_field(n), ',' ORDER BY o)"
	"                    FROM cols, unnest(cols.names) WITH ORDINALITY AS u(n, o)), '')"
	"        || E'\\r\\n'"
	"        || coalesce((SELECT string_agg(line || E'\\r\\n', '' ORDER BY row_no)"
	"                       FROM (SELECT s.row_no,"
	"                                    (SELECT string_agg(sluice.csv_field("
	"                                                sluice.csv_value(s.data -> n)), ',' ORDER BY o)"
	"                                       FROM cols, unnest(cols.names) WITH ORDINALITY"
	"                                            AS u(n, o)) AS line"
	"                               FROM shown s) l), '') AS csv"
	"   FROM r";

int
api_fetch_request_rows(struct api_ctx *c, struct sl_err *err)
{
	struct rows_query rq;
	struct sl_db *db;
	PGresult *res = NULL;
	char id[API_UUID_TEXT], org[32], after[32], limit[32];
	const char *params[4] = { id, org, after, limit };
	const char *status, *next;
	int rc;

	rc = api_path_uuid(c->id, "request", id, err);
	if (!rc)
		rc = rows_query_parse(c->req->query, &rq, err);
	if (!rc)
		rc = api_db(c, &db, err);
	if (rc)
		return rc;
	snprintf(org, sizeof(org), "%lld", c->org_id);
	snprintf(after, sizeof(after), "%lld", rq.after);
	snprintf(limit, sizeof(limit), "%lld", rq.limit);
	rc = sl_db_query(db, &res, rows_sql, 4, params, err);
	if (rc)
		goto out;
	if (PQntuples(res) != 1) {
		rc = api_fail(err, 404, NULL, "no such request");
		goto out;
	}
	status = sl_pg_get(res, 0, "status");
	if (strcmp(status, "completed")) {
		rc = api_fail(err, 409, NULL, "request %s is %s: its rows are readable once it has "
		              "completed", id, status);
		goto out;
	}
	next = sl_pg_get(res, 0, "next_after");
	if (next) {
		rc = api_add_header(c->resp, "Link", "</api/v1/connectors/requests/%s/rows?format=%s"
		                    "&after=%s&limit=%lld>; rel=\"next\"", id, rq.csv ? "csv" : "json",
		                    next, rq.limit);
		if (rc) {
			rc = sl_err_set(err, rc, SL_RETRY_NO, "cannot hold the answer");
			goto out;
		}
	}
	if (rq.csv)
		rc = api_respond_text(c->resp, 200, "text/csv; charset=utf-8",
		                      sl_pg_get(res, 0, "csv"), err);
	else
		rc = api_respond_json_text(c->resp, 200, sl_pg_get(res, 0, "doc"), err);
out:
	PQclear(res);
	return rc;
}
