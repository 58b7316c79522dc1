/*
 * keystore.h - the SQLCipher key store: schema and migrations, key rows and
 * their sealed versions, admin tokens, and the hash-chained audit table.
 *
 * The database is opened with a raw 256-bit key (never a passphrase).
 * Every write is one transaction that is durable when the call returns
 * (journal_mode=WAL, synchronous=FULL): a kill -9 at any moment loses no
 * acknowledged write.  secure_delete is on, so destroyed key blobs are
 * overwritten in the file.  One writer connection, serialised by an
 * internal mutex, and a read-only one for long audit reads: every function
 * is thread-safe.  sqlite3 codes are converted here;
 * the original is kept in the detail.  Nothing here logs.
 *
 * The audit chain (admin actions written here in the transaction of their
 * change, key uses in batches, retention) is declared in audit_store.h.
 *
 * Fleet mode: kw_keystore_open_pg opens the same contract on PostgreSQL
 * (pgstore.h says what differs: row MACs, change notifications, one audit
 * chain for the fleet).
 */
#ifndef KW_KEYSTORE_H
#define KW_KEYSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/result.h"
#include "../common/secret.h"
#include "audit_store.h"

#define KW_SCHEMA_VERSION 5

struct kw_keystore;

struct kw_key_row {
        char id[33];                 /* 32 lower-case hex chars                       */
        char name[65];               /* [A-Za-z0-9._-]{1,64}                          */
        char type[4];                /* "AES" | "RSA"                                 */
        uint32_t size;               /* bits                                          */
        char state[20];              /* "enabled" "disabled" "pending_deletion" "destroyed" */
        uint32_t ops;                /* KW_KEYOP_* mask                               */
        uint32_t current_version;    /* >= 1                                          */
        int64_t created, updated;    /* unix seconds                                  */
        int64_t delete_at;           /* unix seconds when pending_deletion, else 0    */
        char *tags_json;             /* heap; a JSON object, "{}" when none           */
        char *rules_json;            /* heap; a JSON object, "{}" when none           */
        uint8_t *public_der;         /* heap; RSA SubjectPublicKeyInfo, NULL for AES  */
        size_t public_der_len;
};
/* Frees the heap members (NULL-safe); the row can be reused. */
void kw_key_row_clear(struct kw_key_row *row);

struct kw_token_row {
        char id[33];
        char name[65];
        char role[16];               /* "admin" | "operator" | "auditor"              */
        int64_t created;
        int64_t revoked;             /* 0 when active                                 */
};

struct kw_key_filter {               /* all optional (NULL / 0)                       */
        const char *state;
        const char *type;
        const char *tag;             /* "k=v": keys whose tags have k == v            */
        const char *name_prefix;
        const char *after_name;      /* paging: names strictly greater                */
        uint32_t limit;              /* 1..1000, 0 = 100                              */
        int include_destroyed;       /* destroyed keys are hidden unless asked or filtered by state */
};

/*
 * Opens (creating if absent) the database at path with the raw key, runs
 * migrations up to KW_SCHEMA_VERSION.  Errors: DB_KEY_MISMATCH ("the database
 * key does not match this database"), DB_VERSION (newer schema), DB_CORRUPT,
 * IO, STORAGE.
 */
KW_MUST_USE kw_result kw_keystore_open(const char *path, const struct kw_secret *db_key,
                                       struct kw_keystore **ret);
/* Fleet mode: the key store on PostgreSQL (pgstore.h: kw_pg_open's
 * contract); every function below then goes to it. */
struct kw_pg_options;
struct kw_pgstore;
KW_MUST_USE kw_result kw_keystore_open_pg(const struct kw_pg_options *o, struct kw_keystore **ret);
/* The PostgreSQL store behind ks, or NULL for SQLCipher. */
struct kw_pgstore *kw_keystore_pg(struct kw_keystore *ks);
void kw_keystore_close(struct kw_keystore *ks);
int kw_keystore_schema_version(struct kw_keystore *ks);

/* Inserts a key with its version 1 sealed blob and an audit row, atomically.
 * KW_ERR_EXISTS when the name is taken; a destroyed key keeps its name as a
 * tombstone, so names are never reused. */
KW_MUST_USE kw_result kw_keystore_key_insert(struct kw_keystore *ks, const struct kw_key_row *row,
                                             const uint8_t *blob, size_t blob_len,
                                             const struct kw_audit_entry *audit);
/* By name; KW_ERR_NOT_FOUND.  ret must be zeroed or cleared; filled on success. */
KW_MUST_USE kw_result kw_keystore_key_get(struct kw_keystore *ks, const char *name,
                                          struct kw_key_row *ret);
/* Appends the sealed blob of (key id, version) to out; KW_ERR_NOT_FOUND. */
KW_MUST_USE kw_result kw_keystore_key_get_blob(struct kw_keystore *ks, const char *key_id,
                                               uint32_t version, struct kw_buf *out);
/* The versions of the key with id key_id (none left once destroyed), in
 * version order: cb(version, created Unix seconds, arg) for each; cb
 * returning non-zero stops the walk.  KW_ERR_BAD_FIELD for a malformed id. */
KW_MUST_USE kw_result kw_keystore_key_versions(struct kw_keystore *ks, const char *key_id,
                                               int (*cb)(uint32_t version, int64_t created,
                                                         void *arg),
                                               void *arg);
/* Calls cb for each matching row in name order (at most limit rows); writes
 * the name to continue after into next (next[0] = 0 when no more). cb returning
 * non-zero stops the walk. */
KW_MUST_USE kw_result kw_keystore_key_list(struct kw_keystore *ks, const struct kw_key_filter *f,
                                           int (*cb)(const struct kw_key_row *row, void *arg),
                                           void *arg, char next[65]);
KW_MUST_USE kw_result kw_keystore_key_count(struct kw_keystore *ks, uint64_t *ret);
/* Writes the mutable columns (state, ops, tags, rules, delete_at, updated) of
 * the row with row->id, plus an audit row, atomically. KW_ERR_NOT_FOUND. */
KW_MUST_USE kw_result kw_keystore_key_update(struct kw_keystore *ks, const struct kw_key_row *row,
                                             const struct kw_audit_entry *audit);
/* Adds version `version` (must be current + 1) and makes it current,
 * atomically.  public_der (RSA: the new version's public key; NULL for AES)
 * replaces the row's public key in the same transaction. */
KW_MUST_USE kw_result kw_keystore_key_add_version(struct kw_keystore *ks, const char *key_id,
                                                  uint32_t version, const uint8_t *blob,
                                                  size_t blob_len, const uint8_t *public_der,
                                                  size_t public_der_len,
                                                  const struct kw_audit_entry *audit);
/* State "destroyed", every version blob deleted (overwritten), atomically. */
KW_MUST_USE kw_result kw_keystore_key_destroy(struct kw_keystore *ks, const char *key_id,
                                              const struct kw_audit_entry *audit);
/* The same, only while the key is pending deletion with delete_at <= now,
 * checked in the same transaction (KW_ERR_BAD_STATE otherwise): the
 * deletion sweeper's call, so that a deletion cancelled after the sweeper
 * listed it (here or on another node of a fleet) destroys nothing. */
KW_MUST_USE kw_result kw_keystore_key_destroy_due(struct kw_keystore *ks, const char *key_id,
                                                  int64_t now, const struct kw_audit_entry *audit);
/* Names of keys pending deletion with delete_at <= now (up to max). */
KW_MUST_USE kw_result kw_keystore_due_deletions(struct kw_keystore *ks, int64_t now,
                                                int (*cb)(const char *key_id, const char *name,
                                                          void *arg),
                                                void *arg);

/* Tokens: only the SHA-256 of a token is stored. */
KW_MUST_USE kw_result kw_keystore_token_insert(struct kw_keystore *ks, const struct kw_token_row *row,
                                               const uint8_t hash[32],
                                               const struct kw_audit_entry *audit);
/* Active (not revoked) token with this hash; KW_ERR_NOT_FOUND. */
KW_MUST_USE kw_result kw_keystore_token_find(struct kw_keystore *ks, const uint8_t hash[32],
                                             struct kw_token_row *ret);
KW_MUST_USE kw_result kw_keystore_token_list(struct kw_keystore *ks,
                                             int (*cb)(const struct kw_token_row *row, void *arg),
                                             void *arg);
/* Every token, revoked ones included, in name order, with its stored
 * SHA-256 (token_list does not hand hashes out): for keywardd --db-export
 * only.  cb returning non-zero stops the walk; it runs after the store's
 * lock is released. */
KW_MUST_USE kw_result kw_keystore_token_list_hashes(struct kw_keystore *ks,
                                                   int (*cb)(const struct kw_token_row *row,
                                                             const uint8_t hash[32], void *arg),
                                                   void *arg);
/* Revokes an active token; the last admin credential (active admin token or
 * admin console user) cannot go (KW_ERR_BAD_STATE, checked in the same
 * transaction). */
KW_MUST_USE kw_result kw_keystore_token_revoke(struct kw_keystore *ks, const char *id,
                                               const struct kw_audit_entry *audit);
/* Tokens ever created, revoked ones included. */
KW_MUST_USE kw_result kw_keystore_token_count(struct kw_keystore *ks, uint64_t *ret);

/* Console users (schema 5): the password as an argon2id encoded hash
 * (password.h), never the password; failed sign-ins and the lock they
 * caused are kept here, so that a restart does not lift a lock. */
#define KW_USER_HASH_MAX 160
struct kw_user_row {
        char name[65];               /* [A-Za-z0-9._-]{1,64}                          */
        char role[16];               /* "admin" | "operator" | "auditor"              */
        char hash[KW_USER_HASH_MAX]; /* "$argon2id$v=19$m=...": get only; "" in lists  */
        int64_t created;
        int64_t last_login;          /* 0: never                                      */
        uint32_t failed;             /* consecutive failed sign-ins                   */
        int64_t locked_until;        /* unix seconds; 0: not locked                   */
};
/* KW_ERR_EXISTS when the name is taken. */
KW_MUST_USE kw_result kw_keystore_user_insert(struct kw_keystore *ks, const struct kw_user_row *row,
                                              const struct kw_audit_entry *audit);
/* By name, with its hash; KW_ERR_NOT_FOUND. */
KW_MUST_USE kw_result kw_keystore_user_get(struct kw_keystore *ks, const char *name,
                                           struct kw_user_row *ret);
/* Every user in name order, without hashes. */
KW_MUST_USE kw_result kw_keystore_user_list(struct kw_keystore *ks,
                                            int (*cb)(const struct kw_user_row *row, void *arg),
                                            void *arg);
/* Deletes a user; KW_ERR_NOT_FOUND; KW_ERR_BAD_STATE when it is an admin and
 * no other admin credential (admin user or active admin token) would be
 * left (checked in the same transaction).  *ret (may be NULL): the row. */
KW_MUST_USE kw_result kw_keystore_user_delete(struct kw_keystore *ks, const char *name,
                                              const struct kw_audit_entry *audit,
                                              struct kw_user_row *ret);
/* A new password hash; the failure count and the lock are reset.
 * KW_ERR_NOT_FOUND.  *ret (may be NULL): the row after the change. */
KW_MUST_USE kw_result kw_keystore_user_set_password(struct kw_keystore *ks, const char *name,
                                                    const char *hash,
                                                    const struct kw_audit_entry *audit,
                                                    struct kw_user_row *ret);
/* The outcome of a password check of this user at now (unix seconds), with
 * its audit row, in one transaction: ok resets the failure count and the
 * lock and sets last_login; a failure counts and, from max_failures
 * consecutive ones on, locks the user for kw_lockout_seconds(...).
 * KW_ERR_NOT_FOUND (deleted meanwhile).  *ret: the row after the change. */
struct kw_lockout_policy {
        uint32_t max_failures;
        int64_t base_seconds, max_seconds;
};
KW_MUST_USE kw_result kw_keystore_user_login(struct kw_keystore *ks, const char *name, int ok,
                                             int64_t now, const struct kw_lockout_policy *pol,
                                             const struct kw_audit_entry *audit,
                                             struct kw_user_row *ret);
/* The lock after `failures` consecutive failures: 0 below max_failures, else
 * base * 2^(failures - max_failures), at most max_seconds (no overflow). */
int64_t kw_lockout_seconds(uint32_t failures, const struct kw_lockout_policy *pol);

/* AWS XKS key stores created through the admin API (schema 2).  The SigV4
 * secret access keys are stored sealed under the HSM master key (schema 3;
 * the custody process seals and unseals them), so that the database's page
 * cache never holds one in the clear; rows handed to callbacks are wiped
 * after each call. */
struct kw_xks_store_row {
        char name[33];               /* [A-Za-z0-9_-]{1,32}                           */
        char uri_prefix[129];        /* "" or "/..."                                  */
        char region[65];
        int64_t created;
};
struct kw_xks_cred_row {
        char store[33];
        char akid[33];               /* [A-Z2-7]{20,30}                               */
        uint8_t secret[256];         /* sealed (is_sealed), or, in a row written by
                                        schema 2 and not resealed yet, the key itself */
        size_t secret_len;
        int is_sealed;               /* writes: must be 1                            */
        int64_t created;
};
/* Inserts a store with its first credential; KW_ERR_EXISTS when the name or
 * the prefix is taken. */
KW_MUST_USE kw_result kw_keystore_xks_store_insert(struct kw_keystore *ks,
                                                   const struct kw_xks_store_row *store,
                                                   const struct kw_xks_cred_row *cred,
                                                   const struct kw_audit_entry *audit);
/* Deletes a store and its credentials; KW_ERR_NOT_FOUND. */
KW_MUST_USE kw_result kw_keystore_xks_store_delete(struct kw_keystore *ks, const char *name,
                                                   const struct kw_audit_entry *audit);
/* Adds a credential to a store and deletes its oldest ones beyond keep. */
KW_MUST_USE kw_result kw_keystore_xks_cred_add(struct kw_keystore *ks,
                                               const struct kw_xks_cred_row *cred, unsigned keep,
                                               const struct kw_audit_entry *audit);
/* Deletes one credential of a store; KW_ERR_NOT_FOUND. */
KW_MUST_USE kw_result kw_keystore_xks_cred_delete(struct kw_keystore *ks, const char *store,
                                                  const char *akid,
                                                  const struct kw_audit_entry *audit);
/* Replaces the clear secret of a schema-2 row with its sealed form (the
 * freed cells are overwritten: secure_delete).  KW_ERR_NOT_FOUND. */
KW_MUST_USE kw_result kw_keystore_xks_cred_reseal(struct kw_keystore *ks, const char *store,
                                                  const char *akid, const uint8_t *sealed,
                                                  size_t sealed_len);
/* Every store (name order), then every credential (by store, oldest
 * first).  A callback returning non-zero stops its walk. */
KW_MUST_USE kw_result kw_keystore_xks_list(struct kw_keystore *ks,
                                           int (*store_cb)(const struct kw_xks_store_row *row, void *arg),
                                           int (*cred_cb)(const struct kw_xks_cred_row *row, void *arg),
                                           void *arg);

#endif
