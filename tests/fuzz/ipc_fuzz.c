/*
 * ipc_fuzz.c - the custody stream on arbitrary bytes: the frame splitter
 * (kw_ipc_rx, which custody runs on what the front sends) and the message
 * parser on every frame it yields, in both the request and the reply form.
 *
 * Properties: the frames taken out are exactly the input's prefix, each as
 * its length said and within bounds; the splitter stops (-1) only at a
 * length out of bounds; a parsed message's fields lie inside the frame and
 * within their tag's maximum; the id peeked is the parser's.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/ipc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_msg(const uint8_t *p, size_t n, int is_reply)
{
        struct kw_msg m;
        if (kw_msg_parse(p, n, is_reply, &m).code != 0)
                return;
        if (kw_ipc_peek_id(p, n) != m.id)
                abort();
        for (unsigned t = 0; t < KW_T_MAX; t++) {
                if (!kw_msg_has(&m, (uint8_t)t))
                        continue;
                const struct kw_field *f = &m.f[t];
                if (f->len > kw_tag_max((uint8_t)t) || f->p < p || f->p + f->len > p + n)
                        abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size > 60000)
                return 0;
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
                abort();
        if (size != 0 && write(sv[0], data, size) != (ssize_t)size)
                abort();
        shutdown(sv[0], SHUT_WR);
        struct kw_ipc_rx rx;
        kw_ipc_rx_init(&rx);
        size_t off = 0;       /* input bytes accounted for by frames taken out */
        int k = 0;
        while (k >= 0 && kw_ipc_rx_fill(&rx, sv[1], 1000).code == 0) {
                const uint8_t *p;
                size_t n;
                while ((k = kw_ipc_rx_next(&rx, &p, &n)) > 0) {
                        if (n < 8 || n > KW_IPC_MAX_FRAME || off + 4 + n > size ||
                            memcmp(p, data + off + 4, n) != 0)
                                abort();
                        check_msg(p, n, 0);
                        check_msg(p, n, 1);
                        off += 4 + n;
                }
                kw_ipc_rx_done(&rx);
        }
        if (k < 0) {
                /* stopped at a length out of bounds, and only there */
                if (size - off < 4)
                        abort();
                uint32_t len = (uint32_t)data[off] << 24 | (uint32_t)data[off + 1] << 16 |
                               (uint32_t)data[off + 2] << 8 | data[off + 3];
                if (len >= 8 && len <= KW_IPC_MAX_FRAME)
                        abort();
        } else if (size - off >= 4) {
                /* EOF with an incomplete last frame: its length is in bounds */
                uint32_t len = (uint32_t)data[off] << 24 | (uint32_t)data[off + 1] << 16 |
                               (uint32_t)data[off + 2] << 8 | data[off + 3];
                if (len < 8 || len > KW_IPC_MAX_FRAME || size - off - 4 >= len)
                        abort();
        }
        kw_ipc_rx_free(&rx);
        close(sv[0]);
        close(sv[1]);
        return 0;
}
