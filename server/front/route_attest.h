/*
 * route_attest.h - GET /attestation?nonce=<64 hex>: the evidence document of
 * attest/collect/collect.h for that nonce, bound to this server's TLS key.
 * No authentication (evidence is public), rate-limited by [attestation]
 * rate_limit, never cached (http.c sends Cache-Control: no-store).
 */
#ifndef KW_ROUTE_ATTEST_H
#define KW_ROUTE_ATTEST_H

#include "../config.h"
#include "http.h"

/* Once, before the listener starts: the route's own rate limit. */
void kw_route_attest_setup(const struct kw_config *cfg);

/* Handler (ctx is a struct kw_front *).  Registered on the main listener
 * only when [attestation] enable = true. */
void kw_route_attest(struct kw_req *req, struct kw_resp *resp, void *ctx);

#endif
