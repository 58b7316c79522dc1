/* err_test.c - the failure detail: set, read, cleared, and quoting itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "result.h"

static void err_detail_set_and_cleared(void **state)
{
        (void)state;
        kw_err_set_detail("no token labelled '%s'", "x");
        assert_string_equal(kw_err_detail(), "no token labelled 'x'");
        kw_err_clear_detail();
        assert_string_equal(kw_err_detail(), "");
}

/* A detail that wraps the previous one reads it whole, not its own
 * half-written copy (the outer layer adds where, the inner one what). */
static void err_detail_may_quote_itself(void **state)
{
        (void)state;
        kw_err_set_detail("duplicate member \"%s\"", "a");
        kw_err_set_detail("the header JSON does not parse strictly: %s", kw_err_detail());
        assert_string_equal(kw_err_detail(), "the header JSON does not parse strictly: duplicate member \"a\"");
        kw_err_set_detail("%s, then %s", kw_err_detail(), kw_err_detail());
        assert_string_equal(kw_err_detail(), "the header JSON does not parse strictly: duplicate member \"a\", then "
                                             "the header JSON does not parse strictly: duplicate member \"a\"");
}

static void err_detail_is_cut_not_overrun(void **state)
{
        (void)state;
        char big[2000];
        memset(big, 'x', sizeof big - 1);
        big[sizeof big - 1] = '\0';
        kw_err_set_detail("%s", big);
        assert_int_equal(strlen(kw_err_detail()), 511);
        kw_err_set_detail("again: %s", kw_err_detail());
        assert_int_equal(strlen(kw_err_detail()), 511);
        assert_memory_equal(kw_err_detail(), "again: xxx", 10);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(err_detail_set_and_cleared),
                cmocka_unit_test(err_detail_may_quote_itself),
                cmocka_unit_test(err_detail_is_cut_not_overrun),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
