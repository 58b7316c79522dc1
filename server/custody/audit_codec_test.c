/* audit_codec_test.c - cmocka tests of the audit chain step and the batch codec. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "custody/audit_codec.h"

/* ------------------------------------------------------------- helpers */

static uint32_t rnd_state = 12345;
static uint32_t rnd(void)
{
        rnd_state = rnd_state * 1103515245u + 12345u;
        return rnd_state >> 8;
}

struct recset {
        size_t n;
        struct kw_audit_rec *r;
        char (*s)[KW_AUDIT_FIELDS][80];
};

static void uuid_into(char *out, int style)
{
        static const char lo[] = "0123456789abcdef", up[] = "0123456789ABCDEF";
        size_t o = 0;
        for (int i = 0; i < 16; i++) {
                if (i == 4 || i == 6 || i == 8 || i == 10)
                        out[o++] = '-';
                const char *hx = style == 1 ? up : style == 2 && (i & 1) ? up : lo;
                uint32_t v = rnd();
                out[o++] = hx[(v >> 4) & 15];
                out[o++] = hx[v & 15];
        }
        out[o] = '\0';
}

/* n records as an XKS workload records them; a few odd ones mixed in. */
static void recset_make(struct recset *rs, size_t n)
{
        rs->n = n;
        rs->r = calloc(n, sizeof *rs->r);
        rs->s = calloc(n, sizeof *rs->s);
        assert_non_null(rs->r);
        assert_non_null(rs->s);
        int64_t ts = 1700000000000;
        for (size_t i = 0; i < n; i++) {
                char(*s)[80] = rs->s[i];
                snprintf(s[0], 80, "%s", i % 17 == 0 ? "" : "xks:default:AKIAKEYWARDTESTAAAAA");
                snprintf(s[1], 80, "%s", i % 2 ? "xks.decrypt" : "xks.encrypt");
                snprintf(s[2], 80, "tenant-key-%zu", i % 3);
                snprintf(s[3], 80, "%s", i % 11 == 0 ? "key_disabled" : "ok");
                snprintf(s[4], 80, "%s", i % 13 == 0 ? "caf\xc3\xa9 \x01 detail" : "");
                switch (i % 5) {
                case 0: snprintf(s[5], 80, "h-%zu", i); break;
                case 1: uuid_into(s[5], 1); break;           /* upper case */
                case 2: uuid_into(s[5], 2); break;           /* mixed: stays text */
                default: uuid_into(s[5], 0); break;          /* lower case */
                }
                ts += (int64_t)(rnd() % 5) - (i % 50 == 49 ? 3000 : 0); /* clocks go back too */
                kw_audit_rec_set(&rs->r[i], i == 7 ? -5 : ts, s[0], s[1], s[2], s[3], s[4], s[5]);
        }
}

static void recset_free(struct recset *rs)
{
        free(rs->r);
        free(rs->s);
}

static void assert_recs_equal(const struct kw_audit_rec *a, const struct kw_audit_rec *b, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                assert_true(a[i].ts_ms == b[i].ts_ms);
                for (int k = 0; k < KW_AUDIT_FIELDS; k++) {
                        assert_int_equal(a[i].flen[k], b[i].flen[k]);
                        assert_memory_equal(a[i].f[k], b[i].f[k], a[i].flen[k]);
                        assert_int_equal(b[i].f[k][b[i].flen[k]], '\0');
                }
        }
}

/* A blob around hand-made raw bytes (format 1, zlib). */
static void blob_of_raw(const uint8_t *raw, size_t raw_len, long declared, struct kw_buf *out)
{
        uint8_t z[4096];
        uLongf zl = sizeof z;
        assert_int_equal(compress2(z, &zl, raw, (uLong)raw_len, 6), Z_OK);
        kw_buf_init(out, 1 << 20);
        uint64_t d = declared >= 0 ? (uint64_t)declared : raw_len;
        assert_int_equal(kw_buf_put_u8(out, 1).code, 0);
        while (d >= 0x80) {
                assert_int_equal(kw_buf_put_u8(out, (uint8_t)(d | 0x80)).code, 0);
                d >>= 7;
        }
        assert_int_equal(kw_buf_put_u8(out, (uint8_t)d).code, 0);
        assert_int_equal(kw_buf_put(out, z, zl).code, 0);
}

static int decode_code(const uint8_t *p, size_t n)
{
        struct kw_audit_batch b = { 0 };
        kw_result r = kw_audit_batch_decode(p, n, &b);
        if (r.code == 0)
                kw_audit_batch_clear(&b);
        else
                assert_null(b.recs);
        return r.code;
}

/* --------------------------------------------------------------- tests */

/* The chain step is the one of schema 1..3: the hashes of the first two
 * rows of tests/fixtures/keystore-v3.db (computed independently with
 * Python's hashlib). */
static void audit_codec_chain_step_matches_schema_3_rows(void **state)
{
        (void)state;
        struct kw_audit_hasher *h = NULL;
        assert_int_equal(kw_audit_hasher_new(&h).code, 0);
        uint8_t zero[32] = { 0 }, h1[32], h2[32];
        char hex[65];
        struct kw_audit_rec r;
        kw_audit_rec_set(&r, 1699999999000, "token:aa(initial-admin)", "key.create", "legacy-key",
                         "ok", NULL, NULL);
        assert_int_equal(kw_audit_chain_step(h, zero, 1, &r, h1).code, 0);
        kw_audit_hex(h1, 32, hex);
        assert_string_equal(hex, "9baa4b1130c7786773389398bf5e96ea6666eae5c71ff533d11c7a4d87228ff2");
        kw_audit_rec_set(&r, 1699999999500, "custody", "token.create", "", "ok",
                         "initial admin token", "");
        assert_int_equal(kw_audit_chain_step(h, h1, 2, &r, h2).code, 0);
        kw_audit_hex(h2, 32, hex);
        assert_string_equal(hex, "10b44764c8b9fcd96be428b3bf0f3f15895fd863198e9ae48f04a74eb18b6d8c");
        uint8_t back[32];
        assert_int_equal(kw_audit_unhex32(hex, back), 0);
        assert_memory_equal(back, h2, 32);
        assert_int_equal(kw_audit_unhex32("12", back), -1);
        kw_audit_hasher_free(h);
}

static void audit_codec_batch_round_trip(void **state)
{
        (void)state;
        static const size_t sizes[] = { 1, 2, 90, 1000, KW_AUDIT_BATCH_MAX_RECORDS, 3, 90 };
        struct kw_audit_encoder *enc = NULL;   /* one encoder for all: it is reused */
        assert_int_equal(kw_audit_encoder_new(1, &enc).code, 0);
        for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
                struct recset rs;
                recset_make(&rs, sizes[t]);
                struct kw_buf out;
                kw_buf_init(&out, 64u << 20);
                assert_int_equal(kw_buf_put(&out, "xy", 2).code, 0);  /* appended after */
                assert_int_equal(kw_audit_batch_encode(t == 0 ? NULL : enc, rs.r, rs.n, &out).code, 0);
                assert_memory_equal(out.p, "xy", 2);
                struct kw_audit_batch b = { 0 };
                assert_int_equal(kw_audit_batch_decode(out.p + 2, out.len - 2, &b).code, 0);
                assert_int_equal(b.n, rs.n);
                assert_recs_equal(rs.r, b.recs, rs.n);
                kw_audit_batch_clear(&b);
                kw_audit_batch_clear(&b);   /* idempotent */
                kw_buf_free(&out);
                recset_free(&rs);
        }
        kw_audit_encoder_free(enc);
}

/* Long fields (the maximum), and a field of every byte value but NUL. */
static void audit_codec_batch_round_trip_long_and_binary_fields(void **state)
{
        (void)state;
        static char big[KW_AUDIT_FIELD_MAX + 1], bytes[256];
        memset(big, 'q', KW_AUDIT_FIELD_MAX);
        for (int i = 1; i < 256; i++)
                bytes[i - 1] = (char)i;
        struct kw_audit_rec r[2];
        kw_audit_rec_set(&r[0], INT64_MAX, big, bytes, big, "", bytes, big);
        kw_audit_rec_set(&r[1], INT64_MIN, "", "", "", "", "", "");
        struct kw_buf out;
        kw_buf_init(&out, 1 << 20);
        struct kw_audit_encoder *enc = NULL;
        assert_int_equal(kw_audit_encoder_new(9, &enc).code, 0);
        assert_int_equal(kw_audit_batch_encode(enc, r, 2, &out).code, 0);
        kw_audit_encoder_free(enc);
        struct kw_audit_batch b = { 0 };
        assert_int_equal(kw_audit_batch_decode(out.p, out.len, &b).code, 0);
        assert_int_equal(b.n, 2);
        assert_recs_equal(r, b.recs, 2);
        kw_audit_batch_clear(&b);
        kw_buf_free(&out);
}

/* The target of issue 11: well under 40 bytes a record at full rate (90
 * records a flush), with a random UUID request id each. */
static void audit_codec_batch_encode_is_compact(void **state)
{
        (void)state;
        struct recset rs;
        recset_make(&rs, 90);
        for (size_t i = 0; i < rs.n; i++) {
                snprintf(rs.s[i][0], 80, "xks:default:AKIAKEYWARDTESTAAAAA");
                uuid_into(rs.s[i][5], 0);
                snprintf(rs.s[i][4], 80, "%s", "");
                kw_audit_rec_set(&rs.r[i], 1700000000000 + (int64_t)i / 2, rs.s[i][0], rs.s[i][1],
                                 rs.s[i][2], rs.s[i][3], rs.s[i][4], rs.s[i][5]);
        }
        struct kw_buf out;
        kw_buf_init(&out, 1 << 20);
        assert_int_equal(kw_audit_batch_encode(NULL, rs.r, rs.n, &out).code, 0);
        print_message("90 records: %zu bytes (%.1f a record)\n", out.len, (double)out.len / 90);
        assert_true(out.len < 90 * 22);
        kw_buf_free(&out);
        recset_free(&rs);
}

static void audit_codec_batch_encode_bad_input_fails_nothing_appended(void **state)
{
        (void)state;
        struct recset rs;
        recset_make(&rs, 3);
        struct kw_buf out;
        kw_buf_init(&out, 1 << 20);
        assert_int_equal(kw_audit_batch_encode(NULL, rs.r, 0, &out).code, KW_ERR_INPUT);
        assert_int_equal(kw_audit_batch_encode(NULL, NULL, 1, &out).code, KW_ERR_INPUT);
        assert_int_equal(kw_audit_batch_encode(NULL, rs.r, 3, &out).code, 0);
        out.len = 0;
        struct kw_audit_encoder *bad = NULL;
        assert_int_equal(kw_audit_encoder_new(10, &bad).code, KW_ERR_INPUT);
        assert_null(bad);
        assert_int_equal(kw_audit_batch_encode(NULL, rs.r, KW_AUDIT_BATCH_MAX_RECORDS + 1, &out).code,
                         KW_ERR_INPUT);
        static const char nul[] = "a\0b";
        rs.r[1].f[KW_AUDIT_DETAIL] = nul;
        rs.r[1].flen[KW_AUDIT_DETAIL] = 3;
        assert_int_equal(kw_audit_batch_encode(NULL, rs.r, 3, &out).code, KW_ERR_INPUT);
        static char big[KW_AUDIT_FIELD_MAX + 2];
        memset(big, 'x', KW_AUDIT_FIELD_MAX + 1);
        rs.r[1].f[KW_AUDIT_DETAIL] = big;
        rs.r[1].flen[KW_AUDIT_DETAIL] = KW_AUDIT_FIELD_MAX + 1;
        assert_int_equal(kw_audit_batch_encode(NULL, rs.r, 3, &out).code, KW_ERR_INPUT);
        assert_int_equal(out.len, 0);
        /* a writer too small for the blob: unchanged */
        struct kw_buf small;
        kw_buf_init(&small, 8);
        assert_int_equal(kw_buf_put(&small, "ab", 2).code, 0);
        rs.r[1].f[KW_AUDIT_DETAIL] = "";
        rs.r[1].flen[KW_AUDIT_DETAIL] = 0;
        assert_int_equal(kw_audit_batch_encode(NULL, rs.r, 3, &small).code, KW_ERR_TOO_LARGE);
        assert_int_equal(small.len, 2);
        kw_buf_free(&small);
        kw_buf_free(&out);
        recset_free(&rs);
}

/* Every single-bit change of a blob is refused or decodes to other records
 * (the chain hash then tells), never a crash.  The one exception is the
 * padding after deflate's last code, in the byte before the 4-byte adler32:
 * bits nobody reads, so the records are the same (and so is their hash). */
static void audit_codec_batch_decode_each_flipped_byte_is_caught(void **state)
{
        (void)state;
        struct recset rs;
        recset_make(&rs, 20);
        struct kw_buf out;
        kw_buf_init(&out, 1 << 20);
        assert_int_equal(kw_audit_batch_encode(NULL, rs.r, rs.n, &out).code, 0);
        size_t refused = 0;
        for (size_t i = 0; i < out.len; i++) {
                for (int bit = 0; bit < 8; bit++) {
                        out.p[i] ^= (uint8_t)(1u << bit);
                        struct kw_audit_batch b = { 0 };
                        kw_result r = kw_audit_batch_decode(out.p, out.len, &b);
                        if (r.code != 0) {
                                assert_int_equal(r.code, KW_ERR_DB_CORRUPT);
                                refused++;
                        } else {
                                int same = b.n == rs.n;
                                for (size_t k = 0; same && k < b.n; k++)
                                        for (int f = 0; f < KW_AUDIT_FIELDS; f++)
                                                same &= b.recs[k].ts_ms == rs.r[k].ts_ms &&
                                                        b.recs[k].flen[f] == rs.r[k].flen[f] &&
                                                        memcmp(b.recs[k].f[f], rs.r[k].f[f],
                                                               rs.r[k].flen[f]) == 0;
                                if (same && i != out.len - 5)
                                        fail_msg("byte %zu bit %d changed and decoded the same", i, bit);
                        }
                        kw_audit_batch_clear(&b);
                        out.p[i] ^= (uint8_t)(1u << bit);
                }
        }
        assert_true(refused > 0);
        /* truncated anywhere: refused */
        for (size_t n = 0; n < out.len; n++)
                assert_int_equal(decode_code(out.p, n), KW_ERR_DB_CORRUPT);
        kw_buf_free(&out);
        recset_free(&rs);
}

/* Hand-made raw encodings, each wrong in one way. */
static void audit_codec_batch_decode_malformed_raw_fails_corrupt(void **state)
{
        (void)state;
        /* n=1, nstr=1 "", record: ts 2 (zz 4), 5 x idx 0, kind 0 idx 0 */
        static const uint8_t good[] = { 1, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0 };
        struct {
                const char *what;
                uint8_t raw[32];
                size_t len;
                long declared;
        } cases[] = {
                { "good", { 1, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0 }, 11, -1 },
                { "zero records", { 0, 1, 0 }, 3, -1 },
                { "too many records", { 0x81, 0x40, 1, 0 }, 4, -1 },
                { "no strings", { 1, 0, 4, 0, 0, 0, 0, 0, 0, 0 }, 10, -1 },
                { "more strings than fields", { 1, 7, 0, 0, 0, 0, 0, 0, 0 }, 9, -1 },
                { "string index out of range", { 1, 1, 0, 4, 0, 1, 0, 0, 0, 0, 0 }, 11, -1 },
                { "request id index out of range", { 1, 1, 0, 4, 0, 0, 0, 0, 0, 0, 1 }, 11, -1 },
                { "unknown request id kind", { 1, 1, 0, 4, 0, 0, 0, 0, 0, 3 }, 10, -1 },
                { "truncated uuid", { 1, 1, 0, 4, 0, 0, 0, 0, 0, 1, 9, 9 }, 12, -1 },
                { "trailing byte", { 1, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0 }, 12, -1 },
                { "string with a NUL", { 1, 1, 2, 'a', 0, 4, 0, 0, 0, 0, 0, 0, 0 }, 13, -1 },
                { "string past the end", { 1, 1, 9, 'a' }, 4, -1 },
                { "overlong varint", { 1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                       0xff, 0x7f, 0, 0, 0, 0, 0, 0, 0 }, 20, -1 },
                { "declared length too short", { 1, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0 }, 11, 10 },
                { "declared length too long", { 1, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0 }, 11, 12 },
                { "declared length over the cap", { 1, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0 }, 11,
                  (long)KW_AUDIT_BATCH_RAW_MAX + 1 },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                struct kw_buf blob;
                blob_of_raw(cases[i].raw, cases[i].len, cases[i].declared, &blob);
                int code = decode_code(blob.p, blob.len);
                if (i == 0)
                        assert_int_equal(code, 0);
                else if (code != KW_ERR_DB_CORRUPT)
                        fail_msg("%s: decoded (%d)", cases[i].what, code);
                kw_buf_free(&blob);
        }
        struct kw_buf blob;
        blob_of_raw(good, sizeof good, -1, &blob);
        struct kw_audit_batch b = { 0 };
        assert_int_equal(kw_audit_batch_decode(blob.p, blob.len, &b).code, 0);
        assert_true(b.recs[0].ts_ms == 2);
        kw_audit_batch_clear(&b);
        blob.p[0] = 2;   /* unknown format */
        assert_int_equal(decode_code(blob.p, blob.len), KW_ERR_DB_CORRUPT);
        blob.p[0] = 1;
        assert_int_equal(kw_buf_put_u8(&blob, 0).code, 0);   /* bytes after the zlib stream */
        assert_int_equal(decode_code(blob.p, blob.len), KW_ERR_DB_CORRUPT);
        assert_int_equal(decode_code(NULL, 0), KW_ERR_DB_CORRUPT);
        kw_buf_free(&blob);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(audit_codec_chain_step_matches_schema_3_rows),
                cmocka_unit_test(audit_codec_batch_round_trip),
                cmocka_unit_test(audit_codec_batch_round_trip_long_and_binary_fields),
                cmocka_unit_test(audit_codec_batch_encode_is_compact),
                cmocka_unit_test(audit_codec_batch_encode_bad_input_fails_nothing_appended),
                cmocka_unit_test(audit_codec_batch_decode_each_flipped_byte_is_caught),
                cmocka_unit_test(audit_codec_batch_decode_malformed_raw_fails_corrupt),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
