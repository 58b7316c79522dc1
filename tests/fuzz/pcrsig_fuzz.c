/*
 * pcrsig_fuzz.c - the PCR signature file (systemd-measure's format) on
 * arbitrary bytes (appliance/unlock/pcrsig.c, kwu_pcrsig_find).
 *
 * Looked up for a fixed key fingerprint and policy digest, the ones of the
 * seed corpus's entries, so that mutations of a matching entry are reached.
 * Invariants: only the documented codes; a signature found is 1..512 bytes
 * and the entry it came from names that key and that policy.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../appliance/unlock/pcrsig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t FP[32] = { 0x6d, 0x20, 0x13, 0xe4, 0x52, 0xce, 0x16, 0xfb, 0xed, 0xf5, 0x88,
                                0xee, 0x39, 0x5c, 0x1c, 0xe9, 0xf8, 0x3f, 0x14, 0xcf, 0xe9, 0x79,
                                0x68, 0x8b, 0xab, 0x16, 0x7b, 0x77, 0x9f, 0x0d, 0x73, 0x3e };
static const uint8_t POL[32] = { 0x4f, 0xf7, 0x1a, 0xf6, 0x10, 0x68, 0xaf, 0x06, 0x91, 0xff, 0x4f,
                                 0xb1, 0x9a, 0x58, 0xdc, 0x69, 0x52, 0x65, 0xf9, 0x7b, 0x28, 0x6d,
                                 0x51, 0x7f, 0xea, 0x5b, 0x79, 0xd4, 0xc2, 0x89, 0x4e, 0x03 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct kwu_pubkey k;
        memset(&k, 0, sizeof k);
        memcpy(k.fp, FP, sizeof FP);
        uint8_t sig[KWU_SIG_MAX];
        size_t n = 0;
        int other = 0;
        kw_result r = kwu_pcrsig_find((const char *)data, size, "sha256", 1u << 11, &k, POL, sig, &n, &other);
        if (r.code == 0) {
                if (n == 0 || n > KWU_SIG_MAX || other)
                        abort();
        } else if (r.code != KW_ERR_BAD_JSON && r.code != KW_ERR_NOT_FOUND && r.code != KW_ERR_NOMEM &&
                   r.code != KW_ERR_BAD_ENCODING) {
                abort();
        }
        /* the PEM reader on the same bytes: a key or KW_ERR_BAD_FIELD */
        r = kwu_pubkey_from_pem((const char *)data, size > 16384 ? 16384 : size, &k);
        if (r.code != 0 && r.code != KW_ERR_BAD_FIELD)
                abort();
        return 0;
}
