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

/*
 * The receiving side of a stream (many frames in flight, replies in any
 * order, matched by request id): what the socket holds is read at
 * once, then taken out frame by frame.  One owner at a time.
 *
 *     kw_ipc_rx_fill(&rx, fd, ms);        // waits, reads what is there
 *     while ((k = kw_ipc_rx_next(&rx, &p, &n)) > 0) ... p[0..n) is a payload
 *     if (k < 0) ... a length out of bounds: the stream is out of step
 *
 * A payload stays valid until the next fill or done.  Frames taken out are
 * wiped by done (call it once they are used: they may hold secrets), by the
 * next fill, and the whole buffer by free.
 */
struct kw_ipc_rx {
        struct kw_buf b;
        size_t start;            /* first byte not yet taken out */
        int slice_ms;            /* > 0: fd has this SO_RCVTIMEO (set_read_slice) */
};
void kw_ipc_rx_init(struct kw_ipc_rx *rx);
void kw_ipc_rx_free(struct kw_ipc_rx *rx);
/* Waits up to timeout_ms (< 0: forever) until fd is readable, then reads
 * what it holds (at least one byte, at most 64 KiB or the rest of a large
 * frame).  EOF, an error or the timeout (detail "timeout"):
 * KW_ERR_CUSTODY_DOWN. */
KW_MUST_USE kw_result kw_ipc_rx_fill(struct kw_ipc_rx *rx, int fd, int timeout_ms);
/* Gives the blocking socket fd a receive timeout of slice_ms: fill then
 * waits in recv itself (no poll per read), honouring its timeout to within
 * a slice. */
KW_MUST_USE kw_result kw_ipc_set_read_slice(struct kw_ipc_rx *rx, int fd, int slice_ms);
/* 1 and the next whole frame's payload; 0 when no whole frame is buffered;
 * -1 when the next length is out of bounds (KW_ERR_PROTOCOL). */
int kw_ipc_rx_next(struct kw_ipc_rx *rx, const uint8_t **ret, size_t *ret_len);
/* Drops the frames taken out (wiped); a partial frame stays. */
void kw_ipc_rx_done(struct kw_ipc_rx *rx);
/* One frame's payload from fd into out through a fresh reader: for a
 * connection with one call in flight (tools, tests).  The errors of fill;
 * KW_ERR_PROTOCOL for a length out of bounds. */
KW_MUST_USE kw_result kw_ipc_recv_one(int fd, struct kw_buf *out, int timeout_ms);
/* The request id of a payload whose header is readable (a reply to a frame
 * that did not parse still names it), else 0. */
uint32_t kw_ipc_peek_id(const uint8_t *p, size_t n);

#endif
