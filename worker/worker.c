/* worker.c — the sluice-worker loop: claim a batch, run it, settle it, sleep on LISTEN. */

/*
 * DESIGN
 *
 * 1. One process, one database session, one thread.  All queue state is in
 *    PostgreSQL (schema/0002_queue.sql explains the protocol); this loop only
 *    calls its functions.  Scaling is starting more processes.
 *
 * 2. The busy loop is one round trip per batch: the outcomes of the batch
 *    just run (sluice.settle_jobs) and the claim of the next one
 *    (sluice.claim_jobs) go out together in a libpq pipeline and commit as
 *    one transaction.  A batch whose jobs take a while does not sit on its
 *    outcomes: they are flushed when the oldest has waited flush_ms.
 *
 * 3. A claimed batch belongs to this worker, so slow jobs must not hold
 *    the rest hostage: once the batch has been held release_after_ms, the
 *    jobs not yet started are given back (outcome "release", no attempt
 *    spent, their place in line kept) for other workers to take.
 *
 * 4. Leases.  Every held job has a lease; heartbeats (from sl_job_tick()
 *    inside long jobs, and between jobs) extend it every third of the lease.
 *    A heartbeat that no longer lists a job means it was cancelled or taken
 *    over; the handler is told to stop.  A settle refused because the token
 *    is stale is logged and otherwise ignored: the job is someone else's.
 *
 * 5. Idle.  When a claim comes back empty the worker calls
 *    sluice.worker_idle(), which reaps expired leases, records when the
 *    worker will wake by itself and says whether it may sleep (the wake-up
 *    protocol, DESIGN 6 of 0002_queue.sql).  It then claims once more and,
 *    if that is empty too, waits on the database socket and the signal pipe
 *    until a NOTIFY, a signal, or the wake-up time.  It never sleeps in a
 *    loop; without LISTEN (behind a transaction pooler) the wake-up time is
 *    at most poll_interval_ms away.
 *
 * 6. Failure.  A lost connection is replaced with backoff; outcomes not yet
 *    written are kept and written after reconnecting (a stale token is then
 *    refused, never applied twice).  SIGTERM stops claiming, lets the running
 *    job finish within shutdown_grace_ms (then tells it to stop and releases
 *    it), gives back unstarted jobs and exits 0.  A handler that ignores its
 *    timeout by more than watchdog_grace_ms is killed with the process: its
 *    lease then expires and the job is retried elsewhere.
 */

#include "worker/worker.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/crypto.h"
#include "common/db.h"
#include "common/json.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/str.h"
#include "worker/handlers.h"
#include "worker/job.h"

#define MAX_BATCH 1000

/* A claimed job, from the claim until it is settled. */
struct held {
	long long id;
	long long org_id;
	char      kind[65];
	char      connector[37];     /* "" when none */
	char      token[37];
	char     *payload;           /* JSON text, owned */
	int       priority;
	int       attempts;
	int       max_attempts;
	long long timeout_ms;
	int       lost;              /* a heartbeat found it cancelled or taken over */
};

/* A settle not yet written. */
struct outcome {
	long long   id;
	char        token[37];
	const char *what;            /* done, fail, retry_later, release, cancel */
	char       *detail;          /* JSON text, owned; NULL means null */
};

struct sl_jobctx {
	struct sl_worker  *w;
	struct held       *h;
	long long          started_ms;
	long long          deadline_ms;
	struct sl_log_ctx  log;
};

struct sl_worker {
	const struct sl_worker_conf    *conf;
	const struct sl_worker_signals *sig;
	struct sl_db   *db;
	struct sl_keyring *keyring;        /* NULL when no master key is configured */
	char            id[128];
	char            actor[136];        /* "worker:<id>", for audit rows */
	char            host[64];

	struct held     batch[MAX_BATCH];
	size_t          n_batch;           /* claimed */
	size_t          next;              /* batch[next..n_batch) not started */
	long long       lease_ms;
	long long       claimed_ms;        /* when the batch was claimed */

	struct outcome  out[2 * MAX_BATCH];
	size_t          n_out;
	long long       first_out_ms;      /* when out[0] was recorded */

	double          mean_job_ms;       /* moving mean of job durations, for the batch size */
	struct sl_jobctx *cur;             /* the running job, if any */
	long long       next_heartbeat_ms;
	long long       next_reap_ms;
	long long       next_housekeeping_ms;
	long long       stop_deadline_ms;  /* 0 until SIGTERM */
	long long       reconnect_delay_ms;
};

static volatile sig_atomic_t watchdog_armed;

static void
clear_outcomes(struct sl_worker *w)
{
	size_t i;

	for (i = 0; i < w->n_out; i++)
		sl_free(w->out[i].detail);
	w->n_out = 0;
}

static void
drop_batch(struct sl_worker *w)
{
	size_t i;

	for (i = 0; i < w->n_batch; i++)
		sl_free(w->batch[i].payload);
	w->n_batch = w->next = 0;
}

static int
stopping(const struct sl_worker *w)
{
	return *w->sig->stop != 0;
}

/* Queues an outcome for the next write.  detail is taken over. */
static void
add_outcome(struct sl_worker *w, const struct held *h, const char *what, char *detail)
{
	struct outcome *o;

	if (w->n_out == sizeof(w->out) / sizeof(w->out[0])) {
		/* Cannot happen: a batch yields one outcome per job.  Better a lease expiry than a crash. */
		sl_log_error("outcome buffer full; dropping an outcome", SLF_I("job_id", h->id), SLF_END);
		sl_free(detail);
		return;
	}
	if (w->n_out == 0)
		w->first_out_ms = sl_mono_ms();
	o = &w->out[w->n_out++];
	o->id = h->id;
	memcpy(o->token, h->token, sizeof(o->token));
	o->what = what;
	o->detail = detail;
}

/* {"error": msg, ...} as a heap string; NULL when out of memory. */
static char *
error_detail(const struct sl_err *err, int permanent)
{
	json_object *o = json_object_new_object();
	struct sl_buf msg;
	char *text = NULL;

	sl_buf_init(&msg, 2048);
	if (!o)
		return NULL;
	if (sl_buf_adds(&msg, err->msg[0] ? err->msg : sl_code_name(err->code)) == 0 &&
	    (!err->detail[0] || sl_buf_addf(&msg, " — %s", err->detail) == 0)) {
		json_object_object_add(o, "error", json_object_new_string(msg.data));
		json_object_object_add(o, "permanent", json_object_new_boolean(permanent));
		if (err->retry == SL_RETRY_AFTER || err->retry == SL_RETRY_REAUTH) {
			json_object_object_add(o, "delay_ms", json_object_new_int64(err->retry_after_ms));
			json_object_object_add(o, "reason", json_object_new_string(msg.data));
		}
		text = sl_strdup(sl_json_text(o));
	}
	sl_buf_release(&msg);
	json_object_put(o);
	return text;
}

/* ---- round trips ------------------------------------------------------ */

static const char settle_sql[] =
	"SELECT job_id, accepted, state FROM sluice.settle_jobs($1::bigint[], $2::uuid[],"
	" $3::text[], ARRAY(SELECT nullif(e, 'null') FROM jsonb_array_elements($4::jsonb)"
	" WITH ORDINALITY AS t(e, o) ORDER BY o))";

static const char claim_sql[] =
	"SELECT c.id, c.org_id, c.connector_id, c.kind, c.payload, c.priority, c.attempts,"
	" c.max_attempts, c.claim_token, c.timeout_ms,"
	" (extract(epoch FROM c.locked_until - clock_timestamp()) * 1000)::bigint AS lease_left_ms"
	" FROM sluice.claim_jobs($1, $2) c";

/* Builds the four array parameters of settle_sql from the outcome buffer. */
static int
build_settle_params(struct sl_worker *w, struct sl_buf p[4])
{
	size_t i;
	int rc = 0;

	for (i = 0; i < 4; i++) {
		sl_buf_init(&p[i], 64u << 20);
		rc = rc ? rc : sl_buf_adds(&p[i], i == 3 ? "[" : "{");
	}
	for (i = 0; i < w->n_out && !rc; i++) {
		const struct outcome *o = &w->out[i];
		const char *sep = i ? "," : "";

		rc = sl_buf_addf(&p[0], "%s%lld", sep, o->id);
		rc = rc ? rc : sl_buf_addf(&p[1], "%s%s", sep, o->token);
		rc = rc ? rc : sl_buf_addf(&p[2], "%s%s", sep, o->what);
		rc = rc ? rc : sl_buf_addf(&p[3], "%s%s", sep, o->detail ? o->detail : "null");
	}
	for (i = 0; i < 4 && !rc; i++)
		rc = sl_buf_adds(&p[i], i == 3 ? "]" : "}");
	return rc;
}

static void
check_settled(struct sl_worker *w, PGresult *res)
{
	int row;

	for (row = 0; row < PQntuples(res); row++) {
		const char *accepted = sl_pg_get(res, row, "accepted");
		const char *state = sl_pg_get(res, row, "state");

		if (accepted && !strcmp(accepted, "t"))
			continue;
		/* The token is stale: the lease ran out and another worker took the
		 * job, or it was cancelled.  The write must not land, and did not. */
		sl_log_warn("settle refused: the job is no longer held by this worker",
		            SLF_S("job_id", sl_pg_get(res, row, "job_id")),
		            SLF_S("state_now", state ? state : "unknown"),
		            SLF_S("worker", w->id), SLF_END);
	}
}

/* Reads one claimed row into h.  Returns 0, or SL_EINTERNAL on a malformed row. */
static int
parse_claimed(PGresult *res, int row, struct held *h, long long *lease_left)
{
	const char *kind = sl_pg_get(res, row, "kind");
	const char *conn = sl_pg_get(res, row, "connector_id");
	const char *token = sl_pg_get(res, row, "claim_token");
	const char *payload = sl_pg_get(res, row, "payload");
	long long n;

	memset(h, 0, sizeof(*h));
	if (!kind || !token || !payload || strlen(kind) >= sizeof(h->kind) ||
	    strlen(token) >= sizeof(h->token) || (conn && strlen(conn) >= sizeof(h->connector)))
		return SL_EINTERNAL;
	if (sl_parse_ll(sl_pg_get(res, row, "id"), 1, LLONG_MAX, &h->id) ||
	    sl_parse_ll(sl_pg_get(res, row, "org_id"), 1, LLONG_MAX, &h->org_id) ||
	    sl_parse_ll(sl_pg_get(res, row, "timeout_ms"), 1, LLONG_MAX, &h->timeout_ms) ||
	    sl_parse_ll(sl_pg_get(res, row, "lease_left_ms"), LLONG_MIN, LLONG_MAX, lease_left))
		return SL_EINTERNAL;
	if (sl_parse_ll(sl_pg_get(res, row, "priority"), 1, 5, &n))
		return SL_EINTERNAL;
	h->priority = (int)n;
	if (sl_parse_ll(sl_pg_get(res, row, "attempts"), 0, 100000, &n))
		return SL_EINTERNAL;
	h->attempts = (int)n;
	if (sl_parse_ll(sl_pg_get(res, row, "max_attempts"), 1, 100000, &n))
		return SL_EINTERNAL;
	h->max_attempts = (int)n;
	sl_strlcpy(h->kind, kind, sizeof(h->kind));
	sl_strlcpy(h->token, token, sizeof(h->token));
	sl_strlcpy(h->connector, conn ? conn : "", sizeof(h->connector));
	h->payload = sl_strdup(payload);
	return h->payload ? 0 : SL_ENOMEM;
}

static void
take_claimed(struct sl_worker *w, PGresult *res)
{
	int row;

	drop_batch(w);
	w->lease_ms = LLONG_MAX;
	for (row = 0; row < PQntuples(res) && w->n_batch < MAX_BATCH; row++) {
		struct held *h = &w->batch[w->n_batch];
		long long lease_left = 0;

		if (parse_claimed(res, row, h, &lease_left)) {
			sl_log_error("claimed row is malformed; leaving it to expire",
			             SLF_S("job_id", sl_pg_get(res, row, "id")), SLF_END);
			sl_free(h->payload);
			continue;
		}
		w->n_batch++;
		if (lease_left < w->lease_ms)
			w->lease_ms = lease_left;
	}
	/* Heartbeat three times per lease (the lease is an operator's setting). */
	if (w->lease_ms < 300 || w->lease_ms == LLONG_MAX)
		w->lease_ms = w->lease_ms == LLONG_MAX ? 30000 : 300;
	if (w->n_batch) {
		w->claimed_ms = sl_mono_ms();
		w->next_heartbeat_ms = w->claimed_ms + w->lease_ms / 3;
	}
}

/*
 * How many jobs to claim: about what runs in batch_time_ms at the recent mean
 * job duration, within [1, batch].  Fast jobs come a thousand to a round
 * trip; slow ones one at a time, so that they are not held from other workers.
 */
static long long
batch_size(const struct sl_worker *w)
{
	double n;

	if (w->mean_job_ms <= 0)
		return w->conf->batch;
	n = (double)w->conf->batch_time_ms / w->mean_job_ms;
	if (n >= (double)w->conf->batch)
		return w->conf->batch;
	return n < 1 ? 1 : (long long)n;
}

/*
 * Writes the pending outcomes and, if want_claim, claims the next batch —
 * one round trip, one transaction.  *claimed is the number of jobs claimed.
 */
static int
settle_and_claim(struct sl_worker *w, int want_claim, size_t *claimed, struct sl_err *err)
{
	struct sl_buf p[4];
	char limit[32];
	const char *settle_params[4];
	const char *claim_params[2] = { w->id, limit };
	struct sl_stmt st[2];
	PGresult *res[2] = { NULL, NULL };
	int n = 0, settle_at = -1, claim_at = -1, rc, i;

	*claimed = 0;
	if (w->n_out == 0 && !want_claim)
		return 0;
	memset(p, 0, sizeof(p));
	if (w->n_out) {
		rc = build_settle_params(w, p);
		if (rc) {
			sl_err_set(err, rc, SL_RETRY_BACKOFF, "cannot build the settle statement");
			goto out;
		}
		for (i = 0; i < 4; i++)
			settle_params[i] = p[i].data;
		st[n] = (struct sl_stmt){ settle_sql, 4, settle_params };
		settle_at = n++;
	}
	if (want_claim) {
		snprintf(limit, sizeof(limit), "%lld", batch_size(w));
		st[n] = (struct sl_stmt){ claim_sql, 2, claim_params };
		claim_at = n++;
	}
	rc = sl_db_pipeline(w->db, st, n, res, err);
	if (rc == SL_EDB && settle_at >= 0) {
		/* A statement error is not going to mend itself by retrying the same
		 * outcomes; drop them (their leases will expire and the jobs rerun). */
		sl_log_error("cannot write job outcomes; leaving the jobs to expire",
		             SLF_S("error", err->msg), SLF_S("sqlstate", err->sqlstate), SLF_END);
		clear_outcomes(w);
	}
	if (rc)
		goto out;
	if (settle_at >= 0) {
		check_settled(w, res[settle_at]);
		clear_outcomes(w);
	}
	if (claim_at >= 0) {
		take_claimed(w, res[claim_at]);
		*claimed = w->n_batch;
	}
out:
	for (i = 0; i < 4; i++) {
		if (p[i].data)
			sl_buf_release(&p[i]);
	}
	PQclear(res[0]);
	PQclear(res[1]);
	return rc;
}

static int
flush(struct sl_worker *w, struct sl_err *err)
{
	size_t unused;

	return settle_and_claim(w, 0, &unused, err);
}

/* Gives back the jobs of the batch that have not started. */
static int
release_unstarted(struct sl_worker *w, struct sl_err *err)
{
	size_t i;

	if (w->next >= w->n_batch)
		return 0;
	for (i = w->next; i < w->n_batch; i++)
		add_outcome(w, &w->batch[i], "release", NULL);
	sl_log_debug("released unstarted jobs", SLF_I("count", w->n_batch - w->next), SLF_END);
	for (i = w->next; i < w->n_batch; i++) {
		sl_free(w->batch[i].payload);
		w->batch[i].payload = NULL;
	}
	w->n_batch = w->next;
	return flush(w, err);
}

/*
 * Extends the leases of every job this worker holds (the running one and the
 * unstarted rest of the batch) and marks the ones it no longer holds.
 */
static int
heartbeat(struct sl_worker *w, struct sl_err *err)
{
	struct sl_buf ids, tokens;
	const char *params[3];
	PGresult *res = NULL;
	size_t i, first;
	int rc, row;

	rc = flush(w, err);
	if (rc)
		return rc;
	sl_buf_init(&ids, 1u << 20);
	sl_buf_init(&tokens, 1u << 20);
	rc = sl_buf_adds(&ids, "{");
	rc = rc ? rc : sl_buf_adds(&tokens, "{");
	first = w->cur ? w->next - 1 : w->next;
	for (i = first; i < w->n_batch && !rc; i++) {
		rc = sl_buf_addf(&ids, "%s%lld", i > first ? "," : "", w->batch[i].id);
		rc = rc ? rc : sl_buf_addf(&tokens, "%s%s", i > first ? "," : "", w->batch[i].token);
	}
	rc = rc ? rc : sl_buf_adds(&ids, "}");
	rc = rc ? rc : sl_buf_adds(&tokens, "}");
	if (rc) {
		sl_err_set(err, rc, SL_RETRY_BACKOFF, "cannot build the heartbeat");
		goto out;
	}
	params[0] = w->id;
	params[1] = ids.data;
	params[2] = tokens.data;
	rc = sl_db_query(w->db, &res,
	                 "SELECT job_id FROM sluice.heartbeat($1, $2::bigint[], $3::uuid[])",
	                 3, params, err);
	if (rc)
		goto out;
	for (i = first; i < w->n_batch; i++) {
		int found = 0;

		for (row = 0; row < PQntuples(res) && !found; row++) {
			long long id;

			found = !sl_parse_ll(sl_pg_get(res, row, "job_id"), 1, LLONG_MAX, &id) &&
			        id == w->batch[i].id;
		}
		if (!found && !w->batch[i].lost) {
			w->batch[i].lost = 1;
			sl_log_warn("job no longer held: cancelled or claimed by another worker",
			            SLF_I("job_id", w->batch[i].id), SLF_S("kind", w->batch[i].kind),
			            SLF_END);
		}
	}
	w->next_heartbeat_ms = sl_mono_ms() + w->lease_ms / 3;
out:
	PQclear(res);
	sl_buf_release(&ids);
	sl_buf_release(&tokens);
	return rc;
}

static int reap(struct sl_worker *w, struct sl_err *err);

/* ---- the job context (job.h) ------------------------------------------ */

int
sl_job_tick(struct sl_jobctx *ctx, struct sl_err *err)
{
	struct sl_worker *w = ctx->w;
	long long now = sl_mono_ms();
	struct sl_err hb_err;

	if (now >= ctx->deadline_ms)
		return sl_err_set(err, SL_ETIMEOUT, SL_RETRY_BACKOFF,
		                  "job timed out after %lld ms", now - ctx->started_ms);
	if (stopping(w) && !w->stop_deadline_ms)
		w->stop_deadline_ms = now + w->conf->shutdown_grace_ms;
	if (stopping(w) && now >= w->stop_deadline_ms)
		return sl_err_set(err, SL_ECANCELLED, SL_RETRY_AFTER,
		                  "worker is shutting down");
	if (!sl_db_ok(w->db))
		return 0;   /* keep working; the main loop reconnects and settles later */
	if (w->next < w->n_batch && now - w->claimed_ms >= w->conf->release_after_ms) {
		if (release_unstarted(w, &hb_err))
			sl_log_warn("cannot release unstarted jobs", SLF_S("error", hb_err.msg), SLF_END);
	}
	if (now >= w->next_heartbeat_ms) {
		if (heartbeat(w, &hb_err)) {
			sl_log_warn("heartbeat failed", SLF_S("error", hb_err.msg), SLF_END);
			w->next_heartbeat_ms = now + 1000;
		}
	}
	/* While every worker is inside a long job, someone must still notice a
	 * lost one's expired leases. */
	if (now >= w->next_reap_ms && reap(w, &hb_err))
		sl_log_warn("looking for expired leases failed", SLF_S("error", hb_err.msg), SLF_END);
	if (ctx->h->lost)
		return sl_err_set(err, SL_ECANCELLED, SL_RETRY_NO,
		                  "job was cancelled or claimed by another worker");
	return 0;
}

/* Reads whatever the signal handlers wrote, so the pipe stays quiet. */
static void
drain_signal_pipe(int fd)
{
	char buf[64];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

int
sl_job_wait(struct sl_jobctx *ctx, long long ms, struct sl_err *err)
{
	long long end = sl_mono_ms() + ms;
	int rc;

	for (;;) {
		long long now = sl_mono_ms(), slice;
		struct pollfd pfd = { .fd = ctx->w->sig->fd, .events = POLLIN };

		rc = sl_job_tick(ctx, err);
		if (rc || now >= end)
			return rc;
		slice = end - now;
		if (ctx->deadline_ms - now < slice)
			slice = ctx->deadline_ms - now;
		if (ctx->w->next_heartbeat_ms - now < slice)
			slice = ctx->w->next_heartbeat_ms - now;
		if (ctx->w->next_reap_ms - now < slice)
			slice = ctx->w->next_reap_ms - now;
		if (ctx->w->next < ctx->w->n_batch && slice > ctx->w->conf->release_after_ms)
			slice = ctx->w->conf->release_after_ms;
		if (stopping(ctx->w) && ctx->w->stop_deadline_ms &&
		    ctx->w->stop_deadline_ms - now < slice)
			slice = ctx->w->stop_deadline_ms - now;
		if (slice < 1)
			slice = 1;
		if (poll(&pfd, 1, (int)(slice > 60000 ? 60000 : slice)) > 0)
			drain_signal_pipe(ctx->w->sig->fd);
	}
}

long long
sl_job_time_left(const struct sl_jobctx *ctx)
{
	return ctx->deadline_ms - sl_mono_ms();
}

const struct sl_log_ctx *
sl_job_log_ctx(const struct sl_jobctx *ctx)
{
	return &ctx->log;
}

struct sl_db *
sl_job_db(struct sl_jobctx *ctx)
{
	return ctx->w->db;
}

int
sl_job_cred_env(struct sl_jobctx *ctx, struct sl_cred_env *env, struct sl_err *err)
{
	memset(env, 0, sizeof(*env));
	if (!ctx->w->keyring)
		return sl_err_set(err, SL_EINTERNAL, SL_RETRY_BACKOFF,
		                  "secrets are not configured on this worker (SLUICE_MASTER_KEY)");
	env->db = ctx->w->db;
	env->kr = ctx->w->keyring;
	env->actor = ctx->w->actor;
	env->job_id = ctx->h->id;
	env->ca_file = ctx->w->conf->ca_file;
	env->timeout_ms = ctx->w->conf->http_timeout_ms;
	return 0;
}

/* ---- running one job -------------------------------------------------- */

static void
watchdog_fired(int signo)
{
	static const char msg[] =
		"{\"level\":\"error\",\"prog\":\"sluice-worker\",\"msg\":\"job ignored its "
		"timeout; exiting so that its lease expires and it is retried elsewhere\"}\n";

	(void)signo;
	if (watchdog_armed) {
		(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
		_exit(70);
	}
}

static void
arm_watchdog(long long ms)
{
	long long secs = (ms + 999) / 1000;

	watchdog_armed = 1;
	alarm((unsigned)(secs > 86400 ? 86400 : secs < 1 ? 1 : secs));
}

static void
disarm_watchdog(void)
{
	alarm(0);
	watchdog_armed = 0;
}

/*
 * A provider said "slow down": the job's rate-limit bucket, if it has one,
 * is blocked for every worker until the time given (DESIGN 4 of
 * schema/0006_rate_limits.sql).  A failure here is logged: the job is
 * postponed either way.
 */
static void
rate_limit_hit(struct sl_worker *w, const struct held *h, const struct sl_err *e)
{
	char id[24], ms[24];
	const char *params[] = { id, ms, e->msg };
	struct sl_err err;

	snprintf(id, sizeof(id), "%lld", h->id);
	snprintf(ms, sizeof(ms), "%ld", e->retry_after_ms > 0 ? e->retry_after_ms : 1000);
	if (sl_db_exec(w->db, "SELECT sluice.rate_limit_hit($1::bigint, clock_timestamp()"
	               " + make_interval(secs => $2::bigint / 1000.0), $3)", 3, params, &err))
		sl_log_warn("cannot block the rate-limit bucket", SLF_I("job", h->id),
		            SLF_S("error", err.msg), SLF_END);
}

/*
 * Gives back the unstarted jobs of the batch that belong to connector, whose
 * circuit has just opened: on their way back they are held with the rest of
 * the connector's jobs (DESIGN 2 of schema/0007_circuits.sql) instead of
 * being sent to a system that is failing.  The running job (before next) is
 * not moved.
 */
static void
give_back_connector(struct sl_worker *w, const char *connector)
{
	size_t i, kept = w->next, given = 0;

	for (i = w->next; i < w->n_batch; i++) {
		struct held *b = &w->batch[i];

		if (strcmp(b->connector, connector)) {
			if (kept != i)
				w->batch[kept] = *b;
			kept++;
			continue;
		}
		add_outcome(w, b, "release", NULL);
		sl_free(b->payload);
		b->payload = NULL;
		given++;
	}
	w->n_batch = kept;
	if (given)
		sl_log_info("circuit open: gave back the connector's unstarted jobs",
		            SLF_S("connector", connector), SLF_I("count", (long long)given), SLF_END);
}

/*
 * Tells the connector's circuit breaker how its outside system did (DESIGN 1
 * and 3 of schema/0007_circuits.sql): a success, or a transient failure
 * (5xx, a timeout, a connection error).  Other errors say nothing about the
 * system's health and are not recorded.  When the circuit is open after it,
 * the batch's other jobs for the connector go back.  A failure here is
 * logged: the job's outcome stands either way.
 */
static void
circuit_record(struct sl_worker *w, const struct held *h, int rc, const struct sl_err *e)
{
	char id[24];
	const char *params[] = { h->connector, id, rc == 0 ? "t" : "f" };
	struct sl_err err;
	PGresult *res = NULL;
	const char *state;

	if (!h->connector[0] || (rc != 0 && !((e->code == SL_EHTTP || e->code == SL_ETIMEOUT)
	                                      && e->retry == SL_RETRY_BACKOFF)))
		return;
	snprintf(id, sizeof(id), "%lld", h->id);
	if (sl_db_query(w->db, &res, "SELECT sluice.circuit_record($1::uuid, $2::bigint,"
	                " $3::boolean) AS state", 3, params, &err)) {
		sl_log_warn("cannot record the outcome in the circuit breaker", SLF_I("job", h->id),
		            SLF_S("error", err.msg), SLF_END);
		return;
	}
	state = sl_pg_get(res, 0, "state");
	if (state && !strcmp(state, "open"))
		give_back_connector(w, h->connector);
	PQclear(res);
}

static void
run_job(struct sl_worker *w, struct held *h)
{
	const struct sl_handler *handler = sl_handler_find(h->kind);
	json_object *payload = NULL, *result = NULL;
	struct sl_jobctx ctx;
	struct sl_job job;
	struct sl_err err;
	long long duration;
	int rc;

	sl_err_clear(&err);
	memset(&ctx, 0, sizeof(ctx));
	ctx.w = w;
	ctx.h = h;
	ctx.started_ms = sl_mono_ms();
	ctx.deadline_ms = ctx.started_ms + h->timeout_ms;
	ctx.log = (struct sl_log_ctx){ .job_id = h->id, .kind = h->kind, .org_id = h->org_id,
	                               .connector_id = h->connector[0] ? h->connector : NULL };

	if (!handler) {
		rc = sl_err_set(&err, SL_EINVAL, SL_RETRY_NO,
		                "no handler for kind %s in this worker", h->kind);
	} else if ((rc = sl_json_parse(h->payload, strlen(h->payload), &payload, &err)) != 0) {
		err.retry = SL_RETRY_NO;
	} else {
		job = (struct sl_job){
			.id = h->id, .org_id = h->org_id,
			.connector_id = h->connector[0] ? h->connector : NULL,
			.kind = h->kind, .payload = payload, .priority = h->priority,
			.attempts = h->attempts, .max_attempts = h->max_attempts,
			.timeout_ms = h->timeout_ms,
		};
		w->cur = &ctx;
		arm_watchdog(h->timeout_ms + w->conf->watchdog_grace_ms);
		rc = handler->run(&ctx, &job, &result, &err);
		disarm_watchdog();
		w->cur = NULL;
	}
	duration = sl_mono_ms() - ctx.started_ms;
	/* Exponential moving mean; sub-millisecond jobs count as a tenth of one. */
	w->mean_job_ms = w->mean_job_ms <= 0 ? (double)duration
	               : 0.8 * w->mean_job_ms + 0.2 * (duration ? (double)duration : 0.1);

	if (rc != SL_ECANCELLED)
		circuit_record(w, h, rc, &err);
	if (rc == 0) {
		char *text = result ? sl_strdup(sl_json_text(result)) : NULL;

		add_outcome(w, h, "done", text);
		sl_jlog(SL_LOG_INFO, &ctx.log, "job done", SLF_I("duration_ms", duration),
		        SLF_I("attempt", h->attempts), SLF_END);
	} else if (rc == SL_ECANCELLED && h->lost) {
		/* Not ours any more: nothing to write. */
		sl_jlog(SL_LOG_WARN, &ctx.log, "job abandoned", SLF_S("reason", err.msg),
		        SLF_I("duration_ms", duration), SLF_END);
	} else if (rc == SL_ECANCELLED) {
		add_outcome(w, h, "release", NULL);
		sl_jlog(SL_LOG_WARN, &ctx.log, "job released", SLF_S("reason", err.msg),
		        SLF_I("duration_ms", duration), SLF_END);
	} else if (err.retry == SL_RETRY_AFTER || err.retry == SL_RETRY_REAUTH) {
		if (err.code == SL_ERATELIMIT)
			rate_limit_hit(w, h, &err);
		add_outcome(w, h, "retry_later", error_detail(&err, 0));
		sl_jlog(SL_LOG_INFO, &ctx.log, "job postponed", SLF_S("reason", err.msg),
		        SLF_I("delay_ms", err.retry_after_ms), SLF_I("duration_ms", duration), SLF_END);
	} else {
		int permanent = err.retry == SL_RETRY_NO;
		int last = permanent || h->attempts >= h->max_attempts;

		add_outcome(w, h, "fail", error_detail(&err, permanent));
		sl_jlog(last ? SL_LOG_ERROR : SL_LOG_WARN, &ctx.log,
		        last ? "job failed for good" : "job failed; will retry",
		        SLF_S("error", err.msg), SLF_S("code", sl_code_name(err.code)),
		        SLF_I("attempt", h->attempts), SLF_I("max_attempts", h->max_attempts),
		        SLF_I("duration_ms", duration), SLF_END);
	}
	json_object_put(result);
	json_object_put(payload);
}

/* ---- session, idle, housekeeping -------------------------------------- */

static int
start_session(struct sl_worker *w, struct sl_err *err)
{
	char pid[16];
	const char *params[4] = { w->id, w->host, pid, SLUICE_VERSION };
	int rc;

	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	rc = sl_db_exec(w->db, "SELECT sluice.worker_register($1, $2, $3::integer, $4)",
	                4, params, err);
	if (!rc && w->conf->listen)
		rc = sl_db_listen(w->db, "sluice_jobs", err);
	return rc;
}

/* Replaces a broken session.  Returns 0 once connected again. */
static int
reconnect(struct sl_worker *w)
{
	struct sl_err err;
	int rc;

	sl_err_clear(&err);
	rc = sl_db_reset(w->db, &err);
	if (!rc)
		rc = start_session(w, &err);
	if (rc) {
		sl_log_warn("database unavailable; retrying", SLF_S("error", err.msg),
		            SLF_S("detail", err.detail), SLF_I("retry_in_ms", w->reconnect_delay_ms),
		            SLF_END);
		return rc;
	}
	sl_log_info("reconnected to the database", SLF_S("worker", w->id), SLF_END);
	w->reconnect_delay_ms = 0;
	return 0;
}

/* Waits for a signal only (no database), up to ms. */
static void
wait_signal(struct sl_worker *w, long long ms)
{
	struct pollfd pfd = { .fd = w->sig->fd, .events = POLLIN };

	if (poll(&pfd, 1, (int)(ms > 60000 ? 60000 : ms < 0 ? 0 : ms)) > 0)
		drain_signal_pipe(w->sig->fd);
}

static void
housekeeping(struct sl_worker *w)
{
	struct sl_err err;
	PGresult *res = NULL;
	long long pruned = 0, n = 0;
	int round;

	for (round = 0; round < 20 && !stopping(w); round++) {
		if (sl_db_query(w->db, &res, "SELECT sluice.prune_finished() AS n, "
		                "sluice.setting_int('prune_batch') AS batch", 0, NULL, &err)) {
			sl_log_warn("pruning failed", SLF_S("error", err.msg), SLF_END);
			break;
		}
		if (sl_parse_ll(sl_pg_get(res, 0, "n"), 0, LLONG_MAX, &n))
			n = 0;
		pruned += n;
		{
			long long batch = 0;
			int more = !sl_parse_ll(sl_pg_get(res, 0, "batch"), 1, LLONG_MAX, &batch) &&
			           n >= batch;

			PQclear(res);
			res = NULL;
			if (!more)
				break;
		}
	}
	if (pruned)
		sl_log_info("pruned finished jobs", SLF_I("count", pruned), SLF_END);
	if (sl_db_exec(w->db, "SELECT sluice.drop_empty_lanes(), sluice.rescan_all(),"
	               " sluice.forget_workers(), sluice.prune_oauth_states(), sluice.prune_rate_slots(),"
	               " sluice.prune_fetched_rows()", 0, NULL, &err))
		sl_log_warn("housekeeping failed", SLF_S("error", err.msg), SLF_END);
	w->next_housekeeping_ms = sl_mono_ms() + w->conf->housekeeping_ms;
}

static int
reap(struct sl_worker *w, struct sl_err *err)
{
	PGresult *res = NULL;
	long long n = 0;
	int rc;

	rc = sl_db_query(w->db, &res, "SELECT sluice.reap_expired_leases() AS n", 0, NULL, err);
	if (!rc && !sl_parse_ll(sl_pg_get(res, 0, "n"), 0, LLONG_MAX, &n) && n > 0)
		sl_log_warn("reclaimed jobs whose lease expired", SLF_I("count", n), SLF_END);
	PQclear(res);
	w->next_reap_ms = sl_mono_ms() + w->conf->reap_interval_ms;
	return rc;
}

/*
 * Nothing to claim: go to sleep (DESIGN 5).  Returns when there may be work,
 * a signal arrived, or it is time to look again.
 */
static int
idle(struct sl_worker *w, long long *backoff_ms, struct sl_err *err)
{
	char max_sleep[32];
	const char *params[2] = { w->id, max_sleep };
	PGresult *res = NULL;
	long long wait_ms, wake_in = 0;
	int may_sleep;
	size_t claimed;
	int notified, sig_ready, rc;

	snprintf(max_sleep, sizeof(max_sleep), "%lld milliseconds", w->conf->poll_interval_ms);
	rc = sl_db_query(w->db, &res,
	                 "SELECT may_sleep, (extract(epoch FROM wake_at - clock_timestamp())"
	                 " * 1000)::bigint AS wake_in_ms FROM sluice.worker_idle($1, $2::interval)",
	                 2, params, err);
	if (rc)
		return rc;
	may_sleep = sl_pg_get(res, 0, "may_sleep") && !strcmp(sl_pg_get(res, 0, "may_sleep"), "t");
	if (sl_parse_ll(sl_pg_get(res, 0, "wake_in_ms"), LLONG_MIN, LLONG_MAX, &wake_in))
		wake_in = w->conf->poll_interval_ms;
	PQclear(res);
	/* worker_idle() just reaped expired leases. */
	w->next_reap_ms = sl_mono_ms() + w->conf->reap_interval_ms;

	if (!may_sleep) {
		/* A producer is mid-transaction: look again very soon instead of sleeping. */
		wait_ms = *backoff_ms;
		*backoff_ms = *backoff_ms * 2 > 64 ? 64 : *backoff_ms * 2;
	} else {
		*backoff_ms = 1;
		/* The last look before sleeping (the worker's flag is now visible). */
		rc = settle_and_claim(w, 1, &claimed, err);
		if (rc || claimed)
			return rc;
		wait_ms = wake_in < 0 ? 0 : wake_in;
	}
	if (w->next_housekeeping_ms - sl_mono_ms() < wait_ms)
		wait_ms = w->next_housekeeping_ms - sl_mono_ms();
	if (wait_ms <= 0)
		return 0;
	if (w->conf->listen) {
		rc = sl_db_wait(w->db, (int)(wait_ms > 3600000 ? 3600000 : wait_ms), w->sig->fd,
		                &notified, &sig_ready, err);
		if (sig_ready)
			drain_signal_pipe(w->sig->fd);
		return rc;
	}
	wait_signal(w, wait_ms);
	return 0;
}

/* ---- the loop --------------------------------------------------------- */

static void
make_worker_id(struct sl_worker *w)
{
	char suffix[7];
	struct sl_err err;

	if (gethostname(w->host, sizeof(w->host)) != 0)
		sl_strlcpy(w->host, "unknown", sizeof(w->host));
	w->host[sizeof(w->host) - 1] = '\0';
	if (sl_random_token(suffix, 6, &err))
		sl_strlcpy(suffix, "000000", sizeof(suffix));
	snprintf(w->id, sizeof(w->id), "%s:%ld:%s", w->host, (long)getpid(), suffix);
}

/* Handles a database error in the loop: reconnect if the session broke. */
static void
db_trouble(struct sl_worker *w, const struct sl_err *err)
{
	if (sl_db_ok(w->db)) {
		sl_log_error("database error", SLF_S("error", err->msg),
		             SLF_S("sqlstate", err->sqlstate), SLF_END);
		wait_signal(w, 1000);
		return;
	}
	sl_log_warn("lost the database connection", SLF_S("error", err->msg), SLF_END);
	while (!stopping(w) || w->n_out) {
		w->reconnect_delay_ms = w->reconnect_delay_ms ? w->reconnect_delay_ms * 2 : 100;
		if (w->reconnect_delay_ms > 5000)
			w->reconnect_delay_ms = 5000;
		if (reconnect(w) == 0)
			return;
		if (stopping(w) && sl_mono_ms() >= w->stop_deadline_ms) {
			sl_log_error("giving up on unwritten job outcomes at shutdown; their leases "
			             "will expire and the jobs run again", SLF_I("count", w->n_out), SLF_END);
			clear_outcomes(w);
			return;
		}
		wait_signal(w, w->reconnect_delay_ms);
	}
}

static void
shutdown_worker(struct sl_worker *w)
{
	struct sl_err err;

	if (sl_db_ok(w->db)) {
		if (release_unstarted(w, &err) || flush(w, &err))
			sl_log_warn("could not write every outcome at shutdown", SLF_S("error", err.msg),
			            SLF_END);
		if (sl_db_exec(w->db, "SELECT sluice.worker_stop($1)", 1,
		               (const char *const[]){ w->id }, &err))
			sl_log_warn("could not mark the worker stopped", SLF_S("error", err.msg), SLF_END);
	}
	clear_outcomes(w);
	drop_batch(w);
}

int
sl_worker_run(const struct sl_worker_conf *conf, const struct sl_worker_signals *sig)
{
	struct sl_worker *w;
	struct sl_err err;
	long long backoff_ms = 1;
	size_t claimed;
	int rc;

	w = sl_calloc(1, sizeof(*w));
	if (!w)
		return SL_ENOMEM;
	w->conf = conf;
	w->sig = sig;
	w->lease_ms = 30000;
	make_worker_id(w);
	snprintf(w->actor, sizeof(w->actor), "worker:%s", w->id);
	signal(SIGALRM, watchdog_fired);
	if (sl_keyring_from_env(&w->keyring, &err))
		sl_log_warn("no master key: jobs that need a connector's credentials will wait",
		            SLF_S("reason", err.msg), SLF_END);

	rc = sl_db_open(&w->db, conf->database_url, "sluice-worker", &err);
	if (!rc)
		rc = start_session(w, &err);
	if (rc) {
		sl_log_error("cannot start", SLF_S("error", err.msg), SLF_S("detail", err.detail),
		             SLF_END);
		goto out;
	}
	sl_log_info("worker started", SLF_S("worker", w->id), SLF_I("batch", conf->batch),
	            SLF_B("listen", conf->listen), SLF_END);
	w->next_housekeeping_ms = sl_mono_ms() + conf->housekeeping_ms / 2;
	w->next_reap_ms = sl_mono_ms() + conf->reap_interval_ms;

	for (;;) {
		long long now = sl_mono_ms();

		sl_err_clear(&err);
		if (*sig->reload) {
			*sig->reload = 0;
			if (sig->reload_conf() == 0)
				sl_log_info("configuration reloaded", SLF_I("batch", conf->batch), SLF_END);
		}
		if (stopping(w) && !w->stop_deadline_ms)
			w->stop_deadline_ms = now + conf->shutdown_grace_ms;
		if (stopping(w) && w->next >= w->n_batch)
			break;

		if (w->next < w->n_batch) {
			/* Between jobs: keep leases and outcomes fresh, then run the next one. */
			if (stopping(w) || now - w->claimed_ms >= conf->release_after_ms) {
				/* Shutting down, or the batch is taking longer than it
				 * should: the jobs not started go back for other workers. */
				rc = release_unstarted(w, &err);
			} else if (now >= w->next_heartbeat_ms) {
				rc = heartbeat(w, &err);
			} else if (w->n_out && now - w->first_out_ms >= conf->flush_ms) {
				rc = flush(w, &err);
			} else {
				struct held *h = &w->batch[w->next++];

				if (!h->lost)
					run_job(w, h);
				rc = 0;
			}
		} else if (now >= w->next_housekeeping_ms) {
			housekeeping(w);
			rc = 0;
		} else if (now >= w->next_reap_ms) {
			rc = reap(w, &err);
		} else {
			rc = settle_and_claim(w, 1, &claimed, &err);
			if (!rc && !claimed)
				rc = idle(w, &backoff_ms, &err);
		}
		if (rc)
			db_trouble(w, &err);
	}
	shutdown_worker(w);
	sl_log_info("worker stopped", SLF_S("worker", w->id), SLF_END);
	rc = 0;
out:
	sl_keyring_free(w->keyring);
	sl_db_free(w->db);
	sl_free(w);
	return rc;
}
