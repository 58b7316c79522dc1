/*
 * history.h - the front's per-minute request history of the last hour, by
 * route class (xks, ekm, admin), for GET /api/v1/metrics/history
 * (docs/api.md).
 *
 * http.c records every request where it already counts it for /metrics
 * (kw_history_record: one short mutex per class, no allocation, no I/O).
 * Each class has a ring of KW_HIST_MINUTES minutes; a slot is reused when
 * its minute comes round again.  A minute holds the request and error
 * counts, the count by HTTP status (at most KW_HIST_STATUSES distinct, the
 * rest under "other"), by error name (the request's log_error, at most
 * KW_HIST_CODES distinct names, the rest under "other"), and a latency
 * histogram from which p50/p95/p99 are interpolated (kw_history_percentile).
 * Time is the caller's (wall clock seconds): tests pass their own.
 */
#ifndef KW_HISTORY_H
#define KW_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/result.h"

enum kw_hist_class { KW_HIST_XKS = 0, KW_HIST_EKM = 1, KW_HIST_ADMIN = 2, KW_HIST_CLASSES = 3 };

#define KW_HIST_MINUTES 60
#define KW_HIST_STATUSES 16
#define KW_HIST_CODES 8
#define KW_HIST_CODE_MAX 47        /* longest error name kept (longer: "other") */
#define KW_HIST_BUCKETS 24         /* finite latency buckets; one more past the last */

struct kw_history;

/* The class of a route name of main.c's table ("xks", "ekm", "admin"), or
 * -1 for the others (healthz, metrics, attestation, none). */
int kw_history_class(const char *route_name);

/* A new, empty history: KW_OK and *ret, or KW_ERR_NOMEM.  Free with
 * kw_history_free (NULL-safe). */
KW_MUST_USE kw_result kw_history_new(struct kw_history **ret);
void kw_history_free(struct kw_history *h);

/* Counts one request of class cls (ignored when out of range or h is
 * NULL) answered at now_s (Unix seconds) with status after us
 * microseconds; error is its error name ("" or NULL: none). */
void kw_history_record(struct kw_history *h, int cls, int64_t now_s, int status, uint64_t us,
                       const char *error);

/* Appends the JSON array of the series, one per class in enum order:
 * [{"route":"xks","points":[...60 points, oldest first, the last one the
 * minute of now_s...]}, ...]; a point is {"t","requests","errors",
 * "status":{},"codes":{},"p50_ms","p95_ms","p99_ms"} (percentiles null for
 * an empty minute).  On failure out is as it was. */
KW_MUST_USE kw_result kw_history_json(struct kw_history *h, int64_t now_s, struct kw_buf *out);

/* The q-quantile (0 < q <= 1) in milliseconds of a histogram of
 * KW_HIST_BUCKETS + 1 counts (bucket bounds kw_hist_bucket_us; the last
 * bucket is open), linearly interpolated inside its bucket, whose bounds
 * are narrowed to [min_us, max_us] (the smallest and largest latency
 * recorded).  -1 when the histogram is empty. */
double kw_history_percentile(const uint32_t *buckets, uint64_t min_us, uint64_t max_us, double q);

/* The upper bound (inclusive, microseconds) of each finite bucket. */
extern const uint64_t kw_hist_bucket_us[KW_HIST_BUCKETS];

#endif
