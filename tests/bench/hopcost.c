/*
 * hopcost.c - BENCHMARK TOOL, never installed: what one process hop costs
 * on this machine, as a floor for the front -> custody call that privilege
 * separation puts on every request.
 *
 * Two processes, one AF_UNIX stream socket pair, a 256-byte frame sent and
 * echoed back N times, each side blocking in recv() as custody's reader and
 * a lone front worker do.  Nothing else: no framing, no threads, no
 * locks.  The round trip costs 4 system calls and 2 sleeps and wake-ups,
 * which is what a request with one custody call adds at the least.
 *
 * usage: kw-hopcost [ROUND_TRIPS]   (default 200000; 1000..10000000)
 * Output: one JSON object on stdout: round_trips, wall_us and cpu_us per
 * round trip (cpu: both processes, user + system), and the context switches
 * per round trip (both processes, voluntary + involuntary).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FRAME 256

static double now_us(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static double tv_us(struct timeval tv) { return (double)tv.tv_sec * 1e6 + (double)tv.tv_usec; }

/* Sends (or, with rx, reads) exactly n bytes; 0 on success, -1 on EOF or error. */
static int io_all(int fd, unsigned char *p, size_t n, int rx)
{
        while (n > 0) {
                ssize_t r = rx ? recv(fd, p, n, 0) : send(fd, p, n, MSG_NOSIGNAL);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return -1;
                p += r;
                n -= (size_t)r;
        }
        return 0;
}

int main(int argc, char **argv)
{
        long n = argc > 1 ? strtol(argv[1], NULL, 10) : 200000;
        if (n < 1000 || n > 10000000) {
                fprintf(stderr, "usage: kw-hopcost [ROUND_TRIPS (1000..10000000)]\n");
                return 2;
        }
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
                perror("socketpair");
                return 1;
        }
        unsigned char buf[FRAME];
        memset(buf, 0x5a, sizeof buf);
        pid_t pid = fork();
        if (pid < 0) {
                perror("fork");
                return 1;
        }
        if (pid == 0) {         /* the echoing side: custody's reader */
                close(sv[0]);
                while (io_all(sv[1], buf, sizeof buf, 1) == 0)
                        if (io_all(sv[1], buf, sizeof buf, 0) != 0)
                                break;
                _exit(0);
        }
        close(sv[1]);
        double t0 = now_us();
        for (long i = 0; i < n; i++)
                if (io_all(sv[0], buf, sizeof buf, 0) != 0 || io_all(sv[0], buf, sizeof buf, 1) != 0) {
                        fprintf(stderr, "kw-hopcost: the echoing process went away\n");
                        return 1;
                }
        double wall = now_us() - t0;
        close(sv[0]);
        int st = 0;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                fprintf(stderr, "kw-hopcost: the echoing process failed\n");
                return 1;
        }
        struct rusage self, child;
        getrusage(RUSAGE_SELF, &self);
        getrusage(RUSAGE_CHILDREN, &child);
        double cpu = tv_us(self.ru_utime) + tv_us(self.ru_stime) + tv_us(child.ru_utime) +
                     tv_us(child.ru_stime);
        double cs = (double)(self.ru_nvcsw + self.ru_nivcsw + child.ru_nvcsw + child.ru_nivcsw);
        printf("{\"round_trips\":%ld,\"wall_us\":%.2f,\"cpu_us\":%.2f,\"context_switches\":%.2f}\n", n,
               wall / (double)n, cpu / (double)n, cs / (double)n);
        return 0;
}
