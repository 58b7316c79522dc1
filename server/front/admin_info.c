/*
 * admin_info.c - the admin API's information endpoints for the console
 * (docs/api.md): the request history of the last hour, the Azure EKM
 * set-up, a summary of fresh attestation evidence, a key's versions, and
 * what GET status adds (evaluation mode, the boot's unlock record).
 *
 * What does not change while the server runs is read once at start, before
 * the sandbox (kw_admin_info_load): the client CA certificates of [tls]
 * clients_ca_cert_file and the unlock record keyward-unlock wrote.  Both
 * are kept as ready-made JSON text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "../../attest/verify/kwa.h"
#include "../common/b64.h"
#include "../common/json_io.h"
#include "../common/proto.h"
#include "../common/tpm_ak.h"
#include "admin_int.h"
#include "history.h"
#include "route_ekm.h"

#define INFO_CA_MAX 32                  /* certificates of the client CA file listed */
#define INFO_UNLOCK_MAX 4096            /* bytes of the unlock record read */
#define INFO_TEXT_MAX 256               /* a string of the unlock record */
#define INFO_XKS_BUDGET_MS 250          /* AWS's latency budget of an XKS call */
#define INFO_EKM_BUDGET_MS 250          /* Azure's of an EKM call (end to end) */
#define ATTEST_NONCE_LEN 32

struct kw_admin_info {
        char *client_ca_json;           /* JSON array */
        char *unlock_json;              /* JSON object */
};

/* ---- read at start ---------------------------------------------------------- */

static void x509_name_text(const X509_NAME *n, char *out, size_t outsz)
{
        BIO *b = BIO_new(BIO_s_mem());
        out[0] = '\0';
        if (b == NULL)
                return;
        if (X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
                int len = BIO_read(b, out, (int)outsz - 1);
                out[len > 0 ? len : 0] = '\0';
        }
        BIO_free(b);
}

static void asn1_time_rfc3339(const ASN1_TIME *t, char out[64])
{
        struct tm tm;
        out[0] = '\0';
        if (t != NULL && ASN1_TIME_to_tm(t, &tm) == 1)
                snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* {"subject","issuer","sha256","not_after"} of each certificate of the PEM
 * file path (at most INFO_CA_MAX), as a JSON array; [] when path is empty
 * or unreadable (http.c refuses to start on a bad CA file anyway). */
static char *client_ca_load(const char *path)
{
        cJSON *arr = cJSON_CreateArray();
        FILE *f = path != NULL && path[0] != '\0' ? fopen(path, "r") : NULL;
        for (int i = 0; arr != NULL && f != NULL && i < INFO_CA_MAX; i++) {
                X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
                if (x == NULL)
                        break;
                char subject[512], issuer[512], na[64], hex[65];
                unsigned char md[32];
                unsigned mdlen = 0;
                x509_name_text(X509_get_subject_name(x), subject, sizeof subject);
                x509_name_text(X509_get_issuer_name(x), issuer, sizeof issuer);
                asn1_time_rfc3339(X509_get0_notAfter(x), na);
                hex[0] = '\0';
                if (X509_digest(x, EVP_sha256(), md, &mdlen) == 1 && mdlen == 32)
                        for (unsigned k = 0; k < 32; k++)
                                snprintf(hex + 2 * k, 3, "%02x", md[k]);
                cJSON *c = cJSON_CreateObject();
                if (c != NULL) {
                        cJSON_AddStringToObject(c, "subject", subject);
                        cJSON_AddStringToObject(c, "issuer", issuer);
                        cJSON_AddStringToObject(c, "sha256", hex);
                        cJSON_AddStringToObject(c, "not_after", na);
                        cJSON_AddItemToArray(arr, c);
                }
                X509_free(x);
        }
        if (f != NULL)
                fclose(f);
        ERR_clear_error();
        char *s = arr != NULL ? cJSON_PrintUnformatted(arr) : NULL;
        cJSON_Delete(arr);
        return s;
}

static int binding_name_ok(const char *s)
{
        return strcmp(s, "tpm2") == 0 || strcmp(s, "snp") == 0 || strcmp(s, "recovery") == 0;
}

static int text_ok(const char *s)
{
        return strlen(s) <= INFO_TEXT_MAX && admin_text_ok(s);
}

/* The unlock record's document: {"device","binding","bindings_enrolled",
 * "time"} and optionally "name" (keyward-unlock open, appliance/unlock/).
 * Its fields are checked, then copied (nothing else is passed on).  NULL
 * with a reason in why when it is not such a record. */
static cJSON *unlock_parse(const uint8_t *p, size_t n, char *why, size_t whysz)
{
        cJSON *doc = NULL;
        if (kw_json_parse(p, n, 3, &doc).code != 0 || !cJSON_IsObject(doc)) {
                snprintf(why, whysz, "not a JSON object");
                cJSON_Delete(doc);
                return NULL;
        }
        const char *device = NULL, *binding = NULL, *t = NULL, *name = NULL;
        const cJSON *enrolled = NULL;
        cJSON *out = NULL;
        if (kw_json_get_str(doc, "device", 1, 0, INFO_TEXT_MAX, &device).code != 0 ||
            kw_json_get_str(doc, "binding", 1, 0, 16, &binding).code != 0 ||
            kw_json_get_str(doc, "time", 1, 0, 40, &t).code != 0 ||
            kw_json_get_str(doc, "name", 0, 0, 128, &name).code != 0 ||
            kw_json_get_strarray(doc, "bindings_enrolled", 1, 8, 16, &enrolled).code != 0) {
                snprintf(why, whysz, "device, binding, bindings_enrolled and time are required");
        } else if (!text_ok(device) || !binding_name_ok(binding) || !text_ok(t) ||
                   (name != NULL && !text_ok(name))) {
                snprintf(why, whysz, "a field has a value out of its range");
        } else {
                out = cJSON_CreateObject();
                cJSON *arr = out != NULL ? cJSON_CreateArray() : NULL;
                for (const cJSON *e = enrolled->child; arr != NULL && e != NULL; e = e->next) {
                        if (!binding_name_ok(e->valuestring)) {
                                snprintf(why, whysz, "bindings_enrolled names tpm2, snp, recovery");
                                cJSON_Delete(arr);
                                arr = NULL;
                                break;
                        }
                        cJSON_AddItemToArray(arr, cJSON_CreateString(e->valuestring));
                }
                if (arr == NULL) {
                        cJSON_Delete(out);
                        out = NULL;
                } else {
                        cJSON_AddStringToObject(out, "state", "unlocked");
                        cJSON_AddStringToObject(out, "device", device);
                        if (name != NULL)
                                cJSON_AddStringToObject(out, "name", name);
                        cJSON_AddStringToObject(out, "binding", binding);
                        cJSON_AddItemToObject(out, "bindings_enrolled", arr);
                        cJSON_AddStringToObject(out, "time", t);
                }
        }
        cJSON_Delete(doc);
        return out;
}

static char *unlock_load(const char *path)
{
        char why[256] = "";
        cJSON *rec = NULL;
        if (path == NULL || path[0] == '\0') {
                snprintf(why, sizeof why, "[attestation] unlock_record is empty");
        } else {
                FILE *f = fopen(path, "rb");
                if (f == NULL) {
                        snprintf(why, sizeof why, "no unlock record at %s (%m): the data volume "
                                                  "was not opened by keyward-unlock at this boot",
                                 path);
                } else {
                        uint8_t buf[INFO_UNLOCK_MAX + 1];
                        size_t n = fread(buf, 1, sizeof buf, f);
                        fclose(f);
                        char perr[160] = "";
                        if (n > INFO_UNLOCK_MAX)
                                snprintf(perr, sizeof perr, "larger than %d bytes", INFO_UNLOCK_MAX);
                        else
                                rec = unlock_parse(buf, n, perr, sizeof perr);
                        if (rec == NULL)
                                snprintf(why, sizeof why, "the unlock record %s is not usable: %s",
                                         path, perr);
                }
        }
        if (rec != NULL)
                cJSON_AddStringToObject(rec, "source", path);
        else if ((rec = cJSON_CreateObject()) != NULL) {
                cJSON_AddStringToObject(rec, "state", "unknown");
                cJSON_AddStringToObject(rec, "detail", why);
        }
        char *s = rec != NULL ? cJSON_PrintUnformatted(rec) : NULL;
        cJSON_Delete(rec);
        return s;
}

kw_result kw_admin_info_load(const struct kw_config *cfg, struct kw_admin_info **ret)
{
        struct kw_admin_info *in = calloc(1, sizeof *in);
        KW_ENSURE(in != NULL, KW_ERR_NOMEM);
        in->client_ca_json = client_ca_load(cfg->tls.clients_ca_cert_file);
        in->unlock_json = unlock_load(cfg->attestation.unlock_record);
        if (in->client_ca_json == NULL || in->unlock_json == NULL) {
                kw_admin_info_free(in);
                KW_BAIL(KW_ERR_NOMEM);
        }
        *ret = in;
        return KW_OK;
}

void kw_admin_info_free(struct kw_admin_info *in)
{
        if (in == NULL)
                return;
        free(in->client_ca_json);
        free(in->unlock_json);
        free(in);
}

/* ---- GET /api/v1/status additions --------------------------------------------- */

kw_result admin_status_extra(struct admin_call *a, struct kw_buf *b)
{
        const struct kw_config *cfg = a->front->cfg;
        const struct kw_admin_info *in = a->front->info;
        KW_TRY(kw_buf_printf(b, ",\"evaluation\":%s,\"unlock\":",
                             cfg != NULL && cfg->hsm.evaluation ? "true" : "false"));
        if (in == NULL)
                return kw_buf_put_str(b, "{\"state\":\"unknown\",\"detail\":\"not read\"}");
        return kw_buf_put_str(b, in->unlock_json);
}

/* ---- GET /api/v1/metrics/history ------------------------------------------------ */

static void rfc3339_now(time_t t, char out[64])
{
        struct tm tm;
        gmtime_r(&t, &tm);
        snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

KW_MUST_USE kw_result admin_metrics_history(struct admin_call *a)
{
        const struct kw_config *cfg = a->front->cfg;
        struct kw_history *h = kw_http_history(a->front->http);
        KW_ENSURE(h != NULL && cfg != NULL, KW_ERR_INTERNAL);
        time_t now = time(NULL);
        char ts[64];
        rfc3339_now(now, ts);
        struct kw_buf *b = &a->resp->body;
        KW_TRY(kw_buf_printf(b, "{\"interval_seconds\":60,\"now\":\"%s\",\"budget_ms\":{\"xks\":%d,\"ekm\":%d},"
                                "\"throttle\":{\"xks_per_store_rps\":%lld,\"ekm_rps\":%lld},"
                                "\"series\":",
                             ts, INFO_XKS_BUDGET_MS, INFO_EKM_BUDGET_MS, (long long)cfg->xks.aws_xks_rate_limit,
                             (long long)cfg->ekm.azure_ekm_rate_limit));
        KW_TRY(kw_history_json(h, (int64_t)now, b));
        KW_TRY(kw_buf_put_str(b, "}"));
        a->resp->status = 200;
        return KW_OK;
}

/* ---- GET /api/v1/ekm ---------------------------------------------------------------- */

/* The key URL base: kw_ekm_key_url of a one-letter name, without "/x". */
static void ekm_url_base(const struct kw_config *cfg, char *out, size_t outsz)
{
        out[0] = '\0';
        if (kw_ekm_key_url(cfg, "x", out, outsz).code == 0 && strlen(out) >= 2)
                out[strlen(out) - 2] = '\0';
}

KW_MUST_USE kw_result admin_ekm_info(struct admin_call *a)
{
        const struct kw_config *cfg = a->front->cfg;
        const struct kw_admin_info *in = a->front->info;
        KW_ENSURE(cfg != NULL, KW_ERR_INTERNAL);
        char base[512];
        ekm_url_base(cfg, base, sizeof base);
        cJSON *d = cJSON_CreateObject();
        KW_ENSURE(d != NULL, KW_ERR_NOMEM);
        cJSON_AddBoolToObject(d, "enabled", cfg->ekm.azure_ekm_enable);
        cJSON_AddStringToObject(d, "url_base", base);
        cJSON_AddStringToObject(d, "path_prefix", cfg->ekm.azure_ekm_path_prefix
                                                          ? cfg->ekm.azure_ekm_path_prefix : "");
        const char *host = cfg->ekm.azure_ekm_public_host;
        cJSON_AddStringToObject(d, "public_host", host != NULL && host[0] ? host : cfg->http.listen);
        cJSON_AddBoolToObject(d, "client_auth", !cfg->ekm.azure_ekm_disable_client_auth);
        cJSON *cns = cJSON_AddArrayToObject(d, "client_cns");
        for (size_t i = 0; cns != NULL && i < cfg->ekm.azure_ekm_client_cns.n; i++)
                cJSON_AddItemToArray(cns, cJSON_CreateString(cfg->ekm.azure_ekm_client_cns.v[i]));
        cJSON *ca = in != NULL ? cJSON_Parse(in->client_ca_json) : cJSON_CreateArray();
        cJSON_AddItemToObject(d, "client_ca", ca != NULL ? ca : cJSON_CreateArray());
        cJSON_AddNumberToObject(d, "rate_limit", (double)cfg->ekm.azure_ekm_rate_limit);
        cJSON_AddStringToObject(d, "api_version", "0.1-preview");
        kw_result r = kw_json_write(d, &a->resp->body);
        cJSON_Delete(d);
        KW_TRY(r);
        a->resp->status = 200;
        return KW_OK;
}

/* ---- GET /api/v1/keys/{name}/versions ------------------------------------------------ */

KW_MUST_USE kw_result admin_keys_versions(struct admin_call *a)
{
        struct kw_cc_call c;
        admin_begin_key(a, KW_OP_KEY_VERSIONS, &c);
        return admin_invoke(a, &c, 200);
}

/* ---- GET /api/v1/nodes ----------------------------------------------------------------- */

/* Custody's KW_OP_NODES document as it came: {"engine","self","state",
 * "detail","nodes":[...]} (docs/api.md#nodes); one entry, this node, for a
 * single appliance on SQLCipher. */
KW_MUST_USE kw_result admin_nodes(struct admin_call *a)
{
        struct kw_cc_call c;
        admin_begin(a, KW_OP_NODES, &c);
        return admin_invoke(a, &c, 200);
}

/* ---- GET /api/v1/attestation ------------------------------------------------------------ */

static int hex_ok(const char *s, size_t n)
{
        if (s == NULL || strlen(s) != n)
                return 0;
        for (; *s; s++)
                if (kw_hex_value((unsigned char)*s) < 0)
                        return 0;
        return 1;
}

static void hex_of(const uint8_t *p, size_t n, char *out)
{
        for (size_t i = 0; i < n; i++)
                snprintf(out + 2 * i, 3, "%02x", p[i]);
}

/* The fields of a raw SEV-SNP report (kwa_snp_parse, attest/verify/
 * snp_report.c) added to snp: measurement, policy, vmpl, reported_tcb,
 * chip_id, version.  KW_ERR_BAD_FIELD when it is not a report. */
kw_result admin_snp_fields(const uint8_t *report, size_t n, cJSON *snp)
{
        struct kwa_snp_report r;
        KW_ENSURE(kwa_snp_parse(report, n, &r) == KWA_OK, KW_ERR_BAD_FIELD);
        char m[2 * 64 + 1], num[24];
        cJSON_AddNumberToObject(snp, "version", r.version);
        hex_of(r.measurement, sizeof r.measurement, m);
        cJSON_AddStringToObject(snp, "measurement", m);
        snprintf(num, sizeof num, "0x%016llx", (unsigned long long)r.policy);
        cJSON_AddStringToObject(snp, "policy", num);
        cJSON_AddBoolToObject(snp, "debug", (r.policy & KWA_SNP_POLICY_DEBUG) != 0);
        cJSON_AddNumberToObject(snp, "vmpl", r.vmpl);
        snprintf(num, sizeof num, "0x%016llx", (unsigned long long)r.reported_tcb);
        cJSON_AddStringToObject(snp, "reported_tcb", num);
        hex_of(r.chip_id, sizeof r.chip_id, m);
        cJSON_AddStringToObject(snp, "chip_id", m);
        return KW_OK;
}

static void add_absent(cJSON *o, const cJSON *piece, const char *fallback)
{
        const cJSON *why = cJSON_GetObjectItemCaseSensitive(piece, "absent");
        cJSON_AddBoolToObject(o, "available", 0);
        cJSON_AddStringToObject(o, "absent", cJSON_IsString(why) && text_ok(why->valuestring)
                                                     ? why->valuestring : fallback);
}

static cJSON *tpm_summary(const cJSON *tpm)
{
        cJSON *o = cJSON_CreateObject();
        if (o == NULL)
                return NULL;
        const cJSON *quote = cJSON_GetObjectItemCaseSensitive(tpm, "quote");
        if (!cJSON_IsObject(tpm) || !cJSON_IsString(quote)) {
                add_absent(o, tpm, "no TPM evidence");
                return o;
        }
        cJSON_AddBoolToObject(o, "available", 1);
        const cJSON *bank = cJSON_GetObjectItemCaseSensitive(tpm, "pcr_bank");
        const cJSON *ak = cJSON_GetObjectItemCaseSensitive(tpm, "ak_handle");
        cJSON_AddStringToObject(o, "pcr_bank", cJSON_IsString(bank) && text_ok(bank->valuestring)
                                                       ? bank->valuestring : "");
        cJSON_AddStringToObject(o, "ak_handle", cJSON_IsString(ak) && text_ok(ak->valuestring)
                                                        ? ak->valuestring : "");
        /* the AK's pin (keyward-attest --ak-sha256): only of a well-formed TPM2B_PUBLIC */
        char akh[KW_TPM_AK_HEX_SIZE];
        const cJSON *akp = cJSON_GetObjectItemCaseSensitive(tpm, "ak_public");
        if (cJSON_IsString(akp) && kw_tpm_ak_sha256(akp->valuestring, akh).code == 0)
                cJSON_AddStringToObject(o, "ak_sha256", akh);
        cJSON *pcrs = cJSON_AddObjectToObject(o, "pcrs");
        const cJSON *in = cJSON_GetObjectItemCaseSensitive(tpm, "pcrs");
        int n = 0;
        for (const cJSON *p = cJSON_IsObject(in) ? in->child : NULL; pcrs != NULL && p != NULL && n < 24;
             p = p->next, n++) {
                uint64_t idx = 0;
                if (admin_parse_u64(p->string, 0, 23, &idx).code == 0 && cJSON_IsString(p) &&
                    (hex_ok(p->valuestring, 64) || hex_ok(p->valuestring, 96)))
                        cJSON_AddStringToObject(pcrs, p->string, p->valuestring);
        }
        cJSON_AddBoolToObject(o, "ek_cert", cJSON_IsString(cJSON_GetObjectItemCaseSensitive(tpm, "ek_cert")));
        cJSON_AddBoolToObject(o, "event_log",
                              cJSON_IsString(cJSON_GetObjectItemCaseSensitive(tpm, "event_log")));
        return o;
}

static cJSON *snp_summary(const cJSON *snp)
{
        cJSON *o = cJSON_CreateObject();
        if (o == NULL)
                return NULL;
        const cJSON *rep = cJSON_GetObjectItemCaseSensitive(snp, "report");
        if (!cJSON_IsObject(snp) || !cJSON_IsString(rep)) {
                add_absent(o, snp, "no SEV-SNP evidence");
                return o;
        }
        struct kw_buf raw;
        kw_buf_init(&raw, 2 * KWA_SNP_REPORT_LEN);
        int ok = kw_b64_decode(rep->valuestring, strlen(rep->valuestring), &raw).code == 0;
        cJSON *fields = cJSON_CreateObject();
        ok = ok && fields != NULL && admin_snp_fields(raw.p, raw.len, fields).code == 0;
        kw_buf_free(&raw);
        if (!ok) {
                cJSON_Delete(fields);
                cJSON_AddBoolToObject(o, "available", 0);
                cJSON_AddStringToObject(o, "absent", "the SEV-SNP report does not parse");
                return o;
        }
        const cJSON *src = cJSON_GetObjectItemCaseSensitive(snp, "source");
        cJSON_AddBoolToObject(o, "available", 1);
        cJSON_AddStringToObject(o, "source", cJSON_IsString(src) && text_ok(src->valuestring)
                                                     ? src->valuestring : "");
        while (fields->child != NULL) {
                cJSON *f = cJSON_DetachItemViaPointer(fields, fields->child);
                cJSON_AddItemToObject(o, f->string, f);   /* copies the key first */
        }
        cJSON_Delete(fields);
        const cJSON *certs = cJSON_GetObjectItemCaseSensitive(snp, "certs");
        cJSON_AddBoolToObject(o, "vcek", cJSON_IsString(cJSON_GetObjectItemCaseSensitive(certs, "vcek")));
        return o;
}

/*
 * The summary of an evidence document (docs/attestation.md) into out:
 * image_version, tls_spki_sha256, tpm, snp.  Only checked values are copied
 * (hex lengths, report parsed); KW_ERR_PROTOCOL when it is not an evidence
 * object at all.  Untrusted input: tests/fuzz/attest_summary_fuzz.c.
 */
kw_result admin_attest_summarize(const uint8_t *json, size_t len, cJSON *out)
{
        cJSON *ev = NULL;
        KW_ENSURE(kw_json_parse(json, len, 6, &ev).code == 0, KW_ERR_PROTOCOL);
        const cJSON *spki = cJSON_GetObjectItemCaseSensitive(ev, "tls_spki_sha256");
        const cJSON *iv = cJSON_GetObjectItemCaseSensitive(ev, "image_version");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(ev, "time");
        if (!cJSON_IsObject(ev) || !cJSON_IsString(spki) || !hex_ok(spki->valuestring, 64)) {
                cJSON_Delete(ev);
                KW_BAIL(KW_ERR_PROTOCOL);
        }
        cJSON_AddStringToObject(out, "image_version", cJSON_IsString(iv) && text_ok(iv->valuestring)
                                                              ? iv->valuestring : "");
        cJSON_AddStringToObject(out, "tls_spki_sha256", spki->valuestring);
        if (cJSON_IsNumber(t))
                cJSON_AddNumberToObject(out, "time", t->valuedouble);
        cJSON_AddItemToObject(out, "tpm", tpm_summary(cJSON_GetObjectItemCaseSensitive(ev, "tpm")));
        cJSON_AddItemToObject(out, "snp", snp_summary(cJSON_GetObjectItemCaseSensitive(ev, "snp")));
        cJSON_AddBoolToObject(out, "azure", cJSON_IsString(cJSON_GetObjectItemCaseSensitive(
                                                    cJSON_GetObjectItemCaseSensitive(ev, "azure"),
                                                    "hcl_report")));
        cJSON_Delete(ev);
        return KW_OK;
}

/* The command that verifies this server from outside; with the AK's pin
 * when the evidence had one (an image policy pins no AK: --ak-sha256). */
static void verify_command(const struct kw_config *cfg, cJSON *d)
{
        char cmd[600];
        const char *ak = cJSON_GetStringValue(
                cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(d, "tpm"), "ak_sha256"));
        snprintf(cmd, sizeof cmd, "keyward-attest verify https://%s --policy policy.json%s%s",
                 cfg->http.listen, ak != NULL ? " --policy-key image-key.pem --ak-sha256 " : "",
                 ak != NULL ? ak : "");
        cJSON_AddStringToObject(d, "verify_command", cmd);
}

/* Collects fresh evidence (a nonce of ours) and summarises it. */
KW_MUST_USE static kw_result attest_collect(struct admin_call *a, cJSON *d)
{
        uint8_t nonce[ATTEST_NONCE_LEN];
        KW_ENSURE(RAND_bytes(nonce, sizeof nonce) == 1, KW_ERR_INTERNAL);
        char nhex[2 * ATTEST_NONCE_LEN + 1];
        hex_of(nonce, sizeof nonce, nhex);
        struct kw_cc_call c;
        kw_cc_begin(a->front->cc, KW_OP_ATTEST, KW_CALLER_PUBLIC, &c);
        kw_cc_put(&c, KW_T_NONCE, nonce, sizeof nonce);
        const char *json = NULL;
        size_t len = 0;
        kw_result r = admin_invoke_json(&c, &json, &len);
        if (r.code == KW_ERR_UNSUPPORTED) {   /* custody could not set it up: why */
                cJSON_AddBoolToObject(d, "ready", 0);
                cJSON_AddStringToObject(d, "detail", kw_err_detail()[0] ? kw_err_detail()
                                                                        : "attestation is not ready");
                return KW_OK;
        }
        KW_TRY(r);
        r = admin_attest_summarize((const uint8_t *)json, len, d);
        kw_cc_end(&c);
        KW_TRY(r);
        cJSON_AddBoolToObject(d, "ready", 1);
        cJSON_AddStringToObject(d, "nonce", nhex);
        unsigned char mine[32];
        const cJSON *spki = cJSON_GetObjectItemCaseSensitive(d, "tls_spki_sha256");
        if (kw_http_tls_spki_sha256(a->front->http, mine) == 0 && cJSON_IsString(spki)) {
                char hex[65];
                hex_of(mine, sizeof mine, hex);
                cJSON_AddBoolToObject(d, "tls_key_matches", strcmp(hex, spki->valuestring) == 0);
        }
        return KW_OK;
}

KW_MUST_USE kw_result admin_attestation(struct admin_call *a)
{
        const struct kw_config *cfg = a->front->cfg;
        KW_ENSURE(cfg != NULL, KW_ERR_INTERNAL);
        cJSON *d = cJSON_CreateObject();
        KW_ENSURE(d != NULL, KW_ERR_NOMEM);
        cJSON_AddBoolToObject(d, "enabled", cfg->attestation.enable);
        kw_result r = KW_OK;
        if (!cfg->attestation.enable)
                cJSON_AddStringToObject(d, "detail", "[attestation] enable = false: no evidence is "
                                                     "collected or served");
        else
                r = attest_collect(a, d);
        if (r.code == 0) {
                verify_command(cfg, d);
                r = kw_json_write(d, &a->resp->body);
        }
        cJSON_Delete(d);
        KW_TRY(r);
        a->resp->status = 200;
        return KW_OK;
}
