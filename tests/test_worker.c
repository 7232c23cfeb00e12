/* test_worker.c — sluice-worker processes against a real PostgreSQL: crashes, outages, scale, signals. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "tests/harness.h"

static char url[256];
static PGconn *db;
static long long org;
static char log_path[128];

#define MAX_WORKERS 8

static void
setup(void)
{
	t_db_create(url, sizeof(url));
	db = t_connect(url);
	org = t_org(db, "acme");
	snprintf(log_path, sizeof(log_path), "/tmp/sluice-worker-test-%ld.log", (long)getpid());
	unlink(log_path);
}

static void
teardown(void)
{
	PQfinish(db);
	unlink(log_path);
}

/* Awaits sql; on timeout the workers' log says why (t_wait_until_log). */
static int
wait_sql(const char *sql, long ms)
{
	return t_wait_until_log(db, sql, ms, log_path);
}

/* Waits until the worker log holds `needle`. */
static int
wait_log(const char *needle, long ms)
{
	long long deadline = t_now_ms() + ms;

	for (;;) {
		char *log = t_slurp(log_path);
		int found = log && strstr(log, needle);

		free(log);
		if (found)
			return 1;
		if (t_now_ms() >= deadline)
			return 0;
		usleep(20 * 1000);
	}
}

/* Every line of the worker log is one JSON object. */
static void
assert_log_is_json_lines(void)
{
	char *log = t_slurp(log_path), *line, *save = NULL;
	int lines = 0;

	ck_assert_ptr_nonnull(log);
	for (line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct sl_err err;
		json_object *o = NULL;

		ck_assert_msg(sl_json_parse(line, strlen(line), &o, &err) == 0, "not JSON: %s", line);
		ck_assert(json_object_is_type(o, json_type_object));
		json_object_put(o);
		lines++;
	}
	ck_assert_int_gt(lines, 0);
	free(log);
}

START_TEST(runs_every_builtin_kind_and_logs_json)
{
	const char *env[] = { NULL };
	pid_t w;
	char *log;

	t_execf(db, "SELECT sluice.enqueue(%lld, 'noop')", org);
	t_execf(db, "SELECT sluice.enqueue(%lld, 'sleep', '{\"ms\": 50}')", org);
	t_execf(db, "SELECT sluice.enqueue(%lld, 'fail',"
	            " '{\"error\": \"no such customer\", \"permanent\": true}')", org);
	t_execf(db, "SELECT sluice.enqueue(%lld, 'mystery')", org);
	t_execf(db, "SELECT sluice.enqueue(%lld, 'sleep', '{\"ms\": \"soon\"}')", org);
	w = t_worker_start(url, env, log_path);
	ck_assert(wait_sql("SELECT count(*) = 5 FROM sluice.job_archive", 30000));
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job_archive WHERE state = 'done'"
	                           " AND kind IN ('noop', 'sleep') AND attempts = 1"), 2);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.dead_jobs WHERE kind = 'fail'"
	                           " AND last_error = 'no such customer' AND attempts = 1"), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.dead_jobs WHERE kind = 'mystery'"
	                           " AND last_error = 'no handler for kind mystery in this worker'"), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.dead_jobs WHERE kind = 'sleep'"
	                           " AND last_error LIKE 'field ms must be an integer%'"), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.workers WHERE status IN ('idle', 'busy')"
	                           " AND pid > 0 AND host <> ''"), 1);
	ck_assert_int_eq(t_stop(w, SIGTERM), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.workers WHERE status = 'stopped'"), 1);
	assert_log_is_json_lines();
	log = t_slurp(log_path);
	ck_assert_msg(strstr(log, "\"msg\":\"job done\"") && strstr(log, "\"kind\":\"sleep\"") &&
	              strstr(log, "\"duration_ms\":") && strstr(log, "\"org_id\":"), "%s", log);
	free(log);
}
END_TEST

/*
 * kill -9 a worker holding a sleep job: after its lease the job is back in the
 * queue, another worker finishes it exactly once, and the dead worker's late
 * completion is refused.
 */
START_TEST(killed_worker_job_is_finished_elsewhere_exactly_once)
{
	const char *env[] = { "SLUICE_WORKER_POLL_INTERVAL=60s", NULL };
	char token[64], first_worker[128], sql[640];
	PGresult *r;
	pid_t a, b;
	long long id;

	t_exec(db, "UPDATE sluice.setting SET value = '2 seconds' WHERE name = 'lease'");
	id = t_intf(db, "SELECT job_id FROM sluice.enqueue(%lld, 'sleep', '{\"ms\": 4000}')", org);
	a = t_worker_start(url, env, log_path);
	ck_assert(wait_sql("SELECT count(*) = 1 FROM sluice.job WHERE state = 'running'", 20000));
	r = t_query(db, "SELECT claim_token, worker_id FROM sluice.job", 0, NULL);
	snprintf(token, sizeof(token), "%s", PQgetvalue(r, 0, 0));
	snprintf(first_worker, sizeof(first_worker), "%s", PQgetvalue(r, 0, 1));
	PQclear(r);
	ck_assert_int_eq(t_stop(a, SIGKILL), 128 + SIGKILL);

	b = t_worker_start(url, env, log_path);
	ck_assert(wait_sql("SELECT count(*) = 1 FROM sluice.job_archive", 40000));
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM sluice.job_archive WHERE id = %lld"
	         " AND state = 'done' AND attempts = 2 AND worker_id <> '%s'"
	         " AND errors -> 0 ->> 'error' = 'lease expired on worker %s'",
	         id, first_worker, first_worker);
	ck_assert_int_eq(t_int(db, sql), 1);
	/* Back within moments of the lease ending, not at some later sweep: the
	 * second attempt started less than 5 s after the 2 s lease ran out. */
	snprintf(sql, sizeof(sql), "SELECT ((started_at - (errors -> 0 ->> 'at')::timestamptz)"
	         " < interval '5 seconds')::int FROM sluice.job_archive WHERE id = %lld", id);
	ck_assert_int_eq(t_int(db, sql) , 1);

	/* The killed worker's completion, had it come late, is refused. */
	snprintf(sql, sizeof(sql), "SELECT sluice.complete_job(%lld, '%s')::int", id, token);
	ck_assert_int_eq(t_int(db, sql), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.jobs"), 1);
	ck_assert_int_eq(t_stop(b, SIGTERM), 0);
}
END_TEST

/* Every worker is inside a long job, and one of them dies: the others still
 * put its job back when the lease runs out. */
START_TEST(busy_workers_still_reap_a_lost_one)
{
	const char *env[] = { "SLUICE_WORKER_REAP_INTERVAL=200ms", NULL };
	pid_t a, b;

	t_exec(db, "UPDATE sluice.setting SET value = '2 seconds' WHERE name = 'lease'");
	t_execf(db, "SELECT sluice.enqueue(%lld, 'sleep', '{\"ms\": 20000}')", org);
	b = t_worker_start(url, env, log_path);
	ck_assert(wait_sql("SELECT count(*) = 1 FROM sluice.job WHERE state = 'running'", 20000));
	t_execf(db, "SELECT sluice.enqueue(%lld, 'sleep', '{\"ms\": 20000}')", org);
	a = t_worker_start(url, env, log_path);
	ck_assert(wait_sql("SELECT count(*) = 2 FROM sluice.job WHERE state = 'running'", 20000));
	ck_assert_int_eq(t_stop(a, SIGKILL), 128 + SIGKILL);
	/* b is sleeping inside its own job, yet a's job comes back. */
	ck_assert(wait_sql("SELECT count(*) = 1 FROM sluice.job WHERE state = 'retrying'"
	                   " AND last_error LIKE 'lease expired on worker %'", 15000));
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job WHERE state = 'running'"), 1);
	ck_assert_int_eq(t_stop(b, SIGKILL), 128 + SIGKILL);
}
END_TEST

START_TEST(sigterm_gives_back_held_jobs_and_exits_zero)
{
	const char *env[] = { "SLUICE_WORKER_RELEASE_AFTER=60s", "SLUICE_SHUTDOWN_GRACE=300ms", NULL };
	pid_t w;
	int i;

	for (i = 0; i < 5; i++)
		t_execf(db, "SELECT sluice.enqueue(%lld, 'sleep', '{\"ms\": 30000}')", org);
	w = t_worker_start(url, env, log_path);
	ck_assert(wait_sql("SELECT count(*) = 5 FROM sluice.job WHERE state = 'running'", 20000));
	ck_assert_int_eq(t_stop(w, SIGTERM), 0);
	/* Nothing lost, no attempt spent: all five are queued again. */
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job WHERE state = 'queued'"
	                           " AND attempts = 0 AND claim_token IS NULL"), 5);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job_archive"), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.workers WHERE status = 'stopped'"), 1);
}
END_TEST

START_TEST(slow_job_releases_the_rest_of_its_batch)
{
	const char *env[] = { "SLUICE_WORKER_RELEASE_AFTER=200ms", NULL };
	pid_t a, b;
	int i;

	for (i = 0; i < 4; i++)
		t_execf(db, "SELECT sluice.enqueue(%lld, 'sleep', '{\"ms\": 1500}')", org);
	a = t_worker_start(url, env, log_path);
	ck_assert(wait_sql("SELECT count(*) = 4 FROM sluice.job WHERE state = 'running'", 20000));
	/* After 200 ms the three it has not started go back, attempts untouched. */
	ck_assert(wait_sql("SELECT count(*) = 3 FROM sluice.job WHERE state = 'queued'"
	                   " AND attempts = 0", 20000));
	b = t_worker_start(url, env, log_path);
	ck_assert(wait_sql("SELECT count(*) = 4 FROM sluice.job_archive WHERE state = 'done'", 60000));
	ck_assert_int_eq(t_int(db, "SELECT count(DISTINCT worker_id) FROM sluice.job_archive"), 2);
	ck_assert_int_eq(t_int(db, "SELECT max(attempts) FROM sluice.job_archive"), 1);
	ck_assert_int_eq(t_stop(a, SIGTERM), 0);
	ck_assert_int_eq(t_stop(b, SIGTERM), 0);
}
END_TEST

START_TEST(heartbeats_keep_a_long_job)
{
	const char *env[] = { NULL };
	pid_t w;

	t_exec(db, "UPDATE sluice.setting SET value = '1 second' WHERE name = 'lease'");
	t_execf(db, "SELECT sluice.enqueue(%lld, 'sleep', '{\"ms\": 3500}')", org);
	w = t_worker_start(url, env, log_path);
	ck_assert(wait_sql("SELECT count(*) = 1 FROM sluice.job_archive", 30000));
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job_archive WHERE state = 'done'"
	                           " AND attempts = 1 AND errors = '[]'"), 1);
	ck_assert_int_eq(t_stop(w, SIGTERM), 0);
}
END_TEST

START_TEST(kind_timeout_fails_the_attempt)
{
	const char *env[] = { NULL };
	pid_t w;

	t_exec(db, "UPDATE sluice.kind_policy SET timeout = '300 ms' WHERE kind = 'sleep'");
	t_execf(db, "SELECT sluice.enqueue(%lld, 'sleep', '{\"ms\": 20000}')", org);
	w = t_worker_start(url, env, log_path);
	ck_assert(wait_sql("SELECT count(*) = 1 FROM sluice.job WHERE state = 'retrying'"
	                   " AND last_error LIKE 'job timed out after %'", 20000));
	ck_assert_int_eq(t_stop(w, SIGTERM), 0);
}
END_TEST

/* With a 60 s poll interval, only the NOTIFY can have woken the worker. */
START_TEST(sleeping_worker_wakes_on_notify)
{
	const char *env[] = { "SLUICE_WORKER_POLL_INTERVAL=60s", NULL };
	pid_t w = t_worker_start(url, env, log_path);

	ck_assert(wait_sql("SELECT count(*) = 1 FROM sluice.worker WHERE waiting_until > now() + interval '30 s'",
	                   20000));
	t_execf(db, "SELECT sluice.enqueue(%lld, 'noop')", org);
	ck_assert(wait_sql("SELECT count(*) = 1 FROM sluice.job_archive WHERE state = 'done'", 15000));
	/* A job due in 2 s wakes it at its time too (the wake-up was recomputed). */
	t_execf(db, "SELECT sluice.enqueue(%lld, 'noop', '{}', 3, now() + interval '2 seconds')", org);
	ck_assert(wait_sql("SELECT count(*) = 2 FROM sluice.job_archive WHERE state = 'done'", 15000));
	ck_assert_int_eq(t_stop(w, SIGTERM), 0);
}
END_TEST

START_TEST(works_without_listen)
{
	const char *env[] = { "SLUICE_WORKER_LISTEN=off", "SLUICE_WORKER_POLL_INTERVAL=200ms", NULL };
	pid_t w = t_worker_start(url, env, log_path);

	ck_assert(wait_sql("SELECT count(*) = 1 FROM sluice.worker WHERE waiting_until IS NOT NULL", 20000));
	t_execf(db, "SELECT sluice.enqueue(%lld, 'noop')", org);
	ck_assert(wait_sql("SELECT count(*) = 1 FROM sluice.job_archive WHERE state = 'done'", 15000));
	ck_assert(wait_log("\"listen\":false", 1000));
	ck_assert_int_eq(t_stop(w, SIGTERM), 0);
}
END_TEST

START_TEST(reconnects_when_its_session_is_killed)
{
	const char *env[] = { NULL };
	pid_t w = t_worker_start(url, env, log_path);

	ck_assert(wait_sql("SELECT count(*) = 1 FROM pg_stat_activity WHERE datname = current_database()"
	                   " AND application_name = 'sluice-worker'", 20000));
	t_exec(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
	           " WHERE datname = current_database() AND application_name = 'sluice-worker'");
	t_execf(db, "SELECT sluice.enqueue(%lld, 'noop')", org);
	ck_assert(wait_sql("SELECT count(*) = 1 FROM sluice.job_archive WHERE state = 'done'", 30000));
	ck_assert(wait_log("reconnected to the database", 10000));
	ck_assert_int_eq(t_stop(w, SIGTERM), 0);
}
END_TEST

START_TEST(sighup_reloads_the_config_file)
{
	char conf_path[128], env_conf[160];
	const char *env[] = { env_conf, NULL };
	FILE *f;
	pid_t w;

	snprintf(conf_path, sizeof(conf_path), "/tmp/sluice-worker-conf-%ld", (long)getpid());
	snprintf(env_conf, sizeof(env_conf), "SLUICE_CONFIG=%s", conf_path);
	f = fopen(conf_path, "w");
	fprintf(f, "SLUICE_WORKER_BATCH=1\n");
	fclose(f);
	w = t_worker_start(url, env, log_path);
	ck_assert(wait_log("\"batch\":1", 20000));
	f = fopen(conf_path, "w");
	fprintf(f, "SLUICE_WORKER_BATCH=7\n");
	fclose(f);
	kill(w, SIGHUP);
	/* The loop applies it when it next wakes; a job makes sure it does. */
	t_execf(db, "SELECT sluice.enqueue(%lld, 'noop')", org);
	ck_assert(wait_log("\"msg\":\"configuration reloaded\",\"batch\":7", 20000));
	ck_assert_int_eq(t_stop(w, SIGTERM), 0);
	unlink(conf_path);
}
END_TEST

static void
start_many(pid_t *pids, int n, const char *const *env)
{
	int i;

	for (i = 0; i < n; i++)
		pids[i] = t_worker_start(url, env, log_path);
}

static void
stop_many(pid_t *pids, int n)
{
	int i;

	for (i = 0; i < n; i++)
		ck_assert_int_eq(t_stop(pids[i], SIGTERM), 0);
}

/* 8 workers, 20,000 jobs: every job completed exactly once (rows, not logs). */
START_TEST(eight_workers_complete_twenty_thousand_jobs_once_each)
{
	const char *env[] = { "SLUICE_LOG_LEVEL=warn", NULL };
	pid_t pids[MAX_WORKERS];

	start_many(pids, 8, env);
	t_execf(db, "SELECT count(*) FROM sluice.enqueue_jobs(%lld, array_fill('noop'::text, ARRAY[20000]))",
	            org);
	ck_assert(wait_sql("SELECT count(*) = 20000 FROM sluice.job_archive", 180000));
	ck_assert_int_eq(t_int(db, "SELECT count(DISTINCT id) FROM sluice.job_archive"
	                           " WHERE state = 'done' AND attempts = 1"), 20000);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job"), 0);
	ck_assert_int_ge(t_int(db, "SELECT count(DISTINCT worker_id) FROM sluice.job_archive"), 2);
	stop_many(pids, 8);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.workers WHERE status = 'stopped'"), 8);
}
END_TEST

/* PostgreSQL restarted under 4 busy workers: all 5,000 jobs done, none twice. */
START_TEST(postgres_restart_loses_and_repeats_nothing)
{
	const char *env[] = { "SLUICE_LOG_LEVEL=warn", NULL };
	char cmd[512];
	pid_t pids[4];

	t_execf(db, "SELECT count(*) FROM sluice.enqueue_jobs(%lld, array_fill('sleep'::text, ARRAY[5000]),"
	            " array_fill('{\"ms\": 1}'::jsonb, ARRAY[5000]))", org);
	start_many(pids, 4, env);
	ck_assert(wait_sql("SELECT count(*) >= 500 FROM sluice.job_archive", 60000));
	PQfinish(db);
	snprintf(cmd, sizeof(cmd), "%s/tests/pg_cluster.sh restart %s", t_source_dir, t_pgdir());
	ck_assert_int_eq(system(cmd), 0);
	db = t_connect(url);
	ck_assert_int_lt(t_int(db, "SELECT count(*) FROM sluice.job_archive"), 5000);
	ck_assert(wait_sql("SELECT count(*) = 5000 FROM sluice.job_archive", 180000));
	ck_assert_int_eq(t_int(db, "SELECT count(DISTINCT id) FROM sluice.job_archive WHERE state = 'done'"),
	                 5000);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job"), 0);
	stop_many(pids, 4);
	ck_assert(wait_log("lost the database connection", 1000));
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("worker");
	TCase *tc = tcase_create("process");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, runs_every_builtin_kind_and_logs_json);
	tcase_add_test(tc, killed_worker_job_is_finished_elsewhere_exactly_once);
	tcase_add_test(tc, busy_workers_still_reap_a_lost_one);
	tcase_add_test(tc, sigterm_gives_back_held_jobs_and_exits_zero);
	tcase_add_test(tc, slow_job_releases_the_rest_of_its_batch);
	tcase_add_test(tc, heartbeats_keep_a_long_job);
	tcase_add_test(tc, kind_timeout_fails_the_attempt);
	tcase_add_test(tc, sleeping_worker_wakes_on_notify);
	tcase_add_test(tc, works_without_listen);
	tcase_add_test(tc, reconnects_when_its_session_is_killed);
	tcase_add_test(tc, sighup_reloads_the_config_file);
	tcase_add_test(tc, eight_workers_complete_twenty_thousand_jobs_once_each);
	tcase_add_test(tc, postgres_restart_loses_and_repeats_nothing);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return t_run(make_suite());
}
