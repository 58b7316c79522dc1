/*
 * dbio.c - the key store export document: build, checksum and write
 * (contract and format in dbio.h); its strict parser is in dbio_parse.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <openssl/evp.h>

#include "../common/b64.h"
#include "../common/json_io.h"
#include "crypto.h"
#include "dbio.h"
#include "dbio_int.h"

#define CHECKSUM_TAG "keyward-export-checksum-v1"
#define NOTICE                                                                              \
        "Sealed key material (HSM master key output, bound to key id and version), token " \
        "SHA-256 hashes, console users' argon2id hashes and sealed XKS secrets only: no "  \
        "clear secret. Useless without the HSM master key named here."

/* bit i of a key's operations mask (KW_KEYOP_*) */
const char *const kw_dbio_op_names[4] = { "encrypt", "decrypt", "wrap", "unwrap" };

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
                cJSON *s = cJSON_CreateString(kw_dbio_op_names[i]);
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
