/*
 * custody_client.h - the front's side of the custody socket: a few
 * connections ([custody] connections), many calls in flight on each, each
 * caller woken by its own reply (matched by request id); reconnecting after
 * the custody process restarts.
 *
 * Usage:
 *     struct kw_cc_call c;
 *     kw_cc_begin(cc, KW_OP_KEY_GET, KW_CALLER_ADMIN, &c);
 *     kw_cc_put(&c, KW_T_TOKEN, token, token_len);  // the class's proof (proto.h)
 *     kw_cc_put_str(&c, KW_T_NAME, name);
 *     kw_result r = kw_cc_invoke(&c);               // r.code: transport or custody error
 *     ... kw_msg_get(&c.reply, KW_T_JSON, &f) ...  // valid until kw_cc_end
 *     kw_cc_end(&c);                                // wipes the buffers
 * When the custody process cannot be reached, kw_cc_invoke returns
 * KW_ERR_CUSTODY_DOWN quickly (no connection within the timeout), never hangs.
 * On a custody error, c.detail holds its non-secret detail text ("" if none).
 */
#ifndef KW_CUSTODY_CLIENT_H
#define KW_CUSTODY_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/ipc.h"
#include "../common/result.h"

struct kw_cc;

struct kw_cc_call {
        struct kw_cc *cc;
        struct kw_buf req;        /* private: request frame */
        struct kw_buf rbuf;       /* private: reply frame   */
        struct kw_msg reply;      /* parsed reply (after kw_cc_invoke succeeded) */
        char detail[257];
        kw_result build;          /* first failure while putting fields */
};

KW_MUST_USE kw_result kw_cc_new(const char *socket_path, unsigned connections,
                                unsigned timeout_ms, struct kw_cc **ret);
void kw_cc_free(struct kw_cc *cc);
/* While paused, calls wait (up to the call timeout) instead of connecting:
 * the front pauses its pool until it has dropped its privileges, so that
 * custody, which accepts the front's user only, never sees a connection
 * made as root in between. */
void kw_cc_pause(struct kw_cc *cc);
void kw_cc_resume(struct kw_cc *cc);

/* Starts a request of op on behalf of a caller of class caller (proto.h:
 * every request names one; the custody process checks its proof). */
void kw_cc_begin(struct kw_cc *cc, uint8_t op, enum kw_caller caller, struct kw_cc_call *c);
void kw_cc_put(struct kw_cc_call *c, uint8_t tag, const void *p, size_t n);
void kw_cc_put_str(struct kw_cc_call *c, uint8_t tag, const char *s);
void kw_cc_put_u32(struct kw_cc_call *c, uint8_t tag, uint32_t v);
void kw_cc_put_u64(struct kw_cc_call *c, uint8_t tag, uint64_t v);
KW_MUST_USE kw_result kw_cc_invoke(struct kw_cc_call *c);
void kw_cc_end(struct kw_cc_call *c);

/* Convenience: JSON reply field as (pointer, length); KW_ERR_PROTOCOL if absent. */
KW_MUST_USE kw_result kw_cc_reply_json(const struct kw_cc_call *c, const char **ret, size_t *ret_len);

#endif
