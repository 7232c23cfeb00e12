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
 * named by SLUICE_MASTER_KEY_FILE (which must not be readable or writable by
 * group or others: mode 0600 or 0400).  An empty variable counts as unset.
 * SL_ENOTFOUND when neither is set; SL_EIO when the file cannot be read;
 * SL_EINVAL when it is not private or holds no key.  *out is NULL on error.
 */
int sl_keyring_from_env(struct sl_keyring **out, struct sl_err *err)
	__attribute__((warn_unused_result));

/*
 * Builds a keyring from a key file, as SLUICE_MASTER_KEY_FILE is read: the
 * file must be private to its owner and hold one key.  Errors as
 * sl_keyring_from_env (messages name the file, never its contents).
 */
int sl_keyring_from_file(struct sl_keyring **out, const char *path, struct sl_err *err)
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
 * Encrypts n bytes (at most 1 MiB) under the data key that is current in the
 * database now (one query per seal, so a rotation by another process takes
 * effect at once), creating the first data key when there is none
 * (sluice.ensure_data_key: processes racing to do so end with one key).
 * aad names the owner.  Runs its queries on db (inside the caller's
 * transaction, if one is open).  On success out->ct is the caller's (free
 * with sl_sealed_release); on error out holds nothing.  A current key
 * wrapped by another master key: SL_EAUTH naming both fingerprints.
 */
int sl_secret_seal(struct sl_keyring *kr, struct sl_db *db, const char *aad,
                   const void *plaintext, size_t n, struct sl_sealed *out,
                   struct sl_err *err) __attribute__((warn_unused_result));

/*
 * Decrypts into out (appended; the caller wipes it with sl_secret_wipe).
 * A tampered ciphertext, a wrong aad or a retired (or unknown) key:
 * SL_EINVAL, message without any secret.  A data key wrapped by another
 * master key: SL_EAUTH naming both fingerprints.  A retired key has
 * SL_RETRY_BACKOFF: no row uses one, so the caller read its row before a
 * rotation moved it and should read it again.  db is used only when the
 * data key is not cached yet.  A key this keyring unwrapped before it was
 * retired elsewhere stays usable in this process until it is freed; nothing
 * in the database needs it by then.
 */
int sl_secret_open(struct sl_keyring *kr, struct sl_db *db, int key_id,
                   const unsigned char nonce[12], const unsigned char *ct, size_t ct_len,
                   const char *aad, struct sl_buf *out, struct sl_err *err)
	__attribute__((warn_unused_result));

/* Zeroes a buffer's bytes (also its spare capacity) and releases it. */
void sl_secret_wipe(struct sl_buf *b);

/*
 * A value derived from the master key: HMAC-SHA256(master, purpose || 0 ||
 * input), as 43 base64url characters (no padding) into out[44].  The OAuth
 * flow derives its PKCE verifier from the state this way, so the verifier is
 * never stored.  Should OpenSSL fail (out of memory), out is "" and an error
 * is logged.
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
	int       rounds;        /* transactions that moved secrets */
	long long remaining;     /* secrets still under old keys (an estimate between rounds) */
	/* Set by the caller, or NULL: called after every round, for progress output. */
	void    (*progress)(const struct sl_rotate_stats *stats, void *arg);
	void     *progress_arg;
};

/*
 * `sluicectl keys rotate`: makes a new current data key, re-encrypts every
 * credential and OAuth client secret under it in transactions of `batch`
 * rows (rows locked by a worker are skipped and come back in a later round),
 * then retires the old keys.  Workers keep running throughout: old keys stay
 * readable until the end.  Call it with no transaction open on db.  Sets
 * every counter of *stats (progress and progress_arg are left alone).
 * Another rotation running: SL_ECONFLICT.  A secret that does not open:
 * the error names its row and the old keys stay; rows stay locked by others
 * for 10 minutes: SL_ETIMEOUT.  Either way nothing is lost and it can be
 * run again.
 */
int sl_keys_rotate(struct sl_keyring *kr, struct sl_db *db, int batch,
                   struct sl_rotate_stats *stats, struct sl_err *err)
	__attribute__((warn_unused_result));

/*
 * `sluicectl keys rewrap`: moves to a new master key.  In one transaction
 * (no data key can be made or retired meanwhile) every data key that is not
 * retired is unwrapped with kr's master key and wrapped again with
 * new_kr's; keys already under new_kr's are left alone, so it can be run
 * again after a failure.  *n (may be NULL) counts the keys rewrapped.  The
 * secrets themselves do not change.  Processes already running keep using
 * the data keys they have cached; every process started afterwards needs the
 * new master key.  A data key wrapped by neither master key: SL_EAUTH, and
 * nothing changed.  Call it with no transaction open on db.
 */
int sl_keys_rewrap(struct sl_keyring *kr, struct sl_keyring *new_kr, struct sl_db *db, int *n,
                   struct sl_err *err) __attribute__((warn_unused_result));

#endif
