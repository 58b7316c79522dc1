/*
 * unlock_record.h - the small record keyward-unlock leaves when it has
 * opened the data volume (open, recover): which device, under which name,
 * through which binding (tpm2, snp, recovery), the bindings the volume has
 * and when.  No secret.  keywardd reads it once at start ([attestation]
 * unlock_record) and shows it in GET /api/v1/status (docs/api.md).
 */
#ifndef KWU_UNLOCK_RECORD_H
#define KWU_UNLOCK_RECORD_H

#include "../../server/common/result.h"
#include "luks2_check.h"

#define KWU_UNLOCK_RECORD_DEFAULT "/run/keyward/unlock.json"

/* The binding name of a token type: "tpm2", "snp" or "recovery". */
const char *kwu_binding_name(enum kwu_token_type t);

/* Writes {"version":1,"device","name"?,"binding","bindings_enrolled":[...],
 * "time"} to path atomically (a temporary file in the same directory,
 * 0644, fsync, rename), creating its directory (0755) when absent.
 * bindings_enrolled names each kind of token l has, once.  KW_ERR_IO with
 * a detail on failure (nothing is left behind); name may be NULL. */
KW_MUST_USE kw_result kwu_unlock_record_write(const char *path, const char *device,
                                              const char *name, const char *binding,
                                              const struct kwu_layout *l, time_t now);

#endif
