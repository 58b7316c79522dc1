/* logq_test.c - the log writer queue: whole lines in order, writes of whole
 * lines within PIPE_BUF, drops counted and reported over the bound, back-
 * pressure for lines that are never dropped, a bounded stop, write errors.
 * Small queues (16 KiB) and a 4 KiB pipe make the bounds quick to reach. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/logq.h"

/* ---- helpers ---- */

/* Reads fd until EOF into memory, on its own thread; with msgs, also the
 * size of every read (one message each on a SOCK_SEQPACKET socket). */
struct drain {
        int fd;
        pthread_mutex_t mu;     /* buf and len, for drain_contains */
        char *buf;
        size_t len, cap;
        size_t msgs[4096];
        size_t n_msgs;
        pthread_t th;
};

static void *drain_main(void *arg)
{
        struct drain *d = arg;
        for (;;) {
                char chunk[65536];
                ssize_t n = read(d->fd, chunk, sizeof chunk);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                pthread_mutex_lock(&d->mu);
                if (d->cap - d->len < (size_t)n) {
                        d->cap = d->cap * 2 + sizeof chunk;
                        d->buf = realloc(d->buf, d->cap + 1);
                        if (d->buf == NULL)
                                abort();
                }
                memcpy(d->buf + d->len, chunk, (size_t)n);
                if (d->n_msgs < sizeof d->msgs / sizeof d->msgs[0])
                        d->msgs[d->n_msgs++] = (size_t)n;
                d->len += (size_t)n;
                d->buf[d->len] = '\0';
                pthread_mutex_unlock(&d->mu);
        }
        return NULL;
}

static void drain_start(struct drain *d, int fd)
{
        memset(d, 0, sizeof *d);
        pthread_mutex_init(&d->mu, NULL);
        d->fd = fd;
        assert_int_equal(pthread_create(&d->th, NULL, drain_main, d), 0);
}

/* Waits up to ms for text to appear in what was read so far. */
static int drain_contains(struct drain *d, const char *text, unsigned ms)
{
        for (unsigned waited = 0;; waited += 10) {
                pthread_mutex_lock(&d->mu);
                int found = d->buf != NULL && strstr(d->buf, text) != NULL;
                pthread_mutex_unlock(&d->mu);
                if (found || waited >= ms)
                        return found;
                struct timespec t = { 0, 10 * 1000000L };
                nanosleep(&t, NULL);
        }
}

/* Joins (the writing ends must be closed); returns the text, NUL-terminated. */
static char *drain_finish(struct drain *d)
{
        pthread_join(d->th, NULL);
        if (d->buf == NULL)
                d->buf = calloc(1, 1);
        d->buf[d->len] = '\0';
        close(d->fd);
        return d->buf;
}

/* A pipe of 4 KiB that nobody reads yet. */
static void small_pipe(int p[2])
{
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        assert_true(fcntl(p[1], F_SETPIPE_SZ, 4096) >= 4096);
}

static uint64_t now_ms(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
        struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000L };
        nanosleep(&t, NULL);
}

static size_t report_line(uint64_t n, char *out, size_t outsz)
{
        int k = snprintf(out, outsz, "dropped %llu\n", (unsigned long long)n);
        return k > 0 && (size_t)k < outsz ? (size_t)k : 0;
}

static struct kw_logq_cfg small_cfg(int fd)
{
        return (struct kw_logq_cfg){ .fd = fd, .cap = 16384, .reserve = 4096, .flush_ms = 5,
                                     .report_ms = 1, .report = report_line };
}

/* "t<thread> <seq> <padding>\n", pad bytes of padding */
static size_t make_line(char *out, size_t outsz, int t, int seq, size_t pad)
{
        int k = snprintf(out, outsz, "t%d %d ", t, seq);
        assert_true(k > 0 && (size_t)k + pad + 1 < outsz);
        memset(out + k, 'x', pad);
        out[(size_t)k + pad] = '\n';
        return (size_t)k + pad + 1;
}

/* Checks text line by line: each "t<t> <seq> x...x" intact (pad 'x' bytes),
 * per thread seq increasing; counts per thread into count[]; returns the
 * sum of "dropped N" report lines. */
static uint64_t check_lines(char *text, int threads, size_t pad, int *count, int *last)
{
        uint64_t reported = 0;
        for (int i = 0; i < threads; i++)
                last[i] = -1;
        char *save = NULL;
        for (char *l = strtok_r(text, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
                unsigned long long d;
                if (sscanf(l, "dropped %llu", &d) == 1) {
                        reported += d;
                        continue;
                }
                int t = -1, seq = -1, off = 0;
                assert_int_equal(sscanf(l, "t%d %d %n", &t, &seq, &off), 2);
                assert_true(t >= 0 && t < threads);
                assert_int_equal(strlen(l + off), pad);
                assert_int_equal(strspn(l + off, "x"), pad);       /* not split, not mixed */
                assert_true(seq > last[t]);                        /* order kept */
                last[t] = seq;
                count[t]++;
        }
        return reported;
}

/* ---- start ---- */

static void logq_start_bad_config_fails(void **state)
{
        (void)state;
        struct kw_logq *q = (struct kw_logq *)&q;       /* sentinel: untouched on failure */
        struct kw_logq_cfg c = small_cfg(1);
        c.reserve = c.cap;
        assert_int_equal(kw_logq_start(&c, &q).code, KW_ERR_CONFIG);
        c = small_cfg(1);
        c.flush_ms = 0;
        assert_int_equal(kw_logq_start(&c, &q).code, KW_ERR_CONFIG);
        c = small_cfg(1);
        c.cap = 1024;
        c.reserve = 0;
        assert_int_equal(kw_logq_start(&c, &q).code, KW_ERR_CONFIG);
        assert_ptr_equal(q, (struct kw_logq *)&q);
}

/* ---- many threads ---- */

#define THREADS 6
#define PER_THREAD 3000
#define PAD 80

struct producer {
        struct kw_logq *q;
        int t;
        enum kw_logq_mode mode;
        int queued, dropped, not_taken;
        uint64_t max_ms;        /* longest single push */
        int n;
        size_t pad;
};

static void *produce(void *arg)
{
        struct producer *p = arg;
        char line[8192];
        for (int i = 0; i < p->n; i++) {
                size_t n = make_line(line, sizeof line, p->t, i, p->pad);
                uint64_t t0 = now_ms();
                enum kw_logq_push_result r = kw_logq_push(p->q, line, n, p->mode);
                uint64_t dt = now_ms() - t0;
                if (dt > p->max_ms)
                        p->max_ms = dt;
                p->queued += r == KW_LOGQ_QUEUED;
                p->dropped += r == KW_LOGQ_DROPPED;
                p->not_taken += r == KW_LOGQ_NOT_TAKEN;
        }
        return NULL;
}

static void run_threads(struct kw_logq *q, struct producer *p, int n_threads, enum kw_logq_mode mode)
{
        pthread_t th[THREADS];
        for (int i = 0; i < n_threads; i++) {
                p[i] = (struct producer){ .q = q, .t = i, .mode = mode, .n = PER_THREAD, .pad = PAD };
                assert_int_equal(pthread_create(&th[i], NULL, produce, &p[i]), 0);
        }
        for (int i = 0; i < n_threads; i++)
                pthread_join(th[i], NULL);
}

/* Lines that may not be dropped: all of them, whole, in order per thread. */
static void logq_push_threads_keep_lines_whole_in_order(void **state)
{
        (void)state;
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        struct drain d;
        drain_start(&d, p[0]);
        struct kw_logq *q = NULL;
        struct kw_logq_cfg c = small_cfg(p[1]);
        assert_int_equal(kw_logq_start(&c, &q).code, 0);
        struct producer pr[THREADS];
        run_threads(q, pr, THREADS, KW_LOGQ_KEEP);
        assert_int_equal(kw_logq_stop(q, 10000), 0);
        close(p[1]);
        char *text = drain_finish(&d);
        int count[THREADS] = { 0 }, last[THREADS];
        assert_int_equal(check_lines(text, THREADS, PAD, count, last), 0);
        for (int i = 0; i < THREADS; i++) {
                assert_int_equal(pr[i].queued, PER_THREAD);
                assert_int_equal(count[i], PER_THREAD);
        }
        assert_int_equal(kw_logq_dropped(q), 0);
        assert_int_equal(kw_logq_lost(q), 0);
        kw_logq_free(q);
        free(text);
}

/* Lines that may be dropped, with a reader that reads: every line is
 * either written, whole and in order, or counted, and the reports say how
 * many. */
static void logq_push_threads_may_drop_every_line_accounted(void **state)
{
        (void)state;
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        struct drain d;
        drain_start(&d, p[0]);
        struct kw_logq *q = NULL;
        struct kw_logq_cfg c = small_cfg(p[1]);
        assert_int_equal(kw_logq_start(&c, &q).code, 0);
        struct producer pr[THREADS];
        run_threads(q, pr, THREADS, KW_LOGQ_MAY_DROP);
        assert_int_equal(kw_logq_stop(q, 10000), 0);
        close(p[1]);
        char *text = drain_finish(&d);
        int count[THREADS] = { 0 }, last[THREADS];
        uint64_t reported = check_lines(text, THREADS, PAD, count, last);
        uint64_t dropped = 0;
        for (int i = 0; i < THREADS; i++) {
                assert_int_equal(count[i], pr[i].queued);
                assert_int_equal(pr[i].queued + pr[i].dropped, PER_THREAD);
                dropped += (uint64_t)pr[i].dropped;
        }
        assert_int_equal(kw_logq_dropped(q), dropped);
        assert_int_equal(reported, dropped);
        kw_logq_free(q);
        free(text);
}

/* ---- writes ---- */

/* To anything but a regular file: each write is whole lines, at most
 * PIPE_BUF bytes, and a longer line goes alone. */
static void logq_write_socket_whole_lines_within_pipe_buf(void **state)
{
        (void)state;
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
        struct drain d;
        drain_start(&d, sv[0]);
        struct kw_logq *q = NULL;
        struct kw_logq_cfg c = small_cfg(sv[1]);
        c.flush_ms = 200;               /* everything in one batch */
        assert_int_equal(kw_logq_start(&c, &q).code, 0);
        char line[8192];
        for (int i = 0; i < 60; i++) {
                size_t n = make_line(line, sizeof line, 0, i, i == 30 ? 6000 : 100);
                assert_int_equal(kw_logq_push(q, line, n, KW_LOGQ_KEEP), KW_LOGQ_QUEUED);
        }
        assert_int_equal(kw_logq_stop(q, 10000), 0);
        shutdown(sv[1], SHUT_WR);
        char *text = drain_finish(&d);
        close(sv[1]);
        assert_true(d.n_msgs >= 3);
        size_t off = 0;
        int long_alone = 0;
        for (size_t m = 0; m < d.n_msgs; m++) {
                const char *msg = text + off;
                size_t n = d.msgs[m];
                assert_int_equal(msg[n - 1], '\n');
                assert_true(msg[0] == 't');
                if (n > PIPE_BUF) {
                        assert_non_null(memchr(msg, '\n', n));
                        assert_ptr_equal(memchr(msg, '\n', n), msg + n - 1);   /* one line */
                        long_alone = 1;
                } else {
                        assert_true(n <= PIPE_BUF);
                }
                off += n;
        }
        assert_true(long_alone);
        assert_int_equal(off, d.len);
        kw_logq_free(q);
        free(text);
}

/* A failed write (EPIPE: nobody will ever read) loses the batch, counted. */
static void logq_write_error_counts_lost_lines(void **state)
{
        (void)state;
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        close(p[0]);
        struct kw_logq *q = NULL;
        struct kw_logq_cfg c = small_cfg(p[1]);
        c.flush_ms = 200;
        assert_int_equal(kw_logq_start(&c, &q).code, 0);
        char line[256];
        for (int i = 0; i < 10; i++)
                assert_int_equal(kw_logq_push(q, line, make_line(line, sizeof line, 0, i, 10), KW_LOGQ_MAY_DROP),
                                 KW_LOGQ_QUEUED);
        assert_int_equal(kw_logq_stop(q, 10000), 0);
        assert_int_equal(kw_logq_lost(q), 10);
        assert_int_equal(kw_logq_dropped(q), 0);
        kw_logq_free(q);
        close(p[1]);
}

/* ---- bounds ---- */

/* Nobody reads: lines that may be dropped are, at once, counted; what was
 * queued comes out whole when the reader comes back, with a report that
 * does not wait for the stop. */
static void logq_push_stalled_reader_drops_and_reports(void **state)
{
        (void)state;
        int p[2];
        small_pipe(p);
        struct kw_logq *q = NULL;
        struct kw_logq_cfg c = small_cfg(p[1]);
        c.report_ms = 300;
        assert_int_equal(kw_logq_start(&c, &q).code, 0);
        struct producer pr = { .q = q, .t = 0, .mode = KW_LOGQ_MAY_DROP, .n = 2000, .pad = PAD };
        uint64_t t0 = now_ms();
        produce(&pr);
        uint64_t took = now_ms() - t0;
        assert_true(pr.dropped > 0);
        assert_true(pr.queued < 2000);
        assert_int_equal(pr.queued + pr.dropped, 2000);
        assert_int_equal(kw_logq_dropped(q), (uint64_t)pr.dropped);
        assert_true(took < 2000);       /* never waited for the reader */
        assert_true(pr.max_ms < 500);
        struct drain d;
        drain_start(&d, p[0]);
        assert_true(drain_contains(&d, "dropped ", 3000));     /* reported while running */
        assert_int_equal(kw_logq_stop(q, 10000), 0);
        close(p[1]);
        char *text = drain_finish(&d);
        int count[1] = { 0 }, last[1];
        assert_int_equal(check_lines(text, 1, PAD, count, last), (uint64_t)pr.dropped);
        assert_int_equal(count[0], pr.queued);
        kw_logq_free(q);
        free(text);
}

static void *produce_keep(void *arg)
{
        struct producer *p = arg;
        p->mode = KW_LOGQ_KEEP;
        return produce(p);
}

/* Nobody reads: a line that is never dropped waits for room (back-
 * pressure), then goes out with all the others once the reader reads. */
static void logq_push_keep_line_waits_for_room(void **state)
{
        (void)state;
        int p[2];
        small_pipe(p);
        struct kw_logq *q = NULL;
        struct kw_logq_cfg c = small_cfg(p[1]);
        assert_int_equal(kw_logq_start(&c, &q).code, 0);
        /* 1000 lines of ~90 bytes: more than pipe + two buffers */
        struct producer pr = { .q = q, .t = 0, .n = 1000, .pad = PAD };
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, produce_keep, &pr), 0);
        sleep_ms(300);
        struct timespec soon;
        clock_gettime(CLOCK_REALTIME, &soon);
        assert_int_equal(pthread_timedjoin_np(th, NULL, &soon), ETIMEDOUT);   /* still waiting */
        struct drain d;
        drain_start(&d, p[0]);
        pthread_join(th, NULL);
        assert_int_equal(pr.queued, 1000);
        assert_int_equal(kw_logq_stop(q, 10000), 0);
        close(p[1]);
        char *text = drain_finish(&d);
        int count[1] = { 0 }, last[1];
        assert_int_equal(check_lines(text, 1, PAD, count, last), 0);
        assert_int_equal(count[0], 1000);
        assert_int_equal(kw_logq_dropped(q), 0);
        kw_logq_free(q);
        free(text);
}

/* Nobody reads: stop gives up at its deadline (the writer keeps its
 * buffers), and a later stop, once the reader reads, writes everything. */
static void logq_stop_stalled_reader_returns_at_deadline(void **state)
{
        (void)state;
        int p[2];
        small_pipe(p);
        struct kw_logq *q = NULL;
        struct kw_logq_cfg c = small_cfg(p[1]);
        assert_int_equal(kw_logq_start(&c, &q).code, 0);
        struct producer pr = { .q = q, .t = 0, .mode = KW_LOGQ_MAY_DROP, .n = 400, .pad = PAD };
        produce(&pr);
        sleep_ms(50);                   /* the writer is blocked in write(2) now */
        uint64_t t0 = now_ms();
        assert_int_equal(kw_logq_stop(q, 200), -1);
        uint64_t took = now_ms() - t0;
        assert_true(took >= 150 && took < 3000);
        kw_logq_free(q);                /* refused: the writer still runs */
        struct drain d;
        drain_start(&d, p[0]);
        assert_int_equal(kw_logq_stop(q, 10000), 0);
        close(p[1]);
        char *text = drain_finish(&d);
        int count[1] = { 0 }, last[1];
        assert_int_equal(check_lines(text, 1, PAD, count, last), (uint64_t)pr.dropped);
        assert_int_equal(count[0], pr.queued);
        kw_logq_free(q);
        free(text);
}

/* After the stop, and for a line longer than the queue: not taken, the
 * caller writes it itself. */
static void logq_push_not_taken_after_stop_or_too_long(void **state)
{
        (void)state;
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        struct drain d;
        drain_start(&d, p[0]);
        struct kw_logq *q = NULL;
        struct kw_logq_cfg c = small_cfg(p[1]);
        assert_int_equal(kw_logq_start(&c, &q).code, 0);
        static char big[20000];
        memset(big, 'x', sizeof big);
        big[sizeof big - 1] = '\n';
        assert_int_equal(kw_logq_push(q, big, sizeof big, KW_LOGQ_KEEP), KW_LOGQ_NOT_TAKEN);
        assert_int_equal(kw_logq_push(q, "a\n", 2, KW_LOGQ_KEEP), KW_LOGQ_QUEUED);
        assert_int_equal(kw_logq_stop(q, 10000), 0);
        assert_int_equal(kw_logq_push(q, "b\n", 2, KW_LOGQ_KEEP), KW_LOGQ_NOT_TAKEN);
        assert_int_equal(kw_logq_push(q, "c\n", 2, KW_LOGQ_MAY_DROP), KW_LOGQ_NOT_TAKEN);
        close(p[1]);
        char *text = drain_finish(&d);
        assert_string_equal(text, "a\n");
        assert_int_equal(kw_logq_dropped(q), 0);
        kw_logq_free(q);
        free(text);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(logq_start_bad_config_fails),
                cmocka_unit_test(logq_push_threads_keep_lines_whole_in_order),
                cmocka_unit_test(logq_push_threads_may_drop_every_line_accounted),
                cmocka_unit_test(logq_write_socket_whole_lines_within_pipe_buf),
                cmocka_unit_test(logq_write_error_counts_lost_lines),
                cmocka_unit_test(logq_push_stalled_reader_drops_and_reports),
                cmocka_unit_test(logq_push_keep_line_waits_for_room),
                cmocka_unit_test(logq_stop_stalled_reader_returns_at_deadline),
                cmocka_unit_test(logq_push_not_taken_after_stop_or_too_long),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
