/*
 * media.h - one file from a config disk or CD-ROM (the NoCloud CIDATA disk,
 * Azure's provisioning CD with ovf-env.xml; docs/provisioning.md).
 *
 * The device is mounted read-only, nosuid, nodev, noexec on a fresh
 * private directory, trying the file systems such media use (iso9660,
 * udf, vfat, ext4); the file is read (a regular file, not a symbolic link,
 * at most max bytes); the device is unmounted and the directory removed
 * before returning, whatever happened.
 */
#ifndef KWP_MEDIA_H
#define KWP_MEDIA_H

#include <stddef.h>

#include "../server/common/buf.h"
#include "../server/common/result.h"

/*
 * name from device into out (reset first; the caller wipes it).
 * KW_ERR_NOT_FOUND when the device or the file does not exist (or the
 * device holds no file system mounted here); KW_ERR_TOO_LARGE past max;
 * KW_ERR_BAD_FIELD when name is not a regular file; KW_ERR_IO otherwise.
 */
KW_MUST_USE kw_result kwp_media_read(const char *device, const char *name, size_t max, struct kw_buf *out);

#endif
