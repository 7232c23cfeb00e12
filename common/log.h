/* log.h — JSON-lines logging to stderr, with lazy levels and a job context. */
#ifndef SL_LOG_H
#define SL_LOG_H

/*
 * One line per event: {"ts":"…","level":"info","prog":"sluice-worker",
 * "msg":"job done","job_id":42,"kind":"noop",…}.  Fields are typed
 * (SLF_S, SLF_I, SLF_D, SLF_B) and the list ends with SLF_END.
 *
 * Secrets are never passed to a log call.  As a second line of defence,
 * strings registered with sl_log_add_secret() are replaced by "[redacted]"
 * wherever they would appear in a line.
 */
enum sl_log_level {
	SL_LOG_ERROR = 0,
	SL_LOG_WARN,
	SL_LOG_INFO,
	SL_LOG_DEBUG,
};

enum sl_field_type { SL_FT_END = 0, SL_FT_STR, SL_FT_INT, SL_FT_DBL, SL_FT_BOOL };

struct sl_field {
	const char *key;
	int type;                /* enum sl_field_type */
	const char *s;
	long long i;
	double d;
};

#define SLF_S(k, v) ((struct sl_field){ .key = (k), .type = SL_FT_STR, .s = (v) })
#define SLF_I(k, v) ((struct sl_field){ .key = (k), .type = SL_FT_INT, .i = (long long)(v) })
#define SLF_D(k, v) ((struct sl_field){ .key = (k), .type = SL_FT_DBL, .d = (double)(v) })
#define SLF_B(k, v) ((struct sl_field){ .key = (k), .type = SL_FT_BOOL, .i = !!(v) })
#define SLF_END     ((struct sl_field){ .key = NULL, .type = SL_FT_END })

/* What a line from inside a job carries besides its own fields. */
struct sl_log_ctx {
	long long   job_id;      /* 0: none */
	const char *kind;
	long long   org_id;      /* 0: none */
	const char *connector_id;
};

extern int sl_log_level;

/* Sets the program name written in every line ("prog"). */
void sl_log_init(const char *prog);

/* Parses "error", "warn", "info" or "debug"; returns 0 or SL_EINVAL. */
int sl_log_parse_level(const char *s, int *level);

/* Registers a string that must never appear in a log line.  Copies it. */
void sl_log_add_secret(const char *secret);
void sl_log_forget_secrets(void);

/* Writes one line.  Use the macros below, which skip disabled levels. */
void sl_log_emit(int level, const struct sl_log_ctx *ctx, const char *msg, ...);

#define SL_LOG_(lvl, ctx, ...) \
	do { if ((lvl) <= sl_log_level) sl_log_emit((lvl), (ctx), __VA_ARGS__); } while (0)

#define sl_log_error(...) SL_LOG_(SL_LOG_ERROR, NULL, __VA_ARGS__)
#define sl_log_warn(...)  SL_LOG_(SL_LOG_WARN, NULL, __VA_ARGS__)
#define sl_log_info(...)  SL_LOG_(SL_LOG_INFO, NULL, __VA_ARGS__)
#define sl_log_debug(...) SL_LOG_(SL_LOG_DEBUG, NULL, __VA_ARGS__)

/* The same with a job context: sl_jlog(SL_LOG_INFO, &ctx, "msg", ..., SLF_END). */
#define sl_jlog(lvl, ctx, ...) SL_LOG_((lvl), (ctx), __VA_ARGS__)

#endif
