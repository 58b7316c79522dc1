/*
 * route_xks.c - the AWS KMS External Key Store proxy API v1 (docs/xks.md).
 *
 * One request, in the order the XKS specification fixes:
 *   1. route: "<prefix>/kms/xks/v1/health" or ".../keys/<id>/{metadata,
 *      encrypt,decrypt}" for a known store prefix -> 404
 *      InvalidUriPathException (before any credential check); not POST ->
 *      405; per-store rate limit -> 429 ThrottlingException; per-store
 *      client certificate subjects (when configured) -> 401.
 *   2. SigV4: the front parses Authorization, applies the XKS policy
 *      (service, the store's region, +-5 min) and builds the string to sign
 *      (sigv4.c); the custody process, which alone holds the secrets,
 *      verifies it FIRST, in the same round trip as the operation -> 401.
 *   3. body: strict JSON, requestMetadata and the operation's fields -> 400
 *      ValidationException (a bad body is still authenticated first, with
 *      the auth-only custody op, so that 401 wins over 400).
 *   4-7. key lookup and store membership (404), state (400), per-key rules
 *      (403), usage (400), crypto (400 InvalidCiphertextException): all in
 *      custody, mapped here by xks_error_of(), the one kw_err -> XKS table.
 * Every failure is {"errorName","errorMessage"}; the custody detail (e.g.
 * "denied by rule xks.principals") goes to the log line only.
 *
 * Hot path: one custody round trip per valid request, no heap beyond the
 * JSON tree and the response buffer, the SigV4 canonicalisation in stack
 * buffers.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../common/b64.h"
#include "../common/log.h"
#include "../common/proto.h"
#include "../common/secret.h"
#include "../common/xks_aad.h"
#include "front.h"
#include "json_io.h"
#include "ratelimit.h"
#include "route_xks.h"
#include "sigv4.h"

#define XKS_ROOT "/kms/xks/"
#define XKS_V1 "/kms/xks/v1"
#define XKS_MAX_STORES 64
#define XKS_PATH_PREFIX_MAX 128       /* up to and including /kms/xks/v1  */
#define XKS_URI_MAX 256
#define XKS_KEY_ID_MAX 128
#define XKS_PT_MAX 32768              /* plaintext / ciphertext bytes: beyond -> 501 */
#define XKS_AAD_MAX 8192              /* AAD bytes: beyond -> 501                    */
#define XKS_MD_IN_MAX 255
#define XKS_ARN_MAX 2048
#define XKS_META_MAX 128              /* kmsOperation, kmsViaService, VPC(E)          */
#define XKS_REQ_ID_MAX 256
#define XKS_MAX_HEADERS 64
#define XKS_JSON_DEPTH 4
#define XKS_HEALTH_TTL_MS 60000       /* ACTIVE results                               */
#define XKS_HEALTH_BAD_TTL_MS 5000    /* DEGRADED / UNAVAILABLE: re-check sooner     */
#define XKS_HSM_SLOW_US 100000        /* deep check slower than this: DEGRADED       */
#define XKS_REFRESH_MS 30000
#define XKS_MISS_REFRESH_MS 1000

enum xks_op { XKS_HEALTH, XKS_METADATA, XKS_ENCRYPT, XKS_DECRYPT };
static const char *const xks_op_names[] = { "health", "metadata", "encrypt", "decrypt" };

/* ---- the store table (configured + created through the admin API) ---- */

struct xks_store {
        char name[33];
        char prefix[129];
        char region[65];
        char service[65];
        int live;
        struct kw_ratelimit rl;       /* slot is stable: the limiter survives reloads */
};

static struct {
        const struct kw_config *cfg;
        pthread_rwlock_t mu;
        struct xks_store s[XKS_MAX_STORES];
        size_t n;
        int stale;                    /* reload at the next request                 */
        int64_t loaded_ms;
        pthread_mutex_t hmu;          /* health cache                               */
        int64_t health_ms;
        int64_t health_ttl_ms;
        char health[16];
} X = { .mu = PTHREAD_RWLOCK_INITIALIZER, .hmu = PTHREAD_MUTEX_INITIALIZER };

static int64_t mono_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Adds or refreshes a row (write lock held). */
static void store_put(const char *name, const char *prefix, const char *region,
                      const char *service)
{
        struct xks_store *slot = NULL;
        for (size_t i = 0; i < X.n; i++)
                if (strcmp(X.s[i].name, name) == 0)
                        slot = &X.s[i];
        if (slot == NULL) {
                for (size_t i = 0; i < X.n && slot == NULL; i++)
                        if (!X.s[i].live && X.s[i].name[0] == '\0')
                                slot = &X.s[i];
                if (slot == NULL && X.n < XKS_MAX_STORES)
                        slot = &X.s[X.n++];
                if (slot == NULL)
                        return;
                memset(slot, 0, sizeof *slot);
                snprintf(slot->name, sizeof slot->name, "%s", name);
                kw_ratelimit_init(&slot->rl, (uint64_t)X.cfg->xks.aws_xks_rate_limit, 0);
        }
        snprintf(slot->prefix, sizeof slot->prefix, "%s", prefix);
        snprintf(slot->region, sizeof slot->region, "%s", region);
        snprintf(slot->service, sizeof slot->service, "%s", service);
        slot->live = 1;
}

kw_result kw_route_xks_setup(const struct kw_config *cfg)
{
        X.cfg = cfg;
        pthread_rwlock_wrlock(&X.mu);
        X.n = 0;
        if (cfg->xks.aws_xks_enable)
                store_put("default", cfg->xks.aws_xks_uri_prefix, cfg->xks.aws_xks_region,
                          cfg->xks.aws_xks_service);
        for (size_t i = 0; i < cfg->n_xks_stores; i++) {
                const struct kw_xks_store *s = &cfg->xks_stores[i];
                store_put(s->name, s->uri_prefix ? s->uri_prefix : "",
                          s->region ? s->region : "us-east-1",
                          s->service ? s->service : "kms-xks-proxy");
        }
        X.stale = 1;
        pthread_rwlock_unlock(&X.mu);
        for (size_t i = 0; i < cfg->n_xks_stores; i++) {
                const struct kw_xks_store *s = &cfg->xks_stores[i];
                const char *ca = s->client_ca_file, *tls_ca = cfg->tls.clients_ca_cert_file;
                if (ca != NULL && ca[0] != '\0' && (tls_ca == NULL || strcmp(ca, tls_ca) != 0)) {
                        kw_err_set_detail("[aws_xks_store.%s] client_ca_file: one TLS listener "
                                          "verifies client certificates against [tls] "
                                          "clients_ca_cert_file only; set the same file (or \"\")",
                                          s->name);
                        KW_BAIL(KW_ERR_CONFIG);
                }
                if (s->client_subjects.n != 0 && (tls_ca == NULL || tls_ca[0] == '\0')) {
                        kw_err_set_detail("[aws_xks_store.%s] client_subjects needs [tls] "
                                          "clients_ca_cert_file", s->name);
                        KW_BAIL(KW_ERR_CONFIG);
                }
        }
        return KW_OK;
}

void kw_xks_stores_changed(void)
{
        __atomic_store_n(&X.stale, 1, __ATOMIC_RELEASE);
}

void kw_xks_wipe_config_secrets(struct kw_config *cfg)
{
        char *s = cfg->xks.aws_xks_sigv4_secret_access_key;
        if (s != NULL)
                kw_wipe(s, strlen(s));
        for (size_t i = 0; i < cfg->n_xks_stores; i++) {
                char *v[2] = { cfg->xks_stores[i].secret_access_key,
                               cfg->xks_stores[i].secret_access_key_2 };
                for (int k = 0; k < 2; k++)
                        if (v[k] != NULL)
                                kw_wipe(v[k], strlen(v[k]));
        }
}

/* Replaces the table with the custody's list (stores from the file and from
 * the database).  Failures keep the current table. */
static void stores_reload(struct kw_front *front)
{
        struct kw_cc_call c;
        kw_cc_begin(front->cc, KW_OP_XKS_STORES, &c);
        kw_result r = kw_cc_invoke(&c);
        const char *json = NULL;
        size_t len = 0;
        if (r.code == 0)
                r = kw_cc_reply_json(&c, &json, &len);
        cJSON *doc = NULL;
        if (r.code == 0)
                r = kw_json_parse((const uint8_t *)json, len, 6, &doc);
        kw_cc_end(&c);
        const cJSON *arr = doc ? cJSON_GetObjectItemCaseSensitive(doc, "stores") : NULL;
        if (r.code != 0 || !cJSON_IsArray(arr)) {
                cJSON_Delete(doc);
                kw_log(KW_LOG_WARN, "xks_store_reload_failed", "error", kw_err_name(r.code), KW_END);
                return;
        }
        pthread_rwlock_wrlock(&X.mu);
        for (size_t i = 0; i < X.n; i++)
                X.s[i].live = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, arr)
        {
                const char *name = NULL, *prefix = NULL, *region = NULL, *service = NULL;
                if (kw_json_get_str(it, "name", 1, 0, 32, &name).code == 0 &&
                    kw_json_get_str(it, "uri_prefix", 1, 1, 128, &prefix).code == 0 &&
                    kw_json_get_str(it, "region", 1, 0, 64, &region).code == 0 &&
                    kw_json_get_str(it, "service", 1, 0, 64, &service).code == 0)
                        store_put(name, prefix, region, service);
        }
        for (size_t i = 0; i < X.n; i++)
                if (!X.s[i].live)
                        X.s[i].name[0] = '\0';   /* deleted: the slot may be reused */
        X.stale = 0;
        X.loaded_ms = mono_ms();
        pthread_rwlock_unlock(&X.mu);
        cJSON_Delete(doc);
}

/* The live store whose prefix is exactly prefix[0..n); copied to *ret, with
 * its rate limiter. */
static int store_lookup(const char *prefix, size_t n, struct xks_store *ret,
                        struct kw_ratelimit **ret_rl)
{
        int found = 0;
        pthread_rwlock_rdlock(&X.mu);
        for (size_t i = 0; i < X.n && !found; i++) {
                const struct xks_store *s = &X.s[i];
                if (s->live && strlen(s->prefix) == n && memcmp(s->prefix, prefix, n) == 0) {
                        *ret = *s;
                        *ret_rl = &X.s[i].rl;
                        found = 1;
                }
        }
        pthread_rwlock_unlock(&X.mu);
        return found;
}

static int store_find(struct kw_front *front, const char *prefix, size_t n, struct xks_store *ret,
                      struct kw_ratelimit **ret_rl)
{
        int64_t now = mono_ms();
        int64_t age = now - __atomic_load_n(&X.loaded_ms, __ATOMIC_ACQUIRE);
        if (__atomic_load_n(&X.stale, __ATOMIC_ACQUIRE) || age > XKS_REFRESH_MS)
                stores_reload(front);
        if (store_lookup(prefix, n, ret, ret_rl))
                return 1;
        /* a store just created on another path (another front, a restart):
         * look again, at most once a second */
        if (mono_ms() - __atomic_load_n(&X.loaded_ms, __ATOMIC_ACQUIRE) >= XKS_MISS_REFRESH_MS) {
                stores_reload(front);
                return store_lookup(prefix, n, ret, ret_rl);
        }
        return 0;
}

/* ---- errors: the one kw_err -> XKS mapping ---- */

struct xks_err {
        int status;
        const char *name;
        const char *msg;
};

static struct xks_err xks_error_of(int code)
{
        switch (code) {
        case KW_ERR_NO_ROUTE:
                return (struct xks_err){ 404, "InvalidUriPathException", "the URI path is not valid" };
        case KW_ERR_AUTH:
                return (struct xks_err){ 401, "AuthenticationFailedException",
                                         "the request could not be authenticated" };
        case KW_ERR_FORBIDDEN:
        case KW_ERR_ACCESS_DENIED:
                return (struct xks_err){ 403, "AccessDeniedException",
                                         "the operation is not authorized for this request" };
        case KW_ERR_NOT_FOUND:
                return (struct xks_err){ 404, "KeyNotFoundException", "the external key is not found" };
        case KW_ERR_KEY_DISABLED:
        case KW_ERR_KEY_PENDING_DELETION:
        case KW_ERR_KEY_DESTROYED:
        case KW_ERR_BAD_STATE:
                return (struct xks_err){ 400, "InvalidStateException",
                                         "the external key is not enabled" };
        case KW_ERR_OP_NOT_ALLOWED:
                return (struct xks_err){ 400, "InvalidKeyUsageException",
                                         "the external key does not support this operation" };
        case KW_ERR_DECRYPT:
                return (struct xks_err){ 400, "InvalidCiphertextException",
                                         "the ciphertext, metadata or additional authenticated "
                                         "data is corrupted, missing, or otherwise invalid" };
        case KW_ERR_OVERLOAD:
                return (struct xks_err){ 429, "ThrottlingException", "the request rate is too high" };
        case KW_ERR_UNSUPPORTED:
        case KW_ERR_UNSUPPORTED_ALG:
                return (struct xks_err){ 501, "UnsupportedOperationException",
                                         "a value exceeds what this proxy supports" };
        case KW_ERR_HSM_TIMEOUT:
        case KW_ERR_HSM_UNAVAILABLE:   /* unreachable HSM: retryable, like a slow one */
        case KW_ERR_CUSTODY_DOWN:
        case KW_ERR_SEALED:
                return (struct xks_err){ 503, "DependencyTimeoutException",
                                         "the key manager did not answer in time" };
        default:
                if (code <= -100 && code > -200)
                        return (struct xks_err){ 400, "ValidationException",
                                                 "the request is not valid" };
                return (struct xks_err){ 500, "InternalException", "internal error" };
        }
}

/* ---- one request ---- */

struct xks_call {
        struct kw_req *req;
        struct kw_resp *resp;
        struct kw_front *front;
        enum xks_op op;
        char key_id[XKS_KEY_ID_MAX + 1];
        struct xks_store store;
        struct kw_ratelimit *rl;
        /* SigV4 */
        struct kw_sigv4_auth auth;
        char sts[KW_SIGV4_STS_MAX];
        size_t sts_len;
        /* requestMetadata (pointers into the JSON tree) */
        const char *principal, *key_arn, *operation, *request_id, *vpc, *vpce, *via;
        /* custody detail of the failure, for the log */
        char detail[257];
};

static void xks_fail(struct xks_call *x, int code, const char *detail)
{
        struct xks_err e = xks_error_of(code);
        struct kw_resp *resp = x->resp;
        kw_buf_reset(&resp->body);
        resp->status = e.status;
        resp->content_type = NULL;
        if (e.status == 429)
                snprintf(resp->extra_headers, sizeof resp->extra_headers, "Retry-After: 1\r\n");
        else if (e.status == 405)
                snprintf(resp->extra_headers, sizeof resp->extra_headers, "Allow: POST\r\n");
        kw_result r = kw_buf_printf(&resp->body, "{\"errorName\":\"%s\",\"errorMessage\":\"%s\"}",
                                    e.name, e.msg);
        if (r.code != 0)
                kw_resp_error(resp, 500, "internal", "internal error");
        snprintf(x->req->log_error, sizeof x->req->log_error, "%s", e.name);
        if (detail != NULL && detail[0] != '\0' && x->detail[0] == '\0')
                snprintf(x->detail, sizeof x->detail, "%s", detail);
}

static int key_id_char(char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
}

/* After "<prefix>/kms/xks/": "v1/health" or "v1/keys/<id>/<op>". */
static int parse_rest(const char *rest, struct xks_call *x)
{
        if (strncmp(rest, "v1/", 3) != 0)
                return 0;
        rest += 3;
        if (strcmp(rest, "health") == 0) {
                x->op = XKS_HEALTH;
                return 1;
        }
        if (strncmp(rest, "keys/", 5) != 0)
                return 0;
        rest += 5;
        const char *slash = strchr(rest, '/');
        size_t n = slash ? (size_t)(slash - rest) : 0;
        if (slash == NULL || n == 0 || n > XKS_KEY_ID_MAX)
                return 0;
        for (size_t i = 0; i < n; i++)
                if (!key_id_char(rest[i]))
                        return 0;
        if ((n == 1 && rest[0] == '.') || (n == 2 && rest[0] == '.' && rest[1] == '.'))
                return 0;
        memcpy(x->key_id, rest, n);
        x->key_id[n] = '\0';
        const char *op = slash + 1;
        if (strcmp(op, "metadata") == 0)
                x->op = XKS_METADATA;
        else if (strcmp(op, "encrypt") == 0)
                x->op = XKS_ENCRYPT;
        else if (strcmp(op, "decrypt") == 0)
                x->op = XKS_DECRYPT;
        else
                return 0;
        return 1;
}

static int prefix_chars_ok(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '/' || c == '_' || c == '-'))
                        return 0;
        }
        return 1;
}

/* The client-certificate subjects of a configured store, when any. */
static const struct kw_strlist *store_subjects(const char *name)
{
        for (size_t i = 0; i < X.cfg->n_xks_stores; i++)
                if (strcmp(X.cfg->xks_stores[i].name, name) == 0)
                        return &X.cfg->xks_stores[i].client_subjects;
        return NULL;
}

static int subject_ok(const struct kw_req *req, const struct kw_strlist *subjects)
{
        if (subjects == NULL || subjects->n == 0)
                return 1;
        if (!req->client_cert_verified || req->client_cn[0] == '\0')
                return 0;
        for (size_t i = 0; i < subjects->n; i++) {
                const char *s = subjects->v[i];
                if (strncmp(s, "CN=", 3) == 0)
                        s += 3;
                if (strcmp(s, req->client_cn) == 0)
                        return 1;
        }
        return 0;
}

/* Front half of SigV4: parse, XKS policy, string to sign. */
KW_MUST_USE static kw_result xks_sigv4(struct xks_call *x)
{
        struct kw_req *req = x->req;
        KW_TRY(kw_sigv4_parse_authorization(kw_req_header(req, "Authorization"), &x->auth));
        if (strcmp(x->auth.service, x->store.service) != 0 ||
            strcmp(x->auth.region, x->store.region) != 0) {
                kw_err_set_detail("credential scope must name region %s and service %s",
                                  x->store.region, x->store.service);
                KW_BAIL(KW_ERR_AUTH);
        }
        struct kw_sigv4_header h[XKS_MAX_HEADERS];
        size_t nh = 0;
        const char *name, *value;
        for (int i = 0; kw_req_header_at(req, i, &name, &value) == 0; i++) {
                if (nh == XKS_MAX_HEADERS) {
                        kw_err_set_detail("too many headers");
                        KW_BAIL(KW_ERR_AUTH);
                }
                h[nh++] = (struct kw_sigv4_header){ name, strlen(name), value, strlen(value) };
        }
        struct kw_sigv4_request rq = { .method = req->method, .path = req->path, .query = NULL,
                                       .headers = h, .n_headers = nh, .body = req->body,
                                       .body_len = req->body_len, .normalize_path = 0 };
        time_t when = 0;
        KW_TRY(kw_sigv4_string_to_sign(&rq, &x->auth, x->sts, sizeof x->sts, &x->sts_len, &when));
        time_t now = time(NULL);
        if (when > now + KW_SIGV4_SKEW_S || when < now - KW_SIGV4_SKEW_S) {
                kw_err_set_detail("X-Amz-Date is more than 5 minutes off");
                KW_BAIL(KW_ERR_AUTH);
        }
        return KW_OK;
}

static void put_sigv4(struct kw_cc_call *c, const struct xks_call *x)
{
        kw_cc_put_str(c, KW_T_XKS_STORE, x->store.name);
        kw_cc_put_str(c, KW_T_SIGV4_AKID, x->auth.akid);
        kw_cc_put(c, KW_T_SIGV4_STS, x->sts, x->sts_len);
        kw_cc_put(c, KW_T_SIGV4_SIG, x->auth.signature, sizeof x->auth.signature);
}

static void put_caller(struct kw_cc_call *c, const struct xks_call *x)
{
        char actor[200];
        snprintf(actor, sizeof actor, "xks:%s:%s", x->store.name, x->auth.akid);
        kw_cc_put_u32(c, KW_T_CALLER, KW_CALLER_XKS);
        kw_cc_put_str(c, KW_T_ACTOR, actor);
        kw_cc_put_str(c, KW_T_NAME, x->key_id);
        if (x->request_id != NULL) {
                size_t n = strlen(x->request_id);
                kw_cc_put(c, KW_T_REQUEST_ID, x->request_id, n > XKS_REQ_ID_MAX ? XKS_REQ_ID_MAX : n);
        }
        if (x->principal)
                kw_cc_put_str(c, KW_T_XKS_PRINCIPAL, x->principal);
        if (x->operation)
                kw_cc_put_str(c, KW_T_XKS_OPERATION, x->operation);
        if (x->via)
                kw_cc_put_str(c, KW_T_XKS_VIA, x->via);
        if (x->vpc)
                kw_cc_put_str(c, KW_T_XKS_VPC, x->vpc);
        if (x->vpce)
                kw_cc_put_str(c, KW_T_XKS_VPCE, x->vpce);
        put_sigv4(c, x);
}

/* Invokes c; on failure keeps the custody detail for the log.  Does not end c. */
KW_MUST_USE static kw_result xks_invoke(struct xks_call *x, struct kw_cc_call *c)
{
        kw_result r = kw_cc_invoke(c);
        if (r.code != 0 && c->detail[0] != '\0')
                snprintf(x->detail, sizeof x->detail, "%s", c->detail);
        return r;
}

/* The auth-only round trip (health from the cache, bodies that do not parse). */
KW_MUST_USE static kw_result xks_auth_only(struct xks_call *x)
{
        struct kw_cc_call c;
        kw_cc_begin(x->front->cc, KW_OP_XKS_AUTH, &c);
        put_sigv4(&c, x);
        kw_result r = xks_invoke(x, &c);
        kw_cc_end(&c);
        return r;
}

/* ---- body ---- */

KW_MUST_USE static kw_result get_meta(struct xks_call *x, const cJSON *body)
{
        const cJSON *md = NULL;
        KW_TRY(kw_json_get_obj(body, "requestMetadata", 1, &md));
        int keyed = x->op != XKS_HEALTH, crypto = x->op == XKS_ENCRYPT || x->op == XKS_DECRYPT;
        /* kmsRequestId is opaque: any length is accepted, the first 256
         * bytes are logged and audited */
        KW_TRY(kw_json_get_str(md, "kmsRequestId", 1, 1, 1u << 16, &x->request_id));
        KW_TRY(kw_json_get_str(md, "kmsOperation", 1, 1, XKS_META_MAX, &x->operation));
        KW_TRY(kw_json_get_str(md, "awsPrincipalArn", keyed, 1, XKS_ARN_MAX, &x->principal));
        KW_TRY(kw_json_get_str(md, "kmsKeyArn", crypto, 1, XKS_ARN_MAX, &x->key_arn));
        KW_TRY(kw_json_get_str(md, "kmsViaService", 0, 1, XKS_META_MAX, &x->via));
        KW_TRY(kw_json_get_str(md, "awsSourceVpc", 0, 1, XKS_META_MAX, &x->vpc));
        KW_TRY(kw_json_get_str(md, "awsSourceVpce", 0, 1, XKS_META_MAX, &x->vpce));
        return KW_OK;
}

/* Base64 member decoded into out (cap max bytes: beyond -> UNSUPPORTED). */
KW_MUST_USE static kw_result get_b64(const cJSON *body, const char *name, int required, size_t max,
                                     struct kw_buf *out, int *ret_present)
{
        const char *s = NULL;
        KW_TRY(kw_json_get_str(body, name, required, 1, 4 * ((max + 2) / 3) + 4096, &s));
        if (s == NULL) {
                *ret_present = 0;
                return KW_OK;
        }
        size_t n = strlen(s);
        size_t dl = kw_b64_decoded_len(n);
        if (dl == SIZE_MAX) {
                kw_err_set_detail("'%s' is not base64", name);
                KW_BAIL(KW_ERR_BAD_ENCODING);
        }
        /* dl counts the padding characters as data: at most 2 bytes over */
        if (dl > max + 2) {
                kw_err_set_detail("'%s' is longer than %zu bytes", name, max);
                KW_BAIL(KW_ERR_UNSUPPORTED);
        }
        struct kw_buf tmp;
        kw_buf_init(&tmp, max + 2);
        kw_result r = kw_b64_decode(s, n, &tmp);
        if (r.code == 0 && tmp.len > max) {
                kw_buf_free(&tmp);
                kw_err_set_detail("'%s' is longer than %zu bytes", name, max);
                KW_BAIL(KW_ERR_UNSUPPORTED);
        }
        if (r.code == 0)
                r = kw_buf_put(out, tmp.p ? tmp.p : (const uint8_t *)"", tmp.len);
        kw_buf_free(&tmp);
        if (r.code != 0) {
                kw_err_set_detail("'%s' is not base64", name);
                KW_BAIL(KW_ERR_BAD_ENCODING);
        }
        *ret_present = 1;
        return KW_OK;
}

KW_MUST_USE static kw_result get_alg(const cJSON *body)
{
        const char *alg = NULL;
        KW_TRY(kw_json_get_str(body, "encryptionAlgorithm", 1, 0, 64, &alg));
        if (strcmp(alg, "AES_GCM") != 0) {
                kw_err_set_detail("encryptionAlgorithm must be AES_GCM");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        return KW_OK;
}

static void json_wipe(cJSON *v)
{
        for (; v != NULL; v = v->next) {
                if (v->valuestring != NULL)
                        kw_wipe(v->valuestring, strlen(v->valuestring));
                json_wipe(v->child);
        }
}

/* ---- operations ---- */

static kw_result put_b64_member(struct kw_buf *b, const char *name, const uint8_t *p, size_t n,
                                int first)
{
        KW_TRY(kw_buf_printf(b, "%s\"%s\":\"", first ? "{" : ",", name));
        KW_TRY(kw_b64_encode(p, n, b));
        return kw_buf_put(b, "\"", 1);
}

KW_MUST_USE static kw_result xks_health(struct xks_call *x)
{
        const struct kw_config *cfg = X.cfg;
        char status[16] = "";
        int64_t now = mono_ms();
        pthread_mutex_lock(&X.hmu);
        if (X.health[0] != '\0' && now - X.health_ms < X.health_ttl_ms)
                snprintf(status, sizeof status, "%s", X.health);
        pthread_mutex_unlock(&X.hmu);
        if (status[0] != '\0') {
                KW_TRY(xks_auth_only(x));
        } else {
                /* the deep check: the custody process seals and unseals a test
                 * value through the HSM and reads the database */
                struct kw_cc_call c;
                kw_cc_begin(x->front->cc, KW_OP_HEALTH, &c);
                put_sigv4(&c, x);
                int64_t t0 = mono_ms();
                kw_result r = xks_invoke(x, &c);
                int64_t took_ms = mono_ms() - t0;
                if (r.code == KW_ERR_AUTH || r.code == KW_ERR_CUSTODY_DOWN) {
                        kw_cc_end(&c);
                        return r;   /* not authenticated / nobody to ask */
                }
                if (r.code != 0) {
                        snprintf(status, sizeof status, "UNAVAILABLE");
                } else {
                        const char *json = NULL;
                        size_t len = 0;
                        int64_t us = 0;
                        cJSON *doc = NULL;
                        if (kw_cc_reply_json(&c, &json, &len).code == 0 &&
                            kw_json_parse((const uint8_t *)json, len, 4, &doc).code == 0)
                                kw_ignore(kw_json_get_int(doc, "hsm_us", 0, 0, INT64_MAX, &us));
                        cJSON_Delete(doc);
                        int slow = us > XKS_HSM_SLOW_US || took_ms * 1000 > XKS_HSM_SLOW_US;
                        snprintf(status, sizeof status, "%s", slow ? "DEGRADED" : "ACTIVE");
                }
                kw_cc_end(&c);
                pthread_mutex_lock(&X.hmu);
                snprintf(X.health, sizeof X.health, "%s", status);
                X.health_ms = mono_ms();
                X.health_ttl_ms = strcmp(status, "ACTIVE") == 0 ? XKS_HEALTH_TTL_MS
                                                                : XKS_HEALTH_BAD_TTL_MS;
                pthread_mutex_unlock(&X.hmu);
        }
        struct kw_buf *b = &x->resp->body;
        KW_TRY(kw_buf_printf(b, "{\"xksProxyFleetSize\":%lld,\"xksProxyVendor\":\"",
                             (long long)cfg->xks.aws_xks_fleet_size));
        KW_TRY(kw_buf_put_json_escaped(b, cfg->xks.aws_xks_vendor, strlen(cfg->xks.aws_xks_vendor)));
        KW_TRY(kw_buf_put_str(b, "\",\"xksProxyModel\":\""));
        KW_TRY(kw_buf_put_json_escaped(b, cfg->xks.aws_xks_model, strlen(cfg->xks.aws_xks_model)));
        KW_TRY(kw_buf_put_str(b, "\",\"ekmVendor\":\"PKCS#11\",\"ekmFleetDetails\":[{\"id\":\""));
        KW_TRY(kw_buf_put_json_escaped(b, cfg->hsm.token_label, strlen(cfg->hsm.token_label)));
        KW_TRY(kw_buf_printf(b, "\",\"model\":\"PKCS#11 token\",\"healthStatus\":\"%s\"}]}", status));
        x->resp->status = 200;
        return KW_OK;
}

KW_MUST_USE static kw_result xks_metadata(struct xks_call *x)
{
        struct kw_cc_call c;
        kw_cc_begin(x->front->cc, KW_OP_KEY_GET, &c);
        put_caller(&c, x);
        kw_result r = xks_invoke(x, &c);
        const char *json = NULL;
        size_t len = 0;
        cJSON *doc = NULL;
        if (r.code == 0)
                r = kw_cc_reply_json(&c, &json, &len);
        if (r.code == 0)
                r = kw_json_parse((const uint8_t *)json, len, 8, &doc);
        kw_cc_end(&c);
        KW_TRY(r);
        const char *type = NULL, *state = NULL;
        int64_t size = 0;
        const cJSON *ops = NULL;
        if (kw_json_get_str(doc, "type", 1, 0, 8, &type).code != 0 ||
            kw_json_get_str(doc, "state", 1, 0, 32, &state).code != 0 ||
            kw_json_get_int(doc, "size", 1, 0, 65536, &size).code != 0 ||
            kw_json_get_strarray(doc, "operations", 1, 8, 16, &ops).code != 0) {
                cJSON_Delete(doc);
                KW_BAIL(KW_ERR_PROTOCOL);
        }
        int enc = 0, dec = 0;
        for (const cJSON *o = ops->child; o != NULL; o = o->next) {
                enc |= strcmp(o->valuestring, "encrypt") == 0;
                dec |= strcmp(o->valuestring, "decrypt") == 0;
        }
        int aes = strcmp(type, "AES") == 0 && size == 256;
        int enabled = strcmp(state, "enabled") == 0;
        cJSON_Delete(doc);
        if (!aes) {
                snprintf(x->detail, sizeof x->detail, "not an AES-256 key");
                KW_BAIL(KW_ERR_OP_NOT_ALLOWED);
        }
        struct kw_buf *b = &x->resp->body;
        KW_TRY(kw_buf_printf(b, "{\"keySpec\":\"AES_256\",\"keyUsage\":[%s%s%s],\"keyStatus\":\"%s\"}",
                             enc ? "\"ENCRYPT\"" : "", enc && dec ? "," : "",
                             dec ? "\"DECRYPT\"" : "", enabled ? "ENABLED" : "DISABLED"));
        x->resp->status = 200;
        return KW_OK;
}

KW_MUST_USE static kw_result xks_encrypt(struct xks_call *x, const struct kw_buf *pt,
                                         const struct kw_buf *aad, int cdiv)
{
        struct kw_cc_call c;
        kw_cc_begin(x->front->cc, KW_OP_ENCRYPT, &c);
        put_caller(&c, x);
        kw_cc_put(&c, KW_T_DATA, pt->p ? pt->p : (const uint8_t *)"", pt->len);
        kw_cc_put(&c, KW_T_AAD, aad->p ? aad->p : (const uint8_t *)"", aad->len);
        kw_cc_put_u32(&c, KW_T_XKS_FLAGS, KW_XKS_F_BIND | (cdiv ? KW_XKS_F_VERIFY : 0));
        kw_result r = xks_invoke(x, &c);
        struct kw_field ct = { 0 }, iv = { 0 }, tag = { 0 };
        uint32_t ver = 0;
        if (r.code == 0)
                r = kw_msg_get(&c.reply, KW_T_CT, &ct);
        if (r.code == 0)
                r = kw_msg_get(&c.reply, KW_T_IV, &iv);
        if (r.code == 0)
                r = kw_msg_get(&c.reply, KW_T_AUTH_TAG, &tag);
        if (r.code == 0)
                r = kw_msg_get_u32(&c.reply, KW_T_VERSION, &ver);
        char md[16];
        size_t mdn = r.code == 0 ? kw_xks_md_format(ver, md) : 0;
        if (r.code == 0 && (mdn == 0 || iv.len != 12 || tag.len != 16 || ct.len != pt->len))
                r = KW_RESULT(KW_ERR_PROTOCOL);
        struct kw_buf *b = &x->resp->body;
        if (r.code == 0)
                r = put_b64_member(b, "authenticationTag", tag.p, tag.len, 1);
        if (r.code == 0)
                r = put_b64_member(b, "ciphertext", ct.p, ct.len, 0);
        if (r.code == 0 && cdiv) {
                uint8_t h[32];
                r = kw_xks_cdiv(aad->p, aad->len, (const uint8_t *)md, mdn, iv.p, iv.len, ct.p,
                                ct.len, tag.p, tag.len, h);
                if (r.code == 0)
                        r = put_b64_member(b, "ciphertextDataIntegrityValue", h, 32, 0);
        }
        if (r.code == 0)
                r = put_b64_member(b, "ciphertextMetadata", (const uint8_t *)md, mdn, 0);
        if (r.code == 0)
                r = put_b64_member(b, "initializationVector", iv.p, iv.len, 0);
        if (r.code == 0)
                r = kw_buf_put(b, "}", 1);
        kw_cc_end(&c);
        KW_TRY(r);
        x->resp->status = 200;
        return KW_OK;
}

KW_MUST_USE static kw_result xks_decrypt(struct xks_call *x, const struct kw_buf *ct,
                                         const struct kw_buf *iv, const struct kw_buf *tag,
                                         const struct kw_buf *aad, const struct kw_buf *md)
{
        /* A metadata value that is not ours names no version (0): custody
         * answers KW_ERR_DECRYPT after its key checks, in the right order. */
        uint32_t ver = 0;
        if (kw_xks_md_parse(md->p, md->len, &ver).code != 0)
                ver = 0;
        struct kw_buf bound;
        kw_buf_init(&bound, XKS_AAD_MAX + 3 + XKS_MD_IN_MAX);
        kw_result r = kw_xks_aad_bind(aad->p, aad->len, md->p, md->len, &bound);
        struct kw_cc_call c;
        kw_cc_begin(x->front->cc, KW_OP_DECRYPT, &c);
        put_caller(&c, x);
        kw_cc_put(&c, KW_T_CT, ct->p ? ct->p : (const uint8_t *)"", ct->len);
        kw_cc_put(&c, KW_T_IV, iv->p, iv->len);
        kw_cc_put(&c, KW_T_AUTH_TAG, tag->p, tag->len);
        kw_cc_put_u32(&c, KW_T_VERSION, ver);
        kw_cc_put(&c, KW_T_AAD, bound.p ? bound.p : (const uint8_t *)"", bound.len);
        if (r.code == 0)
                r = xks_invoke(x, &c);
        struct kw_field pt = { 0 };
        if (r.code == 0)
                r = kw_msg_get(&c.reply, KW_T_DATA, &pt);
        struct kw_buf *b = &x->resp->body;
        if (r.code == 0)
                r = put_b64_member(b, "plaintext", pt.p, pt.len, 1);
        if (r.code == 0)
                r = kw_buf_put(b, "}", 1);
        kw_cc_end(&c);
        kw_buf_free(&bound);
        KW_TRY(r);
        x->resp->status = 200;
        return KW_OK;
}

/* Parses and validates the body, then runs the operation.  A body error is
 * answered only after the signature verified (auth-only round trip). */
KW_MUST_USE static kw_result xks_body_and_run(struct xks_call *x, cJSON **ret_doc)
{
        struct kw_req *req = x->req;
        cJSON *doc = NULL;
        struct kw_buf pt, aad, ct, iv, tag, md;
        kw_buf_init(&pt, XKS_PT_MAX);
        kw_buf_init(&aad, XKS_AAD_MAX);
        kw_buf_init(&ct, XKS_PT_MAX);
        kw_buf_init(&iv, 16);
        kw_buf_init(&tag, 16);
        kw_buf_init(&md, XKS_MD_IN_MAX);
        int has_pt = 0, has_aad = 0, has_md = 0, cdiv = 0;
        kw_result r = kw_json_parse(req->body, req->body_len, XKS_JSON_DEPTH, &doc);
        *ret_doc = doc;
        if (r.code == 0)
                r = get_meta(x, doc);
        if (r.code == 0 && x->op == XKS_ENCRYPT) {
                const char *alg = NULL;
                r = get_b64(doc, "plaintext", 1, XKS_PT_MAX, &pt, &has_pt);
                if (r.code == 0)
                        r = get_alg(doc);
                if (r.code == 0)
                        r = get_b64(doc, "additionalAuthenticatedData", 0, XKS_AAD_MAX, &aad, &has_aad);
                if (r.code == 0)
                        r = kw_json_get_str(doc, "ciphertextDataIntegrityValueAlgorithm", 0, 0, 64, &alg);
                if (r.code == 0 && alg != NULL) {
                        if (strcmp(alg, "SHA_256") != 0) {
                                kw_err_set_detail("ciphertextDataIntegrityValueAlgorithm must be SHA_256");
                                r = KW_RESULT(KW_ERR_BAD_FIELD);
                        }
                        cdiv = 1;
                }
        } else if (r.code == 0 && x->op == XKS_DECRYPT) {
                int has = 0;
                r = get_b64(doc, "ciphertext", 1, XKS_PT_MAX, &ct, &has);
                if (r.code == 0)
                        r = get_alg(doc);
                if (r.code == 0)
                        r = get_b64(doc, "initializationVector", 1, 16, &iv, &has);
                if (r.code == 0)
                        r = get_b64(doc, "authenticationTag", 1, 16, &tag, &has);
                if (r.code == KW_ERR_UNSUPPORTED)   /* an over-long IV or tag is just invalid */
                        r = KW_RESULT(KW_ERR_BAD_FIELD);
                if (r.code == 0 && (iv.len == 0 || tag.len == 0)) {
                        kw_err_set_detail("initializationVector and authenticationTag are not empty");
                        r = KW_RESULT(KW_ERR_BAD_FIELD);
                }
                if (r.code == 0)
                        r = get_b64(doc, "additionalAuthenticatedData", 0, XKS_AAD_MAX, &aad, &has_aad);
                if (r.code == 0)
                        r = get_b64(doc, "ciphertextMetadata", 0, XKS_MD_IN_MAX, &md, &has_md);
                if (r.code == KW_ERR_UNSUPPORTED && md.len == 0 && has_aad)
                        r = KW_RESULT(KW_ERR_BAD_FIELD);
        }
        if (r.code != 0) {
                /* 401 before 400: authenticate first */
                snprintf(x->detail, sizeof x->detail, "%s", kw_err_detail());
                kw_result a = xks_auth_only(x);
                if (a.code != 0)
                        r = a;
        } else if (x->op != XKS_HEALTH && strlen(x->key_id) > 64) {
                /* a valid XKS key id, longer than any key name of ours */
                r = xks_auth_only(x);
                if (r.code == 0) {
                        snprintf(x->detail, sizeof x->detail, "key ids of this proxy have at most 64 characters");
                        r = KW_RESULT(KW_ERR_NOT_FOUND);
                }
        } else if (x->op == XKS_HEALTH) {
                r = xks_health(x);
        } else if (x->op == XKS_METADATA) {
                r = xks_metadata(x);
        } else if (x->op == XKS_ENCRYPT) {
                r = xks_encrypt(x, &pt, &aad, cdiv);
        } else {
                r = xks_decrypt(x, &ct, &iv, &tag, &aad, &md);
        }
        kw_buf_free(&pt);
        kw_buf_free(&aad);
        kw_buf_free(&ct);
        kw_buf_free(&iv);
        kw_buf_free(&tag);
        kw_buf_free(&md);
        return r;
}

static void log_ids(struct xks_call *x)
{
        struct kw_req *req = x->req;
        struct kw_buf b;
        kw_buf_init(&b, sizeof req->log_ids - 1);
        kw_result r = kw_buf_printf(&b, "\"store\":\"%s\"", x->store.name);
        if (r.code == 0 && x->request_id != NULL) {
                size_t n = strnlen(x->request_id, 128);
                r = kw_buf_put_str(&b, ",\"kmsRequestId\":\"");
                if (r.code == 0)
                        r = kw_buf_put_json_escaped(&b, x->request_id, n);
                if (r.code == 0)
                        r = kw_buf_put(&b, "\"", 1);
        }
        if (r.code == 0 && x->detail[0] != '\0') {
                r = kw_buf_put_str(&b, ",\"detail\":\"");
                if (r.code == 0)
                        r = kw_buf_put_json_escaped(&b, x->detail, strnlen(x->detail, 200));
                if (r.code == 0)
                        r = kw_buf_put(&b, "\"", 1);
        }
        if (r.code == 0 && b.len < sizeof req->log_ids) {
                memcpy(req->log_ids, b.p, b.len);
                req->log_ids[b.len] = '\0';
        }
        kw_buf_free(&b);
}

void kw_route_xks(struct kw_req *req, struct kw_resp *resp, void *ctx)
{
        struct xks_call x;
        memset(&x, 0, sizeof x);
        x.req = req;
        x.resp = resp;
        x.front = ctx;
        kw_err_clear_detail();
        const char *path = req->path;
        const char *root = strstr(path, XKS_ROOT);
        if (root == NULL) {
                kw_resp_error(resp, 404, "no_route", "no such path");
                snprintf(req->log_error, sizeof req->log_error, "no_route");
                return;
        }
        snprintf(req->log_route, sizeof req->log_route, "xks");
        size_t plen = (size_t)(root - path);
        int routed = strlen(path) <= XKS_URI_MAX && plen + strlen(XKS_V1) <= XKS_PATH_PREFIX_MAX &&
                     prefix_chars_ok(path, plen) && parse_rest(root + strlen(XKS_ROOT), &x) &&
                     (req->query == NULL || req->query[0] == '\0') && X.cfg != NULL &&
                     store_find(x.front, path, plen, &x.store, &x.rl);
        if (!routed) {
                xks_fail(&x, KW_ERR_NO_ROUTE, "no such XKS path or key store prefix");
                log_ids(&x);
                return;
        }
        snprintf(req->log_route, sizeof req->log_route, "xks.%s", xks_op_names[x.op]);
        if (strcmp(req->method, "POST") != 0) {
                kw_buf_reset(&resp->body);
                resp->status = 405;
                snprintf(resp->extra_headers, sizeof resp->extra_headers, "Allow: POST\r\n");
                kw_ignore(kw_buf_put_str(&resp->body,
                                         "{\"errorName\":\"ValidationException\",\"errorMessage\":"
                                         "\"only POST is allowed\"}"));
                snprintf(req->log_error, sizeof req->log_error, "method_not_allowed");
                log_ids(&x);
                return;
        }
        cJSON *doc = NULL;
        kw_result r = KW_OK;
        unsigned retry = 0;
        if (!kw_ratelimit_take(x.rl, &retry)) {
                r = KW_RESULT(KW_ERR_OVERLOAD);
        } else if (!subject_ok(req, store_subjects(x.store.name))) {
                snprintf(x.detail, sizeof x.detail, "client certificate subject not allowed");
                r = KW_RESULT(KW_ERR_AUTH);
        } else {
                r = xks_sigv4(&x);
                if (r.code != 0)
                        snprintf(x.detail, sizeof x.detail, "%s", kw_err_detail());
                else
                        snprintf(req->log_principal, sizeof req->log_principal, "xks:%s:%.100s",
                                 x.store.name, x.auth.akid);
        }
        if (r.code == 0)
                r = xks_body_and_run(&x, &doc);
        if (r.code != 0)
                xks_fail(&x, r.code, kw_err_detail());
        log_ids(&x);
        if (r.code == KW_ERR_ACCESS_DENIED || r.code == KW_ERR_AUTH)
                kw_log(KW_LOG_INFO, r.code == KW_ERR_AUTH ? "xks_auth_failed" : "xks_access_denied",
                       "store", x.store.name, "op", xks_op_names[x.op], "detail", x.detail, KW_END);
        if (doc != NULL)
                json_wipe(doc);   /* plaintext and AAD, base64 */
        cJSON_Delete(doc);
        if (x.op == XKS_ENCRYPT || x.op == XKS_DECRYPT)
                kw_wipe((void *)(uintptr_t)req->body, req->body_len);
}

void kw_route_xks_error(struct kw_req *req, struct kw_resp *resp, int code)
{
        if (req->path == NULL || strstr(req->path, "/kms/xks/") == NULL) {
                /* the catch-all route also sees paths that are not XKS at all */
                if (code == KW_ERR_TOO_LARGE)
                        kw_resp_error(resp, 413, "too_large", "request body too large");
                return;
        }
        struct xks_call x;
        memset(&x, 0, sizeof x);
        x.req = req;
        x.resp = resp;
        resp->extra_headers[0] = '\0';
        xks_fail(&x, code == KW_ERR_TOO_LARGE ? KW_ERR_UNSUPPORTED : code, NULL);
}
