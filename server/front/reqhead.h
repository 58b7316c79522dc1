/*
 * reqhead.h - checks a request head as CivetWeb 1.15 left it after parsing
 * it in place, against the bytes it parsed: every header line of the head
 * must be one CivetWeb kept, in the form RFC 9112 allows.
 *
 * Why: parse_http_headers() keeps at most MG_MAX_HEADERS (64) lines and
 * silently ends the header section at the first line that does not start
 * with a field-name character (obs-fold, a byte >= 0x80, ':', a bare CR);
 * it accepts whitespace before the colon (overwriting it with NULs), names
 * with non-token characters, bare LF line ends, and empty lines before the
 * request line (where it frames the body from the wrong offset).  A hidden
 * Content-Length or Transfer-Encoding makes the body a second request on a
 * kept-alive connection (request smuggling).
 *
 * How: CivetWeb NUL-terminates the method, target, version, names and values
 * in its buffer and leaves every other byte of the head as received.  The
 * pointers of mg_request_info and the bytes between them therefore tell
 * exactly how each line ended, whether whitespace preceded a colon, and
 * whether the header block ended after the last kept line (the parse ends
 * with the head's final "\r\n" turned into "\r\0").  The only reads are of
 * bytes between buf and buf + buf_size; the head's own bytes suffice for
 * every verdict except after a last line ended by a bare LF, which is
 * refused either way (see reqhead.c).
 *
 * Accepted heads: the request line first (RFC 9112 section 2.2 lets a
 * server skip an empty line before it; CivetWeb frames the body from the
 * wrong offset after two, and from the first the parse's own pointers can
 * no longer be checked, so none is accepted); method SP target SP
 * HTTP-version CRLF; 1..64 header lines "name:" OWS value CRLF with name in
 * RFC 9110 tchar and no whitespace before the colon, one Host line (none
 * only in HTTP/1.0 with other lines); CRLF.
 * A known blind spot: CivetWeb turns every whitespace byte after the version
 * into NUL, so a request line ended by CR CR, CR SP, LF CR or LF SP (bare CR
 * or a whitespace-led first field line) cannot be told from CRLF.
 */
#ifndef KW_REQHEAD_H
#define KW_REQHEAD_H

#include <stddef.h>

#include <civetweb.h>

#include "../common/result.h"

/* What CivetWeb left: its request buffer and the mg_request_info pointers
 * into it (after handle_request() split the query string off the target). */
struct kw_reqhead {
        const char *buf;                 /* the worker's request buffer (conn->buf) */
        size_t buf_size;                 /* its size, the max_request_size option    */
        const char *method;              /* request_method                           */
        const char *uri;                 /* request_uri                              */
        const char *query;               /* query_string, or NULL                    */
        const char *version;             /* http_version, after "HTTP/"              */
        const struct mg_header *headers; /* http_headers                             */
        int num_headers;
};

/* KW_OK with *ret_end = offset from buf of the first byte after the head
 * (where CivetWeb reads the body from); KW_ERR_TOO_LARGE when more header
 * lines followed than CivetWeb keeps (answer 431); KW_ERR_INPUT for a head
 * CivetWeb accepted but RFC 9112 does not, or in a form it misreads;
 * KW_ERR_INTERNAL when the pointers do not lie in buf as the parse leaves
 * them.  On failure kw_err_detail() says why in fixed text (never request
 * bytes) and *ret_end is untouched. */
KW_MUST_USE kw_result kw_reqhead_check(const struct kw_reqhead *h, size_t *ret_end);

#endif
