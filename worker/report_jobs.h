/* report_jobs.h — report.fetch: one page of a fetch batch (seed 001's fetch requests). */
#ifndef SL_REPORT_JOBS_H
#define SL_REPORT_JOBS_H

#include "worker/job.h"

/*
 * report.fetch — payload {"batch_id": uuid, "page": N}: fetches page N of
 * the batch's report from the connector's API (the generic HTTP report
 * adapter: GET api_base_url/reports/<report_type>?start=&end=&page=&per_page=
 * [&fields=a,b] with its bearer token) and stores it with
 * sluice.fetch_page_store(), which queues the next page or completes the
 * batch's requests.  The page must be a JSON array of row objects; each row's
 * "date" (YYYY-MM-DD) says which requests it belongs to.  The page count
 * comes from X-Total-Pages, else a Link header with rel="next" means one more.
 * Result {"page", "pages_total", "rows_bytes", "outcome"}; a page job the
 * batch is already past does nothing ("outcome": "skipped").
 */
int sl_run_report_fetch(struct sl_jobctx *ctx, const struct sl_job *job, json_object **result,
                        struct sl_err *err);

#endif
