/* secret.h — envelope encryption of secrets: a master key outside the database wraps data keys inside it. */
#ifndef SL_SECRET_H
#define SL_SECRET_H

#include <stddef.h>

#include "common/buf.h"
#include "common/db.h"
#include "common/err.h"

/*
 * DESIGN 3 of schema/0004_connectors.sql in C.  The master key (32 bytes,
 * given as 64 hex digits or base64) comes from SLUICE_MASTER_KEY, or from the
 * file SLUICE_MASTER_KEY_FILE names.  It never encrypts a secret itself: it
 * wraps data keys (sluice.data_key), and the current data key encrypts with
 * AES-256-GCM, a fresh 12-byte nonce per write, and associated data naming
 * the owner ("connector:<uuid>"), so a ciphertext copied to another row
 * fails to decrypt.  Unwrapped data keys are cached in the keyring for the
 * life of the process; a data key created by another process is fetched on
 * first use.  All key material is wiped when freed.
 */
struct sl_keyring;

/*
 * Builds a keyring from a master key given as text (64 hex digits, or the
 * base64 of 32 bytes; surrounding whitespace ignored).  SL_EINVAL when it is
 * not a 32-byte key (the message never contains the text).
 */
int sl_keyring_new(struct sl_keyring **out, const char *master_key, struct sl_err *err)
	__attribute__((warn_unused_result));

/*
 * Builds a keyring from the environment: SLUICE_MASTER_KEY, else the file
 * named by SLUICE_MASTER_KEY_FILE (which must not be readable by group or
 * others).  SL_ENOTFOUND when neither is set.
 */
int sl_keyring_from_env(struct sl_keyring **out, struct sl_err *err)
	__attribute__((warn_unused_result));

/* Wipes and frees.  NULL-safe. */
void sl_keyring_free(struct sl_keyring *kr);

/* The master key's fingerprint: 16 hex digits of SHA-256("sluice master key" || key). */
const char *sl_keyring_master_id(const struct sl_keyring *kr);

/* One encrypted value, as stored: which data key, the nonce, ciphertext || 16-byte tag. */
struct sl_sealed {
	int            key_id;
	unsigned char  nonce[12];
	unsigned char *ct;       /* owned; ct_len bytes */
	size_t         ct_len;
};

/* Frees ct.  NULL-safe. */
void sl_sealed_release(struct sl_sealed *s);

/*
 * Encrypts n bytes under the current data key, creating the first data key
 * when there is none (sluice.add_data_key).  aad names the owner.  Runs its
 * queries on db (inside the caller's transaction, if one is open).
 */
int sl_secret_seal(struct sl_keyring *kr, struct sl_db *db, const char *aad,
                   const void *plaintext, size_t n, struct sl_sealed *out,
                   struct sl_err *err) __attribute__((warn_unused_result));

/*
 * Decrypts into out (appended; the caller wipes it with sl_secret_wipe).
 * A tampered ciphertext, a wrong aad or a retired key: SL_EINVAL, message
 * without any secret.  A data key wrapped by another master key: SL_EAUTH
 * naming both fingerprints.
 */
int sl_secret_open(struct sl_keyring *kr, struct sl_db *db, int key_id,
                   const unsigned char nonce[12], const unsigned char *ct, size_t ct_len,
                   const char *aad, struct sl_buf *out, struct sl_err *err)
	__attribute__((warn_unused_result));

/* Zeroes a buffer's bytes (also its spare capacity) and releases it. */
void sl_secret_wipe(struct sl_buf *b);

/*
 * A value derived from the master key: HMAC-SHA256(master, purpose || 0 ||
 * input), as 43 base64url characters into out[44].  The OAuth flow derives
 * its PKCE verifier from the state this way, so the verifier is never stored.
 */
void sl_secret_derive(const struct sl_keyring *kr, const char *purpose, const char *input,
                      char out[44]);

/* bytea parameters: "\x" + hex of n bytes, as a heap string; NULL when out of memory. */
char *sl_bytea_param(const unsigned char *p, size_t n);

/*
 * Parses a bytea column in hex output format ("\x..."): appends the bytes to
 * out.  SL_EINVAL when it is not hex bytea.
 */
int sl_bytea_parse(const char *text, struct sl_buf *out, struct sl_err *err)
	__attribute__((warn_unused_result));

/* Progress of a rotation, for the caller to print. */
struct sl_rotate_stats {
	int       new_key_id;
	long long reencrypted;   /* secrets moved to the new key */
	long long raced;         /* rows changed by someone else mid-way, taken again */
	int       retired;       /* old data keys destroyed at the end */
};

/*
 * `sluicectl keys rotate`: makes a new current data key, re-encrypts every
 * credential and OAuth client secret under it in transactions of `batch`
 * rows (rows locked by a worker are skipped and come back in a later round),
 * then retires the old keys.  Workers keep running throughout: old keys stay
 * readable until the end.
 */
int sl_keys_rotate(struct sl_keyring *kr, struct sl_db *db, int batch,
                   struct sl_rotate_stats *stats, struct sl_err *err)
	__attribute__((warn_unused_result));

#endif
