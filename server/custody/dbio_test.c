/* dbio_test.c - the key store export document: build -> parse, the
 * checksum's coverage, and every malformed input refused with its field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <cmocka.h>

#include "common/b64.h"
#include "custody/dbio.h"

static const char *const ARGON = "$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

static void fill_key(struct kw_key_row *row, const char *id, const char *name, const char *type,
                     uint32_t size, const char *state, uint32_t cur)
{
        memset(row, 0, sizeof *row);
        snprintf(row->id, sizeof row->id, "%s", id);
        snprintf(row->name, sizeof row->name, "%s", name);
        snprintf(row->type, sizeof row->type, "%s", type);
        snprintf(row->state, sizeof row->state, "%s", state);
        row->size = size;
        row->ops = strcmp(type, "AES") == 0 ? 15u : 12u;
        row->current_version = cur;
        row->created = 1700000000;
        row->updated = 1700000100;
}

/* AES key of 2 versions with tags and rules, RSA key, a pending deletion,
 * a tombstone, two tokens, a user, an XKS store with two credentials. */
static void sample(struct kw_dbio_doc *d)
{
        kw_dbio_doc_init(d);
        snprintf(d->engine, sizeof d->engine, "sqlcipher");
        snprintf(d->master_key_label, sizeof d->master_key_label, "keyward-master");
        snprintf(d->created, sizeof d->created, "2026-12-03T12:00:00Z");
        struct kw_key_row row;
        struct kw_dbio_key *k;
        uint8_t blob[80];
        memset(blob, 0xab, sizeof blob);

        fill_key(&row, "0123456789abcdef0123456789abcdef", "aes-1", "AES", 256, "enabled", 2);
        row.tags_json = "{\"team\":\"pay\",\"env\":\"prod\"}";
        row.rules_json = "{\"xks\":{\"key_stores\":[\"default\"]}}";
        assert_int_equal(kw_dbio_add_key(d, &row, &k).code, 0);
        blob[0] = 1;
        assert_int_equal(kw_dbio_add_version(k, 1, 1700000000, blob, sizeof blob).code, 0);
        blob[0] = 2;
        assert_int_equal(kw_dbio_add_version(k, 2, 1700000050, blob, sizeof blob).code, 0);

        uint8_t der[40];
        memset(der, 0x30, sizeof der);
        fill_key(&row, "11111111111111111111111111111111", "rsa-1", "RSA", 2048, "disabled", 1);
        row.public_der = der;
        row.public_der_len = sizeof der;
        assert_int_equal(kw_dbio_add_key(d, &row, &k).code, 0);
        blob[0] = 3;
        assert_int_equal(kw_dbio_add_version(k, 1, 1700000000, blob, sizeof blob).code, 0);

        fill_key(&row, "22222222222222222222222222222222", "pend", "AES", 256, "pending_deletion", 1);
        row.delete_at = 1800000000;
        assert_int_equal(kw_dbio_add_key(d, &row, &k).code, 0);
        blob[0] = 4;
        assert_int_equal(kw_dbio_add_version(k, 1, 1700000000, blob, sizeof blob).code, 0);

        fill_key(&row, "33333333333333333333333333333333", "gone", "AES", 256, "destroyed", 1);
        assert_int_equal(kw_dbio_add_key(d, &row, NULL).code, 0);

        struct kw_token_row t = { .id = "a1b2c3d4e5f60708", .name = "initial-admin",
                                  .role = "admin", .created = 1700000000 };
        uint8_t h[32];
        memset(h, 7, sizeof h);
        assert_int_equal(kw_dbio_add_token(d, &t, h).code, 0);
        struct kw_token_row t2 = { .id = "ffeeddccbbaa9988", .name = "old", .role = "auditor",
                                   .created = 1700000000, .revoked = 1700000500 };
        h[0] = 8;
        assert_int_equal(kw_dbio_add_token(d, &t2, h).code, 0);

        struct kw_user_row u;
        memset(&u, 0, sizeof u);
        snprintf(u.name, sizeof u.name, "alice");
        snprintf(u.role, sizeof u.role, "admin");
        snprintf(u.hash, sizeof u.hash, "%s", ARGON);
        u.created = 1700000000;
        assert_int_equal(kw_dbio_add_user(d, &u).code, 0);

        struct kw_xks_store_row s = { .name = "c", .uri_prefix = "/c/d", .region = "us-west-2",
                                      .created = 1700000000 };
        assert_int_equal(kw_dbio_add_xks_store(d, &s).code, 0);
        struct kw_xks_cred_row c;
        memset(&c, 0, sizeof c);
        snprintf(c.store, sizeof c.store, "c");
        snprintf(c.akid, sizeof c.akid, "AKIAKEYWARDTESTAAAAA");
        memset(c.secret, 0x5a, 90);
        c.secret_len = 90;
        c.is_sealed = 1;
        c.created = 1700000000;
        assert_int_equal(kw_dbio_add_xks_cred(d, &c).code, 0);
        snprintf(c.akid, sizeof c.akid, "AKIAKEYWARDTESTBBBBB");
        c.secret[0] = 1;
        assert_int_equal(kw_dbio_add_xks_cred(d, &c).code, 0);
}

static void sum_of(const struct kw_dbio_doc *d, uint8_t out[32])
{
        assert_int_equal(kw_dbio_checksum(d, out).code, 0);
}

static void dbio_write_parse_round_trip(void **state)
{
        (void)state;
        struct kw_dbio_doc d, back;
        sample(&d);
        struct kw_buf out;
        kw_buf_init(&out, 1u << 20);
        assert_int_equal(kw_dbio_write(&d, &out).code, 0);
        kw_dbio_doc_init(&back);
        kw_result r = kw_dbio_parse(out.p, out.len, &back);
        assert_int_equal(r.code, 0);
        uint8_t a[32], b[32];
        sum_of(&d, a);
        sum_of(&back, b);
        assert_memory_equal(a, b, 32);
        struct kw_dbio_counts x, y;
        kw_dbio_counts(&d, &x);
        kw_dbio_counts(&back, &y);
        assert_memory_equal(&x, &y, sizeof x);
        assert_int_equal(y.keys, 4);
        assert_int_equal(y.destroyed, 1);
        assert_int_equal(y.versions, 4);
        assert_string_equal(back.keys[0].row.name, "aes-1");
        assert_int_equal(back.keys[0].row.created, 1700000000);
        assert_int_equal(back.keys[2].row.delete_at, 1800000000);
        assert_int_equal(back.keys[1].row.public_der_len, 40);
        assert_int_equal(back.tokens[1].row.revoked, 1700000500);
        assert_memory_equal(back.tokens[1].hash, d.tokens[1].hash, 32);
        assert_string_equal(back.users[0].hash, ARGON);
        assert_int_equal(back.stores[0].ncreds, 2);
        assert_memory_equal(back.stores[0].creds[1].secret, d.stores[0].creds[1].secret, 90);
        assert_string_equal(back.engine, "sqlcipher");
        /* and written again, the same bytes */
        struct kw_buf again;
        kw_buf_init(&again, 1u << 20);
        assert_int_equal(kw_dbio_write(&back, &again).code, 0);
        assert_int_equal(again.len, out.len);
        assert_memory_equal(again.p, out.p, out.len);
        kw_buf_free(&again);
        kw_buf_free(&out);
        kw_dbio_doc_free(&back);
        kw_dbio_doc_free(&d);
}

/* A mutation of the sample: returns 1 when the checksum must change. */
typedef int (*mutate_fn)(struct kw_dbio_doc *d);

static int m_id(struct kw_dbio_doc *d) { d->keys[0].row.id[0] = 'f'; return 1; }
static int m_name(struct kw_dbio_doc *d) { d->keys[0].row.name[0] = 'b'; return 1; }
static int m_type(struct kw_dbio_doc *d) { snprintf(d->keys[1].row.type, 4, "AES"); return 1; }
static int m_size(struct kw_dbio_doc *d) { d->keys[1].row.size = 4096; return 1; }
static int m_state(struct kw_dbio_doc *d) { snprintf(d->keys[1].row.state, 20, "enabled"); return 1; }
static int m_ops(struct kw_dbio_doc *d) { d->keys[0].row.ops = 3; return 1; }
static int m_cur(struct kw_dbio_doc *d) { d->keys[0].row.current_version = 3; return 1; }
static int m_tags(struct kw_dbio_doc *d)
{
        free(d->keys[0].row.tags_json);
        d->keys[0].row.tags_json = strdup("{\"team\":\"pay\",\"env\":\"dev\"}");
        return 1;
}
static int m_rules(struct kw_dbio_doc *d)
{
        free(d->keys[0].row.rules_json);
        d->keys[0].row.rules_json = strdup("{}");
        return 1;
}
static int m_der(struct kw_dbio_doc *d) { d->keys[1].row.public_der[5] ^= 1; return 1; }
static int m_blob(struct kw_dbio_doc *d) { d->keys[0].versions[1].blob[40] ^= 1; return 1; }
static int m_version_gone(struct kw_dbio_doc *d)
{
        d->keys[0].nversions = 1;   /* the blob leaks until free: freed below */
        free(d->keys[0].versions[1].blob);
        d->keys[0].versions[1].blob = NULL;
        return 1;
}
static int m_tomb_state(struct kw_dbio_doc *d) { snprintf(d->keys[3].row.name, 65, "gone2"); return 1; }
/* outside the checksum: times, token/user/xks rows, member order of tags */
static int m_times(struct kw_dbio_doc *d)
{
        d->keys[0].row.created++;
        d->keys[0].row.updated++;
        d->keys[0].versions[0].created++;
        d->keys[2].row.delete_at++;
        return 0;
}
static int m_tag_order(struct kw_dbio_doc *d)
{
        free(d->keys[0].row.tags_json);
        d->keys[0].row.tags_json = strdup("{ \"env\" : \"prod\", \"team\" : \"pay\" }");
        return 0;
}
static int m_token(struct kw_dbio_doc *d) { d->tokens[0].hash[0] ^= 1; return 0; }

static void dbio_checksum_covers_every_public_field(void **state)
{
        (void)state;
        static const mutate_fn fns[] = { m_id, m_name, m_type, m_size, m_state, m_ops, m_cur,
                                         m_tags, m_rules, m_der, m_blob, m_version_gone,
                                         m_tomb_state, m_times, m_tag_order, m_token };
        struct kw_dbio_doc base;
        sample(&base);
        uint8_t want[32];
        sum_of(&base, want);
        kw_dbio_doc_free(&base);
        for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
                struct kw_dbio_doc d;
                sample(&d);
                int must_change = fns[i](&d);
                uint8_t got[32];
                sum_of(&d, got);
                if (must_change)
                        assert_true(memcmp(got, want, 32) != 0);
                else
                        assert_memory_equal(got, want, 32);
                kw_dbio_doc_free(&d);
        }
}

static void dbio_checksum_does_not_depend_on_key_order(void **state)
{
        (void)state;
        struct kw_dbio_doc d;
        sample(&d);
        uint8_t a[32], b[32];
        sum_of(&d, a);
        struct kw_dbio_key t = d.keys[0];
        d.keys[0] = d.keys[3];
        d.keys[3] = t;
        sum_of(&d, b);
        assert_memory_equal(a, b, 32);
        kw_dbio_doc_free(&d);
}

/* ---- malformed inputs: the sample written, changed as JSON, parsed ---- */

static cJSON *key_named(cJSON *doc, const char *name)
{
        cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(doc, "keys"))
        {
                if (strcmp(cJSON_GetObjectItem(it, "name")->valuestring, name) == 0)
                        return it;
        }
        fail();
        return NULL;
}

static void set_str(cJSON *o, const char *name, const char *v)
{
        cJSON_ReplaceItemInObject(o, name, cJSON_CreateString(v));
}

static void c_format(cJSON *d) { set_str(d, "format", "something-else"); }
static void c_version(cJSON *d) { cJSON_ReplaceItemInObject(d, "version", cJSON_CreateNumber(2)); }
static void c_unknown_top(cJSON *d) { cJSON_AddNumberToObject(d, "bogus", 1); }
static void c_unknown_key(cJSON *d) { cJSON_AddNumberToObject(key_named(d, "aes-1"), "extra", 1); }
static void c_size_type(cJSON *d) { set_str(key_named(d, "aes-1"), "size", "256"); }
static void c_size_range(cJSON *d)
{
        cJSON_ReplaceItemInObject(key_named(d, "aes-1"), "size", cJSON_CreateNumber(128));
}
static void c_id(cJSON *d) { set_str(key_named(d, "aes-1"), "id", "0123456789ABCDEF0123456789abcdef"); }
static void c_name(cJSON *d) { set_str(key_named(d, "aes-1"), "name", "a/b"); }
static void c_state(cJSON *d) { set_str(key_named(d, "aes-1"), "state", "active"); }
static void c_ops(cJSON *d)
{
        cJSON *a = cJSON_CreateArray();
        cJSON_AddItemToArray(a, cJSON_CreateString("sign"));
        cJSON_ReplaceItemInObject(key_named(d, "aes-1"), "operations", a);
}
static void c_rsa_ops(cJSON *d)
{
        cJSON *a = cJSON_CreateArray();
        cJSON_AddItemToArray(a, cJSON_CreateString("encrypt"));
        cJSON_ReplaceItemInObject(key_named(d, "rsa-1"), "operations", a);
}
static void c_blob_b64(cJSON *d)
{
        cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItem(key_named(d, "aes-1"), "versions"), 0);
        set_str(v, "blob", "!!not base64!!");
}
static void c_blob_large(cJSON *d)
{
        size_t n = KW_DBIO_BLOB_MAX + 3;
        uint8_t *raw = calloc(1, n);
        struct kw_buf enc;
        kw_buf_init(&enc, 4 * n);
        const char *s;
        assert_int_equal(kw_b64_encode(raw, n, &enc).code, 0);
        assert_int_equal(kw_buf_cstr(&enc, &s).code, 0);
        cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItem(key_named(d, "aes-1"), "versions"), 0);
        set_str(v, "blob", s);
        kw_buf_free(&enc);
        free(raw);
}
static void c_version_order(cJSON *d)
{
        cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItem(key_named(d, "aes-1"), "versions"), 1);
        cJSON_ReplaceItemInObject(v, "version", cJSON_CreateNumber(1));
}
static void c_version_count(cJSON *d)
{
        cJSON_ReplaceItemInObject(key_named(d, "aes-1"), "current_version", cJSON_CreateNumber(3));
}
static void c_aes_der(cJSON *d) { set_str(key_named(d, "aes-1"), "public_der", "MAo="); }
static void c_rsa_no_der(cJSON *d)
{
        cJSON_ReplaceItemInObject(key_named(d, "rsa-1"), "public_der", cJSON_CreateNull());
}
static void c_delete_at(cJSON *d)
{
        cJSON_ReplaceItemInObject(key_named(d, "aes-1"), "delete_at", cJSON_CreateNumber(5));
}
static void c_tags(cJSON *d)
{
        cJSON *t = cJSON_GetObjectItem(key_named(d, "aes-1"), "tags");
        cJSON_AddNumberToObject(t, "n", 1);
}
static void c_rules(cJSON *d)
{
        cJSON *t = cJSON_GetObjectItem(key_named(d, "aes-1"), "rules");
        cJSON_AddNumberToObject(t, "nonsense", 1);
}
static void c_tomb_blob(cJSON *d)
{
        cJSON_AddItemToObject(key_named(d, "gone"), "versions", cJSON_CreateArray());
}
static void c_dup_name(cJSON *d) { set_str(key_named(d, "pend"), "name", "aes-1"); }
static void c_counts(cJSON *d)
{
        cJSON_ReplaceItemInObject(cJSON_GetObjectItem(d, "counts"), "keys", cJSON_CreateNumber(5));
}
static void c_checksum(cJSON *d)
{
        cJSON *t = cJSON_GetObjectItem(key_named(d, "aes-1"), "tags");
        set_str(t, "env", "dev");
}
static void c_checksum_hex(cJSON *d) { set_str(d, "checksum", "00"); }
static void c_no_checksum(cJSON *d) { cJSON_DeleteItemFromObject(d, "checksum"); }
static void c_no_keys(cJSON *d) { cJSON_DeleteItemFromObject(d, "keys"); }
static void c_token_hash(cJSON *d)
{
        set_str(cJSON_GetArrayItem(cJSON_GetObjectItem(d, "tokens"), 0), "sha256", "xyz");
}
static void c_token_role(cJSON *d)
{
        set_str(cJSON_GetArrayItem(cJSON_GetObjectItem(d, "tokens"), 0), "role", "root");
}
static void c_token_dup_hash(cJSON *d)
{
        cJSON *a = cJSON_GetObjectItem(d, "tokens");
        set_str(cJSON_GetArrayItem(a, 1), "sha256",
                cJSON_GetObjectItem(cJSON_GetArrayItem(a, 0), "sha256")->valuestring);
}
static void c_user_hash(cJSON *d)
{
        set_str(cJSON_GetArrayItem(cJSON_GetObjectItem(d, "users"), 0), "hash", "plaintext-password");
}
static void c_akid(cJSON *d)
{
        cJSON *s = cJSON_GetArrayItem(cJSON_GetObjectItem(d, "xks_stores"), 0);
        set_str(cJSON_GetArrayItem(cJSON_GetObjectItem(s, "credentials"), 0), "access_key_id", "short");
}
static void c_cred_secret(cJSON *d)
{
        cJSON *s = cJSON_GetArrayItem(cJSON_GetObjectItem(d, "xks_stores"), 0);
        set_str(cJSON_GetArrayItem(cJSON_GetObjectItem(s, "credentials"), 1), "secret_sealed", "@@");
}
static void c_no_creds(cJSON *d)
{
        cJSON *s = cJSON_GetArrayItem(cJSON_GetObjectItem(d, "xks_stores"), 0);
        cJSON_ReplaceItemInObject(s, "credentials", cJSON_CreateArray());
}
static void c_time_neg(cJSON *d)
{
        cJSON_ReplaceItemInObject(key_named(d, "aes-1"), "created", cJSON_CreateNumber(-1));
}
static void c_time_frac(cJSON *d)
{
        cJSON_ReplaceItemInObject(key_named(d, "aes-1"), "updated", cJSON_CreateNumber(1.5));
}

struct bad_case {
        void (*change)(cJSON *d);
        int code;
        const char *detail;   /* a substring of the detail */
};

static const struct bad_case bad_cases[] = {
        { c_format, KW_ERR_BAD_FIELD, "format" },
        { c_version, KW_ERR_BAD_FIELD, "version: 2" },
        { c_unknown_top, KW_ERR_BAD_FIELD, "bogus: unknown field" },
        { c_unknown_key, KW_ERR_BAD_FIELD, "keys[0].extra: unknown field" },
        { c_size_type, KW_ERR_BAD_FIELD, "keys[0].size" },
        { c_size_range, KW_ERR_BAD_FIELD, "keys[0].size" },
        { c_id, KW_ERR_BAD_FIELD, "keys[0].id" },
        { c_name, KW_ERR_BAD_FIELD, "keys[0].name" },
        { c_state, KW_ERR_BAD_FIELD, "keys[0].state" },
        { c_ops, KW_ERR_BAD_FIELD, "keys[0].operations" },
        { c_rsa_ops, KW_ERR_BAD_FIELD, "keys[1].operations" },
        { c_blob_b64, KW_ERR_BAD_ENCODING, "keys[0].versions[0].blob" },
        { c_blob_large, KW_ERR_BAD_FIELD, "keys[0].versions[0].blob" },
        { c_version_order, KW_ERR_BAD_FIELD, "keys[0].versions[1].version" },
        { c_version_count, KW_ERR_BAD_FIELD, "keys[0].versions" },
        { c_aes_der, KW_ERR_BAD_FIELD, "keys[0].public_der" },
        { c_rsa_no_der, KW_ERR_BAD_FIELD, "keys[1].public_der" },
        { c_delete_at, KW_ERR_BAD_FIELD, "keys[0].delete_at" },
        { c_tags, KW_ERR_BAD_FIELD, "keys[0].tags" },
        { c_rules, 0, "keys[0].rules" },
        { c_tomb_blob, KW_ERR_BAD_FIELD, "keys[3].versions: unknown field" },
        { c_dup_name, KW_ERR_BAD_FIELD, "keys: name: 'aes-1' appears twice" },
        { c_counts, KW_ERR_BAD_FIELD, "counts.keys" },
        { c_checksum, KW_ERR_BAD_FIELD, "checksum: does not match" },
        { c_checksum_hex, KW_ERR_BAD_ENCODING, "checksum" },
        { c_no_checksum, KW_ERR_MISSING_FIELD, "checksum" },
        { c_no_keys, KW_ERR_MISSING_FIELD, "keys: missing" },
        { c_token_hash, KW_ERR_BAD_ENCODING, "tokens[0].sha256" },
        { c_token_role, KW_ERR_BAD_FIELD, "tokens[0].role" },
        { c_token_dup_hash, KW_ERR_BAD_FIELD, "tokens: sha256" },
        { c_user_hash, KW_ERR_BAD_FIELD, "users[0].hash" },
        { c_akid, KW_ERR_BAD_FIELD, "xks_stores[0].credentials[0].access_key_id" },
        { c_cred_secret, KW_ERR_BAD_ENCODING, "xks_stores[0].credentials[1].secret_sealed" },
        { c_no_creds, KW_ERR_BAD_FIELD, "xks_stores[0].credentials" },
        { c_time_neg, KW_ERR_BAD_FIELD, "keys[0].created" },
        { c_time_frac, KW_ERR_BAD_FIELD, "keys[0].updated" },
};

static void dbio_parse_malformed_refused_with_field(void **state)
{
        (void)state;
        struct kw_dbio_doc d;
        sample(&d);
        struct kw_buf out;
        kw_buf_init(&out, 1u << 20);
        assert_int_equal(kw_dbio_write(&d, &out).code, 0);
        kw_dbio_doc_free(&d);
        const char *text;
        assert_int_equal(kw_buf_cstr(&out, &text).code, 0);
        for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
                cJSON *j = cJSON_Parse(text);
                assert_non_null(j);
                bad_cases[i].change(j);
                char *s = cJSON_PrintUnformatted(j);
                cJSON_Delete(j);
                struct kw_dbio_doc got;
                kw_dbio_doc_init(&got);
                kw_result r = kw_dbio_parse((const uint8_t *)s, strlen(s), &got);
                if (r.code == 0 || (bad_cases[i].code != 0 && r.code != bad_cases[i].code) ||
                    strstr(kw_err_detail(), bad_cases[i].detail) == NULL)
                        fail_msg("case %zu: code %d detail '%s' (want %d '%s')", i, r.code,
                                 kw_err_detail(), bad_cases[i].code, bad_cases[i].detail);
                /* nothing handed out on failure */
                assert_int_equal(got.nkeys, 0);
                assert_null(got.keys);
                assert_int_equal(got.ntokens, 0);
                cJSON_free(s);
        }
        kw_buf_free(&out);
}

static void dbio_parse_not_json_or_duplicates_refused(void **state)
{
        (void)state;
        static const char *const inputs[] = {
                "", "[]", "not json", "{\"format\":\"keyward-export\",\"format\":\"x\"}",
                "{\"format\":\"keyward-export\"} trailing",
        };
        for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
                struct kw_dbio_doc got;
                kw_dbio_doc_init(&got);
                kw_result r = kw_dbio_parse((const uint8_t *)inputs[i], strlen(inputs[i]), &got);
                assert_int_equal(r.code, KW_ERR_BAD_JSON);
                assert_int_equal(got.nkeys, 0);
        }
        const uint8_t bad_utf8[] = "{\"format\":\"\xc0\xaf\"}";
        struct kw_dbio_doc got;
        kw_dbio_doc_init(&got);
        assert_int_equal(kw_dbio_parse(bad_utf8, sizeof bad_utf8 - 1, &got).code, KW_ERR_BAD_ENCODING);
}

static void dbio_add_xks_cred_clear_refused(void **state)
{
        (void)state;
        struct kw_dbio_doc d;
        sample(&d);
        struct kw_xks_cred_row c;
        memset(&c, 0, sizeof c);
        snprintf(c.store, sizeof c.store, "c");
        snprintf(c.akid, sizeof c.akid, "AKIAKEYWARDTESTCCCCC");
        c.secret_len = 40;
        c.is_sealed = 0;
        assert_int_equal(kw_dbio_add_xks_cred(&d, &c).code, KW_ERR_INPUT);
        c.is_sealed = 1;
        snprintf(c.store, sizeof c.store, "nope");
        assert_int_equal(kw_dbio_add_xks_cred(&d, &c).code, KW_ERR_NOT_FOUND);
        assert_int_equal(d.stores[0].ncreds, 2);
        kw_dbio_doc_free(&d);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(dbio_write_parse_round_trip),
                cmocka_unit_test(dbio_checksum_covers_every_public_field),
                cmocka_unit_test(dbio_checksum_does_not_depend_on_key_order),
                cmocka_unit_test(dbio_parse_malformed_refused_with_field),
                cmocka_unit_test(dbio_parse_not_json_or_duplicates_refused),
                cmocka_unit_test(dbio_add_xks_cred_clear_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
