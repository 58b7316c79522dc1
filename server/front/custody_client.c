/* custody_client.c - pooled connections from the front to the custody socket. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "custody_client.h"

struct cc_slot {
        int fd;         /* -1 when not connected */
        int busy;
};

struct kw_cc {
        char path[108];
        unsigned timeout_ms;
        unsigned n;
        int paused;             /* kw_cc_pause: no connection until kw_cc_resume */
        pthread_mutex_t mu;
        pthread_cond_t cv;
        uint32_t next_id;
        struct cc_slot slots[];
};

kw_result kw_cc_new(const char *socket_path, unsigned connections, unsigned timeout_ms,
                    struct kw_cc **ret)
{
        KW_ENSURE(connections >= 1 && connections <= 1024, KW_ERR_CONFIG);
        KW_ENSURE(strlen(socket_path) < sizeof((struct sockaddr_un *)0)->sun_path, KW_ERR_CONFIG);
        struct kw_cc *cc = calloc(1, sizeof *cc + connections * sizeof(struct cc_slot));
        KW_ENSURE(cc != NULL, KW_ERR_NOMEM);
        snprintf(cc->path, sizeof cc->path, "%s", socket_path);
        cc->timeout_ms = timeout_ms;
        cc->n = connections;
        for (unsigned i = 0; i < connections; i++)
                cc->slots[i].fd = -1;
        pthread_mutex_init(&cc->mu, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&cc->cv, &ca);
        pthread_condattr_destroy(&ca);
        *ret = cc;
        return KW_OK;
}

void kw_cc_free(struct kw_cc *cc)
{
        if (cc == NULL)
                return;
        for (unsigned i = 0; i < cc->n; i++)
                if (cc->slots[i].fd >= 0)
                        close(cc->slots[i].fd);
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

static int cc_acquire(struct kw_cc *cc)
{
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += cc->timeout_ms / 1000;
        dl.tv_nsec += (long)(cc->timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
                dl.tv_sec++;
                dl.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&cc->mu);
        for (;;) {
                int best = -1;
                for (unsigned i = 0; !cc->paused && i < cc->n; i++) {
                        if (cc->slots[i].busy)
                                continue;
                        if (cc->slots[i].fd >= 0) { /* prefer a connected slot */
                                best = (int)i;
                                break;
                        }
                        if (best < 0)
                                best = (int)i;
                }
                if (best >= 0) {
                        cc->slots[best].busy = 1;
                        pthread_mutex_unlock(&cc->mu);
                        return best;
                }
                if (pthread_cond_timedwait(&cc->cv, &cc->mu, &dl) == ETIMEDOUT) {
                        pthread_mutex_unlock(&cc->mu);
                        return -1;
                }
        }
}

static void cc_release(struct kw_cc *cc, int slot)
{
        pthread_mutex_lock(&cc->mu);
        cc->slots[slot].busy = 0;
        pthread_cond_signal(&cc->cv);
        pthread_mutex_unlock(&cc->mu);
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
        c->slot = -1;
        if (cc_spare.have) {
                c->req = cc_spare.req;
                c->rbuf = cc_spare.rbuf;
                cc_spare.have = 0;
        } else {
                kw_buf_init(&c->req, KW_IPC_MAX_FRAME + 4);
                kw_buf_init(&c->rbuf, KW_IPC_MAX_FRAME + 4);
        }
        uint32_t id = __atomic_add_fetch(&cc->next_id, 1, __ATOMIC_RELAXED);
        c->build = kw_msg_begin_request(&c->req, op, id);
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

static void cc_drop(struct kw_cc *cc, int slot)
{
        if (cc->slots[slot].fd >= 0)
                close(cc->slots[slot].fd);
        cc->slots[slot].fd = -1;
}

kw_result kw_cc_invoke(struct kw_cc_call *c)
{
        struct kw_cc *cc = c->cc;
        KW_TRY(c->build);
        KW_TRY(kw_msg_end(&c->req));
        if (c->slot < 0) {
                c->slot = cc_acquire(cc);
                if (c->slot < 0) {
                        snprintf(c->detail, sizeof c->detail, "all custody connections busy");
                        KW_BAIL(KW_ERR_CUSTODY_DOWN);
                }
        }
        struct cc_slot *s = &cc->slots[c->slot];
        /* A reused connection may be dead (custody restarted): if the request
         * cannot even be sent, reconnect once and send again.  A request that
         * was sent is never sent twice. */
        for (int attempt = 0;; attempt++) {
                int fresh = 0;
                if (s->fd < 0) {
                        s->fd = cc_connect(cc->path);
                        if (s->fd < 0) {
                                snprintf(c->detail, sizeof c->detail, "connect %s: %s", cc->path,
                                         strerror(errno));
                                KW_BAIL(KW_ERR_CUSTODY_DOWN);
                        }
                        fresh = 1;
                }
                kw_result r = kw_ipc_send(s->fd, &c->req);
                if (r.code == 0)
                        break;
                cc_drop(cc, c->slot);
                if (fresh || attempt > 0) {
                        snprintf(c->detail, sizeof c->detail, "%s", kw_err_detail());
                        return r;
                }
        }
        kw_result r = kw_ipc_recv(s->fd, &c->rbuf, (int)cc->timeout_ms);
        if (r.code == 0)
                r = kw_msg_parse(c->rbuf.p, c->rbuf.len, 1, &c->reply);
        if (r.code != 0) {
                /* the stream may be out of step: never reuse it */
                snprintf(c->detail, sizeof c->detail, "%s", kw_err_detail());
                cc_drop(cc, c->slot);
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
        if (c->slot >= 0)
                cc_release(c->cc, c->slot);
        c->slot = -1;
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
