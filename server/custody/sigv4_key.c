/* sigv4_key.c - the SigV4 HMAC chain (see sigv4_key.h). */
#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "../common/secret.h"
#include "sigv4_key.h"

#define SIGV4_SECRET_MAX 256

/* HMAC fetched once: HMAC() looks the implementation up on every call. */
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;
static EVP_MAC *alg_hmac;   /* live as long as the process */

static void hmac_fetch(void) { alg_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL); }

static kw_result mac_keyed(const uint8_t *key, size_t klen, EVP_MAC_CTX **ret)
{
        pthread_once(&hmac_once, hmac_fetch);
        KW_ENSURE(alg_hmac != NULL, KW_ERR_CRYPTO);
        EVP_MAC_CTX *m = EVP_MAC_CTX_new(alg_hmac);
        KW_ENSURE(m != NULL, KW_ERR_NOMEM);
        OSSL_PARAM params[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
                OSSL_PARAM_construct_end(),
        };
        if (EVP_MAC_init(m, key, klen, params) != 1) {
                EVP_MAC_CTX_free(m);
                KW_BAIL(KW_ERR_CRYPTO);
        }
        *ret = m;
        return KW_OK;
}

KW_MUST_USE static kw_result hmac(const uint8_t *key, size_t klen, const void *msg, size_t n,
                                  uint8_t out[32])
{
        EVP_MAC_CTX *m = NULL;
        KW_TRY(mac_keyed(key, klen, &m));
        return kw_sigv4_mac_finish(m, msg, n, out);
}

kw_result kw_sigv4_signing_key(const uint8_t *secret, size_t secret_len, const char *date,
                               const char *region, const char *service, uint8_t ret_key[32])
{
        KW_ENSURE(secret_len <= SIGV4_SECRET_MAX, KW_ERR_BAD_LENGTH);
        uint8_t k0[4 + SIGV4_SECRET_MAX];
        uint8_t k[32], t[32];
        memcpy(k0, "AWS4", 4);
        memcpy(k0 + 4, secret, secret_len);
        kw_result r = hmac(k0, 4 + secret_len, date, strlen(date), k);
        kw_wipe(k0, sizeof k0);
        if (r.code == 0)
                r = hmac(k, 32, region, strlen(region), t);
        if (r.code == 0)
                r = hmac(t, 32, service, strlen(service), k);
        if (r.code == 0)
                r = hmac(k, 32, "aws4_request", 12, t);
        if (r.code == 0)
                memcpy(ret_key, t, 32);
        kw_wipe(k, sizeof k);
        kw_wipe(t, sizeof t);
        return r;
}

kw_result kw_sigv4_signature(const uint8_t key[32], const char *sts, size_t len, uint8_t ret_sig[32])
{
        return hmac(key, 32, sts, len, ret_sig);
}

kw_result kw_sigv4_mac_new(const uint8_t key[32], EVP_MAC_CTX **ret)
{
        return mac_keyed(key, 32, ret);
}

kw_result kw_sigv4_mac_finish(EVP_MAC_CTX *m, const char *sts, size_t len, uint8_t ret_sig[32])
{
        size_t olen = 0;
        int ok = EVP_MAC_update(m, (const unsigned char *)sts, len) == 1 &&
                 EVP_MAC_final(m, ret_sig, &olen, 32) == 1 && olen == 32;
        EVP_MAC_CTX_free(m);
        KW_ENSURE(ok, KW_ERR_CRYPTO);
        return KW_OK;
}
