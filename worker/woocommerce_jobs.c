/* woocommerce_jobs.c — woocommerce.sync, the WooCommerce source adapter's job: one call, one page stored. */

/*
 * What to call next, and everything that happens to the page, is SQL's
 * (schema/0009_woocommerce.sql); the shop's wire format is
 * adapters/woocommerce.c's.  This file joins them: it reads the call, the
 * connector's URL and keys, makes the call and hands the page's text to the
 * database, which parses it (jsonb), so a worker holds one page at a time.
 */
#include "worker/woocommerce_jobs.h"

#include <stdio.h>
#include <string.h>

#include "adapters/credential.h"
#include "adapters/woocommerce.h"
#include "common/buf.h"
#include "common/json.h"
#include "common/str.h"
#include "worker/connector_jobs.h"

/* The call woo_sync_next() gives: borrowed from its result row. */
struct next_call {
	const char *connector_id;
	const char *path;
	const char *page;
	const char *per_page;
	const char *modified_after;   /* NULL: everything */
};

static int
next_call(struct sl_db *db, const struct sl_job *job, const char *run, PGresult **res,
          struct next_call *call, struct sl_err *err)
{
	char id[24], org[24];
	const char *params[] = { run, id, org };
	int rc;

	snprintf(id, sizeof(id), "%lld", job->id);
	snprintf(org, sizeof(org), "%lld", job->org_id);
	rc = sl_db_query(db, res, "SELECT connector_id, path, page, per_page, modified_after"
	                 "  FROM sluice.woo_sync_next($1::uuid, $2::bigint, $3::bigint)",
	                 3, params, err);
	if (rc || PQntuples(*res) != 1)
		return rc;
	call->connector_id = sl_pg_get(*res, 0, "connector_id");
	call->path = sl_pg_get(*res, 0, "path");
	call->page = sl_pg_get(*res, 0, "page");
	call->per_page = sl_pg_get(*res, 0, "per_page");
	call->modified_after = sl_pg_get(*res, 0, "modified_after");
	return 0;
}

/* The shop of the connector: its URL and options, and its keys (into *secrets: json_object_put). */
static int
load_shop(const struct sl_cred_env *env, const char *connector_id, PGresult **res,
          json_object **secrets, struct sl_woo_shop *shop, struct sl_err *err)
{
	const char *auth_in_query;
	int rc;

	rc = sl_db_query(env->db, res, "SELECT config ->> 'base_url' AS base_url,"
	                 "       coalesce((config ->> 'auth_in_query')::boolean, false) AS auth_in_query"
	                 "  FROM sluice.connector WHERE id = $1::uuid", 1,
	                 (const char *const[]){ connector_id }, err);
	if (!rc && (PQntuples(*res) != 1 || !sl_pg_get(*res, 0, "base_url")))
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "connector %s has no base URL", connector_id);
	if (!rc)
		rc = sl_credential_load(env, connector_id, 0, secrets, NULL, err);
	if (rc == SL_ENOTFOUND)
		err->retry = SL_RETRY_NO;   /* no keys stored: nothing to retry with */
	if (rc)
		return rc;
	memset(shop, 0, sizeof(*shop));
	shop->base_url = sl_pg_get(*res, 0, "base_url");
	auth_in_query = sl_pg_get(*res, 0, "auth_in_query");
	shop->auth_in_query = auth_in_query && auth_in_query[0] == 't';
	shop->ca_file = env->ca_file;
	shop->timeout_ms = env->timeout_ms;
	if (sl_json_get_str(*secrets, "consumer_key", 512, &shop->consumer_key, NULL, err) ||
	    sl_json_get_str(*secrets, "consumer_secret", 512, &shop->consumer_secret, NULL, err) ||
	    !shop->consumer_key || !shop->consumer_secret)
		return sl_err_set(err, SL_EAUTH, SL_RETRY_NO, "connector %s has no consumer key and "
		                  "secret; enter them in the connector's settings", connector_id);
	return 0;
}

/*
 * A failure that needs the shop's admin: the connector shows it
 * (reauth_required for refused keys, error for a URL without WooCommerce)
 * and the run ends, since retrying cannot help.
 */
static void
needs_admin(struct sl_db *db, const char *connector_id, struct sl_err *err)
{
	const char *status = err->code == SL_EAUTH ? "reauth_required" : "error";
	const char *params[] = { connector_id, status, err->msg };
	struct sl_err ignored;

	(void)!sl_db_exec(db, "SELECT sluice.set_connector_status($1::uuid, $2, $3)", 3, params,
	                  &ignored);
	err->retry = SL_RETRY_NO;
}

static int
store_page(struct sl_db *db, const struct sl_job *job, const char *run, const struct next_call *call,
           long long pages, const struct sl_woo_page *pg, const char **outcome, struct sl_err *err)
{
	char id[24], pages_s[24], time_s[24], what[160];
	const char *params[] = { run, id, call->path, call->page, pages_s,
	                         pg->server_time >= 0 ? time_s : NULL,
	                         pg->resp.body.data ? pg->resp.body.data : "" };

	snprintf(id, sizeof(id), "%lld", job->id);
	snprintf(pages_s, sizeof(pages_s), "%lld", pages);
	snprintf(time_s, sizeof(time_s), "%lld", pg->server_time);
	snprintf(what, sizeof(what), "WooCommerce sent a malformed page (%.100s page %s)", call->path,
	         call->page);
	return sl_store_page(db, "SELECT sluice.woo_sync_store($1::uuid, $2::bigint, $3, $4::integer,"
	                     " $5::integer, to_timestamp($6::bigint), $7::jsonb) AS outcome", 7, params,
	                     what, outcome, err);
}

int
sl_run_woocommerce_sync(struct sl_jobctx *ctx, const struct sl_job *job, json_object **result,
                        struct sl_err *err)
{
	struct sl_cred_env env;
	struct sl_woo_shop shop;
	struct sl_woo_page pg;
	struct next_call call = { 0 };
	PGresult *next = NULL, *conn = NULL;
	json_object *secrets = NULL;
	const char *run = NULL, *outcome = "nothing to do";
	long long page = 0, per_page = 0, pages = 0;
	int rc;

	sl_woo_page_init(&pg);
	rc = sl_json_get_str(job->payload, "run_id", 36, &run, NULL, err);
	if (!rc && !run)
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "woocommerce.sync needs payload.run_id");
	if (rc) {
		err->retry = SL_RETRY_NO;
		goto out;
	}
	rc = sl_job_cred_env(ctx, &env, err);
	if (!rc)
		rc = next_call(env.db, job, run, &next, &call, err);
	if (rc || !call.path)
		goto out;   /* no call: the run has ended, or another job carries it on */
	if (sl_parse_ll(call.page, 1, 1000000, &page) || sl_parse_ll(call.per_page, 1, 100, &per_page)) {
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "woo_sync_next gave a bad page");
		goto out;
	}
	rc = load_shop(&env, call.connector_id, &conn, &secrets, &shop, err);
	if (rc)
		goto out;   /* a connector waiting for a person: the job waits too (SL_RETRY_REAUTH) */
	if (shop.timeout_ms <= 0 || sl_job_time_left(ctx) < shop.timeout_ms)
		shop.timeout_ms = sl_job_time_left(ctx) > 1 ? (long)sl_job_time_left(ctx) : 1;
	rc = sl_woo_list(&shop, call.path, page, (int)per_page, call.modified_after, &pg, err);
	if (rc == SL_ENOTFOUND && strstr(call.path, "/variations")) {
		/* The product went while the run read: it has no variations to read now. */
		sl_buf_reset(&pg.resp.body);
		rc = sl_buf_adds(&pg.resp.body, "[]");
		pg.total_pages = 0;
		if (rc) {
			rc = sl_err_set(err, rc, SL_RETRY_BACKOFF, "out of memory");
			goto out;
		}
	} else if (rc) {
		if (err->code == SL_EAUTH || err->code == SL_ENOTFOUND)
			needs_admin(env.db, call.connector_id, err);
		goto out;
	}
	sl_connector_quota_check(env.db, job, &pg.resp);
	pages = pg.total_pages >= 0 ? pg.total_pages : pg.has_next ? page + 1 : page;
	rc = store_page(env.db, job, run, &call, pages, &pg, &outcome, err);
out:
	if (!rc) {
		*result = json_object_new_object();
		if (*result) {
			json_object_object_add(*result, "path", call.path ? json_object_new_string(call.path) : NULL);
			json_object_object_add(*result, "page", json_object_new_int64(page));
			json_object_object_add(*result, "pages", json_object_new_int64(pages));
			json_object_object_add(*result, "bytes", json_object_new_int64((int64_t)pg.resp.body.len));
			json_object_object_add(*result, "outcome", json_object_new_string(outcome));
		}
	}
	sl_woo_page_release(&pg);
	json_object_put(secrets);
	PQclear(conn);
	PQclear(next);
	return rc;
}
