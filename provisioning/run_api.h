/*
 * run_api.h - the provisioning steps that talk to the started appliance
 * through its own listeners on this machine: the initial keys (admin API)
 * and the self-test (selftest.h).  TLS is pinned to the appliance's own
 * key (the host name of a loopback connection proves nothing).
 */
#ifndef KWP_RUN_API_H
#define KWP_RUN_API_H

#include "../server/common/result.h"
#include "../server/config.h"
#include "doc.h"
#include "run.h"
#include "runfs.h"

/* With [provision.admin] token_sha256 and stores or keys to make: a token
 * of provisioning's own, made by keywardd --recover-admin (audited) into
 * [admin] token_file while the services do not run yet, and revoked once
 * they are made. */
KW_MUST_USE kw_result kwp_provisioning_token(const struct kwp_doc *doc, const struct kw_config *cfg,
                                             const struct kwp_run_opts *o, const struct kwp_paths *p);

/* The document's [key.<name>] keys, created with the first admin token; a
 * key of that name already there (a run resumed) is kept. */
KW_MUST_USE kw_result kwp_initial_keys(const struct kwp_doc *doc, const struct kw_config *cfg,
                                       const struct kwp_run_opts *o, const struct kwp_paths *p);

/* The instance's attestation key pin (keyward-attest verify --ak-sha256),
 * from the started server's own evidence: GET /attestation on the main
 * listener (TLS pinned to the appliance's key) with a fresh nonce, the
 * SHA-256 of the TPMT_PUBLIC in its tpm.ak_public (server/common/tpm_ak.h).
 * No TPM code here. */
struct kwp_ak_pin {
        char sha256[65];             /* "" when there is none           */
        char why[300];               /* then why (for the output)        */
};
/* Always fills ret: no TPM in the evidence, attestation off or an answer
 * that does not say are a pin of "" and the reason, not a failure (the
 * output still goes to the customer). */
void kwp_ak_pin(const struct kw_config *cfg, const struct kwp_run_opts *o, const struct kwp_paths *p,
                struct kwp_ak_pin *ret);

/* healthz, XKS health with the first store's credential, signed for its
 * region (xks_region: the document's, NULL for the default), EKM info. */
KW_MUST_USE kw_result kwp_run_selftest(const struct kw_config *cfg, const struct kwp_run_opts *o,
                                       const struct kwp_paths *p, const char *xks_region);

#endif
