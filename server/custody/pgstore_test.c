/*
 * pgstore_test.c - cmocka tests of the key store on a real PostgreSQL
 * (tests/fleet/pg.sh starts one and exports KW_TEST_PG, the keyward
 * conninfo without password, KW_TEST_PG_PASSWORD_FILE and KW_TEST_PG_SUPER,
 * the superuser over the Unix socket, used here to reset the schema before
 * each test and to tamper with rows as someone with database access would).
 * Without KW_TEST_PG the binary fails loudly: it never skips.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "custody/keystore.h"
#include "custody/pgstore.h"

static const char *pg_conninfo, *pg_pwfile, *pg_super;
static PGconn *super;

static const uint8_t mac_key[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                     17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };

/* ------------------------------------------------------------- raw SQL */

static void sql(const char *q)
{
        PGresult *res = PQexec(super, q);
        ExecStatusType st = PQresultStatus(res);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
                print_error("sql %s: %s\n", q, PQresultErrorMessage(res));
        assert_true(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
        PQclear(res);
}

static int64_t sql_int(const char *q)
{
        PGresult *res = PQexec(super, q);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
                print_error("sql %s: %s\n", q, PQresultErrorMessage(res));
        assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
        assert_int_equal(PQntuples(res), 1);
        int64_t v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        return v;
}

static void reset_schema(void)
{
        sql("DROP SCHEMA public CASCADE");
        sql("CREATE SCHEMA public AUTHORIZATION keyward");
}

static int64_t audit_rows(void) { return sql_int("SELECT count(*) FROM audit"); }
static int64_t gen_now(void) { return sql_int("SELECT gen FROM kw_change"); }

/* ------------------------------------------------------------- fixture */

struct fx {
        struct kw_pgstore *pg;
};

static struct kw_pg_options opts(const char *node, unsigned pool)
{
        return (struct kw_pg_options){ .conninfo = pg_conninfo, .password_file = pg_pwfile,
                                       .node_id = node, .pool_size = pool,
                                       .connect_timeout_s = 3, .statement_timeout_ms = 10000 };
}

static struct kw_pgstore *open_ok(const char *node, unsigned pool)
{
        struct kw_pg_options o = opts(node, pool);
        struct kw_pgstore *pg = NULL;
        kw_result r = kw_pg_open(&o, &pg);
        if (!kw_ok(r))
                print_error("open: %s: %s\n", kw_err_name(r.code), kw_err_detail());
        assert_int_equal(r.code, 0);
        assert_non_null(pg);
        kw_pg_set_mac_key(pg, mac_key);
        return pg;
}

static int group_setup(void **state)
{
        (void)state;
        pg_conninfo = getenv("KW_TEST_PG");
        pg_pwfile = getenv("KW_TEST_PG_PASSWORD_FILE");
        pg_super = getenv("KW_TEST_PG_SUPER");
        if (pg_conninfo == NULL || pg_pwfile == NULL || pg_super == NULL) {
                fprintf(stderr, "pgstore_test: KW_TEST_PG, KW_TEST_PG_PASSWORD_FILE and "
                                "KW_TEST_PG_SUPER are not set: run it under tests/fleet/pg.sh "
                                "(these tests need a real PostgreSQL and never skip)\n");
                return -1;
        }
        int locked = 0;
        if (!kw_ok(kw_secret_init(1 << 20, &locked)))
                return -1;
        super = PQconnectdb(pg_super);
        if (PQstatus(super) != CONNECTION_OK) {
                fprintf(stderr, "pgstore_test: superuser connection: %s", PQerrorMessage(super));
                return -1;
        }
        PGresult *res = PQexec(super, "SET client_min_messages = warning");
        PQclear(res);
        return 0;
}

static int group_teardown(void **state)
{
        (void)state;
        PQfinish(super);
        return 0;
}

static int setup(void **state)
{
        reset_schema();
        struct fx *f = calloc(1, sizeof *f);
        assert_non_null(f);
        f->pg = open_ok("node-a", 2);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;
        kw_pg_close(f->pg);
        free(f);
        return 0;
}

/* ------------------------------------------------------------- helpers */

static void make_id(char id[33], unsigned n) { snprintf(id, 33, "%032x", n); }

static struct kw_key_row key_row(unsigned n, const char *name, const char *type, const char *state,
                                 const char *tags)
{
        struct kw_key_row r;
        memset(&r, 0, sizeof r);
        make_id(r.id, n);
        snprintf(r.name, sizeof r.name, "%s", name);
        snprintf(r.type, sizeof r.type, "%s", type);
        r.size = strcmp(type, "RSA") == 0 ? 2048 : 256;
        snprintf(r.state, sizeof r.state, "%s", state);
        r.ops = 0xf;
        r.current_version = 1;
        r.tags_json = (char *)tags;
        return r;
}

static const uint8_t blob1[] = "sealed-blob-version-1";
static const uint8_t blob2[] = "sealed-blob-version-2";

static void insert_key(struct kw_pgstore *pg, unsigned n, const char *name, const char *type,
                       const char *state, const char *tags)
{
        struct kw_key_row r = key_row(n, name, type, state, tags);
        struct kw_audit_entry a = { .actor = "test", .action = "key.create", .key_name = name,
                                    .result = "ok" };
        kw_result res = kw_pg_key_insert(pg, &r, blob1, sizeof blob1, &a);
        if (!kw_ok(res))
                print_error("insert %s: %s: %s\n", name, kw_err_name(res.code), kw_err_detail());
        assert_int_equal(res.code, 0);
}

static uint64_t key_count(struct kw_pgstore *pg)
{
        uint64_t n = 0;
        assert_int_equal(kw_pg_key_count(pg, &n).code, 0);
        return n;
}

struct names {
        char v[64][65];
        int n;
        int stop_at;
};

static int names_cb(const struct kw_key_row *row, void *arg)
{
        struct names *ns = arg;
        if (ns->n < 64)
                snprintf(ns->v[ns->n], 65, "%s", row->name);
        ns->n++;
        return ns->stop_at != 0 && ns->n == ns->stop_at;
}

static void list_names(struct kw_pgstore *pg, const struct kw_key_filter *flt, struct names *ns,
                       char next[65])
{
        memset(ns, 0, sizeof *ns);
        kw_result r = kw_pg_key_list(pg, flt, names_cb, ns, next);
        if (!kw_ok(r))
                print_error("list: %s: %s\n", kw_err_name(r.code), kw_err_detail());
        assert_int_equal(r.code, 0);
}

static void assert_names(const struct names *ns, const char *const *want, int n)
{
        assert_int_equal(ns->n, n);
        for (int i = 0; i < n; i++)
                assert_string_equal(ns->v[i], want[i]);
}

static void assert_tampered(kw_result r, const char *detail)
{
        if (r.code != KW_ERR_DB_TAMPERED)
                print_error("want tampered, got %s: %s\n", kw_err_name(r.code), kw_err_detail());
        assert_int_equal(r.code, KW_ERR_DB_TAMPERED);
        assert_string_equal(kw_err_detail(), detail);
}

/* ------------------------------------------------------------ open/close */

static void pgstore_open_creates_schema_second_open_is_noop(void **state)
{
        struct fx *f = *state;
        assert_int_equal(kw_pg_schema_version(f->pg), KW_PG_SCHEMA_VERSION);
        assert_int_equal(sql_int("SELECT version FROM kw_schema"), 1);
        assert_int_equal(sql_int("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), 15);
        assert_int_equal(sql_int("SELECT count(*) FROM kw_meta WHERE k = 'format'"
                                 " AND v = 'keyward-fleet'::bytea"), 1);
        assert_int_equal(sql_int("SELECT seq FROM audit_head"), 0);
        /* the pool and the listener's connection, named after the node */
        assert_int_equal(sql_int("SELECT count(*) FROM pg_stat_activity"
                                 " WHERE application_name = 'keywardd/node-a'"), 3);
        insert_key(f->pg, 1, "survives", "AES", "enabled", NULL);
        int64_t g = gen_now();
        struct kw_pgstore *b = open_ok("node-b", 1);
        assert_int_equal(kw_pg_schema_version(b), 1);
        assert_int_equal(gen_now(), g);     /* a no-op: not even a change */
        struct kw_key_row row;
        memset(&row, 0, sizeof row);
        assert_int_equal(kw_pg_key_get(b, "survives", &row).code, 0);
        kw_key_row_clear(&row);
        kw_pg_close(b);
        uint64_t pg_gen = 0;
        assert_int_equal(kw_pg_ping(f->pg, &pg_gen).code, 0);
        assert_int_equal((int64_t)pg_gen, g);
}

static void pgstore_open_newer_schema_fails_db_version(void **state)
{
        (void)state;
        sql("UPDATE kw_schema SET version = 2");
        struct kw_pg_options o = opts("node-b", 1);
        struct kw_pgstore *pg = NULL;
        kw_result r = kw_pg_open(&o, &pg);
        assert_int_equal(r.code, KW_ERR_DB_VERSION);
        assert_null(pg);
        assert_string_equal(kw_err_detail(),
                            "the fleet database has schema 2; this keywardd knows schema 1: "
                            "upgrade this node");
        assert_int_equal(sql_int("SELECT version FROM kw_schema"), 2);
}

static void *open_thread(void *arg)
{
        kw_result *r = arg;
        struct kw_pg_options o = opts("racer", 1);
        struct kw_pgstore *pg = NULL;
        *r = kw_pg_open(&o, &pg);
        if (!kw_ok(*r))
                fprintf(stderr, "racer: %s: %s\n", kw_err_name(r->code), kw_err_detail());
        kw_pg_close(pg);
        return NULL;
}

static void pgstore_open_racing_opens_both_succeed(void **state)
{
        (void)state;
        for (int round = 0; round < 3; round++) {
                reset_schema();
                pthread_t t[3];
                kw_result r[3];
                for (int i = 0; i < 3; i++)
                        assert_int_equal(pthread_create(&t[i], NULL, open_thread, &r[i]), 0);
                for (int i = 0; i < 3; i++) {
                        pthread_join(t[i], NULL);
                        assert_int_equal(r[i].code, 0);
                }
                assert_int_equal(sql_int("SELECT version FROM kw_schema"), 1);
                assert_int_equal(sql_int("SELECT count(*) FROM kw_change"), 1);
                assert_int_equal(sql_int("SELECT count(*) FROM audit_head"), 1);
        }
}

static void pgstore_open_password_in_conninfo_fails_config(void **state)
{
        (void)state;
        char ci[512];
        snprintf(ci, sizeof ci, "%s password=hunter2-secret", pg_conninfo);
        struct kw_pg_options o = opts("node-b", 1);
        o.conninfo = ci;
        struct kw_pgstore *pg = NULL;
        kw_result r = kw_pg_open(&o, &pg);
        assert_int_equal(r.code, KW_ERR_CONFIG);
        assert_null(pg);
        assert_non_null(strstr(kw_err_detail(), "db.password_file"));
        assert_null(strstr(kw_err_detail(), "hunter2"));
        /* a URI too */
        o.conninfo = "postgresql://keyward:hunter2-secret@127.0.0.1/keyward";
        assert_int_equal(kw_pg_open(&o, &pg).code, KW_ERR_CONFIG);
        assert_null(strstr(kw_err_detail(), "hunter2"));
}

static void pgstore_open_remote_host_without_verify_full_fails_config(void **state)
{
        (void)state;
        static const char *const bad[] = {
                "host=db.example.com dbname=keyward user=keyward",
                "host=192.0.2.10 dbname=keyward user=keyward sslmode=require",
                "host=127.0.0.1,db.example.com dbname=keyward sslmode=verify-ca",
                "hostaddr=192.0.2.10 host=localhost dbname=keyward",
                "postgresql://db.example.com:5432/keyward?sslmode=prefer",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                struct kw_pg_options o = opts("node-b", 1);
                o.conninfo = bad[i];
                struct kw_pgstore *pg = NULL;
                kw_result r = kw_pg_open(&o, &pg);
                if (r.code != KW_ERR_CONFIG)
                        print_error("%s: %s\n", bad[i], kw_err_name(r.code));
                assert_int_equal(r.code, KW_ERR_CONFIG);
                assert_non_null(strstr(kw_err_detail(), "sslmode=verify-full"));
        }
        /* an unparsable string, an empty one, a bad pool size */
        struct kw_pg_options o = opts("node-b", 1);
        struct kw_pgstore *pg = NULL;
        o.conninfo = "this is not = a conninfo '";
        assert_int_equal(kw_pg_open(&o, &pg).code, KW_ERR_CONFIG);
        o.conninfo = "";
        assert_int_equal(kw_pg_open(&o, &pg).code, KW_ERR_CONFIG);
        o = opts("node-b", 0);
        assert_int_equal(kw_pg_open(&o, &pg).code, KW_ERR_CONFIG);
        o = opts("node-b", 65);
        assert_int_equal(kw_pg_open(&o, &pg).code, KW_ERR_CONFIG);
        o = opts("node-b", 1);
        o.password_file = "/nonexistent/keyward.password";
        assert_int_equal(kw_pg_open(&o, &pg).code, KW_ERR_CONFIG);
        assert_null(pg);
}

static void pgstore_open_wrong_port_fails_unavailable(void **state)
{
        (void)state;
        char ci[512];
        snprintf(ci, sizeof ci, "host=127.0.0.1 port=1 dbname=keyward user=keyward sslmode=disable");
        struct kw_pg_options o = opts("node-b", 1);
        o.conninfo = ci;
        struct kw_pgstore *pg = NULL;
        kw_result r = kw_pg_open(&o, &pg);
        assert_int_equal(r.code, KW_ERR_DB_UNAVAILABLE);
        assert_null(pg);
        assert_non_null(strstr(kw_err_detail(), "fleet database"));
        /* a wrong password: unavailable too, and the password never shows */
        char pw[] = "/tmp/kw-pgstore-test-pw-XXXXXX";
        int fd = mkstemp(pw);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "wrong-password-xyz\n", 19), 19);
        close(fd);
        o = opts("node-b", 1);
        o.password_file = pw;
        r = kw_pg_open(&o, &pg);
        unlink(pw);
        assert_int_equal(r.code, KW_ERR_DB_UNAVAILABLE);
        assert_null(strstr(kw_err_detail(), "wrong-password"));
}

/* ------------------------------------------------------------------ keys */

static void pgstore_key_insert_get_duplicate_and_invalid(void **state)
{
        struct fx *f = *state;
        insert_key(f->pg, 1, "k1", "AES", "enabled", "{\"env\":\"prod\"}");
        int64_t a0 = audit_rows(), g0 = gen_now();
        assert_int_equal(a0, 1);
        /* the same name (another id), the same id (another name): EXISTS */
        struct kw_key_row r = key_row(2, "k1", "AES", "enabled", NULL);
        assert_int_equal(kw_pg_key_insert(f->pg, &r, blob1, sizeof blob1, NULL).code, KW_ERR_EXISTS);
        assert_non_null(strstr(kw_err_detail(), "already in use"));
        r = key_row(1, "k2", "AES", "enabled", NULL);
        assert_int_equal(kw_pg_key_insert(f->pg, &r, blob1, sizeof blob1, NULL).code, KW_ERR_EXISTS);
        /* invalid rows */
        r = key_row(3, "bad name", "AES", "enabled", NULL);
        assert_int_equal(kw_pg_key_insert(f->pg, &r, blob1, sizeof blob1, NULL).code, KW_ERR_BAD_NAME);
        r = key_row(3, "k3", "DES", "enabled", NULL);
        assert_int_equal(kw_pg_key_insert(f->pg, &r, blob1, sizeof blob1, NULL).code, KW_ERR_BAD_FIELD);
        r = key_row(3, "k3", "AES", "destroyed", NULL);
        assert_int_equal(kw_pg_key_insert(f->pg, &r, blob1, sizeof blob1, NULL).code, KW_ERR_BAD_STATE);
        r = key_row(3, "k3", "AES", "enabled", "[1]");
        assert_int_equal(kw_pg_key_insert(f->pg, &r, blob1, sizeof blob1, NULL).code, KW_ERR_BAD_JSON);
        r = key_row(3, "k3", "AES", "enabled", NULL);
        snprintf(r.id, sizeof r.id, "XYZ");
        assert_int_equal(kw_pg_key_insert(f->pg, &r, blob1, sizeof blob1, NULL).code, KW_ERR_BAD_FIELD);
        r = key_row(3, "k3", "AES", "enabled", NULL);
        assert_int_equal(kw_pg_key_insert(f->pg, &r, blob1, 0, NULL).code, KW_ERR_INPUT);
        static uint8_t big[64 * 1024 + 1];
        assert_int_equal(kw_pg_key_insert(f->pg, &r, big, sizeof big, NULL).code, KW_ERR_TOO_LARGE);
        char longs[KW_AUDIT_FIELD_MAX + 2];
        memset(longs, 'x', sizeof longs - 1);
        longs[sizeof longs - 1] = '\0';
        struct kw_audit_entry la = { .detail = longs };
        assert_int_equal(kw_pg_key_insert(f->pg, &r, blob1, sizeof blob1, &la).code, KW_ERR_TOO_LARGE);
        /* nothing changed */
        assert_int_equal(audit_rows(), a0);
        assert_int_equal(gen_now(), g0);
        assert_int_equal(key_count(f->pg), 1);

        struct kw_key_row g;
        memset(&g, 0, sizeof g);
        assert_int_equal(kw_pg_key_get(f->pg, "k1", &g).code, 0);
        char id[33];
        make_id(id, 1);
        assert_string_equal(g.id, id);
        assert_string_equal(g.type, "AES");
        assert_int_equal(g.size, 256);
        assert_string_equal(g.state, "enabled");
        assert_int_equal(g.ops, 0xf);
        assert_int_equal(g.current_version, 1);
        assert_true(g.created > 0 && g.updated == g.created);
        assert_string_equal(g.tags_json, "{\"env\":\"prod\"}");
        assert_string_equal(g.rules_json, "{}");
        assert_null(g.public_der);
        kw_key_row_clear(&g);
        assert_int_equal(kw_pg_key_get(f->pg, "nope", &g).code, KW_ERR_NOT_FOUND);
        assert_int_equal(kw_pg_key_get(f->pg, "bad name", &g).code, KW_ERR_NOT_FOUND);
        char over[80];
        memset(over, 'a', 70);
        over[70] = '\0';
        assert_int_equal(kw_pg_key_get(f->pg, over, &g).code, KW_ERR_BAD_NAME);

        /* RSA with its public key */
        struct kw_key_row rsa = key_row(5, "rsa1", "RSA", "disabled", NULL);
        static uint8_t der[] = { 0x30, 0x82, 0x01, 0x22, 0x00, 0x01 };
        rsa.public_der = der;
        rsa.public_der_len = sizeof der;
        rsa.rules_json = "{\"r\":1}";
        assert_int_equal(kw_pg_key_insert(f->pg, &rsa, blob1, sizeof blob1, NULL).code, 0);
        assert_int_equal(kw_pg_key_get(f->pg, "rsa1", &g).code, 0);
        assert_int_equal(g.public_der_len, sizeof der);
        assert_memory_equal(g.public_der, der, sizeof der);
        assert_string_equal(g.rules_json, "{\"r\":1}");
        kw_key_row_clear(&g);
        struct kw_buf b;
        kw_buf_init(&b, 1024);
        assert_int_equal(kw_pg_key_get_blob(f->pg, id, 1, &b).code, 0);
        assert_int_equal(b.len, sizeof blob1);
        assert_memory_equal(b.p, blob1, sizeof blob1);
        kw_buf_free(&b);
        /* the default audit row of a NULL entry: key.create with the name */
        assert_int_equal(sql_int("SELECT count(*) FROM audit WHERE action = 'key.create'"
                                 " AND key_name = 'rsa1' AND result = 'ok'"), 1);
}

static void pgstore_key_list_filters_and_paging(void **state)
{
        struct fx *f = *state;
        insert_key(f->pg, 1, "b-aes", "AES", "enabled", "{\"env\":\"prod\",\"team\":\"x\"}");
        insert_key(f->pg, 2, "a-rsa", "RSA", "enabled", "{\"env\":\"dev\"}");
        insert_key(f->pg, 3, "Z-upper", "AES", "disabled", "{\"env\":\"prod\"}");
        insert_key(f->pg, 4, "b-aes2", "AES", "pending_deletion", "{\"env\":1}");
        insert_key(f->pg, 5, "gone", "AES", "enabled", NULL);
        char id5[33];
        make_id(id5, 5);
        assert_int_equal(kw_pg_key_destroy(f->pg, id5, NULL).code, 0);
        struct names ns;
        char next[65];
        /* byte order (COLLATE "C"): upper case first; destroyed hidden */
        list_names(f->pg, NULL, &ns, next);
        const char *all[] = { "Z-upper", "a-rsa", "b-aes", "b-aes2" };
        assert_names(&ns, all, 4);
        assert_string_equal(next, "");
        struct kw_key_filter flt = { .include_destroyed = 1 };
        list_names(f->pg, &flt, &ns, next);
        assert_int_equal(ns.n, 5);
        flt = (struct kw_key_filter){ .state = "destroyed" };
        list_names(f->pg, &flt, &ns, next);
        const char *gone[] = { "gone" };
        assert_names(&ns, gone, 1);
        flt = (struct kw_key_filter){ .type = "AES", .tag = "env=prod" };
        list_names(f->pg, &flt, &ns, next);
        const char *prod[] = { "Z-upper", "b-aes" };
        assert_names(&ns, prod, 2);
        flt = (struct kw_key_filter){ .name_prefix = "b-" };
        list_names(f->pg, &flt, &ns, next);
        const char *bs[] = { "b-aes", "b-aes2" };
        assert_names(&ns, bs, 2);
        flt = (struct kw_key_filter){ .tag = "env=1" };   /* a number is not the string "1" */
        list_names(f->pg, &flt, &ns, next);
        assert_int_equal(ns.n, 0);
        flt = (struct kw_key_filter){ .state = "enabled", .after_name = "a-rsa" };
        list_names(f->pg, &flt, &ns, next);
        const char *after[] = { "b-aes" };
        assert_names(&ns, after, 1);
        /* bad filters */
        flt = (struct kw_key_filter){ .limit = 1001 };
        assert_int_equal(kw_pg_key_list(f->pg, &flt, names_cb, &ns, next).code, KW_ERR_BAD_FIELD);
        flt = (struct kw_key_filter){ .state = "weird" };
        assert_int_equal(kw_pg_key_list(f->pg, &flt, names_cb, &ns, next).code, KW_ERR_BAD_FIELD);
        flt = (struct kw_key_filter){ .tag = "=v" };
        assert_int_equal(kw_pg_key_list(f->pg, &flt, names_cb, &ns, next).code, KW_ERR_BAD_FIELD);
        assert_int_equal(key_count(f->pg), 4);
}

static void pgstore_key_list_paging_sees_each_name_once(void **state)
{
        struct fx *f = *state;
        for (unsigned i = 0; i < 25; i++) {
                unsigned k = (i * 7) % 25;
                char name[16];
                snprintf(name, sizeof name, "key-%02u", k);
                insert_key(f->pg, k + 1, name, "AES", "enabled", k % 3 == 0 ? "{\"m\":\"0\"}" : "{}");
        }
        int seen[25] = { 0 };
        char next[65] = "";
        int pages = 0, sizes[5] = { 0 };
        do {
                char after[65];
                snprintf(after, sizeof after, "%s", next);
                struct kw_key_filter flt = { .limit = 10, .after_name = pages ? after : NULL };
                struct names ns;
                list_names(f->pg, &flt, &ns, next);
                assert_true(pages < 5);
                sizes[pages++] = ns.n;
                for (int i = 0; i < ns.n; i++)
                        seen[atoi(ns.v[i] + 4)]++;
                if (next[0] != '\0')
                        assert_string_equal(next, ns.v[ns.n - 1]);
        } while (next[0] != '\0');
        assert_int_equal(pages, 3);
        assert_int_equal(sizes[0], 10);
        assert_int_equal(sizes[2], 5);
        for (int k = 0; k < 25; k++)
                assert_int_equal(seen[k], 1);
        /* the tag filter, limit 4: 9 tagged keys */
        memset(seen, 0, sizeof seen);
        pages = 0;
        do {
                char after[65];
                snprintf(after, sizeof after, "%s", next);
                struct kw_key_filter flt = { .limit = 4, .tag = "m=0", .after_name = pages ? after : NULL };
                struct names ns;
                list_names(f->pg, &flt, &ns, next);
                assert_true(pages < 4);
                sizes[pages++] = ns.n;
                for (int i = 0; i < ns.n; i++)
                        seen[atoi(ns.v[i] + 4)]++;
        } while (next[0] != '\0');
        assert_int_equal(pages, 3);
        assert_int_equal(sizes[2], 1);
        for (int k = 0; k < 25; k++)
                assert_int_equal(seen[k], k % 3 == 0 ? 1 : 0);
        struct kw_key_filter flt = { .limit = 9, .tag = "m=0" };
        struct names ns;
        list_names(f->pg, &flt, &ns, next);
        assert_int_equal(ns.n, 9);
        assert_string_equal(next, "");
        flt = (struct kw_key_filter){ .limit = 10 };
        memset(&ns, 0, sizeof ns);
        ns.stop_at = 3;
        assert_int_equal(kw_pg_key_list(f->pg, &flt, names_cb, &ns, next).code, 0);
        assert_int_equal(ns.n, 3);
        assert_string_equal(next, "key-02");
}

static void pgstore_key_update_writes_mutable_columns(void **state)
{
        struct fx *f = *state;
        insert_key(f->pg, 1, "upd", "AES", "enabled", "{\"a\":\"1\"}");
        struct kw_key_row g;
        memset(&g, 0, sizeof g);
        assert_int_equal(kw_pg_key_get(f->pg, "upd", &g).code, 0);
        int64_t a0 = audit_rows();
        struct kw_key_row u = g;
        snprintf(u.state, sizeof u.state, "pending_deletion");
        u.ops = 3;
        u.tags_json = "{\"b\":\"2\"}";
        u.rules_json = "{\"r\":1}";
        u.delete_at = 5555;
        u.updated = 4444;
        snprintf(u.name, sizeof u.name, "renamed");
        snprintf(u.type, sizeof u.type, "RSA");
        u.current_version = 9;
        struct kw_audit_entry a = { .action = "key.schedule_deletion", .key_name = "upd", .result = "ok" };
        assert_int_equal(kw_pg_key_update(f->pg, &u, &a).code, 0);
        kw_key_row_clear(&g);
        assert_int_equal(kw_pg_key_get(f->pg, "upd", &g).code, 0);
        assert_string_equal(g.state, "pending_deletion");
        assert_int_equal(g.ops, 3);
        assert_string_equal(g.tags_json, "{\"b\":\"2\"}");
        assert_string_equal(g.rules_json, "{\"r\":1}");
        assert_int_equal(g.delete_at, 5555);
        assert_int_equal(g.updated, 4444);
        assert_string_equal(g.type, "AES");
        assert_int_equal(g.current_version, 1);
        assert_int_equal(audit_rows(), a0 + 1);
        struct kw_key_row x = g;
        make_id(x.id, 77);
        snprintf(x.state, sizeof x.state, "enabled");
        assert_int_equal(kw_pg_key_update(f->pg, &x, NULL).code, KW_ERR_NOT_FOUND);
        x = g;
        snprintf(x.state, sizeof x.state, "destroyed");
        assert_int_equal(kw_pg_key_update(f->pg, &x, NULL).code, KW_ERR_BAD_STATE);
        x = g;
        x.tags_json = "nope";
        assert_int_equal(kw_pg_key_update(f->pg, &x, NULL).code, KW_ERR_BAD_JSON);
        assert_int_equal(audit_rows(), a0 + 1);
        assert_int_equal(kw_pg_key_destroy(f->pg, g.id, NULL).code, 0);
        x = g;
        snprintf(x.state, sizeof x.state, "enabled");
        assert_int_equal(kw_pg_key_update(f->pg, &x, NULL).code, KW_ERR_KEY_DESTROYED);
        struct kw_key_row h;
        memset(&h, 0, sizeof h);
        assert_int_equal(kw_pg_key_get(f->pg, "upd", &h).code, 0);
        assert_string_equal(h.state, "destroyed");
        kw_key_row_clear(&h);
        kw_key_row_clear(&g);
}

static int versions_cb(uint32_t v, int64_t created, void *arg)
{
        int *n = arg;
        assert_int_equal(v, (uint32_t)(*n + 1));
        assert_true(created > 0);
        (*n)++;
        return 0;
}

static void pgstore_key_versions_destroy_tombstone(void **state)
{
        struct fx *f = *state;
        insert_key(f->pg, 1, "rot", "RSA", "enabled", NULL);
        char id[33], other[33];
        make_id(id, 1);
        make_id(other, 99);
        int64_t a0 = audit_rows();
        assert_int_equal(kw_pg_key_add_version(f->pg, id, 3, blob2, sizeof blob2, NULL, 0, NULL).code,
                         KW_ERR_BAD_STATE);
        assert_int_equal(kw_pg_key_add_version(f->pg, id, 1, blob2, sizeof blob2, NULL, 0, NULL).code,
                         KW_ERR_BAD_STATE);
        assert_int_equal(kw_pg_key_add_version(f->pg, other, 2, blob2, sizeof blob2, NULL, 0, NULL).code,
                         KW_ERR_NOT_FOUND);
        assert_int_equal(kw_pg_key_add_version(f->pg, id, 2, blob2, 0, NULL, 0, NULL).code, KW_ERR_INPUT);
        assert_int_equal(audit_rows(), a0);
        static const uint8_t der2[] = { 0x30, 0x03, 0x02, 0x01, 0x02 };
        assert_int_equal(kw_pg_key_add_version(f->pg, id, 2, blob2, sizeof blob2, der2, sizeof der2,
                                               NULL).code, 0);
        assert_int_equal(audit_rows(), a0 + 1);
        assert_int_equal(sql_int("SELECT count(*) FROM audit WHERE action = 'key.rotate'"
                                 " AND key_name = 'rot'"), 1);
        struct kw_key_row g;
        memset(&g, 0, sizeof g);
        assert_int_equal(kw_pg_key_get(f->pg, "rot", &g).code, 0);
        assert_int_equal(g.current_version, 2);
        assert_int_equal(g.public_der_len, sizeof der2);
        kw_key_row_clear(&g);
        struct kw_buf b;
        kw_buf_init(&b, 1024);
        assert_int_equal(kw_pg_key_get_blob(f->pg, id, 2, &b).code, 0);
        assert_memory_equal(b.p, blob2, sizeof blob2);
        kw_buf_reset(&b);
        int nv = 0;
        assert_int_equal(kw_pg_key_versions(f->pg, id, versions_cb, &nv).code, 0);
        assert_int_equal(nv, 2);

        /* destroy: blobs gone, the name stays taken */
        assert_int_equal(kw_pg_key_destroy(f->pg, id, NULL).code, 0);
        assert_int_equal(sql_int("SELECT count(*) FROM key_versions"), 0);
        assert_int_equal(kw_pg_key_get_blob(f->pg, id, 1, &b).code, KW_ERR_NOT_FOUND);
        nv = 0;
        assert_int_equal(kw_pg_key_versions(f->pg, id, versions_cb, &nv).code, 0);
        assert_int_equal(nv, 0);
        assert_int_equal(kw_pg_key_destroy(f->pg, id, NULL).code, KW_ERR_KEY_DESTROYED);
        assert_int_equal(kw_pg_key_add_version(f->pg, id, 3, blob2, sizeof blob2, NULL, 0, NULL).code,
                         KW_ERR_KEY_DESTROYED);
        assert_int_equal(kw_pg_key_destroy(f->pg, other, NULL).code, KW_ERR_NOT_FOUND);
        assert_int_equal(kw_pg_key_destroy(f->pg, "zz", NULL).code, KW_ERR_BAD_FIELD);
        struct kw_key_row r = key_row(2, "rot", "AES", "enabled", NULL);
        assert_int_equal(kw_pg_key_insert(f->pg, &r, blob1, sizeof blob1, NULL).code, KW_ERR_EXISTS);
        assert_int_equal(kw_pg_key_get(f->pg, "rot", &g).code, 0);
        assert_string_equal(g.state, "destroyed");
        assert_int_equal(g.delete_at, 0);
        kw_key_row_clear(&g);
        assert_int_equal(key_count(f->pg), 0);
        kw_buf_free(&b);
}

struct due {
        int n;
        char names[8][65];
        int destroy;
        struct kw_pgstore *pg;
};

static int due_cb(const char *key_id, const char *name, void *arg)
{
        struct due *d = arg;
        if (d->n < 8)
                snprintf(d->names[d->n], 65, "%s", name);
        d->n++;
        if (d->destroy) /* the sweeper calls back into the store from its callback */
                assert_int_equal(kw_pg_key_destroy(d->pg, key_id, NULL).code, 0);
        return 0;
}

static void pgstore_due_deletions_lists_due_keys(void **state)
{
        struct fx *f = *state;
        const char *names[] = { "d1", "d2", "d3", "live" };
        for (unsigned i = 0; i < 4; i++) {
                insert_key(f->pg, i + 1, names[i], "AES", i < 3 ? "pending_deletion" : "enabled", NULL);
                struct kw_key_row g;
                memset(&g, 0, sizeof g);
                assert_int_equal(kw_pg_key_get(f->pg, names[i], &g).code, 0);
                g.delete_at = i == 2 ? 5000 : 1000 + i;
                assert_int_equal(kw_pg_key_update(f->pg, &g, NULL).code, 0);
                kw_key_row_clear(&g);
        }
        struct due d = { .pg = f->pg };
        assert_int_equal(kw_pg_due_deletions(f->pg, 2000, due_cb, &d).code, 0);
        assert_int_equal(d.n, 2);
        assert_string_equal(d.names[0], "d1");
        assert_string_equal(d.names[1], "d2");
        d = (struct due){ .pg = f->pg, .destroy = 1 };
        assert_int_equal(kw_pg_due_deletions(f->pg, 9000, due_cb, &d).code, 0);
        assert_int_equal(d.n, 3);
        d = (struct due){ .pg = f->pg };
        assert_int_equal(kw_pg_due_deletions(f->pg, 9000, due_cb, &d).code, 0);
        assert_int_equal(d.n, 0);
        assert_int_equal(key_count(f->pg), 1);
}

static void pgstore_key_destroy_due_checks_in_tx(void **state)
{
        struct fx *f = *state;
        insert_key(f->pg, 1, "live", "AES", "enabled", NULL);
        insert_key(f->pg, 2, "due", "AES", "pending_deletion", NULL);
        struct kw_key_row g;
        memset(&g, 0, sizeof g);
        assert_int_equal(kw_pg_key_get(f->pg, "due", &g).code, 0);
        g.delete_at = 2000;
        assert_int_equal(kw_pg_key_update(f->pg, &g, NULL).code, 0);
        kw_key_row_clear(&g);
        char id1[33], id2[33];
        make_id(id1, 1);
        make_id(id2, 2);
        int64_t a0 = audit_rows(), g0 = gen_now();
        assert_int_equal(kw_pg_key_destroy_due(f->pg, id1, 5000, NULL).code, KW_ERR_BAD_STATE);
        assert_string_equal(kw_err_detail(), "the key's deletion is no longer due (cancelled or moved)");
        assert_int_equal(kw_pg_key_destroy_due(f->pg, id2, 1999, NULL).code, KW_ERR_BAD_STATE);
        assert_int_equal(kw_pg_key_destroy_due(f->pg, id2, 0, NULL).code, KW_ERR_INPUT);
        assert_int_equal(audit_rows(), a0);
        assert_int_equal(gen_now(), g0);
        assert_int_equal(sql_int("SELECT count(*) FROM key_versions"), 2);
        assert_int_equal(kw_pg_key_destroy_due(f->pg, id2, 2000, NULL).code, 0);
        assert_int_equal(kw_pg_key_destroy_due(f->pg, id2, 2000, NULL).code, KW_ERR_KEY_DESTROYED);
        assert_int_equal(sql_int("SELECT count(*) FROM key_versions"), 1);
        assert_int_equal(kw_pg_key_get(f->pg, "due", &g).code, 0);
        assert_string_equal(g.state, "destroyed");
        kw_key_row_clear(&g);
        assert_int_equal(audit_rows(), a0 + 1);
}

/* ---------------------------------------------------------------- tokens */

struct toks {
        int n;
        char names[8][65];
        int64_t revoked[8];
};

static int toks_cb(const struct kw_token_row *row, void *arg)
{
        struct toks *t = arg;
        if (t->n < 8) {
                snprintf(t->names[t->n], 65, "%s", row->name);
                t->revoked[t->n] = row->revoked;
        }
        t->n++;
        return 0;
}

static int hashes_cb(const struct kw_token_row *row, const uint8_t hash[32], void *arg)
{
        int *n = arg;
        assert_int_equal(hash[0], (uint8_t)(row->id[3] - '0'));
        (*n)++;
        return 0;
}

static void pgstore_token_lifecycle(void **state)
{
        struct fx *f = *state;
        uint8_t h1[32], h2[32], h3[32], h9[32];
        memset(h1, 1, sizeof h1);
        memset(h2, 2, sizeof h2);
        memset(h3, 3, sizeof h3);
        memset(h9, 9, sizeof h9);
        struct kw_token_row t1 = { .id = "aa01", .name = "zeta", .role = "admin", .created = 77 };
        struct kw_token_row t2 = { .id = "aa02", .name = "alpha", .role = "auditor" };
        assert_int_equal(kw_pg_token_insert(f->pg, &t1, h1, NULL).code, 0);
        assert_int_equal(kw_pg_token_insert(f->pg, &t2, h2, NULL).code, 0);
        uint64_t n = 0;
        assert_int_equal(kw_pg_token_count(f->pg, &n).code, 0);
        assert_int_equal(n, 2);
        int64_t a0 = audit_rows(), g0 = gen_now();
        struct kw_token_row dn = { .id = "aa03", .name = "zeta", .role = "admin" };
        assert_int_equal(kw_pg_token_insert(f->pg, &dn, h3, NULL).code, KW_ERR_EXISTS);
        assert_string_equal(kw_err_detail(), "the token name, id or hash is already in use");
        struct kw_token_row dh = { .id = "aa04", .name = "other", .role = "admin" };
        assert_int_equal(kw_pg_token_insert(f->pg, &dh, h1, NULL).code, KW_ERR_EXISTS);
        struct kw_token_row br = { .id = "aa05", .name = "other", .role = "root" };
        assert_int_equal(kw_pg_token_insert(f->pg, &br, h3, NULL).code, KW_ERR_BAD_FIELD);
        struct kw_token_row bn = { .id = "aa06", .name = "bad name", .role = "admin" };
        assert_int_equal(kw_pg_token_insert(f->pg, &bn, h3, NULL).code, KW_ERR_BAD_NAME);
        assert_int_equal(audit_rows(), a0);
        assert_int_equal(gen_now(), g0);
        struct kw_token_row tf;
        memset(&tf, 0, sizeof tf);
        assert_int_equal(kw_pg_token_find(f->pg, h3, &tf).code, KW_ERR_NOT_FOUND);
        assert_int_equal(kw_pg_token_find(f->pg, h1, &tf).code, 0);
        assert_string_equal(tf.id, "aa01");
        assert_string_equal(tf.role, "admin");
        assert_int_equal(tf.created, 77);
        struct toks tl = { 0 };
        assert_int_equal(kw_pg_token_list(f->pg, toks_cb, &tl).code, 0);
        assert_int_equal(tl.n, 2);
        assert_string_equal(tl.names[0], "alpha");
        int nh = 0;
        assert_int_equal(kw_pg_token_list_hashes(f->pg, hashes_cb, &nh).code, 0);
        assert_int_equal(nh, 2);

        /* the last admin credential */
        assert_int_equal(kw_pg_token_revoke(f->pg, "aa01", NULL).code, KW_ERR_BAD_STATE);
        assert_non_null(strstr(kw_err_detail(), "last active admin token"));
        assert_int_equal(audit_rows(), a0);
        struct kw_token_row t9 = { .id = "aa09", .name = "second-admin", .role = "admin" };
        assert_int_equal(kw_pg_token_insert(f->pg, &t9, h9, NULL).code, 0);
        a0 = audit_rows();
        assert_int_equal(kw_pg_token_revoke(f->pg, "aa01", NULL).code, 0);
        assert_int_equal(kw_pg_token_find(f->pg, h1, &tf).code, KW_ERR_NOT_FOUND);
        assert_int_equal(kw_pg_token_count(f->pg, &n).code, 0);
        assert_int_equal(n, 3);
        assert_int_equal(audit_rows(), a0 + 1);
        assert_int_equal(kw_pg_token_revoke(f->pg, "aa09", NULL).code, KW_ERR_BAD_STATE);
        assert_int_equal(kw_pg_token_revoke(f->pg, "aa01", NULL).code, KW_ERR_NOT_FOUND);
        assert_int_equal(kw_pg_token_revoke(f->pg, "bad id!", NULL).code, KW_ERR_BAD_FIELD);
        /* an admin user counts as another admin credential */
        struct kw_user_row u = { .name = "root-user", .role = "admin",
                                 .hash = "$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA" };
        assert_int_equal(kw_pg_user_insert(f->pg, &u, NULL).code, 0);
        assert_int_equal(kw_pg_token_revoke(f->pg, "aa09", NULL).code, 0);
        assert_int_equal(kw_pg_user_delete(f->pg, "root-user", NULL, NULL).code, KW_ERR_BAD_STATE);
}

/* ----------------------------------------------------------------- users */

static const char *const hash_a = "$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaEE";
static const char *const hash_b = "$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaEI";

struct users {
        int n;
        char names[8][65];
        int hash_empty;
};

static int users_cb(const struct kw_user_row *row, void *arg)
{
        struct users *u = arg;
        if (u->n < 8)
                snprintf(u->names[u->n], 65, "%s", row->name);
        u->hash_empty &= row->hash[0] == '\0';
        u->n++;
        return 0;
}

static void pgstore_user_lifecycle_and_lockout(void **state)
{
        struct fx *f = *state;
        struct kw_user_row u = { .name = "bob", .role = "operator", .created = 10 };
        snprintf(u.hash, sizeof u.hash, "%s", hash_a);
        assert_int_equal(kw_pg_user_insert(f->pg, &u, NULL).code, 0);
        int64_t a0 = audit_rows();
        assert_int_equal(kw_pg_user_insert(f->pg, &u, NULL).code, KW_ERR_EXISTS);
        assert_string_equal(kw_err_detail(), "a user named bob already exists");
        struct kw_user_row bad = u;
        snprintf(bad.name, sizeof bad.name, "x");
        snprintf(bad.role, sizeof bad.role, "root");
        assert_int_equal(kw_pg_user_insert(f->pg, &bad, NULL).code, KW_ERR_BAD_FIELD);
        bad = u;
        snprintf(bad.name, sizeof bad.name, "x");
        snprintf(bad.hash, sizeof bad.hash, "plain");
        assert_int_equal(kw_pg_user_insert(f->pg, &bad, NULL).code, KW_ERR_BAD_FIELD);
        assert_int_equal(audit_rows(), a0);
        struct kw_user_row g;
        memset(&g, 0, sizeof g);
        assert_int_equal(kw_pg_user_get(f->pg, "bob", &g).code, 0);
        assert_string_equal(g.hash, hash_a);
        assert_string_equal(g.role, "operator");
        assert_int_equal(g.created, 10);
        assert_int_equal(kw_pg_user_get(f->pg, "nobody", &g).code, KW_ERR_NOT_FOUND);
        assert_int_equal(kw_pg_user_get(f->pg, "bad name", &g).code, KW_ERR_BAD_NAME);

        struct kw_lockout_policy pol = { .max_failures = 3, .base_seconds = 60, .max_seconds = 3600 };
        struct kw_user_row after;
        for (int i = 1; i <= 4; i++) {
                memset(&after, 0, sizeof after);
                assert_int_equal(kw_pg_user_login(f->pg, "bob", 0, 1000, &pol, NULL, &after).code, 0);
                assert_int_equal(after.failed, (uint32_t)i);
                assert_int_equal(after.hash[0], 0);
        }
        assert_int_equal(after.locked_until, 1000 + 120);   /* 4 failures: 60 * 2 */
        assert_int_equal(kw_pg_user_get(f->pg, "bob", &g).code, 0);
        assert_int_equal(g.failed, 4);
        assert_int_equal(g.locked_until, 1120);
        assert_int_equal(sql_int("SELECT count(*) FROM audit WHERE action = 'session.login'"), 4);
        assert_int_equal(kw_pg_user_login(f->pg, "bob", 1, 2000, &pol, NULL, &after).code, 0);
        assert_int_equal(after.failed, 0);
        assert_int_equal(after.locked_until, 0);
        assert_int_equal(after.last_login, 2000);
        assert_int_equal(kw_pg_user_login(f->pg, "ghost", 1, 2000, &pol, NULL, &after).code,
                         KW_ERR_NOT_FOUND);
        /* password change resets the lock */
        assert_int_equal(kw_pg_user_login(f->pg, "bob", 0, 3000, &pol, NULL, &after).code, 0);
        assert_int_equal(kw_pg_user_set_password(f->pg, "bob", hash_b, NULL, &after).code, 0);
        assert_int_equal(after.failed, 0);
        assert_int_equal(kw_pg_user_get(f->pg, "bob", &g).code, 0);
        assert_string_equal(g.hash, hash_b);
        assert_int_equal(kw_pg_user_set_password(f->pg, "bob", "nope", NULL, NULL).code, KW_ERR_BAD_FIELD);
        assert_int_equal(kw_pg_user_set_password(f->pg, "ghost", hash_b, NULL, NULL).code, KW_ERR_NOT_FOUND);

        struct kw_user_row adm = { .name = "alice", .role = "admin" };
        snprintf(adm.hash, sizeof adm.hash, "%s", hash_a);
        assert_int_equal(kw_pg_user_insert(f->pg, &adm, NULL).code, 0);
        struct users ul = { .hash_empty = 1 };
        assert_int_equal(kw_pg_user_list(f->pg, users_cb, &ul).code, 0);
        assert_int_equal(ul.n, 2);
        assert_string_equal(ul.names[0], "alice");
        assert_true(ul.hash_empty);
        /* the last admin cannot go; an operator can */
        a0 = audit_rows();
        assert_int_equal(kw_pg_user_delete(f->pg, "alice", NULL, NULL).code, KW_ERR_BAD_STATE);
        assert_int_equal(audit_rows(), a0);
        struct kw_user_row gone;
        memset(&gone, 0, sizeof gone);
        assert_int_equal(kw_pg_user_delete(f->pg, "bob", NULL, &gone).code, 0);
        assert_string_equal(gone.name, "bob");
        assert_int_equal(kw_pg_user_delete(f->pg, "bob", NULL, NULL).code, KW_ERR_NOT_FOUND);
        assert_int_equal(audit_rows(), a0 + 1);
}

/* ------------------------------------------------------------------- xks */

static struct kw_xks_cred_row xks_cred(const char *store, const char *akid)
{
        struct kw_xks_cred_row c;
        memset(&c, 0, sizeof c);
        snprintf(c.store, sizeof c.store, "%s", store);
        snprintf(c.akid, sizeof c.akid, "%s", akid);
        int n = snprintf((char *)c.secret, sizeof c.secret, "sealed-%s-0123456789012345678901234567", akid);
        c.secret_len = (size_t)n;
        c.is_sealed = 1;
        return c;
}

struct xks_seen {
        int stores, creds;
        char akids[8][33];
        uint8_t secrets[8][256];
        int sealed[8];
};

static int xks_store_cb(const struct kw_xks_store_row *row, void *arg)
{
        (void)row;
        ((struct xks_seen *)arg)->stores++;
        return 0;
}

static int xks_cred_cb(const struct kw_xks_cred_row *row, void *arg)
{
        struct xks_seen *s = arg;
        if (s->creds < 8) {
                snprintf(s->akids[s->creds], 33, "%s", row->akid);
                memcpy(s->secrets[s->creds], row->secret, row->secret_len);
                s->sealed[s->creds] = row->is_sealed;
        }
        s->creds++;
        return 0;
}

static void pgstore_xks_store_insert_rotate_prune_delete(void **state)
{
        struct fx *f = *state;
        struct kw_xks_store_row st = { .name = "s1", .uri_prefix = "/s1", .region = "us-east-1" };
        struct kw_xks_cred_row c1 = xks_cred("s1", "AAAAAAAAAAAAAAAAAAA1");
        assert_int_equal(kw_pg_xks_store_insert(f->pg, &st, &c1, NULL).code, 0);
        struct kw_xks_cred_row c9 = xks_cred("s1", "AAAAAAAAAAAAAAAAAAA9");
        assert_int_equal(kw_pg_xks_store_insert(f->pg, &st, &c9, NULL).code, KW_ERR_EXISTS);
        struct kw_xks_store_row st2 = { .name = "s2", .uri_prefix = "/s1", .region = "us-east-1" };
        struct kw_xks_cred_row c92 = xks_cred("s2", "AAAAAAAAAAAAAAAAAAA9");
        assert_int_equal(kw_pg_xks_store_insert(f->pg, &st2, &c92, NULL).code, KW_ERR_EXISTS);
        struct xks_seen seen = { 0 };
        assert_int_equal(kw_pg_xks_list(f->pg, xks_store_cb, xks_cred_cb, &seen).code, 0);
        assert_int_equal(seen.stores, 1);
        assert_int_equal(seen.creds, 1);
        struct kw_xks_cred_row c2 = xks_cred("s1", "AAAAAAAAAAAAAAAAAAA2"), c3 = xks_cred("s1", "AAAAAAAAAAAAAAAAAAA3");
        assert_int_equal(kw_pg_xks_cred_add(f->pg, &c2, 2, NULL).code, 0);
        assert_int_equal(kw_pg_xks_cred_add(f->pg, &c3, 2, NULL).code, 0);
        struct kw_xks_cred_row cx = xks_cred("nostore", "AAAAAAAAAAAAAAAAAAA4");
        assert_int_equal(kw_pg_xks_cred_add(f->pg, &cx, 2, NULL).code, KW_ERR_NOT_FOUND);
        memset(&seen, 0, sizeof seen);
        assert_int_equal(kw_pg_xks_list(f->pg, xks_store_cb, xks_cred_cb, &seen).code, 0);
        assert_int_equal(seen.creds, 2);
        assert_string_equal(seen.akids[0], c2.akid);
        assert_string_equal(seen.akids[1], c3.akid);
        assert_memory_equal(seen.secrets[1], c3.secret, c3.secret_len);
        assert_int_equal(seen.sealed[1], 1);
        struct kw_xks_cred_row clear = xks_cred("s1", "AAAAAAAAAAAAAAAAAAA5");
        clear.is_sealed = 0;
        assert_int_equal(kw_pg_xks_cred_add(f->pg, &clear, 2, NULL).code, KW_ERR_INPUT);
        /* reseal replaces the sealed secret of an existing credential */
        assert_int_equal(kw_pg_xks_cred_reseal(f->pg, "s1", c3.akid, (const uint8_t *)"resealed", 8).code, 0);
        assert_int_equal(kw_pg_xks_cred_reseal(f->pg, "s1", c1.akid, (const uint8_t *)"x", 1).code,
                         KW_ERR_NOT_FOUND);
        memset(&seen, 0, sizeof seen);
        assert_int_equal(kw_pg_xks_list(f->pg, NULL, xks_cred_cb, &seen).code, 0);
        assert_memory_equal(seen.secrets[1], "resealed", 8);
        assert_int_equal(kw_pg_xks_cred_delete(f->pg, "s1", c1.akid, NULL).code, KW_ERR_NOT_FOUND);
        assert_int_equal(kw_pg_xks_cred_delete(f->pg, "s1", c2.akid, NULL).code, 0);
        assert_int_equal(kw_pg_xks_store_delete(f->pg, "s2", NULL).code, KW_ERR_NOT_FOUND);
        assert_int_equal(kw_pg_xks_store_delete(f->pg, "s1", NULL).code, 0);
        memset(&seen, 0, sizeof seen);
        assert_int_equal(kw_pg_xks_list(f->pg, xks_store_cb, xks_cred_cb, &seen).code, 0);
        assert_int_equal(seen.stores + seen.creds, 0);
        assert_int_equal(sql_int("SELECT count(*) FROM audit WHERE action LIKE 'xks.%'"), 5);
}

/* ------------------------------------------------------------- tampering */

static void pgstore_tampered_key_state_is_refused(void **state)
{
        struct fx *f = *state;
        insert_key(f->pg, 1, "t1", "AES", "disabled", NULL);
        insert_key(f->pg, 2, "t2", "AES", "enabled", NULL);
        char id[33];
        make_id(id, 1);
        sql("UPDATE keys SET state = 'enabled' WHERE name = 't1'");
        char want[128];
        snprintf(want, sizeof want, "row keys/%s fails its MAC: it was changed outside keyward", id);
        struct kw_key_row g;
        memset(&g, 0, sizeof g);
        assert_tampered(kw_pg_key_get(f->pg, "t1", &g), want);
        assert_int_equal(g.name[0], 0);
        struct names ns;
        char next[65];
        memset(&ns, 0, sizeof ns);
        assert_tampered(kw_pg_key_list(f->pg, NULL, names_cb, &ns, next), want);
        assert_int_equal(ns.n, 0);   /* the callback saw nothing, not even t2 */
        /* a mutation of the tampered row is refused, not laundered */
        int64_t a0 = audit_rows();
        assert_tampered(kw_pg_key_destroy(f->pg, id, NULL), want);
        assert_int_equal(audit_rows(), a0);
        /* put back as it was, the row verifies again; any other column fails */
        sql("UPDATE keys SET state = 'disabled' WHERE name = 't1'");
        assert_int_equal(kw_pg_key_get(f->pg, "t1", &g).code, 0);
        kw_key_row_clear(&g);
        assert_int_equal(kw_pg_key_get(f->pg, "t2", &g).code, 0);
        kw_key_row_clear(&g);
        sql("UPDATE keys SET ops = 255 WHERE name = 't2'");
        assert_int_equal(kw_pg_key_get(f->pg, "t2", &g).code, KW_ERR_DB_TAMPERED);
}

static void pgstore_tampered_swapped_version_blobs_are_refused(void **state)
{
        struct fx *f = *state;
        insert_key(f->pg, 1, "s1", "AES", "enabled", NULL);
        char id[33];
        make_id(id, 1);
        assert_int_equal(kw_pg_key_add_version(f->pg, id, 2, blob2, sizeof blob2, NULL, 0, NULL).code, 0);
        sql("UPDATE key_versions k SET blob = o.blob FROM key_versions o"
            " WHERE k.key_id = o.key_id AND k.version <> o.version");
        struct kw_buf b;
        kw_buf_init(&b, 1024);
        char want[160];
        snprintf(want, sizeof want,
                 "row key_versions/%s/1 fails its MAC: it was changed outside keyward", id);
        assert_tampered(kw_pg_key_get_blob(f->pg, id, 1, &b), want);
        assert_int_equal(b.len, 0);
        assert_int_equal(kw_pg_key_get_blob(f->pg, id, 2, &b).code, KW_ERR_DB_TAMPERED);
        int nv = 0;
        assert_int_equal(kw_pg_key_versions(f->pg, id, versions_cb, &nv).code, KW_ERR_DB_TAMPERED);
        assert_int_equal(nv, 0);
        kw_buf_free(&b);
}

static void pgstore_tampered_token_role_is_refused(void **state)
{
        struct fx *f = *state;
        uint8_t h1[32], h2[32];
        memset(h1, 1, sizeof h1);
        memset(h2, 2, sizeof h2);
        struct kw_token_row t1 = { .id = "aa01", .name = "adm", .role = "admin" };
        struct kw_token_row t2 = { .id = "aa02", .name = "aud", .role = "auditor" };
        assert_int_equal(kw_pg_token_insert(f->pg, &t1, h1, NULL).code, 0);
        assert_int_equal(kw_pg_token_insert(f->pg, &t2, h2, NULL).code, 0);
        sql("UPDATE tokens SET role = 'admin' WHERE id = 'aa02'");
        struct kw_token_row tf;
        memset(&tf, 0, sizeof tf);
        assert_tampered(kw_pg_token_find(f->pg, h2, &tf),
                        "row tokens/aa02 fails its MAC: it was changed outside keyward");
        assert_int_equal(tf.id[0], 0);
        struct toks tl = { 0 };
        assert_int_equal(kw_pg_token_list(f->pg, toks_cb, &tl).code, KW_ERR_DB_TAMPERED);
        assert_int_equal(tl.n, 0);
        /* the forged admin does not count as "another admin" either */
        assert_int_equal(kw_pg_token_revoke(f->pg, "aa01", NULL).code, KW_ERR_DB_TAMPERED);
        assert_int_equal(kw_pg_token_find(f->pg, h1, &tf).code, 0);
        /* a forged user row is refused the same way */
        struct kw_user_row u = { .name = "carol", .role = "auditor" };
        snprintf(u.hash, sizeof u.hash, "%s", hash_a);
        assert_int_equal(kw_pg_user_insert(f->pg, &u, NULL).code, 0);
        sql("UPDATE users SET locked_until = 0, failed = 0, role = 'admin' WHERE name = 'carol'");
        struct kw_user_row g;
        assert_tampered(kw_pg_user_get(f->pg, "carol", &g),
                        "row users/carol fails its MAC: it was changed outside keyward");
}

static void pgstore_rows_need_the_mac_key(void **state)
{
        (void)state;
        struct kw_pgstore *b = NULL;
        struct kw_pg_options o = opts("node-b", 1);
        assert_int_equal(kw_pg_open(&o, &b).code, 0);
        /* no MAC key yet: nothing is read or written */
        struct kw_key_row r = key_row(1, "k", "AES", "enabled", NULL);
        assert_int_equal(kw_pg_key_insert(b, &r, blob1, sizeof blob1, NULL).code, KW_ERR_SEALED);
        struct kw_buf buf;
        kw_buf_init(&buf, 1024);
        assert_int_equal(kw_pg_mac_key_blob(b, NULL, 0, &buf).code, 0);   /* a pure read */
        assert_int_equal(buf.len, 0);
        assert_int_equal(sql_int("SELECT count(*) FROM kw_meta WHERE k = 'row_mac_key'"), 0);
        assert_int_equal(kw_pg_mac_key_blob(b, (const uint8_t *)"sealed-A", 8, &buf).code, 0);
        assert_int_equal(buf.len, 8);
        assert_memory_equal(buf.p, "sealed-A", 8);
        kw_buf_reset(&buf);
        assert_int_equal(kw_pg_mac_key_blob(b, (const uint8_t *)"sealed-B", 8, &buf).code, 0);
        assert_memory_equal(buf.p, "sealed-A", 8);   /* the first one stays */
        kw_buf_reset(&buf);
        assert_int_equal(kw_pg_mac_key_blob(b, NULL, 0, &buf).code, 0);
        assert_memory_equal(buf.p, "sealed-A", 8);
        kw_buf_free(&buf);
        /* another key: every row written under the first is refused */
        kw_pg_set_mac_key(b, mac_key);
        insert_key(b, 1, "k", "AES", "enabled", NULL);
        uint8_t other[32];
        memset(other, 0x5a, sizeof other);
        kw_pg_set_mac_key(b, other);
        struct kw_key_row g;
        memset(&g, 0, sizeof g);
        assert_int_equal(kw_pg_key_get(b, "k", &g).code, KW_ERR_DB_TAMPERED);
        kw_pg_close(b);
}

/* ----------------------------------------------------------- concurrency */

struct thr {
        struct kw_pgstore *pg;
        int base;
        int ok;
};

static void *insert_thread(void *arg)
{
        struct thr *t = arg;
        for (int i = 0; i < 10; i++) {
                char name[32];
                snprintf(name, sizeof name, "t%d-%d", t->base, i);
                struct kw_key_row r = key_row((unsigned)(t->base * 100 + i + 1), name, "AES", "enabled", NULL);
                if (kw_ok(kw_pg_key_insert(t->pg, &r, blob1, sizeof blob1, NULL)))
                        t->ok++;
        }
        return NULL;
}

static void pgstore_threads_and_two_nodes_share_one_chain(void **state)
{
        struct fx *f = *state;
        struct kw_pgstore *b = open_ok("node-b", 1);
        struct thr t[4] = { { f->pg, 1, 0 }, { f->pg, 2, 0 }, { b, 3, 0 }, { b, 4, 0 } };
        pthread_t th[4];
        for (int i = 0; i < 4; i++)
                assert_int_equal(pthread_create(&th[i], NULL, insert_thread, &t[i]), 0);
        for (int i = 0; i < 4; i++) {
                pthread_join(th[i], NULL);
                assert_int_equal(t[i].ok, 10);
        }
        assert_int_equal(key_count(f->pg), 40);
        assert_int_equal(audit_rows(), 40);
        assert_int_equal(gen_now(), 40);
        /* one chain: seqs 1..40 without a gap */
        assert_int_equal(sql_int("SELECT max(seq) FROM audit"), 40);
        assert_int_equal(sql_int("SELECT seq FROM audit_head"), 40);
        assert_int_equal(sql_int("SELECT count(DISTINCT node) FROM audit"), 2);
        kw_pg_close(b);
}

/* -------------------------------------------------------------- listener */

struct events {
        pthread_mutex_t mu;
        int n, all, ups, downs;
        enum kw_pg_change kind[64];
        char name[64][65];
};

static void ev_changed(enum kw_pg_change kind, const char *name, void *arg)
{
        struct events *e = arg;
        pthread_mutex_lock(&e->mu);
        if (kind == KW_PG_CHANGE_ALL)
                e->all++;
        if (e->n < 64) {
                e->kind[e->n] = kind;
                snprintf(e->name[e->n], 65, "%s", name);
        }
        e->n++;
        pthread_mutex_unlock(&e->mu);
}

static void ev_state(int up, const char *why, void *arg)
{
        struct events *e = arg;
        assert_non_null(why);
        pthread_mutex_lock(&e->mu);
        if (up)
                e->ups++;
        else
                e->downs++;
        pthread_mutex_unlock(&e->mu);
}

/* Waits up to ms for cond(e) (read under the lock). */
static int ev_wait(struct events *e, int (*cond)(const struct events *), int ms)
{
        for (int waited = 0;; waited += 10) {
                pthread_mutex_lock(&e->mu);
                int ok = cond(e);
                pthread_mutex_unlock(&e->mu);
                if (ok || waited >= ms)
                        return ok;
                usleep(10000);
        }
}

static int has_key_k1(const struct events *e)
{
        for (int i = 0; i < e->n && i < 64; i++)
                if (e->kind[i] == KW_PG_CHANGE_KEY && strcmp(e->name[i], "k1") == 0)
                        return 1;
        return 0;
}
static int has_token(const struct events *e)
{
        for (int i = 0; i < e->n && i < 64; i++)
                if (e->kind[i] == KW_PG_CHANGE_TOKEN && strcmp(e->name[i], "aa01") == 0)
                        return 1;
        return 0;
}
static int has_all(const struct events *e) { return e->all > 0; }
static int has_rollback(const struct events *e)
{
        for (int i = 0; i < e->n && i < 64; i++)
                if (e->kind[i] == KW_PG_CHANGE_ALL && strcmp(e->name[i], "rollback") == 0)
                        return 1;
        return 0;
}
static int has_down(const struct events *e) { return e->downs > 0; }
static int has_up_and_all(const struct events *e) { return e->ups > 0 && e->all > 0; }

static void pgstore_listener_sees_another_nodes_change_within_1s(void **state)
{
        struct fx *f = *state;
        struct kw_pgstore *b = open_ok("node-b", 1);
        struct events ev = { .mu = PTHREAD_MUTEX_INITIALIZER };
        struct kw_pg_listener l = { .changed = ev_changed, .state = ev_state, .arg = &ev,
                                    .poll_ms = 5000 };   /* only NOTIFY can be this fast */
        assert_int_equal(kw_pg_listen_start(b, &l).code, 0);
        assert_int_equal(kw_pg_listen_start(b, &l).code, KW_ERR_BAD_STATE);
        /* the raw payload, as another listener sees it */
        PGresult *res = PQexec(super, "LISTEN keyward_changes");
        PQclear(res);
        insert_key(f->pg, 1, "k1", "AES", "enabled", NULL);
        assert_true(ev_wait(&ev, has_key_k1, 1000));
        uint8_t h[32];
        memset(h, 7, sizeof h);
        struct kw_token_row t = { .id = "aa01", .name = "tok", .role = "operator" };
        assert_int_equal(kw_pg_token_insert(f->pg, &t, h, NULL).code, 0);
        assert_true(ev_wait(&ev, has_token, 1000));
        assert_int_equal(ev.all, 0);
        assert_int_equal(ev.downs, 0);
        char want[2][64];
        snprintf(want[0], sizeof want[0], "%lld key k1", (long long)gen_now() - 1);
        snprintf(want[1], sizeof want[1], "%lld token aa01", (long long)gen_now());
        for (int i = 0; i < 2; i++) {
                PGnotify *nf = NULL;
                for (int w = 0; w < 100 && nf == NULL; w++) {
                        PQconsumeInput(super);
                        nf = PQnotifies(super);
                        if (nf == NULL)
                                usleep(10000);
                }
                assert_non_null(nf);
                assert_string_equal(nf->relname, "keyward_changes");
                assert_string_equal(nf->extra, want[i]);
                PQfreemem(nf);
        }
        res = PQexec(super, "UNLISTEN *");
        PQclear(res);
        /* a failed mutation sends nothing */
        int n0 = ev.n;
        struct kw_key_row dup = key_row(9, "k1", "AES", "enabled", NULL);
        assert_int_equal(kw_pg_key_insert(f->pg, &dup, blob1, sizeof blob1, NULL).code, KW_ERR_EXISTS);
        usleep(300000);
        pthread_mutex_lock(&ev.mu);
        assert_int_equal(ev.n, n0);
        pthread_mutex_unlock(&ev.mu);
        kw_pg_close(b);   /* stops the listener */
}

static void pgstore_listener_backstop_reports_unannounced_change(void **state)
{
        struct fx *f = *state;
        struct events ev = { .mu = PTHREAD_MUTEX_INITIALIZER };
        struct kw_pg_listener l = { .changed = ev_changed, .state = ev_state, .arg = &ev,
                                    .poll_ms = 100 };
        assert_int_equal(kw_pg_listen_start(f->pg, &l).code, 0);
        usleep(300000);
        assert_int_equal(ev.all, 0);
        sql("UPDATE kw_change SET gen = gen + 1");   /* a change that no NOTIFY announces */
        assert_true(ev_wait(&ev, has_all, 1000));
        pthread_mutex_lock(&ev.mu);
        assert_false(has_rollback(&ev));
        assert_string_equal(ev.name[ev.n - 1], "");
        pthread_mutex_unlock(&ev.mu);
        /* a malformed notification is ALL too */
        int all0 = ev.all;
        sql("NOTIFY keyward_changes, 'garbage'");
        sql("NOTIFY keyward_changes, '12 key bad name'");
        sql("NOTIFY keyward_changes, '12 door k1'");
        usleep(300000);
        pthread_mutex_lock(&ev.mu);
        assert_true(ev.all >= all0 + 3);
        pthread_mutex_unlock(&ev.mu);
}

static void pgstore_listener_reports_a_rolled_back_counter(void **state)
{
        struct fx *f = *state;
        struct events ev = { .mu = PTHREAD_MUTEX_INITIALIZER };
        struct kw_pg_listener l = { .changed = ev_changed, .state = ev_state, .arg = &ev,
                                    .poll_ms = 100 };
        insert_key(f->pg, 1, "k1", "AES", "enabled", NULL);
        assert_int_equal(kw_pg_listen_start(f->pg, &l).code, 0);
        insert_key(f->pg, 2, "k2", "AES", "enabled", NULL);
        insert_key(f->pg, 3, "k3", "AES", "enabled", NULL);
        usleep(400000);     /* polls have read gen 3 */
        pthread_mutex_lock(&ev.mu);
        assert_int_equal(ev.all, 0);
        for (int i = 0; i < ev.n; i++)
                assert_int_equal(ev.kind[i], KW_PG_CHANGE_KEY);
        pthread_mutex_unlock(&ev.mu);
        sql("UPDATE kw_change SET gen = 0");   /* as a restore of an older backup would */
        assert_true(ev_wait(&ev, has_rollback, 1000));
        /* and it goes on from there: the next change is a plain one */
        int n0 = ev.n;
        insert_key(f->pg, 4, "k4", "AES", "enabled", NULL);
        usleep(400000);
        pthread_mutex_lock(&ev.mu);
        assert_int_equal(ev.n, n0 + 1);
        assert_int_equal(ev.kind[n0], KW_PG_CHANGE_KEY);
        assert_string_equal(ev.name[n0], "k4");
        pthread_mutex_unlock(&ev.mu);
}

static void pgstore_listener_and_pool_reconnect(void **state)
{
        struct fx *f = *state;
        struct events ev = { .mu = PTHREAD_MUTEX_INITIALIZER };
        struct kw_pg_listener l = { .changed = ev_changed, .state = ev_state, .arg = &ev,
                                    .poll_ms = 100 };
        assert_int_equal(kw_pg_listen_start(f->pg, &l).code, 0);
        insert_key(f->pg, 1, "before", "AES", "enabled", NULL);
        /* every connection of node-a dies (as at a failover) */
        sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'keywardd/node-a'");
        assert_true(ev_wait(&ev, has_down, 2000));
        assert_true(ev_wait(&ev, has_up_and_all, 3000));
        /* the pool's connections reconnect on their next use */
        struct kw_key_row g;
        memset(&g, 0, sizeof g);
        kw_result r = kw_pg_key_get(f->pg, "before", &g);
        if (!kw_ok(r))
                print_error("after reconnect: %s: %s\n", kw_err_name(r.code), kw_err_detail());
        assert_int_equal(r.code, 0);
        kw_key_row_clear(&g);
        insert_key(f->pg, 2, "after", "AES", "enabled", NULL);
        insert_key(f->pg, 3, "after2", "AES", "enabled", NULL);
        uint64_t gen = 0;
        assert_int_equal(kw_pg_ping(f->pg, &gen).code, 0);
        assert_int_equal(gen, 3);
}

/* ----------------------------------------------------------------- nodes */

struct nodes {
        int n;
        char ids[4][65];
        int64_t age[4], seen[4];
};

static int nodes_cb(const struct kw_node_row *row, void *arg)
{
        struct nodes *ns = arg;
        if (ns->n < 4) {
                snprintf(ns->ids[ns->n], 65, "%s", row->id);
                ns->age[ns->n] = row->age_ms;
                ns->seen[ns->n] = row->seen_ms;
        }
        ns->n++;
        return 0;
}

static void pgstore_nodes_heartbeat_list_forget(void **state)
{
        struct fx *f = *state;
        struct kw_node_row me = { .id = "node-a", .address = "https://10.0.0.1:8443", .version = "0.1.0",
                                  .schema = 1, .state = "ACTIVE", .started_ms = 1234 };
        assert_int_equal(kw_pg_node_heartbeat(f->pg, &me).code, 0);
        struct kw_node_row other = me;
        snprintf(other.id, sizeof other.id, "node-b");
        assert_int_equal(kw_pg_node_heartbeat(f->pg, &other).code, 0);
        assert_int_equal(kw_pg_node_heartbeat(f->pg, &me).code, 0);   /* an upsert */
        int64_t g0 = gen_now();
        struct nodes ns = { 0 };
        unsigned bad = 99;
        assert_int_equal(kw_pg_node_list(f->pg, nodes_cb, &ns, &bad).code, 0);
        assert_int_equal(ns.n, 2);
        assert_int_equal(bad, 0);
        assert_string_equal(ns.ids[0], "node-a");
        assert_true(ns.age[0] >= 0 && ns.age[0] < 5000);
        int64_t db_now = sql_int("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint");
        assert_true(ns.seen[0] <= db_now && ns.seen[0] > db_now - 5000);
        assert_int_equal(gen_now(), g0);   /* heartbeats are not changes */
        /* a forged row is skipped and counted */
        sql("UPDATE nodes SET state = 'DEGRADED' WHERE id = 'node-b'");
        memset(&ns, 0, sizeof ns);
        assert_int_equal(kw_pg_node_list(f->pg, nodes_cb, &ns, &bad).code, 0);
        assert_int_equal(ns.n, 1);
        assert_int_equal(bad, 1);
        /* forget: node-b not seen for a while */
        sql("UPDATE nodes SET seen_ms = seen_ms - 600000 WHERE id = 'node-b'");
        unsigned gone = 0;
        assert_int_equal(kw_pg_node_forget(f->pg, 300000, &gone).code, 0);
        assert_int_equal(gone, 1);
        assert_int_equal(sql_int("SELECT count(*) FROM nodes"), 1);
        struct kw_node_row bad_row = me;
        memset(bad_row.detail, 'x', sizeof bad_row.detail);   /* no NUL */
        assert_int_equal(kw_pg_node_heartbeat(f->pg, &bad_row).code, KW_ERR_BAD_FIELD);
}

static void pgstore_mutation_audit_failure_rolls_back(void **state)
{
        struct fx *f = *state;
        insert_key(f->pg, 1, "k1", "AES", "enabled", NULL);
        int64_t g0 = gen_now(), a0 = audit_rows();
        /* the audit head changed outside keyward: the append refuses, and the
         * whole mutation with it */
        sql("UPDATE audit_head SET hash = decode(repeat('11', 32), 'hex')");
        struct kw_key_row r = key_row(2, "k2", "AES", "enabled", NULL);
        kw_result res = kw_pg_key_insert(f->pg, &r, blob1, sizeof blob1, NULL);
        assert_int_equal(res.code, KW_ERR_DB_TAMPERED);
        assert_int_equal(gen_now(), g0);
        assert_int_equal(audit_rows(), a0);
        assert_int_equal(sql_int("SELECT count(*) FROM keys"), 1);
        assert_int_equal(sql_int("SELECT count(*) FROM key_versions"), 1);
        char id[33];
        make_id(id, 1);
        assert_int_equal(kw_pg_key_destroy(f->pg, id, NULL).code, KW_ERR_DB_TAMPERED);
        struct kw_key_row g;
        memset(&g, 0, sizeof g);
        assert_int_equal(kw_pg_key_get(f->pg, "k1", &g).code, 0);
        assert_string_equal(g.state, "enabled");
        kw_key_row_clear(&g);
}

static void pgstore_mutations_wait_for_the_change_lock_then_time_out(void **state)
{
        (void)state;
        struct kw_pg_options o = opts("node-b", 1);
        o.statement_timeout_ms = 500;
        struct kw_pgstore *b = NULL;
        assert_int_equal(kw_pg_open(&o, &b).code, 0);
        kw_pg_set_mac_key(b, mac_key);
        /* another node's transaction holds kw_change */
        sql("BEGIN");
        sql("UPDATE kw_change SET gen = gen");
        struct kw_key_row r = key_row(1, "k1", "AES", "enabled", NULL);
        kw_result res = kw_pg_key_insert(b, &r, blob1, sizeof blob1, NULL);
        assert_int_equal(res.code, KW_ERR_DB_UNAVAILABLE);
        assert_non_null(strstr(kw_err_detail(), "57014"));
        /* reads do not wait for it */
        uint64_t n = 9;
        assert_int_equal(kw_pg_key_count(b, &n).code, 0);
        assert_int_equal(n, 0);
        sql("ROLLBACK");
        assert_int_equal(kw_pg_key_insert(b, &r, blob1, sizeof blob1, NULL).code, 0);
        kw_pg_close(b);
}

/* Stops the cluster (pg_ctl stop -m fast) or starts it again. */
static void pg_ctl(const char *verb)
{
        const char *ctl = getenv("KW_TEST_PG_CTL");
        assert_non_null(ctl);
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "%s %s >/dev/null 2>&1", ctl, verb);
        assert_int_equal(system(cmd), 0);
}

static int has_two_ups(const struct events *e) { return e->ups > 0 && e->all > 0; }

static void pgstore_database_down_is_unavailable_then_recovers(void **state)
{
        struct fx *f = *state;
        insert_key(f->pg, 1, "k1", "AES", "enabled", NULL);
        struct events ev = { .mu = PTHREAD_MUTEX_INITIALIZER };
        struct kw_pg_listener l = { .changed = ev_changed, .state = ev_state, .arg = &ev,
                                    .poll_ms = 100 };
        assert_int_equal(kw_pg_listen_start(f->pg, &l).code, 0);
        pg_ctl("stop -m fast");
        struct kw_key_row g;
        memset(&g, 0, sizeof g);
        kw_result r = kw_pg_key_get(f->pg, "k1", &g);
        assert_int_equal(r.code, KW_ERR_DB_UNAVAILABLE);
        assert_non_null(strstr(kw_err_detail(), "fleet database"));
        uint64_t gen = 0;
        assert_int_equal(kw_pg_ping(f->pg, &gen).code, KW_ERR_DB_UNAVAILABLE);
        struct kw_key_row k2 = key_row(2, "k2", "AES", "enabled", NULL);
        assert_int_equal(kw_pg_key_insert(f->pg, &k2, blob1, sizeof blob1, NULL).code,
                         KW_ERR_DB_UNAVAILABLE);
        assert_true(ev_wait(&ev, has_down, 2000));
        pg_ctl("start");
        PQreset(super);
        assert_int_equal(PQstatus(super), CONNECTION_OK);
        assert_true(ev_wait(&ev, has_two_ups, 5000));
        r = kw_pg_key_get(f->pg, "k1", &g);
        if (!kw_ok(r))
                print_error("after restart: %s: %s\n", kw_err_name(r.code), kw_err_detail());
        assert_int_equal(r.code, 0);
        kw_key_row_clear(&g);
        assert_int_equal(kw_pg_key_insert(f->pg, &k2, blob1, sizeof blob1, NULL).code, 0);
        assert_int_equal(kw_pg_ping(f->pg, &gen).code, 0);
        assert_int_equal(gen, 2);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
                T(pgstore_open_creates_schema_second_open_is_noop),
                T(pgstore_open_newer_schema_fails_db_version),
                T(pgstore_open_racing_opens_both_succeed),
                T(pgstore_open_password_in_conninfo_fails_config),
                T(pgstore_open_remote_host_without_verify_full_fails_config),
                T(pgstore_open_wrong_port_fails_unavailable),
                T(pgstore_key_insert_get_duplicate_and_invalid),
                T(pgstore_key_list_filters_and_paging),
                T(pgstore_key_list_paging_sees_each_name_once),
                T(pgstore_key_update_writes_mutable_columns),
                T(pgstore_key_versions_destroy_tombstone),
                T(pgstore_due_deletions_lists_due_keys),
                T(pgstore_key_destroy_due_checks_in_tx),
                T(pgstore_token_lifecycle),
                T(pgstore_user_lifecycle_and_lockout),
                T(pgstore_xks_store_insert_rotate_prune_delete),
                T(pgstore_tampered_key_state_is_refused),
                T(pgstore_tampered_swapped_version_blobs_are_refused),
                T(pgstore_tampered_token_role_is_refused),
                T(pgstore_rows_need_the_mac_key),
                T(pgstore_threads_and_two_nodes_share_one_chain),
                T(pgstore_listener_sees_another_nodes_change_within_1s),
                T(pgstore_listener_backstop_reports_unannounced_change),
                T(pgstore_listener_reports_a_rolled_back_counter),
                T(pgstore_listener_and_pool_reconnect),
                T(pgstore_nodes_heartbeat_list_forget),
                T(pgstore_mutation_audit_failure_rolls_back),
                T(pgstore_mutations_wait_for_the_change_lock_then_time_out),
                T(pgstore_database_down_is_unavailable_then_recovers),
#undef T
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
