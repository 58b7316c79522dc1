/* source.c - where the provisioning document comes from (source.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "../server/common/b64.h"
#include "../server/common/log.h"
#include "../server/common/readfile.h"
#include "httpc.h"
#include "media.h"
#include "ovf.h"
#include "source.h"

#define TOKEN_MAX 512u

void kwp_sources_default(struct kwp_sources *s)
{
        *s = (struct kwp_sources){ .file = NULL, .nocloud_device = KWP_NOCLOUD_DEVICE,
                                   .ovf_device = KWP_OVF_DEVICE, .aws_url = KWP_AWS_URL, .azure_url = KWP_AZURE_URL,
                                   .gcp_url = KWP_GCP_URL, .timeout_ms = 2000, .attempts = 3, .backoff_ms = 250 };
}

const char *kwp_source_name(enum kwp_source_kind k)
{
        switch (k) {
        case KWP_SRC_FILE: return "file";
        case KWP_SRC_NOCLOUD: return "nocloud";
        case KWP_SRC_AZURE_OVF: return "azure-ovf";
        case KWP_SRC_AWS: return "aws-imds";
        case KWP_SRC_AZURE: return "azure-imds";
        case KWP_SRC_GCP: return "gcp-metadata";
        default: return "none";
        }
}

/* ------------------------------------------------------------------ HTTP */

/* One response: its body (at most cap bytes) and whether the GCP header
 * came with it. */
struct resp {
        struct kwp_http_body b;
        int gcp_flavor;
};

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
        struct resp *r = arg;
        size_t len = size * n;
        static const char want[] = "Metadata-Flavor:";
        if (len >= sizeof want - 1 && strncasecmp(p, want, sizeof want - 1) == 0) {
                const char *v = p + sizeof want - 1;
                size_t vl = len - (sizeof want - 1);
                while (vl > 0 && (*v == ' ' || *v == '\t'))
                        v++, vl--;
                while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
                        vl--;
                r->gcp_flavor = vl == 6 && memcmp(v, "Google", 6) == 0;
        }
        return len;
}

/* What one request came to. */
enum outcome {
        GOT,        /* a document                                  */
        ABSENT,     /* this source has none (404, empty)           */
        FAILED,     /* no answer worth trusting: retried           */
        TOO_LARGE,  /* a document, too large: the search stops     */
        UNUSABLE,   /* a document that does not decode: it stops   */
};

/*
 * One request: method "GET" or "PUT", headers (NULL-terminated), the body
 * into out.  *status: the HTTP status, or 0 when none came; why: a few
 * words for the log on failure.
 */
static enum outcome request(const struct kwp_sources *s, const char *method, const char *url,
                            const char *const *headers, struct kw_buf *out, size_t cap, int *gcp_flavor,
                            char *why, size_t whysz)
{
        struct curl_slist *hl = NULL;
        int ok = 1;
        for (size_t i = 0; ok && headers != NULL && headers[i] != NULL; i++) {
                struct curl_slist *n = curl_slist_append(hl, headers[i]);
                ok = n != NULL;
                hl = ok ? n : hl;
        }
        kw_buf_reset(out);
        struct resp r = { .b = { .buf = out, .cap = cap } };
        CURL *c = ok ? kwp_http_new("http", s->timeout_ms, &r.b) : NULL;
        if (c == NULL) {
                curl_slist_free_all(hl);
                snprintf(why, whysz, "out of memory");
                return FAILED;
        }
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
        if (strcmp(method, "PUT") == 0) {
                curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
        }
        CURLcode rc = curl_easy_perform(c);
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(hl);
        curl_easy_cleanup(c);
        if (gcp_flavor != NULL)
                *gcp_flavor = r.gcp_flavor;
        if (r.b.too_large) {
                snprintf(why, whysz, "more than %zu bytes", cap);
                return TOO_LARGE;
        }
        if (rc != CURLE_OK) {
                snprintf(why, whysz, "%s", curl_easy_strerror(rc));
                return FAILED;
        }
        if (status == 404) {
                snprintf(why, whysz, "404: no user data");
                return ABSENT;
        }
        if (status != 200) {
                snprintf(why, whysz, "HTTP %ld", status);
                return FAILED;
        }
        if (out->len == 0) {
                snprintf(why, whysz, "empty user data");
                return ABSENT;
        }
        return GOT;
}

/* ------------------------------------------------------------- sources */

/* AWS IMDSv2: a session token, then the user data with it. */
static enum outcome aws_once(const struct kwp_sources *s, struct kw_buf *doc, char *why, size_t whysz)
{
        char url[1024], hdr[TOKEN_MAX + 64];
        struct kw_buf tok;
        kw_buf_init(&tok, TOKEN_MAX + 1);
        snprintf(url, sizeof url, "%s/latest/api/token", s->aws_url);
        static const char *const put_h[] = { "X-aws-ec2-metadata-token-ttl-seconds: 300", NULL };
        enum outcome o = request(s, "PUT", url, put_h, &tok, TOKEN_MAX, NULL, why, whysz);
        if (o == GOT && (memchr(tok.p, '\r', tok.len) != NULL || memchr(tok.p, '\n', tok.len) != NULL ||
                         memchr(tok.p, '\0', tok.len) != NULL)) {
                snprintf(why, whysz, "the session token is not one line");
                o = FAILED;
        }
        if (o != GOT) {
                kw_buf_free(&tok);
                return o == ABSENT ? FAILED : o;   /* no token: not IMDSv2 */
        }
        snprintf(hdr, sizeof hdr, "X-aws-ec2-metadata-token: %.*s", (int)tok.len, (const char *)tok.p);
        OPENSSL_cleanse(tok.p, tok.len);
        kw_buf_free(&tok);
        snprintf(url, sizeof url, "%s/latest/user-data", s->aws_url);
        const char *const get_h[] = { hdr, NULL };
        o = request(s, "GET", url, get_h, doc, KWP_DOC_MAX, NULL, why, whysz);
        OPENSSL_cleanse(hdr, sizeof hdr);
        return o;
}

/* Azure IMDS: userData, base64 (an empty string when none was given). */
static enum outcome azure_once(const struct kwp_sources *s, struct kw_buf *doc, char *why, size_t whysz)
{
        char url[1024];
        snprintf(url, sizeof url, "%s/metadata/instance/compute/userData?api-version=2021-01-01&format=text",
                 s->azure_url);
        static const char *const h[] = { "Metadata: true", NULL };
        struct kw_buf b64;
        kw_buf_init(&b64, 2 * KWP_DOC_MAX);
        enum outcome o = request(s, "GET", url, h, &b64, 2 * KWP_DOC_MAX, NULL, why, whysz);
        if (o == GOT) {
                kw_buf_reset(doc);
                kw_result r = kw_b64_decode((const char *)b64.p, b64.len, doc);
                if (r.code != 0 || doc->len > KWP_DOC_MAX) {
                        snprintf(why, whysz, r.code != 0 ? "userData is not base64" : "more than %u bytes",
                                 KWP_DOC_MAX);
                        o = r.code != 0 ? UNUSABLE : TOO_LARGE;
                        OPENSSL_cleanse(doc->p, doc->len);
                        kw_buf_reset(doc);
                } else if (doc->len == 0) {
                        snprintf(why, whysz, "empty user data");
                        o = ABSENT;
                }
        }
        OPENSSL_cleanse(b64.p, b64.len);
        kw_buf_free(&b64);
        return o;
}

/* GCP: only a server that says it is Google's metadata server counts. */
static enum outcome gcp_once(const struct kwp_sources *s, struct kw_buf *doc, char *why, size_t whysz)
{
        char url[1024];
        snprintf(url, sizeof url, "%s/computeMetadata/v1/instance/attributes/user-data", s->gcp_url);
        static const char *const h[] = { "Metadata-Flavor: Google", NULL };
        int flavor = 0;
        enum outcome o = request(s, "GET", url, h, doc, KWP_DOC_MAX, &flavor, why, whysz);
        if ((o == GOT || o == ABSENT) && !flavor) {
                snprintf(why, whysz, "the answer lacks Metadata-Flavor: Google");
                OPENSSL_cleanse(doc->p, doc->len);
                kw_buf_reset(doc);
                return FAILED;
        }
        return o;
}

typedef enum outcome (*once_fn)(const struct kwp_sources *, struct kw_buf *, char *, size_t);

/* A source, tried up to s->attempts times while it fails. */
static enum outcome attempt(const struct kwp_sources *s, const char *name, once_fn once, struct kw_buf *doc,
                            char *why, size_t whysz)
{
        unsigned backoff = s->backoff_ms;
        enum outcome o = FAILED;
        for (unsigned i = 0; i < (s->attempts ? s->attempts : 1); i++) {
                if (i > 0)
                        kwp_http_backoff(&backoff);
                o = once(s, doc, why, whysz);
                if (o != FAILED)
                        break;
                char n[12];
                snprintf(n, sizeof n, "%u", i + 1);
                kw_log(KW_LOG_INFO, "provision_source_failed", "source", name, "attempt", n, "why", why, KW_END);
        }
        return o;
}

static kw_result from_file(const char *path, struct kw_buf *doc)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                kw_err_set_detail("cannot read %s: %s", path, strerror(errno));
                KW_BAIL(errno == ENOENT ? KW_ERR_NOT_FOUND : KW_ERR_IO);
        }
        kw_result r = kw_read_fd(fd, path, KWP_DOC_MAX, doc);
        close(fd);
        return r;
}

/* A config disk's user-data. */
static kw_result nocloud(const char *device, struct kw_buf *doc)
{
        return kwp_media_read(device, "user-data", KWP_DOC_MAX, doc);
}

/* The provisioning CD's ovf-env.xml, its CustomData. */
static kw_result azure_ovf(const char *device, struct kw_buf *doc)
{
        struct kw_buf xml;
        kw_buf_init(&xml, KWP_OVF_MAX);
        kw_result r = kwp_media_read(device, "ovf-env.xml", KWP_OVF_MAX, &xml);
        if (r.code == 0)
                r = kwp_ovf_custom_data((const char *)xml.p, xml.len, doc);
        if (r.code == 0 && doc->len > KWP_DOC_MAX) {
                kw_err_set_detail("its CustomData is larger than %u bytes", KWP_DOC_MAX);
                r = KW_RESULT(KW_ERR_TOO_LARGE);
        }
        OPENSSL_cleanse(xml.p, xml.len);   /* it also holds a user password */
        kw_buf_free(&xml);
        return r;
}

/* What each source without a document answered, for the one line. */
struct seen {
        char text[768];
        size_t n;
};

static void seen_add(struct seen *sn, const char *name, const char *why)
{
        if (sn->n < sizeof sn->text)
                sn->n += (size_t)snprintf(sn->text + sn->n, sizeof sn->text - sn->n, "%s%s: %s", sn->n ? "; " : "",
                                          name, why);
}

kw_result kwp_fetch(const struct kwp_sources *s, struct kw_buf *doc, enum kwp_source_kind *which)
{
        KW_ENSURE(s != NULL && doc != NULL && which != NULL, KW_ERR_INPUT);
        *which = KWP_SRC_NONE;
        if (s->file != NULL && s->file[0] != '\0') {
                KW_TRY(from_file(s->file, doc));
                *which = KWP_SRC_FILE;
                return KW_OK;
        }
        struct seen seen = { "", 0 };
        static const struct {
                enum kwp_source_kind kind;
                size_t dev_off;
                kw_result (*read)(const char *, struct kw_buf *);
        } media[] = {
                { KWP_SRC_NOCLOUD, offsetof(struct kwp_sources, nocloud_device), nocloud },
                { KWP_SRC_AZURE_OVF, offsetof(struct kwp_sources, ovf_device), azure_ovf },
        };
        for (size_t i = 0; i < sizeof media / sizeof media[0]; i++) {
                const char *dev = *(const char *const *)((const char *)s + media[i].dev_off);
                const char *name = kwp_source_name(media[i].kind);
                if (dev == NULL || dev[0] == '\0')
                        continue;
                kw_result r = media[i].read(dev, doc);
                if (r.code == 0) {
                        *which = media[i].kind;
                        return KW_OK;
                }
                char why[512];
                snprintf(why, sizeof why, "%s", kw_err_detail());
                if (r.code != KW_ERR_NOT_FOUND) {
                        kw_err_set_detail("%s: the document is unusable: %s", name, why);
                        return r;
                }
                kw_log(KW_LOG_INFO, "provision_source_absent", "source", name, "why", why, KW_END);
                seen_add(&seen, name, why);
        }
        static const struct {
                enum kwp_source_kind kind;
                size_t url_off;
                once_fn once;
        } order[] = {
                { KWP_SRC_AWS, offsetof(struct kwp_sources, aws_url), aws_once },
                { KWP_SRC_AZURE, offsetof(struct kwp_sources, azure_url), azure_once },
                { KWP_SRC_GCP, offsetof(struct kwp_sources, gcp_url), gcp_once },
        };
        for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
                const char *url = *(const char *const *)((const char *)s + order[i].url_off);
                const char *name = kwp_source_name(order[i].kind);
                if (url == NULL || url[0] == '\0')
                        continue;
                char why[256] = "";
                enum outcome o = attempt(s, name, order[i].once, doc, why, sizeof why);
                if (o == GOT) {
                        *which = order[i].kind;
                        return KW_OK;
                }
                if (o == TOO_LARGE || o == UNUSABLE) {
                        kw_err_set_detail("%s: the user data is unusable: %s", name, why);
                        KW_BAIL(o == TOO_LARGE ? KW_ERR_TOO_LARGE : KW_ERR_BAD_FIELD);
                }
                seen_add(&seen, name, why);
        }
        kw_err_set_detail("no provisioning document: %s", seen.n ? seen.text : "every source is turned off");
        KW_BAIL(KW_ERR_NOT_FOUND);
}
