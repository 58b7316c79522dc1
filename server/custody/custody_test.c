/*
 * custody_test.c - the custody process end to end: a real SoftHSM2 token in
 * a temp dir, a real SQLCipher file, the real socket protocol through the
 * front's client.  Covers what the protocols will rely on: the order of
 * checks, AES-GCM with bound AAD, rotation, wrap/unwrap, rules, tokens,
 * audit, restart persistence.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <cJSON.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/secret.h"
#include "config.h"
#include "custody/crypto.h"
#include "custody/custody.h"
#include "front/custody_client.h"

static char dir[256];
static struct kw_config *cfg;
static pid_t child = -1;
static struct kw_cc *cc;

static void set(char **field, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set(char **field, const char *fmt, ...)
{
        char buf[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        free(*field);
        *field = strdup(buf);
}

static void start_custody(void)
{
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        child = fork();
        assert_true(child >= 0);
        if (child == 0) {
                close(pfd[0]);
                _exit(kw_custody_main(cfg, pfd[1]));
        }
        close(pfd[1]);
        char b;
        assert_int_equal(read(pfd[0], &b, 1), 1);
        close(pfd[0]);
        assert_int_equal(kw_cc_new(cfg->custody.socket_path, 4, 10000, &cc).code, 0);
}

static void stop_custody(void)
{
        kw_cc_free(cc);
        cc = NULL;
        kill(child, SIGTERM);
        int st;
        waitpid(child, &st, 0);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        child = -1;
}

static int setup(void **state)
{
        (void)state;
        snprintf(dir, sizeof dir, "/tmp/kw-custody-XXXXXX");
        if (mkdtemp(dir) == NULL)
                return -1;
        const char *src = getenv("KW_SRCDIR") ? getenv("KW_SRCDIR") : ".";
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "%s/tests/softhsm-init.sh %s/hsm kwtest 4321", src, dir);
        if (system(cmd) != 0)
                return -1;
        snprintf(cmd, sizeof cmd, "%s/hsm/softhsm2.conf", dir);
        setenv("SOFTHSM2_CONF", cmd, 1);
        if (kw_config_defaults(&cfg).code != 0)
                return -1;
        set(&cfg->hsm.module, "/usr/lib/softhsm/libsofthsm2.so");
        set(&cfg->hsm.token_label, "kwtest");
        set(&cfg->hsm.pin_file, "%s/hsm/pin", dir);
        set(&cfg->db.path, "%s/k.db", dir);
        set(&cfg->db.key_file, "%s/k.db.key", dir);
        set(&cfg->custody.socket_path, "%s/c.sock", dir);
        set(&cfg->admin.token_file, "%s/admin.token", dir);
        set(&cfg->log.level, "error");
        cfg->db.deletion_min_wait_seconds = 1;
        cfg->db.audit_flush_ms = 10;
        int locked;
        kw_ignore(kw_secret_init(1 << 20, &locked));
        start_custody();
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        if (child > 0)
                stop_custody();
        kw_config_free(cfg);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        return system(cmd);
}

/* ------------------------------------------------------------- helpers */

static int create_key(const char *name, const char *type, uint32_t size, uint32_t ops,
                      const char *rules)
{
        struct kw_cc_call c;
        kw_cc_begin(cc, KW_OP_KEY_CREATE, &c);
        kw_cc_put_str(&c, KW_T_NAME, name);
        kw_cc_put_str(&c, KW_T_KEY_TYPE, type);
        kw_cc_put_u32(&c, KW_T_KEY_SIZE, size);
        if (ops)
                kw_cc_put_u32(&c, KW_T_OPS, ops);
        if (rules)
                kw_cc_put_str(&c, KW_T_RULES, rules);
        kw_cc_put_str(&c, KW_T_ACTOR, "test");
        int code = kw_cc_invoke(&c).code;
        kw_cc_end(&c);
        return code;
}

struct ct {
        uint8_t ct[256], iv[12], tag[16];
        size_t len;
        uint32_t version;
};

static int encrypt(const char *name, const char *pt, const char *aad, const char *principal,
                   struct ct *out)
{
        struct kw_cc_call c;
        kw_cc_begin(cc, KW_OP_ENCRYPT, &c);
        kw_cc_put_str(&c, KW_T_NAME, name);
        kw_cc_put_str(&c, KW_T_DATA, pt);
        if (aad)
                kw_cc_put_str(&c, KW_T_AAD, aad);
        if (principal) {
                /* an XKS caller of the store "s1" (docs/xks.md: keys must be
                 * assigned to a store to be reachable through it) */
                kw_cc_put_u32(&c, KW_T_CALLER, KW_CALLER_XKS);
                kw_cc_put_str(&c, KW_T_XKS_PRINCIPAL, principal);
                kw_cc_put_str(&c, KW_T_XKS_STORE, "s1");
        }
        int code = kw_cc_invoke(&c).code;
        if (code == 0) {
                struct kw_field f;
                assert_int_equal(kw_msg_get(&c.reply, KW_T_CT, &f).code, 0);
                assert_int_equal(f.len, strlen(pt));
                memcpy(out->ct, f.p, f.len);
                out->len = f.len;
                assert_int_equal(kw_msg_get(&c.reply, KW_T_IV, &f).code, 0);
                assert_int_equal(f.len, 12);
                memcpy(out->iv, f.p, 12);
                assert_int_equal(kw_msg_get(&c.reply, KW_T_AUTH_TAG, &f).code, 0);
                assert_int_equal(f.len, 16);
                memcpy(out->tag, f.p, 16);
                assert_int_equal(kw_msg_get_u32(&c.reply, KW_T_VERSION, &out->version).code, 0);
        }
        kw_cc_end(&c);
        return code;
}

static int decrypt(const char *name, const struct ct *in, const char *aad, char *out, size_t outsz)
{
        struct kw_cc_call c;
        kw_cc_begin(cc, KW_OP_DECRYPT, &c);
        kw_cc_put_str(&c, KW_T_NAME, name);
        kw_cc_put(&c, KW_T_CT, in->ct, in->len);
        kw_cc_put(&c, KW_T_IV, in->iv, 12);
        kw_cc_put(&c, KW_T_AUTH_TAG, in->tag, 16);
        kw_cc_put_u32(&c, KW_T_VERSION, in->version);
        if (aad)
                kw_cc_put_str(&c, KW_T_AAD, aad);
        int code = kw_cc_invoke(&c).code;
        if (code == 0) {
                struct kw_field f;
                assert_int_equal(kw_msg_get(&c.reply, KW_T_DATA, &f).code, 0);
                assert_true(f.len < outsz);
                memcpy(out, f.p, f.len);
                out[f.len] = 0;
        }
        kw_cc_end(&c);
        return code;
}

static int simple(uint8_t op, const char *name, const char *state)
{
        struct kw_cc_call c;
        kw_cc_begin(cc, op, &c);
        kw_cc_put_str(&c, KW_T_NAME, name);
        if (state)
                kw_cc_put_str(&c, KW_T_STATE, state);
        kw_cc_put_str(&c, KW_T_ACTOR, "test");
        int code = kw_cc_invoke(&c).code;
        kw_cc_end(&c);
        return code;
}

static int wrap(uint8_t op, const char *name, uint32_t alg, const uint8_t *in, size_t n,
                uint8_t *out, size_t *outlen)
{
        struct kw_cc_call c;
        kw_cc_begin(cc, op, &c);
        kw_cc_put_str(&c, KW_T_NAME, name);
        kw_cc_put_u32(&c, KW_T_ALG, alg);
        kw_cc_put(&c, KW_T_DATA, in, n);
        int code = kw_cc_invoke(&c).code;
        if (code == 0) {
                struct kw_field f;
                assert_int_equal(kw_msg_get(&c.reply, KW_T_DATA, &f).code, 0);
                memcpy(out, f.p, f.len);
                *outlen = f.len;
        }
        kw_cc_end(&c);
        return code;
}

static cJSON *get_json(uint8_t op, const char *name)
{
        struct kw_cc_call c;
        kw_cc_begin(cc, op, &c);
        if (name)
                kw_cc_put_str(&c, KW_T_NAME, name);
        assert_int_equal(kw_cc_invoke(&c).code, 0);
        const char *j;
        size_t n;
        assert_int_equal(kw_cc_reply_json(&c, &j, &n).code, 0);
        cJSON *v = cJSON_ParseWithLength(j, n);
        kw_cc_end(&c);
        assert_non_null(v);
        return v;
}

/* --------------------------------------------------------------- cases */

static void custody_encrypt_decrypt_binds_aad(void **state)
{
        (void)state;
        assert_int_equal(create_key("gcm1", "AES", 256, 0, NULL), 0);
        struct ct x;
        char out[256];
        assert_int_equal(encrypt("gcm1", "secret payload", "aad-1", NULL, &x), 0);
        assert_int_equal(x.version, 1);
        assert_int_equal(decrypt("gcm1", &x, "aad-1", out, sizeof out), 0);
        assert_string_equal(out, "secret payload");
        assert_int_equal(decrypt("gcm1", &x, "aad-2", out, sizeof out), KW_ERR_DECRYPT);
        assert_int_equal(decrypt("gcm1", &x, NULL, out, sizeof out), KW_ERR_DECRYPT);
        struct ct t = x;
        t.ct[0] ^= 1;
        assert_int_equal(decrypt("gcm1", &t, "aad-1", out, sizeof out), KW_ERR_DECRYPT);
        t = x;
        t.tag[15] ^= 0x80;
        assert_int_equal(decrypt("gcm1", &t, "aad-1", out, sizeof out), KW_ERR_DECRYPT);
        t = x;
        t.iv[0] ^= 1;
        assert_int_equal(decrypt("gcm1", &t, "aad-1", out, sizeof out), KW_ERR_DECRYPT);
        t = x;
        t.version = 2;
        assert_int_equal(decrypt("gcm1", &t, "aad-1", out, sizeof out), KW_ERR_DECRYPT);
        /* two encryptions of the same plaintext differ (random IV) */
        struct ct y;
        assert_int_equal(encrypt("gcm1", "secret payload", "aad-1", NULL, &y), 0);
        assert_memory_not_equal(x.iv, y.iv, 12);
}

static void custody_rotation_keeps_old_versions(void **state)
{
        (void)state;
        assert_int_equal(create_key("rot1", "AES", 256, 0, NULL), 0);
        struct ct v1, v2;
        char out[64];
        assert_int_equal(encrypt("rot1", "one", NULL, NULL, &v1), 0);
        assert_int_equal(simple(KW_OP_KEY_ROTATE, "rot1", NULL), 0);
        assert_int_equal(encrypt("rot1", "two", NULL, NULL, &v2), 0);
        assert_int_equal(v2.version, 2);
        assert_int_equal(decrypt("rot1", &v1, NULL, out, sizeof out), 0);
        assert_string_equal(out, "one");
        assert_int_equal(decrypt("rot1", &v2, NULL, out, sizeof out), 0);
        assert_string_equal(out, "two");
        cJSON *k = get_json(KW_OP_KEY_GET, "rot1");
        assert_int_equal(cJSON_GetObjectItem(k, "current_version")->valueint, 2);
        cJSON_Delete(k);
}

static void custody_state_checks_come_before_rules_and_usage(void **state)
{
        (void)state;
        const char *rules = "{\"xks\":{\"principals\":[\"arn:aws:iam::1:role/ok-*\"],"
                            "\"key_stores\":[\"s1\"]}}";
        assert_int_equal(create_key("st1", "AES", 256, KW_KEYOP_DECRYPT, rules), 0);
        struct ct x;
        /* usage: the key allows decrypt only */
        assert_int_equal(encrypt("st1", "p", NULL, "arn:aws:iam::1:role/ok-a", &x), KW_ERR_OP_NOT_ALLOWED);
        /* rules come before usage */
        assert_int_equal(encrypt("st1", "p", NULL, "arn:aws:iam::2:role/ok-a", &x), KW_ERR_ACCESS_DENIED);
        assert_int_equal(simple(KW_OP_KEY_SET_STATE, "st1", "disabled"), 0);
        /* state comes before rules */
        assert_int_equal(encrypt("st1", "p", NULL, "arn:aws:iam::2:role/ok-a", &x), KW_ERR_KEY_DISABLED);
        assert_int_equal(encrypt("nope", "p", NULL, NULL, &x), KW_ERR_NOT_FOUND);
        assert_int_equal(encrypt("bad/name", "p", NULL, NULL, &x), KW_ERR_BAD_NAME);
        /* metadata still answers for a disabled key */
        cJSON *k = get_json(KW_OP_KEY_GET, "st1");
        assert_string_equal(cJSON_GetObjectItem(k, "state")->valuestring, "disabled");
        cJSON_Delete(k);
        assert_int_equal(simple(KW_OP_KEY_SET_STATE, "st1", "enabled"), 0);
        assert_int_equal(encrypt("st1", "p", NULL, "arn:aws:iam::1:role/ok-a", &x), KW_ERR_OP_NOT_ALLOWED);
}

/* XKS store isolation: a key is reachable through a store only when its
 * rules list the store; otherwise it does not exist for that caller. */
static void custody_xks_store_isolation(void **state)
{
        (void)state;
        assert_int_equal(create_key("iso-none", "AES", 256, 0, NULL), 0);
        assert_int_equal(create_key("iso-s1", "AES", 256, 0, "{\"xks\":{\"key_stores\":[\"s1\"]}}"), 0);
        assert_int_equal(create_key("iso-s2", "AES", 256, 0, "{\"xks\":{\"key_stores\":[\"s2\"]}}"), 0);
        struct ct x;
        assert_int_equal(encrypt("iso-none", "p", NULL, "arn:a", &x), KW_ERR_NOT_FOUND);
        assert_int_equal(encrypt("iso-s2", "p", NULL, "arn:a", &x), KW_ERR_NOT_FOUND);
        assert_int_equal(encrypt("iso-s1", "p", NULL, "arn:a", &x), 0);
        /* admin callers are not subject to stores */
        assert_int_equal(encrypt("iso-none", "p", NULL, NULL, &x), 0);
}

static void custody_deletion_schedule_and_cancel(void **state)
{
        (void)state;
        assert_int_equal(create_key("del1", "AES", 256, 0, NULL), 0);
        assert_int_equal(simple(KW_OP_KEY_CANCEL_DELETE, "del1", NULL), KW_ERR_BAD_STATE);
        assert_int_equal(simple(KW_OP_KEY_SCHEDULE_DELETE, "del1", NULL), 0);
        struct ct x;
        assert_int_equal(encrypt("del1", "p", NULL, NULL, &x), KW_ERR_KEY_PENDING_DELETION);
        assert_int_equal(simple(KW_OP_KEY_SET_STATE, "del1", "enabled"), KW_ERR_BAD_STATE);
        assert_int_equal(simple(KW_OP_KEY_CANCEL_DELETE, "del1", NULL), 0);
        cJSON *k = get_json(KW_OP_KEY_GET, "del1");
        assert_string_equal(cJSON_GetObjectItem(k, "state")->valuestring, "disabled");
        cJSON_Delete(k);
}

static void custody_create_errors_change_nothing(void **state)
{
        (void)state;
        cJSON *before = get_json(KW_OP_STATUS, NULL);
        double n = cJSON_GetObjectItem(before, "keys")->valuedouble;
        cJSON_Delete(before);
        assert_int_equal(create_key("dup1", "AES", 256, 0, NULL), 0);
        assert_int_equal(create_key("dup1", "AES", 256, 0, NULL), KW_ERR_EXISTS);
        assert_int_equal(create_key("x", "AES", 128, 0, NULL), KW_ERR_BAD_FIELD);
        assert_int_equal(create_key("x", "RSA", 1024, 0, NULL), KW_ERR_BAD_FIELD);
        assert_int_equal(create_key("x", "EC", 256, 0, NULL), KW_ERR_BAD_FIELD);
        assert_int_equal(create_key("a b", "AES", 256, 0, NULL), KW_ERR_BAD_NAME);
        assert_int_equal(create_key("..", "AES", 256, 0, NULL), KW_ERR_BAD_NAME);
        assert_int_equal(create_key("x", "RSA", 2048, KW_KEYOP_ENCRYPT, NULL), KW_ERR_BAD_FIELD);
        assert_int_equal(create_key("x", "AES", 256, 0, "{\"xks\":{\"nope\":[]}}"), KW_ERR_BAD_FIELD);
        cJSON *after = get_json(KW_OP_STATUS, NULL);
        assert_true(cJSON_GetObjectItem(after, "keys")->valuedouble == n + 1);
        cJSON_Delete(after);
}

static void custody_aes_wrap_unwrap(void **state)
{
        (void)state;
        assert_int_equal(create_key("kw1", "AES", 256, 0, NULL), 0);
        uint8_t in[32], w[64], u[64];
        size_t wl, ul;
        RAND_bytes(in, sizeof in);
        assert_int_equal(wrap(KW_OP_WRAP, "kw1", KW_ALG_A256KW, in, 32, w, &wl), 0);
        assert_int_equal(wl, 40);
        assert_int_equal(wrap(KW_OP_UNWRAP, "kw1", KW_ALG_A256KW, w, wl, u, &ul), 0);
        assert_int_equal(ul, 32);
        assert_memory_equal(in, u, 32);
        assert_int_equal(wrap(KW_OP_WRAP, "kw1", KW_ALG_A256KWP, in, 5, w, &wl), 0);
        assert_int_equal(wrap(KW_OP_UNWRAP, "kw1", KW_ALG_A256KWP, w, wl, u, &ul), 0);
        assert_int_equal(ul, 5);
        w[3] ^= 1;
        assert_int_equal(wrap(KW_OP_UNWRAP, "kw1", KW_ALG_A256KWP, w, wl, u, &ul), KW_ERR_DECRYPT);
        assert_int_equal(wrap(KW_OP_WRAP, "kw1", KW_ALG_A256KW, in, 7, w, &wl), KW_ERR_BAD_LENGTH);
        assert_int_equal(wrap(KW_OP_WRAP, "kw1", KW_ALG_RSA_OAEP_256, in, 32, w, &wl),
                         KW_ERR_UNSUPPORTED_ALG);
}

static void custody_rsa_oaep_wrap_unwrap(void **state)
{
        (void)state;
        assert_int_equal(create_key("rsa1", "RSA", 2048, 0, NULL), 0);
        uint8_t in[32], w[512], u[512];
        size_t wl, ul;
        RAND_bytes(in, sizeof in);
        const uint32_t algs[] = { KW_ALG_RSA_OAEP_256, KW_ALG_RSA_OAEP };
        for (int i = 0; i < 2; i++) {
                assert_int_equal(wrap(KW_OP_WRAP, "rsa1", algs[i], in, 32, w, &wl), 0);
                assert_int_equal(wl, 256);
                assert_int_equal(wrap(KW_OP_UNWRAP, "rsa1", algs[i], w, wl, u, &ul), 0);
                assert_int_equal(ul, 32);
                assert_memory_equal(in, u, 32);
        }
        /* the digest is part of the algorithm: SHA-1 ciphertext under SHA-256 fails */
        assert_int_equal(wrap(KW_OP_UNWRAP, "rsa1", KW_ALG_RSA_OAEP_256, w, wl, u, &ul), KW_ERR_DECRYPT);
        assert_int_equal(wrap(KW_OP_UNWRAP, "rsa1", KW_ALG_RSA_OAEP, w, 255, u, &ul), KW_ERR_BAD_LENGTH);
        assert_int_equal(wrap(KW_OP_WRAP, "rsa1", KW_ALG_A256KW, in, 32, w, &wl), KW_ERR_UNSUPPORTED_ALG);
        cJSON *k = get_json(KW_OP_KEY_GET, "rsa1");
        cJSON *pk = cJSON_GetObjectItem(k, "public_key");
        assert_non_null(pk);
        assert_string_equal(cJSON_GetObjectItem(pk, "e")->valuestring, "AQAB");
        assert_int_equal(strlen(cJSON_GetObjectItem(pk, "n")->valuestring), 342); /* 256 bytes */
        cJSON_Delete(k);
}

static int unwrap_version(const char *name, uint32_t alg, uint32_t version, const uint8_t *in,
                          size_t n, uint8_t *out, size_t *outlen)
{
        struct kw_cc_call c;
        kw_cc_begin(cc, KW_OP_UNWRAP, &c);
        kw_cc_put_str(&c, KW_T_NAME, name);
        kw_cc_put_u32(&c, KW_T_ALG, alg);
        kw_cc_put(&c, KW_T_DATA, in, n);
        kw_cc_put_u32(&c, KW_T_VERSION, version);
        int code = kw_cc_invoke(&c).code;
        if (code == 0) {
                struct kw_field f;
                assert_int_equal(kw_msg_get(&c.reply, KW_T_DATA, &f).code, 0);
                memcpy(out, f.p, f.len);
                *outlen = f.len;
        }
        kw_cc_end(&c);
        return code;
}

static void custody_rsa_rotation_new_pair_old_still_unwraps(void **state)
{
        (void)state;
        assert_int_equal(create_key("rsarot", "RSA", 2048, 0, NULL), 0);
        cJSON *k1 = get_json(KW_OP_KEY_GET, "rsarot");
        char n1[400];
        snprintf(n1, sizeof n1, "%s",
                 cJSON_GetObjectItem(cJSON_GetObjectItem(k1, "public_key"), "n")->valuestring);
        cJSON_Delete(k1);
        uint8_t in[32], w1[256], w2[256], u[256];
        size_t wl1, wl2, ul;
        RAND_bytes(in, sizeof in);
        assert_int_equal(wrap(KW_OP_WRAP, "rsarot", KW_ALG_RSA_OAEP_256, in, 32, w1, &wl1), 0);
        assert_int_equal(simple(KW_OP_KEY_ROTATE, "rsarot", NULL), 0);
        cJSON *k2 = get_json(KW_OP_KEY_GET, "rsarot");
        const char *n2 = cJSON_GetObjectItem(cJSON_GetObjectItem(k2, "public_key"), "n")->valuestring;
        assert_string_not_equal(n1, n2);   /* the new version is a new key pair, and persisted */
        cJSON_Delete(k2);
        assert_int_equal(wrap(KW_OP_WRAP, "rsarot", KW_ALG_RSA_OAEP_256, in, 32, w2, &wl2), 0);
        assert_int_equal(wrap(KW_OP_UNWRAP, "rsarot", KW_ALG_RSA_OAEP_256, w2, wl2, u, &ul), 0);
        assert_memory_equal(u, in, 32);
        assert_int_equal(unwrap_version("rsarot", KW_ALG_RSA_OAEP_256, 1, w1, wl1, u, &ul), 0);
        assert_memory_equal(u, in, 32);
        assert_int_equal(unwrap_version("rsarot", KW_ALG_RSA_OAEP_256, 3, w1, wl1, u, &ul),
                         KW_ERR_DECRYPT);
        /* with no version named (EKM), values wrapped before the rotation still unwrap */
        memset(u, 0, sizeof u);
        assert_int_equal(wrap(KW_OP_UNWRAP, "rsarot", KW_ALG_RSA_OAEP_256, w1, wl1, u, &ul), 0);
        assert_memory_equal(u, in, 32);
        w1[10] ^= 1;
        assert_int_equal(wrap(KW_OP_UNWRAP, "rsarot", KW_ALG_RSA_OAEP_256, w1, wl1, u, &ul),
                         KW_ERR_DECRYPT);
}

static void custody_aes_unwrap_after_rotation_tries_older_versions(void **state)
{
        (void)state;
        assert_int_equal(create_key("kwrot", "AES", 256, 0, NULL), 0);
        uint8_t in[32], w[48], u[48];
        size_t wl, ul;
        RAND_bytes(in, sizeof in);
        assert_int_equal(wrap(KW_OP_WRAP, "kwrot", KW_ALG_A256KWP, in, 32, w, &wl), 0);
        assert_int_equal(simple(KW_OP_KEY_ROTATE, "kwrot", NULL), 0);
        assert_int_equal(simple(KW_OP_KEY_ROTATE, "kwrot", NULL), 0);
        assert_int_equal(wrap(KW_OP_UNWRAP, "kwrot", KW_ALG_A256KWP, w, wl, u, &ul), 0);
        assert_int_equal(ul, 32);
        assert_memory_equal(u, in, 32);
        /* named version: only that one */
        assert_int_equal(unwrap_version("kwrot", KW_ALG_A256KWP, 3, w, wl, u, &ul), KW_ERR_DECRYPT);
        assert_int_equal(unwrap_version("kwrot", KW_ALG_A256KWP, 1, w, wl, u, &ul), 0);
        w[0] ^= 1;
        assert_int_equal(wrap(KW_OP_UNWRAP, "kwrot", KW_ALG_A256KWP, w, wl, u, &ul), KW_ERR_DECRYPT);
}

static void custody_import_aes_interoperates(void **state)
{
        (void)state;
        uint8_t key[32], iv[12], tag[16], ct[5];
        RAND_bytes(key, 32);
        RAND_bytes(iv, 12);
        struct kw_cc_call c;
        kw_cc_begin(cc, KW_OP_KEY_IMPORT, &c);
        kw_cc_put_str(&c, KW_T_NAME, "imp1");
        kw_cc_put_str(&c, KW_T_KEY_TYPE, "AES");
        kw_cc_put_u32(&c, KW_T_KEY_SIZE, 256);
        kw_cc_put(&c, KW_T_MATERIAL, key, 32);
        kw_cc_put_str(&c, KW_T_ACTOR, "test");
        assert_int_equal(kw_cc_invoke(&c).code, 0);
        kw_cc_end(&c);
        /* encrypted here with OpenSSL directly, decrypted by the custody */
        assert_int_equal(kw_aes_gcm_encrypt(key, 32, iv, 12, (const uint8_t *)"ad", 2,
                                            (const uint8_t *)"hello", 5, ct, tag, 16).code, 0);
        struct ct x = { .len = 5, .version = 1 };
        memcpy(x.ct, ct, 5);
        memcpy(x.iv, iv, 12);
        memcpy(x.tag, tag, 16);
        char out[16];
        assert_int_equal(decrypt("imp1", &x, "ad", out, sizeof out), 0);
        assert_string_equal(out, "hello");
        /* wrong material length is refused */
        kw_cc_begin(cc, KW_OP_KEY_IMPORT, &c);
        kw_cc_put_str(&c, KW_T_NAME, "imp2");
        kw_cc_put_str(&c, KW_T_KEY_TYPE, "AES");
        kw_cc_put_u32(&c, KW_T_KEY_SIZE, 256);
        kw_cc_put(&c, KW_T_MATERIAL, key, 31);
        kw_cc_put_str(&c, KW_T_ACTOR, "test");
        assert_int_equal(kw_cc_invoke(&c).code, KW_ERR_BAD_FIELD);
        kw_cc_end(&c);
}

static void custody_first_token_is_admin(void **state)
{
        (void)state;
        char path[600], tok[128] = "";
        snprintf(path, sizeof path, "%s/admin.token", dir);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        assert_non_null(fgets(tok, sizeof tok, f));
        fclose(f);
        tok[strcspn(tok, "\n")] = 0;
        uint8_t h[32];
        kw_sha256(tok, strlen(tok), h);
        struct kw_cc_call c;
        kw_cc_begin(cc, KW_OP_TOKEN_CHECK, &c);
        kw_cc_put(&c, KW_T_TOKEN_HASH, h, 32);
        assert_int_equal(kw_cc_invoke(&c).code, 0);
        const char *j;
        size_t n;
        assert_int_equal(kw_cc_reply_json(&c, &j, &n).code, 0);
        assert_non_null(strstr(j, "\"role\":\"admin\""));
        kw_cc_end(&c);
        h[0] ^= 1;
        kw_cc_begin(cc, KW_OP_TOKEN_CHECK, &c);
        kw_cc_put(&c, KW_T_TOKEN_HASH, h, 32);
        assert_int_equal(kw_cc_invoke(&c).code, KW_ERR_AUTH);
        kw_cc_end(&c);
}

static void custody_audit_records_use_and_verifies(void **state)
{
        (void)state;
        assert_int_equal(create_key("aud1", "AES", 256, 0, NULL), 0);
        struct ct x;
        assert_int_equal(encrypt("aud1", "p", NULL, NULL, &x), 0);
        struct kw_cc_call c;
        kw_cc_begin(cc, KW_OP_AUDIT_QUERY, &c);
        kw_cc_put_str(&c, KW_T_NAME, "aud1");
        assert_int_equal(kw_cc_invoke(&c).code, 0);
        const char *j;
        size_t n;
        assert_int_equal(kw_cc_reply_json(&c, &j, &n).code, 0);
        assert_non_null(strstr(j, "\"action\":\"key.create\""));
        assert_non_null(strstr(j, "\"action\":\"key.encrypt\""));
        kw_cc_end(&c);
        cJSON *v = get_json(KW_OP_AUDIT_VERIFY, NULL);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(v, "ok")));
        assert_true(cJSON_GetObjectItem(v, "rows")->valuedouble >= 2);
        cJSON_Delete(v);
}

static void custody_restart_keeps_keys(void **state)
{
        (void)state;
        assert_int_equal(create_key("pers1", "AES", 256, 0, NULL), 0);
        struct ct x;
        assert_int_equal(encrypt("pers1", "durable", NULL, NULL, &x), 0);
        stop_custody();
        start_custody();
        char out[32];
        assert_int_equal(decrypt("pers1", &x, NULL, out, sizeof out), 0);
        assert_string_equal(out, "durable");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(custody_encrypt_decrypt_binds_aad),
                cmocka_unit_test(custody_rotation_keeps_old_versions),
                cmocka_unit_test(custody_state_checks_come_before_rules_and_usage),
                cmocka_unit_test(custody_xks_store_isolation),
                cmocka_unit_test(custody_deletion_schedule_and_cancel),
                cmocka_unit_test(custody_create_errors_change_nothing),
                cmocka_unit_test(custody_aes_wrap_unwrap),
                cmocka_unit_test(custody_rsa_oaep_wrap_unwrap),
                cmocka_unit_test(custody_rsa_rotation_new_pair_old_still_unwraps),
                cmocka_unit_test(custody_aes_unwrap_after_rotation_tries_older_versions),
                cmocka_unit_test(custody_import_aes_interoperates),
                cmocka_unit_test(custody_first_token_is_admin),
                cmocka_unit_test(custody_audit_records_use_and_verifies),
                cmocka_unit_test(custody_restart_keeps_keys),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
