/*
 * journal.c - the provisioning step journal (journal.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../server/common/err.h"
#include "../server/common/json_io.h"
#include "journal.h"

#define MAX_LINES 1024u

struct kwp_journal {
        char *path;
        int fd;
        cJSON *lines[MAX_LINES];
        size_t n;
};

KW_MUST_USE static kw_result fsync_dir_of(const char *path)
{
        char *copy = strdup(path);
        KW_ENSURE(copy != NULL, KW_ERR_NOMEM);
        int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        free(copy);
        if (fd < 0 || fsync(fd) != 0) {
                int e = errno;
                if (fd >= 0)
                        close(fd);
                kw_err_set_detail("sync the directory of %s: %s", path, strerror(e));
                KW_BAIL(KW_ERR_IO);
        }
        close(fd);
        return KW_OK;
}

/* One line: an object of strings with step, state and time. */
static bool line_ok(const cJSON *o)
{
        static const char *const states[] = { "start", "done", "failed", NULL };
        if (!cJSON_IsObject(o))
                return false;
        for (const cJSON *m = o->child; m != NULL; m = m->next)
                if (!cJSON_IsString(m) || m->string == NULL)
                        return false;
        const cJSON *step = cJSON_GetObjectItemCaseSensitive(o, "step");
        const cJSON *state = cJSON_GetObjectItemCaseSensitive(o, "state");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "time");
        if (step == NULL || state == NULL || t == NULL || step->valuestring[0] == '\0')
                return false;
        for (size_t i = 0; states[i] != NULL; i++)
                if (strcmp(state->valuestring, states[i]) == 0)
                        return true;
        return false;
}

/* Parses buf[0..len) into j->lines; *ret_keep = bytes of complete lines. */
KW_MUST_USE static kw_result parse_all(struct kwp_journal *j, const char *buf, size_t len,
                                       size_t *ret_keep)
{
        size_t off = 0;
        while (off < len) {
                const char *nl = memchr(buf + off, '\n', len - off);
                if (nl == NULL)
                        break; /* torn last line: cut off */
                size_t n = (size_t)(nl - (buf + off));
                cJSON *o = NULL;
                char where[32];
                snprintf(where, sizeof where, "%zu", j->n + 1);
                if (j->n == MAX_LINES)
                        return KW_FAIL(KW_ERR_BAD_FIELD, "the journal %s has more than %u lines", j->path,
                                     MAX_LINES);
                if (kw_json_parse((const uint8_t *)buf + off, n, 4, &o).code != 0 || !line_ok(o)) {
                        cJSON_Delete(o);
                        return KW_FAIL(KW_ERR_BAD_FIELD,
                                     "the journal %s is not one provisioning wrote (line %s is not "
                                     "a step record): remove it only if no step has run",
                                     j->path, where);
                }
                j->lines[j->n++] = o;
                off += n + 1;
        }
        *ret_keep = off;
        return KW_OK;
}

void kwp_journal_close(struct kwp_journal *j)
{
        if (j == NULL)
                return;
        for (size_t i = 0; i < j->n; i++)
                cJSON_Delete(j->lines[i]);
        if (j->fd >= 0)
                close(j->fd);
        free(j->path);
        free(j);
}

kw_result kwp_journal_open(const char *path, struct kwp_journal **ret)
{
        KW_ENSURE(path != NULL && ret != NULL, KW_ERR_INPUT);
        struct kwp_journal *j = calloc(1, sizeof *j);
        KW_ENSURE(j != NULL, KW_ERR_NOMEM);
        j->fd = -1;
        kw_result r = KW_OK;
        char *buf = NULL;
        if ((j->path = strdup(path)) == NULL) {
                r = KW_RESULT(KW_ERR_NOMEM);
                goto fail;
        }
        j->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        struct stat st;
        if (j->fd < 0 || fstat(j->fd, &st) != 0) {
                r = KW_FAIL(KW_ERR_IO, "open the journal %s: %s", path, strerror(errno));
                goto fail;
        }
        if (!S_ISREG(st.st_mode) || st.st_size > (off_t)KWP_JOURNAL_MAX) {
                r = KW_FAIL(KW_ERR_BAD_FIELD, "the journal %s is %s", path,
                          S_ISREG(st.st_mode) ? "too large" : "not a regular file");
                goto fail;
        }
        size_t len = (size_t)st.st_size, got = 0;
        buf = malloc(len + 1);
        if (buf == NULL) {
                r = KW_RESULT(KW_ERR_NOMEM);
                goto fail;
        }
        while (got < len) {
                ssize_t n = pread(j->fd, buf + got, len - got, (off_t)got);
                if (n <= 0) {
                        r = KW_FAIL(KW_ERR_IO, "read the journal %s: %s", path,
                                  n == 0 ? "short read" : strerror(errno));
                        goto fail;
                }
                got += (size_t)n;
        }
        size_t keep = 0;
        KW_TRY_GOTO(r, parse_all(j, buf, len, &keep), fail);
        if (keep != len && (ftruncate(j->fd, (off_t)keep) != 0 || fsync(j->fd) != 0)) {
                r = KW_FAIL(KW_ERR_IO, "cut the torn last line of the journal %s: %s", path,
                          strerror(errno));
                goto fail;
        }
        if (lseek(j->fd, 0, SEEK_END) < 0) {
                r = KW_FAIL(KW_ERR_IO, "seek the journal %s: %s", path, strerror(errno));
                goto fail;
        }
        free(buf);
        *ret = j;
        return KW_OK;
fail:
        free(buf);
        kwp_journal_close(j);
        return r;
}

const char *kwp_journal_path(const struct kwp_journal *j) { return j->path; }

KW_MUST_USE static kw_result write_all(int fd, const char *s, size_t n, const char *path)
{
        while (n > 0) {
                ssize_t w = write(fd, s, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return KW_FAIL(KW_ERR_IO, "write the journal %s: %s", path, strerror(errno));
                s += w;
                n -= (size_t)w;
        }
        return KW_OK;
}

kw_result kwp_journal_record(struct kwp_journal *j, const char *step, const char *state,
                             const char *const *kv)
{
        KW_ENSURE(j != NULL && step != NULL && state != NULL && j->n < MAX_LINES, KW_ERR_INPUT);
        char now[32];
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
        cJSON *o = cJSON_CreateObject();
        KW_ENSURE(o != NULL, KW_ERR_NOMEM);
        bool ok = cJSON_AddStringToObject(o, "step", step) && cJSON_AddStringToObject(o, "state", state) &&
                  cJSON_AddStringToObject(o, "time", now);
        for (size_t i = 0; ok && kv != NULL && kv[i] != NULL && kv[i + 1] != NULL; i += 2)
                ok = cJSON_AddStringToObject(o, kv[i], kv[i + 1]) != NULL;
        char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
        if (text == NULL) {
                cJSON_Delete(o);
                KW_BAIL(KW_ERR_NOMEM);
        }
        size_t n = strlen(text);
        text[n] = '\n'; /* cJSON's buffer has the terminator's byte */
        kw_result r = write_all(j->fd, text, n + 1, j->path);
        free(text);
        if (r.code == 0 && fsync(j->fd) != 0)
                r = KW_FAIL(KW_ERR_IO, "sync the journal %s: %s", j->path, strerror(errno));
        if (r.code != 0) {
                cJSON_Delete(o);
                return r;
        }
        j->lines[j->n++] = o;
        return KW_OK;
}

static const char *str_of(const cJSON *o, const char *k)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
        return v != NULL ? v->valuestring : NULL;
}

/* The state of the step's last line, or NULL. */
static const char *last_state(const struct kwp_journal *j, const char *step)
{
        for (size_t i = j->n; i-- > 0;)
                if (strcmp(str_of(j->lines[i], "step"), step) == 0)
                        return str_of(j->lines[i], "state");
        return NULL;
}

bool kwp_journal_done(const struct kwp_journal *j, const char *step)
{
        const char *s = last_state(j, step);
        return s != NULL && strcmp(s, "done") == 0;
}

bool kwp_journal_started(const struct kwp_journal *j, const char *step)
{
        const char *s = last_state(j, step);
        return s != NULL && strcmp(s, "done") != 0;
}

const char *kwp_journal_get(const struct kwp_journal *j, const char *step, const char *field)
{
        for (size_t i = j->n; i-- > 0;)
                if (strcmp(str_of(j->lines[i], "step"), step) == 0 && str_of(j->lines[i], field) != NULL)
                        return str_of(j->lines[i], field);
        return NULL;
}

const char *kwp_journal_time(const struct kwp_journal *j, const char *step)
{
        const char *t = kwp_journal_get(j, step, "time");
        return t != NULL ? t : "";
}

kw_result kwp_journal_move(struct kwp_journal *j, const char *path)
{
        KW_ENSURE(j != NULL && path != NULL, KW_ERR_INPUT);
        char tmp[4096];
        int n = snprintf(tmp, sizeof tmp, "%s.new", path);
        KW_ENSURE(n > 0 && (size_t)n < sizeof tmp, KW_ERR_INPUT);
        (void)unlink(tmp);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return KW_FAIL(KW_ERR_IO, "create %s: %s", tmp, strerror(errno));
        kw_result r = KW_OK;
        for (size_t i = 0; i < j->n && r.code == 0; i++) {
                char *text = cJSON_PrintUnformatted(j->lines[i]);
                if (text == NULL) {
                        r = KW_RESULT(KW_ERR_NOMEM);
                        break;
                }
                size_t len = strlen(text);
                text[len] = '\n';
                r = write_all(fd, text, len + 1, tmp);
                free(text);
        }
        if (r.code == 0 && fsync(fd) != 0)
                r = KW_FAIL(KW_ERR_IO, "sync %s: %s", tmp, strerror(errno));
        if (r.code == 0 && rename(tmp, path) != 0)
                r = KW_FAIL(KW_ERR_IO, "rename to %s: %s", path, strerror(errno));
        if (r.code == 0)
                r = fsync_dir_of(path);
        if (r.code != 0) {
                close(fd);
                (void)unlink(tmp);
                return r;
        }
        char *np = strdup(path);
        if (np == NULL) {
                close(fd);
                KW_BAIL(KW_ERR_NOMEM);
        }
        close(j->fd);
        j->fd = fd;
        free(j->path);
        j->path = np;
        return KW_OK;
}
