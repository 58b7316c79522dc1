/* tpm_ak_test.c - the AK pin: SHA-256 of the bytes inside the TPM2B_PUBLIC,
 * and the framings that are refused with the output untouched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/b64.h"
#include "common/buf.h"
#include "common/tpm_ak.h"

/* "\x00\x03abc": SHA-256("abc") is the FIPS 180-2 example */
#define ABC_SHA256 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

static void tpm_ak_sha256_hashes_the_tpmt_public(void **state)
{
        (void)state;
        char hex[KW_TPM_AK_HEX_SIZE];
        assert_int_equal(kw_tpm_ak_sha256("AANhYmM=", hex).code, 0);
        assert_string_equal(hex, ABC_SHA256);
}

static void tpm_ak_sha256_refuses_bad_framing(void **state)
{
        (void)state;
        static const char *const bad[] = {
                "AARhYmM=",     /* size 4, 3 bytes follow */
                "AAJhYmM=",     /* size 2, 3 bytes follow */
                "AAA=",         /* size 0 */
                "AA==",         /* one byte */
                "",             /* nothing */
                "AANhYmM",      /* not padded base64 */
                "AANh YmM=",    /* not base64 */
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                char hex[KW_TPM_AK_HEX_SIZE] = "untouched";
                assert_int_equal(kw_tpm_ak_sha256(bad[i], hex).code, KW_ERR_BAD_FIELD);
                assert_string_equal(hex, "untouched");
        }
        char hex[KW_TPM_AK_HEX_SIZE] = "untouched";
        assert_int_equal(kw_tpm_ak_sha256(NULL, hex).code, KW_ERR_BAD_FIELD);
}

static void tpm_ak_sha256_refuses_more_than_1024_bytes(void **state)
{
        (void)state;
        /* size 0x0401 and 1025 zero bytes */
        uint8_t raw[1027] = { 0x04, 0x01 };
        struct kw_buf b64;
        kw_buf_init(&b64, 2048);
        assert_int_equal(kw_b64_encode(raw, sizeof raw, &b64).code, 0);
        assert_int_equal(kw_buf_put(&b64, "", 1).code, 0);
        char hex[KW_TPM_AK_HEX_SIZE] = "untouched";
        assert_int_equal(kw_tpm_ak_sha256((const char *)b64.p, hex).code, KW_ERR_BAD_FIELD);
        assert_string_equal(hex, "untouched");
        kw_buf_free(&b64);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(tpm_ak_sha256_hashes_the_tpmt_public),
                cmocka_unit_test(tpm_ak_sha256_refuses_bad_framing),
                cmocka_unit_test(tpm_ak_sha256_refuses_more_than_1024_bytes),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
