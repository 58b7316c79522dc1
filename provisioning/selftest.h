/*
 * selftest.h - the last step of first-boot provisioning: a self-test of the
 * freshly started appliance through its real listeners, as its clients
 * reach it (docs/provisioning.md, "Self-test").
 *
 * Checks, in this order, each only when asked:
 *   healthz     GET /healthz: 200 and {"status":"ok"} (or "degraded", which
 *               passes with a warning logged).
 *   XKS health  POST <xks_prefix>/kms/xks/v1/health with a KmsHealthCheck
 *               body, signed with SigV4 (sigv4_sign.h) with the given
 *               credential: 200 and a well-formed health answer whose key
 *               manager is not UNAVAILABLE.
 *   EKM info    POST /azureekm[/<ekm_prefix>]/info?api-version=0.1-preview
 *               without a client certificate: 200 and an info document
 *               (client authentication disabled), or 401 with EKM's own
 *               {"code":"Unauthorized"} (mutual TLS required: the EKM route
 *               answered through the listener).
 * The verdict on each answer is selftest_judge.h's.
 *
 * TLS: the server's certificate is verified against cacert (the appliance's
 * self-signed certificate, host name included), or pinned by the SHA-256
 * of its DER encoding (pin_sha256; then the pin is the only check: no chain,
 * no host name).  There is no insecure mode.
 *
 * Each check is tried up to attempts times while the appliance is not up
 * yet (connection refused or reset, a TLS handshake cut short, a timeout,
 * 503, 429), with a back-off
 * from backoff_ms doubling up to 5 s; each failed attempt is logged
 * (selftest_attempt_failed), every check's outcome too (selftest_passed,
 * selftest_warning, selftest_failed), as JSON lines on stderr (log.h).  A
 * TLS verification failure or a wrong answer is not retried.  The secret
 * access key (secret_file) is read before anything is sent, so that a bad
 * file fails at once; it is kept in the secure heap (secret.h), wiped as
 * soon as the XKS check is over (or the run stops before it), and never
 * logged: what the logs carry is the key id and the kmsRequestId.
 */
#ifndef KWP_SELFTEST_H
#define KWP_SELFTEST_H

#include <stddef.h>
#include <stdint.h>

#include "../server/common/result.h"
#include "selftest_judge.h"

#define KWP_SELFTEST_REGION "us-east-1"
#define KWP_SELFTEST_SERVICE "kms-xks-proxy"

struct kwp_selftest_opts {
        const char *url;           /* https://HOST[:PORT], nothing after (a final '/' is allowed) */
        const char *cacert;        /* PEM file to verify the server with ...                    */
        const char *pin_sha256;    /* ... or 64 hex digits: SHA-256 of its certificate (DER)     */
        /* XKS: all of prefix, key id and one way to the secret, or none */
        const char *xks_prefix;    /* NULL: no XKS check; "" (no prefix) or "/..."               */
        const char *access_key_id;
        const char *secret_file;   /* the secret access key: the file's one line ...             */
        const uint8_t *secret;     /* ... or these bytes (borrowed; the caller wipes them)       */
        size_t secret_len;
        const char *region;        /* NULL: KWP_SELFTEST_REGION                                  */
        const char *service;       /* NULL: KWP_SELFTEST_SERVICE                                 */
        /* EKM */
        const char *ekm_prefix;    /* NULL: no EKM check; "" (no prefix) or azure_ekm_path_prefix */
        unsigned timeout_ms;       /* each request, connection included                          */
        unsigned attempts;         /* each check, while the appliance is not up; at least 1      */
        unsigned backoff_ms;       /* before the second attempt; doubles up to 5 s               */
};

/* No check, no TLS trust; 5000 ms, 10 attempts, 250 ms back-off (about 30 s
 * of waiting at most, plus the requests). */
void kwp_selftest_opts_default(struct kwp_selftest_opts *o);

enum kwp_selftest_check {
        KWP_CHECK_NONE = 0,        /* every check passed                                */
        KWP_CHECK_OPTIONS,         /* nothing was sent: the options or the secret file  */
        KWP_CHECK_HEALTHZ,
        KWP_CHECK_XKS,
        KWP_CHECK_EKM,
};

/* "none", "options", "healthz", "XKS health", "EKM info". */
const char *kwp_selftest_check_name(enum kwp_selftest_check c);

struct kwp_selftest_report {
        enum kwp_selftest_check failed;   /* KWP_CHECK_NONE when everything passed        */
        unsigned passed;                  /* bit (1 << check) of each check that passed   */
        unsigned warned;                  /* of those, bit of each that passed with a warning */
        char why[KWP_WHY_MAX + 64];       /* the one line: "XKS health: 401 AuthenticationFailedException: ..." */
};

/*
 * Runs the checks of o, stopping at the first that fails.  The caller has
 * run curl_global_init.  *report (may be NULL) is always written.
 *
 * KW_OK: every check asked for passed (report->failed == KWP_CHECK_NONE).
 * Failures (kw_err_detail() holds report->why):
 *   KW_ERR_INPUT      the options are wrong (report->failed: KWP_CHECK_OPTIONS);
 *                     nothing was sent
 *   KW_ERR_IO         the secret file cannot be read, or is not one line of 1 to
 *                     256 printable characters (KWP_CHECK_OPTIONS)
 *   KW_ERR_BAD_STATE  a check failed: report->failed names it, report->why says
 *                     what the appliance answered (or why it could not be asked)
 *   KW_ERR_NOMEM      libcurl or the secure heap ran out
 */
KW_MUST_USE kw_result kwp_selftest_run(const struct kwp_selftest_opts *o, struct kwp_selftest_report *report);

#endif
