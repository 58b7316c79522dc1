/* secret.c - secure-heap allocations for key material. */
#include <errno.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <openssl/crypto.h>

#include "secret.h"

kw_result kw_secret_init(size_t arena_bytes, int *ret_locked)
{
        size_t sz = 4096;
        while (sz < arena_bytes)
                sz <<= 1;
        if (CRYPTO_secure_malloc_initialized()) {
                *ret_locked = 1;
                return KW_OK;
        }
        int rc = CRYPTO_secure_malloc_init(sz, 16);
        if (rc == 0) {
                kw_err_set_detail("cannot set up the secure heap (%zu bytes)", sz);
                KW_BAIL(KW_ERR_NOMEM);
        }
        *ret_locked = rc == 1;
        return KW_OK;
}

kw_result kw_secret_harden_process(void)
{
        struct rlimit rl = { 0, 0 };
        KW_ENSURE(setrlimit(RLIMIT_CORE, &rl) == 0, KW_ERR_INTERNAL);
        KW_ENSURE(prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0, KW_ERR_INTERNAL);
        return KW_OK;
}

kw_result kw_secret_alloc(size_t len, struct kw_secret *ret)
{
        uint8_t *p = OPENSSL_secure_zalloc(len ? len : 1);
        KW_ENSURE(p != NULL, KW_ERR_NOMEM);
        *ret = (struct kw_secret){ .p = p, .len = len };
        return KW_OK;
}

kw_result kw_secret_dup(const void *src, size_t len, struct kw_secret *ret)
{
        struct kw_secret s;
        KW_TRY(kw_secret_alloc(len, &s));
        if (len != 0)
                memcpy(s.p, src, len);
        *ret = s;
        return KW_OK;
}

void kw_secret_free(struct kw_secret *s)
{
        if (s == NULL || s->p == NULL)
                return;
        OPENSSL_secure_clear_free(s->p, s->len ? s->len : 1);
        s->p = NULL;
        s->len = 0;
}

void kw_wipe(void *p, size_t n)
{
        if (p != NULL && n != 0)
                OPENSSL_cleanse(p, n);
}
