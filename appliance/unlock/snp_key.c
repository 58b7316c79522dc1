/* snp_key.c - the SEV-SNP derived-key passphrase (snp_key.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <cJSON.h>
#include <linux/sev-guest.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

#include "passphrase.h"
#include "snp_key.h"

#define FW_INVALID_PARAM 0x16u   /* MSG_KEY_RSP status: a field above what the platform allows */

/* HKDF-SHA256(ikm = the derived key, info = label || uuid) -> 32 bytes. */
static kw_result hkdf(const uint8_t key[32], const char *uuid, uint8_t out[32])
{
        char info[128];
        int n = snprintf(info, sizeof info, "%s %s", KWU_SNP_LABEL, uuid);
        KW_ENSURE(n > 0 && (size_t)n < sizeof info, KW_ERR_INPUT);
        EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
        EVP_KDF_CTX *c = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
        OSSL_PARAM p[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
                OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)key, 32),
                OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, (size_t)n),
                OSSL_PARAM_construct_end(),
        };
        int ok = c != NULL && EVP_KDF_derive(c, out, 32, p) == 1;
        EVP_KDF_CTX_free(c);
        EVP_KDF_free(kdf);
        KW_ENSURE(ok, KW_ERR_CRYPTO);
        return KW_OK;
}

/* Opens the guest device, saying why not (Azure's case included). */
static int snp_open(const struct kw_snp_ops *ops, const char *device)
{
        int fd = ops->open(ops->ctx, device);
        if (fd < 0)
                kw_err_set_detail("no SEV-SNP guest device %s (%s); on Azure the paravisor hides it: bind to its "
                                  "vTPM instead",
                                  device, strerror(errno));
        return fd;
}

kw_result kwu_snp_passphrase(const struct kw_snp_ops *ops, const char *device, const struct kwu_snp_bind *b,
                             const char *uuid, char pass[KWU_SNP_PASSPHRASE + 1])
{
        KW_ENSURE(device != NULL && b != NULL && uuid != NULL && pass != NULL, KW_ERR_INPUT);
        if ((b->fields & KWU_SNP_F_REQUIRED) != KWU_SNP_F_REQUIRED || (b->fields & ~KWU_SNP_F_KNOWN) || b->root > 1 ||
            b->vmpl > 3) {
                kw_err_set_detail("an SEV-SNP binding selects at least the policy, the measurement and the TCB");
                KW_BAIL(KW_ERR_INPUT);
        }
        if (ops == NULL)
                ops = &kw_snp_real_ops;
        int fd = snp_open(ops, device);
        if (fd < 0)
                KW_BAIL(KW_ERR_SNP);
        struct snp_derived_key_req req = { .root_key_select = b->root, .guest_field_select = b->fields,
                                           .vmpl = b->vmpl, .guest_svn = b->guest_svn, .tcb_version = b->tcb };
        struct snp_derived_key_resp resp;
        memset(&resp, 0, sizeof resp);
        struct snp_guest_request_ioctl io = { .msg_version = 1, .req_data = (uint64_t)(uintptr_t)&req,
                                              .resp_data = (uint64_t)(uintptr_t)&resp };
        int rc = ops->ioctl(ops->ctx, fd, SNP_GET_DERIVED_KEY, &io);
        int e = errno;
        ops->close(ops->ctx, fd);
        uint32_t status;
        memcpy(&status, resp.data, sizeof status);   /* MSG_KEY_RSP: status, 28 reserved, the key */
        kw_result r = KW_OK;
        if (rc != 0 && (uint32_t)io.exitinfo2 == FW_INVALID_PARAM) {
                status = FW_INVALID_PARAM;
        } else if (rc != 0) {
                kw_err_set_detail("SNP_GET_DERIVED_KEY failed: %s (firmware 0x%x)", strerror(e),
                                  (unsigned)(uint32_t)io.exitinfo2);
                r = KW_RESULT(KW_ERR_SNP);
        }
        if (r.code == 0 && status == FW_INVALID_PARAM) {
                kw_err_set_detail("the firmware will not derive the key: the pinned TCB 0x%016llx (or guest SVN %u) "
                                  "is above this platform's, or VMPL %u is below this guest's",
                                  (unsigned long long)b->tcb, b->guest_svn, b->vmpl);
                r = KW_RESULT(KW_ERR_SNP_TCB);
        } else if (r.code == 0 && status != 0) {
                kw_err_set_detail("the firmware refused the key request (status 0x%x)", status);
                r = KW_RESULT(KW_ERR_SNP);
        }
        uint8_t out[32];
        if (r.code == 0)
                r = hkdf(resp.data + 32, uuid, out);
        OPENSSL_cleanse(&resp, sizeof resp);
        if (r.code == 0)
                r = kwu_passphrase_b64(out, pass);
        OPENSSL_cleanse(out, sizeof out);
        return r;
}

static uint64_t le64(const uint8_t *p)
{
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
                v = v << 8 | p[i];
        return v;
}

#define REPORT_LEN 0x4A0u          /* ATTESTATION_REPORT */
#define OFF_VMPL 0x030u
#define OFF_REPORTED_TCB 0x180u
#define OFF_COMMITTED_TCB 0x1E0u

kw_result kwu_snp_platform(const struct kw_snp_ops *ops, const char *device, struct kwu_snp_platform *ret)
{
        KW_ENSURE(device != NULL && ret != NULL, KW_ERR_INPUT);
        if (ops == NULL)
                ops = &kw_snp_real_ops;
        int fd = snp_open(ops, device);
        if (fd < 0)
                KW_BAIL(KW_ERR_SNP);
        struct snp_report_req req;
        struct snp_report_resp resp;
        memset(&req, 0, sizeof req);
        memset(&resp, 0, sizeof resp);
        struct snp_guest_request_ioctl io = { .msg_version = 1, .req_data = (uint64_t)(uintptr_t)&req,
                                              .resp_data = (uint64_t)(uintptr_t)&resp };
        int rc = ops->ioctl(ops->ctx, fd, SNP_GET_REPORT, &io);
        int e = errno;
        ops->close(ops->ctx, fd);
        /* MSG_REPORT_RSP: status, report size, 24 reserved, the report */
        uint32_t status, size;
        memcpy(&status, resp.data, sizeof status);
        memcpy(&size, resp.data + 4, sizeof size);
        if (rc != 0 || status != 0 || size < REPORT_LEN) {
                kw_err_set_detail("SNP_GET_REPORT failed: %s (firmware 0x%x, status 0x%x)", rc ? strerror(e) : "refused",
                                  (unsigned)(uint32_t)io.exitinfo2, status);
                KW_BAIL(KW_ERR_SNP);
        }
        const uint8_t *r = resp.data + 32;
        uint32_t vmpl;
        memcpy(&vmpl, r + OFF_VMPL, sizeof vmpl);
        if (vmpl > 3) {
                kw_err_set_detail("the attestation report gives VMPL %u", vmpl);
                KW_BAIL(KW_ERR_SNP);
        }
        *ret = (struct kwu_snp_platform){ .committed_tcb = le64(r + OFF_COMMITTED_TCB),
                                          .reported_tcb = le64(r + OFF_REPORTED_TCB), .vmpl = vmpl };
        return KW_OK;
}

static const char *const field_names[] = { "policy", "image_id", "family_id", "measurement", "guest_svn",
                                           "tcb_version" };

char *kwu_snp_token_json(const struct kwu_snp_bind *b, int keyslot)
{
        cJSON *o = cJSON_CreateObject(), *ks = cJSON_CreateArray(), *f = cJSON_CreateArray();
        char slot[12], tcb[20];
        snprintf(slot, sizeof slot, "%d", keyslot);
        snprintf(tcb, sizeof tcb, "%016llx", (unsigned long long)b->tcb);
        char *out = NULL;
        if (o != NULL && ks != NULL && f != NULL) {
                cJSON_AddStringToObject(o, "type", "keyward-snp");
                cJSON_AddItemToArray(ks, cJSON_CreateString(slot));
                cJSON_AddItemToObject(o, "keyslots", ks);
                ks = NULL;
                cJSON_AddStringToObject(o, "root_key", b->root == 0 ? "vcek" : "vmrk");
                for (unsigned i = 0; i < sizeof field_names / sizeof field_names[0]; i++)
                        if (b->fields & (1u << i))
                                cJSON_AddItemToArray(f, cJSON_CreateString(field_names[i]));
                cJSON_AddItemToObject(o, "fields", f);
                f = NULL;
                cJSON_AddNumberToObject(o, "vmpl", b->vmpl);
                cJSON_AddNumberToObject(o, "guest_svn", b->guest_svn);
                cJSON_AddStringToObject(o, "tcb_version", tcb);
                cJSON_AddStringToObject(o, "label", KWU_SNP_LABEL);
                out = cJSON_PrintUnformatted(o);
        }
        cJSON_Delete(o);
        cJSON_Delete(ks);
        cJSON_Delete(f);
        return out;
}
