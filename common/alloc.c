/* alloc.c — allocation wrappers with a failure-injection counter for tests. */
#include "common/alloc.h"

#include <stdlib.h>
#include <string.h>

static long fail_countdown = -1;   /* < 0: injection off */
static long allocations;

static int
should_fail(void)
{
	allocations++;
	if (fail_countdown < 0)
		return 0;
	if (fail_countdown == 0) {
		fail_countdown = -1;
		return 1;
	}
	fail_countdown--;
	return 0;
}

long
sl_alloc_fail_after(long n)
{
	long made = allocations;

	allocations = 0;
	fail_countdown = n < 0 ? -1 : n;
	return made;
}

void *
sl_malloc(size_t n)
{
	return should_fail() ? NULL : malloc(n ? n : 1);
}

void *
sl_calloc(size_t count, size_t size)
{
	return should_fail() ? NULL : calloc(count ? count : 1, size ? size : 1);
}

void *
sl_realloc(void *p, size_t n)
{
	return should_fail() ? NULL : realloc(p, n ? n : 1);
}

char *
sl_strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *copy = sl_malloc(len + 1);

	if (!copy)
		return NULL;
	memcpy(copy, s, len);
	copy[len] = '\0';
	return copy;
}

char *
sl_strdup(const char *s)
{
	return sl_strndup(s, strlen(s));
}

void
sl_free(void *p)
{
	free(p);
}
