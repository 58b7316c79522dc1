/*
 * route_xks.c - the AWS KMS External Key Store proxy API v1 (docs/xks.md),
 * network side.
 *
 * One request, in the order the XKS specification fixes:
 *   1. route: "<prefix>/kms/xks/v1/health" or ".../keys/<id>/{metadata,
 *      encrypt,decrypt}" for a known store prefix -> 404
 *      InvalidUriPathException (before any credential check); not POST ->
 *      405; a client address whose unauthenticated requests used up its own
 *      budget -> 429; per-store client certificate subjects (when
 *      configured) -> 401.
 *   2. SigV4, front half: parse Authorization, apply the XKS policy
 *      (service, the store's region, +-5 min) and build the canonical
 *      request and string to sign (sigv4.c) -> 401.
 *   3. One custody call (KW_OP_XKS) with what was signed and the body as
 *      received.  The custody process verifies the signature and that it
 *      covers exactly this body and path, charges the store's rate budget
 *      (429 only for authenticated requests), parses the body and runs the
 *      operation (xks_request.c): 400 body, 404 key, 400 state, 403 rules,
 *      400 usage, 400 InvalidCiphertextException.  It answers the XKS
 *      response body, which is sent as it is.
 * Every failure is {"errorName","errorMessage"} from xks_error_of(), the one
 * kw_err -> XKS table; the custody detail (e.g. "denied by rule
 * xks.principals") goes to the log line only.
 *
 * This process never decodes an XKS body: plaintexts and ciphertexts pass
 * through it as the TLS records and the custody frames carry them.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../common/json_io.h"
#include "../common/log.h"
#include "../common/proto.h"
#include "../common/ratelimit.h"
#include "../common/secret.h"
#include "front.h"
#include "route_xks.h"
#include "sigv4.h"

#define XKS_ROOT "/kms/xks/"
#define XKS_V1 "/kms/xks/v1"
#define XKS_MAX_STORES 64
#define XKS_PATH_PREFIX_MAX 128       /* up to and including /kms/xks/v1  */
#define XKS_URI_MAX 256
#define XKS_KEY_ID_MAX 128
#define XKS_BODY_MAX (512u * 1024u)   /* KW_T_BODY: beyond -> 501 (values we do not support) */
#define XKS_MAX_HEADERS 64
#define XKS_REFRESH_MS 30000
#define XKS_MISS_REFRESH_MS 1000
#define XKS_UNAUTH_SLOTS 1024         /* client addresses tracked for failed authentication */

enum xks_op { XKS_HEALTH, XKS_METADATA, XKS_ENCRYPT, XKS_DECRYPT };
static const char *const xks_op_names[] = { "health", "metadata", "encrypt", "decrypt" };

/* ---- the routing table: which URI prefix is which store ----
 * (the custody process's list, configured + created through the admin API;
 * no credential is here) */

struct xks_store {
        char name[33];
        char prefix[129];
        char region[65];
        char service[65];
        int live;
        int slot;                     /* index in X.s and X.shed                    */
};

static struct {
        const struct kw_config *cfg;
        pthread_rwlock_t mu;
        struct xks_store s[XKS_MAX_STORES];
        size_t n;
        int stale;                    /* reload at the next request                 */
        int64_t loaded_ms;
        /* Load shedding, one per slot: a copy of the store's rate budget
         * ([aws_xks_config] aws_xks_rate_limit, charged in custody) that
         * this process charges only with the requests custody answered past
         * the signature check, so an outsider cannot drain it (finding 6 of
         * issue 10).  When it is empty the request is answered 429 here,
         * without the signature work and the custody round trip: a store
         * over its budget costs the front a TLS read and write. */
        struct kw_ratelimit shed[XKS_MAX_STORES];
        uint64_t shed_total;          /* atomic: 429s answered by this shedding     */
} X = { .mu = PTHREAD_RWLOCK_INITIALIZER };

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
        for (size_t i = 0; i < XKS_MAX_STORES; i++)
                kw_ratelimit_init(&X.shed[i], (uint64_t)cfg->xks.aws_xks_rate_limit, 0);
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

/* ---- unauthenticated traffic: a budget per client address ----
 * Requests that fail authentication are charged to their client address,
 * never to a key store (whose budget custody charges after the signature
 * verified): an outsider who knows a URI prefix throttles only itself. */

struct unauth_slot {
        char addr[48];
        struct kw_ratelimit rl;
        int64_t blocked_until_ms;
        uint64_t used;
};

static struct {
        pthread_mutex_t mu;
        struct unauth_slot s[XKS_UNAUTH_SLOTS];
        uint64_t tick;
} U = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* 1 when addr has used up its budget of failed requests (and *ret_retry,
 * seconds, is when to come back). */
static int unauth_blocked(const char *addr, unsigned *ret_retry)
{
        int64_t now = mono_ms();
        int blocked = 0;
        pthread_mutex_lock(&U.mu);
        for (size_t i = 0; i < XKS_UNAUTH_SLOTS; i++) {
                if (U.s[i].addr[0] != '\0' && strcmp(U.s[i].addr, addr) == 0) {
                        if (U.s[i].blocked_until_ms > now) {
                                blocked = 1;
                                *ret_retry = (unsigned)((U.s[i].blocked_until_ms - now + 999) / 1000);
                        }
                        break;
                }
        }
        pthread_mutex_unlock(&U.mu);
        return blocked;
}

/* Charges one failed request to addr (the least recently charged address
 * gives up its slot when the table is full). */
static void unauth_charge(const char *addr)
{
        uint64_t rate = X.cfg ? (uint64_t)X.cfg->xks.aws_xks_unauthenticated_rate_limit : 0;
        if (rate == 0)
                return;
        pthread_mutex_lock(&U.mu);
        struct unauth_slot *slot = NULL, *victim = &U.s[0];
        for (size_t i = 0; i < XKS_UNAUTH_SLOTS && slot == NULL; i++) {
                if (strcmp(U.s[i].addr, addr) == 0 && addr[0] != '\0')
                        slot = &U.s[i];
                else if (U.s[i].used < victim->used)
                        victim = &U.s[i];
        }
        if (slot == NULL) {
                slot = victim;
                memset(slot, 0, sizeof *slot);
                snprintf(slot->addr, sizeof slot->addr, "%s", addr);
                kw_ratelimit_init(&slot->rl, rate, 2 * rate);
        }
        slot->used = ++U.tick;
        unsigned retry = 1;
        if (!kw_ratelimit_take(&slot->rl, &retry))
                slot->blocked_until_ms = mono_ms() + 1000 * (int64_t)retry;
        pthread_mutex_unlock(&U.mu);
}

void kw_xks_stores_changed(void)
{
        __atomic_store_n(&X.stale, 1, __ATOMIC_RELEASE);
}

/* Replaces the table with the custody's list (stores from the file and from
 * the database).  Failures keep the current table. */
static void stores_reload(struct kw_front *front)
{
        struct kw_cc_call c;
        kw_cc_begin(front->cc, KW_OP_XKS_STORES, KW_CALLER_PUBLIC, &c);
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

/* The live store whose prefix is exactly prefix[0..n); copied to *ret. */
static int store_lookup(const char *prefix, size_t n, struct xks_store *ret)
{
        int found = 0;
        pthread_rwlock_rdlock(&X.mu);
        for (size_t i = 0; i < X.n && !found; i++) {
                const struct xks_store *s = &X.s[i];
                if (s->live && strlen(s->prefix) == n && memcmp(s->prefix, prefix, n) == 0) {
                        *ret = *s;
                        ret->slot = (int)i;
                        found = 1;
                }
        }
        pthread_rwlock_unlock(&X.mu);
        return found;
}

static int route_store_find(struct kw_front *front, const char *prefix, size_t n,
                            struct xks_store *ret)
{
        int64_t now = mono_ms();
        int64_t age = now - __atomic_load_n(&X.loaded_ms, __ATOMIC_ACQUIRE);
        if (__atomic_load_n(&X.stale, __ATOMIC_ACQUIRE) || age > XKS_REFRESH_MS)
                stores_reload(front);
        if (store_lookup(prefix, n, ret))
                return 1;
        /* a store just created on another path (another front, a restart):
         * look again, at most once a second */
        if (mono_ms() - __atomic_load_n(&X.loaded_ms, __ATOMIC_ACQUIRE) >= XKS_MISS_REFRESH_MS) {
                stores_reload(front);
                return store_lookup(prefix, n, ret);
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
        struct xks_store store;
        struct kw_sigv4_auth auth;
        struct kw_sigv4_signed sig;
        char request_id[257];       /* kmsRequestId, as custody read it from the body */
        char detail[257];           /* custody detail of the failure, for the log */
        int custody_answered;       /* custody read the request and answered it    */
};

static void xks_fail(struct xks_call *x, int code)
{
        struct xks_err e = xks_error_of(code);
        struct kw_resp *resp = x->resp;
        kw_buf_reset(&resp->body);
        resp->status = e.status;
        resp->content_type = NULL;
        if (e.status == 429)
                snprintf(resp->extra_headers, sizeof resp->extra_headers, "Retry-After: 1\r\n");
        kw_result r = kw_buf_printf(&resp->body, "{\"errorName\":\"%s\",\"errorMessage\":\"%s\"}",
                                    e.name, e.msg);
        if (r.code != 0)
                kw_resp_error(resp, 500, "internal", "internal error");
        snprintf(x->req->log_error, sizeof x->req->log_error, "%s", e.name);
}

static void note_detail(struct xks_call *x, const char *detail)
{
        if (detail != NULL && detail[0] != '\0' && x->detail[0] == '\0')
                snprintf(x->detail, sizeof x->detail, "%s", detail);
}

static int key_id_char(char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
}

/* After "<prefix>/kms/xks/": "v1/health" or "v1/keys/<id>/<op>" (custody
 * routes the signed path again the same way). */
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

/* Front half of SigV4: parse, XKS policy, what is signed. */
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
        KW_TRY(kw_sigv4_string_to_sign(&rq, &x->auth, &x->sig));
        time_t now = time(NULL);
        if (x->sig.when > now + KW_SIGV4_SKEW_S || x->sig.when < now - KW_SIGV4_SKEW_S) {
                kw_err_set_detail("X-Amz-Date is more than 5 minutes off");
                KW_BAIL(KW_ERR_AUTH);
        }
        return KW_OK;
}

/* The one custody round trip: what was signed, the body as received. */
KW_MUST_USE static kw_result xks_custody(struct xks_call *x)
{
        struct kw_cc_call c;
        kw_cc_begin(x->front->cc, KW_OP_XKS, KW_CALLER_XKS, &c);
        kw_cc_put_str(&c, KW_T_XKS_STORE, x->store.name);
        kw_cc_put_str(&c, KW_T_SIGV4_AKID, x->auth.akid);
        kw_cc_put(&c, KW_T_SIGV4_STS, x->sig.sts, x->sig.sts_len);
        kw_cc_put(&c, KW_T_SIGV4_SIG, x->auth.signature, sizeof x->auth.signature);
        kw_cc_put(&c, KW_T_SIGV4_CREQ, x->sig.creq, x->sig.creq_len);
        kw_cc_put(&c, KW_T_BODY, x->req->body, x->req->body_len);
        kw_result r = kw_cc_invoke(&c);
        x->custody_answered = r.code != KW_ERR_CUSTODY_DOWN;
        struct kw_field id;
        if (kw_msg_get(&c.reply, KW_T_REQUEST_ID, &id).code == 0 && id.len < sizeof x->request_id) {
                memcpy(x->request_id, id.p, id.len);
                x->request_id[id.len] = '\0';
        }
        if (r.code != 0) {
                note_detail(x, c.detail);
        } else {
                const char *json = NULL;
                size_t len = 0;
                r = kw_cc_reply_json(&c, &json, &len);
                if (r.code == 0)
                        r = kw_buf_put(&x->resp->body, json, len);
                if (r.code == 0)
                        x->resp->status = 200;
        }
        kw_cc_end(&c);   /* wipes both frames */
        return r;
}

static void log_ids(struct xks_call *x)
{
        struct kw_req *req = x->req;
        struct kw_buf b;
        kw_buf_init(&b, sizeof req->log_ids - 1);
        kw_result r = kw_buf_printf(&b, "\"store\":\"%s\"", x->store.name);
        if (r.code == 0 && x->request_id[0] != '\0') {
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
                     route_store_find(x.front, path, plen, &x.store);
        if (!routed) {
                xks_fail(&x, KW_ERR_NO_ROUTE);
                note_detail(&x, "no such XKS path or key store prefix");
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
        const char *addr = req->remote_addr ? req->remote_addr : "";
        kw_result r = KW_OK;
        unsigned retry = 1;
        if (unauth_blocked(addr, &retry)) {
                note_detail(&x, "this client address sent too many unauthenticated requests");
                r = KW_RESULT(KW_ERR_OVERLOAD);
        } else if (!subject_ok(req, store_subjects(x.store.name))) {
                note_detail(&x, "client certificate subject not allowed");
                r = KW_RESULT(KW_ERR_AUTH);
        } else if (req->body_len > XKS_BODY_MAX) {
                note_detail(&x, "request body larger than any request this proxy supports");
                r = KW_RESULT(KW_ERR_UNSUPPORTED);
        } else if (!kw_ratelimit_peek(&X.shed[x.store.slot], NULL)) {
                note_detail(&x, "over the key store's rate limit");
                __atomic_add_fetch(&X.shed_total, 1, __ATOMIC_RELAXED);
                r = KW_RESULT(KW_ERR_OVERLOAD);
        } else {
                r = xks_sigv4(&x);
                if (r.code != 0)
                        note_detail(&x, kw_err_detail());
                else
                        r = xks_custody(&x);
                /* custody charged the store's budget (or found it empty):
                 * every answer of custody but a failed signature */
                if (x.custody_answered && r.code != KW_ERR_AUTH)
                        (void)kw_ratelimit_take(&X.shed[x.store.slot], NULL);
        }
        if (r.code != KW_ERR_AUTH)
                snprintf(req->log_principal, sizeof req->log_principal, "xks:%s:%.100s",
                         x.store.name, x.auth.akid);
        if (r.code == KW_ERR_AUTH)
                unauth_charge(addr);
        if (r.code != 0)
                xks_fail(&x, r.code);
        log_ids(&x);
        if (r.code == KW_ERR_ACCESS_DENIED || r.code == KW_ERR_AUTH)
                kw_log(KW_LOG_INFO, r.code == KW_ERR_AUTH ? "xks_auth_failed" : "xks_access_denied",
                       "store", x.store.name, "op", xks_op_names[x.op], "detail", x.detail, KW_END);
        /* the body may carry a plaintext (base64); the response one too,
         * which http.c wipes when it frees it */
        if (x.op == XKS_ENCRYPT || x.op == XKS_DECRYPT)
                kw_wipe((void *)(uintptr_t)req->body, req->body_len);
}

kw_result kw_route_xks_metrics(const char *node, struct kw_buf *out)
{
        return kw_buf_printf(out,
                             "# HELP keyward_xks_throttled_front_total XKS requests answered 429 "
                             "ThrottlingException by the front, their key store over its rate limit\n"
                             "# TYPE keyward_xks_throttled_front_total counter\n"
                             "keyward_xks_throttled_front_total{node=\"%s\"} %llu\n",
                             node, (unsigned long long)__atomic_load_n(&X.shed_total, __ATOMIC_RELAXED));
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
        xks_fail(&x, code == KW_ERR_TOO_LARGE ? KW_ERR_UNSUPPORTED : code);
}
