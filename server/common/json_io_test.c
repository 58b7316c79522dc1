/* json_io_test.c - strict JSON parsing, getters and output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/json_io.h"

#define SENTINEL ((cJSON *)(uintptr_t)0x5a5a)

static int parse_code(const char *s, size_t n, int depth)
{
        cJSON *j = SENTINEL;
        kw_result r = kw_json_parse((const uint8_t *)s, n, depth, &j);
        if (r.code == 0) {
                assert_non_null(j);
                assert_true(j != SENTINEL);
                cJSON_Delete(j);
        } else {
                assert_ptr_equal(j, SENTINEL);      /* untouched on failure */
        }
        return r.code;
}

static int pc(const char *s) { return parse_code(s, strlen(s), KW_JSON_MAX_DEPTH); }

static cJSON *must_parse(const char *s)
{
        cJSON *j = NULL;
        assert_int_equal(kw_json_parse((const uint8_t *)s, strlen(s), KW_JSON_MAX_DEPTH, &j).code, 0);
        return j;
}

static int u8(const char *s, size_t n) { return kw_utf8_valid((const uint8_t *)s, n); }
#define U8(lit) u8(lit, sizeof(lit) - 1)

/* ---- UTF-8 ---- */

static void json_utf8_valid_accepts_boundaries(void **state)
{
        (void)state;
        assert_true(U8(""));
        assert_true(U8("plain ascii \x7f"));
        assert_true(U8("\xc2\x80"));                 /* U+0080 */
        assert_true(U8("\xdf\xbf"));                 /* U+07FF */
        assert_true(U8("\xe0\xa0\x80"));             /* U+0800 */
        assert_true(U8("\xed\x9f\xbf"));             /* U+D7FF */
        assert_true(U8("\xee\x80\x80"));             /* U+E000 */
        assert_true(U8("\xef\xbf\xbf"));             /* U+FFFF */
        assert_true(U8("\xf0\x90\x80\x80"));         /* U+10000 */
        assert_true(U8("\xf4\x8f\xbf\xbf"));         /* U+10FFFF */
        assert_true(U8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91"));
        assert_true(u8("a\0b", 3));                   /* U+0000 is valid UTF-8 */
}

static void json_utf8_valid_rejects_overlong(void **state)
{
        (void)state;
        assert_false(U8("\xc0\x80"));
        assert_false(U8("\xc1\xbf"));
        assert_false(U8("\xe0\x80\x80"));
        assert_false(U8("\xe0\x9f\xbf"));
        assert_false(U8("\xf0\x80\x80\x80"));
        assert_false(U8("\xf0\x8f\xbf\xbf"));
}

static void json_utf8_valid_rejects_surrogates(void **state)
{
        (void)state;
        assert_false(U8("\xed\xa0\x80"));            /* U+D800 */
        assert_false(U8("\xed\xaf\xbf"));            /* U+DBFF */
        assert_false(U8("\xed\xb0\x80"));            /* U+DC00 */
        assert_false(U8("\xed\xbf\xbf"));            /* U+DFFF */
        assert_false(U8("\xed\xa0\xbd\xed\xb4\x91")); /* CESU-8 pair */
}

static void json_utf8_valid_rejects_above_max(void **state)
{
        (void)state;
        assert_false(U8("\xf4\x90\x80\x80"));        /* U+110000 */
        assert_false(U8("\xf5\x80\x80\x80"));
        assert_false(U8("\xf8\x88\x80\x80\x80"));
        assert_false(U8("\xfe"));
        assert_false(U8("\xff"));
}

static void json_utf8_valid_rejects_truncated_and_stray(void **state)
{
        (void)state;
        assert_false(U8("\xc3"));
        assert_false(U8("ab\xe2\x82"));
        assert_false(U8("\xf0\x9f\x94"));
        assert_false(U8("\x80"));                    /* lone continuation */
        assert_false(U8("\xbf"));
        assert_false(U8("\xc3\x28"));                /* bad continuation */
        assert_false(U8("\xe2\x28\xa1"));
        assert_false(U8("\xe2\x82\x28"));
        assert_false(U8("\xf0\x9f\x28\x91"));
        /* the length bounds the scan: a valid char cut by n */
        assert_false(u8("\xc3\xa9", 1));
        assert_true(u8("\xc3\xa9", 2));
}

/* ---- parse ---- */

static void json_parse_valid_object_succeeds(void **state)
{
        (void)state;
        cJSON *j = must_parse(" {\"a\":1,\"b\":[true,false,null,\"x\\u00e9\\ud83d\\udd11\"],"
                              "\"c\":{\"d\":-0.5e+3},\"e\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"}\r\n\t");
        assert_true(cJSON_IsObject(j));
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "b");
        assert_int_equal(cJSON_GetArraySize(b), 4);
        assert_string_equal(cJSON_GetArrayItem(b, 3)->valuestring, "x\xc3\xa9\xf0\x9f\x94\x91");
        cJSON_Delete(j);
        assert_int_equal(pc("{}"), 0);
        assert_int_equal(pc("{\"a\":0,\"b\":-0,\"c\":1E2,\"d\":1e-2,\"e\":10.25}"), 0);
}

static void json_parse_invalid_utf8_fails_bad_encoding(void **state)
{
        (void)state;
        assert_int_equal(pc("{\"a\":\"\xc0\xaf\"}"), KW_ERR_BAD_ENCODING);
        assert_int_equal(pc("{\"a\":\"\xed\xa0\x80\"}"), KW_ERR_BAD_ENCODING);
        assert_int_equal(pc("{\"a\":\"\xf4\x90\x80\x80\"}"), KW_ERR_BAD_ENCODING);
        assert_int_equal(pc("{\"a\":\"\xe2\x82\"}"), KW_ERR_BAD_ENCODING);
        assert_int_equal(pc("{\"\xff\":1}"), KW_ERR_BAD_ENCODING);
}

static void json_parse_cjson_leniencies_fail_bad_json(void **state)
{
        (void)state;
        /* every one of these is accepted by plain cJSON 1.7.15 */
        assert_int_equal(pc("\xef\xbb\xbf{}"), KW_ERR_BAD_JSON);          /* BOM */
        assert_int_equal(pc("{\"a\":1.}"), KW_ERR_BAD_JSON);
        assert_int_equal(pc("{\"a\":01}"), KW_ERR_BAD_JSON);
        assert_int_equal(pc("{\"a\":-01}"), KW_ERR_BAD_JSON);
        assert_int_equal(pc("{\"a\":-.5}"), KW_ERR_BAD_JSON);
        assert_int_equal(pc("{\"a\":1.e5}"), KW_ERR_BAD_JSON);
        assert_int_equal(pc("{\"a\":\"x\x01y\"}"), KW_ERR_BAD_JSON);     /* raw control */
        assert_int_equal(pc("{\"a\":\"x\ty\"}"), KW_ERR_BAD_JSON);
        assert_int_equal(pc("{\"a\":\"ab\\u0000cd\"}"), KW_ERR_BAD_JSON); /* would truncate */
        assert_int_equal(pc("{\"a\\u0000b\":1}"), KW_ERR_BAD_JSON);
        assert_int_equal(pc("{\"a\":1}\x0b"), KW_ERR_BAD_JSON);           /* \v is not whitespace */
        assert_int_equal(pc("\x0c{}"), KW_ERR_BAD_JSON);
        assert_int_equal(pc("{\"a\":1e400}"), KW_ERR_BAD_JSON);           /* becomes infinity */
        assert_int_equal(pc("{\"a\":-1e400}"), KW_ERR_BAD_JSON);
        assert_int_equal(parse_code("{\"a\":1}\0", 8, KW_JSON_MAX_DEPTH), KW_ERR_BAD_JSON);
        assert_int_equal(parse_code("{\"a\":\"b\0\"}", 10, KW_JSON_MAX_DEPTH), KW_ERR_BAD_JSON);
}

static void json_parse_malformed_fails_bad_json(void **state)
{
        (void)state;
        const char *bad[] = {
                "", " ", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}", "{\"a\" 1}",
                "{a:1}", "{'a':1}", "{\"a\":[1,]}", "{\"a\":[,1]}", "{\"a\":tru}", "{\"a\":nul}",
                "{\"a\":True}", "{\"a\":NaN}", "{\"a\":Infinity}", "{\"a\":-}", "{\"a\":+1}",
                "{\"a\":.5}", "{\"a\":1e}", "{\"a\":1e+}", "{\"a\":0x10}", "{\"a\":--1}",
                "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}", "{\"a\":\"\\u12G4\"}", "{\"a\":\"abc}",
                "{\"a\":\"\\ud800\"}", "{\"a\":\"\\udc00\"}", "{\"a\":\"\\ud800\\u0041\"}",
                "{\"a\":\"\\ud800x\"}", "{\"a\":1}/*c*/", "{\"a\":1}//", "{\"a\":[1}", "{\"a\":{]}",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                if (pc(bad[i]) != KW_ERR_BAD_JSON)
                        fail_msg("accepted or wrong code: case %zu", i);
        }
}

static void json_parse_trailing_bytes_fail(void **state)
{
        (void)state;
        assert_int_equal(pc("{}x"), KW_ERR_BAD_JSON);
        assert_int_equal(pc("{} {}"), KW_ERR_BAD_JSON);
        assert_int_equal(pc("{\"a\":1}}"), KW_ERR_BAD_JSON);
        assert_int_equal(pc("{\"a\":1},"), KW_ERR_BAD_JSON);
        assert_int_equal(pc("{} \n "), 0);                               /* whitespace only */
}

static void json_parse_top_level_non_object_fails(void **state)
{
        (void)state;
        assert_int_equal(pc("[]"), KW_ERR_BAD_JSON);
        assert_int_equal(pc("[{\"a\":1}]"), KW_ERR_BAD_JSON);
        assert_int_equal(pc("\"x\""), KW_ERR_BAD_JSON);
        assert_int_equal(pc("1"), KW_ERR_BAD_JSON);
        assert_int_equal(pc("true"), KW_ERR_BAD_JSON);
        assert_int_equal(pc("null"), KW_ERR_BAD_JSON);
        assert_string_equal(kw_err_detail(), "the JSON body is not an object");
}

static void json_parse_duplicate_keys_fail(void **state)
{
        (void)state;
        assert_int_equal(pc("{\"a\":1,\"a\":2}"), KW_ERR_BAD_JSON);
        assert_string_equal(kw_err_detail(), "duplicate member name");
        assert_int_equal(pc("{\"a\":1,\"b\":2,\"a\":{}}"), KW_ERR_BAD_JSON);
        assert_int_equal(pc("{\"a\":1,\"\\u0061\":2}"), KW_ERR_BAD_JSON);     /* same after decoding */
        assert_int_equal(pc("{\"x\":{\"y\":[{\"z\":1,\"z\":1}]}}"), KW_ERR_BAD_JSON); /* at depth */
        assert_int_equal(pc("{\"x\":[1,{\"k\":{\"q\":0,\"q\":0}}]}"), KW_ERR_BAD_JSON);
        /* large objects take the sorted path */
        assert_int_equal(pc("{\"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,\"g\":1,\"h\":1,"
                            "\"i\":1,\"j\":1,\"k\":1,\"e\":2}"), KW_ERR_BAD_JSON);
        assert_int_equal(pc("{\"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,\"g\":1,\"h\":1,"
                            "\"i\":1,\"j\":1,\"k\":1,\"l\":2}"), 0);
        /* distinct names stay distinct: case matters, same name in sibling objects is fine */
        assert_int_equal(pc("{\"a\":1,\"A\":2,\"o\":{\"a\":1},\"p\":{\"a\":1}}"), 0);
}

static void json_parse_depth_limit_enforced(void **state)
{
        (void)state;
        char buf[128];
        /* depth 4: {"a":{"b":{"c":{}}}} */
        strcpy(buf, "{\"a\":{\"b\":{\"c\":{}}}}");
        assert_int_equal(parse_code(buf, strlen(buf), 4), 0);
        assert_int_equal(parse_code(buf, strlen(buf), 3), KW_ERR_BAD_JSON);
        /* arrays count */
        strcpy(buf, "{\"a\":[[[1]]]}");
        assert_int_equal(parse_code(buf, strlen(buf), 4), 0);
        assert_int_equal(parse_code(buf, strlen(buf), 3), KW_ERR_BAD_JSON);
        assert_int_equal(parse_code("{}", 2, 1), 0);
        assert_int_equal(parse_code("{\"a\":[]}", 8, 1), KW_ERR_BAD_JSON);
        /* max_depth <= 0 means the default */
        char ok[256];
        size_t n = 0;
        for (int i = 0; i < KW_JSON_MAX_DEPTH; i++)
                n += (size_t)snprintf(ok + n, sizeof ok - n, "{\"k\":");
        n -= 5; /* innermost is "{" ... "}" */
        n += (size_t)snprintf(ok + n, sizeof ok - n, "{}");
        for (int i = 1; i < KW_JSON_MAX_DEPTH; i++)
                ok[n++] = '}';
        ok[n] = '\0';
        assert_int_equal(parse_code(ok, n, 0), 0);
        assert_int_equal(parse_code(ok, n, KW_JSON_MAX_DEPTH - 1), KW_ERR_BAD_JSON);
        /* very deep input fails cleanly (no recursion blow-up) */
        size_t big = 200000;
        char *d = malloc(big + 3);
        assert_non_null(d);
        d[0] = '{';
        d[1] = '"';
        d[2] = 'a';
        d[3] = '"';
        d[4] = ':';
        memset(d + 5, '[', big - 5);
        assert_int_equal(parse_code(d, big, 1000000), KW_ERR_BAD_JSON);
        free(d);
}

static void json_parse_detail_never_echoes_body(void **state)
{
        (void)state;
        assert_int_equal(pc("{\"secret\":\"TOPSECRETVALUE\" x}"), KW_ERR_BAD_JSON);
        assert_null(strstr(kw_err_detail(), "TOPSECRET"));
        assert_non_null(strstr(kw_err_detail(), "byte"));
        assert_int_equal(pc("{\"TOPSECRETNAME\":1,\"TOPSECRETNAME\":2}"), KW_ERR_BAD_JSON);
        assert_null(strstr(kw_err_detail(), "TOPSECRET"));
}

/* ---- getters ---- */

static void json_get_str_checks_type_length_presence(void **state)
{
        (void)state;
        cJSON *j = must_parse("{\"s\":\"abc\",\"e\":\"\",\"n\":1,\"z\":null,\"S\":\"upper\"}");
        const char *v = "unchanged";
        assert_int_equal(kw_json_get_str(j, "s", 1, 0, 3, &v).code, 0);
        assert_string_equal(v, "abc");
        v = "unchanged";
        assert_int_equal(kw_json_get_str(j, "s", 1, 0, 2, &v).code, KW_ERR_BAD_FIELD);
        assert_string_equal(v, "unchanged");
        assert_non_null(strstr(kw_err_detail(), "'s'"));
        assert_int_equal(kw_json_get_str(j, "e", 1, 0, 8, &v).code, KW_ERR_BAD_FIELD);
        assert_string_equal(v, "unchanged");
        assert_int_equal(kw_json_get_str(j, "e", 1, 1, 8, &v).code, 0);
        assert_string_equal(v, "");
        v = "unchanged";
        assert_int_equal(kw_json_get_str(j, "n", 1, 0, 8, &v).code, KW_ERR_BAD_FIELD);
        assert_int_equal(kw_json_get_str(j, "z", 0, 0, 8, &v).code, KW_ERR_BAD_FIELD);
        assert_int_equal(kw_json_get_str(j, "missing", 1, 0, 8, &v).code, KW_ERR_MISSING_FIELD);
        assert_non_null(strstr(kw_err_detail(), "missing"));
        assert_int_equal(kw_json_get_str(j, "missing", 0, 0, 8, &v).code, 0);
        assert_string_equal(v, "unchanged");
        /* names are case-sensitive (cJSON_GetObjectItem is not) */
        assert_int_equal(kw_json_get_str(j, "S", 1, 0, 8, &v).code, 0);
        assert_string_equal(v, "upper");
        v = "unchanged";
        assert_int_equal(kw_json_get_str(j->child->next->next, "x", 1, 0, 8, &v).code,
                         KW_ERR_BAD_FIELD); /* container is a number */
        assert_string_equal(v, "unchanged");
        cJSON_Delete(j);
        /* multi-byte length is in bytes */
        j = must_parse("{\"u\":\"\xc3\xa9\xc3\xa9\"}");
        assert_int_equal(kw_json_get_str(j, "u", 1, 0, 3, &v).code, KW_ERR_BAD_FIELD);
        assert_int_equal(kw_json_get_str(j, "u", 1, 0, 4, &v).code, 0);
        cJSON_Delete(j);
}

static void json_get_int_checks_type_integral_range(void **state)
{
        (void)state;
        cJSON *j = must_parse("{\"i\":42,\"neg\":-7,\"f\":1.5,\"fi\":2.0,\"e\":1e3,\"s\":\"5\","
                              "\"b\":true,\"big\":9007199254740993,\"max\":9007199254740991,\"p53\":9007199254740992}");
        int64_t v = 99;
        assert_int_equal(kw_json_get_int(j, "i", 1, 0, 100, &v).code, 0);
        assert_int_equal(v, 42);
        v = 99;
        assert_int_equal(kw_json_get_int(j, "i", 1, 0, 41, &v).code, KW_ERR_BAD_FIELD);
        assert_int_equal(kw_json_get_int(j, "i", 1, 43, 100, &v).code, KW_ERR_BAD_FIELD);
        assert_int_equal(kw_json_get_int(j, "neg", 1, 0, 100, &v).code, KW_ERR_BAD_FIELD);
        assert_int_equal(v, 99);
        assert_int_equal(kw_json_get_int(j, "neg", 1, -7, -7, &v).code, 0);
        assert_int_equal(v, -7);
        v = 99;
        assert_int_equal(kw_json_get_int(j, "f", 1, 0, 100, &v).code, KW_ERR_BAD_FIELD);
        assert_int_equal(kw_json_get_int(j, "s", 1, 0, 100, &v).code, KW_ERR_BAD_FIELD);
        assert_int_equal(kw_json_get_int(j, "b", 1, 0, 100, &v).code, KW_ERR_BAD_FIELD);
        assert_int_equal(kw_json_get_int(j, "big", 1, INT64_MIN, INT64_MAX, &v).code, KW_ERR_BAD_FIELD);
        assert_int_equal(kw_json_get_int(j, "missing", 1, 0, 1, &v).code, KW_ERR_MISSING_FIELD);
        assert_int_equal(kw_json_get_int(j, "missing", 0, 0, 1, &v).code, 0);
        assert_int_equal(v, 99);
        assert_int_equal(kw_json_get_int(j, "fi", 1, 0, 100, &v).code, 0);   /* integral value */
        assert_int_equal(v, 2);
        assert_int_equal(kw_json_get_int(j, "e", 1, 0, 1000, &v).code, 0);
        assert_int_equal(v, 1000);
        assert_int_equal(kw_json_get_int(j, "max", 1, INT64_MIN, INT64_MAX, &v).code, 0);
        assert_int_equal(v, 9007199254740991LL);
        assert_int_equal(kw_json_get_int(j, "p53", 1, INT64_MIN, INT64_MAX, &v).code, KW_ERR_BAD_FIELD);
        assert_int_equal(v, 9007199254740991LL);
        cJSON_Delete(j);
}

static void json_get_bool_checks_type_presence(void **state)
{
        (void)state;
        cJSON *j = must_parse("{\"t\":true,\"f\":false,\"n\":0,\"s\":\"true\"}");
        int v = 7;
        assert_int_equal(kw_json_get_bool(j, "t", 1, &v).code, 0);
        assert_int_equal(v, 1);
        assert_int_equal(kw_json_get_bool(j, "f", 1, &v).code, 0);
        assert_int_equal(v, 0);
        v = 7;
        assert_int_equal(kw_json_get_bool(j, "n", 1, &v).code, KW_ERR_BAD_FIELD);
        assert_int_equal(kw_json_get_bool(j, "s", 1, &v).code, KW_ERR_BAD_FIELD);
        assert_int_equal(kw_json_get_bool(j, "x", 1, &v).code, KW_ERR_MISSING_FIELD);
        assert_int_equal(kw_json_get_bool(j, "x", 0, &v).code, 0);
        assert_int_equal(v, 7);
        cJSON_Delete(j);
}

static void json_get_obj_checks_type_presence(void **state)
{
        (void)state;
        cJSON *j = must_parse("{\"o\":{\"k\":1},\"a\":[],\"s\":\"x\"}");
        const cJSON *v = SENTINEL;
        assert_int_equal(kw_json_get_obj(j, "a", 1, &v).code, KW_ERR_BAD_FIELD);
        assert_int_equal(kw_json_get_obj(j, "s", 1, &v).code, KW_ERR_BAD_FIELD);
        assert_int_equal(kw_json_get_obj(j, "x", 1, &v).code, KW_ERR_MISSING_FIELD);
        assert_int_equal(kw_json_get_obj(j, "x", 0, &v).code, 0);
        assert_ptr_equal(v, SENTINEL);
        assert_int_equal(kw_json_get_obj(j, "o", 1, &v).code, 0);
        assert_true(cJSON_IsObject(v));
        int64_t k = 0;
        assert_int_equal(kw_json_get_int(v, "k", 1, 0, 9, &k).code, 0);
        assert_int_equal(k, 1);
        cJSON_Delete(j);
}

static void json_get_strarray_checks_items_lengths_types(void **state)
{
        (void)state;
        cJSON *j = must_parse("{\"a\":[\"x\",\"yy\"],\"e\":[],\"n\":[\"x\",1],\"m\":[\"x\",\"\"],"
                              "\"s\":\"x\",\"o\":{}}");
        const cJSON *v = SENTINEL;
        assert_int_equal(kw_json_get_strarray(j, "a", 1, 1, 8, &v).code, KW_ERR_BAD_FIELD); /* items */
        assert_int_equal(kw_json_get_strarray(j, "a", 1, 2, 1, &v).code, KW_ERR_BAD_FIELD); /* length */
        assert_int_equal(kw_json_get_strarray(j, "n", 1, 8, 8, &v).code, KW_ERR_BAD_FIELD);
        assert_int_equal(kw_json_get_strarray(j, "m", 1, 8, 8, &v).code, KW_ERR_BAD_FIELD);
        assert_int_equal(kw_json_get_strarray(j, "s", 1, 8, 8, &v).code, KW_ERR_BAD_FIELD);
        assert_int_equal(kw_json_get_strarray(j, "o", 1, 8, 8, &v).code, KW_ERR_BAD_FIELD);
        assert_int_equal(kw_json_get_strarray(j, "x", 1, 8, 8, &v).code, KW_ERR_MISSING_FIELD);
        assert_int_equal(kw_json_get_strarray(j, "x", 0, 8, 8, &v).code, 0);
        assert_ptr_equal(v, SENTINEL);
        assert_int_equal(kw_json_get_strarray(j, "a", 1, 2, 2, &v).code, 0);
        assert_int_equal(cJSON_GetArraySize(v), 2);
        assert_int_equal(kw_json_get_strarray(j, "e", 1, 2, 2, &v).code, 0);
        assert_int_equal(cJSON_GetArraySize(v), 0);
        cJSON_Delete(j);
}

/* ---- write ---- */

static void json_write_compact_appends(void **state)
{
        (void)state;
        cJSON *j = must_parse("{ \"a\" : [ 1 , \"x\\ny\" ] , \"b\" : { } , \"c\":true }");
        struct kw_buf b;
        kw_buf_init(&b, 1024);
        assert_int_equal(kw_buf_put_str(&b, "pre:").code, 0);
        assert_int_equal(kw_json_write(j, &b).code, 0);
        const char *s;
        assert_int_equal(kw_buf_cstr(&b, &s).code, 0);
        assert_string_equal(s, "pre:{\"a\":[1,\"x\\ny\"],\"b\":{},\"c\":true}");
        kw_buf_free(&b);
        cJSON_Delete(j);
}

static void json_write_over_cap_fails_unchanged(void **state)
{
        (void)state;
        cJSON *j = must_parse("{\"key\":\"0123456789abcdef\"}");
        struct kw_buf b;
        kw_buf_init(&b, 10);
        assert_int_equal(kw_buf_put_str(&b, "xy").code, 0);
        assert_int_equal(kw_json_write(j, &b).code, KW_ERR_TOO_LARGE);
        assert_int_equal(b.len, 2);
        assert_memory_equal(b.p, "xy", 2);
        kw_buf_free(&b);
        cJSON_Delete(j);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(json_utf8_valid_accepts_boundaries),
                cmocka_unit_test(json_utf8_valid_rejects_overlong),
                cmocka_unit_test(json_utf8_valid_rejects_surrogates),
                cmocka_unit_test(json_utf8_valid_rejects_above_max),
                cmocka_unit_test(json_utf8_valid_rejects_truncated_and_stray),
                cmocka_unit_test(json_parse_valid_object_succeeds),
                cmocka_unit_test(json_parse_invalid_utf8_fails_bad_encoding),
                cmocka_unit_test(json_parse_cjson_leniencies_fail_bad_json),
                cmocka_unit_test(json_parse_malformed_fails_bad_json),
                cmocka_unit_test(json_parse_trailing_bytes_fail),
                cmocka_unit_test(json_parse_top_level_non_object_fails),
                cmocka_unit_test(json_parse_duplicate_keys_fail),
                cmocka_unit_test(json_parse_depth_limit_enforced),
                cmocka_unit_test(json_parse_detail_never_echoes_body),
                cmocka_unit_test(json_get_str_checks_type_length_presence),
                cmocka_unit_test(json_get_int_checks_type_integral_range),
                cmocka_unit_test(json_get_bool_checks_type_presence),
                cmocka_unit_test(json_get_obj_checks_type_presence),
                cmocka_unit_test(json_get_strarray_checks_items_lengths_types),
                cmocka_unit_test(json_write_compact_appends),
                cmocka_unit_test(json_write_over_cap_fails_unchanged),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
