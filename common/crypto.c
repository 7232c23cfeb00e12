/* crypto.c — SHA-256 and random tokens via OpenSSL. */
#include "common/crypto.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

void
sl_sha256(const void *data, size_t n, unsigned char out[32])
{
	unsigned int len = 32;

	EVP_Digest(data, n, out, &len, EVP_sha256(), NULL);
}

int
sl_random_bytes(void *out, size_t n, struct sl_err *err)
{
	if (n > (size_t)INT32_MAX || RAND_bytes(out, (int)n) != 1)
		return sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "no random bytes available");
	return 0;
}

int
sl_random_token(char *out, size_t len, struct sl_err *err)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	unsigned char r;
	size_t i = 0;
	int rc;

	while (i < len) {
		rc = sl_random_bytes(&r, 1, err);
		if (rc)
			return rc;
		/* 62 * 4 = 248: reject the top of the range so every character is equally likely. */
		if (r >= 248)
			continue;
		out[i++] = alphabet[r % 62];
	}
	out[len] = '\0';
	return 0;
}
