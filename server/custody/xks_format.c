/* xks_format.c - AWS XKS ciphertext metadata, AAD binding and CDIV (xks_format.h). */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "xks_format.h"

size_t kw_xks_md_format(uint32_t version, char out[16])
{
        int n = snprintf(out, 16, KW_XKS_MD_PREFIX "%u", version);
        return n > 0 && n < 16 ? (size_t)n : 0;
}

kw_result kw_xks_md_parse(const uint8_t *md, size_t n, uint32_t *ret_version)
{
        size_t pn = sizeof KW_XKS_MD_PREFIX - 1;
        KW_ENSURE(md != NULL && n > pn && n <= pn + 10 && memcmp(md, KW_XKS_MD_PREFIX, pn) == 0,
                  KW_ERR_DECRYPT);
        KW_ENSURE(md[pn] >= '1' && md[pn] <= '9', KW_ERR_DECRYPT);
        uint64_t v = 0;
        for (size_t i = pn; i < n; i++) {
                KW_ENSURE(md[i] >= '0' && md[i] <= '9', KW_ERR_DECRYPT);
                v = v * 10 + (uint64_t)(md[i] - '0');
        }
        KW_ENSURE(v <= UINT32_MAX, KW_ERR_DECRYPT);
        *ret_version = (uint32_t)v;
        return KW_OK;
}

kw_result kw_xks_aad_bind(const uint8_t *aad, size_t aad_len, const uint8_t *md, size_t md_len,
                          struct kw_buf *out)
{
        KW_ENSURE(aad_len <= KW_XKS_AAD_MAX && md_len <= 255, KW_ERR_TOO_LARGE);
        size_t start = out->len;
        kw_result r = kw_buf_put_u16be(out, (uint16_t)aad_len);
        if (r.code == 0 && aad_len != 0)
                r = kw_buf_put(out, aad, aad_len);
        if (r.code == 0)
                r = kw_buf_put_u8(out, (uint8_t)md_len);
        if (r.code == 0 && md_len != 0)
                r = kw_buf_put(out, md, md_len);
        if (r.code != 0)
                out->len = start;
        return r;
}

kw_result kw_xks_cdiv(const uint8_t *aad, size_t aad_len, const uint8_t *md, size_t md_len,
                      const uint8_t *iv, size_t iv_len, const uint8_t *ct, size_t ct_len,
                      const uint8_t *tag, size_t tag_len, uint8_t ret[32])
{
        EVP_MD_CTX *x = EVP_MD_CTX_new();
        KW_ENSURE(x != NULL, KW_ERR_NOMEM);
        unsigned n = 0;
        int ok = EVP_DigestInit_ex(x, EVP_sha256(), NULL) == 1 &&
                 (aad_len == 0 || EVP_DigestUpdate(x, aad, aad_len) == 1) &&
                 (md_len == 0 || EVP_DigestUpdate(x, md, md_len) == 1) &&
                 (iv_len == 0 || EVP_DigestUpdate(x, iv, iv_len) == 1) &&
                 (ct_len == 0 || EVP_DigestUpdate(x, ct, ct_len) == 1) &&
                 (tag_len == 0 || EVP_DigestUpdate(x, tag, tag_len) == 1) &&
                 EVP_DigestFinal_ex(x, ret, &n) == 1 && n == 32;
        EVP_MD_CTX_free(x);
        KW_ENSURE(ok, KW_ERR_CRYPTO);
        return KW_OK;
}
