/* buf.h — one growable byte buffer, always NUL-terminated, always capped. */
#ifndef SL_BUF_H
#define SL_BUF_H

#include <stdarg.h>
#include <stddef.h>

/*
 * Invariants, after sl_buf_init() and until sl_buf_release():
 *   - data is never NULL and data[len] == '\0';
 *   - len < cap whenever cap > 0 (cap == 0 means data points at a shared
 *     empty string and nothing is allocated);
 *   - len never exceeds max.
 * An append that would pass max, or that cannot get memory, releases the
 * buffer (it is empty again) and returns SL_ETOOLARGE or SL_ENOMEM, like
 * curl's dynbuf: a half-built document is never mistaken for a whole one.
 */
struct sl_buf {
	char   *data;
	size_t  len;
	size_t  cap;
	size_t  max;
};

void sl_buf_init(struct sl_buf *b, size_t max);
void sl_buf_release(struct sl_buf *b);      /* frees; b is empty, still usable */
void sl_buf_reset(struct sl_buf *b);        /* len = 0, keeps memory */

int sl_buf_add(struct sl_buf *b, const void *p, size_t n)
	__attribute__((warn_unused_result));
int sl_buf_adds(struct sl_buf *b, const char *s)
	__attribute__((warn_unused_result));
int sl_buf_addc(struct sl_buf *b, char c)
	__attribute__((warn_unused_result));
int sl_buf_addf(struct sl_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), warn_unused_result));
int sl_buf_vaddf(struct sl_buf *b, const char *fmt, va_list ap)
	__attribute__((warn_unused_result));

/*
 * Hands the contents over: returns a heap string the caller frees with
 * sl_free(), and leaves b empty.  Returns NULL only when out of memory (b is
 * then released too).
 */
char *sl_buf_detach(struct sl_buf *b);

#endif
