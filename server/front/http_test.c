/*
 * http_test.c - the front's HTTPS server against real TLS clients.
 *
 * A real CivetWeb listens on 127.0.0.1 (free ports found by binding port 0);
 * certificates are generated here with OpenSSL: a self-signed RSA server
 * certificate, a client CA, client certificates (good, two CNs, expired,
 * signed by another CA) and a PKCS#12 bundle.  The client side is plain
 * OpenSSL over a socket, so the bytes on the wire are what is checked.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "front/http.h"
#include "common/json_io.h"

/* ---- credentials ---- */

static char tdir[64];
static char p_srv_crt[128], p_srv_key[128], p_ca_crt[128], p_p12[128], p_bad[128];
static char p_cli_crt[128], p_cli_key[128], p_rogue_crt[128], p_old_crt[128];
static X509 *srv_cert;

static X509 *make_cert(EVP_PKEY *key, const char *const *cns, int ncn, X509 *issuer,
                       EVP_PKEY *issuer_key, int is_ca, long nb, long na, long serial)
{
        X509 *x = X509_new();
        assert_non_null(x);
        assert_int_equal(X509_set_version(x, 2), 1);
        ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
        X509_gmtime_adj(X509_getm_notBefore(x), nb);
        X509_gmtime_adj(X509_getm_notAfter(x), na);
        assert_int_equal(X509_set_pubkey(x, key), 1);
        X509_NAME *name = X509_get_subject_name(x);
        for (int i = 0; i < ncn; i++)
                assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                            (const unsigned char *)cns[i], -1, -1, 0), 1);
        assert_int_equal(X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name), 1);
        X509V3_CTX v3;
        X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
        X509_EXTENSION *e;
        if (is_ca) {
                e = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
                X509_add_ext(x, e, -1);
                X509_EXTENSION_free(e);
                e = X509V3_EXT_conf_nid(NULL, &v3, NID_key_usage, "critical,keyCertSign,cRLSign");
                X509_add_ext(x, e, -1);
                X509_EXTENSION_free(e);
        } else {
                e = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "CA:FALSE");
                X509_add_ext(x, e, -1);
                X509_EXTENSION_free(e);
        }
        assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
        return x;
}

static void write_cert(const char *path, X509 *x)
{
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(PEM_write_X509(f, x), 1);
        fclose(f);
}

static void write_key(const char *path, EVP_PKEY *k)
{
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
        fclose(f);
        chmod(path, 0600);
}

static int group_setup(void **state)
{
        (void)state;
        strcpy(tdir, "/tmp/kw_http_test_XXXXXX");
        assert_non_null(mkdtemp(tdir));
#define P(var, name) snprintf(var, sizeof var, "%s/%s", tdir, name)
        P(p_srv_crt, "server.crt");
        P(p_srv_key, "server.key");
        P(p_ca_crt, "ca.crt");
        P(p_p12, "server.p12");
        P(p_bad, "garbage.pem");
        P(p_cli_crt, "client.crt");
        P(p_cli_key, "client.key");
        P(p_rogue_crt, "rogue.crt");
        P(p_old_crt, "expired.crt");
#undef P
        EVP_PKEY *sk = EVP_RSA_gen(2048);
        EVP_PKEY *cak = EVP_EC_gen("P-256");
        EVP_PKEY *rk = EVP_EC_gen("P-256");
        EVP_PKEY *ck = EVP_EC_gen("P-256");
        assert_true(sk && cak && rk && ck);
        const char *srv_cn[] = { "localhost" };
        const char *ca_cn[] = { "Keyward Test Client CA" };
        const char *rogue_cn[] = { "Rogue CA" };
        const char *cli_cn[] = { "first-cn", "last-cn" };
        srv_cert = make_cert(sk, srv_cn, 1, NULL, NULL, 0, -60, 86400, 1);
        X509 *ca = make_cert(cak, ca_cn, 1, NULL, NULL, 1, -60, 86400, 2);
        X509 *rogue = make_cert(rk, rogue_cn, 1, NULL, NULL, 1, -60, 86400, 3);
        X509 *cli = make_cert(ck, cli_cn, 2, ca, cak, 0, -60, 86400, 4);
        X509 *cli_rogue = make_cert(ck, cli_cn, 2, rogue, rk, 0, -60, 86400, 5);
        X509 *cli_old = make_cert(ck, cli_cn, 2, ca, cak, 0, -7200, -3600, 6);
        write_cert(p_srv_crt, srv_cert);
        write_key(p_srv_key, sk);
        write_cert(p_ca_crt, ca);
        write_cert(p_cli_crt, cli);
        write_key(p_cli_key, ck);
        write_cert(p_rogue_crt, cli_rogue);
        write_cert(p_old_crt, cli_old);
        FILE *f = fopen(p_bad, "w");
        assert_non_null(f);
        fputs("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", f);
        fclose(f);

        STACK_OF(X509) *chain = sk_X509_new_null();
        sk_X509_push(chain, ca);
        PKCS12 *p12 = PKCS12_create("p12-pass", "server", sk, srv_cert, chain, 0, 0, 0, 0, 0);
        assert_non_null(p12);
        f = fopen(p_p12, "wb");
        assert_non_null(f);
        assert_int_equal(i2d_PKCS12_fp(f, p12), 1);
        fclose(f);
        PKCS12_free(p12);
        sk_X509_free(chain);

        X509_free(ca);
        X509_free(rogue);
        X509_free(cli);
        X509_free(cli_rogue);
        X509_free(cli_old);
        EVP_PKEY_free(sk);
        EVP_PKEY_free(cak);
        EVP_PKEY_free(rk);
        EVP_PKEY_free(ck);
        return 0;
}

static int group_teardown(void **state)
{
        (void)state;
        const char *files[] = { p_srv_crt, p_srv_key, p_ca_crt, p_p12, p_bad, p_cli_crt,
                                p_cli_key, p_rogue_crt, p_old_crt };
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
                unlink(files[i]);
        rmdir(tdir);
        X509_free(srv_cert);
        return 0;
}

/* ---- config ---- */

static int free_port(void)
{
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fd >= 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
        socklen_t l = sizeof a;
        assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
        close(fd);
        return ntohs(a.sin_port);
}

static char *xstrdup(const char *s) { return s ? strdup(s) : NULL; }

static struct kw_config *cfg_new(int port, int admin_port)
{
        struct kw_config *c = calloc(1, sizeof *c);
        assert_non_null(c);
        char buf[64];
        snprintf(buf, sizeof buf, "127.0.0.1:%d", port);
        c->http.listen = xstrdup(buf);
        c->http.max_connections = 16;
        c->http.max_connections_per_client = 32;
        c->http.idle_timeout_under_load_ms = 1000;
        c->http.request_timeout_ms = 3000;
        c->http.keep_alive_timeout_ms = 3000;
        c->http.max_body_bytes = 1024;
        c->tls.tls_cert_file = xstrdup(p_srv_crt);
        c->tls.tls_key_file = xstrdup(p_srv_key);
        c->tls.min_version = xstrdup("1.2");
        c->admin.enable = true;
        if (admin_port > 0) {
                snprintf(buf, sizeof buf, "127.0.0.1:%d", admin_port);
                c->admin.listen = xstrdup(buf);
        } else {
                c->admin.listen = xstrdup("");
        }
        c->log.requests = false;
        return c;
}

static void cfg_set(char **field, const char *v)
{
        free(*field);
        *field = xstrdup(v);
}

static void cfg_free(struct kw_config *c)
{
        if (c == NULL)
                return;
        char **f[] = { &c->http.listen, &c->tls.tls_cert_file, &c->tls.tls_key_file,
                       &c->tls.tls_p12_file, &c->tls.tls_p12_password, &c->tls.clients_ca_cert_file,
                       &c->tls.min_version, &c->tls.ciphers_tls12, &c->tls.ciphersuites_tls13,
                       &c->admin.listen };
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
                free(*f[i]);
        free(c);
}

/* ---- routes ---- */

static void put_str(cJSON *o, const char *k, const char *v)
{
        if (v)
                cJSON_AddStringToObject(o, k, v);
        else
                cJSON_AddNullToObject(o, k);
}

/* Runs in a CivetWeb worker: no cmocka asserts here, the client checks. */
static void echo(struct kw_req *req, struct kw_resp *resp, const char *route, void *ctx)
{
        cJSON *o = cJSON_CreateObject();
        put_str(o, "route", route);
        cJSON_AddBoolToObject(o, "ctx_ok", ctx == (void *)tdir);
        put_str(o, "method", req->method);
        put_str(o, "path", req->path);
        put_str(o, "query", req->query);
        char x[32];
        put_str(o, "x", kw_req_query(req, "x", x, sizeof x) == 0 ? x : NULL);
        put_str(o, "hdr", kw_req_header(req, "x-probe"));
        cJSON_AddNumberToObject(o, "listener", req->listener);
        cJSON_AddNumberToObject(o, "len", (double)req->body_len);
        cJSON_AddBoolToObject(o, "nul", req->body[req->body_len] == '\0');
        cJSON_AddNumberToObject(o, "present", req->client_cert_present);
        cJSON_AddNumberToObject(o, "verified", req->client_cert_verified);
        put_str(o, "cn", req->client_cn);
        resp->status = kw_json_write(o, &resp->body).code == 0 ? 200 : 500;
        cJSON_Delete(o);
}

static void r_v1(struct kw_req *req, struct kw_resp *resp, void *ctx)
{
        echo(req, resp, "v1", ctx);
}

static void r_keys(struct kw_req *req, struct kw_resp *resp, void *ctx)
{
        echo(req, resp, "keys", ctx);
        snprintf(req->log_route, sizeof req->log_route, "v1.keys.custom");
        snprintf(req->log_principal, sizeof req->log_principal, "token:ab12");
        snprintf(req->log_ids, sizeof req->log_ids, "\"kmsRequestId\":\"req-42\"");
        snprintf(resp->extra_headers, sizeof resp->extra_headers, "X-Test: yes\r\n");
}

static void r_admin(struct kw_req *req, struct kw_resp *resp, void *ctx)
{
        echo(req, resp, "admin", ctx);
}

static void r_broken(struct kw_req *req, struct kw_resp *resp, void *ctx)
{
        (void)req;
        (void)ctx;
        resp->status = 0;   /* handler forgot the status */
}

static void r_err(struct kw_req *req, struct kw_resp *resp, void *ctx)
{
        (void)ctx;
        kw_resp_error(resp, 403, "forbidden", "no \"way\"\n");
        snprintf(req->log_error, sizeof req->log_error, "forbidden");
}

/* A handler's Cache-Control: "/cache/ok" a valid one, any other a bad one. */
static void r_cache(struct kw_req *req, struct kw_resp *resp, void *ctx)
{
        echo(req, resp, "cache", ctx);
        resp->cache_control = strcmp(req->path, "/cache/ok") == 0 ? "no-cache" : "no-cache\r\nX-Evil: 1";
}

/* A protocol's own shape for http.c's refusals on its route. */
static void r_proto_error(struct kw_req *req, struct kw_resp *resp, int code)
{
        (void)req;
        resp->status = code == KW_ERR_TOO_LARGE ? 501 : 400;
        kw_buf_reset(&resp->body);
        kw_ignore(kw_buf_put_str(&resp->body, "{\"proto\":\"too big\"}"));
}

static const struct kw_route routes[] = {
        { "/v1/", KW_LISTENER_MAIN, r_v1, "v1", NULL },
        { "/v1/keys", KW_LISTENER_MAIN, r_keys, "v1.keys", NULL },
        { "/admin/", KW_LISTENER_ADMIN, r_admin, "admin", NULL },
        { "/broken", KW_LISTENER_MAIN, r_broken, "broken", NULL },
        { "/err", KW_LISTENER_MAIN | KW_LISTENER_ADMIN, r_err, "err", NULL },
        { "/proto/", KW_LISTENER_MAIN, r_v1, "proto", r_proto_error },
        { "/healthz", KW_LISTENER_MAIN | KW_LISTENER_ADMIN, r_v1, "healthz", NULL },
        { "/cache/", KW_LISTENER_MAIN | KW_LISTENER_ADMIN, r_cache, "cache", NULL },
        { NULL, 0, NULL, NULL, NULL },
};

/* ---- server fixture ---- */

struct srv {
        struct kw_config *cfg;
        struct kw_http *h;
        int port, aport;
};

static void srv_start(struct srv *s, struct kw_config *cfg)
{
        s->cfg = cfg;
        kw_err_clear_detail();
        kw_result r = kw_http_start(cfg, routes, tdir, &s->h);
        if (r.code != 0)
                fail_msg("kw_http_start: %s (%s)", kw_err_name(r.code), kw_err_detail());
}

static void srv_stop(struct srv *s)
{
        kw_http_stop(s->h);
        cfg_free(s->cfg);
        memset(s, 0, sizeof *s);
}

/* ---- client ---- */

struct cli {
        int fd;
        SSL_CTX *ctx;
        SSL *ssl;
};

struct hresp {
        int status;
        char head[4096];
        char body[8192];
        size_t body_len;
        cJSON *json;
};

static int tcp_connect(int port)
{
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fd >= 0);
        struct timeval tv = { .tv_sec = 5 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
        return fd;
}

/* 1 when the handshake succeeded. */
static int cli_open(struct cli *c, int port, int minv, int maxv, const char *crt, const char *key)
{
        memset(c, 0, sizeof *c);
        c->ctx = SSL_CTX_new(TLS_client_method());
        assert_non_null(c->ctx);
        /* the client is able to speak anything, so a refusal is the server's */
        SSL_CTX_set_security_level(c->ctx, 0);
        assert_int_equal(SSL_CTX_set_cipher_list(c->ctx, "ALL:@SECLEVEL=0"), 1);
        assert_int_equal(SSL_CTX_set_min_proto_version(c->ctx, minv), 1);
        assert_int_equal(SSL_CTX_set_max_proto_version(c->ctx, maxv), 1);
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
        if (crt) {
                assert_int_equal(SSL_CTX_use_certificate_file(c->ctx, crt, SSL_FILETYPE_PEM), 1);
                assert_int_equal(SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM), 1);
        }
        static const unsigned char alpn[] = "\x02h2\x08http/1.1";
        SSL_CTX_set_alpn_protos(c->ctx, alpn, sizeof alpn - 1);
        c->fd = tcp_connect(port);
        c->ssl = SSL_new(c->ctx);
        SSL_set_fd(c->ssl, c->fd);
        int ok = SSL_connect(c->ssl) == 1;
        ERR_clear_error();
        return ok;
}

static void cli_close(struct cli *c)
{
        if (c->ssl) {
                SSL_shutdown(c->ssl);
                SSL_free(c->ssl);
        }
        if (c->fd > 0)
                close(c->fd);
        SSL_CTX_free(c->ctx);
        memset(c, 0, sizeof *c);
}

static void cli_send(struct cli *c, const char *raw, size_t n)
{
        assert_int_equal(SSL_write(c->ssl, raw, (int)n), (int)n);
}

/* Reads one response; 0 when the connection ended first. */
static int cli_read(struct cli *c, struct hresp *r)
{
        memset(r, 0, sizeof *r);
        size_t hl = 0;
        char *end = NULL;
        while ((end = strstr(r->head, "\r\n\r\n")) == NULL) {
                if (hl >= sizeof r->head - 1)
                        return 0;
                int n = SSL_read(c->ssl, r->head + hl, 1);   /* byte-wise: no over-read */
                if (n <= 0)
                        return 0;
                hl += (size_t)n;
                r->head[hl] = '\0';
        }
        end[2] = '\0';
        if (sscanf(r->head, "HTTP/1.1 %d ", &r->status) != 1)
                return 0;
        const char *cl = strcasestr(r->head, "\r\nContent-Length: ");
        size_t want = cl ? strtoul(cl + 18, NULL, 10) : 0;
        assert_true(want < sizeof r->body);
        while (r->body_len < want) {
                int n = SSL_read(c->ssl, r->body + r->body_len, (int)(want - r->body_len));
                if (n <= 0)
                        return 0;
                r->body_len += (size_t)n;
        }
        r->body[r->body_len] = '\0';
        r->json = cJSON_Parse(r->body);
        return 1;
}

static void hresp_free(struct hresp *r)
{
        cJSON_Delete(r->json);
        r->json = NULL;
}

static int has_header(const struct hresp *r, const char *line)
{
        char want[256];
        snprintf(want, sizeof want, "\r\n%s\r\n", line);
        return strcasestr(r->head, want) != NULL;
}

static const char *jstr(const struct hresp *r, const char *k)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->json, k);
        return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double jnum(const struct hresp *r, const char *k)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->json, k);
        assert_true(cJSON_IsNumber(v) || cJSON_IsBool(v));
        return cJSON_IsBool(v) ? cJSON_IsTrue(v) : v->valuedouble;
}

/* Sends one request on a new connection and reads the response. */
static void one_shot(int port, const char *raw, struct hresp *r)
{
        struct cli c;
        assert_true(cli_open(&c, port, TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL));
        cli_send(&c, raw, strlen(raw));
        assert_true(cli_read(&c, r));
        cli_close(&c);
}

static int cli_at_eof(struct cli *c)
{
        char b;
        return SSL_read(c->ssl, &b, 1) <= 0;
}

#define GET(path) "GET " path " HTTP/1.1\r\nHost: localhost\r\n\r\n"

/* ---- TLS ---- */

static void http_start_tls13_client_negotiates_tls13(void **state)
{
        (void)state;
        struct srv s;
        s.port = free_port();
        struct kw_config *cfg = cfg_new(s.port, 0);
        cfg_set(&cfg->tls.min_version, "1.3");
        cfg_set(&cfg->tls.ciphersuites_tls13, "TLS_CHACHA20_POLY1305_SHA256");
        srv_start(&s, cfg);

        struct cli c;
        assert_true(cli_open(&c, s.port, TLS1_3_VERSION, TLS1_3_VERSION, NULL, NULL));
        assert_int_equal(SSL_version(c.ssl), TLS1_3_VERSION);
        assert_string_equal(SSL_CIPHER_get_name(SSL_get_current_cipher(c.ssl)),
                            "TLS_CHACHA20_POLY1305_SHA256");
        X509 *peer = SSL_get1_peer_certificate(c.ssl);
        assert_non_null(peer);
        assert_int_equal(X509_cmp(peer, srv_cert), 0);
        X509_free(peer);
        const unsigned char *proto = NULL;
        unsigned int plen = 0;
        SSL_get0_alpn_selected(c.ssl, &proto, &plen);
        assert_int_equal(plen, 8);                  /* http/1.1 chosen over h2 */
        assert_memory_equal(proto, "http/1.1", 8);
        struct hresp r;
        cli_send(&c, GET("/v1/x"), strlen(GET("/v1/x")));
        assert_true(cli_read(&c, &r));
        assert_int_equal(r.status, 200);
        hresp_free(&r);
        cli_close(&c);

        /* min_version 1.3: a TLS 1.2 client is refused */
        assert_false(cli_open(&c, s.port, TLS1_2_VERSION, TLS1_2_VERSION, NULL, NULL));
        cli_close(&c);
        srv_stop(&s);
}

static void http_start_tls12_allowed_and_tls11_refused(void **state)
{
        (void)state;
        struct srv s;
        s.port = free_port();
        struct kw_config *cfg = cfg_new(s.port, 0);
        cfg_set(&cfg->tls.ciphers_tls12, "ECDHE-RSA-AES128-GCM-SHA256");
        srv_start(&s, cfg);

        struct cli c;
        assert_true(cli_open(&c, s.port, TLS1_2_VERSION, TLS1_2_VERSION, NULL, NULL));
        assert_int_equal(SSL_version(c.ssl), TLS1_2_VERSION);
        assert_string_equal(SSL_CIPHER_get_name(SSL_get_current_cipher(c.ssl)),
                            "ECDHE-RSA-AES128-GCM-SHA256");
        cli_close(&c);

        /* ALPN: a client offering only h2 gets no ALPN, not h2 */
        memset(&c, 0, sizeof c);
        c.ctx = SSL_CTX_new(TLS_client_method());
        static const unsigned char h2only[] = "\x02h2";
        SSL_CTX_set_alpn_protos(c.ctx, h2only, sizeof h2only - 1);
        c.fd = tcp_connect(s.port);
        c.ssl = SSL_new(c.ctx);
        SSL_set_fd(c.ssl, c.fd);
        assert_int_equal(SSL_connect(c.ssl), 1);
        const unsigned char *proto = (const unsigned char *)"x";
        unsigned int plen = 99;
        SSL_get0_alpn_selected(c.ssl, &proto, &plen);
        assert_int_equal(plen, 0);
        struct hresp r;
        cli_send(&c, GET("/v1/x"), strlen(GET("/v1/x")));
        assert_true(cli_read(&c, &r));
        assert_int_equal(r.status, 200);
        hresp_free(&r);
        cli_close(&c);

        assert_false(cli_open(&c, s.port, TLS1_1_VERSION, TLS1_1_VERSION, NULL, NULL));
        cli_close(&c);
        assert_false(cli_open(&c, s.port, TLS1_VERSION, TLS1_VERSION, NULL, NULL));
        cli_close(&c);
        srv_stop(&s);
}

static void http_start_pkcs12_serves_cert_and_chain(void **state)
{
        (void)state;
        struct srv s;
        s.port = free_port();
        struct kw_config *cfg = cfg_new(s.port, 0);
        cfg_set(&cfg->tls.tls_cert_file, NULL);
        cfg_set(&cfg->tls.tls_key_file, NULL);
        cfg_set(&cfg->tls.tls_p12_file, p_p12);
        cfg_set(&cfg->tls.tls_p12_password, "p12-pass");
        srv_start(&s, cfg);
        struct cli c;
        assert_true(cli_open(&c, s.port, TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL));
        X509 *peer = SSL_get1_peer_certificate(c.ssl);
        assert_int_equal(X509_cmp(peer, srv_cert), 0);
        X509_free(peer);
        assert_int_equal(sk_X509_num(SSL_get_peer_cert_chain(c.ssl)), 2);   /* leaf + CA */
        cli_close(&c);
        srv_stop(&s);
}

static void http_start_bad_credentials_fail_config(void **state)
{
        (void)state;
        int port = free_port();
        struct kw_http *h = (struct kw_http *)(uintptr_t)0x1;

        struct kw_config *cfg = cfg_new(port, 0);
        cfg_set(&cfg->tls.tls_cert_file, NULL);
        cfg_set(&cfg->tls.tls_key_file, NULL);
        cfg_set(&cfg->tls.tls_p12_file, p_p12);
        cfg_set(&cfg->tls.tls_p12_password, "Hunter2-guess");
        assert_int_equal(kw_http_start(cfg, routes, NULL, &h).code, KW_ERR_CONFIG);
        assert_non_null(strstr(kw_err_detail(), "tls_p12_password"));
        assert_null(strstr(kw_err_detail(), "Hunter2"));
        assert_ptr_equal(h, (void *)(uintptr_t)0x1);
        cfg_free(cfg);

        cfg = cfg_new(port, 0);
        cfg_set(&cfg->tls.tls_cert_file, p_bad);
        assert_int_equal(kw_http_start(cfg, routes, NULL, &h).code, KW_ERR_CONFIG);
        assert_non_null(strstr(kw_err_detail(), "garbage.pem"));
        cfg_free(cfg);

        cfg = cfg_new(port, 0);
        cfg_set(&cfg->tls.tls_key_file, p_cli_key);   /* key of another certificate */
        assert_int_equal(kw_http_start(cfg, routes, NULL, &h).code, KW_ERR_CONFIG);
        cfg_free(cfg);

        cfg = cfg_new(port, 0);
        cfg_set(&cfg->tls.ciphersuites_tls13, "TLS_NO_SUCH_SUITE");
        assert_int_equal(kw_http_start(cfg, routes, NULL, &h).code, KW_ERR_CONFIG);
        assert_non_null(strstr(kw_err_detail(), "ciphersuites_tls13"));
        cfg_free(cfg);

        cfg = cfg_new(port, 0);
        cfg_set(&cfg->tls.tls_cert_file, NULL);
        assert_int_equal(kw_http_start(cfg, routes, NULL, &h).code, KW_ERR_CONFIG);
        cfg_free(cfg);

        cfg = cfg_new(port, 0);
        cfg_set(&cfg->http.listen, "127.0.0.1:1,2");
        assert_int_equal(kw_http_start(cfg, routes, NULL, &h).code, KW_ERR_CONFIG);
        cfg_free(cfg);
        assert_ptr_equal(h, (void *)(uintptr_t)0x1);
}

static void http_start_port_in_use_fails_io(void **state)
{
        (void)state;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
        assert_int_equal(listen(fd, 1), 0);
        socklen_t l = sizeof a;
        getsockname(fd, (struct sockaddr *)&a, &l);
        struct kw_config *cfg = cfg_new(ntohs(a.sin_port), 0);
        struct kw_http *h = NULL;
        assert_int_equal(kw_http_start(cfg, routes, NULL, &h).code, KW_ERR_IO);
        assert_null(h);
        assert_non_null(strstr(kw_err_detail(), "127.0.0.1"));
        cfg_free(cfg);
        close(fd);
}

/* ---- routing ---- */

static void http_dispatch_longest_prefix_and_listener_mask(void **state)
{
        (void)state;
        struct srv s;
        s.port = free_port();
        s.aport = free_port();
        srv_start(&s, cfg_new(s.port, s.aport));
        struct hresp r;

        one_shot(s.port, GET("/v1/keys/abc"), &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(jstr(&r, "route"), "keys");           /* longest prefix wins */
        assert_true(jnum(&r, "ctx_ok") != 0);                      /* ctx reaches the handler */
        assert_true(has_header(&r, "X-Test: yes"));
        hresp_free(&r);

        one_shot(s.port, "GET /v1/a%2Fb?x=1%202&y HTTP/1.1\r\nHost: l\r\nX-Probe: p1\r\n\r\n", &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(jstr(&r, "route"), "v1");
        assert_string_equal(jstr(&r, "path"), "/v1/a%2Fb");      /* not decoded */
        assert_string_equal(jstr(&r, "query"), "x=1%202&y");
        assert_string_equal(jstr(&r, "x"), "1 2");
        assert_string_equal(jstr(&r, "hdr"), "p1");
        assert_string_equal(jstr(&r, "method"), "GET");
        assert_int_equal((int)jnum(&r, "listener"), KW_LISTENER_MAIN);
        assert_int_equal((int)jnum(&r, "len"), 0);
        hresp_free(&r);

        /* admin route on the main listener: no route */
        one_shot(s.port, GET("/admin/keys"), &r);
        assert_int_equal(r.status, 404);
        assert_string_equal(jstr(&r, "error"), "no_route");
        assert_true(has_header(&r, "Content-Type: application/json"));
        hresp_free(&r);

        /* main route on the admin listener: no route; admin route: served */
        one_shot(s.aport, GET("/v1/x"), &r);
        assert_int_equal(r.status, 404);
        hresp_free(&r);
        one_shot(s.aport, GET("/admin/keys"), &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(jstr(&r, "route"), "admin");
        assert_int_equal((int)jnum(&r, "listener"), KW_LISTENER_ADMIN);
        hresp_free(&r);

        one_shot(s.port, GET("/nothing"), &r);
        assert_int_equal(r.status, 404);
        assert_string_equal(jstr(&r, "error"), "no_route");
        assert_non_null(jstr(&r, "message"));
        hresp_free(&r);

        /* dot segments are refused, also percent-encoded */
        one_shot(s.port, GET("/v1/../admin/keys"), &r);
        assert_int_equal(r.status, 400);
        hresp_free(&r);
        one_shot(s.port, GET("/v1/%2e%2E/admin/keys"), &r);
        assert_int_equal(r.status, 400);
        hresp_free(&r);
        one_shot(s.port, GET("/v1/..x/.y"), &r);                 /* not dot segments */
        assert_int_equal(r.status, 200);
        hresp_free(&r);

        /* handler errors */
        one_shot(s.port, GET("/broken"), &r);
        assert_int_equal(r.status, 500);
        assert_string_equal(jstr(&r, "error"), "internal");
        hresp_free(&r);
        one_shot(s.port, GET("/err"), &r);
        assert_int_equal(r.status, 403);
        assert_string_equal(jstr(&r, "error"), "forbidden");
        assert_string_equal(jstr(&r, "message"), "no \"way\"\n");
        hresp_free(&r);
        srv_stop(&s);
}

static void http_dispatch_shared_listener_serves_admin_routes(void **state)
{
        (void)state;
        struct srv s;
        s.port = free_port();
        srv_start(&s, cfg_new(s.port, 0));
        struct hresp r;
        one_shot(s.port, GET("/admin/keys"), &r);
        assert_int_equal(r.status, 200);
        assert_int_equal((int)jnum(&r, "listener"), KW_LISTENER_ADMIN);
        hresp_free(&r);
        one_shot(s.port, GET("/v1/x"), &r);
        assert_int_equal((int)jnum(&r, "listener"), KW_LISTENER_MAIN);
        hresp_free(&r);
        srv_stop(&s);

        /* admin disabled: admin routes are gone */
        s.port = free_port();
        struct kw_config *cfg = cfg_new(s.port, 0);
        cfg->admin.enable = false;
        srv_start(&s, cfg);
        one_shot(s.port, GET("/admin/keys"), &r);
        assert_int_equal(r.status, 404);
        hresp_free(&r);
        srv_stop(&s);
}

static int has_admin_headers(const struct hresp *r)
{
        return has_header(r, "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'") &&
               has_header(r, "X-Frame-Options: DENY") && has_header(r, "Referrer-Policy: no-referrer") &&
               has_header(r, "X-Content-Type-Options: nosniff");
}

/* The console's headers on every answer of a listener serving the admin
 * API (routes, 404, CivetWeb's own errors), on no answer of a main
 * listener that does not; a handler's Cache-Control used when well formed. */
static void http_admin_listener_answers_carry_console_headers(void **state)
{
        (void)state;
        struct srv s;
        s.port = free_port();
        s.aport = free_port();
        srv_start(&s, cfg_new(s.port, s.aport));
        static const char *const reqs[] = { GET("/admin/keys"), GET("/nothing"), GET("/healthz"),
                                            GET("/err"), "GET /x HTTP/9.9\r\n\r\n" };
        struct hresp r;
        for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
                one_shot(s.aport, reqs[i], &r);
                assert_true(r.status > 0);
                assert_true(has_admin_headers(&r));
                hresp_free(&r);
                one_shot(s.port, reqs[i], &r);
                assert_true(r.status > 0);
                assert_true(has_header(&r, "X-Content-Type-Options: nosniff"));
                assert_false(has_header(&r, "X-Frame-Options: DENY"));
                hresp_free(&r);
        }
        one_shot(s.aport, GET("/admin/keys"), &r);
        assert_true(has_header(&r, "Cache-Control: no-store"));
        hresp_free(&r);
        one_shot(s.aport, GET("/cache/ok"), &r);
        assert_int_equal(r.status, 200);
        assert_true(has_header(&r, "Cache-Control: no-cache"));
        hresp_free(&r);
        one_shot(s.aport, GET("/cache/bad"), &r);              /* header injection: refused */
        assert_int_equal(r.status, 500);
        assert_true(has_header(&r, "Cache-Control: no-store"));
        assert_false(has_header(&r, "X-Evil: 1"));
        hresp_free(&r);
        srv_stop(&s);

        /* shared listener: it is the admin listener, every answer has them */
        s.port = free_port();
        srv_start(&s, cfg_new(s.port, 0));
        for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
                one_shot(s.port, reqs[i], &r);
                assert_true(has_admin_headers(&r));
                hresp_free(&r);
        }
        srv_stop(&s);
}

static void http_request_malformed_gets_json_error(void **state)
{
        (void)state;
        struct srv s;
        s.port = free_port();
        srv_start(&s, cfg_new(s.port, 0));
        struct cli c;
        struct hresp r;
        assert_true(cli_open(&c, s.port, TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL));
        cli_send(&c, "GET /v1/x HTTP/9.9\r\n\r\n", 22);
        assert_true(cli_read(&c, &r));
        assert_true(r.status >= 400 && r.status < 600);
        assert_non_null(jstr(&r, "error"));
        assert_true(has_header(&r, "Connection: close"));
        assert_true(cli_at_eof(&c));
        hresp_free(&r);
        cli_close(&c);
        srv_stop(&s);
}

/* ---- bodies ---- */

static void http_body_limits_enforced(void **state)
{
        (void)state;
        struct srv s;
        s.port = free_port();
        srv_start(&s, cfg_new(s.port, 0));     /* max_body_bytes 1024 */
        struct cli c;
        struct hresp r;
        char req[4096];
        char body[1100];
        memset(body, 'a', sizeof body);

        /* exactly the cap */
        int n = snprintf(req, sizeof req, "POST /v1/b HTTP/1.1\r\nHost: l\r\nContent-Length: 1024\r\n\r\n%.1024s", body);
        one_shot(s.port, req, &r);
        assert_int_equal(r.status, 200);
        assert_int_equal((int)jnum(&r, "len"), 1024);
        assert_true(jnum(&r, "nul") != 0);
        hresp_free(&r);
        (void)n;

        /* over the cap: 413 before reading, connection closed */
        assert_true(cli_open(&c, s.port, TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL));
        n = snprintf(req, sizeof req, "POST /v1/b HTTP/1.1\r\nHost: l\r\nContent-Length: 1000000\r\n\r\n");
        cli_send(&c, req, (size_t)n);
        assert_true(cli_read(&c, &r));
        assert_int_equal(r.status, 413);
        assert_string_equal(jstr(&r, "error"), "too_large");
        assert_true(has_header(&r, "Connection: close"));
        assert_true(cli_at_eof(&c));
        hresp_free(&r);
        cli_close(&c);

        /* over the cap on a route with its own error shape */
        assert_true(cli_open(&c, s.port, TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL));
        n = snprintf(req, sizeof req, "POST /proto/x HTTP/1.1\r\nHost: l\r\nContent-Length: 1000000\r\n\r\n");
        cli_send(&c, req, (size_t)n);
        assert_true(cli_read(&c, &r));
        assert_int_equal(r.status, 501);
        assert_string_equal(jstr(&r, "proto"), "too big");
        assert_true(cli_at_eof(&c));
        hresp_free(&r);
        cli_close(&c);

        /* chunked, over the cap */
        assert_true(cli_open(&c, s.port, TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL));
        n = snprintf(req, sizeof req, "POST /v1/b HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\n\r\n"
                                      "400\r\n%.1024s\r\n1\r\nb\r\n0\r\n\r\n", body);
        cli_send(&c, req, (size_t)n);
        assert_true(cli_read(&c, &r));
        assert_int_equal(r.status, 413);
        assert_true(cli_at_eof(&c));
        hresp_free(&r);
        cli_close(&c);

        /* chunked within the cap */
        one_shot(s.port, "POST /v1/b HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", &r);
        assert_int_equal(r.status, 200);
        assert_int_equal((int)jnum(&r, "len"), 11);
        hresp_free(&r);

        /* both framings: refused */
        one_shot(s.port, "POST /v1/b HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
                         "5\r\nhello\r\n0\r\n\r\n", &r);
        assert_int_equal(r.status, 400);
        hresp_free(&r);
        one_shot(s.port, "POST /v1/b HTTP/1.1\r\nHost: l\r\nContent-Length: 5x\r\n\r\nhello", &r);
        assert_int_equal(r.status, 400);
        hresp_free(&r);

        /* shorter than Content-Length (the client stalls past
         * request_timeout_ms): 400, then the connection is closed */
        srv_stop(&s);
        s.port = free_port();
        struct kw_config *cfg = cfg_new(s.port, 0);
        cfg->http.request_timeout_ms = 300;
        srv_start(&s, cfg);
        assert_true(cli_open(&c, s.port, TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL));
        n = snprintf(req, sizeof req, "POST /v1/b HTTP/1.1\r\nHost: l\r\nContent-Length: 10\r\n\r\nhello");
        cli_send(&c, req, (size_t)n);
        assert_true(cli_read(&c, &r));
        assert_int_equal(r.status, 400);
        assert_string_equal(jstr(&r, "error"), "invalid_input");
        assert_true(has_header(&r, "Connection: close"));
        assert_true(cli_at_eof(&c));
        hresp_free(&r);
        cli_close(&c);

        /* Expect: 100-continue gets the interim response, then the answer */
        assert_true(cli_open(&c, s.port, TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL));
        n = snprintf(req, sizeof req, "POST /v1/b HTTP/1.1\r\nHost: l\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
        cli_send(&c, req, (size_t)n);
        assert_true(cli_read(&c, &r));
        assert_int_equal(r.status, 100);
        hresp_free(&r);
        cli_send(&c, "hello", 5);
        assert_true(cli_read(&c, &r));
        assert_int_equal(r.status, 200);
        assert_int_equal((int)jnum(&r, "len"), 5);
        hresp_free(&r);
        cli_close(&c);
        srv_stop(&s);
}

static void http_response_keep_alive_two_requests_one_connection(void **state)
{
        (void)state;
        struct srv s;
        s.port = free_port();
        srv_start(&s, cfg_new(s.port, 0));
        struct cli c;
        struct hresp r;
        assert_true(cli_open(&c, s.port, TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL));
        /* both requests in one write: framing must be exact on both sides */
        const char *two = "POST /v1/one HTTP/1.1\r\nHost: l\r\nContent-Length: 3\r\n\r\nabc"
                          "GET /v1/two HTTP/1.1\r\nHost: l\r\n\r\n";
        cli_send(&c, two, strlen(two));
        assert_true(cli_read(&c, &r));
        assert_int_equal(r.status, 200);
        assert_string_equal(jstr(&r, "path"), "/v1/one");
        assert_int_equal((int)jnum(&r, "len"), 3);
        assert_true(has_header(&r, "Connection: keep-alive"));
        assert_true(has_header(&r, "Cache-Control: no-store"));
        assert_true(has_header(&r, "X-Content-Type-Options: nosniff"));
        assert_true(has_header(&r, "Content-Type: application/json"));
        char cl[64];
        snprintf(cl, sizeof cl, "Content-Length: %zu", r.body_len);
        assert_true(has_header(&r, cl));
        hresp_free(&r);
        assert_true(cli_read(&c, &r));
        assert_int_equal(r.status, 200);
        assert_string_equal(jstr(&r, "path"), "/v1/two");
        hresp_free(&r);
        /* an error without a body keeps the connection too */
        cli_send(&c, GET("/none"), strlen(GET("/none")));
        assert_true(cli_read(&c, &r));
        assert_int_equal(r.status, 404);
        assert_true(has_header(&r, "Connection: keep-alive"));
        hresp_free(&r);
        /* a 404 with an unread body closes (CivetWeb would drain it) */
        const char *post404 = "POST /none HTTP/1.1\r\nHost: l\r\nContent-Length: 3\r\n\r\nabc";
        cli_send(&c, post404, strlen(post404));
        assert_true(cli_read(&c, &r));
        assert_int_equal(r.status, 404);
        assert_true(has_header(&r, "Connection: close"));
        assert_true(cli_at_eof(&c));
        hresp_free(&r);
        cli_close(&c);
        assert_true(cli_open(&c, s.port, TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL));
        /* Connection: close from the client is honoured */
        const char *three = "GET /v1/three HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n";
        cli_send(&c, three, strlen(three));
        assert_true(cli_read(&c, &r));
        assert_int_equal(r.status, 200);
        assert_true(has_header(&r, "Connection: close"));
        assert_true(cli_at_eof(&c));
        hresp_free(&r);
        cli_close(&c);
        srv_stop(&s);
}

/* A head CivetWeb misreads is refused once and the connection closed:
 * first on a connection, and after a good request on a kept-alive one. */
static void http_head_misread_refused_and_closed(void **state)
{
        (void)state;
        struct srv s;
        s.port = free_port();
        srv_start(&s, cfg_new(s.port, 0));
        char big[2048];
        int n = snprintf(big, sizeof big, "POST /v1/h HTTP/1.1\r\nHost: l\r\n");
        for (int i = 0; i < 63; i++)
                n += snprintf(big + n, sizeof big - (size_t)n, "X-%d: v\r\n", i);
        n += snprintf(big + n, sizeof big - (size_t)n, "Content-Length: %zu\r\n\r\n%s",
                      strlen(GET("/v1/smuggled")), GET("/v1/smuggled"));
        const struct {
                const char *raw;
                int status;
        } cases[] = {
                { big, 431 },
                { "POST /v1/h HTTP/1.1\r\nHost: l\r\nContent-Length : 3\r\n\r\nabc", 400 },
                { "\r\n\r\nGET /v1/h HTTP/1.1\r\nHost: l\r\n\r\n", 400 },
        };
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
                for (int second = 0; second <= 1; second++) {
                        struct cli c;
                        struct hresp r;
                        assert_true(cli_open(&c, s.port, TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL));
                        if (second) {
                                cli_send(&c, GET("/v1/first"), strlen(GET("/v1/first")));
                                assert_true(cli_read(&c, &r));
                                assert_int_equal(r.status, 200);
                                hresp_free(&r);
                        }
                        cli_send(&c, cases[k].raw, strlen(cases[k].raw));
                        assert_true(cli_read(&c, &r));
                        assert_int_equal(r.status, cases[k].status);
                        assert_string_equal(jstr(&r, "error"), cases[k].status == 431 ? "too_large" : "invalid_input");
                        assert_true(has_header(&r, "Connection: close"));
                        assert_true(cli_at_eof(&c));     /* the smuggled request is never answered */
                        hresp_free(&r);
                        cli_close(&c);
                }
        }
        srv_stop(&s);
}

/* ---- client certificates ---- */

static void cert_case(int port, const char *crt, const char *key, int present, int verified, const char *cn)
{
        struct cli c;
        struct hresp r;
        assert_true(cli_open(&c, port, TLS1_2_VERSION, TLS1_3_VERSION, crt, key));
        cli_send(&c, GET("/v1/who"), strlen(GET("/v1/who")));
        assert_true(cli_read(&c, &r));
        assert_int_equal(r.status, 200);
        assert_int_equal((int)jnum(&r, "present"), present);
        assert_int_equal((int)jnum(&r, "verified"), verified);
        assert_string_equal(jstr(&r, "cn"), cn);
        hresp_free(&r);
        /* a second request on the same connection sees the same identity */
        cli_send(&c, GET("/v1/who"), strlen(GET("/v1/who")));
        assert_true(cli_read(&c, &r));
        assert_int_equal((int)jnum(&r, "verified"), verified);
        hresp_free(&r);
        cli_close(&c);
}

static void http_client_cert_reported(void **state)
{
        (void)state;
        struct srv s;
        s.port = free_port();
        struct kw_config *cfg = cfg_new(s.port, 0);
        cfg_set(&cfg->tls.clients_ca_cert_file, p_ca_crt);
        srv_start(&s, cfg);
        cert_case(s.port, NULL, NULL, 0, 0, "");
        cert_case(s.port, p_cli_crt, p_cli_key, 1, 1, "last-cn");   /* the last CN entry */
        cert_case(s.port, p_rogue_crt, p_cli_key, 1, 0, "");        /* other CA */
        cert_case(s.port, p_old_crt, p_cli_key, 1, 0, "");          /* expired */
        /* TLS 1.2 as well */
        struct cli c;
        struct hresp r;
        assert_true(cli_open(&c, s.port, TLS1_2_VERSION, TLS1_2_VERSION, p_cli_crt, p_cli_key));
        cli_send(&c, GET("/v1/who"), strlen(GET("/v1/who")));
        assert_true(cli_read(&c, &r));
        assert_int_equal((int)jnum(&r, "verified"), 1);
        hresp_free(&r);
        cli_close(&c);
        srv_stop(&s);

        /* without clients_ca_cert_file no certificate is asked for */
        s.port = free_port();
        srv_start(&s, cfg_new(s.port, 0));
        cert_case(s.port, p_cli_crt, p_cli_key, 0, 0, "");
        srv_stop(&s);
}

/* ---- limits and metrics ---- */

static void http_connection_limit_answers_503(void **state)
{
        (void)state;
        struct srv s;
        s.port = free_port();
        struct kw_config *cfg = cfg_new(s.port, 0);
        cfg->http.max_connections = 1;
        srv_start(&s, cfg);
        struct cli a, b;
        struct hresp r;
        assert_true(cli_open(&a, s.port, TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL));
        cli_send(&a, GET("/v1/a"), strlen(GET("/v1/a")));
        assert_true(cli_read(&a, &r));
        assert_int_equal(r.status, 200);
        hresp_free(&r);

        assert_true(cli_open(&b, s.port, TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL));
        cli_send(&b, GET("/v1/b"), strlen(GET("/v1/b")));
        assert_true(cli_read(&b, &r));
        assert_int_equal(r.status, 503);
        assert_string_equal(jstr(&r, "error"), "overload");
        assert_string_equal(jstr(&r, "message"), "too many connections");
        assert_true(has_header(&r, "Retry-After: 1"));
        assert_true(has_header(&r, "Connection: close"));
        assert_true(cli_at_eof(&b));
        hresp_free(&r);
        cli_close(&b);

        struct kw_buf m;
        kw_buf_init(&m, 1 << 20);
        assert_int_equal(kw_http_metrics(s.h, "kw-a", &m).code, 0);
        const char *txt;
        assert_int_equal(kw_buf_cstr(&m, &txt).code, 0);
        assert_non_null(strstr(txt, "\nkeyward_http_connections_refused_total{node=\"kw-a\"} 1\n"));
        assert_non_null(strstr(txt, "\nkeyward_http_connections_open{node=\"kw-a\"} 1\n"));
        kw_buf_free(&m);
        /* the liveness probe is answered over the limit (a reserve thread) */
        assert_true(cli_open(&b, s.port, TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL));
        cli_send(&b, GET("/healthz"), strlen(GET("/healthz")));
        assert_true(cli_read(&b, &r));
        assert_int_equal(r.status, 200);
        hresp_free(&r);
        cli_close(&b);

        /* once the first connection is gone, a new one is served */
        cli_close(&a);
        int status = 0;
        for (int i = 0; i < 50 && status != 200; i++) {
                usleep(100 * 1000);
                one_shot(s.port, GET("/v1/c"), &r);
                status = r.status;
                hresp_free(&r);
        }
        assert_int_equal(status, 200);
        srv_stop(&s);
}

static void http_metrics_counts_requests(void **state)
{
        (void)state;
        struct srv s;
        s.port = free_port();
        srv_start(&s, cfg_new(s.port, 0));
        struct hresp r;
        for (int i = 0; i < 3; i++) {
                one_shot(s.port, GET("/v1/m"), &r);
                hresp_free(&r);
        }
        one_shot(s.port, GET("/v1/keys"), &r);
        hresp_free(&r);
        one_shot(s.port, GET("/nope"), &r);
        hresp_free(&r);
        one_shot(s.port, GET("/err"), &r);
        hresp_free(&r);

        /* counters are bumped just after the response is written: wait for the last */
        struct kw_buf m;
        kw_buf_init(&m, 1 << 20);
        const char *t = "";
        for (int i = 0; i < 100 && strstr(t, "{node=\"kw-a\",route=\"err\",status=\"403\"} 1\n") == NULL; i++) {
                usleep(20 * 1000);
                kw_buf_reset(&m);
                assert_int_equal(kw_buf_put_str(&m, "prefix\n").code, 0);
                assert_int_equal(kw_http_metrics(s.h, "kw-a", &m).code, 0);
                assert_int_equal(kw_buf_cstr(&m, &t).code, 0);
        }
        assert_true(strncmp(t, "prefix\n# HELP", 13) == 0);
        assert_non_null(strstr(t, "# TYPE keyward_http_requests_total counter\n"));
        assert_non_null(strstr(t, "\nkeyward_http_requests_total{node=\"kw-a\",route=\"v1\",status=\"200\"} 3\n"));
        assert_non_null(strstr(t, "\nkeyward_http_requests_total{node=\"kw-a\",route=\"v1.keys\",status=\"200\"} 1\n"));
        assert_non_null(strstr(t, "\nkeyward_http_requests_total{node=\"kw-a\",route=\"none\",status=\"404\"} 1\n"));
        assert_non_null(strstr(t, "\nkeyward_http_requests_total{node=\"kw-a\",route=\"err\",status=\"403\"} 1\n"));
        assert_non_null(strstr(t, "\nkeyward_http_request_errors_total{node=\"kw-a\",route=\"err\"} 1\n"));
        assert_non_null(strstr(t, "\nkeyward_http_request_errors_total{node=\"kw-a\",route=\"v1\"} 0\n"));
        assert_non_null(strstr(t, "# TYPE keyward_http_request_duration_seconds histogram\n"));
        assert_non_null(strstr(t, "\nkeyward_http_request_duration_seconds_bucket{node=\"kw-a\",route=\"v1\",le=\"+Inf\"} 3\n"));
        assert_non_null(strstr(t, "\nkeyward_http_request_duration_seconds_count{node=\"kw-a\",route=\"v1\"} 3\n"));
        assert_non_null(strstr(t, "\nkeyward_http_request_duration_seconds_bucket{node=\"kw-a\",route=\"admin\",le=\"0.0005\"} 0\n"));
        assert_non_null(strstr(t, "\nkeyward_http_request_duration_seconds_sum{node=\"kw-a\",route=\"v1\"} "));
        assert_non_null(strstr(t, "\nkeyward_http_connections_refused_total{node=\"kw-a\"} 0\n"));
        assert_non_null(strstr(t, "# TYPE keyward_http_connections_open gauge\n"));
        assert_non_null(strstr(t, "# TYPE keyward_log_lines_dropped_total counter\n"
                                  "keyward_log_lines_dropped_total{node=\"kw-a\"} 0\n"));
        assert_non_null(strstr(t, "# TYPE keyward_log_lines_lost_total counter\n"
                                  "keyward_log_lines_lost_total{node=\"kw-a\"} 0\n"));
        kw_buf_free(&m);

        /* a node label that would need escaping (or none) is refused: nothing written */
        kw_buf_init(&m, 1 << 20);
        static const char *const bad_node[] = { "", "a\"b", "a b", "a\\b", "a\nb", "caf\xc3\xa9",
                                                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" };
        for (size_t i = 0; i < sizeof bad_node / sizeof bad_node[0]; i++) {
                assert_false(kw_metrics_node_ok(bad_node[i]));
                assert_int_equal(kw_http_metrics(s.h, bad_node[i], &m).code, KW_ERR_INTERNAL);
                assert_int_equal(m.len, 0);
        }
        assert_int_equal(kw_http_metrics(s.h, NULL, &m).code, KW_ERR_INTERNAL);
        assert_true(kw_metrics_node_ok("kw-1.example_2"));
        kw_buf_free(&m);

        /* all or nothing on a full buffer */
        kw_buf_init(&m, 64);
        assert_int_equal(kw_buf_put_str(&m, "keep").code, 0);
        assert_int_equal(kw_http_metrics(s.h, "kw-a", &m).code, KW_ERR_TOO_LARGE);
        assert_int_equal(m.len, 4);
        kw_buf_free(&m);
        srv_stop(&s);
}

static void http_log_line_has_fields_and_no_secrets(void **state)
{
        (void)state;
        struct srv s;
        s.port = free_port();
        struct kw_config *cfg = cfg_new(s.port, 0);
        cfg->log.requests = true;
        srv_start(&s, cfg);
        char logpath[128];
        snprintf(logpath, sizeof logpath, "%s/log.txt", tdir);
        fflush(stderr);
        int saved = dup(2);
        int lf = open(logpath, O_CREAT | O_TRUNC | O_RDWR, 0600);
        assert_true(saved >= 0 && lf >= 0);
        dup2(lf, 2);
        struct hresp r;
        one_shot(s.port, "POST /v1/keys/k?q=1 HTTP/1.1\r\nHost: l\r\nAuthorization: Bearer SECRET-TOKEN\r\n"
                         "Content-Length: 11\r\n\r\nSECRET-BODY", &r);
        assert_int_equal(r.status, 200);
        hresp_free(&r);
        char text[8192] = "";
        for (int i = 0; i < 50 && strstr(text, "\"event\":\"request\"") == NULL; i++) {
                usleep(50 * 1000);
                ssize_t n = pread(lf, text, sizeof text - 1, 0);
                text[n > 0 ? n : 0] = '\0';
        }
        dup2(saved, 2);
        close(saved);
        close(lf);
        unlink(logpath);
        srv_stop(&s);
        char *line = strstr(text, "\"event\":\"request\"");
        assert_non_null(line);
        assert_non_null(strstr(text, "\"method\":\"POST\""));
        assert_non_null(strstr(text, "\"route\":\"v1.keys.custom\""));
        assert_non_null(strstr(text, "\"status\":200"));
        assert_non_null(strstr(text, "\"latency_us\":"));
        assert_non_null(strstr(text, "\"remote\":\"127.0.0.1\""));
        assert_non_null(strstr(text, "\"listener\":\"main\""));
        assert_non_null(strstr(text, "\"principal\":\"token:ab12\""));
        assert_non_null(strstr(text, "\"error\":\"\""));
        assert_non_null(strstr(text, "\"kmsRequestId\":\"req-42\"}"));
        assert_null(strstr(text, "SECRET"));
        /* the line is one JSON object */
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        char *start = line;
        while (start > text && start[-1] != '\n')
                start--;
        cJSON *j = NULL;
        assert_int_equal(kw_json_parse((const uint8_t *)start, (size_t)(nl - start), 4, &j).code, 0);
        cJSON_Delete(j);
}

static void http_resp_error_builds_escaped_json(void **state)
{
        (void)state;
        struct kw_resp resp;
        memset(&resp, 0, sizeof resp);
        kw_buf_init(&resp.body, 1024);
        assert_int_equal(kw_buf_put_str(&resp.body, "old").code, 0);
        kw_resp_error(&resp, 409, "exists", "name \"k\\1\" taken");
        assert_int_equal(resp.status, 409);
        assert_string_equal(resp.content_type, "application/json");
        const char *s;
        assert_int_equal(kw_buf_cstr(&resp.body, &s).code, 0);
        assert_string_equal(s, "{\"error\":\"exists\",\"message\":\"name \\\"k\\\\1\\\" taken\"}");
        kw_buf_free(&resp.body);
        kw_http_stop(NULL);   /* NULL-safe */
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(http_resp_error_builds_escaped_json),
                cmocka_unit_test(http_start_tls13_client_negotiates_tls13),
                cmocka_unit_test(http_start_tls12_allowed_and_tls11_refused),
                cmocka_unit_test(http_start_pkcs12_serves_cert_and_chain),
                cmocka_unit_test(http_start_bad_credentials_fail_config),
                cmocka_unit_test(http_start_port_in_use_fails_io),
                cmocka_unit_test(http_dispatch_longest_prefix_and_listener_mask),
                cmocka_unit_test(http_dispatch_shared_listener_serves_admin_routes),
                cmocka_unit_test(http_admin_listener_answers_carry_console_headers),
                cmocka_unit_test(http_request_malformed_gets_json_error),
                cmocka_unit_test(http_body_limits_enforced),
                cmocka_unit_test(http_response_keep_alive_two_requests_one_connection),
                cmocka_unit_test(http_head_misread_refused_and_closed),
                cmocka_unit_test(http_client_cert_reported),
                cmocka_unit_test(http_connection_limit_answers_503),
                cmocka_unit_test(http_metrics_counts_requests),
                cmocka_unit_test(http_log_line_has_fields_and_no_secrets),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
