/*
 * tpm_ak.h - the pin of an attestation key: SHA-256 of its TPMT_PUBLIC (the
 * bytes inside the evidence's TPM2B_PUBLIC "ak_public"), the value a
 * verifier pins (keyward-attest: policy tpm.ak_sha256, --ak-sha256).  Used
 * by the admin API's attestation summary and by provisioning, which prints
 * it on the console; no TPM code: the bytes come from the evidence.
 */
#ifndef KW_TPM_AK_H
#define KW_TPM_AK_H

#include "result.h"

#define KW_TPM_AK_HEX_SIZE 65           /* 64 hex digits and the NUL */

/* ak_public_b64: standard base64 of a TPM2B_PUBLIC (a big-endian u16 size,
 * then exactly that many bytes, 1-1024).  On success ret_hex is the
 * lower-case hex SHA-256 of those bytes; KW_ERR_BAD_FIELD when it is not
 * such a structure (ret_hex untouched). */
KW_MUST_USE kw_result kw_tpm_ak_sha256(const char *ak_public_b64, char ret_hex[KW_TPM_AK_HEX_SIZE]);

#endif
