/* reqbuf.c - CivetWeb's per-worker request buffer (see reqbuf.h). */
#include <ctype.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "reqbuf.h"
#include "reqhead.h"

#define PEEK_SLICE_MS 200       /* the stop flag is checked this often while peeking */

/* The connection this worker thread serves (CivetWeb: one at a time). */
static __thread unsigned tl_requests;   /* heads of this connection seen so far */
static __thread int tl_first_byte;      /* its first plaintext byte, -1 unknown */

/* This worker's buffer (conn->buf), NULL until learnt. */
static __thread char *tl_buf;

static int64_t now_ms(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* The connection's first plaintext byte, without consuming it (CivetWeb's
 * next read finds it pending in OpenSSL); -1 when none came. */
static int peek_first_byte(SSL *ssl, int64_t timeout_ms, const _Atomic int *stopping)
{
        int fd = SSL_get_fd(ssl);
        int64_t end = now_ms() + timeout_ms;
        for (;;) {
                unsigned char c;
                ERR_clear_error();
                int n = SSL_peek(ssl, &c, 1);
                if (n == 1)
                        return c;
                int e = SSL_get_error(ssl, n);
                int64_t left = end - now_ms();
                if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) || fd < 0 || left <= 0 ||
                    atomic_load(stopping))
                        break;
                struct pollfd p = { .fd = fd, .events = e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN };
                (void)poll(&p, 1, left < PEEK_SLICE_MS ? (int)left : PEEK_SLICE_MS);
        }
        ERR_clear_error();
        if (fd >= 0)
                (void)shutdown(fd, SHUT_RDWR);      /* CivetWeb then reads the end at once */
        return -1;
}

void kw_reqbuf_conn_start(SSL *ssl, int64_t timeout_ms, const _Atomic int *stopping)
{
        tl_requests = 0;
        tl_first_byte = -1;
        if (tl_buf == NULL && ssl != NULL)
                tl_first_byte = peek_first_byte(ssl, timeout_ms, stopping);
}

void kw_reqbuf_conn_end(void)
{
        if (tl_buf != NULL)
                OPENSSL_cleanse(tl_buf, KW_REQBUF_SIZE);
}

/* The connection's first head, when its first byte was not whitespace:
 * CivetWeb skipped nothing before the method, so it is the buffer. */
void kw_reqbuf_note_head(const struct mg_request_info *ri)
{
        if (tl_buf == NULL && ri != NULL && ri->request_method != NULL && tl_requests == 0 &&
            tl_first_byte >= 0 && !isspace(tl_first_byte))
                tl_buf = (char *)(uintptr_t)ri->request_method;     /* CivetWeb's, writable */
}

kw_result kw_reqbuf_check_head(const struct mg_request_info *ri, size_t *ret_end)
{
        kw_err_clear_detail();          /* no detail of an earlier request on this thread */
        KW_ENSURE(ri != NULL && ret_end != NULL, KW_ERR_INTERNAL);
        kw_reqbuf_note_head(ri);
        tl_requests++;
        if (tl_buf == NULL) {
                /* whitespace first: where CivetWeb's buffer starts is not known */
                kw_err_set_detail("empty line before the request line");
                KW_BAIL(KW_ERR_INPUT);
        }
        struct kw_reqhead rh = {
                .buf = tl_buf, .buf_size = KW_REQBUF_SIZE, .method = ri->request_method,
                .uri = ri->request_uri, .query = ri->query_string, .version = ri->http_version,
                .headers = ri->http_headers, .num_headers = ri->num_headers,
        };
        return kw_reqhead_check(&rh, ret_end);
}

void kw_reqbuf_wipe_request(const struct mg_request_info *ri, size_t head_end, size_t body_len)
{
        if (tl_buf == NULL || ri == NULL || head_end > KW_REQBUF_SIZE)
                return;
        struct {
                const char *lo, *hi;
        } keep[MG_MAX_HEADERS + 1];
        size_t nk = 0;
        keep[nk].lo = ri->http_version - 5;                     /* "HTTP/1.1" */
        keep[nk++].hi = ri->http_version + strlen(ri->http_version);
        for (int i = 0; i < ri->num_headers; i++) {
                if (strcasecmp(ri->http_headers[i].name, "Connection") == 0) {
                        keep[nk].lo = ri->http_headers[i].name;
                        keep[nk].hi = ri->http_headers[i].value + strlen(ri->http_headers[i].value);
                        nk++;
                }
        }
        char *p = tl_buf, *end = tl_buf + head_end;
        for (size_t k = 0; k < nk; k++) {                      /* in buffer order */
                if (keep[k].lo > p)
                        OPENSSL_cleanse(p, (size_t)(keep[k].lo - p));
                p = tl_buf + (keep[k].hi - tl_buf);
        }
        if (end > p)
                OPENSSL_cleanse(p, (size_t)(end - p));
        if (body_len > KW_REQBUF_SIZE - head_end)
                body_len = KW_REQBUF_SIZE - head_end;
        OPENSSL_cleanse(end, body_len);
}

void kw_reqbuf_wipe_strings(const struct mg_request_info *ri)
{
        for (int i = 0; ri != NULL && i < ri->num_headers; i++) {
                const char *n = ri->http_headers[i].name, *v = ri->http_headers[i].value;
                if (v != NULL)
                        OPENSSL_cleanse((char *)(uintptr_t)v, strlen(v));
                if (n != NULL)
                        OPENSSL_cleanse((char *)(uintptr_t)n, strlen(n));
        }
}
