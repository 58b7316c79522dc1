/*
 * route_attest.c - GET /attestation?nonce=<64 hex> (see route_attest.h and
 * docs/attestation.md).
 *
 * 200 evidence JSON; 400 bad_nonce (not exactly 64 hex digits); 405 for
 * other methods; 429 over the rate (Retry-After); 503 when the TLS key is
 * not known yet.  The collector is created at first use from the
 * configuration and talks to the TPM from this (front) process: evidence is
 * public and the AK private key stays in the TPM, so the custody process
 * never links tpm2-tss.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../attest/collect/collect.h"
#include "common/b64.h"
#include "common/log.h"
#include "front.h"
#include "ratelimit.h"
#include "route_attest.h"

#ifndef KEYWARD_VERSION
#define KEYWARD_VERSION "0.0.0-dev"
#endif

#define ATTEST_BODY_MAX (1u << 20)

static pthread_once_t attest_once = PTHREAD_ONCE_INIT;
static const struct kw_config *attest_cfg;
static struct kw_attest *attest_collector;
static struct kw_ratelimit attest_rl;
static int attest_init_code;

static void attest_init(void)
{
        const struct kw_config *cfg = attest_cfg;
        kw_ratelimit_init(&attest_rl, (uint64_t)cfg->attestation.rate_limit, 0);
        struct kw_attest_cfg c = {
                .tpm_tcti = cfg->attestation.tpm_tcti,
                .pcrs = cfg->attestation.pcrs,
                .ak_handle = (uint32_t)strtoul(cfg->attestation.ak_handle, NULL, 16),
                .snp_device = cfg->attestation.snp_device,
                .tsm_report_dir = cfg->attestation.tsm_report_dir,
                .event_log = cfg->attestation.event_log,
                .image_version = KEYWARD_VERSION,
                .expected_values_id = cfg->attestation.expected_values_id,
        };
        attest_init_code = kw_attest_new(&c, &attest_collector).code;
}

/*
 * A configured TPM that gives no quote is logged once, as one JSON line, when
 * it happens and again only when the reason changes; its return is logged
 * too.  (The evidence says "absent" on every request; the log should not.)
 */
static pthread_mutex_t attest_tpm_mu = PTHREAD_MUTEX_INITIALIZER;
static char attest_tpm_last[512];

static void attest_log_tpm(const char *problem)
{
        pthread_mutex_lock(&attest_tpm_mu);
        if (problem != NULL && strcmp(problem, attest_tpm_last) != 0) {
                kw_log(KW_LOG_WARN, "attestation_tpm_unavailable", "detail", problem, KW_END);
                snprintf(attest_tpm_last, sizeof attest_tpm_last, "%s", problem);
        } else if (problem == NULL && attest_tpm_last[0] != '\0') {
                kw_log(KW_LOG_INFO, "attestation_tpm_available", KW_END);
                attest_tpm_last[0] = '\0';
        }
        pthread_mutex_unlock(&attest_tpm_mu);
}

/* nonce: exactly 64 hex digits -> 32 bytes. */
static int nonce_parse(const char *s, uint8_t out[KW_ATTEST_NONCE_LEN])
{
        if (strlen(s) != 2 * KW_ATTEST_NONCE_LEN)
                return -1;
        for (size_t i = 0; i < KW_ATTEST_NONCE_LEN; i++) {
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
        attest_cfg = front->cfg;
        pthread_once(&attest_once, attest_init);
        unsigned retry = 1;
        if (!kw_ratelimit_take(&attest_rl, &retry)) {
                snprintf(resp->extra_headers, sizeof resp->extra_headers, "Retry-After: %u\r\n", retry);
                attest_fail(req, resp, 429, "too_many_requests", "attestation rate limit exceeded");
                return;
        }
        char hex[130];
        uint8_t nonce[KW_ATTEST_NONCE_LEN];
        if (kw_req_query(req, "nonce", hex, sizeof hex) != 0 || nonce_parse(hex, nonce) != 0) {
                attest_fail(req, resp, 400, "bad_nonce",
                            "nonce: exactly 32 random bytes as 64 hex digits are required");
                return;
        }
        uint8_t spki[32];
        if (attest_init_code != 0 || kw_http_tls_spki_sha256(front->http, spki) != 0) {
                snprintf(resp->extra_headers, sizeof resp->extra_headers, "Retry-After: 1\r\n");
                attest_fail(req, resp, 503, "unavailable", "attestation is not ready");
                return;
        }
        kw_buf_reset(&resp->body);
        int tpm_problem = 0;
        kw_err_clear_detail();
        kw_result r = kw_attest_collect(attest_collector, nonce, spki, &resp->body, &tpm_problem);
        if (r.code != 0) {
                kw_buf_reset(&resp->body);
                attest_fail(req, resp, 500, kw_err_name(r.code), kw_strerror(r.code));
                return;
        }
        attest_log_tpm(tpm_problem ? kw_err_detail() : NULL);
        resp->status = 200;
}
