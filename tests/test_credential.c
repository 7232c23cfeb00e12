/* test_credential.c — credentials and token refresh across real workers, against a real OAuth 2.0 server. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapters/credential.h"
#include "adapters/oauth.h"
#include "common/buf.h"
#include "common/db.h"
#include "common/json.h"
#include "common/secret.h"
#include "tests/harness.h"

#define N_WORKERS 8

static char url[256];
static PGconn *db;
static long long org;
static char log_path[128];
static struct t_oauth oauth;
static struct sl_db *sdb;
static struct sl_keyring *kr;
static struct sl_cred_env env;
static pid_t workers[N_WORKERS];
static int n_workers;

static void
setup(void)
{
	struct sl_err err;
	char sql[1024];

	t_use_master_key();
	t_db_create(url, sizeof(url));
	db = t_connect(url);
	org = t_org(db, "acme");
	snprintf(log_path, sizeof(log_path), "/tmp/sluice-credential-test-%ld.log", (long)getpid());
	unlink(log_path);
	t_oauth_start(&oauth);

	ck_assert_int_eq(sl_db_open(&sdb, url, "test_credential", &err), 0);
	ck_assert_int_eq(sl_keyring_from_env(&kr, &err), 0);
	env = (struct sl_cred_env){ .db = sdb, .kr = kr, .actor = "test" };
	ck_assert_int_eq(sl_oauth_app_store(&env, org, "dv360", oauth.client_id, oauth.client_secret,
	                                    &err), 0);
	snprintf(sql, sizeof(sql),
	         "SELECT sluice.set_provider_override(%lld, 'dv360', '%s/authorize', '%s/token', '%s');"
	         "SELECT sluice.set_provider_override(%lld, 'paypal', NULL, '%s/token', '%s')",
	         org, oauth.url, oauth.url, oauth.url, org, oauth.url, oauth.url);
	t_exec(db, sql);
}

static void
stop_workers(void)
{
	int i;

	for (i = 0; i < n_workers; i++) {
		t_stop(workers[i], SIGTERM);
		t_wait_exit(workers[i], 20000);
	}
	n_workers = 0;
}

static void
teardown(void)
{
	stop_workers();
	t_oauth_stop(&oauth);
	sl_keyring_free(kr);
	sl_db_free(sdb);
	PQfinish(db);
	unlink(log_path);
}

static void
start_workers(int n)
{
	static const char *const worker_env[] = {
		"SLUICE_WORKER_BATCH=1", "SLUICE_WORKER_REAP_INTERVAL=200ms", NULL
	};

	for (n_workers = 0; n_workers < n; n_workers++)
		workers[n_workers] = t_worker_start(url, worker_env, log_path);
}

/* Awaits sql; on timeout the workers' log says why (t_wait_until_log). */
static int
wait_sql(const char *sql, long ms)
{
	return t_wait_until_log(db, sql, ms, log_path);
}

/* A connected dv360 connector, authorised through the real code flow with PKCE. */
struct grant {
	char connector[40];
	char access[2048];
	char refresh[256];
};

static void
authorise(struct grant *g, const char *existing)
{
	static const char *const scopes[] = { "https://www.googleapis.com/auth/display-video" };
	struct sl_oauth_client client = { 0 };
	struct sl_oauth_token t = { .expires_in = -1 };
	struct sl_buf authz;
	struct sl_err err;
	char redirect[128], challenge[44], code[256], state[128], verifier[44], tokenurl[128];

	snprintf(redirect, sizeof(redirect), "http://127.0.0.1:1/oauth/callback");
	snprintf(tokenurl, sizeof(tokenurl), "%s/token", oauth.url);
	sl_secret_derive(kr, "pkce", "state-1", verifier);
	sl_oauth_pkce_challenge(verifier, challenge);
	sl_buf_init(&authz, 8192);
	{
		char base[128];

		snprintf(base, sizeof(base), "%s/authorize", oauth.url);
		ck_assert_int_eq(sl_oauth_authorize_url(&authz, base, oauth.client_id, redirect, scopes, 1,
		                                        "state-1", challenge, NULL, &err), 0);
	}
	ck_assert_int_eq(t_oauth_authorize(&oauth, authz.data, code, sizeof(code), state,
	                                   sizeof(state)), 0);
	ck_assert_str_eq(state, "state-1");
	client.token_url = tokenurl;
	client.client_id = oauth.client_id;
	client.client_secret = oauth.client_secret;
	ck_assert_int_eq(sl_oauth_exchange_code(&client, code, redirect, verifier, &t, &err), 0);
	ck_assert_ptr_nonnull(t.access_token);
	ck_assert_ptr_nonnull(t.refresh_token);
	snprintf(g->access, sizeof(g->access), "%s", t.access_token);
	snprintf(g->refresh, sizeof(g->refresh), "%s", t.refresh_token);

	if (existing) {
		snprintf(g->connector, sizeof(g->connector), "%s", existing);
	} else {
		char sql[256];

		snprintf(sql, sizeof(sql), "SELECT sluice.create_connector(%lld, 'DV360', 'Acme DV360')",
		         org);
		t_text(db, sql, g->connector, sizeof(g->connector));
	}
	ck_assert_int_eq(sl_db_exec(sdb, "BEGIN", 0, NULL, &err), 0);
	ck_assert_int_eq(sl_credential_connected(&env, g->connector, &t, "dsp_acc_456", "Acme Corp",
	                                         &err), 0);
	ck_assert_int_eq(sl_db_exec(sdb, "COMMIT", 0, NULL, &err), 0);
	sl_oauth_token_release(&t);
	sl_buf_release(&authz);
}

/* The connector's secrets as stored, opened with the test's keyring. */
static json_object *
secrets_of(const char *connector)
{
	json_object *s = NULL;
	struct sl_err err;

	ck_assert_int_eq(sl_credential_load(&env, connector, 0, &s, NULL, &err), 0);
	return s;
}

static const char *
member(json_object *o, const char *name)
{
	json_object *v;

	return json_object_object_get_ex(o, name, &v) ? json_object_get_string(v) : "";
}

static void
enqueue_checks(const char *connector, int n)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
	         "SELECT sluice.enqueue(%lld, 'connector.check', '{\"path\": \"/resource\"}', 3,"
	         " NULL, NULL, NULL, '%s') FROM generate_series(1, %d)", org, connector, n);
	t_exec(db, sql);
}

/*
 * Eight workers start checks on one connector whose token has expired, with
 * the token endpoint slowed down so that they all pile up behind it: the
 * provider sees exactly one refresh, and every check uses the new token.
 */
START_TEST(one_refresh_for_eight_workers)
{
	struct grant g;
	long long refreshes, version, resources;
	json_object *s;

	authorise(&g, NULL);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.connector WHERE id = '%s'"
	                            " AND status = 'connected' AND account_id = 'dsp_acc_456'",
	                            g.connector), 1);
	version = t_intf(db, "SELECT version FROM sluice.credential WHERE connector_id = '%s'",
	                 g.connector);
	refreshes = t_oauth_stat(&oauth, "refresh_token");
	resources = t_oauth_stat(&oauth, "resource");
	t_execf(db, "UPDATE sluice.credential SET access_expires_at = now() - interval '1 minute'"
	            " WHERE connector_id = '%s'", g.connector);
	t_oauth_control(&oauth, "delay", "{\"ms\": 500}");
	enqueue_checks(g.connector, 200);

	start_workers(N_WORKERS);
	ck_assert(wait_sql("SELECT count(*) = 200 FROM sluice.job_archive"
	                   " WHERE kind = 'connector.check' AND state = 'done'", 60000));

	ck_assert_int_eq(t_oauth_stat(&oauth, "refresh_token") - refreshes, 1);
	ck_assert_int_eq(t_oauth_stat(&oauth, "resource") - resources, 200);
	ck_assert_int_eq(t_intf(db, "SELECT version FROM sluice.credential WHERE connector_id = '%s'",
	                            g.connector), version + 1);
	/* The refresh token was rotated and the new one stored. */
	s = secrets_of(g.connector);
	ck_assert_str_ne(member(s, "refresh_token"), g.refresh);
	ck_assert_str_ne(member(s, "access_token"), g.access);
	json_object_put(s);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.credential WHERE connector_id = '%s'"
	                            " AND access_expires_at > now() + interval '30 minutes'"
	                            " AND refreshed_at IS NOT NULL", g.connector), 1);
	/* Every decrypt by a worker is in the audit log, with who and for which job. */
	ck_assert_int_ge(t_intf(db, "SELECT count(*) FROM sluice.audit WHERE action = 'credential.decrypt'"
	                            " AND target = 'connector:%s' AND actor LIKE 'worker:%%'"
	                            " AND outcome = 'ok' AND detail ? 'job_id'", g.connector), 200);
	/* The next refresh is scheduled before the new token expires. */
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.job j JOIN sluice.credential c"
	                            " ON c.connector_id = j.connector_id WHERE j.kind = 'oauth.refresh'"
	                            " AND j.connector_id = '%s' AND j.run_at < c.access_expires_at"
	                            " AND j.run_at > now()", g.connector), 1);
}
END_TEST

/* A scheduled refresh that comes due asks once, rotates, and schedules the next. */
START_TEST(scheduled_refresh_rotates)
{
	struct grant g;
	long long refreshes;
	json_object *s;
	char old_refresh[256];

	authorise(&g, NULL);
	snprintf(old_refresh, sizeof(old_refresh), "%s", g.refresh);
	refreshes = t_oauth_stat(&oauth, "refresh_token");
	/* Inside the margin: the scheduled job is due now. */
	t_execf(db, "UPDATE sluice.credential SET access_expires_at = now() + interval '1 minute'"
	            " WHERE connector_id = '%s'", g.connector);
	t_execf(db, "UPDATE sluice.job SET run_at = now() WHERE kind = 'oauth.refresh'"
	            " AND connector_id = '%s'", g.connector);
	start_workers(1);
	ck_assert(wait_sql("SELECT count(*) = 1 FROM sluice.job_archive WHERE kind = 'oauth.refresh'"
	                   " AND state = 'done' AND result = '{\"refreshed\": true}'", 30000));
	ck_assert_int_eq(t_oauth_stat(&oauth, "refresh_token") - refreshes, 1);
	s = secrets_of(g.connector);
	ck_assert_str_ne(member(s, "refresh_token"), old_refresh);
	json_object_put(s);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.job WHERE kind = 'oauth.refresh'"
	                            " AND connector_id = '%s' AND run_at > now() + interval '30 minutes'",
	                            g.connector), 1);
	/* The old refresh token is dead at the server: rotation really happened there. */
	{
		struct sl_oauth_client client = { 0 };
		struct sl_oauth_token t = { .expires_in = -1 };
		struct sl_err err;
		char tokenurl[128];

		snprintf(tokenurl, sizeof(tokenurl), "%s/token", oauth.url);
		client.token_url = tokenurl;
		client.client_id = oauth.client_id;
		client.client_secret = oauth.client_secret;
		ck_assert_int_ne(sl_oauth_refresh(&client, old_refresh, &t, &err), 0);
		ck_assert_str_eq(t.error, "invalid_grant");
		sl_oauth_token_release(&t);
	}
}
END_TEST

/*
 * A revoked grant: one refresh attempt, the connector becomes
 * reauth_required with a message and an oauth_revoked event, its jobs are
 * held (not failed); re-authorising releases them and they finish.
 */
START_TEST(revoked_grant_holds_jobs_until_reauthorised)
{
	struct grant g, again;
	long long refreshes;

	authorise(&g, NULL);
	t_oauth_control(&oauth, "revoke", "{}");
	t_execf(db, "UPDATE sluice.credential SET access_expires_at = now() - interval '1 minute'"
	            " WHERE connector_id = '%s'", g.connector);
	refreshes = t_oauth_stat(&oauth, "refresh_token");
	enqueue_checks(g.connector, 20);
	start_workers(4);
	/* Held: the waiting ones by the status change, the running ones by their worker. */
	ck_assert(wait_sql("SELECT count(*) = 20 FROM sluice.job WHERE kind = 'connector.check'"
	                   " AND state <> 'running' AND run_at > now() + interval '30 minutes'"
	                   " AND hold_reason LIKE '%reauth_required%'", 30000));
	ck_assert_int_eq(t_oauth_stat(&oauth, "refresh_token") - refreshes, 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.connector WHERE id = '%s'"
	                            " AND status = 'reauth_required'"
	                            " AND status_message LIKE '%%revoked%%invalid_grant%%Reconnect%%'",
	                            g.connector), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.event WHERE connector_id = '%s'"
	                            " AND type = 'oauth_revoked' AND data ->> 'reason' = 'invalid_grant'",
	                            g.connector), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.event WHERE connector_id = '%s'"
	                            " AND type = 'connector_status_changed' AND data ->> 'from' = 'connected'"
	                            " AND data ->> 'to' = 'reauth_required'", g.connector), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.job_archive WHERE connector_id = '%s'"
	                            " AND state = 'dead'", g.connector), 0);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.job WHERE connector_id = '%s'"
	                            " AND kind = 'connector.check' AND attempts = 0"
	                            " AND hold_reason LIKE '%%reauth_required%%'", g.connector), 20);

	/* A person reconnects: the jobs run, with the new grant. */
	authorise(&again, g.connector);
	ck_assert(wait_sql("SELECT count(*) = 20 FROM sluice.job_archive WHERE kind = 'connector.check'"
	                   " AND state = 'done'", 30000));
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.event WHERE connector_id = '%s'"
	                            " AND type = 'oauth_connected'", g.connector), 2);
}
END_TEST

/* Client credentials (PayPal): the first oauth.refresh job fetches a token and connects. */
START_TEST(client_credentials_connects)
{
	json_object *secrets = json_object_new_object(), *s;
	struct sl_err err;
	char connector[40], sql[256];

	snprintf(sql, sizeof(sql), "SELECT sluice.create_connector(%lld, 'paypal', 'Shop PayPal')", org);
	t_text(db, sql, connector, sizeof(connector));
	json_object_object_add(secrets, "client_id", json_object_new_string(oauth.client_id));
	json_object_object_add(secrets, "client_secret", json_object_new_string(oauth.client_secret));
	ck_assert_int_eq(sl_credential_store(&env, connector, secrets, -1, 0, NULL, &err), 0);
	json_object_put(secrets);
	snprintf(sql, sizeof(sql), "SELECT sluice.enqueue(%lld, 'oauth.refresh', '{}', 2, NULL, NULL,"
	         " NULL, '%s')", org, connector);
	t_exec(db, sql);
	start_workers(1);
	ck_assert(wait_sql("SELECT count(*) = 1 FROM sluice.job_archive WHERE kind = 'oauth.refresh'"
	                   " AND state = 'done'", 30000));
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.connector WHERE id = '%s'"
	                            " AND status = 'connected'", connector), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.event WHERE connector_id = '%s'"
	                            " AND type = 'oauth_connected'", connector), 1);
	s = secrets_of(connector);
	ck_assert_str_ne(member(s, "access_token"), "");
	ck_assert_str_eq(member(s, "client_secret"), oauth.client_secret);
	json_object_put(s);
	ck_assert_int_eq(t_oauth_stat(&oauth, "client_credentials"), 1);
}
END_TEST

/* Whether needle occurs in the n bytes of hay. */
static int
contains(const char *hay, size_t n, const char *needle)
{
	size_t m = strlen(needle), i;

	for (i = 0; m && i + m <= n; i++) {
		if (!memcmp(hay + i, needle, m))
			return 1;
	}
	return 0;
}

/*
 * Secrets planted everywhere they can be (an API key, an OAuth app secret,
 * access and refresh tokens that workers used and refreshed) are found
 * neither in a pg_dump of the database nor in the workers' logs.
 */
START_TEST(no_secret_in_dump_or_logs)
{
	static const char api_key[] = "PLANTED-ttd-api-key-7f3a9c";
	json_object *secrets = json_object_new_object(), *s;
	struct grant g;
	struct sl_err err;
	char connector[40], sql[512], cmd[1024], *dump, *logs;
	char current_access[2048], current_refresh[256];
	const char *planted[6];
	int i, n_planted = 0;

	snprintf(sql, sizeof(sql), "SELECT sluice.create_connector(%lld, 'ttd', 'Acme TTD')", org);
	t_text(db, sql, connector, sizeof(connector));
	json_object_object_add(secrets, "api_key", json_object_new_string(api_key));
	ck_assert_int_eq(sl_credential_store(&env, connector, secrets, -1, 0, NULL, &err), 0);
	json_object_put(secrets);

	authorise(&g, NULL);
	t_execf(db, "UPDATE sluice.credential SET access_expires_at = now() - interval '1 minute'"
	            " WHERE connector_id = '%s'", g.connector);
	enqueue_checks(g.connector, 5);
	start_workers(2);
	ck_assert(wait_sql("SELECT count(*) = 5 FROM sluice.job_archive WHERE kind = 'connector.check'"
	                   " AND state = 'done'", 30000));
	stop_workers();
	s = secrets_of(g.connector);
	snprintf(current_access, sizeof(current_access), "%s", member(s, "access_token"));
	snprintf(current_refresh, sizeof(current_refresh), "%s", member(s, "refresh_token"));
	json_object_put(s);

	planted[n_planted++] = api_key;
	planted[n_planted++] = oauth.client_secret;
	planted[n_planted++] = g.access;
	planted[n_planted++] = g.refresh;
	planted[n_planted++] = current_access;
	planted[n_planted++] = current_refresh;

	snprintf(cmd, sizeof(cmd), "pg_dump --no-owner '%s' > /tmp/sluice-dump-%ld.sql", url,
	         (long)getpid());
	ck_assert_int_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "/tmp/sluice-dump-%ld.sql", (long)getpid());
	dump = t_slurp(cmd);
	unlink(cmd);
	ck_assert_ptr_nonnull(dump);
	ck_assert_msg(strstr(dump, "CREATE TABLE sluice.credential"), "the dump is not of the database");
	ck_assert_msg(strstr(dump, connector), "the dump does not hold the connectors");
	logs = t_slurp(log_path);
	ck_assert_ptr_nonnull(logs);
	ck_assert_msg(strstr(logs, "job done"), "the workers' log is not the one that ran the jobs");
	for (i = 0; i < n_planted; i++) {
		ck_assert_msg(strlen(planted[i]) >= 16, "planted secret %d is too short to search", i);
		ck_assert_msg(!contains(dump, strlen(dump), planted[i]), "secret %d is in the dump", i);
		ck_assert_msg(!contains(logs, strlen(logs), planted[i]), "secret %d is in the log", i);
	}
	free(dump);
	free(logs);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("credential");
	TCase *tc = tcase_create("refresh");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, one_refresh_for_eight_workers);
	tcase_add_test(tc, scheduled_refresh_rotates);
	tcase_add_test(tc, revoked_grant_holds_jobs_until_reauthorised);
	tcase_add_test(tc, client_credentials_connects);
	tcase_add_test(tc, no_secret_in_dump_or_logs);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return t_run(make_suite());
}
