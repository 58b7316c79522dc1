/*
 * route_ops.c - /healthz and /metrics: no authentication.  main.c routes
 * /healthz on every listener and /metrics where the admin API is served
 * (the admin listener, or the main one when they are shared; nowhere with
 * [admin] enable = false): docs/api.md#health-and-metrics.
 *
 * /healthz answers 200 {"status":"ok"} when the custody process answers a
 * PING, 200 {"status":"degraded","warnings":[...]} when it answers with
 * storage warnings (codes only), else 503
 * {"status":"unavailable","error","message"}; each with "evaluation":true
 * added when [hsm] evaluation = true.
 * /metrics is the Prometheus text format 0.0.4: the front's HTTP metrics
 * (kw_http_metrics) followed by the custody counters of KW_OP_STATS as
 * keyward_custody_<name>, keyward_custody_up, keyward_evaluation_mode,
 * keyward_node_info and, in fleet mode ([db] engine = "postgresql"),
 * keyward_db_up and keyward_fleet_nodes{state} from custody's KW_OP_NODES.
 * Every sample carries node="<id>" as its first label (kw_config_node_name:
 * [db] node_name or the host name), so that the series of a fleet's nodes
 * stay apart wherever they are collected.
 */
#include <math.h> /* isfinite (a macro: no libm) */
#include <stdio.h>
#include <string.h>

#include "../common/proto.h"
#include "front.h"
#include "route_xks.h"
#include "../common/json_io.h"

#ifndef KEYWARD_VERSION
#define KEYWARD_VERSION "0.1.0"
#endif

#define OPS_METRIC_NAME_MAX 96
#define OPS_STATS_DEPTH 3
#define OPS_NODES_DEPTH 4       /* {nodes:[{...}]} and one level to spare */

/* Method check shared by both routes: GET only. */
static int ops_method_ok(struct kw_req *req, struct kw_resp *resp)
{
        if (strcmp(req->method, "GET") == 0)
                return 1;
        snprintf(resp->extra_headers, sizeof resp->extra_headers, "Allow: GET\r\n");
        kw_resp_error(resp, 405, "method_not_allowed", "method not allowed for this path");
        snprintf(req->log_error, sizeof req->log_error, "method_not_allowed");
        return 0;
}

/* A warning code from custody: [a-z_]{1,48}. */
static int ops_warning_ok(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 48)
                return 0;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || *s == '_'))
                        return 0;
        return 1;
}

/* {"status":"ok"}, or {"status":"degraded","warnings":[codes]} when the
 * PING reply lists storage warnings: still 200 (the process is alive and
 * serving; a liveness probe must not restart it because export_dir is
 * full), but monitoring that expects "ok" sees it. */
KW_MUST_USE static kw_result ops_health_body(const struct kw_cc_call *c, struct kw_buf *out)
{
        const char *json = NULL;
        size_t len = 0;
        cJSON *doc = NULL;
        if (kw_cc_reply_json(c, &json, &len).code != 0 ||
            kw_json_parse((const uint8_t *)json, len, 2, &doc).code != 0)
                return kw_buf_put_str(out, "{\"status\":\"ok\"}");
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, "warnings");
        size_t mark = out->len;
        kw_result r = kw_buf_put_str(out, "{\"status\":\"degraded\",\"warnings\":[");
        int n = 0;
        for (const cJSON *w = cJSON_IsArray(arr) ? arr->child : NULL; w != NULL && n < 16 && r.code == 0;
             w = w->next) {
                if (!cJSON_IsString(w) || !ops_warning_ok(w->valuestring))
                        continue;
                r = kw_buf_printf(out, "%s\"%s\"", n++ ? "," : "", w->valuestring);
        }
        if (r.code == 0)
                r = kw_buf_put_str(out, "]}");
        cJSON_Delete(doc);
        if (r.code == 0 && n == 0) {   /* nothing usable: plain ok */
                out->len = mark;
                r = kw_buf_put_str(out, "{\"status\":\"ok\"}");
        }
        return r;
}

/* [hsm] evaluation = true: "evaluation":true added to the body (a JSON
 * object this file wrote, so it ends with its closing brace). */
KW_MUST_USE static kw_result ops_health_evaluation(const struct kw_front *front, struct kw_buf *b)
{
        if (front->cfg == NULL || !front->cfg->hsm.evaluation)
                return KW_OK;
        KW_ENSURE(b->len > 0 && b->p[b->len - 1] == '}', KW_ERR_INTERNAL);
        b->len--;
        return kw_buf_put_str(b, ",\"evaluation\":true}");
}

void kw_route_healthz(struct kw_req *req, struct kw_resp *resp, void *ctx)
{
        struct kw_front *front = ctx;
        snprintf(req->log_route, sizeof req->log_route, "healthz");
        if (!ops_method_ok(req, resp))
                return;
        kw_err_clear_detail();
        struct kw_cc_call c;
        kw_cc_begin(front->cc, KW_OP_PING, KW_CALLER_PUBLIC, &c);
        kw_result r = kw_cc_invoke(&c);
        char detail[257];
        snprintf(detail, sizeof detail, "%s", c.detail[0] ? c.detail : kw_err_detail());
        resp->extra_headers[0] = '\0';
        kw_buf_reset(&resp->body);
        kw_result w;
        if (r.code == 0) {
                resp->status = 200;
                w = ops_health_body(&c, &resp->body);
        } else {
                resp->status = 503;
                snprintf(resp->extra_headers, sizeof resp->extra_headers, "Retry-After: 1\r\n");
                snprintf(req->log_error, sizeof req->log_error, "%s", kw_err_name(r.code));
                w = kw_buf_printf(&resp->body,
                                  "{\"status\":\"unavailable\",\"error\":\"%s\",\"message\":\"",
                                  kw_err_name(r.code));
                const char *msg = kw_strerror(r.code);
                if (w.code == 0)
                        w = kw_buf_put_json_escaped(&resp->body, msg, strlen(msg));
                if (w.code == 0 && detail[0] != '\0')
                        w = kw_buf_put_str(&resp->body, ": ");
                if (w.code == 0 && detail[0] != '\0')
                        w = kw_buf_put_json_escaped(&resp->body, detail, strlen(detail));
                if (w.code == 0)
                        w = kw_buf_put_str(&resp->body, "\"}");
        }
        if (w.code == 0)
                w = ops_health_evaluation(front, &resp->body);
        kw_cc_end(&c);
        if (w.code != 0)
                kw_resp_error(resp, 500, kw_err_name(w.code), kw_strerror(w.code));
}

/* [a-zA-Z0-9_] only (metric name characters after the prefix). */
static int ops_metric_part_ok(const char *s)
{
        if (*s == '\0')
                return 0;
        for (; *s; s++) {
                char c = *s;
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_'))
                        return 0;
        }
        return 1;
}

/* Emits the members of obj as keyward_custody_<prefix><name>: numbers and
 * booleans become samples ("_total" names are counters, the rest gauges);
 * nested objects are flattened with '_'; anything else (strings, arrays,
 * members whose names are not metric names) is skipped. */
KW_MUST_USE static kw_result ops_stats_emit(const cJSON *obj, const char *prefix, int depth,
                                            const char *node, struct kw_buf *out)
{
        for (const cJSON *m = obj->child; m != NULL; m = m->next) {
                char name[OPS_METRIC_NAME_MAX];
                if (m->string == NULL || !ops_metric_part_ok(m->string))
                        continue;
                int n = snprintf(name, sizeof name, "%s%s", prefix, m->string);
                if (n < 0 || (size_t)n >= sizeof name)
                        continue;
                if (cJSON_IsObject(m)) {
                        if (depth < OPS_STATS_DEPTH && (size_t)n + 1 < sizeof name) {
                                name[n] = '_';
                                name[n + 1] = '\0';
                                KW_TRY(ops_stats_emit(m, name, depth + 1, node, out));
                        }
                        continue;
                }
                double v;
                if (cJSON_IsNumber(m))
                        v = m->valuedouble;
                else if (cJSON_IsBool(m))
                        v = cJSON_IsTrue(m) ? 1 : 0;
                else
                        continue;
                if (!isfinite(v))
                        continue;
                size_t nl = (size_t)n;
                int counter = nl > 6 && strcmp(name + nl - 6, "_total") == 0;
                KW_TRY(kw_buf_printf(out, "# TYPE keyward_custody_%s %s\n", name,
                                     counter ? "counter" : "gauge"));
                if (v > -9007199254740992.0 && v < 9007199254740992.0 && (double)(long long)v == v)
                        KW_TRY(kw_buf_printf(out, "keyward_custody_%s{node=\"%s\"} %.0f\n", name,
                                             node, v));
                else
                        KW_TRY(kw_buf_printf(out, "keyward_custody_%s{node=\"%s\"} %.17g\n", name,
                                             node, v));
        }
        return KW_OK;
}

/* The Prometheus text of a KW_OP_STATS JSON document, appended to out, each
 * sample labelled node.  KW_ERR_PROTOCOL when the document is not a JSON
 * object. */
KW_MUST_USE static kw_result ops_stats_to_prometheus(const char *json, size_t len,
                                                     const char *node, struct kw_buf *out)
{
        cJSON *doc = NULL;
        KW_ENSURE(kw_json_parse((const uint8_t *)json, len, OPS_STATS_DEPTH + 1, &doc).code == 0,
                  KW_ERR_PROTOCOL);
        size_t mark = out->len;
        kw_result r = ops_stats_emit(doc, "", 1, node, out);
        cJSON_Delete(doc);
        if (r.code != 0)
                out->len = mark; /* nothing half-written */
        return r;
}

/* ---- fleet mode -------------------------------------------------------------- */

/* The states a node of the fleet can be in (docs/fleet.md), in the order of
 * keyward_fleet_nodes' samples. */
static const char *const ops_node_states[] = { "ACTIVE", "DEGRADED", "UNAVAILABLE" };
#define OPS_NODE_STATES (sizeof ops_node_states / sizeof ops_node_states[0])

/*
 * The nodes of each state in a KW_OP_NODES reply, into ret_counts (set only
 * on success).  KW_OK only for a document that this node read from the
 * database now: an object whose own "state" is "ACTIVE" with a "nodes" array
 * of objects, each with a string "state"; a node in a state not listed
 * above is not counted.  KW_ERR_PROTOCOL for anything else, and
 * KW_ERR_DB_UNAVAILABLE when this node is not ACTIVE (DEGRADED: the list
 * would be its last copy, not the fleet's state now).
 */
KW_MUST_USE static kw_result ops_fleet_counts(const char *json, size_t len,
                                              unsigned long long ret_counts[OPS_NODE_STATES])
{
        cJSON *doc = NULL;
        KW_ENSURE(kw_json_parse((const uint8_t *)json, len, OPS_NODES_DEPTH, &doc).code == 0,
                  KW_ERR_PROTOCOL);
        unsigned long long n[OPS_NODE_STATES] = { 0 };
        int code = 0;
        const char *self = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "state"));
        const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(doc, "nodes");
        if (self == NULL || !cJSON_IsArray(nodes))
                code = KW_ERR_PROTOCOL;
        else if (strcmp(self, "ACTIVE") != 0)
                code = KW_ERR_DB_UNAVAILABLE;
        for (const cJSON *e = nodes != NULL ? nodes->child : NULL; code == 0 && e != NULL;
             e = e->next) {
                const cJSON *st = cJSON_GetObjectItemCaseSensitive(e, "state");
                if (!cJSON_IsObject(e) || !cJSON_IsString(st)) {
                        code = KW_ERR_PROTOCOL;
                        break;
                }
                for (size_t k = 0; k < OPS_NODE_STATES; k++)
                        if (strcmp(st->valuestring, ops_node_states[k]) == 0)
                                n[k]++;
        }
        cJSON_Delete(doc);
        KW_ENSURE(code == 0, code);
        memcpy(ret_counts, n, sizeof n);
        return KW_OK;
}

/* keyward_db_up and, while the database answers, keyward_fleet_nodes{state}
 * from custody's KW_OP_NODES, asked only when custody answered the stats
 * (custody_up: a hung custody process costs one timeout, not two).  When
 * the op fails (custody down, the database unreachable, a reply that does
 * not parse) keyward_db_up is 0 and the node counts are left out rather
 * than guessed. */
KW_MUST_USE static kw_result ops_fleet_metrics(struct kw_front *front, int custody_up,
                                               const char *node, struct kw_buf *out)
{
        unsigned long long n[OPS_NODE_STATES];
        int up = 0;
        if (custody_up) {
                struct kw_cc_call c;
                kw_cc_begin(front->cc, KW_OP_NODES, KW_CALLER_PUBLIC, &c);
                if (kw_cc_invoke(&c).code == 0) {
                        const char *json = NULL;
                        size_t len = 0;
                        up = kw_cc_reply_json(&c, &json, &len).code == 0 &&
                             ops_fleet_counts(json, len, n).code == 0;
                }
                kw_cc_end(&c);
        }
        KW_TRY(kw_buf_printf(out, "# HELP keyward_db_up 1 when the fleet's database answered this "
                                  "node now ([db] engine = \"postgresql\")\n"
                                  "# TYPE keyward_db_up gauge\n"
                                  "keyward_db_up{node=\"%s\"} %d\n",
                             node, up));
        if (!up)
                return KW_OK;
        KW_TRY(kw_buf_put_str(out, "# HELP keyward_fleet_nodes Nodes of the fleet by state, from "
                                   "their heartbeats in the database\n"
                                   "# TYPE keyward_fleet_nodes gauge\n"));
        for (size_t k = 0; k < OPS_NODE_STATES; k++)
                KW_TRY(kw_buf_printf(out, "keyward_fleet_nodes{node=\"%s\",state=\"%s\"} %llu\n",
                                     node, ops_node_states[k], n[k]));
        return KW_OK;
}

/* The node label: [db] node_name or the host name (kw_config_node_name,
 * [A-Za-z0-9._-]{1,64}); "keyward" without a configuration. */
static void ops_node_id(const struct kw_front *front, char out[65])
{
        if (front->cfg == NULL || kw_config_node_name(front->cfg, out) == NULL ||
            !kw_metrics_node_ok(out))
                snprintf(out, 65, "keyward");
}

static int ops_fleet_mode(const struct kw_front *front)
{
        return front->cfg != NULL && front->cfg->db.engine != NULL &&
               strcmp(front->cfg->db.engine, "postgresql") == 0;
}

/* Everything of /metrics after the front's own series (all or nothing). */
KW_MUST_USE static kw_result ops_custody_metrics(struct kw_front *front, const char *node,
                                                 struct kw_buf *out)
{
        int up = 0;
        struct kw_cc_call c;
        kw_cc_begin(front->cc, KW_OP_STATS, KW_CALLER_PUBLIC, &c);
        if (kw_cc_invoke(&c).code == 0) {
                const char *json = NULL;
                size_t len = 0;
                if (kw_cc_reply_json(&c, &json, &len).code == 0 &&
                    ops_stats_to_prometheus(json, len, node, out).code == 0)
                        up = 1;
        }
        kw_cc_end(&c);
        int fleet = ops_fleet_mode(front);
        KW_TRY(kw_buf_printf(out,
                             "# HELP keyward_custody_up 1 when the custody process answered "
                             "the stats request\n# TYPE keyward_custody_up gauge\n"
                             "keyward_custody_up{node=\"%s\"} %d\n"
                             "# HELP keyward_evaluation_mode 1 when [hsm] evaluation = true "
                             "(a SoftHSM2 token: not for production keys)\n"
                             "# TYPE keyward_evaluation_mode gauge\n"
                             "keyward_evaluation_mode{node=\"%s\"} %d\n"
                             "# HELP keyward_node_info This node: its id, key store engine and "
                             "version\n# TYPE keyward_node_info gauge\n"
                             "keyward_node_info{node=\"%s\",engine=\"%s\",version=\"%s\"} 1\n",
                             node, up, node,
                             front->cfg != NULL && front->cfg->hsm.evaluation ? 1 : 0, node,
                             fleet ? "postgresql" : "sqlcipher", KEYWARD_VERSION));
        if (fleet)
                KW_TRY(ops_fleet_metrics(front, up, node, out));
        return KW_OK;
}

void kw_route_metrics(struct kw_req *req, struct kw_resp *resp, void *ctx)
{
        struct kw_front *front = ctx;
        snprintf(req->log_route, sizeof req->log_route, "metrics");
        if (!ops_method_ok(req, resp))
                return;
        char node[65];
        ops_node_id(front, node);
        kw_buf_reset(&resp->body);
        kw_result r = kw_http_metrics(front->http, node, &resp->body);
        if (r.code == 0)
                r = kw_route_xks_metrics(node, &resp->body);
        if (r.code == 0)
                r = ops_custody_metrics(front, node, &resp->body);
        if (r.code != 0) {
                kw_buf_reset(&resp->body);
                kw_resp_error(resp, 500, kw_err_name(r.code), kw_strerror(r.code));
                snprintf(req->log_error, sizeof req->log_error, "%s", kw_err_name(r.code));
                return;
        }
        resp->status = 200;
        resp->content_type = "text/plain; version=0.0.4";
}
