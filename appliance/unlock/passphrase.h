/*
 * passphrase.h - the LUKS passphrase a measured binding (TPM2, SEV-SNP)
 * opens its keyslot with: the base64 of its 32 secret bytes, as systemd's
 * systemd-tpm2 token has it (docs/unlock.md).
 */
#ifndef KWU_PASSPHRASE_H
#define KWU_PASSPHRASE_H

#include <stdint.h>

#include "../../server/common/result.h"

#define KWU_SECRET_LEN 32
#define KWU_PASSPHRASE_LEN 44      /* base64 of 32 bytes */

/* pass: the NUL-terminated passphrase (wipe it).  Wiped on failure. */
KW_MUST_USE kw_result kwu_passphrase_b64(const uint8_t secret[KWU_SECRET_LEN], char pass[KWU_PASSPHRASE_LEN + 1]);

#endif
