/*
 * net.c - one HTTPS GET over mbedTLS (HTTP/1.1, Connection: close), and the
 * SHA-256 of the SubjectPublicKeyInfo of the certificate the server
 * presented in THIS session (never a copy from the evidence).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "kwa.h"

#define BODY_MAX (4u << 20)

int kwa_https_get(const char *host, const char *port, const char *path, const char *ca_file, int insecure,
                  int *ret_status, char **ret_body, size_t *ret_len, uint8_t ret_spki_sha256[32], char *err,
                  size_t errsz)
{
        mbedtls_net_context net;
        mbedtls_ssl_context ssl;
        mbedtls_ssl_config conf;
        mbedtls_x509_crt ca;
        mbedtls_entropy_context ent;
        mbedtls_ctr_drbg_context drbg;
        mbedtls_net_init(&net);
        mbedtls_ssl_init(&ssl);
        mbedtls_ssl_config_init(&conf);
        mbedtls_x509_crt_init(&ca);
        mbedtls_entropy_init(&ent);
        mbedtls_ctr_drbg_init(&drbg);
        char *buf = NULL;
        size_t n = 0;
        int rc = KWA_E_IO, e;
        char req[1200];
        if ((e = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent, (const unsigned char *)"kwa-tls", 7)) != 0) {
                snprintf(err, errsz, "no randomness");
                goto out;
        }
        if (ca_file != NULL && (e = mbedtls_x509_crt_parse_file(&ca, ca_file)) != 0) {
                snprintf(err, errsz, "cannot read CA certificates from %s", ca_file);
                goto out;
        }
        if ((e = mbedtls_net_connect(&net, host, port, MBEDTLS_NET_PROTO_TCP)) != 0) {
                snprintf(err, errsz, "cannot connect to %s:%s", host, port);
                goto out;
        }
        if (mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                        MBEDTLS_SSL_PRESET_DEFAULT) != 0)
                goto out;
        mbedtls_ssl_conf_min_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
        mbedtls_ssl_conf_authmode(&conf, insecure ? MBEDTLS_SSL_VERIFY_NONE : MBEDTLS_SSL_VERIFY_REQUIRED);
        mbedtls_ssl_conf_ca_chain(&conf, &ca, NULL);
        mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
        mbedtls_ssl_conf_read_timeout(&conf, 60000);
        if (mbedtls_ssl_setup(&ssl, &conf) != 0 || mbedtls_ssl_set_hostname(&ssl, host) != 0)
                goto out;
        mbedtls_ssl_set_bio(&ssl, &net, mbedtls_net_send, mbedtls_net_recv, mbedtls_net_recv_timeout);
        while ((e = mbedtls_ssl_handshake(&ssl)) != 0) {
                if (e != MBEDTLS_ERR_SSL_WANT_READ && e != MBEDTLS_ERR_SSL_WANT_WRITE) {
                        char m[160];
                        mbedtls_strerror(e, m, sizeof m);
                        uint32_t f = mbedtls_ssl_get_verify_result(&ssl);
                        snprintf(err, errsz, "TLS handshake with %s:%s failed: %s%s", host, port, m,
                                 f != 0 && f != (uint32_t)-1 ? " (certificate not trusted: use --ca FILE)" : "");
                        goto out;
                }
        }
        const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&ssl);
        if (peer == NULL || peer->pk_raw.p == NULL) {
                snprintf(err, errsz, "the server sent no certificate");
                goto out;
        }
        uint8_t spki[32];
        kwa_sha256(peer->pk_raw.p, peer->pk_raw.len, spki);
        int rl = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%s\r\nAccept: application/json\r\n"
                                           "User-Agent: keyward-attest\r\nConnection: close\r\n\r\n",
                          path, host, port);
        if (rl < 0 || (size_t)rl >= sizeof req)
                goto out;
        for (size_t off = 0; off < (size_t)rl;) {
                e = mbedtls_ssl_write(&ssl, (const unsigned char *)req + off, (size_t)rl - off);
                if (e == MBEDTLS_ERR_SSL_WANT_WRITE || e == MBEDTLS_ERR_SSL_WANT_READ)
                        continue;
                if (e <= 0) {
                        snprintf(err, errsz, "TLS write failed");
                        goto out;
                }
                off += (size_t)e;
        }
        buf = malloc(BODY_MAX + 1);
        if (buf == NULL)
                goto out;
        for (;;) {
                if (n == BODY_MAX) {
                        snprintf(err, errsz, "response over %u bytes", BODY_MAX);
                        goto out;
                }
                e = mbedtls_ssl_read(&ssl, (unsigned char *)buf + n, BODY_MAX - n);
                if (e == MBEDTLS_ERR_SSL_WANT_READ || e == MBEDTLS_ERR_SSL_WANT_WRITE)
                        continue;
                if (e == 0 || e == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
                        break;
                if (e < 0) {
                        if (n > 0 && e == MBEDTLS_ERR_NET_CONN_RESET)
                                break;
                        snprintf(err, errsz, "TLS read failed");
                        goto out;
                }
                n += (size_t)e;
        }
        buf[n] = '\0';
        /* status line, headers, body (we asked for no keep-alive; chunked is not expected) */
        int status = 0;
        char *hdr_end = strstr(buf, "\r\n\r\n");
        if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 || hdr_end == NULL) {
                snprintf(err, errsz, "not an HTTP response");
                goto out;
        }
        for (char *h = buf; h < hdr_end; h++)
                if (strncasecmp(h, "\r\nTransfer-Encoding: chunked", 28) == 0) {
                        snprintf(err, errsz, "chunked responses are not supported");
                        goto out;
                }
        size_t body_off = (size_t)(hdr_end + 4 - buf);
        memmove(buf, buf + body_off, n - body_off + 1);
        *ret_status = status;
        *ret_body = buf;
        *ret_len = n - body_off;
        memcpy(ret_spki_sha256, spki, 32);
        buf = NULL;
        rc = 0;
        mbedtls_ssl_close_notify(&ssl);
out:
        free(buf);
        mbedtls_net_free(&net);
        mbedtls_ssl_free(&ssl);
        mbedtls_ssl_config_free(&conf);
        mbedtls_x509_crt_free(&ca);
        mbedtls_ctr_drbg_free(&drbg);
        mbedtls_entropy_free(&ent);
        return rc;
}
