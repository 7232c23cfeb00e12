/* ops.c — GET /health (no key) and GET /metrics (Prometheus text format 0.0.4, admin key, the caller's org). */
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "api/session.h"
#include "common/log.h"
#include "common/str.h"

int
api_health(struct api_ctx *c, struct sl_err *err)
{
	json_object *answer = json_object_new_object();
	struct sl_db *db = NULL;
	struct sl_err dberr;
	PGresult *res = NULL;
	const char *version;
	long long v = 0;
	int rc, status = 503;

	if (!answer) {
		rc = sl_err_set(err, SL_ENOMEM, SL_RETRY_NO, "out of memory");
		goto out;
	}
	/* Health answers in its own shape whatever happens: it is what a load balancer polls. */
	if (api_db(c, &db, &dberr)) {
		sl_log_warn("health: database unreachable", SLF_S("request_id", c->req->request_id),
		            SLF_S("error", dberr.msg), SLF_S("detail", dberr.detail), SLF_END);
		json_object_object_add(answer, "status", json_object_new_string("unavailable"));
		json_object_object_add(answer, "database", json_object_new_string("unreachable"));
		goto respond;
	}
	if (sl_db_query(db, &res, "SELECT max(version) AS version FROM sluice.schema_migration",
	                0, NULL, &dberr)) {
		sl_log_warn("health: database query failed", SLF_S("request_id", c->req->request_id),
		            SLF_S("error", dberr.msg), SLF_S("sqlstate", dberr.sqlstate), SLF_END);
		json_object_object_add(answer, "status", json_object_new_string("unavailable"));
		json_object_object_add(answer, "database",
		                       json_object_new_string(dberr.code == SL_ECONN ? "unreachable"
		                                                                     : "error"));
		goto respond;
	}
	version = sl_pg_get(res, 0, "version");
	if (!version || sl_parse_ll(version, 0, 1000000, &v)) {
		json_object_object_add(answer, "status", json_object_new_string("unavailable"));
		json_object_object_add(answer, "database", json_object_new_string("not_migrated"));
		goto respond;
	}
	status = 200;
	json_object_object_add(answer, "status", json_object_new_string("ok"));
	json_object_object_add(answer, "database", json_object_new_string("ok"));
	json_object_object_add(answer, "schema_version", json_object_new_int64(v));
respond:
	rc = api_respond_json(c->resp, status, answer, err);
out:
	PQclear(res);
	json_object_put(answer);
	return rc;
}

/* Metric names per the exposition format: [a-zA-Z_:][a-zA-Z0-9_:]*. */
static int
valid_metric_name(const char *s)
{
	static const char first[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:";

	return s && *s && strchr(first, *s) &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:") ==
	           strlen(s);
}

/* HELP text escapes backslash and newline. */
static int
add_help(struct sl_buf *b, const char *name, const char *help)
{
	int rc = sl_buf_addf(b, "# HELP %s ", name);

	for (; !rc && help && *help; help++) {
		if (*help == '\\')
			rc = sl_buf_adds(b, "\\\\");
		else if (*help == '\n')
			rc = sl_buf_adds(b, "\\n");
		else
			rc = sl_buf_addc(b, *help);
	}
	return rc ? rc : sl_buf_addc(b, '\n');
}

/* PostgreSQL's float8 text for the special values, in the format's spelling. */
static const char *
sample_value(const char *pg)
{
	if (!strcmp(pg, "Infinity"))
		return "+Inf";
	if (!strcmp(pg, "-Infinity"))
		return "-Inf";
	return pg;
}

int
api_metrics(struct api_ctx *c, struct sl_err *err)
{
	static const char *const types[] = { "counter", "gauge", "histogram", "summary", "untyped" };
	struct sl_buf *b = &c->resp->body;
	char last[128] = "", org[32];
	const char *params[1] = { org };
	struct sl_db *db;
	PGresult *res = NULL;
	int row, rc;

	/* An org's key sees its own org's jobs (sluice.metrics(NULL) is for operators). */
	snprintf(org, sizeof(org), "%lld", c->org_id);
	rc = api_db(c, &db, err);
	if (rc)
		goto out;
	rc = sl_db_query(db, &res,
	                 "SELECT m.name, m.help, m.type, m.labels, m.value::text AS value"
	                 "  FROM sluice.metrics($1::bigint) m ORDER BY m.name, m.labels",
	                 1, params, err);
	if (rc)
		goto out;
	sl_buf_reset(b);
	for (row = 0; row < PQntuples(res); row++) {
		const char *name = sl_pg_get(res, row, "name");
		const char *type = sl_pg_get(res, row, "type");
		const char *labels = sl_pg_get(res, row, "labels");
		const char *value = sl_pg_get(res, row, "value");
		size_t t;

		if (!valid_metric_name(name) || strlen(name) >= sizeof(last)) {
			sl_log_warn("metrics: skipping a sample with a bad name",
			            SLF_S("name", name), SLF_END);
			continue;
		}
		if (strcmp(name, last)) {
			for (t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
				if (type && !strcmp(type, types[t]))
					break;
			}
			rc = add_help(b, name, sl_pg_get(res, row, "help"));
			if (!rc)
				rc = sl_buf_addf(b, "# TYPE %s %s\n", name,
				                 t < sizeof(types) / sizeof(types[0]) ? types[t] : "untyped");
			if (rc)
				goto nomem;
			sl_strlcpy(last, name, sizeof(last));
		}
		if (!value)
			continue;   /* no sample: e.g. no runnable job, so no oldest age */
		rc = sl_buf_addf(b, "%s%s%s%s %s\n", name, labels && *labels ? "{" : "",
		                 labels ? labels : "", labels && *labels ? "}" : "", sample_value(value));
		if (rc)
			goto nomem;
	}
	rc = sl_buf_adds(b, "# HELP sluice_up Whether sluice-api reached the database.\n"
	                    "# TYPE sluice_up gauge\nsluice_up 1\n");
	if (rc)
		goto nomem;
	c->resp->status = 200;
	c->resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
	goto out;
nomem:
	rc = sl_err_set(err, rc, SL_RETRY_NO, "cannot hold the metrics");
out:
	PQclear(res);
	return rc;
}
