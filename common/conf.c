/* conf.c — the declarative configuration loader. */
#include "common/conf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/str.h"

#define MAX_KEYS 64

union value {
	long long n;
	char *s;
};

int
sl_conf_parse_ms(const char *s, long long *out)
{
	static const struct { const char *suffix; long long mult; } units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "", 1 },
	};
	size_t len, i;

	if (!s)
		return SL_EINVAL;
	len = strlen(s);
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		size_t sl = strlen(units[i].suffix);
		long long v;

		if (len <= sl || strcmp(s + len - sl, units[i].suffix))
			continue;
		if (sl_parse_lln(s, len - sl, 0, 365LL * 24 * 3600000 / units[i].mult, &v))
			return SL_EINVAL;
		*out = v * units[i].mult;
		return 0;
	}
	return SL_EINVAL;
}

static int
parse_value(const struct sl_conf_key *k, const char *text, union value *v)
{
	int b;

	switch (k->type) {
	case SL_CONF_STR:
		v->s = text ? sl_strdup(text) : NULL;
		return text && !v->s ? SL_ENOMEM : 0;
	case SL_CONF_INT:
		return sl_parse_ll(text, k->min, k->max, &v->n);
	case SL_CONF_BOOL:
		if (sl_parse_bool(text, &b))
			return SL_EINVAL;
		v->n = b;
		return 0;
	case SL_CONF_MS:
		if (sl_conf_parse_ms(text, &v->n) || v->n < k->min || v->n > k->max)
			return SL_EINVAL;
		return 0;
	case SL_CONF_LOGLEVEL:
		if (sl_log_parse_level(text, &b))
			return SL_EINVAL;
		v->n = b;
		return 0;
	}
	return SL_EINVAL;
}

/* Reads the SLUICE_CONFIG file into a NAME=value list in `file` (or nothing). */
static int
read_file(struct sl_buf *file, struct sl_err *err)
{
	const char *path = getenv("SLUICE_CONFIG");
	char chunk[4096];
	FILE *f;
	size_t n;

	if (!path || !*path)
		return 0;
	f = fopen(path, "r");
	if (!f)
		return sl_err_set(err, SL_EIO, SL_RETRY_NO, "cannot read config file %s: %s",
		                  path, strerror(errno));
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (sl_buf_add(file, chunk, n)) {
			fclose(f);
			return sl_err_set(err, SL_ETOOLARGE, SL_RETRY_NO, "config file %s is too large", path);
		}
	}
	fclose(f);
	return 0;
}

/* The value of `name` in the file text, copied into out; 1 if found. */
static int
file_lookup(const struct sl_buf *file, const char *name, char *out, size_t outsz)
{
	const char *p = file->data;
	size_t nlen = strlen(name);

	while (*p) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);

		while (len && (*p == ' ' || *p == '\t')) {
			p++;
			len--;
		}
		if (len > nlen && !strncmp(p, name, nlen) && p[nlen] == '=') {
			size_t vlen = len - nlen - 1;

			while (vlen && (p[nlen + 1 + vlen - 1] == '\r' || p[nlen + 1 + vlen - 1] == ' '))
				vlen--;
			if (vlen >= outsz)
				vlen = outsz - 1;
			memcpy(out, p + nlen + 1, vlen);
			out[vlen] = '\0';
			return 1;
		}
		p += len;
		if (*p == '\n')
			p++;
		else if (eol)
			p = eol + 1;
	}
	return 0;
}

int
sl_conf_load(const struct sl_conf_key *keys, size_t n, int reload, struct sl_err *err)
{
	union value vals[MAX_KEYS];
	struct sl_buf file;
	char fromfile[1024];
	size_t i;
	int rc = 0;

	if (n > MAX_KEYS)
		return sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "too many config keys");
	memset(vals, 0, sizeof(vals));
	sl_buf_init(&file, 1u << 20);
	rc = read_file(&file, err);
	if (rc)
		goto out;

	for (i = 0; i < n; i++) {
		const char *text = keys[i].def, *source = "default";
		const char *env = getenv(keys[i].name);

		if (reload && !keys[i].reloadable)
			continue;
		if (file_lookup(&file, keys[i].name, fromfile, sizeof(fromfile))) {
			text = fromfile;
			source = "config file";
		}
		if (env) {
			text = env;
			source = "environment";
		}
		rc = parse_value(&keys[i], text, &vals[i]);
		if (rc) {
			sl_err_set(err, rc, SL_RETRY_NO, "invalid value for %s (from the %s)",
			           keys[i].name, source);
			if (!keys[i].secret && text)
				sl_err_detail(err, "The value given was \"%.200s\".", text);
			sl_err_field(err, keys[i].name);
			goto out;
		}
	}

	for (i = 0; i < n; i++) {
		if (reload && !keys[i].reloadable)
			continue;
		switch (keys[i].type) {
		case SL_CONF_STR:
			sl_free(*(char **)keys[i].target);
			*(char **)keys[i].target = vals[i].s;
			vals[i].s = NULL;
			break;
		case SL_CONF_INT:
		case SL_CONF_MS:
			*(long long *)keys[i].target = vals[i].n;
			break;
		default:
			*(int *)keys[i].target = (int)vals[i].n;
			break;
		}
	}
out:
	for (i = 0; i < n; i++) {
		if (keys[i].type == SL_CONF_STR)
			sl_free(vals[i].s);
	}
	sl_buf_release(&file);
	return rc;
}

void
sl_conf_release(const struct sl_conf_key *keys, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (keys[i].type == SL_CONF_STR) {
			sl_free(*(char **)keys[i].target);
			*(char **)keys[i].target = NULL;
		}
	}
}

void
sl_conf_print(const struct sl_conf_key *keys, size_t n, FILE *out)
{
	size_t i;

	for (i = 0; i < n; i++) {
		fprintf(out, "%s (default: %s%s)\n    %s\n", keys[i].name,
		        keys[i].def ? keys[i].def : "unset",
		        keys[i].reloadable ? "; reloads on SIGHUP" : "", keys[i].help);
	}
}
