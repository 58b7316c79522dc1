/* b64_test.c - strict base64 / base64url / hex codecs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "b64.h"

#define CAP 4096

struct vec {
        const char *raw;
        size_t n;
        const char *std, *url;
};

/* RFC 4648 section 10, plus the two characters where the alphabets differ. */
static const struct vec vecs[] = {
        { "", 0, "", "" },
        { "f", 1, "Zg==", "Zg" },
        { "fo", 2, "Zm8=", "Zm8" },
        { "foo", 3, "Zm9v", "Zm9v" },
        { "foob", 4, "Zm9vYg==", "Zm9vYg" },
        { "fooba", 5, "Zm9vYmE=", "Zm9vYmE" },
        { "foobar", 6, "Zm9vYmFy", "Zm9vYmFy" },
        { "\xfb\xff", 2, "+/8=", "-_8" },
        { "\xfb\xef\xbe", 3, "++++", "----" },
        { "\xff\xff\xff", 3, "////", "____" },
        { "\x00\x00\x00\x00", 4, "AAAAAA==", "AAAAAA" },
};
#define NVECS (sizeof vecs / sizeof vecs[0])

/* A buffer that already holds "xyz", so appending and rollback are visible. */
static void prefilled(struct kw_buf *b, size_t cap)
{
        kw_buf_init(b, cap);
        assert_int_equal(kw_buf_put(b, "xyz", 3).code, 0);
}

static void assert_unchanged(const struct kw_buf *b)
{
        assert_int_equal(b->len, 3);
        assert_memory_equal(b->p, "xyz", 3);
}

static int setup(void **state)
{
        (void)state;
        int locked;
        return kw_secret_init(1 << 20, &locked).code == 0 ? 0 : -1;
}

static void b64_encode_rfc4648_vectors_match(void **state)
{
        (void)state;
        for (size_t i = 0; i < NVECS; i++) {
                struct kw_buf b, u;
                prefilled(&b, CAP);
                prefilled(&u, CAP);
                size_t n = vecs[i].n;
                assert_int_equal(kw_b64_encode((const uint8_t *)vecs[i].raw, n, &b).code, 0);
                assert_int_equal(kw_b64url_encode((const uint8_t *)vecs[i].raw, n, &u).code, 0);
                assert_int_equal(b.len, 3 + strlen(vecs[i].std));
                assert_memory_equal(b.p, "xyz", 3);
                assert_memory_equal(b.p + 3, vecs[i].std, strlen(vecs[i].std));
                assert_int_equal(u.len, 3 + strlen(vecs[i].url));
                assert_memory_equal(u.p + 3, vecs[i].url, strlen(vecs[i].url));
                kw_buf_free(&b);
                kw_buf_free(&u);
        }
}

static void b64_decode_rfc4648_vectors_match(void **state)
{
        (void)state;
        for (size_t i = 0; i < NVECS; i++) {
                size_t n = vecs[i].n;
                const char *s = vecs[i].std, *u = vecs[i].url;
                struct kw_buf b, c;
                prefilled(&b, CAP);
                prefilled(&c, CAP);
                assert_int_equal(kw_b64_decode(s, strlen(s), &b).code, 0);
                assert_int_equal(kw_b64url_decode(u, strlen(u), &c).code, 0);
                assert_int_equal(b.len, 3 + n);
                assert_int_equal(c.len, 3 + n);
                assert_memory_equal(b.p, "xyz", 3);
                if (n) {
                        assert_memory_equal(b.p + 3, vecs[i].raw, n);
                        assert_memory_equal(c.p + 3, vecs[i].raw, n);
                }
                struct kw_secret ks = { 0 }, ku = { 0 };
                assert_int_equal(kw_b64_decode_secret(s, strlen(s), &ks).code, 0);
                assert_int_equal(kw_b64url_decode_secret(u, strlen(u), &ku).code, 0);
                assert_int_equal(ks.len, n);
                assert_int_equal(ku.len, n);
                if (n) {
                        assert_memory_equal(ks.p, vecs[i].raw, n);
                        assert_memory_equal(ku.p, vecs[i].raw, n);
                }
                kw_secret_free(&ks);
                kw_secret_free(&ku);
                kw_buf_free(&b);
                kw_buf_free(&c);
        }
}

/* Every decoder (buffer and secret) must reject s and change nothing. */
static void expect_reject(const char *s, size_t n, int url)
{
        struct kw_buf b;
        prefilled(&b, CAP);
        struct kw_secret sec = { (uint8_t *)0x1, 77 };
        kw_result r1 = url ? kw_b64url_decode(s, n, &b) : kw_b64_decode(s, n, &b);
        kw_result r2 = url ? kw_b64url_decode_secret(s, n, &sec) : kw_b64_decode_secret(s, n, &sec);
        if (r1.code != KW_ERR_BAD_ENCODING || r2.code != KW_ERR_BAD_ENCODING)
                fail_msg("%s decoder accepted \"%.*s\" (%d, %d)", url ? "base64url" : "base64",
                         (int)n, s, r1.code, r2.code);
        assert_unchanged(&b);
        assert_ptr_equal(sec.p, (uint8_t *)0x1);
        assert_int_equal(sec.len, 77);
        kw_buf_free(&b);
}

static void b64_decode_bad_length_fails(void **state)
{
        (void)state;
        static const char *const bad[] = { "Z", "Zg", "Zg=", "Zm9vY", "Zm9vYg", "Zm9vYmE",
                                           "Zm9vYmFy=", "Zm9vYmFyZ" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                expect_reject(bad[i], strlen(bad[i]), 0);
}

static void b64_decode_bad_character_fails(void **state)
{
        (void)state;
        /* Each bad character in each position of a valid 8-char input. */
        static const char bad[] = { ' ', '\n', '\r', '\t', '\0', '-', '_', '.', '!', '@',
                                    '[', '`', '{', '~', ':', (char)0x80, (char)0xc3, (char)0xff };
        const char *good = "Zm9vYmFy";
        for (size_t i = 0; i < sizeof bad; i++) {
                for (size_t pos = 0; pos < 8; pos++) {
                        char s[8];
                        memcpy(s, good, 8);
                        s[pos] = bad[i];
                        expect_reject(s, 8, 0);
                }
        }
        expect_reject("Zm9v\nYmFy", 9, 0);
        expect_reject("Zm9v YmE", 8, 0);
}

static void b64_decode_misplaced_padding_fails(void **state)
{
        (void)state;
        static const char *const bad[] = { "====", "A===", "Z===", "Zg=a", "=Zg=", "Z=g=",
                                           "Zm9v====", "Zm9v=Zm9", "Zg==Zg==", "Zm=vYmFy",
                                           "Zm9vYg=\x3d=" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                expect_reject(bad[i], strlen(bad[i]), 0);
}

static void b64_decode_nonzero_trailing_bits_fails(void **state)
{
        (void)state;
        /* "Zg==" and "Zm8=" are canonical; these differ only in dropped bits. */
        static const char *const bad[] = { "Zh==", "Zv==", "Zm9=", "Zm+=", "Zm9vYh==",
                                           "Zm9vYmF=", "AB==", "AAB=" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                expect_reject(bad[i], strlen(bad[i]), 0);
        /* Sanity: the canonical forms pass. */
        struct kw_buf b;
        kw_buf_init(&b, CAP);
        assert_int_equal(kw_b64_decode("AA==", 4, &b).code, 0);
        assert_int_equal(kw_b64_decode("AAA=", 4, &b).code, 0);
        assert_int_equal(b.len, 3);
        kw_buf_free(&b);
}

static void b64url_decode_bad_length_fails(void **state)
{
        (void)state;
        static const char *const bad[] = { "Z", "Zm9vY", "Zm9vYmFyZ" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                expect_reject(bad[i], strlen(bad[i]), 1);
}

static void b64url_decode_padding_fails(void **state)
{
        (void)state;
        static const char *const bad[] = { "Zg==", "Zm8=", "Zg=", "Zm9vYg==", "====", "=",
                                           "Zm9v=", "Zm=v" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                expect_reject(bad[i], strlen(bad[i]), 1);
}

static void b64url_decode_bad_character_fails(void **state)
{
        (void)state;
        static const char bad[] = { '+', '/', '=', ' ', '\n', '\0', '.', '~', (char)0x80,
                                    (char)0xff };
        const char *good = "Zm9vYmFy";
        for (size_t i = 0; i < sizeof bad; i++) {
                for (size_t pos = 0; pos < 8; pos++) {
                        char s[8];
                        memcpy(s, good, 8);
                        s[pos] = bad[i];
                        expect_reject(s, 8, 1);
                }
        }
}

static void b64url_decode_nonzero_trailing_bits_fails(void **state)
{
        (void)state;
        static const char *const bad[] = { "Zh", "Zv", "Zm9", "Zm-", "Zm9vYh", "Zm9vYmF",
                                           "AB", "AAB" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                expect_reject(bad[i], strlen(bad[i]), 1);
}

/* Every one of the 256 byte values, classified against a reference table. */
static void b64_decode_alphabet_exhaustive(void **state)
{
        (void)state;
        static const char std[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        static const char url[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for (int alpha = 0; alpha < 2; alpha++) {
                const char *tab = alpha ? url : std;
                for (int c = 0; c < 256; c++) {
                        const char *hit = c ? memchr(tab, c, 64) : NULL;
                        char s[4] = { (char)c, 'A', 'A', 'A' };
                        struct kw_buf b;
                        kw_buf_init(&b, CAP);
                        kw_result r = alpha ? kw_b64url_decode(s, 4, &b) : kw_b64_decode(s, 4, &b);
                        if (hit == NULL) {
                                assert_int_equal(r.code, KW_ERR_BAD_ENCODING);
                                assert_int_equal(b.len, 0);
                        } else {
                                assert_int_equal(r.code, 0);
                                assert_int_equal(b.len, 3);
                                assert_int_equal(b.p[0] >> 2, hit - tab);
                                assert_int_equal(b.p[0] & 3, 0);
                        }
                        kw_buf_free(&b);
                }
        }
}

static void b64_decode_over_cap_fails(void **state)
{
        (void)state;
        struct kw_buf b;
        prefilled(&b, 8); /* room for 5 more bytes */
        assert_int_equal(kw_b64_decode("Zm9vYmFy", 8, &b).code, KW_ERR_TOO_LARGE);
        assert_unchanged(&b);
        assert_int_equal(kw_b64url_decode("Zm9vYmFy", 8, &b).code, KW_ERR_TOO_LARGE);
        assert_unchanged(&b);
        assert_int_equal(kw_b64_encode((const uint8_t *)"foo", 3, &b).code, 0); /* 4 fit */
        assert_int_equal(b.len, 7);
        assert_int_equal(kw_b64_encode((const uint8_t *)"f", 1, &b).code, KW_ERR_TOO_LARGE);
        assert_int_equal(kw_b64url_encode((const uint8_t *)"fo", 2, &b).code, KW_ERR_TOO_LARGE);
        assert_int_equal(kw_hex_encode((const uint8_t *)"f", 1, &b).code, KW_ERR_TOO_LARGE);
        assert_int_equal(b.len, 7);
        assert_memory_equal(b.p, "xyzZm9v", 7);
        kw_buf_free(&b);
}

static void b64_decoded_len_values(void **state)
{
        (void)state;
        assert_int_equal(kw_b64_decoded_len(0), 0);
        assert_int_equal(kw_b64_decoded_len(4), 3);
        assert_int_equal(kw_b64_decoded_len(44), 33);
        assert_true(kw_b64_decoded_len(1) == SIZE_MAX);
        assert_true(kw_b64_decoded_len(2) == SIZE_MAX);
        assert_true(kw_b64_decoded_len(43) == SIZE_MAX);
        assert_int_equal(kw_b64url_decoded_len(0), 0);
        assert_int_equal(kw_b64url_decoded_len(2), 1);
        assert_int_equal(kw_b64url_decoded_len(3), 2);
        assert_int_equal(kw_b64url_decoded_len(4), 3);
        assert_int_equal(kw_b64url_decoded_len(43), 32);
        assert_true(kw_b64url_decoded_len(1) == SIZE_MAX);
        assert_true(kw_b64url_decoded_len(5) == SIZE_MAX);
}

static void b64_roundtrip_random_lengths(void **state)
{
        (void)state;
        uint8_t raw[300];
        for (size_t n = 0; n <= sizeof raw; n++) {
                assert_int_equal(RAND_bytes(raw, sizeof raw), 1);
                struct kw_buf e, u, d, du;
                kw_buf_init(&e, CAP);
                kw_buf_init(&u, CAP);
                kw_buf_init(&d, CAP);
                kw_buf_init(&du, CAP);
                assert_int_equal(kw_b64_encode(raw, n, &e).code, 0);
                assert_int_equal(kw_b64url_encode(raw, n, &u).code, 0);
                /* Cross-check the padded form against OpenSSL's encoder. */
                unsigned char ref[4 * 100 + 1];
                int rl = EVP_EncodeBlock(ref, raw, (int)n);
                assert_int_equal((size_t)rl, e.len);
                assert_memory_equal(ref, e.p, e.len);
                /* base64url is the padded form with -_ and the '=' removed. */
                size_t ul = e.len;
                while (ul > 0 && ref[ul - 1] == '=')
                        ul--;
                assert_int_equal(u.len, ul);
                for (size_t i = 0; i < ul; i++) {
                        char c = (char)ref[i];
                        char want = c == '+' ? '-' : c == '/' ? '_' : c;
                        assert_int_equal(u.p[i], want);
                }
                assert_true(kw_b64_decoded_len(e.len) >= n);
                assert_int_equal(kw_b64url_decoded_len(u.len), n);
                assert_int_equal(kw_b64_decode((const char *)e.p, e.len, &d).code, 0);
                assert_int_equal(kw_b64url_decode((const char *)u.p, u.len, &du).code, 0);
                assert_int_equal(d.len, n);
                assert_int_equal(du.len, n);
                if (n) {
                        assert_memory_equal(d.p, raw, n);
                        assert_memory_equal(du.p, raw, n);
                }
                struct kw_secret s = { 0 };
                assert_int_equal(kw_b64_decode_secret((const char *)e.p, e.len, &s).code, 0);
                assert_int_equal(s.len, n);
                if (n)
                        assert_memory_equal(s.p, raw, n);
                kw_secret_free(&s);
                assert_int_equal(kw_b64url_decode_secret((const char *)u.p, u.len, &s).code, 0);
                assert_int_equal(s.len, n);
                if (n)
                        assert_memory_equal(s.p, raw, n);
                kw_secret_free(&s);
                kw_buf_free(&e);
                kw_buf_free(&u);
                kw_buf_free(&d);
                kw_buf_free(&du);
        }
}

static void hex_encode_all_bytes_lowercase(void **state)
{
        (void)state;
        uint8_t all[256];
        char want[513];
        for (int i = 0; i < 256; i++) {
                all[i] = (uint8_t)i;
                snprintf(want + 2 * i, 3, "%02x", i);
        }
        struct kw_buf b;
        prefilled(&b, CAP);
        assert_int_equal(kw_hex_encode(all, 256, &b).code, 0);
        assert_int_equal(b.len, 3 + 512);
        assert_memory_equal(b.p, "xyz", 3);
        assert_memory_equal(b.p + 3, want, 512);
        assert_int_equal(kw_hex_encode(all, 0, &b).code, 0);
        assert_int_equal(b.len, 3 + 512);
        kw_buf_free(&b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(b64_encode_rfc4648_vectors_match),
                cmocka_unit_test(b64_decode_rfc4648_vectors_match),
                cmocka_unit_test(b64_decode_bad_length_fails),
                cmocka_unit_test(b64_decode_bad_character_fails),
                cmocka_unit_test(b64_decode_misplaced_padding_fails),
                cmocka_unit_test(b64_decode_nonzero_trailing_bits_fails),
                cmocka_unit_test(b64url_decode_bad_length_fails),
                cmocka_unit_test(b64url_decode_padding_fails),
                cmocka_unit_test(b64url_decode_bad_character_fails),
                cmocka_unit_test(b64url_decode_nonzero_trailing_bits_fails),
                cmocka_unit_test(b64_decode_alphabet_exhaustive),
                cmocka_unit_test(b64_decode_over_cap_fails),
                cmocka_unit_test(b64_decoded_len_values),
                cmocka_unit_test(b64_roundtrip_random_lengths),
                cmocka_unit_test(hex_encode_all_bytes_lowercase),
        };
        return cmocka_run_group_tests(tests, setup, NULL);
}
