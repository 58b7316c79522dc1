/*
 * custody_xks.c - AWS XKS in the custody process: the SigV4 credentials of
 * every key store (from the configuration and from the database), signature
 * verification, and the admin operations on API-created stores.
 *
 * Privilege separation (docs/xks.md): the SigV4 secret access keys are
 * credentials, so only this process holds them (in secure memory).  The
 * front sends the string to sign it built and the signature it received;
 * here the signing key is derived (HMAC chain) and kept, per (key id, day,
 * region, service), only as an HMAC context keyed with it (OpenSSL's heap
 * in this process; wiped when freed), which is duplicated per request; the
 * signature is compared in constant time.  The request time is checked again against this
 * process's clock, so a front cannot replay an old string to sign.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "../common/b64.h"
#include "../common/log.h"
#include "../common/secret.h"
#include "../common/ratelimit.h"
#include "../common/sigv4_sts.h"
#include "crypto.h"
#include "custody_int.h"
#include "sigv4_key.h"

#define XKS_MAX_STORES 64            /* configured + created through the API */
#define XKS_MAX_CREDS (2 * XKS_MAX_STORES)
#define XKS_KEEP_CREDS 2             /* active pairs per store (rotation)    */
#define XKS_KCACHE 64                /* derived signing keys kept            */
#define XKS_DEFAULT_STORE "default"  /* the store of [aws_xks_config]        */
#define XKS_AKID_LEN 20
#define XKS_SECRET_RAW 32            /* base64: 44 characters                */

struct xks_store {
        char name[33];
        char prefix[129];
        char region[65];
        char service[65];
        int from_config;
        struct kw_ratelimit rl;      /* charged after the signature verified */
};

struct xks_cred {
        char store[33];
        char akid[KW_SIGV4_MAX_AKID + 1];
        struct kw_secret secret;
        int64_t created;
};

struct xks_kentry {
        char akid[KW_SIGV4_MAX_AKID + 1];
        char date[9];
        char region[65];
        char service[65];
        uint64_t used;
        EVP_MAC_CTX *mac;            /* HMAC keyed with the signing key; NULL: free slot */
};

struct xks_state {
        struct custody *c;           /* the HSM that seals stored secrets    */
        struct xks_cred cfg_creds[2 * KW_XKS_MAX_STORES + 2];  /* from the file, once */
        size_t n_cfg_creds;
        pthread_rwlock_t mu;         /* stores and creds                     */
        struct xks_store stores[XKS_MAX_STORES];
        size_t n_stores;
        struct xks_cred creds[XKS_MAX_CREDS];
        size_t n_creds;
        uint64_t gen;                /* bumped on every change               */
        pthread_mutex_t kmu;         /* the derived-key cache                */
        struct xks_kentry kc[XKS_KCACHE];
        uint64_t tick;
};

/* ------------------------------------------------------------ the table */

static struct xks_store *store_find(struct xks_state *x, const char *name)
{
        for (size_t i = 0; i < x->n_stores; i++)
                if (strcmp(x->stores[i].name, name) == 0)
                        return &x->stores[i];
        return NULL;
}

static struct xks_cred *cred_find(struct xks_state *x, const char *store, const char *akid)
{
        for (size_t i = 0; i < x->n_creds; i++)
                if (strcmp(x->creds[i].store, store) == 0 && strcmp(x->creds[i].akid, akid) == 0)
                        return &x->creds[i];
        return NULL;
}

static kw_result add_store(struct xks_state *x, const char *name, const char *prefix,
                           const char *region, const char *service, int from_config)
{
        if (store_find(x, name) != NULL) {
                kw_err_set_detail("two XKS key stores are named %s", name);
                KW_BAIL(KW_ERR_CONFIG);
        }
        for (size_t i = 0; i < x->n_stores; i++) {
                if (strcmp(x->stores[i].prefix, prefix) == 0) {
                        kw_err_set_detail("XKS key stores %s and %s share a URI prefix",
                                          x->stores[i].name, name);
                        KW_BAIL(KW_ERR_CONFIG);
                }
        }
        KW_ENSURE(x->n_stores < XKS_MAX_STORES, KW_ERR_TOO_LARGE);
        struct xks_store *s = &x->stores[x->n_stores];
        memset(s, 0, sizeof *s);
        KW_ENSURE(strlen(name) < sizeof s->name && strlen(prefix) < sizeof s->prefix &&
                          strlen(region) < sizeof s->region && strlen(service) < sizeof s->service,
                  KW_ERR_CONFIG);
        snprintf(s->name, sizeof s->name, "%s", name);
        snprintf(s->prefix, sizeof s->prefix, "%s", prefix);
        snprintf(s->region, sizeof s->region, "%s", region);
        snprintf(s->service, sizeof s->service, "%s", service);
        s->from_config = from_config;
        x->n_stores++;
        return KW_OK;
}

static kw_result add_cred(struct xks_state *x, const char *store, const char *akid,
                          const uint8_t *secret, size_t secret_len, int64_t created)
{
        if (akid == NULL || akid[0] == '\0' || secret == NULL || secret_len == 0)
                return KW_OK;
        KW_ENSURE(x->n_creds < XKS_MAX_CREDS, KW_ERR_TOO_LARGE);
        KW_ENSURE(strlen(akid) <= KW_SIGV4_MAX_AKID, KW_ERR_CONFIG);
        struct xks_cred *c = &x->creds[x->n_creds];
        memset(c, 0, sizeof *c);
        snprintf(c->store, sizeof c->store, "%s", store);
        snprintf(c->akid, sizeof c->akid, "%s", akid);
        c->created = created;
        KW_TRY(kw_secret_dup(secret, secret_len, &c->secret));
        x->n_creds++;
        return KW_OK;
}

/* The AAD binding a stored secret to its store and access key id. */
static size_t secret_aad(const char *store, const char *akid, uint8_t out[200])
{
        int n = snprintf((char *)out, 200, "keyward.xks.v1%c%s%c%s", 0, store, 0, akid);
        return n > 0 && n < 200 ? (size_t)n : 0;
}

kw_result custody_xks_cred_check(struct custody *c, const struct kw_xks_cred_row *row)
{
        KW_ENSURE(row->is_sealed, KW_ERR_INPUT);
        uint8_t aad[200];
        size_t an = secret_aad(row->store, row->akid, aad);
        KW_ENSURE(an != 0, KW_ERR_INTERNAL);
        struct kw_secret sec = { 0 };
        kw_result r = kw_hsm_unseal(c->hsm, aad, an, row->secret, row->secret_len, &sec);
        if (r.code == KW_ERR_HSM_UNWRAP) {
                kw_err_set_detail("the secret of XKS credential %s (store %s) does not unseal "
                                  "under the master key", row->akid, row->store);
                r = KW_RESULT(KW_ERR_DB_CORRUPT);
        }
        kw_secret_free(&sec);
        return r;
}

/* Seals secret for the database (row->secret, row->is_sealed). */
static kw_result seal_secret(struct custody *c, const struct kw_secret *secret,
                             struct kw_xks_cred_row *row)
{
        uint8_t aad[200];
        size_t an = secret_aad(row->store, row->akid, aad);
        KW_ENSURE(an != 0, KW_ERR_INTERNAL);
        struct kw_buf blob;
        kw_buf_init(&blob, sizeof row->secret);
        kw_result r = kw_hsm_seal(c->hsm, aad, an, secret->p, secret->len, &blob);
        if (r.code == 0) {
                memcpy(row->secret, blob.p, blob.len);
                row->secret_len = blob.len;
                row->is_sealed = 1;
        }
        kw_buf_free(&blob);
        return r;
}

/* The secrets of the configuration, copied once into secret memory: the
 * configuration's copies are then wiped (kw_config_wipe_secrets) and the
 * table is rebuilt from these. */
static kw_result keep_cfg_cred(struct xks_state *x, const char *store, const char *akid,
                               const char *secret)
{
        if (akid == NULL || akid[0] == '\0' || secret == NULL || secret[0] == '\0')
                return KW_OK;
        KW_ENSURE(x->n_cfg_creds < sizeof x->cfg_creds / sizeof x->cfg_creds[0], KW_ERR_TOO_LARGE);
        struct xks_cred *c = &x->cfg_creds[x->n_cfg_creds];
        snprintf(c->store, sizeof c->store, "%s", store);
        snprintf(c->akid, sizeof c->akid, "%s", akid);
        KW_TRY(kw_secret_dup(secret, strlen(secret), &c->secret));
        x->n_cfg_creds++;
        return KW_OK;
}

/* Frees every cached keyed HMAC context: after any change to stores or
 * credentials, so a removed credential's signing keys do not linger.  No
 * signature check can be running: the caller holds the table's write lock. */
static void drop_signing_keys(struct xks_state *x)
{
        pthread_mutex_lock(&x->kmu);
        for (size_t i = 0; i < XKS_KCACHE; i++) {
                EVP_MAC_CTX_free(x->kc[i].mac);
                memset(&x->kc[i], 0, sizeof x->kc[i]);
        }
        pthread_mutex_unlock(&x->kmu);
}

static void clear_table(struct xks_state *x)
{
        for (size_t i = 0; i < x->n_creds; i++)
                kw_secret_free(&x->creds[i].secret);
        memset(x->creds, 0, sizeof x->creds);
        x->n_creds = 0;
        x->n_stores = 0;
}

struct load_ctx {
        struct xks_state *x;
        kw_result r;
        char clear[XKS_MAX_CREDS][2][KW_SIGV4_MAX_AKID + 1];   /* rows to reseal */
        size_t n_clear;
};

static int load_store_cb(const struct kw_xks_store_row *row, void *arg)
{
        struct load_ctx *l = arg;
        l->r = add_store(l->x, row->name, row->uri_prefix, row->region, "kms-xks-proxy", 0);
        return l->r.code != 0;
}

static int load_cred_cb(const struct kw_xks_cred_row *row, void *arg)
{
        struct load_ctx *l = arg;
        if (!row->is_sealed) {
                /* written by schema 2: used as it is, resealed after the walk */
                l->r = add_cred(l->x, row->store, row->akid, row->secret, row->secret_len,
                                row->created);
                if (l->r.code == 0 && l->n_clear < XKS_MAX_CREDS) {
                        snprintf(l->clear[l->n_clear][0], KW_SIGV4_MAX_AKID + 1, "%s", row->store);
                        snprintf(l->clear[l->n_clear][1], KW_SIGV4_MAX_AKID + 1, "%s", row->akid);
                        l->n_clear++;
                }
                return l->r.code != 0;
        }
        uint8_t aad[200];
        size_t an = secret_aad(row->store, row->akid, aad);
        struct kw_secret sec = { 0 };
        l->r = an != 0 ? kw_hsm_unseal(l->x->c->hsm, aad, an, row->secret, row->secret_len, &sec)
                       : KW_RESULT(KW_ERR_INTERNAL);
        if (l->r.code == KW_ERR_HSM_UNWRAP) {
                kw_err_set_detail("the secret of XKS credential %s does not unseal under the "
                                  "master key", row->akid);
                l->r = KW_RESULT(KW_ERR_DB_CORRUPT);
        }
        if (l->r.code == 0)
                l->r = add_cred(l->x, row->store, row->akid, sec.p, sec.len, row->created);
        kw_secret_free(&sec);
        return l->r.code != 0;
}

/* Seals the clear secrets the walk found (schema 2 rows), in place. */
static void reseal_clear(struct custody *c, struct xks_state *x, const struct load_ctx *l)
{
        for (size_t i = 0; i < l->n_clear; i++) {
                const struct xks_cred *cr = cred_find(x, l->clear[i][0], l->clear[i][1]);
                struct kw_xks_cred_row row;
                memset(&row, 0, sizeof row);
                snprintf(row.store, sizeof row.store, "%s", l->clear[i][0]);
                snprintf(row.akid, sizeof row.akid, "%s", l->clear[i][1]);
                kw_result r = cr ? seal_secret(c, &cr->secret, &row) : KW_RESULT(KW_ERR_INTERNAL);
                if (r.code == 0)
                        r = kw_keystore_xks_cred_reseal(c->ks, row.store, row.akid, row.secret,
                                                        row.secret_len);
                kw_log(r.code ? KW_LOG_ERROR : KW_LOG_INFO, "xks_credential_sealed", "store",
                       row.store, "access_key_id", row.akid, "result", kw_err_name(r.code), KW_END);
                kw_wipe(&row, sizeof row);
        }
}

/* Rebuilds the table from the configuration and the database.  Caller
 * holds the write lock. */
static kw_result load_table(struct custody *c, struct xks_state *x)
{
        const struct kw_config *cfg = c->cfg;
        /* a store's rate budget survives the reload of the table */
        static struct { char name[33]; struct kw_ratelimit rl; } keep[XKS_MAX_STORES];
        size_t nkeep = x->n_stores;
        for (size_t i = 0; i < nkeep; i++) {
                memcpy(keep[i].name, x->stores[i].name, sizeof keep[i].name);
                keep[i].rl = x->stores[i].rl;
        }
        clear_table(x);
        if (cfg->xks.aws_xks_enable)
                KW_TRY(add_store(x, XKS_DEFAULT_STORE, cfg->xks.aws_xks_uri_prefix,
                                 cfg->xks.aws_xks_region, cfg->xks.aws_xks_service, 1));
        for (size_t i = 0; i < cfg->n_xks_stores; i++) {
                const struct kw_xks_store *s = &cfg->xks_stores[i];
                KW_TRY(add_store(x, s->name, s->uri_prefix ? s->uri_prefix : "",
                                 s->region ? s->region : "us-east-1",
                                 s->service ? s->service : "kms-xks-proxy", 1));
        }
        for (size_t i = 0; i < x->n_cfg_creds; i++) {
                const struct xks_cred *k = &x->cfg_creds[i];
                KW_TRY(add_cred(x, k->store, k->akid, k->secret.p, k->secret.len, (int64_t)i));
        }
        static struct load_ctx l;   /* under the table's write lock */
        memset(&l, 0, sizeof l);
        l.x = x;
        KW_TRY(kw_keystore_xks_list(c->ks, load_store_cb, load_cred_cb, &l));
        KW_TRY(l.r);
        reseal_clear(c, x, &l);
        for (size_t i = 0; i < x->n_stores; i++) {
                kw_ratelimit_init(&x->stores[i].rl, (uint64_t)cfg->xks.aws_xks_rate_limit, 0);
                for (size_t k = 0; k < nkeep; k++)
                        if (strcmp(keep[k].name, x->stores[i].name) == 0)
                                x->stores[i].rl = keep[k].rl;
        }
        x->gen++;
        drop_signing_keys(x);
        return KW_OK;
}

kw_result custody_xks_init(struct custody *c)
{
        struct xks_state *x = calloc(1, sizeof *x);
        KW_ENSURE(x != NULL, KW_ERR_NOMEM);
        x->c = c;
        pthread_rwlock_init(&x->mu, NULL);
        pthread_mutex_init(&x->kmu, NULL);
        const struct kw_config *cfg = c->cfg;
        kw_result r = KW_OK;
        if (cfg->xks.aws_xks_enable)
                r = keep_cfg_cred(x, XKS_DEFAULT_STORE, cfg->xks.aws_xks_sigv4_access_key_id,
                                  cfg->xks.aws_xks_sigv4_secret_access_key);
        for (size_t i = 0; r.code == 0 && i < cfg->n_xks_stores; i++) {
                const struct kw_xks_store *s = &cfg->xks_stores[i];
                r = keep_cfg_cred(x, s->name, s->access_key_id, s->secret_access_key);
                if (r.code == 0)
                        r = keep_cfg_cred(x, s->name, s->access_key_id_2, s->secret_access_key_2);
        }
        if (r.code == 0)
                r = load_table(c, x);
        if (r.code != 0) {
                clear_table(x);
                free(x);
                return r;
        }
        c->xks = x;
        return KW_OK;
}

/* ------------------------------------------------------------ signatures */

/* A copy of the HMAC context keyed with the signing key for (cred, scope),
 * from the cache or derived and cached; the caller finishes it with
 * kw_sigv4_mac_finish.  Called with the table read-locked. */
static kw_result signing_mac(struct xks_state *x, const struct xks_cred *cred,
                             const struct kw_sigv4_scope *sc, EVP_MAC_CTX **ret)
{
        pthread_mutex_lock(&x->kmu);
        struct xks_kentry *victim = &x->kc[0];
        for (size_t i = 0; i < XKS_KCACHE; i++) {
                struct xks_kentry *e = &x->kc[i];
                if (e->mac != NULL && strcmp(e->akid, cred->akid) == 0 &&
                    strcmp(e->date, sc->date) == 0 && strcmp(e->region, sc->region) == 0 &&
                    strcmp(e->service, sc->service) == 0) {
                        *ret = EVP_MAC_CTX_dup(e->mac);   /* dups serialised by kmu */
                        e->used = ++x->tick;
                        pthread_mutex_unlock(&x->kmu);
                        KW_ENSURE(*ret != NULL, KW_ERR_NOMEM);
                        return KW_OK;
                }
                /* a free slot, else the least recently used (the cache is
                 * emptied whenever credentials change: drop_signing_keys) */
                if (victim->mac != NULL && (e->mac == NULL || e->used < victim->used))
                        victim = e;
        }
        uint8_t key[32];
        EVP_MAC_CTX *m = NULL;
        kw_result r = kw_sigv4_signing_key(cred->secret.p, cred->secret.len, sc->date, sc->region,
                                           sc->service, key);
        if (r.code == 0)
                r = kw_sigv4_mac_new(key, &m);
        kw_wipe(key, sizeof key);
        if (r.code == 0) {
                *ret = EVP_MAC_CTX_dup(m);
                if (*ret == NULL)
                        r = KW_RESULT(KW_ERR_NOMEM);
        }
        if (r.code == 0) {
                EVP_MAC_CTX_free(victim->mac);
                victim->mac = m;
                snprintf(victim->akid, sizeof victim->akid, "%s", cred->akid);
                snprintf(victim->date, sizeof victim->date, "%s", sc->date);
                snprintf(victim->region, sizeof victim->region, "%s", sc->region);
                snprintf(victim->service, sizeof victim->service, "%s", sc->service);
                victim->used = ++x->tick;
        } else {
                EVP_MAC_CTX_free(m);
        }
        pthread_mutex_unlock(&x->kmu);
        return r;
}

/* The canonical request describes exactly this request: a POST with no
 * query of BODY to a path under the store's prefix.  The front built it;
 * the signature, checked after this, proves AWS signed it. */
static kw_result xks_binding(const struct kw_sigv4_scope *sc, const struct kw_field *creq,
                             const struct kw_field *body)
{
        uint8_t h[32];
        kw_sha256(creq->p, creq->len, h);
        if (CRYPTO_memcmp(h, sc->creq_sha256, 32) != 0) { /* lint: allow (constant time) */
                kw_err_set_detail("the canonical request does not match the string to sign");
                KW_BAIL(KW_ERR_AUTH);
        }
        struct kw_sigv4_creq cr;
        KW_TRY(kw_sigv4_creq_parse((const char *)creq->p, creq->len, &cr));
        if (cr.method_len != 4 || memcmp(cr.method, "POST", 4) != 0 || cr.query_len != 0) {
                kw_err_set_detail("the signed request is not a POST without a query");
                KW_BAIL(KW_ERR_AUTH);
        }
        kw_sha256(body->p, body->len, h);
        if (CRYPTO_memcmp(h, cr.payload_sha256, 32) != 0) { /* lint: allow (constant time) */
                kw_err_set_detail("the body is not the one that was signed");
                KW_BAIL(KW_ERR_AUTH);
        }
        return KW_OK;
}

/* The signed path is "<store prefix>/kms/xks/...". */
static int path_in_store(const struct kw_field *creq, const char *prefix)
{
        struct kw_sigv4_creq cr;
        if (kw_sigv4_creq_parse((const char *)creq->p, creq->len, &cr).code != 0)
                return 0;
        size_t pn = strlen(prefix);
        static const char root[] = "/kms/xks/";
        return cr.path_len >= pn + sizeof root - 1 && memcmp(cr.path, prefix, pn) == 0 &&
               memcmp(cr.path + pn, root, sizeof root - 1) == 0;
}

kw_result custody_xks_auth(struct custody *c, const struct kw_msg *req, struct op_caller *who)
{
        struct xks_state *x = c->xks;
        char store[33], akid[KW_SIGV4_MAX_AKID + 1];
        struct kw_field sts = { 0 }, sig = { 0 }, creq = { 0 }, body = { 0 };
        if (kw_msg_get_str(req, KW_T_XKS_STORE, store, sizeof store).code != 0 ||
            kw_msg_get_str(req, KW_T_SIGV4_AKID, akid, sizeof akid).code != 0 ||
            kw_msg_get(req, KW_T_SIGV4_STS, &sts).code != 0 ||
            kw_msg_get(req, KW_T_SIGV4_SIG, &sig).code != 0 || sig.len != 32 ||
            kw_msg_get(req, KW_T_SIGV4_CREQ, &creq).code != 0 ||
            kw_msg_get(req, KW_T_BODY, &body).code != 0) {
                kw_err_set_detail("incomplete SigV4 fields");
                KW_BAIL(KW_ERR_AUTH);
        }
        struct kw_sigv4_scope sc;
        KW_TRY(kw_sigv4_sts_parse((const char *)sts.p, sts.len, &sc));
        time_t now = time(NULL);
        if (sc.when > now + KW_SIGV4_SKEW_S || sc.when < now - KW_SIGV4_SKEW_S) {
                kw_err_set_detail("request time is more than 5 minutes off");
                KW_BAIL(KW_ERR_AUTH);
        }
        KW_TRY(xks_binding(&sc, &creq, &body));
        pthread_rwlock_rdlock(&x->mu);
        struct xks_store *s = store_find(x, store);
        const struct xks_cred *cred = s ? cred_find(x, store, akid) : NULL;
        kw_result r = KW_OK;
        if (s == NULL || cred == NULL) {
                kw_err_set_detail("unknown access key id for this key store");
                r = KW_RESULT(KW_ERR_AUTH);
        } else if (strcmp(sc.region, s->region) != 0 || strcmp(sc.service, s->service) != 0) {
                kw_err_set_detail("credential scope names another region or service");
                r = KW_RESULT(KW_ERR_AUTH);
        } else if (!path_in_store(&creq, s->prefix)) {
                kw_err_set_detail("the signed path is not under this key store's prefix");
                r = KW_RESULT(KW_ERR_AUTH);
        }
        uint8_t mac[32];
        EVP_MAC_CTX *m = NULL;
        if (r.code == 0)
                r = signing_mac(x, cred, &sc, &m);
        if (r.code == 0)
                r = kw_sigv4_mac_finish(m, (const char *)sts.p, sts.len, mac);
        if (r.code == 0 && CRYPTO_memcmp(mac, sig.p, 32) != 0) { /* lint: allow (constant time) */
                kw_err_set_detail("signature mismatch");
                r = KW_RESULT(KW_ERR_AUTH);
        }
        kw_wipe(mac, sizeof mac);
        if (r.code == KW_ERR_CRYPTO)
                r = KW_RESULT(KW_ERR_AUTH);
        /* the store's budget is charged for authenticated requests only, so
         * that an outsider cannot use up a tenant's rate (finding 6) */
        if (r.code == 0 && !kw_ratelimit_take(&s->rl, NULL)) {
                kw_err_set_detail("over the key store's rate limit");
                r = KW_RESULT(KW_ERR_OVERLOAD);
        }
        pthread_rwlock_unlock(&x->mu);
        if (r.code != KW_ERR_AUTH) {
                snprintf(who->store, sizeof who->store, "%s", store);
                snprintf(who->akid, sizeof who->akid, "%s", akid);
                snprintf(who->actor, sizeof who->actor, "xks:%s:%s", store, akid);
                who->ctx.store = who->store;
        }
        return r;
}

void custody_xks_store_prefix(struct custody *c, const char *store, char *out, size_t outsz)
{
        struct xks_state *x = c->xks;
        pthread_rwlock_rdlock(&x->mu);
        const struct xks_store *s = store_find(x, store);
        snprintf(out, outsz, "%s", s ? s->prefix : "");
        pthread_rwlock_unlock(&x->mu);
}

/* --------------------------------------------------------------- stores */

static int store_name_ok(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 32)
                return 0;
        for (size_t i = 0; i < n; i++) {
                char ch = s[i];
                if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
                        return 0;
        }
        return 1;
}

/* "" or "/" + [A-Za-z0-9/_-], at most 116 characters (so that the path up
 * to /kms/xks/v1 stays within 128), no empty segment, no trailing '/'. */
static int prefix_ok(const char *s)
{
        size_t n = strlen(s);
        if (n == 0)
                return 1;
        if (n > 116 || s[0] != '/' || s[n - 1] == '/')
                return 0;
        for (size_t i = 0; i < n; i++) {
                char ch = s[i];
                if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '/'))
                        return 0;
                if (ch == '/' && i + 1 < n && s[i + 1] == '/')
                        return 0;
        }
        return 1;
}

static int region_ok(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 64)
                return 0;
        for (size_t i = 0; i < n; i++) {
                char ch = s[i];
                if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                      (ch >= '0' && ch <= '9') || ch == '-'))
                        return 0;
        }
        return 1;
}

/* A fresh pair: 20 characters of A-Z2-7, and base64 of 32 random bytes
 * (*ret_secret, secret memory); the row carries it sealed. */
static kw_result new_cred(struct custody *cu, const char *store, struct kw_xks_cred_row *ret,
                          struct kw_secret *ret_secret)
{
        static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        uint8_t r[XKS_AKID_LEN + XKS_SECRET_RAW];
        KW_TRY(kw_random(r, sizeof r));
        struct kw_xks_cred_row c;
        memset(&c, 0, sizeof c);
        snprintf(c.store, sizeof c.store, "%s", store);
        for (size_t i = 0; i < XKS_AKID_LEN; i++)
                c.akid[i] = b32[r[i] & 31];
        struct kw_secret sec = { 0 };
        kw_result res = kw_secret_alloc(4 * ((XKS_SECRET_RAW + 2) / 3), &sec);
        if (res.code == 0) {
                /* base64 straight into secret memory: no other copy */
                static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
                const uint8_t *in = r + XKS_AKID_LEN;
                size_t o = 0;
                for (size_t i = 0; i < XKS_SECRET_RAW; i += 3) {
                        uint32_t v = (uint32_t)in[i] << 16 |
                                     (i + 1 < XKS_SECRET_RAW ? (uint32_t)in[i + 1] << 8 : 0) |
                                     (i + 2 < XKS_SECRET_RAW ? in[i + 2] : 0);
                        sec.p[o++] = (uint8_t)al[v >> 18 & 63];
                        sec.p[o++] = (uint8_t)al[v >> 12 & 63];
                        sec.p[o++] = i + 1 < XKS_SECRET_RAW ? (uint8_t)al[v >> 6 & 63] : '=';
                        sec.p[o++] = i + 2 < XKS_SECRET_RAW ? (uint8_t)al[v & 63] : '=';
                }
        }
        kw_wipe(r, sizeof r);
        c.created = time(NULL);
        if (res.code == 0)
                res = seal_secret(cu, &sec, &c);
        if (res.code != 0) {
                kw_secret_free(&sec);
                return res;
        }
        *ret = c;
        *ret_secret = sec;
        kw_wipe(&c, sizeof c);
        return KW_OK;
}

/* {"XksProxyUriPath":"<prefix>/kms/xks/v1","XksProxyAuthenticationCredential":
 *  {"AccessKeyId":"...","RawSecretAccessKey":"..."}} wrapped with the store
 * name; built by hand so that the secret is in exactly one buffer, wiped. */
static kw_result reply_import_file(struct kw_buf *reply, const char *store, const char *prefix,
                                   const char *akid, const struct kw_secret *secret)
{
        char doc[640];
        int n = snprintf(doc, sizeof doc,
                         "{\"store\":\"%s\",\"import_file\":{\"XksProxyUriPath\":\"%s/kms/xks/v1\","
                         "\"XksProxyAuthenticationCredential\":{\"AccessKeyId\":\"%s\","
                         "\"RawSecretAccessKey\":\"%.*s\"}}}",
                         store, prefix, akid, (int)secret->len, (const char *)secret->p);
        kw_result r = n > 0 && (size_t)n < sizeof doc ? kw_msg_put(reply, KW_T_JSON, doc, (size_t)n)
                                                      : KW_RESULT(KW_ERR_INTERNAL);
        kw_wipe(doc, sizeof doc);
        return r;
}

/* Rebuilds the table after a change (caller holds c->write_mu). */
static kw_result reload(struct custody *c)
{
        struct xks_state *x = c->xks;
        pthread_rwlock_wrlock(&x->mu);
        kw_result r = load_table(c, x);
        pthread_rwlock_unlock(&x->mu);
        if (r.code != 0)
                kw_log(KW_LOG_ERROR, "xks_reload_failed", "error", kw_err_name(r.code), "detail",
                       kw_err_detail(), KW_END);
        return r;
}

kw_result custody_xks_reload(struct custody *c)
{
        pthread_mutex_lock(&c->write_mu);
        kw_result r = reload(c);
        pthread_mutex_unlock(&c->write_mu);
        return r;
}

kw_result op_xks_stores(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                        struct kw_buf *reply)
{
        (void)req; (void)who;
        struct xks_state *x = c->xks;
        cJSON *d = cJSON_CreateObject();
        cJSON *arr = d ? cJSON_AddArrayToObject(d, "stores") : NULL;
        if (arr == NULL) {
                cJSON_Delete(d);
                KW_BAIL(KW_ERR_NOMEM);
        }
        pthread_rwlock_rdlock(&x->mu);
        cJSON_AddNumberToObject(d, "gen", (double)x->gen);
        for (size_t i = 0; i < x->n_stores; i++) {
                const struct xks_store *s = &x->stores[i];
                cJSON *o = cJSON_CreateObject();
                if (o == NULL)
                        continue;
                cJSON_AddStringToObject(o, "name", s->name);
                cJSON_AddStringToObject(o, "uri_prefix", s->prefix);
                cJSON_AddStringToObject(o, "region", s->region);
                cJSON_AddStringToObject(o, "service", s->service);
                cJSON_AddStringToObject(o, "source", s->from_config ? "config" : "api");
                cJSON *ids = cJSON_AddArrayToObject(o, "access_key_ids");
                for (size_t k = 0; ids && k < x->n_creds; k++)
                        if (strcmp(x->creds[k].store, s->name) == 0)
                                cJSON_AddItemToArray(ids, cJSON_CreateString(x->creds[k].akid));
                cJSON_AddItemToArray(arr, o);
        }
        pthread_rwlock_unlock(&x->mu);
        return reply_json(reply, d);
}

static void xks_audit(struct custody *c, const struct op_caller *who, const char *action,
                      const char *store, kw_result r)
{
        if (r.code != 0)
                audit_push(c->aq, who, action, store, r.code, kw_err_detail());
}

kw_result op_xks_store_create(struct custody *c, const struct kw_msg *req,
                              struct op_caller *who, struct kw_buf *reply)
{
        struct kw_xks_store_row s;
        memset(&s, 0, sizeof s);
        snprintf(s.region, sizeof s.region, "us-east-1");
        KW_TRY(kw_msg_get_str(req, KW_T_XKS_STORE, s.name, sizeof s.name));
        KW_TRY(kw_msg_get_str(req, KW_T_XKS_PREFIX, s.uri_prefix, sizeof s.uri_prefix));
        if (kw_msg_has(req, KW_T_XKS_REGION))
                KW_TRY(kw_msg_get_str(req, KW_T_XKS_REGION, s.region, sizeof s.region));
        kw_result r = KW_OK;
        if (!store_name_ok(s.name)) {
                kw_err_set_detail("store names are 1..32 characters of A-Z a-z 0-9 _ -");
                r = KW_RESULT(KW_ERR_BAD_NAME);
        } else if (!prefix_ok(s.uri_prefix)) {
                kw_err_set_detail("uri_prefix is \"\" or \"/...\": at most 116 characters of "
                                  "A-Za-z0-9/_-, no \"//\", not ending in '/'");
                r = KW_RESULT(KW_ERR_BAD_FIELD);
        } else if (!region_ok(s.region)) {
                kw_err_set_detail("region is 1..64 characters of A-Za-z0-9-");
                r = KW_RESULT(KW_ERR_BAD_FIELD);
        }
        struct kw_xks_cred_row cred;
        memset(&cred, 0, sizeof cred);
        struct kw_secret sec = { 0 };
        if (r.code == 0)
                r = new_cred(c, s.name, &cred, &sec);
        struct xks_state *x = c->xks;
        pthread_mutex_lock(&c->write_mu);
        if (r.code == 0) {
                pthread_rwlock_rdlock(&x->mu);
                int clash = store_find(x, s.name) != NULL;
                for (size_t i = 0; !clash && i < x->n_stores; i++)
                        clash = strcmp(x->stores[i].prefix, s.uri_prefix) == 0;
                pthread_rwlock_unlock(&x->mu);
                if (clash) {
                        kw_err_set_detail("an XKS key store with this name or URI prefix exists");
                        r = KW_RESULT(KW_ERR_EXISTS);
                }
        }
        struct kw_audit_entry au = { .actor = who->actor, .action = "xks.store.create",
                                     .key_name = s.name, .result = "ok",
                                     .detail = s.uri_prefix, .request_id = who->request_id };
        if (r.code == 0)
                r = kw_keystore_xks_store_insert(c->ks, &s, &cred, &au);
        if (r.code == 0)
                r = reload(c);
        pthread_mutex_unlock(&c->write_mu);
        if (r.code == 0)
                r = reply_import_file(reply, s.name, s.uri_prefix, cred.akid, &sec);
        kw_secret_free(&sec);
        kw_wipe(&cred, sizeof cred);
        xks_audit(c, who, "xks.store.create", s.name, r);
        return r;
}

/* An API-created store by name, or KW_ERR_NOT_FOUND / KW_ERR_BAD_STATE. */
static kw_result api_store(struct custody *c, const struct kw_msg *req, struct xks_store *ret)
{
        char name[33];
        KW_TRY(kw_msg_get_str(req, KW_T_XKS_STORE, name, sizeof name));
        struct xks_state *x = c->xks;
        pthread_rwlock_rdlock(&x->mu);
        const struct xks_store *s = store_find(x, name);
        kw_result r = KW_OK;
        if (s == NULL) {
                kw_err_set_detail("no XKS key store named %s", name);
                r = KW_RESULT(KW_ERR_NOT_FOUND);
        } else if (s->from_config) {
                kw_err_set_detail("XKS key store %s is configured in the file: change it there",
                                  name);
                r = KW_RESULT(KW_ERR_BAD_STATE);
        } else {
                *ret = *s;
        }
        pthread_rwlock_unlock(&x->mu);
        return r;
}

kw_result op_xks_cred_rotate(struct custody *c, const struct kw_msg *req,
                             struct op_caller *who, struct kw_buf *reply)
{
        struct xks_store s;
        struct kw_xks_cred_row cred;
        memset(&cred, 0, sizeof cred);
        struct kw_secret sec = { 0 };
        pthread_mutex_lock(&c->write_mu);
        kw_result r = api_store(c, req, &s);
        if (r.code == 0)
                r = new_cred(c, s.name, &cred, &sec);
        struct kw_audit_entry au = { .actor = who->actor, .action = "xks.credential.create",
                                     .key_name = s.name, .result = "ok",
                                     .detail = cred.akid, .request_id = who->request_id };
        if (r.code == 0)
                r = kw_keystore_xks_cred_add(c->ks, &cred, XKS_KEEP_CREDS, &au);
        if (r.code == 0)
                r = reload(c);
        pthread_mutex_unlock(&c->write_mu);
        if (r.code == 0)
                r = reply_import_file(reply, s.name, s.prefix, cred.akid, &sec);
        kw_secret_free(&sec);
        kw_wipe(&cred, sizeof cred);
        xks_audit(c, who, "xks.credential.create", r.code == 0 ? s.name : "", r);
        return r;
}

kw_result op_xks_cred_delete(struct custody *c, const struct kw_msg *req,
                             struct op_caller *who, struct kw_buf *reply)
{
        struct xks_store s;
        char akid[KW_SIGV4_MAX_AKID + 1] = "";
        pthread_mutex_lock(&c->write_mu);
        kw_result r = api_store(c, req, &s);
        if (r.code == 0)
                r = kw_msg_get_str(req, KW_T_SIGV4_AKID, akid, sizeof akid);
        if (r.code == 0) {
                struct xks_state *x = c->xks;
                size_t n = 0;
                pthread_rwlock_rdlock(&x->mu);
                for (size_t i = 0; i < x->n_creds; i++)
                        n += strcmp(x->creds[i].store, s.name) == 0;
                int found = cred_find(x, s.name, akid) != NULL;
                pthread_rwlock_unlock(&x->mu);
                if (!found) {
                        kw_err_set_detail("store %s has no access key id %s", s.name, akid);
                        r = KW_RESULT(KW_ERR_NOT_FOUND);
                } else if (n < 2) {
                        kw_err_set_detail("the last credential of a store cannot be deleted: "
                                          "rotate first");
                        r = KW_RESULT(KW_ERR_BAD_STATE);
                }
        }
        struct kw_audit_entry au = { .actor = who->actor, .action = "xks.credential.delete",
                                     .key_name = s.name, .result = "ok", .detail = akid,
                                     .request_id = who->request_id };
        if (r.code == 0)
                r = kw_keystore_xks_cred_delete(c->ks, s.name, akid, &au);
        if (r.code == 0)
                r = reload(c);
        pthread_mutex_unlock(&c->write_mu);
        if (r.code == 0) {
                char doc[256];   /* names and key ids of our alphabets: no escaping */
                snprintf(doc, sizeof doc, "{\"store\":\"%s\",\"deleted\":\"%s\"}", s.name, akid);
                r = kw_msg_put_str(reply, KW_T_JSON, doc);
        }
        xks_audit(c, who, "xks.credential.delete", r.code == 0 ? s.name : "", r);
        return r;
}

kw_result op_xks_store_delete(struct custody *c, const struct kw_msg *req,
                              struct op_caller *who, struct kw_buf *reply)
{
        struct xks_store s;
        pthread_mutex_lock(&c->write_mu);
        kw_result r = api_store(c, req, &s);
        struct kw_audit_entry au = { .actor = who->actor, .action = "xks.store.delete",
                                     .key_name = r.code == 0 ? s.name : "", .result = "ok",
                                     .request_id = who->request_id };
        if (r.code == 0)
                r = kw_keystore_xks_store_delete(c->ks, s.name, &au);
        if (r.code == 0)
                r = reload(c);
        pthread_mutex_unlock(&c->write_mu);
        if (r.code == 0) {
                char doc[96];
                snprintf(doc, sizeof doc, "{\"deleted\":\"%s\"}", s.name);
                r = kw_msg_put_str(reply, KW_T_JSON, doc);
        }
        xks_audit(c, who, "xks.store.delete", r.code == 0 ? s.name : "", r);
        return r;
}

kw_result op_xks_import_file(struct custody *c, const struct kw_msg *req,
                             struct op_caller *who, struct kw_buf *reply)
{
        char name[33];
        KW_TRY(kw_msg_get_str(req, KW_T_XKS_STORE, name, sizeof name));
        struct xks_state *x = c->xks;
        pthread_rwlock_rdlock(&x->mu);
        const struct xks_store *s = store_find(x, name);
        const struct xks_cred *newest = NULL;
        for (size_t i = 0; s != NULL && i < x->n_creds; i++)
                if (strcmp(x->creds[i].store, name) == 0 &&
                    (newest == NULL || x->creds[i].created >= newest->created))
                        newest = &x->creds[i];
        kw_result r = KW_OK;
        if (newest == NULL) {
                kw_err_set_detail("no XKS key store named %s", name);
                r = KW_RESULT(KW_ERR_NOT_FOUND);
        } else {
                r = reply_import_file(reply, s->name, s->prefix, newest->akid, &newest->secret);
        }
        pthread_rwlock_unlock(&x->mu);
        /* handing out a credential is an audited admin action */
        audit_push(c->aq, who, "xks.import_file", name, r.code, r.code ? kw_err_detail() : NULL);
        return r;
}
