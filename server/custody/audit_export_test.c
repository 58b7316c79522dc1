/* audit_export_test.c - cmocka tests of the audit export file: written from a
 * real key store, verified offline, and the findings of a changed, cut or
 * misplaced file; the errors of a directory that cannot be written. */
#define SQLITE_HAS_CODEC 1

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <zlib.h>

#include "custody/audit_export.h"
#include "custody/keystore.h"

static struct kw_secret key_a;

#include "keystore_fixture_test.h"

/* n key-use records in group commits of 100, with random-looking ids. */
static void append_uses(struct fx *f, int n)
{
        struct kw_audit_entry e[100];
        char rid[100][40], detail[100][16];
        for (int done = 0; done < n;) {
                int k = n - done < 100 ? n - done : 100;
                for (int i = 0; i < k; i++) {
                        snprintf(rid[i], sizeof rid[i], "%08x-1234-4abc-8def-%012x", done + i, (done + i) * 7919);
                        snprintf(detail[i], sizeof detail[i], (done + i) % 9 ? "" : "caf\xc3\xa9 %d", done + i);
                        e[i] = (struct kw_audit_entry){ .ts_ms = 1700000000000 + 10 * (done + i),
                                                        .actor = "xks:default:AKIA", .action = "xks.encrypt",
                                                        .key_name = "k1", .result = "ok",
                                                        .detail = detail[i], .request_id = rid[i] };
                }
                assert_int_equal(kw_keystore_audit_append(f->ks, e, (size_t)k).code, 0);
                done += k;
        }
}

static void path_of(const struct fx *f, const char *name, char *out, size_t cap)
{
        snprintf(out, cap, "%s/%s", f->dir, name);
}

/* The export's lines, decompressed, as one string (malloc'd). */
static char *read_gz(const char *path)
{
        gzFile gz = gzopen(path, "rb");
        assert_non_null(gz);
        size_t cap = 1 << 20, n = 0;
        char *s = malloc(cap);
        assert_non_null(s);
        int k;
        while ((k = gzread(gz, s + n, (unsigned)(cap - n - 1))) > 0)
                n += (size_t)k;
        gzclose(gz);
        s[n] = '\0';
        return s;
}

static void write_gz(const char *path, const char *s)
{
        gzFile gz = gzopen(path, "wb");
        assert_non_null(gz);
        assert_int_equal(gzwrite(gz, s, (unsigned)strlen(s)), (int)strlen(s));
        gzclose(gz);
}

static void export_ok(struct fx *f, uint64_t min_records, struct kw_audit_export_file *ef)
{
        struct kw_audit_select sel = { .min_records = min_records, .max_records = 100000 };
        kw_result r = kw_audit_export(f->ks, f->dir, &sel, ef);
        if (!kw_ok(r))
                print_error("export: %s: %s\n", kw_err_name(r.code), kw_err_detail());
        assert_int_equal(r.code, 0);
}

static void verify_file(const char *path, struct kw_audit_export_check *k)
{
        memset(k, 0x55, sizeof *k);
        assert_int_equal(kw_audit_export_verify(path, k).code, 0);
}

static void remove_file(const struct fx *f, const char *name)
{
        char p[400];
        path_of(f, name, p, sizeof p);
        unlink(p);
}

/* ------------------------------------------------------------------ tests */

/* Whole batches from seq 1, a file that verifies on its own and says what
 * the key store says; the next export chains to it; no temporary file left. */
static void audit_export_file_verifies_and_chains(void **state)
{
        struct fx *f = *state;
        append_uses(f, 450);
        struct kw_audit_export_file a, b;
        export_ok(f, 150, &a);
        assert_int_equal(a.first_seq, 1);
        assert_int_equal(a.last_seq, 200);          /* whole batches of 100 */
        assert_int_equal(a.records, 200);
        char hex[65], want[96];
        kw_audit_hex(a.last_hash, 32, hex);
        snprintf(want, sizeof want, "keyward-audit-%020d-%020d-%.16s.jsonl.gz", 1, 200, hex);
        assert_string_equal(a.name, want);
        static const uint8_t zero[32];
        assert_memory_equal(a.prev_hash, zero, 32);

        char p[400];
        path_of(f, a.name, p, sizeof p);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 0777 & ~0640, 0);
        struct kw_audit_export_check k;
        verify_file(p, &k);
        assert_true(k.ok);
        assert_int_equal(k.first_seq, 1);
        assert_int_equal(k.last_seq, 200);
        assert_int_equal(k.records, 200);
        assert_memory_equal(k.last_hash, a.last_hash, 32);
        assert_memory_equal(k.sha256, a.sha256, 32);

        /* the records of 1..200 as the store shows them: the file's last hash is theirs */
        struct kw_audit_prune pr = { .through_seq = a.last_seq, .export_file = a.name,
                                     .audit = &(struct kw_audit_entry){ .actor = "test",
                                                                        .action = "audit.prune" } };
        memcpy(pr.through_hash, a.last_hash, 32);
        uint64_t pruned = 0;
        assert_int_equal(kw_keystore_audit_prune(f->ks, &pr, &pruned).code, 0);
        assert_int_equal(pruned, 200);

        export_ok(f, 100, &b);
        assert_int_equal(b.first_seq, 201);
        assert_memory_equal(b.prev_hash, a.last_hash, 32);
        path_of(f, b.name, p, sizeof p);
        verify_file(p, &k);
        assert_true(k.ok);
        assert_memory_equal(k.prev_hash, a.last_hash, 32);

        assert_int_equal(kw_audit_export_clean(f->dir), 0);   /* nothing temporary left */
        remove_file(f, a.name);
        remove_file(f, b.name);
}

/* One changed field, a record removed, the end line cut off, a header that
 * lies about where it starts: each is a finding naming its line. */
static void audit_export_verify_names_each_tampering(void **state)
{
        struct fx *f = *state;
        append_uses(f, 100);
        struct kw_audit_export_file a;
        export_ok(f, 100, &a);
        char p[400], bad[400];
        path_of(f, a.name, p, sizeof p);
        path_of(f, "bad.jsonl.gz", bad, sizeof bad);
        char *orig = read_gz(p);
        struct kw_audit_export_check k;

        /* a changed field of record 7 (line 8) */
        char *s = strdup(orig);
        char *line = s;
        for (int i = 0; i < 7; i++)
                line = strchr(line, '\n') + 1;
        char *act = strstr(line, "xks.encrypt");
        assert_non_null(act);
        act[4] = 'd';                               /* xks.dncrypt */
        write_gz(bad, s);
        verify_file(bad, &k);
        assert_false(k.ok);
        assert_int_equal(k.bad_line, 8);
        assert_int_equal(k.bad_seq, 7);
        free(s);

        /* record 50 (line 51) removed: the next one does not follow */
        s = strdup(orig);
        line = s;
        for (int i = 0; i < 50; i++)
                line = strchr(line, '\n') + 1;
        char *next = strchr(line, '\n') + 1;
        memmove(line, next, strlen(next) + 1);
        write_gz(bad, s);
        verify_file(bad, &k);
        assert_false(k.ok);
        assert_int_equal(k.bad_line, 51);
        free(s);

        /* the end line cut off: incomplete */
        s = strdup(orig);
        size_t n = strlen(s);
        s[n - 1] = '\0';
        *(strrchr(s, '\n') + 1) = '\0';
        write_gz(bad, s);
        verify_file(bad, &k);
        assert_false(k.ok);
        assert_true(strlen(k.why) > 0);
        free(s);

        /* a header claiming another start hash */
        s = strdup(orig);
        char *ph = strstr(s, "\"prev_hash\":\"");
        assert_non_null(ph);
        ph[13] = ph[13] == '0' ? '1' : '0';
        write_gz(bad, s);
        verify_file(bad, &k);
        assert_false(k.ok);
        assert_int_equal(k.bad_line, 2);            /* the first record no longer links */
        free(s);

        /* the original still verifies */
        verify_file(p, &k);
        assert_true(k.ok);
        free(orig);
        unlink(bad);
        remove_file(f, a.name);
}

/* An export directory that is missing: KW_ERR_IO naming it, no file, *ret
 * untouched; a file that cannot be read: KW_ERR_IO. */
static void audit_export_unwritable_dir_fails_io(void **state)
{
        struct fx *f = *state;
        append_uses(f, 100);
        struct kw_audit_select sel = { .min_records = 100, .max_records = 1000 };
        struct kw_audit_export_file ef;
        memset(&ef, 0x55, sizeof ef);
        char missing[300];
        snprintf(missing, sizeof missing, "%s/not-there", f->dir);
        kw_err_clear_detail();
        assert_int_equal(kw_audit_export(f->ks, missing, &sel, &ef).code, KW_ERR_IO);
        assert_non_null(strstr(kw_err_detail(), "not-there"));
        assert_int_equal(ef.records, 0x5555555555555555ull);
        struct kw_audit_export_check k;
        assert_int_equal(kw_audit_export_verify(missing, &k).code, KW_ERR_IO);
        /* nothing read: the store is as it was */
        uint64_t rows = 0, first_bad = 1;
        assert_int_equal(kw_keystore_audit_verify(f->ks, &rows, &first_bad).code, 0);
        assert_int_equal(rows, 100);
        assert_int_equal(first_bad, 0);
}

/* What an interrupted export leaves is removed at start, nothing else. */
static void audit_export_clean_removes_only_temporaries(void **state)
{
        struct fx *f = *state;
        char p[400];
        path_of(f, ".keyward-audit-1-2-3.tmp", p, sizeof p);
        FILE *t = fopen(p, "w");
        assert_non_null(t);
        fclose(t);
        char keep[400];
        path_of(f, "keyward-audit-keep.jsonl.gz", keep, sizeof keep);
        t = fopen(keep, "w");
        assert_non_null(t);
        fclose(t);
        assert_int_equal(kw_audit_export_clean(f->dir), 1);
        assert_int_equal(access(p, F_OK), -1);
        assert_int_equal(access(keep, F_OK), 0);
        unlink(keep);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(audit_export_file_verifies_and_chains, setup, teardown),
                cmocka_unit_test_setup_teardown(audit_export_verify_names_each_tampering, setup, teardown),
                cmocka_unit_test_setup_teardown(audit_export_unwritable_dir_fails_io, setup, teardown),
                cmocka_unit_test_setup_teardown(audit_export_clean_removes_only_temporaries, setup,
                                                teardown),
        };
        return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
