/* ipc.c - frames and fields of the front<->custody protocol (proto.h). */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
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
                return 4;
        case KW_T_SEQ: return 8;
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

/* Frames on a custody stream strictly alternate (one request, then its
 * reply), so the peer never has more than one frame in flight: one recv()
 * into a buffer with room for a typical frame reads the length and the
 * payload at once (it was poll+recv(4)+poll+recv(n)).  Bytes past the end of
 * the frame mean the peer broke that rule: KW_ERR_PROTOCOL. */
#define IPC_FIRST_READ 4096u

kw_result kw_ipc_recv(int fd, struct kw_buf *b, int timeout_ms)
{
        int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
        kw_buf_reset(b);
        KW_TRY(kw_buf_reserve(b, IPC_FIRST_READ));
        size_t off = 0, want = 0; /* want: whole frame incl. length, once known */
        kw_result r = KW_OK;
        for (;;) {
                r = wait_readable(fd, deadline);
                if (r.code != 0)
                        break;
                /* room: up to the frame's end once known, else what the buffer holds */
                size_t room = (want ? want : b->cap_alloc - 1) - off;
                ssize_t got = recv(fd, b->p + off, room, MSG_DONTWAIT);
                if (got < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
                        continue;
                if (got <= 0) {
                        kw_err_set_detail("recv: %s", got < 0 ? strerror(errno) : "closed");
                        r = KW_RESULT(KW_ERR_CUSTODY_DOWN);
                        break;
                }
                off += (size_t)got;
                if (want == 0 && off >= 4) {
                        uint32_t n = (uint32_t)b->p[0] << 24 | (uint32_t)b->p[1] << 16 |
                                     (uint32_t)b->p[2] << 8 | b->p[3];
                        if (n < 8 || n > KW_IPC_MAX_FRAME) {
                                r = KW_RESULT(KW_ERR_PROTOCOL);
                                break;
                        }
                        want = (size_t)n + 4;
                        if (off > want) {
                                kw_err_set_detail("bytes after the frame");
                                r = KW_RESULT(KW_ERR_PROTOCOL);
                                break;
                        }
                        if (want + 1 > b->cap_alloc) {
                                b->len = off;   /* keep what was read while growing */
                                r = kw_buf_reserve(b, want - off);
                                b->len = 0;
                                if (r.code != 0)
                                        break;
                        }
                }
                if (want != 0 && off == want)
                        break;
        }
        if (r.code != 0) {
                b->len = off;
                kw_buf_reset(b);   /* wipe a partial frame */
                return r;
        }
        memmove(b->p, b->p + 4, want - 4);
        OPENSSL_cleanse(b->p + want - 4, 4);
        b->len = want - 4;
        return KW_OK;
}
