/* recovery_key.c - systemd-format recovery keys (recovery_key.h). */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "recovery_key.h"

static const char MODHEX[] = "cbdefghijklnrtuv";

/* 64 nibbles (0..15) to the grouped form. */
static void format_nibbles(const unsigned char nib[64], char out[KWU_RECOVERY_KEY_LEN + 1])
{
        size_t o = 0;
        for (size_t i = 0; i < 64; i++) {
                if (i > 0 && i % 8 == 0)
                        out[o++] = '-';
                out[o++] = MODHEX[nib[i] & 15];
        }
        out[o] = '\0';
}

kw_result kwu_recovery_key_new(char out[KWU_RECOVERY_KEY_LEN + 1])
{
        unsigned char raw[32], nib[64];
        if (RAND_priv_bytes(raw, sizeof raw) != 1) {
                OPENSSL_cleanse(out, KWU_RECOVERY_KEY_LEN + 1);
                KW_BAIL(KW_ERR_RANDOM);
        }
        for (size_t i = 0; i < sizeof raw; i++) {
                nib[2 * i] = raw[i] >> 4;
                nib[2 * i + 1] = raw[i] & 15;
        }
        format_nibbles(nib, out);
        OPENSSL_cleanse(raw, sizeof raw);
        OPENSSL_cleanse(nib, sizeof nib);
        return KW_OK;
}

kw_result kwu_recovery_key_normalize(const char *in, size_t n, char out[KWU_RECOVERY_KEY_LEN + 1])
{
        unsigned char nib[64];
        size_t k = 0;
        int ok = in != NULL;
        if (ok && n > 0 && in[n - 1] == '\n')
                n--;
        for (size_t i = 0; ok && i < n; i++) {
                char c = in[i];
                if (c == '-' || c == ' ' || c == '\t')
                        continue;
                if (c >= 'A' && c <= 'Z')
                        c = (char)(c - 'A' + 'a');
                const char *p = c != '\0' ? strchr(MODHEX, c) : NULL;
                if (p == NULL || k == sizeof nib)
                        ok = 0;
                else
                        nib[k++] = (unsigned char)(p - MODHEX);
        }
        if (!ok || k != sizeof nib) {
                OPENSSL_cleanse(nib, sizeof nib);
                OPENSSL_cleanse(out, KWU_RECOVERY_KEY_LEN + 1);
                kw_err_set_detail("a recovery key is 64 letters of cbdefghijklnrtuv in groups of 8");
                KW_BAIL(KW_ERR_BAD_ENCODING);
        }
        format_nibbles(nib, out);
        OPENSSL_cleanse(nib, sizeof nib);
        return KW_OK;
}
