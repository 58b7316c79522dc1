/*
 * custody.c - the custody process's request path: who is asking
 * (authenticate(): the caller class and its proof, verified here), the
 * request table with its permissions, and which requests can be answered
 * from memory (custody_can_inline).  The socket is custody_serve.c,
 * start-up custody_start.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <strings.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/names.h"
#include "../common/secret.h"
#include "crypto.h"
#include "custody.h"
#include "custody_int.h"


/* ---------------------------------------------------------------- helpers */

int valid_name(const char *s) { return kw_name_valid(s); }

void format_time(int64_t t, char out[32])
{
        time_t tt = (time_t)t;
        struct tm tm;
        gmtime_r(&tt, &tm);
        strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void json_wipe(cJSON *v)
{
        for (; v != NULL; v = v->next) {
                if (v->valuestring != NULL)
                        kw_wipe(v->valuestring, strlen(v->valuestring));
                json_wipe(v->child);
        }
}

kw_result reply_json(struct kw_buf *reply, cJSON *doc)
{
        KW_ENSURE(doc != NULL, KW_ERR_NOMEM);
        char *s = cJSON_PrintUnformatted(doc);
        json_wipe(doc);
        cJSON_Delete(doc);
        KW_ENSURE(s != NULL, KW_ERR_NOMEM);
        kw_result r = kw_msg_put_str(reply, KW_T_JSON, s);
        kw_wipe(s, strlen(s));
        cJSON_free(s);
        return r;
}

kw_result reply_list(struct kw_buf *reply, const char *key, cJSON *arr, kw_result filled)
{
        if (filled.code != 0) {
                cJSON_Delete(arr);
                return filled;
        }
        cJSON *d = cJSON_CreateObject();
        if (d == NULL) {
                cJSON_Delete(arr);
                KW_BAIL(KW_ERR_NOMEM);
        }
        cJSON_AddItemToObject(d, key, arr);
        return reply_json(reply, d);
}

/* --------------------------------------------------------------- dispatch */

/* Caller classes, as bits of op_row.callers. */
enum {
        BY_PUBLIC = 1u << 0,
        BY_ADMIN = 1u << 1,
        BY_XKS = 1u << 2,
        BY_EKM = 1u << 3,
};
/* OP_READ_ONLY in op_row.roles: the op changes nothing, so a console
 * session may send it without its CSRF token.  Every op open to auditors
 * is read-only (an auditor changes nothing): ROLES_ANY carries the mark.
 * ROLES_EVERY is every role for an op that changes something (the caller's
 * own session or password). */
#define OP_READ_ONLY (1u << 8)
#define ROLES_EVERY (ROLE_AUDITOR | ROLE_OPERATOR | ROLE_ADMIN)
#define ROLES_ANY (ROLES_EVERY | OP_READ_ONLY)
#define ROLES_KEYS (ROLE_OPERATOR | ROLE_ADMIN)
#define ROLES_ADMIN ROLE_ADMIN

/* The request table (proto.h): who may send each op; for admin callers,
 * which roles.  Anything not listed here is refused before a handler runs,
 * whatever the front says. */
struct op_row {
        uint8_t op;
        const char *name;
        op_fn fn;
        unsigned callers;
        unsigned roles;
};

/* Liveness; with the codes of the storage warnings when there are any
 * (only codes: this op is public). */
static kw_result op_ping(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                         struct kw_buf *reply)
{
        (void)req; (void)who;
        char why[161];
        const char *fleet = custody_fleet_state(c, why);
        int db_down = strcmp(fleet, "ACTIVE") != 0;
        if (!db_down && (c->rt == NULL || retention_warning_codes(c->rt, NULL) == 0))
                return KW_OK;
        cJSON *d = cJSON_CreateObject();
        KW_ENSURE(d != NULL, KW_ERR_NOMEM);
        cJSON *arr = cJSON_AddArrayToObject(d, "warnings");
        if (arr != NULL && db_down)   /* a fleet node serving from its cache */
                cJSON_AddItemToArray(arr, cJSON_CreateString("db_unavailable"));
        if (arr != NULL && c->rt != NULL)
                retention_warning_codes(c->rt, arr);
        return reply_json(reply, d);
}

static const struct op_row op_table[] = {
        { KW_OP_PING, "ping", op_ping, BY_PUBLIC | BY_ADMIN, ROLES_ANY },
        { KW_OP_STATUS, "status", op_status, BY_ADMIN, ROLES_ANY },
        { KW_OP_STATS, "stats", op_stats, BY_PUBLIC | BY_ADMIN, ROLES_ANY },
        { KW_OP_KEY_CREATE, "key.create", op_key_create, BY_ADMIN, ROLES_KEYS },
        { KW_OP_KEY_IMPORT, "key.import", op_key_import, BY_ADMIN, ROLES_KEYS },
        { KW_OP_KEY_GET, "key.get", op_key_get, BY_ADMIN | BY_EKM, ROLES_ANY },
        { KW_OP_KEY_LIST, "key.list", op_key_list, BY_ADMIN, ROLES_ANY },
        { KW_OP_KEY_VERSIONS, "key.versions", op_key_versions, BY_ADMIN, ROLES_ANY },
        { KW_OP_NODES, "nodes", op_nodes, BY_PUBLIC | BY_ADMIN, ROLES_ANY },
        { KW_OP_KEY_SET_STATE, "key.set_state", op_key_set_state, BY_ADMIN, ROLES_KEYS },
        { KW_OP_KEY_ROTATE, "key.rotate", op_key_rotate, BY_ADMIN, ROLES_KEYS },
        { KW_OP_KEY_SCHEDULE_DELETE, "key.schedule_deletion", op_key_schedule_delete, BY_ADMIN,
          ROLES_KEYS },
        { KW_OP_KEY_CANCEL_DELETE, "key.cancel_deletion", op_key_cancel_delete, BY_ADMIN,
          ROLES_KEYS },
        { KW_OP_KEY_UPDATE, "key.update", op_key_update, BY_ADMIN, ROLES_KEYS },
        { KW_OP_WRAP, "key.wrap", op_wrap, BY_EKM, 0 },
        { KW_OP_UNWRAP, "key.unwrap", op_unwrap, BY_EKM, 0 },
        { KW_OP_AUDIT_QUERY, "audit.query", op_audit_query, BY_ADMIN, ROLES_ANY },
        { KW_OP_AUDIT_VERIFY, "audit.verify", op_audit_verify, BY_ADMIN, ROLES_ANY },
        { KW_OP_AUDIT_PRUNE, "audit.prune", op_audit_prune, BY_ADMIN, ROLES_ADMIN },
        { KW_OP_TOKEN_CHECK, "token.check", op_token_check, BY_ADMIN, ROLES_ANY },
        { KW_OP_TOKEN_CREATE, "token.create", op_token_create, BY_ADMIN, ROLES_ADMIN },
        { KW_OP_TOKEN_LIST, "token.list", op_token_list, BY_ADMIN, ROLES_ADMIN | OP_READ_ONLY },
        { KW_OP_TOKEN_REVOKE, "token.revoke", op_token_revoke, BY_ADMIN, ROLES_ADMIN },
        { KW_OP_XKS, "xks", op_xks, BY_XKS, 0 },
        { KW_OP_XKS_STORES, "xks.stores", op_xks_stores, BY_PUBLIC | BY_ADMIN, ROLES_ANY },
        { KW_OP_XKS_STORE_CREATE, "xks.store.create", op_xks_store_create, BY_ADMIN, ROLES_ADMIN },
        { KW_OP_XKS_CRED_ROTATE, "xks.credential.rotate", op_xks_cred_rotate, BY_ADMIN,
          ROLES_ADMIN },
        { KW_OP_XKS_CRED_DELETE, "xks.credential.delete", op_xks_cred_delete, BY_ADMIN,
          ROLES_ADMIN },
        { KW_OP_XKS_STORE_DELETE, "xks.store.delete", op_xks_store_delete, BY_ADMIN, ROLES_ADMIN },
        { KW_OP_XKS_IMPORT_FILE, "xks.import_file", op_xks_import_file, BY_ADMIN,
          ROLES_ADMIN | OP_READ_ONLY },
        { KW_OP_ATTEST, "attest", op_attest, BY_PUBLIC, 0 },
        /* by password: public; by token: admin (the token is the proof) */
        { KW_OP_SESSION_LOGIN, "session.login", op_session_login, BY_PUBLIC | BY_ADMIN,
          ROLES_ANY },
        { KW_OP_SESSION_GET, "session.get", op_session_get, BY_ADMIN, ROLES_ANY },
        { KW_OP_SESSION_LOGOUT, "session.logout", op_session_logout, BY_ADMIN, ROLES_EVERY },
        { KW_OP_USER_CREATE, "user.create", op_user_create, BY_ADMIN, ROLES_ADMIN },
        { KW_OP_USER_LIST, "user.list", op_user_list, BY_ADMIN, ROLES_ADMIN | OP_READ_ONLY },
        { KW_OP_USER_DELETE, "user.delete", op_user_delete, BY_ADMIN, ROLES_ADMIN },
        /* admin, or a user in its own session: op_user_password decides */
        { KW_OP_USER_PASSWORD, "user.password", op_user_password, BY_ADMIN, ROLES_EVERY },
};

static const struct op_row *op_find(uint8_t op)
{
        for (size_t i = 0; i < sizeof op_table / sizeof op_table[0]; i++)
                if (op_table[i].op == op)
                        return &op_table[i];
        return NULL;
}

static const char *const caller_names[] = { "?", "admin", "xks", "ekm", "public" };

/* The proof fields of each class: a request carries its own class's and no
 * other (a front that mixes them is out of step with this protocol). */
static int proof_fields_ok(const struct kw_msg *m, enum kw_caller kind)
{
        static const uint8_t admin[] = { KW_T_TOKEN, KW_T_SESSION, KW_T_CSRF };
        static const uint8_t xks[] = { KW_T_SIGV4_STS, KW_T_SIGV4_SIG, KW_T_SIGV4_CREQ,
                                       KW_T_BODY };
        static const uint8_t ekm[] = { KW_T_EKM_CN };
        for (size_t i = 0; i < sizeof admin; i++)
                if (kind != KW_CALLER_ADMIN && kw_msg_has(m, admin[i]))
                        return 0;
        for (size_t i = 0; i < sizeof xks; i++)
                if (kind != KW_CALLER_XKS && kw_msg_has(m, xks[i]))
                        return 0;
        for (size_t i = 0; i < sizeof ekm; i++)
                if (kind != KW_CALLER_EKM && kw_msg_has(m, ekm[i]))
                        return 0;
        return 1;
}

/* RFC 6750 b64token: [A-Za-z0-9._~+/-]+ then '='*. */
static int token_syntax_ok(const uint8_t *t, size_t n)
{
        size_t i = 0;
        while (i < n && (kw_name_char(t[i]) || t[i] == '~' || t[i] == '+' || t[i] == '/'))
                i++;
        if (i == 0)
                return 0;
        while (i < n && t[i] == '=')
                i++;
        return i == n;
}

static unsigned role_bit(const char *role)
{
        return strcmp(role, "admin") == 0      ? ROLE_ADMIN
               : strcmp(role, "operator") == 0 ? ROLE_OPERATOR
               : strcmp(role, "auditor") == 0  ? ROLE_AUDITOR
                                               : 0;
}

/* The active token with this SHA-256 into *w (role, id, name, actor). */
static kw_result auth_token_hash(struct custody *c, const uint8_t hash[32], struct op_caller *w)
{
        struct kw_token_row tok;
        kw_result r = kw_keystore_token_find(c->ks, hash, &tok);
        if (r.code == KW_ERR_NOT_FOUND) {
                custody_fleet_token_gone(c, hash);
                kw_err_set_detail("unknown or revoked token");
                KW_BAIL(KW_ERR_AUTH);
        }
        /* a fleet node without its database: a token it found active
         * lately still reads (changes fail on the database anyway) */
        if (r.code == KW_ERR_DB_UNAVAILABLE && custody_fleet_token_cached(c, hash, &tok))
                r = KW_OK;
        else if (kw_ok(r))
                custody_fleet_token_seen(c, hash, &tok);
        KW_TRY(r);
        w->role = role_bit(tok.role);
        memcpy(w->token_hash, hash, sizeof w->token_hash);
        snprintf(w->token_id, sizeof w->token_id, "%s", tok.id);
        snprintf(w->token_name, sizeof w->token_name, "%s", tok.name);
        snprintf(w->actor, sizeof w->actor, "token:%s(%s)", tok.id, tok.name);
        return KW_OK;
}

/* A console session: live in the table, and for a token's session the
 * token still active (revoked meanwhile by another path: the session ends).
 * The CSRF token is checked by the caller. */
static kw_result auth_session(struct custody *c, const struct kw_field *sid, struct op_caller *w)
{
        if (c->sessions == NULL) {
                kw_err_set_detail("console sessions are not enabled");
                KW_BAIL(KW_ERR_AUTH);
        }
        KW_TRY(kw_sessions_find(c->sessions, sid->p, sid->len, custody_mono_now(), &w->session));
        w->by_session = 1;
        if (w->session.kind == KW_SESSION_TOKEN) {
                kw_result r = auth_token_hash(c, w->session.token_hash, w);
                if (r.code == KW_ERR_AUTH)
                        kw_sessions_end_account(c->sessions, KW_SESSION_TOKEN, w->session.account,
                                                NULL);
                KW_TRY(r);
        } else {
                w->role = role_bit(w->session.role);
                snprintf(w->actor, sizeof w->actor, "%s", w->session.actor);
        }
        return KW_OK;
}

/* ADMIN: the bearer token, hashed here and looked up (active tokens only),
 * or a console session with, for an op that changes something, its CSRF
 * token (compared in constant time). */
static kw_result auth_admin(struct custody *c, const struct kw_msg *m, const struct op_row *row,
                            struct op_caller *w)
{
        struct kw_field t;
        int has_token = kw_msg_has(m, KW_T_TOKEN), has_session = kw_msg_has(m, KW_T_SESSION);
        if (has_token && has_session) {
                kw_err_set_detail("a request carries a token or a session, not both");
                KW_BAIL(KW_ERR_PROTOCOL);
        }
        if (has_session) {
                KW_TRY(kw_msg_get(m, KW_T_SESSION, &t));
                KW_TRY(auth_session(c, &t, w));
                struct kw_field csrf = { 0 };
                if ((row->roles & OP_READ_ONLY) == 0 &&
                    (kw_msg_get(m, KW_T_CSRF, &csrf).code != 0 ||
                     !kw_session_csrf_ok(w->session.csrf, csrf.p, csrf.len))) {
                        kw_err_set_detail("a change in a console session needs its X-CSRF-Token");
                        KW_BAIL(KW_ERR_CSRF);
                }
        } else {
                if (kw_msg_get(m, KW_T_TOKEN, &t).code != 0 || !token_syntax_ok(t.p, t.len)) {
                        kw_err_set_detail("unknown or revoked token");
                        KW_BAIL(KW_ERR_AUTH);
                }
                uint8_t hash[32];
                kw_sha256(t.p, t.len, hash);
                kw_result r = auth_token_hash(c, hash, w);
                kw_wipe(hash, sizeof hash);
                KW_TRY(r);
        }
        if ((w->role & row->roles) == 0) {
                kw_err_set_detail("the %s role cannot do this",
                                  w->role == ROLE_ADMIN ? "admin"
                                  : w->role == ROLE_OPERATOR ? "operator" : "auditor");
                KW_BAIL(KW_ERR_FORBIDDEN);
        }
        return KW_OK;
}

/* EKM: the client CN the front verified against [tls] clients_ca_cert_file.
 * Custody cannot see the TLS session, so it takes the CN as the proof and
 * accepts only one the configuration allows; the key rules then decide. */
static kw_result auth_ekm(struct custody *c, const struct kw_msg *m, struct op_caller *w)
{
        const struct kw_config *cfg = c->cfg;
        if (!cfg->ekm.azure_ekm_enable) {
                kw_err_set_detail("Azure EKM is not enabled");
                KW_BAIL(KW_ERR_FORBIDDEN);
        }
        if (kw_msg_get_str(m, KW_T_EKM_CN, w->cn, sizeof w->cn).code != 0 ||
            !kw_utf8_printable(w->cn)) {
                kw_err_set_detail("no valid client certificate subject");
                KW_BAIL(KW_ERR_AUTH);
        }
        int ok = cfg->ekm.azure_ekm_disable_client_auth;
        for (size_t i = 0; !ok && i < cfg->ekm.azure_ekm_client_cns.n; i++)
                ok = w->cn[0] != '\0' && strcasecmp(cfg->ekm.azure_ekm_client_cns.v[i], w->cn) == 0;
        if (!ok) {
                kw_err_set_detail("client certificate subject not allowed");
                KW_BAIL(KW_ERR_AUTH);
        }
        const char *pfx = cfg->ekm.azure_ekm_path_prefix;
        snprintf(w->ekm_path, sizeof w->ekm_path, "/azureekm%s%s", pfx && pfx[0] ? "/" : "",
                 pfx ? pfx : "");
        w->ctx.cn = w->cn;
        w->ctx.ekm_path = w->ekm_path;
        snprintf(w->actor, sizeof w->actor, "ekm:%.250s", w->cn[0] ? w->cn : "(no client auth)");
        return KW_OK;
}

/*
 * Who is asking, proven: the caller class named in the request, allowed
 * for this op by op_table, and that class's proof verified here.  There is
 * no default class.  On success *w describes the verified caller.
 */
static kw_result authenticate(struct custody *c, const struct kw_msg *m, const struct op_row *row,
                              struct op_caller *w)
{
        memset(w, 0, sizeof *w);
        uint32_t kind = 0;
        if (kw_msg_get_u32(m, KW_T_CALLER, &kind).code != 0 || kind < KW_CALLER_ADMIN ||
            kind > KW_CALLER_PUBLIC || !proof_fields_ok(m, (enum kw_caller)kind)) {
                kw_err_set_detail("the request names no valid caller class");
                KW_BAIL(KW_ERR_PROTOCOL);
        }
        w->ctx.kind = (enum kw_caller)kind;
        unsigned bit = kind == KW_CALLER_PUBLIC ? BY_PUBLIC
                     : kind == KW_CALLER_ADMIN  ? BY_ADMIN
                     : kind == KW_CALLER_XKS    ? BY_XKS
                                                : BY_EKM;
        if ((row->callers & bit) == 0) {
                kw_err_set_detail("%s is not open to %s callers", row->name, caller_names[kind]);
                KW_BAIL(KW_ERR_FORBIDDEN);
        }
        if (kw_msg_has(m, KW_T_REQUEST_ID))
                KW_TRY(kw_msg_get_str(m, KW_T_REQUEST_ID, w->request_id, sizeof w->request_id));
        switch (kind) {
        case KW_CALLER_ADMIN:
                return auth_admin(c, m, row, w);
        case KW_CALLER_XKS:
                return custody_xks_auth(c, m, w);
        case KW_CALLER_EKM:
                return auth_ekm(c, m, w);
        default:
                snprintf(w->actor, sizeof w->actor, "public");
                return KW_OK;
        }
}

void custody_handle(struct custody *c, const uint8_t *p, size_t n, struct kw_buf *out)
{
        struct kw_msg req;
        struct op_caller who;
        memset(&who, 0, sizeof who);
        kw_err_clear_detail();
        kw_result r = kw_msg_parse(p, n, 0, &req);
        const struct op_row *row = r.code == 0 ? op_find(req.op) : NULL;
        if (r.code == 0 && row == NULL)
                r = KW_RESULT(KW_ERR_PROTOCOL);
        if (r.code == 0)
                r = authenticate(c, &req, row, &who);
        if (r.code == 0)
                r = kw_msg_begin_reply(out, req.op, req.id, 0);
        if (r.code == 0)
                r = row->fn(c, &req, &who, out);
        __atomic_add_fetch(&c->requests, 1, __ATOMIC_RELAXED);
        if (r.code == 0)
                r = kw_msg_end(out);
        if (r.code == 0)
                return;
        __atomic_add_fetch(&c->failures, 1, __ATOMIC_RELAXED);
        kw_buf_reset(out);
        /* the id even of a frame that did not parse: the front matches
         * replies to requests by it */
        uint8_t op = row ? row->op : 0;
        uint32_t id = kw_ipc_peek_id(p, n);
        const char *detail = kw_err_detail();
        /* a fault of this side (not of the request, not a known outage the HSM
         * state already reports): the answer says only "internal" or "hsm",
         * so the why is logged here */
        int fault = r.code <= KW_ERR_CRYPTO && r.code != KW_ERR_DECRYPT &&
                    r.code != KW_ERR_HSM_UNAVAILABLE && r.code != KW_ERR_HSM_TIMEOUT &&
                    r.code != KW_ERR_HSM_UNWRAP &&
                    /* a fleet's database away: logged once by custody_fleet.c */
                    r.code != KW_ERR_DB_UNAVAILABLE;
        if (fault || kw_log_enabled(KW_LOG_DEBUG))
                kw_log(fault ? KW_LOG_ERROR : KW_LOG_DEBUG, "custody_error", "op",
                       row ? row->name : "?", "error", kw_err_name(r.code), "detail", detail,
                       "at", kw_trace_last(), KW_END);
        if ((r.code == KW_ERR_FORBIDDEN || r.code == KW_ERR_CSRF) && who.actor[0] != '\0')
                audit_push(c->aq, &who, row->name, "", r.code, detail);
        else if (r.code == KW_ERR_AUTH && row != NULL && row->op == KW_OP_SESSION_LOGIN &&
                 who.actor[0] == '\0')
                custody_audit_login_denied(c, &req, &who);
        if (kw_msg_begin_reply(out, op, id, r.code).code != 0 ||
            (detail[0] != '\0' &&
             kw_msg_put(out, KW_T_DETAIL, detail, strnlen(detail, 256)).code != 0) ||
            (who.retry_after != 0 &&
             kw_msg_put_u32(out, KW_T_WAIT_SECONDS, who.retry_after).code != 0) ||
            (who.request_id[0] != '\0' &&
             kw_msg_put_str(out, KW_T_REQUEST_ID, who.request_id).code != 0) ||
            kw_msg_end(out).code != 0) {
                kw_buf_reset(out);
                kw_ignore(kw_msg_begin_reply(out, op, id, KW_ERR_INTERNAL));
                kw_ignore(kw_msg_end(out));
        }
}

/*
 * Whether a request can be answered from memory now, without the HSM, the
 * database or an RSA private-key operation, so that the connection's reader
 * answers it at once instead of queueing it (custody_serve.c).  Advisory
 * only: every check still happens when the request is handled.  What counts
 * as warm is kw_keycache_warm's: the key cached and the material the
 * operation needs unsealed (the current version to encrypt or wrap; for a
 * decrypt or unwrap, the version named, or when the request cannot name it
 * cheaply, every version).
 */
int custody_can_inline(struct custody *c, const uint8_t *p, size_t n)
{
        struct kw_msg m;
        if (kw_msg_parse(p, n, 0, &m).code != 0)
                return 1;       /* answered with a protocol error */
        char name[KW_NAME_MAX + 1];
        uint32_t ver = 0;
        int rsa = 0;
        switch (m.op) {
        case KW_OP_PING:
        case KW_OP_STATS:
        case KW_OP_XKS_STORES:
                return 1;
        case KW_OP_XKS: {
                enum kw_warm_need need;
                return custody_xks_peek(&m, name, &need) &&
                       kw_keycache_warm(c->kc, name, need, 0, &rsa) && !rsa;
        }
        case KW_OP_KEY_GET: {
                uint32_t kind = 0;
                return kw_msg_get_u32(&m, KW_T_CALLER, &kind).code == 0 && kind == KW_CALLER_EKM &&
                       kw_msg_get_str(&m, KW_T_NAME, name, sizeof name).code == 0 &&
                       kw_keycache_warm(c->kc, name, KW_WARM_ENTRY, 0, &rsa);
        }
        case KW_OP_WRAP:   /* RSA wraps with the public half */
                if (kw_msg_get_str(&m, KW_T_NAME, name, sizeof name).code != 0)
                        return 0;
                if (kw_keycache_warm(c->kc, name, KW_WARM_ENTRY, 0, &rsa) && rsa)
                        return 1;
                return kw_keycache_warm(c->kc, name, KW_WARM_CURRENT, 0, &rsa);
        case KW_OP_UNWRAP:
                if (kw_msg_get_str(&m, KW_T_NAME, name, sizeof name).code != 0)
                        return 0;
                if (kw_msg_has(&m, KW_T_VERSION))
                        return kw_msg_get_u32(&m, KW_T_VERSION, &ver).code == 0 &&
                               kw_keycache_warm(c->kc, name, KW_WARM_VERSION, ver, &rsa) && !rsa;
                return kw_keycache_warm(c->kc, name, KW_WARM_ALL, 0, &rsa) && !rsa;
        default:
                return 0;
        }
}
