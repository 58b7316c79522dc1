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

struct kw_front {
        const struct kw_config *cfg;
        struct kw_cc *cc;           /* custody connection pool   */
        struct kw_http *http;       /* for /metrics              */
};

/* Route handlers (ctx is a struct kw_front *). */
void kw_route_admin(struct kw_req *req, struct kw_resp *resp, void *ctx);   /* /api/v1/ */
void kw_route_healthz(struct kw_req *req, struct kw_resp *resp, void *ctx); /* /healthz */
void kw_route_metrics(struct kw_req *req, struct kw_resp *resp, void *ctx); /* /metrics */

#endif
