/*
 * route_xks.h - the AWS KMS External Key Store (XKS) proxy API v1
 * (docs/xks.md; our notes: /work/shared/specs/aws-xks.md).
 */
#ifndef KW_ROUTE_XKS_H
#define KW_ROUTE_XKS_H

#include "../common/result.h"
#include "../config.h"
#include "http.h"

/* The catch-all route "/" (lowest priority: http.c matches the longest
 * prefix): XKS paths ("...<prefix>/kms/xks/...") are served or answered with
 * XKS errors; any other path gets the generic 404 {"error":"no_route"}.
 * ctx is a struct kw_front *. */
void kw_route_xks(struct kw_req *req, struct kw_resp *resp, void *ctx);
/* http.c's own refusals on XKS paths in the XKS shape (kw_route_error_fn):
 * a body over [http] max_body_bytes can only hold values beyond our
 * documented maximum -> 501 UnsupportedOperationException; bad framing ->
 * 400 ValidationException. */
void kw_route_xks_error(struct kw_req *req, struct kw_resp *resp, int code);

/* Once, before the listener starts: the settings the route reads (fleet,
 * vendor, rate limit, per-store mTLS subjects) and the configured stores as
 * the first route table (the custody's list, which adds the stores created
 * through the admin API, replaces it on first use).  KW_ERR_CONFIG when a
 * store asks for a client CA this listener cannot check. */
KW_MUST_USE kw_result kw_route_xks_setup(const struct kw_config *cfg);

/* The stores changed (admin API): the next XKS request reloads the table. */
void kw_xks_stores_changed(void);
/* keyward_xks_throttled_front_total{node}: requests answered 429 by the
 * front's copy of the stores' rate budgets, without a custody round trip.
 * node: the node label's value (needs no escaping). */
KW_MUST_USE kw_result kw_route_xks_metrics(const char *node, struct kw_buf *out);

#endif
