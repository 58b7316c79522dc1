/* audit_store_test.c - cmocka tests of the audit chain in a real key store
 * file: key uses in batches, admin rows, one chain across both, tampering,
 * the migration of a schema-3 file, retention (read the oldest, prune
 * behind a checkpoint). */
#define SQLITE_HAS_CODEC 1

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "custody/keystore.h"
#include "custody/audit_store_int.h"

static struct kw_secret key_a;

#include "keystore_fixture_test.h"

/* ------------------------------------------------------------- helpers */

static long long raw_int(const char *path, const char *sql)
{
        sqlite3 *db = raw_open(path);
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        long long v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
}

/* Flips one bit of byte `at` of a batch's data. */
static void raw_flip_batch_byte(const char *path, uint64_t first_seq, size_t at)
{
        sqlite3 *db = raw_open(path);
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, "SELECT data FROM audit_batch WHERE first_seq = ?1",
                                            -1, &st, NULL), SQLITE_OK);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)first_seq);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        int n = sqlite3_column_bytes(st, 0);
        assert_true(n > 0 && (size_t)n > at);
        uint8_t *d = malloc((size_t)n);
        assert_non_null(d);
        memcpy(d, sqlite3_column_blob(st, 0), (size_t)n);
        sqlite3_finalize(st);
        d[at] ^= 0x10;
        assert_int_equal(sqlite3_prepare_v2(db, "UPDATE audit_batch SET data = ?2 WHERE first_seq = ?1",
                                            -1, &st, NULL), SQLITE_OK);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)first_seq);
        sqlite3_bind_blob(st, 2, d, n, SQLITE_TRANSIENT);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_finalize(st);
        free(d);
        assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* n key uses: key "k<i % 3>", action xks.encrypt / xks.decrypt, detail
 * "d<tag>-<i>", request id "r<i>", time base + i. */
static void append_uses(struct fx *f, int n, int tag, int64_t base)
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
        kw_result r = kw_keystore_audit_append(f->ks, e, (size_t)n);
        if (!kw_ok(r))
                print_error("append: %s\n", kw_err_detail());
        assert_int_equal(r.code, 0);
        free(e);
        free(k);
        free(d);
        free(rid);
}

/* An admin action's row, through a real mutation. */
static void admin_row(struct fx *f, unsigned n)
{
        struct kw_key_row r;
        memset(&r, 0, sizeof r);
        snprintf(r.id, sizeof r.id, "%032x", n);
        snprintf(r.name, sizeof r.name, "admin-%u", n);
        snprintf(r.type, sizeof r.type, "AES");
        snprintf(r.state, sizeof r.state, "enabled");
        r.size = 256;
        r.ops = 15;
        static const uint8_t blob[] = "sealed";
        struct kw_audit_entry a = { .actor = "token:t(admin)", .action = "key.create",
                                    .key_name = r.name, .result = "ok" };
        assert_int_equal(kw_keystore_key_insert(f->ks, &r, blob, sizeof blob, &a).code, 0);
}

static struct kw_audit_verify verify(struct fx *f)
{
        struct kw_audit_verify v;
        assert_int_equal(kw_keystore_audit_verify_ex(f->ks, &v).code, 0);
        return v;
}

/* Every record as the query shows it, with the chain recomputed here. */
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

/* All records after `after` with the filters, page by page. */
static void query_all(struct fx *f, uint64_t after, const char *key, const char *action,
                      uint32_t page, struct got *g)
{
        memset(g, 0, sizeof *g);
        for (;;) {
                size_t before = g->n;
                assert_int_equal(kw_keystore_audit_query(f->ks, after, page, key, action, got_cb, g).code, 0);
                if (g->n - before < page)
                        return;
                after = g->seq[g->n - 1];
        }
}

/* The query's hashes are the chain, recomputed independently from zero. */
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

/* --------------------------------------------------------------- tests */

/* A flush of 90 records is one row; 8193 records are two batches; admin
 * rows interleave; one chain across all, shown record by record. */
static void audit_store_append_is_one_row_per_batch_one_chain(void **state)
{
        struct fx *f = *state;
        admin_row(f, 1);                                   /* seq 1      */
        append_uses(f, 90, 1, 1700000000000);              /* seq 2..91  */
        admin_row(f, 2);                                   /* seq 92     */
        append_uses(f, 8193, 2, 1700000100000);            /* 93..8285   */
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit_batch"), 3);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit"), 2);
        assert_int_equal(raw_int(f->path, "SELECT last_seq FROM audit_batch WHERE first_seq = 93"),
                         93 + 8191);
        struct kw_audit_verify v = verify(f);
        assert_int_equal(v.first_bad_seq, 0);
        assert_int_equal(v.records, 8285);
        assert_int_equal(v.batches, 3);
        assert_int_equal(v.head_seq, 8285);

        static struct got g;
        query_all(f, 0, NULL, NULL, 1000, &g);
        assert_int_equal(g.n, MAXR);   /* stopped by the collector, pages of 1000 */
        for (size_t i = 0; i < g.n; i++)
                assert_int_equal(g.seq[i], i + 1);
        static const uint8_t zero[32];
        assert_chain_of(&g, zero);
        assert_string_equal(g.f[0][1], "key.create");
        assert_string_equal(g.f[1][4], "d1-0");
        assert_string_equal(g.f[1][5], "r0");
        assert_true(g.ts[2] == 1700000000001);
        assert_string_equal(g.f[91][2], "admin-2");
        /* the last record's hash is the head verify reached */
        static struct got tail;
        query_all(f, 8284, NULL, NULL, 10, &tail);
        assert_int_equal(tail.n, 1);
        char hex[65];
        kw_audit_hex(v.head_hash, 32, hex);
        assert_string_equal(tail.hash[0], hex);
}

static void audit_store_query_filters_and_paging_across_rows_and_batches(void **state)
{
        struct fx *f = *state;
        append_uses(f, 30, 1, 1000);     /* seq 1..30: k0,k1,k2 ...; encrypt at even i */
        admin_row(f, 7);                 /* seq 31: key admin-7 */
        append_uses(f, 30, 2, 2000);     /* seq 32..61 */
        static struct got g;
        /* every page size, every start: the same records in order */
        for (uint32_t page = 1; page <= 8; page += 7) {
                query_all(f, 0, NULL, NULL, page, &g);
                assert_int_equal(g.n, 61);
                for (size_t i = 0; i < g.n; i++)
                        assert_int_equal(g.seq[i], i + 1);
        }
        query_all(f, 17, NULL, NULL, 5, &g);   /* after, in the middle of a batch */
        assert_int_equal(g.n, 44);
        assert_int_equal(g.seq[0], 18);
        query_all(f, 0, "k1", NULL, 4, &g);
        assert_int_equal(g.n, 20);
        for (size_t i = 0; i < g.n; i++)
                assert_string_equal(g.f[i][2], "k1");
        query_all(f, 0, "admin-7", NULL, 100, &g);
        assert_int_equal(g.n, 1);
        assert_int_equal(g.seq[0], 31);
        query_all(f, 0, NULL, "key.create", 100, &g);
        assert_int_equal(g.n, 1);
        query_all(f, 0, NULL, "xks.decrypt", 100, &g);
        assert_int_equal(g.n, 30);
        /* both: k0 at i % 3 == 0, encrypt at even i: i = 0, 6, 12, 18, 24 per batch */
        query_all(f, 10, "k0", "xks.encrypt", 3, &g);
        assert_int_equal(g.n, 8);
        assert_int_equal(g.seq[0], 13);
        assert_int_equal(g.seq[3], 32);
        assert_int_equal(g.seq[7], 56);
        query_all(f, 0, "nope", NULL, 100, &g);
        assert_int_equal(g.n, 0);
        query_all(f, 61, NULL, NULL, 100, &g);
        assert_int_equal(g.n, 0);
        assert_int_equal(kw_keystore_audit_query(f->ks, 0, 1001, NULL, NULL, got_cb, &g).code,
                         KW_ERR_BAD_FIELD);
}

/* One changed byte of a batch: verify names the batch (its first seq and
 * range); so does a batch rewritten with other records, a deleted batch
 * (the next seq), a wrong stored time range and a broken link. */
static void audit_store_verify_names_a_tampered_batch(void **state)
{
        struct fx *f = *state;
        append_uses(f, 10, 1, 1000);    /* 1..10  */
        append_uses(f, 10, 2, 2000);    /* 11..20 */
        append_uses(f, 10, 3, 3000);    /* 21..30 */
        assert_int_equal(verify(f).first_bad_seq, 0);
        long long len = raw_int(f->path, "SELECT length(data) FROM audit_batch WHERE first_seq = 11");
        for (size_t at = 0; at < (size_t)len; at += 7) {
                raw_flip_batch_byte(f->path, 11, at);
                struct kw_audit_verify v = verify(f);
                if (v.first_bad_seq == 0 && at == (size_t)len - 5)
                        ; /* deflate padding: records unchanged (audit_codec_test.c) */
                else {
                        assert_int_equal(v.first_bad_seq, 11);
                        assert_int_equal(v.bad_last_seq, 20);
                        assert_true(v.bad_is_batch);
                        assert_int_equal(v.records, 20);
                        assert_true(v.why[0] != '\0');
                }
                raw_flip_batch_byte(f->path, 11, at);   /* back */
        }
        assert_int_equal(verify(f).first_bad_seq, 0);
        /* a batch whose records were replaced by others, re-encoded well */
        raw_exec(f->path, "CREATE TABLE saved AS SELECT * FROM audit_batch WHERE first_seq = 11;"
                          "UPDATE audit_batch SET data = (SELECT data FROM audit_batch WHERE first_seq = 21)"
                          " WHERE first_seq = 11;");
        struct kw_audit_verify v = verify(f);
        assert_int_equal(v.first_bad_seq, 11);
        assert_string_equal(v.why, "its records do not hash to its stored hash");
        raw_exec(f->path, "UPDATE audit_batch SET data = (SELECT data FROM saved) WHERE first_seq = 11;"
                          "UPDATE audit_batch SET max_ts_ms = max_ts_ms + 1 WHERE first_seq = 11;");
        assert_int_equal(verify(f).first_bad_seq, 11);
        raw_exec(f->path, "UPDATE audit_batch SET max_ts_ms = max_ts_ms - 1 WHERE first_seq = 11;"
                          "UPDATE audit_batch SET prev_hash = zeroblob(32) WHERE first_seq = 21;");
        assert_int_equal(verify(f).first_bad_seq, 21);
        raw_exec(f->path, "UPDATE audit_batch SET prev_hash = (SELECT hash FROM saved) WHERE first_seq = 21;");
        assert_int_equal(verify(f).first_bad_seq, 0);
        raw_exec(f->path, "DELETE FROM audit_batch WHERE first_seq = 11;");
        v = verify(f);
        assert_int_equal(v.first_bad_seq, 21);   /* the seq after the gap, as for rows */
        assert_false(v.bad_is_batch == 0);
        raw_exec(f->path, "INSERT INTO audit_batch SELECT * FROM saved; DROP TABLE saved;");
        assert_int_equal(verify(f).first_bad_seq, 0);
        /* the query shows the batch's records still; a batch that cannot be
         * decoded is a query error that says where */
        raw_flip_batch_byte(f->path, 11, 3);
        static struct got g;
        memset(&g, 0, sizeof g);
        assert_int_equal(kw_keystore_audit_query(f->ks, 0, 100, NULL, NULL, got_cb, &g).code,
                         KW_ERR_DB_CORRUPT);
        assert_non_null(strstr(kw_err_detail(), "11-20"));
        query_all(f, 20, NULL, NULL, 100, &g);
        assert_int_equal(g.n, 10);
}

/* A file written by schema 3 (tests/fixtures/keystore-v3.db, made by
 * tests/fixtures/keystore-v3.c): migrated to 4, its rows are shown as
 * before with their stored hashes and keep verifying; new batches continue
 * the same chain; a changed old row is still found. */
static void audit_store_migrates_a_schema_3_file(void **state)
{
        struct fx *f = *state;
        const char *src = getenv("KW_SRCDIR") ? getenv("KW_SRCDIR") : ".";
        char fixture[4096], cmd[8400];
        snprintf(fixture, sizeof fixture, "%s/tests/fixtures/keystore-v3.db", src);
        assert_int_equal(access(fixture, R_OK), 0);
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", fixture, f->path);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 3);
        static char stored[303][65];
        {
                sqlite3 *db = raw_open(f->path);
                sqlite3_stmt *st = NULL;
                assert_int_equal(sqlite3_prepare_v2(db, "SELECT lower(hex(hash)) FROM audit ORDER BY seq",
                                                    -1, &st, NULL), SQLITE_OK);
                for (int i = 0; i < 303; i++) {
                        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
                        snprintf(stored[i], 65, "%s", (const char *)sqlite3_column_text(st, 0));
                }
                sqlite3_finalize(st);
                sqlite3_close(db);
        }
        ks_open_ok(f);
        assert_int_equal(kw_keystore_schema_version(f->ks), KW_SCHEMA_VERSION);
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), KW_SCHEMA_VERSION);
        struct kw_audit_verify v = verify(f);
        assert_int_equal(v.first_bad_seq, 0);
        assert_int_equal(v.records, 303);
        static struct got g;
        query_all(f, 0, NULL, NULL, 1000, &g);
        assert_int_equal(g.n, 303);
        for (int i = 0; i < 303; i++)
                assert_string_equal(g.hash[i], stored[i]);
        /* row 3 + i is the generator's key use i */
        for (int i = 0; i < 300; i++) {
                char want[40];
                assert_int_equal(g.seq[2 + i], 3 + (uint64_t)i);
                assert_true(g.ts[2 + i] == 1700000000000 + 10 * i);
                assert_string_equal(g.f[2 + i][0], i % 7 == 0 ? "" : "xks:default:AKIAKEYWARDTESTAAAAA");
                assert_string_equal(g.f[2 + i][1], i % 2 ? "xks.decrypt" : "xks.encrypt");
                assert_string_equal(g.f[2 + i][2], i % 3 == 2 ? "other" : "legacy-key");
                snprintf(want, sizeof want, "00000000-0000-4000-8000-%012d", i);
                assert_string_equal(g.f[2 + i][5], want);
        }
        /* the old indexes still filter the old rows */
        query_all(f, 0, "other", NULL, 1000, &g);
        assert_int_equal(g.n, 100);
        append_uses(f, 50, 1, 1800000000000);
        admin_row(f, 9);
        ks_reopen(f);
        v = verify(f);
        assert_int_equal(v.first_bad_seq, 0);
        assert_int_equal(v.records, 354);
        query_all(f, 300, NULL, NULL, 7, &g);
        assert_int_equal(g.n, 54);
        assert_int_equal(g.seq[3], 304);
        assert_string_equal(g.f[3][4], "d1-0");
        raw_exec(f->path, "UPDATE audit SET result = 'ok' WHERE seq = 14");  /* was KEY_NOT_FOUND */
        v = verify(f);
        assert_int_equal(v.first_bad_seq, 14);
        assert_false(v.bad_is_batch);
}

struct sink {
        size_t n;
        uint64_t last_seq;
        char last_hash[65];
};

static int sink_cb(const struct kw_audit_row *row, void *arg)
{
        struct sink *s = arg;
        assert_int_equal(row->seq, s->last_seq + 1);
        s->last_seq = row->seq;
        snprintf(s->last_hash, sizeof s->last_hash, "%s", row->hash_hex);
        s->n++;
        return 0;
}

static kw_result prune_through(struct fx *f, const struct kw_audit_range *rg, uint64_t *n)
{
        struct kw_audit_entry a = { .actor = "custody", .action = "audit.prune", .result = "ok" };
        struct kw_audit_prune p = { .through_seq = rg->last_seq, .through_ts_ms = rg->last_ts_ms,
                                    .export_file = "test.jsonl.gz", .audit = &a };
        memcpy(p.through_hash, rg->last_hash, 32);
        return kw_keystore_audit_prune(f->ks, &p, n);
}

/* Read the oldest whole units, prune behind a checkpoint: verification
 * starts there, the query shows what remains, nothing is pruned against a
 * hash that was not exported, and it all survives a reopen. */
static void audit_store_prune_behind_checkpoint_keeps_verification(void **state)
{
        struct fx *f = *state;
        admin_row(f, 1);                      /* 1       */
        append_uses(f, 20, 1, 1000);          /* 2..21   */
        append_uses(f, 20, 2, 2000);          /* 22..41  */
        admin_row(f, 2);                      /* 42      */
        append_uses(f, 20, 3, 3000);          /* 43..62  */
        struct kw_audit_select sel = { .min_records = 25, .max_records = 1000 };
        struct sink s = { 0 };
        struct kw_audit_range rg;
        assert_int_equal(kw_keystore_audit_read_oldest(f->ks, &sel, sink_cb, &s, &rg).code, 0);
        /* whole units: the row, the first batch, then the second (21 < 25) */
        assert_int_equal(rg.first_seq, 1);
        assert_int_equal(rg.last_seq, 41);
        assert_int_equal(rg.records, 41);
        assert_int_equal(s.n, 41);
        char hex[65];
        kw_audit_hex(rg.last_hash, 32, hex);
        assert_string_equal(hex, s.last_hash);
        static const uint8_t zero[32];
        assert_memory_equal(rg.prev_hash, zero, 32);

        /* a wrong hash, or a seq that is not a unit's end: nothing pruned */
        uint64_t n = 0;
        struct kw_audit_range bad = rg;
        bad.last_hash[0] ^= 1;
        assert_int_equal(prune_through(f, &bad, &n).code, KW_ERR_BAD_STATE);
        bad = rg;
        bad.last_seq = 40;
        assert_int_equal(prune_through(f, &bad, &n).code, KW_ERR_BAD_STATE);
        assert_int_equal(verify(f).records, 62);

        assert_int_equal(prune_through(f, &rg, &n).code, 0);
        assert_int_equal(n, 41);
        assert_int_equal(prune_through(f, &rg, &n).code, KW_ERR_BAD_STATE);   /* once */
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit_batch_name WHERE first_seq <= 41"), 0);
        struct kw_audit_verify v = verify(f);
        assert_int_equal(v.first_bad_seq, 0);
        assert_int_equal(v.start_seq, 41);
        assert_memory_equal(v.start_hash, rg.last_hash, 32);
        assert_int_equal(v.records, 22);      /* 42..62 and the prune's own row */
        static struct got g;
        query_all(f, 0, NULL, NULL, 100, &g);
        assert_int_equal(g.n, 22);
        assert_int_equal(g.seq[0], 42);
        assert_string_equal(g.f[21][1], "audit.prune");
        assert_chain_of(&g, rg.last_hash);
        query_all(f, 0, "k1", NULL, 100, &g);
        assert_int_equal(g.n, 7);
        struct kw_audit_stats st;
        assert_int_equal(kw_keystore_audit_stats(f->ks, &st).code, 0);
        assert_int_equal(st.first_seq, 42);
        assert_int_equal(st.last_seq, 63);
        assert_int_equal(st.records, 22);
        assert_int_equal(st.checkpoints, 1);
        assert_int_equal(st.checkpoint_seq, 41);
        assert_true(st.oldest_ts_ms > 1600000000000);   /* admin row 2: now */
        assert_true(st.db_bytes > 0 && st.db_file_bytes + st.wal_bytes > 0);

        /* everything: the checkpoint holds the head, appends continue it */
        sel = (struct kw_audit_select){ .min_records = UINT64_MAX, .max_records = 1000 };
        memset(&s, 0, sizeof s);
        s.last_seq = 41;
        assert_int_equal(kw_keystore_audit_read_oldest(f->ks, &sel, sink_cb, &s, &rg).code, 0);
        assert_int_equal(rg.first_seq, 42);
        assert_int_equal(rg.last_seq, 63);
        assert_int_equal(prune_through(f, &rg, &n).code, 0);
        ks_reopen(f);
        append_uses(f, 5, 4, 4000);
        v = verify(f);
        assert_int_equal(v.first_bad_seq, 0);
        assert_int_equal(v.start_seq, 63);
        assert_int_equal(v.records, 6);       /* the second prune's row, then 5 uses */
        assert_int_equal(v.head_seq, 69);
        /* the checkpoint is where verification starts: removing it shows */
        raw_exec(f->path, "DELETE FROM audit_checkpoint WHERE seq = 63");
        v = verify(f);
        assert_int_equal(v.first_bad_seq, 64);
        /* nothing to read: an empty range */
        raw_exec(f->path, "DELETE FROM audit; DELETE FROM audit_batch;");
        sel.min_records = 10;
        memset(&s, 0, sizeof s);
        assert_int_equal(kw_keystore_audit_read_oldest(f->ks, &sel, sink_cb, &s, &rg).code, 0);
        assert_int_equal(rg.records, 0);
}

/* By age: the units whose records are all older than the cut. */
static void audit_store_read_oldest_by_age_and_cap(void **state)
{
        struct fx *f = *state;
        append_uses(f, 10, 1, 1000);      /* 1..10, ts 1000..1009 */
        append_uses(f, 10, 2, 2000);      /* 11..20 */
        append_uses(f, 10, 3, 3000);      /* 21..30 */
        struct kw_audit_select sel = { .before_ts_ms = 2009, .max_records = 1000 };
        struct sink s = { 0 };
        struct kw_audit_range rg;
        assert_int_equal(kw_keystore_audit_read_oldest(f->ks, &sel, sink_cb, &s, &rg).code, 0);
        assert_int_equal(rg.last_seq, 10);   /* 2009 is in the second batch */
        sel.before_ts_ms = 2010;
        memset(&s, 0, sizeof s);
        assert_int_equal(kw_keystore_audit_read_oldest(f->ks, &sel, sink_cb, &s, &rg).code, 0);
        assert_int_equal(rg.last_seq, 20);
        assert_true(rg.first_ts_ms == 1000 && rg.last_ts_ms == 2009);
        sel.max_records = 15;                /* whole units: one batch only */
        memset(&s, 0, sizeof s);
        assert_int_equal(kw_keystore_audit_read_oldest(f->ks, &sel, sink_cb, &s, &rg).code, 0);
        assert_int_equal(rg.last_seq, 10);
        sel.max_records = 5;                 /* never part of a unit: nothing */
        memset(&s, 0, sizeof s);
        assert_int_equal(kw_keystore_audit_read_oldest(f->ks, &sel, sink_cb, &s, &rg).code, 0);
        assert_int_equal(rg.records, 0);
        assert_int_equal(s.n, 0);
        sel = (struct kw_audit_select){ .before_ts_ms = 1000, .max_records = 100 };
        memset(&s, 0, sizeof s);
        assert_int_equal(kw_keystore_audit_read_oldest(f->ks, &sel, sink_cb, &s, &rg).code, 0);
        assert_int_equal(rg.records, 0);
}

/* Nothing past a record that does not verify is handed out for export, so
 * nothing there can be pruned. */
static void audit_store_read_oldest_stops_at_a_broken_chain(void **state)
{
        struct fx *f = *state;
        append_uses(f, 10, 1, 1000);
        append_uses(f, 10, 2, 2000);
        raw_flip_batch_byte(f->path, 11, 3);
        struct kw_audit_select sel = { .min_records = 5, .max_records = 100 };
        struct sink s = { 0 };
        struct kw_audit_range rg;
        assert_int_equal(kw_keystore_audit_read_oldest(f->ks, &sel, sink_cb, &s, &rg).code, 0);
        assert_int_equal(rg.last_seq, 10);      /* the intact batch is fine */
        sel.min_records = 15;
        memset(&s, 0, sizeof s);
        assert_int_equal(kw_keystore_audit_read_oldest(f->ks, &sel, sink_cb, &s, &rg).code,
                         KW_ERR_DB_CORRUPT);
        assert_non_null(strstr(kw_err_detail(), "seq 11"));
}

/* ------------------------------------------------ console filters (issue 14) */

/* Every record matching *flt, page by page: ascending with after, or
 * descending with before = the smallest seq of the page before. */
static void query_filter_all(struct fx *f, struct kw_audit_filter flt, struct got *g)
{
        memset(g, 0, sizeof *g);
        for (;;) {
                size_t before = g->n;
                assert_int_equal(kw_keystore_audit_query_filter(f->ks, &flt, got_cb, g).code, 0);
                if (g->n - before < flt.limit)
                        return;
                if (flt.desc)
                        flt.before = g->seq[g->n - 1];
                else
                        flt.after = g->seq[g->n - 1];
        }
}

/* seq 1..10 key uses (ts 1000..1009), 11 an admin row, 12..21 key uses
 * (ts 2000..2009), 22 an admin row. */
static void filter_fixture(struct fx *f)
{
        append_uses(f, 10, 0, 1000);
        admin_row(f, 1);
        append_uses(f, 10, 1, 2000);
        admin_row(f, 2);
}

static void audit_store_query_filter_actor_prefix_over_rows_and_batches(void **state)
{
        struct fx *f = *state;
        filter_fixture(f);
        static struct got g;
        query_filter_all(f, (struct kw_audit_filter){ .limit = 7, .actor_prefix = "xks:" }, &g);
        assert_int_equal(g.n, 20);
        for (size_t i = 0; i < g.n; i++)
                assert_string_equal(g.f[i][0], "xks:default:AKIA");
        query_filter_all(f, (struct kw_audit_filter){ .limit = 7, .actor_prefix = "token:t" }, &g);
        assert_int_equal(g.n, 2);
        assert_true(g.seq[0] == 11 && g.seq[1] == 22);
        query_filter_all(f, (struct kw_audit_filter){ .limit = 7, .actor_prefix = "xks:default:AKIB" }, &g);
        assert_int_equal(g.n, 0);
        /* with a key: through the name index, the actor checked record by record */
        query_filter_all(f, (struct kw_audit_filter){ .limit = 3, .actor_prefix = "xks:d",
                                                      .key_name = "k0" }, &g);
        assert_int_equal(g.n, 8);   /* i % 3 == 0 of 0..9, twice */
}

static void audit_store_query_filter_time_range(void **state)
{
        struct fx *f = *state;
        filter_fixture(f);
        static struct got g;
        query_filter_all(f, (struct kw_audit_filter){ .limit = 4, .since_ms = 1005, .until_ms = 2003 }, &g);
        assert_int_equal(g.n, 8);   /* ts 1005..1009 and 2000..2002; the admin rows are now */
        static const uint64_t want[] = { 6, 7, 8, 9, 10, 12, 13, 14 };
        for (size_t i = 0; i < g.n; i++)
                assert_int_equal(g.seq[i], want[i]);
        /* a batch wholly outside the range is not even decoded: same answer */
        query_filter_all(f, (struct kw_audit_filter){ .limit = 100, .since_ms = 2005 }, &g);
        assert_int_equal(g.n, 5 + 2);   /* 2005..2009 and both admin rows (now) */
        query_filter_all(f, (struct kw_audit_filter){ .limit = 100, .until_ms = 1000 }, &g);
        assert_int_equal(g.n, 0);
}

static void audit_store_query_filter_desc_paging(void **state)
{
        struct fx *f = *state;
        filter_fixture(f);
        static struct got g;
        query_filter_all(f, (struct kw_audit_filter){ .limit = 3, .desc = 1 }, &g);
        assert_int_equal(g.n, 22);
        for (size_t i = 0; i < g.n; i++)
                assert_int_equal(g.seq[i], 22 - i);
        /* the hashes are those of the ascending query */
        static struct got a;
        query_all(f, 0, NULL, NULL, 100, &a);
        assert_int_equal(a.n, 22);
        for (size_t i = 0; i < g.n; i++)
                assert_string_equal(g.hash[i], a.hash[21 - i]);
        /* desc with filters and a starting bound */
        query_filter_all(f, (struct kw_audit_filter){ .limit = 2, .desc = 1, .before = 20,
                                                      .action = "xks.encrypt", .since_ms = 1004 }, &g);
        static const uint64_t want[] = { 18, 16, 14, 12, 9, 7, 5 };
        assert_int_equal(g.n, 7);
        for (size_t i = 0; i < g.n; i++)
                assert_int_equal(g.seq[i], want[i]);
        /* after and before together: a window */
        query_filter_all(f, (struct kw_audit_filter){ .limit = 100, .after = 9, .before = 13 }, &g);
        assert_int_equal(g.n, 3);
        assert_true(g.seq[0] == 10 && g.seq[1] == 11 && g.seq[2] == 12);
}

static void audit_store_query_filter_sql_and_bad_values(void **state)
{
        struct fx *f = *state;
        char sql[640];
        struct kw_audit_filter all = { .key_name = "k", .action = "a", .actor_prefix = "u:",
                                       .since_ms = 1, .until_ms = 2, .desc = 1 };
        assert_int_equal(as_query_sql(&all, 0, sql, sizeof sql), 0);
        assert_non_null(strstr(sql, "WHERE seq > ?1 AND seq < ?2 AND key_name = ?3 AND action = ?4"
                                    " AND actor >= ?5 AND actor < ?6 AND ts_ms >= ?7 AND ts_ms < ?8"
                                    " ORDER BY seq DESC"));
        assert_int_equal(as_query_sql(&all, 1, sql, sizeof sql), 0);
        assert_non_null(strstr(sql, "FROM audit_batch_name n JOIN audit_batch b ON b.first_seq = "
                                    "n.first_seq WHERE n.name = ?3 AND b.first_seq >= ?1 AND "
                                    "b.first_seq < ?2 AND b.max_ts_ms >= ?7 AND b.min_ts_ms < ?8 "
                                    "ORDER BY b.first_seq DESC"));
        struct kw_audit_filter none = { 0 };
        assert_int_equal(as_query_sql(&none, 1, sql, sizeof sql), 0);
        assert_non_null(strstr(sql, "FROM audit_batch WHERE first_seq >= ?1 AND first_seq < ?2 "
                                    "ORDER BY first_seq"));
        assert_null(strstr(sql, "DESC"));
        assert_int_equal(as_query_sql(&all, 0, sql, 40), -1);
        /* out of range: nothing called back */
        static struct got g;
        memset(&g, 0, sizeof g);
        const char *bad_actor[] = { "", "a\001b", "\x7f" };
        for (size_t i = 0; i < 3; i++)
                assert_int_equal(kw_keystore_audit_query_filter(
                                         f->ks, &(struct kw_audit_filter){ .actor_prefix = bad_actor[i] },
                                         got_cb, &g).code,
                                 KW_ERR_BAD_FIELD);
        assert_int_equal(kw_keystore_audit_query_filter(f->ks, &(struct kw_audit_filter){ .limit = 1001 },
                                                        got_cb, &g).code, KW_ERR_BAD_FIELD);
        assert_int_equal(kw_keystore_audit_query_filter(f->ks, &(struct kw_audit_filter){ .since_ms = -1 },
                                                        got_cb, &g).code, KW_ERR_BAD_FIELD);
        assert_int_equal(g.n, 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
                T(audit_store_append_is_one_row_per_batch_one_chain),
                T(audit_store_query_filters_and_paging_across_rows_and_batches),
                T(audit_store_verify_names_a_tampered_batch),
                cmocka_unit_test_setup_teardown(audit_store_migrates_a_schema_3_file, setup_dir,
                                                teardown),
                T(audit_store_prune_behind_checkpoint_keeps_verification),
                T(audit_store_read_oldest_by_age_and_cap),
                T(audit_store_read_oldest_stops_at_a_broken_chain),
                T(audit_store_query_filter_actor_prefix_over_rows_and_batches),
                T(audit_store_query_filter_time_range),
                T(audit_store_query_filter_desc_paging),
                T(audit_store_query_filter_sql_and_bad_values),
#undef T
        };
        return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
