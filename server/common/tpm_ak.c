/*
 * tpm_ak.c - the SHA-256 pin of an attestation key (tpm_ak.h), as the
 * verifier computes it (attest/verify: kwa_tpm_pub_parse's area).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "b64.h"
#include "buf.h"
#include "tpm_ak.h"

#define AK_PUBLIC_MAX 1024              /* the verifier's bound on a TPMT_PUBLIC */

kw_result kw_tpm_ak_sha256(const char *ak_public_b64, char ret_hex[KW_TPM_AK_HEX_SIZE])
{
        KW_ENSURE(ak_public_b64 != NULL, KW_ERR_BAD_FIELD);
        struct kw_buf raw;
        kw_buf_init(&raw, 2 + AK_PUBLIC_MAX);
        kw_result r = kw_b64_decode(ak_public_b64, strlen(ak_public_b64), &raw);
        size_t size = raw.len >= 2 ? (size_t)raw.p[0] << 8 | raw.p[1] : 0;
        unsigned char md[32];
        unsigned mdn = 0;
        if (r.code == 0 && (raw.len < 3 || size != raw.len - 2 || size > AK_PUBLIC_MAX))
                r = KW_RESULT(KW_ERR_BAD_FIELD);
        else if (r.code == 0 && EVP_Digest(raw.p + 2, size, md, &mdn, EVP_sha256(), NULL) != 1)
                r = KW_RESULT(KW_ERR_CRYPTO);
        else if (r.code != 0)
                r = KW_RESULT(KW_ERR_BAD_FIELD);
        kw_buf_free(&raw);
        KW_TRY(r);
        for (unsigned i = 0; i < sizeof md; i++)
                snprintf(ret_hex + 2 * i, 3, "%02x", md[i]);
        return KW_OK;
}
