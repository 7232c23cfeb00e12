/* log.c — JSON-lines log writer with secret scrubbing. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/caps.h"
#include "common/err.h"

int sl_log_level = SL_LOG_INFO;

static const char *prog_name = "sluice";

#define MAX_SECRETS 64
static char *secrets[MAX_SECRETS];
static size_t n_secrets;

static const char *level_names[] = { "error", "warn", "info", "debug" };

void
sl_log_init(const char *prog)
{
	prog_name = prog;
}

int
sl_log_parse_level(const char *s, int *level)
{
	size_t i;

	for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (s && !strcmp(s, level_names[i])) {
			*level = (int)i;
			return 0;
		}
	}
	return SL_EINVAL;
}

void
sl_log_add_secret(const char *secret)
{
	/* Very short strings would redact ordinary words; they are not secrets. */
	if (!secret || strlen(secret) < 6 || n_secrets == MAX_SECRETS)
		return;
	secrets[n_secrets] = sl_strdup(secret);
	if (secrets[n_secrets])
		n_secrets++;
}

void
sl_log_forget_secrets(void)
{
	while (n_secrets)
		sl_free(secrets[--n_secrets]);
}

/* A bounded line builder: output past the cap is dropped, never overflowed. */
struct line {
	char   buf[SL_MAX_LOG_LINE];
	size_t len;
};

static void
put(struct line *l, const char *s, size_t n)
{
	size_t room = sizeof(l->buf) - 1 - l->len;

	if (n > room)
		n = room;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void
puts_raw(struct line *l, const char *s)
{
	put(l, s, strlen(s));
}

static void
put_json_string(struct line *l, const char *s)
{
	char esc[8];

	put(l, "\"", 1);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			put(l, esc, 2);
		} else if (c == '\n') {
			put(l, "\\n", 2);
		} else if (c < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			put(l, esc, 6);
		} else {
			put(l, s, 1);
		}
	}
	put(l, "\"", 1);
}

static void
put_field(struct line *l, const struct sl_field *f)
{
	char num[64];

	put(l, ",", 1);
	put_json_string(l, f->key);
	put(l, ":", 1);
	switch (f->type) {
	case SL_FT_STR:
		if (f->s)
			put_json_string(l, f->s);
		else
			puts_raw(l, "null");
		break;
	case SL_FT_INT:
		snprintf(num, sizeof(num), "%lld", f->i);
		puts_raw(l, num);
		break;
	case SL_FT_DBL:
		snprintf(num, sizeof(num), "%.3f", f->d);
		puts_raw(l, num);
		break;
	case SL_FT_BOOL:
		puts_raw(l, f->i ? "true" : "false");
		break;
	}
}

static void
scrub(struct line *l)
{
	size_t i;

	l->buf[l->len] = '\0';
	for (i = 0; i < n_secrets; i++) {
		size_t n = strlen(secrets[i]);
		char *hit;

		while ((hit = strstr(l->buf, secrets[i])) != NULL) {
			/* "[redacted]" is 10 bytes; secrets are at least 6. */
			const char *mark = "[redacted]";
			size_t m = strlen(mark);

			if (n >= m) {
				memcpy(hit, mark, m);
				memmove(hit + m, hit + n, strlen(hit + n) + 1);
			} else {
				memset(hit, '*', n);
			}
			l->len = strlen(l->buf);
		}
	}
}

void
sl_log_emit(int level, const struct sl_log_ctx *ctx, const char *msg, ...)
{
	struct line l = { .len = 0 };
	struct timeval tv;
	struct tm tm;
	char ts[64];
	va_list ap;
	struct sl_field f;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + strlen(ts), sizeof(ts) - strlen(ts), ".%03ldZ", (long)tv.tv_usec / 1000);

	puts_raw(&l, "{\"ts\":\"");
	puts_raw(&l, ts);
	puts_raw(&l, "\",\"level\":\"");
	puts_raw(&l, level_names[level < 0 ? 0 : level > SL_LOG_DEBUG ? SL_LOG_DEBUG : level]);
	puts_raw(&l, "\",\"prog\":");
	put_json_string(&l, prog_name);
	puts_raw(&l, ",\"pid\":");
	snprintf(ts, sizeof(ts), "%ld", (long)getpid());
	puts_raw(&l, ts);
	puts_raw(&l, ",\"msg\":");
	put_json_string(&l, msg);
	if (ctx) {
		if (ctx->job_id)
			put_field(&l, &SLF_I("job_id", ctx->job_id));
		if (ctx->kind)
			put_field(&l, &SLF_S("kind", ctx->kind));
		if (ctx->org_id)
			put_field(&l, &SLF_I("org_id", ctx->org_id));
		if (ctx->connector_id)
			put_field(&l, &SLF_S("connector_id", ctx->connector_id));
	}
	va_start(ap, msg);
	for (f = va_arg(ap, struct sl_field); f.type != SL_FT_END; f = va_arg(ap, struct sl_field))
		put_field(&l, &f);
	va_end(ap);
	put(&l, "}", 1);
	scrub(&l);
	l.buf[l.len++] = '\n';
	/* One write(2) per line keeps lines whole when processes share stderr. */
	(void)!write(STDERR_FILENO, l.buf, l.len);
}
