/*
 * audit_read.c - the audit chain read back: the query (GET /api/v1/audit),
 * and retention's two steps, reading the oldest records for an export and
 * pruning them behind a checkpoint (contract in audit_store.h; the storage
 * units and read sessions they share are audit_store.c's).
 *
 * The query shows a batch record's hash as recomputed from the batch's
 * stored prev_hash: verify is what compares the chain with what is stored.
 * A record is exported only after its unit was checked against the chain
 * from the newest checkpoint; a prune names the exact hash it exported to.
 */
#define SQLITE_HAS_CODEC 1

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "audit_logic.h"
#include "audit_store_int.h"

#define LIST_MAX 1000u
#define LIST_DEFAULT 100u

static const uint8_t as_zero_hash[KS_HASH_LEN];

/* ------------------------------------------------------------ read oldest */

struct oldest {
        const struct kw_audit_select *sel;
        int (*cb)(const struct kw_audit_row *, void *);
        void *arg;
        struct kw_audit_range *rg;
        uint8_t (*hashes)[KS_HASH_LEN];
        struct as_walk walk;
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
        if (why != NULL) {
                kw_err_set_detail("the audit chain does not verify at seq %llu (%s): nothing "
                                  "from there on is exported or pruned",
                                  (unsigned long long)(u->first ? u->first : o->walk.head_seq + 1), why);
                KW_BAIL(KW_ERR_DB_CORRUPT);
        }
        return kw_audit_range_emit(ur->recs, ur->n, u->first, u->last, prev, o->hashes, o->cb, o->arg,
                                   rg);
}

static kw_result oldest_locked(struct kw_keystore *ks, struct oldest *o)
{
        o->walk = (struct as_walk){ .hashes = o->hashes };
        KW_TRY(as_walk(ks, &o->walk, unit_selected, oldest_visit, o));
        if (o->rg->records == 0)
                o->rg->first_seq = o->walk.start_seq;
        memcpy(o->rg->prev_hash, o->walk.start, KS_HASH_LEN);
        return KW_OK;
}

kw_result kw_keystore_audit_read_oldest(struct kw_keystore *ks, const struct kw_audit_select *sel,
                                        int (*cb)(const struct kw_audit_row *row, void *arg),
                                        void *arg, struct kw_audit_range *ret)
{
        KS_PG(ks, kw_pg_audit_read_oldest(ks->pg, sel, cb, arg, ret));
        KW_ENSURE(ks != NULL && sel != NULL && cb != NULL && ret != NULL && sel->max_records > 0,
                  KW_ERR_INPUT);
        struct kw_audit_range rg;
        memset(&rg, 0, sizeof rg);
        struct oldest o = { .sel = sel, .cb = cb, .arg = arg, .rg = &rg,
                            .hashes = calloc(KW_AUDIT_BATCH_MAX_RECORDS, KS_HASH_LEN) };
        KW_ENSURE(o.hashes != NULL, KW_ERR_NOMEM);
        kw_result r = as_read_begin(ks);
        if (kw_ok(r)) {
                r = oldest_locked(ks, &o);
                as_read_end(ks);
        }
        free(o.hashes);
        if (kw_ok(r)) {
                if (rg.records == 0)
                        rg.first_seq = rg.last_seq = 0;
                *ret = rg;
        }
        return r;
}

/* ------------------------------------------------------------------- prune */

static kw_result unit_hash_at(struct kw_keystore *ks, uint64_t seq, uint8_t out[KS_HASH_LEN],
                              int *ret_found)
{
        *ret_found = 0;
        {
                sqlite3_stmt *st _cleanup_finalize_ = NULL;
                KW_TRY(ks_prepare(ks, "SELECT hash FROM audit WHERE seq = ?1", &st));
                KW_TRY(ks_bind_i64(ks, st, 1, (int64_t)seq));
                int row = 0;
                KW_TRY(ks_step_row(ks, st, "audit prune", &row));
                if (row && as_col_hash(st, 0) != NULL) {
                        memcpy(out, as_col_hash(st, 0), KS_HASH_LEN);
                        *ret_found = 1;
                        return KW_OK;
                }
        }
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "SELECT last_seq, hash FROM audit_batch WHERE first_seq <= ?1"
                              " ORDER BY first_seq DESC LIMIT 1", &st));
        KW_TRY(ks_bind_i64(ks, st, 1, (int64_t)seq));
        int row = 0;
        KW_TRY(ks_step_row(ks, st, "audit prune", &row));
        if (row && (uint64_t)sqlite3_column_int64(st, 0) == seq && as_col_hash(st, 1) != NULL) {
                memcpy(out, as_col_hash(st, 1), KS_HASH_LEN);
                *ret_found = 1;
        }
        return KW_OK;
}

static kw_result exec_seq(struct kw_keystore *ks, const char *sql, uint64_t seq)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, sql, &st));
        KW_TRY(ks_bind_i64(ks, st, 1, (int64_t)seq));
        return ks_step_done(ks, st, "audit prune");
}

/* The names of deleted batches: one index range per distinct name, found
 * by skipping from name to name (no scan of the whole index). */
static kw_result prune_names(struct kw_keystore *ks, uint64_t through)
{
        sqlite3_stmt *next _cleanup_finalize_ = NULL, *del _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "SELECT name FROM audit_batch_name WHERE name > ?1 ORDER BY name LIMIT 1",
                          &next));
        KW_TRY(ks_prepare(ks, "DELETE FROM audit_batch_name WHERE name = ?1 AND first_seq <= ?2", &del));
        char name[KW_AUDIT_FIELD_MAX + 3] = "";
        for (;;) {
                KW_TRY(ks_bind_text(ks, next, 1, name));
                int row = 0;
                KW_TRY(ks_step_row(ks, next, "audit prune names", &row));
                if (!row)
                        break;
                kw_result r = ks_col_text(next, 0, name, sizeof name);
                sqlite3_reset(next);
                KW_TRY(r);
                KW_TRY(ks_bind_text(ks, del, 1, name));
                KW_TRY(ks_bind_i64(ks, del, 2, (int64_t)through));
                KW_TRY(ks_step_done(ks, del, "audit prune names"));
                sqlite3_reset(del);
        }
        return KW_OK;
}

static kw_result prune_tx(struct kw_keystore *ks, struct ks_tx *tx, const struct kw_audit_prune *p,
                          uint64_t *ret_records)
{
        int found = 0;
        uint64_t cp = 0;
        {
                sqlite3_stmt *st _cleanup_finalize_ = NULL;
                KW_TRY(ks_prepare(ks, "SELECT max(seq) FROM audit_checkpoint", &st));
                int row = 0;
                KW_TRY(ks_step_row(ks, st, "audit prune", &row));
                cp = row ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
        }
        uint8_t h[KS_HASH_LEN];
        KW_TRY(unit_hash_at(ks, p->through_seq, h, &found));
        int same = found && CRYPTO_memcmp(h, p->through_hash, KS_HASH_LEN) == 0; /* lint: allow (constant time) */
        if (p->through_seq <= cp || !same) {
                kw_err_set_detail("audit seq %llu is not the end of an unpruned record or batch "
                                  "with the exported hash: nothing pruned",
                                  (unsigned long long)p->through_seq);
                KW_BAIL(KW_ERR_BAD_STATE);
        }
        KW_TRY(exec_seq(ks, "DELETE FROM audit WHERE seq <= ?1", p->through_seq));
        KW_TRY(exec_seq(ks, "DELETE FROM audit_batch WHERE first_seq <= ?1", p->through_seq));
        KW_TRY(prune_names(ks, p->through_seq));
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "INSERT INTO audit_checkpoint (seq, hash, ts_ms, created_ms, records,"
                              " export_file, export_sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                          &st));
        KW_TRY(ks_bind_i64(ks, st, 1, (int64_t)p->through_seq));
        KW_TRY(ks_bind_blob(ks, st, 2, p->through_hash, KS_HASH_LEN));
        KW_TRY(ks_bind_i64(ks, st, 3, p->through_ts_ms));
        KW_TRY(ks_bind_i64(ks, st, 4, ks_now_ms()));
        KW_TRY(ks_bind_i64(ks, st, 5, (int64_t)(p->through_seq - cp)));
        KW_TRY(ks_bind_text(ks, st, 6, p->export_file));
        KW_TRY(ks_bind_blob(ks, st, 7, p->export_sha256, sizeof p->export_sha256));
        KW_TRY(ks_step_done(ks, st, "audit checkpoint"));
        KW_TRY(ks_tx_audit(ks, tx, p->audit));
        *ret_records = p->through_seq - cp;
        return KW_OK;
}

kw_result kw_keystore_audit_prune(struct kw_keystore *ks, const struct kw_audit_prune *p,
                                  uint64_t *ret_records)
{
        KS_PG(ks, kw_pg_audit_prune(ks->pg, p, ret_records));
        KW_ENSURE(ks != NULL && p != NULL && ret_records != NULL && p->audit != NULL &&
                          p->export_file != NULL && p->export_file[0] != '\0' &&
                          p->through_seq > 0 && p->through_seq <= (uint64_t)INT64_MAX,
                  KW_ERR_INPUT);
        KW_TRY(ks_check_audit_entry(p->audit));
        uint64_t n = 0;
        kw_result r = KS_RUN_TX(ks, tx, prune_tx(ks, tx, p, &n));
        if (kw_ok(r))
                *ret_records = n;
        return r;
}

/* ------------------------------------------------------------------ query */

struct query {
        const struct kw_audit_filter *f;
        uint64_t hi;                 /* seq < hi (UINT64_MAX: none) */
        uint32_t limit;
        char actor_hi[KW_AUDIT_ACTOR_PREFIX_MAX + 1];   /* the prefix's upper bound */
        struct kw_audit_qrow *rows;
        size_t n;
};

static kw_result qrow_add(struct query *q, uint64_t seq, const struct kw_audit_rec *r,
                          const uint8_t hash[KS_HASH_LEN])
{
        KW_TRY(kw_audit_qrow_fill(&q->rows[q->n], seq, r, hash));
        q->n++;
        return KW_OK;
}

static int rec_matches(const struct query *q, uint64_t seq, const struct kw_audit_rec *r)
{
        return kw_audit_rec_matches(q->f, q->hi, seq, r);
}

/* The SQL of the filter's admin rows (parameters: ?1 after, ?2 before, ?3
 * key, ?4 action, ?5 ?6 the actor prefix's range, ?7 since, ?8 until; only
 * those of the filters given appear) and of its batches (?1 the first
 * batch that can hold a record after `after`, ?2 before, ?3 the batch name
 * "k:<key>" or "a:<action>" when one of those is given (the name index),
 * ?7 ?8 against the batch's time range).  0, or -1 when out does not fit
 * (it always does at the sizes used). */
int as_query_sql(const struct kw_audit_filter *f, int batches, char *out, size_t outsz)
{
        int named = f->key_name != NULL || f->action != NULL;
        const char *b = named ? "b." : "";
        int n = batches
                ? snprintf(out, outsz, "SELECT %sfirst_seq, %slast_seq, %smin_ts_ms, %smax_ts_ms,"
                                       " %sprev_hash, %shash, %sdata FROM %s WHERE %s"
                                       "%sfirst_seq >= ?1 AND %sfirst_seq < ?2%s%s"
                                       " ORDER BY %sfirst_seq%s",
                           b, b, b, b, b, b, b,
                           named ? "audit_batch_name n JOIN audit_batch b ON b.first_seq = n.first_seq"
                                 : "audit_batch",
                           named ? "n.name = ?3 AND " : "", b, b,
                           f->since_ms != 0 ? (named ? " AND b.max_ts_ms >= ?7" : " AND max_ts_ms >= ?7") : "",
                           f->until_ms != 0 ? (named ? " AND b.min_ts_ms < ?8" : " AND min_ts_ms < ?8") : "",
                           b, f->desc ? " DESC" : "")
                : snprintf(out, outsz, "SELECT " ROW_COLS " FROM audit WHERE seq > ?1 AND seq < ?2"
                                       "%s%s%s%s%s ORDER BY seq%s",
                           f->key_name != NULL ? " AND key_name = ?3" : "",
                           f->action != NULL ? " AND action = ?4" : "",
                           f->actor_prefix != NULL ? " AND actor >= ?5 AND actor < ?6" : "",
                           f->since_ms != 0 ? " AND ts_ms >= ?7" : "",
                           f->until_ms != 0 ? " AND ts_ms < ?8" : "", f->desc ? " DESC" : "");
        return n > 0 && (size_t)n < outsz ? 0 : -1;
}

static int64_t seq_param(uint64_t v)
{
        return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
}

/* The units that may hold matching records: from the batch holding
 * after + 1 (rows and batches merged by seq, in the filter's order),
 * through the name index when a key or action is given. */
static kw_result query_units(struct kw_keystore *ks, const struct query *q, struct units *it)
{
        const struct kw_audit_filter *f = q->f;
        memset(it, 0, sizeof *it);
        it->desc = f->desc;
        uint64_t from = f->after >= (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : f->after + 1, start;
        {
                sqlite3_stmt *st _cleanup_finalize_ = NULL;
                KW_TRY(ks_rprepare(ks, "SELECT first_seq FROM audit_batch WHERE first_seq <= ?1"
                                       " ORDER BY first_seq DESC LIMIT 1", &st));
                KW_TRY(ks_bind_i64(ks, st, 1, (int64_t)from));
                int row = 0;
                KW_TRY(ks_step_row(ks, st, "audit query", &row));
                start = row ? (uint64_t)sqlite3_column_int64(st, 0) : from;
        }
        char sql[640];
        KW_ENSURE(as_query_sql(f, 0, sql, sizeof sql) == 0, KW_ERR_INTERNAL);
        KW_TRY(ks_rprepare(ks, sql, &it->rows));
        KW_TRY(ks_bind_i64(ks, it->rows, 1, (int64_t)(from - 1)));
        KW_TRY(ks_bind_i64(ks, it->rows, 2, seq_param(q->hi)));
        if (f->key_name != NULL)
                KW_TRY(ks_bind_text(ks, it->rows, 3, f->key_name));
        if (f->action != NULL)
                KW_TRY(ks_bind_text(ks, it->rows, 4, f->action));
        if (f->actor_prefix != NULL) {
                KW_TRY(ks_bind_text(ks, it->rows, 5, f->actor_prefix));
                KW_TRY(ks_bind_text(ks, it->rows, 6, q->actor_hi));
        }
        KW_ENSURE(as_query_sql(f, 1, sql, sizeof sql) == 0, KW_ERR_INTERNAL);
        KW_TRY(ks_rprepare(ks, sql, &it->batches));
        KW_TRY(ks_bind_i64(ks, it->batches, 1, (int64_t)start));
        KW_TRY(ks_bind_i64(ks, it->batches, 2, seq_param(q->hi)));
        if (f->key_name != NULL || f->action != NULL) {
                /* the key's index when there is one (fewer batches), else the action's */
                snprintf(it->batch_name, sizeof it->batch_name, "%c:%s",
                         f->key_name != NULL ? 'k' : 'a',
                         f->key_name != NULL ? f->key_name : f->action);
                KW_TRY(ks_bind_text(ks, it->batches, 3, it->batch_name));
        }
        for (int i = 0; i < 2; i++) {
                sqlite3_stmt *st = i ? it->batches : it->rows;
                if (f->since_ms != 0)
                        KW_TRY(ks_bind_i64(ks, st, 7, f->since_ms));
                if (f->until_ms != 0)
                        KW_TRY(ks_bind_i64(ks, st, 8, f->until_ms));
        }
        return KW_OK;
}

/* The matching records of a decoded batch, each with its chain hash
 * (recomputed from the batch's stored prev_hash), in the query's order. */
static kw_result query_batch(struct kw_keystore *ks, struct query *q, const struct unit *u,
                             const struct unit_recs *ur, uint8_t (*hashes)[KS_HASH_LEN])
{
        uint8_t h[KS_HASH_LEN];
        memcpy(h, u->prev != NULL ? u->prev : as_zero_hash, KS_HASH_LEN);
        for (size_t i = 0; i < ur->n; i++) {
                KW_TRY(kw_audit_chain_step(ks->rhasher, h, u->first + i, &ur->recs[i], h));
                memcpy(hashes[i], h, KS_HASH_LEN);
        }
        for (size_t k = 0; k < ur->n && q->n < q->limit; k++) {
                size_t i = q->f->desc ? ur->n - 1 - k : k;
                if (rec_matches(q, u->first + i, &ur->recs[i]))
                        KW_TRY(qrow_add(q, u->first + i, &ur->recs[i], hashes[i]));
        }
        return KW_OK;
}

static kw_result query_locked(struct kw_keystore *ks, struct query *q)
{
        struct units it;
        struct unit_recs ur;
        memset(&ur, 0, sizeof ur);
        uint8_t (*hashes)[KS_HASH_LEN] = calloc(KW_AUDIT_BATCH_MAX_RECORDS, KS_HASH_LEN);
        KW_ENSURE(hashes != NULL, KW_ERR_NOMEM);
        kw_result r = query_units(ks, q, &it);
        while (kw_ok(r) && q->n < q->limit) {
                struct unit u;
                int have = 0;
                r = as_units_next(ks, &it, &u, &have);
                if (!kw_ok(r) || !have)
                        break;
                if (!u.is_batch) {   /* the SQL applied the filters */
                        as_row_rec(u.row, &ur.one);
                        r = u.hash != NULL ? qrow_add(q, u.first, &ur.one, u.hash)
                                           : KW_RESULT(KW_ERR_DB_CORRUPT);
                        continue;
                }
                r = as_unit_records(&u, &ur);
                if (r.code == KW_ERR_DB_CORRUPT)
                        kw_err_set_detail("the audit batch of seq %llu-%llu cannot be decoded (run "
                                          "audit verify); page past it with %s=%llu",
                                          (unsigned long long)u.first, (unsigned long long)u.last,
                                          q->f->desc ? "before" : "after",
                                          (unsigned long long)(q->f->desc ? u.first : u.last));
                if (kw_ok(r))
                        r = query_batch(ks, q, &u, &ur, hashes);
        }
        free(hashes);
        kw_audit_batch_clear(&ur.batch);
        as_units_free(&it);
        return r;
}

/* A prefix of printable ASCII; its upper bound (the prefix with its last
 * byte incremented) into hi: every string starting with it sorts in
 * [prefix, hi) under SQLite's binary collation. */
static int actor_prefix_ok(const char *p, char hi[KW_AUDIT_ACTOR_PREFIX_MAX + 1])
{
        size_t n = strnlen(p, KW_AUDIT_ACTOR_PREFIX_MAX + 1);
        if (n == 0 || n > KW_AUDIT_ACTOR_PREFIX_MAX)
                return 0;
        for (size_t i = 0; i < n; i++)
                if (p[i] < 0x20 || p[i] > 0x7e)
                        return 0;
        memcpy(hi, p, n + 1);
        hi[n - 1]++;
        return 1;
}

kw_result kw_keystore_audit_query_filter(struct kw_keystore *ks, const struct kw_audit_filter *f,
                                         int (*cb)(const struct kw_audit_row *row, void *arg),
                                         void *arg)
{
        KS_PG(ks, kw_pg_audit_query_filter(ks->pg, f, cb, arg));
        KW_ENSURE(ks != NULL && f != NULL && cb != NULL, KW_ERR_INPUT);
        struct query q = { .f = f, .limit = f->limit ? f->limit : LIST_DEFAULT,
                           .hi = f->before ? f->before : UINT64_MAX };
        if (q.limit > LIST_MAX) {
                kw_err_set_detail("limit must be 1..%u", LIST_MAX);
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        KW_ENSURE(f->key_name == NULL || strnlen(f->key_name, 65) <= 64, KW_ERR_TOO_LARGE);
        KW_ENSURE(f->action == NULL || strnlen(f->action, 65) <= 64, KW_ERR_TOO_LARGE);
        if ((f->actor_prefix != NULL && !actor_prefix_ok(f->actor_prefix, q.actor_hi)) ||
            f->since_ms < 0 || f->until_ms < 0) {
                kw_err_set_detail("actor is 1..%d printable ASCII characters; times are not negative",
                                  KW_AUDIT_ACTOR_PREFIX_MAX);
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        q.rows = calloc(q.limit, sizeof *q.rows);
        KW_ENSURE(q.rows != NULL, KW_ERR_NOMEM);
        kw_result r = as_read_begin(ks);
        if (kw_ok(r)) {
                r = query_locked(ks, &q);
                as_read_end(ks);
        }
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

kw_result kw_keystore_audit_query(struct kw_keystore *ks, uint64_t after_seq, uint32_t limit,
                                  const char *key_name, const char *action,
                                  int (*cb)(const struct kw_audit_row *row, void *arg), void *arg)
{
        const struct kw_audit_filter f = { .after = after_seq, .limit = limit,
                                           .key_name = key_name, .action = action };
        return kw_keystore_audit_query_filter(ks, &f, cb, arg);
}
