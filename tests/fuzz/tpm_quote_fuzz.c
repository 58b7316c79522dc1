/*
 * tpm_quote_fuzz.c - the verifier's TPM structure parsers (TPM2B_PUBLIC,
 * TPMS_ATTEST, TPMT_SIGNATURE), the signature check on what parses, and the
 * TCG event log replay.  Input: u16be length of the public, u16be length of
 * the attest, then public || attest || signature.
 */
#include <stdint.h>
#include <string.h>

#include "kwa.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        uint8_t pcrs[24][32];
        uint32_t seen;
        size_t events;
        (void)kwa_eventlog_replay(data, size, pcrs, &seen, &events);
        if (size < 4)
                return 0;
        size_t pl = (size_t)data[0] << 8 | data[1], al = (size_t)data[2] << 8 | data[3];
        const uint8_t *p = data + 4;
        size_t left = size - 4;
        if (pl > left || al > left - pl)
                return 0;
        struct kwa_tpm_pub pub;
        struct kwa_tpm_attest at;
        struct kwa_tpm_sig sig;
        int a = kwa_tpm_pub_parse(p, pl, &pub);
        int b = kwa_tpm_attest_parse(p + pl, al, &at);
        int c = kwa_tpm_sig_parse(p + pl + al, left - pl - al, &sig);
        if (a == 0 && c == 0)
                (void)kwa_tpm_sig_verify(&pub, &sig, p + pl, al);
        (void)b;
        return 0;
}
