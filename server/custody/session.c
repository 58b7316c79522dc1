/*
 * session.c - the console session table (contract in session.h).
 *
 * A fixed array of at most max slots, searched linearly (4096 x 32 bytes,
 * compared in constant time): no index keyed by anything a caller sends.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../common/b64.h"
#include "../common/secret.h"
#include "crypto.h"
#include "session.h"

struct slot {
        int used;
        int64_t created, last_used;   /* monotonic milliseconds */
        struct kw_session_info info;
};

struct kw_sessions {
        pthread_mutex_t mu;
        size_t max;
        int64_t idle, absolute;       /* milliseconds */
        struct slot *slots;
};

kw_result kw_sessions_new(size_t max, int64_t idle_seconds, int64_t max_seconds,
                          struct kw_sessions **ret)
{
        KW_ENSURE(max >= 1 && max <= KW_SESSIONS_MAX && idle_seconds >= 1 && max_seconds >= 1 &&
                          idle_seconds <= 1000000000 && max_seconds <= 1000000000,
                  KW_ERR_INPUT);
        struct kw_sessions *s = calloc(1, sizeof *s);
        KW_ENSURE(s != NULL, KW_ERR_NOMEM);
        s->slots = calloc(max, sizeof *s->slots);
        if (s->slots == NULL || pthread_mutex_init(&s->mu, NULL) != 0) {
                free(s->slots);
                free(s);
                KW_BAIL(KW_ERR_NOMEM);
        }
        s->max = max;
        s->idle = idle_seconds * 1000;
        s->absolute = max_seconds * 1000;
        *ret = s;
        return KW_OK;
}

void kw_sessions_free(struct kw_sessions *s)
{
        if (s == NULL)
                return;
        kw_wipe(s->slots, s->max * sizeof *s->slots);
        free(s->slots);
        pthread_mutex_destroy(&s->mu);
        free(s);
}

int64_t kw_sessions_idle_seconds(const struct kw_sessions *s) { return s->idle / 1000; }

static void slot_drop(struct slot *sl) { kw_wipe(sl, sizeof *sl); }

static int slot_expired(const struct kw_sessions *s, const struct slot *sl, int64_t now)
{
        return now - sl->last_used >= s->idle || now - sl->created >= s->absolute;
}

/* 32 random bytes as base64url (43 characters) into out. */
static kw_result random_b64url(char out[KW_SESSION_ID_LEN + 1])
{
        uint8_t raw[32];
        KW_TRY(kw_random(raw, sizeof raw));
        struct kw_buf b;
        kw_buf_init(&b, KW_SESSION_ID_LEN);
        kw_result r = kw_b64url_encode(raw, sizeof raw, &b);
        kw_wipe(raw, sizeof raw);
        if (r.code == 0 && b.len != KW_SESSION_ID_LEN)
                r = KW_RESULT(KW_ERR_INTERNAL);
        if (r.code == 0) {
                memcpy(out, b.p, KW_SESSION_ID_LEN);
                out[KW_SESSION_ID_LEN] = '\0';
        }
        kw_buf_free(&b);
        return r;
}

kw_result kw_sessions_create(struct kw_sessions *s, const struct kw_session_info *who, int64_t now,
                             int64_t wall, char ret_id[KW_SESSION_ID_LEN + 1],
                             struct kw_session_info *ret)
{
        KW_ENSURE(s != NULL && who != NULL && ret_id != NULL && ret != NULL, KW_ERR_INPUT);
        struct slot n;
        memset(&n, 0, sizeof n);
        n.used = 1;
        n.created = n.last_used = now;
        n.info = *who;
        char id[KW_SESSION_ID_LEN + 1];
        KW_TRY(random_b64url(id));
        kw_result r = random_b64url(n.info.csrf);
        if (r.code != 0) {
                kw_wipe(id, sizeof id);
                return r;
        }
        kw_sha256(id, KW_SESSION_ID_LEN, n.info.id_hash);
        n.info.created_wall = wall;
        n.info.expires_wall = wall + s->absolute / 1000;

        pthread_mutex_lock(&s->mu);
        struct slot *free_slot = NULL, *lru = NULL;
        for (size_t i = 0; i < s->max; i++) {
                struct slot *sl = &s->slots[i];
                if (sl->used && slot_expired(s, sl, now))
                        slot_drop(sl);
                if (!sl->used) {
                        if (free_slot == NULL)
                                free_slot = sl;
                } else if (lru == NULL || sl->last_used < lru->last_used) {
                        lru = sl;
                }
        }
        /* max >= 1: a slot is free, or the least recently used one is taken */
        struct slot *dst = free_slot != NULL ? free_slot : lru != NULL ? lru : &s->slots[0];
        *dst = n;
        pthread_mutex_unlock(&s->mu);
        *ret = n.info;
        memcpy(ret_id, id, sizeof id);
        kw_wipe(id, sizeof id);
        kw_wipe(&n, sizeof n);
        return KW_OK;
}

kw_result kw_sessions_find(struct kw_sessions *s, const uint8_t *id, size_t len, int64_t now,
                           struct kw_session_info *ret)
{
        KW_ENSURE(s != NULL && ret != NULL, KW_ERR_INPUT);
        if (id == NULL || len != KW_SESSION_ID_LEN) {
                kw_err_set_detail("no such session (signed out or expired)");
                KW_BAIL(KW_ERR_AUTH);
        }
        uint8_t h[32];
        kw_sha256(id, len, h);
        pthread_mutex_lock(&s->mu);
        struct slot *hit = NULL;
        for (size_t i = 0; i < s->max; i++) {
                struct slot *sl = &s->slots[i];
                /* every slot is compared, used or not: the time does not say where */
                int same = kw_ct_equal(sl->info.id_hash, h, sizeof h);
                if (same && sl->used)
                        hit = sl;
        }
        int ok = hit != NULL && !slot_expired(s, hit, now);
        if (hit != NULL && !ok)
                slot_drop(hit);
        if (ok) {
                hit->last_used = now;
                *ret = hit->info;
        }
        pthread_mutex_unlock(&s->mu);
        kw_wipe(h, sizeof h);
        if (!ok) {
                kw_err_set_detail("no such session (signed out or expired)");
                KW_BAIL(KW_ERR_AUTH);
        }
        return KW_OK;
}

size_t kw_sessions_end_account(struct kw_sessions *s, enum kw_session_kind kind,
                               const char *account, const uint8_t *keep_id_hash)
{
        if (s == NULL || account == NULL)
                return 0;
        size_t n = 0;
        pthread_mutex_lock(&s->mu);
        for (size_t i = 0; i < s->max; i++) {
                struct slot *sl = &s->slots[i];
                if (!sl->used || sl->info.kind != kind || strcmp(sl->info.account, account) != 0)
                        continue;
                if (keep_id_hash != NULL && kw_ct_equal(sl->info.id_hash, keep_id_hash, 32))
                        continue;
                slot_drop(sl);
                n++;
        }
        pthread_mutex_unlock(&s->mu);
        return n;
}

size_t kw_sessions_count(struct kw_sessions *s, int64_t now)
{
        if (s == NULL)
                return 0;
        size_t n = 0;
        pthread_mutex_lock(&s->mu);
        for (size_t i = 0; i < s->max; i++) {
                struct slot *sl = &s->slots[i];
                if (sl->used && slot_expired(s, sl, now))
                        slot_drop(sl);
                n += sl->used != 0;
        }
        pthread_mutex_unlock(&s->mu);
        return n;
}

int kw_session_csrf_ok(const char *expected, const uint8_t *got, size_t n)
{
        size_t len = strlen(expected);
        if (got == NULL || len != KW_SESSION_ID_LEN || n != len)
                return 0;
        return kw_ct_equal(expected, got, len);
}
