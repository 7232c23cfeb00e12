/* harness.h — what every integration test needs: a database of its own, processes, waits. */
#ifndef SL_TEST_HARNESS_H
#define SL_TEST_HARNESS_H

#include <check.h>
#include <libpq-fe.h>
#include <sys/types.h>

/*
 * The CTest fixture (pg_cluster.sh) runs one PostgreSQL per test run, with a
 * migrated database sluice_template.  SLUICE_TEST_PGDIR names its directory.
 * Each test makes its own database from the template, so tests never see
 * each other's rows.
 */

/* A fresh database copied from sluice_template; fills url (size >= 256). */
void t_db_create(char *url, size_t size);

/* Connects to url; fails the test when it cannot. */
PGconn *t_connect(const char *url);

/* Runs sql with text parameters; fails the test on error.  Caller PQclears. */
PGresult *t_query(PGconn *c, const char *sql, int n, const char *const *params);

/* Runs sql; fails the test on error. */
void t_exec(PGconn *c, const char *sql);

/* The single value sql returns, as a long long (fails the test if NULL or not a number). */
long long t_int(PGconn *c, const char *sql);

/* The single value sql returns as text, copied into out (empty for NULL). */
void t_text(PGconn *c, const char *sql, char *out, size_t size);

/*
 * Polls the boolean query sql until it is true or timeout_ms pass.  Returns 1
 * when it became true.  This is awaiting a condition with a deadline, not
 * sleeping to synchronise.
 */
int t_wait_until(PGconn *c, const char *sql, long timeout_ms);

/* Creates an org and returns its id. */
long long t_org(PGconn *c, const char *name);

/*
 * Starts a sluice-worker on url, with extra environment "NAME=value" strings
 * (NULL-terminated list, may be NULL).  Its stderr goes to log_path (may be
 * NULL: /dev/null).  Returns the pid.
 */
pid_t t_worker_start(const char *url, const char *const *env, const char *log_path);

/* Sends sig to pid and waits for it; returns its exit status (or 128 + signal). */
int t_stop(pid_t pid, int sig);

/* Waits up to timeout_ms for pid to exit; returns its status as t_stop, or -1. */
int t_wait_exit(pid_t pid, long timeout_ms);

/*
 * Runs a shell command; its stdout and stderr (up to size - 1 bytes) land
 * in out.  Returns its exit status (-1 if it did not exit).
 */
int t_sh(const char *cmd, char *out, size_t size);

/*
 * Creates an API key the way an operator does (sluicectl key create) for org
 * with one scope; the key goes to key (>= 44 bytes).  Returns the key's id.
 */
long long t_key(const char *url, long long org, const char *scope, char *key);

/* A loopback TCP port nothing listens on now (bind port 0, read it, let it go). */
int t_free_port(void);

/* Directory of the test cluster (for restart tests). */
const char *t_pgdir(void);

/* Milliseconds on a monotonic clock. */
long long t_now_ms(void);

/* Reads a whole file into a heap string (free()); NULL when missing. */
char *t_slurp(const char *path);

/* Paths of the built programs and the source tree (from CMake). */
extern const char *t_worker_bin, *t_api_bin, *t_ctl_bin, *t_source_dir, *t_build_dir;

/* Runs the suite built by make_suite with CK_FORK; returns the process exit code. */
int t_run(Suite *s);

#endif
