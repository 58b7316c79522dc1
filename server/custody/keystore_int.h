/*
 * keystore_int.h - what keystore.c (schema, keys, tokens, XKS stores) and
 * audit_store.c (the audit chain) share: the store's structure, the one
 * place sqlite codes become KW_ERR_* (ks_fail), statement helpers, and the
 * transaction that moves the chain head only after COMMIT.  Private to
 * these two files.
 */
#ifndef KW_KEYSTORE_INT_H
#define KW_KEYSTORE_INT_H

#include <pthread.h>
#include <stdint.h>

#include <sqlite3.h>

#include "audit_codec.h"
#include "keystore.h"
#include "pgstore.h"

#define KS_HASH_LEN KW_AUDIT_HASH_LEN
#define KS_BUSY_TIMEOUT_MS 5000

/* The keys table's columns, in the order key rows are read. */
#define KEY_COLS                                                                         \
        "id, name, type, size, state, ops, current_version, created, updated, delete_at, " \
        "tags, rules, public_der"

struct kw_keystore {
        /* fleet mode: every call goes to the PostgreSQL store (pgstore.h) and
         * nothing below is used */
        struct kw_pgstore *pg;
        pthread_mutex_t mu;               /* the writer connection and the chain head */
        sqlite3 *db;
        int schema_version;
        uint64_t head_seq;                /* seq of the last committed audit record (0: none) */
        uint8_t head[KS_HASH_LEN];        /* its hash (zeros: none)                        */
        int64_t data_version;             /* PRAGMA data_version when the head was read:
                                             another process's commit (keywardd
                                             --recover-admin) changes it */
        sqlite3_stmt *st_key_get;         /* hot statements, prepared once */
        sqlite3_stmt *st_get_blob;
        sqlite3_stmt *st_token_find;
        sqlite3_stmt *st_audit_insert;    /* an admin action's row                  */
        sqlite3_stmt *st_batch_insert;    /* a batch of key-use records             */
        sqlite3_stmt *st_batch_name;      /* its key and action names, for filters  */
        struct kw_audit_hasher *hasher;   /* under mu                               */
        struct kw_audit_encoder *encoder; /* under mu                               */
        /* A second, read-only connection for what reads much of the audit
         * (query, verify, export): WAL lets it read a consistent snapshot
         * while the writer commits, so a long verify never holds the
         * key-use flush.  Its own lock. */
        pthread_mutex_t rmu;
        sqlite3 *rdb;
        struct kw_audit_hasher *rhasher;  /* under rmu                              */
        char *path;
};

/* The first line of every public function: a fleet store's call goes to
 * pgstore's function of the same name. */
#define KS_PG(ks, call)                                  \
        do {                                             \
                if ((ks) != NULL && (ks)->pg != NULL)    \
                        return (call);                   \
        } while (0)

/* ---- sqlite conversion and statements (keystore.c) ---- */
/* The one place sqlite codes become KW_ERR_*; the detail keeps sqlite's words. */
kw_result ks_fail(sqlite3 *db, int rc, const char *what);
kw_result ks_check(struct kw_keystore *ks, int rc, const char *what);
kw_result ks_exec(struct kw_keystore *ks, const char *sql, const char *what);
/* A PRAGMA that answers one integer ("PRAGMA user_version"). */
kw_result ks_pragma_int(struct kw_keystore *ks, const char *pragma, int64_t *ret);
kw_result ks_prepare(struct kw_keystore *ks, const char *sql, sqlite3_stmt **ret);
/* The same on the reader connection. */
kw_result ks_rprepare(struct kw_keystore *ks, const char *sql, sqlite3_stmt **ret);
kw_result ks_step_done(struct kw_keystore *ks, sqlite3_stmt *st, const char *what);
/* SQLITE_ROW -> *ret_row = 1, SQLITE_DONE -> 0, anything else -> error
 * (the connection the statement belongs to names it). */
kw_result ks_step_row(struct kw_keystore *ks, sqlite3_stmt *st, const char *what, int *ret_row);
kw_result ks_bind_text(struct kw_keystore *ks, sqlite3_stmt *st, int i, const char *s);
kw_result ks_bind_blob(struct kw_keystore *ks, sqlite3_stmt *st, int i, const void *p, size_t n);
kw_result ks_bind_i64(struct kw_keystore *ks, sqlite3_stmt *st, int i, int64_t v);
kw_result ks_col_text(sqlite3_stmt *st, int col, char *dst, size_t cap);
/* Applies the raw database key to a connection. */
kw_result ks_apply_key(sqlite3 *db, const struct kw_secret *db_key);
int64_t ks_now_ms(void);
int64_t ks_now_s(void);
int ks_valid_name(const char *s);
kw_result ks_count(struct kw_keystore *ks, const char *sql, uint64_t *ret);
/* Room for row n in *rows (elements of size bytes, *cap of them; doubled
 * from 16 when full). */
kw_result ks_grow(void **rows, size_t *cap, size_t n, size_t size);
/* Active admin tokens plus admin console users (the last-admin rule;
 * keystore_users.c).  Inside the caller's transaction. */
kw_result ks_admin_credentials(struct kw_keystore *ks, uint64_t *ret);
/* The caller's entry, or a default one naming the action and the key. */
const struct kw_audit_entry *ks_audit_or_default(const struct kw_audit_entry *e, struct kw_audit_entry *def,
                                                 const char *action, const char *key_name,
                                                 const char *detail);

void ks_stmt_finalizep(sqlite3_stmt **st);
void ks_stmt_resetp(sqlite3_stmt **st);
/* A statement prepared for one call / a cached one borrowed for one call. */
#define _cleanup_finalize_ __attribute__((cleanup(ks_stmt_finalizep)))
#define _cleanup_reset_ __attribute__((cleanup(ks_stmt_resetp)))

static inline void ks_lock(struct kw_keystore *ks) { pthread_mutex_lock(&ks->mu); }
static inline void ks_unlock(struct kw_keystore *ks) { pthread_mutex_unlock(&ks->mu); }

/* ---- transactions (keystore.c) ---- */
/* A transaction's view of the chain: moves into ks only after COMMIT. */
struct ks_tx {
        uint64_t seq;
        uint8_t head[KS_HASH_LEN];
};
kw_result ks_tx_begin(struct kw_keystore *ks, struct ks_tx *tx);
void ks_tx_rollback(struct kw_keystore *ks);
kw_result ks_tx_commit(struct kw_keystore *ks, const struct ks_tx *tx);

/* Runs call (which sees the open transaction as tx) inside BEGIN IMMEDIATE ..
 * COMMIT under the lock; ROLLBACK on any failure.  The chain head moves only
 * after COMMIT succeeded. */
#define KS_RUN_TX(ks, tx, call)                                  \
        ({                                                       \
                struct ks_tx tx_;                                \
                ks_lock(ks);                                     \
                kw_result r_ = ks_tx_begin((ks), &tx_);          \
                if (kw_ok(r_)) {                                 \
                        struct ks_tx *tx = &tx_;                 \
                        r_ = (call);                             \
                        if (kw_ok(r_))                           \
                                r_ = ks_tx_commit((ks), &tx_);   \
                        else                                     \
                                ks_tx_rollback(ks);              \
                }                                                \
                ks_unlock(ks);                                   \
                r_;                                              \
        })

/* ---- the audit chain (audit_store.c) ---- */
/* Each field of e (may be NULL) within KW_AUDIT_FIELD_MAX: KW_ERR_TOO_LARGE. */
kw_result ks_check_audit_entry(const struct kw_audit_entry *e);
/* Appends an admin action's row inside the open transaction; advances tx only. */
kw_result ks_tx_audit(struct kw_keystore *ks, struct ks_tx *tx, const struct kw_audit_entry *e);
/* After migrations: the chain head, the reader connection, the statements. */
kw_result ks_audit_open(struct kw_keystore *ks, const struct kw_secret *db_key);
/* Under the write lock: the chain head read again when another connection
 * committed since it was read (another process appended a record). */
kw_result ks_audit_sync_head(struct kw_keystore *ks);
/* Closes what ks_audit_open opened (the reader connection first). */
void ks_audit_close(struct kw_keystore *ks);

#endif
