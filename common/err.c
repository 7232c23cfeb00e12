/* err.c — filling struct sl_err. */
#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void
sl_err_clear(struct sl_err *err)
{
	if (err)
		memset(err, 0, sizeof(*err));
}

int
sl_err_set(struct sl_err *err, int code, int retry, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return code;
	sl_err_clear(err);
	err->code = code;
	err->retry = retry;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return code;
}

void
sl_err_detail(struct sl_err *err, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(err->detail, sizeof(err->detail), fmt, ap);
	va_end(ap);
}

void
sl_err_field(struct sl_err *err, const char *field)
{
	if (err)
		snprintf(err->field, sizeof(err->field), "%s", field);
}

const char *
sl_code_name(int code)
{
	switch (code) {
	case SL_OK:         return "ok";
	case SL_ENOMEM:     return "out_of_memory";
	case SL_ETOOLARGE:  return "too_large";
	case SL_EINVAL:     return "invalid";
	case SL_EDB:        return "database";
	case SL_ECONN:      return "connection";
	case SL_EHTTP:      return "http";
	case SL_ETIMEOUT:   return "timeout";
	case SL_EAUTH:      return "auth";
	case SL_ERATELIMIT: return "rate_limited";
	case SL_ENOTFOUND:  return "not_found";
	case SL_ECONFLICT:  return "conflict";
	case SL_ECANCELLED: return "cancelled";
	case SL_EIO:        return "io";
	case SL_EINTERNAL:  return "internal";
	}
	return "unknown";
}
