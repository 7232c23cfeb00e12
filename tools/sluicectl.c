/* sluicectl.c — the operator's command line: migrate, orgs, keys, secrets, and the queue's ops functions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "adapters/credential.h"
#include "common/crypto.h"
#include "common/db.h"
#include "common/log.h"
#include "common/migrate.h"
#include "common/secret.h"
#include "common/str.h"

/* Exit codes: 0 ok, 1 the operation failed, 2 usage error, 3 not found / refused. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_REFUSED = 3 };

struct cmd {
	const char *name;
	int (*run)(struct sl_db *db, int argc, char **argv);
	const char *usage;
	const char *help;
};

/* The command being run, for its usage line in error messages. */
static const struct cmd *running;

/* ---- small helpers ---------------------------------------------------- */

static int
fail(const struct sl_err *err)
{
	fprintf(stderr, "sluicectl: %s\n", err->msg);
	if (err->detail[0])
		fprintf(stderr, "%s\n", err->detail);
	return EXIT_FAIL;
}

static int
usage_error(const char *why)
{
	fprintf(stderr, "sluicectl %s: %s\nusage: sluicectl %s\n", running->name, why,
	        running->usage);
	return EXIT_USAGE;
}

static int
wants_help(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return 1;
	}
	return 0;
}

/* Value of option `--name VALUE` in argv; NULL when absent.  Marks both as used. */
static const char *
opt(int argc, char **argv, const char *name)
{
	int i;

	for (i = 1; i < argc - 1; i++) {
		if (argv[i] && !strcmp(argv[i], name)) {
			const char *v = argv[i + 1];

			argv[i] = NULL;
			argv[i + 1] = NULL;
			return v;
		}
	}
	return NULL;
}

/* The n-th argument left after options were taken (from 1); NULL if none. */
static const char *
positional(int argc, char **argv, int n)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (!argv[i])
			continue;
		if (argv[i][0] == '-' && argv[i][1] == '-')
			continue;
		if (--n == 0)
			return argv[i];
	}
	return NULL;
}

/* An option left over after parsing is a mistake worth stopping for. */
static const char *
leftover_option(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (argv[i] && argv[i][0] == '-' && argv[i][1] == '-')
			return argv[i];
	}
	return NULL;
}

static int
valid_id(const char *s)
{
	long long v;

	return s && sl_parse_ll(s, 1, 9223372036854775807LL, &v) == 0;
}

/* Prints a result as aligned columns with a header. */
static void
print_table(const PGresult *res)
{
	int rows = PQntuples(res), cols = PQnfields(res), r, c;
	int width[64];

	if (cols > 64)
		cols = 64;
	for (c = 0; c < cols; c++) {
		width[c] = (int)strlen(PQfname(res, c));
		for (r = 0; r < rows; r++) {
			int len = PQgetlength(res, r, c);

			if (len > width[c])
				width[c] = len > 60 ? 60 : len;
		}
	}
	for (c = 0; c < cols; c++)
		printf("%-*s%s", width[c], PQfname(res, c), c + 1 < cols ? "  " : "\n");
	for (r = 0; r < rows; r++) {
		for (c = 0; c < cols; c++) {
			const char *v = PQgetisnull(res, r, c) ? "" : PQgetvalue(res, r, c);

			printf("%-*.*s%s", width[c], width[c], v, c + 1 < cols ? "  " : "\n");
		}
	}
	if (rows == 0)
		printf("(none)\n");
}

/* Runs a query with parameters and prints its rows. */
static int
show(struct sl_db *db, const char *sql, int n, const char *const *params)
{
	struct sl_err err;
	PGresult *res;

	if (sl_db_query(db, &res, sql, n, params, &err))
		return fail(&err);
	print_table(res);
	PQclear(res);
	return EXIT_OK;
}

/* Runs a query returning one boolean; prints ok_msg or refused_msg. */
static int
yes_no(struct sl_db *db, const char *sql, int n, const char *const *params,
       const char *ok_msg, const char *refused_msg)
{
	struct sl_err err;
	PGresult *res;
	int yes;

	if (sl_db_query(db, &res, sql, n, params, &err))
		return fail(&err);
	yes = PQntuples(res) == 1 && !strcmp(PQgetvalue(res, 0, 0), "t");
	PQclear(res);
	if (yes) {
		printf("%s\n", ok_msg);
		return EXIT_OK;
	}
	fprintf(stderr, "sluicectl: %s\n", refused_msg);
	return EXIT_REFUSED;
}

/* ---- commands --------------------------------------------------------- */

static int
cmd_migrate(struct sl_db *db, int argc, char **argv)
{
	const char *dir = opt(argc, argv, "--schema-dir");
	struct sl_err err;
	int applied = 0, version = 0;

	if (leftover_option(argc, argv) || positional(argc, argv, 1))
		return usage_error("unexpected argument");
	if (sl_migrate(db, dir, &applied, &version, &err))
		return fail(&err);
	printf("schema at version %d (%d migration%s applied now)\n", version, applied,
	       applied == 1 ? "" : "s");
	return EXIT_OK;
}

static int
cmd_org(struct sl_db *db, int argc, char **argv)
{
	const char *verb = positional(argc, argv, 1);
	const char *name = positional(argc, argv, 2);
	const char *params[1] = { name };
	struct sl_err err;
	PGresult *res;

	if (verb && !strcmp(verb, "list"))
		return show(db, "SELECT id, name, created_at FROM sluice.org ORDER BY id", 0, NULL);
	if (!verb || strcmp(verb, "create") || !name || positional(argc, argv, 3))
		return usage_error("expected: org create NAME, or org list");
	if (sl_db_query(db, &res, "SELECT sluice.create_org($1) AS id", 1, params, &err))
		return fail(&err);
	printf("%s\n", PQgetvalue(res, 0, 0));
	PQclear(res);
	return EXIT_OK;
}

static int
key_create(struct sl_db *db, int argc, char **argv)
{
	const char *org = opt(argc, argv, "--org");
	const char *name = opt(argc, argv, "--name");
	char scopes[64] = "{";
	size_t used = 1;
	char key[48], prefix[16], hash_hex[65];
	unsigned char digest[32];
	const char *params[5] = { org, name, prefix, NULL, scopes };
	char bytea[70];
	struct sl_err err;
	PGresult *res;
	const char *scope;

	while ((scope = opt(argc, argv, "--scope")) != NULL) {
		if (strcmp(scope, "admin") && strcmp(scope, "write") && strcmp(scope, "read"))
			return usage_error("--scope must be admin, write or read");
		if (used + strlen(scope) + 3 >= sizeof(scopes))
			return usage_error("too many scopes");
		used += (size_t)snprintf(scopes + used, sizeof(scopes) - used, "%s%s",
		                         used > 1 ? "," : "", scope);
	}
	snprintf(scopes + used, sizeof(scopes) - used, "%s}", used > 1 ? "" : "read,write");
	if (!valid_id(org) || !name || leftover_option(argc, argv) || positional(argc, argv, 2))
		return usage_error("expected: key create --org ID --name NAME [--scope S]...");

	/* sk_ + 40 characters from [A-Za-z0-9]: about 238 bits. */
	memcpy(key, "sk_", 3);
	if (sl_random_token(key + 3, 40, &err))
		return fail(&err);
	sl_strlcpy(prefix, key, 11);
	sl_sha256(key, strlen(key), digest);
	sl_hex(digest, sizeof(digest), hash_hex);
	snprintf(bytea, sizeof(bytea), "\\x%s", hash_hex);
	params[3] = bytea;
	if (sl_db_query(db, &res, "SELECT sluice.create_api_key($1::bigint, $2, $3, $4::bytea,"
	                " $5::text[]) AS id", 5, params, &err))
		return fail(&err);
	printf("key id %s for org %s, scopes %s\n%s\n", PQgetvalue(res, 0, 0), org, scopes, key);
	fprintf(stderr, "sluicectl: the key is shown once; only its hash is stored\n");
	PQclear(res);
	return EXIT_OK;
}

static int
cmd_key(struct sl_db *db, int argc, char **argv)
{
	const char *verb = positional(argc, argv, 1);
	const char *id = positional(argc, argv, 2);

	if (verb && !strcmp(verb, "create"))
		return key_create(db, argc, argv);
	if (verb && !strcmp(verb, "list"))
		return show(db, "SELECT id, org_id, name, prefix, scopes, created_at, revoked_at,"
		                " last_used_at FROM sluice.api_key ORDER BY id", 0, NULL);
	if (!verb || strcmp(verb, "revoke") || !valid_id(id))
		return usage_error("expected: key create …, key list, or key revoke KEY_ID");
	return yes_no(db, "SELECT sluice.revoke_api_key($1::bigint)", 1,
	              (const char *const[]){ id }, "revoked", "no such active key");
}

static int
cmd_enqueue(struct sl_db *db, int argc, char **argv)
{
	const char *org = opt(argc, argv, "--org");
	const char *payload = opt(argc, argv, "--payload");
	const char *priority = opt(argc, argv, "--priority");
	const char *run_at = opt(argc, argv, "--run-at");
	const char *attempts = opt(argc, argv, "--max-attempts");
	const char *dedupe = opt(argc, argv, "--dedupe-key");
	const char *connector = opt(argc, argv, "--connector");
	const char *kind = positional(argc, argv, 1);
	const char *params[8];
	struct sl_err err;
	PGresult *res;
	long long p;

	if (!valid_id(org) || !kind || positional(argc, argv, 2) || leftover_option(argc, argv))
		return usage_error("an org and a kind are required");
	if (priority && sl_parse_ll(priority, 1, 5, &p))
		return usage_error("--priority must be 1 (highest) to 5");
	params[0] = org;
	params[1] = kind;
	params[2] = payload ? payload : "{}";
	params[3] = priority ? priority : "3";
	params[4] = run_at;
	params[5] = attempts;
	params[6] = dedupe;
	params[7] = connector;
	if (sl_db_query(db, &res, "SELECT job_id, deduplicated FROM sluice.enqueue($1::bigint, $2,"
	                " $3::jsonb, $4::integer, $5::timestamptz, $6::integer, $7, $8::uuid)",
	                8, params, &err))
		return fail(&err);
	printf("%s%s\n", PQgetvalue(res, 0, 0),
	       !strcmp(PQgetvalue(res, 0, 1), "t") ? " (already queued with that dedupe key)" : "");
	PQclear(res);
	return EXIT_OK;
}

static int
cmd_queue(struct sl_db *db, int argc, char **argv)
{
	int rc;

	if (positional(argc, argv, 1) || leftover_option(argc, argv))
		return usage_error("no arguments expected");
	printf("Live jobs:\n");
	rc = show(db, "SELECT state, runnable, paused, kind, priority, org_id, jobs"
	              " FROM sluice.queue_depth ORDER BY state, kind, priority, org_id", 0, NULL);
	if (rc)
		return rc;
	printf("\nOldest runnable job:\n");
	rc = show(db, "SELECT kind, priority, runnable, oldest_wait FROM sluice.queue_lag"
	              " ORDER BY oldest_wait DESC", 0, NULL);
	if (rc)
		return rc;
	printf("\nThroughput:\n");
	return show(db, "SELECT coalesce(kind, '(all)') AS kind, done_last_minute, dead_last_minute,"
	                " done_last_hour, dead_last_hour FROM sluice.throughput"
	                " ORDER BY kind NULLS FIRST", 0, NULL);
}

static int
cmd_jobs(struct sl_db *db, int argc, char **argv)
{
	const char *params[4] = {
		opt(argc, argv, "--state"), opt(argc, argv, "--kind"), opt(argc, argv, "--org"),
		opt(argc, argv, "--limit"),
	};
	long long n;

	if (positional(argc, argv, 1) || leftover_option(argc, argv))
		return usage_error("unexpected argument");
	if (params[2] && !valid_id(params[2]))
		return usage_error("--org takes an org id");
	if (params[3] && sl_parse_ll(params[3], 1, 100000, &n))
		return usage_error("--limit takes 1 to 100000");
	return show(db, "SELECT id, org_id, kind, priority, state, attempts, max_attempts, run_at,"
	                " worker_id, finished_at, left(last_error, 60) AS last_error"
	                " FROM sluice.jobs"
	                " WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR kind = $2)"
	                "   AND ($3::bigint IS NULL OR org_id = $3)"
	                " ORDER BY id DESC LIMIT coalesce($4::integer, 50)", 4, params);
}

static int
cmd_why(struct sl_db *db, int argc, char **argv)
{
	const char *id = positional(argc, argv, 1);
	struct sl_err err;
	PGresult *res;

	if (!valid_id(id) || positional(argc, argv, 2))
		return usage_error("expected a job id");
	if (sl_db_query(db, &res, "SELECT state, reason FROM sluice.why($1::bigint)", 1,
	                (const char *const[]){ id }, &err))
		return fail(&err);
	printf("job %s: %s%s%s\n", id, PQgetisnull(res, 0, 0) ? "" : PQgetvalue(res, 0, 0),
	       PQgetisnull(res, 0, 0) ? "" : ": ", PQgetvalue(res, 0, 1));
	PQclear(res);
	return EXIT_OK;
}

static int
cmd_retry(struct sl_db *db, int argc, char **argv)
{
	const char *kind = opt(argc, argv, "--kind");
	const char *org = opt(argc, argv, "--org");
	const char *id = positional(argc, argv, 1);
	struct sl_err err;
	PGresult *res;

	if (id && !strcmp(id, "all")) {
		if (org && !valid_id(org))
			return usage_error("--org takes an org id");
		if (sl_db_query(db, &res, "SELECT sluice.retry_dead_jobs($1, $2::bigint)", 2,
		                (const char *const[]){ kind, org }, &err))
			return fail(&err);
		printf("%s dead job(s) queued again\n", PQgetvalue(res, 0, 0));
		PQclear(res);
		return EXIT_OK;
	}
	if (!valid_id(id) || kind || org || positional(argc, argv, 2))
		return usage_error("expected a job id, or: retry all [--kind K] [--org ID]");
	return yes_no(db, "SELECT sluice.retry_dead_job($1::bigint)", 1,
	              (const char *const[]){ id }, "queued again",
	              "not retried: not a dead job, or a live job holds its dedupe key "
	              "(sluicectl why JOB_ID says which)");
}

static int
cmd_cancel(struct sl_db *db, int argc, char **argv)
{
	const char *reason = opt(argc, argv, "--reason");
	const char *id = positional(argc, argv, 1);

	if (!valid_id(id) || positional(argc, argv, 2) || leftover_option(argc, argv))
		return usage_error("expected a job id");
	return yes_no(db, "SELECT sluice.cancel_job($1::bigint, $2)", 2,
	              (const char *const[]){ id, reason }, "cancelled",
	              "not a live job (unknown, or already ended)");
}

static int
pause_or_resume(struct sl_db *db, int argc, char **argv, int pause)
{
	const char *reason = opt(argc, argv, "--reason");
	const char *scope = positional(argc, argv, 1);
	const char *name = positional(argc, argv, 2);

	if (!scope || !name || positional(argc, argv, 3) || leftover_option(argc, argv) ||
	    (strcmp(scope, "kind") && strcmp(scope, "org")))
		return usage_error("expected: kind KIND, or org ID");
	if (!strcmp(scope, "org") && !valid_id(name))
		return usage_error("org takes an org id");
	return yes_no(db, "SELECT sluice.set_paused($1, $2, $3::boolean, $4)", 4,
	              (const char *const[]){ scope, name, pause ? "true" : "false", reason },
	              pause ? "paused" : "resumed", "it was not paused");
}

static int
cmd_pause(struct sl_db *db, int argc, char **argv)
{
	return pause_or_resume(db, argc, argv, 1);
}

static int
cmd_resume(struct sl_db *db, int argc, char **argv)
{
	return pause_or_resume(db, argc, argv, 0);
}

static int
cmd_workers(struct sl_db *db, int argc, char **argv)
{
	if (positional(argc, argv, 1) || leftover_option(argc, argv))
		return usage_error("no arguments expected");
	return show(db, "SELECT id, host, pid, status, jobs_held, started_at,"
	                " date_trunc('second', heartbeat_age) AS heartbeat_age"
	                " FROM sluice.workers WHERE status <> 'stopped'"
	                "    OR stopped_at > now() - interval '1 hour'"
	                " ORDER BY status, id", 0, NULL);
}

/* ---- data keys and secrets ------------------------------------------- */

/* The master key from SLUICE_MASTER_KEY or SLUICE_MASTER_KEY_FILE; NULL after saying why not. */
static struct sl_keyring *
master_key(void)
{
	struct sl_keyring *kr;
	struct sl_err err;

	if (sl_keyring_from_env(&kr, &err)) {
		fail(&err);
		return NULL;
	}
	return kr;
}

static void
rotate_progress(const struct sl_rotate_stats *st, void *arg)
{
	(void)arg;
	printf("round %d: %lld secret(s) re-encrypted under data key %d, about %lld left\n",
	       st->rounds, st->reencrypted, st->new_key_id, st->remaining);
	fflush(stdout);
}

static int
keys_rotate(struct sl_db *db, int argc, char **argv)
{
	const char *batch_s = opt(argc, argv, "--batch");
	struct sl_rotate_stats st = { .progress = rotate_progress };
	struct sl_keyring *kr;
	struct sl_err err;
	long long batch = 100;
	int rc;

	if (batch_s && sl_parse_ll(batch_s, 1, 100000, &batch))
		return usage_error("--batch takes 1 to 100000");
	if (positional(argc, argv, 2) || leftover_option(argc, argv))
		return usage_error("expected: keys rotate [--batch N]");
	kr = master_key();
	if (!kr)
		return EXIT_FAIL;
	printf("master key %s: rotating data keys, %lld secret(s) per transaction\n",
	       sl_keyring_master_id(kr), batch);
	fflush(stdout);
	rc = sl_keys_rotate(kr, db, (int)batch, &st, &err);
	sl_keyring_free(kr);
	if (rc) {
		if (st.new_key_id)
			fprintf(stderr, "sluicectl: stopped after %lld secret(s) moved to data key %d; "
			        "the old keys stay readable, run it again\n", st.reencrypted,
			        st.new_key_id);
		fail(&err);
		return rc == SL_ECONFLICT ? EXIT_REFUSED : EXIT_FAIL;
	}
	printf("done: data key %d is current; %lld secret(s) re-encrypted, %lld taken again after a "
	       "concurrent change, %d old data key(s) retired\n", st.new_key_id, st.reencrypted,
	       st.raced, st.retired);
	return EXIT_OK;
}

static int
keys_status(struct sl_db *db, int argc, char **argv)
{
	struct sl_keyring *kr;
	struct sl_err err;
	PGresult *res;
	const char *id;
	int rc = EXIT_OK, foreign = 0, r;

	if (positional(argc, argv, 2) || leftover_option(argc, argv))
		return usage_error("expected: keys status");
	kr = master_key();
	id = kr ? sl_keyring_master_id(kr) : NULL;
	if (sl_db_query(db, &res, "SELECT id, state, master_key_id,"
	                " CASE WHEN state = 'retired' THEN '' WHEN $1::text IS NULL THEN '?'"
	                "      WHEN master_key_id = $1 THEN 'yes' ELSE 'NO' END AS this_master,"
	                " secrets, date_trunc('second', created_at) AS created_at,"
	                " date_trunc('second', retired_at) AS retired_at"
	                " FROM sluice.data_keys ORDER BY id", 1, (const char *const[]){ id }, &err)) {
		sl_keyring_free(kr);
		return fail(&err);
	}
	print_table(res);
	for (r = 0; r < PQntuples(res); r++) {
		const char *state = sl_pg_get(res, r, "state");

		if (kr && strcmp(state, "retired") && strcmp(sl_pg_get(res, r, "this_master"), "yes"))
			foreign++;
	}
	PQclear(res);
	if (!kr)
		return EXIT_FAIL;
	printf("\nthis master key: %s\n", id);
	if (foreign) {
		fprintf(stderr, "sluicectl: %d data key(s) in use are wrapped by another master key: "
		        "this environment cannot open what they sealed\n", foreign);
		rc = EXIT_FAIL;
	}
	sl_keyring_free(kr);
	return rc;
}

static int
keys_rewrap(struct sl_db *db, int argc, char **argv)
{
	const char *file = opt(argc, argv, "--new-key-file");
	struct sl_keyring *kr, *new_kr = NULL;
	struct sl_err err;
	int rc, n = 0;

	if (!file || positional(argc, argv, 2) || leftover_option(argc, argv))
		return usage_error("expected: keys rewrap --new-key-file FILE");
	kr = master_key();
	if (!kr)
		return EXIT_FAIL;
	rc = sl_keyring_from_file(&new_kr, file, &err);
	if (rc == 0)
		rc = sl_keys_rewrap(kr, new_kr, db, &n, &err);
	if (rc) {
		sl_keyring_free(kr);
		sl_keyring_free(new_kr);
		return fail(&err);
	}
	printf("%d data key(s) rewrapped: master key %s replaces %s\n", n,
	       sl_keyring_master_id(new_kr), sl_keyring_master_id(kr));
	printf("Give every worker, sluice-api and sluicectl the new key now"
	       " (SLUICE_MASTER_KEY_FILE=%s);\nthe old master key opens nothing any more.\n", file);
	sl_keyring_free(kr);
	sl_keyring_free(new_kr);
	return EXIT_OK;
}

static int
cmd_keys(struct sl_db *db, int argc, char **argv)
{
	const char *verb = positional(argc, argv, 1);

	if (verb && !strcmp(verb, "rotate"))
		return keys_rotate(db, argc, argv);
	if (verb && !strcmp(verb, "status"))
		return keys_status(db, argc, argv);
	if (verb && !strcmp(verb, "rewrap"))
		return keys_rewrap(db, argc, argv);
	return usage_error("expected: keys rotate [--batch N], keys status, "
	                   "or keys rewrap --new-key-file FILE");
}

/*
 * One line from stdin into buf, without its line end; never echoed when stdin
 * is a terminal.  Returns 0, or -1 (nothing, or longer than buf).
 */
static int
read_secret_line(const char *prompt, char *buf, size_t size)
{
	struct termios old, quiet;
	int tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
	size_t len;
	char *got;

	if (tty) {
		fprintf(stderr, "%s", prompt);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	got = fgets(buf, (int)size, stdin);
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fprintf(stderr, "\n");
	}
	if (!got)
		return -1;
	len = strlen(buf);
	if (len == size - 1 && buf[len - 1] != '\n' && !feof(stdin))
		return -1;
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	return len ? 0 : -1;
}

static int
cmd_oauth_app(struct sl_db *db, int argc, char **argv)
{
	const char *verb = positional(argc, argv, 1);
	const char *org = positional(argc, argv, 2);
	const char *type = positional(argc, argv, 3);
	const char *client_id = positional(argc, argv, 4);
	struct sl_keyring *kr;
	struct sl_cred_env env = { .db = db, .actor = "sluicectl" };
	struct sl_err err;
	char secret[4096];
	long long org_id;
	int rc;

	if (verb && !strcmp(verb, "list") && !type && !leftover_option(argc, argv)) {
		if (org && !valid_id(org))
			return usage_error("expected an org id");
		return show(db, "SELECT org_id, type, client_id, key_id, updated_at"
		                " FROM sluice.oauth_client WHERE $1::bigint IS NULL OR org_id = $1"
		                " ORDER BY org_id, type", 1, (const char *const[]){ org });
	}
	if (!verb || strcmp(verb, "set") || !valid_id(org) || !type || !client_id ||
	    positional(argc, argv, 5) || leftover_option(argc, argv))
		return usage_error("expected: oauth-app set ORG TYPE CLIENT_ID (secret on stdin), "
		                   "or oauth-app list [ORG]");
	if (sl_parse_ll(org, 1, 9223372036854775807LL, &org_id))
		return usage_error("expected an org id");
	kr = master_key();
	if (!kr)
		return EXIT_FAIL;
	if (read_secret_line("client secret: ", secret, sizeof(secret))) {
		OPENSSL_cleanse(secret, sizeof(secret));
		sl_keyring_free(kr);
		return usage_error("the client secret must be one non-empty line on stdin "
		                   "(at most 4095 bytes)");
	}
	env.kr = kr;
	rc = sl_oauth_app_store(&env, org_id, type, client_id, secret, &err);
	OPENSSL_cleanse(secret, sizeof(secret));
	sl_keyring_free(kr);
	if (rc)
		return fail(&err);
	printf("stored the %s OAuth app of org %s (client id %s; the secret is encrypted)\n", type,
	       org, client_id);
	return EXIT_OK;
}

static int
cmd_redirect_uri(struct sl_db *db, int argc, char **argv)
{
	const char *verb = positional(argc, argv, 1);
	const char *org = positional(argc, argv, 2);
	const char *uri = positional(argc, argv, 3);
	struct sl_err err;

	if (verb && !strcmp(verb, "list") && !uri && !leftover_option(argc, argv)) {
		if (org && !valid_id(org))
			return usage_error("expected an org id");
		return show(db, "SELECT org_id, uri FROM sluice.oauth_redirect_uri"
		                " WHERE $1::bigint IS NULL OR org_id = $1 ORDER BY org_id, uri", 1,
		            (const char *const[]){ org });
	}
	if (!verb || strcmp(verb, "allow") || !valid_id(org) || !uri || positional(argc, argv, 4) ||
	    leftover_option(argc, argv))
		return usage_error("expected: redirect-uri allow ORG URI, or redirect-uri list [ORG]");
	if (sl_db_exec(db, "SELECT sluice.allow_redirect_uri($1::bigint, $2)", 2,
	               (const char *const[]){ org, uri }, &err))
		return fail(&err);
	printf("allowed %s for org %s\n", uri, org);
	return EXIT_OK;
}

static const struct cmd commands[] = {
	{ "migrate", cmd_migrate, "migrate [--schema-dir DIR]",
	  "Apply the SQL migrations the database lacks (forward-only, checksummed)." },
	{ "org", cmd_org, "org create NAME | org list",
	  "Create a tenant (prints its id), or list them." },
	{ "key", cmd_key,
	  "key create --org ID --name NAME [--scope admin|write|read]... | key list | key revoke KEY_ID",
	  "Create an API key (printed once; default scopes read and write), list or revoke keys." },
	{ "enqueue", cmd_enqueue,
	  "enqueue --org ID KIND [--payload JSON] [--priority 1-5] [--run-at TIME]\n"
	  "        [--max-attempts N] [--dedupe-key KEY] [--connector UUID]",
	  "Enqueue one job; prints its id." },
	{ "queue", cmd_queue, "queue", "Queue depth, oldest runnable job, throughput." },
	{ "jobs", cmd_jobs, "jobs [--state S] [--kind K] [--org ID] [--limit N]",
	  "List jobs, newest first (states: queued retrying running done dead cancelled)." },
	{ "why", cmd_why, "why JOB_ID", "Say why a job is not running." },
	{ "retry", cmd_retry, "retry JOB_ID | retry all [--kind K] [--org ID]",
	  "Queue dead jobs again with fresh attempts." },
	{ "cancel", cmd_cancel, "cancel JOB_ID [--reason TEXT]", "Cancel a live job." },
	{ "pause", cmd_pause, "pause kind KIND | pause org ID [--reason TEXT]",
	  "Stop claiming a kind's or an org's jobs (they stay queued)." },
	{ "resume", cmd_resume, "resume kind KIND | resume org ID", "Undo pause." },
	{ "workers", cmd_workers, "workers", "Workers with their status and last heartbeat." },
	{ "keys", cmd_keys, "keys rotate [--batch N] | keys status | keys rewrap --new-key-file FILE",
	  "Rotate the data keys that encrypt secrets, list them, or move to a new master key." },
	{ "oauth-app", cmd_oauth_app, "oauth-app set ORG TYPE CLIENT_ID | oauth-app list [ORG]",
	  "Store an org's OAuth app; the client secret is one line on stdin, stored encrypted." },
	{ "redirect-uri", cmd_redirect_uri, "redirect-uri allow ORG URI | redirect-uri list [ORG]",
	  "Allow an OAuth redirect URI for an org (matched exactly), or list them." },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct cmd *
find_cmd(const char *name)
{
	size_t i;

	for (i = 0; i < N_COMMANDS; i++) {
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	}
	return NULL;
}

static void
usage(FILE *out)
{
	size_t i;

	fprintf(out, "usage: sluicectl [--database URL] COMMAND [ARGS]\n\n"
	             "The database is --database, else $DATABASE_URL.  keys and oauth-app also need\n"
	             "the master key: $SLUICE_MASTER_KEY, else the file $SLUICE_MASTER_KEY_FILE.\n\n"
	             "Commands:\n");
	for (i = 0; i < N_COMMANDS; i++)
		fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].help);
	fprintf(out, "\nsluicectl COMMAND --help shows a command's arguments.\n"
	             "Exit status: 0 done, 1 failed, 2 usage error, 3 refused (not found, not allowed).\n");
}

int
main(int argc, char **argv)
{
	const char *url = getenv("DATABASE_URL");
	const struct cmd *c;
	struct sl_db *db = NULL;
	struct sl_err err;
	int rc;

	sl_log_init("sluicectl");
	sl_log_level = SL_LOG_WARN;
	if (argc >= 3 && !strcmp(argv[1], "--database")) {
		url = argv[2];
		argc -= 2;
		argv += 2;
	}
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	c = find_cmd(argv[1]);
	if (!c) {
		fprintf(stderr, "sluicectl: unknown command %s\n\n", argv[1]);
		usage(stderr);
		return EXIT_USAGE;
	}
	if (wants_help(argc - 1, argv + 1)) {
		printf("usage: sluicectl %s\n\n%s\n", c->usage, c->help);
		return EXIT_OK;
	}
	if (!url || !*url) {
		fprintf(stderr, "sluicectl: no database: set DATABASE_URL or pass --database URL\n");
		return EXIT_USAGE;
	}
	if (sl_db_open(&db, url, "sluicectl", &err))
		return fail(&err);
	running = c;
	rc = c->run(db, argc - 1, argv + 1);
	sl_db_free(db);
	return rc;
}
