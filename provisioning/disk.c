/* disk.c - the data disk, found and checked (disk.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../server/common/log.h"
#include "disk.h"

#define EDGE (1024u * 1024u)   /* the first and last MiB must be zeros */
#define MAX_DISKS 64

void kwp_disk_cfg_default(struct kwp_disk_cfg *c)
{
        *c = (struct kwp_disk_cfg){ .sys_block = "/sys/block", .dev_dir = "/dev", .device = NULL };
}

/* A small sysfs attribute as a number; -1 when absent or not a number. */
static long long sys_num(const char *sys, const char *name, const char *attr)
{
        char path[512], b[32];
        snprintf(path, sizeof path, "%s/%s/%s", sys, name, attr);
        FILE *f = fopen(path, "re");
        if (f == NULL)
                return -1;
        char *got = fgets(b, sizeof b, f);
        fclose(f);
        char *end = NULL;
        long long v = got != NULL ? strtoll(b, &end, 10) : -1;
        return got != NULL && end != b && (*end == '\n' || *end == '\0') ? v : -1;
}

static int sys_exists(const char *sys, const char *name, const char *what)
{
        char path[512];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s/%s", sys, name, what);
        return stat(path, &st) == 0;
}

/* Whether the directory sys/name/sub has an entry (holders), or name has a
 * child with a "partition" file (a partition). */
static int sys_has_child(const char *sys, const char *name, const char *sub, const char *marker)
{
        char path[512];
        snprintf(path, sizeof path, "%s/%s%s%s", sys, name, sub[0] ? "/" : "", sub);
        DIR *d = opendir(path);
        if (d == NULL)
                return 0;
        int found = 0;
        struct dirent *e;
        while (!found && (e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.')
                        continue;
                if (marker == NULL) {
                        found = 1;
                } else {
                        char m[1024];
                        struct stat st;
                        snprintf(m, sizeof m, "%s/%s/%s", path, e->d_name, marker);
                        found = stat(m, &st) == 0;
                }
        }
        closedir(d);
        return found;
}

/* Every byte of [off, off + n) of fd is zero. */
static int zeros_at(int fd, uint64_t off, size_t n)
{
        static unsigned char b[64 * 1024];
        for (size_t done = 0; done < n;) {
                size_t want = n - done < sizeof b ? n - done : sizeof b;
                ssize_t r = pread(fd, b, want, (off_t)(off + done));
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return -1;
                for (ssize_t i = 0; i < r; i++)
                        if (b[i] != 0)
                                return 0;
                done += (size_t)r;
        }
        return 1;
}

/*
 * The checks on the device itself: exclusive, writable, large enough,
 * blank at both ends.  why: a few words when it does not qualify; the
 * result code says which way.
 */
static kw_result device_check(const char *path, uint64_t *ret_bytes, char *why, size_t whysz)
{
        int fd = open(path, O_RDONLY | O_EXCL | O_CLOEXEC);
        if (fd < 0) {
                if (errno == EBUSY)
                        snprintf(why, whysz, "in use (mounted, or a volume is active on it)");
                else
                        snprintf(why, whysz, "cannot open it alone: %s", strerror(errno));
                KW_BAIL(errno == ENOENT ? KW_ERR_NOT_FOUND : KW_ERR_DEVICE);
        }
        struct stat st;
        uint64_t bytes = 0;
        int ro = 0;
        kw_result r = KW_OK;
        if (fstat(fd, &st) != 0 || !S_ISBLK(st.st_mode)) {
                snprintf(why, whysz, "not a block device");
                r = KW_RESULT(KW_ERR_DEVICE);
        } else if (ioctl(fd, BLKGETSIZE64, &bytes) != 0 || ioctl(fd, BLKROGET, &ro) != 0) {
                snprintf(why, whysz, "its size cannot be read: %s", strerror(errno));
                r = KW_RESULT(KW_ERR_DEVICE);
        } else if (ro) {
                snprintf(why, whysz, "read-only");
                r = KW_RESULT(KW_ERR_DEVICE);
        } else if (bytes < KWP_DISK_MIN) {
                snprintf(why, whysz, "%llu bytes, smaller than %llu MiB", (unsigned long long)bytes,
                         KWP_DISK_MIN >> 20);
                r = KW_RESULT(KW_ERR_DEVICE);
        } else {
                int head = zeros_at(fd, 0, EDGE), tail = zeros_at(fd, bytes - EDGE, EDGE);
                if (head < 0 || tail < 0) {
                        snprintf(why, whysz, "cannot be read: %s", strerror(errno ? errno : EIO));
                        r = KW_RESULT(KW_ERR_DEVICE);
                } else if (!head || !tail) {
                        snprintf(why, whysz, "holds data in its %s MiB (a file system, a partition table, "
                                             "a volume?)",
                                 !head ? "first" : "last");
                        r = KW_RESULT(KW_ERR_EXISTS);
                }
        }
        close(fd);
        if (r.code == 0)
                *ret_bytes = bytes;
        return r;
}

static int by_name(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Why disk name of sys is not a candidate ("" when it is); -1 for a
 * device with nothing behind it (loop, RAM, device-mapper): not a disk. */
static int sys_check(const char *sys, const char *name, char *why, size_t whysz)
{
        why[0] = '\0';
        if (!sys_exists(sys, name, "device"))
                return -1;
        if (sys_num(sys, name, "removable") != 0)
                snprintf(why, whysz, "removable");
        else if (sys_num(sys, name, "ro") != 0)
                snprintf(why, whysz, "read-only");
        else if (sys_num(sys, name, "size") < (long long)(KWP_DISK_MIN / 512))
                snprintf(why, whysz, "smaller than %llu MiB", KWP_DISK_MIN >> 20);
        else if (sys_has_child(sys, name, "", "partition"))
                snprintf(why, whysz, "has partitions");
        else if (sys_has_child(sys, name, "holders", NULL))
                snprintf(why, whysz, "held by another device");
        return 0;
}

/* The names under sys_block, sorted; the caller frees them. */
KW_MUST_USE static kw_result list_disks(const struct kwp_disk_cfg *c, char *names[MAX_DISKS], size_t *ret_n)
{
        DIR *d = opendir(c->sys_block);
        if (d == NULL) {
                kw_err_set_detail("cannot list %s: %s", c->sys_block, strerror(errno));
                KW_BAIL(KW_ERR_DEVICE);
        }
        size_t n = 0;
        struct dirent *e;
        while (n < MAX_DISKS && (e = readdir(d)) != NULL)
                if (e->d_name[0] != '.' && (names[n] = strdup(e->d_name)) != NULL)
                        n++;
        closedir(d);
        qsort(names, n, sizeof names[0], by_name);
        *ret_n = n;
        return KW_OK;
}

/* LUKS2's binary header: magic, version 2, and the label at byte 24. */
static int holds_volume(const char *path, const char *label)
{
        unsigned char h[72];
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        ssize_t got = pread(fd, h, sizeof h, 0);
        close(fd);
        size_t ln = strlen(label);
        return got == (ssize_t)sizeof h && memcmp(h, "LUKS\xba\xbe\x00\x02", 8) == 0 && ln < 48 &&
               memcmp(h + 24, label, ln) == 0 && h[24 + ln] == 0;
}

kw_result kwp_disk_find_volume(const struct kwp_disk_cfg *c, const char *label, char *out, size_t cap)
{
        KW_ENSURE(c != NULL && label != NULL && out != NULL, KW_ERR_INPUT);
        char *names[MAX_DISKS] = { NULL };
        size_t n = 0;
        KW_TRY(list_disks(c, names, &n));
        kw_result r = KW_RESULT(KW_ERR_NOT_FOUND);
        for (size_t i = 0; i < n; i++) {
                char path[512];
                snprintf(path, sizeof path, "%s/%s", c->dev_dir, names[i]);
                if (r.code != 0 && sys_exists(c->sys_block, names[i], "device") && holds_volume(path, label)) {
                        snprintf(out, cap, "%s", path);
                        r = KW_OK;
                }
                free(names[i]);
        }
        return r;
}

kw_result kwp_disk_find(const struct kwp_disk_cfg *c, char *out, size_t cap, uint64_t *ret_bytes)
{
        KW_ENSURE(c != NULL && out != NULL && ret_bytes != NULL, KW_ERR_INPUT);
        char why[256] = "";
        if (c->device != NULL) {
                kw_result r = device_check(c->device, ret_bytes, why, sizeof why);
                if (r.code != 0) {
                        kw_err_set_detail("%s: %s", c->device, why);
                        return r;
                }
                snprintf(out, cap, "%s", c->device);
                return KW_OK;
        }
        char *names[MAX_DISKS] = { NULL };
        size_t n = 0;
        KW_TRY(list_disks(c, names, &n));
        char seen[1024] = "";
        size_t sn = 0;
        kw_result r = KW_RESULT(KW_ERR_NOT_FOUND);
        unsigned virtual = 0;
        for (size_t i = 0; i < n; i++) {
                if (r.code == 0)
                        break;
                if (sys_check(c->sys_block, names[i], why, sizeof why) < 0) {
                        virtual++;
                        continue;
                }
                char path[512];
                snprintf(path, sizeof path, "%s/%s", c->dev_dir, names[i]);
                if (why[0] == '\0' && device_check(path, ret_bytes, why, sizeof why).code == 0) {
                        snprintf(out, cap, "%s", path);
                        r = KW_OK;
                        kw_log(KW_LOG_INFO, "provision_disk", "disk", path, KW_END);
                        continue;
                }
                kw_log(KW_LOG_INFO, "provision_disk_passed_over", "disk", names[i], "why", why, KW_END);
                if (sn < sizeof seen)
                        sn += (size_t)snprintf(seen + sn, sizeof seen - sn, "%s%s: %s", sn ? "; " : "", names[i], why);
        }
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        if (r.code != 0)
                kw_err_set_detail("no empty data disk: %s (%u loop, RAM or device-mapper devices not considered)",
                                  sn ? seen : "no disk at all", virtual);
        return r;
}
