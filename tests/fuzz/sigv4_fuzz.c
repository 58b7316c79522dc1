/*
 * sigv4_fuzz.c - the SigV4 verifier's parsers on arbitrary bytes.
 *
 * Input: line 1 = the Authorization header, line 2 = the request path
 * (optionally "?query"), then "Name:value" header lines, an empty line,
 * the body.  Every function must return one of its documented codes, never
 * read out of bounds; a string to sign that is produced must parse back
 * (kw_sigv4_sts_parse) with the scope of the Authorization header.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "front/sigv4.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_H 24

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size > 16384)
                return 0;
        char *buf = malloc(size + 1);
        if (buf == NULL)
                return 0;
        memcpy(buf, data, size);
        buf[size] = '\0';
        char *lines[3 + MAX_H] = { 0 };
        size_t nl = 0;
        char *p = buf, *body = NULL;
        while (nl < 3 + MAX_H) {
                char *e = strchr(p, '\n');
                lines[nl++] = p;
                if (e == NULL)
                        break;
                *e = '\0';
                p = e + 1;
                if (nl >= 2 && lines[nl - 1][0] == '\0') {
                        body = p;
                        break;
                }
        }
        struct kw_sigv4_auth a;
        kw_result r = kw_sigv4_parse_authorization(lines[0], &a);
        if (r.code != 0 && r.code != KW_ERR_AUTH)
                abort();
        /* the string-to-sign parser on the raw input, too */
        struct kw_sigv4_scope sc;
        r = kw_sigv4_sts_parse((const char *)data, size, &sc);
        if (r.code != 0 && r.code != KW_ERR_AUTH)
                abort();
        struct kw_sigv4_creq any;
        r = kw_sigv4_creq_parse((const char *)data, size, &any);
        if (r.code == 0 && (any.method + any.method_len > (const char *)data + size ||
                            any.path + any.path_len > (const char *)data + size ||
                            any.query + any.query_len > (const char *)data + size))
                abort();
        if (r.code != 0 && r.code != KW_ERR_AUTH)
                abort();
        if (kw_sigv4_parse_authorization(lines[0], &a).code == 0 && nl >= 2) {
                char path[2048];
                size_t pl = strnlen(lines[1], sizeof path - 1);
                memcpy(path, lines[1], pl);
                path[pl] = '\0';
                char *q = strchr(path, '?');
                if (q != NULL)
                        *q++ = '\0';
                struct kw_sigv4_header h[MAX_H];
                size_t nh = 0;
                for (size_t i = 2; i < nl && nh < MAX_H; i++) {
                        char *c = strchr(lines[i], ':');
                        if (c == NULL)
                                continue;
                        h[nh++] = (struct kw_sigv4_header){ lines[i], (size_t)(c - lines[i]), c + 1,
                                                            strlen(c + 1) };
                }
                for (int norm = 0; norm < 2; norm++) {
                        struct kw_sigv4_request rq = {
                                .method = "POST", .path = path, .query = q, .headers = h,
                                .n_headers = nh, .body = (const uint8_t *)(body ? body : ""),
                                .body_len = body ? strlen(body) : 0, .normalize_path = norm };
                        static struct kw_sigv4_signed sg;
                        r = kw_sigv4_string_to_sign(&rq, &a, &sg);
                        if (r.code != 0 && r.code != KW_ERR_AUTH && r.code != KW_ERR_TOO_LARGE)
                                abort();
                        struct kw_sigv4_creq cr;
                        if (r.code == 0) {
                                if (kw_sigv4_sts_parse(sg.sts, sg.sts_len, &sc).code != 0 ||
                                    strcmp(sc.region, a.region) != 0 ||
                                    strcmp(sc.service, a.service) != 0 || sc.when != sg.when ||
                                    kw_sigv4_creq_parse(sg.creq, sg.creq_len, &cr).code != 0 ||
                                    cr.method_len != 4 || memcmp(cr.method, "POST", 4) != 0)
                                        abort();
                        }
                }
        }
        free(buf);
        return 0;
}
