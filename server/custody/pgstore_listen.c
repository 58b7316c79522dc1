/*
 * pgstore_listen.c - the fleet store's listener thread (kw_pg_listen_start,
 * contract in pgstore.h), node heartbeats, the node list and ping (moved
 * out of pgstore.c; the store, its pool and queries are there).
 *
 * Choices made here:
 *   - A gen read from kw_change that no notification announced is
 *     reported as KW_PG_CHANGE_ALL at the next poll only if notifications
 *     still have not caught up by then (a NOTIFY may arrive a moment after
 *     the commit is visible): the backstop reacts within 2 x poll_ms.  A gen
 *     read LOWER than the highest one read before (a restored or rolled
 *     back database) is KW_PG_CHANGE_ALL named "rollback" (at a poll, or at
 *     the reconnect after the restore); every other ALL is named "".  Only
 *     gens read from kw_change count for that, never a notification's
 *     (anyone with database access can NOTIFY).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/names.h"
#include "pgstore_int.h"

#define PG_RECONNECT_MS 500
#define PG_DEFAULT_POLL_MS 250

static int64_t mono_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
        pg_one_line(PQerrorMessage(conn), why, cap);
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
        if (PQstatus(pg->listen_conn) != CONNECTION_OK && !pg_conn_reset(pg->listen_conn))
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

void pg_listener_stop(struct kw_pgstore *pg)
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
        r = pg_query_int(pg, c, "SELECT " SQL_DB_NOW_MS, NULL, "clock", &now);
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
        r = pg_query_int(pg, c, "SELECT gen FROM kw_change WHERE id = 1", NULL, "ping", &g);
        pg_release(pg, c);
        KW_TRY(r);
        if (ret_gen != NULL)
                *ret_gen = (uint64_t)g;
        return KW_OK;
}
