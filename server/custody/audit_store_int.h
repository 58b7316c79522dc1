/*
 * audit_store_int.h - what audit_store.c (append, verify, stats) and
 * audit_read.c (query, read the oldest, prune) share: the SQL of the audit
 * tables, the storage units (an admin row or a batch) merged by seq, the
 * check of one unit against the chain, and read sessions on the reader
 * connection.  Private to these two files.
 */
#ifndef KW_AUDIT_STORE_INT_H
#define KW_AUDIT_STORE_INT_H

#include "keystore_int.h"

#define ROW_COLS "seq, ts_ms, actor, action, key_name, result, detail, request_id, prev_hash, hash"
#define BATCH_COLS "first_seq, last_seq, min_ts_ms, max_ts_ms, prev_hash, hash, data"
#define SQL_AUDIT_INSERT                                                                   \
        "INSERT INTO audit (seq, ts_ms, actor, action, key_name, result, detail, request_id," \
        " prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
#define SQL_BATCH_INSERT                                                                  \
        "INSERT INTO audit_batch (" BATCH_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
#define SQL_BATCH_NAME "INSERT OR IGNORE INTO audit_batch_name (name, first_seq) VALUES (?1, ?2)"

#define SQL_BATCHES "SELECT " BATCH_COLS " FROM audit_batch WHERE first_seq >= ?1 ORDER BY first_seq"
#define SQL_CHECKPOINT "SELECT seq, hash FROM audit_checkpoint ORDER BY seq DESC LIMIT 1"

/* Every admin row after ?1, in seq order. */
#define SQL_ROWS_AFTER "SELECT " ROW_COLS " FROM audit WHERE seq > ?1 ORDER BY seq"
/* The SQL of a filtered query's admin rows (batches = 0) or batches
 * (batches = 1), parameters as audit_read.c says; 0, or -1 when it does not
 * fit in out. */
struct kw_audit_filter;
int as_query_sql(const struct kw_audit_filter *f, int batches, char *out, size_t outsz);

/* One storage unit, its columns valid until the next as_units_next. */
struct unit {
        int is_batch;
        uint64_t first, last;
        int64_t min_ts, max_ts;
        const void *prev, *hash;     /* NULL when not KS_HASH_LEN bytes */
        const uint8_t *data;         /* batch */
        size_t data_len;
        sqlite3_stmt *row;           /* admin row: its statement (ROW_COLS) */
};

struct units {
        sqlite3_stmt *rows, *batches;
        int row_pending, rows_done, batch_pending, batches_done;
        int desc;                    /* both statements in descending seq order */
        char batch_name[70];         /* "k:<key>" / "a:<action>", bound (SQLITE_STATIC)
                                        to batches: lives as long as it */
};

/* The records of a unit: one from the row's columns, or the decoded batch. */
struct unit_recs {
        struct kw_audit_rec one;
        struct kw_audit_batch batch;
        const struct kw_audit_rec *recs;
        size_t n;
};

/* A column holding a chain hash, or NULL when it is not KS_HASH_LEN bytes. */
const void *as_col_hash(sqlite3_stmt *st, int col);
/* Every unit from the beginning (units at or below a checkpoint included:
 * verify flags them); finalize with as_units_free. */
kw_result as_units_all(struct kw_keystore *ks, struct units *it);
void as_units_free(struct units *it);
/* The next unit by seq (the highest first with it->desc); *ret_have = 0 at
 * the end. */
kw_result as_units_next(struct kw_keystore *ks, struct units *it, struct unit *u, int *ret_have);
/* An admin row's record, from ROW_COLS (strings point into the statement). */
void as_row_rec(sqlite3_stmt *st, struct kw_audit_rec *r);
/* The records of u into ur (the batch decoded); KW_ERR_DB_CORRUPT when a
 * batch does not decode.  ur->batch is freed with kw_audit_batch_clear. */
kw_result as_unit_records(const struct unit *u, struct unit_recs *ur);
/* Checks u against the chain at (expect, prev): its first seq, its stored
 * link, its records' hashes (into hashes[] when not NULL, room for
 * KW_AUDIT_BATCH_MAX_RECORDS) and its stored hash.  *why = NULL when it
 * holds (ret_head = its last hash), else a static reason; errors are only
 * for memory and crypto.  Uses ks->rhasher: under rmu. */
kw_result as_unit_check(struct kw_keystore *ks, const struct unit *u, uint64_t expect,
                        const uint8_t prev[KS_HASH_LEN], struct unit_recs *ur,
                        uint8_t (*hashes)[KS_HASH_LEN], uint8_t ret_head[KS_HASH_LEN],
                        const char **why);
/* A walk along the chain from the newest checkpoint (start) on; head is
 * the last unit that held. */
struct as_walk {
        uint64_t start_seq, head_seq;
        uint8_t start[KS_HASH_LEN], head[KS_HASH_LEN];
        uint8_t (*hashes)[KS_HASH_LEN];   /* as as_unit_check's (may be NULL) */
};
/* Every unit in seq order (under a read session): stops before the first
 * unit want (NULL: all) declines; checks each (as_unit_check) and hands it
 * to visit with its records, why (NULL: it holds) and the chain hash before
 * it.  Stops after a unit that does not hold, when visit sets *ret_stop,
 * or on visit's error (returned). */
kw_result as_walk(struct kw_keystore *ks, struct as_walk *w, int (*want)(const struct unit *u, void *arg),
                  kw_result (*visit)(const struct unit *u, const struct unit_recs *ur,
                                     const char *why, const uint8_t *prev, void *arg,
                                     int *ret_stop),
                  void *arg);
/* A read transaction (one WAL snapshot) on the reader connection, under
 * ks->rmu; as_read_end ends both. */
kw_result as_read_begin(struct kw_keystore *ks);
void as_read_end(struct kw_keystore *ks);
/* The newest checkpoint (seq 0 and zeros when none), on the reader. */
kw_result as_read_checkpoint(struct kw_keystore *ks, uint64_t *seq, uint8_t hash[KS_HASH_LEN]);

#endif
