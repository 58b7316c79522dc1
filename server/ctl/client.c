/* client.c - keywardctl's HTTP(S) client (libcurl) and exit-code mapping. */
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "ctl.h"

#define CTL_REPLY_MAX (2u * 1024u * 1024u)
#define CTL_TOKEN_FILE_MAX 4096

static size_t ctl_write_cb(char *p, size_t size, size_t nmemb, void *arg)
{
        struct kw_buf *b = arg;
        size_t n = size * nmemb;
        if (kw_buf_put(b, p, n).code != 0)
                return 0; /* aborts the transfer: reply too large */
        return n;
}

/* Appends a header line; on failure frees the list and sets it to NULL. */
static int ctl_hdr(struct curl_slist **l, const char *line)
{
        struct curl_slist *n = curl_slist_append(*l, line);
        if (n == NULL) {
                curl_slist_free_all(*l);
                *l = NULL;
                return -1;
        }
        *l = n;
        return 0;
}

/* Loads and checks the token file once. */
static int ctl_token_load(struct ctl *c)
{
        if (c->token.p != NULL)
                return CTL_OK;
        struct kw_buf raw;
        kw_buf_init(&raw, CTL_TOKEN_FILE_MAX);
        kw_result r = ctl_read_file(c->token_file, CTL_TOKEN_FILE_MAX, &raw);
        if (r.code != 0) {
                ctl_err("cannot read the token file: %s (set --token-file or KEYWARD_TOKEN_FILE)",
                        kw_err_detail());
                kw_buf_free(&raw);
                return CTL_AUTH;
        }
        r = ctl_token_parse(raw.p, raw.len, &c->token);
        kw_buf_free(&raw);
        if (r.code != 0) {
                ctl_err("%s does not hold a bearer token", c->token_file);
                return CTL_AUTH;
        }
        return CTL_OK;
}

int ctl_request(struct ctl *c, const char *method, const char *path, const struct kw_buf *body,
                struct ctl_resp *ret)
{
        int rc = ctl_token_load(c);
        if (rc != CTL_OK)
                return rc;
        CURL *h = curl_easy_init();
        if (h == NULL) {
                ctl_err("cannot initialise libcurl");
                return CTL_CONNECT;
        }
        char url[4096];
        if ((size_t)snprintf(url, sizeof url, "%s%s", c->url, path) >= sizeof url) {
                curl_easy_cleanup(h);
                ctl_err("URL too long");
                return CTL_USAGE;
        }
        /* "Authorization: Bearer " + token: built in secret memory, wiped after */
        static const char auth_prefix[] = "Authorization: Bearer ";
        struct kw_secret auth = { 0 };
        if (kw_secret_alloc(sizeof auth_prefix + c->token.len, &auth).code != 0) {
                curl_easy_cleanup(h);
                ctl_err("out of memory");
                return CTL_CONNECT;
        }
        memcpy(auth.p, auth_prefix, sizeof auth_prefix - 1);
        memcpy(auth.p + sizeof auth_prefix - 1, c->token.p, c->token.len); /* includes NUL */
        struct curl_slist *hdrs = NULL;
        int bad = ctl_hdr(&hdrs, (const char *)auth.p);
        kw_secret_free(&auth);
        bad = bad || ctl_hdr(&hdrs, "Accept: application/json");
        if (!bad && body != NULL)
                bad = ctl_hdr(&hdrs, "Content-Type: application/json");
        else if (!bad && strcmp(method, "GET") != 0)
                bad = ctl_hdr(&hdrs, "Content-Type:"); /* no body: no type */
        if (bad) {
                curl_slist_free_all(hdrs);
                curl_easy_cleanup(h);
                ctl_err("out of memory");
                return CTL_CONNECT;
        }

        struct ctl_resp r = { 0 };
        kw_buf_init(&r.body, CTL_REPLY_MAX);
        char errbuf[CURL_ERROR_SIZE] = "";
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 120L);
        curl_easy_setopt(h, CURLOPT_USERAGENT, "keywardctl/" KEYWARD_VERSION);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, ctl_write_cb);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &r.body);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, c->insecure ? 0L : 1L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, c->insecure ? 0L : 2L);
        if (c->cacert != NULL)
                curl_easy_setopt(h, CURLOPT_CAINFO, c->cacert);
        if (strcmp(method, "GET") == 0) {
                curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        } else {
                curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
                curl_easy_setopt(h, CURLOPT_POSTFIELDS,
                                 body != NULL && body->p ? (const char *)body->p : "");
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, body != NULL ? (long)body->len : 0L);
        }
        CURLcode cc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
        curl_slist_free_all(hdrs); /* libcurl's copy of the header is not wiped: see docs/api.md */
        curl_easy_cleanup(h);
        if (cc != CURLE_OK) {
                if (cc == CURLE_WRITE_ERROR)
                        ctl_err("the reply from %s is larger than %u bytes", c->url, CTL_REPLY_MAX);
                else
                        ctl_err("cannot talk to %s: %s", c->url,
                                errbuf[0] ? errbuf : curl_easy_strerror(cc));
                kw_buf_free(&r.body);
                return cc == CURLE_WRITE_ERROR ? CTL_SERVER : CTL_CONNECT;
        }
        const char *s;
        if (kw_buf_cstr(&r.body, &s).code != 0) {
                kw_buf_free(&r.body);
                ctl_err("out of memory");
                return CTL_SERVER;
        }
        *ret = r;
        return CTL_OK;
}

int ctl_resp_check(const struct ctl_resp *r)
{
        int rc = ctl_exit_for_status(r->status);
        if (rc == CTL_OK)
                return CTL_OK;
        cJSON *doc = cJSON_ParseWithLength((const char *)r->body.p, r->body.len);
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(doc, "message");
        if (cJSON_IsString(msg))
                ctl_err("%s", msg->valuestring);
        else
                ctl_err("the server answered HTTP %ld", r->status);
        cJSON_Delete(doc);
        return rc;
}

void ctl_resp_free(struct ctl_resp *r)
{
        kw_buf_free(&r->body);
        r->status = 0;
}

void ctl_close(struct ctl *c)
{
        kw_secret_free(&c->token);
}
