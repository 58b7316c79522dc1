/*
 * sigv4_sign.h - AWS Signature Version 4 (AWS4-HMAC-SHA256), signing side:
 * what keyward-provision's self-test (selftest.h) needs to call the
 * appliance's XKS proxy as AWS KMS does.
 *
 * Pure (no I/O, no heap, no global state) and built on the server's own
 * halves of SigV4, so that the client and the verifier cannot drift apart:
 * the canonical request and the string to sign come from the verifier's
 * front/sigv4.h (kw_sigv4_string_to_sign), the HMAC chain from
 * custody/sigv4_key.h, and the Authorization header is checked by the
 * verifier's own parser (kw_sigv4_parse_authorization) before it is
 * signed.  Unit-tested against AWS's SigV4 test suite and by verifying its
 * output the way the custody process does (sigv4_sign_test.c).
 */
#ifndef KWP_SIGV4_SIGN_H
#define KWP_SIGV4_SIGN_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "../server/common/result.h"
#include "../server/front/sigv4.h"

/* Longest Authorization value: the algorithm, a 128-character key id, a
 * scope of two 64-character parts, 16 header names of 64, 64 hex digits. */
#define KWP_SIGV4_AUTHZ_MAX 1536
#define KWP_SIGV4_AMZ_DATE_LEN 16   /* yyyymmddThhmmssZ */

/* Who signs.  Nothing is copied: the secret stays the caller's, who wipes it. */
struct kwp_sigv4_cred {
        const char *akid;              /* [A-Za-z0-9]{1,128}                       */
        const uint8_t *secret;         /* the secret access key, 1..256 bytes      */
        size_t secret_len;
        const char *region;            /* [A-Za-z0-9_-]{1,64}, e.g. "us-east-1"    */
        const char *service;           /* [A-Za-z0-9_-]{1,64}, e.g. "kms-xks-proxy" */
};

/*
 * t (UTC seconds, years 1970..9999) as X-Amz-Date "yyyymmddThhmmssZ" into
 * ret (NUL-terminated).  KW_ERR_INPUT when t is out of that range; ret
 * untouched on failure.
 */
KW_MUST_USE kw_result kwp_sigv4_amz_date(time_t t, char ret[KWP_SIGV4_AMZ_DATE_LEN + 1]);

/*
 * The Authorization header value
 *   AWS4-HMAC-SHA256 Credential=<akid>/<yyyymmdd>/<region>/<service>/aws4_request,
 *   SignedHeaders=<a;b;c>, Signature=<64 lower-case hex>
 * for req, signing every header of req: pass exactly the headers that are
 * signed (they must include Host and X-Amz-Date, whose day is the scope's
 * day) and send them as given; a header added afterwards is not covered.
 * Names are lower-cased and a name given twice is one signed header with
 * both values (the SigV4 rule).  req->normalize_path: 0 signs the path as
 * sent (what the XKS proxy verifies), 1 removes dot segments first (AWS's
 * generic rule, the test suite's).
 *
 * Written to ret (authz_sz bytes, NUL-terminated) only on success.
 * Failures: KW_ERR_INPUT for a request or credential the verifier would
 * refuse (no Host or X-Amz-Date, a header name outside [A-Za-z0-9._-],
 * more than KW_SIGV4_MAX_SIGNED names, a bad key id, region or service; the
 * detail says which), KW_ERR_BAD_LENGTH for a secret of 0 or more than 256
 * bytes, KW_ERR_TOO_LARGE when the canonical request or the result does not
 * fit, KW_ERR_CRYPTO when OpenSSL fails.  The signing key derived from the
 * secret is wiped before return.
 */
KW_MUST_USE kw_result kwp_sigv4_sign(const struct kw_sigv4_request *req, const struct kwp_sigv4_cred *cred,
                                     char *ret, size_t authz_sz);

#endif
