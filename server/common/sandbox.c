/* sandbox.c - users, capabilities, limits and seccomp filters (see sandbox.h). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/capability.h>
#include <seccomp.h>

#include "sandbox.h"

kw_result kw_identity_lookup(const char *user, struct kw_identity *ret)
{
        if (user == NULL || user[0] == '\0') {
                kw_err_set_detail("keywardd needs a system user for each process");
                KW_BAIL(KW_ERR_CONFIG);
        }
        struct passwd *pw = getpwnam(user);
        if (pw == NULL) {
                kw_err_set_detail("user '%s' does not exist: create it (useradd --system --no-create-home "
                                  "--shell /usr/sbin/nologin %s, or `make users`)", user, user);
                KW_BAIL(KW_ERR_CONFIG);
        }
        if (pw->pw_uid == 0 || pw->pw_gid == 0) {
                kw_err_set_detail("user '%s' is root or in group root: each process needs an "
                                  "unprivileged user of its own", user);
                KW_BAIL(KW_ERR_CONFIG);
        }
        struct kw_identity id;
        memset(&id, 0, sizeof id);
        id.uid = pw->pw_uid;
        id.gid = pw->pw_gid;
        id.change = geteuid() == 0;
        snprintf(id.name, sizeof id.name, "%s", user);
        *ret = id;
        return KW_OK;
}

kw_result kw_identity_resolve(const char *user, struct kw_identity *ret)
{
        if (geteuid() == 0)
                return kw_identity_lookup(user, ret);
        struct kw_identity id;
        memset(&id, 0, sizeof id);
        id.uid = getuid();
        id.gid = getgid();
        struct passwd *pw = getpwuid(id.uid);
        snprintf(id.name, sizeof id.name, "%s", pw ? pw->pw_name : "?");
        *ret = id;
        return KW_OK;
}

void kw_caps_drop_bounding(void)
{
        if (geteuid() != 0)
                return;
        for (int cap = 0; cap <= CAP_LAST_CAP; cap++)
                (void)prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
}

kw_result kw_privs_drop(const struct kw_identity *id)
{
        if (!id->change)
                return KW_OK;
        if (initgroups(id->name, id->gid) != 0 || setresgid(id->gid, id->gid, id->gid) != 0 ||
            setresuid(id->uid, id->uid, id->uid) != 0) {
                kw_err_set_detail("cannot become user '%s': %s", id->name, strerror(errno));
                KW_BAIL(KW_ERR_CONFIG);
        }
        if (setuid(0) == 0 || seteuid(0) == 0 || getuid() != id->uid || geteuid() != id->uid ||
            getegid() != id->gid) {
                kw_err_set_detail("could regain root after becoming '%s'", id->name);
                KW_BAIL(KW_ERR_CONFIG);
        }
        (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        /* HOME as the new user's (as su does): libraries that look there
         * (libpq: ~/.postgresql, ~/.pgpass) must not find root's, nor fail
         * on a home they may not enter */
        struct passwd pw, *res = NULL;
        char buf[1024];
        if (getpwuid_r(id->uid, &pw, buf, sizeof buf, &res) == 0 && res != NULL)
                setenv("HOME", pw.pw_dir, 1);
        else
                setenv("HOME", "/nonexistent", 1);
        return KW_OK;
}

kw_result kw_process_harden(void)
{
        struct rlimit none = { 0, 0 };
        if (setrlimit(RLIMIT_CORE, &none) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 ||
            prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
                kw_err_set_detail("cannot harden the process: %s", strerror(errno));
                KW_BAIL(KW_ERR_INTERNAL);
        }
        return KW_OK;
}

int kw_sandbox_mode_parse(const char *s)
{
        if (s == NULL || strcmp(s, "enforce") == 0)
                return KW_SANDBOX_ENFORCE;
        if (strcmp(s, "log") == 0)
                return KW_SANDBOX_LOG;
        return -1;
}

/* ---- the filters ---- */

/* Both processes: memory, threads, time, signals, I/O on open descriptors. */
static const int common_calls[] = {
        SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev),
        SCMP_SYS(pread64), SCMP_SYS(pwrite64), SCMP_SYS(lseek), SCMP_SYS(close),
        SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(fcntl),
        SCMP_SYS(dup), SCMP_SYS(dup3), SCMP_SYS(pipe2),
        SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(select), SCMP_SYS(pselect6),
        SCMP_SYS(epoll_create1), SCMP_SYS(epoll_ctl), SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait),
        SCMP_SYS(accept), SCMP_SYS(accept4), SCMP_SYS(recvfrom), SCMP_SYS(sendto),
        SCMP_SYS(recvmsg), SCMP_SYS(sendmsg), SCMP_SYS(recvmmsg), SCMP_SYS(sendmmsg),
        SCMP_SYS(shutdown), SCMP_SYS(getsockname), SCMP_SYS(getpeername), SCMP_SYS(setsockopt),
        SCMP_SYS(getsockopt), SCMP_SYS(connect), SCMP_SYS(socketpair),
        SCMP_SYS(futex), SCMP_SYS(nanosleep), SCMP_SYS(clock_nanosleep), SCMP_SYS(clock_gettime),
        SCMP_SYS(clock_getres), SCMP_SYS(gettimeofday), SCMP_SYS(time), SCMP_SYS(sched_yield),
        SCMP_SYS(sched_getaffinity), SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(getppid),
        SCMP_SYS(getuid), SCMP_SYS(geteuid), SCMP_SYS(getgid), SCMP_SYS(getegid),
        SCMP_SYS(getresuid), SCMP_SYS(getresgid), SCMP_SYS(getrlimit), SCMP_SYS(getrusage),
        SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(madvise), SCMP_SYS(brk), SCMP_SYS(mlock),
        SCMP_SYS(munlock), SCMP_SYS(membarrier),
        SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigreturn),
        SCMP_SYS(rt_sigtimedwait), SCMP_SYS(sigaltstack), SCMP_SYS(restart_syscall),
        SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(set_robust_list), SCMP_SYS(rseq),
        SCMP_SYS(set_tid_address), SCMP_SYS(getrandom), SCMP_SYS(sysinfo), SCMP_SYS(uname),
        SCMP_SYS(eventfd2),
};

/* Custody only: its database, journal and HSM token files, devices
 * (TPM, /dev/sev-guest) and whatever sockets a network HSM's module opens. */
static const int custody_calls[] = {
        SCMP_SYS(openat), SCMP_SYS(open), SCMP_SYS(creat), SCMP_SYS(mkdir), SCMP_SYS(mkdirat),
        SCMP_SYS(unlink), SCMP_SYS(unlinkat), SCMP_SYS(rename), SCMP_SYS(renameat),
        SCMP_SYS(renameat2), SCMP_SYS(rmdir), SCMP_SYS(ftruncate), SCMP_SYS(fsync),
        SCMP_SYS(fdatasync), SCMP_SYS(fchmod), SCMP_SYS(fchmodat), SCMP_SYS(fchown),
        SCMP_SYS(getdents64), SCMP_SYS(flock), SCMP_SYS(fallocate), SCMP_SYS(stat),
        SCMP_SYS(lstat), SCMP_SYS(access), SCMP_SYS(faccessat), SCMP_SYS(faccessat2),
        SCMP_SYS(readlink), SCMP_SYS(readlinkat), SCMP_SYS(getcwd), SCMP_SYS(statfs),
        SCMP_SYS(fstatfs), SCMP_SYS(utimensat), SCMP_SYS(ioctl), SCMP_SYS(socket),
        SCMP_SYS(bind), SCMP_SYS(listen), SCMP_SYS(dup2), SCMP_SYS(prctl),
};

#define ADD(rc, ctx, act, nr, ...)                                               \
        do {                                                                     \
                if ((rc) == 0)                                                   \
                        (rc) = seccomp_rule_add((ctx), (act), (nr), __VA_ARGS__); \
        } while (0)

kw_result kw_sandbox_enter(enum kw_sandbox_profile p, enum kw_sandbox_mode m)
{
        scmp_filter_ctx ctx = seccomp_init(m == KW_SANDBOX_LOG ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS);
        if (ctx == NULL) {
                kw_err_set_detail("seccomp is not available");
                KW_BAIL(KW_ERR_INTERNAL);
        }
        int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
        for (size_t i = 0; rc == 0 && i < sizeof common_calls / sizeof common_calls[0]; i++)
                ADD(rc, ctx, SCMP_ACT_ALLOW, common_calls[i], 0);
        /* threads only, never a new process; clone3's flags are in memory
         * where a filter cannot see them: glibc falls back to clone */
        ADD(rc, ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
            SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
        ADD(rc, ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
        /* signals only to this process's own threads (abort, pthread_kill) */
        ADD(rc, ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1, SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
        /* memory: never writable and executable at once; the front maps no
         * new executable memory at all */
        ADD(rc, ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
        ADD(rc, ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
            SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
        if (p == KW_SANDBOX_CUSTODY) {
                ADD(rc, ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                    SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_WRITE | PROT_EXEC, PROT_EXEC));
                ADD(rc, ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                    SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_WRITE | PROT_EXEC, PROT_EXEC));
                for (size_t i = 0; rc == 0 && i < sizeof custody_calls / sizeof custody_calls[0]; i++)
                        ADD(rc, ctx, SCMP_ACT_ALLOW, custody_calls[i], 0);
        } else {
                /* the front opens no file: a refusal it can report, not a kill */
                ADD(rc, ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(openat), 0);
                ADD(rc, ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(open), 0);
                /* its only new socket is the Unix one to the custody process */
                ADD(rc, ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
                ADD(rc, ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_EQ, FIONREAD));
                ADD(rc, ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_EQ, FIONBIO));
                ADD(rc, ctx, SCMP_ACT_ERRNO(ENOTTY), SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_EQ, TCGETS));
                ADD(rc, ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1, SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME));
                ADD(rc, ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1, SCMP_A0(SCMP_CMP_EQ, PR_GET_NAME));
        }
        if (rc == 0)
                rc = seccomp_load(ctx);
        seccomp_release(ctx);
        if (rc != 0) {
                kw_err_set_detail("cannot install the seccomp filter: %s", strerror(-rc));
                KW_BAIL(KW_ERR_INTERNAL);
        }
        return KW_OK;
}
