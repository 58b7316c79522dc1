/*
 * custody_keys.c - key operations of the custody process: lifecycle
 * (create, import, get, list, state changes, rotation, deletion, update)
 * and use (AES-GCM encrypt/decrypt, key wrap/unwrap, RSA-OAEP).
 *
 * Order of checks for every use (the protocols depend on it): key lookup
 * (NOT_FOUND) -> state (KEY_DISABLED / KEY_PENDING_DELETION) -> the key's
 * access rules (ACCESS_DENIED) -> allowed operations (OP_NOT_ALLOWED) ->
 * algorithm and input (UNSUPPORTED_ALG, BAD_LENGTH) -> crypto.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "../common/b64.h"
#include "../common/log.h"
#include "crypto.h"
#include "custody_int.h"
#include "xks_format.h"

#define KEY_AAD_PREFIX "keyward.key.v1"
#define MAX_VERSIONS 10000

static const char *const op_names[4] = { "encrypt", "decrypt", "wrap", "unwrap" };

/* AAD binding a sealed blob to its key id and version. */
static void key_aad(const char *id, uint32_t version, uint8_t out[64], size_t *ret_len)
{
        size_t n = 0;
        memcpy(out, KEY_AAD_PREFIX, sizeof KEY_AAD_PREFIX);    /* with its NUL */
        n += sizeof KEY_AAD_PREFIX;
        memcpy(out + n, id, 32);
        n += 32;
        out[n++] = (uint8_t)(version >> 24);
        out[n++] = (uint8_t)(version >> 16);
        out[n++] = (uint8_t)(version >> 8);
        out[n++] = (uint8_t)version;
        *ret_len = n;
}

/* ------------------------------------------------------------ key lookup */

kw_result custody_key_unseal(struct custody *c, const struct kw_key_row *row, uint32_t version,
                             const uint8_t *blob, size_t blob_len, struct kw_ckey_material *ret)
{
        uint8_t aad[64];
        size_t aad_len;
        key_aad(row->id, version, aad, &aad_len);
        struct kw_secret s = { 0 };
        kw_result r = kw_hsm_unseal(c->hsm, aad, aad_len, blob, blob_len, &s);
        if (r.code == KW_ERR_HSM_UNWRAP) {
                kw_err_set_detail("key %s version %u does not unseal under the master key",
                                  row->name, version);
                r = KW_RESULT(KW_ERR_DB_CORRUPT);
        }
        if (r.code != 0)
                return r;
        if (strcmp(row->type, "AES") == 0) {
                if (s.len != row->size / 8) {
                        kw_secret_free(&s);
                        kw_err_set_detail("key %s version %u: the material is not %u bits",
                                          row->name, version, row->size);
                        KW_BAIL(KW_ERR_DB_CORRUPT);
                }
                ret->aes = s;
                return KW_OK;
        }
        EVP_PKEY *pk = NULL;
        r = kw_rsa_from_pkcs8(s.p, s.len, &pk);
        kw_secret_free(&s);
        if (r.code != 0)
                return r;
        ret->pkey = pk;
        return KW_OK;
}

static kw_result material_loader(const struct kw_key_row *row, uint32_t version, void *arg,
                                 struct kw_ckey_material *ret)
{
        struct custody *c = arg;
        struct kw_buf blob;
        kw_buf_init(&blob, 64 * 1024);
        kw_result r = kw_keystore_key_get_blob(c->ks, row->id, version, &blob);
        if (r.code == 0)
                r = custody_key_unseal(c, row, version, blob.p, blob.len, ret);
        kw_buf_free(&blob);
        if (r.code == 0)
                __atomic_add_fetch(&c->material_loads, 1, __ATOMIC_RELAXED);
        return r;
}

/* A fresh entry for name from the database. */
static kw_result key_load(struct custody *c, const char *name, struct kw_ckey **ret)
{
        uint64_t gen = __atomic_load_n(&c->gen, __ATOMIC_ACQUIRE);
        struct kw_key_row row;
        memset(&row, 0, sizeof row);
        KW_TRY(kw_keystore_key_get(c->ks, name, &row));
        struct kw_rules *rules = NULL;
        EVP_PKEY *pub = NULL;
        kw_result r = KW_OK;
        if (row.rules_json != NULL && strcmp(row.rules_json, "{}") != 0)
                r = kw_rules_parse(row.rules_json, strlen(row.rules_json), &rules);
        if (r.code == 0 && row.public_der != NULL)
                r = kw_rsa_from_public_der(row.public_der, row.public_der_len, &pub);
        struct kw_ckey *e = NULL;
        if (r.code == 0)
                r = kw_ckey_new(&row, rules, pub, &e);
        if (r.code != 0) {
                kw_rules_free(rules);
                kw_pkey_free(pub);
                kw_key_row_clear(&row);
                return r;
        }
        /* publish only if no mutation happened meanwhile (else it may be
         * stale); a change announced between that check and the put (fleet
         * mode: another node's, custody_fleet.c) is seen by the check after */
        if (__atomic_load_n(&c->gen, __ATOMIC_ACQUIRE) == gen) {
                kw_keycache_put(c->kc, e);
                if (__atomic_load_n(&c->gen, __ATOMIC_ACQUIRE) != gen)
                        kw_keycache_invalidate(c->kc, name);
        }
        *ret = e;
        return KW_OK;
}

static kw_result key_acquire(struct custody *c, const char *name, struct kw_ckey **ret)
{
        struct kw_ckey *e = kw_keycache_get(c->kc, name);
        if (e == NULL)
                KW_TRY(key_load(c, name, &e));
        *ret = e;
        return KW_OK;
}

static kw_result state_allows_use(const struct kw_key_row *row)
{
        if (strcmp(row->state, "enabled") == 0)
                return KW_OK;
        if (strcmp(row->state, "disabled") == 0)
                KW_BAIL(KW_ERR_KEY_DISABLED);
        if (strcmp(row->state, "pending_deletion") == 0)
                KW_BAIL(KW_ERR_KEY_PENDING_DELETION);
        KW_BAIL(KW_ERR_NOT_FOUND);   /* destroyed keys do not exist for their users */
}

/* XKS key store isolation (docs/xks.md): an XKS caller reaches a key only
 * through a store the key's rules assign it to (xks.key_stores); any other
 * key does not exist for it. */
static kw_result xks_store_allows(const struct kw_ckey *e, const struct op_caller *who)
{
        if (who->ctx.kind != KW_CALLER_XKS)
                return KW_OK;
        if (!kw_rules_in_store(e->rules, who->ctx.store)) {
                kw_err_set_detail("key %s is not in XKS key store %s", e->row.name,
                                  who->ctx.store ? who->ctx.store : "(none)");
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        return KW_OK;
}

/* Lookup, state, rules and operation checks in the protocol order. */
static kw_result key_for_use(struct custody *c, const char *name, const struct op_caller *who,
                             uint32_t keyop, struct kw_ckey **ret)
{
        KW_ENSURE(valid_name(name), KW_ERR_BAD_NAME);
        struct kw_ckey *e;
        KW_TRY(key_acquire(c, name, &e));
        kw_result r = xks_store_allows(e, who);
        /* XKS: state (400 InvalidState) comes before secondary authorization
         * (403), as the XKS order of checks says.  EKM: a key whose rules hide
         * it from this caller must not exist for it (404), so the rules come
         * first and its state is never revealed. */
        int rules_first = who->ctx.kind == KW_CALLER_EKM;
        const char *rule = NULL;
        if (r.code == 0 && rules_first) {
                r = kw_rules_check(e->rules, &who->ctx, &rule);
                if (r.code != 0)
                        kw_err_set_detail("denied by rule %s", rule);
        }
        if (r.code == 0)
                r = state_allows_use(&e->row);
        if (r.code == 0 && !rules_first) {
                r = kw_rules_check(e->rules, &who->ctx, &rule);
                if (r.code != 0)
                        kw_err_set_detail("denied by rule %s", rule);
        }
        if (r.code == 0 && !(e->row.ops & keyop)) {
                kw_err_set_detail("key %s does not allow %s", name,
                                  op_names[__builtin_ctz(keyop)]);
                r = KW_RESULT(KW_ERR_OP_NOT_ALLOWED);
        }
        if (r.code != 0) {
                kw_keycache_release(c->kc, e);
                return r;
        }
        *ret = e;
        return KW_OK;
}

static void use_audit(struct custody *c, const struct op_caller *who, const char *action,
                      const char *name, kw_result r)
{
        audit_push(c->aq, who, action, name, r.code, r.code ? kw_err_detail() : NULL);
}

/* ------------------------------------------------------------- documents */

static cJSON *ops_json(uint32_t ops)
{
        cJSON *a = cJSON_CreateArray();
        for (int i = 0; a && i < 4; i++)
                if (ops & (1u << i))
                        cJSON_AddItemToArray(a, cJSON_CreateString(op_names[i]));
        return a;
}

static cJSON *parse_or_empty(const char *json)
{
        cJSON *v = json ? cJSON_Parse(json) : NULL;
        return v ? v : cJSON_CreateObject();
}

static void add_b64url(cJSON *o, const char *name, const struct kw_buf *b)
{
        struct kw_buf enc;
        kw_buf_init(&enc, 4096);
        const char *s;
        if (kw_b64url_encode(b->p, b->len, &enc).code == 0 && kw_buf_cstr(&enc, &s).code == 0)
                cJSON_AddStringToObject(o, name, s);
        kw_buf_free(&enc);
}

static cJSON *key_doc(const struct kw_key_row *row, EVP_PKEY *pub, int with_public)
{
        char t[32];
        cJSON *d = cJSON_CreateObject();
        if (d == NULL)
                return NULL;
        cJSON_AddStringToObject(d, "id", row->id);
        cJSON_AddStringToObject(d, "name", row->name);
        cJSON_AddStringToObject(d, "type", row->type);
        cJSON_AddNumberToObject(d, "size", row->size);
        cJSON_AddStringToObject(d, "state", row->state);
        cJSON_AddItemToObject(d, "operations", ops_json(row->ops));
        cJSON_AddNumberToObject(d, "current_version", row->current_version);
        format_time(row->created, t);
        cJSON_AddStringToObject(d, "created", t);
        format_time(row->updated, t);
        cJSON_AddStringToObject(d, "updated", t);
        if (row->delete_at != 0) {
                format_time(row->delete_at, t);
                cJSON_AddStringToObject(d, "delete_at", t);
        } else {
                cJSON_AddNullToObject(d, "delete_at");
        }
        cJSON_AddItemToObject(d, "tags", parse_or_empty(row->tags_json));
        cJSON_AddItemToObject(d, "rules", parse_or_empty(row->rules_json));
        if (with_public && pub != NULL && strcmp(row->state, "destroyed") != 0) {
                cJSON *pk = cJSON_AddObjectToObject(d, "public_key");
                struct kw_buf n, e, spki;
                kw_buf_init(&n, 1024);
                kw_buf_init(&e, 64);
                kw_buf_init(&spki, 4096);
                if (pk && kw_rsa_public_ne(pub, &n, &e).code == 0) {
                        add_b64url(pk, "n", &n);
                        add_b64url(pk, "e", &e);
                }
                struct kw_buf enc;
                kw_buf_init(&enc, 8192);
                const char *s;
                if (pk && kw_b64_encode(row->public_der, row->public_der_len, &enc).code == 0 &&
                    kw_buf_cstr(&enc, &s).code == 0)
                        cJSON_AddStringToObject(pk, "spki", s);
                kw_buf_free(&enc);
                kw_buf_free(&n);
                kw_buf_free(&e);
                kw_buf_free(&spki);
        }
        return d;
}

static kw_result reply_key(struct kw_buf *reply, const struct kw_key_row *row, EVP_PKEY *pub)
{
        return reply_json(reply, key_doc(row, pub, 1));
}

/* --------------------------------------------------------- field checks */

static kw_result check_tags(const struct kw_field *f, char **ret)
{
        cJSON *v = cJSON_ParseWithLength((const char *)f->p, f->len);
        int ok = cJSON_IsObject(v) && cJSON_GetArraySize(v) <= 64;
        const cJSON *it;
        if (ok)
                cJSON_ArrayForEach(it, v)
                {
                        if (!cJSON_IsString(it) || strlen(it->string) == 0 ||
                            strlen(it->string) > 128 || strlen(it->valuestring) > 256)
                                ok = 0;
                }
        char *s = ok ? cJSON_PrintUnformatted(v) : NULL;
        cJSON_Delete(v);
        if (!ok) {
                kw_err_set_detail("tags must be an object of at most 64 string values "
                                  "(names 1..128, values 0..256 bytes)");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        KW_ENSURE(s != NULL, KW_ERR_NOMEM);
        *ret = s;
        return KW_OK;
}

static kw_result check_rules(const struct kw_field *f, char **ret)
{
        struct kw_rules *rules = NULL;
        KW_TRY(kw_rules_parse((const char *)f->p, f->len, &rules));
        kw_rules_free(rules);
        cJSON *v = cJSON_ParseWithLength((const char *)f->p, f->len);
        char *s = v ? cJSON_PrintUnformatted(v) : NULL;
        cJSON_Delete(v);
        KW_ENSURE(s != NULL, KW_ERR_NOMEM);
        *ret = s;
        return KW_OK;
}

static kw_result check_ops(const char *type, uint32_t ops)
{
        if (ops == 0 || (ops & ~(uint32_t)KW_KEYOP_ALL) != 0) {
                kw_err_set_detail("operations must be a non-empty subset of encrypt, decrypt, wrap, unwrap");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        if (strcmp(type, "RSA") == 0 && (ops & (KW_KEYOP_ENCRYPT | KW_KEYOP_DECRYPT))) {
                kw_err_set_detail("RSA keys allow only wrap and unwrap (RSA-OAEP)");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        return KW_OK;
}

static kw_result new_key_id(char out[33])
{
        uint8_t b[16];
        KW_TRY(kw_random(b, sizeof b));
        for (int i = 0; i < 16; i++)
                snprintf(out + 2 * i, 3, "%02x", b[i]);
        return KW_OK;
}

/* Reads the common create/import fields into row (tags/rules heap strings).
 * An import names no size: it is the material's (checked after decoding). */
static kw_result read_key_spec(const struct kw_msg *req, struct kw_key_row *row, int import)
{
        KW_TRY(kw_msg_get_str(req, KW_T_NAME, row->name, sizeof row->name));
        if (!valid_name(row->name)) {
                kw_err_set_detail("key names are 1..64 characters of A-Z a-z 0-9 . _ -");
                KW_BAIL(KW_ERR_BAD_NAME);
        }
        KW_TRY(kw_msg_get_str(req, KW_T_KEY_TYPE, row->type, sizeof row->type));
        int aes = strcmp(row->type, "AES") == 0, rsa = strcmp(row->type, "RSA") == 0;
        if (import)
                row->size = aes ? 256 : 2048;   /* RSA: replaced by the key's own size */
        else
                KW_TRY(kw_msg_get_u32(req, KW_T_KEY_SIZE, &row->size));
        if (!(aes && row->size == 256) &&
            !(rsa && (row->size == 2048 || row->size == 3072 || row->size == 4096))) {
                kw_err_set_detail("supported keys: AES 256, RSA 2048/3072/4096");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        row->ops = aes ? KW_KEYOP_ALL : (KW_KEYOP_WRAP | KW_KEYOP_UNWRAP);
        if (kw_msg_has(req, KW_T_OPS))
                KW_TRY(kw_msg_get_u32(req, KW_T_OPS, &row->ops));
        KW_TRY(check_ops(row->type, row->ops));
        struct kw_field f = { 0 };
        if (kw_msg_get(req, KW_T_TAGS, &f).code == 0)
                KW_TRY(check_tags(&f, &row->tags_json));
        if (kw_msg_get(req, KW_T_RULES, &f).code == 0)
                KW_TRY(check_rules(&f, &row->rules_json));
        if (row->tags_json == NULL)
                KW_ENSURE((row->tags_json = strdup("{}")) != NULL, KW_ERR_NOMEM);
        if (row->rules_json == NULL)
                KW_ENSURE((row->rules_json = strdup("{}")) != NULL, KW_ERR_NOMEM);
        return KW_OK;
}

/* Seals the material (AES bytes or RSA PKCS#8) of version for row (also used by
 * tests/bench/populate.c, through custody_int.h). */
kw_result seal_material(struct custody *c, const struct kw_key_row *row, uint32_t version,
                        const struct kw_secret *material, struct kw_buf *blob)
{
        uint8_t aad[64];
        size_t aad_len;
        key_aad(row->id, version, aad, &aad_len);
        return kw_hsm_seal(c->hsm, aad, aad_len, material->p, material->len, blob);
}

/* New material for a key of row's type: AES bytes, or an RSA key (PKCS#8
 * secret, plus its public DER appended to pub_der when non-NULL). */
static kw_result make_material(const struct kw_key_row *row, struct kw_secret *ret,
                               struct kw_buf *pub_der)
{
        if (strcmp(row->type, "AES") == 0) {
                struct kw_secret s;
                KW_TRY(kw_secret_alloc(row->size / 8, &s));
                kw_result r = kw_random(s.p, s.len);
                if (r.code != 0) {
                        kw_secret_free(&s);
                        return r;
                }
                *ret = s;
                return KW_OK;
        }
        EVP_PKEY *pk = NULL;
        KW_TRY(kw_rsa_generate(row->size, &pk));
        kw_result r = kw_rsa_to_pkcs8(pk, ret);
        if (r.code == 0 && pub_der != NULL)
                r = kw_rsa_public_der(pk, pub_der);
        if (r.code != 0)
                kw_secret_free(ret);
        kw_pkey_free(pk);
        return r;
}

static kw_result insert_key(struct custody *c, struct kw_key_row *row, const struct kw_secret *mat,
                            const struct op_caller *who, const char *action, struct kw_buf *reply)
{
        struct kw_buf blob;
        kw_buf_init(&blob, 64 * 1024);
        kw_result r = seal_material(c, row, 1, mat, &blob);
        struct kw_audit_entry au = { .actor = who->actor, .action = action,
                                     .key_name = row->name, .result = "ok",
                                     .request_id = who->request_id };
        if (r.code == 0) {
                pthread_mutex_lock(&c->write_mu);
                r = kw_keystore_key_insert(c->ks, row, blob.p, blob.len, &au);
                __atomic_add_fetch(&c->gen, 1, __ATOMIC_RELEASE);
                kw_keycache_invalidate(c->kc, row->name);
                pthread_mutex_unlock(&c->write_mu);
        }
        kw_buf_free(&blob);
        if (r.code == KW_ERR_EXISTS)
                kw_err_set_detail("a key named %s already exists (names are never reused)", row->name);
        if (r.code != 0)
                return r;
        EVP_PKEY *pub = NULL;
        if (row->public_der != NULL)
                kw_ignore(kw_rsa_from_public_der(row->public_der, row->public_der_len, &pub));
        r = reply_key(reply, row, pub);
        kw_pkey_free(pub);
        return r;
}

static void row_stamp_new(struct kw_key_row *row)
{
        row->current_version = 1;
        snprintf(row->state, sizeof row->state, "enabled");
        row->created = row->updated = time(NULL);
        row->delete_at = 0;
}

kw_result op_key_create(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                        struct kw_buf *reply)
{
        struct kw_key_row row;
        memset(&row, 0, sizeof row);
        struct kw_secret mat = { 0 };
        struct kw_buf pub;
        kw_buf_init(&pub, 4096);
        kw_result r = read_key_spec(req, &row, 0);
        if (r.code == 0)
                r = new_key_id(row.id);
        if (r.code == 0)
                r = make_material(&row, &mat, &pub);
        if (r.code == 0 && pub.len != 0) {
                row.public_der = malloc(pub.len);
                r = row.public_der ? KW_OK : KW_RESULT(KW_ERR_NOMEM);
                if (r.code == 0) {
                        memcpy(row.public_der, pub.p, pub.len);
                        row.public_der_len = pub.len;
                }
        }
        row_stamp_new(&row);
        if (r.code == 0)
                r = insert_key(c, &row, &mat, who, "key.create", reply);
        if (r.code != 0)
                audit_push(c->aq, who, "key.create", row.name, r.code, kw_err_detail());
        kw_secret_free(&mat);
        kw_buf_free(&pub);
        kw_key_row_clear(&row);
        return r;
}

/* The material of an import, as the client sent it (KW_T_MATERIAL in
 * KW_T_MATERIAL_FORMAT): decoded here, never in the front, into secret
 * memory.  AES: 32 bytes; RSA: the key, with its size set in row. */
static kw_result decode_import(const struct kw_msg *req, struct kw_key_row *row,
                               struct kw_secret *ret_aes, EVP_PKEY **ret_rsa)
{
        struct kw_field f = { 0 };
        uint32_t fmt = 0;
        KW_TRY(kw_msg_get(req, KW_T_MATERIAL, &f));
        KW_TRY(kw_msg_get_u32(req, KW_T_MATERIAL_FORMAT, &fmt));
        int aes = strcmp(row->type, "AES") == 0;
        if (aes != (fmt == KW_MATERIAL_AES_B64) ||
            (fmt != KW_MATERIAL_AES_B64 && fmt != KW_MATERIAL_PKCS8_B64 && fmt != KW_MATERIAL_PEM)) {
                kw_err_set_detail(aes ? "an AES import takes 'material' only"
                                      : "an RSA import takes exactly one of 'pkcs8' or 'pem'");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        if (fmt == KW_MATERIAL_PEM)
                KW_TRY(kw_rsa_from_pem((const char *)f.p, f.len, ret_rsa));
        else {
                struct kw_secret raw = { 0 };
                if (kw_b64_decode_secret((const char *)f.p, f.len, &raw).code != 0) {
                        kw_err_set_detail("'%s' is not valid base64", aes ? "material" : "pkcs8");
                        KW_BAIL(KW_ERR_BAD_ENCODING);
                }
                if (aes && raw.len != 32) {
                        kw_secret_free(&raw);
                        kw_err_set_detail("'material' must decode to 32 bytes");
                        KW_BAIL(KW_ERR_BAD_LENGTH);
                }
                if (aes) {
                        *ret_aes = raw;
                        return KW_OK;
                }
                kw_result r = kw_rsa_from_pkcs8(raw.p, raw.len, ret_rsa);
                kw_secret_free(&raw);
                if (r.code != 0 && r.code != KW_ERR_BAD_FIELD)
                        return r;
                if (r.code != 0) {
                        char why[200];
                        snprintf(why, sizeof why, "%s", kw_err_detail());
                        kw_err_set_detail("'pkcs8': %s", why);
                        return r;
                }
        }
        row->size = kw_rsa_bits(*ret_rsa);
        return KW_OK;
}

kw_result op_key_import(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                        struct kw_buf *reply)
{
        struct kw_key_row row;
        memset(&row, 0, sizeof row);
        struct kw_secret mat = { 0 };
        EVP_PKEY *pk = NULL;
        kw_result r = read_key_spec(req, &row, 1);
        if (r.code == 0)
                r = decode_import(req, &row, &mat, &pk);
        if (r.code == 0 && pk != NULL) {
                struct kw_buf pub;
                kw_buf_init(&pub, 4096);
                r = kw_rsa_to_pkcs8(pk, &mat);
                if (r.code == 0)
                        r = kw_rsa_public_der(pk, &pub);
                if (r.code == 0) {
                        row.public_der = malloc(pub.len);
                        r = row.public_der ? KW_OK : KW_RESULT(KW_ERR_NOMEM);
                        if (r.code == 0) {
                                memcpy(row.public_der, pub.p, pub.len);
                                row.public_der_len = pub.len;
                        }
                }
                kw_buf_free(&pub);
        }
        kw_pkey_free(pk);
        if (r.code == 0)
                r = new_key_id(row.id);
        row_stamp_new(&row);
        if (r.code == 0)
                r = insert_key(c, &row, &mat, who, "key.import", reply);
        if (r.code != 0)
                audit_push(c->aq, who, "key.import", row.name, r.code, kw_err_detail());
        kw_secret_free(&mat);
        kw_key_row_clear(&row);
        return r;
}

kw_result op_key_get(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                     struct kw_buf *reply)
{
        char name[65];
        KW_TRY(kw_msg_get_str(req, KW_T_NAME, name, sizeof name));
        KW_ENSURE(valid_name(name), KW_ERR_BAD_NAME);
        struct kw_ckey *e;
        KW_TRY(key_acquire(c, name, &e));
        kw_result r = KW_OK;
        if (who->ctx.kind != KW_CALLER_ADMIN) {
                /* a protocol caller (EKM metadata): the use checks, in the
                 * EKM use order (rules, then state), so that it sees what a
                 * wrap would see */
                const char *rule = NULL;
                r = kw_rules_check(e->rules, &who->ctx, &rule);
                if (r.code != 0)
                        kw_err_set_detail("denied by rule %s", rule);
                if (r.code == 0)
                        r = state_allows_use(&e->row);
        }
        if (r.code == 0)
                r = reply_key(reply, &e->row, e->pub);
        kw_keycache_release(c->kc, e);
        return r;
}

static int versions_cb(uint32_t version, int64_t created, void *arg)
{
        cJSON *arr = arg;
        cJSON *v = cJSON_CreateObject();
        if (v == NULL || !cJSON_AddItemToArray(arr, v)) {
                cJSON_Delete(v);
                return 1;
        }
        char t[32];
        format_time(created, t);
        cJSON_AddNumberToObject(v, "version", version);
        cJSON_AddStringToObject(v, "created", t);
        return 0;
}

/* KW_OP_KEY_VERSIONS: {"name","current_version","versions":[{"version",
 * "created","current"}]}, versions in order (none once destroyed). */
kw_result op_key_versions(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                          struct kw_buf *reply)
{
        (void)who;
        char name[65];
        KW_TRY(kw_msg_get_str(req, KW_T_NAME, name, sizeof name));
        KW_ENSURE(valid_name(name), KW_ERR_BAD_NAME);
        struct kw_key_row row;
        memset(&row, 0, sizeof row);
        KW_TRY(kw_keystore_key_get(c->ks, name, &row));
        cJSON *d = cJSON_CreateObject();
        cJSON *arr = d != NULL ? cJSON_AddArrayToObject(d, "versions") : NULL;
        kw_result r = arr != NULL ? KW_OK : KW_RESULT(KW_ERR_NOMEM);
        if (kw_ok(r)) {
                cJSON_AddStringToObject(d, "name", row.name);
                cJSON_AddNumberToObject(d, "current_version", row.current_version);
                r = kw_keystore_key_versions(c->ks, row.id, versions_cb, arr);
        }
        int n = kw_ok(r) ? cJSON_GetArraySize(arr) : 0;
        for (int i = 0; i < n; i++) {
                cJSON *v = cJSON_GetArrayItem(arr, i);
                const cJSON *num = cJSON_GetObjectItem(v, "version");
                if (num == NULL) {
                        r = KW_RESULT(KW_ERR_NOMEM);   /* versions_cb ran out of memory */
                        break;
                }
                cJSON_AddBoolToObject(v, "current", (uint32_t)num->valuedouble == row.current_version);
        }
        kw_key_row_clear(&row);
        if (!kw_ok(r)) {
                cJSON_Delete(d);
                return r;
        }
        return reply_json(reply, d);
}

kw_result custody_key_xks_metadata(struct custody *c, const struct op_caller *who, const char *name,
                                   struct custody_key_info *ret)
{
        /* XKS metadata: store (404), destroyed (404), pending deletion
         * (state), then the key's rules; a disabled key still answers
         * (keyStatus DISABLED) */
        KW_ENSURE(valid_name(name), KW_ERR_NOT_FOUND);
        struct kw_ckey *e;
        kw_result r = key_acquire(c, name, &e);
        if (r.code != 0) {
                audit_push(c->aq, who, "key.metadata", name, r.code, kw_err_detail());
                return r;
        }
        const char *rule = NULL;
        r = xks_store_allows(e, who);
        if (r.code == 0 && strcmp(e->row.state, "destroyed") == 0)
                r = KW_RESULT(KW_ERR_NOT_FOUND);
        if (r.code == 0 && strcmp(e->row.state, "pending_deletion") == 0)
                r = KW_RESULT(KW_ERR_KEY_PENDING_DELETION);
        if (r.code == 0) {
                r = kw_rules_check(e->rules, &who->ctx, &rule);
                if (r.code != 0)
                        kw_err_set_detail("denied by rule %s", rule);
        }
        if (r.code == 0) {
                struct custody_key_info k;
                memset(&k, 0, sizeof k);
                snprintf(k.type, sizeof k.type, "%s", e->row.type);
                snprintf(k.state, sizeof k.state, "%s", e->row.state);
                k.size = e->row.size;
                k.ops = e->row.ops;
                *ret = k;
        } else {
                audit_push(c->aq, who, "key.metadata", name, r.code, kw_err_detail());
        }
        kw_keycache_release(c->kc, e);
        return r;
}

struct list_ctx {
        cJSON *arr;
};

static int list_cb(const struct kw_key_row *row, void *arg)
{
        struct list_ctx *l = arg;
        cJSON *d = key_doc(row, NULL, 0);
        if (d == NULL)
                return 1;
        cJSON_AddItemToArray(l->arr, d);
        return 0;
}

kw_result op_key_list(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                      struct kw_buf *reply)
{
        (void)who;
        char state[33] = "", type[9] = "", tag[257] = "", prefix[65] = "", cursor[129] = "";
        struct kw_key_filter f = { 0 };
        if (kw_msg_has(req, KW_T_STATE)) {
                KW_TRY(kw_msg_get_str(req, KW_T_STATE, state, sizeof state));
                f.state = state;
        }
        if (kw_msg_has(req, KW_T_KEY_TYPE)) {
                KW_TRY(kw_msg_get_str(req, KW_T_KEY_TYPE, type, sizeof type));
                f.type = type;
        }
        if (kw_msg_has(req, KW_T_TAG)) {
                KW_TRY(kw_msg_get_str(req, KW_T_TAG, tag, sizeof tag));
                KW_ENSURE(strchr(tag, '=') != NULL, KW_ERR_BAD_FIELD);
                f.tag = tag;
        }
        if (kw_msg_has(req, KW_T_NAME_PREFIX)) {
                KW_TRY(kw_msg_get_str(req, KW_T_NAME_PREFIX, prefix, sizeof prefix));
                f.name_prefix = prefix;
        }
        if (kw_msg_has(req, KW_T_CURSOR)) {
                KW_TRY(kw_msg_get_str(req, KW_T_CURSOR, cursor, sizeof cursor));
                KW_ENSURE(valid_name(cursor), KW_ERR_BAD_FIELD);
                f.after_name = cursor;
        }
        f.limit = 100;
        if (kw_msg_has(req, KW_T_LIMIT)) {
                KW_TRY(kw_msg_get_u32(req, KW_T_LIMIT, &f.limit));
                KW_ENSURE(f.limit >= 1 && f.limit <= 1000, KW_ERR_BAD_FIELD);
        }
        struct list_ctx l = { cJSON_CreateArray() };
        KW_ENSURE(l.arr != NULL, KW_ERR_NOMEM);
        char next[65] = "";
        kw_result r = kw_keystore_key_list(c->ks, &f, list_cb, &l, next);
        if (r.code != 0) {
                cJSON_Delete(l.arr);
                return r;
        }
        cJSON *doc = cJSON_CreateObject();
        if (doc == NULL) {
                cJSON_Delete(l.arr);
                KW_BAIL(KW_ERR_NOMEM);
        }
        cJSON_AddItemToObject(doc, "keys", l.arr);
        if (next[0])
                cJSON_AddStringToObject(doc, "next", next);
        else
                cJSON_AddNullToObject(doc, "next");
        return reply_json(reply, doc);
}

/* Loads the current row, lets change() modify it, writes it back with an
 * audit row, and answers the new document.  Serialised with other writes. */
static kw_result mutate_key(struct custody *c, const struct kw_msg *req, const struct op_caller *who,
                            const char *action, kw_result (*change)(struct custody *, const struct kw_msg *,
                                                                    struct kw_key_row *),
                            struct kw_buf *reply)
{
        char name[65] = "";
        kw_result r = kw_msg_get_str(req, KW_T_NAME, name, sizeof name);
        if (r.code == 0 && !valid_name(name))
                r = KW_RESULT(KW_ERR_BAD_NAME);
        struct kw_key_row row;
        memset(&row, 0, sizeof row);
        if (r.code == 0) {
                pthread_mutex_lock(&c->write_mu);
                r = kw_keystore_key_get(c->ks, name, &row);
                if (r.code == 0 && strcmp(row.state, "destroyed") == 0) {
                        kw_err_set_detail("key %s is destroyed", name);
                        r = KW_RESULT(KW_ERR_BAD_STATE);
                }
                if (r.code == 0)
                        r = change(c, req, &row);
                if (r.code == 0) {
                        row.updated = time(NULL);
                        struct kw_audit_entry au = { .actor = who->actor, .action = action,
                                                     .key_name = name, .result = "ok",
                                                     .request_id = who->request_id };
                        r = kw_keystore_key_update(c->ks, &row, &au);
                        __atomic_add_fetch(&c->gen, 1, __ATOMIC_RELEASE);
                        kw_keycache_invalidate(c->kc, name);
                }
                pthread_mutex_unlock(&c->write_mu);
        }
        if (r.code == 0) {
                EVP_PKEY *pub = NULL;
                if (row.public_der != NULL)
                        kw_ignore(kw_rsa_from_public_der(row.public_der, row.public_der_len, &pub));
                r = reply_key(reply, &row, pub);
                kw_pkey_free(pub);
        } else {
                audit_push(c->aq, who, action, name, r.code, kw_err_detail());
        }
        kw_key_row_clear(&row);
        return r;
}

static kw_result change_state(struct custody *c, const struct kw_msg *req, struct kw_key_row *row)
{
        (void)c;
        char want[sizeof row->state];
        KW_TRY(kw_msg_get_str(req, KW_T_STATE, want, sizeof want));
        if (strcmp(want, "enabled") != 0 && strcmp(want, "disabled") != 0) {
                kw_err_set_detail("state must be enabled or disabled");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        if (strcmp(row->state, "pending_deletion") == 0) {
                kw_err_set_detail("key %s is pending deletion: cancel the deletion first", row->name);
                KW_BAIL(KW_ERR_BAD_STATE);
        }
        snprintf(row->state, sizeof row->state, "%s", want);
        return KW_OK;
}

kw_result op_key_set_state(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                           struct kw_buf *reply)
{
        char want[33] = "";
        kw_ignore(kw_msg_get_str(req, KW_T_STATE, want, sizeof want));
        return mutate_key(c, req, who, strcmp(want, "enabled") == 0 ? "key.enable" : "key.disable",
                          change_state, reply);
}

static kw_result change_schedule(struct custody *c, const struct kw_msg *req, struct kw_key_row *row)
{
        uint32_t wait = (uint32_t)c->cfg->db.deletion_default_wait_seconds;
        if (kw_msg_has(req, KW_T_WAIT_SECONDS))
                KW_TRY(kw_msg_get_u32(req, KW_T_WAIT_SECONDS, &wait));
        if (wait < c->cfg->db.deletion_min_wait_seconds || wait > 365u * 86400u) {
                kw_err_set_detail("the waiting period must be between %lld seconds and 365 days",
                                  (long long)c->cfg->db.deletion_min_wait_seconds);
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        if (strcmp(row->state, "pending_deletion") == 0) {
                kw_err_set_detail("key %s is already pending deletion", row->name);
                KW_BAIL(KW_ERR_BAD_STATE);
        }
        snprintf(row->state, sizeof row->state, "pending_deletion");
        row->delete_at = time(NULL) + wait;
        return KW_OK;
}

kw_result op_key_schedule_delete(struct custody *c, const struct kw_msg *req,
                                 struct op_caller *who, struct kw_buf *reply)
{
        return mutate_key(c, req, who, "key.schedule_deletion", change_schedule, reply);
}

static kw_result change_cancel(struct custody *c, const struct kw_msg *req, struct kw_key_row *row)
{
        (void)c;
        (void)req;
        if (strcmp(row->state, "pending_deletion") != 0) {
                kw_err_set_detail("key %s is not pending deletion", row->name);
                KW_BAIL(KW_ERR_BAD_STATE);
        }
        /* as AWS KMS does: a key whose deletion is cancelled comes back disabled */
        snprintf(row->state, sizeof row->state, "disabled");
        row->delete_at = 0;
        return KW_OK;
}

kw_result op_key_cancel_delete(struct custody *c, const struct kw_msg *req,
                               struct op_caller *who, struct kw_buf *reply)
{
        return mutate_key(c, req, who, "key.cancel_deletion", change_cancel, reply);
}

static kw_result change_update(struct custody *c, const struct kw_msg *req, struct kw_key_row *row)
{
        (void)c;
        struct kw_field f = { 0 };
        char *tags = NULL, *rules = NULL;
        uint32_t ops = row->ops;
        if (kw_msg_has(req, KW_T_OPS)) {
                KW_TRY(kw_msg_get_u32(req, KW_T_OPS, &ops));
                KW_TRY(check_ops(row->type, ops));
        }
        if (kw_msg_get(req, KW_T_TAGS, &f).code == 0)
                KW_TRY(check_tags(&f, &tags));
        if (kw_msg_get(req, KW_T_RULES, &f).code == 0) {
                kw_result r = check_rules(&f, &rules);
                if (r.code != 0) {
                        free(tags);
                        return r;
                }
        }
        row->ops = ops;
        if (tags != NULL) {
                free(row->tags_json);
                row->tags_json = tags;
        }
        if (rules != NULL) {
                free(row->rules_json);
                row->rules_json = rules;
        }
        return KW_OK;
}

kw_result op_key_update(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                        struct kw_buf *reply)
{
        return mutate_key(c, req, who, "key.update", change_update, reply);
}

kw_result op_key_rotate(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                        struct kw_buf *reply)
{
        char name[65] = "";
        kw_result r = kw_msg_get_str(req, KW_T_NAME, name, sizeof name);
        if (r.code == 0 && !valid_name(name))
                r = KW_RESULT(KW_ERR_BAD_NAME);
        struct kw_key_row row;
        memset(&row, 0, sizeof row);
        struct kw_secret mat = { 0 };
        struct kw_buf blob;
        kw_buf_init(&blob, 64 * 1024);
        if (r.code == 0) {
                pthread_mutex_lock(&c->write_mu);
                r = kw_keystore_key_get(c->ks, name, &row);
                if (r.code == 0 && strcmp(row.state, "enabled") != 0 &&
                    strcmp(row.state, "disabled") != 0) {
                        kw_err_set_detail("key %s is %s and cannot be rotated", name, row.state);
                        r = KW_RESULT(KW_ERR_BAD_STATE);
                }
                if (r.code == 0 && row.current_version >= MAX_VERSIONS) {
                        kw_err_set_detail("key %s has reached %d versions", name, MAX_VERSIONS);
                        r = KW_RESULT(KW_ERR_BAD_STATE);
                }
                /* RSA: a new version is a new key pair; the row keeps the
                 * public half of the current version. */
                struct kw_buf pub;
                kw_buf_init(&pub, 4096);
                if (r.code == 0)
                        r = make_material(&row, &mat, &pub);
                if (r.code == 0)
                        r = seal_material(c, &row, row.current_version + 1, &mat, &blob);
                struct kw_audit_entry au = { .actor = who->actor, .action = "key.rotate",
                                             .key_name = name, .result = "ok",
                                             .request_id = who->request_id };
                if (r.code == 0)
                        r = kw_keystore_key_add_version(c->ks, row.id, row.current_version + 1,
                                                        blob.p, blob.len,
                                                        pub.len ? pub.p : NULL, pub.len, &au);
                kw_buf_free(&pub);
                __atomic_add_fetch(&c->gen, 1, __ATOMIC_RELEASE);
                kw_keycache_invalidate(c->kc, name);
                pthread_mutex_unlock(&c->write_mu);
        }
        kw_secret_free(&mat);
        kw_buf_free(&blob);
        kw_key_row_clear(&row);
        if (r.code != 0) {
                audit_push(c->aq, who, "key.rotate", name, r.code, kw_err_detail());
                return r;
        }
        /* answer from the database: the row as stored after the rotation */
        struct kw_ckey *e;
        KW_TRY(key_acquire(c, name, &e));
        r = reply_key(reply, &e->row, e->pub);
        kw_keycache_release(c->kc, e);
        return r;
}

struct sweep_item {
        char id[33], name[65];
};

struct sweep_ctx {
        struct sweep_item items[64];
        int n;
};

static int sweep_cb(const char *key_id, const char *name, void *arg)
{
        struct sweep_ctx *s = arg;
        if (s->n >= 64)
                return 1;
        snprintf(s->items[s->n].id, sizeof s->items[s->n].id, "%s", key_id);
        snprintf(s->items[s->n].name, sizeof s->items[s->n].name, "%s", name);
        s->n++;
        return 0;
}

void custody_sweep_deletions(struct custody *c)
{
        struct sweep_ctx s = { .n = 0 };
        if (kw_keystore_due_deletions(c->ks, time(NULL), sweep_cb, &s).code != 0)
                return;
        for (int i = 0; i < s.n; i++) {
                struct kw_audit_entry au = { .actor = "custody", .action = "key.destroy",
                                             .key_name = s.items[i].name, .result = "ok",
                                             .detail = "waiting period over" };
                pthread_mutex_lock(&c->write_mu);
                kw_result r = kw_keystore_key_destroy_due(c->ks, s.items[i].id, time(NULL), &au);
                __atomic_add_fetch(&c->gen, 1, __ATOMIC_RELEASE);
                kw_keycache_invalidate(c->kc, s.items[i].name);
                pthread_mutex_unlock(&c->write_mu);
                /* cancelled meanwhile, or (a fleet) destroyed by another
                 * node's sweeper: nothing to do */
                if (r.code == KW_ERR_BAD_STATE || r.code == KW_ERR_KEY_DESTROYED)
                        continue;
                kw_log(r.code ? KW_LOG_ERROR : KW_LOG_INFO, "key_destroyed", "key", s.items[i].name,
                       "result", kw_err_name(r.code), KW_END);
        }
}

/* ------------------------------------------------------------------ use */

kw_result custody_key_gcm_encrypt(struct custody *c, const struct op_caller *who, const char *name,
                                  const uint8_t *pt, size_t pt_len, const uint8_t *caller_aad,
                                  size_t aad_len, int verify, struct kw_buf *ret_ct,
                                  uint8_t ret_iv[12], uint8_t ret_tag[16], uint32_t *ret_version)
{
        struct kw_ckey *e = NULL;
        kw_result r = key_for_use(c, name, who, KW_KEYOP_ENCRYPT, &e);
        if (r.code == 0 && strcmp(e->row.type, "AES") != 0) {
                kw_err_set_detail("AES-GCM needs an AES key");
                r = KW_RESULT(KW_ERR_OP_NOT_ALLOWED);
        }
        /* XKS CDIV: the output is checked by a decrypt before it is returned,
         * so the key must allow decrypt too (usage, before any crypto) */
        if (r.code == 0 && verify && !(e->row.ops & KW_KEYOP_DECRYPT)) {
                kw_err_set_detail("key %s does not allow decrypt, which the integrity check needs",
                                  e->row.name);
                r = KW_RESULT(KW_ERR_OP_NOT_ALLOWED);
        }
        const struct kw_ckey_material *m = NULL;
        uint32_t ver = e ? e->row.current_version : 0;
        /* the AAD fed to AES-GCM binds the ciphertextMetadata of the version
         * used (xks_format.h) */
        struct kw_buf bound;
        kw_buf_init(&bound, KW_XKS_AAD_MAX + 2 + 1 + 16);
        if (r.code == 0) {
                char md[16];
                size_t mdn = kw_xks_md_format(ver, md);
                r = kw_xks_aad_bind(caller_aad, aad_len, (const uint8_t *)md, mdn, &bound);
        }
        if (r.code == 0)
                r = kw_ckey_material(e, ver, material_loader, c, &m);
        uint8_t iv[12], tag[16];
        if (r.code == 0)
                r = kw_random_nonce(iv, sizeof iv);
        if (r.code == 0)
                r = kw_buf_reserve(ret_ct, pt_len);
        if (r.code == 0)
                r = kw_aes_gcm_encrypt(m->aes.p, m->aes.len, iv, 12, bound.p, bound.len, pt, pt_len,
                                       ret_ct->p, tag, 16);
        if (r.code == 0)
                ret_ct->len = pt_len;
        if (r.code == 0 && verify) {
                struct kw_buf chk;
                kw_buf_init(&chk, 65536);
                r = kw_buf_reserve(&chk, pt_len);
                if (r.code == 0)
                        r = kw_aes_gcm_decrypt(m->aes.p, m->aes.len, iv, 12, bound.p, bound.len,
                                               ret_ct->p, pt_len, tag, 16, chk.p);
                if (r.code == 0 && pt_len != 0 && !kw_ct_equal(chk.p, pt, pt_len))
                        r = KW_RESULT(KW_ERR_CRYPTO);
                if (r.code != 0) {
                        kw_err_set_detail("the ciphertext did not decrypt back to the plaintext");
                        r = KW_RESULT(KW_ERR_CRYPTO);
                }
                chk.len = pt_len;
                kw_buf_free(&chk);
        }
        if (r.code == 0) {
                memcpy(ret_iv, iv, 12);
                memcpy(ret_tag, tag, 16);
                *ret_version = ver;
        }
        kw_buf_free(&bound);
        kw_keycache_release(c->kc, e);
        use_audit(c, who, "key.encrypt", name, r);
        return r;
}

kw_result custody_key_gcm_decrypt(struct custody *c, const struct op_caller *who, const char *name,
                                  uint32_t ver, const uint8_t *ct, size_t ct_len,
                                  const uint8_t *iv, size_t iv_len, const uint8_t *tag,
                                  size_t tag_len, const uint8_t *caller_aad, size_t aad_len,
                                  const uint8_t *md, size_t md_len, struct kw_buf *ret_pt)
{
        struct kw_ckey *e = NULL;
        kw_result r = key_for_use(c, name, who, KW_KEYOP_DECRYPT, &e);
        if (r.code == 0 && strcmp(e->row.type, "AES") != 0) {
                kw_err_set_detail("AES-GCM needs an AES key");
                r = KW_RESULT(KW_ERR_OP_NOT_ALLOWED);
        }
        if (r.code == 0 && (iv_len != 12 || tag_len != 16))
                r = KW_RESULT(KW_ERR_DECRYPT);
        /* a version this key never had cannot have produced the ciphertext */
        if (r.code == 0 && (ver < 1 || ver > e->row.current_version))
                r = KW_RESULT(KW_ERR_DECRYPT);
        struct kw_buf bound;
        kw_buf_init(&bound, KW_XKS_AAD_MAX + 2 + 1 + 256);
        if (r.code == 0 && kw_xks_aad_bind(caller_aad, aad_len, md, md_len, &bound).code != 0)
                r = KW_RESULT(KW_ERR_DECRYPT);
        const struct kw_ckey_material *m = NULL;
        if (r.code == 0)
                r = kw_ckey_material(e, ver, material_loader, c, &m);
        if (r.code == 0)
                r = kw_buf_reserve(ret_pt, ct_len);
        if (r.code == 0)
                r = kw_aes_gcm_decrypt(m->aes.p, m->aes.len, iv, iv_len, bound.p, bound.len, ct,
                                       ct_len, tag, tag_len, ret_pt->p);
        if (r.code == 0)
                ret_pt->len = ct_len;
        kw_buf_free(&bound);
        kw_keycache_release(c->kc, e);
        use_audit(c, who, "key.decrypt", name, r);
        return r;
}

static const char *oaep_md(uint32_t alg)
{
        return alg == KW_ALG_RSA_OAEP_256 ? "SHA256" : "SHA1";
}

static kw_result check_alg(const struct kw_ckey *e, uint32_t alg)
{
        int aes = strcmp(e->row.type, "AES") == 0;
        int ok = aes ? (alg == KW_ALG_A256KW || alg == KW_ALG_A256KWP)
                     : (alg == KW_ALG_RSA_OAEP_256 || alg == KW_ALG_RSA_OAEP);
        if (!ok) {
                kw_err_set_detail("algorithm not valid for an %s key", e->row.type);
                KW_BAIL(KW_ERR_UNSUPPORTED_ALG);
        }
        return KW_OK;
}

kw_result op_wrap(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                  struct kw_buf *reply)
{
        struct kw_ckey *e = NULL;
        struct kw_field in = { 0 };
        uint32_t alg = 0;
        char name[65] = "";
        kw_result r = kw_msg_get_str(req, KW_T_NAME, name, sizeof name);
        if (r.code == 0)
                r = key_for_use(c, name, who, KW_KEYOP_WRAP, &e);
        if (r.code == 0)
                r = kw_msg_get_u32(req, KW_T_ALG, &alg);
        if (r.code == 0)
                r = check_alg(e, alg);
        if (r.code == 0)
                r = kw_msg_get(req, KW_T_DATA, &in);
        struct kw_buf out;
        kw_buf_init(&out, 65536);
        uint32_t ver = e ? e->row.current_version : 0;
        if (r.code == 0 && (alg == KW_ALG_A256KW || alg == KW_ALG_A256KWP)) {
                const struct kw_ckey_material *m = NULL;
                r = kw_ckey_material(e, ver, material_loader, c, &m);
                if (r.code == 0)
                        r = alg == KW_ALG_A256KW ? kw_aes_kw_wrap(m->aes.p, m->aes.len, in.p, in.len, &out)
                                                 : kw_aes_kwp_wrap(m->aes.p, m->aes.len, in.p, in.len, &out);
        } else if (r.code == 0) {
                /* the public half of the current version: no unsealing needed */
                r = kw_rsa_oaep_encrypt(e->pub, oaep_md(alg), in.p, in.len, &out);
        }
        if (r.code == 0)
                r = kw_msg_put(reply, KW_T_DATA, out.p, out.len);
        if (r.code == 0)
                r = kw_msg_put_u32(reply, KW_T_VERSION, ver);
        kw_buf_free(&out);
        kw_keycache_release(c->kc, e);
        use_audit(c, who, "key.wrap", name, r);
        return r;
}

/* One unwrap attempt with the material of version ver. */
static kw_result unwrap_with(struct custody *c, struct kw_ckey *e, uint32_t alg, uint32_t ver,
                             const struct kw_field *in, struct kw_secret *ret)
{
        const struct kw_ckey_material *m = NULL;
        KW_TRY(kw_ckey_material(e, ver, material_loader, c, &m));
        if (alg == KW_ALG_A256KW)
                return kw_aes_kw_unwrap(m->aes.p, m->aes.len, in->p, in->len, ret);
        if (alg == KW_ALG_A256KWP)
                return kw_aes_kwp_unwrap(m->aes.p, m->aes.len, in->p, in->len, ret);
        return kw_rsa_oaep_decrypt(m->pkey, oaep_md(alg), in->p, in->len, ret);
}

/*
 * Unwrap with the version the caller names, or, when it names none (EKM:
 * wrapped keys carry no version), with each version from the current one
 * down until one authenticates, so that values wrapped before a rotation
 * still unwrap.  A failure tries every version, whatever the input, and
 * answers KW_ERR_DECRYPT like any single failed unwrap.
 */
kw_result op_unwrap(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                    struct kw_buf *reply)
{
        struct kw_ckey *e = NULL;
        struct kw_field in = { 0 };
        uint32_t alg = 0, ver = 0, lowest = 0;
        char name[65] = "";
        kw_result r = kw_msg_get_str(req, KW_T_NAME, name, sizeof name);
        if (r.code == 0)
                r = key_for_use(c, name, who, KW_KEYOP_UNWRAP, &e);
        if (r.code == 0)
                r = kw_msg_get_u32(req, KW_T_ALG, &alg);
        if (r.code == 0)
                r = check_alg(e, alg);
        if (r.code == 0)
                r = kw_msg_get(req, KW_T_DATA, &in);
        if (r.code == 0) {
                ver = e->row.current_version;
                lowest = 1;
                if (kw_msg_has(req, KW_T_VERSION)) {
                        r = kw_msg_get_u32(req, KW_T_VERSION, &ver);
                        lowest = ver;
                }
                if (r.code == 0 && (ver < 1 || ver > e->row.current_version))
                        r = KW_RESULT(KW_ERR_DECRYPT);
        }
        struct kw_secret out = { 0 };
        if (r.code == 0) {
                for (;;) {
                        r = unwrap_with(c, e, alg, ver, &in, &out);
                        if (r.code != KW_ERR_DECRYPT || ver == lowest)
                                break;
                        ver--;
                }
        }
        if (r.code == 0)
                r = kw_msg_put(reply, KW_T_DATA, out.p, out.len);
        if (r.code == 0)
                r = kw_msg_put_u32(reply, KW_T_VERSION, ver);
        kw_secret_free(&out);
        kw_keycache_release(c->kc, e);
        use_audit(c, who, "key.unwrap", name, r);
        return r;
}
