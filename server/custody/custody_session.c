/*
 * custody_session.c - console sign-in, sessions and users (docs/api.md
 * "Sessions", "Users").  Passwords are checked and hashed here (argon2id,
 * password.h), in a custody worker, never in the front; every password
 * buffer is wiped after use.  Sessions live in custody memory (session.h).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../common/secret.h"
#include "crypto.h"
#include "custody_int.h"
#include "password.h"

static const char *const user_roles[] = { "admin", "operator", "auditor" };

int64_t custody_mono_now(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

kw_result custody_sessions_init(struct custody *c)
{
        const struct kw_config *cfg = c->cfg;
        if (!cfg->console.enable)
                return KW_OK;   /* c->sessions stays NULL: no session is ever accepted */
        return kw_sessions_new(KW_SESSIONS_MAX, cfg->console.session_idle_seconds,
                               cfg->console.session_max_seconds, &c->sessions);
}

static kw_result console_enabled(const struct custody *c)
{
        if (c->sessions == NULL) {
                kw_err_set_detail("the console is not enabled ([console] enable)");
                KW_BAIL(KW_ERR_NO_ROUTE);
        }
        return KW_OK;
}

/* The client address the front saw, for audit details ("" when absent or
 * not printable). */
static void client_addr(const struct kw_msg *req, char out[65])
{
        out[0] = '\0';
        if (kw_msg_has(req, KW_T_CLIENT_ADDR) &&
            (kw_msg_get_str(req, KW_T_CLIENT_ADDR, out, 65).code != 0 ||
             !kw_utf8_printable(out)))
                out[0] = '\0';
}

/* A password field as a secret (wiped when freed); checks its form. */
static kw_result get_password(const struct kw_msg *req, struct kw_secret *ret)
{
        struct kw_field f;
        if (kw_msg_get(req, KW_T_PASSWORD, &f).code != 0) {
                kw_err_set_detail("a password is required");
                KW_BAIL(KW_ERR_MISSING_FIELD);
        }
        return kw_secret_dup(f.p, f.len, ret);
}

static kw_result get_user_name(const struct kw_msg *req, char name[65])
{
        if (kw_msg_get_str(req, KW_T_USER, name, 65).code != 0 || !valid_name(name)) {
                kw_err_set_detail("user names are 1..64 characters of A-Z a-z 0-9 . _ -");
                KW_BAIL(KW_ERR_BAD_NAME);
        }
        return KW_OK;
}

static void time_or_null(cJSON *d, const char *k, int64_t t)
{
        char ts[32];
        if (t == 0) {
                cJSON_AddNullToObject(d, k);
                return;
        }
        format_time(t, ts);
        cJSON_AddStringToObject(d, k, ts);
}

static cJSON *user_doc(const struct kw_user_row *u)
{
        cJSON *d = cJSON_CreateObject();
        if (d == NULL)
                return NULL;
        char ts[32];
        cJSON_AddStringToObject(d, "name", u->name);
        cJSON_AddStringToObject(d, "role", u->role);
        format_time(u->created, ts);
        cJSON_AddStringToObject(d, "created", ts);
        time_or_null(d, "last_login", u->last_login);
        cJSON_AddNumberToObject(d, "failed_logins", u->failed);
        time_or_null(d, "locked_until", u->locked_until > time(NULL) ? u->locked_until : 0);
        return d;
}

static kw_result session_reply(const struct kw_session_info *s, int64_t idle, struct kw_buf *reply)
{
        cJSON *d = cJSON_CreateObject();
        KW_ENSURE(d != NULL, KW_ERR_NOMEM);
        char ts[32];
        char principal[300];
        if (s->kind == KW_SESSION_USER)
                snprintf(principal, sizeof principal, "user:%s", s->name);
        else
                snprintf(principal, sizeof principal, "%s", s->actor);
        cJSON_AddStringToObject(d, "principal", principal);
        cJSON_AddStringToObject(d, "kind", s->kind == KW_SESSION_USER ? "user" : "token");
        cJSON_AddStringToObject(d, "name", s->name);
        cJSON_AddStringToObject(d, "role", s->role);
        cJSON_AddStringToObject(d, "csrf", s->csrf);
        format_time(s->created_wall, ts);
        cJSON_AddStringToObject(d, "created", ts);
        format_time(s->expires_wall, ts);
        cJSON_AddStringToObject(d, "expires", ts);
        cJSON_AddNumberToObject(d, "idle_timeout_seconds", (double)idle);
        return reply_json(reply, d);   /* wipes the CSRF token in the tree */
}

/* A new session of (kind, account, name, role, actor; a token's hash or
 * NULL): the document and the id (KW_T_SESSION) in reply. */
static kw_result session_start(struct custody *c, enum kw_session_kind kind, const char *account,
                               const char *name, const char *role, const char *actor,
                               const uint8_t *token_hash, struct kw_buf *reply)
{
        struct kw_session_info s;
        memset(&s, 0, sizeof s);
        s.kind = kind;
        snprintf(s.account, sizeof s.account, "%s", account);
        snprintf(s.name, sizeof s.name, "%s", name);
        snprintf(s.role, sizeof s.role, "%s", role);
        snprintf(s.actor, sizeof s.actor, "%s", actor);
        if (token_hash != NULL)
                memcpy(s.token_hash, token_hash, sizeof s.token_hash);
        char id[KW_SESSION_ID_LEN + 1];
        struct kw_session_info made;
        kw_result cr = kw_sessions_create(c->sessions, &s, custody_mono_now(), (int64_t)time(NULL),
                                          id, &made);
        kw_wipe(&s, sizeof s);
        KW_TRY(cr);
        kw_result r = kw_msg_put(reply, KW_T_SESSION, id, KW_SESSION_ID_LEN);
        kw_wipe(id, sizeof id);
        if (r.code == 0)
                r = session_reply(&made, kw_sessions_idle_seconds(c->sessions), reply);
        if (r.code != 0)
                kw_sessions_end_account(c->sessions, made.kind, made.account, NULL);
        kw_wipe(&made, sizeof made);
        return r;
}

/* A denied sign-in whose proof custody did not accept (an unknown or revoked
 * token): audited here, before any handler ran (custody.c). */
void custody_audit_login_denied(struct custody *c, const struct kw_msg *req, struct op_caller *who)
{
        char addr[65], detail[128];
        client_addr(req, addr);
        snprintf(detail, sizeof detail, "token, from %s: unknown or revoked token",
                 addr[0] ? addr : "?");
        struct op_caller anon = *who;
        snprintf(anon.actor, sizeof anon.actor, "token:unknown");
        audit_push_result(c->aq, &anon, "session.login", "", "denied", detail);
}

static kw_result login_token(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                             struct kw_buf *reply)
{
        if (who->by_session) {
                kw_err_set_detail("sign in with a token or a password, not with a session");
                KW_BAIL(KW_ERR_FORBIDDEN);
        }
        const char *role = who->role == ROLE_ADMIN      ? "admin"
                           : who->role == ROLE_OPERATOR ? "operator"
                                                        : "auditor";
        char addr[65], detail[128];
        client_addr(req, addr);
        snprintf(detail, sizeof detail, "token, from %s", addr[0] ? addr : "?");
        kw_result r = session_start(c, KW_SESSION_TOKEN, who->token_id, who->token_name, role,
                                    who->actor, who->token_hash, reply);
        if (r.code == 0)
                audit_push_result(c->aq, who, "session.login", "", "ok", detail);
        return r;
}

/* The password check of an existing user, its outcome stored and audited
 * in one transaction. */
static kw_result login_check(struct custody *c, const struct kw_user_row *u,
                             const struct kw_secret *pw, const char *addr, struct op_caller *who,
                             struct kw_buf *reply)
{
        const struct kw_config *cfg = c->cfg;
        struct kw_lockout_policy pol = { (uint32_t)cfg->console.login_max_failures,
                                         cfg->console.lockout_seconds,
                                         cfg->console.lockout_max_seconds };
        int ok = 0;
        /* overloaded: refused before anything is counted against the user */
        KW_TRY(kw_password_verify(u->hash, pw->p, pw->len, &ok));
        int64_t now = (int64_t)time(NULL);
        int64_t lock = ok ? 0 : kw_lockout_seconds(u->failed < UINT32_MAX ? u->failed + 1 : u->failed,
                                                   &pol);
        char actor[80], detail[160];
        snprintf(actor, sizeof actor, "user:%s", u->name);
        if (ok)
                snprintf(detail, sizeof detail, "password, from %s", addr);
        else if (lock > 0)
                snprintf(detail, sizeof detail, "password, from %s: wrong password; locked for %lld s",
                         addr, (long long)lock);
        else
                snprintf(detail, sizeof detail, "password, from %s: wrong password", addr);
        struct kw_audit_entry au = { .actor = actor, .action = "session.login",
                                     .result = ok ? "ok" : "denied", .detail = detail,
                                     .request_id = who->request_id };
        struct kw_user_row after;
        KW_TRY(kw_keystore_user_login(c->ks, u->name, ok, now, &pol, &au, &after));
        if (!ok && after.locked_until > now) {
                who->retry_after = (uint32_t)(after.locked_until - now);
                kw_err_set_detail("try again in %u seconds",
                                  who->retry_after);
                KW_BAIL(KW_ERR_LOCKED);
        }
        if (!ok) {
                kw_err_set_detail("wrong user name or password");
                KW_BAIL(KW_ERR_AUTH);
        }
        return session_start(c, KW_SESSION_USER, u->name, u->name, u->role, actor, NULL, reply);
}

static kw_result login_password(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                                struct kw_buf *reply)
{
        char name[65], addr[65];
        client_addr(req, addr);
        if (addr[0] == '\0')
                snprintf(addr, sizeof addr, "?");
        KW_TRY(get_user_name(req, name));
        struct kw_secret pw = { 0 };
        KW_TRY(get_password(req, &pw));
        struct kw_user_row u;
        memset(&u, 0, sizeof u);
        kw_result r = kw_keystore_user_get(c->ks, name, &u);
        if (r.code == KW_ERR_NOT_FOUND) {
                int match = 0;   /* the same work as a known user's check */
                kw_result vr = kw_password_verify(NULL, pw.p, pw.len, &match);
                kw_secret_free(&pw);
                KW_TRY(vr);   /* overloaded: as a known name would be */
                char detail[128];
                snprintf(detail, sizeof detail, "password, from %s: no such user", addr);
                struct op_caller anon = *who;
                snprintf(anon.actor, sizeof anon.actor, "user:%s", name);
                audit_push_result(c->aq, &anon, "session.login", "", "denied", detail);
                kw_err_set_detail("wrong user name or password");
                KW_BAIL(KW_ERR_AUTH);
        }
        int64_t now = (int64_t)time(NULL);
        if (r.code == 0 && u.locked_until > now) {
                /* refused without a check: a right password does not lift it */
                kw_secret_free(&pw);
                who->retry_after = (uint32_t)(u.locked_until - now);
                char detail[160];
                snprintf(detail, sizeof detail, "password, from %s: locked for %u more s", addr,
                         who->retry_after);
                struct op_caller me = *who;
                snprintf(me.actor, sizeof me.actor, "user:%s", name);
                audit_push_result(c->aq, &me, "session.login", "", "locked", detail);
                kw_wipe(&u, sizeof u);
                kw_err_set_detail("try again in %u seconds",
                                  who->retry_after);
                KW_BAIL(KW_ERR_LOCKED);
        }
        if (r.code == 0)
                r = login_check(c, &u, &pw, addr, who, reply);
        kw_secret_free(&pw);
        kw_wipe(&u, sizeof u);
        return r;
}

kw_result op_session_login(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                           struct kw_buf *reply)
{
        KW_TRY(console_enabled(c));
        if (who->ctx.kind == KW_CALLER_ADMIN)
                return login_token(c, req, who, reply);
        return login_password(c, req, who, reply);
}

static kw_result need_session(const struct op_caller *who)
{
        if (!who->by_session) {
                kw_err_set_detail("this needs a console session (the session cookie)");
                KW_BAIL(KW_ERR_AUTH);
        }
        return KW_OK;
}

kw_result op_session_get(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                         struct kw_buf *reply)
{
        (void)req;
        KW_TRY(console_enabled(c));
        KW_TRY(need_session(who));
        return session_reply(&who->session, kw_sessions_idle_seconds(c->sessions), reply);
}

kw_result op_session_logout(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                            struct kw_buf *reply)
{
        KW_TRY(console_enabled(c));
        KW_TRY(need_session(who));
        size_t n = kw_sessions_end_account(c->sessions, who->session.kind, who->session.account,
                                           NULL);
        char addr[65], detail[128];
        client_addr(req, addr);
        snprintf(detail, sizeof detail, "%zu session%s ended, from %s", n, n == 1 ? "" : "s",
                 addr[0] ? addr : "?");
        audit_push_result(c->aq, who, "session.logout", "", "ok", detail);
        cJSON *d = cJSON_CreateObject();
        KW_ENSURE(d != NULL, KW_ERR_NOMEM);
        cJSON_AddNumberToObject(d, "ended", (double)n);
        return reply_json(reply, d);
}

/* ------------------------------------------------------------------ users */

/* The new password of req, checked and hashed (the password wiped). */
static kw_result new_password_hash(const struct kw_msg *req, char ret[KW_USER_HASH_MAX])
{
        struct kw_secret pw = { 0 };
        KW_TRY(get_password(req, &pw));
        kw_result r = KW_OK;
        if (!kw_password_acceptable(pw.p, pw.len)) {
                kw_err_set_detail("passwords are %d..%d bytes of UTF-8 without control characters",
                                  KW_PASSWORD_MIN, KW_PASSWORD_MAX);
                r = KW_RESULT(KW_ERR_BAD_FIELD);
        }
        if (r.code == 0)
                r = kw_password_hash(pw.p, pw.len, ret);
        kw_secret_free(&pw);
        return r;
}

kw_result op_user_create(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                         struct kw_buf *reply)
{
        KW_TRY(console_enabled(c));
        struct kw_user_row u;
        memset(&u, 0, sizeof u);
        KW_TRY(get_user_name(req, u.name));
        KW_TRY(kw_msg_get_str(req, KW_T_ROLE, u.role, sizeof u.role));
        int role_ok = 0;
        for (size_t i = 0; i < sizeof user_roles / sizeof user_roles[0]; i++)
                role_ok |= strcmp(u.role, user_roles[i]) == 0;
        if (!role_ok) {
                kw_err_set_detail("role must be admin, operator or auditor");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        KW_TRY(new_password_hash(req, u.hash));
        u.created = (int64_t)time(NULL);
        char detail[96];
        snprintf(detail, sizeof detail, "%s (role %s)", u.name, u.role);
        struct kw_audit_entry au = { .actor = who->actor, .action = "user.create", .result = "ok",
                                     .detail = detail, .request_id = who->request_id };
        kw_result r = kw_keystore_user_insert(c->ks, &u, &au);
        kw_wipe(u.hash, sizeof u.hash);
        KW_TRY(r);
        return reply_json(reply, user_doc(&u));
}

static int user_list_cb(const struct kw_user_row *row, void *arg)
{
        cJSON *d = user_doc(row);
        if (d == NULL)
                return 1;
        cJSON_AddItemToArray((cJSON *)arg, d);
        return 0;
}

kw_result op_user_list(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                       struct kw_buf *reply)
{
        (void)req;
        (void)who;
        KW_TRY(console_enabled(c));
        cJSON *arr = cJSON_CreateArray();
        KW_ENSURE(arr != NULL, KW_ERR_NOMEM);
        return reply_list(reply, "users", arr, kw_keystore_user_list(c->ks, user_list_cb, arr));
}

kw_result op_user_delete(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                         struct kw_buf *reply)
{
        KW_TRY(console_enabled(c));
        char name[65];
        KW_TRY(get_user_name(req, name));
        struct kw_audit_entry au = { .actor = who->actor, .action = "user.delete", .result = "ok",
                                     .detail = name, .request_id = who->request_id };
        struct kw_user_row u;
        KW_TRY(kw_keystore_user_delete(c->ks, name, &au, &u));
        kw_sessions_end_account(c->sessions, KW_SESSION_USER, name, NULL);   /* at once */
        return reply_json(reply, user_doc(&u));
}

kw_result op_user_password(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                           struct kw_buf *reply)
{
        KW_TRY(console_enabled(c));
        char name[65];
        KW_TRY(get_user_name(req, name));
        int self = who->by_session && who->session.kind == KW_SESSION_USER &&
                   strcmp(who->session.account, name) == 0;
        if (who->role != ROLE_ADMIN && !self) {
                kw_err_set_detail("only an admin, or the user in its own session, can set a "
                                  "user's password");
                KW_BAIL(KW_ERR_FORBIDDEN);
        }
        char hash[KW_USER_HASH_MAX];
        KW_TRY(new_password_hash(req, hash));
        struct kw_audit_entry au = { .actor = who->actor, .action = "user.password",
                                     .result = "ok", .detail = name,
                                     .request_id = who->request_id };
        struct kw_user_row u;
        kw_result r = kw_keystore_user_set_password(c->ks, name, hash, &au, &u);
        kw_wipe(hash, sizeof hash);
        KW_TRY(r);
        /* the user's other sessions end; the caller's own goes on */
        kw_sessions_end_account(c->sessions, KW_SESSION_USER, name,
                                self ? who->session.id_hash : NULL);
        return reply_json(reply, user_doc(&u));
}
