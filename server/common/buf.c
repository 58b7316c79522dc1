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

kw_result kw_buf_put_json_escaped(struct kw_buf *b, const char *s, size_t n)
{
        static const char hex[] = "0123456789abcdef";
        size_t start = b->len;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                kw_result r;
                if (c == '"' || c == '\\') {
                        char e[2] = { '\\', (char)c };
                        r = kw_buf_put(b, e, 2);
                } else if (c == '\n') {
                        r = kw_buf_put(b, "\\n", 2);
                } else if (c == '\r') {
                        r = kw_buf_put(b, "\\r", 2);
                } else if (c == '\t') {
                        r = kw_buf_put(b, "\\t", 2);
                } else if (c < 0x20 || c == 0x7f) {
                        char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
                        r = kw_buf_put(b, e, 6);
                } else {
                        r = kw_buf_put(b, &s[i], 1);
                }
                if (r.code != 0) {
                        b->len = start;   /* all or nothing */
                        return r;
                }
        }
        return KW_OK;
}

kw_result kw_buf_cstr(struct kw_buf *b, const char **ret)
{
        KW_TRY(kw_buf_reserve(b, 0));
        b->p[b->len] = '\0';
        *ret = (const char *)b->p;
        return KW_OK;
}
