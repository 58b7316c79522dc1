/*
 * history.c - the per-minute request history (history.h).
 *
 * The hot path is kw_history_record: one mutex per class held for a few
 * dozen instructions (find the minute's slot, reset it when it holds an
 * older minute, add).  The reader copies a slot under the same mutex and
 * formats outside it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "history.h"

const uint64_t kw_hist_bucket_us[KW_HIST_BUCKETS] = {
        250,    500,    1000,   2000,   3000,   5000,   7500,    10000,
        15000,  20000,  30000,  50000,  75000,  100000, 150000,  200000,
        250000, 300000, 400000, 500000, 750000, 1000000, 2000000, 5000000,
};

static const char *const class_names[KW_HIST_CLASSES] = { "xks", "ekm", "admin" };

struct minute {
        int64_t minute;                       /* Unix minute; 0: never used */
        uint32_t requests, errors;
        uint16_t status[KW_HIST_STATUSES];
        uint32_t status_n[KW_HIST_STATUSES];
        uint32_t n_status, status_other;
        char code[KW_HIST_CODES][KW_HIST_CODE_MAX + 1];
        uint32_t code_n[KW_HIST_CODES];
        uint32_t n_code, code_other;
        uint32_t bucket[KW_HIST_BUCKETS + 1];
        uint64_t min_us, max_us;
};

struct ring {
        pthread_mutex_t mu;
        struct minute m[KW_HIST_MINUTES];
};

struct kw_history {
        struct ring r[KW_HIST_CLASSES];
};

int kw_history_class(const char *route_name)
{
        for (int i = 0; route_name != NULL && i < KW_HIST_CLASSES; i++)
                if (strcmp(route_name, class_names[i]) == 0)
                        return i;
        return -1;
}

kw_result kw_history_new(struct kw_history **ret)
{
        struct kw_history *h = calloc(1, sizeof *h);
        KW_ENSURE(h != NULL, KW_ERR_NOMEM);
        for (int i = 0; i < KW_HIST_CLASSES; i++)
                pthread_mutex_init(&h->r[i].mu, NULL);
        *ret = h;
        return KW_OK;
}

void kw_history_free(struct kw_history *h)
{
        if (h == NULL)
                return;
        for (int i = 0; i < KW_HIST_CLASSES; i++)
                pthread_mutex_destroy(&h->r[i].mu);
        free(h);
}

static int64_t minute_of(int64_t s)
{
        return s >= 0 ? s / 60 : (s - 59) / 60;
}

static size_t ring_index(int64_t minute)
{
        int64_t i = minute % KW_HIST_MINUTES;
        return (size_t)(i < 0 ? i + KW_HIST_MINUTES : i);
}

static void add_status(struct minute *m, int status)
{
        for (uint32_t i = 0; i < m->n_status; i++) {
                if (m->status[i] == status) {
                        m->status_n[i]++;
                        return;
                }
        }
        if (m->n_status == KW_HIST_STATUSES || status < 100 || status > 599) {
                m->status_other++;
                return;
        }
        m->status[m->n_status] = (uint16_t)status;
        m->status_n[m->n_status++] = 1;
}

static void add_code(struct minute *m, const char *error)
{
        size_t n = strnlen(error, KW_HIST_CODE_MAX + 1);
        for (uint32_t i = 0; n <= KW_HIST_CODE_MAX && i < m->n_code; i++) {
                if (strcmp(m->code[i], error) == 0) {
                        m->code_n[i]++;
                        return;
                }
        }
        if (m->n_code == KW_HIST_CODES || n > KW_HIST_CODE_MAX) {
                m->code_other++;
                return;
        }
        memcpy(m->code[m->n_code], error, n + 1);
        m->code_n[m->n_code++] = 1;
}

void kw_history_record(struct kw_history *h, int cls, int64_t now_s, int status, uint64_t us,
                       const char *error)
{
        if (h == NULL || cls < 0 || cls >= KW_HIST_CLASSES)
                return;
        int64_t minute = minute_of(now_s);
        size_t b = 0;
        while (b < KW_HIST_BUCKETS && us > kw_hist_bucket_us[b])
                b++;
        struct ring *r = &h->r[cls];
        pthread_mutex_lock(&r->mu);
        struct minute *m = &r->m[ring_index(minute)];
        if (m->minute < minute) {
                memset(m, 0, sizeof *m);
                m->minute = minute;
        }
        if (m->minute == minute) {   /* else: a request an hour late, dropped */
                m->requests++;
                if (status >= 400)
                        m->errors++;
                add_status(m, status);
                if (error != NULL && error[0] != '\0')
                        add_code(m, error);
                m->bucket[b]++;
                if (m->requests == 1 || us < m->min_us)
                        m->min_us = us;
                if (us > m->max_us)
                        m->max_us = us;
        }
        pthread_mutex_unlock(&r->mu);
}

double kw_history_percentile(const uint32_t *buckets, uint64_t min_us, uint64_t max_us, double q)
{
        uint64_t n = 0;
        for (size_t b = 0; b <= KW_HIST_BUCKETS; b++)
                n += buckets[b];
        if (n == 0 || q <= 0 || q > 1)
                return -1;
        double rank = q * (double)n, cum = 0;
        for (size_t b = 0; b <= KW_HIST_BUCKETS; b++) {
                if (buckets[b] == 0 || cum + buckets[b] < rank) {
                        cum += buckets[b];
                        continue;
                }
                double lo = b == 0 ? 0 : (double)kw_hist_bucket_us[b - 1];
                double hi = b < KW_HIST_BUCKETS ? (double)kw_hist_bucket_us[b] : (double)max_us;
                if (lo < (double)min_us)
                        lo = (double)min_us;
                if (hi > (double)max_us)
                        hi = (double)max_us;
                if (hi < lo)
                        hi = lo;
                double v = lo + (hi - lo) * ((rank - cum) / buckets[b]);
                return v / 1000.0;
        }
        return (double)max_us / 1000.0;   /* not reached: rank <= n */
}

static kw_result put_ms(struct kw_buf *out, const char *name, double ms)
{
        if (ms < 0)
                return kw_buf_printf(out, ",\"%s\":null", name);
        return kw_buf_printf(out, ",\"%s\":%.3f", name, ms);
}

static kw_result put_point(struct kw_buf *out, const struct minute *m, int64_t minute, int first)
{
        time_t t = (time_t)(minute * 60);
        struct tm tm;
        gmtime_r(&t, &tm);
        KW_TRY(kw_buf_printf(out, "%s{\"t\":\"%04d-%02d-%02dT%02d:%02d:00Z\",\"requests\":%u,"
                                  "\"errors\":%u,\"status\":{",
                             first ? "" : ",", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                             tm.tm_hour, tm.tm_min, m->requests, m->errors));
        for (uint32_t i = 0; i < m->n_status; i++)
                KW_TRY(kw_buf_printf(out, "%s\"%u\":%u", i ? "," : "", m->status[i],
                                     m->status_n[i]));
        if (m->status_other != 0)
                KW_TRY(kw_buf_printf(out, "%s\"other\":%u", m->n_status ? "," : "",
                                     m->status_other));
        KW_TRY(kw_buf_put_str(out, "},\"codes\":{"));
        for (uint32_t i = 0; i < m->n_code; i++) {
                KW_TRY(kw_buf_put_str(out, i ? ",\"" : "\""));
                KW_TRY(kw_buf_put_json_escaped(out, m->code[i], strlen(m->code[i])));
                KW_TRY(kw_buf_printf(out, "\":%u", m->code_n[i]));
        }
        if (m->code_other != 0)
                KW_TRY(kw_buf_printf(out, "%s\"other\":%u", m->n_code ? "," : "", m->code_other));
        KW_TRY(kw_buf_put_str(out, "}"));
        KW_TRY(put_ms(out, "p50_ms", kw_history_percentile(m->bucket, m->min_us, m->max_us, 0.50)));
        KW_TRY(put_ms(out, "p95_ms", kw_history_percentile(m->bucket, m->min_us, m->max_us, 0.95)));
        KW_TRY(put_ms(out, "p99_ms", kw_history_percentile(m->bucket, m->min_us, m->max_us, 0.99)));
        return kw_buf_put_str(out, "}");
}

static kw_result put_series(struct kw_history *h, int cls, int64_t now_min, struct kw_buf *out)
{
        KW_TRY(kw_buf_printf(out, "%s{\"route\":\"%s\",\"points\":[", cls ? "," : "",
                             class_names[cls]));
        struct ring *r = &h->r[cls];
        for (int64_t k = KW_HIST_MINUTES - 1; k >= 0; k--) {
                int64_t minute = now_min - k;
                struct minute m;
                pthread_mutex_lock(&r->mu);
                m = r->m[ring_index(minute)];
                pthread_mutex_unlock(&r->mu);
                if (m.minute != minute) {
                        memset(&m, 0, sizeof m);
                        m.minute = minute;
                }
                KW_TRY(put_point(out, &m, minute, k == KW_HIST_MINUTES - 1));
        }
        return kw_buf_put_str(out, "]}");
}

kw_result kw_history_json(struct kw_history *h, int64_t now_s, struct kw_buf *out)
{
        KW_ENSURE(h != NULL && out != NULL, KW_ERR_INTERNAL);
        size_t start = out->len;
        kw_result r = kw_buf_put_str(out, "[");
        for (int c = 0; kw_ok(r) && c < KW_HIST_CLASSES; c++)
                r = put_series(h, c, minute_of(now_s), out);
        if (kw_ok(r))
                r = kw_buf_put_str(out, "]");
        if (!kw_ok(r))
                out->len = start;
        return r;
}
