/*
 * collect.c - the evidence document: binding, version tags, and the pieces
 * of collect_tpm.c and collect_snp.c.  See collect.h.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "common/b64.h"
#include "common/json_io.h"
#include "collect_int.h"

#define BIND_LABEL "KEYWARD-ATTEST-v1" /* followed by its NUL in the hash */
#define B64_MAX (4u << 20)

int kw_attest_pcr_mask(const char *s, uint32_t *ret_mask)
{
        uint32_t mask = 0;
        if (s == NULL)
                return -1;
        while (*s != '\0') {
                unsigned v = 0;
                int digits = 0;
                for (; *s >= '0' && *s <= '9'; s++)
                        if (++digits > 2 || (v = v * 10 + (unsigned)(*s - '0')) > 23)
                                return -1;
                if (digits == 0 || (mask & (1u << v)))
                        return -1;
                mask |= 1u << v;
                if (*s == ',' && s[1] != '\0')
                        s++;
                else if (*s != '\0')
                        return -1;
        }
        *ret_mask = mask;
        return 0;
}

static char *dup_or_empty(const char *s) { return strdup(s != NULL ? s : ""); }

kw_result kw_attest_new(const struct kw_attest_cfg *cfg, struct kw_attest **ret)
{
        uint32_t mask = 0;
        if (kw_attest_pcr_mask(cfg->pcrs, &mask) != 0) {
                kw_err_set_detail("[attestation] pcrs: not a list of PCR numbers 0-23");
                KW_BAIL(KW_ERR_CONFIG);
        }
        kw_collect_tpm_quiet_logs();
        struct kw_attest *a = calloc(1, sizeof *a);
        KW_ENSURE(a != NULL, KW_ERR_NOMEM);
        a->tpm_tcti = dup_or_empty(cfg->tpm_tcti);
        a->snp_device = dup_or_empty(cfg->snp_device);
        a->tsm_report_dir = dup_or_empty(cfg->tsm_report_dir);
        a->event_log = dup_or_empty(cfg->event_log);
        a->image_version = dup_or_empty(cfg->image_version);
        a->expected_id = dup_or_empty(cfg->expected_values_id);
        a->pcr_mask = mask;
        a->ak_handle = cfg->ak_handle;
        pthread_mutex_init(&a->mu, NULL);
        if (!a->tpm_tcti || !a->snp_device || !a->tsm_report_dir || !a->event_log ||
            !a->image_version || !a->expected_id) {
                kw_attest_free(a);
                KW_BAIL(KW_ERR_NOMEM);
        }
        *ret = a;
        return KW_OK;
}

void kw_attest_free(struct kw_attest *a)
{
        if (a == NULL)
                return;
        free(a->tpm_tcti);
        free(a->snp_device);
        free(a->tsm_report_dir);
        free(a->event_log);
        free(a->image_version);
        free(a->expected_id);
        pthread_mutex_destroy(&a->mu);
        free(a);
}

void kw_attest_set_snp_ops(struct kw_attest *a, const struct kw_snp_ops *ops)
{
        pthread_mutex_lock(&a->mu);
        a->snp = *ops;
        pthread_mutex_unlock(&a->mu);
}

kw_result kw_attest_binding(const uint8_t nonce[KW_ATTEST_NONCE_LEN], const uint8_t spki_sha256[32],
                            uint8_t ret[KW_ATTEST_BIND_LEN])
{
        uint8_t msg[sizeof BIND_LABEL + KW_ATTEST_NONCE_LEN + 32];
        memcpy(msg, BIND_LABEL, sizeof BIND_LABEL);   /* with its NUL */
        memcpy(msg + sizeof BIND_LABEL, nonce, KW_ATTEST_NONCE_LEN);
        memcpy(msg + sizeof BIND_LABEL + KW_ATTEST_NONCE_LEN, spki_sha256, 32);
        uint8_t md[EVP_MAX_MD_SIZE];
        unsigned int md_len = 0;
        KW_ENSURE(EVP_Digest(msg, sizeof msg, md, &md_len, EVP_sha256(), NULL) == 1 && md_len == 32,
                  KW_ERR_CRYPTO);
        memcpy(ret, md, KW_ATTEST_BIND_LEN);
        return KW_OK;
}

kw_result kw_collect_absent(cJSON *obj, const char *name, const char *why)
{
        cJSON *o = cJSON_AddObjectToObject(obj, name);
        KW_ENSURE(o != NULL && cJSON_AddStringToObject(o, "absent", why) != NULL, KW_ERR_NOMEM);
        return KW_OK;
}

kw_result kw_collect_add_b64(cJSON *obj, const char *name, const uint8_t *p, size_t n)
{
        struct kw_buf b;
        kw_buf_init(&b, B64_MAX);
        const char *s = NULL;
        kw_result r = kw_b64_encode(p, n, &b);
        if (r.code == 0)
                r = kw_buf_cstr(&b, &s);
        if (r.code == 0 && cJSON_AddStringToObject(obj, name, s) == NULL)
                r = KW_RESULT(KW_ERR_NOMEM);
        kw_buf_free(&b);
        return r;
}

kw_result kw_collect_add_hex(cJSON *obj, const char *name, const uint8_t *p, size_t n)
{
        struct kw_buf b;
        kw_buf_init(&b, 2 * n + 1);
        const char *s = NULL;
        kw_result r = kw_hex_encode(p, n, &b);
        if (r.code == 0)
                r = kw_buf_cstr(&b, &s);
        if (r.code == 0 && cJSON_AddStringToObject(obj, name, s) == NULL)
                r = KW_RESULT(KW_ERR_NOMEM);
        kw_buf_free(&b);
        return r;
}

KW_MUST_USE static kw_result build(struct kw_attest *a, const uint8_t nonce[KW_ATTEST_NONCE_LEN],
                                   const uint8_t spki_sha256[32], const uint8_t bind[32], cJSON *doc)
{
        KW_ENSURE(cJSON_AddNumberToObject(doc, "version", KW_ATTEST_VERSION) != NULL, KW_ERR_NOMEM);
        KW_ENSURE(cJSON_AddStringToObject(doc, "binding", "sha256(KEYWARD-ATTEST-v1\\0|nonce|tls_spki_sha256)") != NULL,
                  KW_ERR_NOMEM);
        KW_TRY(kw_collect_add_hex(doc, "nonce", nonce, KW_ATTEST_NONCE_LEN));
        KW_TRY(kw_collect_add_hex(doc, "tls_spki_sha256", spki_sha256, 32));
        KW_TRY(kw_collect_add_hex(doc, "bind", bind, KW_ATTEST_BIND_LEN));
        KW_ENSURE(cJSON_AddStringToObject(doc, "image_version", a->image_version) != NULL, KW_ERR_NOMEM);
        KW_ENSURE(cJSON_AddStringToObject(doc, "expected_values_id", a->expected_id) != NULL,
                  KW_ERR_NOMEM);
        KW_ENSURE(cJSON_AddNumberToObject(doc, "time", (double)time(NULL)) != NULL, KW_ERR_NOMEM);
        KW_TRY(kw_collect_snp(a, bind, doc));
        KW_TRY(kw_collect_tpm(a, bind, doc));
        return KW_OK;
}

kw_result kw_attest_collect(struct kw_attest *a, const uint8_t nonce[KW_ATTEST_NONCE_LEN],
                            const uint8_t spki_sha256[32], struct kw_buf *out,
                            int *ret_tpm_problem)
{
        uint8_t bind[KW_ATTEST_BIND_LEN];
        KW_TRY(kw_attest_binding(nonce, spki_sha256, bind));
        cJSON *doc = cJSON_CreateObject();
        KW_ENSURE(doc != NULL, KW_ERR_NOMEM);
        char problem[sizeof a->tpm_problem];
        pthread_mutex_lock(&a->mu);
        a->tpm_problem[0] = '\0';
        kw_result r = build(a, nonce, spki_sha256, bind, doc);
        memcpy(problem, a->tpm_problem, sizeof problem);
        pthread_mutex_unlock(&a->mu);
        if (r.code == 0)
                r = kw_json_write(doc, out);
        cJSON_Delete(doc);
        if (r.code == 0 && problem[0] != '\0')
                kw_err_set_detail("%s", problem);
        if (r.code == 0 && ret_tpm_problem != NULL)
                *ret_tpm_problem = problem[0] != '\0';
        return r;
}
