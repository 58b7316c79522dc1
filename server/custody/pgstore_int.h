/*
 * pgstore_int.h - what the PostgreSQL key store's files share (pgstore.c:
 * pool, queries, migrations, MACs, open/close; pgstore_conninfo.c: the
 * connection string and connecting; pgstore_listen.c: listener, nodes;
 * pgstore_keys.c; pgstore_access.c; pgstore_audit.c, pgstore_audit_read.c):
 * the store's structure, the pool, the
 * transaction helpers, the one parameterised query helper, the one place
 * libpq results and SQLSTATEs become KW_ERR_* (pg_fail_*), the row MAC, and
 * the audit row a mutation appends inside its own transaction.  Private to
 * these files.
 *
 * A call:
 *
 *     kw_result r;
 *     struct pg_conn *c = pg_acquire(pg, &r);      // blocks while all are busy
 *     if (c == NULL) return r;                     // DB_UNAVAILABLE
 *     uint64_t gen;
 *     r = pg_tx_begin(pg, c, &gen);                // BEGIN; bump kw_change.gen
 *     ... pg_exec(...), pg_row_mac(...), pg_tx_audit(...), pg_notify(...) ...
 *     r = kw_ok(r) ? pg_tx_commit(pg, c) : (pg_tx_rollback(pg, c), r);
 *     pg_release(pg, c);                           // rolls back what is left open
 *
 * or PG_RUN_TX(pg, c, gen, call) for the same.  Callbacks of list functions
 * run after pg_release (a callback may call back into the store, and a pool
 * of one connection must not deadlock).
 *
 * Lock order: pg->mu is never held across a query.  In the database, a
 * mutation locks kw_change (pg_tx_begin) first, then audit_head
 * (pg_tx_audit); nothing else takes a row lock.
 */
#ifndef KW_PGSTORE_INT_H
#define KW_PGSTORE_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <openssl/evp.h>

#include "../common/secret.h"
#include "audit_codec.h"
#include "pgstore.h"

#define PG_MAC_LEN 32
#define PG_HASH_LEN KW_AUDIT_HASH_LEN
/* pg_advisory_xact_lock key held while migrating: "keyward" in ASCII */
#define PG_MIGRATION_LOCK 0x6b657977617264LL
#define PG_NOTIFY_CHANNEL "keyward_changes"
#define PG_MAX_PARAMS 20
#define PG_DEFAULT_CONNECT_TIMEOUT_S 10

/* One pooled connection, used by one call at a time (between pg_acquire
 * and pg_release). */
struct pg_conn {
        PGconn *conn;
        int busy;                          /* under pg->mu                          */
        int in_tx;                         /* a BEGIN is open on it                 */
        struct kw_audit_hasher *hasher;    /* for whoever holds the connection      */
        struct kw_audit_encoder *encoder;  /* NULL until pgstore_audit.c makes one;
                                              freed with the pool                   */
};

struct kw_pgstore {
        pthread_mutex_t mu;                /* the pool's busy flags, the MAC key    */
        pthread_cond_t cv;                 /* a connection was released             */
        struct pg_conn *conns;
        unsigned n_conns;
        int schema_version;
        char node_id[65];
        unsigned connect_timeout_s;
        unsigned statement_timeout_ms;

        /* the row-MAC key (kw_pg_set_mac_key); len 0: not set (KW_ERR_SEALED) */
        struct kw_secret mac_key;
        EVP_MAC *hmac;                     /* fetched once                          */

        /* the listener (kw_pg_listen_start): its own connection, made at open
         * (the password is wiped after connecting: it reconnects with
         * PQreset, which keeps libpq's copy) */
        PGconn *listen_conn;
        pthread_t listen_thread;
        int listening;                     /* the thread runs                        */
        int stop_pipe[2];                  /* kw_pg_close writes a byte to stop it   */
        struct kw_pg_listener listener;
        uint64_t listen_baseline;          /* kw_change.gen when LISTEN started     */
};

/* ---- connecting (pgstore_conninfo.c) ---- */
/* The parameters of every connection: db.conninfo checked (no password in
 * it; a host that is neither loopback nor a Unix socket needs
 * sslmode=verify-full) and completed (application_name, timeouts,
 * keepalives, default client files, the password file's password). */
struct conn_params {
        PQconninfoOption *opts;            /* PQconninfoParse's                     */
        const char **kw, **val;            /* what PQconnectdbParams gets           */
        size_t n, cap;
        char *options;                     /* "options" with statement_timeout      */
        char *ssl_files[4];                /* sslcert, sslkey, sslrootcert, sslcrl   */
        char appname[96];
        char timeout[16];
        struct kw_secret password;         /* NUL-terminated; wiped after connecting */
};

/* cp from o (node names the connection in application_name); on failure
 * KW_ERR_CONFIG (or the password file's error) and cp holds what was made:
 * pg_conn_params_free it either way. */
kw_result pg_conn_params_build(const struct kw_pg_options *o, const char *node,
                               struct conn_params *cp);
/* Frees and wipes (the password) cp, and zeroes it. */
void pg_conn_params_free(struct conn_params *cp);
/* One connection with cp, libpq's notices silenced; *ret set only on
 * success (KW_ERR_DB_UNAVAILABLE and the like from pg_fail_conn). */
kw_result pg_connect_one(const struct conn_params *cp, PGconn **ret);

/* ---- the listener (pgstore_listen.c) ---- */
/* Stops the listener thread and waits for it; nothing when none runs.
 * kw_pg_close (pg_free) calls it. */
void pg_listener_stop(struct kw_pgstore *pg);

/* ---- the pool (pgstore.c) ---- */
/* A free connection (waits while all are busy), reset first when libpq
 * says it is broken (bounded by connect_timeout).  NULL with *ret_r =
 * KW_ERR_DB_UNAVAILABLE (libpq's words in the detail) when it cannot be
 * re-established: the connection goes back to the pool, the next call
 * tries again. */
struct pg_conn *pg_acquire(struct kw_pgstore *pg, kw_result *ret_r);
/* Back to the pool; an open transaction is rolled back first.  NULL-safe. */
void pg_release(struct kw_pgstore *pg, struct pg_conn *c);

/* ---- errors (pgstore.c): the one place libpq becomes KW_ERR_* ----
 * Connection failures (no result, CONNECTION_BAD, SQLSTATE class 08,
 * 57P01..57P03, 53300, 57014 statement timeout) -> KW_ERR_DB_UNAVAILABLE;
 * 23505 unique_violation -> KW_ERR_EXISTS; 53100 disk full -> KW_ERR_IO;
 * anything else -> KW_ERR_STORAGE.  The detail is "fleet database <what>:
 * <PostgreSQL's primary message>" (never its DETAIL field, which quotes
 * values, and never a parameter). */
kw_result pg_fail_result(struct pg_conn *c, const PGresult *res, const char *what);
/* The same for a connection-level failure (PQerrorMessage). */
kw_result pg_fail_conn(PGconn *conn, const char *what);
/* libpq's message (in, may be NULL) on one line of out (cap bytes), without
 * its trailing newline. */
void pg_one_line(const char *in, char *out, size_t cap);
/* PQreset, bounded by connect_timeout (in the connection's parameters):
 * 1 when the connection is back. */
int pg_conn_reset(PGconn *conn);

/* ---- parameterised queries (pgstore.c) ---- */
/* Parameters: text (integers as decimal text) or binary (bytea).  Values
 * are pointers to the caller's memory, valid until pg_exec returns; a NULL
 * value is SQL NULL. */
struct pg_params {
        int n;
        const char *v[PG_MAX_PARAMS];
        int len[PG_MAX_PARAMS];
        int fmt[PG_MAX_PARAMS];            /* 0 text, 1 binary                      */
        char num[PG_MAX_PARAMS][24];       /* the text of integer parameters        */
};
void pg_param_text(struct pg_params *p, const char *s);            /* NULL: NULL  */
void pg_param_bytes(struct pg_params *p, const void *b, size_t n); /* NULL: NULL  */
void pg_param_i64(struct pg_params *p, int64_t v);
/* PQexecParams(sql, p (may be NULL)) asking for binary results.  Success:
 * PGRES_COMMAND_OK or PGRES_TUPLES_OK, *ret (may be NULL: cleared here) is
 * the result, PQclear it.  A connection failure outside a transaction
 * resets the connection and tries once more.  `what` names the operation
 * in the detail. */
kw_result pg_exec(struct kw_pgstore *pg, struct pg_conn *c, const char *sql,
                  const struct pg_params *p, const char *what, PGresult **ret);
/* The number of rows an UPDATE/DELETE touched (PQcmdTuples). */
uint64_t pg_affected(const PGresult *res);
void pg_clearp(PGresult **res);
#define _cleanup_pgresult_ __attribute__((cleanup(pg_clearp)))

/* Columns of a binary result.  A NULL, or a value that does not fit its
 * field: KW_ERR_DB_CORRUPT naming the column. */
kw_result pg_col_text(const PGresult *res, int row, int col, char *dst, size_t cap);
/* A heap copy (malloc) of a text column. */
kw_result pg_col_strdup(const PGresult *res, int row, int col, char **ret);
/* int2/int4/int8 columns. */
kw_result pg_col_i64(const PGresult *res, int row, int col, int64_t *ret);
kw_result pg_col_u32(const PGresult *res, int row, int col, uint32_t *ret);
/* A bytea column in place (valid while res lives); *ret NULL when SQL NULL. */
kw_result pg_col_bytes(const PGresult *res, int row, int col, const uint8_t **ret, size_t *ret_len);
int pg_col_isnull(const PGresult *res, int row, int col);
/* The integer in the first column of the one row sql (params p, may be
 * NULL) returns; no row: KW_ERR_DB_CORRUPT ("fleet database <what>: no
 * row"). */
kw_result pg_query_int(struct kw_pgstore *pg, struct pg_conn *c, const char *sql,
                       const struct pg_params *p, const char *what, int64_t *ret);

/* ---- transactions (pgstore.c) ---- */
/* A mutation: BEGIN; UPDATE kw_change SET gen = gen + 1 RETURNING gen.
 * The row lock on kw_change serialises every mutation of the fleet until
 * COMMIT/ROLLBACK.  *ret_gen: the new gen (for pg_notify). */
kw_result pg_tx_begin(struct kw_pgstore *pg, struct pg_conn *c, uint64_t *ret_gen);
/* A consistent read of several statements: BEGIN ISOLATION LEVEL
 * REPEATABLE READ READ ONLY (no gen bump). */
kw_result pg_tx_begin_read(struct kw_pgstore *pg, struct pg_conn *c);
kw_result pg_tx_commit(struct kw_pgstore *pg, struct pg_conn *c);
void pg_tx_rollback(struct kw_pgstore *pg, struct pg_conn *c);

/* SELECT pg_notify('keyward_changes', '<gen> <kind> <name>') inside the open
 * transaction (delivered at COMMIT).  kind: KEY, TOKEN, USER or XKS. */
kw_result pg_notify(struct kw_pgstore *pg, struct pg_conn *c, uint64_t gen,
                    enum kw_pg_change kind, const char *name);

/* Acquires a connection, runs call (which sees c and gen) between
 * pg_tx_begin and pg_tx_commit (pg_tx_rollback on failure), releases. */
#define PG_RUN_TX(pg, c, gen, call)                                      \
        ({                                                               \
                kw_result r_;                                            \
                struct pg_conn *c_ = pg_acquire((pg), &r_);              \
                if (c_ != NULL) {                                        \
                        uint64_t g_ = 0;                                 \
                        r_ = pg_tx_begin((pg), c_, &g_);                 \
                        if (kw_ok(r_)) {                                 \
                                struct pg_conn *c = c_;                  \
                                uint64_t gen = g_;                       \
                                r_ = (call);                             \
                                if (kw_ok(r_))                           \
                                        r_ = pg_tx_commit((pg), c_);     \
                                else                                     \
                                        pg_tx_rollback((pg), c_);        \
                        }                                                \
                        pg_release((pg), c_);                            \
                }                                                        \
                r_;                                                      \
        })

/* Acquires a connection, runs call (which sees c) inside one consistent
 * read (pg_tx_begin_read, ended by pg_tx_end), releases.  The result:
 * pg_acquire's, BEGIN's, call's or COMMIT's failure, else KW_OK. */
#define PG_RUN_READ(pg, c, call)                                         \
        ({                                                               \
                kw_result r_;                                            \
                struct pg_conn *c_ = pg_acquire((pg), &r_);              \
                if (c_ != NULL) {                                        \
                        r_ = pg_tx_begin_read((pg), c_);                 \
                        if (kw_ok(r_)) {                                 \
                                struct pg_conn *c = c_;                  \
                                r_ = pg_tx_end((pg), c_, (call));        \
                        }                                                \
                        pg_release((pg), c_);                            \
                }                                                        \
                r_;                                                      \
        })

/* ---- row MACs (pgstore.c) ---- */
/* One column of a row, in the order of the contract's CREATE TABLE. */
enum pg_field_kind { PG_F_NULL, PG_F_BYTES, PG_F_INT };
struct pg_field {
        enum pg_field_kind kind;
        const void *p;                     /* PG_F_BYTES: text or bytea bytes       */
        size_t len;
        int64_t i;                         /* PG_F_INT: hashed as its decimal text  */
};
#define PG_FSTR(s) ((s) != NULL ? (struct pg_field){ .kind = PG_F_BYTES, .p = (s), .len = strlen(s) } \
                                : (struct pg_field){ .kind = PG_F_NULL })
#define PG_FBYTES(b, n) ((b) != NULL ? (struct pg_field){ .kind = PG_F_BYTES, .p = (b), .len = (n) } \
                                     : (struct pg_field){ .kind = PG_F_NULL })
#define PG_FINT(v) ((struct pg_field){ .kind = PG_F_INT, .i = (int64_t)(v) })
#define PG_FNULL ((struct pg_field){ .kind = PG_F_NULL })

/* out = HMAC-SHA256(K, "keyward-row-v1" 0x00 table 0x00 || for each field:
 * u32be(len) || bytes; NULL: u32be(0xffffffff)).  KW_ERR_SEALED before
 * kw_pg_set_mac_key; KW_ERR_CRYPTO when OpenSSL fails. */
kw_result pg_row_mac(struct kw_pgstore *pg, const char *table, const struct pg_field *fields,
                     size_t n, uint8_t out[PG_MAC_LEN]);
/* Recomputes and compares (constant time) with mac (mac_len bytes; NULL or
 * a wrong length fails too): KW_ERR_DB_TAMPERED, detail "row <table>/<pk>
 * fails its MAC: it was changed outside keyward". */
kw_result pg_row_verify(struct kw_pgstore *pg, const char *table, const char *pk,
                        const struct pg_field *fields, size_t n, const uint8_t *mac,
                        size_t mac_len);

/* Verifies row `row` of res whose columns 0..ncols-1 are the table's
 * columns in the contract's order (mac excluded) and whose column mac_col is
 * the mac: integers (int2/int4/int8) as decimal text, NULL as NULL, any
 * other type as its bytes (binary results).  KW_ERR_DB_TAMPERED as
 * pg_row_verify. */
kw_result pg_res_verify(struct kw_pgstore *pg, const PGresult *res, int row, const char *table,
                        const char *pk, int ncols, int mac_col);

/* ---- small helpers (pgstore.c) ---- */
int64_t pg_now_s(void);
int64_t pg_now_ms(void);
/* Each field of e (may be NULL) within KW_AUDIT_FIELD_MAX: KW_ERR_TOO_LARGE. */
kw_result pg_check_audit_entry(const struct kw_audit_entry *e);
/* The caller's entry, or a default one naming the action, the key and
 * the detail (as keystore.c's ks_audit_or_default). */
const struct kw_audit_entry *pg_audit_or_default(const struct kw_audit_entry *e,
                                                 struct kw_audit_entry *def, const char *action,
                                                 const char *key_name, const char *detail);
/* Room for row n in *rows (elements of size bytes, *cap of them). */
kw_result pg_grow(void **rows, size_t *cap, size_t n, size_t size);

/* ---- the audit row of a mutation (pgstore_audit.c) ---- */
/* Inside the mutation's open transaction on c (after pg_tx_begin): locks
 * audit_head FOR UPDATE, appends e (ts_ms 0: now) as the row with the next
 * seq, hashed with audit_codec.h's chain step exactly as audit_store.c's
 * ks_tx_audit does, node = pg->node_id, and updates the head and its MAC.
 * Fails (the caller rolls back) with KW_ERR_TOO_LARGE for an oversized
 * field, KW_ERR_DB_TAMPERED when the head fails its MAC, or a database
 * error. */
kw_result pg_tx_audit(struct kw_pgstore *pg, struct pg_conn *c, const struct kw_audit_entry *e);

/* ---- the audit chain's head and transactions (pgstore_audit.c; the
 * reads and prune of pgstore_audit_read.c use them) ---- */
/* A query's key or action, at most (audit_batch_name holds no longer one). */
#define KW_AUDIT_NAME_MAX 64
struct pg_audit_head {
        uint64_t seq;
        uint8_t hash[PG_HASH_LEN];
};
enum pg_audit_head_state {
        PG_AUDIT_HEAD_OK,
        PG_AUDIT_HEAD_MISSING,
        PG_AUDIT_HEAD_BAD_MAC,
        PG_AUDIT_HEAD_BEHIND,             /* records are stored past it (lock only) */
};
/* The head row (locked FOR UPDATE with lock), its MAC checked: *ret_state
 * says whether it holds (with lock: PG_AUDIT_HEAD_BEHIND when records are
 * stored past it); *h zeroed, then set when the row is read.
 * KW_ERR_SEALED without the MAC key, or a database error. */
kw_result pg_audit_head_read(struct kw_pgstore *pg, struct pg_conn *c, int lock,
                             struct pg_audit_head *h, enum pg_audit_head_state *ret_state);
/* BEGIN on c with no gen bump (an append, a prune): READ COMMITTED. */
kw_result pg_tx_begin_plain(struct kw_pgstore *pg, struct pg_conn *c, const char *what);
/* Ends a transaction that a call ran in: COMMIT when r is a success
 * (returning COMMIT's result), else ROLLBACK and r. */
kw_result pg_tx_end(struct kw_pgstore *pg, struct pg_conn *c, kw_result r);

#endif
