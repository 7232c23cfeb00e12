/* secret.c — envelope encryption (AES-256-GCM): the master key wraps data keys, data keys seal secrets. */
#include "common/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "common/alloc.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/str.h"

/*
 * DESIGN
 *
 * 1. Formats.  A master key is 32 bytes; its fingerprint (master_key_id) is
 *    16 hex digits of SHA-256("sluice master key" || key).  A data key is 32
 *    random bytes, stored wrapped: nonce(12) || AES-256-GCM(master, key)(32)
 *    || tag(16), with "sluice data key <fingerprint>" as associated data, so
 *    a wrapped key that is swapped for another master's fails to unwrap and
 *    the fingerprint column says whose it is.  A secret is sealed with a
 *    fresh random 12-byte nonce under a data key, the owner ("connector:<id>",
 *    "oauth_client:<org>:<type>") as associated data, and stored as
 *    (key_id, nonce, ciphertext || tag).  Random nonces are safe here: a data
 *    key seals far fewer than 2^32 values before it is rotated.
 *
 * 2. The keyring caches unwrapped data keys by id for the life of the
 *    process; a key another process made is fetched and unwrapped on first
 *    use.  Which key is current is not cached: every seal asks the database
 *    (one primary-key-sized query), so after a rotation by another process
 *    the next seal already uses the new key and nothing keeps sealing under
 *    a retiring key.
 *
 * 3. The first seal in a database makes the first data key through
 *    sluice.ensure_data_key(), which lets exactly one of several racing
 *    processes win, and then reads the winner's key like any other.
 *
 * 4. Rotation (sl_keys_rotate): sluice.add_data_key() makes a new current
 *    key; then rounds, each one transaction, take up to `batch` rows still
 *    under other keys with FOR UPDATE SKIP LOCKED, open and reseal them, and
 *    write them back with the version-checked reencrypt functions.  Rows a
 *    worker holds are skipped and taken in a later round.  When none is
 *    left, retire_unused_data_keys() destroys the old keys' bytes; a writer
 *    that sealed under an old key just before the rotation began may commit
 *    after the last round, so a key still in use stays retiring and the
 *    rounds go on until every old key is retired (schema/0005_keys.sql,
 *    DESIGN 2, makes that race safe in SQL).
 */

#define KEY_LEN      32
#define NONCE_LEN    12
#define TAG_LEN      16
#define WRAPPED_LEN  (NONCE_LEN + KEY_LEN + TAG_LEN)
#define MAX_SECRET   (1u << 20)          /* one sealed value */
#define MAX_KEY_FILE 4096                /* a key file is one line */
#define STALL_LIMIT_MS (10LL * 60 * 1000)  /* rotation: rows locked this long end it */

static const char master_label[] = "sluice master key";
static const char wrap_label[] = "sluice data key ";

struct data_key {
	int           id;
	unsigned char key[KEY_LEN];
};

struct sl_keyring {
	unsigned char     master[KEY_LEN];
	char              master_id[17];
	/* The cache: unwrapped data keys, each allocated alone, so that a pointer
	 * to one stays valid while others are added. */
	struct data_key **keys;
	size_t            n, cap;
};

/* ---- AES-256-GCM ------------------------------------------------------------ */

/* Seals n bytes into out (n + TAG_LEN bytes).  Returns 0 or -1. */
static int
gcm_seal(const unsigned char key[KEY_LEN], const unsigned char nonce[NONCE_LEN],
         const void *aad, size_t aad_len, const void *in, size_t n, unsigned char *out)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int len, ok;

	if (!ctx || n > INT_MAX || aad_len > INT_MAX) {
		EVP_CIPHER_CTX_free(ctx);
		return -1;
	}
	ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
	     EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce) == 1 &&
	     (aad_len == 0 || EVP_EncryptUpdate(ctx, NULL, &len, aad, (int)aad_len) == 1) &&
	     (n == 0 || EVP_EncryptUpdate(ctx, out, &len, in, (int)n) == 1) &&
	     EVP_EncryptFinal_ex(ctx, out + n, &len) == 1 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, out + n) == 1;
	EVP_CIPHER_CTX_free(ctx);
	return ok ? 0 : -1;
}

/* Opens ct_len bytes (ciphertext || tag) into out (ct_len - TAG_LEN bytes).
 * Returns 0, or -1 when it does not authenticate. */
static int
gcm_open(const unsigned char key[KEY_LEN], const unsigned char nonce[NONCE_LEN],
         const void *aad, size_t aad_len, const unsigned char *ct, size_t ct_len,
         unsigned char *out)
{
	EVP_CIPHER_CTX *ctx;
	size_t n;
	int len, ok;
	unsigned char tag[TAG_LEN];

	if (ct_len < TAG_LEN || ct_len - TAG_LEN > INT_MAX || aad_len > INT_MAX)
		return -1;
	n = ct_len - TAG_LEN;
	memcpy(tag, ct + n, TAG_LEN);
	ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		return -1;
	ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
	     EVP_DecryptInit_ex(ctx, NULL, NULL, key, nonce) == 1 &&
	     (aad_len == 0 || EVP_DecryptUpdate(ctx, NULL, &len, aad, (int)aad_len) == 1) &&
	     (n == 0 || EVP_DecryptUpdate(ctx, out, &len, ct, (int)n) == 1) &&
	     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1 &&
	     EVP_DecryptFinal_ex(ctx, out + n, &len) == 1;
	EVP_CIPHER_CTX_free(ctx);
	if (!ok)
		OPENSSL_cleanse(out, n);
	return ok ? 0 : -1;
}

/* Appends s to the string in dst[size], cutting it short if it does not fit. */
static void
append(char *dst, size_t size, const char *s)
{
	size_t len = strlen(dst);

	if (len + 1 < size)
		sl_strlcpy(dst + len, s, size - len);
}

/* ---- master keys ------------------------------------------------------------ */

/* Standard or URL-safe base64 alphabet; -1 for anything else. */
static int
b64val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

/* Decodes base64 (padding optional) of at most `max` bytes; returns the byte
 * count, or -1 when s is not base64 or decodes to more than max. */
static long
b64_decode(const char *s, size_t len, unsigned char *out, size_t max)
{
	unsigned long acc = 0;
	size_t i, n = 0;
	int bits = 0;

	while (len && s[len - 1] == '=')
		len--;
	if (len % 4 == 1)
		return -1;
	for (i = 0; i < len; i++) {
		int v = b64val((unsigned char)s[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6) | (unsigned long)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n == max)
				return -1;
			out[n++] = (unsigned char)(acc >> bits);
			acc &= (1ul << bits) - 1;
		}
	}
	acc = 0;
	return (long)n;
}

static int
is_space(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* 64 hex digits or the base64 of 32 bytes, whitespace around ignored. */
static int
parse_master(const char *text, unsigned char key[KEY_LEN], struct sl_err *err)
{
	unsigned char tmp[KEY_LEN + 3];
	const char *s = text, *e;
	size_t len, i;
	long n;

	while (*s && is_space((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && is_space((unsigned char)e[-1]))
		e--;
	len = (size_t)(e - s);
	if (len == 2 * KEY_LEN) {
		for (i = 0; i < KEY_LEN; i++) {
			int hi = sl_hex_digit((unsigned char)s[2 * i]), lo = sl_hex_digit((unsigned char)s[2 * i + 1]);

			if (hi < 0 || lo < 0)
				break;
			key[i] = (unsigned char)(hi << 4 | lo);
		}
		if (i == KEY_LEN)
			return 0;
	}
	n = b64_decode(s, len, tmp, sizeof(tmp));
	if (n == KEY_LEN) {
		memcpy(key, tmp, KEY_LEN);
		OPENSSL_cleanse(tmp, sizeof(tmp));
		return 0;
	}
	OPENSSL_cleanse(tmp, sizeof(tmp));
	OPENSSL_cleanse(key, KEY_LEN);
	/* Never the text itself, nor anything decoded from it. */
	sl_err_set(err, SL_EINVAL, SL_RETRY_NO,
	           "master key must be 64 hex digits or the base64 of 32 bytes");
	if (len == 0)
		sl_err_detail(err, "It is empty.");
	else if (n > 0)
		sl_err_detail(err, "It is base64 of %ld bytes, not %d.", n, KEY_LEN);
	else
		sl_err_detail(err, "It has %zu characters that are neither.", len);
	return SL_EINVAL;
}

int
sl_keyring_new(struct sl_keyring **out, const char *master_key, struct sl_err *err)
{
	struct sl_keyring *kr = NULL;
	unsigned char digest[32];
	EVP_MD_CTX *md = NULL;
	int rc = 0;

	*out = NULL;
	kr = sl_calloc(1, sizeof(*kr));
	if (!kr)
		return sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "out of memory");
	rc = parse_master(master_key ? master_key : "", kr->master, err);
	if (rc)
		goto out;
	md = EVP_MD_CTX_new();
	if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(md, master_label, strlen(master_label)) != 1 ||
	    EVP_DigestUpdate(md, kr->master, KEY_LEN) != 1 ||
	    EVP_DigestFinal_ex(md, digest, NULL) != 1) {
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "cannot fingerprint the master key");
		goto out;
	}
	sl_hex(digest, 8, kr->master_id);
	*out = kr;
	kr = NULL;
out:
	EVP_MD_CTX_free(md);
	sl_keyring_free(kr);
	return rc;
}

/* The key file: private to its owner, one short line. */
int
sl_keyring_from_file(struct sl_keyring **out, const char *path, struct sl_err *err)
{
	char buf[MAX_KEY_FILE + 1];
	struct stat st;
	size_t len = 0;
	ssize_t r;
	int fd, rc = 0;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		rc = sl_err_set(err, SL_EIO, SL_RETRY_NO, "cannot open master key file %s: %s", path,
		                strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		rc = sl_err_set(err, SL_EIO, SL_RETRY_NO, "cannot stat master key file %s: %s", path,
		                strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "master key file %s is not a regular file",
		                path);
		goto out;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO,
		                "master key file %s is accessible by group or others (mode %04o)", path,
		                (unsigned)(st.st_mode & 07777));
		sl_err_detail(err, "A master key file must be private to its owner: chmod 600 %s", path);
		goto out;
	}
	for (;;) {
		r = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = sl_err_set(err, SL_EIO, SL_RETRY_NO, "cannot read master key file %s: %s",
			                path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len == sizeof(buf) - 1) {
			rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO,
			                "master key file %s is too long to hold one key", path);
			goto out;
		}
	}
	buf[len] = '\0';
	if (strlen(buf) != len) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO,
		                "master key must be 64 hex digits or the base64 of 32 bytes");
		goto out;
	}
	rc = sl_keyring_new(out, buf, err);
	if (rc && err) {
		/* Say where the bad key came from; the message never holds the key. */
		append(err->msg, sizeof(err->msg), " (in ");
		append(err->msg, sizeof(err->msg), path);
		append(err->msg, sizeof(err->msg), ")");
	}
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	if (fd >= 0)
		close(fd);
	return rc;
}

int
sl_keyring_from_env(struct sl_keyring **out, struct sl_err *err)
{
	const char *key = getenv("SLUICE_MASTER_KEY");
	const char *file = getenv("SLUICE_MASTER_KEY_FILE");
	int rc;

	*out = NULL;
	if (key && *key) {
		rc = sl_keyring_new(out, key, err);
		if (rc && err)
			append(err->msg, sizeof(err->msg), " (SLUICE_MASTER_KEY)");
		return rc;
	}
	if (file && *file)
		return sl_keyring_from_file(out, file, err);
	rc = sl_err_set(err, SL_ENOTFOUND, SL_RETRY_NO,
	                "no master key: set SLUICE_MASTER_KEY or SLUICE_MASTER_KEY_FILE");
	sl_err_detail(err, "The master key (64 hex digits or base64 of 32 bytes) unlocks every "
	                   "secret Sluice stores; docs/ops.md, \"Keys and secrets\", says where it "
	                   "comes from.");
	return rc;
}

static void
key_free(struct data_key *dk)
{
	OPENSSL_cleanse(dk, sizeof(*dk));
	sl_free(dk);
}

void
sl_keyring_free(struct sl_keyring *kr)
{
	size_t i;

	if (!kr)
		return;
	for (i = 0; i < kr->n; i++)
		key_free(kr->keys[i]);
	sl_free(kr->keys);
	OPENSSL_cleanse(kr, sizeof(*kr));
	sl_free(kr);
}

const char *
sl_keyring_master_id(const struct sl_keyring *kr)
{
	return kr->master_id;
}

/* ---- the data key cache ------------------------------------------------------ */

static const struct data_key *
cache_find(const struct sl_keyring *kr, int id)
{
	size_t i;

	for (i = 0; i < kr->n; i++) {
		if (kr->keys[i]->id == id)
			return kr->keys[i];
	}
	return NULL;
}

static int
cache_add(struct sl_keyring *kr, int id, const unsigned char key[KEY_LEN],
          const struct data_key **out, struct sl_err *err)
{
	struct data_key **keys, *dk;
	size_t cap;

	*out = cache_find(kr, id);
	if (*out)
		return 0;
	if (kr->n == kr->cap) {
		/* Only pointers move; the keys stay where they are. */
		cap = kr->cap ? kr->cap * 2 : 4;
		keys = sl_realloc(kr->keys, cap * sizeof(*keys));
		if (!keys)
			return sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "out of memory");
		kr->keys = keys;
		kr->cap = cap;
	}
	dk = sl_malloc(sizeof(*dk));
	if (!dk)
		return sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "out of memory");
	dk->id = id;
	memcpy(dk->key, key, KEY_LEN);
	kr->keys[kr->n++] = dk;
	*out = dk;
	return 0;
}

/* Forgets (and wipes) every cached key but `keep`. */
static void
cache_keep_only(struct sl_keyring *kr, int keep)
{
	size_t i, j = 0;

	for (i = 0; i < kr->n; i++) {
		if (kr->keys[i]->id == keep)
			kr->keys[j++] = kr->keys[i];
		else
			key_free(kr->keys[i]);
	}
	kr->n = j;
}

/* "sluice data key <fingerprint>" into aad (>= 33 bytes). */
static size_t
wrap_aad(const struct sl_keyring *kr, char *aad, size_t size)
{
	return (size_t)snprintf(aad, size, "%s%s", wrap_label, kr->master_id);
}

static int
wrap_key(const struct sl_keyring *kr, const unsigned char key[KEY_LEN],
         unsigned char wrapped[WRAPPED_LEN], struct sl_err *err)
{
	char aad[64];
	size_t aad_len = wrap_aad(kr, aad, sizeof(aad));
	int rc;

	rc = sl_random_bytes(wrapped, NONCE_LEN, err);
	if (rc)
		return rc;
	if (gcm_seal(kr->master, wrapped, aad, aad_len, key, KEY_LEN, wrapped + NONCE_LEN))
		return sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "cannot wrap a data key");
	return 0;
}

/*
 * Unwraps data key `id` from its row's master_key_id and wrapped (hex bytea
 * text) and caches it.
 */
static int
unwrap_row(struct sl_keyring *kr, int id, const char *master_id, const char *wrapped_text,
           const struct data_key **out, struct sl_err *err)
{
	unsigned char key[KEY_LEN];
	char aad[64];
	size_t aad_len;
	struct sl_buf w;
	int rc;

	sl_buf_init(&w, 1024);
	if (!master_id || strcmp(master_id, kr->master_id)) {
		rc = sl_err_set(err, SL_EAUTH, SL_RETRY_NO,
		                "data key %d is wrapped by master key %s, not by this one (%s)", id,
		                master_id ? master_id : "(none)", kr->master_id);
		sl_err_detail(err, "This process was given another master key than the one that "
		                   "made the database's data keys; sluicectl keys status lists them.");
		goto out;
	}
	rc = sl_bytea_parse(wrapped_text ? wrapped_text : "", &w, err);
	if (rc)
		goto out;
	aad_len = wrap_aad(kr, aad, sizeof(aad));
	if (w.len != WRAPPED_LEN ||
	    gcm_open(kr->master, (const unsigned char *)w.data, aad, aad_len,
	             (const unsigned char *)w.data + NONCE_LEN, KEY_LEN + TAG_LEN, key)) {
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO,
		                "data key %d does not unwrap with master key %s", id, kr->master_id);
		sl_err_detail(err, "Its wrapped bytes in sluice.data_key were damaged or replaced.");
		goto out;
	}
	rc = cache_add(kr, id, key, out, err);
out:
	OPENSSL_cleanse(key, sizeof(key));
	sl_buf_release(&w);
	return rc;
}

/* Data key `id`, from the cache or the database. */
static int
get_key(struct sl_keyring *kr, struct sl_db *db, int id, const struct data_key **out,
        struct sl_err *err)
{
	char sid[16];
	const char *params[1] = { sid };
	const char *state;
	PGresult *res = NULL;
	int rc;

	*out = cache_find(kr, id);
	if (*out)
		return 0;
	if (!db)
		return sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO,
		                  "data key %d is not cached and there is no database session", id);
	snprintf(sid, sizeof(sid), "%d", id);
	rc = sl_db_query(db, &res, "SELECT master_key_id, state, wrapped FROM sluice.data_key"
	                 " WHERE id = $1::integer", 1, params, err);
	if (rc)
		goto out;
	if (PQntuples(res) != 1) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "data key %d does not exist", id);
		goto out;
	}
	state = sl_pg_get(res, 0, "state");
	if (!state || !strcmp(state, "retired")) {
		/* No row uses a retired key (schema/0005_keys.sql): the caller read its row
		 * before a rotation moved it, and reading it again finds the new key. */
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_BACKOFF,
		                "data key %d is retired: what it sealed cannot be opened", id);
		sl_err_detail(err, "A row read before a key rotation moved it names the old key; "
		                   "read the row again.");
		goto out;
	}
	rc = unwrap_row(kr, id, sl_pg_get(res, 0, "master_key_id"), sl_pg_get(res, 0, "wrapped"),
	                out, err);
out:
	PQclear(res);
	return rc;
}

/* key wrapped under kr's master key, as a bytea parameter into *hex (sl_free it). */
static int
wrapped_param(const struct sl_keyring *kr, const unsigned char key[KEY_LEN], char **hex,
              struct sl_err *err)
{
	unsigned char wrapped[WRAPPED_LEN];
	int rc;

	*hex = NULL;
	rc = wrap_key(kr, key, wrapped, err);
	if (rc)
		return rc;
	*hex = sl_bytea_param(wrapped, sizeof(wrapped));
	return *hex ? 0 : sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "out of memory");
}

/*
 * Makes a random data key, wraps it and hands it to `sql` ($1 the master
 * key id, $2 the wrapped key), which answers a key id in column "id" (fn
 * names that function in the error).  With `cache` the new key is that id's
 * and joins the cache (sluice.add_data_key); without, it is only wiped, as
 * the id may be another process's key (sluice.ensure_data_key, DESIGN 3).
 */
static int
new_data_key(struct sl_keyring *kr, struct sl_db *db, const char *sql, const char *fn,
             int cache, int *id, struct sl_err *err)
{
	unsigned char key[KEY_LEN];
	const char *params[2] = { kr->master_id, NULL };
	const struct data_key *dk;
	char *hex = NULL;
	PGresult *res = NULL;
	long long v;
	int rc;

	rc = sl_random_bytes(key, sizeof(key), err);
	if (rc)
		goto out;
	rc = wrapped_param(kr, key, &hex, err);
	if (rc)
		goto out;
	params[1] = hex;
	rc = sl_db_query(db, &res, sql, 2, params, err);
	if (rc)
		goto out;
	if (!sl_pg_get(res, 0, "id") || sl_parse_ll(sl_pg_get(res, 0, "id"), 1, INT_MAX, &v)) {
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "%s returned no key", fn);
		goto out;
	}
	*id = (int)v;
	if (cache)
		rc = cache_add(kr, *id, key, &dk, err);
out:
	OPENSSL_cleanse(key, sizeof(key));
	sl_free(hex);
	PQclear(res);
	return rc;
}

/* Makes the first data key, unless another process just did (DESIGN 3). */
static int
create_first_key(struct sl_keyring *kr, struct sl_db *db, int *id, struct sl_err *err)
{
	int rc = new_data_key(kr, db, "SELECT sluice.ensure_data_key($1, $2::bytea) AS id",
	                      "sluice.ensure_data_key", 0, id, err);

	if (!rc)
		sl_log_info("data key ready", SLF_I("key_id", *id),
		            SLF_S("master_key_id", kr->master_id), SLF_END);
	return rc;
}

/* The key current in the database now (DESIGN 2), made if there is none. */
static int
current_key(struct sl_keyring *kr, struct sl_db *db, const struct data_key **out,
            struct sl_err *err)
{
	PGresult *res = NULL;
	long long v;
	int rc, id = 0;

	*out = NULL;
	rc = sl_db_query(db, &res, "SELECT id, master_key_id, wrapped FROM sluice.data_key"
	                 " WHERE state = 'current'", 0, NULL, err);
	if (rc)
		goto out;
	if (PQntuples(res) == 0) {
		rc = create_first_key(kr, db, &id, err);
		if (rc)
			goto out;
		rc = get_key(kr, db, id, out, err);
		goto out;
	}
	if (sl_parse_ll(sl_pg_get(res, 0, "id"), 1, INT_MAX, &v)) {
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "unexpected data key id");
		goto out;
	}
	*out = cache_find(kr, (int)v);
	if (*out)
		goto out;
	rc = unwrap_row(kr, (int)v, sl_pg_get(res, 0, "master_key_id"), sl_pg_get(res, 0, "wrapped"),
	                out, err);
out:
	PQclear(res);
	return rc;
}

/* ---- sealing and opening ----------------------------------------------------- */

static int
seal_with(const struct data_key *dk, const char *aad, const void *plaintext, size_t n,
          struct sl_sealed *out, struct sl_err *err)
{
	int rc;

	out->ct = NULL;
	out->ct_len = 0;
	out->key_id = dk->id;
	rc = sl_random_bytes(out->nonce, NONCE_LEN, err);
	if (rc)
		return rc;
	out->ct = sl_malloc(n + TAG_LEN);
	if (!out->ct)
		return sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "out of memory");
	if (gcm_seal(dk->key, out->nonce, aad, strlen(aad), plaintext, n, out->ct)) {
		sl_sealed_release(out);
		return sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "cannot encrypt the secret");
	}
	out->ct_len = n + TAG_LEN;
	return 0;
}

void
sl_sealed_release(struct sl_sealed *s)
{
	if (!s)
		return;
	sl_free(s->ct);
	s->ct = NULL;
	s->ct_len = 0;
}

int
sl_secret_seal(struct sl_keyring *kr, struct sl_db *db, const char *aad,
               const void *plaintext, size_t n, struct sl_sealed *out, struct sl_err *err)
{
	const struct data_key *dk;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!db)
		return sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "sealing needs a database session");
	if (n > MAX_SECRET)
		return sl_err_set(err, SL_ETOOLARGE, SL_RETRY_NO,
		                  "a secret may have at most %u bytes", MAX_SECRET);
	rc = current_key(kr, db, &dk, err);
	if (rc)
		return rc;
	return seal_with(dk, aad, plaintext, n, out, err);
}

int
sl_secret_open(struct sl_keyring *kr, struct sl_db *db, int key_id,
               const unsigned char nonce[12], const unsigned char *ct, size_t ct_len,
               const char *aad, struct sl_buf *out, struct sl_err *err)
{
	const struct data_key *dk;
	unsigned char *plain = NULL;
	size_t n = 0;
	int rc;

	if (ct_len < TAG_LEN || ct_len - TAG_LEN > MAX_SECRET) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "sealed secret has an impossible length");
		goto out;
	}
	rc = get_key(kr, db, key_id, &dk, err);
	if (rc)
		goto out;
	n = ct_len - TAG_LEN;
	plain = sl_malloc(n + 1);
	if (!plain) {
		rc = sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "out of memory");
		goto out;
	}
	if (gcm_open(dk->key, nonce, aad, strlen(aad), ct, ct_len, plain)) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "sealed secret does not decrypt");
		sl_err_detail(err, "Under data key %d for %s the ciphertext does not authenticate: "
		                   "it was altered, or belongs to another owner.", key_id, aad);
		goto out;
	}
	rc = sl_buf_add(out, plain, n);
	if (rc)
		sl_err_set(err, rc, SL_RETRY_NO, "secret does not fit its buffer");
out:
	if (plain) {
		OPENSSL_cleanse(plain, n + 1);
		sl_free(plain);
	}
	return rc;
}

void
sl_secret_wipe(struct sl_buf *b)
{
	if (b->cap)
		OPENSSL_cleanse(b->data, b->cap);
	sl_buf_release(b);
}

/* ---- derived values ----------------------------------------------------------- */

static void
b64url(const unsigned char *in, size_t n, char *out)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned long acc = 0;
	size_t i, o = 0;
	int bits = 0;

	for (i = 0; i < n; i++) {
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[o++] = alphabet[(acc >> bits) & 63];
		}
	}
	if (bits > 0)
		out[o++] = alphabet[(acc << (6 - bits)) & 63];
	out[o] = '\0';
}

void
sl_secret_derive(const struct sl_keyring *kr, const char *purpose, const char *input,
                 char out[44])
{
	char digest_name[] = "SHA256";
	OSSL_PARAM params[2];
	EVP_MAC *mac = NULL;
	EVP_MAC_CTX *ctx = NULL;
	unsigned char md[32];
	size_t len = 0;
	int ok;

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0);
	params[1] = OSSL_PARAM_construct_end();
	mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	ok = ctx && EVP_MAC_init(ctx, kr->master, KEY_LEN, params) == 1 &&
	     EVP_MAC_update(ctx, (const unsigned char *)purpose, strlen(purpose)) == 1 &&
	     EVP_MAC_update(ctx, (const unsigned char *)"", 1) == 1 &&
	     EVP_MAC_update(ctx, (const unsigned char *)input, strlen(input)) == 1 &&
	     EVP_MAC_final(ctx, md, &len, sizeof(md)) == 1 && len == sizeof(md);
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	if (ok) {
		b64url(md, sizeof(md), out);
	} else {
		out[0] = '\0';
		sl_log_error("cannot derive a value from the master key", SLF_S("purpose", purpose),
		             SLF_END);
	}
	OPENSSL_cleanse(md, sizeof(md));
}

/* ---- bytea ---------------------------------------------------------------------- */

char *
sl_bytea_param(const unsigned char *p, size_t n)
{
	char *s;

	if (n > ((size_t)-1 - 3) / 2)
		return NULL;
	s = sl_malloc(2 * n + 3);
	if (!s)
		return NULL;
	s[0] = '\\';
	s[1] = 'x';
	sl_hex(p, n, s + 2);
	return s;
}

int
sl_bytea_parse(const char *text, struct sl_buf *out, struct sl_err *err)
{
	unsigned char chunk[256];
	size_t len, i, k = 0;
	int rc;

	if (!text || text[0] != '\\' || text[1] != 'x')
		return sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "not a bytea in hex format");
	text += 2;
	len = strlen(text);
	if (len % 2)
		return sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "bytea hex has an odd number of digits");
	for (i = 0; i < len; i += 2) {
		int hi = sl_hex_digit((unsigned char)text[i]), lo = sl_hex_digit((unsigned char)text[i + 1]);

		if (hi < 0 || lo < 0)
			return sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "bytea hex has a non-hex digit");
		chunk[k++] = (unsigned char)(hi << 4 | lo);
		if (k == sizeof(chunk) || i + 2 == len) {
			rc = sl_buf_add(out, chunk, k);
			if (rc)
				return sl_err_set(err, rc, SL_RETRY_NO, "bytea value too large");
			k = 0;
		}
	}
	OPENSSL_cleanse(chunk, sizeof(chunk));
	return 0;
}

/* ---- rotation ------------------------------------------------------------------- */

/* Puts the current message in front of the detail and sets a new message. */
static void
reframe(struct sl_err *err, const char *fmt, const char *arg)
{
	char detail[sizeof(err->detail)];

	if (!err)
		return;
	sl_strlcpy(detail, err->msg, sizeof(detail));
	if (err->detail[0]) {
		append(detail, sizeof(detail), ": ");
		append(detail, sizeof(detail), err->detail);
	}
	snprintf(err->msg, sizeof(err->msg), fmt, arg);
	sl_strlcpy(err->detail, detail, sizeof(err->detail));
}

/* Opens one stored secret (hex bytea columns) and seals it again under `to`. */
static int
reseal(struct sl_keyring *kr, struct sl_db *db, const struct data_key *to, const char *aad,
       const char *key_id, const char *nonce_text, const char *ct_text, struct sl_sealed *out,
       struct sl_err *err)
{
	struct sl_buf nonce, ct, plain;
	long long kid;
	int rc;

	sl_buf_init(&nonce, 64);
	sl_buf_init(&ct, MAX_SECRET + TAG_LEN);
	sl_buf_init(&plain, MAX_SECRET);
	if (!key_id || sl_parse_ll(key_id, 1, INT_MAX, &kid)) {
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "row without a data key id");
		goto out;
	}
	rc = sl_bytea_parse(nonce_text, &nonce, err);
	if (rc)
		goto out;
	rc = sl_bytea_parse(ct_text, &ct, err);
	if (rc)
		goto out;
	if (nonce.len != NONCE_LEN) {
		rc = sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "stored nonce is not %d bytes", NONCE_LEN);
		goto out;
	}
	rc = sl_secret_open(kr, db, (int)kid, (const unsigned char *)nonce.data,
	                    (const unsigned char *)ct.data, ct.len, aad, &plain, err);
	if (rc)
		goto out;
	rc = seal_with(to, aad, plain.data, plain.len, out, err);
out:
	sl_secret_wipe(&plain);
	sl_buf_release(&nonce);
	sl_buf_release(&ct);
	return rc;
}

/* Writes one resealed secret with the statement `sql` ($1.. as in params, then
 * key id, nonce, ciphertext); counts it as moved or raced. */
static int
write_resealed(struct sl_db *db, const char *sql, const char *a, const char *b, const char *c,
               const struct sl_sealed *s, struct sl_rotate_stats *st, struct sl_err *err)
{
	char kid[16];
	char *nonce = sl_bytea_param(s->nonce, NONCE_LEN);
	char *ct = sl_bytea_param(s->ct, s->ct_len);
	const char *params[6];
	PGresult *res = NULL;
	int rc, n = 0;

	if (!nonce || !ct) {
		rc = sl_err_set(err, SL_ENOMEM, SL_RETRY_BACKOFF, "out of memory");
		goto out;
	}
	snprintf(kid, sizeof(kid), "%d", s->key_id);
	params[n++] = a;
	params[n++] = b;
	if (c)
		params[n++] = c;
	params[n++] = kid;
	params[n++] = nonce;
	params[n++] = ct;
	rc = sl_db_query(db, &res, sql, n, params, err);
	if (rc)
		goto out;
	if (PQntuples(res) == 1 && !strcmp(PQgetvalue(res, 0, 0), "t"))
		st->reencrypted++;
	else
		st->raced++;
out:
	sl_free(nonce);
	sl_free(ct);
	PQclear(res);
	return rc;
}

/* The tables whose sealed secrets a rotation moves (DESIGN 4). */
enum sealed_table { SEALED_CREDENTIALS, SEALED_OAUTH_CLIENTS };

/*
 * One batch of the table's secrets under other keys than `to` (rows other
 * transactions hold are skipped), opened and sealed again under `to`;
 * *taken counts rows.
 */
static int
move_sealed(struct sl_keyring *kr, struct sl_db *db, const struct data_key *to,
            enum sealed_table table, int limit, int *taken, struct sl_rotate_stats *st,
            struct sl_err *err)
{
	char kid[16], lim[16], aad[128], what[160];
	const char *params[2] = { kid, lim };
	struct sl_sealed s = { 0 };
	PGresult *res = NULL;
	int rc, i;

	snprintf(kid, sizeof(kid), "%d", to->id);
	snprintf(lim, sizeof(lim), "%d", limit);
	if (table == SEALED_CREDENTIALS)
		rc = sl_db_query(db, &res, "SELECT connector_id, version, key_id, nonce, ciphertext"
		                 " FROM sluice.credential WHERE key_id <> $1::integer"
		                 " LIMIT $2::integer FOR UPDATE SKIP LOCKED", 2, params, err);
	else
		rc = sl_db_query(db, &res, "SELECT org_id, type, key_id, nonce, ciphertext"
		                 " FROM sluice.oauth_client WHERE key_id <> $1::integer"
		                 " LIMIT $2::integer FOR UPDATE SKIP LOCKED", 2, params, err);
	if (rc)
		goto out;
	*taken = PQntuples(res);
	for (i = 0; i < *taken; i++) {
		/* The row's names, its associated data, and the version-checked write back. */
		const char *a, *b, *old_nonce = NULL, *write;

		if (table == SEALED_CREDENTIALS) {
			a = sl_pg_get(res, i, "connector_id");
			b = sl_pg_get(res, i, "version");
			snprintf(aad, sizeof(aad), "connector:%s", a);
			snprintf(what, sizeof(what), "the credential of connector %s", a);
			write = "SELECT sluice.reencrypt_credential($1::uuid, $2::bigint,"
			        " $3::integer, $4::bytea, $5::bytea)";
		} else {
			a = sl_pg_get(res, i, "org_id");
			b = sl_pg_get(res, i, "type");
			old_nonce = sl_pg_get(res, i, "nonce");
			snprintf(aad, sizeof(aad), "oauth_client:%s:%s", a, b);
			snprintf(what, sizeof(what), "the OAuth client secret of org %s, type %s",
			         a, b);
			write = "SELECT sluice.reencrypt_oauth_client($1::bigint, $2,"
			        " $3::bytea, $4::integer, $5::bytea, $6::bytea)";
		}
		rc = reseal(kr, db, to, aad, sl_pg_get(res, i, "key_id"), sl_pg_get(res, i, "nonce"),
		            sl_pg_get(res, i, "ciphertext"), &s, err);
		if (rc) {
			reframe(err, "cannot re-encrypt %s", what);
			goto out;
		}
		rc = write_resealed(db, write, a, b, old_nonce, &s, st, err);
		sl_sealed_release(&s);
		if (rc)
			goto out;
	}
out:
	sl_sealed_release(&s);
	PQclear(res);
	return rc;
}

/* A number the query returns (one row, one column). */
static int
query_ll(struct sl_db *db, const char *sql, long long *v, struct sl_err *err)
{
	PGresult *res = NULL;
	int rc;

	rc = sl_db_query(db, &res, sql, 0, NULL, err);
	if (rc)
		goto out;
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0) ||
	    sl_parse_ll(PQgetvalue(res, 0, 0), LLONG_MIN, LLONG_MAX, v))
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "unexpected answer from: %s", sql);
out:
	PQclear(res);
	return rc;
}

/* One round: a transaction moving up to `batch` secrets to the current key. */
static int
rotate_round(struct sl_keyring *kr, struct sl_db *db, int batch, int *taken,
             struct sl_rotate_stats *st, struct sl_err *err)
{
	const struct data_key *to;
	int rc, creds = 0, apps = 0;

	*taken = 0;
	rc = sl_db_exec(db, "BEGIN", 0, NULL, err);
	if (rc)
		return rc;
	/* Current now, in case someone made another key meanwhile: never move rows back. */
	rc = current_key(kr, db, &to, err);
	if (rc)
		goto out;
	st->new_key_id = to->id;
	rc = move_sealed(kr, db, to, SEALED_CREDENTIALS, batch, &creds, st, err);
	if (rc)
		goto out;
	if (creds < batch) {
		rc = move_sealed(kr, db, to, SEALED_OAUTH_CLIENTS, batch - creds, &apps, st, err);
		if (rc)
			goto out;
	}
	rc = sl_db_exec(db, "COMMIT", 0, NULL, err);
	if (rc == 0)
		*taken = creds + apps;
	return rc;
out:
	if (sl_db_ok(db)) {
		struct sl_err ignored;

		if (sl_db_exec(db, "ROLLBACK", 0, NULL, &ignored))
			sl_log_warn("rollback failed", SLF_S("error", ignored.msg), SLF_END);
	}
	return rc;
}

static void
pause_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
sl_keys_rotate(struct sl_keyring *kr, struct sl_db *db, int batch,
               struct sl_rotate_stats *stats, struct sl_err *err)
{
	const struct data_key *cur;
	long long v, last_progress, total = 0;
	long pause_for = 20;
	int rc, taken, locked = 0;

	stats->new_key_id = 0;
	stats->reencrypted = stats->raced = 0;
	stats->retired = stats->rounds = 0;
	stats->remaining = 0;
	if (batch < 1 || batch > 100000)
		return sl_err_set(err, SL_EINVAL, SL_RETRY_NO, "batch must be 1 to 100000");
	if (PQtransactionStatus(sl_db_conn(db)) != PQTRANS_IDLE)
		return sl_err_set(err, SL_EINVAL, SL_RETRY_NO,
		                  "a key rotation must not run inside a transaction");
	rc = query_ll(db, "SELECT pg_try_advisory_lock(sluice.rotation_lock_key())::integer", &v,
	              err);
	if (rc)
		return rc;
	if (!v)
		return sl_err_set(err, SL_ECONFLICT, SL_RETRY_NO, "another key rotation is running");
	locked = 1;

	/* The current key must be ours to read before a new one is made. */
	rc = current_key(kr, db, &cur, err);
	if (rc)
		goto out;
	/* The new current key (DESIGN 4), cached. */
	rc = new_data_key(kr, db, "SELECT sluice.add_data_key($1, $2::bytea) AS id",
	                  "sluice.add_data_key", 1, &stats->new_key_id, err);
	if (rc)
		goto out;
	sl_log_info("data key rotation started", SLF_I("key_id", stats->new_key_id),
	            SLF_I("batch", batch), SLF_END);
	rc = query_ll(db, "SELECT sluice.secrets_on_old_keys()", &total, err);
	if (rc)
		goto out;
	stats->remaining = total;
	last_progress = now_ms();
	for (;;) {
		rc = rotate_round(kr, db, batch, &taken, stats, err);
		if (rc)
			goto out;
		if (taken > 0) {
			stats->rounds++;
			stats->remaining = total > stats->reencrypted ? total - stats->reencrypted : 0;
			last_progress = now_ms();
			pause_for = 20;
			if (stats->progress)
				stats->progress(stats, stats->progress_arg);
			continue;
		}
		/* Nothing taken: done, or every row left is locked by someone else. */
		if (now_ms() - last_progress > STALL_LIMIT_MS) {
			rc = sl_err_set(err, SL_ETIMEOUT, SL_RETRY_NO,
			                "%lld secret(s) stayed locked by other transactions for %lld "
			                "minutes", stats->remaining, STALL_LIMIT_MS / 60000);
			sl_err_detail(err, "The old data keys stay until they are moved; run the "
			                   "rotation again once the long transactions have ended "
			                   "(sluice.running_jobs and pg_stat_activity show them).");
			goto out;
		}
		rc = query_ll(db, "SELECT sluice.secrets_on_old_keys()", &stats->remaining, err);
		if (rc)
			goto out;
		if (stats->remaining > 0) {
			pause_ms(pause_for);
			if (pause_for < 200)
				pause_for *= 2;
			continue;
		}
		rc = query_ll(db, "SELECT sluice.retire_unused_data_keys()", &v, err);
		if (rc)
			goto out;
		stats->retired += (int)v;
		rc = query_ll(db, "SELECT count(*) FROM sluice.data_key WHERE state = 'retiring'", &v,
		              err);
		if (rc)
			goto out;
		if (v == 0)
			break;
		/* A writer committed under an old key after the last round (DESIGN 4): go on. */
		rc = query_ll(db, "SELECT sluice.secrets_on_old_keys()", &stats->remaining, err);
		if (rc)
			goto out;
		total = stats->reencrypted + stats->remaining;
	}
	/* What this process cached of the old keys goes too. */
	cache_keep_only(kr, stats->new_key_id);
	sl_log_info("data key rotation done", SLF_I("key_id", stats->new_key_id),
	            SLF_I("reencrypted", stats->reencrypted), SLF_I("retired", stats->retired),
	            SLF_END);
out:
	if (locked && sl_db_ok(db)) {
		struct sl_err ignored;

		/* Failing, it goes with the session anyway. */
		if (sl_db_exec(db, "SELECT pg_advisory_unlock(sluice.rotation_lock_key())", 0, NULL,
		               &ignored))
			sl_log_warn("cannot release the rotation lock", SLF_S("error", ignored.msg),
			            SLF_END);
	}
	return rc;
}

/* ---- a new master key ------------------------------------------------------------ */

/* Wraps data key `id` (from the row's master_key_id and wrapped) again under new_kr. */
static int
rewrap_one(struct sl_keyring *kr, struct sl_keyring *new_kr, struct sl_db *db, int id,
           const char *master_id, const char *wrapped_text, struct sl_err *err)
{
	const struct data_key *dk = cache_find(kr, id);
	char sid[16], *hex = NULL;
	const char *params[4] = { sid, kr->master_id, new_kr->master_id, NULL };
	PGresult *res = NULL;
	int rc = 0;

	if (!dk || !master_id || strcmp(master_id, kr->master_id))
		rc = unwrap_row(kr, id, master_id, wrapped_text, &dk, err);
	if (rc)
		goto out;
	rc = wrapped_param(new_kr, dk->key, &hex, err);
	if (rc)
		goto out;
	snprintf(sid, sizeof(sid), "%d", id);
	params[3] = hex;
	rc = sl_db_query(db, &res, "SELECT sluice.rewrap_data_key($1::integer, $2, $3, $4::bytea)",
	                 4, params, err);
	if (rc)
		goto out;
	if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "t"))
		rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "data key %d changed while rewrapping",
		                id);
out:
	sl_free(hex);
	PQclear(res);
	return rc;
}

int
sl_keys_rewrap(struct sl_keyring *kr, struct sl_keyring *new_kr, struct sl_db *db, int *n,
               struct sl_err *err)
{
	PGresult *res = NULL;
	long long v;
	int rc, i, done = 0;

	if (n)
		*n = 0;
	if (!strcmp(kr->master_id, new_kr->master_id))
		return sl_err_set(err, SL_EINVAL, SL_RETRY_NO,
		                  "the new master key is the one in use (%s)", kr->master_id);
	if (PQtransactionStatus(sl_db_conn(db)) != PQTRANS_IDLE)
		return sl_err_set(err, SL_EINVAL, SL_RETRY_NO,
		                  "rewrapping must not run inside a transaction");
	rc = sl_db_exec(db, "BEGIN", 0, NULL, err);
	if (rc)
		return rc;
	/* No key is made, rotated or retired meanwhile; writers are not held up. */
	rc = sl_db_exec(db, "LOCK TABLE sluice.data_key IN SHARE ROW EXCLUSIVE MODE", 0, NULL, err);
	if (rc)
		goto out;
	rc = sl_db_query(db, &res, "SELECT id, master_key_id, wrapped FROM sluice.data_key"
	                 " WHERE state <> 'retired' ORDER BY id", 0, NULL, err);
	if (rc)
		goto out;
	for (i = 0; i < PQntuples(res); i++) {
		const char *mk = sl_pg_get(res, i, "master_key_id");

		if (sl_parse_ll(sl_pg_get(res, i, "id"), 1, INT_MAX, &v)) {
			rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "unexpected data key id");
			goto out;
		}
		if (mk && !strcmp(mk, new_kr->master_id))
			continue;   /* done by an earlier run */
		rc = rewrap_one(kr, new_kr, db, (int)v, mk, sl_pg_get(res, i, "wrapped"), err);
		if (rc)
			goto out;
		done++;
	}
	rc = sl_db_exec(db, "COMMIT", 0, NULL, err);
	if (rc == 0) {
		if (n)
			*n = done;
		sl_log_info("data keys rewrapped", SLF_I("keys", done),
		            SLF_S("from_master_key_id", kr->master_id),
		            SLF_S("to_master_key_id", new_kr->master_id), SLF_END);
	}
out:
	PQclear(res);
	if (rc && sl_db_ok(db) && PQtransactionStatus(sl_db_conn(db)) != PQTRANS_IDLE) {
		struct sl_err ignored;

		if (sl_db_exec(db, "ROLLBACK", 0, NULL, &ignored))
			sl_log_warn("rollback failed", SLF_S("error", ignored.msg), SLF_END);
	}
	return rc;
}
