/* connlimit_test.c - the connection registry on real loopback TCP sockets
 * (client sockets bound to 127.0.0.x, so each x is another client). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "front/connlimit.h"

static int lfd = -1;
static struct sockaddr_in laddr;

static int group_setup(void **state)
{
        (void)state;
        lfd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(lfd >= 0);
        memset(&laddr, 0, sizeof laddr);
        laddr.sin_family = AF_INET;
        laddr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(lfd, (struct sockaddr *)&laddr, sizeof laddr), 0);
        socklen_t l = sizeof laddr;
        assert_int_equal(getsockname(lfd, (struct sockaddr *)&laddr, &l), 0);
        assert_int_equal(listen(lfd, 64), 0);
        return 0;
}

static int group_teardown(void **state)
{
        (void)state;
        close(lfd);
        return 0;
}

struct conn {
        int cli, srv;
};

/* A TCP connection from 127.0.0.<host> to the listener. */
static struct conn connect_from(int host)
{
        struct conn c;
        c.cli = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(c.cli >= 0);
        struct sockaddr_in src = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)host) };
        assert_int_equal(bind(c.cli, (struct sockaddr *)&src, sizeof src), 0);
        assert_int_equal(connect(c.cli, (struct sockaddr *)&laddr, sizeof laddr), 0);
        c.srv = accept(lfd, NULL, NULL);
        assert_true(c.srv >= 0);
        return c;
}

static void conn_close(struct conn *c)
{
        close(c->cli);
        close(c->srv);
}

/* 1 when the server side of c was shut down (the client reads EOF). */
static int client_sees_eof(const struct conn *c)
{
        struct pollfd p = { .fd = c->cli, .events = POLLIN };
        if (poll(&p, 1, 20) != 1)
                return 0;
        char b;
        return recv(c->cli, &b, 1, MSG_DONTWAIT) == 0;
}

static struct kw_connlimit *new_cl(int64_t per_client, int64_t idle_ms, int threads0, int threads1)
{
        struct kw_connlimit_cfg cfg = { .per_client = per_client, .idle_ms = idle_ms,
                                        .pools = threads1 > 0 ? 2 : 1, .threads = { threads0, threads1 } };
        struct kw_connlimit *cl = NULL;
        assert_int_equal(kw_connlimit_new(&cfg, &cl).code, 0);
        return cl;
}

static const char *metrics(struct kw_connlimit *cl, struct kw_buf *b)
{
        kw_buf_reset(b);
        assert_int_equal(kw_connlimit_metrics(cl, "kw-1", b).code, 0);
        const char *s;
        assert_int_equal(kw_buf_cstr(b, &s).code, 0);
        return s;
}

static void connlimit_open_over_per_client_cap_refused(void **state)
{
        (void)state;
        struct kw_connlimit *cl = new_cl(2, 1000, 8, 0);
        struct conn c[4] = { connect_from(2), connect_from(2), connect_from(2), connect_from(3) };
        int slot[4] = { -1, -1, -7, -1 };
        assert_int_equal(kw_connlimit_open(cl, 0, c[0].srv, &slot[0]).code, 0);
        assert_int_equal(kw_connlimit_open(cl, 0, c[1].srv, &slot[1]).code, 0);
        assert_int_equal(kw_connlimit_open(cl, 0, c[2].srv, &slot[2]).code, KW_ERR_OVERLOAD);
        assert_int_equal(slot[2], -7);                          /* untouched */
        assert_int_equal(kw_connlimit_open(cl, 0, c[3].srv, &slot[3]).code, 0);   /* another client */
        struct kw_buf b;
        kw_buf_init(&b, 4096);
        assert_non_null(strstr(metrics(cl, &b), "\nkeyward_http_connections_refused_per_client_total{node=\"kw-1\"} 1\n"));
        assert_non_null(strstr(metrics(cl, &b), "\nkeyward_http_worker_connections{node=\"kw-1\",listener=\"main\"} 3\n"));
        /* one closes: the client may open another */
        kw_connlimit_close(cl, slot[0]);
        kw_connlimit_close(cl, slot[0]);                        /* twice: no effect */
        assert_int_equal(kw_connlimit_open(cl, 0, c[2].srv, &slot[2]).code, 0);
        assert_int_equal(kw_connlimit_open(cl, 0, c[0].srv, &slot[0]).code, KW_ERR_OVERLOAD);
        assert_non_null(strstr(metrics(cl, &b), "\nkeyward_http_connections_refused_per_client_total{node=\"kw-1\"} 2\n"));
        for (int i = 0; i < 4; i++) {
                kw_connlimit_close(cl, slot[i]);
                conn_close(&c[i]);
        }
        assert_non_null(strstr(metrics(cl, &b), "{node=\"kw-1\",listener=\"main\"} 0\n"));
        kw_buf_free(&b);
        kw_connlimit_free(cl);
}

static void connlimit_sweep_under_load_shuts_idle_only(void **state)
{
        (void)state;
        /* pool 0: 4 threads (load at 3 connections); pool 1: 8 threads */
        struct kw_connlimit *cl = new_cl(10, 50, 4, 8);
        struct conn c[5];
        int slot[5];
        for (int i = 0; i < 5; i++) {
                c[i] = connect_from(10 + i);
                assert_int_equal(kw_connlimit_open(cl, i < 3 ? 0 : 1, c[i].srv, &slot[i]).code, 0);
        }
        kw_connlimit_busy(cl, slot[0]);                         /* a request in progress */
        usleep(120 * 1000);
        kw_connlimit_idle(cl, slot[1]);                         /* just finished one: fresh */
        assert_int_equal(kw_connlimit_sweep(cl), 1);            /* slot 2: idle > 50 ms in a loaded pool */
        assert_false(client_sees_eof(&c[0]));
        assert_false(client_sees_eof(&c[1]));
        assert_true(client_sees_eof(&c[2]));
        assert_false(client_sees_eof(&c[3]));                   /* pool 1 (2 of 8) is not loaded */
        assert_false(client_sees_eof(&c[4]));
        /* not twice, and a busy mark does not revive it */
        kw_connlimit_busy(cl, slot[2]);
        kw_connlimit_idle(cl, slot[1]);                         /* fresh again */
        assert_int_equal(kw_connlimit_sweep(cl), 0);
        /* the busy one, once idle long enough, goes too */
        kw_connlimit_idle(cl, slot[0]);
        usleep(120 * 1000);
        assert_int_equal(kw_connlimit_sweep(cl), 2);            /* slots 0 and 1 */
        struct kw_buf b;
        kw_buf_init(&b, 4096);
        assert_non_null(strstr(metrics(cl, &b), "\nkeyward_http_connections_closed_idle_total{node=\"kw-1\"} 3\n"));
        kw_buf_free(&b);
        /* below the load mark nothing is touched */
        for (int i = 0; i < 3; i++)
                kw_connlimit_close(cl, slot[i]);
        usleep(120 * 1000);
        assert_int_equal(kw_connlimit_sweep(cl), 0);
        for (int i = 0; i < 5; i++) {
                kw_connlimit_close(cl, slot[i]);
                conn_close(&c[i]);
        }
        kw_connlimit_free(cl);
}

static void connlimit_start_thread_sweeps_periodically(void **state)
{
        (void)state;
        struct kw_connlimit *cl = new_cl(10, 30, 1, 0);
        struct conn c = connect_from(20);
        int slot;
        assert_int_equal(kw_connlimit_open(cl, 0, c.srv, &slot).code, 0);
        assert_int_equal(kw_connlimit_start(cl, 10).code, 0);
        assert_int_equal(kw_connlimit_start(cl, 10).code, KW_ERR_INTERNAL);   /* already running */
        int eof = 0;
        for (int i = 0; i < 100 && !eof; i++)
                eof = client_sees_eof(&c);
        assert_true(eof);
        kw_connlimit_close(cl, slot);
        conn_close(&c);
        kw_connlimit_free(cl);                                  /* stops and joins it */
}

static void connlimit_open_bad_arguments_and_ipv6(void **state)
{
        (void)state;
        struct kw_connlimit *cl = new_cl(1, 1000, 2, 0);
        int slot = -3;
        /* not a connected socket */
        int u = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(kw_connlimit_open(cl, 0, u, &slot).code, KW_ERR_IO);
        close(u);
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        assert_int_equal(kw_connlimit_open(cl, 0, sv[0], &slot).code, KW_ERR_IO);   /* not IP */
        close(sv[0]);
        close(sv[1]);
        assert_int_equal(kw_connlimit_open(cl, 1, 0, &slot).code, KW_ERR_INTERNAL); /* no pool 1 */
        assert_int_equal(kw_connlimit_open(cl, 0, -1, &slot).code, KW_ERR_INTERNAL);
        assert_int_equal(slot, -3);
        kw_connlimit_busy(cl, -1);
        kw_connlimit_idle(cl, 99999);
        kw_connlimit_close(cl, -1);
        /* IPv6: ::1 is one client */
        int l6 = socket(AF_INET6, SOCK_STREAM, 0);
        if (l6 >= 0) {
                struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
                socklen_t al = sizeof a;
                if (bind(l6, (struct sockaddr *)&a, sizeof a) == 0 && listen(l6, 4) == 0 &&
                    getsockname(l6, (struct sockaddr *)&a, &al) == 0) {
                        int c1 = socket(AF_INET6, SOCK_STREAM, 0), c2 = socket(AF_INET6, SOCK_STREAM, 0);
                        assert_int_equal(connect(c1, (struct sockaddr *)&a, al), 0);
                        assert_int_equal(connect(c2, (struct sockaddr *)&a, al), 0);
                        int s1 = accept(l6, NULL, NULL), s2 = accept(l6, NULL, NULL);
                        assert_int_equal(kw_connlimit_open(cl, 0, s1, &slot).code, 0);
                        int other = -1;
                        assert_int_equal(kw_connlimit_open(cl, 0, s2, &other).code, KW_ERR_OVERLOAD);
                        kw_connlimit_close(cl, slot);
                        close(c1), close(c2), close(s1), close(s2);
                }
                close(l6);
        }
        kw_connlimit_free(cl);
        kw_connlimit_free(NULL);
        struct kw_connlimit_cfg bad = { .per_client = 0, .idle_ms = 1, .pools = 1, .threads = { 1 } };
        struct kw_connlimit *x = (struct kw_connlimit *)&bad;
        assert_int_equal(kw_connlimit_new(&bad, &x).code, KW_ERR_INPUT);
        bad.per_client = 1;
        bad.pools = 3;
        assert_int_equal(kw_connlimit_new(&bad, &x).code, KW_ERR_INPUT);
        bad.pools = 1;
        bad.threads[0] = 0;
        assert_int_equal(kw_connlimit_new(&bad, &x).code, KW_ERR_INPUT);
        assert_true(x == (struct kw_connlimit *)&bad);          /* untouched */
}

static void connlimit_open_no_free_slot_fails_internal(void **state)
{
        (void)state;
        /* one thread: 1 + 16 slots (the margin); a 18th connection has none */
        struct kw_connlimit *cl = new_cl(100, 1000, 1, 0);
        struct conn c[18];
        int slot[18];
        for (int i = 0; i < 18; i++)
                c[i] = connect_from(30);
        for (int i = 0; i < 17; i++)
                assert_int_equal(kw_connlimit_open(cl, 0, c[i].srv, &slot[i]).code, 0);
        slot[17] = -9;
        assert_int_equal(kw_connlimit_open(cl, 0, c[17].srv, &slot[17]).code, KW_ERR_INTERNAL);
        assert_int_equal(slot[17], -9);
        kw_connlimit_close(cl, slot[3]);
        assert_int_equal(kw_connlimit_open(cl, 0, c[17].srv, &slot[17]).code, 0);
        for (int i = 0; i < 18; i++) {
                if (i != 3)
                        kw_connlimit_close(cl, slot[i]);
                conn_close(&c[i]);
        }
        kw_connlimit_free(cl);
}

static void connlimit_metrics_over_cap_is_all_or_nothing(void **state)
{
        (void)state;
        struct kw_connlimit *cl = new_cl(1, 1000, 2, 2);
        struct kw_buf b;
        kw_buf_init(&b, 64);
        assert_int_equal(kw_buf_put(&b, "x", 1).code, 0);
        assert_int_equal(kw_connlimit_metrics(cl, "kw-1", &b).code, KW_ERR_TOO_LARGE);
        assert_int_equal(b.len, 1);
        kw_buf_free(&b);
        kw_buf_init(&b, 4096);
        assert_int_equal(kw_connlimit_metrics(cl, "kw-1", &b).code, 0);
        const char *txt;
        assert_int_equal(kw_buf_cstr(&b, &txt).code, 0);
        assert_non_null(strstr(txt, "keyward_http_worker_connections{node=\"kw-1\",listener=\"admin\"} 0\n"));
        kw_buf_free(&b);
        kw_connlimit_free(cl);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(connlimit_open_over_per_client_cap_refused),
                cmocka_unit_test(connlimit_sweep_under_load_shuts_idle_only),
                cmocka_unit_test(connlimit_start_thread_sweeps_periodically),
                cmocka_unit_test(connlimit_open_bad_arguments_and_ipv6),
                cmocka_unit_test(connlimit_open_no_free_slot_fails_internal),
                cmocka_unit_test(connlimit_metrics_over_cap_is_all_or_nothing),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
