/*
 * pgstore.h - the key store on PostgreSQL (fleet mode, [db] engine =
 * "postgresql"): the same contract as keystore.h and audit_store.h, for N
 * keywardd nodes sharing one database and one HSM master key.
 *
 * keystore.c dispatches every kw_keystore_* and kw_keystore_audit_* call of
 * a store opened with kw_keystore_open_pg() to the kw_pg_* function of the
 * same name (same arguments, same errors, same choices as keystore.c's
 * header comment lists), so custody code does not know which engine it
 * talks to.
 *
 * What differs from SQLCipher, and why:
 *   - Row MACs.  Every row that decides access (keys, key_versions, tokens,
 *     users, xks_stores, xks_credentials, audit_head, audit_checkpoint,
 *     nodes) carries mac = HMAC-SHA256 under a 256-bit key only custody can
 *     obtain (a random key sealed by the HSM master key, stored sealed in
 *     kw_meta: kw_pg_mac_key_blob / kw_pg_set_mac_key).  A row whose MAC
 *     does not match is refused with KW_ERR_DB_TAMPERED ("row keys/<id>
 *     fails its MAC: it was changed outside keyward"), never used.
 *   - One fleet-wide change counter (kw_change.gen): every mutating
 *     transaction bumps it first (which also serialises mutations across the
 *     fleet, as BEGIN IMMEDIATE does for SQLCipher) and sends NOTIFY
 *     keyward_changes '<gen> <kind> <name>' (delivered at COMMIT).
 *   - One audit chain for the fleet: its head (audit_head, MAC'd) is locked
 *     FOR UPDATE by every append.
 *   - The database unreachable: KW_ERR_DB_UNAVAILABLE with libpq's words;
 *     each call reconnects (bounded by connect_timeout) before failing.
 *
 * Thread-safe: a pool of connections, each used by one call at a time.
 * Nothing here logs.
 */
#ifndef KW_PGSTORE_H
#define KW_PGSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/result.h"
#include "audit_store.h"
#include "keystore.h"

#define KW_PG_SCHEMA_VERSION 1

struct kw_pgstore;

struct kw_pg_options {
        const char *conninfo;        /* libpq connection string; no password in it   */
        const char *password_file;   /* NULL, or a file holding the password (read
                                        once, wiped after connecting)                */
        const char *node_id;         /* this node's name in heartbeats                */
        unsigned pool_size;          /* connections, 1..64                           */
        unsigned connect_timeout_s;  /* per connection attempt                       */
        unsigned statement_timeout_ms;
};

/*
 * Connects, checks the connection string (a host that is not loopback or a
 * Unix socket needs sslmode=verify-full: KW_ERR_CONFIG saying so; a password
 * in the string: KW_ERR_CONFIG), and runs migrations up to
 * KW_PG_SCHEMA_VERSION once for the fleet (under pg_advisory_lock).  A
 * database with a newer schema: KW_ERR_DB_VERSION, detail "the fleet
 * database has schema N; this keywardd knows schema M: upgrade this node".
 * KW_ERR_DB_UNAVAILABLE when it cannot connect.
 */
KW_MUST_USE kw_result kw_pg_open(const struct kw_pg_options *o, struct kw_pgstore **ret);
void kw_pg_close(struct kw_pgstore *pg);
int kw_pg_schema_version(struct kw_pgstore *pg);

/* The sealed row-MAC key: stores `proposed` (a new key sealed by the
 * caller) when the fleet has none yet, and appends the stored blob (the
 * first node's, whoever won) to out. */
KW_MUST_USE kw_result kw_pg_mac_key_blob(struct kw_pgstore *pg, const uint8_t *proposed,
                                         size_t proposed_len, struct kw_buf *out);
/* The unsealed row-MAC key (copied to locked memory, wiped at close).  No
 * row is read or written before it is set: KW_ERR_SEALED. */
void kw_pg_set_mac_key(struct kw_pgstore *pg, const uint8_t key[32]);

/* ---- changes across the fleet ---- */
enum kw_pg_change {
        KW_PG_CHANGE_KEY = 1,        /* name: the key's name                         */
        KW_PG_CHANGE_TOKEN,          /* name: the token id                           */
        KW_PG_CHANGE_USER,           /* name: the user                               */
        KW_PG_CHANGE_XKS,            /* name: the store                              */
        KW_PG_CHANGE_ALL,            /* name: ""; anything may have changed (a
                                        reconnect, or the counter moved without a
                                        notification)                                */
};
struct kw_pg_listener {
        /* a change committed by any node (this one included) */
        void (*changed)(enum kw_pg_change kind, const char *name, void *arg);
        /* the listener's connection went down (up = 0, why: libpq's words) or
         * came back (up = 1) */
        void (*state)(int up, const char *why, void *arg);
        void *arg;
        unsigned poll_ms;            /* the backstop: kw_change.gen read at least this
                                        often; a move not announced by NOTIFY is
                                        KW_PG_CHANGE_ALL                              */
};
/* Starts a thread with its own connection: LISTEN keyward_changes; stopped
 * by kw_pg_close.  Callbacks run on that thread. */
KW_MUST_USE kw_result kw_pg_listen_start(struct kw_pgstore *pg, const struct kw_pg_listener *l);

/* ---- nodes (heartbeats) ---- */
struct kw_node_row {
        char id[65];
        char address[129];           /* what the node listens on, for operators      */
        char version[33];            /* keywardd's version                           */
        int schema;
        char state[16];              /* "ACTIVE" | "DEGRADED" | "UNAVAILABLE"        */
        char detail[161];            /* why, when not ACTIVE                          */
        int64_t started_ms;          /* unix ms                                       */
        int64_t seen_ms;             /* last heartbeat (the database's clock)         */
        int64_t age_ms;              /* list only: database now - seen_ms            */
};
/* Upserts this node's row; seen_ms is the database's clock. */
KW_MUST_USE kw_result kw_pg_node_heartbeat(struct kw_pgstore *pg, const struct kw_node_row *me);
/* Every node in id order (rows whose MAC fails are skipped and counted in
 * *ret_bad, which may be NULL). */
KW_MUST_USE kw_result kw_pg_node_list(struct kw_pgstore *pg,
                                      int (*cb)(const struct kw_node_row *row, void *arg),
                                      void *arg, unsigned *ret_bad);
/* Deletes nodes not seen for older_ms (an operator's clean-up). */
KW_MUST_USE kw_result kw_pg_node_forget(struct kw_pgstore *pg, int64_t older_ms,
                                        unsigned *ret_n);

/* A cheap round trip ("SELECT gen FROM kw_change"): KW_ERR_DB_UNAVAILABLE. */
KW_MUST_USE kw_result kw_pg_ping(struct kw_pgstore *pg, uint64_t *ret_gen);

/* ---- export/import (keywardctl db export|import) ---- */
/* Every token with its stored hash (token_list does not hand hashes out). */
KW_MUST_USE kw_result kw_pg_token_list_hashes(struct kw_pgstore *pg,
                                              int (*cb)(const struct kw_token_row *row,
                                                        const uint8_t hash[32], void *arg),
                                              void *arg);

/* ---- the keystore.h / audit_store.h contract, engine PostgreSQL ---- */
KW_MUST_USE kw_result kw_pg_key_insert(struct kw_pgstore *pg, const struct kw_key_row *row,
                                       const uint8_t *blob, size_t blob_len,
                                       const struct kw_audit_entry *audit);
KW_MUST_USE kw_result kw_pg_key_get(struct kw_pgstore *pg, const char *name, struct kw_key_row *ret);
KW_MUST_USE kw_result kw_pg_key_get_blob(struct kw_pgstore *pg, const char *key_id, uint32_t version,
                                         struct kw_buf *out);
KW_MUST_USE kw_result kw_pg_key_versions(struct kw_pgstore *pg, const char *key_id,
                                         int (*cb)(uint32_t version, int64_t created, void *arg),
                                         void *arg);
KW_MUST_USE kw_result kw_pg_key_list(struct kw_pgstore *pg, const struct kw_key_filter *f,
                                     int (*cb)(const struct kw_key_row *row, void *arg), void *arg,
                                     char next[65]);
KW_MUST_USE kw_result kw_pg_key_count(struct kw_pgstore *pg, uint64_t *ret);
KW_MUST_USE kw_result kw_pg_key_update(struct kw_pgstore *pg, const struct kw_key_row *row,
                                       const struct kw_audit_entry *audit);
KW_MUST_USE kw_result kw_pg_key_add_version(struct kw_pgstore *pg, const char *key_id,
                                            uint32_t version, const uint8_t *blob, size_t blob_len,
                                            const uint8_t *public_der, size_t public_der_len,
                                            const struct kw_audit_entry *audit);
KW_MUST_USE kw_result kw_pg_key_destroy(struct kw_pgstore *pg, const char *key_id,
                                        const struct kw_audit_entry *audit);
KW_MUST_USE kw_result kw_pg_key_destroy_due(struct kw_pgstore *pg, const char *key_id, int64_t now,
                                            const struct kw_audit_entry *audit);
KW_MUST_USE kw_result kw_pg_due_deletions(struct kw_pgstore *pg, int64_t now,
                                          int (*cb)(const char *key_id, const char *name, void *arg),
                                          void *arg);
KW_MUST_USE kw_result kw_pg_token_insert(struct kw_pgstore *pg, const struct kw_token_row *row,
                                         const uint8_t hash[32], const struct kw_audit_entry *audit);
KW_MUST_USE kw_result kw_pg_token_find(struct kw_pgstore *pg, const uint8_t hash[32],
                                       struct kw_token_row *ret);
KW_MUST_USE kw_result kw_pg_token_list(struct kw_pgstore *pg,
                                       int (*cb)(const struct kw_token_row *row, void *arg), void *arg);
KW_MUST_USE kw_result kw_pg_token_revoke(struct kw_pgstore *pg, const char *id,
                                         const struct kw_audit_entry *audit);
KW_MUST_USE kw_result kw_pg_token_count(struct kw_pgstore *pg, uint64_t *ret);
KW_MUST_USE kw_result kw_pg_user_insert(struct kw_pgstore *pg, const struct kw_user_row *row,
                                        const struct kw_audit_entry *audit);
KW_MUST_USE kw_result kw_pg_user_get(struct kw_pgstore *pg, const char *name, struct kw_user_row *ret);
KW_MUST_USE kw_result kw_pg_user_list(struct kw_pgstore *pg,
                                      int (*cb)(const struct kw_user_row *row, void *arg), void *arg);
KW_MUST_USE kw_result kw_pg_user_delete(struct kw_pgstore *pg, const char *name,
                                        const struct kw_audit_entry *audit, struct kw_user_row *ret);
KW_MUST_USE kw_result kw_pg_user_set_password(struct kw_pgstore *pg, const char *name,
                                              const char *hash, const struct kw_audit_entry *audit,
                                              struct kw_user_row *ret);
KW_MUST_USE kw_result kw_pg_user_login(struct kw_pgstore *pg, const char *name, int ok, int64_t now,
                                       const struct kw_lockout_policy *pol,
                                       const struct kw_audit_entry *audit, struct kw_user_row *ret);
KW_MUST_USE kw_result kw_pg_xks_store_insert(struct kw_pgstore *pg,
                                             const struct kw_xks_store_row *store,
                                             const struct kw_xks_cred_row *cred,
                                             const struct kw_audit_entry *audit);
KW_MUST_USE kw_result kw_pg_xks_store_delete(struct kw_pgstore *pg, const char *name,
                                             const struct kw_audit_entry *audit);
KW_MUST_USE kw_result kw_pg_xks_cred_add(struct kw_pgstore *pg, const struct kw_xks_cred_row *cred,
                                         unsigned keep, const struct kw_audit_entry *audit);
KW_MUST_USE kw_result kw_pg_xks_cred_delete(struct kw_pgstore *pg, const char *store,
                                            const char *akid, const struct kw_audit_entry *audit);
KW_MUST_USE kw_result kw_pg_xks_cred_reseal(struct kw_pgstore *pg, const char *store,
                                            const char *akid, const uint8_t *sealed,
                                            size_t sealed_len);
KW_MUST_USE kw_result kw_pg_xks_list(struct kw_pgstore *pg,
                                     int (*store_cb)(const struct kw_xks_store_row *row, void *arg),
                                     int (*cred_cb)(const struct kw_xks_cred_row *row, void *arg),
                                     void *arg);

/* the audit (audit_store.h); verify also checks audit_head's and each
 * checkpoint's MAC, and that the head names the last record */
KW_MUST_USE kw_result kw_pg_audit_append(struct kw_pgstore *pg, const struct kw_audit_entry *e,
                                         size_t n);
KW_MUST_USE kw_result kw_pg_audit_query_filter(struct kw_pgstore *pg, const struct kw_audit_filter *f,
                                               int (*cb)(const struct kw_audit_row *row, void *arg),
                                               void *arg);
KW_MUST_USE kw_result kw_pg_audit_verify_ex(struct kw_pgstore *pg, struct kw_audit_verify *ret);
KW_MUST_USE kw_result kw_pg_audit_stats(struct kw_pgstore *pg, struct kw_audit_stats *ret);
KW_MUST_USE kw_result kw_pg_audit_read_oldest(struct kw_pgstore *pg, const struct kw_audit_select *sel,
                                              int (*cb)(const struct kw_audit_row *row, void *arg),
                                              void *arg, struct kw_audit_range *ret);
KW_MUST_USE kw_result kw_pg_audit_prune(struct kw_pgstore *pg, const struct kw_audit_prune *p,
                                        uint64_t *ret_records);

#endif
