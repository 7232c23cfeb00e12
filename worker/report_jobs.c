/* report_jobs.c — report.fetch, the generic HTTP report adapter behind seed 001's fetch requests. */

/*
 * The batching, the cursor and the results are SQL's (DESIGN of
 * schema/0008_fetch_requests.sql); this file makes the one outside call of a
 * page and hands its body to the database as it came.  PostgreSQL parses it
 * (jsonb), so the worker holds one page's text and nothing more.
 */
#include "worker/report_jobs.h"

#include <stdio.h>
#include <string.h>

#include "adapters/connector_api.h"
#include "common/buf.h"
#include "common/json.h"
#include "common/str.h"
#include "worker/connector_jobs.h"

#define PAGE_ROWS      500            /* rows asked for per page */
#define PAGE_MAX_BYTES (8u << 20)     /* a page's body cap */
#define PAGES_MAX      100000

/* The batch as this page is to fetch it; no row when the job has nothing to do. */
static int
page_start(struct sl_db *db, const struct sl_job *job, const char *batch, const char *page,
           PGresult **res, struct sl_err *err)
{
	char id[24], org[24];
	const char *params[] = { batch, page, id, org };

	snprintf(id, sizeof(id), "%lld", job->id);
	snprintf(org, sizeof(org), "%lld", job->org_id);
	return sl_db_query(db, res,
	                   "SELECT connector_id, report_type, range_start, range_end,"
	                   "       array_to_string(fields, ',') AS fields"
	                   "  FROM sluice.fetch_page_start($1::uuid, $2::integer, $3::bigint,"
	                   "                               $4::bigint)",
	                   4, params, err);
}

/* How many pages the report has, by the answer's headers: at least this one. */
static long long
pages_total(const struct sl_http_response *resp, long long page)
{
	const char *total = sl_http_header(resp, "X-Total-Pages");
	const char *link = sl_http_header(resp, "Link");
	long long n;

	if (total && !sl_parse_ll(total, 1, PAGES_MAX, &n))
		return n > page ? n : page;
	if (link && strstr(link, "rel=\"next\"") && page < PAGES_MAX)
		return page + 1;
	return page;
}

/* Stores the page; *outcome (static) is what fetch_page_store answered. */
static int
page_store(struct sl_db *db, const struct sl_job *job, const char *batch, long long page,
           long long total, const struct sl_buf *body, const char **outcome, struct sl_err *err)
{
	char id[24], page_s[24], total_s[24], what[64];
	const char *params[] = { batch, page_s, id, total_s, body->data ? body->data : "" };

	snprintf(id, sizeof(id), "%lld", job->id);
	snprintf(page_s, sizeof(page_s), "%lld", page);
	snprintf(total_s, sizeof(total_s), "%lld", total);
	snprintf(what, sizeof(what), "report page %lld is not a JSON array of row objects", page);
	return sl_store_page(db, "SELECT sluice.fetch_page_store($1::uuid, $2::integer, $3::bigint,"
	                     " $4::integer, $5::jsonb) AS outcome", 5, params, what, outcome, err);
}

int
sl_run_report_fetch(struct sl_jobctx *ctx, const struct sl_job *job, json_object **result,
                    struct sl_err *err)
{
	struct sl_cred_env env;
	struct sl_http_response resp;
	struct sl_buf path;
	PGresult *res = NULL;
	const char *batch = NULL, *outcome = "skipped", *fields;
	char page_s[24];
	long long page = 0, total = 0;
	long timeout;
	int rc;

	sl_http_response_init(&resp);
	sl_buf_init(&path, 4096);
	rc = sl_json_get_str(job->payload, "batch_id", 36, &batch, NULL, err);
	if (!rc)
		rc = sl_json_get_int(job->payload, "page", 1, PAGES_MAX, &page, NULL, err);
	if (!rc && (!batch || !page))
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "report.fetch needs payload.batch_id "
		                "and payload.page");
	if (rc) {
		err->retry = SL_RETRY_NO;
		goto out;
	}
	snprintf(page_s, sizeof(page_s), "%lld", page);
	rc = sl_job_cred_env(ctx, &env, err);
	if (!rc)
		rc = page_start(env.db, job, batch, page_s, &res, err);
	if (rc || PQntuples(res) != 1)
		goto out;   /* no row: the batch is past this page, ended, or not this org's */

	/* Names and days the database checked: nothing here needs escaping. */
	fields = sl_pg_get(res, 0, "fields");
	if (sl_buf_addf(&path, "/reports/%s?start=%s&end=%s&page=%lld&per_page=%d",
	                sl_pg_get(res, 0, "report_type"), sl_pg_get(res, 0, "range_start"),
	                sl_pg_get(res, 0, "range_end"), page, PAGE_ROWS) ||
	    (fields && fields[0] && sl_buf_addf(&path, "&fields=%s", fields))) {
		rc = sl_err_set(err, SL_ETOOLARGE, SL_RETRY_NO, "report URL too long");
		goto out;
	}
	/* The call ends before the job's own timeout would. */
	timeout = env.timeout_ms > 0 ? env.timeout_ms : 30000;
	if (sl_job_time_left(ctx) < timeout)
		timeout = (long)sl_job_time_left(ctx);
	rc = sl_connector_get(&env, sl_pg_get(res, 0, "connector_id"), path.data, "report fetch",
	                      PAGE_MAX_BYTES, timeout > 0 ? timeout : 1, &resp, err);
	if (rc)
		goto out;
	sl_connector_quota_check(env.db, job, &resp);
	total = pages_total(&resp, page);
	rc = page_store(env.db, job, batch, page, total, &resp.body, &outcome, err);
out:
	if (!rc) {
		*result = json_object_new_object();
		if (*result) {
			json_object_object_add(*result, "page", json_object_new_int64(page));
			json_object_object_add(*result, "pages_total", json_object_new_int64(total));
			json_object_object_add(*result, "rows_bytes", json_object_new_int64((int64_t)resp.body.len));
			json_object_object_add(*result, "outcome", json_object_new_string(outcome));
		}
	}
	sl_http_response_release(&resp);
	sl_buf_release(&path);
	PQclear(res);
	return rc;
}
