/*
 * route_ui_test.c - /ui: the embedded console files (route_ui.h), as built
 * from server/ui/ into libkeyward.a: redirect, index, 404, 405, HEAD, the
 * cache headers and the ETag (SHA-256 of the bytes) with its 304.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "route_ui.h"

static void resp_new(struct kw_resp *r)
{
        memset(r, 0, sizeof *r);
        kw_buf_init(&r->body, 1u << 20);
}

static const struct kw_ui_asset *asset(const char *name)
{
        for (size_t i = 0; i < kw_ui_assets_n; i++)
                if (strcmp(kw_ui_assets[i].name, name) == 0)
                        return &kw_ui_assets[i];
        return NULL;
}

static int body_is(const struct kw_resp *r, const struct kw_ui_asset *a)
{
        return r->body.len == a->len && memcmp(r->body.p, a->data, a->len) == 0;
}

static void route_ui_answer_bare_prefix_redirects(void **state)
{
        (void)state;
        struct kw_resp r;
        resp_new(&r);
        assert_string_equal(kw_ui_answer("GET", "/ui", NULL, &r), "");
        assert_int_equal(r.status, 301);
        assert_string_equal(r.extra_headers, "Location: /ui/\r\n");
        kw_buf_free(&r.body);
}

static void route_ui_answer_index_is_html_no_store(void **state)
{
        (void)state;
        const struct kw_ui_asset *a = asset("index.html");
        assert_non_null(a);
        struct kw_resp r;
        resp_new(&r);
        assert_string_equal(kw_ui_answer("GET", "/ui/", NULL, &r), "");
        assert_int_equal(r.status, 200);
        assert_string_equal(r.content_type, "text/html; charset=utf-8");
        assert_string_equal(r.cache_control, "no-store");
        assert_null(strstr(r.extra_headers, "ETag"));            /* never cached: no validator */
        assert_true(body_is(&r, a));
        /* the same file by its name; an ETag sent for HTML changes nothing */
        assert_string_equal(kw_ui_answer("GET", "/ui/index.html", "*", &r), "");
        assert_int_equal(r.status, 200);
        assert_true(body_is(&r, a));
        kw_buf_free(&r.body);
}

static void route_ui_answer_script_has_etag_and_304(void **state)
{
        (void)state;
        const struct kw_ui_asset *a = asset("app.js");
        assert_non_null(a);
        /* the ETag is the SHA-256 of the bytes, quoted */
        unsigned char md[32];
        unsigned int n = 0;
        assert_int_equal(EVP_Digest(a->data, a->len, md, &n, EVP_sha256(), NULL), 1);
        char want[80] = "\"";
        for (unsigned i = 0; i < 32; i++)
                snprintf(want + 1 + 2 * i, 3, "%02x", md[i]);
        strcat(want, "\"");   /* lint: allow (a test) */
        assert_string_equal(a->etag, want);

        struct kw_resp r;
        resp_new(&r);
        assert_string_equal(kw_ui_answer("GET", "/ui/app.js", NULL, &r), "");
        assert_int_equal(r.status, 200);
        assert_string_equal(r.content_type, "text/javascript; charset=utf-8");
        assert_string_equal(r.cache_control, "no-cache");
        char hdr[128];
        snprintf(hdr, sizeof hdr, "ETag: %s\r\n", want);
        assert_string_equal(r.extra_headers, hdr);
        assert_true(body_is(&r, a));

        /* If-None-Match: the tag, a weak form of it, in a list, or "*" */
        char list[256];
        const char *matching[4] = { want, list, "*", NULL };
        snprintf(list, sizeof list, "\"other\", W/%s ,\"x\"", want);
        for (int i = 0; matching[i] != NULL; i++) {
                assert_string_equal(kw_ui_answer("GET", "/ui/app.js", matching[i], &r), "");
                assert_int_equal(r.status, 304);
                assert_int_equal(r.body.len, 0);
                assert_string_equal(r.extra_headers, hdr);       /* 304 repeats the ETag */
                assert_string_equal(r.cache_control, "no-cache");
        }
        /* another tag, or a prefix of this one: the file */
        char prefix[80];
        snprintf(prefix, sizeof prefix, "%.20s\"", want);
        const char *other[3] = { "\"0000\"", prefix, "" };
        for (int i = 0; i < 3; i++) {
                assert_string_equal(kw_ui_answer("GET", "/ui/app.js", other[i], &r), "");
                assert_int_equal(r.status, 200);
                assert_true(body_is(&r, a));
        }
        kw_buf_free(&r.body);
}

static void route_ui_answer_head_like_get(void **state)
{
        (void)state;
        const struct kw_ui_asset *a = asset("app.css");
        assert_non_null(a);
        struct kw_resp r;
        resp_new(&r);
        assert_string_equal(kw_ui_answer("HEAD", "/ui/app.css", NULL, &r), "");
        assert_int_equal(r.status, 200);
        assert_string_equal(r.content_type, "text/css; charset=utf-8");
        assert_true(body_is(&r, a));      /* http.c sends its length, not the bytes */
        assert_non_null(strstr(r.extra_headers, "ETag: \""));
        kw_buf_free(&r.body);
}

static void route_ui_answer_unknown_is_404(void **state)
{
        (void)state;
        static const char *const paths[] = { "/ui/nope.js", "/uix", "/ui/app.js/", "/ui/sub/app.js",
                                             "/ui/APP.JS", "/ui//", "/ui/app.js%00", "/ui/index" };
        struct kw_resp r;
        resp_new(&r);
        for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
                assert_string_equal(kw_ui_answer("GET", paths[i], NULL, &r), "no_route");
                assert_int_equal(r.status, 404);
                assert_string_equal(r.content_type, "application/json");
                assert_null(r.cache_control);                      /* http.c: no-store */
                assert_non_null(strstr((const char *)r.body.p, "\"error\":\"no_route\""));
        }
        kw_buf_free(&r.body);
}

static void route_ui_answer_other_method_is_405(void **state)
{
        (void)state;
        struct kw_resp r;
        resp_new(&r);
        assert_string_equal(kw_ui_answer("POST", "/ui/", NULL, &r), "method_not_allowed");
        assert_int_equal(r.status, 405);
        assert_string_equal(r.extra_headers, "Allow: GET, HEAD\r\n");
        assert_null(r.cache_control);
        /* an unknown file is 404 whatever the method */
        assert_string_equal(kw_ui_answer("DELETE", "/ui/x.js", NULL, &r), "no_route");
        kw_buf_free(&r.body);
}

static void route_ui_assets_typed_by_extension(void **state)
{
        (void)state;
        assert_true(kw_ui_assets_n >= 4);
        for (size_t i = 0; i < kw_ui_assets_n; i++) {
                const struct kw_ui_asset *a = &kw_ui_assets[i];
                const char *dot = strrchr(a->name, '.');
                assert_non_null(dot);
                assert_int_equal(a->is_html, strcmp(dot, ".html") == 0);
                if (strcmp(dot, ".js") == 0)
                        assert_string_equal(a->content_type, "text/javascript; charset=utf-8");
                assert_int_equal(strlen(a->etag), 66);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(route_ui_answer_bare_prefix_redirects),
                cmocka_unit_test(route_ui_answer_index_is_html_no_store),
                cmocka_unit_test(route_ui_answer_script_has_etag_and_304),
                cmocka_unit_test(route_ui_answer_head_like_get),
                cmocka_unit_test(route_ui_answer_unknown_is_404),
                cmocka_unit_test(route_ui_answer_other_method_is_405),
                cmocka_unit_test(route_ui_assets_typed_by_extension),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
