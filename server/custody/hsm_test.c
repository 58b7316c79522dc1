/*
 * hsm_test.c - the HSM link against a real SoftHSM2 token (created with
 * tests/softhsm-init.sh in a temporary directory) and against
 * build/libfaulthsm.so, which wraps the same SoftHSM2 and injects faults.
 *
 * Only one module instance is used at a time: SoftHSM2 is a process-wide
 * singleton, so a kw_hsm is closed before the raw PKCS#11 checks run.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>

#include "custody/hsm.h"

#define SOFTHSM "/usr/lib/softhsm/libsofthsm2.so"
#define TOKEN "kwtest"
#define PIN "1234"

static char tdir[256];
static char pin_path[300];
static char ctl_path[300];
static char faulthsm[512];

/* ---- helpers ---------------------------------------------------------- */

static void sleep_ms(unsigned ms)
{
        struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
                ;
}

static uint64_t mono_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void write_file(const char *path, const char *content)
{
        char tmp[400];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *f = fopen(tmp, "w");
        assert_non_null(f);
        assert_int_equal(fputs(content, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(rename(tmp, path), 0);
}

/* faulthsm re-reads its control file at most every 50 ms. */
static void set_ctl(const char *content)
{
        write_file(ctl_path, content);
        sleep_ms(150);
}

static struct kw_hsm_config cfg_for(const char *module, const char *key_label, int create)
{
        return (struct kw_hsm_config){
                .module = module,
                .token_label = TOKEN,
                .pin_file = pin_path,
                .master_key_label = key_label,
                .create_master_key = create,
                .sessions = 2,
                .timeout_ms = 2000,
                .retry_interval_ms = 100,
        };
}

static struct kw_hsm *open_ok(const struct kw_hsm_config *cfg, int *created)
{
        struct kw_hsm *h = NULL;
        kw_result r = kw_hsm_open(cfg, &h, created);
        if (r.code != 0)
                fprintf(stderr, "kw_hsm_open: %s: %s\n", kw_err_name(r.code), kw_err_detail());
        assert_int_equal(r.code, 0);
        assert_non_null(h);
        return h;
}

static void seal_ok(struct kw_hsm *h, const char *aad, const uint8_t *pt, size_t n,
                    struct kw_buf *out)
{
        kw_result r = kw_hsm_seal(h, (const uint8_t *)aad, strlen(aad), pt, n, out);
        if (r.code != 0)
                fprintf(stderr, "kw_hsm_seal: %s: %s\n", kw_err_name(r.code), kw_err_detail());
        assert_int_equal(r.code, 0);
}

static void unseal_expect(struct kw_hsm *h, const char *aad, const uint8_t *blob, size_t n,
                          const uint8_t *pt, size_t pt_len)
{
        struct kw_secret s = { 0 };
        kw_result r = kw_hsm_unseal(h, (const uint8_t *)aad, strlen(aad), blob, n, &s);
        if (r.code != 0)
                fprintf(stderr, "kw_hsm_unseal: %s: %s\n", kw_err_name(r.code), kw_err_detail());
        assert_int_equal(r.code, 0);
        assert_int_equal(s.len, pt_len);
        if (pt_len)
                assert_memory_equal(s.p, pt, pt_len);
        kw_secret_free(&s);
}

/* Unsealing fails with code and leaves the output secret untouched. */
static void unseal_fails(struct kw_hsm *h, const char *aad, const uint8_t *blob, size_t n,
                         int code)
{
        struct kw_secret s = { (uint8_t *)(uintptr_t)0x1, 77 };
        kw_result r = kw_hsm_unseal(h, (const uint8_t *)aad, strlen(aad), blob, n, &s);
        assert_int_equal(r.code, code);
        assert_true(s.p == (uint8_t *)(uintptr_t)0x1 && s.len == 77);
}

static void wait_state(struct kw_hsm *h, enum kw_hsm_state want, unsigned max_ms)
{
        uint64_t end = mono_ms() + max_ms;
        while (kw_hsm_state(h) != want && mono_ms() < end)
                sleep_ms(20);
        assert_int_equal(kw_hsm_state(h), want);
}

/* Raw PKCS#11 access to the test token (no kw_hsm open at the same time). */
struct raw {
        CK_FUNCTION_LIST *f;
        CK_SESSION_HANDLE s;
};

static void raw_open(struct raw *r)
{
        r->f = p11_kit_module_load(SOFTHSM, 0);
        assert_non_null(r->f);
        assert_int_equal(p11_kit_module_initialize(r->f), CKR_OK);
        CK_SLOT_ID slots[16];
        CK_ULONG n = 16;
        assert_int_equal(r->f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
        CK_UTF8CHAR want[32];
        memset(want, ' ', sizeof want);
        memcpy(want, TOKEN, strlen(TOKEN));
        int found = 0;
        for (CK_ULONG i = 0; i < n && !found; i++) {
                CK_TOKEN_INFO ti;
                if (r->f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
                    memcmp(ti.label, want, 32) == 0) {
                        assert_int_equal(r->f->C_OpenSession(slots[i],
                                                             CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                                             NULL, NULL, &r->s),
                                         CKR_OK);
                        found = 1;
                }
        }
        assert_true(found);
        CK_RV rv = r->f->C_Login(r->s, CKU_USER, (CK_UTF8CHAR_PTR)PIN, strlen(PIN));
        assert_true(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
}

static void raw_close(struct raw *r)
{
        r->f->C_CloseSession(r->s);
        p11_kit_module_finalize(r->f);
        p11_kit_module_release(r->f);
}

static CK_ULONG raw_find(struct raw *r, const char *label, CK_OBJECT_HANDLE *ret)
{
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof cls },
                             { CKA_LABEL, (void *)(uintptr_t)label, strlen(label) } };
        CK_OBJECT_HANDLE found[4];
        CK_ULONG n = 0;
        assert_int_equal(r->f->C_FindObjectsInit(r->s, t, 2), CKR_OK);
        assert_int_equal(r->f->C_FindObjects(r->s, found, 4, &n), CKR_OK);
        assert_int_equal(r->f->C_FindObjectsFinal(r->s), CKR_OK);
        if (n > 0 && ret != NULL)
                *ret = found[0];
        return n;
}

static void raw_make_aes_key(struct raw *r, const char *label, CK_BBOOL extractable)
{
        CK_BBOOL yes = CK_TRUE;
        CK_ULONG len = 32;
        CK_ATTRIBUTE t[] = {
                { CKA_VALUE_LEN, &len, sizeof len },     { CKA_TOKEN, &yes, 1 },
                { CKA_PRIVATE, &yes, 1 },                { CKA_SENSITIVE, &yes, 1 },
                { CKA_EXTRACTABLE, &extractable, 1 },    { CKA_ENCRYPT, &yes, 1 },
                { CKA_DECRYPT, &yes, 1 },
                { CKA_LABEL, (void *)(uintptr_t)label, strlen(label) },
        };
        CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
        CK_OBJECT_HANDLE k;
        assert_int_equal(r->f->C_GenerateKey(r->s, &m, t, sizeof t / sizeof t[0], &k), CKR_OK);
}

/* ---- fixture ---------------------------------------------------------- */

static int group_setup(void **state)
{
        (void)state;
        int locked;
        if (!kw_ok(kw_secret_init(1 << 20, &locked)))
                return -1;
        snprintf(tdir, sizeof tdir, "/tmp/kw-hsm-test.XXXXXX");
        if (mkdtemp(tdir) == NULL)
                return -1;
        const char *src = getenv("KW_SRCDIR");
        const char *bld = getenv("KW_BUILD");
        if (src == NULL || src[0] == '\0')
                src = ".";
        if (bld == NULL || bld[0] == '\0')
                bld = "build";
        char cmd[1400];
        snprintf(cmd, sizeof cmd, "'%s/tests/softhsm-init.sh' '%s' '%s' '%s'", src, tdir, TOKEN,
                 PIN);
        if (system(cmd) != 0)
                return -1;
        snprintf(cmd, sizeof cmd, "%s/softhsm2.conf", tdir);
        setenv("SOFTHSM2_CONF", cmd, 1);
        snprintf(pin_path, sizeof pin_path, "%s/pin", tdir);
        snprintf(ctl_path, sizeof ctl_path, "%s/faulthsm.ctl", tdir);
        setenv("KEYWARD_FAULTHSM_CTL", ctl_path, 1);
        setenv("KEYWARD_FAULTHSM_MODULE", SOFTHSM, 1);
        snprintf(faulthsm, sizeof faulthsm, "%s/libfaulthsm.so", bld);
        if (access(faulthsm, R_OK) != 0) {
                snprintf(cmd, sizeof cmd,
                         "mkdir -p '%s' && gcc -O2 -Wall -Wextra -Werror -D_GNU_SOURCE "
                         "$(pkg-config --cflags p11-kit-1) -fPIC -shared "
                         "'%s/tests/faulthsm/faulthsm.c' -ldl -pthread -o '%s'",
                         bld, src, faulthsm);
                if (system(cmd) != 0)
                        return -1;
        }
        write_file(ctl_path, "mode=up\n");
        return 0;
}

static int group_teardown(void **state)
{
        (void)state;
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tdir);
        return system(cmd) == 0 ? 0 : -1;
}

/* ---- open: master key ------------------------------------------------- */

static void hsm_open_absent_key_creates_then_finds_it(void **state)
{
        (void)state;
        struct kw_hsm_config cfg = cfg_for(SOFTHSM, "mk-create", 1);
        int created = -1;
        struct kw_hsm *h = open_ok(&cfg, &created);
        assert_int_equal(created, 1);
        assert_string_equal(kw_hsm_mechanism_name(h), "AES-GCM");
        assert_int_equal(kw_hsm_state(h), KW_HSM_UP);
        kw_hsm_close(h);
        created = -1;
        h = open_ok(&cfg, &created);
        assert_int_equal(created, 0);
        kw_hsm_close(h);
        cfg.create_master_key = 0;
        h = open_ok(&cfg, NULL);
        kw_hsm_close(h);

        struct raw r;
        raw_open(&r);
        assert_int_equal(raw_find(&r, "mk-create", NULL), 1); /* exactly one key */
        raw_close(&r);
}

static void hsm_open_created_key_is_sensitive_and_not_extractable(void **state)
{
        (void)state;
        struct kw_hsm_config cfg = cfg_for(SOFTHSM, "mk-attrs", 1);
        kw_hsm_close(open_ok(&cfg, NULL));

        struct raw r;
        raw_open(&r);
        CK_OBJECT_HANDLE k = CK_INVALID_HANDLE;
        assert_int_equal(raw_find(&r, "mk-attrs", &k), 1);
        CK_BBOOL sens = 0, extr = 1, tok = 0, priv = 0, enc = 0, wrap = 0;
        CK_ULONG vlen = 0;
        CK_KEY_TYPE kt = 0;
        CK_ATTRIBUTE t[] = {
                { CKA_SENSITIVE, &sens, 1 }, { CKA_EXTRACTABLE, &extr, 1 },
                { CKA_TOKEN, &tok, 1 },      { CKA_PRIVATE, &priv, 1 },
                { CKA_ENCRYPT, &enc, 1 },    { CKA_WRAP, &wrap, 1 },
                { CKA_VALUE_LEN, &vlen, sizeof vlen }, { CKA_KEY_TYPE, &kt, sizeof kt },
        };
        assert_int_equal(r.f->C_GetAttributeValue(r.s, k, t, sizeof t / sizeof t[0]), CKR_OK);
        assert_int_equal(sens, CK_TRUE);
        assert_int_equal(extr, CK_FALSE);
        assert_int_equal(tok, CK_TRUE);
        assert_int_equal(priv, CK_TRUE);
        assert_int_equal(enc, CK_TRUE);
        assert_int_equal(wrap, CK_TRUE);
        assert_int_equal(vlen, 32);
        assert_int_equal(kt, CKK_AES);
        uint8_t v[32];
        CK_ATTRIBUTE va = { CKA_VALUE, v, sizeof v };
        assert_int_equal(r.f->C_GetAttributeValue(r.s, k, &va, 1), CKR_ATTRIBUTE_SENSITIVE);
        raw_close(&r);
}

static void hsm_open_absent_key_without_create_fails(void **state)
{
        (void)state;
        struct kw_hsm_config cfg = cfg_for(SOFTHSM, "mk-absent", 0);
        struct kw_hsm *h = NULL;
        int created = 5;
        assert_int_equal(kw_hsm_open(&cfg, &h, &created).code, KW_ERR_HSM_NO_MASTER_KEY);
        assert_null(h);
        assert_int_equal(created, 5);
        assert_non_null(strstr(kw_err_detail(), "mk-absent"));
        assert_non_null(strstr(kw_err_detail(), TOKEN));

        struct raw r;
        raw_open(&r);
        assert_int_equal(raw_find(&r, "mk-absent", NULL), 0); /* nothing created */
        raw_close(&r);
}

static void hsm_open_extractable_key_fails(void **state)
{
        (void)state;
        struct raw r;
        raw_open(&r);
        raw_make_aes_key(&r, "mk-extractable", CK_TRUE);
        raw_close(&r);
        struct kw_hsm_config cfg = cfg_for(SOFTHSM, "mk-extractable", 1);
        struct kw_hsm *h = NULL;
        assert_int_equal(kw_hsm_open(&cfg, &h, NULL).code, KW_ERR_HSM_NO_MASTER_KEY);
        assert_null(h);
        assert_non_null(strstr(kw_err_detail(), "extractable"));
        raw_open(&r);
        assert_int_equal(raw_find(&r, "mk-extractable", NULL), 1); /* no second key made */
        raw_close(&r);
}

static void hsm_open_ambiguous_key_label_fails(void **state)
{
        (void)state;
        struct raw r;
        raw_open(&r);
        raw_make_aes_key(&r, "mk-dup", CK_FALSE);
        raw_make_aes_key(&r, "mk-dup", CK_FALSE);
        raw_close(&r);
        struct kw_hsm_config cfg = cfg_for(SOFTHSM, "mk-dup", 1);
        struct kw_hsm *h = NULL;
        assert_int_equal(kw_hsm_open(&cfg, &h, NULL).code, KW_ERR_HSM_NO_MASTER_KEY);
        assert_null(h);
        assert_non_null(strstr(kw_err_detail(), "ambiguous"));
}

/* ---- open: module, token, PIN, config --------------------------------- */

static void hsm_open_missing_module_fails(void **state)
{
        (void)state;
        struct kw_hsm_config cfg = cfg_for("/nonexistent/libnothere.so", "mk", 1);
        struct kw_hsm *h = NULL;
        assert_int_equal(kw_hsm_open(&cfg, &h, NULL).code, KW_ERR_HSM_MODULE);
        assert_null(h);
        assert_non_null(strstr(kw_err_detail(), "/nonexistent/libnothere.so"));
        assert_non_null(strstr(kw_err_detail(), "No such file"));
}

static void hsm_open_unknown_token_fails(void **state)
{
        (void)state;
        struct kw_hsm_config cfg = cfg_for(SOFTHSM, "mk", 1);
        cfg.token_label = "no-such-token";
        struct kw_hsm *h = NULL;
        assert_int_equal(kw_hsm_open(&cfg, &h, NULL).code, KW_ERR_HSM_TOKEN);
        assert_null(h);
        assert_non_null(strstr(kw_err_detail(), "no-such-token"));
        assert_non_null(strstr(kw_err_detail(), "'" TOKEN "'")); /* lists what exists */
        /* and says where SoftHSM2 looked (issue 10) */
        char want[600];
        snprintf(want, sizeof want, "SoftHSM2 keeps its tokens in %s/tokens (SOFTHSM2_CONF=%s)",
                 tdir, getenv("SOFTHSM2_CONF"));
        if (strstr(kw_err_detail(), want) == NULL)
                fail_msg("'%s' does not contain '%s'", kw_err_detail(), want);
        assert_non_null(strstr(kw_err_detail(), "softhsm2-util --init-token --free --label "
                                                "'no-such-token'"));
}

static void hsm_open_wrong_pin_fails(void **state)
{
        (void)state;
        char path[400];
        snprintf(path, sizeof path, "%s/wrong-pin", tdir);
        write_file(path, "9999\n");
        struct kw_hsm_config cfg = cfg_for(SOFTHSM, "mk", 1);
        cfg.pin_file = path;
        struct kw_hsm *h = NULL;
        assert_int_equal(kw_hsm_open(&cfg, &h, NULL).code, KW_ERR_HSM_PIN);
        assert_null(h);
        assert_non_null(strstr(kw_err_detail(), "CKR_PIN_INCORRECT"));
        assert_non_null(strstr(kw_err_detail(), path));
        assert_null(strstr(kw_err_detail(), "9999")); /* never the PIN itself */
}

static void hsm_open_pin_file_newlines_are_stripped(void **state)
{
        (void)state;
        char path[400];
        snprintf(path, sizeof path, "%s/crlf-pin", tdir);
        write_file(path, PIN "\r\n");
        struct kw_hsm_config cfg = cfg_for(SOFTHSM, "mk-pin", 1);
        cfg.pin_file = path;
        kw_hsm_close(open_ok(&cfg, NULL));
        write_file(path, PIN "\n");
        kw_hsm_close(open_ok(&cfg, NULL));
        write_file(path, PIN "\n\n"); /* only one newline is stripped */
        struct kw_hsm *h = NULL;
        assert_int_equal(kw_hsm_open(&cfg, &h, NULL).code, KW_ERR_HSM_PIN);
        assert_null(h);
}

static void hsm_open_empty_pin_fails(void **state)
{
        (void)state;
        char path[400];
        snprintf(path, sizeof path, "%s/blank", tdir);
        write_file(path, "\n");
        struct kw_hsm_config cfg = cfg_for(SOFTHSM, "mk", 1);
        cfg.pin_file = path;
        struct kw_hsm *h = NULL;
        assert_int_equal(kw_hsm_open(&cfg, &h, NULL).code, KW_ERR_HSM_PIN);
        assert_null(h);
        assert_non_null(strstr(kw_err_detail(), "empty"));
}

static void hsm_open_unreadable_pin_file_fails(void **state)
{
        (void)state;
        char path[400];
        snprintf(path, sizeof path, "%s/no-such-pin-file", tdir);
        struct kw_hsm_config cfg = cfg_for(SOFTHSM, "mk", 1);
        cfg.pin_file = path;
        struct kw_hsm *h = NULL;
        assert_int_equal(kw_hsm_open(&cfg, &h, NULL).code, KW_ERR_IO);
        assert_null(h);
        assert_non_null(strstr(kw_err_detail(), path));
}

static void hsm_open_bad_config_fails(void **state)
{
        (void)state;
        struct kw_hsm *h = NULL;
        struct kw_hsm_config cfg = cfg_for(SOFTHSM, "mk", 1);
        cfg.sessions = 0;
        assert_int_equal(kw_hsm_open(&cfg, &h, NULL).code, KW_ERR_CONFIG);
        cfg = cfg_for(SOFTHSM, "mk", 1);
        cfg.token_label = "a-token-label-that-is-longer-than-32-bytes";
        assert_int_equal(kw_hsm_open(&cfg, &h, NULL).code, KW_ERR_CONFIG);
        cfg = cfg_for(SOFTHSM, NULL, 1);
        assert_int_equal(kw_hsm_open(&cfg, &h, NULL).code, KW_ERR_CONFIG);
        assert_int_equal(kw_hsm_open(NULL, &h, NULL).code, KW_ERR_CONFIG);
        assert_null(h);
}

/* ---- seal / unseal (AES-GCM) ------------------------------------------ */

static void hsm_seal_unseal_round_trip(void **state)
{
        (void)state;
        struct kw_hsm_config cfg = cfg_for(SOFTHSM, "mk-seal", 1);
        struct kw_hsm *h = open_ok(&cfg, NULL);
        static const size_t lens[] = { 0, 1, 15, 16, 32, 1000 };
        uint8_t pt[1000];
        for (size_t i = 0; i < sizeof pt; i++)
                pt[i] = (uint8_t)(i * 7 + 3);
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
                struct kw_buf b;
                kw_buf_init(&b, 4096);
                seal_ok(h, i % 2 ? "" : "key:alpha:v1", pt, lens[i], &b);
                assert_int_equal(b.len, 2 + 12 + lens[i] + 16);
                assert_int_equal(b.p[0], 1);
                assert_int_equal(b.p[1], 1);
                unseal_expect(h, i % 2 ? "" : "key:alpha:v1", b.p, b.len, pt, lens[i]);
                kw_buf_free(&b);
        }
        /* two seals of the same input differ (fresh IV) */
        struct kw_buf b1, b2;
        kw_buf_init(&b1, 4096);
        kw_buf_init(&b2, 4096);
        seal_ok(h, "a", pt, 32, &b1);
        seal_ok(h, "a", pt, 32, &b2);
        assert_int_equal(b1.len, b2.len);
        assert_memory_not_equal(b1.p, b2.p, b1.len);
        /* seal appends */
        size_t before = b1.len;
        seal_ok(h, "a", pt, 5, &b1);
        assert_int_equal(b1.len, before + 2 + 12 + 5 + 16);
        unseal_expect(h, "a", b1.p + before, b1.len - before, pt, 5);
        kw_buf_free(&b1);
        kw_buf_free(&b2);
        struct kw_hsm_stats st;
        kw_hsm_get_stats(h, &st);
        assert_true(st.calls >= 16);
        assert_int_equal(st.errors, 0);
        kw_hsm_close(h);
}

static void hsm_unseal_wrong_aad_fails(void **state)
{
        (void)state;
        struct kw_hsm_config cfg = cfg_for(SOFTHSM, "mk-seal", 1);
        struct kw_hsm *h = open_ok(&cfg, NULL);
        const uint8_t pt[32] = { 1, 2, 3 };
        struct kw_buf b;
        kw_buf_init(&b, 4096);
        seal_ok(h, "key:alpha:v1", pt, sizeof pt, &b);
        unseal_fails(h, "key:alpha:v2", b.p, b.len, KW_ERR_HSM_UNWRAP);
        unseal_fails(h, "", b.p, b.len, KW_ERR_HSM_UNWRAP);
        assert_int_equal(kw_hsm_state(h), KW_HSM_UP); /* not mistaken for a lost HSM */
        unseal_expect(h, "key:alpha:v1", b.p, b.len, pt, sizeof pt);
        struct kw_hsm_stats st;
        kw_hsm_get_stats(h, &st);
        assert_int_equal(st.errors, 2);
        kw_buf_free(&b);
        kw_hsm_close(h);
}

static void hsm_unseal_tampered_blob_fails(void **state)
{
        (void)state;
        struct kw_hsm_config cfg = cfg_for(SOFTHSM, "mk-seal", 1);
        struct kw_hsm *h = open_ok(&cfg, NULL);
        const uint8_t pt[20] = { 9, 8, 7 };
        struct kw_buf b;
        kw_buf_init(&b, 4096);
        seal_ok(h, "aad", pt, sizeof pt, &b);
        /* version, mechanism, IV, ciphertext, tag: every byte */
        for (size_t i = 0; i < b.len; i++) {
                for (int bit = 0; bit < 8; bit += 7) {
                        b.p[i] ^= (uint8_t)(1u << bit);
                        unseal_fails(h, "aad", b.p, b.len, KW_ERR_HSM_UNWRAP);
                        b.p[i] ^= (uint8_t)(1u << bit);
                }
        }
        assert_int_equal(kw_hsm_state(h), KW_HSM_UP);
        unseal_expect(h, "aad", b.p, b.len, pt, sizeof pt); /* session still usable */
        kw_buf_free(&b);
        kw_hsm_close(h);
}

static void hsm_unseal_truncated_blob_fails(void **state)
{
        (void)state;
        struct kw_hsm_config cfg = cfg_for(SOFTHSM, "mk-seal", 1);
        struct kw_hsm *h = open_ok(&cfg, NULL);
        const uint8_t pt[24] = { 1 };
        struct kw_buf b;
        kw_buf_init(&b, 4096);
        seal_ok(h, "aad", pt, sizeof pt, &b);
        for (size_t n = 0; n < b.len; n++)
                unseal_fails(h, "aad", b.p, n, KW_ERR_HSM_UNWRAP);
        /* and one byte too many */
        assert_int_equal(kw_buf_put_u8(&b, 0).code, 0);
        unseal_fails(h, "aad", b.p, b.len, KW_ERR_HSM_UNWRAP);
        assert_int_equal(kw_hsm_state(h), KW_HSM_UP);
        kw_buf_free(&b);
        kw_hsm_close(h);
}

static void hsm_seal_too_large_fails(void **state)
{
        (void)state;
        struct kw_hsm_config cfg = cfg_for(SOFTHSM, "mk-seal", 1);
        struct kw_hsm *h = open_ok(&cfg, NULL);
        uint8_t *big = calloc(1, 70000);
        assert_non_null(big);
        struct kw_buf b;
        kw_buf_init(&b, 1 << 20);
        assert_int_equal(kw_buf_put(&b, "x", 1).code, 0);
        assert_int_equal(kw_hsm_seal(h, big, 65536, big, 1, &b).code, KW_ERR_TOO_LARGE);
        assert_int_equal(kw_hsm_seal(h, big, 1, big, 65537, &b).code, KW_ERR_TOO_LARGE);
        assert_int_equal(b.len, 1); /* out unchanged */
        struct kw_buf small;
        kw_buf_init(&small, 20); /* the blob does not fit */
        assert_int_equal(kw_hsm_seal(h, big, 1, big, 32, &small).code, KW_ERR_TOO_LARGE);
        assert_int_equal(small.len, 0);
        kw_buf_free(&small);
        kw_buf_free(&b);
        free(big);
        kw_hsm_close(h);
}

static void hsm_random_check_healthy_link_succeed(void **state)
{
        (void)state;
        struct kw_hsm_config cfg = cfg_for(SOFTHSM, "mk-seal", 1);
        struct kw_hsm *h = open_ok(&cfg, NULL);
        uint8_t a[64] = { 0 }, b[64] = { 0 }, zero[64] = { 0 };
        assert_int_equal(kw_hsm_random(h, a, sizeof a).code, 0);
        assert_int_equal(kw_hsm_random(h, b, sizeof b).code, 0);
        assert_memory_not_equal(a, zero, sizeof a);
        assert_memory_not_equal(a, b, sizeof a);
        uint8_t keep[4] = { 1, 2, 3, 4 };
        assert_int_equal(kw_hsm_random(h, keep, (1u << 20) + 1).code, KW_ERR_TOO_LARGE);
        assert_int_equal(keep[0], 1); /* untouched */
        uint64_t us = UINT64_MAX;
        assert_int_equal(kw_hsm_check(h, &us).code, 0);
        assert_true(us < 10u * 1000 * 1000);
        kw_hsm_close(h);
}

/* ---- availability (faulthsm) ------------------------------------------ */

static void hsm_seal_device_removed_marks_down_then_recovers(void **state)
{
        (void)state;
        set_ctl("mode=up\n");
        struct kw_hsm_config cfg = cfg_for(faulthsm, "mk-fault", 1);
        struct kw_hsm *h = open_ok(&cfg, NULL);
        assert_string_equal(kw_hsm_mechanism_name(h), "AES-GCM");
        const uint8_t pt[32] = { 42 };
        struct kw_buf b;
        kw_buf_init(&b, 4096);
        seal_ok(h, "aad", pt, sizeof pt, &b);

        set_ctl("mode=down\n");
        struct kw_buf o;
        kw_buf_init(&o, 4096);
        assert_int_equal(kw_hsm_seal(h, (const uint8_t *)"aad", 3, pt, 32, &o).code,
                         KW_ERR_HSM_UNAVAILABLE);
        assert_int_equal(o.len, 0);
        assert_int_equal(kw_hsm_state(h), KW_HSM_DOWN);
        assert_non_null(strstr(kw_err_detail(), "CKR_DEVICE_REMOVED"));
        /* while down, every call fails at once */
        unseal_fails(h, "aad", b.p, b.len, KW_ERR_HSM_UNAVAILABLE);
        uint8_t rnd[8] = { 0 };
        assert_int_equal(kw_hsm_random(h, rnd, sizeof rnd).code, KW_ERR_HSM_UNAVAILABLE);
        uint64_t us;
        assert_int_equal(kw_hsm_check(h, &us).code, KW_ERR_HSM_UNAVAILABLE);
        sleep_ms(350); /* a few failed reconnect attempts */
        assert_int_equal(kw_hsm_state(h), KW_HSM_DOWN);
        assert_int_equal(kw_hsm_seal(h, (const uint8_t *)"aad", 3, pt, 32, &o).code,
                         KW_ERR_HSM_UNAVAILABLE);

        set_ctl("mode=up\n");
        wait_state(h, KW_HSM_UP, 5000); /* same kw_hsm, no reopen */
        unseal_expect(h, "aad", b.p, b.len, pt, sizeof pt);
        seal_ok(h, "aad", pt, sizeof pt, &o);
        struct kw_hsm_stats st;
        kw_hsm_get_stats(h, &st);
        assert_true(st.reconnects >= 1);
        assert_true(st.errors >= 5);

        /* one function failing with a device error also takes the link down
         * (C_OpenSession fails too, so that the retry cannot win the race) */
        set_ctl("fail=C_Decrypt:CKR_DEVICE_ERROR\nfail=C_OpenSession:CKR_DEVICE_ERROR\n");
        unseal_fails(h, "aad", b.p, b.len, KW_ERR_HSM_UNAVAILABLE);
        assert_int_equal(kw_hsm_state(h), KW_HSM_DOWN);
        set_ctl("mode=up\n");
        wait_state(h, KW_HSM_UP, 5000);
        unseal_expect(h, "aad", b.p, b.len, pt, sizeof pt);
        kw_hsm_get_stats(h, &st);
        assert_true(st.reconnects >= 2);

        /* a device reset: only C_Finalize + C_Initialize bring it back */
        set_ctl("mode=reset\n");
        assert_int_equal(kw_hsm_seal(h, (const uint8_t *)"aad", 3, pt, 32, &o).code,
                         KW_ERR_HSM_UNAVAILABLE);
        assert_non_null(strstr(kw_err_detail(), "CKR_CRYPTOKI_NOT_INITIALIZED"));
        wait_state(h, KW_HSM_UP, 5000);
        unseal_expect(h, "aad", b.p, b.len, pt, sizeof pt);
        kw_hsm_get_stats(h, &st);
        assert_true(st.reconnects >= 3);

        /* a non-device error does not */
        set_ctl("fail=C_Decrypt:CKR_ENCRYPTED_DATA_INVALID\n");
        unseal_fails(h, "aad", b.p, b.len, KW_ERR_HSM_UNWRAP);
        assert_int_equal(kw_hsm_state(h), KW_HSM_UP);
        set_ctl("mode=up\n");
        kw_buf_free(&o);
        kw_buf_free(&b);
        kw_hsm_close(h);
}

struct slow_arg {
        struct kw_hsm *h;
        kw_result r;
        char detail[256];
};

static void *slow_seal(void *p)
{
        struct slow_arg *a = p;
        const uint8_t pt[16] = { 1 };
        struct kw_buf b;
        kw_buf_init(&b, 4096);
        a->r = kw_hsm_seal(a->h, (const uint8_t *)"x", 1, pt, sizeof pt, &b);
        snprintf(a->detail, sizeof a->detail, "%s", kw_err_detail());
        kw_buf_free(&b);
        return NULL;
}

/*
 * Calls queue for the one session; none runs longer than timeout_ms, so the
 * link is never SLOW, but the last in the queue gives up waiting.
 * Timeline (ms): A holds the session 0..400 (two crypto calls of 200 ms);
 * B waits from 50, C from 100; one of them runs 400..800, the other gives
 * up at 550 or 600, when the running call is 150-200 ms old.
 */
static void hsm_seal_busy_pool_wait_times_out(void **state)
{
        (void)state;
        set_ctl("mode=up\n");
        struct kw_hsm_config cfg = cfg_for(faulthsm, "mk-fault", 1);
        cfg.sessions = 1;
        cfg.timeout_ms = 500;
        struct kw_hsm *h = open_ok(&cfg, NULL);
        set_ctl("delay_ms=200\n");
        struct slow_arg a[3];
        pthread_t t[3];
        for (int i = 0; i < 3; i++) {
                a[i] = (struct slow_arg){ .h = h, .r = KW_OK };
                assert_int_equal(pthread_create(&t[i], NULL, slow_seal, &a[i]), 0);
                sleep_ms(50);
        }
        for (int i = 0; i < 3; i++)
                assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(a[0].r.code, 0);
        int timed_out = 0, ok = 0;
        for (int i = 1; i < 3; i++) {
                if (a[i].r.code == KW_ERR_HSM_TIMEOUT) {
                        timed_out++;
                        assert_non_null(strstr(a[i].detail, "no free HSM session"));
                } else {
                        assert_int_equal(a[i].r.code, 0);
                        ok++;
                }
        }
        assert_int_equal(timed_out, 1);
        assert_int_equal(ok, 1);
        set_ctl("mode=up\n");
        assert_int_equal(kw_hsm_state(h), KW_HSM_UP);
        struct kw_hsm_stats st;
        kw_hsm_get_stats(h, &st);
        assert_int_equal(st.timeouts, 1);
        assert_int_equal(st.calls, 3);
        assert_int_equal(st.errors, 1);
        kw_hsm_close(h);
}

static void hsm_seal_slow_call_makes_others_time_out(void **state)
{
        (void)state;
        set_ctl("mode=up\n");
        struct kw_hsm_config cfg = cfg_for(faulthsm, "mk-fault", 1);
        cfg.sessions = 1;
        cfg.timeout_ms = 300;
        struct kw_hsm *h = open_ok(&cfg, NULL);
        set_ctl("delay_ms=700\n"); /* > timeout, per crypto call */

        struct slow_arg a = { .h = h, .r = KW_OK };
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, slow_seal, &a), 0);
        sleep_ms(100);
        /* the only session is taken: wait, then give up */
        const uint8_t pt[16] = { 2 };
        struct kw_buf b;
        kw_buf_init(&b, 4096);
        assert_int_equal(kw_hsm_seal(h, (const uint8_t *)"y", 1, pt, sizeof pt, &b).code,
                         KW_ERR_HSM_TIMEOUT);
        assert_int_equal(b.len, 0);
        /* the first call has now run longer than timeout_ms: SLOW, fail at once */
        wait_state(h, KW_HSM_SLOW, 1000);
        assert_int_equal(kw_hsm_seal(h, (const uint8_t *)"y", 1, pt, sizeof pt, &b).code,
                         KW_ERR_HSM_TIMEOUT);
        assert_non_null(strstr(kw_err_detail(), "running"));
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(a.r.code, 0); /* the slow call itself completes */
        assert_int_equal(kw_hsm_state(h), KW_HSM_UP);

        set_ctl("mode=up\n");
        seal_ok(h, "y", pt, sizeof pt, &b);
        struct kw_hsm_stats st;
        kw_hsm_get_stats(h, &st);
        assert_true(st.timeouts >= 2);
        kw_buf_free(&b);
        kw_hsm_close(h);
}

/* ---- AES-KWP fallback (faulthsm nogcm=1) ------------------------------ */

static void hsm_seal_kwp_fallback_round_trips_and_detects_tampering(void **state)
{
        (void)state;
        set_ctl("nogcm=1\n");
        struct kw_hsm_config cfg = cfg_for(faulthsm, "mk-kwp", 1);
        struct kw_hsm *h = open_ok(&cfg, NULL);
        assert_string_equal(kw_hsm_mechanism_name(h), "AES-KWP");
        uint8_t pt[100];
        for (size_t i = 0; i < sizeof pt; i++)
                pt[i] = (uint8_t)(0xA0 + i);
        static const size_t lens[] = { 0, 1, 4, 5, 6, 7, 8, 13, 32, 100 };
        static const char *aads[] = { "", "k", "key:alpha:v1" };
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
                for (size_t j = 0; j < 3; j++) {
                        struct kw_buf b;
                        kw_buf_init(&b, 4096);
                        seal_ok(h, aads[j], pt, lens[i], &b);
                        size_t m = 2 + strlen(aads[j]) + lens[i];
                        assert_int_equal(b.len, 2 + ((m + 7) / 8) * 8 + 8);
                        assert_int_equal(b.p[0], 1);
                        assert_int_equal(b.p[1], 2);
                        unseal_expect(h, aads[j], b.p, b.len, pt, lens[i]);
                        kw_buf_free(&b);
                }
        }
        struct kw_buf b;
        kw_buf_init(&b, 4096);
        seal_ok(h, "key:alpha:v1", pt, 32, &b);
        for (size_t i = 0; i < b.len; i++) {
                b.p[i] ^= 0x10;
                unseal_fails(h, "key:alpha:v1", b.p, b.len, KW_ERR_HSM_UNWRAP);
                b.p[i] ^= 0x10;
        }
        for (size_t n = 0; n < b.len; n++)
                unseal_fails(h, "key:alpha:v1", b.p, n, KW_ERR_HSM_UNWRAP);
        unseal_fails(h, "key:alpha:v2", b.p, b.len, KW_ERR_HSM_UNWRAP);
        unseal_fails(h, "key:alpha:v", b.p, b.len, KW_ERR_HSM_UNWRAP);
        assert_int_equal(kw_hsm_state(h), KW_HSM_UP);
        unseal_expect(h, "key:alpha:v1", b.p, b.len, pt, 32);
        kw_hsm_close(h);

        /* GCM blobs cannot be opened by a module without GCM */
        set_ctl("mode=up\n");
        h = open_ok(&cfg, NULL);
        assert_string_equal(kw_hsm_mechanism_name(h), "AES-GCM");
        struct kw_buf g;
        kw_buf_init(&g, 4096);
        seal_ok(h, "x", pt, 8, &g);
        /* a module that offers GCM still opens KWP blobs */
        unseal_expect(h, "key:alpha:v1", b.p, b.len, pt, 32);
        kw_hsm_close(h);
        set_ctl("nogcm=1\n");
        h = open_ok(&cfg, NULL);
        unseal_fails(h, "x", g.p, g.len, KW_ERR_HSM_MECHANISM);
        kw_hsm_close(h);
        set_ctl("mode=up\n");

        /* the blob is a standard RFC 5649 wrap: the module's own unwrap reads it */
        struct raw r;
        raw_open(&r);
        CK_OBJECT_HANDLE mk = CK_INVALID_HANDLE;
        assert_int_equal(raw_find(&r, "mk-kwp", &mk), 1);
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_KEY_TYPE, &kt, sizeof kt },
                             { CKA_TOKEN, &no, 1 },             { CKA_SENSITIVE, &no, 1 },
                             { CKA_EXTRACTABLE, &yes, 1 } };
        CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
        CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
        assert_int_equal(r.f->C_UnwrapKey(r.s, &kwp, mk, b.p + 2, b.len - 2, t, 5, &o), CKR_OK);
        uint8_t v[64];
        CK_ATTRIBUTE va = { CKA_VALUE, v, sizeof v };
        assert_int_equal(r.f->C_GetAttributeValue(r.s, o, &va, 1), CKR_OK);
        assert_int_equal(va.ulValueLen, 2 + 12 + 32);
        assert_int_equal(v[0], 0);
        assert_int_equal(v[1], 12);
        assert_memory_equal(v + 2, "key:alpha:v1", 12);
        assert_memory_equal(v + 14, pt, 32);
        r.f->C_DestroyObject(r.s, o);
        raw_close(&r);
        kw_buf_free(&g);
        kw_buf_free(&b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(hsm_open_absent_key_creates_then_finds_it),
                cmocka_unit_test(hsm_open_created_key_is_sensitive_and_not_extractable),
                cmocka_unit_test(hsm_open_absent_key_without_create_fails),
                cmocka_unit_test(hsm_open_extractable_key_fails),
                cmocka_unit_test(hsm_open_ambiguous_key_label_fails),
                cmocka_unit_test(hsm_open_missing_module_fails),
                cmocka_unit_test(hsm_open_unknown_token_fails),
                cmocka_unit_test(hsm_open_wrong_pin_fails),
                cmocka_unit_test(hsm_open_pin_file_newlines_are_stripped),
                cmocka_unit_test(hsm_open_empty_pin_fails),
                cmocka_unit_test(hsm_open_unreadable_pin_file_fails),
                cmocka_unit_test(hsm_open_bad_config_fails),
                cmocka_unit_test(hsm_seal_unseal_round_trip),
                cmocka_unit_test(hsm_unseal_wrong_aad_fails),
                cmocka_unit_test(hsm_unseal_tampered_blob_fails),
                cmocka_unit_test(hsm_unseal_truncated_blob_fails),
                cmocka_unit_test(hsm_seal_too_large_fails),
                cmocka_unit_test(hsm_random_check_healthy_link_succeed),
                cmocka_unit_test(hsm_seal_device_removed_marks_down_then_recovers),
                cmocka_unit_test(hsm_seal_slow_call_makes_others_time_out),
                cmocka_unit_test(hsm_seal_busy_pool_wait_times_out),
                cmocka_unit_test(hsm_seal_kwp_fallback_round_trips_and_detects_tampering),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
