/*
 * route_ui.c - /ui: the web console's static files (route_ui.h).
 *
 * The files are bytes compiled into the binary (build/gen/ui_assets.c):
 * nothing is read from disk, no path reaches the file system, and a name is
 * served only when it is exactly one of the embedded files.  The console's
 * security headers (CSP, X-Frame-Options, Referrer-Policy) are added by
 * http.c to every answer of the admin listener, not here.
 */
#include <stdio.h>
#include <string.h>

#include "../config.h"
#include "route_ui.h"

#define UI_PREFIX "/ui"

int kw_ui_enabled(const struct kw_config *cfg)
{
        return cfg->console.enable;   /* [console] enable, true by default */
}

static const struct kw_ui_asset *ui_find(const char *name)
{
        for (size_t i = 0; i < kw_ui_assets_n; i++)
                if (strcmp(kw_ui_assets[i].name, name) == 0)
                        return &kw_ui_assets[i];
        return NULL;
}

/* RFC 9110 13.1.2: "*", or a list of entity tags compared weakly (a W/
 * prefix is ignored).  The ETag is public: a plain comparison. */
static int ui_etag_listed(const char *list, const char *etag)
{
        size_t n = strlen(etag);
        const char *p = list;
        while (*p != '\0') {
                while (*p == ' ' || *p == '\t' || *p == ',')
                        p++;
                if (*p == '*')
                        return 1;
                if (p[0] == 'W' && p[1] == '/')
                        p += 2;
                size_t len = strcspn(p, ",");
                while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
                        len--;
                if (len == n && strncmp(p, etag, n) == 0)   /* lint: allow (a public ETag) */
                        return 1;
                p += strcspn(p, ",");
        }
        return 0;
}

const char *kw_ui_answer(const char *method, const char *path, const char *if_none_match,
                         struct kw_resp *resp)
{
        resp->extra_headers[0] = '\0';
        resp->cache_control = NULL;
        if (strcmp(path, UI_PREFIX) == 0) {
                resp->status = 301;
                snprintf(resp->extra_headers, sizeof resp->extra_headers, "Location: " UI_PREFIX "/\r\n");
                kw_buf_reset(&resp->body);
                kw_ignore(kw_buf_put_str(&resp->body, "{\"location\":\"" UI_PREFIX "/\"}"));
                return "";
        }
        const struct kw_ui_asset *a = NULL;
        if (strncmp(path, UI_PREFIX "/", sizeof UI_PREFIX) == 0)
                a = ui_find(path[sizeof UI_PREFIX] == '\0' ? "index.html" : path + sizeof UI_PREFIX);
        if (a == NULL) {
                kw_resp_error(resp, 404, "no_route", "no such path");
                return "no_route";
        }
        int head = strcmp(method, "HEAD") == 0;
        if (!head && strcmp(method, "GET") != 0) {
                snprintf(resp->extra_headers, sizeof resp->extra_headers, "Allow: GET, HEAD\r\n");
                kw_resp_error(resp, 405, "method_not_allowed", "method not allowed for this path");
                return "method_not_allowed";
        }
        resp->content_type = a->content_type;
        if (a->is_html) {
                resp->cache_control = "no-store";
        } else {
                resp->cache_control = "no-cache";
                snprintf(resp->extra_headers, sizeof resp->extra_headers, "ETag: %s\r\n", a->etag);
                if (if_none_match != NULL && ui_etag_listed(if_none_match, a->etag)) {
                        resp->status = 304;
                        kw_buf_reset(&resp->body);
                        return "";
                }
        }
        kw_buf_reset(&resp->body);
        if (kw_buf_put(&resp->body, a->data, a->len).code != 0) {
                resp->extra_headers[0] = '\0';
                resp->cache_control = NULL;
                kw_resp_error(resp, 500, "internal", "internal error");
                return "internal";
        }
        resp->status = 200;
        return "";
}

void kw_route_ui(struct kw_req *req, struct kw_resp *resp, void *ctx)
{
        (void)ctx;
        snprintf(req->log_route, sizeof req->log_route, "ui");
        const char *err = kw_ui_answer(req->method, req->path, kw_req_header(req, "If-None-Match"), resp);
        snprintf(req->log_error, sizeof req->log_error, "%s", err);
}
