/*
 * route_ekm.c - the Azure Managed HSM EKM proxy API, 0.1-preview
 * (docs/ekm.md; our notes: /work/shared/specs/azure-ekm.md).
 *
 * One request, in this order:
 *   1. client authentication (mutual TLS: verified chain to [tls]
 *      clients_ca_cert_file, CN in azure_ekm_client_cns) -> 401.  First, so
 *      that a peer without an accepted certificate learns nothing, not even
 *      which paths or methods exist.
 *   2. method: POST only -> 405 (with Allow: POST and the EKM JSON body).
 *   3. path: /azureekm[/<prefix>]/info | /{key-name}/{metadata|wrapkey|
 *      unwrapkey} -> 400 InvalidRequest for anything else (see ekm_path_parse).
 *   4. ?api-version=0.1-preview -> 400 UnsupportedApiVersion.
 *   5. rate limit (azure_ekm_rate_limit) -> 429 with Retry-After.
 *   6. Content-Type, strict JSON body, request_context (logged), alg, value.
 *   7. at most one custody call (none for info), then {"value"} / metadata.
 * Every failure goes through ekm_error_of(), the one kw_err -> EKM mapping,
 * and is written as {"code","message"} by ekm_fail().
 *
 * No oracle on unwrap: every failure of the value itself (bad base64url,
 * wrong length, integrity check, OAEP decoding) answers the same status,
 * code and message (EKM_MSG_UNWRAP).  A key the caller may not see (a
 * per-key rule ekm.client_cns denied it) answers exactly like a key that
 * does not exist; the rule that denied is logged, never sent.
 *
 * Key material: the front sees the data keys Azure wraps and unwraps (the
 * protocol carries them); every copy (request body, JSON tree, decoded
 * value, custody frames, response body) is wiped before it is freed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/b64.h"
#include "../common/proto.h"
#include "../common/secret.h"
#include "front.h"
#include "../common/json_io.h"
#include "../common/ratelimit.h"
#include "route_ekm.h"

#define EKM_KEY_NAME_MAX 64
#define EKM_PREFIX_MAX 64
#define EKM_ID_MAX 128              /* request_context members, bytes        */
#define EKM_API_VERSION_MAX 32      /* decoded api-version value             */
#define EKM_VALUE_MAX_BYTES 8208    /* decoded value: 8 KiB key + KW block   */
#define EKM_VALUE_MAX_CHARS 10944   /* its base64url length (4/3, unpadded)  */
#define EKM_ALG_MAX 256            /* longer is simply an unknown alg      */
#define EKM_JSON_DEPTH 4
#define EKM_RETRY_AFTER_S 1         /* 503: the custody reconnects in ~1 s   */

/* The one message of every unwrap failure that depends on the value. */
#define EKM_MSG_UNWRAP "the value cannot be unwrapped with this key and algorithm"

enum ekm_op { EKM_OP_NONE = 0, EKM_OP_INFO, EKM_OP_METADATA, EKM_OP_WRAP, EKM_OP_UNWRAP };

static const struct {
        const char *segment;   /* last path segment */
        enum ekm_op op;
        const char *log_route;
} ekm_ops[] = {
        { "metadata", EKM_OP_METADATA, "ekm.metadata" },
        { "wrapkey", EKM_OP_WRAP, "ekm.wrapkey" },
        { "unwrapkey", EKM_OP_UNWRAP, "ekm.unwrapkey" },
};

static const struct {
        const char *name;
        uint32_t alg;
} ekm_algs[] = {
        { "A256KW", KW_ALG_A256KW },
        { "A256KWP", KW_ALG_A256KWP },
        { "RSA-OAEP-256", KW_ALG_RSA_OAEP_256 },
        { "RSA-OAEP", KW_ALG_RSA_OAEP },
};

/* A parsed request.  value points into the parsed JSON document. */
struct ekm_request {
        enum ekm_op op;
        char key[EKM_KEY_NAME_MAX + 1];
        char request_id[EKM_ID_MAX + 1];
        char correlation_id[EKM_ID_MAX + 1];
        char pool_name[EKM_ID_MAX + 1];
        uint32_t alg;
        const char *value;
        size_t value_len;
};

/* Set once by kw_route_ekm_setup, before the listener starts; read-only
 * afterwards except the rate limiter (lock-free). */
static struct {
        char prefix[EKM_PREFIX_MAX + 1];     /* "" or "a/b" */
        struct kw_ratelimit rl;
} ekm_state;

/* ---- the one kw_err -> EKM error mapping ---------------------------------- */

struct ekm_error {
        int status;
        const char *code;
        const char *message;
        int retry;          /* send Retry-After                              */
        int with_detail;    /* the thread's detail may follow the message    */
};

/*
 * The EKM error for a kw_err code of a request for op.  Decisions beyond
 * the table of the notes:
 * - KW_ERR_NO_ROUTE (a path under /azureekm that is none of the four
 *   endpoints) -> 400 InvalidRequest.  The table has no code for an unknown
 *   path, and KeyNotFound would send an operator looking for a missing key
 *   when the URL itself is wrong; "malformed request" is what it is.
 * - KW_ERR_UNSUPPORTED is only produced by the api-version check here.
 * - pending deletion -> 403 KeyDisabled: the key still exists and an admin
 *   can bring it back (cancel-deletion), which is what KeyDisabled tells
 *   Azure; destroyed -> 404 KeyNotFound.
 * - ACCESS_DENIED -> 404 KeyNotFound with the not-found message: a key the
 *   caller may not see does not exist for it.
 * - on unwrap, DECRYPT and BAD_LENGTH (also produced by the front for a
 *   value that is not base64url or too long) -> one message, no oracle.
 */
static struct ekm_error ekm_error_of(int code, enum ekm_op op)
{
        static const struct ekm_error invalid = { 400, "InvalidRequest", "invalid request", 0, 1 };
        switch (code) {
        case KW_ERR_UNSUPPORTED:
                return (struct ekm_error){ 400, "UnsupportedApiVersion",
                                           "unsupported or missing api-version; supported: "
                                           KW_EKM_API_VERSION, 0, 0 };
        case KW_ERR_UNSUPPORTED_ALG:
                return (struct ekm_error){ 400, "UnsupportedAlgorithm",
                                           "the algorithm is not supported for this key; "
                                           "A256KW, A256KWP (AES) or RSA-OAEP-256, RSA-OAEP (RSA)",
                                           0, 0 };
        case KW_ERR_DECRYPT:
        case KW_ERR_BAD_LENGTH:
                if (op == EKM_OP_UNWRAP)
                        return (struct ekm_error){ 400, "InvalidRequest", EKM_MSG_UNWRAP, 0, 0 };
                return invalid;
        case KW_ERR_NO_ROUTE:
                return (struct ekm_error){ 400, "InvalidRequest",
                                           "no such EKM endpoint: POST /azureekm[/prefix]/info or "
                                           "/{key-name}/metadata|wrapkey|unwrapkey", 0, 0 };
        case KW_ERR_AUTH:
        case KW_ERR_FORBIDDEN:
                return (struct ekm_error){ 401, "Unauthorized", "client certificate not accepted",
                                           0, 1 };
        case KW_ERR_NOT_FOUND:
        case KW_ERR_ACCESS_DENIED:
        case KW_ERR_KEY_DESTROYED:
                return (struct ekm_error){ 404, "KeyNotFound", "no such key", 0, 0 };
        case KW_ERR_KEY_DISABLED:
        case KW_ERR_KEY_PENDING_DELETION:
                return (struct ekm_error){ 403, "KeyDisabled", "the key is disabled", 0, 0 };
        case KW_ERR_OP_NOT_ALLOWED:
                return (struct ekm_error){ 403, "OperationNotAllowed",
                                           "the key does not allow this operation", 0, 0 };
        case KW_ERR_OVERLOAD:
                return (struct ekm_error){ 429, "TooManyRequests", "too many requests", 1, 0 };
        case KW_ERR_HSM_UNAVAILABLE:
        case KW_ERR_HSM_TIMEOUT:
                return (struct ekm_error){ 502, "BadGateway",
                                           "the HSM holding the master key is unreachable", 0, 0 };
        case KW_ERR_SEALED:
        case KW_ERR_CUSTODY_DOWN:
                return (struct ekm_error){ 503, "ServiceUnavailable",
                                           "the key store is not available; retry later", 1, 0 };
        default:
                if (code <= -100 && code > -200)   /* the input class */
                        return invalid;
                return (struct ekm_error){ 500, "InternalError", "internal error", 0, 0 };
        }
}

/* Appends ,"name":"value" to req->log_ids when it fits; value is escaped
 * (quotes, backslashes) and cut at control characters. */
static void ekm_log_member(struct kw_req *req, const char *name, const char *value)
{
        size_t cap = sizeof req->log_ids;
        size_t off = strnlen(req->log_ids, cap);
        int n = snprintf(req->log_ids + off, cap - off, "%s\"%s\":\"", off ? "," : "", name);
        if (n < 0 || (size_t)n >= cap - off) {
                req->log_ids[off] = '\0';
                return;
        }
        size_t o = off + (size_t)n;
        for (const char *s = value; *s != '\0' && (unsigned char)*s >= 0x20; s++) {
                int esc = *s == '"' || *s == '\\';
                if (o + (size_t)esc + 1 + 2 > cap)     /* room for the char, '"' and NUL */
                        break;
                if (esc)
                        req->log_ids[o++] = '\\';
                req->log_ids[o++] = *s;
        }
        req->log_ids[o++] = '"';
        req->log_ids[o] = '\0';
}

static void ekm_fail(struct kw_req *req, struct kw_resp *resp, int code, enum ekm_op op,
                     unsigned retry_after)
{
        struct ekm_error e = ekm_error_of(code, op);
        char msg[384];
        const char *detail = kw_err_detail();
        if (e.with_detail && detail[0] != '\0')
                snprintf(msg, sizeof msg, "%s: %s", e.message, detail);
        else
                snprintf(msg, sizeof msg, "%s", e.message);
        resp->status = e.status;
        resp->content_type = NULL;
        resp->extra_headers[0] = '\0';
        if (e.retry)
                snprintf(resp->extra_headers, sizeof resp->extra_headers, "Retry-After: %u\r\n",
                         retry_after ? retry_after : EKM_RETRY_AFTER_S);
        kw_resp_json_pair(resp, "code", e.code, "message", msg,
                          "{\"code\":\"InternalError\",\"message\":\"\"}");
        snprintf(req->log_error, sizeof req->log_error, "%s", kw_err_name(code));
}

/* ---- parsing (pure functions: unit-tested and fuzzed) ---------------------- */

int kw_ekm_key_name_valid(const char *name)
{
        size_t n = name ? strnlen(name, EKM_KEY_NAME_MAX + 1) : 0;
        if (n == 0 || n > EKM_KEY_NAME_MAX)
                return 0;
        return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

/*
 * path (as received, percent-encoding kept) -> op and key name.  prefix is
 * "" or the configured path prefix.  Not under /azureekm[/prefix]/, or no
 * endpoint there: KW_ERR_NO_ROUTE.  A key-name segment that is not
 * [A-Za-z0-9-]{1,64} (percent-encoded bytes included): KW_ERR_BAD_NAME.
 * *ret is written only on success (op and key).
 */
KW_MUST_USE static kw_result ekm_path_parse(const char *path, const char *prefix,
                                            struct ekm_request *ret)
{
        static const char base[] = KW_EKM_ROUTE_PREFIX "/";
        KW_ENSURE(path != NULL && strncmp(path, base, sizeof base - 1) == 0, KW_ERR_NO_ROUTE);
        const char *s = path + sizeof base - 1;
        size_t pl = strlen(prefix);
        if (pl != 0) {
                KW_ENSURE(strncmp(s, prefix, pl) == 0 && s[pl] == '/', KW_ERR_NO_ROUTE);
                s += pl + 1;
        }
        if (strcmp(s, "info") == 0) {
                ret->op = EKM_OP_INFO;
                ret->key[0] = '\0';
                return KW_OK;
        }
        const char *slash = strchr(s, '/');
        KW_ENSURE(slash != NULL, KW_ERR_NO_ROUTE);
        enum ekm_op op = EKM_OP_NONE;
        for (size_t i = 0; i < sizeof ekm_ops / sizeof ekm_ops[0]; i++)
                if (strcmp(slash + 1, ekm_ops[i].segment) == 0)
                        op = ekm_ops[i].op;
        KW_ENSURE(op != EKM_OP_NONE, KW_ERR_NO_ROUTE);
        size_t n = (size_t)(slash - s);
        char key[EKM_KEY_NAME_MAX + 1];
        if (n == 0 || n > EKM_KEY_NAME_MAX) {
                kw_err_set_detail("key names are 1-64 characters of A-Z a-z 0-9 -");
                KW_BAIL(KW_ERR_BAD_NAME);
        }
        memcpy(key, s, n);
        key[n] = '\0';
        if (!kw_ekm_key_name_valid(key)) {
                kw_err_set_detail("key names are 1-64 characters of A-Z a-z 0-9 -");
                KW_BAIL(KW_ERR_BAD_NAME);
        }
        ret->op = op;
        memcpy(ret->key, key, n + 1);
        return KW_OK;
}

/* Strict percent-decoding of s[0..n) into out (NUL-terminated); 0 on
 * success, -1 on a bad escape, a NUL byte or no room. */
static int ekm_pct_decode(const char *s, size_t n, char *out, size_t outsz)
{
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
                int c = (unsigned char)s[i];
                if (c == '%') {
                        int hi = i + 2 < n ? kw_hex_value((unsigned char)s[i + 1]) : -1;
                        int lo = hi < 0 ? -1 : kw_hex_value((unsigned char)s[i + 2]);
                        if (lo < 0)
                                return -1;
                        c = hi << 4 | lo;
                        i += 2;
                } else if (c == '+') {
                        c = ' ';
                }
                if (c == 0 || o + 1 >= outsz)
                        return -1;
                out[o++] = (char)c;
        }
        out[o] = '\0';
        return 0;
}

/*
 * The query must carry api-version exactly once, with a supported value:
 * KW_ERR_UNSUPPORTED otherwise (absent, repeated, unknown version).  Other
 * parameters are ignored.
 */
KW_MUST_USE static kw_result ekm_api_version_check(const char *query)
{
        static const char name[] = "api-version";
        int found = 0;
        char value[EKM_API_VERSION_MAX + 1] = "";
        for (const char *p = query; p != NULL && *p != '\0';) {
                const char *end = strchr(p, '&');
                size_t len = end ? (size_t)(end - p) : strlen(p);
                const char *eq = memchr(p, '=', len);
                size_t nlen = eq ? (size_t)(eq - p) : len;
                if (nlen == sizeof name - 1 && memcmp(p, name, nlen) == 0) {
                        size_t vlen = eq ? len - nlen - 1 : 0;
                        if (found++ || ekm_pct_decode(eq ? eq + 1 : "", vlen, value, sizeof value) != 0)
                                KW_BAIL(KW_ERR_UNSUPPORTED);
                }
                p = end ? end + 1 : p + len;
        }
        KW_ENSURE(found == 1 && strcmp(value, KW_EKM_API_VERSION) == 0, KW_ERR_UNSUPPORTED);
        return KW_OK;
}

/* request_context members: printable ASCII without '"' and '\\' (they are
 * logged as they are), at most EKM_ID_MAX bytes. */
KW_MUST_USE static kw_result ekm_get_id(const cJSON *ctx, const char *name, int required,
                                        char *out, size_t outsz)
{
        const char *v = NULL;
        KW_TRY(kw_json_get_str(ctx, name, required, !required, EKM_ID_MAX, &v));
        if (v == NULL)
                return KW_OK;
        for (const char *s = v; *s; s++) {
                if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e || *s == '"' || *s == '\\') {
                        kw_err_set_detail("request_context.%s: printable ASCII only, no '\"' or '\\'",
                                          name);
                        KW_BAIL(KW_ERR_BAD_FIELD);
                }
        }
        snprintf(out, outsz, "%s", v);
        return KW_OK;
}

/*
 * Parses the body for rq->op (already set by the path): request_context
 * (correlation_id and pool_name required, request_id optional), and for
 * wrapkey/unwrapkey alg and value.  Unknown members are ignored.  An alg
 * we do not know: KW_ERR_UNSUPPORTED_ALG.  value is checked for length
 * here (base64url decoding comes later): KW_ERR_BAD_FIELD on wrap,
 * KW_ERR_DECRYPT on unwrap (the one unwrap failure).  On success *ret_doc
 * owns the tree rq->value points into.
 */
KW_MUST_USE static kw_result ekm_body_parse(const uint8_t *body, size_t len,
                                            struct ekm_request *rq, cJSON **ret_doc)
{
        if (len == 0) {
                kw_err_set_detail("the body must be a JSON object with request_context");
                KW_BAIL(KW_ERR_MISSING_FIELD);
        }
        cJSON *doc = NULL;
        KW_TRY(kw_json_parse(body, len, EKM_JSON_DEPTH, &doc));
        const cJSON *ctx = NULL;
        const char *alg = NULL, *value = NULL;
        kw_result r = kw_json_get_obj(doc, "request_context", 1, &ctx);
        if (r.code == 0 && !cJSON_IsObject(ctx)) {
                kw_err_set_detail("request_context must be an object");
                r = KW_RESULT(KW_ERR_BAD_FIELD);
        }
        if (r.code == 0)
                r = ekm_get_id(ctx, "request_id", 0, rq->request_id, sizeof rq->request_id);
        if (r.code == 0)
                r = ekm_get_id(ctx, "correlation_id", 1, rq->correlation_id, sizeof rq->correlation_id);
        if (r.code == 0)
                r = ekm_get_id(ctx, "pool_name", 1, rq->pool_name, sizeof rq->pool_name);
        int keyop = rq->op == EKM_OP_WRAP || rq->op == EKM_OP_UNWRAP;
        if (r.code == 0 && keyop)
                r = kw_json_get_str(doc, "alg", 1, 0, EKM_ALG_MAX, &alg);
        if (r.code == 0 && keyop) {
                rq->alg = 0;
                for (size_t i = 0; i < sizeof ekm_algs / sizeof ekm_algs[0]; i++)
                        if (strcmp(alg, ekm_algs[i].name) == 0)
                                rq->alg = ekm_algs[i].alg;
                if (rq->alg == 0)
                        r = KW_RESULT(KW_ERR_UNSUPPORTED_ALG);
        }
        if (r.code == 0 && keyop) {
                r = kw_json_get_str(doc, "value", 1, 1, SIZE_MAX, &value);
                if (r.code == 0 && (value[0] == '\0' || strlen(value) > EKM_VALUE_MAX_CHARS)) {
                        kw_err_set_detail("value: 1 to %u bytes, base64url without padding",
                                          EKM_VALUE_MAX_BYTES);
                        r = KW_RESULT(rq->op == EKM_OP_UNWRAP ? KW_ERR_DECRYPT : KW_ERR_BAD_FIELD);
                }
                if (r.code == 0) {
                        rq->value = value;
                        rq->value_len = strlen(value);
                }
        }
        if (r.code != 0) {
                cJSON_Delete(doc);
                return r;
        }
        *ret_doc = doc;
        return KW_OK;
}

/* Content-Type: absent, or application/json with optional parameters. */
static int ekm_content_type_ok(const char *ct)
{
        static const char json[] = "application/json";
        if (ct == NULL)
                return 1;
        size_t n = sizeof json - 1;
        return strncasecmp(ct, json, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* ---- authentication --------------------------------------------------------- */

KW_MUST_USE static kw_result ekm_authenticate(const struct kw_config *cfg, struct kw_req *req)
{
        if (cfg->ekm.azure_ekm_disable_client_auth) {
                snprintf(req->log_principal, sizeof req->log_principal, "ekm:%.150s",
                         req->client_cn[0] ? req->client_cn : "(client auth disabled)");
                return KW_OK;
        }
        if (!req->client_cert_present) {
                kw_err_set_detail("no client certificate");
                KW_BAIL(KW_ERR_AUTH);
        }
        if (!req->client_cert_verified || req->client_cn[0] == '\0') {
                kw_err_set_detail("the certificate does not chain to the configured CA, is out of "
                                  "date, or has no usable CN");
                KW_BAIL(KW_ERR_AUTH);
        }
        const struct kw_strlist *cns = &cfg->ekm.azure_ekm_client_cns;
        int allowed = 0;
        for (size_t i = 0; i < cns->n && !allowed; i++)
                allowed = strcasecmp(cns->v[i], req->client_cn) == 0;   /* DNS names */
        if (!allowed) {
                kw_err_set_detail("the certificate's CN is not in the allowed list");
                KW_BAIL(KW_ERR_AUTH);
        }
        snprintf(req->log_principal, sizeof req->log_principal, "ekm:%.150s", req->client_cn);
        return KW_OK;
}

/* ---- handlers ------------------------------------------------------------------ */

/* A call as this EKM caller: the verified client CN is its proof (proto.h;
 * "" only when client authentication is disabled), checked again by the
 * custody process against the configuration and the key's rules. */
static void ekm_begin(struct kw_front *front, uint8_t op, const struct kw_req *req,
                      const struct ekm_request *rq, struct kw_cc_call *c)
{
        kw_cc_begin(front->cc, op, KW_CALLER_EKM, c);
        kw_cc_put_str(c, KW_T_EKM_CN, req->client_cn);
        kw_cc_put_str(c, KW_T_REQUEST_ID, rq->correlation_id);
}

/* A failed custody call: its detail goes to the log line, never to the
 * client (it may name the rule that denied). */
static void ekm_note_custody_detail(struct kw_req *req, const struct kw_cc_call *c)
{
        if (c->detail[0] != '\0')
                ekm_log_member(req, "detail", c->detail);
        kw_err_clear_detail();
}

KW_MUST_USE static kw_result ekm_info(const struct kw_config *cfg, struct kw_resp *resp)
{
        cJSON *o = cJSON_CreateObject();
        KW_ENSURE(o != NULL, KW_ERR_NOMEM);
        int ok = cJSON_AddStringToObject(o, "api_version", KW_EKM_API_VERSION) != NULL &&
                 cJSON_AddStringToObject(o, "proxy_vendor", cfg->ekm.azure_ekm_proxy_vendor) != NULL &&
                 cJSON_AddStringToObject(o, "proxy_name", cfg->ekm.azure_ekm_proxy_name) != NULL &&
                 cJSON_AddStringToObject(o, "ekm_vendor", cfg->ekm.azure_ekm_ekm_vendor) != NULL &&
                 cJSON_AddStringToObject(o, "ekm_product", cfg->ekm.azure_ekm_ekm_product) != NULL;
        kw_result r = ok ? kw_json_write(o, &resp->body) : KW_RESULT(KW_ERR_NOMEM);
        cJSON_Delete(o);
        KW_TRY(r);
        resp->status = 200;
        return KW_OK;
}

/*
 * The custody KEY_GET document -> EKM metadata.  key_ops are the key's
 * allowed operations among wrap/unwrap; none -> KW_ERR_OP_NOT_ALLOWED (the
 * key is of no use to EKM).  Written to out only as a whole.
 */
KW_MUST_USE static kw_result ekm_metadata_from_doc(const char *json, size_t len, struct kw_buf *out)
{
        cJSON *doc = NULL;
        KW_ENSURE(kw_json_parse((const uint8_t *)json, len, KW_JSON_MAX_DEPTH, &doc).code == 0,
                  KW_ERR_PROTOCOL);
        const char *type = NULL, *n = NULL, *e = NULL;
        int64_t size = 0;
        const cJSON *ops = NULL, *pk = NULL;
        kw_result r = KW_OK;
        if (kw_json_get_str(doc, "type", 1, 0, 8, &type).code != 0 ||
            kw_json_get_int(doc, "size", 1, 1, 65536, &size).code != 0 ||
            kw_json_get_strarray(doc, "operations", 1, 8, 16, &ops).code != 0)
                r = KW_RESULT(KW_ERR_PROTOCOL);
        int rsa = r.code == 0 && strcmp(type, "RSA") == 0;
        if (r.code == 0 && !rsa && !(strcmp(type, "AES") == 0 && size == 256))
                r = KW_RESULT(KW_ERR_OP_NOT_ALLOWED);    /* not an EKM-capable key */
        if (r.code == 0 && rsa &&
            (kw_json_get_obj(doc, "public_key", 1, &pk).code != 0 ||
             kw_json_get_str(pk, "n", 1, 0, 1024, &n).code != 0 ||
             kw_json_get_str(pk, "e", 1, 0, 16, &e).code != 0))
                r = KW_RESULT(KW_ERR_PROTOCOL);
        int wrap = 0, unwrap = 0;
        for (const cJSON *it = ops ? ops->child : NULL; r.code == 0 && it != NULL; it = it->next) {
                wrap |= strcmp(it->valuestring, "wrap") == 0;
                unwrap |= strcmp(it->valuestring, "unwrap") == 0;
        }
        if (r.code == 0 && !wrap && !unwrap) {
                kw_err_set_detail("the key allows neither wrap nor unwrap");
                r = KW_RESULT(KW_ERR_OP_NOT_ALLOWED);
        }
        size_t start = out->len;
        if (r.code == 0)
                r = kw_buf_printf(out, "{\"key_type\":\"%s\",\"key_size\":%lld,\"key_ops\":[%s%s%s]",
                                  rsa ? "RSA" : "oct", (long long)size, wrap ? "\"wrapKey\"" : "",
                                  wrap && unwrap ? "," : "", unwrap ? "\"unwrapKey\"" : "");
        if (r.code == 0 && rsa) {
                r = kw_buf_put_str(out, ",\"n\":\"");
                if (r.code == 0)
                        r = kw_buf_put_json_escaped(out, n, strlen(n));
                if (r.code == 0)
                        r = kw_buf_put_str(out, "\",\"e\":\"");
                if (r.code == 0)
                        r = kw_buf_put_json_escaped(out, e, strlen(e));
                if (r.code == 0)
                        r = kw_buf_put_str(out, "\"");
        }
        if (r.code == 0)
                r = kw_buf_put_str(out, "}");
        if (r.code != 0)
                out->len = start;
        cJSON_Delete(doc);
        return r;
}

KW_MUST_USE static kw_result ekm_metadata(struct kw_front *front, struct kw_req *req,
                                          const struct ekm_request *rq, struct kw_resp *resp)
{
        struct kw_cc_call c;
        ekm_begin(front, KW_OP_KEY_GET, req, rq, &c);
        kw_cc_put_str(&c, KW_T_NAME, rq->key);
        kw_result r = kw_cc_invoke(&c);
        if (r.code != 0) {
                ekm_note_custody_detail(req, &c);
                kw_cc_end(&c);
                return r;
        }
        const char *json = NULL;
        size_t len = 0;
        r = kw_cc_reply_json(&c, &json, &len);
        if (r.code == 0)
                r = ekm_metadata_from_doc(json, len, &resp->body);
        kw_cc_end(&c);
        KW_TRY(r);
        resp->status = 200;
        return KW_OK;
}

/* wrapkey / unwrapkey: decode value, one custody call, {"value":"..."}. */
KW_MUST_USE static kw_result ekm_key_op(struct kw_front *front, struct kw_req *req,
                                        const struct ekm_request *rq, struct kw_resp *resp)
{
        int unwrap = rq->op == EKM_OP_UNWRAP;
        struct kw_buf in;
        kw_buf_init(&in, EKM_VALUE_MAX_BYTES);
        kw_result r = kw_b64url_decode(rq->value, rq->value_len, &in);
        if (r.code != 0) {
                kw_buf_free(&in);
                if (unwrap)
                        KW_BAIL(KW_ERR_DECRYPT);      /* the one unwrap failure */
                kw_err_set_detail("value must be base64url without padding");
                KW_BAIL(KW_ERR_BAD_ENCODING);
        }
        struct kw_cc_call c;
        ekm_begin(front, unwrap ? KW_OP_UNWRAP : KW_OP_WRAP, req, rq, &c);
        kw_cc_put_str(&c, KW_T_NAME, rq->key);
        kw_cc_put_u32(&c, KW_T_ALG, rq->alg);
        kw_cc_put(&c, KW_T_DATA, in.p, in.len);
        kw_buf_free(&in);                     /* wipes; the frame holds the copy */
        r = kw_cc_invoke(&c);
        if (r.code != 0) {
                ekm_note_custody_detail(req, &c);
                kw_cc_end(&c);
                return r;
        }
        struct kw_field out = { 0 };
        r = kw_msg_get(&c.reply, KW_T_DATA, &out);
        if (r.code != 0)
                r = KW_RESULT(KW_ERR_PROTOCOL);
        if (r.code == 0)
                r = kw_buf_put_str(&resp->body, "{\"value\":\"");
        if (r.code == 0)
                r = kw_b64url_encode(out.p, out.len, &resp->body);
        if (r.code == 0)
                r = kw_buf_put_str(&resp->body, "\"}");
        kw_cc_end(&c);                        /* wipes both frames */
        if (r.code != 0) {
                kw_buf_reset(&resp->body);
                return r;
        }
        resp->status = 200;
        return KW_OK;
}

/* Overwrites every string of the parsed body (value is a data key). */
static void ekm_json_wipe(cJSON *v)
{
        for (; v != NULL; v = v->next) {
                if (v->valuestring != NULL)
                        kw_wipe(v->valuestring, strlen(v->valuestring));
                ekm_json_wipe(v->child);
        }
}

/* ---- the handler ------------------------------------------------------------------ */

void kw_route_ekm(struct kw_req *req, struct kw_resp *resp, void *ctx)
{
        struct kw_front *front = ctx;
        const struct kw_config *cfg = front->cfg;
        struct ekm_request rq;
        memset(&rq, 0, sizeof rq);
        cJSON *doc = NULL;
        unsigned retry_after = 0;
        kw_result r;

        kw_err_clear_detail();
        snprintf(req->log_route, sizeof req->log_route, "ekm");
        KW_TRY_GOTO(r, ekm_authenticate(cfg, req), fail);
        if (strcmp(req->method, "POST") != 0) {
                kw_err_set_detail("EKM endpoints accept POST only");
                ekm_fail(req, resp, KW_ERR_INPUT, EKM_OP_NONE, 0);
                resp->status = 405;
                snprintf(resp->extra_headers, sizeof resp->extra_headers, "Allow: POST\r\n");
                snprintf(req->log_error, sizeof req->log_error, "method_not_allowed");
                goto out;
        }
        KW_TRY_GOTO(r, ekm_path_parse(req->path, ekm_state.prefix, &rq), fail);
        snprintf(req->log_route, sizeof req->log_route, "%s",
                 rq.op == EKM_OP_INFO ? "ekm.info" : ekm_ops[rq.op - EKM_OP_METADATA].log_route);
        KW_TRY_GOTO(r, ekm_api_version_check(req->query), fail);
        if (!kw_ratelimit_take(&ekm_state.rl, &retry_after)) {
                r = KW_RESULT(KW_ERR_OVERLOAD);
                goto fail;
        }
        if (!ekm_content_type_ok(kw_req_header(req, "Content-Type"))) {
                kw_err_set_detail("send the body as Content-Type: application/json");
                r = KW_RESULT(KW_ERR_INPUT);
                goto fail;
        }
        KW_TRY_GOTO(r, ekm_body_parse(req->body, req->body_len, &rq, &doc), fail);
        if (rq.request_id[0] != '\0')
                ekm_log_member(req, "request_id", rq.request_id);
        ekm_log_member(req, "correlation_id", rq.correlation_id);
        ekm_log_member(req, "pool_name", rq.pool_name);
        switch (rq.op) {
        case EKM_OP_INFO:
                r = ekm_info(cfg, resp);
                break;
        case EKM_OP_METADATA:
                r = ekm_metadata(front, req, &rq, resp);
                break;
        default:
                r = ekm_key_op(front, req, &rq, resp);
                break;
        }
        if (r.code == 0)
                goto out;
fail:
        ekm_fail(req, resp, r.code, rq.op, retry_after);
out:
        if (doc != NULL)
                ekm_json_wipe(doc);
        cJSON_Delete(doc);
        /* http.c hands the handler its own heap copy of the body (http.h:
         * "NUL-terminated copy"); a wrapkey body carries a data key. */
        kw_wipe((void *)(uintptr_t)req->body, req->body_len);
}

/* ---- set-up and the key URL --------------------------------------------------------- */

kw_result kw_route_ekm_setup(const struct kw_config *cfg)
{
        KW_ENSURE(cfg != NULL, KW_ERR_INTERNAL);
        const char *prefix = cfg->ekm.azure_ekm_path_prefix ? cfg->ekm.azure_ekm_path_prefix : "";
        if (strlen(prefix) > EKM_PREFIX_MAX) {
                kw_err_set_detail("[azure_ekm_config] azure_ekm_path_prefix: at most %d characters",
                                  EKM_PREFIX_MAX);
                KW_BAIL(KW_ERR_CONFIG);
        }
        if (cfg->ekm.azure_ekm_client_ca_file != NULL && cfg->ekm.azure_ekm_client_ca_file[0] != '\0') {
                kw_err_set_detail("[azure_ekm_config] azure_ekm_client_ca_file is not supported: put "
                                  "the CA of the Azure client certificates in [tls] "
                                  "clients_ca_cert_file and leave azure_ekm_client_ca_file empty");
                KW_BAIL(KW_ERR_CONFIG);
        }
        if (!cfg->ekm.azure_ekm_disable_client_auth) {
                if (cfg->tls.clients_ca_cert_file == NULL || cfg->tls.clients_ca_cert_file[0] == '\0') {
                        kw_err_set_detail("[azure_ekm_config] EKM needs mutual TLS: set [tls] "
                                          "clients_ca_cert_file to the CA of the Azure client "
                                          "certificates");
                        KW_BAIL(KW_ERR_CONFIG);
                }
                if (cfg->ekm.azure_ekm_client_cns.n == 0) {
                        kw_err_set_detail("[azure_ekm_config] azure_ekm_client_cns: list the CNs "
                                          "of the allowed client certificates (e.g. "
                                          "\"contoso.managedhsmclient.azure.net\")");
                        KW_BAIL(KW_ERR_CONFIG);
                }
        }
        snprintf(ekm_state.prefix, sizeof ekm_state.prefix, "%s", prefix);
        kw_ratelimit_init(&ekm_state.rl, (uint64_t)cfg->ekm.azure_ekm_rate_limit, 0);
        return KW_OK;
}

kw_result kw_ekm_key_url(const struct kw_config *cfg, const char *name, char *out, size_t outsz)
{
        KW_ENSURE(cfg != NULL && out != NULL, KW_ERR_INTERNAL);
        KW_ENSURE(kw_ekm_key_name_valid(name), KW_ERR_BAD_NAME);
        const char *host = cfg->ekm.azure_ekm_public_host;
        if (host == NULL || host[0] == '\0')
                host = cfg->http.listen;
        const char *prefix = cfg->ekm.azure_ekm_path_prefix ? cfg->ekm.azure_ekm_path_prefix : "";
        int n = snprintf(NULL, 0, "https://%s" KW_EKM_ROUTE_PREFIX "%s%s/%s", host,
                         prefix[0] ? "/" : "", prefix, name);
        KW_ENSURE(n > 0 && (size_t)n < outsz, KW_ERR_TOO_LARGE);
        snprintf(out, outsz, "https://%s" KW_EKM_ROUTE_PREFIX "%s%s/%s", host, prefix[0] ? "/" : "",
                 prefix, name);
        return KW_OK;
}

void kw_route_ekm_error(struct kw_req *req, struct kw_resp *resp, int code)
{
        kw_err_set_detail("%s", code == KW_ERR_TOO_LARGE ? "request body too large"
                                                         : "malformed request body");
        ekm_fail(req, resp, code == KW_ERR_TOO_LARGE ? KW_ERR_BAD_LENGTH : code, EKM_OP_NONE, 0);
}
