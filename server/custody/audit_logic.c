/*
 * audit_logic.c - the audit log's engine-independent steps (contract in
 * audit_logic.h).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "audit_logic.h"

kw_result kw_audit_entry_check(const struct kw_audit_entry *e)
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

void kw_audit_rec_of_entry(const struct kw_audit_entry *e, int64_t now, struct kw_audit_rec *r)
{
        kw_audit_rec_set(r, e->ts_ms != 0 ? e->ts_ms : now, e->actor, e->action, e->key_name,
                         e->result, e->detail, e->request_id);
}

kw_result kw_audit_recs_of_entries(const struct kw_audit_entry *e, size_t n, int64_t now,
                                   struct kw_audit_rec **ret)
{
        *ret = NULL;
        KW_ENSURE(n == 0 || e != NULL, KW_ERR_INPUT);
        KW_ENSURE(n <= KW_AUDIT_APPEND_MAX, KW_ERR_TOO_LARGE);
        for (size_t i = 0; i < n; i++)
                KW_TRY(kw_audit_entry_check(&e[i]));
        if (n == 0)
                return KW_OK;
        struct kw_audit_rec *recs = malloc(n * sizeof *recs);
        KW_ENSURE(recs != NULL, KW_ERR_NOMEM);
        for (size_t i = 0; i < n; i++)
                kw_audit_rec_of_entry(&e[i], now, &recs[i]);
        *ret = recs;
        return KW_OK;
}

kw_result kw_audit_batch_chain(struct kw_audit_hasher *h, const uint8_t prev[KW_AUDIT_HASH_LEN],
                               uint64_t first, const struct kw_audit_rec *recs, size_t n,
                               uint8_t (*hashes)[KW_AUDIT_HASH_LEN],
                               uint8_t ret_hash[KW_AUDIT_HASH_LEN], int64_t *ret_lo,
                               int64_t *ret_hi)
{
        memmove(ret_hash, prev, KW_AUDIT_HASH_LEN);
        int64_t lo = recs[0].ts_ms;
        int64_t hi = lo;
        for (size_t i = 0; i < n; i++) {
                KW_TRY(kw_audit_chain_step(h, ret_hash, first + i, &recs[i], ret_hash));
                if (hashes != NULL)
                        memcpy(hashes[i], ret_hash, KW_AUDIT_HASH_LEN);
                lo = recs[i].ts_ms < lo ? recs[i].ts_ms : lo;
                hi = recs[i].ts_ms > hi ? recs[i].ts_ms : hi;
        }
        *ret_lo = lo;
        *ret_hi = hi;
        return KW_OK;
}

kw_result kw_audit_unit_verify(struct kw_audit_hasher *h, const uint8_t prev[KW_AUDIT_HASH_LEN],
                               uint64_t first, const struct kw_audit_rec *recs, size_t n,
                               uint8_t (*hashes)[KW_AUDIT_HASH_LEN],
                               const uint8_t stored_hash[KW_AUDIT_HASH_LEN], int is_batch,
                               int64_t min_ts, int64_t max_ts, uint8_t ret_head[KW_AUDIT_HASH_LEN],
                               const char **why)
{
        uint8_t hash[KW_AUDIT_HASH_LEN];
        int64_t lo, hi;
        KW_TRY(kw_audit_batch_chain(h, prev, first, recs, n, hashes, hash, &lo, &hi));
        if (CRYPTO_memcmp(hash, stored_hash, KW_AUDIT_HASH_LEN) != 0) {   /* lint: allow (constant time) */
                *why = is_batch ? "its records do not hash to its stored hash"
                                : "its fields do not hash to its stored hash";
                return KW_OK;
        }
        if (is_batch && (lo != min_ts || hi != max_ts)) {
                *why = "its stored time range does not match its records";
                return KW_OK;
        }
        memcpy(ret_head, hash, KW_AUDIT_HASH_LEN);
        return KW_OK;
}

int kw_audit_select_takes(const struct kw_audit_select *sel, uint64_t taken, uint64_t n,
                          int64_t max_ts)
{
        if (taken >= sel->max_records || n > sel->max_records - taken)
                return 0;
        return taken < sel->min_records || (sel->before_ts_ms != 0 && max_ts < sel->before_ts_ms);
}

int kw_audit_name_ref_cmp(const void *a, const void *b)
{
        const struct kw_audit_name_ref *x = a, *y = b;
        if (x->kind != y->kind)
                return x->kind < y->kind ? -1 : 1;
        size_t n = x->len < y->len ? x->len : y->len;
        int c = memcmp(x->s, y->s, n);
        return c != 0 ? c : x->len < y->len ? -1 : x->len > y->len;
}

static int field_is(const struct kw_audit_rec *r, int i, const char *want)
{
        return want == NULL || (r->flen[i] == strlen(want) && memcmp(r->f[i], want, r->flen[i]) == 0);
}

int kw_audit_rec_matches(const struct kw_audit_filter *f, uint64_t hi, uint64_t seq,
                         const struct kw_audit_rec *r)
{
        size_t ap = f->actor_prefix != NULL ? strlen(f->actor_prefix) : 0;
        return seq > f->after && seq < hi && field_is(r, KW_AUDIT_KEY, f->key_name) &&
               field_is(r, KW_AUDIT_ACTION, f->action) &&
               (ap == 0 || (r->flen[KW_AUDIT_ACTOR] >= ap &&
                            memcmp(r->f[KW_AUDIT_ACTOR], f->actor_prefix, ap) == 0)) &&
               (f->since_ms == 0 || r->ts_ms >= f->since_ms) &&
               (f->until_ms == 0 || r->ts_ms < f->until_ms);
}

kw_result kw_audit_qrow_fill(struct kw_audit_qrow *row, uint64_t seq, const struct kw_audit_rec *r,
                             const uint8_t hash[KW_AUDIT_HASH_LEN])
{
        size_t total = 2 * KW_AUDIT_HASH_LEN + 1;
        for (int i = 0; i < KW_AUDIT_FIELDS; i++)
                total += r->flen[i] + 1;
        char *buf = malloc(total);
        KW_ENSURE(buf != NULL, KW_ERR_NOMEM);
        size_t o = 0;
        for (int i = 0; i < KW_AUDIT_FIELDS; i++) {
                row->off[i] = o;
                row->len[i] = r->flen[i];
                memcpy(buf + o, r->f[i], r->flen[i]);
                buf[o + r->flen[i]] = '\0';
                o += r->flen[i] + 1;
        }
        row->off[6] = o;
        kw_audit_hex(hash, KW_AUDIT_HASH_LEN, buf + o);
        row->seq = seq;
        row->ts_ms = r->ts_ms;
        row->buf = buf;
        return KW_OK;
}

static void row_of_rec(uint64_t seq, const struct kw_audit_rec *r, const char *hash_hex,
                       struct kw_audit_row *out)
{
        *out = (struct kw_audit_row){
                .seq = seq, .ts_ms = r->ts_ms, .actor = r->f[0], .action = r->f[1],
                .key_name = r->f[2], .result = r->f[3], .detail = r->f[4], .request_id = r->f[5],
                .hash_hex = hash_hex,
        };
        for (int i = 0; i < KW_AUDIT_FIELDS; i++)
                out->len[i] = r->flen[i];
}

kw_result kw_audit_range_emit(const struct kw_audit_rec *recs, size_t n, uint64_t first,
                              uint64_t last, const uint8_t prev[KW_AUDIT_HASH_LEN],
                              uint8_t (*hashes)[KW_AUDIT_HASH_LEN],
                              int (*cb)(const struct kw_audit_row *, void *), void *arg,
                              struct kw_audit_range *rg)
{
        for (size_t i = 0; i < n; i++) {
                char hex[2 * KW_AUDIT_HASH_LEN + 1], prev_hex[2 * KW_AUDIT_HASH_LEN + 1];
                kw_audit_hex(hashes[i], KW_AUDIT_HASH_LEN, hex);
                kw_audit_hex(i == 0 ? prev : hashes[i - 1], KW_AUDIT_HASH_LEN, prev_hex);
                struct kw_audit_row row;
                row_of_rec(first + i, &recs[i], hex, &row);
                row.prev_hash_hex = prev_hex;
                if (cb(&row, arg) != 0)
                        KW_BAIL(KW_ERR_IO);
        }
        if (rg->records == 0) {
                rg->first_seq = first;
                rg->first_ts_ms = recs[0].ts_ms;
        }
        rg->records += n;
        rg->last_seq = last;
        rg->last_ts_ms = recs[n - 1].ts_ms;
        memcpy(rg->last_hash, hashes[n - 1], KW_AUDIT_HASH_LEN);
        return KW_OK;
}

void kw_audit_verify_count(struct kw_audit_verify *v, uint64_t first, uint64_t last, int is_batch,
                           const char *why)
{
        v->records += last >= first ? last - first + 1 : 1;
        v->batches += (uint64_t)is_batch;
        if (why != NULL) {
                v->first_bad_seq = first != 0 ? first : 1;
                v->bad_last_seq = last;
                v->bad_is_batch = is_batch;
                v->why = why;
        }
}
