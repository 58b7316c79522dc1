/*
 * pgstore.c - the key store on PostgreSQL (contract in pgstore.h): the
 * connections' pool, the one place libpq and SQLSTATEs become KW_ERR_*,
 * parameterised queries, transactions, migrations, row MACs and the
 * row-MAC key, open and close.  The connection string's checks and the
 * connecting are in pgstore_conninfo.c; the listener thread, node
 * heartbeats and ping in pgstore_listen.c.  Keys are in pgstore_keys.c;
 * tokens, users and XKS stores in pgstore_access.c; the audit in
 * pgstore_audit.c and pgstore_audit_read.c.
 *
 * Choices made here (the SQLCipher store's, keystore.c, hold otherwise):
 *   - Every connection (pool_size of them, and the listener's) is made at
 *     open, so that the password is read once and wiped right after; a
 *     broken connection is re-established with PQreset, which reuses libpq's
 *     own copy of the parameters.
 *   - A connection failure on the first statement of a call (BEGIN, or a
 *     lone read) resets the connection and retries once; one inside a
 *     transaction fails the call (KW_ERR_DB_UNAVAILABLE): the caller retries.
 *   - A statement timeout (SQLSTATE 57014) is KW_ERR_DB_UNAVAILABLE too: a
 *     database that does not answer in time is, for a key store, down.
 *   - Names are ordered and compared byte-wise (COLLATE "C"), as SQLite
 *     does, whatever the database's collation.
 *   - The listener's choices are at the top of pgstore_listen.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>

#include "../common/names.h"
#include "audit_logic.h"
#include "pgstore_int.h"

/* ------------------------------------------------------------ small helpers */

int64_t pg_now_s(void) { return (int64_t)time(NULL); }

int64_t pg_now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

kw_result pg_check_audit_entry(const struct kw_audit_entry *e)
{
        return kw_audit_entry_check(e);
}

const struct kw_audit_entry *pg_audit_or_default(const struct kw_audit_entry *e,
                                                 struct kw_audit_entry *def, const char *action,
                                                 const char *key_name, const char *detail)
{
        if (e != NULL)
                return e;
        *def = (struct kw_audit_entry){ .action = action, .key_name = key_name, .result = "ok",
                                        .detail = detail };
        return def;
}

kw_result pg_grow(void **rows, size_t *cap, size_t n, size_t size)
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

/* libpq's message on one line, without its trailing newline. */
void pg_one_line(const char *in, char *out, size_t cap)
{
        size_t o = 0;
        int space = 0;
        for (const char *s = in != NULL ? in : ""; *s != '\0' && o + 1 < cap; s++) {
                char ch = *s;
                if (ch == '\n' || ch == '\r' || ch == '\t') {
                        space = o > 0;
                        continue;
                }
                if (space && o + 2 < cap)
                        out[o++] = ' ';
                space = 0;
                out[o++] = ch;
        }
        out[o] = '\0';
}

/* ------------------------------------------------------ libpq conversion */

static int code_of_sqlstate(const char *st)
{
        if (st == NULL || strlen(st) != 5)
                return KW_ERR_STORAGE;
        if (strcmp(st, "23505") == 0)
                return KW_ERR_EXISTS;
        if (strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 || strcmp(st, "57P02") == 0 ||
            strcmp(st, "57P03") == 0 || strcmp(st, "53300") == 0 || strcmp(st, "57014") == 0)
                return KW_ERR_DB_UNAVAILABLE;
        if (strcmp(st, "53100") == 0)
                return KW_ERR_IO;
        return KW_ERR_STORAGE;
}

kw_result pg_fail_conn(PGconn *conn, const char *what)
{
        char msg[512];
        pg_one_line(conn != NULL ? PQerrorMessage(conn) : "out of memory", msg, sizeof msg);
        kw_err_set_detail("fleet database %s: %s", what, msg[0] != '\0' ? msg : "connection failed");
        KW_BAIL(KW_ERR_DB_UNAVAILABLE);
}

kw_result pg_fail_result(struct pg_conn *c, const PGresult *res, const char *what)
{
        PGconn *conn = c != NULL ? c->conn : NULL;
        if (res == NULL || conn == NULL || PQstatus(conn) != CONNECTION_OK) {
                const char *st = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
                if (st == NULL || code_of_sqlstate(st) == KW_ERR_DB_UNAVAILABLE ||
                    conn == NULL || PQstatus(conn) != CONNECTION_OK)
                        return pg_fail_conn(conn, what);
        }
        const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        int code = code_of_sqlstate(st);
        char msg[512];
        if (st != NULL && strncmp(st, "22", 2) == 0) {
                /* data exceptions quote the offending value: never in a detail */
                snprintf(msg, sizeof msg, "a value was refused");
        } else {
                const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
                pg_one_line(m != NULL ? m : PQresultErrorMessage(res), msg, sizeof msg);
        }
        kw_err_set_detail("fleet database %s: %s (SQLSTATE %s)", what, msg[0] ? msg : "error",
                          st != NULL ? st : "none");
        KW_BAIL(code);
}

/* ----------------------------------------------------------------- queries */

void pg_param_text(struct pg_params *p, const char *s)
{
        if (p->n >= PG_MAX_PARAMS)
                abort(); /* a programming error: the statements are ours */
        p->v[p->n] = s;
        p->len[p->n] = 0;
        p->fmt[p->n] = 0;
        p->n++;
}

void pg_param_bytes(struct pg_params *p, const void *b, size_t n)
{
        if (p->n >= PG_MAX_PARAMS || n > INT32_MAX)
                abort();
        p->v[p->n] = b;
        p->len[p->n] = (int)n;
        p->fmt[p->n] = 1;
        p->n++;
}

void pg_param_i64(struct pg_params *p, int64_t v)
{
        if (p->n >= PG_MAX_PARAMS)
                abort();
        snprintf(p->num[p->n], sizeof p->num[p->n], "%" PRId64, v);
        p->v[p->n] = p->num[p->n];
        p->len[p->n] = 0;
        p->fmt[p->n] = 0;
        p->n++;
}

void pg_clearp(PGresult **res)
{
        if (*res != NULL) {
                PQclear(*res);
                *res = NULL;
        }
}

uint64_t pg_affected(const PGresult *res)
{
        const char *s = PQcmdTuples((PGresult *)res);
        return s != NULL && s[0] != '\0' ? strtoull(s, NULL, 10) : 0;
}

/* PQreset, bounded by connect_timeout (in the connection's parameters). */
int pg_conn_reset(PGconn *conn)
{
        PQreset(conn);
        return PQstatus(conn) == CONNECTION_OK;
}

kw_result pg_exec(struct kw_pgstore *pg, struct pg_conn *c, const char *sql,
                  const struct pg_params *p, const char *what, PGresult **ret)
{
        (void)pg;
        for (int attempt = 0;; attempt++) {
                PGresult *res = PQexecParams(c->conn, sql, p != NULL ? p->n : 0, NULL,
                                             p != NULL ? p->v : NULL, p != NULL ? p->len : NULL,
                                             p != NULL ? p->fmt : NULL, 1);
                ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
                if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
                        if (ret != NULL)
                                *ret = res;
                        else
                                PQclear(res);
                        return KW_OK;
                }
                if (attempt == 0 && !c->in_tx && PQstatus(c->conn) != CONNECTION_OK) {
                        PQclear(res);
                        if (pg_conn_reset(c->conn))
                                continue;
                        return pg_fail_conn(c->conn, what);
                }
                kw_result r = pg_fail_result(c, res, what);
                PQclear(res);
                return r;
        }
}

int pg_col_isnull(const PGresult *res, int row, int col)
{
        return PQgetisnull(res, row, col);
}

static kw_result col_missing(const PGresult *res, int col, const char *why)
{
        const char *name = PQfname(res, col);
        kw_err_set_detail("fleet database: a stored %s %s", name != NULL ? name : "value", why);
        KW_BAIL(KW_ERR_DB_CORRUPT);
}

kw_result pg_col_text(const PGresult *res, int row, int col, char *dst, size_t cap)
{
        if (PQgetisnull(res, row, col))
                return col_missing(res, col, "is missing");
        const char *s = PQgetvalue(res, row, col);
        int n = PQgetlength(res, row, col);
        if (s == NULL || n < 0 || (size_t)n >= cap || memchr(s, '\0', (size_t)n) != NULL)
                return col_missing(res, col, "does not fit its field");
        memcpy(dst, s, (size_t)n);
        dst[n] = '\0';
        return KW_OK;
}

kw_result pg_col_strdup(const PGresult *res, int row, int col, char **ret)
{
        if (PQgetisnull(res, row, col))
                return col_missing(res, col, "is missing");
        const char *s = PQgetvalue(res, row, col);
        int n = PQgetlength(res, row, col);
        if (s == NULL || n < 0 || memchr(s, '\0', (size_t)n) != NULL)
                return col_missing(res, col, "is malformed");
        char *p = malloc((size_t)n + 1);
        KW_ENSURE(p != NULL, KW_ERR_NOMEM);
        memcpy(p, s, (size_t)n);
        p[n] = '\0';
        *ret = p;
        return KW_OK;
}

kw_result pg_col_i64(const PGresult *res, int row, int col, int64_t *ret)
{
        if (PQgetisnull(res, row, col))
                return col_missing(res, col, "is missing");
        const uint8_t *b = (const uint8_t *)PQgetvalue(res, row, col);
        int n = PQgetlength(res, row, col);
        if (PQfformat(res, col) != 1 || b == NULL || (n != 2 && n != 4 && n != 8))
                return col_missing(res, col, "is not an integer");
        uint64_t u = 0;
        for (int i = 0; i < n; i++)
                u = u << 8 | b[i];
        int64_t v;
        if (n == 2)
                v = (int16_t)(uint16_t)u;
        else if (n == 4)
                v = (int32_t)(uint32_t)u;
        else
                v = (int64_t)u;
        *ret = v;
        return KW_OK;
}

kw_result pg_col_u32(const PGresult *res, int row, int col, uint32_t *ret)
{
        int64_t v = 0;
        KW_TRY(pg_col_i64(res, row, col, &v));
        if (v < 0 || v > (int64_t)UINT32_MAX)
                return col_missing(res, col, "is out of range");
        *ret = (uint32_t)v;
        return KW_OK;
}

kw_result pg_col_bytes(const PGresult *res, int row, int col, const uint8_t **ret, size_t *ret_len)
{
        if (PQgetisnull(res, row, col)) {
                *ret = NULL;
                *ret_len = 0;
                return KW_OK;
        }
        const char *b = PQgetvalue(res, row, col);
        int n = PQgetlength(res, row, col);
        if (b == NULL || n < 0)
                return col_missing(res, col, "is malformed");
        *ret = (const uint8_t *)b;
        *ret_len = (size_t)n;
        return KW_OK;
}

kw_result pg_query_int(struct kw_pgstore *pg, struct pg_conn *c, const char *sql,
                       const struct pg_params *p, const char *what, int64_t *ret)
{
        PGresult *res _cleanup_pgresult_ = NULL;
        KW_TRY(pg_exec(pg, c, sql, p, what, &res));
        if (PQntuples(res) != 1 || PQnfields(res) < 1) {
                kw_err_set_detail("fleet database %s: no row", what);
                KW_BAIL(KW_ERR_DB_CORRUPT);
        }
        return pg_col_i64(res, 0, 0, ret);
}

/* ------------------------------------------------------------ transactions */

kw_result pg_tx_begin(struct kw_pgstore *pg, struct pg_conn *c, uint64_t *ret_gen)
{
        KW_TRY(pg_exec(pg, c, "BEGIN", NULL, "begin", NULL));
        c->in_tx = 1;
        PGresult *res _cleanup_pgresult_ = NULL;
        kw_result r = pg_exec(pg, c, "UPDATE kw_change SET gen = gen + 1 WHERE id = 1 RETURNING gen",
                              NULL, "change counter", &res);
        int64_t gen = 0;
        if (kw_ok(r) && PQntuples(res) != 1) {
                kw_err_set_detail("fleet database: the change counter (kw_change) is missing");
                r = KW_RESULT(KW_ERR_DB_CORRUPT);
        }
        if (kw_ok(r))
                r = pg_col_i64(res, 0, 0, &gen);
        if (!kw_ok(r)) {
                pg_tx_rollback(pg, c);
                return r;
        }
        *ret_gen = (uint64_t)gen;
        return KW_OK;
}

kw_result pg_tx_begin_read(struct kw_pgstore *pg, struct pg_conn *c)
{
        KW_TRY(pg_exec(pg, c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", NULL, "begin",
                       NULL));
        c->in_tx = 1;
        return KW_OK;
}

kw_result pg_tx_commit(struct kw_pgstore *pg, struct pg_conn *c)
{
        PGresult *res _cleanup_pgresult_ = NULL;
        kw_result r = pg_exec(pg, c, "COMMIT", NULL, "commit", &res);
        if (kw_ok(r) && strcmp(PQcmdStatus(res), "COMMIT") != 0) {
                /* COMMIT of a failed transaction answers ROLLBACK */
                kw_err_set_detail("fleet database commit: the transaction was rolled back");
                r = KW_RESULT(KW_ERR_STORAGE);
        }
        if (!kw_ok(r))
                pg_tx_rollback(pg, c);
        c->in_tx = 0;
        return r;
}

void pg_tx_rollback(struct kw_pgstore *pg, struct pg_conn *c)
{
        (void)pg;
        if (PQstatus(c->conn) == CONNECTION_OK &&
            PQtransactionStatus(c->conn) != PQTRANS_IDLE) {
                PGresult *res = PQexec(c->conn, "ROLLBACK");
                PQclear(res);
        }
        c->in_tx = 0;
}

static const char *kind_name(enum kw_pg_change kind)
{
        switch (kind) {
        case KW_PG_CHANGE_KEY:
                return "key";
        case KW_PG_CHANGE_TOKEN:
                return "token";
        case KW_PG_CHANGE_USER:
                return "user";
        case KW_PG_CHANGE_XKS:
                return "xks";
        case KW_PG_CHANGE_ALL:
                break;
        }
        return NULL;
}

kw_result pg_notify(struct kw_pgstore *pg, struct pg_conn *c, uint64_t gen,
                    enum kw_pg_change kind, const char *name)
{
        const char *k = kind_name(kind);
        KW_ENSURE(k != NULL && name != NULL && kw_name_valid(name), KW_ERR_INTERNAL);
        char payload[128];
        int n = snprintf(payload, sizeof payload, "%" PRIu64 " %s %s", gen, k, name);
        KW_ENSURE(n > 0 && (size_t)n < sizeof payload, KW_ERR_INTERNAL);
        struct pg_params p = { 0 };
        pg_param_text(&p, payload);
        return pg_exec(pg, c, "SELECT pg_notify('" PG_NOTIFY_CHANNEL "', $1)", &p, "notify", NULL);
}

/* ----------------------------------------------------------------- row MACs */

static void put_u32be(uint8_t b[4], uint32_t v)
{
        b[0] = (uint8_t)(v >> 24);
        b[1] = (uint8_t)(v >> 16);
        b[2] = (uint8_t)(v >> 8);
        b[3] = (uint8_t)v;
}

kw_result pg_row_mac(struct kw_pgstore *pg, const char *table, const struct pg_field *fields,
                     size_t n, uint8_t out[PG_MAC_LEN])
{
        EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(pg->hmac);
        KW_ENSURE(ctx != NULL, KW_ERR_NOMEM);
        char digest[] = "SHA256";
        OSSL_PARAM params[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                OSSL_PARAM_construct_end(),
        };
        pthread_mutex_lock(&pg->mu);
        int have = pg->mac_key.p != NULL && pg->mac_key.len == PG_MAC_LEN;
        int ok = have && EVP_MAC_init(ctx, pg->mac_key.p, pg->mac_key.len, params) == 1;
        pthread_mutex_unlock(&pg->mu);
        if (!have) {
                EVP_MAC_CTX_free(ctx);
                kw_err_set_detail("the fleet's row-MAC key is not set yet");
                KW_BAIL(KW_ERR_SEALED);
        }
        static const char label[] = "keyward-row-v1"; /* hashed with its NUL */
        ok = ok && EVP_MAC_update(ctx, (const uint8_t *)label, sizeof label) == 1 &&
             EVP_MAC_update(ctx, (const uint8_t *)table, strlen(table) + 1) == 1;
        for (size_t i = 0; ok && i < n; i++) {
                uint8_t len[4];
                char num[24];
                const void *p = fields[i].p;
                size_t l = fields[i].len;
                if (fields[i].kind == PG_F_INT) {
                        int w = snprintf(num, sizeof num, "%" PRId64, fields[i].i);
                        p = num;
                        l = (size_t)w;
                }
                if (fields[i].kind == PG_F_NULL) {
                        put_u32be(len, 0xffffffffu);
                        ok = EVP_MAC_update(ctx, len, 4) == 1;
                        continue;
                }
                if (l >= 0xffffffffu) {
                        ok = 0;
                        break;
                }
                put_u32be(len, (uint32_t)l);
                ok = EVP_MAC_update(ctx, len, 4) == 1 &&
                     (l == 0 || EVP_MAC_update(ctx, p, l) == 1);
        }
        size_t outl = 0;
        ok = ok && EVP_MAC_final(ctx, out, &outl, PG_MAC_LEN) == 1 && outl == PG_MAC_LEN;
        EVP_MAC_CTX_free(ctx);
        if (!ok) {
                kw_err_set_detail("HMAC-SHA256 of a row failed");
                KW_BAIL(KW_ERR_CRYPTO);
        }
        return KW_OK;
}

kw_result pg_row_verify(struct kw_pgstore *pg, const char *table, const char *pk,
                        const struct pg_field *fields, size_t n, const uint8_t *mac,
                        size_t mac_len)
{
        uint8_t want[PG_MAC_LEN];
        KW_TRY(pg_row_mac(pg, table, fields, n, want));
        int ok = mac != NULL && mac_len == PG_MAC_LEN &&
                 CRYPTO_memcmp(want, mac, PG_MAC_LEN) == 0; /* lint: allow (constant time) */
        kw_wipe(want, sizeof want);
        if (!ok) {
                kw_err_set_detail("row %s/%s fails its MAC: it was changed outside keyward", table,
                                  pk);
                KW_BAIL(KW_ERR_DB_TAMPERED);
        }
        return KW_OK;
}

/* ------------------------------------------------------- MAC of a result row */

#define PG_OID_INT8 20
#define PG_OID_INT2 21
#define PG_OID_INT4 23

kw_result pg_res_verify(struct kw_pgstore *pg, const PGresult *res, int row, const char *table,
                        const char *pk, int ncols, int mac_col)
{
        struct pg_field f[PG_MAX_PARAMS];
        KW_ENSURE(ncols > 0 && ncols <= PG_MAX_PARAMS && ncols <= PQnfields(res) &&
                          mac_col < PQnfields(res),
                  KW_ERR_INTERNAL);
        for (int i = 0; i < ncols; i++) {
                if (PQgetisnull(res, row, i)) {
                        f[i] = PG_FNULL;
                        continue;
                }
                Oid t = PQftype(res, i);
                if (t == PG_OID_INT2 || t == PG_OID_INT4 || t == PG_OID_INT8) {
                        int64_t v = 0;
                        KW_TRY(pg_col_i64(res, row, i, &v));
                        f[i] = PG_FINT(v);
                } else {
                        f[i] = (struct pg_field){ .kind = PG_F_BYTES,
                                                  .p = PQgetvalue(res, row, i),
                                                  .len = (size_t)PQgetlength(res, row, i) };
                }
        }
        const uint8_t *mac = NULL;
        size_t ml = 0;
        KW_TRY(pg_col_bytes(res, row, mac_col, &mac, &ml));
        return pg_row_verify(pg, table, pk, f, (size_t)ncols, mac, ml);
}

/* -------------------------------------------------------------------- pool */

struct pg_conn *pg_acquire(struct kw_pgstore *pg, kw_result *ret_r)
{
        pthread_mutex_lock(&pg->mu);
        struct pg_conn *c = NULL;
        for (;;) {
                for (unsigned i = 0; i < pg->n_conns; i++) {
                        if (!pg->conns[i].busy) {
                                c = &pg->conns[i];
                                break;
                        }
                }
                if (c != NULL)
                        break;
                pthread_cond_wait(&pg->cv, &pg->mu);
        }
        c->busy = 1;
        pthread_mutex_unlock(&pg->mu);
        c->in_tx = 0;
        if (PQstatus(c->conn) != CONNECTION_OK && !pg_conn_reset(c->conn)) {
                *ret_r = pg_fail_conn(c->conn, "connection");
                pg_release(pg, c);
                return NULL;
        }
        *ret_r = KW_OK;
        return c;
}

void pg_release(struct kw_pgstore *pg, struct pg_conn *c)
{
        if (c == NULL)
                return;
        if (PQstatus(c->conn) == CONNECTION_OK && PQtransactionStatus(c->conn) != PQTRANS_IDLE)
                pg_tx_rollback(pg, c);
        c->in_tx = 0;
        pthread_mutex_lock(&pg->mu);
        c->busy = 0;
        pthread_cond_signal(&pg->cv);
        pthread_mutex_unlock(&pg->mu);
}

/* --------------------------------------------------------------- migrations */

/* Step i migrates the fleet database from schema i to i + 1 (the
 * contract's schema, exactly). */
static const char *const pg_migrations[] = {
        /* 0 -> 1 */
        "CREATE TABLE kw_meta (k text PRIMARY KEY, v bytea NOT NULL);"
        "CREATE TABLE kw_schema (id int PRIMARY KEY CHECK (id = 1), version int NOT NULL);"
        "INSERT INTO kw_schema VALUES (1, 0);"
        "CREATE TABLE kw_change (id int PRIMARY KEY CHECK (id = 1), gen bigint NOT NULL);"
        "INSERT INTO kw_change VALUES (1, 0);"
        "CREATE TABLE keys (id text PRIMARY KEY, name text UNIQUE NOT NULL, type text NOT NULL,"
        " size int NOT NULL, state text NOT NULL, ops int NOT NULL, current_version int NOT NULL,"
        " created bigint NOT NULL, updated bigint NOT NULL, delete_at bigint NOT NULL DEFAULT 0,"
        " tags text NOT NULL, rules text NOT NULL, public_der bytea, mac bytea NOT NULL);"
        "CREATE INDEX keys_state ON keys(state, delete_at);"
        "CREATE TABLE key_versions (key_id text NOT NULL REFERENCES keys(id), version int NOT NULL,"
        " blob bytea NOT NULL, created bigint NOT NULL, mac bytea NOT NULL,"
        " PRIMARY KEY (key_id, version));"
        "CREATE TABLE tokens (id text PRIMARY KEY, name text UNIQUE NOT NULL, role text NOT NULL,"
        " hash bytea UNIQUE NOT NULL, created bigint NOT NULL, revoked bigint NOT NULL DEFAULT 0,"
        " mac bytea NOT NULL);"
        "CREATE TABLE users (name text PRIMARY KEY, role text NOT NULL, hash text NOT NULL,"
        " created bigint NOT NULL, last_login bigint NOT NULL DEFAULT 0,"
        " failed int NOT NULL DEFAULT 0, locked_until bigint NOT NULL DEFAULT 0,"
        " mac bytea NOT NULL);"
        "CREATE TABLE xks_stores (name text PRIMARY KEY, uri_prefix text UNIQUE NOT NULL,"
        " region text NOT NULL, created bigint NOT NULL, mac bytea NOT NULL);"
        "CREATE TABLE xks_credentials (akid text PRIMARY KEY,"
        " store text NOT NULL REFERENCES xks_stores(name), secret bytea NOT NULL,"
        " created bigint NOT NULL, seq bigint NOT NULL, mac bytea NOT NULL);"
        "CREATE TABLE audit (seq bigint PRIMARY KEY, ts_ms bigint NOT NULL, actor text NOT NULL,"
        " action text NOT NULL, key_name text NOT NULL, result text NOT NULL,"
        " detail text NOT NULL, request_id text NOT NULL, prev_hash bytea NOT NULL,"
        " hash bytea NOT NULL, node text NOT NULL);"
        "CREATE INDEX audit_key_name ON audit(key_name, seq);"
        "CREATE INDEX audit_action ON audit(action, seq);"
        "CREATE TABLE audit_batch (first_seq bigint PRIMARY KEY, last_seq bigint NOT NULL,"
        " min_ts_ms bigint NOT NULL, max_ts_ms bigint NOT NULL, prev_hash bytea NOT NULL,"
        " hash bytea NOT NULL, node text NOT NULL, data bytea NOT NULL);"
        "CREATE TABLE audit_batch_name (name text NOT NULL, first_seq bigint NOT NULL,"
        " PRIMARY KEY (name, first_seq));"
        "CREATE TABLE audit_checkpoint (seq bigint PRIMARY KEY, hash bytea NOT NULL,"
        " ts_ms bigint NOT NULL, created_ms bigint NOT NULL, records bigint NOT NULL,"
        " export_file text NOT NULL, export_sha256 bytea NOT NULL, mac bytea NOT NULL);"
        "CREATE TABLE audit_head (id int PRIMARY KEY CHECK (id = 1), seq bigint NOT NULL,"
        " hash bytea NOT NULL, mac bytea);"
        "INSERT INTO audit_head VALUES (1, 0, decode(repeat('00', 32), 'hex'), NULL);"
        "CREATE TABLE nodes (id text PRIMARY KEY, address text NOT NULL, version text NOT NULL,"
        " schema int NOT NULL, state text NOT NULL, detail text NOT NULL,"
        " started_ms bigint NOT NULL, seen_ms bigint NOT NULL, mac bytea NOT NULL);"
        "INSERT INTO kw_meta VALUES ('format', 'keyward-fleet'::bytea);",
};
_Static_assert(sizeof pg_migrations / sizeof pg_migrations[0] == KW_PG_SCHEMA_VERSION,
               "one migration step per schema version");

/* A script of several statements (the migrations: ours, no parameters). */
static kw_result exec_script(struct pg_conn *c, const char *sql, const char *what)
{
        PGresult *res = PQexec(c->conn, sql);
        ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
        kw_result r = KW_OK;
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
                r = pg_fail_result(c, res, what);
        PQclear(res);
        return r;
}

/* Inside the migration transaction, under the advisory lock. */
static kw_result migrate_locked(struct kw_pgstore *pg, struct pg_conn *c, int *ret_version)
{
        int64_t exists = 0;
        KW_TRY(pg_query_int(pg, c, "SELECT (to_regclass('kw_schema') IS NOT NULL)::int", NULL,
                         "schema lookup", &exists));
        int64_t v = 0;
        if (exists) {
                KW_TRY(pg_query_int(pg, c, "SELECT version FROM kw_schema WHERE id = 1", NULL,
                                 "schema version", &v));
                PGresult *res _cleanup_pgresult_ = NULL;
                KW_TRY(pg_exec(pg, c, "SELECT v FROM kw_meta WHERE k = 'format'", NULL,
                               "format", &res));
                const uint8_t *f = NULL;
                size_t fl = 0;
                if (PQntuples(res) == 1)
                        KW_TRY(pg_col_bytes(res, 0, 0, &f, &fl));
                if (f == NULL || fl != strlen("keyward-fleet") ||
                    memcmp(f, "keyward-fleet", fl) != 0) {
                        kw_err_set_detail("the fleet database is not a keyward fleet database "
                                          "(kw_meta format)");
                        KW_BAIL(KW_ERR_DB_CORRUPT);
                }
        }
        if (v > KW_PG_SCHEMA_VERSION) {
                kw_err_set_detail("the fleet database has schema %" PRId64 "; this keywardd knows "
                                  "schema %d: upgrade this node",
                                  v, KW_PG_SCHEMA_VERSION);
                KW_BAIL(KW_ERR_DB_VERSION);
        }
        if (v < 0) {
                kw_err_set_detail("the fleet database has schema %" PRId64, v);
                KW_BAIL(KW_ERR_DB_CORRUPT);
        }
        for (; v < KW_PG_SCHEMA_VERSION; v++) {
                KW_TRY(exec_script(c, pg_migrations[v], "migration"));
                struct pg_params p = { 0 };
                pg_param_i64(&p, v + 1);
                KW_TRY(pg_exec(pg, c, "UPDATE kw_schema SET version = $1 WHERE id = 1", &p,
                               "schema version", NULL));
        }
        *ret_version = (int)v;
        return KW_OK;
}

/* Once for the fleet: every node runs this at open; the advisory lock
 * (held until the transaction ends) makes the others wait, then see the
 * schema done. */
static kw_result migrate(struct kw_pgstore *pg)
{
        kw_result r;
        struct pg_conn *c = pg_acquire(pg, &r);
        if (c == NULL)
                return r;
        r = pg_exec(pg, c, "BEGIN", NULL, "begin", NULL);
        if (kw_ok(r)) {
                c->in_tx = 1;
                struct pg_params p = { 0 };
                pg_param_i64(&p, PG_MIGRATION_LOCK);
                r = pg_exec(pg, c, "SELECT pg_advisory_xact_lock($1::bigint)", &p,
                            "migration lock", NULL);
                int v = 0;
                if (kw_ok(r))
                        r = migrate_locked(pg, c, &v);
                if (kw_ok(r))
                        r = pg_tx_commit(pg, c);
                else
                        pg_tx_rollback(pg, c);
                if (kw_ok(r))
                        pg->schema_version = v;
        }
        pg_release(pg, c);
        return r;
}

/* --------------------------------------------------------------- open/close */

static void pg_free(struct kw_pgstore *pg)
{
        pg_listener_stop(pg);
        for (unsigned i = 0; i < pg->n_conns; i++) {
                PQfinish(pg->conns[i].conn);
                kw_audit_hasher_free(pg->conns[i].hasher);
                kw_audit_encoder_free(pg->conns[i].encoder);
        }
        free(pg->conns);
        PQfinish(pg->listen_conn);
        kw_secret_free(&pg->mac_key);
        EVP_MAC_free(pg->hmac);
        pthread_cond_destroy(&pg->cv);
        pthread_mutex_destroy(&pg->mu);
        if (pg->stop_pipe[0] >= 0)
                close(pg->stop_pipe[0]);
        if (pg->stop_pipe[1] >= 0)
                close(pg->stop_pipe[1]);
        free(pg);
}

static kw_result check_options(const struct kw_pg_options *o)
{
        KW_ENSURE(o != NULL, KW_ERR_INPUT);
        if (o->conninfo == NULL || o->conninfo[0] == '\0') {
                kw_err_set_detail("db.conninfo is empty: name the fleet database "
                                  "(host=... dbname=... user=... sslmode=verify-full ...)");
                KW_BAIL(KW_ERR_CONFIG);
        }
        if (o->pool_size < 1 || o->pool_size > 64) {
                kw_err_set_detail("db.pool_size must be 1..64");
                KW_BAIL(KW_ERR_CONFIG);
        }
        if (o->node_id != NULL && (strlen(o->node_id) > 64 || !kw_utf8_printable(o->node_id))) {
                kw_err_set_detail("the node name must be 1..64 printable characters");
                KW_BAIL(KW_ERR_CONFIG);
        }
        return KW_OK;
}

kw_result kw_pg_open(const struct kw_pg_options *o, struct kw_pgstore **ret)
{
        KW_ENSURE(ret != NULL, KW_ERR_INPUT);
        KW_TRY(check_options(o));
        struct kw_pgstore *pg = calloc(1, sizeof *pg);
        KW_ENSURE(pg != NULL, KW_ERR_NOMEM);
        pg->stop_pipe[0] = pg->stop_pipe[1] = -1;
        if (pthread_mutex_init(&pg->mu, NULL) != 0) {
                free(pg);
                KW_BAIL(KW_ERR_INTERNAL);
        }
        if (pthread_cond_init(&pg->cv, NULL) != 0) {
                pthread_mutex_destroy(&pg->mu);
                free(pg);
                KW_BAIL(KW_ERR_INTERNAL);
        }
        if (o->node_id != NULL && o->node_id[0] != '\0') {
                snprintf(pg->node_id, sizeof pg->node_id, "%s", o->node_id);
        } else if (gethostname(pg->node_id, sizeof pg->node_id - 1) != 0 || pg->node_id[0] == '\0') {
                snprintf(pg->node_id, sizeof pg->node_id, "keywardd");
        }
        pg->connect_timeout_s = o->connect_timeout_s;
        pg->statement_timeout_ms = o->statement_timeout_ms;

        kw_result r = KW_OK;
        struct conn_params cp = { 0 };
        pg->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        pg->conns = calloc(o->pool_size, sizeof *pg->conns);
        if (pg->hmac == NULL || pg->conns == NULL) {
                r = KW_RESULT(KW_ERR_NOMEM);
                goto fail;
        }
        KW_TRY_GOTO(r, pg_conn_params_build(o, pg->node_id, &cp), fail);
        for (unsigned i = 0; i < o->pool_size; i++) {
                KW_TRY_GOTO(r, pg_connect_one(&cp, &pg->conns[i].conn), fail);
                pg->n_conns++;
                KW_TRY_GOTO(r, kw_audit_hasher_new(&pg->conns[i].hasher), fail);
        }
        KW_TRY_GOTO(r, pg_connect_one(&cp, &pg->listen_conn), fail);
        pg_conn_params_free(&cp);     /* the password is wiped here */
        KW_TRY_GOTO(r, migrate(pg), fail);
        *ret = pg;
        return KW_OK;
fail:
        pg_conn_params_free(&cp);
        pg_free(pg);
        return r;
}

void kw_pg_close(struct kw_pgstore *pg)
{
        if (pg == NULL)
                return;
        pg_free(pg);
}

int kw_pg_schema_version(struct kw_pgstore *pg)
{
        return pg != NULL ? pg->schema_version : 0;
}

/* ------------------------------------------------------------ row-MAC key */

kw_result kw_pg_mac_key_blob(struct kw_pgstore *pg, const uint8_t *proposed, size_t proposed_len,
                             struct kw_buf *out)
{
        KW_ENSURE(pg != NULL && out != NULL, KW_ERR_INPUT);
        KW_ENSURE(proposed != NULL || proposed_len == 0, KW_ERR_INPUT);
        KW_ENSURE(proposed_len <= 4096, KW_ERR_TOO_LARGE);
        kw_result r;
        struct pg_conn *c = pg_acquire(pg, &r);
        if (c == NULL)
                return r;
        if (proposed != NULL && proposed_len > 0) {
                struct pg_params p = { 0 };
                pg_param_bytes(&p, proposed, proposed_len);
                r = pg_exec(pg, c,
                            "INSERT INTO kw_meta (k, v) VALUES ('row_mac_key', $1)"
                            " ON CONFLICT (k) DO NOTHING",
                            &p, "row-MAC key", NULL);
        }
        PGresult *res _cleanup_pgresult_ = NULL;
        if (kw_ok(r))
                r = pg_exec(pg, c, "SELECT v FROM kw_meta WHERE k = 'row_mac_key'", NULL,
                            "row-MAC key", &res);
        const uint8_t *b = NULL;
        size_t n = 0;
        int have = kw_ok(r) && PQntuples(res) == 1;
        if (kw_ok(r) && !have) {
                /* a pure read (proposed NULL) of a fleet without a key yet:
                 * nothing appended.  With a proposal a row always exists. */
                if (proposed != NULL && proposed_len > 0)
                        r = KW_FAIL(KW_ERR_STORAGE, "the fleet's row-MAC key was not stored");
                pg_release(pg, c);
                return r;
        }
        if (kw_ok(r))
                r = pg_col_bytes(res, 0, 0, &b, &n);
        if (kw_ok(r) && (b == NULL || n == 0)) {
                kw_err_set_detail("the fleet's stored row-MAC key is empty");
                r = KW_RESULT(KW_ERR_DB_CORRUPT);
        }
        if (kw_ok(r))
                r = kw_buf_put(out, b, n);
        pg_release(pg, c);
        return r;
}

void kw_pg_set_mac_key(struct kw_pgstore *pg, const uint8_t key[32])
{
        if (pg == NULL || key == NULL)
                return;
        struct kw_secret s = { 0 };
        if (!kw_ok(kw_secret_dup(key, PG_MAC_LEN, &s)))
                return;            /* stays unset: rows are refused (KW_ERR_SEALED) */
        pthread_mutex_lock(&pg->mu);
        struct kw_secret old = pg->mac_key;
        pg->mac_key = s;
        pthread_mutex_unlock(&pg->mu);
        kw_secret_free(&old);
}
