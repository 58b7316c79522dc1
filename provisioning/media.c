/* media.c - one file from a config disk or CD-ROM (media.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../server/common/readfile.h"
#include "media.h"

static const char *const fs_types[] = { "iso9660", "udf", "vfat", "ext4", NULL };

/* Reads the open regular file fd (at most max bytes) into out. */
static kw_result read_regular(int fd, const char *what, size_t max, struct kw_buf *out)
{
        struct stat st;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
                kw_err_set_detail("%s is not a regular file", what);
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        return kw_read_fd(fd, what, max, out);
}

kw_result kwp_media_read(const char *device, const char *name, size_t max, struct kw_buf *out)
{
        KW_ENSURE(device != NULL && name != NULL && out != NULL && strchr(name, '/') == NULL, KW_ERR_INPUT);
        struct stat st;
        if (stat(device, &st) != 0) {
                kw_err_set_detail("no %s", device);
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        if (!S_ISBLK(st.st_mode)) {
                kw_err_set_detail("%s is not a block device", device);
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        const char *base = access("/run", W_OK) == 0 ? "/run" : "/tmp";
        char dir[64];
        snprintf(dir, sizeof dir, "%s/keyward-provision-XXXXXX", base);
        if (mkdtemp(dir) == NULL) {
                kw_err_set_detail("cannot make a mount point in %s: %s", base, strerror(errno));
                KW_BAIL(KW_ERR_IO);
        }
        int mounted = 0, last = 0;
        for (size_t i = 0; fs_types[i] != NULL && !mounted; i++) {
                mounted = mount(device, dir, fs_types[i], MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0;
                last = errno;
        }
        kw_result r = KW_OK;
        if (!mounted) {
                kw_err_set_detail("%s holds no file system mounted here (%s)", device, strerror(last));
                r = KW_RESULT(KW_ERR_NOT_FOUND);
        } else {
                int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                int fd = dfd >= 0 ? openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK) : -1;
                char what[256];
                snprintf(what, sizeof what, "%s on %s", name, device);
                if (fd < 0) {
                        int e = errno;
                        kw_err_set_detail("no %s (%s)", what, strerror(e));
                        r = KW_RESULT(e == ENOENT ? KW_ERR_NOT_FOUND : e == ELOOP ? KW_ERR_BAD_FIELD : KW_ERR_IO);
                } else {
                        r = read_regular(fd, what, max, out);
                        close(fd);
                }
                if (dfd >= 0)
                        close(dfd);
                if (umount2(dir, 0) != 0)
                        (void)umount2(dir, MNT_DETACH);
        }
        rmdir(dir);
        return r;
}
