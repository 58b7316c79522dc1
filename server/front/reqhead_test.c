/*
 * reqhead_test.c - kw_reqhead_check on heads parsed by CivetWeb's own
 * parse_http_request() (civetweb.c, Debian's source, unmodified, included
 * as the fuzz target does: the Makefile builds this test with CivetWeb's
 * -D options and without our warning flags for that file).
 */
#include "civetweb.c"
#undef malloc
#undef free
#undef calloc
#undef snprintf

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "front/reqhead.h"

#define BUFSZ 16384

struct parsed {
        char *buf;
        struct mg_request_info ri;
};

/* Lays raw at the start of a worker-sized buffer (stale bytes after it),
 * parses it as CivetWeb does and splits the query off the target. */
static void parse(struct parsed *p, const char *raw, size_t n, char stale)
{
        assert_true(n <= BUFSZ);
        p->buf = malloc(BUFSZ);
        assert_non_null(p->buf);
        memset(p->buf, stale, BUFSZ);
        memcpy(p->buf, raw, n);
        memset(&p->ri, 0, sizeof p->ri);
        assert_true(get_http_header_len(raw, (int)n) > 0);
        assert_true(parse_http_request(p->buf, BUFSZ, &p->ri) > 0);
        char *q = strchr(p->ri.request_uri, '?');
        if (q != NULL) {
                *q = '\0';
                p->ri.query_string = q + 1;
        }
}

static kw_result check(struct parsed *p, size_t *end)
{
        struct kw_reqhead h = {
                .buf = p->buf, .buf_size = BUFSZ, .method = p->ri.request_method,
                .uri = p->ri.request_uri, .query = p->ri.query_string, .version = p->ri.http_version,
                .headers = p->ri.http_headers, .num_headers = p->ri.num_headers,
        };
        kw_err_clear_detail();
        return kw_reqhead_check(&h, end);
}

/* Expects code (and, on failure, words in the detail, end untouched). */
static void expect(const char *raw, size_t n, int code, const char *words)
{
        struct parsed p;
        parse(&p, raw, n, 'A');
        size_t end = 777;
        kw_result r = check(&p, &end);
        if (r.code != code)
                fail_msg("%.60s...: got %s (%s), want %s", raw, kw_err_name(r.code), kw_err_detail(),
                         kw_err_name(code));
        if (code == 0) {
                assert_int_equal(end, (size_t)get_http_header_len(raw, (int)n));
        } else {
                assert_int_equal(end, 777);
                if (strstr(kw_err_detail(), words) == NULL)
                        fail_msg("%.60s...: detail \"%s\" lacks \"%s\"", raw, kw_err_detail(), words);
        }
        free(p.buf);
}
#define EXPECT(lit, code, words) expect((lit), sizeof(lit) - 1, (code), (words))

static void reqhead_check_wellformed_heads_pass(void **state)
{
        (void)state;
        EXPECT("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", 0, "");
        EXPECT("POST /api/v1/keys?limit=5&x= HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}", 0, "");
        EXPECT("GET /x? HTTP/1.0\r\nHost: a\r\nX-Empty:\r\nX-Ows:    v  \r\n\r\n", 0, "");
        EXPECT("GET https://a/x HTTP/1.1\r\nHost: a\r\nX-Obs-Text: \xc3\xa9\xff\r\n\r\n", 0, "");
        EXPECT("GET / HTTP/1.1\r\n!#$%&'*+-.^_`|~09azAZ: v\r\nhOsT: a\r\n\r\n", 0, "");
        EXPECT("GET / HTTP/1.0\r\nX: y\r\n\r\n", 0, "");          /* HTTP/1.0: Host optional */
}

static void reqhead_check_64_lines_pass_65_fail_431(void **state)
{
        (void)state;
        char raw[4096];
        for (int lines = 63; lines <= 66; lines++) {
                for (int lf = 0; lf <= 1; lf++) {
                        int n = snprintf(raw, sizeof raw, "POST / HTTP/1.1\r\nHost: a%s", lf ? "\n" : "\r\n");
                        for (int i = 1; i < lines - 1; i++)
                                n += snprintf(raw + n, sizeof raw - (size_t)n, "X-%d: v%s", i, lf ? "\n" : "\r\n");
                        n += snprintf(raw + n, sizeof raw - (size_t)n, "Content-Length: 5\r\n\r\nGET /");
                        if (lf)    /* a bare LF between kept lines is seen first */
                                expect(raw, (size_t)n, KW_ERR_INPUT, "bare LF");
                        else if (lines <= MG_MAX_HEADERS)
                                expect(raw, (size_t)n, 0, "");
                        else
                                expect(raw, (size_t)n, KW_ERR_TOO_LARGE, "more than 64 header lines");
                }
        }
}

static void reqhead_check_space_before_colon_fails(void **state)
{
        (void)state;
        EXPECT("GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nGET /", KW_ERR_INPUT, "colon");
        EXPECT("GET / HTTP/1.1\r\nContent-Length    :5\r\nHost: a\r\n\r\nGET /", KW_ERR_INPUT, "colon");
        EXPECT("GET / HTTP/1.1\r\nHost: a\r\nX :\r\n\r\n", KW_ERR_INPUT, "colon");
}

static void reqhead_check_non_token_name_fails(void **state)
{
        (void)state;
        static const char bad[] = "\"(),/;<=>?@[\\]{}";
        for (const char *c = bad; *c; c++) {
                char raw[128];
                int n = snprintf(raw, sizeof raw, "GET / HTTP/1.1\r\nHost: a\r\nX%cY: 1\r\n\r\n", *c);
                expect(raw, (size_t)n, KW_ERR_INPUT, "token");
        }
}

static void reqhead_check_hidden_lines_fail(void **state)
{
        (void)state;
        /* lines CivetWeb's parse stops before, silently */
        EXPECT("GET / HTTP/1.1\r\nHost: a\r\n folded\r\nContent-Length: 5\r\n\r\nGET /", KW_ERR_INPUT, "field name");
        EXPECT("GET / HTTP/1.1\r\nHost: a\r\n\x80X: y\r\nContent-Length: 5\r\n\r\nGET /", KW_ERR_INPUT, "field name");
        EXPECT("GET / HTTP/1.1\r\nHost: a\r\n: y\r\nContent-Length: 5\r\n\r\nGET /", KW_ERR_INPUT, "field name");
        EXPECT("GET / HTTP/1.1\r\nHost: a\r\n\rX: y\r\n\r\n", KW_ERR_INPUT, "bare CR");
        EXPECT("GET / HTTP/1.1\r\nHost: a\n\r\nContent-Length: 5\r\n\r\nGET /", KW_ERR_INPUT, "bare LF");
}

static void reqhead_check_line_ends_other_than_crlf_fail(void **state)
{
        (void)state;
        EXPECT("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", KW_ERR_INPUT, "bare LF");
        EXPECT("GET / HTTP/1.1\nHost: a\nX: b\n\n", KW_ERR_INPUT, "request line not ended by CRLF");
        EXPECT("GET / HTTP/1.1\r\nHost: a\r\n\n", KW_ERR_INPUT, "CRLF CRLF");
        EXPECT("GET / HTTP/1.1\r\nHost: a\n\n", KW_ERR_INPUT, "CRLF CRLF");   /* stale 'A' after */
        EXPECT("GET / HTTP/1.1\r\n\r\nHost: a\r\n\r\n", KW_ERR_INPUT, "no Host");  /* no field */
        EXPECT("GET / HTTP/1.1\r\n \r\nHost: a\r\n\r\n", KW_ERR_INPUT, "CRLF");
}

static void reqhead_check_host_rules(void **state)
{
        (void)state;
        EXPECT("GET / HTTP/1.1\r\nX: y\r\n\r\n", KW_ERR_INPUT, "no Host");
        EXPECT("GET / HTTP/1.1\r\nHost: a\r\nX: y\r\nhost: b\r\n\r\n", KW_ERR_INPUT, "more than one Host");
        EXPECT("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", KW_ERR_INPUT, "more than one Host");
}

static void reqhead_check_request_line_fails(void **state)
{
        (void)state;
        EXPECT("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", KW_ERR_INPUT, "empty line");
        EXPECT("\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 30\r\n\r\n", KW_ERR_INPUT, "empty line");
        EXPECT("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", KW_ERR_INPUT, "method and target");
        EXPECT("GET /?a  HTTP/1.1\r\nHost: a\r\n\r\n", KW_ERR_INPUT, "target and version");
}

static void reqhead_check_lf_lf_end_reads_inside_the_buffer(void **state)
{
        (void)state;
        /* the head ends at the buffer's last byte: nothing after it is read */
        char *raw = malloc(BUFSZ);
        assert_non_null(raw);
        static const char start[] = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
        memcpy(raw, start, sizeof start - 1);
        memset(raw + sizeof start - 1, 'v', BUFSZ - (sizeof start - 1) - 2);
        raw[BUFSZ - 2] = '\n';
        raw[BUFSZ - 1] = '\n';
        expect(raw, BUFSZ, KW_ERR_INPUT, "CRLF CRLF");
        raw[BUFSZ - 3] = '\r';   /* "...v\r\n\n": still no CRLF CRLF */
        expect(raw, BUFSZ, KW_ERR_INPUT, "CRLF CRLF");
        memcpy(raw + BUFSZ - 4, "\r\n\r\n", 4);
        expect(raw, BUFSZ, 0, "");
        free(raw);
}

static void reqhead_check_bad_pointers_fail_internal(void **state)
{
        (void)state;
        struct parsed p;
        static const char raw[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        parse(&p, raw, sizeof raw - 1, 'A');
        size_t end = 5;
        struct kw_reqhead h = {
                .buf = p.buf + 1, .buf_size = BUFSZ - 1, .method = p.ri.request_method,
                .uri = p.ri.request_uri, .version = p.ri.http_version,
                .headers = p.ri.http_headers, .num_headers = p.ri.num_headers,
        };
        assert_int_equal(kw_reqhead_check(&h, &end).code, KW_ERR_INTERNAL);
        h.buf = p.buf;
        h.buf_size = BUFSZ;
        h.num_headers = MG_MAX_HEADERS + 1;
        assert_int_equal(kw_reqhead_check(&h, &end).code, KW_ERR_INTERNAL);
        assert_int_equal(kw_reqhead_check(NULL, &end).code, KW_ERR_INTERNAL);
        assert_int_equal(end, 5);
        free(p.buf);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(reqhead_check_wellformed_heads_pass),
                cmocka_unit_test(reqhead_check_64_lines_pass_65_fail_431),
                cmocka_unit_test(reqhead_check_space_before_colon_fails),
                cmocka_unit_test(reqhead_check_non_token_name_fails),
                cmocka_unit_test(reqhead_check_hidden_lines_fail),
                cmocka_unit_test(reqhead_check_line_ends_other_than_crlf_fail),
                cmocka_unit_test(reqhead_check_host_rules),
                cmocka_unit_test(reqhead_check_request_line_fails),
                cmocka_unit_test(reqhead_check_lf_lf_end_reads_inside_the_buffer),
                cmocka_unit_test(reqhead_check_bad_pointers_fail_internal),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
