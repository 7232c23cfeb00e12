/* test_unit.c — unit tests for the pure code of common/: buffers, parsing, JSON, config, logs. */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/conf.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/str.h"
#include "tests/harness.h"

/* git's assert_sane_strbuf: the invariants of buf.h hold. */
static void
assert_sane_buf(const struct sl_buf *b)
{
	ck_assert_ptr_nonnull(b->data);
	ck_assert_int_eq(b->data[b->len], '\0');
	ck_assert(b->len <= b->max);
	if (b->cap)
		ck_assert(b->len < b->cap);
	else
		ck_assert_uint_eq(b->len, 0);
}

START_TEST(buf_appends_and_terminates)
{
	struct sl_buf b;
	int i;

	sl_buf_init(&b, 1000);
	assert_sane_buf(&b);
	ck_assert_str_eq(b.data, "");
	ck_assert_int_eq(sl_buf_adds(&b, "hello"), 0);
	ck_assert_int_eq(sl_buf_addc(&b, ' '), 0);
	ck_assert_int_eq(sl_buf_addf(&b, "%d-%s", 42, "x"), 0);
	assert_sane_buf(&b);
	ck_assert_str_eq(b.data, "hello 42-x");
	for (i = 0; i < 50; i++)
		ck_assert_int_eq(sl_buf_adds(&b, "0123456789"), 0);
	assert_sane_buf(&b);
	ck_assert_uint_eq(b.len, 10 + 500);
	sl_buf_reset(&b);
	assert_sane_buf(&b);
	ck_assert_str_eq(b.data, "");
	sl_buf_release(&b);
	assert_sane_buf(&b);
}
END_TEST

START_TEST(buf_cap_releases_and_reports)
{
	struct sl_buf b;

	sl_buf_init(&b, 8);
	ck_assert_int_eq(sl_buf_adds(&b, "12345678"), 0);
	ck_assert_uint_eq(b.len, 8);
	/* One byte past the cap: an error, and the half-built buffer is gone. */
	ck_assert_int_eq(sl_buf_addc(&b, '9'), SL_ETOOLARGE);
	assert_sane_buf(&b);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_int_eq(sl_buf_addf(&b, "%s", "123456789"), SL_ETOOLARGE);
	assert_sane_buf(&b);
	sl_buf_release(&b);
}
END_TEST

START_TEST(buf_detach_hands_over)
{
	struct sl_buf b;
	char *s;

	sl_buf_init(&b, 100);
	s = sl_buf_detach(&b);
	ck_assert_str_eq(s, "");
	sl_free(s);
	ck_assert_int_eq(sl_buf_adds(&b, "abc"), 0);
	s = sl_buf_detach(&b);
	ck_assert_str_eq(s, "abc");
	assert_sane_buf(&b);
	ck_assert_uint_eq(b.len, 0);
	sl_free(s);
}
END_TEST

/* Every allocation of a growing append fails in turn: an error each time, no leak (LSan). */
START_TEST(buf_survives_every_allocation_failure)
{
	long n, made;

	for (n = 0;; n++) {
		struct sl_buf b;
		int rc = 0, i;

		sl_buf_init(&b, 1 << 20);
		sl_alloc_fail_after(n);
		for (i = 0; i < 200 && !rc; i++)
			rc = sl_buf_addf(&b, "line %d of the torture\n", i);
		made = sl_alloc_fail_after(-1);
		assert_sane_buf(&b);
		if (rc == 0) {
			ck_assert_uint_gt(b.len, 0);
			sl_buf_release(&b);
			break;
		}
		ck_assert_int_eq(rc, SL_ENOMEM);
		ck_assert_uint_eq(b.len, 0);
		sl_buf_release(&b);
		ck_assert_int_lt(n, 100);
	}
	ck_assert_int_gt(n, 0);
	(void)made;
}
END_TEST

struct parse_case {
	const char *in;
	long long min, max;
	int ok;
	long long want;
};

static const struct parse_case parse_cases[] = {
	{ "0", 0, 10, 1, 0 },
	{ "10", 0, 10, 1, 10 },
	{ "11", 0, 10, 0, 0 },
	{ "-1", 0, 10, 0, 0 },
	{ "-5", -10, 10, 1, -5 },
	{ "", 0, 10, 0, 0 },
	{ "-", -10, 10, 0, 0 },
	{ " 1", 0, 10, 0, 0 },
	{ "1 ", 0, 10, 0, 0 },
	{ "+1", 0, 10, 0, 0 },
	{ "1e3", 0, 10000, 0, 0 },
	{ "0x10", 0, 100, 0, 0 },
	{ "9223372036854775807", 0, 9223372036854775807LL, 1, 9223372036854775807LL },
	{ "9223372036854775808", 0, 9223372036854775807LL, 0, 0 },
	{ "-9223372036854775808", -9223372036854775807LL - 1, 0, 1, -9223372036854775807LL - 1 },
	{ "-9223372036854775809", -9223372036854775807LL - 1, 0, 0, 0 },
	{ "99999999999999999999999", 0, 9223372036854775807LL, 0, 0 },
};

START_TEST(parse_ll_table)
{
	const struct parse_case *c = &parse_cases[_i];
	long long out = 777;
	int rc = sl_parse_ll(c->in, c->min, c->max, &out);

	ck_assert_msg((rc == 0) == c->ok, "\"%s\": rc %d", c->in, rc);
	ck_assert_msg(c->ok ? out == c->want : out == 777, "\"%s\": out %lld", c->in, out);
}
END_TEST

START_TEST(parse_ms_units)
{
	long long v;

	ck_assert_int_eq(sl_conf_parse_ms("250ms", &v), 0);
	ck_assert_int_eq(v, 250);
	ck_assert_int_eq(sl_conf_parse_ms("2s", &v), 0);
	ck_assert_int_eq(v, 2000);
	ck_assert_int_eq(sl_conf_parse_ms("5m", &v), 0);
	ck_assert_int_eq(v, 300000);
	ck_assert_int_eq(sl_conf_parse_ms("1h", &v), 0);
	ck_assert_int_eq(v, 3600000);
	ck_assert_int_eq(sl_conf_parse_ms("75", &v), 0);
	ck_assert_int_eq(v, 75);
	ck_assert_int_ne(sl_conf_parse_ms("s", &v), 0);
	ck_assert_int_ne(sl_conf_parse_ms("1.5s", &v), 0);
	ck_assert_int_ne(sl_conf_parse_ms("-1s", &v), 0);
	ck_assert_int_ne(sl_conf_parse_ms("10 s", &v), 0);
}
END_TEST

START_TEST(json_parse_and_getters)
{
	const char *doc = "{\"s\":\"x\",\"n\":7,\"b\":true,\"big\":1e3,\"neg\":-2,\"nul\":null}";
	struct sl_err err;
	json_object *o = NULL;
	const char *s = NULL;
	long long n = 0;
	int b = 0, present = -1;

	ck_assert_int_eq(sl_json_parse(doc, strlen(doc), &o, &err), 0);
	ck_assert_int_eq(sl_json_get_str(o, "s", 10, &s, &present, &err), 0);
	ck_assert_str_eq(s, "x");
	ck_assert_int_eq(present, 1);
	ck_assert_int_eq(sl_json_get_int(o, "n", 1, 10, &n, NULL, &err), 0);
	ck_assert_int_eq(n, 7);
	ck_assert_int_eq(sl_json_get_bool(o, "b", &b, NULL, &err), 0);
	ck_assert_int_eq(b, 1);
	/* Missing and null members are "absent", not errors. */
	ck_assert_int_eq(sl_json_get_int(o, "missing", 1, 10, &n, &present, &err), 0);
	ck_assert_int_eq(present, 0);
	ck_assert_int_eq(sl_json_get_str(o, "nul", 10, &s, &present, &err), 0);
	ck_assert_int_eq(present, 0);
	/* Wrong type or range: an error naming the field. */
	ck_assert_int_eq(sl_json_get_int(o, "big", 1, 10000, &n, NULL, &err), SL_EINVAL);
	ck_assert_str_eq(err.field, "big");
	ck_assert_int_eq(sl_json_get_int(o, "neg", 1, 10, &n, NULL, &err), SL_EINVAL);
	ck_assert_str_eq(err.field, "neg");
	ck_assert_int_eq(sl_json_get_str(o, "n", 10, &s, NULL, &err), SL_EINVAL);
	ck_assert_str_eq(err.field, "n");
	json_object_put(o);
}
END_TEST

static const char *bad_json[] = {
	"", "{", "{\"a\":}", "[1,2", "{\"a\":1} x", "nul", "{'a':1}", "{\"a\":01}",
	"[NaN]", "{\"a\":1,}", "[1,]", "[\"\\x\"]", "[\"tab\there\"]", "[-]", "[1.]", "[.5]",
	"{\"a\" 1}", "[\"\\u12\"]", "{\"a\":1}{}", "tru",
	"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
};

static const char *good_json[] = {
	"{}", "[]", " {\"a\": [1, -2.5e+3, true, false, null, \"\\u00e9\\n\"]} ", "0", "\"x\"",
	"{\"nested\":{\"deep\":[[[]]]}}", "-0.0E-2",
};

START_TEST(json_accepts_valid)
{
	struct sl_err err;
	json_object *o = NULL;

	ck_assert_msg(sl_json_parse(good_json[_i], strlen(good_json[_i]), &o, &err) == 0,
	              "%s: %s", good_json[_i], err.msg);
	json_object_put(o);
}
END_TEST

START_TEST(json_rejects_malformed)
{
	struct sl_err err;
	json_object *o = (json_object *)1;

	ck_assert_int_eq(sl_json_parse(bad_json[_i], strlen(bad_json[_i]), &o, &err), SL_EINVAL);
	ck_assert_ptr_null(o);
	ck_assert_msg(strstr(err.msg, "malformed JSON") != NULL, "message: %s", err.msg);
}
END_TEST

static long long conf_int, conf_ms;
static char *conf_str;
static int conf_bool;

static const struct sl_conf_key conf_keys[] = {
	{ "T_INT", SL_CONF_INT, &conf_int, "5", 1, 10, 1, 0, "an int" },
	{ "T_MS", SL_CONF_MS, &conf_ms, "2s", 0, 60000, 0, 0, "a duration" },
	{ "T_STR", SL_CONF_STR, &conf_str, NULL, 0, 0, 1, 1, "a secret string" },
	{ "T_BOOL", SL_CONF_BOOL, &conf_bool, "off", 0, 0, 1, 0, "a switch" },
};

START_TEST(conf_defaults_file_env_and_reload)
{
	char path[] = "/tmp/sluice-conf-XXXXXX";
	struct sl_err err;
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");

	unsetenv("T_INT");
	unsetenv("T_MS");
	unsetenv("T_STR");
	unsetenv("T_BOOL");
	unsetenv("SLUICE_CONFIG");
	ck_assert_int_eq(sl_conf_load(conf_keys, 4, 0, &err), 0);
	ck_assert_int_eq(conf_int, 5);
	ck_assert_int_eq(conf_ms, 2000);
	ck_assert_ptr_null(conf_str);
	ck_assert_int_eq(conf_bool, 0);

	/* The file overrides defaults; the environment overrides the file. */
	fprintf(f, "# comment\nT_INT=7\n  T_MS=250ms\nT_STR=from-file\nT_BOOL=on\n");
	fclose(f);
	setenv("SLUICE_CONFIG", path, 1);
	setenv("T_INT", "9", 1);
	ck_assert_int_eq(sl_conf_load(conf_keys, 4, 0, &err), 0);
	ck_assert_int_eq(conf_int, 9);
	ck_assert_int_eq(conf_ms, 250);
	ck_assert_str_eq(conf_str, "from-file");
	ck_assert_int_eq(conf_bool, 1);

	/* Reload changes reloadable keys only. */
	f = fopen(path, "w");
	fprintf(f, "T_MS=9s\nT_STR=second\nT_BOOL=off\n");
	fclose(f);
	ck_assert_int_eq(sl_conf_load(conf_keys, 4, 1, &err), 0);
	ck_assert_int_eq(conf_ms, 250);
	ck_assert_str_eq(conf_str, "second");
	ck_assert_int_eq(conf_bool, 0);

	/* A bad value changes nothing and names the key; a secret's value is not echoed. */
	setenv("T_INT", "11", 1);
	setenv("T_STR", "s3cr3t-value", 1);
	ck_assert_int_eq(sl_conf_load(conf_keys, 4, 0, &err), SL_EINVAL);
	ck_assert_str_eq(err.field, "T_INT");
	ck_assert_int_eq(conf_int, 9);
	ck_assert_str_eq(conf_str, "second");
	ck_assert(strstr(err.detail, "11") != NULL);
	unsetenv("T_INT");
	setenv("T_BOOL", "maybe", 1);
	ck_assert_int_eq(sl_conf_load(conf_keys, 4, 0, &err), SL_EINVAL);
	ck_assert_str_eq(err.field, "T_BOOL");
	sl_conf_release(conf_keys, 4);
	unlink(path);
}
END_TEST

START_TEST(log_lines_are_json_and_redacted)
{
	char path[] = "/tmp/sluice-log-XXXXXX";
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	struct sl_log_ctx ctx = { .job_id = 42, .kind = "noop", .org_id = 7 };
	json_object *line = NULL, *v;
	struct sl_err err;
	char *text, *nl;

	dup2(fd, STDERR_FILENO);
	sl_log_init("test");
	sl_log_level = SL_LOG_INFO;
	sl_log_add_secret("hunter2-very-secret");
	sl_jlog(SL_LOG_INFO, &ctx, "job \"done\"", SLF_I("duration_ms", 5),
	        SLF_S("note", "token=hunter2-very-secret end"), SLF_B("ok", 1), SLF_END);
	sl_log_debug("not written", SLF_END);
	dup2(saved, STDERR_FILENO);
	close(fd);
	sl_log_forget_secrets();

	text = t_slurp(path);
	unlink(path);
	ck_assert_ptr_nonnull(text);
	ck_assert_msg(strstr(text, "hunter2") == NULL, "secret leaked: %s", text);
	ck_assert_msg(strstr(text, "not written") == NULL, "debug line written at info level");
	nl = strchr(text, '\n');
	ck_assert_ptr_nonnull(nl);
	ck_assert_str_eq(nl + 1, "");   /* exactly one line */
	ck_assert_int_eq(sl_json_parse(text, strlen(text), &line, &err), 0);
	ck_assert(json_object_object_get_ex(line, "msg", &v));
	ck_assert_str_eq(json_object_get_string(v), "job \"done\"");
	ck_assert(json_object_object_get_ex(line, "job_id", &v));
	ck_assert_int_eq(json_object_get_int64(v), 42);
	ck_assert(json_object_object_get_ex(line, "kind", &v));
	ck_assert_str_eq(json_object_get_string(v), "noop");
	ck_assert(json_object_object_get_ex(line, "duration_ms", &v));
	ck_assert_int_eq(json_object_get_int64(v), 5);
	ck_assert(json_object_object_get_ex(line, "note", &v));
	ck_assert_str_eq(json_object_get_string(v), "token=[redacted] end");
	json_object_put(line);
	free(text);
}
END_TEST

START_TEST(random_tokens_differ_and_fit_alphabet)
{
	char a[41], b[41];
	struct sl_err err;
	size_t i;

	ck_assert_int_eq(sl_random_token(a, 40, &err), 0);
	ck_assert_int_eq(sl_random_token(b, 40, &err), 0);
	ck_assert_uint_eq(strlen(a), 40);
	ck_assert_str_ne(a, b);
	for (i = 0; i < 40; i++)
		ck_assert_msg(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
		                     a[i]) != NULL, "bad character %c", a[i]);
}
END_TEST

START_TEST(sha256_known_answer)
{
	unsigned char d[32];
	char hex[65];

	sl_sha256("abc", 3, d);
	sl_hex(d, 32, hex);
	ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("unit");
	TCase *tc;

	tc = tcase_create("buf");
	tcase_add_test(tc, buf_appends_and_terminates);
	tcase_add_test(tc, buf_cap_releases_and_reports);
	tcase_add_test(tc, buf_detach_hands_over);
	tcase_add_test(tc, buf_survives_every_allocation_failure);
	suite_add_tcase(s, tc);

	tc = tcase_create("parse");
	tcase_add_loop_test(tc, parse_ll_table, 0, sizeof(parse_cases) / sizeof(parse_cases[0]));
	tcase_add_test(tc, parse_ms_units);
	suite_add_tcase(s, tc);

	tc = tcase_create("json");
	tcase_add_test(tc, json_parse_and_getters);
	tcase_add_loop_test(tc, json_accepts_valid, 0, sizeof(good_json) / sizeof(good_json[0]));
	tcase_add_loop_test(tc, json_rejects_malformed, 0, sizeof(bad_json) / sizeof(bad_json[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("conf");
	tcase_add_test(tc, conf_defaults_file_env_and_reload);
	suite_add_tcase(s, tc);

	tc = tcase_create("log");
	tcase_add_test(tc, log_lines_are_json_and_redacted);
	suite_add_tcase(s, tc);

	tc = tcase_create("crypto");
	tcase_add_test(tc, random_tokens_differ_and_fit_alphabet);
	tcase_add_test(tc, sha256_known_answer);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return t_run(make_suite());
}
