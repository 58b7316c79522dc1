/* ipc_test.c - custody protocol framing and fields. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
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
        assert_int_equal(kw_ipc_recv(sv[1], &in, 1000).code, 0);
        struct kw_msg m;
        assert_int_equal(kw_msg_parse(in.p, in.len, 1, &m).code, 0);
        assert_int_equal(m.code, KW_ERR_NOT_FOUND);
        /* timeout and EOF are transport errors, not hangs */
        assert_int_equal(kw_ipc_recv(sv[1], &in, 50).code, KW_ERR_CUSTODY_DOWN);
        close(sv[0]);
        assert_int_equal(kw_ipc_recv(sv[1], &in, 1000).code, KW_ERR_CUSTODY_DOWN);
        close(sv[1]);
        kw_buf_free(&b);
        kw_buf_free(&in);
}

/* A frame split across writes is assembled; a frame larger than the first
 * read grows the buffer; bytes beyond one frame break the alternation rule. */
static void ipc_recv_split_large_and_extra_bytes(void **state)
{
        (void)state;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        struct kw_buf b, in;
        kw_buf_init(&b, KW_IPC_MAX_FRAME + 4);
        kw_buf_init(&in, KW_IPC_MAX_FRAME + 4);
        static uint8_t big[20000];
        for (size_t i = 0; i < sizeof big; i++)
                big[i] = (uint8_t)(i * 7);
        assert_int_equal(kw_msg_begin_request(&b, KW_OP_KEY_GET, 9).code, 0);
        assert_int_equal(kw_msg_put(&b, KW_T_DATA, big, sizeof big).code, 0);
        assert_int_equal(kw_msg_end(&b).code, 0);
        /* split: 2 bytes of the length, then the rest */
        assert_int_equal(write(sv[0], b.p, 2), 2);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                usleep(20000);
                _exit(write(sv[0], b.p + 2, b.len - 2) == (ssize_t)(b.len - 2) ? 0 : 1);
        }
        assert_int_equal(kw_ipc_recv(sv[1], &in, 5000).code, 0);
        assert_int_equal(in.len, b.len - 4);
        assert_memory_equal(in.p, b.p + 4, in.len);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_int_equal(st, 0);
        struct kw_msg m;
        assert_int_equal(kw_msg_parse(in.p, in.len, 0, &m).code, 0);
        struct kw_field f;
        assert_int_equal(kw_msg_get(&m, KW_T_DATA, &f).code, 0);
        assert_int_equal(f.len, sizeof big);
        assert_memory_equal(f.p, big, sizeof big);
        /* two small frames at once: the second one's bytes are a protocol error */
        kw_buf_reset(&b);
        assert_int_equal(kw_msg_begin_request(&b, KW_OP_KEY_GET, 10).code, 0);
        assert_int_equal(kw_msg_end(&b).code, 0);
        assert_int_equal(kw_ipc_send(sv[0], &b).code, 0);
        assert_int_equal(kw_ipc_send(sv[0], &b).code, 0);
        assert_int_equal(kw_ipc_recv(sv[1], &in, 1000).code, KW_ERR_PROTOCOL);
        assert_int_equal(in.len, 0);
        close(sv[0]);
        close(sv[1]);
        kw_buf_free(&b);
        kw_buf_free(&in);
}

static void ipc_recv_rejects_oversized_frame(void **state)
{
        (void)state;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        uint8_t hdr[4] = { 0x7f, 0xff, 0xff, 0xff };
        assert_int_equal(write(sv[0], hdr, 4), 4);
        struct kw_buf in;
        kw_buf_init(&in, KW_IPC_MAX_FRAME + 4);
        assert_int_equal(kw_ipc_recv(sv[1], &in, 1000).code, KW_ERR_PROTOCOL);
        assert_int_equal(in.len, 0);
        close(sv[0]);
        close(sv[1]);
        kw_buf_free(&in);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(ipc_msg_roundtrip_fields),
                cmocka_unit_test(ipc_msg_parse_rejects_malformed),
                cmocka_unit_test(ipc_msg_duplicate_tag_rejected),
                cmocka_unit_test(ipc_msg_put_over_field_max_fails_unchanged),
                cmocka_unit_test(ipc_reply_code_and_socket_roundtrip),
                cmocka_unit_test(ipc_recv_split_large_and_extra_bytes),
                cmocka_unit_test(ipc_recv_rejects_oversized_frame),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
