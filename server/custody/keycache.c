/* keycache.c - bounded, reference-counted LRU of keys (see keycache.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "keycache.h"

struct ckey_priv {
        pthread_mutex_t mu;          /* guards mat                      */
        uint32_t nver;
        struct kw_ckey_material *mat;
        unsigned char *loaded;
        unsigned refs;               /* guarded by the cache mutex      */
        int in_cache;
        uint64_t hash;
        struct kw_ckey *lru_prev, *lru_next, *chain_next;
};

struct kw_keycache {
        pthread_mutex_t mu;
        size_t max, count, nbuckets;
        struct kw_ckey **buckets;
        struct kw_ckey *lru_head, *lru_tail;   /* head = most recent */
        uint64_t hits, misses, evictions;
};

static uint64_t name_hash(const char *s)
{
        uint64_t h = 1469598103934665603ull;   /* FNV-1a */
        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ull;
        return h;
}

kw_result kw_keycache_new(size_t max_entries, struct kw_keycache **ret)
{
        KW_ENSURE(max_entries >= 1, KW_ERR_CONFIG);
        struct kw_keycache *kc = calloc(1, sizeof *kc);
        KW_ENSURE(kc != NULL, KW_ERR_NOMEM);
        size_t nb = 16;
        while (nb < max_entries * 2)
                nb <<= 1;
        kc->buckets = calloc(nb, sizeof *kc->buckets);
        if (kc->buckets == NULL) {
                free(kc);
                KW_BAIL(KW_ERR_NOMEM);
        }
        kc->nbuckets = nb;
        kc->max = max_entries;
        pthread_mutex_init(&kc->mu, NULL);
        *ret = kc;
        return KW_OK;
}

static void ckey_destroy(struct kw_ckey *e)
{
        struct ckey_priv *p = e->priv_;
        for (uint32_t v = 0; v < p->nver; v++) {
                kw_secret_free(&p->mat[v].aes);
                EVP_PKEY_free(p->mat[v].pkey);
        }
        free(p->mat);
        free(p->loaded);
        pthread_mutex_destroy(&p->mu);
        free(p);
        kw_rules_free(e->rules);
        EVP_PKEY_free(e->pub);
        kw_key_row_clear(&e->row);
        free(e);
}

kw_result kw_ckey_new(struct kw_key_row *row, struct kw_rules *rules, EVP_PKEY *pub,
                      struct kw_ckey **ret)
{
        KW_ENSURE(row->current_version >= 1 && row->current_version <= 100000, KW_ERR_DB_CORRUPT);
        struct kw_ckey *e = calloc(1, sizeof *e);
        struct ckey_priv *p = calloc(1, sizeof *p);
        struct kw_ckey_material *mat = calloc(row->current_version, sizeof *mat);
        unsigned char *loaded = calloc(row->current_version, 1);
        if (e == NULL || p == NULL || mat == NULL || loaded == NULL) {
                free(e);
                free(p);
                free(mat);
                free(loaded);
                KW_BAIL(KW_ERR_NOMEM);
        }
        pthread_mutex_init(&p->mu, NULL);
        p->nver = row->current_version;
        p->mat = mat;
        p->loaded = loaded;
        p->refs = 1;
        p->hash = name_hash(row->name);
        e->priv_ = p;
        e->row = *row;
        memset(row, 0, sizeof *row);   /* heap members transferred */
        e->rules = rules;
        e->pub = pub;
        *ret = e;
        return KW_OK;
}

kw_result kw_ckey_material(struct kw_ckey *e, uint32_t version, kw_ckey_loader loader, void *arg,
                           const struct kw_ckey_material **ret)
{
        struct ckey_priv *p = e->priv_;
        KW_ENSURE(version >= 1 && version <= p->nver, KW_ERR_NOT_FOUND);
        uint32_t i = version - 1;
        if (__atomic_load_n(&p->loaded[i], __ATOMIC_ACQUIRE)) {   /* hot path: no lock */
                *ret = &p->mat[i];
                return KW_OK;
        }
        pthread_mutex_lock(&p->mu);
        if (!__atomic_load_n(&p->loaded[i], __ATOMIC_ACQUIRE)) {
                struct kw_ckey_material m = { 0 };
                kw_result r = loader(&e->row, version, arg, &m);
                if (r.code != 0) {
                        pthread_mutex_unlock(&p->mu);
                        return r;
                }
                p->mat[i] = m;
                __atomic_store_n(&p->loaded[i], 1, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&p->mu);
        *ret = &p->mat[i];
        return KW_OK;
}

static void lru_unlink(struct kw_keycache *kc, struct kw_ckey *e)
{
        struct ckey_priv *p = e->priv_;
        if (p->lru_prev)
                p->lru_prev->priv_->lru_next = p->lru_next;
        else
                kc->lru_head = p->lru_next;
        if (p->lru_next)
                p->lru_next->priv_->lru_prev = p->lru_prev;
        else
                kc->lru_tail = p->lru_prev;
        p->lru_prev = p->lru_next = NULL;
}

static void lru_push_front(struct kw_keycache *kc, struct kw_ckey *e)
{
        struct ckey_priv *p = e->priv_;
        p->lru_prev = NULL;
        p->lru_next = kc->lru_head;
        if (kc->lru_head)
                kc->lru_head->priv_->lru_prev = e;
        kc->lru_head = e;
        if (kc->lru_tail == NULL)
                kc->lru_tail = e;
}

static struct kw_ckey **chain_slot(struct kw_keycache *kc, const char *name, uint64_t h)
{
        struct kw_ckey **pp = &kc->buckets[h & (kc->nbuckets - 1)];
        while (*pp != NULL && strcmp((*pp)->row.name, name) != 0)
                pp = &(*pp)->priv_->chain_next;
        return pp;
}

/* Removes e from map and LRU and drops the cache's reference; returns 1
 * when the caller must destroy it (outside the lock). */
static int cache_remove_locked(struct kw_keycache *kc, struct kw_ckey *e)
{
        struct ckey_priv *p = e->priv_;
        struct kw_ckey **pp = chain_slot(kc, e->row.name, p->hash);
        if (*pp == e)
                *pp = p->chain_next;
        p->chain_next = NULL;
        lru_unlink(kc, e);
        p->in_cache = 0;
        kc->count--;
        return --p->refs == 0;
}

struct kw_ckey *kw_keycache_get(struct kw_keycache *kc, const char *name)
{
        pthread_mutex_lock(&kc->mu);
        struct kw_ckey *e = *chain_slot(kc, name, name_hash(name));
        if (e != NULL) {
                e->priv_->refs++;
                lru_unlink(kc, e);
                lru_push_front(kc, e);
                kc->hits++;
        } else {
                kc->misses++;
        }
        pthread_mutex_unlock(&kc->mu);
        return e;
}

int kw_keycache_warm(struct kw_keycache *kc, const char *name, enum kw_warm_need need,
                     uint32_t version, int *ret_rsa)
{
        pthread_mutex_lock(&kc->mu);
        const struct kw_ckey *e = *chain_slot(kc, name, name_hash(name));
        int warm = e != NULL;
        if (warm) {
                const struct ckey_priv *p = e->priv_;
                uint32_t lo = 1, hi = e->row.current_version;
                if (need == KW_WARM_VERSION)
                        lo = hi = version;
                else if (need == KW_WARM_CURRENT)
                        lo = hi;
                for (uint32_t v = lo; need != KW_WARM_ENTRY && warm && v <= hi; v++)
                        warm = v >= 1 && v <= p->nver &&
                               __atomic_load_n(&p->loaded[v - 1], __ATOMIC_ACQUIRE);
                *ret_rsa = strcmp(e->row.type, "RSA") == 0;
        }
        pthread_mutex_unlock(&kc->mu);
        return warm;
}

void kw_keycache_put(struct kw_keycache *kc, struct kw_ckey *e)
{
        struct kw_ckey *doomed[2] = { NULL, NULL };
        int nd = 0;
        pthread_mutex_lock(&kc->mu);
        struct kw_ckey *old = *chain_slot(kc, e->row.name, e->priv_->hash);
        if (old == e) {
                pthread_mutex_unlock(&kc->mu);
                return;
        }
        if (old != NULL && cache_remove_locked(kc, old))
                doomed[nd++] = old;
        if (kc->count >= kc->max && kc->lru_tail != NULL) {
                struct kw_ckey *victim = kc->lru_tail;
                kc->evictions++;
                if (cache_remove_locked(kc, victim))
                        doomed[nd++] = victim;
        }
        struct kw_ckey **pp = chain_slot(kc, e->row.name, e->priv_->hash);
        e->priv_->chain_next = NULL;
        *pp = e;
        lru_push_front(kc, e);
        e->priv_->in_cache = 1;
        e->priv_->refs++;
        kc->count++;
        pthread_mutex_unlock(&kc->mu);
        for (int i = 0; i < nd; i++)
                ckey_destroy(doomed[i]);
}

void kw_keycache_release(struct kw_keycache *kc, struct kw_ckey *e)
{
        if (e == NULL)
                return;
        pthread_mutex_lock(&kc->mu);
        int last = --e->priv_->refs == 0;
        pthread_mutex_unlock(&kc->mu);
        if (last)
                ckey_destroy(e);
}

void kw_keycache_invalidate(struct kw_keycache *kc, const char *name)
{
        pthread_mutex_lock(&kc->mu);
        struct kw_ckey *e = *chain_slot(kc, name, name_hash(name));
        int last = e != NULL && cache_remove_locked(kc, e);
        pthread_mutex_unlock(&kc->mu);
        if (last)
                ckey_destroy(e);
}

void kw_keycache_invalidate_all(struct kw_keycache *kc)
{
        for (;;) {
                pthread_mutex_lock(&kc->mu);
                struct kw_ckey *e = kc->lru_head;
                int last = e != NULL && cache_remove_locked(kc, e);
                pthread_mutex_unlock(&kc->mu);
                if (e == NULL)
                        return;
                if (last)
                        ckey_destroy(e);
        }
}

size_t kw_keycache_names(struct kw_keycache *kc, char (*out)[65], size_t max)
{
        size_t n = 0;
        pthread_mutex_lock(&kc->mu);
        for (struct kw_ckey *e = kc->lru_head; e != NULL && n < max; e = e->priv_->lru_next)
                memcpy(out[n++], e->row.name, 65);
        pthread_mutex_unlock(&kc->mu);
        return n;
}

void kw_keycache_get_stats(struct kw_keycache *kc, struct kw_keycache_stats *ret)
{
        pthread_mutex_lock(&kc->mu);
        *ret = (struct kw_keycache_stats){ .hits = kc->hits, .misses = kc->misses,
                                           .evictions = kc->evictions,
                                           .entries = kc->count, .max = kc->max };
        pthread_mutex_unlock(&kc->mu);
}

void kw_keycache_free(struct kw_keycache *kc)
{
        if (kc == NULL)
                return;
        while (kc->lru_head != NULL) {
                struct kw_ckey *e = kc->lru_head;
                if (cache_remove_locked(kc, e))
                        ckey_destroy(e);
        }
        free(kc->buckets);
        pthread_mutex_destroy(&kc->mu);
        free(kc);
}
