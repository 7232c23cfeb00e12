/* api_client.h — runs the built sluice-api the way a web server does (CGI/1.1) and reads its answer. */
#ifndef SL_TEST_API_CLIENT_H
#define SL_TEST_API_CLIENT_H

#include <stddef.h>
#include <json-c/json.h>
#include <libpq-fe.h>

/*
 * One request, the way a web server makes it (RFC 3875): meta-variables in
 * a clean environment, the body on stdin.  Only PATH, the sanitizers'
 * options, this process's SLUICE_MASTER_KEY (t_use_master_key) and
 * SLUICE_CA_FILE pass through.  NULL members take the defaults noted.
 */
struct t_api_req {
	const char *method;          /* required */
	const char *path;            /* PATH_INFO; required */
	const char *query;           /* QUERY_STRING; default "" */
	const char *key;             /* sent as "Bearer <key>"; NULL: no Authorization */
	const char *authorization;   /* the raw header instead of key */
	const char *body;            /* NULL: no body */
	size_t      body_len;        /* 0: strlen(body) */
	const char *content_type;    /* default application/json when there is a body; "" none */
	const char *content_length;  /* default the body's length when there is one; "" none */
	const char *request_id;      /* X-Request-Id to send */
	const char *db_url;          /* DATABASE_URL; NULL or "": unset */
	const char *log_level;       /* SLUICE_LOG_LEVEL; default info */
	int         no_master_key;   /* run without SLUICE_MASTER_KEY */
	/* NULL-terminated strings that must be in neither the answer nor the log; may be NULL. */
	const char *const *secrets;
};

/* What came back. */
struct t_api_resp {
	int          status;         /* from the Status header (CGI: absent means 200) */
	char        *out;            /* all of stdout */
	char        *headers;        /* the header block, NUL-terminated */
	const char  *body;           /* into out */
	json_object *json;           /* the body parsed, when it is JSON */
	char        *log;            /* all of stderr */
};

/*
 * Plants s (copied) as a string that from now on no answer or log of
 * t_api_call() in this process may hold, on top of each request's secrets
 * (at most 32; a test's setup plants its keys).  t_api_forget_all() empties
 * the list; t_api_hidden() is it, NULL-terminated, for scanning rows.
 */
void t_api_never_show(const char *s);
void t_api_forget_all(void);
const char *const *t_api_hidden(void);

/*
 * Runs sluice-api (t_api_bin) on rq; the answer lands in r, whose previous
 * contents are released first.  Fails the test unless the program exits 0
 * (and clean under ASan), no string of rq->secrets shows in its stdout or
 * stderr, it writes a header block with a sane Status, its Content-Length
 * is right (HEAD: no body at all), and a JSON body parses.
 */
void t_api_call(const struct t_api_req *rq, struct t_api_resp *r);

/* Frees what r holds and zeroes it.  Safe on a zeroed or cleared r. */
void t_api_resp_clear(struct t_api_resp *r);

/*
 * The value of header `name` of r (case-insensitive), "" when absent.
 * Copied into a static buffer that the next call overwrites.
 */
const char *t_api_hdr(const struct t_api_resp *r, const char *name);

/* The member at a dotted path ("job.payload.x", "jobs.2.id") of o; NULL when absent. */
json_object *t_json_get(json_object *o, const char *path);

/* The string at path in r's JSON body; NULL when absent or not a string. */
const char *t_api_str(const struct t_api_resp *r, const char *path);

/* The integer at path in r's JSON body; fails the test when it is not one. */
long long t_api_int(const struct t_api_resp *r, const char *path);

/* The boolean at path in r's JSON body; fails the test when it is not one. */
int t_api_bool(const struct t_api_resp *r, const char *path);

/* Whether the member at path of r's JSON body is present and null (not merely absent). */
int t_api_is_null(const struct t_api_resp *r, const char *path);

/* Members of the array or object at path of r's JSON body ("" is the body); fails when absent. */
size_t t_api_len(const struct t_api_resp *r, const char *path);

/* r's X-Request-Id, copied into a static buffer the next call overwrites. */
const char *t_api_request_id(const struct t_api_resp *r);

/*
 * Fails the test unless the audit row of request request_id (credential
 * decrypts aside) in db is "key:<key_id>|action|target or -|outcome|status|org".
 */
void t_api_assert_audit(PGconn *db, const char *request_id, long long key_id, long long org,
                        const char *action, const char *target, const char *outcome, int status);

/*
 * Fails the test if any planted secret (t_api_never_show) is readable in
 * db: audit rows, events, connectors' config, label and status message,
 * credential ciphertexts, sync configs' mappings, jobs' payloads (live and
 * archived).
 */
void t_api_assert_secrets_absent(PGconn *db);

/*
 * Fails the test unless r is exactly the error answer of the API's policy:
 * `status`, Content-Type application/json, and the body
 * {"error": {"code": code, "message": (a sentence), "request_id": (the
 * X-Request-Id header)}} with "field": field as well when field is not NULL,
 * and nothing else.
 */
void t_api_assert_error(const struct t_api_resp *r, int status, const char *code,
                        const char *field);

#endif
