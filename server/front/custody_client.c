/* custody_client.c - the front's calls to the custody process: a few
 * connections, many calls in flight on each (custody_client.h). */
#include <errno.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "custody_client.h"

#define CC_READ_SLICE_MS 50

/*
 * A few connections, many calls in flight on each, replies matched by
 * request id.  There is no reader thread: of the callers waiting on a
 * connection, one reads (poll + recv of whatever the socket holds) and
 * hands each reply to its caller; when its own reply has come it passes the
 * reading on to another waiter.  A call alone on a connection thus reads its
 * own reply, as a plain round trip would: send, then recv (blocking, the
 * socket's receive timeout of CC_READ_SLICE_MS bounding each wait so that
 * the call's own timeout holds to within that).
 *
 * Locks: cc->mu (which connection serves each slot) before k->mu (a
 * connection's waiters and reader); k->send_mu alone.  Waiters are woken
 * after k->mu is released, so that they do not wake only to wait for it.
 */
struct cc_waiter {
        uint32_t id;
        int done;
        kw_result r;
        char detail[96];              /* transport failure text                */
        struct kw_buf *dst;           /* the reply frame's payload goes here   */
        pthread_cond_t *cv;
        struct cc_waiter *next;
};

struct cc_conn {
        int fd;
        unsigned refs;                /* the slot's + each call's (atomic)    */
        pthread_mutex_t mu;
        int dead;                     /* (mu)                                 */
        int reading;                  /* a caller is reading (mu)             */
        struct cc_waiter *waiters;    /* calls sent, reply pending (mu)       */
        pthread_mutex_t send_mu;
        struct kw_ipc_rx rx;          /* the reader's                         */
};

struct kw_cc {
        char path[108];
        unsigned timeout_ms;
        unsigned n;
        int paused;             /* kw_cc_pause: no connection until kw_cc_resume */
        pthread_mutex_t mu;
        pthread_cond_t cv;      /* pause */
        uint32_t next_id;       /* atomic */
        unsigned next_slot;     /* atomic: a calling thread's slot, round robin */
        uint64_t late;          /* atomic: replies to calls that had given up */
        struct cc_conn *conns[];
};

kw_result kw_cc_new(const char *socket_path, unsigned connections, unsigned timeout_ms,
                    struct kw_cc **ret)
{
        KW_ENSURE(connections >= 1 && connections <= 1024, KW_ERR_CONFIG);
        KW_ENSURE(strlen(socket_path) < sizeof((struct sockaddr_un *)0)->sun_path, KW_ERR_CONFIG);
        struct kw_cc *cc = calloc(1, sizeof *cc + connections * sizeof(struct cc_conn *));
        KW_ENSURE(cc != NULL, KW_ERR_NOMEM);
        snprintf(cc->path, sizeof cc->path, "%s", socket_path);
        cc->timeout_ms = timeout_ms;
        cc->n = connections;
        pthread_mutex_init(&cc->mu, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&cc->cv, &ca);
        pthread_condattr_destroy(&ca);
        *ret = cc;
        return KW_OK;
}

/* Drops a reference; the last one closes and frees. */
static void conn_unref(struct cc_conn *k)
{
        if (__atomic_sub_fetch(&k->refs, 1, __ATOMIC_ACQ_REL) != 0)
                return;
        close(k->fd);
        kw_ipc_rx_free(&k->rx);
        pthread_mutex_destroy(&k->mu);
        pthread_mutex_destroy(&k->send_mu);
        free(k);
}

void kw_cc_free(struct kw_cc *cc)
{
        if (cc == NULL)
                return;
        for (unsigned i = 0; i < cc->n; i++)
                if (cc->conns[i] != NULL)
                        conn_unref(cc->conns[i]);
        pthread_mutex_destroy(&cc->mu);
        pthread_cond_destroy(&cc->cv);
        free(cc);
}

static int cc_connect(const char *path)
{
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -1;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        memcpy(sa.sun_path, path, strlen(path) + 1);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
                int e = errno;
                close(fd);
                errno = e;
                return -1;
        }
        return fd;
}

void kw_cc_pause(struct kw_cc *cc)
{
        pthread_mutex_lock(&cc->mu);
        cc->paused = 1;
        pthread_mutex_unlock(&cc->mu);
}

void kw_cc_resume(struct kw_cc *cc)
{
        pthread_mutex_lock(&cc->mu);
        cc->paused = 0;
        pthread_cond_broadcast(&cc->cv);
        pthread_mutex_unlock(&cc->mu);
}

/* ---- the calling threads' condition variables ----
 * Each calling thread waits on its own.  They live as long as the process
 * (there are as many as threads that ever called: the front's workers), so
 * a reader may signal one after releasing k->mu even if its waiter has
 * since returned: at worst a spurious wake-up, which every wait tolerates. */
struct cc_cv {
        pthread_cond_t cv;
        struct cc_cv *next;
};
static struct cc_cv *cc_cvs;               /* all of them (keeps them reachable) */
static pthread_mutex_t cc_cvs_mu = PTHREAD_MUTEX_INITIALIZER;
static __thread pthread_cond_t *cc_my_cv;

static pthread_cond_t *thread_cv(void)
{
        if (cc_my_cv != NULL)
                return cc_my_cv;
        struct cc_cv *c = malloc(sizeof *c);
        if (c == NULL)
                return NULL;
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&c->cv, &ca);
        pthread_condattr_destroy(&ca);
        pthread_mutex_lock(&cc_cvs_mu);
        c->next = cc_cvs;
        cc_cvs = c;
        pthread_mutex_unlock(&cc_cvs_mu);
        cc_my_cv = &c->cv;
        return cc_my_cv;
}

/* Condition variables to signal once k->mu is released. */
struct wake_list {
        pthread_cond_t *cv[64];
        unsigned n;
};

static void wake_add(struct wake_list *wl, pthread_cond_t *cv)
{
        if (wl->n == sizeof wl->cv / sizeof wl->cv[0]) {
                pthread_cond_signal(cv);   /* a long batch: under the lock, still correct */
                return;
        }
        wl->cv[wl->n++] = cv;
}

static void wake_all(struct wake_list *wl)
{
        for (unsigned i = 0; i < wl->n; i++)
                pthread_cond_signal(wl->cv[i]);
        wl->n = 0;
}

/* ---- connections ---- */

/* Takes k out of service (k->mu held): every call in flight on it fails
 * with detail (their wake-ups go to wl), and the socket is shut so that a
 * reader in poll() wakes.  The slot is cleared by conn_retire. */
static void conn_fail_locked(struct cc_conn *k, const char *detail, struct wake_list *wl)
{
        if (k->dead)
                return;
        k->dead = 1;
        shutdown(k->fd, SHUT_RDWR);
        for (struct cc_waiter *w = k->waiters; w != NULL; w = w->next) {
                w->done = 1;
                w->r = KW_RESULT(KW_ERR_CUSTODY_DOWN);
                snprintf(w->detail, sizeof w->detail, "%s", detail);
                wake_add(wl, w->cv);
        }
        k->waiters = NULL;
}

/* Clears the slot that still holds a dead k, so the next call connects anew. */
static void conn_retire(struct kw_cc *cc, struct cc_conn *k)
{
        pthread_mutex_lock(&cc->mu);
        for (unsigned i = 0; i < cc->n; i++)
                if (cc->conns[i] == k) {
                        cc->conns[i] = NULL;
                        conn_unref(k);
                }
        pthread_mutex_unlock(&cc->mu);
}

static void conn_fail(struct kw_cc *cc, struct cc_conn *k, const char *detail)
{
        struct wake_list wl = { .n = 0 };
        pthread_mutex_lock(&k->mu);
        conn_fail_locked(k, detail, &wl);
        pthread_mutex_unlock(&k->mu);
        wake_all(&wl);
        conn_retire(cc, k);
}

static void waiter_remove(struct cc_conn *k, struct cc_waiter *w)
{
        for (struct cc_waiter **pp = &k->waiters; *pp != NULL; pp = &(*pp)->next)
                if (*pp == w) {
                        *pp = w->next;
                        return;
                }
}

static void deadline_in(struct timespec *dl, unsigned ms)
{
        clock_gettime(CLOCK_MONOTONIC, dl);
        dl->tv_sec += ms / 1000;
        dl->tv_nsec += (long)(ms % 1000) * 1000000L;
        if (dl->tv_nsec >= 1000000000L) {
                dl->tv_sec++;
                dl->tv_nsec -= 1000000000L;
        }
}

static int ms_left(const struct timespec *dl)
{
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t ms = (int64_t)(dl->tv_sec - now.tv_sec) * 1000 + (dl->tv_nsec - now.tv_nsec) / 1000000;
        return ms < 0 ? 0 : ms > INT32_MAX ? INT32_MAX : (int)ms;
}

/* Each calling thread sticks to one slot (round robin as threads first
 * call): its calls queue behind each other on one stream, never behind the
 * same thread's. */
static __thread unsigned cc_my_slot = UINT32_MAX;

/* The calling thread's connection with a reference taken, connecting the
 * slot when it has none; NULL with errno when that fails.  *fresh when this
 * call made the connection. */
static struct cc_conn *conn_get(struct kw_cc *cc, int *fresh)
{
        if (cc_my_slot == UINT32_MAX)
                cc_my_slot = __atomic_fetch_add(&cc->next_slot, 1, __ATOMIC_RELAXED);
        unsigned slot = cc_my_slot % cc->n;
        *fresh = 0;
        pthread_mutex_lock(&cc->mu);
        struct cc_conn *k = cc->conns[slot];
        if (k == NULL) {
                /* connect under the lock: the slot's other callers wait for
                 * this connection rather than race to make their own */
                int fd = cc_connect(cc->path);
                int e = errno;
                k = fd >= 0 ? calloc(1, sizeof *k) : NULL;
                if (k == NULL) {
                        if (fd >= 0)
                                close(fd);
                        pthread_mutex_unlock(&cc->mu);
                        errno = fd >= 0 ? ENOMEM : e;
                        return NULL;
                }
                k->fd = fd;
                k->refs = 1;            /* the slot's */
                pthread_mutex_init(&k->mu, NULL);
                pthread_mutex_init(&k->send_mu, NULL);
                kw_ipc_rx_init(&k->rx);
                /* the reader then waits in recv, not in a poll before it */
                kw_ignore(kw_ipc_set_read_slice(&k->rx, fd, CC_READ_SLICE_MS));
                cc->conns[slot] = k;
                *fresh = 1;
        }
        __atomic_add_fetch(&k->refs, 1, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&cc->mu);
        return k;
}

/* The reader's turn (k->mu held, k->reading set; the same on return):
 * reads what the socket holds and hands each reply to its waiter. */
static void conn_read(struct kw_cc *cc, struct cc_conn *k, int timeout_ms, struct wake_list *wl)
{
        pthread_mutex_unlock(&k->mu);
        kw_result r = kw_ipc_rx_fill(&k->rx, k->fd, timeout_ms);
        pthread_mutex_lock(&k->mu);
        if (r.code != 0) {
                if (strcmp(kw_err_detail(), "timeout") != 0)
                        conn_fail_locked(k, kw_err_detail(), wl);
                return;
        }
        const uint8_t *p;
        size_t n;
        int more;
        while ((more = kw_ipc_rx_next(&k->rx, &p, &n)) > 0) {
                uint32_t id = kw_ipc_peek_id(p, n);
                struct cc_waiter *w = k->waiters;
                while (w != NULL && w->id != id)
                        w = w->next;
                if (w == NULL) {
                        /* the reply to a call that gave up (timeout) */
                        __atomic_add_fetch(&cc->late, 1, __ATOMIC_RELAXED);
                        continue;
                }
                waiter_remove(k, w);
                w->r = kw_buf_put(w->dst, p, n);
                w->done = 1;
                wake_add(wl, w->cv);
        }
        kw_ipc_rx_done(&k->rx);   /* replies copied out: wipe them here */
        if (more < 0)
                conn_fail_locked(k, "reply frame length out of bounds", wl);
}

/* Each thread keeps the buffers of its last call (wiped) for the next one:
 * allocating, growing and freeing them per call showed in profiles.  A call
 * begun while another is open on the same thread gets fresh buffers. */
#define CC_SPARE_MAX (64u * 1024u)   /* larger buffers (big imports) are not kept */

struct cc_spare {
        struct kw_buf req, rbuf;
        int have;
};
static __thread struct cc_spare cc_spare;
static pthread_key_t cc_spare_key;
static pthread_once_t cc_spare_once = PTHREAD_ONCE_INIT;

static void cc_spare_free(void *p)
{
        struct cc_spare *sp = p;
        if (sp->have) {
                kw_buf_free(&sp->req);
                kw_buf_free(&sp->rbuf);
                sp->have = 0;
        }
}

static void cc_spare_init(void) { (void)pthread_key_create(&cc_spare_key, cc_spare_free); }

void kw_cc_begin(struct kw_cc *cc, uint8_t op, enum kw_caller caller, struct kw_cc_call *c)
{
        memset(c, 0, sizeof *c);
        c->cc = cc;
        if (cc_spare.have) {
                c->req = cc_spare.req;
                c->rbuf = cc_spare.rbuf;
                cc_spare.have = 0;
        } else {
                kw_buf_init(&c->req, KW_IPC_MAX_FRAME + 4);
                kw_buf_init(&c->rbuf, KW_IPC_MAX_FRAME + 4);
        }
        c->build = kw_msg_begin_request(&c->req, op, 0);   /* id: set as it is sent */
        kw_cc_put_u32(c, KW_T_CALLER, (uint32_t)caller);
}

void kw_cc_put(struct kw_cc_call *c, uint8_t tag, const void *p, size_t n)
{
        if (c->build.code == 0)
                c->build = kw_msg_put(&c->req, tag, p, n);
}

void kw_cc_put_str(struct kw_cc_call *c, uint8_t tag, const char *s)
{
        kw_cc_put(c, tag, s, strlen(s));
}

void kw_cc_put_u32(struct kw_cc_call *c, uint8_t tag, uint32_t v)
{
        if (c->build.code == 0)
                c->build = kw_msg_put_u32(&c->req, tag, v);
}

void kw_cc_put_u64(struct kw_cc_call *c, uint8_t tag, uint64_t v)
{
        if (c->build.code == 0)
                c->build = kw_msg_put_u64(&c->req, tag, v);
}

/* Sends the call's frame on the thread's connection and waits for its
 * reply.  *sent says whether the frame went out whole. */
static kw_result call_once(struct kw_cc *cc, struct kw_cc_call *c, const struct timespec *dl,
                           int *fresh, int *sent)
{
        *sent = 0;
        c->detail[0] = '\0';
        pthread_cond_t *cv = thread_cv();
        KW_ENSURE(cv != NULL, KW_ERR_NOMEM);
        struct cc_conn *k = conn_get(cc, fresh);
        if (k == NULL) {
                snprintf(c->detail, sizeof c->detail, "connect %s: %s", cc->path, strerror(errno));
                KW_BAIL(KW_ERR_CUSTODY_DOWN);
        }
        uint32_t id;
        do
                id = __atomic_add_fetch(&cc->next_id, 1, __ATOMIC_RELAXED);
        while (id == 0);
        c->req.p[8] = (uint8_t)(id >> 24);   /* the header's id (proto.h): after the */
        c->req.p[9] = (uint8_t)(id >> 16);   /* length, version, op and 2 reserved   */
        c->req.p[10] = (uint8_t)(id >> 8);
        c->req.p[11] = (uint8_t)id;
        struct cc_waiter w = { .id = id, .dst = &c->rbuf, .cv = cv };
        pthread_mutex_lock(&k->mu);
        int dead = k->dead;
        if (!dead) {
                w.next = k->waiters;
                k->waiters = &w;
        }
        pthread_mutex_unlock(&k->mu);
        kw_result r = KW_RESULT(KW_ERR_CUSTODY_DOWN);
        if (dead) {
                snprintf(c->detail, sizeof c->detail, "connection closed");
        } else {
                pthread_mutex_lock(&k->send_mu);
                r = kw_ipc_send(k->fd, &c->req);
                pthread_mutex_unlock(&k->send_mu);
                if (r.code != 0)
                        snprintf(c->detail, sizeof c->detail, "%s", kw_err_detail());
        }
        if (r.code != 0) {
                conn_fail(cc, k, c->detail);
                conn_unref(k);
                return r;
        }
        *sent = 1;
        struct wake_list wl = { .n = 0 };
        pthread_mutex_lock(&k->mu);
        while (!w.done) {
                int left = ms_left(dl);
                if (left == 0)
                        break;
                if (!k->reading && !k->dead) {
                        k->reading = 1;
                        conn_read(cc, k, left, &wl);
                        k->reading = 0;
                        if (wl.n != 0) {
                                pthread_mutex_unlock(&k->mu);
                                wake_all(&wl);
                                pthread_mutex_lock(&k->mu);
                        }
                } else if (pthread_cond_timedwait(cv, &k->mu, dl) == ETIMEDOUT) {
                        break;
                }
        }
        if (!w.done) {
                waiter_remove(k, &w);   /* its reply, if it comes, is dropped */
                snprintf(c->detail, sizeof c->detail, "timeout");
                r = KW_RESULT(KW_ERR_CUSTODY_DOWN);
        } else {
                r = w.r;
                if (r.code != 0 && w.detail[0] != '\0')
                        snprintf(c->detail, sizeof c->detail, "%s", w.detail);
        }
        /* someone still waiting on this connection takes over the reading */
        pthread_cond_t *next = !k->reading && k->waiters != NULL ? k->waiters->cv : NULL;
        int dead_now = k->dead;
        pthread_mutex_unlock(&k->mu);
        if (next != NULL)
                pthread_cond_signal(next);
        if (dead_now)
                conn_retire(cc, k);
        conn_unref(k);
        return r;
}

kw_result kw_cc_invoke(struct kw_cc_call *c)
{
        struct kw_cc *cc = c->cc;
        KW_TRY(c->build);
        KW_TRY(kw_msg_end(&c->req));
        KW_ENSURE(c->req.len >= 12, KW_ERR_INTERNAL);
        struct timespec dl;
        deadline_in(&dl, cc->timeout_ms);
        if (__atomic_load_n(&cc->paused, __ATOMIC_ACQUIRE)) {
                pthread_mutex_lock(&cc->mu);
                while (cc->paused)
                        if (pthread_cond_timedwait(&cc->cv, &cc->mu, &dl) == ETIMEDOUT)
                                break;
                int paused = cc->paused;
                pthread_mutex_unlock(&cc->mu);
                if (paused) {
                        snprintf(c->detail, sizeof c->detail, "the front is still starting");
                        KW_BAIL(KW_ERR_CUSTODY_DOWN);
                }
        }
        /* A connection may have died since its last use (custody restarted):
         * a call that could not even be sent is sent once more on a new one.
         * A call that was sent is never sent twice. */
        kw_result r;
        int fresh = 0, sent = 0;
        for (int attempt = 0;; attempt++) {
                r = call_once(cc, c, &dl, &fresh, &sent);
                if (r.code == 0 || sent || fresh || attempt > 0 || r.code != KW_ERR_CUSTODY_DOWN)
                        break;
        }
        if (r.code == 0)
                r = kw_msg_parse(c->rbuf.p, c->rbuf.len, 1, &c->reply);
        if (r.code != 0) {
                if (c->detail[0] == '\0')
                        snprintf(c->detail, sizeof c->detail, "%s", kw_err_detail());
                return r;
        }
        if (c->reply.code != 0) {
                struct kw_field f;
                if (kw_msg_get(&c->reply, KW_T_DETAIL, &f).code == 0) {
                        size_t n = f.len < sizeof c->detail - 1 ? f.len : sizeof c->detail - 1;
                        memcpy(c->detail, f.p, n);
                        c->detail[n] = '\0';
                }
                return KW_RESULT(c->reply.code);
        }
        return KW_OK;
}

void kw_cc_end(struct kw_cc_call *c)
{
        kw_buf_reset(&c->req);    /* wipes what was used */
        kw_buf_reset(&c->rbuf);
        if (!cc_spare.have && c->req.cap_alloc <= CC_SPARE_MAX && c->rbuf.cap_alloc <= CC_SPARE_MAX) {
                pthread_once(&cc_spare_once, cc_spare_init);
                cc_spare.req = c->req;
                cc_spare.rbuf = c->rbuf;
                cc_spare.have = 1;
                (void)pthread_setspecific(cc_spare_key, &cc_spare);   /* freed at thread exit */
        } else {
                kw_buf_free(&c->req);
                kw_buf_free(&c->rbuf);
        }
        kw_buf_init(&c->req, KW_IPC_MAX_FRAME + 4);
        kw_buf_init(&c->rbuf, KW_IPC_MAX_FRAME + 4);
        memset(&c->reply, 0, sizeof c->reply);
}

kw_result kw_cc_reply_json(const struct kw_cc_call *c, const char **ret, size_t *ret_len)
{
        struct kw_field f;
        KW_ENSURE(kw_msg_get(&c->reply, KW_T_JSON, &f).code == 0, KW_ERR_PROTOCOL);
        *ret = (const char *)f.p;
        *ret_len = f.len;
        return KW_OK;
}
