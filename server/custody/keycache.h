/*
 * keycache.h - bounded LRU cache of keys for the custody hot path: the key's
 * row, its parsed rules, and lazily unsealed material per version (AES
 * bytes as kw_secret in the secure heap; RSA as EVP_PKEY whose private
 * numbers OpenSSL keeps in the same secure heap).
 *
 * Entries are reference-counted: an entry evicted or invalidated while a
 * request uses it is freed (and wiped) when the last user releases it.
 * Thread-safe.
 */
#ifndef KW_KEYCACHE_H
#define KW_KEYCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/result.h"
#include "../common/secret.h"
#include "keystore.h"
#include "rules.h"

typedef struct evp_pkey_st EVP_PKEY;

struct kw_keycache;

struct kw_ckey {
        struct kw_key_row row;     /* read-only while cached            */
        struct kw_rules *rules;    /* NULL when the key has no rules    */
        EVP_PKEY *pub;             /* RSA public half, NULL for AES     */
        /* private: */
        struct ckey_priv *priv_;
};

/* Material of one version, filled by a loader on first use. */
struct kw_ckey_material {
        struct kw_secret aes;      /* AES key bytes                     */
        EVP_PKEY *pkey;            /* RSA private key                   */
};
typedef kw_result (*kw_ckey_loader)(const struct kw_key_row *row, uint32_t version, void *arg,
                                    struct kw_ckey_material *ret);

KW_MUST_USE kw_result kw_keycache_new(size_t max_entries, struct kw_keycache **ret);
void kw_keycache_free(struct kw_keycache *kc);

/* A new entry owning row's heap members (row is zeroed) and rules. */
KW_MUST_USE kw_result kw_ckey_new(struct kw_key_row *row, struct kw_rules *rules, EVP_PKEY *pub,
                                  struct kw_ckey **ret);
/* Material of version (1..current_version), unsealed through loader on the
 * first use; the pointer stays valid until the entry is released. */
KW_MUST_USE kw_result kw_ckey_material(struct kw_ckey *e, uint32_t version, kw_ckey_loader loader,
                                       void *arg, const struct kw_ckey_material **ret);

/* Entry for name with a reference taken, or NULL (counts a hit or a miss). */
struct kw_ckey *kw_keycache_get(struct kw_keycache *kc, const char *name);
/* Publishes e (taking a reference for the cache), replacing any entry with
 * the same name, evicting the least recently used beyond the bound.  The
 * caller keeps its own reference. */
void kw_keycache_put(struct kw_keycache *kc, struct kw_ckey *e);
/* What a request on a key needs to be answered from memory. */
enum kw_warm_need {
        KW_WARM_ENTRY,      /* the key's row and rules (metadata)           */
        KW_WARM_CURRENT,    /* and the material of its current version      */
        KW_WARM_VERSION,    /* and the material of version                  */
        KW_WARM_ALL,        /* and the material of every version            */
};
/* 1 when name is cached with what need says unsealed: a request on it will
 * need neither the HSM nor the database (the custody's fast path).
 * *ret_rsa says whether it is an RSA key.  Counts no hit or miss. */
int kw_keycache_warm(struct kw_keycache *kc, const char *name, enum kw_warm_need need,
                     uint32_t version, int *ret_rsa);
/* Drops a reference taken by get, or the creator's reference from new. */
void kw_keycache_release(struct kw_keycache *kc, struct kw_ckey *e);
/* Removes name's entry (after any change to the key). */
void kw_keycache_invalidate(struct kw_keycache *kc, const char *name);
/* Removes every entry (fleet mode: anything may have changed). */
void kw_keycache_invalidate_all(struct kw_keycache *kc);
/* The names of up to max cached entries, most recently used first. */
size_t kw_keycache_names(struct kw_keycache *kc, char (*out)[65], size_t max);

struct kw_keycache_stats {
        uint64_t hits, misses, evictions;
        size_t entries, max;
};
void kw_keycache_get_stats(struct kw_keycache *kc, struct kw_keycache_stats *ret);

#endif
