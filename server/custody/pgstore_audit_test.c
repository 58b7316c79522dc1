/* pgstore_audit_test.c - cmocka tests of the audit chain on a real
 * PostgreSQL (tests/fleet/pg.sh exports KW_TEST_PG, its password file and
 * KW_TEST_PG_SUPER): two kw_pgstore handles are two nodes appending to one
 * chain, admin rows and batches verify as one chain, the query's filters,
 * tampering in SQL found by verify (rows, batches, the tail, the head, a
 * checkpoint), retention (read the oldest, prune behind a MAC'd checkpoint)
 * and two nodes pruning at once.  Each test starts from an empty schema. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "common/err.h"
#include "custody/pgstore_int.h"

static const uint8_t mac_key[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
static const uint8_t zero[32];

struct fx {
        struct kw_pgstore *a, *b;    /* two nodes of one fleet */
        PGconn *raw;                 /* the superuser: tampers as a DBA would */
};

/* ---------------------------------------------------------------- raw SQL */

static void raw_exec(struct fx *f, const char *sql)
{
        PGresult *res = PQexec(f->raw, sql);
        ExecStatusType st = PQresultStatus(res);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
                fail_msg("%s: %s", sql, PQerrorMessage(f->raw));
        PQclear(res);
}

static long long raw_int(struct fx *f, const char *sql)
{
        PGresult *res = PQexec(f->raw, sql);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
                fail_msg("%s: %s", sql, PQerrorMessage(f->raw));
        long long v = PQgetisnull(res, 0, 0) ? -1 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        return v;
}

/* Flips bit 4 of byte `at` of a batch's data. */
static void raw_flip_batch_byte(struct fx *f, uint64_t first_seq, size_t at)
{
        char sql[300];
        snprintf(sql, sizeof sql,
                 "UPDATE audit_batch SET data = set_byte(data, %zu, get_byte(data, %zu) # 16)"
                 " WHERE first_seq = %llu", at, at, (unsigned long long)first_seq);
        raw_exec(f, sql);
}

/* ---------------------------------------------------------------- fixture */

struct sink {
        size_t n;
        uint64_t last_seq;
        char last_hash[65];
};

/* Counts what it is handed. */
static int sink_cb_any(const struct kw_audit_row *row, void *arg)
{
        (void)row;
        ((struct sink *)arg)->n++;
        return 0;
}

static const char *need_env(const char *name)
{
        const char *v = getenv(name);
        if (v == NULL || v[0] == '\0') {
                fprintf(stderr, "pgstore_audit_test: %s is not set: run it under tests/fleet/pg.sh "
                                "(make unit does)\n", name);
                exit(1);
        }
        return v;
}

static struct kw_pgstore *open_node(const char *node)
{
        struct kw_pg_options o = { .conninfo = need_env("KW_TEST_PG"),
                                   .password_file = need_env("KW_TEST_PG_PASSWORD_FILE"),
                                   .node_id = node, .pool_size = 4, .connect_timeout_s = 5,
                                   .statement_timeout_ms = 60000 };
        struct kw_pgstore *pg = NULL;
        kw_result r = kw_pg_open(&o, &pg);
        if (!kw_ok(r))
                fail_msg("kw_pg_open: %d %s", r.code, kw_err_detail());
        kw_pg_set_mac_key(pg, mac_key);
        return pg;
}

static int setup(void **state)
{
        struct fx *f = calloc(1, sizeof *f);
        assert_non_null(f);
        f->raw = PQconnectdb(need_env("KW_TEST_PG_SUPER"));
        if (PQstatus(f->raw) != CONNECTION_OK)
                fail_msg("superuser connection: %s", PQerrorMessage(f->raw));
        raw_exec(f, "SET client_min_messages = warning;"
                    "DROP SCHEMA public CASCADE; CREATE SCHEMA public AUTHORIZATION keyward");
        f->a = open_node("node-a");
        f->b = open_node("node-b");
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;
        kw_pg_close(f->a);
        kw_pg_close(f->b);
        PQfinish(f->raw);
        free(f);
        return 0;
}

/* ------------------------------------------------------------- helpers */

/* n key uses: key "k<i % 3>", action xks.encrypt / xks.decrypt, detail
 * "d<tag>-<i>", request id "r<i>", time base + i. */
static kw_result try_uses(struct kw_pgstore *pg, int n, int tag, int64_t base)
{
        struct kw_audit_entry *e = calloc((size_t)n, sizeof *e);
        char (*k)[16] = calloc((size_t)n, 16), (*d)[24] = calloc((size_t)n, 24),
             (*rid)[16] = calloc((size_t)n, 16);
        assert_true(e != NULL && k != NULL && d != NULL && rid != NULL);
        for (int i = 0; i < n; i++) {
                snprintf(k[i], 16, "k%d", i % 3);
                snprintf(d[i], 24, "d%d-%d", tag, i);
                snprintf(rid[i], 16, "r%d", i);
                e[i] = (struct kw_audit_entry){ .ts_ms = base + i, .actor = "xks:default:AKIA",
                                                .action = i % 2 ? "xks.decrypt" : "xks.encrypt",
                                                .key_name = k[i], .result = "ok", .detail = d[i],
                                                .request_id = rid[i] };
        }
        kw_result r = kw_pg_audit_append(pg, e, (size_t)n);
        free(e);
        free(k);
        free(d);
        free(rid);
        return r;
}

static void append_uses(struct kw_pgstore *pg, int n, int tag, int64_t base)
{
        kw_result r = try_uses(pg, n, tag, base);
        if (!kw_ok(r))
                fail_msg("append: %d %s", r.code, kw_err_detail());
}

/* An admin action's row, inside a mutation's transaction (as pgstore_keys.c
 * writes one). */
static kw_result try_admin(struct kw_pgstore *pg, unsigned n)
{
        char key[32];
        snprintf(key, sizeof key, "admin-%u", n);
        struct kw_audit_entry a = { .actor = "token:t(admin)", .action = "key.create",
                                    .key_name = key, .result = "ok" };
        return PG_RUN_TX(pg, c, gen, ((void)gen, pg_tx_audit(pg, c, &a)));
}

static void admin_row(struct kw_pgstore *pg, unsigned n)
{
        kw_result r = try_admin(pg, n);
        if (!kw_ok(r))
                fail_msg("admin row: %d %s", r.code, kw_err_detail());
}

static struct kw_audit_verify verify(struct kw_pgstore *pg)
{
        struct kw_audit_verify v;
        kw_result r = kw_pg_audit_verify_ex(pg, &v);
        if (!kw_ok(r))
                fail_msg("verify: %d %s", r.code, kw_err_detail());
        return v;
}

/* Every record as the query shows it. */
#define MAXR 2000
struct got {
        size_t n;
        uint64_t seq[MAXR];
        int64_t ts[MAXR];
        char f[MAXR][6][40];
        char hash[MAXR][65];
};

static int got_cb(const struct kw_audit_row *row, void *arg)
{
        struct got *g = arg;
        if (g->n == MAXR)
                return 1;
        g->seq[g->n] = row->seq;
        g->ts[g->n] = row->ts_ms;
        const char *f[6] = { row->actor, row->action, row->key_name, row->result, row->detail,
                             row->request_id };
        for (int i = 0; i < 6; i++) {
                assert_int_equal(strlen(f[i]), row->len[i]);
                snprintf(g->f[g->n][i], 40, "%s", f[i]);
        }
        snprintf(g->hash[g->n], 65, "%s", row->hash_hex);
        g->n++;
        return 0;
}

/* Every record matching flt, page by page: ascending with after, or
 * descending with before = the smallest seq of the page before. */
static void query_filter_all(struct kw_pgstore *pg, struct kw_audit_filter flt, struct got *g)
{
        memset(g, 0, sizeof *g);
        if (flt.limit == 0)
                flt.limit = 100;
        for (;;) {
                size_t before = g->n;
                kw_result r = kw_pg_audit_query_filter(pg, &flt, got_cb, g);
                if (!kw_ok(r))
                        fail_msg("query: %d %s", r.code, kw_err_detail());
                if (g->n - before < flt.limit || g->n == MAXR)
                        return;
                if (flt.desc)
                        flt.before = g->seq[g->n - 1];
                else
                        flt.after = g->seq[g->n - 1];
        }
}

static void query_all(struct kw_pgstore *pg, uint64_t after, const char *key, const char *action,
                      uint32_t page, struct got *g)
{
        query_filter_all(pg, (struct kw_audit_filter){ .after = after, .limit = page, .key_name = key,
                                                       .action = action }, g);
}

/* The query's hashes are the chain, recomputed independently from start. */
static void assert_chain_of(const struct got *g, const uint8_t start[32])
{
        struct kw_audit_hasher *h = NULL;
        assert_int_equal(kw_audit_hasher_new(&h).code, 0);
        uint8_t prev[32];
        memcpy(prev, start, 32);
        for (size_t i = 0; i < g->n; i++) {
                struct kw_audit_rec r;
                kw_audit_rec_set(&r, g->ts[i], g->f[i][0], g->f[i][1], g->f[i][2], g->f[i][3],
                                 g->f[i][4], g->f[i][5]);
                assert_int_equal(kw_audit_chain_step(h, prev, g->seq[i], &r, prev).code, 0);
                char hex[65];
                kw_audit_hex(prev, 32, hex);
                assert_string_equal(hex, g->hash[i]);
        }
        kw_audit_hasher_free(h);
}

/* ------------------------------------------------------- one fleet chain */

struct writer {
        struct kw_pgstore *pg;
        int tag;
        int rounds;
        int failures;
};

static void *writer_main(void *arg)
{
        struct writer *w = arg;
        for (int i = 0; i < w->rounds; i++) {
                if (!kw_ok(try_uses(w->pg, 1 + (i * 7 + w->tag) % 40, w->tag * 1000 + i,
                                    1700000000000 + i)))
                        w->failures++;
                if (i % 3 == 0 && !kw_ok(try_admin(w->pg, (unsigned)(w->tag * 1000 + i))))
                        w->failures++;
        }
        return NULL;
}

/* Two nodes (two handles, two threads each) append key-use batches and
 * admin rows at once: one chain, every seq once, no gap, both nodes named. */
static void pgstore_audit_two_nodes_append_concurrently_one_chain(void **state)
{
        struct fx *f = *state;
        struct writer w[4] = { { f->a, 1, 40, 0 }, { f->b, 2, 40, 0 }, { f->a, 3, 40, 0 },
                               { f->b, 4, 40, 0 } };
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
                assert_int_equal(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
        for (int i = 0; i < 4; i++) {
                assert_int_equal(pthread_join(t[i], NULL), 0);
                assert_int_equal(w[i].failures, 0);
        }
        long long uses = 0, admins = 0;
        for (int k = 0; k < 4; k++)
                for (int i = 0; i < 40; i++) {
                        uses += 1 + (i * 7 + w[k].tag) % 40;
                        admins += i % 3 == 0;
                }
        long long total = uses + admins;
        assert_int_equal(raw_int(f, "SELECT count(*) FROM audit"), admins);
        assert_int_equal(raw_int(f, "SELECT count(*) FROM audit_batch"), 4 * 40);
        /* every seq once: rows and batch ranges tile 1..total */
        assert_int_equal(raw_int(f, "SELECT count(*) + coalesce((SELECT sum(last_seq - first_seq + 1)"
                                    " FROM audit_batch), 0) FROM audit"), total);
        assert_int_equal(raw_int(f, "SELECT max(s) FROM (SELECT seq AS s FROM audit UNION ALL"
                                    " SELECT last_seq FROM audit_batch) x"), total);
        assert_int_equal(raw_int(f, "SELECT count(DISTINCT node) FROM (SELECT node FROM audit UNION"
                                    " ALL SELECT node FROM audit_batch) x"), 2);
        assert_int_equal(raw_int(f, "SELECT seq FROM audit_head"), total);
        struct kw_audit_verify v = verify(f->b);
        assert_int_equal(v.first_bad_seq, 0);
        assert_string_equal(v.why, "");
        assert_int_equal(v.records, total);
        assert_int_equal(v.batches, 4 * 40);
        assert_int_equal(v.head_seq, total);
        static struct got g;
        query_all(f->a, 0, NULL, NULL, 1000, &g);
        assert_int_equal(g.n, total < MAXR ? total : MAXR);
        for (size_t i = 0; i < g.n; i++)
                assert_int_equal(g.seq[i], i + 1);
        assert_chain_of(&g, zero);
}

/* A flush of 90 records is one row; 8193 records are two batches; admin
 * rows interleave; one chain across all, shown record by record. */
static void pgstore_audit_append_is_one_row_per_batch_one_chain(void **state)
{
        struct fx *f = *state;
        admin_row(f->a, 1);                                   /* seq 1      */
        append_uses(f->b, 90, 1, 1700000000000);              /* seq 2..91  */
        admin_row(f->b, 2);                                   /* seq 92     */
        append_uses(f->a, 8193, 2, 1700000100000);            /* 93..8285   */
        assert_int_equal(raw_int(f, "SELECT count(*) FROM audit_batch"), 3);
        assert_int_equal(raw_int(f, "SELECT count(*) FROM audit"), 2);
        assert_int_equal(raw_int(f, "SELECT last_seq FROM audit_batch WHERE first_seq = 93"), 93 + 8191);
        assert_int_equal(raw_int(f, "SELECT count(*) FROM audit_batch_name WHERE first_seq = 93"), 5);
        assert_int_equal(raw_int(f, "SELECT count(*) FROM audit_batch WHERE node = 'node-b'"), 1);
        struct kw_audit_verify v = verify(f->a);
        assert_int_equal(v.first_bad_seq, 0);
        assert_int_equal(v.records, 8285);
        assert_int_equal(v.batches, 3);
        assert_int_equal(v.head_seq, 8285);
        static struct got g;
        query_all(f->b, 0, NULL, NULL, 1000, &g);
        assert_int_equal(g.n, MAXR);
        for (size_t i = 0; i < g.n; i++)
                assert_int_equal(g.seq[i], i + 1);
        assert_chain_of(&g, zero);
        assert_string_equal(g.f[0][1], "key.create");
        assert_string_equal(g.f[1][4], "d1-0");
        assert_string_equal(g.f[1][5], "r0");
        assert_true(g.ts[2] == 1700000000001);
        assert_string_equal(g.f[91][2], "admin-2");
        static struct got tail;
        query_all(f->a, 8284, NULL, NULL, 10, &tail);
        assert_int_equal(tail.n, 1);
        char hex[65];
        kw_audit_hex(v.head_hash, 32, hex);
        assert_string_equal(tail.hash[0], hex);
        /* the head names the last record, with its MAC */
        assert_int_equal(raw_int(f, "SELECT seq FROM audit_head"), 8285);
        assert_int_equal(raw_int(f, "SELECT length(mac) FROM audit_head"), 32);
}

/* A mutation's audit row (pgstore_keys.c's key insert) joins the chain in
 * the mutation's transaction: a refused mutation leaves no row and the
 * head where it was. */
static void pgstore_audit_mutation_row_is_in_its_transaction(void **state)
{
        struct fx *f = *state;
        append_uses(f->a, 5, 1, 1000);
        struct kw_key_row k;
        memset(&k, 0, sizeof k);
        snprintf(k.id, sizeof k.id, "%032x", 7);
        snprintf(k.name, sizeof k.name, "orders");
        snprintf(k.type, sizeof k.type, "AES");
        snprintf(k.state, sizeof k.state, "enabled");
        k.size = 256;
        k.ops = 15;
        k.current_version = 1;
        k.tags_json = (char *)"{}";
        k.rules_json = (char *)"{}";
        static const uint8_t blob[] = "sealed";
        struct kw_audit_entry a = { .actor = "token:t(admin)", .action = "key.create",
                                    .key_name = "orders", .result = "ok", .request_id = "q1" };
        kw_result r = kw_pg_key_insert(f->b, &k, blob, sizeof blob, &a);
        if (!kw_ok(r))
                fail_msg("key insert: %d %s", r.code, kw_err_detail());
        assert_int_equal(raw_int(f, "SELECT seq FROM audit WHERE action = 'key.create'"), 6);
        assert_int_equal(kw_pg_key_insert(f->a, &k, blob, sizeof blob, &a).code, KW_ERR_EXISTS);
        assert_int_equal(raw_int(f, "SELECT count(*) FROM audit"), 1);
        assert_int_equal(raw_int(f, "SELECT seq FROM audit_head"), 6);
        append_uses(f->a, 5, 2, 2000);
        struct kw_audit_verify v = verify(f->a);
        assert_int_equal(v.first_bad_seq, 0);
        assert_int_equal(v.records, 11);
        static struct got g;
        query_all(f->b, 0, "orders", NULL, 10, &g);
        assert_int_equal(g.n, 1);
        assert_string_equal(g.f[0][5], "q1");
}

/* What append refuses writes nothing. */
static void pgstore_audit_append_refuses_and_writes_nothing(void **state)
{
        struct fx *f = *state;
        /* an empty chain: intact, nothing held, the initial head (no MAC) */
        struct kw_audit_verify v0 = verify(f->a);
        assert_true(v0.first_bad_seq == 0 && v0.records == 0 && v0.head_seq == 0 && v0.start_seq == 0);
        struct kw_audit_stats st;
        assert_int_equal(kw_pg_audit_stats(f->b, &st).code, 0);
        assert_true(st.records == 0 && st.first_seq == 0 && st.last_seq == 0 && st.checkpoints == 0 &&
                    st.oldest_ts_ms == 0 && st.db_bytes > 0);
        assert_int_equal(raw_int(f, "SELECT count(*) FROM audit_head WHERE mac IS NULL"), 1);
        append_uses(f->a, 3, 1, 1000);
        static char big[KW_AUDIT_FIELD_MAX + 2];
        memset(big, 'x', sizeof big - 1);
        struct kw_audit_entry e[2] = { { .action = "xks.encrypt" }, { .detail = big } };
        assert_int_equal(kw_pg_audit_append(f->a, e, 2).code, KW_ERR_TOO_LARGE);
        assert_int_equal(kw_pg_audit_append(f->a, NULL, 1).code, KW_ERR_INPUT);
        assert_int_equal(kw_pg_audit_append(f->a, e, 65537).code, KW_ERR_TOO_LARGE);
        assert_int_equal(kw_pg_audit_append(f->a, e, 0).code, 0);
        struct kw_audit_entry a = { .detail = big };
        assert_int_equal(PG_RUN_TX(f->a, c, gen, ((void)gen, pg_tx_audit(f->a, c, &a))).code,
                         KW_ERR_TOO_LARGE);
        /* a key name too long for the name index is stored, not indexed */
        static char longkey[200];
        memset(longkey, 'q', sizeof longkey - 1);
        struct kw_audit_entry lk = { .action = "xks.encrypt", .key_name = longkey };
        assert_int_equal(kw_pg_audit_append(f->a, &lk, 1).code, 0);
        assert_int_equal(raw_int(f, "SELECT count(*) FROM audit_batch_name WHERE first_seq = 4"), 1);
        /* so is one that is not UTF-8 (a UTF-8 database's text cannot hold
         * it): the record keeps its bytes, a query for it finds nothing */
        struct kw_audit_entry bad8 = { .action = "xks.decrypt", .key_name = "k\xff" };
        assert_int_equal(kw_pg_audit_append(f->a, &bad8, 1).code, 0);
        assert_int_equal(raw_int(f, "SELECT count(*) FROM audit_batch_name WHERE first_seq = 5"), 1);
        static struct got g;
        query_all(f->b, 0, "k\xff", NULL, 10, &g);
        assert_int_equal(g.n, 0);
        query_all(f->b, 4, NULL, NULL, 10, &g);
        assert_int_equal(g.n, 1);
        assert_string_equal(g.f[0][2], "k\xff");
        /* a node without the MAC key appends nothing (nothing is read or written) */
        struct kw_pgstore *sealed = NULL;
        struct kw_pg_options o = { .conninfo = need_env("KW_TEST_PG"),
                                   .password_file = need_env("KW_TEST_PG_PASSWORD_FILE"),
                                   .node_id = "node-c", .pool_size = 1, .connect_timeout_s = 5 };
        assert_int_equal(kw_pg_open(&o, &sealed).code, 0);
        assert_int_equal(try_uses(sealed, 2, 9, 5000).code, KW_ERR_SEALED);
        assert_int_equal(try_admin(sealed, 9).code, KW_ERR_SEALED);
        struct kw_audit_verify v;
        assert_int_equal(kw_pg_audit_verify_ex(sealed, &v).code, KW_ERR_SEALED);
        kw_pg_close(sealed);
        v = verify(f->a);
        assert_int_equal(v.first_bad_seq, 0);
        assert_int_equal(v.records, 5);
        assert_int_equal(raw_int(f, "SELECT seq FROM audit_head"), 5);
}

/* The database stopped: every call is KW_ERR_DB_UNAVAILABLE; started
 * again, the same handles reconnect and the chain goes on. */
static void pg_ctl(const char *what)
{
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "%s %s >/dev/null 2>&1", need_env("KW_TEST_PG_CTL"), what);
        assert_int_equal(system(cmd), 0);
}

static void pgstore_audit_database_down_is_unavailable_then_recovers(void **state)
{
        struct fx *f = *state;
        append_uses(f->a, 5, 1, 1000);
        admin_row(f->b, 1);
        pg_ctl("stop -m fast");
        assert_int_equal(try_uses(f->a, 3, 2, 2000).code, KW_ERR_DB_UNAVAILABLE);
        assert_int_equal(try_admin(f->b, 2).code, KW_ERR_DB_UNAVAILABLE);
        struct kw_audit_verify v;
        assert_int_equal(kw_pg_audit_verify_ex(f->a, &v).code, KW_ERR_DB_UNAVAILABLE);
        struct kw_audit_stats st;
        assert_int_equal(kw_pg_audit_stats(f->b, &st).code, KW_ERR_DB_UNAVAILABLE);
        static struct got g;
        memset(&g, 0, sizeof g);
        assert_int_equal(kw_pg_audit_query_filter(f->a, &(struct kw_audit_filter){ .limit = 10 },
                                                  got_cb, &g).code, KW_ERR_DB_UNAVAILABLE);
        assert_null(strstr(kw_err_detail(), "password"));
        struct sink s0 = { 0 };
        struct kw_audit_range rg;
        struct kw_audit_select sel = { .min_records = 1, .max_records = 10 };
        assert_int_equal(kw_pg_audit_read_oldest(f->a, &sel, sink_cb_any, &s0, &rg).code,
                         KW_ERR_DB_UNAVAILABLE);
        assert_int_equal(s0.n, 0);
        pg_ctl("start");
        PQreset(f->raw);
        append_uses(f->a, 3, 3, 3000);
        admin_row(f->b, 3);
        v = verify(f->b);
        assert_int_equal(v.first_bad_seq, 0);
        assert_int_equal(v.records, 10);
        query_all(f->a, 0, NULL, NULL, 100, &g);
        assert_int_equal(g.n, 10);
        assert_chain_of(&g, zero);
}

/* ---------------------------------------------------------------- query */

static void pgstore_audit_query_filters_and_paging_across_rows_and_batches(void **state)
{
        struct fx *f = *state;
        append_uses(f->a, 30, 1, 1000);     /* seq 1..30: k0,k1,k2 ...; encrypt at even i */
        admin_row(f->b, 7);                 /* seq 31: key admin-7 */
        append_uses(f->b, 30, 2, 2000);     /* seq 32..61 */
        static struct got g;
        for (uint32_t page = 1; page <= 8; page += 7) {
                query_all(f->a, 0, NULL, NULL, page, &g);
                assert_int_equal(g.n, 61);
                for (size_t i = 0; i < g.n; i++)
                        assert_int_equal(g.seq[i], i + 1);
        }
        query_all(f->a, 17, NULL, NULL, 5, &g);   /* after, in the middle of a batch */
        assert_int_equal(g.n, 44);
        assert_int_equal(g.seq[0], 18);
        query_all(f->a, 0, "k1", NULL, 4, &g);
        assert_int_equal(g.n, 20);
        for (size_t i = 0; i < g.n; i++)
                assert_string_equal(g.f[i][2], "k1");
        query_all(f->a, 0, "admin-7", NULL, 100, &g);
        assert_int_equal(g.n, 1);
        assert_int_equal(g.seq[0], 31);
        query_all(f->a, 0, NULL, "key.create", 100, &g);
        assert_int_equal(g.n, 1);
        query_all(f->a, 0, NULL, "xks.decrypt", 100, &g);
        assert_int_equal(g.n, 30);
        query_all(f->a, 10, "k0", "xks.encrypt", 3, &g);
        assert_int_equal(g.n, 8);
        assert_int_equal(g.seq[0], 13);
        assert_int_equal(g.seq[3], 32);
        assert_int_equal(g.seq[7], 56);
        query_all(f->a, 0, "nope", NULL, 100, &g);
        assert_int_equal(g.n, 0);
        query_all(f->a, 61, NULL, NULL, 100, &g);
        assert_int_equal(g.n, 0);
        memset(&g, 0, sizeof g);
        assert_int_equal(kw_pg_audit_query_filter(f->a, &(struct kw_audit_filter){ .limit = 1001 },
                                                  got_cb, &g).code, KW_ERR_BAD_FIELD);
        assert_int_equal(kw_pg_audit_query_filter(f->a, &(struct kw_audit_filter){ .since_ms = -1 },
                                                  got_cb, &g).code, KW_ERR_BAD_FIELD);
        const char *bad_actor[] = { "", "a\001b", "\x7f" };
        for (size_t i = 0; i < 3; i++)
                assert_int_equal(kw_pg_audit_query_filter(
                                         f->a, &(struct kw_audit_filter){ .actor_prefix = bad_actor[i] },
                                         got_cb, &g).code,
                                 KW_ERR_BAD_FIELD);
        char long_name[70];
        memset(long_name, 'n', sizeof long_name - 1);
        long_name[69] = '\0';
        assert_int_equal(kw_pg_audit_query_filter(f->a, &(struct kw_audit_filter){ .key_name = long_name },
                                                  got_cb, &g).code, KW_ERR_TOO_LARGE);
        assert_int_equal(g.n, 0);
        /* the callback stops the query */
        static struct got one;
        memset(&one, 0, sizeof one);
        assert_int_equal(kw_pg_audit_query_filter(f->a, &(struct kw_audit_filter){ .limit = 10 },
                                                  got_cb, &one).code, 0);
        assert_int_equal(one.n, 10);
}

/* seq 1..10 key uses (ts 1000..1009), 11 an admin row, 12..21 key uses
 * (ts 2000..2009), 22 an admin row. */
static void filter_fixture(struct fx *f)
{
        append_uses(f->a, 10, 0, 1000);
        admin_row(f->b, 1);
        append_uses(f->b, 10, 1, 2000);
        admin_row(f->a, 2);
}

static void pgstore_audit_query_filter_actor_prefix_and_time(void **state)
{
        struct fx *f = *state;
        filter_fixture(f);
        static struct got g;
        query_filter_all(f->a, (struct kw_audit_filter){ .limit = 7, .actor_prefix = "xks:" }, &g);
        assert_int_equal(g.n, 20);
        for (size_t i = 0; i < g.n; i++)
                assert_string_equal(g.f[i][0], "xks:default:AKIA");
        query_filter_all(f->a, (struct kw_audit_filter){ .limit = 7, .actor_prefix = "token:t" }, &g);
        assert_int_equal(g.n, 2);
        assert_true(g.seq[0] == 11 && g.seq[1] == 22);
        query_filter_all(f->a, (struct kw_audit_filter){ .limit = 7, .actor_prefix = "xks:default:AKIB" }, &g);
        assert_int_equal(g.n, 0);
        /* prefix characters that mean something to LIKE mean nothing here */
        query_filter_all(f->a, (struct kw_audit_filter){ .limit = 7, .actor_prefix = "%" }, &g);
        assert_int_equal(g.n, 0);
        query_filter_all(f->a, (struct kw_audit_filter){ .limit = 3, .actor_prefix = "xks:d",
                                                         .key_name = "k0" }, &g);
        assert_int_equal(g.n, 8);
        query_filter_all(f->a, (struct kw_audit_filter){ .limit = 4, .since_ms = 1005, .until_ms = 2003 }, &g);
        assert_int_equal(g.n, 8);
        static const uint64_t want[] = { 6, 7, 8, 9, 10, 12, 13, 14 };
        for (size_t i = 0; i < g.n; i++)
                assert_int_equal(g.seq[i], want[i]);
        query_filter_all(f->a, (struct kw_audit_filter){ .limit = 100, .since_ms = 2005 }, &g);
        assert_int_equal(g.n, 5 + 2);
        query_filter_all(f->a, (struct kw_audit_filter){ .limit = 100, .until_ms = 1000 }, &g);
        assert_int_equal(g.n, 0);
}

static void pgstore_audit_query_filter_desc_paging(void **state)
{
        struct fx *f = *state;
        filter_fixture(f);
        static struct got g;
        query_filter_all(f->a, (struct kw_audit_filter){ .limit = 3, .desc = 1 }, &g);
        assert_int_equal(g.n, 22);
        for (size_t i = 0; i < g.n; i++)
                assert_int_equal(g.seq[i], 22 - i);
        static struct got a;
        query_all(f->a, 0, NULL, NULL, 100, &a);
        assert_int_equal(a.n, 22);
        for (size_t i = 0; i < g.n; i++)
                assert_string_equal(g.hash[i], a.hash[21 - i]);
        query_filter_all(f->a, (struct kw_audit_filter){ .limit = 2, .desc = 1, .before = 20,
                                                         .action = "xks.encrypt", .since_ms = 1004 }, &g);
        static const uint64_t want[] = { 18, 16, 14, 12, 9, 7, 5 };
        assert_int_equal(g.n, 7);
        for (size_t i = 0; i < g.n; i++)
                assert_int_equal(g.seq[i], want[i]);
        query_filter_all(f->a, (struct kw_audit_filter){ .limit = 100, .after = 9, .before = 13 }, &g);
        assert_int_equal(g.n, 3);
        assert_true(g.seq[0] == 10 && g.seq[1] == 11 && g.seq[2] == 12);
        query_filter_all(f->a, (struct kw_audit_filter){ .limit = 100, .after = 9, .before = 13,
                                                         .desc = 1 }, &g);
        assert_int_equal(g.n, 3);
        assert_true(g.seq[0] == 12 && g.seq[1] == 11 && g.seq[2] == 10);
}

/* ------------------------------------------------------------ tampering */

/* One changed byte of a batch, a batch replaced by another's records, a
 * wrong time range, a broken link, a deleted batch: verify names them;
 * the query says where a batch cannot be decoded. */
static void pgstore_audit_verify_names_a_tampered_batch(void **state)
{
        struct fx *f = *state;
        append_uses(f->a, 10, 1, 1000);    /* 1..10  */
        append_uses(f->b, 10, 2, 2000);    /* 11..20 */
        append_uses(f->a, 10, 3, 3000);    /* 21..30 */
        assert_int_equal(verify(f->a).first_bad_seq, 0);
        long long len = raw_int(f, "SELECT length(data) FROM audit_batch WHERE first_seq = 11");
        for (size_t at = 0; at < (size_t)len; at += 5) {
                raw_flip_batch_byte(f, 11, at);
                struct kw_audit_verify v = verify(f->a);
                if (v.first_bad_seq == 0 && at >= (size_t)len - 5)
                        ; /* deflate padding: records unchanged (audit_codec_test.c) */
                else {
                        assert_int_equal(v.first_bad_seq, 11);
                        assert_int_equal(v.bad_last_seq, 20);
                        assert_true(v.bad_is_batch);
                        assert_int_equal(v.records, 20);
                        assert_true(v.why[0] != '\0');
                }
                raw_flip_batch_byte(f, 11, at);
        }
        assert_int_equal(verify(f->a).first_bad_seq, 0);
        raw_exec(f, "CREATE TABLE saved AS SELECT * FROM audit_batch WHERE first_seq = 11;"
                    "UPDATE audit_batch SET data = (SELECT data FROM audit_batch WHERE first_seq = 21)"
                    " WHERE first_seq = 11;");
        struct kw_audit_verify v = verify(f->a);
        assert_int_equal(v.first_bad_seq, 11);
        assert_string_equal(v.why, "its records do not hash to its stored hash");
        raw_exec(f, "UPDATE audit_batch SET data = (SELECT data FROM saved) WHERE first_seq = 11;"
                    "UPDATE audit_batch SET max_ts_ms = max_ts_ms + 1 WHERE first_seq = 11;");
        v = verify(f->a);
        assert_int_equal(v.first_bad_seq, 11);
        assert_string_equal(v.why, "its stored time range does not match its records");
        raw_exec(f, "UPDATE audit_batch SET max_ts_ms = max_ts_ms - 1 WHERE first_seq = 11;"
                    "UPDATE audit_batch SET prev_hash = decode(repeat('00', 32), 'hex') WHERE first_seq = 21;");
        assert_int_equal(verify(f->a).first_bad_seq, 21);
        raw_exec(f, "UPDATE audit_batch SET prev_hash = (SELECT hash FROM saved) WHERE first_seq = 21;");
        assert_int_equal(verify(f->a).first_bad_seq, 0);
        raw_exec(f, "DELETE FROM audit_batch WHERE first_seq = 11;");
        v = verify(f->a);
        assert_int_equal(v.first_bad_seq, 21);
        assert_true(v.bad_is_batch);
        assert_string_equal(v.why, "records are missing before it");
        raw_exec(f, "INSERT INTO audit_batch SELECT * FROM saved; DROP TABLE saved;");
        assert_int_equal(verify(f->a).first_bad_seq, 0);
        raw_flip_batch_byte(f, 11, 3);
        static struct got g;
        memset(&g, 0, sizeof g);
        assert_int_equal(kw_pg_audit_query_filter(f->a, &(struct kw_audit_filter){ .limit = 100 },
                                                  got_cb, &g).code, KW_ERR_DB_CORRUPT);
        assert_non_null(strstr(kw_err_detail(), "11-20"));
        assert_int_equal(g.n, 0);
        query_all(f->a, 20, NULL, NULL, 100, &g);
        assert_int_equal(g.n, 10);
}

/* A row's detail edited; the last record deleted; the head set back, with
 * or without its old MAC; the head's MAC edited; a chain rewritten with
 * correct hashes: verify reports each, appends refuse a head that fails
 * its MAC, and nothing was written. */
static void pgstore_audit_verify_names_edited_rows_tail_and_head(void **state)
{
        struct fx *f = *state;
        admin_row(f->a, 1);                 /* 1      */
        append_uses(f->b, 10, 1, 1000);     /* 2..11  */
        admin_row(f->b, 2);                 /* 12     */
        admin_row(f->a, 3);                 /* 13     */
        assert_int_equal(verify(f->a).first_bad_seq, 0);

        /* a row's detail */
        raw_exec(f, "UPDATE audit SET detail = 'nothing happened' WHERE seq = 12");
        struct kw_audit_verify v = verify(f->b);
        assert_int_equal(v.first_bad_seq, 12);
        assert_int_equal(v.bad_last_seq, 12);
        assert_false(v.bad_is_batch);
        assert_string_equal(v.why, "its fields do not hash to its stored hash");
        raw_exec(f, "UPDATE audit SET detail = '' WHERE seq = 12");
        assert_int_equal(verify(f->b).first_bad_seq, 0);

        /* the last record deleted: the head names it */
        raw_exec(f, "CREATE TABLE saved AS SELECT * FROM audit WHERE seq = 13; DELETE FROM audit WHERE seq = 13");
        v = verify(f->a);
        assert_int_equal(v.first_bad_seq, 13);
        assert_int_equal(v.bad_last_seq, 13);
        assert_int_equal(v.head_seq, 12);
        assert_string_equal(v.why, "the head names a record that is missing: the newest records were deleted");
        raw_exec(f, "INSERT INTO audit SELECT * FROM saved; DROP TABLE saved");
        assert_int_equal(verify(f->a).first_bad_seq, 0);

        /* the head set back to an older (seq, hash) without the right MAC */
        raw_exec(f, "CREATE TABLE saved AS SELECT * FROM audit_head;"
                    "UPDATE audit_head SET seq = 12, hash = (SELECT hash FROM audit WHERE seq = 12)");
        v = verify(f->a);
        assert_int_equal(v.first_bad_seq, 13);
        assert_string_equal(v.why, "the chain head's MAC does not match: changed outside keyward");
        /* appends refuse it and write nothing */
        assert_int_equal(try_uses(f->a, 2, 9, 9000).code, KW_ERR_DB_TAMPERED);
        assert_non_null(strstr(kw_err_detail(), "audit_head"));
        assert_int_equal(try_admin(f->b, 9).code, KW_ERR_DB_TAMPERED);
        assert_int_equal(raw_int(f, "SELECT count(*) FROM audit"), 3);
        assert_int_equal(raw_int(f, "SELECT count(*) FROM audit_batch"), 1);
        /* a NULL MAC is the initial head's only */
        raw_exec(f, "UPDATE audit_head SET mac = NULL");
        assert_string_equal(verify(f->a).why, "the chain head's MAC does not match: changed outside keyward");
        assert_int_equal(try_uses(f->b, 1, 9, 9000).code, KW_ERR_DB_TAMPERED);
        /* the head's MAC edited */
        raw_exec(f, "UPDATE audit_head SET seq = 13, hash = (SELECT hash FROM saved),"
                    " mac = set_byte((SELECT mac FROM saved), 0, get_byte((SELECT mac FROM saved), 0) # 1)");
        assert_string_equal(verify(f->a).why, "the chain head's MAC does not match: changed outside keyward");
        raw_exec(f, "UPDATE audit_head SET mac = (SELECT mac FROM saved)");
        assert_int_equal(verify(f->a).first_bad_seq, 0);

        /* an old head put back with its own (valid) MAC: records after it */
        admin_row(f->a, 4);                 /* 14 */
        raw_exec(f, "UPDATE audit_head SET seq = s.seq, hash = s.hash, mac = s.mac FROM saved s");
        v = verify(f->b);
        assert_int_equal(v.first_bad_seq, 14);
        assert_int_equal(v.bad_last_seq, 14);
        assert_string_equal(v.why, "records after the head: the head was set back outside keyward");
        /* an append after it would reuse seq 14: refused, nothing written */
        assert_int_equal(try_admin(f->a, 5).code, KW_ERR_DB_TAMPERED);
        assert_non_null(strstr(kw_err_detail(), "set back"));
        assert_int_equal(try_uses(f->b, 3, 9, 9000).code, KW_ERR_DB_TAMPERED);
        assert_int_equal(raw_int(f, "SELECT count(*) FROM audit"), 4);
        raw_exec(f, "DELETE FROM audit WHERE seq = 14");
        assert_int_equal(verify(f->b).first_bad_seq, 0);

        /* the last row rewritten with a hash that matches its new fields
         * (SHA-256 needs no key): the head's hash gives it away */
        {
                struct kw_audit_hasher *h = NULL;
                assert_int_equal(kw_audit_hasher_new(&h).code, 0);
                PGresult *res = PQexec(f->raw, "SELECT encode(prev_hash, 'hex'), ts_ms, actor, action,"
                                               " key_name, result, request_id FROM audit WHERE seq = 13");
                assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
                uint8_t prev[32], out[32];
                assert_int_equal(kw_audit_unhex32(PQgetvalue(res, 0, 0), prev), 0);
                struct kw_audit_rec r;
                kw_audit_rec_set(&r, strtoll(PQgetvalue(res, 0, 1), NULL, 10), PQgetvalue(res, 0, 2),
                                 PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 4), PQgetvalue(res, 0, 5),
                                 "forged", PQgetvalue(res, 0, 6));
                assert_int_equal(kw_audit_chain_step(h, prev, 13, &r, out).code, 0);
                PQclear(res);
                kw_audit_hasher_free(h);
                char hex[65], sql[200];
                kw_audit_hex(out, 32, hex);
                snprintf(sql, sizeof sql, "UPDATE audit SET detail = 'forged', hash = '\\x%s' WHERE seq = 13", hex);
                raw_exec(f, sql);
        }
        v = verify(f->a);
        assert_int_equal(v.first_bad_seq, 13);
        assert_int_equal(v.records, 13);
        assert_string_equal(v.why, "the chain does not end at the hash its head names: records were rewritten");
}

/* -------------------------------------------------------------- retention */

static int sink_cb(const struct kw_audit_row *row, void *arg)
{
        struct sink *s = arg;
        assert_int_equal(row->seq, s->last_seq + 1);
        assert_non_null(row->prev_hash_hex);
        s->last_seq = row->seq;
        snprintf(s->last_hash, sizeof s->last_hash, "%s", row->hash_hex);
        s->n++;
        return 0;
}

static kw_result prune_through(struct kw_pgstore *pg, const struct kw_audit_range *rg, uint64_t *n)
{
        struct kw_audit_entry a = { .actor = "custody", .action = "audit.prune", .result = "ok" };
        struct kw_audit_prune p = { .through_seq = rg->last_seq, .through_ts_ms = rg->last_ts_ms,
                                    .export_file = "test.jsonl.gz", .audit = &a };
        memcpy(p.through_hash, rg->last_hash, 32);
        p.export_sha256[0] = 0xab;
        return kw_pg_audit_prune(pg, &p, n);
}

static void pgstore_audit_prune_behind_checkpoint_keeps_verification(void **state)
{
        struct fx *f = *state;
        admin_row(f->a, 1);                      /* 1       */
        append_uses(f->a, 20, 1, 1000);          /* 2..21   */
        append_uses(f->b, 20, 2, 2000);          /* 22..41  */
        admin_row(f->b, 2);                      /* 42      */
        append_uses(f->a, 20, 3, 3000);          /* 43..62  */
        struct kw_audit_select sel = { .min_records = 25, .max_records = 1000 };
        struct sink s = { 0 };
        struct kw_audit_range rg;
        assert_int_equal(kw_pg_audit_read_oldest(f->b, &sel, sink_cb, &s, &rg).code, 0);
        assert_int_equal(rg.first_seq, 1);
        assert_int_equal(rg.last_seq, 41);
        assert_int_equal(rg.records, 41);
        assert_int_equal(s.n, 41);
        char hex[65];
        kw_audit_hex(rg.last_hash, 32, hex);
        assert_string_equal(hex, s.last_hash);
        assert_memory_equal(rg.prev_hash, zero, 32);

        uint64_t n = 0;
        struct kw_audit_range bad = rg;
        bad.last_hash[0] ^= 1;
        assert_int_equal(prune_through(f->a, &bad, &n).code, KW_ERR_BAD_STATE);
        bad = rg;
        bad.last_seq = 40;
        assert_int_equal(prune_through(f->a, &bad, &n).code, KW_ERR_BAD_STATE);
        assert_int_equal(verify(f->a).records, 62);
        assert_int_equal(raw_int(f, "SELECT seq FROM audit_head"), 62);

        assert_int_equal(prune_through(f->a, &rg, &n).code, 0);
        assert_int_equal(n, 41);
        assert_int_equal(prune_through(f->b, &rg, &n).code, KW_ERR_BAD_STATE);   /* once */
        assert_int_equal(raw_int(f, "SELECT count(*) FROM audit_batch_name WHERE first_seq <= 41"), 0);
        assert_true(raw_int(f, "SELECT count(*) FROM audit_batch_name") > 0);
        assert_int_equal(raw_int(f, "SELECT records FROM audit_checkpoint"), 41);
        assert_int_equal(raw_int(f, "SELECT length(mac) FROM audit_checkpoint"), 32);
        struct kw_audit_verify v = verify(f->b);
        assert_int_equal(v.first_bad_seq, 0);
        assert_int_equal(v.start_seq, 41);
        assert_memory_equal(v.start_hash, rg.last_hash, 32);
        assert_int_equal(v.records, 22);      /* 42..62 and the prune's own row */
        static struct got g;
        query_all(f->a, 0, NULL, NULL, 100, &g);
        assert_int_equal(g.n, 22);
        assert_int_equal(g.seq[0], 42);
        assert_string_equal(g.f[21][1], "audit.prune");
        assert_chain_of(&g, rg.last_hash);
        query_all(f->a, 0, "k1", NULL, 100, &g);
        assert_int_equal(g.n, 7);
        struct kw_audit_stats st;
        assert_int_equal(kw_pg_audit_stats(f->b, &st).code, 0);
        assert_int_equal(st.first_seq, 42);
        assert_int_equal(st.last_seq, 63);
        assert_int_equal(st.records, 22);
        assert_int_equal(st.checkpoints, 1);
        assert_int_equal(st.checkpoint_seq, 41);
        assert_memory_equal(st.checkpoint_hash, rg.last_hash, 32);
        assert_true(st.oldest_ts_ms > 1600000000000);   /* admin row 2: now */
        assert_true(st.db_bytes > 0 && st.db_file_bytes > st.db_bytes);
        assert_int_equal(st.wal_bytes, 0);

        /* everything: the checkpoint holds the head, appends continue it */
        sel = (struct kw_audit_select){ .min_records = UINT64_MAX, .max_records = 1000 };
        memset(&s, 0, sizeof s);
        s.last_seq = 41;
        assert_int_equal(kw_pg_audit_read_oldest(f->a, &sel, sink_cb, &s, &rg).code, 0);
        assert_int_equal(rg.first_seq, 42);
        assert_int_equal(rg.last_seq, 63);
        assert_int_equal(prune_through(f->b, &rg, &n).code, 0);
        assert_int_equal(n, 22);
        append_uses(f->a, 5, 4, 4000);
        v = verify(f->a);
        assert_int_equal(v.first_bad_seq, 0);
        assert_int_equal(v.start_seq, 63);
        assert_int_equal(v.records, 6);       /* the second prune's row, then 5 uses */
        assert_int_equal(v.head_seq, 69);

        /* a checkpoint edited: its MAC names it, read_oldest and prune refuse */
        raw_exec(f, "UPDATE audit_checkpoint SET records = records + 1 WHERE seq = 63");
        v = verify(f->a);
        assert_int_equal(v.first_bad_seq, 63);
        assert_string_equal(v.why, "the newest checkpoint's MAC does not match: changed outside keyward");
        memset(&s, 0, sizeof s);
        s.last_seq = 63;
        assert_int_equal(kw_pg_audit_read_oldest(f->a, &sel, sink_cb, &s, &rg).code, KW_ERR_DB_TAMPERED);
        assert_non_null(strstr(kw_err_detail(), "audit_checkpoint/63"));
        assert_int_equal(s.n, 0);
        assert_int_equal(kw_pg_audit_stats(f->a, &st).code, KW_ERR_DB_TAMPERED);
        raw_exec(f, "UPDATE audit_checkpoint SET records = records - 1 WHERE seq = 63");
        assert_int_equal(verify(f->a).first_bad_seq, 0);
        /* a checkpoint's hash edited: its MAC too */
        raw_exec(f, "UPDATE audit_checkpoint SET hash = (SELECT hash FROM audit_checkpoint WHERE seq = 41)"
                    " WHERE seq = 63");
        assert_int_equal(verify(f->a).first_bad_seq, 63);
        raw_exec(f, "DELETE FROM audit_checkpoint WHERE seq = 63");
        /* removing the newest: verification starts at the older one */
        v = verify(f->a);
        assert_int_equal(v.start_seq, 41);
        assert_int_equal(v.first_bad_seq, 64);
        assert_string_equal(v.why, "records are missing before it");
}

static void pgstore_audit_read_oldest_by_age_and_cap(void **state)
{
        struct fx *f = *state;
        append_uses(f->a, 10, 1, 1000);      /* 1..10, ts 1000..1009 */
        append_uses(f->b, 10, 2, 2000);      /* 11..20 */
        append_uses(f->a, 10, 3, 3000);      /* 21..30 */
        struct kw_audit_select sel = { .before_ts_ms = 2009, .max_records = 1000 };
        struct sink s = { 0 };
        struct kw_audit_range rg;
        assert_int_equal(kw_pg_audit_read_oldest(f->a, &sel, sink_cb, &s, &rg).code, 0);
        assert_int_equal(rg.last_seq, 10);
        sel.before_ts_ms = 2010;
        memset(&s, 0, sizeof s);
        assert_int_equal(kw_pg_audit_read_oldest(f->a, &sel, sink_cb, &s, &rg).code, 0);
        assert_int_equal(rg.last_seq, 20);
        assert_true(rg.first_ts_ms == 1000 && rg.last_ts_ms == 2009);
        sel.max_records = 15;
        memset(&s, 0, sizeof s);
        assert_int_equal(kw_pg_audit_read_oldest(f->a, &sel, sink_cb, &s, &rg).code, 0);
        assert_int_equal(rg.last_seq, 10);
        sel.max_records = 5;
        memset(&s, 0, sizeof s);
        assert_int_equal(kw_pg_audit_read_oldest(f->a, &sel, sink_cb, &s, &rg).code, 0);
        assert_int_equal(rg.records, 0);
        assert_int_equal(s.n, 0);
        sel = (struct kw_audit_select){ .before_ts_ms = 1000, .max_records = 100 };
        memset(&s, 0, sizeof s);
        assert_int_equal(kw_pg_audit_read_oldest(f->a, &sel, sink_cb, &s, &rg).code, 0);
        assert_int_equal(rg.records, 0);
        assert_int_equal(kw_pg_audit_read_oldest(f->a, NULL, sink_cb, &s, &rg).code, KW_ERR_INPUT);
}

/* Nothing past a record that does not verify is handed out; read to the
 * end, the head must name the last record. */
static void pgstore_audit_read_oldest_stops_at_a_broken_chain(void **state)
{
        struct fx *f = *state;
        append_uses(f->a, 10, 1, 1000);
        append_uses(f->b, 10, 2, 2000);
        raw_flip_batch_byte(f, 11, 3);
        struct kw_audit_select sel = { .min_records = 5, .max_records = 100 };
        struct sink s = { 0 };
        struct kw_audit_range rg;
        assert_int_equal(kw_pg_audit_read_oldest(f->a, &sel, sink_cb, &s, &rg).code, 0);
        assert_int_equal(rg.last_seq, 10);
        sel.min_records = 15;
        memset(&s, 0, sizeof s);
        assert_int_equal(kw_pg_audit_read_oldest(f->a, &sel, sink_cb, &s, &rg).code, KW_ERR_DB_CORRUPT);
        assert_non_null(strstr(kw_err_detail(), "seq 11"));
        raw_flip_batch_byte(f, 11, 3);
        /* the tail deleted: reading everything finds the head names more */
        raw_exec(f, "DELETE FROM audit_batch WHERE first_seq = 11");
        sel.min_records = UINT64_MAX;
        memset(&s, 0, sizeof s);
        assert_int_equal(kw_pg_audit_read_oldest(f->a, &sel, sink_cb, &s, &rg).code, KW_ERR_DB_CORRUPT);
        assert_non_null(strstr(kw_err_detail(), "missing"));
}

/* Two nodes' retention prune the same range at once: exactly one wins, the
 * other finds the checkpoint (KW_ERR_BAD_STATE); the chain verifies. */
struct pruner {
        struct kw_pgstore *pg;
        const struct kw_audit_range *rg;
        pthread_barrier_t *go;
        int code;
        uint64_t n;
};

static void *pruner_main(void *arg)
{
        struct pruner *p = arg;
        pthread_barrier_wait(p->go);
        p->code = prune_through(p->pg, p->rg, &p->n).code;
        return NULL;
}

static void pgstore_audit_prune_race_from_two_nodes_one_wins(void **state)
{
        struct fx *f = *state;
        for (int round = 0; round < 5; round++) {
                append_uses(f->a, 30, round, 1000 * (round + 1));
                admin_row(f->b, (unsigned)round);
                append_uses(f->b, 30, round + 10, 1000 * (round + 1) + 500);
                struct kw_audit_select sel = { .min_records = 31, .max_records = 1000 };
                struct sink s = { 0 };
                struct kw_audit_range rg;
                struct kw_audit_verify v0 = verify(f->a);
                s.last_seq = v0.start_seq;
                assert_int_equal(kw_pg_audit_read_oldest(f->a, &sel, sink_cb, &s, &rg).code, 0);
                assert_true(rg.records >= 31);
                char sql[160];
                snprintf(sql, sizeof sql, "SELECT count(*) FROM audit WHERE action = 'audit.prune'"
                         " AND seq > %llu", (unsigned long long)rg.last_seq);
                long long prunes_before = raw_int(f, sql);
                pthread_barrier_t go;
                assert_int_equal(pthread_barrier_init(&go, NULL, 2), 0);
                struct pruner p[2] = { { f->a, &rg, &go, 1, 0 }, { f->b, &rg, &go, 1, 0 } };
                pthread_t t[2];
                for (int i = 0; i < 2; i++)
                        assert_int_equal(pthread_create(&t[i], NULL, pruner_main, &p[i]), 0);
                for (int i = 0; i < 2; i++)
                        assert_int_equal(pthread_join(t[i], NULL), 0);
                pthread_barrier_destroy(&go);
                int wins = (p[0].code == 0) + (p[1].code == 0);
                assert_int_equal(wins, 1);
                assert_true(p[0].code == KW_ERR_BAD_STATE || p[1].code == KW_ERR_BAD_STATE);
                assert_int_equal(p[0].code == 0 ? p[0].n : p[1].n, rg.records);
                assert_int_equal(raw_int(f, "SELECT count(*) FROM audit_checkpoint"), round + 1);
                /* one prune row more than before, none at or below the checkpoint */
                assert_int_equal(raw_int(f, "SELECT count(*) FROM audit WHERE action = 'audit.prune'"),
                                 prunes_before + 1);
                assert_int_equal(raw_int(f, "SELECT min(seq) FROM audit") > (long long)rg.last_seq, 1);
                struct kw_audit_verify v = verify(f->b);
                assert_int_equal(v.first_bad_seq, 0);
                assert_int_equal(v.start_seq, rg.last_seq);
        }
}

int main(void)
{
        need_env("KW_TEST_PG");
        need_env("KW_TEST_PG_PASSWORD_FILE");
        need_env("KW_TEST_PG_SUPER");
        need_env("KW_TEST_PG_CTL");
        const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
                T(pgstore_audit_two_nodes_append_concurrently_one_chain),
                T(pgstore_audit_append_is_one_row_per_batch_one_chain),
                T(pgstore_audit_mutation_row_is_in_its_transaction),
                T(pgstore_audit_append_refuses_and_writes_nothing),
                T(pgstore_audit_database_down_is_unavailable_then_recovers),
                T(pgstore_audit_query_filters_and_paging_across_rows_and_batches),
                T(pgstore_audit_query_filter_actor_prefix_and_time),
                T(pgstore_audit_query_filter_desc_paging),
                T(pgstore_audit_verify_names_a_tampered_batch),
                T(pgstore_audit_verify_names_edited_rows_tail_and_head),
                T(pgstore_audit_prune_behind_checkpoint_keeps_verification),
                T(pgstore_audit_read_oldest_by_age_and_cap),
                T(pgstore_audit_read_oldest_stops_at_a_broken_chain),
                T(pgstore_audit_prune_race_from_two_nodes_one_wins),
#undef T
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
