/*
 * tpm2_blob_fuzz.c - a systemd-tpm2 token's tpm2-blob on arbitrary bytes
 * (appliance/unlock/tpm2_seal.c, kwu_tpm_blob_parse): base64, then
 * TPM2B_PRIVATE || TPM2B_PUBLIC with nothing after.
 *
 * The input is the token's string as the header would carry it.  Invariants
 * on success: marshalling the two parts again gives back exactly the decoded
 * bytes (nothing skipped, nothing invented); on failure, only the
 * documented code.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tss2/tss2_mu.h>

#include "../../appliance/unlock/tpm2_seal.h"
#include "common/b64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *s = malloc(size + 1);
        if (s == NULL)
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        TPM2B_PRIVATE priv;
        TPM2B_PUBLIC pub;
        kw_result r = kwu_tpm_blob_parse(s, 1, &priv, &pub);
        if (r.code != 0) {
                if (r.code != KW_ERR_LUKS_TAMPERED)
                        abort();
                free(s);
                return 0;
        }
        struct kw_buf raw;
        kw_buf_init(&raw, 1 << 16);
        if (kw_b64_decode(s, strlen(s), &raw).code != 0)
                abort();
        uint8_t again[8192];
        size_t off = 0;
        if (Tss2_MU_TPM2B_PRIVATE_Marshal(&priv, again, sizeof again, &off) != TSS2_RC_SUCCESS ||
            Tss2_MU_TPM2B_PUBLIC_Marshal(&pub, again, sizeof again, &off) != TSS2_RC_SUCCESS || off != raw.len ||
            memcmp(again, raw.p, off) != 0)
                abort();
        kw_buf_free(&raw);
        free(s);
        return 0;
}
