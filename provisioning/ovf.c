/* ovf.c - CustomData out of Azure's ovf-env.xml (ovf.h). */
#include <string.h>

#include <openssl/crypto.h>

#include "../server/common/b64.h"
#include "ovf.h"

#define BAD(...)                                      \
        do {                                          \
                kw_err_set_detail(__VA_ARGS__);       \
                KW_BAIL(KW_ERR_BAD_FIELD);            \
        } while (0)

/* The position of needle in s[from..len), or len. */
static size_t find(const char *s, size_t len, size_t from, const char *needle)
{
        size_t n = strlen(needle);
        for (size_t i = from; i + n <= len; i++)
                if (memcmp(s + i, needle, n) == 0)
                        return i;
        return len;
}

static int name_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' ||
               c == '_' || c == '-' || c == '.';
}

/* Whether the qualified name q[0..n) is CustomData in some namespace. */
static int is_custom_data(const char *q, size_t n)
{
        static const char local[] = "CustomData";
        size_t l = sizeof local - 1;
        return n >= l && memcmp(q + n - l, local, l) == 0 && (n == l || q[n - l - 1] == ':');
}

kw_result kwp_ovf_custom_data(const char *xml, size_t len, struct kw_buf *out)
{
        KW_ENSURE(xml != NULL && out != NULL, KW_ERR_INPUT);
        if (len > KWP_OVF_MAX) {
                kw_err_set_detail("ovf-env.xml is larger than %u bytes", KWP_OVF_MAX);
                KW_BAIL(KW_ERR_TOO_LARGE);
        }
        size_t text_at = 0, text_len = 0;
        int found = 0;
        for (size_t i = 0; i < len;) {
                if (xml[i] != '<') {
                        i++;
                        continue;
                }
                if (len - i >= 4 && memcmp(xml + i, "<!--", 4) == 0) {
                        size_t e = find(xml, len, i + 4, "-->");
                        if (e == len)
                                BAD("ovf-env.xml: a comment is not closed");
                        i = e + 3;
                        continue;
                }
                if (len - i >= 2 && xml[i + 1] == '?') {
                        size_t e = find(xml, len, i + 2, "?>");
                        if (e == len)
                                BAD("ovf-env.xml: a processing instruction is not closed");
                        i = e + 2;
                        continue;
                }
                if (len - i >= 2 && xml[i + 1] == '!')
                        BAD("ovf-env.xml: a DOCTYPE or CDATA section outside CustomData: refused");
                size_t q = i + 1 + (len - i >= 2 && xml[i + 1] == '/');
                size_t qe = q;
                while (qe < len && name_char(xml[qe]))
                        qe++;
                size_t close = qe;
                while (close < len && xml[close] != '>' && xml[close] != '<')
                        close++;
                if (close == len || xml[close] != '>' || qe == q)
                        BAD("ovf-env.xml: a tag is not closed or has no name");
                int end_tag = q == i + 2, empty = xml[close - 1] == '/';
                if (!end_tag && is_custom_data(xml + q, qe - q)) {
                        if (found)
                                BAD("ovf-env.xml: CustomData appears twice");
                        found = 1;
                        if (empty) {
                                i = close + 1;
                                continue;
                        }
                        text_at = close + 1;
                        size_t e = text_at;
                        while (e < len && xml[e] != '<')
                                e++;
                        text_len = e - text_at;
                        /* the element ends right there, with its own name */
                        size_t nl = qe - q;
                        if (e + 2 + nl + 1 > len || xml[e + 1] != '/' || memcmp(xml + e + 2, xml + q, nl) != 0 ||
                            xml[e + 2 + nl] != '>')
                                BAD("ovf-env.xml: CustomData holds something other than base64 text");
                        for (size_t k = text_at; k < e; k++) {
                                char c = xml[k];
                                int b64 = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                                          c == '+' || c == '/' || c == '=';
                                if (!b64 && c != ' ' && c != '\t' && c != '\r' && c != '\n')
                                        BAD("ovf-env.xml: CustomData holds a character that is not base64 "
                                            "(byte %zu)", k);
                        }
                        i = e + 2 + nl + 1;
                        continue;
                }
                i = close + 1;
        }
        if (!found || text_len == 0) {
                kw_err_set_detail("ovf-env.xml has no CustomData");
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        /* the base64 without its white space */
        struct kw_buf b64;
        kw_buf_init(&b64, text_len + 1);
        kw_result r = KW_OK;
        for (size_t k = text_at; r.code == 0 && k < text_at + text_len; k++)
                if (xml[k] != ' ' && xml[k] != '\t' && xml[k] != '\r' && xml[k] != '\n')
                        r = kw_buf_put(&b64, xml + k, 1);
        kw_buf_reset(out);
        if (r.code == 0 && b64.len == 0) {
                kw_err_set_detail("ovf-env.xml has no CustomData");
                r = KW_RESULT(KW_ERR_NOT_FOUND);
        } else if (r.code == 0 && kw_b64_decode((const char *)b64.p, b64.len, out).code != 0) {
                OPENSSL_cleanse(out->p, out->len);
                kw_buf_reset(out);
                kw_err_set_detail("ovf-env.xml: CustomData is not base64");
                r = KW_RESULT(KW_ERR_BAD_FIELD);
        }
        OPENSSL_cleanse(b64.p, b64.len);
        kw_buf_free(&b64);
        return r;
}
