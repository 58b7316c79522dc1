/* log_test.c - the JSON log lines: format, timestamp, escaping, truncation,
 * and whole lines from many threads at once, written directly or by the
 * log writer thread (kw_log_writer_start): none lost under the bound, drops
 * counted and reported when stderr is not read, no caller held up. */
#include <errno.h>
#include <fcntl.h>
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
        kw_log(KW_LOG_INFO, "started", "who", "a \"quoted\"\n name", "none", absent,
               "flag", KW_LOG_TRUE, "skipped", KW_LOG_OMIT, "after", "x", "text", "true", KW_END);
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
                        /* KW_LOG_TRUE is the literal true, not "true"; an
                         * omitted pair leaves no trace and ends nothing */
                        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "flag")));
                        assert_null(cJSON_GetObjectItem(j, "skipped"));
                        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "after")), "x");
                        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "text")), "true");
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

/* ---- the log writer thread ---- */

/* stderr redirected to a pipe (or a file), read by a thread of ours only
 * when told: a reader that does not read is a pipe nobody drains. */
struct sink {
        int saved;              /* the real stderr */
        int rd, wr;             /* the pipe, or -1, fd of the file */
        pthread_mutex_t mu;
        char *buf;
        size_t len, cap;
        pthread_t th;
        int reading;
};

static void *sink_main(void *arg)
{
        struct sink *k = arg;
        char chunk[65536];
        for (;;) {
                ssize_t n = read(k->rd, chunk, sizeof chunk);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                pthread_mutex_lock(&k->mu);
                if (k->cap - k->len < (size_t)n) {
                        k->cap = k->cap * 2 + sizeof chunk;
                        k->buf = realloc(k->buf, k->cap + 1);
                        if (k->buf == NULL)
                                abort();
                }
                memcpy(k->buf + k->len, chunk, (size_t)n);
                k->len += (size_t)n;
                k->buf[k->len] = '\0';
                pthread_mutex_unlock(&k->mu);
        }
        return NULL;
}

/* pipe_size > 0: a pipe of that size; 0: a temp file. */
static void sink_open(struct sink *k, int pipe_size)
{
        memset(k, 0, sizeof *k);
        pthread_mutex_init(&k->mu, NULL);
        fflush(stderr);
        k->saved = dup(STDERR_FILENO);
        assert_true(k->saved >= 0);
        if (pipe_size > 0) {
                int p[2];
                assert_int_equal(pipe2(p, O_CLOEXEC), 0);
                assert_true(fcntl(p[1], F_SETPIPE_SZ, pipe_size) >= pipe_size);
                k->rd = p[0];
                k->wr = p[1];
        } else {
                char path[] = "/tmp/kw-log-test-XXXXXX";
                k->wr = mkstemp(path);
                assert_true(k->wr >= 0);
                unlink(path);
                k->rd = -1;
        }
        assert_int_equal(dup2(k->wr, STDERR_FILENO), STDERR_FILENO);
}

static void sink_read(struct sink *k)
{
        if (k->rd >= 0 && !k->reading) {
                assert_int_equal(pthread_create(&k->th, NULL, sink_main, k), 0);
                k->reading = 1;
        }
}

/* Gives stderr back; returns everything written (caller frees). */
static char *sink_close(struct sink *k)
{
        sink_read(k);
        assert_int_equal(dup2(k->saved, STDERR_FILENO), STDERR_FILENO);
        close(k->saved);
        if (k->rd < 0) {
                off_t n = lseek(k->wr, 0, SEEK_END);
                assert_true(n >= 0);
                k->buf = calloc(1, (size_t)n + 1);
                assert_non_null(k->buf);
                assert_int_equal(pread(k->wr, k->buf, (size_t)n, 0), n);
                close(k->wr);
                return k->buf;
        }
        close(k->wr);
        pthread_join(k->th, NULL);
        close(k->rd);
        if (k->buf == NULL)
                k->buf = calloc(1, 1);
        return k->buf;
}

static uint64_t mono_ms(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

#define W_THREADS 8

struct wrun {
        int t, lines, warn_every;
        uint64_t max_ms;        /* longest single call */
};

/* A request line (kw_log_raw, info) with the thread and its sequence
 * number, and every warn_every-th line a warning (kw_log) instead. */
static void *wwriter(void *arg)
{
        struct wrun *w = arg;
        char fields[256], seq[16], th[16];
        snprintf(th, sizeof th, "%d", w->t);
        for (int i = 0; i < w->lines; i++) {
                uint64_t t0 = mono_ms();
                if (w->warn_every > 0 && i % w->warn_every == w->warn_every - 1) {
                        snprintf(seq, sizeof seq, "%d", i);
                        kw_log(KW_LOG_WARN, "warned", "thread", th, "seq", seq, KW_END);
                } else {
                        snprintf(fields, sizeof fields,
                                 "\"event\":\"request\",\"thread\":\"%d\",\"seq\":%d,\"route\":\"xks.encrypt\","
                                 "\"remote\":\"127.0.0.1\",\"status\":200,\"latency_us\":123",
                                 w->t, i);
                        kw_log_raw(KW_LOG_INFO, fields);
                }
                uint64_t dt = mono_ms() - t0;
                if (dt > w->max_ms)
                        w->max_ms = dt;
        }
        return NULL;
}

/* Runs n writers; returns 1 when they are all done within limit_ms, else
 * 0 (the caller then lets stderr drain, and wwriters_join ends them, so
 * that a failure is reported instead of hanging). */
static int run_wwriters(struct wrun *w, pthread_t *th, int n, int lines, int warn_every, unsigned limit_ms)
{
        for (int i = 0; i < n; i++) {
                w[i] = (struct wrun){ .t = i, .lines = lines, .warn_every = warn_every };
                assert_int_equal(pthread_create(&th[i], NULL, wwriter, &w[i]), 0);
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += limit_ms / 1000;
        int done = 1;
        for (int i = 0; i < n; i++) {
                if (th[i] == 0)
                        continue;
                if (pthread_timedjoin_np(th[i], NULL, &until) != 0)
                        done = 0;
                else
                        th[i] = 0;
        }
        return done;
}

static void wwriters_join(pthread_t *th, int n)
{
        for (int i = 0; i < n; i++)
                if (th[i] != 0)
                        pthread_join(th[i], NULL);
}

struct wcount {
        int requests[W_THREADS], warnings[W_THREADS];
        uint64_t reported;      /* sum of "dropped" of the drop reports */
        int reports;
};

/* Every line strict JSON; per thread, sequence numbers increasing across
 * request lines and warnings alike. */
static void check_wlines(char *text, struct wcount *c)
{
        memset(c, 0, sizeof *c);
        int last[W_THREADS];
        for (int i = 0; i < W_THREADS; i++)
                last[i] = -1;
        char *save = NULL;
        for (char *l = strtok_r(text, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
                cJSON *j = NULL;
                assert_int_equal(kw_json_parse((const uint8_t *)l, strlen(l), 4, &j).code, 0);
                const char *ev = cJSON_GetStringValue(cJSON_GetObjectItem(j, "event"));
                assert_non_null(ev);
                if (strcmp(ev, "log_lines_dropped") == 0) {
                        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "level")), "warn");
                        c->reported += (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "dropped"));
                        c->reports++;
                        cJSON_Delete(j);
                        continue;
                }
                int t = atoi(cJSON_GetStringValue(cJSON_GetObjectItem(j, "thread")));
                assert_true(t >= 0 && t < W_THREADS);
                cJSON *sq = cJSON_GetObjectItem(j, "seq");
                int seq = cJSON_IsNumber(sq) ? sq->valueint : atoi(cJSON_GetStringValue(sq));
                assert_true(seq > last[t]);
                last[t] = seq;
                if (strcmp(ev, "request") == 0)
                        c->requests[t]++;
                else
                        c->warnings[t]++;
                cJSON_Delete(j);
        }
}

/* Many threads, stderr a pipe that is read (the writer's writes of at most
 * PIPE_BUF bytes): every line whole and valid JSON, in order per thread,
 * none lost (the lines stay within the queue's bound even if the reader
 * read nothing until the end). */
static void log_writer_threads_lines_whole_in_order_none_lost(void **state)
{
        (void)state;
        kw_log_setup(KW_LOG_INFO, "test");
        struct sink k;
        sink_open(&k, 65536);
        sink_read(&k);
        assert_int_equal(kw_log_writer_start().code, 0);
        struct wrun w[W_THREADS];
        pthread_t th[W_THREADS];
        int done = run_wwriters(w, th, W_THREADS, 150, 10, 10000);      /* 1200 lines of ~200 bytes */
        wwriters_join(th, W_THREADS);
        kw_log_writer_stop();
        uint64_t dropped = kw_log_dropped_total(), lost = kw_log_lost_total();
        char *out = sink_close(&k);
        assert_true(done);
        assert_int_equal(dropped, 0);
        assert_int_equal(lost, 0);
        struct wcount c;
        check_wlines(out, &c);
        for (int i = 0; i < W_THREADS; i++) {
                assert_int_equal(c.requests[i], 135);
                assert_int_equal(c.warnings[i], 15);
        }
        assert_int_equal(c.reports, 0);
        free(out);
}

/* The same into a file (one write per batch), with more lines than the
 * bound: what is written is whole and in order, and every line is either
 * written or counted as dropped; no warning is ever dropped. */
static void log_writer_threads_file_every_line_written_or_counted(void **state)
{
        (void)state;
        kw_log_setup(KW_LOG_INFO, "test");
        struct sink k;
        sink_open(&k, 0);
        assert_int_equal(kw_log_writer_start().code, 0);
        struct wrun w[W_THREADS];
        pthread_t th[W_THREADS];
        int done = run_wwriters(w, th, W_THREADS, 2000, 50, 30000);
        wwriters_join(th, W_THREADS);
        kw_log_writer_stop();
        uint64_t dropped = kw_log_dropped_total();
        char *out = sink_close(&k);
        assert_true(done);
        struct wcount c;
        check_wlines(out, &c);
        uint64_t requests = 0;
        for (int i = 0; i < W_THREADS; i++) {
                assert_int_equal(c.warnings[i], 40);
                requests += (uint64_t)c.requests[i];
        }
        assert_int_equal(requests + dropped, (uint64_t)W_THREADS * 1960);
        assert_int_equal(c.reported, dropped);
        free(out);
}

/* stderr a pipe nobody reads (the consumer stopped): request lines are
 * dropped and counted at once, no call is held up; the warnings, fewer than
 * the reserve holds, are neither dropped nor held up; once the reader
 * reads, everything queued comes out with a report of the drops. */
static void log_writer_stalled_stderr_drops_counted_callers_not_blocked(void **state)
{
        (void)state;
        kw_log_setup(KW_LOG_INFO, "test");
        struct sink k;
        sink_open(&k, 4096);
        assert_int_equal(kw_log_writer_start().code, 0);
        struct wrun w[W_THREADS];
        pthread_t th[W_THREADS];
        /* 4 x 5000 lines of ~200 bytes: 4 MB, ten times the queue; 40
         * warnings (8 KB) */
        int done = run_wwriters(w, th, 4, 5000, 500, 10000);
        uint64_t dropped = kw_log_dropped_total();
        sink_read(&k);
        wwriters_join(th, 4);
        kw_log_writer_stop();
        char *out = sink_close(&k);
        assert_true(done);                      /* within 10 s with nobody reading */
        assert_true(dropped > 0);
        for (int i = 0; i < 4; i++)
                assert_true(w[i].max_ms < 1000);        /* nobody waited on the reader */
        struct wcount c;
        check_wlines(out, &c);
        uint64_t requests = 0;
        for (int i = 0; i < 4; i++) {
                assert_int_equal(c.warnings[i], 10);
                requests += (uint64_t)c.requests[i];
        }
        assert_int_equal(requests + dropped, 4 * 4990);
        assert_true(c.reports >= 1);
        assert_int_equal(c.reported, dropped);
        free(out);
}

static void emit_queued_then_stop(void)
{
        assert_int_equal(kw_log_writer_start().code, 0);
        char fields[128];
        for (int i = 0; i < 1000; i++) {
                snprintf(fields, sizeof fields, "\"event\":\"request\",\"thread\":\"0\",\"seq\":%d", i);
                kw_log_raw(KW_LOG_INFO, fields);
        }
        kw_log_writer_stop();           /* at once: nothing written yet */
        kw_log(KW_LOG_INFO, "after_stop", "thread", "0", "seq", "1000", KW_END);   /* directly */
}

/* The stop writes every line queued before it; lines after it go directly,
 * after them. */
static void log_writer_stop_writes_every_queued_line(void **state)
{
        (void)state;
        kw_log_setup(KW_LOG_INFO, "test");
        char *out = capture(emit_queued_then_stop);
        struct wcount c;
        check_wlines(out, &c);
        assert_int_equal(c.requests[0], 1000);
        assert_int_equal(c.warnings[0], 1);     /* the after_stop line, last */
        free(out);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(log_lines_are_json_with_a_correct_timestamp),
                cmocka_unit_test(log_over_long_line_is_cut_but_valid),
                cmocka_unit_test(log_threads_write_whole_lines),
                cmocka_unit_test(log_invalid_utf8_gives_strict_json_lines),
                cmocka_unit_test(log_writer_threads_lines_whole_in_order_none_lost),
                cmocka_unit_test(log_writer_threads_file_every_line_written_or_counted),
                cmocka_unit_test(log_writer_stalled_stderr_drops_counted_callers_not_blocked),
                cmocka_unit_test(log_writer_stop_writes_every_queued_line),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
