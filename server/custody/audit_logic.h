/*
 * audit_logic.h - the audit log's engine-independent steps, shared by the
 * SQLCipher store (audit_store.c, audit_read.c) and the PostgreSQL one
 * (pgstore_audit.c, pgstore_audit_read.c), so that both chain batches,
 * filter records, keep query rows and count a verification identically.
 * No SQL here.
 */
#ifndef KW_AUDIT_LOGIC_H
#define KW_AUDIT_LOGIC_H

#include <stddef.h>
#include <stdint.h>

#include "../common/result.h"
#include "audit_codec.h"
#include "audit_store.h"

/* Records per append (kw_keystore_audit_append, kw_pg_audit_append). */
#define KW_AUDIT_APPEND_MAX 65536u

/* Each field of e (may be NULL) within KW_AUDIT_FIELD_MAX: KW_ERR_TOO_LARGE. */
KW_MUST_USE kw_result kw_audit_entry_check(const struct kw_audit_entry *e);
/* The record of an entry; ts_ms 0 is now. */
void kw_audit_rec_of_entry(const struct kw_audit_entry *e, int64_t now, struct kw_audit_rec *r);
/* An append's entries e[0..n) checked (n <= KW_AUDIT_APPEND_MAX, each
 * entry) and turned into records: *ret malloc'd (free it), NULL for n 0. */
KW_MUST_USE kw_result kw_audit_recs_of_entries(const struct kw_audit_entry *e, size_t n,
                                               int64_t now, struct kw_audit_rec **ret);

/* Chains recs[0..n) (n >= 1) at seqs first.. after prev: hashes[i] (when
 * hashes is not NULL) the hash of record i, *ret_hash the hash of the last
 * one, *ret_lo / *ret_hi the smallest and largest ts_ms.
 * kw_audit_chain_step's errors; the outputs may be partly written then. */
KW_MUST_USE kw_result kw_audit_batch_chain(struct kw_audit_hasher *h,
                                           const uint8_t prev[KW_AUDIT_HASH_LEN], uint64_t first,
                                           const struct kw_audit_rec *recs, size_t n,
                                           uint8_t (*hashes)[KW_AUDIT_HASH_LEN],
                                           uint8_t ret_hash[KW_AUDIT_HASH_LEN], int64_t *ret_lo,
                                           int64_t *ret_hi);

/* The last verification step of one storage unit whose link and record
 * count already hold: recs[0..n) (n >= 1, at seqs first..) chained after
 * prev must end at stored_hash and, for a batch, span min_ts..max_ts.
 * *why = NULL when it holds (ret_head = its last hash), else a static
 * reason (ret_head untouched); errors are kw_audit_chain_step's. */
KW_MUST_USE kw_result kw_audit_unit_verify(struct kw_audit_hasher *h,
                                           const uint8_t prev[KW_AUDIT_HASH_LEN], uint64_t first,
                                           const struct kw_audit_rec *recs, size_t n,
                                           uint8_t (*hashes)[KW_AUDIT_HASH_LEN],
                                           const uint8_t stored_hash[KW_AUDIT_HASH_LEN],
                                           int is_batch, int64_t min_ts, int64_t max_ts,
                                           uint8_t ret_head[KW_AUDIT_HASH_LEN], const char **why);

/* 1 when a selection that has taken `taken` records takes a unit of n
 * records whose newest is max_ts, else 0. */
int kw_audit_select_takes(const struct kw_audit_select *sel, uint64_t taken, uint64_t n,
                          int64_t max_ts);

/* A batch's "k:<key>" / "a:<action>" index name, pointing into a record. */
struct kw_audit_name_ref {
        char kind;               /* 'k' key, 'a' action */
        const char *s;
        size_t len;
};
/* qsort order of struct kw_audit_name_ref: by kind, then bytes, then length;
 * 0 when equal (the duplicates a batch indexes once). */
int kw_audit_name_ref_cmp(const void *a, const void *b);

/* 1 when record r at seq passes filter f and seq < hi, else 0. */
int kw_audit_rec_matches(const struct kw_audit_filter *f, uint64_t hi, uint64_t seq,
                         const struct kw_audit_rec *r);

/* One query result kept past its storage unit: the six fields and the hash
 * in hex, NUL-terminated, in buf (heap, owned by the row). */
struct kw_audit_qrow {
        uint64_t seq;
        int64_t ts_ms;
        char *buf;                   /* six strings, then the hash in hex */
        size_t off[7], len[6];
};
/* Fills *row from record r at seq with its hash; KW_ERR_NOMEM (*row
 * untouched). */
KW_MUST_USE kw_result kw_audit_qrow_fill(struct kw_audit_qrow *row, uint64_t seq,
                                         const struct kw_audit_rec *r,
                                         const uint8_t hash[KW_AUDIT_HASH_LEN]);

/* Hands recs[0..n) (n >= 1, at seqs first..last, chained after prev with
 * hashes[i] the hash of record i) to cb as rows with their hashes in hex,
 * then adds them to *rg (first seq and time when rg is empty, count, last
 * seq, time and hash).  KW_ERR_IO when cb returns non-zero (*rg untouched). */
KW_MUST_USE kw_result kw_audit_range_emit(const struct kw_audit_rec *recs, size_t n, uint64_t first,
                                          uint64_t last, const uint8_t prev[KW_AUDIT_HASH_LEN],
                                          uint8_t (*hashes)[KW_AUDIT_HASH_LEN],
                                          int (*cb)(const struct kw_audit_row *, void *), void *arg,
                                          struct kw_audit_range *rg);

/* Counts one storage unit (seqs first..last, a batch or not) into *v;
 * why non-NULL: the unit is where verification stopped. */
void kw_audit_verify_count(struct kw_audit_verify *v, uint64_t first, uint64_t last, int is_batch,
                           const char *why);

#endif
