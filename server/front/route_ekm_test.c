/*
 * route_ekm_test.c - the EKM route's parsing, validation, authentication
 * and error mapping.  Includes route_ekm.c to reach its static functions
 * (wireguard-style).  The custody round trips are covered by the black-box
 * tests (tests/blackbox/test_ekm.py) against a real custody process.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "route_ekm.c"

static const struct ekm_request untouched = { .op = EKM_OP_NONE, .key = "sentinel" };

/* ---- path ---- */

static void ekm_path_parse_endpoints(void **state)
{
        (void)state;
        struct ekm_request rq = untouched;
        assert_int_equal(ekm_path_parse("/azureekm/info", "", &rq).code, 0);
        assert_int_equal(rq.op, EKM_OP_INFO);
        assert_int_equal(ekm_path_parse("/azureekm/k-1/metadata", "", &rq).code, 0);
        assert_int_equal(rq.op, EKM_OP_METADATA);
        assert_string_equal(rq.key, "k-1");
        assert_int_equal(ekm_path_parse("/azureekm/a/b/Key9/wrapkey", "a/b", &rq).code, 0);
        assert_int_equal(rq.op, EKM_OP_WRAP);
        assert_string_equal(rq.key, "Key9");
        assert_int_equal(ekm_path_parse("/azureekm/p/info/unwrapkey", "p", &rq).code, 0);
        assert_int_equal(rq.op, EKM_OP_UNWRAP);
        assert_string_equal(rq.key, "info");
        char max[100];
        snprintf(max, sizeof max, "/azureekm/%064d/metadata", 0);
        assert_int_equal(ekm_path_parse(max, "", &rq).code, 0);
        assert_int_equal(strlen(rq.key), 64);
}

static void ekm_path_parse_unknown_paths_fail_unchanged(void **state)
{
        (void)state;
        static const char *const no_route[] = {
                "/azureekm", "/azureekm/", "/azureekmx/info", "/azureekm/info/", "/azureekm/INFO",
                "/azureekm/k/encrypt", "/azureekm/k/wrapkey/", "/azureekm/k/wrapkey/x",
                "/azureekm/k", "/azure/info", "/azureekm/k/WrapKey", "", "/azureekm/a/b/wrapkey",
        };
        for (size_t i = 0; i < sizeof no_route / sizeof no_route[0]; i++) {
                struct ekm_request rq = untouched;
                assert_int_equal(ekm_path_parse(no_route[i], "", &rq).code, KW_ERR_NO_ROUTE);
                assert_memory_equal(&rq, &untouched, sizeof rq);
        }
        struct ekm_request rq = untouched;
        /* the prefix is required when configured, and only it */
        assert_int_equal(ekm_path_parse("/azureekm/info", "p", &rq).code, KW_ERR_NO_ROUTE);
        assert_int_equal(ekm_path_parse("/azureekm/q/info", "p", &rq).code, KW_ERR_NO_ROUTE);
        assert_int_equal(ekm_path_parse("/azureekm/pp/info", "p", &rq).code, KW_ERR_NO_ROUTE);
        assert_memory_equal(&rq, &untouched, sizeof rq);
}

static void ekm_path_parse_bad_key_names_fail_unchanged(void **state)
{
        (void)state;
        char long_name[100];
        snprintf(long_name, sizeof long_name, "/azureekm/%065d/metadata", 0);
        const char *const bad[] = {
                "/azureekm//metadata", "/azureekm/a_b/metadata", "/azureekm/a.b/wrapkey",
                "/azureekm/a%2Db/wrapkey", "/azureekm/a b/wrapkey",
                long_name,
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                struct ekm_request rq = untouched;
                assert_int_equal(ekm_path_parse(bad[i], "", &rq).code, KW_ERR_BAD_NAME);
                assert_memory_equal(&rq, &untouched, sizeof rq);
        }
}

static void ekm_key_name_valid_alphabet(void **state)
{
        (void)state;
        assert_true(kw_ekm_key_name_valid("Az09-"));
        assert_false(kw_ekm_key_name_valid(""));
        assert_false(kw_ekm_key_name_valid(NULL));
        assert_false(kw_ekm_key_name_valid("a_b"));
        assert_false(kw_ekm_key_name_valid("a.b"));
        assert_false(kw_ekm_key_name_valid("01234567890123456789012345678901234567890123456789012345678901234"));
}

/* ---- api-version ---- */

static void ekm_api_version_check_cases(void **state)
{
        (void)state;
        assert_int_equal(ekm_api_version_check("api-version=0.1-preview").code, 0);
        assert_int_equal(ekm_api_version_check("a=1&api-version=0.1%2dpreview&b").code, 0);
        static const char *const bad[] = {
                NULL, "", "api-version", "api-version=", "api-version=0.2-preview",
                "api-version=0.1-PREVIEW", "Api-Version=0.1-preview",
                "api-version=0.1-preview&api-version=0.1-preview", "api-version=0.1-preview%",
                "api-version=0.1-preview%00", "api-version=0.1-preview%zz",
                "api-version=0.1-preview0.1-preview0.1-preview0.1-preview",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                assert_int_equal(ekm_api_version_check(bad[i]).code, KW_ERR_UNSUPPORTED);
}

/* ---- body ---- */

static kw_result parse(enum ekm_op op, const char *body, struct ekm_request *rq, cJSON **doc)
{
        memset(rq, 0, sizeof *rq);
        rq->op = op;
        *doc = NULL;
        return ekm_body_parse((const uint8_t *)body, strlen(body), rq, doc);
}

static void ekm_body_parse_wrap_ok(void **state)
{
        (void)state;
        struct ekm_request rq;
        cJSON *doc;
        const char *b = "{\"request_context\":{\"request_id\":\"r1\",\"correlation_id\":\"c1\","
                        "\"pool_name\":\"p1\",\"extra\":1},\"alg\":\"RSA-OAEP\",\"value\":\"AAEC\","
                        "\"unknown\":[1,2]}";
        assert_int_equal(parse(EKM_OP_WRAP, b, &rq, &doc).code, 0);
        assert_string_equal(rq.request_id, "r1");
        assert_string_equal(rq.correlation_id, "c1");
        assert_string_equal(rq.pool_name, "p1");
        assert_int_equal(rq.alg, KW_ALG_RSA_OAEP);
        assert_int_equal(rq.value_len, 4);
        assert_memory_equal(rq.value, "AAEC", 4);
        cJSON_Delete(doc);
        /* info: request_id optional, alg and value not needed */
        assert_int_equal(parse(EKM_OP_INFO, "{\"request_context\":{\"correlation_id\":\"c\","
                                            "\"pool_name\":\"p\"}}", &rq, &doc).code, 0);
        assert_string_equal(rq.request_id, "");
        cJSON_Delete(doc);
}

static void ekm_body_parse_errors(void **state)
{
        (void)state;
        static const struct {
                enum ekm_op op;
                const char *body;
                int code;
        } cases[] = {
                { EKM_OP_INFO, "", KW_ERR_MISSING_FIELD },
                { EKM_OP_INFO, "{", KW_ERR_BAD_JSON },
                { EKM_OP_INFO, "[]", KW_ERR_BAD_JSON },
                { EKM_OP_INFO, "{}", KW_ERR_MISSING_FIELD },
                { EKM_OP_INFO, "{\"request_context\":1}", KW_ERR_BAD_FIELD },
                { EKM_OP_INFO, "{\"request_context\":{\"pool_name\":\"p\"}}", KW_ERR_MISSING_FIELD },
                { EKM_OP_INFO, "{\"request_context\":{\"correlation_id\":\"c\"}}", KW_ERR_MISSING_FIELD },
                { EKM_OP_INFO, "{\"request_context\":{\"correlation_id\":\"\",\"pool_name\":\"p\"}}",
                  KW_ERR_BAD_FIELD },
                { EKM_OP_INFO, "{\"request_context\":{\"correlation_id\":\"a\\\"b\",\"pool_name\":\"p\"}}",
                  KW_ERR_BAD_FIELD },
                { EKM_OP_INFO, "{\"request_context\":{\"correlation_id\":\"a\\nb\",\"pool_name\":\"p\"}}",
                  KW_ERR_BAD_FIELD },
                { EKM_OP_INFO, "{\"request_context\":{\"correlation_id\":\"c\",\"pool_name\":\"p\","
                               "\"request_id\":7}}", KW_ERR_BAD_FIELD },
                { EKM_OP_INFO, "{\"request_context\":{\"correlation_id\":\"c\",\"pool_name\":\"p\"},"
                               "\"request_context\":{}}", KW_ERR_BAD_JSON },
                { EKM_OP_WRAP, "{\"request_context\":{\"correlation_id\":\"c\",\"pool_name\":\"p\"},"
                               "\"value\":\"AA\"}", KW_ERR_MISSING_FIELD },
                { EKM_OP_WRAP, "{\"request_context\":{\"correlation_id\":\"c\",\"pool_name\":\"p\"},"
                               "\"alg\":\"A128KW\",\"value\":\"AA\"}", KW_ERR_UNSUPPORTED_ALG },
                { EKM_OP_WRAP, "{\"request_context\":{\"correlation_id\":\"c\",\"pool_name\":\"p\"},"
                               "\"alg\":\"a256kw\",\"value\":\"AA\"}", KW_ERR_UNSUPPORTED_ALG },
                { EKM_OP_WRAP, "{\"request_context\":{\"correlation_id\":\"c\",\"pool_name\":\"p\"},"
                               "\"alg\":\"A256KW\"}", KW_ERR_MISSING_FIELD },
                { EKM_OP_WRAP, "{\"request_context\":{\"correlation_id\":\"c\",\"pool_name\":\"p\"},"
                               "\"alg\":\"A256KW\",\"value\":\"\"}", KW_ERR_BAD_FIELD },
                { EKM_OP_UNWRAP, "{\"request_context\":{\"correlation_id\":\"c\",\"pool_name\":\"p\"},"
                                 "\"alg\":\"A256KW\",\"value\":\"\"}", KW_ERR_DECRYPT },
                { EKM_OP_WRAP, "{\"request_context\":{\"correlation_id\":\"c\",\"pool_name\":\"p\"},"
                               "\"alg\":\"A256KW\",\"value\":1}", KW_ERR_BAD_FIELD },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                struct ekm_request rq;
                cJSON *doc;
                kw_result r = parse(cases[i].op, cases[i].body, &rq, &doc);
                if (r.code != cases[i].code)
                        fail_msg("case %zu: got %d, want %d", i, r.code, cases[i].code);
                assert_null(doc);
        }
}

static void ekm_body_parse_value_cap(void **state)
{
        (void)state;
        size_t n = EKM_VALUE_MAX_CHARS + 1;
        char *b = malloc(n + 200);
        assert_non_null(b);
        int h = snprintf(b, 200, "{\"request_context\":{\"correlation_id\":\"c\",\"pool_name\":\"p\"},"
                                 "\"alg\":\"A256KWP\",\"value\":\"");
        memset(b + h, 'A', n);
        snprintf(b + h + n, 10, "\"}");
        struct ekm_request rq;
        cJSON *doc;
        assert_int_equal(parse(EKM_OP_WRAP, b, &rq, &doc).code, KW_ERR_BAD_FIELD);
        assert_int_equal(parse(EKM_OP_UNWRAP, b, &rq, &doc).code, KW_ERR_DECRYPT);
        b[h + n - 1] = '"';     /* one shorter: at the cap */
        b[h + n] = '}';
        b[h + n + 1] = '\0';
        assert_int_equal(parse(EKM_OP_WRAP, b, &rq, &doc).code, 0);
        cJSON_Delete(doc);
        free(b);
}

/* ---- error mapping ---- */

static void ekm_error_of_table(void **state)
{
        (void)state;
        static const struct {
                int code;
                enum ekm_op op;
                int status;
                const char *name;
        } t[] = {
                { KW_ERR_BAD_JSON, EKM_OP_WRAP, 400, "InvalidRequest" },
                { KW_ERR_MISSING_FIELD, EKM_OP_INFO, 400, "InvalidRequest" },
                { KW_ERR_BAD_ENCODING, EKM_OP_WRAP, 400, "InvalidRequest" },
                { KW_ERR_BAD_NAME, EKM_OP_METADATA, 400, "InvalidRequest" },
                { KW_ERR_BAD_LENGTH, EKM_OP_WRAP, 400, "InvalidRequest" },
                { KW_ERR_DECRYPT, EKM_OP_UNWRAP, 400, "InvalidRequest" },
                { KW_ERR_NO_ROUTE, EKM_OP_NONE, 400, "InvalidRequest" },
                { KW_ERR_UNSUPPORTED, EKM_OP_INFO, 400, "UnsupportedApiVersion" },
                { KW_ERR_UNSUPPORTED_ALG, EKM_OP_WRAP, 400, "UnsupportedAlgorithm" },
                { KW_ERR_AUTH, EKM_OP_NONE, 401, "Unauthorized" },
                { KW_ERR_KEY_DISABLED, EKM_OP_WRAP, 403, "KeyDisabled" },
                { KW_ERR_KEY_PENDING_DELETION, EKM_OP_METADATA, 403, "KeyDisabled" },
                { KW_ERR_OP_NOT_ALLOWED, EKM_OP_UNWRAP, 403, "OperationNotAllowed" },
                { KW_ERR_NOT_FOUND, EKM_OP_WRAP, 404, "KeyNotFound" },
                { KW_ERR_ACCESS_DENIED, EKM_OP_WRAP, 404, "KeyNotFound" },
                { KW_ERR_KEY_DESTROYED, EKM_OP_WRAP, 404, "KeyNotFound" },
                { KW_ERR_OVERLOAD, EKM_OP_WRAP, 429, "TooManyRequests" },
                { KW_ERR_HSM_UNAVAILABLE, EKM_OP_UNWRAP, 502, "BadGateway" },
                { KW_ERR_HSM_TIMEOUT, EKM_OP_UNWRAP, 502, "BadGateway" },
                { KW_ERR_SEALED, EKM_OP_WRAP, 503, "ServiceUnavailable" },
                { KW_ERR_CUSTODY_DOWN, EKM_OP_METADATA, 503, "ServiceUnavailable" },
                { KW_ERR_CRYPTO, EKM_OP_WRAP, 500, "InternalError" },
                { KW_ERR_PROTOCOL, EKM_OP_WRAP, 500, "InternalError" },
                { KW_ERR_STORAGE, EKM_OP_WRAP, 500, "InternalError" },
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
                struct ekm_error e = ekm_error_of(t[i].code, t[i].op);
                if (e.status != t[i].status || strcmp(e.code, t[i].name) != 0)
                        fail_msg("%s: got %d %s", kw_err_name(t[i].code), e.status, e.code);
                assert_int_equal(e.retry, t[i].status == 429 || t[i].status == 503);
        }
        /* no oracle: every unwrap value failure is one answer, without detail */
        struct ekm_error a = ekm_error_of(KW_ERR_DECRYPT, EKM_OP_UNWRAP);
        struct ekm_error b = ekm_error_of(KW_ERR_BAD_LENGTH, EKM_OP_UNWRAP);
        assert_string_equal(a.message, b.message);
        assert_false(a.with_detail || b.with_detail);
        /* an invisible key is a missing key */
        struct ekm_error nf = ekm_error_of(KW_ERR_NOT_FOUND, EKM_OP_WRAP);
        struct ekm_error ad = ekm_error_of(KW_ERR_ACCESS_DENIED, EKM_OP_WRAP);
        assert_string_equal(nf.message, ad.message);
        assert_false(nf.with_detail || ad.with_detail);
}

static void ekm_fail_writes_code_message_and_retry(void **state)
{
        (void)state;
        struct kw_req req;
        memset(&req, 0, sizeof req);
        struct kw_resp resp;
        memset(&resp, 0, sizeof resp);
        kw_buf_init(&resp.body, 4096);
        kw_err_set_detail("denied by rule ekm.client_cns");
        ekm_fail(&req, &resp, KW_ERR_ACCESS_DENIED, EKM_OP_WRAP, 0);
        const char *s;
        assert_int_equal(kw_buf_cstr(&resp.body, &s).code, 0);
        assert_int_equal(resp.status, 404);
        assert_string_equal(s, "{\"code\":\"KeyNotFound\",\"message\":\"no such key\"}");
        assert_string_equal(req.log_error, "access_denied");
        ekm_fail(&req, &resp, KW_ERR_OVERLOAD, EKM_OP_WRAP, 7);
        assert_int_equal(resp.status, 429);
        assert_string_equal(resp.extra_headers, "Retry-After: 7\r\n");
        kw_err_set_detail("field 'alg' is missing");
        ekm_fail(&req, &resp, KW_ERR_MISSING_FIELD, EKM_OP_WRAP, 0);
        assert_int_equal(kw_buf_cstr(&resp.body, &s).code, 0);
        assert_string_equal(resp.extra_headers, "");
        assert_non_null(strstr(s, "\"code\":\"InvalidRequest\""));
        assert_non_null(strstr(s, "field 'alg' is missing"));
        kw_buf_free(&resp.body);
}

static void ekm_log_member_escapes_and_bounds(void **state)
{
        (void)state;
        struct kw_req req;
        memset(&req, 0, sizeof req);
        ekm_log_member(&req, "a", "x\"y\\z");
        assert_string_equal(req.log_ids, "\"a\":\"x\\\"y\\\\z\"");
        char big[2000];
        memset(big, '"', sizeof big - 1);
        big[sizeof big - 1] = '\0';
        ekm_log_member(&req, "b", big);
        size_t n = strlen(req.log_ids);
        assert_true(n < sizeof req.log_ids);
        assert_int_equal(req.log_ids[n - 1], '"');
        cJSON *v = NULL;
        char wrapped[sizeof req.log_ids + 4];
        snprintf(wrapped, sizeof wrapped, "{%s}", req.log_ids);
        assert_int_equal(kw_json_parse((const uint8_t *)wrapped, strlen(wrapped), 4, &v).code, 0);
        cJSON_Delete(v);
}

/* ---- metadata document ---- */

static void ekm_metadata_from_doc_cases(void **state)
{
        (void)state;
        struct kw_buf out;
        kw_buf_init(&out, 4096);
        const char *s;
        const char *aes = "{\"type\":\"AES\",\"size\":256,\"operations\":[\"encrypt\",\"unwrap\",\"wrap\"]}";
        assert_int_equal(ekm_metadata_from_doc(aes, strlen(aes), &out).code, 0);
        assert_int_equal(kw_buf_cstr(&out, &s).code, 0);
        assert_string_equal(s, "{\"key_type\":\"oct\",\"key_size\":256,\"key_ops\":[\"wrapKey\",\"unwrapKey\"]}");
        kw_buf_reset(&out);
        const char *rsa = "{\"type\":\"RSA\",\"size\":2048,\"operations\":[\"unwrap\"],"
                          "\"public_key\":{\"n\":\"AQAB\",\"e\":\"AQAB\",\"spki\":\"x\"}}";
        assert_int_equal(ekm_metadata_from_doc(rsa, strlen(rsa), &out).code, 0);
        assert_int_equal(kw_buf_cstr(&out, &s).code, 0);
        assert_string_equal(s, "{\"key_type\":\"RSA\",\"key_size\":2048,\"key_ops\":[\"unwrapKey\"],"
                               "\"n\":\"AQAB\",\"e\":\"AQAB\"}");
        kw_buf_reset(&out);
        const char *gcm = "{\"type\":\"AES\",\"size\":256,\"operations\":[\"encrypt\",\"decrypt\"]}";
        assert_int_equal(ekm_metadata_from_doc(gcm, strlen(gcm), &out).code, KW_ERR_OP_NOT_ALLOWED);
        assert_int_equal(out.len, 0);
        const char *nopub = "{\"type\":\"RSA\",\"size\":2048,\"operations\":[\"wrap\"]}";
        assert_int_equal(ekm_metadata_from_doc(nopub, strlen(nopub), &out).code, KW_ERR_PROTOCOL);
        assert_int_equal(ekm_metadata_from_doc("{", 1, &out).code, KW_ERR_PROTOCOL);
        assert_int_equal(out.len, 0);
        kw_buf_free(&out);
}

/* ---- authentication and set-up ---- */

static void ekm_authenticate_cases(void **state)
{
        (void)state;
        struct kw_config *cfg = NULL;
        assert_int_equal(kw_config_defaults(&cfg).code, 0);
        char *cns[] = { "contoso.managedhsmclient.azure.net" };
        cfg->ekm.azure_ekm_client_cns.v = cns;
        cfg->ekm.azure_ekm_client_cns.n = 1;
        struct kw_req req;
        memset(&req, 0, sizeof req);
        assert_int_equal(ekm_authenticate(cfg, &req).code, KW_ERR_AUTH);          /* none */
        req.client_cert_present = 1;
        snprintf(req.client_cn, sizeof req.client_cn, "contoso.managedhsmclient.azure.net");
        assert_int_equal(ekm_authenticate(cfg, &req).code, KW_ERR_AUTH);          /* unverified */
        req.client_cert_verified = 1;
        assert_int_equal(ekm_authenticate(cfg, &req).code, 0);
        assert_string_equal(req.log_principal, "ekm:contoso.managedhsmclient.azure.net");
        snprintf(req.client_cn, sizeof req.client_cn, "CONTOSO.managedhsmclient.azure.net");
        assert_int_equal(ekm_authenticate(cfg, &req).code, 0);                    /* DNS case */
        snprintf(req.client_cn, sizeof req.client_cn, "contoso.managedhsmclient.azure.net.evil");
        assert_int_equal(ekm_authenticate(cfg, &req).code, KW_ERR_AUTH);
        req.client_cn[0] = '\0';
        assert_int_equal(ekm_authenticate(cfg, &req).code, KW_ERR_AUTH);
        cfg->ekm.azure_ekm_disable_client_auth = true;
        req.client_cert_present = 0;
        assert_int_equal(ekm_authenticate(cfg, &req).code, 0);
        cfg->ekm.azure_ekm_client_cns.v = NULL;
        cfg->ekm.azure_ekm_client_cns.n = 0;
        kw_config_free(cfg);
}

static void ekm_setup_and_key_url(void **state)
{
        (void)state;
        struct kw_config *cfg = NULL;
        assert_int_equal(kw_config_defaults(&cfg).code, 0);
        /* client auth on, no CA */
        assert_int_equal(kw_route_ekm_setup(cfg).code, KW_ERR_CONFIG);
        cfg->ekm.azure_ekm_disable_client_auth = true;
        assert_int_equal(kw_route_ekm_setup(cfg).code, 0);
        char url[256] = "untouched";
        assert_int_equal(kw_ekm_key_url(cfg, "k-1", url, sizeof url).code, 0);
        assert_string_equal(url, "https://127.0.0.1:9998/azureekm/k-1");
        free(cfg->ekm.azure_ekm_path_prefix);
        cfg->ekm.azure_ekm_path_prefix = strdup("a/b");
        free(cfg->ekm.azure_ekm_public_host);
        cfg->ekm.azure_ekm_public_host = strdup("ekm.example:8443");
        assert_int_equal(kw_ekm_key_url(cfg, "k-1", url, sizeof url).code, 0);
        assert_string_equal(url, "https://ekm.example:8443/azureekm/a/b/k-1");
        snprintf(url, sizeof url, "untouched");
        assert_int_equal(kw_ekm_key_url(cfg, "k_1", url, sizeof url).code, KW_ERR_BAD_NAME);
        assert_int_equal(kw_ekm_key_url(cfg, "k-1", url, 10).code, KW_ERR_TOO_LARGE);
        assert_string_equal(url, "untouched");
        kw_config_free(cfg);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(ekm_path_parse_endpoints),
                cmocka_unit_test(ekm_path_parse_unknown_paths_fail_unchanged),
                cmocka_unit_test(ekm_path_parse_bad_key_names_fail_unchanged),
                cmocka_unit_test(ekm_key_name_valid_alphabet),
                cmocka_unit_test(ekm_api_version_check_cases),
                cmocka_unit_test(ekm_body_parse_wrap_ok),
                cmocka_unit_test(ekm_body_parse_errors),
                cmocka_unit_test(ekm_body_parse_value_cap),
                cmocka_unit_test(ekm_error_of_table),
                cmocka_unit_test(ekm_fail_writes_code_message_and_retry),
                cmocka_unit_test(ekm_log_member_escapes_and_bounds),
                cmocka_unit_test(ekm_metadata_from_doc_cases),
                cmocka_unit_test(ekm_authenticate_cases),
                cmocka_unit_test(ekm_setup_and_key_url),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
