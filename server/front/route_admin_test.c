/*
 * route_admin_test.c - the admin API's helpers and handlers, and the
 * /metrics converter.  Includes the .c files to reach their static
 * functions (wireguard-style).  Handlers run against a fake custody process
 * (a thread answering on a Unix socket through ipc.c) so that the fields
 * each request puts on the wire are checked, and that failures before the
 * custody call send nothing.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "admin_util.c"
#include "admin_ops.c"
#include "route_admin.c"
#include "route_ops.c"

/* ---- fake custody ------------------------------------------------------------- */

static struct {
        char path[108];
        int lfd;
        pthread_t th;
        pthread_mutex_t mu;
        /* the next reply */
        int32_t code;
        char detail[128];
        char json[4096];
        /* the last request */
        uint8_t req[KW_IPC_MAX_FRAME];
        size_t req_len;
        struct kw_msg msg;
        int nreq;
} fk = { .mu = PTHREAD_MUTEX_INITIALIZER };

static struct kw_front front;
/* an op the fake refuses with KW_ERR_FORBIDDEN whatever the next reply (0: none);
 * under fk.mu */
static uint8_t fk_fail_op;

static void fake_serve(int fd)
{
        struct kw_ipc_rx rx;
        struct kw_buf out;
        kw_ipc_rx_init(&rx);
        kw_buf_init(&out, KW_IPC_MAX_FRAME + 4);
        const uint8_t *p;
        size_t n;
        int k = 0;
        while (k >= 0 && kw_ipc_rx_fill(&rx, fd, -1).code == 0) {
                while ((k = kw_ipc_rx_next(&rx, &p, &n)) > 0) {
                        pthread_mutex_lock(&fk.mu);
                        memcpy(fk.req, p, n);
                        fk.req_len = n;
                        kw_result r = kw_msg_parse(fk.req, fk.req_len, 0, &fk.msg);
                        fk.nreq++;
                        kw_buf_reset(&out);
                        int32_t code = fk_fail_op != 0 && fk.msg.op == fk_fail_op ? KW_ERR_FORBIDDEN
                                                                                  : fk.code;
                        if (r.code == 0)
                                r = kw_msg_begin_reply(&out, fk.msg.op, fk.msg.id, code);
                        if (r.code == 0 && fk.detail[0] != '\0')
                                r = kw_msg_put_str(&out, KW_T_DETAIL, fk.detail);
                        if (r.code == 0 && code == 0 && fk.json[0] != '\0')
                                r = kw_msg_put_str(&out, KW_T_JSON, fk.json);
                        if (r.code == 0)
                                r = kw_msg_end(&out);
                        pthread_mutex_unlock(&fk.mu);
                        if (r.code != 0 || kw_ipc_send(fd, &out).code != 0)
                                k = -1;
                        if (k < 0)
                                break;
                }
        }
        kw_ipc_rx_free(&rx);
        kw_buf_free(&out);
        close(fd);
}

static void *fake_thread(void *arg)
{
        (void)arg;
        for (;;) {
                int fd = accept(fk.lfd, NULL, NULL);
                if (fd < 0)
                        return NULL;
                fake_serve(fd);
        }
}

static void fake_reply(int32_t code, const char *detail, const char *json)
{
        pthread_mutex_lock(&fk.mu);
        fk.code = code;
        snprintf(fk.detail, sizeof fk.detail, "%s", detail ? detail : "");
        snprintf(fk.json, sizeof fk.json, "%s", json ? json : "");
        pthread_mutex_unlock(&fk.mu);
}

static void fake_fail_op(uint8_t op)
{
        pthread_mutex_lock(&fk.mu);
        fk_fail_op = op;
        pthread_mutex_unlock(&fk.mu);
}

static int fake_nreq(void)
{
        pthread_mutex_lock(&fk.mu);
        int n = fk.nreq;
        pthread_mutex_unlock(&fk.mu);
        return n;
}

/* The string field tag of the last request, NUL-terminated in a static buffer. */
static const char *req_str(uint8_t tag)
{
        static char s[20000];
        struct kw_field f;
        if (kw_msg_get(&fk.msg, tag, &f).code != 0 || f.len >= sizeof s)
                return NULL;
        memcpy(s, f.p, f.len);
        s[f.len] = '\0';
        return s;
}

static uint32_t req_u32(uint8_t tag)
{
        uint32_t v = 0xdeadbeef;
        kw_ignore(kw_msg_get_u32(&fk.msg, tag, &v));
        return v;
}

static int group_setup(void **state)
{
        (void)state;
        int locked = 0;
        if (kw_secret_init(1 << 20, &locked).code != 0)
                return -1;
        snprintf(fk.path, sizeof fk.path, "/tmp/kw-route-admin-test.%d.sock", (int)getpid());
        unlink(fk.path);
        fk.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        memcpy(sa.sun_path, fk.path, strlen(fk.path) + 1);
        if (fk.lfd < 0 || bind(fk.lfd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
            listen(fk.lfd, 4) != 0)
                return -1;
        if (pthread_create(&fk.th, NULL, fake_thread, NULL) != 0)
                return -1;
        if (kw_cc_new(fk.path, 1, 2000, &front.cc).code != 0)
                return -1;
        return 0;
}

static int group_teardown(void **state)
{
        (void)state;
        kw_cc_free(front.cc);
        shutdown(fk.lfd, SHUT_RDWR);
        close(fk.lfd);
        pthread_join(fk.th, NULL);
        unlink(fk.path);
        return 0;
}

/* Runs handler fn with a parsed body (NULL: none) as principal "t1"/"tester". */
static kw_result run(admin_fn fn, const char *param, const char *body, const char *query,
                     struct kw_resp *resp)
{
        struct kw_req req = { .method = "POST" };
        struct admin_call a = { .req = &req, .resp = resp, .front = &front, .param = param };
        a.who.role = ROLE_ADMIN;
        a.who.token = "kw_test-token";
        a.who.token_len = strlen(a.who.token);
        cJSON *doc = NULL;
        if (body != NULL)
                assert_int_equal(kw_json_parse((const uint8_t *)body, strlen(body), 16, &doc).code,
                                 0);
        a.body = doc;
        if (query != NULL)
                assert_int_equal(admin_query_parse(query,
                                                   fn == admin_audit_query ? admin_q_audit
                                                                           : admin_q_keys,
                                                   &a.query)
                                         .code,
                                 0);
        kw_err_clear_detail();
        kw_result r = fn(&a);
        admin_json_wipe(doc);
        cJSON_Delete(doc);
        return r;
}

static void resp_init(struct kw_resp *resp)
{
        memset(resp, 0, sizeof *resp);
        resp->status = 599;
        kw_buf_init(&resp->body, 1u << 20);
}

static const char *resp_str(struct kw_resp *resp)
{
        const char *s = NULL;
        assert_int_equal(kw_buf_cstr(&resp->body, &s).code, 0);
        return s;
}

/* A handler that must fail with code before any custody call. */
static void expect_refused(admin_fn fn, const char *param, const char *body, int code)
{
        struct kw_resp resp;
        resp_init(&resp);
        int n = fake_nreq();
        assert_int_equal(run(fn, param, body, NULL, &resp).code, code);
        assert_int_equal(fake_nreq(), n);                       /* nothing sent */
        assert_int_equal(resp.status, 599);                     /* nothing written */
        assert_int_equal(resp.body.len, 0);
        kw_buf_free(&resp.body);
}

/* ---- error mapping and roles -------------------------------------------------- */

static void route_admin_http_status_every_class(void **state)
{
        (void)state;
        static const struct {
                int code, status, retry;
        } t[] = {
                { KW_ERR_INPUT, 400, 0 },          { KW_ERR_BAD_JSON, 400, 0 },
                { KW_ERR_BAD_NAME, 400, 0 },       { KW_ERR_MISSING_FIELD, 400, 0 },
                { KW_ERR_TOO_LARGE, 413, 0 },      { KW_ERR_UNSUPPORTED, 501, 0 },
                { KW_ERR_AUTH, 401, 0 },           { KW_ERR_FORBIDDEN, 403, 0 },
                { KW_ERR_ACCESS_DENIED, 403, 0 },  { KW_ERR_NOT_FOUND, 404, 0 },
                { KW_ERR_NO_ROUTE, 404, 0 },       { KW_ERR_EXISTS, 409, 0 },
                { KW_ERR_BAD_STATE, 409, 0 },      { KW_ERR_KEY_DISABLED, 409, 0 },
                { KW_ERR_KEY_PENDING_DELETION, 409, 0 }, { KW_ERR_KEY_DESTROYED, 409, 0 },
                { KW_ERR_OVERLOAD, 429, 1 },       { KW_ERR_HSM_UNAVAILABLE, 502, 0 },
                { KW_ERR_HSM_TIMEOUT, 504, 0 },    { KW_ERR_SEALED, 503, 1 },
                { KW_ERR_CUSTODY_DOWN, 503, 1 },   { KW_ERR_CRYPTO, 500, 0 },
                { KW_ERR_STORAGE, 500, 0 },        { KW_ERR_HSM_PIN, 500, 0 },
                { KW_ERR_INTERNAL, 500, 0 },       { KW_ERR_PROTOCOL, 500, 0 },
                { -12345, 500, 0 },
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
                int retry = 7;
                assert_int_equal(admin_http_status(t[i].code, &retry), t[i].status);
                assert_int_equal(retry, t[i].retry);
        }
}

static const struct admin_route *route_named(const char *log_route)
{
        for (const struct admin_route *r = admin_routes; r->method; r++)
                if (strcmp(r->log_route, log_route) == 0)
                        return r;
        fail_msg("no route %s", log_route);
        return NULL;
}

static void route_admin_roles_table_matches_the_policy(void **state)
{
        (void)state;
        assert_int_equal(admin_role_parse("admin"), ROLE_ADMIN);
        assert_int_equal(admin_role_parse("operator"), ROLE_OPERATOR);
        assert_int_equal(admin_role_parse("auditor"), ROLE_AUDITOR);
        assert_int_equal(admin_role_parse("Admin"), 0);
        assert_int_equal(admin_role_parse(""), 0);
        static const char *const read_routes[] = { "admin.status", "admin.keys.list",
                                                   "admin.keys.get", "admin.audit.query",
                                                   "admin.audit.verify" };
        for (size_t i = 0; i < 5; i++)
                assert_int_equal(route_named(read_routes[i])->roles, ROLES_READ);
        static const char *const key_routes[] = {
                "admin.keys.create", "admin.keys.import", "admin.keys.update",
                "admin.keys.enable", "admin.keys.disable", "admin.keys.rotate",
                "admin.keys.schedule_deletion", "admin.keys.cancel_deletion"
        };
        for (size_t i = 0; i < 8; i++) {
                unsigned roles = route_named(key_routes[i])->roles;
                assert_true((roles & ROLE_OPERATOR) && (roles & ROLE_ADMIN));
                assert_false(roles & ROLE_AUDITOR);
        }
        static const char *const token_routes[] = { "admin.tokens.list", "admin.tokens.create",
                                                    "admin.tokens.revoke" };
        for (size_t i = 0; i < 3; i++)
                assert_int_equal(route_named(token_routes[i])->roles, ROLE_ADMIN);
        assert_int_equal(route_named("admin.keys.import")->flags, ADMIN_F_SENSITIVE);
}

/* ---- path parsing and route matching -------------------------------------------- */

static void route_admin_path_parse_valid_paths(void **state)
{
        (void)state;
        struct admin_path p;
        assert_int_equal(admin_path_parse("/api/v1/keys", &p).code, 0);
        assert_int_equal(p.n, 1);
        assert_string_equal(p.seg[0], "keys");
        assert_int_equal(admin_path_parse("/api/v1/keys/my.key-1_x/schedule-deletion", &p).code, 0);
        assert_int_equal(p.n, 3);
        assert_string_equal(p.seg[1], "my.key-1_x");
        assert_int_equal(admin_path_parse("/api/v1/keys/%41b", &p).code, 0);
        assert_string_equal(p.seg[1], "Ab");
}

static void route_admin_path_parse_bad_paths_fail(void **state)
{
        (void)state;
        static const struct {
                const char *path;
                int code;
        } t[] = {
                { "/api/v1/keys/a%2Fb", KW_ERR_BAD_NAME },   { "/api/v1/keys/a%2fb", KW_ERR_BAD_NAME },
                { "/api/v1/keys/..", KW_ERR_BAD_NAME },      { "/api/v1/keys/%2E%2E", KW_ERR_BAD_NAME },
                { "/api/v1/keys/.", KW_ERR_BAD_NAME },       { "/api/v1/keys//x", KW_ERR_BAD_NAME },
                { "/api/v1/keys/", KW_ERR_BAD_NAME },        { "/api/v1/", KW_ERR_BAD_NAME },
                { "/api/v1/keys/a%00", KW_ERR_BAD_NAME },    { "/api/v1/keys/a%4", KW_ERR_BAD_NAME },
                { "/api/v1/keys/a%zz", KW_ERR_BAD_NAME },    { "/api/v1/keys/a b", KW_ERR_BAD_NAME },
                { "/api/v1/keys/caf\xc3\xa9", KW_ERR_BAD_NAME },
                { "/api/v1/keys/"
                  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                  KW_ERR_BAD_NAME }, /* 65 chars */
                { "/api/v1/a/b/c/d/e", KW_ERR_NO_ROUTE },    { "/api/v1", KW_ERR_NO_ROUTE },
                { "/api/v2/keys", KW_ERR_NO_ROUTE },         { "/healthz", KW_ERR_NO_ROUTE },
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
                struct admin_path p = { .n = 99 };
                assert_int_equal(admin_path_parse(t[i].path, &p).code, t[i].code);
                assert_int_equal(p.n, 99); /* untouched */
        }
}

static const struct admin_route *match(const char *path, const char *method, char *allow,
                                       const char **param)
{
        struct admin_path p;
        assert_int_equal(admin_path_parse(path, &p).code, 0);
        *param = "untouched";
        return admin_route_match(admin_routes, &p, method, allow, 64, param);
}

static void route_admin_route_match_methods_and_captures(void **state)
{
        (void)state;
        char allow[64];
        const char *param;
        const struct admin_route *r = match("/api/v1/keys/k1", "GET", allow, &param);
        assert_non_null(r);
        assert_string_equal(r->log_route, "admin.keys.get");
        assert_string_equal(param, "k1");
        r = match("/api/v1/keys/import", "POST", allow, &param);
        assert_string_equal(r->log_route, "admin.keys.import");
        assert_null(param);
        r = match("/api/v1/keys/import", "GET", allow, &param); /* a key named "import" */
        assert_string_equal(r->log_route, "admin.keys.get");
        assert_string_equal(param, "import");
        r = match("/api/v1/keys/k1/schedule-deletion", "POST", allow, &param);
        assert_string_equal(r->log_route, "admin.keys.schedule_deletion");
        assert_string_equal(param, "k1");
        r = match("/api/v1/tokens/abc", "DELETE", allow, &param);
        assert_string_equal(r->log_route, "admin.tokens.revoke");
        assert_string_equal(param, "abc");
}

static void route_admin_route_match_wrong_method_lists_allow(void **state)
{
        (void)state;
        char allow[64];
        const char *param;
        assert_null(match("/api/v1/keys", "DELETE", allow, &param));
        assert_string_equal(allow, "GET, POST");
        assert_string_equal(param, "untouched");
        assert_null(match("/api/v1/keys/k1", "POST", allow, &param));
        assert_string_equal(allow, "GET, PATCH");
        assert_null(match("/api/v1/audit/verify", "GET", allow, &param));
        assert_string_equal(allow, "POST");
        assert_null(match("/api/v1/status", "HEAD", allow, &param));
        assert_string_equal(allow, "GET");
}

static void route_admin_route_match_unknown_path_has_empty_allow(void **state)
{
        (void)state;
        char allow[64];
        const char *param;
        assert_null(match("/api/v1/nothing", "GET", allow, &param));
        assert_string_equal(allow, "");
        assert_null(match("/api/v1/keys/k1/explode", "POST", allow, &param));
        assert_string_equal(allow, "");
        assert_null(match("/api/v1/tokens/a/b", "DELETE", allow, &param));
        assert_string_equal(allow, "");
}

/* ---- query parsing ------------------------------------------------------------ */

static void route_admin_query_parse_decodes(void **state)
{
        (void)state;
        struct admin_query q;
        assert_int_equal(admin_query_parse(NULL, admin_q_keys, &q).code, 0);
        assert_int_equal(q.n, 0);
        assert_int_equal(admin_query_parse("", NULL, &q).code, 0);
        assert_int_equal(
                admin_query_parse("tag=env%3Dprod+x&limit=10&prefix=a.b&state=enabled",
                                  admin_q_keys, &q)
                        .code,
                0);
        assert_int_equal(q.n, 4);
        assert_string_equal(admin_query_get(&q, "tag"), "env=prod x");
        assert_string_equal(admin_query_get(&q, "limit"), "10");
        assert_string_equal(admin_query_get(&q, "prefix"), "a.b");
        assert_null(admin_query_get(&q, "cursor"));
        assert_int_equal(admin_query_parse("tag=caf%C3%A9%3Dx", admin_q_keys, &q).code, 0);
        assert_string_equal(admin_query_get(&q, "tag"), "caf\xc3\xa9=x");
}

static void route_admin_query_parse_strict_failures(void **state)
{
        (void)state;
        char longv[400] = "tag=";
        memset(longv + 4, 'a', 257);
        static const struct {
                const char *q;
                int code;
        } t[] = {
                { "limit=1&limit=2", KW_ERR_BAD_FIELD }, { "bogus=1", KW_ERR_BAD_FIELD },
                { "limit", KW_ERR_BAD_FIELD },           { "limit=", KW_ERR_BAD_FIELD },
                { "=5", KW_ERR_BAD_FIELD },              { "limit=1&", KW_ERR_BAD_FIELD },
                { "&limit=1", KW_ERR_BAD_FIELD },        { "limit=1&&state=x", KW_ERR_BAD_FIELD },
                { "tag=a%00b", KW_ERR_BAD_ENCODING },    { "tag=a%0Ab", KW_ERR_BAD_ENCODING },
                { "tag=a%zz", KW_ERR_BAD_ENCODING },     { "tag=a%4", KW_ERR_BAD_ENCODING },
                { "tag=%C3%28", KW_ERR_BAD_ENCODING },   { "li%00mit=1", KW_ERR_BAD_FIELD },
                { "state=a&type=b&tag=c&prefix=d&limit=e&cursor=f&state=g", KW_ERR_BAD_FIELD },
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
                struct admin_query q = { .n = 42 };
                assert_int_equal(admin_query_parse(t[i].q, admin_q_keys, &q).code, t[i].code);
                assert_int_equal(q.n, 42);
        }
        struct admin_query q = { .n = 42 };
        assert_int_equal(admin_query_parse(longv, admin_q_keys, &q).code, KW_ERR_BAD_FIELD);
        assert_int_equal(admin_query_parse("limit=1", NULL, &q).code, KW_ERR_BAD_FIELD);
        assert_int_equal(q.n, 42);
        longv[4 + 256] = '\0'; /* exactly 256: fine */
        assert_int_equal(admin_query_parse(longv, admin_q_keys, &q).code, 0);
}

static void route_admin_parse_u64_bounds(void **state)
{
        (void)state;
        uint64_t v = 77;
        assert_int_equal(admin_parse_u64("0", 0, 10, &v).code, 0);
        assert_int_equal(v, 0);
        assert_int_equal(admin_parse_u64("18446744073709551615", 0, UINT64_MAX, &v).code, 0);
        assert_true(v == UINT64_MAX);
        v = 77;
        static const char *const bad[] = { "",  "01", "-1", "+1",  "1a", "1 ",
                                           "18446744073709551616", "1001", "0x10" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                assert_int_equal(admin_parse_u64(bad[i], 0, i == 7 ? 1000 : UINT64_MAX, &v).code,
                                 KW_ERR_BAD_FIELD);
                assert_int_equal(v, 77);
        }
        assert_int_equal(admin_parse_u64("0", 1, 10, &v).code, KW_ERR_BAD_FIELD);
}

/* ---- headers ---------------------------------------------------------------------- */

static void route_admin_content_type(void **state)
{
        (void)state;
        assert_true(admin_content_type_is_json("application/json"));
        assert_true(admin_content_type_is_json("Application/JSON; charset=utf-8"));
        assert_true(admin_content_type_is_json(" application/json ;charset=utf-8"));
        assert_false(admin_content_type_is_json(NULL));
        assert_false(admin_content_type_is_json(""));
        assert_false(admin_content_type_is_json("text/plain"));
        assert_false(admin_content_type_is_json("application/jsonx"));
        assert_false(admin_content_type_is_json("application/json-patch+json"));
}

static void route_admin_bearer_token_parse(void **state)
{
        (void)state;
        const char *t = NULL;
        size_t n = 0;
        assert_int_equal(admin_bearer_token("Bearer abc-DEF_1.2~+/==", &t, &n).code, 0);
        assert_int_equal(n, strlen("abc-DEF_1.2~+/=="));
        assert_memory_equal(t, "abc-DEF_1.2~+/==", n);
        assert_int_equal(admin_bearer_token("bearer   tok  ", &t, &n).code, 0);
        assert_int_equal(n, 3);
        assert_memory_equal(t, "tok", 3);
        char longtok[600] = "Bearer ";
        memset(longtok + 7, 'a', 513);
        static const char *const bad[] = { "Basic dXNlcjpw", "Bearer", "Bearer ", "Bearer a b",
                                           "Bearer a=b",     "Bearertok", "Bearer t\x01",
                                           "Bearer ==" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                t = "x";
                n = 5;
                assert_int_equal(admin_bearer_token(bad[i], &t, &n).code, KW_ERR_AUTH);
                assert_string_equal(t, "x");
                assert_int_equal(n, 5);
        }
        assert_int_equal(admin_bearer_token(NULL, &t, &n).code, KW_ERR_AUTH);
        assert_int_equal(admin_bearer_token(longtok, &t, &n).code, KW_ERR_AUTH);
        longtok[7 + 512] = '\0';
        assert_int_equal(admin_bearer_token(longtok, &t, &n).code, 0);
}

/* ---- body validation --------------------------------------------------------------- */

static cJSON *J(const char *s)
{
        cJSON *doc = NULL;
        assert_int_equal(kw_json_parse((const uint8_t *)s, strlen(s), 16, &doc).code, 0);
        return doc;
}

static void route_admin_check_fields_unknown_fails(void **state)
{
        (void)state;
        cJSON *d = J("{\"name\":\"a\",\"tpye\":\"AES\"}");
        assert_int_equal(admin_check_fields(d, admin_f_create).code, KW_ERR_BAD_FIELD);
        assert_string_equal(kw_err_detail(), "unknown field 'tpye'");
        cJSON_Delete(d);
        d = J("{\"name\":\"a\",\"type\":\"AES\",\"size\":256}");
        assert_int_equal(admin_check_fields(d, admin_f_create).code, 0);
        assert_int_equal(admin_check_fields(d, admin_f_import).code, KW_ERR_BAD_FIELD);
        cJSON_Delete(d);
        d = J("{\"\\u0001x\":1}");
        assert_int_equal(admin_check_fields(d, admin_f_create).code, KW_ERR_BAD_FIELD);
        assert_string_equal(kw_err_detail(), "unknown field");
        cJSON_Delete(d);
}

static void route_admin_get_name_alphabet(void **state)
{
        (void)state;
        static const char *const bad[] = { "{\"name\":\"\"}", "{\"name\":\"a/b\"}",
                                           "{\"name\":\"..\"}", "{\"name\":\"a b\"}",
                                           "{\"name\":7}", "{}",
                                           "{\"name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                                           "aaaaaaaaaaaaaaaaaaaaaaaaa\"}" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                cJSON *d = J(bad[i]);
                const char *n = "untouched";
                assert_int_not_equal(admin_get_name(d, "name", &n).code, 0);
                assert_string_equal(n, "untouched");
                cJSON_Delete(d);
        }
        cJSON *d = J("{\"name\":\"Key-1.a_b\"}");
        const char *n = NULL;
        assert_int_equal(admin_get_name(d, "name", &n).code, 0);
        assert_string_equal(n, "Key-1.a_b");
        cJSON_Delete(d);
}

static void route_admin_get_ops_mask(void **state)
{
        (void)state;
        uint32_t m = 0;
        cJSON *d = J("{\"operations\":[\"wrap\",\"unwrap\",\"encrypt\",\"decrypt\"]}");
        assert_int_equal(admin_get_ops(d, &m).code, 0);
        assert_int_equal(m, KW_KEYOP_ALL);
        cJSON_Delete(d);
        d = J("{}");
        m = 99;
        assert_int_equal(admin_get_ops(d, &m).code, 0);
        assert_int_equal(m, 99);
        cJSON_Delete(d);
        static const char *const bad[] = {
                "{\"operations\":[]}", "{\"operations\":[\"sign\"]}",
                "{\"operations\":[\"wrap\",\"wrap\"]}", "{\"operations\":\"wrap\"}",
                "{\"operations\":[1]}", "{\"operations\":[\"Encrypt\"]}",
                "{\"operations\":[\"encrypt\",\"decrypt\",\"wrap\",\"unwrap\",\"wrap\"]}",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                d = J(bad[i]);
                m = 99;
                assert_int_not_equal(admin_get_ops(d, &m).code, 0);
                assert_int_equal(m, 99);
                cJSON_Delete(d);
        }
}

static kw_result tags_of(const char *json, struct kw_buf *out, int *present)
{
        cJSON *d = J(json);
        kw_result r = admin_get_tags(d, out, present);
        cJSON_Delete(d);
        return r;
}

static void route_admin_get_tags_limits(void **state)
{
        (void)state;
        struct kw_buf b;
        kw_buf_init(&b, ADMIN_TAGS_JSON_MAX);
        int present = 7;
        assert_int_equal(tags_of("{}", &b, &present).code, 0);
        assert_int_equal(present, 0);
        assert_int_equal(tags_of("{\"tags\":{\"env\":\"prod\",\"team\":\"\"}}", &b, &present).code,
                         0);
        assert_int_equal(present, 1);
        assert_int_equal(b.len, strlen("{\"env\":\"prod\",\"team\":\"\"}"));
        assert_memory_equal(b.p, "{\"env\":\"prod\",\"team\":\"\"}", b.len);
        kw_buf_reset(&b);

        /* 64 tags fine, 65 refused */
        char big[8000];
        size_t o = (size_t)snprintf(big, sizeof big, "{\"tags\":{");
        for (int i = 0; i < 65; i++)
                o += (size_t)snprintf(big + o, sizeof big - o, "%s\"k%d\":\"v\"", i ? "," : "", i);
        snprintf(big + o, sizeof big - o, "}}");
        present = 7;
        assert_int_equal(tags_of(big, &b, &present).code, KW_ERR_BAD_FIELD);
        assert_int_equal(present, 7);
        assert_int_equal(b.len, 0);
        char *cut = strstr(big, ",\"k64\"");
        snprintf(cut, 3, "}}");
        assert_int_equal(tags_of(big, &b, &present).code, 0);
        kw_buf_reset(&b);

        char k129[200], v257[300];
        memset(k129, 'k', 129);
        k129[129] = '\0';
        memset(v257, 'v', 257);
        v257[257] = '\0';
        char doc[1000];
        static const char *const bad[] = { "{\"tags\":{\"a\":1}}", "{\"tags\":{\"\":\"x\"}}",
                                           "{\"tags\":{\"a\":\"x\\ny\"}}", "{\"tags\":[\"a\"]}",
                                           "{\"tags\":{\"a\":{\"b\":\"c\"}}}" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                present = 7;
                assert_int_not_equal(tags_of(bad[i], &b, &present).code, 0);
                assert_int_equal(present, 7);
                assert_int_equal(b.len, 0);
        }
        snprintf(doc, sizeof doc, "{\"tags\":{\"%s\":\"x\"}}", k129);
        assert_int_equal(tags_of(doc, &b, &present).code, KW_ERR_BAD_FIELD);
        snprintf(doc, sizeof doc, "{\"tags\":{\"a\":\"%s\"}}", v257);
        assert_int_equal(tags_of(doc, &b, &present).code, KW_ERR_BAD_FIELD);
        v257[256] = '\0';
        k129[128] = '\0';
        snprintf(doc, sizeof doc, "{\"tags\":{\"%s\":\"%s\"}}", k129, v257);
        assert_int_equal(tags_of(doc, &b, &present).code, 0);
        kw_buf_free(&b);
}

static void route_admin_get_rules_size_cap(void **state)
{
        (void)state;
        struct kw_buf b;
        kw_buf_init(&b, ADMIN_RULES_JSON_MAX);
        int present = 7;
        cJSON *d = J("{\"rules\":{\"allow\":[{\"caller\":\"xks\"}]}}");
        assert_int_equal(admin_get_rules(d, &b, &present).code, 0);
        assert_int_equal(present, 1);
        assert_memory_equal(b.p, "{\"allow\":[{\"caller\":\"xks\"}]}", b.len);
        cJSON_Delete(d);
        kw_buf_reset(&b);
        size_t n = 17 * 1024;
        char *big = malloc(n + 64);
        int o = snprintf(big, n + 64, "{\"rules\":{\"x\":\"");
        memset(big + o, 'a', n);
        memcpy(big + o + n, "\"}}", 4);
        d = J(big);
        present = 7;
        assert_int_equal(admin_get_rules(d, &b, &present).code, KW_ERR_TOO_LARGE);
        assert_int_equal(present, 7);
        assert_int_equal(b.len, 0);
        cJSON_Delete(d);
        free(big);
        d = J("{\"rules\":[1]}");
        assert_int_equal(admin_get_rules(d, &b, &present).code, KW_ERR_BAD_FIELD);
        cJSON_Delete(d);
        kw_buf_free(&b);
}

static void route_admin_check_size_combinations(void **state)
{
        (void)state;
        assert_int_equal(admin_check_size("AES", 256).code, 0);
        assert_int_equal(admin_check_size("AES", 128).code, KW_ERR_BAD_FIELD);
        assert_int_equal(admin_check_size("AES", 2048).code, KW_ERR_BAD_FIELD);
        assert_int_equal(admin_check_size("RSA", 2048).code, 0);
        assert_int_equal(admin_check_size("RSA", 3072).code, 0);
        assert_int_equal(admin_check_size("RSA", 4096).code, 0);
        assert_int_equal(admin_check_size("RSA", 1024).code, KW_ERR_BAD_FIELD);
        assert_int_equal(admin_check_size("RSA", 256).code, KW_ERR_BAD_FIELD);
}

static void route_admin_json_wipe_clears_strings(void **state)
{
        (void)state;
        cJSON *d = J("{\"material\":\"c2VjcmV0\",\"nested\":{\"pem\":\"-----BEGIN\"},\"a\":[\"x\"]}");
        cJSON *m = cJSON_GetObjectItemCaseSensitive(d, "material");
        char *p = m->valuestring;
        size_t n = strlen(p);
        admin_json_wipe(d);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(p[i], 0);
        assert_null(cJSON_GetObjectItemCaseSensitive(d, "nested")); /* names wiped too */
        const cJSON *nested = d->child->next;
        assert_int_equal(nested->child->valuestring[0], 0);
        assert_int_equal(nested->next->child->valuestring[0], 0);
        cJSON_Delete(d);
}

static void route_admin_principal_parse(void **state)
{
        (void)state;
        struct admin_principal who = { .role = 99 };
        const char *ok = "{\"id\":\"0123abcd\",\"name\":\"ci-bot\",\"role\":\"operator\"}";
        assert_int_equal(admin_principal_parse(ok, strlen(ok), &who).code, 0);
        assert_string_equal(who.id, "0123abcd");
        assert_int_equal(who.role, ROLE_OPERATOR);
        assert_string_equal(who.name, "ci-bot");
        struct admin_principal w0 = { .role = 99 };
        const char *live = "{\"id\":\"a\",\"name\":\"n\",\"role\":\"admin\",\"created\":\"x\",\"revoked\":null}";
        assert_int_equal(admin_principal_parse(live, strlen(live), &w0).code, 0);
        assert_int_equal(w0.role, ROLE_ADMIN);
        static const char *const bad[] = {
                "{\"id\":\"x\",\"name\":\"n\",\"role\":\"root\"}",
                "{\"name\":\"n\",\"role\":\"admin\"}",
                "{\"id\":\"a\\\"b\",\"name\":\"n\",\"role\":\"admin\"}",
                "{\"id\":\"a\",\"name\":\"n n\",\"role\":\"admin\"}",
                "[1]",
                "",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                struct admin_principal w = { .role = 99 };
                assert_int_equal(admin_principal_parse(bad[i], strlen(bad[i]), &w).code,
                                 KW_ERR_PROTOCOL);
                assert_int_equal(w.role, 99);
        }
}

/* ---- handlers against the fake custody ------------------------------------------- */

/* The token is the admin caller's proof: custody hashes and checks it on
 * every call (proto.h), so it goes as received, with the class. */
static void route_admin_authenticate_sends_the_token_as_proof(void **state)
{
        (void)state;
        struct kw_req req = { .method = "GET" };
        struct admin_call a = { .req = &req, .front = &front };
        fake_reply(0, NULL, "{\"id\":\"ab12\",\"name\":\"ci\",\"role\":\"auditor\"}");
        assert_int_equal(admin_authenticate(&a, "Bearer s3cret-token").code, 0);
        assert_int_equal(fk.msg.op, KW_OP_TOKEN_CHECK);
        assert_int_equal(req_u32(KW_T_CALLER), KW_CALLER_ADMIN);
        assert_string_equal(req_str(KW_T_TOKEN), "s3cret-token");
        assert_int_equal(a.who.role, ROLE_AUDITOR);
        assert_string_equal(a.who.id, "ab12");
}

static void route_admin_authenticate_failures(void **state)
{
        (void)state;
        struct kw_req req = { .method = "GET" };
        struct admin_call a = { .req = &req, .front = &front };
        int n = fake_nreq();
        assert_int_equal(admin_authenticate(&a, NULL).code, KW_ERR_AUTH);
        assert_int_equal(admin_authenticate(&a, "Basic eDp5").code, KW_ERR_AUTH);
        assert_int_equal(fake_nreq(), n); /* no custody call for a malformed header */
        fake_reply(KW_ERR_NOT_FOUND, "no such token", NULL);
        assert_int_equal(admin_authenticate(&a, "Bearer wrong").code, KW_ERR_AUTH);
        fake_reply(KW_ERR_SEALED, "key store not open", NULL);
        assert_int_equal(admin_authenticate(&a, "Bearer wrong").code, KW_ERR_SEALED);
        assert_string_equal(kw_err_detail(), "key store not open");
        fake_reply(0, NULL, "{\"id\":\"ab12\",\"name\":\"ci\",\"role\":\"superuser\"}");
        assert_int_equal(admin_authenticate(&a, "Bearer t").code, KW_ERR_PROTOCOL);
        assert_int_equal(a.who.role, 0); /* never filled */
}

static void route_admin_keys_create_sends_fields(void **state)
{
        (void)state;
        struct kw_resp resp;
        resp_init(&resp);
        fake_reply(0, NULL, "{\"name\":\"k1\"}");
        assert_int_equal(run(admin_keys_create, NULL,
                             "{\"name\":\"k1\",\"type\":\"AES\",\"operations\":[\"encrypt\","
                             "\"decrypt\"],\"tags\":{\"env\":\"prod\"},\"rules\":{\"a\":1}}",
                             NULL, &resp)
                                 .code,
                         0);
        assert_int_equal(resp.status, 201);
        assert_string_equal(resp_str(&resp), "{\"name\":\"k1\"}");
        assert_int_equal(fk.msg.op, KW_OP_KEY_CREATE);
        assert_string_equal(req_str(KW_T_NAME), "k1");
        assert_string_equal(req_str(KW_T_KEY_TYPE), "AES");
        assert_int_equal(req_u32(KW_T_KEY_SIZE), 256);
        assert_int_equal(req_u32(KW_T_OPS), KW_KEYOP_ENCRYPT | KW_KEYOP_DECRYPT);
        assert_string_equal(req_str(KW_T_TAGS), "{\"env\":\"prod\"}");
        assert_string_equal(req_str(KW_T_RULES), "{\"a\":1}");
        /* no actor of the front's: custody audits the token it verified */
        assert_int_equal(req_u32(KW_T_CALLER), KW_CALLER_ADMIN);
        assert_string_equal(req_str(KW_T_TOKEN), "kw_test-token");
        kw_buf_free(&resp.body);

        resp_init(&resp);
        assert_int_equal(run(admin_keys_create, NULL, "{\"name\":\"r1\",\"type\":\"RSA\"}", NULL,
                             &resp)
                                 .code,
                         0);
        assert_int_equal(req_u32(KW_T_KEY_SIZE), 3072);
        assert_false(kw_msg_has(&fk.msg, KW_T_OPS));
        assert_false(kw_msg_has(&fk.msg, KW_T_TAGS));
        assert_false(kw_msg_has(&fk.msg, KW_T_RULES));
        kw_buf_free(&resp.body);
}

static void route_admin_keys_create_invalid_sends_nothing(void **state)
{
        (void)state;
        expect_refused(admin_keys_create, NULL, "{\"name\":\"k1\",\"type\":\"AES\",\"color\":1}",
                       KW_ERR_BAD_FIELD);
        expect_refused(admin_keys_create, NULL, "{\"name\":\"k1\",\"type\":\"AES\",\"size\":128}",
                       KW_ERR_BAD_FIELD);
        expect_refused(admin_keys_create, NULL, "{\"name\":\"k1\",\"type\":\"aes\"}",
                       KW_ERR_BAD_FIELD);
        expect_refused(admin_keys_create, NULL, "{\"type\":\"AES\"}", KW_ERR_MISSING_FIELD);
        expect_refused(admin_keys_create, NULL, "{\"name\":\"k/1\",\"type\":\"AES\"}",
                       KW_ERR_BAD_NAME);
        expect_refused(admin_keys_create, NULL,
                       "{\"name\":\"k1\",\"type\":\"RSA\",\"size\":\"2048\"}", KW_ERR_BAD_FIELD);
        expect_refused(admin_keys_create, NULL,
                       "{\"name\":\"k1\",\"type\":\"AES\",\"operations\":[\"sign\"]}",
                       KW_ERR_BAD_FIELD);
}

static void route_admin_custody_error_keeps_detail(void **state)
{
        (void)state;
        struct kw_resp resp;
        resp_init(&resp);
        fake_reply(KW_ERR_EXISTS, "a key named 'k1' exists", NULL);
        assert_int_equal(run(admin_keys_create, NULL, "{\"name\":\"k1\",\"type\":\"AES\"}", NULL,
                             &resp)
                                 .code,
                         KW_ERR_EXISTS);
        assert_string_equal(kw_err_detail(), "a key named 'k1' exists");
        assert_int_equal(resp.status, 599);
        assert_int_equal(resp.body.len, 0);
        kw_buf_free(&resp.body);
}

static void route_admin_custody_down_is_503(void **state)
{
        (void)state;
        struct kw_front down = { 0 };
        assert_int_equal(kw_cc_new("/nonexistent/keyward.sock", 1, 200, &down.cc).code, 0);
        struct kw_resp resp;
        resp_init(&resp);
        struct kw_req req = { .method = "GET" };
        struct admin_call a = { .req = &req, .resp = &resp, .front = &down, .param = "k1" };
        kw_result r = admin_keys_get(&a);
        assert_int_equal(r.code, KW_ERR_CUSTODY_DOWN);
        int retry = 0;
        assert_int_equal(admin_http_status(r.code, &retry), 503);
        assert_int_equal(retry, 1);
        assert_int_equal(resp.body.len, 0);
        kw_cc_free(down.cc);
        kw_buf_free(&resp.body);
}

/* Issue 10, finding 1: the front never decodes key material.  The import
 * fields go to custody as the client sent them, with their format; a
 * malformed value is custody's to refuse. */
static void route_admin_keys_import_forwards_material_undecoded(void **state)
{
        (void)state;
        static const struct {
                const char *body, *text;
                uint32_t format;
        } ok[] = {
                { "{\"name\":\"imp\",\"type\":\"AES\",\"material\":\"AAECAwQFBgcICQoLDA0ODxAREhMU"
                  "FRYXGBkaGxwdHh8=\",\"operations\":[\"wrap\",\"unwrap\"]}",
                  "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", KW_MATERIAL_AES_B64 },
                /* not even base64: still custody's to refuse */
                { "{\"name\":\"imp\",\"type\":\"AES\",\"material\":\"not base64!\"}", "not base64!",
                  KW_MATERIAL_AES_B64 },
                { "{\"name\":\"r\",\"type\":\"RSA\",\"pkcs8\":\"MIIE\"}", "MIIE",
                  KW_MATERIAL_PKCS8_B64 },
                { "{\"name\":\"r\",\"type\":\"RSA\",\"pem\":\"-----BEGIN PRIVATE KEY-----\\nMIIE\\n"
                  "-----END PRIVATE KEY-----\\n\"}",
                  "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n", KW_MATERIAL_PEM },
        };
        for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
                struct kw_resp resp;
                resp_init(&resp);
                fake_reply(0, NULL, "{\"name\":\"imp\"}");
                assert_int_equal(run(admin_keys_import, NULL, ok[i].body, NULL, &resp).code, 0);
                assert_int_equal(resp.status, 201);
                assert_int_equal(fk.msg.op, KW_OP_KEY_IMPORT);
                assert_string_equal(req_str(KW_T_MATERIAL), ok[i].text);
                assert_int_equal(req_u32(KW_T_MATERIAL_FORMAT), ok[i].format);
                assert_false(kw_msg_has(&fk.msg, KW_T_KEY_SIZE));   /* the key's own, in custody */
                kw_buf_free(&resp.body);
        }
        /* custody's refusal is the answer */
        struct kw_resp resp;
        resp_init(&resp);
        fake_reply(KW_ERR_BAD_ENCODING, "'material' is not valid base64", NULL);
        assert_int_equal(run(admin_keys_import, NULL, ok[1].body, NULL, &resp).code,
                         KW_ERR_BAD_ENCODING);
        assert_string_equal(kw_err_detail(), "'material' is not valid base64");
        kw_buf_free(&resp.body);
        fake_reply(0, NULL, "{}");
        /* the shape is checked here: which fields, for which type */
        expect_refused(admin_keys_import, NULL, "{\"name\":\"imp\",\"type\":\"AES\"}",
                       KW_ERR_MISSING_FIELD);
        expect_refused(admin_keys_import, NULL,
                       "{\"name\":\"imp\",\"type\":\"AES\",\"material\":\"AAAA\",\"pem\":\"x\"}",
                       KW_ERR_BAD_FIELD);
        expect_refused(admin_keys_import, NULL,
                       "{\"name\":\"imp\",\"type\":\"AES\",\"size\":256,\"material\":\"AAAA\"}",
                       KW_ERR_BAD_FIELD);
        expect_refused(admin_keys_import, NULL,
                       "{\"name\":\"r\",\"type\":\"RSA\",\"pkcs8\":\"AAAA\",\"pem\":\"x\"}",
                       KW_ERR_BAD_FIELD);
        expect_refused(admin_keys_import, NULL, "{\"name\":\"r\",\"type\":\"RSA\"}",
                       KW_ERR_BAD_FIELD);
        expect_refused(admin_keys_import, NULL,
                       "{\"name\":\"r\",\"type\":\"RSA\",\"material\":\"AAAA\",\"pkcs8\":\"AAAA\"}",
                       KW_ERR_BAD_FIELD);
        expect_refused(admin_keys_import, NULL,
                       "{\"name\":\"r\",\"type\":\"RSA\",\"pkcs8\":42}", KW_ERR_BAD_FIELD);
}

static void route_admin_keys_update_and_state(void **state)
{
        (void)state;
        struct kw_resp resp;
        resp_init(&resp);
        fake_reply(0, NULL, "{\"name\":\"k1\"}");
        assert_int_equal(run(admin_keys_update, "k1", "{\"tags\":{}}", NULL, &resp).code, 0);
        assert_int_equal(fk.msg.op, KW_OP_KEY_UPDATE);
        assert_string_equal(req_str(KW_T_NAME), "k1");
        assert_string_equal(req_str(KW_T_TAGS), "{}");
        assert_false(kw_msg_has(&fk.msg, KW_T_OPS));
        kw_buf_free(&resp.body);
        expect_refused(admin_keys_update, "k1", "{}", KW_ERR_MISSING_FIELD);
        expect_refused(admin_keys_update, "k1", "{\"name\":\"k2\"}", KW_ERR_BAD_FIELD);

        resp_init(&resp);
        assert_int_equal(run(admin_keys_disable, "k1", NULL, NULL, &resp).code, 0);
        assert_int_equal(fk.msg.op, KW_OP_KEY_SET_STATE);
        assert_string_equal(req_str(KW_T_STATE), "disabled");
        assert_string_equal(req_str(KW_T_TOKEN), "kw_test-token");
        kw_buf_free(&resp.body);

        resp_init(&resp);
        assert_int_equal(run(admin_keys_schedule_delete, "k1", "{\"wait_seconds\":700000}", NULL,
                             &resp)
                                 .code,
                         0);
        assert_int_equal(fk.msg.op, KW_OP_KEY_SCHEDULE_DELETE);
        assert_int_equal(req_u32(KW_T_WAIT_SECONDS), 700000);
        kw_buf_free(&resp.body);
        resp_init(&resp);
        assert_int_equal(run(admin_keys_schedule_delete, "k1", NULL, NULL, &resp).code, 0);
        assert_false(kw_msg_has(&fk.msg, KW_T_WAIT_SECONDS));
        kw_buf_free(&resp.body);
        expect_refused(admin_keys_schedule_delete, "k1", "{\"wait_seconds\":-1}", KW_ERR_BAD_FIELD);
        expect_refused(admin_keys_schedule_delete, "k1", "{\"wait_days\":7}", KW_ERR_BAD_FIELD);
}

static void route_admin_keys_list_and_audit_query(void **state)
{
        (void)state;
        struct kw_resp resp;
        resp_init(&resp);
        fake_reply(0, NULL, "{\"keys\":[],\"next\":null}");
        assert_int_equal(run(admin_keys_list, NULL, NULL,
                             "state=enabled&type=RSA&tag=env%3Dprod&prefix=app.&limit=10&cursor=k9",
                             &resp)
                                 .code,
                         0);
        assert_int_equal(fk.msg.op, KW_OP_KEY_LIST);
        assert_string_equal(req_str(KW_T_STATE), "enabled");
        assert_string_equal(req_str(KW_T_KEY_TYPE), "RSA");
        assert_string_equal(req_str(KW_T_TAG), "env=prod");
        assert_string_equal(req_str(KW_T_NAME_PREFIX), "app.");
        assert_string_equal(req_str(KW_T_CURSOR), "k9");
        assert_int_equal(req_u32(KW_T_LIMIT), 10);
        assert_string_equal(resp_str(&resp), "{\"keys\":[],\"next\":null}");
        kw_buf_free(&resp.body);

        static const char *const bad[] = { "state=gone", "type=aes", "tag=novalue", "tag==x",
                                           "limit=0", "limit=1001", "prefix=a/b", "cursor=a%20b" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                resp_init(&resp);
                int n = fake_nreq();
                assert_int_not_equal(run(admin_keys_list, NULL, NULL, bad[i], &resp).code, 0);
                assert_int_equal(fake_nreq(), n);
                assert_int_equal(resp.body.len, 0);
                kw_buf_free(&resp.body);
        }

        resp_init(&resp);
        fake_reply(0, NULL, "{\"events\":[],\"next\":null}");
        assert_int_equal(run(admin_audit_query, NULL, NULL, "after=5&limit=2&key=k1&action=key.create",
                             &resp)
                                 .code,
                         0);
        assert_int_equal(fk.msg.op, KW_OP_AUDIT_QUERY);
        uint64_t seq = 0;
        assert_int_equal(kw_msg_get_u64(&fk.msg, KW_T_SEQ, &seq).code, 0);
        assert_int_equal(seq, 5);
        assert_string_equal(req_str(KW_T_NAME), "k1");
        assert_string_equal(req_str(KW_T_ACTION), "key.create");
        kw_buf_free(&resp.body);
}

static void route_admin_status_wraps_custody(void **state)
{
        (void)state;
        struct kw_resp resp;
        resp_init(&resp);
        fake_reply(0, NULL, "{\"state\":\"open\",\"keys\":3}");
        assert_int_equal(run(admin_status, NULL, NULL, NULL, &resp).code, 0);
        assert_int_equal(resp.status, 200);
        assert_string_equal(resp_str(&resp), "{\"custody\":{\"state\":\"open\",\"keys\":3},"
                                             "\"version\":\"" KEYWARD_VERSION "\","
                                             "\"evaluation\":false,\"unlock\":{\"state\":"
                                             "\"unknown\",\"detail\":\"not read\"}}");
        kw_buf_free(&resp.body);
}

static void route_admin_parse_rfc3339_ms_strict(void **state)
{
        (void)state;
        int64_t t = 42;
        assert_int_equal(admin_parse_rfc3339_ms("2026-01-01T00:00:00Z", &t).code, 0);
        assert_int_equal(t, 1767225600000LL);
        assert_int_equal(admin_parse_rfc3339_ms("2026-01-01t00:00:01.5z", &t).code, 0);
        assert_int_equal(t, 1767225601500LL);
        assert_int_equal(admin_parse_rfc3339_ms("2024-02-29T23:59:59.123456789Z", &t).code, 0);
        assert_int_equal(t % 1000, 123);
        static const char *const bad[] = {
                "2026-01-01T00:00:00",       "2026-01-01 00:00:00Z",  "2026-01-01T00:00:00+01:00",
                "2025-02-29T00:00:00Z",      "2026-13-01T00:00:00Z",  "2026-01-01T24:00:00Z",
                "2026-01-01T00:00:60Z",      "2026-01-01T00:00:00.Z", "1969-12-31T23:59:59Z",
                "2026-01-01T00:00:00.1234567890Z", "yesterday", "",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                t = 42;
                assert_int_equal(admin_parse_rfc3339_ms(bad[i], &t).code, KW_ERR_BAD_FIELD);
                assert_int_equal(t, 42);
        }
}

static void route_admin_tokens_create_and_revoke(void **state)
{
        (void)state;
        struct kw_resp resp;
        resp_init(&resp);
        fake_reply(0, NULL, "{\"id\":\"t2\",\"name\":\"ops\",\"role\":\"operator\",\"token\":\"x\"}");
        assert_int_equal(run(admin_tokens_create, NULL, "{\"name\":\"ops\",\"role\":\"operator\"}",
                             NULL, &resp)
                                 .code,
                         0);
        assert_int_equal(resp.status, 201);
        assert_int_equal(fk.msg.op, KW_OP_TOKEN_CREATE);
        assert_string_equal(req_str(KW_T_TOKEN_NAME), "ops");
        assert_string_equal(req_str(KW_T_ROLE), "operator");
        kw_buf_free(&resp.body);
        expect_refused(admin_tokens_create, NULL, "{\"name\":\"ops\",\"role\":\"root\"}",
                       KW_ERR_BAD_FIELD);
        expect_refused(admin_tokens_create, NULL, "{\"name\":\"ops\"}", KW_ERR_MISSING_FIELD);
        expect_refused(admin_tokens_create, NULL,
                       "{\"name\":\"ops\",\"role\":\"admin\",\"expires\":1}", KW_ERR_BAD_FIELD);

        resp_init(&resp);
        fake_reply(0, NULL, "{\"id\":\"t2\"}");
        assert_int_equal(run(admin_tokens_revoke, "t2", NULL, NULL, &resp).code, 0);
        assert_int_equal(fk.msg.op, KW_OP_TOKEN_REVOKE);
        assert_string_equal(req_str(KW_T_TOKEN_ID), "t2");
        assert_string_equal(req_str(KW_T_TOKEN), "kw_test-token");
        kw_buf_free(&resp.body);
}

/* ---- /metrics ----------------------------------------------------------------------- */

static void route_ops_stats_to_prometheus(void **state)
{
        (void)state;
        struct kw_buf b;
        kw_buf_init(&b, 1u << 16);
        const char *j = "{\"hsm_calls_total\":12,\"cache\":{\"size\":3,\"hits_total\":7},"
                        "\"sealed\":false,\"ratio\":0.25,\"version\":\"1.0\",\"bad-name\":1,"
                        "\"list\":[1,2]}";
        assert_int_equal(ops_stats_to_prometheus(j, strlen(j), "kw-a", &b).code, 0);
        const char *s = NULL;
        assert_int_equal(kw_buf_cstr(&b, &s).code, 0);
        assert_string_equal(s, "# TYPE keyward_custody_hsm_calls_total counter\n"
                               "keyward_custody_hsm_calls_total{node=\"kw-a\"} 12\n"
                               "# TYPE keyward_custody_cache_size gauge\n"
                               "keyward_custody_cache_size{node=\"kw-a\"} 3\n"
                               "# TYPE keyward_custody_cache_hits_total counter\n"
                               "keyward_custody_cache_hits_total{node=\"kw-a\"} 7\n"
                               "# TYPE keyward_custody_sealed gauge\n"
                               "keyward_custody_sealed{node=\"kw-a\"} 0\n"
                               "# TYPE keyward_custody_ratio gauge\n"
                               "keyward_custody_ratio{node=\"kw-a\"} 0.25\n");
        size_t len = b.len;
        assert_int_equal(ops_stats_to_prometheus("[1]", 3, "kw-a", &b).code, KW_ERR_PROTOCOL);
        assert_int_equal(ops_stats_to_prometheus("{", 1, "kw-a", &b).code, KW_ERR_PROTOCOL);
        assert_int_equal(b.len, len);
        kw_buf_free(&b);
}

static void route_ops_fleet_counts_by_state(void **state)
{
        (void)state;
        unsigned long long n[3] = { 7, 7, 7 };
        const char *j = "{\"engine\":\"postgresql\",\"self\":\"a\",\"state\":\"ACTIVE\","
                        "\"detail\":\"\",\"nodes\":[{\"id\":\"a\",\"state\":\"ACTIVE\"},"
                        "{\"id\":\"b\",\"state\":\"UNAVAILABLE\"},{\"id\":\"c\",\"state\":\"ACTIVE\"},"
                        "{\"id\":\"d\",\"state\":\"DEGRADED\"},{\"id\":\"e\",\"state\":\"LEAVING\"}]}";
        assert_int_equal(ops_fleet_counts(j, strlen(j), n).code, 0);
        assert_true(n[0] == 2 && n[1] == 1 && n[2] == 1);   /* an unknown state is not counted */
        const char *e = "{\"state\":\"ACTIVE\",\"nodes\":[]}";
        assert_int_equal(ops_fleet_counts(e, strlen(e), n).code, 0);
        assert_true(n[0] == 0 && n[1] == 0 && n[2] == 0);
        static const struct {
                const char *json;
                int code;
        } bad[] = {
                /* the database did not answer this node: its list is not the fleet's now */
                { "{\"state\":\"DEGRADED\",\"nodes\":[{\"state\":\"ACTIVE\"}]}", KW_ERR_DB_UNAVAILABLE },
                { "{\"nodes\":[{\"state\":\"ACTIVE\"}]}", KW_ERR_PROTOCOL },
                { "{\"state\":\"ACTIVE\"}", KW_ERR_PROTOCOL },
                { "{\"state\":\"ACTIVE\",\"nodes\":{}}", KW_ERR_PROTOCOL },
                { "{\"state\":\"ACTIVE\",\"nodes\":[\"ACTIVE\"]}", KW_ERR_PROTOCOL },
                { "{\"state\":\"ACTIVE\",\"nodes\":[{\"state\":1}]}", KW_ERR_PROTOCOL },
                { "{\"state\":\"ACTIVE\",\"nodes\":[{\"state\":\"ACTIVE\"},{}]}", KW_ERR_PROTOCOL },
                { "{\"state\":1,\"nodes\":[]}", KW_ERR_PROTOCOL },
                { "[]", KW_ERR_PROTOCOL },
                { "{\"state\":\"ACTIVE\",\"nodes\":[]", KW_ERR_PROTOCOL },
                { "{\"state\":\"ACTIVE\",\"state\":\"ACTIVE\",\"nodes\":[]}", KW_ERR_PROTOCOL },
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                unsigned long long m[3] = { 9, 9, 9 };
                assert_int_equal(ops_fleet_counts(bad[i].json, strlen(bad[i].json), m).code,
                                 bad[i].code);
                assert_true(m[0] == 9 && m[1] == 9 && m[2] == 9);   /* untouched */
        }
}

/* Every sample line of text has node="<node>" as its first label. */
static void assert_every_sample_labelled(const char *text, const char *node)
{
        char want[96];
        snprintf(want, sizeof want, "{node=\"%s\"", node);
        int samples = 0;
        for (const char *l = text; *l != '\0';) {
                const char *end = strchr(l, '\n');
                assert_non_null(end);                 /* every line ends with \n */
                if (*l != '#') {
                        size_t name = strcspn(l, "{ ");
                        assert_true(name > 8 && strncmp(l, "keyward_", 8) == 0);
                        assert_true(strncmp(l + name, want, strlen(want)) == 0);
                        samples++;
                }
                l = end + 1;
        }
        assert_true(samples > 0);
}

static void route_ops_custody_metrics_single_node(void **state)
{
        (void)state;
        struct kw_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.db.engine = "sqlcipher";
        cfg.db.node_name = "kw-a";
        front.cfg = &cfg;
        struct kw_buf b;
        kw_buf_init(&b, 1u << 16);
        char node[65];
        ops_node_id(&front, node);
        assert_string_equal(node, "kw-a");
        fake_reply(0, NULL, "{\"hsm_up\":true}");
        int n = fake_nreq();
        assert_int_equal(ops_custody_metrics(&front, node, &b).code, 0);
        assert_int_equal(fake_nreq(), n + 1);                   /* STATS only: no fleet */
        assert_int_equal(fk.msg.op, KW_OP_STATS);
        const char *s = NULL;
        assert_int_equal(kw_buf_cstr(&b, &s).code, 0);
        assert_non_null(strstr(s, "\nkeyward_custody_up{node=\"kw-a\"} 1\n"));
        assert_non_null(strstr(s, "\nkeyward_custody_hsm_up{node=\"kw-a\"} 1\n"));
        assert_non_null(strstr(s, "\nkeyward_evaluation_mode{node=\"kw-a\"} 0\n"));
        assert_non_null(strstr(s, "# TYPE keyward_node_info gauge\nkeyward_node_info{node=\"kw-a\","
                                  "engine=\"sqlcipher\",version=\"" KEYWARD_VERSION "\"} 1\n"));
        assert_null(strstr(s, "keyward_db_up"));
        assert_null(strstr(s, "keyward_fleet_nodes"));
        assert_every_sample_labelled(s, "kw-a");
        kw_buf_free(&b);
        front.cfg = NULL;
        /* no configuration (a unit test's front): a fixed node id */
        ops_node_id(&front, node);
        assert_string_equal(node, "keyward");
}

static void route_ops_custody_metrics_fleet(void **state)
{
        (void)state;
        struct kw_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.db.engine = "postgresql";
        cfg.db.node_name = "kw-b";
        front.cfg = &cfg;
        struct kw_buf b;
        kw_buf_init(&b, 1u << 16);
        /* the fake answers STATS and NODES alike: one document for both */
        fake_reply(0, NULL, "{\"engine\":\"postgresql\",\"self\":\"kw-b\",\"state\":\"ACTIVE\","
                            "\"nodes\":[{\"id\":\"kw-a\",\"state\":\"ACTIVE\"},"
                            "{\"id\":\"kw-b\",\"state\":\"ACTIVE\"},"
                            "{\"id\":\"kw-c\",\"state\":\"UNAVAILABLE\"}]}");
        int n = fake_nreq();
        assert_int_equal(ops_custody_metrics(&front, "kw-b", &b).code, 0);
        assert_int_equal(fake_nreq(), n + 2);
        assert_int_equal(fk.msg.op, KW_OP_NODES);
        assert_int_equal(req_u32(KW_T_CALLER), KW_CALLER_PUBLIC);   /* /metrics has no token */
        assert_null(req_str(KW_T_TOKEN));
        const char *s = NULL;
        assert_int_equal(kw_buf_cstr(&b, &s).code, 0);
        assert_non_null(strstr(s, "keyward_node_info{node=\"kw-b\",engine=\"postgresql\","));
        assert_non_null(strstr(s, "# TYPE keyward_db_up gauge\nkeyward_db_up{node=\"kw-b\"} 1\n"));
        assert_non_null(strstr(s, "# TYPE keyward_fleet_nodes gauge\n"
                                  "keyward_fleet_nodes{node=\"kw-b\",state=\"ACTIVE\"} 2\n"
                                  "keyward_fleet_nodes{node=\"kw-b\",state=\"DEGRADED\"} 0\n"
                                  "keyward_fleet_nodes{node=\"kw-b\",state=\"UNAVAILABLE\"} 1\n"));
        assert_every_sample_labelled(s, "kw-b");

        /* custody does not answer: db_up 0, no counts, and NODES not even asked */
        kw_buf_reset(&b);
        fake_reply(KW_ERR_INTERNAL, "down", NULL);
        n = fake_nreq();
        assert_int_equal(ops_custody_metrics(&front, "kw-b", &b).code, 0);
        assert_int_equal(fake_nreq(), n + 1);
        assert_int_equal(kw_buf_cstr(&b, &s).code, 0);
        assert_non_null(strstr(s, "\nkeyward_custody_up{node=\"kw-b\"} 0\n"));
        assert_non_null(strstr(s, "\nkeyward_db_up{node=\"kw-b\"} 0\n"));
        assert_null(strstr(s, "keyward_fleet_nodes"));
        assert_every_sample_labelled(s, "kw-b");

        /* custody answers STATS but refuses NODES (an op it lacks, PUBLIC not allowed) */
        kw_buf_reset(&b);
        fake_reply(0, NULL, "{\"requests_total\":5}");
        fake_fail_op(KW_OP_NODES);
        n = fake_nreq();
        assert_int_equal(ops_custody_metrics(&front, "kw-b", &b).code, 0);
        fake_fail_op(0);
        assert_int_equal(fake_nreq(), n + 2);
        assert_int_equal(kw_buf_cstr(&b, &s).code, 0);
        assert_non_null(strstr(s, "\nkeyward_custody_up{node=\"kw-b\"} 1\n"));
        assert_non_null(strstr(s, "\nkeyward_db_up{node=\"kw-b\"} 0\n"));
        assert_null(strstr(s, "keyward_fleet_nodes"));
        assert_every_sample_labelled(s, "kw-b");

        /* answered by a node that lost the database: its list is not counted */
        kw_buf_reset(&b);
        fake_reply(0, NULL, "{\"state\":\"DEGRADED\",\"nodes\":[{\"state\":\"ACTIVE\"}]}");
        assert_int_equal(ops_custody_metrics(&front, "kw-b", &b).code, 0);
        assert_int_equal(kw_buf_cstr(&b, &s).code, 0);
        assert_non_null(strstr(s, "\nkeyward_db_up{node=\"kw-b\"} 0\n"));
        assert_null(strstr(s, "keyward_fleet_nodes"));
        kw_buf_free(&b);
        front.cfg = NULL;
}

static void route_admin_nodes_passes_custody_json(void **state)
{
        (void)state;
        assert_int_equal(route_named("admin.nodes")->roles, ROLES_READ);
        assert_int_equal(route_named("admin.nodes")->body, BODY_NONE);
        const char *doc = "{\"engine\":\"sqlcipher\",\"self\":\"kw-a\",\"state\":\"ACTIVE\","
                          "\"detail\":\"\",\"nodes\":[{\"id\":\"kw-a\",\"address\":\"127.0.0.1:9998\","
                          "\"version\":\"0.1.0\",\"schema\":0,\"state\":\"ACTIVE\",\"detail\":\"\","
                          "\"started_ms\":1,\"seen_ms\":2,\"age_ms\":0,\"self\":true}]}";
        struct kw_resp resp;
        resp_init(&resp);
        fake_reply(0, NULL, doc);
        assert_int_equal(run(admin_nodes, NULL, NULL, NULL, &resp).code, 0);
        assert_int_equal(resp.status, 200);
        assert_string_equal(resp_str(&resp), doc);
        assert_int_equal(fk.msg.op, KW_OP_NODES);
        assert_int_equal(req_u32(KW_T_CALLER), KW_CALLER_ADMIN);
        assert_string_equal(req_str(KW_T_TOKEN), "kw_test-token");
        kw_buf_free(&resp.body);

        /* custody refuses (an older custody without the op): its code and detail, nothing written */
        resp_init(&resp);
        fake_reply(KW_ERR_PROTOCOL, "no such op", NULL);
        assert_int_equal(run(admin_nodes, NULL, NULL, NULL, &resp).code, KW_ERR_PROTOCOL);
        assert_string_equal(kw_err_detail(), "no such op");
        assert_int_equal(resp.status, 599);
        assert_int_equal(resp.body.len, 0);
        kw_buf_free(&resp.body);
        fake_reply(KW_ERR_DB_UNAVAILABLE, "connection refused", NULL);
        resp_init(&resp);
        assert_int_equal(run(admin_nodes, NULL, NULL, NULL, &resp).code, KW_ERR_DB_UNAVAILABLE);
        int retry = 0;
        assert_int_equal(admin_http_status(KW_ERR_DB_UNAVAILABLE, &retry), 503);
        assert_int_equal(retry, 1);
        kw_buf_free(&resp.body);
        fake_reply(0, NULL, NULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(route_admin_http_status_every_class),
                cmocka_unit_test(route_admin_roles_table_matches_the_policy),
                cmocka_unit_test(route_admin_path_parse_valid_paths),
                cmocka_unit_test(route_admin_path_parse_bad_paths_fail),
                cmocka_unit_test(route_admin_route_match_methods_and_captures),
                cmocka_unit_test(route_admin_route_match_wrong_method_lists_allow),
                cmocka_unit_test(route_admin_route_match_unknown_path_has_empty_allow),
                cmocka_unit_test(route_admin_query_parse_decodes),
                cmocka_unit_test(route_admin_query_parse_strict_failures),
                cmocka_unit_test(route_admin_parse_u64_bounds),
                cmocka_unit_test(route_admin_content_type),
                cmocka_unit_test(route_admin_bearer_token_parse),
                cmocka_unit_test(route_admin_check_fields_unknown_fails),
                cmocka_unit_test(route_admin_get_name_alphabet),
                cmocka_unit_test(route_admin_get_ops_mask),
                cmocka_unit_test(route_admin_get_tags_limits),
                cmocka_unit_test(route_admin_get_rules_size_cap),
                cmocka_unit_test(route_admin_check_size_combinations),
                cmocka_unit_test(route_admin_json_wipe_clears_strings),
                cmocka_unit_test(route_admin_principal_parse),
                cmocka_unit_test(route_admin_authenticate_sends_the_token_as_proof),
                cmocka_unit_test(route_admin_authenticate_failures),
                cmocka_unit_test(route_admin_keys_create_sends_fields),
                cmocka_unit_test(route_admin_keys_create_invalid_sends_nothing),
                cmocka_unit_test(route_admin_custody_error_keeps_detail),
                cmocka_unit_test(route_admin_custody_down_is_503),
                cmocka_unit_test(route_admin_keys_import_forwards_material_undecoded),
                cmocka_unit_test(route_admin_keys_update_and_state),
                cmocka_unit_test(route_admin_keys_list_and_audit_query),
                cmocka_unit_test(route_admin_status_wraps_custody),
                cmocka_unit_test(route_admin_tokens_create_and_revoke),
                cmocka_unit_test(route_admin_parse_rfc3339_ms_strict),
                cmocka_unit_test(route_ops_stats_to_prometheus),
                cmocka_unit_test(route_ops_fleet_counts_by_state),
                cmocka_unit_test(route_ops_custody_metrics_single_node),
                cmocka_unit_test(route_ops_custody_metrics_fleet),
                cmocka_unit_test(route_admin_nodes_passes_custody_json),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
