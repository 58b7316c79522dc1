/*
 * policy.c - the expected-values document (policy.json, docs/attestation.md):
 * parse (strict: unknown members are errors, so a typo cannot silently
 * weaken a policy) and the trust-on-first-use generator of `policy-from`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>

#include "kwa.h"

#define POLICY_MAX_MEASUREMENTS 64

static int only_members(const cJSON *o, const char *const *allowed, char *err, size_t errsz, const char *where)
{
        const cJSON *it;
        cJSON_ArrayForEach(it, o) {
                int ok = 0;
                for (size_t i = 0; allowed[i] != NULL; i++)
                        ok |= it->string != NULL && strcmp(it->string, allowed[i]) == 0;
                if (!ok) {
                        snprintf(err, errsz, "policy: unknown member \"%.40s\" in %s", it->string ? it->string : "",
                                 where);
                        return -1;
                }
        }
        return 0;
}

static int get_bool(const cJSON *o, const char *name, int *out)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
        if (v == NULL)
                return 0;
        if (!cJSON_IsBool(v))
                return -1;
        *out = cJSON_IsTrue(v);
        return 0;
}

static int get_int(const cJSON *o, const char *name, int64_t lo, int64_t hi, int64_t *out)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
        if (v == NULL)
                return 0;
        if (!cJSON_IsNumber(v) || v->valuedouble < (double)lo || v->valuedouble > (double)hi ||
            v->valuedouble != (double)(int64_t)v->valuedouble)
                return -1;
        *out = (int64_t)v->valuedouble;
        return 0;
}

static int parse_snp(const cJSON *s, struct kwa_snp_policy *p, char *err, size_t errsz)
{
        static const char *const keys[] = { "allow_debug", "max_vmpl", "measurements", "min_tcb",
                                            "min_guest_svn", "product", NULL };
        static const char *const tcb_keys[] = { "bootloader", "tee", "snp", "microcode", "fmc", NULL };
        if (!cJSON_IsObject(s) || only_members(s, keys, err, errsz, "snp") != 0)
                return -1;
        p->set = 1;
        p->max_vmpl = 0;
        int64_t v = 0;
        if (get_bool(s, "allow_debug", &p->allow_debug) != 0 || get_int(s, "max_vmpl", -1, 3, &p->max_vmpl) != 0 ||
            get_int(s, "min_guest_svn", 0, UINT32_MAX, &p->min_guest_svn) != 0)
                goto bad;
        const cJSON *prod = cJSON_GetObjectItemCaseSensitive(s, "product");
        if (prod != NULL) {
                if (!cJSON_IsString(prod) || strlen(prod->valuestring) >= sizeof p->product)
                        goto bad;
                snprintf(p->product, sizeof p->product, "%s", prod->valuestring);
        }
        const cJSON *ms = cJSON_GetObjectItemCaseSensitive(s, "measurements");
        if (ms != NULL) {
                int n = cJSON_GetArraySize(ms);
                if (!cJSON_IsArray(ms) || n > POLICY_MAX_MEASUREMENTS)
                        goto bad;
                p->measurements = calloc((size_t)n + 1, 48);
                if (p->measurements == NULL)
                        goto bad;
                const cJSON *it;
                cJSON_ArrayForEach(it, ms) {
                        if (!cJSON_IsString(it) || kwa_hex_decode(it->valuestring, p->measurements[p->n_measurements], 48) != 0)
                                goto bad;
                        p->n_measurements++;
                }
        }
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "min_tcb");
        if (t != NULL) {
                if (!cJSON_IsObject(t) || only_members(t, tcb_keys, err, errsz, "snp.min_tcb") != 0)
                        return -1;
                unsigned *f[] = { &p->min_tcb.bootloader, &p->min_tcb.tee, &p->min_tcb.snp,
                                  &p->min_tcb.microcode, &p->min_tcb.fmc };
                for (size_t i = 0; i < 5; i++) {
                        v = 0;
                        if (get_int(t, tcb_keys[i], 0, 255, &v) != 0)
                                goto bad;
                        *f[i] = (unsigned)v;
                }
        }
        return 0;
bad:
        snprintf(err, errsz, "policy: snp: a member has the wrong type or range");
        return -1;
}

int kwa_policy_parse(const char *json, size_t len, struct kwa_policy *ret, char *err, size_t errsz)
{
        static const char *const top[] = { "keyward_policy", "tofu", "comment", "source", "created",
                                           "require", "tpm", "snp", NULL };
        static const char *const req_keys[] = { "snp", "tpm", "azure", "event_log", NULL };
        static const char *const tpm_keys[] = { "pcrs", "ak_sha256", NULL };
        struct kwa_policy p;
        memset(&p, 0, sizeof p);
        cJSON *doc = cJSON_ParseWithLength(json, len);
        int rc = -1;
        const cJSON *ver = cJSON_GetObjectItemCaseSensitive(doc, "keyward_policy");
        if (doc == NULL || !cJSON_IsObject(doc)) {
                snprintf(err, errsz, "policy: not a JSON object");
                goto out;
        }
        if (only_members(doc, top, err, errsz, "the policy") != 0)
                goto out;
        if (!cJSON_IsNumber(ver) || ver->valuedouble != 1) {
                snprintf(err, errsz, "policy: \"keyward_policy\": 1 is required");
                goto out;
        }
        const cJSON *req = cJSON_GetObjectItemCaseSensitive(doc, "require");
        if (get_bool(doc, "tofu", &p.tofu) != 0 || !cJSON_IsObject(req) ||
            only_members(req, req_keys, err, errsz, "require") != 0 || get_bool(req, "snp", &p.require_snp) != 0 ||
            get_bool(req, "tpm", &p.require_tpm) != 0 || get_bool(req, "azure", &p.require_azure) != 0 ||
            get_bool(req, "event_log", &p.require_event_log) != 0) {
                if (err[0] == '\0')
                        snprintf(err, errsz, "policy: \"require\" must be an object of booleans");
                goto out;
        }
        const cJSON *tpm = cJSON_GetObjectItemCaseSensitive(doc, "tpm");
        if (tpm != NULL) {
                if (!cJSON_IsObject(tpm) || only_members(tpm, tpm_keys, err, errsz, "tpm") != 0)
                        goto out;
                const cJSON *pcrs = cJSON_GetObjectItemCaseSensitive(tpm, "pcrs"), *it;
                if (pcrs != NULL && !cJSON_IsObject(pcrs)) {
                        snprintf(err, errsz, "policy: tpm.pcrs must be an object");
                        goto out;
                }
                cJSON_ArrayForEach(it, pcrs) {
                        char *end = NULL;
                        long i = strtol(it->string, &end, 10);
                        if (*end != '\0' || end == it->string || i < 0 || i > 23 || (p.pcr_mask & (1u << i)) ||
                            !cJSON_IsString(it) || kwa_hex_decode(it->valuestring, p.pcrs[i], 32) != 0) {
                                snprintf(err, errsz, "policy: tpm.pcrs: \"N\": \"<64 hex>\" with N 0-23");
                                goto out;
                        }
                        p.pcr_mask |= 1u << i;
                }
                const char *ak = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tpm, "ak_sha256"));
                if (cJSON_GetObjectItemCaseSensitive(tpm, "ak_sha256") != NULL &&
                    (ak == NULL || kwa_hex_decode(ak, p.ak_sha256, 32) != 0)) {
                        snprintf(err, errsz, "policy: tpm.ak_sha256 must be 64 hex digits");
                        goto out;
                }
                p.ak_pinned = ak != NULL;
        }
        const cJSON *snp = cJSON_GetObjectItemCaseSensitive(doc, "snp");
        if (snp != NULL && parse_snp(snp, &p.snp, err, errsz) != 0)
                goto out;
        if (p.require_snp && !p.snp.set) {
                snprintf(err, errsz, "policy: require.snp needs an \"snp\" section");
                goto out;
        }
        rc = 0;
out:
        cJSON_Delete(doc);
        if (rc == 0)
                *ret = p;
        else
                kwa_policy_free(&p);
        return rc == 0 ? 0 : KWA_E_FORMAT;
}

void kwa_policy_free(struct kwa_policy *p)
{
        free(p->snp.measurements);
        p->snp.measurements = NULL;
        p->snp.n_measurements = 0;
}

int kwa_policy_from_evidence(const struct kwa_evidence *e, const char *source, char **ret)
{
        cJSON *d = cJSON_CreateObject();
        char hex[129], ts[32];
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
        cJSON_AddNumberToObject(d, "keyward_policy", 1);
        cJSON_AddBoolToObject(d, "tofu", 1);
        cJSON_AddStringToObject(d, "comment",
                                "TRUST ON FIRST USE: these values were copied from a running instance, not "
                                "computed by the image build. Replace them with the image's expected values.");
        cJSON_AddStringToObject(d, "source", source);
        cJSON_AddStringToObject(d, "created", ts);
        cJSON *req = cJSON_AddObjectToObject(d, "require");
        cJSON_AddBoolToObject(req, "snp", e->snp_present);
        cJSON_AddBoolToObject(req, "tpm", e->tpm_present);
        cJSON_AddBoolToObject(req, "azure", e->azure_present);
        cJSON_AddBoolToObject(req, "event_log", e->event_log.n > 0);
        if (e->tpm_present) {
                cJSON *tpm = cJSON_AddObjectToObject(d, "tpm");
                cJSON *pcrs = cJSON_AddObjectToObject(tpm, "pcrs");
                for (int i = 0; i < 24; i++) {
                        if (!(e->pcr_mask & (1u << i)))
                                continue;
                        char k[4];
                        snprintf(k, sizeof k, "%d", i);
                        kwa_hex_encode(e->pcrs[i], 32, hex);
                        cJSON_AddStringToObject(pcrs, k, hex);
                }
                struct kwa_tpm_pub pub;
                if (kwa_tpm_pub_parse(e->ak_public.p, e->ak_public.n, &pub) == 0) {
                        uint8_t h[32];
                        kwa_sha256(pub.area, pub.area_len, h);
                        kwa_hex_encode(h, 32, hex);
                        cJSON_AddStringToObject(tpm, "ak_sha256", hex);
                }
        }
        struct kwa_snp_report r;
        if (e->snp_present && kwa_snp_parse(e->snp_report.p, e->snp_report.n, &r) == 0) {
                cJSON *s = cJSON_AddObjectToObject(d, "snp");
                cJSON_AddBoolToObject(s, "allow_debug", 0);
                cJSON_AddNumberToObject(s, "max_vmpl", r.vmpl);
                cJSON *ms = cJSON_AddArrayToObject(s, "measurements");
                kwa_hex_encode(r.measurement, 48, hex);
                cJSON_AddItemToArray(ms, cJSON_CreateString(hex));
                struct kwa_tcb t = kwa_snp_tcb(r.reported_tcb, NULL);
                cJSON *mt = cJSON_AddObjectToObject(s, "min_tcb");
                cJSON_AddNumberToObject(mt, "bootloader", t.bootloader);
                cJSON_AddNumberToObject(mt, "tee", t.tee);
                cJSON_AddNumberToObject(mt, "snp", t.snp);
                cJSON_AddNumberToObject(mt, "microcode", t.microcode);
                cJSON_AddNumberToObject(s, "min_guest_svn", r.guest_svn);
        }
        char *out = cJSON_Print(d);
        cJSON_Delete(d);
        if (out == NULL)
                return KWA_E_NOMEM;
        *ret = out;
        return 0;
}
