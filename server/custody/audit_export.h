/*
 * audit_export.h - audit records leaving the key store: the export file
 * (written by the custody process before it prunes, docs/audit.md) and its
 * offline verification (keywardctl audit verify-export).
 *
 * An export file is gzip-compressed JSON lines, one object a line:
 *   {"keyward_audit_export":1,"first_seq":F,"prev_hash":"<64 hex>","created":"<RFC 3339>"}
 *   {"seq":F,"time":"...","ts_ms":N,"actor":"...","action":"...","key":"...",
 *    "result":"...","detail":"...","request_id":"...","hash":"<64 hex>"}
 *   ... one line per record, seq F..L in order ...
 *   {"keyward_audit_export_end":1,"last_seq":L,"last_hash":"<64 hex>","records":N}
 * The record members are those of GET /api/v1/audit, plus ts_ms (the exact
 * time the hash covers); a field whose bytes are not UTF-8 is written as
 * "<member>_b64" (base64 of the bytes) instead.  prev_hash is the chain hash
 * before F (the previous checkpoint's, or zeros), last_hash the hash of L,
 * which becomes the checkpoint in the key store: each record's hash is
 * SHA-256(previous hash | u64be seq | i64be ts_ms | for actor, action, key,
 * result, detail, request_id: u32be length | bytes) (audit_codec.h), so the
 * file verifies on its own, and consecutive files chain (one's last_hash is
 * the next one's prev_hash).  A file without its end line is incomplete.
 *
 * Name: keyward-audit-<F, 20 digits>-<L, 20 digits>-<first 16 hex of
 * last_hash>.jsonl.gz.  Written as a hidden temporary file (mode 0640),
 * fsynced, renamed, the directory fsynced, then read back and verified:
 * only then may the records be pruned.
 */
#ifndef KW_AUDIT_EXPORT_H
#define KW_AUDIT_EXPORT_H

#include <stdint.h>

#include "../common/result.h"
#include "audit_store.h"

#define KW_AUDIT_EXPORT_PREFIX "keyward-audit-"
#define KW_AUDIT_EXPORT_TMP_PREFIX ".keyward-audit-"

struct kw_audit_export_file {
        char name[96];               /* the file's name in its directory        */
        uint64_t first_seq, last_seq, records;   /* records 0: nothing exported */
        uint8_t prev_hash[KW_AUDIT_HASH_LEN], last_hash[KW_AUDIT_HASH_LEN];
        int64_t last_ts_ms;
        uint8_t sha256[32];          /* of the file's bytes                      */
        uint64_t bytes;
};

/* Exports the records sel chooses (kw_keystore_audit_read_oldest) into a
 * new file in dir, durably, and verifies it.  *ret describes it (records 0
 * and no file when there was nothing to export).  KW_ERR_IO with a detail
 * naming the file and the system's error (missing directory, permission,
 * disk full), KW_ERR_DB_CORRUPT when the chain does not verify there; on
 * any failure no file is left behind (the temporary one is removed). */
KW_MUST_USE kw_result kw_audit_export(struct kw_keystore *ks, const char *dir,
                                      const struct kw_audit_select *sel,
                                      struct kw_audit_export_file *ret);

/* Removes temporary files an interrupted export left in dir; their count. */
unsigned kw_audit_export_clean(const char *dir);

struct kw_audit_export_check {
        int ok;                      /* every record, the links and the end line match */
        uint64_t first_seq, last_seq, records;
        uint8_t prev_hash[KW_AUDIT_HASH_LEN], last_hash[KW_AUDIT_HASH_LEN];
        uint8_t sha256[32];          /* of the file's bytes                      */
        uint64_t bad_line;           /* ok == 0: the first line that does not match */
        uint64_t bad_seq;            /* its seq when it is a record (else 0)     */
        char why[160];
};
/* Verifies an export file on its own.  A file that does not verify is a
 * finding (KW_OK, ok = 0, bad_line and why say where); errors are for a
 * file that cannot be read (KW_ERR_IO) and memory. */
KW_MUST_USE kw_result kw_audit_export_verify(const char *path, struct kw_audit_export_check *ret);

#endif
