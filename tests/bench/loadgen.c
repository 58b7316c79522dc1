/*
 * loadgen.c - BENCHMARK TOOL, never installed: a closed-loop HTTPS load
 * generator for `make bench` (tests/bench/bench.py drives it).
 *
 * One thread, epoll, non-blocking sockets and non-blocking OpenSSL: N
 * keep-alive TLS connections to 127.0.0.1 (the only address it will ever
 * connect to), each with one request in flight.  The request is built from
 * a template prepared once; per request only the key name (when a list of
 * keys is given), X-Amz-Date and the SigV4 signature change.  The run stops
 * by itself after --duration seconds or --max-requests responses, whichever
 * comes first (after an unmeasured --warmup).
 *
 * Auth modes: none, bearer (--token-file), SigV4 (--sigv4 AKID
 * --sigv4-secret-file F: AWS4-HMAC-SHA256 over host;x-amz-date, as AWS KMS
 * signs XKS calls), TLS client certificate (--cert/--key).
 * --new-conn makes every request a fresh TCP connection and full TLS
 * handshake (no session resumption); the client closes it after the
 * response (no "Connection: close": a server would then skip TCP_NODELAY).
 *
 * Output: one JSON object on stdout: requests, errors, status counts, rate,
 * latency percentiles (from all samples, sorted), and the generator's own
 * CPU use.  --sign-only prints the Authorization header for a fixed date and
 * exits (the bench compares it with botocore).
 *
 * --port P1,P2,... (up to MAX_PORTS) spreads the connections round robin
 * over several servers (connection i to port i mod n): the fleet scenario,
 * three keywardd nodes as behind a load balancer; every request carries the
 * first port's Host header, as a balancer would forward it.
 *
 * Exit status: 0 ran (errors are counted, not fatal), 2 usage, 3 set-up.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>

#define MAX_CONNS 1024
#define REQ_MAX (64 * 1024)
#define RESP_MAX (256 * 1024)
#define MAX_KEYS 100000
#define KEY_NAME_MAX 128
#define HDR_MAX 8192
#define DEFAULT_MAX_REQUESTS 2000000u
#define MAX_PORTS 16

/* ------------------------------------------------------------ options */

struct opts {
        int port;               /* the first of ports: the Host header's */
        int ports[MAX_PORTS], n_ports;
        const char *method, *path, *body_file, *cacert, *cert, *key, *token_file;
        const char *sigv4_akid, *sigv4_secret_file, *region, *service, *keys_spec;
        const char *ciphersuites, *sign_only_date, *label;
        int conns, new_conn, tls13_only;
        double duration, warmup, rate;
        unsigned long max_requests;
        int expect_status;
};

/* -------------------------------------------------------------- SigV4 */

struct sigv4 {
        char akid[64];
        uint8_t secret[128];
        size_t secret_len;
        char region[64], service[64];
        char day[9];           /* yyyymmdd of kdate below */
        uint8_t kdate_signing[32];
        char payload_hex[65];  /* hex SHA-256 of the body (fixed) */
};

static void hex(const uint8_t *p, size_t n, char *out)
{
        static const char d[] = "0123456789abcdef";
        for (size_t i = 0; i < n; i++) {
                out[2 * i] = d[p[i] >> 4];
                out[2 * i + 1] = d[p[i] & 15];
        }
        out[2 * n] = '\0';
}

static int hmac256(const uint8_t *k, size_t kl, const void *m, size_t ml, uint8_t out[32])
{
        unsigned int n = 32;
        return HMAC(EVP_sha256(), k, (int)kl, m, ml, out, &n) != NULL ? 0 : -1;
}

static void sha256_hex(const void *p, size_t n, char out[65])
{
        uint8_t h[32];
        unsigned int hl = 32;
        EVP_Digest(p, n, h, &hl, EVP_sha256(), NULL);
        hex(h, 32, out);
}

/* kSigning for day (cached: one derivation per day). */
static int sigv4_key(struct sigv4 *s, const char *day)
{
        if (strcmp(s->day, day) == 0)
                return 0;
        uint8_t k0[160], k1[32], k2[32], k3[32];
        if (s->secret_len + 4 > sizeof k0)
                return -1;
        memcpy(k0, "AWS4", 4);
        memcpy(k0 + 4, s->secret, s->secret_len);
        int rc = hmac256(k0, s->secret_len + 4, day, 8, k1);
        rc |= hmac256(k1, 32, s->region, strlen(s->region), k2);
        rc |= hmac256(k2, 32, s->service, strlen(s->service), k3);
        rc |= hmac256(k3, 32, "aws4_request", 12, s->kdate_signing);
        OPENSSL_cleanse(k0, sizeof k0);
        OPENSSL_cleanse(k1, sizeof k1);
        OPENSSL_cleanse(k2, sizeof k2);
        OPENSSL_cleanse(k3, sizeof k3);
        if (rc != 0)
                return -1;
        memcpy(s->day, day, 9);
        return 0;
}

/* Authorization header value for (path, host, amzdate). */
static int sigv4_sign(struct sigv4 *s, const char *method, const char *path, const char *host,
                      const char *amzdate, char *out, size_t outsz)
{
        char day[9];
        memcpy(day, amzdate, 8);
        day[8] = '\0';
        if (sigv4_key(s, day) != 0)
                return -1;
        char creq[2048];
        int n = snprintf(creq, sizeof creq, "%s\n%s\n\nhost:%s\nx-amz-date:%s\n\nhost;x-amz-date\n%s",
                         method, path, host, amzdate, s->payload_hex);
        if (n < 0 || (size_t)n >= sizeof creq)
                return -1;
        char creq_hex[65];
        sha256_hex(creq, (size_t)n, creq_hex);
        char sts[512];
        n = snprintf(sts, sizeof sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", amzdate, day,
                     s->region, s->service, creq_hex);
        if (n < 0 || (size_t)n >= sizeof sts)
                return -1;
        uint8_t sig[32];
        if (hmac256(s->kdate_signing, 32, sts, (size_t)n, sig) != 0)
                return -1;
        char sig_hex[65];
        hex(sig, 32, sig_hex);
        n = snprintf(out, outsz,
                     "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, "
                     "SignedHeaders=host;x-amz-date, Signature=%s",
                     s->akid, day, s->region, s->service, sig_hex);
        return n < 0 || (size_t)n >= outsz ? -1 : 0;
}

/* ------------------------------------------------------------ samples */

struct stats {
        uint32_t *lat_us;       /* one sample per measured response */
        size_t n, cap;
        unsigned long errors, conn_errors, handshakes;
        unsigned long status[600];
        char first_error[200];
};

static void stats_add(struct stats *st, uint64_t us, int status, int expect)
{
        if (status >= 0 && status < 600)
                st->status[status]++;
        if (status != expect) {
                st->errors++;
                return;
        }
        if (st->n < st->cap)
                st->lat_us[st->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int cmp_u32(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
        return x < y ? -1 : x > y;
}

static uint32_t pct(const struct stats *st, double p)
{
        if (st->n == 0)
                return 0;
        size_t i = (size_t)(p * (double)(st->n - 1) + 0.5);
        return st->lat_us[i < st->n ? i : st->n - 1];
}

/* --------------------------------------------------------- connections */

enum cstate { C_IDLE, C_CONNECTING, C_HANDSHAKE, C_SEND, C_RECV };

struct conn {
        int fd;
        SSL *ssl;
        enum cstate st;
        char *req;
        size_t req_len, req_off;
        char *resp;
        size_t resp_len;
        size_t hdr_len;         /* 0 until the header end is found */
        size_t body_len;
        int status, close_after, waiting;
        uint64_t t_start, wake;
        unsigned long seq;
};

struct run {
        struct opts o;
        SSL_CTX *ctx;
        int ep;
        struct conn conns[MAX_CONNS];
        char host[64];
        char *body;
        size_t body_len;
        char auth_static[1024];      /* "Authorization: Bearer ...\r\n" or "" */
        struct sigv4 sv;
        int use_sigv4;
        char (*keys)[KEY_NAME_MAX];
        size_t n_keys;
        unsigned long next_key;
        int measuring, stopping;
        uint64_t t_measure_start, t_end;
        unsigned long issued, max_req;
        uint64_t t_rate0;             /* --rate: request k is due at t_rate0 + k/rate */
        unsigned long rate_k;
        struct stats st;
};

static uint64_t now_us(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static void note_error(struct run *r, const char *what)
{
        if (r->st.first_error[0] == '\0')
                snprintf(r->st.first_error, sizeof r->st.first_error, "%s", what);
}

/* The request of this connection: template + per-request key, date, signature. */
static int build_request(struct run *r, struct conn *c)
{
        char path[1024];
        const char *tpl = r->o.path;
        const char *mark = strstr(tpl, "{key}");
        if (mark != NULL && r->n_keys > 0) {
                const char *k = r->keys[r->next_key++ % r->n_keys];
                int n = snprintf(path, sizeof path, "%.*s%s%s", (int)(mark - tpl), tpl, k, mark + 5);
                if (n < 0 || (size_t)n >= sizeof path)
                        return -1;
        } else {
                snprintf(path, sizeof path, "%s", tpl);
        }
        char auth[1200];
        if (r->use_sigv4) {
                char amzdate[17], value[1024];
                time_t t = time(NULL);
                struct tm tm;
                gmtime_r(&t, &tm);
                strftime(amzdate, sizeof amzdate, "%Y%m%dT%H%M%SZ", &tm);
                if (sigv4_sign(&r->sv, r->o.method, path, r->host, amzdate, value, sizeof value) != 0)
                        return -1;
                snprintf(auth, sizeof auth, "X-Amz-Date: %s\r\nAuthorization: %s\r\n", amzdate, value);
        } else {
                snprintf(auth, sizeof auth, "%s", r->auth_static);
        }
        int n;
        if (r->body_len > 0 || strcmp(r->o.method, "POST") == 0)
                n = snprintf(c->req, REQ_MAX,
                             "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                             "Content-Length: %zu\r\n%s\r\n",
                             r->o.method, path, r->host, r->body_len, auth);
        else
                n = snprintf(c->req, REQ_MAX, "%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", r->o.method,
                             path, r->host, auth);
        if (n < 0 || (size_t)n + r->body_len > REQ_MAX)
                return -1;
        memcpy(c->req + n, r->body, r->body_len);
        c->req_len = (size_t)n + r->body_len;
        c->req_off = 0;
        c->resp_len = c->hdr_len = c->body_len = 0;
        c->status = 0;
        c->close_after = 0;
        return 0;
}

static void conn_close(struct run *r, struct conn *c)
{
        if (c->ssl != NULL) {
                SSL_free(c->ssl);
                c->ssl = NULL;
        }
        if (c->fd >= 0) {
                epoll_ctl(r->ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
        }
        c->st = C_IDLE;
}

static void want(struct run *r, struct conn *c, uint32_t ev)
{
        struct epoll_event e = { .events = ev, .data.ptr = c };
        epoll_ctl(r->ep, EPOLL_CTL_MOD, c->fd, &e);
}

static int conn_open(struct run *r, struct conn *c)
{
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return -1;
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int port = r->o.ports[(size_t)(c - r->conns) % (size_t)r->o.n_ports];
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);   /* 127.0.0.1, never anything else */
        int rc = connect(c->fd, (struct sockaddr *)&sa, sizeof sa);
        if (rc != 0 && errno != EINPROGRESS) {
                close(c->fd);
                c->fd = -1;
                return -1;
        }
        c->ssl = SSL_new(r->ctx);
        if (c->ssl == NULL) {
                close(c->fd);
                c->fd = -1;
                return -1;
        }
        SSL_set_fd(c->ssl, c->fd);
        SSL_set_connect_state(c->ssl);
        struct epoll_event e = { .events = EPOLLOUT, .data.ptr = c };
        epoll_ctl(r->ep, EPOLL_CTL_ADD, c->fd, &e);
        c->st = C_HANDSHAKE;
        return 0;
}

static void conn_go(struct run *r, struct conn *c);

/* Starts the next request on c (opening a connection when needed). */
static void conn_next(struct run *r, struct conn *c)
{
        if (r->stopping || r->issued >= r->max_req) {
                conn_close(r, c);
                return;
        }
        if (build_request(r, c) != 0) {
                note_error(r, "request does not fit the buffer");
                r->stopping = 1;
                conn_close(r, c);
                return;
        }
        r->issued++;
        c->t_start = now_us();
        if (r->o.rate > 0) {
                /* open-loop pacing: latency counts from the due time, so a
                 * late start (server behind) is not hidden */
                uint64_t due = r->t_rate0 + (uint64_t)((double)r->rate_k++ * 1e6 / r->o.rate);
                if (due > c->t_start) {
                        c->waiting = 1;
                        c->wake = due;
                        c->t_start = due;
                        return;
                }
                c->t_start = due;
        }
        c->waiting = 0;
        conn_go(r, c);
}

/* Sends the request built by conn_next (opening a connection when needed). */
static void conn_go(struct run *r, struct conn *c)
{
        c->waiting = 0;
        if (c->fd < 0) {
                if (conn_open(r, c) != 0) {
                        r->st.conn_errors++;
                        note_error(r, "connect failed");
                        conn_close(r, c);
                        return;
                }
                return;   /* handshake first, then send */
        }
        c->st = C_SEND;
        want(r, c, EPOLLOUT);
}

/* Parses the response header once complete; returns 1 when the whole
 * response is in, 0 when more is needed, -1 on a malformed response. */
static int parse_response(struct conn *c)
{
        if (c->hdr_len == 0) {
                char *end = memmem(c->resp, c->resp_len, "\r\n\r\n", 4);
                if (end == NULL)
                        return c->resp_len >= HDR_MAX ? -1 : 0;
                c->hdr_len = (size_t)(end - c->resp) + 4;
                if (c->resp_len < 12 || memcmp(c->resp, "HTTP/1.", 7) != 0)
                        return -1;
                c->status = atoi(c->resp + 9);
                int have_len = 0;
                for (char *p = memchr(c->resp, '\n', c->hdr_len); p != NULL && p < end;
                     p = memchr(p + 1, '\n', (size_t)(end - p))) {
                        char *line = p + 1;
                        if (strncasecmp(line, "Content-Length:", 15) == 0) {
                                c->body_len = strtoul(line + 15, NULL, 10);
                                have_len = 1;
                        } else if (strncasecmp(line, "Connection:", 11) == 0) {
                                const char *v = line + 11;
                                while (*v == ' ')
                                        v++;
                                if (strncasecmp(v, "close", 5) == 0)
                                        c->close_after = 1;
                        } else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0) {
                                return -1;   /* not produced by the servers under test */
                        }
                }
                if (!have_len)
                        return -1;
                if (c->hdr_len + c->body_len > RESP_MAX)
                        return -1;
        }
        return c->resp_len >= c->hdr_len + c->body_len ? 1 : 0;
}

static void conn_done(struct run *r, struct conn *c)
{
        uint64_t t = now_us();
        if (r->measuring && c->t_start >= r->t_measure_start) {
                if (c->status != r->o.expect_status && r->st.first_error[0] == '\0') {
                        size_t bl = c->body_len < 150 ? c->body_len : 150;
                        char b[160];
                        memcpy(b, c->resp + c->hdr_len, bl);
                        b[bl] = '\0';
                        for (size_t i = 0; i < bl; i++)
                                if (b[i] == '"' || b[i] == '\\' || (unsigned char)b[i] < 0x20)
                                        b[i] = '\'';
                        snprintf(r->st.first_error, sizeof r->st.first_error, "HTTP %d %s", c->status, b);
                }
                stats_add(&r->st, t - c->t_start, c->status, r->o.expect_status);
        }
        if (c->close_after || r->o.new_conn)
                conn_close(r, c);
        conn_next(r, c);
}

static void conn_fail(struct run *r, struct conn *c, const char *what)
{
        if (r->measuring && !r->stopping) {
                r->st.conn_errors++;
                char buf[160];
                unsigned long e = ERR_peek_last_error();
                snprintf(buf, sizeof buf, "%s%s%s", what, e ? ": " : "", e ? ERR_reason_error_string(e) : "");
                note_error(r, buf);
        }
        ERR_clear_error();
        conn_close(r, c);
        if (!r->stopping) {
                struct timespec ts = { 0, 1000000 };   /* 1 ms back-off before reconnecting */
                nanosleep(&ts, NULL);
                conn_next(r, c);
        }
}

static void conn_event(struct run *r, struct conn *c)
{
        for (;;) {
                if (c->st == C_HANDSHAKE) {
                        int rc = SSL_do_handshake(c->ssl);
                        if (rc == 1) {
                                r->st.handshakes++;
                                c->st = C_SEND;
                                continue;
                        }
                        int e = SSL_get_error(c->ssl, rc);
                        if (e == SSL_ERROR_WANT_READ) {
                                want(r, c, EPOLLIN);
                                return;
                        }
                        if (e == SSL_ERROR_WANT_WRITE) {
                                want(r, c, EPOLLOUT);
                                return;
                        }
                        conn_fail(r, c, "TLS handshake failed");
                        return;
                }
                if (c->st == C_SEND) {
                        size_t w = 0;
                        int rc = SSL_write_ex(c->ssl, c->req + c->req_off, c->req_len - c->req_off, &w);
                        if (rc == 1) {
                                c->req_off += w;
                                if (c->req_off == c->req_len) {
                                        c->st = C_RECV;
                                        want(r, c, EPOLLIN);
                                        continue;   /* the answer may be there already */
                                }
                                continue;
                        }
                        int e = SSL_get_error(c->ssl, rc);
                        if (e == SSL_ERROR_WANT_WRITE) {
                                want(r, c, EPOLLOUT);
                                return;
                        }
                        if (e == SSL_ERROR_WANT_READ) {
                                want(r, c, EPOLLIN);
                                return;
                        }
                        conn_fail(r, c, "write failed");
                        return;
                }
                if (c->st == C_RECV) {
                        size_t got = 0;
                        int rc = SSL_read_ex(c->ssl, c->resp + c->resp_len, RESP_MAX - c->resp_len, &got);
                        if (rc == 1) {
                                c->resp_len += got;
                                int p = parse_response(c);
                                if (p < 0) {
                                        conn_fail(r, c, "malformed response");
                                        return;
                                }
                                if (p == 1) {
                                        conn_done(r, c);
                                        return;
                                }
                                continue;
                        }
                        int e = SSL_get_error(c->ssl, rc);
                        if (e == SSL_ERROR_WANT_READ)
                                return;   /* EPOLLIN is armed */
                        if (e == SSL_ERROR_WANT_WRITE) {
                                want(r, c, EPOLLOUT);
                                return;
                        }
                        conn_fail(r, c, "connection closed before the response");
                        return;
                }
                return;
        }
}

/* ------------------------------------------------------------- set-up */

static char *read_file(const char *path, size_t *ret_len, size_t max)
{
        FILE *f = fopen(path, "rb");
        if (f == NULL)
                return NULL;
        char *buf = malloc(max + 1);
        size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
        int bad = ferror(f) || n > max;
        fclose(f);
        if (buf == NULL || bad) {
                free(buf);
                return NULL;
        }
        buf[n] = '\0';
        *ret_len = n;
        return buf;
}

static void trim(char *s, size_t *len)
{
        while (*len > 0 && (s[*len - 1] == '\n' || s[*len - 1] == '\r' || s[*len - 1] == ' '))
                s[--*len] = '\0';
}

/* --keys "prefix%06d:N" (N names from a pattern) or "a,b,c". */
static int parse_keys(struct run *r, const char *spec)
{
        r->keys = calloc(MAX_KEYS, sizeof *r->keys);
        if (r->keys == NULL)
                return -1;
        const char *colon = strrchr(spec, ':');
        const char *pc = strchr(spec, '%');
        if (colon != NULL && pc != NULL && pc < colon) {
                /* only one integer conversion "%d" or "%0Nd" is accepted */
                const char *q = pc + 1;
                while (*q >= '0' && *q <= '9')
                        q++;
                if (*q != 'd' || strchr(q, '%') != NULL)
                        return -1;
                long n = strtol(colon + 1, NULL, 10);
                if (n <= 0 || n > MAX_KEYS)
                        return -1;
                char fmt[KEY_NAME_MAX];
                snprintf(fmt, sizeof fmt, "%.*s", (int)(colon - spec), spec);
                for (long i = 0; i < n; i++) {
                        const char *f = fmt;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
                        snprintf(r->keys[i], KEY_NAME_MAX, f, (int)i);   /* format checked above */
#pragma GCC diagnostic pop
                }
                r->n_keys = (size_t)n;
                return 0;
        }
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s", spec);
        char *save = NULL;
        for (char *t = strtok_r(tmp, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
                if (r->n_keys >= MAX_KEYS)
                        return -1;
                snprintf(r->keys[r->n_keys++], KEY_NAME_MAX, "%s", t);
        }
        return r->n_keys > 0 ? 0 : -1;
}

static void usage(FILE *f)
{
        fprintf(f,
                "usage: kw-loadgen --port P[,P2,...] --path PATH [--method M] [--body-file F]\n"
                "         [--conns N] [--duration S] [--warmup S] [--max-requests N]\n"
                "         [--cacert F] [--cert F --key F] [--token-file F]\n"
                "         [--sigv4 AKID --sigv4-secret-file F [--region R] [--service S]]\n"
                "         [--keys 'name%%04d:1000' | --keys a,b] [--new-conn] [--tls13]\n"
                "         [--ciphersuites S] [--expect STATUS] [--label L] [--rate REQ_PER_S]\n"
                "       kw-loadgen --sign-only yyyymmddThhmmssZ --port P --path PATH --body-file F\n"
                "         --sigv4 AKID --sigv4-secret-file F   (prints the Authorization header)\n"
                "Connects to 127.0.0.1 only.  PATH may contain {key}.\n");
}

/* "P" or "P1,P2,...": each 1..65535, at most MAX_PORTS */
static int parse_ports(const char *arg, struct opts *o)
{
        o->n_ports = 0;
        const char *p = arg;
        for (;;) {
                char *end;
                long v = strtol(p, &end, 10);
                if (end == p || v < 1 || v > 65535 || o->n_ports == MAX_PORTS)
                        return -1;
                o->ports[o->n_ports++] = (int)v;
                if (*end == '\0')
                        break;
                if (*end != ',')
                        return -1;
                p = end + 1;
        }
        o->port = o->ports[0];
        return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
        static const struct option lo[] = {
                { "port", required_argument, NULL, 'p' },
                { "method", required_argument, NULL, 'm' },
                { "path", required_argument, NULL, 'P' },
                { "body-file", required_argument, NULL, 'b' },
                { "conns", required_argument, NULL, 'c' },
                { "duration", required_argument, NULL, 'd' },
                { "warmup", required_argument, NULL, 'w' },
                { "max-requests", required_argument, NULL, 'n' },
                { "cacert", required_argument, NULL, 'C' },
                { "cert", required_argument, NULL, 'E' },
                { "key", required_argument, NULL, 'K' },
                { "token-file", required_argument, NULL, 't' },
                { "sigv4", required_argument, NULL, 's' },
                { "sigv4-secret-file", required_argument, NULL, 'S' },
                { "region", required_argument, NULL, 'r' },
                { "service", required_argument, NULL, 'v' },
                { "keys", required_argument, NULL, 'k' },
                { "new-conn", no_argument, NULL, 'N' },
                { "tls13", no_argument, NULL, '3' },
                { "ciphersuites", required_argument, NULL, 'u' },
                { "expect", required_argument, NULL, 'x' },
                { "label", required_argument, NULL, 'l' },
                { "rate", required_argument, NULL, 'R' },
                { "sign-only", required_argument, NULL, 'O' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        memset(o, 0, sizeof *o);
        o->method = "GET";
        o->conns = 1;
        o->duration = 5;
        o->warmup = 1;
        o->max_requests = DEFAULT_MAX_REQUESTS;
        o->region = "us-east-1";
        o->service = "kms-xks-proxy";
        o->expect_status = 200;
        o->label = "";
        int c;
        while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
                switch (c) {
                case 'p':
                        if (parse_ports(optarg, o) != 0)
                                return -1;
                        break;
                case 'm': o->method = optarg; break;
                case 'P': o->path = optarg; break;
                case 'b': o->body_file = optarg; break;
                case 'c': o->conns = atoi(optarg); break;
                case 'd': o->duration = atof(optarg); break;
                case 'w': o->warmup = atof(optarg); break;
                case 'n': o->max_requests = strtoul(optarg, NULL, 10); break;
                case 'C': o->cacert = optarg; break;
                case 'E': o->cert = optarg; break;
                case 'K': o->key = optarg; break;
                case 't': o->token_file = optarg; break;
                case 's': o->sigv4_akid = optarg; break;
                case 'S': o->sigv4_secret_file = optarg; break;
                case 'r': o->region = optarg; break;
                case 'v': o->service = optarg; break;
                case 'k': o->keys_spec = optarg; break;
                case 'N': o->new_conn = 1; break;
                case '3': o->tls13_only = 1; break;
                case 'u': o->ciphersuites = optarg; break;
                case 'x': o->expect_status = atoi(optarg); break;
                case 'l': o->label = optarg; break;
                case 'R': o->rate = atof(optarg); break;
                case 'O': o->sign_only_date = optarg; break;
                case 'h': usage(stdout); exit(0);
                default: return -1;
                }
        }
        if (optind != argc || o->port < 1 || o->port > 65535 || o->path == NULL || o->path[0] != '/')
                return -1;
        if (o->conns < 1 || o->conns > MAX_CONNS || o->duration <= 0 || o->duration > 600 ||
            o->warmup < 0 || o->warmup > 60 || o->max_requests == 0 || o->rate < 0 || o->rate > 1e6)
                return -1;
        if ((o->cert == NULL) != (o->key == NULL) || (o->sigv4_akid == NULL) != (o->sigv4_secret_file == NULL))
                return -1;
        if (o->sign_only_date != NULL && (o->sigv4_akid == NULL || strlen(o->sign_only_date) != 16))
                return -1;
        return 0;
}

static int setup(struct run *r)
{
        const struct opts *o = &r->o;
        snprintf(r->host, sizeof r->host, "127.0.0.1:%d", o->port);
        if (o->body_file != NULL) {
                r->body = read_file(o->body_file, &r->body_len, REQ_MAX / 2);
                if (r->body == NULL) {
                        fprintf(stderr, "kw-loadgen: cannot read %s\n", o->body_file);
                        return -1;
                }
        } else {
                r->body = calloc(1, 1);
                if (r->body == NULL)
                        return -1;
        }
        if (o->token_file != NULL) {
                size_t n = 0;
                char *t = read_file(o->token_file, &n, 512);
                if (t == NULL) {
                        fprintf(stderr, "kw-loadgen: cannot read %s\n", o->token_file);
                        return -1;
                }
                trim(t, &n);
                snprintf(r->auth_static, sizeof r->auth_static, "Authorization: Bearer %s\r\n", t);
                OPENSSL_cleanse(t, n);
                free(t);
        }
        if (o->sigv4_akid != NULL) {
                size_t n = 0;
                char *s = read_file(o->sigv4_secret_file, &n, 120);
                if (s == NULL) {
                        fprintf(stderr, "kw-loadgen: cannot read %s\n", o->sigv4_secret_file);
                        return -1;
                }
                trim(s, &n);
                memcpy(r->sv.secret, s, n);
                r->sv.secret_len = n;
                OPENSSL_cleanse(s, n);
                free(s);
                snprintf(r->sv.akid, sizeof r->sv.akid, "%s", o->sigv4_akid);
                snprintf(r->sv.region, sizeof r->sv.region, "%s", o->region);
                snprintf(r->sv.service, sizeof r->sv.service, "%s", o->service);
                sha256_hex(r->body, r->body_len, r->sv.payload_hex);
                r->use_sigv4 = 1;
        }
        if (o->keys_spec != NULL && parse_keys(r, o->keys_spec) != 0) {
                fprintf(stderr, "kw-loadgen: bad --keys\n");
                return -1;
        }
        if (o->sign_only_date != NULL)
                return 0;

        r->ctx = SSL_CTX_new(TLS_client_method());
        if (r->ctx == NULL)
                return -1;
        SSL_CTX_set_min_proto_version(r->ctx, o->tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION);
        SSL_CTX_set_session_cache_mode(r->ctx, SSL_SESS_CACHE_OFF);   /* full handshakes */
        if (o->ciphersuites != NULL && SSL_CTX_set_ciphersuites(r->ctx, o->ciphersuites) != 1) {
                fprintf(stderr, "kw-loadgen: bad --ciphersuites\n");
                return -1;
        }
        if (o->cacert != NULL) {
                if (SSL_CTX_load_verify_locations(r->ctx, o->cacert, NULL) != 1) {
                        fprintf(stderr, "kw-loadgen: cannot load %s\n", o->cacert);
                        return -1;
                }
                SSL_CTX_set_verify(r->ctx, SSL_VERIFY_PEER, NULL);
        }
        if (o->cert != NULL && (SSL_CTX_use_certificate_chain_file(r->ctx, o->cert) != 1 ||
                                SSL_CTX_use_PrivateKey_file(r->ctx, o->key, SSL_FILETYPE_PEM) != 1)) {
                fprintf(stderr, "kw-loadgen: cannot load the client certificate %s\n", o->cert);
                return -1;
        }
        r->ep = epoll_create1(EPOLL_CLOEXEC);
        if (r->ep < 0)
                return -1;
        for (int i = 0; i < o->conns; i++) {
                struct conn *c = &r->conns[i];
                c->fd = -1;
                c->req = malloc(REQ_MAX);
                c->resp = malloc(RESP_MAX + 1);
                if (c->req == NULL || c->resp == NULL)
                        return -1;
        }
        r->st.cap = o->max_requests < 20000000ul ? o->max_requests : 20000000ul;
        r->st.lat_us = malloc(r->st.cap * sizeof *r->st.lat_us);
        return r->st.lat_us != NULL ? 0 : -1;
}

static double cpu_seconds(void)
{
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void report(struct run *r, double secs, double cpu)
{
        struct stats *st = &r->st;
        qsort(st->lat_us, st->n, sizeof *st->lat_us, cmp_u32);
        printf("{\"label\":\"%s\",\"conns\":%d,\"rate\":%.0f,\"new_conn\":%s,\"ok\":%zu,\"errors\":%lu,"
               "\"conn_errors\":%lu,\"handshakes\":%lu,\"seconds\":%.3f,\"rps\":%.1f,"
               "\"p50_us\":%u,\"p90_us\":%u,\"p99_us\":%u,\"p999_us\":%u,\"max_us\":%u,"
               "\"loadgen_cpu\":%.3f,\"status\":{",
               r->o.label, r->o.conns, r->o.rate, r->o.new_conn ? "true" : "false", st->n, st->errors,
               st->conn_errors, st->handshakes, secs, secs > 0 ? (double)st->n / secs : 0.0,
               pct(st, 0.5), pct(st, 0.9), pct(st, 0.99), pct(st, 0.999),
               st->n ? st->lat_us[st->n - 1] : 0, secs > 0 ? cpu / secs : 0.0);
        int first = 1;
        for (int i = 0; i < 600; i++) {
                if (st->status[i] == 0)
                        continue;
                printf("%s\"%d\":%lu", first ? "" : ",", i, st->status[i]);
                first = 0;
        }
        printf("},\"first_error\":\"%s\"}\n", st->first_error);
}

int main(int argc, char **argv)
{
        signal(SIGPIPE, SIG_IGN);   /* a refused connection is an error to count, not a kill */
        /* open-loop pacing wants its wake-ups on time: the default 50 us of
         * timer slack would be added to every due send */
        (void)prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
        static struct run r;
        if (parse_opts(argc, argv, &r.o) != 0) {
                usage(stderr);
                return 2;
        }
        if (setup(&r) != 0)
                return 3;
        if (r.o.sign_only_date != NULL) {
                char v[1024];
                if (sigv4_sign(&r.sv, r.o.method, r.o.path, r.host, r.o.sign_only_date, v, sizeof v) != 0)
                        return 3;
                printf("%s\n", v);
                return 0;
        }
        r.max_req = r.o.max_requests;
        uint64_t t0 = now_us();
        uint64_t warm_end = t0 + (uint64_t)(r.o.warmup * 1e6);
        r.measuring = r.o.warmup <= 0;
        r.t_measure_start = r.measuring ? t0 : warm_end;
        r.t_end = warm_end + (uint64_t)(r.o.duration * 1e6);
        if (r.measuring)
                r.max_req = r.o.max_requests;
        else
                r.max_req = ~0ul;   /* the warm-up is bounded by time only */
        unsigned long issued_at_measure = 0;
        double cpu0 = 0;
        r.t_rate0 = t0;
        for (int i = 0; i < r.o.conns; i++)
                conn_next(&r, &r.conns[i]);
        struct epoll_event ev[256];
        uint64_t t_meas = r.measuring ? t0 : 0;
        if (r.measuring)
                cpu0 = cpu_seconds();
        for (;;) {
                uint64_t t = now_us();
                if (!r.measuring && t >= warm_end) {
                        r.measuring = 1;
                        r.t_measure_start = t;
                        t_meas = t;
                        cpu0 = cpu_seconds();
                        issued_at_measure = r.issued;
                        r.max_req = issued_at_measure + r.o.max_requests;
                }
                if (t >= r.t_end || (r.measuring && r.st.n + r.st.errors >= r.o.max_requests)) {
                        r.stopping = 1;
                        break;
                }
                int active = 0;
                uint64_t next_wake = t + 50000;
                for (int i = 0; i < r.o.conns; i++) {
                        struct conn *c = &r.conns[i];
                        if (c->waiting && c->wake <= t)
                                conn_go(&r, c);
                        if (c->waiting && c->wake < next_wake)
                                next_wake = c->wake;
                        active |= c->fd >= 0 || c->waiting;
                }
                if (!active && r.issued >= r.max_req)
                        break;
                if (!active) {   /* every connection failed: retry them */
                        for (int i = 0; i < r.o.conns; i++)
                                conn_next(&r, &r.conns[i]);
                        continue;
                }
                /* the wait to the next due send, to the microsecond: a
                 * timeout in whole milliseconds woke up to 1 ms late, and
                 * that lateness counted as the server's latency */
                uint64_t wait_us = next_wake - t;
                struct timespec tmo = { .tv_sec = (time_t)(wait_us / 1000000),
                                        .tv_nsec = (long)(wait_us % 1000000) * 1000 };
                int n = epoll_pwait2(r.ep, ev, 256, &tmo, NULL);
                if (n < 0 && errno == ENOSYS)   /* kernel before 5.11 */
                        n = epoll_wait(r.ep, ev, 256, (int)((wait_us + 999) / 1000));
                for (int i = 0; i < n; i++)
                        conn_event(&r, ev[i].data.ptr);
        }
        uint64_t t_stop = now_us();
        double cpu = cpu_seconds() - cpu0;
        double secs = (double)(t_stop - t_meas) / 1e6;
        for (int i = 0; i < r.o.conns; i++)
                conn_close(&r, &r.conns[i]);
        report(&r, secs, cpu);
        OPENSSL_cleanse(r.sv.secret, sizeof r.sv.secret);
        OPENSSL_cleanse(r.sv.kdate_signing, sizeof r.sv.kdate_signing);
        OPENSSL_cleanse(r.auth_static, sizeof r.auth_static);
        return 0;
}
