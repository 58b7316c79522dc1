/* httpc.c - the libcurl options every request of keyward-provision takes (httpc.h). */
#include <errno.h>
#include <time.h>

#include "httpc.h"

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
        struct kwp_http_body *b = arg;
        size_t len = size * n;
        if (b->buf->len > b->cap || len > b->cap - b->buf->len) {
                b->too_large = 1;
                return 0;   /* aborts the transfer */
        }
        return kw_buf_put(b->buf, p, len).code == 0 ? len : 0;
}

CURL *kwp_http_new(const char *protocols, unsigned timeout_ms, struct kwp_http_body *body)
{
        CURL *c = curl_easy_init();
        if (c == NULL)
                return NULL;
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, protocols);
        curl_easy_setopt(c, CURLOPT_PROXY, "");          /* never a proxy from the environment */
        curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
        curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        curl_easy_setopt(c, CURLOPT_USERAGENT, "keyward-provision");
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
        return c;
}

void kwp_http_backoff(unsigned *backoff_ms)
{
        unsigned ms = *backoff_ms;
        struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
                ;
        *backoff_ms = ms < KWP_HTTP_BACKOFF_MAX_MS / 2 ? ms * 2 : KWP_HTTP_BACKOFF_MAX_MS;
}
