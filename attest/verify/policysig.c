/*
 * policysig.c - the signature of a published policy.json (docs/attestation.md):
 * RSA PKCS#1 v1.5 with SHA-256 over the file's exact bytes, made by the image
 * build with the image key, checked here with mbedTLS before the policy is
 * parsed, so that nothing of an unsigned file is used.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>

#include "kwa.h"

#define SIG_MIN_RSA_BITS 2048
#define SIG_SPKI_MAX 2200   /* DER SubjectPublicKeyInfo of an RSA key up to 16384 bits */

int kwa_policy_sig_verify(const uint8_t *key, size_t key_len, const uint8_t *doc, size_t doc_len,
                          const uint8_t *sig, size_t sig_len, uint8_t ret_key_sha256[32], char *err, size_t errsz)
{
        /* mbedTLS wants a PEM NUL-terminated, its length counting the NUL */
        uint8_t *k = malloc(key_len + 1);
        if (k == NULL)
                return KWA_E_NOMEM;
        memcpy(k, key, key_len);
        k[key_len] = 0;
        int pem = key_len > 0 && memmem(key, key_len, "-----BEGIN", 10) != NULL;
        mbedtls_pk_context pk;
        mbedtls_pk_init(&pk);
        int rc = KWA_E_FORMAT;
        if (mbedtls_pk_parse_public_key(&pk, k, pem ? key_len + 1 : key_len) != 0) {
                snprintf(err, errsz, "the key is not a PEM (or DER) public key");
                goto out;
        }
        if (mbedtls_pk_get_type(&pk) != MBEDTLS_PK_RSA || mbedtls_pk_get_bitlen(&pk) < SIG_MIN_RSA_BITS) {
                snprintf(err, errsz, "the key is not an RSA key of at least %d bits", SIG_MIN_RSA_BITS);
                goto out;
        }
        uint8_t der[SIG_SPKI_MAX];
        int dl = mbedtls_pk_write_pubkey_der(&pk, der, sizeof der);   /* written at the end of der */
        if (dl <= 0) {
                snprintf(err, errsz, "the key cannot be encoded");
                goto out;
        }
        uint8_t h[32], kh[32];
        kwa_sha256(der + sizeof der - (size_t)dl, (size_t)dl, kh);
        kwa_sha256(doc, doc_len, h);
        mbedtls_rsa_context *rsa = mbedtls_pk_rsa(pk);
        mbedtls_rsa_set_padding(rsa, MBEDTLS_RSA_PKCS_V15, MBEDTLS_MD_NONE);
        rc = KWA_E_CRYPTO;
        if (sig_len != mbedtls_rsa_get_len(rsa)) {
                snprintf(err, errsz, "the signature is %zu bytes, the key's is %zu (not an RSA signature "
                                     "by this key)", sig_len, mbedtls_rsa_get_len(rsa));
                goto out;
        }
        if (mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA256, h, sizeof h, sig, sig_len) != 0) {
                snprintf(err, errsz, "the signature does not verify with this key (RSA PKCS#1 v1.5, "
                                     "SHA-256 over the file's bytes)");
                goto out;
        }
        memcpy(ret_key_sha256, kh, 32);
        rc = 0;
out:
        mbedtls_pk_free(&pk);
        free(k);
        return rc;
}
