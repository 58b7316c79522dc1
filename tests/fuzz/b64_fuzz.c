/*
 * b64_fuzz.c - strict base64 and base64url decoders on arbitrary bytes.
 *
 * Properties: a decoder never reads past n bytes; buffer and secret decoders
 * agree; when decoding succeeds, re-encoding gives back the input exactly
 * (strictness means one encoding per byte string); when it fails, the output
 * buffer is unchanged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/b64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *data, size_t size, int url)
{
        const char *in = (const char *)data;
        struct kw_buf dec, enc;
        kw_buf_init(&dec, 1 << 20);
        kw_buf_init(&enc, 1 << 20);
        if (!kw_ok(kw_buf_put(&dec, "pre", 3)))
                abort();
        kw_result r = url ? kw_b64url_decode(in, size, &dec) : kw_b64_decode(in, size, &dec);
        struct kw_secret s = { 0 };
        kw_result rs =
                url ? kw_b64url_decode_secret(in, size, &s) : kw_b64_decode_secret(in, size, &s);
        if (r.code != rs.code)
                abort();
        if (r.code != 0) {
                if (r.code != KW_ERR_BAD_ENCODING || dec.len != 3 || memcmp(dec.p, "pre", 3) != 0 ||
                    s.p != NULL)
                        abort();
        } else {
                size_t n = dec.len - 3;
                if (s.len != n || (n != 0 && memcmp(s.p, dec.p + 3, n) != 0))
                        abort();
                if (url ? kw_b64url_decoded_len(size) != n
                        : kw_b64_decoded_len(size) < n || kw_b64_decoded_len(size) - n > 2)
                        abort();
                kw_result re = url ? kw_b64url_encode(dec.p + 3, n, &enc)
                                   : kw_b64_encode(dec.p + 3, n, &enc);
                if (re.code != 0 || enc.len != size ||
                    (size != 0 && memcmp(enc.p, data, size) != 0))
                        abort();
        }
        kw_secret_free(&s);
        kw_buf_free(&dec);
        kw_buf_free(&enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        check(data, size, 0);
        check(data, size, 1);
        return 0;
}
