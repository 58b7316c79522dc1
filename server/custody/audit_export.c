/*
 * audit_export.c - writes an audit export file (format and contract in
 * audit_export.h).  Runs in the custody process, under its seccomp list
 * (files, rename, fsync, getdents are allowed there).
 *
 * The records come from kw_keystore_audit_read_oldest, which checks the
 * chain before it hands a record out; each line is appended to a gzip
 * stream on a temporary file; the file is fsynced and renamed, the
 * directory fsynced, and the file is read back and verified against the
 * range that was read before the caller may prune anything.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <zlib.h>

#include "../common/b64.h"
#include "../common/json_io.h"
#include "audit_export.h"

#define LINE_MAX_BYTES (256u * 1024u)

struct writer {
        gzFile gz;
        struct kw_buf line;
        uint64_t records;
        int header_done;
        int failed;                  /* errno-like detail already set */
        const char *tmp;
};

static void rfc3339_ms(int64_t ts_ms, char out[64])
{
        int64_t s = ts_ms / 1000, ms = ts_ms % 1000;
        if (ms < 0) {
                ms += 1000;
                s -= 1;
        }
        time_t t = (time_t)s;
        struct tm tm;
        if (gmtime_r(&t, &tm) == NULL)
                memset(&tm, 0, sizeof tm);
        snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)ms);
}

/* ,"name":"<escaped>" or, for bytes that are not UTF-8, ,"name_b64":"<base64>" */
static kw_result put_field(struct kw_buf *b, const char *name, const char *s, size_t n)
{
        if (kw_utf8_valid((const uint8_t *)s, n)) {
                KW_TRY(kw_buf_printf(b, ",\"%s\":\"", name));
                KW_TRY(kw_buf_put_json_escaped(b, s, n));
        } else {
                KW_TRY(kw_buf_printf(b, ",\"%s_b64\":\"", name));
                KW_TRY(kw_b64_encode((const uint8_t *)s, n, b));
        }
        return kw_buf_put_str(b, "\"");
}

static kw_result format_record(struct kw_buf *b, const struct kw_audit_row *r)
{
        char t[64];
        rfc3339_ms(r->ts_ms, t);
        KW_TRY(kw_buf_printf(b, "{\"seq\":%llu,\"time\":\"%s\",\"ts_ms\":%lld",
                             (unsigned long long)r->seq, t, (long long)r->ts_ms));
        static const char *const names[KW_AUDIT_FIELDS] = { "actor", "action", "key", "result",
                                                             "detail", "request_id" };
        const char *f[KW_AUDIT_FIELDS] = { r->actor, r->action, r->key_name, r->result, r->detail,
                                           r->request_id };
        for (int i = 0; i < KW_AUDIT_FIELDS; i++)
                KW_TRY(put_field(b, names[i], f[i], r->len[i]));
        return kw_buf_printf(b, ",\"hash\":\"%s\"}\n", r->hash_hex);
}

static int gz_put(struct writer *w, const struct kw_buf *b)
{
        if (b->len == 0)
                return 0;
        if (gzwrite(w->gz, b->p, (unsigned)b->len) != (int)b->len) {
                int zerr = 0;
                const char *m = gzerror(w->gz, &zerr);
                kw_err_set_detail("cannot write %s: %s", w->tmp,
                                  zerr == Z_ERRNO ? strerror(errno) : m);
                w->failed = 1;
                return 1;
        }
        return 0;
}

static int on_record(const struct kw_audit_row *r, void *arg)
{
        struct writer *w = arg;
        kw_buf_reset(&w->line);
        if (!w->header_done) {
                char t[64];
                struct timespec now;
                clock_gettime(CLOCK_REALTIME, &now);
                rfc3339_ms((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000, t);
                if (!kw_ok(kw_buf_printf(&w->line, "{\"keyward_audit_export\":1,\"first_seq\":%llu,"
                                                   "\"prev_hash\":\"%s\",\"created\":\"%s\"}\n",
                                         (unsigned long long)r->seq,
                                         r->prev_hash_hex != NULL ? r->prev_hash_hex : "", t))) {
                        kw_err_set_detail("audit export: header line too long");
                        return 1;
                }
                w->header_done = 1;
        }
        if (!kw_ok(format_record(&w->line, r))) {
                kw_err_set_detail("audit export: record %llu does not fit a line",
                                  (unsigned long long)r->seq);
                return 1;
        }
        w->records++;
        return gz_put(w, &w->line);
}

static kw_result fsync_dir(const char *dir)
{
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) != 0) {
                kw_err_set_detail("cannot sync the directory %s: %s", dir, strerror(errno));
                if (dfd >= 0)
                        close(dfd);
                KW_BAIL(KW_ERR_IO);
        }
        close(dfd);
        return KW_OK;
}

/* Writes the end line and closes the stream; fsyncs fd. */
static kw_result finish(struct writer *w, int fd, const struct kw_audit_range *rg)
{
        char hex[2 * KW_AUDIT_HASH_LEN + 1];
        kw_audit_hex(rg->last_hash, KW_AUDIT_HASH_LEN, hex);
        kw_buf_reset(&w->line);
        KW_TRY(kw_buf_printf(&w->line, "{\"keyward_audit_export_end\":1,\"last_seq\":%llu,"
                                       "\"last_hash\":\"%s\",\"records\":%llu}\n",
                             (unsigned long long)rg->last_seq, hex,
                             (unsigned long long)rg->records));
        int bad = gz_put(w, &w->line);
        int rc = gzclose(w->gz);
        w->gz = NULL;
        if (bad)
                KW_BAIL(KW_ERR_IO);
        if (rc != Z_OK) {
                kw_err_set_detail("cannot write %s: %s", w->tmp,
                                  rc == Z_ERRNO ? strerror(errno) : "zlib error");
                KW_BAIL(KW_ERR_IO);
        }
        if (fsync(fd) != 0) {
                kw_err_set_detail("cannot sync %s: %s", w->tmp, strerror(errno));
                KW_BAIL(KW_ERR_IO);
        }
        return KW_OK;
}

/* The written file must say exactly what was read. */
static kw_result check_written(const char *path, const struct kw_audit_range *rg,
                               struct kw_audit_export_file *out)
{
        struct kw_audit_export_check chk;
        KW_TRY(kw_audit_export_verify(path, &chk));
        if (!chk.ok || chk.first_seq != rg->first_seq || chk.last_seq != rg->last_seq ||
            chk.records != rg->records ||
            CRYPTO_memcmp(chk.prev_hash, rg->prev_hash, KW_AUDIT_HASH_LEN) != 0 || /* lint: allow */
            CRYPTO_memcmp(chk.last_hash, rg->last_hash, KW_AUDIT_HASH_LEN) != 0) { /* lint: allow */
                kw_err_set_detail("%s does not read back as written (%s)", path,
                                  chk.ok ? "another range" : chk.why);
                KW_BAIL(KW_ERR_IO);
        }
        memcpy(out->sha256, chk.sha256, sizeof out->sha256);
        struct stat st;
        out->bytes = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
        return KW_OK;
}

static kw_result export_into(struct kw_keystore *ks, const char *dir, const char *tmp, int fd,
                             const struct kw_audit_select *sel, struct kw_audit_export_file *out)
{
        struct writer w = { .tmp = tmp };
        int zfd = dup(fd);
        w.gz = zfd >= 0 ? gzdopen(zfd, "wb6") : NULL;
        if (w.gz == NULL) {
                if (zfd >= 0)
                        close(zfd);
                KW_BAIL(KW_ERR_NOMEM);
        }
        kw_buf_init(&w.line, LINE_MAX_BYTES);
        struct kw_audit_range rg;
        kw_result r = kw_keystore_audit_read_oldest(ks, sel, on_record, &w, &rg);
        if (kw_ok(r) && rg.records != w.records) {
                kw_err_set_detail("audit export: %llu records read, %llu written",
                                  (unsigned long long)rg.records, (unsigned long long)w.records);
                r = KW_RESULT(KW_ERR_INTERNAL);
        }
        if (kw_ok(r) && rg.records != 0)
                r = finish(&w, fd, &rg);
        if (w.gz != NULL)
                gzclose(w.gz);
        kw_buf_free(&w.line);
        if (!kw_ok(r) || rg.records == 0)
                return r;
        char hex[2 * KW_AUDIT_HASH_LEN + 1];
        kw_audit_hex(rg.last_hash, KW_AUDIT_HASH_LEN, hex);
        snprintf(out->name, sizeof out->name, KW_AUDIT_EXPORT_PREFIX "%020llu-%020llu-%.16s.jsonl.gz",
                 (unsigned long long)rg.first_seq, (unsigned long long)rg.last_seq, hex);
        char path[4200];
        KW_ENSURE(snprintf(path, sizeof path, "%s/%s", dir, out->name) < (int)sizeof path, KW_ERR_IO);
        if (rename(tmp, path) != 0) {
                kw_err_set_detail("cannot rename %s to %s: %s", tmp, path, strerror(errno));
                KW_BAIL(KW_ERR_IO);
        }
        r = fsync_dir(dir);
        if (kw_ok(r))
                r = check_written(path, &rg, out);
        if (!kw_ok(r)) {
                unlink(path);   /* nothing is pruned: the records are still in the key store */
                return r;
        }
        out->first_seq = rg.first_seq;
        out->last_seq = rg.last_seq;
        out->records = rg.records;
        out->last_ts_ms = rg.last_ts_ms;
        memcpy(out->prev_hash, rg.prev_hash, KW_AUDIT_HASH_LEN);
        memcpy(out->last_hash, rg.last_hash, KW_AUDIT_HASH_LEN);
        return KW_OK;
}

kw_result kw_audit_export(struct kw_keystore *ks, const char *dir, const struct kw_audit_select *sel,
                          struct kw_audit_export_file *ret)
{
        KW_ENSURE(ks != NULL && dir != NULL && dir[0] != '\0' && sel != NULL && ret != NULL,
                  KW_ERR_INPUT);
        static unsigned counter;
        char tmp[4200];
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        KW_ENSURE(snprintf(tmp, sizeof tmp, "%s/" KW_AUDIT_EXPORT_TMP_PREFIX "%d-%lld-%u.tmp", dir,
                           (int)getpid(), (long long)now.tv_sec,
                           __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED)) < (int)sizeof tmp,
                  KW_ERR_IO);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        if (fd < 0) {
                kw_err_set_detail("cannot create a file in the export directory %s: %s", dir,
                                  strerror(errno));
                KW_BAIL(KW_ERR_IO);
        }
        struct kw_audit_export_file out;
        memset(&out, 0, sizeof out);
        kw_result r = export_into(ks, dir, tmp, fd, sel, &out);
        close(fd);
        unlink(tmp);   /* renamed: gone already; otherwise what failed */
        if (kw_ok(r))
                *ret = out;
        return r;
}

unsigned kw_audit_export_clean(const char *dir)
{
        DIR *d = opendir(dir);
        if (d == NULL)
                return 0;
        unsigned n = 0;
        size_t pl = strlen(KW_AUDIT_EXPORT_TMP_PREFIX);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
                size_t l = strlen(e->d_name);
                if (l > pl + 4 && strncmp(e->d_name, KW_AUDIT_EXPORT_TMP_PREFIX, pl) == 0 &&
                    strcmp(e->d_name + l - 4, ".tmp") == 0 && unlinkat(dirfd(d), e->d_name, 0) == 0)
                        n++;
        }
        closedir(d);
        return n;
}
