/* buf_test.c - bounded reader and capped writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/json_io.h"

static void buf_read_u32be_truncated_input_fails(void **state)
{
        (void)state;
        const uint8_t in[3] = { 1, 2, 3 };
        struct kw_reader r = kw_reader_init(in, sizeof in);
        uint32_t v = 7;
        assert_int_equal(kw_read_u32be(&r, &v).code, KW_ERR_TRUNCATED);
        assert_true(r.off == 0 && v == 7);
}

static void buf_read_all_widths_advance(void **state)
{
        (void)state;
        const uint8_t in[] = { 0xab, 0x01, 0x02, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9, 'x', 'y' };
        struct kw_reader r = kw_reader_init(in, sizeof in);
        uint8_t a;
        uint16_t b;
        uint32_t c;
        uint64_t d;
        const uint8_t *p;
        assert_int_equal(kw_read_u8(&r, &a).code, 0);
        assert_int_equal(kw_read_u16be(&r, &b).code, 0);
        assert_int_equal(kw_read_u32be(&r, &c).code, 0);
        assert_int_equal(kw_read_u64be(&r, &d).code, 0);
        assert_int_equal(kw_read_bytes(&r, 2, &p).code, 0);
        assert_int_equal(a, 0xab);
        assert_int_equal(b, 0x0102);
        assert_int_equal(c, 5);
        assert_int_equal(d, 9);
        assert_memory_equal(p, "xy", 2);
        assert_int_equal(kw_reader_left(&r), 0);
        assert_int_equal(kw_read_u8(&r, &a).code, KW_ERR_TRUNCATED);
}

static void buf_read_bytes_huge_length_fails(void **state)
{
        (void)state;
        const uint8_t in[4] = { 0 };
        struct kw_reader r = kw_reader_init(in, sizeof in);
        const uint8_t *p = NULL;
        assert_int_equal(kw_read_bytes(&r, SIZE_MAX, &p).code, KW_ERR_TRUNCATED);
        assert_null(p);
        assert_int_equal(r.off, 0);
}

static void buf_put_over_cap_fails_unchanged(void **state)
{
        (void)state;
        struct kw_buf b;
        kw_buf_init(&b, 8);
        assert_int_equal(kw_buf_put(&b, "12345", 5).code, 0);
        assert_int_equal(kw_buf_put(&b, "6789", 4).code, KW_ERR_TOO_LARGE);
        assert_int_equal(b.len, 5);
        assert_int_equal(kw_buf_put(&b, "678", 3).code, 0);
        assert_memory_equal(b.p, "12345678", 8);
        assert_int_equal(kw_buf_put_u8(&b, 1).code, KW_ERR_TOO_LARGE);
        assert_int_equal(kw_buf_put(&b, "x", SIZE_MAX).code, KW_ERR_TOO_LARGE);
        kw_buf_free(&b);
        assert_null(b.p);
}

static void buf_printf_grows_and_caps(void **state)
{
        (void)state;
        struct kw_buf b;
        kw_buf_init(&b, 1000);
        char big[600];
        memset(big, 'a', sizeof big - 1);
        big[sizeof big - 1] = 0;
        assert_int_equal(kw_buf_printf(&b, "%s", big).code, 0);
        assert_int_equal(b.len, 599);
        assert_int_equal(kw_buf_printf(&b, "%s", big).code, KW_ERR_TOO_LARGE);
        assert_int_equal(b.len, 599);
        const char *s;
        assert_int_equal(kw_buf_cstr(&b, &s).code, 0);
        assert_int_equal(strlen(s), 599);
        kw_buf_free(&b);
}

static void buf_json_escape_controls_and_quotes(void **state)
{
        (void)state;
        struct kw_buf b;
        kw_buf_init(&b, 100);
        const char in[] = "a\"b\\c\n\x01\x7f";
        assert_int_equal(kw_buf_put_json_escaped(&b, in, sizeof in - 1).code, 0);
        const char *s;
        assert_int_equal(kw_buf_cstr(&b, &s).code, 0);
        assert_string_equal(s, "a\\\"b\\\\c\\n\\u0001\\u007f");
        kw_buf_free(&b);
}

static void buf_json_escape_over_cap_is_all_or_nothing(void **state)
{
        (void)state;
        struct kw_buf b;
        kw_buf_init(&b, 6);
        assert_int_equal(kw_buf_put(&b, "ab", 2).code, 0);
        assert_int_equal(kw_buf_put_json_escaped(&b, "\n\n\n", 3).code, KW_ERR_TOO_LARGE);
        assert_int_equal(b.len, 2);
        kw_buf_free(&b);
}

/* Ill-formed UTF-8 (RFC 3629): every byte that is not part of a well-formed
 * sequence becomes \ufffd; well-formed sequences pass through unchanged. */
static const struct {
        const char *in;
        size_t len;
        const char *out;
} utf8_cases[] = {
        { "\x80", 1, "\\ufffd" },                                   /* lone continuation */
        { "a\xbf" "b", 3, "a\\ufffdb" },
        { "\xc0\x80", 2, "\\ufffd\\ufffd" },                        /* overlong NUL */
        { "\xc1\xbf", 2, "\\ufffd\\ufffd" },                        /* overlong 2-byte */
        { "\xe0\x80\xaf", 3, "\\ufffd\\ufffd\\ufffd" },             /* overlong 3-byte */
        { "\xf0\x80\x80\xaf", 4, "\\ufffd\\ufffd\\ufffd\\ufffd" },  /* overlong 4-byte */
        { "\xed\xa0\x80", 3, "\\ufffd\\ufffd\\ufffd" },             /* surrogate U+D800 */
        { "\xed\xbf\xbf", 3, "\\ufffd\\ufffd\\ufffd" },             /* surrogate U+DFFF */
        { "\xf4\x90\x80\x80", 4, "\\ufffd\\ufffd\\ufffd\\ufffd" },  /* U+110000 */
        { "\xf5\x80\x80\x80", 4, "\\ufffd\\ufffd\\ufffd\\ufffd" },
        { "\xfe\xff", 2, "\\ufffd\\ufffd" },
        { "ok\xe2\x82", 4, "ok\\ufffd\\ufffd" },                    /* truncated at the end */
        { "\xf0\x9f\x98", 3, "\\ufffd\\ufffd\\ufffd" },
        { "\xc3", 1, "\\ufffd" },
        { "\xc3" "A\"", 3, "\\ufffdA\\\"" },                        /* cut short by ASCII */
        { "\xe2\x82\x22", 3, "\\ufffd\\ufffd\\\"" },                /* ... by a quote */
        { "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", 13,
          "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf" },  /* well-formed, kept */
        { "\xed\x9f\xbf\xee\x80\x80", 6, "\xed\x9f\xbf\xee\x80\x80" },  /* around the surrogates */
};

static void buf_json_escape_invalid_utf8_is_replaced(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof utf8_cases / sizeof utf8_cases[0]; i++) {
                struct kw_buf b;
                kw_buf_init(&b, 200);
                assert_int_equal(kw_buf_put(&b, "{\"v\":\"", 6).code, 0);
                assert_int_equal(kw_buf_put_json_escaped(&b, utf8_cases[i].in, utf8_cases[i].len).code, 0);
                assert_int_equal(kw_buf_put(&b, "\"}", 2).code, 0);
                const char *s;
                assert_int_equal(kw_buf_cstr(&b, &s).code, 0);
                if (strlen(s + 6) - 2 != strlen(utf8_cases[i].out) ||
                    memcmp(s + 6, utf8_cases[i].out, strlen(utf8_cases[i].out)) != 0)
                        fail_msg("case %zu: got %s", i, s);
                /* and a strict parser (UTF-8 checked on the raw bytes) takes it */
                cJSON *j = NULL;
                assert_int_equal(kw_json_parse(b.p, b.len, 4, &j).code, 0);
                cJSON_Delete(j);
                kw_buf_free(&b);
        }
}

static void buf_utf8_seq_len_cases(void **state)
{
        (void)state;
        assert_int_equal(kw_utf8_seq_len((const uint8_t *)"A", 1), 1);
        assert_int_equal(kw_utf8_seq_len((const uint8_t *)"\xc3\xa9", 2), 2);
        assert_int_equal(kw_utf8_seq_len((const uint8_t *)"\xc3\xa9", 1), 0);   /* truncated */
        assert_int_equal(kw_utf8_seq_len((const uint8_t *)"\xe2\x82\xac", 3), 3);
        assert_int_equal(kw_utf8_seq_len((const uint8_t *)"\xf0\x9f\x98\x80", 4), 4);
        assert_int_equal(kw_utf8_seq_len((const uint8_t *)"\xed\xa0\x80", 3), 0);
        assert_int_equal(kw_utf8_seq_len((const uint8_t *)"\xc0\x80", 2), 0);
        assert_int_equal(kw_utf8_seq_len((const uint8_t *)"\xf4\x90\x80\x80", 4), 0);
        assert_int_equal(kw_utf8_seq_len((const uint8_t *)"\x80", 1), 0);
        assert_int_equal(kw_utf8_seq_len((const uint8_t *)"", 0), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(buf_read_u32be_truncated_input_fails),
                cmocka_unit_test(buf_read_all_widths_advance),
                cmocka_unit_test(buf_read_bytes_huge_length_fails),
                cmocka_unit_test(buf_put_over_cap_fails_unchanged),
                cmocka_unit_test(buf_printf_grows_and_caps),
                cmocka_unit_test(buf_json_escape_controls_and_quotes),
                cmocka_unit_test(buf_json_escape_over_cap_is_all_or_nothing),
                cmocka_unit_test(buf_json_escape_invalid_utf8_is_replaced),
                cmocka_unit_test(buf_utf8_seq_len_cases),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
