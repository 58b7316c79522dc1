/*
 * tls.c - the appliance's TLS key and certificate at first boot (tls.h).
 *
 * Layout: the names (validation, subjectAltName), the files (bounded
 * reads, atomic writes, stale temporaries), the key, what is made here
 * (certificate, request) and when an existing one fits, the supplied chain
 * and key, then the exported functions.  OpenSSL's errors become KW_ERR_*
 * here, with the first reason in the detail, and its queue is cleared.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/buffer.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "../server/common/buf.h"
#include "../server/common/readfile.h"
#include "../server/common/secret.h"
#include "tls.h"

#define FAIL(code, ...)                               \
        do {                                          \
                kw_err_set_detail(__VA_ARGS__);       \
                KW_BAIL(code);                        \
        } while (0)
#define BAD(...) FAIL(KW_ERR_BAD_FIELD, __VA_ARGS__)
/* An OpenSSL call failed: its first reason goes into the detail. */
#define OSSL_FAIL(code, what)                         \
        do {                                          \
                ossl_detail(what);                    \
                KW_BAIL(code);                        \
        } while (0)

#define CERT_MODE 0644
#define KEY_MODE 0600
#define TMP_INFIX ".tmp-"            /* temporaries: "." name TMP_INFIX 16 hex digits */
#define EXPIRY_WARN_DAYS 30
#define CN_MAX 64                    /* ub-common-name, RFC 5280 */
#define NEW_KEY_ADVICE ": not overwritten (move it away to make a new key)"
#define SUPPLIED_KEY_ADVICE ": not overwritten (move it away to install the supplied key)"

static void ossl_detail(const char *what)
{
        unsigned long e = ERR_peek_error();
        const char *why = e != 0 ? ERR_reason_error_string(e) : NULL;
        kw_err_set_detail("%s failed%s%s%s", what, why ? " (OpenSSL: " : "", why ? why : "", why ? ")" : "");
        ERR_clear_error();
}

/* ---- cleanup by scope ---- */

static void fd_closep(int *fd)
{
        if (*fd >= 0)
                close(*fd);
}
static void buf_freep(struct kw_buf *b) { kw_buf_free(b); }
static void bio_freep(BIO **p) { BIO_free(*p); }
static void pkey_freep(EVP_PKEY **p) { EVP_PKEY_free(*p); }
static void x509_freep(X509 **p) { X509_free(*p); }
static void req_freep(X509_REQ **p) { X509_REQ_free(*p); }
static void name_freep(X509_NAME **p) { X509_NAME_free(*p); }
static void ext_freep(X509_EXTENSION **p) { X509_EXTENSION_free(*p); }
static void gens_freep(GENERAL_NAMES **p) { GENERAL_NAMES_free(*p); }
static void chain_freep(STACK_OF(X509) **p) { sk_X509_pop_free(*p, X509_free); }
static void exts_freep(STACK_OF(X509_EXTENSION) **p) { sk_X509_EXTENSION_pop_free(*p, X509_EXTENSION_free); }
#define _cleanup_(f) __attribute__((cleanup(f)))

/* ---- tables ---- */

static const struct {
        const char *name;
        const char *alg;       /* OpenSSL's key type */
        const char *group;     /* EC: the group as OpenSSL names it */
        unsigned bits;
        const char *what;      /* for messages */
} KEY_TYPES[] = {
        [KWP_TLS_KEY_EC_P256] = { "ec-p256", "EC", "prime256v1", 256, "EC P-256" },
        [KWP_TLS_KEY_EC_P384] = { "ec-p384", "EC", "secp384r1", 384, "EC P-384" },
        [KWP_TLS_KEY_RSA_2048] = { "rsa-2048", "RSA", NULL, 2048, "RSA 2048" },
        [KWP_TLS_KEY_RSA_3072] = { "rsa-3072", "RSA", NULL, 3072, "RSA 3072" },
        [KWP_TLS_KEY_RSA_4096] = { "rsa-4096", "RSA", NULL, 4096, "RSA 4096" },
};
#define N_KEY_TYPES (sizeof KEY_TYPES / sizeof KEY_TYPES[0])

static const char *const MODES[] = {
        [KWP_TLS_SELF_SIGNED] = "self-signed",
        [KWP_TLS_CSR] = "csr",
        [KWP_TLS_SUPPLIED] = "supplied",
};
#define N_MODES (sizeof MODES / sizeof MODES[0])

static const char *const ACTIONS[] = {
        [KWP_TLS_UNUSED] = "unused",
        [KWP_TLS_KEPT] = "kept",
        [KWP_TLS_CREATED] = "created",
        [KWP_TLS_REPLACED] = "replaced",
};

/* The files a run writes: their stale temporaries are swept. */
static const char *const FILES[] = { KWP_TLS_KEY_FILE, KWP_TLS_CERT_FILE, KWP_TLS_CSR_FILE };

/* ---- names ---- */

enum name_kind { NAME_DNS, NAME_IP };

struct name {
        enum name_kind kind;
        char text[KWP_TLS_NAME_MAX + 1];   /* DNS: lower case; IP: as given */
        unsigned char ip[16];
        int ip_len;                        /* 4 or 16 */
};

struct names {
        struct name v[KWP_TLS_MAX_NAMES];
        size_t n;
};

/* s made fit to quote in a message: printable ASCII, at most 64 characters. */
static const char *shown(const char *s, char out[72])
{
        size_t i = 0;
        for (; i < 64 && s[i] != '\0'; i++) {
                unsigned char c = (unsigned char)s[i];
                out[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
        }
        snprintf(out + i, 72 - i, "%s", s[i] != '\0' ? "..." : "");
        return out;
}

static int is_alnum(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* NULL when s[0..len) is a DNS name we take (RFC 1123 labels, "*." first
 * allowed), else why not. */
static const char *dns_fault(const char *s, size_t len)
{
        if (s[len - 1] == '.')
                return "ends with a dot";
        size_t labels = 0, at = 0, last = 0, last_len = 0;
        for (;;) {
                size_t end = at;
                while (end < len && s[end] != '.')
                        end++;
                size_t l = end - at;
                const char *lab = s + at;
                if (l == 0)
                        return "has an empty label";
                if (l > 63)
                        return "has a label longer than 63 characters";
                if (l == 1 && lab[0] == '*') {
                        if (labels != 0)
                                return "has a '*' elsewhere than as the whole first label";
                } else {
                        for (size_t k = 0; k < l; k++) {
                                if (lab[k] == '*')
                                        return "has a '*' elsewhere than as the whole first label";
                                if (!is_alnum(lab[k]) && lab[k] != '-')
                                        return "holds a character other than letters, digits, '-' and '.'";
                        }
                        if (lab[0] == '-' || lab[l - 1] == '-')
                                return "has a label that starts or ends with '-'";
                }
                labels++;
                last = at;
                last_len = l;
                if (end == len)
                        break;
                at = end + 1;
        }
        if (s[0] == '*' && labels < 3)
                return "has a wildcard over fewer than two labels";
        size_t digits = 0;
        while (digits < last_len && s[last + digits] >= '0' && s[last + digits] <= '9')
                digits++;
        if (digits == last_len)
                return "ends in a label of digits only, and is not an IPv4 address either";
        return NULL;
}

static int same_name(const struct name *a, const struct name *b)
{
        if (a->kind != b->kind)
                return 0;
        if (a->kind == NAME_IP)
                return a->ip_len == b->ip_len && memcmp(a->ip, b->ip, (size_t)a->ip_len) == 0;
        return strcmp(a->text, b->text) == 0;   /* both lower case */
}

/* Validates names[0..n) into *ret (set only on success). */
static kw_result names_parse(const char *const *names, size_t n, struct names *ret)
{
        char q[72], q2[72];
        if (names == NULL || n == 0)
                BAD("no TLS name given (at least one DNS name or IP address)");
        if (n > KWP_TLS_MAX_NAMES)
                BAD("%zu TLS names given: at most %d", n, KWP_TLS_MAX_NAMES);
        struct names out = { .n = 0 };
        for (size_t i = 0; i < n; i++) {
                const char *s = names[i];
                if (s == NULL || s[0] == '\0')
                        BAD("TLS name %zu is empty", i + 1);
                size_t len = strnlen(s, KWP_TLS_NAME_MAX + 1);
                if (len > KWP_TLS_NAME_MAX)
                        BAD("TLS name \"%s\" is longer than %d characters", shown(s, q), KWP_TLS_NAME_MAX);
                struct name *nm = &out.v[i];
                memcpy(nm->text, s, len + 1);
                size_t d = strspn(s, "0123456789.");
                if (strchr(s, ':') != NULL) {
                        if (inet_pton(AF_INET6, s, nm->ip) != 1)
                                BAD("TLS name \"%s\" is not an IPv6 address (no zone, no brackets)", shown(s, q));
                        nm->kind = NAME_IP;
                        nm->ip_len = 16;
                } else if (d == len) {
                        if (inet_pton(AF_INET, s, nm->ip) != 1)
                                BAD("TLS name \"%s\" is not an IPv4 address", shown(s, q));
                        nm->kind = NAME_IP;
                        nm->ip_len = 4;
                } else {
                        const char *why = dns_fault(s, len);
                        if (why != NULL)
                                BAD("TLS name \"%s\" %s", shown(s, q), why);
                        nm->kind = NAME_DNS;
                        for (size_t k = 0; k < len; k++)
                                if (nm->text[k] >= 'A' && nm->text[k] <= 'Z')
                                        nm->text[k] = (char)(nm->text[k] - 'A' + 'a');
                }
                for (size_t k = 0; k < i; k++)
                        if (same_name(&out.v[k], nm))
                                BAD("TLS name \"%s\" is given twice (as \"%s\" before)", shown(s, q), shown(names[k], q2));
                out.n = i + 1;
        }
        *ret = out;
        return KW_OK;
}

static int gen_is(const GENERAL_NAME *g, const struct name *nm)
{
        if (nm->kind == NAME_DNS && g->type == GEN_DNS) {
                const ASN1_IA5STRING *s = g->d.dNSName;
                size_t l = strlen(nm->text);
                return (size_t)s->length == l && strncasecmp((const char *)s->data, nm->text, l) == 0;
        }
        if (nm->kind == NAME_IP && g->type == GEN_IPADD) {
                const ASN1_OCTET_STRING *s = g->d.iPAddress;
                return s->length == nm->ip_len && memcmp(s->data, nm->ip, (size_t)nm->ip_len) == 0;
        }
        return 0;
}

static int gens_have(const GENERAL_NAMES *gens, const struct name *nm)
{
        for (int k = 0; gens != NULL && k < sk_GENERAL_NAME_num(gens); k++)
                if (gen_is(sk_GENERAL_NAME_value(gens, k), nm))
                        return 1;
        return 0;
}

/* Whether gens names every name; with exact, nothing else either. */
static int gens_match(const GENERAL_NAMES *gens, const struct names *names, int exact)
{
        if (gens == NULL)
                return 0;
        for (size_t i = 0; i < names->n; i++)
                if (!gens_have(gens, &names->v[i]))
                        return 0;
        int n = sk_GENERAL_NAME_num(gens);
        for (int k = 0; exact && k < n; k++) {
                int found = 0;
                for (size_t i = 0; !found && i < names->n; i++)
                        found = gen_is(sk_GENERAL_NAME_value(gens, k), &names->v[i]);
                if (!found)
                        return 0;
        }
        return 1;
}

/* The subject of what is made here: CN = the first name when it fits. */
static kw_result subject_for(const struct names *names, X509_NAME **ret)
{
        X509_NAME *s = X509_NAME_new();
        if (s == NULL)
                OSSL_FAIL(KW_ERR_NOMEM, "X509_NAME_new");
        const char *cn = names->v[0].text;
        if (strlen(cn) <= CN_MAX &&
            X509_NAME_add_entry_by_NID(s, NID_commonName, MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) != 1) {
                X509_NAME_free(s);
                OSSL_FAIL(KW_ERR_CRYPTO, "setting the subject's CN");
        }
        *ret = s;
        return KW_OK;
}

/* The subjectAltName extension for names (critical when the subject is empty). */
static kw_result san_ext(const struct names *names, int critical, X509_EXTENSION **ret)
{
        GENERAL_NAMES *gens _cleanup_(gens_freep) = GENERAL_NAMES_new();
        if (gens == NULL)
                OSSL_FAIL(KW_ERR_NOMEM, "GENERAL_NAMES_new");
        for (size_t i = 0; i < names->n; i++) {
                const struct name *nm = &names->v[i];
                GENERAL_NAME *g = GENERAL_NAME_new();
                ASN1_STRING *v = nm->kind == NAME_DNS ? ASN1_IA5STRING_new() : ASN1_OCTET_STRING_new();
                int ok = g != NULL && v != NULL &&
                         (nm->kind == NAME_DNS ? ASN1_STRING_set(v, nm->text, (int)strlen(nm->text))
                                               : ASN1_OCTET_STRING_set(v, nm->ip, nm->ip_len)) == 1;
                if (ok) {
                        GENERAL_NAME_set0_value(g, nm->kind == NAME_DNS ? GEN_DNS : GEN_IPADD, v);
                        v = NULL;   /* transferred */
                        ok = sk_GENERAL_NAME_push(gens, g) > 0;
                }
                if (!ok) {
                        ASN1_STRING_free(v);
                        GENERAL_NAME_free(g);
                        OSSL_FAIL(KW_ERR_NOMEM, "building the subjectAltName");
                }
        }
        X509_EXTENSION *e = X509V3_EXT_i2d(NID_subject_alt_name, critical, gens);
        if (e == NULL)
                OSSL_FAIL(KW_ERR_CRYPTO, "encoding the subjectAltName");
        *ret = e;
        return KW_OK;
}

/* ---- files ---- */

/*
 * Reads dir/name into out when it is there (*ret_found 1), or says it is not
 * (*ret_found 0).  A symbolic link or anything but a regular file there is
 * KW_ERR_EXISTS.  With key_mode, a file readable by others is first brought
 * back to KEY_MODE.
 */
static kw_result file_read(int dfd, const char *dir, const char *name, int key_mode, struct kw_buf *out,
                           int *ret_found)
{
        int fd _cleanup_(fd_closep) = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0 && errno == ENOENT) {
                *ret_found = 0;
                return KW_OK;
        }
        if (fd < 0 && errno == ELOOP)
                FAIL(KW_ERR_EXISTS, "%s/%s is a symbolic link: refused", dir, name);
        if (fd < 0)
                FAIL(KW_ERR_IO, "cannot open %s/%s: %s", dir, name, strerror(errno));
        struct stat st;
        if (fstat(fd, &st) != 0)
                FAIL(KW_ERR_IO, "cannot stat %s/%s: %s", dir, name, strerror(errno));
        if (!S_ISREG(st.st_mode))
                FAIL(KW_ERR_EXISTS, "%s/%s is not a regular file: refused", dir, name);
        if (key_mode && (st.st_mode & 07777) != KEY_MODE && fchmod(fd, KEY_MODE) != 0)
                FAIL(KW_ERR_IO, "cannot make %s/%s mode 0600: %s", dir, name, strerror(errno));
        char what[4200];
        snprintf(what, sizeof what, "%s/%s", dir, name);
        KW_TRY(kw_read_fd(fd, what, KWP_TLS_PEM_MAX, out));
        *ret_found = 1;
        return KW_OK;
}

/* dir/name's bytes (into pem) behind a read-only BIO, or *ret NULL when
 * there is no such file. */
static kw_result file_bio(int dfd, const char *dir, const char *name, struct kw_buf *pem, BIO **ret)
{
        int found = 0;
        KW_TRY(file_read(dfd, dir, name, 0, pem, &found));
        BIO *b = NULL;
        if (found && (b = BIO_new_mem_buf(pem->p, (int)pem->len)) == NULL)
                OSSL_FAIL(KW_ERR_NOMEM, "BIO_new_mem_buf");
        *ret = b;
        return KW_OK;
}

/*
 * Writes data[0..n) as dir/name with mode, whole or not at all: a new
 * temporary file beside it (O_EXCL), fsync, rename, fsync of the directory.
 * With no_replace the rename fails rather than replace a file that appeared
 * meanwhile (KW_ERR_EXISTS).
 */
static kw_result file_write(int dfd, const char *dir, const char *name, const void *data, size_t n, mode_t mode,
                            int no_replace)
{
        unsigned char rnd[8];
        if (RAND_bytes(rnd, sizeof rnd) != 1)
                OSSL_FAIL(KW_ERR_RANDOM, "RAND_bytes");
        char tmp[64];
        int tl = snprintf(tmp, sizeof tmp, ".%s" TMP_INFIX, name);
        for (size_t i = 0; i < sizeof rnd; i++)
                tl += snprintf(tmp + tl, sizeof tmp - (size_t)tl, "%02x", rnd[i]);
        int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, KEY_MODE);
        if (fd < 0)
                FAIL(KW_ERR_IO, "cannot create %s/%s: %s", dir, tmp, strerror(errno));
        int ok = fchmod(fd, mode) == 0;   /* exactly mode, whatever the umask */
        const unsigned char *p = data;
        for (size_t off = 0; ok && off < n;) {
                ssize_t w = write(fd, p + off, n - off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w == 0)
                        errno = EIO;   /* a write that makes no progress */
                ok = w > 0;
                off += ok ? (size_t)w : 0;
        }
        ok = ok && fsync(fd) == 0;
        int e = errno;
        if (close(fd) != 0 && ok) {
                ok = 0;
                e = errno;
        }
        if (!ok) {
                unlinkat(dfd, tmp, 0);
                FAIL(KW_ERR_IO, "cannot write %s/%s: %s", dir, tmp, strerror(e));
        }
        if (renameat2(dfd, tmp, dfd, name, no_replace ? RENAME_NOREPLACE : 0) != 0) {
                e = errno;
                unlinkat(dfd, tmp, 0);
                if (e == EEXIST)
                        FAIL(KW_ERR_EXISTS, "%s/%s appeared while it was being made: not overwritten", dir, name);
                FAIL(KW_ERR_IO, "cannot rename %s/%s to %s: %s", dir, tmp, name, strerror(e));
        }
        if (fsync(dfd) != 0)
                FAIL(KW_ERR_IO, "cannot sync the directory %s: %s", dir, strerror(errno));
        return KW_OK;
}

/* Removes the temporaries a killed run left (a partial key among them). */
static kw_result sweep_temporaries(int dfd, const char *dir)
{
        int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        if (d == NULL) {
                int e = errno;
                if (fd >= 0)
                        close(fd);
                FAIL(KW_ERR_IO, "cannot list %s: %s", dir, strerror(e));
        }
        kw_result r = KW_OK;
        const struct dirent *de;
        while (r.code == 0 && (de = readdir(d)) != NULL) {
                for (size_t i = 0; i < sizeof FILES / sizeof FILES[0]; i++) {
                        char prefix[64];
                        int pl = snprintf(prefix, sizeof prefix, ".%s" TMP_INFIX, FILES[i]);
                        if (strncmp(de->d_name, prefix, (size_t)pl) != 0)
                                continue;
                        if (unlinkat(dfd, de->d_name, 0) != 0 && errno != ENOENT) {
                                kw_err_set_detail("cannot remove the stale %s/%s: %s", dir, de->d_name,
                                                  strerror(errno));
                                r = KW_RESULT(KW_ERR_IO);
                        }
                        break;
                }
        }
        closedir(d);
        return r;
}

/* The bytes of b (a memory BIO) as dir/name. */
static kw_result bio_to_file(int dfd, const char *dir, const char *name, BIO *b, mode_t mode, int no_replace)
{
        char *p = NULL;
        long n = BIO_get_mem_data(b, &p);
        KW_ENSURE(n >= 0, KW_ERR_INTERNAL);
        return file_write(dfd, dir, name, p, (size_t)n, mode, no_replace);
}

/* k as key.pem (PKCS#8 PEM), never over one that exists.  The PEM is
 * made in a BIO on the secure heap, wiped when freed. */
static kw_result key_write(int dfd, const char *dir, EVP_PKEY *k)
{
        BIO *b _cleanup_(bio_freep) = BIO_new(BIO_s_secmem());
        if (b == NULL || PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) != 1)
                OSSL_FAIL(KW_ERR_CRYPTO, "encoding the private key");
        return bio_to_file(dfd, dir, KWP_TLS_KEY_FILE, b, KEY_MODE, 1);
}

/* ---- keys ---- */

/*
 * The label of the next "-----BEGIN label-----" line of pem[0..len) from
 * *pos into label: 1 found (*pos is the line's start), 0 none left, -1 a
 * BEGIN line with no readable label.
 */
static int pem_next(const char *pem, size_t len, size_t *pos, char label[40])
{
        static const char begin[] = "-----BEGIN ";
        const size_t bl = sizeof begin - 1;
        for (size_t i = *pos; i < len && len - i >= bl; i++) {
                if ((i != 0 && pem[i - 1] != '\n') || memcmp(pem + i, begin, bl) != 0)
                        continue;
                size_t k = 0;
                while (k < 39 && i + bl + k < len && pem[i + bl + k] >= ' ' && pem[i + bl + k] < 0x7f &&
                       pem[i + bl + k] != '-')
                        k++;
                if (k == 0 || len - (i + bl + k) < 5 || memcmp(pem + i + bl + k, "-----", 5) != 0)
                        return -1;
                memcpy(label, pem + i + bl, k);
                label[k] = '\0';
                *pos = i;
                return 1;
        }
        return 0;
}

/*
 * The one private key in pem[0..len) into *ret: a PRIVATE KEY, RSA PRIVATE
 * KEY or EC PRIVATE KEY block (an EC PARAMETERS block beside it allowed,
 * nothing else), unencrypted.  Its DER is decoded on the secure heap and
 * wiped.  A failure is code, its detail names what and ends with advice.
 */
static kw_result key_parse(const char *pem, size_t len, const char *what, const char *advice, int code,
                           EVP_PKEY **ret)
{
        static const char *const keys[] = { "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY" };
        char label[40];
        size_t pos = 0, key_at = 0, n_keys = 0;
        int got;
        while ((got = pem_next(pem, len, &pos, label)) == 1) {
                int is_key = 0;
                for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
                        is_key |= strcmp(label, keys[i]) == 0;
                if (strcmp(label, "ENCRYPTED PRIVATE KEY") == 0)
                        FAIL(code, "%s is encrypted: a passphrase is not supported%s", what, advice);
                if (!is_key && strcmp(label, "EC PARAMETERS") != 0)
                        FAIL(code, "%s holds a \"%s\" block: only one private key is taken%s", what, label, advice);
                if (is_key && n_keys++ == 0)
                        key_at = pos;
                pos++;
        }
        if (got < 0)
                FAIL(code, "%s has a malformed BEGIN line%s", what, advice);
        if (n_keys == 0)
                FAIL(code, "%s holds no private key (PEM, \"-----BEGIN PRIVATE KEY-----\")%s", what, advice);
        if (n_keys > 1)
                FAIL(code, "%s holds %zu private keys: one is taken%s", what, n_keys, advice);
        BIO *b _cleanup_(bio_freep) = BIO_new_mem_buf(pem + key_at, (int)(len - key_at));
        char *name = NULL, *header = NULL;
        unsigned char *der = NULL;
        long n = 0;
        int ok = b != NULL && PEM_read_bio_ex(b, &name, &header, &der, &n,
                                              PEM_FLAG_SECURE | PEM_FLAG_EAY_COMPATIBLE) > 0;
        int encrypted = ok && strstr(header, "ENCRYPTED") != NULL;
        const unsigned char *p = der;
        EVP_PKEY *k = ok && !encrypted ? d2i_AutoPrivateKey(NULL, &p, n) : NULL;
        if (der != NULL)
                OPENSSL_secure_clear_free(der, (size_t)n);
        OPENSSL_secure_free(name);
        OPENSSL_secure_free(header);
        ERR_clear_error();
        if (encrypted)
                FAIL(code, "%s is encrypted: a passphrase is not supported%s", what, advice);
        if (k == NULL)
                FAIL(code, "%s holds no private key OpenSSL can read%s", what, advice);
        *ret = k;
        return KW_OK;
}

static void key_describe(EVP_PKEY *k, char *out, size_t n)
{
        char g[64];
        size_t gl = 0;
        if (EVP_PKEY_is_a(k, "RSA"))
                snprintf(out, n, "RSA %d", EVP_PKEY_get_bits(k));
        else if (EVP_PKEY_is_a(k, "EC") && EVP_PKEY_get_group_name(k, g, sizeof g, &gl) == 1)
                snprintf(out, n, "EC %s", g);
        else
                snprintf(out, n, "%s", EVP_PKEY_get0_type_name(k) ? EVP_PKEY_get0_type_name(k) : "unknown");
}

static int key_is(EVP_PKEY *k, enum kwp_tls_key_type t)
{
        if (!EVP_PKEY_is_a(k, KEY_TYPES[t].alg))
                return 0;
        if (KEY_TYPES[t].group == NULL)
                return EVP_PKEY_get_bits(k) == (int)KEY_TYPES[t].bits;
        char g[64];
        size_t gl = 0;
        return EVP_PKEY_get_group_name(k, g, sizeof g, &gl) == 1 && strcmp(g, KEY_TYPES[t].group) == 0;
}

static const EVP_MD *digest_for(EVP_PKEY *k)
{
        int bits = EVP_PKEY_get_bits(k);
        if (EVP_PKEY_is_a(k, "EC") && bits > 384)
                return EVP_sha512();
        if (EVP_PKEY_is_a(k, "EC") && bits > 256)
                return EVP_sha384();
        return EVP_sha256();
}

/*
 * key.pem's key into *ret: the one there (of type t), or a new one written
 * as key.pem.  *ret_action KEPT or CREATED.
 */
static kw_result key_ensure(int dfd, const char *dir, enum kwp_tls_key_type t, EVP_PKEY **ret,
                            enum kwp_tls_action *ret_action)
{
        struct kw_buf pem _cleanup_(buf_freep);
        kw_buf_init(&pem, KWP_TLS_PEM_MAX);
        int found = 0;
        KW_TRY(file_read(dfd, dir, KWP_TLS_KEY_FILE, 1, &pem, &found));
        char what[4200];
        snprintf(what, sizeof what, "%s/" KWP_TLS_KEY_FILE, dir);
        if (found) {
                EVP_PKEY *k _cleanup_(pkey_freep) = NULL;
                KW_TRY(key_parse((const char *)pem.p, pem.len, what, NEW_KEY_ADVICE, KW_ERR_EXISTS, &k));
                if (!key_is(k, t)) {
                        char has[80];
                        key_describe(k, has, sizeof has);
                        FAIL(KW_ERR_EXISTS, "%s holds a key of type %s, not the %s asked for%s", what, has,
                             KEY_TYPES[t].what, NEW_KEY_ADVICE);
                }
                *ret = k;
                k = NULL;   /* transferred */
                *ret_action = KWP_TLS_KEPT;
                return KW_OK;
        }
        EVP_PKEY *k _cleanup_(pkey_freep) =
                KEY_TYPES[t].group != NULL
                        ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", KEY_TYPES[t].group)
                        : EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)KEY_TYPES[t].bits);
        if (k == NULL)
                OSSL_FAIL(KW_ERR_CRYPTO, "generating the TLS key");
        KW_TRY(key_write(dfd, dir, k));
        *ret = k;
        k = NULL;   /* transferred */
        *ret_action = KWP_TLS_CREATED;
        return KW_OK;
}

/* ---- certificates ---- */

/* t as "2025-01-01 00:00:00 UTC" (or "an unreadable date"). */
static const char *time_text(const ASN1_TIME *t, char out[32])
{
        struct tm tm;
        if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1 || strftime(out, 32, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
                snprintf(out, 32, "an unreadable date");
        return out;
}

static const char *now_text(char out[32])
{
        time_t now = time(NULL);
        struct tm tm;
        if (gmtime_r(&now, &tm) == NULL || strftime(out, 32, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
                snprintf(out, 32, "an unreadable date");
        return out;
}

/* -1 not valid yet, 1 expired, 0 valid now. */
static int validity(const X509 *x)
{
        if (X509_cmp_time(X509_get0_notBefore(x), NULL) != -1)
                return -1;
        if (X509_cmp_time(X509_get0_notAfter(x), NULL) != 1)
                return 1;
        return 0;
}

static kw_result fingerprint_of(const X509 *x, char out[KWP_TLS_FINGERPRINT_SIZE])
{
        static const char hex[] = "0123456789ABCDEF";
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        if (X509_digest(x, EVP_sha256(), md, &n) != 1 || n != 32)
                OSSL_FAIL(KW_ERR_CRYPTO, "X509_digest");
        for (unsigned int i = 0; i < n; i++) {
                out[3 * i] = hex[md[i] >> 4];
                out[3 * i + 1] = hex[md[i] & 15];
                out[3 * i + 2] = i + 1 == n ? '\0' : ':';
        }
        return KW_OK;
}

static void warn(struct kwp_tls_result *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(struct kwp_tls_result *res, const char *fmt, ...)
{
        size_t used = strlen(res->warning);
        if (used != 0)
                used += (size_t)snprintf(res->warning + used, sizeof res->warning - used, "; ");
        if (used >= sizeof res->warning)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(res->warning + used, sizeof res->warning - used, fmt, ap);
        va_end(ap);
}

static kw_result add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
        X509_EXTENSION *e _cleanup_(ext_freep) = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
        if (e == NULL || X509_add_ext(x, e, -1) != 1)
                OSSL_FAIL(KW_ERR_CRYPTO, "adding a certificate extension");
        return KW_OK;
}

/* A new self-signed certificate for key and names, valid for days from
 * five minutes ago (clients' clocks differ). */
static kw_result cert_make(EVP_PKEY *key, const struct names *names, const X509_NAME *subj, unsigned days,
                           X509 **ret)
{
        X509 *x _cleanup_(x509_freep) = X509_new();
        BIGNUM *serial = BN_new();
        int ok = x != NULL && serial != NULL && BN_rand(serial, 128, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) == 1 &&
                 BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) != NULL;
        BN_free(serial);
        if (!ok)
                OSSL_FAIL(KW_ERR_CRYPTO, "making a serial number");
        time_t from = time(NULL) - 300;
        if (X509_set_version(x, X509_VERSION_3) != 1 || ASN1_TIME_set(X509_getm_notBefore(x), from) == NULL ||
            ASN1_TIME_adj(X509_getm_notAfter(x), from, (int)days, 0) == NULL ||
            X509_set_subject_name(x, subj) != 1 || X509_set_issuer_name(x, subj) != 1 ||
            X509_set_pubkey(x, key) != 1)
                OSSL_FAIL(KW_ERR_CRYPTO, "filling the certificate");
        X509V3_CTX ctx;
        X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
        KW_TRY(add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE"));
        KW_TRY(add_ext(x, &ctx, NID_key_usage,
                       EVP_PKEY_is_a(key, "RSA") ? "critical,digitalSignature,keyEncipherment"
                                                 : "critical,digitalSignature"));
        KW_TRY(add_ext(x, &ctx, NID_ext_key_usage, "serverAuth"));
        KW_TRY(add_ext(x, &ctx, NID_subject_key_identifier, "hash"));
        KW_TRY(add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always"));
        X509_EXTENSION *san _cleanup_(ext_freep) = NULL;
        KW_TRY(san_ext(names, X509_NAME_entry_count(subj) == 0, &san));
        if (X509_add_ext(x, san, -1) != 1)
                OSSL_FAIL(KW_ERR_CRYPTO, "adding the subjectAltName");
        if (X509_sign(x, key, digest_for(key)) <= 0)
                OSSL_FAIL(KW_ERR_CRYPTO, "signing the certificate");
        *ret = x;
        x = NULL;   /* transferred */
        return KW_OK;
}

/*
 * NULL when x may stay as what key serves for names, else why not: it must
 * be for key, valid now, and name every name; a self-issued one (made here)
 * exactly these names and subject, a CA's at least these names.
 */
static const char *cert_misfit(const X509 *x, EVP_PKEY *key, const struct names *names, const X509_NAME *subj)
{
        if (EVP_PKEY_eq(X509_get0_pubkey(x), key) != 1)
                return "it is for another key";
        int v = validity(x);
        if (v != 0)
                return v < 0 ? "it is not valid yet" : "it has expired";
        int self = X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0;
        GENERAL_NAMES *gens _cleanup_(gens_freep) = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
        if (!gens_match(gens, names, self) || (self && X509_NAME_cmp(X509_get_subject_name(x), subj) != 0))
                return "it does not name the requested names";
        return NULL;
}

/* cert.pem: kept when it fits key and names, else a new self-signed one. */
static kw_result cert_ensure(int dfd, const char *dir, EVP_PKEY *key, const struct names *names,
                             const X509_NAME *subj, unsigned days, struct kwp_tls_result *res)
{
        struct kw_buf pem _cleanup_(buf_freep);
        kw_buf_init(&pem, KWP_TLS_PEM_MAX);
        BIO *in _cleanup_(bio_freep) = NULL;
        KW_TRY(file_bio(dfd, dir, KWP_TLS_CERT_FILE, &pem, &in));
        int found = in != NULL;
        if (found) {
                X509 *old _cleanup_(x509_freep) = PEM_read_bio_X509(in, NULL, NULL, NULL);
                ERR_clear_error();
                const char *why = old == NULL ? "it holds no certificate" : cert_misfit(old, key, names, subj);
                if (why == NULL) {
                        res->cert = KWP_TLS_KEPT;
                        return fingerprint_of(old, res->fingerprint);
                }
                warn(res, "%s/" KWP_TLS_CERT_FILE " replaced by a self-signed certificate: %s", dir, why);
        }
        X509 *x _cleanup_(x509_freep) = NULL;
        KW_TRY(cert_make(key, names, subj, days, &x));
        BIO *b _cleanup_(bio_freep) = BIO_new(BIO_s_mem());
        if (b == NULL || PEM_write_bio_X509(b, x) != 1)
                OSSL_FAIL(KW_ERR_CRYPTO, "encoding the certificate");
        KW_TRY(bio_to_file(dfd, dir, KWP_TLS_CERT_FILE, b, CERT_MODE, 0));
        res->cert = found ? KWP_TLS_REPLACED : KWP_TLS_CREATED;
        return fingerprint_of(x, res->fingerprint);
}

/* ---- certificate signing request ---- */

static kw_result csr_make(EVP_PKEY *key, const struct names *names, const X509_NAME *subj, X509_REQ **ret)
{
        X509_REQ *q _cleanup_(req_freep) = X509_REQ_new();
        STACK_OF(X509_EXTENSION) *exts _cleanup_(exts_freep) = sk_X509_EXTENSION_new_null();
        if (q == NULL || exts == NULL)
                OSSL_FAIL(KW_ERR_NOMEM, "X509_REQ_new");
        X509_EXTENSION *san = NULL;
        KW_TRY(san_ext(names, X509_NAME_entry_count(subj) == 0, &san));
        if (sk_X509_EXTENSION_push(exts, san) <= 0) {
                X509_EXTENSION_free(san);
                OSSL_FAIL(KW_ERR_NOMEM, "sk_X509_EXTENSION_push");
        }
        if (X509_REQ_set_version(q, X509_REQ_VERSION_1) != 1 || X509_REQ_set_subject_name(q, subj) != 1 ||
            X509_REQ_set_pubkey(q, key) != 1 || X509_REQ_add_extensions(q, exts) != 1)
                OSSL_FAIL(KW_ERR_CRYPTO, "filling the certificate request");
        if (X509_REQ_sign(q, key, digest_for(key)) <= 0)
                OSSL_FAIL(KW_ERR_CRYPTO, "signing the certificate request");
        *ret = q;
        q = NULL;   /* transferred */
        return KW_OK;
}

/* NULL when q is the request this run would make (its key, signature,
 * subject and exactly the names), else why not. */
static const char *csr_misfit(X509_REQ *q, EVP_PKEY *key, const struct names *names, const X509_NAME *subj)
{
        if (EVP_PKEY_eq(X509_REQ_get0_pubkey(q), key) != 1)
                return "it is for another key";
        if (X509_REQ_verify(q, key) != 1)
                return "its signature does not hold";
        STACK_OF(X509_EXTENSION) *exts _cleanup_(exts_freep) = X509_REQ_get_extensions(q);
        int at = exts != NULL ? X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1) : -1;
        GENERAL_NAMES *gens _cleanup_(gens_freep) =
                at >= 0 ? X509V3_EXT_d2i(sk_X509_EXTENSION_value(exts, at)) : NULL;
        if (!gens_match(gens, names, 1) || X509_NAME_cmp(X509_REQ_get_subject_name(q), subj) != 0)
                return "it does not ask for the requested names";
        return NULL;
}

static kw_result csr_ensure(int dfd, const char *dir, EVP_PKEY *key, const struct names *names,
                            const X509_NAME *subj, struct kwp_tls_result *res)
{
        struct kw_buf pem _cleanup_(buf_freep);
        kw_buf_init(&pem, KWP_TLS_PEM_MAX);
        BIO *in _cleanup_(bio_freep) = NULL;
        KW_TRY(file_bio(dfd, dir, KWP_TLS_CSR_FILE, &pem, &in));
        int found = in != NULL;
        if (found) {
                X509_REQ *old _cleanup_(req_freep) = PEM_read_bio_X509_REQ(in, NULL, NULL, NULL);
                const char *why = old == NULL ? "it holds no certificate request" : csr_misfit(old, key, names, subj);
                ERR_clear_error();
                if (why == NULL) {
                        res->csr = KWP_TLS_KEPT;
                        return KW_OK;
                }
                warn(res, "%s/" KWP_TLS_CSR_FILE " replaced: %s", dir, why);
        }
        X509_REQ *q _cleanup_(req_freep) = NULL;
        KW_TRY(csr_make(key, names, subj, &q));
        BIO *b _cleanup_(bio_freep) = BIO_new(BIO_s_mem());
        if (b == NULL || PEM_write_bio_X509_REQ(b, q) != 1)
                OSSL_FAIL(KW_ERR_CRYPTO, "encoding the certificate request");
        KW_TRY(bio_to_file(dfd, dir, KWP_TLS_CSR_FILE, b, CERT_MODE, 0));
        res->csr = found ? KWP_TLS_REPLACED : KWP_TLS_CREATED;
        return KW_OK;
}

/* ---- supplied chain and key ---- */

/* The supplied chain: CERTIFICATE blocks only, each one readable. */
static kw_result chain_parse(const char *pem, size_t len, STACK_OF(X509) **ret)
{
        char label[40];
        size_t pos = 0, blocks = 0;
        int got;
        while ((got = pem_next(pem, len, &pos, label)) == 1) {
                if (strcmp(label, "CERTIFICATE") != 0)
                        BAD("the certificate chain holds a \"%s\" block: only CERTIFICATE blocks are taken", label);
                if (++blocks > KWP_TLS_MAX_CHAIN)
                        BAD("the certificate chain holds more than %d certificates", KWP_TLS_MAX_CHAIN);
                pos++;
        }
        if (got < 0)
                BAD("the certificate chain has a malformed BEGIN line");
        if (blocks == 0)
                BAD("the certificate chain holds no certificate (PEM, \"-----BEGIN CERTIFICATE-----\")");
        STACK_OF(X509) *chain _cleanup_(chain_freep) = sk_X509_new_null();
        BIO *b _cleanup_(bio_freep) = BIO_new_mem_buf(pem, (int)len);
        if (chain == NULL || b == NULL)
                OSSL_FAIL(KW_ERR_NOMEM, "reading the chain");
        for (size_t i = 0; i < blocks; i++) {
                X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
                if (x == NULL) {
                        ERR_clear_error();
                        BAD("certificate %zu of the chain cannot be read", i + 1);
                }
                if (sk_X509_push(chain, x) <= 0) {
                        X509_free(x);
                        OSSL_FAIL(KW_ERR_NOMEM, "sk_X509_push");
                }
        }
        *ret = chain;
        chain = NULL;   /* transferred */
        return KW_OK;
}

/* The supplied key: key_parse's, of a kind we serve. */
static kw_result supplied_key_parse(const char *pem, size_t len, EVP_PKEY **ret)
{
        EVP_PKEY *k _cleanup_(pkey_freep) = NULL;
        KW_TRY(key_parse(pem, len, "the supplied private key", "", KW_ERR_BAD_FIELD, &k));
        char g[64];
        size_t gl = 0;
        if (EVP_PKEY_is_a(k, "RSA")) {
                if (EVP_PKEY_get_bits(k) < 2048)
                        BAD("the supplied private key is RSA %d: at least 2048 bits are taken", EVP_PKEY_get_bits(k));
        } else if (!EVP_PKEY_is_a(k, "EC") || EVP_PKEY_get_group_name(k, g, sizeof g, &gl) != 1 ||
                   (strcmp(g, "prime256v1") != 0 && strcmp(g, "secp384r1") != 0 && strcmp(g, "secp521r1") != 0)) {
                char has[80];
                key_describe(k, has, sizeof has);
                BAD("the supplied private key is %s: RSA or EC P-256, P-384 or P-521 are taken", has);
        }
        *ret = k;
        k = NULL;   /* transferred */
        return KW_OK;
}

/* The leaf's checks, refusing; then what is only warned about. */
static kw_result leaf_check(STACK_OF(X509) *chain, EVP_PKEY *key, const struct names *names,
                            struct kwp_tls_result *res)
{
        X509 *leaf = sk_X509_value(chain, 0);
        char when[32], now[32];
        if (EVP_PKEY_eq(X509_get0_pubkey(leaf), key) != 1)
                BAD("the certificate's key does not match the private key (is the leaf not first in the chain?)");
        int v = validity(leaf);
        if (v < 0)
                BAD("the certificate is not valid before %s (the clock here says %s)",
                    time_text(X509_get0_notBefore(leaf), when), now_text(now));
        if (v > 0)
                BAD("the certificate expired on %s (the clock here says %s)", time_text(X509_get0_notAfter(leaf), when),
                    now_text(now));
        uint32_t flags = X509_get_extension_flags(leaf);
        if ((flags & EXFLAG_XKUSAGE) != 0 && (X509_get_extended_key_usage(leaf) & XKU_SSL_SERVER) == 0)
                BAD("the certificate's extendedKeyUsage does not include serverAuth");
        if ((flags & EXFLAG_KUSAGE) != 0 && (X509_get_key_usage(leaf) & KU_DIGITAL_SIGNATURE) == 0)
                BAD("the certificate's keyUsage does not include digitalSignature (the server signs with ECDHE)");

        int days = 0, secs = 0;
        if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(leaf)) == 1 && days < EXPIRY_WARN_DAYS)
                warn(res, "the certificate expires on %s, in %d days", time_text(X509_get0_notAfter(leaf), when), days);
        for (int i = 1; i < sk_X509_num(chain); i++)
                if (X509_check_issued(sk_X509_value(chain, i), sk_X509_value(chain, i - 1)) != X509_V_OK) {
                        warn(res, "the chain is not in order: certificate %d did not issue certificate %d", i + 1, i);
                        break;
                }
        char missing[512] = "";
        size_t ml = 0;
        for (size_t i = 0; i < names->n; i++) {
                const struct name *nm = &names->v[i];
                int ok;
                if (nm->kind == NAME_IP) {
                        ok = X509_check_ip(leaf, nm->ip, (size_t)nm->ip_len, 0) == 1;
                } else if (nm->text[0] == '*') {   /* a wildcard is covered only by itself */
                        GENERAL_NAMES *gens _cleanup_(gens_freep) =
                                X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
                        ok = gens_have(gens, nm);
                } else {
                        ok = X509_check_host(leaf, nm->text, 0, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
                }
                if (!ok && ml < sizeof missing)
                        ml += (size_t)snprintf(missing + ml, sizeof missing - ml, "%s%s", ml ? ", " : "", nm->text);
        }
        ERR_clear_error();
        res->names_covered = ml == 0;
        if (ml != 0)
                warn(res, "the certificate's subjectAltNames do not cover %s", missing);
        return KW_OK;
}

static kw_result supplied_ensure(int dfd, const struct kwp_tls_req *req, const struct names *names,
                                 struct kwp_tls_result *res)
{
        STACK_OF(X509) *chain _cleanup_(chain_freep) = NULL;
        EVP_PKEY *key _cleanup_(pkey_freep) = NULL;
        KW_TRY(chain_parse(req->chain_pem, req->chain_len, &chain));
        KW_TRY(supplied_key_parse(req->key_pem, req->key_len, &key));
        KW_TRY(leaf_check(chain, key, names, res));

        /* key.pem: the supplied key, or already it */
        struct kw_buf pem _cleanup_(buf_freep);
        kw_buf_init(&pem, KWP_TLS_PEM_MAX);
        int found = 0;
        KW_TRY(file_read(dfd, req->dir, KWP_TLS_KEY_FILE, 1, &pem, &found));
        if (found) {
                char what[4200];
                snprintf(what, sizeof what, "%s/" KWP_TLS_KEY_FILE, req->dir);
                EVP_PKEY *old _cleanup_(pkey_freep) = NULL;
                KW_TRY(key_parse((const char *)pem.p, pem.len, what, SUPPLIED_KEY_ADVICE, KW_ERR_EXISTS, &old));
                if (EVP_PKEY_eq(old, key) != 1)
                        FAIL(KW_ERR_EXISTS, "%s holds another key than the one supplied%s", what, SUPPLIED_KEY_ADVICE);
                res->key = KWP_TLS_KEPT;
        } else {
                KW_TRY(key_write(dfd, req->dir, key));
                res->key = KWP_TLS_CREATED;
        }

        /* cert.pem: the chain as re-encoded, or already it */
        BIO *b _cleanup_(bio_freep) = BIO_new(BIO_s_mem());
        if (b == NULL)
                OSSL_FAIL(KW_ERR_NOMEM, "BIO_new");
        for (int i = 0; i < sk_X509_num(chain); i++)
                if (PEM_write_bio_X509(b, sk_X509_value(chain, i)) != 1)
                        OSSL_FAIL(KW_ERR_CRYPTO, "encoding the chain");
        char *p = NULL;
        long n = BIO_get_mem_data(b, &p);
        KW_TRY(file_read(dfd, req->dir, KWP_TLS_CERT_FILE, 0, &pem, &found));
        if (found && n >= 0 && pem.len == (size_t)n && memcmp(pem.p, p, (size_t)n) == 0) {
                res->cert = KWP_TLS_KEPT;
        } else {
                KW_TRY(bio_to_file(dfd, req->dir, KWP_TLS_CERT_FILE, b, CERT_MODE, 0));
                res->cert = found ? KWP_TLS_REPLACED : KWP_TLS_CREATED;
        }
        return fingerprint_of(sk_X509_value(chain, 0), res->fingerprint);
}

/* ---- exported ---- */

kw_result kwp_tls_mode_parse(const char *s, enum kwp_tls_mode *ret)
{
        char q[72];
        KW_ENSURE(ret != NULL, KW_ERR_INPUT);
        if (s == NULL)
                BAD("no TLS mode given");
        for (size_t i = 1; i < N_MODES; i++)
                if (strcmp(s, MODES[i]) == 0) {
                        *ret = (enum kwp_tls_mode)i;
                        return KW_OK;
                }
        BAD("TLS mode \"%s\" is not one of self-signed, csr, supplied", shown(s, q));
}

kw_result kwp_tls_key_type_parse(const char *s, enum kwp_tls_key_type *ret)
{
        char q[72];
        KW_ENSURE(ret != NULL, KW_ERR_INPUT);
        if (s == NULL)
                BAD("no TLS key type given");
        for (size_t i = 0; i < N_KEY_TYPES; i++)
                if (strcmp(s, KEY_TYPES[i].name) == 0) {
                        *ret = (enum kwp_tls_key_type)i;
                        return KW_OK;
                }
        BAD("TLS key type \"%s\" is not one of ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096", shown(s, q));
}

const char *kwp_tls_mode_name(enum kwp_tls_mode m)
{
        return (unsigned)m < N_MODES && MODES[m] != NULL ? MODES[m] : "?";
}

const char *kwp_tls_key_type_name(enum kwp_tls_key_type t)
{
        return (unsigned)t < N_KEY_TYPES ? KEY_TYPES[t].name : "?";
}

const char *kwp_tls_action_name(enum kwp_tls_action a)
{
        return (unsigned)a < sizeof ACTIONS / sizeof ACTIONS[0] ? ACTIONS[a] : "?";
}

kw_result kwp_tls_check_names(const char *const *names, size_t n)
{
        struct names parsed;
        return names_parse(names, n, &parsed);
}

/* The request's fields, for its mode. */
static kw_result req_check(const struct kwp_tls_req *req, struct names *ret_names)
{
        if (req->dir == NULL || req->dir[0] == '\0')
                BAD("no TLS directory given");
        if ((unsigned)req->mode >= N_MODES || MODES[req->mode] == NULL)
                BAD("TLS mode %d is not one of self-signed, csr, supplied", (int)req->mode);
        KW_TRY(names_parse(req->names, req->n_names, ret_names));
        int supplied = req->mode == KWP_TLS_SUPPLIED;
        if (supplied && (req->chain_pem == NULL || req->chain_len == 0 || req->key_pem == NULL || req->key_len == 0))
                BAD("the supplied TLS mode needs a certificate chain and a private key");
        if (!supplied && (req->chain_pem != NULL || req->key_pem != NULL))
                BAD("a certificate chain or key is given, but the TLS mode is %s", MODES[req->mode]);
        if (supplied && (req->chain_len > KWP_TLS_PEM_MAX || req->key_len > KWP_TLS_PEM_MAX))
                FAIL(KW_ERR_TOO_LARGE, "the supplied certificate chain or key is larger than %u bytes", KWP_TLS_PEM_MAX);
        if (!supplied && (unsigned)req->key_type >= N_KEY_TYPES)
                BAD("TLS key type %d is not one of ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096", (int)req->key_type);
        if (!supplied && req->days > KWP_TLS_MAX_DAYS)
                BAD("a TLS certificate valid for %u days: at most %d", req->days, KWP_TLS_MAX_DAYS);
        return KW_OK;
}

kw_result kwp_tls_ensure(const struct kwp_tls_req *req, struct kwp_tls_result *ret)
{
        KW_ENSURE(req != NULL && ret != NULL, KW_ERR_INPUT);
        struct names names;
        KW_TRY(req_check(req, &names));
        int dfd _cleanup_(fd_closep) = open(req->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                FAIL(KW_ERR_IO, "cannot open the TLS directory %s: %s", req->dir, strerror(errno));
        KW_TRY(sweep_temporaries(dfd, req->dir));

        struct kwp_tls_result res = { .names_covered = 1 };
        if (req->mode == KWP_TLS_SUPPLIED) {
                KW_TRY(supplied_ensure(dfd, req, &names, &res));
        } else {
                EVP_PKEY *key _cleanup_(pkey_freep) = NULL;
                X509_NAME *subj _cleanup_(name_freep) = NULL;
                KW_TRY(key_ensure(dfd, req->dir, req->key_type, &key, &res.key));
                KW_TRY(subject_for(&names, &subj));
                if (req->mode == KWP_TLS_CSR)
                        KW_TRY(csr_ensure(dfd, req->dir, key, &names, subj, &res));
                KW_TRY(cert_ensure(dfd, req->dir, key, &names, subj, req->days ? req->days : KWP_TLS_DEFAULT_DAYS,
                                   &res));
        }
        *ret = res;
        return KW_OK;
}

kw_result kwp_tls_fingerprint(const char *pem, size_t len, char ret[KWP_TLS_FINGERPRINT_SIZE])
{
        KW_ENSURE(pem != NULL && ret != NULL, KW_ERR_INPUT);
        if (len > KWP_TLS_PEM_MAX)
                FAIL(KW_ERR_TOO_LARGE, "the certificate is larger than %u bytes", KWP_TLS_PEM_MAX);
        BIO *b _cleanup_(bio_freep) = BIO_new_mem_buf(pem, (int)len);
        if (b == NULL)
                OSSL_FAIL(KW_ERR_NOMEM, "BIO_new_mem_buf");
        X509 *x _cleanup_(x509_freep) = PEM_read_bio_X509(b, NULL, NULL, NULL);
        ERR_clear_error();
        if (x == NULL)
                BAD("no certificate in the PEM given (\"-----BEGIN CERTIFICATE-----\")");
        char fp[KWP_TLS_FINGERPRINT_SIZE];
        KW_TRY(fingerprint_of(x, fp));
        memcpy(ret, fp, sizeof fp);
        return KW_OK;
}
