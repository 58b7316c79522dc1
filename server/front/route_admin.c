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

#ifndef KEYWARD_VERSION
#define KEYWARD_VERSION "0.1.0"
#endif

#define ADMIN_PREFIX "/api/v1/"
#define ADMIN_MAX_SEGS 4          /* keys/{name}/schedule-deletion is 3 */
#define ADMIN_NAME_MAX 64         /* key, token name and token id length */
#define ADMIN_PATH_MAX 512
#define ADMIN_TOKEN_MAX 512       /* bearer token characters */
#define ADMIN_Q_MAX 8             /* query parameters per request */
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

/* ---- roles ---------------------------------------------------------------- */

enum admin_role {
        ROLE_AUDITOR = 1u << 0,
        ROLE_OPERATOR = 1u << 1,
        ROLE_ADMIN = 1u << 2,
};
#define ROLES_READ (ROLE_AUDITOR | ROLE_OPERATOR | ROLE_ADMIN)
#define ROLES_KEYS (ROLE_OPERATOR | ROLE_ADMIN)
#define ROLES_ADMIN ROLE_ADMIN

static const struct {
        const char *name;
        unsigned bit;
} admin_role_names[] = {
        { "auditor", ROLE_AUDITOR },
        { "operator", ROLE_OPERATOR },
        { "admin", ROLE_ADMIN },
};

/* The role bit for a role name; 0 for anything else. */
static unsigned admin_role_parse(const char *s)
{
        for (size_t i = 0; i < sizeof admin_role_names / sizeof admin_role_names[0]; i++)
                if (strcmp(s, admin_role_names[i].name) == 0)
                        return admin_role_names[i].bit;
        return 0;
}

static const char *admin_role_name(unsigned bit)
{
        for (size_t i = 0; i < sizeof admin_role_names / sizeof admin_role_names[0]; i++)
                if (admin_role_names[i].bit == bit)
                        return admin_role_names[i].name;
        return "unknown";
}

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
        case KW_ERR_ACCESS_DENIED: status = 403; break;
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
        case KW_ERR_CUSTODY_DOWN: status = 503; retry = 1; break;
        default:
                /* the input class: -100 .. -199 */
                status = code <= -100 && code > -200 ? 400 : 500;
                break;
        }
        *ret_retry = retry;
        return status;
}

/* ---- strict path decoding -------------------------------------------------- */

struct admin_path {
        size_t n;
        char seg[ADMIN_MAX_SEGS][ADMIN_NAME_MAX + 1];
};

static int admin_name_char(unsigned char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
}

/* Key names, token names and ids: [A-Za-z0-9._-]{1,64}, and not "." or "..". */
static int admin_name_valid(const char *s) { return kw_name_valid(s); }

static int admin_hexval(unsigned char c) { return kw_hex_value(c); }

/*
 * Splits the part of path after "/api/v1/" into percent-decoded segments.
 * Every decoded segment must be a valid name (so %2F, %00, "..", "." and
 * empty segments are refused): KW_ERR_BAD_NAME.  A path outside /api/v1/ or
 * with more than ADMIN_MAX_SEGS segments: KW_ERR_NO_ROUTE.  *ret is set only
 * on success.
 */
KW_MUST_USE static kw_result admin_path_parse(const char *path, struct admin_path *ret)
{
        size_t plen = strlen(ADMIN_PREFIX);
        KW_ENSURE(path != NULL && strncmp(path, ADMIN_PREFIX, plen) == 0, KW_ERR_NO_ROUTE);
        KW_ENSURE(strlen(path) <= ADMIN_PATH_MAX, KW_ERR_NO_ROUTE);
        struct admin_path p = { 0 };
        const char *s = path + plen;
        for (;;) {
                if (p.n == ADMIN_MAX_SEGS) {
                        kw_err_set_detail("no such path");
                        KW_BAIL(KW_ERR_NO_ROUTE);
                }
                char *out = p.seg[p.n];
                size_t len = 0;
                while (*s != '\0' && *s != '/') {
                        unsigned char c = (unsigned char)*s;
                        if (c == '%') {
                                int hi = admin_hexval((unsigned char)s[1]);
                                int lo = hi < 0 ? -1 : admin_hexval((unsigned char)s[2]);
                                if (lo < 0) {
                                        kw_err_set_detail("bad percent-encoding in the path");
                                        KW_BAIL(KW_ERR_BAD_NAME);
                                }
                                c = (unsigned char)(hi << 4 | lo);
                                s += 3;
                        } else {
                                s++;
                        }
                        if (!admin_name_char(c) || len == ADMIN_NAME_MAX) {
                                kw_err_set_detail("path segments are names [A-Za-z0-9._-]{1,64}");
                                KW_BAIL(KW_ERR_BAD_NAME);
                        }
                        out[len++] = (char)c;
                }
                out[len] = '\0';
                if (!admin_name_valid(out)) {
                        kw_err_set_detail("empty, '.' or '..' path segment");
                        KW_BAIL(KW_ERR_BAD_NAME);
                }
                p.n++;
                if (*s == '\0')
                        break;
                s++; /* the '/' */
        }
        *ret = p;
        return KW_OK;
}

/* ---- strict query parsing -------------------------------------------------- */

struct admin_query {
        size_t n;
        struct {
                char name[16];
                char value[ADMIN_Q_VALUE_MAX + 1];
        } p[ADMIN_Q_MAX];
};

/* Decodes a query component ('+' is a space) into out (outsz bytes, NUL
 * terminated).  Control characters and invalid UTF-8 are refused. */
KW_MUST_USE static kw_result admin_query_decode(const char *s, size_t n, char *out, size_t outsz)
{
        size_t len = 0;
        for (size_t i = 0; i < n;) {
                unsigned char c = (unsigned char)s[i];
                if (c == '%') {
                        int hi = n - i >= 3 ? admin_hexval((unsigned char)s[i + 1]) : -1;
                        int lo = hi < 0 ? -1 : admin_hexval((unsigned char)s[i + 2]);
                        KW_ENSURE(lo >= 0, KW_ERR_BAD_ENCODING);
                        c = (unsigned char)(hi << 4 | lo);
                        i += 3;
                } else {
                        if (c == '+')
                                c = ' ';
                        i++;
                }
                KW_ENSURE(c >= 0x20 && c != 0x7f, KW_ERR_BAD_ENCODING);
                KW_ENSURE(outsz - len > 1, KW_ERR_BAD_FIELD);
                out[len++] = (char)c;
        }
        KW_ENSURE(kw_utf8_valid((const uint8_t *)out, len), KW_ERR_BAD_ENCODING);
        out[len] = '\0';
        return KW_OK;
}

/*
 * Parses a raw query string (NULL or "" = no parameters) into name/value
 * pairs.  Strict: every pair is name=value with a non-empty value, names
 * appear at most once and must be in allowed (NULL-terminated; NULL = none
 * allowed).  KW_ERR_BAD_FIELD / KW_ERR_BAD_ENCODING with a detail; *ret set
 * only on success.
 */
KW_MUST_USE static kw_result admin_query_parse(const char *q, const char *const *allowed,
                                               struct admin_query *ret)
{
        struct admin_query out = { 0 };
        if (q == NULL || *q == '\0') {
                *ret = out;
                return KW_OK;
        }
        const char *s = q;
        for (;;) {
                const char *amp = strchr(s, '&');
                size_t plen = amp ? (size_t)(amp - s) : strlen(s);
                const char *eq = memchr(s, '=', plen);
                if (plen == 0 || eq == NULL || eq == s || (size_t)(eq - s) == plen - 1) {
                        kw_err_set_detail("query parameters are name=value pairs");
                        KW_BAIL(KW_ERR_BAD_FIELD);
                }
                if (out.n == ADMIN_Q_MAX) {
                        kw_err_set_detail("too many query parameters");
                        KW_BAIL(KW_ERR_BAD_FIELD);
                }
                char name[16];
                kw_result r = admin_query_decode(s, (size_t)(eq - s), name, sizeof name);
                size_t k = 0;
                for (; r.code == 0 && allowed != NULL && allowed[k] != NULL; k++)
                        if (strcmp(allowed[k], name) == 0)
                                break;
                if (r.code != 0 || allowed == NULL || allowed[k] == NULL) {
                        if (r.code == 0)
                                kw_err_set_detail("unknown query parameter '%s'", name);
                        else
                                kw_err_set_detail("unknown query parameter");
                        KW_BAIL(KW_ERR_BAD_FIELD);
                }
                for (size_t i = 0; i < out.n; i++) {
                        if (strcmp(out.p[i].name, name) == 0) {
                                kw_err_set_detail("query parameter '%s' given twice", name);
                                KW_BAIL(KW_ERR_BAD_FIELD);
                        }
                }
                r = admin_query_decode(eq + 1, plen - (size_t)(eq - s) - 1, out.p[out.n].value,
                                       sizeof out.p[out.n].value);
                if (r.code != 0) {
                        kw_err_set_detail("query parameter '%s': %s", name,
                                          r.code == KW_ERR_BAD_FIELD ? "too long"
                                                                     : "invalid encoding");
                        KW_BAIL(r.code);
                }
                memcpy(out.p[out.n].name, name, sizeof name);
                out.n++;
                if (amp == NULL)
                        break;
                s = amp + 1;
        }
        *ret = out;
        return KW_OK;
}

/* The decoded value of parameter name, or NULL. */
static const char *admin_query_get(const struct admin_query *q, const char *name)
{
        for (size_t i = 0; i < q->n; i++)
                if (strcmp(q->p[i].name, name) == 0)
                        return q->p[i].value;
        return NULL;
}

/* Decimal without sign or leading zeros (except "0"), within [min, max]. */
KW_MUST_USE static kw_result admin_parse_u64(const char *s, uint64_t min, uint64_t max,
                                             uint64_t *ret)
{
        size_t n = strlen(s);
        KW_ENSURE(n >= 1 && n <= 20 && (s[0] != '0' || n == 1), KW_ERR_BAD_FIELD);
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++) {
                KW_ENSURE(s[i] >= '0' && s[i] <= '9', KW_ERR_BAD_FIELD);
                unsigned d = (unsigned)(s[i] - '0');
                KW_ENSURE(v <= (UINT64_MAX - d) / 10, KW_ERR_BAD_FIELD);
                v = v * 10 + d;
        }
        KW_ENSURE(v >= min && v <= max, KW_ERR_BAD_FIELD);
        *ret = v;
        return KW_OK;
}

/* ---- route table ----------------------------------------------------------- */

struct admin_call;
typedef kw_result (*admin_fn)(struct admin_call *a);

enum admin_body {
        BODY_NONE,      /* empty, or the empty object {} */
        BODY_OPTIONAL,  /* empty or a JSON object        */
        BODY_REQUIRED,  /* a JSON object                 */
};

struct admin_route {
        const char *method;
        const char *pattern;      /* segments; "*" captures one name */
        unsigned roles;
        enum admin_body body;
        int sensitive;            /* body carries key material: wipe it */
        const char *const *query; /* allowed query parameters (NULL: none) */
        const char *log_route;
        admin_fn fn;
};

struct admin_principal {
        char id[ADMIN_NAME_MAX + 1];
        char name[ADMIN_NAME_MAX + 1];
        unsigned role;
        const char *token;  /* the bearer token, in the request's header (not copied) */
        size_t token_len;
};

struct admin_call {
        struct kw_req *req;
        struct kw_resp *resp;
        struct kw_front *front;
        const char *param;        /* the captured name, or NULL */
        const cJSON *body;        /* parsed body object, or NULL when empty */
        struct admin_query query;
        struct admin_principal who;
};

/* 1 when the pattern matches the segments; *ret_param gets the capture. */
static int admin_pattern_match(const char *pattern, const struct admin_path *p,
                               const char **ret_param)
{
        const char *param = NULL;
        const char *s = pattern;
        size_t i = 0;
        while (*s != '\0') {
                const char *slash = strchr(s, '/');
                size_t len = slash ? (size_t)(slash - s) : strlen(s);
                if (i == p->n)
                        return 0;
                if (len == 1 && s[0] == '*')
                        param = p->seg[i];
                else if (strlen(p->seg[i]) != len || memcmp(p->seg[i], s, len) != 0)
                        return 0;
                i++;
                s += len;
                if (*s == '/')
                        s++;
        }
        if (i != p->n)
                return 0;
        *ret_param = param;
        return 1;
}

/*
 * The first route whose pattern matches p and whose method is method.
 * NULL when none: allow then lists the methods of the rows whose pattern
 * matches ("" -> the path does not exist at all -> 404; else 405).
 */
static const struct admin_route *admin_route_match(const struct admin_route *routes,
                                                   const struct admin_path *p, const char *method,
                                                   char *allow, size_t allowsz,
                                                   const char **ret_param)
{
        allow[0] = '\0';
        for (const struct admin_route *r = routes; r->method != NULL; r++) {
                const char *param = NULL;
                if (!admin_pattern_match(r->pattern, p, &param))
                        continue;
                if (strcmp(r->method, method) == 0) {
                        *ret_param = param;
                        return r;
                }
                if (strstr(allow, r->method) == NULL) {
                        size_t used = strlen(allow);
                        snprintf(allow + used, allowsz - used, "%s%s", used ? ", " : "",
                                 r->method);
                }
        }
        return NULL;
}

/* ---- request bodies --------------------------------------------------------- */

/* "application/json", any case, optionally followed by parameters. */
static int admin_content_type_is_json(const char *ct)
{
        static const char mt[] = "application/json";
        if (ct == NULL)
                return 0;
        while (*ct == ' ' || *ct == '\t')
                ct++;
        if (strncasecmp(ct, mt, sizeof mt - 1) != 0)
                return 0;
        ct += sizeof mt - 1;
        while (*ct == ' ' || *ct == '\t')
                ct++;
        return *ct == '\0' || *ct == ';';
}

/* Every member of obj is named in allowed (NULL-terminated). */
KW_MUST_USE static kw_result admin_check_fields(const cJSON *obj, const char *const *allowed)
{
        for (const cJSON *m = obj->child; m != NULL; m = m->next) {
                size_t k = 0;
                while (allowed[k] != NULL && strcmp(allowed[k], m->string) != 0)
                        k++;
                if (allowed[k] == NULL) {
                        int printable = strlen(m->string) <= 32;
                        for (const char *c = m->string; printable && *c; c++)
                                printable = admin_name_char((unsigned char)*c);
                        if (printable)
                                kw_err_set_detail("unknown field '%s'", m->string);
                        else
                                kw_err_set_detail("unknown field");
                        KW_BAIL(KW_ERR_BAD_FIELD);
                }
        }
        return KW_OK;
}

/* A name field (key or token): [A-Za-z0-9._-]{1,64}. */
KW_MUST_USE static kw_result admin_get_name(const cJSON *obj, const char *field, const char **ret)
{
        const char *s = NULL;
        KW_TRY(kw_json_get_str(obj, field, 1, 0, ADMIN_NAME_MAX, &s));
        if (!admin_name_valid(s)) {
                kw_err_set_detail("'%s' must match [A-Za-z0-9._-]{1,64}", field);
                KW_BAIL(KW_ERR_BAD_NAME);
        }
        *ret = s;
        return KW_OK;
}

static const struct {
        const char *name;
        uint32_t bit;
} admin_op_names[] = {
        { "encrypt", KW_KEYOP_ENCRYPT },
        { "decrypt", KW_KEYOP_DECRYPT },
        { "wrap", KW_KEYOP_WRAP },
        { "unwrap", KW_KEYOP_UNWRAP },
};

/* "operations": a non-empty array of distinct operation names -> mask.
 * Absent: KW_OK, *ret_mask untouched. */
KW_MUST_USE static kw_result admin_get_ops(const cJSON *obj, uint32_t *ret_mask)
{
        const cJSON *arr = NULL;
        KW_TRY(kw_json_get_strarray(obj, "operations", 0, 4, 16, &arr));
        if (arr == NULL)
                return KW_OK;
        uint32_t mask = 0;
        for (const cJSON *e = arr->child; e != NULL; e = e->next) {
                uint32_t bit = 0;
                for (size_t i = 0; i < sizeof admin_op_names / sizeof admin_op_names[0]; i++)
                        if (strcmp(e->valuestring, admin_op_names[i].name) == 0)
                                bit = admin_op_names[i].bit;
                if (bit == 0 || (mask & bit) != 0) {
                        kw_err_set_detail("'operations' lists distinct names among encrypt, "
                                          "decrypt, wrap, unwrap");
                        KW_BAIL(KW_ERR_BAD_FIELD);
                }
                mask |= bit;
        }
        if (mask == 0) {
                kw_err_set_detail("'operations' must name at least one operation");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        *ret_mask = mask;
        return KW_OK;
}

/* No control characters (the parser already checked UTF-8). */
static int admin_text_ok(const char *s)
{
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || *s == 0x7f)
                        return 0;
        return 1;
}

/*
 * "tags": an object of at most 64 string pairs, keys 1..128 bytes, values
 * 0..256 bytes, no control characters.  Its compact JSON (<= 8 KiB) is
 * appended to out.  Absent: KW_OK, *ret_present = 0.
 */
KW_MUST_USE static kw_result admin_get_tags(const cJSON *obj, struct kw_buf *out, int *ret_present)
{
        const cJSON *tags = NULL;
        KW_TRY(kw_json_get_obj(obj, "tags", 0, &tags));
        if (tags == NULL) {
                *ret_present = 0;
                return KW_OK;
        }
        size_t n = 0;
        for (const cJSON *t = tags->child; t != NULL; t = t->next) {
                size_t kl = strlen(t->string);
                if (++n > ADMIN_TAGS_MAX) {
                        kw_err_set_detail("at most %d tags", ADMIN_TAGS_MAX);
                        KW_BAIL(KW_ERR_BAD_FIELD);
                }
                if (kl == 0 || kl > ADMIN_TAG_KEY_MAX || !admin_text_ok(t->string) ||
                    !cJSON_IsString(t) || strlen(t->valuestring) > ADMIN_TAG_VALUE_MAX ||
                    !admin_text_ok(t->valuestring)) {
                        kw_err_set_detail("tags are string pairs: keys 1..%d, values 0..%d "
                                          "bytes, no control characters",
                                          ADMIN_TAG_KEY_MAX, ADMIN_TAG_VALUE_MAX);
                        KW_BAIL(KW_ERR_BAD_FIELD);
                }
        }
        struct kw_buf b;
        kw_buf_init(&b, ADMIN_TAGS_JSON_MAX);
        kw_result r = kw_json_write(tags, &b);
        if (r.code == 0)
                r = kw_buf_put(out, b.p, b.len);
        kw_buf_free(&b);
        if (r.code == KW_ERR_TOO_LARGE)
                kw_err_set_detail("'tags' exceeds %u bytes as JSON", ADMIN_TAGS_JSON_MAX);
        KW_TRY(r);
        *ret_present = 1;
        return KW_OK;
}

/* "rules": an object whose compact JSON is at most 16 KiB (custody checks
 * its content).  Absent: KW_OK, *ret_present = 0. */
KW_MUST_USE static kw_result admin_get_rules(const cJSON *obj, struct kw_buf *out,
                                             int *ret_present)
{
        const cJSON *rules = NULL;
        KW_TRY(kw_json_get_obj(obj, "rules", 0, &rules));
        if (rules == NULL) {
                *ret_present = 0;
                return KW_OK;
        }
        struct kw_buf b;
        kw_buf_init(&b, ADMIN_RULES_JSON_MAX);
        kw_result r = kw_json_write(rules, &b);
        if (r.code == 0)
                r = kw_buf_put(out, b.p, b.len);
        kw_buf_free(&b);
        if (r.code == KW_ERR_TOO_LARGE)
                kw_err_set_detail("'rules' exceeds %u bytes as JSON", ADMIN_RULES_JSON_MAX);
        KW_TRY(r);
        *ret_present = 1;
        return KW_OK;
}

/* "type": "AES" | "RSA". */
KW_MUST_USE static kw_result admin_get_type(const cJSON *obj, const char **ret_type)
{
        const char *type = NULL;
        KW_TRY(kw_json_get_str(obj, "type", 1, 0, 3, &type));
        if (strcmp(type, "AES") != 0 && strcmp(type, "RSA") != 0) {
                kw_err_set_detail("'type' is \"AES\" or \"RSA\"");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        *ret_type = type;
        return KW_OK;
}

/* The size/type combinations: AES 256; RSA 2048, 3072, 4096. */
KW_MUST_USE static kw_result admin_check_size(const char *type, int64_t size)
{
        if (strcmp(type, "AES") == 0) {
                if (size != 256) {
                        kw_err_set_detail("AES keys have 256 bits");
                        KW_BAIL(KW_ERR_BAD_FIELD);
                }
        } else if (size != 2048 && size != 3072 && size != 4096) {
                kw_err_set_detail("RSA keys have 2048, 3072 or 4096 bits");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        return KW_OK;
}

/* The attributes shared by create, import and update. */
struct admin_attrs {
        uint32_t ops;
        int has_ops, has_tags, has_rules;
        struct kw_buf tags, rules;
};

static void admin_attrs_free(struct admin_attrs *at)
{
        kw_buf_free(&at->tags);
        kw_buf_free(&at->rules);
}

KW_MUST_USE static kw_result admin_get_attrs(const cJSON *obj, struct admin_attrs *at)
{
        uint32_t ops = 0;
        KW_TRY(admin_get_ops(obj, &ops));
        at->has_ops = ops != 0;
        at->ops = ops;
        KW_TRY(admin_get_tags(obj, &at->tags, &at->has_tags));
        KW_TRY(admin_get_rules(obj, &at->rules, &at->has_rules));
        return KW_OK;
}

static void admin_put_attrs(struct kw_cc_call *c, const struct admin_attrs *at)
{
        if (at->has_ops)
                kw_cc_put_u32(c, KW_T_OPS, at->ops);
        if (at->has_tags)
                kw_cc_put(c, KW_T_TAGS, at->tags.p, at->tags.len);
        if (at->has_rules)
                kw_cc_put(c, KW_T_RULES, at->rules.p, at->rules.len);
}

/* Overwrites every string of a JSON tree (names and values) before it is
 * deleted: for bodies that carried key material. */
static void admin_json_wipe(cJSON *v)
{
        for (; v != NULL; v = v->next) {
                if (v->string != NULL)
                        kw_wipe(v->string, strlen(v->string));
                if (v->valuestring != NULL)
                        kw_wipe(v->valuestring, strlen(v->valuestring));
                v->valuedouble = 0;
                v->valueint = 0;
                admin_json_wipe(v->child);
        }
}

static const char *const admin_f_none[] = { NULL };

/* ---- custody calls ----------------------------------------------------------- */

/* A call as this admin caller: its token is the proof custody checks. */
static void admin_begin(struct admin_call *a, uint8_t op, struct kw_cc_call *c)
{
        kw_cc_begin(a->front->cc, op, KW_CALLER_ADMIN, c);
        kw_cc_put(c, KW_T_TOKEN, a->who.token, a->who.token_len);
}

/* Invokes c; on success the reply's JSON becomes the response body with
 * status, on failure the custody detail becomes the thread's detail.  Ends c. */
KW_MUST_USE static kw_result admin_invoke(struct admin_call *a, struct kw_cc_call *c, int status)
{
        kw_result r = kw_cc_invoke(c);
        if (r.code != 0) {
                if (c->detail[0] != '\0')
                        kw_err_set_detail("%s", c->detail);
                kw_cc_end(c);
                return r;
        }
        const char *json = NULL;
        size_t len = 0;
        r = kw_cc_reply_json(c, &json, &len);
        if (r.code == 0)
                r = kw_buf_put(&a->resp->body, json, len);
        kw_cc_end(c);
        KW_TRY(r);
        a->resp->status = status;
        return KW_OK;
}

/* A call on the key named in the path. */
static void admin_begin_key(struct admin_call *a, uint8_t op, struct kw_cc_call *c)
{
        admin_begin(a, op, c);
        kw_cc_put_str(c, KW_T_NAME, a->param);
}

/* ---- handlers ----------------------------------------------------------------- */

KW_MUST_USE static kw_result admin_status(struct admin_call *a)
{
        struct kw_cc_call c;
        admin_begin(a, KW_OP_STATUS, &c);
        kw_result r = kw_cc_invoke(&c);
        if (r.code != 0) {
                if (c.detail[0] != '\0')
                        kw_err_set_detail("%s", c.detail);
                kw_cc_end(&c);
                return r;
        }
        const char *json = NULL;
        size_t len = 0;
        struct kw_buf *b = &a->resp->body;
        r = kw_cc_reply_json(&c, &json, &len);
        if (r.code == 0)
                r = kw_buf_put_str(b, "{\"custody\":");
        if (r.code == 0)
                r = kw_buf_put(b, json, len);
        if (r.code == 0)
                r = kw_buf_put_str(b, ",\"version\":\"" KEYWARD_VERSION "\"}");
        kw_cc_end(&c);
        KW_TRY(r);
        a->resp->status = 200;
        return KW_OK;
}

static const char *const admin_q_keys[] = { "state", "type", "tag", "prefix", "limit", "cursor",
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

KW_MUST_USE static kw_result admin_keys_list(struct admin_call *a)
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

KW_MUST_USE static kw_result admin_keys_create(struct admin_call *a)
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

KW_MUST_USE static kw_result admin_keys_import(struct admin_call *a)
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

KW_MUST_USE static kw_result admin_keys_get(struct admin_call *a)
{
        struct kw_cc_call c;
        admin_begin(a, KW_OP_KEY_GET, &c);
        kw_cc_put_str(&c, KW_T_NAME, a->param);
        KW_TRY(admin_invoke(a, &c, 200));
        return admin_add_ekm_url(a);
}

static const char *const admin_f_update[] = { "operations", "tags", "rules", NULL };

KW_MUST_USE static kw_result admin_keys_update(struct admin_call *a)
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

KW_MUST_USE static kw_result admin_keys_enable(struct admin_call *a)
{
        return admin_keys_set_state(a, "enabled");
}

KW_MUST_USE static kw_result admin_keys_disable(struct admin_call *a)
{
        return admin_keys_set_state(a, "disabled");
}

KW_MUST_USE static kw_result admin_keys_simple(struct admin_call *a, uint8_t op)
{
        struct kw_cc_call c;
        admin_begin_key(a, op, &c);
        return admin_invoke(a, &c, 200);
}

KW_MUST_USE static kw_result admin_keys_rotate(struct admin_call *a)
{
        return admin_keys_simple(a, KW_OP_KEY_ROTATE);
}

KW_MUST_USE static kw_result admin_keys_cancel_delete(struct admin_call *a)
{
        return admin_keys_simple(a, KW_OP_KEY_CANCEL_DELETE);
}

static const char *const admin_f_schedule[] = { "wait_seconds", NULL };

KW_MUST_USE static kw_result admin_keys_schedule_delete(struct admin_call *a)
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

static const char *const admin_q_audit[] = { "after", "limit", "key", "action", NULL };

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

KW_MUST_USE static kw_result admin_audit_query(struct admin_call *a)
{
        const struct admin_query *q = &a->query;
        const char *after_s = admin_query_get(q, "after"), *limit_s = admin_query_get(q, "limit");
        const char *key = admin_query_get(q, "key"), *action = admin_query_get(q, "action");
        uint64_t after = 0, limit = 0;
        if (after_s != NULL && admin_parse_u64(after_s, 0, UINT64_MAX, &after).code != 0) {
                kw_err_set_detail("'after' is an audit sequence number");
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
        struct kw_cc_call c;
        admin_begin(a, KW_OP_AUDIT_QUERY, &c);
        if (limit != 0)
                kw_cc_put_u32(&c, KW_T_LIMIT, (uint32_t)limit);
        if (after_s != NULL)
                kw_cc_put_u64(&c, KW_T_SEQ, after);
        if (key != NULL)
                kw_cc_put_str(&c, KW_T_NAME, key);
        if (action != NULL)
                kw_cc_put_str(&c, KW_T_ACTION, action);
        return admin_invoke(a, &c, 200);
}

KW_MUST_USE static kw_result admin_audit_verify(struct admin_call *a)
{
        struct kw_cc_call c;
        admin_begin(a, KW_OP_AUDIT_VERIFY, &c);
        return admin_invoke(a, &c, 200);
}

KW_MUST_USE static kw_result admin_audit_prune(struct admin_call *a)
{
        struct kw_cc_call c;
        admin_begin(a, KW_OP_AUDIT_PRUNE, &c);
        return admin_invoke(a, &c, 200);
}

KW_MUST_USE static kw_result admin_tokens_list(struct admin_call *a)
{
        struct kw_cc_call c;
        admin_begin(a, KW_OP_TOKEN_LIST, &c);
        return admin_invoke(a, &c, 200);
}

static const char *const admin_f_token[] = { "name", "role", NULL };

KW_MUST_USE static kw_result admin_tokens_create(struct admin_call *a)
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

KW_MUST_USE static kw_result admin_tokens_revoke(struct admin_call *a)
{
        struct kw_cc_call c;
        admin_begin(a, KW_OP_TOKEN_REVOKE, &c);
        kw_cc_put_str(&c, KW_T_TOKEN_ID, a->param);
        return admin_invoke(a, &c, 200);
}

/* Literal rows come before "*" rows so that POST keys/import is the import. */
/* ---- AWS XKS key stores (docs/xks.md) ----------------------------------------- */

KW_MUST_USE static kw_result admin_xks_list(struct admin_call *a)
{
        struct kw_cc_call c;
        admin_begin(a, KW_OP_XKS_STORES, &c);
        return admin_invoke(a, &c, 200);
}

static const char *const admin_f_xks_store[] = { "name", "uri_prefix", "region", NULL };

/* The answer carries a new secret access key (the console import file):
 * the response buffer is wiped when freed, nothing is logged. */
KW_MUST_USE static kw_result admin_xks_create(struct admin_call *a)
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

KW_MUST_USE static kw_result admin_xks_rotate(struct admin_call *a)
{
        return admin_xks_store_op(a, KW_OP_XKS_CRED_ROTATE, 200);
}

KW_MUST_USE static kw_result admin_xks_import_file(struct admin_call *a)
{
        return admin_xks_store_op(a, KW_OP_XKS_IMPORT_FILE, 200);
}

KW_MUST_USE static kw_result admin_xks_delete(struct admin_call *a)
{
        return admin_xks_store_op(a, KW_OP_XKS_STORE_DELETE, 200);
}

static const char *const admin_f_xks_cred[] = { "access_key_id", NULL };

KW_MUST_USE static kw_result admin_xks_delete_cred(struct admin_call *a)
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

/* Reads the TOKEN_CHECK reply {"id","name","role"} into *who. */
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
        }
        cJSON_Delete(doc);
        return r;
}

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

/* ---- the handler ------------------------------------------------------------------- */

static void admin_error(struct kw_req *req, struct kw_resp *resp, int code, int had_token)
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
                snprintf(resp->extra_headers, sizeof resp->extra_headers, "Retry-After: 1\r\n");
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

        const char *authz = kw_req_header(req, "Authorization");
        had_token = authz != NULL;
        KW_TRY_GOTO(r, admin_authenticate(&a, authz), fail);
        snprintf(req->log_principal, sizeof req->log_principal, "token:%s", a.who.id);
        if ((a.who.role & rt->roles) == 0) {
                kw_err_set_detail("the %s role cannot do this", admin_role_name(a.who.role));
                r = KW_RESULT(KW_ERR_FORBIDDEN);
                goto fail;
        }
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
        admin_error(req, resp, r.code, had_token);
out:
        if (rt != NULL && rt->sensitive) {
                admin_json_wipe(body);
                /* http.c hands the handler its own heap copy of the body
                 * (http.h: "NUL-terminated copy"); wipe the key material in it. */
                kw_wipe((void *)(uintptr_t)req->body, req->body_len);
        }
        cJSON_Delete(body);
}
