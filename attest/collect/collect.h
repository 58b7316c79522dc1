/*
 * collect.h - attestation evidence of this machine (server side).
 *
 * Collects, for one verifier nonce and the SHA-256 of the TLS certificate's
 * SubjectPublicKeyInfo, whichever of these the platform has (docs/attestation.md):
 *   - a TPM2 quote by a persistent attestation key (AK) over the configured
 *     PCRs (sha256 bank) with qualifyingData = binding, the AK public, the PCR
 *     values, the EK certificate and the TCG boot event log;
 *   - an SEV-SNP report (configfs-tsm, else /dev/sev-guest extended report)
 *     with report_data = binding || 32 zero bytes, and the VCEK/ASK/ARK;
 *   - the Azure HCL report from vTPM NV index 0x01400001.
 * A piece the platform lacks is reported as {"absent":"<why>"}.
 *
 *   binding = SHA-256("KEYWARD-ATTEST-v1\0" || nonce || spki_sha256)
 *
 * Evidence is public and the AK's private part never leaves the TPM, so the
 * front calls this directly; tpm2-tss is never linked into the custody path.
 * All TPM access of a collector is serialised by its mutex (swtpm and
 * /dev/tpm0 have no resource manager); every transient handle is flushed.
 */
#ifndef KW_ATTEST_COLLECT_H
#define KW_ATTEST_COLLECT_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/result.h"

#define KW_ATTEST_NONCE_LEN 32
#define KW_ATTEST_BIND_LEN 32
#define KW_ATTEST_VERSION 1
#define KW_SNP_REPORT_LEN 1184
#define KW_HCL_NV_INDEX 0x01400001u

struct kw_attest;

struct kw_attest_cfg {
        const char *tpm_tcti;        /* tctildr string; "" or NULL = no TPM          */
        const char *pcrs;            /* "0,1,2,3,4,7,11"                              */
        uint32_t ak_handle;          /* persistent handle of the AK                   */
        const char *snp_device;      /* "/dev/sev-guest"; "" = none                   */
        const char *tsm_report_dir;  /* configfs-tsm report dir; "" = none            */
        const char *event_log;       /* path; "" = none                               */
        const char *image_version;
        const char *expected_values_id;
};

/* The /dev/sev-guest system calls, replaceable by tests (a fake device that
 * signs with a test VCEK).  ctx is passed back to every call. */
struct kw_snp_ops {
        int (*open)(void *ctx, const char *path);
        int (*ioctl)(void *ctx, int fd, unsigned long req, void *arg);
        void (*close)(void *ctx, int fd);
        void *ctx;
};
/* The real ones (open O_RDWR|O_CLOEXEC, ioctl, close); also used by
 * keyward-unlock's SEV-SNP binding (appliance/unlock/snp_key.c). */
extern const struct kw_snp_ops kw_snp_real_ops;

/* A collector (copies cfg).  KW_ERR_CONFIG when pcrs is invalid.  The first
 * call sets TSS2_LOG=all+NONE when TSS2_LOG is unset (see collect_tpm.c). */
KW_MUST_USE kw_result kw_attest_new(const struct kw_attest_cfg *cfg, struct kw_attest **ret);
void kw_attest_free(struct kw_attest *a);   /* NULL-safe */
/* Replaces the /dev/sev-guest calls (tests only); ops must outlive a. */
void kw_attest_set_snp_ops(struct kw_attest *a, const struct kw_snp_ops *ops);

/* binding = SHA-256("KEYWARD-ATTEST-v1\0" || nonce || spki_sha256). */
KW_MUST_USE kw_result kw_attest_binding(const uint8_t nonce[KW_ATTEST_NONCE_LEN],
                                        const uint8_t spki_sha256[32],
                                        uint8_t ret[KW_ATTEST_BIND_LEN]);

/* Appends the evidence JSON document to out.  Fails only when out is full
 * or memory runs out; a missing platform piece is part of the document.
 * On success *ret_tpm_problem (may be NULL) is 1 when a TPM is configured
 * but gave no quote, and kw_err_detail() then says why in one sentence (the
 * TCTI, the TSS2 code and what to check) for the caller to log; 0 otherwise.
 * tpm2-tss's own logger is silenced by kw_attest_new (unless TSS2_LOG is
 * set), so this detail is the only report of the failure. */
KW_MUST_USE kw_result kw_attest_collect(struct kw_attest *a, const uint8_t nonce[KW_ATTEST_NONCE_LEN],
                                        const uint8_t spki_sha256[32], struct kw_buf *out,
                                        int *ret_tpm_problem);

/* Parses "N,N,..." (0..23, distinct) into a 24-bit mask; -1 when invalid. */
int kw_attest_pcr_mask(const char *s, uint32_t *ret_mask);

#endif
