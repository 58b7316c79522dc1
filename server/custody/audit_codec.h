/*
 * audit_codec.h - the audit record's chain step, and the compact encoding of
 * a batch of key-use records (what one group commit stores in one row).
 *
 * Chain step (unchanged since schema 1, so rows written before batches and
 * records inside batches form one chain):
 *   hash(seq) = SHA-256(hash(seq - 1) | u64be seq | i64be ts_ms |
 *                       for actor, action, key, result, detail, request_id:
 *                       u32be len | bytes)
 * with hash(0) = 32 zero bytes (or, after a prune, the checkpoint's hash).
 * Every record of a batch is hashed on its own: a batch row stores the hash
 * before its first record and the hash of its last one, so a single record
 * can still be shown with its hash and verified (an export re-verifies them
 * one by one, see audit_export.h), while the database stores one link per
 * batch.
 *
 * Batch encoding (a "blob"; untrusted when read back: whoever holds the
 * database key can write any bytes there, so the decoder is fuzzed):
 *   blob   = u8 format (1) | varint raw_len | zlib stream of raw_len bytes
 *   raw    = varint n | varint nstr | nstr x (varint len | bytes) | n x record
 *   record = varint zigzag(ts_ms - previous ts_ms, the first from 0) |
 *            varint string index of actor, action, key, result, detail |
 *            request id: varint 0 | varint string index
 *                      | varint 1 | 16 bytes (a lower-case UUID's value)
 *                      | varint 2 | 16 bytes (an upper-case UUID's value)
 * varints are LEB128 (7 bits a byte, at most 10 bytes); the strings are a
 * per-batch dictionary (each distinct field value once, in order of first
 * use), so repeated actors, actions, keys and results cost one byte a record
 * and a UUID request id (AWS kmsRequestId, Azure correlation_id) 17.
 * Limits: 1..KW_AUDIT_BATCH_MAX_RECORDS records, raw_len <=
 * KW_AUDIT_BATCH_RAW_MAX, each string <= KW_AUDIT_FIELD_MAX bytes without
 * NUL.  Nothing here logs; every function is thread-safe.
 */
#ifndef KW_AUDIT_CODEC_H
#define KW_AUDIT_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/result.h"

#define KW_AUDIT_HASH_LEN 32
#define KW_AUDIT_FIELDS 6
#define KW_AUDIT_FIELD_MAX 4096u
#define KW_AUDIT_BATCH_MAX_RECORDS 8192u
#define KW_AUDIT_BATCH_RAW_MAX (8u << 20)
#define KW_AUDIT_BATCH_FORMAT 1

/* Field order, in the chain step and in struct kw_audit_rec. */
enum kw_audit_field {
        KW_AUDIT_ACTOR,
        KW_AUDIT_ACTION,
        KW_AUDIT_KEY,
        KW_AUDIT_RESULT,
        KW_AUDIT_DETAIL,
        KW_AUDIT_REQUEST_ID,
};

/* One record: f[i] points at flen[i] bytes followed by a NUL (never NULL;
 * "" for an empty field). */
struct kw_audit_rec {
        int64_t ts_ms;
        const char *f[KW_AUDIT_FIELDS];
        size_t flen[KW_AUDIT_FIELDS];
};

/* Sets r's fields from C strings (NULL -> ""). */
void kw_audit_rec_set(struct kw_audit_rec *r, int64_t ts_ms, const char *actor, const char *action,
                      const char *key, const char *result, const char *detail,
                      const char *request_id);

/* A SHA-256 context reused across many chain steps (one per loop, not
 * shared between threads). */
struct kw_audit_hasher;
KW_MUST_USE kw_result kw_audit_hasher_new(struct kw_audit_hasher **ret);
void kw_audit_hasher_free(struct kw_audit_hasher *h);

/* out = the chain step above for record r at seq after prev.  Fields longer
 * than UINT32_MAX are refused (KW_ERR_INPUT); KW_ERR_CRYPTO when OpenSSL fails. */
KW_MUST_USE kw_result kw_audit_chain_step(struct kw_audit_hasher *h,
                                          const uint8_t prev[KW_AUDIT_HASH_LEN], uint64_t seq,
                                          const struct kw_audit_rec *r,
                                          uint8_t out[KW_AUDIT_HASH_LEN]);

/* What encoding needs between batches (zlib's state, the dictionary's
 * tables), kept so that a flush allocates nothing.  One per thread at a
 * time; level 0..9, or -1 for zlib's default. */
struct kw_audit_encoder;
KW_MUST_USE kw_result kw_audit_encoder_new(int level, struct kw_audit_encoder **ret);
void kw_audit_encoder_free(struct kw_audit_encoder *e);   /* NULL-safe */

/* Appends the blob of recs[0..n) to out, with enc (NULL: a temporary one at
 * zlib's default level).  KW_ERR_INPUT (n out of range, a field too long or
 * holding a NUL), KW_ERR_TOO_LARGE (raw over KW_AUDIT_BATCH_RAW_MAX, or
 * out's cap), KW_ERR_NOMEM.  out is unchanged on failure. */
KW_MUST_USE kw_result kw_audit_batch_encode(struct kw_audit_encoder *enc,
                                            const struct kw_audit_rec *recs, size_t n,
                                            struct kw_buf *out);

/* A decoded batch: n records whose strings live in mem (owned). */
struct kw_audit_batch {
        size_t n;
        struct kw_audit_rec *recs;
        char *mem;
};
/* Decodes a blob.  KW_ERR_DB_CORRUPT (detail says what is wrong) for any
 * malformed input, KW_ERR_NOMEM; *ret is set only on success and freed with
 * kw_audit_batch_clear. */
KW_MUST_USE kw_result kw_audit_batch_decode(const uint8_t *blob, size_t len,
                                            struct kw_audit_batch *ret);
/* Frees what decode allocated (NULL-safe, idempotent). */
void kw_audit_batch_clear(struct kw_audit_batch *b);

/* Lower-case hex of n bytes into out (2n + 1 bytes with the NUL). */
void kw_audit_hex(const uint8_t *p, size_t n, char *out);
/* Parses exactly 64 hex digits into out; 0 on success, -1 otherwise. */
int kw_audit_unhex32(const char *s, uint8_t out[KW_AUDIT_HASH_LEN]);

#endif
