/* commands.c - one function per keywardctl command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/b64.h"
#include "../common/readfile.h"
#include "ctl.h"

#define CTL_BODY_MAX (1024u * 1024u)
#define CTL_PATH_MAX 4096
#define CTL_PAGES_MAX 10000
#define CTL_NODE_TEXT_MAX 512   /* a cell of the nodes table */

/* ---- plumbing ------------------------------------------------------------ */

/* "/api/v1/<a>/<escaped name>[/<b>]" into path. */
static int ctl_path(struct kw_buf *path, const char *a, const char *name, const char *b)
{
        kw_buf_init(path, CTL_PATH_MAX);
        kw_result r = kw_buf_printf(path, "/api/v1/%s", a);
        if (r.code == 0 && name != NULL)
                r = kw_buf_put_u8(path, '/');
        if (r.code == 0 && name != NULL)
                r = ctl_url_escape(name, path);
        if (r.code == 0 && b != NULL)
                r = kw_buf_printf(path, "/%s", b);
        const char *s;
        if (r.code == 0)
                r = kw_buf_cstr(path, &s);
        if (r.code != 0) {
                kw_buf_free(path);
                ctl_err("argument too long");
                return CTL_USAGE;
        }
        return CTL_OK;
}

/* Overwrites every string of a JSON tree, then deletes it. */
static void ctl_json_wipe_delete(cJSON *doc)
{
        cJSON *stack[32];
        size_t n = 0;
        if (doc != NULL)
                stack[n++] = doc;
        while (n > 0) {
                cJSON *v = stack[--n];
                for (; v != NULL; v = v->next) {
                        if (v->valuestring)
                                kw_wipe(v->valuestring, strlen(v->valuestring));
                        if (v->child && n < 32)
                                stack[n++] = v->child;
                }
        }
        cJSON_Delete(doc);
}

/* Serialises doc (deleted here; wiped first when sensitive) into body. */
static int ctl_body(cJSON *doc, int sensitive, struct kw_buf *body)
{
        kw_buf_init(body, CTL_BODY_MAX);
        char *s = doc ? cJSON_PrintUnformatted(doc) : NULL;
        if (sensitive)
                ctl_json_wipe_delete(doc);
        else
                cJSON_Delete(doc);
        if (s == NULL) {
                ctl_err("out of memory");
                return CTL_USAGE;
        }
        kw_result r = kw_buf_put_str(body, s);
        kw_wipe(s, strlen(s));
        cJSON_free(s);
        if (r.code != 0) {
                ctl_err("request body too large");
                return CTL_USAGE;
        }
        return CTL_OK;
}

/* Sends a request and checks the status; on success *ret holds the reply. */
static int ctl_call(struct ctl *c, const char *method, struct kw_buf *path, struct kw_buf *body,
                    struct ctl_resp *ret)
{
        const char *p = NULL;
        int rc = kw_buf_cstr(path, &p).code == 0 ? CTL_OK : CTL_USAGE;
        if (rc == CTL_OK)
                rc = ctl_request(c, method, p, body, ret);
        kw_buf_free(path);
        if (body != NULL)
                kw_buf_free(body);
        if (rc != CTL_OK)
                return rc;
        rc = ctl_resp_check(ret);
        if (rc != CTL_OK)
                ctl_resp_free(ret);
        return rc;
}

/* The reply as JSON (object); NULL (printed) when it is not. */
static cJSON *ctl_reply_json(const struct ctl_resp *r)
{
        cJSON *doc = cJSON_ParseWithLength((const char *)r->body.p, r->body.len);
        if (!cJSON_IsObject(doc)) {
                cJSON_Delete(doc);
                ctl_err("the server's reply is not a JSON object");
                return NULL;
        }
        return doc;
}

static void ctl_print_raw(const struct ctl_resp *r)
{
        fwrite(r->body.p, 1, r->body.len, stdout);
        if (r->body.len == 0 || r->body.p[r->body.len - 1] != '\n')
                putchar('\n');
}

/* Prints a single-object reply: raw with --json, else as fields. */
static int ctl_show(struct ctl *c, struct ctl_resp *r)
{
        int rc = CTL_OK;
        if (c->json) {
                ctl_print_raw(r);
        } else {
                cJSON *doc = ctl_reply_json(r);
                if (doc == NULL)
                        rc = CTL_SERVER;
                else
                        ctl_print_fields(doc);
                cJSON_Delete(doc);
        }
        ctl_resp_free(r);
        return rc;
}

static int ctl_simple(struct ctl *c, const char *method, const char *a, const char *name,
                      const char *b, cJSON *doc)
{
        struct kw_buf path, body;
        int rc = ctl_path(&path, a, name, b);
        if (rc != CTL_OK) {
                cJSON_Delete(doc);
                return rc;
        }
        if (doc != NULL && (rc = ctl_body(doc, 0, &body)) != CTL_OK) {
                kw_buf_free(&path);
                return rc;
        }
        struct ctl_resp r;
        rc = ctl_call(c, method, &path, doc ? &body : NULL, &r);
        return rc == CTL_OK ? ctl_show(c, &r) : rc;
}

/* Adds every --tag of a to obj["tags"]; CTL_USAGE when one is malformed. */
static int ctl_tags(const struct ctl_args *a, cJSON *obj, int always)
{
        cJSON *tags = cJSON_CreateObject();
        if (tags == NULL)
                return CTL_USAGE;
        int n = 0;
        for (size_t i = 0; i < a->no; i++) {
                if (strcmp(a->o[i].name, "tag") != 0) /* lint: allow (option name) */
                        continue;
                if (ctl_tag_add(tags, a->o[i].value) != 0) {
                        ctl_err("--tag takes KEY=VALUE with distinct keys (got '%s')",
                                a->o[i].value);
                        cJSON_Delete(tags);
                        return CTL_USAGE;
                }
                n++;
        }
        if (n == 0 && !always) {
                cJSON_Delete(tags);
                return CTL_OK;
        }
        cJSON_AddItemToObject(obj, "tags", tags);
        return CTL_OK;
}

static int ctl_ops(const struct ctl_args *a, cJSON *obj)
{
        const char *ops = ctl_args_get(a, "ops");
        if (ops == NULL)
                return CTL_OK;
        cJSON *arr = ctl_ops_parse(ops);
        if (arr == NULL) {
                ctl_err("--ops takes a comma-separated list of encrypt, decrypt, wrap, unwrap");
                return CTL_USAGE;
        }
        cJSON_AddItemToObject(obj, "operations", arr);
        return CTL_OK;
}

/*
 * --xks-store NAME... and --ekm-client CN... -> obj["rules"] =
 * {"xks":{"key_stores":[...]},"ekm":{"client_cns":[...]}} (only the sections
 * given; nothing when neither is).  The key is created with its rules in one
 * request, so it is never reachable by a caller the rules would refuse.
 */
static int ctl_rules(const struct ctl_args *a, cJSON *obj)
{
        static const struct {
                const char *opt, *section, *list, *what;
        } map[] = {
                { "xks-store", "xks", "key_stores", "an XKS key store name" },
                { "ekm-client", "ekm", "client_cns", "a client certificate CN" },
        };
        cJSON *rules = cJSON_CreateObject();
        if (rules == NULL)
                return CTL_USAGE;
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
                const char *bad = NULL;
                cJSON *arr = ctl_args_list(a, map[i].opt, &bad);
                if (arr == NULL) {
                        if (bad != NULL && bad[0] != '\0')
                                ctl_err("--%s '%s' is given twice", map[i].opt, bad);
                        else if (bad != NULL)
                                ctl_err("--%s takes %s, not an empty value", map[i].opt, map[i].what);
                        else
                                ctl_err("out of memory");
                        cJSON_Delete(rules);
                        return CTL_USAGE;
                }
                if (cJSON_GetArraySize(arr) == 0) {
                        cJSON_Delete(arr);
                        continue;
                }
                cJSON *sec = cJSON_AddObjectToObject(rules, map[i].section);
                if (sec == NULL) {
                        cJSON_Delete(arr);
                        cJSON_Delete(rules);
                        return CTL_USAGE;
                }
                cJSON_AddItemToObject(sec, map[i].list, arr);
        }
        if (rules->child == NULL)
                cJSON_Delete(rules);
        else
                cJSON_AddItemToObject(obj, "rules", rules);
        return CTL_OK;
}

/* "aes" / "rsa" (any case) -> "AES" / "RSA"; NULL otherwise. */
static const char *ctl_type(const char *t)
{
        if (t != NULL && strcasecmp(t, "aes") == 0)
                return "AES";
        if (t != NULL && strcasecmp(t, "rsa") == 0)
                return "RSA";
        ctl_err("--type is aes or rsa");
        return NULL;
}

/* ---- status ---------------------------------------------------------------- */

int ctl_cmd_status(struct ctl *c, const struct ctl_args *a)
{
        (void)a;
        return ctl_simple(c, "GET", "status", NULL, NULL, NULL);
}

/* ---- keys ------------------------------------------------------------------- */

int ctl_cmd_key_create(struct ctl *c, const struct ctl_args *a)
{
        const char *type = ctl_type(ctl_args_get(a, "type"));
        if (type == NULL)
                return CTL_USAGE;
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddStringToObject(doc, "name", a->pos[0]);
        cJSON_AddStringToObject(doc, "type", type);
        const char *size = ctl_args_get(a, "size");
        if (size != NULL) {
                uint64_t bits;
                if (ctl_parse_u64(size, 1, 65536, &bits) != 0) {
                        ctl_err("--size takes a number of bits (AES 256; RSA 2048, 3072, 4096)");
                        cJSON_Delete(doc);
                        return CTL_USAGE;
                }
                cJSON_AddNumberToObject(doc, "size", (double)bits);
        }
        if (ctl_ops(a, doc) != CTL_OK || ctl_tags(a, doc, 0) != CTL_OK ||
            ctl_rules(a, doc) != CTL_OK) {
                cJSON_Delete(doc);
                return CTL_USAGE;
        }
        return ctl_simple(c, "POST", "keys", NULL, NULL, doc);
}

int ctl_cmd_key_import(struct ctl *c, const struct ctl_args *a)
{
        const char *type = ctl_type(ctl_args_get(a, "type"));
        if (type == NULL)
                return CTL_USAGE;
        const char *mfile = ctl_args_get(a, "material-file"), *pfile = ctl_args_get(a, "pem-file");
        if (strcmp(type, "AES") == 0 ? (mfile == NULL || pfile != NULL)
                                     : (pfile == NULL || mfile != NULL)) {
                ctl_err("use --type aes --material-file FILE, or --type rsa --pem-file FILE");
                return CTL_USAGE;
        }
        struct kw_buf file, b64;
        kw_buf_init(&file, 64 * 1024);
        kw_buf_init(&b64, 64 * 1024);
        if (ctl_read_file(mfile ? mfile : pfile, 64 * 1024, &file).code != 0) {
                ctl_err("%s", kw_err_detail());
                return CTL_USAGE;
        }
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddStringToObject(doc, "name", a->pos[0]);
        cJSON_AddStringToObject(doc, "type", type);
        int rc = CTL_OK;
        if (mfile != NULL) {
                struct kw_secret key = { 0 };
                kw_result r = ctl_material_parse(file.p, file.len, &key);
                if (r.code == 0)
                        r = kw_b64_encode(key.p, key.len, &b64);
                kw_secret_free(&key);
                const char *s;
                if (r.code == 0)
                        r = kw_buf_cstr(&b64, &s);
                if (r.code != 0) {
                        ctl_err("%s must hold a 32-byte AES key, raw or base64", mfile);
                        rc = CTL_USAGE;
                } else {
                        cJSON_AddStringToObject(doc, "material", s);
                }
        } else {
                const char *s;
                if (kw_buf_cstr(&file, &s).code != 0 || strlen(s) != file.len ||
                    strstr(s, "-----BEGIN") == NULL) {
                        ctl_err("%s is not a PEM file", pfile);
                        rc = CTL_USAGE;
                } else {
                        cJSON_AddStringToObject(doc, "pem", s);
                }
        }
        kw_buf_free(&file);
        kw_buf_free(&b64);
        if (rc == CTL_OK && (ctl_ops(a, doc) != CTL_OK || ctl_tags(a, doc, 0) != CTL_OK ||
                             ctl_rules(a, doc) != CTL_OK))
                rc = CTL_USAGE;
        struct kw_buf path, body;
        if (rc == CTL_OK)
                rc = ctl_path(&path, "keys", NULL, "import");
        if (rc != CTL_OK) {
                ctl_json_wipe_delete(doc);
                return rc;
        }
        rc = ctl_body(doc, 1, &body);
        if (rc != CTL_OK) {
                kw_buf_free(&path);
                kw_buf_free(&body);
                return rc;
        }
        struct ctl_resp r;
        rc = ctl_call(c, "POST", &path, &body, &r); /* frees (wipes) the body */
        return rc == CTL_OK ? ctl_show(c, &r) : rc;
}

static const struct ctl_col ctl_key_cols[] = {
        { "NAME", { "name" } },     { "TYPE", { "type" } },
        { "SIZE", { "size" } },     { "STATE", { "state" } },
        { "VERSION", { "current_version" } }, { "OPERATIONS", { "operations" } },
        { "CREATED", { "created" } },
};

int ctl_cmd_key_list(struct ctl *c, const struct ctl_args *a)
{
        static const char *const filters[] = { "state", "type", "tag", "prefix", "limit" };
        const char *cursor = ctl_args_get(a, "cursor");
        int all = ctl_args_has(a, "all");
        cJSON *keys = cJSON_CreateArray();
        char next[256] = "";
        int rc = CTL_OK;
        for (int page = 0; rc == CTL_OK && page < CTL_PAGES_MAX; page++) {
                struct kw_buf path;
                if ((rc = ctl_path(&path, "keys", NULL, NULL)) != CTL_OK)
                        break;
                kw_result r = KW_OK;
                for (size_t i = 0; i < 5 && r.code == 0; i++) {
                        const char *v = ctl_args_get(a, filters[i]);
                        if (v != NULL && i == 1)
                                v = strcasecmp(v, "aes") == 0 ? "AES"
                                    : strcasecmp(v, "rsa") == 0 ? "RSA" : v;
                        if (v != NULL)
                                r = ctl_query_add(&path, filters[i], v);
                }
                const char *cur = page == 0 ? cursor : next;
                if (r.code == 0 && cur != NULL && cur[0] != '\0')
                        r = ctl_query_add(&path, "cursor", cur);
                if (r.code != 0) {
                        kw_buf_free(&path);
                        ctl_err("argument too long");
                        rc = CTL_USAGE;
                        break;
                }
                struct ctl_resp resp;
                if ((rc = ctl_call(c, "GET", &path, NULL, &resp)) != CTL_OK)
                        break;
                cJSON *doc = ctl_reply_json(&resp);
                const cJSON *ks = cJSON_GetObjectItemCaseSensitive(doc, "keys");
                const cJSON *nx = cJSON_GetObjectItemCaseSensitive(doc, "next");
                if (doc == NULL || !cJSON_IsArray(ks)) {
                        if (doc != NULL)
                                ctl_err("the server's reply has no 'keys' array");
                        rc = CTL_SERVER;
                } else if (c->json && !all) {
                        ctl_print_raw(&resp);
                } else {
                        for (const cJSON *k = ks->child; k != NULL; k = k->next)
                                cJSON_AddItemToArray(keys, cJSON_Duplicate(k, 1));
                }
                snprintf(next, sizeof next, "%s",
                         cJSON_IsString(nx) ? nx->valuestring : "");
                cJSON_Delete(doc);
                ctl_resp_free(&resp);
                if (rc != CTL_OK || !all || next[0] == '\0')
                        break;
        }
        if (rc == CTL_OK && c->json && all) {
                cJSON *out = cJSON_CreateObject();
                cJSON_AddItemToObject(out, "keys", keys);
                cJSON_AddNullToObject(out, "next");
                keys = NULL;
                char *s = cJSON_PrintUnformatted(out);
                if (s != NULL)
                        printf("%s\n", s);
                cJSON_free(s);
                cJSON_Delete(out);
        } else if (rc == CTL_OK && !c->json) {
                ctl_print_table(keys, ctl_key_cols, sizeof ctl_key_cols / sizeof ctl_key_cols[0]);
                if (next[0] != '\0')
                        fprintf(stderr, "(more keys: use --all, or --cursor %s)\n", next);
        }
        cJSON_Delete(keys);
        return rc;
}

int ctl_cmd_key_get(struct ctl *c, const struct ctl_args *a)
{
        return ctl_simple(c, "GET", "keys", a->pos[0], NULL, NULL);
}

static const struct ctl_col ctl_version_cols[] = {
        { "VERSION", { "version" } },
        { "CREATED", { "created" } },
        { "CURRENT", { "current" } },
};

/* GET path (consumed): the reply's array `member` as a table of cols (the
 * document itself with --json); when next_opt is given and the reply's
 * "next" is not null, a hint on stderr to page on with --<next_opt>. */
static int ctl_print_list(struct ctl *c, struct kw_buf *path, const char *member,
                          const struct ctl_col *cols, size_t ncols, const char *next_opt)
{
        struct ctl_resp r;
        int rc = ctl_call(c, "GET", path, NULL, &r);
        if (rc != CTL_OK)
                return rc;
        if (c->json) {
                ctl_print_raw(&r);
        } else {
                cJSON *doc = ctl_reply_json(&r);
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, member);
                const cJSON *nx = cJSON_GetObjectItemCaseSensitive(doc, "next");
                if (!cJSON_IsArray(t)) {
                        if (doc != NULL)
                                ctl_err("the server's reply has no '%s' array", member);
                        rc = CTL_SERVER;
                } else {
                        ctl_print_table(t, cols, ncols);
                        char nt[64];
                        if (next_opt != NULL && nx != NULL && !cJSON_IsNull(nx)) {
                                ctl_value_text(nx, nt, sizeof nt);
                                fprintf(stderr, "(more %s: --%s %s)\n", member, next_opt, nt);
                        }
                }
                cJSON_Delete(doc);
        }
        ctl_resp_free(&r);
        return rc;
}

/* GET coll[/name[/sub]] as ctl_print_list, without paging. */
static int ctl_get_table(struct ctl *c, const char *coll, const char *name, const char *sub,
                         const char *member, const struct ctl_col *cols, size_t ncols)
{
        struct kw_buf path;
        int rc = ctl_path(&path, coll, name, sub);
        if (rc != CTL_OK)
                return rc;
        return ctl_print_list(c, &path, member, cols, ncols, NULL);
}

int ctl_cmd_key_versions(struct ctl *c, const struct ctl_args *a)
{
        return ctl_get_table(c, "keys", a->pos[0], "versions", "versions", ctl_version_cols,
                             sizeof ctl_version_cols / sizeof ctl_version_cols[0]);
}

int ctl_cmd_ekm_info(struct ctl *c, const struct ctl_args *a)
{
        (void)a;
        return ctl_simple(c, "GET", "ekm", NULL, NULL, NULL);
}

int ctl_cmd_attestation(struct ctl *c, const struct ctl_args *a)
{
        (void)a;
        return ctl_simple(c, "GET", "attestation", NULL, NULL, NULL);
}

/* ---- nodes (fleet mode, issue 16) ------------------------------------------------ */

static const struct ctl_col ctl_node_cols[] = {
        { "NODE", { "id" } },           { "STATE", { "state" } },
        { "ADDRESS", { "address" } },   { "VERSION", { "version" } },
        { "HEARTBEAT", { "heartbeat" } }, { "THIS", { "this" } },
        { "DETAIL", { "detail" } },
};

/* A heartbeat's age (ms) as "0.4 s ago", "12 min ago", "3 h ago". */
static void ctl_age_text(const cJSON *age, char *out, size_t outsz)
{
        if (!cJSON_IsNumber(age) || age->valuedouble < 0) {
                snprintf(out, outsz, "-");
                return;
        }
        double s = age->valuedouble / 1000.0;
        if (s < 120)
                snprintf(out, outsz, "%.1f s ago", s);
        else if (s < 7200)
                snprintf(out, outsz, "%.0f min ago", s / 60);
        else
                snprintf(out, outsz, "%.0f h ago", s / 3600);
}

/* The rows of the nodes table: each node's fields as text, its heartbeat's
 * age in words and "*" for the node that answered.  NULL when nodes is
 * not an array of objects. */
static cJSON *ctl_node_rows(const cJSON *nodes)
{
        static const char *const copy[] = { "id", "state", "address", "version", "detail" };
        cJSON *rows = cJSON_IsArray(nodes) ? cJSON_CreateArray() : NULL;
        for (const cJSON *n = nodes != NULL ? nodes->child : NULL; rows != NULL && n != NULL;
             n = n->next) {
                cJSON *row = cJSON_IsObject(n) ? cJSON_CreateObject() : NULL;
                if (row == NULL) {
                        cJSON_Delete(rows);
                        return NULL;
                }
                char text[CTL_NODE_TEXT_MAX];
                for (size_t k = 0; k < sizeof copy / sizeof copy[0]; k++) {
                        const cJSON *v = cJSON_GetObjectItemCaseSensitive(n, copy[k]);
                        if (cJSON_IsString(v) && v->valuestring[0] == '\0')
                                v = NULL;       /* "-" rather than an empty cell */
                        ctl_value_text(v, text, sizeof text);
                        cJSON_AddStringToObject(row, copy[k], text);
                }
                ctl_age_text(cJSON_GetObjectItemCaseSensitive(n, "age_ms"), text, sizeof text);
                cJSON_AddStringToObject(row, "heartbeat", text);
                cJSON_AddStringToObject(row, "this", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
                                                             n, "self")) ? "*" : "");
                cJSON_AddItemToArray(rows, row);
        }
        return rows;
}

/* GET nodes: a summary line (engine, this node's state) and the table. */
int ctl_cmd_nodes(struct ctl *c, const struct ctl_args *a)
{
        (void)a;
        struct kw_buf path;
        struct ctl_resp r;
        int rc = ctl_path(&path, "nodes", NULL, NULL);
        if (rc != CTL_OK || (rc = ctl_call(c, "GET", &path, NULL, &r)) != CTL_OK)
                return rc;
        if (c->json) {
                ctl_print_raw(&r);
                ctl_resp_free(&r);
                return CTL_OK;
        }
        cJSON *doc = ctl_reply_json(&r);
        ctl_resp_free(&r);
        const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(doc, "nodes");
        cJSON *rows = ctl_node_rows(nodes);
        if (rows == NULL) {
                if (doc != NULL)
                        ctl_err("the server's reply has no 'nodes' array of objects");
                cJSON_Delete(doc);
                return CTL_SERVER;
        }
        char engine[64], self[CTL_NODE_TEXT_MAX], state[64], detail[CTL_NODE_TEXT_MAX];
        ctl_value_text(cJSON_GetObjectItemCaseSensitive(doc, "engine"), engine, sizeof engine);
        ctl_value_text(cJSON_GetObjectItemCaseSensitive(doc, "self"), self, sizeof self);
        ctl_value_text(cJSON_GetObjectItemCaseSensitive(doc, "state"), state, sizeof state);
        ctl_value_text(cJSON_GetObjectItemCaseSensitive(doc, "detail"), detail, sizeof detail);
        int n = cJSON_GetArraySize(rows);
        if (strcmp(engine, "sqlcipher") == 0)
                printf("engine:    sqlcipher (single appliance)\n");
        else
                printf("engine:    %s (a fleet: %d node%s in the database)\n", engine, n,
                       n == 1 ? "" : "s");
        int has_detail = detail[0] != '\0' && strcmp(detail, "-") != 0;
        printf("this node: %s, %s%s%s\n\n", self, state, has_detail ? ": " : "",
               has_detail ? detail : "");
        ctl_print_table(rows, ctl_node_cols, sizeof ctl_node_cols / sizeof ctl_node_cols[0]);
        cJSON_Delete(rows);
        cJSON_Delete(doc);
        return CTL_OK;
}

int ctl_cmd_key_enable(struct ctl *c, const struct ctl_args *a)
{
        return ctl_simple(c, "POST", "keys", a->pos[0], "enable", NULL);
}

int ctl_cmd_key_disable(struct ctl *c, const struct ctl_args *a)
{
        return ctl_simple(c, "POST", "keys", a->pos[0], "disable", NULL);
}

int ctl_cmd_key_rotate(struct ctl *c, const struct ctl_args *a)
{
        return ctl_simple(c, "POST", "keys", a->pos[0], "rotate", NULL);
}

int ctl_cmd_key_delete(struct ctl *c, const struct ctl_args *a)
{
        const char *days = ctl_args_get(a, "wait-days"), *secs = ctl_args_get(a, "wait-seconds");
        if (days != NULL && secs != NULL) {
                ctl_err("give --wait-days or --wait-seconds, not both");
                return CTL_USAGE;
        }
        cJSON *doc = NULL;
        if (days != NULL || secs != NULL) {
                uint64_t v;
                uint64_t max = days ? 4294967295u / 86400u : 4294967295u;
                if (ctl_parse_u64(days ? days : secs, 1, max, &v) != 0) {
                        ctl_err("--wait-%s takes a positive integer", days ? "days" : "seconds");
                        return CTL_USAGE;
                }
                doc = cJSON_CreateObject();
                cJSON_AddNumberToObject(doc, "wait_seconds", (double)(days ? v * 86400u : v));
        }
        return ctl_simple(c, "POST", "keys", a->pos[0], "schedule-deletion", doc);
}

int ctl_cmd_key_cancel_deletion(struct ctl *c, const struct ctl_args *a)
{
        return ctl_simple(c, "POST", "keys", a->pos[0], "cancel-deletion", NULL);
}

int ctl_cmd_key_set_rules(struct ctl *c, const struct ctl_args *a)
{
        const char *file = ctl_args_get(a, "file");
        struct kw_buf f;
        kw_buf_init(&f, 64 * 1024);
        if (file == NULL) {
                ctl_err("--file FILE is required");
                return CTL_USAGE;
        }
        if (ctl_read_file(file, 64 * 1024, &f).code != 0) {
                ctl_err("%s", kw_err_detail());
                return CTL_USAGE;
        }
        cJSON *rules = cJSON_ParseWithLength((const char *)f.p, f.len);
        kw_buf_free(&f);
        if (!cJSON_IsObject(rules)) {
                ctl_err("%s does not hold a JSON object", file);
                cJSON_Delete(rules);
                return CTL_USAGE;
        }
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddItemToObject(doc, "rules", rules);
        return ctl_simple(c, "PATCH", "keys", a->pos[0], NULL, doc);
}

int ctl_cmd_key_set_tags(struct ctl *c, const struct ctl_args *a)
{
        int clear = ctl_args_has(a, "clear"), any = ctl_args_get(a, "tag") != NULL;
        if (clear == any) {
                ctl_err("give one or more --tag KEY=VALUE (they replace all tags), or --clear");
                return CTL_USAGE;
        }
        cJSON *doc = cJSON_CreateObject();
        if (ctl_tags(a, doc, 1) != CTL_OK) {
                cJSON_Delete(doc);
                return CTL_USAGE;
        }
        return ctl_simple(c, "PATCH", "keys", a->pos[0], NULL, doc);
}

int ctl_cmd_key_set_ops(struct ctl *c, const struct ctl_args *a)
{
        cJSON *doc = cJSON_CreateObject();
        if (ctl_args_get(a, "ops") == NULL || ctl_ops(a, doc) != CTL_OK) {
                if (ctl_args_get(a, "ops") == NULL)
                        ctl_err("--ops LIST is required");
                cJSON_Delete(doc);
                return CTL_USAGE;
        }
        return ctl_simple(c, "PATCH", "keys", a->pos[0], NULL, doc);
}

/* ---- audit -------------------------------------------------------------------- */

static const struct ctl_col ctl_audit_cols[] = {
        { "SEQ", { "seq" } },
        { "TIME", { "time", "ts", "timestamp" } },
        { "ACTOR", { "actor" } },
        { "ACTION", { "action" } },
        { "KEY", { "key", "key_name" } },
        { "RESULT", { "result" } },
};

int ctl_cmd_audit_list(struct ctl *c, const struct ctl_args *a)
{
        static const char *const q[] = { "key", "action", "after", "before", "actor",
                                         "since", "until", "limit" };
        int desc = ctl_args_has(a, "desc");
        struct kw_buf path;
        int rc = ctl_path(&path, "audit", NULL, NULL);
        if (rc != CTL_OK)
                return rc;
        for (size_t i = 0; i <= sizeof q / sizeof q[0]; i++) {
                const char *name = i < sizeof q / sizeof q[0] ? q[i] : "order";
                const char *v = i < sizeof q / sizeof q[0] ? ctl_args_get(a, q[i])
                                                           : desc ? "desc" : NULL;
                if (v != NULL && ctl_query_add(&path, name, v).code != 0) {
                        kw_buf_free(&path);
                        ctl_err("argument too long");
                        return CTL_USAGE;
                }
        }
        return ctl_print_list(c, &path, "events", ctl_audit_cols,
                              sizeof ctl_audit_cols / sizeof ctl_audit_cols[0],
                              desc ? "before" : "after");
}

int ctl_cmd_audit_verify(struct ctl *c, const struct ctl_args *a)
{
        (void)a;
        struct kw_buf path;
        int rc = ctl_path(&path, "audit", NULL, "verify");
        if (rc != CTL_OK)
                return rc;
        struct ctl_resp r;
        if ((rc = ctl_call(c, "POST", &path, NULL, &r)) != CTL_OK)
                return rc;
        cJSON *doc = ctl_reply_json(&r);
        const cJSON *ok = cJSON_GetObjectItemCaseSensitive(doc, "ok");
        if (!cJSON_IsBool(ok)) {
                if (doc != NULL)
                        ctl_err("the server's reply has no 'ok' member");
                rc = CTL_SERVER;
        } else {
                char rows[64], bad[64], cp[64] = "", b1[64], b2[64], why[160];
                const cJSON *cpo = cJSON_GetObjectItemCaseSensitive(doc, "checkpoint");
                const cJSON *bb = cJSON_GetObjectItemCaseSensitive(doc, "first_bad_batch");
                ctl_value_text(cJSON_GetObjectItemCaseSensitive(doc, "rows"), rows, sizeof rows);
                ctl_value_text(cJSON_GetObjectItemCaseSensitive(doc, "first_bad_seq"), bad,
                               sizeof bad);
                ctl_value_text(cJSON_GetObjectItemCaseSensitive(doc, "reason"), why, sizeof why);
                if (cJSON_IsObject(cpo))
                        ctl_value_text(cJSON_GetObjectItemCaseSensitive(cpo, "seq"), cp, sizeof cp);
                if (c->json) {
                        ctl_print_raw(&r);
                } else if (cJSON_IsTrue(ok)) {
                        printf("audit chain intact: %s rows verified", rows);
                        if (cp[0] != '\0')
                                printf(" (from the checkpoint at sequence %s)", cp);
                        printf("\n");
                } else {
                        printf("audit chain BROKEN: first bad sequence %s (%s rows checked)", bad,
                               rows);
                        if (cJSON_IsObject(bb)) {
                                ctl_value_text(cJSON_GetObjectItemCaseSensitive(bb, "first_seq"), b1,
                                               sizeof b1);
                                ctl_value_text(cJSON_GetObjectItemCaseSensitive(bb, "last_seq"), b2,
                                               sizeof b2);
                                printf(": the batch of sequences %s-%s", b1, b2);
                        }
                        printf(": %s\n", why);
                }
                rc = cJSON_IsTrue(ok) ? CTL_OK : CTL_BROKEN;
        }
        cJSON_Delete(doc);
        ctl_resp_free(&r);
        return rc;
}

int ctl_cmd_audit_prune(struct ctl *c, const struct ctl_args *a)
{
        (void)a;
        return ctl_simple(c, "POST", "audit", NULL, "prune", NULL);
}

/* ---- tokens --------------------------------------------------------------------- */

int ctl_cmd_token_create(struct ctl *c, const struct ctl_args *a)
{
        const char *role = ctl_args_get(a, "role");
        if (role == NULL) {
                ctl_err("--role admin|operator|auditor is required");
                return CTL_USAGE;
        }
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddStringToObject(doc, "name", a->pos[0]);
        cJSON_AddStringToObject(doc, "role", role);
        struct kw_buf path, body;
        int rc = ctl_path(&path, "tokens", NULL, NULL);
        if (rc != CTL_OK) {
                cJSON_Delete(doc);
                return rc;
        }
        if ((rc = ctl_body(doc, 0, &body)) != CTL_OK) {
                kw_buf_free(&path);
                return rc;
        }
        struct ctl_resp r;
        if ((rc = ctl_call(c, "POST", &path, &body, &r)) != CTL_OK)
                return rc;
        if (!c->json)
                fprintf(stderr, "keywardctl: the token is shown once: store it now\n");
        return ctl_show(c, &r); /* ctl_resp_free wipes the reply */
}

static const struct ctl_col ctl_token_cols[] = {
        { "ID", { "id" } },           { "NAME", { "name" } },
        { "ROLE", { "role" } },       { "CREATED", { "created" } },
        { "REVOKED", { "revoked" } },
};

/* GET <what>: a table of the reply's array <what> (raw with --json). */
static int ctl_list_table(struct ctl *c, const char *what, const struct ctl_col *cols, size_t ncols)
{
        return ctl_get_table(c, what, NULL, NULL, what, cols, ncols);
}

int ctl_cmd_token_list(struct ctl *c, const struct ctl_args *a)
{
        (void)a;
        return ctl_list_table(c, "tokens", ctl_token_cols,
                              sizeof ctl_token_cols / sizeof ctl_token_cols[0]);
}

int ctl_cmd_token_revoke(struct ctl *c, const struct ctl_args *a)
{
        return ctl_simple(c, "DELETE", "tokens", a->pos[0], NULL, NULL);
}

/* ---- console users ------------------------------------------------------------- */

#define CTL_PASSWORD_MAX 128

/* The password of --password-file FILE, else of standard input (never the
 * command line): one line, its line end dropped, into a secret. */
static int ctl_read_password(const struct ctl_args *a, struct kw_secret *ret)
{
        const char *file = ctl_args_get(a, "password-file");
        struct kw_buf b;
        kw_buf_init(&b, CTL_PASSWORD_MAX + 2);
        kw_result r = file != NULL ? ctl_read_file(file, CTL_PASSWORD_MAX + 2, &b)
                                   : kw_read_fd(0, "standard input", CTL_PASSWORD_MAX + 2, &b);
        size_t n = b.len;
        if (r.code == 0 && n > 0 && b.p[n - 1] == '\n')
                n--;
        if (r.code == 0 && n > 0 && b.p[n - 1] == '\r')
                n--;
        int rc = CTL_OK;
        if (r.code != 0) {
                ctl_err("cannot read the password: %s", kw_err_detail());
                rc = CTL_USAGE;
        } else if (n == 0 || n > CTL_PASSWORD_MAX || memchr(b.p, '\n', n) != NULL) {
                ctl_err("the password is one line of 12..128 bytes (from --password-file or "
                        "standard input)");
                rc = CTL_USAGE;
        } else if (kw_secret_dup(b.p, n, ret).code != 0) {
                ctl_err("out of memory");
                rc = CTL_USAGE;
        }
        kw_buf_free(&b);   /* wipes */
        return rc;
}

/* POST <path> with {"password"} (+ name and role) as a wiped body. */
static int ctl_password_call(struct ctl *c, const char *a_seg, const char *name, const char *b_seg,
                             cJSON *doc, const struct kw_secret *pw)
{
        char *s = strndup((const char *)pw->p, pw->len);
        if (s == NULL) {
                cJSON_Delete(doc);
                ctl_err("out of memory");
                return CTL_USAGE;
        }
        cJSON_AddStringToObject(doc, "password", s);
        kw_wipe(s, strlen(s));
        free(s);
        struct kw_buf path, body;
        int rc = ctl_path(&path, a_seg, name, b_seg);
        if (rc != CTL_OK) {
                ctl_json_wipe_delete(doc);
                return rc;
        }
        if ((rc = ctl_body(doc, 1, &body)) != CTL_OK) {
                kw_buf_free(&path);
                return rc;
        }
        struct ctl_resp r;
        rc = ctl_call(c, "POST", &path, &body, &r);   /* frees (wipes) the body */
        return rc == CTL_OK ? ctl_show(c, &r) : rc;
}

static const struct ctl_col ctl_user_cols[] = {
        { "NAME", { "name" } },           { "ROLE", { "role" } },
        { "CREATED", { "created" } },     { "LAST LOGIN", { "last_login" } },
        { "FAILED", { "failed_logins" } }, { "LOCKED UNTIL", { "locked_until" } },
};

int ctl_cmd_user_list(struct ctl *c, const struct ctl_args *a)
{
        (void)a;
        return ctl_list_table(c, "users", ctl_user_cols,
                              sizeof ctl_user_cols / sizeof ctl_user_cols[0]);
}

int ctl_cmd_user_create(struct ctl *c, const struct ctl_args *a)
{
        const char *role = ctl_args_get(a, "role");
        if (role == NULL) {
                ctl_err("--role admin|operator|auditor is required");
                return CTL_USAGE;
        }
        struct kw_secret pw = { 0 };
        int rc = ctl_read_password(a, &pw);
        if (rc != CTL_OK)
                return rc;
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddStringToObject(doc, "name", a->pos[0]);
        cJSON_AddStringToObject(doc, "role", role);
        rc = ctl_password_call(c, "users", NULL, NULL, doc, &pw);
        kw_secret_free(&pw);
        return rc;
}

int ctl_cmd_user_passwd(struct ctl *c, const struct ctl_args *a)
{
        struct kw_secret pw = { 0 };
        int rc = ctl_read_password(a, &pw);
        if (rc != CTL_OK)
                return rc;
        rc = ctl_password_call(c, "users", a->pos[0], "password", cJSON_CreateObject(), &pw);
        kw_secret_free(&pw);
        return rc;
}

int ctl_cmd_user_delete(struct ctl *c, const struct ctl_args *a)
{
        return ctl_simple(c, "DELETE", "users", a->pos[0], NULL, NULL);
}

/* ---- AWS XKS key stores (docs/xks.md) ----------------------------------------- */

int ctl_cmd_xks_list(struct ctl *c, const struct ctl_args *a)
{
        (void)a;
        return ctl_simple(c, "GET", "xks/stores", NULL, NULL, NULL);
}

int ctl_cmd_xks_create(struct ctl *c, const struct ctl_args *a)
{
        const char *prefix = ctl_args_get(a, "uri-prefix"), *region = ctl_args_get(a, "region");
        if (prefix == NULL) {
                ctl_err("--uri-prefix is required (\"\" for none)");
                return CTL_USAGE;
        }
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddStringToObject(doc, "name", a->pos[0]);
        cJSON_AddStringToObject(doc, "uri_prefix", prefix);
        if (region != NULL)
                cJSON_AddStringToObject(doc, "region", region);
        if (!c->json)
                fprintf(stderr, "keywardctl: the reply holds a SigV4 secret: keep it safe\n");
        return ctl_simple(c, "POST", "xks/stores", NULL, NULL, doc);
}

int ctl_cmd_xks_rotate(struct ctl *c, const struct ctl_args *a)
{
        return ctl_simple(c, "POST", "xks/stores", a->pos[0], "rotate", NULL);
}

int ctl_cmd_xks_import_file(struct ctl *c, const struct ctl_args *a)
{
        return ctl_simple(c, "GET", "xks/stores", a->pos[0], "import-file", NULL);
}

int ctl_cmd_xks_delete_credential(struct ctl *c, const struct ctl_args *a)
{
        const char *akid = ctl_args_get(a, "access-key-id");
        if (akid == NULL) {
                ctl_err("--access-key-id is required");
                return CTL_USAGE;
        }
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddStringToObject(doc, "access_key_id", akid);
        return ctl_simple(c, "POST", "xks/stores", a->pos[0], "delete-credential", doc);
}

int ctl_cmd_xks_delete(struct ctl *c, const struct ctl_args *a)
{
        return ctl_simple(c, "DELETE", "xks/stores", a->pos[0], NULL, NULL);
}
