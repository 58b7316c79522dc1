/*
 * custody_dbio.c - keywardd --db-export / --db-import (custody_dbio.h): the
 * store walked into the document of dbio.h, or the document written into
 * an empty store through keystore.h, then verified (the checksum of every
 * key's public data recomputed from the store) and every key version
 * unsealed through the HSM and used once (the round trip).
 *
 * Sealed material stays sealed: blobs are copied as stored; the round trip
 * unseals each version into secret memory, uses it on random data and
 * wipes it.  Nothing here prints a secret.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/fsync_dir.h"
#include "../common/log.h"
#include "../common/readfile.h"
#include "crypto.h"
#include "custody_dbio.h"
#include "custody_int.h"
#include "dbio.h"

#define ACTOR_IMPORT "keywardd --db-import"
#define ACTOR_EXPORT "keywardd --db-export"
#define RT_AAD "keyward.db-roundtrip.v1"

enum { EXIT_REFUSED = 1, EXIT_CONFIG = 2, EXIT_FILES = 3, EXIT_HSM = 4, EXIT_DB = 5 };

static int status_of(kw_result r)
{
        if (r.code <= KW_ERR_HSM && r.code > KW_ERR_TPM)
                return EXIT_HSM;
        if (r.code == KW_ERR_IO)
                return EXIT_FILES;
        if (r.code == KW_ERR_CONFIG)
                return EXIT_CONFIG;
        if (r.code <= KW_ERR_STORAGE && r.code > KW_ERR_HSM && r.code != KW_ERR_DB_CORRUPT)
                return EXIT_DB;
        return EXIT_REFUSED;
}

static int say_fail(const char *what, kw_result r)
{
        const char *d = kw_err_detail();
        fprintf(stderr, "keywardd: %s: %s (%s)\n", what, d[0] ? d : kw_strerror(r.code),
                kw_err_name(r.code));
        return status_of(r);
}

/* ---------------------------------------------------------------- walk */

struct walk {
        struct custody *c;
        struct kw_dbio_doc *d;
        kw_result r;
};

static int key_cb(const struct kw_key_row *row, void *arg)
{
        struct walk *w = arg;
        w->r = kw_dbio_add_key(w->d, row, NULL);
        return !kw_ok(w->r);
}

struct vers {
        uint32_t *v;
        int64_t *created;
        size_t n, cap;
        int bad;
};

static int versions_cb(uint32_t version, int64_t created, void *arg)
{
        struct vers *vs = arg;
        if (vs->n == vs->cap) {
                size_t nc = vs->cap ? vs->cap * 2 : 8;
                uint32_t *v = realloc(vs->v, nc * sizeof *v);
                if (v != NULL)
                        vs->v = v;
                int64_t *c = v != NULL ? realloc(vs->created, nc * sizeof *c) : NULL;
                if (c == NULL) {
                        vs->bad = 1;
                        return 1;
                }
                vs->created = c;
                vs->cap = nc;
        }
        vs->v[vs->n] = version;
        vs->created[vs->n] = created;
        vs->n++;
        return 0;
}

/* Every version's sealed blob of a live key, checked to be 1..current. */
static kw_result walk_versions(struct custody *c, struct kw_dbio_key *k)
{
        struct vers vs = { 0 };
        kw_result r = kw_keystore_key_versions(c->ks, k->row.id, versions_cb, &vs);
        if (kw_ok(r) && vs.bad)
                r = KW_RESULT(KW_ERR_NOMEM);
        if (kw_ok(r) && vs.n != k->row.current_version)
                r = KW_FAIL(KW_ERR_DB_CORRUPT, "key %s has %zu stored versions, current_version %u",
                            k->row.name, vs.n, k->row.current_version);
        for (size_t i = 0; kw_ok(r) && i < vs.n; i++) {
                if (vs.v[i] != i + 1) {
                        r = KW_FAIL(KW_ERR_DB_CORRUPT, "key %s: version %zu is missing",
                                    k->row.name, i + 1);
                        break;
                }
                struct kw_buf blob;
                kw_buf_init(&blob, KW_DBIO_BLOB_MAX);
                r = kw_keystore_key_get_blob(c->ks, k->row.id, vs.v[i], &blob);
                if (kw_ok(r))
                        r = kw_dbio_add_version(k, vs.v[i], vs.created[i], blob.p, blob.len);
                kw_buf_free(&blob);
        }
        free(vs.v);
        free(vs.created);
        return r;
}

static int token_cb(const struct kw_token_row *row, const uint8_t hash[32], void *arg)
{
        struct walk *w = arg;
        w->r = kw_dbio_add_token(w->d, row, hash);
        return !kw_ok(w->r);
}

struct name_list {
        char (*names)[65];
        size_t n, cap;
        int bad;
};

static int user_cb(const struct kw_user_row *row, void *arg)
{
        struct name_list *l = arg;
        if (l->n == l->cap) {
                size_t nc = l->cap ? l->cap * 2 : 16;
                char(*p)[65] = realloc(l->names, nc * sizeof *p);
                if (p == NULL) {
                        l->bad = 1;
                        return 1;
                }
                l->names = p;
                l->cap = nc;
        }
        snprintf(l->names[l->n++], 65, "%s", row->name);
        return 0;
}

static int store_cb(const struct kw_xks_store_row *row, void *arg)
{
        struct walk *w = arg;
        w->r = kw_dbio_add_xks_store(w->d, row);
        return !kw_ok(w->r);
}

static int cred_cb(const struct kw_xks_cred_row *row, void *arg)
{
        struct walk *w = arg;
        if (!row->is_sealed) {
                w->r = KW_FAIL(KW_ERR_BAD_STATE,
                               "XKS credential %s of store %s is still stored in the clear "
                               "(schema 2): start keywardd once (it seals it), then export",
                               row->akid, row->store);
                return 1;
        }
        w->r = kw_dbio_add_xks_cred(w->d, row);
        return !kw_ok(w->r);
}

/* The whole store into d (empty). */
static kw_result walk_store(struct custody *c, struct kw_dbio_doc *d)
{
        struct walk w = { .c = c, .d = d, .r = KW_OK };
        char cursor[65] = "", next[65] = "";
        for (;;) {
                struct kw_key_filter f = { .limit = 1000, .include_destroyed = 1,
                                           .after_name = cursor[0] ? cursor : NULL };
                KW_TRY(kw_keystore_key_list(c->ks, &f, key_cb, &w, next));
                KW_TRY(w.r);
                if (next[0] == '\0')
                        break;
                memcpy(cursor, next, sizeof cursor);
        }
        for (size_t i = 0; i < d->nkeys; i++)
                if (strcmp(d->keys[i].row.state, "destroyed") != 0)
                        KW_TRY(walk_versions(c, &d->keys[i]));
        KW_TRY(kw_keystore_token_list_hashes(c->ks, token_cb, &w));
        KW_TRY(w.r);
        struct name_list users = { 0 };
        kw_result r = kw_keystore_user_list(c->ks, user_cb, &users);
        if (kw_ok(r) && users.bad)
                r = KW_RESULT(KW_ERR_NOMEM);
        for (size_t i = 0; kw_ok(r) && i < users.n; i++) {
                struct kw_user_row u;
                memset(&u, 0, sizeof u);
                r = kw_keystore_user_get(c->ks, users.names[i], &u);
                if (kw_ok(r))
                        r = kw_dbio_add_user(d, &u);
                kw_wipe(&u, sizeof u);
        }
        free(users.names);
        KW_TRY(r);
        KW_TRY(kw_keystore_xks_list(c->ks, store_cb, cred_cb, &w));
        return w.r;
}

/* ---------------------------------------------------------- round trip */

static kw_result try_aes(const struct kw_key_row *row, uint32_t ver, const struct kw_secret *k)
{
        uint8_t pt[32], ct[32], back[32], iv[12], tag[16];
        KW_TRY(kw_random(pt, sizeof pt));
        KW_TRY(kw_random(iv, sizeof iv));
        kw_result r = kw_aes_gcm_encrypt(k->p, k->len, iv, sizeof iv, (const uint8_t *)RT_AAD,
                                         strlen(RT_AAD), pt, sizeof pt, ct, tag, sizeof tag);
        if (kw_ok(r))
                r = kw_aes_gcm_decrypt(k->p, k->len, iv, sizeof iv, (const uint8_t *)RT_AAD,
                                       strlen(RT_AAD), ct, sizeof ct, tag, sizeof tag, back);
        if (kw_ok(r) && !kw_ct_equal(pt, back, sizeof pt))
                r = KW_RESULT(KW_ERR_CRYPTO);
        kw_wipe(pt, sizeof pt);
        kw_wipe(back, sizeof back);
        if (!kw_ok(r))
                r = KW_FAIL(KW_ERR_CRYPTO, "key %s version %u: AES-GCM encrypt+decrypt did not "
                                           "give the block back", row->name, ver);
        return r;
}

/* RSA-OAEP (SHA-256) of a random block with pub, decrypted with priv. */
static kw_result try_rsa(const struct kw_key_row *row, uint32_t ver, EVP_PKEY *priv, EVP_PKEY *pub)
{
        uint8_t pt[32];
        KW_TRY(kw_random(pt, sizeof pt));
        struct kw_buf ct;
        kw_buf_init(&ct, 1024);
        struct kw_secret back = { 0 };
        kw_result r = kw_rsa_oaep_encrypt(pub, "SHA256", pt, sizeof pt, &ct);
        if (kw_ok(r))
                r = kw_rsa_oaep_decrypt(priv, "SHA256", ct.p, ct.len, &back);
        if (kw_ok(r) && (back.len != sizeof pt || !kw_ct_equal(back.p, pt, sizeof pt)))
                r = KW_RESULT(KW_ERR_CRYPTO);
        kw_secret_free(&back);
        kw_buf_free(&ct);
        kw_wipe(pt, sizeof pt);
        if (!kw_ok(r))
                r = KW_FAIL(KW_ERR_CRYPTO, "key %s version %u: RSA-OAEP with %s did not give the "
                                           "block back", row->name, ver,
                            priv == pub ? "its own public half" : "the stored public key");
        return r;
}

/* The current version of an RSA key must be the stored public key's pair. */
static kw_result try_rsa_public(const struct kw_key_row *row, uint32_t ver, EVP_PKEY *priv)
{
        if (row->public_der == NULL || row->public_der_len == 0)
                return KW_FAIL(KW_ERR_DB_CORRUPT, "RSA key %s has no public key", row->name);
        struct kw_buf der;
        kw_buf_init(&der, KW_DBIO_DER_MAX);
        kw_result r = kw_rsa_public_der(priv, &der);
        if (kw_ok(r) && (der.len != row->public_der_len ||
                         memcmp(der.p, row->public_der, der.len) != 0))
                r = KW_FAIL(KW_ERR_DB_CORRUPT, "key %s version %u: the private key does not "
                                               "match the stored public key", row->name, ver);
        kw_buf_free(&der);
        EVP_PKEY *pub = NULL;
        if (kw_ok(r))
                r = kw_rsa_from_public_der(row->public_der, row->public_der_len, &pub);
        if (kw_ok(r))
                r = try_rsa(row, ver, priv, pub);
        kw_pkey_free(pub);
        return r;
}

static kw_result round_trip_version(struct custody *c, const struct kw_key_row *row,
                                    const struct kw_dbio_version *v)
{
        struct kw_ckey_material m = { 0 };
        KW_TRY(custody_key_unseal(c, row, v->version, v->blob, v->blob_len, &m));
        kw_result r;
        if (strcmp(row->type, "AES") == 0) {
                r = try_aes(row, v->version, &m.aes);
        } else if (kw_rsa_bits(m.pkey) != row->size) {
                r = KW_FAIL(KW_ERR_DB_CORRUPT, "key %s version %u: an RSA key of %u bits, the "
                                               "row says %u", row->name, v->version,
                            kw_rsa_bits(m.pkey), row->size);
        } else if (v->version == row->current_version) {
                r = try_rsa_public(row, v->version, m.pkey);
        } else {
                r = try_rsa(row, v->version, m.pkey, m.pkey);
        }
        kw_secret_free(&m.aes);
        kw_pkey_free(m.pkey);
        return r;
}

struct rt_count {
        uint64_t keys, versions, creds;
};

/* Every live key's every version unsealed and used; every XKS secret
 * unsealed.  The first failure names its key. */
static kw_result round_trip(struct custody *c, const struct kw_dbio_doc *d, struct rt_count *ret)
{
        struct rt_count n = { 0 };
        for (size_t i = 0; i < d->nkeys; i++) {
                const struct kw_dbio_key *k = &d->keys[i];
                if (strcmp(k->row.state, "destroyed") == 0)
                        continue;
                for (size_t j = 0; j < k->nversions; j++)
                        KW_TRY(round_trip_version(c, &k->row, &k->versions[j]));
                n.keys++;
                n.versions += k->nversions;
        }
        for (size_t i = 0; i < d->nstores; i++)
                for (size_t j = 0; j < d->stores[i].ncreds; j++, n.creds++)
                        KW_TRY(custody_xks_cred_check(c, &d->stores[i].creds[j]));
        *ret = n;
        return KW_OK;
}

/* --------------------------------------------------------------- files */

static kw_result write_all(int fd, const uint8_t *p, size_t n, const char *what)
{
        size_t off = 0;
        while (off < n) {
                ssize_t w = write(fd, p + off, n - off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return KW_FAIL(KW_ERR_IO, "cannot write %s: %s", what, strerror(errno));
                off += (size_t)w;
        }
        return KW_OK;
}

/* path written atomically: a 0600 temp file beside it, fsync, rename. */
static kw_result write_file_atomic(const char *path, const struct kw_buf *b)
{
        char tmp[4200];
        KW_ENSURE(snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) < (int)sizeof tmp,
                  KW_ERR_IO);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return KW_FAIL(KW_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
        kw_result r = write_all(fd, b->p, b->len, tmp);
        if (kw_ok(r) && fsync(fd) != 0)
                r = KW_FAIL(KW_ERR_IO, "cannot sync %s: %s", tmp, strerror(errno));
        if (close(fd) != 0 && kw_ok(r))
                r = KW_FAIL(KW_ERR_IO, "cannot close %s: %s", tmp, strerror(errno));
        if (kw_ok(r) && rename(tmp, path) != 0)
                r = KW_FAIL(KW_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        if (!kw_ok(r)) {
                unlink(tmp);
                return r;
        }
        kw_fsync_parent(path);
        return KW_OK;
}

/* "-": standard output; "/dev/fd/N": that descriptor, inherited (from
 * keywardctl: /proc/self/fd is closed to a process that is not dumpable);
 * -1: a file path. */
static int out_fd(const char *path)
{
        if (strcmp(path, "-") == 0)
                return 1;
        if (strncmp(path, "/dev/fd/", 8) != 0)
                return -1;
        char *end = NULL;
        long n = strtol(path + 8, &end, 10);
        return end != path + 8 && *end == '\0' && n >= 0 && n < 1024 ? (int)n : -1;
}

static kw_result read_doc(const char *path, struct kw_buf *out)
{
        kw_buf_init(out, (size_t)KW_DBIO_MAX_BYTES + 1);
        if (strcmp(path, "-") == 0)
                return kw_read_fd(0, "standard input", KW_DBIO_MAX_BYTES, out);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return KW_FAIL(KW_ERR_IO, "cannot open %s: %s", path, strerror(errno));
        kw_result r = kw_read_fd(fd, path, KW_DBIO_MAX_BYTES, out);
        close(fd);
        return r;
}

static void now_rfc3339(char out[32])
{
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *engine_of(const struct kw_config *cfg)
{
        return cfg->db.engine != NULL && strcmp(cfg->db.engine, "postgresql") == 0 ? "postgresql"
                                                                                   : "sqlcipher";
}

static void print_counts(FILE *f, const char *verb, const struct kw_dbio_doc *d, const char *engine)
{
        struct kw_dbio_counts n;
        kw_dbio_counts(d, &n);
        fprintf(f, "%s %llu keys (%llu destroyed), %llu versions, %llu tokens, %llu users, "
                   "%llu XKS stores (%llu credentials) %s %s\n",
                verb, (unsigned long long)n.keys, (unsigned long long)n.destroyed,
                (unsigned long long)n.versions, (unsigned long long)n.tokens,
                (unsigned long long)n.users, (unsigned long long)n.xks_stores,
                (unsigned long long)n.xks_credentials,
                strcmp(verb, "imported") == 0 ? "into" : "from", engine);
}

/* -------------------------------------------------------------- export */

/* Both modes use the master key the store (or the file) was sealed with:
 * never one made now; and an export reads a store that exists. */
static int check_target(struct kw_config *cfg, int exporting)
{
        kw_config_wipe_secrets(cfg);   /* the TLS and SigV4 secrets: none is needed here */
        cfg->hsm.create_master_key = false;
        if (exporting && strcmp(engine_of(cfg), "sqlcipher") == 0 &&
            access(cfg->db.path, F_OK) != 0) {
                fprintf(stderr, "keywardd: [db] path %s: %s: nothing to export\n", cfg->db.path,
                        strerror(errno));
                return EXIT_CONFIG;
        }
        return 0;
}

int kw_custody_db_export(struct kw_config *cfg, const char *path)
{
        static struct custody c;
        c.cfg = cfg;
        int status = check_target(cfg, 1);
        if (status != 0)
                return status;
        if (custody_open_oneshot(&c, "db-export", &status) != 0)
                return status;
        FILE *rep = strcmp(path, "-") == 0 ? stderr : stdout;
        struct kw_dbio_doc d, again, check;
        kw_dbio_doc_init(&d);
        kw_dbio_doc_init(&again);
        kw_dbio_doc_init(&check);
        struct kw_buf out;
        kw_buf_init(&out, (size_t)KW_DBIO_MAX_BYTES);
        struct rt_count rt = { 0 };
        uint8_t sum[32], sum2[32], sum3[32], file_sha[32];
        snprintf(d.engine, sizeof d.engine, "%s", engine_of(cfg));
        snprintf(d.master_key_label, sizeof d.master_key_label, "%s", cfg->hsm.master_key_label);
        now_rfc3339(d.created);
        const char *step = "read the key store";
        kw_result r = walk_store(&c, &d);
        if (kw_ok(r)) {
                step = "round trip";
                r = round_trip(&c, &d, &rt);
        }
        if (kw_ok(r)) {
                /* the store did not change under the walk (a change made
                 * meanwhile through a running keywardd) */
                step = "read the key store again";
                r = walk_store(&c, &again);
                if (kw_ok(r))
                        r = kw_dbio_checksum(&d, sum);
                if (kw_ok(r))
                        r = kw_dbio_checksum(&again, sum2);
                if (kw_ok(r) && !kw_ct_equal(sum, sum2, 32))
                        r = KW_FAIL(KW_ERR_BAD_STATE, "the keys changed while they were read (a "
                                                      "running keywardd?): stop admin changes and "
                                                      "export again");
        }
        if (kw_ok(r)) {
                step = "write the document";
                r = kw_dbio_write(&d, &out);
        }
        if (kw_ok(r)) {
                /* what is written parses back to the same keys */
                step = "check the document";
                r = kw_dbio_parse(out.p, out.len, &check);
                if (kw_ok(r))
                        r = kw_dbio_checksum(&check, sum3);
                if (kw_ok(r) && !kw_ct_equal(sum, sum3, 32))
                        r = KW_FAIL(KW_ERR_INTERNAL, "the document does not parse back to the "
                                                     "same keys");
        }
        if (kw_ok(r)) {
                step = "write the file";
                kw_sha256(out.p, out.len, file_sha);
                int fd = out_fd(path);
                r = fd >= 0 ? write_all(fd, out.p, out.len, path) : write_file_atomic(path, &out);
        }
        if (kw_ok(r)) {
                char hex[65], fhex[65], detail[200];
                kw_dbio_hex(sum, 32, hex);
                kw_dbio_hex(file_sha, 32, fhex);
                snprintf(detail, sizeof detail, "%zu keys; file sha256 %s", d.nkeys, fhex);
                struct kw_audit_entry au = { .actor = ACTOR_EXPORT, .action = "db.export",
                                             .result = "ok", .detail = detail };
                /* the export is a read: its record is a key-use style one */
                kw_ignore(kw_keystore_audit_append(c.ks, &au, 1));
                print_counts(rep, "exported", &d, d.engine);
                fprintf(rep, "round trip: %llu keys, %llu versions: ok\n",
                        (unsigned long long)rt.keys, (unsigned long long)rt.versions);
                fprintf(rep, "XKS credentials unsealed: %llu: ok\n", (unsigned long long)rt.creds);
                fprintf(rep, "checksum: %s\n", hex);
                fprintf(rep, "sha256: %s  %s\n", fhex, strcmp(path, "-") == 0 ? "-" : path);
                fflush(rep);
        } else {
                status = say_fail(step, r);
        }
        kw_buf_free(&out);
        kw_dbio_doc_free(&d);
        kw_dbio_doc_free(&again);
        kw_dbio_doc_free(&check);
        custody_close_oneshot(&c);
        return status;
}

/* -------------------------------------------------------------- import */

static int cred_ignore_cb(const struct kw_xks_cred_row *row, void *arg)
{
        (void)row;
        (void)arg;
        return 0;
}

static kw_result target_empty(struct custody *c)
{
        uint64_t tokens = 0;
        struct name_list users = { 0 };
        struct kw_dbio_doc probe;
        kw_dbio_doc_init(&probe);
        struct walk w = { .c = c, .d = &probe, .r = KW_OK };
        char next[65];
        struct kw_key_filter f = { .limit = 1, .include_destroyed = 1 };
        kw_result r = kw_keystore_key_list(c->ks, &f, key_cb, &w, next);
        if (kw_ok(r))
                r = w.r;
        if (kw_ok(r))
                r = kw_keystore_token_count(c->ks, &tokens);
        if (kw_ok(r))
                r = kw_keystore_user_list(c->ks, user_cb, &users);
        if (kw_ok(r))
                r = kw_keystore_xks_list(c->ks, store_cb, cred_ignore_cb, &w);
        if (kw_ok(r))
                r = w.r;
        if (kw_ok(r) && (probe.nkeys || tokens || users.n || probe.nstores))
                r = KW_FAIL(KW_ERR_BAD_STATE,
                            "the target key store is not empty (it holds %s%s%s%s%s%s%s): "
                            "import only into an empty store (a new [db] path, or a fleet "
                            "database no node has been started on); nothing was written",
                            probe.nkeys ? "keys" : "", probe.nkeys && tokens ? ", " : "",
                            tokens ? "tokens" : "",
                            (probe.nkeys || tokens) && users.n ? ", " : "",
                            users.n ? "users" : "",
                            (probe.nkeys || tokens || users.n) && probe.nstores ? ", " : "",
                            probe.nstores ? "XKS stores" : "");
        free(users.names);
        kw_dbio_doc_free(&probe);
        return r;
}

static kw_result import_key(struct custody *c, const struct kw_dbio_key *k)
{
        char detail[160];
        struct kw_audit_entry au = { .actor = ACTOR_IMPORT, .action = "db.import",
                                     .key_name = k->row.name, .result = "ok", .detail = detail };
        struct kw_key_row row = k->row;   /* heap members borrowed, not freed here */
        if (strcmp(k->row.state, "destroyed") == 0) {
                /* a tombstone: the row, made and destroyed at once (the
                 * placeholder blob is deleted by the destruction, overwritten) */
                static const uint8_t placeholder[1] = { 0 };
                snprintf(row.state, sizeof row.state, "disabled");
                row.ops = strcmp(row.type, "AES") == 0 ? KW_KEYOP_ALL
                                                       : (KW_KEYOP_WRAP | KW_KEYOP_UNWRAP);
                row.current_version = 1;
                row.tags_json = row.rules_json = NULL;
                row.public_der = NULL;
                row.public_der_len = 0;
                row.delete_at = 0;
                snprintf(detail, sizeof detail, "tombstone of key %s", k->row.id);
                KW_TRY(kw_keystore_key_insert(c->ks, &row, placeholder, sizeof placeholder, &au));
                snprintf(detail, sizeof detail, "destroyed (as in the export)");
                return kw_keystore_key_destroy(c->ks, k->row.id, &au);
        }
        KW_ENSURE(k->nversions == k->row.current_version && k->nversions >= 1, KW_ERR_INTERNAL);
        snprintf(detail, sizeof detail, "key %s version 1 of %u", k->row.id, k->row.current_version);
        KW_TRY(kw_keystore_key_insert(c->ks, &row, k->versions[0].blob, k->versions[0].blob_len, &au));
        for (size_t i = 1; i < k->nversions; i++) {
                snprintf(detail, sizeof detail, "key %s version %u of %u", k->row.id,
                         k->versions[i].version, k->row.current_version);
                /* the row already has the current version's public key */
                KW_TRY(kw_keystore_key_add_version(c->ks, k->row.id, k->versions[i].version,
                                                   k->versions[i].blob, k->versions[i].blob_len,
                                                   NULL, 0, &au));
        }
        if (k->nversions > 1) {
                /* the state, operations, tags, rules and times as exported */
                snprintf(detail, sizeof detail, "state %s, operations, tags, rules as exported",
                         k->row.state);
                KW_TRY(kw_keystore_key_update(c->ks, &row, &au));
        }
        return KW_OK;
}

static kw_result import_rows(struct custody *c, const struct kw_dbio_doc *d)
{
        char detail[160];
        struct kw_audit_entry au = { .actor = ACTOR_IMPORT, .action = "db.import", .result = "ok",
                                     .detail = detail };
        for (size_t i = 0; i < d->nkeys; i++) {
                kw_result r = import_key(c, &d->keys[i]);
                if (!kw_ok(r)) {
                        char why[300];
                        snprintf(why, sizeof why, "%s", kw_err_detail());
                        return KW_FAIL(r.code, "key %s: %s", d->keys[i].row.name, why);
                }
        }
        for (size_t i = 0; i < d->ntokens; i++) {
                struct kw_token_row t = d->tokens[i].row;
                t.revoked = 0;
                snprintf(detail, sizeof detail, "token %s (%s, id %s)", t.name, t.role, t.id);
                KW_TRY(kw_keystore_token_insert(c->ks, &t, d->tokens[i].hash, &au));
        }
        for (size_t i = 0; i < d->nusers; i++) {
                snprintf(detail, sizeof detail, "console user %s (%s)", d->users[i].name,
                         d->users[i].role);
                KW_TRY(kw_keystore_user_insert(c->ks, &d->users[i], &au));
        }
        for (size_t i = 0; i < d->nstores; i++) {
                const struct kw_dbio_xks_store *s = &d->stores[i];
                snprintf(detail, sizeof detail, "XKS store %s, credential %s", s->row.name,
                         s->creds[0].akid);
                KW_TRY(kw_keystore_xks_store_insert(c->ks, &s->row, &s->creds[0], &au));
                for (size_t j = 1; j < s->ncreds; j++) {
                        snprintf(detail, sizeof detail, "XKS store %s, credential %s", s->row.name,
                                 s->creds[j].akid);
                        KW_TRY(kw_keystore_xks_cred_add(c->ks, &s->creds[j],
                                                        (unsigned)s->ncreds, &au));
                }
        }
        /* revoked tokens last: every admin credential is in by now, so the
         * last-admin rule sees what the source saw */
        for (size_t i = 0; i < d->ntokens; i++) {
                if (d->tokens[i].row.revoked == 0)
                        continue;
                snprintf(detail, sizeof detail, "token %s revoked (as in the export)",
                         d->tokens[i].row.name);
                kw_result r = kw_keystore_token_revoke(c->ks, d->tokens[i].row.id, &au);
                if (!kw_ok(r)) {
                        char why[300];
                        snprintf(why, sizeof why, "%s", kw_err_detail());
                        return KW_FAIL(r.code, "token %s: %s", d->tokens[i].row.name, why);
                }
        }
        return KW_OK;
}

/* The target read back against the file: the checksum of the keys, and
 * the tokens, users and XKS stores one by one. */
static kw_result verify_target(const struct kw_dbio_doc *want, const struct kw_dbio_doc *got)
{
        uint8_t a[32], b[32];
        KW_TRY(kw_dbio_checksum(want, a));
        KW_TRY(kw_dbio_checksum(got, b));
        if (!kw_ct_equal(a, b, 32))
                return KW_FAIL(KW_ERR_DB_CORRUPT, "the keys read back from the target do not "
                                                  "have the file's checksum");
        struct kw_dbio_counts x, y;
        kw_dbio_counts(want, &x);
        kw_dbio_counts(got, &y);
        if (memcmp(&x, &y, sizeof x) != 0)
                return KW_FAIL(KW_ERR_DB_CORRUPT, "the target holds other counts than the file");
        for (size_t i = 0; i < want->ntokens; i++) {
                const struct kw_dbio_token *w = &want->tokens[i];
                int found = 0;
                for (size_t j = 0; j < got->ntokens && !found; j++) {
                        const struct kw_dbio_token *g = &got->tokens[j];
                        found = strcmp(w->row.id, g->row.id) == 0 &&
                                strcmp(w->row.name, g->row.name) == 0 &&
                                strcmp(w->row.role, g->row.role) == 0 &&
                                (w->row.revoked != 0) == (g->row.revoked != 0) &&
                                kw_ct_equal(w->hash, g->hash, 32);
                }
                if (!found)
                        return KW_FAIL(KW_ERR_DB_CORRUPT, "token %s differs in the target",
                                       w->row.name);
        }
        for (size_t i = 0; i < want->nusers; i++) {
                int found = 0;
                for (size_t j = 0; j < got->nusers && !found; j++)
                        found = strcmp(want->users[i].name, got->users[j].name) == 0 &&
                                strcmp(want->users[i].role, got->users[j].role) == 0 &&
                                strcmp(want->users[i].hash, got->users[j].hash) == 0; /* lint: allow (stored hashes, both public to this process) */
                if (!found)
                        return KW_FAIL(KW_ERR_DB_CORRUPT, "user %s differs in the target",
                                       want->users[i].name);
        }
        for (size_t i = 0; i < want->nstores; i++) {
                const struct kw_dbio_xks_store *s = &want->stores[i], *t = NULL;
                for (size_t j = 0; j < got->nstores && t == NULL; j++)
                        if (strcmp(s->row.name, got->stores[j].row.name) == 0)
                                t = &got->stores[j];
                int same = t != NULL && strcmp(s->row.uri_prefix, t->row.uri_prefix) == 0 &&
                           strcmp(s->row.region, t->row.region) == 0 && s->ncreds == t->ncreds;
                for (size_t j = 0; same && j < s->ncreds; j++)
                        same = strcmp(s->creds[j].akid, t->creds[j].akid) == 0 &&
                               s->creds[j].secret_len == t->creds[j].secret_len &&
                               kw_ct_equal(s->creds[j].secret, t->creds[j].secret,
                                           s->creds[j].secret_len);
                if (!same)
                        return KW_FAIL(KW_ERR_DB_CORRUPT, "XKS store %s differs in the target",
                                       s->row.name);
        }
        return KW_OK;
}

int kw_custody_db_import(struct kw_config *cfg, const char *path)
{
        /* the file first, as whoever started us (it may be root's): nothing
         * is opened, nothing written, unless it is whole and consistent */
        struct kw_buf in;
        struct kw_dbio_doc d, got;
        kw_dbio_doc_init(&d);
        kw_dbio_doc_init(&got);
        kw_result r = read_doc(path, &in);
        uint8_t file_sha[32];
        if (kw_ok(r)) {
                kw_sha256(in.p, in.len, file_sha);
                r = kw_dbio_parse(in.p, in.len, &d);
        }
        kw_buf_free(&in);
        if (!kw_ok(r)) {
                kw_dbio_doc_free(&d);
                return say_fail(strcmp(path, "-") == 0 ? "the export file" : path, r);
        }
        if (strcmp(d.master_key_label, cfg->hsm.master_key_label) != 0)
                fprintf(stderr, "keywardd: note: the export names master key '%s', [hsm] "
                                "master_key_label is '%s' (the round trip decides)\n",
                        d.master_key_label, cfg->hsm.master_key_label);
        static struct custody c;
        c.cfg = cfg;
        int status = check_target(cfg, 0);
        if (status != 0 || custody_open_oneshot(&c, "db-import", &status) != 0) {
                kw_dbio_doc_free(&d);
                return status;
        }
        struct rt_count rt = { 0 }, rt2 = { 0 };
        const char *step = "target";
        r = target_empty(&c);
        if (kw_ok(r)) {
                /* before anything is written: the file's material opens
                 * under this HSM's master key */
                step = "round trip of the file (nothing written)";
                r = round_trip(&c, &d, &rt);
        }
        if (kw_ok(r)) {
                step = "import (the target holds a partial import now: remove it before trying "
                       "again)";
                r = import_rows(&c, &d);
        }
        if (kw_ok(r)) {
                step = "verify (the target holds the import; do not use it)";
                r = walk_store(&c, &got);
                if (kw_ok(r))
                        r = verify_target(&d, &got);
                if (kw_ok(r))
                        r = round_trip(&c, &got, &rt2);
        }
        if (kw_ok(r)) {
                uint8_t sum[32];
                char hex[65], fhex[65];
                kw_ignore(kw_dbio_checksum(&got, sum));
                kw_dbio_hex(sum, 32, hex);
                kw_dbio_hex(file_sha, 32, fhex);
                print_counts(stdout, "imported", &d, engine_of(cfg));
                printf("checksum: %s (the file's, recomputed from the target)\n", hex);
                printf("round trip: %llu keys, %llu versions: ok\n", (unsigned long long)rt2.keys,
                       (unsigned long long)rt2.versions);
                printf("XKS credentials unsealed: %llu: ok\n", (unsigned long long)rt2.creds);
                printf("sha256: %s  %s\n", fhex, path);
                fflush(stdout);
        } else {
                status = say_fail(step, r);
        }
        kw_dbio_doc_free(&d);
        kw_dbio_doc_free(&got);
        custody_close_oneshot(&c);
        return status;
}
