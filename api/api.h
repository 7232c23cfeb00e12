/* api.h — what every sluice-api handler gets: the request, the answer being built, the caller. */
#ifndef SL_API_API_H
#define SL_API_API_H

#include "api/http.h"
#include "common/db.h"
#include "common/err.h"

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

/* The handlers (jobs.c, queue.c, ops.c). */
int api_job_create(struct api_ctx *c, struct sl_err *err);
int api_job_get(struct api_ctx *c, struct sl_err *err);
int api_job_cancel(struct api_ctx *c, struct sl_err *err);
int api_queue_status(struct api_ctx *c, struct sl_err *err);
int api_health(struct api_ctx *c, struct sl_err *err);
int api_metrics(struct api_ctx *c, struct sl_err *err);

#endif
