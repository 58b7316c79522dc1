/*
 * readfile.h - a whole small file into a kw_buf, bounded: the one loop the
 * command-line tools, keyward-provision and the custody's secret files are
 * read with.
 */
#ifndef KW_READFILE_H
#define KW_READFILE_H

#include <stddef.h>

#include "buf.h"
#include "result.h"

/*
 * Reads fd to its end into out (reset first).  what names the file in the
 * messages.  KW_ERR_TOO_LARGE past max bytes, KW_ERR_IO when a read
 * fails; on failure out is wiped and empty.  The bounce buffer is wiped
 * (files read this way may hold tokens or keys).
 */
KW_MUST_USE kw_result kw_read_fd(int fd, const char *what, size_t max, struct kw_buf *out);

struct kw_secret;

/*
 * The one line of a small secret file (the HSM PIN, an XKS secret access
 * key) into the secure heap (secret.h): path must be a regular file, and
 * its content with one final "\n" or "\r\n" removed 1 to max bytes (any
 * bytes: the caller checks its own alphabet).  what names the file in the
 * details, which never quote the content.  KW_ERR_IO when the file cannot
 * be opened or read or is not a regular file, KW_ERR_BAD_LENGTH when the
 * line is empty or longer than max.  Every copy on the way is wiped; *ret
 * set only on success (free it with kw_secret_free).
 */
KW_MUST_USE kw_result kw_read_secret_file(const char *path, const char *what, size_t max, struct kw_secret *ret);

#endif
