/*
 * disk.h - the data disk: found and checked before anything is written to
 * it (docs/provisioning.md, "The data disk").
 *
 * A disk is a candidate when the kernel lists it in /sys/block with a
 * device behind it (not a loop, RAM or device-mapper device), it is
 * neither removable nor read-only, it is at least KWP_DISK_MIN bytes, it
 * has no partitions and nothing holds it, the kernel grants an exclusive
 * open (nothing mounted on it, no volume active on it), and its first and
 * last MiB are all zeros: a disk that holds a file system, a partition
 * table (the GPT backup is at its end) or a LUKS header is never taken.
 * Without a path given, the first candidate by name is the data disk;
 * with one, that disk must pass the same checks.  Every disk looked at is
 * logged with why it was passed over.
 */
#ifndef KWP_DISK_H
#define KWP_DISK_H

#include <stddef.h>
#include <stdint.h>

#include "../server/common/result.h"

#define KWP_DISK_MIN (32ull * 1024 * 1024)

struct kwp_disk_cfg {
        const char *sys_block;   /* "/sys/block" (tests: a tree of their own) */
        const char *dev_dir;     /* "/dev"                                     */
        const char *device;      /* a device path to check; NULL: find one     */
};

void kwp_disk_cfg_default(struct kwp_disk_cfg *c);

/*
 * The data disk's path (dev_dir/NAME, or the device given) into out, its
 * size into *ret_bytes.  KW_ERR_NOT_FOUND when no disk qualifies (the
 * detail lists each disk and why), KW_ERR_EXISTS when the device given
 * holds data, KW_ERR_DEVICE when it is missing, in use, too small,
 * removable or read-only.
 */
KW_MUST_USE kw_result kwp_disk_find(const struct kwp_disk_cfg *c, char *out, size_t cap, uint64_t *ret_bytes);

/* The disk that already holds a LUKS2 volume labelled `label` (the data
 * volume of an appliance provisioned before): its path into out, or
 * KW_ERR_NOT_FOUND. */
KW_MUST_USE kw_result kwp_disk_find_volume(const struct kwp_disk_cfg *c, const char *label, char *out, size_t cap);

#endif
