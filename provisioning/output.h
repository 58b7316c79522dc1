/*
 * output.h - what the customer gets back from provisioning, once: on the
 * serial console (the one place a cloud shows a new VM's output) and in a
 * file only root reads (data/provision/first-boot.txt, mode 0400).  Never
 * in a log line, never in cloud metadata.
 *
 * It holds the data volume's recovery key, the first admin token when one
 * was generated, the TLS certificate's fingerprint (and the CSR to sign in
 * csr mode), the instance's attestation key pin and the command that
 * verifies the appliance from outside with it (run_api.h: kwp_ak_pin), each
 * AWS XKS key store's import file and the Azure EKM URLs.  Once written,
 * the recovery key's own file is removed: first-boot.txt is its one copy
 * on the appliance (the customer should keep it offline and may delete
 * the file).
 */
#ifndef KWP_OUTPUT_H
#define KWP_OUTPUT_H

#include "../server/common/result.h"
#include "../server/config.h"
#include "doc.h"
#include "run.h"
#include "runfs.h"

/* doc_sha: the document's SHA-256 (hex), named in the output's first line
 * so that a run stopped after writing it shows that file again. */
KW_MUST_USE kw_result kwp_output(const struct kwp_doc *doc, const char *doc_sha, const struct kw_config *cfg,
                                 const struct kwp_run_opts *o, const struct kwp_paths *p);

/* The name clients reach the appliance by (the first TLS name, else the
 * listen address) and its port suffix (":8443", or "" for 443). */
void kwp_public_host(const struct kwp_doc *doc, const struct kw_config *cfg, char *host, size_t cap);

#endif
