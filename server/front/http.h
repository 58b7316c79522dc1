/*
 * http.h - the front's HTTP(S) server: CivetWeb + OpenSSL 3, TLS set-up,
 * limits, routing by path prefix, one mg_write per response, one JSON log
 * line per request, and the per-route metrics.
 *
 * Routes are a static const table handed to kw_http_start.  A handler gets
 * the whole request (body already read, capped at [http] max_body_bytes)
 * and fills a kw_resp; http.c writes status line, headers and body with a
 * single mg_write and logs the line.
 */
#ifndef KW_HTTP_H
#define KW_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/result.h"

struct kw_config;
struct kw_http;

/* Which listener a request came in on. */
enum kw_listener { KW_LISTENER_MAIN = 1, KW_LISTENER_ADMIN = 2 };

struct kw_req {
        const char *method;        /* "POST", ...                                  */
        const char *path;          /* path as received (percent-encoding kept), no query */
        const char *query;         /* raw query string or NULL                     */
        const uint8_t *body;       /* NUL-terminated copy, body_len bytes           */
        size_t body_len;
        enum kw_listener listener;
        const char *remote_addr;   /* the client's IP address as text              */
        /* TLS client certificate (verified against [tls] clients_ca_cert_file):  */
        int client_cert_present;   /* a certificate was presented                  */
        int client_cert_verified;  /* and it chained to the CA and is in date      */
        char client_cn[256];       /* subject CN of a verified certificate, or ""  */
        void *conn_;               /* private: the mg_connection                   */
        /* set by the handler, for the log line (JSON-escaped by http.c):        */
        char log_route[48];        /* route name, e.g. "admin.keys.create"          */
        char log_principal[160];   /* authenticated principal, e.g. "token:ab12"    */
        char log_ids[512];         /* extra JSON members, already valid JSON, e.g.
                                      "\"kmsRequestId\":\"...\"" (may be empty)    */
        char log_error[64];        /* kw_err_name of the failure, or ""            */
};

/* Case-insensitive header lookup; NULL when absent. */
const char *kw_req_header(const struct kw_req *req, const char *name);
/* The i-th request header, in received order (repeated names are separate
 * entries): 0 with *ret_name and *ret_value set, or -1 past the last one. */
int kw_req_header_at(const struct kw_req *req, int i, const char **ret_name, const char **ret_value);
/* Value of a query parameter (URL-decoded into out); 0 when found, -1 otherwise. */
int kw_req_query(const struct kw_req *req, const char *name, char *out, size_t outsz);

struct kw_resp {
        int status;                /* HTTP status                                  */
        const char *content_type;  /* default "application/json"                   */
        struct kw_buf body;        /* initialised by http.c, max 1 MiB             */
        char extra_headers[256];   /* e.g. "Retry-After: 1\r\n" (each line CRLF-terminated) */
        const char *cache_control; /* Cache-Control value; NULL: "no-store"        */
};

typedef void (*kw_route_fn)(struct kw_req *req, struct kw_resp *resp, void *ctx);
/* Formats, in the route's protocol, an error that http.c answers itself on
 * that route before the handler runs: KW_ERR_TOO_LARGE (body over [http]
 * max_body_bytes) or an input-class code (malformed body framing).  It sets
 * resp->status and the body; NULL: http.c's own {"error","message"}. */
typedef void (*kw_route_error_fn)(struct kw_req *req, struct kw_resp *resp, int code);

struct kw_route {
        const char *prefix;        /* matched against the start of the path        */
        unsigned listeners;        /* mask of enum kw_listener                     */
        kw_route_fn fn;
        const char *name;          /* metrics/log label when the handler sets none */
        kw_route_error_fn error;   /* optional, see above                          */
};

/* Every response of a listener that serves the admin API (the admin
 * listener, or the main one when they are shared) carries these headers, the
 * console's (docs/console.md); every response of every listener carries
 * X-Content-Type-Options: nosniff and Cache-Control (kw_resp.cache_control). */
#define KW_HTTP_ADMIN_HEADERS                                                  \
        "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'\r\n" \
        "X-Frame-Options: DENY\r\n"                                             \
        "Referrer-Policy: no-referrer\r\n"

/* Starts the listeners of cfg ([http], [tls], [admin]).  routes ends with
 * a { NULL } row; ctx is passed to every handler.  Unmatched paths get 404
 * {"error":"no_route",...} unless a route claims "/".  On failure the detail
 * (kw_err_detail) names what is wrong (port in use, bad certificate...). */
KW_MUST_USE kw_result kw_http_start(const struct kw_config *cfg, const struct kw_route *routes,
                                    void *ctx, struct kw_http **ret);
/* Stops accepting, finishes in-flight requests, frees.  NULL-safe. */
void kw_http_stop(struct kw_http *h);
/* The Prometheus text of the front's metrics (appended to out; all or
 * nothing), every sample labelled node="<node>" first.  node is a label value
 * that needs no escaping: [A-Za-z0-9._-]{1,64} (kw_config_node_name);
 * KW_ERR_INTERNAL when it is not. */
KW_MUST_USE kw_result kw_http_metrics(struct kw_http *h, const char *node, struct kw_buf *out);
/* 1 when s can be the node label of the metrics: [A-Za-z0-9._-]{1,64}. */
int kw_metrics_node_ok(const char *s);

/* The per-minute request history (history.h) of the running server, or
 * NULL (h NULL).  Owned by h. */
struct kw_history;
struct kw_history *kw_http_history(const struct kw_http *h);

/* SHA-256 of the DER SubjectPublicKeyInfo of the TLS certificate loaded at
 * start (the attestation binding).  0 and out filled, or -1 (no TLS yet). */
int kw_http_tls_spki_sha256(const struct kw_http *h, unsigned char out[32]);

/* The body {"<k1>":"<v1>","<k2>":"<v2>"} (values JSON-escaped, keys taken
 * as they are); fallback, a fixed body, when it does not fit.  The error
 * shapes of the admin API and of EKM. */
void kw_resp_json_pair(struct kw_resp *resp, const char *k1, const char *v1, const char *k2,
                       const char *v2, const char *fallback);
/* Helper for handlers: a JSON error body {"error":"<name>","message":"<msg>"}. */
void kw_resp_error(struct kw_resp *resp, int status, const char *name, const char *msg);

#endif
