/*
 * httpc.h - keyward-provision's one wrapper of libcurl handles: every
 * request the program makes (the metadata services of source.h, the
 * appliance's listeners of selftest.h) starts from kwp_http_new, so that
 * none takes a proxy from the environment, follows a redirect, waits
 * without bound or reads an unbounded body; and every retry waits with
 * kwp_http_backoff.
 */
#ifndef KWP_HTTPC_H
#define KWP_HTTPC_H

#include <stddef.h>

#include <curl/curl.h>

#include "../server/common/buf.h"

/* Where an answer's body goes: buf, at most cap bytes.  A longer body
 * aborts the transfer (CURLE_WRITE_ERROR) and sets too_large. */
struct kwp_http_body {
        struct kw_buf *buf;
        size_t cap;
        int too_large;
};

/*
 * A new easy handle allowed only protocols ("http", "https"), with: no
 * proxy (the environment's http_proxy and the like are ignored), no
 * redirect followed, no signals, timeout_ms for the whole request and for
 * the connection, HTTP/1.1, the User-Agent "keyward-provision", and the
 * body written to body (which must outlive the handle).  The caller adds
 * the URL, the method and its headers, and frees the handle with
 * curl_easy_cleanup.  NULL when libcurl cannot make one (out of memory).
 */
CURL *kwp_http_new(const char *protocols, unsigned timeout_ms, struct kwp_http_body *body);

#define KWP_HTTP_BACKOFF_MAX_MS 5000u

/* The pause between two attempts: sleeps *backoff_ms (resumed after a
 * signal), then doubles *backoff_ms, up to KWP_HTTP_BACKOFF_MAX_MS. */
void kwp_http_backoff(unsigned *backoff_ms);

#endif
