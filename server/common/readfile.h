/*
 * readfile.h - a whole small file into a kw_buf, bounded: the one loop the
 * command-line tools and keyward-provision read files with.
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

#endif
