/*
 * sigv4_key.h - the secret half of AWS SigV4, in the custody process only:
 * the signing key derived from a secret access key and the HMAC of a
 * string to sign.
 */
#ifndef KW_SIGV4_KEY_H
#define KW_SIGV4_KEY_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "../common/result.h"

/* kSigning = HMAC chain over "AWS4"+secret, date, region, service, "aws4_request". */
KW_MUST_USE kw_result kw_sigv4_signing_key(const uint8_t *secret, size_t secret_len,
                                           const char *date, const char *region,
                                           const char *service, uint8_t ret_key[32]);
/* HMAC-SHA256(key, sts). */
KW_MUST_USE kw_result kw_sigv4_signature(const uint8_t key[32], const char *sts, size_t len,
                                         uint8_t ret_sig[32]);

/* The same HMAC, keyed once and reused: kw_sigv4_mac_new keys an HMAC-SHA256
 * context with a signing key (free it with EVP_MAC_CTX_free, which wipes
 * it); per signature, EVP_MAC_CTX_dup that context (callers serialise dups
 * of one context) and pass the copy to kw_sigv4_mac_finish, which computes
 * HMAC(key, sts) and frees the copy in every case. */
KW_MUST_USE kw_result kw_sigv4_mac_new(const uint8_t key[32], EVP_MAC_CTX **ret);
KW_MUST_USE kw_result kw_sigv4_mac_finish(EVP_MAC_CTX *m, const char *sts, size_t len,
                                          uint8_t ret_sig[32]);

#endif
