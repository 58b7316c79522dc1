/*
 * tpm2_seal.h - the data volume's TPM2 binding, in systemd 252's format
 * (the systemd-tpm2 LUKS2 token), so that systemd's tools and ours open
 * each other's enrollments (docs/unlock.md).
 *
 * Sealing: a transient primary key in the owner hierarchy from systemd's
 * template (ECC P-256, AES-128-CFB; RSA-2048 where the TPM has no ECC), a
 * salted HMAC session bound to it for parameter encryption (the secret
 * never crosses the TPM bus in clear), a policy session over the current
 * values of the chosen PCRs (SHA-256 bank) whose digest becomes the
 * object's authPolicy, and a KEYEDHASH object holding 32 random bytes.
 * The blob is TPM2B_PRIVATE || TPM2B_PUBLIC, marshalled; the LUKS
 * passphrase is the base64 of the 32 bytes.
 *
 * Unsealing makes the same primary, loads the blob, replays the PCR policy
 * and unseals in the encrypted session.  When the PCRs moved, the policy
 * digest differs from the token's: refused before asking the TPM, naming
 * each PCR of the policy with its current value.
 *
 * TSS2_RC codes are converted here, once (KW_ERR_TPM / KW_ERR_TPM_POLICY).
 */
#ifndef KWU_TPM2_SEAL_H
#define KWU_TPM2_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include <tss2/tss2_tpm2_types.h>

#include "../../server/common/buf.h"
#include "../../server/common/result.h"
#include "luks2_check.h"
#include "passphrase.h"

#define KWU_TPM2_SECRET KWU_SECRET_LEN
#define KWU_TPM2_PASSPHRASE KWU_PASSPHRASE_LEN
#define KWU_TPM2_DEFAULT_DEVICE "device:/dev/tpmrm0"

struct kwu_tpm;

/* Connects through a tpm2-tss TCTI ("device:/dev/tpmrm0",
 * "swtpm:host=127.0.0.1,port=2321", ...).  KW_ERR_TPM when there is none. */
KW_MUST_USE kw_result kwu_tpm_open(const char *tcti, struct kwu_tpm **ret);
void kwu_tpm_close(struct kwu_tpm *t);

/* What to seal to: literal PCRs (their current values), and/or PCRs whose
 * policy the image key signs (pk_pem: its RSA public key, PEM text). */
struct kwu_tpm_binding {
        uint32_t pcrs;
        uint32_t pk_pcrs;
        const char *pk_pem;
        size_t pk_pem_len;
};

/*
 * Seals 32 random bytes to b.  On success: the LUKS passphrase (base64,
 * NUL-terminated) in pass (wipe it), the token JSON for keyslot in *token
 * (the caller frees it), with tpm2_pubkey / tpm2_pubkey_pcrs for a signed
 * policy, and with literal PCRs in *pcrs_token a keyward-tpm2-pcrs token
 * recording their values (NULL without literal PCRs; the caller frees it).
 * KW_ERR_BAD_FIELD for a key that is not RSA PEM; KW_ERR_TPM on a TPM
 * failure (also when the PCRs moved while sealing).
 */
KW_MUST_USE kw_result kwu_tpm_seal(struct kwu_tpm *t, const struct kwu_tpm_binding *b, int keyslot,
                                   char pass[KWU_TPM2_PASSPHRASE + 1], char **token, char **pcrs_token);

/* What a systemd-tpm2 token holds (as the header check accepted it), and
 * for a signed policy the signature file's text. */
struct kwu_tpm_token_data {
        const char *blob_b64;
        const char *policy_hex;
        const char *pubkey_b64;         /* NULL without a signed policy */
        const char *sigfile;            /* NULL when none was found      */
        size_t sigfile_len;
        const char *sigfile_name;       /* for the messages              */
        const uint8_t (*expected)[32];  /* the literal PCRs' values at sealing
                                         * (keyward-tpm2-pcrs), NULL if none  */
        uint32_t expected_mask;
};

/*
 * Unseals into the LUKS passphrase.  A signed policy needs the signature
 * of this boot's PCR policy under the token's key.  Failures:
 * KW_ERR_TPM_POLICY when the PCRs differ from sealing time (the detail
 * names each that differs, expected and current value, when d->expected
 * gives the token's policy digest; the current values otherwise) or no
 * signature covers them; KW_ERR_TPM_SIGNATURE when
 * the policy is signed by another key or the signature does not verify;
 * KW_ERR_UNSUPPORTED for a PIN or another bank; KW_ERR_LUKS_TAMPERED for a
 * token that does not parse; KW_ERR_TPM else.
 */
KW_MUST_USE kw_result kwu_tpm_unseal(struct kwu_tpm *t, const struct kwu_token *tok,
                                     const struct kwu_tpm_token_data *d, char pass[KWU_TPM2_PASSPHRASE + 1]);

/*
 * A token's tpm2-blob (base64 of TPM2B_PRIVATE || TPM2B_PUBLIC, nothing
 * after) into its two parts.  KW_ERR_LUKS_TAMPERED when it is not that;
 * the outputs are untouched then.
 */
KW_MUST_USE kw_result kwu_tpm_blob_parse(const char *blob_b64, unsigned token_id, TPM2B_PRIVATE *ret_priv,
                                         TPM2B_PUBLIC *ret_pub);

#endif
