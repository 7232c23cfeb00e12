/* routes.c — the route table, and dispatch: match, authenticate, read the body, run, audit refusals. */
#include <string.h>

#include "api/api.h"
#include "api/audit.h"
#include "api/auth.h"
#include "api/session.h"
#include "common/log.h"

struct api_route {
	const char  *method;
	const char  *pattern;   /* literal segments, and {id}: one non-empty segment */
	api_handler  handler;
	const char  *scope;     /* the key scope it needs; NULL: no key */
	const char  *action;    /* audit action of a mutating route; NULL for reads */
	int          body;      /* takes a JSON request body */
};

static const struct api_route routes[] = {
	{ .method = "GET", .pattern = "/health", .handler = api_health },
	{ .method = "GET", .pattern = "/metrics", .handler = api_metrics, .scope = "admin" },
	{ .method = "POST", .pattern = "/api/v1/jobs", .handler = api_job_create,
	  .scope = "write", .action = "job.create", .body = 1 },
	{ .method = "GET", .pattern = "/api/v1/jobs/{id}", .handler = api_job_get, .scope = "read" },
	{ .method = "DELETE", .pattern = "/api/v1/jobs/{id}", .handler = api_job_cancel,
	  .scope = "write", .action = "job.cancel" },
	{ .method = "GET", .pattern = "/api/v1/queue", .handler = api_queue_status, .scope = "read" },
	{ .method = "GET", .pattern = "/api/v1/connectors", .handler = api_connector_list,
	  .scope = "read" },
	{ .method = "POST", .pattern = "/api/v1/connectors", .handler = api_connector_create,
	  .scope = "write", .action = "connector.create", .body = 1 },
	/* Before {id}: "queue", "oauth", "fetch" and "requests" are not connectors.  Seed 001's path of the queue. */
	{ .method = "GET", .pattern = "/api/v1/connectors/queue", .handler = api_queue_status,
	  .scope = "read" },
	{ .method = "POST", .pattern = "/api/v1/connectors/oauth/initiate",
	  .handler = api_oauth_initiate, .scope = "write", .action = "oauth.initiate", .body = 1 },
	{ .method = "POST", .pattern = "/api/v1/connectors/oauth/callback",
	  .handler = api_oauth_callback, .scope = "write", .action = "oauth.callback", .body = 1 },
	{ .method = "POST", .pattern = "/api/v1/connectors/fetch", .handler = api_fetch_submit,
	  .scope = "write", .action = "fetch.submit", .body = 1 },
	{ .method = "GET", .pattern = "/api/v1/connectors/requests/{id}",
	  .handler = api_fetch_request_get, .scope = "read" },
	{ .method = "GET", .pattern = "/api/v1/connectors/requests/{id}/rows",
	  .handler = api_fetch_request_rows, .scope = "read" },
	{ .method = "GET", .pattern = "/api/v1/connectors/{id}", .handler = api_connector_get,
	  .scope = "read" },
	{ .method = "PUT", .pattern = "/api/v1/connectors/{id}", .handler = api_connector_update,
	  .scope = "write", .action = "connector.update", .body = 1 },
	{ .method = "DELETE", .pattern = "/api/v1/connectors/{id}", .handler = api_connector_delete,
	  .scope = "write", .action = "connector.delete" },
	{ .method = "POST", .pattern = "/api/v1/connectors/{id}/enable",
	  .handler = api_connector_enable, .scope = "write", .action = "connector.enable" },
	{ .method = "POST", .pattern = "/api/v1/connectors/{id}/disable",
	  .handler = api_connector_disable, .scope = "write", .action = "connector.disable" },
	{ .method = "GET", .pattern = "/api/v1/events", .handler = api_event_list, .scope = "read" },
	{ .method = "GET", .pattern = "/api/v1/events/{id}", .handler = api_event_get,
	  .scope = "read" },
	{ .method = "GET", .pattern = "/api/v1/audit", .handler = api_audit_list, .scope = "admin" },
	/*
	 * Seed 002's admin API (admin.c).  test takes no body and sync an
	 * optional one: the handler reads it when one was sent.
	 */
	{ .method = "GET", .pattern = "/admin/connectors", .handler = api_admin_connector_list,
	  .scope = "admin" },
	{ .method = "POST", .pattern = "/admin/connectors", .handler = api_admin_connector_create,
	  .scope = "admin", .action = "admin.connector.create", .body = 1 },
	{ .method = "PUT", .pattern = "/admin/connectors/{id}",
	  .handler = api_admin_connector_update, .scope = "admin",
	  .action = "admin.connector.update", .body = 1 },
	{ .method = "POST", .pattern = "/admin/connectors/{id}/test",
	  .handler = api_admin_connector_test, .scope = "admin", .action = "admin.connector.test" },
	{ .method = "POST", .pattern = "/admin/connectors/{id}/sync",
	  .handler = api_admin_connector_sync, .scope = "admin", .action = "admin.connector.sync" },
	{ .method = "GET", .pattern = "/admin/connectors/{id}/runs",
	  .handler = api_admin_connector_runs, .scope = "admin" },
	/* A browser back from the provider: no key; the state names the org (oauth.c writes the audit). */
	{ .method = "GET", .pattern = "/oauth/callback", .handler = api_oauth_browser_callback },
};

#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

/*
 * Whether path matches pattern.  The {id} segment is copied into id (of
 * size idsz); one too long to fit is left empty, which no handler accepts.
 */
static int
match(const char *pattern, const char *path, char *id, size_t idsz)
{
	static const char param[] = "{id}";

	id[0] = '\0';
	while (*pattern && *path) {
		if (!strncmp(pattern, param, sizeof(param) - 1)) {
			size_t n = strcspn(path, "/");

			if (n == 0)
				return 0;
			if (n < idsz) {
				memcpy(id, path, n);
				id[n] = '\0';
			}
			pattern += sizeof(param) - 1;
			path += n;
			continue;
		}
		if (*pattern != *path)
			return 0;
		pattern++;
		path++;
	}
	return *pattern == '\0' && *path == '\0';
}

/* Adds method to the comma-separated list in allow unless it is there. */
static void
allow_add(char *allow, size_t n, const char *method)
{
	const char *p = allow;
	size_t mlen = strlen(method), len = strlen(allow);

	while ((p = strstr(p, method)) != NULL) {
		if ((p == allow || p[-1] == ' ') && (p[mlen] == ',' || p[mlen] == '\0'))
			return;
		p += mlen;
	}
	if (len + mlen + 3 > n)
		return;
	if (len) {
		memcpy(allow + len, ", ", 2);
		len += 2;
	}
	memcpy(allow + len, method, mlen + 1);
}

/* A refused or failed mutating call still leaves its audit row, in a transaction of its own. */
static void
audit_refusal(struct api_ctx *c, const struct api_route *route, const struct sl_err *err)
{
	json_object *detail = json_object_new_object();
	char msg[sizeof(err->msg) + 64];
	const char *code;
	struct sl_err aerr;
	int status;

	if (!detail)
		goto out;
	api_error_public(err, &status, &code, msg, sizeof(msg));
	json_object_object_add(detail, "code", json_object_new_string(code));
	json_object_object_add(detail, "message", json_object_new_string(msg));
	if (err->field[0])
		json_object_object_add(detail, "field", json_object_new_string(err->field));
	if (api_audit_one(c, route->action, api_outcome(status), status,
	                  c->target[0] ? c->target : NULL, detail, &aerr))
		sl_log_error("cannot write the audit row of a refused call",
		             SLF_S("request_id", c->req->request_id), SLF_S("action", route->action),
		             SLF_S("error", aerr.msg), SLF_S("sqlstate", aerr.sqlstate), SLF_END);
out:
	json_object_put(detail);
}

void
api_dispatch(struct api_ctx *c)
{
	const struct api_route *route = NULL;
	const char *method = c->req->method, *path = c->req->path;
	char allow[64] = "", id[64];
	struct sl_err err;
	size_t i;
	int rc = 0, head = !strcmp(method, "HEAD");

	sl_err_clear(&err);
	c->resp->head_only = head;
	for (i = 0; i < N_ROUTES; i++) {
		if (!match(routes[i].pattern, path, id, sizeof(id)))
			continue;
		if (!strcmp(routes[i].method, method) || (head && !strcmp(routes[i].method, "GET"))) {
			route = &routes[i];
			break;
		}
		allow_add(allow, sizeof(allow), routes[i].method);
		if (!strcmp(routes[i].method, "GET"))
			allow_add(allow, sizeof(allow), "HEAD");
	}
	if (!route && allow[0]) {
		(void)!api_add_header(c->resp, "Allow", "%s", allow);
		rc = api_fail(&err, 405, NULL, "method %.16s is not allowed here; allowed: %s",
		              method, allow);
		goto out;
	}
	if (!route) {
		rc = api_fail(&err, 404, NULL, "no such route: %.128s", path);
		goto out;
	}
	c->id = strstr(route->pattern, "{id}") ? id : NULL;

	if (route->scope) {
		rc = api_authenticate(c, route->scope, &err);
		if (rc)
			goto out;
	}
	if (route->body) {
		rc = api_read_body(c->req, &err);
		if (rc)
			goto out;
	}
	rc = route->handler(c, &err);
out:
	if (!rc)
		return;
	/* A handler that failed inside its transaction has rolled it back; make sure. */
	api_tx_rollback(c);
	if (route && route->action && c->key_id && !c->audited)
		audit_refusal(c, route, &err);
	if (err.code == SL_EDB || err.code == SL_ECONN || err.code == SL_EINTERNAL ||
	    err.code == SL_ENOMEM || err.code == SL_EIO)
		sl_log_error("request failed", SLF_S("request_id", c->req->request_id),
		             SLF_S("code", sl_code_name(err.code)), SLF_S("error", err.msg),
		             SLF_S("detail", err.detail), SLF_S("sqlstate", err.sqlstate), SLF_END);
	if (api_respond_error(c->resp, c->req, &err))
		c->resp->status = 0;
}
