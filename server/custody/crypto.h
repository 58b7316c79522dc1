/*
 * crypto.h - OpenSSL 3 primitives for the custody process.
 *
 * OpenSSL errors are converted here (the queue is logged at debug level and
 * cleared).  Failures of authentication/integrity (GCM tag, KW integrity
 * check, OAEP decoding) are KW_ERR_DECRYPT, all alike, so callers cannot
 * become oracles; any other failure is KW_ERR_CRYPTO.  Outputs that are
 * plaintext key material are kw_secret; outputs are untouched on failure.
 */
#ifndef KW_CRYPTO_H
#define KW_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/result.h"
#include "../common/secret.h"

typedef struct evp_pkey_st EVP_PKEY;

KW_MUST_USE kw_result kw_random(uint8_t *buf, size_t n);
/* n <= 1024 bytes for a public nonce (an AES-GCM IV): from a per-thread pool
 * of DRBG output, each byte used once.  Never for keys or other secrets. */
KW_MUST_USE kw_result kw_random_nonce(uint8_t *buf, size_t n);

/* AES-GCM with a 128/192/256-bit key; iv_len >= 1 (12 in production);
 * tag_len 4..16.  ct has pt_len bytes. */
KW_MUST_USE kw_result kw_aes_gcm_encrypt(const uint8_t *key, size_t key_len,
                                         const uint8_t *iv, size_t iv_len,
                                         const uint8_t *aad, size_t aad_len,
                                         const uint8_t *pt, size_t pt_len,
                                         uint8_t *ct, uint8_t *tag, size_t tag_len);
/* pt (pt_len == ct_len bytes) is written only when the tag verifies. */
KW_MUST_USE kw_result kw_aes_gcm_decrypt(const uint8_t *key, size_t key_len,
                                         const uint8_t *iv, size_t iv_len,
                                         const uint8_t *aad, size_t aad_len,
                                         const uint8_t *ct, size_t ct_len,
                                         const uint8_t *tag, size_t tag_len, uint8_t *pt);

/* RFC 3394 (in: multiple of 8, >= 16) and RFC 5649 (in: >= 1 byte) with a
 * 128/192/256-bit KEK.  Wrapped output is appended to out.  Bad input
 * length: KW_ERR_BAD_LENGTH. */
KW_MUST_USE kw_result kw_aes_kw_wrap(const uint8_t *kek, size_t kek_len, const uint8_t *in,
                                     size_t in_len, struct kw_buf *out);
KW_MUST_USE kw_result kw_aes_kw_unwrap(const uint8_t *kek, size_t kek_len, const uint8_t *in,
                                       size_t in_len, struct kw_secret *ret);
KW_MUST_USE kw_result kw_aes_kwp_wrap(const uint8_t *kek, size_t kek_len, const uint8_t *in,
                                      size_t in_len, struct kw_buf *out);
KW_MUST_USE kw_result kw_aes_kwp_unwrap(const uint8_t *kek, size_t kek_len, const uint8_t *in,
                                        size_t in_len, struct kw_secret *ret);

/* RSA.  md_name is "SHA1" or "SHA256" (OAEP digest and MGF1 digest alike). */
KW_MUST_USE kw_result kw_rsa_generate(unsigned bits, EVP_PKEY **ret);
/* PKCS#8 DER private key (a secret) <-> EVP_PKEY; only RSA 2048/3072/4096
 * with e = 65537 are accepted on import (KW_ERR_BAD_FIELD otherwise). */
KW_MUST_USE kw_result kw_rsa_to_pkcs8(EVP_PKEY *pkey, struct kw_secret *ret);
KW_MUST_USE kw_result kw_rsa_from_pkcs8(const uint8_t *der, size_t len, EVP_PKEY **ret);
/* An unencrypted PEM private key ("PRIVATE KEY" or "RSA PRIVATE KEY"), with
 * the same checks as kw_rsa_from_pkcs8.  Encrypted PEM: KW_ERR_BAD_FIELD. */
KW_MUST_USE kw_result kw_rsa_from_pem(const char *pem, size_t len, EVP_PKEY **ret);
/* SubjectPublicKeyInfo DER of the public half, appended to out. */
KW_MUST_USE kw_result kw_rsa_public_der(EVP_PKEY *pkey, struct kw_buf *out);
/* Unsigned big-endian modulus and exponent, appended to n and e. */
KW_MUST_USE kw_result kw_rsa_public_ne(EVP_PKEY *pkey, struct kw_buf *n, struct kw_buf *e);
KW_MUST_USE kw_result kw_rsa_from_public_der(const uint8_t *der, size_t len, EVP_PKEY **ret);
unsigned kw_rsa_bits(EVP_PKEY *pkey);
KW_MUST_USE kw_result kw_rsa_oaep_encrypt(EVP_PKEY *pkey, const char *md_name,
                                          const uint8_t *in, size_t in_len, struct kw_buf *out);
/* in_len must equal the modulus length (KW_ERR_BAD_LENGTH otherwise). */
KW_MUST_USE kw_result kw_rsa_oaep_decrypt(EVP_PKEY *pkey, const char *md_name,
                                          const uint8_t *in, size_t in_len, struct kw_secret *ret);
void kw_pkey_free(EVP_PKEY *pkey);

/* SHA-256 of n bytes into out[32]. */
void kw_sha256(const void *p, size_t n, uint8_t out[32]);
/* Constant-time equality of two equal-length buffers: 1 equal, 0 not. */
int kw_ct_equal(const void *a, const void *b, size_t n);

#endif
