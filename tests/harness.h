/* harness.h — what every integration test needs: a database of its own, processes, waits. */
#ifndef SL_TEST_HARNESS_H
#define SL_TEST_HARNESS_H

#include <check.h>
#include <libpq-fe.h>
#include <sys/types.h>
#include <json-c/json.h>

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

/* t_int() of sql with text parameters $1 = p1 and $2 = p2 (NULL p2, or both: fewer). */
long long t_int_p(PGconn *c, const char *sql, const char *p1, const char *p2);

/*
 * t_int() and t_exec() of the statement printf makes of fmt and its
 * arguments: for values the test itself chose (ids, numbers), never for
 * text from outside.  Fail the test when it does not fit in 4 KiB.
 */
long long t_intf(PGconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void t_execf(PGconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The single value sql returns as text, copied into out (empty for NULL). */
void t_text(PGconn *c, const char *sql, char *out, size_t size);

/* t_text() of sql with text parameters, as t_int_p. */
void t_text_p(PGconn *c, const char *sql, const char *p1, const char *p2, char *out, size_t size);

/*
 * Polls the boolean query sql until it is true or timeout_ms pass.  Returns 1
 * when it became true.  This is awaiting a condition with a deadline, not
 * sleeping to synchronise.
 */
int t_wait_until(PGconn *c, const char *sql, long timeout_ms);

/*
 * t_wait_until(), and when the condition was not met in time, prints to
 * stderr what was awaited and the file log_path (the workers' stderr, see
 * t_worker_start), so that a failing test says why.  Returns as t_wait_until.
 */
int t_wait_until_log(PGconn *c, const char *sql, long timeout_ms, const char *log_path);

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
 * Runs `sluicectl --database URL <args>` through t_sh, args made by printf
 * from fmt (a shell word list).  Returns as t_sh, the output in out.
 */
int t_ctl(const char *url, char *out, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

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

/*
 * The master key tests use (64 hex digits).  t_use_master_key() puts it in
 * SLUICE_MASTER_KEY of this process, so every worker, sluice-api and
 * sluicectl started afterwards inherits it.
 */
#define T_MASTER_KEY "6c8f3b2a1d9e4f7a0b5c6d8e9f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c"
void t_use_master_key(void);

/* A connector of org (sluice.create_connector, label "test", config JSON or NULL); its id into id[37]. */
void t_connector(PGconn *c, long long org, const char *type, const char *config, char *id);

/* Runs the suite built by make_suite with CK_FORK; returns the process exit code. */
int t_run(Suite *s);

/* ---- Fakes of outside systems (tests/fake_api and others) ----------------
 *
 * A Node.js script under tests/ (no npm packages), run on a free loopback
 * port.  tests/fake_api/server.js is the generic one: bearer-authenticated
 * GETs counted per fixed window, with fault switches (see its header).
 */
struct t_fake {
	pid_t pid;
	int   port;
	char  url[64];             /* http://127.0.0.1:PORT, no trailing slash */
};

/*
 * Starts `node tests/<script> 0 [arg]` (arg may be NULL), waits for it to
 * listen, and fails the test if it does not.  It dies with this process.
 */
void t_fake_start(struct t_fake *f, const char *script, const char *arg);

/* Stops it (SIGTERM, then waits).  Safe to call twice. */
void t_fake_stop(struct t_fake *f);

/* GET path: the JSON answer (json_object_put it); fails the test unless 200 and JSON. */
json_object *t_fake_get(struct t_fake *f, const char *path);

/* POST json (NULL: {}) to path; fails the test unless it answers 200. */
void t_fake_post(struct t_fake *f, const char *path, const char *json);

/*
 * Seals secrets (an object of secret fields) as the connector's, in the
 * database at url, with the test master key (t_use_master_key()).
 */
void t_store_secrets(const char *url, const char *connector_id, json_object *secrets);

/* The connector's secrets as a worker opens them (json_object_put them), whatever its status. */
json_object *t_load_secrets(const char *url, const char *connector_id);

/*
 * A connected trustfile connector of org in the database at url, whose API
 * is the fake (config.base_url) and whose secret is a bearer token: what a
 * job calling an outside system needs.  Uses the test master key
 * (t_use_master_key()).  Its id into id[37].
 */
void t_fake_connector(PGconn *c, const char *url, long long org, const struct t_fake *fake,
                      char *id);

/* ---- The fake WooCommerce shop (tests/fake_shop) ------------------------
 *
 * A WordPress host with WooCommerce's REST API v3 over HTTP (OAuth 1.0a) and
 * HTTPS (Basic or query-string keys, a certificate signed by a test CA), a
 * generated catalogue, and fault switches under /__control/ on the HTTP
 * port (see the header of tests/fake_shop/server.js).
 */
#define T_SHOP_KEY    "ck_test_0123456789abcdef0123456789abcdef01234567"
#define T_SHOP_SECRET "cs_test_0123456789abcdef0123456789abcdef01234567"

struct t_shop {
	pid_t         pid;
	int           http_port, https_port;
	char          http_url[64];    /* http://127.0.0.1:PORT */
	char          https_url[64];   /* https://127.0.0.1:PORT */
	char          tls_dir[96];     /* make_certs.sh's output */
	char          ca_file[128];    /* the test CA that signed the shop's certificate */
	struct t_fake control;         /* for t_fake_get / t_fake_post on /__control/... */
};

/*
 * Makes the test CA (once per process) and starts the shop on free
 * loopback ports, with extra arguments (NULL-terminated, may be NULL:
 * "--products", "5000", "--orders", "20000", "--untrusted", ...); fails the
 * test when it does not start.  It dies with the process that started it.
 */
void t_shop_start(struct t_shop *s, const char *const *extra_args);

/* Stops it (SIGTERM, then waits).  Safe to call twice. */
void t_shop_stop(struct t_shop *s);

/* ---- The OAuth 2.0 authorization server (tests/oauth_server) -------------
 *
 * A real one: oauth2-mock-server from npm, made strict by server.js (client
 * authentication, one-time codes tied to their redirect_uri, PKCE, rotating
 * refresh tokens, Bearer-protected GET /resource and /userinfo).  Endpoints
 * under o->url: /authorize, /token, /userinfo, /resource, /jwks, and the
 * JSON control endpoints /__control/{stats,revoke,fault,token_ttl,delay,
 * reset} (see the header of server.js).  Needs node and the packages of
 * tests/oauth_server (tools/sluice test installs both).
 */
struct t_oauth {
	pid_t pid;
	int   port;
	char  url[64];             /* http://127.0.0.1:PORT, no trailing slash */
	char  client_id[64];       /* the one registered client */
	char  client_secret[64];   /* random per start; has ':', '+', '/' and '%' in it */
};

/*
 * Starts the server on a free loopback port and waits for it to listen;
 * fails the test, saying what to install, when node or node_modules is
 * missing.  The server dies with the process that started it.
 */
void t_oauth_start(struct t_oauth *o);

/* Stops it (SIGTERM, then waits).  Safe to call twice. */
void t_oauth_stop(struct t_oauth *o);

/*
 * One counter of GET /__control/stats: "token" (all token requests),
 * "authorization_code", "refresh_token", "client_credentials", "other_grant",
 * "authorize", "resource" (GET /resource and /userinfo), "resource_ok",
 * "resource_denied".  Fails the test on an unknown name.
 */
long long t_oauth_stat(struct t_oauth *o, const char *name);

/*
 * POSTs json (NULL: {}) to /__control/<what> and fails the test unless it
 * answers 200.  E.g. t_oauth_control(o, "fault",
 * "{\"status\":429,\"count\":1,\"retry_after\":7}"), ("revoke", NULL),
 * ("token_ttl", "{\"seconds\":0}"), ("delay", "{\"ms\":300}"), ("reset", NULL).
 */
void t_oauth_control(struct t_oauth *o, const char *what, const char *json);

/*
 * Plays the user's browser: GETs authorize_url without following the
 * redirect and reads code and state from its Location (percent-decoded;
 * "" when absent).  Returns 0 when it redirected with a code; otherwise the
 * HTTP status of the answer (400 for a bad client_id, 302 for a redirect
 * carrying error=...).
 */
int t_oauth_authorize(struct t_oauth *o, const char *authorize_url, char *code, size_t codesz,
                      char *state, size_t statesz);

#endif
