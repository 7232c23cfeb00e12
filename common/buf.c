/* buf.c — the capped dynamic buffer. */
#include "common/buf.h"

#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/err.h"

static char empty[1];

void
sl_buf_init(struct sl_buf *b, size_t max)
{
	b->data = empty;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

void
sl_buf_release(struct sl_buf *b)
{
	if (b->cap)
		sl_free(b->data);
	sl_buf_init(b, b->max);
}

void
sl_buf_reset(struct sl_buf *b)
{
	b->len = 0;
	b->data[0] = '\0';
}

/* Makes room for n more bytes plus the terminator. */
static int
grow(struct sl_buf *b, size_t n)
{
	size_t need, cap;
	char *p;

	if (n > b->max || b->len > b->max - n) {
		sl_buf_release(b);
		return SL_ETOOLARGE;
	}
	need = b->len + n + 1;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > (size_t)-1 / 2 ? need : cap * 2;
	p = sl_realloc(b->cap ? b->data : NULL, cap);
	if (!p) {
		sl_buf_release(b);
		return SL_ENOMEM;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

int
sl_buf_add(struct sl_buf *b, const void *p, size_t n)
{
	int rc = grow(b, n);

	if (rc)
		return rc;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int
sl_buf_adds(struct sl_buf *b, const char *s)
{
	return sl_buf_add(b, s, strlen(s));
}

int
sl_buf_addc(struct sl_buf *b, char c)
{
	return sl_buf_add(b, &c, 1);
}

int
sl_buf_vaddf(struct sl_buf *b, const char *fmt, va_list ap)
{
	va_list again;
	int n, rc;

	va_copy(again, ap);
	n = vsnprintf(NULL, 0, fmt, again);
	va_end(again);
	if (n < 0) {
		sl_buf_release(b);
		return SL_EINVAL;
	}
	rc = grow(b, (size_t)n);
	if (rc)
		return rc;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int
sl_buf_addf(struct sl_buf *b, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = sl_buf_vaddf(b, fmt, ap);
	va_end(ap);
	return rc;
}

char *
sl_buf_detach(struct sl_buf *b)
{
	char *s;

	if (b->cap) {
		s = b->data;
		sl_buf_init(b, b->max);
		return s;
	}
	s = sl_strdup("");
	sl_buf_init(b, b->max);
	return s;
}
