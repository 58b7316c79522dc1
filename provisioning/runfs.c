/*
 * runfs.c - files and mounts of a provisioning run (runfs.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../server/common/err.h"
#include "../server/common/readfile.h"
#include "../server/common/secret.h"
#include "runfs.h"
#include "spawn.h"

#define LUKS_AREA (16u << 20)   /* a LUKS2 header and its keyslots, as keyward-unlock formats */

static void join(char *out, const char *a, const char *b)
{
        snprintf(out, KWP_PATH_MAX, "%s/%s", a, b);
}

void kwp_paths_init(struct kwp_paths *p, const char *d, const char *s)
{
        snprintf(p->data, sizeof p->data, "%s", d);
        join(p->etc, d, "etc");
        join(p->conf, d, "etc/keyward.toml");
        join(p->softhsm_conf, d, "etc/softhsm2.conf");
        join(p->tls, d, "etc/tls");
        join(p->custody, d, "custody");
        join(p->pin_file, d, "custody/hsm.pin");
        join(p->tokens, d, "custody/softhsm/tokens");
        join(p->prov, d, "provision");
        join(p->journal, d, "provision/journal");
        join(p->recovery, d, "provision/recovery-key");
        join(p->output, d, "provision/first-boot.txt");
        join(p->xks_import, d, "provision/xks-import.json");
        join(p->state_journal, s, "journal");
        join(p->state_recovery, s, "recovery-key");
}

kw_result kwp_mkdir(const char *path, mode_t mode, uid_t uid, gid_t gid)
{
        if (mkdir(path, mode) != 0 && errno != EEXIST)
                return KW_FAIL(KW_ERR_IO, "mkdir %s: %s", path, strerror(errno));
        struct stat st;
        if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode))
                return KW_FAIL(KW_ERR_IO, "%s is not a directory", path);
        if (chown(path, uid, gid) != 0 || chmod(path, mode) != 0)
                return KW_FAIL(KW_ERR_IO, "set the owner and mode of %s: %s", path, strerror(errno));
        return KW_OK;
}

KW_MUST_USE static kw_result fsync_dir(const char *path)
{
        char copy[KWP_PATH_MAX];
        snprintf(copy, sizeof copy, "%s", path);
        int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) != 0) {
                int e = errno;
                if (fd >= 0)
                        close(fd);
                return KW_FAIL(KW_ERR_IO, "sync the directory of %s: %s", path, strerror(e));
        }
        close(fd);
        return KW_OK;
}

/* Same bytes already there? */
static bool same_content(const char *path, const void *p, size_t n)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return false;
        struct kw_buf b;
        kw_buf_init(&b, n + 1);
        bool same = kw_read_fd(fd, path, n + 1, &b).code == 0 && b.len == n && memcmp(b.p, p, n) == 0;
        kw_buf_free(&b);
        close(fd);
        return same;
}

kw_result kwp_write_file(const char *path, const void *p, size_t n, mode_t mode, uid_t uid, gid_t gid)
{
        if (same_content(path, p, n)) {
                if (chown(path, uid, gid) != 0 || chmod(path, mode) != 0)
                        return KW_FAIL(KW_ERR_IO, "set the owner and mode of %s: %s", path, strerror(errno));
                return KW_OK;
        }
        char tmp[KWP_PATH_MAX + 8];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        (void)unlink(tmp);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return KW_FAIL(KW_ERR_IO, "create %s: %s", tmp, strerror(errno));
        const char *s = p;
        size_t left = n;
        while (left > 0) {
                ssize_t w = write(fd, s, left);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        break;
                s += w;
                left -= (size_t)w;
        }
        int ok = left == 0 && fchown(fd, uid, gid) == 0 && fchmod(fd, mode) == 0 && fsync(fd) == 0;
        int e = errno;
        close(fd);
        if (!ok || rename(tmp, path) != 0) {
                e = ok ? errno : e;
                (void)unlink(tmp);
                return KW_FAIL(KW_ERR_IO, "write %s: %s", path, strerror(e));
        }
        return fsync_dir(path);
}

kw_result kwp_write_secret_file(const char *path, const void *p, size_t n, uid_t uid, gid_t gid)
{
        return kwp_write_file(path, p, n, 0600, uid, gid);
}

kw_result kwp_read_secret_file(const char *path, struct kw_buf *out)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 && errno == ENOENT) {
                kw_err_set_detail("%s does not exist", path);
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        if (fd < 0)
                return KW_FAIL(KW_ERR_IO, "open %s: %s", path, strerror(errno));
        kw_result r = kw_read_fd(fd, path, out->max, out);
        close(fd);
        return r;
}

void kwp_remove_secret_file(const char *path)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
                static const char zeros[4096];
                for (off_t off = 0; off < st.st_size; off += (off_t)sizeof zeros)
                        if (write(fd, zeros, sizeof zeros) < 0)
                                break;
                (void)fsync(fd);
        }
        if (fd >= 0)
                close(fd);
        (void)unlink(path);
}

kw_result kwp_move_secret_file(const char *from, const char *to)
{
        struct kw_buf b;
        kw_buf_init(&b, 4096);
        kw_result r = kwp_read_secret_file(from, &b);
        if (r.code == KW_ERR_NOT_FOUND && access(to, F_OK) == 0) {
                kw_buf_free(&b);
                return KW_OK; /* moved before */
        }
        if (r.code == 0)
                r = kwp_write_secret_file(to, b.p, b.len, 0, 0);
        kw_buf_free(&b);
        KW_TRY(r);
        kwp_remove_secret_file(from);
        return KW_OK;
}

kw_result kwp_chown_tree(const char *path, uid_t uid, gid_t gid)
{
        struct stat st;
        if (lstat(path, &st) != 0)
                return KW_FAIL(KW_ERR_IO, "%s: %s", path, strerror(errno));
        if (S_ISLNK(st.st_mode))
                return KW_FAIL(KW_ERR_IO, "%s is a symbolic link", path);
        if (lchown(path, uid, gid) != 0)
                return KW_FAIL(KW_ERR_IO, "chown %s: %s", path, strerror(errno));
        if (!S_ISDIR(st.st_mode))
                return KW_OK;
        DIR *d = opendir(path);
        if (d == NULL)
                return KW_FAIL(KW_ERR_IO, "opendir %s: %s", path, strerror(errno));
        kw_result r = KW_OK;
        struct dirent *e;
        while (r.code == 0 && (e = readdir(d)) != NULL) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                        continue;
                char sub[KWP_PATH_MAX];
                if ((size_t)snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= sizeof sub)
                        r = KW_FAIL(KW_ERR_IO, "path too long under %s", path);
                else
                        r = kwp_chown_tree(sub, uid, gid);
        }
        closedir(d);
        return r;
}

kw_result kwp_wipe_own_header(const char *device)
{
        int fd = open(device, O_RDWR | O_CLOEXEC | O_EXCL);
        if (fd < 0)
                return KW_FAIL(KW_ERR_DEVICE, "open %s: %s", device, strerror(errno));
        unsigned char head[4096];
        ssize_t got = pread(fd, head, sizeof head, 0);
        bool zero = got == (ssize_t)sizeof head;
        for (size_t i = 0; zero && i < sizeof head; i++)
                zero = head[i] == 0;
        bool luks = got >= 8 && memcmp(head, "LUKS\xba\xbe\x00\x02", 8) == 0;
        if (!zero && !luks) {
                close(fd);
                return KW_FAIL(KW_ERR_EXISTS, "%s holds something else than the LUKS2 header this run "
                                              "began writing: not touched", device);
        }
        static unsigned char zeros[1u << 20];
        kw_result r = KW_OK;
        for (off_t off = 0; off < (off_t)LUKS_AREA && r.code == 0; off += (off_t)sizeof zeros)
                if (pwrite(fd, zeros, sizeof zeros, off) != (ssize_t)sizeof zeros)
                        r = KW_FAIL(KW_ERR_IO, "zero the header area of %s: %s", device, strerror(errno));
        if (r.code == 0 && fsync(fd) != 0)
                r = KW_FAIL(KW_ERR_IO, "sync %s: %s", device, strerror(errno));
        close(fd);
        return r;
}

kw_result kwp_mkfs_if_blank(const char *device)
{
        const char *probe[] = { "/usr/sbin/blkid", "-p", "-o", "value", "-s", "TYPE", device, NULL };
        struct kwp_spawn sp = { .argv = probe, .timeout_ms = 30000 };
        struct kw_buf out;
        kw_buf_init(&out, 256);
        int st = 0;
        kw_result r = kwp_spawn_run(&sp, &out, &st);
        if (r.code == 0 && st == 0) {
                bool ext4 = out.len >= 4 && memcmp(out.p, "ext4", 4) == 0;
                kw_buf_free(&out);
                if (ext4)
                        return KW_OK; /* made by this run before it was stopped */
                return KW_FAIL(KW_ERR_EXISTS, "%s holds a file system this run did not make", device);
        }
        kw_buf_free(&out);
        if (r.code != 0)
                return r;
        if (st != 2)
                return KW_FAIL(KW_ERR_IO, "blkid -p %s: exit status %d", device, st);
        const char *mkfs[] = { "/usr/sbin/mkfs.ext4", "-q", "-L", "keyward", "-E",
                               "lazy_itable_init=0,lazy_journal_init=0", device, NULL };
        sp.argv = mkfs;
        sp.timeout_ms = 600000;
        r = kwp_spawn_run(&sp, NULL, &st);
        if (r.code == 0 && st != 0)
                r = KW_FAIL(KW_ERR_IO, "mkfs.ext4 %s: exit status %d", device, st);
        return r;
}

bool kwp_is_mounted(const char *dir)
{
        FILE *f = fopen("/proc/self/mountinfo", "re");
        if (f == NULL)
                return false;
        char line[4096];
        bool found = false;
        while (!found && fgets(line, sizeof line, f) != NULL) {
                char mp[4096];
                /* id parent major:minor root mount-point ... */
                if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 && strcmp(mp, dir) == 0)
                        found = true;
        }
        fclose(f);
        return found;
}

kw_result kwp_mount_ext4(const char *device, const char *dir)
{
        if (kwp_is_mounted(dir))
                return KW_OK;
        if (mount(device, dir, "ext4", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
                return KW_FAIL(KW_ERR_IO, "mount %s on %s: %s", device, dir, strerror(errno));
        return KW_OK;
}

kw_result kwp_softhsm_conf(const char *conf, const char *tokendir, uid_t uid, gid_t gid)
{
        char parent[KWP_PATH_MAX];
        snprintf(parent, sizeof parent, "%s", tokendir);
        KW_TRY(kwp_mkdir(dirname(parent), 0700, uid, gid));
        KW_TRY(kwp_mkdir(tokendir, 0700, uid, gid));
        char text[KWP_PATH_MAX + 200];
        int n = snprintf(text, sizeof text,
                         "# written by keyward-provision: the evaluation token (SoftHSM2)\n"
                         "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n"
                         "slots.removable = false\n",
                         tokendir);
        KW_ENSURE(n > 0 && (size_t)n < sizeof text, KW_ERR_INPUT);
        return kwp_write_file(conf, text, (size_t)n, 0644, 0, 0);
}

kw_result kwp_load_config(const char *path, struct kw_config **ret)
{
        char *const env[] = { NULL };
        kw_config_free(*ret);
        *ret = NULL;
        return kw_config_load(path, env, ret);
}
