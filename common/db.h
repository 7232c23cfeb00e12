/* db.h — one PostgreSQL session: parameterised queries, checked results, LISTEN waits. */
#ifndef SL_DB_H
#define SL_DB_H

#include <libpq-fe.h>

#include "common/err.h"

struct sl_db;

/*
 * Opens a session to `conninfo` (a postgresql:// URL or key=value string)
 * and sets application_name.  On error returns SL_ECONN, fills err (never
 * with the password) and sets *out to NULL.
 */
int sl_db_open(struct sl_db **out, const char *conninfo, const char *app_name,
               struct sl_err *err) __attribute__((warn_unused_result));

/* Closes the session.  NULL-safe. */
void sl_db_free(struct sl_db *db);

/* The libpq connection, for the few callers that need it (pipelines). */
PGconn *sl_db_conn(struct sl_db *db);

/* Whether the session is usable; false after the server went away. */
int sl_db_ok(const struct sl_db *db);

/*
 * Replaces a broken session with a new one to the same database (session
 * state such as LISTEN is gone).  Returns 0 or SL_ECONN.
 */
int sl_db_reset(struct sl_db *db, struct sl_err *err) __attribute__((warn_unused_result));

/*
 * Runs one parameterised statement (values as text; NULL for SQL NULL).
 * On success returns 0 and, if out is not NULL, hands over the result (free
 * with PQclear); otherwise clears it.  On error returns SL_EDB (err->sqlstate
 * set, err->msg the server's primary message, err->field the column an
 * error names: a constraint's, or one a function raised with COLUMN = …) or
 * SL_ECONN when the connection broke, and *out is NULL.
 */
int sl_db_query(struct sl_db *db, PGresult **out, const char *sql,
                int nparams, const char *const *params, struct sl_err *err)
	__attribute__((warn_unused_result));

/* sl_db_query() without a result. */
int sl_db_exec(struct sl_db *db, const char *sql, int nparams,
               const char *const *params, struct sl_err *err)
	__attribute__((warn_unused_result));

/* Fills err from a failed result (or the connection when res is NULL). */
int sl_db_error(struct sl_db *db, const PGresult *res, struct sl_err *err);

/*
 * Column `name` of row `row`: its text, or NULL when the value is SQL NULL
 * or there is no such column.  Borrowed from res.
 */
const char *sl_pg_get(const PGresult *res, int row, const char *name);

/* One statement of a pipeline. */
struct sl_stmt {
	const char        *sql;
	int                nparams;
	const char *const *params;
};

/*
 * Sends n statements in one round trip (libpq pipeline mode) and runs them as
 * one transaction.  On success returns 0 and res[i] holds statement i's result
 * (PQclear each).  On error every res[i] is NULL, nothing was committed, and
 * the return is SL_EDB (err from the first failing statement) or SL_ECONN.
 */
int sl_db_pipeline(struct sl_db *db, const struct sl_stmt *stmts, int n,
                   PGresult **res, struct sl_err *err) __attribute__((warn_unused_result));

/* LISTENs on a channel (an identifier; not quoted, so keep it simple). */
int sl_db_listen(struct sl_db *db, const char *channel, struct sl_err *err)
	__attribute__((warn_unused_result));

/*
 * Waits up to timeout_ms (-1: forever) for a notification on the session
 * or for extra_fd (-1: none) to become readable, whichever comes first.
 * Drains every pending notification.  *notified counts them; *extra_ready
 * says whether extra_fd woke us.  Returns 0, or SL_ECONN when the session
 * broke while waiting.
 */
int sl_db_wait(struct sl_db *db, int timeout_ms, int extra_fd,
               int *notified, int *extra_ready, struct sl_err *err)
	__attribute__((warn_unused_result));

#endif
