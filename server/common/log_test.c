/* log_test.c - the JSON log lines: format, timestamp, escaping, truncation,
 * and whole lines from many threads at once. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <cjson/cJSON.h>

#include "common/log.h"
#include "common/json_io.h"

/* Runs fn with stderr redirected to a temp file; returns what was written
 * (caller frees). */
static char *capture(void (*fn)(void))
{
        char path[] = "/tmp/kw-log-test-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        unlink(path);
        fflush(stderr);
        int saved = dup(STDERR_FILENO);
        assert_true(saved >= 0);
        assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
        fn();
        assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
        close(saved);
        off_t n = lseek(fd, 0, SEEK_END);
        assert_true(n >= 0);
        char *out = calloc(1, (size_t)n + 1);
        assert_non_null(out);
        assert_int_equal(pread(fd, out, (size_t)n, 0), n);
        close(fd);
        return out;
}

static void emit_two(void)
{
        const char *absent = NULL;
        kw_log(KW_LOG_INFO, "started", "who", "a \"quoted\"\n name", "none", absent, KW_END);
        kw_log_raw(KW_LOG_WARN, "\"event\":\"request\",\"status\":200");
        kw_log(KW_LOG_DEBUG, "hidden", KW_END);   /* below the minimum level */
}

static void log_lines_are_json_with_a_correct_timestamp(void **state)
{
        (void)state;
        kw_log_setup(KW_LOG_INFO, "test");
        time_t before = time(NULL);
        char *out = capture(emit_two);
        time_t after = time(NULL);
        char *save = NULL;
        int lines = 0;
        for (char *l = strtok_r(out, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
                cJSON *j = cJSON_Parse(l);
                assert_non_null(j);
                const char *ts = cJSON_GetStringValue(cJSON_GetObjectItem(j, "ts"));
                assert_non_null(ts);
                /* "YYYY-MM-DDTHH:MM:SS.mmmZ" and within the call's second(s) */
                assert_int_equal(strlen(ts), 24);
                assert_int_equal(ts[10], 'T');
                assert_int_equal(ts[19], '.');
                assert_int_equal(ts[23], 'Z');
                struct tm tm;
                memset(&tm, 0, sizeof tm);
                assert_non_null(strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm));
                time_t t = timegm(&tm);
                assert_true(t >= before && t <= after);
                assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "proc")), "test");
                if (lines == 0) {
                        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "level")), "info");
                        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "who")),
                                            "a \"quoted\"\n name");
                        assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "none")));
                } else {
                        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "level")), "warn");
                        assert_int_equal(cJSON_GetObjectItem(j, "status")->valueint, 200);
                }
                cJSON_Delete(j);
                lines++;
        }
        assert_int_equal(lines, 2);
        free(out);
}

static void emit_long(void)
{
        static char big[9000];
        memset(big, 'x', sizeof big - 1);
        kw_log(KW_LOG_ERROR, "long", "value", big, KW_END);
        kw_log(KW_LOG_INFO, "after", KW_END);   /* the reused buffer starts empty */
}

static void log_over_long_line_is_cut_but_valid(void **state)
{
        (void)state;
        kw_log_setup(KW_LOG_INFO, "test");
        char *out = capture(emit_long);
        char *nl = strchr(out, '\n');
        assert_non_null(nl);
        *nl = '\0';
        cJSON *j = cJSON_Parse(out);
        assert_non_null(j);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "truncated")));
        cJSON_Delete(j);
        j = cJSON_Parse(nl + 1);
        assert_non_null(j);
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "event")), "after");
        assert_null(cJSON_GetObjectItem(j, "truncated"));
        cJSON_Delete(j);
        free(out);
}

#define THREADS 8
#define PER_THREAD 500

static void *writer(void *arg)
{
        char id[16];
        snprintf(id, sizeof id, "%d", (int)(intptr_t)arg);
        for (int i = 0; i < PER_THREAD; i++)
                kw_log(KW_LOG_INFO, "tick", "thread", id, KW_END);
        return NULL;
}

static void emit_threads(void)
{
        pthread_t th[THREADS];
        for (intptr_t i = 0; i < THREADS; i++)
                assert_int_equal(pthread_create(&th[i], NULL, writer, (void *)i), 0);
        for (int i = 0; i < THREADS; i++)
                pthread_join(th[i], NULL);
}

static void log_threads_write_whole_lines(void **state)
{
        (void)state;
        kw_log_setup(KW_LOG_INFO, "test");
        char *out = capture(emit_threads);
        int count[THREADS] = { 0 };
        char *save = NULL;
        for (char *l = strtok_r(out, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
                cJSON *j = cJSON_Parse(l);
                assert_non_null(j);
                int t = atoi(cJSON_GetStringValue(cJSON_GetObjectItem(j, "thread")));
                assert_true(t >= 0 && t < THREADS);
                count[t]++;
                cJSON_Delete(j);
        }
        for (int i = 0; i < THREADS; i++)
                assert_int_equal(count[i], PER_THREAD);
        free(out);
}

/* Peer-controlled bytes that are not UTF-8, in every place a line takes them. */
static void emit_invalid_utf8(void)
{
        kw_log(KW_LOG_INFO, "ev\xff", "k\xc0\x80", "lone \x80 cont", "sur", "\xed\xa0\x80",
               "big", "\xf4\x90\x80\x80", "cut", "tail \xe2\x82", KW_END);
        kw_log_raw(KW_LOG_INFO, "\"event\":\"request\",\"path\":\"/k/\xfe\xc3\"");
}

static void log_invalid_utf8_gives_strict_json_lines(void **state)
{
        (void)state;
        kw_log_setup(KW_LOG_INFO, "test");
        char *out = capture(emit_invalid_utf8);
        static const char *const want[][2] = {
                { "event", "ev\xef\xbf\xbd" },
                { "k\xef\xbf\xbd\xef\xbf\xbd", "lone \xef\xbf\xbd cont" },
                { "sur", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
                { "big", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
                { "cut", "tail \xef\xbf\xbd\xef\xbf\xbd" },
        };
        char *save = NULL;
        int lines = 0;
        for (char *line = strtok_r(out, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
                cJSON *j = NULL;
                /* strict: UTF-8 checked on the raw bytes, RFC 8259 syntax */
                assert_int_equal(kw_json_parse((const uint8_t *)line, strlen(line), 4, &j).code, 0);
                if (lines == 0) {
                        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
                                assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, want[i][0])),
                                                    want[i][1]);
                } else {
                        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "path")),
                                            "/k/\xef\xbf\xbd\xef\xbf\xbd");
                }
                cJSON_Delete(j);
                lines++;
        }
        assert_int_equal(lines, 2);
        free(out);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(log_lines_are_json_with_a_correct_timestamp),
                cmocka_unit_test(log_over_long_line_is_cut_but_valid),
                cmocka_unit_test(log_threads_write_whole_lines),
                cmocka_unit_test(log_invalid_utf8_gives_strict_json_lines),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
