/* worker.h — the sluice-worker main loop: claim, run, settle, sleep. */
#ifndef SL_WORKER_H
#define SL_WORKER_H

#include <signal.h>

/* Settings of one worker process; main.c fills them from the config table. */
struct sl_worker_conf {
	char     *database_url;
	long long batch;              /* most jobs claimed per round trip */
	long long batch_time_ms;      /* claim about as many jobs as run in this long */
	long long poll_interval_ms;   /* longest sleep without a look at the queue */
	int       listen;             /* wait for NOTIFY (off behind a transaction pooler) */
	long long flush_ms;           /* longest a finished job waits to be written */
	long long release_after_ms;   /* a slow job gives the rest of its batch back after this */
	long long reap_interval_ms;   /* how often a busy worker looks for expired leases */
	long long housekeeping_ms;    /* how often to prune the archive and drop empty lanes */
	long long shutdown_grace_ms;  /* on SIGTERM, how long a running job may go on */
	long long watchdog_grace_ms;  /* past its timeout, how long before a stuck job kills the process */
	int       log_level;
	char     *ca_file;            /* CA bundle for outside systems; NULL: the system's */
	long long http_timeout_ms;    /* one request to an outside system */
};

/* What the signal handlers of main.c share with the loop. */
struct sl_worker_signals {
	int                     fd;       /* readable when a signal arrived (self-pipe) */
	volatile sig_atomic_t  *stop;     /* SIGTERM or SIGINT */
	volatile sig_atomic_t  *reload;   /* SIGHUP */
	int                   (*reload_conf)(void);   /* re-reads the config; 0 on success */
};

/*
 * Runs the worker until asked to stop.  Returns 0 after a clean shutdown
 * (every held job finished or given back), or a negative SL_E* code when it
 * could not start (say, no database).  Once started, database outages are
 * survived by reconnecting with backoff.
 */
int sl_worker_run(const struct sl_worker_conf *conf, const struct sl_worker_signals *sig);

#endif
