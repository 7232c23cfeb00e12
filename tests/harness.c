/* harness.c — databases per test, worker processes and condition waits for the tests. */
#include "tests/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <poll.h>
#include <strings.h>
#include <sys/prctl.h>

#include "adapters/credential.h"
#include "common/db.h"
#include "common/secret.h"

const char *t_worker_bin = SL_WORKER_BIN;
const char *t_api_bin = SL_API_BIN;
const char *t_ctl_bin = SL_CTL_BIN;
const char *t_source_dir = SL_SOURCE_DIR;
const char *t_build_dir = SL_BUILD_DIR;

extern char **environ;

const char *
t_pgdir(void)
{
	const char *d = getenv("SLUICE_TEST_PGDIR");

	ck_assert_msg(d && *d, "SLUICE_TEST_PGDIR is not set: run the tests through ctest");
	return d;
}

long long
t_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Server NOTICEs are part of what tests provoke; they need not reach the output. */
static void
quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

PGconn *
t_connect(const char *url)
{
	PGconn *c = PQconnectdb(url);

	ck_assert_msg(PQstatus(c) == CONNECTION_OK, "cannot connect to %s: %s", url,
	              PQerrorMessage(c));
	PQsetNoticeProcessor(c, quiet, NULL);
	return c;
}

void
t_db_create(char *url, size_t size)
{
	char admin[256], sql[128], name[64];
	PGconn *c;
	PGresult *r;
	int attempt;

	snprintf(admin, sizeof(admin), "postgresql:///postgres?host=%s&port=5432&user=postgres",
	         t_pgdir());
	snprintf(name, sizeof(name), "t_%ld_%lld", (long)getpid(), t_now_ms() % 100000000);
	c = t_connect(admin);
	PQsetNoticeProcessor(c, quiet, NULL);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s TEMPLATE sluice_template", name);
	/* Two tests copying the template at once collide ("source database is being
	 * accessed by other users"); try again briefly. */
	for (attempt = 0; attempt < 50; attempt++) {
		r = PQexec(c, sql);
		if (PQresultStatus(r) == PGRES_COMMAND_OK)
			break;
		PQclear(r);
		r = NULL;
		usleep(100 * 1000);
	}
	ck_assert_msg(r != NULL, "cannot create the test database: %s", PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
	snprintf(url, size, "postgresql:///%s?host=%s&port=5432&user=postgres", name, t_pgdir());
}

PGresult *
t_query(PGconn *c, const char *sql, int n, const char *const *params)
{
	PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);

	ck_assert_msg(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "query failed: %s\n%s",
	              sql, PQerrorMessage(c));
	return r;
}

void
t_exec(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);

	ck_assert_msg(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "statement failed: %s\n%s",
	              sql, PQerrorMessage(c));
	PQclear(r);
}

long long
t_int(PGconn *c, const char *sql)
{
	return t_int_p(c, sql, NULL, NULL);
}

long long
t_int_p(PGconn *c, const char *sql, const char *p1, const char *p2)
{
	const char *params[2] = { p1, p2 };
	PGresult *r = t_query(c, sql, p2 ? 2 : p1 ? 1 : 0, params);
	char *end;
	long long v;

	ck_assert_msg(PQntuples(r) == 1 && !PQgetisnull(r, 0, 0), "expected one value from: %s",
	              sql);
	errno = 0;
	v = strtoll(PQgetvalue(r, 0, 0), &end, 10);
	ck_assert_msg(errno == 0 && *end == '\0', "not a number: %s from %s",
	              PQgetvalue(r, 0, 0), sql);
	PQclear(r);
	return v;
}

/* The statement printf makes of fmt and ap, into sql[size]; fails the test when cut short. */
static void
t_vsql(char *sql, size_t size, const char *fmt, va_list ap)
{
	int n = vsnprintf(sql, size, fmt, ap);

	ck_assert_msg(n >= 0 && (size_t)n < size, "statement too long: %s", fmt);
}

long long
t_intf(PGconn *c, const char *fmt, ...)
{
	char sql[4096];
	va_list ap;

	va_start(ap, fmt);
	t_vsql(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	return t_int(c, sql);
}

void
t_execf(PGconn *c, const char *fmt, ...)
{
	char sql[4096];
	va_list ap;

	va_start(ap, fmt);
	t_vsql(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	t_exec(c, sql);
}

void
t_text(PGconn *c, const char *sql, char *out, size_t size)
{
	t_text_p(c, sql, NULL, NULL, out, size);
}

void
t_text_p(PGconn *c, const char *sql, const char *p1, const char *p2, char *out, size_t size)
{
	const char *params[2] = { p1, p2 };
	PGresult *r = t_query(c, sql, p2 ? 2 : p1 ? 1 : 0, params);

	ck_assert_msg(PQntuples(r) == 1, "expected one row from: %s", sql);
	snprintf(out, size, "%s", PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0));
	PQclear(r);
}

int
t_wait_until(PGconn *c, const char *sql, long timeout_ms)
{
	long long deadline = t_now_ms() + timeout_ms;

	for (;;) {
		PGresult *r = t_query(c, sql, 0, NULL);
		int yes = PQntuples(r) == 1 && !strcmp(PQgetvalue(r, 0, 0), "t");

		PQclear(r);
		if (yes)
			return 1;
		if (t_now_ms() >= deadline)
			return 0;
		usleep(20 * 1000);
	}
}

int
t_wait_until_log(PGconn *c, const char *sql, long timeout_ms, const char *log_path)
{
	int ok = t_wait_until(c, sql, timeout_ms);

	if (!ok) {
		char *log = t_slurp(log_path);

		fprintf(stderr, "condition not met in %ld ms: %s\nworker log:\n%s\n", timeout_ms,
		        sql, log ? log : "(none)");
		free(log);
	}
	return ok;
}

long long
t_org(PGconn *c, const char *name)
{
	const char *p[1] = { name };
	PGresult *r = t_query(c, "SELECT sluice.create_org($1)", 1, p);
	long long id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);

	PQclear(r);
	return id;
}

pid_t
t_worker_start(const char *url, const char *const *env, const char *log_path)
{
	pid_t pid = fork();

	ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(log_path ? log_path : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
		size_t i;

		if (fd >= 0) {
			dup2(fd, STDERR_FILENO);
			close(fd);
		}
		setenv("DATABASE_URL", url, 1);
		for (i = 0; env && env[i]; i++)
			putenv((char *)env[i]);
		execl(t_worker_bin, "sluice-worker", (char *)NULL);
		_exit(127);
	}
	return pid;
}

static int
decode(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

int
t_wait_exit(pid_t pid, long timeout_ms)
{
	long long deadline = t_now_ms() + timeout_ms;
	int status;

	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return decode(status);
		if (r < 0 || t_now_ms() >= deadline)
			return -1;
		usleep(10 * 1000);
	}
}

int
t_stop(pid_t pid, int sig)
{
	int status;

	kill(pid, sig);
	if (waitpid(pid, &status, 0) != pid)
		return -1;
	return decode(status);
}

int
t_sh(const char *cmd, char *out, size_t size)
{
	char full[4096];
	FILE *p;
	size_t n;
	int status;

	snprintf(full, sizeof(full), "%s 2>&1", cmd);
	p = popen(full, "r");
	ck_assert_ptr_nonnull(p);
	n = fread(out, 1, size - 1, p);
	out[n] = '\0';
	status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int
t_ctl(const char *url, char *out, size_t size, const char *fmt, ...)
{
	char args[1024], cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "'%s' --database '%s' %s", t_ctl_bin, url, args);
	return t_sh(cmd, out, size);
}

long long
t_key(const char *url, long long org, const char *scope, char *key)
{
	char out[512], *line;
	long long id = 0;

	ck_assert_int_eq(t_ctl(url, out, sizeof(out), "key create --org %lld --name test-%s"
	                       " --scope %s", org, scope, scope), 0);
	/* stderr's notice ("shown once") may come first: find the stdout lines. */
	line = strstr(out, "key id ");
	ck_assert_msg(line && sscanf(line, "key id %lld", &id) == 1, "no key id in: %s", out);
	line = strstr(out, "\nsk_");
	ck_assert_msg(line != NULL, "no key in: %s", out);
	ck_assert_uint_ge(strlen(line + 1), 43);
	memcpy(key, line + 1, 43);
	key[43] = '\0';
	return id;
}

int
t_free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int s = socket(AF_INET, SOCK_STREAM, 0), port;

	ck_assert_int_ge(s, 0);
	ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(s, (struct sockaddr *)&a, &len), 0);
	port = ntohs(a.sin_port);
	close(s);
	return port;
}

char *
t_slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	if (buf)
		buf[n] = '\0';
	fclose(f);
	return buf;
}

int
t_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

void
t_connector(PGconn *c, long long org, const char *type, const char *config, char *id)
{
	char o[24];
	const char *params[] = { o, type, config ? config : "{}" };
	PGresult *r;

	snprintf(o, sizeof(o), "%lld", org);
	r = t_query(c, "SELECT sluice.create_connector($1::bigint, $2, 'test', NULL, $3::jsonb)", 3,
	            params);
	snprintf(id, 37, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
}

void
t_use_master_key(void)
{
	setenv("SLUICE_MASTER_KEY", T_MASTER_KEY, 1);
}

/* ---- The OAuth 2.0 authorization server (tests/oauth_server) ------------- */

/* What one plain HTTP exchange of the harness got back. */
struct t_reply {
	char   body[8192];
	size_t len;
	char   location[2048];
};

static size_t
t_reply_body(char *p, size_t size, size_t n, void *arg)
{
	struct t_reply *r = arg;
	size_t room = sizeof(r->body) - 1 - r->len;

	n *= size;
	memcpy(r->body + r->len, p, n < room ? n : room);
	r->len += n < room ? n : room;
	r->body[r->len] = '\0';
	return n;
}

static size_t
t_reply_header(char *p, size_t size, size_t n, void *arg)
{
	struct t_reply *r = arg;

	n *= size;
	if (n > 9 && !strncasecmp(p, "Location:", 9)) {
		size_t i = 9, end = n;

		while (i < end && p[i] == ' ')
			i++;
		while (end > i && (p[end - 1] == '\r' || p[end - 1] == '\n'))
			end--;
		snprintf(r->location, sizeof(r->location), "%.*s", (int)(end - i), p + i);
	}
	return n;
}

/* One request with libcurl (not the code under test); returns the status, fails on no answer. */
static long
t_http(const char *method, const char *url, const char *json, struct t_reply *r)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hdrs = NULL;
	CURLcode cc;
	long status = 0;

	ck_assert_ptr_nonnull(h);
	memset(r, 0, sizeof(*r));
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, t_reply_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, t_reply_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	if (!strcmp(method, "POST")) {
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, json ? json : "{}");
	}
	cc = curl_easy_perform(h);
	ck_assert_msg(cc == CURLE_OK, "%s %s: %s", method, url, curl_easy_strerror(cc));
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	return status;
}

static int
t_in_path(const char *prog)
{
	const char *path = getenv("PATH");
	char dir[1024], full[1200];

	while (path && *path) {
		size_t n = strcspn(path, ":");

		snprintf(dir, sizeof(dir), "%.*s", (int)n, path);
		snprintf(full, sizeof(full), "%s/%s", dir[0] ? dir : ".", prog);
		if (access(full, X_OK) == 0)
			return 1;
		path += n + (path[n] == ':');
	}
	return 0;
}

/*
 * Runs `node tests/<script> args...` (args NULL-terminated, may be NULL)
 * with extra environment NAME=value strings (may be NULL), dying with this
 * process, and waits up to 30 s for the first line it prints (into line,
 * empty if none came).  Returns its pid.
 */
static pid_t
node_spawn(const char *script, const char *const *args, const char *const *env, char *line,
           size_t size)
{
	char path[1024];
	const char *argv[16];
	size_t len = 0, n_args = 0;
	long long deadline;
	pid_t parent = getpid(), pid;
	int out[2], fd;

	snprintf(path, sizeof(path), "%s/tests/%s", t_source_dir, script);
	ck_assert_msg(t_in_path("node"), "node is not installed: the tests' fakes need Node.js "
	              "(tools/sluice test installs it; or apt-get install nodejs npm)");
	argv[n_args++] = "node";
	argv[n_args++] = path;
	while (args && args[n_args - 2] && n_args < sizeof(argv) / sizeof(argv[0]) - 1) {
		argv[n_args] = args[n_args - 2];
		n_args++;
	}
	argv[n_args] = NULL;
	ck_assert_int_eq(pipe(out), 0);
	fcntl(out[0], F_SETFD, FD_CLOEXEC);
	fcntl(out[1], F_SETFD, FD_CLOEXEC);
	pid = fork();
	ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		size_t i;

		/* Die with the test, even one killed by Check's timeout. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		dup2(out[1], STDOUT_FILENO);
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0)
			dup2(fd, STDIN_FILENO);
		for (i = 0; env && env[i]; i++)
			putenv((char *)env[i]);
		execvp("node", (char *const *)argv);
		_exit(127);
	}
	close(out[1]);

	/* Await its one line saying where it listens: a condition with a deadline. */
	deadline = t_now_ms() + 30000;
	while (!memchr(line, '\n', len) && len < size - 1) {
		struct pollfd p = { .fd = out[0], .events = POLLIN };
		long long left = deadline - t_now_ms();
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		n = read(out[0], line + len, size - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	line[len] = '\0';
	close(out[0]);
	return pid;
}

/* node_spawn() of a fake that says {"port":N}; fails the test when it does not. */
static void
node_start(struct t_fake *f, const char *script, const char *arg, const char *const *env)
{
	const char *args[] = { "0", arg, NULL };
	char line[256];

	memset(f, 0, sizeof(*f));
	f->pid = node_spawn(script, args, env, line, sizeof(line));
	if (sscanf(line, "{\"port\":%d}", &f->port) != 1 || f->port <= 0) {
		int st = t_stop(f->pid, SIGKILL);

		f->pid = 0;
		ck_abort_msg("node tests/%s did not start (exit status %d; its stderr is above)", script, st);
	}
	snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d", f->port);
}

void
t_fake_start(struct t_fake *f, const char *script, const char *arg)
{
	node_start(f, script, arg, NULL);
}

void
t_fake_stop(struct t_fake *f)
{
	if (f->pid > 0)
		t_stop(f->pid, SIGTERM);
	f->pid = 0;
}

json_object *
t_fake_get(struct t_fake *f, const char *path)
{
	struct t_reply r;
	char url[512];
	json_object *doc;

	snprintf(url, sizeof(url), "%s%s", f->url, path);
	ck_assert_int_eq(t_http("GET", url, NULL, &r), 200);
	doc = json_tokener_parse(r.body);
	ck_assert_msg(doc != NULL && r.len < sizeof(r.body) - 1, "GET %s: not JSON, or over %zu bytes:"
	              " %.200s", path, sizeof(r.body) - 1, r.body);
	return doc;
}

void
t_fake_post(struct t_fake *f, const char *path, const char *json)
{
	struct t_reply r;
	char url[512];
	long st;

	snprintf(url, sizeof(url), "%s%s", f->url, path);
	st = t_http("POST", url, json, &r);
	ck_assert_msg(st == 200, "POST %s %s: HTTP %ld %s", path, json ? json : "{}", st, r.body);
}

/* ---- the fake WooCommerce shop ------------------------------------------ */

void
t_shop_start(struct t_shop *s, const char *const *extra_args)
{
	const char *args[24] = { "--http-port", "0", "--https-port", "0", "--tls-dir", NULL };
	char cmd[512], out[512], line[256];
	size_t n = 6, i;
	int st;

	memset(s, 0, sizeof(*s));
	snprintf(s->tls_dir, sizeof(s->tls_dir), "/tmp/sluice-shop-tls-%ld", (long)getpid());
	snprintf(cmd, sizeof(cmd), "bash %s/tests/fake_shop/make_certs.sh %s", t_source_dir, s->tls_dir);
	st = t_sh(cmd, out, sizeof(out));
	ck_assert_msg(st == 0, "make_certs.sh failed (%d): %s", st, out);
	snprintf(s->ca_file, sizeof(s->ca_file), "%s/ca.pem", s->tls_dir);
	args[5] = s->tls_dir;
	for (i = 0; extra_args && extra_args[i] && n < sizeof(args) / sizeof(args[0]) - 1; i++)
		args[n++] = extra_args[i];
	args[n] = NULL;
	s->pid = node_spawn("fake_shop/server.js", args, NULL, line, sizeof(line));
	if (sscanf(line, "{\"http_port\":%d,\"https_port\":%d}", &s->http_port, &s->https_port) != 2) {
		st = t_stop(s->pid, SIGKILL);
		s->pid = 0;
		ck_abort_msg("the fake shop did not start (exit status %d; its stderr is above)", st);
	}
	snprintf(s->http_url, sizeof(s->http_url), "http://127.0.0.1:%d", s->http_port);
	snprintf(s->https_url, sizeof(s->https_url), "https://127.0.0.1:%d", s->https_port);
	s->control.pid = 0;
	s->control.port = s->http_port;
	snprintf(s->control.url, sizeof(s->control.url), "%s", s->http_url);
}

void
t_shop_stop(struct t_shop *s)
{
	if (s->pid > 0)
		t_stop(s->pid, SIGTERM);
	s->pid = 0;
}

/* A credential environment on url with the test master key; cred_env_close() releases it. */
static void
cred_env_open(struct sl_cred_env *env, const char *url)
{
	struct sl_err err;

	t_use_master_key();
	memset(env, 0, sizeof(*env));
	ck_assert_msg(sl_db_open(&env->db, url, "test", &err) == 0, "%s", err.msg);
	ck_assert_int_eq(sl_keyring_from_env(&env->kr, &err), 0);
	env->actor = "test";
}

static void
cred_env_close(struct sl_cred_env *env)
{
	sl_keyring_free(env->kr);
	sl_db_free(env->db);
}

void
t_store_secrets(const char *url, const char *connector_id, json_object *secrets)
{
	struct sl_cred_env env;
	struct sl_err err;

	cred_env_open(&env, url);
	ck_assert_msg(sl_credential_store(&env, connector_id, secrets, -1, 0, NULL, &err) == 0,
	              "storing secrets: %s", err.msg);
	cred_env_close(&env);
}

json_object *
t_load_secrets(const char *url, const char *connector_id)
{
	struct sl_cred_env env;
	struct sl_err err;
	json_object *secrets = NULL;

	cred_env_open(&env, url);
	ck_assert_msg(sl_credential_load(&env, connector_id, SL_CRED_ANY_STATUS, &secrets, NULL,
	                                 &err) == 0, "loading secrets: %s", err.msg);
	cred_env_close(&env);
	return secrets;
}

void
t_fake_connector(PGconn *c, const char *url, long long org, const struct t_fake *fake, char *id)
{
	json_object *secrets = json_object_new_object();
	char config[128];

	snprintf(config, sizeof(config), "{\"base_url\": \"%s\"}", fake->url);
	t_connector(c, org, "trustfile", config, id);
	json_object_object_add(secrets, "token", json_object_new_string("fake-bearer-token"));
	t_store_secrets(url, id, secrets);
	json_object_put(secrets);
	t_execf(c, "SELECT sluice.set_connector_status('%s', 'connected')", id);
}

void
t_oauth_start(struct t_oauth *o)
{
	char modules[1024], id_env[96], secret_env[96];
	const char *env[] = { id_env, secret_env, NULL };
	unsigned char rnd[8];
	struct t_fake f;
	size_t len;
	int fd, i;

	memset(o, 0, sizeof(*o));
	snprintf(modules, sizeof(modules), "%s/tests/oauth_server/node_modules/oauth2-mock-server"
	         "/package.json", t_source_dir);
	ck_assert_msg(access(modules, R_OK) == 0, "%s/tests/oauth_server/node_modules is missing: "
	              "run `npm ci` there (tools/sluice test does it)", t_source_dir);

	/* A fresh secret per start, with the characters client_secret_basic must encode. */
	fd = open("/dev/urandom", O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(read(fd, rnd, sizeof(rnd)), (int)sizeof(rnd));
	close(fd);
	snprintf(o->client_id, sizeof(o->client_id), "sluice-test-client");
	len = (size_t)snprintf(o->client_secret, sizeof(o->client_secret), "s3c:r+t/%%");
	for (i = 0; i < (int)sizeof(rnd); i++)
		len += (size_t)snprintf(o->client_secret + len, sizeof(o->client_secret) - len, "%02x",
		                        rnd[i]);
	snprintf(id_env, sizeof(id_env), "OAUTH_CLIENT_ID=%s", o->client_id);
	snprintf(secret_env, sizeof(secret_env), "OAUTH_CLIENT_SECRET=%s", o->client_secret);

	node_start(&f, "oauth_server/server.js", NULL, env);
	o->pid = f.pid;
	o->port = f.port;
	snprintf(o->url, sizeof(o->url), "%s", f.url);
}

void
t_oauth_stop(struct t_oauth *o)
{
	if (o->pid > 0)
		t_stop(o->pid, SIGTERM);
	o->pid = 0;
}

long long
t_oauth_stat(struct t_oauth *o, const char *name)
{
	struct t_reply r;
	char url[256];
	json_object *doc, *v;
	long long n;

	snprintf(url, sizeof(url), "%s/__control/stats", o->url);
	ck_assert_int_eq(t_http("GET", url, NULL, &r), 200);
	doc = json_tokener_parse(r.body);
	ck_assert_msg(doc && json_object_object_get_ex(doc, name, &v) &&
	              json_object_is_type(v, json_type_int), "no counter %s in %s", name, r.body);
	n = json_object_get_int64(v);
	json_object_put(doc);
	return n;
}

void
t_oauth_control(struct t_oauth *o, const char *what, const char *json)
{
	struct t_reply r;
	char url[256];
	long st;

	snprintf(url, sizeof(url), "%s/__control/%s", o->url, what);
	st = t_http("POST", url, json, &r);
	ck_assert_msg(st == 200, "POST /__control/%s %s: HTTP %ld %s", what, json ? json : "{}",
	              st, r.body);
}

/* Copies the percent-decoded value of parameter name in the query of url into out. */
static void
t_query_param(const char *url, const char *name, char *out, size_t size)
{
	const char *p = strchr(url, '?');
	size_t n = strlen(name);

	out[0] = '\0';
	while (p && *p) {
		p++;
		if (!strncmp(p, name, n) && p[n] == '=') {
			size_t len = strcspn(p + n + 1, "&#");
			char *v = curl_easy_unescape(NULL, p + n + 1, (int)len, NULL);

			ck_assert_ptr_nonnull(v);
			snprintf(out, size, "%s", v);
			curl_free(v);
			return;
		}
		p = strchr(p, '&');
	}
}

int
t_oauth_authorize(struct t_oauth *o, const char *authorize_url, char *code, size_t codesz,
                  char *state, size_t statesz)
{
	struct t_reply r;
	long st;

	(void)o;
	st = t_http("GET", authorize_url, NULL, &r);
	t_query_param(r.location, "code", code, codesz);
	t_query_param(r.location, "state", state, statesz);
	return st >= 300 && st <= 399 && code[0] ? 0 : (int)st;
}
