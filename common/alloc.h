/* alloc.h — the one allocation choke point of Sluice, with failure injection. */
#ifndef SL_ALLOC_H
#define SL_ALLOC_H

#include <stddef.h>

/*
 * sl_malloc, sl_calloc, sl_realloc and sl_strdup behave like their libc
 * namesakes and return NULL when memory runs out (or when a test made this
 * allocation fail).  sl_free accepts NULL.  Code in common/ allocates only
 * through these, so the torture tests can fail the Nth allocation.
 */
void *sl_malloc(size_t n);
void *sl_calloc(size_t count, size_t size);
void *sl_realloc(void *p, size_t n);
char *sl_strdup(const char *s);
char *sl_strndup(const char *s, size_t n);
void  sl_free(void *p);

/*
 * Test hook: make the allocation after the next `n` succeed fail (n = 0 fails
 * the very next one); a negative n switches injection off.  Returns how many
 * allocations were made since the last call, so a torture loop can tell when
 * it has failed every one of them.
 */
long sl_alloc_fail_after(long n);

#endif
