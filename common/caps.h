/* caps.h — every size cap in Sluice, named in one place. */
#ifndef SL_CAPS_H
#define SL_CAPS_H

#define SL_MAX_REQUEST_BODY   (1u << 20)   /* an HTTP request to sluice-api: 1 MiB */
#define SL_MAX_PROVIDER_BODY  (32u << 20)  /* one response from an outside system */
#define SL_MAX_TOKEN_BODY     (256u << 10) /* one answer of an OAuth token endpoint (a few KiB) */
#define SL_MAX_SQL_TEXT       (1u << 20)   /* one migration file */
#define SL_MAX_JSON_OUT       (16u << 20)  /* one JSON document we produce */
#define SL_MAX_JSON_DEPTH     32           /* nesting accepted when parsing JSON */
#define SL_MAX_BATCH_JOBS     1000         /* jobs in one POST /api/v1/jobs */
#define SL_MAX_LOG_LINE       8192         /* one log line */

#endif
