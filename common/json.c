/* json.c — json-c helpers. */
#include "common/json.h"

#include <string.h>

#include "common/caps.h"
#include "common/str.h"

/*
 * A strict RFC 8259 syntax check, run before json-c: json-c's strict mode
 * still takes single-quoted member names and NaN.  Recursive descent over
 * the bytes; depth is bounded by SL_MAX_JSON_DEPTH.  Returns the offset of
 * the first error, or (size_t)-1 when the text is one valid JSON value.
 */
struct scan {
	const char *s;
	size_t      n, i;
};

static void
skip_ws(struct scan *sc)
{
	while (sc->i < sc->n && strchr(" \t\r\n", sc->s[sc->i]) && sc->s[sc->i])
		sc->i++;
}

static int
scan_string(struct scan *sc)
{
	if (sc->i >= sc->n || sc->s[sc->i] != '"')
		return -1;
	for (sc->i++; sc->i < sc->n; sc->i++) {
		unsigned char c = (unsigned char)sc->s[sc->i];

		if (c == '"') {
			sc->i++;
			return 0;
		}
		if (c < 0x20)
			return -1;
		if (c == '\\') {
			if (++sc->i >= sc->n)
				return -1;
			c = (unsigned char)sc->s[sc->i];
			if (c == 'u') {
				int k;

				for (k = 0; k < 4; k++) {
					if (++sc->i >= sc->n || !strchr("0123456789abcdefABCDEF", sc->s[sc->i]) ||
					    !sc->s[sc->i])
						return -1;
				}
			} else if (!strchr("\"\\/bfnrt", c) || !c) {
				return -1;
			}
		}
	}
	return -1;
}

static int
scan_digits(struct scan *sc)
{
	size_t start = sc->i;

	while (sc->i < sc->n && sc->s[sc->i] >= '0' && sc->s[sc->i] <= '9')
		sc->i++;
	return sc->i > start ? 0 : -1;
}

static int
scan_number(struct scan *sc)
{
	if (sc->i < sc->n && sc->s[sc->i] == '-')
		sc->i++;
	if (sc->i < sc->n && sc->s[sc->i] == '0')
		sc->i++;
	else if (scan_digits(sc))
		return -1;
	if (sc->i < sc->n && sc->s[sc->i] == '.') {
		sc->i++;
		if (scan_digits(sc))
			return -1;
	}
	if (sc->i < sc->n && (sc->s[sc->i] == 'e' || sc->s[sc->i] == 'E')) {
		sc->i++;
		if (sc->i < sc->n && (sc->s[sc->i] == '+' || sc->s[sc->i] == '-'))
			sc->i++;
		if (scan_digits(sc))
			return -1;
	}
	return 0;
}

static int
scan_word(struct scan *sc, const char *w)
{
	size_t len = strlen(w);

	if (sc->n - sc->i < len || memcmp(sc->s + sc->i, w, len))
		return -1;
	sc->i += len;
	return 0;
}

static int
scan_value(struct scan *sc, int depth)
{
	char open;

	skip_ws(sc);
	if (sc->i >= sc->n)
		return -1;
	switch (sc->s[sc->i]) {
	case '"': return scan_string(sc);
	case 't': return scan_word(sc, "true");
	case 'f': return scan_word(sc, "false");
	case 'n': return scan_word(sc, "null");
	case '{':
	case '[':
		break;
	default:
		return scan_number(sc);
	}
	if (depth >= SL_MAX_JSON_DEPTH)
		return -1;
	open = sc->s[sc->i++];
	skip_ws(sc);
	if (sc->i < sc->n && sc->s[sc->i] == (open == '{' ? '}' : ']')) {
		sc->i++;
		return 0;
	}
	for (;;) {
		if (open == '{') {
			skip_ws(sc);
			if (scan_string(sc))
				return -1;
			skip_ws(sc);
			if (sc->i >= sc->n || sc->s[sc->i++] != ':')
				return -1;
		}
		if (scan_value(sc, depth + 1))
			return -1;
		skip_ws(sc);
		if (sc->i >= sc->n)
			return -1;
		if (sc->s[sc->i] == ',') {
			sc->i++;
			continue;
		}
		if (sc->s[sc->i] != (open == '{' ? '}' : ']'))
			return -1;
		sc->i++;
		return 0;
	}
}

static size_t
syntax_error_at(const char *s, size_t n)
{
	struct scan sc = { s, n, 0 };

	if (scan_value(&sc, 0))
		return sc.i;
	skip_ws(&sc);
	return sc.i == n ? (size_t)-1 : sc.i;
}

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
	/* RFC 8259 8.1: JSON exchanged between systems is UTF-8. */
	if (!sl_utf8_valid(s, n))
		return sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "malformed JSON: not valid UTF-8");
	end = syntax_error_at(s, n);
	if (end != (size_t)-1) {
		if (end >= n)
			return sl_err_set(err, SL_EINVAL, SL_RETRY_NO,
			                  "malformed JSON: unexpected end of input");
		return sl_err_set(err, SL_EINVAL, SL_RETRY_NO,
		                  "malformed JSON: unexpected character at offset %zu", end);
	}
	tok = json_tokener_new_ex(SL_MAX_JSON_DEPTH);
	if (!tok)
		return sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	obj = json_tokener_parse_ex(tok, s, (int)n);
	jerr = json_tokener_get_error(tok);
	if (jerr == json_tokener_continue) {
		/* A bare top-level number cannot end until json-c sees what follows it. */
		obj = json_tokener_parse_ex(tok, " ", 1);
		jerr = json_tokener_get_error(tok);
	}
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
	/* The syntax check above already refused anything after the value. */
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
