/* test_queue.c — the queue's SQL interface on a real PostgreSQL: enqueue, claim, settle, leases, ops. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"

static char url[256];
static PGconn *db;

static void
setup(void)
{
	t_db_create(url, sizeof(url));
	db = t_connect(url);
}

static void
teardown(void)
{
	PQfinish(db);
}

/* Claims up to n jobs as worker w; returns the result (caller clears). */
static PGresult *
claim(PGconn *c, const char *w, int n)
{
	char num[16];
	const char *p[2] = { w, num };

	snprintf(num, sizeof(num), "%d", n);
	return t_query(c, "SELECT id, org_id, priority, claim_token, attempts FROM"
	                  " sluice.claim_jobs($1, $2::integer)", 2, p);
}

static long long
enqueue(PGconn *c, long long org, const char *kind, int priority, const char *dedupe)
{
	char o[32], pr[8];
	const char *p[4] = { o, kind, pr, dedupe };
	PGresult *r;
	long long id;

	snprintf(o, sizeof(o), "%lld", org);
	snprintf(pr, sizeof(pr), "%d", priority);
	r = t_query(c, "SELECT job_id FROM sluice.enqueue($1::bigint, $2, '{}', $3::integer,"
	               " NULL, NULL, $4)", 4, p);
	id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return id;
}

static int
settle(PGconn *c, long long id, const char *token, const char *outcome, const char *detail)
{
	char sid[32];
	const char *p[4] = { sid, token, outcome, detail };
	PGresult *r;
	int ok;

	snprintf(sid, sizeof(sid), "%lld", id);
	r = t_query(c, "SELECT accepted FROM sluice.settle_jobs(ARRAY[$1::bigint], ARRAY[$2::uuid],"
	               " ARRAY[$3], ARRAY[$4::jsonb])", 4, p);
	ok = !strcmp(PQgetvalue(r, 0, 0), "t");
	PQclear(r);
	return ok;
}

/* Claims one job as worker w and copies its claim token; returns its id. */
static long long
claim_one(PGconn *c, const char *w, char *token, size_t size)
{
	PGresult *r = claim(c, w, 1);
	long long id;

	ck_assert_int_eq(PQntuples(r), 1);
	id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	snprintf(token, size, "%s", PQgetvalue(r, 0, 3));
	PQclear(r);
	return id;
}

START_TEST(enqueue_one_and_many)
{
	long long org = t_org(db, "acme");
	PGresult *r;
	char sql[512];

	ck_assert_int_gt(enqueue(db, org, "noop", 3, NULL), 0);
	snprintf(sql, sizeof(sql),
	         "SELECT ord, job_id, deduplicated FROM sluice.enqueue_many(%lld,"
	         " '[{\"kind\":\"noop\",\"priority\":1,\"payload\":{\"a\":1}},"
	         "   {\"kind\":\"sleep\",\"max_attempts\":2},"
	         "   {\"kind\":\"noop\",\"run_at\":\"2999-01-01T00:00:00Z\"}]')", org);
	r = t_query(db, sql, 0, NULL);
	ck_assert_int_eq(PQntuples(r), 3);
	ck_assert_str_eq(PQgetvalue(r, 0, 0), "1");
	ck_assert_str_eq(PQgetvalue(r, 2, 0), "3");
	/* Ids follow input order (and so does each lane). */
	ck_assert(strtoll(PQgetvalue(r, 0, 1), NULL, 10) < strtoll(PQgetvalue(r, 1, 1), NULL, 10));
	ck_assert(strtoll(PQgetvalue(r, 1, 1), NULL, 10) < strtoll(PQgetvalue(r, 2, 1), NULL, 10));
	ck_assert_str_eq(PQgetvalue(r, 1, 2), "f");
	PQclear(r);
	/* Defaults, and what each element asked for, landed in the rows. */
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job WHERE kind = 'noop' AND priority = 3"
	                           " AND max_attempts = 5 AND state = 'queued' AND attempts = 0"), 2);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job WHERE priority = 1"
	                           " AND payload = '{\"a\":1}'"), 1);
	ck_assert_int_eq(t_int(db, "SELECT max_attempts FROM sluice.job WHERE kind = 'sleep'"), 2);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job WHERE run_at > now() + interval '900 years'"), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job_lane"), 2);
}
END_TEST

START_TEST(enqueue_rejects_unknown_org_and_bad_kind)
{
	PGresult *r = PQexec(db, "SELECT sluice.enqueue(999, 'noop')");

	ck_assert_int_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
	ck_assert_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "23503");
	PQclear(r);
	t_org(db, "acme");
	r = PQexec(db, "SELECT sluice.enqueue(1, 'Bad Kind')");
	ck_assert_int_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
	ck_assert_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "23514");
	PQclear(r);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job"), 0);
}
END_TEST

START_TEST(dedupe_returns_the_live_job)
{
	long long a = t_org(db, "a"), b = t_org(db, "b");
	long long first = enqueue(db, a, "noop", 3, "sync-42");
	PGresult *r;
	char sql[256];

	ck_assert_int_eq(enqueue(db, a, "noop", 3, "sync-42"), first);
	/* Another org's key space is its own. */
	ck_assert_int_ne(enqueue(db, b, "noop", 3, "sync-42"), first);
	/* Within one bulk call, the second element gets the first's job. */
	snprintf(sql, sizeof(sql), "SELECT job_id, deduplicated FROM sluice.enqueue_many(%lld,"
	         " '[{\"kind\":\"noop\",\"dedupe_key\":\"k\"},{\"kind\":\"noop\",\"dedupe_key\":\"k\"},"
	         "   {\"kind\":\"noop\",\"dedupe_key\":\"sync-42\"}]')", a);
	r = t_query(db, sql, 0, NULL);
	ck_assert_str_eq(PQgetvalue(r, 0, 1), "f");
	ck_assert_str_eq(PQgetvalue(r, 1, 1), "t");
	ck_assert_str_eq(PQgetvalue(r, 0, 0), PQgetvalue(r, 1, 0));
	ck_assert_str_eq(PQgetvalue(r, 2, 1), "t");
	ck_assert_int_eq(strtoll(PQgetvalue(r, 2, 0), NULL, 10), first);
	PQclear(r);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job"), 3);

	/* Once the job ends, the key is free again. */
	r = claim(db, "w", 10);
	ck_assert_int_eq(PQntuples(r), 3);
	PQclear(r);
	t_exec(db, "SELECT sluice.settle_jobs(array_agg(id), array_agg(claim_token),"
	           " array_agg('done'::text), array_agg(NULL::jsonb)) FROM sluice.job");
	ck_assert_int_gt(enqueue(db, a, "noop", 3, "sync-42"), first);
}
END_TEST

START_TEST(claims_in_priority_order)
{
	long long org = t_org(db, "acme");
	long long p5 = enqueue(db, org, "noop", 5, NULL);
	long long p3 = enqueue(db, org, "noop", 3, NULL);
	long long p1 = enqueue(db, org, "noop", 1, NULL);
	long long p2 = enqueue(db, org, "noop", 2, NULL);
	long long order[4] = { p1, p2, p3, p5 };
	int i;

	for (i = 0; i < 4; i++) {
		PGresult *r = claim(db, "w", 1);

		ck_assert_int_eq(PQntuples(r), 1);
		ck_assert_int_eq(strtoll(PQgetvalue(r, 0, 0), NULL, 10), order[i]);
		PQclear(r);
	}
}
END_TEST

/* One org's 100,000 backfill jobs cost another org's jobs at most one claim cycle. */
START_TEST(claims_are_fair_across_orgs)
{
	long long a = t_org(db, "big"), b = t_org(db, "small");
	long long b_urgent, b_normal;
	PGresult *r;
	char sql[512];
	int i, got_b = 0;

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM sluice.enqueue_jobs(%lld,"
	         " array_fill('noop'::text, ARRAY[100000]), NULL, array_fill(5, ARRAY[100000]))", a);
	ck_assert_int_eq(t_int(db, sql), 100000);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM sluice.enqueue_jobs(%lld,"
	         " array_fill('noop'::text, ARRAY[5000]), NULL, array_fill(3, ARRAY[5000]))", a);
	ck_assert_int_eq(t_int(db, sql), 5000);
	b_urgent = enqueue(db, b, "noop", 2, NULL);
	b_normal = enqueue(db, b, "noop", 3, NULL);

	/* The next claim of 10 takes B's priority-2 job first and, round-robin at
	 * priority 3, B's priority-3 job beside A's — not after A's 5,000. */
	r = claim(db, "w", 10);
	ck_assert_int_eq(PQntuples(r), 10);
	ck_assert_int_eq(strtoll(PQgetvalue(r, 0, 0), NULL, 10), b_urgent);
	for (i = 0; i < PQntuples(r); i++) {
		long long id = strtoll(PQgetvalue(r, i, 0), NULL, 10);

		got_b += id == b_normal;
		ck_assert_int_ne(atoi(PQgetvalue(r, i, 2)), 5);
	}
	ck_assert_int_eq(got_b, 1);
	PQclear(r);
}
END_TEST

START_TEST(stale_token_is_refused)
{
	long long org = t_org(db, "acme");
	long long id = enqueue(db, org, "noop", 3, NULL);
	char old_token[64], new_token[64], sql[256];
	PGresult *r;

	r = claim(db, "w1", 1);
	snprintf(old_token, sizeof(old_token), "%s", PQgetvalue(r, 0, 3));
	PQclear(r);
	/* w1 stalls past its lease; the reaper gives the job back; w2 takes it. */
	t_exec(db, "UPDATE sluice.job SET locked_until = now() - interval '1 second'");
	ck_assert_int_eq(t_int(db, "SELECT sluice.reap_expired_leases()"), 1);
	r = claim(db, "w2", 1);
	ck_assert_int_eq(PQntuples(r), 1);
	snprintf(new_token, sizeof(new_token), "%s", PQgetvalue(r, 0, 3));
	ck_assert_str_eq(PQgetvalue(r, 0, 4), "2");   /* the lost attempt counted */
	PQclear(r);
	ck_assert_str_ne(old_token, new_token);

	ck_assert_int_eq(settle(db, id, old_token, "done", "{\"by\":\"w1\"}"), 0);
	ck_assert_int_eq(settle(db, id, old_token, "fail", "{\"error\":\"late\"}"), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job WHERE state = 'running'"), 1);
	ck_assert_int_eq(settle(db, id, new_token, "done", "{\"by\":\"w2\"}"), 1);
	/* Settled once: a repeat is refused too. */
	ck_assert_int_eq(settle(db, id, new_token, "done", "{\"by\":\"w2\"}"), 0);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM sluice.job_archive WHERE id = %lld"
	         " AND state = 'done' AND result = '{\"by\":\"w2\"}' AND attempts = 2"
	         " AND errors -> 0 ->> 'error' LIKE 'lease expired on worker w1%%'", id);
	ck_assert_int_eq(t_int(db, sql), 1);
}
END_TEST

START_TEST(failures_back_off_then_die_with_every_error)
{
	long long org = t_org(db, "acme");
	char sql[256];
	PGresult *r;
	int attempt;

	t_exec(db, "UPDATE sluice.setting SET value = '10 seconds' WHERE name = 'backoff_base'");
	snprintf(sql, sizeof(sql), "SELECT job_id FROM sluice.enqueue(%lld, 'fail', '{}', 3, NULL, 3)",
	         org);
	t_int(db, sql);
	for (attempt = 1; attempt <= 3; attempt++) {
		char token[64], err[64], id[32];

		r = claim(db, "w", 1);
		ck_assert_int_eq(PQntuples(r), 1);
		snprintf(id, sizeof(id), "%s", PQgetvalue(r, 0, 0));
		snprintf(token, sizeof(token), "%s", PQgetvalue(r, 0, 3));
		ck_assert_int_eq(atoi(PQgetvalue(r, 0, 4)), attempt);
		PQclear(r);
		snprintf(err, sizeof(err), "{\"error\":\"boom %d\"}", attempt);
		ck_assert_int_eq(settle(db, strtoll(id, NULL, 10), token, "fail", err), 1);
		if (attempt < 3) {
			/* Retrying after base * 2^(attempt-1), ±25 %. */
			double lo = 10.0 * (1 << (attempt - 1)) * 0.75 - 0.5;
			double hi = 10.0 * (1 << (attempt - 1)) * 1.25 + 0.5;

			snprintf(sql, sizeof(sql), "SELECT count(*) FROM sluice.job WHERE state = 'retrying'"
			         " AND run_at - now() BETWEEN interval '%f seconds' AND interval '%f seconds'",
			         lo, hi);
			ck_assert_int_eq(t_int(db, sql), 1);
			/* Not runnable before its time. */
			r = claim(db, "w", 1);
			ck_assert_int_eq(PQntuples(r), 0);
			PQclear(r);
			t_exec(db, "UPDATE sluice.job SET run_at = now() - interval '1 ms'");
		}
	}
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job"), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.dead_jobs WHERE last_error = 'boom 3'"
	                           " AND attempts = 3 AND jsonb_array_length(errors) = 3"
	                           " AND errors -> 0 ->> 'error' = 'boom 1'"
	                           " AND errors -> 1 ->> 'error' = 'boom 2'"), 1);
}
END_TEST

START_TEST(permanent_failure_dies_at_once)
{
	long long org = t_org(db, "acme");
	long long id = enqueue(db, org, "fail", 3, NULL);
	char token[64];

	claim_one(db, "w", token, sizeof(token));
	ck_assert_int_eq(settle(db, id, token, "fail", "{\"error\":\"bad input\",\"permanent\":true}"), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job_archive WHERE state = 'dead'"
	                           " AND attempts = 1 AND last_error = 'bad input'"), 1);
}
END_TEST

START_TEST(retry_later_spends_no_attempt)
{
	long long org = t_org(db, "acme");
	long long id = enqueue(db, org, "noop", 3, NULL);
	PGresult *r;
	char token[64];

	claim_one(db, "w", token, sizeof(token));
	ck_assert_int_eq(settle(db, id, token, "retry_later",
	                        "{\"delay_ms\":60000,\"reason\":\"rate limited by provider\"}"), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job WHERE state = 'queued'"
	                           " AND attempts = 0 AND errors = '[]'"
	                           " AND hold_reason = 'rate limited by provider'"
	                           " AND run_at BETWEEN now() + interval '55 s' AND now() + interval '65 s'"), 1);
	r = t_query(db, "SELECT reason FROM sluice.why((SELECT id FROM sluice.job))", 0, NULL);
	ck_assert_msg(strstr(PQgetvalue(r, 0, 0), "rate limited by provider") != NULL, "%s",
	              PQgetvalue(r, 0, 0));
	PQclear(r);
}
END_TEST

START_TEST(expired_lease_on_last_attempt_is_dead)
{
	long long org = t_org(db, "acme");
	char sql[128];
	PGresult *r;

	snprintf(sql, sizeof(sql), "SELECT job_id FROM sluice.enqueue(%lld, 'sleep', '{}', 3, NULL, 1)", org);
	t_int(db, sql);
	r = claim(db, "lost-worker", 1);
	PQclear(r);
	t_exec(db, "UPDATE sluice.job SET locked_until = now() - interval '1 second'");
	ck_assert_int_eq(t_int(db, "SELECT sluice.reap_expired_leases()"), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.dead_jobs"
	                           " WHERE last_error = 'lease expired on worker lost-worker'"), 1);
}
END_TEST

START_TEST(heartbeat_extends_only_held_jobs)
{
	long long org = t_org(db, "acme");
	PGresult *r;
	char ids[64], tokens[128];

	enqueue(db, org, "noop", 3, NULL);
	enqueue(db, org, "noop", 3, NULL);
	t_exec(db, "SELECT sluice.worker_register('w', 'host', 1)");
	r = claim(db, "w", 2);
	snprintf(ids, sizeof(ids), "{%s,%s}", PQgetvalue(r, 0, 0), PQgetvalue(r, 1, 0));
	snprintf(tokens, sizeof(tokens), "{%s,%s}", PQgetvalue(r, 0, 3), PQgetvalue(r, 1, 3));
	PQclear(r);
	t_exec(db, "UPDATE sluice.job SET locked_until = now() + interval '1 second'");
	/* One of the two is cancelled meanwhile. */
	t_exec(db, "SELECT sluice.cancel_job(min(id)) FROM sluice.job");
	r = t_query(db, "SELECT job_id FROM sluice.heartbeat('w', $1::bigint[], $2::uuid[])", 2,
	            (const char *const[]){ ids, tokens });
	ck_assert_int_eq(PQntuples(r), 1);
	PQclear(r);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job"
	                           " WHERE locked_until > now() + interval '20 seconds'"), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job_archive WHERE state = 'cancelled'"), 1);
}
END_TEST

START_TEST(cancel_of_running_job_refuses_its_completion)
{
	long long org = t_org(db, "acme");
	long long id = enqueue(db, org, "noop", 3, NULL);
	char token[64], sql[128];

	claim_one(db, "w", token, sizeof(token));
	snprintf(sql, sizeof(sql), "SELECT sluice.cancel_job(%lld, 'no longer wanted')::int", id);
	ck_assert_int_eq(t_int(db, sql), 1);
	ck_assert_int_eq(t_int(db, sql), 0);
	ck_assert_int_eq(settle(db, id, token, "done", "null"), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.jobs WHERE state = 'cancelled'"
	                           " AND result ->> 'cancelled' = 'no longer wanted'"), 1);
}
END_TEST

START_TEST(pause_and_resume_kind_and_org)
{
	long long a = t_org(db, "a"), b = t_org(db, "b");
	long long ja = enqueue(db, a, "sleep", 3, NULL);
	long long jb = enqueue(db, b, "noop", 3, NULL);
	PGresult *r;
	char sql[128], reason[512];

	t_exec(db, "SELECT sluice.pause_kind('sleep', 'maintenance')");
	snprintf(sql, sizeof(sql), "SELECT sluice.pause_org(%lld)", b);
	t_exec(db, sql);
	r = claim(db, "w", 10);
	ck_assert_int_eq(PQntuples(r), 0);
	PQclear(r);
	snprintf(sql, sizeof(sql), "SELECT reason FROM sluice.why(%lld)", ja);
	t_text(db, sql, reason, sizeof(reason));
	ck_assert_msg(strstr(reason, "kind sleep is paused") && strstr(reason, "maintenance"), "%s", reason);
	snprintf(sql, sizeof(sql), "SELECT reason FROM sluice.why(%lld)", jb);
	t_text(db, sql, reason, sizeof(reason));
	ck_assert_msg(strstr(reason, "is paused") != NULL, "%s", reason);

	t_exec(db, "SELECT sluice.resume_kind('sleep')");
	r = claim(db, "w", 10);
	ck_assert_int_eq(PQntuples(r), 1);
	ck_assert_int_eq(strtoll(PQgetvalue(r, 0, 0), NULL, 10), ja);
	PQclear(r);
	snprintf(sql, sizeof(sql), "SELECT sluice.resume_org(%lld)", b);
	t_exec(db, sql);
	r = claim(db, "w", 10);
	ck_assert_int_eq(PQntuples(r), 1);
	ck_assert_int_eq(strtoll(PQgetvalue(r, 0, 0), NULL, 10), jb);
	PQclear(r);
}
END_TEST

/* why() names each reason a job is not running. */
START_TEST(why_names_the_reason)
{
	long long org = t_org(db, "acme");
	char sql[256], reason[512];
	long long behind, future, done;
	PGresult *r;

	t_exec(db, "SELECT sluice.worker_register('w', 'host', 1)");
	done = enqueue(db, org, "noop", 1, NULL);
	r = claim(db, "w", 1);
	PQclear(r);
	t_exec(db, "SELECT sluice.settle_jobs(array_agg(id), array_agg(claim_token),"
	           " array_agg('done'::text), array_agg(NULL::jsonb)) FROM sluice.job");
	enqueue(db, org, "noop", 1, NULL);
	enqueue(db, org, "noop", 2, NULL);
	behind = enqueue(db, org, "noop", 3, NULL);
	snprintf(sql, sizeof(sql), "SELECT job_id FROM sluice.enqueue(%lld, 'noop', '{}', 3,"
	         " now() + interval '1 hour')", org);
	future = t_int(db, sql);

	snprintf(sql, sizeof(sql), "SELECT reason FROM sluice.why(%lld)", behind);
	t_text(db, sql, reason, sizeof(reason));
	ck_assert_msg(strstr(reason, "2 job(s) will be claimed before it (2 of higher priority"),
	              "%s", reason);
	snprintf(sql, sizeof(sql), "SELECT reason FROM sluice.why(%lld)", future);
	t_text(db, sql, reason, sizeof(reason));
	ck_assert_msg(strstr(reason, "run_at is in the future") != NULL, "%s", reason);
	snprintf(sql, sizeof(sql), "SELECT state || ': ' || reason FROM sluice.why(%lld)", done);
	t_text(db, sql, reason, sizeof(reason));
	ck_assert_msg(strstr(reason, "done: done at") == reason, "%s", reason);
	t_text(db, "SELECT reason FROM sluice.why(987654)", reason, sizeof(reason));
	ck_assert_msg(strstr(reason, "no job 987654") != NULL, "%s", reason);
	/* With no live worker, that is the reason. */
	t_exec(db, "SELECT sluice.worker_stop('w')");
	snprintf(sql, sizeof(sql), "SELECT reason FROM sluice.why(%lld)", behind);
	t_text(db, sql, reason, sizeof(reason));
	ck_assert_msg(strstr(reason, "no worker is alive") != NULL, "%s", reason);
	/* Running: names the worker. */
	t_exec(db, "SELECT sluice.worker_register('w2', 'hostx', 77)");
	r = claim(db, "w2", 1);
	snprintf(sql, sizeof(sql), "SELECT reason FROM sluice.why(%s)", PQgetvalue(r, 0, 0));
	PQclear(r);
	t_text(db, sql, reason, sizeof(reason));
	ck_assert_msg(strstr(reason, "running on worker w2 (host hostx, pid 77)") != NULL, "%s", reason);
}
END_TEST

START_TEST(dead_jobs_can_be_retried)
{
	long long org = t_org(db, "acme");
	long long id = enqueue(db, org, "fail", 3, NULL);
	char token[64], sql[128];

	claim_one(db, "w", token, sizeof(token));
	settle(db, id, token, "fail", "{\"error\":\"x\",\"permanent\":true}");
	snprintf(sql, sizeof(sql), "SELECT sluice.retry_dead_job(%lld)::int", id);
	ck_assert_int_eq(t_int(db, sql), 1);
	ck_assert_int_eq(t_int(db, sql), 0);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM sluice.job WHERE id = %lld AND state = 'retrying'"
	         " AND attempts = 0 AND jsonb_array_length(errors) = 1", id);
	ck_assert_int_eq(t_int(db, sql), 1);
	ck_assert_int_eq(claim_one(db, "w", token, sizeof(token)), id);
}
END_TEST

START_TEST(prune_deletes_old_finished_jobs_in_batches)
{
	long long org = t_org(db, "acme");
	char sql[512];

	snprintf(sql, sizeof(sql), "INSERT INTO sluice.job_archive (id, org_id, kind, payload, priority,"
	         " state, run_at, attempts, max_attempts, created_at, finished_at)"
	         " SELECT g, %lld, 'noop', '{}', 3, 'done', now(), 1, 5, now(),"
	         "   now() - CASE WHEN g <= 2500 THEN interval '8 days' ELSE interval '6 days' END"
	         " FROM generate_series(1, 3000) g", org);
	t_exec(db, sql);
	ck_assert_int_eq(t_int(db, "SELECT sluice.prune_finished(1000)"), 1000);
	ck_assert_int_eq(t_int(db, "SELECT sluice.prune_finished(1000)"), 1000);
	ck_assert_int_eq(t_int(db, "SELECT sluice.prune_finished(1000)"), 500);
	ck_assert_int_eq(t_int(db, "SELECT sluice.prune_finished(1000)"), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job_archive"), 500);
	ck_assert_int_eq(t_int(db, "SELECT min(id) FROM sluice.job_archive"), 2501);
	/* The retention is a setting. */
	t_exec(db, "UPDATE sluice.setting SET value = '5 days' WHERE name = 'retention'");
	ck_assert_int_eq(t_int(db, "SELECT sluice.prune_finished()"), 500);
}
END_TEST

/* A job that lands behind a session's claim hint (its producer committed
 * late) is still found: soon when close behind, after a rescan_all() when far. */
START_TEST(claim_hints_never_lose_a_job)
{
	long long org = t_org(db, "acme");
	PGresult *r;
	char sql[256];
	int i;

	for (i = 0; i < 5; i++)
		enqueue(db, org, "noop", 3, NULL);
	r = claim(db, "w", 3);
	ck_assert_int_eq(PQntuples(r), 3);
	PQclear(r);
	/* Forge late commits: queued jobs older than the hint, one a second
	 * behind (within the rescan window), one an hour behind. */
	snprintf(sql, sizeof(sql), "INSERT INTO sluice.job (org_id, kind, priority, run_at, max_attempts)"
	         " VALUES (%lld, 'noop', 3, now() - interval '1 second', 5),"
	         "        (%lld, 'noop', 3, now() - interval '1 hour', 5)", org, org);
	t_exec(db, sql);
	r = claim(db, "w", 10);
	ck_assert_int_eq(PQntuples(r), 3);
	PQclear(r);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job WHERE state <> 'running'"
	                           " AND run_at < now() - interval '30 minutes'"), 1);
	/* Housekeeping (or a resume) drops every session's hints. */
	t_exec(db, "SELECT sluice.rescan_all()");
	r = claim(db, "w", 10);
	ck_assert_int_eq(PQntuples(r), 1);
	PQclear(r);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job WHERE state <> 'running'"), 0);
}
END_TEST

/* The reaper starts where its last sweep ended, and still finds every lease
 * that expires after it. */
START_TEST(reaper_hint_misses_nothing_new)
{
	long long org = t_org(db, "acme");
	PGresult *r;

	enqueue(db, org, "noop", 3, NULL);
	enqueue(db, org, "noop", 3, NULL);
	ck_assert_int_eq(t_int(db, "SELECT sluice.reap_expired_leases()"), 0);
	r = claim(db, "w", 2);
	PQclear(r);
	t_exec(db, "UPDATE sluice.job SET locked_until = clock_timestamp() - interval '10 ms'"
	           " WHERE id = (SELECT min(id) FROM sluice.job)");
	ck_assert_int_eq(t_int(db, "SELECT sluice.reap_expired_leases()"), 1);
	t_exec(db, "UPDATE sluice.job SET locked_until = clock_timestamp() - interval '10 ms'"
	           " WHERE state = 'running'");
	ck_assert_int_eq(t_int(db, "SELECT sluice.reap_expired_leases()"), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job WHERE state = 'retrying'"), 2);
}
END_TEST

START_TEST(bulk_enqueue_notifies_once_and_only_for_sleeping_workers)
{
	long long org = t_org(db, "acme");
	PGconn *listener = t_connect(url);
	PGnotify *n;
	char sql[256];
	int count = 0;

	t_exec(listener, "LISTEN sluice_jobs");
	/* No worker is asleep: no NOTIFY. */
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM sluice.enqueue_jobs(%lld,"
	         " array_fill('noop'::text, ARRAY[100]))", org);
	t_int(db, sql);
	t_exec(listener, "SELECT 1");
	PQconsumeInput(listener);
	ck_assert_ptr_null(PQnotifies(listener));

	/* A worker goes to sleep until 60 s from now. */
	t_exec(db, "SELECT sluice.worker_register('w', 'h', 1)");
	t_exec(db, "SELECT * FROM sluice.worker_idle('w', '60 seconds')");
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.worker WHERE waiting_until IS NOT NULL"), 1);
	/* A job due in an hour would not wake it. */
	snprintf(sql, sizeof(sql), "SELECT job_id FROM sluice.enqueue(%lld, 'noop', '{}', 3,"
	         " now() + interval '1 hour')", org);
	t_int(db, sql);
	t_exec(listener, "SELECT 1");
	PQconsumeInput(listener);
	ck_assert_ptr_null(PQnotifies(listener));
	/* 100 runnable jobs in one call: one NOTIFY. */
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM sluice.enqueue_jobs(%lld,"
	         " array_fill('noop'::text, ARRAY[100]))", org);
	t_int(db, sql);
	t_exec(listener, "SELECT 1");
	PQconsumeInput(listener);
	while ((n = PQnotifies(listener)) != NULL) {
		ck_assert_str_eq(n->relname, "sluice_jobs");
		count++;
		PQfreemem(n);
	}
	ck_assert_int_eq(count, 1);
	/* Once the worker claims, it is busy: no more NOTIFYs. */
	PQclear(claim(db, "w", 1));
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.worker WHERE waiting_until IS NOT NULL"), 0);
	PQfinish(listener);
}
END_TEST

START_TEST(worker_idle_says_when_to_wake)
{
	long long org = t_org(db, "acme");
	char sql[256];
	PGresult *r;

	t_exec(db, "SELECT sluice.worker_register('w', 'h', 1)");
	/* Nothing pending: wake at the max sleep. */
	r = t_query(db, "SELECT wake_at - now() BETWEEN interval '29 s' AND interval '31 s', may_sleep"
	                " FROM sluice.worker_idle('w', '30 seconds')", 0, NULL);
	ck_assert_str_eq(PQgetvalue(r, 0, 0), "t");
	ck_assert_str_eq(PQgetvalue(r, 0, 1), "t");
	PQclear(r);
	/* A job due in 5 s: wake then. */
	snprintf(sql, sizeof(sql), "SELECT job_id FROM sluice.enqueue(%lld, 'noop', '{}', 3,"
	         " now() + interval '5 seconds')", org);
	t_int(db, sql);
	r = t_query(db, "SELECT wake_at - now() BETWEEN interval '4 s' AND interval '6 s'"
	                " FROM sluice.worker_idle('w', '30 seconds')", 0, NULL);
	ck_assert_str_eq(PQgetvalue(r, 0, 0), "t");
	PQclear(r);
	/* A producer mid-transaction: may not sleep. */
	{
		PGconn *producer = t_connect(url);

		t_exec(producer, "BEGIN");
		snprintf(sql, sizeof(sql), "SELECT sluice.enqueue(%lld, 'noop')", org);
		t_exec(producer, sql);
		r = t_query(db, "SELECT may_sleep FROM sluice.worker_idle('w', '30 seconds')", 0, NULL);
		ck_assert_str_eq(PQgetvalue(r, 0, 0), "f");
		PQclear(r);
		t_exec(producer, "COMMIT");
		PQfinish(producer);
	}
}
END_TEST

START_TEST(empty_lanes_are_dropped_and_full_ones_kept)
{
	long long org = t_org(db, "acme");
	PGresult *r;

	enqueue(db, org, "noop", 3, NULL);
	enqueue(db, org, "noop", 4, NULL);
	r = claim(db, "w", 1);
	PQclear(r);
	t_exec(db, "SELECT sluice.settle_jobs(array_agg(id), array_agg(claim_token),"
	           " array_agg('done'::text), array_agg(NULL::jsonb)) FROM sluice.job"
	           " WHERE state = 'running'");
	ck_assert_int_eq(t_int(db, "SELECT sluice.drop_empty_lanes()"), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job_lane WHERE priority = 4"), 1);
	r = claim(db, "w", 1);
	ck_assert_int_eq(PQntuples(r), 1);
	PQclear(r);
}
END_TEST

START_TEST(queue_status_positions_follow_claim_order)
{
	long long a = t_org(db, "a"), b = t_org(db, "b");
	char sql[256];
	PGresult *r;
	int i;

	for (i = 0; i < 3; i++)
		enqueue(db, a, "noop", 3, NULL);
	enqueue(db, a, "noop", 1, NULL);
	enqueue(db, b, "noop", 3, NULL);
	enqueue(db, b, "noop", 3, NULL);
	snprintf(sql, sizeof(sql), "SELECT total_queued, your_requests, positions::text"
	         " FROM sluice.queue_status(%lld)", b);
	r = t_query(db, sql, 0, NULL);
	ck_assert_str_eq(PQgetvalue(r, 0, 0), "6");
	ck_assert_str_eq(PQgetvalue(r, 0, 1), "2");
	/* B's first: after A's priority-1 job, round-robin with A's first → 2;
	 * B's second: after A's first two → 4. */
	ck_assert_str_eq(PQgetvalue(r, 0, 2), "{2,4}");
	PQclear(r);
	/* Which is what claims then do: the next 3 are A's priority-1 job and,
	 * dealt round-robin, one priority-3 job of each org. */
	r = claim(db, "w", 3);
	ck_assert_int_eq(PQntuples(r), 3);
	ck_assert_str_eq(PQgetvalue(r, 0, 2), "1");
	ck_assert_int_eq((strcmp(PQgetvalue(r, 1, 1), "2") == 0) + (strcmp(PQgetvalue(r, 2, 1), "2") == 0), 1);
	PQclear(r);
}
END_TEST

START_TEST(settle_rejects_malformed_calls)
{
	PGresult *r = PQexec(db, "SELECT * FROM sluice.settle_jobs(ARRAY[1], ARRAY[]::uuid[],"
	                         " ARRAY['done'], ARRAY[NULL::jsonb])");

	ck_assert_int_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
	ck_assert_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "22023");
	PQclear(r);
	r = PQexec(db, "SELECT * FROM sluice.settle_jobs(ARRAY[1], ARRAY[gen_random_uuid()],"
	               " ARRAY['finish'], ARRAY[NULL::jsonb])");
	ck_assert_int_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
	PQclear(r);
}
END_TEST

START_TEST(ops_views_answer)
{
	long long org = t_org(db, "acme");
	PGresult *r;

	enqueue(db, org, "noop", 3, NULL);
	enqueue(db, org, "sleep", 2, NULL);
	t_exec(db, "SELECT sluice.worker_register('w', 'h', 1)");
	r = claim(db, "w", 1);
	PQclear(r);
	ck_assert_int_eq(t_int(db, "SELECT sum(jobs) FROM sluice.queue_depth"), 2);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.queue_depth WHERE state = 'running'"
	                           " AND kind = 'sleep' AND priority = 2 AND org_id = 1"), 1);
	ck_assert_int_eq(t_int(db, "SELECT runnable FROM sluice.queue_lag WHERE kind = 'noop'"), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.running_jobs WHERE worker_id = 'w'"
	                           " AND host = 'h' AND lease_left > interval '0'"), 1);
	ck_assert_int_eq(t_int(db, "SELECT jobs_held FROM sluice.workers WHERE id = 'w'"), 1);
	t_exec(db, "SELECT sluice.settle_jobs(array_agg(id), array_agg(claim_token),"
	           " array_agg('done'::text), array_agg(NULL::jsonb)) FROM sluice.job WHERE state = 'running'");
	ck_assert_int_eq(t_int(db, "SELECT done_last_minute FROM sluice.throughput WHERE kind IS NULL"), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.metrics() WHERE name = 'sluice_jobs'"
	                           " AND labels = 'state=\"queued\",kind=\"noop\",priority=\"3\"'"
	                           " AND value = 1"), 1);
}
END_TEST

START_TEST(bulk_ids_follow_input_order)
{
	long long org = t_org(db, "acme");
	char sql[512];

	/* Different kinds, so that kind_policy's join has rows to shuffle. */
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM (SELECT ord, job_id, lag(job_id) OVER (ORDER BY ord) AS prev"
	         " FROM sluice.enqueue_many(%lld, '[{\"kind\":\"noop\"},{\"kind\":\"sleep\"},"
	         "{\"kind\":\"noop\"},{\"kind\":\"other\"},{\"kind\":\"fail\"},{\"kind\":\"sleep\"}]')) x"
	         " WHERE job_id <= prev", org);
	ck_assert_int_eq(t_int(db, sql), 0);
}
END_TEST

START_TEST(dead_job_with_a_taken_dedupe_key_is_not_retried)
{
	long long org = t_org(db, "acme");
	long long dead = enqueue(db, org, "fail", 3, "nightly");
	char token[64], sql[256];

	claim_one(db, "w", token, sizeof(token));
	settle(db, dead, token, "fail", "{\"error\":\"x\",\"permanent\":true}");
	/* The same work is queued again under the key. */
	ck_assert_int_ne(enqueue(db, org, "noop", 3, "nightly"), dead);
	snprintf(sql, sizeof(sql), "SELECT sluice.retry_dead_job(%lld)::int", dead);
	ck_assert_int_eq(t_int(db, sql), 0);
	{
		char reason[512];

		snprintf(sql, sizeof(sql), "SELECT reason FROM sluice.why(%lld)", dead);
		t_text(db, sql, reason, sizeof(reason));
		ck_assert_msg(strstr(reason, "holds its dedupe key") != NULL, "%s", reason);
	}
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.dead_jobs"), 1);
	ck_assert_int_eq(t_int(db, "SELECT sluice.retry_dead_jobs()"), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job"), 1);
}
END_TEST

START_TEST(paused_jobs_are_not_counted_ahead)
{
	long long a = t_org(db, "a"), b = t_org(db, "b");
	long long mine;
	char sql[256];
	PGresult *r;
	int i;

	for (i = 0; i < 5; i++)
		enqueue(db, a, "noop", 1, NULL);
	enqueue(db, b, "sleep", 1, NULL);
	mine = enqueue(db, b, "noop", 3, NULL);
	snprintf(sql, sizeof(sql), "SELECT sluice.jobs_ahead(%lld)", mine);
	ck_assert_int_eq(t_int(db, sql), 6);
	snprintf(sql, sizeof(sql), "SELECT sluice.pause_org(%lld)", a);
	t_exec(db, sql);
	t_exec(db, "SELECT sluice.pause_kind('sleep')");
	snprintf(sql, sizeof(sql), "SELECT sluice.jobs_ahead(%lld)", mine);
	ck_assert_int_eq(t_int(db, sql), 0);
	snprintf(sql, sizeof(sql), "SELECT total_queued || ' ' || your_requests || ' ' || positions::text"
	         " FROM sluice.queue_status(%lld)", b);
	r = t_query(db, sql, 0, NULL);
	ck_assert_str_eq(PQgetvalue(r, 0, 0), "1 1 {1}");
	PQclear(r);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.queue_depth WHERE paused AND NOT runnable"), 2);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.metrics() WHERE labels LIKE 'state=\"paused\"%'"), 2);
}
END_TEST

START_TEST(settings_must_be_positive_and_present)
{
	PGresult *r = PQexec(db, "UPDATE sluice.setting SET value = '-1 second' WHERE name = 'lease'");
	char msg[256];

	ck_assert_int_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
	ck_assert_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "23514");
	PQclear(r);
	t_exec(db, "DELETE FROM sluice.setting WHERE name = 'lease'");
	t_org(db, "acme");
	enqueue(db, 1, "noop", 3, NULL);
	r = PQexec(db, "SELECT * FROM sluice.claim_jobs('w', 1)");
	ck_assert_int_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
	snprintf(msg, sizeof(msg), "%s", PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
	ck_assert_str_eq(msg, "setting lease (interval) is missing from sluice.setting");
	PQclear(r);
}
END_TEST

START_TEST(busy_worker_stays_alive)
{
	long long org = t_org(db, "acme");
	PGresult *r;

	t_exec(db, "SELECT sluice.worker_register('w', 'h', 1)");
	t_exec(db, "UPDATE sluice.worker SET last_heartbeat_at = now() - interval '1 hour'");
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.workers WHERE status = 'lost'"), 1);
	enqueue(db, org, "noop", 3, NULL);
	r = claim(db, "w", 1);
	PQclear(r);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.workers WHERE status = 'busy'"), 1);
	ck_assert_int_eq(t_int(db, "SELECT sluice.live_worker_count()"), 1);
}
END_TEST

/* A job given back unstarted keeps its place in line, and other sessions,
 * whose hints are past it, find it again. */
START_TEST(released_job_keeps_its_place)
{
	long long org = t_org(db, "acme");
	PGconn *other = t_connect(url);
	long long first = enqueue(db, org, "noop", 3, NULL);
	char token[64], sql[256];
	PGresult *r;

	enqueue(db, org, "noop", 3, NULL);
	r = claim(db, "w1", 1);
	snprintf(token, sizeof(token), "%s", PQgetvalue(r, 0, 3));
	PQclear(r);
	/* Another session takes the second job: its hint is now past the first. */
	r = claim(other, "w2", 1);
	ck_assert_int_eq(PQntuples(r), 1);
	PQclear(r);
	ck_assert_int_eq(settle(db, first, token, "release", "null"), 1);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM sluice.job WHERE id = %lld AND state = 'queued'"
	         " AND attempts = 0 AND run_at < created_at + interval '1 second'", first);
	ck_assert_int_eq(t_int(db, sql), 1);
	enqueue(db, org, "noop", 3, NULL);
	r = claim(other, "w2", 1);
	ck_assert_int_eq(PQntuples(r), 1);
	ck_assert_int_eq(strtoll(PQgetvalue(r, 0, 0), NULL, 10), first);
	PQclear(r);
	PQfinish(other);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("queue");
	TCase *tc = tcase_create("sql");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, enqueue_one_and_many);
	tcase_add_test(tc, enqueue_rejects_unknown_org_and_bad_kind);
	tcase_add_test(tc, dedupe_returns_the_live_job);
	tcase_add_test(tc, claims_in_priority_order);
	tcase_add_test(tc, claims_are_fair_across_orgs);
	tcase_add_test(tc, stale_token_is_refused);
	tcase_add_test(tc, failures_back_off_then_die_with_every_error);
	tcase_add_test(tc, permanent_failure_dies_at_once);
	tcase_add_test(tc, retry_later_spends_no_attempt);
	tcase_add_test(tc, expired_lease_on_last_attempt_is_dead);
	tcase_add_test(tc, heartbeat_extends_only_held_jobs);
	tcase_add_test(tc, cancel_of_running_job_refuses_its_completion);
	tcase_add_test(tc, pause_and_resume_kind_and_org);
	tcase_add_test(tc, why_names_the_reason);
	tcase_add_test(tc, dead_jobs_can_be_retried);
	tcase_add_test(tc, prune_deletes_old_finished_jobs_in_batches);
	tcase_add_test(tc, claim_hints_never_lose_a_job);
	tcase_add_test(tc, reaper_hint_misses_nothing_new);
	tcase_add_test(tc, bulk_enqueue_notifies_once_and_only_for_sleeping_workers);
	tcase_add_test(tc, worker_idle_says_when_to_wake);
	tcase_add_test(tc, empty_lanes_are_dropped_and_full_ones_kept);
	tcase_add_test(tc, queue_status_positions_follow_claim_order);
	tcase_add_test(tc, settle_rejects_malformed_calls);
	tcase_add_test(tc, ops_views_answer);
	tcase_add_test(tc, bulk_ids_follow_input_order);
	tcase_add_test(tc, dead_job_with_a_taken_dedupe_key_is_not_retried);
	tcase_add_test(tc, paused_jobs_are_not_counted_ahead);
	tcase_add_test(tc, settings_must_be_positive_and_present);
	tcase_add_test(tc, busy_worker_stays_alive);
	tcase_add_test(tc, released_job_keeps_its_place);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return t_run(make_suite());
}
