/*
 * b64.h - strict base64 (RFC 4648 section 4, padded) and base64url (section
 * 5, unpadded, RFC 7515 style), plus lower-case hex.
 *
 * Decoders are strict: wrong alphabet, missing/extra padding, whitespace,
 * or non-zero trailing bits -> KW_ERR_BAD_ENCODING; nothing is written on
 * failure.  Output is appended to a kw_buf (whose cap bounds it), or written
 * to a secret.
 */
#ifndef KW_B64_H
#define KW_B64_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "result.h"
#include "secret.h"

/* Exact decoded length of a well-formed input of n chars, or SIZE_MAX. */
size_t kw_b64_decoded_len(size_t n);
size_t kw_b64url_decoded_len(size_t n);

KW_MUST_USE kw_result kw_b64_encode(const uint8_t *in, size_t n, struct kw_buf *out);
KW_MUST_USE kw_result kw_b64_decode(const char *in, size_t n, struct kw_buf *out);
KW_MUST_USE kw_result kw_b64url_encode(const uint8_t *in, size_t n, struct kw_buf *out);
KW_MUST_USE kw_result kw_b64url_decode(const char *in, size_t n, struct kw_buf *out);
/* Decode straight into a new secret (for key material). */
KW_MUST_USE kw_result kw_b64_decode_secret(const char *in, size_t n, struct kw_secret *ret);
KW_MUST_USE kw_result kw_b64url_decode_secret(const char *in, size_t n, struct kw_secret *ret);

KW_MUST_USE kw_result kw_hex_encode(const uint8_t *in, size_t n, struct kw_buf *out);
/* Value of one hex digit (either case), or -1.  Not constant-time: for
 * encodings of public data (URLs, JSON escapes, config), not secrets. */
int kw_hex_value(int c);

#endif
