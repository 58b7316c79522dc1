/* readfile_test.c - one-line secret files (kw_read_secret_file). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/readfile.h"
#include "common/secret.h"

/* A new file holding n bytes of content; its path in path (the caller unlinks it). */
static void put(const char *content, size_t n, char path[64])
{
        snprintf(path, 64, "/tmp/kw-readfile-XXXXXX");
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, content, n), (ssize_t)n);
        assert_int_equal(close(fd), 0);
}

static void read_secret_file_one_final_newline_removed(void **state)
{
        (void)state;
        static const struct {
                const char *content, *want;
        } cases[] = {
                { "s3cret", "s3cret" },
                { "s3cret\n", "s3cret" },
                { "s3cret\r\n", "s3cret" },
                { "s3cret\n\n", "s3cret\n" },   /* only one */
                { "s3 cr\tet\n", "s3 cr\tet" }, /* any bytes: the caller checks its alphabet */
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                char path[64];
                put(cases[i].content, strlen(cases[i].content), path);
                struct kw_secret s = { NULL, 0 };
                assert_int_equal(kw_read_secret_file(path, "the test file", 16, &s).code, 0);
                assert_int_equal(s.len, strlen(cases[i].want));
                assert_memory_equal(s.p, cases[i].want, s.len);
                kw_secret_free(&s);
                unlink(path);
        }
}

/* One refusal: the code, a detail naming the file and never its content,
 * and the output untouched. */
static void refused(const char *path, size_t max, int code, const char *detail)
{
        uint8_t mark = 0;
        struct kw_secret s = { &mark, 77 };
        assert_int_equal(kw_read_secret_file(path, "the test file", max, &s).code, code);
        assert_true(s.p == &mark && s.len == 77);
        assert_non_null(strstr(kw_err_detail(), "the test file"));
        assert_non_null(strstr(kw_err_detail(), detail));
        assert_null(strstr(kw_err_detail(), "s3cret"));
}

static void read_secret_file_refusals_leave_the_output(void **state)
{
        (void)state;
        static const struct {
                const char *content;
                size_t max;
                const char *detail;
        } cases[] = {
                { "", 16, "is empty" },
                { "\r\n", 16, "is empty" },
                { "s3cret-s3cret\n", 12, "longer than 12 bytes" },
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                char path[64];
                put(cases[i].content, strlen(cases[i].content), path);
                refused(path, cases[i].max, KW_ERR_BAD_LENGTH, cases[i].detail);
                unlink(path);
        }
}

static void read_secret_file_exactly_max_and_far_too_long(void **state)
{
        (void)state;
        char path[64];
        put("s3cret-s3cret\r\n", 15, path);
        struct kw_secret s = { NULL, 0 };
        assert_int_equal(kw_read_secret_file(path, "the test file", 13, &s).code, 0);
        assert_int_equal(s.len, 13);
        kw_secret_free(&s);
        unlink(path);
        static char big[10000];
        memset(big, 's', sizeof big);
        put(big, sizeof big, path);
        refused(path, 16, KW_ERR_BAD_LENGTH, "longer than 16 bytes");
        unlink(path);
}

static void read_secret_file_missing_or_not_a_file(void **state)
{
        (void)state;
        refused("/nonexistent/kw-readfile-missing", 16, KW_ERR_IO, "No such file");
        refused("/tmp", 16, KW_ERR_IO, "is not a regular file");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(read_secret_file_one_final_newline_removed),
                cmocka_unit_test(read_secret_file_refusals_leave_the_output),
                cmocka_unit_test(read_secret_file_exactly_max_and_far_too_long),
                cmocka_unit_test(read_secret_file_missing_or_not_a_file),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
