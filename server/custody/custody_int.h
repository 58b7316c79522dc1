/*
 * custody_int.h - state shared by the custody process's files (private to
 * server/custody/): the process context, the op handler type, the audit
 * queue and key lookup helpers.
 */
#ifndef KW_CUSTODY_INT_H
#define KW_CUSTODY_INT_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include <cJSON.h>

#include "../common/buf.h"
#include "../common/ipc.h"
#include "../common/names.h"
#include "../config.h"
#include "hsm.h"
#include "keycache.h"
#include "keystore.h"
#include "rules.h"
#include "session.h"

struct audit_queue;
struct xks_state;
struct fleet;

struct custody {
        const struct kw_config *cfg;
        struct kw_hsm *hsm;
        struct kw_keystore *ks;
        struct kw_keycache *kc;
        struct audit_queue *aq;
        struct retention *rt;         /* audit retention and warnings          */
        pthread_mutex_t write_mu;     /* serialises key mutations            */
        uint64_t gen;                 /* bumped by every key mutation        */
        uint64_t requests, failures, material_loads;  /* atomics          */
        uint64_t inline_total, queued_total, reader_wakeups;  /* atomics (serving) */
        uint64_t queued_now;                                   /* atomic          */
        struct xks_state *xks;        /* XKS stores and SigV4 secrets (custody_xks.c) */
        struct kw_sessions *sessions; /* console sessions (session.h); NULL: none    */
        struct fleet *fleet;          /* fleet mode (custody_fleet.c); NULL: one node */
        int listen_fd;                /* the socket the front connects to           */
};

/* Serving (custody_serve.c): accepts connections from the front only (pid
 * and uid as custody_allow_front last said); a reader per connection answers
 * what custody_can_inline allows and queues the rest for [custody] workers. */
KW_MUST_USE kw_result custody_serve(struct custody *c);
/* pid CUSTODY_ANY_PID: any process of uid (standalone: systemd starts the
 * front, nobody tells us its pid; the front's uid is its own there). */
#define CUSTODY_ANY_PID ((pid_t)-1)
void custody_allow_front(pid_t pid, uid_t uid);
/* One request payload -> its reply frame in out (empty); always a frame
 * (custody.c). */
void custody_handle(struct custody *c, const uint8_t *p, size_t n, struct kw_buf *out);
/* 1 when the request can be answered from memory now (custody.c). */
int custody_can_inline(struct custody *c, const uint8_t *p, size_t n);

/* Admin roles, as bits (the op table says which may send an op). */
enum custody_role {
        ROLE_AUDITOR = 1u << 0,
        ROLE_OPERATOR = 1u << 1,
        ROLE_ADMIN = 1u << 2,
};

/* The caller of a request as custody verified it (custody.c,
 * authenticate()); nothing here is taken from the front on trust except
 * what the class's proof is (the EKM client CN, see proto.h). */
struct op_caller {
        struct kw_caller_ctx ctx;     /* kind, and for XKS the requestMetadata
                                         (set by the XKS request parser)        */
        char actor[257];              /* the audit actor                        */
        char request_id[257];         /* protocol correlation id, or ""         */
        unsigned role;                /* ADMIN: the token's role bit            */
        char token_id[65], token_name[65];
        char store[33], akid[129];    /* XKS: verified store and access key id  */
        char cn[257];                 /* EKM: the client certificate's CN       */
        char ekm_path[80];            /* EKM: "/azureekm[/<prefix>]"           */
        /* ADMIN by a console session (KW_T_SESSION): the session as custody
         * keeps it; by a token: token_hash is the token's SHA-256 */
        int by_session;
        struct kw_session_info session;
        uint8_t token_hash[32];
        uint32_t retry_after;         /* set by a handler: a failed reply carries it
                                         as KW_T_WAIT_SECONDS (KW_ERR_LOCKED)     */
};

typedef kw_result (*op_fn)(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                           struct kw_buf *reply);

/* Handlers (custody_keys.c, custody_admin.c). */
kw_result op_key_create(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_key_import(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_key_get(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_key_list(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_key_set_state(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_key_rotate(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_key_schedule_delete(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_key_cancel_delete(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_key_update(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_key_versions(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_wrap(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_unwrap(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_audit_query(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_audit_verify(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_audit_prune(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_token_check(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_token_create(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_token_list(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_token_revoke(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_status(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_nodes(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
/* Console sessions and users (custody_session.c). */
kw_result op_session_login(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_session_get(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_session_logout(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_user_create(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_user_list(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_user_delete(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_user_password(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
/* The console session table for c's configuration (custody_start.c). */
KW_MUST_USE kw_result custody_sessions_init(struct custody *c);
/* Audits a token sign-in whose token custody did not accept (custody.c,
 * before any handler ran). */
void custody_audit_login_denied(struct custody *c, const struct kw_msg *req, struct op_caller *who);
/* Monotonic milliseconds: session expiry. */
int64_t custody_mono_now(void);
kw_result op_stats(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_attest(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);

/* AWS XKS (custody_xks.c: stores, credentials, signatures; xks_request.c:
 * the requests themselves). */
KW_MUST_USE kw_result custody_xks_init(struct custody *c);
/* The store table rebuilt from the configuration and the database (after
 * another node's change: custody_fleet.c); takes c->write_mu. */
KW_MUST_USE kw_result custody_xks_reload(struct custody *c);

/* ---- fleet mode (custody_fleet.c) ---- */
int custody_fleet_mode(const struct kw_config *cfg);
/* The PostgreSQL store, the HSM (a master key made only for an empty fleet
 * database) and the row-MAC key.  *ret_stage on failure: 4 the HSM, 5 the
 * database (keywardd's exit status). */
KW_MUST_USE kw_result custody_fleet_open(struct custody *c, const struct kw_hsm_config *hc,
                                         int *ret_master_created, int *ret_db_created,
                                         int *ret_stage);
/* The change listener and the heartbeat (none for one node). */
KW_MUST_USE kw_result custody_fleet_start(struct custody *c);
void custody_fleet_stop(struct custody *c);
/* "ACTIVE" | "DEGRADED" | "UNAVAILABLE" (always ACTIVE for one node), and
 * why in why[161] ("" when active). */
const char *custody_fleet_state(struct custody *c, char why[161]);
struct custody_node {
        char id[65];
        char state[16];
        int self;
};
/* Up to max nodes (fleet mode; 0 for one node): the database's list, or
 * this node alone while it cannot be read. */
size_t custody_fleet_nodes(struct custody *c, struct custody_node *out, size_t max);
/* Admin tokens while the database is away: a token found active is
 * remembered (seen), forgotten when it is not found or changes anywhere
 * (gone, or a notification), and while the database is unreachable and
 * within the outage grace a remembered one still authenticates (cached:
 * 1 and *ret). */
void custody_fleet_token_seen(struct custody *c, const uint8_t hash[32],
                              const struct kw_token_row *row);
void custody_fleet_token_gone(struct custody *c, const uint8_t hash[32]);
int custody_fleet_token_cached(struct custody *c, const uint8_t hash[32], struct kw_token_row *ret);
/* STATUS's node, engine and db_state members. */
void custody_fleet_status_json(struct custody *c, cJSON *d);
/* Verifies the XKS proof of req (proto.h): the signature over the string to
 * sign with the store's credential, the string to sign over the canonical
 * request, the canonical request over BODY and a POST to the store's path;
 * then charges the store's rate budget.  Fills who (store, akid, actor).
 * KW_ERR_AUTH (detail says why, never a secret) or KW_ERR_OVERLOAD. */
KW_MUST_USE kw_result custody_xks_auth(struct custody *c, const struct kw_msg *req,
                                       struct op_caller *who);
/* The URI prefix of a verified store (copied into out, >= 129 bytes). */
void custody_xks_store_prefix(struct custody *c, const char *store, char *out, size_t outsz);
kw_result op_xks(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
/* The key an XKS request names and what of it the operation needs, from
 * the canonical request as sent (before any check: custody_can_inline's
 * guess, nothing more).  0 for health or what does not route. */
int custody_xks_peek(const struct kw_msg *req, char name[KW_NAME_MAX + 1],
                     enum kw_warm_need *ret_need);
kw_result op_xks_stores(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_xks_store_create(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_xks_cred_rotate(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_xks_cred_delete(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_xks_store_delete(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);
kw_result op_xks_import_file(struct custody *, const struct kw_msg *, struct op_caller *, struct kw_buf *);

/* Key use for the protocols (custody_keys.c): the lookup, state, rules and
 * usage checks in the protocol order, then AES-GCM.  name is the key name;
 * *ret_version is the version used (encrypt: the current one). */
KW_MUST_USE kw_result custody_key_gcm_encrypt(struct custody *c, const struct op_caller *who,
                                              const char *name, const uint8_t *pt, size_t pt_len,
                                              const uint8_t *caller_aad, size_t aad_len,
                                              int verify, struct kw_buf *ret_ct,
                                              uint8_t ret_iv[12], uint8_t ret_tag[16],
                                              uint32_t *ret_version);
/* version 0 (metadata not ours) still runs the key checks, then fails with
 * KW_ERR_DECRYPT.  ret_pt receives ct_len bytes (wiped when freed). */
KW_MUST_USE kw_result custody_key_gcm_decrypt(struct custody *c, const struct op_caller *who,
                                              const char *name, uint32_t version,
                                              const uint8_t *ct, size_t ct_len, const uint8_t *iv,
                                              size_t iv_len, const uint8_t *tag, size_t tag_len,
                                              const uint8_t *caller_aad, size_t aad_len,
                                              const uint8_t *md, size_t md_len,
                                              struct kw_buf *ret_pt);
/* XKS metadata: the key's document fields the XKS answer needs. */
struct custody_key_info {
        char type[9], state[33];
        uint32_t size, ops;
};
KW_MUST_USE kw_result custody_key_xks_metadata(struct custody *c, const struct op_caller *who,
                                               const char *name, struct custody_key_info *ret);

/* Key-use audit rows are queued and written in batches (group commit);
 * admin actions are written in the same transaction as their change. */
KW_MUST_USE kw_result audit_queue_new(struct kw_keystore *ks, unsigned flush_ms, struct audit_queue **ret);
void audit_queue_free(struct audit_queue *q);          /* flushes */
void audit_push(struct audit_queue *q, const struct op_caller *who, const char *action,
                const char *key_name, int code, const char *detail);
/* The same with the result word given ("ok", "denied", "locked"). */
void audit_push_result(struct audit_queue *q, const struct op_caller *who, const char *action,
                       const char *key_name, const char *result, const char *detail);
/* Returns when every record queued before the call is durable (KW_OK), or
 * when writing them failed (they stay queued and are written again first). */
KW_MUST_USE kw_result audit_flush(struct audit_queue *q);
size_t audit_pending(struct audit_queue *q);
struct audit_queue_stats {
        size_t pending;               /* records not yet durable                 */
        uint64_t written;             /* records made durable since start        */
        uint64_t failed_flushes;
        int failing;                  /* the last flush failed                   */
        char last_error[200];
};
void audit_queue_get_stats(struct audit_queue *q, struct audit_queue_stats *ret);

/* Audit retention (custody_retention.c): every [audit] check_interval_seconds
 * it measures the database, its file system and export_dir's, exports the
 * oldest records past the configured bound (audit_export.h) and prunes them
 * behind a checkpoint, and keeps the warnings /healthz, /metrics and
 * GET /api/v1/status show.  Never stops key uses: a failure is counted,
 * logged and warned about, and the audit goes on growing. */
struct retention;
KW_MUST_USE kw_result retention_new(struct custody *c, struct retention **ret);
/* Starts the periodic thread (after the sandbox is in place). */
KW_MUST_USE kw_result retention_start(struct retention *rt);
/* One cycle now (the on-demand prune): who is the actor of its audit rows;
 * the report (exports, records pruned, state) is added to doc. */
KW_MUST_USE kw_result retention_run(struct retention *rt, const struct op_caller *who, cJSON *doc);
/* Counters and gauges for KW_OP_STATS (numbers only, flat or nested). */
void retention_stats_json(struct retention *rt, cJSON *doc);
/* The state for GET /api/v1/status: the same plus messages and the checkpoint. */
void retention_status_json(struct retention *rt, cJSON *doc);
/* The codes of the current warnings into arr (for /healthz); their count. */
size_t retention_warning_codes(struct retention *rt, cJSON *arr);

/* A new bearer token for row (custody_admin.c): "kw_" + base64url of 32
 * random bytes appended to ret_token (wiped when freed), its SHA-256 in
 * ret_hash; row->id and row->created are set. */
KW_MUST_USE kw_result token_generate(struct kw_token_row *row, struct kw_buf *ret_token,
                                     uint8_t ret_hash[32]);
/* A new token row's id (16 random hex digits) and creation time (now), for
 * a token made here (token_generate) or known by its hash alone. */
KW_MUST_USE kw_result token_row_stamp(struct kw_token_row *row);

/* Reply helpers. */
/* Consumes doc; its strings (a new token, an import file) are wiped first. */
KW_MUST_USE kw_result reply_json(struct kw_buf *reply, cJSON *doc);
/* {"<key>": arr} as the reply when filled (the result of filling arr) is
 * KW_OK; else arr is freed and filled returned. */
KW_MUST_USE kw_result reply_list(struct kw_buf *reply, const char *key, cJSON *arr,
                                 kw_result filled);
void format_time(int64_t t, char out[32]);                            /* RFC 3339 UTC */
int valid_name(const char *s);                                        /* [A-Za-z0-9._-]{1,64} */

/* Sweeper: destroys keys whose deletion time has passed. */
void custody_sweep_deletions(struct custody *c);

/* Shared with tests/bench/populate.c, which fills a key store exactly as
 * the custody process does (c needs only cfg and hsm set):
 * seal_material (custody_keys.c) seals a key version's material under the
 * HSM master key, bound to row->id and version, appending the blob to blob;
 * load_db_key (custody.c) unseals the database key from [db] key_file
 * (creating it when db_exists is 0 and the file is absent); *ret is a
 * secret owned by the caller. */
KW_MUST_USE kw_result seal_material(struct custody *c, const struct kw_key_row *row, uint32_t version,
                                    const struct kw_secret *material, struct kw_buf *blob);
KW_MUST_USE kw_result load_db_key(struct custody *c, int db_exists, struct kw_secret *ret);

/* keywardd --db-export / --db-import (custody_dbio.c) use these:
 * custody_key_unseal (custody_keys.c) unseals one sealed version of row's
 * key with the AAD that binds it to the key's id and version, and checks
 * the material against the row (AES: size/8 bytes; RSA: a PKCS#8 private
 * key); *ret's aes is a secret and its pkey an EVP_PKEY, both the caller's.
 * KW_ERR_DB_CORRUPT (detail names the key and version) when it does not
 * unseal.  custody_xks_cred_check (custody_xks.c) unseals a sealed XKS
 * secret with its AAD and wipes it: KW_OK or KW_ERR_DB_CORRUPT.
 * custody_open_oneshot / custody_close_oneshot (custody_start.c): the store
 * as keywardd --recover-admin opens it (custody user, secure memory,
 * privileges dropped, HSM, key store); the exit status on failure. */
KW_MUST_USE kw_result custody_key_unseal(struct custody *c, const struct kw_key_row *row,
                                         uint32_t version, const uint8_t *blob, size_t blob_len,
                                         struct kw_ckey_material *ret);
KW_MUST_USE kw_result custody_xks_cred_check(struct custody *c, const struct kw_xks_cred_row *row);
int custody_open_oneshot(struct custody *c, const char *log_name, int *ret_status);
void custody_close_oneshot(struct custody *c);

#endif
