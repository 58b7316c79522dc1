/* rules.c - per-key access rules (see rules.h). */
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "rules.h"

enum { R_PRINCIPALS, R_OPERATIONS, R_VIA, R_VPCS, R_VPCES, R_STORES, R_CNS, R_EKM_PATHS, R_N };

struct rule_list_def {
        const char *section;
        const char *member;
        const char *label;
};

static const struct rule_list_def rule_defs[R_N] = {
        [R_PRINCIPALS] = { "xks", "principals", "xks.principals" },
        [R_OPERATIONS] = { "xks", "operations", "xks.operations" },
        [R_VIA] = { "xks", "via_services", "xks.via_services" },
        [R_VPCS] = { "xks", "source_vpcs", "xks.source_vpcs" },
        [R_VPCES] = { "xks", "source_vpces", "xks.source_vpces" },
        [R_STORES] = { "xks", "key_stores", "xks.key_stores" },
        [R_CNS] = { "ekm", "client_cns", "ekm.client_cns" },
        [R_EKM_PATHS] = { "ekm", "path_prefixes", "ekm.path_prefixes" },
};

#define RULES_MAX_ITEMS 64
#define RULES_MAX_LEN 2048

struct kw_rules {
        int present[R_N];
        size_t n[R_N];
        char **items[R_N];
};

void kw_rules_free(struct kw_rules *r)
{
        if (r == NULL)
                return;
        for (int i = 0; i < R_N; i++) {
                for (size_t j = 0; j < r->n[i]; j++)
                        free(r->items[i][j]);
                free(r->items[i]);
        }
        free(r);
}

static int rule_index(const char *section, const char *member)
{
        for (int i = 0; i < R_N; i++)
                if (strcmp(rule_defs[i].section, section) == 0 &&
                    strcmp(rule_defs[i].member, member) == 0)
                        return i;
        return -1;
}

static kw_result rules_take_list(struct kw_rules *r, int idx, const cJSON *arr)
{
        const char *label = rule_defs[idx].label;
        if (!cJSON_IsArray(arr)) {
                kw_err_set_detail("rules: %s must be an array of strings", label);
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        int n = cJSON_GetArraySize(arr);
        if (n > RULES_MAX_ITEMS) {
                kw_err_set_detail("rules: %s has more than %d entries", label, RULES_MAX_ITEMS);
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        r->items[idx] = calloc((size_t)n + 1, sizeof(char *));
        KW_ENSURE(r->items[idx] != NULL, KW_ERR_NOMEM);
        r->present[idx] = 1;
        const cJSON *it;
        cJSON_ArrayForEach(it, arr)
        {
                size_t len = cJSON_IsString(it) ? strlen(it->valuestring) : 0;
                if (len == 0 || len > RULES_MAX_LEN) {
                        kw_err_set_detail("rules: %s entries must be strings of 1..%d bytes", label,
                                          RULES_MAX_LEN);
                        KW_BAIL(KW_ERR_BAD_FIELD);
                }
                char *dup = strdup(it->valuestring);
                KW_ENSURE(dup != NULL, KW_ERR_NOMEM);
                r->items[idx][r->n[idx]++] = dup;
        }
        return KW_OK;
}

static kw_result rules_from_json(struct kw_rules *r, const cJSON *root)
{
        if (!cJSON_IsObject(root)) {
                kw_err_set_detail("rules must be a JSON object");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        const cJSON *sec;
        cJSON_ArrayForEach(sec, root)
        {
                if (strcmp(sec->string, "xks") != 0 && strcmp(sec->string, "ekm") != 0) {
                        kw_err_set_detail("rules: unknown section \"%.64s\" (expected xks, ekm)",
                                          sec->string);
                        KW_BAIL(KW_ERR_BAD_FIELD);
                }
                if (!cJSON_IsObject(sec)) {
                        kw_err_set_detail("rules: %s must be an object", sec->string);
                        KW_BAIL(KW_ERR_BAD_FIELD);
                }
                const cJSON *m;
                cJSON_ArrayForEach(m, sec)
                {
                        int idx = rule_index(sec->string, m->string);
                        if (idx < 0) {
                                kw_err_set_detail("rules: unknown member %s.%.64s", sec->string,
                                                  m->string);
                                KW_BAIL(KW_ERR_BAD_FIELD);
                        }
                        if (r->present[idx]) {
                                kw_err_set_detail("rules: duplicate member %s", rule_defs[idx].label);
                                KW_BAIL(KW_ERR_BAD_FIELD);
                        }
                        KW_TRY(rules_take_list(r, idx, m));
                }
        }
        return KW_OK;
}

kw_result kw_rules_parse(const char *json, size_t len, struct kw_rules **ret)
{
        cJSON *root = cJSON_ParseWithLength(json, len);
        if (root == NULL) {
                kw_err_set_detail("rules are not valid JSON");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        struct kw_rules *r = calloc(1, sizeof *r);
        if (r == NULL) {
                cJSON_Delete(root);
                KW_BAIL(KW_ERR_NOMEM);
        }
        kw_result res = rules_from_json(r, root);
        cJSON_Delete(root);
        if (res.code != 0) {
                kw_rules_free(r);
                return res;
        }
        *ret = r;
        return KW_OK;
}

int kw_glob_match(const char *p, const char *s)
{
        const char *star = NULL, *resume = NULL;
        while (*s != '\0') {
                if (*p == '*') {
                        star = p++;
                        resume = s;
                } else if (*p == *s) {
                        p++;
                        s++;
                } else if (star != NULL) {
                        p = star + 1;
                        s = ++resume;
                } else {
                        return 0;
                }
        }
        while (*p == '*')
                p++;
        return *p == '\0';
}

static int list_allows(const struct kw_rules *r, int idx, const char *value)
{
        if (!r->present[idx])
                return 1;
        if (value == NULL)
                return 0;
        for (size_t i = 0; i < r->n[idx]; i++)
                if (kw_glob_match(r->items[idx][i], value))
                        return 1;
        return 0;
}

kw_result kw_rules_check(const struct kw_rules *r, const struct kw_caller_ctx *c,
                         const char **ret_rule)
{
        if (c->kind == KW_CALLER_ADMIN)
                return KW_OK;
        if (r == NULL && c->kind == KW_CALLER_XKS) {
                *ret_rule = rule_defs[R_STORES].label;   /* in no store */
                KW_BAIL(KW_ERR_ACCESS_DENIED);
        }
        int deny = -1;
        if (c->kind == KW_CALLER_XKS) {
                const char *vals[R_N] = { [R_PRINCIPALS] = c->principal,
                                          [R_OPERATIONS] = c->operation,
                                          [R_VIA] = c->via,
                                          [R_VPCS] = c->vpc,
                                          [R_VPCES] = c->vpce,
                                          [R_STORES] = c->store };
                for (int i = R_PRINCIPALS; i <= R_STORES && deny < 0; i++)
                        if (!list_allows(r, i, vals[i]))
                                deny = i;
        } else if (c->kind == KW_CALLER_EKM) {
                /* opt-in: a key whose rules name neither list is not an EKM key */
                if (r == NULL || (!r->present[R_CNS] && !r->present[R_EKM_PATHS])) {
                        *ret_rule = "ekm";
                        KW_BAIL(KW_ERR_ACCESS_DENIED);
                }
                if (!list_allows(r, R_CNS, c->cn))
                        deny = R_CNS;
                else if (!list_allows(r, R_EKM_PATHS, c->ekm_path))
                        deny = R_EKM_PATHS;
        } else {
                deny = R_PRINCIPALS; /* unknown caller kind: never allowed */
        }
        if (deny >= 0) {
                *ret_rule = rule_defs[deny].label;
                KW_BAIL(KW_ERR_ACCESS_DENIED);
        }
        return KW_OK;
}

int kw_rules_in_store(const struct kw_rules *r, const char *store)
{
        if (r == NULL || store == NULL || !r->present[R_STORES])
                return 0;
        return list_allows(r, R_STORES, store);
}
