/*
 * collect_int.h - private to the collector sources of attest/collect.
 */
#ifndef KW_ATTEST_COLLECT_INT_H
#define KW_ATTEST_COLLECT_INT_H

#include <pthread.h>

#include <cJSON.h>

#include "collect.h"

struct kw_attest {
        char *tpm_tcti, *snp_device, *tsm_report_dir, *event_log, *image_version, *expected_id;
        uint32_t pcr_mask;
        uint32_t ak_handle;
        pthread_mutex_t mu;           /* one TPM / sev-guest conversation at a time */
        struct kw_snp_ops snp;
        char tpm_problem[512];        /* under mu: why the configured TPM gave no quote
                                         in the last collection, "" when it did */
};

/* Keeps tpm2-tss from writing its own lines on stderr (TSS2_LOG=all+NONE
 * unless the operator set TSS2_LOG).  Idempotent; before any TSS call. */
void kw_collect_tpm_quiet_logs(void);

/* Adds name: {"absent": why} to obj (why: a short sentence). */
KW_MUST_USE kw_result kw_collect_absent(cJSON *obj, const char *name, const char *why);
/* Adds name: base64(p[0..n)) to obj. */
KW_MUST_USE kw_result kw_collect_add_b64(cJSON *obj, const char *name, const uint8_t *p, size_t n);
/* Adds name: lowercase hex of p[0..n) to obj. */
KW_MUST_USE kw_result kw_collect_add_hex(cJSON *obj, const char *name, const uint8_t *p, size_t n);

/* Adds "tpm" and "azure" to doc (each a piece or {"absent":...}); sets
 * a->tpm_problem when a configured TPM gave no quote. */
KW_MUST_USE kw_result kw_collect_tpm(struct kw_attest *a, const uint8_t bind[KW_ATTEST_BIND_LEN],
                                     cJSON *doc);
/* Adds "snp" to doc. */
KW_MUST_USE kw_result kw_collect_snp(struct kw_attest *a, const uint8_t bind[KW_ATTEST_BIND_LEN],
                                     cJSON *doc);

#endif
