/*
 * snp_key.h - the data volume's SEV-SNP binding: a passphrase derived from
 * SNP_GET_DERIVED_KEY (docs/unlock.md).
 *
 * The AMD secure processor derives a key from a root (the chip's VCEK, or
 * the VM root key) mixed with the guest fields selected -- at least the
 * launch policy (so that a debug-enabled VM derives another key) and the
 * launch measurement (so that another image does) -- and a TCB version that
 * must not be above the platform's committed one, so that a key pinned to a
 * TCB cannot be derived on firmware older than it.  The passphrase is
 * HKDF-SHA256 of that key with a purpose label and the volume's UUID, in
 * base64: a derived key serves this one use on this one volume.
 *
 * The keyslot is recorded by a token of our own type, keyward-snp, that
 * says what was bound (luks2_check accepts exactly its fields).  On Azure
 * there is no /dev/sev-guest (the paravisor hides it): the TPM2 binding to
 * the vTPM applies there.
 */
#ifndef KWU_SNP_KEY_H
#define KWU_SNP_KEY_H

#include <stddef.h>
#include <stdint.h>

#include "../../attest/collect/collect.h"   /* struct kw_snp_ops: the device seam */
#include "../../server/common/result.h"
#include "passphrase.h"

#define KWU_SNP_DEFAULT_DEVICE "/dev/sev-guest"
#define KWU_SNP_PASSPHRASE KWU_PASSPHRASE_LEN
#define KWU_SNP_LABEL "keyward-unlock luks2 v1"

/* guest_field_select bits (SEV-SNP ABI, MSG_KEY_REQ) */
#define KWU_SNP_F_POLICY (1u << 0)
#define KWU_SNP_F_IMAGE_ID (1u << 1)
#define KWU_SNP_F_FAMILY_ID (1u << 2)
#define KWU_SNP_F_MEASUREMENT (1u << 3)
#define KWU_SNP_F_GUEST_SVN (1u << 4)
#define KWU_SNP_F_TCB_VERSION (1u << 5)
#define KWU_SNP_F_KNOWN 0x3fu
#define KWU_SNP_F_REQUIRED (KWU_SNP_F_POLICY | KWU_SNP_F_MEASUREMENT | KWU_SNP_F_TCB_VERSION)

/* What a keyward-snp token records. */
struct kwu_snp_bind {
        uint32_t root;          /* 0: VCEK, 1: VMRK */
        uint32_t fields;        /* guest_field_select, KWU_SNP_F_* */
        uint32_t vmpl;          /* 0..3 */
        uint32_t guest_svn;
        uint64_t tcb;           /* the pinned TCB version */
};


/*
 * The passphrase for volume uuid under b, NUL-terminated in pass (wipe it).
 * ops: the device calls (NULL: the real ones; tests may pass a fake).
 * KW_ERR_SNP when there is no guest device (with Azure's case said) or the
 * request fails; KW_ERR_SNP_TCB when the firmware refuses the request
 * because the pinned TCB (or SVN) is above the platform's or the VMPL below
 * ours; KW_ERR_INPUT for a binding without policy, measurement and TCB.
 */
KW_MUST_USE kw_result kwu_snp_passphrase(const struct kw_snp_ops *ops, const char *device,
                                         const struct kwu_snp_bind *b, const char *uuid,
                                         char pass[KWU_SNP_PASSPHRASE + 1]);

/* What this guest's attestation report says of the platform and of it. */
struct kwu_snp_platform {
        uint64_t committed_tcb;   /* the TCB the firmware committed to (no rollback below) */
        uint64_t reported_tcb;    /* the TCB the host has the report state            */
        uint32_t vmpl;            /* the VMPL this guest runs at                      */
};

/*
 * Asks the firmware for a report (SNP_GET_REPORT, no user data) and reads
 * those fields: what enroll pins when the command line does not say.
 * KW_ERR_SNP when there is no guest device or the request fails.
 */
KW_MUST_USE kw_result kwu_snp_platform(const struct kw_snp_ops *ops, const char *device,
                                       struct kwu_snp_platform *ret);

/* The keyward-snp token JSON for keyslot (the caller frees it), NULL without memory. */
char *kwu_snp_token_json(const struct kwu_snp_bind *b, int keyslot);

#endif
