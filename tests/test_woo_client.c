/* test_woo_client.c — the WooCommerce REST API client and the OAuth 1.0a signer, against the fake shop. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "adapters/http.h"
#include "adapters/oauth1.h"
#include "adapters/woocommerce.h"
#include "common/str.h"
#include "tests/harness.h"

/*
 * One fake shop (tests/fake_shop/server.js) serves the whole run: main()
 * makes the test CA (make_certs.sh into a temporary directory), starts the
 * shop on free ports and stops it at the end.  Each live test begins with
 * POST /__control/reset (the checked fixture), so faults, modifications,
 * keys and the request log never leak from one test into the next.  Tests
 * that need a second shop (--untrusted) start and stop it themselves.
 */

#define KEY    "ck_test_0123456789abcdef0123456789abcdef01234567"
#define SECRET "cs_test_0123456789abcdef0123456789abcdef01234567"

/* A running fake shop. */
struct shop_proc {
	pid_t pid;
	int   http_port;
	int   https_port;
};

static struct shop_proc shop;
static struct t_fake ctl;            /* the shop's HTTP listener, for t_fake_get/t_fake_post */
static char tls_dir[64], ca_file[128], base_https[64], base_http[64];

/* ==== starting and stopping the shop ===================================== */

/*
 * Starts `node tests/fake_shop/server.js --http-port 0 --https-port 0
 * --tls-dir DIR [--untrusted]`, tied to this process (it gets SIGTERM when
 * the process that started it dies), and awaits its startup line
 * {"http_port":N,"https_port":M} for up to 30 s.  Returns 0 and fills s, or
 * -1 with a note on stderr.  Plain returns, no ck_assert: main() uses it
 * outside any test.
 */
static int
shop_start(struct shop_proc *s, const char *dir, int untrusted)
{
	char script[1024], line[256];
	size_t len = 0;
	long long deadline;
	pid_t parent = getpid();
	int out[2];

	memset(s, 0, sizeof(*s));
	snprintf(script, sizeof(script), "%s/tests/fake_shop/server.js", t_source_dir);
	if (pipe(out) != 0)
		return -1;
	s->pid = fork();
	if (s->pid < 0) {
		close(out[0]);
		close(out[1]);
		return -1;
	}
	if (s->pid == 0) {
		int fd = open("/dev/null", O_RDONLY);

		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		close(out[0]);
		dup2(out[1], STDOUT_FILENO);
		if (fd >= 0)
			dup2(fd, STDIN_FILENO);
		execlp("node", "node", script, "--http-port", "0", "--https-port", "0", "--tls-dir",
		       dir, untrusted ? "--untrusted" : (char *)NULL, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	deadline = t_now_ms() + 30000;
	while (!memchr(line, '\n', len) && len < sizeof(line) - 1) {
		struct pollfd p = { .fd = out[0], .events = POLLIN };
		long long left = deadline - t_now_ms();
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		n = read(out[0], line + len, sizeof(line) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	line[len] = '\0';
	close(out[0]);
	if (sscanf(line, "{\"http_port\":%d,\"https_port\":%d}", &s->http_port, &s->https_port) != 2 ||
	    s->http_port <= 0 || s->https_port <= 0) {
		fprintf(stderr, "fake shop did not start (node %s; its stderr is above): %s\n", script,
		        line);
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
		s->pid = 0;
		return -1;
	}
	return 0;
}

static void
shop_stop(struct shop_proc *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		waitpid(s->pid, NULL, 0);
	}
	s->pid = 0;
}

/* POST json to the shop's /__control/<what>; fails the test unless it answers 200. */
static void
control(const char *what, const char *json)
{
	char path[128];

	snprintf(path, sizeof(path), "/__control/%s", what);
	t_fake_post(&ctl, path, json);
}

static void
reset_shop(void)
{
	control("reset", NULL);
}

/* The shop over https with Basic auth and the test CA. */
static struct sl_woo_shop
https_shop(void)
{
	return (struct sl_woo_shop){ .base_url = base_https, .consumer_key = KEY,
	                             .consumer_secret = SECRET, .ca_file = ca_file,
	                             .timeout_ms = 20000 };
}

/* The shop over plain http (OAuth 1.0a). */
static struct sl_woo_shop
http_shop(void)
{
	return (struct sl_woo_shop){ .base_url = base_http, .consumer_key = KEY,
	                             .consumer_secret = SECRET, .timeout_ms = 20000 };
}

/* No key or secret in any message. */
static void
assert_clean(const struct sl_err *err, const char *message)
{
	static const char *const secrets[] = { KEY, SECRET, "cs_wrong", "ck_unknown" };
	size_t i;

	for (i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
		ck_assert_msg(!strstr(err->msg, secrets[i]), "%s in msg: %s", secrets[i], err->msg);
		ck_assert_msg(!strstr(err->detail, secrets[i]), "%s in detail: %s", secrets[i],
		              err->detail);
		ck_assert_msg(!message || !strstr(message, secrets[i]), "%s in message: %s", secrets[i],
		              message);
	}
	ck_assert_msg(!strstr(err->msg, "consumer_secret=") && !strstr(err->msg, "oauth_"),
	              "a query string in msg: %s", err->msg);
}

/* The page's body as a JSON array (json_object_put it); fails the test otherwise. */
static json_object *
body_array(const struct sl_woo_page *p)
{
	json_object *a = json_tokener_parse(p->resp.body.data);

	ck_assert_msg(a && json_object_is_type(a, json_type_array), "not a JSON array: %.200s",
	              p->resp.body.data);
	return a;
}

static long long
id_at(json_object *a, size_t i)
{
	json_object *id;

	ck_assert(json_object_object_get_ex(json_object_array_get_idx(a, i), "id", &id));
	return json_object_get_int64(id);
}

/* The shop's request log (GET /__control/requests): the entry `back` from the end (0: last). */
static json_object *
logged_request(json_object *log, size_t back)
{
	json_object *reqs;
	size_t n;

	ck_assert(json_object_object_get_ex(log, "requests", &reqs));
	n = json_object_array_length(reqs);
	ck_assert_uint_gt(n, back);
	return json_object_array_get_idx(reqs, n - 1 - back);
}

static const char *
field_str(json_object *entry, size_t i)
{
	return json_object_get_string(json_object_array_get_idx(entry, i));
}

static long long
stat_of(const char *name)
{
	json_object *stats = t_fake_get(&ctl, "/__control/stats"), *v;
	long long n;

	ck_assert(json_object_object_get_ex(stats, name, &v));
	n = json_object_get_int64(v);
	json_object_put(stats);
	return n;
}

/* Percent-decodes s in place (enough for the base64 alphabet). */
static void
pct_decode(char *s)
{
	char *o = s;

	for (; *s; s++) {
		unsigned v;

		if (*s == '%' && sscanf(s + 1, "%2x", &v) == 1) {
			*o++ = (char)v;
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/* ==== unit: the OAuth 1.0a signer ======================================== */

/*
 * A known answer computed independently with Node.js (not this code):
 *
 *   const enc = (s) => encodeURIComponent(s).replace(/[!'()*]/g,
 *                        (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
 *   params = [page=1, per_page=10, modified_after=2025-01-01T00:00:00+02:00,
 *             search="coin & bar/50% ~\u00e9!", oauth_consumer_key=KEY,
 *             oauth_nonce=kllo9940pd9333jh, oauth_signature_method=HMAC-SHA256,
 *             oauth_timestamp=1700000000]
 *   norm = params encoded, sorted by name then value, "k=v" joined with "&"
 *   base = "GET&" + enc(url) + "&" + enc(norm)
 *   crypto.createHmac('sha256', SECRET + '&').update(base).digest('base64')
 */
#define KAT_URL   "http://127.0.0.1:8080/wp-json/wc/v3/products"
#define KAT_NONCE "kllo9940pd9333jh"
#define KAT_TS    1700000000LL
#define KAT_SIG   "m41T+6QxhV2/W+Tu6lQzMlm5dBS+YGnfsEY6vo7k60w="
#define KAT_BASE                                                                              \
	"GET&http%3A%2F%2F127.0.0.1%3A8080%2Fwp-json%2Fwc%2Fv3%2Fproducts&modified_after%3D"     \
	"2025-01-01T00%253A00%253A00%252B02%253A00%26oauth_consumer_key%3D" KEY                  \
	"%26oauth_nonce%3Dkllo9940pd9333jh%26oauth_signature_method%3DHMAC-SHA256"               \
	"%26oauth_timestamp%3D1700000000%26page%3D1%26per_page%3D10%26search%3Dcoin%2520%2526"   \
	"%2520bar%252F50%2525%2520~%25C3%25A9%2521"

static const struct sl_oauth1_param kat_params[] = {
	{ "page", "1" },
	{ "per_page", "10" },
	{ "modified_after", "2025-01-01T00:00:00+02:00" },
	{ "search", "coin & bar/50% ~\xc3\xa9!" },
};

START_TEST(oauth1_known_answer)
{
	struct sl_oauth1_param all[8];
	struct sl_buf b;
	struct sl_err err;
	char sig[128];
	const char *p;

	sl_buf_init(&b, 1 << 16);
	/* The base string alone, from every parameter the signer signs. */
	memcpy(all, kat_params, sizeof(kat_params));
	all[4] = (struct sl_oauth1_param){ "oauth_consumer_key", KEY };
	all[5] = (struct sl_oauth1_param){ "oauth_nonce", KAT_NONCE };
	all[6] = (struct sl_oauth1_param){ "oauth_signature_method", "HMAC-SHA256" };
	all[7] = (struct sl_oauth1_param){ "oauth_timestamp", "1700000000" };
	ck_assert_int_eq(sl_oauth1_base_string(&b, "GET", KAT_URL, all, 8, &err), 0);
	ck_assert_str_eq(b.data, KAT_BASE);

	/* The whole signed query: our parameters in our order, then oauth_*, the signature last. */
	sl_buf_reset(&b);
	ck_assert_int_eq(sl_oauth1_sign_query_at(&b, "GET", KAT_URL, kat_params, 4, KEY, SECRET,
	                                         KAT_NONCE, KAT_TS, &err), 0);
	ck_assert_str_eq(b.data,
	                 "page=1&per_page=10&modified_after=2025-01-01T00%3A00%3A00%2B02%3A00"
	                 "&search=coin%20%26%20bar%2F50%25%20~%C3%A9%21&oauth_consumer_key=" KEY
	                 "&oauth_nonce=kllo9940pd9333jh&oauth_signature_method=HMAC-SHA256"
	                 "&oauth_timestamp=1700000000"
	                 "&oauth_signature=m41T%2B6QxhV2%2FW%2BTu6lQzMlm5dBS%2BYGnfsEY6vo7k60w%3D");
	p = strstr(b.data, "oauth_signature=");
	ck_assert_ptr_nonnull(p);
	snprintf(sig, sizeof(sig), "%s", p + strlen("oauth_signature="));
	pct_decode(sig);
	ck_assert_str_eq(sig, KAT_SIG);

	/* RFC 5849 3.4.1.2: scheme and host in lower case, the default port dropped. */
	sl_buf_reset(&b);
	ck_assert_int_eq(sl_oauth1_sign_query_at(&b, "GET", "HTTP://127.0.0.1:8080/wp-json/wc/v3/products",
	                                         kat_params, 4, KEY, SECRET, KAT_NONCE, KAT_TS, &err), 0);
	ck_assert_ptr_nonnull(strstr(b.data, "oauth_signature=m41T%2B6QxhV2%2FW%2BTu6lQzMlm5dBS"));
	sl_buf_release(&b);
}
END_TEST

/* RFC 5849 3.4.1.1's example: duplicates sorted by value, '%' and '@' encoded twice. */
START_TEST(oauth1_rfc5849_base_string)
{
	static const struct sl_oauth1_param p[] = {
		{ "b5", "=%3D" }, { "a3", "a" }, { "c@", "" }, { "a2", "r b" },
		{ "oauth_consumer_key", "9djdj82h48djs9d2" }, { "oauth_token", "kkk9d7dh3k39sjv7" },
		{ "oauth_signature_method", "HMAC-SHA1" }, { "oauth_timestamp", "137131201" },
		{ "oauth_nonce", "7d8f3e4a" }, { "c2", "" }, { "a3", "2 q" },
	};
	struct sl_buf b;
	struct sl_err err;

	sl_buf_init(&b, 1 << 16);
	ck_assert_int_eq(sl_oauth1_base_string(&b, "POST", "http://example.com/request", p,
	                                       sizeof(p) / sizeof(p[0]), &err), 0);
	ck_assert_str_eq(b.data,
	                 "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q"
	                 "%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_"
	                 "key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_"
	                 "method%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk"
	                 "9d7dh3k39sjv7");
	sl_buf_release(&b);
}
END_TEST

START_TEST(oauth1_reserved_characters)
{
	/* Expected from Node.js as in oauth1_known_answer (enc of each, sort, enc of the whole). */
	static const struct sl_oauth1_param p[] = {
		{ "a b", "!*'();:@&=+$,/?#[]~-._" }, { "A", "%41" }, { "a", "2" }, { "a", "10" },
		{ "z", "" },
	};
	struct sl_buf b, q1, q2;
	struct sl_err err;
	const char *n1, *n2;
	long long ts;

	sl_buf_init(&b, 1 << 16);
	ck_assert_int_eq(sl_oauth1_base_string(&b, "GET", "https://SHOP.example:443/wp-json/wc/v3/orders",
	                                       p, 5, &err), 0);
	ck_assert_str_eq(b.data,
	                 "GET&https%3A%2F%2Fshop.example%2Fwp-json%2Fwc%2Fv3%2Forders&A%3D%252541"
	                 "%26a%3D10%26a%3D2%26a%2520b%3D%2521%252A%2527%2528%2529%253B%253A%2540"
	                 "%2526%253D%252B%2524%252C%252F%253F%2523%255B%255D~-._%26z%3D");

	/* Refused: our own names, a query in the base URL, a lower-case method, not http(s). */
	sl_buf_reset(&b);
	ck_assert_int_eq(sl_oauth1_sign_query_at(&b, "GET", KAT_URL,
	                 (struct sl_oauth1_param[]){ { "oauth_nonce", "x" } }, 1, KEY, SECRET, "n",
	                 1, &err), SL_EINVAL);
	ck_assert_int_eq(sl_oauth1_sign_query_at(&b, "GET", KAT_URL "?page=1", NULL, 0, KEY, SECRET,
	                                         "n", 1, &err), SL_EINVAL);
	ck_assert_int_eq(sl_oauth1_sign_query_at(&b, "get", KAT_URL, NULL, 0, KEY, SECRET, "n", 1,
	                                         &err), SL_EINVAL);
	ck_assert_int_eq(sl_oauth1_sign_query_at(&b, "GET", "ftp://127.0.0.1/x", NULL, 0, KEY, SECRET,
	                                         "n", 1, &err), SL_EINVAL);
	ck_assert_int_eq(sl_oauth1_sign_query_at(&b, "GET", KAT_URL, NULL, 0, KEY, "", "n", 1, &err),
	                 SL_EINVAL);
	ck_assert_ptr_null(strstr(err.msg, KEY));
	ck_assert_uint_eq(b.len, 0);

	/* The random form: a fresh 32-character nonce each time, the current time. */
	sl_buf_init(&q1, 1 << 16);
	sl_buf_init(&q2, 1 << 16);
	ck_assert_int_eq(sl_oauth1_sign_query(&q1, "GET", KAT_URL, NULL, 0, KEY, SECRET, &err), 0);
	ck_assert_int_eq(sl_oauth1_sign_query(&q2, "GET", KAT_URL, NULL, 0, KEY, SECRET, &err), 0);
	n1 = strstr(q1.data, "oauth_nonce=");
	n2 = strstr(q2.data, "oauth_nonce=");
	ck_assert(n1 && n2);
	ck_assert_uint_eq(strcspn(n1 + 12, "&"), SL_OAUTH1_NONCE_LEN);
	ck_assert(strncmp(n1, n2, 12 + SL_OAUTH1_NONCE_LEN) != 0);
	ck_assert_int_eq(sscanf(strstr(q1.data, "oauth_timestamp=") + 16, "%lld", &ts), 1);
	ck_assert(ts >= (long long)time(NULL) - 5 && ts <= (long long)time(NULL));
	sl_buf_release(&b);
	sl_buf_release(&q1);
	sl_buf_release(&q2);
}
END_TEST

/* ==== unit: arguments the client refuses before calling ================== */

START_TEST(base_urls_checked)
{
	static const char *const bad[] = {
		"", "ftp://shop.example", "shop.example", "https://", "https:///wp", "https://:443/",
		"https://shop.example/?page=1", "https://shop.example/#top", "https://shop.example?x",
		"https://user:pass@shop.example", "https://user@shop.example/", "https://shop example.com",
		"https://shop.example:99999/", "javascript:alert(1)",
	};
	static const char *const good[] = {
		"https://shop.example", "https://shop.example/", "http://127.0.0.1:8080/wordpress",
		"https://[::1]:8443/shop/", "HTTPS://Shop.Example/wp",
	};
	char longurl[2100];
	struct sl_err err;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sl_err_clear(&err);
		ck_assert_msg(sl_woo_check_base_url(bad[i], &err) == SL_EINVAL, "accepted %s", bad[i]);
		ck_assert_int_eq(err.retry, SL_RETRY_NO);
		ck_assert_str_eq(err.field, "base_url");
		ck_assert_msg(sl_starts_with(err.msg, "shop URL "), "%s: %s", bad[i], err.msg);
		ck_assert_msg(strlen(err.detail) > 20 && strchr(err.detail, '.'), "%s: no sentence",
		              bad[i]);
		ck_assert_msg(!strstr(err.msg, "user:pass") && !strstr(err.detail, "user:pass"),
		              "the URL is repeated: %s / %s", err.msg, err.detail);
	}
	ck_assert_int_eq(sl_woo_check_base_url(NULL, &err), SL_EINVAL);
	ck_assert_int_eq(sl_woo_check_base_url("https://user:pass@shop.example", &err), SL_EINVAL);
	ck_assert_str_eq(err.msg, "shop URL contains a user name or password");
	ck_assert_int_eq(sl_woo_check_base_url("ftp://shop.example", &err), SL_EINVAL);
	ck_assert_str_eq(err.msg, "shop URL is not http or https");
	ck_assert_int_eq(sl_woo_check_base_url("https://", &err), SL_EINVAL);
	ck_assert_str_eq(err.msg, "shop URL has no host");
	ck_assert_int_eq(sl_woo_check_base_url("https://shop.example/?page=1", &err), SL_EINVAL);
	ck_assert_str_eq(err.msg, "shop URL contains a query or fragment");

	memcpy(longurl, "https://shop.example/", 21);
	memset(longurl + 21, 'a', 2001 - 21);
	longurl[2001] = '\0';
	ck_assert_int_eq(sl_woo_check_base_url(longurl, &err), SL_EINVAL);
	ck_assert_str_eq(err.msg, "shop URL is too long");
	longurl[2000] = '\0';   /* exactly 2000 bytes: allowed */
	ck_assert_int_eq(sl_woo_check_base_url(longurl, &err), 0);

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(sl_woo_check_base_url(good[i], &err) == 0, "refused %s: %s", good[i],
		              err.msg);
}
END_TEST

/* ==== the shop: authentication and pages ================================= */

START_TEST(https_basic_pages)
{
	struct sl_woo_shop s = https_shop();
	struct sl_woo_page p;
	struct sl_err err;
	json_object *info = t_fake_get(&ctl, "/__control/info"), *ids, *a, *log, *entry;
	long long seen[200], page = 1, now = (long long)time(NULL);
	size_t n_seen = 0, i, k, n_products;

	ck_assert(json_object_object_get_ex(info, "product_ids", &ids));
	n_products = json_object_array_length(ids);
	ck_assert_uint_eq(n_products, 50);

	sl_woo_page_init(&p);
	ck_assert_int_eq(sl_woo_list(&s, "products", 1, 10, NULL, &p, &err), 0);
	ck_assert_int_eq(p.resp.status, 200);
	ck_assert_int_eq(p.total, 50);
	ck_assert_int_eq(p.total_pages, 5);
	ck_assert_int_eq(p.has_next, 1);
	ck_assert_msg(p.server_time >= now - 60 && p.server_time <= now + 60, "Date: %lld vs %lld",
	              p.server_time, now);
	a = body_array(&p);
	ck_assert_uint_eq(json_object_array_length(a), 10);
	for (i = 1; i < 10; i++)
		ck_assert_int_lt(id_at(a, i - 1), id_at(a, i));   /* orderby=id&order=asc */
	json_object_put(a);

	/* Basic, not the query: the shop saw no key in the URL. */
	log = t_fake_get(&ctl, "/__control/requests");
	entry = logged_request(log, 0);
	ck_assert_str_eq(field_str(entry, 0), "GET");
	ck_assert_str_eq(field_str(entry, 1),
	                 "/wp-json/wc/v3/products?orderby=id&order=asc&page=1&per_page=10");
	ck_assert_int_eq(json_object_get_int(json_object_array_get_idx(entry, 2)), 200);
	ck_assert_str_eq(field_str(entry, 3), "https");
	json_object_put(log);

	/* Walking every page gets every product exactly once. */
	for (;;) {
		ck_assert_int_eq(sl_woo_list(&s, "products", page, 7, NULL, &p, &err), 0);
		a = body_array(&p);
		for (i = 0; i < json_object_array_length(a); i++) {
			ck_assert_uint_lt(n_seen, sizeof(seen) / sizeof(seen[0]));
			seen[n_seen++] = id_at(a, i);
		}
		json_object_put(a);
		ck_assert_int_eq(p.total_pages, 8);
		if (!p.has_next)
			break;
		page++;
	}
	ck_assert_int_eq(page, 8);
	ck_assert_uint_eq(n_seen, n_products);
	for (i = 0; i < n_products; i++) {
		long long want = json_object_get_int64(json_object_array_get_idx(ids, i));
		int count = 0;

		for (k = 0; k < n_seen; k++)
			count += seen[k] == want;
		ck_assert_msg(count == 1, "product %lld seen %d times", want, count);
	}

	/* Past the end: [] and no next. */
	ck_assert_int_eq(sl_woo_list(&s, "products", 9, 7, NULL, &p, &err), 0);
	ck_assert_str_eq(p.resp.body.data, "[]");
	ck_assert_int_eq(p.has_next, 0);
	ck_assert_int_eq(p.total, 50);
	sl_woo_page_release(&p);
	json_object_put(info);
}
END_TEST

START_TEST(https_auth_in_query)
{
	struct sl_woo_shop s = https_shop();
	struct sl_woo_page p;
	struct sl_err err;
	json_object *a, *log, *entry;
	const char *logged;

	s.auth_in_query = 1;
	sl_woo_page_init(&p);
	ck_assert_int_eq(sl_woo_list(&s, "orders", 2, 5, NULL, &p, &err), 0);
	ck_assert_int_eq(p.total, 200);
	ck_assert_int_eq(p.total_pages, 40);
	ck_assert_int_eq(p.has_next, 1);
	a = body_array(&p);
	ck_assert_uint_eq(json_object_array_length(a), 5);
	json_object_put(a);

	log = t_fake_get(&ctl, "/__control/requests");
	entry = logged_request(log, 0);
	logged = field_str(entry, 1);
	ck_assert_str_eq(logged, "/wp-json/wc/v3/orders?orderby=id&order=asc&page=2&per_page=5"
	                 "&consumer_key=" KEY "&consumer_secret=REDACTED");
	ck_assert_int_eq(json_object_get_int(json_object_array_get_idx(entry, 2)), 200);
	ck_assert_str_eq(field_str(entry, 3), "https");
	json_object_put(log);

	/* A wrong secret in the query is refused like one in Basic. */
	s.consumer_secret = "cs_wrong_0000";
	ck_assert_int_eq(sl_woo_list(&s, "orders", 1, 5, NULL, &p, &err), SL_EAUTH);
	ck_assert_ptr_nonnull(strstr(err.msg, "Consumer secret is invalid."));
	assert_clean(&err, NULL);
	sl_woo_page_release(&p);
}
END_TEST

START_TEST(http_oauth1_signed)
{
	struct sl_woo_shop s = http_shop();
	struct sl_woo_page p;
	struct sl_err err;
	json_object *a, *log, *entry;
	const char *logged;
	int i;

	sl_woo_page_init(&p);
	/* Twice: each call signs with a new nonce, which the shop insists on. */
	for (i = 1; i <= 2; i++) {
		ck_assert_msg(sl_woo_list(&s, "products", i, 10, NULL, &p, &err) == 0, "%s", err.msg);
		ck_assert_int_eq(p.resp.status, 200);
		ck_assert_int_eq(p.total, 50);
		ck_assert_int_eq(p.has_next, 1);
		a = body_array(&p);
		ck_assert_uint_eq(json_object_array_length(a), 10);
		json_object_put(a);
	}
	log = t_fake_get(&ctl, "/__control/requests");
	entry = logged_request(log, 0);
	logged = field_str(entry, 1);
	ck_assert_msg(sl_starts_with(logged, "/wp-json/wc/v3/products?orderby=id&order=asc&page=2"
	                             "&per_page=10&oauth_consumer_key=" KEY "&oauth_nonce="), "%s",
	              logged);
	ck_assert_ptr_nonnull(strstr(logged, "&oauth_signature_method=HMAC-SHA256&oauth_timestamp="));
	ck_assert_ptr_nonnull(strstr(logged, "&oauth_signature=REDACTED"));
	ck_assert_ptr_null(strstr(logged, "consumer_secret"));
	ck_assert_int_eq(json_object_get_int(json_object_array_get_idx(entry, 2)), 200);
	ck_assert_str_eq(field_str(entry, 3), "http");
	json_object_put(log);
	ck_assert_int_eq(stat_of("auth_failures"), 0);

	/* A variations list, a sub-path the signature covers too. */
	ck_assert_int_eq(sl_woo_list(&s, "products/999999/variations", 1, 10, NULL, &p, &err), 0);
	ck_assert_str_eq(p.resp.body.data, "[]");
	ck_assert_int_eq(p.total, 0);
	sl_woo_page_release(&p);
}
END_TEST

/* ==== TLS ================================================================ */

START_TEST(tls_system_cas_do_not_trust_the_test_ca)
{
	struct sl_woo_shop s = https_shop();
	struct sl_woo_page p;
	struct sl_err err;

	s.ca_file = NULL;
	sl_woo_page_init(&p);
	ck_assert_int_eq(sl_woo_list(&s, "products", 1, 10, NULL, &p, &err), SL_EHTTP);
	ck_assert_int_eq(err.retry, SL_RETRY_NO);
	ck_assert_int_eq(err.http_status, 0);
	ck_assert_msg(strstr(err.msg, "TLS certificate not trusted"), "%s", err.msg);
	assert_clean(&err, NULL);
	ck_assert_int_eq(stat_of("requests"), 0);   /* nothing reached the shop */
	sl_woo_page_release(&p);
}
END_TEST

START_TEST(tls_untrusted_shop_refused)
{
	struct shop_proc bad;
	struct sl_woo_shop s = https_shop();
	struct sl_woo_page p;
	struct sl_err err;
	char base[64], message[512];

	ck_assert_int_eq(shop_start(&bad, tls_dir, 1), 0);
	snprintf(base, sizeof(base), "https://127.0.0.1:%d", bad.https_port);
	s.base_url = base;   /* with the test CA: the self-signed certificate is still no good */
	sl_woo_page_init(&p);
	ck_assert_int_eq(sl_woo_list(&s, "products", 1, 10, NULL, &p, &err), SL_EHTTP);
	ck_assert_int_eq(err.retry, SL_RETRY_NO);
	ck_assert_msg(strstr(err.msg, "TLS certificate not trusted"), "%s", err.msg);
	ck_assert_int_eq(sl_woo_test(&s, message, sizeof(message), &err), SL_EHTTP);
	ck_assert_msg(sl_starts_with(message, "The shop's TLS certificate is not trusted"), "%s",
	              message);
	sl_woo_page_release(&p);
	shop_stop(&bad);
}
END_TEST

/* ==== deltas ============================================================= */

START_TEST(modified_after_delta)
{
	struct sl_woo_shop https = https_shop(), http = http_shop();
	const struct sl_woo_shop *shops[] = { &https, &http };
	struct sl_woo_page p;
	struct sl_err err;
	json_object *info = t_fake_get(&ctl, "/__control/info"), *ids, *a;
	long long want[3];
	char since[32], body[256];
	time_t t = time(NULL) - 5;
	struct tm tm;
	size_t i, k;

	ck_assert(json_object_object_get_ex(info, "product_ids", &ids));
	want[0] = json_object_get_int64(json_object_array_get_idx(ids, 3));
	want[1] = json_object_get_int64(json_object_array_get_idx(ids, 17));
	want[2] = json_object_get_int64(json_object_array_get_idx(ids, 41));
	json_object_put(info);
	/* dates_are_gmt=true: the UTC time without an offset. */
	gmtime_r(&t, &tm);
	strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%S", &tm);

	sl_woo_page_init(&p);
	for (k = 0; k < 2; k++) {
		/* Before the change: nothing modified since. */
		ck_assert_int_eq(sl_woo_list(shops[k], "products", 1, 100, since, &p, &err), 0);
		ck_assert_int_eq(p.total, 0);
		ck_assert_str_eq(p.resp.body.data, "[]");
	}
	snprintf(body, sizeof(body), "{\"products\":{\"ids\":[%lld,%lld,%lld]}}", want[0], want[1],
	         want[2]);
	control("modify", body);
	for (k = 0; k < 2; k++) {
		ck_assert_msg(sl_woo_list(shops[k], "products", 1, 100, since, &p, &err) == 0, "%s",
		              err.msg);
		ck_assert_int_eq(p.total, 3);
		ck_assert_int_eq(p.has_next, 0);
		a = body_array(&p);
		ck_assert_uint_eq(json_object_array_length(a), 3);
		for (i = 0; i < 3; i++)
			ck_assert_int_eq(id_at(a, i), want[i]);
		json_object_put(a);
	}
	sl_woo_page_release(&p);
}
END_TEST

/* ==== errors ============================================================= */

START_TEST(wrong_secret_refused)
{
	struct sl_woo_shop s = https_shop();
	struct sl_woo_page p;
	struct sl_err err;

	s.consumer_secret = "cs_wrong_0123456789abcdef0123456789abcdef0123";
	sl_woo_page_init(&p);
	ck_assert_int_eq(sl_woo_list(&s, "products", 1, 10, NULL, &p, &err), SL_EAUTH);
	ck_assert_int_eq(err.retry, SL_RETRY_REAUTH);
	ck_assert_int_eq(err.http_status, 401);
	ck_assert_str_eq(err.msg, "woocommerce products: the consumer key or secret was refused "
	                 "(HTTP 401); WooCommerce said: Consumer secret is invalid. "
	                 "(woocommerce_rest_authentication_error)");
	ck_assert_ptr_nonnull(strstr(err.detail, "WooCommerce > Settings > Advanced > REST API"));
	assert_clean(&err, NULL);

	/* Over http the same secret makes a signature the shop does not accept. */
	s = http_shop();
	s.consumer_secret = "cs_wrong_0123456789abcdef0123456789abcdef0123";
	ck_assert_int_eq(sl_woo_list(&s, "orders", 1, 10, NULL, &p, &err), SL_EAUTH);
	ck_assert_int_eq(err.retry, SL_RETRY_REAUTH);
	ck_assert_msg(strstr(err.msg, "WooCommerce said: Invalid signature - provided signature does "
	                     "not match. (woocommerce_rest_authentication_error)"), "%s", err.msg);
	assert_clean(&err, NULL);

	/* An unknown key: WooCommerce goes on anonymous, and the list is not for anonymous eyes. */
	s = https_shop();
	s.consumer_key = "ck_unknown_0123456789abcdef0123456789abcdef01";
	ck_assert_int_eq(sl_woo_list(&s, "orders", 1, 10, NULL, &p, &err), SL_EAUTH);
	ck_assert_msg(strstr(err.msg, "WooCommerce said: Sorry, you cannot list resources. "
	                     "(woocommerce_rest_cannot_view)"), "%s", err.msg);
	assert_clean(&err, NULL);
	sl_woo_page_release(&p);
}
END_TEST

START_TEST(api_not_found)
{
	struct sl_woo_shop s = https_shop();
	struct sl_woo_page p;
	struct sl_err err;

	control("root_404", "true");
	sl_woo_page_init(&p);
	ck_assert_int_eq(sl_woo_list(&s, "products", 1, 10, NULL, &p, &err), SL_ENOTFOUND);
	ck_assert_int_eq(err.retry, SL_RETRY_NO);
	ck_assert_int_eq(err.http_status, 404);
	ck_assert_str_eq(err.msg, "woocommerce products: WooCommerce REST API not found at this URL "
	                 "(HTTP 404); WooCommerce said: No route was found matching the URL and "
	                 "request method. (rest_no_route)");

	/* Not WordPress at all: an HTML 404, nothing to quote. */
	control("root_404", "false");
	s.base_url = base_https;
	{
		char base[128];

		snprintf(base, sizeof(base), "%s/no-wordpress-here", base_https);
		s.base_url = base;
		ck_assert_int_eq(sl_woo_list(&s, "products", 1, 10, NULL, &p, &err), SL_ENOTFOUND);
	}
	ck_assert_str_eq(err.msg, "woocommerce products: WooCommerce REST API not found at this URL "
	                 "(HTTP 404)");
	sl_woo_page_release(&p);
}
END_TEST

START_TEST(rate_limited_429)
{
	struct sl_woo_shop s = https_shop();
	struct sl_woo_page p;
	struct sl_err err;

	control("fault", "{\"status\":429,\"count\":1,\"retry_after\":7}");
	sl_woo_page_init(&p);
	ck_assert_int_eq(sl_woo_list(&s, "orders", 1, 10, NULL, &p, &err), SL_ERATELIMIT);
	ck_assert_int_eq(err.retry, SL_RETRY_AFTER);
	ck_assert_int_eq(err.retry_after_ms, 7000);
	ck_assert_int_eq(err.http_status, 429);
	ck_assert_str_eq(err.msg, "woocommerce orders: the shop is limiting requests (HTTP 429); "
	                 "WooCommerce said: Too many requests. Please wait and try again. "
	                 "(rate_limit_exceeded)");
	/* One fault only: the next call goes through. */
	ck_assert_int_eq(sl_woo_list(&s, "orders", 1, 10, NULL, &p, &err), 0);
	ck_assert_int_eq(p.total, 200);
	sl_woo_page_release(&p);
}
END_TEST

START_TEST(server_errors_back_off)
{
	struct sl_woo_shop s = https_shop();
	struct sl_woo_page p;
	struct sl_err err;

	sl_woo_page_init(&p);
	control("fault", "{\"status\":503}");
	ck_assert_int_eq(sl_woo_list(&s, "products", 1, 10, NULL, &p, &err), SL_EHTTP);
	ck_assert_int_eq(err.retry, SL_RETRY_BACKOFF);
	ck_assert_int_eq(err.http_status, 503);
	ck_assert_str_eq(err.msg, "woocommerce products: the shop is unavailable (HTTP 503)");

	/* WordPress's critical error: its HTML message quoted as text. */
	control("fault", "{\"status\":500}");
	ck_assert_int_eq(sl_woo_list(&s, "products", 1, 10, NULL, &p, &err), SL_EHTTP);
	ck_assert_int_eq(err.retry, SL_RETRY_BACKOFF);
	ck_assert_int_eq(err.http_status, 500);
	ck_assert_msg(sl_starts_with(err.msg, "woocommerce products: the shop had an internal error "
	                             "(HTTP 500); WooCommerce said: There has been a critical error "
	                             "on this website. Learn more"), "%s", err.msg);
	ck_assert_ptr_null(strchr(err.msg, '<'));

	control("fault", "{\"status\":502}");
	ck_assert_int_eq(sl_woo_list(&s, "products", 1, 10, NULL, &p, &err), SL_EHTTP);
	ck_assert_int_eq(err.retry, SL_RETRY_BACKOFF);
	ck_assert_int_eq(err.http_status, 502);

	/* Another 4xx is permanent. */
	control("fault", "{\"status\":418}");
	ck_assert_int_eq(sl_woo_list(&s, "products", 1, 10, NULL, &p, &err), SL_EHTTP);
	ck_assert_int_eq(err.retry, SL_RETRY_NO);
	ck_assert_str_eq(err.msg, "woocommerce products: the shop refused the request (HTTP 418); "
	                 "WooCommerce said: Injected fault. (fake_shop_fault)");
	sl_woo_page_release(&p);
}
END_TEST

/*
 * A 200 page whose JSON is cut in half is not the client's business: it
 * hands the body over as it came (0, status 200, the headers read), and the
 * caller — PostgreSQL parsing the page — finds it broken and fails the job.
 */
START_TEST(malformed_page_passed_on)
{
	struct sl_woo_shop s = https_shop();
	struct sl_woo_page p;
	struct sl_err err;
	json_object *a;

	control("malformed", "{\"count\":1}");
	sl_woo_page_init(&p);
	ck_assert_int_eq(sl_woo_list(&s, "orders", 1, 10, NULL, &p, &err), 0);
	ck_assert_int_eq(p.resp.status, 200);
	ck_assert_int_eq(p.total, 200);
	ck_assert(sl_starts_with(p.resp.body.data, "[{"));
	a = json_tokener_parse(p.resp.body.data);
	ck_assert_ptr_null(a);
	ck_assert_int_eq(sl_woo_list(&s, "orders", 1, 10, NULL, &p, &err), 0);
	a = body_array(&p);
	ck_assert_uint_eq(json_object_array_length(a), 10);
	json_object_put(a);
	sl_woo_page_release(&p);
}
END_TEST

START_TEST(bad_arguments_refused_before_calling)
{
	struct sl_woo_shop s = https_shop();
	struct sl_woo_page p;
	struct sl_err err;

	sl_woo_page_init(&p);
	ck_assert_int_eq(sl_woo_list(&s, "products", 1, 101, NULL, &p, &err), SL_EINVAL);
	ck_assert_str_eq(err.field, "per_page");
	ck_assert_str_eq(err.msg, "woocommerce products: per_page 101 is not within 1..100");
	ck_assert_int_eq(sl_woo_list(&s, "products", 1, 0, NULL, &p, &err), SL_EINVAL);
	ck_assert_int_eq(sl_woo_list(&s, "products", 0, 10, NULL, &p, &err), SL_EINVAL);
	ck_assert_str_eq(err.field, "page");
	ck_assert_int_eq(sl_woo_list(&s, "/products", 1, 10, NULL, &p, &err), SL_EINVAL);
	ck_assert_int_eq(sl_woo_list(&s, "products?x=1", 1, 10, NULL, &p, &err), SL_EINVAL);
	ck_assert_int_eq(sl_woo_list(&s, "products", 1, 10, "", &p, &err), SL_EINVAL);
	s.base_url = "https://user:pass@127.0.0.1:1/";
	ck_assert_int_eq(sl_woo_list(&s, "products", 1, 10, NULL, &p, &err), SL_EINVAL);
	ck_assert_str_eq(err.field, "base_url");
	s = https_shop();
	s.consumer_secret = "";
	ck_assert_int_eq(sl_woo_list(&s, "products", 1, 10, NULL, &p, &err), SL_EINVAL);
	ck_assert_str_eq(err.field, "consumer_secret");
	ck_assert_int_eq(stat_of("requests"), 0);
	sl_woo_page_release(&p);
}
END_TEST

/* ==== test connection ==================================================== */

START_TEST(test_connection_messages)
{
	struct sl_woo_shop s = https_shop();
	struct sl_err err;
	char message[512], base[64];

	ck_assert_int_eq(sl_woo_test(&s, message, sizeof(message), &err), 0);
	ck_assert_str_eq(message, "Connected to the shop's WooCommerce REST API (50 products).");
	s = http_shop();
	ck_assert_int_eq(sl_woo_test(&s, message, sizeof(message), &err), 0);
	ck_assert_str_eq(message, "Connected to the shop's WooCommerce REST API (50 products).");

	s = https_shop();
	s.consumer_secret = "cs_wrong_0123456789abcdef0123456789abcdef0123";
	ck_assert_int_eq(sl_woo_test(&s, message, sizeof(message), &err), SL_EAUTH);
	ck_assert_str_eq(message, "The shop refused the consumer key or secret (WooCommerce said: "
	                 "Consumer secret is invalid.). Check the REST API key under WooCommerce > "
	                 "Settings > Advanced > REST API: copy its consumer key and secret again, "
	                 "and give it Read permission.");
	assert_clean(&err, message);

	s = https_shop();
	control("root_404", "true");
	ck_assert_int_eq(sl_woo_test(&s, message, sizeof(message), &err), SL_ENOTFOUND);
	ck_assert_str_eq(message, "WooCommerce REST API not found at this URL. Check that the shop "
	                 "URL is the address of the WordPress site and that the WooCommerce plugin "
	                 "is installed and active.");
	control("root_404", "false");

	s.ca_file = NULL;
	ck_assert_int_eq(sl_woo_test(&s, message, sizeof(message), &err), SL_EHTTP);
	ck_assert_str_eq(message, "The shop's TLS certificate is not trusted: it is not signed by a "
	                 "known certificate authority, has expired, or is for another host name. "
	                 "Install a valid certificate on the shop (for example from Let's Encrypt), "
	                 "or give the CA certificate that signed it.");

	snprintf(base, sizeof(base), "https://127.0.0.1:%d", t_free_port());
	s = https_shop();
	s.base_url = base;
	ck_assert_int_eq(sl_woo_test(&s, message, sizeof(message), &err), SL_EHTTP);
	ck_assert_int_eq(err.retry, SL_RETRY_BACKOFF);
	ck_assert_str_eq(message, "Could not connect to the shop: the connection was refused. Check "
	                 "the host and port in the shop URL, and that the shop's web server is "
	                 "running.");

	s.base_url = "https://user:pass@shop.example";
	ck_assert_int_eq(sl_woo_test(&s, message, sizeof(message), &err), SL_EINVAL);
	ck_assert_str_eq(message, "Remove the user name and password from the shop URL: Sluice signs "
	                 "in with the REST API key's consumer key and secret.");
	s.base_url = "shop.example";
	ck_assert_int_eq(sl_woo_test(&s, message, sizeof(message), &err), SL_EINVAL);
	ck_assert_str_eq(message, "The shop URL must start with https:// (or http:// for a shop on "
	                 "this machine), such as https://shop.example.com.");
	s.base_url = "http://shop.example";
	ck_assert_int_eq(sl_woo_test(&s, message, sizeof(message), &err), SL_EINVAL);
	ck_assert_str_eq(message, "The shop URL must start with https://: plain http:// is only "
	                 "allowed for a shop on this machine.");

	s = https_shop();
	control("fault", "{\"status\":503}");
	ck_assert_int_eq(sl_woo_test(&s, message, sizeof(message), &err), SL_EHTTP);
	ck_assert_str_eq(message, "The shop answered with a server error (HTTP 503). It may be down "
	                 "or under maintenance; try again later, or look at the shop's error log.");
	control("fault", "{\"status\":429,\"retry_after\":7}");
	ck_assert_int_eq(sl_woo_test(&s, message, sizeof(message), &err), SL_ERATELIMIT);
	ck_assert_str_eq(message, "The shop is limiting requests right now (HTTP 429); try again in 7 "
	                 "seconds.");
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("woo_client");
	TCase *unit = tcase_create("unit"), *live = tcase_create("shop");

	tcase_add_test(unit, oauth1_known_answer);
	tcase_add_test(unit, oauth1_rfc5849_base_string);
	tcase_add_test(unit, oauth1_reserved_characters);
	tcase_add_test(unit, base_urls_checked);
	suite_add_tcase(s, unit);

	tcase_add_checked_fixture(live, reset_shop, NULL);
	tcase_add_test(live, https_basic_pages);
	tcase_add_test(live, https_auth_in_query);
	tcase_add_test(live, http_oauth1_signed);
	tcase_add_test(live, tls_system_cas_do_not_trust_the_test_ca);
	tcase_add_test(live, tls_untrusted_shop_refused);
	tcase_add_test(live, modified_after_delta);
	tcase_add_test(live, wrong_secret_refused);
	tcase_add_test(live, api_not_found);
	tcase_add_test(live, rate_limited_429);
	tcase_add_test(live, server_errors_back_off);
	tcase_add_test(live, malformed_page_passed_on);
	tcase_add_test(live, bad_arguments_refused_before_calling);
	tcase_add_test(live, test_connection_messages);
	suite_add_tcase(s, live);
	return s;
}

int
main(void)
{
	char cmd[1024];
	struct sl_err err;
	int rc;

	if (sl_http_global_init(&err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	snprintf(tls_dir, sizeof(tls_dir), "/tmp/sluice-woo-XXXXXX");
	if (!mkdtemp(tls_dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(cmd, sizeof(cmd), "'%s/tests/fake_shop/make_certs.sh' '%s'", t_source_dir, tls_dir);
	if (system(cmd) != 0) {
		fprintf(stderr, "make_certs.sh failed: %s\n", cmd);
		return 1;
	}
	snprintf(ca_file, sizeof(ca_file), "%s/ca.pem", tls_dir);
	if (shop_start(&shop, tls_dir, 0)) {
		fprintf(stderr, "the fake shop needs node (tools/sluice test installs it)\n");
		return 1;
	}
	/* The certificate names both localhost and 127.0.0.1; the address skips resolving ::1 first. */
	snprintf(base_https, sizeof(base_https), "https://127.0.0.1:%d", shop.https_port);
	snprintf(base_http, sizeof(base_http), "http://127.0.0.1:%d", shop.http_port);
	ctl.port = shop.http_port;
	snprintf(ctl.url, sizeof(ctl.url), "http://127.0.0.1:%d", shop.http_port);

	rc = t_run(make_suite());

	shop_stop(&shop);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tls_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tls_dir);
	return rc;
}
