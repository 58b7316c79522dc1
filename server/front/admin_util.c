/*
 * admin_util.c - the admin API's shared parts (admin_int.h): roles, strict
 * path and query decoding, route matching, field getters and the custody
 * call wrappers every handler uses.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "../common/b64.h"
#include "../common/names.h"
#include "../common/proto.h"
#include "../common/secret.h"
#include "front.h"
#include "../common/json_io.h"
#include "route_xks.h"
#include "route_ekm.h"
#include "admin_int.h"

/* ---- roles ---------------------------------------------------------------- */


static const struct {
        const char *name;
        unsigned bit;
} admin_role_names[] = {
        { "auditor", ROLE_AUDITOR },
        { "operator", ROLE_OPERATOR },
        { "admin", ROLE_ADMIN },
};

/* The role bit for a role name; 0 for anything else. */
unsigned admin_role_parse(const char *s)
{
        for (size_t i = 0; i < sizeof admin_role_names / sizeof admin_role_names[0]; i++)
                if (strcmp(s, admin_role_names[i].name) == 0)
                        return admin_role_names[i].bit;
        return 0;
}

const char *admin_role_name(unsigned bit)
{
        for (size_t i = 0; i < sizeof admin_role_names / sizeof admin_role_names[0]; i++)
                if (admin_role_names[i].bit == bit)
                        return admin_role_names[i].name;
        return "unknown";
}


/* ---- strict path decoding -------------------------------------------------- */


int admin_name_char(unsigned char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
}

/* Key names, token names and ids: [A-Za-z0-9._-]{1,64}, and not "." or "..". */
int admin_name_valid(const char *s) { return kw_name_valid(s); }

static int admin_hexval(unsigned char c) { return kw_hex_value(c); }

/*
 * Splits the part of path after "/api/v1/" into percent-decoded segments.
 * Every decoded segment must be a valid name (so %2F, %00, "..", "." and
 * empty segments are refused): KW_ERR_BAD_NAME.  A path outside /api/v1/ or
 * with more than ADMIN_MAX_SEGS segments: KW_ERR_NO_ROUTE.  *ret is set only
 * on success.
 */
KW_MUST_USE kw_result admin_path_parse(const char *path, struct admin_path *ret)
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
KW_MUST_USE kw_result admin_query_parse(const char *q, const char *const *allowed,
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
const char *admin_query_get(const struct admin_query *q, const char *name)
{
        for (size_t i = 0; i < q->n; i++)
                if (strcmp(q->p[i].name, name) == 0)
                        return q->p[i].value;
        return NULL;
}

/* Decimal without sign or leading zeros (except "0"), within [min, max]. */
KW_MUST_USE kw_result admin_parse_u64(const char *s, uint64_t min, uint64_t max,
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

/* n decimal digits at s into *ret. */
static int digits(const char *s, int n, int *ret)
{
        int v = 0;
        for (int i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return 0;
                v = v * 10 + (s[i] - '0');
        }
        *ret = v;
        return 1;
}

/* RFC 3339 in UTC: YYYY-MM-DDTHH:MM:SS[.fraction]Z (T and Z in either
 * case, 1..9 fraction digits, years 1970..9999, no leap second) -> Unix
 * milliseconds (the fraction truncated).  KW_ERR_BAD_FIELD otherwise. */
KW_MUST_USE kw_result admin_parse_rfc3339_ms(const char *s, int64_t *ret)
{
        int y, mo, d, h, mi, sec;
        size_t n = strlen(s);
        KW_ENSURE(n >= 20 && n <= 30 && digits(s, 4, &y) && s[4] == '-' && digits(s + 5, 2, &mo) &&
                          s[7] == '-' && digits(s + 8, 2, &d) && (s[10] == 'T' || s[10] == 't') &&
                          digits(s + 11, 2, &h) && s[13] == ':' && digits(s + 14, 2, &mi) &&
                          s[16] == ':' && digits(s + 17, 2, &sec),
                  KW_ERR_BAD_FIELD);
        int ms = 0;
        size_t i = 19;
        if (s[i] == '.') {
                size_t f0 = ++i;
                while (i < n && s[i] >= '0' && s[i] <= '9') {
                        if (i - f0 < 3)
                                ms = ms * 10 + (s[i] - '0');
                        i++;
                }
                KW_ENSURE(i - f0 >= 1 && i - f0 <= 9, KW_ERR_BAD_FIELD);
                for (size_t k = i - f0; k < 3; k++)
                        ms *= 10;
        }
        KW_ENSURE(i == n - 1 && (s[i] == 'Z' || s[i] == 'z'), KW_ERR_BAD_FIELD);
        KW_ENSURE(y >= 1970 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h <= 23 && mi <= 59 &&
                          sec <= 59,
                  KW_ERR_BAD_FIELD);
        struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
                         .tm_min = mi, .tm_sec = sec };
        time_t t = timegm(&tm);
        /* timegm normalises 2025-02-30 into March: refuse what moved */
        KW_ENSURE(t >= 0 && tm.tm_mday == d && tm.tm_mon == mo - 1, KW_ERR_BAD_FIELD);
        *ret = (int64_t)t * 1000 + ms;
        return KW_OK;
}

/* ---- route table ----------------------------------------------------------- */

/* 1 when the pattern matches the segments; *ret_param gets the capture. */
int admin_pattern_match(const char *pattern, const struct admin_path *p,
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
const struct admin_route *admin_route_match(const struct admin_route *routes,
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

int admin_content_type_is_json(const char *ct)
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
KW_MUST_USE kw_result admin_check_fields(const cJSON *obj, const char *const *allowed)
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
KW_MUST_USE kw_result admin_get_name(const cJSON *obj, const char *field, const char **ret)
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
KW_MUST_USE kw_result admin_get_ops(const cJSON *obj, uint32_t *ret_mask)
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
int admin_text_ok(const char *s)
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
KW_MUST_USE kw_result admin_get_tags(const cJSON *obj, struct kw_buf *out, int *ret_present)
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
KW_MUST_USE kw_result admin_get_rules(const cJSON *obj, struct kw_buf *out,
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
KW_MUST_USE kw_result admin_get_type(const cJSON *obj, const char **ret_type)
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
KW_MUST_USE kw_result admin_check_size(const char *type, int64_t size)
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


void admin_attrs_free(struct admin_attrs *at)
{
        kw_buf_free(&at->tags);
        kw_buf_free(&at->rules);
}

KW_MUST_USE kw_result admin_get_attrs(const cJSON *obj, struct admin_attrs *at)
{
        uint32_t ops = 0;
        KW_TRY(admin_get_ops(obj, &ops));
        at->has_ops = ops != 0;
        at->ops = ops;
        KW_TRY(admin_get_tags(obj, &at->tags, &at->has_tags));
        KW_TRY(admin_get_rules(obj, &at->rules, &at->has_rules));
        return KW_OK;
}

void admin_put_attrs(struct kw_cc_call *c, const struct admin_attrs *at)
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
void admin_json_wipe(cJSON *v)
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

const char *const admin_f_none[] = { NULL };

/* ---- custody calls ----------------------------------------------------------- */

/* A call as this admin caller: its token, or its session and CSRF token, is
 * the proof custody checks. */

void admin_begin(struct admin_call *a, uint8_t op, struct kw_cc_call *c)
{
        kw_cc_begin(a->front->cc, op, KW_CALLER_ADMIN, c);
        if (a->who.session != NULL) {
                kw_cc_put(c, KW_T_SESSION, a->who.session, a->who.session_len);
                if (a->who.csrf != NULL)
                        kw_cc_put(c, KW_T_CSRF, a->who.csrf, a->who.csrf_len);
        } else {
                kw_cc_put(c, KW_T_TOKEN, a->who.token, a->who.token_len);
        }
}

/* Invokes c; on success the reply's JSON becomes the response body with
 * status, on failure the custody detail becomes the thread's detail.  Ends c. */
KW_MUST_USE kw_result admin_invoke(struct admin_call *a, struct kw_cc_call *c, int status)
{
        const char *json = NULL;
        size_t len = 0;
        KW_TRY(admin_invoke_json(c, &json, &len));
        kw_result r = kw_buf_put(&a->resp->body, json, len);
        kw_cc_end(c);
        KW_TRY(r);
        a->resp->status = status;
        return KW_OK;
}

/* Invokes c; on success *ret_json points at the reply's JSON (valid until
 * kw_cc_end, which the caller then owes), on failure c is ended and the
 * custody detail is the thread's detail. */
KW_MUST_USE kw_result admin_invoke_json(struct kw_cc_call *c, const char **ret_json,
                                        size_t *ret_len)
{
        kw_result r = kw_cc_invoke(c);
        if (r.code == 0)
                r = kw_cc_reply_json(c, ret_json, ret_len);
        if (r.code != 0) {
                if (c->detail[0] != '\0')
                        kw_err_set_detail("%s", c->detail);
                kw_cc_end(c);
        }
        return r;
}

/* A call on the key named in the path. */
void admin_begin_key(struct admin_call *a, uint8_t op, struct kw_cc_call *c)
{
        admin_begin(a, op, c);
        kw_cc_put_str(c, KW_T_NAME, a->param);
}

