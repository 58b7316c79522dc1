/*
 * b64.c - strict base64 / base64url codecs and lower-case hex.
 *
 * Characters are mapped to and from 6-bit values with arithmetic only (no
 * table lookups, no branches on the data), in the style of wireguard-tools'
 * encoding.c, so that encoding or decoding key material does not leak it
 * through the cache or the branch predictor.  What is allowed to depend on
 * branches is public anyway: the input length and where the padding starts
 * (both equal to the output length).
 *
 * The right shift of a negative int is arithmetic on every compiler we
 * build with (gcc, clang: documented implementation-defined behaviour).
 */
#include <string.h>

#include "b64.h"

enum alphabet { STD = 0, URL = 1 };

/* 6-bit value -> character of the alphabet. */
static uint8_t enc6(unsigned v, enum alphabet a)
{
        /* gtN is 1 when v > N (unsigned wrap-around, no branch). */
        unsigned gt25 = (25u - v) >> 31, gt51 = (51u - v) >> 31;
        unsigned gt61 = (61u - v) >> 31, gt62 = (62u - v) >> 31;
        /* 62 -> '+' or '-', 63 -> '/' or '_' */
        unsigned d62 = a == URL ? (unsigned)(45 - 62 + 4) : (unsigned)(43 - 62 + 4);
        unsigned d63 = a == URL ? (unsigned)(95 - 45 - 1) : (unsigned)(47 - 43 - 1);
        unsigned c = v + 'A' + gt25 * 6u - gt51 * 75u + gt61 * d62 + gt62 * d63;
        return (uint8_t)c;
}

/* Character -> 6-bit value, or -1 when not in the alphabet ('=' never is). */
static int dec6(uint8_t ch, enum alphabet a)
{
        int c = ch, r = -1;
        /* ((lo-1 - c) & (c - (hi+1))) is negative iff lo <= c <= hi. */
        r += (((64 - c) & (c - 91)) >> 8) & (c - 64);  /* A-Z ->  0..25, +1 */
        r += (((96 - c) & (c - 123)) >> 8) & (c - 70); /* a-z -> 26..51, +1 */
        r += (((47 - c) & (c - 58)) >> 8) & (c + 5);   /* 0-9 -> 52..61, +1 */
        if (a == URL) {
                r += (((44 - c) & (c - 46)) >> 8) & 63; /* '-' -> 62, +1 */
                r += (((94 - c) & (c - 96)) >> 8) & 64; /* '_' -> 63, +1 */
        } else {
                r += (((42 - c) & (c - 44)) >> 8) & 63; /* '+' -> 62, +1 */
                r += (((46 - c) & (c - 48)) >> 8) & 64; /* '/' -> 63, +1 */
        }
        return r;
}

size_t kw_b64_decoded_len(size_t n)
{
        /* Padded: every 4 characters carry 3 bytes, minus one byte per '='
         * (so this is exact for input without padding, and the maximum
         * otherwise: the length alone cannot tell how many '=' there are). */
        return n % 4 == 0 ? n / 4 * 3 : SIZE_MAX;
}

size_t kw_b64url_decoded_len(size_t n)
{
        static const size_t tail[4] = { 0, SIZE_MAX, 1, 2 };
        return n % 4 == 1 ? SIZE_MAX : n / 4 * 3 + tail[n % 4];
}

static size_t encoded_len(size_t n, enum alphabet a)
{
        if (a == STD)
                return (n + 2) / 3 * 4;
        return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

static kw_result encode(const uint8_t *in, size_t n, struct kw_buf *out, enum alphabet a)
{
        KW_ENSURE(n / 3 < SIZE_MAX / 8, KW_ERR_TOO_LARGE);
        size_t olen = encoded_len(n, a);
        KW_TRY(kw_buf_reserve(out, olen));
        uint8_t *o = out->p + out->len;
        size_t i = 0;
        for (; n - i >= 3; i += 3) {
                unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
                *o++ = enc6(v >> 18, a);
                *o++ = enc6(v >> 12 & 63, a);
                *o++ = enc6(v >> 6 & 63, a);
                *o++ = enc6(v & 63, a);
        }
        if (n - i == 1) {
                unsigned v = (unsigned)in[i] << 16;
                *o++ = enc6(v >> 18, a);
                *o++ = enc6(v >> 12 & 63, a);
                if (a == STD) {
                        *o++ = '=';
                        *o++ = '=';
                }
        } else if (n - i == 2) {
                unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
                *o++ = enc6(v >> 18, a);
                *o++ = enc6(v >> 12 & 63, a);
                *o++ = enc6(v >> 6 & 63, a);
                if (a == STD)
                        *o++ = '=';
        }
        out->len += olen;
        return KW_OK;
}

/*
 * Checks the shape of the input and returns the number of data characters
 * (padding excluded) and the decoded length.  Shape only: the alphabet is
 * checked while decoding.
 */
static kw_result decode_shape(const char *in, size_t n, enum alphabet a, size_t *ret_chars,
                              size_t *ret_len)
{
        size_t chars = n;
        if (a == STD) {
                KW_ENSURE(n % 4 == 0, KW_ERR_BAD_ENCODING);
                /* At most two '=', only at the end; any other '=' fails dec6. */
                if (n > 0 && in[n - 1] == '=') {
                        chars--;
                        if (in[n - 2] == '=')
                                chars--;
                }
        }
        KW_ENSURE(chars % 4 != 1, KW_ERR_BAD_ENCODING);
        *ret_chars = chars;
        *ret_len = chars / 4 * 3 + (chars % 4 == 0 ? 0 : chars % 4 - 1);
        return KW_OK;
}

/*
 * Decodes chars data characters into out (exactly len bytes, as computed by
 * decode_shape).  Returns 0 on success, non-zero on a character outside the
 * alphabet or non-zero trailing bits; out may be partly written then.  No
 * branch depends on the characters.
 */
static unsigned decode_core(const char *in, size_t chars, enum alphabet a, uint8_t *out)
{
        const uint8_t *s = (const uint8_t *)in;
        unsigned bad = 0;
        size_t i = 0;
        for (; chars - i >= 4; i += 4) {
                int v0 = dec6(s[i], a), v1 = dec6(s[i + 1], a);
                int v2 = dec6(s[i + 2], a), v3 = dec6(s[i + 3], a);
                bad |= (unsigned)(v0 | v1 | v2 | v3) >> 31;
                unsigned v = (unsigned)v0 << 18 | (unsigned)v1 << 12 | (unsigned)v2 << 6 |
                             (unsigned)v3;
                *out++ = (uint8_t)(v >> 16);
                *out++ = (uint8_t)(v >> 8);
                *out++ = (uint8_t)v;
        }
        size_t rest = chars - i;
        if (rest == 2) {
                int v0 = dec6(s[i], a), v1 = dec6(s[i + 1], a);
                bad |= (unsigned)(v0 | v1) >> 31;
                bad |= (unsigned)v1 & 15u; /* the 4 bits not carried must be zero */
                *out = (uint8_t)((unsigned)v0 << 2 | (unsigned)v1 >> 4);
        } else if (rest == 3) {
                int v0 = dec6(s[i], a), v1 = dec6(s[i + 1], a), v2 = dec6(s[i + 2], a);
                bad |= (unsigned)(v0 | v1 | v2) >> 31;
                bad |= (unsigned)v2 & 3u; /* the 2 bits not carried must be zero */
                unsigned v = (unsigned)v0 << 10 | (unsigned)v1 << 4 | (unsigned)v2 >> 2;
                out[0] = (uint8_t)(v >> 8);
                out[1] = (uint8_t)v;
        }
        return bad;
}

static kw_result decode_buf(const char *in, size_t n, struct kw_buf *out, enum alphabet a)
{
        size_t chars, len;
        KW_TRY(decode_shape(in, n, a, &chars, &len));
        KW_TRY(kw_buf_reserve(out, len));
        /* Decode into the reserved room past out->len; commit only on success. */
        uint8_t *dst = out->p + out->len;
        if (decode_core(in, chars, a, dst) != 0) {
                kw_wipe(dst, len);
                KW_BAIL(KW_ERR_BAD_ENCODING);
        }
        out->len += len;
        return KW_OK;
}

static kw_result decode_secret(const char *in, size_t n, struct kw_secret *ret,
                               enum alphabet a)
{
        size_t chars, len;
        KW_TRY(decode_shape(in, n, a, &chars, &len));
        struct kw_secret s;
        KW_TRY(kw_secret_alloc(len, &s));
        if (decode_core(in, chars, a, s.p) != 0) {
                kw_secret_free(&s);
                KW_BAIL(KW_ERR_BAD_ENCODING);
        }
        *ret = s;
        return KW_OK;
}

kw_result kw_b64_encode(const uint8_t *in, size_t n, struct kw_buf *out)
{
        return encode(in, n, out, STD);
}

kw_result kw_b64_decode(const char *in, size_t n, struct kw_buf *out)
{
        return decode_buf(in, n, out, STD);
}

kw_result kw_b64url_encode(const uint8_t *in, size_t n, struct kw_buf *out)
{
        return encode(in, n, out, URL);
}

kw_result kw_b64url_decode(const char *in, size_t n, struct kw_buf *out)
{
        return decode_buf(in, n, out, URL);
}

kw_result kw_b64_decode_secret(const char *in, size_t n, struct kw_secret *ret)
{
        return decode_secret(in, n, ret, STD);
}

kw_result kw_b64url_decode_secret(const char *in, size_t n, struct kw_secret *ret)
{
        return decode_secret(in, n, ret, URL);
}

kw_result kw_hex_encode(const uint8_t *in, size_t n, struct kw_buf *out)
{
        KW_ENSURE(n < SIZE_MAX / 2, KW_ERR_TOO_LARGE);
        KW_TRY(kw_buf_reserve(out, 2 * n));
        uint8_t *o = out->p + out->len;
        for (size_t i = 0; i < n; i++) {
                unsigned hi = in[i] >> 4, lo = in[i] & 15u;
                /* 87 + v is 'a' + v - 10; for v < 10 subtract 39 more ('0' + v). */
                o[2 * i] = (uint8_t)(87u + hi + (((hi - 10u) >> 8) & ~38u));
                o[2 * i + 1] = (uint8_t)(87u + lo + (((lo - 10u) >> 8) & ~38u));
        }
        out->len += 2 * n;
        return KW_OK;
}

int kw_hex_value(int c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}
