/* sdproto.c - sd_notify readiness and socket activation (see sdproto.h). */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sdproto.h"

#define SD_LISTEN_FDS_START 3

kw_result kw_sd_notify_ready(void)
{
        const char *addr = getenv("NOTIFY_SOCKET");
        if (addr == NULL || addr[0] == '\0')
                return KW_OK;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t n = strlen(addr);
        if ((addr[0] != '/' && addr[0] != '@') || n < 2 || n > sizeof sa.sun_path) {
                kw_err_set_detail("NOTIFY_SOCKET is neither an absolute path nor an abstract "
                                  "address: %s", addr);
                KW_BAIL(KW_ERR_CONFIG);
        }
        memcpy(sa.sun_path, addr, n);
        if (addr[0] == '@')
                sa.sun_path[0] = '\0';   /* abstract namespace: no terminating NUL */
        else if (n == sizeof sa.sun_path) {
                kw_err_set_detail("NOTIFY_SOCKET path too long: %s", addr);
                KW_BAIL(KW_ERR_CONFIG);
        }
        socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (addr[0] == '/'));
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                kw_err_set_detail("cannot notify systemd: socket: %s", strerror(errno));
                KW_BAIL(KW_ERR_IO);
        }
        static const char msg[] = "READY=1";
        ssize_t w = sendto(fd, msg, sizeof msg - 1, MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
        int err = errno;
        close(fd);
        if (w != (ssize_t)(sizeof msg - 1)) {
                kw_err_set_detail("cannot notify systemd at %s: %s", addr,
                                  w < 0 ? strerror(err) : "short write");
                KW_BAIL(KW_ERR_IO);
        }
        return KW_OK;
}

/* 1 when fd is a listening AF_UNIX stream socket bound to path. */
static int is_unix_listener_on(int fd, const char *path)
{
        int v = 0;
        socklen_t vl = sizeof v;
        if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &vl) != 0 || v != AF_UNIX)
                return 0;
        vl = sizeof v;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &vl) != 0 || v != SOCK_STREAM)
                return 0;
        vl = sizeof v;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl) != 0 || v != 1)
                return 0;
        struct sockaddr_un sa;
        socklen_t sl = sizeof sa;
        memset(&sa, 0, sizeof sa);
        if (getsockname(fd, (struct sockaddr *)&sa, &sl) != 0 ||
            sl <= offsetof(struct sockaddr_un, sun_path))
                return 0;
        size_t got = strnlen(sa.sun_path, sl - offsetof(struct sockaddr_un, sun_path));
        return got == strlen(path) && memcmp(sa.sun_path, path, got) == 0;
}

kw_result kw_sd_listen_fd(const char *path, int *ret_fd)
{
        const char *pid = getenv("LISTEN_PID");
        char me[24];
        snprintf(me, sizeof me, "%ld", (long)getpid());
        if (pid == NULL || strcmp(pid, me) != 0) {
                *ret_fd = -1;
                return KW_OK;
        }
        const char *fds = getenv("LISTEN_FDS");
        if (fds == NULL || strcmp(fds, "1") != 0) {
                kw_err_set_detail("systemd passed %s sockets (LISTEN_FDS): one is expected, the "
                                  "custody socket %s", fds ? fds : "no", path);
                KW_BAIL(KW_ERR_CONFIG);
        }
        if (!is_unix_listener_on(SD_LISTEN_FDS_START, path)) {
                kw_err_set_detail("the socket systemd passed is not a listening Unix stream socket "
                                  "on %s ([custody] socket_path and the .socket unit's "
                                  "ListenStream= must name the same path)", path);
                KW_BAIL(KW_ERR_CONFIG);
        }
        if (fcntl(SD_LISTEN_FDS_START, F_SETFD, FD_CLOEXEC) != 0) {
                kw_err_set_detail("cannot set close-on-exec on the passed socket: %s", strerror(errno));
                KW_BAIL(KW_ERR_IO);
        }
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
        *ret_fd = SD_LISTEN_FDS_START;
        return KW_OK;
}
