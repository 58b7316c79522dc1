/*
 * ipc.h - framing and field access for the front<->custody socket (proto.h).
 *
 * A parsed kw_msg points into the frame buffer it was parsed from: keep the
 * buffer alive while the message is used.  Frames that carry secrets (DATA,
 * MATERIAL) are wiped by kw_buf_free.
 */
#ifndef KW_IPC_H
#define KW_IPC_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "proto.h"
#include "result.h"

struct kw_field {
        const uint8_t *p;
        uint32_t len;
};

struct kw_msg {
        uint8_t op;
        uint32_t id;
        int32_t code;            /* replies only */
        uint64_t present;        /* bit t set when field t is present */
        struct kw_field f[KW_T_MAX];
};

/* Starts a request frame in b (b must be empty; its max should be
 * KW_IPC_MAX_FRAME + 4). */
KW_MUST_USE kw_result kw_msg_begin_request(struct kw_buf *b, uint8_t op, uint32_t id);
KW_MUST_USE kw_result kw_msg_begin_reply(struct kw_buf *b, uint8_t op, uint32_t id, int32_t code);
KW_MUST_USE kw_result kw_msg_put(struct kw_buf *b, uint8_t tag, const void *p, size_t n);
KW_MUST_USE kw_result kw_msg_put_str(struct kw_buf *b, uint8_t tag, const char *s);
KW_MUST_USE kw_result kw_msg_put_u32(struct kw_buf *b, uint8_t tag, uint32_t v);
KW_MUST_USE kw_result kw_msg_put_u64(struct kw_buf *b, uint8_t tag, uint64_t v);
/* Writes the frame length; call once, after the last put. */
KW_MUST_USE kw_result kw_msg_end(struct kw_buf *b);

/* Parses a payload (without the 4-byte length).  is_reply selects the
 * header form.  Unknown tags, duplicates, over-long fields: KW_ERR_PROTOCOL. */
KW_MUST_USE kw_result kw_msg_parse(const uint8_t *p, size_t n, int is_reply, struct kw_msg *ret);

static inline int kw_msg_has(const struct kw_msg *m, uint8_t tag) { return (m->present >> tag) & 1; }
/* Field getters: KW_ERR_MISSING_FIELD when absent, KW_ERR_BAD_FIELD when malformed. */
KW_MUST_USE kw_result kw_msg_get(const struct kw_msg *m, uint8_t tag, struct kw_field *ret);
KW_MUST_USE kw_result kw_msg_get_u32(const struct kw_msg *m, uint8_t tag, uint32_t *ret);
KW_MUST_USE kw_result kw_msg_get_u64(const struct kw_msg *m, uint8_t tag, uint64_t *ret);
/* Copies a string field into out (size outsz, NUL-terminated); rejects
 * embedded NULs and values that do not fit. */
KW_MUST_USE kw_result kw_msg_get_str(const struct kw_msg *m, uint8_t tag, char *out, size_t outsz);

/* Writes a whole frame (built with kw_msg_end).  Handles EINTR and short writes. */
KW_MUST_USE kw_result kw_ipc_send(int fd, const struct kw_buf *frame);
/* Reads one frame into b (reset first); payload at b->p, length b->len.
 * The stream must carry one frame at a time (request, reply, request...):
 * the frame is read with as few recv() calls as possible, and bytes past its
 * end are KW_ERR_PROTOCOL.  timeout_ms < 0 waits forever.  EOF, a socket
 * error or the timeout: KW_ERR_CUSTODY_DOWN (detail "timeout" for the
 * latter); a frame length out of bounds: KW_ERR_PROTOCOL.  After any failure
 * the stream may be out of step: close the socket. */
KW_MUST_USE kw_result kw_ipc_recv(int fd, struct kw_buf *b, int timeout_ms);

#endif
