/*
 * keystore_users_test.c - console users in the key store (keystore_users.c)
 * and their passwords (password.c): insert, get, list, delete with the
 * last-admin rule shared with token revocation, password change, the
 * sign-in outcome and the lockout arithmetic; every refusal leaves the
 * store and the audit chain as they were.
 */
#define SQLITE_HAS_CODEC 1
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "custody/keystore.h"
#include "custody/password.h"

static struct kw_secret key_a;

#include "keystore_fixture_test.h"

static uint64_t audit_rows(struct fx *f)
{
        uint64_t rows = 99999, bad = 99999;
        assert_int_equal(kw_keystore_audit_verify(f->ks, &rows, &bad).code, 0);
        assert_int_equal(bad, 0);
        return rows;
}

/* A syntactically valid encoded hash (the store checks the shape only). */
#define FAKE_HASH "$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"

static void add_user(struct fx *f, const char *name, const char *role)
{
        struct kw_user_row u;
        memset(&u, 0, sizeof u);
        snprintf(u.name, sizeof u.name, "%s", name);
        snprintf(u.role, sizeof u.role, "%s", role);
        snprintf(u.hash, sizeof u.hash, "%s", FAKE_HASH);
        u.created = 100;
        assert_int_equal(kw_keystore_user_insert(f->ks, &u, NULL).code, 0);
}

static void add_token(struct fx *f, const char *id, const char *role, uint8_t fill)
{
        uint8_t h[32];
        memset(h, fill, sizeof h);
        struct kw_token_row t;
        memset(&t, 0, sizeof t);
        snprintf(t.id, sizeof t.id, "%s", id);
        snprintf(t.name, sizeof t.name, "tok-%s", id);
        snprintf(t.role, sizeof t.role, "%s", role);
        assert_int_equal(kw_keystore_token_insert(f->ks, &t, h, NULL).code, 0);
}

struct names {
        int n;
        char v[8][65];
        int hash_empty;
};

static int names_cb(const struct kw_user_row *row, void *arg)
{
        struct names *n = arg;
        snprintf(n->v[n->n++], 65, "%s", row->name);
        n->hash_empty += row->hash[0] == '\0';
        return 0;
}

static void keystore_user_insert_get_list(void **state)
{
        struct fx *f = *state;
        assert_int_equal(kw_keystore_schema_version(f->ks), 5);
        add_user(f, "zed", "auditor");
        add_user(f, "alice", "admin");
        struct kw_user_row u;
        assert_int_equal(kw_keystore_user_get(f->ks, "alice", &u).code, 0);
        assert_string_equal(u.role, "admin");
        assert_string_equal(u.hash, FAKE_HASH);
        assert_int_equal(u.created, 100);
        assert_int_equal(u.failed, 0);
        assert_int_equal(u.locked_until, 0);
        assert_int_equal(u.last_login, 0);
        struct names n = { 0 };
        assert_int_equal(kw_keystore_user_list(f->ks, names_cb, &n).code, 0);
        assert_int_equal(n.n, 2);
        assert_string_equal(n.v[0], "alice");
        assert_string_equal(n.v[1], "zed");
        assert_int_equal(n.hash_empty, 2);   /* lists carry no hash */
}

static void keystore_user_insert_invalid_fails_nothing_changed(void **state)
{
        struct fx *f = *state;
        add_user(f, "alice", "admin");
        uint64_t a0 = audit_rows(f);
        struct kw_user_row u;
        memset(&u, 0, sizeof u);
        snprintf(u.name, sizeof u.name, "alice");
        snprintf(u.role, sizeof u.role, "admin");
        snprintf(u.hash, sizeof u.hash, "%s", FAKE_HASH);
        assert_int_equal(kw_keystore_user_insert(f->ks, &u, NULL).code, KW_ERR_EXISTS);
        snprintf(u.name, sizeof u.name, "bob");
        snprintf(u.role, sizeof u.role, "root");
        assert_int_equal(kw_keystore_user_insert(f->ks, &u, NULL).code, KW_ERR_BAD_FIELD);
        snprintf(u.role, sizeof u.role, "admin");
        snprintf(u.hash, sizeof u.hash, "plain-password");
        assert_int_equal(kw_keystore_user_insert(f->ks, &u, NULL).code, KW_ERR_BAD_FIELD);
        snprintf(u.name, sizeof u.name, "bad name");
        snprintf(u.hash, sizeof u.hash, "%s", FAKE_HASH);
        assert_int_equal(kw_keystore_user_insert(f->ks, &u, NULL).code, KW_ERR_BAD_NAME);
        assert_int_equal(kw_keystore_user_get(f->ks, "bob", &u).code, KW_ERR_NOT_FOUND);
        assert_int_equal(audit_rows(f), a0);
}

static void keystore_user_delete_last_admin_fails_nothing_changed(void **state)
{
        struct fx *f = *state;
        add_user(f, "alice", "admin");
        add_user(f, "olga", "operator");
        uint64_t a0 = audit_rows(f);
        struct kw_user_row u;
        assert_int_equal(kw_keystore_user_delete(f->ks, "alice", NULL, &u).code, KW_ERR_BAD_STATE);
        assert_int_equal(kw_keystore_user_get(f->ks, "alice", &u).code, 0);
        assert_int_equal(audit_rows(f), a0);
        /* a non-admin goes whatever */
        assert_int_equal(kw_keystore_user_delete(f->ks, "olga", NULL, &u).code, 0);
        assert_string_equal(u.role, "operator");
        assert_int_equal(kw_keystore_user_delete(f->ks, "olga", NULL, &u).code, KW_ERR_NOT_FOUND);
        /* an active admin token counts: then the admin user may go */
        add_token(f, "t1", "admin", 1);
        assert_int_equal(kw_keystore_user_delete(f->ks, "alice", NULL, NULL).code, 0);
        assert_int_equal(kw_keystore_user_get(f->ks, "alice", &u).code, KW_ERR_NOT_FOUND);
}

static void keystore_token_revoke_counts_admin_users(void **state)
{
        struct fx *f = *state;
        struct kw_audit_entry a = { .actor = "admin", .action = "token.revoke", .result = "ok" };
        add_token(f, "t1", "admin", 1);
        assert_int_equal(kw_keystore_token_revoke(f->ks, "t1", &a).code, KW_ERR_BAD_STATE);
        add_user(f, "alice", "admin");
        assert_int_equal(kw_keystore_token_revoke(f->ks, "t1", &a).code, 0);
        /* now alice is the last admin credential */
        assert_int_equal(kw_keystore_user_delete(f->ks, "alice", NULL, NULL).code, KW_ERR_BAD_STATE);
}

static void keystore_user_login_counts_locks_and_resets(void **state)
{
        struct fx *f = *state;
        add_user(f, "alice", "admin");
        struct kw_lockout_policy pol = { 3, 30, 100 };
        struct kw_user_row u;
        uint64_t a0 = audit_rows(f);
        assert_int_equal(kw_keystore_user_login(f->ks, "alice", 0, 1000, &pol, NULL, &u).code, 0);
        assert_int_equal(u.failed, 1);
        assert_int_equal(u.locked_until, 0);
        assert_int_equal(kw_keystore_user_login(f->ks, "alice", 0, 1001, &pol, NULL, &u).code, 0);
        assert_int_equal(kw_keystore_user_login(f->ks, "alice", 0, 1002, &pol, NULL, &u).code, 0);
        assert_int_equal(u.failed, 3);
        assert_int_equal(u.locked_until, 1032);
        assert_int_equal(kw_keystore_user_login(f->ks, "alice", 0, 1040, &pol, NULL, &u).code, 0);
        assert_int_equal(u.locked_until, 1100);    /* 60 s */
        assert_int_equal(kw_keystore_user_login(f->ks, "alice", 0, 1200, &pol, NULL, &u).code, 0);
        assert_int_equal(u.locked_until, 1300);    /* 120 capped at 100 */
        assert_int_equal(audit_rows(f), a0 + 5);   /* each outcome audited */
        /* kept in the file: a reopened store still has the lock */
        ks_reopen(f);
        assert_int_equal(kw_keystore_user_get(f->ks, "alice", &u).code, 0);
        assert_int_equal(u.failed, 5);
        assert_int_equal(u.locked_until, 1300);
        assert_int_equal(kw_keystore_user_login(f->ks, "alice", 1, 1400, &pol, NULL, &u).code, 0);
        assert_int_equal(u.failed, 0);
        assert_int_equal(u.locked_until, 0);
        assert_int_equal(u.last_login, 1400);
        assert_int_equal(kw_keystore_user_login(f->ks, "nobody", 1, 1400, &pol, NULL, &u).code,
                         KW_ERR_NOT_FOUND);
}

static void keystore_user_set_password_resets_lock(void **state)
{
        struct fx *f = *state;
        add_user(f, "alice", "admin");
        struct kw_lockout_policy pol = { 1, 30, 100 };
        struct kw_user_row u;
        assert_int_equal(kw_keystore_user_login(f->ks, "alice", 0, 1000, &pol, NULL, &u).code, 0);
        assert_int_equal(u.locked_until, 1030);
        const char *h2 = "$argon2id$v=19$m=65536,t=3,p=1$b3RoZXJzYWx0b3RoZXJzYQ$aGFzaA";
        assert_int_equal(kw_keystore_user_set_password(f->ks, "alice", "nope", NULL, &u).code,
                         KW_ERR_BAD_FIELD);
        assert_int_equal(kw_keystore_user_set_password(f->ks, "bob", h2, NULL, &u).code,
                         KW_ERR_NOT_FOUND);
        assert_int_equal(kw_keystore_user_set_password(f->ks, "alice", h2, NULL, &u).code, 0);
        assert_int_equal(u.failed, 0);
        assert_int_equal(u.locked_until, 0);
        assert_int_equal(kw_keystore_user_get(f->ks, "alice", &u).code, 0);
        assert_string_equal(u.hash, h2);
}

static void keystore_lockout_seconds_arithmetic(void **state)
{
        (void)state;
        struct kw_lockout_policy pol = { 5, 30, 900 };
        assert_int_equal(kw_lockout_seconds(0, &pol), 0);
        assert_int_equal(kw_lockout_seconds(4, &pol), 0);
        assert_int_equal(kw_lockout_seconds(5, &pol), 30);
        assert_int_equal(kw_lockout_seconds(6, &pol), 60);
        assert_int_equal(kw_lockout_seconds(9, &pol), 480);
        assert_int_equal(kw_lockout_seconds(10, &pol), 900);
        assert_int_equal(kw_lockout_seconds(UINT32_MAX, &pol), 900);   /* no overflow */
        struct kw_lockout_policy big = { 1, 86400, 604800 };
        assert_int_equal(kw_lockout_seconds(4000000000u, &big), 604800);
}

static void password_hash_verify_and_form(void **state)
{
        (void)state;
        const uint8_t pw[] = "correct horse battery";
        char h[KW_USER_HASH_MAX];
        assert_int_equal(kw_password_hash(pw, sizeof pw - 1, h).code, 0);
        assert_true(strncmp(h, "$argon2id$v=19$m=65536,t=3,p=1$", 31) == 0);
        int m = -1;
        assert_int_equal(kw_password_verify(h, pw, sizeof pw - 1, &m).code, 0);
        assert_int_equal(m, 1);
        assert_int_equal(kw_password_verify(h, pw, sizeof pw - 2, &m).code, 0);
        assert_int_equal(m, 0);
        m = -1;
        assert_int_equal(kw_password_verify(NULL, pw, sizeof pw - 1, &m).code, 0);
        assert_int_equal(m, 0);   /* dummy: never */
        m = -1;
        assert_int_equal(kw_password_verify("$argon2id$garbage", pw, sizeof pw - 1, &m).code, 0);
        assert_int_equal(m, 0);
        char h2[KW_USER_HASH_MAX];
        assert_int_equal(kw_password_hash(pw, sizeof pw - 1, h2).code, 0);
        assert_string_not_equal(h, h2);   /* a fresh salt each time */
        assert_true(kw_password_acceptable((const uint8_t *)"twelve bytes", 12));
        assert_false(kw_password_acceptable((const uint8_t *)"eleven byte", 11));
        assert_false(kw_password_acceptable((const uint8_t *)"tab\there-and-more", 17));
        assert_false(kw_password_acceptable((const uint8_t *)"nul\0here-and-more", 17));
        assert_false(kw_password_acceptable((const uint8_t *)"bad utf8 \xff\xfe here", 17));
        assert_true(kw_password_acceptable((const uint8_t *)"p\xc3\xa4ssw\xc3\xb6rd-long", 15));
        uint8_t longpw[129];
        memset(longpw, 'a', sizeof longpw);
        assert_false(kw_password_acceptable(longpw, 129));
        assert_true(kw_password_acceptable(longpw, 128));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
                T(keystore_user_insert_get_list),
                T(keystore_user_insert_invalid_fails_nothing_changed),
                T(keystore_user_delete_last_admin_fails_nothing_changed),
                T(keystore_token_revoke_counts_admin_users),
                T(keystore_user_login_counts_locks_and_resets),
                T(keystore_user_set_password_resets_lock),
#undef T
                cmocka_unit_test(keystore_lockout_seconds_arithmetic),
                cmocka_unit_test(password_hash_verify_and_form),
        };
        return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
