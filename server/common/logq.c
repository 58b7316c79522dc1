/* logq.c - the log writer: bounded queue, one thread, batched writes (see logq.h). */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "logq.h"

/* What the writer is waiting for, so that producers wake it only when it
 * needs waking (a futex wake is a system call). */
enum wait_kind {
        W_NONE = 0,     /* awake: writing, or about to take the queue */
        W_IDLE,         /* nothing queued: any line wakes it */
        W_GATHER,       /* lines queued, gathering more until flush_ms */
};

struct kw_logq {
        pthread_mutex_t mu;
        pthread_cond_t work;            /* the writer waits here (CLOCK_MONOTONIC) */
        pthread_cond_t space;           /* KEEP producers wait here for room */
        /* under mu */
        char *fill;                     /* producers append here */
        char *flush;                    /* the writer writes this one, unlocked */
        size_t fill_len;
        enum wait_kind wait;
        int urgent;                     /* a KEEP line is queued or waiting */
        int stopping;                   /* kw_logq_stop called */
        int closed;                     /* the writer has finished: pushes not taken */
        unsigned waiters;               /* producers waiting on space */
        /* fixed at start */
        size_t cap, reserve, high, chunk;
        int fd;
        unsigned flush_ms, report_ms;
        size_t (*report)(uint64_t n, char *out, size_t outsz);
        pthread_t thread;
        /* counters, read without the lock */
        _Atomic uint64_t dropped;
        _Atomic uint64_t lost;
        /* the writer thread's own */
        uint64_t reported;              /* drops already reported */
        struct timespec last_report;
        int joined;
};

static struct timespec ts_after(const struct timespec *from, unsigned ms)
{
        struct timespec t = *from;
        t.tv_sec += ms / 1000;
        t.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (t.tv_nsec >= 1000000000L) {
                t.tv_sec++;
                t.tv_nsec -= 1000000000L;
        }
        return t;
}

static struct timespec mono_now(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return t;
}

static int mono_before(const struct timespec *a, const struct timespec *b)
{
        return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* All of p[0..n) to fd: 0, or -1 on an error that more tries will not cure. */
static int write_all(int fd, const char *p, size_t n)
{
        while (n > 0) {
                ssize_t w = write(fd, p, n);
                if (w > 0) {
                        p += w;
                        n -= (size_t)w;
                } else if (w < 0 && errno == EINTR) {
                        continue;
                } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                        /* a descriptor someone else made non-blocking: wait
                         * as a blocking write would */
                        struct pollfd pf = { .fd = fd, .events = POLLOUT };
                        (void)poll(&pf, 1, 1000);
                } else {
                        return -1;
                }
        }
        return 0;
}

static uint64_t count_lines(const char *p, size_t n)
{
        uint64_t k = 0;
        for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
                k++;
        return k;
}

/* Writes whole lines, at most q->chunk bytes a write (a single longer line
 * alone); on a failed write the rest of the batch is counted lost. */
static void write_batch(struct kw_logq *q, const char *p, size_t n)
{
        while (n > 0) {
                size_t len = n;
                if (len > q->chunk) {
                        const char *nl = memrchr(p, '\n', q->chunk);
                        if (nl == NULL)
                                nl = memchr(p + q->chunk, '\n', n - q->chunk);
                        len = nl != NULL ? (size_t)(nl - p) + 1 : n;
                }
                if (write_all(q->fd, p, len) != 0) {
                        atomic_fetch_add_explicit(&q->lost, count_lines(p, n), memory_order_relaxed);
                        return;
                }
                p += len;
                n -= len;
        }
}

static int drops_pending(const struct kw_logq *q)
{
        return q->report != NULL && atomic_load_explicit(&q->dropped, memory_order_relaxed) != q->reported;
}

/* The time the next drop report is due. */
static struct timespec report_due(const struct kw_logq *q)
{
        return ts_after(&q->last_report, q->report_ms);
}

/* Writes the drop report when drops are pending and it is due (or force).
 * Called without the lock. */
static void report_drops(struct kw_logq *q, int force)
{
        if (!drops_pending(q))
                return;
        struct timespec now = mono_now(), due = report_due(q);
        if (!force && mono_before(&now, &due))
                return;
        uint64_t d = atomic_load_explicit(&q->dropped, memory_order_relaxed);
        char line[512];
        size_t len = q->report(d - q->reported, line, sizeof line);
        q->reported = d;
        q->last_report = now;
        if (len > 0 && len <= sizeof line)
                write_batch(q, line, len);
}

static void *writer_main(void *arg)
{
        struct kw_logq *q = arg;
        (void)prctl(PR_SET_NAME, "kw-log", 0, 0, 0);
        pthread_mutex_lock(&q->mu);
        for (;;) {
                while (q->fill_len == 0 && !q->stopping) {
                        q->wait = W_IDLE;
                        if (!drops_pending(q)) {
                                pthread_cond_wait(&q->work, &q->mu);
                                continue;
                        }
                        /* a report still owed: written when due even if no
                         * line comes */
                        struct timespec due = report_due(q);
                        if (pthread_cond_timedwait(&q->work, &q->mu, &due) == ETIMEDOUT) {
                                q->wait = W_NONE;
                                pthread_mutex_unlock(&q->mu);
                                report_drops(q, 0);
                                pthread_mutex_lock(&q->mu);
                        }
                }
                if (q->fill_len == 0)
                        break;                  /* stopping, and everything written */
                struct timespec until = mono_now();
                until = ts_after(&until, q->flush_ms);
                while (!q->stopping && !q->urgent && q->fill_len < q->high) {
                        q->wait = W_GATHER;
                        if (pthread_cond_timedwait(&q->work, &q->mu, &until) == ETIMEDOUT)
                                break;
                }
                q->wait = W_NONE;
                char *batch = q->fill;
                size_t n = q->fill_len;
                q->fill = q->flush;
                q->flush = batch;
                q->fill_len = 0;
                q->urgent = 0;
                if (q->waiters != 0)
                        pthread_cond_broadcast(&q->space);
                pthread_mutex_unlock(&q->mu);
                write_batch(q, batch, n);
                report_drops(q, 0);
                pthread_mutex_lock(&q->mu);
        }
        q->closed = 1;
        q->wait = W_NONE;
        if (q->waiters != 0)
                pthread_cond_broadcast(&q->space);      /* they write their lines themselves */
        pthread_mutex_unlock(&q->mu);
        report_drops(q, 1);
        return NULL;
}

kw_result kw_logq_start(const struct kw_logq_cfg *cfg, struct kw_logq **ret)
{
        KW_ENSURE(cfg != NULL && ret != NULL && cfg->cap > cfg->reserve && cfg->cap >= 4 * PIPE_BUF &&
                          cfg->flush_ms >= 1 && cfg->flush_ms <= 1000 && cfg->report_ms >= 1,
                  KW_ERR_CONFIG);
        struct kw_logq *q = calloc(1, sizeof *q);
        KW_ENSURE(q != NULL, KW_ERR_NOMEM);
        /* Log lines carry no secret (STYLE.md 11), so these buffers are not
         * wiped: a memset of every batch would cost the writer for nothing. */
        q->fill = malloc(cfg->cap);
        q->flush = malloc(cfg->cap);
        pthread_condattr_t ca;
        int ok = q->fill != NULL && q->flush != NULL;
        if (!ok) {
                free(q->fill);
                free(q->flush);
                free(q);
                KW_BAIL(KW_ERR_NOMEM);
        }
        pthread_mutex_init(&q->mu, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&q->work, &ca);
        pthread_condattr_destroy(&ca);
        pthread_cond_init(&q->space, NULL);
        q->fd = cfg->fd;
        q->cap = cfg->cap;
        q->reserve = cfg->reserve;
        q->high = cfg->cap / 4;
        q->flush_ms = cfg->flush_ms;
        q->report_ms = cfg->report_ms;
        q->report = cfg->report;
        q->last_report = mono_now();
        /* regular file: appends are atomic whatever their size; anything
         * else: writes of at most PIPE_BUF bytes keep our lines whole
         * beside other processes' (logq.h) */
        struct stat st;
        q->chunk = fstat(cfg->fd, &st) == 0 && S_ISREG(st.st_mode) ? cfg->cap : PIPE_BUF;

        /* the writer starts with every signal blocked: none is meant for it,
         * and none interrupts its writes */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int rc = pthread_create(&q->thread, NULL, writer_main, q);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0) {
                pthread_cond_destroy(&q->work);
                pthread_cond_destroy(&q->space);
                pthread_mutex_destroy(&q->mu);
                free(q->fill);
                free(q->flush);
                free(q);
                KW_BAIL(KW_ERR_INTERNAL);
        }
        *ret = q;
        return KW_OK;
}

enum kw_logq_push_result kw_logq_push(struct kw_logq *q, const void *line, size_t n, enum kw_logq_mode mode)
{
        if (n > q->cap)
                return KW_LOGQ_NOT_TAKEN;
        int keep = mode == KW_LOGQ_KEEP;
        size_t limit = keep ? q->cap : q->cap - q->reserve;
        pthread_mutex_lock(&q->mu);
        /* fill_len <= cap and n <= cap: the sum cannot wrap */
        while (!q->closed && q->fill_len + n > limit) {
                if (!keep) {
                        atomic_fetch_add_explicit(&q->dropped, 1, memory_order_relaxed);
                        pthread_mutex_unlock(&q->mu);
                        return KW_LOGQ_DROPPED;
                }
                /* back-pressure: only for lines that are never dropped */
                q->urgent = 1;
                if (q->wait != W_NONE) {
                        q->wait = W_NONE;
                        pthread_cond_signal(&q->work);
                }
                q->waiters++;
                pthread_cond_wait(&q->space, &q->mu);
                q->waiters--;
        }
        if (q->closed) {
                pthread_mutex_unlock(&q->mu);
                return KW_LOGQ_NOT_TAKEN;
        }
        memcpy(q->fill + q->fill_len, line, n);
        q->fill_len += n;
        if (keep)
                q->urgent = 1;
        if (q->wait == W_IDLE || (q->wait == W_GATHER && (q->urgent || q->fill_len >= q->high))) {
                q->wait = W_NONE;               /* one wake-up is enough */
                pthread_cond_signal(&q->work);
        }
        pthread_mutex_unlock(&q->mu);
        return KW_LOGQ_QUEUED;
}

int kw_logq_stop(struct kw_logq *q, unsigned timeout_ms)
{
        if (q == NULL)
                return 0;
        if (q->joined)
                return 0;
        pthread_mutex_lock(&q->mu);
        q->stopping = 1;
        q->wait = W_NONE;
        pthread_cond_signal(&q->work);
        pthread_mutex_unlock(&q->mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);      /* pthread_timedjoin_np's clock */
        until = ts_after(&until, timeout_ms);
        if (pthread_timedjoin_np(q->thread, NULL, &until) != 0)
                return -1;      /* blocked in a write: it keeps its buffers */
        q->joined = 1;
        return 0;
}

void kw_logq_free(struct kw_logq *q)
{
        if (q == NULL || !q->joined)
                return;         /* never under a running writer */
        pthread_cond_destroy(&q->work);
        pthread_cond_destroy(&q->space);
        pthread_mutex_destroy(&q->mu);
        free(q->fill);
        free(q->flush);
        free(q);
}

uint64_t kw_logq_dropped(const struct kw_logq *q)
{
        return q ? atomic_load_explicit(&q->dropped, memory_order_relaxed) : 0;
}

uint64_t kw_logq_lost(const struct kw_logq *q)
{
        return q ? atomic_load_explicit(&q->lost, memory_order_relaxed) : 0;
}
