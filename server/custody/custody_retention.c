/*
 * custody_retention.c - audit retention and the warnings about storage
 * (contract in custody_int.h; what it promises in docs/audit.md).
 *
 * A cycle (every [audit] check_interval_seconds, and on demand: POST
 * /api/v1/audit/prune) measures the key store (kw_keystore_audit_stats)
 * and the file systems of the database and of export_dir (statvfs), then,
 * when a bound is configured and passed, exports the oldest records
 * (kw_audit_export: written, fsynced, renamed, read back and verified) and
 * prunes exactly what the file holds behind a checkpoint, in chunks of at
 * most CHUNK_RECORDS, until the bound holds again.  The size bound has
 * hysteresis: pruning starts above HIGH_PCT % of max_bytes and, within the
 * same cycle, goes on chunk by chunk (measured again after each) down to
 * LOW_PCT %.  HIGH_PCT leaves room under max_bytes for what arrives between
 * two checks and for the pages a prune's own transaction allocates before it
 * frees others: the file, which keeps its high-water mark, stays under
 * max_bytes (make soak checks it).
 * The newest KEEP_RECORDS records are never pruned for size (a key store
 * whose keys alone pass the bound would otherwise export a file a cycle).
 *
 * Never a silent stop: an export or prune that fails is counted, logged
 * (the first failure, then once an hour while it lasts) and raised as a
 * warning; key uses go on being audited and served while the database can
 * grow.  A warning is logged once when it appears and once when it clears.
 */
#include <errno.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "../common/log.h"
#include "audit_export.h"
#include "custody_int.h"

#define CHUNK_RECORDS 262144u           /* records per export file at most   */
#define EXPORTS_PER_CYCLE 64
#define KEEP_RECORDS 1024u
#define HIGH_PCT 80u
#define LOW_PCT 60u
#define FAIL_LOG_MS (3600 * 1000)
#define DAY_MS (86400 * INT64_C(1000))

enum {
        W_EXPORT_FAILING,
        W_FLUSH_FAILING,
        W_OVER_BOUND,
        W_DISK_LOW,
        W_BOUND_TOO_BIG,
        W_COUNT
};
static const char *const warn_code[W_COUNT] = {
        "audit_export_failing", "audit_flush_failing", "audit_over_bound", "disk_space_low",
        "audit_bound_exceeds_disk",
};

struct fs {
        int ok;
        uint64_t free_bytes, size_bytes;
};

struct retention {
        struct custody *c;
        const struct kw_config *cfg;
        pthread_mutex_t run_mu;              /* one cycle at a time               */
        pthread_mutex_t mu;                  /* everything below                  */
        int measured;
        struct kw_audit_stats st;
        int64_t measured_ms;
        struct fs db_fs, ex_fs;
        uint64_t exports, export_failures, pruned;
        int export_failing;
        char last_file[96];
        int64_t last_export_ms;
        char last_error[300];
        int64_t fail_logged_ms;
        unsigned warn, logged;               /* bits of W_*                       */
        char msg[W_COUNT][512];
        pthread_t th;
};

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int bounded(const struct kw_config *cfg)
{
        return (cfg->audit.max_bytes > 0 || cfg->audit.max_age_days > 0) &&
               cfg->audit.export_dir[0] != '\0';
}

static struct fs fs_of(const char *path)
{
        struct fs f = { 0 };
        struct statvfs sv;
        if (path != NULL && path[0] != '\0' && statvfs(path, &sv) == 0) {
                f.ok = 1;
                f.free_bytes = (uint64_t)sv.f_bavail * sv.f_frsize;
                f.size_bytes = (uint64_t)sv.f_blocks * sv.f_frsize;
        }
        return f;
}

/* ------------------------------------------------------------- warnings */

static int fs_low(const struct fs *f, int64_t pct)
{
        return f->ok && f->size_bytes != 0 && pct > 0 &&
               f->free_bytes * 100 < (uint64_t)pct * f->size_bytes;
}

/* The warnings of the last measurement; under mu. */
static void evaluate(struct retention *rt)
{
        const struct kw_config *cfg = rt->cfg;
        const struct kw_audit_stats *st = &rt->st;
        unsigned w = 0;
        memset(rt->msg, 0, sizeof rt->msg);
        if (rt->export_failing) {
                w |= 1u << W_EXPORT_FAILING;
                snprintf(rt->msg[W_EXPORT_FAILING], sizeof rt->msg[0],
                         "audit records cannot be exported, so none are pruned and the database "
                         "grows: %s", rt->last_error);
        }
        struct audit_queue_stats qs;
        audit_queue_get_stats(rt->c->aq, &qs);
        if (qs.failing) {
                w |= 1u << W_FLUSH_FAILING;
                snprintf(rt->msg[W_FLUSH_FAILING], sizeof rt->msg[0],
                         "key-use audit records cannot be written (%zu waiting; requests wait when "
                         "8192 do): %s", qs.pending, qs.last_error);
        }
        int64_t now = now_ms();
        uint64_t max_bytes = (uint64_t)cfg->audit.max_bytes;
        int64_t max_age = cfg->audit.max_age_days * DAY_MS;
        if (max_bytes != 0 && st->db_bytes > max_bytes) {
                w |= 1u << W_OVER_BOUND;
                snprintf(rt->msg[W_OVER_BOUND], sizeof rt->msg[0],
                         "the database holds %llu bytes, over [audit] max_bytes %llu",
                         (unsigned long long)st->db_bytes, (unsigned long long)max_bytes);
        } else if (max_age != 0 && st->oldest_ts_ms != 0 &&
                   now - st->oldest_ts_ms > max_age + 3 * cfg->audit.check_interval_seconds * 1000) {
                w |= 1u << W_OVER_BOUND;
                snprintf(rt->msg[W_OVER_BOUND], sizeof rt->msg[0],
                         "the oldest audit record is %lld days old, over [audit] max_age_days %lld",
                         (long long)((now - st->oldest_ts_ms) / DAY_MS),
                         (long long)cfg->audit.max_age_days);
        }
        int64_t pct = cfg->audit.warn_free_percent;
        if (fs_low(&rt->db_fs, pct) || fs_low(&rt->ex_fs, pct)) {
                const struct fs *f = fs_low(&rt->db_fs, pct) ? &rt->db_fs : &rt->ex_fs;
                w |= 1u << W_DISK_LOW;
                snprintf(rt->msg[W_DISK_LOW], sizeof rt->msg[0],
                         "the file system of %s has %llu of %llu bytes free, under [audit] "
                         "warn_free_percent %lld %%",
                         f == &rt->db_fs ? "the database" : "[audit] export_dir",
                         (unsigned long long)f->free_bytes, (unsigned long long)f->size_bytes,
                         (long long)pct);
        }
        if (max_bytes != 0 && rt->db_fs.ok && st->db_bytes < max_bytes &&
            max_bytes - st->db_bytes > rt->db_fs.free_bytes) {
                w |= 1u << W_BOUND_TOO_BIG;
                snprintf(rt->msg[W_BOUND_TOO_BIG], sizeof rt->msg[0],
                         "[audit] max_bytes %llu does not fit: the database may grow %llu more "
                         "bytes, its file system has %llu free",
                         (unsigned long long)max_bytes,
                         (unsigned long long)(max_bytes - st->db_bytes),
                         (unsigned long long)rt->db_fs.free_bytes);
        }
        rt->warn = w;
}

/* One line when a warning appears, one when it clears; under mu. */
static void log_transitions(struct retention *rt)
{
        for (int i = 0; i < W_COUNT; i++) {
                unsigned b = 1u << i;
                if ((rt->warn & b) && !(rt->logged & b))
                        kw_log(KW_LOG_WARN, "audit_warning", "warning", warn_code[i], "message",
                               rt->msg[i], KW_END);
                else if (!(rt->warn & b) && (rt->logged & b))
                        kw_log(KW_LOG_INFO, "audit_warning_cleared", "warning", warn_code[i], KW_END);
        }
        rt->logged = rt->warn;
}

/* ---------------------------------------------------------------- cycle */

static void measure(struct retention *rt)
{
        struct kw_audit_stats st;
        kw_result r = kw_keystore_audit_stats(rt->c->ks, &st);
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", rt->cfg->db.path);
        /* a fleet's database is on the database server: its file system is
         * not this node's to measure (fs_of("") is "not measured") */
        struct fs db_fs = fs_of(custody_fleet_mode(rt->cfg) ? "" : dirname(dir));
        struct fs ex_fs = fs_of(rt->cfg->audit.export_dir);
        pthread_mutex_lock(&rt->mu);
        if (kw_ok(r)) {
                rt->st = st;
                rt->measured = 1;
                rt->measured_ms = now_ms();
        }
        rt->db_fs = db_fs;
        rt->ex_fs = ex_fs;
        pthread_mutex_unlock(&rt->mu);
}

/* What to export next (nothing: records 0 and no age rule); started: this
 * cycle pruned already, so the size rule holds down to LOW_PCT. */
static struct kw_audit_select plan(struct retention *rt, int started)
{
        const struct kw_config *cfg = rt->cfg;
        struct kw_audit_select sel = { .max_records = CHUNK_RECORDS };
        pthread_mutex_lock(&rt->mu);
        struct kw_audit_stats st = rt->st;
        pthread_mutex_unlock(&rt->mu);
        if (cfg->audit.max_age_days > 0) {
                int64_t cut = now_ms() - cfg->audit.max_age_days * DAY_MS;
                if (st.oldest_ts_ms != 0 && st.oldest_ts_ms < cut)
                        sel.before_ts_ms = cut;
        }
        uint64_t max = (uint64_t)cfg->audit.max_bytes;
        uint64_t low = max / 100 * LOW_PCT, high = max / 100 * HIGH_PCT;
        if (max != 0 && st.db_bytes > (started ? low : high) && st.records > KEEP_RECORDS) {
                uint64_t per = st.db_bytes / st.records;
                uint64_t want = per != 0 ? (st.db_bytes - low + per - 1) / per : 0;
                uint64_t cap = st.records - KEEP_RECORDS;
                sel.min_records = want < cap ? want : cap;
                if (sel.before_ts_ms == 0 && cap < sel.max_records)
                        sel.max_records = cap;   /* whole units: never into the newest */
        }
        return sel;
}

static void note_failure(struct retention *rt, const char *what, kw_result r)
{
        pthread_mutex_lock(&rt->mu);
        rt->export_failures++;
        rt->export_failing = 1;
        snprintf(rt->last_error, sizeof rt->last_error, "%s: %s: %s", what, kw_err_name(r.code),
                 kw_err_detail());
        int64_t now = now_ms();
        if (rt->fail_logged_ms == 0 || now - rt->fail_logged_ms >= FAIL_LOG_MS) {
                char n[24];
                snprintf(n, sizeof n, "%llu", (unsigned long long)rt->export_failures);
                kw_log(KW_LOG_ERROR, "audit_export_failed", "step", what, "error",
                       kw_err_name(r.code), "detail", kw_err_detail(), "dir",
                       rt->cfg->audit.export_dir, "failures_total", n, KW_END);
                rt->fail_logged_ms = now;
        }
        pthread_mutex_unlock(&rt->mu);
}

/* Exports and prunes one chunk; *ret_done when there was nothing to do. */
static kw_result one_export(struct retention *rt, const char *actor, const char *request_id,
                            cJSON *files, int started, int *ret_done)
{
        struct kw_audit_select sel = plan(rt, started);
        *ret_done = sel.min_records == 0 && sel.before_ts_ms == 0;
        if (*ret_done)
                return KW_OK;
        struct kw_audit_export_file ef;
        kw_result r = kw_audit_export(rt->c->ks, rt->cfg->audit.export_dir, &sel, &ef);
        if (!kw_ok(r)) {
                note_failure(rt, "export", r);
                return r;
        }
        *ret_done = ef.records == 0;
        if (*ret_done)
                return KW_OK;
        char detail[200];
        snprintf(detail, sizeof detail, "seq %llu-%llu (%llu records) exported to %s",
                 (unsigned long long)ef.first_seq, (unsigned long long)ef.last_seq,
                 (unsigned long long)ef.records, ef.name);
        struct kw_audit_entry au = { .actor = actor, .action = "audit.prune", .result = "ok",
                                     .detail = detail, .request_id = request_id };
        struct kw_audit_prune p = { .through_seq = ef.last_seq, .through_ts_ms = ef.last_ts_ms,
                                    .export_file = ef.name, .audit = &au };
        memcpy(p.through_hash, ef.last_hash, sizeof p.through_hash);
        memcpy(p.export_sha256, ef.sha256, sizeof p.export_sha256);
        uint64_t n = 0;
        r = kw_keystore_audit_prune(rt->c->ks, &p, &n);
        if (!kw_ok(r)) {
                note_failure(rt, "prune", r);   /* the file stays; the records too */
                return r;
        }
        char nb[24];
        snprintf(nb, sizeof nb, "%llu", (unsigned long long)n);
        kw_log(KW_LOG_INFO, "audit_pruned", "file", ef.name, "records", nb, "actor", actor, KW_END);
        pthread_mutex_lock(&rt->mu);
        rt->exports++;
        rt->pruned += n;
        rt->export_failing = 0;
        rt->last_error[0] = '\0';
        rt->fail_logged_ms = 0;
        snprintf(rt->last_file, sizeof rt->last_file, "%s", ef.name);
        rt->last_export_ms = now_ms();
        pthread_mutex_unlock(&rt->mu);
        if (files != NULL) {
                cJSON *f = cJSON_CreateObject();
                if (f != NULL) {
                        char hex[2 * KW_AUDIT_HASH_LEN + 1];
                        kw_audit_hex(ef.last_hash, KW_AUDIT_HASH_LEN, hex);
                        cJSON_AddStringToObject(f, "file", ef.name);
                        cJSON_AddNumberToObject(f, "first_seq", (double)ef.first_seq);
                        cJSON_AddNumberToObject(f, "last_seq", (double)ef.last_seq);
                        cJSON_AddNumberToObject(f, "records", (double)ef.records);
                        cJSON_AddStringToObject(f, "last_hash", hex);
                        cJSON_AddItemToArray(files, f);
                }
        }
        measure(rt);
        return KW_OK;
}

static kw_result cycle(struct retention *rt, const char *actor, const char *request_id, cJSON *files)
{
        pthread_mutex_lock(&rt->run_mu);
        measure(rt);
        kw_result r = KW_OK;
        if (bounded(rt->cfg)) {
                int done = 0;
                for (int i = 0; i < EXPORTS_PER_CYCLE && kw_ok(r) && !done; i++)
                        r = one_export(rt, actor, request_id, files, i > 0, &done);
        }
        pthread_mutex_lock(&rt->mu);
        evaluate(rt);
        log_transitions(rt);
        pthread_mutex_unlock(&rt->mu);
        pthread_mutex_unlock(&rt->run_mu);
        return r;
}

static void *retention_thread(void *arg)
{
        struct retention *rt = arg;
        for (;;) {
                kw_ignore(cycle(rt, "custody:retention", "", NULL));
                sleep((unsigned)rt->cfg->audit.check_interval_seconds);
        }
        return NULL;
}

/* ------------------------------------------------------------ interface */

kw_result retention_new(struct custody *c, struct retention **ret)
{
        struct retention *rt = calloc(1, sizeof *rt);
        KW_ENSURE(rt != NULL, KW_ERR_NOMEM);
        rt->c = c;
        rt->cfg = c->cfg;
        pthread_mutex_init(&rt->run_mu, NULL);
        pthread_mutex_init(&rt->mu, NULL);
        const char *dir = rt->cfg->audit.export_dir;
        if (dir[0] != '\0') {
                if (access(dir, W_OK | X_OK) != 0)
                        kw_log(KW_LOG_ERROR, "audit_export_dir_unusable", "dir", dir, "error",
                               strerror(errno), "hint",
                               "create it, writable by the custody process's user: until then "
                               "nothing is exported or pruned",
                               KW_END);
                unsigned n = kw_audit_export_clean(dir);
                if (n != 0) {
                        char nb[16];
                        snprintf(nb, sizeof nb, "%u", n);
                        kw_log(KW_LOG_INFO, "audit_export_tmp_removed", "dir", dir, "files", nb, KW_END);
                }
        }
        if (!bounded(rt->cfg))
                kw_log(KW_LOG_INFO, "audit_retention_off", "hint",
                       "set [audit] max_bytes or max_age_days and export_dir to bound the audit",
                       KW_END);
        *ret = rt;
        return KW_OK;
}

kw_result retention_start(struct retention *rt)
{
        if (pthread_create(&rt->th, NULL, retention_thread, rt) != 0)
                KW_BAIL(KW_ERR_INTERNAL);
        pthread_detach(rt->th);
        return KW_OK;
}

kw_result retention_run(struct retention *rt, const struct op_caller *who, cJSON *doc)
{
        if (!bounded(rt->cfg)) {
                kw_err_set_detail("no audit retention is configured: set [audit] max_bytes or "
                                  "max_age_days, and export_dir");
                KW_BAIL(KW_ERR_BAD_STATE);
        }
        cJSON *files = cJSON_AddArrayToObject(doc, "exported");
        KW_ENSURE(files != NULL, KW_ERR_NOMEM);
        uint64_t before;
        pthread_mutex_lock(&rt->mu);
        before = rt->pruned;
        pthread_mutex_unlock(&rt->mu);
        kw_result r = cycle(rt, who->actor, who->request_id, files);
        pthread_mutex_lock(&rt->mu);
        cJSON_AddNumberToObject(doc, "pruned_records", (double)(rt->pruned - before));
        pthread_mutex_unlock(&rt->mu);
        return r;
}

size_t retention_warning_codes(struct retention *rt, cJSON *arr)
{
        pthread_mutex_lock(&rt->mu);
        unsigned w = rt->warn;
        pthread_mutex_unlock(&rt->mu);
        struct audit_queue_stats qs;
        audit_queue_get_stats(rt->c->aq, &qs);   /* live: a flush fails every 50 ms */
        w = qs.failing ? w | 1u << W_FLUSH_FAILING : w & ~(1u << W_FLUSH_FAILING);
        size_t n = 0;
        for (int i = 0; i < W_COUNT; i++)
                if (w & (1u << i)) {
                        if (arr != NULL)
                                cJSON_AddItemToArray(arr, cJSON_CreateString(warn_code[i]));
                        n++;
                }
        return n;
}

static double age_s(int64_t ts_ms)
{
        return ts_ms != 0 ? (double)(now_ms() - ts_ms) / 1000.0 : 0;
}

void retention_stats_json(struct retention *rt, cJSON *doc)
{
        struct audit_queue_stats qs;
        audit_queue_get_stats(rt->c->aq, &qs);
        pthread_mutex_lock(&rt->mu);
        const struct kw_audit_stats *st = &rt->st;
        cJSON *a = cJSON_AddObjectToObject(doc, "audit");
        cJSON_AddNumberToObject(a, "records", (double)st->records);
        cJSON_AddNumberToObject(a, "first_seq", (double)st->first_seq);
        cJSON_AddNumberToObject(a, "last_seq", (double)st->last_seq);
        cJSON_AddNumberToObject(a, "oldest_seconds", age_s(st->oldest_ts_ms));
        cJSON_AddNumberToObject(a, "checkpoint_seq", (double)st->checkpoint_seq);
        cJSON_AddNumberToObject(a, "records_written_total", (double)qs.written);
        cJSON_AddNumberToObject(a, "flush_failures_total", (double)qs.failed_flushes);
        cJSON_AddNumberToObject(a, "exports_total", (double)rt->exports);
        cJSON_AddNumberToObject(a, "export_failures_total", (double)rt->export_failures);
        cJSON_AddNumberToObject(a, "pruned_records_total", (double)rt->pruned);
        cJSON_AddNumberToObject(a, "max_bytes", (double)rt->cfg->audit.max_bytes);
        cJSON_AddNumberToObject(a, "max_age_seconds", (double)(rt->cfg->audit.max_age_days * 86400));
        cJSON_AddNumberToObject(a, "measured_seconds_ago", rt->measured ? age_s(rt->measured_ms) : -1);
        cJSON *w = cJSON_AddObjectToObject(a, "warning");
        unsigned bits = rt->warn | (qs.failing ? 1u << W_FLUSH_FAILING : 0);
        for (int i = 0; i < W_COUNT; i++)
                cJSON_AddNumberToObject(w, warn_code[i], (bits >> i) & 1);
        cJSON *db = cJSON_AddObjectToObject(doc, "db");
        cJSON_AddNumberToObject(db, "bytes", (double)st->db_bytes);
        cJSON_AddNumberToObject(db, "file_bytes", (double)st->db_file_bytes);
        cJSON_AddNumberToObject(db, "wal_bytes", (double)st->wal_bytes);
        cJSON *d = cJSON_AddObjectToObject(doc, "disk");
        cJSON_AddNumberToObject(d, "free_bytes", (double)rt->db_fs.free_bytes);
        cJSON_AddNumberToObject(d, "size_bytes", (double)rt->db_fs.size_bytes);
        if (rt->cfg->audit.export_dir[0] != '\0') {
                cJSON *e = cJSON_AddObjectToObject(doc, "export_disk");
                cJSON_AddNumberToObject(e, "free_bytes", (double)rt->ex_fs.free_bytes);
                cJSON_AddNumberToObject(e, "size_bytes", (double)rt->ex_fs.size_bytes);
        }
        pthread_mutex_unlock(&rt->mu);
}

void retention_status_json(struct retention *rt, cJSON *doc)
{
        struct audit_queue_stats qs;
        audit_queue_get_stats(rt->c->aq, &qs);
        pthread_mutex_lock(&rt->mu);
        const struct kw_audit_stats *st = &rt->st;
        const struct kw_config *cfg = rt->cfg;
        cJSON *a = cJSON_AddObjectToObject(doc, "audit");
        cJSON_AddNumberToObject(a, "records", (double)st->records);
        cJSON_AddNumberToObject(a, "first_seq", (double)st->first_seq);
        cJSON_AddNumberToObject(a, "last_seq", (double)st->last_seq);
        char t[32];
        if (st->oldest_ts_ms != 0) {
                format_time(st->oldest_ts_ms / 1000, t);
                cJSON_AddStringToObject(a, "oldest", t);
        } else {
                cJSON_AddNullToObject(a, "oldest");
        }
        if (st->checkpoint_seq != 0) {
                char hex[2 * KW_AUDIT_HASH_LEN + 1];
                kw_audit_hex(st->checkpoint_hash, KW_AUDIT_HASH_LEN, hex);
                cJSON *cp = cJSON_AddObjectToObject(a, "checkpoint");
                cJSON_AddNumberToObject(cp, "seq", (double)st->checkpoint_seq);
                cJSON_AddStringToObject(cp, "hash", hex);
        } else {
                cJSON_AddNullToObject(a, "checkpoint");
        }
        cJSON_AddNumberToObject(a, "db_bytes", (double)st->db_bytes);
        cJSON_AddNumberToObject(a, "db_file_bytes", (double)st->db_file_bytes);
        cJSON_AddNumberToObject(a, "disk_free_bytes", (double)rt->db_fs.free_bytes);
        cJSON *ret = cJSON_AddObjectToObject(a, "retention");
        cJSON_AddBoolToObject(ret, "enabled", bounded(cfg));
        cJSON_AddNumberToObject(ret, "max_bytes", (double)cfg->audit.max_bytes);
        cJSON_AddNumberToObject(ret, "max_age_days", (double)cfg->audit.max_age_days);
        cJSON_AddStringToObject(ret, "export_dir", cfg->audit.export_dir);
        cJSON_AddNumberToObject(ret, "exports", (double)rt->exports);
        cJSON_AddNumberToObject(ret, "export_failures", (double)rt->export_failures);
        cJSON_AddNumberToObject(ret, "pruned_records", (double)rt->pruned);
        if (rt->last_file[0] != '\0') {
                cJSON_AddStringToObject(ret, "last_file", rt->last_file);
                format_time(rt->last_export_ms / 1000, t);
                cJSON_AddStringToObject(ret, "last_export", t);
        }
        if (rt->last_error[0] != '\0')
                cJSON_AddStringToObject(ret, "last_error", rt->last_error);
        cJSON *ws = cJSON_AddArrayToObject(a, "warnings");
        for (int i = 0; i < W_COUNT; i++) {
                const char *m = rt->msg[i];
                int on = (rt->warn >> i) & 1;
                if (i == W_FLUSH_FAILING)
                        on = qs.failing;
                if (!on)
                        continue;
                cJSON *w = cJSON_CreateObject();
                cJSON_AddStringToObject(w, "code", warn_code[i]);
                cJSON_AddStringToObject(w, "message",
                                        i == W_FLUSH_FAILING && m[0] == '\0' ? qs.last_error : m);
                cJSON_AddItemToArray(ws, w);
        }
        pthread_mutex_unlock(&rt->mu);
}
