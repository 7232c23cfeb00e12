/* migrate.c — applies schema/NNNN_name.sql files once each, in order, checksummed. */
#include "common/migrate.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/caps.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/str.h"

/* Serialises migrators; any constant other code does not use. */
#define MIGRATE_LOCK "7306587213449516"

#define MAX_MIGRATIONS 1000

struct migration {
	int  version;
	char name[128];
	char checksum[65];
	char *sql;
};

const char *
sl_migrate_default_dir(void)
{
	const char *env = getenv("SLUICE_SCHEMA_DIR");

	return env && *env ? env : SLUICE_SCHEMA_DIR;
}

/* NNNN_lowercase_name.sql → version, or -1 when the name does not fit. */
static int
parse_name(const char *name)
{
	size_t len = strlen(name), i;
	long long v;

	if (len < 10 || len >= 128 || strcmp(name + len - 4, ".sql") || name[4] != '_')
		return -1;
	for (i = 5; i < len - 4; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return -1;
	}
	if (sl_parse_lln(name, 4, 1, 9999, &v))
		return -1;
	return (int)v;
}

static int
read_file(const char *path, char **out, struct sl_err *err)
{
	struct sl_buf b;
	char chunk[8192];
	size_t n;
	FILE *f = fopen(path, "rb");
	int rc = 0;

	*out = NULL;
	if (!f)
		return sl_err_set(err, SL_EIO, SL_RETRY_NO, "cannot read %s: %s", path, strerror(errno));
	sl_buf_init(&b, SL_MAX_SQL_TEXT);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		rc = sl_buf_add(&b, chunk, n);
		if (rc) {
			sl_err_set(err, rc, SL_RETRY_NO, "cannot read %s: too large or out of memory", path);
			goto out;
		}
	}
	if (ferror(f)) {
		rc = sl_err_set(err, SL_EIO, SL_RETRY_NO, "cannot read %s", path);
		goto out;
	}
	*out = sl_buf_detach(&b);
	if (!*out)
		rc = sl_err_set(err, SL_ENOMEM, SL_RETRY_NO, "out of memory");
out:
	sl_buf_release(&b);
	fclose(f);
	return rc;
}

static int
by_version(const void *a, const void *b)
{
	return ((const struct migration *)a)->version - ((const struct migration *)b)->version;
}

static void
free_list(struct migration *list, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		sl_free(list[i].sql);
	sl_free(list);
}

/* Reads every migration file of dir, sorted by version. */
static int
load_dir(const char *dir, struct migration **out, size_t *count, struct sl_err *err)
{
	struct migration *list = NULL;
	size_t n = 0, i;
	struct dirent *de;
	DIR *d = opendir(dir);
	char path[4096];
	unsigned char digest[32];
	int rc = 0;

	*out = NULL;
	*count = 0;
	if (!d)
		return sl_err_set(err, SL_EIO, SL_RETRY_NO, "cannot open migrations directory %s: %s",
		                  dir, strerror(errno));
	list = sl_calloc(MAX_MIGRATIONS, sizeof(*list));
	if (!list) {
		rc = sl_err_set(err, SL_ENOMEM, SL_RETRY_NO, "out of memory");
		goto out;
	}
	while ((de = readdir(d)) != NULL) {
		int version = parse_name(de->d_name);

		if (version < 0)
			continue;
		if (n == MAX_MIGRATIONS) {
			rc = sl_err_set(err, SL_ETOOLARGE, SL_RETRY_NO, "too many migrations in %s", dir);
			goto out;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		list[n].version = version;
		sl_strlcpy(list[n].name, de->d_name, sizeof(list[n].name));
		rc = read_file(path, &list[n].sql, err);
		if (rc)
			goto out;
		sl_sha256(list[n].sql, strlen(list[n].sql), digest);
		sl_hex(digest, sizeof(digest), list[n].checksum);
		n++;
	}
	qsort(list, n, sizeof(*list), by_version);
	for (i = 1; i < n; i++) {
		if (list[i].version == list[i - 1].version) {
			rc = sl_err_set(err, SL_ECONFLICT, SL_RETRY_NO,
			                "migrations %s and %s share a number",
			                list[i - 1].name, list[i].name);
			goto out;
		}
	}
	*out = list;
	*count = n;
	list = NULL;
out:
	if (list)
		free_list(list, n);
	closedir(d);
	return rc;
}

static const char bootstrap_sql[] =
	"CREATE SCHEMA IF NOT EXISTS sluice;"
	"CREATE TABLE IF NOT EXISTS sluice.schema_migration ("
	"  version    integer PRIMARY KEY,"
	"  name       text NOT NULL,"
	"  checksum   text NOT NULL,"
	"  applied_at timestamptz NOT NULL DEFAULT now())";

/* Creates the schema and the migration table if this is a new database. */
static int
bootstrap(struct sl_db *db, struct sl_err *err)
{
	PGresult *res = PQexec(sl_db_conn(db), bootstrap_sql);
	int rc = 0;

	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		rc = sl_db_error(db, res, err);
	PQclear(res);
	return rc;
}

/* Checks the recorded migrations against the files; fills *next_index. */
static int
check_applied(struct sl_db *db, const struct migration *list, size_t n,
              size_t *next_index, struct sl_err *err)
{
	PGresult *res = NULL;
	size_t i = 0;
	int row, rc;

	rc = sl_db_query(db, &res,
	                 "SELECT version, name, checksum FROM sluice.schema_migration ORDER BY version",
	                 0, NULL, err);
	if (rc)
		return rc;
	for (row = 0; row < PQntuples(res); row++) {
		long long version;
		const char *name = sl_pg_get(res, row, "name");
		const char *sum = sl_pg_get(res, row, "checksum");

		if (sl_parse_ll(sl_pg_get(res, row, "version"), 1, 9999, &version)) {
			rc = sl_err_set(err, SL_EINTERNAL, SL_RETRY_NO, "bad row in sluice.schema_migration");
			goto out;
		}
		if (i >= n || list[i].version != version) {
			rc = sl_err_set(err, SL_ECONFLICT, SL_RETRY_NO,
			                "the database has migration %s, which this program does not have",
			                name);
			sl_err_detail(err, "The database was migrated by a newer Sluice, or a file was "
			                   "removed from the migrations directory.");
			goto out;
		}
		if (strcmp(list[i].checksum, sum)) {
			rc = sl_err_set(err, SL_ECONFLICT, SL_RETRY_NO,
			                "migration %s was changed after it was applied", list[i].name);
			sl_err_detail(err, "Its checksum is %.12s… but %.12s… was applied. Migrations "
			                   "are forward-only: restore the file and add a new one.",
			              list[i].checksum, sum);
			goto out;
		}
		i++;
	}
	*next_index = i;
out:
	PQclear(res);
	return rc;
}

static int
apply_one(struct sl_db *db, const struct migration *m, struct sl_err *err)
{
	char version[16];
	const char *params[3] = { version, m->name, m->checksum };
	PGresult *res;
	int rc;

	rc = sl_db_exec(db, "BEGIN", 0, NULL, err);
	if (rc)
		return rc;
	/* A migration is a script of many statements: the simple-query protocol runs them all. */
	res = PQexec(sl_db_conn(db), m->sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
		char primary[sizeof(err->msg)];
		int n;

		sl_db_error(db, res, err);
		PQclear(res);
		sl_strlcpy(primary, err->msg, sizeof(primary));
		/* Truncating a long server message is fine; the file name comes first. */
		n = snprintf(err->msg, sizeof(err->msg), "migration %s failed: ", m->name);
		if (n > 0 && (size_t)n < sizeof(err->msg))
			sl_strlcpy(err->msg + n, primary, sizeof(err->msg) - (size_t)n);
		(void)!sl_db_exec(db, "ROLLBACK", 0, NULL, NULL);
		return err->code;
	}
	PQclear(res);
	snprintf(version, sizeof(version), "%d", m->version);
	rc = sl_db_exec(db, "INSERT INTO sluice.schema_migration (version, name, checksum) "
	                    "VALUES ($1, $2, $3)", 3, params, err);
	if (rc) {
		(void)!sl_db_exec(db, "ROLLBACK", 0, NULL, NULL);
		return rc;
	}
	return sl_db_exec(db, "COMMIT", 0, NULL, err);
}

int
sl_migrate(struct sl_db *db, const char *dir, int *applied, int *version, struct sl_err *err)
{
	struct migration *list = NULL;
	size_t n = 0, i, next = 0;
	int rc, locked = 0, count = 0;

	if (!dir)
		dir = sl_migrate_default_dir();
	rc = load_dir(dir, &list, &n, err);
	if (rc)
		return rc;
	rc = sl_db_exec(db, "SELECT pg_advisory_lock(" MIGRATE_LOCK ")", 0, NULL, err);
	if (rc)
		goto out;
	locked = 1;
	rc = bootstrap(db, err);
	if (rc)
		goto out;
	rc = check_applied(db, list, n, &next, err);
	if (rc)
		goto out;
	for (i = next; i < n; i++) {
		rc = apply_one(db, &list[i], err);
		if (rc)
			goto out;
		sl_log_info("migration applied", SLF_S("file", list[i].name), SLF_END);
		count++;
	}
	if (applied)
		*applied = count;
	if (version)
		*version = n ? list[n - 1].version : 0;
out:
	if (locked && sl_db_ok(db))
		(void)!sl_db_exec(db, "SELECT pg_advisory_unlock(" MIGRATE_LOCK ")", 0, NULL, NULL);
	free_list(list, n);
	return rc;
}
