/* readfile.c - a whole small file into a kw_buf, bounded (readfile.h). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "readfile.h"
#include "secret.h"

kw_result kw_read_fd(int fd, const char *what, size_t max, struct kw_buf *out)
{
        KW_ENSURE(fd >= 0 && what != NULL && out != NULL, KW_ERR_INPUT);
        kw_buf_reset(out);
        uint8_t b[4096];
        kw_result r = KW_OK;
        for (;;) {
                ssize_t n = read(fd, b, sizeof b);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        kw_err_set_detail("cannot read %s: %s", what, strerror(errno));
                        r = KW_RESULT(KW_ERR_IO);
                        break;
                }
                if (n == 0)
                        break;
                if (out->len + (size_t)n > max) {
                        kw_err_set_detail("%s is larger than %zu bytes", what, max);
                        r = KW_RESULT(KW_ERR_TOO_LARGE);
                        break;
                }
                r = kw_buf_put(out, b, (size_t)n);
                if (r.code != 0)
                        break;
        }
        kw_wipe(b, sizeof b);
        if (r.code != 0) {
                kw_wipe(out->p, out->len);
                kw_buf_reset(out);
        }
        return r;
}

kw_result kw_read_secret_file(const char *path, const char *what, size_t max, struct kw_secret *ret)
{
        KW_ENSURE(path != NULL && what != NULL && ret != NULL && max > 0, KW_ERR_INPUT);
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                kw_err_set_detail("cannot open %s: %s", what, strerror(errno));
                KW_BAIL(KW_ERR_IO);
        }
        struct stat st;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
                close(fd);
                kw_err_set_detail("%s is not a regular file", what);
                KW_BAIL(KW_ERR_IO);
        }
        struct kw_buf b;
        kw_buf_init(&b, max + 2);
        kw_result r = kw_read_fd(fd, what, max + 2, &b);   /* the line and its "\r\n" */
        close(fd);
        size_t n = b.len;
        if (n >= 2 && b.p[n - 2] == '\r' && b.p[n - 1] == '\n')
                n -= 2;
        else if (n >= 1 && b.p[n - 1] == '\n')
                n -= 1;
        if (r.code == KW_ERR_TOO_LARGE || (r.code == 0 && (n == 0 || n > max))) {
                if (r.code == 0 && n == 0)
                        kw_err_set_detail("%s is empty", what);
                else
                        kw_err_set_detail("%s is longer than %zu bytes", what, max);
                r = KW_RESULT(KW_ERR_BAD_LENGTH);
        } else if (r.code == 0) {
                r = kw_secret_dup(b.p, n, ret);
        }
        kw_buf_free(&b);   /* wipes */
        if (r.code != 0)
                kw_trace(r.code, __FILE__, __LINE__);
        return r;
}
