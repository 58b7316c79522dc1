/*
 * snp_report_fuzz.c - the verifier's SEV-SNP report and Azure HCL parsers,
 * and the report checks that run before any certificate is trusted.
 */
#include <stdint.h>
#include <string.h>

#include "kwa.h"

static const struct kwa_snp_anchor no_anchors[] = { { NULL, NULL, NULL } };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct kwa_snp_report r;
        if (kwa_snp_parse(data, size, &r) == 0) {
                struct kwa_tcb t = kwa_snp_tcb(r.reported_tcb, "turin");
                (void)t;
        }
        struct kwa_hcl h;
        if (kwa_hcl_parse(data, size, &h) == 0)
                (void)kwa_snp_parse(h.report, h.report_len, &r);
        static struct kwa_checks cs;
        memset(&cs, 0, sizeof cs);
        struct kwa_snp_policy pol;
        memset(&pol, 0, sizeof pol);
        pol.set = 1;
        uint8_t rd[64] = { 0 };
        /* the input as a report, and as a VCEK (parsed by mbedTLS) */
        kwa_snp_verify(&cs, data, size, data, size, no_anchors, 1700000000, rd, &pol, "", 1);
        return 0;
}
