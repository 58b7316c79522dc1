/*
 * sandbox_test.c - the seccomp filters of sandbox.c, each case in a forked
 * child (a filter cannot be removed): what the front's and the custody's
 * lists allow, refuse with an error, and kill the process for.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/sandbox.h"

enum outcome { EXIT_OK = 0, EXIT_ERRNO = 1, EXIT_OTHER = 2, KILLED = 3 };

/* Runs what() under profile p in a child: KILLED when the filter killed it
 * (SIGSYS), else what() returned (0 = the call worked, 1 = it failed). */
static enum outcome run(enum kw_sandbox_profile p, int (*what)(void))
{
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (kw_process_harden().code != 0 || kw_sandbox_enter(p, KW_SANDBOX_ENFORCE).code != 0)
                        _exit(EXIT_OTHER);
                _exit(what());
        }
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        if (WIFSIGNALED(st))
                return WTERMSIG(st) == SIGSYS ? KILLED : EXIT_OTHER;
        return (enum outcome)WEXITSTATUS(st);
}

static int do_open(void)
{
        int fd = open("/etc/hostname", O_RDONLY);
        if (fd >= 0) {
                close(fd);
                return EXIT_OK;
        }
        return errno == EACCES ? EXIT_ERRNO : EXIT_OTHER;
}

static int do_unix_socket(void)
{
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        return fd >= 0 ? EXIT_OK : EXIT_ERRNO;
}

static int do_inet_socket(void)
{
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        return fd >= 0 ? EXIT_OK : EXIT_ERRNO;
}

static int do_exec(void)
{
        char *argv[] = { "/bin/true", NULL };
        execv("/bin/true", argv);
        return EXIT_ERRNO;
}

static int do_fork(void)
{
        pid_t p = fork();
        if (p == 0)
                _exit(0);
        return p > 0 ? EXIT_OK : EXIT_ERRNO;
}

static void *thread_fn(void *arg) { return arg; }

static int do_thread(void)
{
        pthread_t th;
        if (pthread_create(&th, NULL, thread_fn, NULL) != 0)
                return EXIT_ERRNO;
        pthread_join(th, NULL);
        return EXIT_OK;
}

static int do_wx_mapping(void)
{
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p != MAP_FAILED ? EXIT_OK : EXIT_ERRNO;
}

static int do_x_mapping(void)
{
        void *p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p != MAP_FAILED ? EXIT_OK : EXIT_ERRNO;
}

static int do_ptrace(void)
{
        return ptrace(PTRACE_ATTACH, getppid(), NULL, NULL) == 0 ? EXIT_OK : EXIT_ERRNO;
}

static int do_setuid(void) { return setuid(0) == 0 ? EXIT_OK : EXIT_ERRNO; }

static int do_malloc_and_time(void)
{
        void *p = malloc(1 << 20);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        free(p);
        return EXIT_OK;
}

static void sandbox_front_profile(void **state)
{
        (void)state;
        assert_int_equal(run(KW_SANDBOX_FRONT, do_malloc_and_time), EXIT_OK);
        assert_int_equal(run(KW_SANDBOX_FRONT, do_thread), EXIT_OK);
        assert_int_equal(run(KW_SANDBOX_FRONT, do_unix_socket), EXIT_OK);
        /* opens no file: refused, so the caller can report it */
        assert_int_equal(run(KW_SANDBOX_FRONT, do_open), EXIT_ERRNO);
        /* everything else a compromised front would want: the end of it */
        assert_int_equal(run(KW_SANDBOX_FRONT, do_inet_socket), KILLED);
        assert_int_equal(run(KW_SANDBOX_FRONT, do_exec), KILLED);
        assert_int_equal(run(KW_SANDBOX_FRONT, do_fork), KILLED);
        assert_int_equal(run(KW_SANDBOX_FRONT, do_x_mapping), KILLED);
        assert_int_equal(run(KW_SANDBOX_FRONT, do_ptrace), KILLED);
        assert_int_equal(run(KW_SANDBOX_FRONT, do_setuid), KILLED);
}

static void sandbox_custody_profile(void **state)
{
        (void)state;
        assert_int_equal(run(KW_SANDBOX_CUSTODY, do_malloc_and_time), EXIT_OK);
        assert_int_equal(run(KW_SANDBOX_CUSTODY, do_thread), EXIT_OK);
        assert_int_equal(run(KW_SANDBOX_CUSTODY, do_open), EXIT_OK);          /* its files */
        assert_int_equal(run(KW_SANDBOX_CUSTODY, do_inet_socket), EXIT_OK);   /* network HSMs */
        assert_int_equal(run(KW_SANDBOX_CUSTODY, do_x_mapping), EXIT_OK);     /* modules' code */
        assert_int_equal(run(KW_SANDBOX_CUSTODY, do_wx_mapping), KILLED);
        assert_int_equal(run(KW_SANDBOX_CUSTODY, do_exec), KILLED);
        assert_int_equal(run(KW_SANDBOX_CUSTODY, do_fork), KILLED);
        assert_int_equal(run(KW_SANDBOX_CUSTODY, do_ptrace), KILLED);
        assert_int_equal(run(KW_SANDBOX_CUSTODY, do_setuid), KILLED);
}

static void sandbox_harden_sets_the_process_flags(void **state)
{
        (void)state;
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (kw_process_harden().code != 0)
                        _exit(1);
                struct rlimit rl;
                _exit(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0 && prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 &&
                      getrlimit(RLIMIT_CORE, &rl) == 0 && rl.rlim_cur == 0 && rl.rlim_max == 0
                              ? 0 : 2);
        }
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
}

static void sandbox_identity_as_root_needs_a_real_user(void **state)
{
        (void)state;
        struct kw_identity id = { .uid = 4242 };
        if (geteuid() != 0) {
                /* anybody else: the current user, whatever is configured */
                assert_int_equal(kw_identity_resolve("no-such-user", &id).code, 0);
                assert_int_equal(id.uid, getuid());
                assert_int_equal(id.change, 0);
                return;
        }
        assert_int_equal(kw_identity_resolve("no-such-user-kw", &id).code, KW_ERR_CONFIG);
        assert_int_equal(id.uid, 4242);
        assert_int_equal(kw_identity_resolve("root", &id).code, KW_ERR_CONFIG);
        assert_int_equal(kw_identity_resolve("", &id).code, KW_ERR_CONFIG);
        assert_int_equal(id.uid, 4242);
        assert_int_equal(kw_identity_resolve("nobody", &id).code, 0);
        assert_int_equal(id.change, 1);
        assert_true(id.uid != 0);
}

static void sandbox_mode_parse(void **state)
{
        (void)state;
        assert_int_equal(kw_sandbox_mode_parse("enforce"), KW_SANDBOX_ENFORCE);
        assert_int_equal(kw_sandbox_mode_parse("log"), KW_SANDBOX_LOG);
        assert_int_equal(kw_sandbox_mode_parse("off"), -1);
        assert_int_equal(kw_sandbox_mode_parse(""), -1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(sandbox_front_profile),
                cmocka_unit_test(sandbox_custody_profile),
                cmocka_unit_test(sandbox_harden_sets_the_process_flags),
                cmocka_unit_test(sandbox_identity_as_root_needs_a_real_user),
                cmocka_unit_test(sandbox_mode_parse),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
