/*
 * spawn.c - child processes (spawn.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <stdbool.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../server/common/err.h"
#include "spawn.h"

#define MAX_ENV 16

static long long now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* In the child: never returns. */
static void child(const struct kwp_spawn *sp, const char *const *envp, int out_fd, const struct passwd *pw)
{
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null < 0 || dup2(null, 0) < 0 || dup2(out_fd >= 0 ? out_fd : null, 1) < 0)
                _exit(127);
        if (pw != NULL && (setgroups(0, NULL) != 0 || initgroups(pw->pw_name, pw->pw_gid) != 0 ||
                           setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0))
                _exit(126);
        for (int fd = 3; fd < 1024; fd++)
                (void)close(fd);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(sp->argv[0], (char *const *)sp->argv, (char *const *)envp);
        _exit(127);
}

kw_result kwp_spawn_run(const struct kwp_spawn *sp, struct kw_buf *out, int *ret_status)
{
        KW_ENSURE(sp != NULL && sp->argv != NULL && sp->argv[0] != NULL && sp->argv[0][0] == '/' &&
                          ret_status != NULL,
                  KW_ERR_INPUT);
        const char *envp[MAX_ENV + 2] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin" };
        size_t ne = 1;
        for (size_t i = 0; sp->env != NULL && sp->env[i] != NULL; i++) {
                KW_ENSURE(ne < MAX_ENV, KW_ERR_INPUT);
                envp[ne++] = sp->env[i];
        }
        envp[ne] = NULL;
        struct passwd *pw = NULL;
        if (sp->user != NULL && (pw = getpwnam(sp->user)) == NULL) {
                kw_err_set_detail("no user %s on this system", sp->user);
                KW_BAIL(KW_ERR_IO);
        }
        int p[2] = { -1, -1 };
        if (out != NULL && pipe2(p, O_CLOEXEC) != 0) {
                kw_err_set_detail("pipe: %s", strerror(errno));
                KW_BAIL(KW_ERR_IO);
        }
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
                int e = errno;
                if (p[0] >= 0)
                        close(p[0]), close(p[1]);
                kw_err_set_detail("fork: %s", strerror(e));
                KW_BAIL(KW_ERR_IO);
        }
        if (pid == 0)
                child(sp, envp, p[1], pw);
        if (p[1] >= 0)
                close(p[1]);
        const long long deadline = now_ms() + (sp->timeout_ms ? sp->timeout_ms : 60000);
        kw_result r = KW_OK;
        bool timed_out = false;
        int open_fd = p[0];
        while (open_fd >= 0) {
                long long left = deadline - now_ms();
                if (left <= 0) {
                        timed_out = true;
                        break;
                }
                struct pollfd pf = { .fd = open_fd, .events = POLLIN };
                int n = poll(&pf, 1, (int)(left > 1000 ? 1000 : left));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        continue;
                char buf[4096];
                ssize_t got = read(open_fd, buf, sizeof buf);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got <= 0) {
                        close(open_fd);
                        open_fd = -1;
                        break;
                }
                if (r.code == 0 && kw_buf_put(out, buf, (size_t)got).code != 0) {
                        kw_err_set_detail("%s wrote more than expected on stdout", sp->argv[0]);
                        r = KW_RESULT(KW_ERR_TOO_LARGE);
                }
                explicit_bzero(buf, sizeof buf);
        }
        if (open_fd >= 0)
                close(open_fd);
        int st = 0;
        for (;;) {
                pid_t w = waitpid(pid, &st, WNOHANG);
                if (w == pid)
                        break;
                if (w < 0 && errno != EINTR) {
                        st = 0x7f00;
                        break;
                }
                if (timed_out || now_ms() >= deadline) {
                        kill(pid, SIGKILL);
                        (void)waitpid(pid, &st, 0);
                        timed_out = true;
                        break;
                }
                struct timespec ts = { 0, 20 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        if (timed_out) {
                kw_err_set_detail("%s did not finish within %u ms (killed)", sp->argv[0], sp->timeout_ms);
                kw_trace(KW_ERR_IO, __FILE__, __LINE__);
                r = KW_RESULT(KW_ERR_IO);
        }
        *ret_status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 1;
        return r;
}
