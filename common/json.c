/* json.c — json-c helpers. */
#include "common/json.h"

#include <string.h>

#include "common/caps.h"

int
sl_json_parse(const char *s, size_t n, json_object **out, struct sl_err *err)
{
	struct json_tokener *tok;
	enum json_tokener_error jerr;
	json_object *obj;
	size_t end;

	*out = NULL;
	if (n > (size_t)INT32_MAX)
		return sl_err_set(err, SL_ETOOLARGE, SL_RETRY_NO, "JSON document too large");
	tok = json_tokener_new_ex(SL_MAX_JSON_DEPTH);
	if (!tok)
		return sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	obj = json_tokener_parse_ex(tok, s, (int)n);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	if (jerr == json_tokener_continue) {
		json_tokener_free(tok);
		json_object_put(obj);
		return sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "malformed JSON: unexpected end of input");
	}
	if (jerr != json_tokener_success) {
		json_tokener_free(tok);
		json_object_put(obj);
		return sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "malformed JSON: %s at offset %zu",
		                  json_tokener_error_desc(jerr), end);
	}
	json_tokener_free(tok);
	/* Only whitespace may follow the document. */
	for (; end < n; end++) {
		if (!strchr(" \t\r\n", s[end])) {
			json_object_put(obj);
			return sl_err_set(err, SL_EINVAL, SL_RETRY_NO,
			                  "malformed JSON: trailing data at offset %zu", end);
		}
	}
	*out = obj;
	return 0;
}

static json_object *
member(json_object *obj, const char *key, int *present)
{
	json_object *v = NULL;

	if (present)
		*present = 0;
	if (!obj || !json_object_is_type(obj, json_type_object))
		return NULL;
	if (!json_object_object_get_ex(obj, key, &v) || !v)
		return NULL;
	if (present)
		*present = 1;
	return v;
}

static int
bad_field(struct sl_err *err, const char *key, const char *want)
{
	sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "field %s must be %s", key, want);
	sl_err_field(err, key);
	return SL_EINVAL;
}

int
sl_json_get_str(json_object *obj, const char *key, size_t max_len,
                const char **out, int *present, struct sl_err *err)
{
	json_object *v = member(obj, key, present);

	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return bad_field(err, key, "a string");
	if ((size_t)json_object_get_string_len(v) > max_len) {
		sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "field %s is longer than %zu characters",
		           key, max_len);
		sl_err_field(err, key);
		return SL_EINVAL;
	}
	if (strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v))
		return bad_field(err, key, "a string without NUL characters");
	*out = json_object_get_string(v);
	return 0;
}

int
sl_json_get_int(json_object *obj, const char *key, long long min, long long max,
                long long *out, int *present, struct sl_err *err)
{
	json_object *v = member(obj, key, present);
	int64_t n;

	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_int)) {
		sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "field %s must be an integer from %lld to %lld",
		           key, min, max);
		sl_err_field(err, key);
		return SL_EINVAL;
	}
	n = json_object_get_int64(v);
	if (n < min || n > max) {
		sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "field %s must be an integer from %lld to %lld",
		           key, min, max);
		sl_err_field(err, key);
		return SL_EINVAL;
	}
	*out = n;
	return 0;
}

int
sl_json_get_bool(json_object *obj, const char *key, int *out, int *present,
                 struct sl_err *err)
{
	json_object *v = member(obj, key, present);

	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return bad_field(err, key, "true or false");
	*out = json_object_get_boolean(v);
	return 0;
}

const char *
sl_json_text(json_object *v)
{
	return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
	                                         JSON_C_TO_STRING_NOSLASHESCAPE);
}
