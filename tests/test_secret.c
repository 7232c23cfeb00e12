/* test_secret.c — envelope encryption on a real PostgreSQL: master keys, seal/open, data keys, rotation under load. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/buf.h"
#include "common/crypto.h"
#include "common/db.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/str.h"
#include "tests/harness.h"

/* Another valid master key, for "wrong master key" cases. */
#define OTHER_KEY "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0"

static char url[256];
static PGconn *db;
static char out[16384];

static void
setup(void)
{
	t_db_create(url, sizeof(url));
	db = t_connect(url);
	t_use_master_key();
	unsetenv("SLUICE_MASTER_KEY_FILE");
}

static void
teardown(void)
{
	PQfinish(db);
}

/* The tests without a database. */
static void
env_setup(void)
{
	t_use_master_key();
	unsetenv("SLUICE_MASTER_KEY_FILE");
}

/* ---- helpers ------------------------------------------------------------------ */

static struct sl_keyring *
keyring(const char *text)
{
	struct sl_keyring *kr = NULL;
	struct sl_err err;

	ck_assert_msg(sl_keyring_new(&kr, text, &err) == 0, "keyring: %s", err.msg);
	ck_assert_ptr_nonnull(kr);
	return kr;
}

static struct sl_db *
session(void)
{
	struct sl_db *s = NULL;
	struct sl_err err;

	ck_assert_msg(sl_db_open(&s, url, "test_secret", &err) == 0, "%s", err.msg);
	return s;
}

/* 16 hex digits of SHA-256("sluice master key" || 32 bytes of hex). */
static void
fingerprint_of(const char *hex, char fp[17])
{
	unsigned char buf[17 + 32], digest[32];
	size_t i;

	memcpy(buf, "sluice master key", 17);
	for (i = 0; i < 32; i++) {
		unsigned int v;

		ck_assert_int_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
		buf[17 + i] = (unsigned char)v;
	}
	sl_sha256(buf, sizeof(buf), digest);
	sl_hex(digest, 8, fp);
}

static void
hex_to_bytes(const char *hex, unsigned char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned int v;

		ck_assert_int_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
		b[i] = (unsigned char)v;
	}
}

/* Runs `sluicectl --database URL <args>` (t_ctl); output in `out`; returns the exit status. */
#define ctl(...) t_ctl(url, out, sizeof(out), __VA_ARGS__)

#define has(s) ck_assert_msg(strstr(out, (s)) != NULL, "expected \"%s\" in:\n%s", (s), out)

/* Seals text for aad; the sealed value must be released by the caller. */
static void
seal(struct sl_keyring *kr, struct sl_db *s, const char *aad, const char *text,
     struct sl_sealed *sealed)
{
	struct sl_err err;

	ck_assert_msg(sl_secret_seal(kr, s, aad, text, strlen(text), sealed, &err) == 0,
	              "seal: %s (%s)", err.msg, err.detail);
}

/* Opens a sealed value; returns the SL_E* code, the plaintext in got. */
static int
open_sealed(struct sl_keyring *kr, struct sl_db *s, const struct sl_sealed *v, const char *aad,
            struct sl_buf *got, struct sl_err *err)
{
	return sl_secret_open(kr, s, v->key_id, v->nonce, v->ct, v->ct_len, aad, got, err);
}

/* Opens what the database row holds (hex bytea columns). */
static int
open_columns(struct sl_keyring *kr, struct sl_db *s, const char *key_id, const char *nonce_hex,
             const char *ct_hex, const char *aad, struct sl_buf *got, struct sl_err *err)
{
	struct sl_buf nonce, ct;
	int rc;

	sl_buf_init(&nonce, 64);
	sl_buf_init(&ct, 1 << 21);
	ck_assert_int_eq(sl_bytea_parse(nonce_hex, &nonce, err), 0);
	ck_assert_int_eq(sl_bytea_parse(ct_hex, &ct, err), 0);
	ck_assert_uint_eq(nonce.len, 12);
	rc = sl_secret_open(kr, s, (int)strtol(key_id, NULL, 10), (const unsigned char *)nonce.data,
	                    (const unsigned char *)ct.data, ct.len, aad, got, err);
	sl_buf_release(&nonce);
	sl_buf_release(&ct);
	return rc;
}

/* Writes a credential through sluice.write_credential; returns the result (caller clears). */
static PGresult *
write_credential(PGconn *c, const char *connector, const struct sl_sealed *v,
                 const char *expect_version)
{
	char kid[16], *nonce = sl_bytea_param(v->nonce, 12), *ct = sl_bytea_param(v->ct, v->ct_len);
	const char *p[5] = { connector, kid, nonce, ct, expect_version };
	PGresult *r;

	snprintf(kid, sizeof(kid), "%d", v->key_id);
	r = PQexecParams(c, "SELECT sluice.write_credential($1::uuid, $2::integer, $3::bytea,"
	                 " $4::bytea, NULL, $5::bigint)", 5, NULL, p, NULL, NULL, 0);
	free(nonce);
	free(ct);
	return r;
}

/* Whether n bytes at p hold the string s. */
static int
contains(const unsigned char *p, size_t n, const char *s)
{
	size_t len = strlen(s), i;

	for (i = 0; i + len <= n; i++) {
		if (!memcmp(p + i, s, len))
			return 1;
	}
	return 0;
}

static const char *
sqlstate(const PGresult *r)
{
	const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);

	return s ? s : "";
}

/* ---- master keys ---------------------------------------------------------------- */

START_TEST(master_key_forms)
{
	unsigned char raw[32];
	char fp[17], b64[64], text[256];
	struct sl_keyring *kr;
	size_t i;

	fingerprint_of(T_MASTER_KEY, fp);
	kr = keyring(T_MASTER_KEY);
	ck_assert_str_eq(sl_keyring_master_id(kr), fp);
	ck_assert_uint_eq(strlen(fp), 16);
	sl_keyring_free(kr);

	/* Upper case, and whitespace around (a key file ends with a newline). */
	for (i = 0; T_MASTER_KEY[i]; i++)
		text[i] = (char)(T_MASTER_KEY[i] >= 'a' ? T_MASTER_KEY[i] - 32 : T_MASTER_KEY[i]);
	text[i] = '\0';
	kr = keyring(text);
	ck_assert_str_eq(sl_keyring_master_id(kr), fp);
	sl_keyring_free(kr);
	snprintf(text, sizeof(text), " \t%s\r\n\n", T_MASTER_KEY);
	kr = keyring(text);
	ck_assert_str_eq(sl_keyring_master_id(kr), fp);
	sl_keyring_free(kr);

	/* Base64 of the same 32 bytes: padded, unpadded, URL-safe. */
	hex_to_bytes(T_MASTER_KEY, raw, 32);
	ck_assert_int_eq(EVP_EncodeBlock((unsigned char *)b64, raw, 32), 44);
	kr = keyring(b64);
	ck_assert_str_eq(sl_keyring_master_id(kr), fp);
	sl_keyring_free(kr);
	b64[43] = '\0';
	snprintf(text, sizeof(text), "%s\n", b64);
	kr = keyring(text);
	ck_assert_str_eq(sl_keyring_master_id(kr), fp);
	sl_keyring_free(kr);
	for (i = 0; b64[i]; i++)
		b64[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
	kr = keyring(b64);
	ck_assert_str_eq(sl_keyring_master_id(kr), fp);
	sl_keyring_free(kr);

	/* A different key, a different fingerprint. */
	kr = keyring(OTHER_KEY);
	ck_assert_str_ne(sl_keyring_master_id(kr), fp);
	sl_keyring_free(kr);
}
END_TEST

START_TEST(master_key_refusals)
{
	unsigned char raw[40];
	char b64_31[64], b64_33[64], hex63[80], hex65[80], hexg[80], spaced[80];
	const char *bad[10];
	struct sl_keyring *kr;
	struct sl_err err;
	size_t i, n = 0;

	memset(raw, 0xa5, sizeof(raw));
	EVP_EncodeBlock((unsigned char *)b64_31, raw, 31);
	EVP_EncodeBlock((unsigned char *)b64_33, raw, 33);
	snprintf(hex63, sizeof(hex63), "%.63s", T_MASTER_KEY);
	snprintf(hex65, sizeof(hex65), "%sa", T_MASTER_KEY);
	snprintf(hexg, sizeof(hexg), "g%s", T_MASTER_KEY + 1);
	snprintf(spaced, sizeof(spaced), "%.32s %s", T_MASTER_KEY, T_MASTER_KEY + 32);
	bad[n++] = hex63;
	bad[n++] = hex65;
	bad[n++] = hexg;
	bad[n++] = spaced;
	bad[n++] = b64_31;
	bad[n++] = b64_33;
	bad[n++] = "not a key, just a password!";
	bad[n++] = "hunter2";
	bad[n++] = "";
	bad[n++] = "   \n";
	for (i = 0; i < n; i++) {
		kr = (struct sl_keyring *)1;
		ck_assert_int_eq(sl_keyring_new(&kr, bad[i], &err), SL_EINVAL);
		ck_assert_ptr_null(kr);
		ck_assert_int_eq(err.code, SL_EINVAL);
		ck_assert_msg(strstr(err.msg, "64 hex digits or the base64 of 32 bytes"), "%s", err.msg);
		if (strlen(bad[i]) > 3) {
			/* Neither the text nor a long piece of it is ever echoed. */
			char piece[9];

			snprintf(piece, sizeof(piece), "%.8s", bad[i]);
			ck_assert_msg(!strstr(err.msg, piece) && !strstr(err.detail, piece),
			              "input leaked: %s / %s", err.msg, err.detail);
		}
	}
	kr = (struct sl_keyring *)1;
	ck_assert_int_eq(sl_keyring_new(&kr, NULL, &err), SL_EINVAL);
	ck_assert_ptr_null(kr);
}
END_TEST

START_TEST(master_key_from_env)
{
	char path[] = "/tmp/sl-master-key-XXXXXX", fp[17];
	struct sl_keyring *kr = NULL;
	struct sl_err err;
	int fd;

	fingerprint_of(T_MASTER_KEY, fp);
	unsetenv("SLUICE_MASTER_KEY");
	unsetenv("SLUICE_MASTER_KEY_FILE");
	ck_assert_int_eq(sl_keyring_from_env(&kr, &err), SL_ENOTFOUND);
	ck_assert_ptr_null(kr);
	ck_assert_msg(strstr(err.msg, "SLUICE_MASTER_KEY") && strstr(err.msg, "SLUICE_MASTER_KEY_FILE"),
	              "%s", err.msg);
	setenv("SLUICE_MASTER_KEY", "", 1);
	ck_assert_int_eq(sl_keyring_from_env(&kr, &err), SL_ENOTFOUND);

	/* A key file readable by others is refused, and says how to fix it. */
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, T_MASTER_KEY "\n", 65), 65);
	close(fd);
	ck_assert_int_eq(chmod(path, 0644), 0);
	setenv("SLUICE_MASTER_KEY_FILE", path, 1);
	ck_assert_int_eq(sl_keyring_from_env(&kr, &err), SL_EINVAL);
	ck_assert_ptr_null(kr);
	ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, "group or others"), "%s", err.msg);
	ck_assert_msg(strstr(err.detail, "chmod 600"), "%s", err.detail);
	ck_assert_msg(!strstr(err.msg, T_MASTER_KEY) && !strstr(err.detail, T_MASTER_KEY), "leak");
	ck_assert_int_eq(chmod(path, 0640), 0);
	ck_assert_int_eq(sl_keyring_from_env(&kr, &err), SL_EINVAL);
	ck_assert_int_eq(chmod(path, 0600), 0);
	ck_assert_msg(sl_keyring_from_env(&kr, &err) == 0, "%s", err.msg);
	ck_assert_str_eq(sl_keyring_master_id(kr), fp);
	sl_keyring_free(kr);

	/* SLUICE_MASTER_KEY wins over the file; a bad one is named, never shown. */
	setenv("SLUICE_MASTER_KEY", OTHER_KEY, 1);
	ck_assert_int_eq(sl_keyring_from_env(&kr, &err), 0);
	ck_assert_str_ne(sl_keyring_master_id(kr), fp);
	sl_keyring_free(kr);
	setenv("SLUICE_MASTER_KEY", "correct horse battery staple", 1);
	ck_assert_int_eq(sl_keyring_from_env(&kr, &err), SL_EINVAL);
	ck_assert_msg(strstr(err.msg, "SLUICE_MASTER_KEY") && !strstr(err.msg, "horse") &&
	              !strstr(err.detail, "horse"), "%s / %s", err.msg, err.detail);
	unsetenv("SLUICE_MASTER_KEY");

	/* A file holding garbage; a file that is not there. */
	fd = open(path, O_WRONLY | O_TRUNC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "swordfish-swordfish\n", 20), 20);
	close(fd);
	ck_assert_int_eq(sl_keyring_from_env(&kr, &err), SL_EINVAL);
	ck_assert_msg(strstr(err.msg, path) && !strstr(err.msg, "swordfish") &&
	              !strstr(err.detail, "swordfish"), "%s / %s", err.msg, err.detail);
	unlink(path);
	ck_assert_int_eq(sl_keyring_from_env(&kr, &err), SL_EIO);
	ck_assert_msg(strstr(err.msg, path) != NULL, "%s", err.msg);
	ck_assert_ptr_null(kr);
	unsetenv("SLUICE_MASTER_KEY_FILE");
}
END_TEST

START_TEST(derive_is_keyed_and_separated)
{
	struct sl_keyring *a = keyring(T_MASTER_KEY), *b = keyring(OTHER_KEY);
	char v1[44], v2[44], v3[44], v4[44], v5[44], v6[44], want[64];
	unsigned char key[32], mac[32];
	unsigned int mac_len = 0;
	size_t i;

	sl_secret_derive(a, "pkce", "state-1", v1);
	sl_secret_derive(a, "pkce", "state-1", v2);
	ck_assert_str_eq(v1, v2);
	ck_assert_uint_eq(strlen(v1), 43);
	for (i = 0; v1[i]; i++)
		ck_assert_msg(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
		                     v1[i]) != NULL, "not base64url: %s", v1);
	sl_secret_derive(a, "other", "state-1", v3);
	sl_secret_derive(a, "pkce", "state-2", v4);
	sl_secret_derive(b, "pkce", "state-1", v5);
	ck_assert_str_ne(v1, v3);
	ck_assert_str_ne(v1, v4);
	ck_assert_str_ne(v1, v5);
	/* The zero byte between purpose and input keeps ("a","bc") apart from ("ab","c"). */
	sl_secret_derive(a, "a", "bc", v2);
	sl_secret_derive(a, "ab", "c", v6);
	ck_assert_str_ne(v2, v6);

	/* It is exactly HMAC-SHA256(master, purpose || 0 || input), base64url. */
	hex_to_bytes(T_MASTER_KEY, key, 32);
	ck_assert_ptr_nonnull(HMAC(EVP_sha256(), key, 32, (const unsigned char *)"pkce\0state-1", 12,
	                           mac, &mac_len));
	ck_assert_uint_eq(mac_len, 32);
	EVP_EncodeBlock((unsigned char *)want, mac, 32);
	for (i = 0; want[i]; i++)
		want[i] = want[i] == '+' ? '-' : want[i] == '/' ? '_' : want[i];
	want[43] = '\0';
	ck_assert_str_eq(v1, want);
	sl_keyring_free(a);
	sl_keyring_free(b);
}
END_TEST

START_TEST(bytea_round_trip_and_refusals)
{
	unsigned char bytes[] = { 0x00, 0x01, 0xab, 0xff, 0x10 };
	struct sl_buf b;
	struct sl_err err;
	char *p = sl_bytea_param(bytes, sizeof(bytes));

	ck_assert_str_eq(p, "\\x0001abff10");
	sl_buf_init(&b, 1024);
	ck_assert_int_eq(sl_bytea_parse(p, &b, &err), 0);
	ck_assert_uint_eq(b.len, sizeof(bytes));
	ck_assert_mem_eq(b.data, bytes, sizeof(bytes));
	ck_assert_int_eq(sl_bytea_parse("\\xABcd", &b, &err), 0);
	ck_assert_uint_eq(b.len, sizeof(bytes) + 2);
	ck_assert_int_eq((unsigned char)b.data[5], 0xab);
	ck_assert_int_eq(sl_bytea_parse("0001", &b, &err), SL_EINVAL);
	ck_assert_int_eq(sl_bytea_parse("\\x001", &b, &err), SL_EINVAL);
	ck_assert_int_eq(sl_bytea_parse("\\x0g", &b, &err), SL_EINVAL);
	free(p);
	p = sl_bytea_param(bytes, 0);
	ck_assert_str_eq(p, "\\x");
	free(p);
	sl_secret_wipe(&b);
	ck_assert_uint_eq(b.len, 0);
}
END_TEST

/* ---- sealing and opening -------------------------------------------------------- */

START_TEST(seal_and_open_round_trip)
{
	const char *aad = "connector:00000000-0000-0000-0000-00000000000a";
	const char *text = "{\"api_key\":\"tok-4f9a77e1-very-secret\"}";
	struct sl_keyring *kr = keyring(T_MASTER_KEY), *fresh;
	struct sl_db *s = session();
	struct sl_sealed a, b, e;
	struct sl_buf got;
	struct sl_err err;
	char fp[17];

	fingerprint_of(T_MASTER_KEY, fp);
	sl_buf_init(&got, 1 << 20);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.data_key"), 0);
	seal(kr, s, aad, text, &a);
	ck_assert_int_gt(a.key_id, 0);
	ck_assert_uint_eq(a.ct_len, strlen(text) + 16);
	ck_assert(!contains(a.ct, a.ct_len, "very-secret"));
	/* The first seal made the one data key, wrapped by this master key. */
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.data_key WHERE state = 'current'"
	                           " AND length(wrapped) = 60"), 1);
	ck_assert_int_eq(t_int(db, "SELECT id FROM sluice.data_key"), a.key_id);
	{
		char mk[32];

		t_text(db, "SELECT master_key_id FROM sluice.data_key", mk, sizeof(mk));
		ck_assert_str_eq(mk, fp);
	}

	ck_assert_int_eq(open_sealed(kr, s, &a, aad, &got, &err), 0);
	ck_assert_uint_eq(got.len, strlen(text));
	ck_assert_str_eq(got.data, text);
	sl_secret_wipe(&got);

	/* A fresh nonce every time: the same plaintext never seals the same way. */
	seal(kr, s, aad, text, &b);
	ck_assert_int_eq(b.key_id, a.key_id);
	ck_assert_int_ne(memcmp(a.nonce, b.nonce, 12), 0);
	ck_assert_int_ne(memcmp(a.ct, b.ct, a.ct_len), 0);

	/* Another process with the same master key fetches the data key and opens it. */
	fresh = keyring(T_MASTER_KEY);
	ck_assert_int_eq(open_sealed(fresh, s, &b, aad, &got, &err), 0);
	ck_assert_str_eq(got.data, text);
	sl_secret_wipe(&got);
	sl_keyring_free(fresh);

	/* The empty secret is a secret too. */
	seal(kr, s, aad, "", &e);
	ck_assert_uint_eq(e.ct_len, 16);
	ck_assert_int_eq(open_sealed(kr, s, &e, aad, &got, &err), 0);
	ck_assert_uint_eq(got.len, 0);

	sl_secret_wipe(&got);
	sl_sealed_release(&a);
	sl_sealed_release(&b);
	sl_sealed_release(&e);
	ck_assert_ptr_null(a.ct);
	sl_sealed_release(NULL);
	sl_db_free(s);
	sl_keyring_free(kr);
}
END_TEST

START_TEST(tampering_and_wrong_owner_are_refused)
{
	const char *aad = "connector:00000000-0000-0000-0000-00000000000b";
	const char *text = "refresh-token-d41d8cd98f00b204";
	struct sl_keyring *kr = keyring(T_MASTER_KEY);
	struct sl_db *s = session();
	struct sl_sealed v, bad;
	struct sl_buf got;
	struct sl_err err;
	size_t spots[3], i;

	sl_buf_init(&got, 1 << 20);
	seal(kr, s, aad, text, &v);
	spots[0] = 0;                 /* ciphertext */
	spots[1] = v.ct_len - 1;      /* tag */
	spots[2] = v.ct_len - 16;     /* first tag byte */
	for (i = 0; i < 3; i++) {
		bad = v;
		bad.ct = malloc(v.ct_len);
		memcpy(bad.ct, v.ct, v.ct_len);
		bad.ct[spots[i]] ^= 0x01;
		ck_assert_int_eq(open_sealed(kr, s, &bad, aad, &got, &err), SL_EINVAL);
		ck_assert_uint_eq(got.len, 0);
		ck_assert_ptr_null(strstr(err.msg, "refresh-token"));
		ck_assert_ptr_null(strstr(err.detail, "refresh-token"));
		free(bad.ct);
	}
	/* A changed nonce. */
	bad = v;
	bad.nonce[11] ^= 0x80;
	ck_assert_int_eq(open_sealed(kr, s, &bad, aad, &got, &err), SL_EINVAL);
	ck_assert_uint_eq(got.len, 0);
	/* Truncated: shorter than a tag, and one byte short. */
	bad = v;
	bad.ct_len = 15;
	ck_assert_int_eq(open_sealed(kr, s, &bad, aad, &got, &err), SL_EINVAL);
	bad.ct_len = v.ct_len - 1;
	ck_assert_int_eq(open_sealed(kr, s, &bad, aad, &got, &err), SL_EINVAL);
	/* Copied to another owner's row: the associated data differs. */
	ck_assert_int_eq(open_sealed(kr, s, &v, "connector:00000000-0000-0000-0000-00000000000c", &got,
	                             &err), SL_EINVAL);
	ck_assert_msg(strstr(err.msg, "does not decrypt") != NULL, "%s", err.msg);
	ck_assert_int_eq(open_sealed(kr, s, &v, "", &got, &err), SL_EINVAL);
	/* An unknown data key. */
	bad = v;
	bad.key_id = v.key_id + 1000;
	ck_assert_int_eq(open_sealed(kr, s, &bad, aad, &got, &err), SL_EINVAL);
	ck_assert_msg(strstr(err.msg, "does not exist") != NULL, "%s", err.msg);
	ck_assert_uint_eq(got.len, 0);
	/* The original still opens. */
	ck_assert_int_eq(open_sealed(kr, s, &v, aad, &got, &err), 0);
	ck_assert_str_eq(got.data, text);
	sl_secret_wipe(&got);
	sl_sealed_release(&v);
	sl_db_free(s);
	sl_keyring_free(kr);
}
END_TEST

START_TEST(another_master_key_is_named)
{
	const char *aad = "connector:00000000-0000-0000-0000-00000000000d";
	struct sl_keyring *kr = keyring(T_MASTER_KEY), *other = keyring(OTHER_KEY), *fresh;
	struct sl_db *s = session();
	struct sl_sealed v, w;
	struct sl_buf got;
	struct sl_err err;

	sl_buf_init(&got, 1 << 20);
	seal(kr, s, aad, "client-secret-1", &v);
	ck_assert_int_eq(open_sealed(other, s, &v, aad, &got, &err), SL_EAUTH);
	ck_assert_msg(strstr(err.msg, sl_keyring_master_id(kr)) &&
	              strstr(err.msg, sl_keyring_master_id(other)), "%s", err.msg);
	ck_assert_uint_eq(got.len, 0);
	/* Nor can it seal: the current data key is not its to use. */
	ck_assert_int_eq(sl_secret_seal(other, s, aad, "x", 1, &w, &err), SL_EAUTH);
	ck_assert_ptr_null(w.ct);
	ck_assert_msg(strstr(err.msg, sl_keyring_master_id(other)) != NULL, "%s", err.msg);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.data_key"), 1);

	/* Damaged wrapped bytes do not unwrap, and say so. */
	t_exec(db, "UPDATE sluice.data_key SET wrapped = set_byte(wrapped, 30,"
	           " get_byte(wrapped, 30) # 1)");
	fresh = keyring(T_MASTER_KEY);
	ck_assert_int_eq(open_sealed(fresh, s, &v, aad, &got, &err), SL_EINTERNAL);
	ck_assert_msg(strstr(err.msg, "does not unwrap") != NULL, "%s", err.msg);
	/* The keyring that made it still has it in memory. */
	ck_assert_int_eq(open_sealed(kr, s, &v, aad, &got, &err), 0);
	sl_secret_wipe(&got);
	sl_keyring_free(fresh);
	sl_sealed_release(&v);
	sl_db_free(s);
	sl_keyring_free(kr);
	sl_keyring_free(other);
}
END_TEST

/* ---- the first key, made by racing processes ------------------------------------- */

START_TEST(first_key_race_makes_one_key)
{
	enum { N = 6 };
	int ready[2], go[2], i, status;
	pid_t pids[N];
	char c;

	t_exec(db, "CREATE TABLE t_race (child int, key_id int)");
	ck_assert_int_eq(pipe(ready), 0);
	ck_assert_int_eq(pipe(go), 0);
	for (i = 0; i < N; i++) {
		pids[i] = fork();
		ck_assert_int_ge(pids[i], 0);
		if (pids[i] == 0) {
			struct sl_keyring *kr = NULL;
			struct sl_db *s = NULL;
			struct sl_sealed v = { 0 };
			struct sl_err err;
			char child[8], kid[16];
			int rc = 1;

			close(ready[0]);
			close(go[1]);
			if (sl_keyring_new(&kr, T_MASTER_KEY, &err) || sl_db_open(&s, url, "race", &err))
				_exit(2);
			/* Hold the seal's transaction open a moment, so the others really race it. */
			if (sl_db_exec(s, "BEGIN", 0, NULL, &err))
				_exit(3);
			if (write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 0)
				_exit(4);
			if (sl_secret_seal(kr, s, "connector:race", "x", 1, &v, &err) == 0 &&
			    sl_db_exec(s, "SELECT pg_sleep(0.2)", 0, NULL, &err) == 0 &&
			    sl_db_exec(s, "COMMIT", 0, NULL, &err) == 0) {
				snprintf(child, sizeof(child), "%d", i);
				snprintf(kid, sizeof(kid), "%d", v.key_id);
				rc = sl_db_exec(s, "INSERT INTO t_race VALUES ($1::int, $2::int)", 2,
				                (const char *const[]){ child, kid }, &err) ? 5 : 0;
			} else {
				fprintf(stderr, "child %d: %s\n", i, err.msg);
			}
			sl_sealed_release(&v);
			sl_db_free(s);
			sl_keyring_free(kr);
			_exit(rc);
		}
	}
	close(ready[1]);
	close(go[0]);
	for (i = 0; i < N; i++)
		ck_assert_int_eq(read(ready[0], &c, 1), 1);
	close(go[1]);   /* every child's read() returns 0 at once: go */
	for (i = 0; i < N; i++) {
		status = t_wait_exit(pids[i], 60000);
		ck_assert_msg(status == 0, "child %d exited with %d", i, status);
	}
	close(ready[0]);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM t_race"), N);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.data_key"), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.data_key WHERE state = 'current'"), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM t_race r JOIN sluice.data_key k"
	                           " ON k.id = r.key_id AND k.state = 'current'"), N);
}
END_TEST

/* ---- retirement -------------------------------------------------------------------- */

START_TEST(retired_key_cannot_be_opened_or_written)
{
	struct sl_keyring *kr = keyring(T_MASTER_KEY), *fresh;
	struct sl_db *s = session();
	struct sl_rotate_stats st = { 0 };
	struct sl_sealed kept, v;
	struct sl_buf got;
	struct sl_err err;
	char org[32], cid[64], aad[128];
	PGresult *r;

	sl_buf_init(&got, 1 << 20);
	snprintf(org, sizeof(org), "%lld", t_org(db, "retire"));
	r = t_query(db, "SELECT sluice.create_connector($1::bigint, 'ttd', 'x')", 1,
	            (const char *const[]){ org });
	snprintf(cid, sizeof(cid), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	snprintf(aad, sizeof(aad), "connector:%.36s", cid);
	seal(kr, s, aad, "{\"api_key\":\"old\"}", &v);
	r = write_credential(db, cid, &v, NULL);
	ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
	PQclear(r);
	seal(kr, s, aad, "kept-outside-the-database", &kept);

	ck_assert_msg(sl_keys_rotate(kr, s, 10, &st, &err) == 0, "%s (%s)", err.msg, err.detail);
	ck_assert_int_ne(st.new_key_id, kept.key_id);
	ck_assert_int_eq(st.reencrypted, 1);
	ck_assert_int_eq(st.retired, 1);
	ck_assert_int_eq(st.remaining, 0);
	{
		char q[256];

		snprintf(q, sizeof(q), "SELECT count(*) FROM sluice.data_key WHERE id = %d"
		         " AND state = 'retired' AND wrapped IS NULL AND retired_at IS NOT NULL",
		         kept.key_id);
		ck_assert_int_eq(t_int(db, q), 1);
	}
	/* Neither the rotating keyring (which dropped it) nor a new one can open it. */
	ck_assert_int_eq(open_sealed(kr, s, &kept, aad, &got, &err), SL_EINVAL);
	ck_assert_msg(strstr(err.msg, "retired") != NULL, "%s", err.msg);
	fresh = keyring(T_MASTER_KEY);
	ck_assert_int_eq(open_sealed(fresh, s, &kept, aad, &got, &err), SL_EINVAL);
	ck_assert_msg(strstr(err.msg, "retired") != NULL, "%s", err.msg);
	ck_assert_uint_eq(got.len, 0);

	/* Nothing can be written under a retired key any more (schema/0005_keys.sql). */
	r = write_credential(db, cid, &kept, NULL);
	ck_assert_int_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
	ck_assert_str_eq(sqlstate(r), "40001");
	PQclear(r);
	/* The row itself moved and still opens to the same secret. */
	r = t_query(db, "SELECT key_id, nonce, ciphertext, version FROM sluice.credential", 0, NULL);
	ck_assert_int_eq(strtol(PQgetvalue(r, 0, 0), NULL, 10), st.new_key_id);
	ck_assert_str_eq(PQgetvalue(r, 0, 3), "1");
	ck_assert_int_eq(open_columns(fresh, s, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1),
	                              PQgetvalue(r, 0, 2), aad, &got, &err), 0);
	ck_assert_str_eq(got.data, "{\"api_key\":\"old\"}");
	PQclear(r);
	sl_secret_wipe(&got);
	sl_keyring_free(fresh);
	sl_sealed_release(&kept);
	sl_sealed_release(&v);
	sl_db_free(s);
	sl_keyring_free(kr);
}
END_TEST

START_TEST(seal_follows_a_rotation_by_another_process)
{
	struct sl_keyring *a = keyring(T_MASTER_KEY), *b = keyring(T_MASTER_KEY);
	struct sl_db *s = session();
	struct sl_rotate_stats st = { 0 };
	struct sl_sealed v1, v2;
	struct sl_err err;

	seal(a, s, "connector:a", "one", &v1);
	ck_assert_msg(sl_keys_rotate(b, s, 100, &st, &err) == 0, "%s", err.msg);
	ck_assert_int_ne(st.new_key_id, v1.key_id);
	/* a still has the old key cached; its next seal uses the new one all the same. */
	seal(a, s, "connector:a", "two", &v2);
	ck_assert_int_eq(v2.key_id, st.new_key_id);
	sl_sealed_release(&v1);
	sl_sealed_release(&v2);
	sl_db_free(s);
	sl_keyring_free(a);
	sl_keyring_free(b);
}
END_TEST

/* Secrets left under several old keys (rotations cut short) all move, and every old key goes. */
START_TEST(rotation_retires_many_old_keys)
{
	enum { N = 7 };
	struct sl_keyring *kr = keyring(T_MASTER_KEY), *rot = keyring(T_MASTER_KEY);
	struct sl_db *s = session();
	struct sl_rotate_stats st = { 0 };
	struct sl_sealed v;
	struct sl_buf got;
	struct sl_err err;
	char org[32], cid[N][64], aad[128], q[256], text[64];
	PGresult *r;
	int i;

	sl_buf_init(&got, 1 << 20);
	snprintf(org, sizeof(org), "%lld", t_org(db, "many"));
	for (i = 0; i < N; i++) {
		r = t_query(db, "SELECT sluice.create_connector($1::bigint, 'ttd', 'x')", 1,
		            (const char *const[]){ org });
		snprintf(cid[i], sizeof(cid[i]), "%s", PQgetvalue(r, 0, 0));
		PQclear(r);
		snprintf(aad, sizeof(aad), "connector:%.36s", cid[i]);
		snprintf(text, sizeof(text), "secret number %d", i);
		seal(kr, s, aad, text, &v);
		r = write_credential(db, cid[i], &v, NULL);
		ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
		PQclear(r);
		sl_sealed_release(&v);
		/* Demote the key, so the next seal makes another one. */
		t_exec(db, "UPDATE sluice.data_key SET state = 'retiring' WHERE state = 'current'");
	}
	ck_assert_int_eq(t_int(db, "SELECT count(DISTINCT key_id) FROM sluice.credential"), N);
	/* A keyring that knows none of them rotates. */
	ck_assert_msg(sl_keys_rotate(rot, s, 3, &st, &err) == 0, "%s (%s)", err.msg, err.detail);
	ck_assert_int_eq(st.reencrypted, N);
	ck_assert_int_eq(st.retired, N + 1);   /* + the key made because none was current */
	snprintf(q, sizeof(q), "SELECT count(*) FROM sluice.credential WHERE key_id = %d",
	         st.new_key_id);
	ck_assert_int_eq(t_int(db, q), N);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.data_key WHERE state <> 'retired'"), 1);
	r = t_query(db, "SELECT connector_id, key_id, nonce, ciphertext FROM sluice.credential", 0,
	            NULL);
	for (i = 0; i < PQntuples(r); i++) {
		int j;

		for (j = 0; j < N && strcmp(cid[j], PQgetvalue(r, i, 0)); j++)
			;
		ck_assert_int_lt(j, N);
		snprintf(aad, sizeof(aad), "connector:%.36s", cid[j]);
		snprintf(text, sizeof(text), "secret number %d", j);
		sl_buf_reset(&got);
		ck_assert_int_eq(open_columns(rot, s, PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
		                              PQgetvalue(r, i, 3), aad, &got, &err), 0);
		ck_assert_str_eq(got.data, text);
	}
	PQclear(r);
	sl_secret_wipe(&got);
	sl_db_free(s);
	sl_keyring_free(kr);
	sl_keyring_free(rot);
}
END_TEST

/*
 * The race schema/0005_keys.sql closes: a writer commits a row under the old
 * key after the rotation's last round, while retire_unused_data_keys() runs.
 * The retire must wait for the writer and then keep the key.
 */
START_TEST(retire_waits_for_a_writer_of_the_old_key)
{
	struct sl_keyring *kr = keyring(T_MASTER_KEY);
	struct sl_db *s = session();
	struct sl_sealed v;
	char org[32], cid[64], aad[128], q[256], wrapped[130];
	PGconn *rot = t_connect(url);
	PGresult *r;
	long long old_key;
	int i;

	snprintf(org, sizeof(org), "%lld", t_org(db, "race"));
	r = t_query(db, "SELECT sluice.create_connector($1::bigint, 'ttd', 'x')", 1,
	            (const char *const[]){ org });
	snprintf(cid, sizeof(cid), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	snprintf(aad, sizeof(aad), "connector:%.36s", cid);
	seal(kr, s, aad, "{\"api_key\":\"sealed-before-the-rotation\"}", &v);
	old_key = v.key_id;

	/* The rotation has made its new key and moved every row (there is none). */
	snprintf(wrapped, sizeof(wrapped), "\\x");
	for (i = 0; i < 60; i++)
		snprintf(wrapped + 2 + 2 * i, sizeof(wrapped) - 2 - 2 * i, "%02x", i);
	PQclear(t_query(rot, "SELECT sluice.add_data_key('someone', $1::bytea)", 1,
	                (const char *const[]){ wrapped }));
	/* The writer writes under the (now retiring) key it read as current... */
	t_exec(db, "BEGIN");
	r = write_credential(db, cid, &v, NULL);
	ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQerrorMessage(db));
	PQclear(r);
	/* ...and before it commits the rotation retires what it thinks is unused. */
	ck_assert_int_eq(PQsendQuery(rot, "SELECT sluice.retire_unused_data_keys()"), 1);
	snprintf(q, sizeof(q), "SELECT wait_event_type = 'Lock' FROM pg_stat_activity"
	         " WHERE pid = %d", PQbackendPID(rot));
	ck_assert_msg(t_wait_until(db, q, 30000), "retire_unused_data_keys() did not wait");
	t_exec(db, "COMMIT");
	r = PQgetResult(rot);
	ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
	ck_assert_str_eq(PQgetvalue(r, 0, 0), "0");
	PQclear(r);
	ck_assert_ptr_null(PQgetResult(rot));
	snprintf(q, sizeof(q), "SELECT count(*) FROM sluice.data_key WHERE id = %lld"
	         " AND state = 'retiring' AND wrapped IS NOT NULL", old_key);
	ck_assert_int_eq(t_int(db, q), 1);
	snprintf(q, sizeof(q), "SELECT count(*) FROM sluice.credential WHERE key_id = %lld",
	         old_key);
	ck_assert_int_eq(t_int(db, q), 1);
	PQfinish(rot);
	sl_sealed_release(&v);
	sl_db_free(s);
	sl_keyring_free(kr);
}
END_TEST

/* ---- rotation under load ------------------------------------------------------------- */

enum { N_CONNECTORS = 200, N_CHILDREN = 4, N_APPS = 5 };
static const char *app_types[N_APPS] = { "dv360", "meta", "google_ads", "sheets", "jira" };

static volatile sig_atomic_t stop_now;

static void
on_stop(int sig)
{
	(void)sig;
	stop_now = 1;
}

/* The plaintext connector `cid` holds at `version`: checkable by anyone. */
static void
expected_prefix(char *buf, size_t size, const char *cid, long long version)
{
	snprintf(buf, size, "{\"cid\":\"%.36s\",\"v\":%lld,", cid, version);
}

struct load_stats {
	long writes, conflicts, stale, wrong, failures;
};

/*
 * A worker-like child: read a random credential, check it holds what its
 * connector and version say, seal a new value, write it back with the
 * version it read.  Until SIGUSR1.
 */
static int
load_child(int me, char cids[][40], int n, struct load_stats *ls)
{
	struct sl_keyring *kr = NULL;
	struct sl_db *s = NULL;
	struct sl_err err;
	struct sl_buf got, nonce, ct;
	unsigned int seed = (unsigned int)(me * 7919 + 17);
	long iter = 0;

	if (sl_keyring_from_env(&kr, &err) || sl_db_open(&s, url, "load", &err)) {
		fprintf(stderr, "child %d: %s\n", me, err.msg);
		return 2;
	}
	sl_buf_init(&got, 1 << 20);
	sl_buf_init(&nonce, 64);
	sl_buf_init(&ct, 1 << 20);
	while (!stop_now) {
		const char *cid = cids[rand_r(&seed) % (unsigned)n];
		char aad[64], want[128], next[256], ver[32], kid[16];
		char *pn = NULL, *pc = NULL;
		struct sl_sealed v = { 0 };
		PGresult *res = NULL;
		long long version;
		int rc;

		iter++;
		snprintf(aad, sizeof(aad), "connector:%.36s", cid);
		rc = sl_db_query(s, &res, "SELECT key_id, nonce, ciphertext, version"
		                 " FROM sluice.credential WHERE connector_id = $1::uuid", 1,
		                 (const char *const[]){ cid }, &err);
		if (rc || PQntuples(res) != 1) {
			fprintf(stderr, "child %d: read: %s\n", me, rc ? err.msg : "no row");
			ls->failures++;
			PQclear(res);
			continue;
		}
		version = strtoll(sl_pg_get(res, 0, "version"), NULL, 10);
		sl_buf_reset(&nonce);
		sl_buf_reset(&ct);
		sl_buf_reset(&got);
		if (sl_bytea_parse(sl_pg_get(res, 0, "nonce"), &nonce, &err) ||
		    sl_bytea_parse(sl_pg_get(res, 0, "ciphertext"), &ct, &err) || nonce.len != 12) {
			ls->failures++;
			PQclear(res);
			continue;
		}
		rc = sl_secret_open(kr, s, (int)strtol(sl_pg_get(res, 0, "key_id"), NULL, 10),
		                    (const unsigned char *)nonce.data, (const unsigned char *)ct.data,
		                    ct.len, aad, &got, &err);
		PQclear(res);
		if (rc) {
			/* A row read just before the rotation moved it names a retired key:
			 * read it again, as the error's retry class says. */
			if (err.retry == SL_RETRY_BACKOFF && strstr(err.msg, "retired")) {
				ls->stale++;
			} else {
				fprintf(stderr, "child %d: open %s: %s (%s)\n", me, cid, err.msg, err.detail);
				ls->failures++;
			}
			continue;
		}
		expected_prefix(want, sizeof(want), cid, version);
		if (strncmp(got.data, want, strlen(want))) {
			fprintf(stderr, "child %d: %s at version %lld holds a wrong value\n", me, cid,
			        version);
			ls->wrong++;
			continue;
		}
		expected_prefix(next, sizeof(next), cid, version + 1);
		snprintf(next + strlen(next), sizeof(next) - strlen(next),
		         "\"token\":\"child-%d-iteration-%ld\"}", me, iter);
		rc = sl_secret_seal(kr, s, aad, next, strlen(next), &v, &err);
		if (rc) {
			fprintf(stderr, "child %d: seal: %s\n", me, err.msg);
			ls->failures++;
			continue;
		}
		pn = sl_bytea_param(v.nonce, 12);
		pc = sl_bytea_param(v.ct, v.ct_len);
		snprintf(ver, sizeof(ver), "%lld", version);
		snprintf(kid, sizeof(kid), "%d", v.key_id);
		rc = sl_db_exec(s, "SELECT sluice.write_credential($1::uuid, $2::integer, $3::bytea,"
		                " $4::bytea, NULL, $5::bigint)", 5,
		                (const char *const[]){ cid, kid, pn, pc, ver }, &err);
		if (rc == 0)
			ls->writes++;
		else if (!strcmp(err.sqlstate, "40001"))
			ls->conflicts++;   /* another child wrote it first: read again */
		else {
			fprintf(stderr, "child %d: write: %s\n", me, err.msg);
			ls->failures++;
		}
		free(pn);
		free(pc);
		sl_sealed_release(&v);
	}
	sl_secret_wipe(&got);
	sl_buf_release(&nonce);
	sl_buf_release(&ct);
	{
		char vals[6][24];

		snprintf(vals[0], 24, "%d", me);
		snprintf(vals[1], 24, "%ld", ls->writes);
		snprintf(vals[2], 24, "%ld", ls->conflicts);
		snprintf(vals[3], 24, "%ld", ls->stale);
		snprintf(vals[4], 24, "%ld", ls->wrong);
		snprintf(vals[5], 24, "%ld", ls->failures);
		if (sl_db_exec(s, "INSERT INTO t_load VALUES ($1::int, $2::int, $3::int, $4::int,"
		               " $5::int, $6::int)", 6,
		               (const char *const[]){ vals[0], vals[1], vals[2], vals[3], vals[4],
		                                      vals[5] }, &err))
			ls->failures++;
	}
	sl_db_free(s);
	sl_keyring_free(kr);
	return ls->wrong || ls->failures ? 1 : 0;
}

START_TEST(rotation_under_load)
{
	static char cids[N_CONNECTORS][40];
	struct sl_keyring *kr = keyring(T_MASTER_KEY);
	struct sl_db *s = session();
	struct sl_buf got;
	struct sl_err err;
	pid_t pids[N_CHILDREN];
	char org[32], q[512], text[256], aad[128];
	long long before, during, old_key, new_key;
	PGresult *r;
	int i, status;

	sl_buf_init(&got, 1 << 20);
	snprintf(org, sizeof(org), "%lld", t_org(db, "rotation"));
	r = t_query(db, "SELECT sluice.create_connector($1::bigint, 'ttd', 'x')"
	            " FROM generate_series(1, 200)", 1, (const char *const[]){ org });
	ck_assert_int_eq(PQntuples(r), N_CONNECTORS);
	for (i = 0; i < N_CONNECTORS; i++)
		snprintf(cids[i], sizeof(cids[i]), "%s", PQgetvalue(r, i, 0));
	PQclear(r);
	for (i = 0; i < N_CONNECTORS; i++) {
		struct sl_sealed v;
		PGresult *w;

		snprintf(aad, sizeof(aad), "connector:%.36s", cids[i]);
		expected_prefix(text, sizeof(text), cids[i], 1);
		snprintf(text + strlen(text), sizeof(text) - strlen(text), "\"token\":\"initial\"}");
		seal(kr, s, aad, text, &v);
		w = write_credential(db, cids[i], &v, NULL);
		ck_assert_msg(PQresultStatus(w) == PGRES_TUPLES_OK, "%s", PQerrorMessage(db));
		ck_assert_str_eq(PQgetvalue(w, 0, 0), "1");
		PQclear(w);
		sl_sealed_release(&v);
	}
	/* OAuth client secrets move too. */
	for (i = 0; i < N_APPS; i++) {
		struct sl_sealed v;
		char kid[16], *pn, *pc;

		snprintf(aad, sizeof(aad), "oauth_client:%s:%s", org, app_types[i]);
		snprintf(text, sizeof(text), "app-secret-%s-%s", org, app_types[i]);
		seal(kr, s, aad, text, &v);
		snprintf(kid, sizeof(kid), "%d", v.key_id);
		pn = sl_bytea_param(v.nonce, 12);
		pc = sl_bytea_param(v.ct, v.ct_len);
		PQclear(t_query(db, "INSERT INTO sluice.oauth_client (org_id, type, client_id, key_id,"
		                " nonce, ciphertext) VALUES ($1::bigint, $2, 'client', $3::integer,"
		                " $4::bytea, $5::bytea)", 5,
		                (const char *const[]){ org, app_types[i], kid, pn, pc }));
		free(pn);
		free(pc);
		sl_sealed_release(&v);
	}
	old_key = t_int(db, "SELECT id FROM sluice.data_key WHERE state = 'current'");
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.data_key"), 1);
	t_exec(db, "CREATE TABLE t_load (child int, writes int, conflicts int, stale int,"
	           " wrong int, failures int)");

	for (i = 0; i < N_CHILDREN; i++) {
		pids[i] = fork();
		ck_assert_int_ge(pids[i], 0);
		if (pids[i] == 0) {
			struct sigaction sa = { .sa_handler = on_stop, .sa_flags = SA_RESTART };
			struct load_stats ls = { 0 };

			sigemptyset(&sa.sa_mask);
			sigaction(SIGUSR1, &sa, NULL);
			_exit(load_child(i, cids, N_CONNECTORS, &ls));
		}
	}
	/* Children are writing (each write adds one to a version)... */
	ck_assert_msg(t_wait_until(db, "SELECT sum(version) >= 200 + 100 FROM sluice.credential",
	                           60000), "the children do not write");
	before = t_int(db, "SELECT sum(version) FROM sluice.credential");

	/* ...while the operator rotates. */
	ck_assert_msg(ctl("keys rotate --batch 7") == 0, "%s", out);
	has("done: data key");
	{
		/* The children rewrite rows under the new key too, so the rotation moves
		 * fewer than all of them: at least the OAuth apps, which no child touches. */
		const char *done = strstr(out, "done: data key");
		long long moved = 0;
		int key = 0;

		ck_assert_int_eq(sscanf(done, "done: data key %d is current; %lld secret(s)", &key,
		                        &moved), 2);
		ck_assert_int_ge(moved, N_APPS);
		ck_assert_int_le(moved, N_CONNECTORS + N_APPS + 50);
	}
	has("1 old data key(s) retired");
	has("round 1:");
	during = t_int(db, "SELECT sum(version) FROM sluice.credential");
	ck_assert_msg(during > before, "no child wrote during the rotation (%lld, %lld)", before,
	              during);
	new_key = t_int(db, "SELECT id FROM sluice.data_key WHERE state = 'current'");
	ck_assert_int_ne(new_key, old_key);

	/* Let them go on under the new key a little, then stop them. */
	snprintf(q, sizeof(q), "SELECT sum(version) >= %lld FROM sluice.credential", during + 50);
	ck_assert(t_wait_until(db, q, 60000));
	for (i = 0; i < N_CHILDREN; i++)
		kill(pids[i], SIGUSR1);
	for (i = 0; i < N_CHILDREN; i++) {
		status = t_wait_exit(pids[i], 60000);
		ck_assert_msg(status == 0, "load child %d exited with %d", i, status);
	}
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM t_load"), N_CHILDREN);
	t_text(db, "SELECT format('%s writes, %s lost races, %s stale reads', sum(writes),"
	           " sum(conflicts), sum(stale)) FROM t_load", text, sizeof(text));
	fprintf(stderr, "rotation_under_load: children: %s\n", text);
	ck_assert_int_eq(t_int(db, "SELECT sum(wrong) FROM t_load"), 0);
	ck_assert_int_eq(t_int(db, "SELECT sum(failures) FROM t_load"), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM t_load WHERE writes = 0"), 0);
	ck_assert_int_eq(t_int(db, "SELECT sum(writes) FROM t_load"),
	                 t_int(db, "SELECT sum(version) - 200 FROM sluice.credential"));

	/* Every secret is under the new key; the old key is destroyed. */
	snprintf(q, sizeof(q), "SELECT count(*) FROM sluice.credential WHERE key_id = %lld",
	         new_key);
	ck_assert_int_eq(t_int(db, q), N_CONNECTORS);
	snprintf(q, sizeof(q), "SELECT count(*) FROM sluice.oauth_client WHERE key_id = %lld",
	         new_key);
	ck_assert_int_eq(t_int(db, q), N_APPS);
	snprintf(q, sizeof(q), "SELECT count(*) FROM sluice.data_key WHERE id = %lld"
	         " AND state = 'retired' AND wrapped IS NULL", old_key);
	ck_assert_int_eq(t_int(db, q), 1);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.data_key"), 2);
	ck_assert_int_eq(t_int(db, "SELECT secrets FROM sluice.data_keys WHERE state = 'current'"),
	                 N_CONNECTORS + N_APPS);

	/* Every secret opens (with a keyring that never saw the old key) to what it should. */
	sl_keyring_free(kr);
	kr = keyring(T_MASTER_KEY);
	r = t_query(db, "SELECT connector_id, key_id, nonce, ciphertext, version"
	            " FROM sluice.credential", 0, NULL);
	ck_assert_int_eq(PQntuples(r), N_CONNECTORS);
	for (i = 0; i < PQntuples(r); i++) {
		const char *cid = PQgetvalue(r, i, 0);

		snprintf(aad, sizeof(aad), "connector:%.36s", cid);
		sl_buf_reset(&got);
		ck_assert_msg(open_columns(kr, s, PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
		                           PQgetvalue(r, i, 3), aad, &got, &err) == 0,
		              "%s: %s", cid, err.msg);
		expected_prefix(text, sizeof(text), cid, strtoll(PQgetvalue(r, i, 4), NULL, 10));
		ck_assert_msg(strncmp(got.data, text, strlen(text)) == 0, "%s holds %.60s", cid,
		              got.data);
	}
	PQclear(r);
	r = t_query(db, "SELECT org_id, type, key_id, nonce, ciphertext FROM sluice.oauth_client",
	            0, NULL);
	ck_assert_int_eq(PQntuples(r), N_APPS);
	for (i = 0; i < PQntuples(r); i++) {
		char want[128];

		snprintf(aad, sizeof(aad), "oauth_client:%s:%s", PQgetvalue(r, i, 0),
		         PQgetvalue(r, i, 1));
		snprintf(want, sizeof(want), "app-secret-%s-%s", PQgetvalue(r, i, 0),
		         PQgetvalue(r, i, 1));
		sl_buf_reset(&got);
		ck_assert_int_eq(open_columns(kr, s, PQgetvalue(r, i, 2), PQgetvalue(r, i, 3),
		                              PQgetvalue(r, i, 4), aad, &got, &err), 0);
		ck_assert_str_eq(got.data, want);
	}
	PQclear(r);
	/* No ciphertext holds its plaintext's bytes. */
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.credential WHERE"
	                           " position(convert_to(connector_id::text, 'UTF8') IN ciphertext) > 0"
	                           " OR position(convert_to('\"cid\"', 'UTF8') IN ciphertext) > 0"
	                           " OR position(convert_to('token', 'UTF8') IN ciphertext) > 0"), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.oauth_client WHERE"
	                           " position(convert_to('app-secret', 'UTF8') IN ciphertext) > 0"), 0);
	sl_secret_wipe(&got);
	sl_db_free(s);
	sl_keyring_free(kr);
}
END_TEST

/* ---- sluicectl ----------------------------------------------------------------------------- */

START_TEST(sluicectl_keys_status_and_refusals)
{
	struct sl_keyring *kr = keyring(T_MASTER_KEY);
	struct sl_db *s = session();
	struct sl_sealed v;
	char fp[17], other_fp[17], cmd[1024];

	fingerprint_of(T_MASTER_KEY, fp);
	fingerprint_of(OTHER_KEY, other_fp);
	seal(kr, s, "connector:x", "y", &v);
	sl_sealed_release(&v);

	ck_assert_int_eq(ctl("keys status"), 0);
	has(fp);
	has("current");
	has("this master key: ");

	/* No master key: a clear error, nothing done. */
	snprintf(cmd, sizeof(cmd), "env -u SLUICE_MASTER_KEY -u SLUICE_MASTER_KEY_FILE %s"
	         " --database '%s' keys rotate", t_ctl_bin, url);
	ck_assert_int_eq(t_sh(cmd, out, sizeof(out)), 1);
	has("no master key: set SLUICE_MASTER_KEY or SLUICE_MASTER_KEY_FILE");
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.data_key"), 1);

	/* Another master key: status says so (exit 1); rotation refuses before any change. */
	snprintf(cmd, sizeof(cmd), "SLUICE_MASTER_KEY=%s %s --database '%s' keys status", OTHER_KEY,
	         t_ctl_bin, url);
	ck_assert_int_eq(t_sh(cmd, out, sizeof(out)), 1);
	has(other_fp);
	has("wrapped by another master key");
	ck_assert_ptr_null(strstr(out, OTHER_KEY));
	snprintf(cmd, sizeof(cmd), "SLUICE_MASTER_KEY=%s %s --database '%s' keys rotate", OTHER_KEY,
	         t_ctl_bin, url);
	ck_assert_int_eq(t_sh(cmd, out, sizeof(out)), 1);
	has(fp);
	has(other_fp);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.data_key"), 1);

	/* Usage errors. */
	ck_assert_int_eq(ctl("keys rotate --batch 0"), 2);
	has("--batch takes 1 to 100000");
	ck_assert_int_eq(ctl("keys spin"), 2);
	ck_assert_int_eq(ctl("keys --help"), 0);
	has("usage: sluicectl keys rotate [--batch N] | keys status");
	ck_assert_int_eq(ctl("--help"), 0);
	has("keys");
	has("oauth-app");
	has("redirect-uri");
	has("SLUICE_MASTER_KEY");

	/* A second rotation while one holds the lock is refused. */
	t_exec(db, "SELECT pg_advisory_lock(sluice.rotation_lock_key())");
	ck_assert_int_eq(ctl("keys rotate"), 3);
	has("another key rotation is running");
	t_exec(db, "SELECT pg_advisory_unlock(sluice.rotation_lock_key())");
	ck_assert_int_eq(ctl("keys rotate"), 0);
	has("done: data key");
	has("0 secret(s) re-encrypted");
	has("1 old data key(s) retired");
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.data_key WHERE state = 'retired'"), 1);
	sl_db_free(s);
	sl_keyring_free(kr);
}
END_TEST

START_TEST(sluicectl_oauth_app_and_redirect_uri)
{
	struct sl_keyring *kr = keyring(T_MASTER_KEY);
	struct sl_db *s = session();
	struct sl_buf got;
	struct sl_err err;
	char org[32], cmd[1024], aad[128];
	PGresult *r;

	sl_buf_init(&got, 1 << 20);
	snprintf(org, sizeof(org), "%lld", t_org(db, "apps"));
	snprintf(cmd, sizeof(cmd), "printf 'app-secret-Zq81x\\n' | %s --database '%s'"
	         " oauth-app set %s dv360 my-client-id", t_ctl_bin, url, org);
	ck_assert_msg(t_sh(cmd, out, sizeof(out)) == 0, "%s", out);
	has("my-client-id");
	ck_assert_ptr_null(strstr(out, "app-secret-Zq81x"));
	r = t_query(db, "SELECT client_id, key_id, nonce, ciphertext FROM sluice.oauth_client"
	            " WHERE org_id = $1::bigint AND type = 'dv360'", 1, (const char *const[]){ org });
	ck_assert_int_eq(PQntuples(r), 1);
	ck_assert_str_eq(PQgetvalue(r, 0, 0), "my-client-id");
	snprintf(aad, sizeof(aad), "oauth_client:%s:dv360", org);
	ck_assert_msg(open_columns(kr, s, PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2),
	                           PQgetvalue(r, 0, 3), aad, &got, &err) == 0, "%s", err.msg);
	ck_assert_str_eq(got.data, "app-secret-Zq81x");
	PQclear(r);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.oauth_client WHERE"
	                           " position(convert_to('Zq81x', 'UTF8') IN ciphertext) > 0"), 0);
	ck_assert_int_eq(ctl("oauth-app list %s", org), 0);
	has("my-client-id");

	/* The secret never comes from argv: nothing on stdin is a usage error. */
	snprintf(cmd, sizeof(cmd), "%s --database '%s' oauth-app set %s meta cid </dev/null",
	         t_ctl_bin, url, org);
	ck_assert_int_eq(t_sh(cmd, out, sizeof(out)), 2);
	has("stdin");
	ck_assert_int_eq(ctl("oauth-app set %s meta cid extra-arg </dev/null", org), 2);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.oauth_client WHERE type = 'meta'"),
	                 0);

	ck_assert_int_eq(ctl("redirect-uri allow %s https://app.example.com/oauth/cb", org), 0);
	ck_assert_int_eq(ctl("redirect-uri allow %s https://app.example.com/oauth/cb", org), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.oauth_redirect_uri"
	                           " WHERE uri = 'https://app.example.com/oauth/cb'"), 1);
	ck_assert_int_eq(ctl("redirect-uri list %s", org), 0);
	has("https://app.example.com/oauth/cb");
	ck_assert_int_eq(ctl("redirect-uri allow %s 'javascript:alert(1)'", org), 1);
	ck_assert_int_eq(ctl("redirect-uri allow nope https://x.example"), 2);
	sl_secret_wipe(&got);
	sl_db_free(s);
	sl_keyring_free(kr);
}
END_TEST

/* Writes a key file (mode 0600) and returns its path in path[]. */
static void
key_file(char *path, const char *key)
{
	int fd;

	snprintf(path, 64, "/tmp/sl-new-key-XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, key, strlen(key)), (ssize_t)strlen(key));
	ck_assert_int_eq(write(fd, "\n", 1), 1);
	close(fd);
	ck_assert_int_eq(chmod(path, 0600), 0);
}

START_TEST(sluicectl_keys_rewrap_moves_to_a_new_master_key)
{
	const char *third = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
	struct sl_keyring *kr = keyring(T_MASTER_KEY), *fresh;
	struct sl_db *s = session();
	struct sl_sealed v, w;
	struct sl_buf got;
	struct sl_err err;
	char fp[17], other_fp[17], path[64], path3[64], cmd[1024], mk[32];

	sl_buf_init(&got, 1 << 20);
	fingerprint_of(T_MASTER_KEY, fp);
	fingerprint_of(OTHER_KEY, other_fp);
	seal(kr, s, "connector:r", "sealed-under-the-old-master", &v);
	key_file(path, OTHER_KEY);
	key_file(path3, third);

	ck_assert_msg(ctl("keys rewrap --new-key-file %s", path) == 0, "%s", out);
	has("1 data key(s) rewrapped");
	has(other_fp);
	has(fp);
	ck_assert_ptr_null(strstr(out, OTHER_KEY));
	t_text(db, "SELECT string_agg(DISTINCT master_key_id, ',') FROM sluice.data_key", mk,
	       sizeof(mk));
	ck_assert_str_eq(mk, other_fp);

	/* The new master key opens what the old one sealed; the old one opens nothing. */
	fresh = keyring(OTHER_KEY);
	ck_assert_int_eq(open_sealed(fresh, s, &v, "connector:r", &got, &err), 0);
	ck_assert_str_eq(got.data, "sealed-under-the-old-master");
	sl_secret_wipe(&got);
	seal(fresh, s, "connector:r", "new", &w);
	ck_assert_int_eq(w.key_id, v.key_id);   /* the same data key, now wrapped anew */
	sl_sealed_release(&w);
	sl_keyring_free(fresh);
	fresh = keyring(T_MASTER_KEY);
	ck_assert_int_eq(open_sealed(fresh, s, &v, "connector:r", &got, &err), SL_EAUTH);
	sl_keyring_free(fresh);
	/* A process started before keeps its cached key until it is restarted. */
	ck_assert_int_eq(open_sealed(kr, s, &v, "connector:r", &got, &err), 0);
	sl_secret_wipe(&got);

	/* Again: nothing left to do.  From a key that wraps nothing: refused, no change. */
	ck_assert_msg(ctl("keys rewrap --new-key-file %s", path) == 0, "%s", out);
	has("0 data key(s) rewrapped");
	ck_assert_int_eq(ctl("keys rewrap --new-key-file %s", path3), 1);
	has("wrapped by master key");
	t_text(db, "SELECT string_agg(DISTINCT master_key_id, ',') FROM sluice.data_key", mk,
	       sizeof(mk));
	ck_assert_str_eq(mk, other_fp);
	/* The same key as new, a key file others can read, no file: refused. */
	snprintf(cmd, sizeof(cmd), "SLUICE_MASTER_KEY=%s %s --database '%s' keys rewrap"
	         " --new-key-file %s", OTHER_KEY, t_ctl_bin, url, path);
	ck_assert_int_eq(t_sh(cmd, out, sizeof(out)), 1);
	has("is the one in use");
	ck_assert_int_eq(chmod(path3, 0644), 0);
	ck_assert_int_eq(ctl("keys rewrap --new-key-file %s", path3), 1);
	has("group or others");
	ck_assert_int_eq(ctl("keys rewrap"), 2);

	/* Life goes on under the new master key. */
	snprintf(cmd, sizeof(cmd), "SLUICE_MASTER_KEY_FILE=%s SLUICE_MASTER_KEY= %s --database '%s'"
	         " keys rotate", path, t_ctl_bin, url);
	ck_assert_msg(t_sh(cmd, out, sizeof(out)) == 0, "%s", out);
	has("1 old data key(s) retired");
	unlink(path);
	unlink(path3);
	sl_sealed_release(&v);
	sl_db_free(s);
	sl_keyring_free(kr);
}
END_TEST

START_TEST(lost_master_key_recovery)
{
	struct sl_keyring *lost = keyring(T_MASTER_KEY), *fresh = keyring(OTHER_KEY);
	struct sl_db *s = session();
	struct sl_sealed v, w;
	struct sl_err err;
	char org[32], cid[2][64], aad[128], q[256], fp[17];
	PGresult *r;
	int i;

	fingerprint_of(OTHER_KEY, fp);
	snprintf(org, sizeof(org), "%lld", t_org(db, "lost"));
	for (i = 0; i < 2; i++) {
		r = t_query(db, "SELECT sluice.create_connector($1::bigint, 'ttd', 'x')", 1,
		            (const char *const[]){ org });
		snprintf(cid[i], sizeof(cid[i]), "%s", PQgetvalue(r, 0, 0));
		PQclear(r);
		snprintf(aad, sizeof(aad), "connector:%.36s", cid[i]);
		seal(lost, s, aad, "{\"api_key\":\"k\"}", &v);
		PQclear(write_credential(db, cid[i], &v, NULL));
		sl_sealed_release(&v);
		snprintf(q, sizeof(q), "SELECT sluice.set_connector_status('%s', 'connected')", cid[i]);
		t_exec(db, q);
	}
	snprintf(q, sizeof(q), "SELECT sluice.set_connector_enabled('%s', false)", cid[1]);
	t_exec(db, q);
	/* The master key is gone: another one can neither open nor seal. */
	snprintf(aad, sizeof(aad), "connector:%.36s", cid[0]);
	ck_assert_int_eq(sl_secret_seal(fresh, s, aad, "x", 1, &w, &err), SL_EAUTH);

	ck_assert_int_eq(t_int(db, "SELECT sluice.discard_unreadable_secrets()"), 2);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.credential"), 0);
	ck_assert_int_eq(t_int(db, "SELECT count(*) FROM sluice.data_key WHERE state <> 'retired'"
	                           " OR wrapped IS NOT NULL"), 0);
	snprintf(q, sizeof(q), "SELECT count(*) FROM sluice.connector WHERE id = '%s'"
	         " AND status = 'reauth_required'", cid[0]);
	ck_assert_int_eq(t_int(db, q), 1);
	snprintf(q, sizeof(q), "SELECT count(*) FROM sluice.connector WHERE id = '%s'"
	         " AND status = 'disabled' AND status_before_disable = 'reauth_required'", cid[1]);
	ck_assert_int_eq(t_int(db, q), 1);
	/* Life starts again under the new master key. */
	seal(fresh, s, aad, "{\"api_key\":\"new\"}", &w);
	r = write_credential(db, cid[0], &w, NULL);
	ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
	PQclear(r);
	snprintf(q, sizeof(q), "SELECT count(*) FROM sluice.data_key WHERE state = 'current'"
	         " AND master_key_id = '%s' AND id = %d", fp, w.key_id);
	ck_assert_int_eq(t_int(db, q), 1);
	sl_sealed_release(&w);
	sl_db_free(s);
	sl_keyring_free(lost);
	sl_keyring_free(fresh);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("secret");
	TCase *keys = tcase_create("keys");
	TCase *tc = tcase_create("db");

	tcase_add_checked_fixture(keys, env_setup, NULL);
	tcase_add_test(keys, master_key_forms);
	tcase_add_test(keys, master_key_refusals);
	tcase_add_test(keys, master_key_from_env);
	tcase_add_test(keys, derive_is_keyed_and_separated);
	tcase_add_test(keys, bytea_round_trip_and_refusals);
	suite_add_tcase(s, keys);

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, seal_and_open_round_trip);
	tcase_add_test(tc, tampering_and_wrong_owner_are_refused);
	tcase_add_test(tc, another_master_key_is_named);
	tcase_add_test(tc, first_key_race_makes_one_key);
	tcase_add_test(tc, retired_key_cannot_be_opened_or_written);
	tcase_add_test(tc, seal_follows_a_rotation_by_another_process);
	tcase_add_test(tc, retire_waits_for_a_writer_of_the_old_key);
	tcase_add_test(tc, rotation_retires_many_old_keys);
	tcase_add_test(tc, rotation_under_load);
	tcase_add_test(tc, sluicectl_keys_status_and_refusals);
	tcase_add_test(tc, sluicectl_oauth_app_and_redirect_uri);
	tcase_add_test(tc, sluicectl_keys_rewrap_moves_to_a_new_master_key);
	tcase_add_test(tc, lost_master_key_recovery);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	sl_log_level = SL_LOG_WARN;   /* "data key ready" and rotation lines are noise here */
	return t_run(make_suite());
}
