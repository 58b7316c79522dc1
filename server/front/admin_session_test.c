/*
 * admin_session_test.c - the session cookie's strict parsing and the form
 * of session ids (admin_session.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "admin_session.c"

#define SID "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123-_Q"

static void admin_cookie_scan_finds_ours_among_others(void **state)
{
        (void)state;
        const char *v = NULL;
        size_t n = 0;
        assert_int_equal(admin_cookie_scan("a=1; __Host-keyward_session=" SID "; b=2", &v, &n), 1);
        assert_int_equal(n, 43);
        assert_memory_equal(v, SID, 43);
        assert_int_equal(admin_cookie_scan("__Host-keyward_session=" SID, &v, &n), 1);
        assert_int_equal(admin_cookie_scan("  __Host-keyward_session=" SID " ;", &v, &n), 1);
        assert_int_equal(n, 43);
        /* other names, prefixes of ours, ours as a value: not ours */
        v = NULL;
        assert_int_equal(admin_cookie_scan("keyward_session=" SID, &v, &n), 0);
        assert_int_equal(admin_cookie_scan("__Secure-keyward_session=" SID, &v, &n), 0);
        assert_int_equal(admin_cookie_scan("x__Host-keyward_session=" SID, &v, &n), 0);
        assert_int_equal(admin_cookie_scan("__host-keyward_session=" SID, &v, &n), 0);
        assert_int_equal(admin_cookie_scan("a=__Host-keyward_session=" SID, &v, &n), 0);
        assert_int_equal(admin_cookie_scan("__Host-keyward_session", &v, &n), 0);
        assert_int_equal(admin_cookie_scan("", &v, &n), 0);
        assert_null(v);
        assert_int_equal(admin_cookie_scan("__Host-keyward_session=a; __Host-keyward_session=b",
                                           &v, &n), 2);
}

static void admin_session_form_ok_43_base64url_only(void **state)
{
        (void)state;
        assert_true(admin_session_form_ok(SID, 43));
        assert_false(admin_session_form_ok(SID, 42));
        assert_false(admin_session_form_ok(SID "A", 44));
        assert_false(admin_session_form_ok("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123+/=", 43));
        assert_false(admin_session_form_ok("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123 _Q", 43));
        assert_false(admin_session_form_ok(NULL, 0));
        char nul[44];
        memcpy(nul, SID, 44);
        nul[10] = '\0';
        assert_false(admin_session_form_ok(nul, 43));
}

static void admin_set_cookie_exact_attributes(void **state)
{
        (void)state;
        struct kw_resp resp;
        memset(&resp, 0, sizeof resp);
        snprintf(resp.extra_headers, sizeof resp.extra_headers, "X-A: 1\r\n");
        set_cookie(&resp, SID, 43);
        assert_string_equal(resp.extra_headers,
                            "X-A: 1\r\nSet-Cookie: __Host-keyward_session=" SID
                            "; Path=/; Secure; HttpOnly; SameSite=Strict\r\n");
        resp.extra_headers[0] = '\0';
        set_cookie(&resp, NULL, 0);
        assert_string_equal(resp.extra_headers,
                            "Set-Cookie: __Host-keyward_session=; Path=/; Secure; HttpOnly; "
                            "SameSite=Strict; Max-Age=0\r\n");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(admin_cookie_scan_finds_ours_among_others),
                cmocka_unit_test(admin_session_form_ok_43_base64url_only),
                cmocka_unit_test(admin_set_cookie_exact_attributes),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
