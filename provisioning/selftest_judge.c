/* selftest_judge.c - the self-test's verdict on each answer (see selftest_judge.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../server/common/json_io.h"
#include "selftest_judge.h"

#define QUOTE_MAX 120       /* characters of the server's text in a why */
#define BODY_DEPTH 4
#define FLEET_MAX 10

/* s as printable ASCII (anything else '?'), at most QUOTE_MAX characters. */
static void quote(const char *s, size_t n, char out[QUOTE_MAX + 4])
{
        size_t o = 0;
        for (size_t i = 0; i < n && s[i] != '\0'; i++) {
                if (o == QUOTE_MAX) {
                        memcpy(out + o, "...", 3);
                        o += 3;
                        break;
                }
                unsigned char c = (unsigned char)s[i];
                out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
        }
        out[o] = '\0';
}

static enum kwp_verdict say(enum kwp_verdict v, char *why, size_t whysz, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static enum kwp_verdict say(enum kwp_verdict v, char *why, size_t whysz, const char *fmt, ...)
{
        if (whysz > 0) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(why, whysz, fmt, ap);
                va_end(ap);
        }
        return v;
}

/* The body as a JSON object, or NULL. */
static cJSON *parse(const uint8_t *body, size_t len)
{
        cJSON *doc = NULL;
        if (body == NULL || len == 0 || kw_json_parse(body, len, BODY_DEPTH, &doc).code != 0)
                return NULL;
        return doc;
}

/* A string member, quoted; "" when absent or not a string. */
static void member(const cJSON *doc, const char *name, char out[QUOTE_MAX + 4])
{
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(doc, name);
        quote(cJSON_IsString(m) ? m->valuestring : "", SIZE_MAX, out);
}

/* 1 when doc is a protocol error: exactly two members, the two names, both
 * strings (XKS: errorName, errorMessage; EKM: code, message). */
static int error_pair(const cJSON *doc, const char *name, const char *msg)
{
        return doc != NULL && cJSON_GetArraySize(doc) == 2 &&
               cJSON_IsString(cJSON_GetObjectItemCaseSensitive(doc, name)) &&
               cJSON_IsString(cJSON_GetObjectItemCaseSensitive(doc, msg));
}

/* The first bytes of a body that is not the expected JSON, for the why. */
static void excerpt(const uint8_t *body, size_t len, char out[QUOTE_MAX + 4])
{
        if (body == NULL || len == 0) {
                snprintf(out, QUOTE_MAX + 4, "an empty body");
                return;
        }
        quote((const char *)body, len, out);
}

/* 503 (starting, dependency down) and 429 (throttled): worth another attempt. */
static int transient(long status) { return status == 503 || status == 429; }

/* ------------------------------------------------------------ /healthz */

enum kwp_verdict kwp_judge_healthz(long status, const uint8_t *body, size_t len, char *why, size_t whysz)
{
        cJSON *doc = parse(body, len);
        char st[QUOTE_MAX + 4], a[QUOTE_MAX + 4], b[QUOTE_MAX + 4];
        member(doc, "status", st);
        enum kwp_verdict v;
        if (doc == NULL || st[0] == '\0') {
                excerpt(body, len, a);
                v = say(status == 503 ? KWP_RETRY : KWP_FAIL, why, whysz, "HTTP %ld, not the health JSON: %s",
                        status, a);
        } else if (status == 200 && strcmp(st, "ok") == 0) {
                v = say(KWP_PASS, why, whysz, "200 ok");
        } else if (status == 200 && strcmp(st, "degraded") == 0) {
                char w[256] = "";
                size_t n = 0;
                const cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, "warnings");
                for (const cJSON *it = cJSON_IsArray(arr) ? arr->child : NULL; it != NULL && n < sizeof w;
                     it = it->next) {
                        quote(cJSON_IsString(it) ? it->valuestring : "?", SIZE_MAX, a);
                        n += (size_t)snprintf(w + n, sizeof w - n, "%s%s", n ? ", " : "", a);
                }
                v = say(KWP_WARN, why, whysz, "200 degraded (warnings: %s)", w[0] ? w : "none listed");
        } else {
                member(doc, "error", a);
                member(doc, "message", b);
                v = say(status == 503 ? KWP_RETRY : KWP_FAIL, why, whysz, "%ld %s%s%s%s%s", status, st,
                        a[0] ? ": " : "", a, b[0] ? ": " : "", b);
        }
        cJSON_Delete(doc);
        return v;
}

/* ------------------------------------------------------------ XKS health */

/* 1 when s is one of the three healthStatus values. */
static int health_status_ok(const char *s)
{
        return strcmp(s, "ACTIVE") == 0 || strcmp(s, "DEGRADED") == 0 || strcmp(s, "UNAVAILABLE") == 0;
}

/* The 200 document: its verdict. */
static enum kwp_verdict xks_health_doc(const cJSON *doc, char *why, size_t whysz)
{
        int64_t fleet = 0;
        const char *vendor = NULL, *model = NULL, *ekm = NULL;
        const cJSON *details = cJSON_GetObjectItemCaseSensitive(doc, "ekmFleetDetails");
        int n = cJSON_IsArray(details) ? cJSON_GetArraySize(details) : 0;
        if (kw_json_get_int(doc, "xksProxyFleetSize", 1, 1, 1000000, &fleet).code != 0 ||
            kw_json_get_str(doc, "xksProxyVendor", 1, 0, 1024, &vendor).code != 0 ||
            kw_json_get_str(doc, "xksProxyModel", 1, 0, 1024, &model).code != 0 ||
            kw_json_get_str(doc, "ekmVendor", 1, 0, 1024, &ekm).code != 0 || n < 1 || n > FLEET_MAX)
                return say(KWP_FAIL, why, whysz,
                           "200 but not a health answer (xksProxyFleetSize, xksProxyVendor, xksProxyModel, "
                           "ekmVendor, 1 to %d ekmFleetDetails)", FLEET_MAX);
        enum kwp_verdict v = KWP_PASS;
        char worst[16] = "ACTIVE", who[QUOTE_MAX + 4] = "";
        for (const cJSON *it = details->child; it != NULL; it = it->next) {
                const char *id = NULL, *m = NULL, *hs = NULL;
                if (!cJSON_IsObject(it) || kw_json_get_str(it, "id", 1, 0, 1024, &id).code != 0 ||
                    kw_json_get_str(it, "model", 1, 0, 1024, &m).code != 0 ||
                    kw_json_get_str(it, "healthStatus", 1, 0, 16, &hs).code != 0 || !health_status_ok(hs))
                        return say(KWP_FAIL, why, whysz,
                                   "200 but an ekmFleetDetails entry is not {id, model, healthStatus "
                                   "ACTIVE|DEGRADED|UNAVAILABLE}");
                enum kwp_verdict this = strcmp(hs, "UNAVAILABLE") == 0 ? KWP_FAIL
                                        : strcmp(hs, "DEGRADED") == 0  ? KWP_WARN
                                                                       : KWP_PASS;
                if (this > v) {
                        v = this;
                        snprintf(worst, sizeof worst, "%s", hs);
                        quote(id, SIZE_MAX, who);
                }
        }
        char qv[QUOTE_MAX + 4], qm[QUOTE_MAX + 4];
        quote(vendor, SIZE_MAX, qv);
        quote(model, SIZE_MAX, qm);
        if (v == KWP_PASS)
                return say(v, why, whysz, "200 ACTIVE (%s %s, fleet of %lld)", qv, qm, (long long)fleet);
        return say(v, why, whysz, "200 but the key manager %s is %s", who, worst);
}

enum kwp_verdict kwp_judge_xks_health(long status, const uint8_t *body, size_t len, char *why, size_t whysz)
{
        cJSON *doc = parse(body, len);
        char a[QUOTE_MAX + 4], b[QUOTE_MAX + 4];
        enum kwp_verdict v;
        if (status == 200 && doc != NULL) {
                v = xks_health_doc(doc, why, whysz);
        } else if (status != 200 && error_pair(doc, "errorName", "errorMessage")) {
                member(doc, "errorName", a);
                member(doc, "errorMessage", b);
                v = say(transient(status) ? KWP_RETRY : KWP_FAIL, why, whysz, "%ld %s: %s", status, a, b);
        } else {
                excerpt(body, len, a);
                v = say(transient(status) ? KWP_RETRY : KWP_FAIL, why, whysz, "%ld, not an XKS answer: %s",
                        status, a);
        }
        cJSON_Delete(doc);
        return v;
}

/* ------------------------------------------------------------ EKM info */

enum kwp_verdict kwp_judge_ekm_info(long status, const uint8_t *body, size_t len, char *why, size_t whysz)
{
        cJSON *doc = parse(body, len);
        char a[QUOTE_MAX + 4], b[QUOTE_MAX + 4];
        static const char *const info[] = { "api_version", "proxy_vendor", "proxy_name", "ekm_vendor",
                                            "ekm_product" };
        enum kwp_verdict v;
        if (status == 200 && doc != NULL) {
                const char *s = NULL;
                int ok = 1;
                for (size_t i = 0; ok && i < sizeof info / sizeof info[0]; i++)
                        ok = kw_json_get_str(doc, info[i], 1, 0, 1024, &s).code == 0 && s[0] != '\0';
                member(doc, "api_version", a);
                member(doc, "proxy_name", b);
                v = ok ? say(KWP_PASS, why, whysz, "200 api_version %s (%s)", a, b)
                       : say(KWP_FAIL, why, whysz,
                             "200 but not an info answer (api_version, proxy_vendor, proxy_name, ekm_vendor, "
                             "ekm_product)");
        } else if (status != 200 && error_pair(doc, "code", "message")) {
                member(doc, "code", a);
                member(doc, "message", b);
                if (status == 401 && strcmp(a, "Unauthorized") == 0)
                        v = say(KWP_PASS, why, whysz, "401 Unauthorized without a client certificate: %s", b);
                else
                        v = say(transient(status) ? KWP_RETRY : KWP_FAIL, why, whysz, "%ld %s: %s", status, a,
                                b);
        } else if (transient(status)) {
                excerpt(body, len, a);
                v = say(KWP_RETRY, why, whysz, "%ld, not an EKM answer: %s", status, a);
        } else {
                /* the catch-all routes (XKS, or no route) answered: no EKM route */
                excerpt(body, len, a);
                v = say(KWP_FAIL, why, whysz,
                        "%ld, not the EKM API (is [azure_ekm_config] azure_ekm_enable set, and the path "
                        "prefix right?): %s",
                        status, a);
        }
        cJSON_Delete(doc);
        return v;
}
