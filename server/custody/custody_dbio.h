/*
 * custody_dbio.h - keywardd --db-export FILE / --db-import FILE (run by
 * keywardctl db export|import; docs/fleet-migration.md): a key store moved
 * between engines (SQLCipher, PostgreSQL) under the same HSM master key,
 * sealed material kept sealed, through the document of dbio.h.
 *
 * Both run as the custody user (as --recover-admin does: started as root,
 * they become it), open the store [db] engine names with the HSM, and
 * never serve.  FILE "-" is standard output (export: the document only;
 * the report then goes to standard error) or standard input (import).
 *
 * Exit status: 0 done and verified; 1 refused (the file is malformed or
 * was changed, the target store is not empty, the verification or the
 * round trip failed: nothing or a partial import written, said which);
 * 2 configuration; 3 files; 4 HSM; 5 database.
 */
#ifndef KW_CUSTODY_DBIO_H
#define KW_CUSTODY_DBIO_H

#include "../config.h"

int kw_custody_db_export(struct kw_config *cfg, const char *path);
int kw_custody_db_import(struct kw_config *cfg, const char *path);

#endif
