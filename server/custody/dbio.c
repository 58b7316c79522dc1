/*
 * dbio.c - the key store export document: build, parse, checksum
 * (contract and format in dbio.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <openssl/evp.h>

#include "../common/b64.h"
#include "../common/json_io.h"
#include "../common/names.h"
#include "../common/secret.h"
#include "crypto.h"
#include "dbio.h"
#include "rules.h"

#define CHECKSUM_TAG "keyward-export-checksum-v1"
#define NOTICE                                                                              \
        "Sealed key material (HSM master key output, bound to key id and version), token " \
        "SHA-256 hashes, console users' argon2id hashes and sealed XKS secrets only: no "  \
        "clear secret. Useless without the HSM master key named here."
#define TIME_MAX ((int64_t)1 << 53)   /* exact in a JSON number */

static const char *const op_names[4] = { "encrypt", "decrypt", "wrap", "unwrap" };

/* ------------------------------------------------------------- the doc */

void kw_dbio_doc_init(struct kw_dbio_doc *d) { memset(d, 0, sizeof *d); }

static void key_free(struct kw_dbio_key *k)
{
        for (size_t i = 0; i < k->nversions; i++)
                free(k->versions[i].blob);
        free(k->versions);
        kw_key_row_clear(&k->row);
        memset(k, 0, sizeof *k);
}

void kw_dbio_doc_free(struct kw_dbio_doc *d)
{
        if (d == NULL)
                return;
        for (size_t i = 0; i < d->nkeys; i++)
                key_free(&d->keys[i]);
        free(d->keys);
        free(d->tokens);
        if (d->users != NULL)
                kw_wipe(d->users, d->nusers * sizeof *d->users);
        free(d->users);
        for (size_t i = 0; i < d->nstores; i++) {
                if (d->stores[i].creds != NULL)
                        kw_wipe(d->stores[i].creds, d->stores[i].ncreds * sizeof *d->stores[i].creds);
                free(d->stores[i].creds);
        }
        free(d->stores);
        memset(d, 0, sizeof *d);
}

void kw_dbio_counts(const struct kw_dbio_doc *d, struct kw_dbio_counts *ret)
{
        struct kw_dbio_counts c;
        memset(&c, 0, sizeof c);
        c.keys = d->nkeys;
        for (size_t i = 0; i < d->nkeys; i++) {
                c.destroyed += strcmp(d->keys[i].row.state, "destroyed") == 0;
                c.versions += d->keys[i].nversions;
        }
        c.tokens = d->ntokens;
        c.users = d->nusers;
        c.xks_stores = d->nstores;
        for (size_t i = 0; i < d->nstores; i++)
                c.xks_credentials += d->stores[i].ncreds;
        *ret = c;
}

/* Room for one more element in *arr (n used of *cap, elements of size). */
static kw_result grow(void **arr, size_t *cap, size_t n, size_t size)
{
        if (n < *cap)
                return KW_OK;
        size_t nc = *cap ? *cap * 2 : 16;
        KW_ENSURE(nc > n && nc <= SIZE_MAX / size, KW_ERR_NOMEM);
        void *p = realloc(*arr, nc * size);
        KW_ENSURE(p != NULL, KW_ERR_NOMEM);
        memset((uint8_t *)p + *cap * size, 0, (nc - *cap) * size);
        *arr = p;
        *cap = nc;
        return KW_OK;
}

static kw_result dup_str(const char *s, char **ret)
{
        char *p = strdup(s != NULL ? s : "{}");
        KW_ENSURE(p != NULL, KW_ERR_NOMEM);
        *ret = p;
        return KW_OK;
}

kw_result kw_dbio_add_key(struct kw_dbio_doc *d, const struct kw_key_row *row,
                          struct kw_dbio_key **ret_key)
{
        KW_ENSURE(d != NULL && row != NULL, KW_ERR_INPUT);
        KW_ENSURE(d->nkeys < KW_DBIO_MAX_KEYS, KW_ERR_TOO_LARGE);
        KW_TRY(grow((void **)&d->keys, &d->keys_cap, d->nkeys, sizeof *d->keys));
        struct kw_dbio_key k;
        memset(&k, 0, sizeof k);
        k.row = *row;
        k.row.tags_json = k.row.rules_json = NULL;
        k.row.public_der = NULL;
        k.row.public_der_len = 0;
        kw_result r = dup_str(row->tags_json, &k.row.tags_json);
        if (kw_ok(r))
                r = dup_str(row->rules_json, &k.row.rules_json);
        if (kw_ok(r) && row->public_der != NULL && row->public_der_len != 0) {
                k.row.public_der = malloc(row->public_der_len);
                if (k.row.public_der == NULL) {
                        r = KW_RESULT(KW_ERR_NOMEM);
                } else {
                        memcpy(k.row.public_der, row->public_der, row->public_der_len);
                        k.row.public_der_len = row->public_der_len;
                }
        }
        if (!kw_ok(r)) {
                kw_key_row_clear(&k.row);
                return r;
        }
        d->keys[d->nkeys] = k;
        if (ret_key != NULL)
                *ret_key = &d->keys[d->nkeys];
        d->nkeys++;
        return KW_OK;
}

kw_result kw_dbio_add_version(struct kw_dbio_key *k, uint32_t version, int64_t created,
                              const uint8_t *blob, size_t blob_len)
{
        KW_ENSURE(k != NULL && blob != NULL && blob_len != 0, KW_ERR_INPUT);
        KW_ENSURE(blob_len <= KW_DBIO_BLOB_MAX, KW_ERR_TOO_LARGE);
        KW_ENSURE(k->nversions < KW_DBIO_MAX_VERSIONS, KW_ERR_TOO_LARGE);
        KW_TRY(grow((void **)&k->versions, &k->cap, k->nversions, sizeof *k->versions));
        uint8_t *b = malloc(blob_len);
        KW_ENSURE(b != NULL, KW_ERR_NOMEM);
        memcpy(b, blob, blob_len);
        k->versions[k->nversions++] = (struct kw_dbio_version){ version, created, b, blob_len };
        return KW_OK;
}

kw_result kw_dbio_add_token(struct kw_dbio_doc *d, const struct kw_token_row *row,
                            const uint8_t hash[32])
{
        KW_ENSURE(d != NULL && row != NULL && hash != NULL, KW_ERR_INPUT);
        KW_ENSURE(d->ntokens < KW_DBIO_MAX_ROWS, KW_ERR_TOO_LARGE);
        KW_TRY(grow((void **)&d->tokens, &d->tokens_cap, d->ntokens, sizeof *d->tokens));
        d->tokens[d->ntokens].row = *row;
        memcpy(d->tokens[d->ntokens].hash, hash, 32);
        d->ntokens++;
        return KW_OK;
}

kw_result kw_dbio_add_user(struct kw_dbio_doc *d, const struct kw_user_row *row)
{
        KW_ENSURE(d != NULL && row != NULL, KW_ERR_INPUT);
        KW_ENSURE(d->nusers < KW_DBIO_MAX_ROWS, KW_ERR_TOO_LARGE);
        KW_TRY(grow((void **)&d->users, &d->users_cap, d->nusers, sizeof *d->users));
        d->users[d->nusers++] = *row;
        return KW_OK;
}

kw_result kw_dbio_add_xks_store(struct kw_dbio_doc *d, const struct kw_xks_store_row *row)
{
        KW_ENSURE(d != NULL && row != NULL, KW_ERR_INPUT);
        KW_ENSURE(d->nstores < KW_DBIO_MAX_ROWS, KW_ERR_TOO_LARGE);
        KW_TRY(grow((void **)&d->stores, &d->stores_cap, d->nstores, sizeof *d->stores));
        memset(&d->stores[d->nstores], 0, sizeof d->stores[d->nstores]);
        d->stores[d->nstores++].row = *row;
        return KW_OK;
}

kw_result kw_dbio_add_xks_cred(struct kw_dbio_doc *d, const struct kw_xks_cred_row *cred)
{
        KW_ENSURE(d != NULL && cred != NULL, KW_ERR_INPUT);
        if (!cred->is_sealed || cred->secret_len == 0 || cred->secret_len > sizeof cred->secret) {
                kw_err_set_detail("XKS credential %s of store %s is not stored sealed", cred->akid,
                                  cred->store);
                KW_BAIL(KW_ERR_INPUT);
        }
        for (size_t i = 0; i < d->nstores; i++) {
                struct kw_dbio_xks_store *s = &d->stores[i];
                if (strcmp(s->row.name, cred->store) != 0)
                        continue;
                KW_ENSURE(s->ncreds < KW_DBIO_MAX_CREDS, KW_ERR_TOO_LARGE);
                KW_TRY(grow((void **)&s->creds, &s->cap, s->ncreds, sizeof *s->creds));
                s->creds[s->ncreds++] = *cred;
                return KW_OK;
        }
        kw_err_set_detail("XKS credential %s names store %s, which is not in the export",
                          cred->akid, cred->store);
        KW_BAIL(KW_ERR_NOT_FOUND);
}

void kw_dbio_hex(const uint8_t *p, size_t n, char *out)
{
        static const char hx[] = "0123456789abcdef";
        for (size_t i = 0; i < n; i++) {
                out[2 * i] = hx[p[i] >> 4];
                out[2 * i + 1] = hx[p[i] & 15];
        }
        out[2 * n] = '\0';
}

/* ------------------------------------------------------------ checksum */

static int member_cmp(const void *a, const void *b)
{
        const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
        return strcmp(x->string ? x->string : "", y->string ? y->string : "");
}

/* Sorts every object's members by name, at every level, in place. */
static kw_result canon_sort(cJSON *v, int depth)
{
        KW_ENSURE(depth < 64, KW_ERR_BAD_JSON);
        if (!cJSON_IsObject(v) && !cJSON_IsArray(v))
                return KW_OK;
        size_t n = 0;
        for (cJSON *c = v->child; c != NULL; c = c->next) {
                KW_TRY(canon_sort(c, depth + 1));
                n++;
        }
        if (!cJSON_IsObject(v) || n < 2)
                return KW_OK;
        cJSON **a = calloc(n, sizeof *a);
        KW_ENSURE(a != NULL, KW_ERR_NOMEM);
        size_t i = 0;
        for (cJSON *c = v->child; c != NULL; c = c->next)
                a[i++] = c;
        qsort(a, n, sizeof *a, member_cmp);
        for (i = 0; i < n; i++) {
                a[i]->prev = i == 0 ? a[n - 1] : a[i - 1];   /* cJSON: head->prev is the tail */
                a[i]->next = i + 1 < n ? a[i + 1] : NULL;
        }
        v->child = a[0];
        free(a);
        return KW_OK;
}

/* The canonical form of a stored JSON object (NULL: "{}"), appended to out
 * as a length-prefixed field. */
static kw_result put_canon_json(struct kw_buf *out, const char *json, const char *what,
                                const char *key)
{
        cJSON *v = cJSON_Parse(json != NULL ? json : "{}");
        if (v == NULL || !cJSON_IsObject(v)) {
                cJSON_Delete(v);
                kw_err_set_detail("key %s: its %s are not a JSON object", key, what);
                KW_BAIL(KW_ERR_BAD_JSON);
        }
        kw_result r = canon_sort(v, 0);
        char *s = kw_ok(r) ? cJSON_PrintUnformatted(v) : NULL;
        cJSON_Delete(v);
        KW_TRY(r);
        KW_ENSURE(s != NULL, KW_ERR_NOMEM);
        size_t n = strlen(s);
        r = kw_buf_put_u32be(out, (uint32_t)n);
        if (kw_ok(r))
                r = kw_buf_put(out, s, n);
        cJSON_free(s);
        return r;
}

static kw_result put_field(struct kw_buf *out, const void *p, size_t n)
{
        KW_ENSURE(n < 0xffffffffu, KW_ERR_TOO_LARGE);
        KW_TRY(kw_buf_put_u32be(out, (uint32_t)n));
        return kw_buf_put(out, p, n);
}

static kw_result put_str(struct kw_buf *out, const char *s) { return put_field(out, s, strlen(s)); }

static kw_result put_u64(struct kw_buf *out, uint64_t v)
{
        char t[24];
        int n = snprintf(t, sizeof t, "%llu", (unsigned long long)v);
        return put_field(out, t, (size_t)n);
}

static int key_id_cmp(const void *a, const void *b)
{
        const struct kw_dbio_key *x = *(const struct kw_dbio_key *const *)a;
        const struct kw_dbio_key *y = *(const struct kw_dbio_key *const *)b;
        return strcmp(x->row.id, y->row.id);
}

static kw_result checksum_key(struct kw_buf *b, const struct kw_dbio_key *k)
{
        const struct kw_key_row *row = &k->row;
        KW_TRY(put_str(b, row->id));
        KW_TRY(put_str(b, row->name));
        KW_TRY(put_str(b, row->type));
        KW_TRY(put_u64(b, row->size));
        KW_TRY(put_str(b, row->state));
        if (strcmp(row->state, "destroyed") == 0)
                return KW_OK;
        KW_TRY(put_u64(b, row->ops));
        KW_TRY(put_u64(b, row->current_version));
        KW_TRY(put_canon_json(b, row->tags_json, "tags", row->name));
        KW_TRY(put_canon_json(b, row->rules_json, "rules", row->name));
        if (row->public_der != NULL && row->public_der_len != 0)
                KW_TRY(put_field(b, row->public_der, row->public_der_len));
        else
                KW_TRY(kw_buf_put_u32be(b, 0xffffffffu));
        KW_TRY(put_u64(b, k->nversions));
        for (size_t i = 0; i < k->nversions; i++) {
                uint8_t h[32];
                kw_sha256(k->versions[i].blob, k->versions[i].blob_len, h);
                KW_TRY(put_u64(b, k->versions[i].version));
                KW_TRY(kw_buf_put(b, h, sizeof h));
        }
        return KW_OK;
}

kw_result kw_dbio_checksum(const struct kw_dbio_doc *d, uint8_t ret[32])
{
        KW_ENSURE(d != NULL && ret != NULL, KW_ERR_INPUT);
        const struct kw_dbio_key **order = NULL;
        if (d->nkeys != 0) {
                order = calloc(d->nkeys, sizeof *order);
                KW_ENSURE(order != NULL, KW_ERR_NOMEM);
                for (size_t i = 0; i < d->nkeys; i++)
                        order[i] = &d->keys[i];
                qsort(order, d->nkeys, sizeof *order, key_id_cmp);
        }
        /* streamed through SHA-256 one key at a time */
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        kw_result r = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
                                      EVP_DigestUpdate(ctx, CHECKSUM_TAG, sizeof CHECKSUM_TAG) == 1
                              ? KW_OK
                              : KW_RESULT(KW_ERR_CRYPTO);
        struct kw_buf b;
        kw_buf_init(&b, 1u << 20);
        for (size_t i = 0; kw_ok(r) && i < d->nkeys; i++) {
                kw_buf_reset(&b);
                r = checksum_key(&b, order[i]);
                if (kw_ok(r) && EVP_DigestUpdate(ctx, b.p, b.len) != 1)
                        r = KW_RESULT(KW_ERR_CRYPTO);
        }
        unsigned int hn = 0;
        uint8_t h[EVP_MAX_MD_SIZE];
        if (kw_ok(r) && (EVP_DigestFinal_ex(ctx, h, &hn) != 1 || hn != 32))
                r = KW_RESULT(KW_ERR_CRYPTO);
        if (kw_ok(r))
                memcpy(ret, h, 32);
        kw_buf_free(&b);
        EVP_MD_CTX_free(ctx);
        free(order);
        return r;
}

/* --------------------------------------------------------------- write */

static kw_result add_b64(cJSON *o, const char *name, const uint8_t *p, size_t n)
{
        struct kw_buf enc;
        kw_buf_init(&enc, 2 * KW_DBIO_BLOB_MAX + 64);
        const char *s = NULL;
        kw_result r = kw_b64_encode(p, n, &enc);
        if (kw_ok(r))
                r = kw_buf_cstr(&enc, &s);
        if (kw_ok(r) && cJSON_AddStringToObject(o, name, s) == NULL)
                r = KW_RESULT(KW_ERR_NOMEM);
        kw_buf_free(&enc);
        return r;
}

static kw_result add_num(cJSON *o, const char *name, double v)
{
        KW_ENSURE(cJSON_AddNumberToObject(o, name, v) != NULL, KW_ERR_NOMEM);
        return KW_OK;
}

static kw_result add_str(cJSON *o, const char *name, const char *v)
{
        KW_ENSURE(cJSON_AddStringToObject(o, name, v) != NULL, KW_ERR_NOMEM);
        return KW_OK;
}

static kw_result add_parsed(cJSON *o, const char *name, const char *json)
{
        cJSON *v = cJSON_Parse(json != NULL ? json : "{}");
        if (v == NULL || !cJSON_IsObject(v)) {
                cJSON_Delete(v);
                kw_err_set_detail("a key's %s are not a JSON object", name);
                KW_BAIL(KW_ERR_BAD_JSON);
        }
        if (!cJSON_AddItemToObject(o, name, v)) {
                cJSON_Delete(v);
                KW_BAIL(KW_ERR_NOMEM);
        }
        return KW_OK;
}

static kw_result write_key(cJSON *arr, const struct kw_dbio_key *k)
{
        const struct kw_key_row *row = &k->row;
        cJSON *o = cJSON_CreateObject();
        KW_ENSURE(o != NULL, KW_ERR_NOMEM);
        if (!cJSON_AddItemToArray(arr, o)) {
                cJSON_Delete(o);
                KW_BAIL(KW_ERR_NOMEM);
        }
        KW_TRY(add_str(o, "id", row->id));
        KW_TRY(add_str(o, "name", row->name));
        KW_TRY(add_str(o, "type", row->type));
        KW_TRY(add_num(o, "size", row->size));
        KW_TRY(add_str(o, "state", row->state));
        KW_TRY(add_num(o, "created", (double)row->created));
        KW_TRY(add_num(o, "updated", (double)row->updated));
        if (strcmp(row->state, "destroyed") == 0)
                return KW_OK;   /* a tombstone */
        cJSON *ops = cJSON_AddArrayToObject(o, "operations");
        KW_ENSURE(ops != NULL, KW_ERR_NOMEM);
        for (int i = 0; i < 4; i++) {
                if (!(row->ops & (1u << i)))
                        continue;
                cJSON *s = cJSON_CreateString(op_names[i]);
                if (s == NULL || !cJSON_AddItemToArray(ops, s)) {
                        cJSON_Delete(s);
                        KW_BAIL(KW_ERR_NOMEM);
                }
        }
        KW_TRY(add_num(o, "current_version", row->current_version));
        KW_TRY(add_num(o, "delete_at", (double)row->delete_at));
        KW_TRY(add_parsed(o, "tags", row->tags_json));
        KW_TRY(add_parsed(o, "rules", row->rules_json));
        if (row->public_der != NULL && row->public_der_len != 0)
                KW_TRY(add_b64(o, "public_der", row->public_der, row->public_der_len));
        else
                KW_ENSURE(cJSON_AddNullToObject(o, "public_der") != NULL, KW_ERR_NOMEM);
        cJSON *vs = cJSON_AddArrayToObject(o, "versions");
        KW_ENSURE(vs != NULL, KW_ERR_NOMEM);
        for (size_t i = 0; i < k->nversions; i++) {
                cJSON *v = cJSON_CreateObject();
                if (v == NULL || !cJSON_AddItemToArray(vs, v)) {
                        cJSON_Delete(v);
                        KW_BAIL(KW_ERR_NOMEM);
                }
                KW_TRY(add_num(v, "version", k->versions[i].version));
                KW_TRY(add_num(v, "created", (double)k->versions[i].created));
                KW_TRY(add_b64(v, "blob", k->versions[i].blob, k->versions[i].blob_len));
        }
        return KW_OK;
}

static kw_result write_rows(cJSON *doc, const struct kw_dbio_doc *d)
{
        cJSON *keys = cJSON_AddArrayToObject(doc, "keys");
        KW_ENSURE(keys != NULL, KW_ERR_NOMEM);
        for (size_t i = 0; i < d->nkeys; i++)
                KW_TRY(write_key(keys, &d->keys[i]));
        cJSON *toks = cJSON_AddArrayToObject(doc, "tokens");
        KW_ENSURE(toks != NULL, KW_ERR_NOMEM);
        for (size_t i = 0; i < d->ntokens; i++) {
                const struct kw_dbio_token *t = &d->tokens[i];
                cJSON *o = cJSON_CreateObject();
                if (o == NULL || !cJSON_AddItemToArray(toks, o)) {
                        cJSON_Delete(o);
                        KW_BAIL(KW_ERR_NOMEM);
                }
                char hex[65];
                kw_dbio_hex(t->hash, 32, hex);
                KW_TRY(add_str(o, "id", t->row.id));
                KW_TRY(add_str(o, "name", t->row.name));
                KW_TRY(add_str(o, "role", t->row.role));
                KW_TRY(add_str(o, "sha256", hex));
                KW_TRY(add_num(o, "created", (double)t->row.created));
                KW_TRY(add_num(o, "revoked", (double)t->row.revoked));
        }
        cJSON *users = cJSON_AddArrayToObject(doc, "users");
        KW_ENSURE(users != NULL, KW_ERR_NOMEM);
        for (size_t i = 0; i < d->nusers; i++) {
                const struct kw_user_row *u = &d->users[i];
                cJSON *o = cJSON_CreateObject();
                if (o == NULL || !cJSON_AddItemToArray(users, o)) {
                        cJSON_Delete(o);
                        KW_BAIL(KW_ERR_NOMEM);
                }
                KW_TRY(add_str(o, "name", u->name));
                KW_TRY(add_str(o, "role", u->role));
                KW_TRY(add_str(o, "hash", u->hash));
                KW_TRY(add_num(o, "created", (double)u->created));
        }
        cJSON *stores = cJSON_AddArrayToObject(doc, "xks_stores");
        KW_ENSURE(stores != NULL, KW_ERR_NOMEM);
        for (size_t i = 0; i < d->nstores; i++) {
                const struct kw_dbio_xks_store *s = &d->stores[i];
                cJSON *o = cJSON_CreateObject();
                if (o == NULL || !cJSON_AddItemToArray(stores, o)) {
                        cJSON_Delete(o);
                        KW_BAIL(KW_ERR_NOMEM);
                }
                KW_TRY(add_str(o, "name", s->row.name));
                KW_TRY(add_str(o, "uri_prefix", s->row.uri_prefix));
                KW_TRY(add_str(o, "region", s->row.region));
                KW_TRY(add_num(o, "created", (double)s->row.created));
                cJSON *creds = cJSON_AddArrayToObject(o, "credentials");
                KW_ENSURE(creds != NULL, KW_ERR_NOMEM);
                for (size_t j = 0; j < s->ncreds; j++) {
                        cJSON *c = cJSON_CreateObject();
                        if (c == NULL || !cJSON_AddItemToArray(creds, c)) {
                                cJSON_Delete(c);
                                KW_BAIL(KW_ERR_NOMEM);
                        }
                        KW_TRY(add_str(c, "access_key_id", s->creds[j].akid));
                        KW_TRY(add_b64(c, "secret_sealed", s->creds[j].secret,
                                       s->creds[j].secret_len));
                        KW_TRY(add_num(c, "created", (double)s->creds[j].created));
                }
        }
        return KW_OK;
}

static kw_result write_header(cJSON *doc, const struct kw_dbio_doc *d, const uint8_t sum[32])
{
        KW_TRY(add_str(doc, "format", KW_DBIO_FORMAT));
        KW_TRY(add_num(doc, "version", KW_DBIO_VERSION));
        KW_TRY(add_str(doc, "notice", NOTICE));
        KW_TRY(add_str(doc, "engine", d->engine));
        KW_TRY(add_str(doc, "master_key_label", d->master_key_label));
        KW_TRY(add_str(doc, "created", d->created));
        struct kw_dbio_counts c;
        kw_dbio_counts(d, &c);
        cJSON *co = cJSON_AddObjectToObject(doc, "counts");
        KW_ENSURE(co != NULL, KW_ERR_NOMEM);
        KW_TRY(add_num(co, "keys", (double)c.keys));
        KW_TRY(add_num(co, "destroyed", (double)c.destroyed));
        KW_TRY(add_num(co, "versions", (double)c.versions));
        KW_TRY(add_num(co, "tokens", (double)c.tokens));
        KW_TRY(add_num(co, "users", (double)c.users));
        KW_TRY(add_num(co, "xks_stores", (double)c.xks_stores));
        KW_TRY(add_num(co, "xks_credentials", (double)c.xks_credentials));
        char hex[65];
        kw_dbio_hex(sum, 32, hex);
        return add_str(doc, "checksum", hex);
}

kw_result kw_dbio_write(const struct kw_dbio_doc *d, struct kw_buf *out)
{
        KW_ENSURE(d != NULL && out != NULL, KW_ERR_INPUT);
        uint8_t sum[32];
        KW_TRY(kw_dbio_checksum(d, sum));
        cJSON *doc = cJSON_CreateObject();
        KW_ENSURE(doc != NULL, KW_ERR_NOMEM);
        kw_result r = write_header(doc, d, sum);
        if (kw_ok(r))
                r = write_rows(doc, d);
        char *s = kw_ok(r) ? cJSON_Print(doc) : NULL;
        cJSON_Delete(doc);
        if (kw_ok(r) && s == NULL)
                r = KW_RESULT(KW_ERR_NOMEM);
        if (kw_ok(r))
                r = kw_buf_put(out, s, strlen(s));
        if (kw_ok(r))
                r = kw_buf_put(out, "\n", 1);
        cJSON_free(s);
        return r;
}

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
                        if (strcmp(it->valuestring, op_names[i]) == 0)
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
