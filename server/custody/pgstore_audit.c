/*
 * pgstore_audit.c - the audit chain on PostgreSQL (fleet mode), its
 * appends: the contract of audit_store.h for kw_pg_audit_append and the
 * audit row of a mutation (pg_tx_audit), with one chain for every node of
 * the fleet; its reads (query, verify, stats, read_oldest) and prune are
 * in pgstore_audit_read.c.  Records are hashed, batches encoded and
 * stored, and units checked exactly as audit_store.c / audit_read.c do
 * (audit_codec.h): a row of table audit per admin action, a row of
 * audit_batch (+ its names in audit_batch_name) per key-use flush; column
 * node says which node wrote it.
 *
 * Whoever administers the database can write any row, and a SHA-256 chain
 * can be recomputed without a key; what anchors the chain is its head,
 * audit_head (seq, hash) with a row MAC (pgstore_int.h: pg_row_mac), and
 * each checkpoint's row MAC:
 *   - every append (pg_tx_audit inside a mutation's transaction,
 *     kw_pg_audit_append's own one) locks the head FOR UPDATE, checks its
 *     MAC, writes the next seqs and moves the head with a new MAC in the
 *     same transaction: seq comes only from the locked head, so any number
 *     of nodes append to one chain without a gap or a duplicate;
 *   - verify recomputes the chain from the newest checkpoint (its MAC
 *     checked) and ends by checking that the head's MAC holds and that the
 *     head names the last record: a deleted tail, an edited head and a
 *     rewritten chain are reported like a broken link.
 *
 * Choices made here:
 *   - audit_batch_name holds "k:<key>" / "a:<action>" only for names of at
 *     most KW_AUDIT_NAME_MAX bytes of valid UTF-8: a query never asks for
 *     a longer one (KW_ERR_TOO_LARGE), PostgreSQL's btree refuses entries
 *     past about 2.7 kB and a UTF-8 database refuses other text, either of
 *     which would fail the whole flush (the records themselves are bytea).
 * Nothing here logs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "../common/json_io.h"
#include "audit_logic.h"
#include "pgstore_int.h"

#define BATCH_RAW_SOFT (4u << 20)        /* start a new batch past this much data */
#define BLOB_MAX (16u << 20)
#define ZLEVEL 1

#define HLEN PG_HASH_LEN

static const uint8_t zero_hash[HLEN];

/* ------------------------------------------------------------------ SQL */

#define SQL_HEAD "SELECT seq, hash, mac, 0 FROM audit_head WHERE id = 1"
/* The head locked until COMMIT, and whether a record is stored past it (an
 * old head put back with its MAC): the highest row seq, and the last seq of
 * the batch that starts last (two index probes: EXISTS (... seq > h.seq)
 * would be planned as a scan of the table).  Waiting for the lock, READ
 * COMMITTED re-reads the head row while the subqueries keep the
 * statement's snapshot, which does not hold what the previous holder
 * appended: no false alarm. */
#define SQL_HEAD_LOCK                                                                    \
        "SELECT h.seq, h.hash, h.mac,"                                                  \
        " (coalesce((SELECT max(seq) FROM audit), 0) > h.seq"                           \
        " OR coalesce((SELECT last_seq FROM audit_batch ORDER BY first_seq DESC LIMIT 1), 0)" \
        " > h.seq)::int FROM audit_head h WHERE h.id = 1 FOR UPDATE OF h"
#define SQL_HEAD_SET "UPDATE audit_head SET seq = $1, hash = $2, mac = $3 WHERE id = 1"
#define SQL_ROW_INSERT                                                                       \
        "INSERT INTO audit (seq, ts_ms, actor, action, key_name, result, detail, request_id," \
        " prev_hash, hash, node) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
#define SQL_BATCH_INSERT                                                                    \
        "INSERT INTO audit_batch (first_seq, last_seq, min_ts_ms, max_ts_ms, prev_hash, hash," \
        " node, data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
/* $1: a text[] literal of the batch's distinct names */
#define SQL_BATCH_NAMES                                                             \
        "INSERT INTO audit_batch_name (name, first_seq) SELECT unnest($1::text[]), $2" \
        " ON CONFLICT DO NOTHING"

/* ---------------------------------------------------------------- helpers */

/* BEGIN on c with no gen bump (an append, a prune): READ COMMITTED. */
kw_result pg_tx_begin_plain(struct kw_pgstore *pg, struct pg_conn *c, const char *what)
{
        KW_TRY(pg_exec(pg, c, "BEGIN", NULL, what, NULL));
        c->in_tx = 1;
        return KW_OK;
}

/* Ends a transaction that call ran in: COMMIT on success, ROLLBACK else. */
kw_result pg_tx_end(struct kw_pgstore *pg, struct pg_conn *c, kw_result r)
{
        if (kw_ok(r))
                return pg_tx_commit(pg, c);
        pg_tx_rollback(pg, c);
        return r;
}

/* -------------------------------------------------------------- the head */

/* The head row (locked FOR UPDATE with lock), its MAC checked: *ret_state
 * says whether it holds (with lock: PG_AUDIT_HEAD_BEHIND when records are
 * stored past it); KW_ERR_SEALED without the MAC key. */
kw_result pg_audit_head_read(struct kw_pgstore *pg, struct pg_conn *c, int lock,
                             struct pg_audit_head *h, enum pg_audit_head_state *ret_state)
{
        PGresult *res _cleanup_pgresult_ = NULL;
        KW_TRY(pg_exec(pg, c, lock ? SQL_HEAD_LOCK : SQL_HEAD, NULL, "audit head", &res));
        memset(h, 0, sizeof *h);
        if (PQntuples(res) != 1) {
                *ret_state = PG_AUDIT_HEAD_MISSING;
                return KW_OK;
        }
        int64_t seq = 0, ahead = 0;
        const uint8_t *hash = NULL, *mac = NULL;
        size_t hash_len = 0, mac_len = 0;
        if (!kw_ok(pg_col_i64(res, 0, 0, &seq)) || !kw_ok(pg_col_i64(res, 0, 3, &ahead)) || !kw_ok(pg_col_bytes(res, 0, 1, &hash, &hash_len)) ||
            !kw_ok(pg_col_bytes(res, 0, 2, &mac, &mac_len)) || seq < 0 || hash == NULL ||
            hash_len != HLEN) {
                *ret_state = PG_AUDIT_HEAD_BAD_MAC;
                return KW_OK;
        }
        if (mac == NULL) {
                /* the initial head only: before the first record was written */
                *ret_state = seq == 0 && CRYPTO_memcmp(hash, zero_hash, HLEN) == 0 /* lint: allow (constant time) */
                                     ? PG_AUDIT_HEAD_OK : PG_AUDIT_HEAD_BAD_MAC;
        } else {
                const struct pg_field f[] = { PG_FINT(1), PG_FINT(seq), PG_FBYTES(hash, hash_len) };
                kw_result r = pg_row_verify(pg, "audit_head", "1", f, 3, mac, mac_len);
                if (r.code != 0 && r.code != KW_ERR_DB_TAMPERED)
                        return r;
                *ret_state = r.code == 0 ? PG_AUDIT_HEAD_OK : PG_AUDIT_HEAD_BAD_MAC;
        }
        if (*ret_state == PG_AUDIT_HEAD_OK && ahead != 0)
                *ret_state = PG_AUDIT_HEAD_BEHIND;
        h->seq = (uint64_t)seq;
        memcpy(h->hash, hash, HLEN);
        return KW_OK;
}

/* An append's first step: the head locked until COMMIT, and trusted. */
static kw_result head_lock(struct kw_pgstore *pg, struct pg_conn *c, struct pg_audit_head *h)
{
        enum pg_audit_head_state st = PG_AUDIT_HEAD_OK;
        KW_TRY(pg_audit_head_read(pg, c, 1, h, &st));
        if (st == PG_AUDIT_HEAD_MISSING)
                return KW_FAIL(KW_ERR_DB_TAMPERED, "the audit chain's head (audit_head) is missing: "
                                                   "it was changed outside keyward");
        if (st == PG_AUDIT_HEAD_BEHIND)
                return KW_FAIL(KW_ERR_DB_TAMPERED, "audit records are stored past the chain's head "
                                                   "(seq %llu): it was set back outside keyward",
                               (unsigned long long)h->seq);
        if (st != PG_AUDIT_HEAD_OK)
                return KW_FAIL(KW_ERR_DB_TAMPERED, "row audit_head/1 fails its MAC: it was changed "
                                                   "outside keyward");
        return KW_OK;
}

/* An append's last step: the head names h, with its MAC. */
static kw_result head_store(struct kw_pgstore *pg, struct pg_conn *c, const struct pg_audit_head *h)
{
        KW_ENSURE(h->seq <= (uint64_t)INT64_MAX, KW_ERR_STORAGE);
        uint8_t mac[PG_MAC_LEN];
        const struct pg_field f[] = { PG_FINT(1), PG_FINT(h->seq), PG_FBYTES(h->hash, HLEN) };
        KW_TRY(pg_row_mac(pg, "audit_head", f, 3, mac));
        struct pg_params p = { 0 };
        pg_param_i64(&p, (int64_t)h->seq);
        pg_param_bytes(&p, h->hash, HLEN);
        pg_param_bytes(&p, mac, sizeof mac);
        PGresult *res _cleanup_pgresult_ = NULL;
        KW_TRY(pg_exec(pg, c, SQL_HEAD_SET, &p, "audit head", &res));
        KW_ENSURE(pg_affected(res) == 1, KW_ERR_STORAGE);
        return KW_OK;
}

/* A stored seq where the head said the chain ends: the head was set back
 * (an old head with its MAC put back). */
static kw_result set_back(kw_result r, uint64_t seq)
{
        if (r.code != KW_ERR_EXISTS)
                return r;
        return KW_FAIL(KW_ERR_DB_TAMPERED, "audit seq %llu is stored already: the chain's head was "
                                           "set back outside keyward", (unsigned long long)seq);
}

/* ------------------------------------------------------------ admin rows */

static kw_result row_insert(struct kw_pgstore *pg, struct pg_conn *c, struct pg_audit_head *h,
                            const struct kw_audit_rec *r)
{
        uint64_t seq = h->seq + 1;
        KW_ENSURE(seq <= (uint64_t)INT64_MAX, KW_ERR_STORAGE);
        uint8_t hash[HLEN];
        KW_TRY(kw_audit_chain_step(c->hasher, h->hash, seq, r, hash));
        struct pg_params p = { 0 };
        pg_param_i64(&p, (int64_t)seq);
        pg_param_i64(&p, r->ts_ms);
        for (int i = 0; i < KW_AUDIT_FIELDS; i++)
                pg_param_text(&p, r->f[i]);
        pg_param_bytes(&p, h->hash, HLEN);
        pg_param_bytes(&p, hash, HLEN);
        pg_param_text(&p, pg->node_id);
        KW_TRY(set_back(pg_exec(pg, c, SQL_ROW_INSERT, &p, "audit insert", NULL), seq));
        h->seq = seq;
        memcpy(h->hash, hash, HLEN);
        return KW_OK;
}

kw_result pg_tx_audit(struct kw_pgstore *pg, struct pg_conn *c, const struct kw_audit_entry *e)
{
        KW_ENSURE(pg != NULL && c != NULL && e != NULL, KW_ERR_INPUT);
        KW_TRY(pg_check_audit_entry(e));
        struct kw_audit_rec r;
        kw_audit_rec_of_entry(e, pg_now_ms(), &r);
        struct pg_audit_head h;
        KW_TRY(head_lock(pg, c, &h));
        KW_TRY(row_insert(pg, c, &h, &r));
        return head_store(pg, c, &h);
}

/* ---------------------------------------------------------------- batches */

/* Appends s as a quoted element of a text[] literal. */
static kw_result array_put(struct kw_buf *b, char kind, const char *s, size_t len)
{
        KW_TRY(kw_buf_put(b, b->len > 1 ? ",\"" : "\"", b->len > 1 ? 2 : 1));
        KW_TRY(kw_buf_put_u8(b, (uint8_t)kind));
        KW_TRY(kw_buf_put_u8(b, ':'));
        for (size_t i = 0; i < len; i++) {
                if (s[i] == '"' || s[i] == '\\')
                        KW_TRY(kw_buf_put_u8(b, '\\'));
                KW_TRY(kw_buf_put_u8(b, (uint8_t)s[i]));
        }
        return kw_buf_put_u8(b, '"');
}

/* The distinct "k:<key>" and "a:<action>" of recs (those a query can ask
 * for: at most KW_AUDIT_NAME_MAX bytes of UTF-8), indexed for first_seq in
 * one statement. */
static kw_result batch_names(struct kw_pgstore *pg, struct pg_conn *c,
                             const struct kw_audit_rec *recs, size_t n, uint64_t first_seq)
{
        struct kw_audit_name_ref *v = calloc(2 * n, sizeof *v);
        KW_ENSURE(v != NULL, KW_ERR_NOMEM);
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
                size_t kl = recs[i].flen[KW_AUDIT_KEY], al = recs[i].flen[KW_AUDIT_ACTION];
                const char *k = recs[i].f[KW_AUDIT_KEY], *a = recs[i].f[KW_AUDIT_ACTION];
                if (kl != 0 && kl <= KW_AUDIT_NAME_MAX && kw_utf8_valid((const uint8_t *)k, kl))
                        v[m++] = (struct kw_audit_name_ref){ 'k', k, kl };
                if (al != 0 && al <= KW_AUDIT_NAME_MAX && kw_utf8_valid((const uint8_t *)a, al))
                        v[m++] = (struct kw_audit_name_ref){ 'a', a, al };
        }
        qsort(v, m, sizeof *v, kw_audit_name_ref_cmp);
        struct kw_buf arr;
        kw_buf_init(&arr, BLOB_MAX);
        kw_result r = kw_buf_put_u8(&arr, '{');
        for (size_t i = 0; kw_ok(r) && i < m; i++)
                if (i == 0 || kw_audit_name_ref_cmp(&v[i - 1], &v[i]) != 0)
                        r = array_put(&arr, v[i].kind, v[i].s, v[i].len);
        if (kw_ok(r))
                r = kw_buf_put(&arr, "}", 2);   /* with its NUL: a text parameter */
        free(v);
        if (kw_ok(r) && m > 0) {
                struct pg_params p = { 0 };
                pg_param_text(&p, (const char *)arr.p);
                pg_param_i64(&p, (int64_t)first_seq);
                r = pg_exec(pg, c, SQL_BATCH_NAMES, &p, "audit batch names", NULL);
        }
        kw_buf_free(&arr);
        return r;
}

/* One batch of recs[0..n) after h: chain, encode, insert. */
static kw_result batch_insert(struct kw_pgstore *pg, struct pg_conn *c, struct pg_audit_head *h,
                              const struct kw_audit_rec *recs, size_t n, struct kw_buf *blob)
{
        uint64_t first = h->seq + 1;
        KW_ENSURE(first <= (uint64_t)INT64_MAX - n, KW_ERR_STORAGE);
        uint8_t hash[HLEN];
        int64_t lo, hi;
        KW_TRY(kw_audit_batch_chain(c->hasher, h->hash, first, recs, n, NULL, hash, &lo, &hi));
        kw_buf_reset(blob);
        KW_TRY(kw_audit_batch_encode(c->encoder, recs, n, blob));
        struct pg_params p = { 0 };
        pg_param_i64(&p, (int64_t)first);
        pg_param_i64(&p, (int64_t)(first + n - 1));
        pg_param_i64(&p, lo);
        pg_param_i64(&p, hi);
        pg_param_bytes(&p, h->hash, HLEN);
        pg_param_bytes(&p, hash, HLEN);
        pg_param_text(&p, pg->node_id);
        pg_param_bytes(&p, blob->p, blob->len);
        KW_TRY(set_back(pg_exec(pg, c, SQL_BATCH_INSERT, &p, "audit batch insert", NULL), first));
        KW_TRY(batch_names(pg, c, recs, n, first));
        h->seq = first + n - 1;
        memcpy(h->hash, hash, HLEN);
        return KW_OK;
}

/* Inside the open transaction: the head locked, recs appended in batches
 * as audit_store.c splits them, the head moved. */
static kw_result append_tx(struct kw_pgstore *pg, struct pg_conn *c, const struct kw_audit_rec *recs,
                           size_t n)
{
        struct pg_audit_head h;
        KW_TRY(head_lock(pg, c, &h));
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
                r = batch_insert(pg, c, &h, recs + start, end - start, &blob);
                start = end;
        }
        kw_buf_free(&blob);
        KW_TRY(r);
        return head_store(pg, c, &h);
}

kw_result kw_pg_audit_append(struct kw_pgstore *pg, const struct kw_audit_entry *e, size_t n)
{
        KW_ENSURE(pg != NULL, KW_ERR_INPUT);
        struct kw_audit_rec *recs = NULL;
        KW_TRY(kw_audit_recs_of_entries(e, n, pg_now_ms(), &recs));
        if (n == 0)
                return KW_OK;
        kw_result r;
        struct pg_conn *c = pg_acquire(pg, &r);
        if (c != NULL) {
                if (c->encoder == NULL)
                        r = kw_audit_encoder_new(ZLEVEL, &c->encoder);
                if (kw_ok(r))
                        r = pg_tx_begin_plain(pg, c, "audit append");
                if (kw_ok(r))
                        r = pg_tx_end(pg, c, append_tx(pg, c, recs, n));
                pg_release(pg, c);
        }
        free(recs);
        return r;
}
