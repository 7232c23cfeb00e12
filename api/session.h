/* session.h — the request's database session, the transactions a change and its audit row share, and answers the database builds. */
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
 * A handler's transaction.  The shape every mutating handler follows:
 *
 *	rc = api_tx_begin(c, &db, err);
 *	... the change, its audit row (api_audit*), its answer ...
 *	rc = api_tx_commit_audited(c, err);
 * out:
 *	api_tx_end(c, rc);
 *
 * Helpers that run a transaction of their own (not the handler's answer)
 * end it with api_tx_commit() and api_tx_rollback().
 */

/*
 * Opens the request's session if needed (api_db) and BEGINs a transaction
 * on it; *out is the session.  On error: as api_db, or SL_EDB / SL_ECONN
 * from BEGIN, with err filled and no transaction open.
 */
int api_tx_begin(struct api_ctx *c, struct sl_db **out, struct sl_err *err)
	__attribute__((warn_unused_result));

/*
 * COMMITs the request's transaction.  On error: SL_EDB / SL_ECONN with err
 * filled; nothing was committed.
 */
int api_tx_commit(struct api_ctx *c, struct sl_err *err) __attribute__((warn_unused_result));

/*
 * api_tx_commit() for a mutating handler whose transaction holds its own
 * audit row: once it committed, c->audited is set, so the dispatcher does
 * not audit the call again.  On error as api_tx_commit, c->audited unset.
 */
int api_tx_commit_audited(struct api_ctx *c, struct sl_err *err)
	__attribute__((warn_unused_result));

/*
 * ROLLBACK when the request's session is inside a transaction (open, or
 * failed); nothing otherwise, nor without a session.  Errors are ignored:
 * a broken session has nothing to roll back.
 */
void api_tx_rollback(struct api_ctx *c);

/*
 * The `out:` of a handler that may have begun a transaction, given the
 * handler's rc: when rc is an error, the answer built so far is dropped
 * (c->resp->status = 0) so that the dispatcher answers with the error;
 * then a transaction still open is rolled back (api_tx_rollback).
 */
void api_tx_end(struct api_ctx *c, int rc);

/*
 * Answers `status` with json_text, a JSON document the database built,
 * written compactly like every other answer (numbers keep their text).
 * NULL or not JSON: SL_EINTERNAL.  On error no answer is set.
 */
int api_respond_json_text(struct api_response *resp, int status, const char *json_text,
                          struct sl_err *err) __attribute__((warn_unused_result));

/*
 * Answers `status` with the JSON document the database builds: runs sql
 * with nparams text params on the request's session (api_db; inside the
 * open transaction, if any) and sets the body to the text of column "doc"
 * of its one row, written compactly like every other answer (numbers keep
 * their text).  When no row comes back: 404 "no such <what>" (an id
 * another org owns is as absent as one nobody has); what may be NULL for
 * statements that always return a row.  Other errors: as api_db and
 * sl_db_query; SL_EINTERNAL when doc is NULL or not JSON; SL_ENOMEM or
 * SL_ETOOLARGE.  On error no answer is set.
 */
int api_respond_query(struct api_ctx *c, int status, const char *what, const char *sql,
                      int nparams, const char *const *params, struct sl_err *err)
	__attribute__((warn_unused_result));

/*
 * api_respond_query() for one resource of the caller's org: sql takes $1
 * the resource's id (text) and $2 the caller's org id; 404 "no such <what>"
 * when the org has none by that id (another org's is as absent as one
 * nobody has).
 */
int api_respond_by_id(struct api_ctx *c, int status, const char *what, const char *sql,
                      const char *id, struct sl_err *err) __attribute__((warn_unused_result));

/* Room for an id of api_path_id() as text. */
#define API_ID_TEXT 24

/*
 * Parses a {id} path segment as a positive bigint and writes it to id in
 * canonical decimal (a statement parameter; "007" becomes "7").  Returns
 * 0, or SL_ENOTFOUND (404 "no such <what>": no resource has that name)
 * with err filled and id empty.
 */
int api_path_id(const char *segment, const char *what, char id[API_ID_TEXT], struct sl_err *err)
	__attribute__((warn_unused_result));

/* Room for a UUID of api_path_uuid() as text. */
#define API_UUID_TEXT 37

/*
 * Parses a {id} path segment as a UUID and writes it to id in lower case.
 * Returns 0, or SL_ENOTFOUND (404 "no such <what>") with err filled and id
 * empty: a segment that cannot be a UUID names nothing, like one nobody has.
 */
int api_path_uuid(const char *segment, const char *what, char id[API_UUID_TEXT],
                  struct sl_err *err) __attribute__((warn_unused_result));

/*
 * api_path_uuid() of c->id, which also names the call's target
 * "<what>:<id>" (c->target, for its audit row).
 */
int api_path_target(struct api_ctx *c, const char *what, char id[API_UUID_TEXT],
                    struct sl_err *err) __attribute__((warn_unused_result));

/*
 * The end of a change that answers with the resource: its audit row
 * (action, outcome "ok", status, c->target, detail, which stays the
 * caller's), the answer api_respond_by_id(c, status, what, doc_sql, id)
 * builds, and COMMIT (api_tx_commit_audited).
 */
int api_commit_answer(struct api_ctx *c, const char *action, int status, json_object *detail,
                      const char *what, const char *doc_sql, const char *id, struct sl_err *err)
	__attribute__((warn_unused_result));

#endif
