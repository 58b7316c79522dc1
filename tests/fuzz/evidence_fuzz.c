/*
 * evidence_fuzz.c - the evidence JSON and policy JSON parsers of the
 * verifier, and every check of kwa_verify on what parses.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kwa.h"

static const struct kwa_snp_anchor no_anchors[] = { { NULL, NULL, NULL } };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char err[200];
        struct kwa_policy pol;
        memset(&pol, 0, sizeof pol);
        if (kwa_policy_parse((const char *)data, size, &pol, err, sizeof err) == 0)
                kwa_policy_free(&pol);
        struct kwa_evidence ev;
        if (kwa_evidence_parse((const char *)data, size, &ev, err, sizeof err) != 0)
                return 0;
        struct kwa_policy empty;
        memset(&empty, 0, sizeof empty);
        static struct kwa_checks cs;
        memset(&cs, 0, sizeof cs);
        struct kwa_verify_in in = { &ev, &empty, ev.nonce, ev.spki, 1700000000, no_anchors };
        kwa_verify(&in, &cs);
        char *out = NULL;
        if (kwa_policy_from_evidence(&ev, "fuzz", &out) == 0)
                free(out);
        kwa_evidence_free(&ev);
        return 0;
}
