/*
 * route_admin.c - the admin REST API under /api/v1 (docs/api.md).
 *
 * One request: strict path decoding and route match (404/405 before any
 * authentication) -> bearer token (custody TOKEN_CHECK) -> role -> Content-
 * Type, strict JSON body and query -> field validation -> one custody call
 * -> its JSON document passed through.  Every failure becomes
 * {"error","message"} through admin_http_status(), the one kw_err -> HTTP
 * mapping of this protocol.
 *
 * Privilege separation (proto.h): every custody call carries the bearer
 * token as received; the custody process hashes and looks it up and checks
 * the role again itself, so the role check here only orders the errors
 * (401, 403, then 400).  The front never decodes key material: an import's
 * "material", "pkcs8" or "pem" text is handed to custody as it came, and the
 * request body and the JSON tree are wiped before the handler returns.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/b64.h"
#include "../common/names.h"
#include "../common/proto.h"
#include "../common/secret.h"
#include "front.h"
#include "../common/json_io.h"
#include "route_xks.h"
#include "route_ekm.h"

#include "admin_int.h"

/* ---- the one kw_err -> HTTP status mapping of the admin API --------------- */

/* HTTP status for a kw_err code; *ret_retry set to 1 when the client should
 * retry later (429/503 carry Retry-After). */
static int admin_http_status(int code, int *ret_retry)
{
        int retry = 0, status;
        switch (code) {
        case KW_ERR_TOO_LARGE: status = 413; break;
        case KW_ERR_UNSUPPORTED: status = 501; break;
        case KW_ERR_AUTH: status = 401; break;
        case KW_ERR_FORBIDDEN:
        case KW_ERR_CSRF:
        case KW_ERR_ACCESS_DENIED: status = 403; break;
        case KW_ERR_LOCKED: status = 429; retry = 1; break;
        case KW_ERR_NOT_FOUND:
        case KW_ERR_NO_ROUTE: status = 404; break;
        case KW_ERR_EXISTS:
        case KW_ERR_BAD_STATE:
        case KW_ERR_KEY_DISABLED:
        case KW_ERR_KEY_PENDING_DELETION:
        case KW_ERR_KEY_DESTROYED:
        case KW_ERR_OP_NOT_ALLOWED: status = 409; break;
        case KW_ERR_OVERLOAD: status = 429; retry = 1; break;
        case KW_ERR_HSM_UNAVAILABLE: status = 502; break;
        case KW_ERR_HSM_TIMEOUT: status = 504; break;
        case KW_ERR_SEALED:
        case KW_ERR_DB_UNAVAILABLE:
        case KW_ERR_CUSTODY_DOWN: status = 503; retry = 1; break;
        default:
                /* the input class: -100 .. -199 */
                status = code <= -100 && code > -200 ? 400 : 500;
                break;
        }
        *ret_retry = retry;
        return status;
}

static const struct admin_route admin_routes[] = {
        { "GET", "status", ROLES_READ, BODY_NONE, 0, NULL, "admin.status", admin_status },
        { "GET", "keys", ROLES_READ, BODY_NONE, 0, admin_q_keys, "admin.keys.list",
          admin_keys_list },
        { "POST", "keys", ROLES_KEYS, BODY_REQUIRED, 0, NULL, "admin.keys.create",
          admin_keys_create },
        { "POST", "keys/import", ROLES_KEYS, BODY_REQUIRED, 1, NULL, "admin.keys.import",
          admin_keys_import },
        { "GET", "keys/*", ROLES_READ, BODY_NONE, 0, NULL, "admin.keys.get", admin_keys_get },
        { "PATCH", "keys/*", ROLES_KEYS, BODY_REQUIRED, 0, NULL, "admin.keys.update",
          admin_keys_update },
        { "GET", "keys/*/versions", ROLES_READ, BODY_NONE, 0, NULL, "admin.keys.versions",
          admin_keys_versions },
        { "POST", "keys/*/enable", ROLES_KEYS, BODY_NONE, 0, NULL, "admin.keys.enable",
          admin_keys_enable },
        { "POST", "keys/*/disable", ROLES_KEYS, BODY_NONE, 0, NULL, "admin.keys.disable",
          admin_keys_disable },
        { "POST", "keys/*/rotate", ROLES_KEYS, BODY_NONE, 0, NULL, "admin.keys.rotate",
          admin_keys_rotate },
        { "POST", "keys/*/schedule-deletion", ROLES_KEYS, BODY_OPTIONAL, 0, NULL,
          "admin.keys.schedule_deletion", admin_keys_schedule_delete },
        { "POST", "keys/*/cancel-deletion", ROLES_KEYS, BODY_NONE, 0, NULL,
          "admin.keys.cancel_deletion", admin_keys_cancel_delete },
        { "GET", "audit", ROLES_READ, BODY_NONE, 0, admin_q_audit, "admin.audit.query",
          admin_audit_query },
        { "POST", "audit/verify", ROLES_READ, BODY_NONE, 0, NULL, "admin.audit.verify",
          admin_audit_verify },
        { "POST", "audit/prune", ROLES_ADMIN, BODY_NONE, 0, NULL, "admin.audit.prune",
          admin_audit_prune },
        { "GET", "tokens", ROLES_ADMIN, BODY_NONE, 0, NULL, "admin.tokens.list",
          admin_tokens_list },
        { "POST", "tokens", ROLES_ADMIN, BODY_REQUIRED, 0, NULL, "admin.tokens.create",
          admin_tokens_create },
        { "GET", "xks/stores", ROLES_READ, BODY_NONE, 0, NULL, "admin.xks.list", admin_xks_list },
        { "POST", "xks/stores", ROLES_ADMIN, BODY_REQUIRED, 0, NULL, "admin.xks.create",
          admin_xks_create },
        { "DELETE", "xks/stores/*", ROLES_ADMIN, BODY_NONE, 0, NULL, "admin.xks.delete",
          admin_xks_delete },
        { "POST", "xks/stores/*/rotate", ROLES_ADMIN, BODY_NONE, 0, NULL, "admin.xks.rotate",
          admin_xks_rotate },
        { "GET", "xks/stores/*/import-file", ROLES_ADMIN, BODY_NONE, 0, NULL,
          "admin.xks.import_file", admin_xks_import_file },
        { "POST", "xks/stores/*/delete-credential", ROLES_ADMIN, BODY_REQUIRED, 0, NULL,
          "admin.xks.delete_credential", admin_xks_delete_cred },
        { "DELETE", "tokens/*", ROLES_ADMIN, BODY_NONE, 0, NULL, "admin.tokens.revoke",
          admin_tokens_revoke },
        /* the console's information endpoints (admin_info.c) */
        { "GET", "metrics/history", ROLES_READ, BODY_NONE, 0, NULL, "admin.metrics.history",
          admin_metrics_history },
        { "GET", "ekm", ROLES_READ, BODY_NONE, 0, NULL, "admin.ekm.info", admin_ekm_info },
        { "GET", "attestation", ROLES_READ, BODY_NONE, 0, NULL, "admin.attestation",
          admin_attestation },
        /* fleet mode (issue 16): the nodes sharing the key store */
        { "GET", "nodes", ROLES_READ, BODY_NONE, 0, NULL, "admin.nodes", admin_nodes },
        /* console sessions and users (admin_session.c) */
        { "POST", "session", ROLES_READ, BODY_REQUIRED,
          ADMIN_F_NOAUTH | ADMIN_F_CONSOLE | ADMIN_F_SENSITIVE, NULL, "admin.session.create",
          admin_session_create },
        { "GET", "session", ROLES_READ, BODY_NONE, ADMIN_F_COOKIE | ADMIN_F_CONSOLE, NULL,
          "admin.session.get", admin_session_get },
        { "DELETE", "session", ROLES_READ, BODY_NONE, ADMIN_F_COOKIE | ADMIN_F_CONSOLE, NULL,
          "admin.session.delete", admin_session_delete },
        { "GET", "users", ROLES_ADMIN, BODY_NONE, ADMIN_F_CONSOLE, NULL, "admin.users.list",
          admin_users_list },
        { "POST", "users", ROLES_ADMIN, BODY_REQUIRED, ADMIN_F_CONSOLE | ADMIN_F_SENSITIVE, NULL,
          "admin.users.create", admin_users_create },
        { "DELETE", "users/*", ROLES_ADMIN, BODY_NONE, ADMIN_F_CONSOLE, NULL,
          "admin.users.delete", admin_users_delete },
        /* admin, or the user in its own session (custody decides) */
        { "POST", "users/*/password", ROLES_READ, BODY_REQUIRED,
          ADMIN_F_CONSOLE | ADMIN_F_SENSITIVE, NULL, "admin.users.password",
          admin_users_password },
        { NULL, NULL, 0, BODY_NONE, 0, NULL, NULL, NULL },
};

/* ---- authentication ------------------------------------------------------------ */

static int admin_token_char(unsigned char c)
{
        /* RFC 6750 b64token */
        return admin_name_char(c) || c == '~' || c == '+' || c == '/';
}

/* Finds the token of "Bearer <token>" (scheme case-insensitive).  Points
 * into hdr; KW_ERR_AUTH when absent or malformed. */
KW_MUST_USE static kw_result admin_bearer_token(const char *hdr, const char **ret_tok,
                                                size_t *ret_len)
{
        KW_ENSURE(hdr != NULL && strncasecmp(hdr, "Bearer ", 7) == 0, KW_ERR_AUTH);
        const char *t = hdr + 7;
        while (*t == ' ')
                t++;
        size_t n = 0;
        while (admin_token_char((unsigned char)t[n]))
                n++;
        size_t end = n;
        while (t[end] == '=')
                end++;
        size_t len = end;
        while (t[end] == ' ')
                end++;
        KW_ENSURE(n > 0 && len <= ADMIN_TOKEN_MAX && t[end] == '\0', KW_ERR_AUTH);
        *ret_tok = t;
        *ret_len = len;
        return KW_OK;
}

/* Reads the TOKEN_CHECK reply {"id","name","role"[,"kind"]} into *who. */
KW_MUST_USE static kw_result admin_principal_parse(const char *json, size_t len,
                                                   struct admin_principal *who)
{
        cJSON *doc = NULL;
        KW_ENSURE(kw_json_parse((const uint8_t *)json, len, 4, &doc).code == 0, KW_ERR_PROTOCOL);
        const char *id = NULL, *name = NULL, *role = NULL;
        unsigned bit = 0;
        kw_result r = KW_OK;
        if (kw_json_get_str(doc, "id", 1, 0, ADMIN_NAME_MAX, &id).code != 0 ||
            kw_json_get_str(doc, "name", 1, 0, ADMIN_NAME_MAX, &name).code != 0 ||
            kw_json_get_str(doc, "role", 1, 0, 16, &role).code != 0 || !admin_name_valid(id) ||
            !admin_name_valid(name) || (bit = admin_role_parse(role)) == 0) {
                kw_err_set_detail("malformed token check reply");
                r = KW_RESULT(KW_ERR_PROTOCOL);
        } else {
                snprintf(who->id, sizeof who->id, "%s", id);
                snprintf(who->name, sizeof who->name, "%s", name);
                who->role = bit;
                const cJSON *kind = cJSON_GetObjectItemCaseSensitive(doc, "kind");
                who->user = cJSON_IsString(kind) && strcmp(kind->valuestring, "user") == 0;
        }
        cJSON_Delete(doc);
        return r;
}

KW_MUST_USE static kw_result admin_check_proof(struct admin_call *a);

/* Authenticates the bearer token of the Authorization header authz (may be
 * NULL) with the custody process; fills a->who on success.  The token is
 * not copied: a->who points at it in the request for the calls to come. */
KW_MUST_USE static kw_result admin_authenticate(struct admin_call *a, const char *authz)
{
        const char *tok = NULL;
        size_t len = 0;
        if (admin_bearer_token(authz, &tok, &len).code != 0) {
                kw_err_set_detail("send 'Authorization: Bearer <token>'");
                KW_BAIL(KW_ERR_AUTH);
        }
        a->who.token = tok;
        a->who.token_len = len;
        return admin_check_proof(a);
}

/* Authenticates the console session of the cookie (id, n bytes) with the
 * custody process, with the X-CSRF-Token header when there is one (custody
 * checks it for every change).  A cross-site request (Sec-Fetch-Site) with
 * the cookie is refused here: 403 csrf. */
KW_MUST_USE static kw_result admin_authenticate_session(struct admin_call *a, const char *id,
                                                        size_t n)
{
        const char *site = kw_req_header(a->req, "Sec-Fetch-Site");
        if (site != NULL && strcasecmp(site, "cross-site") == 0) {
                kw_err_set_detail("a cross-site request cannot use the session cookie");
                KW_BAIL(KW_ERR_CSRF);
        }
        a->who.session = id;
        a->who.session_len = n;
        const char *csrf = kw_req_header(a->req, "X-CSRF-Token");
        if (csrf != NULL && strlen(csrf) <= ADMIN_SESSION_LEN + 21) {
                a->who.csrf = csrf;
                a->who.csrf_len = strlen(csrf);
        }
        KW_TRY(admin_check_proof(a));
        int safe = strcmp(a->req->method, "GET") == 0 || strcmp(a->req->method, "HEAD") == 0;
        if (!safe && a->who.csrf == NULL) {
                kw_err_set_detail("a change in a console session needs the X-CSRF-Token header");
                KW_BAIL(KW_ERR_CSRF);
        }
        return KW_OK;
}

/* TOKEN_CHECK with a->who's proof: who it is and its role, into a->who. */
KW_MUST_USE static kw_result admin_check_proof(struct admin_call *a)
{
        struct kw_cc_call c;
        admin_begin(a, KW_OP_TOKEN_CHECK, &c);
        kw_result r = kw_cc_invoke(&c);
        if (r.code == KW_ERR_AUTH || r.code == KW_ERR_NOT_FOUND) {
                kw_err_set_detail("unknown or revoked token");
                r = KW_RESULT(KW_ERR_AUTH);
        } else if (r.code != 0) {
                if (c.detail[0] != '\0')
                        kw_err_set_detail("%s", c.detail);
        } else {
                const char *json = NULL;
                size_t jlen = 0;
                r = kw_cc_reply_json(&c, &json, &jlen);
                if (r.code == 0)
                        r = admin_principal_parse(json, jlen, &a->who);
        }
        kw_cc_end(&c);
        return r;
}

/* The proof of a request for route rt: the bearer token when there is an
 * Authorization header (it wins over the cookie), else the session cookie
 * ([console] enable); the session routes take the cookie only. */
KW_MUST_USE static kw_result admin_authenticate_request(struct admin_call *a,
                                                        const struct admin_route *rt,
                                                        int *ret_had_token)
{
        const char *authz = kw_req_header(a->req, "Authorization");
        if ((rt->flags & ADMIN_F_COOKIE) != 0)
                authz = NULL;
        *ret_had_token = authz != NULL;
        const char *sid = NULL;
        size_t n = 0;
        int cookie = authz == NULL && a->front->cfg->console.enable
                             ? admin_session_cookie(a->req, &sid, &n)
                             : 0;
        if (cookie < 0) {
                kw_err_set_detail("malformed or repeated %s cookie", ADMIN_COOKIE_NAME);
                KW_BAIL(KW_ERR_AUTH);
        }
        if (cookie == 0 && (rt->flags & ADMIN_F_COOKIE) != 0) {
                kw_err_set_detail("no session: sign in first (POST /api/v1/session)");
                KW_BAIL(KW_ERR_AUTH);
        }
        if (cookie > 0)
                return admin_authenticate_session(a, sid, n);
        return admin_authenticate(a, authz);
}

/* ---- the handler ------------------------------------------------------------------- */

static void admin_error(struct kw_req *req, struct kw_resp *resp, int code, int had_token,
                        unsigned retry_after)
{
        int retry = 0;
        int status = admin_http_status(code, &retry);
        char msg[512];
        const char *detail = kw_err_detail();
        if (status == 500 || detail[0] == '\0')
                snprintf(msg, sizeof msg, "%s", kw_strerror(code));
        else
                snprintf(msg, sizeof msg, "%s: %s", kw_strerror(code), detail);
        kw_buf_reset(&resp->body);
        resp->content_type = NULL;
        if (retry)
                snprintf(resp->extra_headers, sizeof resp->extra_headers, "Retry-After: %u\r\n",
                         retry_after != 0 ? retry_after : 1);
        else if (status == 401)
                snprintf(resp->extra_headers, sizeof resp->extra_headers,
                         "WWW-Authenticate: Bearer realm=\"keyward\"%s\r\n",
                         had_token ? ", error=\"invalid_token\"" : "");
        else
                resp->extra_headers[0] = '\0';
        kw_resp_error(resp, status, kw_err_name(code), msg);
        snprintf(req->log_error, sizeof req->log_error, "%s", kw_err_name(code));
}

/* 1 when the request carries (or must carry) a body, which then must be
 * sent as application/json. */
static int admin_body_expected(const struct kw_req *req, const struct admin_route *rt)
{
        return req->body_len != 0 || rt->body == BODY_REQUIRED;
}

/* Parses the body for route rt into *ret (NULL when empty and allowed). */
KW_MUST_USE static kw_result admin_body_parse(const struct kw_req *req,
                                              const struct admin_route *rt, cJSON **ret)
{
        if (!admin_body_expected(req, rt)) {
                *ret = NULL;
                return KW_OK;
        }
        if (req->body_len == 0) {
                kw_err_set_detail("this request needs a JSON object body");
                KW_BAIL(KW_ERR_MISSING_FIELD);
        }
        return kw_json_parse(req->body, req->body_len, KW_JSON_MAX_DEPTH, ret);
}

void kw_route_admin(struct kw_req *req, struct kw_resp *resp, void *ctx)
{
        struct admin_call a = { .req = req, .resp = resp, .front = ctx };
        struct admin_path path;
        const struct admin_route *rt = NULL;
        cJSON *body = NULL;
        int had_token = 0;
        kw_result r;

        kw_err_clear_detail();
        snprintf(req->log_route, sizeof req->log_route, "admin");
        KW_TRY_GOTO(r, admin_path_parse(req->path, &path), fail);
        char allow[64];
        rt = admin_route_match(admin_routes, &path, req->method, allow, sizeof allow, &a.param);
        if (rt == NULL && allow[0] != '\0') {
                snprintf(resp->extra_headers, sizeof resp->extra_headers, "Allow: %s\r\n", allow);
                kw_resp_error(resp, 405, "method_not_allowed", "method not allowed for this path");
                snprintf(req->log_error, sizeof req->log_error, "method_not_allowed");
                return;
        }
        if (rt == NULL) {
                r = KW_RESULT(KW_ERR_NO_ROUTE);
                goto fail;
        }
        snprintf(req->log_route, sizeof req->log_route, "%s", rt->log_route);
        if ((rt->flags & ADMIN_F_CONSOLE) != 0 && !a.front->cfg->console.enable) {
                kw_err_set_detail("the console is not enabled");
                r = KW_RESULT(KW_ERR_NO_ROUTE);
                goto fail;
        }
        if ((rt->flags & ADMIN_F_NOAUTH) != 0)
                goto checked;
        KW_TRY_GOTO(r, admin_authenticate_request(&a, rt, &had_token), fail);
        snprintf(req->log_principal, sizeof req->log_principal, "%s:%s",
                 a.who.user ? "user" : "token", a.who.id);
        if ((a.who.role & rt->roles) == 0) {
                kw_err_set_detail("the %s role cannot do this", admin_role_name(a.who.role));
                r = KW_RESULT(KW_ERR_FORBIDDEN);
                goto fail;
        }
checked:
        KW_TRY_GOTO(r, admin_query_parse(req->query, rt->query, &a.query), fail);
        if (admin_body_expected(req, rt) &&
            !admin_content_type_is_json(kw_req_header(req, "Content-Type"))) {
                /* 415 has no kw_err code: it is about HTTP framing only */
                kw_resp_error(resp, 415, "unsupported_media_type",
                              "send the body as Content-Type: application/json");
                snprintf(req->log_error, sizeof req->log_error, "unsupported_media_type");
                goto out;
        }
        KW_TRY_GOTO(r, admin_body_parse(req, rt, &body), fail);
        if (body != NULL && rt->body == BODY_NONE)
                KW_TRY_GOTO(r, admin_check_fields(body, admin_f_none), fail);
        a.body = body;
        KW_TRY_GOTO(r, rt->fn(&a), fail);
        goto out;
fail:
        admin_error(req, resp, r.code, had_token, a.retry_after);
out:
        if (rt != NULL && (rt->flags & ADMIN_F_SENSITIVE) != 0) {
                admin_json_wipe(body);
                /* http.c hands the handler its own heap copy of the body
                 * (http.h: "NUL-terminated copy"); wipe the key material in it. */
                kw_wipe((void *)(uintptr_t)req->body, req->body_len);
        }
        cJSON_Delete(body);
}
