/*
 * keystore_fixture_test.h - what the key store's cmocka tests share
 * (keystore_test.c, audit_store_test.c): a fresh store file in its own
 * temporary directory, reopening it, and a second raw SQLCipher connection
 * to the same file for tampering as someone holding the database key.
 * Test code only.  The including file defines `static struct kw_secret
 * key_a;` (the store's key, set by its group setup) before including this.
 */
#ifndef KW_KEYSTORE_FIXTURE_TEST_H
#define KW_KEYSTORE_FIXTURE_TEST_H

/* Group setup and teardown of a test file whose stores use key_a alone:
 * the key of tests/fixtures/keystore-v3.db (byte i = 0x11 * (i % 15) + 1). */
__attribute__((unused)) static int fx_group_setup(void **state)
{
        (void)state;
        int locked = 0;
        if (!kw_ok(kw_secret_init(1 << 20, &locked)))
                return -1;
        uint8_t a[32];
        for (int i = 0; i < 32; i++)
                a[i] = (uint8_t)(0x11 * (i % 15) + 1);
        return kw_ok(kw_secret_dup(a, 32, &key_a)) ? 0 : -1;
}

__attribute__((unused)) static int fx_group_teardown(void **state)
{
        (void)state;
        kw_secret_free(&key_a);
        return 0;
}

struct fx {
        char dir[128];
        char path[192];
        struct kw_keystore *ks;
};

static void ks_open_ok(struct fx *f)
{
        struct kw_keystore *ks = NULL;
        kw_result r = kw_keystore_open(f->path, &key_a, &ks);
        if (!kw_ok(r))
                print_error("open: %s: %s\n", kw_err_name(r.code), kw_err_detail());
        assert_int_equal(r.code, 0);
        assert_non_null(ks);
        f->ks = ks;
}

__attribute__((unused)) static void ks_reopen(struct fx *f)
{
        kw_keystore_close(f->ks);
        f->ks = NULL;
        ks_open_ok(f);
}

/* A new empty temporary directory and the store's path in it (not opened). */
__attribute__((unused)) static int setup_dir(void **state)
{
        struct fx *f = calloc(1, sizeof *f);
        if (f == NULL)
                return -1;
        const char *tmp = getenv("TMPDIR");
        snprintf(f->dir, sizeof f->dir, "%s/kwks-XXXXXX", tmp != NULL && tmp[0] ? tmp : "/tmp");
        if (mkdtemp(f->dir) == NULL) {
                free(f);
                return -1;
        }
        snprintf(f->path, sizeof f->path, "%s/keyward.db", f->dir);
        *state = f;
        return 0;
}

/* The same with the store opened (created) in it. */
static int setup(void **state)
{
        if (setup_dir(state) != 0)
                return -1;
        ks_open_ok(*state);
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;
        kw_keystore_close(f->ks);
        const char *sfx[] = { "", "-wal", "-shm", "-journal", ".plain" };
        char p[256];
        for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
                snprintf(p, sizeof p, "%s%s", f->path, sfx[i]);
                unlink(p);
        }
        rmdir(f->dir);
        free(f);
        return 0;
}

/* A second, raw connection to the same file (for tampering). */
__attribute__((unused)) static sqlite3 *raw_open(const char *path)
{
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        char k[68] = "x'";
        for (int i = 0; i < 32; i++)
                snprintf(k + 2 + 2 * i, 3, "%02x", key_a.p[i]);
        k[66] = '\'';
        k[67] = '\0';
        assert_int_equal(sqlite3_key(db, k, 67), SQLITE_OK);
        kw_wipe(k, sizeof k);
        sqlite3_busy_timeout(db, 5000);
        return db;
}

__attribute__((unused)) static void raw_exec(const char *path, const char *sql)
{
        sqlite3 *db = raw_open(path);
        char *err = NULL;
        int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
        if (rc != SQLITE_OK)
                print_error("raw exec: %s\n", err ? err : "?");
        sqlite3_free(err);
        assert_int_equal(rc, SQLITE_OK);
        assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

#endif
