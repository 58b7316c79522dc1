/* log.c - JSON log lines. */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "logq.h"

static enum kw_log_level log_min = KW_LOG_INFO;
static const char *log_proc = "keywardd";

static const char *const level_names[] = { "debug", "info", "warn", "error" };

const char kw_log_true_[] = "true";
const char kw_log_omit_[] = "";

void kw_log_setup(enum kw_log_level min, const char *proc)
{
        log_min = min;
        if (proc != NULL)
                log_proc = proc;
}

int kw_log_level_parse(const char *s)
{
        for (int i = 0; i < 4; i++)
                if (strcmp(s, level_names[i]) == 0)
                        return i;
        return -1;
}

int kw_log_enabled(enum kw_log_level lvl) { return lvl >= log_min; }

/* Per thread: the current second already formatted, and the line buffer of
 * the last line, kept for the next one.  Per request line this saves
 * gmtime_r (which takes glibc's time-zone lock), a printf and the buffer's
 * allocations. */
struct log_tl {
        time_t sec;
        int stamp_len;           /* 0: not formatted yet */
        char stamp[40];          /* "YYYY-MM-DDTHH:MM:SS" */
        struct kw_buf line;
        int registered;
};
static __thread struct log_tl log_tl;
static pthread_key_t log_key;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;

static void log_tl_free(void *p) { kw_buf_free(&((struct log_tl *)p)->line); }
static void log_key_init(void) { (void)pthread_key_create(&log_key, log_tl_free); }

/* The thread's line buffer, empty, with room for max bytes. */
static struct kw_buf *line_buf(size_t max)
{
        struct log_tl *t = &log_tl;
        if (!t->registered) {
                pthread_once(&log_once, log_key_init);
                (void)pthread_setspecific(log_key, t);   /* frees the buffer at thread exit */
                t->registered = 1;
        }
        kw_buf_reset(&t->line);
        t->line.max = max;
        return &t->line;
}

static kw_result log_head(struct kw_buf *b, enum kw_log_level lvl)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct log_tl *t = &log_tl;
        if (t->stamp_len == 0 || t->sec != ts.tv_sec) {
                struct tm tm;
                gmtime_r(&ts.tv_sec, &tm);
                int n = snprintf(t->stamp, sizeof t->stamp, "%04d-%02d-%02dT%02d:%02d:%02d",
                                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                                 tm.tm_sec);
                t->stamp_len = n > 0 && (size_t)n < sizeof t->stamp ? n : 0;
                t->sec = ts.tv_sec;
        }
        long ms = ts.tv_nsec / 1000000;
        const char frac[] = { '.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10),
                              'Z', '"' };
        KW_TRY(kw_buf_put_str(b, "{\"ts\":\""));
        KW_TRY(kw_buf_put(b, t->stamp, (size_t)t->stamp_len));
        KW_TRY(kw_buf_put(b, frac, sizeof frac));
        KW_TRY(kw_buf_put_str(b, ",\"level\":\""));
        KW_TRY(kw_buf_put_str(b, level_names[lvl]));
        KW_TRY(kw_buf_put_str(b, "\",\"proc\":\""));
        KW_TRY(kw_buf_put_str(b, log_proc));
        return kw_buf_put(b, "\"", 1);
}

/* ---- the writer (logq.h) ---- */

/* Two buffers of 512 KiB: at 16,000 requests/s of ~300-byte lines, one
 * buffer is about 100 ms of lines; 64 KiB of it are kept for warnings and
 * errors.  A first line waits at most 20 ms for others to share its
 * write. */
#define LOGQ_CAP (512u << 10)
#define LOGQ_RESERVE (64u << 10)
#define LOGQ_FLUSH_MS 20
#define LOGQ_REPORT_MS 1000
#define LOGQ_STOP_MS 2000

/* The running or last stopped writer; NULL: lines go directly.  A stopped
 * writer stays installed (its pushes are not taken, so lines go directly):
 * a thread that logs while it stops never touches freed memory. */
static _Atomic(struct kw_logq *) log_q;
static int log_q_stopped;
static pthread_mutex_t log_q_mu = PTHREAD_MUTEX_INITIALIZER;   /* start / stop */

/* The writer's drop report (runs on the writer thread: formats, never logs). */
static size_t format_dropped(uint64_t n, char *out, size_t outsz)
{
        struct kw_buf b;
        kw_buf_init(&b, outsz);
        size_t len = 0;
        if (log_head(&b, KW_LOG_WARN).code == 0 &&
            kw_buf_printf(&b, ",\"event\":\"log_lines_dropped\",\"dropped\":%llu,\"message\":\"%llu log "
                              "lines dropped: stderr is read slower than lines come; request and info "
                              "lines are dropped, never warnings or errors\"}\n",
                          (unsigned long long)n, (unsigned long long)n).code == 0 &&
            b.len <= outsz) {
                memcpy(out, b.p, b.len);
                len = b.len;
        }
        kw_buf_free(&b);
        return len;
}

static void log_writer_atexit(void) { kw_log_writer_stop(); }

kw_result kw_log_writer_start(void)
{
        static int atexit_done;
        pthread_mutex_lock(&log_q_mu);
        struct kw_logq *old = atomic_load(&log_q);
        if (old != NULL && !log_q_stopped) {
                pthread_mutex_unlock(&log_q_mu);
                return KW_OK;
        }
        const struct kw_logq_cfg cfg = { .fd = STDERR_FILENO, .cap = LOGQ_CAP, .reserve = LOGQ_RESERVE,
                                         .flush_ms = LOGQ_FLUSH_MS, .report_ms = LOGQ_REPORT_MS,
                                         .report = format_dropped };
        struct kw_logq *q = NULL;
        kw_result r = kw_logq_start(&cfg, &q);
        if (r.code == 0) {
                atomic_store(&log_q, q);
                log_q_stopped = 0;
                kw_logq_free(old);      /* stopped and joined, else kept (logq.h) */
                if (!atexit_done)
                        atexit_done = atexit(log_writer_atexit) == 0;
        }
        pthread_mutex_unlock(&log_q_mu);
        return r;
}

void kw_log_writer_stop(void)
{
        pthread_mutex_lock(&log_q_mu);
        struct kw_logq *q = atomic_load(&log_q);
        if (q != NULL && !log_q_stopped) {
                (void)kw_logq_stop(q, LOGQ_STOP_MS);
                log_q_stopped = 1;
        }
        pthread_mutex_unlock(&log_q_mu);
}

uint64_t kw_log_dropped_total(void) { return kw_logq_dropped(atomic_load(&log_q)); }
uint64_t kw_log_lost_total(void) { return kw_logq_lost(atomic_load(&log_q)); }

/* ok: every field went in.  A field that did not fit leaves the line cut
 * mid-field: then, or when the closing brace does not fit, the line becomes
 * the standard fields and "truncated":true, still valid JSON.  Below warn a
 * line may be dropped by the writer (log.h). */
static void log_emit(struct kw_buf *b, int ok, enum kw_log_level lvl)
{
        if (!ok || kw_buf_put(b, "}\n", 2).code != 0) {
                static const char cut[] = "\"truncated\":true}\n";
                kw_buf_reset(b);
                kw_ignore(log_head(b, KW_LOG_WARN));
                kw_ignore(kw_buf_put(b, ",", 1));
                kw_ignore(kw_buf_put(b, cut, sizeof cut - 1));
        }
        struct kw_logq *q = atomic_load_explicit(&log_q, memory_order_acquire);
        if (q == NULL ||
            kw_logq_push(q, b->p, b->len, lvl >= KW_LOG_WARN ? KW_LOGQ_KEEP : KW_LOGQ_MAY_DROP) ==
                    KW_LOGQ_NOT_TAKEN) {
                ssize_t n = write(STDERR_FILENO, b->p, b->len);
                (void)n;
        }
        kw_buf_reset(b);
}

void kw_log(enum kw_log_level lvl, const char *event, ...)
{
        if (lvl < log_min)
                return;
        struct kw_buf *b = line_buf(8192);
        kw_result r = log_head(b, lvl);
        if (r.code == 0)
                r = kw_buf_put_str(b, ",\"event\":\"");
        if (r.code == 0)
                r = kw_buf_put_json_escaped(b, event, strlen(event));
        if (r.code == 0)
                r = kw_buf_put(b, "\"", 1);
        va_list ap;
        va_start(ap, event);
        for (;;) {
                const char *k = va_arg(ap, const char *);
                if (k == NULL || r.code != 0)
                        break;
                const char *v = va_arg(ap, const char *);
                if (v == KW_LOG_OMIT)
                        continue;
                r = kw_buf_put_str(b, ",\"");
                if (r.code == 0)
                        r = kw_buf_put_json_escaped(b, k, strlen(k));
                if (r.code == 0 && v == NULL) {
                        r = kw_buf_put_str(b, "\":null");
                } else if (r.code == 0 && v == KW_LOG_TRUE) {
                        r = kw_buf_put_str(b, "\":true");
                } else if (r.code == 0) {
                        r = kw_buf_put_str(b, "\":\"");
                        if (r.code == 0)
                                r = kw_buf_put_json_escaped(b, v, strlen(v));
                        if (r.code == 0)
                                r = kw_buf_put(b, "\"", 1);
                }
        }
        va_end(ap);
        log_emit(b, r.code == 0, lvl);
}

/* Appends pre-built JSON, made safe for a log line: a byte that is not part
 * of well-formed UTF-8 becomes \ufffd (such bytes only occur inside
 * strings of a valid text, where the escape keeps it valid), a control
 * character becomes a space (valid between tokens; inside a string it was
 * already invalid JSON, and it would split the line). */
static kw_result put_fields(struct kw_buf *b, const char *s)
{
        const uint8_t *u = (const uint8_t *)s;
        size_t n = strlen(s), run = 0, i = 0;
        while (i < n) {
                size_t k = u[i] < 0x80 ? 1 : kw_utf8_seq_len(u + i, n - i);
                if (k != 0 && u[i] >= 0x20) {
                        i += k;
                        continue;
                }
                KW_TRY(kw_buf_put(b, u + run, i - run));
                KW_TRY(k == 0 ? kw_buf_put(b, "\\ufffd", 6) : kw_buf_put(b, " ", 1));
                run = ++i;
        }
        return kw_buf_put(b, u + run, n - run);
}

void kw_log_raw(enum kw_log_level lvl, const char *fields_json)
{
        if (lvl < log_min)
                return;
        struct kw_buf *b = line_buf(16384);
        int ok = log_head(b, lvl).code == 0 && kw_buf_put(b, ",", 1).code == 0 &&
                 put_fields(b, fields_json).code == 0;
        log_emit(b, ok, lvl);
}
