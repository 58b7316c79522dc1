/* unlock_record_test.c - the unlock record: written atomically, 0644, its
 * directory created, read back as keywardd reads it; a failure leaves
 * nothing behind. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "unlock_record.h"

static struct kwu_layout layout(void)
{
        struct kwu_layout l;
        memset(&l, 0, sizeof l);
        l.ntokens = 3;
        l.tokens[0].type = KWU_TOKEN_SYSTEMD_RECOVERY;
        l.tokens[1].type = KWU_TOKEN_SYSTEMD_TPM2;
        l.tokens[2].type = KWU_TOKEN_SYSTEMD_TPM2;
        return l;
}

static int entries(const char *dir)
{
        DIR *d = opendir(dir);
        assert_non_null(d);
        int n = 0;
        for (struct dirent *e; (e = readdir(d)) != NULL;)
                n += e->d_name[0] != '.';
        closedir(d);
        return n;
}

static void unlock_record_write_reads_back(void **state)
{
        (void)state;
        char base[] = "/tmp/kwu-rec-XXXXXX", dir[64], path[96];
        assert_non_null(mkdtemp(base));
        snprintf(dir, sizeof dir, "%s/run", base);
        snprintf(path, sizeof path, "%s/unlock.json", dir);
        struct kwu_layout l = layout();
        assert_int_equal(kwu_unlock_record_write(path, "/dev/vdb", "keyward-data", "tpm2", &l,
                                                 1767225600).code, 0);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0644);
        assert_int_equal(entries(dir), 1);   /* no temporary left */
        FILE *f = fopen(path, "r");
        char buf[512];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        cJSON *d = cJSON_Parse(buf);
        assert_non_null(d);
        assert_string_equal(cJSON_GetObjectItem(d, "device")->valuestring, "/dev/vdb");
        assert_string_equal(cJSON_GetObjectItem(d, "name")->valuestring, "keyward-data");
        assert_string_equal(cJSON_GetObjectItem(d, "binding")->valuestring, "tpm2");
        assert_string_equal(cJSON_GetObjectItem(d, "time")->valuestring, "2026-01-01T00:00:00Z");
        const cJSON *b = cJSON_GetObjectItem(d, "bindings_enrolled");
        assert_int_equal(cJSON_GetArraySize(b), 2);   /* each kind once, tpm2 first */
        assert_string_equal(cJSON_GetArrayItem(b, 0)->valuestring, "tpm2");
        assert_string_equal(cJSON_GetArrayItem(b, 1)->valuestring, "recovery");
        cJSON_Delete(d);
        /* again: replaced, still one file */
        assert_int_equal(kwu_unlock_record_write(path, "/dev/vdb", NULL, "recovery", &l, 0).code, 0);
        assert_int_equal(entries(dir), 1);
        unlink(path);
        rmdir(dir);
        rmdir(base);
}

static void unlock_record_write_failure_leaves_nothing(void **state)
{
        (void)state;
        struct kwu_layout l = layout();
        assert_int_equal(kwu_unlock_record_write("/proc/no-such/unlock.json", "/dev/vdb", NULL, "snp",
                                                 &l, 0).code, KW_ERR_IO);
        assert_int_equal(kwu_unlock_record_write("relative.json", "/dev/vdb", NULL, "snp", &l, 0).code,
                         KW_ERR_INPUT);
        assert_string_equal(kwu_binding_name(KWU_TOKEN_KEYWARD_SNP), "snp");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(unlock_record_write_reads_back),
                cmocka_unit_test(unlock_record_write_failure_leaves_nothing),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
