/*
 * p11init.c - the HSM link at provisioning (p11init.h).
 */
#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#include "../server/common/err.h"
#include "p11init.h"

#define MAX_SLOTS 64

struct p11 {
        void *lib;
        CK_FUNCTION_LIST_PTR f;
        bool initialized;
};

static kw_result p11_fail(int code, const char *what, CK_RV rv)
{
        kw_err_set_detail("PKCS#11 %s: CKR 0x%lx", what, (unsigned long)rv);
        KW_BAIL(code);
}

static void p11_close(struct p11 *p)
{
        if (p->initialized)
                (void)p->f->C_Finalize(NULL);
        if (p->lib != NULL)
                dlclose(p->lib);
        memset(p, 0, sizeof *p);
}

KW_MUST_USE static kw_result p11_open(const char *module, struct p11 *p)
{
        memset(p, 0, sizeof *p);
        p->lib = dlopen(module, RTLD_NOW | RTLD_LOCAL);
        if (p->lib == NULL) {
                kw_err_set_detail("the PKCS#11 module %s cannot be loaded: %s", module, dlerror());
                KW_BAIL(KW_ERR_HSM_MODULE);
        }
        CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(p->lib, "C_GetFunctionList");
        if (gfl == NULL || gfl(&p->f) != CKR_OK || p->f == NULL) {
                p11_close(p);
                kw_err_set_detail("%s is not a PKCS#11 module (no C_GetFunctionList)", module);
                KW_BAIL(KW_ERR_HSM_MODULE);
        }
        CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
        CK_RV rv = p->f->C_Initialize(&args);
        if (rv != CKR_OK) {
                p11_close(p);
                return p11_fail(KW_ERR_HSM_MODULE, "C_Initialize", rv);
        }
        p->initialized = true;
        return KW_OK;
}

/* The label as PKCS#11 stores it: 32 bytes, blank-padded. */
static void pad_label(const char *label, CK_UTF8CHAR out[32])
{
        size_t n = strlen(label);
        memset(out, ' ', 32);
        memcpy(out, label, n > 32 ? 32 : n);
}

/* The slot whose token has this label (*ret_found), and a free slot (an
 * uninitialised token) in *ret_free when there is one. */
KW_MUST_USE static kw_result find_slots(struct p11 *p, const char *label, CK_SLOT_ID *ret_slot,
                                        bool *ret_found, CK_SLOT_ID *ret_free, bool *ret_has_free)
{
        CK_SLOT_ID slots[MAX_SLOTS];
        CK_ULONG n = MAX_SLOTS;
        CK_RV rv = p->f->C_GetSlotList(CK_TRUE, slots, &n);
        if (rv != CKR_OK)
                return p11_fail(KW_ERR_HSM, "C_GetSlotList", rv);
        CK_UTF8CHAR want[32];
        pad_label(label, want);
        *ret_found = false;
        *ret_has_free = false;
        for (CK_ULONG i = 0; i < n; i++) {
                CK_TOKEN_INFO ti;
                if (p->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
                        continue;
                if (!(ti.flags & CKF_TOKEN_INITIALIZED)) {
                        if (!*ret_has_free)
                                *ret_free = slots[i], *ret_has_free = true;
                        continue;
                }
                if (memcmp(ti.label, want, 32) == 0 && !*ret_found)
                        *ret_slot = slots[i], *ret_found = true;
        }
        return KW_OK;
}

KW_MUST_USE static kw_result login(struct p11 *p, CK_SLOT_ID slot, CK_USER_TYPE who, const char *pin)
{
        CK_SESSION_HANDLE s;
        CK_RV rv = p->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
        if (rv != CKR_OK)
                return p11_fail(KW_ERR_HSM, "C_OpenSession", rv);
        rv = p->f->C_Login(s, who, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)strlen(pin));
        if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
                (void)p->f->C_CloseSession(s);
                if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED || rv == CKR_PIN_LEN_RANGE) {
                        kw_err_set_detail("the token refuses the PIN (CKR 0x%lx: %s)", (unsigned long)rv,
                                          rv == CKR_PIN_LOCKED ? "locked" : "incorrect");
                        KW_BAIL(KW_ERR_HSM_PIN);
                }
                return p11_fail(KW_ERR_HSM, "C_Login", rv);
        }
        (void)p->f->C_Logout(s);
        (void)p->f->C_CloseSession(s);
        return KW_OK;
}

kw_result kwp_p11_init_token(const char *module, const char *label, const char *so_pin, const char *pin)
{
        KW_ENSURE(module != NULL && label != NULL && so_pin != NULL && pin != NULL, KW_ERR_INPUT);
        struct p11 p;
        KW_TRY(p11_open(module, &p));
        CK_SLOT_ID slot = 0, free_slot = 0;
        bool found = false, has_free = false;
        kw_result r = find_slots(&p, label, &slot, &found, &free_slot, &has_free);
        if (r.code == 0 && found) {
                r = login(&p, slot, CKU_USER, pin);
                p11_close(&p);
                return r;
        }
        if (r.code == 0 && !has_free) {
                kw_err_set_detail("the module %s has no free slot to make the token %s in", module, label);
                r = KW_RESULT(KW_ERR_HSM_TOKEN);
        }
        if (r.code != 0) {
                p11_close(&p);
                return r;
        }
        CK_UTF8CHAR lab[32];
        pad_label(label, lab);
        CK_RV rv = p.f->C_InitToken(free_slot, (CK_UTF8CHAR_PTR)so_pin, (CK_ULONG)strlen(so_pin), lab);
        if (rv != CKR_OK) {
                p11_close(&p);
                return p11_fail(KW_ERR_HSM, "C_InitToken", rv);
        }
        /* the new token may be in another slot now (SoftHSM2 renumbers) */
        r = find_slots(&p, label, &slot, &found, &free_slot, &has_free);
        if (r.code == 0 && !found) {
                kw_err_set_detail("the token %s is not listed after C_InitToken", label);
                r = KW_RESULT(KW_ERR_HSM_TOKEN);
        }
        CK_SESSION_HANDLE s = 0;
        if (r.code == 0 && (rv = p.f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                                    &s)) != CKR_OK)
                r = p11_fail(KW_ERR_HSM, "C_OpenSession", rv);
        if (r.code == 0) {
                rv = p.f->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR)so_pin, (CK_ULONG)strlen(so_pin));
                if (rv == CKR_OK)
                        rv = p.f->C_InitPIN(s, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)strlen(pin));
                if (rv != CKR_OK)
                        r = p11_fail(KW_ERR_HSM, "C_Login(SO) / C_InitPIN", rv);
                (void)p.f->C_Logout(s);
                (void)p.f->C_CloseSession(s);
        }
        if (r.code == 0)
                r = login(&p, slot, CKU_USER, pin);
        p11_close(&p);
        return r;
}

kw_result kwp_p11_check_login(const char *module, const char *label, const char *pin)
{
        KW_ENSURE(module != NULL && label != NULL && pin != NULL, KW_ERR_INPUT);
        struct p11 p;
        KW_TRY(p11_open(module, &p));
        CK_SLOT_ID slot = 0, free_slot = 0;
        bool found = false, has_free = false;
        kw_result r = find_slots(&p, label, &slot, &found, &free_slot, &has_free);
        if (r.code == 0 && !found) {
                kw_err_set_detail("the module %s has no token labelled %s", module, label);
                r = KW_RESULT(KW_ERR_HSM_TOKEN);
        }
        if (r.code == 0)
                r = login(&p, slot, CKU_USER, pin);
        p11_close(&p);
        return r;
}
