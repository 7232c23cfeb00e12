/* main.c — sluice-worker: configuration, signals, and the call into the loop. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/log.h"
#include "worker/handlers.h"
#include "worker/worker.h"

static struct sl_worker_conf conf;

static const struct sl_conf_key keys[] = {
	{ "DATABASE_URL", SL_CONF_STR, &conf.database_url, NULL, 0, 0, 0, 1,
	  "PostgreSQL to work for (postgresql://… URL or key=value string). Required." },
	{ "SLUICE_WORKER_BATCH", SL_CONF_INT, &conf.batch, "1000", 1, 1000, 1, 0,
	  "Most jobs claimed per round trip. Larger batches mean fewer round trips; a slow "
	  "job gives the unstarted rest of its batch back (SLUICE_WORKER_RELEASE_AFTER)." },
	{ "SLUICE_WORKER_BATCH_TIME", SL_CONF_MS, &conf.batch_time_ms, "200ms", 1, 3600000, 1, 0,
	  "A worker claims about as many jobs as it expects to run in this long, from the "
	  "mean duration of its recent jobs (never more than SLUICE_WORKER_BATCH)." },
	{ "SLUICE_WORKER_LISTEN", SL_CONF_BOOL, &conf.listen, "on", 0, 0, 0, 0,
	  "Sleep on LISTEN/NOTIFY. Turn off behind a transaction-mode pooler, and set "
	  "SLUICE_WORKER_POLL_INTERVAL to how often to look instead." },
	{ "SLUICE_WORKER_POLL_INTERVAL", SL_CONF_MS, &conf.poll_interval_ms, "30s", 10, 3600000, 1, 0,
	  "Longest an idle worker sleeps before it looks at the queue by itself." },
	{ "SLUICE_WORKER_FLUSH_INTERVAL", SL_CONF_MS, &conf.flush_ms, "50ms", 0, 60000, 1, 0,
	  "Longest a finished job's outcome waits to be written with the rest of its batch." },
	{ "SLUICE_WORKER_RELEASE_AFTER", SL_CONF_MS, &conf.release_after_ms, "1s", 0, 3600000, 1, 0,
	  "When a claimed batch has been held this long, its unstarted jobs go back to the queue." },
	{ "SLUICE_WORKER_REAP_INTERVAL", SL_CONF_MS, &conf.reap_interval_ms, "2s", 100, 3600000, 1, 0,
	  "How often a busy worker looks for jobs whose lease expired (idle workers wake "
	  "for the earliest lease expiry by themselves)." },
	{ "SLUICE_WORKER_HOUSEKEEPING_INTERVAL", SL_CONF_MS, &conf.housekeeping_ms, "60s", 1000,
	  86400000, 1, 0, "How often to prune archived jobs past retention, drop empty lanes, forget "
	  "long-gone workers and have every session drop its claim hints (sluice.rescan_all)." },
	{ "SLUICE_SHUTDOWN_GRACE", SL_CONF_MS, &conf.shutdown_grace_ms, "10s", 0, 3600000, 1, 0,
	  "On SIGTERM, how long a running job may go on before it is told to stop and released." },
	{ "SLUICE_WATCHDOG_GRACE", SL_CONF_MS, &conf.watchdog_grace_ms, "30s", 1000, 3600000, 1, 0,
	  "How long past its timeout a job that ignores it may run before the process exits." },
	{ "SLUICE_LOG_LEVEL", SL_CONF_LOGLEVEL, &sl_log_level, "info", 0, 0, 1, 0,
	  "error, warn, info or debug." },
	{ "SLUICE_CA_FILE", SL_CONF_STR, &conf.ca_file, NULL, 0, 0, 0, 0,
	  "CA bundle (PEM) to verify outside systems' TLS certificates with, instead of the "
	  "system's. The master key comes from SLUICE_MASTER_KEY or SLUICE_MASTER_KEY_FILE." },
	{ "SLUICE_HTTP_TIMEOUT", SL_CONF_MS, &conf.http_timeout_ms, "30s", 100, 600000, 1, 0,
	  "Longest one request to an outside system may take." },
};

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

static volatile sig_atomic_t stop_flag, reload_flag;
static int pipe_fds[2] = { -1, -1 };

static void
on_signal(int signo)
{
	int saved = errno;

	if (signo == SIGHUP)
		reload_flag = 1;
	else
		stop_flag = 1;
	(void)!write(pipe_fds[1], "x", 1);
	errno = saved;
}

static int
reload_conf(void)
{
	struct sl_err err;

	if (sl_conf_load(keys, N_KEYS, 1, &err)) {
		sl_log_error("configuration not reloaded", SLF_S("error", err.msg),
		             SLF_S("detail", err.detail), SLF_END);
		return -1;
	}
	return 0;
}

static void
usage(FILE *out)
{
	fprintf(out,
	        "usage: sluice-worker [--help | --help-config | --kinds | --version]\n"
	        "\n"
	        "Runs Sluice jobs from the PostgreSQL queue at DATABASE_URL until SIGTERM.\n"
	        "Start as many as you like, on any host that reaches the database.\n"
	        "Settings come from the environment (and the file named by SLUICE_CONFIG);\n"
	        "--help-config lists them. SIGHUP reloads the reloadable ones.\n");
}

int
main(int argc, char **argv)
{
	struct sl_worker_signals sig;
	struct sigaction sa;
	struct sl_err err;
	int rc, i;

	sl_log_init("sluice-worker");
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--help-config")) {
			sl_conf_print(keys, N_KEYS, stdout);
			return 0;
		} else if (!strcmp(argv[i], "--kinds")) {
			sl_handlers_print();
			return 0;
		} else if (!strcmp(argv[i], "--version")) {
			printf("sluice-worker %s\n", SLUICE_VERSION);
			return 0;
		} else {
			fprintf(stderr, "sluice-worker: unknown argument %s\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}

	if (sl_conf_load(keys, N_KEYS, 0, &err)) {
		fprintf(stderr, "sluice-worker: %s\n%s%s", err.msg, err.detail, err.detail[0] ? "\n" : "");
		return 2;
	}
	if (!conf.database_url || !*conf.database_url) {
		fprintf(stderr, "sluice-worker: DATABASE_URL is not set\n");
		return 2;
	}
	if (sl_handlers_check(&err)) {
		sl_log_error("bad handler registry", SLF_S("error", err.msg), SLF_END);
		return 70;
	}

	if (pipe(pipe_fds) != 0) {
		perror("sluice-worker: pipe");
		return 71;
	}
	for (i = 0; i < 2; i++) {
		fcntl(pipe_fds[i], F_SETFL, fcntl(pipe_fds[i], F_GETFL) | O_NONBLOCK);
		fcntl(pipe_fds[i], F_SETFD, FD_CLOEXEC);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	sig = (struct sl_worker_signals){ .fd = pipe_fds[0], .stop = &stop_flag,
	                                  .reload = &reload_flag, .reload_conf = reload_conf };
	rc = sl_worker_run(&conf, &sig);
	sl_conf_release(keys, N_KEYS);
	sl_log_forget_secrets();
	return rc ? 1 : 0;
}
