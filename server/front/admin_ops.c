/*
 * admin_ops.c - the admin API's handlers for status, keys, audit, tokens and
 * AWS XKS key stores (docs/api.md).  Each validates its fields strictly and
 * makes one custody call (admin_int.h).
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

/* ---- handlers ----------------------------------------------------------------- */

KW_MUST_USE kw_result admin_status(struct admin_call *a)
{
        struct kw_cc_call c;
        admin_begin(a, KW_OP_STATUS, &c);
        const char *json = NULL;
        size_t len = 0;
        KW_TRY(admin_invoke_json(&c, &json, &len));
        struct kw_buf *b = &a->resp->body;
        kw_result r = kw_buf_put_str(b, "{\"custody\":");
        if (r.code == 0)
                r = kw_buf_put(b, json, len);
        if (r.code == 0)
                r = kw_buf_put_str(b, ",\"version\":\"" KEYWARD_VERSION "\"");
        if (r.code == 0)
                r = admin_status_extra(a, b);
        if (r.code == 0)
                r = kw_buf_put_str(b, "}");
        kw_cc_end(&c);
        KW_TRY(r);
        a->resp->status = 200;
        return KW_OK;
}

const char *const admin_q_keys[] = { "state", "type", "tag", "prefix", "limit", "cursor",
                                            NULL };

static int admin_cursor_ok(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 128)
                return 0;
        for (; *s; s++)
                if (!admin_name_char((unsigned char)*s) && *s != '~' && *s != '+' && *s != '/' &&
                    *s != '=' && *s != ':')
                        return 0;
        return 1;
}

KW_MUST_USE kw_result admin_keys_list(struct admin_call *a)
{
        const struct admin_query *q = &a->query;
        const char *state = admin_query_get(q, "state"), *type = admin_query_get(q, "type");
        const char *tag = admin_query_get(q, "tag"), *prefix = admin_query_get(q, "prefix");
        const char *limit_s = admin_query_get(q, "limit"), *cursor = admin_query_get(q, "cursor");
        uint64_t limit = 0;
        if (state != NULL && strcmp(state, "enabled") != 0 && strcmp(state, "disabled") != 0 &&
            strcmp(state, "pending_deletion") != 0 && strcmp(state, "destroyed") != 0) {
                kw_err_set_detail("'state' is enabled, disabled, pending_deletion or destroyed");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        if (type != NULL && strcmp(type, "AES") != 0 && strcmp(type, "RSA") != 0) {
                kw_err_set_detail("'type' is AES or RSA");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        if (tag != NULL && (strchr(tag, '=') == NULL || tag[0] == '=')) {
                kw_err_set_detail("'tag' is key=value (URL-encoded)");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        if (prefix != NULL && !admin_name_valid(prefix)) {
                kw_err_set_detail("'prefix' must match [A-Za-z0-9._-]{1,64}");
                KW_BAIL(KW_ERR_BAD_NAME);
        }
        if (limit_s != NULL && admin_parse_u64(limit_s, 1, ADMIN_LIST_LIMIT_MAX, &limit).code != 0) {
                kw_err_set_detail("'limit' is an integer 1..%d", ADMIN_LIST_LIMIT_MAX);
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        if (cursor != NULL && !admin_cursor_ok(cursor)) {
                kw_err_set_detail("'cursor' is the value of a previous reply's 'next'");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        struct kw_cc_call c;
        admin_begin(a, KW_OP_KEY_LIST, &c);
        if (limit != 0)
                kw_cc_put_u32(&c, KW_T_LIMIT, (uint32_t)limit);
        if (cursor != NULL)
                kw_cc_put_str(&c, KW_T_CURSOR, cursor);
        if (state != NULL)
                kw_cc_put_str(&c, KW_T_STATE, state);
        if (type != NULL)
                kw_cc_put_str(&c, KW_T_KEY_TYPE, type);
        if (tag != NULL)
                kw_cc_put_str(&c, KW_T_TAG, tag);
        if (prefix != NULL)
                kw_cc_put_str(&c, KW_T_NAME_PREFIX, prefix);
        return admin_invoke(a, &c, 200);
}

static const char *const admin_f_create[] = { "name", "type", "size", "operations", "tags",
                                              "rules", NULL };

KW_MUST_USE kw_result admin_keys_create(struct admin_call *a)
{
        const char *name = NULL, *type = NULL;
        KW_TRY(admin_check_fields(a->body, admin_f_create));
        KW_TRY(admin_get_name(a->body, "name", &name));
        KW_TRY(admin_get_type(a->body, &type));
        int64_t size = strcmp(type, "AES") == 0 ? 256 : ADMIN_RSA_DEFAULT_BITS;
        KW_TRY(kw_json_get_int(a->body, "size", 0, 1, 65536, &size));
        KW_TRY(admin_check_size(type, size));
        struct admin_attrs at = { 0 };
        kw_buf_init(&at.tags, ADMIN_TAGS_JSON_MAX);
        kw_buf_init(&at.rules, ADMIN_RULES_JSON_MAX);
        kw_result r = admin_get_attrs(a->body, &at);
        if (r.code == 0) {
                struct kw_cc_call c;
                admin_begin(a, KW_OP_KEY_CREATE, &c);
                kw_cc_put_str(&c, KW_T_NAME, name);
                kw_cc_put_str(&c, KW_T_KEY_TYPE, type);
                kw_cc_put_u32(&c, KW_T_KEY_SIZE, (uint32_t)size);
                admin_put_attrs(&c, &at);
                r = admin_invoke(a, &c, 201);
        }
        admin_attrs_free(&at);
        return r;
}

/* The material of an import body, as the client sent it: AES "material"
 * (base64 of 32 bytes); RSA exactly one of "pkcs8" (base64 DER) or "pem".
 * Only the shape is checked here; custody decodes and checks the key. */
KW_MUST_USE static kw_result admin_import_material(const cJSON *body, const char *type,
                                                   const char **ret, uint32_t *ret_format)
{
        const char *m = NULL, *pkcs8 = NULL, *pem = NULL;
        KW_TRY(kw_json_get_str(body, "material", 0, 0, 64, &m));
        KW_TRY(kw_json_get_str(body, "pkcs8", 0, 0, ADMIN_MATERIAL_MAX / 3 * 4 + 4, &pkcs8));
        KW_TRY(kw_json_get_str(body, "pem", 0, 0, ADMIN_PEM_MAX, &pem));
        if (strcmp(type, "AES") == 0) {
                if (m == NULL || pkcs8 != NULL || pem != NULL) {
                        kw_err_set_detail("an AES import takes 'material' only");
                        KW_BAIL(m == NULL && pkcs8 == NULL && pem == NULL ? KW_ERR_MISSING_FIELD
                                                                          : KW_ERR_BAD_FIELD);
                }
                *ret = m;
                *ret_format = KW_MATERIAL_AES_B64;
                return KW_OK;
        }
        if ((pkcs8 == NULL) == (pem == NULL) || m != NULL) {
                kw_err_set_detail("an RSA import takes exactly one of 'pkcs8' or 'pem'");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        *ret = pkcs8 != NULL ? pkcs8 : pem;
        *ret_format = pkcs8 != NULL ? KW_MATERIAL_PKCS8_B64 : KW_MATERIAL_PEM;
        return KW_OK;
}

static const char *const admin_f_import[] = { "name", "type", "operations", "tags", "rules",
                                              "material", "pkcs8", "pem", NULL };

KW_MUST_USE kw_result admin_keys_import(struct admin_call *a)
{
        const char *name = NULL, *type = NULL, *material = NULL;
        uint32_t format = 0;
        KW_TRY(admin_check_fields(a->body, admin_f_import));
        KW_TRY(admin_get_name(a->body, "name", &name));
        KW_TRY(admin_get_type(a->body, &type));
        KW_TRY(admin_import_material(a->body, type, &material, &format));
        struct admin_attrs at = { 0 };
        kw_buf_init(&at.tags, ADMIN_TAGS_JSON_MAX);
        kw_buf_init(&at.rules, ADMIN_RULES_JSON_MAX);
        kw_result r = admin_get_attrs(a->body, &at);
        if (r.code == 0) {
                struct kw_cc_call c;
                admin_begin(a, KW_OP_KEY_IMPORT, &c);
                kw_cc_put_str(&c, KW_T_NAME, name);
                kw_cc_put_str(&c, KW_T_KEY_TYPE, type);
                admin_put_attrs(&c, &at);
                kw_cc_put_u32(&c, KW_T_MATERIAL_FORMAT, format);
                kw_cc_put_str(&c, KW_T_MATERIAL, material);
                r = admin_invoke(a, &c, 201); /* kw_cc_end wipes the request frame */
        }
        admin_attrs_free(&at);
        return r;
}

/* With EKM enabled and an EKM-addressable key name ([A-Za-z0-9-]{1,64}),
 * the key document gets "ekm_url": the URL to register in Azure
 * (docs/ekm.md).  The custody document is an object: its closing brace is
 * reopened. */
KW_MUST_USE static kw_result admin_add_ekm_url(struct admin_call *a)
{
        const struct kw_config *cfg = a->front->cfg;
        struct kw_buf *b = &a->resp->body;
        char url[512];
        if (cfg == NULL || !cfg->ekm.azure_ekm_enable || b->len < 3 || b->p[b->len - 1] != '}' ||
            kw_ekm_key_url(cfg, a->param, url, sizeof url).code != 0)
                return KW_OK;
        b->len--;
        kw_result r = kw_buf_put_str(b, ",\"ekm_url\":\"");
        if (r.code == 0)
                r = kw_buf_put_json_escaped(b, url, strlen(url));
        if (r.code == 0)
                r = kw_buf_put_str(b, "\"}");
        return r;
}

KW_MUST_USE kw_result admin_keys_get(struct admin_call *a)
{
        struct kw_cc_call c;
        admin_begin(a, KW_OP_KEY_GET, &c);
        kw_cc_put_str(&c, KW_T_NAME, a->param);
        KW_TRY(admin_invoke(a, &c, 200));
        return admin_add_ekm_url(a);
}

static const char *const admin_f_update[] = { "operations", "tags", "rules", NULL };

KW_MUST_USE kw_result admin_keys_update(struct admin_call *a)
{
        KW_TRY(admin_check_fields(a->body, admin_f_update));
        struct admin_attrs at = { 0 };
        kw_buf_init(&at.tags, ADMIN_TAGS_JSON_MAX);
        kw_buf_init(&at.rules, ADMIN_RULES_JSON_MAX);
        kw_result r = admin_get_attrs(a->body, &at);
        if (r.code == 0 && !at.has_ops && !at.has_tags && !at.has_rules) {
                kw_err_set_detail("give at least one of 'operations', 'tags', 'rules'");
                r = KW_RESULT(KW_ERR_MISSING_FIELD);
        }
        if (r.code == 0) {
                struct kw_cc_call c;
                admin_begin_key(a, KW_OP_KEY_UPDATE, &c);
                admin_put_attrs(&c, &at);
                r = admin_invoke(a, &c, 200);
        }
        admin_attrs_free(&at);
        return r;
}

KW_MUST_USE static kw_result admin_keys_set_state(struct admin_call *a, const char *state)
{
        struct kw_cc_call c;
        admin_begin_key(a, KW_OP_KEY_SET_STATE, &c);
        kw_cc_put_str(&c, KW_T_STATE, state);
        return admin_invoke(a, &c, 200);
}

KW_MUST_USE kw_result admin_keys_enable(struct admin_call *a)
{
        return admin_keys_set_state(a, "enabled");
}

KW_MUST_USE kw_result admin_keys_disable(struct admin_call *a)
{
        return admin_keys_set_state(a, "disabled");
}

KW_MUST_USE static kw_result admin_keys_simple(struct admin_call *a, uint8_t op)
{
        struct kw_cc_call c;
        admin_begin_key(a, op, &c);
        return admin_invoke(a, &c, 200);
}

KW_MUST_USE kw_result admin_keys_rotate(struct admin_call *a)
{
        return admin_keys_simple(a, KW_OP_KEY_ROTATE);
}

KW_MUST_USE kw_result admin_keys_cancel_delete(struct admin_call *a)
{
        return admin_keys_simple(a, KW_OP_KEY_CANCEL_DELETE);
}

static const char *const admin_f_schedule[] = { "wait_seconds", NULL };

KW_MUST_USE kw_result admin_keys_schedule_delete(struct admin_call *a)
{
        int64_t wait = -1;
        if (a->body != NULL) {
                KW_TRY(admin_check_fields(a->body, admin_f_schedule));
                KW_TRY(kw_json_get_int(a->body, "wait_seconds", 0, 1, UINT32_MAX, &wait));
        }
        struct kw_cc_call c;
        admin_begin_key(a, KW_OP_KEY_SCHEDULE_DELETE, &c);
        if (wait >= 0)
                kw_cc_put_u32(&c, KW_T_WAIT_SECONDS, (uint32_t)wait);
        return admin_invoke(a, &c, 200);
}

const char *const admin_q_audit[] = { "after", "limit", "key", "action", "actor", "since",
                                     "until", "order", "before", NULL };

static int admin_action_ok(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 64)
                return 0;
        for (; *s; s++)
                if (!admin_name_char((unsigned char)*s))
                        return 0;
        return 1;
}

/* An actor prefix: 1..128 printable ASCII characters ("token:ab12",
 * "user:alice", "xks:store:", "ekm:contoso"). */
static int admin_actor_ok(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 128)
                return 0;
        for (; *s; s++)
                if (*s < 0x20 || *s > 0x7e)
                        return 0;
        return 1;
}

/* The time filters: RFC 3339 UTC; since before until. */
KW_MUST_USE static kw_result admin_audit_times(const struct admin_query *q, int64_t *since,
                                               int64_t *until)
{
        const char *since_s = admin_query_get(q, "since"), *until_s = admin_query_get(q, "until");
        if ((since_s != NULL && admin_parse_rfc3339_ms(since_s, since).code != 0) ||
            (until_s != NULL && admin_parse_rfc3339_ms(until_s, until).code != 0)) {
                kw_err_set_detail("'since' and 'until' are RFC 3339 UTC times, "
                                  "e.g. 2026-01-31T12:00:00Z");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        if (since_s != NULL && until_s != NULL && *since >= *until) {
                kw_err_set_detail("'since' must be before 'until'");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        return KW_OK;
}

KW_MUST_USE kw_result admin_audit_query(struct admin_call *a)
{
        const struct admin_query *q = &a->query;
        const char *after_s = admin_query_get(q, "after"), *limit_s = admin_query_get(q, "limit");
        const char *key = admin_query_get(q, "key"), *action = admin_query_get(q, "action");
        const char *actor = admin_query_get(q, "actor"), *order = admin_query_get(q, "order");
        const char *before_s = admin_query_get(q, "before");
        uint64_t after = 0, limit = 0, before = 0;
        int64_t since = 0, until = 0;
        if (after_s != NULL && admin_parse_u64(after_s, 0, UINT64_MAX, &after).code != 0) {
                kw_err_set_detail("'after' is an audit sequence number");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        if (before_s != NULL && admin_parse_u64(before_s, 1, INT64_MAX, &before).code != 0) {
                kw_err_set_detail("'before' is an audit sequence number");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        if (limit_s != NULL && admin_parse_u64(limit_s, 1, ADMIN_LIST_LIMIT_MAX, &limit).code != 0) {
                kw_err_set_detail("'limit' is an integer 1..%d", ADMIN_LIST_LIMIT_MAX);
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        if (key != NULL && !admin_name_valid(key)) {
                kw_err_set_detail("'key' must match [A-Za-z0-9._-]{1,64}");
                KW_BAIL(KW_ERR_BAD_NAME);
        }
        if (action != NULL && !admin_action_ok(action)) {
                kw_err_set_detail("'action' must match [A-Za-z0-9._-]{1,64}");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        if (actor != NULL && !admin_actor_ok(actor)) {
                kw_err_set_detail("'actor' is a prefix of 1..128 printable ASCII characters");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        if (order != NULL && strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0) {
                kw_err_set_detail("'order' is asc or desc");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        KW_TRY(admin_audit_times(q, &since, &until));
        struct kw_cc_call c;
        admin_begin(a, KW_OP_AUDIT_QUERY, &c);
        if (limit != 0)
                kw_cc_put_u32(&c, KW_T_LIMIT, (uint32_t)limit);
        if (after_s != NULL)
                kw_cc_put_u64(&c, KW_T_SEQ, after);
        if (before_s != NULL)
                kw_cc_put_u64(&c, KW_T_BEFORE, before);
        if (key != NULL)
                kw_cc_put_str(&c, KW_T_NAME, key);
        if (action != NULL)
                kw_cc_put_str(&c, KW_T_ACTION, action);
        if (actor != NULL)
                kw_cc_put_str(&c, KW_T_ACTOR, actor);
        if (admin_query_get(q, "since") != NULL)
                kw_cc_put_u64(&c, KW_T_SINCE, (uint64_t)since);
        if (admin_query_get(q, "until") != NULL)
                kw_cc_put_u64(&c, KW_T_UNTIL, (uint64_t)until);
        if (order != NULL && strcmp(order, "desc") == 0)
                kw_cc_put_u32(&c, KW_T_DESC, 1);
        return admin_invoke(a, &c, 200);
}

KW_MUST_USE kw_result admin_audit_verify(struct admin_call *a)
{
        struct kw_cc_call c;
        admin_begin(a, KW_OP_AUDIT_VERIFY, &c);
        return admin_invoke(a, &c, 200);
}

KW_MUST_USE kw_result admin_audit_prune(struct admin_call *a)
{
        struct kw_cc_call c;
        admin_begin(a, KW_OP_AUDIT_PRUNE, &c);
        return admin_invoke(a, &c, 200);
}

KW_MUST_USE kw_result admin_tokens_list(struct admin_call *a)
{
        struct kw_cc_call c;
        admin_begin(a, KW_OP_TOKEN_LIST, &c);
        return admin_invoke(a, &c, 200);
}

static const char *const admin_f_token[] = { "name", "role", NULL };

KW_MUST_USE kw_result admin_tokens_create(struct admin_call *a)
{
        const char *name = NULL, *role = NULL;
        KW_TRY(admin_check_fields(a->body, admin_f_token));
        KW_TRY(admin_get_name(a->body, "name", &name));
        KW_TRY(kw_json_get_str(a->body, "role", 1, 0, 16, &role));
        if (admin_role_parse(role) == 0) {
                kw_err_set_detail("'role' is admin, operator or auditor");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        struct kw_cc_call c;
        admin_begin(a, KW_OP_TOKEN_CREATE, &c);
        kw_cc_put_str(&c, KW_T_TOKEN_NAME, name);
        kw_cc_put_str(&c, KW_T_ROLE, role);
        return admin_invoke(a, &c, 201);
}

KW_MUST_USE kw_result admin_tokens_revoke(struct admin_call *a)
{
        struct kw_cc_call c;
        admin_begin(a, KW_OP_TOKEN_REVOKE, &c);
        kw_cc_put_str(&c, KW_T_TOKEN_ID, a->param);
        return admin_invoke(a, &c, 200);
}

/* Literal rows come before "*" rows so that POST keys/import is the import. */
/* ---- AWS XKS key stores (docs/xks.md) ----------------------------------------- */

KW_MUST_USE kw_result admin_xks_list(struct admin_call *a)
{
        struct kw_cc_call c;
        admin_begin(a, KW_OP_XKS_STORES, &c);
        return admin_invoke(a, &c, 200);
}

static const char *const admin_f_xks_store[] = { "name", "uri_prefix", "region", NULL };

/* The answer carries a new secret access key (the console import file):
 * the response buffer is wiped when freed, nothing is logged. */
KW_MUST_USE kw_result admin_xks_create(struct admin_call *a)
{
        const char *name = NULL, *prefix = NULL, *region = NULL;
        KW_TRY(admin_check_fields(a->body, admin_f_xks_store));
        KW_TRY(admin_get_name(a->body, "name", &name));
        KW_TRY(kw_json_get_str(a->body, "uri_prefix", 1, 1, 128, &prefix));
        KW_TRY(kw_json_get_str(a->body, "region", 0, 0, 64, &region));
        struct kw_cc_call c;
        admin_begin(a, KW_OP_XKS_STORE_CREATE, &c);
        kw_cc_put_str(&c, KW_T_XKS_STORE, name);
        kw_cc_put_str(&c, KW_T_XKS_PREFIX, prefix);
        if (region != NULL)
                kw_cc_put_str(&c, KW_T_XKS_REGION, region);
        kw_result r = admin_invoke(a, &c, 201);
        kw_xks_stores_changed();
        return r;
}

KW_MUST_USE static kw_result admin_xks_store_op(struct admin_call *a, uint8_t op, int status)
{
        struct kw_cc_call c;
        admin_begin(a, op, &c);
        kw_cc_put_str(&c, KW_T_XKS_STORE, a->param);
        kw_result r = admin_invoke(a, &c, status);
        if (op != KW_OP_XKS_IMPORT_FILE)
                kw_xks_stores_changed();
        return r;
}

KW_MUST_USE kw_result admin_xks_rotate(struct admin_call *a)
{
        return admin_xks_store_op(a, KW_OP_XKS_CRED_ROTATE, 200);
}

KW_MUST_USE kw_result admin_xks_import_file(struct admin_call *a)
{
        return admin_xks_store_op(a, KW_OP_XKS_IMPORT_FILE, 200);
}

KW_MUST_USE kw_result admin_xks_delete(struct admin_call *a)
{
        return admin_xks_store_op(a, KW_OP_XKS_STORE_DELETE, 200);
}

static const char *const admin_f_xks_cred[] = { "access_key_id", NULL };

KW_MUST_USE kw_result admin_xks_delete_cred(struct admin_call *a)
{
        const char *akid = NULL;
        KW_TRY(admin_check_fields(a->body, admin_f_xks_cred));
        KW_TRY(kw_json_get_str(a->body, "access_key_id", 1, 0, 128, &akid));
        struct kw_cc_call c;
        admin_begin(a, KW_OP_XKS_CRED_DELETE, &c);
        kw_cc_put_str(&c, KW_T_XKS_STORE, a->param);
        kw_cc_put_str(&c, KW_T_SIGV4_AKID, akid);
        kw_result r = admin_invoke(a, &c, 200);
        kw_xks_stores_changed();
        return r;
}
