/*
 * hsm.h - the HSM link: any PKCS#11 module, a pool of logged-in sessions,
 * the master key, and sealing/unsealing of small secrets under it.
 *
 * Only the custody process uses this module.  CK_RV values are converted to
 * kw_result here and nowhere else (the original is kept in the detail).
 *
 * Availability: calls wait at most timeout_ms for a free session
 * (KW_ERR_HSM_TIMEOUT).  A call that fails with a "device gone" class of
 * CK_RV (DEVICE_REMOVED, DEVICE_ERROR, TOKEN_NOT_PRESENT, SESSION_CLOSED,
 * SESSION_HANDLE_INVALID, CRYPTOKI_NOT_INITIALIZED, ...) marks the link down:
 * from then on calls fail at once with KW_ERR_HSM_UNAVAILABLE, and a
 * background thread re-opens sessions and logs in again every
 * retry_interval_ms until it succeeds, when the link is up again.  A call
 * that is still running after timeout_ms marks the link "slow": new calls
 * fail at once with KW_ERR_HSM_TIMEOUT until it returns.
 *
 * Sealed blob format (version 1), the AAD is bound in both forms:
 *   u8 1 | u8 mech | body
 *   mech 1 (CKM_AES_GCM):          iv[12] | ciphertext | tag[16]   (AAD = aad)
 *   mech 2 (CKM_AES_KEY_WRAP_PAD): RFC 5649 wrap of (u16be aad_len | aad | plaintext),
 *                                  checked on unseal
 * GCM is used when the module offers it for encryption with the master key,
 * RFC 5649 otherwise.
 */
#ifndef KW_HSM_H
#define KW_HSM_H

#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/result.h"
#include "../common/secret.h"

struct kw_hsm;

struct kw_hsm_config {
        const char *module;            /* path to the PKCS#11 module            */
        const char *token_label;
        const char *pin_file;          /* PIN = file content, one trailing newline stripped */
        const char *master_key_label;
        int create_master_key;         /* create it (AES-256, sensitive, never
                                          extractable, token object) if absent */
        unsigned sessions;             /* pool size, >= 1                       */
        unsigned timeout_ms;
        unsigned retry_interval_ms;
};

/*
 * Loads the module, finds the token, opens and logs in the sessions, finds
 * (or creates) the master key.  Errors: HSM_MODULE, HSM_TOKEN, HSM_PIN,
 * HSM_NO_MASTER_KEY, HSM_MECHANISM, HSM_UNAVAILABLE, IO (pin file), each with
 * a one-line detail.  *ret_created (may be NULL) is 1 when the master key was
 * created by this call.
 */
KW_MUST_USE kw_result kw_hsm_open(const struct kw_hsm_config *cfg, struct kw_hsm **ret,
                                  int *ret_created);
void kw_hsm_close(struct kw_hsm *h);

/* Seals pt under the master key, binding aad; appends the blob to out. */
KW_MUST_USE kw_result kw_hsm_seal(struct kw_hsm *h, const uint8_t *aad, size_t aad_len,
                                  const uint8_t *pt, size_t pt_len, struct kw_buf *out);
/* Unseals a blob; KW_ERR_HSM_UNWRAP when it does not authenticate under the
 * master key with this aad.  *ret is a secret owned by the caller. */
KW_MUST_USE kw_result kw_hsm_unseal(struct kw_hsm *h, const uint8_t *aad, size_t aad_len,
                                    const uint8_t *blob, size_t blob_len, struct kw_secret *ret);
/* Fills buf with n random bytes from the HSM's generator. */
KW_MUST_USE kw_result kw_hsm_random(struct kw_hsm *h, uint8_t *buf, size_t n);
/* Deep check: seal + unseal of random bytes.  *ret_us = time taken. */
KW_MUST_USE kw_result kw_hsm_check(struct kw_hsm *h, uint64_t *ret_us);

enum kw_hsm_state { KW_HSM_UP = 0, KW_HSM_DOWN = 1, KW_HSM_SLOW = 2 };
enum kw_hsm_state kw_hsm_state(const struct kw_hsm *h);
const char *kw_hsm_mechanism_name(const struct kw_hsm *h);  /* "AES-GCM" | "AES-KWP" */

struct kw_hsm_stats {
        uint64_t calls, errors, timeouts, reconnects;
};
void kw_hsm_get_stats(const struct kw_hsm *h, struct kw_hsm_stats *ret);

#endif
