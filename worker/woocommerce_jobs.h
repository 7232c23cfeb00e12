/* woocommerce_jobs.h — woocommerce.sync: one call of a sync run (seed 002). */
#ifndef SL_WOOCOMMERCE_JOBS_H
#define SL_WOOCOMMERCE_JOBS_H

#include "worker/job.h"

/*
 * woocommerce.sync — payload {"run_id": uuid}: makes the run's next call
 * (sluice.woo_sync_next: a page of products, of a product's variations, or
 * of orders) with adapters/woocommerce.c and hands the page to
 * sluice.woo_sync_store(), which stores, maps and writes its records, moves
 * the run's cursor and queues the job of the call after it, or ends the run
 * (DESIGN 3 of schema/0009_woocommerce.sql).  Keys refused (401/403) put the
 * connector in reauth_required, no WooCommerce at the URL puts it in error,
 * both with the message a shop admin reads, and end the run failed; 429s,
 * 5xx, timeouts and malformed pages are retried.  Result {"path", "page",
 * "pages", "bytes", "outcome"}.
 */
int sl_run_woocommerce_sync(struct sl_jobctx *ctx, const struct sl_job *job, json_object **result,
                            struct sl_err *err);

#endif
