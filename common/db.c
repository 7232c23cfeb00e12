/* db.c — libpq session wrapper. */
#include "common/db.h"

#include <errno.h>
#include <poll.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/str.h"

struct sl_db {
	PGconn *conn;
	char   *conninfo;
	char   *app_name;
};

/* libpq's messages end with a newline; ours do not. */
static void
copy_message(char *dst, size_t n, const char *src)
{
	size_t len;

	sl_strlcpy(dst, src ? src : "unknown error", n);
	len = strlen(dst);
	while (len && (dst[len - 1] == '\n' || dst[len - 1] == ' '))
		dst[--len] = '\0';
}

/* Server NOTICEs ("relation already exists, skipping") go to the debug log, not stderr. */
static void
notice_to_log(void *arg, const char *message)
{
	char line[512];

	(void)arg;
	copy_message(line, sizeof(line), message);
	sl_log_debug("database notice", SLF_S("notice", line), SLF_END);
}

static int
connect_db(struct sl_db *db, struct sl_err *err)
{
	const char *keys[] = { "dbname", "application_name", "connect_timeout", NULL };
	const char *vals[] = { db->conninfo, db->app_name, "10", NULL };

	/* expand_dbname = 1: "dbname" may hold a whole URL or conninfo string. */
	db->conn = PQconnectdbParams(keys, vals, 1);
	if (!db->conn || PQstatus(db->conn) != CONNECTION_OK) {
		sl_err_set(err, SL_ECONN, SL_RETRY_BACKOFF, "cannot connect to the database");
		/* libpq's connection errors name host and port, never the password. */
		if (db->conn && err)
			copy_message(err->detail, sizeof(err->detail), PQerrorMessage(db->conn));
		return SL_ECONN;
	}
	PQsetNoticeProcessor(db->conn, notice_to_log, NULL);
	return 0;
}

int
sl_db_open(struct sl_db **out, const char *conninfo, const char *app_name,
           struct sl_err *err)
{
	struct sl_db *db;

	*out = NULL;
	db = sl_calloc(1, sizeof(*db));
	if (!db)
		return sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "out of memory");
	db->conninfo = sl_strdup(conninfo ? conninfo : "");
	db->app_name = sl_strdup(app_name ? app_name : "sluice");
	if (!db->conninfo || !db->app_name) {
		sl_db_free(db);
		return sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "out of memory");
	}
	if (connect_db(db, err)) {
		sl_db_free(db);
		return SL_ECONN;
	}
	*out = db;
	return 0;
}

void
sl_db_free(struct sl_db *db)
{
	if (!db)
		return;
	PQfinish(db->conn);
	sl_free(db->conninfo);
	sl_free(db->app_name);
	sl_free(db);
}

PGconn *
sl_db_conn(struct sl_db *db)
{
	return db->conn;
}

int
sl_db_ok(const struct sl_db *db)
{
	return db && db->conn && PQstatus(db->conn) == CONNECTION_OK;
}

int
sl_db_reset(struct sl_db *db, struct sl_err *err)
{
	/* A fresh PGconn rather than PQreset(): no pipeline or LISTEN state survives. */
	PQfinish(db->conn);
	db->conn = NULL;
	return connect_db(db, err);
}

int
sl_db_error(struct sl_db *db, const PGresult *res, struct sl_err *err)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
	const char *column = res ? PQresultErrorField(res, PG_DIAG_COLUMN_NAME) : NULL;
	int code = PQstatus(db->conn) == CONNECTION_OK ? SL_EDB : SL_ECONN;

	sl_err_set(err, code, SL_RETRY_BACKOFF, "%s", "");
	if (err) {
		copy_message(err->msg, sizeof(err->msg),
		             primary ? primary : PQerrorMessage(db->conn));
		if (detail)
			copy_message(err->detail, sizeof(err->detail), detail);
		if (state)
			sl_strlcpy(err->sqlstate, state, sizeof(err->sqlstate));
		if (column)
			sl_err_field(err, column);
	}
	return code;
}

int
sl_db_query(struct sl_db *db, PGresult **out, const char *sql,
            int nparams, const char *const *params, struct sl_err *err)
{
	PGresult *res;
	ExecStatusType st;

	if (out)
		*out = NULL;
	res = PQexecParams(db->conn, sql, nparams, NULL, params, NULL, NULL, 0);
	st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		int rc = sl_db_error(db, res, err);

		PQclear(res);
		return rc;
	}
	if (out)
		*out = res;
	else
		PQclear(res);
	return 0;
}

int
sl_db_exec(struct sl_db *db, const char *sql, int nparams,
           const char *const *params, struct sl_err *err)
{
	return sl_db_query(db, NULL, sql, nparams, params, err);
}

const char *
sl_pg_get(const PGresult *res, int row, const char *name)
{
	int col = PQfnumber(res, name);

	if (col < 0 || row < 0 || row >= PQntuples(res) || PQgetisnull(res, row, col))
		return NULL;
	return PQgetvalue(res, row, col);
}

int
sl_db_pipeline(struct sl_db *db, const struct sl_stmt *stmts, int n,
               PGresult **res, struct sl_err *err)
{
	PGconn *c = db->conn;
	PGresult *r;
	int i, rc = 0;

	for (i = 0; i < n; i++)
		res[i] = NULL;
	if (!PQenterPipelineMode(c))
		return sl_db_error(db, NULL, err);
	for (i = 0; i < n; i++) {
		if (!PQsendQueryParams(c, stmts[i].sql, stmts[i].nparams, NULL, stmts[i].params,
		                       NULL, NULL, 0)) {
			rc = sl_db_error(db, NULL, err);
			goto out;
		}
	}
	if (!PQpipelineSync(c)) {
		rc = sl_db_error(db, NULL, err);
		goto out;
	}
	for (i = 0; i < n; i++) {
		ExecStatusType st;

		r = PQgetResult(c);
		if (!r) {
			rc = sl_db_error(db, NULL, err);
			goto out;
		}
		st = PQresultStatus(r);
		if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
			res[i] = r;
		} else {
			/* Later statements of an aborted pipeline report PGRES_PIPELINE_ABORTED. */
			if (!rc)
				rc = sl_db_error(db, r, err);
			PQclear(r);
		}
		/* Each statement's results end with a NULL. */
		while ((r = PQgetResult(c)) != NULL)
			PQclear(r);
	}
	r = PQgetResult(c);
	if (!r || PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
		if (!rc)
			rc = sl_db_error(db, r, err);
	}
	PQclear(r);
out:
	if (PQstatus(c) == CONNECTION_OK && !PQexitPipelineMode(c) && !rc)
		rc = sl_db_error(db, NULL, err);
	if (PQstatus(c) != CONNECTION_OK && rc)
		rc = SL_ECONN;
	if (rc) {
		for (i = 0; i < n; i++) {
			PQclear(res[i]);
			res[i] = NULL;
		}
	}
	return rc;
}

int
sl_db_listen(struct sl_db *db, const char *channel, struct sl_err *err)
{
	char sql[128];
	char *ident = PQescapeIdentifier(db->conn, channel, strlen(channel));
	int rc;

	if (!ident)
		return sl_db_error(db, NULL, err);
	snprintf(sql, sizeof(sql), "LISTEN %s", ident);
	PQfreemem(ident);
	rc = sl_db_exec(db, sql, 0, NULL, err);
	return rc;
}

static int
drain(struct sl_db *db, int *notified, struct sl_err *err)
{
	PGnotify *n;

	if (!PQconsumeInput(db->conn))
		return sl_db_error(db, NULL, err);
	while ((n = PQnotifies(db->conn)) != NULL) {
		(*notified)++;
		PQfreemem(n);
	}
	return 0;
}

int
sl_db_wait(struct sl_db *db, int timeout_ms, int extra_fd,
           int *notified, int *extra_ready, struct sl_err *err)
{
	struct pollfd fds[2];
	nfds_t nfds = 1;
	int rc;

	*notified = 0;
	*extra_ready = 0;
	/* Notifications may already sit in libpq's buffer. */
	rc = drain(db, notified, err);
	if (rc || *notified)
		return rc;

	fds[0].fd = PQsocket(db->conn);
	fds[0].events = POLLIN;
	if (fds[0].fd < 0)
		return sl_err_set(err, SL_ECONN, SL_RETRY_BACKOFF, "database connection is closed");
	if (extra_fd >= 0) {
		fds[1].fd = extra_fd;
		fds[1].events = POLLIN;
		nfds = 2;
	}
	rc = poll(fds, nfds, timeout_ms);
	if (rc < 0) {
		if (errno == EINTR)
			return 0;
		return sl_err_set(err, SL_EIO, SL_RETRY_BACKOFF, "poll: %s", strerror(errno));
	}
	if (nfds == 2 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)))
		*extra_ready = 1;
	if (fds[0].revents)
		return drain(db, notified, err);
	return 0;
}
