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
#define POLICY_MAX_CMDLINE 4096
#define POLICY_MAX_PHASE 128

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

/* A hash member: absent (0, *has untouched), or 64 hex digits (*has = 1). */
static int get_hash(const cJSON *o, const char *name, uint8_t out[32], int *has)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
        if (v == NULL)
                return 0;
        if (!cJSON_IsString(v) || kwa_hex_decode(v->valuestring, out, 32) != 0)
                return -1;
        *has = 1;
        return 0;
}

/* Printable ASCII (a command line, a version). */
static int printable(const char *s, size_t max)
{
        size_t n = 0;
        for (; s[n] != '\0'; n++)
                if (n >= max || (unsigned char)s[n] < 0x20 || (unsigned char)s[n] > 0x7e)
                        return 0;
        return 1;
}

/* pcr11: {"<phase>": "<64 hex>", ...}; a phase is "" or systemd-pcrphase
 * words ([a-z0-9-]) joined by ':'. */
static int parse_pcr11(const cJSON *m, struct kwa_image_policy *im, char *err, size_t errsz)
{
        const cJSON *it, *prev;
        if (!cJSON_IsObject(m))
                goto bad;
        cJSON_ArrayForEach(it, m) {
                uint8_t h[32];
                const char *k = it->string;
                if (k == NULL || strlen(k) > POLICY_MAX_PHASE || strspn(k, "abcdefghijklmnopqrstuvwxyz0123456789-:") !=
                    strlen(k) || !cJSON_IsString(it) || kwa_hex_decode(it->valuestring, h, 32) != 0 ||
                    im->n_pcr11 == KWA_IMAGE_MAX_PHASES)
                        goto bad;
                for (prev = m->child; prev != it; prev = prev->next)
                        if (strcmp(prev->string, k) == 0) {
                                snprintf(err, errsz, "policy: image.pcr11: the phase \"%.40s\" is given twice", k);
                                return -1;
                        }
                im->n_pcr11++;
        }
        if (im->n_pcr11 == 0)
                goto bad;
        return 0;
bad:
        snprintf(err, errsz, "policy: image.pcr11 must map 1-%d phases (\"\", \"sysinit\", \"sysinit:ready\", ...) "
                             "to 64 hex digits", KWA_IMAGE_MAX_PHASES);
        return -1;
}

/* The "image" member (what the image build computed).  version,
 * verity_root_hash, cmdline, uki_sha256 and pcr11 are required; the other
 * hashes are checked for form when present; pcr_signature (systemd-measure's
 * JSON) must be an object and is otherwise kept opaque. */
static int parse_image(const cJSON *o, struct kwa_image_policy *im, char *err, size_t errsz)
{
        static const char *const keys[] = { "version", "verity_root_hash", "cmdline", "uki_sha256",
                                            "uki_authenticode_sha256", "kernel_authenticode_sha256", "pcr11",
                                            "pcr_public_key_sha256",
                                            "pcr_signature", "manifest_sha256", NULL };
        if (!cJSON_IsObject(o)) {
                snprintf(err, errsz, "policy: \"image\" must be an object");
                return -1;
        }
        if (only_members(o, keys, err, errsz, "image") != 0)
                return -1;
        const char *ver = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "version"));
        if (ver == NULL || ver[0] == '\0' || strlen(ver) >= sizeof im->version || !printable(ver, sizeof im->version)) {
                snprintf(err, errsz, "policy: image.version must be a short printable string");
                return -1;
        }
        snprintf(im->version, sizeof im->version, "%s", ver);
        const char *cmd = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "cmdline"));
        if (cmd == NULL || cmd[0] == '\0' || !printable(cmd, POLICY_MAX_CMDLINE)) {
                snprintf(err, errsz, "policy: image.cmdline must be the kernel command line (printable, "
                                     "at most %d characters)", POLICY_MAX_CMDLINE);
                return -1;
        }
        static const char *const required[] = { "verity_root_hash", "uki_sha256", NULL };
        uint8_t *req_out[] = { im->verity_root_hash, im->uki_sha256 };
        for (size_t i = 0; required[i] != NULL; i++) {
                int has = 0;
                if (get_hash(o, required[i], req_out[i], &has) != 0 || !has) {
                        snprintf(err, errsz, "policy: image.%s must be 64 hex digits", required[i]);
                        return -1;
                }
        }
        static const char *const optional[] = { "uki_authenticode_sha256", "kernel_authenticode_sha256",
                                                "pcr_public_key_sha256", "manifest_sha256", NULL };
        uint8_t *opt_out[] = { im->uki_authenticode_sha256, im->kernel_authenticode_sha256,
                               im->pcr_public_key_sha256, im->manifest_sha256 };
        int *opt_has[] = { &im->has_authenticode, &im->has_kernel_authenticode, &im->has_pcr_key,
                           &im->has_manifest };
        for (size_t i = 0; optional[i] != NULL; i++)
                if (get_hash(o, optional[i], opt_out[i], opt_has[i]) != 0) {
                        snprintf(err, errsz, "policy: image.%s must be 64 hex digits", optional[i]);
                        return -1;
                }
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "pcr11");
        if (parse_pcr11(m, im, err, errsz) != 0)
                return -1;
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(o, "pcr_signature");
        if (ps != NULL && !cJSON_IsObject(ps)) {
                snprintf(err, errsz, "policy: image.pcr_signature must be an object (systemd-measure sign's JSON)");
                return -1;
        }
        im->has_pcr_signature = ps != NULL;
        im->set = 1;
        return 0;
}

int kwa_policy_parse(const char *json, size_t len, struct kwa_policy *ret, char *err, size_t errsz)
{
        static const char *const top[] = { "keyward_policy", "tofu", "comment", "source", "created",
                                           "require", "tpm", "snp", "image", NULL };
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
        const cJSON *image = cJSON_GetObjectItemCaseSensitive(doc, "image");
        if (image != NULL && parse_image(image, &p.image, err, errsz) != 0)
                goto out;
        if (p.image.set && p.tofu) {
                snprintf(err, errsz, "policy: an image policy (\"image\") cannot be \"tofu\": true");
                goto out;
        }
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
