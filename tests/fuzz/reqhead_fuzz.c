/*
 * reqhead_fuzz.c - kw_reqhead_check on request heads parsed by CivetWeb's
 * own parser.
 *
 * civetweb.c (Debian's source, unmodified) is included, as wireguard's fuzz
 * targets include their .c, to reach its static framing and parsing:
 * get_http_header_len() as read_message() runs it, parse_http_request() on
 * a buffer of the size the server uses, the query split of handle_request()
 * and the checks that stand between a parsed head and our handler.  The
 * input is what a client sent, laid at the start of that buffer; the rest
 * holds stale bytes (of a previous request, or "\r\0").  Checked:
 * - no read outside the buffer (ASan: it is exactly REQ_HEAD_MAX bytes);
 * - only the documented codes (KW_ERR_INTERNAL would mean that the parse
 *   left the buffer other than reqhead.c assumes: abort);
 * - soundness, when a head is accepted: its end is where CivetWeb frames
 *   the body, and the bytes sent are tiled exactly by what CivetWeb kept:
 *   the request line, its line end, then each kept header line as
 *   name ":" OWS value CRLF (name of token characters, no space before the
 *   colon), then CRLF - so no line was hidden from CivetWeb.  The two
 *   documented exceptions of reqhead.h/.c are allowed explicitly: a request
 *   line ended by CR CR, CR SP, LF CR or LF SP, and a head ended by LF LF
 *   whose next two bytes are CR NUL.
 */
#include "civetweb.c"
/* civetweb.c bans the libc allocator names for its own code */
#undef malloc
#undef free

#include "front/reqhead.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQ_HEAD_MAX 16384

static int is_tchar(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size == 0 || size > REQ_HEAD_MAX)
                return 0;
        /* read_message(): the head ends with the first terminator from the
         * buffer's start */
        int framed = get_http_header_len((const char *)data, (int)size);
        if (framed <= 0)
                return 0;
        char *buf = malloc(REQ_HEAD_MAX);
        if (buf == NULL)
                return 0;
        memcpy(buf, data, size);
        for (size_t i = size; i < REQ_HEAD_MAX; i++)
                buf[i] = (size & 1) ? "\r\0"[(i - size) & 1] : 'A';
        struct mg_request_info ri;
        memset(&ri, 0, sizeof ri);
        if (parse_http_request(buf, REQ_HEAD_MAX, &ri) <= 0 || ri.http_version == NULL ||
            (strcmp(ri.http_version, "1.0") != 0 && strcmp(ri.http_version, "1.1") != 0) ||
            get_uri_type(ri.request_uri) < 2) {
                free(buf);
                return 0;      /* CivetWeb answers these itself */
        }
        char *q = strchr(ri.request_uri, '?');
        if (q != NULL) {
                *q = '\0';
                ri.query_string = q + 1;
        }
        struct kw_reqhead h = {
                .buf = buf, .buf_size = REQ_HEAD_MAX, .method = ri.request_method,
                .uri = ri.request_uri, .query = ri.query_string, .version = ri.http_version,
                .headers = ri.http_headers, .num_headers = ri.num_headers,
        };
        size_t end = 0;
        kw_result r = kw_reqhead_check(&h, &end);
        if (r.code != 0 && r.code != KW_ERR_INPUT && r.code != KW_ERR_TOO_LARGE)
                abort();
        if (r.code == 0) {
                size_t f = (size_t)framed;
                int lf_lf = end == f + 2 && f >= 2 && data[f - 2] == '\n' && data[f - 1] == '\n' &&
                            buf[f] == '\r' && buf[f + 1] == '\0';
                if (end != f && !lf_lf)
                        abort();
                /* the head as sent is tiled by what CivetWeb kept: request
                 * line, two bytes, then each kept line as "name:" OWS value
                 * CRLF, one after the other, then CRLF */
                const char *o = (const char *)data;
                size_t at = (size_t)(ri.http_version - buf) + strlen(ri.http_version);
                if (ri.request_method != buf || memchr(o, '\n', at) != NULL || memchr(o, '\r', at) != NULL)
                        abort();
                /* the documented blind spot: CR CR, CR SP, LF CR, LF SP read as CRLF */
                static const char *const eol[] = { "\r\n", "\r\r", "\r ", "\n\r", "\n " };
                int eol_ok = 0;
                for (size_t k = 0; k < sizeof eol / sizeof eol[0]; k++)
                        eol_ok |= memcmp(o + at, eol[k], 2) == 0;
                if (!eol_ok)
                        abort();
                at += 2;
                for (int k = 0; k < ri.num_headers; k++) {
                        const char *name = ri.http_headers[k].name, *val = ri.http_headers[k].value;
                        size_t nn = strlen(name), vn = strlen(val);
                        if (name != buf + at || nn == 0 || o[at + nn] != ':')
                                abort();
                        for (size_t i = 0; i < nn; i++)
                                if (!is_tchar((unsigned char)name[i]))
                                        abort();
                        at = (size_t)(val - buf);
                        for (size_t i = (size_t)(name - buf) + nn + 1; i < at; i++)
                                if (o[i] != ' ' && o[i] != '\t')
                                        abort();
                        if (memcmp(o + at, val, vn) != 0)
                                abort();
                        at += vn;
                        int last = k + 1 == ri.num_headers;
                        if (last && lf_lf) {
                                if (at + 2 != f || o[at] != '\n' || o[at + 1] != '\n')
                                        abort();
                                break;
                        }
                        if (o[at] != '\r' || o[at + 1] != '\n')
                                abort();
                        at += 2;
                        if (last && (at + 2 != f || o[at] != '\r' || o[at + 1] != '\n'))
                                abort();
                }
        }
        free(buf);
        return 0;
}
