/*
 * evidence.c - the evidence JSON (docs/attestation.md) -> struct kwa_evidence.
 * Every field is type- and length-checked; base64 members are decoded into
 * owned buffers; a piece is either an object of fields or {"absent": why}.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "kwa.h"

#define EVIDENCE_MAX (2u << 20)

static const char *str_of(const cJSON *o, const char *name)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
        return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int hex_field(const cJSON *o, const char *name, uint8_t *out, size_t n)
{
        const char *s = str_of(o, name);
        return s != NULL && kwa_hex_decode(s, out, n) == 0 ? 0 : -1;
}

/* name absent: blob stays empty (0); present but not base64: -1. */
static int b64_field(const cJSON *o, const char *name, struct kwa_blob *b, int required)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
        if (v == NULL)
                return required ? -1 : 0;
        if (!cJSON_IsString(v) || kwa_b64_decode(v->valuestring, &b->p, &b->n) != 0)
                return -1;
        return 0;
}

/* A piece: 1 present, 0 absent (why copied), -1 malformed. */
static int piece(const cJSON *doc, const char *name, const cJSON **ret, char *why, size_t whysz)
{
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(doc, name);
        if (o == NULL) {
                snprintf(why, whysz, "not in the evidence");
                return 0;
        }
        if (!cJSON_IsObject(o))
                return -1;
        const char *a = str_of(o, "absent");
        if (a != NULL) {
                snprintf(why, whysz, "%s", a);
                return 0;
        }
        *ret = o;
        return 1;
}

static int fail(char *err, size_t errsz, const char *what)
{
        snprintf(err, errsz, "evidence: %s", what);
        return KWA_E_FORMAT;
}

int kwa_evidence_parse(const char *json, size_t len, struct kwa_evidence *ret, char *err, size_t errsz)
{
        if (len > EVIDENCE_MAX)
                return fail(err, errsz, "document too large");
        cJSON *doc = cJSON_ParseWithLength(json, len);
        if (doc == NULL || !cJSON_IsObject(doc)) {
                cJSON_Delete(doc);
                return fail(err, errsz, "not a JSON object");
        }
        struct kwa_evidence e;
        memset(&e, 0, sizeof e);
        const char *what = NULL;
        const cJSON *ver = cJSON_GetObjectItemCaseSensitive(doc, "version");
        const cJSON *o = NULL;
        int pr;
        if (!cJSON_IsNumber(ver) || ver->valuedouble != 1) {
                what = "version is not 1";
                goto bad;
        }
        e.version = 1;
        if (hex_field(doc, "nonce", e.nonce, 32) != 0) {
                what = "nonce: not 64 hex digits";
                goto bad;
        }
        if (hex_field(doc, "tls_spki_sha256", e.spki, 32) != 0) {
                what = "tls_spki_sha256: not 64 hex digits";
                goto bad;
        }
        snprintf(e.image_version, sizeof e.image_version, "%s", str_of(doc, "image_version") ? str_of(doc, "image_version") : "");
        snprintf(e.expected_id, sizeof e.expected_id, "%s",
                 str_of(doc, "expected_values_id") ? str_of(doc, "expected_values_id") : "");

        pr = piece(doc, "snp", &o, e.snp_absent, sizeof e.snp_absent);
        if (pr < 0) {
                what = "snp: not an object";
                goto bad;
        }
        if (pr == 1) {
                const cJSON *certs = cJSON_GetObjectItemCaseSensitive(o, "certs");
                if (b64_field(o, "report", &e.snp_report, 1) != 0 ||
                    (certs != NULL && (!cJSON_IsObject(certs) || b64_field(certs, "vcek", &e.vcek, 0) != 0 ||
                                       b64_field(certs, "ask", &e.ask, 0) != 0 ||
                                       b64_field(certs, "ark", &e.ark, 0) != 0))) {
                        what = "snp: report/certs not base64";
                        goto bad;
                }
                e.snp_present = 1;
        }
        pr = piece(doc, "tpm", &o, e.tpm_absent, sizeof e.tpm_absent);
        if (pr < 0) {
                what = "tpm: not an object";
                goto bad;
        }
        if (pr == 1) {
                if (b64_field(o, "ak_public", &e.ak_public, 1) != 0 || b64_field(o, "quote", &e.quote, 1) != 0 ||
                    b64_field(o, "signature", &e.signature, 1) != 0 || b64_field(o, "ek_cert", &e.ek_cert, 0) != 0) {
                        what = "tpm: ak_public/quote/signature/ek_cert missing or not base64";
                        goto bad;
                }
                const cJSON *el = cJSON_GetObjectItemCaseSensitive(o, "event_log");
                if (cJSON_IsString(el) && b64_field(o, "event_log", &e.event_log, 1) != 0) {
                        what = "tpm: event_log not base64";
                        goto bad;
                }
                const char *bank = str_of(o, "pcr_bank");
                const cJSON *pcrs = cJSON_GetObjectItemCaseSensitive(o, "pcrs");
                if (bank == NULL || strcmp(bank, "sha256") != 0 || !cJSON_IsObject(pcrs)) {
                        what = "tpm: pcr_bank must be sha256 with a pcrs object";
                        goto bad;
                }
                const cJSON *it;
                cJSON_ArrayForEach(it, pcrs) {
                        char *end = NULL;
                        long i = it->string ? strtol(it->string, &end, 10) : -1;
                        if (end == NULL || *end != '\0' || i < 0 || i > 23 || (e.pcr_mask & (1u << i)) ||
                            !cJSON_IsString(it) || kwa_hex_decode(it->valuestring, e.pcrs[i], 32) != 0) {
                                what = "tpm: pcrs: bad index or value";
                                goto bad;
                        }
                        e.pcr_mask |= 1u << i;
                }
                e.tpm_present = 1;
        }
        pr = piece(doc, "azure", &o, e.azure_absent, sizeof e.azure_absent);
        if (pr < 0) {
                what = "azure: not an object";
                goto bad;
        }
        if (pr == 1) {
                if (b64_field(o, "hcl_report", &e.hcl, 1) != 0) {
                        what = "azure: hcl_report missing or not base64";
                        goto bad;
                }
                e.azure_present = 1;
        }
        cJSON_Delete(doc);
        *ret = e;
        return 0;
bad:
        cJSON_Delete(doc);
        kwa_evidence_free(&e);
        return fail(err, errsz, what);
}

void kwa_evidence_free(struct kwa_evidence *e)
{
        struct kwa_blob *bs[] = { &e->snp_report, &e->vcek, &e->ask, &e->ark, &e->ak_public, &e->quote,
                                  &e->signature, &e->ek_cert, &e->event_log, &e->hcl };
        for (size_t i = 0; i < sizeof bs / sizeof bs[0]; i++) {
                free(bs[i]->p);
                bs[i]->p = NULL;
                bs[i]->n = 0;
        }
}
