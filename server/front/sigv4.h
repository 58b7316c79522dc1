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
 * derives the signing key and compares the signature in constant time
 * (kw_sigv4_signing_key / kw_sigv4_signature are used there).
 */
#ifndef KW_SIGV4_H
#define KW_SIGV4_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>

#include "../common/result.h"

#define KW_SIGV4_ALG "AWS4-HMAC-SHA256"
#define KW_SIGV4_MAX_SIGNED 16          /* signed headers per request              */
#define KW_SIGV4_MAX_HEADER_NAME 64
#define KW_SIGV4_MAX_AKID 128
#define KW_SIGV4_MAX_SCOPE_PART 64      /* region, service                          */
#define KW_SIGV4_STS_MAX 512            /* string to sign (custody tag cap)         */
#define KW_SIGV4_CREQ_MAX 16384         /* canonical request                        */
#define KW_SIGV4_MAX_QUERY_PARAMS 64
#define KW_SIGV4_SKEW_S 300             /* +- 5 minutes                             */

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
 * String to sign (task 2) for req: "AWS4-HMAC-SHA256\n<x-amz-date>\n<scope>\n
 * <hex sha256(canonical request)>".  The x-amz-date header must be
 * yyyymmddThhmmssZ and its day must be the scope's day.  out holds at least
 * KW_SIGV4_STS_MAX bytes.  *ret_time = the request time (UTC seconds).
 */
KW_MUST_USE kw_result kw_sigv4_string_to_sign(const struct kw_sigv4_request *req,
                                              const struct kw_sigv4_auth *auth, char *out,
                                              size_t outsz, size_t *ret_len, time_t *ret_time);

/*
 * Reads back the parts of a string to sign (custody side): the request
 * time, and the scope's date, region and service (copied, NUL-terminated).
 * KW_ERR_AUTH when it is not exactly the form above.
 */
struct kw_sigv4_scope {
        time_t when;
        char date[9];
        char region[KW_SIGV4_MAX_SCOPE_PART + 1];
        char service[KW_SIGV4_MAX_SCOPE_PART + 1];
};
KW_MUST_USE kw_result kw_sigv4_sts_parse(const char *sts, size_t len, struct kw_sigv4_scope *ret);

/* kSigning = HMAC chain over "AWS4"+secret, date, region, service, "aws4_request". */
KW_MUST_USE kw_result kw_sigv4_signing_key(const uint8_t *secret, size_t secret_len,
                                           const char *date, const char *region,
                                           const char *service, uint8_t ret_key[32]);
/* HMAC-SHA256(key, sts). */
KW_MUST_USE kw_result kw_sigv4_signature(const uint8_t key[32], const char *sts, size_t len,
                                         uint8_t ret_sig[32]);

/* The same HMAC, keyed once and reused: kw_sigv4_mac_new keys an HMAC-SHA256
 * context with a signing key (free it with EVP_MAC_CTX_free, which wipes
 * it); per signature, EVP_MAC_CTX_dup that context (callers serialise dups
 * of one context) and pass the copy to kw_sigv4_mac_finish, which computes
 * HMAC(key, sts) and frees the copy in every case. */
KW_MUST_USE kw_result kw_sigv4_mac_new(const uint8_t key[32], EVP_MAC_CTX **ret);
KW_MUST_USE kw_result kw_sigv4_mac_finish(EVP_MAC_CTX *m, const char *sts, size_t len,
                                          uint8_t ret_sig[32]);

/* "yyyymmddThhmmssZ" -> UTC seconds; -1 when malformed. */
time_t kw_sigv4_parse_amz_date(const char *s, size_t n);

#endif
