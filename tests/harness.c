/* harness.c — databases per test, worker processes and condition waits for the tests. */
#include "tests/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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
	PGresult *r = t_query(c, sql, 0, NULL);
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

void
t_text(PGconn *c, const char *sql, char *out, size_t size)
{
	PGresult *r = t_query(c, sql, 0, NULL);

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

long long
t_key(const char *url, long long org, const char *scope, char *key)
{
	char cmd[1024], out[512], *line;
	long long id = 0;

	snprintf(cmd, sizeof(cmd), "'%s' --database '%s' key create --org %lld --name test-%s"
	         " --scope %s", t_ctl_bin, url, org, scope, scope);
	ck_assert_int_eq(t_sh(cmd, out, sizeof(out)), 0);
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
