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
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include "../common/names.h"
#include "keystore_int.h"

#define KS_DB_KEY_LEN 32
#define KS_BLOB_MAX (64u * 1024u)        /* one sealed key version          */
#define KS_DER_MAX (16u * 1024u)         /* RSA SubjectPublicKeyInfo         */
#define KS_JSON_MAX (16u * 1024u)        /* tags_json / rules_json           */
#define KS_LIST_MAX 1000u
#define KS_LIST_DEFAULT 100u
#define KS_DUE_MAX 1000u


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
};
_Static_assert(sizeof ks_migrations / sizeof ks_migrations[0] == KW_SCHEMA_VERSION,
               "one migration step per schema version");

#define KEY_COLS                                                                         \
        "id, name, type, size, state, ops, current_version, created, updated, delete_at, " \
        "tags, rules, public_der"

#define SQL_KEY_GET "SELECT " KEY_COLS " FROM keys WHERE name = ?1"
#define SQL_GET_BLOB "SELECT blob FROM key_versions WHERE key_id = ?1 AND version = ?2"
#define SQL_TOKEN_FIND \
        "SELECT id, name, role, created, revoked, hash FROM tokens WHERE hash = ?1 AND revoked = 0"
/* Filters are bound, never spliced: NULL parameters disable a condition. */
#define SQL_KEY_LIST                                                        \
        "SELECT " KEY_COLS " FROM keys"                                     \
        " WHERE name > ?1"                                                  \
        " AND (?2 IS NULL OR state = ?2)"                                   \
        " AND (?3 IS NULL OR type = ?3)"                                    \
        " AND (?4 IS NULL OR substr(name, 1, length(?4)) = ?4)"             \
        " AND (?5 OR ?2 IS NOT NULL OR state <> 'destroyed')"               \
        " ORDER BY name"

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

static int64_t now_s(void) { return (int64_t)time(NULL); }

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

static int valid_name(const char *s) { return s != NULL && kw_name_valid(s); }

static int valid_id(const char *s)
{
        if (s == NULL)
                return 0;
        for (size_t i = 0; i < 32; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return 0;
        return s[32] == '\0';
}

/* Token ids: the header fixes no format (custody uses 16 hex chars). */
static int valid_token_id(const char *s)
{
        return valid_name(s) && strlen(s) <= 32;
}

static int valid_state(const char *s)
{
        static const char *const states[] = { "enabled", "disabled", "pending_deletion", "destroyed" };
        if (s == NULL)
                return 0;
        for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
                if (strcmp(s, states[i]) == 0)
                        return 1;
        return 0;
}

static int valid_type(const char *s)
{
        return s != NULL && (strcmp(s, "AES") == 0 || strcmp(s, "RSA") == 0);
}

static int valid_role(const char *s)
{
        return s != NULL &&
               (strcmp(s, "admin") == 0 || strcmp(s, "operator") == 0 || strcmp(s, "auditor") == 0);
}

/* NULL is "{}"; otherwise a JSON object of at most KS_JSON_MAX bytes. */
static kw_result check_json_object(const char *s, const char *what)
{
        if (s == NULL)
                return KW_OK;
        if (strnlen(s, KS_JSON_MAX + 1) > KS_JSON_MAX) {
                kw_err_set_detail("%s is longer than %u bytes", what, KS_JSON_MAX);
                KW_BAIL(KW_ERR_TOO_LARGE);
        }
        cJSON *j = cJSON_Parse(s);
        int ok = j != NULL && cJSON_IsObject(j);
        cJSON_Delete(j);
        if (!ok) {
                kw_err_set_detail("%s is not a JSON object", what);
                KW_BAIL(KW_ERR_BAD_JSON);
        }
        return KW_OK;
}

static const char *json_or_empty(const char *s) { return s != NULL ? s : "{}"; }

/* The caller's entry, or a default one naming the action and the key. */
static const struct kw_audit_entry *audit_or_default(const struct kw_audit_entry *e,
                                                     struct kw_audit_entry *def, const char *action,
                                                     const char *key_name, const char *detail)
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

static kw_result col_dup_text(sqlite3_stmt *st, int col, char **ret)
{
        const unsigned char *s = sqlite3_column_text(st, col);
        int n = sqlite3_column_bytes(st, col);
        if (s == NULL || n < 0) {
                kw_err_set_detail("key store: a stored %s is missing", sqlite3_column_name(st, col));
                KW_BAIL(KW_ERR_DB_CORRUPT);
        }
        char *p = malloc((size_t)n + 1);
        KW_ENSURE(p != NULL, KW_ERR_NOMEM);
        memcpy(p, s, (size_t)n);
        p[n] = '\0';
        *ret = p;
        return KW_OK;
}

static kw_result col_u32(sqlite3_stmt *st, int col, uint32_t *ret)
{
        sqlite3_int64 v = sqlite3_column_int64(st, col);
        if (sqlite3_column_type(st, col) != SQLITE_INTEGER || v < 0 || v > (sqlite3_int64)UINT32_MAX) {
                kw_err_set_detail("key store: a stored %s is out of range", sqlite3_column_name(st, col));
                KW_BAIL(KW_ERR_DB_CORRUPT);
        }
        *ret = (uint32_t)v;
        return KW_OK;
}

/* Fills *ret from a row of KEY_COLS; *ret untouched on failure. */
static kw_result key_row_from_stmt(sqlite3_stmt *st, struct kw_key_row *ret)
{
        struct kw_key_row r;
        memset(&r, 0, sizeof r);
        kw_result res;
        KW_TRY_GOTO(res, ks_col_text(st, 0, r.id, sizeof r.id), fail);
        KW_TRY_GOTO(res, ks_col_text(st, 1, r.name, sizeof r.name), fail);
        KW_TRY_GOTO(res, ks_col_text(st, 2, r.type, sizeof r.type), fail);
        KW_TRY_GOTO(res, col_u32(st, 3, &r.size), fail);
        KW_TRY_GOTO(res, ks_col_text(st, 4, r.state, sizeof r.state), fail);
        KW_TRY_GOTO(res, col_u32(st, 5, &r.ops), fail);
        KW_TRY_GOTO(res, col_u32(st, 6, &r.current_version), fail);
        r.created = sqlite3_column_int64(st, 7);
        r.updated = sqlite3_column_int64(st, 8);
        r.delete_at = sqlite3_column_int64(st, 9);
        KW_TRY_GOTO(res, col_dup_text(st, 10, &r.tags_json), fail);
        KW_TRY_GOTO(res, col_dup_text(st, 11, &r.rules_json), fail);
        if (sqlite3_column_type(st, 12) != SQLITE_NULL) {
                const void *p = sqlite3_column_blob(st, 12);
                int n = sqlite3_column_bytes(st, 12);
                if (p != NULL && n > 0) {
                        r.public_der = malloc((size_t)n);
                        if (r.public_der == NULL) {
                                res = KW_RESULT(KW_ERR_NOMEM);
                                goto fail;
                        }
                        memcpy(r.public_der, p, (size_t)n);
                        r.public_der_len = (size_t)n;
                }
        }
        *ret = r;
        return KW_OK;
fail:
        kw_key_row_clear(&r);
        return res;
}

void kw_key_row_clear(struct kw_key_row *row)
{
        if (row == NULL)
                return;
        free(row->tags_json);
        free(row->rules_json);
        free(row->public_der);
        memset(row, 0, sizeof *row);
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

static kw_result ks_user_version(struct kw_keystore *ks, int *ret)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "PRAGMA user_version", &st));
        int row = 0;
        KW_TRY(ks_step_row(ks, st, "user_version", &row));
        KW_ENSURE(row, KW_ERR_STORAGE);
        *ret = sqlite3_column_int(st, 0);
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

void kw_keystore_close(struct kw_keystore *ks)
{
        if (ks == NULL)
                return;
        ks_free(ks);
}

int kw_keystore_schema_version(struct kw_keystore *ks)
{
        if (ks == NULL)
                return 0;
        ks_lock(ks);
        int v = ks->schema_version;
        ks_unlock(ks);
        return v;
}

/* ------------------------------------------------------------------ keys */

static kw_result check_key_mutables(const struct kw_key_row *row)
{
        if (!valid_state(row->state)) {
                kw_err_set_detail("unknown key state");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        KW_TRY(check_json_object(row->tags_json, "tags"));
        KW_TRY(check_json_object(row->rules_json, "rules"));
        return KW_OK;
}

static kw_result check_blob(const uint8_t *blob, size_t blob_len)
{
        KW_ENSURE(blob != NULL && blob_len > 0, KW_ERR_INPUT);
        if (blob_len > KS_BLOB_MAX) {
                kw_err_set_detail("a sealed key version is longer than %u bytes", KS_BLOB_MAX);
                KW_BAIL(KW_ERR_TOO_LARGE);
        }
        return KW_OK;
}

static kw_result key_insert_tx(struct kw_keystore *ks, struct ks_tx *tx, const struct kw_key_row *row,
                               const uint8_t *blob, size_t blob_len, const struct kw_audit_entry *audit)
{
        int64_t created = row->created != 0 ? row->created : now_s();
        int64_t updated = row->updated != 0 ? row->updated : created;
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks,
                          "INSERT INTO keys (" KEY_COLS ") VALUES "
                          "(?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?9, ?10, ?11, ?12)",
                          &st));
        KW_TRY(ks_bind_text(ks, st, 1, row->id));
        KW_TRY(ks_bind_text(ks, st, 2, row->name));
        KW_TRY(ks_bind_text(ks, st, 3, row->type));
        KW_TRY(ks_bind_i64(ks, st, 4, row->size));
        KW_TRY(ks_bind_text(ks, st, 5, row->state));
        KW_TRY(ks_bind_i64(ks, st, 6, row->ops));
        KW_TRY(ks_bind_i64(ks, st, 7, created));
        KW_TRY(ks_bind_i64(ks, st, 8, updated));
        KW_TRY(ks_bind_i64(ks, st, 9, row->delete_at));
        KW_TRY(ks_bind_text(ks, st, 10, json_or_empty(row->tags_json)));
        KW_TRY(ks_bind_text(ks, st, 11, json_or_empty(row->rules_json)));
        KW_TRY(ks_bind_blob(ks, st, 12, row->public_der_len ? row->public_der : NULL, row->public_der_len));
        kw_result r = ks_step_done(ks, st, "key insert");
        if (r.code == KW_ERR_EXISTS)
                kw_err_set_detail("the key name or id is already in use (%s)", sqlite3_errmsg(ks->db));
        KW_TRY(r);

        sqlite3_stmt *sv _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "INSERT INTO key_versions (key_id, version, blob, created)"
                              " VALUES (?1, 1, ?2, ?3)", &sv));
        KW_TRY(ks_bind_text(ks, sv, 1, row->id));
        KW_TRY(ks_bind_blob(ks, sv, 2, blob, blob_len));
        KW_TRY(ks_bind_i64(ks, sv, 3, created));
        KW_TRY(ks_step_done(ks, sv, "key version insert"));
        struct kw_audit_entry def;
        return ks_tx_audit(ks, tx, audit_or_default(audit, &def, "key.create", row->name, NULL));
}

kw_result kw_keystore_key_insert(struct kw_keystore *ks, const struct kw_key_row *row,
                                 const uint8_t *blob, size_t blob_len,
                                 const struct kw_audit_entry *audit)
{
        KW_ENSURE(ks != NULL && row != NULL, KW_ERR_INPUT);
        KW_ENSURE(valid_id(row->id), KW_ERR_BAD_FIELD);
        KW_ENSURE(valid_name(row->name), KW_ERR_BAD_NAME);
        KW_ENSURE(valid_type(row->type), KW_ERR_BAD_FIELD);
        KW_ENSURE(row->size > 0, KW_ERR_BAD_FIELD);
        KW_TRY(check_key_mutables(row));
        if (strcmp(row->state, "destroyed") == 0) {
                kw_err_set_detail("a new key cannot be destroyed");
                KW_BAIL(KW_ERR_BAD_STATE);
        }
        KW_ENSURE(row->public_der != NULL || row->public_der_len == 0, KW_ERR_INPUT);
        KW_ENSURE(row->public_der_len <= KS_DER_MAX, KW_ERR_TOO_LARGE);
        KW_TRY(check_blob(blob, blob_len));
        KW_TRY(ks_check_audit_entry(audit));
        return KS_RUN_TX(ks, tx, key_insert_tx(ks, tx, row, blob, blob_len, audit));
}

kw_result kw_keystore_key_get(struct kw_keystore *ks, const char *name, struct kw_key_row *ret)
{
        KW_ENSURE(ks != NULL && name != NULL && ret != NULL, KW_ERR_INPUT);
        KW_ENSURE(strnlen(name, 65) <= 64, KW_ERR_BAD_NAME);
        ks_lock(ks);
        kw_result r;
        {
                _cleanup_reset_ sqlite3_stmt *st = ks->st_key_get;
                int row = 0;
                r = ks_bind_text(ks, st, 1, name);
                if (kw_ok(r))
                        r = ks_step_row(ks, st, "key get", &row);
                if (kw_ok(r) && !row) {
                        kw_err_set_detail("no key with this name");
                        r = KW_RESULT(KW_ERR_NOT_FOUND);
                }
                if (kw_ok(r))
                        r = key_row_from_stmt(st, ret);
        }
        ks_unlock(ks);
        return r;
}

kw_result kw_keystore_key_get_blob(struct kw_keystore *ks, const char *key_id, uint32_t version,
                                   struct kw_buf *out)
{
        KW_ENSURE(ks != NULL && key_id != NULL && out != NULL, KW_ERR_INPUT);
        KW_ENSURE(valid_id(key_id), KW_ERR_BAD_FIELD);
        ks_lock(ks);
        kw_result r;
        {
                _cleanup_reset_ sqlite3_stmt *st = ks->st_get_blob;
                int row = 0;
                r = ks_bind_text(ks, st, 1, key_id);
                if (kw_ok(r))
                        r = ks_bind_i64(ks, st, 2, version);
                if (kw_ok(r))
                        r = ks_step_row(ks, st, "key blob get", &row);
                if (kw_ok(r) && !row) {
                        kw_err_set_detail("no such key version");
                        r = KW_RESULT(KW_ERR_NOT_FOUND);
                }
                if (kw_ok(r)) {
                        const void *p = sqlite3_column_blob(st, 0);
                        int n = sqlite3_column_bytes(st, 0);
                        if (p == NULL || n <= 0) {
                                kw_err_set_detail("key store: an empty sealed key version");
                                r = KW_RESULT(KW_ERR_DB_CORRUPT);
                        } else {
                                r = kw_buf_put(out, p, (size_t)n);
                        }
                }
        }
        ks_unlock(ks);
        return r;
}

/* "k=v": does tags_json have k whose value is the string v? */
static int tags_match(const char *tags_json, const char *k, size_t klen, const char *v)
{
        cJSON *j = cJSON_Parse(tags_json);
        int match = 0;
        if (j != NULL && cJSON_IsObject(j)) {
                const cJSON *it;
                cJSON_ArrayForEach(it, j)
                {
                        if (it->string != NULL && strlen(it->string) == klen &&
                            memcmp(it->string, k, klen) == 0) {
                                match = cJSON_IsString(it) && it->valuestring != NULL &&
                                        strcmp(it->valuestring, v) == 0;
                                break;
                        }
                }
        }
        cJSON_Delete(j);
        return match;
}

struct key_vec {
        struct kw_key_row *rows;
        size_t n, cap;
};

static void key_vec_free(struct key_vec *v)
{
        for (size_t i = 0; i < v->n; i++)
                kw_key_row_clear(&v->rows[i]);
        free(v->rows);
        memset(v, 0, sizeof *v);
}

static kw_result key_vec_push(struct key_vec *v, sqlite3_stmt *st)
{
        if (v->n == v->cap) {
                size_t cap = v->cap ? v->cap * 2 : 16;
                struct kw_key_row *p = realloc(v->rows, cap * sizeof *p);
                KW_ENSURE(p != NULL, KW_ERR_NOMEM);
                v->rows = p;
                v->cap = cap;
        }
        memset(&v->rows[v->n], 0, sizeof v->rows[v->n]);
        KW_TRY(key_row_from_stmt(st, &v->rows[v->n]));
        v->n++;
        return KW_OK;
}

struct tag_filter {
        const char *k, *v;
        size_t klen;
};

/* Reads up to limit matching rows into out; *ret_more = 1 when at least one
 * more matching row follows. */
static kw_result key_list_read(struct kw_keystore *ks, const struct kw_key_filter *f, uint32_t limit,
                               const struct tag_filter *tag, struct key_vec *out, int *ret_more)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, SQL_KEY_LIST, &st));
        KW_TRY(ks_bind_text(ks, st, 1, f->after_name != NULL ? f->after_name : ""));
        KW_TRY(ks_bind_text(ks, st, 2, f->state));
        KW_TRY(ks_bind_text(ks, st, 3, f->type));
        KW_TRY(ks_bind_text(ks, st, 4, f->name_prefix));
        KW_TRY(ks_bind_i64(ks, st, 5, f->include_destroyed ? 1 : 0));
        int more = 0;
        for (;;) {
                int row = 0;
                KW_TRY(ks_step_row(ks, st, "key list", &row));
                if (!row)
                        break;
                if (tag->k != NULL) {
                        const unsigned char *tj = sqlite3_column_text(st, 10);
                        if (tj == NULL || !tags_match((const char *)tj, tag->k, tag->klen, tag->v))
                                continue;
                }
                if (out->n == limit) {
                        more = 1;
                        break;
                }
                KW_TRY(key_vec_push(out, st));
        }
        *ret_more = more;
        return KW_OK;
}

kw_result kw_keystore_key_list(struct kw_keystore *ks, const struct kw_key_filter *f,
                               int (*cb)(const struct kw_key_row *row, void *arg), void *arg,
                               char next[65])
{
        static const struct kw_key_filter none = { 0 };
        KW_ENSURE(ks != NULL && cb != NULL && next != NULL, KW_ERR_INPUT);
        if (f == NULL)
                f = &none;
        uint32_t limit = f->limit != 0 ? f->limit : KS_LIST_DEFAULT;
        if (limit > KS_LIST_MAX) {
                kw_err_set_detail("limit must be 1..%u", KS_LIST_MAX);
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        KW_ENSURE(f->state == NULL || valid_state(f->state), KW_ERR_BAD_FIELD);
        KW_ENSURE(f->type == NULL || valid_type(f->type), KW_ERR_BAD_FIELD);
        KW_ENSURE(f->name_prefix == NULL || strnlen(f->name_prefix, 65) <= 64, KW_ERR_BAD_NAME);
        KW_ENSURE(f->after_name == NULL || strnlen(f->after_name, 65) <= 64, KW_ERR_BAD_NAME);
        struct tag_filter tag = { 0 };
        if (f->tag != NULL) {
                const char *eq = strchr(f->tag, '=');
                if (eq == NULL || eq == f->tag || strnlen(f->tag, 1025) > 1024) {
                        kw_err_set_detail("a tag filter is k=v with a non-empty k");
                        KW_BAIL(KW_ERR_BAD_FIELD);
                }
                tag = (struct tag_filter){ .k = f->tag, .klen = (size_t)(eq - f->tag), .v = eq + 1 };
        }

        struct key_vec v = { 0 };
        int more = 0;
        ks_lock(ks);
        kw_result r = key_list_read(ks, f, limit, &tag, &v, &more);
        ks_unlock(ks);
        if (!kw_ok(r)) {
                key_vec_free(&v);
                return r;
        }
        size_t i = 0;
        int stopped = 0;
        for (; i < v.n; i++) {
                if (cb(&v.rows[i], arg) != 0) {
                        stopped = 1;
                        break;
                }
        }
        next[0] = '\0';
        if (stopped)
                memcpy(next, v.rows[i].name, sizeof v.rows[i].name);
        else if (more && v.n > 0)
                memcpy(next, v.rows[v.n - 1].name, sizeof v.rows[v.n - 1].name);
        key_vec_free(&v);
        return KW_OK;
}

static kw_result ks_count(struct kw_keystore *ks, const char *sql, uint64_t *ret)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, sql, &st));
        int row = 0;
        KW_TRY(ks_step_row(ks, st, "count", &row));
        KW_ENSURE(row, KW_ERR_STORAGE);
        *ret = (uint64_t)sqlite3_column_int64(st, 0);
        return KW_OK;
}

kw_result kw_keystore_key_count(struct kw_keystore *ks, uint64_t *ret)
{
        KW_ENSURE(ks != NULL && ret != NULL, KW_ERR_INPUT);
        ks_lock(ks);
        kw_result r = ks_count(ks, "SELECT count(*) FROM keys WHERE state <> 'destroyed'", ret);
        ks_unlock(ks);
        return r;
}

/* Inside a transaction: the state and name of key_id, NOT_FOUND or
 * KEY_DESTROYED. */
static kw_result tx_live_key(struct kw_keystore *ks, const char *key_id, char name[65],
                             uint32_t *ret_version)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "SELECT name, state, current_version FROM keys WHERE id = ?1", &st));
        KW_TRY(ks_bind_text(ks, st, 1, key_id));
        int row = 0;
        KW_TRY(ks_step_row(ks, st, "key lookup", &row));
        if (!row) {
                kw_err_set_detail("no key with this id");
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        char state[20];
        KW_TRY(ks_col_text(st, 0, name, 65));
        KW_TRY(ks_col_text(st, 1, state, sizeof state));
        KW_TRY(col_u32(st, 2, ret_version));
        if (strcmp(state, "destroyed") == 0) {
                kw_err_set_detail("the key is destroyed");
                KW_BAIL(KW_ERR_KEY_DESTROYED);
        }
        return KW_OK;
}

static kw_result key_update_tx(struct kw_keystore *ks, struct ks_tx *tx, const struct kw_key_row *row,
                               const struct kw_audit_entry *audit)
{
        char name[65];
        uint32_t cur;
        KW_TRY(tx_live_key(ks, row->id, name, &cur));
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks,
                          "UPDATE keys SET state = ?2, ops = ?3, tags = ?4, rules = ?5,"
                          " delete_at = ?6, updated = ?7 WHERE id = ?1",
                          &st));
        KW_TRY(ks_bind_text(ks, st, 1, row->id));
        KW_TRY(ks_bind_text(ks, st, 2, row->state));
        KW_TRY(ks_bind_i64(ks, st, 3, row->ops));
        KW_TRY(ks_bind_text(ks, st, 4, json_or_empty(row->tags_json)));
        KW_TRY(ks_bind_text(ks, st, 5, json_or_empty(row->rules_json)));
        KW_TRY(ks_bind_i64(ks, st, 6, row->delete_at));
        KW_TRY(ks_bind_i64(ks, st, 7, row->updated != 0 ? row->updated : now_s()));
        KW_TRY(ks_step_done(ks, st, "key update"));
        struct kw_audit_entry def;
        return ks_tx_audit(ks, tx, audit_or_default(audit, &def, "key.update", name, NULL));
}

kw_result kw_keystore_key_update(struct kw_keystore *ks, const struct kw_key_row *row,
                                 const struct kw_audit_entry *audit)
{
        KW_ENSURE(ks != NULL && row != NULL, KW_ERR_INPUT);
        KW_ENSURE(valid_id(row->id), KW_ERR_BAD_FIELD);
        KW_TRY(check_key_mutables(row));
        if (strcmp(row->state, "destroyed") == 0) {
                kw_err_set_detail("keys are destroyed with key_destroy, not by an update");
                KW_BAIL(KW_ERR_BAD_STATE);
        }
        KW_TRY(ks_check_audit_entry(audit));
        return KS_RUN_TX(ks, tx, key_update_tx(ks, tx, row, audit));
}

static kw_result key_add_version_tx(struct kw_keystore *ks, struct ks_tx *tx, const char *key_id,
                                    uint32_t version, const uint8_t *blob, size_t blob_len,
                                    const uint8_t *public_der, size_t public_der_len,
                                    const struct kw_audit_entry *audit)
{
        char name[65];
        uint32_t cur;
        KW_TRY(tx_live_key(ks, key_id, name, &cur));
        if (cur == UINT32_MAX || version != cur + 1) {
                kw_err_set_detail("version %u is not the current version %u plus one", version, cur);
                KW_BAIL(KW_ERR_BAD_STATE);
        }
        int64_t now = now_s();
        sqlite3_stmt *sv _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "INSERT INTO key_versions (key_id, version, blob, created)"
                              " VALUES (?1, ?2, ?3, ?4)", &sv));
        KW_TRY(ks_bind_text(ks, sv, 1, key_id));
        KW_TRY(ks_bind_i64(ks, sv, 2, version));
        KW_TRY(ks_bind_blob(ks, sv, 3, blob, blob_len));
        KW_TRY(ks_bind_i64(ks, sv, 4, now));
        KW_TRY(ks_step_done(ks, sv, "key version insert"));

        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, public_der != NULL
                                  ? "UPDATE keys SET current_version = ?2, updated = ?3, public_der = ?4"
                                    " WHERE id = ?1"
                                  : "UPDATE keys SET current_version = ?2, updated = ?3 WHERE id = ?1",
                          &st));
        KW_TRY(ks_bind_text(ks, st, 1, key_id));
        KW_TRY(ks_bind_i64(ks, st, 2, version));
        KW_TRY(ks_bind_i64(ks, st, 3, now));
        if (public_der != NULL)
                KW_TRY(ks_bind_blob(ks, st, 4, public_der, public_der_len));
        KW_TRY(ks_step_done(ks, st, "key version update"));
        struct kw_audit_entry def;
        return ks_tx_audit(ks, tx, audit_or_default(audit, &def, "key.rotate", name, NULL));
}

kw_result kw_keystore_key_add_version(struct kw_keystore *ks, const char *key_id, uint32_t version,
                                      const uint8_t *blob, size_t blob_len,
                                      const uint8_t *public_der, size_t public_der_len,
                                      const struct kw_audit_entry *audit)
{
        KW_ENSURE(ks != NULL && key_id != NULL, KW_ERR_INPUT);
        KW_ENSURE(valid_id(key_id), KW_ERR_BAD_FIELD);
        KW_TRY(check_blob(blob, blob_len));
        KW_ENSURE(public_der == NULL || (public_der_len > 0 && public_der_len <= 64 * 1024),
                  KW_ERR_BAD_FIELD);
        KW_TRY(ks_check_audit_entry(audit));
        return KS_RUN_TX(ks, tx, key_add_version_tx(ks, tx, key_id, version, blob, blob_len,
                                                    public_der, public_der_len, audit));
}

static kw_result key_destroy_tx(struct kw_keystore *ks, struct ks_tx *tx, const char *key_id,
                                const struct kw_audit_entry *audit)
{
        char name[65];
        uint32_t cur;
        KW_TRY(tx_live_key(ks, key_id, name, &cur));
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks,
                          "UPDATE keys SET state = 'destroyed', delete_at = 0, updated = ?2"
                          " WHERE id = ?1",
                          &st));
        KW_TRY(ks_bind_text(ks, st, 1, key_id));
        KW_TRY(ks_bind_i64(ks, st, 2, now_s()));
        KW_TRY(ks_step_done(ks, st, "key destroy"));
        /* secure_delete=ON: the freed cells are overwritten with zeros. */
        sqlite3_stmt *sd _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "DELETE FROM key_versions WHERE key_id = ?1", &sd));
        KW_TRY(ks_bind_text(ks, sd, 1, key_id));
        KW_TRY(ks_step_done(ks, sd, "key versions delete"));
        struct kw_audit_entry def;
        return ks_tx_audit(ks, tx, audit_or_default(audit, &def, "key.destroy", name, NULL));
}

kw_result kw_keystore_key_destroy(struct kw_keystore *ks, const char *key_id,
                                  const struct kw_audit_entry *audit)
{
        KW_ENSURE(ks != NULL && key_id != NULL, KW_ERR_INPUT);
        KW_ENSURE(valid_id(key_id), KW_ERR_BAD_FIELD);
        KW_TRY(ks_check_audit_entry(audit));
        return KS_RUN_TX(ks, tx, key_destroy_tx(ks, tx, key_id, audit));
}

struct due_key {
        char id[33];
        char name[65];
};

static kw_result due_read(struct kw_keystore *ks, int64_t now, struct due_key *out, size_t *ret_n)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks,
                          "SELECT id, name FROM keys WHERE state = 'pending_deletion'"
                          " AND delete_at <= ?1 ORDER BY delete_at, name LIMIT ?2",
                          &st));
        KW_TRY(ks_bind_i64(ks, st, 1, now));
        KW_TRY(ks_bind_i64(ks, st, 2, KS_DUE_MAX));
        size_t n = 0;
        for (;;) {
                int row = 0;
                KW_TRY(ks_step_row(ks, st, "due deletions", &row));
                if (!row || n == KS_DUE_MAX)
                        break;
                KW_TRY(ks_col_text(st, 0, out[n].id, sizeof out[n].id));
                KW_TRY(ks_col_text(st, 1, out[n].name, sizeof out[n].name));
                n++;
        }
        *ret_n = n;
        return KW_OK;
}

kw_result kw_keystore_due_deletions(struct kw_keystore *ks, int64_t now,
                                    int (*cb)(const char *key_id, const char *name, void *arg),
                                    void *arg)
{
        KW_ENSURE(ks != NULL && cb != NULL, KW_ERR_INPUT);
        struct due_key *keys = calloc(KS_DUE_MAX, sizeof *keys);
        KW_ENSURE(keys != NULL, KW_ERR_NOMEM);
        size_t n = 0;
        ks_lock(ks);
        kw_result r = due_read(ks, now, keys, &n);
        ks_unlock(ks);
        for (size_t i = 0; kw_ok(r) && i < n; i++)
                if (cb(keys[i].id, keys[i].name, arg) != 0)
                        break;
        free(keys);
        return r;
}

/* ---------------------------------------------------------------- tokens */

static kw_result token_row_from_stmt(sqlite3_stmt *st, struct kw_token_row *ret)
{
        struct kw_token_row t;
        memset(&t, 0, sizeof t);
        KW_TRY(ks_col_text(st, 0, t.id, sizeof t.id));
        KW_TRY(ks_col_text(st, 1, t.name, sizeof t.name));
        KW_TRY(ks_col_text(st, 2, t.role, sizeof t.role));
        t.created = sqlite3_column_int64(st, 3);
        t.revoked = sqlite3_column_int64(st, 4);
        *ret = t;
        return KW_OK;
}

static kw_result token_insert_tx(struct kw_keystore *ks, struct ks_tx *tx,
                                 const struct kw_token_row *row, const uint8_t hash[32],
                                 const struct kw_audit_entry *audit)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks,
                          "INSERT INTO tokens (id, name, role, hash, created, revoked)"
                          " VALUES (?1, ?2, ?3, ?4, ?5, 0)",
                          &st));
        KW_TRY(ks_bind_text(ks, st, 1, row->id));
        KW_TRY(ks_bind_text(ks, st, 2, row->name));
        KW_TRY(ks_bind_text(ks, st, 3, row->role));
        KW_TRY(ks_bind_blob(ks, st, 4, hash, KS_HASH_LEN));
        KW_TRY(ks_bind_i64(ks, st, 5, row->created != 0 ? row->created : now_s()));
        KW_TRY(ks_step_done(ks, st, "token insert"));
        struct kw_audit_entry def;
        return ks_tx_audit(ks, tx, audit_or_default(audit, &def, "token.create", NULL, row->name));
}

kw_result kw_keystore_token_insert(struct kw_keystore *ks, const struct kw_token_row *row,
                                   const uint8_t hash[32], const struct kw_audit_entry *audit)
{
        KW_ENSURE(ks != NULL && row != NULL && hash != NULL, KW_ERR_INPUT);
        KW_ENSURE(valid_token_id(row->id), KW_ERR_BAD_FIELD);
        KW_ENSURE(valid_name(row->name), KW_ERR_BAD_NAME);
        KW_ENSURE(valid_role(row->role), KW_ERR_BAD_FIELD);
        KW_TRY(ks_check_audit_entry(audit));
        kw_result r = KS_RUN_TX(ks, tx, token_insert_tx(ks, tx, row, hash, audit));
        if (r.code == KW_ERR_EXISTS)
                kw_err_set_detail("the token name, id or hash is already in use");
        return r;
}

kw_result kw_keystore_token_find(struct kw_keystore *ks, const uint8_t hash[32],
                                 struct kw_token_row *ret)
{
        KW_ENSURE(ks != NULL && hash != NULL && ret != NULL, KW_ERR_INPUT);
        ks_lock(ks);
        kw_result r;
        {
                _cleanup_reset_ sqlite3_stmt *st = ks->st_token_find;
                int row = 0;
                r = ks_bind_blob(ks, st, 1, hash, KS_HASH_LEN);
                if (kw_ok(r))
                        r = ks_step_row(ks, st, "token find", &row);
                if (kw_ok(r)) {
                        /* The index found the row; confirm in constant time. */
                        const void *h = row ? sqlite3_column_blob(st, 5) : NULL;
                        if (h == NULL || sqlite3_column_bytes(st, 5) != KS_HASH_LEN ||
                            CRYPTO_memcmp(h, hash, KS_HASH_LEN) != 0) { /* lint: allow (constant time) */
                                kw_err_set_detail("no active token with this value");
                                r = KW_RESULT(KW_ERR_NOT_FOUND);
                        }
                }
                if (kw_ok(r))
                        r = token_row_from_stmt(st, ret);
        }
        ks_unlock(ks);
        return r;
}

struct token_vec {
        struct kw_token_row *rows;
        size_t n, cap;
};

static kw_result token_list_read(struct kw_keystore *ks, struct token_vec *v)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "SELECT id, name, role, created, revoked FROM tokens ORDER BY name", &st));
        for (;;) {
                int row = 0;
                KW_TRY(ks_step_row(ks, st, "token list", &row));
                if (!row)
                        break;
                if (v->n == v->cap) {
                        size_t cap = v->cap ? v->cap * 2 : 16;
                        struct kw_token_row *p = realloc(v->rows, cap * sizeof *p);
                        KW_ENSURE(p != NULL, KW_ERR_NOMEM);
                        v->rows = p;
                        v->cap = cap;
                }
                KW_TRY(token_row_from_stmt(st, &v->rows[v->n]));
                v->n++;
        }
        return KW_OK;
}

kw_result kw_keystore_token_list(struct kw_keystore *ks,
                                 int (*cb)(const struct kw_token_row *row, void *arg), void *arg)
{
        KW_ENSURE(ks != NULL && cb != NULL, KW_ERR_INPUT);
        struct token_vec v = { 0 };
        ks_lock(ks);
        kw_result r = token_list_read(ks, &v);
        ks_unlock(ks);
        for (size_t i = 0; kw_ok(r) && i < v.n; i++)
                if (cb(&v.rows[i], arg) != 0)
                        break;
        free(v.rows);
        return r;
}

static kw_result token_revoke_tx(struct kw_keystore *ks, struct ks_tx *tx, const char *id,
                                 const struct kw_audit_entry *audit)
{
        char name[65], role[17];
        {
                sqlite3_stmt *st _cleanup_finalize_ = NULL;
                KW_TRY(ks_prepare(ks, "SELECT name, role FROM tokens WHERE id = ?1 AND revoked = 0",
                                  &st));
                KW_TRY(ks_bind_text(ks, st, 1, id));
                int row = 0;
                KW_TRY(ks_step_row(ks, st, "token lookup", &row));
                if (!row) {
                        kw_err_set_detail("no active token with this id");
                        KW_BAIL(KW_ERR_NOT_FOUND);
                }
                KW_TRY(ks_col_text(st, 0, name, sizeof name));
                KW_TRY(ks_col_text(st, 1, role, sizeof role));
        }
        if (strcmp(role, "admin") == 0) {
                /* in the same transaction as the revocation: two concurrent
                 * revocations cannot both see another admin left */
                uint64_t admins = 0;
                KW_TRY(ks_count(ks, "SELECT count(*) FROM tokens WHERE revoked = 0 AND role = 'admin'",
                                &admins));
                if (admins <= 1) {
                        kw_err_set_detail("%s is the last active admin token: create another admin "
                                          "token first (or recover with keywardd --recover-admin)",
                                          name);
                        KW_BAIL(KW_ERR_BAD_STATE);
                }
        }
        sqlite3_stmt *su _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "UPDATE tokens SET revoked = ?2 WHERE id = ?1", &su));
        KW_TRY(ks_bind_text(ks, su, 1, id));
        KW_TRY(ks_bind_i64(ks, su, 2, now_s()));
        KW_TRY(ks_step_done(ks, su, "token revoke"));
        struct kw_audit_entry def;
        return ks_tx_audit(ks, tx, audit_or_default(audit, &def, "token.revoke", NULL, name));
}

kw_result kw_keystore_token_revoke(struct kw_keystore *ks, const char *id,
                                   const struct kw_audit_entry *audit)
{
        KW_ENSURE(ks != NULL && id != NULL, KW_ERR_INPUT);
        KW_ENSURE(valid_token_id(id), KW_ERR_BAD_FIELD);
        KW_TRY(ks_check_audit_entry(audit));
        return KS_RUN_TX(ks, tx, token_revoke_tx(ks, tx, id, audit));
}

kw_result kw_keystore_token_count(struct kw_keystore *ks, uint64_t *ret)
{
        KW_ENSURE(ks != NULL && ret != NULL, KW_ERR_INPUT);
        ks_lock(ks);
        kw_result r = ks_count(ks, "SELECT count(*) FROM tokens", ret);
        ks_unlock(ks);
        return r;
}

/* ------------------------------------------------------------ xks stores */

static kw_result xks_cred_insert(struct kw_keystore *ks, const struct kw_xks_cred_row *c)
{
        if (!c->is_sealed || c->secret_len == 0 || c->secret_len > sizeof c->secret) {
                kw_err_set_detail("an XKS secret is stored sealed only");
                KW_BAIL(KW_ERR_INPUT);
        }
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks,
                          "INSERT INTO xks_credentials (akid, store, secret, created, seq, sealed)"
                          " VALUES (?1, ?2, ?3, ?4,"
                          " (SELECT coalesce(max(seq), 0) + 1 FROM xks_credentials), 1)",
                          &st));
        KW_TRY(ks_bind_text(ks, st, 1, c->akid));
        KW_TRY(ks_bind_text(ks, st, 2, c->store));
        KW_TRY(ks_bind_blob(ks, st, 3, c->secret, c->secret_len));
        KW_TRY(ks_bind_i64(ks, st, 4, c->created != 0 ? c->created : now_s()));
        return ks_step_done(ks, st, "xks credential insert");
}

static kw_result xks_store_insert_tx(struct kw_keystore *ks, struct ks_tx *tx,
                                     const struct kw_xks_store_row *s,
                                     const struct kw_xks_cred_row *c,
                                     const struct kw_audit_entry *audit)
{
        {
                sqlite3_stmt *st _cleanup_finalize_ = NULL;
                KW_TRY(ks_prepare(ks,
                                  "INSERT INTO xks_stores (name, uri_prefix, region, created)"
                                  " VALUES (?1, ?2, ?3, ?4)",
                                  &st));
                KW_TRY(ks_bind_text(ks, st, 1, s->name));
                KW_TRY(ks_bind_text(ks, st, 2, s->uri_prefix));
                KW_TRY(ks_bind_text(ks, st, 3, s->region));
                KW_TRY(ks_bind_i64(ks, st, 4, s->created != 0 ? s->created : now_s()));
                KW_TRY(ks_step_done(ks, st, "xks store insert"));
        }
        KW_TRY(xks_cred_insert(ks, c));
        struct kw_audit_entry def;
        return ks_tx_audit(ks, tx, audit_or_default(audit, &def, "xks.store.create", NULL, s->name));
}

kw_result kw_keystore_xks_store_insert(struct kw_keystore *ks, const struct kw_xks_store_row *store,
                                       const struct kw_xks_cred_row *cred,
                                       const struct kw_audit_entry *audit)
{
        KW_ENSURE(ks != NULL && store != NULL && cred != NULL, KW_ERR_INPUT);
        KW_ENSURE(strcmp(store->name, cred->store) == 0, KW_ERR_INPUT);
        KW_TRY(ks_check_audit_entry(audit));
        kw_result r = KS_RUN_TX(ks, tx, xks_store_insert_tx(ks, tx, store, cred, audit));
        if (r.code == KW_ERR_EXISTS)
                kw_err_set_detail("an XKS key store with this name or URI prefix exists");
        return r;
}

static kw_result xks_store_delete_tx(struct kw_keystore *ks, struct ks_tx *tx, const char *name,
                                     const struct kw_audit_entry *audit)
{
        {
                sqlite3_stmt *st _cleanup_finalize_ = NULL;
                KW_TRY(ks_prepare(ks, "DELETE FROM xks_credentials WHERE store = ?1", &st));
                KW_TRY(ks_bind_text(ks, st, 1, name));
                KW_TRY(ks_step_done(ks, st, "xks credential delete"));
        }
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "DELETE FROM xks_stores WHERE name = ?1", &st));
        KW_TRY(ks_bind_text(ks, st, 1, name));
        KW_TRY(ks_step_done(ks, st, "xks store delete"));
        if (sqlite3_changes(ks->db) != 1) {
                kw_err_set_detail("no XKS key store named %s (created through the API)", name);
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        struct kw_audit_entry def;
        return ks_tx_audit(ks, tx, audit_or_default(audit, &def, "xks.store.delete", NULL, name));
}

kw_result kw_keystore_xks_store_delete(struct kw_keystore *ks, const char *name,
                                       const struct kw_audit_entry *audit)
{
        KW_ENSURE(ks != NULL && name != NULL, KW_ERR_INPUT);
        KW_TRY(ks_check_audit_entry(audit));
        return KS_RUN_TX(ks, tx, xks_store_delete_tx(ks, tx, name, audit));
}

static kw_result xks_cred_add_tx(struct kw_keystore *ks, struct ks_tx *tx,
                                 const struct kw_xks_cred_row *c, unsigned keep,
                                 const struct kw_audit_entry *audit)
{
        {
                sqlite3_stmt *st _cleanup_finalize_ = NULL;
                KW_TRY(ks_prepare(ks, "SELECT 1 FROM xks_stores WHERE name = ?1", &st));
                KW_TRY(ks_bind_text(ks, st, 1, c->store));
                int row = 0;
                KW_TRY(ks_step_row(ks, st, "xks store lookup", &row));
                if (!row) {
                        kw_err_set_detail("no XKS key store named %s (created through the API)",
                                          c->store);
                        KW_BAIL(KW_ERR_NOT_FOUND);
                }
        }
        KW_TRY(xks_cred_insert(ks, c));
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks,
                          "DELETE FROM xks_credentials WHERE store = ?1 AND akid NOT IN"
                          " (SELECT akid FROM xks_credentials WHERE store = ?1"
                          "  ORDER BY seq DESC LIMIT ?2)",
                          &st));
        KW_TRY(ks_bind_text(ks, st, 1, c->store));
        KW_TRY(ks_bind_i64(ks, st, 2, keep));
        KW_TRY(ks_step_done(ks, st, "xks credential prune"));
        struct kw_audit_entry def;
        return ks_tx_audit(ks, tx, audit_or_default(audit, &def, "xks.credential.create", NULL, c->store));
}

kw_result kw_keystore_xks_cred_add(struct kw_keystore *ks, const struct kw_xks_cred_row *cred,
                                   unsigned keep, const struct kw_audit_entry *audit)
{
        KW_ENSURE(ks != NULL && cred != NULL && keep >= 1, KW_ERR_INPUT);
        KW_TRY(ks_check_audit_entry(audit));
        return KS_RUN_TX(ks, tx, xks_cred_add_tx(ks, tx, cred, keep, audit));
}

static kw_result xks_cred_delete_tx(struct kw_keystore *ks, struct ks_tx *tx, const char *store,
                                    const char *akid, const struct kw_audit_entry *audit)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "DELETE FROM xks_credentials WHERE store = ?1 AND akid = ?2", &st));
        KW_TRY(ks_bind_text(ks, st, 1, store));
        KW_TRY(ks_bind_text(ks, st, 2, akid));
        KW_TRY(ks_step_done(ks, st, "xks credential delete"));
        if (sqlite3_changes(ks->db) != 1) {
                kw_err_set_detail("store %s has no credential %s", store, akid);
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        struct kw_audit_entry def;
        return ks_tx_audit(ks, tx, audit_or_default(audit, &def, "xks.credential.delete", NULL, store));
}

kw_result kw_keystore_xks_cred_delete(struct kw_keystore *ks, const char *store, const char *akid,
                                      const struct kw_audit_entry *audit)
{
        KW_ENSURE(ks != NULL && store != NULL && akid != NULL, KW_ERR_INPUT);
        KW_TRY(ks_check_audit_entry(audit));
        return KS_RUN_TX(ks, tx, xks_cred_delete_tx(ks, tx, store, akid, audit));
}

static kw_result xks_list_locked(struct kw_keystore *ks,
                                 int (*store_cb)(const struct kw_xks_store_row *, void *),
                                 int (*cred_cb)(const struct kw_xks_cred_row *, void *), void *arg)
{
        {
                sqlite3_stmt *st _cleanup_finalize_ = NULL;
                KW_TRY(ks_prepare(ks, "SELECT name, uri_prefix, region, created FROM xks_stores"
                                      " ORDER BY name", &st));
                for (;;) {
                        int row = 0;
                        KW_TRY(ks_step_row(ks, st, "xks store list", &row));
                        if (!row)
                                break;
                        struct kw_xks_store_row s;
                        memset(&s, 0, sizeof s);
                        KW_TRY(ks_col_text(st, 0, s.name, sizeof s.name));
                        KW_TRY(ks_col_text(st, 1, s.uri_prefix, sizeof s.uri_prefix));
                        KW_TRY(ks_col_text(st, 2, s.region, sizeof s.region));
                        s.created = sqlite3_column_int64(st, 3);
                        if (store_cb != NULL && store_cb(&s, arg) != 0)
                                break;
                }
        }
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "SELECT store, akid, secret, created, sealed FROM xks_credentials"
                              " ORDER BY store, seq", &st));
        for (;;) {
                int row = 0;
                KW_TRY(ks_step_row(ks, st, "xks credential list", &row));
                if (!row)
                        break;
                struct kw_xks_cred_row c;
                memset(&c, 0, sizeof c);
                kw_result r = ks_col_text(st, 0, c.store, sizeof c.store);
                if (kw_ok(r))
                        r = ks_col_text(st, 1, c.akid, sizeof c.akid);
                const void *sec = sqlite3_column_blob(st, 2);
                int sn = sqlite3_column_bytes(st, 2);
                if (kw_ok(r) && (sec == NULL || sn <= 0 || (size_t)sn > sizeof c.secret)) {
                        kw_err_set_detail("XKS credential %s: bad stored secret", c.akid);
                        r = KW_RESULT(KW_ERR_DB_CORRUPT);
                }
                if (kw_ok(r)) {
                        memcpy(c.secret, sec, (size_t)sn);
                        c.secret_len = (size_t)sn;
                }
                c.created = sqlite3_column_int64(st, 3);
                c.is_sealed = sqlite3_column_int(st, 4) != 0;
                int stop = kw_ok(r) && cred_cb != NULL ? cred_cb(&c, arg) : 0;
                kw_wipe(&c, sizeof c);
                KW_TRY(r);
                if (stop)
                        break;
        }
        return KW_OK;
}

kw_result kw_keystore_xks_cred_reseal(struct kw_keystore *ks, const char *store, const char *akid,
                                      const uint8_t *sealed, size_t sealed_len)
{
        KW_ENSURE(ks != NULL && store != NULL && akid != NULL && sealed != NULL &&
                          sealed_len != 0 && sealed_len <= sizeof ((struct kw_xks_cred_row *)0)->secret,
                  KW_ERR_INPUT);
        ks_lock(ks);
        kw_result r;
        {
                sqlite3_stmt *st _cleanup_finalize_ = NULL;
                r = ks_prepare(ks, "UPDATE xks_credentials SET secret = ?3, sealed = 1"
                                   " WHERE store = ?1 AND akid = ?2 AND sealed = 0", &st);
                if (kw_ok(r))
                        r = ks_bind_text(ks, st, 1, store);
                if (kw_ok(r))
                        r = ks_bind_text(ks, st, 2, akid);
                if (kw_ok(r))
                        r = ks_bind_blob(ks, st, 3, sealed, sealed_len);
                if (kw_ok(r))
                        r = ks_step_done(ks, st, "xks credential reseal");
                if (kw_ok(r) && sqlite3_changes(ks->db) != 1) {
                        kw_err_set_detail("no clear XKS credential %s in store %s", akid, store);
                        r = KW_RESULT(KW_ERR_NOT_FOUND);
                }
        }
        ks_unlock(ks);
        return r;
}

kw_result kw_keystore_xks_list(struct kw_keystore *ks,
                               int (*store_cb)(const struct kw_xks_store_row *row, void *arg),
                               int (*cred_cb)(const struct kw_xks_cred_row *row, void *arg),
                               void *arg)
{
        KW_ENSURE(ks != NULL, KW_ERR_INPUT);
        ks_lock(ks);
        kw_result r = xks_list_locked(ks, store_cb, cred_cb, arg);
        ks_unlock(ks);
        return r;
}
