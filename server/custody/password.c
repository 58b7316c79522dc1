/*
 * password.c - argon2id hashing and checking of console passwords
 * (contract in password.h).  libargon2's codes are converted here.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <argon2.h>

#include "../common/log.h"
#include "../common/names.h"
#include "../common/secret.h"
#include "crypto.h"
#include "password.h"

#define PW_T_COST 3
#define PW_M_COST 65536   /* KiB */
#define PW_LANES 1
#define PW_SALT_LEN 16
#define PW_TAG_LEN 32

/* Bounds the memory of concurrent hashes (64 MiB each) and the custody
 * workers a flood of sign-ins can hold: at most KW_PASSWORD_CONCURRENCY run
 * and KW_PASSWORD_QUEUE wait; the next caller is refused (KW_ERR_OVERLOAD)
 * at once instead of taking a worker that key operations need. */
static pthread_mutex_t pw_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pw_cv = PTHREAD_COND_INITIALIZER;
static unsigned pw_running, pw_waiting;

KW_MUST_USE static kw_result pw_enter(void)
{
        pthread_mutex_lock(&pw_mu);
        if (pw_running >= KW_PASSWORD_CONCURRENCY && pw_waiting >= KW_PASSWORD_QUEUE) {
                pthread_mutex_unlock(&pw_mu);
                kw_err_set_detail("too many password checks at once: try again in a moment");
                KW_BAIL(KW_ERR_OVERLOAD);
        }
        pw_waiting++;
        while (pw_running >= KW_PASSWORD_CONCURRENCY)
                pthread_cond_wait(&pw_cv, &pw_mu);
        pw_waiting--;
        pw_running++;
        pthread_mutex_unlock(&pw_mu);
        return KW_OK;
}

static void pw_leave(void)
{
        pthread_mutex_lock(&pw_mu);
        pw_running--;
        pthread_cond_signal(&pw_cv);
        pthread_mutex_unlock(&pw_mu);
}

int kw_password_acceptable(const uint8_t *p, size_t n)
{
        if (p == NULL || n < KW_PASSWORD_MIN || n > KW_PASSWORD_MAX || memchr(p, 0, n) != NULL)
                return 0;
        char tmp[KW_PASSWORD_MAX + 1];
        memcpy(tmp, p, n);
        tmp[n] = '\0';
        int ok = kw_utf8_printable(tmp);
        kw_wipe(tmp, sizeof tmp);
        return ok;
}

static kw_result pw_hash_salted(const uint8_t *p, size_t n, const uint8_t salt[PW_SALT_LEN],
                                char ret[KW_USER_HASH_MAX])
{
        _Static_assert(KW_USER_HASH_MAX > 100, "an argon2id encoded hash fits");
        KW_ENSURE(argon2_encodedlen(PW_T_COST, PW_M_COST, PW_LANES, PW_SALT_LEN, PW_TAG_LEN,
                                    Argon2_id) <= KW_USER_HASH_MAX,
                  KW_ERR_INTERNAL);
        char enc[KW_USER_HASH_MAX];
        KW_TRY(pw_enter());
        int rc = argon2id_hash_encoded(PW_T_COST, PW_M_COST, PW_LANES, p, n, salt, PW_SALT_LEN,
                                       PW_TAG_LEN, enc, sizeof enc);
        pw_leave();
        if (rc != ARGON2_OK) {
                kw_err_set_detail("argon2id: %s", argon2_error_message(rc));
                KW_BAIL(rc == ARGON2_MEMORY_ALLOCATION_ERROR ? KW_ERR_NOMEM : KW_ERR_CRYPTO);
        }
        memcpy(ret, enc, sizeof enc);
        return KW_OK;
}

kw_result kw_password_hash(const uint8_t *p, size_t n, char ret[KW_USER_HASH_MAX])
{
        KW_ENSURE(p != NULL && n <= KW_PASSWORD_MAX, KW_ERR_INPUT);
        uint8_t salt[PW_SALT_LEN];
        KW_TRY(kw_random(salt, sizeof salt));
        return pw_hash_salted(p, n, salt, ret);
}

/* The hash an unknown user name is checked against, with this module's
 * parameters: of 32 random bytes that were thrown away.  A constant (not
 * made at start: that cost every start of custody 0.35 s of argon2id); a
 * match against it is never a sign-in (kw_password_verify answers 0). */
static const char dummy_hash[] =
        "$argon2id$v=19$m=65536,t=3,p=1$tOLNPtyLMowSHwglAPef0Q$"
        "J3a+rPem0s1QUY5tb1D9DZPZhV8RXww4RwpB4btfpyg";

kw_result kw_password_verify(const char *encoded, const uint8_t *p, size_t n, int *ret_match)
{
        *ret_match = 0;
        if (p == NULL || n > KW_PASSWORD_MAX)
                return KW_OK;
        int real = encoded != NULL;
        if (!real)
                encoded = dummy_hash;
        KW_TRY(pw_enter());
        int rc = argon2id_verify(encoded, p, n);
        pw_leave();
        *ret_match = real && rc == ARGON2_OK;
        return KW_OK;
}
