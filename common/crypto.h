/* crypto.h — hashing and randomness (OpenSSL). */
#ifndef SL_CRYPTO_H
#define SL_CRYPTO_H

#include <stddef.h>

#include "common/err.h"

/* SHA-256 of n bytes into out[32]. */
void sl_sha256(const void *data, size_t n, unsigned char out[32]);

/* n cryptographically strong random bytes.  Returns 0 or SL_EINTERNAL. */
int sl_random_bytes(void *out, size_t n, struct sl_err *err)
	__attribute__((warn_unused_result));

/* A random token of `len` characters from [A-Za-z0-9] into out[len + 1]. */
int sl_random_token(char *out, size_t len, struct sl_err *err)
	__attribute__((warn_unused_result));

#endif
