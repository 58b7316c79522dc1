/*
 * tls_test.c - the TLS key and certificate of first boot (tls.h): each mode
 * read back with OpenSSL, re-runs, resuming, and everything refused.
 * Each case has a fresh directory (mkdtemp), removed after.  Linked with
 * -Wl,--wrap=write,--wrap=fsync,--wrap=renameat2 (provisioning.mk): the
 * fakes below fail one call on demand.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls.h"

/* ---- I/O faults ---- */

static struct {
        const char *fn;   /* the call to fail; NULL: none */
        int nth;          /* its nth call from now */
        int err;          /* errno; renameat2 with EEXIST: makes the target first */
        int calls;
} fault;

static void fault_set(const char *fn, int nth, int err)
{
        fault.fn = fn;
        fault.nth = nth;
        fault.err = err;
        fault.calls = 0;
}

static int fault_hit(const char *fn)
{
        return fault.fn != NULL && strcmp(fault.fn, fn) == 0 && ++fault.calls == fault.nth;
}

ssize_t __real_write(int fd, const void *p, size_t n);
ssize_t __wrap_write(int fd, const void *p, size_t n);
int __real_fsync(int fd);
int __wrap_fsync(int fd);
int __real_renameat2(int from_dir, const char *from, int to_dir, const char *to, unsigned flags);
int __wrap_renameat2(int from_dir, const char *from, int to_dir, const char *to, unsigned flags);

ssize_t __wrap_write(int fd, const void *p, size_t n)
{
        if (fault_hit("write")) {
                errno = fault.err;
                return -1;
        }
        return __real_write(fd, p, n);
}

int __wrap_fsync(int fd)
{
        if (fault_hit("fsync")) {
                errno = fault.err;
                return -1;
        }
        return __real_fsync(fd);
}

int __wrap_renameat2(int from_dir, const char *from, int to_dir, const char *to, unsigned flags)
{
        if (fault_hit("renameat2")) {
                if (fault.err != EEXIST) {
                        errno = fault.err;
                        return -1;
                }
                int fd = openat(to_dir, to, O_WRONLY | O_CREAT | O_EXCL, 0600);   /* another writer's */
                assert_true(fd >= 0);
                assert_int_equal(__real_write(fd, "theirs\n", 7), 7);
                close(fd);
        }
        return __real_renameat2(from_dir, from, to_dir, to, flags);
}

/* ---- fixtures and helpers ---- */

struct t {
        char dir[64];
        char other[64];   /* a second directory, for a second key */
};

static void rm_tree(const char *dir)
{
        DIR *d = opendir(dir);
        if (d == NULL)
                return;
        const struct dirent *de;
        while ((de = readdir(d)) != NULL) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (unlinkat(dirfd(d), de->d_name, 0) != 0 && errno == EISDIR)
                        unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
        }
        closedir(d);
        rmdir(dir);
}

static int setup(void **state)
{
        struct t *t = calloc(1, sizeof *t);
        assert_non_null(t);
        snprintf(t->dir, sizeof t->dir, "/tmp/kw-tls-test.XXXXXX");
        snprintf(t->other, sizeof t->other, "/tmp/kw-tls-test.XXXXXX");
        assert_non_null(mkdtemp(t->dir));
        assert_non_null(mkdtemp(t->other));
        *state = t;
        return 0;
}

static int teardown(void **state)
{
        struct t *t = *state;
        fault_set(NULL, 0, 0);
        rm_tree(t->dir);
        rm_tree(t->other);
        free(t);
        return 0;
}

static char *path_of(const char *dir, const char *name)
{
        static char p[256];
        snprintf(p, sizeof p, "%s/%s", dir, name);
        return p;
}

/* The whole file (NUL-terminated), its length in *len; NULL when absent. */
static char *slurp(const char *dir, const char *name, size_t *len)
{
        FILE *f = fopen(path_of(dir, name), "rb");
        if (f == NULL)
                return NULL;
        char *buf = calloc(1, 1 << 17);
        assert_non_null(buf);
        size_t n = fread(buf, 1, (1 << 17) - 1, f);
        fclose(f);
        if (len != NULL)
                *len = n;
        return buf;
}

static void spit(const char *dir, const char *name, const char *text, mode_t mode)
{
        char *p = path_of(dir, name);
        unlink(p);
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, mode);
        assert_true(fd >= 0);
        size_t n = strlen(text);
        assert_int_equal(write(fd, text, n), (ssize_t)n);
        close(fd);
}

static int n_entries(const char *dir)
{
        DIR *d = opendir(dir);
        assert_non_null(d);
        int n = 0;
        const struct dirent *de;
        while ((de = readdir(d)) != NULL)
                n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
        closedir(d);
        return n;
}

static void file_stat(const char *dir, const char *name, struct stat *st)
{
        assert_int_equal(lstat(path_of(dir, name), st), 0);
}

static X509 *load_cert(const char *dir)
{
        char *pem = slurp(dir, KWP_TLS_CERT_FILE, NULL);
        assert_non_null(pem);
        BIO *b = BIO_new_mem_buf(pem, -1);
        X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
        BIO_free(b);
        free(pem);
        assert_non_null(x);
        return x;
}

static EVP_PKEY *load_key(const char *dir)
{
        char *pem = slurp(dir, KWP_TLS_KEY_FILE, NULL);
        assert_non_null(pem);
        assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----"));   /* PKCS#8 */
        BIO *b = BIO_new_mem_buf(pem, -1);
        EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
        BIO_free(b);
        OPENSSL_cleanse(pem, strlen(pem));
        free(pem);
        assert_non_null(k);
        return k;
}

static X509_REQ *load_csr(const char *dir)
{
        char *pem = slurp(dir, KWP_TLS_CSR_FILE, NULL);
        assert_non_null(pem);
        BIO *b = BIO_new_mem_buf(pem, -1);
        X509_REQ *q = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
        BIO_free(b);
        free(pem);
        assert_non_null(q);
        return q;
}

static char *cert_pem(X509 *a, X509 *b)
{
        BIO *bio = BIO_new(BIO_s_mem());
        assert_int_equal(PEM_write_bio_X509(bio, a), 1);
        if (b != NULL)
                assert_int_equal(PEM_write_bio_X509(bio, b), 1);
        char *p = NULL;
        long n = BIO_get_mem_data(bio, &p);
        char *out = strndup(p, (size_t)n);
        BIO_free(bio);
        return out;
}

static char *key_pem(EVP_PKEY *k)
{
        BIO *bio = BIO_new(BIO_s_mem());
        assert_int_equal(PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL), 1);
        char *p = NULL;
        long n = BIO_get_mem_data(bio, &p);
        char *out = strndup(p, (size_t)n);
        BIO_free(bio);
        return out;
}

static EVP_PKEY *ec_key(void)
{
        EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        assert_non_null(k);
        return k;
}

/* A certificate for key, issued by issuer (NULL: self-signed), with the
 * extensions given as OpenSSL config values (NULL: none), valid from nb to
 * na ("YYYYMMDDHHMMSSZ", or NULL: an hour ago / in a year). */
struct spec {
        const char *cn, *san, *eku, *ku, *bc, *nb, *na;
        long na_secs;   /* with na NULL and na_secs != 0: now + na_secs */
};

static X509 *cert_new(EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, const struct spec *s)
{
        X509 *x = X509_new();
        assert_non_null(x);
        X509_set_version(x, X509_VERSION_3);
        BIGNUM *bn = BN_new();
        BN_rand(bn, 64, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY);
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
        BN_free(bn);
        X509_NAME *n = X509_NAME_new();
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)(s->cn ? s->cn : "test"), -1, -1,
                                   0);
        X509_set_subject_name(x, n);
        X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
        X509_NAME_free(n);
        time_t now = time(NULL);
        if (s->nb != NULL)
                assert_int_equal(ASN1_TIME_set_string(X509_getm_notBefore(x), s->nb), 1);
        else
                ASN1_TIME_set(X509_getm_notBefore(x), now - 3600);
        if (s->na != NULL)
                assert_int_equal(ASN1_TIME_set_string(X509_getm_notAfter(x), s->na), 1);
        else
                ASN1_TIME_set(X509_getm_notAfter(x), now + (s->na_secs ? s->na_secs : 365L * 86400));
        X509_set_pubkey(x, key);
        X509V3_CTX ctx;
        X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
        const struct {
                int nid;
                const char *v;
        } exts[] = { { NID_subject_alt_name, s->san }, { NID_ext_key_usage, s->eku },
                     { NID_key_usage, s->ku }, { NID_basic_constraints, s->bc } };
        for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
                if (exts[i].v == NULL)
                        continue;
                X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, exts[i].nid, exts[i].v);
                assert_non_null(e);
                X509_add_ext(x, e, -1);
                X509_EXTENSION_free(e);
        }
        assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
        return x;
}

static const char *const NAMES[] = { "kw.example.com", "*.kw.example.com", "10.0.0.5", "2001:db8::5" };
#define N_NAMES (sizeof NAMES / sizeof NAMES[0])

static struct kwp_tls_req req_for(const char *dir, enum kwp_tls_mode mode)
{
        return (struct kwp_tls_req){ .dir = dir, .mode = mode, .names = NAMES, .n_names = N_NAMES };
}

static void ensure_ok(const struct kwp_tls_req *req, struct kwp_tls_result *res)
{
        kw_result r = kwp_tls_ensure(req, res);
        if (r.code != 0)
                fail_msg("kwp_tls_ensure: %s: %s", kw_err_name(r.code), kw_err_detail());
}

static void detail_says(const char *want)
{
        if (strstr(kw_err_detail(), want) == NULL)
                fail_msg("detail \"%s\" does not say \"%s\"", kw_err_detail(), want);
}

/* req fails with code and a detail saying want; *ret and the directory's
 * file count are as they were. */
static void ensure_fails(const struct kwp_tls_req *req, int code, const char *want)
{
        struct kwp_tls_result res, before;
        memset(&res, 0x5a, sizeof res);
        before = res;
        int n = req->dir != NULL && access(req->dir, F_OK) == 0 ? n_entries(req->dir) : -1;
        kw_result r = kwp_tls_ensure(req, &res);
        if (r.code != code)
                fail_msg("expected %s, got %s: %s", kw_err_name(code), kw_err_name(r.code), kw_err_detail());
        detail_says(want);
        assert_memory_equal(&res, &before, sizeof res);
        if (n >= 0)
                assert_int_equal(n_entries(req->dir), n);
}

/* The SAN entries of gens as "DNS:x" / "IP:4" / "IP:16", joined by ','. */
static void sans_text(const GENERAL_NAMES *gens, char *out, size_t n)
{
        out[0] = '\0';
        for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
                const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
                size_t l = strlen(out);
                if (g->type == GEN_DNS)
                        snprintf(out + l, n - l, "%sDNS:%.*s", i ? "," : "", g->d.dNSName->length,
                                 (const char *)g->d.dNSName->data);
                else if (g->type == GEN_IPADD)
                        snprintf(out + l, n - l, "%sIP:%d", i ? "," : "", g->d.iPAddress->length);
                else
                        snprintf(out + l, n - l, "%s?", i ? "," : "");
        }
}

static const char WANT_SANS[] = "DNS:kw.example.com,DNS:*.kw.example.com,IP:4,IP:16";

static void check_cn(const X509_NAME *n, const char *want)
{
        char cn[128] = "";
        X509_NAME_get_text_by_NID((X509_NAME *)n, NID_commonName, cn, sizeof cn);
        assert_string_equal(cn, want);
}

/* cert.pem as made here for key, names NAMES, valid for days. */
static void check_made_cert(X509 *x, EVP_PKEY *key, int days)
{
        assert_int_equal(X509_get_version(x), X509_VERSION_3);
        assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), key), 1);
        assert_int_equal(X509_verify(x, key), 1);   /* self-signed, and the signature holds */
        assert_int_equal(X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)), 0);
        check_cn(X509_get_subject_name(x), "kw.example.com");

        GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
        assert_non_null(gens);
        char sans[512];
        sans_text(gens, sans, sizeof sans);
        assert_string_equal(sans, WANT_SANS);
        const GENERAL_NAME *ip4 = sk_GENERAL_NAME_value(gens, 2);
        assert_memory_equal(ip4->d.iPAddress->data, "\x0a\x00\x00\x05", 4);
        GENERAL_NAMES_free(gens);

        int crit = -1;
        BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
        assert_non_null(bc);
        assert_int_equal(bc->ca, 0);
        assert_int_equal(crit, 1);
        BASIC_CONSTRAINTS_free(bc);
        int rsa = EVP_PKEY_is_a(key, "RSA");
        assert_int_equal(X509_get_key_usage(x), rsa ? (KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT) : KU_DIGITAL_SIGNATURE);
        assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_SERVER);
        const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(x);
        const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(x);
        assert_non_null(ski);
        assert_non_null(aki);
        assert_int_equal(ASN1_OCTET_STRING_cmp(ski, aki), 0);

        BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
        assert_int_equal(BN_num_bits(serial), 128);
        BN_free(serial);

        int d = 0, s = 0;
        assert_int_equal(ASN1_TIME_diff(&d, &s, X509_get0_notBefore(x), X509_get0_notAfter(x)), 1);
        assert_int_equal(d, days);
        assert_int_equal(s, 0);
        assert_true(X509_cmp_current_time(X509_get0_notBefore(x)) < 0);
        assert_true(X509_cmp_current_time(X509_get0_notAfter(x)) > 0);
}

static void check_fingerprint(const char *fp, X509 *x)
{
        unsigned char md[32];
        unsigned int n = 0;
        assert_int_equal(X509_digest(x, EVP_sha256(), md, &n), 1);
        char want[KWP_TLS_FINGERPRINT_SIZE];
        for (unsigned i = 0; i < n; i++)
                snprintf(want + 3 * i, sizeof want - 3 * i, "%02X%s", md[i], i + 1 < n ? ":" : "");
        assert_string_equal(fp, want);
}

static int mode_of(const char *dir, const char *name)
{
        struct stat st;
        file_stat(dir, name, &st);
        return (int)(st.st_mode & 07777);
}

/* ---- self-signed ---- */

static void tls_ensure_self_signed_creates_key_and_cert(void **state)
{
        struct t *t = *state;
        struct kwp_tls_req req = req_for(t->dir, KWP_TLS_SELF_SIGNED);
        struct kwp_tls_result res;
        ensure_ok(&req, &res);
        assert_int_equal(res.key, KWP_TLS_CREATED);
        assert_int_equal(res.cert, KWP_TLS_CREATED);
        assert_int_equal(res.csr, KWP_TLS_UNUSED);
        assert_int_equal(res.names_covered, 1);
        assert_string_equal(res.warning, "");
        assert_int_equal(n_entries(t->dir), 2);   /* no temporary left */
        assert_int_equal(mode_of(t->dir, KWP_TLS_KEY_FILE), 0600);
        assert_int_equal(mode_of(t->dir, KWP_TLS_CERT_FILE), 0644);

        EVP_PKEY *key = load_key(t->dir);
        assert_true(EVP_PKEY_is_a(key, "EC"));
        char g[64];
        size_t gl = 0;
        assert_int_equal(EVP_PKEY_get_group_name(key, g, sizeof g, &gl), 1);
        assert_string_equal(g, "prime256v1");
        X509 *x = load_cert(t->dir);
        check_made_cert(x, key, KWP_TLS_DEFAULT_DAYS);
        assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
        check_fingerprint(res.fingerprint, x);
        X509_free(x);
        EVP_PKEY_free(key);
}

static void tls_ensure_key_types_and_days(void **state)
{
        struct t *t = *state;
        struct kwp_tls_req req = req_for(t->dir, KWP_TLS_SELF_SIGNED);
        req.key_type = KWP_TLS_KEY_RSA_2048;
        req.days = 30;
        struct kwp_tls_result res;
        ensure_ok(&req, &res);
        EVP_PKEY *key = load_key(t->dir);
        assert_true(EVP_PKEY_is_a(key, "RSA"));
        assert_int_equal(EVP_PKEY_get_bits(key), 2048);
        X509 *x = load_cert(t->dir);
        check_made_cert(x, key, 30);
        assert_int_equal(X509_get_signature_nid(x), NID_sha256WithRSAEncryption);
        X509_free(x);
        EVP_PKEY_free(key);

        req.dir = t->other;
        req.key_type = KWP_TLS_KEY_EC_P384;
        req.days = 0;
        ensure_ok(&req, &res);
        key = load_key(t->other);
        char g[64];
        size_t gl = 0;
        assert_int_equal(EVP_PKEY_get_group_name(key, g, sizeof g, &gl), 1);
        assert_string_equal(g, "secp384r1");
        x = load_cert(t->other);
        check_made_cert(x, key, KWP_TLS_DEFAULT_DAYS);
        assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA384);
        X509_free(x);
        EVP_PKEY_free(key);
}

static void tls_ensure_rerun_keeps_key_and_cert(void **state)
{
        struct t *t = *state;
        struct kwp_tls_req req = req_for(t->dir, KWP_TLS_SELF_SIGNED);
        struct kwp_tls_result first, again;
        ensure_ok(&req, &first);
        size_t kl = 0, cl = 0;
        char *key = slurp(t->dir, KWP_TLS_KEY_FILE, &kl), *cert = slurp(t->dir, KWP_TLS_CERT_FILE, &cl);
        struct stat ks, cs, ks2, cs2;
        file_stat(t->dir, KWP_TLS_KEY_FILE, &ks);
        file_stat(t->dir, KWP_TLS_CERT_FILE, &cs);

        req.days = 90;   /* a changed validity does not replace what is kept */
        ensure_ok(&req, &again);
        assert_int_equal(again.key, KWP_TLS_KEPT);
        assert_int_equal(again.cert, KWP_TLS_KEPT);
        assert_string_equal(again.fingerprint, first.fingerprint);
        assert_string_equal(again.warning, "");
        size_t kl2 = 0, cl2 = 0;
        char *key2 = slurp(t->dir, KWP_TLS_KEY_FILE, &kl2), *cert2 = slurp(t->dir, KWP_TLS_CERT_FILE, &cl2);
        assert_int_equal(kl, kl2);
        assert_int_equal(cl, cl2);
        assert_memory_equal(key, key2, kl);
        assert_memory_equal(cert, cert2, cl);
        file_stat(t->dir, KWP_TLS_KEY_FILE, &ks2);
        file_stat(t->dir, KWP_TLS_CERT_FILE, &cs2);
        assert_true(ks.st_ino == ks2.st_ino && cs.st_ino == cs2.st_ino);   /* not even rewritten */
        OPENSSL_cleanse(key, kl);
        OPENSSL_cleanse(key2, kl2);
        free(key);
        free(key2);
        free(cert);
        free(cert2);
}

/* A run killed after writing the key: the next one makes a certificate for
 * that key, and removes what the killed run left half-written. */
static void tls_ensure_existing_key_gets_cert(void **state)
{
        struct t *t = *state;
        struct kwp_tls_req req = req_for(t->dir, KWP_TLS_SELF_SIGNED);
        struct kwp_tls_result res;
        ensure_ok(&req, &res);
        assert_int_equal(unlink(path_of(t->dir, KWP_TLS_CERT_FILE)), 0);
        spit(t->dir, ".key.pem.tmp-0123456789abcdef", "-----BEGIN PRIVATE KEY-----\nMIG", 0600);
        spit(t->dir, ".cert.pem.tmp-0123456789abcdef", "", 0600);
        spit(t->dir, "unrelated", "kept", 0644);
        chmod(path_of(t->dir, KWP_TLS_KEY_FILE), 0644);

        ensure_ok(&req, &res);
        assert_int_equal(res.key, KWP_TLS_KEPT);
        assert_int_equal(res.cert, KWP_TLS_CREATED);
        assert_int_equal(n_entries(t->dir), 3);   /* key, cert, unrelated */
        assert_int_equal(mode_of(t->dir, KWP_TLS_KEY_FILE), 0600);
        EVP_PKEY *key = load_key(t->dir);
        X509 *x = load_cert(t->dir);
        check_made_cert(x, key, KWP_TLS_DEFAULT_DAYS);
        X509_free(x);
        EVP_PKEY_free(key);
}

/* Runs req in both directories, then puts the other's file in t->dir:
 * one made for another key. */
static void plant_foreign(struct t *t, struct kwp_tls_req req, const char *file)
{
        struct kwp_tls_result res;
        ensure_ok(&req, &res);
        req.dir = t->other;
        ensure_ok(&req, &res);
        char *other = slurp(t->other, file, NULL);
        spit(t->dir, file, other, 0644);
        free(other);
}

static void tls_ensure_cert_for_other_key_replaced(void **state)
{
        struct t *t = *state;
        struct kwp_tls_req req = req_for(t->dir, KWP_TLS_SELF_SIGNED);
        struct kwp_tls_result res;
        plant_foreign(t, req, KWP_TLS_CERT_FILE);
        ensure_ok(&req, &res);
        assert_int_equal(res.key, KWP_TLS_KEPT);
        assert_int_equal(res.cert, KWP_TLS_REPLACED);
        assert_non_null(strstr(res.warning, "another key"));
        EVP_PKEY *key = load_key(t->dir);
        X509 *x = load_cert(t->dir);
        check_made_cert(x, key, KWP_TLS_DEFAULT_DAYS);
        check_fingerprint(res.fingerprint, x);
        X509_free(x);
        EVP_PKEY_free(key);
}

static void tls_ensure_changed_names_replace_cert(void **state)
{
        struct t *t = *state;
        struct kwp_tls_req req = req_for(t->dir, KWP_TLS_SELF_SIGNED);
        struct kwp_tls_result res;
        ensure_ok(&req, &res);
        const char *fewer[] = { "kw.example.com", "10.0.0.5" };
        req.names = fewer;
        req.n_names = 2;
        ensure_ok(&req, &res);   /* a self-signed one names exactly the names */
        assert_int_equal(res.cert, KWP_TLS_REPLACED);
        assert_non_null(strstr(res.warning, "requested names"));
        X509 *x = load_cert(t->dir);
        GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
        char sans[256];
        sans_text(gens, sans, sizeof sans);
        assert_string_equal(sans, "DNS:kw.example.com,IP:4");
        GENERAL_NAMES_free(gens);
        X509_free(x);
}

static void tls_ensure_existing_key_refused(void **state)
{
        struct t *t = *state;
        struct kwp_tls_req req = req_for(t->dir, KWP_TLS_SELF_SIGNED);
        struct kwp_tls_result res;
        ensure_ok(&req, &res);
        size_t kl = 0;
        char *key = slurp(t->dir, KWP_TLS_KEY_FILE, &kl);

        /* another type than asked: never replaced */
        req.key_type = KWP_TLS_KEY_RSA_2048;
        ensure_fails(&req, KW_ERR_EXISTS, "not the RSA 2048 asked for: not overwritten");
        size_t kl2 = 0;
        char *key2 = slurp(t->dir, KWP_TLS_KEY_FILE, &kl2);
        assert_int_equal(kl, kl2);
        assert_memory_equal(key, key2, kl);
        OPENSSL_cleanse(key, kl);
        OPENSSL_cleanse(key2, kl2);
        free(key);
        free(key2);

        /* not a key, encrypted, a link, a directory */
        req.key_type = KWP_TLS_KEY_EC_P256;
        spit(t->dir, KWP_TLS_KEY_FILE, "not a key\n", 0600);
        ensure_fails(&req, KW_ERR_EXISTS, "key.pem holds no private key (PEM");
        spit(t->dir, KWP_TLS_KEY_FILE, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0600);
        ensure_fails(&req, KW_ERR_EXISTS, "holds no private key OpenSSL can read: not overwritten");
        EVP_PKEY *k = ec_key();
        BIO *b = BIO_new(BIO_s_mem());
        assert_int_equal(PEM_write_bio_PKCS8PrivateKey(b, k, EVP_aes_256_cbc(), NULL, 0, NULL, (void *)"pass"), 1);
        char *p = NULL;
        long n = BIO_get_mem_data(b, &p);
        char *enc = strndup(p, (size_t)n);
        spit(t->dir, KWP_TLS_KEY_FILE, enc, 0600);
        ensure_fails(&req, KW_ERR_EXISTS, "is encrypted");
        free(enc);
        BIO_free(b);
        EVP_PKEY_free(k);
        unlink(path_of(t->dir, KWP_TLS_KEY_FILE));
        assert_int_equal(symlink("/etc/hostname", path_of(t->dir, KWP_TLS_KEY_FILE)), 0);
        ensure_fails(&req, KW_ERR_EXISTS, "is a symbolic link");
        unlink(path_of(t->dir, KWP_TLS_KEY_FILE));
        assert_int_equal(mkdir(path_of(t->dir, KWP_TLS_KEY_FILE), 0700), 0);
        ensure_fails(&req, KW_ERR_EXISTS, "not a regular file");
}

static void tls_ensure_io_failure_leaves_nothing(void **state)
{
        struct t *t = *state;
        struct kwp_tls_req req = req_for(t->dir, KWP_TLS_SELF_SIGNED);
        fault_set("write", 1, ENOSPC);
        ensure_fails(&req, KW_ERR_IO, "cannot write");
        detail_says("/.key.pem.tmp-");
        detail_says("No space left on device");
        fault_set("fsync", 1, EIO);
        ensure_fails(&req, KW_ERR_IO, "Input/output error");
        fault_set("renameat2", 1, EXDEV);
        ensure_fails(&req, KW_ERR_IO, "cannot rename");
        assert_int_equal(n_entries(t->dir), 0);   /* the temporaries went too */
        /* the certificate's write fails: the key stays, the next run makes the certificate */
        fault_set("renameat2", 2, EIO);
        struct kwp_tls_result res;
        assert_int_equal(kwp_tls_ensure(&req, &res).code, KW_ERR_IO);
        detail_says("cert.pem");
        assert_int_equal(n_entries(t->dir), 1);
        fault_set(NULL, 0, 0);
        ensure_ok(&req, &res);
        assert_int_equal(res.key, KWP_TLS_KEPT);
        assert_int_equal(res.cert, KWP_TLS_CREATED);
}

/* Killed after key.pem's rename, before the directory's fsync: the next run
 * takes that key. */
static void tls_ensure_directory_sync_failure_resumes(void **state)
{
        struct t *t = *state;
        struct kwp_tls_req req = req_for(t->dir, KWP_TLS_SELF_SIGNED);
        struct kwp_tls_result res;
        fault_set("fsync", 2, EIO);
        assert_int_equal(kwp_tls_ensure(&req, &res).code, KW_ERR_IO);
        detail_says("cannot sync the directory");
        assert_int_equal(n_entries(t->dir), 1);
        EVP_PKEY *key = load_key(t->dir);
        fault_set(NULL, 0, 0);
        ensure_ok(&req, &res);
        assert_int_equal(res.key, KWP_TLS_KEPT);
        X509 *x = load_cert(t->dir);
        assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), key), 1);
        X509_free(x);
        EVP_PKEY_free(key);
}

/* key.pem appears between the look and the rename: not overwritten. */
static void tls_ensure_key_appearing_meanwhile_kept(void **state)
{
        struct t *t = *state;
        struct kwp_tls_req req = req_for(t->dir, KWP_TLS_SELF_SIGNED);
        struct kwp_tls_result res;
        fault_set("renameat2", 1, EEXIST);
        assert_int_equal(kwp_tls_ensure(&req, &res).code, KW_ERR_EXISTS);
        detail_says("key.pem appeared while it was being made: not overwritten");
        char *theirs = slurp(t->dir, KWP_TLS_KEY_FILE, NULL);
        assert_string_equal(theirs, "theirs\n");
        free(theirs);
        assert_int_equal(n_entries(t->dir), 1);
}

/* ---- csr ---- */

static void tls_ensure_csr_writes_request_and_placeholder(void **state)
{
        struct t *t = *state;
        struct kwp_tls_req req = req_for(t->dir, KWP_TLS_CSR);
        req.key_type = KWP_TLS_KEY_RSA_2048;
        struct kwp_tls_result res;
        ensure_ok(&req, &res);
        assert_int_equal(res.key, KWP_TLS_CREATED);
        assert_int_equal(res.cert, KWP_TLS_CREATED);
        assert_int_equal(res.csr, KWP_TLS_CREATED);
        assert_int_equal(n_entries(t->dir), 3);
        assert_int_equal(mode_of(t->dir, KWP_TLS_CSR_FILE), 0644);

        EVP_PKEY *key = load_key(t->dir);
        X509_REQ *q = load_csr(t->dir);
        assert_int_equal(EVP_PKEY_eq(X509_REQ_get0_pubkey(q), key), 1);
        assert_int_equal(X509_REQ_verify(q, X509_REQ_get0_pubkey(q)), 1);
        check_cn(X509_REQ_get_subject_name(q), "kw.example.com");
        STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(q);
        assert_non_null(exts);
        int at = X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1);
        assert_true(at >= 0);
        GENERAL_NAMES *gens = X509V3_EXT_d2i(sk_X509_EXTENSION_value(exts, at));
        char sans[512];
        sans_text(gens, sans, sizeof sans);
        assert_string_equal(sans, WANT_SANS);
        GENERAL_NAMES_free(gens);
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
        X509 *x = load_cert(t->dir);   /* served until the signed one comes */
        check_made_cert(x, key, KWP_TLS_DEFAULT_DAYS);
        X509_free(x);

        /* the customer's CA signs it (adding a name of its own), and the
         * customer installs it with the CA: later runs keep it */
        EVP_PKEY *ca_key = ec_key();
        struct spec ca_spec = { .cn = "Customer CA", .bc = "critical,CA:TRUE", .ku = "critical,keyCertSign" };
        X509 *ca = cert_new(ca_key, NULL, NULL, &ca_spec);
        struct spec leaf_spec = {
                .cn = "kw.example.com",
                .san = "DNS:kw.example.com,DNS:*.kw.example.com,IP:10.0.0.5,IP:2001:db8::5,DNS:extra.example.com",
                .eku = "serverAuth",
        };
        X509 *leaf = cert_new(X509_REQ_get0_pubkey(q), ca, ca_key, &leaf_spec);
        char *signed_pem = cert_pem(leaf, ca);
        spit(t->dir, KWP_TLS_CERT_FILE, signed_pem, 0644);
        size_t kl = 0;
        char *csr = slurp(t->dir, KWP_TLS_CSR_FILE, &kl);
        ensure_ok(&req, &res);
        assert_int_equal(res.key, KWP_TLS_KEPT);
        assert_int_equal(res.csr, KWP_TLS_KEPT);
        assert_int_equal(res.cert, KWP_TLS_KEPT);
        check_fingerprint(res.fingerprint, leaf);
        char *after = slurp(t->dir, KWP_TLS_CERT_FILE, NULL);
        assert_string_equal(after, signed_pem);
        char *csr2 = slurp(t->dir, KWP_TLS_CSR_FILE, NULL);
        assert_memory_equal(csr, csr2, kl);

        free(csr);
        free(csr2);
        free(after);
        free(signed_pem);
        X509_free(leaf);
        X509_free(ca);
        EVP_PKEY_free(ca_key);
        X509_REQ_free(q);
        EVP_PKEY_free(key);
}

static void tls_ensure_csr_for_other_key_replaced(void **state)
{
        struct t *t = *state;
        struct kwp_tls_req req = req_for(t->dir, KWP_TLS_CSR);
        struct kwp_tls_result res;
        plant_foreign(t, req, KWP_TLS_CSR_FILE);
        ensure_ok(&req, &res);
        assert_int_equal(res.csr, KWP_TLS_REPLACED);
        assert_int_equal(res.cert, KWP_TLS_KEPT);
        assert_non_null(strstr(res.warning, "csr.pem replaced: it is for another key"));
        EVP_PKEY *key = load_key(t->dir);
        X509_REQ *q = load_csr(t->dir);
        assert_int_equal(EVP_PKEY_eq(X509_REQ_get0_pubkey(q), key), 1);
        X509_REQ_free(q);
        EVP_PKEY_free(key);
}

/* ---- supplied ---- */

struct supplied {
        EVP_PKEY *ca_key, *key;
        X509 *ca, *leaf;
        char *chain, *key_pem;
};

static void supplied_make(struct supplied *s, const struct spec *leaf_spec)
{
        s->ca_key = ec_key();
        s->key = ec_key();
        struct spec ca_spec = { .cn = "Customer CA", .bc = "critical,CA:TRUE", .ku = "critical,keyCertSign" };
        s->ca = cert_new(s->ca_key, NULL, NULL, &ca_spec);
        s->leaf = cert_new(s->key, s->ca, s->ca_key, leaf_spec);
        s->chain = cert_pem(s->leaf, s->ca);
        s->key_pem = key_pem(s->key);
}

static void supplied_free(struct supplied *s)
{
        OPENSSL_cleanse(s->key_pem, strlen(s->key_pem));
        free(s->key_pem);
        free(s->chain);
        X509_free(s->leaf);
        X509_free(s->ca);
        EVP_PKEY_free(s->key);
        EVP_PKEY_free(s->ca_key);
}

static const struct spec GOOD_LEAF = {
        .cn = "kw.example.com",
        .san = "DNS:kw.example.com,DNS:*.kw.example.com,IP:10.0.0.5,IP:2001:db8::5",
        .eku = "serverAuth,clientAuth",
        .ku = "critical,digitalSignature",
};

static struct kwp_tls_req supplied_req(const char *dir, const struct supplied *s)
{
        struct kwp_tls_req req = req_for(dir, KWP_TLS_SUPPLIED);
        req.chain_pem = s->chain;
        req.chain_len = strlen(s->chain);
        req.key_pem = s->key_pem;
        req.key_len = strlen(s->key_pem);
        return req;
}

static void tls_ensure_supplied_installs_chain_and_key(void **state)
{
        struct t *t = *state;
        struct supplied s;
        supplied_make(&s, &GOOD_LEAF);
        struct kwp_tls_req req = supplied_req(t->dir, &s);
        struct kwp_tls_result res;
        ensure_ok(&req, &res);
        assert_int_equal(res.key, KWP_TLS_CREATED);
        assert_int_equal(res.cert, KWP_TLS_CREATED);
        assert_int_equal(res.csr, KWP_TLS_UNUSED);
        assert_int_equal(res.names_covered, 1);
        assert_string_equal(res.warning, "");
        check_fingerprint(res.fingerprint, s.leaf);
        assert_int_equal(mode_of(t->dir, KWP_TLS_KEY_FILE), 0600);
        EVP_PKEY *key = load_key(t->dir);
        assert_int_equal(EVP_PKEY_eq(key, s.key), 1);
        EVP_PKEY_free(key);
        char *cert = slurp(t->dir, KWP_TLS_CERT_FILE, NULL);
        assert_string_equal(cert, s.chain);   /* leaf, then the CA */
        free(cert);

        /* again: nothing rewritten */
        struct stat cs, cs2;
        file_stat(t->dir, KWP_TLS_CERT_FILE, &cs);
        ensure_ok(&req, &res);
        assert_int_equal(res.key, KWP_TLS_KEPT);
        assert_int_equal(res.cert, KWP_TLS_KEPT);
        file_stat(t->dir, KWP_TLS_CERT_FILE, &cs2);
        assert_true(cs.st_ino == cs2.st_ino);

        /* only the leaf, with text around it: re-encoded, replaces the chain */
        char *leaf_only = cert_pem(s.leaf, NULL);
        char *with_text = NULL;
        assert_true(asprintf(&with_text, "subject=CN = kw.example.com\n%s\n", leaf_only) > 0);
        req.chain_pem = with_text;
        req.chain_len = strlen(with_text);
        ensure_ok(&req, &res);
        assert_int_equal(res.cert, KWP_TLS_REPLACED);
        cert = slurp(t->dir, KWP_TLS_CERT_FILE, NULL);
        assert_string_equal(cert, leaf_only);
        free(cert);
        free(with_text);
        free(leaf_only);
        supplied_free(&s);
}

static void tls_ensure_supplied_names_not_covered_warns(void **state)
{
        struct t *t = *state;
        struct supplied s;
        struct spec spec = GOOD_LEAF;
        spec.san = "DNS:*.kw.example.com,IP:10.0.0.5";
        spec.eku = NULL;   /* no EKU at all is fine */
        supplied_make(&s, &spec);
        const char *names[] = { "a.kw.example.com", "kw.example.com", "10.0.0.5", "10.0.0.6", "*.kw.example.com",
                                "a.b.kw.example.com" };
        struct kwp_tls_req req = supplied_req(t->dir, &s);
        req.names = names;
        req.n_names = 6;
        struct kwp_tls_result res;
        ensure_ok(&req, &res);
        assert_int_equal(res.names_covered, 0);
        assert_string_equal(res.warning, "the certificate's subjectAltNames do not cover kw.example.com, 10.0.0.6, "
                                         "a.b.kw.example.com");
        supplied_free(&s);
}

static void tls_ensure_supplied_warnings(void **state)
{
        struct t *t = *state;
        struct supplied s;
        struct spec spec = GOOD_LEAF;
        spec.na_secs = 10L * 86400 + 3600;
        supplied_make(&s, &spec);
        free(s.chain);
        EVP_PKEY *stray_key = ec_key();
        struct spec stray_spec = { .cn = "stray" };
        X509 *stray = cert_new(stray_key, NULL, NULL, &stray_spec);
        s.chain = cert_pem(s.leaf, stray);
        struct kwp_tls_req req = supplied_req(t->dir, &s);
        struct kwp_tls_result res;
        ensure_ok(&req, &res);
        assert_non_null(strstr(res.warning, "in 10 days"));
        assert_non_null(strstr(res.warning, "the chain is not in order: certificate 2 did not issue certificate 1"));
        X509_free(stray);
        EVP_PKEY_free(stray_key);
        supplied_free(&s);
}

static void tls_ensure_supplied_mismatched_key_refused(void **state)
{
        struct t *t = *state;
        struct supplied s;
        supplied_make(&s, &GOOD_LEAF);
        EVP_PKEY *other = ec_key();
        char *other_pem = key_pem(other);
        struct kwp_tls_req req = supplied_req(t->dir, &s);
        req.key_pem = other_pem;
        req.key_len = strlen(other_pem);
        ensure_fails(&req, KW_ERR_BAD_FIELD, "the certificate's key does not match the private key");
        assert_int_equal(n_entries(t->dir), 0);

        /* the chain with the CA first */
        free(s.chain);
        s.chain = cert_pem(s.ca, s.leaf);
        req = supplied_req(t->dir, &s);
        ensure_fails(&req, KW_ERR_BAD_FIELD, "does not match the private key (is the leaf not first");

        /* key.pem holds another key: never overwritten */
        free(s.chain);
        s.chain = cert_pem(s.leaf, s.ca);
        req = supplied_req(t->dir, &s);
        spit(t->dir, KWP_TLS_KEY_FILE, other_pem, 0600);
        ensure_fails(&req, KW_ERR_EXISTS, "holds another key than the one supplied: not overwritten");
        char *kept = slurp(t->dir, KWP_TLS_KEY_FILE, NULL);
        assert_string_equal(kept, other_pem);
        free(kept);

        OPENSSL_cleanse(other_pem, strlen(other_pem));
        free(other_pem);
        EVP_PKEY_free(other);
        supplied_free(&s);
}

/* The chain of a leaf made from GOOD_LEAF with changes is refused with want. */
static void supplied_refused(struct t *t, const struct spec *spec, const char *want)
{
        struct supplied s;
        supplied_make(&s, spec);
        struct kwp_tls_req req = supplied_req(t->dir, &s);
        ensure_fails(&req, KW_ERR_BAD_FIELD, want);
        supplied_free(&s);
}

static void tls_ensure_supplied_expired_refused(void **state)
{
        struct spec spec = GOOD_LEAF;
        spec.nb = "20240101000000Z";
        spec.na = "20250101000000Z";
        supplied_refused(*state, &spec, "the certificate expired on 2025-01-01 00:00:00 UTC");
}

static void tls_ensure_supplied_not_yet_valid_refused(void **state)
{
        struct spec spec = GOOD_LEAF;
        spec.nb = "20990101000000Z";
        spec.na = "21000101000000Z";
        supplied_refused(*state, &spec, "the certificate is not valid before 2099-01-01 00:00:00 UTC");
}

static void tls_ensure_supplied_usage_refused(void **state)
{
        struct spec spec = GOOD_LEAF;
        spec.eku = "clientAuth";
        supplied_refused(*state, &spec, "extendedKeyUsage does not include serverAuth");
        spec = GOOD_LEAF;
        spec.ku = "critical,keyEncipherment";
        supplied_refused(*state, &spec, "keyUsage does not include digitalSignature");
}

static void tls_ensure_supplied_pem_refused(void **state)
{
        struct t *t = *state;
        struct supplied s;
        supplied_make(&s, &GOOD_LEAF);
        struct kwp_tls_req req = supplied_req(t->dir, &s);
        char *both = NULL;

        /* the key pasted into the chain: never written to cert.pem */
        assert_true(asprintf(&both, "%s%s", s.chain, s.key_pem) > 0);
        req.chain_pem = both;
        req.chain_len = strlen(both);
        ensure_fails(&req, KW_ERR_BAD_FIELD, "the certificate chain holds a \"PRIVATE KEY\" block");
        free(both);
        req = supplied_req(t->dir, &s);
        req.chain_pem = "no PEM here";
        req.chain_len = 11;
        ensure_fails(&req, KW_ERR_BAD_FIELD, "holds no certificate");
        req.chain_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        req.chain_len = strlen(req.chain_pem);
        ensure_fails(&req, KW_ERR_BAD_FIELD, "certificate 1 of the chain cannot be read");

        /* two keys; a certificate in the key; an encrypted key; a weak one */
        req = supplied_req(t->dir, &s);
        assert_true(asprintf(&both, "%s%s", s.key_pem, s.key_pem) > 0);
        req.key_pem = both;
        req.key_len = strlen(both);
        ensure_fails(&req, KW_ERR_BAD_FIELD, "holds 2 private keys");
        free(both);
        assert_true(asprintf(&both, "%s%s", s.key_pem, s.chain) > 0);
        req.key_pem = both;
        req.key_len = strlen(both);
        ensure_fails(&req, KW_ERR_BAD_FIELD, "the supplied private key holds a \"CERTIFICATE\" block");
        free(both);
        BIO *b = BIO_new(BIO_s_mem());
        assert_int_equal(PEM_write_bio_PKCS8PrivateKey(b, s.key, EVP_aes_256_cbc(), NULL, 0, NULL, (void *)"pass"), 1);
        char *p = NULL;
        long n = BIO_get_mem_data(b, &p);
        req.key_pem = p;
        req.key_len = (size_t)n;
        ensure_fails(&req, KW_ERR_BAD_FIELD, "is encrypted");
        BIO_free(b);
        b = BIO_new(BIO_s_mem());
        assert_int_equal(PEM_write_bio_PrivateKey_traditional(b, s.key, EVP_aes_256_cbc(), NULL, 0, NULL,
                                                              (void *)"pass"), 1);
        n = BIO_get_mem_data(b, &p);
        req.key_pem = p;
        req.key_len = (size_t)n;
        ensure_fails(&req, KW_ERR_BAD_FIELD, "is encrypted");
        BIO_free(b);
        EVP_PKEY *weak = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
        assert_non_null(weak);
        char *weak_pem = key_pem(weak);
        req.key_pem = weak_pem;
        req.key_len = strlen(weak_pem);
        ensure_fails(&req, KW_ERR_BAD_FIELD, "is RSA 1024: at least 2048 bits");
        free(weak_pem);
        EVP_PKEY_free(weak);
        EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        char *ed_pem = key_pem(ed);
        req.key_pem = ed_pem;
        req.key_len = strlen(ed_pem);
        ensure_fails(&req, KW_ERR_BAD_FIELD, "is ED25519: RSA or EC");
        free(ed_pem);
        EVP_PKEY_free(ed);

        /* an EC key as `openssl ecparam -genkey` writes it is taken */
        b = BIO_new(BIO_s_mem());
        BIO_puts(b, "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n");
        assert_int_equal(PEM_write_bio_PrivateKey_traditional(b, s.key, NULL, NULL, 0, NULL, NULL), 1);
        n = BIO_get_mem_data(b, &p);
        req = supplied_req(t->dir, &s);
        req.key_pem = p;
        req.key_len = (size_t)n;
        struct kwp_tls_result res;
        ensure_ok(&req, &res);
        EVP_PKEY *key = load_key(t->dir);   /* written as PKCS#8 */
        assert_int_equal(EVP_PKEY_eq(key, s.key), 1);
        EVP_PKEY_free(key);
        BIO_free(b);
        supplied_free(&s);
}

/* ---- the request ---- */

static void tls_ensure_bad_request_refused(void **state)
{
        struct t *t = *state;
        struct kwp_tls_req req = req_for(t->dir, KWP_TLS_SELF_SIGNED);
        req.days = KWP_TLS_MAX_DAYS + 1;
        ensure_fails(&req, KW_ERR_BAD_FIELD, "valid for 3651 days");
        req = req_for(t->dir, KWP_TLS_SELF_SIGNED);
        req.key_type = (enum kwp_tls_key_type)9;
        ensure_fails(&req, KW_ERR_BAD_FIELD, "key type 9");
        req = req_for(t->dir, (enum kwp_tls_mode)0);
        ensure_fails(&req, KW_ERR_BAD_FIELD, "TLS mode 0");
        req = req_for(t->dir, KWP_TLS_CSR);
        req.chain_pem = "x";
        req.chain_len = 1;
        ensure_fails(&req, KW_ERR_BAD_FIELD, "but the TLS mode is csr");
        req = req_for(t->dir, KWP_TLS_SUPPLIED);
        ensure_fails(&req, KW_ERR_BAD_FIELD, "needs a certificate chain and a private key");
        req.chain_pem = req.key_pem = "x";
        req.chain_len = KWP_TLS_PEM_MAX + 1;
        req.key_len = 1;
        ensure_fails(&req, KW_ERR_TOO_LARGE, "larger than");
        req = req_for(t->dir, KWP_TLS_SELF_SIGNED);
        req.n_names = 0;
        ensure_fails(&req, KW_ERR_BAD_FIELD, "no TLS name given");
        req = req_for("/nonexistent/kw-tls", KWP_TLS_SELF_SIGNED);
        ensure_fails(&req, KW_ERR_IO, "cannot open the TLS directory /nonexistent/kw-tls");
        req = req_for(NULL, KWP_TLS_SELF_SIGNED);
        ensure_fails(&req, KW_ERR_BAD_FIELD, "no TLS directory given");
}

/* ---- names ---- */

static void check_names_refused(const char *name, const char *want)
{
        const char *names[] = { "ok.example.com", name };
        kw_result r = kwp_tls_check_names(names, 2);
        if (r.code != KW_ERR_BAD_FIELD)
                fail_msg("\"%s\" was not refused", name);
        detail_says(want);
}

static void tls_check_names_refused(void **state)
{
        (void)state;
        char long_label[80], long_name[300];
        memset(long_label, 'a', 64);
        snprintf(long_label + 64, sizeof long_label - 64, ".example.com");
        for (int i = 0; i < 63; i++)
                memcpy(long_name + 4 * i, "abc.", 4);
        snprintf(long_name + 252, sizeof long_name - 252, "ab");   /* 254 characters */
        check_names_refused(long_name, "is longer than 253 characters");
        check_names_refused(long_label, "has a label longer than 63 characters");
        check_names_refused("", "TLS name 2 is empty");
        check_names_refused("-kw.example.com", "\"-kw.example.com\" has a label that starts or ends with '-'");
        check_names_refused("kw-.example.com", "starts or ends with '-'");
        check_names_refused("kw..example.com", "\"kw..example.com\" has an empty label");
        check_names_refused(".example.com", "has an empty label");
        check_names_refused("kw.example.com.", "ends with a dot");
        check_names_refused("kw_1.example.com", "holds a character other than");
        check_names_refused("kw example.com", "holds a character other than");
        check_names_refused("k\xc3\xa9.example.com", "\"k??.example.com\" holds a character other than");
        check_names_refused("kw.example.com\n", "\"kw.example.com?\" holds a character");
        check_names_refused("a.*.example.com", "'*' elsewhere than as the whole first label");
        check_names_refused("*kw.example.com", "'*' elsewhere than as the whole first label");
        check_names_refused("*.com", "a wildcard over fewer than two labels");
        check_names_refused("*", "a wildcard over fewer than two labels");
        check_names_refused("10.0.0.256", "\"10.0.0.256\" is not an IPv4 address");
        check_names_refused("10.0.0", "is not an IPv4 address");
        check_names_refused("010.0.0.1", "is not an IPv4 address");
        check_names_refused("host.123", "ends in a label of digits only");
        check_names_refused("fe80::1%eth0", "\"fe80::1%eth0\" is not an IPv6 address");
        check_names_refused("[2001:db8::1]", "is not an IPv6 address");
        check_names_refused("2001:db8::g", "is not an IPv6 address");
        check_names_refused("OK.Example.com", "\"OK.Example.com\" is given twice (as \"ok.example.com\" before)");
        const char *dup_ip[] = { "::1", "0:0::1" };
        assert_int_equal(kwp_tls_check_names(dup_ip, 2).code, KW_ERR_BAD_FIELD);
        detail_says("\"0:0::1\" is given twice");

        assert_int_equal(kwp_tls_check_names(NULL, 0).code, KW_ERR_BAD_FIELD);
        detail_says("no TLS name given");
        const char *many[KWP_TLS_MAX_NAMES + 1];
        char bufs[KWP_TLS_MAX_NAMES + 1][32];
        for (int i = 0; i <= KWP_TLS_MAX_NAMES; i++) {
                snprintf(bufs[i], sizeof bufs[i], "h%d.example.com", i);
                many[i] = bufs[i];
        }
        assert_int_equal(kwp_tls_check_names(many, KWP_TLS_MAX_NAMES).code, 0);
        assert_int_equal(kwp_tls_check_names(many, KWP_TLS_MAX_NAMES + 1).code, KW_ERR_BAD_FIELD);
        detail_says("33 TLS names given: at most 32");

        /* taken: long names, single labels, digits first, both address families */
        long_name[253] = '\0';                                      /* 253 characters */
        snprintf(long_label + 63, sizeof long_label - 63, ".example.com");   /* a label of 63 */
        const char *good[] = { long_name, long_label, "keyward", "1kw.example.com", "*.kw.example.com",
                               "10.0.0.5", "2001:DB8::5", "::ffff:10.0.0.5", "xn--bcher-kva.example", "a-b.c0" };
        assert_int_equal(kwp_tls_check_names(good, sizeof good / sizeof good[0]).code, 0);
}

static void tls_ensure_long_first_name_no_cn(void **state)
{
        struct t *t = *state;
        char name[100];
        memset(name, 'c', 60);
        snprintf(name + 60, sizeof name - 60, ".example.com");   /* 72 > 64 */
        const char *names[] = { name, "kw.example.com" };
        struct kwp_tls_req req = req_for(t->dir, KWP_TLS_SELF_SIGNED);
        req.names = names;
        req.n_names = 2;
        struct kwp_tls_result res;
        ensure_ok(&req, &res);
        X509 *x = load_cert(t->dir);
        assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(x)), 0);
        int crit = -1;
        GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
        assert_int_equal(crit, 1);
        GENERAL_NAMES_free(gens);
        X509_free(x);
        ensure_ok(&req, &res);
        assert_int_equal(res.cert, KWP_TLS_KEPT);
}

static void tls_parse_names_and_types(void **state)
{
        (void)state;
        enum kwp_tls_mode m = 0;
        assert_int_equal(kwp_tls_mode_parse("self-signed", &m).code, 0);
        assert_int_equal(m, KWP_TLS_SELF_SIGNED);
        assert_int_equal(kwp_tls_mode_parse("csr", &m).code, 0);
        assert_int_equal(m, KWP_TLS_CSR);
        assert_int_equal(kwp_tls_mode_parse("supplied", &m).code, 0);
        assert_int_equal(m, KWP_TLS_SUPPLIED);
        assert_int_equal(kwp_tls_mode_parse("acme", &m).code, KW_ERR_BAD_FIELD);
        detail_says("TLS mode \"acme\" is not one of");
        assert_int_equal(m, KWP_TLS_SUPPLIED);
        enum kwp_tls_key_type k = KWP_TLS_KEY_RSA_4096;
        assert_int_equal(kwp_tls_key_type_parse("ec-p256", &k).code, 0);
        assert_int_equal(k, KWP_TLS_KEY_EC_P256);
        assert_int_equal(kwp_tls_key_type_parse("rsa-3072", &k).code, 0);
        assert_int_equal(k, KWP_TLS_KEY_RSA_3072);
        assert_int_equal(kwp_tls_key_type_parse("RSA-3072", &k).code, KW_ERR_BAD_FIELD);
        assert_int_equal(k, KWP_TLS_KEY_RSA_3072);
        for (int i = KWP_TLS_KEY_EC_P256; i <= KWP_TLS_KEY_RSA_4096; i++) {
                assert_int_equal(kwp_tls_key_type_parse(kwp_tls_key_type_name((enum kwp_tls_key_type)i), &k).code, 0);
                assert_int_equal(k, i);
        }
        assert_string_equal(kwp_tls_mode_name(KWP_TLS_CSR), "csr");
        assert_string_equal(kwp_tls_mode_name((enum kwp_tls_mode)7), "?");
        assert_string_equal(kwp_tls_key_type_name((enum kwp_tls_key_type)7), "?");
        assert_string_equal(kwp_tls_action_name(KWP_TLS_REPLACED), "replaced");
}

/* ---- fingerprint ---- */

/* `openssl req -x509 -newkey ec ...`, and what `openssl x509 -fingerprint -sha256` printed for it */
static const char FIXED_PEM[] =
        "-----BEGIN CERTIFICATE-----\n"
        "MIIBkDCCATWgAwIBAgIUYnE1pQ6wI/UYU7CPLQrTVjiH1XUwCgYIKoZIzj0EAwIw\n"
        "HTEbMBkGA1UEAwwSZml4ZWQua2V5d2FyZC50ZXN0MB4XDTI2MTIwMzA2NTUzOVoX\n"
        "DTM2MTEzMDA2NTUzOVowHTEbMBkGA1UEAwwSZml4ZWQua2V5d2FyZC50ZXN0MFkw\n"
        "EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEdB4wBbVNn0YujqIuRAU9DHlhuBTTExXc\n"
        "izxoToyAJW3Yb6ftBrSoI6RYbW5k2UHkNF5TSof5iTLfZFxLeXHjPqNTMFEwHQYD\n"
        "VR0OBBYEFEtQeDu8lxP0ZfRYtwcVOlPiv5vCMB8GA1UdIwQYMBaAFEtQeDu8lxP0\n"
        "ZfRYtwcVOlPiv5vCMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIh\n"
        "AJEnxCrmgxbQx1O2XYtLBT7JDG3AuxunN6xCsNVLaGu8AiEAvbGTIQK6s+EtvRBq\n"
        "K54AfyQM3M46/5leg4tPFP+ofis=\n"
        "-----END CERTIFICATE-----\n";
static const char FIXED_FP[] =
        "06:8D:C0:69:4F:F2:4B:0B:92:15:84:87:2B:3B:63:21:59:A0:FE:DE:1F:6F:DD:82:2A:2A:1A:08:05:49:82:5D";

static void tls_fingerprint_known_cert(void **state)
{
        (void)state;
        char fp[KWP_TLS_FINGERPRINT_SIZE];
        assert_int_equal(kwp_tls_fingerprint(FIXED_PEM, strlen(FIXED_PEM), fp).code, 0);
        assert_string_equal(fp, FIXED_FP);
        assert_int_equal(strlen(fp), KWP_TLS_FINGERPRINT_SIZE - 1);
        BIO *b = BIO_new_mem_buf(FIXED_PEM, -1);
        X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
        check_fingerprint(fp, x);
        X509_free(x);
        BIO_free(b);
}

static void tls_fingerprint_first_cert_of_file(void **state)
{
        struct t *t = *state;
        struct supplied s;
        supplied_make(&s, &GOOD_LEAF);
        struct kwp_tls_req req = supplied_req(t->dir, &s);
        struct kwp_tls_result res;
        ensure_ok(&req, &res);
        size_t n = 0;
        char *cert = slurp(t->dir, KWP_TLS_CERT_FILE, &n);
        char fp[KWP_TLS_FINGERPRINT_SIZE];
        assert_int_equal(kwp_tls_fingerprint(cert, n, fp).code, 0);
        assert_string_equal(fp, res.fingerprint);
        check_fingerprint(fp, s.leaf);
        free(cert);
        supplied_free(&s);
}

static void tls_fingerprint_refused(void **state)
{
        (void)state;
        char fp[KWP_TLS_FINGERPRINT_SIZE] = "unchanged";
        assert_int_equal(kwp_tls_fingerprint("nothing", 7, fp).code, KW_ERR_BAD_FIELD);
        detail_says("no certificate");
        assert_int_equal(kwp_tls_fingerprint(FIXED_PEM, 40, fp).code, KW_ERR_BAD_FIELD);   /* truncated */
        assert_int_equal(kwp_tls_fingerprint(FIXED_PEM, KWP_TLS_PEM_MAX + 1, fp).code, KW_ERR_TOO_LARGE);
        assert_string_equal(fp, "unchanged");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        const struct CMUnitTest tests[] = {
                T(tls_ensure_self_signed_creates_key_and_cert),
                T(tls_ensure_key_types_and_days),
                T(tls_ensure_rerun_keeps_key_and_cert),
                T(tls_ensure_existing_key_gets_cert),
                T(tls_ensure_cert_for_other_key_replaced),
                T(tls_ensure_changed_names_replace_cert),
                T(tls_ensure_existing_key_refused),
                T(tls_ensure_io_failure_leaves_nothing),
                T(tls_ensure_directory_sync_failure_resumes),
                T(tls_ensure_key_appearing_meanwhile_kept),
                T(tls_ensure_csr_writes_request_and_placeholder),
                T(tls_ensure_csr_for_other_key_replaced),
                T(tls_ensure_supplied_installs_chain_and_key),
                T(tls_ensure_supplied_names_not_covered_warns),
                T(tls_ensure_supplied_warnings),
                T(tls_ensure_supplied_mismatched_key_refused),
                T(tls_ensure_supplied_expired_refused),
                T(tls_ensure_supplied_not_yet_valid_refused),
                T(tls_ensure_supplied_usage_refused),
                T(tls_ensure_supplied_pem_refused),
                T(tls_ensure_bad_request_refused),
                T(tls_ensure_long_first_name_no_cn),
                cmocka_unit_test(tls_check_names_refused),
                cmocka_unit_test(tls_parse_names_and_types),
                cmocka_unit_test(tls_fingerprint_known_cert),
                T(tls_fingerprint_first_cert_of_file),
                cmocka_unit_test(tls_fingerprint_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
