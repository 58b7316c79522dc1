/*
 * selftest_judge.h - what keyward-provision's self-test (selftest.h) makes
 * of each answer of the appliance: pure functions of the HTTP status and
 * the body, so that every verdict is unit-tested (selftest_judge_test.c)
 * and fuzzed (tests/fuzz/selftest_judge_fuzz.c) without a server.
 *
 * The bodies come from the network (through TLS to the appliance the
 * self-test pinned, but still bytes to be careful with): parsed strictly
 * (json_io.h), read only through typed getters, and quoted in messages only
 * as printable ASCII, cut short.
 */
#ifndef KWP_SELFTEST_JUDGE_H
#define KWP_SELFTEST_JUDGE_H

#include <stddef.h>
#include <stdint.h>

#include "../server/common/result.h"

enum kwp_verdict {
        KWP_PASS = 0,   /* the check passed                                        */
        KWP_WARN,       /* passed, with something to say (a degraded service)      */
        KWP_RETRY,      /* not (yet) up: 503 or 429; worth another attempt          */
        KWP_FAIL,       /* a wrong answer: another attempt will not change it       */
};

/* Longest why: what the judges write, quotes of the server included. */
#define KWP_WHY_MAX 384

/*
 * Each judge reads one answer (status: the HTTP status; body: len bytes,
 * any content) and writes one line to why (whysz bytes, always
 * NUL-terminated when whysz > 0) that says what the answer was, for the
 * log and for the failure line:
 *
 * GET /healthz: 200 {"status":"ok"} passes; 200 {"status":"degraded",
 * "warnings":[...]} warns with the warnings; 503 (the custody process or
 * the HSM not up yet) is retried, with the body's error and message;
 * anything else fails.
 */
KW_MUST_USE enum kwp_verdict kwp_judge_healthz(long status, const uint8_t *body, size_t len, char *why,
                                               size_t whysz);

/*
 * POST <prefix>/kms/xks/v1/health: 200 with the XKS health document
 * (xksProxyFleetSize >= 1, xksProxyVendor, xksProxyModel, ekmVendor,
 * ekmFleetDetails: 1..10 of {id, model, healthStatus}) passes when every
 * healthStatus is ACTIVE, warns when one is DEGRADED, fails when one is
 * UNAVAILABLE.  An XKS error {"errorName","errorMessage"} with 503 or 429
 * is retried, any other fails as "<status> <errorName>: <errorMessage>";
 * a body that is not XKS's fails (503 and 429 are still retried).
 */
KW_MUST_USE enum kwp_verdict kwp_judge_xks_health(long status, const uint8_t *body, size_t len, char *why,
                                                  size_t whysz);

/*
 * POST /azureekm[/prefix]/info: 200 with the EKM info document
 * (api_version, proxy_vendor, proxy_name, ekm_vendor, ekm_product) passes
 * (client authentication disabled); so does 401 with the EKM error
 * {"code":"Unauthorized","message"} that a request without a client
 * certificate gets (the EKM route answered through the listener).  An EKM
 * error with 503 or 429 is retried, any other fails as "<status> <code>:
 * <message>"; any other body (the catch-all routes answered: EKM is not
 * enabled) fails, saying so (503 and 429 are still retried).
 */
KW_MUST_USE enum kwp_verdict kwp_judge_ekm_info(long status, const uint8_t *body, size_t len, char *why,
                                                size_t whysz);

#endif
