/* job.h — what a job handler sees: the job, and the calls that keep it alive. */
#ifndef SL_JOB_H
#define SL_JOB_H

#include <json-c/json.h>

#include "adapters/credential.h"
#include "common/db.h"
#include "common/err.h"
#include "common/log.h"

/* One claimed job.  Everything is borrowed from the worker for the handler's call. */
struct sl_job {
	long long    id;
	long long    org_id;
	const char  *connector_id;   /* NULL when the job has none */
	const char  *kind;
	json_object *payload;        /* never NULL; an object unless the enqueuer sent otherwise */
	int          priority;
	int          attempts;       /* this attempt's number, from 1 */
	int          max_attempts;
	long long    timeout_ms;
};

struct sl_jobctx;

/*
 * A job handler.  Returns 0 when the job is done, with *result set to a JSON
 * value to keep with the job (or left NULL); the worker takes ownership of
 * *result.  Otherwise returns a negative SL_E* code with err filled in, and
 * err->retry decides what happens:
 *   SL_RETRY_NO        the job is dead at once (a permanent failure);
 *   SL_RETRY_BACKOFF   failed attempt: retried with backoff until max_attempts;
 *   SL_RETRY_AFTER     back to the queue after err->retry_after_ms, no attempt spent;
 *   SL_RETRY_REAUTH    as SL_RETRY_AFTER, for jobs waiting on a person.
 * A handler that runs longer than a moment calls sl_job_tick() (or
 * sl_job_wait()) regularly and returns at once when it fails.
 */
typedef int (*sl_handler_fn)(struct sl_jobctx *ctx, const struct sl_job *job,
                             json_object **result, struct sl_err *err);

/*
 * Keeps a long job alive: heartbeats the lease when due and gives the rest of
 * the worker's batch back to the queue.  Returns 0 to go on, or:
 *   SL_ETIMEOUT    the job ran past its kind's timeout;
 *   SL_ECANCELLED  the job was cancelled, its lease was lost, or the worker
 *                  is shutting down and the grace period is over.
 * Cheap when nothing is due: call it as often as convenient.
 */
int sl_job_tick(struct sl_jobctx *ctx, struct sl_err *err)
	__attribute__((warn_unused_result));

/* Waits ms milliseconds while ticking.  Same returns as sl_job_tick(). */
int sl_job_wait(struct sl_jobctx *ctx, long long ms, struct sl_err *err)
	__attribute__((warn_unused_result));

/* Milliseconds until the job's timeout (negative once past it). */
long long sl_job_time_left(const struct sl_jobctx *ctx);

/* The log context of the job (job id, kind, org), for sl_jlog(). */
const struct sl_log_ctx *sl_job_log_ctx(const struct sl_jobctx *ctx);

/*
 * The worker's database session, for a handler's own queries.  It is idle
 * when the handler starts and the handler must leave it idle: every
 * transaction it opens is committed or rolled back before it returns or
 * calls sl_job_tick().
 */
struct sl_db *sl_job_db(struct sl_jobctx *ctx);

/*
 * Fills env for the credential calls of adapters/credential.h: the worker's
 * session and keyring, actor "worker:<id>", this job's id.  Without a master
 * key: an error with SL_RETRY_BACKOFF (the job waits for one).
 */
int sl_job_cred_env(struct sl_jobctx *ctx, struct sl_cred_env *env, struct sl_err *err)
	__attribute__((warn_unused_result));

#endif
