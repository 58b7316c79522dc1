/*
 * sdproto_test.c - readiness notification and socket activation as systemd
 * speaks them (sdproto.c), against sockets the test opens itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/sdproto.h"

static char dir[64];

static int setup(void **state)
{
        (void)state;
        snprintf(dir, sizeof dir, "/tmp/kw-sdproto-XXXXXX");
        return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
        (void)state;
        char p[128];
        snprintf(p, sizeof p, "%s/notify", dir);
        unlink(p);
        snprintf(p, sizeof p, "%s/listen", dir);
        unlink(p);
        rmdir(dir);
        unsetenv("NOTIFY_SOCKET");
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        return 0;
}

/* A datagram socket bound to addr (leading '@': abstract) with a 2 s
 * receive timeout. */
static int dgram_bound(const char *addr)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t n = strlen(addr);
        memcpy(sa.sun_path, addr, n);
        if (addr[0] == '@')
                sa.sun_path[0] = '\0';
        int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
        assert_true(fd >= 0);
        socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (addr[0] == '/'));
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
        struct timeval tv = { .tv_sec = 2 };
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
        return fd;
}

/* NOTIFY_SOCKET=addr, a socket bound there: kw_sd_notify_ready sends it
 * "READY=1", alone. */
static void notify_and_expect_ready(const char *addr)
{
        int fd = dgram_bound(addr);
        setenv("NOTIFY_SOCKET", addr, 1);
        assert_int_equal(kw_sd_notify_ready().code, 0);
        char buf[64] = { 0 };
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        assert_int_equal(n, 7);
        assert_string_equal(buf, "READY=1");
        close(fd);
}

static void sdproto_notify_ready_path_sends_ready(void **state)
{
        (void)state;
        char p[128];
        snprintf(p, sizeof p, "%s/notify", dir);
        notify_and_expect_ready(p);
}

static void sdproto_notify_ready_abstract_sends_ready(void **state)
{
        (void)state;
        char a[64];
        snprintf(a, sizeof a, "@kw-sdproto-test-%ld", (long)getpid());
        notify_and_expect_ready(a);
}

static void sdproto_notify_ready_unset_does_nothing(void **state)
{
        (void)state;
        unsetenv("NOTIFY_SOCKET");
        assert_int_equal(kw_sd_notify_ready().code, 0);
        setenv("NOTIFY_SOCKET", "", 1);
        assert_int_equal(kw_sd_notify_ready().code, 0);
}

static void sdproto_notify_ready_relative_path_fails(void **state)
{
        (void)state;
        setenv("NOTIFY_SOCKET", "run/notify", 1);
        assert_int_equal(kw_sd_notify_ready().code, KW_ERR_CONFIG);
        setenv("NOTIFY_SOCKET", "@", 1);
        assert_int_equal(kw_sd_notify_ready().code, KW_ERR_CONFIG);
}

static void sdproto_notify_ready_nobody_listening_fails(void **state)
{
        (void)state;
        char p[128];
        snprintf(p, sizeof p, "%s/nobody", dir);
        setenv("NOTIFY_SOCKET", p, 1);
        assert_int_equal(kw_sd_notify_ready().code, KW_ERR_IO);
}

/* A listening stream socket on path, moved to descriptor 3. */
static void listener_on_3(const char *path, int type)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        int fd = socket(AF_UNIX, type, 0);
        assert_true(fd >= 0);
        unlink(path);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        if (type == SOCK_STREAM)
                assert_int_equal(listen(fd, 4), 0);
        if (fd != 3) {
                assert_int_equal(dup2(fd, 3), 3);
                close(fd);
        }
}

static void set_listen_env(const char *fds)
{
        char pid[24];
        snprintf(pid, sizeof pid, "%ld", (long)getpid());
        setenv("LISTEN_PID", pid, 1);
        setenv("LISTEN_FDS", fds, 1);
}

static void sdproto_listen_fd_none_passed(void **state)
{
        (void)state;
        int fd = 42;
        unsetenv("LISTEN_PID");
        assert_int_equal(kw_sd_listen_fd("/run/x.sock", &fd).code, 0);
        assert_int_equal(fd, -1);
        /* another process's variables are not ours */
        setenv("LISTEN_PID", "1", 1);
        setenv("LISTEN_FDS", "1", 1);
        fd = 42;
        assert_int_equal(kw_sd_listen_fd("/run/x.sock", &fd).code, 0);
        assert_int_equal(fd, -1);
}

static void sdproto_listen_fd_takes_the_passed_socket(void **state)
{
        (void)state;
        char p[128];
        snprintf(p, sizeof p, "%s/listen", dir);
        listener_on_3(p, SOCK_STREAM);
        set_listen_env("1");
        int fd = -7;
        assert_int_equal(kw_sd_listen_fd(p, &fd).code, 0);
        assert_int_equal(fd, 3);
        assert_true(fcntl(3, F_GETFD) & FD_CLOEXEC);
        assert_null(getenv("LISTEN_PID"));
        assert_null(getenv("LISTEN_FDS"));
        close(3);
}

static void sdproto_listen_fd_wrong_socket_fails(void **state)
{
        (void)state;
        char p[128];
        snprintf(p, sizeof p, "%s/listen", dir);
        int fd = -7;
        /* bound elsewhere than the configured path */
        listener_on_3(p, SOCK_STREAM);
        set_listen_env("1");
        assert_int_equal(kw_sd_listen_fd("/run/keyward/other.sock", &fd).code, KW_ERR_CONFIG);
        assert_int_equal(fd, -7);
        close(3);
        /* not a stream listener */
        listener_on_3(p, SOCK_DGRAM);
        assert_int_equal(kw_sd_listen_fd(p, &fd).code, KW_ERR_CONFIG);
        assert_int_equal(fd, -7);
        close(3);
        /* more than one socket */
        listener_on_3(p, SOCK_STREAM);
        set_listen_env("2");
        assert_int_equal(kw_sd_listen_fd(p, &fd).code, KW_ERR_CONFIG);
        assert_int_equal(fd, -7);
        assert_non_null(getenv("LISTEN_PID"));   /* nothing changed on failure */
        close(3);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(sdproto_notify_ready_path_sends_ready),
                cmocka_unit_test(sdproto_notify_ready_abstract_sends_ready),
                cmocka_unit_test(sdproto_notify_ready_unset_does_nothing),
                cmocka_unit_test(sdproto_notify_ready_relative_path_fails),
                cmocka_unit_test(sdproto_notify_ready_nobody_listening_fails),
                cmocka_unit_test(sdproto_listen_fd_none_passed),
                cmocka_unit_test(sdproto_listen_fd_takes_the_passed_socket),
                cmocka_unit_test(sdproto_listen_fd_wrong_socket_fails),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
