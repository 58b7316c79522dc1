/*
 * audit_store.c - the audit chain in the key store: admin rows and key-use
 * batches appended, the chain head at open, the storage units merged by
 * seq and checked against the chain, verify and stats (contract in
 * audit_store.h; the record encoding in audit_codec.h; query, export reads
 * and prune in audit_read.c).
 *
 * A "unit" is what one row of storage holds: an admin row (table audit,
 * one record) or a batch (table audit_batch, its records first_seq ..
 * last_seq).  Units never overlap; reading the chain is a merge of the two
 * tables by seq (struct units).  Writes go through the writer connection
 * inside KS_RUN_TX (the chain head moves only after COMMIT); reads through
 * the reader connection, each inside one read transaction (BEGIN .. COMMIT
 * on that connection: one WAL snapshot), under ks->rmu.
 *
 * Choices made here:
 *   - a batch's min_ts_ms / max_ts_ms columns are derived data (retention by
 *     age reads them); verify checks them against the records;
 *   - audit_batch_name holds "k:<key>" and "a:<action>" for each batch that
 *     has such a record, so that a filtered query decodes only the batches
 *     that can match; a prune removes the names of the batches it deleted;
 *   - appends are split into batches of at most KW_AUDIT_BATCH_MAX_RECORDS
 *     records and about 4 MiB of fields, all in the caller's transaction.
 */
#define SQLITE_HAS_CODEC 1

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include "audit_logic.h"
#include "audit_store_int.h"

#define BATCH_RAW_SOFT (4u << 20)        /* start a new batch past this much field data */
#define BLOB_MAX (16u << 20)
#define LIST_MAX 1000u
#define LIST_DEFAULT 100u
#define ZLEVEL 1



/* ------------------------------------------------------------------ checks */

kw_result ks_check_audit_entry(const struct kw_audit_entry *e)
{
        return kw_audit_entry_check(e);
}

/* ------------------------------------------------------------ admin rows */

kw_result ks_tx_audit(struct kw_keystore *ks, struct ks_tx *tx, const struct kw_audit_entry *e)
{
        struct kw_audit_rec r;
        kw_audit_rec_of_entry(e, ks_now_ms(), &r);
        uint64_t seq = tx->seq + 1;
        KW_ENSURE(seq <= (uint64_t)INT64_MAX, KW_ERR_STORAGE);
        uint8_t h[KS_HASH_LEN];
        KW_TRY(kw_audit_chain_step(ks->hasher, tx->head, seq, &r, h));
        _cleanup_reset_ sqlite3_stmt *st = ks->st_audit_insert;
        KW_TRY(ks_bind_i64(ks, st, 1, (int64_t)seq));
        KW_TRY(ks_bind_i64(ks, st, 2, r.ts_ms));
        for (int i = 0; i < KW_AUDIT_FIELDS; i++)
                KW_TRY(ks_bind_text(ks, st, 3 + i, r.f[i]));
        KW_TRY(ks_bind_blob(ks, st, 9, tx->head, KS_HASH_LEN));
        KW_TRY(ks_bind_blob(ks, st, 10, h, KS_HASH_LEN));
        KW_TRY(ks_step_done(ks, st, "audit insert"));
        tx->seq = seq;
        memcpy(tx->head, h, KS_HASH_LEN);
        return KW_OK;
}

/* ---------------------------------------------------------------- batches */

/* The distinct "k:<key>" and "a:<action>" of recs, indexed for first_seq. */
static kw_result batch_names(struct kw_keystore *ks, const struct kw_audit_rec *recs, size_t n,
                             uint64_t first_seq)
{
        struct kw_audit_name_ref *v = calloc(2 * n, sizeof *v);
        KW_ENSURE(v != NULL, KW_ERR_NOMEM);
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
                if (recs[i].flen[KW_AUDIT_KEY] != 0)
                        v[m++] = (struct kw_audit_name_ref){ 'k', recs[i].f[KW_AUDIT_KEY],
                                                    recs[i].flen[KW_AUDIT_KEY] };
                if (recs[i].flen[KW_AUDIT_ACTION] != 0)
                        v[m++] = (struct kw_audit_name_ref){ 'a', recs[i].f[KW_AUDIT_ACTION],
                                                    recs[i].flen[KW_AUDIT_ACTION] };
        }
        qsort(v, m, sizeof *v, kw_audit_name_ref_cmp);
        char name[KW_AUDIT_FIELD_MAX + 3];
        kw_result r = KW_OK;
        for (size_t i = 0; kw_ok(r) && i < m; i++) {
                if (i > 0 && kw_audit_name_ref_cmp(&v[i - 1], &v[i]) == 0)
                        continue;
                name[0] = v[i].kind;
                name[1] = ':';
                memcpy(name + 2, v[i].s, v[i].len);
                name[v[i].len + 2] = '\0';
                sqlite3_stmt *st = ks->st_batch_name;
                r = ks_bind_text(ks, st, 1, name);
                if (kw_ok(r))
                        r = ks_bind_i64(ks, st, 2, (int64_t)first_seq);
                if (kw_ok(r))
                        r = ks_step_done(ks, st, "audit batch name");
                sqlite3_reset(st);
                sqlite3_clear_bindings(st);
        }
        free(v);
        return r;
}

/* One batch of recs[0..n) after tx's head: chain, encode, insert. */
static kw_result batch_insert_tx(struct kw_keystore *ks, struct ks_tx *tx,
                                 const struct kw_audit_rec *recs, size_t n, struct kw_buf *blob)
{
        uint64_t first = tx->seq + 1;
        KW_ENSURE(first <= (uint64_t)INT64_MAX - n, KW_ERR_STORAGE);
        uint8_t h[KS_HASH_LEN];
        int64_t lo, hi;
        KW_TRY(kw_audit_batch_chain(ks->hasher, tx->head, first, recs, n, NULL, h, &lo, &hi));
        kw_buf_reset(blob);
        KW_TRY(kw_audit_batch_encode(ks->encoder, recs, n, blob));
        {
                _cleanup_reset_ sqlite3_stmt *st = ks->st_batch_insert;
                KW_TRY(ks_bind_i64(ks, st, 1, (int64_t)first));
                KW_TRY(ks_bind_i64(ks, st, 2, (int64_t)(first + n - 1)));
                KW_TRY(ks_bind_i64(ks, st, 3, lo));
                KW_TRY(ks_bind_i64(ks, st, 4, hi));
                KW_TRY(ks_bind_blob(ks, st, 5, tx->head, KS_HASH_LEN));
                KW_TRY(ks_bind_blob(ks, st, 6, h, KS_HASH_LEN));
                KW_TRY(ks_bind_blob(ks, st, 7, blob->p, blob->len));
                KW_TRY(ks_step_done(ks, st, "audit batch insert"));
        }
        KW_TRY(batch_names(ks, recs, n, first));
        tx->seq = first + n - 1;
        memcpy(tx->head, h, KS_HASH_LEN);
        return KW_OK;
}

static kw_result append_tx(struct kw_keystore *ks, struct ks_tx *tx, const struct kw_audit_rec *recs,
                           size_t n)
{
        struct kw_buf blob;
        kw_buf_init(&blob, BLOB_MAX);
        kw_result r = KW_OK;
        size_t start = 0;
        while (kw_ok(r) && start < n) {
                size_t end = start, bytes = 0;
                while (end < n && end - start < KW_AUDIT_BATCH_MAX_RECORDS && bytes < BATCH_RAW_SOFT) {
                        for (int k = 0; k < KW_AUDIT_FIELDS; k++)
                                bytes += recs[end].flen[k] + 4;
                        end++;
                }
                r = batch_insert_tx(ks, tx, recs + start, end - start, &blob);
                start = end;
        }
        kw_buf_free(&blob);
        return r;
}

kw_result kw_keystore_audit_append(struct kw_keystore *ks, const struct kw_audit_entry *e, size_t n)
{
        KS_PG(ks, kw_pg_audit_append(ks->pg, e, n));
        KW_ENSURE(ks != NULL, KW_ERR_INPUT);
        struct kw_audit_rec *recs = NULL;
        KW_TRY(kw_audit_recs_of_entries(e, n, ks_now_ms(), &recs));
        if (n == 0)
                return KW_OK;
        kw_result r = KS_RUN_TX(ks, tx, append_tx(ks, tx, recs, n));
        free(recs);
        return r;
}

/* ------------------------------------------------------------- open/close */

static kw_result head_candidate(struct kw_keystore *ks, const char *sql, uint64_t *seq,
                                uint8_t hash[KS_HASH_LEN])
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, sql, &st));
        int row = 0;
        KW_TRY(ks_step_row(ks, st, "audit head", &row));
        if (!row)
                return KW_OK;
        sqlite3_int64 s = sqlite3_column_int64(st, 0);
        const void *h = sqlite3_column_blob(st, 1);
        if (s <= 0 || h == NULL || sqlite3_column_bytes(st, 1) != KS_HASH_LEN) {
                kw_err_set_detail("key store: the last audit record (seq %lld) is malformed",
                                  (long long)s);
                KW_BAIL(KW_ERR_DB_CORRUPT);
        }
        if ((uint64_t)s > *seq) {
                *seq = (uint64_t)s;
                memcpy(hash, h, KS_HASH_LEN);
        }
        return KW_OK;
}

/* The chain head: the newest of the last row, the last batch and the newest
 * checkpoint (everything may have been pruned). */
static kw_result load_head(struct kw_keystore *ks)
{
        uint64_t seq = 0;
        uint8_t h[KS_HASH_LEN] = { 0 };
        KW_TRY(head_candidate(ks, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &seq, h));
        KW_TRY(head_candidate(ks, "SELECT last_seq, hash FROM audit_batch ORDER BY first_seq DESC LIMIT 1",
                              &seq, h));
        KW_TRY(head_candidate(ks, SQL_CHECKPOINT, &seq, h));
        ks->head_seq = seq;
        memcpy(ks->head, h, KS_HASH_LEN);
        return KW_OK;
}

kw_result ks_audit_sync_head(struct kw_keystore *ks)
{
        int64_t v = 0;
        KW_TRY(ks_pragma_int(ks, "PRAGMA data_version", &v));
        if (v == ks->data_version)
                return KW_OK;
        KW_TRY(load_head(ks));
        ks->data_version = v;
        return KW_OK;
}

static kw_result open_reader(struct kw_keystore *ks, const struct kw_secret *db_key)
{
        int rc = sqlite3_open_v2(ks->path, &ks->rdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX,
                                 NULL);
        if (rc != SQLITE_OK)
                return ks_fail(ks->rdb, rc, "open (reader)");
        sqlite3_extended_result_codes(ks->rdb, 1);
        KW_TRY(ks_apply_key(ks->rdb, db_key));
        rc = sqlite3_busy_timeout(ks->rdb, KS_BUSY_TIMEOUT_MS);
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(ks->rdb, "PRAGMA query_only=1", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return ks_fail(ks->rdb, rc, "reader pragmas");
        return KW_OK;
}

kw_result ks_audit_open(struct kw_keystore *ks, const struct kw_secret *db_key)
{
        KW_TRY(load_head(ks));
        KW_TRY(ks_pragma_int(ks, "PRAGMA data_version", &ks->data_version));
        KW_TRY(kw_audit_hasher_new(&ks->hasher));
        KW_TRY(kw_audit_hasher_new(&ks->rhasher));
        KW_TRY(kw_audit_encoder_new(ZLEVEL, &ks->encoder));
        KW_TRY(ks_prepare(ks, SQL_AUDIT_INSERT, &ks->st_audit_insert));
        KW_TRY(ks_prepare(ks, SQL_BATCH_INSERT, &ks->st_batch_insert));
        KW_TRY(ks_prepare(ks, SQL_BATCH_NAME, &ks->st_batch_name));
        return open_reader(ks, db_key);
}

void ks_audit_close(struct kw_keystore *ks)
{
        sqlite3_finalize(ks->st_audit_insert);
        sqlite3_finalize(ks->st_batch_insert);
        sqlite3_finalize(ks->st_batch_name);
        ks->st_audit_insert = ks->st_batch_insert = ks->st_batch_name = NULL;
        if (ks->rdb != NULL && sqlite3_close(ks->rdb) != SQLITE_OK)
                sqlite3_close_v2(ks->rdb);
        ks->rdb = NULL;
        kw_audit_hasher_free(ks->hasher);
        kw_audit_hasher_free(ks->rhasher);
        ks->hasher = ks->rhasher = NULL;
        kw_audit_encoder_free(ks->encoder);
        ks->encoder = NULL;
}

/* ------------------------------------------------------------------ units */

const void *as_col_hash(sqlite3_stmt *st, int col)
{
        return sqlite3_column_bytes(st, col) == KS_HASH_LEN ? sqlite3_column_blob(st, col) : NULL;
}

static kw_result units_peek(struct kw_keystore *ks, sqlite3_stmt *st, int *pending, int *done)
{
        if (*pending || *done || st == NULL)
                return KW_OK;
        int row = 0;
        KW_TRY(ks_step_row(ks, st, "audit read", &row));
        *pending = row;
        *done = !row;
        return KW_OK;
}

/* The next unit by seq; *ret_have = 0 at the end. */
kw_result as_units_next(struct kw_keystore *ks, struct units *it, struct unit *u, int *ret_have)
{
        KW_TRY(units_peek(ks, it->rows, &it->row_pending, &it->rows_done));
        KW_TRY(units_peek(ks, it->batches, &it->batch_pending, &it->batches_done));
        int take_row = it->row_pending;
        if (it->row_pending && it->batch_pending) {
                uint64_t row = (uint64_t)sqlite3_column_int64(it->rows, 0),
                         batch = (uint64_t)sqlite3_column_int64(it->batches, 0);
                take_row = it->desc ? row > batch : row < batch;
        }
        *ret_have = it->row_pending || it->batch_pending;
        if (!*ret_have)
                return KW_OK;
        memset(u, 0, sizeof *u);
        if (take_row) {
                sqlite3_stmt *st = it->rows;
                it->row_pending = 0;
                u->first = u->last = (uint64_t)sqlite3_column_int64(st, 0);
                u->min_ts = u->max_ts = sqlite3_column_int64(st, 1);
                u->prev = as_col_hash(st, 8);
                u->hash = as_col_hash(st, 9);
                u->row = st;
                return KW_OK;
        }
        sqlite3_stmt *st = it->batches;
        it->batch_pending = 0;
        u->is_batch = 1;
        u->first = (uint64_t)sqlite3_column_int64(st, 0);
        u->last = (uint64_t)sqlite3_column_int64(st, 1);
        u->min_ts = sqlite3_column_int64(st, 2);
        u->max_ts = sqlite3_column_int64(st, 3);
        u->prev = as_col_hash(st, 4);
        u->hash = as_col_hash(st, 5);
        u->data = sqlite3_column_blob(st, 6);
        int n = sqlite3_column_bytes(st, 6);
        u->data_len = u->data != NULL && n > 0 ? (size_t)n : 0;
        return KW_OK;
}

void as_row_rec(sqlite3_stmt *st, struct kw_audit_rec *r)
{
        r->ts_ms = sqlite3_column_int64(st, 1);
        for (int i = 0; i < KW_AUDIT_FIELDS; i++) {
                const unsigned char *s = sqlite3_column_text(st, 2 + i);
                int n = sqlite3_column_bytes(st, 2 + i);
                r->f[i] = s != NULL ? (const char *)s : "";
                r->flen[i] = s != NULL && n > 0 ? (size_t)n : 0;
        }
}

/* KW_ERR_DB_CORRUPT when a batch does not decode (detail says why). */
kw_result as_unit_records(const struct unit *u, struct unit_recs *ur)
{
        kw_audit_batch_clear(&ur->batch);
        if (!u->is_batch) {
                as_row_rec(u->row, &ur->one);
                ur->recs = &ur->one;
                ur->n = 1;
                return KW_OK;
        }
        KW_TRY(kw_audit_batch_decode(u->data, u->data_len, &ur->batch));
        ur->recs = ur->batch.recs;
        ur->n = ur->batch.n;
        return KW_OK;
}

/* Checks u against the chain at (expect, prev): its first seq, its stored
 * link, its records' hashes (into hashes[] when not NULL, room for
 * KW_AUDIT_BATCH_MAX_RECORDS) and its stored hash.  *why = NULL when it
 * holds, else a static reason; errors are only for memory and crypto. */
kw_result as_unit_check(struct kw_keystore *ks, const struct unit *u, uint64_t expect,
                            const uint8_t prev[KS_HASH_LEN], struct unit_recs *ur,
                            uint8_t (*hashes)[KS_HASH_LEN], uint8_t ret_head[KS_HASH_LEN],
                            const char **why)
{
        *why = NULL;
        if (u->first != expect || u->last < u->first) {
                *why = u->first < expect ? "a record at or before the checkpoint or a previous one"
                                         : "records are missing before it";
                return KW_OK;
        }
        if (u->prev == NULL || u->hash == NULL || CRYPTO_memcmp(u->prev, prev, KS_HASH_LEN) != 0) {
                *why = "its link to the previous record does not match";
                return KW_OK;
        }
        kw_result r = as_unit_records(u, ur);
        if (r.code == KW_ERR_DB_CORRUPT) {
                *why = "its batch cannot be decoded";
                return KW_OK;
        }
        KW_TRY(r);
        if (ur->n != u->last - u->first + 1) {
                *why = "its batch holds another number of records than its seq range";
                return KW_OK;
        }
        return kw_audit_unit_verify(ks->rhasher, prev, u->first, ur->recs, ur->n, hashes, u->hash,
                                    u->is_batch, u->min_ts, u->max_ts, ret_head, why);
}

/* ---------------------------------------------------------- read sessions */

/* A read transaction on the reader connection, under rmu. */
kw_result as_read_begin(struct kw_keystore *ks)
{
        pthread_mutex_lock(&ks->rmu);
        int rc = sqlite3_exec(ks->rdb, "BEGIN", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                kw_result r = ks_fail(ks->rdb, rc, "begin (reader)");
                pthread_mutex_unlock(&ks->rmu);
                return r;
        }
        return KW_OK;
}

void as_read_end(struct kw_keystore *ks)
{
        if (!sqlite3_get_autocommit(ks->rdb) &&
            sqlite3_exec(ks->rdb, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
                sqlite3_exec(ks->rdb, "ROLLBACK", NULL, NULL, NULL);
        pthread_mutex_unlock(&ks->rmu);
}

/* The newest checkpoint (seq 0 and zeros when none). */
kw_result as_read_checkpoint(struct kw_keystore *ks, uint64_t *seq, uint8_t hash[KS_HASH_LEN])
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_rprepare(ks, SQL_CHECKPOINT, &st));
        int row = 0;
        KW_TRY(ks_step_row(ks, st, "audit checkpoint", &row));
        *seq = 0;
        memset(hash, 0, KS_HASH_LEN);
        if (!row)
                return KW_OK;
        const void *h = as_col_hash(st, 1);
        sqlite3_int64 s = sqlite3_column_int64(st, 0);
        if (h == NULL || s <= 0) {
                kw_err_set_detail("key store: the audit checkpoint at seq %lld is malformed",
                                  (long long)s);
                KW_BAIL(KW_ERR_DB_CORRUPT);
        }
        *seq = (uint64_t)s;
        memcpy(hash, h, KS_HASH_LEN);
        return KW_OK;
}

/* Every unit from the beginning (units at or below a checkpoint included:
 * verify flags them). */
kw_result as_units_all(struct kw_keystore *ks, struct units *it)
{
        memset(it, 0, sizeof *it);
        KW_TRY(ks_rprepare(ks, SQL_ROWS_AFTER, &it->rows));
        KW_TRY(ks_bind_i64(ks, it->rows, 1, 0));
        KW_TRY(ks_rprepare(ks, SQL_BATCHES, &it->batches));
        return ks_bind_i64(ks, it->batches, 1, 0);
}

void as_units_free(struct units *it)
{
        sqlite3_finalize(it->rows);
        sqlite3_finalize(it->batches);
        memset(it, 0, sizeof *it);
}

/* ------------------------------------------------------------------- walk */

kw_result as_walk(struct kw_keystore *ks, struct as_walk *w, int (*want)(const struct unit *, void *),
                  kw_result (*visit)(const struct unit *, const struct unit_recs *, const char *,
                                     const uint8_t *, void *, int *),
                  void *arg)
{
        KW_TRY(as_read_checkpoint(ks, &w->start_seq, w->start));
        w->head_seq = w->start_seq;
        memcpy(w->head, w->start, KS_HASH_LEN);
        struct units it;
        struct unit_recs ur;
        memset(&ur, 0, sizeof ur);
        kw_result r = as_units_all(ks, &it);
        while (kw_ok(r)) {
                struct unit u;
                int have = 0, stop = 0;
                r = as_units_next(ks, &it, &u, &have);
                if (!kw_ok(r) || !have || (want != NULL && !want(&u, arg)))
                        break;
                const char *why = NULL;
                uint8_t h[KS_HASH_LEN];
                r = as_unit_check(ks, &u, w->head_seq + 1, w->head, &ur, w->hashes, h, &why);
                if (kw_ok(r))
                        r = visit(&u, &ur, why, w->head, arg, &stop);
                if (!kw_ok(r) || stop || why != NULL)
                        break;
                w->head_seq = u.last;
                memcpy(w->head, h, KS_HASH_LEN);
        }
        kw_audit_batch_clear(&ur.batch);
        as_units_free(&it);
        return r;
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

static kw_result verify_locked(struct kw_keystore *ks, struct kw_audit_verify *v)
{
        struct as_walk w = { .hashes = NULL };
        KW_TRY(as_walk(ks, &w, NULL, verify_visit, v));
        v->start_seq = w.start_seq;
        memcpy(v->start_hash, w.start, KS_HASH_LEN);
        v->head_seq = w.head_seq;
        memcpy(v->head_hash, w.head, KS_HASH_LEN);
        return KW_OK;
}

kw_result kw_keystore_audit_verify_ex(struct kw_keystore *ks, struct kw_audit_verify *ret)
{
        KS_PG(ks, kw_pg_audit_verify_ex(ks->pg, ret));
        KW_ENSURE(ks != NULL && ret != NULL, KW_ERR_INPUT);
        struct kw_audit_verify v;
        memset(&v, 0, sizeof v);
        v.why = "";
        KW_TRY(as_read_begin(ks));
        kw_result r = verify_locked(ks, &v);
        as_read_end(ks);
        if (kw_ok(r))
                *ret = v;
        return r;
}

kw_result kw_keystore_audit_verify(struct kw_keystore *ks, uint64_t *ret_rows, uint64_t *ret_first_bad)
{
        KW_ENSURE(ret_rows != NULL && ret_first_bad != NULL, KW_ERR_INPUT);
        struct kw_audit_verify v;
        KW_TRY(kw_keystore_audit_verify_ex(ks, &v));
        *ret_rows = v.records;
        *ret_first_bad = v.first_bad_seq;
        return KW_OK;
}

/* ------------------------------------------------------------------- stats */

static kw_result read_u64(struct kw_keystore *ks, const char *sql, int *ret_found, uint64_t *ret)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_rprepare(ks, sql, &st));
        int row = 0;
        KW_TRY(ks_step_row(ks, st, "audit stats", &row));
        *ret_found = row && sqlite3_column_type(st, 0) != SQLITE_NULL;
        *ret = *ret_found ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
        return KW_OK;
}

static uint64_t file_bytes(const char *path, const char *suffix)
{
        char p[4200];
        struct stat st;
        if (snprintf(p, sizeof p, "%s%s", path, suffix) >= (int)sizeof p || stat(p, &st) != 0)
                return 0;
        return (uint64_t)st.st_size;
}

static kw_result stats_locked(struct kw_keystore *ks, struct kw_audit_stats *s)
{
        int f1, f2;
        uint64_t row_first, batch_first, v;
        KW_TRY(read_u64(ks, "SELECT seq FROM audit ORDER BY seq LIMIT 1", &f1, &row_first));
        KW_TRY(read_u64(ks, "SELECT first_seq FROM audit_batch ORDER BY first_seq LIMIT 1", &f2,
                        &batch_first));
        if (f1 || f2) {
                int row_first_wins = f1 && (!f2 || row_first < batch_first);
                s->first_seq = row_first_wins ? row_first : batch_first;
                uint64_t ts;
                int found;
                KW_TRY(read_u64(ks, row_first_wins ? "SELECT ts_ms FROM audit ORDER BY seq LIMIT 1"
                                                   : "SELECT min_ts_ms FROM audit_batch ORDER BY "
                                                     "first_seq LIMIT 1",
                                &found, &ts));
                s->oldest_ts_ms = (int64_t)ts;
        }
        KW_TRY(read_u64(ks, "SELECT seq FROM audit ORDER BY seq DESC LIMIT 1", &f1, &v));
        s->last_seq = f1 ? v : 0;
        KW_TRY(read_u64(ks, "SELECT last_seq FROM audit_batch ORDER BY first_seq DESC LIMIT 1", &f2, &v));
        if (f2 && v > s->last_seq)
                s->last_seq = v;
        KW_TRY(as_read_checkpoint(ks, &s->checkpoint_seq, s->checkpoint_hash));
        KW_TRY(read_u64(ks, "SELECT count(*) FROM audit_checkpoint", &f1, &s->checkpoints));
        s->records = s->first_seq != 0 && s->last_seq >= s->first_seq ? s->last_seq - s->first_seq + 1 : 0;
        if (s->checkpoint_seq > s->last_seq)
                s->last_seq = s->checkpoint_seq;
        uint64_t pages, free_pages, page_size;
        KW_TRY(read_u64(ks, "PRAGMA page_count", &f1, &pages));
        KW_TRY(read_u64(ks, "PRAGMA freelist_count", &f1, &free_pages));
        KW_TRY(read_u64(ks, "PRAGMA page_size", &f1, &page_size));
        s->db_bytes = (pages >= free_pages ? pages - free_pages : 0) * page_size;
        s->db_file_bytes = file_bytes(ks->path, "");
        s->wal_bytes = file_bytes(ks->path, "-wal");
        return KW_OK;
}

kw_result kw_keystore_audit_stats(struct kw_keystore *ks, struct kw_audit_stats *ret)
{
        KS_PG(ks, kw_pg_audit_stats(ks->pg, ret));
        KW_ENSURE(ks != NULL && ret != NULL, KW_ERR_INPUT);
        struct kw_audit_stats s;
        memset(&s, 0, sizeof s);
        KW_TRY(as_read_begin(ks));
        kw_result r = stats_locked(ks, &s);
        as_read_end(ks);
        if (kw_ok(r))
                *ret = s;
        return r;
}

