/*
 * auditcost.c - BENCHMARK TOOL, never installed: what the key-use audit
 * costs per record, in the key store alone (no server): CPU microseconds per
 * record of the flush (kw_keystore_audit_append, as custody_audit.c calls
 * it once per group commit) and bytes on disk per record.
 *
 * It appends RECORDS key-use records to a new database in appends of BATCH
 * (the custody flushes every [db] audit_flush_ms: at AWS's default 1,800
 * requests/s and 50 ms that is 90 records per flush), with the fields an XKS
 * encrypt/decrypt records: actor "xks:default:<akid>", action
 * xks.encrypt|xks.decrypt, one of KEYS key names, result "ok", and a random
 * UUID as the request id (AWS's kmsRequestId).  Bytes per record is the
 * growth of the database file, after the WAL is checkpointed into it
 * (kw_keystore_close truncates the WAL), divided by RECORDS.
 *
 * usage: kw-auditcost DIR [RECORDS [BATCH [KEYS]]]   (defaults 200000 90 2)
 * DIR: where the throw-away database is made (and deleted).
 * Output: one JSON line {"records","batch","cpu_us_per_record",
 * "wall_us_per_record","bytes_per_record","db_bytes"}.
 * Exit status: 0 ok, 2 usage, 5 database.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "common/err.h"
#include "common/secret.h"
#include "custody/keystore.h"

static double clock_us(clockid_t id)
{
        struct timespec t;
        clock_gettime(id, &t);
        return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static long long file_size(const char *path)
{
        struct stat st;
        return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

static void uuid_v4(char out[37])
{
        static const char hx[] = "0123456789abcdef";
        uint8_t b[16];
        if (RAND_bytes(b, sizeof b) != 1)
                memset(b, 0x5a, sizeof b);
        b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
        b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
        size_t o = 0;
        for (int i = 0; i < 16; i++) {
                if (i == 4 || i == 6 || i == 8 || i == 10)
                        out[o++] = '-';
                out[o++] = hx[b[i] >> 4];
                out[o++] = hx[b[i] & 15];
        }
        out[o] = '\0';
}

static int fail(const char *what, kw_result r)
{
        const char *d = kw_err_detail();
        fprintf(stderr, "kw-auditcost: %s: %s\n", what, d[0] ? d : kw_strerror(r.code));
        return 5;
}

int main(int argc, char **argv)
{
        if (argc < 2 || argc > 5) {
                fprintf(stderr, "usage: kw-auditcost DIR [RECORDS [BATCH [KEYS]]]\n");
                return 2;
        }
        long records = argc > 2 ? atol(argv[2]) : 200000;
        long batch = argc > 3 ? atol(argv[3]) : 90;
        long nkeys = argc > 4 ? atol(argv[4]) : 2;
        if (records < 1 || records > 100000000L || batch < 1 || batch > 8192 || nkeys < 1 ||
            nkeys > 100000) {
                fprintf(stderr, "kw-auditcost: RECORDS 1..1e8, BATCH 1..8192, KEYS 1..100000\n");
                return 2;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/auditcost-%d.db", argv[1], (int)getpid());
        int locked = 0;
        kw_result r = kw_secret_init(1 << 20, &locked);
        if (r.code != 0)
                return fail("secure heap", r);
        uint8_t k[32];
        for (int i = 0; i < 32; i++)
                k[i] = (uint8_t)(i * 7 + 3);
        struct kw_secret key = { 0 };
        if ((r = kw_secret_dup(k, sizeof k, &key)).code != 0)
                return fail("key", r);
        struct kw_keystore *ks = NULL;
        if ((r = kw_keystore_open(path, &key, &ks)).code != 0)
                return fail("open", r);
        kw_keystore_close(ks);   /* the empty store's size, WAL folded in */
        long long size0 = file_size(path);
        if ((r = kw_keystore_open(path, &key, &ks)).code != 0)
                return fail("open", r);

        struct kw_audit_entry *e = calloc((size_t)batch, sizeof *e);
        char (*rid)[37] = calloc((size_t)batch, sizeof *rid);
        char (*kn)[32] = calloc((size_t)batch, sizeof *kn);
        if (e == NULL || rid == NULL || kn == NULL)
                return 5;
        double cpu = 0, wall = 0;
        long done = 0;
        int64_t ts = (int64_t)time(NULL) * 1000;
        while (done < records) {
                long n = records - done < batch ? records - done : batch;
                for (long i = 0; i < n; i++) {
                        uuid_v4(rid[i]);
                        snprintf(kn[i], sizeof kn[i], "tenant-key-%ld", (done + i) % nkeys);
                        ts += (done + i) % 3 == 0;   /* ~1,800 records per second */
                        e[i] = (struct kw_audit_entry){
                                .ts_ms = ts, .actor = "xks:default:AKIAKEYWARDTESTAAAAA",
                                .action = (done + i) % 2 ? "xks.decrypt" : "xks.encrypt",
                                .key_name = kn[i], .result = "ok", .detail = "",
                                .request_id = rid[i] };
                }
                double c0 = clock_us(CLOCK_THREAD_CPUTIME_ID), w0 = clock_us(CLOCK_MONOTONIC);
                r = kw_keystore_audit_append(ks, e, (size_t)n);
                cpu += clock_us(CLOCK_THREAD_CPUTIME_ID) - c0;
                wall += clock_us(CLOCK_MONOTONIC) - w0;
                if (r.code != 0)
                        return fail("append", r);
                done += n;
        }
        kw_keystore_close(ks);
        long long size1 = file_size(path);
        printf("{\"records\":%ld,\"batch\":%ld,\"cpu_us_per_record\":%.3f,"
               "\"wall_us_per_record\":%.3f,\"bytes_per_record\":%.2f,\"db_bytes\":%lld}\n",
               records, batch, cpu / (double)records, wall / (double)records,
               (double)(size1 - size0) / (double)records, size1);
        unlink(path);
        kw_secret_free(&key);
        free(e);
        free(rid);
        free(kn);
        return 0;
}
