/* readfile.c - a whole small file into a kw_buf, bounded (readfile.h). */
#include <errno.h>
#include <string.h>
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
