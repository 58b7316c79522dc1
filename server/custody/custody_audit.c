/*
 * custody_audit.c - the key-use audit queue: records are queued by the
 * request threads and appended to the key store in one batch per group
 * commit (every [db] audit_flush_ms, or sooner when 512 are waiting); a full
 * queue makes requests wait, it never drops a record.  Admin actions are not
 * queued: they are written in the transaction of their change.
 *
 * Durability (docs/audit.md): a key use is answered before its record is
 * committed.  A record is durable once the flush that carries it returned
 * (audit_flush: kw_keystore_audit_append commits with synchronous=FULL);
 * until then it is in this process's memory only, and a crash of the
 * custody process or of the machine loses it: at most what was answered in
 * the last audit_flush_ms plus the commit in progress, or, while flushes
 * fail, what waits here (the failed batch and the queue, each at most
 * AUDIT_QUEUE_MAX records; then requests wait).  audit_flush returns only
 * when everything queued before it was called is durable (or failed), so
 * that whatever GET /api/v1/audit shows has been committed.
 *
 * Two buffers: request threads fill `items`; a flush swaps it with
 * `flushing` under the lock and writes `flushing` without it.  A failed
 * flush keeps `flushing` as it is and writes it again first next time
 * (records stay in seq order), while `items` goes on filling up to its cap.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/log.h"
#include "custody_int.h"

struct audit_item {
        int64_t ts_ms;
        char actor[257], action[33], key_name[65], result[33], detail[129], request_id[257];
};

#define AUDIT_QUEUE_MAX 8192
#define AUDIT_FLUSH_EARLY 512               /* records that wake the flusher early  */
#define AUDIT_FAIL_LOG_MS 60000             /* a failing flush is logged once a minute */

struct audit_queue {
        struct kw_keystore *ks;
        unsigned flush_ms;
        pthread_mutex_t mu;                 /* items, n, stop                          */
        pthread_cond_t cv_flush, cv_space;
        struct audit_item *items;           /* being filled                            */
        size_t n;
        int stop;
        pthread_mutex_t flush_mu;           /* one flusher at a time; what follows    */
        struct audit_item *flushing;        /* being written (or waiting for a retry) */
        size_t nflushing;
        struct kw_audit_entry *entries;     /* views of flushing, for the key store   */
        int failing;                        /* the last flush failed                  */
        int64_t fail_logged_ms;
        uint64_t fail_unlogged;
        char last_error[200];
        uint64_t written, failed_flushes;   /* atomics                                 */
        pthread_t th;
};

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Writes q->flushing; under flush_mu. */
static kw_result flush_pending(struct audit_queue *q)
{
        size_t n = q->nflushing;
        for (size_t i = 0; i < n; i++) {
                const struct audit_item *it = &q->flushing[i];
                q->entries[i] = (struct kw_audit_entry){
                        .ts_ms = it->ts_ms, .actor = it->actor, .action = it->action,
                        .key_name = it->key_name, .result = it->result, .detail = it->detail,
                        .request_id = it->request_id };
        }
        kw_result r = kw_keystore_audit_append(q->ks, q->entries, n);
        if (r.code == 0) {
                q->nflushing = 0;
                __atomic_add_fetch(&q->written, n, __ATOMIC_RELAXED);
                if (q->failing)
                        kw_log(KW_LOG_INFO, "audit_flush_recovered", KW_END);
                __atomic_store_n(&q->failing, 0, __ATOMIC_RELAXED);
                return r;
        }
        /* keep them: the next flush writes them first */
        __atomic_add_fetch(&q->failed_flushes, 1, __ATOMIC_RELAXED);
        snprintf(q->last_error, sizeof q->last_error, "%s: %s", kw_err_name(r.code), kw_err_detail());
        int64_t now = now_ms();
        if (!q->failing || now - q->fail_logged_ms >= AUDIT_FAIL_LOG_MS) {
                char waiting[24], since[24];
                snprintf(waiting, sizeof waiting, "%zu", n);
                snprintf(since, sizeof since, "%llu", (unsigned long long)q->fail_unlogged);
                kw_log(KW_LOG_ERROR, "audit_flush_failed", "error", kw_err_name(r.code),
                       "detail", kw_err_detail(), "records_waiting", waiting,
                       "failures_since_last_line", since, KW_END);
                q->fail_logged_ms = now;
                q->fail_unlogged = 0;
        } else {
                q->fail_unlogged++;
        }
        __atomic_store_n(&q->failing, 1, __ATOMIC_RELAXED);
        return r;
}

kw_result audit_flush(struct audit_queue *q)
{
        pthread_mutex_lock(&q->flush_mu);
        kw_result r = KW_OK;
        /* at most twice: a batch left by a failed flush, then what is queued */
        for (int round = 0; round < 2 && kw_ok(r); round++) {
                if (q->nflushing == 0) {
                        pthread_mutex_lock(&q->mu);
                        struct audit_item *t = q->flushing;
                        q->flushing = q->items;
                        q->nflushing = q->n;
                        q->items = t;
                        q->n = 0;
                        pthread_cond_broadcast(&q->cv_space);
                        pthread_mutex_unlock(&q->mu);
                }
                if (q->nflushing == 0)
                        break;
                r = flush_pending(q);
        }
        pthread_mutex_unlock(&q->flush_mu);
        return r;
}

static void *audit_thread(void *arg)
{
        struct audit_queue *q = arg;
        pthread_mutex_lock(&q->mu);
        while (!q->stop) {
                struct timespec dl;
                clock_gettime(CLOCK_REALTIME, &dl);
                dl.tv_nsec += (long)q->flush_ms * 1000000L;
                dl.tv_sec += dl.tv_nsec / 1000000000L;
                dl.tv_nsec %= 1000000000L;
                pthread_cond_timedwait(&q->cv_flush, &q->mu, &dl);
                if (q->n == 0 && __atomic_load_n(&q->nflushing, __ATOMIC_RELAXED) == 0)
                        continue;
                pthread_mutex_unlock(&q->mu);
                kw_ignore(audit_flush(q));
                pthread_mutex_lock(&q->mu);
        }
        pthread_mutex_unlock(&q->mu);
        return NULL;
}

kw_result audit_queue_new(struct kw_keystore *ks, unsigned flush_ms, struct audit_queue **ret)
{
        struct audit_queue *q = calloc(1, sizeof *q);
        KW_ENSURE(q != NULL, KW_ERR_NOMEM);
        q->items = calloc(AUDIT_QUEUE_MAX, sizeof *q->items);
        q->flushing = calloc(AUDIT_QUEUE_MAX, sizeof *q->flushing);
        q->entries = calloc(AUDIT_QUEUE_MAX, sizeof *q->entries);
        if (q->items == NULL || q->flushing == NULL || q->entries == NULL) {
                free(q->items);
                free(q->flushing);
                free(q->entries);
                free(q);
                KW_BAIL(KW_ERR_NOMEM);
        }
        q->ks = ks;
        q->flush_ms = flush_ms ? flush_ms : 50;
        pthread_mutex_init(&q->mu, NULL);
        pthread_mutex_init(&q->flush_mu, NULL);
        pthread_cond_init(&q->cv_flush, NULL);
        pthread_cond_init(&q->cv_space, NULL);
        if (pthread_create(&q->th, NULL, audit_thread, q) != 0) {
                free(q->items);
                free(q->flushing);
                free(q->entries);
                free(q);
                KW_BAIL(KW_ERR_INTERNAL);
        }
        *ret = q;
        return KW_OK;
}

void audit_queue_free(struct audit_queue *q)
{
        if (q == NULL)
                return;
        pthread_mutex_lock(&q->mu);
        q->stop = 1;
        pthread_cond_broadcast(&q->cv_flush);
        pthread_cond_broadcast(&q->cv_space);
        pthread_mutex_unlock(&q->mu);
        pthread_join(q->th, NULL);
        kw_ignore(audit_flush(q));
        free(q->items);
        free(q->flushing);
        free(q->entries);
        free(q);
}

size_t audit_pending(struct audit_queue *q)
{
        pthread_mutex_lock(&q->mu);
        size_t n = q->n;
        pthread_mutex_unlock(&q->mu);
        return n + __atomic_load_n(&q->nflushing, __ATOMIC_RELAXED);
}

void audit_queue_get_stats(struct audit_queue *q, struct audit_queue_stats *ret)
{
        memset(ret, 0, sizeof *ret);
        ret->pending = audit_pending(q);
        ret->written = __atomic_load_n(&q->written, __ATOMIC_RELAXED);
        ret->failed_flushes = __atomic_load_n(&q->failed_flushes, __ATOMIC_RELAXED);
        /* flush_mu may be held for a whole commit: the last error is read
         * without waiting for it (a stale text at worst) */
        if (pthread_mutex_trylock(&q->flush_mu) == 0) {
                ret->failing = q->failing;
                snprintf(ret->last_error, sizeof ret->last_error, "%s", q->failing ? q->last_error : "");
                pthread_mutex_unlock(&q->flush_mu);
        } else {
                ret->failing = __atomic_load_n(&q->failing, __ATOMIC_RELAXED);
        }
}

/* Copies s (NULL: "") into dst, cut to fit: on the hot path, where one
 * snprintf per field showed in profiles. */
static void copy_cut(char *dst, size_t dstsz, const char *s)
{
        size_t n = s != NULL ? strnlen(s, dstsz - 1) : 0;
        if (n != 0)
                memcpy(dst, s, n);
        dst[n] = '\0';
}

void audit_push(struct audit_queue *q, const struct op_caller *who, const char *action,
                const char *key_name, int code, const char *detail)
{
        audit_push_result(q, who, action, key_name, code == 0 ? "ok" : kw_err_name(code), detail);
}

void audit_push_result(struct audit_queue *q, const struct op_caller *who, const char *action,
                       const char *key_name, const char *result, const char *detail)
{
        pthread_mutex_lock(&q->mu);
        while (q->n >= AUDIT_QUEUE_MAX && !q->stop) {   /* back-pressure, never drop */
                pthread_cond_signal(&q->cv_flush);
                pthread_cond_wait(&q->cv_space, &q->mu);
        }
        if (q->n < AUDIT_QUEUE_MAX) {
                struct audit_item *it = &q->items[q->n++];
                it->ts_ms = now_ms();
                copy_cut(it->actor, sizeof it->actor, who ? who->actor : "");
                copy_cut(it->action, sizeof it->action, action);
                copy_cut(it->key_name, sizeof it->key_name, key_name);
                copy_cut(it->result, sizeof it->result, result);
                copy_cut(it->detail, sizeof it->detail, detail);
                copy_cut(it->request_id, sizeof it->request_id, who ? who->request_id : "");
                if (q->n >= AUDIT_FLUSH_EARLY)
                        pthread_cond_signal(&q->cv_flush);
        }
        pthread_mutex_unlock(&q->mu);
}
