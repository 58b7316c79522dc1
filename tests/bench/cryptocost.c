/*
 * cryptocost.c - BENCHMARK TOOL, never installed: the raw OpenSSL cost of
 * the cryptography behind one Keyward request, in-process, on one thread
 * (the bench pins it to one core with taskset).  It is the "crypto
 * ceiling" that `make bench` compares Keyward's rates with.
 *
 * Each operation is done the way a minimal server would do it per request:
 * a fresh EVP context, the key set, the operation, the context freed.
 *   aes_gcm_enc_64 / aes_gcm_enc_4096   AES-256-GCM encrypt, 12-byte IV, 32-byte AAD, tag
 *   aes_gcm_dec_64 / aes_gcm_dec_4096   the matching decrypt with tag check
 *   aes_kwp_wrap_32 / aes_kwp_unwrap_32 RFC 5649 (EVP_aes_256_wrap_pad), 32-byte key data
 *   rsa_oaep256_dec_2048/3072/4096       RSA private operation, OAEP SHA-256 / MGF1-SHA-256
 *
 * usage: kw-cryptocost [SECONDS_PER_OP [rsa]]   (default 1.0; bounded to 0.1..30;
 *        "rsa": the RSA operations only: the bench runs one such process per
 *        core at once to measure the RSA ceiling of all the cores together)
 * Output: one JSON object {"<op>": ops_per_second, ...} on stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

static double now_s(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static unsigned char key[32], iv[12], aad[32], pt[4096], ct[4096 + 16], tag[16], out[4096 + 64];

static int gcm_enc(size_t n)
{
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        int l = 0, f = 0;
        int ok = c && EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv) == 1 &&
                 EVP_EncryptUpdate(c, NULL, &l, aad, sizeof aad) == 1 &&
                 EVP_EncryptUpdate(c, ct, &l, pt, (int)n) == 1 && EVP_EncryptFinal_ex(c, ct + l, &f) == 1 &&
                 EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
        EVP_CIPHER_CTX_free(c);
        return ok ? 0 : -1;
}

static int gcm_dec(size_t n)
{
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        int l = 0, f = 0;
        int ok = c && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv) == 1 &&
                 EVP_DecryptUpdate(c, NULL, &l, aad, sizeof aad) == 1 &&
                 EVP_DecryptUpdate(c, out, &l, ct, (int)n) == 1 &&
                 EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1 &&
                 EVP_DecryptFinal_ex(c, out + l, &f) == 1;
        EVP_CIPHER_CTX_free(c);
        return ok ? 0 : -1;
}

static unsigned char kwp[48];
static int kwp_len;

static int kwp_wrap(void)
{
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        int l = 0, f = 0;
        if (c != NULL)
                EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
        int ok = c && EVP_EncryptInit_ex(c, EVP_aes_256_wrap_pad(), NULL, key, NULL) == 1 &&
                 EVP_EncryptUpdate(c, kwp, &l, pt, 32) == 1 && EVP_EncryptFinal_ex(c, kwp + l, &f) == 1;
        kwp_len = l + f;
        EVP_CIPHER_CTX_free(c);
        return ok ? 0 : -1;
}

static int kwp_unwrap(void)
{
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        int l = 0, f = 0;
        if (c != NULL)
                EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
        int ok = c && EVP_DecryptInit_ex(c, EVP_aes_256_wrap_pad(), NULL, key, NULL) == 1 &&
                 EVP_DecryptUpdate(c, out, &l, kwp, kwp_len) == 1 && EVP_DecryptFinal_ex(c, out + l, &f) == 1 &&
                 l + f == 32;
        EVP_CIPHER_CTX_free(c);
        return ok ? 0 : -1;
}

static EVP_PKEY *rsa_key;
static unsigned char rsa_ct[512];
static size_t rsa_ct_len;

static int oaep_setup(EVP_PKEY_CTX *c)
{
        return EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) == 1 &&
               EVP_PKEY_CTX_set_rsa_oaep_md(c, EVP_sha256()) == 1 &&
               EVP_PKEY_CTX_set_rsa_mgf1_md(c, EVP_sha256()) == 1;
}

static int rsa_prepare(unsigned bits)
{
        EVP_PKEY_free(rsa_key);
        rsa_key = EVP_RSA_gen(bits);
        if (rsa_key == NULL)
                return -1;
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, rsa_key, NULL);
        rsa_ct_len = sizeof rsa_ct;
        int ok = c && EVP_PKEY_encrypt_init(c) == 1 && oaep_setup(c) &&
                 EVP_PKEY_encrypt(c, rsa_ct, &rsa_ct_len, pt, 32) == 1;
        EVP_PKEY_CTX_free(c);
        return ok ? 0 : -1;
}

static int rsa_dec(void)
{
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, rsa_key, NULL);
        size_t ol = sizeof out;
        int ok = c && EVP_PKEY_decrypt_init(c) == 1 && oaep_setup(c) &&
                 EVP_PKEY_decrypt(c, out, &ol, rsa_ct, rsa_ct_len) == 1 && ol == 32;
        EVP_PKEY_CTX_free(c);
        return ok ? 0 : -1;
}

enum op { GCM_ENC, GCM_DEC, KWP_WRAP, KWP_UNWRAP, RSA_DEC };

static int run_one(enum op op, size_t n)
{
        switch (op) {
        case GCM_ENC: return gcm_enc(n);
        case GCM_DEC: return gcm_dec(n);
        case KWP_WRAP: return kwp_wrap();
        case KWP_UNWRAP: return kwp_unwrap();
        case RSA_DEC: return rsa_dec();
        }
        return -1;
}

/* Operations per second over about `secs` seconds; -1 on a failure. */
static double rate(enum op op, size_t n, double secs)
{
        if (run_one(op, n) != 0)   /* also produces the input of the inverse op */
                return -1;
        unsigned long count = 0;
        double t0 = now_s(), t = t0;
        while (t - t0 < secs) {
                for (int i = 0; i < 16; i++)
                        if (run_one(op, n) != 0)
                                return -1;
                count += 16;
                t = now_s();
        }
        return (double)count / (t - t0);
}

int main(int argc, char **argv)
{
        double secs = argc > 1 ? atof(argv[1]) : 1.0;
        int rsa_only = argc > 2 && strcmp(argv[2], "rsa") == 0;
        if (argc > 3 || (argc == 3 && !rsa_only) || secs < 0.1 || secs > 30) {
                fprintf(stderr, "usage: kw-cryptocost [SECONDS_PER_OP [rsa]]  (0.1..30)\n");
                return 2;
        }
        if (RAND_bytes(key, sizeof key) != 1 || RAND_bytes(iv, sizeof iv) != 1 ||
            RAND_bytes(aad, sizeof aad) != 1 || RAND_bytes(pt, sizeof pt) != 1)
                return 3;
        struct {
                const char *name;
                enum op op;
                size_t n;
        } plan[] = {
                { "aes_gcm_enc_64", GCM_ENC, 64 },     { "aes_gcm_dec_64", GCM_DEC, 64 },
                { "aes_gcm_enc_4096", GCM_ENC, 4096 }, { "aes_gcm_dec_4096", GCM_DEC, 4096 },
                { "aes_kwp_wrap_32", KWP_WRAP, 32 },   { "aes_kwp_unwrap_32", KWP_UNWRAP, 32 },
        };
        printf("{");
        for (size_t i = 0; !rsa_only && i < sizeof plan / sizeof plan[0]; i++) {
                if (plan[i].op == GCM_DEC)
                        gcm_enc(plan[i].n);   /* matching ciphertext and tag */
                double r = rate(plan[i].op, plan[i].n, secs);
                if (r < 0) {
                        fprintf(stderr, "kw-cryptocost: %s failed\n", plan[i].name);
                        return 3;
                }
                printf("%s\"%s\":%.1f", i ? "," : "", plan[i].name, r);
        }
        static const unsigned bits[] = { 2048, 3072, 4096 };
        for (size_t i = 0; i < 3; i++) {
                if (rsa_prepare(bits[i]) != 0) {
                        fprintf(stderr, "kw-cryptocost: RSA-%u set-up failed\n", bits[i]);
                        return 3;
                }
                double r = rate(RSA_DEC, 0, secs);
                if (r < 0) {
                        fprintf(stderr, "kw-cryptocost: RSA-%u decrypt failed\n", bits[i]);
                        return 3;
                }
                printf("%s\"rsa_oaep256_dec_%u\":%.1f", rsa_only && i == 0 ? "" : ",", bits[i], r);
        }
        printf("}\n");
        OPENSSL_cleanse(key, sizeof key);
        EVP_PKEY_free(rsa_key);
        return 0;
}
