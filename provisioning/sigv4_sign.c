/*
 * sigv4_sign.c - SigV4 signing (see sigv4_sign.h): the names to sign, an
 * Authorization header the verifier parses back, then the verifier's string
 * to sign and the custody's HMAC chain.  Nothing of SigV4's canonical form
 * is written here.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../server/common/secret.h"
#include "../server/custody/sigv4_key.h"
#include "sigv4_sign.h"

#define SECRET_MAX 256   /* what kw_sigv4_signing_key takes */

kw_result kwp_sigv4_amz_date(time_t t, char ret[KWP_SIGV4_AMZ_DATE_LEN + 1])
{
        struct tm tm;
        char b[32];
        KW_ENSURE(t >= 0 && gmtime_r(&t, &tm) != NULL && tm.tm_year <= 9999 - 1900, KW_ERR_INPUT);
        KW_ENSURE(strftime(b, sizeof b, "%Y%m%dT%H%M%SZ", &tm) == KWP_SIGV4_AMZ_DATE_LEN, KW_ERR_INPUT);
        memcpy(ret, b, KWP_SIGV4_AMZ_DATE_LEN + 1);
        return KW_OK;
}

static int name_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

/* The lower-cased header names of req, sorted, each once. */
struct names {
        char v[KW_SIGV4_MAX_SIGNED][KW_SIGV4_MAX_HEADER_NAME + 1];
        size_t n;
};

KW_MUST_USE static kw_result names_of(const struct kw_sigv4_request *req, struct names *ret)
{
        struct names s = { .n = 0 };
        for (size_t k = 0; k < req->n_headers; k++) {
                const struct kw_sigv4_header *h = &req->headers[k];
                char low[KW_SIGV4_MAX_HEADER_NAME + 1];
                if (h->name == NULL || h->name_len == 0 || h->name_len > KW_SIGV4_MAX_HEADER_NAME) {
                        kw_err_set_detail("cannot sign a header name of %zu characters", h->name_len);
                        KW_BAIL(KW_ERR_INPUT);
                }
                for (size_t i = 0; i < h->name_len; i++) {
                        char c = h->name[i];
                        low[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
                        if (!name_char(low[i])) {
                                kw_err_set_detail("cannot sign header %.*s: names are A-Z a-z 0-9 . _ -",
                                                  (int)h->name_len, h->name);
                                KW_BAIL(KW_ERR_INPUT);
                        }
                }
                low[h->name_len] = '\0';
                size_t at = 0;
                int cmp = 1;
                while (at < s.n && (cmp = strcmp(s.v[at], low)) < 0)
                        at++;
                if (at < s.n && cmp == 0)
                        continue;   /* a repeated name: one signed header, both values */
                if (s.n == KW_SIGV4_MAX_SIGNED) {
                        kw_err_set_detail("cannot sign more than %d headers", KW_SIGV4_MAX_SIGNED);
                        KW_BAIL(KW_ERR_INPUT);
                }
                memmove(s.v[at + 1], s.v[at], (s.n - at) * sizeof s.v[0]);
                memcpy(s.v[at], low, h->name_len + 1);
                s.n++;
        }
        *ret = s;
        return KW_OK;
}

/* The value of the X-Amz-Date header: the scope's day is its first 8 characters. */
static const struct kw_sigv4_header *amz_date_of(const struct kw_sigv4_request *req)
{
        for (size_t k = 0; k < req->n_headers; k++) {
                const struct kw_sigv4_header *h = &req->headers[k];
                if (h->name != NULL && h->name_len == 10 && strncasecmp(h->name, "x-amz-date", 10) == 0)
                        return h;
        }
        return NULL;
}

/*
 * The Authorization header with a signature of zeros, parsed back by the
 * verifier: what it refuses (a key id with a '/', a region with a space,
 * no host among the names...) is refused here, before anything is signed.
 */
KW_MUST_USE static kw_result draft(const struct kw_sigv4_request *req, const struct kwp_sigv4_cred *cred,
                                   char out[KWP_SIGV4_AUTHZ_MAX], size_t *ret_len, struct kw_sigv4_auth *ret_auth)
{
        const struct kw_sigv4_header *date = amz_date_of(req);
        if (date == NULL || date->value == NULL || date->value_len < 8) {
                kw_err_set_detail("cannot sign: no X-Amz-Date header");
                KW_BAIL(KW_ERR_INPUT);
        }
        struct names names;
        KW_TRY(names_of(req, &names));
        size_t n = 0, cap = KWP_SIGV4_AUTHZ_MAX;
        int w = snprintf(out, cap, KW_SIGV4_ALG " Credential=%s/%.8s/%s/%s/aws4_request, SignedHeaders=",
                         cred->akid, date->value, cred->region, cred->service);
        for (size_t i = 0; w >= 0 && (size_t)w < cap - n && i < names.n; i++) {
                n += (size_t)w;
                w = snprintf(out + n, cap - n, "%s%s", i ? ";" : "", names.v[i]);
        }
        if (w >= 0 && (size_t)w < cap - n) {
                n += (size_t)w;
                w = snprintf(out + n, cap - n, ", Signature=%064d", 0);
        }
        if (w < 0 || (size_t)w >= cap - n) {
                kw_err_set_detail("cannot sign: the Authorization header would be too long");
                KW_BAIL(KW_ERR_TOO_LARGE);
        }
        n += (size_t)w;
        kw_result r = kw_sigv4_parse_authorization(out, ret_auth);
        if (r.code != 0) {
                kw_err_set_detail("cannot sign: %s", kw_err_detail());
                KW_BAIL(KW_ERR_INPUT);
        }
        *ret_len = n;
        return KW_OK;
}

kw_result kwp_sigv4_sign(const struct kw_sigv4_request *req, const struct kwp_sigv4_cred *cred, char *ret,
                         size_t authz_sz)
{
        KW_ENSURE(req != NULL && cred != NULL && ret != NULL && req->method != NULL && req->path != NULL &&
                          (req->headers != NULL || req->n_headers == 0) &&
                          (req->body != NULL || req->body_len == 0),
                  KW_ERR_INPUT);
        if (cred->akid == NULL || cred->region == NULL || cred->service == NULL) {
                kw_err_set_detail("cannot sign without a key id, a region and a service");
                KW_BAIL(KW_ERR_INPUT);
        }
        if (cred->secret == NULL || cred->secret_len == 0 || cred->secret_len > SECRET_MAX) {
                kw_err_set_detail("a secret access key is 1 to %d bytes", SECRET_MAX);
                KW_BAIL(KW_ERR_BAD_LENGTH);
        }
        char authz[KWP_SIGV4_AUTHZ_MAX];
        size_t len = 0;
        struct kw_sigv4_auth auth;
        KW_TRY(draft(req, cred, authz, &len, &auth));
        /* ~17 KiB: the canonical request as the verifier builds it */
        struct kw_sigv4_signed sg;
        kw_result r = kw_sigv4_string_to_sign(req, &auth, &sg);
        if (r.code == KW_ERR_AUTH) {   /* the verifier's word for a request it refuses */
                kw_err_set_detail("cannot sign: %s", kw_err_detail());
                KW_BAIL(KW_ERR_INPUT);
        }
        KW_TRY(r);
        uint8_t key[32], sig[32];
        r = kw_sigv4_signing_key(cred->secret, cred->secret_len, auth.date, auth.region, auth.service, key);
        if (r.code == 0)
                r = kw_sigv4_signature(key, sg.sts, sg.sts_len, sig);
        kw_wipe(key, sizeof key);
        KW_TRY(r);
        static const char hex[] = "0123456789abcdef";
        char *s = authz + len - 2 * sizeof sig;   /* the placeholder: the last 64 characters */
        for (size_t i = 0; i < sizeof sig; i++) {
                s[2 * i] = hex[sig[i] >> 4];
                s[2 * i + 1] = hex[sig[i] & 15];
        }
        if (len >= authz_sz) {
                kw_err_set_detail("the Authorization header is %zu characters, room for %zu", len,
                                  authz_sz ? authz_sz - 1 : 0);
                KW_BAIL(KW_ERR_TOO_LARGE);
        }
        memcpy(ret, authz, len + 1);
        return KW_OK;
}
