/*
 * hsm.c - the HSM link of the custody process (see hsm.h for the contract).
 *
 * Layout of this file:
 *   CK_RV conversion         the one place where CK_RV becomes kw_result
 *   session pool             acquire/release, the DOWN and SLOW states
 *   blob formats             AES-GCM and RFC 5649 (AES-KWP) sealing
 *   open / reconnect / close module, token, login, master key, the retry thread
 *
 * Locking: h->mu guards the pool (busy flags, session handles of idle
 * sessions, slot, key handle, down reason, retry bookkeeping).  h->down and
 * each session's start time are also read without the lock (atomics) so that
 * a DOWN link fails without waiting for the mutex and kw_hsm_state() needs no
 * lock.  No PKCS#11 call is made with h->mu held.
 *
 * AES-KWP: when the module offers CKM_AES_KEY_WRAP_PAD for C_Encrypt and
 * C_Decrypt, it is used directly.  SoftHSM2 (2.6.1) offers it only for
 * C_WrapKey/C_UnwrapKey, and its C_WrapKey zero-pads the key value to a
 * multiple of 8 before wrapping (the wrapped length is then lost), so for
 * such modules RFC 5649 is computed here over the module's AES block
 * operation (CKM_AES_ECB with the master key, which never leaves the HSM).
 * Both give the same, standard RFC 5649 blob; the test checks ours against
 * the module's own C_UnwrapKey.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>

#include "../common/readfile.h"
#include "hsm.h"

#define HSM_BLOB_VERSION 1
#define HSM_MECH_GCM 1
#define HSM_MECH_KWP 2
#define HSM_GCM_IV 12
#define HSM_GCM_TAG 16
#define HSM_MAX_AAD 65535u             /* it is a u16 in the KWP form        */
#define HSM_MAX_PT 65536u              /* sealed secrets are small           */
#define HSM_MAX_BLOB (2u + HSM_MAX_AAD + HSM_MAX_PT + 64u)
#define HSM_MAX_SESSIONS 64u
#define HSM_MAX_PIN 256u
#define HSM_MAX_RANDOM (1u << 20)
#define HSM_LABEL_LEN 32
#define HSM_CHECK_AAD "keyward:hsm-check"

struct hsm_sess {
        CK_SESSION_HANDLE s;  /* CK_INVALID_HANDLE when closed               */
        int busy;             /* under mu                                    */
        uint64_t start_ns;    /* atomic; 0 when no call is running on it     */
};

struct kw_hsm {
        CK_FUNCTION_LIST *f;
        int initialized;                   /* C_Initialize succeeded          */
        char *module;                      /* for details                     */
        char *token_label;
        char *key_label;
        char *pin_file;
        CK_UTF8CHAR padded_label[HSM_LABEL_LEN];
        struct kw_secret pin;              /* kept for re-login after a loss  */
        unsigned nsess, timeout_ms, retry_ms;
        int mech;                          /* HSM_MECH_*, fixed after open    */
        int kwp_ecb;                       /* RFC 5649 over CKM_AES_ECB       */

        pthread_mutex_t mu;
        pthread_cond_t cv;                 /* a session was released         */
        pthread_cond_t thr_cv;             /* wakes the retry thread         */
        pthread_t thr;
        int thr_started;
        int stop;                          /* under mu */

        CK_SLOT_ID slot;                   /* under mu */
        CK_OBJECT_HANDLE key;              /* under mu */
        struct hsm_sess *sess;             /* nsess entries */
        char down_reason[160];             /* under mu */
        unsigned failed_attempts;          /* under mu */
        int need_reinit;                   /* under mu */
        int down;                          /* atomic; written under mu */

        uint64_t calls, errors, timeouts, reconnects; /* atomic */
};

/* One borrowed session for the length of one public call. */
struct lease {
        unsigned idx;
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE key;
        int gone;                          /* a device-gone CK_RV was seen    */
        char why[96];
};

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct timespec deadline_after_ms(unsigned ms)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(ms / 1000);
        ts.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
        }
        return ts;
}

static void stat_inc(uint64_t *c) { __atomic_add_fetch(c, 1, __ATOMIC_RELAXED); }

/* ------------------------------------------------------------------------ */
/* CK_RV conversion                                                         */
/* ------------------------------------------------------------------------ */

#define RV(x) { x, #x }
static const struct {
        CK_RV rv;
        const char *name;
} rv_names[] = {
        RV(CKR_OK), RV(CKR_CANCEL), RV(CKR_HOST_MEMORY), RV(CKR_SLOT_ID_INVALID),
        RV(CKR_GENERAL_ERROR), RV(CKR_FUNCTION_FAILED), RV(CKR_ARGUMENTS_BAD),
        RV(CKR_NO_EVENT), RV(CKR_NEED_TO_CREATE_THREADS), RV(CKR_CANT_LOCK),
        RV(CKR_ATTRIBUTE_READ_ONLY), RV(CKR_ATTRIBUTE_SENSITIVE),
        RV(CKR_ATTRIBUTE_TYPE_INVALID), RV(CKR_ATTRIBUTE_VALUE_INVALID),
        RV(CKR_DATA_INVALID), RV(CKR_DATA_LEN_RANGE), RV(CKR_DEVICE_ERROR),
        RV(CKR_DEVICE_MEMORY), RV(CKR_DEVICE_REMOVED), RV(CKR_ENCRYPTED_DATA_INVALID),
        RV(CKR_ENCRYPTED_DATA_LEN_RANGE), RV(CKR_FUNCTION_CANCELED),
        RV(CKR_FUNCTION_NOT_PARALLEL), RV(CKR_FUNCTION_NOT_SUPPORTED),
        RV(CKR_KEY_HANDLE_INVALID), RV(CKR_KEY_SIZE_RANGE), RV(CKR_KEY_TYPE_INCONSISTENT),
        RV(CKR_KEY_NOT_NEEDED), RV(CKR_KEY_CHANGED), RV(CKR_KEY_NEEDED),
        RV(CKR_KEY_INDIGESTIBLE), RV(CKR_KEY_FUNCTION_NOT_PERMITTED),
        RV(CKR_KEY_NOT_WRAPPABLE), RV(CKR_KEY_UNEXTRACTABLE), RV(CKR_MECHANISM_INVALID),
        RV(CKR_MECHANISM_PARAM_INVALID), RV(CKR_OBJECT_HANDLE_INVALID),
        RV(CKR_OPERATION_ACTIVE), RV(CKR_OPERATION_NOT_INITIALIZED), RV(CKR_PIN_INCORRECT),
        RV(CKR_PIN_INVALID), RV(CKR_PIN_LEN_RANGE), RV(CKR_PIN_EXPIRED), RV(CKR_PIN_LOCKED),
        RV(CKR_SESSION_CLOSED), RV(CKR_SESSION_COUNT), RV(CKR_SESSION_HANDLE_INVALID),
        RV(CKR_SESSION_PARALLEL_NOT_SUPPORTED), RV(CKR_SESSION_READ_ONLY),
        RV(CKR_SESSION_EXISTS), RV(CKR_SESSION_READ_ONLY_EXISTS),
        RV(CKR_SESSION_READ_WRITE_SO_EXISTS), RV(CKR_TEMPLATE_INCOMPLETE),
        RV(CKR_TEMPLATE_INCONSISTENT), RV(CKR_TOKEN_NOT_PRESENT), RV(CKR_TOKEN_NOT_RECOGNIZED),
        RV(CKR_TOKEN_WRITE_PROTECTED), RV(CKR_UNWRAPPING_KEY_HANDLE_INVALID),
        RV(CKR_UNWRAPPING_KEY_SIZE_RANGE), RV(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT),
        RV(CKR_USER_ALREADY_LOGGED_IN), RV(CKR_USER_NOT_LOGGED_IN),
        RV(CKR_USER_PIN_NOT_INITIALIZED), RV(CKR_USER_TYPE_INVALID),
        RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN), RV(CKR_USER_TOO_MANY_TYPES),
        RV(CKR_WRAPPED_KEY_INVALID), RV(CKR_WRAPPED_KEY_LEN_RANGE),
        RV(CKR_WRAPPING_KEY_HANDLE_INVALID), RV(CKR_WRAPPING_KEY_SIZE_RANGE),
        RV(CKR_WRAPPING_KEY_TYPE_INCONSISTENT), RV(CKR_RANDOM_SEED_NOT_SUPPORTED),
        RV(CKR_RANDOM_NO_RNG), RV(CKR_DOMAIN_PARAMS_INVALID), RV(CKR_BUFFER_TOO_SMALL),
        RV(CKR_SAVED_STATE_INVALID), RV(CKR_INFORMATION_SENSITIVE),
        RV(CKR_STATE_UNSAVEABLE), RV(CKR_CRYPTOKI_NOT_INITIALIZED),
        RV(CKR_CRYPTOKI_ALREADY_INITIALIZED), RV(CKR_MUTEX_BAD), RV(CKR_MUTEX_NOT_LOCKED),
        RV(CKR_FUNCTION_REJECTED),
};
#undef RV

/* "CKR_PIN_INCORRECT"; unknown values as "CKR_0x..." (thread-local). */
static const char *ck_name(CK_RV rv)
{
        static __thread char unknown[32];
        for (size_t i = 0; i < sizeof rv_names / sizeof rv_names[0]; i++)
                if (rv_names[i].rv == rv)
                        return rv_names[i].name;
        snprintf(unknown, sizeof unknown, "CKR_0x%lx", (unsigned long)rv);
        return unknown;
}

/* The module, the token or our sessions are gone: the link is down. */
static int ck_gone(CK_RV rv)
{
        switch (rv) {
        case CKR_DEVICE_REMOVED:
        case CKR_DEVICE_ERROR:
        case CKR_TOKEN_NOT_PRESENT:
        case CKR_SESSION_CLOSED:
        case CKR_SESSION_HANDLE_INVALID:
        case CKR_CRYPTOKI_NOT_INITIALIZED:
        case CKR_USER_NOT_LOGGED_IN:
        case CKR_DEVICE_MEMORY:
        case CKR_FUNCTION_FAILED:
                return 1;
        default:
                return 0;
        }
}

enum ck_ctx { CTX_PLAIN, CTX_DECRYPT };

/*
 * Converts a failed CK_RV of function fn to a kw_result with a detail.  In
 * CTX_DECRYPT, the codes a module uses for "this ciphertext does not
 * authenticate" (SoftHSM2: CKR_GENERAL_ERROR for a bad GCM tag) become
 * HSM_UNWRAP.  A device-gone code marks the lease (l may be NULL).
 */
KW_MUST_USE static kw_result ck_fail(struct lease *l, const char *fn, CK_RV rv, enum ck_ctx ctx)
{
        if (ck_gone(rv)) {
                if (l != NULL) {
                        l->gone = 1;
                        snprintf(l->why, sizeof l->why, "%s returned %s", fn, ck_name(rv));
                }
                kw_err_set_detail("HSM link lost: %s returned %s", fn, ck_name(rv));
                KW_BAIL(KW_ERR_HSM_UNAVAILABLE);
        }
        if (ctx == CTX_DECRYPT) {
                switch (rv) {
                case CKR_ENCRYPTED_DATA_INVALID:
                case CKR_ENCRYPTED_DATA_LEN_RANGE:
                case CKR_GENERAL_ERROR:
                case CKR_DATA_INVALID:
                case CKR_DATA_LEN_RANGE:
                case CKR_WRAPPED_KEY_INVALID:
                case CKR_WRAPPED_KEY_LEN_RANGE:
                case 0x35UL: /* CKR_AEAD_DECRYPT_FAILED (PKCS#11 3.0) */
                        kw_err_set_detail("%s returned %s: the blob does not authenticate "
                                          "under the master key with this aad", fn, ck_name(rv));
                        KW_BAIL(KW_ERR_HSM_UNWRAP);
                default:
                        break;
                }
        }
        switch (rv) {
        case CKR_MECHANISM_INVALID:
        case CKR_MECHANISM_PARAM_INVALID:
        case CKR_KEY_FUNCTION_NOT_PERMITTED:
        case CKR_KEY_TYPE_INCONSISTENT:
        case CKR_KEY_SIZE_RANGE:
        case CKR_FUNCTION_NOT_SUPPORTED:
                kw_err_set_detail("%s returned %s: the module or the master key does not "
                                  "allow this mechanism", fn, ck_name(rv));
                KW_BAIL(KW_ERR_HSM_MECHANISM);
        case CKR_HOST_MEMORY:
                kw_err_set_detail("%s returned %s", fn, ck_name(rv));
                KW_BAIL(KW_ERR_NOMEM);
        default:
                kw_err_set_detail("%s returned %s", fn, ck_name(rv));
                KW_BAIL(KW_ERR_HSM);
        }
}

/* ------------------------------------------------------------------------ */
/* session pool                                                             */
/* ------------------------------------------------------------------------ */

/* A call has been running longer than timeout_ms.  No lock needed. */
static int pool_slow(const struct kw_hsm *h, uint64_t now)
{
        uint64_t limit = (uint64_t)h->timeout_ms * 1000000u;
        for (unsigned i = 0; i < h->nsess; i++) {
                uint64_t st = __atomic_load_n(&h->sess[i].start_ns, __ATOMIC_ACQUIRE);
                if (st != 0 && now > st && now - st > limit)
                        return 1;
        }
        return 0;
}

/* Caller holds mu. */
static void set_down_detail_locked(const struct kw_hsm *h)
{
        kw_err_set_detail("HSM link down (%s); reconnecting every %u ms", h->down_reason,
                          h->retry_ms);
}

/*
 * Borrows an idle session: fails at once with HSM_UNAVAILABLE when the link
 * is down and with HSM_TIMEOUT when it is slow; otherwise waits at most
 * timeout_ms for a free session (HSM_TIMEOUT).
 */
KW_MUST_USE static kw_result pool_acquire(struct kw_hsm *h, struct lease *ret)
{
        struct timespec deadline = deadline_after_ms(h->timeout_ms);
        uint64_t deadline_ns = now_ns() + (uint64_t)h->timeout_ms * 1000000u;
        pthread_mutex_lock(&h->mu);
        for (;;) {
                if (__atomic_load_n(&h->down, __ATOMIC_ACQUIRE)) {
                        set_down_detail_locked(h);
                        pthread_mutex_unlock(&h->mu);
                        KW_BAIL(KW_ERR_HSM_UNAVAILABLE);
                }
                uint64_t now = now_ns();
                if (pool_slow(h, now)) {
                        pthread_mutex_unlock(&h->mu);
                        stat_inc(&h->timeouts);
                        kw_err_set_detail("an HSM call has been running for more than %u ms",
                                          h->timeout_ms);
                        KW_BAIL(KW_ERR_HSM_TIMEOUT);
                }
                for (unsigned i = 0; i < h->nsess; i++) {
                        if (!h->sess[i].busy) {
                                h->sess[i].busy = 1;
                                __atomic_store_n(&h->sess[i].start_ns, now, __ATOMIC_RELEASE);
                                *ret = (struct lease){ .idx = i, .s = h->sess[i].s, .key = h->key };
                                pthread_mutex_unlock(&h->mu);
                                return KW_OK;
                        }
                }
                if (now >= deadline_ns) {
                        pthread_mutex_unlock(&h->mu);
                        stat_inc(&h->timeouts);
                        kw_err_set_detail("no free HSM session within %u ms (pool of %u)",
                                          h->timeout_ms, h->nsess);
                        KW_BAIL(KW_ERR_HSM_TIMEOUT);
                }
                int rc = pthread_cond_timedwait(&h->cv, &h->mu, &deadline);
                if (rc != 0 && rc != ETIMEDOUT && rc != EINTR) {
                        pthread_mutex_unlock(&h->mu);
                        KW_BAIL(KW_ERR_INTERNAL);
                }
        }
}

/* Caller holds mu. */
static void mark_down_locked(struct kw_hsm *h, const char *why)
{
        if (__atomic_load_n(&h->down, __ATOMIC_ACQUIRE))
                return;
        snprintf(h->down_reason, sizeof h->down_reason, "%s", why);
        h->failed_attempts = 0;
        h->need_reinit = 0;
        __atomic_store_n(&h->down, 1, __ATOMIC_RELEASE);
}

static void pool_release(struct kw_hsm *h, struct lease *l)
{
        pthread_mutex_lock(&h->mu);
        __atomic_store_n(&h->sess[l->idx].start_ns, 0, __ATOMIC_RELEASE);
        h->sess[l->idx].busy = 0;
        if (l->gone)
                mark_down_locked(h, l->why);
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
}

/* ------------------------------------------------------------------------ */
/* blob formats                                                             */
/* ------------------------------------------------------------------------ */

static uint8_t dummy_byte; /* a non-NULL pointer for empty inputs */

static CK_BYTE_PTR ck_in(const uint8_t *p, size_t n)
{
        return n != 0 ? (CK_BYTE_PTR)(uintptr_t)p : &dummy_byte;
}

static size_t round8(size_t n) { return (n + 7) & ~(size_t)7; }

/* GCM: appends 1 | 1 | iv | ct | tag to out (already reserved). */
KW_MUST_USE static kw_result seal_gcm(struct kw_hsm *h, struct lease *l, const uint8_t *aad,
                                      size_t aad_len, const uint8_t *pt, size_t pt_len,
                                      uint8_t *dst)
{
        uint8_t iv[HSM_GCM_IV];
        if (RAND_bytes(iv, sizeof iv) != 1) {
                kw_err_set_detail("RAND_bytes failed for the GCM nonce");
                KW_BAIL(KW_ERR_RANDOM);
        }
        dst[0] = HSM_BLOB_VERSION;
        dst[1] = HSM_MECH_GCM;
        memcpy(dst + 2, iv, sizeof iv);
        CK_GCM_PARAMS gp = { .pIv = iv, .ulIvLen = sizeof iv, .ulIvBits = 8 * sizeof iv,
                             .pAAD = ck_in(aad, aad_len), .ulAADLen = aad_len,
                             .ulTagBits = 8 * HSM_GCM_TAG };
        CK_MECHANISM m = { CKM_AES_GCM, &gp, sizeof gp };
        CK_RV rv = h->f->C_EncryptInit(l->s, &m, l->key);
        if (rv != CKR_OK)
                return ck_fail(l, "C_EncryptInit(AES-GCM)", rv, CTX_PLAIN);
        CK_ULONG cl = pt_len + HSM_GCM_TAG;
        rv = h->f->C_Encrypt(l->s, ck_in(pt, pt_len), pt_len, dst + 2 + sizeof iv, &cl);
        if (rv != CKR_OK)
                return ck_fail(l, "C_Encrypt(AES-GCM)", rv, CTX_PLAIN);
        if (cl != pt_len + HSM_GCM_TAG) {
                kw_err_set_detail("C_Encrypt(AES-GCM) returned %lu bytes for %zu",
                                  (unsigned long)cl, pt_len);
                KW_BAIL(KW_ERR_HSM);
        }
        return KW_OK;
}

KW_MUST_USE static kw_result unseal_gcm(struct kw_hsm *h, struct lease *l, const uint8_t *aad,
                                        size_t aad_len, const uint8_t *body, size_t body_len,
                                        struct kw_secret *ret)
{
        /* caller checked body_len >= iv + tag */
        const uint8_t *iv = body;
        const uint8_t *ct = body + HSM_GCM_IV;
        size_t ct_len = body_len - HSM_GCM_IV;
        _cleanup_secret_ struct kw_secret tmp = { 0 };
        KW_TRY(kw_secret_alloc(ct_len, &tmp));
        CK_GCM_PARAMS gp = { .pIv = (CK_BYTE_PTR)(uintptr_t)iv, .ulIvLen = HSM_GCM_IV,
                             .ulIvBits = 8 * HSM_GCM_IV, .pAAD = ck_in(aad, aad_len),
                             .ulAADLen = aad_len, .ulTagBits = 8 * HSM_GCM_TAG };
        CK_MECHANISM m = { CKM_AES_GCM, &gp, sizeof gp };
        CK_RV rv = h->f->C_DecryptInit(l->s, &m, l->key);
        if (rv != CKR_OK)
                return ck_fail(l, "C_DecryptInit(AES-GCM)", rv, CTX_PLAIN);
        CK_ULONG ol = ct_len;
        rv = h->f->C_Decrypt(l->s, (CK_BYTE_PTR)(uintptr_t)ct, ct_len, tmp.p, &ol);
        if (rv != CKR_OK)
                return ck_fail(l, "C_Decrypt(AES-GCM)", rv, CTX_DECRYPT);
        if (ol != ct_len - HSM_GCM_TAG) {
                kw_err_set_detail("C_Decrypt(AES-GCM) returned %lu bytes for %zu",
                                  (unsigned long)ol, ct_len);
                KW_BAIL(KW_ERR_HSM);
        }
        return kw_secret_dup(tmp.p, ol, ret);
}

/* One AES block through the module (CKM_AES_ECB operation already started). */
KW_MUST_USE static kw_result ecb_block(struct kw_hsm *h, struct lease *l, int enc,
                                       const uint8_t in[16], uint8_t out[16])
{
        CK_ULONG ol = 16;
        CK_RV rv = enc ? h->f->C_EncryptUpdate(l->s, (CK_BYTE_PTR)(uintptr_t)in, 16, out, &ol)
                       : h->f->C_DecryptUpdate(l->s, (CK_BYTE_PTR)(uintptr_t)in, 16, out, &ol);
        if (rv != CKR_OK)
                return ck_fail(l, enc ? "C_EncryptUpdate(AES-ECB)" : "C_DecryptUpdate(AES-ECB)",
                               rv, CTX_PLAIN);
        if (ol != 16) {
                kw_err_set_detail("the module's AES-ECB returned %lu bytes for one block",
                                  (unsigned long)ol);
                KW_BAIL(KW_ERR_HSM_MECHANISM);
        }
        return KW_OK;
}

/*
 * RFC 5649 over the module's AES-ECB: buf holds AIV | padded plaintext
 * (wrap) or the wrapped bytes (unwrap), len = 8 * (n + 1); transformed in
 * place.  The ECB operation is always finished, also on failure.
 */
KW_MUST_USE static kw_result rfc5649_ecb(struct kw_hsm *h, struct lease *l, int enc, uint8_t *buf,
                                         size_t len)
{
        CK_MECHANISM m = { CKM_AES_ECB, NULL, 0 };
        CK_RV rv = enc ? h->f->C_EncryptInit(l->s, &m, l->key)
                       : h->f->C_DecryptInit(l->s, &m, l->key);
        if (rv != CKR_OK)
                return ck_fail(l, enc ? "C_EncryptInit(AES-ECB)" : "C_DecryptInit(AES-ECB)", rv,
                               CTX_PLAIN);
        kw_result r = KW_OK;
        uint8_t b[16];
        size_t n = len / 8 - 1;
        if (n == 1) {
                KW_TRY_GOTO(r, ecb_block(h, l, enc, buf, b), out);
                memcpy(buf, b, 16);
        } else if (enc) {
                for (uint64_t j = 0; j <= 5; j++) {
                        for (size_t i = 1; i <= n; i++) {
                                memcpy(b, buf, 8);
                                memcpy(b + 8, buf + 8 * i, 8);
                                KW_TRY_GOTO(r, ecb_block(h, l, 1, b, b), out);
                                uint64_t t = n * j + i;
                                for (int k = 0; k < 8; k++)
                                        b[7 - k] ^= (uint8_t)(t >> (8 * k));
                                memcpy(buf, b, 8);
                                memcpy(buf + 8 * i, b + 8, 8);
                        }
                }
        } else {
                for (uint64_t j = 6; j-- > 0;) {
                        for (size_t i = n; i >= 1; i--) {
                                uint64_t t = n * j + i;
                                memcpy(b, buf, 8);
                                for (int k = 0; k < 8; k++)
                                        b[7 - k] ^= (uint8_t)(t >> (8 * k));
                                memcpy(b + 8, buf + 8 * i, 8);
                                KW_TRY_GOTO(r, ecb_block(h, l, 0, b, b), out);
                                memcpy(buf, b, 8);
                                memcpy(buf + 8 * i, b + 8, 8);
                        }
                }
        }
out:
        kw_wipe(b, sizeof b);
        if (!l->gone) {
                /* ends the operation; after a failed update it is already over */
                uint8_t last[16];
                CK_ULONG ll = sizeof last;
                CK_RV frv = enc ? h->f->C_EncryptFinal(l->s, last, &ll)
                                : h->f->C_DecryptFinal(l->s, last, &ll);
                kw_wipe(last, sizeof last);
                if (r.code == 0 && (frv != CKR_OK || ll != 0))
                        return ck_fail(l, enc ? "C_EncryptFinal(AES-ECB)" : "C_DecryptFinal(AES-ECB)",
                                       frv != CKR_OK ? frv : CKR_GENERAL_ERROR, CTX_PLAIN);
        }
        return r;
}

/* KWP: appends 1 | 2 | RFC5649(u16be aad_len | aad | pt) to dst (reserved). */
KW_MUST_USE static kw_result seal_kwp(struct kw_hsm *h, struct lease *l, const uint8_t *aad,
                                      size_t aad_len, const uint8_t *pt, size_t pt_len,
                                      uint8_t *dst)
{
        size_t m = 2 + aad_len + pt_len;
        size_t wl = round8(m) + 8;
        _cleanup_secret_ struct kw_secret msg = { 0 };
        KW_TRY(kw_secret_alloc(wl, &msg)); /* AIV | msg | zero padding */
        uint8_t *p = msg.p + 8;
        p[0] = (uint8_t)(aad_len >> 8);
        p[1] = (uint8_t)aad_len;
        if (aad_len != 0)
                memcpy(p + 2, aad, aad_len);
        if (pt_len != 0)
                memcpy(p + 2 + aad_len, pt, pt_len);
        dst[0] = HSM_BLOB_VERSION;
        dst[1] = HSM_MECH_KWP;
        if (h->kwp_ecb) {
                static const uint8_t aiv[4] = { 0xA6, 0x59, 0x59, 0xA6 };
                memcpy(msg.p, aiv, 4);
                msg.p[4] = (uint8_t)(m >> 24);
                msg.p[5] = (uint8_t)(m >> 16);
                msg.p[6] = (uint8_t)(m >> 8);
                msg.p[7] = (uint8_t)m;
                KW_TRY(rfc5649_ecb(h, l, 1, msg.p, wl));
                memcpy(dst + 2, msg.p, wl);
                return KW_OK;
        }
        CK_MECHANISM mech = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
        CK_RV rv = h->f->C_EncryptInit(l->s, &mech, l->key);
        if (rv != CKR_OK)
                return ck_fail(l, "C_EncryptInit(AES-KWP)", rv, CTX_PLAIN);
        CK_ULONG cl = wl;
        rv = h->f->C_Encrypt(l->s, p, m, dst + 2, &cl);
        if (rv != CKR_OK)
                return ck_fail(l, "C_Encrypt(AES-KWP)", rv, CTX_PLAIN);
        if (cl != wl) {
                kw_err_set_detail("C_Encrypt(AES-KWP) returned %lu bytes for %zu",
                                  (unsigned long)cl, m);
                KW_BAIL(KW_ERR_HSM);
        }
        return KW_OK;
}

KW_MUST_USE static kw_result unseal_kwp(struct kw_hsm *h, struct lease *l, const uint8_t *aad,
                                        size_t aad_len, const uint8_t *body, size_t body_len,
                                        struct kw_secret *ret)
{
        /* caller checked body_len >= 16 and body_len % 8 == 0 */
        _cleanup_secret_ struct kw_secret tmp = { 0 };
        KW_TRY(kw_secret_alloc(body_len, &tmp));
        const uint8_t *msg;
        size_t m;
        if (h->kwp_ecb) {
                memcpy(tmp.p, body, body_len);
                KW_TRY(rfc5649_ecb(h, l, 0, tmp.p, body_len));
                /* check AIV, MLI range and zero padding; one verdict */
                static const uint8_t aiv[4] = { 0xA6, 0x59, 0x59, 0xA6 };
                size_t n = body_len / 8 - 1;
                uint32_t mli = (uint32_t)tmp.p[4] << 24 | (uint32_t)tmp.p[5] << 16 |
                               (uint32_t)tmp.p[6] << 8 | tmp.p[7];
                int ok = CRYPTO_memcmp(tmp.p, aiv, 4) == 0;
                ok &= mli > 8 * (n - 1) && mli <= 8 * n;
                uint8_t pad = 0;
                if (ok)
                        for (size_t i = 8 + mli; i < body_len; i++)
                                pad |= tmp.p[i];
                ok &= pad == 0;
                if (!ok) {
                        kw_err_set_detail("AES-KWP integrity check failed: the blob does not "
                                          "authenticate under the master key");
                        KW_BAIL(KW_ERR_HSM_UNWRAP);
                }
                msg = tmp.p + 8;
                m = mli;
        } else {
                CK_MECHANISM mech = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
                CK_RV rv = h->f->C_DecryptInit(l->s, &mech, l->key);
                if (rv != CKR_OK)
                        return ck_fail(l, "C_DecryptInit(AES-KWP)", rv, CTX_PLAIN);
                CK_ULONG ol = body_len;
                rv = h->f->C_Decrypt(l->s, (CK_BYTE_PTR)(uintptr_t)body, body_len, tmp.p, &ol);
                if (rv != CKR_OK)
                        return ck_fail(l, "C_Decrypt(AES-KWP)", rv, CTX_DECRYPT);
                if (ol > body_len - 8) {
                        kw_err_set_detail("C_Decrypt(AES-KWP) returned %lu bytes for %zu",
                                          (unsigned long)ol, body_len);
                        KW_BAIL(KW_ERR_HSM);
                }
                msg = tmp.p;
                m = ol;
        }
        /* the bound aad: u16be aad_len | aad, compared in constant time */
        int ok = m >= 2 && ((size_t)msg[0] << 8 | msg[1]) == aad_len && m - 2 >= aad_len;
        if (ok && aad_len != 0)
                ok = CRYPTO_memcmp(msg + 2, aad, aad_len) == 0;
        if (!ok) {
                kw_err_set_detail("the blob was sealed with a different aad");
                KW_BAIL(KW_ERR_HSM_UNWRAP);
        }
        return kw_secret_dup(msg + 2 + aad_len, m - 2 - aad_len, ret);
}

/* ------------------------------------------------------------------------ */
/* public operations                                                        */
/* ------------------------------------------------------------------------ */

static kw_result count_result(struct kw_hsm *h, kw_result r)
{
        if (r.code != 0)
                stat_inc(&h->errors);
        return r;
}

static size_t sealed_len(const struct kw_hsm *h, size_t aad_len, size_t pt_len)
{
        if (h->mech == HSM_MECH_GCM)
                return 2 + HSM_GCM_IV + pt_len + HSM_GCM_TAG;
        return 2 + round8(2 + aad_len + pt_len) + 8;
}

static kw_result hsm_seal(struct kw_hsm *h, const uint8_t *aad, size_t aad_len,
                          const uint8_t *pt, size_t pt_len, struct kw_buf *out)
{
        if ((aad == NULL && aad_len != 0) || (pt == NULL && pt_len != 0) || out == NULL)
                KW_BAIL(KW_ERR_INPUT);
        if (aad_len > HSM_MAX_AAD || pt_len > HSM_MAX_PT) {
                kw_err_set_detail("sealing is for small secrets: aad <= %u, plaintext <= %u bytes",
                                  HSM_MAX_AAD, HSM_MAX_PT);
                KW_BAIL(KW_ERR_TOO_LARGE);
        }
        size_t need = sealed_len(h, aad_len, pt_len);
        KW_TRY(kw_buf_reserve(out, need));
        struct lease l;
        KW_TRY(pool_acquire(h, &l));
        kw_result r = h->mech == HSM_MECH_GCM
                              ? seal_gcm(h, &l, aad, aad_len, pt, pt_len, out->p + out->len)
                              : seal_kwp(h, &l, aad, aad_len, pt, pt_len, out->p + out->len);
        pool_release(h, &l);
        if (r.code == 0)
                out->len += need; /* only now: out is unchanged on failure */
        return r;
}

kw_result kw_hsm_seal(struct kw_hsm *h, const uint8_t *aad, size_t aad_len, const uint8_t *pt,
                      size_t pt_len, struct kw_buf *out)
{
        KW_ENSURE(h != NULL, KW_ERR_INPUT);
        stat_inc(&h->calls);
        return count_result(h, hsm_seal(h, aad, aad_len, pt, pt_len, out));
}

static kw_result hsm_unseal(struct kw_hsm *h, const uint8_t *aad, size_t aad_len,
                            const uint8_t *blob, size_t blob_len, struct kw_secret *ret)
{
        if ((aad == NULL && aad_len != 0) || (blob == NULL && blob_len != 0) || ret == NULL)
                KW_BAIL(KW_ERR_INPUT);
        if (aad_len > HSM_MAX_AAD)
                KW_BAIL(KW_ERR_TOO_LARGE);
        struct kw_reader rd = kw_reader_init(blob, blob_len);
        uint8_t ver = 0, mech = 0;
        if (blob_len > HSM_MAX_BLOB || !kw_ok(kw_read_u8(&rd, &ver)) ||
            !kw_ok(kw_read_u8(&rd, &mech)) || ver != HSM_BLOB_VERSION ||
            (mech != HSM_MECH_GCM && mech != HSM_MECH_KWP)) {
                kw_err_set_detail("not a sealed blob of version %d", HSM_BLOB_VERSION);
                KW_BAIL(KW_ERR_HSM_UNWRAP);
        }
        size_t body_len = kw_reader_left(&rd);
        const uint8_t *body = NULL;
        KW_TRY(kw_read_bytes(&rd, body_len, &body));
        int shape_ok = mech == HSM_MECH_GCM ? body_len >= HSM_GCM_IV + HSM_GCM_TAG
                                            : body_len >= 16 && body_len % 8 == 0;
        if (!shape_ok) {
                kw_err_set_detail("sealed blob truncated or malformed (%zu bytes)", blob_len);
                KW_BAIL(KW_ERR_HSM_UNWRAP);
        }
        struct lease l;
        KW_TRY(pool_acquire(h, &l));
        kw_result r = mech == HSM_MECH_GCM
                              ? unseal_gcm(h, &l, aad, aad_len, body, body_len, ret)
                              : unseal_kwp(h, &l, aad, aad_len, body, body_len, ret);
        pool_release(h, &l);
        return r;
}

kw_result kw_hsm_unseal(struct kw_hsm *h, const uint8_t *aad, size_t aad_len, const uint8_t *blob,
                        size_t blob_len, struct kw_secret *ret)
{
        KW_ENSURE(h != NULL, KW_ERR_INPUT);
        stat_inc(&h->calls);
        return count_result(h, hsm_unseal(h, aad, aad_len, blob, blob_len, ret));
}

static kw_result hsm_random(struct kw_hsm *h, uint8_t *buf, size_t n)
{
        if (buf == NULL && n != 0)
                KW_BAIL(KW_ERR_INPUT);
        if (n > HSM_MAX_RANDOM)
                KW_BAIL(KW_ERR_TOO_LARGE);
        if (n == 0)
                return KW_OK;
        uint8_t *tmp = malloc(n);
        KW_ENSURE(tmp != NULL, KW_ERR_NOMEM);
        struct lease l;
        kw_result r = pool_acquire(h, &l);
        if (r.code == 0) {
                CK_RV rv = h->f->C_GenerateRandom(l.s, tmp, n);
                if (rv != CKR_OK)
                        r = ck_fail(&l, "C_GenerateRandom", rv, CTX_PLAIN);
                pool_release(h, &l);
        }
        if (r.code == 0)
                memcpy(buf, tmp, n);
        kw_wipe(tmp, n);
        free(tmp);
        return r;
}

kw_result kw_hsm_random(struct kw_hsm *h, uint8_t *buf, size_t n)
{
        KW_ENSURE(h != NULL, KW_ERR_INPUT);
        stat_inc(&h->calls);
        return count_result(h, hsm_random(h, buf, n));
}

kw_result kw_hsm_check(struct kw_hsm *h, uint64_t *ret_us)
{
        KW_ENSURE(h != NULL, KW_ERR_INPUT);
        uint8_t pt[32];
        if (RAND_bytes(pt, sizeof pt) != 1)
                KW_BAIL(KW_ERR_RANDOM);
        uint64_t t0 = now_ns();
        struct kw_buf blob;
        kw_buf_init(&blob, 256);
        _cleanup_secret_ struct kw_secret back = { 0 };
        kw_result r = kw_hsm_seal(h, (const uint8_t *)HSM_CHECK_AAD, strlen(HSM_CHECK_AAD), pt,
                                  sizeof pt, &blob);
        if (r.code == 0)
                r = kw_hsm_unseal(h, (const uint8_t *)HSM_CHECK_AAD, strlen(HSM_CHECK_AAD),
                                  blob.p, blob.len, &back);
        if (r.code == 0 && (back.len != sizeof pt || CRYPTO_memcmp(back.p, pt, sizeof pt) != 0)) {
                kw_err_set_detail("HSM check: unsealed bytes differ from the sealed ones");
                r = KW_RESULT(KW_ERR_HSM);
                kw_trace(r.code, __FILE__, __LINE__);
        }
        uint64_t t1 = now_ns();
        kw_wipe(pt, sizeof pt);
        kw_buf_free(&blob);
        if (r.code == 0 && ret_us != NULL)
                *ret_us = (t1 - t0) / 1000;
        return r;
}

enum kw_hsm_state kw_hsm_state(const struct kw_hsm *h)
{
        if (h == NULL || __atomic_load_n(&h->down, __ATOMIC_ACQUIRE))
                return KW_HSM_DOWN;
        return pool_slow(h, now_ns()) ? KW_HSM_SLOW : KW_HSM_UP;
}

const char *kw_hsm_mechanism_name(const struct kw_hsm *h)
{
        return h != NULL && h->mech == HSM_MECH_GCM ? "AES-GCM" : "AES-KWP";
}

void kw_hsm_get_stats(const struct kw_hsm *h, struct kw_hsm_stats *ret)
{
        if (ret == NULL)
                return;
        if (h == NULL) {
                *ret = (struct kw_hsm_stats){ 0 };
                return;
        }
        ret->calls = __atomic_load_n(&h->calls, __ATOMIC_RELAXED);
        ret->errors = __atomic_load_n(&h->errors, __ATOMIC_RELAXED);
        ret->timeouts = __atomic_load_n(&h->timeouts, __ATOMIC_RELAXED);
        ret->reconnects = __atomic_load_n(&h->reconnects, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------------ */
/* open: PIN, module, token, sessions, master key                           */
/* ------------------------------------------------------------------------ */

/* PIN = file content with one trailing "\n" or "\r\n" removed; never empty. */
KW_MUST_USE static kw_result read_pin(const char *path, struct kw_secret *ret)
{
        char what[PATH_MAX + 16];
        snprintf(what, sizeof what, "the PIN file %s", path);
        kw_result r = kw_read_secret_file(path, what, HSM_MAX_PIN, ret);
        if (r.code == KW_ERR_BAD_LENGTH)
                KW_BAIL(KW_ERR_HSM_PIN);
        return r;
}

/* Trimmed token label of ti into out (NUL-terminated). */
static void label_text(const CK_UTF8CHAR label[HSM_LABEL_LEN], char out[HSM_LABEL_LEN + 1])
{
        size_t n = HSM_LABEL_LEN;
        while (n > 0 && (label[n - 1] == ' ' || label[n - 1] == '\0'))
                n--;
        for (size_t i = 0; i < n; i++)
                out[i] = (label[i] >= 0x20 && label[i] < 0x7f) ? (char)label[i] : '?';
        out[n] = '\0';
}

/* ------------------------------------------------------------------------ */
/* SoftHSM2: where it looks (for actionable start-up errors)                */
/* ------------------------------------------------------------------------ */

#define SOFTHSM_DEFAULT_CONF "/etc/softhsm/softhsm2.conf"     /* Debian's build */
#define SOFTHSM_DEFAULT_TOKENDIR "/var/lib/softhsm/tokens/"
#define SOFTHSM_CONF_MAX_LINES 1000

static int module_is_softhsm(const char *module) { return strcasestr(module, "softhsm") != NULL; }

/* directories.tokendir of a softhsm2.conf (SoftHSM2's syntax: "key = value"
 * lines, '#' comments); 0 and the built-in default when the file has none,
 * -1 (errno set) when it cannot be read. */
static int softhsm_tokendir(const char *conf, char *out, size_t outsz)
{
        FILE *f = fopen(conf, "re");
        if (f == NULL)
                return -1;
        snprintf(out, outsz, "%s", SOFTHSM_DEFAULT_TOKENDIR);
        char line[1024];
        for (int i = 0; i < SOFTHSM_CONF_MAX_LINES && fgets(line, sizeof line, f) != NULL; i++) {
                char *p = line + strspn(line, " \t");
                if (strncmp(p, "directories.tokendir", 20) != 0) /* lint: allow (a config key name) */
                        continue;
                p += 20 + strspn(p + 20, " \t");
                if (*p != '=')
                        continue;
                p += 1 + strspn(p + 1, " \t");
                size_t n = strcspn(p, "\r\n#");
                while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
                        n--;
                snprintf(out, outsz, "%.*s", (int)n, p);
        }
        fclose(f);
        return 0;
}

/*
 * One sentence on what SoftHSM2 was told to use and what is wrong with it:
 * is SOFTHSM2_CONF set, can that file be read, can its tokendir be used.
 * token_missing: the module started but has no token with our label.
 */
static void softhsm_hint(const struct kw_hsm *h, int token_missing, char *out, size_t outsz)
{
        const char *env = getenv("SOFTHSM2_CONF");
        int set = env != NULL && env[0] != '\0';
        const char *conf = set ? env : SOFTHSM_DEFAULT_CONF;
        char from[PATH_MAX + 64], dir[PATH_MAX], eb[96];
        if (set)
                snprintf(from, sizeof from, "SOFTHSM2_CONF=%s", conf);
        else
                snprintf(from, sizeof from, "SOFTHSM2_CONF is not set, default %s", conf);
        if (softhsm_tokendir(conf, dir, sizeof dir) != 0) {
                snprintf(out, outsz, "SoftHSM2 cannot read its configuration (%s: %s): set "
                         "SOFTHSM2_CONF to the softhsm2.conf of the token", from,
                         strerror_r(errno, eb, sizeof eb));
                return;
        }
        if (access(dir, R_OK | W_OK | X_OK) != 0) {
                snprintf(out, outsz, "SoftHSM2 cannot use its tokendir %s (%s; %s): fix "
                         "directories.tokendir or the directory's permissions", dir,
                         strerror_r(errno, eb, sizeof eb), from);
                return;
        }
        if (token_missing)
                snprintf(out, outsz, "SoftHSM2 keeps its tokens in %s (%s): point SOFTHSM2_CONF "
                         "at the softhsm2.conf of the token, or create the token (softhsm2-util "
                         "--init-token --free --label '%s')", dir, from, h->token_label);
        else
                snprintf(out, outsz, "SoftHSM2's configuration (%s) and tokendir %s are "
                         "readable: check the file's syntax (softhsm2-util --show-slots with the "
                         "same SOFTHSM2_CONF)", from, dir);
}

/* The slot whose token label equals h->padded_label. */
KW_MUST_USE static kw_result find_slot(struct kw_hsm *h, CK_SLOT_ID *ret)
{
        CK_SLOT_ID *slots = NULL;
        CK_ULONG n = 0;
        CK_RV rv;
        for (int tries = 0; tries < 4; tries++) {
                rv = h->f->C_GetSlotList(CK_TRUE, NULL, &n);
                if (rv != CKR_OK)
                        return ck_fail(NULL, "C_GetSlotList", rv, CTX_PLAIN);
                free(slots);
                slots = calloc(n ? n : 1, sizeof *slots);
                KW_ENSURE(slots != NULL, KW_ERR_NOMEM);
                rv = h->f->C_GetSlotList(CK_TRUE, slots, &n);
                if (rv != CKR_BUFFER_TOO_SMALL)
                        break;
        }
        if (rv != CKR_OK) {
                free(slots);
                return ck_fail(NULL, "C_GetSlotList", rv, CTX_PLAIN);
        }
        char seen[192] = "";
        size_t seen_len = 0;
        for (CK_ULONG i = 0; i < n; i++) {
                CK_TOKEN_INFO ti;
                memset(&ti, 0, sizeof ti);
                if (h->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK ||
                    !(ti.flags & CKF_TOKEN_INITIALIZED))
                        continue;
                if (memcmp(ti.label, h->padded_label, HSM_LABEL_LEN) == 0) {
                        *ret = slots[i];
                        free(slots);
                        return KW_OK;
                }
                char lt[HSM_LABEL_LEN + 1];
                label_text(ti.label, lt);
                if (seen_len < sizeof seen) {
                        int k = snprintf(seen + seen_len, sizeof seen - seen_len, "%s'%s'",
                                         seen_len ? ", " : "", lt);
                        seen_len = k < 0 ? sizeof seen : seen_len + (size_t)k;
                }
        }
        free(slots);
        char hint[PATH_MAX * 2 + 256] = "";
        if (module_is_softhsm(h->module))
                softhsm_hint(h, 1, hint, sizeof hint);
        kw_err_set_detail("no token labelled '%s' in %s; tokens: %s%s%s", h->token_label, h->module,
                          seen_len ? seen : "none", hint[0] ? "; " : "", hint);
        KW_BAIL(KW_ERR_HSM_TOKEN);
}

KW_MUST_USE static kw_result login(struct kw_hsm *h, CK_SESSION_HANDLE s)
{
        CK_RV rv = h->f->C_Login(s, CKU_USER, h->pin.p, h->pin.len);
        switch (rv) {
        case CKR_OK:
        case CKR_USER_ALREADY_LOGGED_IN:
                return KW_OK;
        case CKR_PIN_INCORRECT:
        case CKR_PIN_LEN_RANGE:
        case CKR_PIN_INVALID:
                kw_err_set_detail("the HSM rejected the PIN in %s (%s)", h->pin_file, ck_name(rv));
                KW_BAIL(KW_ERR_HSM_PIN);
        case CKR_PIN_LOCKED:
        case CKR_PIN_EXPIRED:
                kw_err_set_detail("PIN locked: the user PIN of token '%s' is locked or expired (%s)",
                                  h->token_label, ck_name(rv));
                KW_BAIL(KW_ERR_HSM_PIN);
        default:
                return ck_fail(NULL, "C_Login", rv, CTX_PLAIN);
        }
}

/* Finds the one AES secret key labelled h->key_label; *ret_n = 0 or 1. */
KW_MUST_USE static kw_result find_key(struct kw_hsm *h, CK_SESSION_HANDLE s,
                                      CK_OBJECT_HANDLE *ret, int *ret_n)
{
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE kt = CKK_AES;
        CK_ATTRIBUTE t[] = {
                { CKA_CLASS, &cls, sizeof cls },
                { CKA_KEY_TYPE, &kt, sizeof kt },
                { CKA_LABEL, h->key_label, strlen(h->key_label) },
        };
        CK_RV rv = h->f->C_FindObjectsInit(s, t, sizeof t / sizeof t[0]);
        if (rv != CKR_OK)
                return ck_fail(NULL, "C_FindObjectsInit", rv, CTX_PLAIN);
        CK_OBJECT_HANDLE found[2];
        CK_ULONG n = 0;
        rv = h->f->C_FindObjects(s, found, 2, &n);
        CK_RV frv = h->f->C_FindObjectsFinal(s);
        if (rv != CKR_OK)
                return ck_fail(NULL, "C_FindObjects", rv, CTX_PLAIN);
        if (frv != CKR_OK)
                return ck_fail(NULL, "C_FindObjectsFinal", frv, CTX_PLAIN);
        if (n > 1) {
                kw_err_set_detail("more than one AES key labelled '%s' on token '%s': ambiguous",
                                  h->key_label, h->token_label);
                KW_BAIL(KW_ERR_HSM_NO_MASTER_KEY);
        }
        if (n == 1)
                *ret = found[0];
        *ret_n = (int)n;
        return KW_OK;
}

/* The master key must never leave the HSM in clear. */
KW_MUST_USE static kw_result verify_key(struct kw_hsm *h, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k)
{
        CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE;
        CK_ATTRIBUTE t[] = {
                { CKA_SENSITIVE, &sensitive, sizeof sensitive },
                { CKA_EXTRACTABLE, &extractable, sizeof extractable },
        };
        CK_RV rv = h->f->C_GetAttributeValue(s, k, t, 2);
        if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE)
                return ck_fail(NULL, "C_GetAttributeValue", rv, CTX_PLAIN);
        if (rv != CKR_OK || t[0].ulValueLen != sizeof sensitive ||
            t[1].ulValueLen != sizeof extractable || sensitive != CK_TRUE ||
            extractable != CK_FALSE) {
                kw_err_set_detail("master key '%s' on token '%s' is not sensitive or is "
                                  "extractable: refusing it", h->key_label, h->token_label);
                KW_BAIL(KW_ERR_HSM_NO_MASTER_KEY);
        }
        return KW_OK;
}

KW_MUST_USE static kw_result create_key(struct kw_hsm *h, CK_SESSION_HANDLE s,
                                        CK_OBJECT_HANDLE *ret)
{
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ULONG len = 32;
        uint8_t id[16];
        if (RAND_bytes(id, sizeof id) != 1)
                KW_BAIL(KW_ERR_RANDOM);
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE kt = CKK_AES;
        CK_ATTRIBUTE t[] = {
                { CKA_CLASS, &cls, sizeof cls },       { CKA_KEY_TYPE, &kt, sizeof kt },
                { CKA_VALUE_LEN, &len, sizeof len },   { CKA_TOKEN, &yes, sizeof yes },
                { CKA_PRIVATE, &yes, sizeof yes },     { CKA_SENSITIVE, &yes, sizeof yes },
                { CKA_EXTRACTABLE, &no, sizeof no },   { CKA_ENCRYPT, &yes, sizeof yes },
                { CKA_DECRYPT, &yes, sizeof yes },     { CKA_WRAP, &yes, sizeof yes },
                { CKA_UNWRAP, &yes, sizeof yes },
                { CKA_LABEL, h->key_label, strlen(h->key_label) },
                { CKA_ID, id, sizeof id },
        };
        CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
        CK_RV rv = h->f->C_GenerateKey(s, &m, t, sizeof t / sizeof t[0], ret);
        if (rv != CKR_OK)
                return ck_fail(NULL, "C_GenerateKey(AES-256 master key)", rv, CTX_PLAIN);
        return KW_OK;
}

/* Finds (or, when allowed, creates) and verifies the master key. */
KW_MUST_USE static kw_result get_key(struct kw_hsm *h, CK_SESSION_HANDLE s, int create,
                                     CK_OBJECT_HANDLE *ret, int *ret_created)
{
        CK_OBJECT_HANDLE k = CK_INVALID_HANDLE;
        int n = 0, created = 0;
        KW_TRY(find_key(h, s, &k, &n));
        if (n == 0) {
                if (!create) {
                        kw_err_set_detail("no AES master key labelled '%s' on token '%s'",
                                          h->key_label, h->token_label);
                        KW_BAIL(KW_ERR_HSM_NO_MASTER_KEY);
                }
                KW_TRY(create_key(h, s, &k));
                created = 1;
        }
        KW_TRY(verify_key(h, s, k));
        *ret = k;
        *ret_created = created;
        return KW_OK;
}

static int mech_has(struct kw_hsm *h, CK_SLOT_ID slot, CK_MECHANISM_TYPE m, CK_FLAGS need)
{
        CK_MECHANISM_INFO mi;
        memset(&mi, 0, sizeof mi); /* SoftHSM2 only ORs flags into it */
        return h->f->C_GetMechanismInfo(slot, m, &mi) == CKR_OK && (mi.flags & need) == need;
}

/* A seal + unseal with the current mechanism choice. */
KW_MUST_USE static kw_result probe(struct kw_hsm *h)
{
        uint64_t us;
        return kw_hsm_check(h, &us);
}

/*
 * GCM when offered, else RFC 5649 (native, or over AES-ECB); the choice is
 * probed with a seal + unseal.  The KWP variant is fixed here whatever the
 * choice, so that KWP blobs stay readable when a module later offers GCM.
 */
KW_MUST_USE static kw_result choose_mechanism(struct kw_hsm *h)
{
        const CK_FLAGS ed = CKF_ENCRYPT | CKF_DECRYPT;
        int kwp_native = mech_has(h, h->slot, CKM_AES_KEY_WRAP_PAD, ed);
        int ecb = mech_has(h, h->slot, CKM_AES_ECB, ed);
        h->kwp_ecb = !kwp_native && ecb;
        if (mech_has(h, h->slot, CKM_AES_GCM, ed)) {
                h->mech = HSM_MECH_GCM;
                kw_result r = probe(h);
                if (r.code != KW_ERR_HSM_MECHANISM)
                        return r;
        }
        h->mech = HSM_MECH_KWP;
        if (!kwp_native && !ecb) {
                kw_err_set_detail("%s offers neither AES-GCM nor AES-KWP (nor AES-ECB) "
                                  "encryption", h->module);
                KW_BAIL(KW_ERR_HSM_MECHANISM);
        }
        kw_result r = probe(h);
        if (r.code == KW_ERR_HSM_MECHANISM && !h->kwp_ecb && ecb) {
                h->kwp_ecb = 1; /* native KWP refused with this key: compute RFC 5649 here */
                r = probe(h);
        }
        return r;
}

/* Closes every session handle we hold (errors ignored: the link may be gone). */
static void close_sessions(struct kw_hsm *h)
{
        for (unsigned i = 0; i < h->nsess; i++) {
                if (h->sess[i].s != CK_INVALID_HANDLE)
                        (void)h->f->C_CloseSession(h->sess[i].s);
                h->sess[i].s = CK_INVALID_HANDLE;
        }
}

/*
 * Slot, sessions, login, master key into h (no lock: used at open and by the
 * retry thread while it holds every session).  On failure, the sessions it
 * opened are closed again.
 */
KW_MUST_USE static kw_result connect_token(struct kw_hsm *h, int create, int *ret_created)
{
        CK_SLOT_ID slot;
        KW_TRY(find_slot(h, &slot));
        kw_result r = KW_OK;
        for (unsigned i = 0; i < h->nsess; i++) {
                CK_RV rv = h->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
                                               NULL, &h->sess[i].s);
                if (rv != CKR_OK) {
                        h->sess[i].s = CK_INVALID_HANDLE;
                        KW_TRY_GOTO(r, ck_fail(NULL, "C_OpenSession", rv, CTX_PLAIN), fail);
                }
        }
        KW_TRY_GOTO(r, login(h, h->sess[0].s), fail);
        CK_OBJECT_HANDLE key;
        int created = 0;
        KW_TRY_GOTO(r, get_key(h, h->sess[0].s, create, &key, &created), fail);
        pthread_mutex_lock(&h->mu);
        h->slot = slot;
        h->key = key;
        pthread_mutex_unlock(&h->mu);
        if (ret_created != NULL)
                *ret_created = created;
        return KW_OK;
fail:
        close_sessions(h);
        return r;
}

/* ------------------------------------------------------------------------ */
/* reconnect thread                                                         */
/* ------------------------------------------------------------------------ */

static void reconnect(struct kw_hsm *h)
{
        pthread_mutex_lock(&h->mu);
        if (!__atomic_load_n(&h->down, __ATOMIC_ACQUIRE) || h->stop) {
                pthread_mutex_unlock(&h->mu);
                return;
        }
        for (unsigned i = 0; i < h->nsess; i++) {
                if (h->sess[i].busy) { /* a call still runs: try at the next tick */
                        pthread_mutex_unlock(&h->mu);
                        return;
                }
        }
        for (unsigned i = 0; i < h->nsess; i++)
                h->sess[i].busy = 1; /* hold every session: nobody is in the module */
        int reinit = h->need_reinit;
        pthread_mutex_unlock(&h->mu);

        kw_err_clear_detail();
        close_sessions(h);
        kw_result r = KW_OK;
        if (reinit) {
                /* the second and later attempts start the module afresh */
                if (h->initialized)
                        (void)p11_kit_module_finalize(h->f);
                h->initialized = 0;
                CK_RV rv = p11_kit_module_initialize(h->f);
                if (rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED)
                        h->initialized = 1;
                else
                        r = ck_fail(NULL, "C_Initialize", rv, CTX_PLAIN);
        }
        if (r.code == 0)
                r = connect_token(h, 0, NULL);

        pthread_mutex_lock(&h->mu);
        if (r.code == 0) {
                h->failed_attempts = 0;
                h->need_reinit = 0;
                h->down_reason[0] = '\0';
                __atomic_store_n(&h->down, 0, __ATOMIC_RELEASE);
                stat_inc(&h->reconnects);
        } else {
                h->failed_attempts++;
                h->need_reinit = 1;
                snprintf(h->down_reason, sizeof h->down_reason, "reconnect attempt %u failed: %s",
                         h->failed_attempts, kw_err_detail());
        }
        for (unsigned i = 0; i < h->nsess; i++)
                h->sess[i].busy = 0;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
}

static void *retry_thread(void *arg)
{
        struct kw_hsm *h = arg;
        pthread_mutex_lock(&h->mu);
        while (!h->stop) {
                struct timespec ts = deadline_after_ms(h->retry_ms);
                int rc = pthread_cond_timedwait(&h->thr_cv, &h->mu, &ts);
                (void)rc; /* timeout or a wake-up: both re-check the state */
                if (h->stop)
                        break;
                if (__atomic_load_n(&h->down, __ATOMIC_ACQUIRE)) {
                        pthread_mutex_unlock(&h->mu);
                        reconnect(h);
                        pthread_mutex_lock(&h->mu);
                }
        }
        pthread_mutex_unlock(&h->mu);
        return NULL;
}

/* ------------------------------------------------------------------------ */
/* open / close                                                             */
/* ------------------------------------------------------------------------ */

KW_MUST_USE static kw_result check_config(const struct kw_hsm_config *cfg)
{
        if (cfg == NULL || cfg->module == NULL || cfg->module[0] == '\0' ||
            cfg->token_label == NULL || cfg->token_label[0] == '\0' || cfg->pin_file == NULL ||
            cfg->pin_file[0] == '\0' || cfg->master_key_label == NULL ||
            cfg->master_key_label[0] == '\0') {
                kw_err_set_detail("hsm: module, token_label, pin_file and master_key_label are "
                                  "required");
                KW_BAIL(KW_ERR_CONFIG);
        }
        if (strlen(cfg->token_label) > HSM_LABEL_LEN) {
                kw_err_set_detail("hsm: token_label is longer than %d bytes", HSM_LABEL_LEN);
                KW_BAIL(KW_ERR_CONFIG);
        }
        if (strlen(cfg->master_key_label) > 128) {
                kw_err_set_detail("hsm: master_key_label is longer than 128 bytes");
                KW_BAIL(KW_ERR_CONFIG);
        }
        if (cfg->sessions < 1 || cfg->sessions > HSM_MAX_SESSIONS || cfg->timeout_ms < 1 ||
            cfg->timeout_ms > 3600000 || cfg->retry_interval_ms < 1 ||
            cfg->retry_interval_ms > 3600000) {
                kw_err_set_detail("hsm: sessions must be 1..%u, timeout_ms and retry_interval_ms "
                                  "1..3600000", HSM_MAX_SESSIONS);
                KW_BAIL(KW_ERR_CONFIG);
        }
        return KW_OK;
}

static void hsm_destroy(struct kw_hsm *h)
{
        if (h == NULL)
                return;
        if (h->thr_started) {
                pthread_mutex_lock(&h->mu);
                h->stop = 1;
                pthread_cond_broadcast(&h->thr_cv);
                pthread_mutex_unlock(&h->mu);
                pthread_join(h->thr, NULL);
        }
        if (h->f != NULL) {
                if (h->sess != NULL)
                        close_sessions(h);
                if (h->initialized)
                        (void)p11_kit_module_finalize(h->f);
                p11_kit_module_release(h->f);
        }
        kw_secret_free(&h->pin);
        free(h->sess);
        free(h->module);
        free(h->token_label);
        free(h->key_label);
        free(h->pin_file);
        pthread_cond_destroy(&h->thr_cv);
        pthread_cond_destroy(&h->cv);
        pthread_mutex_destroy(&h->mu);
        free(h);
}

/* Allocates h with its pool and copies of the configuration strings. */
KW_MUST_USE static kw_result hsm_alloc(const struct kw_hsm_config *cfg, struct kw_hsm **ret)
{
        struct kw_hsm *h = calloc(1, sizeof *h);
        KW_ENSURE(h != NULL, KW_ERR_NOMEM);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_mutex_init(&h->mu, NULL);
        pthread_cond_init(&h->cv, &ca);
        pthread_cond_init(&h->thr_cv, &ca);
        pthread_condattr_destroy(&ca);
        h->nsess = cfg->sessions;
        h->timeout_ms = cfg->timeout_ms;
        h->retry_ms = cfg->retry_interval_ms;
        h->sess = calloc(h->nsess, sizeof *h->sess);
        h->module = strdup(cfg->module);
        h->token_label = strdup(cfg->token_label);
        h->key_label = strdup(cfg->master_key_label);
        h->pin_file = strdup(cfg->pin_file);
        if (h->sess == NULL || h->module == NULL || h->token_label == NULL ||
            h->key_label == NULL || h->pin_file == NULL) {
                hsm_destroy(h);
                KW_BAIL(KW_ERR_NOMEM);
        }
        for (unsigned i = 0; i < h->nsess; i++)
                h->sess[i].s = CK_INVALID_HANDLE;
        memset(h->padded_label, ' ', sizeof h->padded_label);
        memcpy(h->padded_label, cfg->token_label, strlen(cfg->token_label));
        *ret = h;
        return KW_OK;
}

/* p11-kit resolves relative paths against its own module directory. */
KW_MUST_USE static kw_result load_module(struct kw_hsm *h)
{
        char *abs = NULL;
        if (h->module[0] != '/') {
                char *cwd = getcwd(NULL, 0);
                if (cwd == NULL || asprintf(&abs, "%s/%s", cwd, h->module) < 0)
                        abs = NULL;
                free(cwd);
                KW_ENSURE(abs != NULL, KW_ERR_NOMEM);
        }
        h->f = p11_kit_module_load(abs != NULL ? abs : h->module, 0);
        free(abs);
        if (h->f == NULL) {
                const char *msg = p11_kit_message();
                kw_err_set_detail("cannot load the PKCS#11 module %s: %s", h->module,
                                  msg != NULL ? msg : "unknown error");
                KW_BAIL(KW_ERR_HSM_MODULE);
        }
        CK_RV rv = p11_kit_module_initialize(h->f);
        if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
                char hint[PATH_MAX * 2 + 256];
                if (module_is_softhsm(h->module))
                        softhsm_hint(h, 0, hint, sizeof hint);
                else
                        snprintf(hint, sizeof hint, "the module did not start: check its own "
                                 "configuration (file, environment) and its log (often syslog)");
                kw_err_set_detail("C_Initialize of %s returned %s; %s", h->module, ck_name(rv), hint);
                KW_BAIL(KW_ERR_HSM_MODULE);
        }
        h->initialized = 1;
        return KW_OK;
}

KW_MUST_USE static kw_result start_thread(struct kw_hsm *h)
{
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old); /* signals stay with the main thread */
        int rc = pthread_create(&h->thr, NULL, retry_thread, h);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0) {
                kw_err_set_detail("cannot start the HSM retry thread: %s", strerror(rc));
                KW_BAIL(KW_ERR_INTERNAL);
        }
        h->thr_started = 1;
        return KW_OK;
}

kw_result kw_hsm_open(const struct kw_hsm_config *cfg, struct kw_hsm **ret, int *ret_created)
{
        KW_ENSURE(ret != NULL, KW_ERR_INPUT);
        KW_TRY(check_config(cfg));
        struct kw_hsm *h = NULL;
        KW_TRY(hsm_alloc(cfg, &h));
        kw_result r;
        int created = 0;
        KW_TRY_GOTO(r, read_pin(cfg->pin_file, &h->pin), fail);
        KW_TRY_GOTO(r, load_module(h), fail);
        KW_TRY_GOTO(r, connect_token(h, cfg->create_master_key, &created), fail);
        KW_TRY_GOTO(r, choose_mechanism(h), fail);
        h->calls = h->errors = h->timeouts = h->reconnects = 0; /* the probe does not count */
        KW_TRY_GOTO(r, start_thread(h), fail);
        if (ret_created != NULL)
                *ret_created = created;
        *ret = h;
        return KW_OK;
fail:
        hsm_destroy(h);
        return r;
}

void kw_hsm_close(struct kw_hsm *h)
{
        hsm_destroy(h);
}
