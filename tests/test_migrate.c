/* test_migrate.c — sluicectl migrate: in order, once each, checksummed, refusing edits, safe in parallel. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness.h"

static char url[256];
static char dir[64];
static PGconn *db;

/* A database with no schema at all (not from the migrated template). */
static void
setup(void)
{
	char admin[256], sql[128], cmd[512], name[64];
	PGconn *c;

	snprintf(name, sizeof(name), "m_%ld", (long)getpid());
	snprintf(admin, sizeof(admin), "postgresql:///postgres?host=%s&port=5432&user=postgres",
	         t_pgdir());
	c = t_connect(admin);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
	t_exec(c, sql);
	PQfinish(c);
	snprintf(url, sizeof(url), "postgresql:///%s?host=%s&port=5432&user=postgres", name, t_pgdir());
	db = t_connect(url);

	/* A private copy of schema/ that tests may edit. */
	snprintf(dir, sizeof(dir), "/tmp/sluice-migrate-%ld", (long)getpid());
	snprintf(cmd, sizeof(cmd), "rm -rf %s && mkdir -p %s && cp %s/schema/*.sql %s/", dir, dir,
	         t_source_dir, dir);
	ck_assert_int_eq(system(cmd), 0);
}

static void
teardown(void)
{
	char cmd[128];

	PQfinish(db);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* Runs sluicectl migrate on the copy; returns its exit status, output in out. */
static int
migrate(char *out, size_t size)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "%s --database '%s' migrate --schema-dir %s", t_ctl_bin, url, dir);
	return t_sh(cmd, out, size);
}

static void
append(const char *file, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "a");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

START_TEST(applies_each_file_once_in_order)
{
	char out[4096];

	ck_assert_int_eq(migrate(out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "migrations applied now") != NULL, "%s", out);
	ck_assert_int_ge(t_int(db, "SELECT count(*) FROM sluice.schema_migration"), 3);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.schema_migration"
	                           " WHERE checksum ~ '^[0-9a-f]{64}$'"),
	                 t_int(db, "SELECT count(*) FROM sluice.schema_migration"));
	/* In order: each version was applied no earlier than the one before it. */
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM (SELECT applied_at < lag(applied_at)"
	                           " OVER (ORDER BY version) AS out_of_order FROM sluice.schema_migration) x"
	                           " WHERE out_of_order"), 0);
	ck_assert_int_eq(migrate(out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "(0 migrations applied now)") != NULL, "%s", out);

	/* A new file is applied, and only it. */
	append("9000_extra.sql", "CREATE TABLE sluice.extra (x int);\n");
	ck_assert_int_eq(migrate(out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "version 9000 (1 migration applied now)") != NULL, "%s", out);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.extra"), 0);
}
END_TEST

START_TEST(refuses_an_edited_file)
{
	char out[4096];

	ck_assert_int_eq(migrate(out, sizeof(out)), 0);
	append("0002_queue.sql", "\n-- a harmless-looking edit\n");
	ck_assert_int_eq(migrate(out, sizeof(out)), 1);
	ck_assert_msg(strstr(out, "migration 0002_queue.sql was changed after it was applied") &&
	              strstr(out, "forward-only"), "%s", out);
}
END_TEST

START_TEST(refuses_a_database_newer_than_the_files)
{
	char out[4096], path[256];

	append("9001_later.sql", "SELECT 1;\n");
	ck_assert_int_eq(migrate(out, sizeof(out)), 0);
	snprintf(path, sizeof(path), "%s/9001_later.sql", dir);
	unlink(path);
	ck_assert_int_eq(migrate(out, sizeof(out)), 1);
	ck_assert_msg(strstr(out, "the database has migration 9001_later.sql") != NULL, "%s", out);
}
END_TEST

START_TEST(a_failing_file_leaves_nothing_behind)
{
	char out[4096];

	append("9002_broken.sql", "CREATE TABLE sluice.half (x int);\nSELECT no_such_function();\n");
	ck_assert_int_eq(migrate(out, sizeof(out)), 1);
	ck_assert_msg(strstr(out, "migration 9002_broken.sql failed") != NULL, "%s", out);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM pg_tables WHERE tablename = 'half'"), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.schema_migration WHERE version = 9002"), 0);
	/* The files before it were applied and stay. */
	ck_assert_int_ge(t_int(db, "SELECT count(*) FROM sluice.schema_migration"), 3);
}
END_TEST

START_TEST(two_at_once_are_safe)
{
	char cmd[1024];
	pid_t kids[4];
	int i, status;

	snprintf(cmd, sizeof(cmd), "%s --database '%s' migrate --schema-dir %s >/dev/null 2>&1",
	         t_ctl_bin, url, dir);
	for (i = 0; i < 4; i++) {
		kids[i] = fork();
		if (kids[i] == 0)
			_exit(system(cmd) == 0 ? 0 : 1);
	}
	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(waitpid(kids[i], &status, 0), kids[i]);
		ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.schema_migration"),
	                 t_int(db, "SELECT count(DISTINCT version) FROM sluice.schema_migration"));
	ck_assert_int_ge(t_int(db, "SELECT count(*) FROM sluice.schema_migration"), 3);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("migrate");
	TCase *tc = tcase_create("sluicectl");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, applies_each_file_once_in_order);
	tcase_add_test(tc, refuses_an_edited_file);
	tcase_add_test(tc, refuses_a_database_newer_than_the_files);
	tcase_add_test(tc, a_failing_file_leaves_nothing_behind);
	tcase_add_test(tc, two_at_once_are_safe);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return t_run(make_suite());
}
