/*
 * faulthsm.c - a fault-injecting PKCS#11 module for tests.
 *
 * A real module over a real one: it dlopen()s the module named by
 * KEYWARD_FAULTHSM_MODULE (default /usr/lib/softhsm/libsofthsm2.so) and
 * forwards every call through its own CK_FUNCTION_LIST.  Before each call it
 * consults the control file named by KEYWARD_FAULTHSM_CTL (re-read when its
 * inode, mtime or size changed, checked at most every 50 ms).  Lines:
 *
 *   mode=up          forward everything (the default, also without a file)
 *   mode=down        every call returns CKR_DEVICE_REMOVED, except
 *                    C_Initialize, C_Finalize and C_GetFunctionList
 *   mode=reset       a device reset: from when the line is first seen, every
 *                    call except those three returns CKR_CRYPTOKI_NOT_INITIALIZED
 *                    until the caller runs C_Initialize again
 *   delay_ms=N       sleep N ms before forwarding each crypto call
 *                    (C_Encrypt*, C_Decrypt*, C_GenerateKey, C_FindObjects*)
 *   fail=C_X:CKR_Y   every call of C_X returns CKR_Y (name or 0x hex) while
 *                    the line is present; up to 8 such lines
 *   nogcm=1          the module does not offer CKM_AES_GCM: C_GetMechanismInfo
 *                    and C_EncryptInit/C_DecryptInit with it return
 *                    CKR_MECHANISM_INVALID, C_GetMechanismList omits it
 *
 * Unknown lines are ignored.  Built as build/libfaulthsm.so by the Makefile.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <p11-kit/pkcs11.h>

#define FH_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define FH_RECHECK_NS (50ull * 1000 * 1000)
#define FH_MAX_FAILS 8

enum fh_kind { FH_PLAIN = 0, FH_CRYPTO = 1, FH_ALWAYS = 2 };

struct fh_fail {
        char fn[40];
        CK_RV rv;
};

struct fh_ctl {
        int down;
        int reset;
        int nogcm;
        unsigned delay_ms;
        unsigned nfails;
        struct fh_fail fails[FH_MAX_FAILS];
};

static pthread_mutex_t fh_mu = PTHREAD_MUTEX_INITIALIZER;
static struct fh_ctl fh_cur;               /* guarded by fh_mu */
static unsigned long long fh_last_check;   /* monotonic ns, guarded by fh_mu */
static struct stat fh_last_st;             /* guarded by fh_mu */
static int fh_have_st;                     /* guarded by fh_mu */
static unsigned long fh_init_gen;          /* C_Initialize count, guarded by fh_mu */
static unsigned long fh_reset_gen;         /* fh_init_gen when mode=reset began */
static void *fh_dl;                        /* guarded by fh_mu */
static CK_FUNCTION_LIST *fh_real;          /* set once under fh_mu */

static const struct {
        const char *name;
        CK_RV rv;
} fh_rv_names[] = {
        { "CKR_OK", CKR_OK },
        { "CKR_HOST_MEMORY", CKR_HOST_MEMORY },
        { "CKR_SLOT_ID_INVALID", CKR_SLOT_ID_INVALID },
        { "CKR_GENERAL_ERROR", CKR_GENERAL_ERROR },
        { "CKR_FUNCTION_FAILED", CKR_FUNCTION_FAILED },
        { "CKR_ARGUMENTS_BAD", CKR_ARGUMENTS_BAD },
        { "CKR_DEVICE_ERROR", CKR_DEVICE_ERROR },
        { "CKR_DEVICE_MEMORY", CKR_DEVICE_MEMORY },
        { "CKR_DEVICE_REMOVED", CKR_DEVICE_REMOVED },
        { "CKR_ENCRYPTED_DATA_INVALID", CKR_ENCRYPTED_DATA_INVALID },
        { "CKR_ENCRYPTED_DATA_LEN_RANGE", CKR_ENCRYPTED_DATA_LEN_RANGE },
        { "CKR_FUNCTION_CANCELED", CKR_FUNCTION_CANCELED },
        { "CKR_KEY_HANDLE_INVALID", CKR_KEY_HANDLE_INVALID },
        { "CKR_MECHANISM_INVALID", CKR_MECHANISM_INVALID },
        { "CKR_OPERATION_ACTIVE", CKR_OPERATION_ACTIVE },
        { "CKR_PIN_INCORRECT", CKR_PIN_INCORRECT },
        { "CKR_PIN_LOCKED", CKR_PIN_LOCKED },
        { "CKR_SESSION_CLOSED", CKR_SESSION_CLOSED },
        { "CKR_SESSION_COUNT", CKR_SESSION_COUNT },
        { "CKR_SESSION_HANDLE_INVALID", CKR_SESSION_HANDLE_INVALID },
        { "CKR_TOKEN_NOT_PRESENT", CKR_TOKEN_NOT_PRESENT },
        { "CKR_TOKEN_NOT_RECOGNIZED", CKR_TOKEN_NOT_RECOGNIZED },
        { "CKR_USER_NOT_LOGGED_IN", CKR_USER_NOT_LOGGED_IN },
        { "CKR_CRYPTOKI_NOT_INITIALIZED", CKR_CRYPTOKI_NOT_INITIALIZED },
};

static unsigned long long fh_now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static int fh_parse_rv(const char *s, CK_RV *ret)
{
        for (size_t i = 0; i < sizeof fh_rv_names / sizeof fh_rv_names[0]; i++) {
                if (strcmp(s, fh_rv_names[i].name) == 0) {
                        *ret = fh_rv_names[i].rv;
                        return 1;
                }
        }
        if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
                char *end = NULL;
                errno = 0;
                unsigned long v = strtoul(s + 2, &end, 16);
                if (errno == 0 && end != s + 2 && *end == '\0') {
                        *ret = v;
                        return 1;
                }
        }
        return 0;
}

static void fh_parse_line(char *line, struct fh_ctl *c)
{
        size_t n = strlen(line);
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
                line[--n] = '\0';
        while (*line == ' ' || *line == '\t')
                line++;
        if (strcmp(line, "mode=down") == 0) {
                c->down = 1;
                c->reset = 0;
        } else if (strcmp(line, "mode=reset") == 0) {
                c->reset = 1;
                c->down = 0;
        } else if (strcmp(line, "mode=up") == 0) {
                c->down = 0;
                c->reset = 0;
        } else if (strcmp(line, "nogcm=1") == 0) {
                c->nogcm = 1;
        } else if (strcmp(line, "nogcm=0") == 0) {
                c->nogcm = 0;
        } else if (strncmp(line, "delay_ms=", 9) == 0) {
                char *end = NULL;
                unsigned long v = strtoul(line + 9, &end, 10);
                if (end != line + 9 && *end == '\0' && v <= 600000)
                        c->delay_ms = (unsigned)v;
        } else if (strncmp(line, "fail=", 5) == 0 && c->nfails < FH_MAX_FAILS) {
                char *colon = strchr(line + 5, ':');
                CK_RV rv;
                if (colon == NULL || (size_t)(colon - (line + 5)) >= sizeof c->fails[0].fn)
                        return;
                *colon = '\0';
                if (!fh_parse_rv(colon + 1, &rv))
                        return;
                struct fh_fail *f = &c->fails[c->nfails++];
                snprintf(f->fn, sizeof f->fn, "%s", line + 5);
                f->rv = rv;
        }
}

/* Re-reads the control file when it changed; caller holds fh_mu. */
static void fh_refresh_locked(void)
{
        unsigned long long now = fh_now_ns();
        if (fh_last_check != 0 && now - fh_last_check < FH_RECHECK_NS)
                return;
        fh_last_check = now;
        const char *path = getenv("KEYWARD_FAULTHSM_CTL");
        struct stat st;
        if (path == NULL || path[0] == '\0' || stat(path, &st) != 0) {
                memset(&fh_cur, 0, sizeof fh_cur);
                fh_have_st = 0;
                return;
        }
        if (fh_have_st && st.st_ino == fh_last_st.st_ino && st.st_dev == fh_last_st.st_dev &&
            st.st_size == fh_last_st.st_size &&
            st.st_mtim.tv_sec == fh_last_st.st_mtim.tv_sec &&
            st.st_mtim.tv_nsec == fh_last_st.st_mtim.tv_nsec)
                return;
        FILE *f = fopen(path, "re");
        if (f == NULL)
                return; /* keep the previous state; retried at the next check */
        struct fh_ctl c;
        memset(&c, 0, sizeof c);
        char line[256];
        while (fgets(line, sizeof line, f) != NULL)
                fh_parse_line(line, &c);
        fclose(f);
        if (c.reset && !fh_cur.reset)
                fh_reset_gen = fh_init_gen; /* the "device" forgets the current init */
        fh_cur = c;
        fh_last_st = st;
        fh_have_st = 1;
}

/* CKR_OK: forward the call.  Anything else: return it instead. */
static CK_RV fh_gate(const char *fn, enum fh_kind kind)
{
        pthread_mutex_lock(&fh_mu);
        fh_refresh_locked();
        struct fh_ctl c = fh_cur;
        int forgotten = c.reset && fh_init_gen == fh_reset_gen;
        pthread_mutex_unlock(&fh_mu);
        if (kind == FH_ALWAYS)
                return fh_real != NULL ? CKR_OK : CKR_GENERAL_ERROR;
        if (fh_real == NULL)
                return CKR_CRYPTOKI_NOT_INITIALIZED;
        if (c.down)
                return CKR_DEVICE_REMOVED;
        if (forgotten)
                return CKR_CRYPTOKI_NOT_INITIALIZED;
        for (unsigned i = 0; i < c.nfails; i++)
                if (strcmp(c.fails[i].fn, fn) == 0)
                        return c.fails[i].rv;
        if (kind == FH_CRYPTO && c.delay_ms > 0) {
                struct timespec ts = { (time_t)(c.delay_ms / 1000),
                                       (long)(c.delay_ms % 1000) * 1000000L };
                while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
                        ;
        }
        return CKR_OK;
}

static int fh_nogcm(void)
{
        pthread_mutex_lock(&fh_mu);
        fh_refresh_locked();
        int v = fh_cur.nogcm;
        pthread_mutex_unlock(&fh_mu);
        return v;
}

/* Loads the real module once; CKR_OK when fh_real is set. */
static CK_RV fh_load(void)
{
        CK_RV rv = CKR_OK;
        pthread_mutex_lock(&fh_mu);
        if (fh_real == NULL) {
                const char *path = getenv("KEYWARD_FAULTHSM_MODULE");
                if (path == NULL || path[0] == '\0')
                        path = FH_DEFAULT_MODULE;
                fh_dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
                CK_RV (*gfl)(CK_FUNCTION_LIST_PTR_PTR) = NULL;
                if (fh_dl != NULL)
                        *(void **)&gfl = dlsym(fh_dl, "C_GetFunctionList");
                CK_FUNCTION_LIST *real = NULL;
                if (gfl == NULL || gfl(&real) != CKR_OK || real == NULL) {
                        if (fh_dl != NULL)
                                dlclose(fh_dl);
                        fh_dl = NULL;
                        rv = CKR_GENERAL_ERROR;
                } else {
                        fh_real = real;
                }
        }
        pthread_mutex_unlock(&fh_mu);
        return rv;
}

__attribute__((destructor)) static void fh_unload(void)
{
        if (fh_dl != NULL)
                dlclose(fh_dl);
        fh_dl = NULL;
        fh_real = NULL;
}

/* One forwarding function: gate first, then the real module. */
#define FH_FWD(kind, name, params, args)                      \
        static CK_RV fh_##name params                         \
        {                                                     \
                CK_RV rv_ = fh_gate(#name, kind);             \
                if (rv_ != CKR_OK)                            \
                        return rv_;                           \
                return fh_real->name args;                    \
        }

static CK_RV fh_C_Initialize(void *init_args)
{
        CK_RV rv = fh_load();
        if (rv != CKR_OK)
                return rv;
        rv = fh_gate("C_Initialize", FH_ALWAYS);
        if (rv != CKR_OK)
                return rv;
        rv = fh_real->C_Initialize(init_args);
        if (rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
                pthread_mutex_lock(&fh_mu);
                fh_init_gen++;
                pthread_mutex_unlock(&fh_mu);
        }
        return rv;
}
FH_FWD(FH_ALWAYS, C_Finalize, (void *reserved), (reserved))
FH_FWD(FH_PLAIN, C_GetInfo, (CK_INFO_PTR info), (info))
FH_FWD(FH_PLAIN, C_GetSlotList, (CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count),
       (present, list, count))
FH_FWD(FH_PLAIN, C_GetSlotInfo, (CK_SLOT_ID slot, CK_SLOT_INFO_PTR info), (slot, info))
FH_FWD(FH_PLAIN, C_GetTokenInfo, (CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info), (slot, info))
FH_FWD(FH_PLAIN, C_WaitForSlotEvent, (CK_FLAGS flags, CK_SLOT_ID_PTR slot, void *reserved),
       (flags, slot, reserved))

static CK_RV fh_C_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list,
                                   CK_ULONG_PTR count)
{
        CK_RV rv = fh_gate("C_GetMechanismList", FH_PLAIN);
        if (rv != CKR_OK)
                return rv;
        if (!fh_nogcm())
                return fh_real->C_GetMechanismList(slot, list, count);
        /* Without GCM: ask for the full list, drop it, report the rest. */
        CK_ULONG n = 0;
        rv = fh_real->C_GetMechanismList(slot, NULL, &n);
        if (rv != CKR_OK)
                return rv;
        CK_MECHANISM_TYPE *all = calloc(n ? n : 1, sizeof *all);
        if (all == NULL)
                return CKR_HOST_MEMORY;
        rv = fh_real->C_GetMechanismList(slot, all, &n);
        CK_ULONG k = 0;
        for (CK_ULONG i = 0; rv == CKR_OK && i < n; i++)
                if (all[i] != CKM_AES_GCM)
                        all[k++] = all[i];
        if (rv == CKR_OK) {
                if (list != NULL && *count < k)
                        rv = CKR_BUFFER_TOO_SMALL;
                else if (list != NULL)
                        memcpy(list, all, k * sizeof *all);
                *count = k;
        }
        free(all);
        return rv;
}

static CK_RV fh_C_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
                                   CK_MECHANISM_INFO_PTR info)
{
        CK_RV rv = fh_gate("C_GetMechanismInfo", FH_PLAIN);
        if (rv != CKR_OK)
                return rv;
        if (type == CKM_AES_GCM && fh_nogcm())
                return CKR_MECHANISM_INVALID;
        return fh_real->C_GetMechanismInfo(slot, type, info);
}

FH_FWD(FH_PLAIN, C_InitToken, (CK_SLOT_ID slot, CK_UTF8CHAR_PTR pin, CK_ULONG len,
                               CK_UTF8CHAR_PTR label), (slot, pin, len, label))
FH_FWD(FH_PLAIN, C_InitPIN, (CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR pin, CK_ULONG len),
       (s, pin, len))
FH_FWD(FH_PLAIN, C_SetPIN, (CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR o, CK_ULONG ol,
                            CK_UTF8CHAR_PTR n, CK_ULONG nl), (s, o, ol, n, nl))
FH_FWD(FH_PLAIN, C_OpenSession, (CK_SLOT_ID slot, CK_FLAGS flags, void *app, CK_NOTIFY notify,
                                 CK_SESSION_HANDLE_PTR s), (slot, flags, app, notify, s))
FH_FWD(FH_PLAIN, C_CloseSession, (CK_SESSION_HANDLE s), (s))
FH_FWD(FH_PLAIN, C_CloseAllSessions, (CK_SLOT_ID slot), (slot))
FH_FWD(FH_PLAIN, C_GetSessionInfo, (CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR info), (s, info))
FH_FWD(FH_PLAIN, C_GetOperationState, (CK_SESSION_HANDLE s, CK_BYTE_PTR st, CK_ULONG_PTR len),
       (s, st, len))
FH_FWD(FH_PLAIN, C_SetOperationState, (CK_SESSION_HANDLE s, CK_BYTE_PTR st, CK_ULONG len,
                                       CK_OBJECT_HANDLE ek, CK_OBJECT_HANDLE ak),
       (s, st, len, ek, ak))
FH_FWD(FH_PLAIN, C_Login, (CK_SESSION_HANDLE s, CK_USER_TYPE u, CK_UTF8CHAR_PTR pin, CK_ULONG len),
       (s, u, pin, len))
FH_FWD(FH_PLAIN, C_Logout, (CK_SESSION_HANDLE s), (s))
FH_FWD(FH_PLAIN, C_CreateObject, (CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                                  CK_OBJECT_HANDLE_PTR o), (s, t, n, o))
FH_FWD(FH_PLAIN, C_CopyObject, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t,
                                CK_ULONG n, CK_OBJECT_HANDLE_PTR no), (s, o, t, n, no))
FH_FWD(FH_PLAIN, C_DestroyObject, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o), (s, o))
FH_FWD(FH_PLAIN, C_GetObjectSize, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ULONG_PTR n),
       (s, o, n))
FH_FWD(FH_PLAIN, C_GetAttributeValue, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                                       CK_ATTRIBUTE_PTR t, CK_ULONG n), (s, o, t, n))
FH_FWD(FH_PLAIN, C_SetAttributeValue, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                                       CK_ATTRIBUTE_PTR t, CK_ULONG n), (s, o, t, n))
FH_FWD(FH_CRYPTO, C_FindObjectsInit, (CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n),
       (s, t, n))
FH_FWD(FH_CRYPTO, C_FindObjects, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE_PTR o, CK_ULONG max,
                                  CK_ULONG_PTR n), (s, o, max, n))
FH_FWD(FH_CRYPTO, C_FindObjectsFinal, (CK_SESSION_HANDLE s), (s))

static CK_RV fh_C_EncryptInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
{
        CK_RV rv = fh_gate("C_EncryptInit", FH_CRYPTO);
        if (rv != CKR_OK)
                return rv;
        if (m != NULL && m->mechanism == CKM_AES_GCM && fh_nogcm())
                return CKR_MECHANISM_INVALID;
        return fh_real->C_EncryptInit(s, m, k);
}
FH_FWD(FH_CRYPTO, C_Encrypt, (CK_SESSION_HANDLE s, CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR e,
                              CK_ULONG_PTR el), (s, d, dl, e, el))
FH_FWD(FH_CRYPTO, C_EncryptUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR d, CK_ULONG dl,
                                    CK_BYTE_PTR e, CK_ULONG_PTR el), (s, d, dl, e, el))
FH_FWD(FH_CRYPTO, C_EncryptFinal, (CK_SESSION_HANDLE s, CK_BYTE_PTR e, CK_ULONG_PTR el),
       (s, e, el))

static CK_RV fh_C_DecryptInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
{
        CK_RV rv = fh_gate("C_DecryptInit", FH_CRYPTO);
        if (rv != CKR_OK)
                return rv;
        if (m != NULL && m->mechanism == CKM_AES_GCM && fh_nogcm())
                return CKR_MECHANISM_INVALID;
        return fh_real->C_DecryptInit(s, m, k);
}
FH_FWD(FH_CRYPTO, C_Decrypt, (CK_SESSION_HANDLE s, CK_BYTE_PTR e, CK_ULONG el, CK_BYTE_PTR d,
                              CK_ULONG_PTR dl), (s, e, el, d, dl))
FH_FWD(FH_CRYPTO, C_DecryptUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR e, CK_ULONG el,
                                    CK_BYTE_PTR d, CK_ULONG_PTR dl), (s, e, el, d, dl))
FH_FWD(FH_CRYPTO, C_DecryptFinal, (CK_SESSION_HANDLE s, CK_BYTE_PTR d, CK_ULONG_PTR dl),
       (s, d, dl))
FH_FWD(FH_PLAIN, C_DigestInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m), (s, m))
FH_FWD(FH_PLAIN, C_Digest, (CK_SESSION_HANDLE s, CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR o,
                            CK_ULONG_PTR ol), (s, d, dl, o, ol))
FH_FWD(FH_PLAIN, C_DigestUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR d, CK_ULONG dl), (s, d, dl))
FH_FWD(FH_PLAIN, C_DigestKey, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k), (s, k))
FH_FWD(FH_PLAIN, C_DigestFinal, (CK_SESSION_HANDLE s, CK_BYTE_PTR o, CK_ULONG_PTR ol), (s, o, ol))
FH_FWD(FH_PLAIN, C_SignInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k),
       (s, m, k))
FH_FWD(FH_PLAIN, C_Sign, (CK_SESSION_HANDLE s, CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR o,
                          CK_ULONG_PTR ol), (s, d, dl, o, ol))
FH_FWD(FH_PLAIN, C_SignUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR d, CK_ULONG dl), (s, d, dl))
FH_FWD(FH_PLAIN, C_SignFinal, (CK_SESSION_HANDLE s, CK_BYTE_PTR o, CK_ULONG_PTR ol), (s, o, ol))
FH_FWD(FH_PLAIN, C_SignRecoverInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k),
       (s, m, k))
FH_FWD(FH_PLAIN, C_SignRecover, (CK_SESSION_HANDLE s, CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR o,
                                 CK_ULONG_PTR ol), (s, d, dl, o, ol))
FH_FWD(FH_PLAIN, C_VerifyInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k),
       (s, m, k))
FH_FWD(FH_PLAIN, C_Verify, (CK_SESSION_HANDLE s, CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR sig,
                            CK_ULONG sl), (s, d, dl, sig, sl))
FH_FWD(FH_PLAIN, C_VerifyUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR d, CK_ULONG dl), (s, d, dl))
FH_FWD(FH_PLAIN, C_VerifyFinal, (CK_SESSION_HANDLE s, CK_BYTE_PTR sig, CK_ULONG sl), (s, sig, sl))
FH_FWD(FH_PLAIN, C_VerifyRecoverInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                                       CK_OBJECT_HANDLE k), (s, m, k))
FH_FWD(FH_PLAIN, C_VerifyRecover, (CK_SESSION_HANDLE s, CK_BYTE_PTR sig, CK_ULONG sl,
                                   CK_BYTE_PTR d, CK_ULONG_PTR dl), (s, sig, sl, d, dl))
FH_FWD(FH_CRYPTO, C_DigestEncryptUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR d, CK_ULONG dl,
                                          CK_BYTE_PTR e, CK_ULONG_PTR el), (s, d, dl, e, el))
FH_FWD(FH_CRYPTO, C_DecryptDigestUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR e, CK_ULONG el,
                                          CK_BYTE_PTR d, CK_ULONG_PTR dl), (s, e, el, d, dl))
FH_FWD(FH_CRYPTO, C_SignEncryptUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR d, CK_ULONG dl,
                                        CK_BYTE_PTR e, CK_ULONG_PTR el), (s, d, dl, e, el))
FH_FWD(FH_CRYPTO, C_DecryptVerifyUpdate, (CK_SESSION_HANDLE s, CK_BYTE_PTR e, CK_ULONG el,
                                          CK_BYTE_PTR d, CK_ULONG_PTR dl), (s, e, el, d, dl))
FH_FWD(FH_CRYPTO, C_GenerateKey, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t,
                                  CK_ULONG n, CK_OBJECT_HANDLE_PTR k), (s, m, t, n, k))
FH_FWD(FH_PLAIN, C_GenerateKeyPair, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                                     CK_ATTRIBUTE_PTR pt, CK_ULONG pn, CK_ATTRIBUTE_PTR vt,
                                     CK_ULONG vn, CK_OBJECT_HANDLE_PTR pk,
                                     CK_OBJECT_HANDLE_PTR vk), (s, m, pt, pn, vt, vn, pk, vk))
FH_FWD(FH_PLAIN, C_WrapKey, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE wk,
                             CK_OBJECT_HANDLE k, CK_BYTE_PTR o, CK_ULONG_PTR ol),
       (s, m, wk, k, o, ol))
FH_FWD(FH_PLAIN, C_UnwrapKey, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE uk,
                               CK_BYTE_PTR w, CK_ULONG wl, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                               CK_OBJECT_HANDLE_PTR k), (s, m, uk, w, wl, t, n, k))
FH_FWD(FH_PLAIN, C_DeriveKey, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE bk,
                               CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR k),
       (s, m, bk, t, n, k))
FH_FWD(FH_PLAIN, C_SeedRandom, (CK_SESSION_HANDLE s, CK_BYTE_PTR d, CK_ULONG dl), (s, d, dl))
FH_FWD(FH_PLAIN, C_GenerateRandom, (CK_SESSION_HANDLE s, CK_BYTE_PTR d, CK_ULONG dl), (s, d, dl))
FH_FWD(FH_PLAIN, C_GetFunctionStatus, (CK_SESSION_HANDLE s), (s))
FH_FWD(FH_PLAIN, C_CancelFunction, (CK_SESSION_HANDLE s), (s))

static CK_RV fh_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret);

static CK_FUNCTION_LIST fh_list = {
        .version = { 2, 40 },
        .C_Initialize = fh_C_Initialize,
        .C_Finalize = fh_C_Finalize,
        .C_GetInfo = fh_C_GetInfo,
        .C_GetFunctionList = fh_C_GetFunctionList,
        .C_GetSlotList = fh_C_GetSlotList,
        .C_GetSlotInfo = fh_C_GetSlotInfo,
        .C_GetTokenInfo = fh_C_GetTokenInfo,
        .C_GetMechanismList = fh_C_GetMechanismList,
        .C_GetMechanismInfo = fh_C_GetMechanismInfo,
        .C_InitToken = fh_C_InitToken,
        .C_InitPIN = fh_C_InitPIN,
        .C_SetPIN = fh_C_SetPIN,
        .C_OpenSession = fh_C_OpenSession,
        .C_CloseSession = fh_C_CloseSession,
        .C_CloseAllSessions = fh_C_CloseAllSessions,
        .C_GetSessionInfo = fh_C_GetSessionInfo,
        .C_GetOperationState = fh_C_GetOperationState,
        .C_SetOperationState = fh_C_SetOperationState,
        .C_Login = fh_C_Login,
        .C_Logout = fh_C_Logout,
        .C_CreateObject = fh_C_CreateObject,
        .C_CopyObject = fh_C_CopyObject,
        .C_DestroyObject = fh_C_DestroyObject,
        .C_GetObjectSize = fh_C_GetObjectSize,
        .C_GetAttributeValue = fh_C_GetAttributeValue,
        .C_SetAttributeValue = fh_C_SetAttributeValue,
        .C_FindObjectsInit = fh_C_FindObjectsInit,
        .C_FindObjects = fh_C_FindObjects,
        .C_FindObjectsFinal = fh_C_FindObjectsFinal,
        .C_EncryptInit = fh_C_EncryptInit,
        .C_Encrypt = fh_C_Encrypt,
        .C_EncryptUpdate = fh_C_EncryptUpdate,
        .C_EncryptFinal = fh_C_EncryptFinal,
        .C_DecryptInit = fh_C_DecryptInit,
        .C_Decrypt = fh_C_Decrypt,
        .C_DecryptUpdate = fh_C_DecryptUpdate,
        .C_DecryptFinal = fh_C_DecryptFinal,
        .C_DigestInit = fh_C_DigestInit,
        .C_Digest = fh_C_Digest,
        .C_DigestUpdate = fh_C_DigestUpdate,
        .C_DigestKey = fh_C_DigestKey,
        .C_DigestFinal = fh_C_DigestFinal,
        .C_SignInit = fh_C_SignInit,
        .C_Sign = fh_C_Sign,
        .C_SignUpdate = fh_C_SignUpdate,
        .C_SignFinal = fh_C_SignFinal,
        .C_SignRecoverInit = fh_C_SignRecoverInit,
        .C_SignRecover = fh_C_SignRecover,
        .C_VerifyInit = fh_C_VerifyInit,
        .C_Verify = fh_C_Verify,
        .C_VerifyUpdate = fh_C_VerifyUpdate,
        .C_VerifyFinal = fh_C_VerifyFinal,
        .C_VerifyRecoverInit = fh_C_VerifyRecoverInit,
        .C_VerifyRecover = fh_C_VerifyRecover,
        .C_DigestEncryptUpdate = fh_C_DigestEncryptUpdate,
        .C_DecryptDigestUpdate = fh_C_DecryptDigestUpdate,
        .C_SignEncryptUpdate = fh_C_SignEncryptUpdate,
        .C_DecryptVerifyUpdate = fh_C_DecryptVerifyUpdate,
        .C_GenerateKey = fh_C_GenerateKey,
        .C_GenerateKeyPair = fh_C_GenerateKeyPair,
        .C_WrapKey = fh_C_WrapKey,
        .C_UnwrapKey = fh_C_UnwrapKey,
        .C_DeriveKey = fh_C_DeriveKey,
        .C_SeedRandom = fh_C_SeedRandom,
        .C_GenerateRandom = fh_C_GenerateRandom,
        .C_GetFunctionStatus = fh_C_GetFunctionStatus,
        .C_CancelFunction = fh_C_CancelFunction,
        .C_WaitForSlotEvent = fh_C_WaitForSlotEvent,
};

static CK_RV fh_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret)
{
        if (ret == NULL)
                return CKR_ARGUMENTS_BAD;
        CK_RV rv = fh_load();
        if (rv != CKR_OK)
                return rv;
        *ret = &fh_list;
        return CKR_OK;
}

/* The one exported symbol. */
__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ret)
{
        return fh_C_GetFunctionList(ret);
}
