/*
 * sigv4.h - AWS Signature Version 4 (AWS4-HMAC-SHA256), verify side, as
 * pure functions over the parts of a request (no I/O, no heap, no global
 * state).  General enough for AWS's SigV4 test suite (query strings, path
 * normalisation, repeated headers); the XKS route applies its own policy
 * on top (service, region, empty query, clock skew).
 *
 * The split of the work (privilege separation, docs/xks.md): the front
 * parses the Authorization header and builds the canonical request and the
 * string to sign; the custody process, which alone holds the secrets,
 * checks that they describe this request, derives the signing key and
 * compares the signature in constant time (custody/sigv4_key.h).
 */
#ifndef KW_SIGV4_H
#define KW_SIGV4_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "../common/result.h"
#include "../common/sigv4_sts.h"

#define KW_SIGV4_MAX_SIGNED 16          /* signed headers per request              */
#define KW_SIGV4_MAX_HEADER_NAME 64
#define KW_SIGV4_MAX_QUERY_PARAMS 64

/* The Authorization header, parsed. */
struct kw_sigv4_auth {
        char akid[KW_SIGV4_MAX_AKID + 1];
        char date[9];                                   /* yyyymmdd of the scope   */
        char region[KW_SIGV4_MAX_SCOPE_PART + 1];
        char service[KW_SIGV4_MAX_SCOPE_PART + 1];
        size_t n_signed;
        char signed_headers[KW_SIGV4_MAX_SIGNED][KW_SIGV4_MAX_HEADER_NAME + 1];
        uint8_t signature[32];
};

/* One header line as received (name any case, value untrimmed). */
struct kw_sigv4_header {
        const char *name;
        size_t name_len;
        const char *value;
        size_t value_len;
};

struct kw_sigv4_request {
        const char *method;
        const char *path;              /* as on the request line, without the query */
        const char *query;             /* raw query string, or NULL                 */
        const struct kw_sigv4_header *headers;   /* every header, in received order */
        size_t n_headers;
        const uint8_t *body;
        size_t body_len;
        int normalize_path;            /* 1: remove "." / ".." segments and empty
                                          segments (the test suite's rule); 0: the
                                          path as received (XKS)                  */
};

/*
 * Parses "AWS4-HMAC-SHA256 Credential=<akid>/<yyyymmdd>/<region>/<service>/aws4_request,
 * SignedHeaders=<a;b;c>, Signature=<64 hex>" (components in any order, each
 * once, separated by ',' with optional spaces).  SignedHeaders must be
 * lower case, strictly sorted, without duplicates, and include host and
 * x-amz-date.  KW_ERR_AUTH on anything else (detail says what); *ret set
 * only on success.
 */
KW_MUST_USE kw_result kw_sigv4_parse_authorization(const char *hdr, struct kw_sigv4_auth *ret);

/*
 * Canonical request (AWS SigV4 task 1) of req for the signed headers of
 * auth, written to out (outsz bytes, NUL-terminated), length in *ret_len.
 * A signed header that is absent: KW_ERR_AUTH.  Too large: KW_ERR_TOO_LARGE.
 */
KW_MUST_USE kw_result kw_sigv4_canonical_request(const struct kw_sigv4_request *req,
                                                 const struct kw_sigv4_auth *auth, char *out,
                                                 size_t outsz, size_t *ret_len);

/*
 * What is signed (tasks 1 and 2): the canonical request of req and its
 * string to sign "AWS4-HMAC-SHA256\n<x-amz-date>\n<scope>\n<hex
 * sha256(canonical request)>".  The x-amz-date header must be
 * yyyymmddThhmmssZ and its day must be the scope's day.  Both texts go to
 * the custody process, which checks that one hashes to the other before it
 * verifies the signature.  *ret set only on success.
 */
struct kw_sigv4_signed {
        char creq[KW_SIGV4_CREQ_MAX];
        size_t creq_len;
        char sts[KW_SIGV4_STS_MAX];
        size_t sts_len;
        time_t when;                   /* the request time (UTC seconds) */
};
KW_MUST_USE kw_result kw_sigv4_string_to_sign(const struct kw_sigv4_request *req,
                                              const struct kw_sigv4_auth *auth,
                                              struct kw_sigv4_signed *ret);

#endif
