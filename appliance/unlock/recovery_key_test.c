/* recovery_key_test.c - systemd-format recovery keys: generated, typed back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "recovery_key.h"

#define KEY "ffgikugr-itnrjbvg-rhicnvge-uglrvicv-uhtcjnnk-rcrihnbn-ekubeicr-cnnnkkcf"

static void recovery_key_new_is_grouped_modhex(void **state)
{
        (void)state;
        char a[KWU_RECOVERY_KEY_LEN + 1], b[KWU_RECOVERY_KEY_LEN + 1];
        assert_int_equal(kwu_recovery_key_new(a).code, 0);
        assert_int_equal(kwu_recovery_key_new(b).code, 0);
        assert_int_equal(strlen(a), KWU_RECOVERY_KEY_LEN);
        assert_string_not_equal(a, b);
        for (size_t i = 0; i < KWU_RECOVERY_KEY_LEN; i++) {
                if (i % 9 == 8)
                        assert_int_equal(a[i], '-');
                else
                        assert_non_null(strchr("cbdefghijklnrtuv", a[i]));
        }
        /* every letter appears over a few keys: the nibbles are not biased to a few */
        int seen[26] = { 0 };
        for (int k = 0; k < 64; k++) {
                assert_int_equal(kwu_recovery_key_new(a).code, 0);
                for (size_t i = 0; i < KWU_RECOVERY_KEY_LEN; i++)
                        if (a[i] != '-')
                                seen[a[i] - 'a'] = 1;
        }
        for (const char *p = "cbdefghijklnrtuv"; *p; p++)
                assert_true(seen[*p - 'a']);
}

static void recovery_key_normalize_accepts_how_people_type(void **state)
{
        (void)state;
        static const char *const typed[] = {
                KEY,
                KEY "\n",
                "FFGIKUGR-ITNRJBVG-RHICNVGE-UGLRVICV-UHTCJNNK-RCRIHNBN-EKUBEICR-CNNNKKCF",
                "ffgikugritnrjbvgrhicnvgeuglrvicvuhtcjnnkrcrihnbnekubeicrcnnnkkcf",
                "ffgikugr itnrjbvg rhicnvge uglrvicv\tuhtcjnnk rcrihnbn ekubeicr cnnnkkcf\n",
        };
        for (size_t i = 0; i < sizeof typed / sizeof typed[0]; i++) {
                char out[KWU_RECOVERY_KEY_LEN + 1];
                assert_int_equal(kwu_recovery_key_normalize(typed[i], strlen(typed[i]), out).code, 0);
                assert_string_equal(out, KEY);
        }
}

static void recovery_key_normalize_refuses_other_text(void **state)
{
        (void)state;
        static const char *const bad[] = {
                "",
                "ffgikugr",                                     /* too short */
                KEY "c",                                        /* too long */
                "afgikugr-itnrjbvg-rhicnvge-uglrvicv-uhtcjnnk-rcrihnbn-ekubeicr-cnnnkkcf",  /* 'a' */
                "ffgikug0-itnrjbvg-rhicnvge-uglrvicv-uhtcjnnk-rcrihnbn-ekubeicr-cnnnkkcf",  /* '0' */
                KEY "\n\n",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                char out[KWU_RECOVERY_KEY_LEN + 1];
                memset(out, 'x', sizeof out);
                assert_int_equal(kwu_recovery_key_normalize(bad[i], strlen(bad[i]), out).code, KW_ERR_BAD_ENCODING);
                for (size_t k = 0; k < sizeof out; k++)
                        assert_int_equal(out[k], 0);   /* wiped */
        }
        char out[KWU_RECOVERY_KEY_LEN + 1];
        assert_int_equal(kwu_recovery_key_normalize("ffgi\0kugr", 9, out).code, KW_ERR_BAD_ENCODING);
        assert_int_equal(kwu_recovery_key_normalize(NULL, 0, out).code, KW_ERR_BAD_ENCODING);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(recovery_key_new_is_grouped_modhex),
                cmocka_unit_test(recovery_key_normalize_accepts_how_people_type),
                cmocka_unit_test(recovery_key_normalize_refuses_other_text),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
