/*
 * attest_summary_fuzz.c - the admin API's attestation summary (server/
 * front/admin_info.c, admin_attest_summarize) on arbitrary bytes: the
 * evidence document comes from the custody process, its SEV-SNP report from
 * the platform's firmware, neither trusted by the front.
 *
 * Properties: it never reads out of bounds or leaks; on success the summary
 * is an object whose "tls_spki_sha256" is 64 hex digits and whose "tpm" and
 * "snp" are objects with a boolean "available"; on failure nothing was
 * added to the output.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../../server/front/admin_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void piece_or_abort(const cJSON *o, const char *name)
{
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, name);
        if (!cJSON_IsObject(p) || !cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(p, "available")))
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        cJSON *out = cJSON_CreateObject();
        if (out == NULL)
                return 0;
        if (admin_attest_summarize(data, size, out).code != 0) {
                if (out->child != NULL)
                        abort();
        } else {
                const cJSON *spki = cJSON_GetObjectItemCaseSensitive(out, "tls_spki_sha256");
                if (!cJSON_IsString(spki) || strlen(spki->valuestring) != 64)
                        abort();
                piece_or_abort(out, "tpm");
                piece_or_abort(out, "snp");
                char *s = cJSON_PrintUnformatted(out);
                if (s == NULL)
                        abort();
                free(s);
        }
        cJSON_Delete(out);
        return 0;
}
