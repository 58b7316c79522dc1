/*
 * db.c - keywardctl db export --out FILE / db import --in FILE [--config CFG]:
 * a key store moved between engines (docs/fleet-migration.md).  Nothing
 * goes through the network or the admin API: the work is keywardd's
 * (--db-export / --db-import, server/custody/custody_dbio.c), run here
 * from next to this executable (or $KEYWARDD) on the appliance itself,
 * where the configuration, the HSM and the key store are.
 *
 * keywardd runs as the custody user, which may not reach the operator's
 * file: the document goes through a pipe (export: keywardd's fd 3; import:
 * its standard input), and this process, running as the operator, reads
 * or writes the file (export: parsed and checked, then written 0600 through
 * a temp file, fsync and rename).  keywardd's output and exit status are
 * passed on as they are.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/fsync_dir.h"
#include "../common/readfile.h"
#include "../custody/crypto.h"
#include "../custody/dbio.h"
#include "ctl.h"

/* keywardd: $KEYWARDD, else beside /proc/self/exe. */
static int find_keywardd(char out[PATH_MAX])
{
        const char *env = getenv("KEYWARDD");
        if (env != NULL && env[0] != '\0') {
                snprintf(out, PATH_MAX, "%s", env);
                return 0;
        }
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0)
                return -1;
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash == NULL)
                return -1;
        *slash = '\0';
        if ((size_t)snprintf(out, PATH_MAX, "%s/keywardd", self) >= PATH_MAX)
                return -1;
        return 0;
}

/* Runs keywardd with argv[1..] (argv[0] is set here); in_fd becomes its
 * standard input, out_fd (when >= 0) its fd 3.  Returns the pid or -1. */
static pid_t spawn(char **argv, const char *path, int in_fd, int out_fd)
{
        pid_t pid = fork();
        if (pid != 0)
                return pid;
        if (in_fd >= 0 && (in_fd == 0 ? fcntl(0, F_SETFD, 0) : dup2(in_fd, 0)) < 0)
                _exit(127);
        if (out_fd >= 0 && (out_fd == 3 ? fcntl(3, F_SETFD, 0) : dup2(out_fd, 3)) < 0)
                _exit(127);
        argv[0] = (char *)path;
        execv(path, argv);
        fprintf(stderr, "keywardctl: cannot run %s: %s (set KEYWARDD to keywardd's path)\n", path,
                strerror(errno));
        _exit(127);
}

/* keywardd's exit status, passed on (a signal: CTL_SERVER). */
static int wait_status(pid_t pid)
{
        int st;
        while (waitpid(pid, &st, 0) < 0)
                if (errno != EINTR)
                        return CTL_SERVER;
        if (WIFEXITED(st))
                return WEXITSTATUS(st);
        ctl_err("keywardd ended by signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
        return CTL_SERVER;
}

static int write_file(const char *path, const struct kw_buf *b)
{
        char tmp[PATH_MAX + 32];
        if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= sizeof tmp) {
                ctl_err("%s: path too long", path);
                return -1;
        }
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
                ctl_err("cannot create %s: %s", tmp, strerror(errno));
                return -1;
        }
        size_t off = 0;
        int bad = 0;
        while (off < b->len && !bad) {
                ssize_t w = write(fd, b->p + off, b->len - off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        bad = 1;
                else
                        off += (size_t)w;
        }
        if (bad || fsync(fd) != 0) {
                ctl_err("cannot write %s: %s", tmp, strerror(errno));
                close(fd);
                unlink(tmp);
                return -1;
        }
        if (close(fd) != 0 || rename(tmp, path) != 0) {
                ctl_err("cannot write %s: %s", path, strerror(errno));
                unlink(tmp);
                return -1;
        }
        kw_fsync_parent(path);
        return 0;
}

int ctl_cmd_db_export(struct ctl *c, const struct ctl_args *a)
{
        (void)c;
        const char *out = ctl_args_get(a, "out"), *cfg = ctl_args_get(a, "config");
        if (out == NULL || out[0] == '\0') {
                ctl_err("db export needs --out FILE");
                return CTL_USAGE;
        }
        char kd[PATH_MAX];
        if (find_keywardd(kd) != 0) {
                ctl_err("cannot find keywardd beside keywardctl: set KEYWARDD");
                return CTL_USAGE;
        }
        struct stat st;
        if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) {
                ctl_err("--out %s is a directory", out);
                return CTL_USAGE;
        }
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) {
                ctl_err("pipe: %s", strerror(errno));
                return CTL_CONNECT;
        }
        char *argv[8] = { NULL };
        int n = 1;
        if (cfg != NULL) {
                argv[n++] = "--config";
                argv[n++] = (char *)cfg;
        }
        argv[n++] = "--db-export";
        argv[n++] = "/dev/fd/3";
        fflush(stdout);
        pid_t pid = spawn(argv, kd, -1, p[1]);
        close(p[1]);
        if (pid < 0) {
                close(p[0]);
                ctl_err("fork: %s", strerror(errno));
                return CTL_CONNECT;
        }
        struct kw_buf doc;
        kw_buf_init(&doc, (size_t)KW_DBIO_MAX_BYTES + 1);
        kw_result r = kw_read_fd(p[0], "keywardd's export", KW_DBIO_MAX_BYTES, &doc);
        close(p[0]);
        int rc = wait_status(pid);
        if (rc == 0 && !kw_ok(r)) {
                ctl_err("reading keywardd's export: %s", kw_err_detail());
                rc = CTL_SERVER;
        }
        struct kw_dbio_doc d;
        kw_dbio_doc_init(&d);
        if (rc == 0 && !kw_ok(kw_dbio_parse(doc.p, doc.len, &d))) {
                ctl_err("keywardd's export does not check: %s", kw_err_detail());
                rc = CTL_SERVER;
        }
        kw_dbio_doc_free(&d);
        if (rc == 0 && write_file(out, &doc) != 0)
                rc = CTL_CONNECT;
        if (rc == 0) {
                uint8_t h[32];
                char hex[65];
                kw_sha256(doc.p, doc.len, h);
                kw_dbio_hex(h, 32, hex);
                printf("wrote %s (mode 0600)\nsha256: %s  %s\n", out, hex, out);
        }
        kw_buf_free(&doc);
        return rc;
}

int ctl_cmd_db_import(struct ctl *c, const struct ctl_args *a)
{
        (void)c;
        const char *in = ctl_args_get(a, "in"), *cfg = ctl_args_get(a, "config");
        if (in == NULL || in[0] == '\0') {
                ctl_err("db import needs --in FILE");
                return CTL_USAGE;
        }
        char kd[PATH_MAX];
        if (find_keywardd(kd) != 0) {
                ctl_err("cannot find keywardd beside keywardctl: set KEYWARDD");
                return CTL_USAGE;
        }
        int fd = open(in, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                ctl_err("cannot open %s: %s", in, strerror(errno));
                return CTL_USAGE;
        }
        char *argv[8] = { NULL };
        int n = 1;
        if (cfg != NULL) {
                argv[n++] = "--config";
                argv[n++] = (char *)cfg;
        }
        argv[n++] = "--db-import";
        argv[n++] = "-";
        fflush(stdout);
        pid_t pid = spawn(argv, kd, fd, -1);
        close(fd);
        if (pid < 0) {
                ctl_err("fork: %s", strerror(errno));
                return CTL_CONNECT;
        }
        return wait_status(pid);
}
