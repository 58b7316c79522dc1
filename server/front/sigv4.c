/*
 * sigv4.c - AWS Signature Version 4, verify side (see sigv4.h).
 *
 * Everything is written into caller-supplied, bounded buffers through a
 * tiny writer (struct sw) that latches the first overflow: no heap, no
 * partial results.  Untrusted input (the Authorization header, path, query,
 * header values) is read by length, never past its end.
 */
#include <pthread.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "../common/b64.h"
#include "sigv4.h"

#define SIGV4_MAX_PATH_SEGS 128
#define SIGV4_QUERY_SCRATCH 8192

static const char hexd[] = "0123456789abcdef";

/* ---- SHA-256, fetched once ----
 * EVP_sha256() looks the implementation up in the provider store on every
 * call; with two digests per XKS request that lookup was a visible share of
 * the request's CPU time. */

static pthread_once_t algs_once = PTHREAD_ONCE_INIT;
static EVP_MD *alg_sha256;   /* live as long as the process */

static void algs_fetch(void) { alg_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL); }

static int algs(void)
{
        pthread_once(&algs_once, algs_fetch);
        return alg_sha256 != NULL;
}

KW_MUST_USE static kw_result sha256(const void *p, size_t n, uint8_t out[32])
{
        unsigned len = 0;
        if (!algs() || EVP_Digest(n ? p : (const void *)"", n, out, &len, alg_sha256, NULL) != 1 ||
            len != 32)
                KW_BAIL(KW_ERR_CRYPTO);
        return KW_OK;
}

/* ---- bounded writer ---- */

struct sw {
        char *p;
        size_t len, cap;   /* cap includes the NUL */
        int overflow;
};

static void sw_put(struct sw *w, const void *s, size_t n)
{
        if (w->overflow || w->cap - w->len <= n) {
                w->overflow = 1;
                return;
        }
        memcpy(w->p + w->len, s, n);
        w->len += n;
        w->p[w->len] = '\0';
}

static void sw_str(struct sw *w, const char *s) { sw_put(w, s, strlen(s)); }
static void sw_ch(struct sw *w, char c) { sw_put(w, &c, 1); }

static void sw_hex(struct sw *w, const uint8_t *b, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                char x[2] = { hexd[b[i] >> 4], hexd[b[i] & 15] };
                sw_put(w, x, 2);
        }
}

static int unreserved(unsigned char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '.' || c == '_' || c == '~';
}

/* URI-encodes each byte (RFC 3986 unreserved kept, upper-case %XX). */
static void sw_uri_encode(struct sw *w, const uint8_t *s, size_t n)
{
        static const char HEX[] = "0123456789ABCDEF";
        for (size_t i = 0; i < n; i++) {
                if (unreserved(s[i])) {
                        sw_ch(w, (char)s[i]);
                } else {
                        char x[3] = { '%', HEX[s[i] >> 4], HEX[s[i] & 15] };
                        sw_put(w, x, 3);
                }
        }
}

/* ---- Authorization header ---- */

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int header_name_char(char c)
{
        return (c >= 'a' && c <= 'z') || is_digit(c) || c == '-' || c == '_' || c == '.';
}

/* Credential=<akid>/<date>/<region>/<service>/aws4_request */
KW_MUST_USE static kw_result parse_credential(const char *v, size_t n, struct kw_sigv4_auth *a)
{
        const char *part[5] = { NULL, NULL, NULL, NULL, NULL };
        size_t plen[5] = { 0, 0, 0, 0, 0 }, np = 0;
        size_t start = 0;
        for (size_t i = 0; i <= n; i++) {
                if (i == n || v[i] == '/') {
                        if (np == 5) {
                                kw_err_set_detail("Credential has too many parts");
                                KW_BAIL(KW_ERR_AUTH);
                        }
                        part[np] = v + start;
                        plen[np++] = i - start;
                        start = i + 1;
                }
        }
        if (np != 5) {
                kw_err_set_detail("Credential is <key id>/<date>/<region>/<service>/aws4_request");
                KW_BAIL(KW_ERR_AUTH);
        }
        if (plen[0] == 0 || plen[0] > KW_SIGV4_MAX_AKID) {
                kw_err_set_detail("bad access key id");
                KW_BAIL(KW_ERR_AUTH);
        }
        for (size_t i = 0; i < plen[0]; i++) {
                char c = part[0][i];
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c))) {
                        kw_err_set_detail("bad access key id");
                        KW_BAIL(KW_ERR_AUTH);
                }
        }
        int date_ok = plen[1] == 8;
        for (size_t i = 0; date_ok && i < 8; i++)
                date_ok = is_digit(part[1][i]);
        if (!date_ok || !kw_sigv4_scope_part_ok(part[2], plen[2]) || !kw_sigv4_scope_part_ok(part[3], plen[3]) ||
            plen[4] != 12 || memcmp(part[4], "aws4_request", 12) != 0) {
                kw_err_set_detail("bad credential scope");
                KW_BAIL(KW_ERR_AUTH);
        }
        memcpy(a->akid, part[0], plen[0]);
        a->akid[plen[0]] = '\0';
        memcpy(a->date, part[1], 8);
        a->date[8] = '\0';
        memcpy(a->region, part[2], plen[2]);
        a->region[plen[2]] = '\0';
        memcpy(a->service, part[3], plen[3]);
        a->service[plen[3]] = '\0';
        return KW_OK;
}

KW_MUST_USE static kw_result parse_signed_headers(const char *v, size_t n, struct kw_sigv4_auth *a)
{
        size_t start = 0;
        int has_host = 0, has_date = 0;
        a->n_signed = 0;
        for (size_t i = 0; i <= n; i++) {
                if (i != n && v[i] != ';')
                        continue;
                size_t len = i - start;
                const char *name = v + start;
                if (len == 0 || len > KW_SIGV4_MAX_HEADER_NAME || a->n_signed == KW_SIGV4_MAX_SIGNED) {
                        kw_err_set_detail("bad SignedHeaders");
                        KW_BAIL(KW_ERR_AUTH);
                }
                for (size_t k = 0; k < len; k++) {
                        if (!header_name_char(name[k])) {
                                kw_err_set_detail("SignedHeaders must be lower-case header names");
                                KW_BAIL(KW_ERR_AUTH);
                        }
                }
                char *dst = a->signed_headers[a->n_signed];
                memcpy(dst, name, len);
                dst[len] = '\0';
                /* header names, not secrets */
                if (a->n_signed > 0 &&
                    strcmp(a->signed_headers[a->n_signed - 1], dst) >= 0) { /* lint: allow (names) */
                        kw_err_set_detail("SignedHeaders must be sorted and unique");
                        KW_BAIL(KW_ERR_AUTH);
                }
                has_host |= strcmp(dst, "host") == 0;
                has_date |= strcmp(dst, "x-amz-date") == 0;
                a->n_signed++;
                start = i + 1;
        }
        if (!has_host || !has_date) {
                kw_err_set_detail("SignedHeaders must include host and x-amz-date");
                KW_BAIL(KW_ERR_AUTH);
        }
        return KW_OK;
}

KW_MUST_USE static kw_result parse_signature(const char *v, size_t n, struct kw_sigv4_auth *a)
{
        if (n != 64) {
                kw_err_set_detail("Signature is 64 lower-case hex digits");
                KW_BAIL(KW_ERR_AUTH);
        }
        for (size_t i = 0; i < 32; i++) {
                int hi = kw_hex_value((unsigned char)v[2 * i]), lo = kw_hex_value((unsigned char)v[2 * i + 1]);
                if (hi < 0 || lo < 0 || (v[2 * i] >= 'A' && v[2 * i] <= 'F') ||
                    (v[2 * i + 1] >= 'A' && v[2 * i + 1] <= 'F')) {
                        kw_err_set_detail("Signature is 64 lower-case hex digits");
                        KW_BAIL(KW_ERR_AUTH);
                }
                a->signature[i] = (uint8_t)(hi << 4 | lo);
        }
        return KW_OK;
}

kw_result kw_sigv4_parse_authorization(const char *hdr, struct kw_sigv4_auth *ret)
{
        static const char alg[] = KW_SIGV4_ALG;
        if (hdr == NULL) {
                kw_err_set_detail("no Authorization header");
                KW_BAIL(KW_ERR_AUTH);
        }
        size_t total = strnlen(hdr, 4097);
        if (total > 4096 || total < sizeof alg || memcmp(hdr, alg, sizeof alg - 1) != 0 ||
            (hdr[sizeof alg - 1] != ' ' && hdr[sizeof alg - 1] != '\t')) {
                kw_err_set_detail("Authorization must be " KW_SIGV4_ALG);
                KW_BAIL(KW_ERR_AUTH);
        }
        struct kw_sigv4_auth a;
        memset(&a, 0, sizeof a);
        int seen_cred = 0, seen_sh = 0, seen_sig = 0;
        size_t i = sizeof alg - 1;
        for (;;) {
                while (i < total && (hdr[i] == ' ' || hdr[i] == '\t'))
                        i++;
                if (i == total)
                        break;
                size_t start = i;
                while (i < total && hdr[i] != ',')
                        i++;
                size_t end = i;
                while (end > start && (hdr[end - 1] == ' ' || hdr[end - 1] == '\t'))
                        end--;
                const char *eq = memchr(hdr + start, '=', end - start);
                if (eq == NULL) {
                        kw_err_set_detail("malformed Authorization component");
                        KW_BAIL(KW_ERR_AUTH);
                }
                size_t klen = (size_t)(eq - (hdr + start));
                const char *v = eq + 1;
                size_t vlen = end - (size_t)(v - hdr);
                if (klen == 10 && memcmp(hdr + start, "Credential", 10) == 0 && !seen_cred) {
                        KW_TRY(parse_credential(v, vlen, &a));
                        seen_cred = 1;
                } else if (klen == 13 && memcmp(hdr + start, "SignedHeaders", 13) == 0 && !seen_sh) {
                        KW_TRY(parse_signed_headers(v, vlen, &a));
                        seen_sh = 1;
                } else if (klen == 9 && memcmp(hdr + start, "Signature", 9) == 0 && !seen_sig) {
                        KW_TRY(parse_signature(v, vlen, &a));
                        seen_sig = 1;
                } else {
                        kw_err_set_detail("unknown or repeated Authorization component");
                        KW_BAIL(KW_ERR_AUTH);
                }
                if (i == total)
                        break;
                i++; /* the ',' */
        }
        if (!seen_cred || !seen_sh || !seen_sig) {
                kw_err_set_detail("Authorization needs Credential, SignedHeaders and Signature");
                KW_BAIL(KW_ERR_AUTH);
        }
        *ret = a;
        return KW_OK;
}

/* ---- canonical request ---- */

struct seg {
        size_t off, len;
};

KW_MUST_USE static kw_result canonical_uri(struct sw *w, const char *path, int normalize)
{
        size_t n = strlen(path);
        if (n == 0) {
                sw_ch(w, '/');
                return KW_OK;
        }
        if (!normalize) {
                /* each segment encoded, '/' kept */
                size_t start = 0;
                for (size_t i = 0; i <= n; i++) {
                        if (i == n || path[i] == '/') {
                                sw_uri_encode(w, (const uint8_t *)path + start, i - start);
                                if (i != n)
                                        sw_ch(w, '/');
                                start = i + 1;
                        }
                }
                return KW_OK;
        }
        struct seg segs[SIGV4_MAX_PATH_SEGS];
        size_t ns = 0, start = 0;
        for (size_t i = 0; i <= n; i++) {
                if (i != n && path[i] != '/')
                        continue;
                size_t len = i - start;
                const char *s = path + start;
                if (len == 0 || (len == 1 && s[0] == '.')) {
                        /* empty or "." segment: dropped */
                } else if (len == 2 && s[0] == '.' && s[1] == '.') {
                        if (ns > 0)
                                ns--;
                } else {
                        KW_ENSURE(ns < SIGV4_MAX_PATH_SEGS, KW_ERR_TOO_LARGE);
                        segs[ns++] = (struct seg){ start, len };
                }
                start = i + 1;
        }
        sw_ch(w, '/');
        for (size_t k = 0; k < ns; k++) {
                if (k > 0)
                        sw_ch(w, '/');
                sw_uri_encode(w, (const uint8_t *)path + segs[k].off, segs[k].len);
        }
        if (ns > 0 && path[n - 1] == '/')
                sw_ch(w, '/');
        return KW_OK;
}

/* Decodes %XX in s[0..n) and re-encodes into w. */
KW_MUST_USE static kw_result query_component(struct sw *w, const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                uint8_t c = (uint8_t)s[i];
                if (c == '%') {
                        int hi = n - i >= 3 ? kw_hex_value((unsigned char)s[i + 1]) : -1;
                        int lo = hi < 0 ? -1 : kw_hex_value((unsigned char)s[i + 2]);
                        if (lo < 0) {
                                kw_err_set_detail("bad percent-encoding in the query");
                                KW_BAIL(KW_ERR_AUTH);
                        }
                        c = (uint8_t)(hi << 4 | lo);
                        i += 2;
                }
                sw_uri_encode(w, &c, 1);
        }
        return KW_OK;
}

struct qparam {
        size_t key_off, key_len, val_off, val_len;
};

static int qparam_cmp(const char *base, const struct qparam *a, const struct qparam *b)
{
        size_t m = a->key_len < b->key_len ? a->key_len : b->key_len;
        int c = memcmp(base + a->key_off, base + b->key_off, m);
        if (c != 0)
                return c;
        if (a->key_len != b->key_len)
                return a->key_len < b->key_len ? -1 : 1;
        m = a->val_len < b->val_len ? a->val_len : b->val_len;
        c = memcmp(base + a->val_off, base + b->val_off, m);
        if (c != 0)
                return c;
        return a->val_len == b->val_len ? 0 : (a->val_len < b->val_len ? -1 : 1);
}

KW_MUST_USE static kw_result canonical_query(struct sw *w, const char *q)
{
        if (q == NULL || q[0] == '\0')
                return KW_OK;
        char scratch[SIGV4_QUERY_SCRATCH];
        struct sw sc = { scratch, 0, sizeof scratch, 0 };
        struct qparam ps[KW_SIGV4_MAX_QUERY_PARAMS];
        size_t np = 0, n = strlen(q), start = 0;
        for (size_t i = 0; i <= n; i++) {
                if (i != n && q[i] != '&')
                        continue;
                if (i > start) {
                        KW_ENSURE(np < KW_SIGV4_MAX_QUERY_PARAMS, KW_ERR_TOO_LARGE);
                        const char *p = q + start;
                        size_t len = i - start;
                        const char *eq = memchr(p, '=', len);
                        size_t klen = eq ? (size_t)(eq - p) : len;
                        struct qparam *qp = &ps[np++];
                        qp->key_off = sc.len;
                        KW_TRY(query_component(&sc, p, klen));
                        qp->key_len = sc.len - qp->key_off;
                        qp->val_off = sc.len;
                        if (eq != NULL)
                                KW_TRY(query_component(&sc, eq + 1, len - klen - 1));
                        qp->val_len = sc.len - qp->val_off;
                }
                start = i + 1;
        }
        KW_ENSURE(!sc.overflow, KW_ERR_TOO_LARGE);
        for (size_t i = 1; i < np; i++) { /* insertion sort, n <= 64 */
                struct qparam t = ps[i];
                size_t j = i;
                while (j > 0 && qparam_cmp(scratch, &ps[j - 1], &t) > 0) {
                        ps[j] = ps[j - 1];
                        j--;
                }
                ps[j] = t;
        }
        for (size_t i = 0; i < np; i++) {
                if (i > 0)
                        sw_ch(w, '&');
                sw_put(w, scratch + ps[i].key_off, ps[i].key_len);
                sw_ch(w, '=');
                sw_put(w, scratch + ps[i].val_off, ps[i].val_len);
        }
        return KW_OK;
}

/* Trimmed value with inner runs of blanks collapsed to one space. */
static void canonical_value(struct sw *w, const char *v, size_t n)
{
        size_t a = 0, b = n;
        while (a < b && (v[a] == ' ' || v[a] == '\t'))
                a++;
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
                b--;
        int blank = 0;
        for (size_t i = a; i < b; i++) {
                if (v[i] == ' ' || v[i] == '\t') {
                        blank = 1;
                        continue;
                }
                if (blank)
                        sw_ch(w, ' ');
                blank = 0;
                sw_ch(w, v[i]);
        }
}

static int name_is(const struct kw_sigv4_header *h, const char *lower)
{
        size_t n = strlen(lower);
        return h->name_len == n && strncasecmp(h->name, lower, n) == 0;
}

KW_MUST_USE static kw_result canonical_headers(struct sw *w, const struct kw_sigv4_request *req,
                                               const struct kw_sigv4_auth *auth)
{
        for (size_t i = 0; i < auth->n_signed; i++) {
                const char *name = auth->signed_headers[i];
                sw_str(w, name);
                sw_ch(w, ':');
                int found = 0;
                for (size_t k = 0; k < req->n_headers; k++) {
                        const struct kw_sigv4_header *h = &req->headers[k];
                        if (!name_is(h, name))
                                continue;
                        if (found)
                                sw_ch(w, ',');
                        canonical_value(w, h->value, h->value_len);
                        found = 1;
                }
                if (!found) {
                        kw_err_set_detail("signed header %s is absent", name);
                        KW_BAIL(KW_ERR_AUTH);
                }
                sw_ch(w, '\n');
        }
        return KW_OK;
}

kw_result kw_sigv4_canonical_request(const struct kw_sigv4_request *req,
                                     const struct kw_sigv4_auth *auth, char *out, size_t outsz,
                                     size_t *ret_len)
{
        KW_ENSURE(req != NULL && auth != NULL && out != NULL && outsz > 0, KW_ERR_INTERNAL);
        struct sw w = { out, 0, outsz, 0 };
        out[0] = '\0';
        sw_str(&w, req->method);
        sw_ch(&w, '\n');
        KW_TRY(canonical_uri(&w, req->path, req->normalize_path));
        sw_ch(&w, '\n');
        KW_TRY(canonical_query(&w, req->query));
        sw_ch(&w, '\n');
        KW_TRY(canonical_headers(&w, req, auth));
        sw_ch(&w, '\n');
        for (size_t i = 0; i < auth->n_signed; i++) {
                if (i > 0)
                        sw_ch(&w, ';');
                sw_str(&w, auth->signed_headers[i]);
        }
        sw_ch(&w, '\n');
        uint8_t h[32];
        KW_TRY(sha256(req->body, req->body_len, h));
        sw_hex(&w, h, sizeof h);
        if (w.overflow) {
                out[0] = '\0';
                kw_err_set_detail("canonical request too large");
                KW_BAIL(KW_ERR_TOO_LARGE);
        }
        *ret_len = w.len;
        return KW_OK;
}

kw_result kw_sigv4_string_to_sign(const struct kw_sigv4_request *req,
                                  const struct kw_sigv4_auth *auth, struct kw_sigv4_signed *ret)
{
        const struct kw_sigv4_header *date = NULL;
        for (size_t k = 0; k < req->n_headers; k++) {
                if (!name_is(&req->headers[k], "x-amz-date"))
                        continue;
                if (date != NULL) {
                        kw_err_set_detail("X-Amz-Date given twice");
                        KW_BAIL(KW_ERR_AUTH);
                }
                date = &req->headers[k];
        }
        if (date == NULL) {
                kw_err_set_detail("no X-Amz-Date header");
                KW_BAIL(KW_ERR_AUTH);
        }
        time_t when = kw_sigv4_parse_amz_date(date->value, date->value_len);
        if (when < 0 || memcmp(date->value, auth->date, 8) != 0) {
                kw_err_set_detail("X-Amz-Date is not yyyymmddThhmmssZ of the credential's day");
                KW_BAIL(KW_ERR_AUTH);
        }
        size_t clen = 0;
        KW_TRY(kw_sigv4_canonical_request(req, auth, ret->creq, sizeof ret->creq, &clen));
        uint8_t h[32];
        KW_TRY(sha256(ret->creq, clen, h));
        struct sw w = { ret->sts, 0, sizeof ret->sts, 0 };
        sw_str(&w, KW_SIGV4_ALG "\n");
        sw_put(&w, date->value, 16);
        sw_ch(&w, '\n');
        sw_str(&w, auth->date);
        sw_ch(&w, '/');
        sw_str(&w, auth->region);
        sw_ch(&w, '/');
        sw_str(&w, auth->service);
        sw_str(&w, "/aws4_request\n");
        sw_hex(&w, h, sizeof h);
        KW_ENSURE(!w.overflow, KW_ERR_TOO_LARGE);
        ret->creq_len = clen;
        ret->sts_len = w.len;
        ret->when = when;
        return KW_OK;
}

