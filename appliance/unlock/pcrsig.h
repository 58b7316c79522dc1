/*
 * pcrsig.h - signed PCR policies: the signature file systemd-measure
 * writes (the UKI's .pcrsig section, at boot /run/systemd/tpm2-pcr-signature.json)
 * and the image's public key (docs/unlock.md).
 *
 * The file: {"<bank>": [{"pcrs": [11], "pkfp": "<hex SHA-256 of the RSA
 * public key, PKCS#1 DER>", "pol": "<hex PolicyPCR digest>", "sig":
 * "<base64 RSASSA-PKCS1-v1_5 SHA-256 signature of pol>"}, ...]}: one entry
 * per boot phase the image key signed.  Parsed strictly (it arrives from the
 * boot image, which an attacker may swap; a wrong signature is the TPM's to
 * refuse, a malformed file ours).
 */
#ifndef KWU_PCRSIG_H
#define KWU_PCRSIG_H

#include <stddef.h>
#include <stdint.h>

#include "../../server/common/result.h"

#define KWU_PCRSIG_DEFAULT "/run/systemd/tpm2-pcr-signature.json"
#define KWU_PCRSIG_MAX (256u * 1024u)
#define KWU_SIG_MAX 512u                /* RSA-4096 */

/* The image's public key: RSA, exponent 65537, 2048..4096 bits. */
struct kwu_pubkey {
        uint8_t n[512];
        size_t n_len;
        uint8_t fp[32];                 /* SHA-256 of the PKCS#1 DER: the file's "pkfp" */
};

/* From PEM text (SubjectPublicKeyInfo).  KW_ERR_BAD_FIELD when it is not
 * such a key. */
/* The image's PCR-policy key where systemd-cryptenroll looks for it, in its
 * order (/etc/systemd, /run/systemd where systemd-stub puts the UKI's
 * .pcrpkey, /usr/lib/systemd where the image installs it): the first that
 * exists, or NULL. */
const char *kwu_image_key_default(void);

KW_MUST_USE kw_result kwu_pubkey_from_pem(const char *pem, size_t len, struct kwu_pubkey *ret);

/*
 * In the signature file text, the signature for bank, PCR mask, key and
 * policy digest (pol, 32 bytes).  KW_ERR_BAD_JSON when the file is not
 * that format; KW_ERR_NOT_FOUND when it holds no signature for these (the
 * boot is not one the key signed), and then *ret_other_key says whether it
 * holds one for this policy under another key.  *ret_len: the signature's
 * length.
 */
KW_MUST_USE kw_result kwu_pcrsig_find(const char *json, size_t len, const char *bank, uint32_t pcrs,
                                      const struct kwu_pubkey *key, const uint8_t pol[32],
                                      uint8_t sig[KWU_SIG_MAX], size_t *ret_len, int *ret_other_key);

#endif
