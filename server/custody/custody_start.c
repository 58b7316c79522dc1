/*
 * custody_start.c - the custody process's start-up and end: privileges and
 * sandbox, the HSM link, the database key, the key store, the first admin
 * token, the socket; the console recovery of admin access
 * (keywardd --recover-admin); creating a key store without serving
 * (keywardd --init); the deletion sweeper; audit retention's
 * thread is started here (custody_retention.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../common/b64.h"
#include "../common/fsync_dir.h"
#include "../common/log.h"
#include "../common/sandbox.h"
#include "../common/sdproto.h"
#include "../common/secret.h"
#include "crypto.h"
#include "custody.h"
#include "custody_int.h"

#define DBKEY_MAGIC "KWDBKEY1"
#define DBKEY_AAD "keyward.dbkey.v1"
#define MEMLOCK_SLACK (4u << 20)   /* beyond the secure heap: stacks, OpenSSL */

/* Writes data to path atomically: temp file 0600, fsync, rename, fsync dir. */
static kw_result write_file_atomic(const char *path, const void *data, size_t n)
{
        char tmp[4200];
        KW_ENSURE(snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) < (int)sizeof tmp,
                  KW_ERR_IO);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
                kw_err_set_detail("cannot create %s: %s", tmp, strerror(errno));
                KW_BAIL(KW_ERR_IO);
        }
        const uint8_t *p = data;
        size_t off = 0;
        while (off < n) {
                ssize_t w = write(fd, p + off, n - off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0) {
                        kw_err_set_detail("cannot write %s: %s", tmp, strerror(errno));
                        close(fd);
                        unlink(tmp);
                        KW_BAIL(KW_ERR_IO);
                }
                off += (size_t)w;
        }
        if (fsync(fd) != 0 || close(fd) != 0) {
                kw_err_set_detail("cannot sync %s: %s", tmp, strerror(errno));
                unlink(tmp);
                KW_BAIL(KW_ERR_IO);
        }
        if (rename(tmp, path) != 0) {
                kw_err_set_detail("cannot rename %s to %s: %s", tmp, path, strerror(errno));
                unlink(tmp);
                KW_BAIL(KW_ERR_IO);
        }
        kw_fsync_parent(path);
        return KW_OK;
}

static kw_result read_small_file(const char *path, struct kw_buf *out)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                int e = errno;
                struct passwd *pw = e == EACCES ? getpwuid(geteuid()) : NULL;
                kw_err_set_detail("cannot read %s: %s%s%s%s", path, strerror(e),
                                  pw ? " (the custody process runs as " : "",
                                  pw ? pw->pw_name : "", pw ? ": give the file to that user)" : "");
                KW_BAIL(KW_ERR_IO);
        }
        uint8_t tmp[4096];
        for (;;) {
                ssize_t n = read(fd, tmp, sizeof tmp);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        kw_err_set_detail("cannot read %s: %s", path, strerror(errno));
                        close(fd);
                        KW_BAIL(KW_ERR_IO);
                }
                if (n == 0)
                        break;
                kw_result r = kw_buf_put(out, tmp, (size_t)n);
                if (r.code != 0) {
                        kw_err_set_detail("%s is too large", path);
                        close(fd);
                        return r;
                }
        }
        close(fd);
        return KW_OK;
}

static int file_exists(const char *path)
{
        struct stat st;
        return stat(path, &st) == 0;
}

static int fail(int status, const char *what, kw_result r)
{
        const char *d = kw_err_detail();
        kw_log(KW_LOG_ERROR, "startup_failed", "step", what, "error", kw_err_name(r.code),
               "message", d[0] ? d : kw_strerror(r.code), KW_END);
        return status;
}

/* The database key: unsealed from key_file, or made and sealed on first start. */
kw_result load_db_key(struct custody *c, int db_exists, struct kw_secret *ret)
{
        const struct kw_config *cfg = c->cfg;
        const char *kf = cfg->db.key_file;
        if (!file_exists(kf)) {
                if (db_exists) {
                        kw_err_set_detail("the database %s exists but its key file %s is missing; "
                                          "restore the key file from backup", cfg->db.path, kf);
                        KW_BAIL(KW_ERR_DB_KEY_MISMATCH);
                }
                struct kw_secret k;
                KW_TRY(kw_secret_alloc(32, &k));
                kw_result r = kw_random(k.p, k.len);
                struct kw_buf file;
                kw_buf_init(&file, 4096);
                if (r.code == 0)
                        r = kw_buf_put_str(&file, DBKEY_MAGIC);
                if (r.code == 0)
                        r = kw_hsm_seal(c->hsm, (const uint8_t *)DBKEY_AAD, strlen(DBKEY_AAD), k.p,
                                        k.len, &file);
                if (r.code == 0)
                        r = write_file_atomic(kf, file.p, file.len);
                kw_buf_free(&file);
                if (r.code != 0) {
                        kw_secret_free(&k);
                        return r;
                }
                kw_log(KW_LOG_INFO, "db_key_created", "key_file", kf, KW_END);
                *ret = k;
                return KW_OK;
        }
        struct kw_buf file;
        kw_buf_init(&file, 4096);
        kw_result r = read_small_file(kf, &file);
        if (r.code == 0 && (file.len < strlen(DBKEY_MAGIC) ||
                            memcmp(file.p, DBKEY_MAGIC, strlen(DBKEY_MAGIC)) != 0)) {
                kw_err_set_detail("%s is not a Keyward database key file", kf);
                r = KW_RESULT(KW_ERR_DB_KEY_MISMATCH);
        }
        if (r.code == 0) {
                size_t m = strlen(DBKEY_MAGIC);
                r = kw_hsm_unseal(c->hsm, (const uint8_t *)DBKEY_AAD, strlen(DBKEY_AAD), file.p + m,
                                  file.len - m, ret);
                if (r.code == KW_ERR_HSM_UNWRAP)
                        kw_err_set_detail("the master key '%s' cannot unwrap the database key in %s "
                                          "(another token or master key?)",
                                          cfg->hsm.master_key_label, kf);
                if (r.code == 0 && ret->len != 32) {
                        kw_secret_free(ret);
                        kw_err_set_detail("the database key in %s has the wrong length", kf);
                        r = KW_RESULT(KW_ERR_DB_KEY_MISMATCH);
                }
        }
        kw_buf_free(&file);
        return r;
}

/* A new bearer token "kw_" + base64url(32 random bytes) for row (id made
 * here), written to file (0600, atomically) before it is stored: a token in
 * the database that nobody holds is useless. */
static kw_result mint_token(struct custody *c, struct kw_token_row *row, const char *file,
                            const struct kw_audit_entry *au)
{
        uint8_t hash[32];
        struct kw_buf tok;
        kw_buf_init(&tok, 128);
        kw_result r = token_generate(row, &tok, hash);
        if (r.code == 0)
                r = kw_buf_put(&tok, "\n", 1);
        if (r.code == 0)
                r = write_file_atomic(file, tok.p, tok.len);
        if (r.code == 0)
                r = kw_keystore_token_insert(c->ks, row, hash, au);
        kw_buf_free(&tok);
        kw_wipe(hash, sizeof hash);
        return r;
}

/* 64 hex digits (either case; config.c checked) -> 32 bytes.  ret_hash is
 * untouched on failure. */
KW_MUST_USE static kw_result sha256_from_hex(const char *hex, uint8_t ret_hash[32])
{
        uint8_t h[32];
        KW_ENSURE(strlen(hex) == 64, KW_ERR_CONFIG);
        for (size_t i = 0; i < 32; i++) {
                int hi = kw_hex_value((uint8_t)hex[2 * i]), lo = kw_hex_value((uint8_t)hex[2 * i + 1]);
                if (hi < 0 || lo < 0) {
                        kw_wipe(h, sizeof h);
                        KW_BAIL(KW_ERR_CONFIG);
                }
                h[i] = (uint8_t)(hi << 4 | lo);
        }
        memcpy(ret_hash, h, sizeof h);
        kw_wipe(h, sizeof h);
        return KW_OK;
}

/* The first admin token from its SHA-256 ([admin] initial_token_sha256):
 * the customer holds the token, nothing is written but the row. */
KW_MUST_USE static kw_result adopt_token(struct custody *c, struct kw_token_row *row,
                                         const char *hex, const struct kw_audit_entry *au)
{
        uint8_t hash[32];
        kw_result r = sha256_from_hex(hex, hash);
        if (r.code != 0)
                kw_err_set_detail("[admin] initial_token_sha256 is not 64 hex digits");
        if (r.code == 0)
                r = token_row_stamp(row);
        if (r.code == 0)
                r = kw_keystore_token_insert(c->ks, row, hash, au);
        kw_wipe(hash, sizeof hash);
        return r;
}

/* The first admin token, only in a key store that never had a token: a
 * store whose tokens were all revoked is not "new" (the last admin token
 * cannot be revoked; recovery is keywardd --recover-admin).  From
 * [admin] initial_token_sha256 when set, else made here and written to
 * [admin] token_file.  *ret_how (may be NULL): "exists", "token_file" or
 * "initial_token_sha256"; set only on success. */
KW_MUST_USE static kw_result ensure_first_token(struct custody *c, const char **ret_how)
{
        const struct kw_config *cfg = c->cfg;
        uint64_t n = 0;
        KW_TRY(kw_keystore_token_count(c->ks, &n));
        const char *how = "exists";
        if (n == 0) {
                struct kw_token_row row;
                memset(&row, 0, sizeof row);
                snprintf(row.name, sizeof row.name, "initial-admin");
                snprintf(row.role, sizeof row.role, "admin");
                int given = cfg->admin.initial_token_sha256 != NULL &&
                            cfg->admin.initial_token_sha256[0] != '\0';
                struct kw_audit_entry au = {
                        .actor = "custody", .action = "token.create", .result = "ok",
                        .detail = given ? "initial admin token ([admin] initial_token_sha256)"
                                        : "initial admin token",
                };
                how = given ? "initial_token_sha256" : "token_file";
                if (!given && (cfg->admin.token_file == NULL || cfg->admin.token_file[0] == '\0')) {
                        kw_err_set_detail("the key store has no admin token yet and neither [admin] "
                                          "initial_token_sha256 nor token_file is set: set one of "
                                          "them for the first admin token");
                        KW_BAIL(KW_ERR_CONFIG);
                }
                KW_TRY(given ? adopt_token(c, &row, cfg->admin.initial_token_sha256, &au)
                             : mint_token(c, &row, cfg->admin.token_file, &au));
                kw_log(KW_LOG_INFO, "admin_token_created", "source", how, "token_file",
                       given ? KW_LOG_OMIT : cfg->admin.token_file, "token_id", row.id, KW_END);
        }
        if (ret_how != NULL)
                *ret_how = how;
        return KW_OK;
}

/* The socket, bound while this process may still hand it to the front's
 * group (root): owner the custody user, group the front's, mode 0660; the
 * directory is the parent's (main.c).  Unprivileged: 0600. */
static kw_result open_socket(const char *path, const struct kw_identity *me,
                             const struct kw_identity *front, int *ret_fd)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof sa.sun_path) {
                kw_err_set_detail("custody socket path too long: %s", path);
                KW_BAIL(KW_ERR_CONFIG);
        }
        memcpy(sa.sun_path, path, strlen(path) + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        KW_ENSURE(fd >= 0, KW_ERR_IO);
        unlink(path);   /* a stale socket from a previous run */
        mode_t old = umask(0077);
        int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
        umask(old);
        if (rc == 0 && me->change &&
            (chown(path, me->uid, front->gid) != 0 || chmod(path, 0660) != 0))
                rc = -1;
        if (rc != 0 || listen(fd, 128) != 0) {
                kw_err_set_detail("cannot listen on %s: %s", path, strerror(errno));
                close(fd);
                KW_BAIL(KW_ERR_IO);
        }
        *ret_fd = fd;
        return KW_OK;
}

/* The parent's word on the front: "front <pid>\n" whenever it starts one. */
static void *control_thread(void *arg)
{
        int fd = (int)(intptr_t)arg;
        char line[64];
        size_t n = 0;
        for (;;) {
                ssize_t k = read(fd, line + n, 1);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;   /* the parent is gone: PDEATHSIG ends us */
                if (line[n] != '\n') {
                        if (++n == sizeof line - 1)
                                n = 0;   /* not ours: drop the line */
                        continue;
                }
                line[n] = '\0';
                n = 0;
                long pid = 0;
                unsigned long uid = 0;
                if (sscanf(line, "front %ld %lu", &pid, &uid) == 2 && pid > 0)
                        custody_allow_front((pid_t)pid, (uid_t)uid);
        }
        close(fd);
        return NULL;
}

/* Started as root: the secure heap must really be locked, so the limit is
 * raised while we still may.  Unprivileged: as far as the hard limit goes. */
static void raise_memlock(const struct kw_config *cfg)
{
        struct rlimit rl;
        if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0)
                return;
        rlim_t want = (rlim_t)cfg->db.secure_heap_bytes * 2 + MEMLOCK_SLACK;
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
                struct rlimit nl = { want, rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want
                                                   ? rl.rlim_max : want };
                if (setrlimit(RLIMIT_MEMLOCK, &nl) != 0 && rl.rlim_max != RLIM_INFINITY) {
                        nl.rlim_cur = rl.rlim_max;
                        nl.rlim_max = rl.rlim_max;
                        (void)setrlimit(RLIMIT_MEMLOCK, &nl);
                }
        }
}

/* What open_store made (keywardd --init says it). */
struct store_report {
        int master_key_created;
        int database_created;
};

/* The HSM's settings (whether a master key may be made is the caller's). */
static struct kw_hsm_config hsm_config(const struct kw_config *cfg, int create)
{
        return (struct kw_hsm_config){
                .module = cfg->hsm.module, .token_label = cfg->hsm.token_label,
                .pin_file = cfg->hsm.pin_file, .master_key_label = cfg->hsm.master_key_label,
                .create_master_key = cfg->hsm.create_master_key && create,
                .sessions = (unsigned)cfg->hsm.sessions, .timeout_ms = (unsigned)cfg->hsm.timeout_ms,
                .retry_interval_ms = (unsigned)cfg->hsm.retry_interval_ms,
        };
}

/* Fleet mode: the PostgreSQL store (custody_fleet.c). */
static int open_fleet_store(struct custody *c, struct store_report *ret_report, int *ret_status)
{
        struct kw_hsm_config hc = hsm_config(c->cfg, 1);
        int created = 0, fresh = 0, stage = 5;
        kw_result r = custody_fleet_open(c, &hc, &created, &fresh, &stage);
        if (r.code != 0)
                return *ret_status = fail(stage, stage == 4 ? "hsm" : "database", r), -1;
        if (ret_report != NULL)
                *ret_report = (struct store_report){ created, fresh };
        return 0;
}

/* Everything up to a key store ready for requests (shared with recovery and
 * keywardd --init).  ret_report may be NULL. */
static int open_store(struct custody *c, struct store_report *ret_report, int *ret_status)
{
        const struct kw_config *cfg = c->cfg;
        if (custody_fleet_mode(cfg))
                return open_fleet_store(c, ret_report, ret_status);
        int db_exists = file_exists(cfg->db.path);
        /* a database, or a database key sealed under some master key, says a
         * master key was there: a new one would open neither, so none is
         * made (a key file left by an earlier attempt that stopped before
         * the database was written counts too) */
        int key_exists = file_exists(cfg->db.key_file);
        struct kw_hsm_config hc = hsm_config(cfg, !db_exists && !key_exists);
        int created = 0;
        kw_result r = kw_hsm_open(&hc, &c->hsm, &created);
        if (r.code == KW_ERR_HSM_NO_MASTER_KEY && (db_exists || key_exists) &&
            cfg->hsm.create_master_key)
                kw_err_set_detail("master key '%s' is missing from token '%s' but the %s %s "
                                  "exists: it cannot be opened without that key (is it the right "
                                  "token?)",
                                  cfg->hsm.master_key_label, cfg->hsm.token_label,
                                  db_exists ? "database" : "database key file",
                                  db_exists ? cfg->db.path : cfg->db.key_file);
        if (r.code != 0)
                return *ret_status = fail(4, "hsm", r), -1;
        if (created)
                kw_log(KW_LOG_INFO, "master_key_created", "label", cfg->hsm.master_key_label,
                       "token", cfg->hsm.token_label, KW_END);
        struct kw_secret dbkey = { 0 };
        r = load_db_key(c, db_exists, &dbkey);
        if (r.code != 0)
                return *ret_status = fail(r.code <= KW_ERR_HSM && r.code > KW_ERR_TPM ? 4 : 5,
                                          "database key", r), -1;
        r = kw_keystore_open(cfg->db.path, &dbkey, &c->ks);
        kw_secret_free(&dbkey);
        if (r.code != 0)
                return *ret_status = fail(5, "database", r), -1;
        if (ret_report != NULL)
                *ret_report = (struct store_report){ created, !db_exists };
        return 0;
}

/* Identity, limits, privileges and secure memory, in that order. */
static int become_custody(const struct kw_config *cfg, struct kw_identity *me,
                          struct kw_identity *front, int *ret_status)
{
        kw_result r = kw_identity_resolve(cfg->custody.user, me);
        if (r.code == 0)
                r = kw_identity_resolve(cfg->front.user, front);
        if (r.code != 0)
                return *ret_status = fail(2, "users", r), -1;
        raise_memlock(cfg);
        kw_caps_drop_bounding();
        return 0;
}

/* Standalone (no parent to say which process is the front): the front is
 * told by its uid alone, so its user must be a user of its own. */
static int standalone_front(const struct kw_config *cfg, const struct kw_identity *me,
                            struct kw_identity *ret_front, int *ret_status)
{
        struct kw_identity front, custody;
        kw_result r = kw_identity_lookup(cfg->front.user, &front);
        if (r.code == 0)
                r = kw_identity_lookup(cfg->custody.user, &custody);
        if (r.code != 0)
                return *ret_status = fail(2, "users", r), -1;
        if (front.uid == custody.uid || front.uid == me->uid) {
                kw_err_set_detail("keywardd --custody on its own tells the front by its uid alone: "
                                  "[front] user (%s) must be another user than [custody] user (%s) "
                                  "and than this process's (uid %u)",
                                  front.name, custody.name, (unsigned)me->uid);
                return *ret_status = fail(2, "users", KW_RESULT(KW_ERR_CONFIG)), -1;
        }
        *ret_front = front;
        return 0;
}

/* The socket: systemd's (a .socket unit) when it passed one, else our own. */
static kw_result custody_socket(const struct kw_config *cfg, const struct kw_custody_start *st,
                                const struct kw_identity *me, const struct kw_identity *front,
                                int *ret_fd, int *ret_passed)
{
        int fd = -1;
        if (st->standalone)
                KW_TRY(kw_sd_listen_fd(cfg->custody.socket_path, &fd));
        *ret_passed = fd >= 0;
        if (fd >= 0) {
                *ret_fd = fd;
                return KW_OK;
        }
        return open_socket(cfg->custody.socket_path, me, front, ret_fd);
}

/* must_lock: the secure heap must be locked (root, or a systemd unit whose
 * LimitMEMLOCK= is part of the contract); otherwise a warning. */
static int harden_custody(const struct kw_config *cfg, const struct kw_identity *me, int must_lock,
                          int *ret_status)
{
        /* the secure heap first, while root may lock memory whatever the
         * limit says: its pages stay locked after the switch of user */
        int locked = 0;
        kw_result r = kw_secret_init((size_t)cfg->db.secure_heap_bytes, &locked);
        if (r.code != 0)
                return *ret_status = fail(3, "secure memory", r), -1;
        if (!locked && must_lock) {
                kw_err_set_detail("the secure heap (%lld bytes) cannot be locked in memory: "
                                  "check LimitMEMLOCK= / ulimit -l", (long long)cfg->db.secure_heap_bytes);
                return *ret_status = fail(3, "secure memory", KW_RESULT(KW_ERR_NOMEM)), -1;
        }
        if (!locked)
                kw_log(KW_LOG_WARN, "secure_heap_not_locked",
                       "hint", "raise RLIMIT_MEMLOCK (ulimit -l) so key memory cannot be swapped",
                       KW_END);
        r = kw_privs_drop(me);
        if (r.code == 0)
                r = kw_process_harden();
        if (r.code != 0)
                return *ret_status = fail(3, "privileges", r), -1;
        return 0;
}

static void *sweeper_thread(void *arg)
{
        struct custody *c = arg;
        for (;;) {
                custody_sweep_deletions(c);
                sleep(10);
        }
        return NULL;
}

int kw_custody_main(struct kw_config *cfg, const struct kw_custody_start *st)
{
        static struct custody c;
        c.cfg = cfg;
        c.listen_fd = -1;
        pthread_mutex_init(&c.write_mu, NULL);
        kw_log_setup((enum kw_log_level)kw_log_level_parse(cfg->log.level), "custody");
        if (!st->standalone)
                prctl(PR_SET_PDEATHSIG, SIGTERM);   /* never outlive the parent */

        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);

        int status = 0;
        struct kw_identity me, front;
        if (become_custody(cfg, &me, &front, &status) != 0 ||
            (st->standalone && standalone_front(cfg, &me, &front, &status) != 0))
                return status;
        /* what needs the privileges we are about to give up */
        int passed = 0;
        kw_result r = kw_custody_attest_prepare(cfg);
        if (r.code == 0)
                r = custody_socket(cfg, st, &me, &front, &c.listen_fd, &passed);
        if (r.code != 0)
                return fail(3, "socket", r);
        if (harden_custody(cfg, &me, me.change || st->standalone, &status) != 0 ||
            open_store(&c, NULL, &status) != 0)
                return status;
        r = kw_keycache_new((size_t)cfg->db.key_cache_size, &c.kc);
        if (r.code == 0)
                r = audit_queue_new(c.ks, (unsigned)cfg->db.audit_flush_ms, &c.aq);
        if (r.code == 0)
                r = retention_new(&c, &c.rt);
        if (r.code == 0)
                r = ensure_first_token(&c, NULL);
        if (r.code == 0)
                r = custody_xks_init(&c);
        if (r.code == 0)
                r = custody_sessions_init(&c);
        if (r.code == 0)
                r = custody_fleet_start(&c);
        if (r.code != 0)
                return fail(5, "initialisation", r);
        /* the SigV4 secrets are in secret memory now (custody_xks.c), the
         * TLS password was needed for the certificate only */
        kw_config_wipe_secrets(cfg);

        /* the log writer (log.h): a stderr that does not drain never holds
         * up a request thread or the audit flush (only a warning or an
         * error, once the whole queue is full, waits for it) */
        r = kw_log_writer_start();
        if (r.code != 0)
                return fail(5, "log_writer", r);
        /* from here on the request path: nothing more to open but the
         * database's journal and the HSM module's own files and sockets */
        r = kw_sandbox_enter(KW_SANDBOX_CUSTODY, (enum kw_sandbox_mode)kw_sandbox_mode_parse(cfg->sandbox.seccomp));
        if (r.code != 0)
                return fail(3, "sandbox", r);
        if (st->standalone)
                custody_allow_front(CUSTODY_ANY_PID, front.uid);
        else
                custody_allow_front(st->front_pid, st->front_uid);
        pthread_t th_sweep, th_ctl;
        if (custody_serve(&c).code != 0 || retention_start(c.rt).code != 0 ||
            pthread_create(&th_sweep, NULL, sweeper_thread, &c) != 0 ||
            (st->control_fd >= 0 &&
             pthread_create(&th_ctl, NULL, control_thread, (void *)(intptr_t)st->control_fd) != 0))
                return fail(5, "threads", KW_RESULT(KW_ERR_INTERNAL));
        pthread_detach(th_sweep);
        if (st->control_fd >= 0)
                pthread_detach(th_ctl);

        uint64_t nkeys = 0;
        kw_ignore(kw_keystore_key_count(c.ks, &nkeys));
        char nk[24];
        snprintf(nk, sizeof nk, "%llu", (unsigned long long)nkeys);
        kw_log(KW_LOG_INFO, "custody_ready", "socket", cfg->custody.socket_path, "keys", nk,
               "hsm_mechanism", kw_hsm_mechanism_name(c.hsm), "user", me.name, "evaluation",
               cfg->hsm.evaluation ? KW_LOG_TRUE : KW_LOG_OMIT, KW_END);
        if (st->ready_fd >= 0) {
                ssize_t w = write(st->ready_fd, "1", 1);
                (void)w;
                close(st->ready_fd);
        }
        r = st->standalone ? kw_sd_notify_ready() : KW_OK;
        if (r.code != 0)
                kw_log(KW_LOG_ERROR, "notify_failed", "message", kw_err_detail(), KW_END);

        int sig = 0;
        sigwait(&set, &sig);
        kw_log(KW_LOG_INFO, "custody_stopping", KW_END);
        /* systemd's socket (passed) is shared with PID 1 and stays for the
         * next start: a shutdown would end it there too; process exit ends
         * the accept thread instead */
        if (!passed) {
                shutdown(c.listen_fd, SHUT_RDWR);
                unlink(cfg->custody.socket_path);
        }
        close(c.listen_fd);
        audit_queue_free(c.aq);   /* flushes queued audit rows */
        custody_fleet_stop(&c);   /* the last heartbeat: this node left */
        kw_log_writer_stop();     /* and the queued log lines */
        /* Connection threads may still be inside a request: the key store and
         * the HSM are closed by process exit, after the audit flush, which is
         * the only state that needs an orderly end. */
        return 0;
}

int kw_custody_recover_admin(struct kw_config *cfg, const char *console_user)
{
        static struct custody c;
        c.cfg = cfg;
        c.listen_fd = -1;
        pthread_mutex_init(&c.write_mu, NULL);
        kw_log_setup((enum kw_log_level)kw_log_level_parse(cfg->log.level), "recover");
        kw_config_wipe_secrets(cfg);
        int status = 0;
        struct kw_identity me, front;
        if (become_custody(cfg, &me, &front, &status) != 0 ||
            harden_custody(cfg, &me, me.change, &status) != 0 || open_store(&c, NULL, &status) != 0)
                return status;
        struct kw_token_row row;
        memset(&row, 0, sizeof row);
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(row.name, sizeof row.name, "recovered-admin-%Y%m%dT%H%M%SZ", &tm);
        snprintf(row.role, sizeof row.role, "admin");
        char actor[160];
        snprintf(actor, sizeof actor, "console:%s", console_user);
        struct kw_audit_entry au = { .actor = actor, .action = "token.recover", .result = "ok",
                                     .detail = row.name };
        kw_result r = mint_token(&c, &row, cfg->admin.token_file, &au);
        if (r.code != 0)
                return fail(5, "recover admin", r);
        kw_log(KW_LOG_INFO, "admin_token_recovered", "token_file", cfg->admin.token_file,
               "token_id", row.id, "name", row.name, "actor", actor, KW_END);
        fprintf(stderr, "keywardd: a new admin token (%s) is in %s\n", row.name,
                cfg->admin.token_file);
        return 0;
}

/* What open_store opened, closed (keywardd --init, which opens it twice). */
static void close_store(struct custody *c)
{
        kw_keystore_close(c->ks);
        kw_hsm_close(c->hsm);
        c->ks = NULL;
        c->hsm = NULL;
}

int custody_open_oneshot(struct custody *c, const char *log_name, int *ret_status)
{
        c->listen_fd = -1;
        pthread_mutex_init(&c->write_mu, NULL);
        kw_log_setup((enum kw_log_level)kw_log_level_parse(c->cfg->log.level), log_name);
        struct kw_identity me, front;
        if (become_custody(c->cfg, &me, &front, ret_status) != 0 ||
            harden_custody(c->cfg, &me, me.change, ret_status) != 0 ||
            open_store(c, NULL, ret_status) != 0)
                return -1;
        return 0;
}

void custody_close_oneshot(struct custody *c) { close_store(c); }

int kw_custody_init(struct kw_config *cfg)
{
        static struct custody c;
        c.cfg = cfg;
        c.listen_fd = -1;
        pthread_mutex_init(&c.write_mu, NULL);
        kw_log_setup((enum kw_log_level)kw_log_level_parse(cfg->log.level), "init");
        int status = 0;
        struct kw_identity me, front;
        struct store_report made = { 0, 0 };
        if (become_custody(cfg, &me, &front, &status) != 0 ||
            harden_custody(cfg, &me, me.change, &status) != 0 || open_store(&c, &made, &status) != 0)
                return status;
        const char *admin = NULL;
        kw_result r = ensure_first_token(&c, &admin);
        if (r.code != 0)
                status = fail(r.code == KW_ERR_CONFIG ? 2 : r.code == KW_ERR_IO ? 3 : 5, "admin token", r);
        close_store(&c);
        if (status != 0)
                return status;
        /* the store as the next start opens it: the key file unsealed anew,
         * the database opened with that key, an admin token in it */
        if (open_store(&c, NULL, &status) != 0)
                return status;
        uint64_t tokens = 0;
        r = kw_keystore_token_count(c.ks, &tokens);
        if (r.code == 0 && tokens == 0) {
                kw_err_set_detail("the key store has no admin token after --init");
                r = KW_RESULT(KW_ERR_INTERNAL);
        }
        if (r.code != 0)
                status = fail(5, "check", r);
        close_store(&c);
        if (status != 0)
                return status;
        kw_config_wipe_secrets(cfg);
        kw_log(KW_LOG_INFO, "init_done", "master_key", made.master_key_created ? "created" : "found",
               "database", made.database_created ? "created" : "found", "admin", admin,
               "user", me.name, KW_END);
        /* the one line a provisioning program reads; no secret in it */
        if (printf("{\"master_key\":\"%s\",\"database\":\"%s\",\"admin\":\"%s\"}\n",
                   made.master_key_created ? "created" : "found",
                   made.database_created ? "created" : "found", admin) < 0 ||
            fflush(stdout) != 0) {
                int e = errno;
                fprintf(stderr, "keywardd: --init: cannot write its summary to standard output: %s "
                                "(the key store is ready)\n", strerror(e));
                return 3;
        }
        return 0;
}
