/*
 * sigv4_sts.h - the AWS SigV4 (AWS4-HMAC-SHA256) string to sign and
 * canonical request as the two processes exchange them: the front writes
 * them (front/sigv4.c), the custody process reads them back before it
 * verifies a signature (custody/custody_xks.c).  Pure functions over
 * bounded buffers.
 */
#ifndef KW_SIGV4_STS_H
#define KW_SIGV4_STS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "result.h"

#define KW_SIGV4_ALG "AWS4-HMAC-SHA256"
#define KW_SIGV4_MAX_AKID 128
#define KW_SIGV4_MAX_SCOPE_PART 64      /* region, service                          */
#define KW_SIGV4_STS_MAX 512            /* string to sign (custody tag cap)         */
#define KW_SIGV4_CREQ_MAX 16384         /* canonical request                        */
#define KW_SIGV4_SKEW_S 300             /* +- 5 minutes                             */

/* Reads back the parts of a string to sign "AWS4-HMAC-SHA256\n<yyyymmddThhmmssZ>\n
 * <yyyymmdd>/<region>/<service>/aws4_request\n<64 lower-case hex>": the
 * request time, the scope's date, region and service (copied,
 * NUL-terminated) and the hash of the canonical request.  KW_ERR_AUTH when
 * it is not exactly that form; *ret set only on success. */
struct kw_sigv4_scope {
        time_t when;
        char date[9];
        char region[KW_SIGV4_MAX_SCOPE_PART + 1];
        char service[KW_SIGV4_MAX_SCOPE_PART + 1];
        uint8_t creq_sha256[32];
};
KW_MUST_USE kw_result kw_sigv4_sts_parse(const char *sts, size_t len, struct kw_sigv4_scope *ret);

/* The lines of a canonical request that say what was signed: method, path,
 * query and the payload hash (the last line), pointing into creq.
 * KW_ERR_AUTH when creq does not have the canonical form (at least six
 * lines; a 64 lower-case hex payload hash, decoded into payload_sha256). */
struct kw_sigv4_creq {
        const char *method, *path, *query;
        size_t method_len, path_len, query_len;
        uint8_t payload_sha256[32];
};
KW_MUST_USE kw_result kw_sigv4_creq_parse(const char *creq, size_t len, struct kw_sigv4_creq *ret);

/* "yyyymmddThhmmssZ" -> UTC seconds; -1 when malformed. */
time_t kw_sigv4_parse_amz_date(const char *s, size_t n);
/* [A-Za-z0-9_-]{1,64}: a region or service name of a credential scope. */
int kw_sigv4_scope_part_ok(const char *s, size_t n);

#endif
