/* passphrase.c - a binding's 32 secret bytes as its LUKS passphrase (passphrase.h). */
#include <string.h>

#include <openssl/crypto.h>

#include "../../server/common/b64.h"
#include "passphrase.h"

kw_result kwu_passphrase_b64(const uint8_t secret[KWU_SECRET_LEN], char pass[KWU_PASSPHRASE_LEN + 1])
{
        struct kw_buf b;
        kw_buf_init(&b, KWU_PASSPHRASE_LEN + 1);
        kw_result r = kw_b64_encode(secret, KWU_SECRET_LEN, &b);
        if (r.code == 0 && b.len == KWU_PASSPHRASE_LEN) {
                memcpy(pass, b.p, KWU_PASSPHRASE_LEN);
                pass[KWU_PASSPHRASE_LEN] = '\0';
        } else {
                OPENSSL_cleanse(pass, KWU_PASSPHRASE_LEN + 1);
                if (r.code == 0)
                        r = KW_RESULT(KW_ERR_INTERNAL);
        }
        kw_buf_free(&b);   /* wipes */
        return r;
}
