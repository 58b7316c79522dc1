/* ratelimit_test.c - token bucket behaviour (counts, not timings). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/ratelimit.h"

static void ratelimit_take_zero_rate_always_allows(void **state)
{
        (void)state;
        struct kw_ratelimit rl;
        kw_ratelimit_init(&rl, 0, 0);
        for (int i = 0; i < 100000; i++)
                assert_int_equal(kw_ratelimit_take(&rl, NULL), 1);
}

static void ratelimit_take_burst_then_refuses_with_retry_after(void **state)
{
        (void)state;
        struct kw_ratelimit rl;
        /* a rate so low that no token refills during the test */
        kw_ratelimit_init(&rl, 1, 5);
        for (int i = 0; i < 5; i++)
                assert_int_equal(kw_ratelimit_take(&rl, NULL), 1);
        unsigned retry = 0;
        assert_int_equal(kw_ratelimit_take(&rl, &retry), 0);
        assert_true(retry >= 1 && retry <= 2);
}

static void ratelimit_peek_answers_as_take_without_taking(void **state)
{
        (void)state;
        struct kw_ratelimit rl;
        kw_ratelimit_init(&rl, 1, 2);
        for (int i = 0; i < 10; i++)
                assert_int_equal(kw_ratelimit_peek(&rl, NULL), 1);
        assert_int_equal(kw_ratelimit_take(&rl, NULL), 1);
        assert_int_equal(kw_ratelimit_peek(&rl, NULL), 1);
        assert_int_equal(kw_ratelimit_take(&rl, NULL), 1);
        unsigned retry = 0;
        assert_int_equal(kw_ratelimit_peek(&rl, &retry), 0);
        assert_true(retry >= 1 && retry <= 2);
        assert_int_equal(kw_ratelimit_take(&rl, NULL), 0);
        kw_ratelimit_init(&rl, 0, 0);
        assert_int_equal(kw_ratelimit_peek(&rl, NULL), 1);
}

static void ratelimit_init_caps_burst(void **state)
{
        (void)state;
        struct kw_ratelimit rl;
        kw_ratelimit_init(&rl, 100000000, 0);
        assert_true(rl.burst * 1000 <= (1u << 24));
        int allowed = 0;
        for (int i = 0; i < 20000; i++)
                allowed += kw_ratelimit_take(&rl, NULL);
        assert_true(allowed >= (int)rl.burst);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(ratelimit_take_zero_rate_always_allows),
                cmocka_unit_test(ratelimit_take_burst_then_refuses_with_retry_after),
                cmocka_unit_test(ratelimit_peek_answers_as_take_without_taking),
                cmocka_unit_test(ratelimit_init_caps_burst),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
