/*
 * xks_request.c - the AWS XKS proxy API v1 requests themselves, in the
 * custody process (docs/xks.md; our notes: ../shared/specs/aws-xks.md).
 *
 * The front routes a request by its URI prefix, builds the SigV4 canonical
 * request and string to sign, and hands them over with the body exactly as
 * received (KW_OP_XKS).  By the time op_xks runs, custody_xks_auth has
 * verified the signature and that the canonical request is a POST of this
 * body to this store's path.  Everything after that happens here, from what
 * was signed: the operation and key come from the signed path, the fields
 * from the signed body.  So a front that is not what it should be can
 * replay what AWS KMS sent it, but cannot change a key, an operation, a
 * ciphertext or the requestMetadata the key's rules are checked against.
 *
 * Order of checks (the specification's): SigV4 (401, custody_xks_auth) ->
 * body (400 ValidationException; 501 for values beyond our maxima) -> key
 * lookup and store membership (404) -> state (400) -> secondary
 * authorization over requestMetadata (403) -> usage (400) -> crypto.  The
 * ciphertext format (xks_format.h) has this one owner, both directions.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/b64.h"
#include "../common/json_io.h"
#include "../common/log.h"
#include "../common/names.h"
#include "../common/sigv4_sts.h"
#include "custody_int.h"
#include "xks_format.h"

#define XKS_PT_MAX 32768              /* plaintext / ciphertext bytes: beyond -> 501 */
#define XKS_AAD_MAX 8192              /* AAD bytes: beyond -> 501                    */
#define XKS_MD_IN_MAX 255
#define XKS_ARN_MAX 2048
#define XKS_META_MAX 128              /* kmsOperation, kmsViaService, VPC(E)          */
#define XKS_REQ_ID_KEEP 256           /* bytes of kmsRequestId audited and logged     */
#define XKS_KEY_ID_MAX 128
#define XKS_JSON_DEPTH 4
#define XKS_HEALTH_TTL_MS 60000       /* ACTIVE results                               */
#define XKS_HEALTH_BAD_TTL_MS 5000    /* DEGRADED / UNAVAILABLE: re-check sooner     */
#define XKS_HSM_SLOW_US 100000        /* deep check slower than this: DEGRADED       */

enum xks_op { XKS_HEALTH, XKS_METADATA, XKS_ENCRYPT, XKS_DECRYPT };

/* The deep health result, shared by every store (one HSM, one database). */
static struct {
        pthread_mutex_t mu;
        int64_t at_ms, ttl_ms;
        char status[16];
} health = { .mu = PTHREAD_MUTEX_INITIALIZER };

static int64_t mono_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int key_id_char(char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
}

/*
 * The signed path after the store's prefix: "/kms/xks/v1/health" or
 * "/kms/xks/v1/keys/<id>/{metadata,encrypt,decrypt}".  Anything else:
 * KW_ERR_NO_ROUTE (the front routes the same way, so this means the two
 * disagree).  key gets the id (NUL-terminated) for the key operations.
 */
static kw_result xks_route(const char *p, size_t n, enum xks_op *ret_op,
                           char key[XKS_KEY_ID_MAX + 1])
{
        static const char v1[] = "/kms/xks/v1/";
        size_t vn = sizeof v1 - 1;
        KW_ENSURE(n > vn && memcmp(p, v1, vn) == 0, KW_ERR_NO_ROUTE);
        p += vn;
        n -= vn;
        if (n == 6 && memcmp(p, "health", 6) == 0) {
                *ret_op = XKS_HEALTH;
                return KW_OK;
        }
        KW_ENSURE(n > 5 && memcmp(p, "keys/", 5) == 0, KW_ERR_NO_ROUTE);
        p += 5;
        n -= 5;
        size_t k = 0;
        while (k < n && p[k] != '/') {
                KW_ENSURE(key_id_char(p[k]), KW_ERR_NO_ROUTE);
                k++;
        }
        KW_ENSURE(k >= 1 && k <= XKS_KEY_ID_MAX && k < n, KW_ERR_NO_ROUTE);
        KW_ENSURE(!(k == 1 && p[0] == '.') && !(k == 2 && p[0] == '.' && p[1] == '.'),
                  KW_ERR_NO_ROUTE);
        const char *op = p + k + 1;
        size_t on = n - k - 1;
        enum xks_op o = XKS_HEALTH;
        if (on == 8 && memcmp(op, "metadata", 8) == 0)
                o = XKS_METADATA;
        else if (on == 7 && memcmp(op, "encrypt", 7) == 0)
                o = XKS_ENCRYPT;
        else if (on == 7 && memcmp(op, "decrypt", 7) == 0)
                o = XKS_DECRYPT;
        else
                KW_BAIL(KW_ERR_NO_ROUTE);
        memcpy(key, p, k);
        key[k] = '\0';
        *ret_op = o;
        return KW_OK;
}

/* ---- body ---- */

struct xks_body {
        const char *request_id, *operation, *principal, *key_arn, *via, *vpc, *vpce;
        struct kw_buf pt, aad, ct, iv, tag, md;
        int has_aad, has_md, cdiv;
};

static void body_init(struct xks_body *b)
{
        memset(b, 0, sizeof *b);
        kw_buf_init(&b->pt, XKS_PT_MAX);
        kw_buf_init(&b->aad, XKS_AAD_MAX);
        kw_buf_init(&b->ct, XKS_PT_MAX);
        kw_buf_init(&b->iv, 16);
        kw_buf_init(&b->tag, 16);
        kw_buf_init(&b->md, XKS_MD_IN_MAX);
}

static void body_free(struct xks_body *b)
{
        kw_buf_free(&b->pt);    /* wiped */
        kw_buf_free(&b->aad);
        kw_buf_free(&b->ct);
        kw_buf_free(&b->iv);
        kw_buf_free(&b->tag);
        kw_buf_free(&b->md);
}

KW_MUST_USE static kw_result get_meta(enum xks_op op, const cJSON *doc, struct xks_body *b)
{
        const cJSON *md = NULL;
        KW_TRY(kw_json_get_obj(doc, "requestMetadata", 1, &md));
        int keyed = op != XKS_HEALTH, crypto = op == XKS_ENCRYPT || op == XKS_DECRYPT;
        /* kmsRequestId is opaque: any length is accepted, the first 256
         * bytes are logged and audited */
        KW_TRY(kw_json_get_str(md, "kmsRequestId", 1, 1, 1u << 16, &b->request_id));
        KW_TRY(kw_json_get_str(md, "kmsOperation", 1, 1, XKS_META_MAX, &b->operation));
        KW_TRY(kw_json_get_str(md, "awsPrincipalArn", keyed, 1, XKS_ARN_MAX, &b->principal));
        KW_TRY(kw_json_get_str(md, "kmsKeyArn", crypto, 1, XKS_ARN_MAX, &b->key_arn));
        KW_TRY(kw_json_get_str(md, "kmsViaService", 0, 1, XKS_META_MAX, &b->via));
        KW_TRY(kw_json_get_str(md, "awsSourceVpc", 0, 1, XKS_META_MAX, &b->vpc));
        KW_TRY(kw_json_get_str(md, "awsSourceVpce", 0, 1, XKS_META_MAX, &b->vpce));
        return KW_OK;
}

/* Base64 member decoded into out (cap max bytes: beyond -> UNSUPPORTED). */
KW_MUST_USE static kw_result get_b64(const cJSON *doc, const char *name, int required, size_t max,
                                     struct kw_buf *out, int *ret_present)
{
        const char *s = NULL;
        KW_TRY(kw_json_get_str(doc, name, required, 1, 4 * ((max + 2) / 3) + 4096, &s));
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

KW_MUST_USE static kw_result get_alg(const cJSON *doc)
{
        const char *alg = NULL;
        KW_TRY(kw_json_get_str(doc, "encryptionAlgorithm", 1, 0, 64, &alg));
        if (strcmp(alg, "AES_GCM") != 0) {
                kw_err_set_detail("encryptionAlgorithm must be AES_GCM");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        return KW_OK;
}

/* The operation's fields, validated (strings point into doc). */
KW_MUST_USE static kw_result body_parse(enum xks_op op, const cJSON *doc, struct xks_body *b)
{
        KW_TRY(get_meta(op, doc, b));
        int has = 0;
        if (op == XKS_ENCRYPT) {
                const char *alg = NULL;
                KW_TRY(get_b64(doc, "plaintext", 1, XKS_PT_MAX, &b->pt, &has));
                KW_TRY(get_alg(doc));
                KW_TRY(get_b64(doc, "additionalAuthenticatedData", 0, XKS_AAD_MAX, &b->aad,
                               &b->has_aad));
                KW_TRY(kw_json_get_str(doc, "ciphertextDataIntegrityValueAlgorithm", 0, 0, 64, &alg));
                if (alg != NULL) {
                        if (strcmp(alg, "SHA_256") != 0) {
                                kw_err_set_detail("ciphertextDataIntegrityValueAlgorithm must be SHA_256");
                                KW_BAIL(KW_ERR_BAD_FIELD);
                        }
                        b->cdiv = 1;
                }
        } else if (op == XKS_DECRYPT) {
                KW_TRY(get_b64(doc, "ciphertext", 1, XKS_PT_MAX, &b->ct, &has));
                KW_TRY(get_alg(doc));
                kw_result r = get_b64(doc, "initializationVector", 1, 16, &b->iv, &has);
                if (r.code == 0)
                        r = get_b64(doc, "authenticationTag", 1, 16, &b->tag, &has);
                if (r.code == KW_ERR_UNSUPPORTED)   /* an over-long IV or tag is just invalid */
                        r = KW_RESULT(KW_ERR_BAD_FIELD);
                KW_TRY(r);
                if (b->iv.len == 0 || b->tag.len == 0) {
                        kw_err_set_detail("initializationVector and authenticationTag are not empty");
                        KW_BAIL(KW_ERR_BAD_FIELD);
                }
                KW_TRY(get_b64(doc, "additionalAuthenticatedData", 0, XKS_AAD_MAX, &b->aad,
                               &b->has_aad));
                r = get_b64(doc, "ciphertextMetadata", 0, XKS_MD_IN_MAX, &b->md, &b->has_md);
                if (r.code == KW_ERR_UNSUPPORTED && b->has_aad)
                        r = KW_RESULT(KW_ERR_BAD_FIELD);
                KW_TRY(r);
        }
        return KW_OK;
}

/* Overwrites every string of the parsed body (plaintext, AAD: base64). */
static void json_wipe(cJSON *v)
{
        for (; v != NULL; v = v->next) {
                if (v->valuestring != NULL)
                        kw_wipe(v->valuestring, strlen(v->valuestring));
                json_wipe(v->child);
        }
}

/* ---- the operations ---- */

static kw_result put_b64_member(struct kw_buf *b, const char *name, const uint8_t *p, size_t n,
                                int first)
{
        KW_TRY(kw_buf_printf(b, "%s\"%s\":\"", first ? "{" : ",", name));
        KW_TRY(kw_b64_encode(p, n, b));
        return kw_buf_put(b, "\"", 1);
}

/* Deep health (HSM seal/unseal and a database read), cached: a minute when
 * ACTIVE, five seconds otherwise. */
static void health_status(struct custody *c, char out[16])
{
        int64_t now = mono_ms();
        pthread_mutex_lock(&health.mu);
        int fresh = health.status[0] != '\0' && now - health.at_ms < health.ttl_ms;
        if (fresh)
                memcpy(out, health.status, 16);
        pthread_mutex_unlock(&health.mu);
        if (fresh)
                return;
        uint64_t us = 0, nkeys = 0;
        int64_t t0 = mono_ms();
        kw_result r = kw_hsm_check(c->hsm, &us);
        char why[161];
        /* a fleet node that knows its database is away does not wait on it
         * (KMS gives the call 250 ms): the fleet state says DEGRADED */
        if (r.code == 0 && strcmp(custody_fleet_state(c, why), "ACTIVE") != 0)
                r = KW_RESULT(KW_ERR_DB_UNAVAILABLE);
        else if (r.code == 0)
                r = kw_keystore_key_count(c->ks, &nkeys);
        int64_t took_ms = mono_ms() - t0;
        int slow = us > XKS_HSM_SLOW_US || took_ms * 1000 > XKS_HSM_SLOW_US;
        /* a fleet node without its database still serves cached keys: the
         * fleet state (xks_health_fleet) says how long */
        if (r.code == KW_ERR_DB_UNAVAILABLE && c->fleet != NULL)
                r = KW_OK, slow = 1;
        snprintf(out, 16, "%s", r.code != 0 ? "UNAVAILABLE" : slow ? "DEGRADED" : "ACTIVE");
        pthread_mutex_lock(&health.mu);
        memcpy(health.status, out, 16);
        health.at_ms = mono_ms();
        health.ttl_ms = strcmp(out, "ACTIVE") == 0 ? XKS_HEALTH_TTL_MS : XKS_HEALTH_BAD_TTL_MS;
        pthread_mutex_unlock(&health.mu);
}

/* The worse of two health states. */
static const char *worse(const char *a, const char *b)
{
        static const char *const order[] = { "ACTIVE", "DEGRADED", "UNAVAILABLE" };
        int ia = 2, ib = 2;
        for (int i = 0; i < 3; i++) {
                if (strcmp(a, order[i]) == 0)
                        ia = i;
                if (strcmp(b, order[i]) == 0)
                        ib = i;
        }
        return order[ia > ib ? ia : ib];
}

/* Fleet mode: ekmFleetDetails lists the nodes (at most 10, this node
 * first) with the state their heartbeats report; this node's own entry is
 * the worse of its deep check and its database state. */
KW_MUST_USE static kw_result xks_health_fleet(struct custody *c, const char *status,
                                              const struct custody_node *nodes, size_t n,
                                              struct kw_buf *b)
{
        char why[161];
        const char *mine = worse(status, custody_fleet_state(c, why));
        KW_TRY(kw_buf_put_str(b, "\",\"ekmVendor\":\"PKCS#11\",\"ekmFleetDetails\":["));
        size_t shown = 0;
        for (int pass = 0; pass < 2; pass++)
                for (size_t i = 0; i < n && shown < 10; i++) {
                        if (nodes[i].self != (pass == 0))
                                continue;
                        KW_TRY(kw_buf_put_str(b, shown ? ",{\"id\":\"" : "{\"id\":\""));
                        KW_TRY(kw_buf_put_json_escaped(b, nodes[i].id, strlen(nodes[i].id)));
                        KW_TRY(kw_buf_printf(b, "\",\"model\":\"keywardd %s\",\"healthStatus\":\"%s\"}",
                                             KEYWARD_VERSION, nodes[i].self ? mine : nodes[i].state));
                        shown++;
                }
        return kw_buf_put_str(b, "]}");
}

KW_MUST_USE static kw_result xks_health(struct custody *c, struct kw_buf *b)
{
        const struct kw_config *cfg = c->cfg;
        char status[16];
        health_status(c, status);
        struct custody_node nodes[64];
        size_t n = c->fleet != NULL ? custody_fleet_nodes(c, nodes, sizeof nodes / sizeof nodes[0]) : 0;
        long long size = cfg->xks.aws_xks_fleet_size;
        if (c->fleet != NULL) {   /* the nodes that answer */
                size = 0;
                for (size_t i = 0; i < n; i++)
                        size += nodes[i].self || strcmp(nodes[i].state, "UNAVAILABLE") != 0;
        }
        KW_TRY(kw_buf_printf(b, "{\"xksProxyFleetSize\":%lld,\"xksProxyVendor\":\"", size));
        KW_TRY(kw_buf_put_json_escaped(b, cfg->xks.aws_xks_vendor, strlen(cfg->xks.aws_xks_vendor)));
        KW_TRY(kw_buf_put_str(b, "\",\"xksProxyModel\":\""));
        KW_TRY(kw_buf_put_json_escaped(b, cfg->xks.aws_xks_model, strlen(cfg->xks.aws_xks_model)));
        if (c->fleet != NULL)
                return xks_health_fleet(c, status, nodes, n, b);
        KW_TRY(kw_buf_put_str(b, "\",\"ekmVendor\":\"PKCS#11\",\"ekmFleetDetails\":[{\"id\":\""));
        KW_TRY(kw_buf_put_json_escaped(b, cfg->hsm.token_label, strlen(cfg->hsm.token_label)));
        return kw_buf_printf(b, "\",\"model\":\"PKCS#11 token\",\"healthStatus\":\"%s\"}]}", status);
}

KW_MUST_USE static kw_result xks_metadata(struct custody *c, const struct op_caller *who,
                                          const char *key, struct kw_buf *b)
{
        struct custody_key_info k;
        KW_TRY(custody_key_xks_metadata(c, who, key, &k));
        if (strcmp(k.type, "AES") != 0 || k.size != 256) {
                kw_err_set_detail("not an AES-256 key");
                KW_BAIL(KW_ERR_OP_NOT_ALLOWED);
        }
        int enc = (k.ops & KW_KEYOP_ENCRYPT) != 0, dec = (k.ops & KW_KEYOP_DECRYPT) != 0;
        return kw_buf_printf(b, "{\"keySpec\":\"AES_256\",\"keyUsage\":[%s%s%s],\"keyStatus\":\"%s\"}",
                             enc ? "\"ENCRYPT\"" : "", enc && dec ? "," : "", dec ? "\"DECRYPT\"" : "",
                             strcmp(k.state, "enabled") == 0 ? "ENABLED" : "DISABLED");
}

KW_MUST_USE static kw_result xks_encrypt(struct custody *c, const struct op_caller *who,
                                         const char *key, const struct xks_body *in,
                                         struct kw_buf *b)
{
        struct kw_buf ct;
        kw_buf_init(&ct, XKS_PT_MAX);
        uint8_t iv[12], tag[16];
        uint32_t ver = 0;
        kw_result r = custody_key_gcm_encrypt(c, who, key, in->pt.p, in->pt.len, in->aad.p,
                                              in->aad.len, in->cdiv, &ct, iv, tag, &ver);
        char md[16];
        size_t mdn = r.code == 0 ? kw_xks_md_format(ver, md) : 0;
        if (r.code == 0)
                r = put_b64_member(b, "authenticationTag", tag, sizeof tag, 1);
        if (r.code == 0)
                r = put_b64_member(b, "ciphertext", ct.p, ct.len, 0);
        if (r.code == 0 && in->cdiv) {
                uint8_t h[32];
                r = kw_xks_cdiv(in->aad.p, in->aad.len, (const uint8_t *)md, mdn, iv, sizeof iv,
                                ct.p, ct.len, tag, sizeof tag, h);
                if (r.code == 0)
                        r = put_b64_member(b, "ciphertextDataIntegrityValue", h, 32, 0);
        }
        if (r.code == 0)
                r = put_b64_member(b, "ciphertextMetadata", (const uint8_t *)md, mdn, 0);
        if (r.code == 0)
                r = put_b64_member(b, "initializationVector", iv, sizeof iv, 0);
        if (r.code == 0)
                r = kw_buf_put(b, "}", 1);
        kw_buf_free(&ct);
        return r;
}

KW_MUST_USE static kw_result xks_decrypt(struct custody *c, const struct op_caller *who,
                                         const char *key, const struct xks_body *in,
                                         struct kw_buf *b)
{
        /* A metadata value that is not ours names no version (0): the key
         * checks still run, in the right order, and then the decryption
         * fails as any corrupted ciphertext does. */
        uint32_t ver = 0;
        if (kw_xks_md_parse(in->md.p, in->md.len, &ver).code != 0)
                ver = 0;
        struct kw_buf pt;
        kw_buf_init(&pt, XKS_PT_MAX);
        kw_result r = custody_key_gcm_decrypt(c, who, key, ver, in->ct.p, in->ct.len, in->iv.p,
                                              in->iv.len, in->tag.p, in->tag.len, in->aad.p,
                                              in->aad.len, in->md.p, in->md.len, &pt);
        if (r.code == 0)
                r = put_b64_member(b, "plaintext", pt.p, pt.len, 1);
        if (r.code == 0)
                r = kw_buf_put(b, "}", 1);
        kw_buf_free(&pt);   /* wiped */
        return r;
}

/* The first bytes of kmsRequestId, cut at a character boundary. */
static void keep_request_id(const char *id, char out[XKS_REQ_ID_KEEP + 1])
{
        size_t n = strnlen(id, XKS_REQ_ID_KEEP);
        while (n > 0 && n == XKS_REQ_ID_KEEP && ((unsigned char)id[n] & 0xc0) == 0x80)
                n--;
        memcpy(out, id, n);
        out[n] = '\0';
}

int custody_xks_peek(const struct kw_msg *req, char name[KW_NAME_MAX + 1],
                     enum kw_warm_need *ret_need)
{
        struct kw_field creq;
        struct kw_sigv4_creq cr;
        if (kw_msg_get(req, KW_T_SIGV4_CREQ, &creq).code != 0 ||
            kw_sigv4_creq_parse((const char *)creq.p, creq.len, &cr).code != 0)
                return 0;
        /* the store's prefix is not known before the signature is checked:
         * take the route from the last "/kms/xks/v1/" of the path */
        static const char v1[] = "/kms/xks/v1/";
        const char *at = NULL;
        for (size_t i = 0; i + sizeof v1 - 1 <= cr.path_len; i++)
                if (memcmp(cr.path + i, v1, sizeof v1 - 1) == 0)
                        at = cr.path + i;
        enum xks_op op;
        char key[XKS_KEY_ID_MAX + 1];
        if (at == NULL || xks_route(at, cr.path_len - (size_t)(at - cr.path), &op, key).code != 0 ||
            op == XKS_HEALTH || strlen(key) > KW_NAME_MAX)
                return 0;
        memcpy(name, key, strlen(key) + 1);
        *ret_need = op == XKS_METADATA ? KW_WARM_ENTRY
                  : op == XKS_ENCRYPT  ? KW_WARM_CURRENT
                                       : KW_WARM_ALL;   /* the version is in the ciphertext */
        return 1;
}

kw_result op_xks(struct custody *c, const struct kw_msg *req, struct op_caller *verified,
                 struct kw_buf *reply)
{
        struct kw_field creq = { 0 }, body = { 0 };
        struct kw_sigv4_creq cr;
        KW_TRY(kw_msg_get(req, KW_T_SIGV4_CREQ, &creq));
        KW_TRY(kw_msg_get(req, KW_T_BODY, &body));
        KW_TRY(kw_sigv4_creq_parse((const char *)creq.p, creq.len, &cr));
        char prefix[129];
        custody_xks_store_prefix(c, verified->store, prefix, sizeof prefix);
        size_t pn = strlen(prefix);
        enum xks_op op;
        char key[XKS_KEY_ID_MAX + 1] = "";
        KW_ENSURE(cr.path_len >= pn, KW_ERR_NO_ROUTE);
        KW_TRY(xks_route(cr.path + pn, cr.path_len - pn, &op, key));

        /* the caller, with the requestMetadata of the signed body for the
         * key's rules (secondary authorization) */
        struct op_caller who = *verified;
        struct xks_body in;
        body_init(&in);
        cJSON *doc = NULL;
        kw_result r = kw_json_parse(body.p, body.len, XKS_JSON_DEPTH, &doc);
        if (r.code == 0)
                r = body_parse(op, doc, &in);
        if (in.request_id != NULL)
                keep_request_id(in.request_id, who.request_id);
        who.ctx.principal = in.principal;
        who.ctx.operation = in.operation;
        who.ctx.via = in.via;
        who.ctx.vpc = in.vpc;
        who.ctx.vpce = in.vpce;
        who.ctx.store = who.store;
        struct kw_buf out;
        kw_buf_init(&out, 64 * 1024);
        if (r.code == 0 && op != XKS_HEALTH && strlen(key) > KW_NAME_MAX) {
                /* a valid XKS key id, longer than any key name of ours */
                kw_err_set_detail("key ids of this proxy have at most 64 characters");
                r = KW_RESULT(KW_ERR_NOT_FOUND);
        } else if (r.code == 0) {
                switch (op) {
                case XKS_HEALTH: r = xks_health(c, &out); break;
                case XKS_METADATA: r = xks_metadata(c, &who, key, &out); break;
                case XKS_ENCRYPT: r = xks_encrypt(c, &who, key, &in, &out); break;
                case XKS_DECRYPT: r = xks_decrypt(c, &who, key, &in, &out); break;
                }
        }
        if (r.code == 0)
                r = kw_msg_put(reply, KW_T_JSON, out.p, out.len);
        if (r.code == 0 && who.request_id[0] != '\0')
                r = kw_msg_put_str(reply, KW_T_REQUEST_ID, who.request_id);
        /* a failure's reply carries the id too (handle_frame, from the caller) */
        memcpy(verified->request_id, who.request_id, sizeof who.request_id);
        kw_buf_free(&out);   /* wiped: it may hold a plaintext */
        body_free(&in);
        if (doc != NULL)
                json_wipe(doc);
        cJSON_Delete(doc);
        return r;
}
