/*
 * pgstore_audit_read.c - the audit chain on PostgreSQL (fleet mode), its
 * reads and its prune: kw_pg_audit_query_filter, kw_pg_audit_verify_ex,
 * kw_pg_audit_stats, kw_pg_audit_read_oldest and kw_pg_audit_prune
 * (contract of audit_store.h, pgstore.h).  Moved out of pgstore_audit.c,
 * which appends and says how the chain is anchored (its head's and
 * checkpoints' row MACs); the head is read through pgstore_int.h
 * (pg_audit_head_read).
 *
 * Reads (query, verify, stats, read_oldest) run in one REPEATABLE READ
 * READ ONLY transaction: one snapshot, never blocking an append.  Admin
 * rows and batches are read as two streams paged by their primary key
 * (LIMIT, keyset) and merged by seq here, as audit_store.c merges two
 * statements.
 *
 * Choices made here:
 *   - read_oldest checks, like audit_read.c, the chain from the newest
 *     checkpoint (MAC checked) through what it hands out, and the head too
 *     when it reads to the end; a rewritten prefix that is not read to the
 *     end is found by verify (the link after it, or the head), not here:
 *     reading the whole chain for each export chunk would cost a full
 *     verify per chunk;
 *   - prune runs in READ COMMITTED under pg_advisory_xact_lock(
 *     PG_AUDIT_PRUNE_LOCK), so two nodes' retention never prune at once and
 *     the second, once it holds the lock, sees the first one's checkpoint
 *     (KW_ERR_BAD_STATE); it does not bump kw_change.gen: nothing any node
 *     caches changes, and a bump without a NOTIFY would make every node
 *     drop its caches (KW_PG_CHANGE_ALL).  Lock order: the advisory lock,
 *     then audit_head (pg_tx_audit, last).
 * Nothing here logs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "../common/json_io.h"
#include "audit_logic.h"
#include "pgstore_int.h"

#define LIST_MAX 1000u
#define LIST_DEFAULT 100u
#define ROWS_PAGE 256                    /* admin rows a round trip               */
#define BATCHES_PAGE 16                  /* batches a round trip (each <= 16 MiB) */
/* pg_advisory_xact_lock key of a prune: "kwaudit" in ASCII */
#define PG_AUDIT_PRUNE_LOCK 0x6b776175646974LL

#define HLEN PG_HASH_LEN

static const uint8_t zero_hash[HLEN];

/* ------------------------------------------------------------------ SQL */

#define CHECKPOINT_COLS "seq, hash, ts_ms, created_ms, records, export_file, export_sha256, mac"
#define SQL_CHECKPOINT \
        "SELECT " CHECKPOINT_COLS " FROM audit_checkpoint ORDER BY seq DESC LIMIT 1"
#define SQL_CHECKPOINT_INSERT \
        "INSERT INTO audit_checkpoint (" CHECKPOINT_COLS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
#define ROW_COLS "seq, ts_ms, actor, action, key_name, result, detail, request_id, prev_hash, hash"
#define BATCH_COLS "b.first_seq, b.last_seq, b.min_ts_ms, b.max_ts_ms, b.prev_hash, b.hash, b.data"
/* The names of deleted batches: the distinct names found by skipping from
 * name to name (a loose index scan), then for each its index range up to
 * $1 (OFFSET 0 keeps the planner from turning that into a scan of the
 * whole table), deleted by ctid. */
#define SQL_PRUNE_NAMES                                                                   \
        "WITH RECURSIVE n(name) AS (SELECT min(name) FROM audit_batch_name"                \
        " UNION ALL SELECT (SELECT min(name) FROM audit_batch_name WHERE name > n.name)"  \
        " FROM n WHERE n.name IS NOT NULL)"                                               \
        " DELETE FROM audit_batch_name WHERE ctid = ANY (ARRAY(SELECT x.ctid FROM n"      \
        " CROSS JOIN LATERAL (SELECT b.ctid FROM audit_batch_name b WHERE b.name = n.name" \
        " AND b.first_seq <= $1 OFFSET 0) x))"

/* ---------------------------------------------------------------- helpers */

/* A bytea column of exactly HLEN bytes, or NULL. */
static const uint8_t *col_hash(const PGresult *res, int row, int col)
{
        const uint8_t *p = NULL;
        size_t n = 0;
        if (!kw_ok(pg_col_bytes(res, row, col, &p, &n)) || p == NULL || n != HLEN)
                return NULL;
        return p;
}

/* A text column in place (binary results end with a NUL too); "" for NULL. */
static const char *col_str(const PGresult *res, int row, int col, size_t *ret_len)
{
        if (PQgetisnull(res, row, col)) {
                *ret_len = 0;
                return "";
        }
        int n = PQgetlength(res, row, col);
        *ret_len = n > 0 ? (size_t)n : 0;
        return PQgetvalue(res, row, col);
}

static int64_t clamp_i64(uint64_t v)
{
        return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
}

/* ------------------------------------------------------------------ units */

/* One storage unit, its columns valid until the next units_next. */
struct unit {
        int is_batch;
        uint64_t first, last;
        int64_t min_ts, max_ts;
        const uint8_t *prev, *hash;  /* NULL when not HLEN bytes */
        const uint8_t *data;         /* batch */
        size_t data_len;
        struct kw_audit_rec rec;     /* admin row */
};

/* One table read page by page in seq order (keyset: $1 is the last seq
 * read, the other parameters are the filter's). */
struct stream {
        int is_batch, desc, page;
        char sql[1024];
        struct pg_params p;
        int64_t cursor;
        PGresult *res;
        int i, n, done;
};

struct units {
        struct stream s[2];          /* 0 admin rows, 1 batches */
        int desc;
};

static kw_result stream_fill(struct kw_pgstore *pg, struct pg_conn *c, struct stream *s)
{
        if (s->i < s->n || s->done)
                return KW_OK;
        pg_clearp(&s->res);
        s->i = s->n = 0;
        int saved = s->p.n;
        s->p.n = 0;
        pg_param_i64(&s->p, s->cursor);
        s->p.n = saved;
        KW_TRY(pg_exec(pg, c, s->sql, &s->p, "audit read", &s->res));
        s->n = PQntuples(s->res);
        s->done = s->n < s->page;
        return KW_OK;
}

static kw_result unit_of_row(const PGresult *res, int i, struct unit *u)
{
        int64_t seq = 0, ts = 0;
        KW_TRY(pg_col_i64(res, i, 0, &seq));
        KW_TRY(pg_col_i64(res, i, 1, &ts));
        u->first = u->last = (uint64_t)seq;
        u->min_ts = u->max_ts = ts;
        u->rec.ts_ms = ts;
        for (int k = 0; k < KW_AUDIT_FIELDS; k++)
                u->rec.f[k] = col_str(res, i, 2 + k, &u->rec.flen[k]);
        u->prev = col_hash(res, i, 8);
        u->hash = col_hash(res, i, 9);
        return KW_OK;
}

static kw_result unit_of_batch(const PGresult *res, int i, struct unit *u)
{
        int64_t first = 0, last = 0;
        KW_TRY(pg_col_i64(res, i, 0, &first));
        KW_TRY(pg_col_i64(res, i, 1, &last));
        KW_TRY(pg_col_i64(res, i, 2, &u->min_ts));
        KW_TRY(pg_col_i64(res, i, 3, &u->max_ts));
        u->is_batch = 1;
        u->first = (uint64_t)first;
        u->last = (uint64_t)last;
        u->prev = col_hash(res, i, 4);
        u->hash = col_hash(res, i, 5);
        KW_TRY(pg_col_bytes(res, i, 6, &u->data, &u->data_len));
        if (u->data == NULL)
                u->data_len = 0;
        return KW_OK;
}

/* The next unit by seq (the highest first with desc); *ret_have = 0 at the
 * end.  Ties (only in a tampered database) go to the batch, as
 * audit_store.c. */
static kw_result units_next(struct kw_pgstore *pg, struct pg_conn *c, struct units *it,
                            struct unit *u, int *ret_have)
{
        struct stream *rows = &it->s[0], *batches = &it->s[1];
        KW_TRY(stream_fill(pg, c, rows));
        KW_TRY(stream_fill(pg, c, batches));
        int row_pending = rows->i < rows->n, batch_pending = batches->i < batches->n;
        *ret_have = row_pending || batch_pending;
        if (!*ret_have)
                return KW_OK;
        int take_row = row_pending;
        if (row_pending && batch_pending) {
                int64_t r = 0, b = 0;
                KW_TRY(pg_col_i64(rows->res, rows->i, 0, &r));
                KW_TRY(pg_col_i64(batches->res, batches->i, 0, &b));
                take_row = it->desc ? r > b : r < b;
        }
        memset(u, 0, sizeof *u);
        struct stream *s = take_row ? rows : batches;
        KW_TRY(take_row ? unit_of_row(s->res, s->i, u) : unit_of_batch(s->res, s->i, u));
        s->cursor = (int64_t)u->first;
        s->i++;
        return KW_OK;
}

static void units_free(struct units *it)
{
        for (int i = 0; i < 2; i++)
                pg_clearp(&it->s[i].res);
        memset(it, 0, sizeof *it);
}

/* Every unit from the beginning, in seq order (units at or below a
 * checkpoint included: verify flags them). */
static void units_all(struct units *it)
{
        memset(it, 0, sizeof *it);
        snprintf(it->s[0].sql, sizeof it->s[0].sql,
                 "SELECT " ROW_COLS " FROM audit WHERE seq > $1 ORDER BY seq LIMIT %d", ROWS_PAGE);
        snprintf(it->s[1].sql, sizeof it->s[1].sql,
                 "SELECT " BATCH_COLS " FROM audit_batch b WHERE b.first_seq > $1"
                 " ORDER BY b.first_seq LIMIT %d", BATCHES_PAGE);
        for (int i = 0; i < 2; i++) {
                it->s[i].is_batch = i;
                it->s[i].page = i ? BATCHES_PAGE : ROWS_PAGE;
                it->s[i].cursor = INT64_MIN;
                it->s[i].p.n = 1;   /* $1, the cursor: set by stream_fill */
        }
}

/* The records of a unit: one from the row's columns, or the decoded batch. */
struct unit_recs {
        struct kw_audit_batch batch;
        const struct kw_audit_rec *recs;
        size_t n;
};

static kw_result unit_records(const struct unit *u, struct unit_recs *ur)
{
        kw_audit_batch_clear(&ur->batch);
        if (!u->is_batch) {
                ur->recs = &u->rec;
                ur->n = 1;
                return KW_OK;
        }
        KW_TRY(kw_audit_batch_decode(u->data, u->data_len, &ur->batch));
        ur->recs = ur->batch.recs;
        ur->n = ur->batch.n;
        return KW_OK;
}

/* Checks u against the chain at (expect, prev) exactly as audit_store.c's
 * as_unit_check: *why = NULL when it holds (ret_head = its last hash),
 * else a static reason; errors are only for memory and crypto. */
static kw_result unit_check(struct kw_audit_hasher *hasher, const struct unit *u, uint64_t expect,
                            const uint8_t prev[HLEN], struct unit_recs *ur,
                            uint8_t (*hashes)[HLEN], uint8_t ret_head[HLEN], const char **why)
{
        *why = NULL;
        if (u->first != expect || u->last < u->first) {
                *why = u->first < expect ? "a record at or before the checkpoint or a previous one"
                                         : "records are missing before it";
                return KW_OK;
        }
        if (u->prev == NULL || u->hash == NULL ||
            CRYPTO_memcmp(u->prev, prev, HLEN) != 0) {   /* lint: allow (constant time) */
                *why = "its link to the previous record does not match";
                return KW_OK;
        }
        kw_result r = unit_records(u, ur);
        if (r.code == KW_ERR_DB_CORRUPT) {
                *why = "its batch cannot be decoded";
                return KW_OK;
        }
        KW_TRY(r);
        if (ur->n != u->last - u->first + 1) {
                *why = "its batch holds another number of records than its seq range";
                return KW_OK;
        }
        return kw_audit_unit_verify(hasher, prev, u->first, ur->recs, ur->n, hashes, u->hash,
                                    u->is_batch, u->min_ts, u->max_ts, ret_head, why);
}

/* ------------------------------------------------------------ checkpoints */

struct checkpoint {
        uint64_t seq;                /* 0: none */
        uint8_t hash[HLEN];
};

/* The newest checkpoint (seq 0 and zeros when none), its MAC checked:
 * *ret_mac_ok = 0 when it fails (ret_bad_seq: its seq as stored); with
 * ret_mac_ok NULL a failure is KW_ERR_DB_TAMPERED. */
static kw_result checkpoint_read(struct kw_pgstore *pg, struct pg_conn *c, struct checkpoint *cp,
                                 int *ret_mac_ok)
{
        PGresult *res _cleanup_pgresult_ = NULL;
        KW_TRY(pg_exec(pg, c, SQL_CHECKPOINT, NULL, "audit checkpoint", &res));
        memset(cp, 0, sizeof *cp);
        if (ret_mac_ok != NULL)
                *ret_mac_ok = 1;
        if (PQntuples(res) == 0)
                return KW_OK;
        int64_t seq = 0, ts = 0, created = 0, records = 0;
        const uint8_t *hash = NULL, *sha = NULL, *mac = NULL;
        size_t hash_len = 0, sha_len = 0, mac_len = 0, file_len = 0;
        KW_TRY(pg_col_i64(res, 0, 0, &seq));
        KW_TRY(pg_col_bytes(res, 0, 1, &hash, &hash_len));
        KW_TRY(pg_col_i64(res, 0, 2, &ts));
        KW_TRY(pg_col_i64(res, 0, 3, &created));
        KW_TRY(pg_col_i64(res, 0, 4, &records));
        const char *file = col_str(res, 0, 5, &file_len);
        KW_TRY(pg_col_bytes(res, 0, 6, &sha, &sha_len));
        KW_TRY(pg_col_bytes(res, 0, 7, &mac, &mac_len));
        const struct pg_field f[] = { PG_FINT(seq), PG_FBYTES(hash, hash_len), PG_FINT(ts),
                                      PG_FINT(created), PG_FINT(records),
                                      PG_FBYTES(file, file_len), PG_FBYTES(sha, sha_len) };
        char pk[24];
        snprintf(pk, sizeof pk, "%lld", (long long)seq);
        kw_result r = pg_row_verify(pg, "audit_checkpoint", pk, f, 7, mac, mac_len);
        cp->seq = seq > 0 ? (uint64_t)seq : 1;
        if (r.code == KW_ERR_DB_TAMPERED && ret_mac_ok != NULL) {
                *ret_mac_ok = 0;
                return KW_OK;
        }
        KW_TRY(r);
        if (seq <= 0 || hash == NULL || hash_len != HLEN)
                return KW_FAIL(KW_ERR_DB_CORRUPT, "key store: the audit checkpoint at seq %lld is "
                                                  "malformed", (long long)seq);
        memcpy(cp->hash, hash, HLEN);
        return KW_OK;
}

/* ------------------------------------------------------------------- walk */

/* A walk along the chain from the newest checkpoint (start) on; head is
 * the last unit that held. */
struct walk {
        uint64_t start_seq, head_seq;
        uint8_t start[HLEN], head[HLEN];
        uint8_t (*hashes)[HLEN];     /* as unit_check's (may be NULL) */
};

typedef kw_result (*visit_fn)(const struct unit *u, const struct unit_recs *ur, const char *why,
                              const uint8_t *prev, void *arg, int *ret_stop);

/* Every unit in seq order from the checkpoint w->start_seq / w->start (set
 * by the caller): stops before the first unit want (NULL: all) declines;
 * checks each and hands it to visit with its records, why (NULL: it holds)
 * and the chain hash before it.  Stops after a unit that does not hold,
 * when visit sets *ret_stop, or on visit's error (returned).  *ret_end = 1
 * when it read every unit. */
static kw_result walk_units(struct kw_pgstore *pg, struct pg_conn *c, struct walk *w,
                            int (*want)(const struct unit *, void *), visit_fn visit, void *arg,
                            int *ret_end)
{
        w->head_seq = w->start_seq;
        memcpy(w->head, w->start, HLEN);
        *ret_end = 0;
        struct units it;
        struct unit_recs ur;
        memset(&ur, 0, sizeof ur);
        units_all(&it);
        kw_result r = KW_OK;
        for (;;) {
                struct unit u;
                int have = 0, stop = 0;
                r = units_next(pg, c, &it, &u, &have);
                if (kw_ok(r) && !have)
                        *ret_end = 1;
                if (!kw_ok(r) || !have || (want != NULL && !want(&u, arg)))
                        break;
                const char *why = NULL;
                uint8_t h[HLEN];
                r = unit_check(c->hasher, &u, w->head_seq + 1, w->head, &ur, w->hashes, h, &why);
                if (kw_ok(r))
                        r = visit(&u, &ur, why, w->head, arg, &stop);
                if (!kw_ok(r) || stop || why != NULL)
                        break;
                w->head_seq = u.last;
                memcpy(w->head, h, HLEN);
        }
        kw_audit_batch_clear(&ur.batch);
        units_free(&it);
        return r;
}

/* Whether the head names (w->head_seq, w->head): *ret_why NULL, or why not
 * (static), with the bad range and whether what fails is the head's MAC. */
static kw_result head_matches(struct kw_pgstore *pg, struct pg_conn *c, const struct walk *w,
                              const char **ret_why, uint64_t *ret_first, uint64_t *ret_last,
                              int *ret_mac)
{
        struct pg_audit_head h;
        enum pg_audit_head_state st = PG_AUDIT_HEAD_OK;
        KW_TRY(pg_audit_head_read(pg, c, 0, &h, &st));
        uint64_t tail = w->head_seq != 0 ? w->head_seq : 1;
        *ret_why = NULL;
        *ret_first = *ret_last = tail;
        *ret_mac = st == PG_AUDIT_HEAD_MISSING || st == PG_AUDIT_HEAD_BAD_MAC;
        if (st == PG_AUDIT_HEAD_MISSING) {
                *ret_why = "the chain head is missing: changed outside keyward";
        } else if (st == PG_AUDIT_HEAD_BAD_MAC) {
                *ret_why = "the chain head's MAC does not match: changed outside keyward";
        } else if (h.seq < w->head_seq) {
                *ret_why = "records after the head: the head was set back outside keyward";
                *ret_first = h.seq + 1;
                *ret_last = w->head_seq;
        } else if (h.seq > w->head_seq) {
                *ret_why = "the head names a record that is missing: the newest records were deleted";
                *ret_first = w->head_seq + 1;
                *ret_last = h.seq;
        } else if (CRYPTO_memcmp(h.hash, w->head, HLEN) != 0) {   /* lint: allow (constant time) */
                *ret_why = "the chain does not end at the hash its head names: records were rewritten";
        }
        return KW_OK;
}

/* ------------------------------------------------------------------ verify */

static kw_result verify_visit(const struct unit *u, const struct unit_recs *ur, const char *why,
                              const uint8_t *prev, void *arg, int *ret_stop)
{
        (void)ur;
        (void)prev;
        (void)ret_stop;
        kw_audit_verify_count(arg, u->first, u->last, u->is_batch, why);
        return KW_OK;
}

/* Inside a read transaction. */
static kw_result verify_read(struct kw_pgstore *pg, struct pg_conn *c, struct kw_audit_verify *v)
{
        struct checkpoint cp;
        int cp_ok = 1, end = 0;
        KW_TRY(checkpoint_read(pg, c, &cp, &cp_ok));
        v->start_seq = cp.seq;
        memcpy(v->start_hash, cp.hash, HLEN);
        if (!cp_ok) {
                v->first_bad_seq = v->bad_last_seq = cp.seq;
                v->why = "the newest checkpoint's MAC does not match: changed outside keyward";
                return KW_OK;
        }
        struct walk w = { .start_seq = cp.seq };
        memcpy(w.start, cp.hash, HLEN);
        KW_TRY(walk_units(pg, c, &w, NULL, verify_visit, v, &end));
        v->head_seq = w.head_seq;
        memcpy(v->head_hash, w.head, HLEN);
        if (v->first_bad_seq != 0)
                return KW_OK;   /* the first break is what is named */
        const char *why = NULL;
        uint64_t first = 0, last = 0;
        int mac = 0;
        KW_TRY(head_matches(pg, c, &w, &why, &first, &last, &mac));
        if (why != NULL) {
                v->first_bad_seq = first;
                v->bad_last_seq = last;
                v->bad_is_batch = 0;
                v->why = why;
        }
        return KW_OK;
}

kw_result kw_pg_audit_verify_ex(struct kw_pgstore *pg, struct kw_audit_verify *ret)
{
        KW_ENSURE(pg != NULL && ret != NULL, KW_ERR_INPUT);
        struct kw_audit_verify v;
        memset(&v, 0, sizeof v);
        v.why = "";
        kw_result r = PG_RUN_READ(pg, c, verify_read(pg, c, &v));
        if (kw_ok(r))
                *ret = v;
        return r;
}

/* ------------------------------------------------------------------- stats */

static kw_result opt_i64(const PGresult *res, int col, int64_t *ret, int *ret_found)
{
        *ret_found = !PQgetisnull(res, 0, col);
        *ret = 0;
        return *ret_found ? pg_col_i64(res, 0, col, ret) : KW_OK;
}

#define SQL_STATS                                                                               \
        "SELECT (SELECT seq FROM audit ORDER BY seq LIMIT 1),"                                  \
        " (SELECT first_seq FROM audit_batch ORDER BY first_seq LIMIT 1),"                      \
        " (SELECT ts_ms FROM audit ORDER BY seq LIMIT 1),"                                      \
        " (SELECT min_ts_ms FROM audit_batch ORDER BY first_seq LIMIT 1),"                      \
        " (SELECT seq FROM audit ORDER BY seq DESC LIMIT 1),"                                   \
        " (SELECT last_seq FROM audit_batch ORDER BY first_seq DESC LIMIT 1),"                  \
        " (SELECT count(*) FROM audit_checkpoint),"                                             \
        " (pg_total_relation_size('audit') + pg_total_relation_size('audit_batch') +"          \
        "  pg_total_relation_size('audit_batch_name') + pg_total_relation_size('audit_checkpoint') +" \
        "  pg_total_relation_size('audit_head'))::bigint,"                                      \
        " pg_database_size(current_database())::bigint"

static kw_result stats_read(struct kw_pgstore *pg, struct pg_conn *c, struct kw_audit_stats *s)
{
        PGresult *res _cleanup_pgresult_ = NULL;
        KW_TRY(pg_exec(pg, c, SQL_STATS, NULL, "audit stats", &res));
        KW_ENSURE(PQntuples(res) == 1, KW_ERR_STORAGE);
        int64_t v[9];
        int found[9];
        for (int i = 0; i < 9; i++)
                KW_TRY(opt_i64(res, i, &v[i], &found[i]));
        if (found[0] || found[1]) {
                int row_first_wins = found[0] && (!found[1] || v[0] < v[1]);
                s->first_seq = (uint64_t)(row_first_wins ? v[0] : v[1]);
                s->oldest_ts_ms = row_first_wins ? v[2] : v[3];
        }
        s->last_seq = found[4] ? (uint64_t)v[4] : 0;
        if (found[5] && (uint64_t)v[5] > s->last_seq)
                s->last_seq = (uint64_t)v[5];
        s->checkpoints = (uint64_t)v[6];
        s->db_bytes = (uint64_t)v[7];
        s->db_file_bytes = (uint64_t)v[8];
        s->wal_bytes = 0;
        struct checkpoint cp;
        KW_TRY(checkpoint_read(pg, c, &cp, NULL));
        s->checkpoint_seq = cp.seq;
        memcpy(s->checkpoint_hash, cp.hash, HLEN);
        s->records = s->first_seq != 0 && s->last_seq >= s->first_seq ? s->last_seq - s->first_seq + 1 : 0;
        if (s->checkpoint_seq > s->last_seq)
                s->last_seq = s->checkpoint_seq;
        return KW_OK;
}

kw_result kw_pg_audit_stats(struct kw_pgstore *pg, struct kw_audit_stats *ret)
{
        KW_ENSURE(pg != NULL && ret != NULL, KW_ERR_INPUT);
        struct kw_audit_stats s;
        memset(&s, 0, sizeof s);
        kw_result r = PG_RUN_READ(pg, c, stats_read(pg, c, &s));
        if (kw_ok(r))
                *ret = s;
        return r;
}

/* ------------------------------------------------------------ read oldest */

struct oldest {
        const struct kw_audit_select *sel;
        int (*cb)(const struct kw_audit_row *, void *);
        void *arg;
        struct kw_audit_range *rg;
        struct walk walk;
};

static int unit_selected(const struct unit *u, void *arg)
{
        const struct oldest *o = arg;
        const struct kw_audit_select *sel = o->sel;
        return kw_audit_select_takes(sel, o->rg->records, u->last - u->first + 1, u->max_ts);
}

/* Each record of a unit that holds to the caller, with its hashes. */
static kw_result oldest_visit(const struct unit *u, const struct unit_recs *ur, const char *why,
                              const uint8_t *prev, void *arg, int *ret_stop)
{
        (void)ret_stop;
        struct oldest *o = arg;
        struct kw_audit_range *rg = o->rg;
        if (why != NULL)
                return KW_FAIL(KW_ERR_DB_CORRUPT, "the audit chain does not verify at seq %llu (%s): "
                                                  "nothing from there on is exported or pruned",
                               (unsigned long long)(u->first ? u->first : o->walk.head_seq + 1), why);
        return kw_audit_range_emit(ur->recs, ur->n, u->first, u->last, prev, o->walk.hashes, o->cb, o->arg,
                                   rg);
}

static kw_result oldest_read(struct kw_pgstore *pg, struct pg_conn *c, struct oldest *o)
{
        struct checkpoint cp;
        KW_TRY(checkpoint_read(pg, c, &cp, NULL));
        o->walk.start_seq = cp.seq;
        memcpy(o->walk.start, cp.hash, HLEN);
        int end = 0;
        KW_TRY(walk_units(pg, c, &o->walk, unit_selected, oldest_visit, o, &end));
        if (end) {   /* read to the end: the head must name it */
                const char *why = NULL;
                uint64_t first = 0, last = 0;
                int mac = 0;
                KW_TRY(head_matches(pg, c, &o->walk, &why, &first, &last, &mac));
                if (why != NULL)
                        return KW_FAIL(mac ? KW_ERR_DB_TAMPERED : KW_ERR_DB_CORRUPT,
                                       "the audit chain does not verify at seq %llu (%s): nothing "
                                       "is exported or pruned", (unsigned long long)first, why);
        }
        if (o->rg->records == 0)
                o->rg->first_seq = o->walk.start_seq;
        memcpy(o->rg->prev_hash, o->walk.start, HLEN);
        return KW_OK;
}

kw_result kw_pg_audit_read_oldest(struct kw_pgstore *pg, const struct kw_audit_select *sel,
                                  int (*cb)(const struct kw_audit_row *row, void *arg), void *arg,
                                  struct kw_audit_range *ret)
{
        KW_ENSURE(pg != NULL && sel != NULL && cb != NULL && ret != NULL && sel->max_records > 0,
                  KW_ERR_INPUT);
        struct kw_audit_range rg;
        memset(&rg, 0, sizeof rg);
        struct oldest o = { .sel = sel, .cb = cb, .arg = arg, .rg = &rg };
        o.walk.hashes = calloc(KW_AUDIT_BATCH_MAX_RECORDS, HLEN);
        KW_ENSURE(o.walk.hashes != NULL, KW_ERR_NOMEM);
        kw_result r = PG_RUN_READ(pg, c, oldest_read(pg, c, &o));
        free(o.walk.hashes);
        if (kw_ok(r)) {
                if (rg.records == 0)
                        rg.first_seq = rg.last_seq = 0;
                *ret = rg;
        }
        return r;
}

/* ------------------------------------------------------------------- prune */

/* The stored hash of the unit ending at seq (*ret_found = 0: none). */
static kw_result unit_hash_at(struct kw_pgstore *pg, struct pg_conn *c, uint64_t seq,
                              uint8_t out[HLEN], int *ret_found)
{
        *ret_found = 0;
        struct pg_params p = { 0 };
        pg_param_i64(&p, (int64_t)seq);
        {
                PGresult *res _cleanup_pgresult_ = NULL;
                KW_TRY(pg_exec(pg, c, "SELECT hash FROM audit WHERE seq = $1", &p, "audit prune", &res));
                if (PQntuples(res) == 1 && col_hash(res, 0, 0) != NULL) {
                        memcpy(out, col_hash(res, 0, 0), HLEN);
                        *ret_found = 1;
                        return KW_OK;
                }
        }
        PGresult *res _cleanup_pgresult_ = NULL;
        KW_TRY(pg_exec(pg, c, "SELECT last_seq, hash FROM audit_batch WHERE first_seq <= $1"
                              " ORDER BY first_seq DESC LIMIT 1", &p, "audit prune", &res));
        int64_t last = 0;
        if (PQntuples(res) == 1 && kw_ok(pg_col_i64(res, 0, 0, &last)) && last >= 0 &&
            (uint64_t)last == seq && col_hash(res, 0, 1) != NULL) {
                memcpy(out, col_hash(res, 0, 1), HLEN);
                *ret_found = 1;
        }
        return KW_OK;
}

static kw_result exec_seq(struct kw_pgstore *pg, struct pg_conn *c, const char *sql, uint64_t seq)
{
        struct pg_params p = { 0 };
        pg_param_i64(&p, (int64_t)seq);
        return pg_exec(pg, c, sql, &p, "audit prune", NULL);
}

static kw_result checkpoint_insert(struct kw_pgstore *pg, struct pg_conn *c,
                                   const struct kw_audit_prune *pr, uint64_t records)
{
        int64_t created = pg_now_ms();
        const struct pg_field f[] = { PG_FINT(pr->through_seq), PG_FBYTES(pr->through_hash, HLEN),
                                      PG_FINT(pr->through_ts_ms), PG_FINT(created), PG_FINT(records),
                                      PG_FSTR(pr->export_file),
                                      PG_FBYTES(pr->export_sha256, sizeof pr->export_sha256) };
        uint8_t mac[PG_MAC_LEN];
        KW_TRY(pg_row_mac(pg, "audit_checkpoint", f, 7, mac));
        struct pg_params p = { 0 };
        pg_param_i64(&p, (int64_t)pr->through_seq);
        pg_param_bytes(&p, pr->through_hash, HLEN);
        pg_param_i64(&p, pr->through_ts_ms);
        pg_param_i64(&p, created);
        pg_param_i64(&p, (int64_t)records);
        pg_param_text(&p, pr->export_file);
        pg_param_bytes(&p, pr->export_sha256, sizeof pr->export_sha256);
        pg_param_bytes(&p, mac, sizeof mac);
        return pg_exec(pg, c, SQL_CHECKPOINT_INSERT, &p, "audit checkpoint", NULL);
}

static kw_result prune_tx(struct kw_pgstore *pg, struct pg_conn *c, const struct kw_audit_prune *pr,
                          uint64_t *ret_records)
{
        {
                struct pg_params p = { 0 };
                pg_param_i64(&p, PG_AUDIT_PRUNE_LOCK);
                KW_TRY(pg_exec(pg, c, "SELECT pg_advisory_xact_lock($1::bigint)", &p, "audit prune lock",
                               NULL));
        }
        /* READ COMMITTED: what follows sees what a prune that held the lock
         * before committed */
        struct checkpoint cp;
        KW_TRY(checkpoint_read(pg, c, &cp, NULL));
        uint8_t h[HLEN];
        int found = 0;
        KW_TRY(unit_hash_at(pg, c, pr->through_seq, h, &found));
        int same = found && CRYPTO_memcmp(h, pr->through_hash, HLEN) == 0; /* lint: allow (constant time) */
        if (pr->through_seq <= cp.seq || !same)
                return KW_FAIL(KW_ERR_BAD_STATE, "audit seq %llu is not the end of an unpruned record "
                                                 "or batch with the exported hash: nothing pruned",
                               (unsigned long long)pr->through_seq);
        uint64_t records = pr->through_seq - cp.seq;
        KW_TRY(exec_seq(pg, c, "DELETE FROM audit WHERE seq <= $1", pr->through_seq));
        KW_TRY(exec_seq(pg, c, "DELETE FROM audit_batch WHERE first_seq <= $1", pr->through_seq));
        KW_TRY(exec_seq(pg, c, SQL_PRUNE_NAMES, pr->through_seq));
        KW_TRY(checkpoint_insert(pg, c, pr, records));
        KW_TRY(pg_tx_audit(pg, c, pr->audit));
        *ret_records = records;
        return KW_OK;
}

kw_result kw_pg_audit_prune(struct kw_pgstore *pg, const struct kw_audit_prune *p,
                            uint64_t *ret_records)
{
        KW_ENSURE(pg != NULL && p != NULL && ret_records != NULL && p->audit != NULL &&
                          p->export_file != NULL && p->export_file[0] != '\0' &&
                          p->through_seq > 0 && p->through_seq <= (uint64_t)INT64_MAX,
                  KW_ERR_INPUT);
        KW_TRY(pg_check_audit_entry(p->audit));
        uint64_t n = 0;
        kw_result r;
        struct pg_conn *c = pg_acquire(pg, &r);
        if (c == NULL)
                return r;
        r = pg_tx_begin_plain(pg, c, "audit prune");
        if (kw_ok(r))
                r = pg_tx_end(pg, c, prune_tx(pg, c, p, &n));
        pg_release(pg, c);
        if (kw_ok(r))
                *ret_records = n;
        return r;
}

/* ------------------------------------------------------------------ query */

struct query {
        const struct kw_audit_filter *f;
        uint64_t hi;                 /* seq < hi (UINT64_MAX: none) */
        uint32_t limit;
        char batch_name[KW_AUDIT_NAME_MAX + 3];   /* "k:<key>" / "a:<action>" */
        struct kw_audit_qrow *rows;
        size_t n;
};

static kw_result qrow_add(struct query *q, uint64_t seq, const struct kw_audit_rec *r,
                          const uint8_t hash[HLEN])
{
        KW_TRY(kw_audit_qrow_fill(&q->rows[q->n], seq, r, hash));
        q->n++;
        return KW_OK;
}

static int rec_matches(const struct query *q, uint64_t seq, const struct kw_audit_rec *r)
{
        return kw_audit_rec_matches(q->f, q->hi, seq, r);
}

/* "$n" of the next parameter, which pg_param_* then adds. */
static const char *pnum(const struct pg_params *p, char buf[16])
{
        snprintf(buf, 16, "$%d", p->n + 1);
        return buf;
}

#define SQL_CAT(s, ...)                                                       \
        do {                                                                  \
                size_t l_ = strlen(s);                                        \
                int n_ = snprintf((s) + l_, sizeof(s) - l_, __VA_ARGS__);    \
                KW_ENSURE(n_ >= 0 && (size_t)n_ < sizeof(s) - l_, KW_ERR_INTERNAL); \
        } while (0)

/* The filter's admin rows: $1 the keyset cursor (seq > it ascending, < it
 * descending), then the filters given; the SQL applies them all. */
static kw_result query_rows_sql(const struct query *q, struct stream *s)
{
        const struct kw_audit_filter *f = q->f;
        char n[16];
        s->p.n = 1;
        snprintf(s->sql, sizeof s->sql, "SELECT " ROW_COLS " FROM audit WHERE seq %s $1",
                 f->desc ? "<" : ">");
        if (f->desc) {
                SQL_CAT(s->sql, " AND seq > %s", pnum(&s->p, n));
                pg_param_i64(&s->p, clamp_i64(f->after));
        } else if (q->hi != UINT64_MAX) {
                SQL_CAT(s->sql, " AND seq < %s", pnum(&s->p, n));
                pg_param_i64(&s->p, clamp_i64(q->hi));
        }
        if (f->key_name != NULL) {
                SQL_CAT(s->sql, " AND key_name = %s", pnum(&s->p, n));
                pg_param_text(&s->p, f->key_name);
        }
        if (f->action != NULL) {
                SQL_CAT(s->sql, " AND action = %s", pnum(&s->p, n));
                pg_param_text(&s->p, f->action);
        }
        if (f->actor_prefix != NULL) {
                SQL_CAT(s->sql, " AND starts_with(actor, %s)", pnum(&s->p, n));
                pg_param_text(&s->p, f->actor_prefix);
        }
        if (f->since_ms != 0) {
                SQL_CAT(s->sql, " AND ts_ms >= %s", pnum(&s->p, n));
                pg_param_i64(&s->p, f->since_ms);
        }
        if (f->until_ms != 0) {
                SQL_CAT(s->sql, " AND ts_ms < %s", pnum(&s->p, n));
                pg_param_i64(&s->p, f->until_ms);
        }
        SQL_CAT(s->sql, " ORDER BY seq%s LIMIT %d", f->desc ? " DESC" : "", ROWS_PAGE);
        s->page = ROWS_PAGE;
        s->cursor = f->desc ? clamp_i64(q->hi) : clamp_i64(f->after);
        return KW_OK;
}

/* The batches that may hold matching records: from the batch holding
 * after + 1 (start) below hi, through the name index when a key or action
 * is given, those whose time range meets the filter's. */
static kw_result query_batches_sql(const struct query *q, uint64_t start, struct stream *s)
{
        const struct kw_audit_filter *f = q->f;
        int named = q->batch_name[0] != '\0';
        char n[16];
        s->p.n = 1;
        snprintf(s->sql, sizeof s->sql, "SELECT " BATCH_COLS " FROM %s WHERE b.first_seq %s $1",
                 named ? "audit_batch_name n JOIN audit_batch b ON b.first_seq = n.first_seq"
                       : "audit_batch b",
                 f->desc ? "<" : ">");
        if (named) {
                SQL_CAT(s->sql, " AND n.name = %s", pnum(&s->p, n));
                pg_param_text(&s->p, q->batch_name);
        }
        if (f->desc) {
                SQL_CAT(s->sql, " AND b.first_seq >= %s", pnum(&s->p, n));
                pg_param_i64(&s->p, clamp_i64(start));
        } else if (q->hi != UINT64_MAX) {
                SQL_CAT(s->sql, " AND b.first_seq < %s", pnum(&s->p, n));
                pg_param_i64(&s->p, clamp_i64(q->hi));
        }
        if (f->since_ms != 0) {
                SQL_CAT(s->sql, " AND b.max_ts_ms >= %s", pnum(&s->p, n));
                pg_param_i64(&s->p, f->since_ms);
        }
        if (f->until_ms != 0) {
                SQL_CAT(s->sql, " AND b.min_ts_ms < %s", pnum(&s->p, n));
                pg_param_i64(&s->p, f->until_ms);
        }
        SQL_CAT(s->sql, " ORDER BY %sfirst_seq%s LIMIT %d", named ? "n." : "b.",
                f->desc ? " DESC" : "", BATCHES_PAGE);
        s->is_batch = 1;
        s->page = BATCHES_PAGE;
        s->cursor = f->desc ? clamp_i64(q->hi) : clamp_i64(start) - 1;
        return KW_OK;
}

static kw_result query_units(struct kw_pgstore *pg, struct pg_conn *c, const struct query *q,
                             struct units *it)
{
        const struct kw_audit_filter *f = q->f;
        memset(it, 0, sizeof *it);
        it->desc = it->s[0].desc = it->s[1].desc = f->desc;
        uint64_t from = f->after >= (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : f->after + 1, start;
        {
                struct pg_params p = { 0 };
                pg_param_i64(&p, (int64_t)from);
                PGresult *res _cleanup_pgresult_ = NULL;
                KW_TRY(pg_exec(pg, c, "SELECT first_seq FROM audit_batch WHERE first_seq <= $1"
                                      " ORDER BY first_seq DESC LIMIT 1", &p, "audit query", &res));
                int64_t v = 0;
                if (PQntuples(res) == 1)
                        KW_TRY(pg_col_i64(res, 0, 0, &v));
                start = PQntuples(res) == 1 && v > 0 ? (uint64_t)v : from;
        }
        KW_TRY(query_rows_sql(q, &it->s[0]));
        return query_batches_sql(q, start, &it->s[1]);
}

/* The matching records of a decoded batch, each with its chain hash
 * (recomputed from the batch's stored prev_hash), in the query's order. */
static kw_result query_batch(struct pg_conn *c, struct query *q, const struct unit *u,
                             const struct unit_recs *ur, uint8_t (*hashes)[HLEN])
{
        uint8_t h[HLEN];
        memcpy(h, u->prev != NULL ? u->prev : zero_hash, HLEN);
        for (size_t i = 0; i < ur->n; i++) {
                KW_TRY(kw_audit_chain_step(c->hasher, h, u->first + i, &ur->recs[i], h));
                memcpy(hashes[i], h, HLEN);
        }
        for (size_t k = 0; k < ur->n && q->n < q->limit; k++) {
                size_t i = q->f->desc ? ur->n - 1 - k : k;
                if (rec_matches(q, u->first + i, &ur->recs[i]))
                        KW_TRY(qrow_add(q, u->first + i, &ur->recs[i], hashes[i]));
        }
        return KW_OK;
}

static kw_result query_read(struct kw_pgstore *pg, struct pg_conn *c, struct query *q)
{
        struct units it;
        struct unit_recs ur;
        memset(&ur, 0, sizeof ur);
        uint8_t (*hashes)[HLEN] = calloc(KW_AUDIT_BATCH_MAX_RECORDS, HLEN);
        KW_ENSURE(hashes != NULL, KW_ERR_NOMEM);
        kw_result r = query_units(pg, c, q, &it);
        while (kw_ok(r) && q->n < q->limit) {
                struct unit u;
                int have = 0;
                r = units_next(pg, c, &it, &u, &have);
                if (!kw_ok(r) || !have)
                        break;
                if (!u.is_batch) {   /* the SQL applied the filters */
                        r = u.hash != NULL ? qrow_add(q, u.first, &u.rec, u.hash)
                                           : KW_FAIL(KW_ERR_DB_CORRUPT, "the audit row of seq %llu "
                                                     "has no valid hash (run audit verify)",
                                                     (unsigned long long)u.first);
                        continue;
                }
                r = unit_records(&u, &ur);
                if (r.code == KW_ERR_DB_CORRUPT)
                        kw_err_set_detail("the audit batch of seq %llu-%llu cannot be decoded (run "
                                          "audit verify); page past it with %s=%llu",
                                          (unsigned long long)u.first, (unsigned long long)u.last,
                                          q->f->desc ? "before" : "after",
                                          (unsigned long long)(q->f->desc ? u.first : u.last));
                if (kw_ok(r))
                        r = query_batch(c, q, &u, &ur, hashes);
        }
        free(hashes);
        kw_audit_batch_clear(&ur.batch);
        units_free(&it);
        return r;
}

/* A prefix of printable ASCII, 1..KW_AUDIT_ACTOR_PREFIX_MAX bytes. */
static int actor_prefix_ok(const char *p)
{
        size_t n = strnlen(p, KW_AUDIT_ACTOR_PREFIX_MAX + 1);
        if (n == 0 || n > KW_AUDIT_ACTOR_PREFIX_MAX)
                return 0;
        for (size_t i = 0; i < n; i++)
                if (p[i] < 0x20 || p[i] > 0x7e)
                        return 0;
        return 1;
}

kw_result kw_pg_audit_query_filter(struct kw_pgstore *pg, const struct kw_audit_filter *f,
                                   int (*cb)(const struct kw_audit_row *row, void *arg), void *arg)
{
        KW_ENSURE(pg != NULL && f != NULL && cb != NULL, KW_ERR_INPUT);
        struct query q = { .f = f, .limit = f->limit ? f->limit : LIST_DEFAULT,
                           .hi = f->before ? f->before : UINT64_MAX };
        if (q.limit > LIST_MAX)
                return KW_FAIL(KW_ERR_BAD_FIELD, "limit must be 1..%u", LIST_MAX);
        KW_ENSURE(f->key_name == NULL || strnlen(f->key_name, KW_AUDIT_NAME_MAX + 1) <= KW_AUDIT_NAME_MAX,
                  KW_ERR_TOO_LARGE);
        KW_ENSURE(f->action == NULL || strnlen(f->action, KW_AUDIT_NAME_MAX + 1) <= KW_AUDIT_NAME_MAX,
                  KW_ERR_TOO_LARGE);
        if ((f->actor_prefix != NULL && !actor_prefix_ok(f->actor_prefix)) || f->since_ms < 0 ||
            f->until_ms < 0)
                return KW_FAIL(KW_ERR_BAD_FIELD, "actor is 1..%d printable ASCII characters; times "
                                                 "are not negative", KW_AUDIT_ACTOR_PREFIX_MAX);
        if ((f->key_name != NULL && !kw_utf8_valid((const uint8_t *)f->key_name, strlen(f->key_name))) ||
            (f->action != NULL && !kw_utf8_valid((const uint8_t *)f->action, strlen(f->action))))
                return KW_OK;   /* no stored record names it: a UTF-8 database holds no other text */
        if (f->key_name != NULL || f->action != NULL)   /* the key's index when there is one */
                snprintf(q.batch_name, sizeof q.batch_name, "%c:%s", f->key_name != NULL ? 'k' : 'a',
                         f->key_name != NULL ? f->key_name : f->action);
        q.rows = calloc(q.limit, sizeof *q.rows);
        KW_ENSURE(q.rows != NULL, KW_ERR_NOMEM);
        kw_result r = PG_RUN_READ(pg, c, query_read(pg, c, &q));
        for (size_t i = 0; kw_ok(r) && i < q.n; i++) {
                const struct kw_audit_qrow *x = &q.rows[i];
                struct kw_audit_row ar = {
                        .seq = x->seq, .ts_ms = x->ts_ms,
                        .actor = x->buf + x->off[0], .action = x->buf + x->off[1],
                        .key_name = x->buf + x->off[2], .result = x->buf + x->off[3],
                        .detail = x->buf + x->off[4], .request_id = x->buf + x->off[5],
                        .hash_hex = x->buf + x->off[6],
                };
                memcpy(ar.len, x->len, sizeof ar.len);
                if (cb(&ar, arg) != 0)
                        break;
        }
        for (size_t i = 0; i < q.n; i++)
                free(q.rows[i].buf);
        free(q.rows);
        return r;
}
