/* selftest.c - the appliance's self-test through its listeners (selftest.h). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "../server/common/b64.h"
#include "../server/common/log.h"
#include "../server/common/readfile.h"
#include "../server/common/secret.h"
#include "../server/common/sigv4_sts.h"
#include "../server/front/route_ekm.h"
#include "httpc.h"
#include "selftest.h"
#include "sigv4_sign.h"

#define URL_MAX 256
#define REQ_PATH_MAX 512
#define ANSWER_MAX (64u * 1024u)   /* an answer's body; the largest expected is < 1 KiB */
#define SECRET_MAX 256
#define XKS_PREFIX_MAX 116          /* config.c: "/" + 115, so that .../kms/xks/v1 <= 128 */
#define EKM_PREFIX_MAX 64
#define AKID_MAX 128
#define ID_LEN 33                   /* "selftest-" + 16 hex + NUL, with room */

void kwp_selftest_opts_default(struct kwp_selftest_opts *o)
{
        *o = (struct kwp_selftest_opts){ .timeout_ms = 5000, .attempts = 10, .backoff_ms = 250 };
}

const char *kwp_selftest_check_name(enum kwp_selftest_check c)
{
        switch (c) {
        case KWP_CHECK_NONE: return "none";
        case KWP_CHECK_OPTIONS: return "options";
        case KWP_CHECK_HEALTHZ: return "healthz";
        case KWP_CHECK_XKS: return "XKS health";
        case KWP_CHECK_EKM: return "EKM info";
        }
        return "none";
}

/* ------------------------------------------------------------ the options */

/* What one run works with, checked and derived from the options. */
struct st {
        const struct kwp_selftest_opts *o;
        char base[URL_MAX + 1];        /* https://authority, no final '/'             */
        const char *host;              /* the authority: the Host header, signed      */
        int pinned;
        uint8_t pin[32];
        uint8_t seen[32];              /* the certificate a pinned handshake met      */
        int seen_set, pin_mismatch;
        const uint8_t *secret;         /* the XKS check's, while it runs              */
        size_t secret_len;
        const char *id_name;           /* the protocol's correlation id, for the log */
        char id[ID_LEN];
};

static int in_set(char c, const char *extra)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               (c != '\0' && strchr(extra, c) != NULL);
}

static int all_in_set(const char *s, const char *extra)
{
        for (; *s != '\0'; s++)
                if (!in_set(*s, extra))
                        return 0;
        return 1;
}

/* https://HOST[:PORT][/]: host names, IPv4 and bracketed IPv6 literals. */
KW_MUST_USE static kw_result url_parse(const char *url, struct st *x)
{
        static const char scheme[] = "https://";
        size_t n = url != NULL ? strnlen(url, URL_MAX + 1) : 0;
        if (n == 0 || n > URL_MAX || strncmp(url, scheme, sizeof scheme - 1) != 0) {
                kw_err_set_detail("--url must be https://HOST[:PORT] (at most %d characters)", URL_MAX);
                KW_BAIL(KW_ERR_INPUT);
        }
        if (url[n - 1] == '/')
                n--;
        size_t a = sizeof scheme - 1;
        if (n <= a) {
                kw_err_set_detail("--url has no host");
                KW_BAIL(KW_ERR_INPUT);
        }
        for (size_t i = a; i < n; i++) {
                if (!in_set(url[i], ".-:[]")) {
                        kw_err_set_detail("--url must be https://HOST[:PORT], with nothing after the port "
                                          "(no path, query or user)");
                        KW_BAIL(KW_ERR_INPUT);
                }
        }
        memcpy(x->base, url, n);
        x->base[n] = '\0';
        x->host = x->base + a;
        return KW_OK;
}

KW_MUST_USE static kw_result pin_parse(const char *hex, uint8_t out[32])
{
        if (strlen(hex) != 64) {
                kw_err_set_detail("--pin-sha256 is the SHA-256 of the certificate (DER): 64 hex digits");
                KW_BAIL(KW_ERR_INPUT);
        }
        for (size_t i = 0; i < 32; i++) {
                int hi = kw_hex_value((unsigned char)hex[2 * i]), lo = kw_hex_value((unsigned char)hex[2 * i + 1]);
                if (hi < 0 || lo < 0) {
                        kw_err_set_detail("--pin-sha256 is 64 hex digits");
                        KW_BAIL(KW_ERR_INPUT);
                }
                out[i] = (uint8_t)(hi << 4 | lo);
        }
        return KW_OK;
}

/* The XKS options: all or none, each in the alphabet the server configures. */
KW_MUST_USE static kw_result xks_opts_check(const struct kwp_selftest_opts *o)
{
        int any_cred = o->access_key_id != NULL || o->secret_file != NULL || o->secret != NULL ||
                       o->region != NULL || o->service != NULL;
        if (o->xks_prefix == NULL) {
                if (any_cred) {
                        kw_err_set_detail("the XKS credential options go with --xks-prefix");
                        KW_BAIL(KW_ERR_INPUT);
                }
                return KW_OK;
        }
        const char *p = o->xks_prefix;
        size_t pl = strlen(p);
        if (pl > XKS_PREFIX_MAX || (pl > 0 && (p[0] != '/' || p[pl - 1] == '/')) || !all_in_set(p, "/_-")) {
                kw_err_set_detail("--xks-prefix is \"\" or starts with '/', at most %d characters of "
                                  "A-Za-z0-9/_-, not ending in '/'", XKS_PREFIX_MAX);
                KW_BAIL(KW_ERR_INPUT);
        }
        const char *akid = o->access_key_id;
        if (akid == NULL || akid[0] == '\0' || strlen(akid) > AKID_MAX || !all_in_set(akid, "")) {
                kw_err_set_detail("--xks-prefix needs --access-key-id (letters and digits)");
                KW_BAIL(KW_ERR_INPUT);
        }
        if ((o->secret_file == NULL) == (o->secret == NULL)) {
                kw_err_set_detail("--xks-prefix needs --secret-file FILE (the secret access key)");
                KW_BAIL(KW_ERR_INPUT);
        }
        const char *region = o->region ? o->region : KWP_SELFTEST_REGION;
        const char *service = o->service ? o->service : KWP_SELFTEST_SERVICE;
        if (!kw_sigv4_scope_part_ok(region, strlen(region)) || !kw_sigv4_scope_part_ok(service, strlen(service))) {
                kw_err_set_detail("--region and --service are 1 to 64 characters of A-Za-z0-9_-");
                KW_BAIL(KW_ERR_INPUT);
        }
        return KW_OK;
}

KW_MUST_USE static kw_result opts_check(const struct kwp_selftest_opts *o, struct st *x)
{
        KW_ENSURE(o != NULL, KW_ERR_INPUT);
        memset(x, 0, sizeof *x);
        x->o = o;
        KW_TRY(url_parse(o->url, x));
        int ca = o->cacert != NULL && o->cacert[0] != '\0';
        int pin = o->pin_sha256 != NULL && o->pin_sha256[0] != '\0';
        if (ca == pin) {
                kw_err_set_detail("give --cacert FILE or --pin-sha256 HEX (one of them: the server is "
                                  "always verified)");
                KW_BAIL(KW_ERR_INPUT);
        }
        if (pin)
                KW_TRY(pin_parse(o->pin_sha256, x->pin));
        x->pinned = pin;
        if (ca && access(o->cacert, R_OK) != 0) {
                kw_err_set_detail("--cacert %s: %s", o->cacert, strerror(errno));
                KW_BAIL(KW_ERR_INPUT);
        }
        KW_TRY(xks_opts_check(o));
        const char *e = o->ekm_prefix;
        if (e != NULL && (strlen(e) > EKM_PREFIX_MAX || !all_in_set(e, "/-") || e[0] == '/' ||
                          (e[0] != '\0' && e[strlen(e) - 1] == '/') || strstr(e, "//") != NULL)) {
                kw_err_set_detail("--ekm-prefix is \"\" or azure_ekm_path_prefix: at most %d characters of "
                                  "A-Za-z0-9/-, no '/' first, last or twice", EKM_PREFIX_MAX);
                KW_BAIL(KW_ERR_INPUT);
        }
        if (o->timeout_ms == 0 || o->attempts == 0) {
                kw_err_set_detail("the timeout and the number of attempts must be at least 1");
                KW_BAIL(KW_ERR_INPUT);
        }
        return KW_OK;
}

/* ------------------------------------------------------------ the secret */

/* The secret file's one line (a final newline is allowed) into the secure
 * heap: printable, no blanks (a secret access key is base64-like). */
KW_MUST_USE static kw_result secret_read(const char *path, struct kw_secret *ret)
{
        char what[PATH_MAX + 16];
        snprintf(what, sizeof what, "--secret-file %s", path);
        struct kw_secret s = { NULL, 0 };
        kw_result r = kw_read_secret_file(path, what, SECRET_MAX, &s);
        int ok = r.code == 0;
        for (size_t i = 0; ok && i < s.len; i++)
                ok = s.p[i] > 0x20 && s.p[i] < 0x7f;
        if (r.code == KW_ERR_BAD_LENGTH || (r.code == 0 && !ok)) {
                kw_secret_free(&s);
                kw_err_set_detail("%s: not one line of 1 to %d printable characters", what, SECRET_MAX);
                KW_BAIL(KW_ERR_IO);
        }
        KW_TRY(r);
        struct stat sb;
        if (stat(path, &sb) == 0 && (sb.st_mode & 077) != 0)
                kw_log(KW_LOG_WARN, "selftest_secret_file_mode", "file", path, "why",
                       "other users than its owner have access to it (mode & 077)", KW_END);
        *ret = s;
        return KW_OK;
}

/* ------------------------------------------------------------ one request */

/* Pinned: the handshake accepts exactly the certificate whose DER hashes to
 * the pin (no chain, no host name: the pin names the certificate). */
static int pin_verify(X509_STORE_CTX *xs, void *arg)
{
        struct st *x = arg;
        X509 *leaf = X509_STORE_CTX_get0_cert(xs);
        unsigned char *der = NULL;
        int n = leaf != NULL ? i2d_X509(leaf, &der) : -1;
        unsigned mdlen = 0;
        int ok = n > 0 && EVP_Digest(der, (size_t)n, x->seen, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == 32;
        OPENSSL_free(der);
        x->seen_set = ok;
        if (ok && CRYPTO_memcmp(x->seen, x->pin, 32) == 0) /* lint: allow (constant time) */
                return 1;
        x->pin_mismatch = 1;
        X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REJECTED);
        return 0;
}

static CURLcode pin_ctx(CURL *c, void *ssl_ctx, void *arg)
{
        (void)c;
        SSL_CTX_set_cert_verify_callback(ssl_ctx, pin_verify, arg);
        return CURLE_OK;
}

/* Transport failures worth another attempt while the appliance starts:
 * no listener yet, no answer in time, a connection closed or reset, a
 * handshake cut short (SSL_ERROR_SYSCALL: a front starting or restarting
 * accepts and closes).  A certificate that does not verify is
 * CURLE_PEER_FAILED_VERIFICATION, and a pin mismatch is caught before:
 * neither is retried. */
static int transient_curl(CURLcode rc)
{
        return rc == CURLE_COULDNT_CONNECT || rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_GOT_NOTHING ||
               rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR || rc == CURLE_SSL_CONNECT_ERROR;
}

static void hex32(const uint8_t b[32], char out[65])
{
        static const char hex[] = "0123456789abcdef";
        for (size_t i = 0; i < 32; i++) {
                out[2 * i] = hex[b[i] >> 4];
                out[2 * i + 1] = hex[b[i] & 15];
        }
        out[64] = '\0';
}

/* One answer, or why there is none. */
struct answer {
        long status;
        struct kw_buf body;
};

/*
 * One request to x->base + path: method GET (body NULL) or POST, headers
 * (NULL-terminated "Name: value").  KWP_PASS when an answer came (status
 * and body in *a); otherwise the verdict on the failure (KWP_RETRY for a
 * transient one) and why.
 */
static enum kwp_verdict exchange(struct st *x, const char *path, const char *const *headers, const char *body,
                                 struct answer *a, char *why, size_t whysz)
{
        char url[URL_MAX + REQ_PATH_MAX + 2];
        snprintf(url, sizeof url, "%s%s", x->base, path);
        struct curl_slist *hl = NULL;
        int ok = 1;
        for (size_t i = 0; ok && headers[i] != NULL; i++) {
                struct curl_slist *n = curl_slist_append(hl, headers[i]);
                ok = n != NULL;
                hl = ok ? n : hl;
        }
        kw_buf_reset(&a->body);
        struct kwp_http_body sink = { .buf = &a->body, .cap = ANSWER_MAX };
        CURL *c = ok ? kwp_http_new("https", x->o->timeout_ms, &sink) : NULL;
        if (c == NULL) {
                curl_slist_free_all(hl);
                snprintf(why, whysz, "out of memory");
                return KWP_FAIL;
        }
        char err[CURL_ERROR_SIZE] = "";
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);          /* the path signed is the path sent */
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
        curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
        curl_easy_setopt(c, CURLOPT_SSL_SESSIONID_CACHE, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
        if (x->pinned) {
                curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
                curl_easy_setopt(c, CURLOPT_SSL_CTX_FUNCTION, pin_ctx);
                curl_easy_setopt(c, CURLOPT_SSL_CTX_DATA, x);
                /* the pin decides; no CA file (the appliance has no system bundle,
                 * and libcurl fails on a default one that is missing) */
                curl_easy_setopt(c, CURLOPT_CAINFO, NULL);
                curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
        } else {
                curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
                curl_easy_setopt(c, CURLOPT_CAINFO, x->o->cacert);
                curl_easy_setopt(c, CURLOPT_CAPATH, NULL);    /* that file only, not the system's */
        }
        if (body != NULL) {
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        }
        x->pin_mismatch = 0;
        x->seen_set = 0;
        CURLcode rc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
        curl_slist_free_all(hl);
        curl_easy_cleanup(c);
        if (x->pinned && x->pin_mismatch) {
                char seen[65] = "none";
                if (x->seen_set)
                        hex32(x->seen, seen);
                snprintf(why, whysz, "TLS: the server's certificate is not the pinned one (its SHA-256: %s)", seen);
                return KWP_FAIL;
        }
        if (sink.too_large) {
                snprintf(why, whysz, "%ld with an answer over %u bytes", a->status, ANSWER_MAX);
                return KWP_FAIL;
        }
        if (rc != CURLE_OK) {
                int tls = rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CONNECT_ERROR ||
                          rc == CURLE_SSL_CACERT_BADFILE || rc == CURLE_SSL_CERTPROBLEM;
                /* libcurl's own message when it has one: it names the address and the cause */
                snprintf(why, whysz, "%s%s", tls ? "TLS: " : "", err[0] ? err : curl_easy_strerror(rc));
                return transient_curl(rc) ? KWP_RETRY : KWP_FAIL;
        }
        return KWP_PASS;
}

/* ------------------------------------------------------------ the checks */

static void new_id(struct st *x, const char *name)
{
        uint8_t r[8];
        x->id_name = name;
        if (RAND_bytes(r, sizeof r) != 1) {
                snprintf(x->id, sizeof x->id, "selftest-%ld-%ld", (long)getpid(), (long)time(NULL));
                return;
        }
        int n = snprintf(x->id, sizeof x->id, "selftest-");
        for (size_t i = 0; i < sizeof r && n > 0 && (size_t)n + 2 < sizeof x->id; i++)
                n += snprintf(x->id + n, sizeof x->id - (size_t)n, "%02x", r[i]);
}

typedef enum kwp_verdict (*judge_fn)(long, const uint8_t *, size_t, char *, size_t);

/* One exchange, judged. */
static enum kwp_verdict ask(struct st *x, const char *path, const char *const *headers, const char *body,
                            judge_fn judge, char *why, size_t whysz)
{
        struct answer a = { .status = 0 };
        kw_buf_init(&a.body, ANSWER_MAX);
        enum kwp_verdict v = exchange(x, path, headers, body, &a, why, whysz);
        if (v == KWP_PASS)
                v = judge(a.status, a.body.p, a.body.len, why, whysz);
        kw_buf_free(&a.body);
        return v;
}

static enum kwp_verdict healthz_once(struct st *x, char *why, size_t whysz)
{
        static const char *const h[] = { NULL };
        x->id_name = NULL;
        return ask(x, "/healthz", h, NULL, kwp_judge_healthz, why, whysz);
}

/* POST <prefix>/kms/xks/v1/health, signed now (each attempt anew: the
 * server allows 5 minutes of skew). */
static enum kwp_verdict xks_once(struct st *x, char *why, size_t whysz)
{
        const struct kwp_selftest_opts *o = x->o;
        char path[REQ_PATH_MAX], body[160], date[KWP_SIGV4_AMZ_DATE_LEN + 1];
        snprintf(path, sizeof path, "%s/kms/xks/v1/health", o->xks_prefix);
        new_id(x, "kmsRequestId");
        snprintf(body, sizeof body, "{\"requestMetadata\":{\"kmsRequestId\":\"%s\",\"kmsOperation\":\"KmsHealthCheck\"}}",
                 x->id);
        if (kwp_sigv4_amz_date(time(NULL), date).code != 0) {
                snprintf(why, whysz, "the clock is outside 1970-9999");
                return KWP_FAIL;
        }
        static const char ct[] = "application/json";
        const struct kw_sigv4_header signed_h[] = {
                { "Host", 4, x->host, strlen(x->host) },
                { "Content-Type", 12, ct, sizeof ct - 1 },
                { "X-Amz-Date", 10, date, KWP_SIGV4_AMZ_DATE_LEN },
        };
        const struct kw_sigv4_request rq = { .method = "POST", .path = path, .query = NULL, .headers = signed_h,
                                             .n_headers = sizeof signed_h / sizeof signed_h[0],
                                             .body = (const uint8_t *)body, .body_len = strlen(body),
                                             .normalize_path = 0 };
        const struct kwp_sigv4_cred cred = { .akid = o->access_key_id, .secret = x->secret,
                                             .secret_len = x->secret_len,
                                             .region = o->region ? o->region : KWP_SELFTEST_REGION,
                                             .service = o->service ? o->service : KWP_SELFTEST_SERVICE };
        char authz[KWP_SIGV4_AUTHZ_MAX];
        if (kwp_sigv4_sign(&rq, &cred, authz, sizeof authz).code != 0) {
                snprintf(why, whysz, "%s", kw_err_detail());
                return KWP_FAIL;
        }
        char h_host[URL_MAX + 8], h_date[40], h_auth[KWP_SIGV4_AUTHZ_MAX + 16];
        snprintf(h_host, sizeof h_host, "Host: %s", x->host);
        snprintf(h_date, sizeof h_date, "X-Amz-Date: %s", date);
        snprintf(h_auth, sizeof h_auth, "Authorization: %s", authz);
        const char *const h[] = { h_host, "Content-Type: application/json", h_date, h_auth, "Expect:", NULL };
        return ask(x, path, h, body, kwp_judge_xks_health, why, whysz);
}

static enum kwp_verdict ekm_once(struct st *x, char *why, size_t whysz)
{
        const char *p = x->o->ekm_prefix;
        char path[REQ_PATH_MAX], body[200];
        snprintf(path, sizeof path, KW_EKM_ROUTE_PREFIX "%s%s/info?api-version=" KW_EKM_API_VERSION,
                 p[0] ? "/" : "", p);
        new_id(x, "correlation_id");
        snprintf(body, sizeof body,
                 "{\"request_context\":{\"request_id\":\"%s\",\"correlation_id\":\"%s\","
                 "\"pool_name\":\"keyward-selftest\"}}",
                 x->id, x->id);
        static const char *const h[] = { "Content-Type: application/json", "Expect:", NULL };
        return ask(x, path, h, body, kwp_judge_ekm_info, why, whysz);
}

typedef enum kwp_verdict (*once_fn)(struct st *, char *, size_t);

/* One check, tried while the appliance is not up; every failed attempt logged. */
static enum kwp_verdict attempt(struct st *x, const char *name, once_fn once, char *why, size_t whysz)
{
        unsigned backoff = x->o->backoff_ms;
        enum kwp_verdict v = KWP_FAIL;
        unsigned i;
        for (i = 0; i < x->o->attempts; i++) {
                if (i > 0)
                        kwp_http_backoff(&backoff);
                v = once(x, why, whysz);
                if (v != KWP_RETRY)
                        return v;   /* passed, or failed for good (the caller logs it) */
                char n[12];
                snprintf(n, sizeof n, "%u", i + 1);
                /* the correlation id last: without one, its name is the sentinel */
                kw_log(KW_LOG_INFO, "selftest_attempt_failed", "check", name, "attempt", n, "why", why,
                       x->id_name, x->id, KW_END);
        }
        size_t len = strnlen(why, whysz);
        if (len + 1 < whysz)
                snprintf(why + len, whysz - len, " (after %u attempt%s)", i, i == 1 ? "" : "s");
        return KWP_FAIL;
}

/* ------------------------------------------------------------ the run */

static kw_result report_fail(struct kwp_selftest_report *rep, enum kwp_selftest_check c, int code,
                             const char *why)
{
        rep->failed = c;
        snprintf(rep->why, sizeof rep->why, "%s: %s", kwp_selftest_check_name(c), why);
        kw_err_set_detail("%s", rep->why);
        return KW_RESULT(code);
}

/* One check: tried, logged, recorded. */
static kw_result run_check(struct st *x, enum kwp_selftest_check c, once_fn once,
                           struct kwp_selftest_report *rep)
{
        char why[KWP_WHY_MAX] = "";
        const char *name = kwp_selftest_check_name(c);
        enum kwp_verdict v = attempt(x, name, once, why, sizeof why);
        if (v == KWP_FAIL) {
                kw_log(KW_LOG_ERROR, "selftest_failed", "check", name, "why", why, x->id_name, x->id, KW_END);
                return report_fail(rep, c, KW_ERR_BAD_STATE, why);
        }
        kw_log(v == KWP_WARN ? KW_LOG_WARN : KW_LOG_INFO, v == KWP_WARN ? "selftest_warning" : "selftest_passed",
               "check", name, "answer", why, x->id_name, x->id, KW_END);
        rep->passed |= 1u << c;
        if (v == KWP_WARN)
                rep->warned |= 1u << c;
        return KW_OK;
}

kw_result kwp_selftest_run(const struct kwp_selftest_opts *o, struct kwp_selftest_report *report)
{
        struct kwp_selftest_report scratch = { .failed = KWP_CHECK_NONE };
        struct kwp_selftest_report *rep = report != NULL ? report : &scratch;
        memset(rep, 0, sizeof *rep);
        struct st x;
        kw_result r = opts_check(o, &x);
        if (r.code != 0)
                return report_fail(rep, KWP_CHECK_OPTIONS, KW_ERR_INPUT, kw_err_detail());
        /* the secret file is read before anything is sent (a bad one fails
         * at once), and wiped as soon as the XKS check is over */
        _cleanup_secret_ struct kw_secret s = { NULL, 0 };
        if (o->xks_prefix != NULL && o->secret == NULL) {
                r = secret_read(o->secret_file, &s);
                if (r.code != 0)
                        return report_fail(rep, KWP_CHECK_OPTIONS, r.code, kw_err_detail());
        }
        KW_TRY(run_check(&x, KWP_CHECK_HEALTHZ, healthz_once, rep));
        if (o->xks_prefix != NULL) {
                x.secret = o->secret != NULL ? o->secret : s.p;
                x.secret_len = o->secret != NULL ? o->secret_len : s.len;
                r = run_check(&x, KWP_CHECK_XKS, xks_once, rep);
                x.secret = NULL;
                x.secret_len = 0;
                kw_secret_free(&s);   /* wipes; the cleanup handler finds it empty */
                KW_TRY(r);
        }
        if (o->ekm_prefix != NULL)
                KW_TRY(run_check(&x, KWP_CHECK_EKM, ekm_once, rep));
        kw_err_clear_detail();
        return KW_OK;
}
