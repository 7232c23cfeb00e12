/* handlers.h — the registry that maps a job kind to the code that runs it. */
#ifndef SL_HANDLERS_H
#define SL_HANDLERS_H

#include "worker/job.h"

struct sl_handler {
	const char   *kind;      /* as in sluice.job.kind */
	sl_handler_fn run;
	const char   *summary;   /* one line, for sluice-worker --kinds */
};

/* The handler for kind, or NULL when no handler is registered for it. */
const struct sl_handler *sl_handler_find(const char *kind);

/*
 * Checks the registry once at start: every kind valid and registered once.
 * Returns 0 or SL_EINTERNAL naming the offending kind.
 */
int sl_handlers_check(struct sl_err *err) __attribute__((warn_unused_result));

/* Prints every registered kind with its summary. */
void sl_handlers_print(void);

#endif
