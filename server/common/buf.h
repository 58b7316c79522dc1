/*
 * buf.h - bounded reader for untrusted bytes and a capped, growable writer.
 *
 * Reader invariant: off <= len.  Every read checks by subtraction
 * (len - off >= n), advances only on success and leaves out-parameters
 * untouched on failure.
 *
 * Writer: grows up to a hard cap fixed at init; any write past the cap fails
 * with KW_ERR_TOO_LARGE and leaves the buffer as it was.  The memory is wiped
 * before it is freed or reallocated, so a writer may carry secrets briefly.
 */
#ifndef KW_BUF_H
#define KW_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "result.h"

struct kw_reader {
        const uint8_t *p;
        size_t len, off;
};

static inline struct kw_reader kw_reader_init(const void *p, size_t len)
{
        return (struct kw_reader){ .p = p, .len = len, .off = 0 };
}
static inline size_t kw_reader_left(const struct kw_reader *r) { return r->len - r->off; }

KW_MUST_USE kw_result kw_read_u8(struct kw_reader *r, uint8_t *ret);
KW_MUST_USE kw_result kw_read_u16be(struct kw_reader *r, uint16_t *ret);
KW_MUST_USE kw_result kw_read_u32be(struct kw_reader *r, uint32_t *ret);
KW_MUST_USE kw_result kw_read_u64be(struct kw_reader *r, uint64_t *ret);
/* Points *ret into the reader's bytes (no copy). */
KW_MUST_USE kw_result kw_read_bytes(struct kw_reader *r, size_t n, const uint8_t **ret);

struct kw_buf {
        uint8_t *p;
        size_t len, cap_alloc, max;
};

/* An empty writer that will never grow beyond max bytes. */
void kw_buf_init(struct kw_buf *b, size_t max);
/* Wipes and frees; the buffer is empty (and reusable) afterwards.  NULL-safe. */
void kw_buf_free(struct kw_buf *b);
/* Empties without freeing (wipes the used part). */
void kw_buf_reset(struct kw_buf *b);
KW_MUST_USE kw_result kw_buf_reserve(struct kw_buf *b, size_t n);
KW_MUST_USE kw_result kw_buf_put(struct kw_buf *b, const void *p, size_t n);
KW_MUST_USE kw_result kw_buf_put_u8(struct kw_buf *b, uint8_t v);
KW_MUST_USE kw_result kw_buf_put_u16be(struct kw_buf *b, uint16_t v);
KW_MUST_USE kw_result kw_buf_put_u32be(struct kw_buf *b, uint32_t v);
KW_MUST_USE kw_result kw_buf_put_u64be(struct kw_buf *b, uint64_t v);
KW_MUST_USE kw_result kw_buf_put_str(struct kw_buf *b, const char *s);
KW_MUST_USE kw_result kw_buf_printf(struct kw_buf *b, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
/* Appends s[0..n) as the body of a JSON string (escaped, no quotes added).
 * The output is always valid UTF-8 and valid JSON string content, whatever
 * the input: '"' and '\\' are escaped, control characters (and DEL) become
 * \n \r \t or \u00XX, well-formed UTF-8 sequences (kw_utf8_seq_len) are
 * copied as they are, and every byte that is not part of one becomes
 * \ufffd (U+FFFD REPLACEMENT CHARACTER), one per byte (so a truncated
 * 3-byte sequence gives two).  All or nothing: on failure b is unchanged. */
KW_MUST_USE kw_result kw_buf_put_json_escaped(struct kw_buf *b, const char *s, size_t n);
/* Length (1..4) of the well-formed UTF-8 sequence at the start of s[0..n)
 * (RFC 3629: no overlong forms, no UTF-16 surrogates, nothing above
 * U+10FFFF), or 0 when s does not start with one (n == 0 included). */
size_t kw_utf8_seq_len(const uint8_t *s, size_t n);
/* Ensures a NUL after the data (not counted in len); returns p as a C string. */
KW_MUST_USE kw_result kw_buf_cstr(struct kw_buf *b, const char **ret);

#endif
