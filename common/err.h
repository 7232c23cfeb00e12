/* err.h — the one error object: what failed, and what the scheduler should do about it. */
#ifndef SL_ERR_H
#define SL_ERR_H

/*
 * Functions that can fail return 0 on success or a negative SL_E* code, and
 * fill a caller-supplied struct sl_err.  The retry class tells the worker
 * whether to retry with backoff, retry at a given time, hold the job until a
 * person re-authorises, or give up.
 */
enum sl_code {
	SL_OK = 0,
	SL_ENOMEM = -1,        /* out of memory */
	SL_ETOOLARGE = -2,     /* a size cap was hit */
	SL_EINVAL = -3,        /* bad input: a value, a field, a document */
	SL_EDB = -4,           /* database error */
	SL_ECONN = -5,         /* database connection lost or refused */
	SL_EHTTP = -6,         /* an outside system answered with an error */
	SL_ETIMEOUT = -7,      /* something took longer than allowed */
	SL_EAUTH = -8,         /* credentials refused */
	SL_ERATELIMIT = -9,    /* an outside system or a policy said "slow down" */
	SL_ENOTFOUND = -10,    /* no such thing */
	SL_ECONFLICT = -11,    /* state forbids it */
	SL_ECANCELLED = -12,   /* the job was cancelled or lost its claim */
	SL_EIO = -13,          /* operating-system error */
	SL_EINTERNAL = -14,    /* a bug or an impossible state */
};

enum sl_retry {
	SL_RETRY_NO = 0,       /* permanent: end the job with this error */
	SL_RETRY_BACKOFF,      /* transient: retry with exponential backoff */
	SL_RETRY_AFTER,        /* retry at retry_after_ms, without spending an attempt */
	SL_RETRY_REAUTH,       /* hold until a person re-authorises */
};

struct sl_err {
	int  code;             /* enum sl_code */
	int  retry;            /* enum sl_retry */
	long retry_after_ms;   /* with SL_RETRY_AFTER */
	int  http_status;      /* status an outside system answered, or 0 */
	char field[64];        /* the input field at fault, when there is one */
	char sqlstate[6];      /* with SL_EDB: PostgreSQL's SQLSTATE */
	char msg[256];         /* primary: lower case, no period, says what failed */
	char detail[512];      /* full sentences; never a secret */
};

/* Resets err to "no error". */
void sl_err_clear(struct sl_err *err);

/*
 * Records an error and returns `code`, so that callers can write
 * `return sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "bad %s", what);`.
 * err may be NULL.  Messages longer than the buffer are truncated.
 */
int sl_err_set(struct sl_err *err, int code, int retry, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Adds the detail sentence(s) to an error already set. */
void sl_err_detail(struct sl_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Names the input field an SL_EINVAL error is about. */
void sl_err_field(struct sl_err *err, const char *field);

/* A short constant name for a code ("invalid", "timeout", ...). */
const char *sl_code_name(int code);

#endif
