/* test_circuits.c — circuit breakers: the SQL cycle step by step, and a real worker against a failing fake. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness.h"

static char url[256];
static PGconn *db;
static long long org;

static void
setup(void)
{
	t_db_create(url, sizeof(url));
	db = t_connect(url);
	org = t_org(db, "acme");
}

static void
teardown(void)
{
	PQfinish(db);
}

/* Enqueues n noop jobs of connector conn. */
static void
enqueue(const char *conn, int n)
{
	t_execf(db, "SELECT sluice.enqueue(%lld, 'noop', '{}', 3, NULL, NULL, NULL, '%s')"
	        " FROM generate_series(1, %d)", org, conn, n);
}

/* Records an outcome for the connector's circuit; returns 1 if the state afterwards is `state`. */
static int
record(const char *conn, long long job, int ok, const char *state)
{
	return (int)t_intf(db, "SELECT (sluice.circuit_record('%s', %lld, %s) = '%s')::int", conn, job,
	                   ok ? "true" : "false", state);
}

/* How many jobs of connector conn one claim_jobs(max) call hands out. */
static int
claim_of(const char *conn, int max)
{
	return (int)t_intf(db, "SELECT count(*) FILTER (WHERE connector_id = '%s')"
	                   " FROM sluice.claim_jobs('w', %d)", conn, max);
}

/* Claims up to max; returns the id of the one job of conn claimed (asserting exactly one). */
static long long
claim_one(const char *conn, int max)
{
	long long n, id;

	t_exec(db, "CREATE TEMP TABLE IF NOT EXISTS claimed (id bigint, connector_id uuid, token uuid)");
	t_exec(db, "TRUNCATE claimed");
	t_execf(db, "INSERT INTO claimed SELECT id, connector_id, claim_token"
	        " FROM sluice.claim_jobs('w', %d)", max);
	n = t_intf(db, "SELECT count(*) FROM claimed WHERE connector_id = '%s'", conn);
	ck_assert_int_eq(n, 1);
	id = t_intf(db, "SELECT id FROM claimed WHERE connector_id = '%s'", conn);
	return id;
}

/* Ends a running job: done, or failed (back to the queue with backoff). */
static void
settle(long long job, int ok)
{
	if (ok)
		t_execf(db, "SELECT sluice.complete_job(%lld, (SELECT claim_token FROM sluice.job"
		        " WHERE id = %lld))", job, job);
	else
		t_execf(db, "SELECT sluice.fail_job(%lld, (SELECT claim_token FROM sluice.job"
		        " WHERE id = %lld), 'HTTP 500')", job, job);
}

/* Time passes: the circuit's half_open_at is now. */
static void
reach_half_open(const char *conn)
{
	t_execf(db, "UPDATE sluice.circuit SET half_open_at = clock_timestamp(),"
	        " next_check_at = clock_timestamp() WHERE connector_id = '%s'", conn);
}

/* Jobs of conn waiting at the circuit's hold. */
static long long
held(const char *conn)
{
	return t_intf(db, "SELECT count(*) FROM sluice.job WHERE connector_id = '%s'"
	              " AND state <> 'running' AND (CASE WHEN rate_bucket IS NULL THEN run_at"
	              " ELSE gate_after END) = sluice.circuit_held_run_at()", conn);
}

/* Every provider has seed 001's thresholds. */
START_TEST(policy_seeded_for_every_provider)
{
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.provider"),
	                 t_int(db, "SELECT count(*) FROM sluice.circuit_policy WHERE failure_threshold = 5"
	                           " AND recovery_timeout = interval '30 seconds'"
	                           " AND success_threshold = 2"));
	ck_assert_int_ge(t_int(db, "SELECT count(*) FROM sluice.circuit_policy"), 10);
}
END_TEST

/* Closed → open → half-open → (failed trial) open → half-open → closed, step by step. */
START_TEST(full_cycle)
{
	char a[37], b[37], other[37];
	long long trial, trial2, trial3;

	t_connector(db, org, "ttd", NULL, a);
	t_connector(db, org, "ttd", NULL, b);
	t_connector(db, org, "meta", NULL, other);
	enqueue(a, 3);

	/* Successes reset the count. */
	ck_assert(record(a, 0, 0, "closed"));
	ck_assert(record(a, 0, 0, "closed"));
	ck_assert(record(a, 0, 0, "closed"));
	ck_assert(record(a, 0, 0, "closed"));
	ck_assert_int_eq(t_intf(db, "SELECT failures FROM sluice.circuits WHERE connector_id = '%s'", a), 4);
	ck_assert(record(a, 0, 1, "closed"));
	ck_assert_int_eq(t_intf(db, "SELECT failures FROM sluice.circuits WHERE connector_id = '%s'", a), 0);
	/* b's failures are b's. */
	ck_assert(record(b, 0, 0, "closed"));

	/* Five consecutive failures open it and hold its jobs. */
	ck_assert(record(a, 0, 0, "closed"));
	ck_assert(record(a, 0, 0, "closed"));
	ck_assert(record(a, 0, 0, "closed"));
	ck_assert(record(a, 0, 0, "closed"));
	ck_assert(record(a, 0, 0, "open"));
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.circuits WHERE connector_id = '%s'"
	                        " AND provider = 'ttd' AND state = 'open' AND failures = 5"
	                        " AND successes = 0 AND waiting = 3"
	                        " AND half_open_at = opened_at + interval '30 seconds'"
	                        " AND next_check_at = half_open_at AND trial_job IS NULL", a), 1);
	ck_assert_int_eq(held(a), 3);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.event e JOIN sluice.circuit c"
	                        " ON c.connector_id = e.connector_id WHERE e.type = 'circuit_opened'"
	                        " AND e.connector_id = '%s' AND e.org_id = %lld"
	                        " AND e.data ->> 'provider' = 'ttd' AND e.data ->> 'connector_id' = '%s'"
	                        " AND (e.data ->> 'failures')::int = 5"
	                        " AND (e.data ->> 'half_open_at')::timestamptz = c.half_open_at",
	                        a, org, a), 1);
	/* Workers wake for half_open_at. */
	ck_assert_int_eq(t_intf(db, "SELECT (sluice.next_wakeup() <= half_open_at)::int"
	                        " FROM sluice.circuit WHERE connector_id = '%s'", a), 1);

	/* Before half_open_at nothing of a is claimable, not even a job enqueued now. */
	enqueue(a, 1);
	ck_assert_int_eq(held(a), 4);
	ck_assert_int_eq(claim_of(a, 100), 0);
	ck_assert_int_eq(claim_of(a, 100), 0);
	/* Other connectors and providers are unaffected. */
	enqueue(b, 1);
	enqueue(other, 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.claim_jobs('w', 100)"
	                        " WHERE connector_id IN ('%s', '%s')", b, other), 2);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.circuits WHERE connector_id = '%s'"
	                        " AND state = 'closed' AND failures = 1", b), 1);

	/* Half-open: exactly one trial is claimable. */
	reach_half_open(a);
	trial = claim_one(a, 10);
	ck_assert_int_eq(claim_of(a, 100), 0);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.circuits WHERE connector_id = '%s'"
	                        " AND state = 'half_open' AND trial_job = %lld AND waiting = 3", a, trial), 1);
	/* An outcome of a job that is not the trial says nothing. */
	ck_assert(record(a, trial + 1000, 0, "half_open"));
	ck_assert(record(a, trial + 1000, 1, "half_open"));

	/* The trial fails: open again; the failed trial waits with the rest. */
	ck_assert(record(a, trial, 0, "open"));
	settle(trial, 0);
	ck_assert_int_eq(held(a), 4);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.circuits WHERE connector_id = '%s'"
	                        " AND state = 'open' AND failures = 6 AND trial_job IS NULL"
	                        " AND half_open_at > now() + interval '29 seconds'", a), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.event WHERE type = 'circuit_opened'"
	                        " AND connector_id = '%s'", a), 2);
	ck_assert_int_eq(claim_of(a, 100), 0);

	/* Half-open again: two successful trials, one at a time, close it. */
	reach_half_open(a);
	trial2 = claim_one(a, 10);
	ck_assert_int_eq(claim_of(a, 100), 0);
	ck_assert(record(a, trial2, 1, "half_open"));
	settle(trial2, 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.circuits WHERE connector_id = '%s'"
	                        " AND state = 'half_open' AND successes = 1 AND trial_job IS NOT NULL"
	                        " AND trial_job <> %lld", a, trial2), 1);
	trial3 = claim_one(a, 10);
	ck_assert_int_eq(claim_of(a, 100), 0);
	ck_assert(record(a, trial3, 1, "closed"));
	settle(trial3, 1);
	ck_assert_int_eq(held(a), 0);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.circuits WHERE connector_id = '%s'"
	                        " AND state = 'closed' AND failures = 0 AND successes = 0"
	                        " AND opened_at IS NULL AND next_check_at = 'infinity' AND waiting = 2", a), 1);
	/* The failed trial was first in line again, and passed on its second attempt. */
	ck_assert_int_eq(trial2, trial);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.job_archive WHERE id = %lld"
	                        " AND state = 'done' AND attempts = 2", trial), 1);
	/* Released: the rest are claimable at once. */
	ck_assert_int_eq(claim_of(a, 100), 2);
	ck_assert_int_eq(held(a), 0);
}
END_TEST

/* Jobs running when it opens finish normally; a failed one waits with the rest. */
START_TEST(running_jobs_finish_and_retries_are_held)
{
	char a[37];
	long long j1, j2;
	int i;

	t_connector(db, org, "ttd", NULL, a);
	enqueue(a, 2);
	j1 = claim_one(a, 1);
	j2 = claim_one(a, 1);
	for (i = 0; i < 5; i++)
		record(a, 0, 0, "");
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.circuit WHERE connector_id = '%s'"
	                        " AND state = 'open'", a), 1);
	ck_assert(record(a, j1, 1, "open"));   /* evidence from before: ignored */
	settle(j1, 1);
	settle(j2, 0);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.job_archive WHERE id = %lld"
	                        " AND state = 'done'", j1), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.job WHERE id = %lld AND state = 'retrying'"
	                        " AND run_at = sluice.circuit_held_run_at()"
	                        " AND hold_reason LIKE 'circuit open since %%'", j2), 1);
	/* Retry time passes: still held. */
	ck_assert_int_eq(claim_of(a, 100), 0);
	reach_half_open(a);
	ck_assert_int_eq(claim_one(a, 10), j2);
	t_execf(db, "UPDATE sluice.job SET locked_until = now() - interval '1 second' WHERE id = %lld", j2);
	ck_assert_int_eq(t_int(db, "SELECT sluice.reap_expired_leases()"), 1);
	/* The reaped trial is still the trial: it may run again. */
	ck_assert_int_eq(claim_one(a, 10), j2);
}
END_TEST

/* Gated jobs wait at their gate: gate_after is the circuit's hold; the trial goes through its bucket. */
START_TEST(gated_jobs)
{
	char a[37];
	int i;

	t_connector(db, org, "ttd", NULL, a);
	t_execf(db, "SELECT sluice.enqueue_limited(%lld, 'noop', '{}', 3, '%s', 'ttd')"
	        " FROM generate_series(1, 3)", org, a);
	for (i = 0; i < 5; i++)
		record(a, 0, 0, "");
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.job WHERE connector_id = '%s'"
	                        " AND run_at = sluice.held_run_at()"
	                        " AND gate_after = sluice.circuit_held_run_at()", a), 3);
	/* A gated job enqueued while open is held at the gate too. */
	t_execf(db, "SELECT sluice.enqueue_limited(%lld, 'noop', '{}', 3, '%s', 'ttd')", org, a);
	ck_assert_int_eq(held(a), 4);
	t_exec(db, "UPDATE sluice.rate_bucket SET next_check_at = now()");
	ck_assert_int_eq(claim_of(a, 100), 0);
	reach_half_open(a);
	ck_assert(claim_one(a, 10) > 0);
	ck_assert_int_eq(claim_of(a, 100), 0);
	ck_assert_int_eq(held(a), 3);
	/* A connector hold on top, and its release: the circuit's hold stays. */
	t_execf(db, "SELECT sluice.set_connector_status('%s', 'reauth_required', 'revoked')", a);
	t_execf(db, "SELECT sluice.set_connector_status('%s', 'connected')", a);
	ck_assert_int_eq(held(a), 3);
	ck_assert_int_eq(claim_of(a, 100), 0);
}
END_TEST

/* Thresholds come from the provider's policy row. */
START_TEST(thresholds_from_policy)
{
	char a[37];
	long long trial;

	t_connector(db, org, "meta", NULL, a);
	t_exec(db, "UPDATE sluice.circuit_policy SET failure_threshold = 2, success_threshold = 1,"
	           " recovery_timeout = '7 seconds' WHERE provider = 'meta'");
	enqueue(a, 2);
	ck_assert(record(a, 0, 0, "closed"));
	ck_assert(record(a, 0, 0, "open"));
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.circuits WHERE connector_id = '%s'"
	                        " AND failure_threshold = 2 AND success_threshold = 1"
	                        " AND half_open_at = opened_at + interval '7 seconds'", a), 1);
	reach_half_open(a);
	trial = claim_one(a, 10);
	ck_assert(record(a, trial, 1, "closed"));
	ck_assert_int_eq(claim_of(a, 100), 1);
}
END_TEST

/* Half-open with nothing waiting: the next job that comes is the trial, and only it. */
START_TEST(half_open_without_jobs)
{
	char a[37];
	int i;

	t_connector(db, org, "ttd", NULL, a);
	for (i = 0; i < 5; i++)
		record(a, 0, 0, "");
	reach_half_open(a);
	ck_assert_int_eq(claim_of(a, 10), 0);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.circuits WHERE connector_id = '%s'"
	                        " AND state = 'half_open' AND trial_job IS NULL", a), 1);
	enqueue(a, 3);
	ck_assert_int_eq(held(a), 2);
	ck_assert_int_eq(claim_of(a, 10), 1);
	ck_assert_int_eq(claim_of(a, 10), 0);
}
END_TEST

/* ---- a real worker -------------------------------------------------------- */

/*
 * A burst of five 500s: the circuit opens after exactly five failures, no
 * call reaches the fake until half_open_at, circuit_opened is emitted, and
 * after two good trials it closes and every job ends done.  One worker with
 * its usual batch: the jobs of the batch it has not started go back when the
 * circuit opens, rather than on to the failing system.
 */
START_TEST(worker_opens_and_recovers)
{
	/* Its whole batch is the connector's: those not started go back when it opens. */
	static const char *const worker_env[] = { "SLUICE_WORKER_REAP_INTERVAL=500ms", NULL };
	struct t_fake fake;
	json_object *stats, *arrivals;
	char c[37], log_path[128], sql[256];
	long long opened_ms, half_ms, fifth_ms = 0;
	size_t i, n;
	int n500 = 0;
	pid_t worker;

	t_fake_start(&fake, "fake_api/server.js", "5");
	t_fake_connector(db, url, org, &fake, c);
	t_exec(db, "UPDATE sluice.circuit_policy SET recovery_timeout = '2 seconds'"
	           " WHERE provider = 'trustfile'");
	t_fake_post(&fake, "/__control/fault", "{\"status\": 500, \"count\": 5, \"after\": 0}");
	t_execf(db, "SELECT sluice.enqueue(%lld, 'connector.check', '{\"path\": \"/report\"}', 3,"
	        " NULL, NULL, NULL, '%s') FROM generate_series(1, 10)", org, c);
	snprintf(log_path, sizeof(log_path), "/tmp/sluice-circuit-test-%ld.log", (long)getpid());
	worker = t_worker_start(url, worker_env, log_path);
	snprintf(sql, sizeof(sql), "SELECT count(*) = 10 FROM sluice.job_archive"
	         " WHERE kind = 'connector.check' AND state = 'done'");
	ck_assert_msg(t_wait_until_log(db, sql, 60000, log_path), "the jobs did not all finish");
	t_stop(worker, SIGTERM);
	t_wait_exit(worker, 20000);

	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.event WHERE type = 'circuit_opened'"
	                        " AND connector_id = '%s' AND (data ->> 'failures')::int = 5"
	                        " AND data ->> 'provider' = 'trustfile'", c), 1);
	opened_ms = t_intf(db, "SELECT (extract(epoch FROM (data ->> 'opened_at')::timestamptz) * 1000)"
	                   "::bigint FROM sluice.event WHERE type = 'circuit_opened' AND connector_id = '%s'", c);
	half_ms = t_intf(db, "SELECT (extract(epoch FROM (data ->> 'half_open_at')::timestamptz) * 1000)"
	                 "::bigint FROM sluice.event WHERE type = 'circuit_opened' AND connector_id = '%s'", c);
	ck_assert_int_ge(half_ms - opened_ms, 1999);
	ck_assert_int_le(half_ms - opened_ms, 2001);

	stats = t_fake_get(&fake, "/__control/arrivals");
	arrivals = json_object_object_get(stats, "arrivals");
	n = json_object_array_length(arrivals);
	ck_assert_int_eq(n, 15);   /* five 500s, then ten successes */
	for (i = 0; i < n; i++) {
		json_object *a = json_object_array_get_idx(arrivals, i);
		long long ms = json_object_get_int64(json_object_array_get_idx(a, 0));
		int status = json_object_get_int(json_object_array_get_idx(a, 1));

		if (i < 5) {
			ck_assert_int_eq(status, 500);
			n500++;
			fifth_ms = ms;
			continue;
		}
		ck_assert_int_eq(status, 200);
		/* Nothing while open: the first call after the burst is the trial, at half_open_at. */
		ck_assert_msg(ms >= half_ms - 1, "call %zu arrived %lld ms before half_open_at", i,
		              half_ms - ms);
	}
	ck_assert_int_eq(n500, 5);
	ck_assert_int_le(fifth_ms, opened_ms + 1);
	json_object_put(stats);

	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.circuits WHERE connector_id = '%s'"
	                        " AND state = 'closed' AND failures = 0 AND waiting = 0", c), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job_archive WHERE state = 'done'"
	                           " AND kind = 'connector.check'"), 10);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job_archive WHERE attempts = 2"
	                           " AND jsonb_array_length(errors) = 1"), 5);
	t_fake_stop(&fake);
	unlink(log_path);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("circuits");
	TCase *tc = tcase_create("sql");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, policy_seeded_for_every_provider);
	tcase_add_test(tc, full_cycle);
	tcase_add_test(tc, running_jobs_finish_and_retries_are_held);
	tcase_add_test(tc, gated_jobs);
	tcase_add_test(tc, thresholds_from_policy);
	tcase_add_test(tc, half_open_without_jobs);
	suite_add_tcase(s, tc);
	tc = tcase_create("workers");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, worker_opens_and_recovers);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return t_run(make_suite());
}
