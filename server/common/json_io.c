/*
 * json_io.c - strict JSON input and compact JSON output for the front.
 *
 * cJSON 1.7.15 alone is too lenient for request bodies.  Measured against
 * the Debian 12 build, it accepts: a leading UTF-8 BOM; numbers "1.", "01",
 * "-.5", "1.e5"; raw control characters inside strings; "\u0000" (which
 * silently truncates the C string it produces); \v and \f (any byte <= 0x20)
 * as whitespace; "1e400" (stored as infinity, printed back as null); and
 * duplicate member names.  It also needs the terminating NUL counted in the
 * length when require_null_terminated is set.  So a body goes through four
 * gates, in this order:
 *   1. kw_utf8_valid on the raw bytes (RFC 3629)         -> KW_ERR_BAD_ENCODING
 *   2. a strict RFC 8259 syntax pass (grammar, escapes, surrogate pairs, no
 *      \u0000, nesting <= max_depth, nothing after the value) -> KW_ERR_BAD_JSON
 *   3. cJSON_ParseWithLengthOpts(require_null_terminated) on a NUL-terminated,
 *      wiped-on-free copy
 *   4. a walk of the tree: duplicate member names, non-finite numbers, and a
 *      top-level object                                   -> KW_ERR_BAD_JSON
 * The detail never echoes the body; it names a byte offset or a field name.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "secret.h"
#include "b64.h"
#include "json_io.h"

/* cJSON's own recursion limit; a deeper max_depth would never be reached. */
#define JSON_DEPTH_CEILING 1000
/* Objects with at most this many members are checked pairwise. */
#define DUP_PAIRWISE_MAX 8
/* Integers are exchanged through double: only |v| <= 2^53 - 1 is known to be
 * the integer that was written (2^53 + 1 also reads as 2^53). */
#define JSON_INT_EXACT_MAX 9007199254740991.0

int kw_utf8_valid(const uint8_t *s, size_t n)
{
        size_t i = 0;
        while (i < n) {
                if (s[i] < 0x80) {
                        i++;
                        continue;
                }
                size_t k = kw_utf8_seq_len(s + i, n - i);   /* RFC 3629, buf.h */
                if (k == 0)
                        return 0;
                i += k;
        }
        return 1;
}

/* ---- gate 2: strict syntax ---- */

struct jscan {
        const uint8_t *p;
        size_t len, off;        /* invariant: off <= len */
        int depth, max_depth;
        const char *why;        /* reason of the first failure (static text) */
};

static int scan_fail(struct jscan *s, const char *why)
{
        if (s->why == NULL)
                s->why = why;
        return 0;
}

static int scan_peek(const struct jscan *s) { return s->off < s->len ? s->p[s->off] : -1; }

static void scan_ws(struct jscan *s)
{
        while (s->off < s->len) {
                uint8_t c = s->p[s->off];
                if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
                        return;
                s->off++;
        }
}

static int scan_literal(struct jscan *s, const char *lit)
{
        size_t n = strlen(lit);
        if (s->len - s->off < n || memcmp(s->p + s->off, lit, n) != 0)
                return scan_fail(s, "invalid literal");
        s->off += n;
        return 1;
}


/* Reads "XXXX" (after "\u"); -1 when not four hex digits. */
static long scan_hex4(struct jscan *s)
{
        if (s->len - s->off < 4)
                return -1;
        long v = 0;
        for (int i = 0; i < 4; i++) {
                int h = kw_hex_value(s->p[s->off + (size_t)i]);
                if (h < 0)
                        return -1;
                v = v << 4 | h;
        }
        s->off += 4;
        return v;
}

static int scan_string(struct jscan *s)
{
        s->off++; /* opening quote */
        for (;;) {
                int c = scan_peek(s);
                if (c < 0)
                        return scan_fail(s, "unterminated string");
                if (c == '"') {
                        s->off++;
                        return 1;
                }
                if (c < 0x20)
                        return scan_fail(s, "control character in string");
                if (c != '\\') {
                        s->off++;        /* UTF-8 was validated as a whole */
                        continue;
                }
                s->off++;
                c = scan_peek(s);
                if (c < 0)
                        return scan_fail(s, "unterminated string");
                s->off++;
                if (strchr("\"\\/bfnrt", c) != NULL && c != 0)
                        continue;
                if (c != 'u')
                        return scan_fail(s, "invalid escape in string");
                long cp = scan_hex4(s);
                if (cp < 0)
                        return scan_fail(s, "invalid \\u escape");
                if (cp == 0)
                        return scan_fail(s, "NUL character in string");
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                        return scan_fail(s, "unpaired surrogate in string");
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                        if (s->len - s->off < 2 || s->p[s->off] != '\\' || s->p[s->off + 1] != 'u')
                                return scan_fail(s, "unpaired surrogate in string");
                        s->off += 2;
                        long lo = scan_hex4(s);
                        if (lo < 0xDC00 || lo > 0xDFFF)
                                return scan_fail(s, "unpaired surrogate in string");
                }
        }
}

static int is_digit(int c) { return c >= '0' && c <= '9'; }

static int scan_number(struct jscan *s)
{
        if (scan_peek(s) == '-')
                s->off++;
        int c = scan_peek(s);
        if (c == '0') {
                s->off++;
                if (is_digit(scan_peek(s)))
                        return scan_fail(s, "leading zero in number");
        } else if (c >= '1' && c <= '9') {
                while (is_digit(scan_peek(s)))
                        s->off++;
        } else {
                return scan_fail(s, "invalid number");
        }
        if (scan_peek(s) == '.') {
                s->off++;
                if (!is_digit(scan_peek(s)))
                        return scan_fail(s, "invalid number fraction");
                while (is_digit(scan_peek(s)))
                        s->off++;
        }
        c = scan_peek(s);
        if (c == 'e' || c == 'E') {
                s->off++;
                c = scan_peek(s);
                if (c == '+' || c == '-')
                        s->off++;
                if (!is_digit(scan_peek(s)))
                        return scan_fail(s, "invalid number exponent");
                while (is_digit(scan_peek(s)))
                        s->off++;
        }
        return 1;
}

static int scan_value(struct jscan *s);

static int scan_container(struct jscan *s, int close, int is_object)
{
        if (++s->depth > s->max_depth)
                return scan_fail(s, "nesting too deep");
        s->off++; /* opening bracket */
        scan_ws(s);
        if (scan_peek(s) == close) {
                s->off++;
                s->depth--;
                return 1;
        }
        for (;;) {
                if (is_object) {
                        if (scan_peek(s) != '"')
                                return scan_fail(s, "expected a member name");
                        if (!scan_string(s))
                                return 0;
                        scan_ws(s);
                        if (scan_peek(s) != ':')
                                return scan_fail(s, "expected ':'");
                        s->off++;
                        scan_ws(s);
                }
                if (!scan_value(s))
                        return 0;
                scan_ws(s);
                int c = scan_peek(s);
                if (c == close) {
                        s->off++;
                        s->depth--;
                        return 1;
                }
                if (c != ',')
                        return scan_fail(s, is_object ? "expected ',' or '}'" : "expected ',' or ']'");
                s->off++;
                scan_ws(s);
        }
}

static int scan_value(struct jscan *s)
{
        int c = scan_peek(s);
        switch (c) {
        case '{':
                return scan_container(s, '}', 1);
        case '[':
                return scan_container(s, ']', 0);
        case '"':
                return scan_string(s);
        case 't':
                return scan_literal(s, "true");
        case 'f':
                return scan_literal(s, "false");
        case 'n':
                return scan_literal(s, "null");
        default:
                if (c == '-' || is_digit(c))
                        return scan_number(s);
                return scan_fail(s, c < 0 ? "empty document" : "unexpected character");
        }
}

/* ---- gate 4: the tree ---- */

static int cmp_names(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* 1 when an object has two members of the same (decoded) name. */
static KW_MUST_USE kw_result object_dup_check(const cJSON *obj, int *ret_dup)
{
        size_t n = 0;
        for (const cJSON *c = obj->child; c != NULL; c = c->next)
                n++;
        *ret_dup = 0;
        if (n <= DUP_PAIRWISE_MAX) {
                for (const cJSON *a = obj->child; a != NULL; a = a->next)
                        for (const cJSON *b = a->next; b != NULL; b = b->next)
                                if (strcmp(a->string, b->string) == 0)
                                        *ret_dup = 1;
                return KW_OK;
        }
        const char **names = calloc(n, sizeof *names);
        KW_ENSURE(names != NULL, KW_ERR_NOMEM);
        size_t i = 0;
        for (const cJSON *c = obj->child; c != NULL; c = c->next)
                names[i++] = c->string;
        qsort(names, n, sizeof *names, cmp_names);
        for (i = 1; i < n; i++)
                if (strcmp(names[i - 1], names[i]) == 0)
                        *ret_dup = 1;
        free(names);
        return KW_OK;
}

/* Depth is bounded by gate 2, so the recursion is too. */
static KW_MUST_USE kw_result tree_check(const cJSON *v)
{
        if (cJSON_IsNumber(v)) {
                if (!isfinite(v->valuedouble)) {
                        kw_err_set_detail("number out of range");
                        KW_BAIL(KW_ERR_BAD_JSON);
                }
                return KW_OK;
        }
        if (cJSON_IsObject(v)) {
                int dup;
                KW_TRY(object_dup_check(v, &dup));
                if (dup) {
                        kw_err_set_detail("duplicate member name");
                        KW_BAIL(KW_ERR_BAD_JSON);
                }
        }
        if (cJSON_IsObject(v) || cJSON_IsArray(v))
                for (const cJSON *c = v->child; c != NULL; c = c->next)
                        KW_TRY(tree_check(c));
        return KW_OK;
}

kw_result kw_json_parse(const uint8_t *body, size_t len, int max_depth, cJSON **ret)
{
        if (max_depth <= 0)
                max_depth = KW_JSON_MAX_DEPTH;
        if (max_depth > JSON_DEPTH_CEILING)
                max_depth = JSON_DEPTH_CEILING;
        KW_ENSURE(body != NULL || len == 0, KW_ERR_INTERNAL);
        KW_ENSURE(len < SIZE_MAX, KW_ERR_TOO_LARGE);

        if (!kw_utf8_valid(body, len)) {
                kw_err_set_detail("request body is not valid UTF-8");
                KW_BAIL(KW_ERR_BAD_ENCODING);
        }

        struct jscan s = { .p = body, .len = len, .max_depth = max_depth };
        scan_ws(&s);
        int ok = scan_value(&s);
        if (ok) {
                scan_ws(&s);
                if (s.off != s.len)
                        ok = scan_fail(&s, "data after the JSON value");
        }
        if (!ok) {
                kw_err_set_detail("malformed JSON at byte %zu: %s", s.off, s.why);
                KW_BAIL(KW_ERR_BAD_JSON);
        }

        /* cJSON wants the NUL inside the length; the copy is wiped on free. */
        struct kw_buf copy;
        kw_buf_init(&copy, len);
        const char *text = NULL;
        kw_result r = kw_buf_put(&copy, body, len);
        if (r.code == 0)
                r = kw_buf_cstr(&copy, &text);
        if (r.code != 0) {
                kw_buf_free(&copy);
                return r;
        }
        const char *end = NULL;
        cJSON *root = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);
        kw_buf_free(&copy);
        if (root == NULL) {
                /* gate 2 accepted it: cJSON failing now means allocation failed */
                kw_err_set_detail("JSON parser out of memory");
                KW_BAIL(KW_ERR_NOMEM);
        }
        r = tree_check(root);
        if (r.code == 0 && !cJSON_IsObject(root)) {
                kw_err_set_detail("the JSON body is not an object");
                kw_trace(KW_ERR_BAD_JSON, __FILE__, __LINE__);
                r = KW_RESULT(KW_ERR_BAD_JSON);
        }
        if (r.code != 0) {
                cJSON_Delete(root);
                return r;
        }
        *ret = root;
        return KW_OK;
}

/* ---- getters ---- */

/* Looks name up (case-sensitively).  *ret_item NULL when absent. */
static KW_MUST_USE kw_result member(const cJSON *obj, const char *name, int required,
                                    const cJSON **ret_item)
{
        if (!cJSON_IsObject(obj)) {
                kw_err_set_detail("field '%s': the container is not an object", name);
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
        if (it == NULL && required) {
                kw_err_set_detail("field '%s' is required", name);
                KW_BAIL(KW_ERR_MISSING_FIELD);
        }
        *ret_item = it;
        return KW_OK;
}

static kw_result bad_field(const char *name, const char *why)
{
        kw_err_set_detail("field '%s' %s", name, why);
        kw_trace(KW_ERR_BAD_FIELD, __FILE__, __LINE__);
        return KW_RESULT(KW_ERR_BAD_FIELD);
}

kw_result kw_json_get_str(const cJSON *obj, const char *name, int required, int allow_empty,
                          size_t maxlen, const char **ret)
{
        const cJSON *it;
        KW_TRY(member(obj, name, required, &it));
        if (it == NULL)
                return KW_OK;
        if (!cJSON_IsString(it) || it->valuestring == NULL)
                return bad_field(name, "must be a string");
        size_t n = strlen(it->valuestring);
        if (n == 0 && !allow_empty)
                return bad_field(name, "must not be empty");
        if (n > maxlen)
                return bad_field(name, "is too long");
        *ret = it->valuestring;
        return KW_OK;
}

kw_result kw_json_get_int(const cJSON *obj, const char *name, int required, int64_t min,
                          int64_t max, int64_t *ret)
{
        const cJSON *it;
        KW_TRY(member(obj, name, required, &it));
        if (it == NULL)
                return KW_OK;
        if (!cJSON_IsNumber(it))
                return bad_field(name, "must be an integer");
        double d = it->valuedouble;
        if (!isfinite(d))
                return bad_field(name, "must be an integer");
        if (d > JSON_INT_EXACT_MAX || d < -JSON_INT_EXACT_MAX)
                return bad_field(name, "is out of range");
        int64_t v = (int64_t)d;        /* in range: the conversion is defined */
        if ((double)v != d)
                return bad_field(name, "must be an integer");
        if (v < min || v > max)
                return bad_field(name, "is out of range");
        *ret = v;
        return KW_OK;
}

kw_result kw_json_get_bool(const cJSON *obj, const char *name, int required, int *ret)
{
        const cJSON *it;
        KW_TRY(member(obj, name, required, &it));
        if (it == NULL)
                return KW_OK;
        if (!cJSON_IsBool(it))
                return bad_field(name, "must be true or false");
        *ret = cJSON_IsTrue(it) ? 1 : 0;
        return KW_OK;
}

kw_result kw_json_get_obj(const cJSON *obj, const char *name, int required, const cJSON **ret)
{
        const cJSON *it;
        KW_TRY(member(obj, name, required, &it));
        if (it == NULL)
                return KW_OK;
        if (!cJSON_IsObject(it))
                return bad_field(name, "must be an object");
        *ret = it;
        return KW_OK;
}

kw_result kw_json_get_strarray(const cJSON *obj, const char *name, int required, size_t max_items,
                               size_t maxlen, const cJSON **ret)
{
        const cJSON *it;
        KW_TRY(member(obj, name, required, &it));
        if (it == NULL)
                return KW_OK;
        if (!cJSON_IsArray(it))
                return bad_field(name, "must be an array of strings");
        size_t n = 0;
        for (const cJSON *c = it->child; c != NULL; c = c->next) {
                if (++n > max_items)
                        return bad_field(name, "has too many items");
                if (!cJSON_IsString(c) || c->valuestring == NULL)
                        return bad_field(name, "must be an array of strings");
                size_t l = strlen(c->valuestring);
                if (l == 0)
                        return bad_field(name, "must not contain empty strings");
                if (l > maxlen)
                        return bad_field(name, "has an item that is too long");
        }
        *ret = it;
        return KW_OK;
}

kw_result kw_json_write(const cJSON *v, struct kw_buf *out)
{
        KW_ENSURE(v != NULL, KW_ERR_INTERNAL);
        char *s = cJSON_PrintUnformatted(v);
        KW_ENSURE(s != NULL, KW_ERR_NOMEM);
        size_t n = strlen(s);
        kw_result r = kw_buf_put(out, s, n);
        kw_wipe(s, n);          /* bodies may carry key material */
        cJSON_free(s);
        return r;
}
