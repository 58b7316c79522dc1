/*
 * custody_audit.c - the key-use audit queue: rows are queued by the request
 * threads and appended to the hash-chained audit table in batches (group
 * commit every [db] audit_flush_ms, or sooner when 512 are waiting); a full
 * queue makes requests wait, it never drops a row.  Admin actions are not
 * queued: they are written in the transaction of their change.
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

struct audit_queue {
        struct kw_keystore *ks;
        unsigned flush_ms;
        pthread_mutex_t mu;
        pthread_cond_t cv_flush, cv_space;
        struct audit_item *items;
        size_t n, cap;
        int stop;
        uint64_t written, failed_batches;
        pthread_mutex_t flush_mu;     /* one flusher at a time */
        pthread_t th;
};

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

kw_result audit_flush(struct audit_queue *q)
{
        pthread_mutex_lock(&q->flush_mu);
        pthread_mutex_lock(&q->mu);
        size_t n = q->n;
        struct audit_item *batch = NULL;
        if (n != 0) {
                batch = malloc(n * sizeof *batch);
                if (batch != NULL) {
                        memcpy(batch, q->items, n * sizeof *batch);
                        q->n = 0;
                        pthread_cond_broadcast(&q->cv_space);
                }
        }
        pthread_mutex_unlock(&q->mu);
        kw_result r = KW_OK;
        if (n != 0 && batch == NULL)
                r = KW_RESULT(KW_ERR_NOMEM);
        if (batch != NULL) {
                struct kw_audit_entry *e = calloc(n, sizeof *e);
                if (e == NULL) {
                        r = KW_RESULT(KW_ERR_NOMEM);
                } else {
                        for (size_t i = 0; i < n; i++)
                                e[i] = (struct kw_audit_entry){
                                        .ts_ms = batch[i].ts_ms, .actor = batch[i].actor,
                                        .action = batch[i].action, .key_name = batch[i].key_name,
                                        .result = batch[i].result, .detail = batch[i].detail,
                                        .request_id = batch[i].request_id };
                        r = kw_keystore_audit_append(q->ks, e, n);
                        free(e);
                }
                if (r.code != 0) {
                        /* keep the rows: put them back in front for the next try */
                        pthread_mutex_lock(&q->mu);
                        size_t room = q->cap - q->n;
                        size_t keep = n < room ? n : room;
                        memmove(q->items + keep, q->items, q->n * sizeof *batch);
                        memcpy(q->items, batch, keep * sizeof *batch);
                        q->n += keep;
                        q->failed_batches++;
                        pthread_mutex_unlock(&q->mu);
                        kw_log(KW_LOG_ERROR, "audit_flush_failed", "error", kw_err_name(r.code),
                               "detail", kw_err_detail(), KW_END);
                } else {
                        __atomic_add_fetch(&q->written, n, __ATOMIC_RELAXED);
                }
                free(batch);
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
                if (q->n == 0)
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
        if (q->items == NULL) {
                free(q);
                KW_BAIL(KW_ERR_NOMEM);
        }
        q->ks = ks;
        q->cap = AUDIT_QUEUE_MAX;
        q->flush_ms = flush_ms ? flush_ms : 50;
        pthread_mutex_init(&q->mu, NULL);
        pthread_mutex_init(&q->flush_mu, NULL);
        pthread_cond_init(&q->cv_flush, NULL);
        pthread_cond_init(&q->cv_space, NULL);
        if (pthread_create(&q->th, NULL, audit_thread, q) != 0) {
                free(q->items);
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
        pthread_mutex_unlock(&q->mu);
        pthread_join(q->th, NULL);
        kw_ignore(audit_flush(q));
        free(q->items);
        free(q);
}

size_t audit_pending(struct audit_queue *q)
{
        pthread_mutex_lock(&q->mu);
        size_t n = q->n;
        pthread_mutex_unlock(&q->mu);
        return n;
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
        pthread_mutex_lock(&q->mu);
        while (q->n >= q->cap && !q->stop) {   /* back-pressure, never drop */
                pthread_cond_signal(&q->cv_flush);
                pthread_cond_wait(&q->cv_space, &q->mu);
        }
        if (q->n < q->cap) {
                struct audit_item *it = &q->items[q->n++];
                it->ts_ms = now_ms();
                copy_cut(it->actor, sizeof it->actor, who ? who->actor : "");
                copy_cut(it->action, sizeof it->action, action);
                copy_cut(it->key_name, sizeof it->key_name, key_name);
                copy_cut(it->result, sizeof it->result, code == 0 ? "ok" : kw_err_name(code));
                copy_cut(it->detail, sizeof it->detail, detail);
                copy_cut(it->request_id, sizeof it->request_id, who ? who->request_id : "");
                if (q->n >= 512)
                        pthread_cond_signal(&q->cv_flush);
        }
        pthread_mutex_unlock(&q->mu);
}

