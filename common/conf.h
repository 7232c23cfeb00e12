/* conf.h — configuration as one declarative table per program. */
#ifndef SL_CONF_H
#define SL_CONF_H

#include <stdio.h>

#include "common/err.h"

/*
 * Each program lists its settings in a static table of struct sl_conf_key.
 * Values come from, lowest precedence first: the default (a string, parsed
 * by the same parser as everything else), the config file named by
 * SLUICE_CONFIG (lines "NAME=value", '#' comments), and the environment.
 * SIGHUP re-reads the file; keys marked reloadable take the new value, and
 * the others keep theirs until restart.  A key set in the environment keeps
 * its environment value.
 */
enum sl_conf_type {
	SL_CONF_STR,      /* char *, heap copy owned by the table's target */
	SL_CONF_INT,      /* long long in [min, max] */
	SL_CONF_BOOL,     /* int */
	SL_CONF_MS,       /* long long milliseconds; accepts 250ms, 2s, 5m, 1h, or a bare number of ms */
	SL_CONF_LOGLEVEL, /* int: error, warn, info, debug */
};

struct sl_conf_key {
	const char *name;        /* environment variable, e.g. "SLUICE_WORKER_BATCH" */
	int         type;        /* enum sl_conf_type */
	void       *target;
	const char *def;         /* default, as text; NULL = unset (strings only) */
	long long   min, max;    /* for INT and MS */
	int         reloadable;  /* may change on SIGHUP */
	int         secret;      /* never printed */
	const char *help;
};

/*
 * Loads every key.  With reload = 1 only reloadable keys change.  All values
 * are parsed before any is stored: on error nothing changes and err names
 * the key (err->field) and the source.
 */
int sl_conf_load(const struct sl_conf_key *keys, size_t n, int reload, struct sl_err *err)
	__attribute__((warn_unused_result));

/* Frees the strings the table's targets hold. */
void sl_conf_release(const struct sl_conf_key *keys, size_t n);

/* Prints each key with its default and help, for --help-config. */
void sl_conf_print(const struct sl_conf_key *keys, size_t n, FILE *out);

/* Parses a duration as SL_CONF_MS does.  Returns 0 or SL_EINVAL. */
int sl_conf_parse_ms(const char *s, long long *out) __attribute__((warn_unused_result));

#endif
