/* session.c — the request's database session, its transactions, answers the database builds, and path ids. */
#include "api/session.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "api/audit.h"
#include "api/http.h"
#include "api/job_input.h"
#include "common/json.h"
#include "common/str.h"

int
api_db(struct api_ctx *c, struct sl_db **out, struct sl_err *err)
{
	int rc = 0;

	if (c->db)
		goto out;
	if (!c->database_url || !*c->database_url) {
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "DATABASE_URL is not set");
		goto out;
	}
	rc = sl_db_open(&c->db, c->database_url, "sluice-api", err);
out:
	*out = c->db;
	return rc;
}

int
api_tx_begin(struct api_ctx *c, struct sl_db **out, struct sl_err *err)
{
	int rc = api_db(c, out, err);

	return rc ? rc : sl_db_exec(*out, "BEGIN", 0, NULL, err);
}

int
api_tx_commit(struct api_ctx *c, struct sl_err *err)
{
	return sl_db_exec(c->db, "COMMIT", 0, NULL, err);
}

int
api_tx_commit_audited(struct api_ctx *c, struct sl_err *err)
{
	int rc = api_tx_commit(c, err);

	if (!rc)
		c->audited = 1;
	return rc;
}

void
api_tx_rollback(struct api_ctx *c)
{
	if (sl_db_ok(c->db) && PQtransactionStatus(sl_db_conn(c->db)) != PQTRANS_IDLE)
		(void)!sl_db_exec(c->db, "ROLLBACK", 0, NULL, NULL);
}

void
api_tx_end(struct api_ctx *c, int rc)
{
	if (rc)
		c->resp->status = 0;
	api_tx_rollback(c);
}

/* Sets the answer to `status` with json_text, a JSON document, as the body. */
int
api_respond_json_text(struct api_response *resp, int status, const char *json_text,
                      struct sl_err *err)
{
	json_object *doc = NULL;
	int rc;

	if (!json_text) {
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "the database built no answer");
		goto out;
	}
	/* Parsed and written again: compact like every other answer (numbers keep their text). */
	rc = sl_json_parse(json_text, strlen(json_text), &doc, err);
	if (rc) {
		err->code = rc = SL_EINTERNAL;
		goto out;
	}
	rc = api_respond_json(resp, status, doc, err);
out:
	json_object_put(doc);
	return rc;
}

int
api_respond_query(struct api_ctx *c, int status, const char *what, const char *sql,
                  int nparams, const char *const *params, struct sl_err *err)
{
	struct sl_db *db;
	PGresult *res = NULL;
	int rc;

	c->resp->status = 0;
	rc = api_db(c, &db, err);
	if (rc)
		goto out;
	rc = sl_db_query(db, &res, sql, nparams, params, err);
	if (rc)
		goto out;
	if (PQntuples(res) != 1 && what) {
		rc = api_fail(err, 404, NULL, "no such %s", what);
		goto out;
	}
	rc = api_respond_json_text(c->resp, status, sl_pg_get(res, 0, "doc"), err);
out:
	PQclear(res);
	return rc;
}

int
api_respond_by_id(struct api_ctx *c, int status, const char *what, const char *sql,
                  const char *id, struct sl_err *err)
{
	char org[32];
	const char *params[2] = { id, org };

	snprintf(org, sizeof(org), "%lld", c->org_id);
	return api_respond_query(c, status, what, sql, 2, params, err);
}

int
api_path_id(const char *segment, const char *what, char id[API_ID_TEXT], struct sl_err *err)
{
	long long n;

	id[0] = '\0';
	/* A name that cannot be an id names nothing: 404, like an id nobody has. */
	if (!segment || sl_parse_ll(segment, 1, INT64_MAX, &n))
		return api_fail(err, 404, NULL, "no such %s", what);
	snprintf(id, API_ID_TEXT, "%lld", n);
	return 0;
}

int
api_path_uuid(const char *segment, const char *what, char id[API_UUID_TEXT], struct sl_err *err)
{
	size_t i;

	id[0] = '\0';
	if (!segment || strlen(segment) != 36 || !api_is_uuid(segment))
		return api_fail(err, 404, NULL, "no such %s", what);
	for (i = 0; i < 36; i++)
		id[i] = (char)tolower((unsigned char)segment[i]);
	id[36] = '\0';
	return 0;
}

int
api_path_target(struct api_ctx *c, const char *what, char id[API_UUID_TEXT], struct sl_err *err)
{
	int rc = api_path_uuid(c->id, what, id, err);

	if (!rc)
		snprintf(c->target, sizeof(c->target), "%s:%s", what, id);
	return rc;
}

int
api_commit_answer(struct api_ctx *c, const char *action, int status, json_object *detail,
                  const char *what, const char *doc_sql, const char *id, struct sl_err *err)
{
	int rc = api_audit_one(c, action, "ok", status, c->target, detail, err);

	if (!rc)
		rc = api_respond_by_id(c, status, what, doc_sql, id, err);
	if (!rc)
		rc = api_tx_commit_audited(c, err);
	return rc;
}
