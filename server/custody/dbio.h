/*
 * dbio.h - the key store export document (keywardctl db export|import,
 * keywardd --db-export|--db-import; docs/fleet-migration.md): build, parse
 * and checksum.  Pure: no store, no HSM, no file; custody_dbio.c does the
 * walking and the writing.
 *
 * One JSON document:
 *   {"format":"keyward-export","version":1,
 *    "notice":"...no clear secret...", "engine":"sqlcipher"|"postgresql",
 *    "master_key_label":"...", "created":"RFC 3339 UTC",
 *    "counts":{"keys","destroyed","versions","tokens","users","xks_stores",
 *              "xks_credentials"},
 *    "checksum":"<64 hex>",
 *    "keys":[{"id","name","type","size","state","operations":[...],
 *             "current_version","created","updated","delete_at","tags":{},
 *             "rules":{},"public_der":"<base64>"|null,
 *             "versions":[{"version","created","blob":"<base64>"}]}
 *            | {"id","name","type","size","state":"destroyed","created",
 *               "updated"}   (a tombstone: no material, no blob)],
 *    "tokens":[{"id","name","role","sha256":"<64 hex>","created","revoked"}],
 *    "users":[{"name","role","hash":"$argon2id$...","created"}],
 *    "xks_stores":[{"name","uri_prefix","region","created",
 *                   "credentials":[{"access_key_id","secret_sealed":"<base64>",
 *                                   "created"}]}]}
 * Sealed blobs are the HSM master key's output as stored (bound to key id
 * and version, or to store and access key id); tokens are SHA-256 hashes,
 * users argon2id hashes.  Nothing in it is a clear secret.
 *
 * The checksum: SHA-256 over "keyward-export-checksum-v1" 0x00, then for
 * every key in id order the fields below, each as u32be(len) || bytes
 * (integers as decimal ASCII, a missing public_der as u32be(0xffffffff)):
 *   id, name, type, size, state, and unless destroyed: operations mask,
 *   current_version, tags and rules as canonical JSON (members sorted by
 *   name at every level, no spaces), public_der, the number of versions,
 *   then per version: its number and SHA-256(sealed blob) (32 bytes).
 * Time stamps are outside it (an import cannot keep every one).
 */
#ifndef KW_DBIO_H
#define KW_DBIO_H

#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/result.h"
#include "keystore.h"

#define KW_DBIO_FORMAT "keyward-export"
#define KW_DBIO_VERSION 1
#define KW_DBIO_MAX_BYTES (512u * 1024u * 1024u) /* the whole document         */
#define KW_DBIO_MAX_KEYS 1000000u
#define KW_DBIO_MAX_VERSIONS 10000u               /* custody_keys.c's bound      */
#define KW_DBIO_BLOB_MAX (64u * 1024u)            /* keystore_keys.c's bound     */
#define KW_DBIO_DER_MAX (16u * 1024u)
#define KW_DBIO_JSON_MAX (16u * 1024u)            /* tags / rules, as stored      */
#define KW_DBIO_MAX_ROWS 100000u                  /* tokens, users, stores each   */
#define KW_DBIO_MAX_CREDS 64u                     /* per XKS store                */

struct kw_dbio_version {
        uint32_t version;
        int64_t created;
        uint8_t *blob;               /* heap; sealed                                  */
        size_t blob_len;
};

struct kw_dbio_key {
        struct kw_key_row row;       /* heap members owned                           */
        struct kw_dbio_version *versions;   /* none for a tombstone                  */
        size_t nversions, cap;
};

struct kw_dbio_token {
        struct kw_token_row row;
        uint8_t hash[32];
};

struct kw_dbio_xks_store {
        struct kw_xks_store_row row;
        struct kw_xks_cred_row *creds;   /* oldest first, sealed                      */
        size_t ncreds, cap;
};

struct kw_dbio_doc {
        char engine[16];
        char master_key_label[129];
        char created[32];            /* RFC 3339 UTC, the export's time              */
        struct kw_dbio_key *keys;
        size_t nkeys, keys_cap;
        struct kw_dbio_token *tokens;
        size_t ntokens, tokens_cap;
        struct kw_user_row *users;
        size_t nusers, users_cap;
        struct kw_dbio_xks_store *stores;
        size_t nstores, stores_cap;
};

struct kw_dbio_counts {
        uint64_t keys, destroyed, versions, tokens, users, xks_stores, xks_credentials;
};

void kw_dbio_doc_init(struct kw_dbio_doc *d);
/* Frees everything (NULL-safe); the document is empty afterwards. */
void kw_dbio_doc_free(struct kw_dbio_doc *d);
void kw_dbio_counts(const struct kw_dbio_doc *d, struct kw_dbio_counts *ret);

/* Appends a copy of row (its heap members duplicated); *ret_key (may be
 * NULL) points at the new entry until the next add. */
KW_MUST_USE kw_result kw_dbio_add_key(struct kw_dbio_doc *d, const struct kw_key_row *row,
                                      struct kw_dbio_key **ret_key);
/* Appends a version (blob copied) to k. */
KW_MUST_USE kw_result kw_dbio_add_version(struct kw_dbio_key *k, uint32_t version, int64_t created,
                                          const uint8_t *blob, size_t blob_len);
KW_MUST_USE kw_result kw_dbio_add_token(struct kw_dbio_doc *d, const struct kw_token_row *row,
                                        const uint8_t hash[32]);
KW_MUST_USE kw_result kw_dbio_add_user(struct kw_dbio_doc *d, const struct kw_user_row *row);
KW_MUST_USE kw_result kw_dbio_add_xks_store(struct kw_dbio_doc *d, const struct kw_xks_store_row *row);
/* To the store named cred->store (KW_ERR_NOT_FOUND when not added yet);
 * only sealed credentials (KW_ERR_INPUT otherwise). */
KW_MUST_USE kw_result kw_dbio_add_xks_cred(struct kw_dbio_doc *d, const struct kw_xks_cred_row *cred);

/* The checksum of the document's keys (above).  KW_ERR_BAD_JSON when a
 * key's tags or rules are not a JSON object. */
KW_MUST_USE kw_result kw_dbio_checksum(const struct kw_dbio_doc *d, uint8_t ret[32]);

/* The document as JSON (with its checksum) appended to out. */
KW_MUST_USE kw_result kw_dbio_write(const struct kw_dbio_doc *d, struct kw_buf *out);

/* Parses and validates a document (untrusted): strict JSON (json_io.h),
 * no unknown member, every field's type, size and alphabet, counts equal
 * to what is there, ids/names/hashes unique, and the checksum recomputed
 * and compared.  Errors: KW_ERR_BAD_JSON / KW_ERR_BAD_ENCODING (JSON,
 * UTF-8), KW_ERR_MISSING_FIELD, KW_ERR_BAD_FIELD (also the checksum),
 * KW_ERR_TOO_LARGE; the detail names the field ("keys[3].versions[0].blob:
 * not base64").  *ret (initialised by the caller) is filled only on
 * success; on failure it is left empty. */
KW_MUST_USE kw_result kw_dbio_parse(const uint8_t *p, size_t n, struct kw_dbio_doc *ret);

/* 64 lower-case hex digits + NUL. */
void kw_dbio_hex(const uint8_t *p, size_t n, char *out);

#endif
