/*
 * rules.h - per-key access rules for the protocol callers, evaluated in the
 * custody process (the front only passes what the caller presented).
 *
 * Rules document (JSON object; every member optional, unknown members are
 * an error so that typos do not silently open a key):
 *   {"xks": {"principals":  ["arn:aws:iam::111122223333:role/app-*", ...],
 *            "operations":  ["Encrypt", "Decrypt", "GenerateDataKey", ...],
 *            "via_services":["ebs.amazonaws.com", ...],
 *            "source_vpcs": ["vpc-0abc*", ...],
 *            "source_vpces":["vpce-0123*", ...],
 *            "key_stores":  ["tenant-a", ...]},
 *    "ekm": {"client_cns":  ["contoso.managedhsmclient.azure.net", ...],
 *            "path_prefixes": ["/azureekm/contoso", ...]}}
 * Each present list restricts: the caller's value must match one entry,
 * where '*' matches any run of characters (including none) and nothing else
 * is special.  A caller that lacks the value a present list checks is
 * denied.  Admin callers are not subject to rules.  Lists: at most 64
 * entries of 1..2048 bytes.
 *
 * A key is reachable over a protocol only when its rules name that
 * protocol (opt-in): over XKS only through the stores xks.key_stores lists
 * (kw_rules_in_store), over EKM only when ekm.client_cns or
 * ekm.path_prefixes is present (the EKM base path "/azureekm[/<prefix>]"
 * the request came in under is matched against path_prefixes).  Within an
 * opted-in protocol, absent lists restrict nothing.
 */
#ifndef KW_RULES_H
#define KW_RULES_H

#include <stddef.h>

#include "../common/proto.h"
#include "../common/result.h"

struct kw_rules;

struct kw_caller_ctx {
        enum kw_caller kind;
        const char *principal;  /* XKS awsPrincipalArn, or NULL */
        const char *operation;  /* XKS kmsOperation */
        const char *via;        /* XKS kmsViaService */
        const char *vpc;        /* XKS awsSourceVpc */
        const char *vpce;       /* XKS awsSourceVpce */
        const char *store;      /* XKS key store (URI prefix name) */
        const char *cn;         /* EKM client certificate CN */
        const char *ekm_path;   /* EKM base path, "/azureekm[/<prefix>]" */
};

/* Parses and validates; KW_ERR_BAD_FIELD with a detail naming the member. */
KW_MUST_USE kw_result kw_rules_parse(const char *json, size_t len, struct kw_rules **ret);
void kw_rules_free(struct kw_rules *r);
/* KW_OK when allowed; KW_ERR_ACCESS_DENIED otherwise, *ret_rule = the name
 * of the list that denied (e.g. "xks.principals"; "ekm" for a key that is
 * not opted into EKM), static storage.  An XKS caller is checked against
 * the xks lists only: store membership is kw_rules_in_store's. */
KW_MUST_USE kw_result kw_rules_check(const struct kw_rules *r, const struct kw_caller_ctx *c,
                                     const char **ret_rule);
/* XKS key store isolation (docs/xks.md): 1 when the rules list
 * xks.key_stores and one entry matches store; 0 otherwise, so a key with no
 * key_stores list belongs to no XKS store. */
int kw_rules_in_store(const struct kw_rules *r, const char *store);
/* '*'-only glob, iterative (no backtracking blow-up). 1 match, 0 not. */
int kw_glob_match(const char *pattern, const char *s);

#endif
