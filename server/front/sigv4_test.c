/*
 * sigv4_test.c - the SigV4 verifier against AWS's SigV4 test suite (31
 * cases, /work/shared/vectors/sigv4 via KW_SRCDIR/../shared/vectors):
 * canonical request and string to sign byte for byte, the signature of
 * .authz verifies, and any one-byte change to the method, the path, a
 * signed header value, the body or the date makes it fail.  Plus the
 * Authorization parser's refusals and the string-to-sign parser.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/crypto.h>

#include "custody/sigv4_key.h"
#include "front/sigv4.h"
#include "front/sigv4_vectors_test.h"

/* 1 when the request verifies against the signature of auth. */
static int verifies(const struct kw_sigv4_request *rq, const struct kw_sigv4_auth *auth)
{
        static struct kw_sigv4_signed sg;
        if (kw_sigv4_string_to_sign(rq, auth, &sg).code != 0)
                return 0;
        const char *sts = sg.sts;
        size_t n = sg.sts_len;
        uint8_t key[32], sig[32];
        if (kw_sigv4_signing_key((const uint8_t *)SIGV4_VEC_SECRET, strlen(SIGV4_VEC_SECRET), auth->date,
                                 auth->region, auth->service, key).code != 0 ||
            kw_sigv4_signature(key, sts, n, sig).code != 0)
                return 0;
        /* the keyed context the custody process caches gives the same
         * signature, every time it is duplicated */
        EVP_MAC_CTX *keyed = NULL;
        assert_int_equal(kw_sigv4_mac_new(key, &keyed).code, 0);
        for (int i = 0; i < 2; i++) {
                uint8_t again[32];
                EVP_MAC_CTX *m = EVP_MAC_CTX_dup(keyed);
                assert_non_null(m);
                assert_int_equal(kw_sigv4_mac_finish(m, sts, n, again).code, 0);
                assert_memory_equal(again, sig, 32);
        }
        EVP_MAC_CTX_free(keyed);
        return CRYPTO_memcmp(sig, auth->signature, 32) == 0; /* lint: allow (constant time) */
}

static void mutate(char *p, size_t i) { p[i] = p[i] == 'x' ? 'y' : 'x'; }

static void sigv4_suite_all_cases_verify_and_tampering_fails(void **state)
{
        (void)state;
        find_all_cases();
        assert_int_equal(n_cases, 31);
        for (size_t c = 0; c < n_cases; c++) {
                const char *base = strrchr(case_dirs[c], '/') + 1;
                char *text = case_file(case_dirs[c], "req");
                char *creq = case_file(case_dirs[c], "creq");
                char *sts_want = case_file(case_dirs[c], "sts");
                char *authz = case_file(case_dirs[c], "authz");
                assert_true(text && creq && sts_want && authz);

                struct kw_sigv4_auth auth;
                assert_int_equal(kw_sigv4_parse_authorization(authz, &auth).code, 0);
                assert_string_equal(auth.akid, "AKIDEXAMPLE");
                struct vreq v;
                parse_req(text, &v);
                struct kw_sigv4_request rq = as_request(&v);
                char out[KW_SIGV4_CREQ_MAX];
                size_t n = 0;
                assert_int_equal(kw_sigv4_canonical_request(&rq, &auth, out, sizeof out, &n).code, 0);
                if (strcmp(out, creq) != 0)
                        fail_msg("%s: canonical request\n%s\n--- want\n%s", base, out, creq);
                static struct kw_sigv4_signed sg;
                assert_int_equal(kw_sigv4_string_to_sign(&rq, &auth, &sg).code, 0);
                sg.sts[sg.sts_len] = '\0';
                if (strcmp(sg.sts, sts_want) != 0)
                        fail_msg("%s: string to sign\n%s\n--- want\n%s", base, sg.sts, sts_want);
                assert_int_equal((long long)sg.when, 1440938160LL); /* 20150830T123600Z */
                /* the canonical request handed to custody is task 1's, and the
                 * string to sign names its hash, as custody checks */
                assert_int_equal(sg.creq_len, n);
                assert_memory_equal(sg.creq, out, n);
                struct kw_sigv4_scope sc;
                assert_int_equal(kw_sigv4_sts_parse(sg.sts, sg.sts_len, &sc).code, 0);
                uint8_t h[32];
                unsigned hl = 0;
                assert_int_equal(EVP_Digest(sg.creq, sg.creq_len, h, &hl, EVP_sha256(), NULL), 1);
                assert_memory_equal(h, sc.creq_sha256, 32);
                struct kw_sigv4_creq cr;
                assert_int_equal(kw_sigv4_creq_parse(sg.creq, sg.creq_len, &cr).code, 0);
                assert_int_equal(cr.method_len, strlen(v.method));
                assert_memory_equal(cr.method, v.method, cr.method_len);
                assert_string_equal(sc.region, "us-east-1");
                assert_string_equal(sc.service, "service");
                assert_true(verifies(&rq, &auth));

                /* one-byte changes: method, path, each signed header value, body, date */
                for (size_t i = 0; i < strlen(v.method); i++) {
                        char save = v.method[i];
                        mutate(v.method, i);
                        assert_false(verifies(&rq, &auth));
                        v.method[i] = save;
                }
                /* A change that dot-segment removal undoes ("/example/.." ->
                 * "/xxample/..") names the same resource: its canonical
                 * request is unchanged, so it verifies, as it must.  That
                 * can only happen for the normalize-path cases. */
                char creq0[KW_SIGV4_CREQ_MAX], creq1[KW_SIGV4_CREQ_MAX];
                assert_int_equal(kw_sigv4_canonical_request(&rq, &auth, creq0, sizeof creq0, &n).code, 0);
                for (size_t i = 0; i < strlen(v.path); i++) {
                        char save = v.path[i];
                        mutate(v.path, i);
                        assert_int_equal(kw_sigv4_canonical_request(&rq, &auth, creq1, sizeof creq1, &n).code, 0);
                        if (strcmp(creq0, creq1) == 0) {
                                assert_non_null(strstr(case_dirs[c], "/normalize-path/"));
                                assert_non_null(strstr(v.path, ".."));
                        } else if (verifies(&rq, &auth)) {
                                fail_msg("%s: path byte %zu changed still verifies", base, i);
                        }
                        v.path[i] = save;
                }
                /* the XKS mode (path as received) agrees wherever the path is
                 * already canonical, and refuses every changed byte */
                rq.normalize_path = 0;
                assert_int_equal(kw_sigv4_canonical_request(&rq, &auth, creq1, sizeof creq1, &n).code, 0);
                if (strcmp(creq0, creq1) == 0) {
                        assert_true(verifies(&rq, &auth));
                        for (size_t i = 0; i < strlen(v.path); i++) {
                                char save = v.path[i];
                                mutate(v.path, i);
                                assert_false(verifies(&rq, &auth));
                                v.path[i] = save;
                        }
                }
                rq.normalize_path = 1;
                for (size_t k = 0; k < v.nh; k++) {
                        int is_signed = 0;
                        for (size_t s = 0; s < auth.n_signed; s++)
                                if (v.h[k].name_len == strlen(auth.signed_headers[s]) &&
                                    strncasecmp(v.h[k].name, auth.signed_headers[s], v.h[k].name_len) == 0)
                                        is_signed = 1;
                        if (!is_signed)
                                continue;
                        char *val = (char *)v.h[k].value;
                        for (size_t i = 0; i < v.h[k].value_len; i++) {
                                char save = val[i];
                                mutate(val, i);
                                if (verifies(&rq, &auth))
                                        fail_msg("%s: header %.*s byte %zu changed still verifies",
                                                 base, (int)v.h[k].name_len, v.h[k].name, i);
                                val[i] = save;
                        }
                }
                for (size_t i = 0; i < v.body_len; i++) {
                        char *b = (char *)v.body;
                        char save = b[i];
                        mutate(b, i);
                        assert_false(verifies(&rq, &auth));
                        b[i] = save;
                }
                /* a body added to a request signed without one */
                if (v.body_len == 0) {
                        rq.body = (const uint8_t *)"x";
                        rq.body_len = 1;
                        assert_false(verifies(&rq, &auth));
                        rq.body = v.body;
                        rq.body_len = v.body_len;
                }
                assert_true(verifies(&rq, &auth));   /* every change was undone */
                free(text);
                free(creq);
                free(sts_want);
                free(authz);
        }
}

static const char good_authz[] =
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

static void sigv4_parse_authorization_accepts_any_order_and_no_spaces(void **state)
{
        (void)state;
        struct kw_sigv4_auth a;
        assert_int_equal(kw_sigv4_parse_authorization(good_authz, &a).code, 0);
        assert_string_equal(a.region, "us-east-1");
        assert_int_equal(a.n_signed, 2);
        assert_int_equal(kw_sigv4_parse_authorization(
                                 "AWS4-HMAC-SHA256 Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31,"
                                 "SignedHeaders=content-type;host;x-amz-date,"
                                 "Credential=AKIDEXAMPLE/20150830/us-east-1/kms-xks-proxy/aws4_request",
                                 &a).code,
                         0);
        assert_string_equal(a.service, "kms-xks-proxy");
        assert_int_equal(a.n_signed, 3);
}

static void sigv4_parse_authorization_refuses_malformed(void **state)
{
        (void)state;
        static const char *const bad[] = {
                NULL,
                "",
                "AWS4-HMAC-SHA1 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                "AWS4-HMAC-SHA256Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                /* missing x-amz-date / host in SignedHeaders */
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                /* unsorted, duplicate, upper case */
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=x-amz-date;host, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=Host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                /* bad scope */
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/2015083/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws5_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request/x, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                "AWS4-HMAC-SHA256 Credential=AKID EXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                /* signature: short, upper case, non-hex */
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf3",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5FA00FA31553B73EBF1942676E86291E8372FF2A2260956D9B8AAE1D763FBF31",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=zfa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                /* repeated / missing / unknown components */
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31, Foo=bar",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                struct kw_sigv4_auth a;
                memset(&a, 0x5a, sizeof a);
                if (kw_sigv4_parse_authorization(bad[i], &a).code != KW_ERR_AUTH)
                        fail_msg("case %zu accepted", i);
                for (size_t k = 0; k < sizeof a; k++)   /* untouched on failure */
                        assert_int_equal(((uint8_t *)&a)[k], 0x5a);
        }
}

static void sigv4_sts_parse_refuses_malformed(void **state)
{
        (void)state;
        static const char good[] =
                "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
                "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63";
        struct kw_sigv4_scope s;
        assert_int_equal(kw_sigv4_sts_parse(good, strlen(good), &s).code, 0);
        assert_string_equal(s.date, "20150830");
        char b[sizeof good];
        /* the scope day must be the request day; algorithm, separators */
        static const size_t pos[] = { 0, 16, 20, 33, 40, 60, 98, 100 };
        for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++) {
                memcpy(b, good, sizeof good);
                b[pos[i]] = b[pos[i]] == '\n' ? 'x' : (b[pos[i]] == '/' ? '_' : '\n');
                if (kw_sigv4_sts_parse(b, strlen(good), &s).code == 0)
                        fail_msg("position %zu accepted", pos[i]);
        }
        assert_int_not_equal(kw_sigv4_sts_parse(good, strlen(good) - 1, &s).code, 0);
}

static void sigv4_string_to_sign_refuses_missing_or_mismatched_date(void **state)
{
        (void)state;
        struct kw_sigv4_auth a;
        assert_int_equal(kw_sigv4_parse_authorization(good_authz, &a).code, 0);
        struct kw_sigv4_header h[2] = {
                { "Host", 4, "example.amazonaws.com", 21 },
                { "X-Amz-Date", 10, "20150831T123600Z", 16 },   /* not the scope's day */
        };
        struct kw_sigv4_request rq = { .method = "GET", .path = "/", .headers = h, .n_headers = 2 };
        static struct kw_sigv4_signed sg;
        assert_int_equal(kw_sigv4_string_to_sign(&rq, &a, &sg).code, KW_ERR_AUTH);
        rq.n_headers = 1;
        assert_int_equal(kw_sigv4_string_to_sign(&rq, &a, &sg).code, KW_ERR_AUTH);
        assert_int_equal((long long)kw_sigv4_parse_amz_date("20150830T123600Z", 16), 1440938160LL);
        assert_true(kw_sigv4_parse_amz_date("20151330T123600Z", 16) < 0);
        assert_true(kw_sigv4_parse_amz_date("20150830 123600Z", 16) < 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(sigv4_suite_all_cases_verify_and_tampering_fails),
                cmocka_unit_test(sigv4_parse_authorization_accepts_any_order_and_no_spaces),
                cmocka_unit_test(sigv4_parse_authorization_refuses_malformed),
                cmocka_unit_test(sigv4_sts_parse_refuses_malformed),
                cmocka_unit_test(sigv4_string_to_sign_refuses_missing_or_mismatched_date),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
