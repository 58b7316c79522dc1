/* ipc.c - frames and fields of the front<->custody protocol (proto.h). */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "ipc.h"

uint32_t kw_tag_max(uint8_t tag)
{
        switch (tag) {
        case KW_T_DETAIL: return 256;
        case KW_T_JSON: return 512u * 1024u;
        case KW_T_NAME: return 64;
        case KW_T_KEY_TYPE: return 8;
        case KW_T_KEY_SIZE: case KW_T_OPS: case KW_T_WAIT_SECONDS: case KW_T_LIMIT:
        case KW_T_VERSION: case KW_T_ALG: case KW_T_CALLER: case KW_T_MATERIAL_FORMAT:
        case KW_T_DESC:
                return 4;
        case KW_T_SEQ: case KW_T_SINCE: case KW_T_UNTIL: case KW_T_BEFORE: return 8;
        case KW_T_ACTOR: return 128;
        case KW_T_TAGS: return 8192;
        case KW_T_RULES: return 16384;
        case KW_T_MATERIAL: return 24u * 1024u;
        case KW_T_STATE: return 32;
        case KW_T_CURSOR: return 128;
        case KW_T_TAG: return 256;
        case KW_T_NAME_PREFIX: return 64;
        case KW_T_DATA: return 65536;
        case KW_T_ACTION: return 64;
        case KW_T_TOKEN_NAME: return 64;
        case KW_T_ROLE: return 16;
        case KW_T_TOKEN_ID: return 64;
        case KW_T_TOKEN: return 512;
        case KW_T_XKS_STORE: return 128;
        case KW_T_EKM_CN: case KW_T_REQUEST_ID: return 256;
        case KW_T_EKM_PREFIX: return 64;
        case KW_T_SIGV4_AKID: return 128;
        case KW_T_SIGV4_STS: return 512;
        case KW_T_SIGV4_SIG: return 32;
        case KW_T_SIGV4_CREQ: return 16384;
        case KW_T_BODY: return 512u * 1024u;
        case KW_T_XKS_PREFIX: return 128;
        case KW_T_XKS_REGION: return 64;
        case KW_T_NONCE: return 32;
        case KW_T_SESSION: case KW_T_CSRF: case KW_T_CLIENT_ADDR: case KW_T_USER: return 64;
        case KW_T_PASSWORD: return 128;
        default: return 0;
        }
}

static kw_result msg_begin(struct kw_buf *b, uint8_t op, uint32_t id)
{
        KW_ENSURE(b->len == 0, KW_ERR_INTERNAL);
        KW_TRY(kw_buf_put_u32be(b, 0)); /* length, patched by kw_msg_end */
        KW_TRY(kw_buf_put_u8(b, KW_PROTO_VERSION));
        KW_TRY(kw_buf_put_u8(b, op));
        KW_TRY(kw_buf_put_u16be(b, 0));
        return kw_buf_put_u32be(b, id);
}

kw_result kw_msg_begin_request(struct kw_buf *b, uint8_t op, uint32_t id)
{
        return msg_begin(b, op, id);
}

kw_result kw_msg_begin_reply(struct kw_buf *b, uint8_t op, uint32_t id, int32_t code)
{
        KW_TRY(msg_begin(b, op, id));
        return kw_buf_put_u32be(b, (uint32_t)code);
}

kw_result kw_msg_put(struct kw_buf *b, uint8_t tag, const void *p, size_t n)
{
        uint32_t max = kw_tag_max(tag);
        KW_ENSURE(max != 0, KW_ERR_INTERNAL);
        KW_ENSURE(n <= max, KW_ERR_TOO_LARGE);
        size_t start = b->len;
        kw_result r = kw_buf_put_u8(b, tag);
        if (r.code == 0)
                r = kw_buf_put_u32be(b, (uint32_t)n);
        if (r.code == 0)
                r = kw_buf_put(b, p, n);
        if (r.code != 0)
                b->len = start;
        return r;
}

kw_result kw_msg_put_str(struct kw_buf *b, uint8_t tag, const char *s)
{
        return kw_msg_put(b, tag, s, strlen(s));
}

kw_result kw_msg_put_u32(struct kw_buf *b, uint8_t tag, uint32_t v)
{
        uint8_t x[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
        return kw_msg_put(b, tag, x, 4);
}

kw_result kw_msg_put_u64(struct kw_buf *b, uint8_t tag, uint64_t v)
{
        uint8_t x[8];
        for (int i = 7; i >= 0; i--) {
                x[i] = (uint8_t)v;
                v >>= 8;
        }
        return kw_msg_put(b, tag, x, 8);
}

kw_result kw_msg_end(struct kw_buf *b)
{
        KW_ENSURE(b->len >= 4 && b->len - 4 <= KW_IPC_MAX_FRAME, KW_ERR_TOO_LARGE);
        uint32_t n = (uint32_t)(b->len - 4);
        b->p[0] = (uint8_t)(n >> 24);
        b->p[1] = (uint8_t)(n >> 16);
        b->p[2] = (uint8_t)(n >> 8);
        b->p[3] = (uint8_t)n;
        return KW_OK;
}

kw_result kw_msg_parse(const uint8_t *p, size_t n, int is_reply, struct kw_msg *ret)
{
        struct kw_reader r = kw_reader_init(p, n);
        struct kw_msg m;
        memset(&m, 0, sizeof m);
        uint8_t ver, tag;
        uint16_t rsv;
        KW_ENSURE(kw_read_u8(&r, &ver).code == 0 && ver == KW_PROTO_VERSION, KW_ERR_PROTOCOL);
        KW_ENSURE(kw_read_u8(&r, &m.op).code == 0, KW_ERR_PROTOCOL);
        KW_ENSURE(kw_read_u16be(&r, &rsv).code == 0 && rsv == 0, KW_ERR_PROTOCOL);
        KW_ENSURE(kw_read_u32be(&r, &m.id).code == 0, KW_ERR_PROTOCOL);
        if (is_reply) {
                uint32_t code;
                KW_ENSURE(kw_read_u32be(&r, &code).code == 0, KW_ERR_PROTOCOL);
                m.code = (int32_t)code;
                KW_ENSURE(m.code <= 0, KW_ERR_PROTOCOL);
        }
        while (kw_reader_left(&r) != 0) {
                uint32_t len;
                const uint8_t *v;
                KW_ENSURE(kw_read_u8(&r, &tag).code == 0, KW_ERR_PROTOCOL);
                KW_ENSURE(tag < KW_T_MAX && kw_tag_max(tag) != 0, KW_ERR_PROTOCOL);
                KW_ENSURE(!((m.present >> tag) & 1), KW_ERR_PROTOCOL);
                KW_ENSURE(kw_read_u32be(&r, &len).code == 0, KW_ERR_PROTOCOL);
                KW_ENSURE(len <= kw_tag_max(tag), KW_ERR_PROTOCOL);
                KW_ENSURE(kw_read_bytes(&r, len, &v).code == 0, KW_ERR_PROTOCOL);
                m.f[tag] = (struct kw_field){ v, len };
                m.present |= (uint64_t)1 << tag;
        }
        *ret = m;
        return KW_OK;
}

kw_result kw_msg_get(const struct kw_msg *m, uint8_t tag, struct kw_field *ret)
{
        KW_ENSURE(tag < KW_T_MAX, KW_ERR_INTERNAL);
        KW_ENSURE(kw_msg_has(m, tag), KW_ERR_MISSING_FIELD);
        *ret = m->f[tag];
        return KW_OK;
}

kw_result kw_msg_get_u32(const struct kw_msg *m, uint8_t tag, uint32_t *ret)
{
        struct kw_field f;
        KW_TRY(kw_msg_get(m, tag, &f));
        KW_ENSURE(f.len == 4, KW_ERR_BAD_FIELD);
        *ret = (uint32_t)f.p[0] << 24 | (uint32_t)f.p[1] << 16 | (uint32_t)f.p[2] << 8 | f.p[3];
        return KW_OK;
}

kw_result kw_msg_get_u64(const struct kw_msg *m, uint8_t tag, uint64_t *ret)
{
        struct kw_field f;
        KW_TRY(kw_msg_get(m, tag, &f));
        KW_ENSURE(f.len == 8, KW_ERR_BAD_FIELD);
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = v << 8 | f.p[i];
        *ret = v;
        return KW_OK;
}

kw_result kw_msg_get_str(const struct kw_msg *m, uint8_t tag, char *out, size_t outsz)
{
        struct kw_field f;
        KW_TRY(kw_msg_get(m, tag, &f));
        KW_ENSURE(f.len < outsz, KW_ERR_BAD_FIELD);
        KW_ENSURE(memchr(f.p, '\0', f.len) == NULL, KW_ERR_BAD_FIELD);
        memcpy(out, f.p, f.len);
        out[f.len] = '\0';
        return KW_OK;
}

kw_result kw_ipc_send(int fd, const struct kw_buf *frame)
{
        size_t off = 0;
        while (off < frame->len) {
                ssize_t n = send(fd, frame->p + off, frame->len - off, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        kw_err_set_detail("send: %s", n < 0 ? strerror(errno) : "closed");
                        KW_BAIL(KW_ERR_CUSTODY_DOWN);
                }
                off += (size_t)n;
        }
        return KW_OK;
}

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is readable.  poll() rather than a blocking recv(): a
 * thread asleep in recv() on a unix stream socket is woken each time the peer
 * consumes what this side sent (unix_write_space wakes every sleeper on the
 * socket), while poll() waiting for POLLIN filters those wake-ups out; that
 * was one extra context switch per request in the custody process. */
static kw_result wait_readable(int fd, int64_t deadline)
{
        for (;;) {
                int wait = -1;
                if (deadline >= 0) {
                        int64_t left = deadline - now_ms();
                        wait = left > 0 ? (int)left : 0;
                }
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                int pr = poll(&pfd, 1, wait);
                if (pr < 0 && errno == EINTR)
                        continue;
                if (pr < 0) {
                        kw_err_set_detail("poll: %s", strerror(errno));
                        KW_BAIL(KW_ERR_CUSTODY_DOWN);
                }
                if (pr == 0) {
                        kw_err_set_detail("timeout");
                        KW_BAIL(KW_ERR_CUSTODY_DOWN);
                }
                return KW_OK;
        }
}

/* ---- pipelined streams ---- */

#define RX_CHUNK (64u * 1024u)

void kw_ipc_rx_init(struct kw_ipc_rx *rx)
{
        kw_buf_init(&rx->b, KW_IPC_MAX_FRAME + 4 + RX_CHUNK);
        rx->start = 0;
        rx->slice_ms = 0;
}

void kw_ipc_rx_free(struct kw_ipc_rx *rx)
{
        kw_buf_free(&rx->b);
        rx->start = 0;
}

static uint32_t be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void kw_ipc_rx_done(struct kw_ipc_rx *rx)
{
        struct kw_buf *b = &rx->b;
        if (rx->start != 0) {
                size_t keep = b->len - rx->start;
                memmove(b->p, b->p + rx->start, keep);
                OPENSSL_cleanse(b->p + keep, rx->start);
                b->len = keep;
                rx->start = 0;
        }
}

kw_result kw_ipc_rx_fill(struct kw_ipc_rx *rx, int fd, int timeout_ms)
{
        struct kw_buf *b = &rx->b;
        kw_ipc_rx_done(rx);
        /* room: the rest of a frame whose length is known, or a chunk */
        size_t room = RX_CHUNK;
        if (b->len >= 4) {
                size_t want = (size_t)be32(b->p) + 4;
                if (want <= KW_IPC_MAX_FRAME + 4 && want > b->len + room)
                        room = want - b->len;
        }
        KW_TRY(kw_buf_reserve(b, room));
        room = b->cap_alloc - 1 - b->len;
        /* + 1: now_ms() truncates, so the deadline would come up to 1 ms
         * before the timeout */
        int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms + 1;
        /* A blocking read when it cannot overshoot the timeout: with none,
         * or with the socket's SO_RCVTIMEO slice (kw_ipc_set_read_slice)
         * bounding each wait; one system call per read instead of a poll
         * and a read.  A non-blocking socket answers EAGAIN: then poll. */
        int block = timeout_ms < 0 || rx->slice_ms > 0;
        for (;;) {
                if (!block)
                        KW_TRY(wait_readable(fd, deadline));
                ssize_t got = recv(fd, b->p + b->len, room, block ? 0 : MSG_DONTWAIT);
                if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && block) {
                        if (deadline >= 0 && now_ms() >= deadline) {
                                kw_err_set_detail("timeout");
                                KW_BAIL(KW_ERR_CUSTODY_DOWN);
                        }
                        if (rx->slice_ms <= 0)
                                block = 0;     /* a non-blocking socket */
                        continue;
                }
                if (got < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
                        continue;
                if (got <= 0) {
                        kw_err_set_detail("recv: %s", got < 0 ? strerror(errno) : "closed");
                        KW_BAIL(KW_ERR_CUSTODY_DOWN);
                }
                b->len += (size_t)got;
                return KW_OK;
        }
}

kw_result kw_ipc_set_read_slice(struct kw_ipc_rx *rx, int fd, int slice_ms)
{
        struct timeval tv = { .tv_sec = slice_ms / 1000, .tv_usec = (slice_ms % 1000) * 1000 };
        if (slice_ms <= 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) {
                kw_err_set_detail("setsockopt SO_RCVTIMEO: %s", slice_ms <= 0 ? "bad slice" : strerror(errno));
                KW_BAIL(KW_ERR_INTERNAL);
        }
        rx->slice_ms = slice_ms;
        return KW_OK;
}

int kw_ipc_rx_next(struct kw_ipc_rx *rx, const uint8_t **ret, size_t *ret_len)
{
        size_t have = rx->b.len - rx->start;
        if (have < 4)
                return 0;
        uint32_t n = be32(rx->b.p + rx->start);
        if (n < 8 || n > KW_IPC_MAX_FRAME)
                return -1;
        if (have - 4 < n)
                return 0;
        *ret = rx->b.p + rx->start + 4;
        *ret_len = n;
        rx->start += 4 + (size_t)n;
        return 1;
}

kw_result kw_ipc_recv_one(int fd, struct kw_buf *out, int timeout_ms)
{
        struct kw_ipc_rx rx;
        kw_ipc_rx_init(&rx);
        kw_result r = KW_OK;
        const uint8_t *p;
        size_t n;
        int k;
        while ((k = kw_ipc_rx_next(&rx, &p, &n)) == 0 && (r = kw_ipc_rx_fill(&rx, fd, timeout_ms)).code == 0)
                ;
        if (k > 0)
                r = kw_buf_put(out, p, n);
        else if (k < 0)
                r = KW_RESULT(KW_ERR_PROTOCOL);
        kw_ipc_rx_free(&rx);
        return r;
}

uint32_t kw_ipc_peek_id(const uint8_t *p, size_t n)
{
        return n >= 8 && p[0] == KW_PROTO_VERSION ? be32(p + 4) : 0;
}
