/* test_connectors.c — the connector model's SQL on a real PostgreSQL: providers, status, holds, events, OAuth state. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Runs sql expecting an error with this SQLSTATE; returns the message. */
static void
expect_error(const char *sql, const char *sqlstate, const char *needle)
{
	PGresult *r = PQexec(db, sql);

	ck_assert_msg(PQresultStatus(r) == PGRES_FATAL_ERROR, "expected an error from: %s", sql);
	ck_assert_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), sqlstate);
	ck_assert_msg(strstr(PQresultErrorMessage(r), needle), "message %s lacks %s",
	              PQresultErrorMessage(r), needle);
	PQclear(r);
}

/* Every type of MISSION.md is registered, with a valid auth kind, and the OAuth ones with URLs. */
START_TEST(provider_registry_is_complete)
{
	static const char *const types[] = {
		"woocommerce", "paypal", "dv360", "ttd", "meta", "google_ads", "sheets",
		"salesforce", "sfmc", "servicenow", "jira", "sftp", "webhook", "trustfile",
	};
	size_t i;

	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.provider"), 14);
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		ck_assert_msg(t_intf(db, "SELECT count(*) FROM sluice.provider WHERE type = '%s'",
		                     types[i]) == 1, "provider %s missing", types[i]);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.provider WHERE auth_kind = 'oauth2_code'"
	                           " AND (authorize_url !~ '^https://' OR token_url !~ '^https://')"), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.provider"
	                           " WHERE type IN ('paypal', 'sfmc')"
	                           " AND auth_kind = 'oauth2_client_credentials'"), 2);
	ck_assert_int_eq(t_int(db, "SELECT count(DISTINCT auth_kind) FROM sluice.provider"), 7);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.provider WHERE type = 'dv360'"
	                           " AND authorize_url = 'https://accounts.google.com/o/oauth2/v2/auth'"
	                           " AND authorize_params ->> 'access_type' = 'offline'"), 1);
}
END_TEST

/* An override moves one org's provider, not another's; placeholders fill from config. */
START_TEST(provider_override_is_per_org)
{
	long long other = t_org(db, "other");
	char sql[512], id[37], text[512];

	snprintf(sql, sizeof(sql), "SELECT sluice.set_provider_override(%lld, 'DV360',"
	         " 'http://127.0.0.1:9/authorize', 'http://127.0.0.1:9/token', NULL)", org);
	t_exec(db, sql);
	snprintf(sql, sizeof(sql), "SELECT token_url FROM sluice.provider_for(%lld, 'dv360')", org);
	t_text(db, sql, text, sizeof(text));
	ck_assert_str_eq(text, "http://127.0.0.1:9/token");
	snprintf(sql, sizeof(sql), "SELECT token_url || ' ' || api_base_url"
	         " FROM sluice.provider_for(%lld, 'dv360')", other);
	t_text(db, sql, text, sizeof(text));
	ck_assert_str_eq(text, "https://oauth2.googleapis.com/token https://displayvideo.googleapis.com/v3");

	t_connector(db, org, "servicenow", "{\"instance\": \"acme-dev\"}", id);
	snprintf(sql, sizeof(sql), "SELECT api_base_url FROM sluice.connector_endpoints('%s')", id);
	t_text(db, sql, text, sizeof(text));
	ck_assert_str_eq(text, "https://acme-dev.service-now.com/api/now");
	t_connector(db, org, "woocommerce", "{\"base_url\": \"https://shop.example.com/\"}", id);
	snprintf(sql, sizeof(sql), "SELECT api_base_url FROM sluice.connector_endpoints('%s')", id);
	t_text(db, sql, text, sizeof(text));
	ck_assert_str_eq(text, "https://shop.example.com/wp-json/wc/v3");
}
END_TEST

/* Config cannot smuggle a host or path into a URL template; required config is named. */
START_TEST(create_connector_checks_its_input)
{
	char sql[512];

	snprintf(sql, sizeof(sql), "SELECT sluice.create_connector(%lld, 'servicenow', 'x', NULL,"
	         " '{\"instance\": \"evil.com/x?\"}')", org);
	expect_error(sql, "23514", "config.instance");
	snprintf(sql, sizeof(sql), "SELECT sluice.create_connector(%lld, 'woocommerce', 'x', NULL,"
	         " '{\"base_url\": \"ftp://shop\"}')", org);
	expect_error(sql, "23514", "config.base_url");
	snprintf(sql, sizeof(sql), "SELECT sluice.create_connector(%lld, 'woocommerce', 'x')", org);
	expect_error(sql, "23502", "config.base_url is required");
	snprintf(sql, sizeof(sql), "SELECT sluice.create_connector(%lld, 'nosuch', 'x')", org);
	expect_error(sql, "23503", "unknown connector type");
	snprintf(sql, sizeof(sql), "SELECT sluice.create_connector(%lld, 'dv360', 'x', 'destination')",
	         org);
	expect_error(sql, "23514", "cannot be a destination");
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.connector"), 0);
}
END_TEST

/*
 * A status change goes through one function: it stamps the time, writes a
 * connector_status_changed event and NOTIFYs sluice_events at commit;
 * reauth_required holds the connector's jobs and connecting releases them.
 */
START_TEST(status_changes_hold_and_release_jobs)
{
	PGconn *listener = t_connect(url);
	PGnotify *n;
	char id[37], sql[512];
	struct pollfd pfd;
	int got = 0;

	t_connector(db, org, "dv360", NULL, id);
	PQclear(PQexec(listener, "LISTEN sluice_events"));
	snprintf(sql, sizeof(sql), "SELECT sluice.enqueue(%lld, 'noop', '{}', 3, NULL, NULL, NULL, '%s')"
	         " FROM generate_series(1, 3)", org, id);
	t_exec(db, sql);
	t_execf(db, "UPDATE sluice.connector SET status_changed_at = now() - interval '1 hour'"
	            " WHERE id = '%s'", id);

	ck_assert_int_eq(t_intf(db, "SELECT sluice.set_connector_status('%s', 'reauth_required',"
	                            " 'token revoked')::int", id), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.connector WHERE id = '%s'"
	                            " AND status_changed_at > now() - interval '1 minute'", id), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.job WHERE connector_id = '%s'"
	                            " AND run_at = sluice.held_run_at()"
	                            " AND hold_reason LIKE '%%reauth_required'", id), 3);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.event WHERE connector_id = '%s'"
	                            " AND type = 'connector_status_changed' AND data ->> 'from' = 'pending'"
	                            " AND data ->> 'to' = 'reauth_required'"
	                            " AND data ->> 'message' = 'token revoked'", id), 1);
	/* The same status again: no change, no event. */
	ck_assert_int_eq(t_intf(db, "SELECT sluice.set_connector_status('%s', 'reauth_required',"
	                            " 'token revoked')::int", id), 0);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.event WHERE connector_id = '%s'", id), 1);
	/* Jobs enqueued while held run once it is connected again. */
	ck_assert_int_eq(t_intf(db, "SELECT sluice.set_connector_status('%s', 'connected')::int", id), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.job WHERE connector_id = '%s'"
	                            " AND run_at <= now() AND hold_reason IS NULL", id), 3);

	/* The listener heard about both events, after the commits. */
	pfd.fd = PQsocket(listener);
	pfd.events = POLLIN;
	while (got < 2 && poll(&pfd, 1, 5000) > 0) {
		PQconsumeInput(listener);
		while ((n = PQnotifies(listener)) != NULL) {
			ck_assert_msg(strstr(n->extra, "\"type\" : \"connector_status_changed\"") ||
			              strstr(n->extra, "\"type\":\"connector_status_changed\""),
			              "payload %s", n->extra);
			got++;
			PQfreemem(n);
		}
	}
	ck_assert_int_eq(got, 2);
	PQfinish(listener);
}
END_TEST

/* Disabling remembers the status; enabling returns to it, with its jobs. */
START_TEST(disable_and_enable_round_trip)
{
	char id[37], sql[256];

	t_connector(db, org, "ttd", NULL, id);
	t_exec(db, "BEGIN");
	t_execf(db, "SELECT sluice.set_connector_status('%s', 'connected')", id);
	t_exec(db, "COMMIT");
	snprintf(sql, sizeof(sql), "SELECT sluice.enqueue(%lld, 'noop', '{}', 3, NULL, NULL, NULL, '%s')",
	         org, id);
	t_exec(db, sql);
	ck_assert_int_eq(t_intf(db, "SELECT sluice.set_connector_enabled('%s', false)::int", id), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.connector WHERE id = '%s'"
	                            " AND NOT enabled AND status = 'disabled'"
	                            " AND status_before_disable = 'connected'", id), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.job WHERE connector_id = '%s'"
	                            " AND run_at = sluice.held_run_at()", id), 1);
	ck_assert_int_eq(t_intf(db, "SELECT sluice.set_connector_enabled('%s', false)::int", id), 0);
	ck_assert_int_eq(t_intf(db, "SELECT sluice.set_connector_enabled('%s', true)::int", id), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.connector WHERE id = '%s' AND enabled"
	                            " AND status = 'connected' AND status_before_disable IS NULL", id), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.job WHERE connector_id = '%s'"
	                            " AND run_at <= now()", id), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.event WHERE connector_id = '%s'"
	                            " AND type = 'connector_status_changed'", id), 3);
}
END_TEST

/* Delete keeps the row and its history but destroys its secrets and cancels its jobs. */
START_TEST(delete_destroys_secrets_keeps_history)
{
	char id[37], sql[512];

	t_connector(db, org, "ttd", NULL, id);
	t_exec(db, "INSERT INTO sluice.data_key (master_key_id, wrapped, state)"
	           " VALUES ('test', decode(repeat('00', 60), 'hex'), 'current')");
	t_execf(db, "SELECT sluice.write_credential('%s', (SELECT id FROM sluice.data_key),"
	            " decode(repeat('01', 12), 'hex'), decode(repeat('02', 32), 'hex'))", id);
	snprintf(sql, sizeof(sql), "SELECT sluice.enqueue(%lld, 'noop', '{}', 3, NULL, NULL, NULL, '%s')",
	         org, id);
	t_exec(db, sql);
	ck_assert_int_eq(t_intf(db, "SELECT sluice.delete_connector('%s')::int", id), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.credential WHERE connector_id = '%s'",
	                        id), 0);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.connector WHERE id = '%s'"
	                            " AND deleted_at IS NOT NULL AND status = 'disabled'"
	                            " AND NOT enabled", id), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.job_archive WHERE connector_id = '%s'"
	                            " AND state = 'cancelled'", id), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.event WHERE connector_id = '%s'", id), 1);
	ck_assert_int_eq(t_intf(db, "SELECT sluice.delete_connector('%s')::int", id), 0);
	expect_error("SELECT sluice.write_credential((SELECT id FROM sluice.connector),"
	             " 1, decode(repeat('01', 12), 'hex'), decode(repeat('02', 32), 'hex'))",
	             "P0002", "does not exist");
}
END_TEST

/*
 * write_credential: versions count writes, a stale expected version is a
 * conflict, and an expiry schedules one refresh job that later writes move.
 */
START_TEST(credential_versions_and_refresh_schedule)
{
	char id[37];

	t_connector(db, org, "dv360", NULL, id);
	t_exec(db, "INSERT INTO sluice.data_key (master_key_id, wrapped, state)"
	           " VALUES ('test', decode(repeat('00', 60), 'hex'), 'current')");
	ck_assert_int_eq(t_intf(db, "SELECT sluice.write_credential('%s', (SELECT id FROM sluice.data_key),"
	                            " decode(repeat('01', 12), 'hex'), decode(repeat('02', 32), 'hex'),"
	                            " now() + interval '1 hour')", id), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.job WHERE connector_id = '%s'"
	                            " AND kind = 'oauth.refresh'"
	                            " AND run_at BETWEEN now() + interval '54 minutes'"
	                            " AND now() + interval '56 minutes'", id), 1);
	ck_assert_int_eq(t_intf(db, "SELECT sluice.write_credential('%s', (SELECT id FROM sluice.data_key),"
	                            " decode(repeat('01', 12), 'hex'), decode(repeat('03', 32), 'hex'),"
	                            " now() + interval '2 hours', 1)", id), 2);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.job WHERE connector_id = '%s'"
	                            " AND kind = 'oauth.refresh'", id), 1);
	ck_assert_int_eq(t_intf(db, "SELECT count(*) FROM sluice.job WHERE connector_id = '%s'"
	                            " AND kind = 'oauth.refresh' AND run_at > now() + interval '100 minutes'",
	                            id), 1);
	{
		char sql[512];

		snprintf(sql, sizeof(sql), "SELECT sluice.write_credential('%s', 1,"
		         " decode(repeat('01', 12), 'hex'), decode(repeat('04', 32), 'hex'), NULL, 1)", id);
		expect_error(sql, "40001", "changed since it was read");
	}
}
END_TEST

/* An OAuth state is taken once; a second take, an expired or unknown state are named. */
START_TEST(oauth_state_is_single_use)
{
	char sql[512], text[64];

	snprintf(sql, sizeof(sql), "INSERT INTO sluice.oauth_state (state_hash, org_id, type,"
	         " redirect_uri, actor, expires_at) VALUES (sha256('s1'), %lld, 'dv360',"
	         " 'https://app/cb', 'key:1', now() + interval '10 minutes'), (sha256('s2'), %lld,"
	         " 'dv360', 'https://app/cb', 'key:1', now() - interval '1 second')", org, org);
	t_exec(db, sql);
	t_text(db, "SELECT coalesce(problem, 'ok') || ' ' || type FROM"
	           " sluice.take_oauth_state(sha256('s1'))", text, sizeof(text));
	ck_assert_str_eq(text, "ok dv360");
	t_text(db, "SELECT problem FROM sluice.take_oauth_state(sha256('s1'))", text, sizeof(text));
	ck_assert_str_eq(text, "used");
	t_text(db, "SELECT problem FROM sluice.take_oauth_state(sha256('s2'))", text, sizeof(text));
	ck_assert_str_eq(text, "expired");
	t_text(db, "SELECT problem FROM sluice.take_oauth_state(sha256('nope'))", text, sizeof(text));
	ck_assert_str_eq(text, "unknown");
	t_exec(db, "UPDATE sluice.oauth_state SET expires_at = now() - interval '2 days'");
	ck_assert_int_eq(t_int(db, "SELECT sluice.prune_oauth_states()"), 2);
}
END_TEST

/*
 * Event ids become visible in order: an emitter that drew its id first
 * holds back a later one until it commits, so a reader paging "after the
 * last id seen" never skips an event.
 */
START_TEST(events_commit_in_id_order)
{
	PGconn *first = t_connect(url), *second = t_connect(url);
	char sql[256];
	PGresult *r;

	snprintf(sql, sizeof(sql), "SELECT sluice.emit_event(%lld, 'test_event')", org);
	PQclear(PQexec(first, "BEGIN"));
	r = PQexec(first, sql);
	ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
	PQclear(r);
	/* The second emitter waits for the first's commit rather than overtaking it. */
	ck_assert_int_eq(PQsendQuery(second, sql), 1);
	ck_assert(t_wait_until(db, "SELECT count(*) > 0 FROM pg_stat_activity"
	                           " WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'", 5000));
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.event"), 0);
	PQclear(PQexec(first, "COMMIT"));
	while ((r = PQgetResult(second)) != NULL) {
		ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
		PQclear(r);
	}
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.event"), 2);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM sluice.events_after(%lld, 0, 1)", org);
	ck_assert_int_eq(t_int(db, sql), 1);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM sluice.events_after(%lld,"
	         " (SELECT min(id) FROM sluice.event), 100)", org);
	ck_assert_int_eq(t_int(db, sql), 1);
	PQfinish(first);
	PQfinish(second);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("connectors");
	TCase *tc = tcase_create("sql");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, provider_registry_is_complete);
	tcase_add_test(tc, provider_override_is_per_org);
	tcase_add_test(tc, create_connector_checks_its_input);
	tcase_add_test(tc, status_changes_hold_and_release_jobs);
	tcase_add_test(tc, disable_and_enable_round_trip);
	tcase_add_test(tc, delete_destroys_secrets_keeps_history);
	tcase_add_test(tc, credential_versions_and_refresh_schedule);
	tcase_add_test(tc, oauth_state_is_single_use);
	tcase_add_test(tc, events_commit_in_id_order);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return t_run(make_suite());
}
