/*
 * audit_store.h - the hash-chained audit log in the key store: what is
 * stored, how it is read back and verified, and how old records leave it.
 *
 * One chain, one sequence (seq 1, 2, ...), three kinds of storage:
 *   - admin actions: one row each (table audit), written in the transaction
 *     of the change they record (keystore.h: the mutations take an entry);
 *   - key uses: appended in batches (table audit_batch), one row per group
 *     commit holding every record of it (audit_codec.h: compact encoding,
 *     zlib), the hash before its first record and the hash of its last;
 *   - rows written before schema 4, key uses included, stay rows.
 * Every record is hashed on its own (audit_codec.h: the step is the one of
 * schema 1), so a record of a batch is shown, verified and exported with its
 * own hash exactly like a row.
 *
 * Retention: the oldest records are read in order (kw_keystore_audit_read_
 * oldest, which checks the chain as it reads: nothing that does not verify
 * is ever handed out for export), written elsewhere by the caller, then
 * pruned (kw_keystore_audit_prune) behind a checkpoint row holding the seq
 * and hash of the last pruned record; verification starts from the newest
 * checkpoint.  A record is never pruned unless the caller names the exact
 * chain hash it exported up to.
 *
 * Reads (query, verify, stats, read_oldest) go through a second, read-only
 * connection: a consistent snapshot that never blocks the writer.  All
 * functions are thread-safe; nothing here logs.
 */
#ifndef KW_AUDIT_STORE_H
#define KW_AUDIT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/result.h"
#include "audit_codec.h"

struct kw_keystore;

struct kw_audit_entry {              /* all strings may be NULL (stored as "")        */
        int64_t ts_ms;               /* 0: now                                        */
        const char *actor;
        const char *action;          /* "key.create", "key.encrypt", ...              */
        const char *key_name;
        const char *result;          /* "ok" or an error name                         */
        const char *detail;          /* non-secret                                    */
        const char *request_id;
};

struct kw_audit_row {                /* pointers valid during the callback only       */
        uint64_t seq;
        int64_t ts_ms;
        const char *actor, *action, *key_name, *result, *detail, *request_id;
        size_t len[KW_AUDIT_FIELDS]; /* byte lengths of the six strings above         */
        const char *hash_hex;        /* 64 hex chars: the record's chain hash         */
        const char *prev_hash_hex;   /* the chain hash before it: set by
                                        kw_keystore_audit_read_oldest only (NULL)     */
};

/* Appends n key-use records (n <= 65536, each field <= 4096 bytes) in one
 * transaction: one batch per KW_AUDIT_BATCH_MAX_RECORDS records (fewer when
 * their fields are large), each one row and one chain link.  When it
 * returns KW_OK the records are durable; on failure nothing was written. */
KW_MUST_USE kw_result kw_keystore_audit_append(struct kw_keystore *ks,
                                               const struct kw_audit_entry *e, size_t n);

/* Records with seq > after_seq in order, up to limit (1..1000, 0 = 100),
 * optional filters (exact key name, exact action), admin rows and batch
 * records alike.  cb runs after the store's locks are released; returning
 * non-zero stops.  KW_ERR_DB_CORRUPT when a batch in the way cannot be
 * decoded (verify names it). */
KW_MUST_USE kw_result kw_keystore_audit_query(struct kw_keystore *ks, uint64_t after_seq,
                                              uint32_t limit, const char *key_name,
                                              const char *action,
                                              int (*cb)(const struct kw_audit_row *row, void *arg),
                                              void *arg);

/* The filters of kw_keystore_audit_query_filter (all optional: 0 / NULL). */
struct kw_audit_filter {
        uint64_t after;              /* seq > after                                   */
        uint64_t before;             /* seq < before (0: no bound)                    */
        uint32_t limit;              /* 1..1000, 0 = 100                              */
        const char *key_name;        /* exact key name (<= 64)                        */
        const char *action;          /* exact action (<= 64)                          */
        const char *actor_prefix;    /* actor starts with it: 1..128 printable ASCII  */
        int64_t since_ms;            /* ts_ms >= since_ms (0: no bound)               */
        int64_t until_ms;            /* ts_ms < until_ms (0: no bound)                */
        int desc;                    /* newest first (page on with before)            */
};
#define KW_AUDIT_ACTOR_PREFIX_MAX 128

/* Records matching f, in seq order (descending with f->desc), up to
 * f->limit, admin rows and batch records alike; as kw_keystore_audit_query
 * otherwise.  KW_ERR_BAD_FIELD for a filter out of its range. */
KW_MUST_USE kw_result kw_keystore_audit_query_filter(struct kw_keystore *ks,
                                                     const struct kw_audit_filter *f,
                                                     int (*cb)(const struct kw_audit_row *row,
                                                               void *arg),
                                                     void *arg);

struct kw_audit_verify {
        uint64_t records;            /* records checked (up to and with the bad one's unit) */
        uint64_t batches;            /* batches among them                             */
        uint64_t first_bad_seq;      /* 0: intact.  Else the first seq whose record,
                                        batch or link does not match: a row's seq, a
                                        batch's first seq, or after a gap the seq that
                                        follows it                                     */
        uint64_t bad_last_seq;       /* the bad unit's last seq (a batch: its range)   */
        int bad_is_batch;
        const char *why;             /* static text, "" when intact                    */
        uint64_t start_seq;          /* the checkpoint verification started from (0: none) */
        uint8_t start_hash[KW_AUDIT_HASH_LEN];
        uint64_t head_seq;           /* the last record verified                       */
        uint8_t head_hash[KW_AUDIT_HASH_LEN];
};
/* Recomputes the chain from the newest checkpoint (or the start) to the
 * end, record by record.  A broken chain is a result, not an error. */
KW_MUST_USE kw_result kw_keystore_audit_verify_ex(struct kw_keystore *ks, struct kw_audit_verify *ret);
/* The same, reduced to records checked and the first bad seq (0: intact). */
KW_MUST_USE kw_result kw_keystore_audit_verify(struct kw_keystore *ks, uint64_t *ret_rows,
                                               uint64_t *ret_first_bad);

struct kw_audit_stats {
        uint64_t records;            /* records held (first_seq..last_seq)             */
        uint64_t first_seq, last_seq;/* 0 when none                                    */
        int64_t oldest_ts_ms;        /* time of the oldest record held (0: none)       */
        uint64_t db_bytes;           /* pages in use x page size (what fills the disk) */
        uint64_t db_file_bytes;      /* the file, free pages included                  */
        uint64_t wal_bytes;          /* the -wal file                                  */
        uint64_t checkpoints;        /* prunes so far                                  */
        uint64_t checkpoint_seq;     /* the newest checkpoint (0: none)                */
        uint8_t checkpoint_hash[KW_AUDIT_HASH_LEN];
};
KW_MUST_USE kw_result kw_keystore_audit_stats(struct kw_keystore *ks, struct kw_audit_stats *ret);

/* Which of the oldest records to read for an export.  Whole storage units
 * (a row, a batch) only; in seq order from the newest checkpoint: a unit is
 * taken while fewer than min_records were taken, or while all its records
 * are older than before_ts_ms (0: no age rule); never more than
 * max_records in all (a batch holds at most KW_AUDIT_BATCH_MAX_RECORDS: a
 * smaller max_records may select nothing). */
struct kw_audit_select {
        uint64_t min_records;
        int64_t before_ts_ms;
        uint64_t max_records;
};
struct kw_audit_range {              /* what was read                                  */
        uint64_t first_seq, last_seq, records;   /* records 0: nothing to read          */
        uint8_t prev_hash[KW_AUDIT_HASH_LEN];    /* chain hash before first_seq         */
        uint8_t last_hash[KW_AUDIT_HASH_LEN];    /* chain hash of last_seq              */
        int64_t first_ts_ms, last_ts_ms;
};
/* Reads the records sel chooses, checking the chain as it goes, and calls
 * cb for each in order (cb returning non-zero aborts: KW_ERR_IO, the
 * caller's detail kept).  KW_ERR_DB_CORRUPT when the chain does not verify
 * in that range (the detail names the seq): nothing is handed out past a
 * record that does not verify.  *ret is set on success. */
KW_MUST_USE kw_result kw_keystore_audit_read_oldest(struct kw_keystore *ks,
                                                    const struct kw_audit_select *sel,
                                                    int (*cb)(const struct kw_audit_row *row,
                                                              void *arg),
                                                    void *arg, struct kw_audit_range *ret);

struct kw_audit_prune {
        uint64_t through_seq;                    /* last record to delete (a unit's end) */
        uint8_t through_hash[KW_AUDIT_HASH_LEN]; /* its chain hash, as exported        */
        int64_t through_ts_ms;
        const char *export_file;                 /* where the records are (non-empty)   */
        uint8_t export_sha256[32];               /* the file's SHA-256                  */
        const struct kw_audit_entry *audit;      /* the admin row recording the prune
                                                    (its action "audit.prune")          */
};
/* In one transaction: deletes every record with seq <= through_seq, adds
 * the checkpoint (through_seq, through_hash) and appends p->audit.
 * KW_ERR_BAD_STATE when through_seq is not the end of a stored unit whose
 * hash is through_hash (the audit changed since it was read), or not past
 * the newest checkpoint.  *ret_records = records deleted. */
KW_MUST_USE kw_result kw_keystore_audit_prune(struct kw_keystore *ks, const struct kw_audit_prune *p,
                                              uint64_t *ret_records);

#endif
