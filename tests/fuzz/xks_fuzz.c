/*
 * xks_fuzz.c - the XKS request parser: the path (route, key id, operation)
 * and the body (requestMetadata and each operation's fields, base64
 * decoding, size caps), as kw_route_xks runs them before any custody call;
 * plus the ciphertextMetadata parser.  Includes route_xks.c to reach its
 * static functions.
 *
 * Input: the path up to '\n', the rest is the body.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/front/route_xks.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(kw_result r)
{
        switch (r.code) {
        case 0: case KW_ERR_BAD_JSON: case KW_ERR_BAD_ENCODING: case KW_ERR_MISSING_FIELD:
        case KW_ERR_BAD_FIELD: case KW_ERR_UNSUPPORTED: case KW_ERR_TOO_LARGE:
                return;
        default:
                abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size > 70000)
                return 0;
        const uint8_t *nl = memchr(data, '\n', size);
        size_t plen = nl ? (size_t)(nl - data) : size;
        char *path = malloc(plen + 1);
        if (path == NULL)
                abort();
        memcpy(path, data, plen);
        path[plen] = '\0';
        const uint8_t *body = nl ? nl + 1 : data + size;
        size_t blen = nl ? size - plen - 1 : 0;

        struct xks_call x;
        memset(&x, 0, sizeof x);
        const char *root = strstr(path, XKS_ROOT);
        if (root != NULL) {
                size_t pre = (size_t)(root - path);
                if (prefix_chars_ok(path, pre) && parse_rest(root + strlen(XKS_ROOT), &x)) {
                        size_t kl = strlen(x.key_id);
                        if (kl > XKS_KEY_ID_MAX || (x.op != XKS_HEALTH && kl == 0))
                                abort();
                        for (size_t i = 0; i < kl; i++)
                                if (!key_id_char(x.key_id[i]))
                                        abort();
                }
        }
        cJSON *doc = NULL;
        kw_result r = kw_json_parse(body, blen, XKS_JSON_DEPTH, &doc);
        check(r);
        for (int op = XKS_HEALTH; r.code == 0 && op <= XKS_DECRYPT; op++) {
                x.op = (enum xks_op)op;
                check(get_meta(&x, doc));
                static const char *const fields[] = { "plaintext", "ciphertext",
                                                      "additionalAuthenticatedData",
                                                      "initializationVector", "ciphertextMetadata" };
                for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
                        struct kw_buf b;
                        kw_buf_init(&b, XKS_PT_MAX);
                        int has = 0;
                        kw_result g = get_b64(doc, fields[i], 0, i == 0 || i == 1 ? XKS_PT_MAX : 16, &b, &has);
                        check(g);
                        if (g.code == 0 && has && b.len > (i == 0 || i == 1 ? (size_t)XKS_PT_MAX : 16u))
                                abort();
                        if (g.code == 0 && has) {
                                uint32_t v = 0;
                                kw_result m = kw_xks_md_parse(b.p, b.len, &v);
                                if (m.code != 0 && m.code != KW_ERR_DECRYPT)
                                        abort();
                                if (m.code == 0 && v == 0)
                                        abort();
                        }
                        kw_buf_free(&b);
                }
                check(get_alg(doc));
        }
        if (doc != NULL)
                json_wipe(doc);
        cJSON_Delete(doc);
        free(path);
        return 0;
}
