/* buf.c - bounded reader and capped writer. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "buf.h"

kw_result kw_read_u8(struct kw_reader *r, uint8_t *ret)
{
        KW_ENSURE(r->len - r->off >= 1, KW_ERR_TRUNCATED);
        *ret = r->p[r->off];
        r->off += 1;
        return KW_OK;
}

kw_result kw_read_u16be(struct kw_reader *r, uint16_t *ret)
{
        KW_ENSURE(r->len - r->off >= 2, KW_ERR_TRUNCATED);
        const uint8_t *b = r->p + r->off;
        *ret = (uint16_t)((uint16_t)b[0] << 8 | b[1]);
        r->off += 2;
        return KW_OK;
}

kw_result kw_read_u32be(struct kw_reader *r, uint32_t *ret)
{
        KW_ENSURE(r->len - r->off >= 4, KW_ERR_TRUNCATED);
        const uint8_t *b = r->p + r->off;
        *ret = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        r->off += 4;
        return KW_OK;
}

kw_result kw_read_u64be(struct kw_reader *r, uint64_t *ret)
{
        KW_ENSURE(r->len - r->off >= 8, KW_ERR_TRUNCATED);
        const uint8_t *b = r->p + r->off;
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = v << 8 | b[i];
        *ret = v;
        r->off += 8;
        return KW_OK;
}

kw_result kw_read_bytes(struct kw_reader *r, size_t n, const uint8_t **ret)
{
        KW_ENSURE(r->len - r->off >= n, KW_ERR_TRUNCATED);
        *ret = r->p + r->off;
        r->off += n;
        return KW_OK;
}

void kw_buf_init(struct kw_buf *b, size_t max)
{
        *b = (struct kw_buf){ .max = max };
}

void kw_buf_free(struct kw_buf *b)
{
        if (b == NULL)
                return;
        if (b->p != NULL) {
                OPENSSL_cleanse(b->p, b->cap_alloc);
                free(b->p);
        }
        b->p = NULL;
        b->len = b->cap_alloc = 0;
}

void kw_buf_reset(struct kw_buf *b)
{
        if (b->p != NULL)
                OPENSSL_cleanse(b->p, b->len);
        b->len = 0;
}

kw_result kw_buf_reserve(struct kw_buf *b, size_t n)
{
        KW_ENSURE(n <= b->max && b->max - n >= b->len, KW_ERR_TOO_LARGE);
        size_t need = b->len + n + 1; /* room for a NUL */
        if (need <= b->cap_alloc)
                return KW_OK;
        size_t cap = b->cap_alloc ? b->cap_alloc : 256;
        while (cap < need)
                cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        if (cap > b->max + 1)
                cap = b->max + 1;
        uint8_t *p = malloc(cap);
        KW_ENSURE(p != NULL, KW_ERR_NOMEM);
        if (b->p != NULL) {
                memcpy(p, b->p, b->len);
                OPENSSL_cleanse(b->p, b->cap_alloc);
                free(b->p);
        }
        b->p = p;
        b->cap_alloc = cap;
        return KW_OK;
}

kw_result kw_buf_put(struct kw_buf *b, const void *p, size_t n)
{
        KW_TRY(kw_buf_reserve(b, n));
        if (n != 0)
                memcpy(b->p + b->len, p, n);
        b->len += n;
        return KW_OK;
}

kw_result kw_buf_put_u8(struct kw_buf *b, uint8_t v) { return kw_buf_put(b, &v, 1); }

kw_result kw_buf_put_u16be(struct kw_buf *b, uint16_t v)
{
        uint8_t x[2] = { (uint8_t)(v >> 8), (uint8_t)v };
        return kw_buf_put(b, x, 2);
}

kw_result kw_buf_put_u32be(struct kw_buf *b, uint32_t v)
{
        uint8_t x[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
        return kw_buf_put(b, x, 4);
}

kw_result kw_buf_put_u64be(struct kw_buf *b, uint64_t v)
{
        uint8_t x[8];
        for (int i = 7; i >= 0; i--) {
                x[i] = (uint8_t)v;
                v >>= 8;
        }
        return kw_buf_put(b, x, 8);
}

kw_result kw_buf_put_str(struct kw_buf *b, const char *s) { return kw_buf_put(b, s, strlen(s)); }

kw_result kw_buf_printf(struct kw_buf *b, const char *fmt, ...)
{
        char small[256];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(small, sizeof small, fmt, ap);
        va_end(ap);
        KW_ENSURE(n >= 0, KW_ERR_INTERNAL);
        if ((size_t)n < sizeof small)
                return kw_buf_put(b, small, (size_t)n);
        KW_TRY(kw_buf_reserve(b, (size_t)n));
        va_start(ap, fmt);
        vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
        b->len += (size_t)n;
        return KW_OK;
}

size_t kw_utf8_seq_len(const uint8_t *s, size_t n)
{
        if (n == 0)
                return 0;
        uint8_t c = s[0];
        if (c < 0x80)
                return 1;
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF;   /* range of the first continuation byte */
        if (c >= 0xC2 && c <= 0xDF) {
                need = 1;
        } else if (c == 0xE0) {
                need = 2;
                lo = 0xA0;              /* no overlong 3-byte forms */
        } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
                need = 2;
        } else if (c == 0xED) {
                need = 2;
                hi = 0x9F;              /* no UTF-16 surrogates */
        } else if (c == 0xF0) {
                need = 3;
                lo = 0x90;              /* no overlong 4-byte forms */
        } else if (c >= 0xF1 && c <= 0xF3) {
                need = 3;
        } else if (c == 0xF4) {
                need = 3;
                hi = 0x8F;              /* nothing above U+10FFFF */
        } else {
                return 0;               /* 80..C1 (continuation, overlong 2-byte), F5..FF */
        }
        if (n - 1 < need || s[1] < lo || s[1] > hi)
                return 0;               /* truncated, or a bad first continuation */
        for (size_t k = 2; k <= need; k++)
                if (s[k] < 0x80 || s[k] > 0xBF)
                        return 0;
        return need + 1;
}

/* What one input byte (or sequence) becomes; 0 = copy it as it is. */
static size_t json_escape_of(const uint8_t *s, size_t n, char e[6], size_t *consumed)
{
        static const char hex[] = "0123456789abcdef";
        uint8_t c = s[0];
        *consumed = 1;
        if (c >= 0x80) {
                size_t k = kw_utf8_seq_len(s, n);
                if (k != 0) {
                        *consumed = k;
                        return 0;
                }
                memcpy(e, "\\ufffd", 6);
                return 6;
        }
        if (c == '"' || c == '\\') {
                e[0] = '\\';
                e[1] = (char)c;
                return 2;
        }
        if (c == '\n' || c == '\r' || c == '\t') {
                e[0] = '\\';
                e[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
                return 2;
        }
        if (c < 0x20 || c == 0x7f) {
                memcpy(e, "\\u00", 4);
                e[4] = hex[c >> 4];
                e[5] = hex[c & 15];
                return 6;
        }
        return 0;
}

kw_result kw_buf_put_json_escaped(struct kw_buf *b, const char *s, size_t n)
{
        const uint8_t *u = (const uint8_t *)s;
        size_t start = b->len;
        size_t run = 0;         /* start of the bytes copied as they are */
        size_t i = 0;
        kw_result r = KW_OK;
        while (i < n) {
                char e[6];
                size_t used;
                size_t elen = json_escape_of(u + i, n - i, e, &used);
                if (elen == 0) {
                        i += used;
                        continue;
                }
                r = kw_buf_put(b, u + run, i - run);
                if (r.code == 0)
                        r = kw_buf_put(b, e, elen);
                if (r.code != 0)
                        break;
                i += used;
                run = i;
        }
        if (r.code == 0)
                r = kw_buf_put(b, u + run, n - run);
        if (r.code != 0)
                b->len = start;   /* all or nothing */
        return r;
}

kw_result kw_buf_cstr(struct kw_buf *b, const char **ret)
{
        KW_TRY(kw_buf_reserve(b, 0));
        b->p[b->len] = '\0';
        *ret = (const char *)b->p;
        return KW_OK;
}
