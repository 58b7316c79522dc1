/*
 * admin_int.h - the admin REST API's internals, shared by route_admin.c (the
 * route table, authentication and the request handler), admin_util.c
 * (decoding, field getters, custody calls) and the handler files
 * (admin_ops.c, ...).  Not a public interface: front.h has kw_route_admin.
 */
#ifndef KW_ADMIN_INT_H
#define KW_ADMIN_INT_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "../common/buf.h"
#include "../common/result.h"
#include "custody_client.h"
#include "front.h"
#include "http.h"

#ifndef KEYWARD_VERSION
#define KEYWARD_VERSION "0.1.0"
#endif

#define ADMIN_PREFIX "/api/v1/"
#define ADMIN_MAX_SEGS 4          /* keys/{name}/schedule-deletion is 3 */
#define ADMIN_NAME_MAX 64         /* key, token name and token id length */
#define ADMIN_PATH_MAX 512
#define ADMIN_TOKEN_MAX 512       /* bearer token characters */
#define ADMIN_Q_MAX 12            /* query parameters per request */
#define ADMIN_Q_VALUE_MAX 256
#define ADMIN_TAGS_MAX 64
#define ADMIN_TAG_KEY_MAX 128
#define ADMIN_TAG_VALUE_MAX 256
#define ADMIN_TAGS_JSON_MAX (8u * 1024u)   /* KW_T_TAGS */
#define ADMIN_RULES_JSON_MAX (16u * 1024u) /* KW_T_RULES */
#define ADMIN_MATERIAL_MAX (8u * 1024u)    /* KW_T_MATERIAL */
#define ADMIN_PEM_MAX (16u * 1024u)
#define ADMIN_LIST_LIMIT_MAX 1000
#define ADMIN_RSA_DEFAULT_BITS 3072


struct admin_query {
        size_t n;
        struct {
                char name[16];
                char value[ADMIN_Q_VALUE_MAX + 1];
        } p[ADMIN_Q_MAX];
};

struct admin_path {
        size_t n;
        char seg[ADMIN_MAX_SEGS][ADMIN_NAME_MAX + 1];
};

struct admin_call;
typedef kw_result (*admin_fn)(struct admin_call *a);

enum admin_body {
        BODY_NONE,      /* empty, or the empty object {} */
        BODY_OPTIONAL,  /* empty or a JSON object        */
        BODY_REQUIRED,  /* a JSON object                 */
};

/* admin_route.flags */
#define ADMIN_F_SENSITIVE 1u      /* the body carries key material or a password: wiped */
#define ADMIN_F_NOAUTH 2u         /* no proof before the handler (POST session: it makes one) */
#define ADMIN_F_CONSOLE 4u        /* [console] enable = false: 404 no_route */
#define ADMIN_F_COOKIE 8u         /* the session cookie is the proof; Authorization ignored */

struct admin_route {
        const char *method;
        const char *pattern;      /* segments; "*" captures one name */
        unsigned roles;
        enum admin_body body;
        unsigned flags;           /* ADMIN_F_*: 1 is ADMIN_F_SENSITIVE */
        const char *const *query; /* allowed query parameters (NULL: none) */
        const char *log_route;
        admin_fn fn;
};

struct admin_principal {
        char id[ADMIN_NAME_MAX + 1];
        char name[ADMIN_NAME_MAX + 1];
        unsigned role;
        int user;           /* a console user's session (id is the user name) */
        const char *token;  /* the bearer token, in the request's header (not copied) */
        size_t token_len;
        /* or a console session: the cookie's id and the X-CSRF-Token header
         * (NULL when absent), in the request's headers (not copied) */
        const char *session;
        size_t session_len;
        const char *csrf;
        size_t csrf_len;
};

struct admin_call {
        struct kw_req *req;
        struct kw_resp *resp;
        struct kw_front *front;
        const char *param;        /* the captured name, or NULL */
        const cJSON *body;        /* parsed body object, or NULL when empty */
        struct admin_query query;
        struct admin_principal who;
        unsigned retry_after;     /* KW_ERR_LOCKED: seconds for Retry-After */
};


enum admin_role {
        ROLE_AUDITOR = 1u << 0,
        ROLE_OPERATOR = 1u << 1,
        ROLE_ADMIN = 1u << 2,
};
#define ROLES_READ (ROLE_AUDITOR | ROLE_OPERATOR | ROLE_ADMIN)
#define ROLES_KEYS (ROLE_OPERATOR | ROLE_ADMIN)
#define ROLES_ADMIN ROLE_ADMIN



/* The attributes shared by create, import and update. */
struct admin_attrs {
        uint32_t ops;
        int has_ops, has_tags, has_rules;
        struct kw_buf tags, rules;
};

/* ---- admin_util.c ---- */
extern const char *const admin_f_none[];   /* no member allowed */
unsigned admin_role_parse(const char *s);
const char *admin_role_name(unsigned bit);
int admin_name_char(unsigned char c);
int admin_name_valid(const char *s);
KW_MUST_USE kw_result admin_path_parse(const char *path, struct admin_path *ret);
KW_MUST_USE kw_result admin_query_parse(const char *q, const char *const *allowed, struct admin_query *ret);
const char *admin_query_get(const struct admin_query *q, const char *name);
KW_MUST_USE kw_result admin_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret);
KW_MUST_USE kw_result admin_parse_rfc3339_ms(const char *s, int64_t *ret);
int admin_pattern_match(const char *pattern, const struct admin_path *p, const char **ret_param);
const struct admin_route *admin_route_match(const struct admin_route *routes, const struct admin_path *p, const char *method, char *allow, size_t allowsz, const char **ret_param);
int admin_content_type_is_json(const char *ct);
KW_MUST_USE kw_result admin_check_fields(const cJSON *obj, const char *const *allowed);
KW_MUST_USE kw_result admin_get_name(const cJSON *obj, const char *field, const char **ret);
KW_MUST_USE kw_result admin_get_ops(const cJSON *obj, uint32_t *ret_mask);
int admin_text_ok(const char *s);
KW_MUST_USE kw_result admin_get_tags(const cJSON *obj, struct kw_buf *out, int *ret_present);
KW_MUST_USE kw_result admin_get_rules(const cJSON *obj, struct kw_buf *out, int *ret_present);
KW_MUST_USE kw_result admin_get_type(const cJSON *obj, const char **ret_type);
KW_MUST_USE kw_result admin_check_size(const char *type, int64_t size);
void admin_attrs_free(struct admin_attrs *at);
KW_MUST_USE kw_result admin_get_attrs(const cJSON *obj, struct admin_attrs *at);
void admin_put_attrs(struct kw_cc_call *c, const struct admin_attrs *at);
void admin_json_wipe(cJSON *v);
void admin_begin(struct admin_call *a, uint8_t op, struct kw_cc_call *c);
KW_MUST_USE kw_result admin_invoke(struct admin_call *a, struct kw_cc_call *c, int status);
KW_MUST_USE kw_result admin_invoke_json(struct kw_cc_call *c, const char **ret_json, size_t *ret_len);
void admin_begin_key(struct admin_call *a, uint8_t op, struct kw_cc_call *c);

/* ---- handlers (admin_ops.c) ---- */
extern const char *const admin_q_keys[];
extern const char *const admin_q_audit[];
KW_MUST_USE kw_result admin_status(struct admin_call *a);
KW_MUST_USE kw_result admin_keys_list(struct admin_call *a);
KW_MUST_USE kw_result admin_keys_create(struct admin_call *a);
KW_MUST_USE kw_result admin_keys_import(struct admin_call *a);
KW_MUST_USE kw_result admin_keys_get(struct admin_call *a);
KW_MUST_USE kw_result admin_keys_update(struct admin_call *a);
KW_MUST_USE kw_result admin_keys_enable(struct admin_call *a);
KW_MUST_USE kw_result admin_keys_disable(struct admin_call *a);
KW_MUST_USE kw_result admin_keys_rotate(struct admin_call *a);
KW_MUST_USE kw_result admin_keys_cancel_delete(struct admin_call *a);
KW_MUST_USE kw_result admin_keys_schedule_delete(struct admin_call *a);
KW_MUST_USE kw_result admin_audit_query(struct admin_call *a);
KW_MUST_USE kw_result admin_audit_verify(struct admin_call *a);
KW_MUST_USE kw_result admin_audit_prune(struct admin_call *a);
KW_MUST_USE kw_result admin_tokens_list(struct admin_call *a);
KW_MUST_USE kw_result admin_tokens_create(struct admin_call *a);
KW_MUST_USE kw_result admin_tokens_revoke(struct admin_call *a);
KW_MUST_USE kw_result admin_xks_list(struct admin_call *a);
KW_MUST_USE kw_result admin_xks_create(struct admin_call *a);
KW_MUST_USE kw_result admin_xks_rotate(struct admin_call *a);
KW_MUST_USE kw_result admin_xks_import_file(struct admin_call *a);
KW_MUST_USE kw_result admin_xks_delete(struct admin_call *a);
KW_MUST_USE kw_result admin_xks_delete_cred(struct admin_call *a);

/* ---- admin_info.c: the console's information endpoints ---- */
KW_MUST_USE kw_result admin_metrics_history(struct admin_call *a);
KW_MUST_USE kw_result admin_ekm_info(struct admin_call *a);
KW_MUST_USE kw_result admin_attestation(struct admin_call *a);
KW_MUST_USE kw_result admin_keys_versions(struct admin_call *a);
KW_MUST_USE kw_result admin_nodes(struct admin_call *a);
/* ,"evaluation":bool,"unlock":{...} appended to b (GET status). */
KW_MUST_USE kw_result admin_status_extra(struct admin_call *a, struct kw_buf *b);
/* Exposed for the unit test and the fuzz target. */
KW_MUST_USE kw_result admin_snp_fields(const uint8_t *report, size_t n, cJSON *snp);
KW_MUST_USE kw_result admin_attest_summarize(const uint8_t *json, size_t len, cJSON *out);
/* ---- console sessions and users (admin_session.c) ---- */
#define ADMIN_COOKIE_NAME "__Host-keyward_session"
#define ADMIN_SESSION_LEN 43      /* base64url of 32 bytes */
/* The session cookie among the request's Cookie headers: 1 and its value
 * (43 base64url characters) in *ret, 0 when there is none, -1 when it is
 * malformed or sent twice.  Other cookies are ignored. */
int admin_session_cookie(const struct kw_req *req, const char **ret, size_t *ret_len);
/* The same over one Cookie header value: the count of session cookies in
 * it, the last one's value in *ret (not checked). */
int admin_cookie_scan(const char *hdr, const char **ret, size_t *ret_len);
/* 1 when s (n bytes) is a session id's or CSRF token's form. */
int admin_session_form_ok(const char *s, size_t n);
KW_MUST_USE kw_result admin_session_create(struct admin_call *a);
KW_MUST_USE kw_result admin_session_get(struct admin_call *a);
KW_MUST_USE kw_result admin_session_delete(struct admin_call *a);
KW_MUST_USE kw_result admin_users_list(struct admin_call *a);
KW_MUST_USE kw_result admin_users_create(struct admin_call *a);
KW_MUST_USE kw_result admin_users_delete(struct admin_call *a);
KW_MUST_USE kw_result admin_users_password(struct admin_call *a);

#endif
