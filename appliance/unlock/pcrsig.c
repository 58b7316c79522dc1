/* pcrsig.c - systemd-measure's signature file and the image's public key (pcrsig.h). */
#include <string.h>
#include <unistd.h>

#include <cJSON.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "../../server/common/b64.h"
#include "../../server/common/json_io.h"
#include "pcrsig.h"

kw_result kwu_pubkey_from_pem(const char *pem, size_t len, struct kwu_pubkey *ret)
{
        KW_ENSURE(pem != NULL && ret != NULL && len <= 16384, KW_ERR_INPUT);
        BIO *b = BIO_new_mem_buf(pem, (int)len);
        EVP_PKEY *pk = b != NULL ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        BIGNUM *n = NULL, *e = NULL;
        unsigned char *der = NULL;
        struct kwu_pubkey k;
        memset(&k, 0, sizeof k);
        int ok = pk != NULL && EVP_PKEY_base_id(pk) == EVP_PKEY_RSA &&
                 EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &n) == 1 &&
                 EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &e) == 1 && BN_get_word(e) == 65537 &&
                 BN_num_bits(n) >= 2048 && BN_num_bits(n) <= 4096;
        if (ok) {
                k.n_len = (size_t)BN_num_bytes(n);
                ok = BN_bn2bin(n, k.n) == (int)k.n_len;
        }
        int dl = ok ? i2d_PublicKey(pk, &der) : -1;   /* PKCS#1 RSAPublicKey, as systemd's pkfp */
        ok = ok && dl > 0 && EVP_Digest(der, (size_t)dl, k.fp, NULL, EVP_sha256(), NULL) == 1;
        OPENSSL_free(der);
        BN_free(n);
        BN_free(e);
        EVP_PKEY_free(pk);
        if (!ok) {
                kw_err_set_detail("the PCR policy key is not an RSA public key (PEM, exponent 65537, 2048..4096 bits)");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        *ret = k;
        return KW_OK;
}

static int hex_is(const cJSON *v, const uint8_t *want, size_t n)
{
        if (!cJSON_IsString(v) || strlen(v->valuestring) != 2 * n)
                return 0;
        for (size_t i = 0; i < n; i++) {
                int hi = kw_hex_value(v->valuestring[2 * i]), lo = kw_hex_value(v->valuestring[2 * i + 1]);
                if (hi < 0 || lo < 0 || (uint8_t)(hi << 4 | lo) != want[i])
                        return 0;
        }
        return 1;
}

/* A "pcrs" array as a mask; 0 when it is not one. */
static uint32_t pcr_mask(const cJSON *a)
{
        uint32_t m = 0;
        if (!cJSON_IsArray(a))
                return 0;
        for (const cJSON *e = a->child; e != NULL; e = e->next) {
                if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 23 ||
                    e->valuedouble != (double)(int)e->valuedouble)
                        return 0;
                m |= 1u << (int)e->valuedouble;
        }
        return m;
}

kw_result kwu_pcrsig_find(const char *json, size_t len, const char *bank, uint32_t pcrs,
                          const struct kwu_pubkey *key, const uint8_t pol[32], uint8_t sig[KWU_SIG_MAX],
                          size_t *ret_len, int *ret_other_key)
{
        KW_ENSURE(json != NULL && bank != NULL && key != NULL && pol != NULL && sig != NULL && ret_len != NULL &&
                          ret_other_key != NULL,
                  KW_ERR_INPUT);
        *ret_other_key = 0;
        if (len > KWU_PCRSIG_MAX) {
                kw_err_set_detail("the PCR signature file is over %u bytes", KWU_PCRSIG_MAX);
                KW_BAIL(KW_ERR_BAD_JSON);
        }
        cJSON *root = NULL;
        kw_result r = kw_json_parse((const uint8_t *)json, len, 6, &root);
        if (r.code != 0) {
                if (r.code != KW_ERR_NOMEM)
                        kw_err_set_detail("the PCR signature file is not strict JSON: %s", kw_err_detail());
                return r.code == KW_ERR_NOMEM ? r : KW_RESULT(KW_ERR_BAD_JSON);
        }
        const cJSON *entries = cJSON_GetObjectItemCaseSensitive(root, bank);
        r = KW_RESULT(KW_ERR_NOT_FOUND);
        if (entries != NULL && !cJSON_IsArray(entries))
                r = KW_RESULT(KW_ERR_BAD_JSON);
        for (const cJSON *e = entries != NULL ? entries->child : NULL; e != NULL && r.code == KW_ERR_NOT_FOUND;
             e = e->next) {
                const cJSON *s = cJSON_GetObjectItemCaseSensitive(e, "sig");
                if (!cJSON_IsObject(e) || !cJSON_IsString(s)) {
                        r = KW_RESULT(KW_ERR_BAD_JSON);
                        break;
                }
                if (pcr_mask(cJSON_GetObjectItemCaseSensitive(e, "pcrs")) != pcrs ||
                    !hex_is(cJSON_GetObjectItemCaseSensitive(e, "pol"), pol, 32))
                        continue;
                if (!hex_is(cJSON_GetObjectItemCaseSensitive(e, "pkfp"), key->fp, sizeof key->fp)) {
                        *ret_other_key = 1;
                        continue;
                }
                struct kw_buf b;
                kw_buf_init(&b, KWU_SIG_MAX);
                r = kw_b64_decode(s->valuestring, strlen(s->valuestring), &b);
                if (r.code == 0 && b.len > 0) {
                        memcpy(sig, b.p, b.len);
                        *ret_len = b.len;
                } else {
                        r = KW_RESULT(KW_ERR_BAD_JSON);
                }
                kw_buf_free(&b);
        }
        cJSON_Delete(root);
        if (r.code == KW_ERR_BAD_JSON)
                kw_err_set_detail("the PCR signature file is not systemd-measure's format");
        else if (r.code == KW_ERR_NOT_FOUND)
                kw_err_set_detail("no signature in it for this boot's PCR policy under the enrolled key");
        return r;
}

const char *kwu_image_key_default(void)
{
        static const char *const paths[] = { "/etc/systemd/tpm2-pcr-public-key.pem",
                                             "/run/systemd/tpm2-pcr-public-key.pem",
                                             "/usr/lib/systemd/tpm2-pcr-public-key.pem", NULL };
        for (size_t i = 0; paths[i] != NULL; i++)
                if (access(paths[i], F_OK) == 0)
                        return paths[i];
        return NULL;
}
