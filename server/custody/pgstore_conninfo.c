/*
 * pgstore_conninfo.c - the fleet database's connection string (db.conninfo)
 * checked and completed, the password file read, and one connection made
 * (pgstore_int.h; moved out of pgstore.c, whose kw_pg_open calls these).
 * The password is read once, at open, and wiped with the parameters
 * (pg_conn_params_free) right after every connection is made.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "pgstore_int.h"

#define PG_PASSWORD_MAX 1024

/* ------------------------------------------------------- connection string */

void pg_conn_params_free(struct conn_params *cp)
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

kw_result pg_conn_params_build(const struct kw_pg_options *o, const char *node,
                               struct conn_params *cp)
{
        char *err = NULL;
        cp->opts = PQconninfoParse(o->conninfo, &err);
        if (cp->opts == NULL) {
                char msg[256];
                pg_one_line(err != NULL ? err : "out of memory", msg, sizeof msg);
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

kw_result pg_connect_one(const struct conn_params *cp, PGconn **ret)
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
