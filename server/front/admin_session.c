/*
 * admin_session.c - the console's sign-in sessions and users under /api/v1
 * (docs/api.md "Sessions", "Users"): the session cookie, strictly parsed;
 * Set-Cookie; the handlers.  Passwords and tokens in bodies are handed to
 * custody as received and wiped with the body (route flag
 * ADMIN_F_SENSITIVE); custody checks every proof, hashes every password and
 * makes every session id and CSRF token.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/json_io.h"
#include "../common/proto.h"
#include "admin_int.h"

/* ---- the cookie ------------------------------------------------------------ */

static int b64url_char(unsigned char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_';
}

int admin_session_form_ok(const char *s, size_t n)
{
        if (s == NULL || n != ADMIN_SESSION_LEN)
                return 0;
        for (size_t i = 0; i < n; i++)
                if (!b64url_char((unsigned char)s[i]))
                        return 0;
        return 1;
}

/* RFC 6265 cookie-string: pairs "name=value" separated by "; " (we also
 * take ";" and extra spaces).  Only our name counts; a pair without '=' or
 * any other cookie is passed over. */
int admin_cookie_scan(const char *hdr, const char **ret, size_t *ret_len)
{
        static const char name[] = ADMIN_COOKIE_NAME "=";
        int found = 0;
        const char *p = hdr;
        while (p != NULL && *p != '\0') {
                while (*p == ' ' || *p == '\t' || *p == ';')
                        p++;
                const char *end = strchr(p, ';');
                size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
                while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
                        len--;
                if (len >= sizeof name - 1 && memcmp(p, name, sizeof name - 1) == 0) {
                        found++;
                        *ret = p + sizeof name - 1;
                        *ret_len = len - (sizeof name - 1);
                }
                p = end;
        }
        return found;
}

int admin_session_cookie(const struct kw_req *req, const char **ret, size_t *ret_len)
{
        int found = 0;
        const char *v = NULL;
        size_t n = 0;
        const char *hname = NULL, *hval = NULL;
        for (int i = 0; kw_req_header_at(req, i, &hname, &hval) == 0; i++)
                if (strcasecmp(hname, "Cookie") == 0)
                        found += admin_cookie_scan(hval, &v, &n);
        if (found == 0)
                return 0;
        if (found > 1 || !admin_session_form_ok(v, n))
                return -1;
        *ret = v;
        *ret_len = n;
        return 1;
}

#define COOKIE_ATTRS "; Path=/; Secure; HttpOnly; SameSite=Strict"

static void set_cookie(struct kw_resp *resp, const char *id, size_t n)
{
        size_t used = strlen(resp->extra_headers);
        if (id != NULL)
                snprintf(resp->extra_headers + used, sizeof resp->extra_headers - used,
                         "Set-Cookie: " ADMIN_COOKIE_NAME "=%.*s" COOKIE_ATTRS "\r\n", (int)n, id);
        else
                snprintf(resp->extra_headers + used, sizeof resp->extra_headers - used,
                         "Set-Cookie: " ADMIN_COOKIE_NAME "=" COOKIE_ATTRS "; Max-Age=0\r\n");
}

/* ---- sessions ---------------------------------------------------------------- */

static const char *const admin_f_login[] = { "token", "user", "password", NULL };

/* A password field: a string of 1..128 bytes (custody checks the rest). */
KW_MUST_USE static kw_result admin_get_password(const cJSON *body, const char **ret)
{
        const char *pw = NULL;
        KW_TRY(kw_json_get_str(body, "password", 1, 0, 128, &pw));
        *ret = pw;
        return KW_OK;
}

KW_MUST_USE kw_result admin_session_create(struct admin_call *a)
{
        const char *tok = NULL, *user = NULL, *pw = NULL;
        KW_TRY(admin_check_fields(a->body, admin_f_login));
        KW_TRY(kw_json_get_str(a->body, "token", 0, 0, ADMIN_TOKEN_MAX, &tok));
        int by_password = cJSON_GetObjectItemCaseSensitive(a->body, "user") != NULL ||
                          cJSON_GetObjectItemCaseSensitive(a->body, "password") != NULL;
        if ((tok != NULL) == by_password) {
                kw_err_set_detail("send {\"token\":\"...\"} or {\"user\":\"...\",\"password\":\"...\"}");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        struct kw_cc_call c;
        if (tok != NULL) {
                kw_cc_begin(a->front->cc, KW_OP_SESSION_LOGIN, KW_CALLER_ADMIN, &c);
                kw_cc_put_str(&c, KW_T_TOKEN, tok);
        } else {
                KW_TRY(admin_get_name(a->body, "user", &user));
                KW_TRY(admin_get_password(a->body, &pw));
                kw_cc_begin(a->front->cc, KW_OP_SESSION_LOGIN, KW_CALLER_PUBLIC, &c);
                kw_cc_put_str(&c, KW_T_USER, user);
                kw_cc_put_str(&c, KW_T_PASSWORD, pw);
        }
        if (a->req->remote_addr != NULL && strlen(a->req->remote_addr) <= 64)
                kw_cc_put_str(&c, KW_T_CLIENT_ADDR, a->req->remote_addr);
        kw_result r = kw_cc_invoke(&c);
        if (r.code != 0) {
                uint32_t wait = 0;
                if (r.code == KW_ERR_LOCKED && kw_msg_has(&c.reply, KW_T_WAIT_SECONDS) &&
                    kw_msg_get_u32(&c.reply, KW_T_WAIT_SECONDS, &wait).code == 0)
                        a->retry_after = wait;
                if (r.code == KW_ERR_AUTH)
                        kw_err_set_detail("%s", tok != NULL ? "unknown or revoked token"
                                                            : "wrong user name or password");
                else if (c.detail[0] != '\0')
                        kw_err_set_detail("%s", c.detail);
                kw_cc_end(&c);   /* wipes the frame with the password */
                return r;
        }
        struct kw_field sid;
        const char *json = NULL;
        size_t len = 0;
        r = kw_cc_reply_json(&c, &json, &len);
        if (r.code == 0 && (kw_msg_get(&c.reply, KW_T_SESSION, &sid).code != 0 ||
                            !admin_session_form_ok((const char *)sid.p, sid.len)))
                r = KW_RESULT(KW_ERR_PROTOCOL);
        if (r.code == 0)
                r = kw_buf_put(&a->resp->body, json, len);
        if (r.code == 0) {
                set_cookie(a->resp, (const char *)sid.p, sid.len);
                a->resp->status = 201;
                if (user != NULL)
                        snprintf(a->req->log_principal, sizeof a->req->log_principal, "user:%s",
                                 user);
        }
        kw_cc_end(&c);   /* wipes the reply with the session id */
        return r;
}

KW_MUST_USE kw_result admin_session_get(struct admin_call *a)
{
        struct kw_cc_call c;
        admin_begin(a, KW_OP_SESSION_GET, &c);
        return admin_invoke(a, &c, 200);
}

KW_MUST_USE kw_result admin_session_delete(struct admin_call *a)
{
        struct kw_cc_call c;
        admin_begin(a, KW_OP_SESSION_LOGOUT, &c);
        if (a->req->remote_addr != NULL && strlen(a->req->remote_addr) <= 64)
                kw_cc_put_str(&c, KW_T_CLIENT_ADDR, a->req->remote_addr);
        KW_TRY(admin_invoke(a, &c, 200));
        set_cookie(a->resp, NULL, 0);
        return KW_OK;
}

/* ---- users --------------------------------------------------------------------- */

KW_MUST_USE kw_result admin_users_list(struct admin_call *a)
{
        struct kw_cc_call c;
        admin_begin(a, KW_OP_USER_LIST, &c);
        return admin_invoke(a, &c, 200);
}

static const char *const admin_f_user[] = { "name", "role", "password", NULL };
static const char *const admin_f_password[] = { "password", NULL };

KW_MUST_USE kw_result admin_users_create(struct admin_call *a)
{
        const char *name = NULL, *role = NULL, *pw = NULL;
        KW_TRY(admin_check_fields(a->body, admin_f_user));
        KW_TRY(admin_get_name(a->body, "name", &name));
        KW_TRY(kw_json_get_str(a->body, "role", 1, 0, 16, &role));
        if (admin_role_parse(role) == 0) {
                kw_err_set_detail("'role' is admin, operator or auditor");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        KW_TRY(admin_get_password(a->body, &pw));
        struct kw_cc_call c;
        admin_begin(a, KW_OP_USER_CREATE, &c);
        kw_cc_put_str(&c, KW_T_USER, name);
        kw_cc_put_str(&c, KW_T_ROLE, role);
        kw_cc_put_str(&c, KW_T_PASSWORD, pw);
        return admin_invoke(a, &c, 201);   /* kw_cc_end wipes the request frame */
}

KW_MUST_USE kw_result admin_users_delete(struct admin_call *a)
{
        struct kw_cc_call c;
        admin_begin(a, KW_OP_USER_DELETE, &c);
        kw_cc_put_str(&c, KW_T_USER, a->param);
        return admin_invoke(a, &c, 200);
}

KW_MUST_USE kw_result admin_users_password(struct admin_call *a)
{
        const char *pw = NULL;
        KW_TRY(admin_check_fields(a->body, admin_f_password));
        KW_TRY(admin_get_password(a->body, &pw));
        struct kw_cc_call c;
        admin_begin(a, KW_OP_USER_PASSWORD, &c);
        kw_cc_put_str(&c, KW_T_USER, a->param);
        kw_cc_put_str(&c, KW_T_PASSWORD, pw);
        return admin_invoke(a, &c, 200);
}
