/*
 * reqhead.c - the request head as CivetWeb 1.15 parsed it, checked against
 * its own bytes (see reqhead.h for why).
 *
 * What parse_http_request() does to the head, in civetweb.c:
 * - leading isspace() bytes are skipped (W of them; read_message() frames
 *   the body with the first "\n\n" or "\r\n\r\n" counted from the buffer
 *   start, so an empty line in W moves the body into the head);
 * - the last byte of the head (the final '\n') becomes NUL;
 * - skip_to_end_of_word_and_terminate() ends the method and the target at
 *   a ' ' and the version at '\r' or '\n', and turns that byte and every
 *   isspace() byte after it into NUL;
 * - parse_http_headers(), per line: the name runs over bytes 33..126 other
 *   than ':'; spaces after it become NUL, the ':' becomes NUL; SP/HT after it
 *   are skipped (kept); the value runs to '\r' or '\n', which becomes NUL
 *   ('\r' must be followed by '\n', which also becomes NUL); the next line
 *   starts right after.  It stops after 64 lines, or when a line does not
 *   start with a name byte, or starts with '\r' or '\n' - silently.
 * get_http_header_len() has already refused any other control byte (TAB
 * and NUL included) before the head's end, and handle_request() turns the
 * '?' of the target into NUL (query_string points after it).
 *
 * So after the last kept value's NUL at e:
 *   CRLF, then the final CRLF:  e = "\0\0\r\0"  (e[3] is the head's last byte)
 *   CRLF, then any other line:  e = "\0\0" + the line's first byte (not NUL)
 *   LF, then another line:      e = "\0" + its first byte (not NUL)
 *   LF, then the final LF:      e = "\0\0" and the head ends at e[1]
 * The last form cannot be told from the first two by the head's bytes; it
 * is read as a CRLF (e[2], e[3] then lie after the head, inside the buffer)
 * and refused unless they read "\r\0" - in which case nothing was hidden
 * either (the head did end).  Bare LF line ends are refused everywhere else.
 */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "reqhead.h"

#define FAIL(code, why)                          \
        do {                                     \
                kw_err_set_detail("%s", (why));  \
                KW_BAIL(code);                   \
        } while (0)

static int inside(const struct kw_reqhead *h, const char *p)
{
        return p != NULL && p >= h->buf && p < h->buf + h->buf_size;
}

/* Length of the string at p (inside), or SIZE_MAX when no NUL ends it
 * within the buffer. */
static size_t blen(const struct kw_reqhead *h, const char *p)
{
        size_t room = (size_t)(h->buf + h->buf_size - p);
        size_t n = strnlen(p, room);
        return n == room ? SIZE_MAX : n;
}

/* RFC 9110 section 5.6.2 tchar. */
static int tchar(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* The request line; *ret_eol = the NUL that ended the version. */
KW_MUST_USE static kw_result request_line(const struct kw_reqhead *h, const char **ret_eol)
{
        const char *m = h->method;
        KW_ENSURE(inside(h, m) && inside(h, h->uri) && inside(h, h->version), KW_ERR_INTERNAL);
        if (m != h->buf)
                FAIL(KW_ERR_INPUT, "empty line before the request line");
        size_t n = blen(h, m);
        KW_ENSURE(n != SIZE_MAX && n != 0, KW_ERR_INTERNAL);
        if (h->uri != m + n + 1)
                FAIL(KW_ERR_INPUT, "request line: one space between method and target");
        size_t un = blen(h, h->uri);
        KW_ENSURE(un != SIZE_MAX, KW_ERR_INTERNAL);
        const char *t_end = h->uri + un;
        if (h->query != NULL) {
                /* the '?' at t_end became NUL; the query runs to the space */
                KW_ENSURE(h->query == t_end + 1 && inside(h, h->query), KW_ERR_INTERNAL);
                size_t qn = blen(h, h->query);
                KW_ENSURE(qn != SIZE_MAX, KW_ERR_INTERNAL);
                t_end = h->query + qn;
        }
        const char *v = h->version - 5;
        if (v != t_end + 1)
                FAIL(KW_ERR_INPUT, "request line: one space between target and version");
        KW_ENSURE(inside(h, v) && memcmp(v, "HTTP/", 5) == 0, KW_ERR_INTERNAL);
        size_t vn = blen(h, h->version);
        KW_ENSURE(vn != SIZE_MAX, KW_ERR_INTERNAL);
        *ret_eol = h->version + vn;
        return KW_OK;
}

/* One header line: name, colon, OWS; *ret_e = the NUL that ended the value. */
KW_MUST_USE static kw_result header_line(const struct kw_reqhead *h, const struct mg_header *hd,
                                         const char **ret_e)
{
        KW_ENSURE(inside(h, hd->name) && inside(h, hd->value), KW_ERR_INTERNAL);
        size_t n = blen(h, hd->name);
        KW_ENSURE(n != SIZE_MAX && n != 0, KW_ERR_INTERNAL);
        for (size_t i = 0; i < n; i++)
                if (!tchar((unsigned char)hd->name[i]))
                        FAIL(KW_ERR_INPUT, "header field name with a character that is not a token character");
        const char *c = hd->name + n;         /* was ':' or the first space before it */
        KW_ENSURE(hd->value > c, KW_ERR_INTERNAL);
        if (hd->value > c + 1 && c[1] == '\0')
                FAIL(KW_ERR_INPUT, "whitespace between a header field name and its colon");
        for (const char *q = c + 1; q < hd->value; q++)
                KW_ENSURE(*q == ' ' || *q == '\t', KW_ERR_INTERNAL);
        size_t vn = blen(h, hd->value);
        KW_ENSURE(vn != SIZE_MAX, KW_ERR_INTERNAL);
        *ret_e = hd->value + vn;
        return KW_OK;
}

kw_result kw_reqhead_check(const struct kw_reqhead *h, size_t *ret_end)
{
        KW_ENSURE(h != NULL && h->buf != NULL && h->buf_size >= 4 && ret_end != NULL &&
                          h->num_headers >= 0 && h->num_headers <= MG_MAX_HEADERS &&
                          (h->num_headers == 0 || h->headers != NULL),
                  KW_ERR_INTERNAL);
        const char *end = h->buf + h->buf_size;
        const char *eol;
        KW_TRY(request_line(h, &eol));
        /* RFC 9112 section 3.2: one Host line, and HTTP/1.1 needs it */
        int hosts = 0;
        for (int i = 0; i < h->num_headers; i++)
                hosts += h->headers[i].name != NULL && strcasecmp(h->headers[i].name, "Host") == 0;
        if (hosts > 1)
                FAIL(KW_ERR_INPUT, "more than one Host header field");
        if (h->num_headers == 0 || (hosts == 0 && strcmp(h->version, "1.0") != 0))
                FAIL(KW_ERR_INPUT, "no Host header field");
        /* eol and the byte after it are NUL, the first name starts after */
        if (h->headers[0].name != eol + 2 || eol[1] != '\0')
                FAIL(KW_ERR_INPUT, "request line not ended by CRLF");
        for (int i = 0; i < h->num_headers; i++) {
                const char *e;
                KW_TRY(header_line(h, &h->headers[i], &e));
                if (i + 1 < h->num_headers) {
                        const char *next = h->headers[i + 1].name;
                        if (next == e + 1)
                                FAIL(KW_ERR_INPUT, "header line ended by a bare LF (CRLF required)");
                        if (next != e + 2)
                                FAIL(KW_ERR_INPUT, "malformed header line");
                        KW_ENSURE(e[1] == '\0', KW_ERR_INTERNAL);
                        continue;
                }
                /* the last kept line: did the head end after it? */
                KW_ENSURE(end - e > 1, KW_ERR_INTERNAL);
                int full = h->num_headers == MG_MAX_HEADERS;
                if (e[1] != '\0')
                        FAIL(full ? KW_ERR_TOO_LARGE : KW_ERR_INPUT,
                             full ? "more than 64 header lines" : "header line ended by a bare LF (CRLF required)");
                if (end - e <= 3)
                        FAIL(KW_ERR_INPUT, "header section not ended by CRLF CRLF");
                if (e[2] == '\r' && e[3] == '\0') {
                        *ret_end = (size_t)(e + 4 - h->buf);
                        return KW_OK;
                }
                if (e[2] == '\0')
                        FAIL(KW_ERR_INPUT, "header section not ended by CRLF CRLF");
                if (e[2] == '\r')
                        FAIL(KW_ERR_INPUT, "bare CR in the header section");
                FAIL(full ? KW_ERR_TOO_LARGE : KW_ERR_INPUT,
                     full ? "more than 64 header lines"
                          : "header line that does not start with a field name (obs-fold, or not a "
                            "token), or a header section not ended by CRLF CRLF");
        }
        KW_BAIL(KW_ERR_INTERNAL);   /* not reached: num_headers >= 1 */
}
