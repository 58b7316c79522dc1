/* keystore_test.c - cmocka tests of the SQLCipher key store on real files. */
#define SQLITE_HAS_CODEC 1

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include "custody/keystore.h"

static struct kw_secret key_a, key_b;

#include "keystore_fixture_test.h"

/* ------------------------------------------------------------- helpers */

static int group_setup(void **state)
{
        (void)state;
        int locked = 0;
        if (!kw_ok(kw_secret_init(1 << 20, &locked)))
                return -1;
        uint8_t a[32], b[32];
        for (int i = 0; i < 32; i++) {
                a[i] = (uint8_t)(0x11 * (i % 15) + 1);
                b[i] = (uint8_t)(0xa5 ^ i);
        }
        if (!kw_ok(kw_secret_dup(a, 32, &key_a)) || !kw_ok(kw_secret_dup(b, 32, &key_b)))
                return -1;
        srand((unsigned)time(NULL) ^ (unsigned)getpid());
        return 0;
}

static int group_teardown(void **state)
{
        (void)state;
        kw_secret_free(&key_a);
        kw_secret_free(&key_b);
        return 0;
}

static void make_id(char id[33], unsigned n)
{
        snprintf(id, 33, "%032x", n);
}

/* A row for insertion; the json pointers are borrowed, never cleared. */
static struct kw_key_row key_row(unsigned n, const char *name, const char *type, const char *state,
                                 const char *tags)
{
        struct kw_key_row r;
        memset(&r, 0, sizeof r);
        make_id(r.id, n);
        snprintf(r.name, sizeof r.name, "%s", name);
        snprintf(r.type, sizeof r.type, "%s", type);
        r.size = strcmp(type, "RSA") == 0 ? 2048 : 256;
        snprintf(r.state, sizeof r.state, "%s", state);
        r.ops = 0xf;
        r.current_version = 1;
        r.tags_json = (char *)tags;
        return r;
}

static const uint8_t blob1[] = "sealed-blob-version-1";

static void insert_key(struct fx *f, unsigned n, const char *name, const char *type, const char *state,
                       const char *tags)
{
        struct kw_key_row r = key_row(n, name, type, state, tags);
        struct kw_audit_entry a = { .actor = "test", .action = "key.create", .key_name = name,
                                    .result = "ok" };
        kw_result res = kw_keystore_key_insert(f->ks, &r, blob1, sizeof blob1, &a);
        if (!kw_ok(res))
                print_error("insert %s: %s: %s\n", name, kw_err_name(res.code), kw_err_detail());
        assert_int_equal(res.code, 0);
}

static uint64_t key_count(struct fx *f)
{
        uint64_t n = 0;
        assert_int_equal(kw_keystore_key_count(f->ks, &n).code, 0);
        return n;
}

/* Number of audit rows, asserting the chain is intact. */
static uint64_t audit_rows_ok(struct fx *f)
{
        uint64_t rows = 99999, bad = 99999;
        assert_int_equal(kw_keystore_audit_verify(f->ks, &rows, &bad).code, 0);
        assert_int_equal(bad, 0);
        return rows;
}

static int raw_user_version(const char *path)
{
        sqlite3 *db = raw_open(path);
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        int v = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
}

/* Decrypts every page of a SQLCipher 3 file (defaults: 1024-byte pages, 48
 * reserved bytes holding the IV first, AES-256-CBC, raw key; page 1 starts
 * with the 16-byte salt) and reports whether pat appears in the plaintext or
 * in the raw bytes. */
static int file_has_pattern(const char *path, const uint8_t *pat, size_t patlen)
{
        enum { PAGE = 1024, RESERVE = 48, SALT = 16 };
        FILE *fp = fopen(path, "rb");
        assert_non_null(fp);
        fseek(fp, 0, SEEK_END);
        long fsz = ftell(fp);
        fseek(fp, 0, SEEK_SET);
        size_t sz = fsz > 0 && fsz < (1L << 30) ? (size_t)fsz : 0;
        assert_true(sz > 0 && sz % PAGE == 0);
        uint8_t *raw = malloc(sz), *plain = calloc(1, sz);
        assert_non_null(raw);
        assert_non_null(plain);
        assert_int_equal(fread(raw, 1, sz, fp), sz);
        fclose(fp);
        int found = memmem(raw, sz, pat, patlen) != NULL;
        int sqlite_header_ok = 0;
        for (size_t off = 0; off < sz; off += PAGE) {
                size_t skip = off == 0 ? SALT : 0;
                const uint8_t *iv = raw + off + PAGE - RESERVE;
                EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
                assert_non_null(c);
                int l1 = 0, l2 = 0;
                assert_int_equal(EVP_DecryptInit_ex(c, EVP_aes_256_cbc(), NULL, key_a.p, iv), 1);
                EVP_CIPHER_CTX_set_padding(c, 0);
                assert_int_equal(EVP_DecryptUpdate(c, plain + off + skip, &l1, raw + off + skip,
                                                   (int)(PAGE - RESERVE - skip)),
                                 1);
                assert_int_equal(EVP_DecryptFinal_ex(c, plain + off + skip + l1, &l2), 1);
                EVP_CIPHER_CTX_free(c);
                if (off == 0) /* bytes 16..17 of the header: the page size, big-endian */
                        sqlite_header_ok = plain[16] == (PAGE >> 8) && plain[17] == (PAGE & 0xff);
        }
        assert_true(sqlite_header_ok); /* the decryption itself is right */
        found |= memmem(plain, sz, pat, patlen) != NULL;
        kw_wipe(plain, sz);
        free(plain);
        free(raw);
        return found;
}

/* Collects names from list callbacks. */
struct names {
        char v[64][65];
        int n;
        int stop_at;   /* stop (return 1) on this 1-based row; 0 never */
};

static int names_cb(const struct kw_key_row *row, void *arg)
{
        struct names *ns = arg;
        if (ns->n < 64)
                snprintf(ns->v[ns->n], 65, "%s", row->name);
        ns->n++;
        return ns->stop_at != 0 && ns->n == ns->stop_at;
}

static void list_names(struct fx *f, const struct kw_key_filter *flt, struct names *ns, char next[65])
{
        memset(ns, 0, sizeof *ns);
        kw_result r = kw_keystore_key_list(f->ks, flt, names_cb, ns, next);
        if (!kw_ok(r))
                print_error("list: %s: %s\n", kw_err_name(r.code), kw_err_detail());
        assert_int_equal(r.code, 0);
}

static void assert_names(const struct names *ns, const char *const *want, int n)
{
        assert_int_equal(ns->n, n);
        for (int i = 0; i < n; i++)
                assert_string_equal(ns->v[i], want[i]);
}

/* ------------------------------------------------------------ open/close */

static void keystore_open_new_file_creates_schema_private(void **state)
{
        struct fx *f = *state;
        assert_int_equal(kw_keystore_schema_version(f->ks), KW_SCHEMA_VERSION);
        insert_key(f, 1, "k1", "AES", "enabled", NULL);
        struct stat st;
        assert_int_equal(stat(f->path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        char wal[256];
        snprintf(wal, sizeof wal, "%s-wal", f->path);
        assert_int_equal(stat(wal, &st), 0); /* journal_mode=WAL */
        assert_int_equal(st.st_mode & 0777, 0600);
        kw_keystore_close(f->ks);
        f->ks = NULL;
        assert_int_equal(stat(wal, &st) == 0 ? st.st_size : 0, 0); /* close folded the WAL in */
        assert_int_equal(raw_user_version(f->path), KW_SCHEMA_VERSION);
        ks_open_ok(f);
        assert_int_equal(kw_keystore_schema_version(f->ks), KW_SCHEMA_VERSION);
}

static void keystore_open_reopen_keeps_rows_and_chain(void **state)
{
        struct fx *f = *state;
        struct kw_key_row r = key_row(7, "persist", "RSA", "enabled", "{\"a\":\"b\"}");
        uint8_t der[40];
        memset(der, 0x30, sizeof der);
        r.public_der = der;
        r.public_der_len = sizeof der;
        r.rules_json = "{\"allow\":[\"x\"]}";
        r.created = 1000;
        r.updated = 2000;
        assert_int_equal(kw_keystore_key_insert(f->ks, &r, blob1, sizeof blob1, NULL).code, 0);
        struct kw_token_row t = { .id = "0123456789abcdef", .name = "tok", .role = "admin" };
        uint8_t h[32];
        memset(h, 0x42, sizeof h);
        assert_int_equal(kw_keystore_token_insert(f->ks, &t, h, NULL).code, 0);
        struct kw_audit_entry e = { .action = "key.encrypt", .key_name = "persist", .result = "ok" };
        assert_int_equal(kw_keystore_audit_append(f->ks, &e, 1).code, 0);
        ks_reopen(f);

        struct kw_key_row g;
        memset(&g, 0, sizeof g);
        assert_int_equal(kw_keystore_key_get(f->ks, "persist", &g).code, 0);
        assert_string_equal(g.id, r.id);
        assert_string_equal(g.type, "RSA");
        assert_int_equal(g.size, 2048);
        assert_int_equal(g.created, 1000);
        assert_int_equal(g.updated, 2000);
        assert_string_equal(g.tags_json, "{\"a\":\"b\"}");
        assert_string_equal(g.rules_json, "{\"allow\":[\"x\"]}");
        assert_int_equal(g.public_der_len, sizeof der);
        assert_memory_equal(g.public_der, der, sizeof der);
        kw_key_row_clear(&g);
        struct kw_token_row tf;
        assert_int_equal(kw_keystore_token_find(f->ks, h, &tf).code, 0);
        assert_string_equal(tf.name, "tok");
        assert_int_equal(audit_rows_ok(f), 3);
        /* the chain continues from the head loaded at open */
        assert_int_equal(kw_keystore_audit_append(f->ks, &e, 1).code, 0);
        assert_int_equal(audit_rows_ok(f), 4);
}

static void keystore_open_wrong_key_fails_key_mismatch(void **state)
{
        struct fx *f = *state;
        insert_key(f, 1, "k1", "AES", "enabled", NULL);
        kw_keystore_close(f->ks);
        f->ks = NULL;
        struct kw_keystore *sentinel = (struct kw_keystore *)(uintptr_t)0x1234, *ks = sentinel;
        kw_result r = kw_keystore_open(f->path, &key_b, &ks);
        assert_int_equal(r.code, KW_ERR_DB_KEY_MISMATCH);
        assert_ptr_equal(ks, sentinel);
        char want[300];
        snprintf(want, sizeof want, "the database key does not match this database (%s)", f->path);
        assert_string_equal(kw_err_detail(), want);
        ks_open_ok(f); /* the right key still opens it, data intact */
        assert_int_equal(key_count(f), 1);
}

static void keystore_open_plain_sqlite_file_fails_key_mismatch(void **state)
{
        struct fx *f = *state;
        char plain[256];
        snprintf(plain, sizeof plain, "%s.plain", f->path);
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open(plain, &db), SQLITE_OK); /* no key: plain SQLite */
        assert_int_equal(sqlite3_exec(db, "CREATE TABLE t (x); INSERT INTO t VALUES (1);", NULL, NULL,
                                      NULL),
                         SQLITE_OK);
        sqlite3_close(db);
        struct kw_keystore *ks = NULL;
        assert_int_equal(kw_keystore_open(plain, &key_a, &ks).code, KW_ERR_DB_KEY_MISMATCH);
        assert_null(ks);
}

static void keystore_open_newer_schema_fails_db_version(void **state)
{
        struct fx *f = *state;
        kw_keystore_close(f->ks);
        f->ks = NULL;
        raw_exec(f->path, "PRAGMA user_version=99");
        struct kw_keystore *ks = NULL;
        assert_int_equal(kw_keystore_open(f->path, &key_a, &ks).code, KW_ERR_DB_VERSION);
        assert_null(ks);
        assert_non_null(strstr(kw_err_detail(), "99"));
        char sup[32];
        snprintf(sup, sizeof sup, "up to %d", KW_SCHEMA_VERSION);
        assert_non_null(strstr(kw_err_detail(), sup));
        assert_int_equal(raw_user_version(f->path), 99); /* untouched */
        char back[48];
        snprintf(back, sizeof back, "PRAGMA user_version=%d", KW_SCHEMA_VERSION);
        raw_exec(f->path, back);
        ks_open_ok(f);
}

static void keystore_open_bad_key_or_path_fails(void **state)
{
        struct fx *f = *state;
        struct kw_keystore *ks = NULL;
        struct kw_secret short_key = { .p = key_a.p, .len = 16 };
        assert_int_equal(kw_keystore_open(f->path, &short_key, &ks).code, KW_ERR_INPUT);
        assert_int_equal(kw_keystore_open(f->path, NULL, &ks).code, KW_ERR_INPUT);
        char missing[300];
        snprintf(missing, sizeof missing, "%s/no/such/dir/x.db", f->dir);
        assert_int_equal(kw_keystore_open(missing, &key_a, &ks).code, KW_ERR_IO);
        assert_null(ks);
        assert_int_equal(kw_keystore_schema_version(f->ks), KW_SCHEMA_VERSION);
}

/* ------------------------------------------------------------------ keys */

static void keystore_key_insert_duplicate_name_fails_exists(void **state)
{
        struct fx *f = *state;
        insert_key(f, 1, "dup", "AES", "enabled", "{\"x\":\"1\"}");
        uint64_t n0 = key_count(f), a0 = audit_rows_ok(f);
        struct kw_key_row r = key_row(2, "dup", "RSA", "disabled", NULL);
        assert_int_equal(kw_keystore_key_insert(f->ks, &r, blob1, sizeof blob1, NULL).code, KW_ERR_EXISTS);
        struct kw_key_row same_id = key_row(1, "other", "AES", "enabled", NULL);
        assert_int_equal(kw_keystore_key_insert(f->ks, &same_id, blob1, sizeof blob1, NULL).code,
                         KW_ERR_EXISTS);
        assert_int_equal(key_count(f), n0);
        assert_int_equal(audit_rows_ok(f), a0);
        struct kw_key_row g;
        memset(&g, 0, sizeof g);
        assert_int_equal(kw_keystore_key_get(f->ks, "dup", &g).code, 0);
        assert_string_equal(g.id, "00000000000000000000000000000001");
        assert_string_equal(g.type, "AES");
        kw_key_row_clear(&g);
        struct kw_buf b;
        kw_buf_init(&b, 1024);
        assert_int_equal(kw_keystore_key_get_blob(f->ks, r.id, 1, &b).code, KW_ERR_NOT_FOUND);
        assert_int_equal(b.len, 0);
        kw_buf_free(&b);
        assert_int_equal(kw_keystore_key_get(f->ks, "other", &g).code, KW_ERR_NOT_FOUND);
        /* the chain head did not move: the next write still verifies */
        insert_key(f, 3, "after", "AES", "enabled", NULL);
        assert_int_equal(audit_rows_ok(f), a0 + 1);
}

static void keystore_key_insert_invalid_row_fails_nothing_changed(void **state)
{
        struct fx *f = *state;
        struct kw_key_row r;
        r = key_row(1, "bad name", "AES", "enabled", NULL);
        assert_int_equal(kw_keystore_key_insert(f->ks, &r, blob1, sizeof blob1, NULL).code, KW_ERR_BAD_NAME);
        r = key_row(1, "", "AES", "enabled", NULL);
        assert_int_equal(kw_keystore_key_insert(f->ks, &r, blob1, sizeof blob1, NULL).code, KW_ERR_BAD_NAME);
        r = key_row(1, "ok", "DES", "enabled", NULL);
        assert_int_equal(kw_keystore_key_insert(f->ks, &r, blob1, sizeof blob1, NULL).code, KW_ERR_BAD_FIELD);
        r = key_row(1, "ok", "AES", "sleeping", NULL);
        assert_int_equal(kw_keystore_key_insert(f->ks, &r, blob1, sizeof blob1, NULL).code, KW_ERR_BAD_FIELD);
        r = key_row(1, "ok", "AES", "destroyed", NULL);
        assert_int_equal(kw_keystore_key_insert(f->ks, &r, blob1, sizeof blob1, NULL).code, KW_ERR_BAD_STATE);
        r = key_row(1, "ok", "AES", "enabled", "[1,2]");
        assert_int_equal(kw_keystore_key_insert(f->ks, &r, blob1, sizeof blob1, NULL).code, KW_ERR_BAD_JSON);
        r = key_row(1, "ok", "AES", "enabled", "{\"a\":");
        assert_int_equal(kw_keystore_key_insert(f->ks, &r, blob1, sizeof blob1, NULL).code, KW_ERR_BAD_JSON);
        r = key_row(1, "ok", "AES", "enabled", NULL);
        r.id[0] = 'G';
        assert_int_equal(kw_keystore_key_insert(f->ks, &r, blob1, sizeof blob1, NULL).code, KW_ERR_BAD_FIELD);
        r = key_row(1, "ok", "AES", "enabled", NULL);
        assert_int_equal(kw_keystore_key_insert(f->ks, &r, blob1, 0, NULL).code, KW_ERR_INPUT);
        static uint8_t big[64 * 1024 + 1];
        assert_int_equal(kw_keystore_key_insert(f->ks, &r, big, sizeof big, NULL).code, KW_ERR_TOO_LARGE);
        char longf[5000];
        memset(longf, 'a', sizeof longf - 1);
        longf[sizeof longf - 1] = '\0';
        struct kw_audit_entry a = { .action = "key.create", .detail = longf };
        assert_int_equal(kw_keystore_key_insert(f->ks, &r, blob1, sizeof blob1, &a).code, KW_ERR_TOO_LARGE);
        assert_int_equal(key_count(f), 0);
        assert_int_equal(audit_rows_ok(f), 0);
        struct kw_key_row g;
        memset(&g, 0, sizeof g);
        assert_int_equal(kw_keystore_key_get(f->ks, "ok", &g).code, KW_ERR_NOT_FOUND);
}

static void keystore_key_get_missing_fails_not_found(void **state)
{
        struct fx *f = *state;
        insert_key(f, 1, "present", "AES", "enabled", NULL);
        struct kw_key_row g;
        memset(&g, 0, sizeof g);
        assert_int_equal(kw_keystore_key_get(f->ks, "absent", &g).code, KW_ERR_NOT_FOUND);
        assert_int_equal(g.name[0], 0);
        assert_null(g.tags_json);
        struct kw_buf b;
        kw_buf_init(&b, 1024);
        char id[33];
        make_id(id, 1);
        assert_int_equal(kw_keystore_key_get_blob(f->ks, id, 2, &b).code, KW_ERR_NOT_FOUND);
        assert_int_equal(b.len, 0);
        assert_int_equal(kw_keystore_key_get_blob(f->ks, id, 1, &b).code, 0);
        assert_int_equal(b.len, sizeof blob1);
        assert_memory_equal(b.p, blob1, sizeof blob1);
        kw_buf_free(&b);
        /* a blob that does not fit the caller's buffer leaves it as it was */
        kw_buf_init(&b, 4);
        assert_int_equal(kw_keystore_key_get_blob(f->ks, id, 1, &b).code, KW_ERR_TOO_LARGE);
        assert_int_equal(b.len, 0);
        kw_buf_free(&b);
}

static void keystore_key_get_overlong_db_value_fails_corrupt(void **state)
{
        struct fx *f = *state;
        insert_key(f, 1, "k", "AES", "enabled", NULL);
        raw_exec(f->path, "UPDATE keys SET state = 'a-state-that-is-far-too-long-for-its-field'");
        struct kw_key_row g;
        memset(&g, 0, sizeof g);
        assert_int_equal(kw_keystore_key_get(f->ks, "k", &g).code, KW_ERR_DB_CORRUPT);
        assert_null(g.tags_json);
        assert_int_equal(g.name[0], 0);
}

static void keystore_key_list_filters_combine(void **state)
{
        struct fx *f = *state;
        insert_key(f, 1, "a-aes", "AES", "enabled", "{\"env\":\"prod\"}");
        insert_key(f, 2, "b-rsa", "RSA", "disabled", "{\"env\":\"dev\"}");
        insert_key(f, 3, "c-aes", "AES", "pending_deletion", "{\"env\":\"prod\",\"team\":\"x\"}");
        insert_key(f, 4, "d-aes", "AES", "enabled", "{\"env\":\"prod\"}");
        insert_key(f, 5, "b_under", "AES", "enabled", "{\"env\":7}");
        char id[33];
        make_id(id, 4);
        assert_int_equal(kw_keystore_key_destroy(f->ks, id, NULL).code, 0);

        struct names ns;
        char next[65] = "junk";
        struct kw_key_filter flt = { 0 };
        list_names(f, &flt, &ns, next);
        assert_names(&ns, (const char *[]){ "a-aes", "b-rsa", "b_under", "c-aes" }, 4);
        assert_string_equal(next, "");
        list_names(f, NULL, &ns, next);
        assert_int_equal(ns.n, 4);

        flt = (struct kw_key_filter){ .include_destroyed = 1 };
        list_names(f, &flt, &ns, next);
        assert_names(&ns, (const char *[]){ "a-aes", "b-rsa", "b_under", "c-aes", "d-aes" }, 5);

        flt = (struct kw_key_filter){ .state = "destroyed" };
        list_names(f, &flt, &ns, next);
        assert_names(&ns, (const char *[]){ "d-aes" }, 1);

        flt = (struct kw_key_filter){ .state = "enabled" };
        list_names(f, &flt, &ns, next);
        assert_names(&ns, (const char *[]){ "a-aes", "b_under" }, 2);

        flt = (struct kw_key_filter){ .type = "RSA" };
        list_names(f, &flt, &ns, next);
        assert_names(&ns, (const char *[]){ "b-rsa" }, 1);

        flt = (struct kw_key_filter){ .tag = "env=prod" };
        list_names(f, &flt, &ns, next);
        assert_names(&ns, (const char *[]){ "a-aes", "c-aes" }, 2);

        flt = (struct kw_key_filter){ .tag = "env=prod", .include_destroyed = 1 };
        list_names(f, &flt, &ns, next);
        assert_names(&ns, (const char *[]){ "a-aes", "c-aes", "d-aes" }, 3);

        flt = (struct kw_key_filter){ .tag = "env=prod", .type = "AES", .state = "pending_deletion" };
        list_names(f, &flt, &ns, next);
        assert_names(&ns, (const char *[]){ "c-aes" }, 1);

        flt = (struct kw_key_filter){ .tag = "team=x" };
        list_names(f, &flt, &ns, next);
        assert_names(&ns, (const char *[]){ "c-aes" }, 1);

        flt = (struct kw_key_filter){ .tag = "env=7" }; /* only string values match */
        list_names(f, &flt, &ns, next);
        assert_int_equal(ns.n, 0);

        flt = (struct kw_key_filter){ .tag = "env=" };
        list_names(f, &flt, &ns, next);
        assert_int_equal(ns.n, 0);

        flt = (struct kw_key_filter){ .name_prefix = "b-" }; /* "_" is not a wildcard */
        list_names(f, &flt, &ns, next);
        assert_names(&ns, (const char *[]){ "b-rsa" }, 1);

        flt = (struct kw_key_filter){ .name_prefix = "b", .type = "AES" };
        list_names(f, &flt, &ns, next);
        assert_names(&ns, (const char *[]){ "b_under" }, 1);

        flt = (struct kw_key_filter){ .after_name = "b-rsa" };
        list_names(f, &flt, &ns, next);
        assert_names(&ns, (const char *[]){ "b_under", "c-aes" }, 2);

        /* invalid filters fail and call nothing */
        struct kw_key_filter bad[] = {
                { .tag = "=x" }, { .tag = "novalue" }, { .state = "bogus" }, { .type = "DES" },
                { .limit = 1001 },
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                memset(&ns, 0, sizeof ns);
                snprintf(next, 65, "unchanged");
                assert_int_equal(kw_keystore_key_list(f->ks, &bad[i], names_cb, &ns, next).code,
                                 KW_ERR_BAD_FIELD);
                assert_int_equal(ns.n, 0);
                assert_string_equal(next, "unchanged");
        }
}

static void keystore_key_list_paging_sees_each_name_once(void **state)
{
        struct fx *f = *state;
        /* inserted out of order; every third key tagged */
        for (unsigned i = 0; i < 25; i++) {
                unsigned k = (i * 7) % 25;
                char name[16];
                snprintf(name, sizeof name, "key-%02u", k);
                insert_key(f, k + 1, name, "AES", "enabled", k % 3 == 0 ? "{\"m\":\"0\"}" : "{}");
        }
        int seen[25] = { 0 };
        char next[65] = "";
        int pages = 0, sizes[5] = { 0 };
        do {
                char after[65];
                snprintf(after, sizeof after, "%s", next);
                struct kw_key_filter flt = { .limit = 10, .after_name = pages ? after : NULL };
                struct names ns;
                list_names(f, &flt, &ns, next);
                assert_true(pages < 5);
                sizes[pages++] = ns.n;
                for (int i = 0; i < ns.n; i++) {
                        unsigned k = (unsigned)atoi(ns.v[i] + 4);
                        assert_true(k < 25);
                        seen[k]++;
                        if (i > 0)
                                assert_true(strcmp(ns.v[i - 1], ns.v[i]) < 0);
                }
                if (next[0] != '\0')
                        assert_string_equal(next, ns.v[ns.n - 1]);
        } while (next[0] != '\0');
        assert_int_equal(pages, 3);
        assert_int_equal(sizes[0], 10);
        assert_int_equal(sizes[1], 10);
        assert_int_equal(sizes[2], 5);
        for (int k = 0; k < 25; k++)
                assert_int_equal(seen[k], 1);

        /* paging with the tag filter applied in C: 9 tagged keys, limit 4 */
        memset(seen, 0, sizeof seen);
        pages = 0;
        next[0] = '\0';
        do {
                char after[65];
                snprintf(after, sizeof after, "%s", next);
                struct kw_key_filter flt = { .limit = 4, .tag = "m=0", .after_name = pages ? after : NULL };
                struct names ns;
                list_names(f, &flt, &ns, next);
                assert_true(pages < 4);
                sizes[pages++] = ns.n;
                for (int i = 0; i < ns.n; i++)
                        seen[atoi(ns.v[i] + 4)]++;
        } while (next[0] != '\0');
        assert_int_equal(pages, 3);
        assert_int_equal(sizes[0], 4);
        assert_int_equal(sizes[1], 4);
        assert_int_equal(sizes[2], 1);
        for (int k = 0; k < 25; k++)
                assert_int_equal(seen[k], k % 3 == 0 ? 1 : 0);

        /* exactly limit matches: no next page */
        struct kw_key_filter flt = { .limit = 9, .tag = "m=0" };
        struct names ns;
        list_names(f, &flt, &ns, next);
        assert_int_equal(ns.n, 9);
        assert_string_equal(next, "");

        /* a callback that stops: next is the row it stopped on */
        flt = (struct kw_key_filter){ .limit = 10 };
        memset(&ns, 0, sizeof ns);
        ns.stop_at = 3;
        assert_int_equal(kw_keystore_key_list(f->ks, &flt, names_cb, &ns, next).code, 0);
        assert_int_equal(ns.n, 3);
        assert_string_equal(next, "key-02");
}

static void keystore_key_update_writes_mutable_columns(void **state)
{
        struct fx *f = *state;
        insert_key(f, 1, "upd", "AES", "enabled", "{\"a\":\"1\"}");
        struct kw_key_row g;
        memset(&g, 0, sizeof g);
        assert_int_equal(kw_keystore_key_get(f->ks, "upd", &g).code, 0);
        uint64_t a0 = audit_rows_ok(f);

        struct kw_key_row u = g; /* borrows g's heap members */
        snprintf(u.state, sizeof u.state, "pending_deletion");
        u.ops = 3;
        u.tags_json = "{\"b\":\"2\"}";
        u.rules_json = "{\"r\":1}";
        u.delete_at = 5555;
        u.updated = 4444;
        snprintf(u.name, sizeof u.name, "renamed"); /* immutable: ignored */
        snprintf(u.type, sizeof u.type, "RSA");
        u.current_version = 9;
        struct kw_audit_entry a = { .action = "key.schedule_deletion", .key_name = "upd", .result = "ok" };
        assert_int_equal(kw_keystore_key_update(f->ks, &u, &a).code, 0);
        kw_key_row_clear(&g);
        assert_int_equal(kw_keystore_key_get(f->ks, "upd", &g).code, 0);
        assert_string_equal(g.state, "pending_deletion");
        assert_int_equal(g.ops, 3);
        assert_string_equal(g.tags_json, "{\"b\":\"2\"}");
        assert_string_equal(g.rules_json, "{\"r\":1}");
        assert_int_equal(g.delete_at, 5555);
        assert_int_equal(g.updated, 4444);
        assert_string_equal(g.type, "AES");
        assert_int_equal(g.current_version, 1);
        assert_int_equal(audit_rows_ok(f), a0 + 1);
        struct kw_key_row none;
        memset(&none, 0, sizeof none);
        assert_int_equal(kw_keystore_key_get(f->ks, "renamed", &none).code, KW_ERR_NOT_FOUND);

        /* unknown id, destroy-by-update, bad JSON: nothing changed */
        struct kw_key_row x = g;
        make_id(x.id, 77);
        snprintf(x.state, sizeof x.state, "enabled");
        assert_int_equal(kw_keystore_key_update(f->ks, &x, NULL).code, KW_ERR_NOT_FOUND);
        x = g;
        snprintf(x.state, sizeof x.state, "destroyed");
        assert_int_equal(kw_keystore_key_update(f->ks, &x, NULL).code, KW_ERR_BAD_STATE);
        x = g;
        x.tags_json = "nope";
        assert_int_equal(kw_keystore_key_update(f->ks, &x, NULL).code, KW_ERR_BAD_JSON);
        struct kw_key_row h;
        memset(&h, 0, sizeof h);
        assert_int_equal(kw_keystore_key_get(f->ks, "upd", &h).code, 0);
        assert_string_equal(h.state, "pending_deletion");
        assert_string_equal(h.tags_json, "{\"b\":\"2\"}");
        kw_key_row_clear(&h);
        assert_int_equal(audit_rows_ok(f), a0 + 1);

        /* a destroyed key cannot be brought back */
        assert_int_equal(kw_keystore_key_destroy(f->ks, g.id, NULL).code, 0);
        x = g;
        snprintf(x.state, sizeof x.state, "enabled");
        assert_int_equal(kw_keystore_key_update(f->ks, &x, NULL).code, KW_ERR_KEY_DESTROYED);
        memset(&h, 0, sizeof h);
        assert_int_equal(kw_keystore_key_get(f->ks, "upd", &h).code, 0);
        assert_string_equal(h.state, "destroyed");
        kw_key_row_clear(&h);
        kw_key_row_clear(&g);
}

static void keystore_key_add_version_wrong_number_fails_nothing_changed(void **state)
{
        struct fx *f = *state;
        insert_key(f, 1, "rot", "AES", "enabled", NULL);
        char id[33];
        make_id(id, 1);
        uint64_t a0 = audit_rows_ok(f);
        static const uint8_t blob2[] = "sealed-blob-version-2";
        assert_int_equal(kw_keystore_key_add_version(f->ks, id, 3, blob2, sizeof blob2, NULL, 0, NULL).code,
                         KW_ERR_BAD_STATE);
        assert_int_equal(kw_keystore_key_add_version(f->ks, id, 1, blob2, sizeof blob2, NULL, 0, NULL).code,
                         KW_ERR_BAD_STATE);
        char other[33];
        make_id(other, 99);
        assert_int_equal(kw_keystore_key_add_version(f->ks, other, 2, blob2, sizeof blob2, NULL, 0, NULL).code,
                         KW_ERR_NOT_FOUND);
        assert_int_equal(kw_keystore_key_add_version(f->ks, id, 2, blob2, 0, NULL, 0, NULL).code, KW_ERR_INPUT);
        struct kw_key_row g;
        memset(&g, 0, sizeof g);
        assert_int_equal(kw_keystore_key_get(f->ks, "rot", &g).code, 0);
        assert_int_equal(g.current_version, 1);
        kw_key_row_clear(&g);
        struct kw_buf b;
        kw_buf_init(&b, 1024);
        assert_int_equal(kw_keystore_key_get_blob(f->ks, id, 3, &b).code, KW_ERR_NOT_FOUND);
        assert_int_equal(kw_keystore_key_get_blob(f->ks, id, 2, &b).code, KW_ERR_NOT_FOUND);
        assert_int_equal(audit_rows_ok(f), a0);

        assert_int_equal(kw_keystore_key_add_version(f->ks, id, 2, blob2, sizeof blob2, NULL, 0, NULL).code, 0);
        assert_int_equal(kw_keystore_key_get(f->ks, "rot", &g).code, 0);
        assert_int_equal(g.current_version, 2);
        kw_key_row_clear(&g);
        assert_int_equal(kw_keystore_key_get_blob(f->ks, id, 1, &b).code, 0);
        assert_memory_equal(b.p, blob1, sizeof blob1);
        kw_buf_reset(&b);
        assert_int_equal(kw_keystore_key_get_blob(f->ks, id, 2, &b).code, 0);
        assert_memory_equal(b.p, blob2, sizeof blob2);
        kw_buf_free(&b);
        assert_int_equal(audit_rows_ok(f), a0 + 1);
        /* the rotation row names the key by default */
        assert_int_equal(kw_keystore_key_destroy(f->ks, id, NULL).code, 0);
        assert_int_equal(kw_keystore_key_add_version(f->ks, id, 3, blob2, sizeof blob2, NULL, 0, NULL).code,
                         KW_ERR_KEY_DESTROYED);
}

/* The sweeper's destroy: only a deletion still scheduled and due. */
static void keystore_key_destroy_due_checks_in_tx(void **state)
{
        struct fx *f = *state;
        insert_key(f, 1, "live", "AES", "enabled", NULL);
        struct kw_key_row r = key_row(2, "later", "AES", "pending_deletion", NULL);
        r.delete_at = 2000;
        assert_int_equal(kw_keystore_key_insert(f->ks, &r, blob1, sizeof blob1, NULL).code, 0);
        char id1[33], id2[33];
        make_id(id1, 1);
        make_id(id2, 2);
        uint64_t a0 = audit_rows_ok(f);
        /* not pending: a cancelled deletion */
        assert_int_equal(kw_keystore_key_destroy_due(f->ks, id1, 5000, NULL).code, KW_ERR_BAD_STATE);
        /* pending, not due yet */
        assert_int_equal(kw_keystore_key_destroy_due(f->ks, id2, 1999, NULL).code, KW_ERR_BAD_STATE);
        assert_int_equal(audit_rows_ok(f), a0);
        struct kw_buf b;
        kw_buf_init(&b, 1024);
        assert_int_equal(kw_keystore_key_get_blob(f->ks, id1, 1, &b).code, 0);
        kw_buf_free(&b);
        /* due */
        assert_int_equal(kw_keystore_key_destroy_due(f->ks, id2, 2000, NULL).code, 0);
        assert_int_equal(kw_keystore_key_destroy_due(f->ks, id2, 2000, NULL).code,
                         KW_ERR_KEY_DESTROYED);
        assert_int_equal(audit_rows_ok(f), a0 + 1);
}

static void keystore_key_destroy_overwrites_blobs_in_file(void **state)
{
        struct fx *f = *state;
        uint8_t pat1[64], pat2[64];
        for (int i = 0; i < 64; i++) {
                pat1[i] = (uint8_t)(0xc3 ^ (i * 29));
                pat2[i] = (uint8_t)(0x5a ^ (i * 53));
        }
        for (unsigned i = 0; i < 5; i++) { /* neighbours that stay */
                char name[16];
                snprintf(name, sizeof name, "keep-%u", i);
                insert_key(f, 100 + i, name, "AES", "enabled", NULL);
        }
        struct kw_key_row r = key_row(1, "victim", "AES", "enabled", NULL);
        assert_int_equal(kw_keystore_key_insert(f->ks, &r, pat1, sizeof pat1, NULL).code, 0);
        assert_int_equal(kw_keystore_key_add_version(f->ks, r.id, 2, pat2, sizeof pat2, NULL, 0, NULL).code, 0);
        kw_keystore_close(f->ks);
        f->ks = NULL;
        /* positive control: the decrypted pages hold both blobs, the raw file neither */
        assert_true(file_has_pattern(f->path, pat1, sizeof pat1));
        assert_true(file_has_pattern(f->path, pat2, sizeof pat2));

        ks_open_ok(f);
        assert_int_equal(kw_keystore_key_destroy(f->ks, r.id, NULL).code, 0);
        struct kw_buf b;
        kw_buf_init(&b, 1024);
        assert_int_equal(kw_keystore_key_get_blob(f->ks, r.id, 1, &b).code, KW_ERR_NOT_FOUND);
        assert_int_equal(kw_keystore_key_get_blob(f->ks, r.id, 2, &b).code, KW_ERR_NOT_FOUND);
        char keep_id[33];
        make_id(keep_id, 100);
        assert_int_equal(kw_keystore_key_get_blob(f->ks, keep_id, 1, &b).code, 0);
        kw_buf_free(&b);
        struct kw_key_row g;
        memset(&g, 0, sizeof g);
        assert_int_equal(kw_keystore_key_get(f->ks, "victim", &g).code, 0);
        assert_string_equal(g.state, "destroyed");
        assert_int_equal(g.delete_at, 0);
        kw_key_row_clear(&g);
        uint64_t a0 = audit_rows_ok(f);
        assert_int_equal(kw_keystore_key_destroy(f->ks, r.id, NULL).code, KW_ERR_KEY_DESTROYED);
        assert_int_equal(audit_rows_ok(f), a0);
        /* the name stays a tombstone */
        struct kw_key_row again = key_row(2, "victim", "AES", "enabled", NULL);
        assert_int_equal(kw_keystore_key_insert(f->ks, &again, blob1, sizeof blob1, NULL).code,
                         KW_ERR_EXISTS);
        kw_keystore_close(f->ks);
        f->ks = NULL;
        assert_false(file_has_pattern(f->path, pat1, sizeof pat1));
        assert_false(file_has_pattern(f->path, pat2, sizeof pat2));
        char wal[256];
        struct stat st;
        snprintf(wal, sizeof wal, "%s-wal", f->path);
        assert_true(stat(wal, &st) != 0 || st.st_size == 0);
        ks_open_ok(f);
}

/* Records due keys; optionally destroys each from inside the callback. */
struct due {
        struct kw_keystore *ks;
        int destroy;
        int n;
        char names[8][65];
};

static int due_cb(const char *key_id, const char *name, void *arg)
{
        struct due *d = arg;
        if (d->n < 8)
                snprintf(d->names[d->n], 65, "%s", name);
        d->n++;
        if (d->destroy && !kw_ok(kw_keystore_key_destroy(d->ks, key_id, NULL)))
                return 1;
        return 0;
}

static void keystore_due_deletions_lists_due_keys(void **state)
{
        struct fx *f = *state;
        struct kw_key_row r = key_row(1, "p-late", "AES", "pending_deletion", NULL);
        r.delete_at = 200;
        assert_int_equal(kw_keystore_key_insert(f->ks, &r, blob1, sizeof blob1, NULL).code, 0);
        r = key_row(2, "p-early", "AES", "pending_deletion", NULL);
        r.delete_at = 100;
        assert_int_equal(kw_keystore_key_insert(f->ks, &r, blob1, sizeof blob1, NULL).code, 0);
        r = key_row(3, "live", "AES", "enabled", NULL);
        assert_int_equal(kw_keystore_key_insert(f->ks, &r, blob1, sizeof blob1, NULL).code, 0);

        struct due d = { .ks = f->ks };
        assert_int_equal(kw_keystore_due_deletions(f->ks, 50, due_cb, &d).code, 0);
        assert_int_equal(d.n, 0);
        assert_int_equal(kw_keystore_due_deletions(f->ks, 150, due_cb, &d).code, 0);
        assert_int_equal(d.n, 1);
        assert_string_equal(d.names[0], "p-early");
        d = (struct due){ .ks = f->ks, .destroy = 1 };
        assert_int_equal(kw_keystore_due_deletions(f->ks, 200, due_cb, &d).code, 0);
        assert_int_equal(d.n, 2);
        assert_string_equal(d.names[0], "p-early");
        assert_string_equal(d.names[1], "p-late");
        d = (struct due){ .ks = f->ks };
        assert_int_equal(kw_keystore_due_deletions(f->ks, 1000, due_cb, &d).code, 0);
        assert_int_equal(d.n, 0);
        assert_int_equal(key_count(f), 1);
        assert_int_equal(audit_rows_ok(f), 5);
}

/* --------------------------------------------------------------- atomicity */

/* A trigger makes the audit insert of action "boom" fail, after the change
 * itself already ran inside the transaction: everything must roll back. */
static void keystore_mutation_audit_failure_rolls_back(void **state)
{
        struct fx *f = *state;
        insert_key(f, 1, "base", "AES", "enabled", NULL);
        struct kw_token_row t = { .id = "t1", .name = "tok1", .role = "operator" };
        uint8_t th[32];
        memset(th, 7, sizeof th);
        assert_int_equal(kw_keystore_token_insert(f->ks, &t, th, NULL).code, 0);
        raw_exec(f->path, "CREATE TRIGGER boom BEFORE INSERT ON audit WHEN NEW.action = 'boom'"
                          " BEGIN SELECT RAISE(ABORT, 'boom'); END;"
                          /* key uses: a batch of two fails */
                          "CREATE TRIGGER boom2 BEFORE INSERT ON audit_batch"
                          " WHEN NEW.last_seq > NEW.first_seq"
                          " BEGIN SELECT RAISE(ABORT, 'boom'); END;");
        uint64_t a0 = audit_rows_ok(f), n0 = key_count(f);
        struct kw_audit_entry boom = { .action = "boom" };
        char id[33];
        make_id(id, 1);

        struct kw_key_row r = key_row(2, "new", "AES", "enabled", NULL);
        assert_int_equal(kw_keystore_key_insert(f->ks, &r, blob1, sizeof blob1, &boom).code, KW_ERR_STORAGE);
        struct kw_key_row g;
        memset(&g, 0, sizeof g);
        assert_int_equal(kw_keystore_key_get(f->ks, "new", &g).code, KW_ERR_NOT_FOUND);
        struct kw_buf b;
        kw_buf_init(&b, 1024);
        assert_int_equal(kw_keystore_key_get_blob(f->ks, r.id, 1, &b).code, KW_ERR_NOT_FOUND);

        assert_int_equal(kw_keystore_key_add_version(f->ks, id, 2, blob1, sizeof blob1, NULL, 0, &boom).code,
                         KW_ERR_STORAGE);
        assert_int_equal(kw_keystore_key_get_blob(f->ks, id, 2, &b).code, KW_ERR_NOT_FOUND);

        assert_int_equal(kw_keystore_key_destroy(f->ks, id, &boom).code, KW_ERR_STORAGE);
        assert_int_equal(kw_keystore_key_get_blob(f->ks, id, 1, &b).code, 0);
        kw_buf_free(&b);

        assert_int_equal(kw_keystore_key_get(f->ks, "base", &g).code, 0);
        struct kw_key_row u = g;
        snprintf(u.state, sizeof u.state, "disabled");
        assert_int_equal(kw_keystore_key_update(f->ks, &u, &boom).code, KW_ERR_STORAGE);
        kw_key_row_clear(&g);
        assert_int_equal(kw_keystore_key_get(f->ks, "base", &g).code, 0);
        assert_string_equal(g.state, "enabled");
        assert_int_equal(g.current_version, 1);
        kw_key_row_clear(&g);

        struct kw_token_row t2 = { .id = "t2", .name = "tok2", .role = "admin" };
        uint8_t th2[32];
        memset(th2, 8, sizeof th2);
        assert_int_equal(kw_keystore_token_insert(f->ks, &t2, th2, &boom).code, KW_ERR_STORAGE);
        struct kw_token_row tf;
        assert_int_equal(kw_keystore_token_find(f->ks, th2, &tf).code, KW_ERR_NOT_FOUND);
        assert_int_equal(kw_keystore_token_revoke(f->ks, "t1", &boom).code, KW_ERR_STORAGE);
        assert_int_equal(kw_keystore_token_find(f->ks, th, &tf).code, 0);

        struct kw_audit_entry two[2] = { { .action = "fine" }, { .action = "boom" } };
        assert_int_equal(kw_keystore_audit_append(f->ks, two, 2).code, KW_ERR_STORAGE);

        assert_int_equal(key_count(f), n0);
        assert_int_equal(audit_rows_ok(f), a0);
        /* the in-memory chain head was not advanced by any of them */
        assert_int_equal(kw_keystore_audit_append(f->ks, two, 1).code, 0);
        assert_int_equal(audit_rows_ok(f), a0 + 1);
        ks_reopen(f);
        assert_int_equal(audit_rows_ok(f), a0 + 1);
}

struct thr {
        struct kw_keystore *ks;
        unsigned base;
        int failures;
};

static void *insert_thread(void *arg)
{
        struct thr *t = arg;
        for (unsigned i = 0; i < 40; i++) {
                char name[32];
                snprintf(name, sizeof name, "t%u-%02u", t->base, i);
                struct kw_key_row r = key_row(t->base * 1000 + i, name, "AES", "enabled", NULL);
                if (!kw_ok(kw_keystore_key_insert(t->ks, &r, blob1, sizeof blob1, NULL)))
                        t->failures++;
                struct kw_key_row g;
                memset(&g, 0, sizeof g);
                if (!kw_ok(kw_keystore_key_get(t->ks, name, &g)))
                        t->failures++;
                kw_key_row_clear(&g);
        }
        return NULL;
}

static void keystore_threads_share_one_store(void **state)
{
        struct fx *f = *state;
        pthread_t th[3];
        struct thr t[3];
        for (unsigned i = 0; i < 3; i++) {
                t[i] = (struct thr){ .ks = f->ks, .base = i + 1 };
                assert_int_equal(pthread_create(&th[i], NULL, insert_thread, &t[i]), 0);
        }
        for (int i = 0; i < 3; i++) {
                pthread_join(th[i], NULL);
                assert_int_equal(t[i].failures, 0);
        }
        assert_int_equal(key_count(f), 120);
        assert_int_equal(audit_rows_ok(f), 120);
}

/* ---------------------------------------------------------------- tokens */

struct toks {
        int n;
        char names[8][65];
        int64_t revoked[8];
};

static int toks_cb(const struct kw_token_row *row, void *arg)
{
        struct toks *t = arg;
        if (t->n < 8) {
                snprintf(t->names[t->n], 65, "%s", row->name);
                t->revoked[t->n] = row->revoked;
        }
        t->n++;
        return 0;
}

struct tok_hashes {
        char names[8][65];
        uint8_t hashes[8][32];
        int64_t revoked[8];
        size_t n, stop_after;
};

static int tok_hashes_cb(const struct kw_token_row *row, const uint8_t hash[32], void *arg)
{
        struct tok_hashes *t = arg;
        if (t->n < 8) {
                snprintf(t->names[t->n], 65, "%s", row->name);
                memcpy(t->hashes[t->n], hash, 32);
                t->revoked[t->n] = row->revoked;
        }
        t->n++;
        return t->stop_after != 0 && t->n == t->stop_after;
}

static void keystore_token_list_hashes_every_token_with_its_hash(void **state)
{
        struct fx *f = *state;
        uint8_t h1[32], h2[32], h3[32];
        memset(h1, 1, sizeof h1);
        memset(h2, 2, sizeof h2);
        memset(h3, 3, sizeof h3);
        struct kw_token_row t1 = { .id = "bb01", .name = "zeta", .role = "admin" };
        struct kw_token_row t2 = { .id = "bb02", .name = "alpha", .role = "admin" };
        struct kw_token_row t3 = { .id = "bb03", .name = "mid", .role = "operator" };
        assert_int_equal(kw_keystore_token_insert(f->ks, &t1, h1, NULL).code, 0);
        assert_int_equal(kw_keystore_token_insert(f->ks, &t2, h2, NULL).code, 0);
        assert_int_equal(kw_keystore_token_insert(f->ks, &t3, h3, NULL).code, 0);
        assert_int_equal(kw_keystore_token_revoke(f->ks, "bb01", NULL).code, 0);
        struct tok_hashes t = { .n = 0 };
        assert_int_equal(kw_keystore_token_list_hashes(f->ks, tok_hashes_cb, &t).code, 0);
        assert_int_equal(t.n, 3);   /* revoked ones included, in name order */
        assert_string_equal(t.names[0], "alpha");
        assert_memory_equal(t.hashes[0], h2, 32);
        assert_string_equal(t.names[1], "mid");
        assert_memory_equal(t.hashes[1], h3, 32);
        assert_string_equal(t.names[2], "zeta");
        assert_memory_equal(t.hashes[2], h1, 32);
        assert_true(t.revoked[2] != 0 && t.revoked[0] == 0);
        /* a callback returning non-zero stops the walk */
        struct tok_hashes one = { .stop_after = 1 };
        assert_int_equal(kw_keystore_token_list_hashes(f->ks, tok_hashes_cb, &one).code, 0);
        assert_int_equal(one.n, 1);
        assert_int_equal(kw_keystore_token_list_hashes(f->ks, NULL, &one).code, KW_ERR_INPUT);
        assert_int_equal(kw_keystore_token_list_hashes(NULL, tok_hashes_cb, &one).code, KW_ERR_INPUT);
}

static void keystore_token_lifecycle(void **state)
{
        struct fx *f = *state;
        uint8_t h1[32], h2[32], h3[32];
        memset(h1, 1, sizeof h1);
        memset(h2, 2, sizeof h2);
        memset(h3, 3, sizeof h3);
        struct kw_token_row t1 = { .id = "aa01", .name = "zeta", .role = "admin", .created = 77 };
        struct kw_token_row t2 = { .id = "aa02", .name = "alpha", .role = "auditor" };
        assert_int_equal(kw_keystore_token_insert(f->ks, &t1, h1, NULL).code, 0);
        assert_int_equal(kw_keystore_token_insert(f->ks, &t2, h2, NULL).code, 0);
        uint64_t n = 0;
        assert_int_equal(kw_keystore_token_count(f->ks, &n).code, 0);
        assert_int_equal(n, 2);
        uint64_t a0 = audit_rows_ok(f);

        /* duplicates and invalid rows: nothing changed */
        struct kw_token_row dn = { .id = "aa03", .name = "zeta", .role = "admin" };
        assert_int_equal(kw_keystore_token_insert(f->ks, &dn, h3, NULL).code, KW_ERR_EXISTS);
        struct kw_token_row dh = { .id = "aa04", .name = "other", .role = "admin" };
        assert_int_equal(kw_keystore_token_insert(f->ks, &dh, h1, NULL).code, KW_ERR_EXISTS);
        struct kw_token_row br = { .id = "aa05", .name = "other", .role = "root" };
        assert_int_equal(kw_keystore_token_insert(f->ks, &br, h3, NULL).code, KW_ERR_BAD_FIELD);
        struct kw_token_row bn = { .id = "aa06", .name = "bad name", .role = "admin" };
        assert_int_equal(kw_keystore_token_insert(f->ks, &bn, h3, NULL).code, KW_ERR_BAD_NAME);
        assert_int_equal(kw_keystore_token_count(f->ks, &n).code, 0);
        assert_int_equal(n, 2);
        assert_int_equal(audit_rows_ok(f), a0);
        struct kw_token_row tf;
        memset(&tf, 0, sizeof tf);
        assert_int_equal(kw_keystore_token_find(f->ks, h3, &tf).code, KW_ERR_NOT_FOUND);
        assert_int_equal(tf.name[0], 0);

        assert_int_equal(kw_keystore_token_find(f->ks, h1, &tf).code, 0);
        assert_string_equal(tf.id, "aa01");
        assert_string_equal(tf.name, "zeta");
        assert_string_equal(tf.role, "admin");
        assert_int_equal(tf.created, 77);
        assert_int_equal(tf.revoked, 0);

        struct toks tl = { 0 };
        assert_int_equal(kw_keystore_token_list(f->ks, toks_cb, &tl).code, 0);
        assert_int_equal(tl.n, 2);
        assert_string_equal(tl.names[0], "alpha");
        assert_string_equal(tl.names[1], "zeta");

        struct kw_audit_entry a = { .actor = "admin", .action = "token.revoke", .result = "ok" };
        /* the last active admin token cannot be revoked: nothing changes */
        assert_int_equal(kw_keystore_token_revoke(f->ks, "aa01", &a).code, KW_ERR_BAD_STATE);
        assert_int_equal(kw_keystore_token_find(f->ks, h1, &tf).code, 0);
        assert_int_equal(audit_rows_ok(f), a0);
        uint8_t h9[32];
        memset(h9, 9, sizeof h9);
        struct kw_token_row t9 = { .id = "aa09", .name = "second-admin", .role = "admin" };
        assert_int_equal(kw_keystore_token_insert(f->ks, &t9, h9, NULL).code, 0);
        a0 = audit_rows_ok(f);
        assert_int_equal(kw_keystore_token_revoke(f->ks, "aa01", &a).code, 0);
        memset(&tf, 0, sizeof tf);
        assert_int_equal(kw_keystore_token_find(f->ks, h1, &tf).code, KW_ERR_NOT_FOUND);
        assert_int_equal(tf.name[0], 0);
        assert_int_equal(kw_keystore_token_count(f->ks, &n).code, 0);
        assert_int_equal(n, 3);   /* every token ever made, the revoked one included */
        assert_int_equal(audit_rows_ok(f), a0 + 1);
        assert_int_equal(kw_keystore_token_revoke(f->ks, "aa09", &a).code, KW_ERR_BAD_STATE);
        assert_int_equal(kw_keystore_token_revoke(f->ks, "aa01", NULL).code, KW_ERR_NOT_FOUND);
        assert_int_equal(kw_keystore_token_revoke(f->ks, "ffff", NULL).code, KW_ERR_NOT_FOUND);
        assert_int_equal(audit_rows_ok(f), a0 + 1);
        memset(&tl, 0, sizeof tl);
        assert_int_equal(kw_keystore_token_list(f->ks, toks_cb, &tl).code, 0);
        assert_int_equal(tl.n, 3);
        assert_string_equal(tl.names[2], "zeta");
        assert_int_equal(tl.revoked[0], 0);
        assert_int_equal(tl.revoked[1], 0);
        assert_true(tl.revoked[2] > 0);
        assert_int_equal(kw_keystore_token_find(f->ks, h2, &tf).code, 0);
        assert_string_equal(tf.role, "auditor");
}

/* ----------------------------------------------------------------- audit */

struct arows {
        int n;
        uint64_t seq[64];
        char names[64][16];
        char actions[64][16];
        int64_t ts[64];
        int hash_ok;
};

static int arows_cb(const struct kw_audit_row *row, void *arg)
{
        struct arows *a = arg;
        if (a->n < 64) {
                a->seq[a->n] = row->seq;
                snprintf(a->names[a->n], 16, "%s", row->key_name);
                snprintf(a->actions[a->n], 16, "%s", row->action);
                a->ts[a->n] = row->ts_ms;
        }
        size_t hl = strlen(row->hash_hex);
        a->hash_ok &= hl == 64 && strspn(row->hash_hex, "0123456789abcdef") == 64 &&
                      row->actor != NULL && row->result != NULL && row->detail != NULL &&
                      row->request_id != NULL;
        a->n++;
        return 0;
}

static void keystore_audit_append_query_filters_and_paging(void **state)
{
        struct fx *f = *state;
        struct kw_audit_entry e[30];
        char names[30][16];
        for (int i = 0; i < 30; i++) {
                snprintf(names[i], sizeof names[i], "k%d", i % 3);
                e[i] = (struct kw_audit_entry){ .ts_ms = i == 0 ? 0 : 1000 + i, .actor = "a",
                                                .action = i % 2 ? "key.decrypt" : "key.encrypt",
                                                .key_name = names[i], .result = "ok",
                                                .request_id = "r" };
        }
        e[5].actor = NULL; /* NULL strings are stored as "" */
        assert_int_equal(kw_keystore_audit_append(f->ks, e, 30).code, 0);
        assert_int_equal(kw_keystore_audit_append(f->ks, e, 0).code, 0);
        assert_int_equal(audit_rows_ok(f), 30);

        struct arows a = { .hash_ok = 1 };
        assert_int_equal(kw_keystore_audit_query(f->ks, 0, 10, NULL, NULL, arows_cb, &a).code, 0);
        assert_int_equal(a.n, 10);
        assert_true(a.hash_ok);
        for (int i = 0; i < 10; i++)
                assert_int_equal(a.seq[i], (uint64_t)i + 1);
        assert_true(a.ts[0] > 1600000000000LL); /* 0 means now */
        assert_int_equal(a.ts[1], 1001);

        /* paging with after_seq */
        uint64_t after = 0;
        int total = 0;
        for (int page = 0; page < 10; page++) {
                memset(&a, 0, sizeof a);
                a.hash_ok = 1;
                assert_int_equal(kw_keystore_audit_query(f->ks, after, 7, NULL, NULL, arows_cb, &a).code, 0);
                for (int i = 0; i < a.n; i++)
                        assert_int_equal(a.seq[i], after + (uint64_t)i + 1);
                total += a.n;
                if (a.n == 0)
                        break;
                after = a.seq[a.n - 1];
        }
        assert_int_equal(total, 30);

        memset(&a, 0, sizeof a);
        a.hash_ok = 1;
        assert_int_equal(kw_keystore_audit_query(f->ks, 0, 100, "k1", NULL, arows_cb, &a).code, 0);
        assert_int_equal(a.n, 10);
        for (int i = 0; i < a.n; i++)
                assert_string_equal(a.names[i], "k1");

        memset(&a, 0, sizeof a);
        a.hash_ok = 1;
        assert_int_equal(kw_keystore_audit_query(f->ks, 0, 0, NULL, "key.decrypt", arows_cb, &a).code, 0);
        assert_int_equal(a.n, 15);
        for (int i = 0; i < a.n; i++)
                assert_string_equal(a.actions[i], "key.decrypt");

        memset(&a, 0, sizeof a);
        a.hash_ok = 1;
        assert_int_equal(kw_keystore_audit_query(f->ks, 10, 3, "k0", "key.encrypt", arows_cb, &a).code, 0);
        /* k0 at i = 0,3,...; encrypt at even i: i = 0,6,12,18,24 -> seq 1,7,13,19,25 */
        assert_int_equal(a.n, 3);
        assert_int_equal(a.seq[0], 13);
        assert_int_equal(a.seq[1], 19);
        assert_int_equal(a.seq[2], 25);

        memset(&a, 0, sizeof a);
        assert_int_equal(kw_keystore_audit_query(f->ks, 0, 1001, NULL, NULL, arows_cb, &a).code,
                         KW_ERR_BAD_FIELD);
        assert_int_equal(a.n, 0);

        /* an over-long field fails the whole batch */
        char longf[5000];
        memset(longf, 'x', sizeof longf - 1);
        longf[sizeof longf - 1] = '\0';
        struct kw_audit_entry bad[2] = { { .action = "ok" }, { .action = "x", .detail = longf } };
        assert_int_equal(kw_keystore_audit_append(f->ks, bad, 2).code, KW_ERR_TOO_LARGE);
        /* the batch cap is checked before any entry is read */
        assert_int_equal(kw_keystore_audit_append(f->ks, bad, 65537).code, KW_ERR_TOO_LARGE);
        assert_int_equal(audit_rows_ok(f), 30);
}

/* Admin actions are rows (key uses are batches: audit_store_test.c). */
static void keystore_audit_verify_detects_tampering(void **state)
{
        struct fx *f = *state;
        char names[5][24];
        for (int i = 0; i < 5; i++) {
                snprintf(names[i], sizeof names[i], "tamper-%d", i + 1);
                insert_key(f, 100 + (unsigned)i, names[i], "AES", "enabled", NULL);
        }
        uint64_t rows = 0, bad = 1;
        assert_int_equal(kw_keystore_audit_verify(f->ks, &rows, &bad).code, 0);
        assert_int_equal(rows, 5);
        assert_int_equal(bad, 0);

        raw_exec(f->path, "UPDATE audit SET detail = 'forged' WHERE seq = 3");
        assert_int_equal(kw_keystore_audit_verify(f->ks, &rows, &bad).code, 0);
        assert_int_equal(bad, 3);
        raw_exec(f->path, "UPDATE audit SET detail = '' WHERE seq = 3");
        assert_int_equal(kw_keystore_audit_verify(f->ks, &rows, &bad).code, 0);
        assert_int_equal(bad, 0);

        raw_exec(f->path, "UPDATE audit SET prev_hash = zeroblob(32) WHERE seq = 4");
        assert_int_equal(kw_keystore_audit_verify(f->ks, &rows, &bad).code, 0);
        assert_int_equal(bad, 4);
        /* restore seq 4's link from seq 3's hash, then delete seq 2: a gap */
        raw_exec(f->path, "UPDATE audit SET prev_hash = (SELECT hash FROM audit WHERE seq = 3)"
                          " WHERE seq = 4");
        assert_int_equal(kw_keystore_audit_verify(f->ks, &rows, &bad).code, 0);
        assert_int_equal(bad, 0);
        raw_exec(f->path, "DELETE FROM audit WHERE seq = 2");
        assert_int_equal(kw_keystore_audit_verify(f->ks, &rows, &bad).code, 0);
        assert_int_equal(bad, 3);
        assert_int_equal(rows, 2);
        raw_exec(f->path, "DELETE FROM audit WHERE seq = 1");
        assert_int_equal(kw_keystore_audit_verify(f->ks, &rows, &bad).code, 0);
        assert_int_equal(bad, 3);
}

/* ------------------------------------------------------------- durability */

/* Child: opens the store and inserts keys, writing each acknowledged name to
 * the pipe, until it is killed. */
static void durability_child(const char *path, int round, int wfd)
{
        struct kw_keystore *ks = NULL;
        if (!kw_ok(kw_keystore_open(path, &key_a, &ks)))
                _exit(2);
        for (unsigned i = 0; i < 100000; i++) {
                char name[32];
                snprintf(name, sizeof name, "r%02d-k%05u", round, i);
                struct kw_key_row r = key_row((unsigned)round * 100000u + i + 1, name, "AES", "enabled",
                                              "{\"d\":\"1\"}");
                struct kw_audit_entry a = { .actor = "child", .action = "key.create", .key_name = name,
                                            .result = "ok" };
                if (!kw_ok(kw_keystore_key_insert(ks, &r, blob1, sizeof blob1, &a)))
                        _exit(3);
                char line[40];
                int n = snprintf(line, sizeof line, "%s\n", name);
                if (write(wfd, line, (size_t)n) != n)
                        _exit(4);
        }
        _exit(0);
}

static void keystore_durability_sigkill_loses_no_acknowledged_write(void **state)
{
        struct fx *f = *state;
        kw_keystore_close(f->ks);
        f->ks = NULL;
        static char buf[1 << 20];
        uint64_t acked_total = 0;
        for (int round = 0; round < 20; round++) {
                int p[2];
                assert_int_equal(pipe(p), 0);
                pid_t pid = fork();
                assert_true(pid >= 0);
                if (pid == 0) {
                        close(p[0]);
                        durability_child(f->path, round, p[1]);
                }
                close(p[1]);
                usleep(20000 + (useconds_t)(rand() % 180000));
                assert_int_equal(kill(pid, SIGKILL), 0);
                int st = 0;
                assert_int_equal(waitpid(pid, &st, 0), pid);
                assert_true(WIFSIGNALED(st)); /* it was still inserting, not failing */
                size_t len = 0;
                ssize_t n;
                while (len < sizeof buf - 1 && (n = read(p[0], buf + len, sizeof buf - 1 - len)) > 0)
                        len += (size_t)n;
                close(p[0]);
                buf[len] = '\0';

                ks_open_ok(f);
                uint64_t acked = 0;
                for (char *line = buf, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
                        *nl = '\0';
                        struct kw_key_row g;
                        memset(&g, 0, sizeof g);
                        kw_result r = kw_keystore_key_get(f->ks, line, &g);
                        if (!kw_ok(r))
                                print_error("acknowledged key %s lost\n", line);
                        assert_int_equal(r.code, 0);
                        kw_key_row_clear(&g);
                        acked++;
                }
                acked_total += acked;
                /* every key has its audit row and the chain is intact; at most
                 * one commit per round may have landed without its ack */
                uint64_t keys = key_count(f);
                assert_int_equal(audit_rows_ok(f), keys);
                assert_true(keys >= acked_total && keys <= acked_total + (uint64_t)round + 1);
                kw_keystore_close(f->ks);
                f->ks = NULL;
        }
        assert_true(acked_total > 20); /* the test did exercise writes */
        ks_open_ok(f);
}

/* ---- XKS stores (schema 2) ---- */

struct xks_seen {
        int stores, creds;
        char akids[8][33];
        char secrets[8][65];
        int sealed[8];
};

static int xks_store_cb(const struct kw_xks_store_row *row, void *arg)
{
        (void)row;
        ((struct xks_seen *)arg)->stores++;
        return 0;
}

static int xks_cred_cb(const struct kw_xks_cred_row *row, void *arg)
{
        struct xks_seen *s = arg;
        if (s->creds < 8) {
                snprintf(s->akids[s->creds], sizeof s->akids[0], "%s", row->akid);
                snprintf(s->secrets[s->creds], sizeof s->secrets[0], "%.*s",
                         (int)(row->secret_len < 64 ? row->secret_len : 64), (const char *)row->secret);
                s->sealed[s->creds] = row->is_sealed;
        }
        s->creds++;
        return 0;
}

static struct kw_xks_cred_row xks_cred(const char *store, const char *akid)
{
        struct kw_xks_cred_row c;
        memset(&c, 0, sizeof c);
        snprintf(c.store, sizeof c.store, "%s", store);
        snprintf(c.akid, sizeof c.akid, "%s", akid);
        /* the keystore stores what the custody process sealed: opaque here */
        int n = snprintf((char *)c.secret, sizeof c.secret, "sealed-%s-0123456789012345678901234567", akid);
        c.secret_len = (size_t)n;
        c.is_sealed = 1;
        return c;
}

static void keystore_xks_store_insert_rotate_prune_delete(void **state)
{
        struct fx *f = *state;
        struct kw_xks_store_row st = { .name = "s1", .uri_prefix = "/s1", .region = "us-east-1" };
        struct kw_xks_cred_row c1 = xks_cred("s1", "AAAAAAAAAAAAAAAAAAA1");
        assert_int_equal(kw_keystore_xks_store_insert(f->ks, &st, &c1, NULL).code, 0);
        /* name or prefix taken: exists, nothing changed */
        struct kw_xks_cred_row c9 = xks_cred("s1", "AAAAAAAAAAAAAAAAAAA9");
        assert_int_equal(kw_keystore_xks_store_insert(f->ks, &st, &c9, NULL).code, KW_ERR_EXISTS);
        struct kw_xks_store_row st2 = { .name = "s2", .uri_prefix = "/s1", .region = "us-east-1" };
        struct kw_xks_cred_row c92 = xks_cred("s2", "AAAAAAAAAAAAAAAAAAA9");
        assert_int_equal(kw_keystore_xks_store_insert(f->ks, &st2, &c92, NULL).code, KW_ERR_EXISTS);
        struct xks_seen seen = { 0 };
        assert_int_equal(kw_keystore_xks_list(f->ks, xks_store_cb, xks_cred_cb, &seen).code, 0);
        assert_int_equal(seen.stores, 1);
        assert_int_equal(seen.creds, 1);
        /* two rotations with keep = 2: the first credential is gone */
        struct kw_xks_cred_row c2 = xks_cred("s1", "AAAAAAAAAAAAAAAAAAA2"), c3 = xks_cred("s1", "AAAAAAAAAAAAAAAAAAA3");
        assert_int_equal(kw_keystore_xks_cred_add(f->ks, &c2, 2, NULL).code, 0);
        assert_int_equal(kw_keystore_xks_cred_add(f->ks, &c3, 2, NULL).code, 0);
        struct kw_xks_cred_row cx = xks_cred("nostore", "AAAAAAAAAAAAAAAAAAA4");
        assert_int_equal(kw_keystore_xks_cred_add(f->ks, &cx, 2, NULL).code, KW_ERR_NOT_FOUND);
        ks_reopen(f);   /* persisted, inside the encrypted file */
        memset(&seen, 0, sizeof seen);
        assert_int_equal(kw_keystore_xks_list(f->ks, xks_store_cb, xks_cred_cb, &seen).code, 0);
        assert_int_equal(seen.creds, 2);
        assert_string_equal(seen.akids[0], c2.akid);
        assert_string_equal(seen.akids[1], c3.akid);
        assert_memory_equal(seen.secrets[1], c3.secret, c3.secret_len);
        assert_int_equal(seen.sealed[1], 1);
        /* a clear secret is never written; a reseal needs a clear row */
        struct kw_xks_cred_row clear = xks_cred("s1", "AAAAAAAAAAAAAAAAAAA5");
        clear.is_sealed = 0;
        assert_int_equal(kw_keystore_xks_cred_add(f->ks, &clear, 2, NULL).code, KW_ERR_INPUT);
        assert_int_equal(kw_keystore_xks_cred_reseal(f->ks, "s1", c3.akid, (const uint8_t *)"x", 1).code,
                         KW_ERR_NOT_FOUND);
        assert_int_equal(kw_keystore_xks_cred_delete(f->ks, "s1", c1.akid, NULL).code, KW_ERR_NOT_FOUND);
        assert_int_equal(kw_keystore_xks_cred_delete(f->ks, "s1", c2.akid, NULL).code, 0);
        assert_int_equal(kw_keystore_xks_store_delete(f->ks, "s2", NULL).code, KW_ERR_NOT_FOUND);
        assert_int_equal(kw_keystore_xks_store_delete(f->ks, "s1", NULL).code, 0);
        memset(&seen, 0, sizeof seen);
        assert_int_equal(kw_keystore_xks_list(f->ks, xks_store_cb, xks_cred_cb, &seen).code, 0);
        assert_int_equal(seen.stores + seen.creds, 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
                T(keystore_xks_store_insert_rotate_prune_delete),
                T(keystore_open_new_file_creates_schema_private),
                T(keystore_open_reopen_keeps_rows_and_chain),
                T(keystore_open_wrong_key_fails_key_mismatch),
                T(keystore_open_plain_sqlite_file_fails_key_mismatch),
                T(keystore_open_newer_schema_fails_db_version),
                T(keystore_open_bad_key_or_path_fails),
                T(keystore_key_insert_duplicate_name_fails_exists),
                T(keystore_key_insert_invalid_row_fails_nothing_changed),
                T(keystore_key_get_missing_fails_not_found),
                T(keystore_key_get_overlong_db_value_fails_corrupt),
                T(keystore_key_list_filters_combine),
                T(keystore_key_list_paging_sees_each_name_once),
                T(keystore_key_update_writes_mutable_columns),
                T(keystore_key_add_version_wrong_number_fails_nothing_changed),
                T(keystore_key_destroy_overwrites_blobs_in_file),
                T(keystore_key_destroy_due_checks_in_tx),
                T(keystore_due_deletions_lists_due_keys),
                T(keystore_mutation_audit_failure_rolls_back),
                T(keystore_threads_share_one_store),
                T(keystore_token_lifecycle),
                T(keystore_token_list_hashes_every_token_with_its_hash),
                T(keystore_audit_append_query_filters_and_paging),
                T(keystore_audit_verify_detects_tampering),
                T(keystore_durability_sigkill_loses_no_acknowledged_write),
#undef T
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
