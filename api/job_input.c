/* job_input.c — field-by-field checks of a job submission, naming the field at fault. */
#include "api/job_input.h"

#include <stdio.h>
#include <string.h>

#include "api/http.h"
#include "common/caps.h"
#include "common/json.h"

#define KIND_MAX       64
#define DEDUPE_MAX     200    /* characters, as sluice.job's CHECK counts them */

static const char *const job_fields[] = {
	"kind", "payload", "priority", "run_at", "max_attempts", "dedupe_key", "connector_id",
};

#define N_JOB_FIELDS (sizeof(job_fields) / sizeof(job_fields[0]))

static int
digits(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
	}
	return 1;
}

static int
num2(const char *s)
{
	return (s[0] - '0') * 10 + (s[1] - '0');
}

int
api_is_rfc3339(const char *s)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int year, month, day;
	size_t frac;

	/* full-date "T" partial-time: YYYY-MM-DDTHH:MM:SS */
	if (strlen(s) < 20 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
	    !digits(s + 8, 2) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2) ||
	    s[13] != ':' || !digits(s + 14, 2) || s[16] != ':' || !digits(s + 17, 2))
		return 0;
	year = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + num2(s + 2);
	month = num2(s + 5);
	day = num2(s + 8);
	/* Year 0 does not exist in PostgreSQL's calendar; seconds may be a leap 60. */
	if (year < 1 || month < 1 || month > 12 || day < 1 || day > mdays[month - 1] ||
	    num2(s + 11) > 23 || num2(s + 14) > 59 || num2(s + 17) > 60)
		return 0;
	if (month == 2 && day == 29 && !(year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)))
		return 0;
	s += 19;
	if (*s == '.') {
		frac = strspn(s + 1, "0123456789");
		if (frac < 1 || frac > 9)
			return 0;
		s += 1 + frac;
	}
	/* time-offset: "Z" or ±HH:MM */
	if ((s[0] == 'Z' || s[0] == 'z') && s[1] == '\0')
		return 1;
	return (s[0] == '+' || s[0] == '-') && digits(s + 1, 2) && s[3] == ':' &&
	       digits(s + 4, 2) && s[6] == '\0' && num2(s + 1) <= 23 && num2(s + 4) <= 59;
}

int
api_is_uuid(const char *s)
{
	static const char hex[] = "0123456789abcdefABCDEF";
	static const size_t groups[] = { 8, 4, 4, 4, 12 };
	size_t i;

	for (i = 0; i < 5; i++) {
		if (strspn(s, hex) < groups[i])
			return 0;
		s += groups[i];
		if (*s != (i < 4 ? '-' : '\0'))
			return 0;
		s++;
	}
	return 1;
}

int
api_is_kind(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= KIND_MAX && s[0] >= 'a' && s[0] <= 'z' &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_.:-") == n;
}

/* Characters of a UTF-8 string (the body was checked to be UTF-8). */
static size_t
utf8_chars(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

/* A 422 about field prefix+key. */
static int
bad(struct sl_err *err, const char *prefix, const char *key, const char *what)
{
	char field[sizeof(err->field)];

	snprintf(field, sizeof(field), "%s%s", prefix, key);
	return api_fail(err, 422, field, "field %s %s", field, what);
}

/*
 * A getter of common/json.c failed on member err->field of a batch item:
 * name the field in full, "field priority must be …" becoming
 * "field jobs[3].priority must be …".
 */
static int
in_item(struct sl_err *err, const char *prefix)
{
	char field[sizeof(err->field)], msg[sizeof(err->msg)];
	size_t klen = strlen(err->field);
	const char *rest = err->msg;

	err->http_status = 422;
	if (!*prefix)
		return err->code;
	if (!strncmp(rest, "field ", 6) && !strncmp(rest + 6, err->field, klen))
		rest += 6 + klen;
	else
		rest = "";
	/* Both may be cut short at their buffer's end; a truncated name still points the way. */
	if (snprintf(field, sizeof(field), "%s%s", prefix, err->field) < 0 ||
	    snprintf(msg, sizeof(msg), "field %s%s", field, rest) < 0)
		return err->code;
	memcpy(err->field, field, sizeof(field));
	memcpy(err->msg, msg, sizeof(msg));
	return err->code;
}

/* Whether a JSON value holds a string with a NUL character, which jsonb cannot store. */
static int
holds_nul(json_object *v)
{
	size_t i, n;

	switch (json_object_get_type(v)) {
	case json_type_string:
		return strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v);
	case json_type_array:
		n = json_object_array_length(v);
		for (i = 0; i < n; i++) {
			if (holds_nul(json_object_array_get_idx(v, i)))
				return 1;
		}
		return 0;
	case json_type_object: {
		json_object_object_foreach(v, key, member) {
			(void)key;
			if (holds_nul(member))
				return 1;
		}
		return 0;
	}
	default:
		return 0;
	}
}

static int
known_field(const char *key)
{
	size_t i;

	for (i = 0; i < N_JOB_FIELDS; i++) {
		if (!strcmp(key, job_fields[i]))
			return 1;
	}
	return 0;
}

/* One job object; prefix is "" for a single job, "jobs[3]." in a batch. */
static int
check_job(json_object *job, const char *prefix, struct sl_err *err)
{
	json_object *payload = NULL;
	const char *s = NULL;
	long long n;
	int present, rc = 0;

	if (!json_object_is_type(job, json_type_object)) {
		char item[sizeof(err->field)];
		size_t len = strlen(prefix);

		if (!len) {
			rc = api_fail(err, 422, NULL, "the request body must be a JSON object: "
			              "one job, or {\"jobs\": [...]}");
			goto out;
		}
		/* "jobs[3]." names the item as "jobs[3]". */
		snprintf(item, sizeof(item), "%.*s", (int)(len - 1), prefix);
		rc = api_fail(err, 422, item, "%s must be a JSON object (a job)", item);
		goto out;
	}
	{
		json_object_object_foreach(job, key, val) {
			(void)val;
			if (!known_field(key)) {
				rc = bad(err, prefix, key, "is not known (a job has kind, payload, priority, "
				         "run_at, max_attempts, dedupe_key and connector_id)");
				goto out;
			}
		}
	}

	rc = sl_json_get_str(job, "kind", KIND_MAX, &s, &present, err);
	if (rc) {
		rc = in_item(err, prefix);
		goto out;
	}
	if (!present) {
		rc = bad(err, prefix, "kind", "is required");
		goto out;
	}
	if (!api_is_kind(s)) {
		rc = bad(err, prefix, "kind", "must match ^[a-z][a-z0-9_.:-]{0,63}$");
		goto out;
	}

	if (json_object_object_get_ex(job, "payload", &payload) && payload) {
		if (!json_object_is_type(payload, json_type_object)) {
			rc = bad(err, prefix, "payload", "must be a JSON object");
			goto out;
		}
		if (holds_nul(payload)) {
			rc = bad(err, prefix, "payload", "must not hold \\u0000 in a string");
			goto out;
		}
	}

	rc = sl_json_get_int(job, "priority", 1, 5, &n, &present, err);
	if (rc) {
		rc = in_item(err, prefix);
		goto out;
	}

	rc = sl_json_get_str(job, "run_at", 64, &s, &present, err);
	if (!rc && present && !api_is_rfc3339(s)) {
		rc = bad(err, prefix, "run_at", "must be an RFC 3339 date-time such as "
		         "2024-12-23T10:00:00Z");
		goto out;
	}
	if (rc) {
		rc = in_item(err, prefix);
		goto out;
	}

	rc = sl_json_get_int(job, "max_attempts", 1, 1000, &n, &present, err);
	if (rc) {
		rc = in_item(err, prefix);
		goto out;
	}

	/* Up to 4 bytes a character in UTF-8. */
	rc = sl_json_get_str(job, "dedupe_key", 4 * DEDUPE_MAX, &s, &present, err);
	if (!rc && present && (utf8_chars(s) < 1 || utf8_chars(s) > DEDUPE_MAX)) {
		rc = bad(err, prefix, "dedupe_key", "must be 1 to 200 characters");
		goto out;
	}
	if (rc) {
		rc = in_item(err, prefix);
		goto out;
	}

	rc = sl_json_get_str(job, "connector_id", 36, &s, &present, err);
	if (!rc && present && !api_is_uuid(s)) {
		rc = bad(err, prefix, "connector_id", "must be a UUID such as "
		         "0b6e3d1c-5f1a-4c1e-9a53-2f0d7c1b9e42");
		goto out;
	}
	if (rc) {
		rc = in_item(err, prefix);
		goto out;
	}
out:
	return rc;
}

int
api_jobs_check(json_object *body, int *batch, size_t *n, struct sl_err *err)
{
	json_object *jobs = NULL;
	char prefix[32];
	size_t i, len;
	int rc = 0;

	*batch = 0;
	*n = 0;
	if (!json_object_is_type(body, json_type_object) ||
	    !json_object_object_get_ex(body, "jobs", &jobs)) {
		rc = check_job(body, "", err);
		if (!rc)
			*n = 1;
		goto out;
	}
	*batch = 1;
	{
		json_object_object_foreach(body, key, val) {
			(void)val;
			if (strcmp(key, "jobs")) {
				rc = bad(err, "", key, "is not known (a batch is {\"jobs\": [...]} alone)");
				goto out;
			}
		}
	}
	if (!json_object_is_type(jobs, json_type_array) || json_object_array_length(jobs) == 0) {
		rc = bad(err, "", "jobs", "must be an array of 1 to 1000 jobs");
		goto out;
	}
	len = json_object_array_length(jobs);
	if (len > SL_MAX_BATCH_JOBS) {
		rc = api_fail(err, 422, "jobs", "too many jobs: %zu; at most %d are accepted in one "
		              "request", len, SL_MAX_BATCH_JOBS);
		goto out;
	}
	for (i = 0; i < len; i++) {
		snprintf(prefix, sizeof(prefix), "jobs[%zu].", i);
		rc = check_job(json_object_array_get_idx(jobs, i), prefix, err);
		if (rc)
			goto out;
	}
	*n = len;
out:
	return rc;
}
