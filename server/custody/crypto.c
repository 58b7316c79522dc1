/*
 * crypto.c - OpenSSL 3 primitives of the custody process (EVP only).
 *
 * The one wrapper around OpenSSL's codes: every OpenSSL failure drains the
 * thread's error queue (logged at debug level, then cleared) so that it never
 * leaks into an unrelated later call, and becomes a KW_ERR_* code here.
 *
 * Threads: cipher and digest implementations are fetched once per process
 * (pthread_once) and only read afterwards; every call makes its own
 * EVP_CIPHER_CTX / EVP_PKEY_CTX, so one EVP_PKEY may be used by many threads
 * at once.
 */
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "../common/log.h"
#include "crypto.h"

/* OpenSSL 3.0's GCM keeps the IV in a 128-byte array (GCM_IV_MAX_SIZE) and
 * refuses longer ones; production uses 12. */
#define GCM_IV_MAX 128
#define GCM_TAG_MIN 4
#define GCM_TAG_MAX 16
/* Key-wrap inputs are keys; anything near INT_MAX is a caller bug. */
#define KW_IN_MAX (1u << 24)

enum { AES128, AES192, AES256, AES_N };

static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static int fetch_ok;
static EVP_CIPHER *cipher_gcm[AES_N], *cipher_kw[AES_N], *cipher_kwp[AES_N];
static EVP_MD *md_sha1, *md_sha256;

static void fetch_all(void)
{
        static const char *const gcm[AES_N] = { "AES-128-GCM", "AES-192-GCM", "AES-256-GCM" };
        static const char *const kw[AES_N] = { "AES-128-WRAP", "AES-192-WRAP", "AES-256-WRAP" };
        static const char *const kwp[AES_N] = { "AES-128-WRAP-PAD", "AES-192-WRAP-PAD",
                                                "AES-256-WRAP-PAD" };
        int ok = 1;
        for (int i = 0; i < AES_N; i++) {
                cipher_gcm[i] = EVP_CIPHER_fetch(NULL, gcm[i], NULL);
                cipher_kw[i] = EVP_CIPHER_fetch(NULL, kw[i], NULL);
                cipher_kwp[i] = EVP_CIPHER_fetch(NULL, kwp[i], NULL);
                ok = ok && cipher_gcm[i] != NULL && cipher_kw[i] != NULL && cipher_kwp[i] != NULL;
        }
        md_sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
        md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
        ok = ok && md_sha1 != NULL && md_sha256 != NULL;
        if (!ok)
                ERR_clear_error();
        /* The fetched objects live as long as the process (never freed). */
        fetch_ok = ok;
}

static int fetched(void)
{
        return pthread_once(&fetch_once, fetch_all) == 0 && fetch_ok;
}

/* Logs (debug) and clears this thread's OpenSSL error queue. */
static void ossl_drain(const char *what)
{
        unsigned long e;
        char msg[256];
        int first = 1;
        while ((e = ERR_get_error()) != 0) {
                if (first && kw_log_enabled(KW_LOG_DEBUG)) {
                        ERR_error_string_n(e, msg, sizeof msg);
                        kw_log(KW_LOG_DEBUG, "openssl_error", "op", what, "error", msg,
                               KW_END);
                }
                first = 0;
        }
        ERR_clear_error();
}

#define OSSL_BAIL(code, what)                                       \
        do {                                                        \
                ossl_drain(what);                                   \
                KW_BAIL(code);                                      \
        } while (0)

static kw_result aes_index(size_t key_len, int *ret)
{
        switch (key_len) {
        case 16: *ret = AES128; return KW_OK;
        case 24: *ret = AES192; return KW_OK;
        case 32: *ret = AES256; return KW_OK;
        default:
                kw_err_set_detail("AES key of %zu bytes (16, 24 or 32 expected)", key_len);
                KW_BAIL(KW_ERR_BAD_LENGTH);
        }
}

kw_result kw_random(uint8_t *buf, size_t n)
{
        /* Fill a temporary first so buf is untouched on failure. */
        while (n > 0) {
                uint8_t tmp[256];
                size_t chunk = n < sizeof tmp ? n : sizeof tmp;
                if (RAND_bytes(tmp, (int)chunk) != 1) {
                        kw_wipe(tmp, sizeof tmp);
                        OSSL_BAIL(KW_ERR_RANDOM, "RAND_bytes");
                }
                memcpy(buf, tmp, chunk);
                kw_wipe(tmp, chunk);
                buf += chunk;
                n -= chunk;
        }
        return KW_OK;
}

/* ---- nonces ----
 * A 12-byte RAND_bytes call costs about as much as the AES-GCM operation it
 * feeds (OpenSSL 3's DRBG: locks, reseed checks, a fork-id system call), and
 * every XKS encrypt needs one.  Nonces are public and only have to be
 * unpredictable-and-unique, so each thread draws them from its own pool of
 * DRBG output, refilled NONCE_POOL bytes at a time; a byte is wiped as it is
 * handed out and never handed out twice.  A fork() empties every pool (the
 * child must not repeat its parent's nonces). */
#define NONCE_POOL 1024

static unsigned nonce_fork_gen;
static pthread_once_t nonce_once = PTHREAD_ONCE_INIT;

static void nonce_on_fork(void) { __atomic_add_fetch(&nonce_fork_gen, 1, __ATOMIC_RELAXED); }
static void nonce_init(void) { pthread_atfork(NULL, NULL, nonce_on_fork); }

struct nonce_pool {
        uint8_t b[NONCE_POOL];
        size_t used;          /* bytes handed out (wiped); NONCE_POOL when empty */
        unsigned gen;
};
static __thread struct nonce_pool nonce_tls = { .used = NONCE_POOL };

kw_result kw_random_nonce(uint8_t *buf, size_t n)
{
        KW_ENSURE(n <= NONCE_POOL, KW_ERR_BAD_LENGTH);
        pthread_once(&nonce_once, nonce_init);
        struct nonce_pool *p = &nonce_tls;
        unsigned gen = __atomic_load_n(&nonce_fork_gen, __ATOMIC_RELAXED);
        if (p->gen != gen || NONCE_POOL - p->used < n) {
                kw_wipe(p->b, sizeof p->b);
                p->used = NONCE_POOL;
                if (RAND_bytes(p->b, NONCE_POOL) != 1) {
                        kw_wipe(p->b, sizeof p->b);
                        OSSL_BAIL(KW_ERR_RANDOM, "RAND_bytes");
                }
                p->used = 0;
                p->gen = gen;
        }
        memcpy(buf, p->b + p->used, n);
        kw_wipe(p->b + p->used, n);
        p->used += n;
        return KW_OK;
}

/* ---- AES-GCM ---- */

static kw_result gcm_check(size_t key_len, size_t iv_len, size_t aad_len, size_t text_len,
                           size_t tag_len, int *ret_idx)
{
        KW_ENSURE(fetched(), KW_ERR_CRYPTO);
        KW_TRY(aes_index(key_len, ret_idx));
        if (iv_len < 1 || iv_len > GCM_IV_MAX) {
                kw_err_set_detail("GCM IV of %zu bytes (1..%d supported)", iv_len, GCM_IV_MAX);
                KW_BAIL(KW_ERR_BAD_LENGTH);
        }
        if (tag_len < GCM_TAG_MIN || tag_len > GCM_TAG_MAX) {
                kw_err_set_detail("GCM tag of %zu bytes (4..16 supported)", tag_len);
                KW_BAIL(KW_ERR_BAD_LENGTH);
        }
        KW_ENSURE(aad_len <= INT_MAX && text_len <= INT_MAX, KW_ERR_TOO_LARGE);
        return KW_OK;
}

/* Sets cipher, IV length, key and IV, then feeds the AAD. */
static int gcm_start(EVP_CIPHER_CTX *ctx, int idx, int enc, const uint8_t *key,
                     const uint8_t *iv, size_t iv_len, const uint8_t *aad, size_t aad_len)
{
        int outl;
        if (EVP_CipherInit_ex(ctx, cipher_gcm[idx], NULL, NULL, NULL, enc) != 1)
                return 0;
        if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, (int)iv_len, NULL) != 1)
                return 0;
        if (EVP_CipherInit_ex(ctx, NULL, NULL, key, iv, enc) != 1)
                return 0;
        if (aad_len != 0 && EVP_CipherUpdate(ctx, NULL, &outl, aad, (int)aad_len) != 1)
                return 0;
        return 1;
}

kw_result kw_aes_gcm_encrypt(const uint8_t *key, size_t key_len, const uint8_t *iv,
                             size_t iv_len, const uint8_t *aad, size_t aad_len,
                             const uint8_t *pt, size_t pt_len, uint8_t *ct, uint8_t *tag,
                             size_t tag_len)
{
        int idx;
        KW_TRY(gcm_check(key_len, iv_len, aad_len, pt_len, tag_len, &idx));
        /* Encrypt into a temporary so ct and tag are untouched on failure
         * (and so ct may alias pt). */
        uint8_t *tmp = malloc(pt_len ? pt_len : 1);
        KW_ENSURE(tmp != NULL, KW_ERR_NOMEM);
        uint8_t t[GCM_TAG_MAX];
        int outl = 0, finl = 0, ok = 0;
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        if (ctx != NULL && gcm_start(ctx, idx, 1, key, iv, iv_len, aad, aad_len) &&
            (pt_len == 0 || EVP_EncryptUpdate(ctx, tmp, &outl, pt, (int)pt_len) == 1) &&
            EVP_EncryptFinal_ex(ctx, tmp + outl, &finl) == 1 &&
            (size_t)outl + (size_t)finl == pt_len &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, (int)tag_len, t) == 1)
                ok = 1;
        EVP_CIPHER_CTX_free(ctx);
        if (ok) {
                if (pt_len != 0)
                        memcpy(ct, tmp, pt_len);
                memcpy(tag, t, tag_len);
        }
        kw_wipe(tmp, pt_len);
        free(tmp);
        if (!ok)
                OSSL_BAIL(KW_ERR_CRYPTO, "aes_gcm_encrypt");
        return KW_OK;
}

kw_result kw_aes_gcm_decrypt(const uint8_t *key, size_t key_len, const uint8_t *iv,
                             size_t iv_len, const uint8_t *aad, size_t aad_len,
                             const uint8_t *ct, size_t ct_len, const uint8_t *tag,
                             size_t tag_len, uint8_t *pt)
{
        int idx;
        KW_TRY(gcm_check(key_len, iv_len, aad_len, ct_len, tag_len, &idx));
        /* Plaintext goes to a temporary and reaches pt only once the tag
         * has verified; the temporary is wiped either way. */
        uint8_t *tmp = malloc(ct_len ? ct_len : 1);
        KW_ENSURE(tmp != NULL, KW_ERR_NOMEM);
        uint8_t t[GCM_TAG_MAX];
        memcpy(t, tag, tag_len);
        int outl = 0, finl = 0;
        int code = KW_ERR_CRYPTO;
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        if (ctx != NULL && gcm_start(ctx, idx, 0, key, iv, iv_len, aad, aad_len) &&
            (ct_len == 0 || EVP_DecryptUpdate(ctx, tmp, &outl, ct, (int)ct_len) == 1) &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, (int)tag_len, t) == 1) {
                /* Everything so far was set-up; a failing final is the tag. */
                if (EVP_DecryptFinal_ex(ctx, tmp + outl, &finl) == 1 &&
                    (size_t)outl + (size_t)finl == ct_len)
                        code = 0;
                else
                        code = KW_ERR_DECRYPT;
        }
        EVP_CIPHER_CTX_free(ctx);
        if (code == 0 && ct_len != 0)
                memcpy(pt, tmp, ct_len);
        kw_wipe(tmp, ct_len);
        free(tmp);
        if (code != 0)
                OSSL_BAIL(code, "aes_gcm_decrypt");
        return KW_OK;
}

/* ---- AES key wrap (RFC 3394) and key wrap with padding (RFC 5649) ---- */

static kw_result wrap_any(EVP_CIPHER *const *table, const uint8_t *kek, size_t kek_len,
                          const uint8_t *in, size_t in_len, size_t out_len, struct kw_buf *out)
{
        int idx;
        KW_ENSURE(fetched(), KW_ERR_CRYPTO);
        KW_TRY(aes_index(kek_len, &idx));
        KW_TRY(kw_buf_reserve(out, out_len));
        uint8_t *dst = out->p + out->len; /* not committed until success */
        int outl = 0, finl = 0, ok = 0;
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        if (ctx != NULL) {
                EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
                ok = EVP_EncryptInit_ex(ctx, table[idx], NULL, kek, NULL) == 1 &&
                     EVP_EncryptUpdate(ctx, dst, &outl, in, (int)in_len) == 1 &&
                     (size_t)outl == out_len &&
                     EVP_EncryptFinal_ex(ctx, dst + outl, &finl) == 1 && finl == 0;
        }
        EVP_CIPHER_CTX_free(ctx);
        if (!ok) {
                kw_wipe(dst, out_len);
                OSSL_BAIL(KW_ERR_CRYPTO, "aes_wrap");
        }
        out->len += out_len;
        return KW_OK;
}

static kw_result unwrap_any(EVP_CIPHER *const *table, const uint8_t *kek, size_t kek_len,
                            const uint8_t *in, size_t in_len, struct kw_secret *ret)
{
        int idx;
        KW_ENSURE(fetched(), KW_ERR_CRYPTO);
        KW_TRY(aes_index(kek_len, &idx));
        /* OpenSSL writes up to in_len - 8 bytes; give it in_len. */
        _cleanup_secret_ struct kw_secret tmp = { 0 };
        KW_TRY(kw_secret_alloc(in_len, &tmp));
        int outl = 0, finl = 0;
        int code = KW_ERR_CRYPTO;
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        if (ctx != NULL) {
                EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
                if (EVP_DecryptInit_ex(ctx, table[idx], NULL, kek, NULL) == 1) {
                        /* Lengths were checked: a failing update is integrity. */
                        if (EVP_DecryptUpdate(ctx, tmp.p, &outl, in, (int)in_len) == 1 &&
                            outl >= 0 && (size_t)outl <= in_len - 8 &&
                            EVP_DecryptFinal_ex(ctx, tmp.p + outl, &finl) == 1 && finl == 0)
                                code = 0;
                        else
                                code = KW_ERR_DECRYPT;
                }
        }
        EVP_CIPHER_CTX_free(ctx);
        if (code != 0)
                OSSL_BAIL(code, "aes_unwrap");
        /* Exact-length copy, so the secret's len covers all it holds. */
        return kw_secret_dup(tmp.p, (size_t)outl, ret);
}

kw_result kw_aes_kw_wrap(const uint8_t *kek, size_t kek_len, const uint8_t *in, size_t in_len,
                         struct kw_buf *out)
{
        if (in_len < 16 || in_len % 8 != 0 || in_len > KW_IN_MAX) {
                kw_err_set_detail("AES-KW input of %zu bytes (a multiple of 8, at least 16)",
                                  in_len);
                KW_BAIL(KW_ERR_BAD_LENGTH);
        }
        return wrap_any(cipher_kw, kek, kek_len, in, in_len, in_len + 8, out);
}

kw_result kw_aes_kw_unwrap(const uint8_t *kek, size_t kek_len, const uint8_t *in,
                           size_t in_len, struct kw_secret *ret)
{
        if (in_len < 24 || in_len % 8 != 0 || in_len > KW_IN_MAX + 8) {
                kw_err_set_detail("AES-KW wrapped input of %zu bytes (a multiple of 8, at "
                                  "least 24)", in_len);
                KW_BAIL(KW_ERR_BAD_LENGTH);
        }
        return unwrap_any(cipher_kw, kek, kek_len, in, in_len, ret);
}

kw_result kw_aes_kwp_wrap(const uint8_t *kek, size_t kek_len, const uint8_t *in, size_t in_len,
                          struct kw_buf *out)
{
        if (in_len < 1 || in_len > KW_IN_MAX) {
                kw_err_set_detail("AES-KWP input of %zu bytes (1..%u)", in_len, KW_IN_MAX);
                KW_BAIL(KW_ERR_BAD_LENGTH);
        }
        return wrap_any(cipher_kwp, kek, kek_len, in, in_len, (in_len + 7) / 8 * 8 + 8, out);
}

kw_result kw_aes_kwp_unwrap(const uint8_t *kek, size_t kek_len, const uint8_t *in,
                            size_t in_len, struct kw_secret *ret)
{
        if (in_len < 16 || in_len % 8 != 0 || in_len > KW_IN_MAX + 16) {
                kw_err_set_detail("AES-KWP wrapped input of %zu bytes (a multiple of 8, at "
                                  "least 16)", in_len);
                KW_BAIL(KW_ERR_BAD_LENGTH);
        }
        return unwrap_any(cipher_kwp, kek, kek_len, in, in_len, ret);
}

/* ---- RSA ---- */

static int rsa_bits_supported(unsigned bits)
{
        return bits == 2048 || bits == 3072 || bits == 4096;
}

kw_result kw_rsa_generate(unsigned bits, EVP_PKEY **ret)
{
        if (!rsa_bits_supported(bits)) {
                kw_err_set_detail("RSA key of %u bits (2048, 3072 or 4096 supported)", bits);
                KW_BAIL(KW_ERR_UNSUPPORTED);
        }
        EVP_PKEY *pkey = NULL;
        BIGNUM *e = BN_new();
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
        int ok = e != NULL && ctx != NULL && BN_set_word(e, RSA_F4) == 1 &&
                 EVP_PKEY_keygen_init(ctx) == 1 &&
                 EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int)bits) == 1 &&
                 EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx, e) == 1 &&
                 EVP_PKEY_generate(ctx, &pkey) == 1;
        EVP_PKEY_CTX_free(ctx);
        BN_free(e);
        if (!ok) {
                EVP_PKEY_free(pkey);
                OSSL_BAIL(KW_ERR_CRYPTO, "rsa_generate");
        }
        *ret = pkey;
        return KW_OK;
}

kw_result kw_rsa_to_pkcs8(EVP_PKEY *pkey, struct kw_secret *ret)
{
        KW_ENSURE(pkey != NULL && EVP_PKEY_is_a(pkey, "RSA"), KW_ERR_INPUT);
        /* Encode into a secure-heap memory BIO (wiped when freed), then copy
         * into the secret. */
        struct kw_secret s = { 0 };
        int ok = 0;
        BIO *bio = BIO_new(BIO_s_secmem());
        OSSL_ENCODER_CTX *ectx = OSSL_ENCODER_CTX_new_for_pkey(
                pkey, EVP_PKEY_KEYPAIR, "DER", "PrivateKeyInfo", NULL);
        if (bio != NULL && ectx != NULL && OSSL_ENCODER_CTX_get_num_encoders(ectx) > 0 &&
            OSSL_ENCODER_to_bio(ectx, bio) == 1) {
                char *data = NULL;
                long n = BIO_get_mem_data(bio, &data);
                if (n > 0 && data != NULL)
                        ok = kw_ok(kw_secret_dup(data, (size_t)n, &s));
        }
        OSSL_ENCODER_CTX_free(ectx);
        BIO_free(bio);
        if (!ok)
                OSSL_BAIL(KW_ERR_CRYPTO, "rsa_to_pkcs8");
        *ret = s;
        return KW_OK;
}

/* Our import policy: RSA (not RSA-PSS), 2048/3072/4096 bits, e = 65537. */
static kw_result rsa_check_policy(EVP_PKEY *pkey)
{
        if (!EVP_PKEY_is_a(pkey, "RSA")) {
                kw_err_set_detail("not an RSA key (type %s)", EVP_PKEY_get0_type_name(pkey));
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < 0 || !rsa_bits_supported((unsigned)bits)) {
                kw_err_set_detail("RSA key of %d bits (2048, 3072 or 4096 accepted)", bits);
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        BIGNUM *e = NULL;
        if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) != 1)
                OSSL_BAIL(KW_ERR_CRYPTO, "rsa_get_e");
        int e_ok = BN_is_word(e, RSA_F4);
        BN_free(e);
        if (!e_ok) {
                kw_err_set_detail("RSA public exponent is not 65537");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        return KW_OK;
}

kw_result kw_rsa_from_pkcs8(const uint8_t *der, size_t len, EVP_PKEY **ret)
{
        KW_ENSURE(len <= LONG_MAX, KW_ERR_BAD_FIELD);
        /* The provider decoder also takes PKCS#1 and other structures for
         * "PrivateKeyInfo"; check the PKCS#8 syntax strictly first, with
         * no trailing bytes (the parsed copy is wiped when freed). */
        const unsigned char *p = der;
        PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);
        int parsed = p8 != NULL, syntax_ok = parsed && (size_t)(p - der) == len;
        PKCS8_PRIV_KEY_INFO_free(p8);
        if (!syntax_ok) {
                kw_err_set_detail(parsed ? "bytes after the PKCS#8 private key"
                                         : "not a PKCS#8 DER private key");
                OSSL_BAIL(KW_ERR_BAD_FIELD, "d2i_PKCS8_PRIV_KEY_INFO");
        }
        EVP_PKEY *pkey = NULL;
        size_t left = len;
        p = der;
        OSSL_DECODER_CTX *dctx = OSSL_DECODER_CTX_new_for_pkey(
                &pkey, "DER", "PrivateKeyInfo", NULL, EVP_PKEY_KEYPAIR, NULL, NULL);
        int ok = dctx != NULL && OSSL_DECODER_CTX_get_num_decoders(dctx) > 0 && len > 0 &&
                 OSSL_DECODER_from_data(dctx, &p, &left) == 1 && pkey != NULL;
        OSSL_DECODER_CTX_free(dctx);
        if (!ok) {
                EVP_PKEY_free(pkey);
                kw_err_set_detail("not a PKCS#8 DER private key");
                OSSL_BAIL(KW_ERR_BAD_FIELD, "rsa_from_pkcs8");
        }
        if (left != 0) {
                EVP_PKEY_free(pkey);
                kw_err_set_detail("%zu bytes after the PKCS#8 private key", left);
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        kw_result r = rsa_check_policy(pkey);
        if (r.code == 0) {
                /* The parts agree (n = pq, d, CRT values): an imported key with
                 * broken CRT values would be a fault-attack risk. */
                EVP_PKEY_CTX *cctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
                if (cctx == NULL || EVP_PKEY_pairwise_check(cctx) != 1) {
                        kw_err_set_detail("inconsistent RSA private key");
                        ossl_drain("rsa_pairwise_check");
                        kw_trace(KW_ERR_BAD_FIELD, __FILE__, __LINE__);
                        r = KW_RESULT(KW_ERR_BAD_FIELD);
                }
                EVP_PKEY_CTX_free(cctx);
        }
        if (r.code != 0) {
                EVP_PKEY_free(pkey);
                return r;
        }
        *ret = pkey;
        return KW_OK;
}

static int pem_no_password(char *buf, int size, int rwflag, void *u)
{
        (void)buf, (void)size, (void)rwflag, (void)u;
        return -1; /* an encrypted PEM is refused, never prompted for */
}

kw_result kw_rsa_from_pem(const char *pem, size_t len, EVP_PKEY **ret)
{
        KW_ENSURE(len <= INT_MAX, KW_ERR_BAD_FIELD);
        /* OpenSSL 3 decodes a private key's base64 into its secure heap */
        BIO *bio = BIO_new_mem_buf(pem, (int)len);
        KW_ENSURE(bio != NULL, KW_ERR_NOMEM);
        EVP_PKEY *pk = PEM_read_bio_PrivateKey(bio, NULL, pem_no_password, NULL);
        BIO_free(bio);
        if (pk == NULL) {
                kw_err_set_detail("'pem' is not an unencrypted private key");
                OSSL_BAIL(KW_ERR_BAD_FIELD, "PEM_read_bio_PrivateKey");
        }
        if (!EVP_PKEY_is_a(pk, "RSA")) {
                EVP_PKEY_free(pk);
                kw_err_set_detail("the key is not an RSA private key");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        /* through PKCS#8 so that the import policy and checks are one */
        struct kw_secret der = { 0 };
        kw_result r = kw_rsa_to_pkcs8(pk, &der);
        EVP_PKEY_free(pk);
        if (r.code == 0)
                r = kw_rsa_from_pkcs8(der.p, der.len, ret);
        kw_secret_free(&der);
        return r;
}

kw_result kw_rsa_public_der(EVP_PKEY *pkey, struct kw_buf *out)
{
        KW_ENSURE(pkey != NULL, KW_ERR_INPUT);
        int n = i2d_PUBKEY(pkey, NULL);
        if (n <= 0)
                OSSL_BAIL(KW_ERR_CRYPTO, "i2d_PUBKEY");
        KW_TRY(kw_buf_reserve(out, (size_t)n));
        unsigned char *q = out->p + out->len;
        if (i2d_PUBKEY(pkey, &q) != n)
                OSSL_BAIL(KW_ERR_CRYPTO, "i2d_PUBKEY");
        out->len += (size_t)n;
        return KW_OK;
}

kw_result kw_rsa_public_ne(EVP_PKEY *pkey, struct kw_buf *n, struct kw_buf *e)
{
        KW_ENSURE(pkey != NULL && EVP_PKEY_is_a(pkey, "RSA"), KW_ERR_INPUT);
        BIGNUM *bn = NULL, *be = NULL;
        if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &bn) != 1 ||
            EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &be) != 1) {
                BN_free(bn);
                BN_free(be);
                OSSL_BAIL(KW_ERR_CRYPTO, "rsa_get_ne");
        }
        size_t nl = (size_t)BN_num_bytes(bn), el = (size_t)BN_num_bytes(be);
        size_t n0 = n->len, e0 = e->len;
        kw_result r = kw_buf_reserve(n, nl);
        if (r.code == 0) {
                BN_bn2bin(bn, n->p + n->len);
                n->len += nl;
                r = kw_buf_reserve(e, el);
        }
        if (r.code == 0) {
                BN_bn2bin(be, e->p + e->len);
                e->len += el;
        } else {
                n->len = n0; /* all or nothing */
                e->len = e0;
        }
        BN_free(bn);
        BN_free(be);
        return r;
}

kw_result kw_rsa_from_public_der(const uint8_t *der, size_t len, EVP_PKEY **ret)
{
        KW_ENSURE(len > 0 && len <= LONG_MAX, KW_ERR_BAD_FIELD);
        const unsigned char *p = der;
        EVP_PKEY *pkey = d2i_PUBKEY(NULL, &p, (long)len);
        if (pkey == NULL) {
                kw_err_set_detail("not a SubjectPublicKeyInfo DER public key");
                OSSL_BAIL(KW_ERR_BAD_FIELD, "d2i_PUBKEY");
        }
        if ((size_t)(p - der) != len) {
                EVP_PKEY_free(pkey);
                kw_err_set_detail("bytes after the SubjectPublicKeyInfo");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        kw_result r = rsa_check_policy(pkey);
        if (r.code != 0) {
                EVP_PKEY_free(pkey);
                return r;
        }
        *ret = pkey;
        return KW_OK;
}

unsigned kw_rsa_bits(EVP_PKEY *pkey)
{
        if (pkey == NULL)
                return 0;
        int bits = EVP_PKEY_get_bits(pkey);
        return bits > 0 ? (unsigned)bits : 0;
}

/* Per-call context with OAEP padding, md_name for OAEP and MGF1, no label. */
static kw_result oaep_ctx(EVP_PKEY *pkey, const char *md_name, int enc, EVP_PKEY_CTX **ret,
                          size_t *ret_hlen)
{
        KW_ENSURE(fetched(), KW_ERR_CRYPTO);
        KW_ENSURE(pkey != NULL && EVP_PKEY_is_a(pkey, "RSA"), KW_ERR_UNSUPPORTED_ALG);
        const EVP_MD *md;
        if (md_name != NULL && strcmp(md_name, "SHA1") == 0) {
                md = md_sha1;
        } else if (md_name != NULL && strcmp(md_name, "SHA256") == 0) {
                md = md_sha256;
        } else {
                kw_err_set_detail("OAEP digest must be SHA1 or SHA256");
                KW_BAIL(KW_ERR_UNSUPPORTED_ALG);
        }
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        int ok = ctx != NULL &&
                 (enc ? EVP_PKEY_encrypt_init(ctx) : EVP_PKEY_decrypt_init(ctx)) == 1 &&
                 EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
                 EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) == 1 &&
                 EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) == 1;
        if (!ok) {
                EVP_PKEY_CTX_free(ctx);
                OSSL_BAIL(KW_ERR_CRYPTO, "rsa_oaep_init");
        }
        *ret = ctx;
        *ret_hlen = (size_t)EVP_MD_get_size(md);
        return KW_OK;
}

kw_result kw_rsa_oaep_encrypt(EVP_PKEY *pkey, const char *md_name, const uint8_t *in,
                              size_t in_len, struct kw_buf *out)
{
        EVP_PKEY_CTX *ctx;
        size_t hlen;
        KW_TRY(oaep_ctx(pkey, md_name, 1, &ctx, &hlen));
        size_t k = (size_t)EVP_PKEY_get_size(pkey);
        if (k < 2 * hlen + 2 || in_len > k - 2 * hlen - 2) {
                EVP_PKEY_CTX_free(ctx);
                kw_err_set_detail("OAEP plaintext of %zu bytes (at most %zu for this key)",
                                  in_len, k >= 2 * hlen + 2 ? k - 2 * hlen - 2 : 0);
                KW_BAIL(KW_ERR_BAD_LENGTH);
        }
        kw_result r = kw_buf_reserve(out, k);
        if (r.code != 0) {
                EVP_PKEY_CTX_free(ctx);
                return r;
        }
        size_t outl = k;
        int ok = EVP_PKEY_encrypt(ctx, out->p + out->len, &outl, in, in_len) == 1 && outl == k;
        EVP_PKEY_CTX_free(ctx);
        if (!ok)
                OSSL_BAIL(KW_ERR_CRYPTO, "rsa_oaep_encrypt");
        out->len += outl;
        return KW_OK;
}

kw_result kw_rsa_oaep_decrypt(EVP_PKEY *pkey, const char *md_name, const uint8_t *in,
                              size_t in_len, struct kw_secret *ret)
{
        EVP_PKEY_CTX *ctx;
        size_t hlen;
        KW_TRY(oaep_ctx(pkey, md_name, 0, &ctx, &hlen));
        size_t k = (size_t)EVP_PKEY_get_size(pkey);
        if (in_len != k) {
                EVP_PKEY_CTX_free(ctx);
                kw_err_set_detail("OAEP ciphertext of %zu bytes (the modulus has %zu)", in_len,
                                  k);
                KW_BAIL(KW_ERR_BAD_LENGTH);
        }
        struct kw_secret tmp = { 0 };
        kw_result r = kw_secret_alloc(k, &tmp);
        if (r.code != 0) {
                EVP_PKEY_CTX_free(ctx);
                return r;
        }
        size_t outl = k;
        /* Any failure here is decoding (or c >= n): one code for all. */
        int ok = EVP_PKEY_decrypt(ctx, tmp.p, &outl, in, in_len) == 1 && outl <= k;
        EVP_PKEY_CTX_free(ctx);
        if (!ok) {
                kw_secret_free(&tmp);
                OSSL_BAIL(KW_ERR_DECRYPT, "rsa_oaep_decrypt");
        }
        r = kw_secret_dup(tmp.p, outl, ret);
        kw_secret_free(&tmp);
        return r;
}

void kw_pkey_free(EVP_PKEY *pkey) { EVP_PKEY_free(pkey); }

void kw_sha256(const void *p, size_t n, uint8_t out[32])
{
        unsigned int len = 0;
        /* Fails only when memory runs out; a wrong digest is never an option. */
        if (!fetched() || EVP_Digest(p, n, out, &len, md_sha256, NULL) != 1 || len != 32)
                abort();
}

int kw_ct_equal(const void *a, const void *b, size_t n)
{
        return CRYPTO_memcmp(a, b, n) == 0;
}
