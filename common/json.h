/* json.h — json-c helpers: bounded parsing and typed, field-naming getters. */
#ifndef SL_JSON_H
#define SL_JSON_H

#include <stddef.h>
#include <json-c/json.h>

#include "common/err.h"

/*
 * Parses n bytes of JSON (nesting at most SL_MAX_JSON_DEPTH).  On success
 * *out owns the document (json_object_put() it).  On error returns SL_EINVAL
 * with a message naming the position, and *out is NULL.
 */
int sl_json_parse(const char *s, size_t n, json_object **out, struct sl_err *err)
	__attribute__((warn_unused_result));

/*
 * Getters for an optional member of object `obj`.  A missing member or JSON
 * null leaves *out untouched and returns 0 with *present = 0 (present may be
 * NULL).  A member of the wrong type or out of range returns SL_EINVAL with
 * err->field set to `key`.  Strings are borrowed from obj.
 */
int sl_json_get_str(json_object *obj, const char *key, size_t max_len,
                    const char **out, int *present, struct sl_err *err)
	__attribute__((warn_unused_result));
int sl_json_get_int(json_object *obj, const char *key, long long min, long long max,
                    long long *out, int *present, struct sl_err *err)
	__attribute__((warn_unused_result));
int sl_json_get_bool(json_object *obj, const char *key, int *out, int *present,
                     struct sl_err *err)
	__attribute__((warn_unused_result));

/* Compact text of a value; borrowed from v, valid until v changes or dies. */
const char *sl_json_text(json_object *v);

#endif
