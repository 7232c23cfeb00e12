/* session.h — the request's database session and the transactions a change and its audit row share. */
#ifndef SL_API_SESSION_H
#define SL_API_SESSION_H

#include "api/api.h"

/*
 * The request's session, opened on first use (application_name
 * "sluice-api").  *out is borrowed; main.c closes it.  Returns 0, or
 * SL_ECONN (503) when there is no database to talk to, or SL_EINTERNAL when
 * DATABASE_URL is not configured.
 */
int api_db(struct api_ctx *c, struct sl_db **out, struct sl_err *err)
	__attribute__((warn_unused_result));

/*
 * Opens the request's session if needed (api_db) and BEGINs a transaction
 * on it; *out is the session.  On error: as api_db, or SL_EDB / SL_ECONN
 * from BEGIN, with err filled and no transaction open.
 */
int api_tx_begin(struct api_ctx *c, struct sl_db **out, struct sl_err *err)
	__attribute__((warn_unused_result));

/* COMMIT.  On error: SL_EDB / SL_ECONN with err filled. */
int api_tx_commit(struct sl_db *db, struct sl_err *err) __attribute__((warn_unused_result));

/* ROLLBACK, ignoring errors (a broken session has nothing to roll back). */
void api_tx_rollback(struct sl_db *db);

/*
 * Parses a {id} path segment as a positive bigint.  Returns 0, or
 * SL_ENOTFOUND (404: no resource has that name) with err filled.
 */
int api_path_id(const char *segment, const char *what, long long *out, struct sl_err *err)
	__attribute__((warn_unused_result));

#endif
