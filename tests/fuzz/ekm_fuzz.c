/*
 * ekm_fuzz.c - the EKM request parser: path, api-version query and JSON
 * body, as kw_route_ekm runs them before any custody call, plus the
 * metadata converter of a custody document and the base64url decoding of
 * the value.  Includes route_ekm.c to reach its static functions.
 *
 * Input: byte 0 picks the configured prefix ("" or "p/q"); then the path
 * up to '\n', the query up to the next '\n', and the rest is the body
 * (also fed to the metadata converter).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/front/route_ekm.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *take_line(const uint8_t **p, size_t *n)
{
        const uint8_t *nl = memchr(*p, '\n', *n);
        size_t len = nl ? (size_t)(nl - *p) : *n;
        char *s = malloc(len + 1);
        if (s == NULL)
                abort();
        memcpy(s, *p, len);
        s[len] = '\0';
        *p += nl ? len + 1 : len;
        *n -= nl ? len + 1 : len;
        return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1)
                return 0;
        const char *prefix = (data[0] & 1) ? "p/q" : "";
        const uint8_t *p = data + 1;
        size_t n = size - 1;
        char *path = take_line(&p, &n);
        char *query = take_line(&p, &n);
        uint8_t *body = malloc(n + 1);
        if (body == NULL)
                abort();
        memcpy(body, p, n);
        body[n] = '\0';

        struct ekm_request rq;
        memset(&rq, 0, sizeof rq);
        if (ekm_path_parse(path, prefix, &rq).code == 0) {
                if (rq.op < EKM_OP_INFO || rq.op > EKM_OP_UNWRAP)
                        abort();
                if (rq.op != EKM_OP_INFO && !kw_ekm_key_name_valid(rq.key))
                        abort();
        } else {
                rq.op = (data[0] >> 1) % 4 + EKM_OP_INFO;
        }
        kw_ignore(ekm_api_version_check(query[0] ? query : NULL));
        cJSON *doc = NULL;
        if (ekm_body_parse(body, n, &rq, &doc).code == 0) {
                if (rq.op == EKM_OP_WRAP || rq.op == EKM_OP_UNWRAP) {
                        if (rq.value == NULL || rq.value_len == 0 || rq.value_len > EKM_VALUE_MAX_CHARS)
                                abort();
                        struct kw_buf in;
                        kw_buf_init(&in, EKM_VALUE_MAX_BYTES);
                        kw_ignore(kw_b64url_decode(rq.value, rq.value_len, &in));
                        kw_buf_free(&in);
                }
                ekm_json_wipe(doc);
                cJSON_Delete(doc);
        }
        struct kw_buf out;
        kw_buf_init(&out, 16384);
        kw_ignore(ekm_metadata_from_doc((const char *)body, n, &out));
        kw_buf_free(&out);
        struct ekm_error e = ekm_error_of(-(int)(data[0] % 10) * 100 - (int)(n % 12), rq.op);
        if (e.status < 400 || e.status > 599 || e.code == NULL || e.message == NULL)
                abort();
        free(body);
        free(query);
        free(path);
        return 0;
}
