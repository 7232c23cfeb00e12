/* test_sluicectl.c — sluicectl's commands against a real database: output, rows, exit codes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/harness.h"

static char url[256];
static PGconn *db;
static char out[16384];

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

/* Runs `sluicectl --database URL <args>` (t_ctl); output in `out`; returns the exit status. */
#define ctl(...) t_ctl(url, out, sizeof(out), __VA_ARGS__)

#define has(s) ck_assert_msg(strstr(out, (s)) != NULL, "expected \"%s\" in:\n%s", (s), out)

START_TEST(help_and_usage_errors)
{
	static const char *commands[] = { "migrate", "org", "key", "enqueue", "queue", "jobs", "why",
	                                  "retry", "cancel", "pause", "resume", "workers" };
	char cmd[512];
	size_t i;

	ck_assert_int_eq(ctl("--help"), 0);
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		has(commands[i]);
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		ck_assert_int_eq(ctl("%s --help", commands[i]), 0);
		ck_assert_msg(strstr(out, "usage: sluicectl ") == out, "%s: %s", commands[i], out);
	}
	ck_assert_int_eq(ctl("frobnicate"), 2);
	has("unknown command frobnicate");
	ck_assert_int_eq(ctl("enqueue noop"), 2);
	has("usage: sluicectl enqueue");
	ck_assert_int_eq(ctl("enqueue --org 1 noop --priority 9"), 2);
	has("--priority must be 1 (highest) to 5");
	ck_assert_int_eq(ctl("why abc"), 2);
	/* No database named anywhere. */
	snprintf(cmd, sizeof(cmd), "env -u DATABASE_URL %s queue", t_ctl_bin);
	ck_assert_int_eq(t_sh(cmd, out, sizeof(out)), 2);
	has("no database");
	/* A database that is not there: a clear failure, exit 1. */
	snprintf(cmd, sizeof(cmd), "%s --database 'postgresql:///nope?host=/nonexistent' queue",
	         t_ctl_bin);
	ck_assert_int_eq(t_sh(cmd, out, sizeof(out)), 1);
	has("cannot connect to the database");
}
END_TEST

START_TEST(orgs_and_keys)
{
	char key[64], *nl;

	ck_assert_int_eq(ctl("org create 'Acme Shops'"), 0);
	ck_assert_str_eq(out, "1\n");
	ck_assert_int_eq(ctl("org list"), 0);
	has("Acme Shops");
	ck_assert_int_eq(ctl("key create --org 1 --name ci --scope admin --scope read"), 0);
	has("key id 1 for org 1, scopes {admin,read}");
	nl = strstr(out, "\nsk_");
	ck_assert_ptr_nonnull(nl);
	snprintf(key, sizeof(key), "%.43s", nl + 1);
	ck_assert_uint_eq(strspn(key + 3, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"), 40);
	/* Only the hash is stored, with the prefix that tells keys apart. */
	{
		char sql[256];

		snprintf(sql, sizeof(sql), "SELECT count(*) FROM sluice.api_key WHERE key_hash ="
		         " sha256(convert_to('%s', 'UTF8')) AND prefix = '%.10s'", key, key);
		ck_assert_int_eq(t_int(db, sql), 1);
	}
	ck_assert_int_eq(ctl("key list"), 0);
	has("ci");
	ck_assert_msg(strstr(out, key) == NULL, "key list shows the key");
	ck_assert_int_eq(ctl("key create --org 1 --name x --scope root"), 2);
	ck_assert_int_eq(ctl("key create --org 99 --name x"), 1);
	ck_assert_int_eq(ctl("key revoke 1"), 0);
	has("revoked");
	ck_assert_int_eq(ctl("key revoke 1"), 3);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.api_key WHERE revoked_at IS NOT NULL"), 1);
}
END_TEST

START_TEST(enqueue_why_cancel_retry)
{
	long long dead;

	t_org(db, "acme");
	ck_assert_int_eq(ctl("enqueue --org 1 sleep --payload '{\"ms\": 5}' --priority 2 --dedupe-key d1"), 0);
	ck_assert_str_eq(out, "1\n");
	ck_assert_int_eq(ctl("enqueue --org 1 sleep --dedupe-key d1"), 0);
	ck_assert_str_eq(out, "1 (already queued with that dedupe key)\n");
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.job WHERE priority = 2"
	                           " AND payload = '{\"ms\": 5}'"), 1);
	ck_assert_int_eq(ctl("enqueue --org 1 noop --payload '{not json'"), 1);
	has("invalid input syntax for type json");

	ck_assert_int_eq(ctl("why 1"), 0);
	has("job 1: queued: runnable, but no worker is alive");
	ck_assert_int_eq(ctl("pause kind sleep --reason 'vendor outage'"), 0);
	ck_assert_int_eq(ctl("why 1"), 0);
	has("kind sleep is paused");
	has("vendor outage");
	ck_assert_int_eq(ctl("resume kind sleep"), 0);
	ck_assert_int_eq(ctl("resume kind sleep"), 3);
	ck_assert_int_eq(ctl("pause org 1"), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.pause WHERE scope = 'org' AND name = '1'"), 1);
	ck_assert_int_eq(ctl("resume org 1"), 0);
	ck_assert_int_eq(ctl("pause org acme"), 2);

	ck_assert_int_eq(ctl("queue"), 0);
	has("Live jobs:");
	has("sleep");
	ck_assert_int_eq(ctl("jobs --state queued"), 0);
	has("sleep");
	ck_assert_int_eq(ctl("cancel 1 --reason 'not needed'"), 0);
	has("cancelled");
	ck_assert_int_eq(ctl("cancel 1"), 3);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.jobs WHERE id = 1 AND state = 'cancelled'"), 1);

	/* A dead job, retried. */
	ck_assert_int_eq(ctl("enqueue --org 1 fail"), 0);
	dead = strtoll(out, NULL, 10);
	ck_assert_int_gt(dead, 1);
	t_exec(db, "SELECT sluice.claim_jobs('w', 1)");
	t_exec(db, "SELECT sluice.fail_job(id, claim_token, 'bad', true) FROM sluice.job");
	ck_assert_int_eq(ctl("jobs --state dead"), 0);
	has("bad");
	ck_assert_int_eq(ctl("retry %lld", dead), 0);
	has("queued again");
	ck_assert_int_eq(ctl("retry %lld", dead), 3);
	ck_assert_int_eq(ctl("retry all --kind fail"), 0);
	has("0 dead job(s) queued again");
	{
		char sql[128];

		snprintf(sql, sizeof(sql), "SELECT count(*) FROM sluice.job WHERE id = %lld AND attempts = 0",
		         dead);
		ck_assert_int_eq(t_int(db, sql), 1);
	}
	ck_assert_int_eq(ctl("workers"), 0);
	has("(none)");
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("sluicectl");
	TCase *tc = tcase_create("commands");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, help_and_usage_errors);
	tcase_add_test(tc, orgs_and_keys);
	tcase_add_test(tc, enqueue_why_cancel_retry);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return t_run(make_suite());
}
