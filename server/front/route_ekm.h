/*
 * route_ekm.h - the Azure Managed HSM External Key Manager (EKM) proxy API,
 * version 0.1-preview, under /azureekm[/<azure_ekm_path_prefix>]
 * (docs/ekm.md, /work/shared/specs/azure-ekm.md).
 *
 * Endpoints (all POST, ?api-version=0.1-preview):
 *     /info   /{key-name}/metadata   /{key-name}/wrapkey   /{key-name}/unwrapkey
 * Mutual TLS: the client certificate must chain to [tls] clients_ca_cert_file
 * and carry a CN in [azure_ekm_config] azure_ekm_client_cns.  Every failure
 * is {"code","message"} with the status of the EKM error table.
 */
#ifndef KW_ROUTE_EKM_H
#define KW_ROUTE_EKM_H

#include <stddef.h>

#include "../common/result.h"
#include "http.h"

struct kw_config;

#define KW_EKM_ROUTE_PREFIX "/azureekm"
#define KW_EKM_API_VERSION "0.1-preview"

/*
 * Checks the EKM settings that only matter when EKM is enabled and
 * prepares the route's state (path prefix, rate limiter).  Call once at
 * start-up, before the listener starts, when azure_ekm_enable is true.
 * KW_ERR_CONFIG with a detail naming the setting when the route cannot work
 * as configured (client authentication on but no client CA or no allowed
 * CN; azure_ekm_client_ca_file set, which is not supported: the EKM CA goes
 * in [tls] clients_ca_cert_file).
 */
KW_MUST_USE kw_result kw_route_ekm_setup(const struct kw_config *cfg);

/* The route handler (ctx is a struct kw_front *). */
void kw_route_ekm(struct kw_req *req, struct kw_resp *resp, void *ctx);
/* http.c's own refusals on EKM paths (body too large, bad framing) as
 * {"code":"InvalidRequest",...} (kw_route_error_fn). */
void kw_route_ekm_error(struct kw_req *req, struct kw_resp *resp, int code);

/* 1 when name can be addressed over EKM: 1..64 characters of [A-Za-z0-9-]. */
int kw_ekm_key_name_valid(const char *name);

/*
 * The key URL to register in Azure for the key name:
 * "https://<azure_ekm_public_host or [http] listen>/azureekm[/<prefix>]/<name>".
 * KW_ERR_BAD_NAME when the name is not EKM-addressable, KW_ERR_TOO_LARGE
 * when out (outsz bytes) is too small; out is written only on success.
 */
KW_MUST_USE kw_result kw_ekm_key_url(const struct kw_config *cfg, const char *name, char *out,
                                     size_t outsz);

#endif
