/*
 * dbkey.c - TEST TOOL ONLY, never installed or shipped.
 *
 * usage: kw-test-dbkey CONFIG
 *
 * Prints the unsealed SQLCipher database key of a Keyward state (64 hex
 * characters and a newline), so that the black-box tests can open the
 * database with the `sqlcipher` CLI and tamper with it as an attacker who
 * holds the key would.  It loads CONFIG (with the KEYWARD_* environment
 * overrides), opens the HSM named there (never creating a master key),
 * reads [db] key_file ("KWDBKEY1" | sealed blob, AAD "keyward.dbkey.v1",
 * the format of load_db_key in server/custody/custody.c) and unseals it.
 * Needs SOFTHSM2_CONF for a SoftHSM2 token.
 *
 * Printing a key is exactly what production code must never do; this file
 * exists so that tests can prove tampering is detected.
 *
 * Exit status: 0 ok, 2 usage or configuration, 3 key file, 4 HSM/unseal.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "common/secret.h"
#include "config.h"
#include "custody/hsm.h"

#define DBKEY_MAGIC "KWDBKEY1"
#define DBKEY_AAD "keyward.dbkey.v1"
#define DBKEY_FILE_MAX 4096

static const char *detail_or(int code)
{
        const char *d = kw_err_detail();
        return d[0] ? d : kw_strerror(code);
}

/* Reads the whole key file into out (at most DBKEY_FILE_MAX bytes). */
static int read_key_file(const char *path, struct kw_buf *out)
{
        FILE *f = fopen(path, "rb");
        if (f == NULL) {
                fprintf(stderr, "kw-test-dbkey: cannot open %s: %s\n", path, strerror(errno));
                return -1;
        }
        uint8_t tmp[512];
        size_t n;
        int rc = 0;
        while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
                if (kw_buf_put(out, tmp, n).code != 0) {
                        fprintf(stderr, "kw-test-dbkey: %s is too large\n", path);
                        rc = -1;
                        break;
                }
        }
        if (rc == 0 && ferror(f)) {
                fprintf(stderr, "kw-test-dbkey: cannot read %s\n", path);
                rc = -1;
        }
        fclose(f);
        return rc;
}

int main(int argc, char **argv)
{
        if (argc != 2 || argv[1][0] == '-') {
                fprintf(stderr, "usage: kw-test-dbkey CONFIG   (test tool: prints the database key)\n");
                return 2;
        }
        struct kw_config *cfg = NULL;
        kw_result r = kw_config_load(argv[1], NULL, &cfg);
        if (r.code != 0) {
                fprintf(stderr, "kw-test-dbkey: %s\n", detail_or(r.code));
                return 2;
        }
        int locked = 0;
        r = kw_secret_init(1u << 20, &locked);
        if (r.code != 0) {
                fprintf(stderr, "kw-test-dbkey: secure memory: %s\n", detail_or(r.code));
                kw_config_free(cfg);
                return 4;
        }
        struct kw_buf file;
        kw_buf_init(&file, DBKEY_FILE_MAX);
        size_t m = strlen(DBKEY_MAGIC);
        if (read_key_file(cfg->db.key_file, &file) != 0) {
                kw_buf_free(&file);
                kw_config_free(cfg);
                return 3;
        }
        if (file.len < m || memcmp(file.p, DBKEY_MAGIC, m) != 0) {
                fprintf(stderr, "kw-test-dbkey: %s is not a Keyward database key file\n",
                        cfg->db.key_file);
                kw_buf_free(&file);
                kw_config_free(cfg);
                return 3;
        }
        struct kw_hsm_config hc = {
                .module = cfg->hsm.module,
                .token_label = cfg->hsm.token_label,
                .pin_file = cfg->hsm.pin_file,
                .master_key_label = cfg->hsm.master_key_label,
                .create_master_key = 0,
                .sessions = 1,
                .timeout_ms = cfg->hsm.timeout_ms > 0 ? (unsigned)cfg->hsm.timeout_ms : 2000,
                .retry_interval_ms =
                        cfg->hsm.retry_interval_ms > 0 ? (unsigned)cfg->hsm.retry_interval_ms : 1000,
        };
        struct kw_hsm *hsm = NULL;
        r = kw_hsm_open(&hc, &hsm, NULL);
        if (r.code != 0) {
                fprintf(stderr, "kw-test-dbkey: hsm: %s\n", detail_or(r.code));
                kw_buf_free(&file);
                kw_config_free(cfg);
                return 4;
        }
        struct kw_secret key = { 0 };
        r = kw_hsm_unseal(hsm, (const uint8_t *)DBKEY_AAD, strlen(DBKEY_AAD), file.p + m,
                          file.len - m, &key);
        kw_buf_free(&file);
        int rc = 0;
        if (r.code != 0) {
                fprintf(stderr, "kw-test-dbkey: unseal: %s\n", detail_or(r.code));
                rc = 4;
        } else if (key.len != 32) {
                fprintf(stderr, "kw-test-dbkey: the database key has %zu bytes, not 32\n", key.len);
                rc = 4;
        } else {
                for (size_t i = 0; i < key.len; i++)
                        printf("%02x", key.p[i]);
                printf("\n");
                if (fflush(stdout) != 0)
                        rc = 3;
        }
        kw_secret_free(&key);
        kw_hsm_close(hsm);
        kw_config_free(cfg);
        return rc;
}
