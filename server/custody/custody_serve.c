/*
 * custody_serve.c - the custody process's side of the socket: who may
 * connect (the front, by pid and uid), and how the frames of a connection
 * are served.
 *
 * The front keeps a few connections and many requests in flight on each
 * (custody_client.c); replies go back in any order, matched by request id.
 * One reader thread per connection takes every frame the socket holds per
 * wake-up.  A request that can be answered from memory (custody_can_inline:
 * a cached key with its material unsealed, the public counters) is answered
 * there and then; the replies of one wake-up go back in one write.  Any
 * other request (an HSM call, the database, an RSA private-key operation) is
 * queued for the worker pool, so that it never holds up the requests read
 * after it: a key unsealed through a slow HSM does not stall cached keys.
 *
 * Bounds: frames as the protocol says (KW_IPC_MAX_FRAME); queued work at
 * most SLOW_QUEUE_BYTES (beyond: KW_ERR_OVERLOAD at once, nothing done); a
 * reply that cannot be written within SEND_TIMEOUT_S closes the connection
 * (the front fails what it had in flight on it).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/secret.h"
#include "custody_int.h"

#define MAX_CONNS 64                  /* the front opens [custody] connections (<= 64) */
#define PEER_WAIT_MS 200              /* for the parent's word on a new front           */
#define SLOW_QUEUE_BYTES (64u << 20)  /* frames waiting for a worker                    */
#define SEND_TIMEOUT_S 10

struct conn {
        struct custody *c;
        int fd;
        pthread_mutex_t wmu;          /* one writer at a time: frames never interleave */
        unsigned refs;                /* reader + queued/running jobs (atomic)         */
        int dead;                     /* a write failed: under wmu                      */
};

struct job {
        struct conn *cn;
        struct kw_buf frame;          /* the request payload (wiped when freed)        */
        struct job *next;
};

static struct {
        pthread_mutex_t mu;
        pthread_cond_t cv;
        struct job *head, *tail;
        size_t bytes;
        unsigned started;
} slow = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static unsigned live_conns;

static void conn_put(struct conn *cn)
{
        if (__atomic_sub_fetch(&cn->refs, 1, __ATOMIC_ACQ_REL) != 0)
                return;
        close(cn->fd);
        pthread_mutex_destroy(&cn->wmu);
        free(cn);
        __atomic_sub_fetch(&live_conns, 1, __ATOMIC_RELAXED);
}

/* Writes out (one or more whole reply frames) and empties it (wiped). */
static void conn_send(struct conn *cn, struct kw_buf *out)
{
        if (out->len == 0)
                return;
        pthread_mutex_lock(&cn->wmu);
        if (!cn->dead && kw_ipc_send(cn->fd, out).code != 0) {
                cn->dead = 1;
                shutdown(cn->fd, SHUT_RDWR);   /* the reader sees it and stops */
        }
        pthread_mutex_unlock(&cn->wmu);
        kw_buf_reset(out);
}

static void *slow_worker(void *arg)
{
        (void)arg;
        struct kw_buf out;
        kw_buf_init(&out, KW_IPC_MAX_FRAME + 4);
        for (;;) {
                pthread_mutex_lock(&slow.mu);
                while (slow.head == NULL)
                        pthread_cond_wait(&slow.cv, &slow.mu);
                struct job *j = slow.head;
                slow.head = j->next;
                if (slow.head == NULL)
                        slow.tail = NULL;
                slow.bytes -= j->frame.len;
                pthread_mutex_unlock(&slow.mu);
                struct custody *c = j->cn->c;
                custody_handle(c, j->frame.p, j->frame.len, &out);
                kw_buf_free(&j->frame);
                conn_send(j->cn, &out);
                conn_put(j->cn);
                free(j);
                __atomic_sub_fetch(&c->queued_now, 1, __ATOMIC_RELAXED);
        }
        return NULL;
}

/* Queues a copy of the request for a worker; 0 when the queue is full. */
static int slow_push(struct conn *cn, const uint8_t *p, size_t n)
{
        struct job *j = calloc(1, sizeof *j);
        if (j == NULL)
                return 0;
        kw_buf_init(&j->frame, KW_IPC_MAX_FRAME);
        if (kw_buf_put(&j->frame, p, n).code != 0) {
                free(j);
                return 0;
        }
        pthread_mutex_lock(&slow.mu);
        if (slow.bytes + n > SLOW_QUEUE_BYTES) {
                pthread_mutex_unlock(&slow.mu);
                kw_buf_free(&j->frame);
                free(j);
                return 0;
        }
        j->cn = cn;
        __atomic_add_fetch(&cn->refs, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&cn->c->queued_now, 1, __ATOMIC_RELAXED);
        if (slow.tail != NULL)
                slow.tail->next = j;
        else
                slow.head = j;
        slow.tail = j;
        slow.bytes += n;
        pthread_cond_signal(&slow.cv);
        pthread_mutex_unlock(&slow.mu);
        return 1;
}

static void reply_overload(uint32_t id, uint8_t op, struct kw_buf *out)
{
        static const char detail[] = "custody work queue full";
        if (kw_msg_begin_reply(out, op, id, KW_ERR_OVERLOAD).code != 0 ||
            kw_msg_put(out, KW_T_DETAIL, detail, sizeof detail - 1).code != 0 ||
            kw_msg_end(out).code != 0)
                kw_buf_reset(out);
}

/* Appends src (one reply frame) to batch and empties src; when the batch
 * cannot take it (no memory), both go out at once instead. */
static void batch_add(struct conn *cn, struct kw_buf *batch, struct kw_buf *src)
{
        if (kw_buf_put(batch, src->p, src->len).code != 0) {
                conn_send(cn, batch);
                conn_send(cn, src);
        }
        kw_buf_reset(src);
}

#define BATCH_FLUSH (256u * 1024u)    /* write out a batch that grows past this */

static void *conn_reader(void *arg)
{
        struct conn *cn = arg;
        struct custody *c = cn->c;
        struct kw_ipc_rx rx;
        struct kw_buf one, batch;
        kw_ipc_rx_init(&rx);
        kw_buf_init(&one, KW_IPC_MAX_FRAME + 4);
        kw_buf_init(&batch, BATCH_FLUSH + KW_IPC_MAX_FRAME + 4);
        for (;;) {
                if (kw_ipc_rx_fill(&rx, cn->fd, -1).code != 0)
                        break;
                const uint8_t *p;
                size_t n;
                int k;
                unsigned frames = 0;
                while ((k = kw_ipc_rx_next(&rx, &p, &n)) > 0) {
                        frames++;
                        if (custody_can_inline(c, p, n)) {
                                __atomic_add_fetch(&c->inline_total, 1, __ATOMIC_RELAXED);
                                custody_handle(c, p, n, &one);
                        } else if (slow_push(cn, p, n)) {
                                __atomic_add_fetch(&c->queued_total, 1, __ATOMIC_RELAXED);
                                continue;
                        } else {
                                reply_overload(kw_ipc_peek_id(p, n), n >= 2 ? p[1] : 0, &one);
                        }
                        batch_add(cn, &batch, &one);
                        if (batch.len >= BATCH_FLUSH)
                                conn_send(cn, &batch);
                }
                kw_ipc_rx_done(&rx);   /* requests handled or copied: wipe them */
                conn_send(cn, &batch);
                if (frames != 0)
                        __atomic_add_fetch(&c->reader_wakeups, 1, __ATOMIC_RELAXED);
                if (k < 0) {
                        kw_log(KW_LOG_WARN, "custody_protocol_error", "detail",
                               "frame length out of bounds", KW_END);
                        break;
                }
        }
        /* stop: nothing more is read; queued jobs still answer if they can */
        pthread_mutex_lock(&cn->wmu);
        cn->dead = 1;
        shutdown(cn->fd, SHUT_RDWR);
        pthread_mutex_unlock(&cn->wmu);
        kw_ipc_rx_free(&rx);
        kw_buf_free(&one);
        kw_buf_free(&batch);
        conn_put(cn);
        return NULL;
}

/* ---- who may connect ----
 * Only the front: the process the parent started (its pid, which the parent
 * tells us on the control pipe whenever it starts one) running as the
 * front's user.  Any other process, of any user, is refused at accept.
 * Standalone (no parent: keywardd --custody as a systemd unit), any process
 * of the front's user, a user of its own (CUSTODY_ANY_PID). */

static struct {
        pthread_mutex_t mu;
        pthread_cond_t cv;
        pid_t pid;
        uid_t uid;
} peer = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

void custody_allow_front(pid_t pid, uid_t uid)
{
        pthread_mutex_lock(&peer.mu);
        peer.pid = pid;
        peer.uid = uid;
        pthread_cond_broadcast(&peer.cv);
        pthread_mutex_unlock(&peer.mu);
}

static int peer_is_front(const struct ucred *cr)
{
        return peer.uid == cr->uid && (peer.pid == CUSTODY_ANY_PID || peer.pid == cr->pid);
}

/* 1 when cr is the front; a connection that comes just before the parent's
 * word on a restarted front waits a moment for it. */
static int peer_allowed(const struct ucred *cr)
{
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_nsec += PEER_WAIT_MS * 1000000L;
        dl.tv_sec += dl.tv_nsec / 1000000000L;
        dl.tv_nsec %= 1000000000L;
        pthread_mutex_lock(&peer.mu);
        int ok;
        while (!(ok = peer_is_front(cr)))
                if (pthread_cond_timedwait(&peer.cv, &peer.mu, &dl) != 0)
                        break;
        ok = peer_is_front(cr);
        pthread_mutex_unlock(&peer.mu);
        return ok;
}

static int start_detached(void *(*fn)(void *), void *arg)
{
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&th, &at, fn, arg);
        pthread_attr_destroy(&at);
        return rc;
}

static void *accept_thread(void *arg)
{
        struct custody *c = arg;
        for (;;) {
                int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE ||
                            errno == ENFILE) {
                                if (errno == EMFILE || errno == ENFILE)
                                        usleep(10000);
                                continue;
                        }
                        break;
                }
                struct ucred cred;
                socklen_t cl = sizeof cred;
                if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0 || !peer_allowed(&cred)) {
                        char who[48];
                        snprintf(who, sizeof who, "pid %d uid %u", (int)cred.pid, (unsigned)cred.uid);
                        kw_log(KW_LOG_WARN, "custody_peer_refused", "peer", who, KW_END);
                        close(fd);
                        continue;
                }
                if (__atomic_add_fetch(&live_conns, 1, __ATOMIC_RELAXED) > MAX_CONNS) {
                        __atomic_sub_fetch(&live_conns, 1, __ATOMIC_RELAXED);
                        kw_log(KW_LOG_WARN, "custody_connection_refused", "detail",
                               "too many connections from the front", KW_END);
                        close(fd);
                        continue;
                }
                struct timeval tv = { .tv_sec = SEND_TIMEOUT_S };
                (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
                struct conn *cn = calloc(1, sizeof *cn);
                if (cn == NULL) {
                        close(fd);
                        __atomic_sub_fetch(&live_conns, 1, __ATOMIC_RELAXED);
                        continue;
                }
                cn->c = c;
                cn->fd = fd;
                cn->refs = 1;
                pthread_mutex_init(&cn->wmu, NULL);
                if (start_detached(conn_reader, cn) != 0)
                        conn_put(cn);
        }
        return NULL;
}

kw_result custody_serve(struct custody *c)
{
        unsigned want = (unsigned)c->cfg->custody.workers;
        for (; slow.started < want; slow.started++)
                KW_ENSURE(start_detached(slow_worker, NULL) == 0, KW_ERR_INTERNAL);
        KW_ENSURE(start_detached(accept_thread, c) == 0, KW_ERR_INTERNAL);
        return KW_OK;
}
