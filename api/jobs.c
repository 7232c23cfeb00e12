/* jobs.c — POST /api/v1/jobs, GET and DELETE /api/v1/jobs/{id}: enqueue, read and cancel jobs. */
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "api/audit.h"
#include "api/http.h"
#include "api/job_input.h"
#include "api/session.h"
#include "common/buf.h"
#include "common/caps.h"
#include "common/json.h"
#include "common/str.h"

/* A timestamp as RFC 3339 in UTC with microseconds, whatever the session's TimeZone. */
#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* One row of the sluice.jobs view (alias j) as the API shows a job: JSON, and as text. */
#define JOB_OBJECT                                                                      \
	"json_build_object('id', j.id, 'kind', j.kind, 'state', j.state,"               \
	" 'priority', j.priority, 'payload', j.payload, 'attempts', j.attempts,"        \
	" 'max_attempts', j.max_attempts, 'run_at', " TS("j.run_at") ","                \
	" 'created_at', " TS("j.created_at") ", 'started_at', " TS("j.started_at") "," \
	" 'finished_at', " TS("j.finished_at") ", 'result', j.result,"                  \
	" 'last_error', j.last_error, 'errors', j.errors, 'dedupe_key', j.dedupe_key,"  \
	" 'connector_id', j.connector_id)"
#define JOB_JSON JOB_OBJECT "::text"

/* Room for a bigint[] or boolean[] literal of SL_MAX_BATCH_JOBS elements. */
#define ARRAY_TEXT_MAX ((size_t)SL_MAX_BATCH_JOBS * 21 + 16)

/* Parses the JOB_JSON text of column `col` of row `row`. */
static int
job_from_row(const PGresult *res, int row, const char *col, json_object **out,
             struct sl_err *err)
{
	const char *text = sl_pg_get(res, row, col);

	*out = NULL;
	if (!text)
		return sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "a job row came back empty");
	return sl_json_parse(text, strlen(text), out, err);
}

/*
 * Every connector_id of the body must name a live connector of the caller's
 * org: 422 naming the first that does not ("connector_id" or
 * "jobs[3].connector_id").  Another org's connector is exactly as unknown
 * as one that never was.  Runs inside the enqueue's transaction.
 */
static int
check_connectors(struct sl_db *db, const char *org, const char *body, int batch,
                 struct sl_err *err)
{
	const char *params[3] = { org, body, batch ? "true" : "false" };
	char field[sizeof(err->field)];
	PGresult *res = NULL;
	long long idx;
	int rc;

	rc = sl_db_query(db, &res,
	                 "SELECT e.ord - 1 AS idx"
	                 "  FROM jsonb_array_elements(CASE WHEN $3::boolean THEN $2::jsonb -> 'jobs'"
	                 "                                 ELSE jsonb_build_array($2::jsonb) END)"
	                 "       WITH ORDINALITY AS e(j, ord)"
	                 " WHERE e.j ->> 'connector_id' IS NOT NULL"
	                 "   AND NOT EXISTS (SELECT 1 FROM sluice.connector c"
	                 "                    WHERE c.id = (e.j ->> 'connector_id')::uuid"
	                 "                      AND c.org_id = $1::bigint AND c.deleted_at IS NULL)"
	                 " ORDER BY e.ord LIMIT 1",
	                 3, params, err);
	if (rc || PQntuples(res) == 0)
		goto out;
	if (sl_parse_ll(sl_pg_get(res, 0, "idx"), 0, SL_MAX_BATCH_JOBS, &idx)) {
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "bad index from the connector check");
		goto out;
	}
	if (batch)
		snprintf(field, sizeof(field), "jobs[%lld].connector_id", idx);
	else
		snprintf(field, sizeof(field), "connector_id");
	rc = api_fail(err, 422, field, "field %s names no connector of this org", field);
out:
	PQclear(res);
	return rc;
}

/* Whether a job of the checked body has a connector_id (parsed: escapes cannot hide one). */
static int
names_connector(json_object *body, int batch)
{
	json_object *jobs = NULL, *v = NULL;
	size_t i, n;

	if (!batch)
		return json_object_object_get_ex(body, "connector_id", &v) && v;
	if (!json_object_object_get_ex(body, "jobs", &jobs))
		return 0;
	n = json_object_array_length(jobs);
	for (i = 0; i < n; i++) {
		if (json_object_object_get_ex(json_object_array_get_idx(jobs, i), "connector_id", &v) && v)
			return 1;
	}
	return 0;
}

int
api_job_create(struct api_ctx *c, struct sl_err *err)
{
	json_object *body = NULL, *answer = NULL, *list = NULL, *audit = NULL, *job = NULL;
	struct sl_buf ids, dedups;
	char org[32];
	const char *params[3];
	struct sl_db *db = NULL;
	PGresult *res = NULL;
	long long first_id = 0;
	size_t n = 0;
	int batch = 0, created = 0, status, row, rc;

	sl_buf_init(&ids, ARRAY_TEXT_MAX);
	sl_buf_init(&dedups, ARRAY_TEXT_MAX);
	rc = api_body_json(c->req, &body, err);
	if (rc)
		goto out;
	/* Every field is checked before the database sees any of them. */
	rc = api_jobs_check(body, &batch, &n, err);
	if (rc)
		goto out;

	rc = api_tx_begin(c, &db, err);
	if (rc)
		goto out;

	/*
	 * The body goes to sluice.enqueue_many as the client sent it, so that
	 * payload numbers keep their exact text; it was checked above, and
	 * jsonb reads duplicate members the way json-c does (the last wins).
	 */
	snprintf(org, sizeof(org), "%lld", c->org_id);
	/* Only bodies that name a connector pay for the look-up. */
	if (names_connector(body, batch)) {
		rc = check_connectors(db, org, c->req->body.data, batch, err);
		if (rc)
			goto out;
	}
	params[0] = org;
	params[1] = c->req->body.data;
	params[2] = batch ? "true" : "false";
	rc = sl_db_query(db, &res,
	                 "SELECT e.ord, e.job_id, e.deduplicated"
	                 "  FROM sluice.enqueue_many($1::bigint,"
	                 "         CASE WHEN $3::boolean THEN $2::jsonb -> 'jobs'"
	                 "              ELSE jsonb_build_array($2::jsonb) END) e"
	                 " ORDER BY e.ord",
	                 3, params, err);
	if (rc)
		goto out;
	if ((size_t)PQntuples(res) != n) {
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO,
		                "sluice.enqueue_many returned %d rows for %zu jobs", PQntuples(res), n);
		goto out;
	}
	rc = sl_buf_addc(&ids, '{') || sl_buf_addc(&dedups, '{');
	for (row = 0; !rc && row < PQntuples(res); row++) {
		const char *id = sl_pg_get(res, row, "job_id");
		const char *dedup = sl_pg_get(res, row, "deduplicated");

		if (!id || !dedup) {
			rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO,
			                "sluice.enqueue_many returned no job for element %d", row + 1);
			goto out;
		}
		created += strcmp(dedup, "t") != 0;
		rc = sl_buf_addf(&ids, "%s%s", row ? "," : "", id) ||
		     sl_buf_addf(&dedups, "%s%s", row ? "," : "", dedup);
	}
	if (rc || sl_buf_addc(&ids, '}') || sl_buf_addc(&dedups, '}')) {
		rc = sl_err_set(err, SL_ENOMEM, SL_RETRY_NO, "out of memory");
		goto out;
	}
	PQclear(res);
	res = NULL;

	/* The jobs as they are now, in the order they were sent. */
	params[0] = ids.data;
	params[1] = dedups.data;
	params[2] = org;
	rc = sl_db_query(db, &res,
	                 "SELECT u.dedup, j.id, " JOB_JSON " AS job"
	                 "  FROM unnest($1::bigint[], $2::boolean[]) WITH ORDINALITY AS u(id, dedup, ord)"
	                 "  JOIN sluice.jobs j ON j.id = u.id AND j.org_id = $3::bigint"
	                 " ORDER BY u.ord",
	                 3, params, err);
	if (rc)
		goto out;
	if ((size_t)PQntuples(res) != n) {
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "an enqueued job is not in sluice.jobs");
		goto out;
	}

	/* 201 when something was created; a call that only met existing jobs created nothing. */
	status = created ? 201 : 200;
	answer = json_object_new_object();
	list = json_object_new_array();
	audit = json_object_new_array();
	if (!answer || !list || !audit) {
		rc = sl_err_set(err, SL_ENOMEM, SL_RETRY_NO, "out of memory");
		goto out;
	}
	for (row = 0; row < PQntuples(res); row++) {
		int dedup = !strcmp(sl_pg_get(res, row, "dedup"), "t");
		json_object *entry, *detail;
		char target[40];

		rc = job_from_row(res, row, "job", &job, err);
		if (rc)
			goto out;
		if (row == 0)
			first_id = json_object_get_int64(json_object_object_get(job, "id"));
		snprintf(target, sizeof(target), "job:%s", sl_pg_get(res, row, "id"));
		entry = json_object_new_object();
		detail = json_object_new_object();
		if (!entry || !detail) {
			json_object_put(entry);
			json_object_put(detail);
			rc = sl_err_set(err, SL_ENOMEM, SL_RETRY_NO, "out of memory");
			goto out;
		}
		/* What was asked, never the payload: it may hold a customer's data. */
		json_object_object_add(detail, "kind",
		                       json_object_get(json_object_object_get(job, "kind")));
		json_object_object_add(detail, "priority",
		                       json_object_get(json_object_object_get(job, "priority")));
		json_object_object_add(detail, "deduplicated", json_object_new_boolean(dedup));
		if (batch)
			json_object_object_add(detail, "batch_size", json_object_new_int64((int64_t)n));
		json_object_object_add(entry, "target", json_object_new_string(target));
		json_object_object_add(entry, "detail", detail);
		json_object_array_add(audit, entry);

		if (batch) {
			json_object_object_add(job, "deduplicated", json_object_new_boolean(dedup));
			json_object_array_add(list, job);
		} else {
			json_object_object_add(answer, "job", job);
			json_object_object_add(answer, "deduplicated", json_object_new_boolean(dedup));
		}
		job = NULL;
	}
	if (batch) {
		json_object_object_add(answer, "jobs", list);
		list = NULL;
	}

	rc = api_audit(c, "job.create", "ok", status, audit, err);
	if (rc)
		goto out;
	/* Serialised before COMMIT: once the jobs exist, nothing may fail but the write. */
	rc = api_respond_json(c->resp, status, answer, err);
	if (rc)
		goto out;
	rc = api_tx_commit_audited(c, err);
	if (rc)
		goto out;
	if (!batch && created)
		(void)!api_add_header(c->resp, "Location", "/api/v1/jobs/%lld", first_id);
out:
	api_tx_end(c, rc);
	PQclear(res);
	json_object_put(job);
	json_object_put(list);
	json_object_put(audit);
	json_object_put(answer);
	json_object_put(body);
	sl_buf_release(&ids);
	sl_buf_release(&dedups);
	return rc;
}

/*
 * Answers `status` with the job `id` of the caller's org as {"job": …}, read
 * in the open transaction, if any; 404 when the org has none by that id.
 */
static int
answer_job(struct api_ctx *c, const char *id, int status, struct sl_err *err)
{
	return api_respond_by_id(c, status, "job",
	                         "SELECT json_build_object('job', " JOB_OBJECT ")::text AS doc"
	                         "  FROM sluice.jobs j"
	                         " WHERE j.id = $1::bigint AND j.org_id = $2::bigint",
	                         id, err);
}

int
api_job_get(struct api_ctx *c, struct sl_err *err)
{
	char id[API_ID_TEXT];
	int rc;

	rc = api_path_id(c->id, "job", id, err);
	if (rc)
		return rc;
	return answer_job(c, id, 200, err);
}

int
api_job_cancel(struct api_ctx *c, struct sl_err *err)
{
	json_object *detail = NULL;
	char id[API_ID_TEXT], org[32], reason[96], state[16];
	const char *params[2] = { id, org };
	struct sl_db *db = NULL;
	PGresult *res = NULL;
	int rc;

	rc = api_path_id(c->id, "job", id, err);
	if (rc)
		goto out;
	snprintf(org, sizeof(org), "%lld", c->org_id);
	snprintf(c->target, sizeof(c->target), "job:%s", id);

	rc = api_tx_begin(c, &db, err);
	if (rc)
		goto out;

	/*
	 * Lock the live job if it is the caller's: from here to COMMIT no worker
	 * can settle it, so the cancel below cannot lose a race.
	 */
	rc = sl_db_query(db, &res,
	                 "SELECT j.state FROM sluice.job j"
	                 " WHERE j.id = $1::bigint AND j.org_id = $2::bigint FOR UPDATE",
	                 2, params, err);
	if (rc)
		goto out;
	if (PQntuples(res) == 0) {
		/* Not live: ended (409, saying how), or not the caller's at all (404). */
		PQclear(res);
		res = NULL;
		rc = sl_db_query(db, &res,
		                 "SELECT j.state FROM sluice.jobs j"
		                 " WHERE j.id = $1::bigint AND j.org_id = $2::bigint",
		                 2, params, err);
		if (rc)
			goto out;
		if (PQntuples(res) == 0)
			rc = api_fail(err, 404, NULL, "no such job");
		else
			rc = api_fail(err, 409, NULL, "job %s has already ended: it is %s", id,
			              sl_pg_get(res, 0, "state"));
		goto out;
	}
	snprintf(state, sizeof(state), "%s", sl_pg_get(res, 0, "state"));
	PQclear(res);
	res = NULL;

	snprintf(reason, sizeof(reason), "cancelled through the API by key %lld", c->key_id);
	params[1] = reason;
	rc = sl_db_query(db, &res, "SELECT sluice.cancel_job($1::bigint, $2) AS cancelled",
	                 2, params, err);
	params[1] = org;
	if (rc)
		goto out;
	if (!sl_pg_get(res, 0, "cancelled") || strcmp(sl_pg_get(res, 0, "cancelled"), "t")) {
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "sluice.cancel_job refused a locked live job");
		goto out;
	}

	rc = answer_job(c, id, 200, err);
	if (rc)
		goto out;
	detail = json_object_new_object();
	if (!detail) {
		rc = sl_err_set(err, SL_ENOMEM, SL_RETRY_NO, "out of memory");
		goto out;
	}
	json_object_object_add(detail, "previous_state", json_object_new_string(state));
	rc = api_audit_one(c, "job.cancel", "ok", 200, c->target, detail, err);
	if (rc)
		goto out;
	rc = api_tx_commit_audited(c, err);
out:
	api_tx_end(c, rc);
	PQclear(res);
	json_object_put(detail);
	return rc;
}
