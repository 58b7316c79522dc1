/* log.c - JSON log lines. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

static enum kw_log_level log_min = KW_LOG_INFO;
static const char *log_proc = "keywardd";

static const char *const level_names[] = { "debug", "info", "warn", "error" };

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

/* ok: every field went in.  A field that did not fit leaves the line cut
 * mid-field: then, or when the closing brace does not fit, the line becomes
 * the standard fields and "truncated":true, still valid JSON. */
static void log_emit(struct kw_buf *b, int ok)
{
        if (!ok || kw_buf_put(b, "}\n", 2).code != 0) {
                static const char cut[] = "\"truncated\":true}\n";
                kw_buf_reset(b);
                kw_ignore(log_head(b, KW_LOG_WARN));
                kw_ignore(kw_buf_put(b, ",", 1));
                kw_ignore(kw_buf_put(b, cut, sizeof cut - 1));
        }
        ssize_t n = write(STDERR_FILENO, b->p, b->len);
        (void)n;
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
                r = kw_buf_put_str(b, ",\"");
                if (r.code == 0)
                        r = kw_buf_put_json_escaped(b, k, strlen(k));
                if (r.code == 0 && v == NULL) {
                        r = kw_buf_put_str(b, "\":null");
                } else if (r.code == 0) {
                        r = kw_buf_put_str(b, "\":\"");
                        if (r.code == 0)
                                r = kw_buf_put_json_escaped(b, v, strlen(v));
                        if (r.code == 0)
                                r = kw_buf_put(b, "\"", 1);
                }
        }
        va_end(ap);
        log_emit(b, r.code == 0);
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
        log_emit(b, ok);
}
