/*
 * http.c - the front's HTTP(S) server on CivetWeb 1.15 + OpenSSL 3.
 *
 * How CivetWeb 1.15 is used (read from its source, src/civetweb.c):
 *
 * - TLS set-up.  A listening port with an "s" suffix makes init_ssl_ctx()
 *   require either the ssl_certificate option or an init_ssl callback.  We
 *   use the init_ssl callback: CivetWeb creates the SSL_CTX, sets its own
 *   options (SSL_OP_ALL, no SSLv2/3/TLS1.0/1.1, no compression, no
 *   renegotiation, server preference), then calls us; we load the
 *   credentials and the policy and return 1, so CivetWeb loads no file and
 *   touches nothing more (no ssl_certificate option, no external_ssl_ctx).
 *   The callback runs once, inside mg_start2(), in the calling thread.
 *
 * - The SSL* of a connection.  1.15 has no public accessor (no mg_get_ssl;
 *   request_info.client_cert only carries strings and the X509, not the
 *   verification result).  CivetWeb does SSL_accept() and then calls the
 *   init_connection callback in the same worker thread, and it stores the
 *   mg_connection as the SSL's app data (SSL_set_app_data) before the
 *   handshake.  So a ClientHello callback records the SSL* in a thread-local,
 *   init_connection takes it when SSL_get_app_data(ssl) == conn and keeps it
 *   as the connection's user data; the request handler then reads
 *   SSL_get_verify_result() and SSL_get1_peer_certificate() from it.
 *
 * - Client certificates: SSL_VERIFY_PEER without FAIL_IF_NO_PEER_CERT and a
 *   verify callback that always continues, so a missing or bad certificate
 *   still reaches the route, which answers with its protocol's JSON error.
 *   OpenSSL keeps the first verification error in SSL_get_verify_result().
 *
 * - Raw path: decode_url=no keeps request_info.local_uri_raw percent-encoded
 *   (SigV4 signs the path as sent).  CORS pre-flight answers are disabled
 *   (empty access_control_allow_*), so every request reaches our handler.
 *
 * - Closing: CivetWeb decides keep-alive from the request only.  When we
 *   must close (413, 503 overload, a body left unread), we call
 *   mg_close_connection() after the response: on a server connection it
 *   runs close_connection() (connection_close callback, TLS close_notify,
 *   socket closed); CivetWeb's own later close_connection() finds the SSL
 *   and socket already gone and does nothing more.
 *
 * - Connection count: init_connection runs only after a successful TLS
 *   handshake, connection_close also after a failed one; the count is taken
 *   when user data was set, so both sides match.
 *
 * - Threads.  A worker thread serves one connection from its TLS handshake
 *   to its close.  The main listener and the admin listener ([admin]
 *   listen) are two CivetWeb contexts ("pools"), each with its own threads.
 *   Every connection is registered in connlimit.h when SSL_accept starts
 *   (our SSL info callback, in place of CivetWeb's, which does nothing: in
 *   the worker, before the ClientHello is read), refused there over [http]
 *   max_connections_per_client, marked busy while on_request runs, and
 *   unregistered in connection_close, before CivetWeb closes the socket; a
 *   watchdog thread shuts idle ones down when a pool runs short.
 *
 * - The request buffer (reqbuf.h).  Each worker reads requests into its own
 *   buffer, learnt per thread; every head is checked against the bytes
 *   CivetWeb parsed (reqhead.h: header lines it dropped or misread give
 *   431/400 and the end of the connection).  After each answer the head
 *   and the body bytes that came with it are wiped there (one pass over
 *   those bytes, not the buffer), and the whole buffer when the connection
 *   closes.  OpenSSL wipes its decrypted records (SSL_OP_CLEANSE_PLAINTEXT);
 *   our own buffers are wiped on free (kw_buf).
 *
 * Every response (and the interim "100 Continue") goes through conn_write(),
 * the only mg_write call of this file: status line, headers and body in one
 * buffer, one write.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <civetweb.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pkcs12.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "../common/log.h"
#include "../common/secret.h"
#include "../config.h"
#include "connlimit.h"
#include "history.h"
#include "http.h"
#include "../common/json_io.h"
#include "reqbuf.h"

#define RESP_BODY_MAX (1u << 20)
#define RESP_HEAD_MAX 2048
#define THREAD_RESERVE 8
#define ADMIN_CONNECTIONS 16         /* the admin listener's own pool ([admin] listen) */
#define WATCHDOG_PERIOD_MS 100
#define STATUS_MIN 100
#define STATUS_SLOTS 500             /* 100..599 */
#define N_BUCKETS 10                 /* finite buckets; +Inf is the total */
#define LOG_LINE_MAX 4096
#define DEFAULT_TLS12_CIPHERS                                                     \
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"              \
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"              \
        "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

static const uint64_t bucket_us[N_BUCKETS] = { 500, 1000, 2500, 5000, 10000,
                                               25000, 50000, 100000, 250000, 1000000 };
static const char *const bucket_le[N_BUCKETS] = { "0.0005", "0.001", "0.0025", "0.005", "0.01",
                                                  "0.025", "0.05", "0.1", "0.25", "1" };

/* Metrics of one route label; lock-free counters. */
struct route_slot {
        const char *name;
        int hist_class;                              /* kw_history_class(name) */
        _Atomic uint64_t by_status[STATUS_SLOTS];
        _Atomic uint64_t errors;
        _Atomic uint64_t bucket[N_BUCKETS + 1];      /* per bucket, not cumulative */
        _Atomic uint64_t sum_us;
};

/* One CivetWeb context: its listener, its worker threads. */
enum { POOL_MAIN = 0, POOL_ADMIN = 1 };
struct pool {
        struct mg_context *mg;
        SSL_CTX *ssl_ctx;                       /* set by on_init_ssl, before any connection */
        int port;
        int threads;
        int64_t max_conns;                      /* more: 503 overload */
        _Atomic int64_t conns_open;             /* handshake done, not closed */
};

struct kw_http {
        struct pool pool[KW_CONNLIMIT_POOLS];
        int n_pools;
        int starting_pool;                      /* the pool mg_start2 is starting */
        struct kw_connlimit *cl;                /* per-client cap, idle watchdog */
        int lib_init;                           /* mg_init_library called */
        const struct kw_config *start_cfg;      /* valid during kw_http_start only */
        const struct kw_route *routes;
        size_t n_routes;
        size_t *route_slot;                     /* routes[i] -> slots[route_slot[i]] */
        struct route_slot *slots;               /* slots[0] is "none" */
        size_t n_slots;
        struct kw_history *history;             /* per-minute, by route class */
        void *ctx;
        int admin_separate;
        unsigned main_mask;
        int64_t request_timeout_ms;
        size_t max_body;
        int log_requests;
        int verify_clients;
        _Atomic uint64_t conns_refused;
        _Atomic int stopping;                   /* kw_http_stop has begun */
        char conn_marker;                       /* user data of a connection without SSL* */
        char tls_error[256];
        unsigned char tls_spki_sha256[32];      /* of the loaded certificate (attestation) */
        int tls_spki_set;
};

/* ---- small helpers ---- */

static uint64_t elapsed_us(const struct timespec *t0)
{
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        int64_t us = (int64_t)(t1.tv_sec - t0->tv_sec) * 1000000 + (t1.tv_nsec - t0->tv_nsec) / 1000;
        return us < 0 ? 0 : (uint64_t)us;
}

static struct kw_http *conn_http(const struct mg_connection *conn)
{
        return mg_get_user_data(mg_get_context(conn));
}

static void tls_fail(struct kw_http *h, const char *what, const char *file)
{
        unsigned long e = ERR_peek_last_error();
        const char *why = e ? ERR_reason_error_string(e) : NULL;
        snprintf(h->tls_error, sizeof h->tls_error, "%s%s%s%s%s", what, file ? " " : "",
                 file ? file : "", why ? ": " : "", why ? why : "");
        ERR_clear_error();
}

/* ---- TLS ---- */

static __thread SSL *tl_hello_ssl;      /* SSL* of this worker's latest handshake */
static __thread int tl_slot = -1;       /* this worker's connection in h->cl, -1: none */
static __thread int tl_pool;            /* and its pool (POOL_MAIN, POOL_ADMIN) */
static __thread const SSL *tl_slot_ssl; /* the SSL* it was registered for */

/* The main pool's SSL_CTX is set while its context starts, before any of
 * the admin pool's threads exist; the admin pool's is set while the main
 * pool already serves, so it is not the one compared. */
static int pool_of(const struct kw_http *h, const SSL_CTX *ctx)
{
        return h->n_pools > 1 && ctx != h->pool[POOL_MAIN].ssl_ctx ? POOL_ADMIN : POOL_MAIN;
}

/* The earliest moment CivetWeb lets us see a connection: SSL_accept()
 * starting, in the worker thread, before the ClientHello is read (CivetWeb
 * set the SSL's app data to the connection before).  It is registered
 * (connlimit.h), or - its client address having [http]
 * max_connections_per_client connections already - refused: the socket is
 * shut down, the handshake fails at once and the worker is free again. */
static void on_tls_info(const SSL *ssl, int where, int ret)
{
        (void)ret;
        if (!(where & SSL_CB_HANDSHAKE_START) || ssl == tl_slot_ssl)
                return;
        const struct mg_connection *conn = SSL_get_app_data(ssl);
        if (conn == NULL)
                return;
        struct kw_http *h = conn_http(conn);
        kw_connlimit_close(h->cl, tl_slot);     /* one per worker: never still set */
        tl_slot = -1;
        tl_slot_ssl = ssl;
        int fd = SSL_get_fd(ssl), slot;
        kw_result r = kw_connlimit_open(h->cl, pool_of(h, SSL_get_SSL_CTX(ssl)), fd, &slot);
        if (r.code == 0)
                tl_slot = slot;
        else if (r.code == KW_ERR_OVERLOAD && fd >= 0)
                (void)shutdown(fd, SHUT_RDWR);
        /* other failures (no peer address): served, unregistered */
}

static int on_client_hello(SSL *ssl, int *alert, void *arg)
{
        (void)alert;
        (void)arg;
        tl_hello_ssl = ssl;
        return SSL_CLIENT_HELLO_SUCCESS;
}

/* Continue the handshake whatever the outcome: the route decides. */
static int on_verify(int preverify_ok, X509_STORE_CTX *x)
{
        (void)preverify_ok;
        (void)x;
        return 1;
}

/* ALPN: http/1.1 when offered, otherwise no ALPN at all (never h2). */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned int inlen, void *arg)
{
        (void)ssl;
        (void)arg;
        struct kw_reader r = kw_reader_init(in, inlen);
        for (;;) {
                uint8_t n;
                const uint8_t *p;
                if (kw_read_u8(&r, &n).code != 0 || kw_read_bytes(&r, n, &p).code != 0)
                        return SSL_TLSEXT_ERR_NOACK;
                if (n == 8 && memcmp(p, "http/1.1", 8) == 0) {
                        *out = p;
                        *outlen = n;
                        return SSL_TLSEXT_ERR_OK;
                }
        }
}

/* Never prompt on a terminal for a PEM pass phrase. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
        (void)buf;
        (void)size;
        (void)rwflag;
        (void)u;
        return 0;
}

static int tls_load_pem(struct kw_http *h, SSL_CTX *ctx, const char *cert, const char *key)
{
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
                tls_fail(h, "cannot load [tls] tls_cert_file", cert);
                return 0;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
                tls_fail(h, "cannot load [tls] tls_key_file", key);
                return 0;
        }
        return 1;
}

static int tls_load_p12(struct kw_http *h, SSL_CTX *ctx, const char *path, const char *password)
{
        FILE *f = fopen(path, "rb");
        if (f == NULL) {
                snprintf(h->tls_error, sizeof h->tls_error, "cannot open [tls] tls_p12_file %s", path);
                return 0;
        }
        PKCS12 *p12 = d2i_PKCS12_fp(f, NULL);
        fclose(f);
        if (p12 == NULL) {
                tls_fail(h, "[tls] tls_p12_file is not PKCS#12:", path);
                return 0;
        }
        EVP_PKEY *pkey = NULL;
        X509 *cert = NULL;
        STACK_OF(X509) *chain = NULL;
        int ok = PKCS12_parse(p12, password ? password : "", &pkey, &cert, &chain) == 1;
        PKCS12_free(p12);
        if (!ok || pkey == NULL || cert == NULL) {
                tls_fail(h, "cannot decrypt [tls] tls_p12_file (wrong tls_p12_password?)", path);
                ok = 0;
        }
        if (ok && (SSL_CTX_use_certificate(ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ctx, pkey) != 1)) {
                tls_fail(h, "cannot use the credentials of", path);
                ok = 0;
        }
        for (int i = 0; ok && chain != NULL && i < sk_X509_num(chain); i++) {
                if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(chain, i)) != 1) {
                        tls_fail(h, "cannot use the chain of", path);
                        ok = 0;
                }
        }
        EVP_PKEY_free(pkey);
        X509_free(cert);
        sk_X509_pop_free(chain, X509_free);
        return ok;
}

static int nonempty(const char *s) { return s != NULL && s[0] != '\0'; }

/* CivetWeb's own authorisation step: the routes authenticate every request. */
static int on_auth_any(struct mg_connection *conn, void *cbdata)
{
        (void)conn;
        (void)cbdata;
        return 1;
}

/* init_ssl callback: 1 = configured (CivetWeb loads nothing), -1 = failure. */
static int on_init_ssl(void *ssl_ctx, void *user_data)
{
        struct kw_http *h = user_data;
        SSL_CTX *ctx = ssl_ctx;
        const struct kw_config *cfg = h->start_cfg;

        int min = nonempty(cfg->tls.min_version) && strcmp(cfg->tls.min_version, "1.3") == 0
                          ? TLS1_3_VERSION : TLS1_2_VERSION;
        if (nonempty(cfg->tls.min_version) && strcmp(cfg->tls.min_version, "1.2") != 0 &&
            strcmp(cfg->tls.min_version, "1.3") != 0) {
                snprintf(h->tls_error, sizeof h->tls_error, "[tls] min_version must be \"1.2\" or \"1.3\"");
                return -1;
        }
        if (SSL_CTX_set_min_proto_version(ctx, min) != 1 || SSL_CTX_set_max_proto_version(ctx, 0) != 1) {
                tls_fail(h, "cannot set the TLS versions", NULL);
                return -1;
        }
        /* CLEANSE_PLAINTEXT: OpenSSL decrypts records in place in its read
         * buffer and would keep the last one (a token, key material, a
         * plaintext) there until overwritten (tests/blackbox/test_secrets.py) */
        SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                         SSL_OP_CIPHER_SERVER_PREFERENCE |
                                         SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION |
                                         SSL_OP_CLEANSE_PLAINTEXT);
        const char *c12 = nonempty(cfg->tls.ciphers_tls12) ? cfg->tls.ciphers_tls12 : DEFAULT_TLS12_CIPHERS;
        if (SSL_CTX_set_cipher_list(ctx, c12) != 1) {
                tls_fail(h, "invalid [tls] ciphers_tls12", NULL);
                return -1;
        }
        if (nonempty(cfg->tls.ciphersuites_tls13) &&
            SSL_CTX_set_ciphersuites(ctx, cfg->tls.ciphersuites_tls13) != 1) {
                tls_fail(h, "invalid [tls] ciphersuites_tls13", NULL);
                return -1;
        }

        SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
        int loaded = nonempty(cfg->tls.tls_p12_file)
                             ? tls_load_p12(h, ctx, cfg->tls.tls_p12_file, cfg->tls.tls_p12_password)
                             : tls_load_pem(h, ctx, cfg->tls.tls_cert_file, cfg->tls.tls_key_file);
        if (!loaded)
                return -1;
        if (SSL_CTX_check_private_key(ctx) != 1) {
                tls_fail(h, "the TLS private key does not match the certificate", NULL);
                return -1;
        }
        /* SHA-256 of the certificate's SubjectPublicKeyInfo, for the attestation binding */
        X509 *leaf = SSL_CTX_get0_certificate(ctx);
        unsigned char *spki = NULL;
        int spki_len = leaf != NULL ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(leaf), &spki) : -1;
        unsigned int md_len = 0;
        if (spki_len <= 0 || EVP_Digest(spki, (size_t)spki_len, h->tls_spki_sha256, &md_len,
                                        EVP_sha256(), NULL) != 1 || md_len != 32) {
                OPENSSL_free(spki);
                tls_fail(h, "cannot hash the TLS certificate's public key", NULL);
                return -1;
        }
        OPENSSL_free(spki);
        h->tls_spki_set = 1;

        static const unsigned char sid_ctx[] = "keyward-front";
        SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);

        if (nonempty(cfg->tls.clients_ca_cert_file)) {
                const char *ca = cfg->tls.clients_ca_cert_file;
                if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
                        tls_fail(h, "cannot load [tls] clients_ca_cert_file", ca);
                        return -1;
                }
                STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
                if (names == NULL) {
                        tls_fail(h, "no CA names in [tls] clients_ca_cert_file", ca);
                        return -1;
                }
                SSL_CTX_set_client_CA_list(ctx, names);   /* takes ownership */
                SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, on_verify);
                SSL_CTX_set_verify_depth(ctx, 8);
                h->verify_clients = 1;
        } else {
                SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        }
        SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
        SSL_CTX_set_client_hello_cb(ctx, on_client_hello, NULL);
        SSL_CTX_set_info_callback(ctx, on_tls_info);   /* replaces CivetWeb's, which does nothing */
        h->pool[h->starting_pool].ssl_ctx = ctx;
        ERR_clear_error();
        return 1;
}

/* ---- connections ---- */

/* Every listener is TLS, so this always follows a successful handshake on
 * this thread, which ran on_client_hello: tl_hello_ssl is that connection's
 * live SSL*.  (mg_get_request_info() is NULL here: the connection type is
 * only set after this callback.)  The app-data check is a belt and braces.
 * CivetWeb has reset its buffer's fill level and reads nothing before this
 * returns. */
static int on_init_connection(const struct mg_connection *conn, void **conn_data)
{
        struct kw_http *h = conn_http(conn);
        SSL *ssl = tl_hello_ssl;
        tl_hello_ssl = NULL;
        if (ssl != NULL && SSL_get_app_data(ssl) != (void *)conn)
                ssl = NULL;
        tl_pool = ssl != NULL ? pool_of(h, SSL_get_SSL_CTX(ssl)) : POOL_MAIN;
        atomic_fetch_add(&h->pool[tl_pool].conns_open, 1);
        *conn_data = ssl != NULL ? (void *)ssl : (void *)&h->conn_marker;
        kw_connlimit_idle(h->cl, tl_slot);      /* handshake done: waiting for a request */
        kw_reqbuf_conn_start(ssl, h->request_timeout_ms, &h->stopping);
        return 0;
}

static void on_connection_close(const struct mg_connection *conn)
{
        struct kw_http *h = conn_http(conn);
        /* before CivetWeb closes the socket (connlimit.h) */
        kw_connlimit_close(h->cl, tl_slot);
        tl_slot = -1;
        tl_slot_ssl = NULL;
        if (mg_get_user_connection_data(conn) == NULL)
                return;         /* no handshake: nothing was read into the buffer */
        atomic_fetch_sub(&h->pool[tl_pool].conns_open, 1);
        kw_reqbuf_conn_end();   /* whatever the connection left in CivetWeb's buffer */
}

static SSL *conn_ssl(struct kw_http *h, const struct mg_connection *conn)
{
        void *d = mg_get_user_connection_data(conn);
        return d == NULL || d == (void *)&h->conn_marker ? NULL : d;
}

static int on_log_message(const struct mg_connection *conn, const char *message)
{
        (void)conn;
        /* CivetWeb's own diagnostics (handshake failures...): debug only,
         * they can carry peer-controlled text (escaped by kw_log). */
        kw_log(KW_LOG_DEBUG, "http_internal", "message", message, KW_END);
        return 1;
}

/* ---- client certificate ---- */

static int cn_acceptable(const unsigned char *s, int n)
{
        if (n <= 0 || (size_t)n >= sizeof(((struct kw_req *)0)->client_cn))
                return 0;
        for (int i = 0; i < n; i++)
                if (s[i] < 0x20 || s[i] == 0x7f)
                        return 0;             /* embedded NUL, control characters */
        return kw_utf8_valid(s, (size_t)n);
}

static void fill_client_cert(struct kw_http *h, const struct mg_connection *conn, struct kw_req *req)
{
        SSL *ssl = conn_ssl(h, conn);
        if (ssl == NULL)
                return;
        X509 *peer = SSL_get1_peer_certificate(ssl);
        if (peer == NULL)
                return;
        req->client_cert_present = 1;
        if (h->verify_clients && SSL_get_verify_result(ssl) == X509_V_OK) {
                req->client_cert_verified = 1;
                X509_NAME *subj = X509_get_subject_name(peer);
                int last = -1;
                for (int i = -1; (i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0;)
                        last = i;
                if (last >= 0) {
                        ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, last));
                        unsigned char *u = NULL;
                        int n = ASN1_STRING_to_UTF8(&u, d);
                        if (cn_acceptable(u, n)) {
                                memcpy(req->client_cn, u, (size_t)n);
                                req->client_cn[n] = '\0';
                        }
                        OPENSSL_free(u);
                }
        }
        X509_free(peer);
}

/* ---- requests ---- */

const char *kw_req_header(const struct kw_req *req, const char *name)
{
        if (req == NULL || req->conn_ == NULL || name == NULL)
                return NULL;
        return mg_get_header(req->conn_, name);
}

int kw_req_header_at(const struct kw_req *req, int i, const char **ret_name, const char **ret_value)
{
        if (req == NULL || req->conn_ == NULL || i < 0)
                return -1;
        const struct mg_request_info *ri = mg_get_request_info(req->conn_);
        if (ri == NULL || i >= ri->num_headers)
                return -1;
        *ret_name = ri->http_headers[i].name;
        *ret_value = ri->http_headers[i].value;
        return 0;
}

int kw_req_query(const struct kw_req *req, const char *name, char *out, size_t outsz)
{
        if (req == NULL || req->query == NULL || name == NULL || out == NULL || outsz == 0)
                return -1;
        char *tmp = malloc(outsz);
        if (tmp == NULL)
                return -1;
        int n = mg_get_var(req->query, strlen(req->query), name, tmp, outsz);
        int found = n >= 0 && strlen(tmp) == (size_t)n;   /* "%00" would cut the value */
        if (found)
                memcpy(out, tmp, (size_t)n + 1);
        free(tmp);
        return found ? 0 : -1;
}

void kw_resp_json_pair(struct kw_resp *resp, const char *k1, const char *v1, const char *k2,
                       const char *v2, const char *fallback)
{
        kw_buf_reset(&resp->body);
        kw_result r = kw_buf_put_str(&resp->body, "{\"");
        if (r.code == 0)
                r = kw_buf_put_str(&resp->body, k1);
        if (r.code == 0)
                r = kw_buf_put_str(&resp->body, "\":\"");
        if (r.code == 0)
                r = kw_buf_put_json_escaped(&resp->body, v1, strlen(v1));
        if (r.code == 0)
                r = kw_buf_put_str(&resp->body, "\",\"");
        if (r.code == 0)
                r = kw_buf_put_str(&resp->body, k2);
        if (r.code == 0)
                r = kw_buf_put_str(&resp->body, "\":\"");
        if (r.code == 0)
                r = kw_buf_put_json_escaped(&resp->body, v2, strlen(v2));
        if (r.code == 0)
                r = kw_buf_put_str(&resp->body, "\"}");
        if (r.code != 0) {
                kw_buf_reset(&resp->body);
                kw_ignore(kw_buf_put_str(&resp->body, fallback));
        }
}

void kw_resp_error(struct kw_resp *resp, int status, const char *name, const char *msg)
{
        resp->status = status;
        resp->content_type = "application/json";
        kw_resp_json_pair(resp, "error", name, "message", msg,
                          "{\"error\":\"internal\",\"message\":\"\"}");
}

static void resp_init(struct kw_resp *resp)
{
        memset(resp, 0, sizeof *resp);
        kw_buf_init(&resp->body, RESP_BODY_MAX);
}

/* The one place that writes to a connection. */
static int conn_write(struct mg_connection *conn, const void *p, size_t n)
{
        return n <= (size_t)INT32_MAX && mg_write(conn, p, n) == (int)n;
}

/* Header lines from a handler: "Name: value\r\n"..., nothing else. */
static int headers_well_formed(const char *s)
{
        size_t n = strnlen(s, sizeof(((struct kw_resp *)0)->extra_headers));
        if (n == sizeof(((struct kw_resp *)0)->extra_headers))
                return 0;
        size_t line = 0;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c == '\r') {
                        if (i + 1 >= n || s[i + 1] != '\n' || i == line ||
                            memchr(s + line, ':', i - line) == NULL)
                                return 0;
                        line = i + 2;
                        i++;
                } else if (c == '\n' || (c < 0x20 && c != '\t') || c == 0x7f) {
                        return 0;
                }
        }
        return line == n;
}

static int token_safe(const char *s)
{
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || *s == 0x7f)
                        return 0;
        return 1;
}

/* Same rule as CivetWeb's should_keep_alive() for the request side. */
static int client_keeps_alive(const struct mg_connection *conn)
{
        const struct mg_request_info *ri = mg_get_request_info(conn);
        const char *c = mg_get_header(conn, "Connection");
        if (c != NULL)
                return strcasestr(c, "keep-alive") != NULL;
        return ri->http_version != NULL && strcmp(ri->http_version, "1.1") == 0;
}

/* Status line, headers and body in one buffer, one write.  0 when the
 * connection failed (the caller then closes it). */
static int send_response(struct mg_connection *conn, const struct kw_resp *resp, int head_only,
                         int keep_alive, int admin_headers)
{
        int st = resp->status;
        int no_body = (st >= 100 && st < 200) || st == 204 || st == 304;
        struct kw_buf out;
        kw_buf_init(&out, RESP_BODY_MAX + RESP_HEAD_MAX + sizeof resp->extra_headers);
        kw_result r = kw_buf_printf(&out, "HTTP/1.1 %d %s\r\n", st, mg_get_response_code_text(conn, st));
        if (r.code == 0 && !no_body)
                r = kw_buf_printf(&out, "Content-Type: %s\r\nContent-Length: %zu\r\n",
                                  resp->content_type ? resp->content_type : "application/json",
                                  resp->body.len);
        if (r.code == 0)
                r = kw_buf_printf(&out, "Connection: %s\r\nCache-Control: %s\r\n"
                                        "X-Content-Type-Options: nosniff\r\n%s%s\r\n",
                                  keep_alive ? "keep-alive" : "close",
                                  resp->cache_control ? resp->cache_control : "no-store",
                                  admin_headers ? KW_HTTP_ADMIN_HEADERS : "", resp->extra_headers);
        if (r.code == 0 && !no_body && !head_only && resp->body.len != 0)
                r = kw_buf_put(&out, resp->body.p, resp->body.len);
        int ok = r.code == 0 && conn_write(conn, out.p, out.len);
        kw_buf_free(&out);
        return ok;
}

static void send_continue(struct mg_connection *conn)
{
        const struct mg_request_info *ri = mg_get_request_info(conn);
        const char *e = mg_get_header(conn, "Expect");
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (e != NULL && strcasecmp(e, "100-continue") == 0 && ri->http_version != NULL &&
            strcmp(ri->http_version, "1.1") == 0)
                (void)conn_write(conn, cont, sizeof cont - 1);
}

enum body_state { BODY_NONE, BODY_READ, BODY_UNREAD };

/* Whether body bytes follow the headers (before anything is read). */
static enum body_state body_pending(const struct mg_connection *conn)
{
        const struct mg_request_info *ri = mg_get_request_info(conn);
        if (mg_get_header(conn, "Transfer-Encoding") != NULL || ri->content_length > 0)
                return BODY_UNREAD;
        return BODY_NONE;
}

/* Reads the request body (capped).  On failure fills resp and returns the
 * error code; *state tells whether bytes were left on the connection. */
static int read_body(struct kw_http *h, struct mg_connection *conn, struct kw_buf *body,
                     struct kw_resp *resp, enum body_state *state)
{
        const struct mg_request_info *ri = mg_get_request_info(conn);
        int n_cl = 0, n_te = 0;
        const char *cl = NULL, *te = NULL;
        for (int i = 0; i < ri->num_headers; i++) {
                if (strcasecmp(ri->http_headers[i].name, "Content-Length") == 0) {
                        n_cl++;
                        cl = ri->http_headers[i].value;
                } else if (strcasecmp(ri->http_headers[i].name, "Transfer-Encoding") == 0) {
                        n_te++;
                        te = ri->http_headers[i].value;
                }
        }
        if (n_cl > 1 || n_te > 1 || (te != NULL && cl != NULL)) {
                kw_resp_error(resp, 400, "invalid_input", "conflicting body length headers");
                *state = BODY_UNREAD;
                return KW_ERR_INPUT;
        }
        /* CivetWeb frames by the first Transfer-Encoding line and takes
         * "identity" as none; only "chunked" is one reading for everyone */
        if (te != NULL && strcasecmp(te, "chunked") != 0) {
                kw_resp_error(resp, 400, "invalid_input", "Transfer-Encoding other than chunked");
                *state = BODY_UNREAD;
                return KW_ERR_INPUT;
        }
        int chunked = te != NULL;
        if (cl != NULL) {
                size_t digits = strspn(cl, "0123456789");
                if (digits == 0 || digits > 18 || cl[digits] != '\0' || ri->content_length < 0) {
                        kw_resp_error(resp, 400, "invalid_input", "invalid Content-Length");
                        *state = BODY_UNREAD;
                        return KW_ERR_INPUT;
                }
                if ((uint64_t)ri->content_length > h->max_body) {
                        kw_resp_error(resp, 413, "too_large", "request body too large");
                        return KW_ERR_TOO_LARGE;
                }
                size_t want = (size_t)ri->content_length;
                if (want == 0)
                        return 0;
                if (kw_buf_reserve(body, want).code != 0) {
                        kw_resp_error(resp, 500, "nomem", "out of memory");
                        return KW_ERR_NOMEM;
                }
                send_continue(conn);
                while (body->len < want) {
                        int n = mg_read(conn, body->p + body->len, want - body->len);
                        if (n <= 0)
                                break;
                        body->len += (size_t)n;
                }
                if (body->len < want) {
                        kw_resp_error(resp, 400, "invalid_input", "request body shorter than Content-Length");
                        return KW_ERR_TRUNCATED;
                }
                *state = BODY_READ;
                return 0;
        }
        if (!chunked)
                return 0;
        size_t cap = h->max_body + 1;     /* one byte more tells "too large" */
        if (kw_buf_reserve(body, cap).code != 0) {
                kw_resp_error(resp, 500, "nomem", "out of memory");
                return KW_ERR_NOMEM;
        }
        send_continue(conn);
        for (;;) {
                int n = mg_read(conn, body->p + body->len, cap - body->len);
                if (n < 0) {
                        kw_resp_error(resp, 400, "invalid_input", "malformed chunked body");
                        return KW_ERR_INPUT;
                }
                if (n == 0)
                        break;
                body->len += (size_t)n;
                if (body->len > h->max_body) {
                        kw_resp_error(resp, 413, "too_large", "request body too large");
                        return KW_ERR_TOO_LARGE;
                }
        }
        *state = BODY_READ;
        return 0;
}

/* Path as received: "/..." with no "." or ".." segment (also as %2e). */
static int path_acceptable(const char *p)
{
        if (p == NULL || p[0] != '/')
                return 0;
        while (*p == '/') {
                p++;
                size_t dots = 0, len = 0;
                while (p[len] != '\0' && p[len] != '/') {
                        if (p[len] == '.') {
                                dots++;
                                len++;
                        } else if (p[len] == '%' && p[len + 1] == '2' && (p[len + 2] == 'e' || p[len + 2] == 'E')) {
                                dots++;
                                len += 3;
                        } else {
                                dots = SIZE_MAX / 2;
                                len++;
                        }
                }
                if (len > 0 && (dots == 1 || dots == 2))
                        return 0;
                p += len;
        }
        return *p == '\0';
}

static const struct kw_route *route_find(const struct kw_http *h, const char *path, unsigned mask)
{
        const struct kw_route *best = NULL;
        size_t best_len = 0;
        for (size_t i = 0; i < h->n_routes; i++) {
                const struct kw_route *r = &h->routes[i];
                size_t n = strlen(r->prefix);
                if ((r->listeners & mask) == 0 || strncmp(path, r->prefix, n) != 0)
                        continue;
                if (best == NULL || n > best_len) {
                        best = r;
                        best_len = n;
                }
        }
        return best;
}

static void metrics_record(struct kw_http *h, size_t slot, int status, uint64_t us)
{
        struct route_slot *s = &h->slots[slot];
        if (status >= STATUS_MIN && status < STATUS_MIN + STATUS_SLOTS)
                atomic_fetch_add_explicit(&s->by_status[status - STATUS_MIN], 1, memory_order_relaxed);
        if (status >= 400)
                atomic_fetch_add_explicit(&s->errors, 1, memory_order_relaxed);
        size_t b = 0;
        while (b < N_BUCKETS && us > bucket_us[b])
                b++;
        atomic_fetch_add_explicit(&s->bucket[b], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->sum_us, us, memory_order_relaxed);
}

static kw_result put_json_field(struct kw_buf *b, const char *key, const char *val, size_t cap)
{
        KW_TRY(kw_buf_put(b, ",\"", 2));      /* no printf: this runs 6 times a request */
        KW_TRY(kw_buf_put_str(b, key));
        KW_TRY(kw_buf_put(b, "\":\"", 3));
        KW_TRY(kw_buf_put_json_escaped(b, val ? val : "", val ? strnlen(val, cap) : 0));
        return kw_buf_put(b, "\"", 1);
}

static kw_result log_fields(struct kw_buf *b, const struct kw_req *req, const char *route, int status,
                            uint64_t us, const char *remote, const char *error)
{
        KW_TRY(kw_buf_put_str(b, "\"event\":\"request\""));
        KW_TRY(put_json_field(b, "method", req->method, 16));
        KW_TRY(put_json_field(b, "route", route, sizeof req->log_route));
        KW_TRY(kw_buf_printf(b, ",\"status\":%d,\"latency_us\":%llu", status, (unsigned long long)us));
        KW_TRY(put_json_field(b, "remote", remote, 48));
        KW_TRY(put_json_field(b, "listener", req->listener == KW_LISTENER_ADMIN ? "admin" : "main", 8));
        KW_TRY(put_json_field(b, "principal", req->log_principal, sizeof req->log_principal));
        KW_TRY(put_json_field(b, "error", error, sizeof req->log_error));
        size_t ids = strnlen(req->log_ids, sizeof req->log_ids);
        if (ids != 0 && ids < sizeof req->log_ids) {
                KW_TRY(kw_buf_put(b, ",", 1));
                KW_TRY(kw_buf_put(b, req->log_ids, ids));
        }
        return KW_OK;
}

static void log_request(struct kw_http *h, const struct kw_req *req, const char *route, int status,
                        uint64_t us, const char *remote, const char *error)
{
        if (!h->log_requests)
                return;
        struct kw_buf b;
        kw_buf_init(&b, LOG_LINE_MAX);
        const char *line;
        if (kw_buf_reserve(&b, 511).code == 0 &&          /* one allocation for most lines */
            log_fields(&b, req, route, status, us, remote, error).code == 0 &&
            kw_buf_cstr(&b, &line).code == 0)
                kw_log_raw(KW_LOG_INFO, line);
        kw_buf_free(&b);
}

/* After a 413 the client is usually still sending its body; closing at once
 * would reset the connection and it would never read our answer (RFC 9112
 * section 9.6).  Read and discard what follows, bounded in bytes and time,
 * before the close. */
#define LINGER_MAX_BYTES (4u << 20)
#define LINGER_MAX_MS 2000
static void linger_drain(struct mg_connection *conn)
{
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        char sink[16384];
        size_t total = 0;
        while (total < LINGER_MAX_BYTES && elapsed_us(&t0) < LINGER_MAX_MS * 1000ull) {
                int n = mg_read(conn, sink, sizeof sink);
                if (n <= 0)
                        break;
                total += (size_t)n;
        }
}

/* Whether a pool's listener serves the admin API (and the console): the
 * admin pool, or the main one when the admin API shares it.  Its every
 * answer, errors included, carries KW_HTTP_ADMIN_HEADERS. */
static int serves_admin(const struct kw_http *h, int pool)
{
        return pool == POOL_ADMIN || (h->main_mask & KW_LISTENER_ADMIN) != 0;
}

static int on_request(struct mg_connection *conn, void *cbdata)
{
        struct kw_http *h = cbdata;
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        const struct mg_request_info *ri = mg_get_request_info(conn);

        struct kw_req req;
        memset(&req, 0, sizeof req);
        req.method = ri->request_method ? ri->request_method : "";
        req.path = ri->local_uri_raw ? ri->local_uri_raw : "";
        req.query = ri->query_string;
        req.remote_addr = ri->remote_addr;
        req.conn_ = conn;
        req.body = (const uint8_t *)"";
        kw_connlimit_busy(h->cl, tl_slot);
        int on_admin_port = tl_pool == POOL_ADMIN;
        unsigned mask = on_admin_port ? KW_LISTENER_ADMIN : h->main_mask;
        req.listener = on_admin_port ? KW_LISTENER_ADMIN : KW_LISTENER_MAIN;

        struct kw_resp resp;
        resp_init(&resp);
        struct kw_buf body;
        kw_buf_init(&body, h->max_body + 1);
        enum body_state bstate = body_pending(conn);
        int force_close = 0, linger = 0;
        const char *error = NULL;
        const struct kw_route *rt = NULL;
        size_t slot = 0;
        size_t head_end = 0;
        kw_result head = kw_reqbuf_check_head(ri, &head_end);

        if (head.code != 0) {
                /* nothing of it is trusted: no route, no body, the end */
                int st = head.code == KW_ERR_TOO_LARGE ? 431 : 400;
                error = st == 431 ? "too_large" : "invalid_input";
                const char *why = kw_err_detail();      /* fixed text (reqhead.h) */
                kw_resp_error(&resp, st, error,
                              head.code == KW_ERR_INTERNAL || why[0] == '\0' ? "malformed request head" : why);
                force_close = 1;
        } else if (atomic_load(&h->pool[tl_pool].conns_open) > h->pool[tl_pool].max_conns &&
                   strcmp(req.path, "/healthz") != 0) {
                /* /healthz is answered over the limit too (the reserve
                 * threads): liveness probes must not fail for load */
                atomic_fetch_add(&h->conns_refused, 1);
                kw_resp_error(&resp, 503, "overload", "too many connections");
                snprintf(resp.extra_headers, sizeof resp.extra_headers, "Retry-After: 1\r\n");
                force_close = 1;
                error = "overload";
        } else if (!path_acceptable(ri->local_uri_raw)) {
                kw_resp_error(&resp, 400, "invalid_input", "invalid request path");
                error = "invalid_input";
        } else if ((rt = route_find(h, req.path, mask)) == NULL) {
                kw_resp_error(&resp, 404, "no_route", "no such path");
                error = "no_route";
        } else {
                slot = h->route_slot[rt - h->routes];
                if (!(rt->listeners & KW_LISTENER_MAIN))
                        req.listener = KW_LISTENER_ADMIN;   /* admin route on a shared listener */
                int code = read_body(h, conn, &body, &resp, &bstate);
                linger = code == KW_ERR_TOO_LARGE;
                const char *text;
                if (code == 0 && kw_buf_cstr(&body, &text).code == 0) {
                        req.body = (const uint8_t *)text;
                        req.body_len = body.len;
                        fill_client_cert(h, conn, &req);
                        rt->fn(&req, &resp, h->ctx);
                        error = req.log_error;
                        if (resp.status < 100 || resp.status > 599 ||
                            !headers_well_formed(resp.extra_headers) ||
                            (resp.content_type != NULL && !token_safe(resp.content_type)) ||
                            (resp.cache_control != NULL && !token_safe(resp.cache_control))) {
                                kw_resp_error(&resp, 500, "internal", "internal error");
                                resp.extra_headers[0] = '\0';
                                resp.cache_control = NULL;
                                error = "internal";
                        }
                } else {
                        /* 413 unread, 400 framing, short body: the stream is
                         * no longer trustworthy, so the connection ends here */
                        error = kw_err_name(code != 0 ? code : KW_ERR_NOMEM);
                        force_close = 1;
                        if (rt->error != NULL && code != 0 && resp.status < 500) {
                                resp.extra_headers[0] = '\0';
                                rt->error(&req, &resp, code);   /* the protocol's own shape */
                        }
                }
        }
        if (bstate == BODY_UNREAD)
                force_close = 1;     /* never let CivetWeb drain an unchecked body */
        /* the body bytes that came with the head, to wipe after the answer;
         * where a chunked body ends in the buffer is not known: the
         * connection ends, and with it whatever the buffer holds */
        size_t body_in_buf = 0;
        if (head.code == 0 && mg_get_header(conn, "Transfer-Encoding") != NULL)
                force_close = 1;
        else if (head.code == 0 && ri->content_length > 0)
                body_in_buf = (size_t)ri->content_length;

        int keep = !force_close && client_keeps_alive(conn);
        if (!send_response(conn, &resp, strcmp(req.method, "HEAD") == 0, keep, serves_admin(h, tl_pool)))
                force_close = 1;

        uint64_t us = elapsed_us(&t0);
        const char *route = req.log_route[0] != '\0' ? req.log_route : h->slots[slot].name;
        metrics_record(h, slot, resp.status, us);
        kw_history_record(h->history, h->slots[slot].hist_class, (int64_t)time(NULL), resp.status,
                          us, error);
        log_request(h, &req, route, resp.status, us, ri->remote_addr, error);

        int status = resp.status;
        if (head.code == 0)
                kw_reqbuf_wipe_request(ri, head_end, body_in_buf);
        else
                kw_reqbuf_wipe_strings(ri);
        kw_buf_free(&body);
        kw_buf_free(&resp.body);
        kw_wipe(resp.extra_headers, sizeof resp.extra_headers);   /* may hold Set-Cookie's session id */
        if (linger)
                linger_drain(conn);
        kw_connlimit_idle(h->cl, tl_slot);
        if (force_close)
                mg_close_connection(conn);
        return status;
}

/* Errors CivetWeb detects itself (malformed request line, header too large,
 * unsupported HTTP version...): the same JSON shape, then close.  The text
 * CivetWeb passes may quote the request, so it is not used. */
static int on_http_error(struct mg_connection *conn, int status, const char *msg)
{
        (void)msg;
        struct kw_http *h = conn_http(conn);
        const struct mg_request_info *ri = mg_get_request_info(conn);
        kw_reqbuf_note_head(ri);        /* so that the close below wipes the head */
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        const char *name = status == 404 ? "no_route"
                         : status == 413 || status == 431 || status == 414 ? "too_large"
                         : status >= 500 && status != 505 ? "internal"
                         : status == 505 ? "unsupported" : "invalid_input";
        struct kw_resp resp;
        resp_init(&resp);
        kw_resp_error(&resp, status, name, status == 404 ? "no such path" : "malformed request");
        (void)send_response(conn, &resp, 0, 0, serves_admin(h, tl_pool));   /* closed below either way */
        struct kw_req req;
        memset(&req, 0, sizeof req);
        req.method = ri && ri->request_method ? ri->request_method : "";
        req.listener = tl_pool == POOL_ADMIN ? KW_LISTENER_ADMIN : KW_LISTENER_MAIN;
        uint64_t us = elapsed_us(&t0);
        metrics_record(h, 0, status, us);
        log_request(h, &req, "none", status, us, ri ? ri->remote_addr : "", name);
        kw_buf_free(&resp.body);
        mg_close_connection(conn);
        return 0;   /* handled: CivetWeb sends nothing */
}

/* ---- metrics ---- */

static kw_result put_label(struct kw_buf *b, const char *s)
{
        for (; *s; s++) {
                if (*s == '\\' || *s == '"')
                        KW_TRY(kw_buf_put(b, "\\", 1));
                if (*s == '\n')
                        KW_TRY(kw_buf_put(b, "\\n", 2));
                else
                        KW_TRY(kw_buf_put(b, s, 1));
        }
        return KW_OK;
}

struct kw_history *kw_http_history(const struct kw_http *h)
{
        return h != NULL ? h->history : NULL;
}

int kw_http_tls_spki_sha256(const struct kw_http *h, unsigned char out[32])
{
        if (h == NULL || !h->tls_spki_set)
                return -1;
        memcpy(out, h->tls_spki_sha256, 32);
        return 0;
}

int kw_metrics_node_ok(const char *s)
{
        size_t n = s != NULL ? strlen(s) : 0;
        return n >= 1 && n <= 64 &&
               strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

kw_result kw_http_metrics(struct kw_http *h, const char *node, struct kw_buf *out)
{
        KW_ENSURE(h != NULL && out != NULL && kw_metrics_node_ok(node), KW_ERR_INTERNAL);
        size_t start = out->len;
        kw_result r = KW_OK;
#define M_TRY(x)                             \
        do {                                 \
                r = (x);                     \
                if (r.code != 0)             \
                        goto fail;           \
        } while (0)
        M_TRY(kw_buf_put_str(out, "# HELP keyward_http_requests_total HTTP requests by route and status.\n"
                                  "# TYPE keyward_http_requests_total counter\n"));
        for (size_t i = 0; i < h->n_slots; i++) {
                struct route_slot *s = &h->slots[i];
                for (int st = 0; st < STATUS_SLOTS; st++) {
                        uint64_t v = atomic_load_explicit(&s->by_status[st], memory_order_relaxed);
                        if (v == 0)
                                continue;
                        M_TRY(kw_buf_printf(out, "keyward_http_requests_total{node=\"%s\",route=\"", node));
                        M_TRY(put_label(out, s->name));
                        M_TRY(kw_buf_printf(out, "\",status=\"%d\"} %llu\n", st + STATUS_MIN,
                                            (unsigned long long)v));
                }
        }
        M_TRY(kw_buf_put_str(out, "# HELP keyward_http_request_errors_total HTTP responses with status >= 400.\n"
                                  "# TYPE keyward_http_request_errors_total counter\n"));
        for (size_t i = 0; i < h->n_slots; i++) {
                M_TRY(kw_buf_printf(out, "keyward_http_request_errors_total{node=\"%s\",route=\"", node));
                M_TRY(put_label(out, h->slots[i].name));
                M_TRY(kw_buf_printf(out, "\"} %llu\n",
                                    (unsigned long long)atomic_load(&h->slots[i].errors)));
        }
        M_TRY(kw_buf_put_str(out, "# HELP keyward_http_request_duration_seconds Time from request to response written.\n"
                                  "# TYPE keyward_http_request_duration_seconds histogram\n"));
        for (size_t i = 0; i < h->n_slots; i++) {
                struct route_slot *s = &h->slots[i];
                uint64_t cum = 0;
                for (int b = 0; b <= N_BUCKETS; b++) {
                        cum += atomic_load_explicit(&s->bucket[b], memory_order_relaxed);
                        M_TRY(kw_buf_printf(out, "keyward_http_request_duration_seconds_bucket{node=\"%s\",route=\"", node));
                        M_TRY(put_label(out, s->name));
                        M_TRY(kw_buf_printf(out, "\",le=\"%s\"} %llu\n", b < N_BUCKETS ? bucket_le[b] : "+Inf",
                                            (unsigned long long)cum));
                }
                uint64_t sum = atomic_load_explicit(&s->sum_us, memory_order_relaxed);
                M_TRY(kw_buf_printf(out, "keyward_http_request_duration_seconds_sum{node=\"%s\",route=\"", node));
                M_TRY(put_label(out, s->name));
                M_TRY(kw_buf_printf(out, "\"} %llu.%06llu\n", (unsigned long long)(sum / 1000000),
                                    (unsigned long long)(sum % 1000000)));
                M_TRY(kw_buf_printf(out, "keyward_http_request_duration_seconds_count{node=\"%s\",route=\"", node));
                M_TRY(put_label(out, s->name));
                M_TRY(kw_buf_printf(out, "\"} %llu\n", (unsigned long long)cum));
        }
        M_TRY(kw_buf_printf(out, "# HELP keyward_http_connections_open Open client connections.\n"
                                 "# TYPE keyward_http_connections_open gauge\n"
                                 "keyward_http_connections_open{node=\"%s\"} %lld\n"
                                 "# HELP keyward_http_connections_refused_total Requests refused over the connection limit.\n"
                                 "# TYPE keyward_http_connections_refused_total counter\n"
                                 "keyward_http_connections_refused_total{node=\"%s\"} %llu\n",
                            node,
                            (long long)(atomic_load(&h->pool[POOL_MAIN].conns_open) +
                                        atomic_load(&h->pool[POOL_ADMIN].conns_open)),
                            node, (unsigned long long)atomic_load(&h->conns_refused)));
        M_TRY(kw_buf_printf(out, "# HELP keyward_log_lines_dropped_total Log lines of the front (requests, info) "
                                 "dropped because stderr was read slower than they came.\n"
                                 "# TYPE keyward_log_lines_dropped_total counter\n"
                                 "keyward_log_lines_dropped_total{node=\"%s\"} %llu\n"
                                 "# HELP keyward_log_lines_lost_total Log lines of the front lost to a failed "
                                 "write to stderr.\n"
                                 "# TYPE keyward_log_lines_lost_total counter\n"
                                 "keyward_log_lines_lost_total{node=\"%s\"} %llu\n",
                            node, (unsigned long long)kw_log_dropped_total(),
                            node, (unsigned long long)kw_log_lost_total()));
        M_TRY(kw_connlimit_metrics(h->cl, node, out));
#undef M_TRY
        return KW_OK;
fail:
        out->len = start;       /* all or nothing */
        return r;
}

/* ---- start / stop ---- */

static int listen_acceptable(const char *s)
{
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n > 100 || s[n - 1] < '0' || s[n - 1] > '9' || strchr(s, ':') == NULL)
                return 0;
        return strspn(s, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.:[]-") == n;
}

static KW_MUST_USE kw_result slots_build(struct kw_http *h)
{
        h->route_slot = calloc(h->n_routes ? h->n_routes : 1, sizeof *h->route_slot);
        h->slots = calloc(h->n_routes + 1, sizeof *h->slots);
        KW_ENSURE(h->route_slot != NULL && h->slots != NULL, KW_ERR_NOMEM);
        h->slots[0].name = "none";
        h->slots[0].hist_class = -1;
        h->n_slots = 1;
        for (size_t i = 0; i < h->n_routes; i++) {
                const char *name = h->routes[i].name ? h->routes[i].name : h->routes[i].prefix;
                size_t k = 0;
                while (k < h->n_slots && strcmp(h->slots[k].name, name) != 0)
                        k++;
                if (k == h->n_slots) {
                        h->slots[k].hist_class = kw_history_class(name);
                        h->slots[h->n_slots++].name = name;
                }
                h->route_slot[i] = k;
        }
        return KW_OK;
}

void kw_http_stop(struct kw_http *h)
{
        if (h == NULL)
                return;
        atomic_store(&h->stopping, 1);
        for (int p = 0; p < KW_CONNLIMIT_POOLS; p++)
                if (h->pool[p].mg != NULL)
                        mg_stop(h->pool[p].mg);     /* its connections are closed: unregistered */
        if (h->lib_init)
                mg_exit_library();
        kw_connlimit_free(h->cl);
        free(h->route_slot);
        free(h->slots);
        kw_history_free(h->history);
        free(h);
}

/* The port number of a host:port listen string (listen_acceptable). */
static long listen_port(const char *s)
{
        const char *c = strrchr(s, ':');
        return c != NULL ? strtol(c + 1, NULL, 10) : -1;
}

/* Starts pool p: one CivetWeb context on listen with its own worker threads. */
KW_MUST_USE static kw_result pool_start(struct kw_http *h, int p, const char *listen,
                                        const struct kw_config *cfg)
{
        struct pool *pl = &h->pool[p];
        char ports[128], threads[24], req_to[24], ka_to[24];
        snprintf(ports, sizeof ports, "%ss", listen);
        snprintf(threads, sizeof threads, "%d", pl->threads);
        snprintf(req_to, sizeof req_to, "%lld", (long long)cfg->http.request_timeout_ms);
        snprintf(ka_to, sizeof ka_to, "%lld", (long long)cfg->http.keep_alive_timeout_ms);
        const char *options[] = {
                "listening_ports", ports,
                "max_request_size", KW_REQBUF_SIZE_STR,  /* request line + headers */
                "num_threads", threads,
                "request_timeout_ms", req_to,
                "keep_alive_timeout_ms", ka_to,
                "enable_keep_alive", "yes",
                "decode_url", "no",
                "decode_query_string", "no",
                "enable_directory_listing", "no",
                "enable_auth_domain_check", "no",
                "access_control_allow_origin", "",
                "access_control_allow_methods", "",
                "access_control_allow_headers", "",
                "tcp_nodelay", "1",
                "ssl_protocol_version", "4",
                NULL, NULL,
        };
        struct mg_callbacks cb;
        memset(&cb, 0, sizeof cb);
        cb.init_ssl = on_init_ssl;
        cb.init_connection = on_init_connection;
        cb.connection_close = on_connection_close;
        cb.http_error = on_http_error;
        cb.log_message = on_log_message;
        char errtext[256] = "";
        struct mg_error_data err = { .text = errtext, .text_buffer_size = sizeof errtext };
        struct mg_init_data init = { .callbacks = &cb, .user_data = h, .configuration_options = options };
        h->start_cfg = cfg;
        h->starting_pool = p;
        pl->mg = mg_start2(&init, &err);
        h->start_cfg = NULL;
        if (pl->mg == NULL) {
                if (h->tls_error[0] != '\0') {
                        kw_err_set_detail("%s", h->tls_error);
                        KW_BAIL(KW_ERR_CONFIG);
                }
                kw_err_set_detail("cannot start the HTTPS listener (%s): %s", listen,
                                  errtext[0] ? errtext : "unknown error");
                KW_BAIL(KW_ERR_IO);
        }
        struct mg_server_port sp[2];
        if (mg_get_server_ports(pl->mg, 2, sp) < 1) {
                kw_err_set_detail("cannot start the HTTPS listener (%s): no port", listen);
                KW_BAIL(KW_ERR_IO);
        }
        pl->port = sp[0].port;
        /* Authentication is the routes' (tokens, SigV4, client certificates).
         * Without an auth handler CivetWeb looks for a .htpasswd file (a
         * failing stat()) on every request. */
        mg_set_auth_handler(pl->mg, "/", on_auth_any, NULL);
        mg_set_request_handler(pl->mg, "/", on_request, h);
        return KW_OK;
}

kw_result kw_http_start(const struct kw_config *cfg, const struct kw_route *routes, void *ctx,
                        struct kw_http **ret)
{
        KW_ENSURE(cfg != NULL && routes != NULL && ret != NULL, KW_ERR_INTERNAL);
        const char *listen = cfg->http.listen;
        if (!listen_acceptable(listen)) {
                kw_err_set_detail("[http] listen must be host:port");
                KW_BAIL(KW_ERR_CONFIG);
        }
        int admin_separate = cfg->admin.enable && nonempty(cfg->admin.listen) &&
                             strcmp(cfg->admin.listen, listen) != 0;
        if (admin_separate && !listen_acceptable(cfg->admin.listen)) {
                kw_err_set_detail("[admin] listen must be host:port");
                KW_BAIL(KW_ERR_CONFIG);
        }
        if (admin_separate && listen_port(cfg->admin.listen) != 0 &&
            listen_port(cfg->admin.listen) == listen_port(listen)) {
                kw_err_set_detail("[admin] listen must use a port other than [http] listen");
                KW_BAIL(KW_ERR_CONFIG);
        }
        if (!(nonempty(cfg->tls.tls_p12_file) ||
              (nonempty(cfg->tls.tls_cert_file) && nonempty(cfg->tls.tls_key_file)))) {
                kw_err_set_detail("[tls] needs tls_cert_file and tls_key_file, or tls_p12_file");
                KW_BAIL(KW_ERR_CONFIG);
        }
        if (cfg->http.max_connections < 1 || cfg->http.max_connections > 10000 ||
            cfg->http.max_body_bytes < 0 || cfg->http.max_body_bytes > (64 << 20) ||
            cfg->http.request_timeout_ms < 1 || cfg->http.keep_alive_timeout_ms < 0 ||
            cfg->http.request_timeout_ms > INT32_MAX || cfg->http.keep_alive_timeout_ms > INT32_MAX ||
            cfg->http.max_connections_per_client < 1 || cfg->http.idle_timeout_under_load_ms < 1) {
                kw_err_set_detail("[http] limits out of range");
                KW_BAIL(KW_ERR_CONFIG);
        }

        struct kw_http *h = calloc(1, sizeof *h);
        KW_ENSURE(h != NULL, KW_ERR_NOMEM);
        h->routes = routes;
        while (routes[h->n_routes].prefix != NULL)
                h->n_routes++;
        h->ctx = ctx;
        h->admin_separate = admin_separate;
        h->main_mask = KW_LISTENER_MAIN | (cfg->admin.enable && !admin_separate ? KW_LISTENER_ADMIN : 0);
        h->request_timeout_ms = cfg->http.request_timeout_ms;
        h->max_body = (size_t)cfg->http.max_body_bytes;
        h->log_requests = cfg->log.requests;
        /* The admin listener has its own CivetWeb context, so that clients
         * of the main listener cannot take the threads it needs. */
        h->n_pools = admin_separate ? 2 : 1;
        h->pool[POOL_MAIN].max_conns = cfg->http.max_connections;
        h->pool[POOL_ADMIN].max_conns = ADMIN_CONNECTIONS;
        struct kw_connlimit_cfg lc = { .per_client = cfg->http.max_connections_per_client,
                                       .idle_ms = cfg->http.idle_timeout_under_load_ms,
                                       .pools = h->n_pools };
        for (int p = 0; p < h->n_pools; p++) {
                h->pool[p].threads = (int)h->pool[p].max_conns + THREAD_RESERVE;
                lc.threads[p] = h->pool[p].threads;
        }
        kw_result r = slots_build(h);
        if (r.code == 0)
                r = kw_history_new(&h->history);
        if (r.code == 0)
                r = kw_connlimit_new(&lc, &h->cl);
        if (r.code == 0)
                r = kw_connlimit_start(h->cl, WATCHDOG_PERIOD_MS);
        if (r.code != 0) {
                kw_http_stop(h);
                return r;
        }
        mg_init_library(MG_FEATURES_TLS);
        h->lib_init = 1;
        r = pool_start(h, POOL_MAIN, listen, cfg);
        if (r.code == 0 && admin_separate)
                r = pool_start(h, POOL_ADMIN, cfg->admin.listen, cfg);
        if (r.code != 0) {
                kw_http_stop(h);
                return r;
        }
        *ret = h;
        return KW_OK;
}
