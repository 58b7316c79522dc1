/*
 * selftest_judge_test.c - the self-test's verdicts (selftest_judge.h) on
 * the answers the appliance gives (the bodies below are what keywardd
 * sends: route_ops.c, route_xks.c, xks_request.c, route_ekm.c) and on
 * answers it must not take for them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "selftest_judge.h"

typedef enum kwp_verdict (*judge_fn)(long, const uint8_t *, size_t, char *, size_t);

/* One answer, its verdict, and words its why must have. */
struct jcase {
        long status;
        const char *body;
        enum kwp_verdict v;
        const char *want;
};

static void run(judge_fn f, const struct jcase *c, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                char why[KWP_WHY_MAX];
                memset(why, 'x', sizeof why);
                enum kwp_verdict v = f(c[i].status, (const uint8_t *)c[i].body, strlen(c[i].body), why, sizeof why);
                if (memchr(why, '\0', sizeof why) == NULL)
                        fail_msg("case %zu: why not terminated", i);
                if (v != c[i].v || strstr(why, c[i].want) == NULL)
                        fail_msg("case %zu: verdict %d (want %d), why \"%s\" (want \"%s\" in it)", i, v, c[i].v, why,
                                 c[i].want);
        }
}
#define RUN(f, cases) run((f), (cases), sizeof(cases) / sizeof(cases)[0])

static void judge_healthz_ok_degraded_unavailable(void **state)
{
        (void)state;
        static const struct jcase cases[] = {
                { 200, "{\"status\":\"ok\"}", KWP_PASS, "200 ok" },
                { 200, "{\"status\":\"degraded\",\"warnings\":[\"export_dir_full\",\"x\"]}", KWP_WARN,
                  "degraded (warnings: export_dir_full, x)" },
                { 503, "{\"status\":\"unavailable\",\"error\":\"custody_down\",\"message\":\"the custody "
                       "process does not answer\"}",
                  KWP_RETRY, "503 unavailable: custody_down: the custody process does not answer" },
                { 503, "Service Unavailable", KWP_RETRY, "503, not the health JSON" },
        };
        RUN(kwp_judge_healthz, cases);
}

static void judge_healthz_anything_else_fails(void **state)
{
        (void)state;
        static const struct jcase cases[] = {
                { 404, "{\"error\":\"no_route\",\"message\":\"no such path\"}", KWP_FAIL,
                  "HTTP 404, not the health JSON: {\"error\":\"no_route\"" },
                { 200, "{\"status\":\"starting\"}", KWP_FAIL, "200 starting" },
                { 200, "ok", KWP_FAIL, "HTTP 200, not the health JSON: ok" },
                { 200, "", KWP_FAIL, "an empty body" },
                { 200, "{\"status\":\"ok\",\"status\":\"ok\"}", KWP_FAIL, "not the health JSON" },
                { 200, "{\"status\":1}", KWP_FAIL, "not the health JSON" },
                { 500, "{\"status\":\"ok\"}", KWP_FAIL, "500 ok" },
                /* bytes of the server quoted as printable ASCII only */
                { 502, "bad\x1b[31m\xff gateway", KWP_FAIL, "bad?[31m? gateway" },
        };
        RUN(kwp_judge_healthz, cases);
}

static void judge_why_is_bounded_and_may_be_absent(void **state)
{
        (void)state;
        static char big[4096];
        memset(big, 'a', sizeof big - 1);
        char why[KWP_WHY_MAX];
        assert_int_equal(kwp_judge_healthz(502, (const uint8_t *)big, strlen(big), why, sizeof why), KWP_FAIL);
        assert_non_null(strstr(why, "aaa..."));
        assert_true(strlen(why) < 200);
        char one[1] = { 'x' };
        assert_int_equal(kwp_judge_xks_health(200, (const uint8_t *)"{}", 2, one, sizeof one), KWP_FAIL);
        assert_int_equal(one[0], '\0');
        assert_int_equal(kwp_judge_ekm_info(401, NULL, 0, NULL, 0), KWP_FAIL);
}

#define XKS_DOC(fleet, details)                                                                     \
        "{\"xksProxyFleetSize\":" fleet ",\"xksProxyVendor\":\"Keyward\",\"xksProxyModel\":\"Keyward " \
        "XKS Proxy\",\"ekmVendor\":\"SoftHSM\",\"ekmFleetDetails\":" details "}"
#define MEMBER(id, status) "{\"id\":\"" id "\",\"model\":\"PKCS#11 token\",\"healthStatus\":\"" status "\"}"

static void judge_xks_health_by_the_key_managers_status(void **state)
{
        (void)state;
        static const struct jcase cases[] = {
                { 200, XKS_DOC("1", "[" MEMBER("hsm-1", "ACTIVE") "]"), KWP_PASS,
                  "200 ACTIVE (Keyward Keyward XKS Proxy, fleet of 1)" },
                { 200, XKS_DOC("1", "[" MEMBER("hsm-1", "DEGRADED") "]"), KWP_WARN,
                  "the key manager hsm-1 is DEGRADED" },
                { 200, XKS_DOC("1", "[" MEMBER("hsm-1", "UNAVAILABLE") "]"), KWP_FAIL,
                  "the key manager hsm-1 is UNAVAILABLE" },
                { 200, XKS_DOC("1", "[" MEMBER("hsm-1", "active") "]"), KWP_FAIL, "an ekmFleetDetails entry is not" },
                /* the worst member wins */
                { 200,
                  XKS_DOC("3", "[" MEMBER("a", "DEGRADED") "," MEMBER("b", "UNAVAILABLE") "," MEMBER("c", "ACTIVE") "]"),
                  KWP_FAIL, "the key manager b is UNAVAILABLE" },
        };
        RUN(kwp_judge_xks_health, cases);
}

static void judge_xks_health_malformed_answers_fail(void **state)
{
        (void)state;
        static const struct jcase cases[] = {
                { 200, "{}", KWP_FAIL, "200 but not a health answer" },
                { 200, XKS_DOC("0", "[" MEMBER("a", "ACTIVE") "]"), KWP_FAIL, "200 but not a health answer" },
                { 200, XKS_DOC("\"1\"", "[" MEMBER("a", "ACTIVE") "]"), KWP_FAIL, "200 but not a health answer" },
                { 200, XKS_DOC("1", "[]"), KWP_FAIL, "1 to 10 ekmFleetDetails" },
                { 200, XKS_DOC("1", "{}"), KWP_FAIL, "1 to 10 ekmFleetDetails" },
                { 200, XKS_DOC("11", "[" MEMBER("0", "ACTIVE") "," MEMBER("1", "ACTIVE") "," MEMBER("2", "ACTIVE")
                                  "," MEMBER("3", "ACTIVE") "," MEMBER("4", "ACTIVE") "," MEMBER("5", "ACTIVE")
                                  "," MEMBER("6", "ACTIVE") "," MEMBER("7", "ACTIVE") "," MEMBER("8", "ACTIVE")
                                  "," MEMBER("9", "ACTIVE") "," MEMBER("10", "ACTIVE") "]"),
                  KWP_FAIL, "1 to 10 ekmFleetDetails" },
                { 200, XKS_DOC("1", "[{\"id\":\"a\",\"healthStatus\":\"ACTIVE\"}]"), KWP_FAIL,
                  "200 but an ekmFleetDetails entry is not" },
                { 200, XKS_DOC("1", "[\"ACTIVE\"]"), KWP_FAIL, "200 but an ekmFleetDetails entry is not" },
                { 200, "<html>", KWP_FAIL, "200, not an XKS answer: <html>" },
        };
        RUN(kwp_judge_xks_health, cases);
}

static void judge_xks_health_errors_by_name(void **state)
{
        (void)state;
        static const struct jcase cases[] = {
                { 401, "{\"errorName\":\"AuthenticationFailedException\",\"errorMessage\":\"the request could not "
                       "be authenticated\"}",
                  KWP_FAIL, "401 AuthenticationFailedException: the request could not be authenticated" },
                { 404, "{\"errorName\":\"InvalidUriPathException\",\"errorMessage\":\"the URI path is not valid\"}",
                  KWP_FAIL, "404 InvalidUriPathException: the URI path is not valid" },
                { 503, "{\"errorName\":\"DependencyTimeoutException\",\"errorMessage\":\"the key manager did not "
                       "answer in time\"}",
                  KWP_RETRY, "503 DependencyTimeoutException" },
                { 429, "{\"errorName\":\"ThrottlingException\",\"errorMessage\":\"the request rate is too high\"}",
                  KWP_RETRY, "429 ThrottlingException" },
                /* not XKS's error shape: a third member, EKM's names, plain text */
                { 401, "{\"errorName\":\"A\",\"errorMessage\":\"b\",\"c\":1}", KWP_FAIL, "401, not an XKS answer" },
                { 401, "{\"code\":\"Unauthorized\",\"message\":\"m\"}", KWP_FAIL, "401, not an XKS answer" },
                { 503, "busy", KWP_RETRY, "503, not an XKS answer: busy" },
        };
        RUN(kwp_judge_xks_health, cases);
}

static void judge_ekm_info_document_or_unauthorized_passes(void **state)
{
        (void)state;
        static const struct jcase cases[] = {
                { 200, "{\"api_version\":\"0.1-preview\",\"proxy_vendor\":\"Keyward\",\"proxy_name\":\"EKM Proxy "
                       "Service v0.1-preview\",\"ekm_vendor\":\"SoftHSM\",\"ekm_product\":\"SoftHSM2\"}",
                  KWP_PASS, "200 api_version 0.1-preview (EKM Proxy Service v0.1-preview)" },
                { 401, "{\"code\":\"Unauthorized\",\"message\":\"client certificate not accepted: no client "
                       "certificate\"}",
                  KWP_PASS, "401 Unauthorized without a client certificate: client certificate not accepted" },
        };
        RUN(kwp_judge_ekm_info, cases);
}

static void judge_ekm_info_anything_else_fails(void **state)
{
        (void)state;
        static const struct jcase cases[] = {
                { 200, "{\"api_version\":\"0.1-preview\"}", KWP_FAIL, "200 but not an info answer" },
                { 200, "{\"api_version\":\"\",\"proxy_vendor\":\"a\",\"proxy_name\":\"b\",\"ekm_vendor\":\"c\","
                       "\"ekm_product\":\"d\"}",
                  KWP_FAIL, "200 but not an info answer" },
                { 200, "{\"code\":\"Unauthorized\",\"message\":\"m\"}", KWP_FAIL, "200 but not an info answer" },
                { 401, "{\"code\":\"Forbidden\",\"message\":\"m\"}", KWP_FAIL, "401 Forbidden: m" },
                { 400, "{\"code\":\"InvalidRequest\",\"message\":\"no such EKM endpoint: POST "
                       "/azureekm[/prefix]/info or /{key-name}/metadata|wrapkey|unwrapkey\"}",
                  KWP_FAIL, "400 InvalidRequest: no such EKM endpoint" },
                { 503, "{\"code\":\"ServiceUnavailable\",\"message\":\"retry later\"}", KWP_RETRY,
                  "503 ServiceUnavailable: retry later" },
                /* EKM not enabled: the XKS catch-all, or the generic 404, answered */
                { 404, "{\"errorName\":\"InvalidUriPathException\",\"errorMessage\":\"the URI path is not valid\"}",
                  KWP_FAIL, "404, not the EKM API (is [azure_ekm_config] azure_ekm_enable set" },
                { 404, "{\"error\":\"no_route\",\"message\":\"no such path\"}", KWP_FAIL,
                  "404, not the EKM API (is [azure_ekm_config] azure_ekm_enable set" },
                { 401, "", KWP_FAIL, "401, not the EKM API" },
                { 429, "slow down", KWP_RETRY, "429, not an EKM answer: slow down" },
        };
        RUN(kwp_judge_ekm_info, cases);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(judge_healthz_ok_degraded_unavailable),
                cmocka_unit_test(judge_healthz_anything_else_fails),
                cmocka_unit_test(judge_why_is_bounded_and_may_be_absent),
                cmocka_unit_test(judge_xks_health_by_the_key_managers_status),
                cmocka_unit_test(judge_xks_health_malformed_answers_fail),
                cmocka_unit_test(judge_xks_health_errors_by_name),
                cmocka_unit_test(judge_ekm_info_document_or_unauthorized_passes),
                cmocka_unit_test(judge_ekm_info_anything_else_fails),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
