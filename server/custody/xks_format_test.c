/* xks_format_test.c - XKS metadata, AAD binding, and the spec's CDIV example. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/b64.h"
#include "custody/xks_format.h"

static void decode(const char *b64, struct kw_buf *out)
{
        kw_buf_init(out, 1024);
        assert_int_equal(kw_b64_decode(b64, strlen(b64), out).code, 0);
}

/* AWS XKS Proxy API spec v1.0.3, Appendix C example. */
static void xks_cdiv_spec_example(void **state)
{
        (void)state;
        const char *aad = "project=nile,department=marketing", *md = "key_version=1";
        struct kw_buf iv, ct, tag, enc;
        decode("HMrlRw85cAJUd5Ax", &iv);
        decode("ghxkK1txeDNn3q8Y", &ct);
        decode("vBxN2ncH1oEkR8WVXpmyYQ==", &tag);
        uint8_t h[32];
        assert_int_equal(kw_xks_cdiv((const uint8_t *)aad, strlen(aad), (const uint8_t *)md,
                                     strlen(md), iv.p, iv.len, ct.p, ct.len, tag.p, tag.len, h).code,
                         0);
        kw_buf_init(&enc, 64);
        assert_int_equal(kw_b64_encode(h, 32, &enc).code, 0);
        assert_int_equal(enc.len, 44);
        assert_memory_equal(enc.p, "qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc=", 44);
        /* any byte of any part changes it */
        ct.p[0] ^= 1;
        uint8_t h2[32];
        assert_int_equal(kw_xks_cdiv((const uint8_t *)aad, strlen(aad), (const uint8_t *)md,
                                     strlen(md), iv.p, iv.len, ct.p, ct.len, tag.p, tag.len, h2).code,
                         0);
        assert_memory_not_equal(h, h2, 32);
        kw_buf_free(&iv);
        kw_buf_free(&ct);
        kw_buf_free(&tag);
        kw_buf_free(&enc);
}

static void xks_md_roundtrip_and_refusals(void **state)
{
        (void)state;
        char md[16];
        size_t n = kw_xks_md_format(4294967295u, md);
        assert_int_equal(n, 15);
        uint32_t v = 0;
        assert_int_equal(kw_xks_md_parse((const uint8_t *)md, n, &v).code, 0);
        assert_int_equal(v, 4294967295u);
        n = kw_xks_md_format(1, md);
        assert_string_equal(md, "kwv1:1");
        static const char *const bad[] = { "", "kwv1:", "kwv1:0", "kwv1:01", "kwv2:1", "kwv1:1x",
                                           "kwv1:4294967296", "kwv1:99999999999", "key_version=1" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                v = 7;
                assert_int_equal(kw_xks_md_parse((const uint8_t *)bad[i], strlen(bad[i]), &v).code,
                                 KW_ERR_DECRYPT);
                assert_int_equal(v, 7);
        }
}

static void xks_aad_bind_layout(void **state)
{
        (void)state;
        struct kw_buf b;
        kw_buf_init(&b, 64);
        assert_int_equal(kw_xks_aad_bind((const uint8_t *)"ab", 2, (const uint8_t *)"kwv1:3", 6, &b).code, 0);
        assert_int_equal(b.len, 2 + 2 + 1 + 6);
        assert_memory_equal(b.p, "\x00\x02" "ab" "\x06" "kwv1:3", b.len);
        kw_buf_reset(&b);
        assert_int_equal(kw_xks_aad_bind(NULL, 0, NULL, 0, &b).code, 0);
        assert_memory_equal(b.p, "\x00\x00\x00", 3);
        kw_buf_free(&b);
        struct kw_buf small;
        kw_buf_init(&small, 4);
        assert_int_equal(kw_xks_aad_bind((const uint8_t *)"abcd", 4, NULL, 0, &small).code, KW_ERR_TOO_LARGE);
        assert_int_equal(small.len, 0);
        kw_buf_free(&small);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(xks_cdiv_spec_example),
                cmocka_unit_test(xks_md_roundtrip_and_refusals),
                cmocka_unit_test(xks_aad_bind_layout),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
