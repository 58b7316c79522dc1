/*
 * rd.c - bounded reader for untrusted bytes, hex/base64, hashing, binding.
 * Reader invariant: off <= len; every read checks len - off >= n and
 * advances only on success; out-parameters untouched on failure.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/base64.h>
#include <mbedtls/sha256.h>

#include "kwa.h"

int kwa_rd_bytes(struct kwa_rd *r, size_t n, const uint8_t **ret)
{
        if (r->len - r->off < n)
                return KWA_E_TRUNC;
        *ret = r->p + r->off;
        r->off += n;
        return KWA_OK;
}

int kwa_rd_u8(struct kwa_rd *r, uint8_t *ret)
{
        const uint8_t *b;
        int e = kwa_rd_bytes(r, 1, &b);
        if (e == 0)
                *ret = b[0];
        return e;
}

int kwa_rd_u16be(struct kwa_rd *r, uint16_t *ret)
{
        const uint8_t *b;
        int e = kwa_rd_bytes(r, 2, &b);
        if (e == 0)
                *ret = (uint16_t)(b[0] << 8 | b[1]);
        return e;
}

int kwa_rd_u32be(struct kwa_rd *r, uint32_t *ret)
{
        const uint8_t *b;
        int e = kwa_rd_bytes(r, 4, &b);
        if (e == 0)
                *ret = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        return e;
}

int kwa_rd_u64be(struct kwa_rd *r, uint64_t *ret)
{
        const uint8_t *b;
        int e = kwa_rd_bytes(r, 8, &b);
        if (e == 0) {
                uint64_t v = 0;
                for (int i = 0; i < 8; i++)
                        v = v << 8 | b[i];
                *ret = v;
        }
        return e;
}

int kwa_rd_u16le(struct kwa_rd *r, uint16_t *ret)
{
        const uint8_t *b;
        int e = kwa_rd_bytes(r, 2, &b);
        if (e == 0)
                *ret = (uint16_t)(b[0] | b[1] << 8);
        return e;
}

int kwa_rd_u32le(struct kwa_rd *r, uint32_t *ret)
{
        const uint8_t *b;
        int e = kwa_rd_bytes(r, 4, &b);
        if (e == 0)
                *ret = kwa_le32(b);
        return e;
}

int kwa_rd_tpm2b(struct kwa_rd *r, size_t max, const uint8_t **ret, size_t *ret_len)
{
        struct kwa_rd t = *r;
        uint16_t n;
        const uint8_t *b;
        int e = kwa_rd_u16be(&t, &n);
        if (e != 0)
                return e;
        if (n > max)
                return KWA_E_TOO_LARGE;
        e = kwa_rd_bytes(&t, n, &b);
        if (e != 0)
                return e;
        *r = t;
        *ret = b;
        *ret_len = n;
        return KWA_OK;
}


static int hexval(int c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int kwa_hex_decode(const char *s, uint8_t *out, size_t n)
{
        if (strlen(s) != 2 * n)
                return -1;
        for (size_t i = 0; i < n; i++) {
                int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -1;
        }
        for (size_t i = 0; i < n; i++)
                out[i] = (uint8_t)(hexval(s[2 * i]) << 4 | hexval(s[2 * i + 1]));
        return 0;
}

void kwa_hex_encode(const uint8_t *p, size_t n, char *out)
{
        static const char d[] = "0123456789abcdef";
        for (size_t i = 0; i < n; i++) {
                out[2 * i] = d[p[i] >> 4];
                out[2 * i + 1] = d[p[i] & 15];
        }
        out[2 * n] = '\0';
}

int kwa_read_file(const char *path, size_t max, uint8_t **ret, size_t *ret_len)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return KWA_E_IO;
        uint8_t *p = malloc(max + 1);
        size_t n = 0;
        ssize_t k = 0;
        while (p != NULL && n <= max && (k = read(fd, p + n, max + 1 - n)) > 0)
                n += (size_t)k;
        close(fd);
        if (p == NULL)
                return KWA_E_NOMEM;
        if (k < 0 || n > max) {
                free(p);
                return k < 0 ? KWA_E_IO : KWA_E_TOO_LARGE;
        }
        p[n] = 0;   /* callers may treat text as a C string */
        *ret = p;
        *ret_len = n;
        return KWA_OK;
}

int kwa_b64_decode(const char *s, uint8_t **ret, size_t *ret_len)
{
        size_t sl = strlen(s), n = 0;
        for (size_t i = 0; i < sl; i++)   /* mbedTLS skips line breaks: we do not accept them */
                if (s[i] == '\r' || s[i] == '\n' || s[i] == ' ')
                        return KWA_E_FORMAT;
        uint8_t *p = malloc(sl / 4 * 3 + 3);
        if (p == NULL)
                return KWA_E_NOMEM;
        if (mbedtls_base64_decode(p, sl / 4 * 3 + 3, &n, (const unsigned char *)s, sl) != 0) {
                free(p);
                return KWA_E_FORMAT;
        }
        *ret = p;
        *ret_len = n;
        return KWA_OK;
}

void kwa_sha256(const void *p, size_t n, uint8_t out[32])
{
        (void)mbedtls_sha256_ret(p, n, out, 0);
}

void kwa_binding(const uint8_t nonce[32], const uint8_t spki_sha256[32], uint8_t out[32])
{
        static const char label[] = "KEYWARD-ATTEST-v1";   /* hashed with its NUL */
        uint8_t msg[sizeof label + 64];
        memcpy(msg, label, sizeof label);
        memcpy(msg + sizeof label, nonce, 32);
        memcpy(msg + sizeof label + 32, spki_sha256, 32);
        kwa_sha256(msg, sizeof msg, out);
}
