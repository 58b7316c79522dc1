/* history_test.c - the per-minute ring and the percentile interpolation,
 * with the test's own clock and latencies (nothing is timed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "front/history.h"

#define T0 1767225600    /* 2026-01-01T00:00:00Z, a minute start */

static cJSON *history_doc(struct kw_history *h, int64_t now)
{
        struct kw_buf b;
        kw_buf_init(&b, 1u << 20);
        assert_int_equal(kw_history_json(h, now, &b).code, 0);
        cJSON *d = cJSON_ParseWithLength((const char *)b.p, b.len);
        kw_buf_free(&b);
        assert_non_null(d);
        return d;
}

static const cJSON *point(const cJSON *doc, int cls, int i)
{
        const cJSON *pts = cJSON_GetObjectItem(cJSON_GetArrayItem(doc, cls), "points");
        assert_int_equal(cJSON_GetArraySize(pts), KW_HIST_MINUTES);
        return cJSON_GetArrayItem(pts, i);
}

static double num(const cJSON *o, const char *k)
{
        const cJSON *v = cJSON_GetObjectItem(o, k);
        assert_true(cJSON_IsNumber(v));
        return v->valuedouble;
}

static void history_class_names(void **state)
{
        (void)state;
        assert_int_equal(kw_history_class("xks"), KW_HIST_XKS);
        assert_int_equal(kw_history_class("ekm"), KW_HIST_EKM);
        assert_int_equal(kw_history_class("admin"), KW_HIST_ADMIN);
        assert_int_equal(kw_history_class("healthz"), -1);
        assert_int_equal(kw_history_class(NULL), -1);
}

static void history_percentile_empty_is_null(void **state)
{
        (void)state;
        uint32_t b[KW_HIST_BUCKETS + 1] = { 0 };
        assert_true(kw_history_percentile(b, 0, 0, 0.5) < 0);
        b[3] = 1;
        assert_true(kw_history_percentile(b, 1500, 1500, 0) < 0);     /* q out of range */
        assert_true(kw_history_percentile(b, 1500, 1500, 1.5) < 0);
}

static void history_percentile_single_value_is_exact(void **state)
{
        (void)state;
        uint32_t b[KW_HIST_BUCKETS + 1] = { 0 };
        b[3] = 1;   /* (1000, 2000] us */
        assert_float_equal(kw_history_percentile(b, 1500, 1500, 0.5), 1.5, 1e-9);
        assert_float_equal(kw_history_percentile(b, 1500, 1500, 0.99), 1.5, 1e-9);
}

static void history_percentile_interpolates_in_bucket(void **state)
{
        (void)state;
        uint32_t b[KW_HIST_BUCKETS + 1] = { 0 };
        /* 100 requests in (1000, 2000] us, observed min 1000, max 2000 */
        b[3] = 100;
        assert_float_equal(kw_history_percentile(b, 1000, 2000, 0.50), 1.5, 1e-9);
        assert_float_equal(kw_history_percentile(b, 1000, 2000, 0.95), 1.95, 1e-9);
        /* 90 fast ones in (250, 500], 10 slow ones in (75, 100] ms */
        memset(b, 0, sizeof b);
        b[1] = 90;
        b[13] = 10;
        assert_float_equal(kw_history_percentile(b, 250, 100000, 0.50), 0.250 + 0.250 * 50 / 90.0, 1e-9);
        assert_float_equal(kw_history_percentile(b, 250, 100000, 0.95), 75 + 25 * 0.5, 1e-9);
        assert_float_equal(kw_history_percentile(b, 250, 100000, 0.99), 75 + 25 * 0.9, 1e-9);
}

static void history_percentile_open_bucket_uses_max(void **state)
{
        (void)state;
        uint32_t b[KW_HIST_BUCKETS + 1] = { 0 };
        b[KW_HIST_BUCKETS] = 2;   /* over 5 s */
        assert_float_equal(kw_history_percentile(b, 6000000, 8000000, 0.5), 7000, 1e-6);
        assert_float_equal(kw_history_percentile(b, 6000000, 8000000, 1), 8000, 1e-6);
}

static void history_record_counts_minute(void **state)
{
        (void)state;
        struct kw_history *h = NULL;
        assert_int_equal(kw_history_new(&h).code, 0);
        kw_history_record(h, KW_HIST_XKS, T0 + 5, 200, 1200, "");
        kw_history_record(h, KW_HIST_XKS, T0 + 30, 200, 1800, NULL);
        kw_history_record(h, KW_HIST_XKS, T0 + 59, 401, 900, "authentication_failed");
        kw_history_record(h, KW_HIST_ADMIN, T0 + 10, 404, 300, "no_route");
        kw_history_record(h, -1, T0, 200, 1, "");           /* ignored */
        kw_history_record(h, KW_HIST_CLASSES, T0, 200, 1, ""); /* ignored */
        cJSON *d = history_doc(h, T0 + 59);
        assert_int_equal(cJSON_GetArraySize(d), KW_HIST_CLASSES);
        assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(d, 0), "route")->valuestring, "xks");
        assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(d, 2), "route")->valuestring, "admin");
        const cJSON *p = point(d, KW_HIST_XKS, KW_HIST_MINUTES - 1);
        assert_string_equal(cJSON_GetObjectItem(p, "t")->valuestring, "2026-01-01T00:00:00Z");
        assert_int_equal((int)num(p, "requests"), 3);
        assert_int_equal((int)num(p, "errors"), 1);
        const cJSON *st = cJSON_GetObjectItem(p, "status");
        assert_int_equal((int)num(st, "200"), 2);
        assert_int_equal((int)num(st, "401"), 1);
        assert_int_equal((int)num(cJSON_GetObjectItem(p, "codes"), "authentication_failed"), 1);
        assert_true(num(p, "p50_ms") >= 0.9 && num(p, "p50_ms") <= 1.8);
        assert_true(num(p, "p99_ms") <= 1.8);
        /* the minute before: zeros, null percentiles */
        const cJSON *e = point(d, KW_HIST_XKS, KW_HIST_MINUTES - 2);
        assert_string_equal(cJSON_GetObjectItem(e, "t")->valuestring, "2025-12-31T23:59:00Z");
        assert_int_equal((int)num(e, "requests"), 0);
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(e, "p50_ms")));
        assert_int_equal((int)num(point(d, KW_HIST_EKM, KW_HIST_MINUTES - 1), "requests"), 0);
        assert_int_equal((int)num(point(d, KW_HIST_ADMIN, KW_HIST_MINUTES - 1), "errors"), 1);
        cJSON_Delete(d);
        /* a minute later the point moved one to the left */
        d = history_doc(h, T0 + 60);
        assert_int_equal((int)num(point(d, KW_HIST_XKS, KW_HIST_MINUTES - 2), "requests"), 3);
        assert_int_equal((int)num(point(d, KW_HIST_XKS, KW_HIST_MINUTES - 1), "requests"), 0);
        cJSON_Delete(d);
        kw_history_free(h);
}

static void history_ring_reuses_slot_after_an_hour(void **state)
{
        (void)state;
        struct kw_history *h = NULL;
        assert_int_equal(kw_history_new(&h).code, 0);
        kw_history_record(h, KW_HIST_EKM, T0, 200, 100, "");
        kw_history_record(h, KW_HIST_EKM, T0 + 3600, 500, 100, "internal");   /* same slot */
        kw_history_record(h, KW_HIST_EKM, T0, 200, 100, "");   /* an hour late: dropped */
        cJSON *d = history_doc(h, T0 + 3600);
        const cJSON *p = point(d, KW_HIST_EKM, KW_HIST_MINUTES - 1);
        assert_int_equal((int)num(p, "requests"), 1);
        assert_int_equal((int)num(cJSON_GetObjectItem(p, "status"), "500"), 1);
        assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(p, "status"), "200"));
        for (int i = 0; i < KW_HIST_MINUTES - 1; i++)
                assert_int_equal((int)num(point(d, KW_HIST_EKM, i), "requests"), 0);
        cJSON_Delete(d);
        kw_history_free(h);
}

static void history_record_bounds_codes_and_statuses(void **state)
{
        (void)state;
        struct kw_history *h = NULL;
        assert_int_equal(kw_history_new(&h).code, 0);
        char name[16];
        for (int i = 0; i < KW_HIST_CODES + 3; i++) {
                snprintf(name, sizeof name, "e%d", i);
                kw_history_record(h, KW_HIST_ADMIN, T0, 400, 10, name);
        }
        char longname[80];
        memset(longname, 'x', sizeof longname - 1);
        longname[sizeof longname - 1] = '\0';
        kw_history_record(h, KW_HIST_ADMIN, T0, 400, 10, longname);
        for (int s = 0; s < KW_HIST_STATUSES + 2; s++)
                kw_history_record(h, KW_HIST_XKS, T0, 200 + s, 10, "");
        cJSON *d = history_doc(h, T0);
        const cJSON *codes = cJSON_GetObjectItem(point(d, KW_HIST_ADMIN, KW_HIST_MINUTES - 1), "codes");
        assert_int_equal(cJSON_GetArraySize(codes), KW_HIST_CODES + 1);
        assert_int_equal((int)num(codes, "other"), 4);
        assert_int_equal((int)num(codes, "e0"), 1);
        const cJSON *st = cJSON_GetObjectItem(point(d, KW_HIST_XKS, KW_HIST_MINUTES - 1), "status");
        assert_int_equal(cJSON_GetArraySize(st), KW_HIST_STATUSES + 1);
        assert_int_equal((int)num(st, "other"), 2);
        cJSON_Delete(d);
        kw_history_free(h);
}

static void history_json_null_fails(void **state)
{
        (void)state;
        struct kw_buf b;
        kw_buf_init(&b, 64);
        assert_int_equal(kw_history_json(NULL, T0, &b).code, KW_ERR_INTERNAL);
        assert_int_equal(b.len, 0);
        struct kw_history *h = NULL;
        assert_int_equal(kw_history_new(&h).code, 0);
        assert_int_equal(kw_history_json(h, T0, &b).code, KW_ERR_TOO_LARGE);   /* all or nothing */
        assert_int_equal(b.len, 0);
        kw_buf_free(&b);
        kw_history_record(NULL, 0, T0, 200, 1, "");   /* NULL-safe */
        kw_history_free(h);
        kw_history_free(NULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(history_class_names),
                cmocka_unit_test(history_percentile_empty_is_null),
                cmocka_unit_test(history_percentile_single_value_is_exact),
                cmocka_unit_test(history_percentile_interpolates_in_bucket),
                cmocka_unit_test(history_percentile_open_bucket_uses_max),
                cmocka_unit_test(history_record_counts_minute),
                cmocka_unit_test(history_ring_reuses_slot_after_an_hour),
                cmocka_unit_test(history_record_bounds_codes_and_statuses),
                cmocka_unit_test(history_json_null_fails),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
