/*
 * dbio_parse.c - the key store export document's strict parser,
 * kw_dbio_parse (contract and format in dbio.h): unknown members, a
 * missing or mistyped field, a value outside its alphabet or range, a
 * duplicate id or name and counts that disagree are refused.  Moved out of
 * dbio.c, which builds, checksums and writes the document.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "../common/b64.h"
#include "../common/json_io.h"
#include "../common/names.h"
#include "crypto.h"
#include "dbio.h"
#include "dbio_int.h"
#include "rules.h"

#define TIME_MAX ((int64_t)1 << 53)   /* exact in a JSON number */

/* --------------------------------------------------------------- parse */

/* The detail of a failure, prefixed with where it happened. */
static kw_result at(kw_result r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static kw_result at(kw_result r, const char *fmt, ...)
{
        if (kw_ok(r))
                return r;
        char where[128], what[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(where, sizeof where, fmt, ap);
        va_end(ap);
        snprintf(what, sizeof what, "%s", kw_err_detail());
        /* json_io.h says "field 'x' why": made "where.x: why" */
        const char *q = strncmp(what, "field '", 7) == 0 ? strstr(what + 7, "' ") : NULL;
        if (q != NULL)
                kw_err_set_detail("%s.%.*s: %s", where, (int)(q - what - 7), what + 7, q + 2);
        else
                kw_err_set_detail("%s%s%s", where, what[0] ? "." : "", what);
        return r;
}

static kw_result bad(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static kw_result bad(int code, const char *fmt, ...)
{
        char what[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        kw_err_set_detail("%s", what);
        return KW_RESULT(code);
}

/* Every member of o is one of names (NULL-terminated). */
static kw_result only(const cJSON *o, const char *const *names)
{
        const cJSON *it;
        cJSON_ArrayForEach(it, o)
        {
                int ok = 0;
                for (const char *const *n = names; *n != NULL && !ok; n++)
                        ok = strcmp(*n, it->string) == 0;
                if (!ok)
                        return bad(KW_ERR_BAD_FIELD, "%s: unknown field", it->string);
        }
        return KW_OK;
}

static kw_result get_array(const cJSON *o, const char *name, size_t max, const cJSON **ret)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
        if (v == NULL)
                return bad(KW_ERR_MISSING_FIELD, "%s: missing", name);
        if (!cJSON_IsArray(v))
                return bad(KW_ERR_BAD_FIELD, "%s: must be an array", name);
        if ((size_t)cJSON_GetArraySize(v) > max)
                return bad(KW_ERR_TOO_LARGE, "%s: more than %zu entries", name, max);
        *ret = v;
        return KW_OK;
}

static kw_result get_obj(const cJSON *o, const char *name, const cJSON **ret)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
        if (v == NULL)
                return bad(KW_ERR_MISSING_FIELD, "%s: missing", name);
        if (!cJSON_IsObject(v))
                return bad(KW_ERR_BAD_FIELD, "%s: must be an object", name);
        *ret = v;
        return KW_OK;
}

/* A string member copied into out (cap bytes with its NUL), 1..cap-1 long
 * (0.. when allow_empty), checked by valid (may be NULL). */
static kw_result get_text(const cJSON *o, const char *name, char *out, size_t cap, int allow_empty,
                          int (*valid)(const char *))
{
        const char *s = NULL;
        KW_TRY(kw_json_get_str(o, name, 1, allow_empty, cap - 1, &s));
        if (valid != NULL && !valid(s))
                return bad(KW_ERR_BAD_FIELD, "%s: not a valid value", name);
        memcpy(out, s, strlen(s) + 1);
        return KW_OK;
}

static kw_result get_time(const cJSON *o, const char *name, int64_t *ret)
{
        return kw_json_get_int(o, name, 1, 0, TIME_MAX, ret);
}

static kw_result get_b64(const cJSON *o, const char *name, size_t max, struct kw_buf *out)
{
        const char *s = NULL;
        KW_TRY(kw_json_get_str(o, name, 1, 0, (max + 2) / 3 * 4, &s));
        kw_buf_init(out, max);
        kw_result r = kw_b64_decode(s, strlen(s), out);
        if (!kw_ok(r)) {
                kw_buf_free(out);
                return bad(r.code == KW_ERR_TOO_LARGE ? KW_ERR_TOO_LARGE : KW_ERR_BAD_ENCODING,
                           "%s: not base64 of at most %zu bytes", name, max);
        }
        if (out->len == 0) {
                kw_buf_free(out);
                return bad(KW_ERR_BAD_FIELD, "%s: empty", name);
        }
        return KW_OK;
}

static int hex_lower(const char *s, size_t n)
{
        if (strlen(s) != n)
                return 0;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return 0;
        return 1;
}

static int valid_key_id(const char *s) { return hex_lower(s, 32); }
static int valid_type(const char *s) { return strcmp(s, "AES") == 0 || strcmp(s, "RSA") == 0; }
static int valid_state(const char *s)
{
        return strcmp(s, "enabled") == 0 || strcmp(s, "disabled") == 0 ||
               strcmp(s, "pending_deletion") == 0 || strcmp(s, "destroyed") == 0;
}
static int valid_role(const char *s)
{
        return strcmp(s, "admin") == 0 || strcmp(s, "operator") == 0 || strcmp(s, "auditor") == 0;
}
static int valid_token_id(const char *s) { return kw_name_valid(s) && strlen(s) <= 32; }
static int valid_engine(const char *s)
{
        return strcmp(s, "sqlcipher") == 0 || strcmp(s, "postgresql") == 0;
}
static int valid_printable(const char *s) { return kw_utf8_printable(s); }
static int valid_user_hash(const char *s)
{
        if (strncmp(s, "$argon2id$", 10) != 0)
                return 0;
        for (const char *p = s; *p; p++)
                if (*p <= ' ' || *p > '~')
                        return 0;
        return 1;
}
static int valid_store_name(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 32)
                return 0;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
                      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
                        return 0;
        return 1;
}
static int valid_prefix(const char *s)
{
        if (s[0] == '\0')
                return 1;
        if (s[0] != '/')
                return 0;
        for (const char *p = s; *p; p++)
                if (*p <= ' ' || *p > '~' || *p == '?' || *p == '#')
                        return 0;
        return 1;
}
static int valid_akid(const char *s)
{
        size_t n = strlen(s);
        if (n < 20 || n > 30)
                return 0;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '2' && s[i] <= '7')))
                        return 0;
        return 1;
}

static kw_result parse_ops(const cJSON *o, const char *type, uint32_t *ret)
{
        const cJSON *a;
        KW_TRY(get_array(o, "operations", 4, &a));
        uint32_t ops = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, a)
        {
                int bit = -1;
                for (int i = 0; i < 4 && cJSON_IsString(it); i++)
                        if (strcmp(it->valuestring, kw_dbio_op_names[i]) == 0)
                                bit = i;
                if (bit < 0 || (ops & (1u << bit)))
                        return bad(KW_ERR_BAD_FIELD, "operations: unknown or repeated operation");
                ops |= 1u << bit;
        }
        if (ops == 0)
                return bad(KW_ERR_BAD_FIELD, "operations: empty");
        if (strcmp(type, "RSA") == 0 && (ops & 3u))
                return bad(KW_ERR_BAD_FIELD, "operations: RSA keys allow only wrap and unwrap");
        *ret = ops;
        return KW_OK;
}

/* tags or rules: an object, printed compactly into *ret (heap). */
static kw_result parse_json_member(const cJSON *o, const char *name, int is_tags, char **ret)
{
        const cJSON *v;
        KW_TRY(get_obj(o, name, &v));
        if (is_tags) {
                const cJSON *it;
                if (cJSON_GetArraySize(v) > 64)
                        return bad(KW_ERR_BAD_FIELD, "tags: more than 64 tags");
                cJSON_ArrayForEach(it, v)
                {
                        if (!cJSON_IsString(it) || strlen(it->string) == 0 ||
                            strlen(it->string) > 128 || strlen(it->valuestring) > 256)
                                return bad(KW_ERR_BAD_FIELD,
                                           "tags: string values only (names 1..128, values "
                                           "0..256 bytes)");
                }
        }
        char *s = cJSON_PrintUnformatted(v);
        KW_ENSURE(s != NULL, KW_ERR_NOMEM);
        size_t n = strlen(s);
        kw_result r = KW_OK;
        if (n > KW_DBIO_JSON_MAX)
                r = bad(KW_ERR_TOO_LARGE, "%s: longer than %u bytes", name, KW_DBIO_JSON_MAX);
        if (kw_ok(r) && !is_tags && strcmp(s, "{}") != 0) {
                struct kw_rules *rules = NULL;
                r = kw_rules_parse(s, n, &rules);
                kw_rules_free(rules);
                if (!kw_ok(r))
                        r = at(r, "rules");
        }
        char *copy = kw_ok(r) ? strdup(s) : NULL;
        cJSON_free(s);
        KW_TRY(r);
        KW_ENSURE(copy != NULL, KW_ERR_NOMEM);
        *ret = copy;
        return KW_OK;
}

static kw_result parse_versions(const cJSON *o, struct kw_dbio_key *k)
{
        const cJSON *a;
        KW_TRY(get_array(o, "versions", KW_DBIO_MAX_VERSIONS, &a));
        if ((uint32_t)cJSON_GetArraySize(a) != k->row.current_version)
                return bad(KW_ERR_BAD_FIELD, "versions: %d entries, current_version is %u",
                           cJSON_GetArraySize(a), k->row.current_version);
        static const char *const fields[] = { "version", "created", "blob", NULL };
        size_t i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, a)
        {
                if (!cJSON_IsObject(it))
                        return bad(KW_ERR_BAD_FIELD, "versions[%zu]: must be an object", i);
                int64_t ver = 0, created = 0;
                kw_result r = only(it, fields);
                if (kw_ok(r))
                        r = kw_json_get_int(it, "version", 1, 1, KW_DBIO_MAX_VERSIONS, &ver);
                if (kw_ok(r) && (uint64_t)ver != i + 1)
                        r = bad(KW_ERR_BAD_FIELD, "version: %lld out of order (want %zu)",
                                (long long)ver, i + 1);
                if (kw_ok(r))
                        r = get_time(it, "created", &created);
                struct kw_buf blob = { 0 };
                if (kw_ok(r))
                        r = get_b64(it, "blob", KW_DBIO_BLOB_MAX, &blob);
                if (kw_ok(r)) {
                        r = kw_dbio_add_version(k, (uint32_t)ver, created, blob.p, blob.len);
                        kw_buf_free(&blob);
                }
                KW_TRY(at(r, "versions[%zu]", i));
                i++;
        }
        return KW_OK;
}

static kw_result parse_key(const cJSON *o, struct kw_dbio_doc *d)
{
        static const char *const live[] = { "id", "name", "type", "size", "state", "created",
                                            "updated", "operations", "current_version",
                                            "delete_at", "tags", "rules", "public_der",
                                            "versions", NULL };
        static const char *const tomb[] = { "id", "name", "type", "size", "state", "created",
                                            "updated", NULL };
        if (!cJSON_IsObject(o))
                return bad(KW_ERR_BAD_FIELD, "must be an object");
        struct kw_key_row row;
        memset(&row, 0, sizeof row);
        int64_t size = 0;
        KW_TRY(get_text(o, "id", row.id, sizeof row.id, 0, valid_key_id));
        KW_TRY(get_text(o, "name", row.name, sizeof row.name, 0, kw_name_valid));
        KW_TRY(get_text(o, "type", row.type, sizeof row.type, 0, valid_type));
        KW_TRY(kw_json_get_int(o, "size", 1, 1, 16384, &size));
        int aes = strcmp(row.type, "AES") == 0;
        if (aes ? size != 256 : (size != 2048 && size != 3072 && size != 4096))
                return bad(KW_ERR_BAD_FIELD, "size: not a supported %s size", row.type);
        row.size = (uint32_t)size;
        KW_TRY(get_text(o, "state", row.state, sizeof row.state, 0, valid_state));
        KW_TRY(get_time(o, "created", &row.created));
        KW_TRY(get_time(o, "updated", &row.updated));
        if (strcmp(row.state, "destroyed") == 0) {
                KW_TRY(only(o, tomb));
                return kw_dbio_add_key(d, &row, NULL);
        }
        KW_TRY(only(o, live));
        KW_TRY(parse_ops(o, row.type, &row.ops));
        int64_t cur = 0;
        KW_TRY(kw_json_get_int(o, "current_version", 1, 1, KW_DBIO_MAX_VERSIONS, &cur));
        row.current_version = (uint32_t)cur;
        KW_TRY(get_time(o, "delete_at", &row.delete_at));
        if ((strcmp(row.state, "pending_deletion") == 0) != (row.delete_at != 0))
                return bad(KW_ERR_BAD_FIELD, "delete_at: set when and only when pending_deletion");
        const cJSON *pd = cJSON_GetObjectItemCaseSensitive(o, "public_der");
        if (pd == NULL)
                return bad(KW_ERR_MISSING_FIELD, "public_der: missing");
        if (aes != cJSON_IsNull(pd))
                return bad(KW_ERR_BAD_FIELD, "public_der: null for AES keys, base64 for RSA keys");
        struct kw_dbio_key *k = NULL;
        kw_result r = parse_json_member(o, "tags", 1, &row.tags_json);
        if (kw_ok(r))
                r = parse_json_member(o, "rules", 0, &row.rules_json);
        struct kw_buf der = { 0 };
        if (kw_ok(r) && !aes) {
                r = get_b64(o, "public_der", KW_DBIO_DER_MAX, &der);
                row.public_der = der.p;
                row.public_der_len = der.len;
        }
        if (kw_ok(r))
                r = kw_dbio_add_key(d, &row, &k);
        row.public_der = NULL;
        kw_buf_free(&der);
        kw_key_row_clear(&row);
        KW_TRY(r);
        return parse_versions(o, k);
}

static kw_result parse_token(const cJSON *o, struct kw_dbio_doc *d)
{
        static const char *const fields[] = { "id", "name", "role", "sha256", "created", "revoked",
                                              NULL };
        if (!cJSON_IsObject(o))
                return bad(KW_ERR_BAD_FIELD, "must be an object");
        KW_TRY(only(o, fields));
        struct kw_token_row t;
        memset(&t, 0, sizeof t);
        char hex[65];
        KW_TRY(get_text(o, "id", t.id, sizeof t.id, 0, valid_token_id));
        KW_TRY(get_text(o, "name", t.name, sizeof t.name, 0, kw_name_valid));
        KW_TRY(get_text(o, "role", t.role, sizeof t.role, 0, valid_role));
        KW_TRY(get_text(o, "sha256", hex, sizeof hex, 0, NULL));
        if (!hex_lower(hex, 64))
                return bad(KW_ERR_BAD_ENCODING, "sha256: not 64 lower-case hex digits");
        uint8_t h[32];
        for (size_t i = 0; i < 32; i++)
                h[i] = (uint8_t)(kw_hex_value(hex[2 * i]) << 4 | kw_hex_value(hex[2 * i + 1]));
        KW_TRY(get_time(o, "created", &t.created));
        KW_TRY(get_time(o, "revoked", &t.revoked));
        return kw_dbio_add_token(d, &t, h);
}

static kw_result parse_user(const cJSON *o, struct kw_dbio_doc *d)
{
        static const char *const fields[] = { "name", "role", "hash", "created", NULL };
        if (!cJSON_IsObject(o))
                return bad(KW_ERR_BAD_FIELD, "must be an object");
        KW_TRY(only(o, fields));
        struct kw_user_row u;
        memset(&u, 0, sizeof u);
        KW_TRY(get_text(o, "name", u.name, sizeof u.name, 0, kw_name_valid));
        KW_TRY(get_text(o, "role", u.role, sizeof u.role, 0, valid_role));
        KW_TRY(get_text(o, "hash", u.hash, sizeof u.hash, 0, valid_user_hash));
        KW_TRY(get_time(o, "created", &u.created));
        return kw_dbio_add_user(d, &u);
}

static kw_result parse_cred(const cJSON *o, const char *store, struct kw_dbio_doc *d)
{
        static const char *const fields[] = { "access_key_id", "secret_sealed", "created", NULL };
        if (!cJSON_IsObject(o))
                return bad(KW_ERR_BAD_FIELD, "must be an object");
        KW_TRY(only(o, fields));
        struct kw_xks_cred_row c;
        memset(&c, 0, sizeof c);
        snprintf(c.store, sizeof c.store, "%s", store);
        KW_TRY(get_text(o, "access_key_id", c.akid, sizeof c.akid, 0, valid_akid));
        KW_TRY(get_time(o, "created", &c.created));
        struct kw_buf sec = { 0 };
        KW_TRY(get_b64(o, "secret_sealed", sizeof c.secret, &sec));
        memcpy(c.secret, sec.p, sec.len);
        c.secret_len = sec.len;
        c.is_sealed = 1;
        kw_buf_free(&sec);
        kw_result r = kw_dbio_add_xks_cred(d, &c);
        kw_wipe(&c, sizeof c);
        return r;
}

static kw_result parse_store(const cJSON *o, struct kw_dbio_doc *d)
{
        static const char *const fields[] = { "name", "uri_prefix", "region", "created",
                                              "credentials", NULL };
        if (!cJSON_IsObject(o))
                return bad(KW_ERR_BAD_FIELD, "must be an object");
        KW_TRY(only(o, fields));
        struct kw_xks_store_row s;
        memset(&s, 0, sizeof s);
        KW_TRY(get_text(o, "name", s.name, sizeof s.name, 0, valid_store_name));
        KW_TRY(get_text(o, "uri_prefix", s.uri_prefix, sizeof s.uri_prefix, 1, valid_prefix));
        KW_TRY(get_text(o, "region", s.region, sizeof s.region, 0, kw_name_valid));
        KW_TRY(get_time(o, "created", &s.created));
        const cJSON *a;
        KW_TRY(get_array(o, "credentials", KW_DBIO_MAX_CREDS, &a));
        if (cJSON_GetArraySize(a) == 0)
                return bad(KW_ERR_BAD_FIELD, "credentials: a store has at least one");
        KW_TRY(kw_dbio_add_xks_store(d, &s));
        size_t i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, a)
        {
                KW_TRY(at(parse_cred(it, s.name, d), "credentials[%zu]", i));
                i++;
        }
        return KW_OK;
}

/* Duplicates among n strings at stride apart from base (sorted copy). */
static int str_cmp(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static kw_result unique(const char *what, size_t n, const char *(*get)(const struct kw_dbio_doc *, size_t, size_t),
                        const struct kw_dbio_doc *d, size_t which)
{
        if (n < 2)
                return KW_OK;
        const char **a = calloc(n, sizeof *a);
        KW_ENSURE(a != NULL, KW_ERR_NOMEM);
        for (size_t i = 0; i < n; i++)
                a[i] = get(d, i, which);
        qsort(a, n, sizeof *a, str_cmp);
        kw_result r = KW_OK;
        for (size_t i = 1; i < n && kw_ok(r); i++)
                if (strcmp(a[i - 1], a[i]) == 0)
                        r = bad(KW_ERR_BAD_FIELD, "%s: '%s' appears twice", what, a[i]);
        free(a);
        return r;
}

static const char *key_field(const struct kw_dbio_doc *d, size_t i, size_t which)
{
        return which == 0 ? d->keys[i].row.id : d->keys[i].row.name;
}
static const char *token_field(const struct kw_dbio_doc *d, size_t i, size_t which)
{
        return which == 0 ? d->tokens[i].row.id : d->tokens[i].row.name;
}
static const char *user_field(const struct kw_dbio_doc *d, size_t i, size_t which)
{
        (void)which;
        return d->users[i].name;
}
static const char *store_field(const struct kw_dbio_doc *d, size_t i, size_t which)
{
        return which == 0 ? d->stores[i].row.name : d->stores[i].row.uri_prefix;
}

static int hash_cmp(const void *a, const void *b)
{
        return memcmp(*(const uint8_t *const *)a, *(const uint8_t *const *)b, 32); /* lint: allow (sorting public hashes) */
}

static kw_result check_unique(const struct kw_dbio_doc *d)
{
        KW_TRY(unique("keys: id", d->nkeys, key_field, d, 0));
        KW_TRY(unique("keys: name", d->nkeys, key_field, d, 1));
        KW_TRY(unique("tokens: id", d->ntokens, token_field, d, 0));
        KW_TRY(unique("tokens: name", d->ntokens, token_field, d, 1));
        KW_TRY(unique("users: name", d->nusers, user_field, d, 0));
        KW_TRY(unique("xks_stores: name", d->nstores, store_field, d, 0));
        KW_TRY(unique("xks_stores: uri_prefix", d->nstores, store_field, d, 1));
        size_t nc = 0;
        for (size_t i = 0; i < d->nstores; i++)
                nc += d->stores[i].ncreds;
        if (nc > 1) {
                const char **a = calloc(nc, sizeof *a);
                KW_ENSURE(a != NULL, KW_ERR_NOMEM);
                size_t k = 0;
                for (size_t i = 0; i < d->nstores; i++)
                        for (size_t j = 0; j < d->stores[i].ncreds; j++)
                                a[k++] = d->stores[i].creds[j].akid;
                qsort(a, nc, sizeof *a, str_cmp);
                kw_result r = KW_OK;
                for (size_t i = 1; i < nc && kw_ok(r); i++)
                        if (strcmp(a[i - 1], a[i]) == 0)
                                r = bad(KW_ERR_BAD_FIELD, "xks_stores: access_key_id '%s' appears twice",
                                        a[i]);
                free(a);
                KW_TRY(r);
        }
        if (d->ntokens > 1) {
                const uint8_t **h = calloc(d->ntokens, sizeof *h);
                KW_ENSURE(h != NULL, KW_ERR_NOMEM);
                for (size_t i = 0; i < d->ntokens; i++)
                        h[i] = d->tokens[i].hash;
                qsort(h, d->ntokens, sizeof *h, hash_cmp);
                kw_result r = KW_OK;
                for (size_t i = 1; i < d->ntokens && kw_ok(r); i++)
                        if (hash_cmp(&h[i - 1], &h[i]) == 0)
                                r = bad(KW_ERR_BAD_FIELD, "tokens: sha256: a hash appears twice");
                free(h);
                KW_TRY(r);
        }
        return KW_OK;
}

static kw_result parse_counts(const cJSON *doc, const struct kw_dbio_doc *d)
{
        static const char *const fields[] = { "keys", "destroyed", "versions", "tokens", "users",
                                              "xks_stores", "xks_credentials", NULL };
        const cJSON *co;
        KW_TRY(get_obj(doc, "counts", &co));
        KW_TRY(at(only(co, fields), "counts"));
        struct kw_dbio_counts c;
        kw_dbio_counts(d, &c);
        const uint64_t have[] = { c.keys, c.destroyed, c.versions, c.tokens, c.users,
                                  c.xks_stores, c.xks_credentials };
        for (size_t i = 0; fields[i] != NULL; i++) {
                int64_t v = 0;
                KW_TRY(at(kw_json_get_int(co, fields[i], 1, 0, TIME_MAX, &v), "counts"));
                if ((uint64_t)v != have[i])
                        return bad(KW_ERR_BAD_FIELD, "counts.%s: says %lld, the file holds %llu",
                                   fields[i], (long long)v, (unsigned long long)have[i]);
        }
        return KW_OK;
}

typedef kw_result (*row_parser)(const cJSON *o, struct kw_dbio_doc *d);

static kw_result parse_list(const cJSON *doc, const char *name, size_t max, row_parser fn,
                            struct kw_dbio_doc *d)
{
        const cJSON *a;
        KW_TRY(get_array(doc, name, max, &a));
        size_t i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, a)
        {
                KW_TRY(at(fn(it, d), "%s[%zu]", name, i));
                i++;
        }
        return KW_OK;
}

static kw_result parse_doc(const cJSON *doc, struct kw_dbio_doc *d)
{
        static const char *const fields[] = { "format", "version", "notice", "engine",
                                              "master_key_label", "created", "counts", "checksum",
                                              "keys", "tokens", "users", "xks_stores", NULL };
        char format[32], sum_hex[65], notice[1025];
        KW_TRY(get_text(doc, "format", format, sizeof format, 0, NULL));
        if (strcmp(format, KW_DBIO_FORMAT) != 0)
                return bad(KW_ERR_BAD_FIELD, "format: not a Keyward key store export");
        int64_t version = 0;
        KW_TRY(kw_json_get_int(doc, "version", 1, 0, 1000000, &version));
        if (version != KW_DBIO_VERSION)
                return bad(KW_ERR_BAD_FIELD, "version: %lld is not %d (made by another keywardd?)",
                           (long long)version, KW_DBIO_VERSION);
        KW_TRY(only(doc, fields));
        KW_TRY(get_text(doc, "notice", notice, sizeof notice, 1, valid_printable));
        KW_TRY(get_text(doc, "engine", d->engine, sizeof d->engine, 0, valid_engine));
        KW_TRY(get_text(doc, "master_key_label", d->master_key_label, sizeof d->master_key_label, 0,
                        valid_printable));
        KW_TRY(get_text(doc, "created", d->created, sizeof d->created, 0, valid_printable));
        KW_TRY(parse_list(doc, "keys", KW_DBIO_MAX_KEYS, parse_key, d));
        KW_TRY(parse_list(doc, "tokens", KW_DBIO_MAX_ROWS, parse_token, d));
        KW_TRY(parse_list(doc, "users", KW_DBIO_MAX_ROWS, parse_user, d));
        KW_TRY(parse_list(doc, "xks_stores", KW_DBIO_MAX_ROWS, parse_store, d));
        KW_TRY(check_unique(d));
        KW_TRY(parse_counts(doc, d));
        KW_TRY(get_text(doc, "checksum", sum_hex, sizeof sum_hex, 0, NULL));
        if (!hex_lower(sum_hex, 64))
                return bad(KW_ERR_BAD_ENCODING, "checksum: not 64 lower-case hex digits");
        uint8_t sum[32], want[32];
        for (size_t i = 0; i < 32; i++)
                want[i] = (uint8_t)(kw_hex_value(sum_hex[2 * i]) << 4 |
                                    kw_hex_value(sum_hex[2 * i + 1]));
        KW_TRY(kw_dbio_checksum(d, sum));
        if (!kw_ct_equal(sum, want, 32))
                return bad(KW_ERR_BAD_FIELD, "checksum: does not match the keys in the file (the "
                                             "file was changed or damaged)");
        return KW_OK;
}

kw_result kw_dbio_parse(const uint8_t *p, size_t n, struct kw_dbio_doc *ret)
{
        KW_ENSURE(p != NULL && ret != NULL, KW_ERR_INPUT);
        if (n > KW_DBIO_MAX_BYTES)
                return bad(KW_ERR_TOO_LARGE, "the file is larger than %u bytes", KW_DBIO_MAX_BYTES);
        cJSON *doc = NULL;
        KW_TRY(kw_json_parse(p, n, KW_JSON_MAX_DEPTH, &doc));
        struct kw_dbio_doc d;
        kw_dbio_doc_init(&d);
        kw_result r = parse_doc(doc, &d);
        cJSON_Delete(doc);
        if (!kw_ok(r)) {
                kw_dbio_doc_free(&d);
                return r;
        }
        *ret = d;
        return KW_OK;
}
