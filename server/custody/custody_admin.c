/*
 * custody_admin.c - custody ops that are not about one key: status,
 * counters, the deep health check, the audit table, and admin tokens.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/b64.h"
#include "../common/log.h"
#include "crypto.h"
#include "custody_int.h"

static const char *const roles[] = { "admin", "operator", "auditor" };

static const char *hsm_state_name(enum kw_hsm_state s)
{
        return s == KW_HSM_UP ? "up" : s == KW_HSM_DOWN ? "down" : "slow";
}

kw_result op_status(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                    struct kw_buf *reply)
{
        (void)req;
        (void)who;
        uint64_t nkeys = 0;
        kw_result kr = kw_keystore_key_count(c->ks, &nkeys);
        /* a fleet node answers while its database is away (db_state says so) */
        if (!kw_ok(kr) && !(c->fleet != NULL && kr.code == KW_ERR_DB_UNAVAILABLE))
                return kr;
        struct kw_keycache_stats cs;
        kw_keycache_get_stats(c->kc, &cs);
        cJSON *d = cJSON_CreateObject();
        KW_ENSURE(d != NULL, KW_ERR_NOMEM);
        cJSON_AddStringToObject(d, "state", "open");
        if (kw_ok(kr))
                cJSON_AddNumberToObject(d, "keys", (double)nkeys);
        else
                cJSON_AddNullToObject(d, "keys");
        custody_fleet_status_json(c, d);
        cJSON *h = cJSON_AddObjectToObject(d, "hsm");
        cJSON_AddStringToObject(h, "state", hsm_state_name(kw_hsm_state(c->hsm)));
        cJSON_AddStringToObject(h, "mechanism", kw_hsm_mechanism_name(c->hsm));
        cJSON_AddStringToObject(h, "token", c->cfg->hsm.token_label);
        cJSON_AddStringToObject(h, "master_key", c->cfg->hsm.master_key_label);
        cJSON *db = cJSON_AddObjectToObject(d, "db");
        cJSON_AddStringToObject(db, "engine", c->cfg->db.engine);
        if (c->fleet == NULL)
                cJSON_AddStringToObject(db, "path", c->cfg->db.path);
        cJSON_AddNumberToObject(db, "schema_version", kw_keystore_schema_version(c->ks));
        cJSON *ca = cJSON_AddObjectToObject(d, "key_cache");
        cJSON_AddNumberToObject(ca, "entries", (double)cs.entries);
        cJSON_AddNumberToObject(ca, "max", (double)cs.max);
        cJSON_AddNumberToObject(d, "audit_pending", (double)audit_pending(c->aq));
        /* serving (custody_serve.c): answered by a connection's reader at
         * once, queued for a worker, reads that found frames, queued now */
        cJSON_AddNumberToObject(d, "requests_inline_total", (double)__atomic_load_n(&c->inline_total, __ATOMIC_RELAXED));
        cJSON_AddNumberToObject(d, "requests_queued_total", (double)__atomic_load_n(&c->queued_total, __ATOMIC_RELAXED));
        cJSON_AddNumberToObject(d, "reader_wakeups_total", (double)__atomic_load_n(&c->reader_wakeups, __ATOMIC_RELAXED));
        cJSON_AddNumberToObject(d, "requests_queued", (double)__atomic_load_n(&c->queued_now, __ATOMIC_RELAXED));
        if (c->rt != NULL)
                retention_status_json(c->rt, d);
        return reply_json(reply, d);
}

kw_result op_stats(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                   struct kw_buf *reply)
{
        (void)req;
        (void)who;
        struct kw_keycache_stats cs;
        struct kw_hsm_stats hs;
        kw_keycache_get_stats(c->kc, &cs);
        kw_hsm_get_stats(c->hsm, &hs);
        cJSON *d = cJSON_CreateObject();
        KW_ENSURE(d != NULL, KW_ERR_NOMEM);
        cJSON_AddNumberToObject(d, "requests_total", (double)__atomic_load_n(&c->requests, __ATOMIC_RELAXED));
        cJSON_AddNumberToObject(d, "request_failures_total", (double)__atomic_load_n(&c->failures, __ATOMIC_RELAXED));
        cJSON_AddNumberToObject(d, "hsm_calls_total", (double)hs.calls);
        cJSON_AddNumberToObject(d, "hsm_errors_total", (double)hs.errors);
        cJSON_AddNumberToObject(d, "hsm_timeouts_total", (double)hs.timeouts);
        cJSON_AddNumberToObject(d, "hsm_reconnects_total", (double)hs.reconnects);
        cJSON_AddNumberToObject(d, "hsm_up", kw_hsm_state(c->hsm) == KW_HSM_UP ? 1 : 0);
        cJSON_AddNumberToObject(d, "key_cache_hits_total", (double)cs.hits);
        cJSON_AddNumberToObject(d, "key_cache_misses_total", (double)cs.misses);
        cJSON_AddNumberToObject(d, "key_cache_evictions_total", (double)cs.evictions);
        cJSON_AddNumberToObject(d, "key_cache_entries", (double)cs.entries);
        cJSON_AddNumberToObject(d, "key_unseals_total", (double)__atomic_load_n(&c->material_loads, __ATOMIC_RELAXED));
        cJSON_AddNumberToObject(d, "audit_pending", (double)audit_pending(c->aq));
        /* serving (custody_serve.c): answered by a connection's reader at
         * once, queued for a worker, reads that found frames, queued now */
        cJSON_AddNumberToObject(d, "requests_inline_total", (double)__atomic_load_n(&c->inline_total, __ATOMIC_RELAXED));
        cJSON_AddNumberToObject(d, "requests_queued_total", (double)__atomic_load_n(&c->queued_total, __ATOMIC_RELAXED));
        cJSON_AddNumberToObject(d, "reader_wakeups_total", (double)__atomic_load_n(&c->reader_wakeups, __ATOMIC_RELAXED));
        cJSON_AddNumberToObject(d, "requests_queued", (double)__atomic_load_n(&c->queued_now, __ATOMIC_RELAXED));
        cJSON_AddNumberToObject(d, "log_lines_dropped_total", (double)kw_log_dropped_total());
        cJSON_AddNumberToObject(d, "log_lines_lost_total", (double)kw_log_lost_total());
        if (c->rt != NULL)
                retention_stats_json(c->rt, d);
        return reply_json(reply, d);
}

/* ------------------------------------------------------------------ audit */

static int audit_cb(const struct kw_audit_row *row, void *arg)
{
        cJSON *arr = arg;
        cJSON *e = cJSON_CreateObject();
        if (e == NULL)
                return 1;
        char ts[64];
        time_t s = (time_t)(row->ts_ms / 1000);
        struct tm tm;
        gmtime_r(&s, &tm);
        snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(row->ts_ms % 1000));
        cJSON_AddNumberToObject(e, "seq", (double)row->seq);
        cJSON_AddStringToObject(e, "time", ts);
        cJSON_AddStringToObject(e, "actor", row->actor);
        cJSON_AddStringToObject(e, "action", row->action);
        cJSON_AddStringToObject(e, "key", row->key_name);
        cJSON_AddStringToObject(e, "result", row->result);
        cJSON_AddStringToObject(e, "detail", row->detail);
        cJSON_AddStringToObject(e, "request_id", row->request_id);
        cJSON_AddStringToObject(e, "hash", row->hash_hex);
        cJSON_AddItemToArray(arr, e);
        return 0;
}

/* An optional u64 field into *v (untouched when absent). */
static kw_result msg_opt_u64(const struct kw_msg *req, uint8_t tag, uint64_t *v)
{
        return kw_msg_has(req, tag) ? kw_msg_get_u64(req, tag, v) : KW_OK;
}

kw_result op_audit_query(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                         struct kw_buf *reply)
{
        (void)who;
        uint32_t limit = 100, desc = 0;
        uint64_t since = 0, until = 0;
        char name[65] = "", action[65] = "", actor[KW_AUDIT_ACTOR_PREFIX_MAX + 1] = "";
        struct kw_audit_filter f = { 0 };
        KW_TRY(msg_opt_u64(req, KW_T_SEQ, &f.after));
        KW_TRY(msg_opt_u64(req, KW_T_BEFORE, &f.before));
        KW_TRY(msg_opt_u64(req, KW_T_SINCE, &since));
        KW_TRY(msg_opt_u64(req, KW_T_UNTIL, &until));
        if (kw_msg_has(req, KW_T_LIMIT))
                KW_TRY(kw_msg_get_u32(req, KW_T_LIMIT, &limit));
        if (kw_msg_has(req, KW_T_DESC))
                KW_TRY(kw_msg_get_u32(req, KW_T_DESC, &desc));
        KW_ENSURE(limit >= 1 && limit <= 1000 && desc <= 1 && since <= INT64_MAX &&
                          until <= INT64_MAX,
                  KW_ERR_BAD_FIELD);
        if (kw_msg_has(req, KW_T_NAME))
                KW_TRY(kw_msg_get_str(req, KW_T_NAME, name, sizeof name));
        if (kw_msg_has(req, KW_T_ACTION))
                KW_TRY(kw_msg_get_str(req, KW_T_ACTION, action, sizeof action));
        if (kw_msg_has(req, KW_T_ACTOR))
                KW_TRY(kw_msg_get_str(req, KW_T_ACTOR, actor, sizeof actor));
        f.limit = limit;
        f.desc = (int)desc;
        f.since_ms = (int64_t)since;
        f.until_ms = (int64_t)until;
        f.key_name = name[0] ? name : NULL;
        f.action = action[0] ? action : NULL;
        f.actor_prefix = kw_msg_has(req, KW_T_ACTOR) ? actor : NULL;
        KW_TRY(audit_flush(c->aq));   /* what was done is what is shown */
        cJSON *arr = cJSON_CreateArray();
        KW_ENSURE(arr != NULL, KW_ERR_NOMEM);
        kw_result r = kw_keystore_audit_query_filter(c->ks, &f, audit_cb, arr);
        if (r.code != 0) {
                cJSON_Delete(arr);
                return r;
        }
        cJSON *d = cJSON_CreateObject();
        if (d == NULL) {
                cJSON_Delete(arr);
                KW_BAIL(KW_ERR_NOMEM);
        }
        int n = cJSON_GetArraySize(arr);
        cJSON_AddItemToObject(d, "events", arr);
        if ((uint32_t)n == limit) {
                const cJSON *last = cJSON_GetArrayItem(arr, n - 1);
                cJSON_AddNumberToObject(d, "next", cJSON_GetObjectItem(last, "seq")->valuedouble);
        } else {
                cJSON_AddNullToObject(d, "next");
        }
        return reply_json(reply, d);
}

kw_result op_audit_verify(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                          struct kw_buf *reply)
{
        (void)req;
        (void)who;
        KW_TRY(audit_flush(c->aq));   /* what was done is what is verified */
        struct kw_audit_verify v;
        KW_TRY(kw_keystore_audit_verify_ex(c->ks, &v));
        cJSON *d = cJSON_CreateObject();
        KW_ENSURE(d != NULL, KW_ERR_NOMEM);
        char hex[2 * KW_AUDIT_HASH_LEN + 1];
        cJSON_AddBoolToObject(d, "ok", v.first_bad_seq == 0);
        cJSON_AddNumberToObject(d, "rows", (double)v.records);
        if (v.first_bad_seq != 0) {
                cJSON_AddNumberToObject(d, "first_bad_seq", (double)v.first_bad_seq);
                cJSON_AddStringToObject(d, "reason", v.why);
                if (v.bad_is_batch) {
                        cJSON *b = cJSON_AddObjectToObject(d, "first_bad_batch");
                        cJSON_AddNumberToObject(b, "first_seq", (double)v.first_bad_seq);
                        cJSON_AddNumberToObject(b, "last_seq", (double)v.bad_last_seq);
                }
        }
        if (v.start_seq != 0) {
                kw_audit_hex(v.start_hash, KW_AUDIT_HASH_LEN, hex);
                cJSON *cp = cJSON_AddObjectToObject(d, "checkpoint");
                cJSON_AddNumberToObject(cp, "seq", (double)v.start_seq);
                cJSON_AddStringToObject(cp, "hash", hex);
        }
        if (v.first_bad_seq == 0 && v.head_seq != 0) {
                kw_audit_hex(v.head_hash, KW_AUDIT_HASH_LEN, hex);
                cJSON *h = cJSON_AddObjectToObject(d, "head");
                cJSON_AddNumberToObject(h, "seq", (double)v.head_seq);
                cJSON_AddStringToObject(h, "hash", hex);
        }
        return reply_json(reply, d);
}

/* Retention now: export what is past the configured bound and prune it
 * behind a checkpoint (the same cycle as the periodic one, this caller as
 * the actor of its audit.prune rows). */
kw_result op_audit_prune(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                         struct kw_buf *reply)
{
        (void)req;
        KW_ENSURE(c->rt != NULL, KW_ERR_INTERNAL);
        KW_TRY(audit_flush(c->aq));
        cJSON *d = cJSON_CreateObject();
        KW_ENSURE(d != NULL, KW_ERR_NOMEM);
        kw_result r = retention_run(c->rt, who, d);
        if (r.code != 0) {
                cJSON_Delete(d);
                return r;
        }
        retention_status_json(c->rt, d);
        return reply_json(reply, d);
}

/* ----------------------------------------------------------------- tokens */

static cJSON *token_doc(const struct kw_token_row *t)
{
        char ts[32];
        cJSON *d = cJSON_CreateObject();
        if (d == NULL)
                return NULL;
        cJSON_AddStringToObject(d, "id", t->id);
        cJSON_AddStringToObject(d, "name", t->name);
        cJSON_AddStringToObject(d, "role", t->role);
        format_time(t->created, ts);
        cJSON_AddStringToObject(d, "created", ts);
        if (t->revoked) {
                format_time(t->revoked, ts);
                cJSON_AddStringToObject(d, "revoked", ts);
        } else {
                cJSON_AddNullToObject(d, "revoked");
        }
        return d;
}

/* The caller's own token, as authenticate() verified it: the front learns
 * the role (for its early 403) and the id (for its log line). */
kw_result op_token_check(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                         struct kw_buf *reply)
{
        (void)c;
        (void)req;
        cJSON *d = cJSON_CreateObject();
        KW_ENSURE(d != NULL, KW_ERR_NOMEM);
        int user = who->by_session && who->session.kind == KW_SESSION_USER;
        /* a user's session: the user name stands where a token's id would */
        cJSON_AddStringToObject(d, "id", user ? who->session.account : who->token_id);
        cJSON_AddStringToObject(d, "name", user ? who->session.name : who->token_name);
        cJSON_AddStringToObject(d, "role", who->role == ROLE_ADMIN      ? "admin"
                                           : who->role == ROLE_OPERATOR ? "operator"
                                                                        : "auditor");
        cJSON_AddStringToObject(d, "kind", user ? "user" : "token");
        cJSON_AddBoolToObject(d, "session", who->by_session);
        return reply_json(reply, d);
}

kw_result token_row_stamp(struct kw_token_row *row)
{
        uint8_t idb[8];
        KW_TRY(kw_random(idb, sizeof idb));
        for (int i = 0; i < 8; i++)
                snprintf(row->id + 2 * i, 3, "%02x", idb[i]);
        row->created = time(NULL);
        return KW_OK;
}

kw_result token_generate(struct kw_token_row *row, struct kw_buf *ret_token, uint8_t ret_hash[32])
{
        uint8_t raw[32];
        KW_TRY(kw_random(raw, sizeof raw));
        kw_result r = kw_buf_put_str(ret_token, "kw_");
        if (r.code == 0)
                r = kw_b64url_encode(raw, sizeof raw, ret_token);
        kw_wipe(raw, sizeof raw);
        KW_TRY(r);
        KW_TRY(token_row_stamp(row));
        kw_sha256(ret_token->p, ret_token->len, ret_hash);
        return KW_OK;
}

kw_result op_token_create(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                          struct kw_buf *reply)
{
        struct kw_token_row t;
        memset(&t, 0, sizeof t);
        KW_TRY(kw_msg_get_str(req, KW_T_TOKEN_NAME, t.name, sizeof t.name));
        KW_TRY(kw_msg_get_str(req, KW_T_ROLE, t.role, sizeof t.role));
        if (!valid_name(t.name)) {
                kw_err_set_detail("token names are 1..64 characters of A-Z a-z 0-9 . _ -");
                KW_BAIL(KW_ERR_BAD_NAME);
        }
        int role_ok = 0;
        for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
                role_ok |= strcmp(t.role, roles[i]) == 0;
        if (!role_ok) {
                kw_err_set_detail("role must be admin, operator or auditor");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        uint8_t hash[32];
        struct kw_buf tok;
        kw_buf_init(&tok, 128);
        kw_result r = token_generate(&t, &tok, hash);
        const char *tok_s = NULL;
        if (r.code == 0)
                r = kw_buf_cstr(&tok, &tok_s);
        if (r.code == 0) {
                struct kw_audit_entry au = { .actor = who->actor, .action = "token.create",
                                             .result = "ok", .detail = t.name,
                                             .request_id = who->request_id };
                r = kw_keystore_token_insert(c->ks, &t, hash, &au);
                if (r.code == KW_ERR_EXISTS)
                        kw_err_set_detail("a token named %s already exists", t.name);
        }
        kw_wipe(hash, sizeof hash);
        if (r.code == 0) {
                cJSON *d = token_doc(&t);
                if (d != NULL)
                        cJSON_AddStringToObject(d, "token", tok_s);
                r = reply_json(reply, d);
        }
        kw_buf_free(&tok);
        return r;
}

static int token_list_cb(const struct kw_token_row *row, void *arg)
{
        cJSON *d = token_doc(row);
        if (d == NULL)
                return 1;
        cJSON_AddItemToArray((cJSON *)arg, d);
        return 0;
}

kw_result op_token_list(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                        struct kw_buf *reply)
{
        (void)req;
        (void)who;
        cJSON *arr = cJSON_CreateArray();
        KW_ENSURE(arr != NULL, KW_ERR_NOMEM);
        return reply_list(reply, "tokens", arr, kw_keystore_token_list(c->ks, token_list_cb, arr));
}

kw_result op_token_revoke(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                          struct kw_buf *reply)
{
        char id[65];
        KW_TRY(kw_msg_get_str(req, KW_T_TOKEN_ID, id, sizeof id));
        struct kw_audit_entry au = { .actor = who->actor, .action = "token.revoke",
                                     .result = "ok", .detail = id, .request_id = who->request_id };
        KW_TRY(kw_keystore_token_revoke(c->ks, id, &au));
        kw_sessions_end_account(c->sessions, KW_SESSION_TOKEN, id, NULL);   /* at once */
        cJSON *d = cJSON_CreateObject();
        KW_ENSURE(d != NULL, KW_ERR_NOMEM);
        cJSON_AddStringToObject(d, "id", id);
        cJSON_AddBoolToObject(d, "revoked", 1);
        return reply_json(reply, d);
}
