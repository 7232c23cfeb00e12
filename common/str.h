/* str.h — bounded parsing of numbers and small string helpers for outside input. */
#ifndef SL_STR_H
#define SL_STR_H

#include <stddef.h>

/*
 * Parses all of s as a base-10 integer in [min, max].  Leading/trailing
 * spaces, signs beyond one '-', empty strings and overflow are errors.
 * Returns 0 and sets *out, or SL_EINVAL and leaves *out alone.
 */
int sl_parse_ll(const char *s, long long min, long long max, long long *out)
	__attribute__((warn_unused_result));

/* Same, for the first n bytes of s (s need not be NUL-terminated). */
int sl_parse_lln(const char *s, size_t n, long long min, long long max, long long *out)
	__attribute__((warn_unused_result));

/* Parses "true"/"false"/"1"/"0"/"yes"/"no"/"on"/"off". */
int sl_parse_bool(const char *s, int *out) __attribute__((warn_unused_result));

/* Whether s starts with prefix. */
int sl_starts_with(const char *s, const char *prefix);

/* Copies src into dst of size n, always terminated; returns strlen(src). */
size_t sl_strlcpy(char *dst, const char *src, size_t n);

/* Lower-case hex of n bytes into out, which must hold 2n + 1 bytes. */
void sl_hex(const unsigned char *in, size_t n, char *out);

/* The value of one hex digit (either case), or -1 when c is not one. */
int sl_hex_digit(int c);

/*
 * Whether n bytes are well-formed UTF-8 (RFC 3629): no overlong forms, no
 * UTF-16 surrogates, nothing past U+10FFFF.
 */
int sl_utf8_valid(const char *s, size_t n);

#endif
