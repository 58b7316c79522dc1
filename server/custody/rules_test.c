/* rules_test.c - per-key access rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "custody/rules.h"

static struct kw_rules *parse_ok(const char *json)
{
        struct kw_rules *r = NULL;
        assert_int_equal(kw_rules_parse(json, strlen(json), &r).code, 0);
        assert_non_null(r);
        return r;
}

static void rules_glob_match_cases(void **state)
{
        (void)state;
        assert_true(kw_glob_match("abc", "abc"));
        assert_false(kw_glob_match("abc", "abcd"));
        assert_true(kw_glob_match("*", ""));
        assert_true(kw_glob_match("a*", "a"));
        assert_true(kw_glob_match("arn:aws:iam::1:role/app-*", "arn:aws:iam::1:role/app-web"));
        assert_false(kw_glob_match("arn:aws:iam::1:role/app-*", "arn:aws:iam::2:role/app-web"));
        assert_true(kw_glob_match("*a*b*c*", "xxaxxbxxcxx"));
        assert_false(kw_glob_match("*a*b*c*", "xxaxxcxxbxx"));
        assert_true(kw_glob_match("a?c", "a?c"));   /* '?' is not special */
        assert_false(kw_glob_match("a?c", "abc"));
        /* pathological pattern: linear-ish, must not blow up */
        char s[4001];
        memset(s, 'a', 4000);
        s[4000] = 0;
        assert_false(kw_glob_match("*a*a*a*a*a*a*a*a*b", s));
}

static void rules_parse_rejects_unknown_and_bad_types(void **state)
{
        (void)state;
        const char *bad[] = {
                "[]", "{\"aws\":{}}", "{\"xks\":{\"principal\":[\"x\"]}}",
                "{\"xks\":{\"principals\":\"x\"}}", "{\"xks\":{\"principals\":[1]}}",
                "{\"xks\":{\"principals\":[\"\"]}}", "{\"ekm\":[]}", "not json",
                "{\"xks\":{\"principals\":[\"a\"],\"principals\":[\"b\"]}}",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                struct kw_rules *r = (struct kw_rules *)0x1;
                assert_int_equal(kw_rules_parse(bad[i], strlen(bad[i]), &r).code, KW_ERR_BAD_FIELD);
                assert_ptr_equal(r, (struct kw_rules *)0x1);
        }
}

static void rules_parse_rejects_too_many_entries(void **state)
{
        (void)state;
        char json[4096] = "{\"ekm\":{\"client_cns\":[";
        for (int i = 0; i < 65; i++)
                strcat(json, i ? ",\"a\"" : "\"a\"");
        strcat(json, "]}}");
        struct kw_rules *r = NULL;
        assert_int_equal(kw_rules_parse(json, strlen(json), &r).code, KW_ERR_BAD_FIELD);
        assert_null(r);
}

static void rules_check_xks_lists(void **state)
{
        (void)state;
        struct kw_rules *r = parse_ok("{\"xks\":{\"principals\":[\"arn:aws:iam::111:role/app-*\"],"
                                      "\"operations\":[\"Encrypt\",\"Decrypt\"],"
                                      "\"source_vpcs\":[\"vpc-1*\"]}}");
        struct kw_caller_ctx c = { .kind = KW_CALLER_XKS, .principal = "arn:aws:iam::111:role/app-x",
                                   .operation = "Encrypt", .vpc = "vpc-123" };
        const char *rule = NULL;
        assert_int_equal(kw_rules_check(r, &c, &rule).code, 0);
        assert_null(rule);
        c.operation = "ReEncrypt";
        assert_int_equal(kw_rules_check(r, &c, &rule).code, KW_ERR_ACCESS_DENIED);
        assert_string_equal(rule, "xks.operations");
        c.operation = "Decrypt";
        c.vpc = NULL; /* a present list needs the value */
        assert_int_equal(kw_rules_check(r, &c, &rule).code, KW_ERR_ACCESS_DENIED);
        assert_string_equal(rule, "xks.source_vpcs");
        c.vpc = "vpc-123";
        c.principal = "arn:aws:iam::222:role/app-x";
        assert_int_equal(kw_rules_check(r, &c, &rule).code, KW_ERR_ACCESS_DENIED);
        assert_string_equal(rule, "xks.principals");
        /* a key whose rules name no EKM list is not an EKM key (opt-in,
         * issue 10); admins are never restricted */
        struct kw_caller_ctx e = { .kind = KW_CALLER_EKM, .cn = "any", .ekm_path = "/azureekm" };
        assert_int_equal(kw_rules_check(r, &e, &rule).code, KW_ERR_ACCESS_DENIED);
        assert_string_equal(rule, "ekm");
        struct kw_caller_ctx a = { .kind = KW_CALLER_ADMIN };
        assert_int_equal(kw_rules_check(r, &a, &rule).code, 0);
        kw_rules_free(r);
}

static void rules_check_ekm_cns(void **state)
{
        (void)state;
        struct kw_rules *r = parse_ok("{\"ekm\":{\"client_cns\":[\"contoso.managedhsmclient.azure.net\"]}}");
        struct kw_caller_ctx c = { .kind = KW_CALLER_EKM, .cn = "contoso.managedhsmclient.azure.net" };
        const char *rule = NULL;
        assert_int_equal(kw_rules_check(r, &c, &rule).code, 0);
        c.cn = "fabrikam.managedhsmclient.azure.net";
        assert_int_equal(kw_rules_check(r, &c, &rule).code, KW_ERR_ACCESS_DENIED);
        assert_string_equal(rule, "ekm.client_cns");
        c.cn = NULL;
        assert_int_equal(kw_rules_check(r, &c, &rule).code, KW_ERR_ACCESS_DENIED);
        kw_rules_free(r);
}

/* Opt-in: no rules (or no list of the caller's protocol) open a key to no
 * protocol caller; admins are not subject to rules. */
static void rules_check_protocols_are_opt_in(void **state)
{
        (void)state;
        struct kw_caller_ctx x = { .kind = KW_CALLER_XKS, .store = "default" };
        struct kw_caller_ctx e = { .kind = KW_CALLER_EKM, .cn = "a.example", .ekm_path = "/azureekm" };
        struct kw_caller_ctx a = { .kind = KW_CALLER_ADMIN };
        struct kw_caller_ctx p = { .kind = KW_CALLER_PUBLIC };
        const char *rule = NULL;
        assert_int_equal(kw_rules_check(NULL, &x, &rule).code, KW_ERR_ACCESS_DENIED);
        assert_string_equal(rule, "xks.key_stores");
        assert_int_equal(kw_rules_check(NULL, &e, &rule).code, KW_ERR_ACCESS_DENIED);
        assert_string_equal(rule, "ekm");
        assert_int_equal(kw_rules_check(NULL, &p, &rule).code, KW_ERR_ACCESS_DENIED);
        assert_int_equal(kw_rules_check(NULL, &a, &rule).code, 0);
        assert_false(kw_rules_in_store(NULL, "default"));
        struct kw_rules *r = parse_ok("{}");
        assert_int_equal(kw_rules_check(r, &e, &rule).code, KW_ERR_ACCESS_DENIED);
        assert_false(kw_rules_in_store(r, "default"));
        kw_rules_free(r);
        kw_rules_free(NULL);
}

static void rules_check_ekm_path_prefixes(void **state)
{
        (void)state;
        struct kw_rules *r = parse_ok("{\"ekm\":{\"path_prefixes\":[\"/azureekm/contoso*\"]}}");
        struct kw_caller_ctx c = { .kind = KW_CALLER_EKM, .cn = "any.example",
                                   .ekm_path = "/azureekm/contoso/pool-1" };
        const char *rule = NULL;
        assert_int_equal(kw_rules_check(r, &c, &rule).code, 0);
        c.ekm_path = "/azureekm/fabrikam";
        assert_int_equal(kw_rules_check(r, &c, &rule).code, KW_ERR_ACCESS_DENIED);
        assert_string_equal(rule, "ekm.path_prefixes");
        c.ekm_path = NULL;
        assert_int_equal(kw_rules_check(r, &c, &rule).code, KW_ERR_ACCESS_DENIED);
        kw_rules_free(r);
        /* both lists: both restrict */
        r = parse_ok("{\"ekm\":{\"path_prefixes\":[\"/azureekm\"],\"client_cns\":[\"a.example\"]}}");
        struct kw_caller_ctx d = { .kind = KW_CALLER_EKM, .cn = "a.example", .ekm_path = "/azureekm" };
        assert_int_equal(kw_rules_check(r, &d, &rule).code, 0);
        d.cn = "b.example";
        assert_int_equal(kw_rules_check(r, &d, &rule).code, KW_ERR_ACCESS_DENIED);
        assert_string_equal(rule, "ekm.client_cns");
        kw_rules_free(r);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(rules_glob_match_cases),
                cmocka_unit_test(rules_parse_rejects_unknown_and_bad_types),
                cmocka_unit_test(rules_parse_rejects_too_many_entries),
                cmocka_unit_test(rules_check_xks_lists),
                cmocka_unit_test(rules_check_ekm_cns),
                cmocka_unit_test(rules_check_protocols_are_opt_in),
                cmocka_unit_test(rules_check_ekm_path_prefixes),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
