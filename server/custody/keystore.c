/*
 * keystore.c - the SQLCipher key store (contract in keystore.h).
 *
 * One writer connection per store, serialised by ks->mu (and a read-only
 * one for the audit's long reads: audit_store.c).  Every mutation is one
 * BEGIN IMMEDIATE ... COMMIT that also appends its audit row; the in-memory
 * chain head (head_seq, head) only moves after COMMIT succeeded, so a failed
 * call leaves both the file and the chain untouched.  What keystore_int.h
 * declares is shared with audit_store.c and audit_read.c.
 *
 * sqlite codes are converted to KW_ERR_* in exactly one place (ks_fail).
 *
 * Callbacks (key_list, due_deletions, audit_query, token_list) run after the
 * rows were read and the internal lock released: a callback may call back
 * into the store (the deletion sweeper destroys keys from its callback).
 *
 * Choices the header leaves open, made here:
 *   - key_insert stores current_version 1 whatever row->current_version says;
 *     created/updated of 0 mean "now"; state "destroyed" is refused (INPUT).
 *   - key_update refuses state "destroyed" (BAD_STATE: use key_destroy) and a
 *     destroyed key (KEY_DESTROYED); key_add_version refuses a destroyed key
 *     (KEY_DESTROYED) and a version that is not current + 1 (BAD_STATE);
 *     key_destroy of a destroyed key is KEY_DESTROYED.
 *   - key_count counts keys that are not destroyed; token_count counts
 *     active (not revoked) tokens.
 *   - key_list: when cb stops the walk, next is the name of the row on which
 *     it stopped (that row counts as delivered).
 *   - due_deletions hands out at most 1000 keys per call (call again for
 *     more).
 *   - a NULL audit entry on a mutation writes a default row ("key.create",
 *     "key.update", ... with the key's name and result "ok").
 */
#define SQLITE_HAS_CODEC 1 /* declares sqlite3_key() in SQLCipher's header */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../common/names.h"
#include "keystore_int.h"

#define KS_DB_KEY_LEN 32


/* ---------------------------------------------------------------- schema */

/* Step i migrates a file from user_version i to i + 1.  Adding version 2 is
 * one more entry here and KW_SCHEMA_VERSION 2 in the header. */
static const char *const ks_migrations[] = {
        /* 0 -> 1 */
        "CREATE TABLE keys ("
        " id TEXT PRIMARY KEY NOT NULL,"
        " name TEXT UNIQUE NOT NULL,"            /* its index serves ORDER BY name */
        " type TEXT NOT NULL,"
        " size INTEGER NOT NULL,"
        " state TEXT NOT NULL,"
        " ops INTEGER NOT NULL,"
        " current_version INTEGER NOT NULL,"
        " created INTEGER NOT NULL,"
        " updated INTEGER NOT NULL,"
        " delete_at INTEGER NOT NULL DEFAULT 0,"
        " tags TEXT NOT NULL DEFAULT '{}',"
        " rules TEXT NOT NULL DEFAULT '{}',"
        " public_der BLOB);"
        "CREATE INDEX keys_state ON keys(state, delete_at);"
        "CREATE INDEX keys_type ON keys(type);"
        "CREATE TABLE key_versions ("
        " key_id TEXT NOT NULL REFERENCES keys(id),"
        " version INTEGER NOT NULL,"
        " blob BLOB NOT NULL,"
        " created INTEGER NOT NULL,"
        " PRIMARY KEY (key_id, version));"
        "CREATE TABLE audit ("
        " seq INTEGER PRIMARY KEY,"
        " ts_ms INTEGER NOT NULL,"
        " actor TEXT NOT NULL,"
        " action TEXT NOT NULL,"
        " key_name TEXT NOT NULL,"
        " result TEXT NOT NULL,"
        " detail TEXT NOT NULL,"
        " request_id TEXT NOT NULL,"
        " prev_hash BLOB NOT NULL,"
        " hash BLOB NOT NULL);"
        "CREATE INDEX audit_key_name ON audit(key_name, seq);"
        "CREATE INDEX audit_action ON audit(action, seq);"
        "CREATE TABLE tokens ("
        " id TEXT PRIMARY KEY NOT NULL,"
        " name TEXT UNIQUE NOT NULL,"
        " role TEXT NOT NULL,"
        " hash BLOB UNIQUE NOT NULL,"
        " created INTEGER NOT NULL,"
        " revoked INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE meta (k TEXT PRIMARY KEY NOT NULL, v TEXT);"
        "INSERT INTO meta (k, v) VALUES ('format', 'keyward');",
        /* 1 -> 2: AWS XKS key stores created through the admin API, and
         * their SigV4 credentials (secrets: inside the encrypted file only) */
        "CREATE TABLE xks_stores ("
        " name TEXT PRIMARY KEY NOT NULL,"
        " uri_prefix TEXT UNIQUE NOT NULL,"
        " region TEXT NOT NULL,"
        " created INTEGER NOT NULL);"
        "CREATE TABLE xks_credentials ("
        " akid TEXT PRIMARY KEY NOT NULL,"
        " store TEXT NOT NULL REFERENCES xks_stores(name),"
        " secret TEXT NOT NULL,"
        " created INTEGER NOT NULL,"
        " seq INTEGER NOT NULL);"
        "CREATE INDEX xks_credentials_store ON xks_credentials(store, seq);",
        /* 2 -> 3: the secrets are sealed under the HSM master key; rows of
         * version 2 (sealed = 0) are resealed by the custody process when it
         * first loads them */
        "ALTER TABLE xks_credentials ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0;",
        /* 3 -> 4: key uses are stored in batches, one row and one chain link
         * per group commit (audit_store.c, audit_codec.h); the rows of
         * version 3 stay where they are and keep verifying (one chain across
         * both tables, by seq); admin actions stay rows.  Retention prunes
         * exported records behind a checkpoint that holds the chain head. */
        "CREATE TABLE audit_batch ("
        " first_seq INTEGER PRIMARY KEY,"
        " last_seq INTEGER NOT NULL,"
        " min_ts_ms INTEGER NOT NULL,"
        " max_ts_ms INTEGER NOT NULL,"
        " prev_hash BLOB NOT NULL,"
        " hash BLOB NOT NULL,"
        " data BLOB NOT NULL);"           /* last: scans read no overflow page */
        "CREATE TABLE audit_batch_name ("
        " name TEXT NOT NULL,"            /* 'k:' key name, 'a:' action */
        " first_seq INTEGER NOT NULL,"
        " PRIMARY KEY (name, first_seq)) WITHOUT ROWID;"
        "CREATE TABLE audit_checkpoint ("
        " seq INTEGER PRIMARY KEY,"       /* the last record pruned */
        " hash BLOB NOT NULL,"            /* its chain hash: where verification starts */
        " ts_ms INTEGER NOT NULL,"
        " created_ms INTEGER NOT NULL,"
        " records INTEGER NOT NULL,"
        " export_file TEXT NOT NULL,"
        " export_sha256 BLOB NOT NULL);",
        /* 4 -> 5: console users (keystore_users.c): an argon2id encoded hash,
         * and the failed sign-ins and lock, kept across restarts */
        "CREATE TABLE users ("
        " name TEXT PRIMARY KEY NOT NULL,"
        " role TEXT NOT NULL,"
        " hash TEXT NOT NULL,"
        " created INTEGER NOT NULL,"
        " last_login INTEGER NOT NULL DEFAULT 0,"
        " failed INTEGER NOT NULL DEFAULT 0,"
        " locked_until INTEGER NOT NULL DEFAULT 0);",
};
_Static_assert(sizeof ks_migrations / sizeof ks_migrations[0] == KW_SCHEMA_VERSION,
               "one migration step per schema version");

#define SQL_KEY_GET "SELECT " KEY_COLS " FROM keys WHERE name = ?1"
#define SQL_GET_BLOB "SELECT blob FROM key_versions WHERE key_id = ?1 AND version = ?2"
#define SQL_TOKEN_FIND \
        "SELECT id, name, role, created, revoked, hash FROM tokens WHERE hash = ?1 AND revoked = 0"

/* ------------------------------------------------------ sqlite conversion */

/* The one place sqlite codes become KW_ERR_*.  The detail keeps sqlite's own
 * words (code text and message: table/column names, never data values). */
kw_result ks_fail(sqlite3 *db, int rc, const char *what)
{
        int code;
        switch (rc & 0xff) {
        case SQLITE_NOTADB:
                code = KW_ERR_DB_KEY_MISMATCH;
                break;
        case SQLITE_CORRUPT:
                code = KW_ERR_DB_CORRUPT;
                break;
        case SQLITE_IOERR:
        case SQLITE_FULL:
        case SQLITE_CANTOPEN:
        case SQLITE_READONLY:
                code = KW_ERR_IO;
                break;
        case SQLITE_NOMEM:
                code = KW_ERR_NOMEM;
                break;
        case SQLITE_CONSTRAINT:
                code = rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY
                               ? KW_ERR_EXISTS
                               : KW_ERR_STORAGE;
                break;
        default:
                code = KW_ERR_STORAGE;
                break;
        }
        kw_err_set_detail("key store %s: %s (%s)", what, sqlite3_errstr(rc),
                          db != NULL ? sqlite3_errmsg(db) : "no connection");
        KW_BAIL(code);
}

kw_result ks_check(struct kw_keystore *ks, int rc, const char *what)
{
        if (rc == SQLITE_OK)
                return KW_OK;
        return ks_fail(ks->db, rc, what);
}

kw_result ks_exec(struct kw_keystore *ks, const char *sql, const char *what)
{
        return ks_check(ks, sqlite3_exec(ks->db, sql, NULL, NULL, NULL), what);
}

static kw_result prepare_on(sqlite3 *db, const char *sql, sqlite3_stmt **ret)
{
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK) {
                sqlite3_finalize(st);
                return ks_fail(db, rc, "prepare");
        }
        *ret = st;
        return KW_OK;
}

kw_result ks_prepare(struct kw_keystore *ks, const char *sql, sqlite3_stmt **ret)
{
        return prepare_on(ks->db, sql, ret);
}

kw_result ks_rprepare(struct kw_keystore *ks, const char *sql, sqlite3_stmt **ret)
{
        return prepare_on(ks->rdb, sql, ret);
}

kw_result ks_step_done(struct kw_keystore *ks, sqlite3_stmt *st, const char *what)
{
        (void)ks;
        int rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return ks_fail(sqlite3_db_handle(st), rc == SQLITE_ROW ? SQLITE_MISUSE : rc, what);
        return KW_OK;
}

kw_result ks_step_row(struct kw_keystore *ks, sqlite3_stmt *st, const char *what, int *ret_row)
{
        (void)ks;
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                *ret_row = 1;
                return KW_OK;
        }
        if (rc == SQLITE_DONE) {
                *ret_row = 0;
                return KW_OK;
        }
        return ks_fail(sqlite3_db_handle(st), rc, what);
}

void ks_stmt_finalizep(sqlite3_stmt **st)
{
        if (*st != NULL)
                sqlite3_finalize(*st);
}
void ks_stmt_resetp(sqlite3_stmt **st)
{
        if (*st != NULL) {
                sqlite3_reset(*st);
                sqlite3_clear_bindings(*st);
        }
}

static kw_result bind_check(sqlite3_stmt *st, int rc)
{
        if (rc == SQLITE_OK)
                return KW_OK;
        return ks_fail(sqlite3_db_handle(st), rc, "bind");
}
kw_result ks_bind_text(struct kw_keystore *ks, sqlite3_stmt *st, int i, const char *s)
{
        (void)ks;
        return bind_check(st, s != NULL ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC)
                                        : sqlite3_bind_null(st, i));
}
kw_result ks_bind_blob(struct kw_keystore *ks, sqlite3_stmt *st, int i, const void *p, size_t n)
{
        (void)ks;
        if (p == NULL)
                return bind_check(st, sqlite3_bind_null(st, i));
        return bind_check(st, sqlite3_bind_blob(st, i, p, (int)n, SQLITE_STATIC));
}
kw_result ks_bind_i64(struct kw_keystore *ks, sqlite3_stmt *st, int i, int64_t v)
{
        (void)ks;
        return bind_check(st, sqlite3_bind_int64(st, i, v));
}

/* ------------------------------------------------------------- small helpers */

int64_t ks_now_s(void) { return (int64_t)time(NULL); }

int64_t ks_now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ transactions */

kw_result ks_tx_begin(struct kw_keystore *ks, struct ks_tx *tx)
{
        KW_TRY(ks_exec(ks, "BEGIN IMMEDIATE", "begin"));
        kw_result r = ks_audit_sync_head(ks);
        if (r.code != 0) {
                ks_tx_rollback(ks);
                return r;
        }
        tx->seq = ks->head_seq;
        memcpy(tx->head, ks->head, KS_HASH_LEN);
        return KW_OK;
}

void ks_tx_rollback(struct kw_keystore *ks)
{
        if (!sqlite3_get_autocommit(ks->db))
                sqlite3_exec(ks->db, "ROLLBACK", NULL, NULL, NULL);
}

kw_result ks_tx_commit(struct kw_keystore *ks, const struct ks_tx *tx)
{
        int rc = sqlite3_exec(ks->db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                kw_result r = ks_fail(ks->db, rc, "commit");
                ks_tx_rollback(ks);
                return r;
        }
        ks->head_seq = tx->seq;
        memcpy(ks->head, tx->head, KS_HASH_LEN);
        return KW_OK;
}

int ks_valid_name(const char *s) { return s != NULL && kw_name_valid(s); }

/* The caller's entry, or a default one naming the action and the key. */
const struct kw_audit_entry *ks_audit_or_default(const struct kw_audit_entry *e, struct kw_audit_entry *def,
                                                 const char *action, const char *key_name,
                                                 const char *detail)
{
        if (e != NULL)
                return e;
        *def = (struct kw_audit_entry){ .action = action, .key_name = key_name, .result = "ok",
                                        .detail = detail };
        return def;
}

/* ------------------------------------------------------------- row reading */

kw_result ks_col_text(sqlite3_stmt *st, int col, char *dst, size_t cap)
{
        const unsigned char *s = sqlite3_column_text(st, col);
        int n = sqlite3_column_bytes(st, col);
        if (s == NULL || n < 0 || (size_t)n >= cap || memchr(s, '\0', (size_t)n) != NULL) {
                kw_err_set_detail("key store: a stored %s does not fit its field",
                                  sqlite3_column_name(st, col));
                KW_BAIL(KW_ERR_DB_CORRUPT);
        }
        memcpy(dst, s, (size_t)n);
        dst[n] = '\0';
        return KW_OK;
}

/* ---------------------------------------------------------------- open/close */

static kw_result ks_create_file(const char *path)
{
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
                kw_err_set_detail("cannot open or create the key store %s: %s", path, strerror(errno));
                KW_BAIL(KW_ERR_IO);
        }
        close(fd);
        return KW_OK;
}

kw_result ks_apply_key(sqlite3 *db, const struct kw_secret *db_key)
{
        char khex[2 + 2 * KS_DB_KEY_LEN + 2]; /* x'<64 hex>' and a NUL */
        khex[0] = 'x';
        khex[1] = '\'';
        kw_audit_hex(db_key->p, KS_DB_KEY_LEN, khex + 2);
        khex[2 + 2 * KS_DB_KEY_LEN] = '\'';
        khex[3 + 2 * KS_DB_KEY_LEN] = '\0';
        int rc = sqlite3_key(db, khex, 3 + 2 * KS_DB_KEY_LEN);
        kw_wipe(khex, sizeof khex);
        if (rc != SQLITE_OK)
                return ks_fail(db, rc, "key");
        return KW_OK;
}

static kw_result ks_verify_key(struct kw_keystore *ks, const char *path)
{
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(ks->db, "SELECT count(*) FROM sqlite_master", -1, &st, NULL);
        if (rc == SQLITE_OK) {
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW)
                        rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
        if ((rc & 0xff) == SQLITE_NOTADB) {
                kw_err_set_detail("the database key does not match this database (%s)", path);
                KW_BAIL(KW_ERR_DB_KEY_MISMATCH);
        }
        return ks_check(ks, rc, "open");
}

static kw_result ks_pragmas(struct kw_keystore *ks)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "PRAGMA journal_mode=WAL", &st));
        int row = 0;
        KW_TRY(ks_step_row(ks, st, "journal_mode", &row));
        const unsigned char *mode = row ? sqlite3_column_text(st, 0) : NULL;
        if (mode == NULL || strcmp((const char *)mode, "wal") != 0) {
                kw_err_set_detail("key store: the file system does not allow journal_mode=WAL");
                KW_BAIL(KW_ERR_IO);
        }
        KW_TRY(ks_exec(ks, "PRAGMA synchronous=FULL", "pragma synchronous"));
        /* the -wal file is truncated back to 16 MiB after a checkpoint, so a
         * burst (a long reader holding checkpoints back) does not leave it large */
        KW_TRY(ks_exec(ks, "PRAGMA journal_size_limit=16777216", "pragma journal_size_limit"));
        KW_TRY(ks_exec(ks, "PRAGMA secure_delete=ON", "pragma secure_delete"));
        KW_TRY(ks_exec(ks, "PRAGMA foreign_keys=ON", "pragma foreign_keys"));
        KW_TRY(ks_check(ks, sqlite3_busy_timeout(ks->db, KS_BUSY_TIMEOUT_MS), "busy_timeout"));
        return KW_OK;
}

kw_result ks_pragma_int(struct kw_keystore *ks, const char *pragma, int64_t *ret)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, pragma, &st));
        int row = 0;
        KW_TRY(ks_step_row(ks, st, pragma, &row));
        KW_ENSURE(row, KW_ERR_STORAGE);
        *ret = sqlite3_column_int64(st, 0);
        return KW_OK;
}

static kw_result ks_user_version(struct kw_keystore *ks, int *ret)
{
        int64_t v = 0;
        KW_TRY(ks_pragma_int(ks, "PRAGMA user_version", &v));
        KW_ENSURE(v >= INT32_MIN && v <= INT32_MAX, KW_ERR_DB_CORRUPT);
        *ret = (int)v;
        return KW_OK;
}

/* Runs one step (from -> from + 1) inside the already open transaction. */
static kw_result ks_migrate_step(struct kw_keystore *ks, int from)
{
        char sql[64];
        KW_TRY(ks_exec(ks, ks_migrations[from], "migration"));
        /* PRAGMA takes no parameters; the number comes from our table, not input. */
        snprintf(sql, sizeof sql, "PRAGMA user_version=%d", from + 1);
        KW_TRY(ks_exec(ks, sql, "user_version"));
        return KW_OK;
}

/* Migrates one transaction per version; reads the version under the write
 * lock so that two processes cannot migrate the same file twice. */
static kw_result ks_migrate(struct kw_keystore *ks)
{
        for (;;) {
                KW_TRY(ks_exec(ks, "BEGIN IMMEDIATE", "begin"));
                int v = 0;
                kw_result r;
                KW_TRY_GOTO(r, ks_user_version(ks, &v), fail);
                if (v > KW_SCHEMA_VERSION || v < 0) {
                        kw_err_set_detail("the database schema version is %d, this program supports "
                                          "up to %d",
                                          v, KW_SCHEMA_VERSION);
                        r = KW_RESULT(KW_ERR_DB_VERSION);
                        kw_trace(r.code, __FILE__, __LINE__);
                        goto fail;
                }
                if (v == KW_SCHEMA_VERSION) {
                        ks_tx_rollback(ks);
                        ks->schema_version = v;
                        return KW_OK;
                }
                KW_TRY_GOTO(r, ks_migrate_step(ks, v), fail);
                KW_TRY_GOTO(r, ks_exec(ks, "COMMIT", "commit"), fail);
                continue;
fail:
                ks_tx_rollback(ks);
                return r;
        }
}

static void ks_free(struct kw_keystore *ks)
{
        sqlite3_finalize(ks->st_key_get);
        sqlite3_finalize(ks->st_get_blob);
        sqlite3_finalize(ks->st_token_find);
        ks->st_key_get = ks->st_get_blob = ks->st_token_find = NULL;
        ks_audit_close(ks);
        if (ks->db != NULL) {
                /* Fold the WAL back into the file and empty it, so that no
                 * overwritten page survives in a -wal file. */
                sqlite3_exec(ks->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
                if (sqlite3_close(ks->db) != SQLITE_OK)
                        sqlite3_close_v2(ks->db);
                ks->db = NULL;
        }
        pthread_mutex_destroy(&ks->mu);
        pthread_mutex_destroy(&ks->rmu);
        kw_wipe(ks->head, sizeof ks->head);
        free(ks->path);
        free(ks);
}

kw_result kw_keystore_open(const char *path, const struct kw_secret *db_key, struct kw_keystore **ret)
{
        KW_ENSURE(path != NULL && path[0] != '\0' && ret != NULL, KW_ERR_INPUT);
        if (db_key == NULL || db_key->p == NULL || db_key->len != KS_DB_KEY_LEN) {
                kw_err_set_detail("the database key must be %d bytes", KS_DB_KEY_LEN);
                KW_BAIL(KW_ERR_INPUT);
        }
        KW_TRY(ks_create_file(path));

        struct kw_keystore *ks = calloc(1, sizeof *ks);
        KW_ENSURE(ks != NULL, KW_ERR_NOMEM);
        ks->path = strdup(path);
        if (ks->path == NULL || pthread_mutex_init(&ks->mu, NULL) != 0) {
                free(ks->path);
                free(ks);
                KW_BAIL(KW_ERR_NOMEM);
        }
        if (pthread_mutex_init(&ks->rmu, NULL) != 0) {
                pthread_mutex_destroy(&ks->mu);
                free(ks->path);
                free(ks);
                KW_BAIL(KW_ERR_INTERNAL);
        }
        kw_result r;
        int rc = sqlite3_open_v2(path, &ks->db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
        if (rc != SQLITE_OK) {
                r = ks_fail(ks->db, rc, "open");
                goto fail;
        }
        sqlite3_extended_result_codes(ks->db, 1);
        KW_TRY_GOTO(r, ks_apply_key(ks->db, db_key), fail);
        KW_TRY_GOTO(r, ks_verify_key(ks, path), fail);
        KW_TRY_GOTO(r, ks_pragmas(ks), fail);
        KW_TRY_GOTO(r, ks_migrate(ks), fail);
        KW_TRY_GOTO(r, ks_prepare(ks, SQL_KEY_GET, &ks->st_key_get), fail);
        KW_TRY_GOTO(r, ks_prepare(ks, SQL_GET_BLOB, &ks->st_get_blob), fail);
        KW_TRY_GOTO(r, ks_prepare(ks, SQL_TOKEN_FIND, &ks->st_token_find), fail);
        KW_TRY_GOTO(r, ks_audit_open(ks, db_key), fail);
        *ret = ks;
        return KW_OK;
fail:
        ks_free(ks);
        return r;
}

kw_result kw_keystore_open_pg(const struct kw_pg_options *o, struct kw_keystore **ret)
{
        KW_ENSURE(o != NULL && ret != NULL, KW_ERR_INPUT);
        struct kw_keystore *ks = calloc(1, sizeof *ks);
        KW_ENSURE(ks != NULL, KW_ERR_NOMEM);
        kw_result r = kw_pg_open(o, &ks->pg);
        if (!kw_ok(r)) {
                free(ks);
                return r;
        }
        *ret = ks;
        return KW_OK;
}

struct kw_pgstore *kw_keystore_pg(struct kw_keystore *ks)
{
        return ks != NULL ? ks->pg : NULL;
}

void kw_keystore_close(struct kw_keystore *ks)
{
        if (ks == NULL)
                return;
        if (ks->pg != NULL) {
                kw_pg_close(ks->pg);
                free(ks);
                return;
        }
        ks_free(ks);
}

int kw_keystore_schema_version(struct kw_keystore *ks)
{
        if (ks == NULL)
                return 0;
        if (ks->pg != NULL)
                return kw_pg_schema_version(ks->pg);
        ks_lock(ks);
        int v = ks->schema_version;
        ks_unlock(ks);
        return v;
}

kw_result ks_grow(void **rows, size_t *cap, size_t n, size_t size)
{
        if (n < *cap)
                return KW_OK;
        size_t c = *cap ? *cap * 2 : 16;
        KW_ENSURE(c <= SIZE_MAX / size, KW_ERR_NOMEM);
        void *p = realloc(*rows, c * size);
        KW_ENSURE(p != NULL, KW_ERR_NOMEM);
        *rows = p;
        *cap = c;
        return KW_OK;
}

kw_result ks_count(struct kw_keystore *ks, const char *sql, uint64_t *ret)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, sql, &st));
        int row = 0;
        KW_TRY(ks_step_row(ks, st, "count", &row));
        KW_ENSURE(row, KW_ERR_STORAGE);
        *ret = (uint64_t)sqlite3_column_int64(st, 0);
        return KW_OK;
}
