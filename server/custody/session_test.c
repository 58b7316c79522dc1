/*
 * session_test.c - the console session table (session.c): ids and CSRF
 * tokens, idle and absolute expiry, the bound, ending an account's
 * sessions, and the CSRF comparison.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "custody/crypto.h"
#include "custody/session.h"

#define S(x) ((int64_t)(x) * 1000)   /* the table's "now" is in milliseconds */

static struct kw_session_info who(enum kw_session_kind kind, const char *account)
{
        struct kw_session_info w;
        memset(&w, 0, sizeof w);
        w.kind = kind;
        snprintf(w.account, sizeof w.account, "%s", account);
        snprintf(w.name, sizeof w.name, "%s", account);
        snprintf(w.role, sizeof w.role, "admin");
        snprintf(w.actor, sizeof w.actor, "user:%s", account);
        return w;
}

static int b64url_43(const char *s)
{
        if (strlen(s) != 43)
                return 0;
        for (; *s; s++)
                if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
                      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
                        return 0;
        return 1;
}

static void session_create_find_ids_and_csrf(void **state)
{
        (void)state;
        struct kw_sessions *s = NULL;
        assert_int_equal(kw_sessions_new(16, 10, 100, &s).code, 0);
        struct kw_session_info w = who(KW_SESSION_USER, "alice"), got, found;
        char id[44], id2[44];
        assert_int_equal(kw_sessions_create(s, &w, S(1000), 1700000000, id, &got).code, 0);
        assert_true(b64url_43(id));
        assert_true(b64url_43(got.csrf));
        assert_string_not_equal(id, got.csrf);
        uint8_t h[32];
        kw_sha256(id, 43, h);
        assert_memory_equal(h, got.id_hash, 32);   /* only the hash is kept */
        assert_int_equal(got.expires_wall, 1700000100);
        assert_int_equal(kw_sessions_create(s, &w, S(1000), 1700000000, id2, &got).code, 0);
        assert_string_not_equal(id, id2);
        assert_int_equal(kw_sessions_find(s, (const uint8_t *)id, 43, S(1005), &found).code, 0);
        assert_string_equal(found.account, "alice");
        /* wrong, short, absent ids */
        id[0] = id[0] == 'A' ? 'B' : 'A';
        memset(&found, 0x5a, sizeof found);
        assert_int_equal(kw_sessions_find(s, (const uint8_t *)id, 43, S(1005), &found).code, KW_ERR_AUTH);
        assert_int_equal(((uint8_t *)&found)[0], 0x5a);   /* untouched on failure */
        assert_int_equal(kw_sessions_find(s, (const uint8_t *)id2, 42, S(1005), &found).code, KW_ERR_AUTH);
        assert_int_equal(kw_sessions_find(s, NULL, 0, S(1005), &found).code, KW_ERR_AUTH);
        kw_sessions_free(s);
}

static void session_find_idle_and_absolute_expiry(void **state)
{
        (void)state;
        struct kw_sessions *s = NULL;
        assert_int_equal(kw_sessions_new(16, 10, 25, &s).code, 0);
        struct kw_session_info w = who(KW_SESSION_USER, "alice"), got;
        char id[44];
        assert_int_equal(kw_sessions_create(s, &w, S(1000), 0, id, &got).code, 0);
        /* each use restarts the idle time ... */
        assert_int_equal(kw_sessions_find(s, (const uint8_t *)id, 43, S(1009), &got).code, 0);
        assert_int_equal(kw_sessions_find(s, (const uint8_t *)id, 43, S(1018), &got).code, 0);
        /* ... but not the absolute lifetime */
        assert_int_equal(kw_sessions_find(s, (const uint8_t *)id, 43, S(1025), &got).code, KW_ERR_AUTH);
        assert_int_equal(kw_sessions_count(s, S(1025)), 0);
        char id2[44];
        assert_int_equal(kw_sessions_create(s, &w, S(2000), 0, id2, &got).code, 0);
        assert_int_equal(kw_sessions_find(s, (const uint8_t *)id2, 43, S(2010), &got).code, KW_ERR_AUTH);
        /* dropped, not merely refused: later times do not bring it back */
        assert_int_equal(kw_sessions_count(s, S(2000)), 0);
        kw_sessions_free(s);
}

static void session_create_over_bound_drops_least_recently_used(void **state)
{
        (void)state;
        struct kw_sessions *s = NULL;
        assert_int_equal(kw_sessions_new(3, 100, 1000, &s).code, 0);
        struct kw_session_info w = who(KW_SESSION_USER, "alice"), got;
        char ids[4][44];
        for (int i = 0; i < 3; i++)
                assert_int_equal(kw_sessions_create(s, &w, S(1000) + i, 0, ids[i], &got).code, 0);
        assert_int_equal(kw_sessions_find(s, (const uint8_t *)ids[0], 43, S(1010), &got).code, 0);
        assert_int_equal(kw_sessions_create(s, &w, S(1011), 0, ids[3], &got).code, 0);
        assert_int_equal(kw_sessions_count(s, S(1011)), 3);
        /* ids[1] was the least recently used */
        assert_int_equal(kw_sessions_find(s, (const uint8_t *)ids[1], 43, S(1012), &got).code, KW_ERR_AUTH);
        assert_int_equal(kw_sessions_find(s, (const uint8_t *)ids[0], 43, S(1012), &got).code, 0);
        assert_int_equal(kw_sessions_find(s, (const uint8_t *)ids[3], 43, S(1012), &got).code, 0);
        assert_int_equal(kw_sessions_new(KW_SESSIONS_MAX + 1, 1, 1, &s).code, KW_ERR_INPUT);
        kw_sessions_free(s);
}

static void session_end_account_ends_all_but_kept(void **state)
{
        (void)state;
        struct kw_sessions *s = NULL;
        assert_int_equal(kw_sessions_new(16, 100, 1000, &s).code, 0);
        struct kw_session_info a = who(KW_SESSION_USER, "alice"), t = who(KW_SESSION_TOKEN, "alice"),
                               b = who(KW_SESSION_USER, "bob"), got, keep;
        char ia[3][44], it[44], ib[44];
        for (int i = 0; i < 3; i++)
                assert_int_equal(kw_sessions_create(s, &a, S(1000), 0, ia[i], i == 0 ? &keep : &got).code, 0);
        assert_int_equal(kw_sessions_create(s, &t, S(1000), 0, it, &got).code, 0);
        assert_int_equal(kw_sessions_create(s, &b, S(1000), 0, ib, &got).code, 0);
        assert_int_equal(kw_sessions_end_account(s, KW_SESSION_USER, "alice", keep.id_hash), 2);
        assert_int_equal(kw_sessions_find(s, (const uint8_t *)ia[0], 43, S(1001), &got).code, 0);
        assert_int_equal(kw_sessions_find(s, (const uint8_t *)ia[1], 43, S(1001), &got).code, KW_ERR_AUTH);
        /* the token "alice" and the user bob are other accounts */
        assert_int_equal(kw_sessions_find(s, (const uint8_t *)it, 43, S(1001), &got).code, 0);
        assert_int_equal(kw_sessions_find(s, (const uint8_t *)ib, 43, S(1001), &got).code, 0);
        assert_int_equal(kw_sessions_end_account(s, KW_SESSION_USER, "alice", NULL), 1);
        assert_int_equal(kw_sessions_end_account(s, KW_SESSION_USER, "alice", NULL), 0);
        assert_int_equal(kw_sessions_count(s, S(1001)), 2);
        kw_sessions_free(s);
        kw_sessions_free(NULL);
}

static void session_csrf_ok_exact_only(void **state)
{
        (void)state;
        const char *c = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ";
        assert_true(kw_session_csrf_ok(c, (const uint8_t *)c, 43));
        assert_false(kw_session_csrf_ok(c, (const uint8_t *)c, 42));
        assert_false(kw_session_csrf_ok(c, NULL, 0));
        assert_false(kw_session_csrf_ok(c, (const uint8_t *)"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPR", 43));
        assert_false(kw_session_csrf_ok("", (const uint8_t *)"", 0));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(session_create_find_ids_and_csrf),
                cmocka_unit_test(session_find_idle_and_absolute_expiry),
                cmocka_unit_test(session_create_over_bound_drops_least_recently_used),
                cmocka_unit_test(session_end_account_ends_all_but_kept),
                cmocka_unit_test(session_csrf_ok_exact_only),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
