/*
 * route_attest.c - GET /attestation?nonce=<64 hex> (see route_attest.h and
 * docs/attestation.md).
 *
 * 200 evidence JSON; 400 bad_nonce (not exactly 64 hex digits); 405 for
 * other methods; 429 over the rate (Retry-After); 503 when attestation is
 * not available (no certificate, no collector).  The evidence is collected
 * by the custody process (KW_OP_ATTEST), which has the devices and binds it
 * to the TLS key of the certificate it read itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/b64.h"
#include "../common/proto.h"
#include "../common/ratelimit.h"
#include "front.h"
#include "route_attest.h"

#define ATTEST_NONCE_LEN 32

static struct kw_ratelimit attest_rl;
static int attest_rl_set;

void kw_route_attest_setup(const struct kw_config *cfg)
{
        kw_ratelimit_init(&attest_rl, (uint64_t)cfg->attestation.rate_limit, 0);
        attest_rl_set = 1;
}

/* nonce: exactly 64 hex digits -> 32 bytes. */
static int nonce_parse(const char *s, uint8_t out[ATTEST_NONCE_LEN])
{
        if (strlen(s) != 2 * ATTEST_NONCE_LEN)
                return -1;
        for (size_t i = 0; i < ATTEST_NONCE_LEN; i++) {
                int hi = kw_hex_value(s[2 * i]), lo = kw_hex_value(s[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -1;
                out[i] = (uint8_t)(hi << 4 | lo);
        }
        return 0;
}

static void attest_fail(struct kw_req *req, struct kw_resp *resp, int status, const char *name,
                        const char *msg)
{
        snprintf(req->log_error, sizeof req->log_error, "%s", name);
        kw_resp_error(resp, status, name, msg);
}

void kw_route_attest(struct kw_req *req, struct kw_resp *resp, void *ctx)
{
        struct kw_front *front = ctx;
        snprintf(req->log_route, sizeof req->log_route, "attestation");
        if (strcmp(req->method, "GET") != 0) {
                snprintf(resp->extra_headers, sizeof resp->extra_headers, "Allow: GET\r\n");
                attest_fail(req, resp, 405, "method_not_allowed", "method not allowed for this path");
                return;
        }
        if (strcmp(req->path, "/attestation") != 0) {
                attest_fail(req, resp, 404, "no_route", "no such path");
                return;
        }
        unsigned retry = 1;
        if (attest_rl_set && !kw_ratelimit_take(&attest_rl, &retry)) {
                snprintf(resp->extra_headers, sizeof resp->extra_headers, "Retry-After: %u\r\n", retry);
                attest_fail(req, resp, 429, "too_many_requests", "attestation rate limit exceeded");
                return;
        }
        char hex[130];
        uint8_t nonce[ATTEST_NONCE_LEN];
        if (kw_req_query(req, "nonce", hex, sizeof hex) != 0 || nonce_parse(hex, nonce) != 0) {
                attest_fail(req, resp, 400, "bad_nonce",
                            "nonce: exactly 32 random bytes as 64 hex digits are required");
                return;
        }
        struct kw_cc_call c;
        kw_cc_begin(front->cc, KW_OP_ATTEST, KW_CALLER_PUBLIC, &c);
        kw_cc_put(&c, KW_T_NONCE, nonce, sizeof nonce);
        kw_result r = kw_cc_invoke(&c);
        const char *json = NULL;
        size_t len = 0;
        if (r.code == 0)
                r = kw_cc_reply_json(&c, &json, &len);
        kw_buf_reset(&resp->body);
        if (r.code == 0)
                r = kw_buf_put(&resp->body, json, len);
        kw_cc_end(&c);
        if (r.code == KW_ERR_OVERLOAD) {
                snprintf(resp->extra_headers, sizeof resp->extra_headers, "Retry-After: 1\r\n");
                attest_fail(req, resp, 429, "too_many_requests", "attestation rate limit exceeded");
        } else if (r.code == KW_ERR_UNSUPPORTED || r.code == KW_ERR_CUSTODY_DOWN) {
                kw_buf_reset(&resp->body);
                snprintf(resp->extra_headers, sizeof resp->extra_headers, "Retry-After: 1\r\n");
                attest_fail(req, resp, 503, "unavailable", "attestation is not ready");
        } else if (r.code != 0) {
                kw_buf_reset(&resp->body);
                attest_fail(req, resp, 500, kw_err_name(r.code), kw_strerror(r.code));
        } else {
                resp->status = 200;
        }
}
