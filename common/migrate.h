/* migrate.h — forward-only SQL migrations from schema/. */
#ifndef SL_MIGRATE_H
#define SL_MIGRATE_H

#include "common/db.h"

/*
 * Applies, in order, every migration file in `dir` (NNNN_name.sql) that the
 * database has not recorded in sluice.schema_migration: each in its own
 * transaction, recorded with its SHA-256.  dir NULL means $SLUICE_SCHEMA_DIR,
 * or the schema/ directory this program was built from.
 *
 * Refuses (SL_ECONFLICT, nothing applied) when an applied file's checksum
 * changed, when the database holds a migration this directory lacks, or when
 * two files share a number.  Safe when several run at once: a session-level
 * advisory lock serialises them, and the later ones find nothing to do.
 *
 * On success *applied is the number of files applied now and *version the
 * schema version after.  Either pointer may be NULL.
 */
int sl_migrate(struct sl_db *db, const char *dir, int *applied, int *version,
               struct sl_err *err) __attribute__((warn_unused_result));

/* The directory sl_migrate() uses when given NULL. */
const char *sl_migrate_default_dir(void);

#endif
