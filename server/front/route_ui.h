/*
 * route_ui.h - the web console's static files (server/ui/), compiled into
 * keywardd and served at /ui/ on the listener of the admin API
 * (docs/console.md).
 */
#ifndef KW_ROUTE_UI_H
#define KW_ROUTE_UI_H

#include <stddef.h>

#include "http.h"

struct kw_config;

/* One file of server/ui/, as build/gen/ui_assets.c holds it (written at
 * build time by server/ui_embed.c, never committed). */
struct kw_ui_asset {
        const char *name;               /* "index.html", "app.js"...                */
        const unsigned char *data;
        size_t len;
        const char *content_type;       /* "text/html; charset=utf-8"...            */
        const char *etag;               /* "\"<SHA-256 hex of the bytes>\"" (strong) */
        int is_html;                    /* no-store, no ETag                        */
};
extern const struct kw_ui_asset kw_ui_assets[];
extern const size_t kw_ui_assets_n;

/* Whether the console is served ([console] enable, true by default). */
int kw_ui_enabled(const struct kw_config *cfg);

/* The answer for one request, filled into resp (status, body, headers):
 *   /ui -> 301 Location: /ui/;  /ui/ -> index.html;  /ui/<name> -> that file;
 *   anything else under the prefix -> 404 no_route;  a method other than GET
 *   or HEAD on a file -> 405 (Allow: GET, HEAD).
 * HTML: Cache-Control: no-store.  Other files: no-cache with their ETag,
 * and 304 (no body) when if_none_match (the header's value, or NULL) lists
 * it or is "*".  The body is filled for HEAD too (http.c sends only its
 * length).  Returns the error name for the log line, or "" on success. */
const char *kw_ui_answer(const char *method, const char *path, const char *if_none_match,
                         struct kw_resp *resp);

/* The /ui route (main.c build_routes): kw_ui_answer on the request. */
void kw_route_ui(struct kw_req *req, struct kw_resp *resp, void *ctx);

#endif
