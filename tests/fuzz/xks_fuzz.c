/*
 * xks_fuzz.c - the XKS request parsers, both halves: the front's route
 * parser (path -> key id, operation) and the custody process's parsers of
 * what AWS signed (the signed path, the body: requestMetadata and each
 * operation's fields, base64 decoding, size caps, the ciphertextMetadata).
 * Includes route_xks.c and xks_request.c to reach their static functions.
 *
 * Input: the path up to '\n', the rest is the body.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/front/route_xks.c"
#define xks_op custody_xks_op
#define XKS_HEALTH C_XKS_HEALTH
#define XKS_METADATA C_XKS_METADATA
#define XKS_ENCRYPT C_XKS_ENCRYPT
#define XKS_DECRYPT C_XKS_DECRYPT
#undef XKS_KEY_ID_MAX   /* both files define it (128) */
#define key_id_char c_key_id_char
#define mono_ms c_mono_ms
#define json_wipe c_json_wipe
#define put_b64_member c_put_b64_member
#include "../../server/custody/xks_request.c"

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

        /* the front's route */
        struct xks_call x;
        memset(&x, 0, sizeof x);
        const char *root = strstr(path, XKS_ROOT);
        int front_routes = 0;
        if (root != NULL) {
                size_t pre = (size_t)(root - path);
                front_routes = prefix_chars_ok(path, pre) && parse_rest(root + strlen(XKS_ROOT), &x);
        }
        /* custody's route of the signed path (after a store prefix): it must
         * agree with the front's on every path the front routes */
        enum custody_xks_op op = C_XKS_HEALTH;
        char key[XKS_KEY_ID_MAX + 1];
        kw_result cr = xks_route(path, plen, &op, key);
        if (cr.code != 0 && cr.code != KW_ERR_NO_ROUTE)
                abort();
        if (cr.code == 0) {
                size_t kl = op == C_XKS_HEALTH ? 0 : strlen(key);
                if (kl > XKS_KEY_ID_MAX || (op != C_XKS_HEALTH && kl == 0))
                        abort();
                for (size_t i = 0; i < kl; i++)
                        if (!c_key_id_char(key[i]))
                                abort();
        }
        if (root == path && strlen(path) == plen && front_routes != (cr.code == 0))
                abort();

        /* custody's body parser, for every operation */
        cJSON *doc = NULL;
        kw_result r = kw_json_parse(body, blen, XKS_JSON_DEPTH, &doc);
        check(r);
        for (int o = C_XKS_HEALTH; r.code == 0 && o <= C_XKS_DECRYPT; o++) {
                struct xks_body in;
                body_init(&in);
                kw_result b = body_parse((enum custody_xks_op)o, doc, &in);
                check(b);
                if (b.code == 0 && (in.pt.len > XKS_PT_MAX || in.ct.len > XKS_PT_MAX ||
                                    in.aad.len > XKS_AAD_MAX || in.iv.len > 16 || in.tag.len > 16))
                        abort();
                if (b.code == 0 && in.has_md) {
                        uint32_t v = 0;
                        kw_result m = kw_xks_md_parse(in.md.p, in.md.len, &v);
                        if (m.code != 0 && m.code != KW_ERR_DECRYPT)
                                abort();
                        if (m.code == 0 && v == 0)
                                abort();
                }
                body_free(&in);
        }
        if (doc != NULL)
                c_json_wipe(doc);
        cJSON_Delete(doc);
        free(path);
        return 0;
}
