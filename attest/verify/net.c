/*
 * net.c - one HTTPS GET over mbedTLS (HTTP/1.1, Connection: close), and the
 * SHA-256 of the SubjectPublicKeyInfo of the certificate the server
 * presented in THIS session (never a copy from the evidence).
 *
 * Host names: a DNS name is checked by mbedTLS (and sent as SNI).  mbedTLS
 * 2.28 (Debian 12) compares only dNSName entries, so an IP literal
 * (https://127.0.0.1:9998, https://[::1]:9998) would never match; for those
 * the name is checked here, in the verify callback, against the
 * certificate's iPAddress entries (RFC 6125 6.2.1: byte for byte, the CN is
 * not used), and no SNI is sent (RFC 6066 3).  A failed verification is
 * reported by its cause: untrusted issuer, validity dates, or a name the
 * certificate does not list (with the names it does list).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "kwa.h"

#define BODY_MAX (4u << 20)
#define SAN_TEXT_MAX 200

/* What the verify callback saw of the server's certificate. */
struct peer_check {
        int ip_len;                /* 4 or 16 when the host is an IP literal, else 0 */
        unsigned char ip[16];
        int leaf_seen;
        uint32_t flags;            /* every flag of the chain, ours included */
        char sans[SAN_TEXT_MAX];   /* "DNS:a, IP:1.2.3.4", or "" */
        char subject_cn[80];
        char issuer_cn[80];
        char valid_from[24], valid_to[24];
};

/* The CN of a name, printable ASCII ('?' otherwise), or "" when none. */
static void name_cn(const mbedtls_x509_name *n, char *out, size_t outsz)
{
        out[0] = '\0';
        for (; n != NULL; n = n->next) {
                if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) != 0)
                        continue;
                size_t k = 0;
                for (size_t i = 0; i < n->val.len && k + 1 < outsz; i++)
                        out[k++] = n->val.p[i] >= 0x20 && n->val.p[i] < 0x7f ? (char)n->val.p[i] : '?';
                out[k] = '\0';
        }
}

static void time_text(const mbedtls_x509_time *t, char *out, size_t outsz)
{
        snprintf(out, outsz, "%04d-%02d-%02d %02d:%02d:%02d UTC", t->year, t->mon, t->day, t->hour,
                 t->min, t->sec);
}

/* The subjectAltName entries as text; 1 when one iPAddress equals ip. */
static int san_scan(const mbedtls_x509_crt *crt, const unsigned char *ip, int ip_len, char *out,
                    size_t outsz)
{
        int match = 0;
        size_t k = 0;
        out[0] = '\0';
        for (const mbedtls_x509_sequence *s = &crt->subject_alt_names; s != NULL; s = s->next) {
                if (s->buf.p == NULL)
                        continue;
                int type = s->buf.tag & MBEDTLS_ASN1_TAG_VALUE_MASK;
                char one[64 + INET6_ADDRSTRLEN];
                if (type == MBEDTLS_X509_SAN_IP_ADDRESS && (s->buf.len == 4 || s->buf.len == 16)) {
                        char a[INET6_ADDRSTRLEN] = "?";
                        inet_ntop(s->buf.len == 4 ? AF_INET : AF_INET6, s->buf.p, a, sizeof a);
                        snprintf(one, sizeof one, "IP:%s", a);
                        if (ip_len != 0 && s->buf.len == (size_t)ip_len &&
                            memcmp(s->buf.p, ip, (size_t)ip_len) == 0)   /* public data */
                                match = 1;
                } else if (type == MBEDTLS_X509_SAN_DNS_NAME || type == MBEDTLS_X509_SAN_RFC822_NAME ||
                           type == MBEDTLS_X509_SAN_UNIFORM_RESOURCE_IDENTIFIER) {
                        size_t n = s->buf.len < 60 ? s->buf.len : 60;
                        char d[61];
                        for (size_t i = 0; i < n; i++)
                                d[i] = s->buf.p[i] >= 0x20 && s->buf.p[i] < 0x7f ? (char)s->buf.p[i] : '?';
                        d[n] = '\0';
                        snprintf(one, sizeof one, "%s:%s%s",
                                 type == MBEDTLS_X509_SAN_DNS_NAME ? "DNS"
                                 : type == MBEDTLS_X509_SAN_RFC822_NAME ? "email" : "URI",
                                 d, s->buf.len > n ? "..." : "");
                } else {
                        snprintf(one, sizeof one, "(type %d)", type);
                }
                int w = snprintf(out + k, outsz - k, "%s%s", k ? ", " : "", one);
                if (w < 0 || (size_t)w >= outsz - k) {
                        if (outsz > 4)
                                memcpy(out + outsz - 4, "...", 4);
                        break;
                }
                k += (size_t)w;
        }
        return match;
}

/* mbedtls_ssl_conf_verify callback: called for each certificate of the
 * chain, the server's own last (depth 0). */
static int peer_verify(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
        struct peer_check *pc = ctx;
        if (depth == 0) {
                pc->leaf_seen = 1;
                int match = san_scan(crt, pc->ip, pc->ip_len, pc->sans, sizeof pc->sans);
                if (pc->ip_len != 0 && !match)
                        *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
                name_cn(&crt->subject, pc->subject_cn, sizeof pc->subject_cn);
                name_cn(&crt->issuer, pc->issuer_cn, sizeof pc->issuer_cn);
                time_text(&crt->valid_from, pc->valid_from, sizeof pc->valid_from);
                time_text(&crt->valid_to, pc->valid_to, sizeof pc->valid_to);
        }
        pc->flags |= *flags;
        return 0;
}

/* After snprintf wrote w into out + *k: the new end, at most outsz - 1 (a
 * truncated clause ends the text; later ones then write nothing). */
static void text_advance(size_t *k, int w, size_t outsz)
{
        if (w < 0)
                return;
        *k = (size_t)w >= outsz - *k ? outsz - 1 : *k + (size_t)w;
}

/* Why the server's certificate was refused, one clause per cause. */
static void verify_failure_text(const struct peer_check *pc, uint32_t flags, const char *host,
                                const char *ca_file, char *out, size_t outsz)
{
        size_t k = 0;
        int w = snprintf(out, outsz, "the server certificate (subject CN=%s, issuer CN=%s) ",
                         pc->subject_cn[0] ? pc->subject_cn : "-",
                         pc->issuer_cn[0] ? pc->issuer_cn : "-");
        text_advance(&k, w, outsz);
        const char *sep = "";
        if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) {
                if (pc->sans[0])
                        w = snprintf(out + k, outsz - k, "does not name %s (its subjectAltName "
                                     "lists: %s): connect with a name it lists, or reissue it "
                                     "with %s:%s", host, pc->sans, pc->ip_len ? "IP" : "DNS", host);
                else
                        w = snprintf(out + k, outsz - k, "does not name %s (it has no "
                                     "subjectAltName): reissue it with %s:%s", host,
                                     pc->ip_len ? "IP" : "DNS", host);
                text_advance(&k, w, outsz);
                sep = "; and it ";
                flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH;
        }
        if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED) {
                w = snprintf(out + k, outsz - k, "%sis not issued by a CA in %s: give the CA that "
                             "issued it with --ca", sep, ca_file ? ca_file : "--ca");
                text_advance(&k, w, outsz);
                sep = "; and it ";
                flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_NOT_TRUSTED;
        }
        if (flags & MBEDTLS_X509_BADCERT_EXPIRED) {
                w = snprintf(out + k, outsz - k, "%sexpired on %s", sep, pc->valid_to);
                text_advance(&k, w, outsz);
                sep = "; and it ";
                flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_EXPIRED;
        }
        if (flags & MBEDTLS_X509_BADCERT_FUTURE) {
                w = snprintf(out + k, outsz - k, "%sis not valid before %s", sep, pc->valid_from);
                text_advance(&k, w, outsz);
                sep = "; and it ";
                flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_FUTURE;
        }
        if (flags != 0) {
                char info[256];
                int n = mbedtls_x509_crt_verify_info(info, sizeof info, "", flags);
                for (int i = 0; i < n; i++)   /* one line: mbedTLS ends each cause with '\n' */
                        if (info[i] == '\n')
                                info[i] = i + 1 < n ? ',' : '\0';
                snprintf(out + k, outsz - k, "%sfails verification:%s", sep, n > 0 ? info : " (unknown)");
        }
}

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
        struct peer_check pc;
        memset(&pc, 0, sizeof pc);
        if (inet_pton(AF_INET, host, pc.ip) == 1)
                pc.ip_len = 4;
        else if (inet_pton(AF_INET6, host, pc.ip) == 1)
                pc.ip_len = 16;
        mbedtls_ssl_conf_verify(&conf, peer_verify, &pc);
        /* an IP literal: no SNI, and the name is checked by peer_verify */
        if (mbedtls_ssl_setup(&ssl, &conf) != 0 ||
            (pc.ip_len == 0 && mbedtls_ssl_set_hostname(&ssl, host) != 0))
                goto out;
        mbedtls_ssl_set_bio(&ssl, &net, mbedtls_net_send, mbedtls_net_recv, mbedtls_net_recv_timeout);
        while ((e = mbedtls_ssl_handshake(&ssl)) != 0) {
                if (e != MBEDTLS_ERR_SSL_WANT_READ && e != MBEDTLS_ERR_SSL_WANT_WRITE) {
                        uint32_t f = mbedtls_ssl_get_verify_result(&ssl);
                        if (f == (uint32_t)-1)
                                f = 0;
                        f |= pc.flags;
                        if (e == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && pc.leaf_seen && f != 0) {
                                char why[400];
                                verify_failure_text(&pc, f, host, ca_file, why, sizeof why);
                                snprintf(err, errsz, "TLS with %s:%s: %s", host, port, why);
                        } else {
                                char m[160];
                                mbedtls_strerror(e, m, sizeof m);
                                snprintf(err, errsz, "TLS handshake with %s:%s failed: %s", host, port, m);
                        }
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
