/*
 * connlimit.c - registry of open connections, per-client cap, watchdog
 * (see connlimit.h for the contract).
 *
 * The slots are a fixed array (one per worker thread, and a margin), with a
 * stack of free ones.  Opening and closing take the lock; counting a peer's
 * connections scans the slots in use (there are at most as many as worker
 * threads, and a handshake costs far more).  A slot's state and idle time
 * are atomics, so marking a request's start and end takes no lock; the
 * watchdog claims an idle slot with a compare-and-swap to SHUT before it
 * shuts the socket down, so a connection that turned busy first is left
 * alone.
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "connlimit.h"

#define SLOT_MARGIN 16

enum slot_state { SLOT_IDLE = 1, SLOT_BUSY = 2, SLOT_SHUT = 3 };

struct slot {
        int in_use;                   /* under the lock */
        int pool;
        int fd;
        uint8_t addr[16];             /* the client address (connlimit.h) */
        _Atomic int state;            /* enum slot_state */
        _Atomic int64_t idle_since;   /* CLOCK_MONOTONIC ms */
};

struct kw_connlimit {
        struct kw_connlimit_cfg cfg;
        pthread_mutex_t lock;
        struct slot *slots;
        int n_slots;
        int *free_stack;              /* indices of free slots */
        int n_free;
        int in_use[KW_CONNLIMIT_POOLS];
        _Atomic uint64_t refused;     /* over the per-client cap */
        _Atomic uint64_t shut_idle;   /* closed by the watchdog */
        /* the watchdog */
        pthread_t thread;
        pthread_cond_t wake;
        int running, stop;            /* under the lock */
        int64_t period_ms;
};

static int64_t now_ms(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* The client address of fd's peer: IPv4 as IPv4-mapped IPv6, IPv6 as its /64. */
KW_MUST_USE static kw_result peer_key(int fd, uint8_t key[16])
{
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        memset(&ss, 0, sizeof ss);
        KW_ENSURE(getpeername(fd, (struct sockaddr *)&ss, &len) == 0, KW_ERR_IO);
        memset(key, 0, 16);
        if (ss.ss_family == AF_INET) {
                const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
                key[10] = key[11] = 0xff;
                memcpy(key + 12, &a->sin_addr, 4);
        } else if (ss.ss_family == AF_INET6) {
                const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
                if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
                        memcpy(key, &a->sin6_addr, 16);
                else
                        memcpy(key, &a->sin6_addr, 8);      /* the /64 */
        } else {
                KW_BAIL(KW_ERR_IO);                         /* not an IP connection */
        }
        return KW_OK;
}

kw_result kw_connlimit_new(const struct kw_connlimit_cfg *cfg, struct kw_connlimit **ret)
{
        KW_ENSURE(cfg != NULL && ret != NULL, KW_ERR_INPUT);
        KW_ENSURE(cfg->per_client >= 1 && cfg->idle_ms >= 1 && cfg->pools >= 1 &&
                          cfg->pools <= KW_CONNLIMIT_POOLS,
                  KW_ERR_INPUT);
        int64_t total = SLOT_MARGIN;
        for (int p = 0; p < cfg->pools; p++) {
                KW_ENSURE(cfg->threads[p] >= 1 && cfg->threads[p] <= 1000000, KW_ERR_INPUT);
                total += cfg->threads[p];
        }
        struct kw_connlimit *cl = calloc(1, sizeof *cl);
        KW_ENSURE(cl != NULL, KW_ERR_NOMEM);
        cl->cfg = *cfg;
        cl->n_slots = (int)total;
        cl->slots = calloc((size_t)total, sizeof *cl->slots);
        cl->free_stack = calloc((size_t)total, sizeof *cl->free_stack);
        if (cl->slots == NULL || cl->free_stack == NULL ||
            pthread_mutex_init(&cl->lock, NULL) != 0) {
                free(cl->slots);
                free(cl->free_stack);
                free(cl);
                KW_BAIL(KW_ERR_NOMEM);
        }
        if (pthread_cond_init(&cl->wake, NULL) != 0) {
                pthread_mutex_destroy(&cl->lock);
                free(cl->slots);
                free(cl->free_stack);
                free(cl);
                KW_BAIL(KW_ERR_NOMEM);
        }
        for (int i = 0; i < cl->n_slots; i++)
                cl->free_stack[i] = cl->n_slots - 1 - i;
        cl->n_free = cl->n_slots;
        *ret = cl;
        return KW_OK;
}

kw_result kw_connlimit_open(struct kw_connlimit *cl, int pool, int fd, int *ret_slot)
{
        KW_ENSURE(cl != NULL && ret_slot != NULL && pool >= 0 && pool < cl->cfg.pools && fd >= 0,
                  KW_ERR_INTERNAL);
        uint8_t key[16];
        KW_TRY(peer_key(fd, key));
        pthread_mutex_lock(&cl->lock);
        int64_t same = 0;
        for (int i = 0; i < cl->n_slots && same < cl->cfg.per_client; i++)
                if (cl->slots[i].in_use && cl->slots[i].pool == pool && memcmp(cl->slots[i].addr, key, 16) == 0)
                        same++;
        if (same >= cl->cfg.per_client) {
                pthread_mutex_unlock(&cl->lock);
                atomic_fetch_add(&cl->refused, 1);
                KW_BAIL(KW_ERR_OVERLOAD);
        }
        if (cl->n_free == 0) {
                pthread_mutex_unlock(&cl->lock);
                KW_BAIL(KW_ERR_INTERNAL);
        }
        int k = cl->free_stack[--cl->n_free];
        struct slot *s = &cl->slots[k];
        s->in_use = 1;
        s->pool = pool;
        s->fd = fd;
        memcpy(s->addr, key, 16);
        atomic_store(&s->idle_since, now_ms());
        atomic_store(&s->state, SLOT_IDLE);
        cl->in_use[pool]++;
        pthread_mutex_unlock(&cl->lock);
        *ret_slot = k;
        return KW_OK;
}

static struct slot *slot_of(struct kw_connlimit *cl, int slot)
{
        return cl != NULL && slot >= 0 && slot < cl->n_slots ? &cl->slots[slot] : NULL;
}

void kw_connlimit_busy(struct kw_connlimit *cl, int slot)
{
        struct slot *s = slot_of(cl, slot);
        int idle = SLOT_IDLE;
        if (s != NULL)
                (void)atomic_compare_exchange_strong(&s->state, &idle, SLOT_BUSY);   /* SHUT stays */
}

void kw_connlimit_idle(struct kw_connlimit *cl, int slot)
{
        struct slot *s = slot_of(cl, slot);
        int busy = SLOT_BUSY;
        if (s == NULL)
                return;
        atomic_store(&s->idle_since, now_ms());
        (void)atomic_compare_exchange_strong(&s->state, &busy, SLOT_IDLE);
}

void kw_connlimit_close(struct kw_connlimit *cl, int slot)
{
        struct slot *s = slot_of(cl, slot);
        if (s == NULL)
                return;
        pthread_mutex_lock(&cl->lock);
        if (s->in_use) {
                s->in_use = 0;
                s->fd = -1;
                atomic_store(&s->state, 0);
                cl->in_use[s->pool]--;
                cl->free_stack[cl->n_free++] = slot;
        }
        pthread_mutex_unlock(&cl->lock);
}

int kw_connlimit_sweep(struct kw_connlimit *cl)
{
        if (cl == NULL)
                return 0;
        int n = 0;
        int64_t now = now_ms();
        pthread_mutex_lock(&cl->lock);
        int loaded[KW_CONNLIMIT_POOLS] = { 0 };
        int any = 0;
        for (int p = 0; p < cl->cfg.pools; p++) {
                /* 3/4 of the pool's worker threads hold a connection */
                loaded[p] = (int64_t)cl->in_use[p] * 4 >= (int64_t)cl->cfg.threads[p] * 3;
                any |= loaded[p];
        }
        for (int i = 0; any && i < cl->n_slots; i++) {
                struct slot *s = &cl->slots[i];
                if (!s->in_use || !loaded[s->pool] || now - atomic_load(&s->idle_since) < cl->cfg.idle_ms)
                        continue;
                int idle = SLOT_IDLE;
                if (!atomic_compare_exchange_strong(&s->state, &idle, SLOT_SHUT))
                        continue;                       /* busy (or already shut) */
                /* registered, so open and this connection's (see connlimit.h) */
                (void)shutdown(s->fd, SHUT_RDWR);
                n++;
        }
        pthread_mutex_unlock(&cl->lock);
        if (n > 0)
                atomic_fetch_add(&cl->shut_idle, (uint64_t)n);
        return n;
}

static void *watchdog(void *arg)
{
        struct kw_connlimit *cl = arg;
        pthread_mutex_lock(&cl->lock);
        while (!cl->stop) {
                struct timespec t;
                clock_gettime(CLOCK_REALTIME, &t);
                t.tv_sec += cl->period_ms / 1000;
                t.tv_nsec += (cl->period_ms % 1000) * 1000000;
                if (t.tv_nsec >= 1000000000) {
                        t.tv_sec++;
                        t.tv_nsec -= 1000000000;
                }
                (void)pthread_cond_timedwait(&cl->wake, &cl->lock, &t);
                if (cl->stop)
                        break;
                pthread_mutex_unlock(&cl->lock);
                (void)kw_connlimit_sweep(cl);
                pthread_mutex_lock(&cl->lock);
        }
        pthread_mutex_unlock(&cl->lock);
        return NULL;
}

kw_result kw_connlimit_start(struct kw_connlimit *cl, int64_t period_ms)
{
        KW_ENSURE(cl != NULL && period_ms >= 1, KW_ERR_INTERNAL);
        pthread_mutex_lock(&cl->lock);
        int already = cl->running;
        cl->period_ms = period_ms;
        cl->stop = 0;
        pthread_mutex_unlock(&cl->lock);
        KW_ENSURE(!already, KW_ERR_INTERNAL);
        KW_ENSURE(pthread_create(&cl->thread, NULL, watchdog, cl) == 0, KW_ERR_INTERNAL);
        pthread_mutex_lock(&cl->lock);
        cl->running = 1;
        pthread_mutex_unlock(&cl->lock);
        return KW_OK;
}

void kw_connlimit_free(struct kw_connlimit *cl)
{
        if (cl == NULL)
                return;
        pthread_mutex_lock(&cl->lock);
        int running = cl->running;
        cl->stop = 1;
        pthread_cond_signal(&cl->wake);
        pthread_mutex_unlock(&cl->lock);
        if (running)
                pthread_join(cl->thread, NULL);
        pthread_cond_destroy(&cl->wake);
        pthread_mutex_destroy(&cl->lock);
        free(cl->slots);
        free(cl->free_stack);
        free(cl);
}

kw_result kw_connlimit_metrics(struct kw_connlimit *cl, const char *node, struct kw_buf *out)
{
        KW_ENSURE(cl != NULL && node != NULL && out != NULL, KW_ERR_INTERNAL);
        int open[KW_CONNLIMIT_POOLS] = { 0 };
        pthread_mutex_lock(&cl->lock);
        memcpy(open, cl->in_use, sizeof open);
        pthread_mutex_unlock(&cl->lock);
        static const char *const pool_names[KW_CONNLIMIT_POOLS] = { "main", "admin" };
        size_t start = out->len;
        kw_result r = kw_buf_printf(
                out,
                "# HELP keyward_http_connections_refused_per_client_total Connections refused as their "
                "TLS handshake started: the client address had [http] max_connections_per_client.\n"
                "# TYPE keyward_http_connections_refused_per_client_total counter\n"
                "keyward_http_connections_refused_per_client_total{node=\"%s\"} %llu\n"
                "# HELP keyward_http_connections_closed_idle_total Idle connections closed while a "
                "listener's worker threads ran short ([http] idle_timeout_under_load_ms).\n"
                "# TYPE keyward_http_connections_closed_idle_total counter\n"
                "keyward_http_connections_closed_idle_total{node=\"%s\"} %llu\n"
                "# HELP keyward_http_worker_connections Connections holding a worker thread "
                "(handshakes included), by listener.\n"
                "# TYPE keyward_http_worker_connections gauge\n",
                node, (unsigned long long)atomic_load(&cl->refused),
                node, (unsigned long long)atomic_load(&cl->shut_idle));
        for (int p = 0; r.code == 0 && p < cl->cfg.pools; p++)
                r = kw_buf_printf(out, "keyward_http_worker_connections{node=\"%s\",listener=\"%s\"} %d\n",
                                  node, pool_names[p], open[p]);
        if (r.code != 0)
                out->len = start;
        return r;
}
