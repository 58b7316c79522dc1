/* ipc_test.c - custody protocol framing and fields. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/ipc.h"

static void build(struct kw_buf *b)
{
        kw_buf_init(b, KW_IPC_MAX_FRAME + 4);
        assert_int_equal(kw_msg_begin_request(b, KW_OP_KEY_GET, 42).code, 0);
        assert_int_equal(kw_msg_put_str(b, KW_T_NAME, "alpha").code, 0);
        assert_int_equal(kw_msg_put_u32(b, KW_T_VERSION, 7).code, 0);
        assert_int_equal(kw_msg_put_u64(b, KW_T_SEQ, 1ull << 40).code, 0);
        assert_int_equal(kw_msg_end(b).code, 0);
}

static void ipc_msg_roundtrip_fields(void **state)
{
        (void)state;
        struct kw_buf b;
        build(&b);
        struct kw_msg m;
        assert_int_equal(kw_msg_parse(b.p + 4, b.len - 4, 0, &m).code, 0);
        assert_int_equal(m.op, KW_OP_KEY_GET);
        assert_int_equal(m.id, 42);
        char name[65];
        uint32_t v;
        uint64_t s;
        assert_int_equal(kw_msg_get_str(&m, KW_T_NAME, name, sizeof name).code, 0);
        assert_string_equal(name, "alpha");
        assert_int_equal(kw_msg_get_u32(&m, KW_T_VERSION, &v).code, 0);
        assert_int_equal(v, 7);
        assert_int_equal(kw_msg_get_u64(&m, KW_T_SEQ, &s).code, 0);
        assert_true(s == 1ull << 40);
        struct kw_field f = { NULL, 99 };
        assert_int_equal(kw_msg_get(&m, KW_T_DATA, &f).code, KW_ERR_MISSING_FIELD);
        assert_null(f.p);
        char small[3] = "zz";
        assert_int_equal(kw_msg_get_str(&m, KW_T_NAME, small, sizeof small).code, KW_ERR_BAD_FIELD);
        assert_string_equal(small, "zz");
        assert_int_equal(kw_msg_get_u64(&m, KW_T_VERSION, &s).code, KW_ERR_BAD_FIELD);
        kw_buf_free(&b);
}

static void ipc_msg_parse_rejects_malformed(void **state)
{
        (void)state;
        struct kw_buf b;
        build(&b);
        struct kw_msg m;
        memset(&m, 0x5a, sizeof m);
        struct kw_msg before = m;
        /* every truncation of a valid payload fails, except at field boundaries */
        for (size_t n = 0; n < 8; n++)
                assert_int_equal(kw_msg_parse(b.p + 4, n, 0, &m).code, KW_ERR_PROTOCOL);
        assert_memory_equal(&m, &before, sizeof m);
        uint8_t *p = b.p + 4;
        p[0] = 9; /* version */
        assert_int_equal(kw_msg_parse(p, b.len - 4, 0, &m).code, KW_ERR_PROTOCOL);
        p[0] = KW_PROTO_VERSION;
        p[8] = 200; /* unknown tag */
        assert_int_equal(kw_msg_parse(p, b.len - 4, 0, &m).code, KW_ERR_PROTOCOL);
        p[8] = KW_T_NAME;
        p[9] = 0x7f; /* field length far beyond the frame */
        assert_int_equal(kw_msg_parse(p, b.len - 4, 0, &m).code, KW_ERR_PROTOCOL);
        assert_memory_equal(&m, &before, sizeof m);
        kw_buf_free(&b);
}

static void ipc_msg_duplicate_tag_rejected(void **state)
{
        (void)state;
        struct kw_buf b;
        kw_buf_init(&b, 1024);
        assert_int_equal(kw_msg_begin_request(&b, KW_OP_PING, 1).code, 0);
        assert_int_equal(kw_msg_put_str(&b, KW_T_NAME, "a").code, 0);
        assert_int_equal(kw_msg_put_str(&b, KW_T_NAME, "b").code, 0);
        assert_int_equal(kw_msg_end(&b).code, 0);
        struct kw_msg m;
        assert_int_equal(kw_msg_parse(b.p + 4, b.len - 4, 0, &m).code, KW_ERR_PROTOCOL);
        kw_buf_free(&b);
}

static void ipc_msg_put_over_field_max_fails_unchanged(void **state)
{
        (void)state;
        struct kw_buf b;
        kw_buf_init(&b, 1024);
        assert_int_equal(kw_msg_begin_request(&b, KW_OP_PING, 1).code, 0);
        size_t len = b.len;
        char name[66];
        memset(name, 'a', 65);
        name[65] = 0;
        assert_int_equal(kw_msg_put_str(&b, KW_T_NAME, name).code, KW_ERR_TOO_LARGE);
        assert_int_equal(b.len, len);
        assert_int_equal(kw_msg_put(&b, 77, "x", 1).code, KW_ERR_INTERNAL);
        kw_buf_free(&b);
}

static void ipc_reply_code_and_socket_roundtrip(void **state)
{
        (void)state;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        struct kw_buf b, in;
        kw_buf_init(&b, 1024);
        kw_buf_init(&in, KW_IPC_MAX_FRAME + 4);
        assert_int_equal(kw_msg_begin_reply(&b, KW_OP_KEY_GET, 5, KW_ERR_NOT_FOUND).code, 0);
        assert_int_equal(kw_msg_put_str(&b, KW_T_DETAIL, "no key").code, 0);
        assert_int_equal(kw_msg_end(&b).code, 0);
        assert_int_equal(kw_ipc_send(sv[0], &b).code, 0);
        assert_int_equal(kw_ipc_recv_one(sv[1], &in, 1000).code, 0);
        struct kw_msg m;
        assert_int_equal(kw_msg_parse(in.p, in.len, 1, &m).code, 0);
        assert_int_equal(m.code, KW_ERR_NOT_FOUND);
        assert_int_equal(kw_ipc_peek_id(in.p, in.len), 5);
        /* timeout and EOF are transport errors, not hangs */
        kw_buf_reset(&in);
        assert_int_equal(kw_ipc_recv_one(sv[1], &in, 50).code, KW_ERR_CUSTODY_DOWN);
        close(sv[0]);
        assert_int_equal(kw_ipc_recv_one(sv[1], &in, 1000).code, KW_ERR_CUSTODY_DOWN);
        close(sv[1]);
        kw_buf_free(&b);
        kw_buf_free(&in);
}

static void frame(struct kw_buf *b, uint32_t id, const void *data, size_t n)
{
        kw_buf_reset(b);
        assert_int_equal(kw_msg_begin_request(b, KW_OP_WRAP, id).code, 0);
        assert_int_equal(kw_msg_put(b, KW_T_DATA, data, n).code, 0);
        assert_int_equal(kw_msg_end(b).code, 0);
}

/* Frames in flight back to back: one read takes every whole frame the
 * socket holds, a partial one stays until its rest comes, and what was
 * taken out is wiped by done. */
static void ipc_rx_many_frames_per_read_and_partial(void **state)
{
        (void)state;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        struct kw_buf all, b;
        kw_buf_init(&all, 1 << 20);
        kw_buf_init(&b, KW_IPC_MAX_FRAME + 4);
        for (uint32_t id = 1; id <= 4; id++) {
                char d[40];
                memset(d, 'a' + (int)id, sizeof d);
                frame(&b, id, d, sizeof d);
                assert_int_equal(kw_buf_put(&all, b.p, b.len).code, 0);
        }
        /* three whole frames and 5 bytes of the fourth */
        size_t cut = all.len - (b.len - 5);
        assert_int_equal(write(sv[0], all.p, cut), (ssize_t)cut);
        struct kw_ipc_rx rx;
        kw_ipc_rx_init(&rx);
        assert_int_equal(kw_ipc_rx_fill(&rx, sv[1], 1000).code, 0);
        const uint8_t *p;
        size_t n;
        for (uint32_t id = 1; id <= 3; id++) {
                assert_int_equal(kw_ipc_rx_next(&rx, &p, &n), 1);
                assert_int_equal(kw_ipc_peek_id(p, n), id);
                struct kw_msg m;
                assert_int_equal(kw_msg_parse(p, n, 0, &m).code, 0);
                assert_int_equal(m.f[KW_T_DATA].len, 40);
                assert_int_equal(m.f[KW_T_DATA].p[0], 'a' + (int)id);
        }
        assert_int_equal(kw_ipc_rx_next(&rx, &p, &n), 0);
        size_t used = rx.b.len;
        kw_ipc_rx_done(&rx);
        assert_int_equal(rx.b.len, 5);                 /* the partial frame, moved up */
        for (size_t i = 5; i < used; i++)
                assert_int_equal(rx.b.p[i], 0);         /* the rest wiped */
        assert_int_equal(write(sv[0], all.p + cut, all.len - cut), (ssize_t)(all.len - cut));
        assert_int_equal(kw_ipc_rx_fill(&rx, sv[1], 1000).code, 0);
        assert_int_equal(kw_ipc_rx_next(&rx, &p, &n), 1);
        assert_int_equal(kw_ipc_peek_id(p, n), 4);
        assert_int_equal(kw_ipc_rx_next(&rx, &p, &n), 0);
        kw_ipc_rx_free(&rx);
        close(sv[0]);
        close(sv[1]);
        kw_buf_free(&all);
        kw_buf_free(&b);
}

/* A frame split across writes is assembled; a frame larger than one read's
 * chunk grows the buffer to the frame's size and no further. */
static void ipc_rx_split_and_large(void **state)
{
        (void)state;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        struct kw_buf b, in;
        kw_buf_init(&b, KW_IPC_MAX_FRAME + 4);
        kw_buf_init(&in, KW_IPC_MAX_FRAME + 4);
        static uint8_t big[65536];
        for (size_t i = 0; i < sizeof big; i++)
                big[i] = (uint8_t)(i * 7);
        frame(&b, 9, big, sizeof big);
        /* split: 2 bytes of the length, then the rest */
        assert_int_equal(write(sv[0], b.p, 2), 2);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                usleep(20000);
                _exit(write(sv[0], b.p + 2, b.len - 2) == (ssize_t)(b.len - 2) ? 0 : 1);
        }
        assert_int_equal(kw_ipc_recv_one(sv[1], &in, 5000).code, 0);
        assert_int_equal(in.len, b.len - 4);
        assert_memory_equal(in.p, b.p + 4, in.len);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_int_equal(st, 0);
        close(sv[0]);
        close(sv[1]);
        kw_buf_free(&b);
        kw_buf_free(&in);
}

/* A length out of bounds (too short for a header, or over the maximum)
 * puts the stream out of step: -1, whatever follows. */
/* With a read slice the reader waits in recv: a frame already sent is read,
 * a timeout shorter than nothing coming holds to within a slice, EOF is
 * CUSTODY_DOWN. */
static void ipc_rx_read_slice_blocks_in_recv_and_times_out(void **state)
{
        (void)state;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        struct kw_ipc_rx rx;
        kw_ipc_rx_init(&rx);
        assert_int_equal(kw_ipc_set_read_slice(&rx, sv[1], 20).code, 0);
        assert_int_equal(kw_ipc_set_read_slice(&rx, sv[1], 0).code, KW_ERR_INTERNAL);
        struct kw_buf b;
        kw_buf_init(&b, 1 << 16);
        frame(&b, 9, "abc", 3);
        assert_int_equal(write(sv[0], b.p, b.len), (ssize_t)b.len);
        const uint8_t *p;
        size_t n;
        assert_int_equal(kw_ipc_rx_fill(&rx, sv[1], 1000).code, 0);
        assert_int_equal(kw_ipc_rx_next(&rx, &p, &n), 1);
        assert_int_equal(kw_ipc_peek_id(p, n), 9);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        kw_result r = kw_ipc_rx_fill(&rx, sv[1], 100);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_int_equal(r.code, KW_ERR_CUSTODY_DOWN);
        assert_string_equal(kw_err_detail(), "timeout");
        long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        assert_true(ms >= 100);      /* not before its time (an upper bound would be a timing test) */
        close(sv[0]);
        assert_int_equal(kw_ipc_rx_fill(&rx, sv[1], -1).code, KW_ERR_CUSTODY_DOWN);
        kw_ipc_rx_free(&rx);
        kw_buf_free(&b);
        close(sv[1]);
}

static void ipc_rx_rejects_bad_lengths(void **state)
{
        (void)state;
        static const uint8_t bad[][4] = { { 0x7f, 0xff, 0xff, 0xff }, { 0, 0x10, 0, 1 }, { 0, 0, 0, 7 } };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                int sv[2];
                assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
                assert_int_equal(write(sv[0], bad[i], 4), 4);
                assert_int_equal(write(sv[0], "12345678", 8), 8);
                struct kw_ipc_rx rx;
                kw_ipc_rx_init(&rx);
                assert_int_equal(kw_ipc_rx_fill(&rx, sv[1], 1000).code, 0);
                const uint8_t *p;
                size_t n;
                assert_int_equal(kw_ipc_rx_next(&rx, &p, &n), -1);
                kw_ipc_rx_free(&rx);
                close(sv[0]);
                close(sv[1]);
        }
        /* a header too short to carry an id has none */
        assert_int_equal(kw_ipc_peek_id((const uint8_t *)"\x02\x01\0\0\0\0\0", 7), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(ipc_msg_roundtrip_fields),
                cmocka_unit_test(ipc_msg_parse_rejects_malformed),
                cmocka_unit_test(ipc_msg_duplicate_tag_rejected),
                cmocka_unit_test(ipc_msg_put_over_field_max_fails_unchanged),
                cmocka_unit_test(ipc_reply_code_and_socket_roundtrip),
                cmocka_unit_test(ipc_rx_many_frames_per_read_and_partial),
                cmocka_unit_test(ipc_rx_split_and_large),
                cmocka_unit_test(ipc_rx_read_slice_blocks_in_recv_and_times_out),
                cmocka_unit_test(ipc_rx_rejects_bad_lengths),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
