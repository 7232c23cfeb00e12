/* session.c — the request's database session, its transactions, and path ids. */
#include "api/session.h"

#include <stdint.h>

#include "api/http.h"
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
api_tx_commit(struct sl_db *db, struct sl_err *err)
{
	return sl_db_exec(db, "COMMIT", 0, NULL, err);
}

void
api_tx_rollback(struct sl_db *db)
{
	if (sl_db_ok(db))
		(void)!sl_db_exec(db, "ROLLBACK", 0, NULL, NULL);
}

int
api_path_id(const char *segment, const char *what, long long *out, struct sl_err *err)
{
	/* A name that cannot be an id names nothing: 404, like an id nobody has. */
	if (!segment || sl_parse_ll(segment, 1, INT64_MAX, out))
		return api_fail(err, 404, NULL, "no such %s", what);
	return 0;
}
