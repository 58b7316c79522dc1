/* sigv4_sts.c - the string to sign and canonical request, read back (see sigv4_sts.h). */
#include <string.h>

#include "b64.h"
#include "sigv4_sts.h"

static int is_digit(char c) { return c >= '0' && c <= '9'; }

int kw_sigv4_scope_part_ok(const char *s, size_t n)
{
        if (n == 0 || n > KW_SIGV4_MAX_SCOPE_PART)
                return 0;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' ||
                      c == '_'))
                        return 0;
        }
        return 1;
}

time_t kw_sigv4_parse_amz_date(const char *s, size_t n)
{
        if (n != 16 || s[8] != 'T' || s[15] != 'Z')
                return -1;
        for (size_t i = 0; i < 15; i++)
                if (i != 8 && !is_digit(s[i]))
                        return -1;
        struct tm tm;
        memset(&tm, 0, sizeof tm);
#define D2(o) ((s[o] - '0') * 10 + (s[(o) + 1] - '0'))
        tm.tm_year = D2(0) * 100 + D2(2) - 1900;
        tm.tm_mon = D2(4) - 1;
        tm.tm_mday = D2(6);
        tm.tm_hour = D2(9);
        tm.tm_min = D2(11);
        tm.tm_sec = D2(13);
#undef D2
        if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
            tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
                return -1;
        return timegm(&tm);
}

/* 64 lower-case hex digits -> 32 bytes; 0 or -1. */
static int hex32(const char *s, uint8_t out[32])
{
        for (size_t i = 0; i < 64; i++)
                if (kw_hex_value((unsigned char)s[i]) < 0 || (s[i] >= 'A' && s[i] <= 'F'))
                        return -1;
        for (size_t i = 0; i < 32; i++)
                out[i] = (uint8_t)(kw_hex_value((unsigned char)s[2 * i]) << 4 |
                                   kw_hex_value((unsigned char)s[2 * i + 1]));
        return 0;
}

kw_result kw_sigv4_sts_parse(const char *sts, size_t len, struct kw_sigv4_scope *ret)
{
        static const char head[] = KW_SIGV4_ALG "\n";
        size_t hn = sizeof head - 1;
        /* head | 16 date | \n | scope | \n | 64 hex */
        if (len < hn + 17 + 1 + 64 + 1 || len > KW_SIGV4_STS_MAX || memcmp(sts, head, hn) != 0 ||
            sts[hn + 16] != '\n') {
                kw_err_set_detail("malformed string to sign");
                KW_BAIL(KW_ERR_AUTH);
        }
        struct kw_sigv4_scope s;
        memset(&s, 0, sizeof s);
        s.when = kw_sigv4_parse_amz_date(sts + hn, 16);
        const char *scope = sts + hn + 17;
        const char *hash = sts + len - 64;
        if (s.when < 0 || hash[-1] != '\n' || hash - 1 <= scope) {
                kw_err_set_detail("malformed string to sign");
                KW_BAIL(KW_ERR_AUTH);
        }
        for (size_t i = 0; i < 64; i++) {
                if (kw_hex_value((unsigned char)hash[i]) < 0 || (hash[i] >= 'A' && hash[i] <= 'F')) {
                        kw_err_set_detail("malformed string to sign");
                        KW_BAIL(KW_ERR_AUTH);
                }
        }
        size_t slen = (size_t)(hash - 1 - scope);
        const char *part[4] = { NULL, NULL, NULL, NULL };
        size_t plen[4] = { 0, 0, 0, 0 }, np = 0, start = 0;
        for (size_t i = 0; i <= slen; i++) {
                if (i == slen || scope[i] == '/') {
                        if (np == 4) {
                                kw_err_set_detail("malformed credential scope");
                                KW_BAIL(KW_ERR_AUTH);
                        }
                        part[np] = scope + start;
                        plen[np++] = i - start;
                        start = i + 1;
                }
        }
        if (np != 4 || plen[0] != 8 || memcmp(part[0], sts + hn, 8) != 0 ||
            !kw_sigv4_scope_part_ok(part[1], plen[1]) || !kw_sigv4_scope_part_ok(part[2], plen[2]) || plen[3] != 12 ||
            memcmp(part[3], "aws4_request", 12) != 0) {
                kw_err_set_detail("malformed credential scope");
                KW_BAIL(KW_ERR_AUTH);
        }
        for (size_t i = 0; i < 32; i++)
                s.creq_sha256[i] = (uint8_t)(kw_hex_value((unsigned char)hash[2 * i]) << 4 |
                                             kw_hex_value((unsigned char)hash[2 * i + 1]));
        memcpy(s.date, part[0], 8);
        memcpy(s.region, part[1], plen[1]);
        memcpy(s.service, part[2], plen[2]);
        *ret = s;
        return KW_OK;
}

kw_result kw_sigv4_creq_parse(const char *creq, size_t len, struct kw_sigv4_creq *ret)
{
        /* method \n path \n query \n headers... \n \n signed-headers \n payload-hash */
        struct kw_sigv4_creq c;
        memset(&c, 0, sizeof c);
        const char *line[3];
        size_t ll[3], start = 0, n = 0;
        for (size_t i = 0; i < len && n < 3; i++) {
                if (creq[i] == '\n') {
                        line[n] = creq + start;
                        ll[n++] = i - start;
                        start = i + 1;
                }
        }
        if (n != 3 || len < 65 || len > KW_SIGV4_CREQ_MAX || creq[len - 65] != '\n' ||
            memchr(creq, '\0', len) != NULL || hex32(creq + len - 64, c.payload_sha256) != 0) {
                kw_err_set_detail("malformed canonical request");
                KW_BAIL(KW_ERR_AUTH);
        }
        c.method = line[0];
        c.method_len = ll[0];
        c.path = line[1];
        c.path_len = ll[1];
        c.query = line[2];
        c.query_len = ll[2];
        *ret = c;
        return KW_OK;
}
