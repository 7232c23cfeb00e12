/* main.c — sluice-api: a CGI/1.1 program that answers one request per run, and never without an answer. */

/*
 * DESIGN
 *
 * 1. One request per process (RFC 3875): the web server puts the request's
 *    meta-variables in the environment and its body on stdin, and reads the
 *    answer from stdout.  Nothing is shared between requests but the
 *    database, so any number of these may run at once.
 *
 * 2. The answer is built in memory (struct api_response) and written once at
 *    the end: the header block in one write, Status line first, then the
 *    body.  So a failure anywhere before that point can still become a
 *    clean JSON error, never half a document.
 *
 * 3. The die-handler.  Right after the request id is known, a complete
 *    "500 internal error" answer carrying it is formatted into a static
 *    buffer.  If the program then ends without having answered (an exit()
 *    deep in a library, a crash signal), the exit hook or signal handler
 *    writes that buffer with write(2), which is async-signal-safe.  A
 *    watchdog alarm answers 503 the same way if a request hangs past
 *    SLUICE_API_TIMEOUT (a stuck database lock, say) and exits.
 *
 * 4. Last act.  A web server may end the process the moment it has the
 *    whole answer (lighttpd sends SIGTERM once Content-Length bytes have
 *    arrived), so the commit, the audit row and the request's log line all
 *    happen before the answer is written, and nothing that matters after.
 *
 * 5. Secrets.  The Authorization header is registered with the log's
 *    redaction list before anything can log, the key is compared only by
 *    its SHA-256, and no answer or audit row ever carries it.  The master
 *    key (SLUICE_MASTER_KEY or SLUICE_MASTER_KEY_FILE, read by
 *    common/secret.c, never by the configuration table) is loaded only by
 *    the routes that seal or open secrets, and its keyring is wiped at exit.
 */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "api/http.h"
#include "common/clock.h"
#include "common/conf.h"
#include "common/log.h"
#include "common/secret.h"

static char *database_url, *ca_file;
static long long timeout_ms, oauth_timeout_ms;

static const struct sl_conf_key keys[] = {
	{ "DATABASE_URL", SL_CONF_STR, &database_url, NULL, 0, 0, 0, 1,
	  "PostgreSQL holding the Sluice schema (postgresql://… URL or key=value string). Required." },
	{ "SLUICE_LOG_LEVEL", SL_CONF_LOGLEVEL, &sl_log_level, "info", 0, 0, 0, 0,
	  "error, warn, info or debug. Log lines go to stderr, which the web server keeps." },
	{ "SLUICE_API_TIMEOUT", SL_CONF_MS, &timeout_ms, "30s", 1000, 3600000, 0, 0,
	  "Longest one request may take; past it the client gets a 503 and the process exits." },
	{ "SLUICE_OAUTH_TIMEOUT", SL_CONF_MS, &oauth_timeout_ms, "10s", 1000, 600000, 0, 0,
	  "Longest the OAuth callback waits for the provider's token endpoint (keep it below "
	  "SLUICE_API_TIMEOUT)." },
	{ "SLUICE_CA_FILE", SL_CONF_STR, &ca_file, NULL, 0, 0, 0, 0,
	  "CA bundle (PEM) that verifies the TLS certificates of outside systems the API calls "
	  "itself (a WooCommerce shop's test connection). Unset: the system's CAs." },
};

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

/* Prepared answers for the die-handler (DESIGN 3). */
static char fallback_500[1024], fallback_503[1024];
static size_t fallback_500_len, fallback_503_len;
static volatile sig_atomic_t answering;   /* set once anything is being written to stdout */

static void
answer_if_silent(void)
{
	if (answering || !fallback_500_len)
		return;
	answering = 1;
	(void)api_write_all(STDOUT_FILENO, fallback_500, fallback_500_len);
}

static void
on_crash(int signo)
{
	answer_if_silent();
	signal(signo, SIG_DFL);
	raise(signo);
}

static void
on_alarm(int signo)
{
	(void)signo;
	if (!answering) {
		answering = 1;
		(void)api_write_all(STDOUT_FILENO, fallback_503, fallback_503_len);
	}
	_exit(1);
}

static void
arm_die_handler(const char *request_id)
{
	struct sigaction sa;

	fallback_500_len = api_static_answer(fallback_500, sizeof(fallback_500), 500,
	                                     "internal_error",
	                                     "internal error; an operator can find it by the request id",
	                                     request_id);
	fallback_503_len = api_static_answer(fallback_503, sizeof(fallback_503), 503, "unavailable",
	                                     "the request took too long; try again shortly",
	                                     request_id);
	atexit(answer_if_silent);
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	sa.sa_handler = on_crash;
	sigaction(SIGABRT, &sa, NULL);
#ifndef __SANITIZE_ADDRESS__
	/* Under AddressSanitizer its own handler reports these; do not hide that. */
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGFPE, &sa, NULL);
#endif
}

/* The key is a secret: keep it out of every log line, whatever logs it by mistake. */
static void
redact_key(const char *authorization)
{
	const char *token;

	if (!authorization)
		return;
	sl_log_add_secret(authorization);
	token = strpbrk(authorization, " \t");
	if (token) {
		token += strspn(token, " \t");
		sl_log_add_secret(token);
	}
}

static int
usage(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--version")) {
		printf("sluice-api %s\n", SLUICE_VERSION);
		return 0;
	}
	if (argc > 1 && !strcmp(argv[1], "--help-config")) {
		sl_conf_print(keys, N_KEYS, stdout);
		return 0;
	}
	fprintf(argc > 1 && !strcmp(argv[1], "--help") ? stdout : stderr,
	        "usage: sluice-api [--help | --help-config | --version]\n"
	        "\n"
	        "sluice-api is a CGI/1.1 program: a web server (lighttpd, nginx + fcgiwrap,\n"
	        "Apache) runs it once per request with REQUEST_METHOD, PATH_INFO and the other\n"
	        "CGI variables set. See tools/lighttpd.conf.in and docs/openapi.yaml.\n"
	        "Routes that store or open connector secrets need the master key in\n"
	        "SLUICE_MASTER_KEY (or a file named by SLUICE_MASTER_KEY_FILE).\n");
	return argc > 1 && !strcmp(argv[1], "--help") ? 0 : 2;
}

int
main(int argc, char **argv)
{
	struct api_request req;
	struct api_response resp;
	struct api_ctx ctx;
	struct sl_err err, conf_err;
	long long started = sl_mono_ms();
	int rc, conf_rc;

	sl_log_init("sluice-api");
	/* Run by hand rather than by a web server. */
	if (!getenv("REQUEST_METHOD"))
		return usage(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	redact_key(getenv("HTTP_AUTHORIZATION"));
	sl_log_add_secret(getenv("SLUICE_MASTER_KEY"));
	conf_rc = sl_conf_load(keys, N_KEYS, 0, &conf_err);

	sl_err_clear(&err);
	rc = api_request_init(&req, &err);
	arm_die_handler(req.request_id);
	alarm((unsigned)((timeout_ms ? timeout_ms : 30000) + 999) / 1000);
	api_response_init(&resp);
	memset(&ctx, 0, sizeof(ctx));
	ctx.req = &req;
	ctx.resp = &resp;
	ctx.database_url = database_url;
	ctx.oauth_timeout_ms = (long)(oauth_timeout_ms ? oauth_timeout_ms : 10000);
	ctx.ca_file = ca_file && *ca_file ? ca_file : NULL;

	if (conf_rc) {
		sl_log_error("bad configuration", SLF_S("request_id", req.request_id),
		             SLF_S("error", conf_err.msg), SLF_S("detail", conf_err.detail), SLF_END);
		err = conf_err;
		err.http_status = 500;
		rc = conf_rc;
	} else if (rc) {
		sl_log_error("cannot make a request id", SLF_S("error", err.msg), SLF_END);
		err.http_status = 500;
	}
	if (rc) {
		if (api_respond_error(&resp, &req, &err))
			resp.status = 0;
	} else {
		api_dispatch(&ctx);
	}

	/* Logged before the answer goes out (DESIGN 4). */
	sl_log_info("request", SLF_S("request_id", req.request_id), SLF_S("method", req.method),
	            SLF_S("path", req.path), SLF_I("status", resp.status ? resp.status : 500),
	            SLF_I("org_id", ctx.org_id), SLF_I("key_id", ctx.key_id),
	            SLF_I("duration_ms", sl_mono_ms() - started), SLF_END);
	if (resp.status) {
		answering = 1;
		if (api_send(&resp, &req))
			sl_log_debug("the client went away before the answer was written",
			             SLF_S("request_id", req.request_id), SLF_END);
	} else {
		answer_if_silent();
	}

	sl_db_free(ctx.db);
	sl_keyring_free(ctx.kr);
	api_response_release(&resp);
	api_request_release(&req);
	sl_conf_release(keys, N_KEYS);
	sl_log_forget_secrets();
	return 0;
}
