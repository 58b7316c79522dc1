/* journal_test.c - the step journal: records, reads back, a torn last
 * line cut off, anything else refused, the move onto the volume. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "journal.h"

static char dir[64];

static int setup(void **state)
{
        (void)state;
        snprintf(dir, sizeof dir, "/tmp/kwjournal.XXXXXX");
        return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
        (void)state;
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        return system(cmd) == 0 ? 0 : -1;
}

static void path_of(char *out, size_t n, const char *name)
{
        snprintf(out, n, "%s/%s", dir, name);
}

static void write_text(const char *path, const char *text)
{
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

static void journal_records_and_reads_back(void **state)
{
        (void)state;
        char p[128];
        path_of(p, sizeof p, "j1");
        struct kwp_journal *j = NULL;
        assert_int_equal(kwp_journal_open(p, &j).code, 0);
        assert_false(kwp_journal_done(j, "disk"));
        const char *kv[] = { "device", "/dev/vdb", NULL };
        assert_int_equal(kwp_journal_record(j, "disk", "done", kv).code, 0);
        assert_int_equal(kwp_journal_record(j, "volume", "start", kv).code, 0);
        kwp_journal_close(j);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);

        assert_int_equal(kwp_journal_open(p, &j).code, 0);
        assert_true(kwp_journal_done(j, "disk"));
        assert_false(kwp_journal_done(j, "volume"));
        assert_true(kwp_journal_started(j, "volume"));
        assert_false(kwp_journal_started(j, "disk"));
        assert_string_equal(kwp_journal_get(j, "disk", "device"), "/dev/vdb");
        assert_null(kwp_journal_get(j, "disk", "nothing"));
        assert_null(kwp_journal_get(j, "tls", "device"));
        assert_int_equal(strlen(kwp_journal_time(j, "disk")), 20);
        assert_string_equal(kwp_journal_time(j, "tls"), "");
        /* done after a start: done */
        assert_int_equal(kwp_journal_record(j, "volume", "done", NULL).code, 0);
        assert_true(kwp_journal_done(j, "volume"));
        kwp_journal_close(j);
}

static void journal_torn_last_line_cut(void **state)
{
        (void)state;
        char p[128];
        path_of(p, sizeof p, "j2");
        write_text(p, "{\"step\":\"disk\",\"state\":\"done\",\"time\":\"t\"}\n{\"step\":\"vol");
        struct kwp_journal *j = NULL;
        assert_int_equal(kwp_journal_open(p, &j).code, 0);
        assert_true(kwp_journal_done(j, "disk"));
        assert_int_equal(kwp_journal_record(j, "volume", "start", NULL).code, 0);
        kwp_journal_close(j);
        assert_int_equal(kwp_journal_open(p, &j).code, 0);
        assert_true(kwp_journal_started(j, "volume"));
        kwp_journal_close(j);
}

static void journal_refuses_what_it_did_not_write(void **state)
{
        (void)state;
        static const char *const bad[] = {
                "not json\n",
                "{\"step\":\"disk\",\"state\":\"done\"}\n",                          /* no time */
                "{\"step\":\"disk\",\"state\":\"maybe\",\"time\":\"t\"}\n",          /* state */
                "{\"step\":\"\",\"state\":\"done\",\"time\":\"t\"}\n",               /* empty step */
                "{\"step\":\"disk\",\"state\":\"done\",\"time\":\"t\",\"n\":1}\n",   /* not a string */
                "[1]\n",
                "{\"step\":\"disk\",\"state\":\"done\",\"time\":\"t\",\"time\":\"u\"}\n", /* twice */
                "\n",
        };
        char p[128];
        path_of(p, sizeof p, "j3");
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                write_text(p, bad[i]);
                struct kwp_journal *j = NULL;
                kw_result r = kwp_journal_open(p, &j);
                assert_int_equal(r.code, KW_ERR_BAD_FIELD);
                assert_null(j);
        }
        /* not a regular file */
        path_of(p, sizeof p, "j3dir");
        assert_int_equal(mkdir(p, 0700), 0);
        struct kwp_journal *j = NULL;
        assert_int_not_equal(kwp_journal_open(p, &j).code, 0);
}

static void journal_moves(void **state)
{
        (void)state;
        char a[128], b[128];
        path_of(a, sizeof a, "j4");
        path_of(b, sizeof b, "j4-moved");
        struct kwp_journal *j = NULL;
        assert_int_equal(kwp_journal_open(a, &j).code, 0);
        const char *kv[] = { "device", "/dev/vdc", NULL };
        assert_int_equal(kwp_journal_record(j, "disk", "done", kv).code, 0);
        assert_int_equal(kwp_journal_move(j, b).code, 0);
        assert_string_equal(kwp_journal_path(j), b);
        assert_int_equal(kwp_journal_record(j, "volume", "done", NULL).code, 0);
        kwp_journal_close(j);
        assert_int_equal(kwp_journal_open(b, &j).code, 0);
        assert_true(kwp_journal_done(j, "disk"));
        assert_true(kwp_journal_done(j, "volume"));
        assert_string_equal(kwp_journal_get(j, "disk", "device"), "/dev/vdc");
        kwp_journal_close(j);
        /* the old one is left as it was */
        assert_int_equal(kwp_journal_open(a, &j).code, 0);
        assert_false(kwp_journal_done(j, "volume"));
        kwp_journal_close(j);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(journal_records_and_reads_back),
                cmocka_unit_test(journal_torn_last_line_cut),
                cmocka_unit_test(journal_refuses_what_it_did_not_write),
                cmocka_unit_test(journal_moves),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
