/* log.c - JSON log lines. */
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

static kw_result log_head(struct kw_buf *b, enum kw_log_level lvl)
{
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        return kw_buf_printf(b, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"proc\":\"%s\"",
                             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                             tm.tm_sec, ts.tv_nsec / 1000000, level_names[lvl], log_proc);
}

static void log_emit(struct kw_buf *b)
{
        if (kw_buf_put(b, "}\n", 2).code != 0) {
                /* over the line cap: cut the line, keep it valid JSON */
                static const char cut[] = "\"truncated\":true}\n";
                b->len = 0;
                kw_ignore(log_head(b, KW_LOG_WARN));
                kw_ignore(kw_buf_put(b, ",", 1));
                kw_ignore(kw_buf_put(b, cut, sizeof cut - 1));
        }
        ssize_t n = write(STDERR_FILENO, b->p, b->len);
        (void)n;
        kw_buf_free(b);
}

void kw_log(enum kw_log_level lvl, const char *event, ...)
{
        if (lvl < log_min)
                return;
        struct kw_buf b;
        kw_buf_init(&b, 8192);
        kw_result r = log_head(&b, lvl);
        if (r.code == 0)
                r = kw_buf_put_str(&b, ",\"event\":\"");
        if (r.code == 0)
                r = kw_buf_put_json_escaped(&b, event, strlen(event));
        if (r.code == 0)
                r = kw_buf_put(&b, "\"", 1);
        va_list ap;
        va_start(ap, event);
        for (;;) {
                const char *k = va_arg(ap, const char *);
                if (k == NULL || r.code != 0)
                        break;
                const char *v = va_arg(ap, const char *);
                r = kw_buf_put_str(&b, ",\"");
                if (r.code == 0)
                        r = kw_buf_put_json_escaped(&b, k, strlen(k));
                if (r.code == 0 && v == NULL) {
                        r = kw_buf_put_str(&b, "\":null");
                } else if (r.code == 0) {
                        r = kw_buf_put_str(&b, "\":\"");
                        if (r.code == 0)
                                r = kw_buf_put_json_escaped(&b, v, strlen(v));
                        if (r.code == 0)
                                r = kw_buf_put(&b, "\"", 1);
                }
        }
        va_end(ap);
        log_emit(&b);
}

void kw_log_raw(enum kw_log_level lvl, const char *fields_json)
{
        if (lvl < log_min)
                return;
        struct kw_buf b;
        kw_buf_init(&b, 16384);
        if (log_head(&b, lvl).code == 0 && kw_buf_put(&b, ",", 1).code == 0)
                kw_ignore(kw_buf_put_str(&b, fields_json));
        log_emit(&b);
}
