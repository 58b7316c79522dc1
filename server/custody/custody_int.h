/*
 * custody_int.h - state shared by the custody process's files (private to
 * server/custody/): the process context, the op handler type, the audit
 * queue and key lookup helpers.
 */
#ifndef KW_CUSTODY_INT_H
#define KW_CUSTODY_INT_H

#include <pthread.h>
#include <stdint.h>

#include <cJSON.h>

#include "../common/buf.h"
#include "../common/ipc.h"
#include "../config.h"
#include "hsm.h"
#include "keycache.h"
#include "keystore.h"
#include "rules.h"

struct audit_queue;
struct xks_state;

struct custody {
        const struct kw_config *cfg;
        struct kw_hsm *hsm;
        struct kw_keystore *ks;
        struct kw_keycache *kc;
        struct audit_queue *aq;
        pthread_mutex_t write_mu;     /* serialises key mutations            */
        uint64_t gen;                 /* bumped by every key mutation        */
        uint64_t requests, failures, material_loads;  /* atomics          */
        struct xks_state *xks;        /* XKS stores and SigV4 secrets (custody_xks.c) */
};

/* What a request says about its caller (strings point into the request). */
struct op_caller {
        struct kw_caller_ctx ctx;
        char actor[257];
        char request_id[257];
        char principal[2049], operation[129], via[129], vpc[129], vpce[129], store[129], cn[257];
};

typedef kw_result (*op_fn)(struct custody *c, const struct kw_msg *req, const struct op_caller *who,
                           struct kw_buf *reply);

/* Handlers (custody_keys.c, custody_admin.c). */
kw_result op_key_create(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_key_import(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_key_get(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_key_list(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_key_set_state(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_key_rotate(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_key_schedule_delete(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_key_cancel_delete(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_key_update(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_encrypt(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_decrypt(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_wrap(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_unwrap(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_audit_query(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_audit_verify(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_token_check(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_token_create(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_token_list(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_token_revoke(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_status(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_stats(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_health(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);

/* AWS XKS (custody_xks.c). */
KW_MUST_USE kw_result custody_xks_init(struct custody *c);
/* Verifies the SigV4 fields of req (XKS_STORE SIGV4_AKID SIGV4_STS SIGV4_SIG):
 * KW_OK or KW_ERR_AUTH (detail says why, never a secret). */
KW_MUST_USE kw_result custody_xks_auth(struct custody *c, const struct kw_msg *req);
kw_result op_xks_auth(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_xks_stores(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_xks_store_create(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_xks_cred_rotate(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_xks_cred_delete(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_xks_store_delete(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);
kw_result op_xks_import_file(struct custody *, const struct kw_msg *, const struct op_caller *, struct kw_buf *);

/* Key-use audit rows are queued and written in batches (group commit);
 * admin actions are written in the same transaction as their change. */
KW_MUST_USE kw_result audit_queue_new(struct kw_keystore *ks, unsigned flush_ms, struct audit_queue **ret);
void audit_queue_free(struct audit_queue *q);          /* flushes */
void audit_push(struct audit_queue *q, const struct op_caller *who, const char *action,
                const char *key_name, int code, const char *detail);
KW_MUST_USE kw_result audit_flush(struct audit_queue *q);
size_t audit_pending(struct audit_queue *q);

/* Reply helpers. */
KW_MUST_USE kw_result reply_json(struct kw_buf *reply, cJSON *doc);   /* consumes doc */
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

#endif
