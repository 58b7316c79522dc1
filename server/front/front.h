/*
 * front.h - what every route of the network front shares.
 *
 * The front holds no key material: it authenticates, parses and validates,
 * asks the custody process over the socket (custody_client.h), and maps
 * kw_err codes to its protocol's errors at this edge.
 */
#ifndef KW_FRONT_H
#define KW_FRONT_H

#include "../config.h"
#include "custody_client.h"
#include "http.h"

struct kw_admin_info;

struct kw_front {
        const struct kw_config *cfg;
        struct kw_cc *cc;           /* custody connection pool   */
        struct kw_http *http;       /* for /metrics              */
        const struct kw_admin_info *info;  /* read at start (admin_info.c), or NULL */
};

/* What the admin API's information endpoints read once at start, before
 * the sandbox (admin_info.c): the client CA certificates of [tls]
 * clients_ca_cert_file and the unlock record ([attestation] unlock_record).
 * A missing file is reported in the answers, not here: KW_OK and *ret, or
 * KW_ERR_NOMEM.  Free with kw_admin_info_free (NULL-safe). */
KW_MUST_USE kw_result kw_admin_info_load(const struct kw_config *cfg, struct kw_admin_info **ret);
void kw_admin_info_free(struct kw_admin_info *in);

/* Route handlers (ctx is a struct kw_front *). */
void kw_route_admin(struct kw_req *req, struct kw_resp *resp, void *ctx);   /* /api/v1/ */
void kw_route_healthz(struct kw_req *req, struct kw_resp *resp, void *ctx); /* /healthz */
void kw_route_metrics(struct kw_req *req, struct kw_resp *resp, void *ctx); /* /metrics */

#endif
