/* events.c — GET /api/v1/events, /events/{id} and /audit: the outbox and the audit log, by id. */

/*
 * Both logs page the same way: "after" is the last id the client has seen
 * (0 or absent: from the start), "limit" how many to return (1 to 1000,
 * default 100), oldest first; next_after is the id to send next time (the
 * last one returned, or "after" itself when nothing new came).  Ids become
 * visible in order (DESIGN 5 of schema/0004_connectors.sql), so paging by
 * id never skips an event.  Each org sees only its own rows.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "api/session.h"
#include "common/alloc.h"
#include "common/str.h"

#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

#define EVENT_JSON                                                                \
	"json_build_object('id', e.id, 'type', e.type, 'at', " TS("e.at") ","     \
	" 'connector_id', e.connector_id, 'data', e.data)"

#define AUDIT_JSON                                                                  \
	"json_build_object('id', a.id, 'at', " TS("a.at") ", 'actor', a.actor,"     \
	" 'action', a.action, 'target', a.target, 'outcome', a.outcome,"            \
	" 'http_status', a.http_status, 'request_id', a.request_id, 'detail', a.detail)"

#define PAGE_DEFAULT 100
#define PAGE_MAX     1000

/* ---- query strings (api.h) ------------------------------------------------------ */

/* Percent-decodes n bytes of s into a new string; NULL with *bad set when malformed. */
static char *
decode(const char *s, size_t n, int *bad)
{
	char *out = sl_malloc(n + 1);
	size_t i, o = 0;

	*bad = 0;
	if (!out)
		return NULL;
	for (i = 0; i < n; i++) {
		if (s[i] == '+') {
			out[o++] = ' ';
		} else if (s[i] == '%') {
			int hi = i + 2 < n ? sl_hex_digit(s[i + 1]) : -1;
			int lo = i + 2 < n ? sl_hex_digit(s[i + 2]) : -1;

			/* %00 would cut the value short in C: refused like a malformed escape. */
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
				*bad = 1;
				sl_free(out);
				return NULL;
			}
			out[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	if (!sl_utf8_valid(out, o)) {
		*bad = 1;
		sl_free(out);
		return NULL;
	}
	return out;
}

int
api_query_parse(const char *qs, struct api_query *q, struct sl_err *err)
{
	const char *p = qs ? qs : "";
	int bad = 0, rc = 0;

	memset(q, 0, sizeof(*q));
	while (*p) {
		size_t len = strcspn(p, "&"), nlen;
		const char *eq;

		if (len == 0) {
			p++;
			continue;
		}
		if (q->n == API_QUERY_MAX) {
			rc = api_fail(err, 400, NULL, "too many query parameters; at most %d are accepted",
			              API_QUERY_MAX);
			goto out;
		}
		eq = memchr(p, '=', len);
		nlen = eq ? (size_t)(eq - p) : len;
		q->p[q->n].name = decode(p, nlen, &bad);
		if (q->p[q->n].name)
			q->p[q->n].value = eq ? decode(eq + 1, len - nlen - 1, &bad) : sl_strdup("");
		if (!q->p[q->n].name || !q->p[q->n].value) {
			sl_free(q->p[q->n].name);
			q->p[q->n].name = NULL;
			rc = bad ? api_fail(err, 400, NULL, "the query string is not valid "
			                    "percent-encoded UTF-8")
			         : sl_err_set(err, SL_ENOMEM, SL_RETRY_NO, "out of memory");
			goto out;
		}
		q->n++;
		p += len;
	}
out:
	if (rc)
		api_query_release(q);
	return rc;
}

void
api_query_release(struct api_query *q)
{
	int i;

	for (i = 0; i < q->n; i++) {
		sl_free(q->p[i].name);
		sl_free(q->p[i].value);
	}
	memset(q, 0, sizeof(*q));
}

const char *
api_query_get(const struct api_query *q, const char *name, int *count)
{
	const char *v = NULL;
	int i, n = 0;

	for (i = 0; i < q->n; i++) {
		if (!strcmp(q->p[i].name, name)) {
			if (!v)
				v = q->p[i].value;
			n++;
		}
	}
	if (count)
		*count = n;
	return v;
}

/* ---- paging ------------------------------------------------------------------------ */

/* after (>= 0) and limit (1..1000) from the query string; 422 naming the parameter. */
static int
page_params(const char *qs, long long *after, long long *limit, struct sl_err *err)
{
	struct api_query q;
	const char *v;
	int i, n, rc;

	*after = 0;
	*limit = PAGE_DEFAULT;
	rc = api_query_parse(qs, &q, err);
	if (rc)
		return rc;
	for (i = 0; i < q.n; i++) {
		if (strcmp(q.p[i].name, "after") && strcmp(q.p[i].name, "limit")) {
			rc = api_fail(err, 422, q.p[i].name, "query parameter %.60s is not known (after "
			              "and limit are)", q.p[i].name);
			goto out;
		}
	}
	v = api_query_get(&q, "after", &n);
	if (n > 1 || (v && sl_parse_ll(v, 0, INT64_MAX, after))) {
		rc = api_fail(err, 422, "after", "query parameter after must be one id: an integer "
		              "from 0");
		goto out;
	}
	v = api_query_get(&q, "limit", &n);
	if (n > 1 || (v && sl_parse_ll(v, 1, PAGE_MAX, limit))) {
		rc = api_fail(err, 422, "limit", "query parameter limit must be an integer from 1 to %d",
		              PAGE_MAX);
		goto out;
	}
out:
	api_query_release(&q);
	return rc;
}

/* Answers with a page query ($1 org, $2 after, $3 limit) whose one column "doc" is the answer. */
static int
page(struct api_ctx *c, const char *sql, struct sl_err *err)
{
	char org[32], after_s[32], limit_s[32];
	const char *params[3] = { org, after_s, limit_s };
	long long after, limit;
	int rc;

	rc = page_params(c->req->query, &after, &limit, err);
	if (rc)
		return rc;
	snprintf(org, sizeof(org), "%lld", c->org_id);
	snprintf(after_s, sizeof(after_s), "%lld", after);
	snprintf(limit_s, sizeof(limit_s), "%lld", limit);
	return api_respond_query(c, 200, NULL, sql, 3, params, err);
}

/* ---- the handlers ---------------------------------------------------------------- */

int
api_event_list(struct api_ctx *c, struct sl_err *err)
{
	return page(c,
	            "SELECT json_build_object("
	            "         'events', coalesce(json_agg(" EVENT_JSON " ORDER BY e.id), '[]'::json),"
	            "         'next_after', coalesce(max(e.id), $2::bigint))::text AS doc"
	            "  FROM sluice.events_after($1::bigint, $2::bigint, $3::integer) e",
	            err);
}

int
api_event_get(struct api_ctx *c, struct sl_err *err)
{
	char id[API_ID_TEXT];
	int rc;

	rc = api_path_id(c->id, "event", id, err);
	if (rc)
		return rc;
	return api_respond_by_id(c, 200, "event",
	                         "SELECT json_build_object('event', " EVENT_JSON ")::text AS doc"
	                         "  FROM sluice.event e"
	                         " WHERE e.id = $1::bigint AND e.org_id = $2::bigint",
	                         id, err);
}

int
api_audit_list(struct api_ctx *c, struct sl_err *err)
{
	return page(c,
	            "SELECT json_build_object("
	            "         'entries', coalesce(json_agg(" AUDIT_JSON " ORDER BY a.id), '[]'::json),"
	            "         'next_after', coalesce(max(a.id), $2::bigint))::text AS doc"
	            "  FROM (SELECT * FROM sluice.audit"
	            "         WHERE org_id = $1::bigint AND id > $2::bigint"
	            "         ORDER BY id LIMIT $3::integer) a",
	            err);
}
