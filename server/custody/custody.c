/*
 * custody.c - the custody process: start-up (HSM, database key, key store,
 * first admin token), the request loop over the Unix socket, the dispatch
 * table, the audit queue and the deletion sweeper.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../common/b64.h"
#include "../common/log.h"
#include "../common/names.h"
#include "../common/secret.h"
#include "crypto.h"
#include "custody.h"
#include "custody_int.h"

#define DBKEY_MAGIC "KWDBKEY1"
#define DBKEY_AAD "keyward.dbkey.v1"
#define MAX_CONN_THREADS 256

/* ---------------------------------------------------------------- helpers */

int valid_name(const char *s) { return kw_name_valid(s); }

void format_time(int64_t t, char out[32])
{
        time_t tt = (time_t)t;
        struct tm tm;
        gmtime_r(&tt, &tm);
        strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

kw_result reply_json(struct kw_buf *reply, cJSON *doc)
{
        KW_ENSURE(doc != NULL, KW_ERR_NOMEM);
        char *s = cJSON_PrintUnformatted(doc);
        cJSON_Delete(doc);
        KW_ENSURE(s != NULL, KW_ERR_NOMEM);
        kw_result r = kw_msg_put_str(reply, KW_T_JSON, s);
        kw_wipe(s, strlen(s));
        cJSON_free(s);
        return r;
}

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
        char dir[4200];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash == dir)
                slash[1] = '\0';
        else if (slash != NULL)
                *slash = '\0';
        else
                snprintf(dir, sizeof dir, ".");
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
                (void)fsync(dfd);
                close(dfd);
        }
        return KW_OK;
}

static kw_result read_small_file(const char *path, struct kw_buf *out)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                kw_err_set_detail("cannot read %s: %s", path, strerror(errno));
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

/* ------------------------------------------------------------ audit queue */

struct audit_item {
        int64_t ts_ms;
        char actor[257], action[33], key_name[65], result[33], detail[129], request_id[257];
};

#define AUDIT_QUEUE_MAX 8192

struct audit_queue {
        struct kw_keystore *ks;
        unsigned flush_ms;
        pthread_mutex_t mu;
        pthread_cond_t cv_flush, cv_space;
        struct audit_item *items;
        size_t n, cap;
        int stop;
        uint64_t written, failed_batches;
        pthread_mutex_t flush_mu;     /* one flusher at a time */
        pthread_t th;
};

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

kw_result audit_flush(struct audit_queue *q)
{
        pthread_mutex_lock(&q->flush_mu);
        pthread_mutex_lock(&q->mu);
        size_t n = q->n;
        struct audit_item *batch = NULL;
        if (n != 0) {
                batch = malloc(n * sizeof *batch);
                if (batch != NULL) {
                        memcpy(batch, q->items, n * sizeof *batch);
                        q->n = 0;
                        pthread_cond_broadcast(&q->cv_space);
                }
        }
        pthread_mutex_unlock(&q->mu);
        kw_result r = KW_OK;
        if (n != 0 && batch == NULL)
                r = KW_RESULT(KW_ERR_NOMEM);
        if (batch != NULL) {
                struct kw_audit_entry *e = calloc(n, sizeof *e);
                if (e == NULL) {
                        r = KW_RESULT(KW_ERR_NOMEM);
                } else {
                        for (size_t i = 0; i < n; i++)
                                e[i] = (struct kw_audit_entry){
                                        .ts_ms = batch[i].ts_ms, .actor = batch[i].actor,
                                        .action = batch[i].action, .key_name = batch[i].key_name,
                                        .result = batch[i].result, .detail = batch[i].detail,
                                        .request_id = batch[i].request_id };
                        r = kw_keystore_audit_append(q->ks, e, n);
                        free(e);
                }
                if (r.code != 0) {
                        /* keep the rows: put them back in front for the next try */
                        pthread_mutex_lock(&q->mu);
                        size_t room = q->cap - q->n;
                        size_t keep = n < room ? n : room;
                        memmove(q->items + keep, q->items, q->n * sizeof *batch);
                        memcpy(q->items, batch, keep * sizeof *batch);
                        q->n += keep;
                        q->failed_batches++;
                        pthread_mutex_unlock(&q->mu);
                        kw_log(KW_LOG_ERROR, "audit_flush_failed", "error", kw_err_name(r.code),
                               "detail", kw_err_detail(), KW_END);
                } else {
                        __atomic_add_fetch(&q->written, n, __ATOMIC_RELAXED);
                }
                free(batch);
        }
        pthread_mutex_unlock(&q->flush_mu);
        return r;
}

static void *audit_thread(void *arg)
{
        struct audit_queue *q = arg;
        pthread_mutex_lock(&q->mu);
        while (!q->stop) {
                struct timespec dl;
                clock_gettime(CLOCK_REALTIME, &dl);
                dl.tv_nsec += (long)q->flush_ms * 1000000L;
                dl.tv_sec += dl.tv_nsec / 1000000000L;
                dl.tv_nsec %= 1000000000L;
                pthread_cond_timedwait(&q->cv_flush, &q->mu, &dl);
                if (q->n == 0)
                        continue;
                pthread_mutex_unlock(&q->mu);
                kw_ignore(audit_flush(q));
                pthread_mutex_lock(&q->mu);
        }
        pthread_mutex_unlock(&q->mu);
        return NULL;
}

kw_result audit_queue_new(struct kw_keystore *ks, unsigned flush_ms, struct audit_queue **ret)
{
        struct audit_queue *q = calloc(1, sizeof *q);
        KW_ENSURE(q != NULL, KW_ERR_NOMEM);
        q->items = calloc(AUDIT_QUEUE_MAX, sizeof *q->items);
        if (q->items == NULL) {
                free(q);
                KW_BAIL(KW_ERR_NOMEM);
        }
        q->ks = ks;
        q->cap = AUDIT_QUEUE_MAX;
        q->flush_ms = flush_ms ? flush_ms : 50;
        pthread_mutex_init(&q->mu, NULL);
        pthread_mutex_init(&q->flush_mu, NULL);
        pthread_cond_init(&q->cv_flush, NULL);
        pthread_cond_init(&q->cv_space, NULL);
        if (pthread_create(&q->th, NULL, audit_thread, q) != 0) {
                free(q->items);
                free(q);
                KW_BAIL(KW_ERR_INTERNAL);
        }
        *ret = q;
        return KW_OK;
}

void audit_queue_free(struct audit_queue *q)
{
        if (q == NULL)
                return;
        pthread_mutex_lock(&q->mu);
        q->stop = 1;
        pthread_cond_broadcast(&q->cv_flush);
        pthread_mutex_unlock(&q->mu);
        pthread_join(q->th, NULL);
        kw_ignore(audit_flush(q));
        free(q->items);
        free(q);
}

size_t audit_pending(struct audit_queue *q)
{
        pthread_mutex_lock(&q->mu);
        size_t n = q->n;
        pthread_mutex_unlock(&q->mu);
        return n;
}

/* Copies s (NULL: "") into dst, cut to fit: on the hot path, where one
 * snprintf per field showed in profiles. */
static void copy_cut(char *dst, size_t dstsz, const char *s)
{
        size_t n = s != NULL ? strnlen(s, dstsz - 1) : 0;
        if (n != 0)
                memcpy(dst, s, n);
        dst[n] = '\0';
}

void audit_push(struct audit_queue *q, const struct op_caller *who, const char *action,
                const char *key_name, int code, const char *detail)
{
        pthread_mutex_lock(&q->mu);
        while (q->n >= q->cap && !q->stop) {   /* back-pressure, never drop */
                pthread_cond_signal(&q->cv_flush);
                pthread_cond_wait(&q->cv_space, &q->mu);
        }
        if (q->n < q->cap) {
                struct audit_item *it = &q->items[q->n++];
                it->ts_ms = now_ms();
                copy_cut(it->actor, sizeof it->actor, who ? who->actor : "");
                copy_cut(it->action, sizeof it->action, action);
                copy_cut(it->key_name, sizeof it->key_name, key_name);
                copy_cut(it->result, sizeof it->result, code == 0 ? "ok" : kw_err_name(code));
                copy_cut(it->detail, sizeof it->detail, detail);
                copy_cut(it->request_id, sizeof it->request_id, who ? who->request_id : "");
                if (q->n >= 512)
                        pthread_cond_signal(&q->cv_flush);
        }
        pthread_mutex_unlock(&q->mu);
}

/* --------------------------------------------------------------- dispatch */

struct op_row {
        uint8_t op;
        const char *name;
        op_fn fn;
};

static kw_result op_ping(struct custody *c, const struct kw_msg *req, const struct op_caller *who,
                         struct kw_buf *reply)
{
        (void)c; (void)req; (void)who; (void)reply;
        return KW_OK;
}

static const struct op_row op_table[] = {
        { KW_OP_PING, "ping", op_ping },
        { KW_OP_STATUS, "status", op_status },
        { KW_OP_STATS, "stats", op_stats },
        { KW_OP_HEALTH, "health", op_health },
        { KW_OP_KEY_CREATE, "key.create", op_key_create },
        { KW_OP_KEY_IMPORT, "key.import", op_key_import },
        { KW_OP_KEY_GET, "key.get", op_key_get },
        { KW_OP_KEY_LIST, "key.list", op_key_list },
        { KW_OP_KEY_SET_STATE, "key.set_state", op_key_set_state },
        { KW_OP_KEY_ROTATE, "key.rotate", op_key_rotate },
        { KW_OP_KEY_SCHEDULE_DELETE, "key.schedule_deletion", op_key_schedule_delete },
        { KW_OP_KEY_CANCEL_DELETE, "key.cancel_deletion", op_key_cancel_delete },
        { KW_OP_KEY_UPDATE, "key.update", op_key_update },
        { KW_OP_ENCRYPT, "key.encrypt", op_encrypt },
        { KW_OP_DECRYPT, "key.decrypt", op_decrypt },
        { KW_OP_WRAP, "key.wrap", op_wrap },
        { KW_OP_UNWRAP, "key.unwrap", op_unwrap },
        { KW_OP_AUDIT_QUERY, "audit.query", op_audit_query },
        { KW_OP_AUDIT_VERIFY, "audit.verify", op_audit_verify },
        { KW_OP_TOKEN_CHECK, "token.check", op_token_check },
        { KW_OP_TOKEN_CREATE, "token.create", op_token_create },
        { KW_OP_TOKEN_LIST, "token.list", op_token_list },
        { KW_OP_TOKEN_REVOKE, "token.revoke", op_token_revoke },
        { KW_OP_XKS_AUTH, "xks.auth", op_xks_auth },
        { KW_OP_XKS_STORES, "xks.stores", op_xks_stores },
        { KW_OP_XKS_STORE_CREATE, "xks.store.create", op_xks_store_create },
        { KW_OP_XKS_CRED_ROTATE, "xks.credential.rotate", op_xks_cred_rotate },
        { KW_OP_XKS_CRED_DELETE, "xks.credential.delete", op_xks_cred_delete },
        { KW_OP_XKS_STORE_DELETE, "xks.store.delete", op_xks_store_delete },
        { KW_OP_XKS_IMPORT_FILE, "xks.import_file", op_xks_import_file },
};

static const struct op_row *op_find(uint8_t op)
{
        for (size_t i = 0; i < sizeof op_table / sizeof op_table[0]; i++)
                if (op_table[i].op == op)
                        return &op_table[i];
        return NULL;
}

static void opt_str(const struct kw_msg *m, uint8_t tag, char *out, size_t outsz,
                    const char **ret)
{
        if (kw_msg_get_str(m, tag, out, outsz).code == 0)
                *ret = out;
}

static kw_result caller_from_msg(const struct kw_msg *m, struct op_caller *w)
{
        memset(w, 0, sizeof *w);
        uint32_t kind = KW_CALLER_ADMIN;
        if (kw_msg_has(m, KW_T_CALLER))
                KW_TRY(kw_msg_get_u32(m, KW_T_CALLER, &kind));
        KW_ENSURE(kind >= KW_CALLER_ADMIN && kind <= KW_CALLER_EKM, KW_ERR_PROTOCOL);
        w->ctx.kind = (enum kw_caller)kind;
        if (kw_msg_has(m, KW_T_ACTOR))
                KW_TRY(kw_msg_get_str(m, KW_T_ACTOR, w->actor, sizeof w->actor));
        if (kw_msg_has(m, KW_T_REQUEST_ID))
                KW_TRY(kw_msg_get_str(m, KW_T_REQUEST_ID, w->request_id, sizeof w->request_id));
        opt_str(m, KW_T_XKS_PRINCIPAL, w->principal, sizeof w->principal, &w->ctx.principal);
        opt_str(m, KW_T_XKS_OPERATION, w->operation, sizeof w->operation, &w->ctx.operation);
        opt_str(m, KW_T_XKS_VIA, w->via, sizeof w->via, &w->ctx.via);
        opt_str(m, KW_T_XKS_VPC, w->vpc, sizeof w->vpc, &w->ctx.vpc);
        opt_str(m, KW_T_XKS_VPCE, w->vpce, sizeof w->vpce, &w->ctx.vpce);
        opt_str(m, KW_T_XKS_STORE, w->store, sizeof w->store, &w->ctx.store);
        opt_str(m, KW_T_EKM_CN, w->cn, sizeof w->cn, &w->ctx.cn);
        return KW_OK;
}

/* Handles one request frame; always produces a reply frame in out. */
static void handle_frame(struct custody *c, const struct kw_buf *in, struct kw_buf *out)
{
        struct kw_msg req;
        struct op_caller who;
        kw_err_clear_detail();
        kw_result r = kw_msg_parse(in->p, in->len, 0, &req);
        const struct op_row *row = r.code == 0 ? op_find(req.op) : NULL;
        if (r.code == 0 && row == NULL)
                r = KW_RESULT(KW_ERR_PROTOCOL);
        if (r.code == 0)
                r = caller_from_msg(&req, &who);
        /* XKS: a request that carries SigV4 fields is authenticated before
         * anything else is looked at (docs/xks.md, order of checks) */
        if (r.code == 0 && kw_msg_has(&req, KW_T_SIGV4_STS))
                r = custody_xks_auth(c, &req);
        if (r.code == 0)
                r = kw_msg_begin_reply(out, req.op, req.id, 0);
        if (r.code == 0)
                r = row->fn(c, &req, &who, out);
        __atomic_add_fetch(&c->requests, 1, __ATOMIC_RELAXED);
        if (r.code == 0)
                r = kw_msg_end(out);
        if (r.code == 0)
                return;
        __atomic_add_fetch(&c->failures, 1, __ATOMIC_RELAXED);
        kw_buf_reset(out);
        uint8_t op = row ? row->op : 0;
        uint32_t id = row ? req.id : 0;
        const char *detail = kw_err_detail();
        if (kw_log_enabled(KW_LOG_DEBUG))
                kw_log(KW_LOG_DEBUG, "custody_error", "op", row ? row->name : "?", "error",
                       kw_err_name(r.code), "detail", detail, "at", kw_trace_last(), KW_END);
        if (kw_msg_begin_reply(out, op, id, r.code).code != 0 ||
            (detail[0] != '\0' &&
             kw_msg_put(out, KW_T_DETAIL, detail, strnlen(detail, 256)).code != 0) ||
            kw_msg_end(out).code != 0) {
                kw_buf_reset(out);
                kw_ignore(kw_msg_begin_reply(out, op, id, KW_ERR_INTERNAL));
                kw_ignore(kw_msg_end(out));
        }
}

struct conn_arg {
        struct custody *c;
        int fd;
};

static unsigned live_conns;

static void *conn_thread(void *arg)
{
        struct conn_arg a = *(struct conn_arg *)arg;
        free(arg);
        struct kw_buf in, out;
        kw_buf_init(&in, KW_IPC_MAX_FRAME + 4);
        kw_buf_init(&out, KW_IPC_MAX_FRAME + 4);
        for (;;) {
                if (kw_ipc_recv(a.fd, &in, -1).code != 0)
                        break;
                handle_frame(a.c, &in, &out);
                kw_result r = kw_ipc_send(a.fd, &out);
                kw_buf_reset(&in);   /* wipe request and reply bytes at once */
                kw_buf_reset(&out);
                if (r.code != 0)
                        break;
        }
        close(a.fd);
        kw_buf_free(&in);
        kw_buf_free(&out);
        __atomic_sub_fetch(&live_conns, 1, __ATOMIC_RELAXED);
        return NULL;
}

static int listen_fd = -1;

static void *accept_thread(void *arg)
{
        struct custody *c = arg;
        for (;;) {
                int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE ||
                            errno == ENFILE) {
                                if (errno == EMFILE || errno == ENFILE)
                                        usleep(10000);
                                continue;
                        }
                        break;
                }
                struct ucred cred;
                socklen_t cl = sizeof cred;
                if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0 ||
                    (cred.uid != getuid() && cred.uid != 0)) {
                        kw_log(KW_LOG_WARN, "custody_peer_refused", KW_END);
                        close(fd);
                        continue;
                }
                if (__atomic_add_fetch(&live_conns, 1, __ATOMIC_RELAXED) > MAX_CONN_THREADS) {
                        __atomic_sub_fetch(&live_conns, 1, __ATOMIC_RELAXED);
                        close(fd);
                        continue;
                }
                struct conn_arg *a = malloc(sizeof *a);
                pthread_t th;
                pthread_attr_t at;
                pthread_attr_init(&at);
                pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
                if (a == NULL || (a->c = c, a->fd = fd, pthread_create(&th, &at, conn_thread, a) != 0)) {
                        free(a);
                        close(fd);
                        __atomic_sub_fetch(&live_conns, 1, __ATOMIC_RELAXED);
                }
                pthread_attr_destroy(&at);
        }
        return NULL;
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

/* ---------------------------------------------------------------- start-up */

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

static kw_result ensure_first_token(struct custody *c)
{
        uint64_t n = 0;
        KW_TRY(kw_keystore_token_count(c->ks, &n));
        if (n != 0)
                return KW_OK;
        uint8_t raw[32], hash[32];
        KW_TRY(kw_random(raw, sizeof raw));
        struct kw_buf tok;
        kw_buf_init(&tok, 128);
        kw_result r = kw_buf_put_str(&tok, "kw_");
        if (r.code == 0)
                r = kw_b64url_encode(raw, sizeof raw, &tok);
        kw_wipe(raw, sizeof raw);
        struct kw_token_row row;
        memset(&row, 0, sizeof row);
        if (r.code == 0) {
                kw_sha256(tok.p, tok.len, hash);
                uint8_t idb[8];
                r = kw_random(idb, sizeof idb);
                for (int i = 0; r.code == 0 && i < 8; i++)
                        snprintf(row.id + 2 * i, 3, "%02x", idb[i]);
        }
        snprintf(row.name, sizeof row.name, "initial-admin");
        snprintf(row.role, sizeof row.role, "admin");
        row.created = time(NULL);
        if (r.code == 0)
                r = kw_buf_put(&tok, "\n", 1);
        /* the file first: a token in the database that nobody holds is useless */
        if (r.code == 0)
                r = write_file_atomic(c->cfg->admin.token_file, tok.p, tok.len);
        struct kw_audit_entry au = { .actor = "custody", .action = "token.create",
                                     .result = "ok", .detail = "initial admin token" };
        if (r.code == 0)
                r = kw_keystore_token_insert(c->ks, &row, hash, &au);
        kw_buf_free(&tok);
        kw_wipe(hash, sizeof hash);
        if (r.code == 0)
                kw_log(KW_LOG_INFO, "admin_token_created", "token_file", c->cfg->admin.token_file,
                       "token_id", row.id, KW_END);
        return r;
}

static kw_result open_socket(const char *path)
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
        if (rc != 0 || listen(fd, 128) != 0) {
                kw_err_set_detail("cannot listen on %s: %s", path, strerror(errno));
                close(fd);
                KW_BAIL(KW_ERR_IO);
        }
        listen_fd = fd;
        return KW_OK;
}

/* Started as root with [custody] user set: become that user before anything
 * is opened, so the HSM session, the database and the keys all belong to it. */
static kw_result drop_privileges(const char *user)
{
        if (user == NULL || user[0] == '\0' || geteuid() != 0)
                return KW_OK;
        struct passwd *pw = getpwnam(user);
        if (pw == NULL) {
                kw_err_set_detail("[custody] user '%s' does not exist", user);
                KW_BAIL(KW_ERR_CONFIG);
        }
        if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0 ||
            setuid(0) == 0) {
                kw_err_set_detail("cannot drop privileges to '%s': %s", user, strerror(errno));
                KW_BAIL(KW_ERR_CONFIG);
        }
        return KW_OK;
}

int kw_custody_main(const struct kw_config *cfg, int ready_fd)
{
        static struct custody c;
        c.cfg = cfg;
        pthread_mutex_init(&c.write_mu, NULL);
        kw_log_setup((enum kw_log_level)kw_log_level_parse(cfg->log.level), "custody");
        prctl(PR_SET_PDEATHSIG, SIGTERM);   /* never outlive the front */

        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);

        int locked = 0;
        kw_result r = drop_privileges(cfg->custody.user);
        if (r.code != 0)
                return fail(3, "privileges", r);
        /* after the drop: setuid makes the process dumpable again */
        r = kw_secret_harden_process();
        if (r.code == 0)
                r = kw_secret_init((size_t)cfg->db.secure_heap_bytes, &locked);
        if (r.code != 0)
                return fail(3, "secure memory", r);
        if (!locked)
                kw_log(KW_LOG_WARN, "secure_heap_not_locked",
                       "hint", "raise RLIMIT_MEMLOCK (LimitMEMLOCK=) so key memory cannot be swapped",
                       KW_END);

        int db_exists = file_exists(cfg->db.path);
        struct kw_hsm_config hc = {
                .module = cfg->hsm.module, .token_label = cfg->hsm.token_label,
                .pin_file = cfg->hsm.pin_file, .master_key_label = cfg->hsm.master_key_label,
                .create_master_key = cfg->hsm.create_master_key && !db_exists,
                .sessions = (unsigned)cfg->hsm.sessions, .timeout_ms = (unsigned)cfg->hsm.timeout_ms,
                .retry_interval_ms = (unsigned)cfg->hsm.retry_interval_ms,
        };
        int created = 0;
        r = kw_hsm_open(&hc, &c.hsm, &created);
        if (r.code == KW_ERR_HSM_NO_MASTER_KEY && db_exists && cfg->hsm.create_master_key)
                kw_err_set_detail("master key '%s' is missing from token '%s' but the database %s "
                                  "exists: it cannot be opened without that key",
                                  cfg->hsm.master_key_label, cfg->hsm.token_label, cfg->db.path);
        if (r.code != 0)
                return fail(4, "hsm", r);
        if (created)
                kw_log(KW_LOG_INFO, "master_key_created", "label", cfg->hsm.master_key_label,
                       "token", cfg->hsm.token_label, KW_END);

        struct kw_secret dbkey = { 0 };
        r = load_db_key(&c, db_exists, &dbkey);
        if (r.code != 0)
                return fail(r.code <= KW_ERR_HSM && r.code > KW_ERR_TPM ? 4 : 5, "database key", r);
        r = kw_keystore_open(cfg->db.path, &dbkey, &c.ks);
        kw_secret_free(&dbkey);
        if (r.code != 0)
                return fail(5, "database", r);
        r = kw_keycache_new((size_t)cfg->db.key_cache_size, &c.kc);
        if (r.code == 0)
                r = audit_queue_new(c.ks, (unsigned)cfg->db.audit_flush_ms, &c.aq);
        if (r.code == 0)
                r = ensure_first_token(&c);
        if (r.code == 0)
                r = custody_xks_init(&c);
        if (r.code != 0)
                return fail(5, "initialisation", r);
        r = open_socket(cfg->custody.socket_path);
        if (r.code != 0)
                return fail(3, "socket", r);

        pthread_t th_accept, th_sweep;
        if (pthread_create(&th_accept, NULL, accept_thread, &c) != 0 ||
            pthread_create(&th_sweep, NULL, sweeper_thread, &c) != 0)
                return fail(5, "threads", KW_RESULT(KW_ERR_INTERNAL));
        pthread_detach(th_sweep);

        uint64_t nkeys = 0;
        kw_ignore(kw_keystore_key_count(c.ks, &nkeys));
        char nk[24];
        snprintf(nk, sizeof nk, "%llu", (unsigned long long)nkeys);
        kw_log(KW_LOG_INFO, "custody_ready", "socket", cfg->custody.socket_path, "keys", nk,
               "hsm_mechanism", kw_hsm_mechanism_name(c.hsm), KW_END);
        if (ready_fd >= 0) {
                ssize_t w = write(ready_fd, "1", 1);
                (void)w;
                close(ready_fd);
        }

        int sig = 0;
        sigwait(&set, &sig);
        kw_log(KW_LOG_INFO, "custody_stopping", KW_END);
        shutdown(listen_fd, SHUT_RDWR);
        close(listen_fd);
        unlink(cfg->custody.socket_path);
        audit_queue_free(c.aq);   /* flushes queued audit rows */
        /* Connection threads may still be inside a request: the key store and
         * the HSM are closed by process exit, after the audit flush, which is
         * the only state that needs an orderly end. */
        return 0;
}
