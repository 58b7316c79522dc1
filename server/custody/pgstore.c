/*
 * pgstore.c - the key store on PostgreSQL (contract in pgstore.h): the
 * connection string's checks, the connections and their pool, the one
 * place libpq and SQLSTATEs become KW_ERR_*, parameterised queries,
 * transactions, migrations, row MACs and the row-MAC key, the listener
 * thread, node heartbeats and ping.  Keys are in pgstore_keys.c; tokens,
 * users and XKS stores in pgstore_access.c; the audit in pgstore_audit.c.
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
 *   - Listener: a gen read from kw_change that no notification announced is
 *     reported as KW_PG_CHANGE_ALL at the next poll only if notifications
 *     still have not caught up by then (a NOTIFY may arrive a moment after
 *     the commit is visible): the backstop reacts within 2 x poll_ms.  A gen
 *     read LOWER than the highest one read before (a restored or rolled
 *     back database) is KW_PG_CHANGE_ALL named "rollback" (at a poll, or at
 *     the reconnect after the restore); every other ALL is named "".  Only
 *     gens read from kw_change count for that, never a notification's
 *     (anyone with database access can NOTIFY).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>

#include "../common/names.h"
#include "pgstore_int.h"

#define PG_PASSWORD_MAX 1024
#define PG_DEFAULT_CONNECT_TIMEOUT_S 10
#define PG_RECONNECT_MS 500
#define PG_DEFAULT_POLL_MS 250

/* ------------------------------------------------------------ small helpers */

int64_t pg_now_s(void) { return (int64_t)time(NULL); }

int64_t pg_now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

kw_result pg_check_audit_entry(const struct kw_audit_entry *e)
{
        if (e == NULL)
                return KW_OK;
        const char *f[6] = { e->actor, e->action, e->key_name, e->result, e->detail, e->request_id };
        for (size_t i = 0; i < 6; i++) {
                if (f[i] != NULL && strnlen(f[i], KW_AUDIT_FIELD_MAX + 1) > KW_AUDIT_FIELD_MAX) {
                        kw_err_set_detail("an audit field is longer than %u bytes", KW_AUDIT_FIELD_MAX);
                        KW_BAIL(KW_ERR_TOO_LARGE);
                }
        }
        return KW_OK;
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
static void one_line(const char *in, char *out, size_t cap)
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
        one_line(conn != NULL ? PQerrorMessage(conn) : "out of memory", msg, sizeof msg);
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
                one_line(m != NULL ? m : PQresultErrorMessage(res), msg, sizeof msg);
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
static int conn_reset(PGconn *conn)
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
                        if (conn_reset(c->conn))
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

/* ------------------------------------------------------- connection string */

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

static void conn_params_free(struct conn_params *cp)
{
        PQconninfoFree(cp->opts);
        free(cp->kw);
        free(cp->val);
        free(cp->options);
        for (size_t i = 0; i < sizeof cp->ssl_files / sizeof cp->ssl_files[0]; i++)
                free(cp->ssl_files[i]);
        kw_secret_free(&cp->password);
        memset(cp, 0, sizeof *cp);
}

static const char *opt_val(const PQconninfoOption *opts, const char *key)
{
        for (const PQconninfoOption *o = opts; o->keyword != NULL; o++)
                if (strcmp(o->keyword, key) == 0)
                        return o->val != NULL && o->val[0] != '\0' ? o->val : NULL;
        return NULL;
}

/* The value libpq will use: the string's, else its environment variable. */
static const char *effective(const PQconninfoOption *opts, const char *key, const char *env)
{
        const char *v = opt_val(opts, key);
        if (v == NULL && env != NULL) {
                v = getenv(env);
                if (v != NULL && v[0] == '\0')
                        v = NULL;
        }
        return v;
}

/* One entry of a host list: a Unix socket directory, or a loopback name or
 * address. */
static int host_is_local(const char *h, size_t n)
{
        char buf[256];
        if (n == 0)
                return 1;                  /* an empty entry: the default socket   */
        if (n >= sizeof buf)
                return 0;
        memcpy(buf, h, n);
        buf[n] = '\0';
        if (buf[0] == '/' || buf[0] == '@')
                return 1;
        if (strcasecmp(buf, "localhost") == 0)
                return 1;
        struct in_addr a4;
        struct in6_addr a6;
        if (inet_pton(AF_INET, buf, &a4) == 1)
                return (ntohl(a4.s_addr) >> 24) == 127;
        if (inet_pton(AF_INET6, buf, &a6) == 1)
                return IN6_IS_ADDR_LOOPBACK(&a6) ||
                       (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
        return 0;
}

/* The first entry of a comma-separated list that is not local, or NULL. */
static const char *first_remote(const char *list, size_t *ret_len)
{
        const char *s = list;
        for (;;) {
                const char *comma = strchr(s, ',');
                size_t n = comma != NULL ? (size_t)(comma - s) : strlen(s);
                if (!host_is_local(s, n)) {
                        *ret_len = n;
                        return s;
                }
                if (comma == NULL)
                        return NULL;
                s = comma + 1;
        }
}

static kw_result check_conninfo(const PQconninfoOption *opts)
{
        const char *pw = opt_val(opts, "password");
        if (pw != NULL) {
                kw_err_set_detail("db.conninfo holds a password: remove it from the connection "
                                  "string and put it in db.password_file (a file only keywardd "
                                  "can read)");
                KW_BAIL(KW_ERR_CONFIG);
        }
        const char *sslmode = effective(opts, "sslmode", "PGSSLMODE");
        int verified = sslmode != NULL && strcmp(sslmode, "verify-full") == 0;
        if (verified)
                return KW_OK;
        if (opt_val(opts, "service") != NULL) {
                kw_err_set_detail("db.conninfo names a service, whose host keywardd cannot check: "
                                  "name host= in db.conninfo, or add sslmode=verify-full");
                KW_BAIL(KW_ERR_CONFIG);
        }
        const char *addr = effective(opts, "hostaddr", "PGHOSTADDR");
        const char *host = effective(opts, "host", "PGHOST");
        const char *list = addr != NULL ? addr : host;
        size_t n = 0;
        const char *remote = list != NULL ? first_remote(list, &n) : NULL;
        if (remote != NULL) {
                kw_err_set_detail("db.conninfo: host %.*s is neither loopback nor a Unix socket: "
                                  "add sslmode=verify-full and sslrootcert=<the CA certificate "
                                  "of the database server> to db.conninfo",
                                  (int)(n > 128 ? 128 : n), remote);
                KW_BAIL(KW_ERR_CONFIG);
        }
        return KW_OK;
}

static kw_result cp_add(struct conn_params *cp, const char *k, const char *v)
{
        for (size_t i = 0; i < cp->n; i++) {
                if (strcmp(cp->kw[i], k) == 0) {
                        cp->val[i] = v;
                        return KW_OK;
                }
        }
        KW_ENSURE(cp->n + 1 < cp->cap, KW_ERR_INTERNAL);
        cp->kw[cp->n] = k;
        cp->val[cp->n] = v;
        cp->n++;
        cp->kw[cp->n] = NULL;
        cp->val[cp->n] = NULL;
        return KW_OK;
}

/* libpq looks for the client certificate and key, the root CA and the CRL
 * under $HOME/.postgresql when the connection string names none.  keywardd
 * started by root keeps HOME=/root in the custody process after it drops
 * to its own user, and libpq's stat() of /root/.postgresql/postgresql.crt
 * then fails with EACCES, which fails the connection.  The files are named
 * here under the home of the user we run as (libpq's choice when HOME is
 * unset); anything the string or PGSSL* variables name is kept. */
static kw_result ssl_file_defaults(struct conn_params *cp)
{
        static const struct {
                const char *kw, *env, *file;
        } d[] = {
                { "sslcert", "PGSSLCERT", "postgresql.crt" },
                { "sslkey", "PGSSLKEY", "postgresql.key" },
                { "sslrootcert", "PGSSLROOTCERT", "root.crt" },
                { "sslcrl", "PGSSLCRL", "root.crl" },
        };
        _Static_assert(sizeof d / sizeof d[0] == sizeof cp->ssl_files / sizeof cp->ssl_files[0],
                       "one path per default");
        struct passwd pw, *found = NULL;
        char buf[4096];
        if (getpwuid_r(geteuid(), &pw, buf, sizeof buf, &found) != 0 || found == NULL ||
            pw.pw_dir == NULL || pw.pw_dir[0] != '/')
                return KW_OK;              /* libpq's own defaults */
        for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
                if (effective(cp->opts, d[i].kw, d[i].env) != NULL)
                        continue;
                if (asprintf(&cp->ssl_files[i], "%s/.postgresql/%s", pw.pw_dir, d[i].file) < 0) {
                        cp->ssl_files[i] = NULL;
                        KW_BAIL(KW_ERR_NOMEM);
                }
                KW_TRY(cp_add(cp, d[i].kw, cp->ssl_files[i]));
        }
        return KW_OK;
}

static kw_result read_password(const char *path, struct kw_secret *ret)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                kw_err_set_detail("db.password_file %s: %s", path, strerror(errno));
                KW_BAIL(KW_ERR_CONFIG);
        }
        struct kw_secret s;
        kw_result r = kw_secret_alloc(PG_PASSWORD_MAX + 2, &s);
        if (!kw_ok(r)) {
                close(fd);
                return r;
        }
        size_t n = 0;
        for (;;) {
                ssize_t k = read(fd, s.p + n, PG_PASSWORD_MAX + 1 - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        kw_err_set_detail("db.password_file %s: %s", path, strerror(errno));
                        r = KW_RESULT(KW_ERR_CONFIG);
                        break;
                }
                if (k == 0)
                        break;
                n += (size_t)k;
                if (n > PG_PASSWORD_MAX) {
                        kw_err_set_detail("db.password_file %s is longer than %u bytes", path,
                                          PG_PASSWORD_MAX);
                        r = KW_RESULT(KW_ERR_CONFIG);
                        break;
                }
        }
        close(fd);
        if (kw_ok(r)) {
                if (n > 0 && s.p[n - 1] == '\n')
                        n--;
                if (n > 0 && s.p[n - 1] == '\r')
                        n--;
                s.p[n] = '\0';
                if (n == 0 || memchr(s.p, '\0', n) != NULL || memchr(s.p, '\n', n) != NULL) {
                        kw_err_set_detail("db.password_file %s must hold the password on one line",
                                          path);
                        r = KW_RESULT(KW_ERR_CONFIG);
                }
        }
        if (!kw_ok(r)) {
                kw_secret_free(&s);
                kw_trace(r.code, __FILE__, __LINE__);
                return r;
        }
        *ret = s;
        return KW_OK;
}

static kw_result conn_params_build(const struct kw_pg_options *o, const char *node,
                                   struct conn_params *cp)
{
        char *err = NULL;
        cp->opts = PQconninfoParse(o->conninfo, &err);
        if (cp->opts == NULL) {
                char msg[256];
                one_line(err != NULL ? err : "out of memory", msg, sizeof msg);
                PQfreemem(err);
                kw_err_set_detail("db.conninfo cannot be parsed: %s", msg);
                KW_BAIL(KW_ERR_CONFIG);
        }
        KW_TRY(check_conninfo(cp->opts));
        size_t count = 0;
        for (const PQconninfoOption *p = cp->opts; p->keyword != NULL; p++)
                count++;
        cp->cap = count + 16;
        cp->kw = calloc(cp->cap, sizeof *cp->kw);
        cp->val = calloc(cp->cap, sizeof *cp->val);
        KW_ENSURE(cp->kw != NULL && cp->val != NULL, KW_ERR_NOMEM);
        for (const PQconninfoOption *p = cp->opts; p->keyword != NULL; p++)
                if (p->val != NULL)
                        KW_TRY(cp_add(cp, p->keyword, p->val));

        snprintf(cp->appname, sizeof cp->appname, "keywardd/%s", node);
        KW_TRY(cp_add(cp, "application_name", cp->appname));
        unsigned ct = o->connect_timeout_s != 0 ? o->connect_timeout_s : 0;
        if (ct == 0 && opt_val(cp->opts, "connect_timeout") == NULL)
                ct = PG_DEFAULT_CONNECT_TIMEOUT_S;
        if (ct != 0) {
                snprintf(cp->timeout, sizeof cp->timeout, "%u", ct < 2 ? 2 : ct);
                KW_TRY(cp_add(cp, "connect_timeout", cp->timeout));
        }
        if (o->statement_timeout_ms != 0) {
                const char *prev = opt_val(cp->opts, "options");
                if (asprintf(&cp->options, "%s%s-c statement_timeout=%u", prev ? prev : "",
                             prev ? " " : "", o->statement_timeout_ms) < 0) {
                        cp->options = NULL;
                        KW_BAIL(KW_ERR_NOMEM);
                }
                KW_TRY(cp_add(cp, "options", cp->options));
        }
        if (opt_val(cp->opts, "client_encoding") == NULL)
                KW_TRY(cp_add(cp, "client_encoding", "UTF8"));
        /* a peer that vanishes without a reset is noticed, not waited on forever */
        if (opt_val(cp->opts, "keepalives_idle") == NULL)
                KW_TRY(cp_add(cp, "keepalives_idle", "10"));
        if (opt_val(cp->opts, "keepalives_interval") == NULL)
                KW_TRY(cp_add(cp, "keepalives_interval", "3"));
        if (opt_val(cp->opts, "keepalives_count") == NULL)
                KW_TRY(cp_add(cp, "keepalives_count", "3"));
        /* ... and one that stops acknowledging a query is given up after
         * 10 s instead of the kernel's ~15 min of retransmissions */
        if (opt_val(cp->opts, "tcp_user_timeout") == NULL)
                KW_TRY(cp_add(cp, "tcp_user_timeout", "10000"));
        KW_TRY(ssl_file_defaults(cp));
        if (o->password_file != NULL && o->password_file[0] != '\0') {
                KW_TRY(read_password(o->password_file, &cp->password));
                KW_TRY(cp_add(cp, "password", (const char *)cp->password.p));
        }
        return KW_OK;
}

/* libpq prints notices and asynchronous errors to stderr by default;
 * library code does not log (the error reaches the caller as a result). */
static void quiet_notice(void *arg, const char *message)
{
        (void)arg;
        (void)message;
}

static kw_result connect_one(const struct conn_params *cp, PGconn **ret)
{
        PGconn *conn = PQconnectdbParams(cp->kw, cp->val, 0);
        if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
                kw_result r = pg_fail_conn(conn, "connection");
                PQfinish(conn);
                return r;
        }
        PQsetNoticeProcessor(conn, quiet_notice, NULL);
        *ret = conn;
        return KW_OK;
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
        if (PQstatus(c->conn) != CONNECTION_OK && !conn_reset(c->conn)) {
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

static kw_result query_int(struct kw_pgstore *pg, struct pg_conn *c, const char *sql,
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

/* Inside the migration transaction, under the advisory lock. */
static kw_result migrate_locked(struct kw_pgstore *pg, struct pg_conn *c, int *ret_version)
{
        int64_t exists = 0;
        KW_TRY(query_int(pg, c, "SELECT (to_regclass('kw_schema') IS NOT NULL)::int", NULL,
                         "schema lookup", &exists));
        int64_t v = 0;
        if (exists) {
                KW_TRY(query_int(pg, c, "SELECT version FROM kw_schema WHERE id = 1", NULL,
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

static void listener_stop(struct kw_pgstore *pg);

static void pg_free(struct kw_pgstore *pg)
{
        listener_stop(pg);
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
        KW_TRY_GOTO(r, conn_params_build(o, pg->node_id, &cp), fail);
        for (unsigned i = 0; i < o->pool_size; i++) {
                KW_TRY_GOTO(r, connect_one(&cp, &pg->conns[i].conn), fail);
                pg->n_conns++;
                KW_TRY_GOTO(r, kw_audit_hasher_new(&pg->conns[i].hasher), fail);
        }
        KW_TRY_GOTO(r, connect_one(&cp, &pg->listen_conn), fail);
        conn_params_free(&cp);     /* the password is wiped here */
        KW_TRY_GOTO(r, migrate(pg), fail);
        *ret = pg;
        return KW_OK;
fail:
        conn_params_free(&cp);
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

/* ------------------------------------------------------------------ listener */

/* '<gen> <kind> <name>', strictly; 0 when malformed. */
static int parse_payload(const char *s, uint64_t *ret_gen, enum kw_pg_change *ret_kind,
                         char name[65])
{
        uint64_t g = 0;
        size_t i = 0;
        for (; s[i] >= '0' && s[i] <= '9'; i++) {
                if (i >= 19 || (i == 1 && s[0] == '0'))
                        return 0;
                g = g * 10 + (uint64_t)(s[i] - '0');
        }
        if (i == 0 || s[i] != ' ')
                return 0;
        s += i + 1;
        static const struct {
                const char *k;
                enum kw_pg_change v;
        } kinds[] = { { "key", KW_PG_CHANGE_KEY },
                      { "token", KW_PG_CHANGE_TOKEN },
                      { "user", KW_PG_CHANGE_USER },
                      { "xks", KW_PG_CHANGE_XKS } };
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
                size_t n = strlen(kinds[k].k);
                if (strncmp(s, kinds[k].k, n) == 0 && s[n] == ' ') {
                        const char *nm = s + n + 1;
                        if (!kw_name_valid(nm))
                                return 0;
                        snprintf(name, 65, "%s", nm);
                        *ret_gen = g;
                        *ret_kind = kinds[k].v;
                        return 1;
                }
        }
        return 0;
}

/* LISTEN and the current gen, on the listener's connection (text results). */
static int listen_setup(PGconn *conn, uint64_t *ret_gen)
{
        PGresult *res = PQexec(conn, "LISTEN " PG_NOTIFY_CHANNEL);
        int ok = res != NULL && PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
        if (!ok)
                return 0;
        res = PQexec(conn, "SELECT gen FROM kw_change WHERE id = 1");
        ok = res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
             !PQgetisnull(res, 0, 0);
        if (ok) {
                char *end = NULL;
                errno = 0;
                unsigned long long g = strtoull(PQgetvalue(res, 0, 0), &end, 10);
                ok = errno == 0 && end != NULL && *end == '\0';
                if (ok)
                        *ret_gen = g;
        }
        PQclear(res);
        return ok;
}

static void listener_why(PGconn *conn, char *why, size_t cap)
{
        one_line(PQerrorMessage(conn), why, cap);
        if (why[0] == '\0')
                snprintf(why, cap, "the listener's query failed");
}

/* Waits up to ms for the stop pipe; 1 when stopping. */
static int wait_stop(struct kw_pgstore *pg, int ms)
{
        struct pollfd pf = { .fd = pg->stop_pipe[0], .events = POLLIN };
        int n = poll(&pf, 1, ms);
        return n > 0;
}

/* Non-blocking reset bounded by connect_timeout and stoppable: 1 when up. */
static int listener_reconnect(struct kw_pgstore *pg, PGconn *conn, int *stop)
{
        if (!PQresetStart(conn))
                return 0;
        unsigned t = pg->connect_timeout_s != 0 ? pg->connect_timeout_s : PG_DEFAULT_CONNECT_TIMEOUT_S;
        int64_t deadline = mono_ms() + (int64_t)t * 1000;
        PostgresPollingStatusType st = PGRES_POLLING_WRITING;
        for (;;) {
                if (st == PGRES_POLLING_OK)
                        return 1;
                if (st == PGRES_POLLING_FAILED)
                        return 0;
                int64_t left = deadline - mono_ms();
                if (left <= 0)
                        return 0;
                struct pollfd pf[2] = {
                        { .fd = PQsocket(conn),
                          .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT },
                        { .fd = pg->stop_pipe[0], .events = POLLIN },
                };
                int n = poll(pf, 2, (int)(left > 1000 ? 1000 : left));
                if (n > 0 && pf[1].revents) {
                        *stop = 1;
                        return 0;
                }
                if (n > 0 && pf[0].revents)
                        st = PQresetPoll(conn);
                else if (pf[0].fd < 0)
                        return 0;
        }
}

struct listen_state {
        uint64_t announced;     /* the highest gen notifications (or polls) covered */
        uint64_t suspect;       /* a gen read at the last poll that notifications had
                                   not covered yet (0: none)                        */
        uint64_t highest;       /* the highest gen read from kw_change (polls only:
                                   a NOTIFY anyone with database access can send)   */
};

static void drain_notifies(struct kw_pgstore *pg, PGconn *conn, struct listen_state *ls)
{
        const struct kw_pg_listener *l = &pg->listener;
        PGnotify *nf;
        while ((nf = PQnotifies(conn)) != NULL) {
                uint64_t g = 0;
                enum kw_pg_change kind = KW_PG_CHANGE_ALL;
                char name[65] = "";
                int ok = strcmp(nf->relname, PG_NOTIFY_CHANNEL) == 0 && nf->extra != NULL &&
                         parse_payload(nf->extra, &g, &kind, name);
                PQfreemem(nf);
                if (!ok) {
                        if (l->changed != NULL)
                                l->changed(KW_PG_CHANGE_ALL, "", l->arg);
                        continue;
                }
                if (g > ls->announced)
                        ls->announced = g;
                if (l->changed != NULL)
                        l->changed(kind, name, l->arg);
        }
}

/* The backstop: 0 when the connection failed. */
static int poll_gen(struct kw_pgstore *pg, PGconn *conn, struct listen_state *ls)
{
        const struct kw_pg_listener *l = &pg->listener;
        PGresult *res = PQexec(conn, "SELECT gen FROM kw_change WHERE id = 1");
        int ok = res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
                 !PQgetisnull(res, 0, 0);
        uint64_t g = 0;
        if (ok) {
                char *end = NULL;
                errno = 0;
                g = strtoull(PQgetvalue(res, 0, 0), &end, 10);
                ok = errno == 0 && end != NULL && *end == '\0';
        }
        PQclear(res);
        if (!ok)
                return 0;
        drain_notifies(pg, conn, ls);
        if (g < ls->highest) {
                /* the counter went back: the database was restored to an
                 * older state (or rolled back to a snapshot) */
                if (l->changed != NULL)
                        l->changed(KW_PG_CHANGE_ALL, "rollback", l->arg);
                ls->highest = ls->announced = g;
                ls->suspect = 0;
                return 1;
        }
        ls->highest = g;
        if (ls->suspect != 0 && ls->announced < ls->suspect) {
                /* a commit that no notification announced within a poll */
                if (l->changed != NULL)
                        l->changed(KW_PG_CHANGE_ALL, "", l->arg);
                ls->announced = g > ls->suspect ? g : ls->suspect;
                ls->suspect = 0;
                return 1;
        }
        ls->suspect = g > ls->announced ? g : 0;
        return 1;
}

static void *listener_main(void *arg)
{
        struct kw_pgstore *pg = arg;
        const struct kw_pg_listener *l = &pg->listener;
        PGconn *conn = pg->listen_conn;
        unsigned poll_ms = l->poll_ms != 0 ? l->poll_ms : PG_DEFAULT_POLL_MS;
        struct listen_state ls = { 0 };
        int up = 1, stop = 0;
        char why[512];
        int64_t next_poll = mono_ms() + poll_ms;
        /* the baseline gen was read by kw_pg_listen_start */
        ls.announced = ls.highest = pg->listen_baseline;
        while (!stop) {
                if (!up) {
                        if (wait_stop(pg, PG_RECONNECT_MS))
                                break;
                        uint64_t g = 0;
                        if (listener_reconnect(pg, conn, &stop) && listen_setup(conn, &g)) {
                                int back = g < ls.highest;
                                up = 1;
                                ls.announced = ls.highest = g;
                                ls.suspect = 0;
                                next_poll = mono_ms() + poll_ms;
                                if (l->state != NULL)
                                        l->state(1, "", l->arg);
                                if (l->changed != NULL)
                                        l->changed(KW_PG_CHANGE_ALL, back ? "rollback" : "", l->arg);
                        }
                        continue;
                }
                int64_t left = next_poll - mono_ms();
                if (left < 0)
                        left = 0;
                struct pollfd pf[2] = {
                        { .fd = PQsocket(conn), .events = POLLIN },
                        { .fd = pg->stop_pipe[0], .events = POLLIN },
                };
                int n = poll(pf, 2, (int)left);
                if (n < 0 && errno != EINTR)
                        n = 0;
                if (n > 0 && pf[1].revents)
                        break;
                int ok = 1;
                if (n > 0 && pf[0].revents) {
                        ok = PQconsumeInput(conn) == 1;
                        if (ok)
                                drain_notifies(pg, conn, &ls);
                }
                if (ok && mono_ms() >= next_poll) {
                        ok = poll_gen(pg, conn, &ls);
                        next_poll = mono_ms() + poll_ms;
                }
                if (!ok || PQstatus(conn) != CONNECTION_OK) {
                        listener_why(conn, why, sizeof why);
                        up = 0;
                        if (l->state != NULL)
                                l->state(0, why, l->arg);
                }
        }
        return NULL;
}

kw_result kw_pg_listen_start(struct kw_pgstore *pg, const struct kw_pg_listener *l)
{
        KW_ENSURE(pg != NULL && l != NULL, KW_ERR_INPUT);
        if (pg->listening) {
                kw_err_set_detail("the fleet listener is already running");
                KW_BAIL(KW_ERR_BAD_STATE);
        }
        if (PQstatus(pg->listen_conn) != CONNECTION_OK && !conn_reset(pg->listen_conn))
                return pg_fail_conn(pg->listen_conn, "listener connection");
        uint64_t g = 0;
        if (!listen_setup(pg->listen_conn, &g))
                return pg_fail_conn(pg->listen_conn, "LISTEN " PG_NOTIFY_CHANNEL);
        if (pg->stop_pipe[0] < 0 && pipe2(pg->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
                pg->stop_pipe[0] = pg->stop_pipe[1] = -1;
                kw_err_set_detail("cannot make the listener's pipe: %s", strerror(errno));
                KW_BAIL(KW_ERR_INTERNAL);
        }
        pg->listener = *l;
        pg->listen_baseline = g;
        if (pthread_create(&pg->listen_thread, NULL, listener_main, pg) != 0) {
                kw_err_set_detail("cannot start the listener thread");
                KW_BAIL(KW_ERR_INTERNAL);
        }
        pg->listening = 1;
        return KW_OK;
}

static void listener_stop(struct kw_pgstore *pg)
{
        if (!pg->listening)
                return;
        char b = 1;
        while (write(pg->stop_pipe[1], &b, 1) < 0 && errno == EINTR)
                ;
        pthread_join(pg->listen_thread, NULL);
        pg->listening = 0;
}

/* ------------------------------------------------------------------- nodes */

#define SQL_DB_NOW_MS "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"

static void node_fields(const struct kw_node_row *n, struct pg_field f[8])
{
        f[0] = PG_FSTR(n->id);
        f[1] = PG_FSTR(n->address);
        f[2] = PG_FSTR(n->version);
        f[3] = PG_FINT(n->schema);
        f[4] = PG_FSTR(n->state);
        f[5] = PG_FSTR(n->detail);
        f[6] = PG_FINT(n->started_ms);
        f[7] = PG_FINT(n->seen_ms);
}

static int fits(const char *s, size_t cap)
{
        return strnlen(s, cap) < cap && kw_utf8_printable(s);
}

kw_result kw_pg_node_heartbeat(struct kw_pgstore *pg, const struct kw_node_row *me)
{
        KW_ENSURE(pg != NULL && me != NULL, KW_ERR_INPUT);
        struct kw_node_row n = *me;
        if (n.id[0] == '\0')
                snprintf(n.id, sizeof n.id, "%s", pg->node_id);
        if (!fits(n.id, sizeof n.id) || !fits(n.address, sizeof n.address) ||
            !fits(n.version, sizeof n.version) || !fits(n.state, sizeof n.state) ||
            !fits(n.detail, sizeof n.detail)) {
                kw_err_set_detail("a node row's field is too long or not printable");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        kw_result r;
        struct pg_conn *c = pg_acquire(pg, &r);
        if (c == NULL)
                return r;
        int64_t now = 0;
        r = query_int(pg, c, "SELECT " SQL_DB_NOW_MS, NULL, "clock", &now);
        if (kw_ok(r)) {
                n.seen_ms = now;
                struct pg_field f[8];
                node_fields(&n, f);
                uint8_t mac[PG_MAC_LEN];
                r = pg_row_mac(pg, "nodes", f, 8, mac);
                if (kw_ok(r)) {
                        struct pg_params p = { 0 };
                        pg_param_text(&p, n.id);
                        pg_param_text(&p, n.address);
                        pg_param_text(&p, n.version);
                        pg_param_i64(&p, n.schema);
                        pg_param_text(&p, n.state);
                        pg_param_text(&p, n.detail);
                        pg_param_i64(&p, n.started_ms);
                        pg_param_i64(&p, n.seen_ms);
                        pg_param_bytes(&p, mac, sizeof mac);
                        r = pg_exec(pg, c,
                                    "INSERT INTO nodes (id, address, version, schema, state, detail,"
                                    " started_ms, seen_ms, mac) VALUES ($1, $2, $3, $4, $5, $6, $7,"
                                    " $8, $9) ON CONFLICT (id) DO UPDATE SET address = $2,"
                                    " version = $3, schema = $4, state = $5, detail = $6,"
                                    " started_ms = $7, seen_ms = $8, mac = $9",
                                    &p, "heartbeat", NULL);
                }
        }
        pg_release(pg, c);
        return r;
}

/* A node row from a result of NODE_COLS (+ mac at 8, age at 9). */
#define NODE_COLS "id, address, version, schema, state, detail, started_ms, seen_ms, mac"

static kw_result node_from_res(struct kw_pgstore *pg, const PGresult *res, int i,
                               struct kw_node_row *ret)
{
        struct kw_node_row n;
        memset(&n, 0, sizeof n);
        int64_t schema = 0;
        KW_TRY(pg_col_text(res, i, 0, n.id, sizeof n.id));
        KW_TRY(pg_col_text(res, i, 1, n.address, sizeof n.address));
        KW_TRY(pg_col_text(res, i, 2, n.version, sizeof n.version));
        KW_TRY(pg_col_i64(res, i, 3, &schema));
        n.schema = (int)schema;
        KW_TRY(pg_col_text(res, i, 4, n.state, sizeof n.state));
        KW_TRY(pg_col_text(res, i, 5, n.detail, sizeof n.detail));
        KW_TRY(pg_col_i64(res, i, 6, &n.started_ms));
        KW_TRY(pg_col_i64(res, i, 7, &n.seen_ms));
        const uint8_t *mac = NULL;
        size_t ml = 0;
        KW_TRY(pg_col_bytes(res, i, 8, &mac, &ml));
        struct pg_field f[8];
        node_fields(&n, f);
        KW_TRY(pg_row_verify(pg, "nodes", n.id, f, 8, mac, ml));
        KW_TRY(pg_col_i64(res, i, 9, &n.age_ms));
        *ret = n;
        return KW_OK;
}

kw_result kw_pg_node_list(struct kw_pgstore *pg, int (*cb)(const struct kw_node_row *row, void *arg),
                          void *arg, unsigned *ret_bad)
{
        KW_ENSURE(pg != NULL && cb != NULL, KW_ERR_INPUT);
        kw_result r;
        struct pg_conn *c = pg_acquire(pg, &r);
        if (c == NULL)
                return r;
        PGresult *res _cleanup_pgresult_ = NULL;
        r = pg_exec(pg, c,
                    "SELECT " NODE_COLS ", " SQL_DB_NOW_MS " - seen_ms FROM nodes"
                    " ORDER BY id COLLATE \"C\"",
                    NULL, "node list", &res);
        pg_release(pg, c);
        KW_TRY(r);
        int n = PQntuples(res);
        struct kw_node_row *rows = calloc(n > 0 ? (size_t)n : 1, sizeof *rows);
        KW_ENSURE(rows != NULL, KW_ERR_NOMEM);
        size_t good = 0;
        unsigned bad = 0;
        for (int i = 0; i < n; i++) {
                r = node_from_res(pg, res, i, &rows[good]);
                if (kw_ok(r)) {
                        good++;
                } else if (r.code == KW_ERR_DB_TAMPERED || r.code == KW_ERR_DB_CORRUPT) {
                        bad++;     /* skipped, counted (pgstore.h) */
                } else {
                        free(rows);
                        return r;
                }
        }
        pg_clearp(&res);
        for (size_t i = 0; i < good; i++)
                if (cb(&rows[i], arg) != 0)
                        break;
        free(rows);
        if (ret_bad != NULL)
                *ret_bad = bad;
        return KW_OK;
}

kw_result kw_pg_node_forget(struct kw_pgstore *pg, int64_t older_ms, unsigned *ret_n)
{
        KW_ENSURE(pg != NULL && older_ms >= 0, KW_ERR_INPUT);
        kw_result r;
        struct pg_conn *c = pg_acquire(pg, &r);
        if (c == NULL)
                return r;
        struct pg_params p = { 0 };
        pg_param_i64(&p, older_ms);
        PGresult *res _cleanup_pgresult_ = NULL;
        r = pg_exec(pg, c, "DELETE FROM nodes WHERE seen_ms < " SQL_DB_NOW_MS " - $1::bigint", &p,
                    "node forget", &res);
        pg_release(pg, c);
        KW_TRY(r);
        if (ret_n != NULL) {
                uint64_t k = pg_affected(res);
                *ret_n = k > UINT32_MAX ? UINT32_MAX : (unsigned)k;
        }
        return KW_OK;
}

kw_result kw_pg_ping(struct kw_pgstore *pg, uint64_t *ret_gen)
{
        KW_ENSURE(pg != NULL, KW_ERR_INPUT);
        kw_result r;
        struct pg_conn *c = pg_acquire(pg, &r);
        if (c == NULL)
                return r;
        int64_t g = 0;
        r = query_int(pg, c, "SELECT gen FROM kw_change WHERE id = 1", NULL, "ping", &g);
        pg_release(pg, c);
        KW_TRY(r);
        if (ret_gen != NULL)
                *ret_gen = (uint64_t)g;
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
