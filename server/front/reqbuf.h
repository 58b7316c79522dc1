/*
 * reqbuf.h - CivetWeb 1.15's request buffer of the current worker thread:
 * where it is, the request head checked against it, and wiping what it
 * holds.  Called from http.c's CivetWeb callbacks only, in the worker.
 *
 * Each worker thread owns one buffer of max_request_size (KW_REQBUF_SIZE)
 * bytes (conn->buf, malloc'd when the thread starts, reused by every
 * connection it serves).  CivetWeb reads a connection's first request into
 * it from its start, parses the head in place, reads the body from just
 * after the head, and moves what follows a kept-alive request to the start.
 * There is no accessor: the buffer's address is learnt once per thread,
 * from the first request of a connection whose first byte - peeked with
 * SSL_peek before CivetWeb reads (kw_reqbuf_conn_start) - is not
 * whitespace: CivetWeb skipped nothing, so request_method is the buffer's
 * start.  A worker that has not learnt it cannot check heads (they are
 * refused) nor wipe the whole buffer; its first connection's bytes stay
 * there if that head never completed or CivetWeb refused it before parsing
 * its request line, until the worker parses a head and that connection
 * closes.
 */
#ifndef KW_REQBUF_H
#define KW_REQBUF_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <civetweb.h>
#include <openssl/ssl.h>

#include "../common/result.h"

#define KW_REQBUF_SIZE 16384            /* the max_request_size option */
#define KW_REQBUF_SIZE_STR "16384"

/* A connection starts on this worker (init_connection: handshake done,
 * CivetWeb has read nothing yet).  While the buffer is not known, waits
 * (at most timeout_ms, and not after *stopping is set) for the first
 * plaintext byte without consuming it; when none comes the socket is shut
 * down, so CivetWeb does not wait a second time.  ssl may be NULL. */
void kw_reqbuf_conn_start(SSL *ssl, int64_t timeout_ms, const _Atomic int *stopping);
/* The connection ends (connection_close): wipes the whole buffer when it is
 * known - refused or partial heads, pipelined requests, unread bodies. */
void kw_reqbuf_conn_end(void);

/* A head CivetWeb parsed, about to be handled: learns the buffer if this
 * is the connection's first, then checks the head against it (reqhead.h).
 * KW_OK with *ret_end = the offset of the body in the buffer;
 * KW_ERR_TOO_LARGE (431), KW_ERR_INPUT (400, also when the buffer is not
 * known), KW_ERR_INTERNAL, with kw_err_detail() set; *ret_end untouched on
 * failure.  Counts the connection's requests. */
KW_MUST_USE kw_result kw_reqbuf_check_head(const struct mg_request_info *ri, size_t *ret_end);
/* A head CivetWeb refused itself (http_error): learns the buffer from it
 * when it can, so that the close wipes it. */
void kw_reqbuf_note_head(const struct mg_request_info *ri);

/* After the answer to a head kw_reqbuf_check_head accepted: wipes the head
 * [0, head_end) and the body_len body bytes that came with it (those beyond
 * the buffer are not in it).  Kept: the version and the Connection lines,
 * which CivetWeb reads after the handler to decide on keep-alive (neither
 * carries a secret).  A pipelined next request is not touched. */
void kw_reqbuf_wipe_request(const struct mg_request_info *ri, size_t head_end, size_t body_len);
/* After the answer to a refused head: wipes the header names and values
 * CivetWeb NUL-terminated (the close wipes the rest when it can). */
void kw_reqbuf_wipe_strings(const struct mg_request_info *ri);

#endif
