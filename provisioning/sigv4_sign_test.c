/*
 * sigv4_sign_test.c - the SigV4 signer (sigv4_sign.h): byte for byte the
 * Authorization header of each of the 31 cases of AWS's SigV4 test suite
 * (front/sigv4_vectors_test.h), and an XKS request it signs verified the
 * way the appliance verifies one (the front's parser and string to sign,
 * then the custody's HMAC chain and a constant-time comparison).  Every
 * refusal leaves the output as it was.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/crypto.h>

#include "../server/common/sigv4_sts.h"
#include "../server/custody/sigv4_key.h"
#include "front/sigv4_vectors_test.h"
#include "sigv4_sign.h"

#define XKS_AKID "AKIAKEYWARDTESTAAAAA"
#define XKS_SECRET "k3yw4rdTestSecretAccessKey0123456789abcdefgh"
#define XKS_BODY "{\"requestMetadata\":{\"kmsRequestId\":\"r-1\",\"kmsOperation\":\"KmsHealthCheck\"}}"

static const struct kwp_sigv4_cred vec_cred = {
        .akid = "AKIDEXAMPLE", .secret = (const uint8_t *)SIGV4_VEC_SECRET, .secret_len = sizeof SIGV4_VEC_SECRET - 1,
        .region = "us-east-1", .service = "service",
};

static void sigv4_sign_suite_every_case_matches_its_authz(void **state)
{
        (void)state;
        find_all_cases();
        assert_int_equal(n_cases, 31);
        for (size_t c = 0; c < n_cases; c++) {
                char *text = case_file(case_dirs[c], "req");
                char *want = case_file(case_dirs[c], "authz");
                assert_true(text != NULL && want != NULL);
                struct vreq v;
                parse_req(text, &v);
                struct kw_sigv4_request rq = as_request(&v);
                char got[KWP_SIGV4_AUTHZ_MAX];
                if (kwp_sigv4_sign(&rq, &vec_cred, got, sizeof got).code != 0)
                        fail_msg("%s: %s", case_dirs[c], kw_err_detail());
                if (strcmp(got, want) != 0)
                        fail_msg("%s:\n%s\n--- want\n%s", case_dirs[c], got, want);
                free(text);
                free(want);
        }
}

/* An XKS health request as keyward-provision sends it. */
struct xks_req {
        char date[KWP_SIGV4_AMZ_DATE_LEN + 1];
        char body[sizeof XKS_BODY];
        struct kw_sigv4_header h[3];
        struct kw_sigv4_request rq;
};

static void xks_req_init(struct xks_req *x, time_t when)
{
        assert_int_equal(kwp_sigv4_amz_date(when, x->date).code, 0);
        memcpy(x->body, XKS_BODY, sizeof XKS_BODY);
        x->h[0] = (struct kw_sigv4_header){ "Host", 4, "127.0.0.1:9443", 14 };
        x->h[1] = (struct kw_sigv4_header){ "Content-Type", 12, "application/json", 16 };
        x->h[2] = (struct kw_sigv4_header){ "X-Amz-Date", 10, x->date, KWP_SIGV4_AMZ_DATE_LEN };
        x->rq = (struct kw_sigv4_request){ .method = "POST", .path = "/a/kms/xks/v1/health", .headers = x->h,
                                           .n_headers = 3, .body = (const uint8_t *)x->body,
                                           .body_len = sizeof XKS_BODY - 1, .normalize_path = 0 };
}

static const struct kwp_sigv4_cred xks_cred = {
        .akid = XKS_AKID, .secret = (const uint8_t *)XKS_SECRET, .secret_len = sizeof XKS_SECRET - 1,
        .region = "us-east-1", .service = "kms-xks-proxy",
};

/* What the appliance does with a request (route_xks.c, then custody_xks.c):
 * 1 when authz verifies for rq with secret. */
static int server_verifies(const struct kw_sigv4_request *rq, const char *authz, const char *secret)
{
        struct kw_sigv4_auth auth;
        static struct kw_sigv4_signed sg;
        if (kw_sigv4_parse_authorization(authz, &auth).code != 0 || kw_sigv4_string_to_sign(rq, &auth, &sg).code != 0)
                return 0;
        struct kw_sigv4_scope sc;
        struct kw_sigv4_creq cr;
        if (kw_sigv4_sts_parse(sg.sts, sg.sts_len, &sc).code != 0 ||
            kw_sigv4_creq_parse(sg.creq, sg.creq_len, &cr).code != 0)
                return 0;
        uint8_t key[32], sig[32];
        if (kw_sigv4_signing_key((const uint8_t *)secret, strlen(secret), sc.date, sc.region, sc.service, key).code != 0 ||
            kw_sigv4_signature(key, sg.sts, sg.sts_len, sig).code != 0)
                return 0;
        return CRYPTO_memcmp(sig, auth.signature, 32) == 0; /* lint: allow (constant time) */
}

static void sigv4_sign_xks_request_verifies_with_the_servers_verifier(void **state)
{
        (void)state;
        struct xks_req x;
        xks_req_init(&x, 1767225600);   /* 2026-01-01T00:00:00Z */
        char authz[KWP_SIGV4_AUTHZ_MAX];
        assert_int_equal(kwp_sigv4_sign(&x.rq, &xks_cred, authz, sizeof authz).code, 0);
        assert_non_null(strstr(authz, "Credential=" XKS_AKID "/20260101/us-east-1/kms-xks-proxy/aws4_request, "
                                      "SignedHeaders=content-type;host;x-amz-date, Signature="));
        assert_null(strstr(authz, XKS_SECRET));
        assert_true(server_verifies(&x.rq, authz, XKS_SECRET));
        /* another secret, another body, another path, another host: refused */
        assert_false(server_verifies(&x.rq, authz, "k3yw4rdTestSecretAccessKey0123456789abcdefgi"));
        x.body[5] ^= 1;
        assert_false(server_verifies(&x.rq, authz, XKS_SECRET));
        x.body[5] ^= 1;
        x.rq.path = "/b/kms/xks/v1/health";
        assert_false(server_verifies(&x.rq, authz, XKS_SECRET));
        x.rq.path = "/a/kms/xks/v1/health";
        x.h[0].value = "127.0.0.1:9444";
        assert_false(server_verifies(&x.rq, authz, XKS_SECRET));
        x.h[0].value = "127.0.0.1:9443";
        assert_true(server_verifies(&x.rq, authz, XKS_SECRET));
        /* the same request signed twice: the same header (no hidden state) */
        char again[KWP_SIGV4_AUTHZ_MAX];
        assert_int_equal(kwp_sigv4_sign(&x.rq, &xks_cred, again, sizeof again).code, 0);
        assert_string_equal(again, authz);
}

static void sigv4_sign_exactly_fitting_output(void **state)
{
        (void)state;
        struct xks_req x;
        xks_req_init(&x, 1767225600);
        char authz[KWP_SIGV4_AUTHZ_MAX];
        assert_int_equal(kwp_sigv4_sign(&x.rq, &xks_cred, authz, sizeof authz).code, 0);
        size_t n = strlen(authz);
        char small[KWP_SIGV4_AUTHZ_MAX];
        memset(small, 'x', sizeof small);
        assert_int_equal(kwp_sigv4_sign(&x.rq, &xks_cred, small, n).code, KW_ERR_TOO_LARGE);
        for (size_t i = 0; i < sizeof small; i++)   /* untouched */
                assert_int_equal(small[i], 'x');
        assert_int_equal(kwp_sigv4_sign(&x.rq, &xks_cred, small, n + 1).code, 0);
        assert_string_equal(small, authz);
}

/* One refusal: the code, and the output untouched. */
static void refused(const struct kw_sigv4_request *rq, const struct kwp_sigv4_cred *cred, int code)
{
        char out[KWP_SIGV4_AUTHZ_MAX];
        memset(out, 'x', sizeof out);
        int got = kwp_sigv4_sign(rq, cred, out, sizeof out).code;
        if (got != code)
                fail_msg("code %d, want %d (%s)", got, code, kw_err_detail());
        for (size_t i = 0; i < sizeof out; i++)
                assert_int_equal(out[i], 'x');
}

static void sigv4_sign_refuses_what_the_verifier_refuses(void **state)
{
        (void)state;
        struct xks_req x;
        xks_req_init(&x, 1767225600);
        struct kwp_sigv4_cred c = xks_cred;
        /* no X-Amz-Date; no Host */
        x.rq.n_headers = 2;
        refused(&x.rq, &c, KW_ERR_INPUT);
        x.rq.n_headers = 3;
        x.h[0].name = "Hast";
        refused(&x.rq, &c, KW_ERR_INPUT);
        x.h[0].name = "Host";
        /* an X-Amz-Date that is not one */
        x.h[2].value = "2026-01-01T00:00";
        refused(&x.rq, &c, KW_ERR_INPUT);
        x.h[2].value = x.date;
        /* header names outside the alphabet, empty, too long */
        x.h[1].name = "Content Type";
        refused(&x.rq, &c, KW_ERR_INPUT);
        x.h[1].name_len = 0;
        refused(&x.rq, &c, KW_ERR_INPUT);
        x.h[1].name_len = KW_SIGV4_MAX_HEADER_NAME + 1;
        refused(&x.rq, &c, KW_ERR_INPUT);
        x.h[1] = (struct kw_sigv4_header){ "Content-Type", 12, "application/json", 16 };
        /* credential parts the scope cannot carry */
        static const char *const akids[] = { "AKID/X", "AKID X", "", "AKID,Signature=00" };
        for (size_t i = 0; i < sizeof akids / sizeof akids[0]; i++) {
                c.akid = akids[i];
                refused(&x.rq, &c, KW_ERR_INPUT);
        }
        c = xks_cred;
        c.region = "us east 1";
        refused(&x.rq, &c, KW_ERR_INPUT);
        c.region = NULL;
        refused(&x.rq, &c, KW_ERR_INPUT);
        c = xks_cred;
        c.service = "kms/xks";
        refused(&x.rq, &c, KW_ERR_INPUT);
        /* secrets of 0 and 257 bytes */
        c = xks_cred;
        c.secret_len = 0;
        refused(&x.rq, &c, KW_ERR_BAD_LENGTH);
        static const uint8_t big[257] = { 'a' };
        c.secret = big;
        c.secret_len = sizeof big;
        refused(&x.rq, &c, KW_ERR_BAD_LENGTH);
        c.secret = NULL;
        c.secret_len = 1;
        refused(&x.rq, &c, KW_ERR_BAD_LENGTH);
}

static void sigv4_sign_too_many_headers_refused_repeated_names_signed_once(void **state)
{
        (void)state;
        struct xks_req x;
        xks_req_init(&x, 1767225600);
        struct kw_sigv4_header h[KW_SIGV4_MAX_SIGNED + 1];
        static char names[KW_SIGV4_MAX_SIGNED + 1][8];
        h[0] = x.h[0];
        h[1] = x.h[2];
        for (size_t i = 2; i < KW_SIGV4_MAX_SIGNED + 1; i++) {
                snprintf(names[i], sizeof names[i], "x-h%02zu", i);
                h[i] = (struct kw_sigv4_header){ names[i], 5, "v", 1 };
        }
        x.rq.headers = h;
        x.rq.n_headers = KW_SIGV4_MAX_SIGNED;
        char out[KWP_SIGV4_AUTHZ_MAX];
        assert_int_equal(kwp_sigv4_sign(&x.rq, &xks_cred, out, sizeof out).code, 0);
        assert_true(server_verifies(&x.rq, out, XKS_SECRET));
        x.rq.n_headers = KW_SIGV4_MAX_SIGNED + 1;
        refused(&x.rq, &xks_cred, KW_ERR_INPUT);
        /* the same name twice (any case): one signed header with both values */
        h[2] = (struct kw_sigv4_header){ "X-Twice", 7, "one", 3 };
        h[3] = (struct kw_sigv4_header){ "x-twice", 7, "two", 3 };
        x.rq.n_headers = 4;
        assert_int_equal(kwp_sigv4_sign(&x.rq, &xks_cred, out, sizeof out).code, 0);
        assert_non_null(strstr(out, "SignedHeaders=host;x-amz-date;x-twice, "));
        assert_true(server_verifies(&x.rq, out, XKS_SECRET));
}

static void sigv4_sign_amz_date_formats_utc_and_refuses_out_of_range(void **state)
{
        (void)state;
        char d[KWP_SIGV4_AMZ_DATE_LEN + 1];
        assert_int_equal(kwp_sigv4_amz_date(1440938160, d).code, 0);   /* the suite's date */
        assert_string_equal(d, "20150830T123600Z");
        assert_int_equal(kwp_sigv4_amz_date(0, d).code, 0);
        assert_string_equal(d, "19700101T000000Z");
        assert_int_equal((long long)kw_sigv4_parse_amz_date(d, KWP_SIGV4_AMZ_DATE_LEN), 0LL);
        memset(d, 'x', sizeof d);
        assert_int_equal(kwp_sigv4_amz_date(-1, d).code, KW_ERR_INPUT);
        assert_int_equal(kwp_sigv4_amz_date((time_t)253402300800LL, d).code, KW_ERR_INPUT);   /* year 10000 */
        for (size_t i = 0; i < sizeof d; i++)
                assert_int_equal(d[i], 'x');
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(sigv4_sign_suite_every_case_matches_its_authz),
                cmocka_unit_test(sigv4_sign_xks_request_verifies_with_the_servers_verifier),
                cmocka_unit_test(sigv4_sign_exactly_fitting_output),
                cmocka_unit_test(sigv4_sign_refuses_what_the_verifier_refuses),
                cmocka_unit_test(sigv4_sign_too_many_headers_refused_repeated_names_signed_once),
                cmocka_unit_test(sigv4_sign_amz_date_formats_utc_and_refuses_out_of_range),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
