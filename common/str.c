/* str.c — bounded number parsing (no atoi, no unchecked strtol). */
#include "common/str.h"

#include <limits.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"

int
sl_parse_lln(const char *s, size_t n, long long min, long long max, long long *out)
{
	const unsigned long long bound = (unsigned long long)LLONG_MAX + 1;
	unsigned long long acc = 0;
	int neg = 0;
	size_t i = 0;
	long long v;

	if (n && s[0] == '-') {
		neg = 1;
		i = 1;
	}
	if (i == n)
		return SL_EINVAL;
	for (; i < n; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9')
			return SL_EINVAL;
		d = (unsigned)(s[i] - '0');
		if (acc > (bound - d) / 10)
			return SL_EINVAL;
		acc = acc * 10 + d;
	}
	if (neg)
		v = acc == bound ? LLONG_MIN : -(long long)acc;
	else if (acc > (unsigned long long)LLONG_MAX)
		return SL_EINVAL;
	else
		v = (long long)acc;
	if (v < min || v > max)
		return SL_EINVAL;
	*out = v;
	return 0;
}

int
sl_parse_ll(const char *s, long long min, long long max, long long *out)
{
	if (!s)
		return SL_EINVAL;
	return sl_parse_lln(s, strlen(s), min, max, out);
}

int
sl_parse_bool(const char *s, int *out)
{
	static const char *yes[] = { "true", "1", "yes", "on" };
	static const char *no[] = { "false", "0", "no", "off" };
	size_t i;

	if (!s)
		return SL_EINVAL;
	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcasecmp(s, yes[i])) {
			*out = 1;
			return 0;
		}
		if (!strcasecmp(s, no[i])) {
			*out = 0;
			return 0;
		}
	}
	return SL_EINVAL;
}

int
sl_starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

size_t
sl_strlcpy(char *dst, const char *src, size_t n)
{
	size_t len = strlen(src);

	if (n) {
		size_t copy = len < n - 1 ? len : n - 1;

		memcpy(dst, src, copy);
		dst[copy] = '\0';
	}
	return len;
}

int
sl_hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void
sl_hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

int
sl_utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;

	while (p < end) {
		unsigned char c = *p;
		size_t len, i;
		unsigned cp;

		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF) {
			len = 2;
			cp = c & 0x1Fu;
		} else if (c >= 0xE0 && c <= 0xEF) {
			len = 3;
			cp = c & 0x0Fu;
		} else if (c >= 0xF0 && c <= 0xF4) {
			len = 4;
			cp = c & 0x07u;
		} else {
			return 0;
		}
		if ((size_t)(end - p) < len)
			return 0;
		for (i = 1; i < len; i++) {
			if ((p[i] & 0xC0) != 0x80)
				return 0;
			cp = (cp << 6) | (p[i] & 0x3Fu);
		}
		/* Overlong forms, UTF-16 surrogates, and beyond U+10FFFF. */
		if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
		    (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
			return 0;
		p += len;
	}
	return 1;
}
