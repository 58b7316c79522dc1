/*
 * custody_test.c - the custody process end to end: a real SoftHSM2 token in
 * a temp dir, a real SQLCipher file, the real socket protocol through the
 * front's client.  This test process plays the front (the custody process
 * is told its pid) and, for XKS, AWS KMS: it signs requests with SigV4.
 *
 * Two kinds of cases.  What the protocols rely on: the order of checks,
 * AES-GCM with bound AAD, rotation, wrap/unwrap, rules, tokens, audit,
 * restart persistence.  And what a compromised front can make custody do
 * (issue 10, finding 2): nothing without a caller class and its proof, no
 * op outside its class, no admin op above the token's role, no XKS
 * operation other than the one AWS signed, no key that is not opted into
 * the caller's protocol, no actor of its own choosing in the audit.
 */
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <cJSON.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/b64.h"
#include "common/secret.h"
#include "config.h"
#include "custody/crypto.h"
#include "custody/custody.h"
#include "custody/sigv4_key.h"
#include "front/custody_client.h"
#include "front/sigv4.h"

#define AKID "AKIDCUSTODYTESTAAAAB"
#define SECRET "c2VjcmV0LWZvci10aGUtY3VzdG9keS10ZXN0cy0xMjM0NTY3OA=="
#define AKID2 "AKIDCUSTODYTESTAAAAC"
#define SECRET2 "YW5vdGhlci1zZWNyZXQtZm9yLXN0b3JlLXMyLTEyMzQ1Njc4OQ=="
#define EKM_CN "mhsm.ekm.example"

static char dir[256];
static struct kw_config *cfg;
static pid_t child = -1;
static struct kw_cc *cc;
static char admin_token[128];
static char ctl_path[300];

/* Writes faulthsm's control file (it re-reads it at most every 50 ms). */
static void hsm_ctl(const char *text)
{
        FILE *f = fopen(ctl_path, "w");
        assert_non_null(f);
        fputs(text, f);
        /* the custody user reads it, whatever umask this process runs with */
        assert_int_equal(fchmod(fileno(f), 0644), 0);
        fclose(f);
        usleep(120 * 1000);
}

static void start_custody(void)
{
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        pid_t me = getpid();
        child = fork();
        assert_true(child >= 0);
        if (child == 0) {
                close(pfd[0]);
                struct kw_custody_start st = { .ready_fd = pfd[1], .control_fd = -1,
                                               .front_pid = me, .front_uid = getuid() };
                _exit(kw_custody_main(cfg, &st));
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
        /* started as root, the custody process becomes keyward-custody
         * (make users): its state is that user's, as tests/devstate.sh does */
        snprintf(cmd, sizeof cmd, "[ \"$(id -u)\" != 0 ] || { chown -R keyward-custody: %s && "
                                  "chmod 0711 %s; }", dir, dir);
        if (system(cmd) != 0)
                return -1;
        snprintf(cmd, sizeof cmd, "%s/hsm/softhsm2.conf", dir);
        setenv("SOFTHSM2_CONF", cmd, 1);
        /* the HSM through faulthsm (forwarding to SoftHSM2), to slow it down */
        snprintf(ctl_path, sizeof ctl_path, "%s/faulthsm.ctl", dir);
        hsm_ctl("mode=up\n");
        setenv("KEYWARD_FAULTHSM_CTL", ctl_path, 1);
        setenv("KEYWARD_FAULTHSM_MODULE", "/usr/lib/softhsm/libsofthsm2.so", 1);
        const char *bld = getenv("KW_BUILD") ? getenv("KW_BUILD") : "build";
        char module[PATH_MAX + 32];
        if (realpath(bld, module) == NULL)
                return -1;
        strncat(module, "/libfaulthsm.so", sizeof module - strlen(module) - 1);
        char toml[4096];
        int n = snprintf(toml, sizeof toml,
                         "[hsm]\nmodule = \"%s\"\ntoken_label = \"kwtest\"\n"
                         "pin_file = \"%s/hsm/pin\"\n"
                         "[db]\npath = \"%s/k.db\"\nkey_file = \"%s/k.db.key\"\n"
                         "deletion_min_wait_seconds = 1\naudit_flush_ms = 10\n"
                         "secure_heap_bytes = 1048576\n"
                         "[custody]\nsocket_path = \"%s/c.sock\"\n"
                         "[admin]\ntoken_file = \"%s/admin.token\"\n"
                         "[log]\nlevel = \"error\"\n"
                         "[azure_ekm_config]\nazure_ekm_enable = true\n"
                         "azure_ekm_client_cns = [\"" EKM_CN "\"]\n"
                         "[aws_xks_config]\naws_xks_enable = true\n"
                         "aws_xks_sigv4_access_key_id = \"" AKID "\"\n"
                         "aws_xks_sigv4_secret_access_key = \"" SECRET "\"\n"
                         "[aws_xks_store.s2]\nuri_prefix = \"/s2\"\n"
                         "access_key_id = \"" AKID2 "\"\nsecret_access_key = \"" SECRET2 "\"\n",
                         module, dir, dir, dir, dir, dir);
        if (kw_config_defaults(&cfg).code != 0 ||
            kw_config_parse("custody_test", toml, (size_t)n, cfg).code != 0 ||
            kw_config_validate(cfg).code != 0) {
                fprintf(stderr, "config: %s\n", kw_err_detail());
                return -1;
        }
        int locked;
        kw_ignore(kw_secret_init(1 << 20, &locked));
        start_custody();
        snprintf(cmd, sizeof cmd, "%s/admin.token", dir);
        FILE *f = fopen(cmd, "r");
        if (f == NULL || fgets(admin_token, sizeof admin_token, f) == NULL)
                return -1;
        fclose(f);
        admin_token[strcspn(admin_token, "\n")] = 0;
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

/* ------------------------------------------------------------- callers */

static void begin_as(uint8_t op, const char *token, struct kw_cc_call *c)
{
        kw_cc_begin(cc, op, KW_CALLER_ADMIN, c);
        kw_cc_put_str(c, KW_T_TOKEN, token);
}

static void begin_admin(uint8_t op, struct kw_cc_call *c) { begin_as(op, admin_token, c); }

static void begin_ekm(uint8_t op, const char *cn, struct kw_cc_call *c)
{
        kw_cc_begin(cc, op, KW_CALLER_EKM, c);
        kw_cc_put_str(c, KW_T_EKM_CN, cn);
}

static int finish(struct kw_cc_call *c)
{
        int code = kw_cc_invoke(c).code;
        kw_cc_end(c);
        return code;
}

static int create_key(const char *name, const char *type, uint32_t size, uint32_t ops,
                      const char *rules)
{
        struct kw_cc_call c;
        begin_admin(KW_OP_KEY_CREATE, &c);
        kw_cc_put_str(&c, KW_T_NAME, name);
        kw_cc_put_str(&c, KW_T_KEY_TYPE, type);
        kw_cc_put_u32(&c, KW_T_KEY_SIZE, size);
        if (ops)
                kw_cc_put_u32(&c, KW_T_OPS, ops);
        if (rules)
                kw_cc_put_str(&c, KW_T_RULES, rules);
        return finish(&c);
}

static int simple(uint8_t op, const char *name, const char *state)
{
        struct kw_cc_call c;
        begin_admin(op, &c);
        kw_cc_put_str(&c, KW_T_NAME, name);
        if (state)
                kw_cc_put_str(&c, KW_T_STATE, state);
        return finish(&c);
}

/* Invokes c, which must succeed with a JSON reply; ends it. */
static cJSON *invoke_json(struct kw_cc_call *c)
{
        assert_int_equal(kw_cc_invoke(c).code, 0);
        const char *j;
        size_t n;
        assert_int_equal(kw_cc_reply_json(c, &j, &n).code, 0);
        cJSON *v = cJSON_ParseWithLength(j, n);
        kw_cc_end(c);
        assert_non_null(v);
        return v;
}

static cJSON *get_json(uint8_t op, const char *name)
{
        struct kw_cc_call c;
        begin_admin(op, &c);
        if (name)
                kw_cc_put_str(&c, KW_T_NAME, name);
        return invoke_json(&c);
}

/* The newest audit row's actor for an action, or "" (a static buffer). */
static const char *last_actor(const char *action)
{
        static char actor[300];
        actor[0] = '\0';
        struct kw_cc_call c;
        begin_admin(KW_OP_AUDIT_QUERY, &c);
        kw_cc_put_str(&c, KW_T_ACTION, action);
        kw_cc_put_u32(&c, KW_T_LIMIT, 1000);
        assert_int_equal(kw_cc_invoke(&c).code, 0);
        const char *j;
        size_t n;
        assert_int_equal(kw_cc_reply_json(&c, &j, &n).code, 0);
        cJSON *v = cJSON_ParseWithLength(j, n);
        kw_cc_end(&c);
        cJSON *ev = cJSON_GetObjectItem(v, "events");
        int k = cJSON_GetArraySize(ev);
        if (k > 0)
                snprintf(actor, sizeof actor, "%s",
                         cJSON_GetObjectItem(cJSON_GetArrayItem(ev, k - 1), "actor")->valuestring);
        cJSON_Delete(v);
        return actor;
}

/* ---- XKS: this test signs as AWS KMS would ---- */

struct xks_creds {
        const char *store, *prefix, *akid, *secret;
};
static const struct xks_creds S_DEFAULT = { "default", "", AKID, SECRET };
static const struct xks_creds S_TWO = { "s2", "/s2", AKID2, SECRET2 };

/* What a tampering front may change after AWS signed. */
enum tamper { T_NONE, T_BODY, T_CREQ, T_STORE, T_SIG };

/* POSTs body to <prefix>/kms/xks/v1/<tail> as a signed XKS request.  The
 * reply's JSON goes to out (when not NULL, NUL-terminated). */
static int xks_call(const struct xks_creds *cr, const char *tail, const char *body,
                    enum tamper t, char *out, size_t outsz)
{
        char path[300], date[20], day[9];
        snprintf(path, sizeof path, "%s/kms/xks/v1/%s", cr->prefix, tail);
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(date, sizeof date, "%Y%m%dT%H%M%SZ", &tm);
        memcpy(day, date, 8);
        day[8] = '\0';
        struct kw_sigv4_header h[3] = {
                { "Content-Type", 12, "application/json", 16 },
                { "Host", 4, "127.0.0.1", 9 },
                { "X-Amz-Date", 10, date, strlen(date) },
        };
        struct kw_sigv4_request rq = { .method = "POST", .path = path, .headers = h,
                                       .n_headers = 3, .body = (const uint8_t *)body,
                                       .body_len = strlen(body) };
        struct kw_sigv4_auth auth;
        memset(&auth, 0, sizeof auth);
        snprintf(auth.akid, sizeof auth.akid, "%s", cr->akid);
        memcpy(auth.date, day, 9);
        snprintf(auth.region, sizeof auth.region, "us-east-1");
        snprintf(auth.service, sizeof auth.service, "kms-xks-proxy");
        auth.n_signed = 3;
        snprintf(auth.signed_headers[0], sizeof auth.signed_headers[0], "content-type");
        snprintf(auth.signed_headers[1], sizeof auth.signed_headers[1], "host");
        snprintf(auth.signed_headers[2], sizeof auth.signed_headers[2], "x-amz-date");
        static struct kw_sigv4_signed sig;
        assert_int_equal(kw_sigv4_string_to_sign(&rq, &auth, &sig).code, 0);
        uint8_t key[32], mac[32];
        assert_int_equal(kw_sigv4_signing_key((const uint8_t *)cr->secret, strlen(cr->secret), day,
                                              "us-east-1", "kms-xks-proxy", key).code, 0);
        assert_int_equal(kw_sigv4_signature(key, sig.sts, sig.sts_len, mac).code, 0);
        const char *sent_body = body;
        char other[64];
        if (t == T_BODY)
                sent_body = "{\"requestMetadata\":{}}";
        if (t == T_CREQ)
                sig.creq[sig.creq_len - 70] ^= 1;   /* a signed header value */
        if (t == T_SIG)
                mac[0] ^= 1;
        snprintf(other, sizeof other, "%s", t == T_STORE ? "s2" : cr->store);
        struct kw_cc_call c;
        kw_cc_begin(cc, KW_OP_XKS, KW_CALLER_XKS, &c);
        kw_cc_put_str(&c, KW_T_XKS_STORE, other);
        kw_cc_put_str(&c, KW_T_SIGV4_AKID, cr->akid);
        kw_cc_put(&c, KW_T_SIGV4_STS, sig.sts, sig.sts_len);
        kw_cc_put(&c, KW_T_SIGV4_SIG, mac, 32);
        kw_cc_put(&c, KW_T_SIGV4_CREQ, sig.creq, sig.creq_len);
        kw_cc_put(&c, KW_T_BODY, sent_body, strlen(sent_body));
        int code = kw_cc_invoke(&c).code;
        if (code == 0 && out != NULL) {
                const char *j;
                size_t n;
                assert_int_equal(kw_cc_reply_json(&c, &j, &n).code, 0);
                assert_true(n < outsz);
                memcpy(out, j, n);
                out[n] = '\0';
        }
        kw_cc_end(&c);
        return code;
}

static void b64(const void *p, size_t n, char *out, size_t outsz)
{
        struct kw_buf b;
        kw_buf_init(&b, outsz - 1);
        assert_int_equal(kw_b64_encode(p, n, &b).code, 0);
        memcpy(out, b.p, b.len);
        out[b.len] = '\0';
        kw_buf_free(&b);
}

/* A ciphertext as XKS carries it (base64 members). */
struct ct {
        char ct[128], iv[32], tag[32], md[32];
};

static const char *meta(const char *op, const char *principal)
{
        static char m[512];
        snprintf(m, sizeof m,
                 "\"requestMetadata\":{\"kmsRequestId\":\"req-1\",\"kmsOperation\":\"%s\","
                 "\"awsPrincipalArn\":\"%s\",\"kmsKeyArn\":\"arn:aws:kms:us-east-1:1:key/k\"}",
                 op, principal ? principal : "arn:aws:iam::1:role/ok-a");
        return m;
}

static const char *member(const cJSON *v, const char *name)
{
        const cJSON *m = cJSON_GetObjectItem(v, name);
        assert_true(cJSON_IsString(m));
        return m->valuestring;
}

static int encrypt_via(const struct xks_creds *cr, const char *name, const char *pt,
                       const char *aad, const char *principal, struct ct *out)
{
        char body[2048], p64[256], a64[256] = "", tail[200], reply[4096];
        b64(pt, strlen(pt), p64, sizeof p64);
        if (aad)
                b64(aad, strlen(aad), a64, sizeof a64);
        snprintf(body, sizeof body,
                 "{%s,\"plaintext\":\"%s\",\"encryptionAlgorithm\":\"AES_GCM\"%s%s%s}",
                 meta("Encrypt", principal), p64, aad ? ",\"additionalAuthenticatedData\":\"" : "",
                 a64, aad ? "\"" : "");
        snprintf(tail, sizeof tail, "keys/%s/encrypt", name);
        int code = xks_call(cr, tail, body, T_NONE, reply, sizeof reply);
        if (code == 0) {
                cJSON *v = cJSON_Parse(reply);
                assert_non_null(v);
                snprintf(out->ct, sizeof out->ct, "%s", member(v, "ciphertext"));
                snprintf(out->iv, sizeof out->iv, "%s", member(v, "initializationVector"));
                snprintf(out->tag, sizeof out->tag, "%s", member(v, "authenticationTag"));
                snprintf(out->md, sizeof out->md, "%s", member(v, "ciphertextMetadata"));
                cJSON_Delete(v);
        }
        return code;
}

static int encrypt(const char *name, const char *pt, const char *aad, const char *principal,
                   struct ct *out)
{
        return encrypt_via(&S_DEFAULT, name, pt, aad, principal, out);
}

static int decrypt(const char *name, const struct ct *in, const char *aad, char *out, size_t outsz)
{
        char body[2048], a64[256] = "", tail[200], reply[4096];
        if (aad)
                b64(aad, strlen(aad), a64, sizeof a64);
        snprintf(body, sizeof body,
                 "{%s,\"ciphertext\":\"%s\",\"encryptionAlgorithm\":\"AES_GCM\","
                 "\"initializationVector\":\"%s\",\"authenticationTag\":\"%s\","
                 "\"ciphertextMetadata\":\"%s\"%s%s%s}",
                 meta("Decrypt", NULL), in->ct, in->iv, in->tag, in->md,
                 aad ? ",\"additionalAuthenticatedData\":\"" : "", a64, aad ? "\"" : "");
        snprintf(tail, sizeof tail, "keys/%s/decrypt", name);
        int code = xks_call(&S_DEFAULT, tail, body, T_NONE, reply, sizeof reply);
        if (code == 0) {
                cJSON *v = cJSON_Parse(reply);
                struct kw_buf b;
                kw_buf_init(&b, outsz - 1);
                const char *p = member(v, "plaintext");
                assert_int_equal(kw_b64_decode(p, strlen(p), &b).code, 0);
                memcpy(out, b.p ? b.p : (const uint8_t *)"", b.len);
                out[b.len] = '\0';
                kw_buf_free(&b);
                cJSON_Delete(v);
        }
        return code;
}

/* One byte of a base64 member flipped (decoded, changed, encoded). */
static void flip(char *b64s, size_t cap, size_t at)
{
        struct kw_buf b;
        kw_buf_init(&b, 256);
        assert_int_equal(kw_b64_decode(b64s, strlen(b64s), &b).code, 0);
        b.p[at] ^= 1;
        b64(b.p, b.len, b64s, cap);
        kw_buf_free(&b);
}

static int wrap_as(const char *cn, uint8_t op, const char *name, uint32_t alg, const uint8_t *in,
                   size_t n, uint8_t *out, size_t *outlen)
{
        struct kw_cc_call c;
        begin_ekm(op, cn, &c);
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

static int wrap(uint8_t op, const char *name, uint32_t alg, const uint8_t *in, size_t n,
                uint8_t *out, size_t *outlen)
{
        return wrap_as(EKM_CN, op, name, alg, in, n, out, outlen);
}

#define EKM_RULES "{\"ekm\":{\"client_cns\":[\"" EKM_CN "\"]}}"
#define XKS_RULES "{\"xks\":{\"key_stores\":[\"default\"]}}"

/* --------------------------------------------------------------- cases */

static void custody_encrypt_decrypt_binds_aad(void **state)
{
        (void)state;
        assert_int_equal(create_key("gcm1", "AES", 256, 0, XKS_RULES), 0);
        struct ct x;
        char out[256];
        assert_int_equal(encrypt("gcm1", "secret payload", "aad-1", NULL, &x), 0);
        assert_string_equal(x.md, "a3d2MTox");   /* "kwv1:1" */
        assert_int_equal(decrypt("gcm1", &x, "aad-1", out, sizeof out), 0);
        assert_string_equal(out, "secret payload");
        assert_int_equal(decrypt("gcm1", &x, "aad-2", out, sizeof out), KW_ERR_DECRYPT);
        assert_int_equal(decrypt("gcm1", &x, NULL, out, sizeof out), KW_ERR_DECRYPT);
        struct ct t = x;
        flip(t.ct, sizeof t.ct, 0);
        assert_int_equal(decrypt("gcm1", &t, "aad-1", out, sizeof out), KW_ERR_DECRYPT);
        t = x;
        flip(t.tag, sizeof t.tag, 15);
        assert_int_equal(decrypt("gcm1", &t, "aad-1", out, sizeof out), KW_ERR_DECRYPT);
        t = x;
        flip(t.iv, sizeof t.iv, 0);
        assert_int_equal(decrypt("gcm1", &t, "aad-1", out, sizeof out), KW_ERR_DECRYPT);
        t = x;
        snprintf(t.md, sizeof t.md, "a3d2MToy");   /* "kwv1:2" */
        assert_int_equal(decrypt("gcm1", &t, "aad-1", out, sizeof out), KW_ERR_DECRYPT);
        /* two encryptions of the same plaintext differ (random IV) */
        struct ct y;
        assert_int_equal(encrypt("gcm1", "secret payload", "aad-1", NULL, &y), 0);
        assert_string_not_equal(x.iv, y.iv);
}

static void custody_rotation_keeps_old_versions(void **state)
{
        (void)state;
        assert_int_equal(create_key("rot1", "AES", 256, 0, XKS_RULES), 0);
        struct ct v1, v2;
        char out[64];
        assert_int_equal(encrypt("rot1", "one", NULL, NULL, &v1), 0);
        assert_int_equal(simple(KW_OP_KEY_ROTATE, "rot1", NULL), 0);
        assert_int_equal(encrypt("rot1", "two", NULL, NULL, &v2), 0);
        assert_string_equal(v2.md, "a3d2MToy");
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
                            "\"key_stores\":[\"default\"]}}";
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
        /* metadata still answers for a disabled key */
        char reply[512];
        assert_int_equal(xks_call(&S_DEFAULT, "keys/st1/metadata",
                                  "{\"requestMetadata\":{\"kmsRequestId\":\"m\",\"kmsOperation\":"
                                  "\"DescribeKey\",\"awsPrincipalArn\":\"arn:aws:iam::1:role/ok-a\"}}",
                                  T_NONE, reply, sizeof reply), 0);
        assert_non_null(strstr(reply, "\"keyStatus\":\"DISABLED\""));
        assert_int_equal(simple(KW_OP_KEY_SET_STATE, "st1", "enabled"), 0);
        assert_int_equal(encrypt("st1", "p", NULL, "arn:aws:iam::1:role/ok-a", &x), KW_ERR_OP_NOT_ALLOWED);
}

/* XKS store isolation: a key is reachable through a store only when its
 * rules list the store; otherwise it does not exist for that caller. */
static void custody_xks_store_isolation(void **state)
{
        (void)state;
        assert_int_equal(create_key("iso-none", "AES", 256, 0, NULL), 0);
        assert_int_equal(create_key("iso-d", "AES", 256, 0, XKS_RULES), 0);
        assert_int_equal(create_key("iso-s2", "AES", 256, 0, "{\"xks\":{\"key_stores\":[\"s2\"]}}"), 0);
        struct ct x;
        assert_int_equal(encrypt("iso-none", "p", NULL, NULL, &x), KW_ERR_NOT_FOUND);
        assert_int_equal(encrypt("iso-s2", "p", NULL, NULL, &x), KW_ERR_NOT_FOUND);
        assert_int_equal(encrypt("iso-d", "p", NULL, NULL, &x), 0);
        assert_int_equal(encrypt_via(&S_TWO, "iso-s2", "p", NULL, NULL, &x), 0);
        assert_int_equal(encrypt_via(&S_TWO, "iso-d", "p", NULL, NULL, &x), KW_ERR_NOT_FOUND);
}

static void custody_deletion_schedule_and_cancel(void **state)
{
        (void)state;
        assert_int_equal(create_key("del1", "AES", 256, 0, XKS_RULES), 0);
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
        assert_int_equal(create_key("kw1", "AES", 256, 0, EKM_RULES), 0);
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
        assert_int_equal(create_key("rsa1", "RSA", 2048, 0, EKM_RULES), 0);
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
        begin_ekm(KW_OP_UNWRAP, EKM_CN, &c);
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
        assert_int_equal(create_key("rsarot", "RSA", 2048, 0, EKM_RULES), 0);
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
        assert_int_equal(create_key("kwrot", "AES", 256, 0, EKM_RULES), 0);
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

static int import(const char *name, const char *type, uint32_t format, const char *material)
{
        struct kw_cc_call c;
        begin_admin(KW_OP_KEY_IMPORT, &c);
        kw_cc_put_str(&c, KW_T_NAME, name);
        kw_cc_put_str(&c, KW_T_KEY_TYPE, type);
        kw_cc_put_str(&c, KW_T_RULES, XKS_RULES);
        kw_cc_put_u32(&c, KW_T_MATERIAL_FORMAT, format);
        kw_cc_put_str(&c, KW_T_MATERIAL, material);
        return finish(&c);
}

/* The material arrives as the client sent it (base64 / PEM) and is decoded
 * in custody (finding 1: the front never decodes key material). */
static void custody_import_decodes_material_itself(void **state)
{
        (void)state;
        uint8_t key[32], iv[12], tag[16], ct[5];
        RAND_bytes(key, 32);
        RAND_bytes(iv, 12);
        char k64[64];
        b64(key, 32, k64, sizeof k64);
        assert_int_equal(import("imp1", "AES", KW_MATERIAL_AES_B64, k64), 0);
        /* encrypted here with OpenSSL directly, the XKS way, decrypted by the custody */
        uint8_t aad[] = { 0, 2, 'a', 'd', 6, 'k', 'w', 'v', '1', ':', '1' };
        assert_int_equal(kw_aes_gcm_encrypt(key, 32, iv, 12, aad, sizeof aad,
                                            (const uint8_t *)"hello", 5, ct, tag, 16).code, 0);
        struct ct x;
        b64(ct, 5, x.ct, sizeof x.ct);
        b64(iv, 12, x.iv, sizeof x.iv);
        b64(tag, 16, x.tag, sizeof x.tag);
        snprintf(x.md, sizeof x.md, "a3d2MTox");
        char out[16];
        assert_int_equal(decrypt("imp1", &x, "ad", out, sizeof out), 0);
        assert_string_equal(out, "hello");
        /* bad material is refused with the client's own field named */
        char k31[64];
        b64(key, 31, k31, sizeof k31);
        assert_int_equal(import("imp2", "AES", KW_MATERIAL_AES_B64, k31), KW_ERR_BAD_LENGTH);
        assert_int_equal(import("imp2", "AES", KW_MATERIAL_AES_B64, "not base64!"), KW_ERR_BAD_ENCODING);
        assert_int_equal(import("imp2", "AES", KW_MATERIAL_PEM, k64), KW_ERR_BAD_FIELD);
        assert_int_equal(import("imp2", "RSA", KW_MATERIAL_PEM,
                                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
                         KW_ERR_BAD_FIELD);
        /* an RSA key in PEM: its size is the key's own */
        EVP_PKEY *pk = NULL;
        assert_int_equal(kw_rsa_generate(2048, &pk).code, 0);
        struct kw_secret der = { 0 };
        assert_int_equal(kw_rsa_to_pkcs8(pk, &der).code, 0);
        kw_pkey_free(pk);
        char *d64 = malloc(4096);
        b64(der.p, der.len, d64, 4096);
        kw_secret_free(&der);
        assert_int_equal(import("imp-rsa", "RSA", KW_MATERIAL_PKCS8_B64, d64), 0);
        free(d64);
        cJSON *k = get_json(KW_OP_KEY_GET, "imp-rsa");
        assert_int_equal(cJSON_GetObjectItem(k, "size")->valueint, 2048);
        cJSON_Delete(k);
}

static void custody_token_check_answers_the_callers_own_token(void **state)
{
        (void)state;
        cJSON *v = get_json(KW_OP_TOKEN_CHECK, NULL);
        assert_string_equal(cJSON_GetObjectItem(v, "role")->valuestring, "admin");
        assert_string_equal(cJSON_GetObjectItem(v, "name")->valuestring, "initial-admin");
        cJSON_Delete(v);
        char bad[128];
        snprintf(bad, sizeof bad, "%s", admin_token);
        bad[5] = bad[5] == 'A' ? 'B' : 'A';
        struct kw_cc_call c;
        begin_as(KW_OP_TOKEN_CHECK, bad, &c);
        assert_int_equal(finish(&c), KW_ERR_AUTH);
}

static void custody_audit_records_use_and_verifies(void **state)
{
        (void)state;
        assert_int_equal(create_key("aud1", "AES", 256, 0, XKS_RULES), 0);
        struct ct x;
        assert_int_equal(encrypt("aud1", "p", NULL, NULL, &x), 0);
        struct kw_cc_call c;
        begin_admin(KW_OP_AUDIT_QUERY, &c);
        kw_cc_put_str(&c, KW_T_NAME, "aud1");
        assert_int_equal(kw_cc_invoke(&c).code, 0);
        const char *j;
        size_t n;
        assert_int_equal(kw_cc_reply_json(&c, &j, &n).code, 0);
        assert_non_null(strstr(j, "\"action\":\"key.create\""));
        assert_non_null(strstr(j, "\"action\":\"key.encrypt\""));
        assert_non_null(strstr(j, "\"actor\":\"xks:default:" AKID "\""));
        assert_non_null(strstr(j, "\"request_id\":\"req-1\""));
        kw_cc_end(&c);
        cJSON *v = get_json(KW_OP_AUDIT_VERIFY, NULL);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(v, "ok")));
        assert_true(cJSON_GetObjectItem(v, "rows")->valuedouble >= 2);
        cJSON_Delete(v);
}

/* ---- a compromised front (finding 2) ---- */

/* A request frame with no caller class at all, as a version-1 front sent
 * (custody defaulted it to admin): the reply's code. */
static int call_without_caller(uint8_t op, const char *name)
{
        struct kw_buf b, r;
        kw_buf_init(&b, KW_IPC_MAX_FRAME + 4);
        kw_buf_init(&r, KW_IPC_MAX_FRAME + 4);
        assert_int_equal(kw_msg_begin_request(&b, op, 7).code, 0);
        if (name)
                assert_int_equal(kw_msg_put_str(&b, KW_T_NAME, name).code, 0);
        assert_int_equal(kw_msg_end(&b).code, 0);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", cfg->custody.socket_path);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(kw_ipc_send(fd, &b).code, 0);
        assert_int_equal(kw_ipc_recv_one(fd, &r, 5000).code, 0);
        struct kw_msg m;
        assert_int_equal(kw_msg_parse(r.p, r.len, 1, &m).code, 0);
        close(fd);
        kw_buf_free(&b);
        kw_buf_free(&r);
        return m.code;
}

/* A request of class caller carrying no proof. */
static int call_as(uint8_t op, enum kw_caller caller, const char *name)
{
        struct kw_cc_call c;
        kw_cc_begin(cc, op, caller, &c);
        if (name)
                kw_cc_put_str(&c, KW_T_NAME, name);
        return finish(&c);
}

static void custody_refuses_requests_without_a_proven_caller(void **state)
{
        (void)state;
        assert_int_equal(create_key("cf-aes", "AES", 256, 0, XKS_RULES), 0);
        uint8_t in[32] = { 1 }, out[64];
        size_t ol;
        /* no caller class at all (version 1 defaulted to admin): refused */
        assert_int_equal(call_without_caller(KW_OP_KEY_GET, "cf-aes"), KW_ERR_PROTOCOL);
        assert_int_equal(call_without_caller(KW_OP_TOKEN_LIST, NULL), KW_ERR_PROTOCOL);
        /* admin without a token, public asking for admin ops */
        assert_int_equal(call_as(KW_OP_KEY_GET, KW_CALLER_ADMIN, "cf-aes"), KW_ERR_AUTH);
        assert_int_equal(call_as(KW_OP_KEY_GET, KW_CALLER_PUBLIC, "cf-aes"), KW_ERR_FORBIDDEN);
        assert_int_equal(call_as(KW_OP_TOKEN_LIST, KW_CALLER_PUBLIC, NULL), KW_ERR_FORBIDDEN);
        /* an XKS "caller" without a signature, for any op */
        assert_int_equal(call_as(KW_OP_XKS, KW_CALLER_XKS, NULL), KW_ERR_AUTH);
        assert_int_equal(call_as(KW_OP_KEY_LIST, KW_CALLER_XKS, NULL), KW_ERR_FORBIDDEN);
        /* EKM: only wrap/unwrap/metadata, only with an allowed CN, only on EKM keys */
        struct kw_cc_call c;
        begin_ekm(KW_OP_KEY_CREATE, EKM_CN, &c);
        kw_cc_put_str(&c, KW_T_NAME, "cf-new");
        kw_cc_put_str(&c, KW_T_KEY_TYPE, "AES");
        kw_cc_put_u32(&c, KW_T_KEY_SIZE, 256);
        assert_int_equal(finish(&c), KW_ERR_FORBIDDEN);
        begin_ekm(KW_OP_TOKEN_CREATE, EKM_CN, &c);
        kw_cc_put_str(&c, KW_T_TOKEN_NAME, "cf-tok");
        kw_cc_put_str(&c, KW_T_ROLE, "admin");
        assert_int_equal(finish(&c), KW_ERR_FORBIDDEN);
        assert_int_equal(wrap_as("someone.else", KW_OP_WRAP, "cf-aes", KW_ALG_A256KW, in, 32, out, &ol),
                         KW_ERR_AUTH);
        assert_int_equal(wrap(KW_OP_WRAP, "cf-aes", KW_ALG_A256KW, in, 32, out, &ol),
                         KW_ERR_ACCESS_DENIED);   /* an XKS-only key */
        /* the front's own proof fields of another class are refused */
        begin_admin(KW_OP_KEY_GET, &c);
        kw_cc_put_str(&c, KW_T_NAME, "cf-aes");
        kw_cc_put_str(&c, KW_T_EKM_CN, EKM_CN);
        assert_int_equal(finish(&c), KW_ERR_PROTOCOL);
}

static void custody_roles_are_checked_here(void **state)
{
        (void)state;
        /* an auditor token, made by the admin */
        struct kw_cc_call c;
        begin_admin(KW_OP_TOKEN_CREATE, &c);
        kw_cc_put_str(&c, KW_T_TOKEN_NAME, "aud-tok");
        kw_cc_put_str(&c, KW_T_ROLE, "auditor");
        assert_int_equal(kw_cc_invoke(&c).code, 0);
        const char *j;
        size_t n;
        assert_int_equal(kw_cc_reply_json(&c, &j, &n).code, 0);
        cJSON *v = cJSON_ParseWithLength(j, n);
        char auditor[128];
        snprintf(auditor, sizeof auditor, "%s", cJSON_GetObjectItem(v, "token")->valuestring);
        cJSON_Delete(v);
        kw_cc_end(&c);
        assert_non_null(strstr(last_actor("token.create"), "(initial-admin)"));
        /* it reads, it does not write, whatever the front lets through */
        begin_as(KW_OP_KEY_LIST, auditor, &c);
        assert_int_equal(finish(&c), 0);
        begin_as(KW_OP_KEY_CREATE, auditor, &c);
        kw_cc_put_str(&c, KW_T_NAME, "by-auditor");
        kw_cc_put_str(&c, KW_T_KEY_TYPE, "AES");
        kw_cc_put_u32(&c, KW_T_KEY_SIZE, 256);
        assert_int_equal(finish(&c), KW_ERR_FORBIDDEN);
        begin_as(KW_OP_TOKEN_CREATE, auditor, &c);
        kw_cc_put_str(&c, KW_T_TOKEN_NAME, "escalate");
        kw_cc_put_str(&c, KW_T_ROLE, "admin");
        assert_int_equal(finish(&c), KW_ERR_FORBIDDEN);
        begin_as(KW_OP_XKS_STORE_CREATE, auditor, &c);
        kw_cc_put_str(&c, KW_T_XKS_STORE, "evil");
        kw_cc_put_str(&c, KW_T_XKS_PREFIX, "/evil");
        assert_int_equal(finish(&c), KW_ERR_FORBIDDEN);
        begin_admin(KW_OP_KEY_GET, &c);
        kw_cc_put_str(&c, KW_T_NAME, "by-auditor");
        assert_int_equal(finish(&c), KW_ERR_NOT_FOUND);
        /* the refusals are audited under the verified token */
        assert_non_null(strstr(last_actor("key.create"), "(aud-tok)"));
}

static void custody_xks_runs_only_what_aws_signed(void **state)
{
        (void)state;
        assert_int_equal(create_key("sig1", "AES", 256, 0, XKS_RULES), 0);
        struct ct x;
        assert_int_equal(encrypt("sig1", "p", NULL, NULL, &x), 0);
        char body[1024];
        snprintf(body, sizeof body, "{%s,\"plaintext\":\"cA==\",\"encryptionAlgorithm\":\"AES_GCM\"}",
                 meta("Encrypt", NULL));
        /* another body under a valid signature, a changed canonical request,
         * another store's name, a wrong signature: all unauthenticated */
        assert_int_equal(xks_call(&S_DEFAULT, "keys/sig1/encrypt", body, T_BODY, NULL, 0), KW_ERR_AUTH);
        assert_int_equal(xks_call(&S_DEFAULT, "keys/sig1/encrypt", body, T_CREQ, NULL, 0), KW_ERR_AUTH);
        assert_int_equal(xks_call(&S_DEFAULT, "keys/sig1/encrypt", body, T_STORE, NULL, 0), KW_ERR_AUTH);
        assert_int_equal(xks_call(&S_DEFAULT, "keys/sig1/encrypt", body, T_SIG, NULL, 0), KW_ERR_AUTH);
        /* a store's credential signs only that store's paths */
        struct xks_creds cross = { "s2", "", AKID2, SECRET2 };
        assert_int_equal(xks_call(&cross, "keys/sig1/encrypt", body, T_NONE, NULL, 0), KW_ERR_AUTH);
        assert_int_equal(xks_call(&S_DEFAULT, "keys/sig1/encrypt", body, T_NONE, NULL, 0), 0);
        /* a signed body that is not valid for the operation: 400 after 401 */
        assert_int_equal(xks_call(&S_DEFAULT, "keys/sig1/encrypt", "{\"x\":1}", T_NONE, NULL, 0),
                         KW_ERR_MISSING_FIELD);
        assert_int_equal(xks_call(&S_DEFAULT, "keys/sig1/nope", body, T_NONE, NULL, 0), KW_ERR_NO_ROUTE);
}

/* A process that is not the front (here a child of the front: another pid,
 * same uid) is refused at the socket. */
static void custody_refuses_other_processes(void **state)
{
        (void)state;
        pid_t p = fork();
        assert_true(p >= 0);
        if (p == 0) {
                int fd = socket(AF_UNIX, SOCK_STREAM, 0);
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                snprintf(sa.sun_path, sizeof sa.sun_path, "%s", cfg->custody.socket_path);
                if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
                        _exit(2);
                struct kw_buf b;
                kw_buf_init(&b, 4096);
                if (kw_msg_begin_request(&b, KW_OP_PING, 1).code != 0 ||
                    kw_msg_put_u32(&b, KW_T_CALLER, KW_CALLER_PUBLIC).code != 0 ||
                    kw_msg_end(&b).code != 0)
                        _exit(3);
                kw_ignore(kw_ipc_send(fd, &b));
                struct kw_buf r;
                kw_buf_init(&r, KW_IPC_MAX_FRAME + 4);
                /* refused: the connection is closed without an answer */
                _exit(kw_ipc_recv_one(fd, &r, 5000).code == KW_ERR_CUSTODY_DOWN ? 0 : 1);
        }
        int st;
        assert_int_equal(waitpid(p, &st, 0), p);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
        /* and the front is still served */
        assert_int_equal(call_as(KW_OP_PING, KW_CALLER_PUBLIC, NULL), 0);
}

static void custody_last_admin_token_cannot_be_revoked(void **state)
{
        (void)state;
        cJSON *me = get_json(KW_OP_TOKEN_CHECK, NULL);
        char id[65];
        snprintf(id, sizeof id, "%s", cJSON_GetObjectItem(me, "id")->valuestring);
        cJSON_Delete(me);
        struct kw_cc_call c;
        begin_admin(KW_OP_TOKEN_REVOKE, &c);
        kw_cc_put_str(&c, KW_T_TOKEN_ID, id);
        assert_int_equal(finish(&c), KW_ERR_BAD_STATE);
        /* still works */
        cJSON *v = get_json(KW_OP_TOKEN_CHECK, NULL);
        cJSON_Delete(v);
}

/* ---- the socket: many requests in flight on one connection ---- */

static int raw_connect(void)
{
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", cfg->custody.socket_path);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        return fd;
}

static void put_ekm_wrap(struct kw_buf *all, uint32_t id, const char *key, const uint8_t *d, size_t n)
{
        struct kw_buf b;
        kw_buf_init(&b, KW_IPC_MAX_FRAME + 4);
        assert_int_equal(kw_msg_begin_request(&b, KW_OP_WRAP, id).code, 0);
        assert_int_equal(kw_msg_put_u32(&b, KW_T_CALLER, KW_CALLER_EKM).code, 0);
        assert_int_equal(kw_msg_put_str(&b, KW_T_EKM_CN, EKM_CN).code, 0);
        assert_int_equal(kw_msg_put_str(&b, KW_T_NAME, key).code, 0);
        assert_int_equal(kw_msg_put_u32(&b, KW_T_ALG, KW_ALG_A256KW).code, 0);
        assert_int_equal(kw_msg_put(&b, KW_T_DATA, d, n).code, 0);
        assert_int_equal(kw_msg_end(&b).code, 0);
        assert_int_equal(kw_buf_put(all, b.p, b.len).code, 0);
        kw_buf_free(&b);
}

static void put_simple(struct kw_buf *all, uint8_t op, uint32_t id, enum kw_caller caller,
                       const char *name)
{
        struct kw_buf b;
        kw_buf_init(&b, KW_IPC_MAX_FRAME + 4);
        assert_int_equal(kw_msg_begin_request(&b, op, id).code, 0);
        assert_int_equal(kw_msg_put_u32(&b, KW_T_CALLER, caller).code, 0);
        if (caller == KW_CALLER_ADMIN)
                assert_int_equal(kw_msg_put_str(&b, KW_T_TOKEN, admin_token).code, 0);
        if (name != NULL) {
                assert_int_equal(kw_msg_put_str(&b, KW_T_NAME, name).code, 0);
                assert_int_equal(kw_msg_put_str(&b, KW_T_KEY_TYPE, "AES").code, 0);
                assert_int_equal(kw_msg_put_u32(&b, KW_T_KEY_SIZE, 256).code, 0);
                assert_int_equal(kw_msg_put_str(&b, KW_T_RULES, EKM_RULES).code, 0);
        }
        assert_int_equal(kw_msg_end(&b).code, 0);
        assert_int_equal(kw_buf_put(all, b.p, b.len).code, 0);
        kw_buf_free(&b);
}

struct got {
        uint32_t id;
        int32_t code;
        uint8_t data[64];
        size_t len;
};

/* Reads n replies (in whatever order they come) into got[], in arrival order. */
static void read_replies(int fd, struct got *got, size_t n)
{
        struct kw_ipc_rx rx;
        kw_ipc_rx_init(&rx);
        size_t have = 0;
        while (have < n) {
                assert_int_equal(kw_ipc_rx_fill(&rx, fd, 10000).code, 0);
                const uint8_t *p;
                size_t len;
                int k;
                while ((k = kw_ipc_rx_next(&rx, &p, &len)) > 0) {
                        assert_true(have < n);
                        struct kw_msg m;
                        assert_int_equal(kw_msg_parse(p, len, 1, &m).code, 0);
                        got[have].id = m.id;
                        got[have].code = m.code;
                        got[have].len = 0;
                        if (kw_msg_has(&m, KW_T_DATA) && m.f[KW_T_DATA].len <= sizeof got[have].data) {
                                memcpy(got[have].data, m.f[KW_T_DATA].p, m.f[KW_T_DATA].len);
                                got[have].len = m.f[KW_T_DATA].len;
                        }
                        have++;
                }
                assert_int_equal(k, 0);
        }
        kw_ipc_rx_free(&rx);
}

static const struct got *reply_for(const struct got *got, size_t n, uint32_t id)
{
        const struct got *r = NULL;
        for (size_t i = 0; i < n; i++)
                if (got[i].id == id) {
                        assert_null(r);      /* exactly one reply per request */
                        r = &got[i];
                }
        assert_non_null(r);
        return r;
}

static double stat_of(const char *name)
{
        struct kw_cc_call c;
        kw_cc_begin(cc, KW_OP_STATS, KW_CALLER_PUBLIC, &c);
        cJSON *v = invoke_json(&c);
        double d = cJSON_GetNumberValue(cJSON_GetObjectItem(v, name));
        cJSON_Delete(v);
        return d;
}

/* Frames sent back to back on one connection, of both kinds (answered at
 * once from memory, queued for a worker) and one that does not parse:
 * exactly one reply each, carrying its request's id, each with its own
 * request's result. */
static void custody_pipelined_requests_answered_by_id(void **state)
{
        (void)state;
        assert_int_equal(create_key("pl-aes", "AES", 256, 0, EKM_RULES), 0);
        uint8_t d1[32], d2[32], w[64], u[64];
        size_t wl, ul;
        memset(d1, 0x11, sizeof d1);
        memset(d2, 0x22, sizeof d2);
        assert_int_equal(wrap(KW_OP_WRAP, "pl-aes", KW_ALG_A256KW, d1, 32, w, &wl), 0);  /* warm */
        double inl = stat_of("requests_inline_total"), queued = stat_of("requests_queued_total");
        struct kw_buf all;
        kw_buf_init(&all, 1 << 20);
        put_simple(&all, KW_OP_PING, 100, KW_CALLER_PUBLIC, NULL);
        put_simple(&all, KW_OP_KEY_LIST, 101, KW_CALLER_ADMIN, NULL);       /* the database */
        put_ekm_wrap(&all, 102, "pl-aes", d1, 32);
        /* 103: a header with its id, then a field with an unknown tag */
        static const uint8_t junk[] = { 0, 0, 0, 14, KW_PROTO_VERSION, KW_OP_PING, 0, 0, 0, 0, 0, 103,
                                        63, 0, 0, 0, 0, 0 };
        assert_int_equal(kw_buf_put(&all, junk, sizeof junk).code, 0);
        put_ekm_wrap(&all, 104, "pl-aes", d2, 32);
        int fd = raw_connect();
        assert_int_equal(write(fd, all.p, all.len), (ssize_t)all.len);
        struct got got[5];
        read_replies(fd, got, 5);
        close(fd);
        assert_int_equal(reply_for(got, 5, 100)->code, 0);
        assert_int_equal(reply_for(got, 5, 101)->code, 0);
        assert_int_equal(reply_for(got, 5, 103)->code, KW_ERR_PROTOCOL);
        const struct got *g1 = reply_for(got, 5, 102), *g2 = reply_for(got, 5, 104);
        assert_int_equal(g1->code, 0);
        assert_int_equal(g2->code, 0);
        assert_int_equal(wrap(KW_OP_UNWRAP, "pl-aes", KW_ALG_A256KW, g1->data, g1->len, u, &ul), 0);
        assert_memory_equal(u, d1, 32);
        assert_int_equal(wrap(KW_OP_UNWRAP, "pl-aes", KW_ALG_A256KW, g2->data, g2->len, u, &ul), 0);
        assert_memory_equal(u, d2, 32);
        /* the ping, both wraps and the junk frame went the fast way; the
         * key list (and the stats calls themselves) to a worker */
        assert_true(stat_of("requests_inline_total") >= inl + 4);
        assert_true(stat_of("requests_queued_total") >= queued + 1);
        kw_buf_free(&all);
}

/* A request that waits on a slow HSM does not hold up the requests read
 * after it on the same connection: they are answered first. */
static void custody_slow_hsm_call_does_not_stall_cached_keys(void **state)
{
        (void)state;
        assert_int_equal(create_key("sl-aes", "AES", 256, 0, EKM_RULES), 0);
        uint8_t d[32], w[64];
        size_t wl;
        memset(d, 0x33, sizeof d);
        assert_int_equal(wrap(KW_OP_WRAP, "sl-aes", KW_ALG_A256KW, d, 32, w, &wl), 0);  /* warm */
        hsm_ctl("delay_ms=1500\n");
        struct kw_buf all;
        kw_buf_init(&all, 1 << 20);
        put_simple(&all, KW_OP_KEY_CREATE, 300, KW_CALLER_ADMIN, "sl-new");   /* the HSM, slowly */
        for (uint32_t i = 0; i < 8; i++)
                put_ekm_wrap(&all, 301 + i, "sl-aes", d, 32);
        int fd = raw_connect();
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(write(fd, all.p, all.len), (ssize_t)all.len);
        struct got got[9];
        read_replies(fd, got, 9);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        close(fd);
        hsm_ctl("mode=up\n");
        /* the premise: the create did wait for the slowed HSM */
        assert_true(t1.tv_sec - t0.tv_sec + (t1.tv_nsec - t0.tv_nsec) / 1e9 >= 1.4);
        for (uint32_t i = 0; i < 8; i++) {
                assert_int_equal(got[i].id, 301 + i);  /* every cached-key wrap first */
                assert_int_equal(got[i].code, 0);
        }
        assert_int_equal(got[8].id, 300);
        assert_int_equal(got[8].code, 0);
        kw_buf_free(&all);
}

static void custody_restart_keeps_keys(void **state)
{
        (void)state;
        assert_int_equal(create_key("pers1", "AES", 256, 0, XKS_RULES), 0);
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
                cmocka_unit_test(custody_import_decodes_material_itself),
                cmocka_unit_test(custody_token_check_answers_the_callers_own_token),
                cmocka_unit_test(custody_audit_records_use_and_verifies),
                cmocka_unit_test(custody_refuses_requests_without_a_proven_caller),
                cmocka_unit_test(custody_roles_are_checked_here),
                cmocka_unit_test(custody_xks_runs_only_what_aws_signed),
                cmocka_unit_test(custody_refuses_other_processes),
                cmocka_unit_test(custody_last_admin_token_cannot_be_revoked),
                cmocka_unit_test(custody_pipelined_requests_answered_by_id),
                cmocka_unit_test(custody_slow_hsm_call_does_not_stall_cached_keys),
                cmocka_unit_test(custody_restart_keeps_keys),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
