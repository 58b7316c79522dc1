/*
 * route_admin_fuzz.c - the admin API's request parsing: path decoding and
 * route match, query parsing, strict body parsing and every handler's field
 * validation, driven as kw_route_admin drives them (authentication aside:
 * the caller is an admin, so every handler is reachable).  A fake custody
 * thread answers each call with an empty JSON document.
 *
 * Input: byte 0 picks the method; then the path up to '\n', the query up
 * to the next '\n' (empty: none), and the rest is the body.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../server/common/log.h"
#include "../../server/front/admin_util.c"
#include "../../server/front/admin_ops.c"
#include "../../server/front/route_admin.c"

static struct kw_front front;

static void *fake_custody(void *arg)
{
        int lfd = *(int *)arg;
        for (;;) {
                int fd = accept(lfd, NULL, NULL);
                if (fd < 0)
                        return NULL;
                struct kw_ipc_rx rx;
                struct kw_buf out;
                kw_ipc_rx_init(&rx);
                kw_buf_init(&out, 4096);
                struct kw_msg m;
                const uint8_t *p;
                size_t n;
                int k = 0, ok = 1;
                /* the front pipelines its calls: every frame a read brings */
                while (ok && k >= 0 && kw_ipc_rx_fill(&rx, fd, -1).code == 0) {
                        while (ok && (k = kw_ipc_rx_next(&rx, &p, &n)) > 0) {
                                ok = kw_msg_parse(p, n, 0, &m).code == 0;
                                kw_buf_reset(&out);
                                kw_result r = ok ? kw_msg_begin_reply(&out, m.op, m.id, 0) : KW_OK;
                                if (ok && r.code == 0)
                                        r = kw_msg_put_str(&out, KW_T_JSON, "{}");
                                if (ok && r.code == 0)
                                        r = kw_msg_end(&out);
                                if (ok && (r.code != 0 || kw_ipc_send(fd, &out).code != 0))
                                        ok = 0;
                        }
                        kw_ipc_rx_done(&rx);
                }
                kw_ipc_rx_free(&rx);
                kw_buf_free(&out);
                close(fd);
        }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        (void)argc;
        (void)argv;
        static int lfd;
        static pthread_t th;
        int locked;
        if (kw_secret_init(1 << 20, &locked).code != 0)
                abort();
        char path[108];
        snprintf(path, sizeof path, "/tmp/kw-admin-fuzz.%d.sock", (int)getpid());
        unlink(path);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        memcpy(sa.sun_path, path, strlen(path) + 1);
        lfd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 4) != 0 ||
            pthread_create(&th, NULL, fake_custody, &lfd) != 0 ||
            kw_cc_new(path, 1, 2000, &front.cc).code != 0)
                abort();
        kw_log_setup(KW_LOG_ERROR, "fuzz");
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char *const methods[] = { "GET", "POST", "PATCH", "DELETE", "PUT" };
        if (size < 1 || size > 70000)
                return 0;
        const char *method = methods[data[0] % 5];
        const uint8_t *p = data + 1, *end = data + size;
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
                return 0;
        char *path = strndup((const char *)p, (size_t)(nl - p));
        p = nl + 1;
        nl = memchr(p, '\n', (size_t)(end - p));
        char *query = NULL;
        if (nl != NULL) {
                if (nl > p)
                        query = strndup((const char *)p, (size_t)(nl - p));
                p = nl + 1;
        }
        size_t blen = (size_t)(end - p);
        uint8_t *body = malloc(blen + 1);
        memcpy(body, p, blen);
        body[blen] = 0;

        struct kw_req req = { .method = method, .path = path, .query = query,
                              .body = blen ? body : NULL, .body_len = blen };
        struct kw_resp resp;
        memset(&resp, 0, sizeof resp);
        kw_buf_init(&resp.body, 1u << 20);
        struct admin_call a = { .req = &req, .resp = &resp, .front = &front };
        a.who.token = "kw_fuzz";
        a.who.token_len = 7;
        a.who.role = ROLE_ADMIN;
        struct admin_path ap;
        cJSON *doc = NULL;
        char allow[64];
        const struct admin_route *rt = NULL;
        if (admin_path_parse(path, &ap).code == 0)
                rt = admin_route_match(admin_routes, &ap, method, allow, sizeof allow, &a.param);
        if (rt != NULL && admin_query_parse(query, rt->query, &a.query).code == 0 &&
            admin_body_parse(&req, rt, &doc).code == 0) {
                a.body = doc;
                if (doc == NULL || rt->body != BODY_NONE ||
                    admin_check_fields(doc, admin_f_none).code == 0)
                        kw_ignore(rt->fn(&a));
                admin_json_wipe(doc);
                cJSON_Delete(doc);
        }
        kw_buf_free(&resp.body);
        free(body);
        free(query);
        free(path);
        return 0;
}
