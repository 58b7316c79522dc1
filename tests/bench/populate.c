/*
 * populate.c - BENCHMARK TOOL, never installed: fills the key store of a
 * stopped Keyward state with N AES-256 keys, fast, for the scale figures of
 * `make bench` (start-up time and RSS with 10k / 100k keys, key-cache
 * misses).  Creating them through the API costs a durable commit each.
 *
 * It opens the HSM and the key store exactly as the custody process does,
 * with the custody's own functions (custody_int.h): load_db_key unseals
 * the database key, seal_material seals each key's random material under
 * the HSM master key bound to its id and version 1 (one HSM call per key),
 * and kw_keystore_key_insert writes the row, the sealed blob and an audit
 * row.  Each insert is its own durable transaction; the bench runs this tool
 * under eatmydata (a throw-away benchmark database: fsync is skipped) so
 * that 100k keys take seconds.
 *
 * usage: kw-bench-populate CONFIG NAME_PREFIX COUNT [START]
 *   creates NAME_PREFIX%06d for START <= i < START+COUNT (START default 0)
 * Needs SOFTHSM2_CONF for a SoftHSM2 token.  The server must be stopped.
 * Output: one JSON line {"keys":N,"seconds":S,"seal_us":avg,"insert_us":avg}.
 * Exit status: 0 ok, 2 usage or configuration, 4 HSM, 5 database.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"
#include "common/proto.h"
#include "common/secret.h"
#include "config.h"
#include "custody/crypto.h"
#include "custody/custody_int.h"
#include "custody/hsm.h"
#include "custody/keystore.h"

#define MAX_COUNT 1000000L
/* every XKS store reaches the keys (docs/xks.md: a key without
 * xks.key_stores belongs to no store); EKM has no per-store rule */
#define BENCH_RULES "{\"xks\":{\"key_stores\":[\"*\"]}}"

static double now_s(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static const char *detail_or(int code)
{
        const char *d = kw_err_detail();
        return d[0] ? d : kw_strerror(code);
}

static int fail(int status, const char *what, kw_result r)
{
        fprintf(stderr, "kw-bench-populate: %s: %s\n", what, detail_or(r.code));
        return status;
}

/* One key: random id and material, sealed, inserted. */
static kw_result add_key(struct custody *c, const char *name, double *seal_s, double *insert_s)
{
        struct kw_key_row row;
        memset(&row, 0, sizeof row);
        uint8_t idb[16];
        KW_TRY(kw_random(idb, sizeof idb));
        for (int i = 0; i < 16; i++)
                snprintf(row.id + 2 * i, 3, "%02x", idb[i]);
        snprintf(row.name, sizeof row.name, "%s", name);
        snprintf(row.type, sizeof row.type, "AES");
        row.size = 256;
        snprintf(row.state, sizeof row.state, "enabled");
        row.ops = KW_KEYOP_ALL;
        row.current_version = 1;
        row.created = row.updated = time(NULL);
        row.tags_json = (char *)"{}";    /* not freed: no kw_key_row_clear below */
        row.rules_json = (char *)BENCH_RULES;

        struct kw_secret mat = { 0 };
        KW_TRY(kw_secret_alloc(32, &mat));
        struct kw_buf blob;
        kw_buf_init(&blob, 4096);
        double t0 = now_s();
        kw_result r = kw_random(mat.p, mat.len);
        if (r.code == 0)
                r = seal_material(c, &row, 1, &mat, &blob);
        double t1 = now_s();
        kw_secret_free(&mat);
        struct kw_audit_entry au = { .actor = "bench-populate", .action = "key.create",
                                     .key_name = row.name, .result = "ok" };
        if (r.code == 0)
                r = kw_keystore_key_insert(c->ks, &row, blob.p, blob.len, &au);
        *seal_s += t1 - t0;
        *insert_s += now_s() - t1;
        kw_buf_free(&blob);
        return r;
}

int main(int argc, char **argv)
{
        if (argc < 4 || argc > 5) {
                fprintf(stderr, "usage: kw-bench-populate CONFIG NAME_PREFIX COUNT [START]\n");
                return 2;
        }
        long count = strtol(argv[3], NULL, 10), start = argc == 5 ? strtol(argv[4], NULL, 10) : 0;
        if (count < 0 || count > MAX_COUNT || start < 0 || start > MAX_COUNT || strlen(argv[2]) > 50) {
                fprintf(stderr, "kw-bench-populate: COUNT and START are 0..%ld, the prefix <= 50 chars\n",
                        MAX_COUNT);
                return 2;
        }
        struct kw_config *cfg = NULL;
        kw_result r = kw_config_load(argv[1], NULL, &cfg);
        if (r.code != 0)
                return fail(2, "configuration", r);
        int locked = 0;
        r = kw_secret_init((size_t)cfg->db.secure_heap_bytes, &locked);
        if (r.code != 0)
                return fail(4, "secure memory", r);

        static struct custody c;
        c.cfg = cfg;
        pthread_mutex_init(&c.write_mu, NULL);
        struct kw_hsm_config hc = {
                .module = cfg->hsm.module, .token_label = cfg->hsm.token_label,
                .pin_file = cfg->hsm.pin_file, .master_key_label = cfg->hsm.master_key_label,
                .create_master_key = 0, .sessions = 1,
                .timeout_ms = (unsigned)cfg->hsm.timeout_ms,
                .retry_interval_ms = (unsigned)cfg->hsm.retry_interval_ms,
        };
        r = kw_hsm_open(&hc, &c.hsm, NULL);
        if (r.code != 0)
                return fail(4, "hsm", r);
        struct kw_secret dbkey = { 0 };
        r = load_db_key(&c, 1, &dbkey);
        if (r.code != 0)
                return fail(4, "database key", r);
        r = kw_keystore_open(cfg->db.path, &dbkey, &c.ks);
        kw_secret_free(&dbkey);
        if (r.code != 0)
                return fail(5, "database", r);

        double t0 = now_s(), seal_s = 0, insert_s = 0;
        for (long i = start; i < start + count; i++) {
                char name[65];
                snprintf(name, sizeof name, "%s%06ld", argv[2], i);
                r = add_key(&c, name, &seal_s, &insert_s);
                if (r.code != 0) {
                        fprintf(stderr, "kw-bench-populate: key %s: %s\n", name, detail_or(r.code));
                        kw_keystore_close(c.ks);
                        kw_hsm_close(c.hsm);
                        kw_config_free(cfg);
                        return 5;
                }
        }
        double secs = now_s() - t0;
        printf("{\"keys\":%ld,\"seconds\":%.3f,\"seal_us\":%.1f,\"insert_us\":%.1f}\n", count, secs,
               count ? seal_s * 1e6 / (double)count : 0.0, count ? insert_s * 1e6 / (double)count : 0.0);
        kw_keystore_close(c.ks);
        kw_hsm_close(c.hsm);
        kw_config_free(cfg);
        return 0;
}
