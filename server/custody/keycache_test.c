/* keycache_test.c - bounded, reference-counted key cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/secret.h"
#include "custody/keycache.h"

static int loads;

static kw_result fake_loader(const struct kw_key_row *row, uint32_t version, void *arg,
                             struct kw_ckey_material *ret)
{
        (void)arg;
        loads++;
        if (strcmp(row->name, "broken") == 0)
                KW_BAIL(KW_ERR_HSM_UNAVAILABLE);
        struct kw_secret s;
        KW_TRY(kw_secret_alloc(32, &s));
        memset(s.p, (int)version, 32);
        ret->aes = s;
        return KW_OK;
}

static struct kw_ckey *mk(const char *name, uint32_t versions)
{
        struct kw_key_row row;
        memset(&row, 0, sizeof row);
        snprintf(row.name, sizeof row.name, "%s", name);
        snprintf(row.type, sizeof row.type, "AES");
        row.size = 256;
        row.current_version = versions;
        row.tags_json = strdup("{}");
        row.rules_json = strdup("{}");
        struct kw_ckey *e = NULL;
        assert_int_equal(kw_ckey_new(&row, NULL, NULL, &e).code, 0);
        assert_null(row.tags_json);   /* ownership moved */
        return e;
}

static int setup(void **state)
{
        (void)state;
        int locked;
        return kw_secret_init(1 << 20, &locked).code;
}

static void keycache_get_put_hit_miss(void **state)
{
        (void)state;
        struct kw_keycache *kc;
        assert_int_equal(kw_keycache_new(4, &kc).code, 0);
        assert_null(kw_keycache_get(kc, "a"));
        struct kw_ckey *e = mk("a", 1);
        kw_keycache_put(kc, e);
        kw_keycache_release(kc, e);
        struct kw_ckey *g = kw_keycache_get(kc, "a");
        assert_ptr_equal(g, e);
        kw_keycache_release(kc, g);
        struct kw_keycache_stats st;
        kw_keycache_get_stats(kc, &st);
        assert_int_equal(st.hits, 1);
        assert_int_equal(st.misses, 1);
        assert_int_equal(st.entries, 1);
        kw_keycache_free(kc);
}

static void keycache_evicts_least_recent_beyond_bound(void **state)
{
        (void)state;
        struct kw_keycache *kc;
        assert_int_equal(kw_keycache_new(3, &kc).code, 0);
        const char *names[] = { "k1", "k2", "k3", "k4", "k5" };
        for (int i = 0; i < 3; i++) {
                struct kw_ckey *e = mk(names[i], 1);
                kw_keycache_put(kc, e);
                kw_keycache_release(kc, e);
        }
        kw_keycache_release(kc, kw_keycache_get(kc, "k1"));   /* k1 recent, k2 oldest */
        struct kw_ckey *e4 = mk("k4", 1);
        kw_keycache_put(kc, e4);
        kw_keycache_release(kc, e4);
        struct kw_ckey *g;
        assert_null(kw_keycache_get(kc, "k2"));
        assert_non_null(g = kw_keycache_get(kc, "k1"));
        kw_keycache_release(kc, g);
        struct kw_keycache_stats st;
        kw_keycache_get_stats(kc, &st);
        assert_int_equal(st.entries, 3);
        assert_int_equal(st.evictions, 1);
        kw_keycache_free(kc);
}

static void keycache_entry_in_use_survives_invalidate(void **state)
{
        (void)state;
        struct kw_keycache *kc;
        assert_int_equal(kw_keycache_new(2, &kc).code, 0);
        struct kw_ckey *e = mk("busy", 2);
        kw_keycache_put(kc, e);   /* caller keeps its reference */
        const struct kw_ckey_material *m;
        loads = 0;
        assert_int_equal(kw_ckey_material(e, 2, fake_loader, NULL, &m).code, 0);
        assert_int_equal(m->aes.p[0], 2);
        kw_keycache_invalidate(kc, "busy");
        assert_null(kw_keycache_get(kc, "busy"));
        /* still usable by the request that holds it (ASan would flag a free) */
        assert_int_equal(m->aes.p[31], 2);
        assert_int_equal(kw_ckey_material(e, 2, fake_loader, NULL, &m).code, 0);
        assert_int_equal(loads, 1);   /* loaded once, then from the entry */
        kw_keycache_release(kc, e);
        kw_keycache_free(kc);
}

static void keycache_material_errors_leave_entry_unloaded(void **state)
{
        (void)state;
        struct kw_keycache *kc;
        assert_int_equal(kw_keycache_new(2, &kc).code, 0);
        struct kw_ckey *e = mk("broken", 1);
        const struct kw_ckey_material *m = NULL;
        loads = 0;
        assert_int_equal(kw_ckey_material(e, 1, fake_loader, NULL, &m).code, KW_ERR_HSM_UNAVAILABLE);
        assert_null(m);
        assert_int_equal(kw_ckey_material(e, 1, fake_loader, NULL, &m).code, KW_ERR_HSM_UNAVAILABLE);
        assert_int_equal(loads, 2);   /* a failure is retried, not cached */
        assert_int_equal(kw_ckey_material(e, 0, fake_loader, NULL, &m).code, KW_ERR_NOT_FOUND);
        assert_int_equal(kw_ckey_material(e, 2, fake_loader, NULL, &m).code, KW_ERR_NOT_FOUND);
        kw_keycache_release(kc, e);
        kw_keycache_free(kc);
}

static void keycache_put_replaces_same_name(void **state)
{
        (void)state;
        struct kw_keycache *kc;
        assert_int_equal(kw_keycache_new(2, &kc).code, 0);
        struct kw_ckey *a = mk("x", 1), *b = mk("x", 2);
        kw_keycache_put(kc, a);
        kw_keycache_put(kc, b);
        struct kw_ckey *g = kw_keycache_get(kc, "x");
        assert_ptr_equal(g, b);
        assert_int_equal(g->row.current_version, 2);
        kw_keycache_release(kc, g);
        kw_keycache_release(kc, a);
        kw_keycache_release(kc, b);
        struct kw_keycache_stats st;
        kw_keycache_get_stats(kc, &st);
        assert_int_equal(st.entries, 1);
        kw_keycache_free(kc);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(keycache_get_put_hit_miss),
                cmocka_unit_test(keycache_evicts_least_recent_beyond_bound),
                cmocka_unit_test(keycache_entry_in_use_survives_invalidate),
                cmocka_unit_test(keycache_material_errors_leave_entry_unloaded),
                cmocka_unit_test(keycache_put_replaces_same_name),
        };
        return cmocka_run_group_tests(tests, setup, NULL);
}
