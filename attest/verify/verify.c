/*
 * verify.c - every check of an evidence document against a policy, for the
 * nonce we sent and the certificate of our own TLS session.  The checks of
 * a piece the server sent are always required (a broken piece is a
 * failure); the policy's require.* decides whether an absent piece fails.
 */
#include <stdio.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/constant_time.h>

#include <cJSON.h>

#include "kwa.h"

#define TPMA_FIXEDTPM 0x00000002u
#define TPMA_FIXEDPARENT 0x00000010u
#define TPMA_RESTRICTED 0x00010000u
#define TPMA_DECRYPT 0x00020000u
#define TPMA_SIGN 0x00040000u

static void verify_tpm(const struct kwa_verify_in *in, const uint8_t bind[32], struct kwa_checks *cs,
                       struct kwa_tpm_pub *ret_pub, int *ret_pub_ok)
{
        const struct kwa_evidence *ev = in->ev;
        const struct kwa_policy *pol = in->pol;
        struct kwa_tpm_pub pub;
        struct kwa_tpm_attest at;
        struct kwa_tpm_sig sig;
        if (kwa_tpm_pub_parse(ev->ak_public.p, ev->ak_public.n, &pub) != 0) {
                kwa_check(cs, "tpm.ak_public", 1, KWA_FAIL, "not a TPM2B_PUBLIC (RSA or ECC)");
                return;
        }
        *ret_pub = pub;
        *ret_pub_ok = 1;
        uint32_t need = TPMA_RESTRICTED | TPMA_SIGN | TPMA_FIXEDTPM | TPMA_FIXEDPARENT;
        int attrs_ok = (pub.attrs & need) == need && !(pub.attrs & TPMA_DECRYPT);
        kwa_check(cs, "tpm.ak_attributes", 1, attrs_ok ? KWA_PASS : KWA_FAIL,
                  "0x%08x %s", pub.attrs, attrs_ok ? "restricted|sign|fixedTPM|fixedParent"
                                                   : "is not a restricted, fixed signing key");
        uint8_t akh[32];
        kwa_sha256(pub.area, pub.area_len, akh);
        char hex[65];
        kwa_hex_encode(akh, 32, hex);
        if (pol->ak_pinned) {
                int ok = mbedtls_ct_memcmp(akh, pol->ak_sha256, 32) == 0;
                kwa_check(cs, "tpm.ak_pinned", 1, ok ? KWA_PASS : KWA_FAIL, "AK sha256 %s %s", hex,
                          ok ? "== policy" : "is NOT the policy's AK");
        } else if (!ev->azure_present) {
                kwa_check(cs, "tpm.ak_pinned", 1, KWA_FAIL,
                          "AK sha256 %s: the policy pins no AK and no HCL report vouches for it", hex);
        }
        if (kwa_tpm_attest_parse(ev->quote.p, ev->quote.n, &at) != 0) {
                /* magic/type are checked by the parser's caller below when it parses */
                struct kwa_rd r = kwa_rd_init(ev->quote.p, ev->quote.n);
                uint32_t magic = 0;
                uint16_t type = 0;
                int hdr = kwa_rd_u32be(&r, &magic) == 0 && kwa_rd_u16be(&r, &type) == 0;
                kwa_check(cs, "tpm.quote", 1, KWA_FAIL, "not a TPMS_ATTEST quote%s",
                          hdr && type != 0x8018 ? " (type is not TPM_ST_ATTEST_QUOTE)" : "");
                return;
        }
        if (kwa_tpm_sig_parse(ev->signature.p, ev->signature.n, &sig) != 0) {
                kwa_check(cs, "tpm.signature", 1, KWA_FAIL, "not a TPMT_SIGNATURE");
                return;
        }
        int sig_ok = kwa_tpm_sig_verify(&pub, &sig, ev->quote.p, ev->quote.n) == 0;
        kwa_check(cs, "tpm.signature", 1, sig_ok ? KWA_PASS : KWA_FAIL, "%s",
                  sig_ok ? "the quote is signed by the AK" : "the quote signature does not verify with the AK");
        kwa_check(cs, "tpm.magic", 1, at.magic == 0xFF544347u ? KWA_PASS : KWA_FAIL, "0x%08x", at.magic);
        kwa_check(cs, "tpm.type", 1, at.type == 0x8018 ? KWA_PASS : KWA_FAIL, "0x%04x (quote)", at.type);
        int ed_ok = at.extra_len == 32 && mbedtls_ct_memcmp(at.extra, bind, 32) == 0;
        kwa_check(cs, "tpm.extra_data", 1, ed_ok ? KWA_PASS : KWA_FAIL, "%s",
                  ed_ok ? "== binding(nonce, TLS key)" : "does not carry this session's binding");
        uint32_t sel = 0;
        for (unsigned i = 0; i < 24 && i / 8 < at.sel_size; i++)
                if (at.sel[i / 8] & (1u << (i % 8)))
                        sel |= 1u << i;
        int sel_ok = at.sel_count == 1 && at.sel_hash == 0x000B && sel == ev->pcr_mask &&
                     (pol->pcr_mask & ~sel) == 0;
        kwa_check(cs, "tpm.pcr_selection", 1, sel_ok ? KWA_PASS : KWA_FAIL,
                  "quoted sha256 PCR mask 0x%06x; values given 0x%06x; policy 0x%06x", sel, ev->pcr_mask,
                  pol->pcr_mask);
        uint8_t cat[24 * 32], dg[32];
        size_t cl = 0;
        for (unsigned i = 0; i < 24; i++)
                if (sel & (1u << i)) {
                        memcpy(cat + cl, ev->pcrs[i], 32);
                        cl += 32;
                }
        kwa_sha256(cat, cl, dg);
        int dg_ok = at.pcr_digest_len == 32 && mbedtls_ct_memcmp(dg, at.pcr_digest, 32) == 0;
        kwa_check(cs, "tpm.pcr_digest", 1, dg_ok ? KWA_PASS : KWA_FAIL, "%s",
                  dg_ok ? "== H(quoted PCR values)" : "the PCR values do not hash to the quoted digest");
        char bad[200] = "";
        size_t bl = 0;
        for (unsigned i = 0; i < 24; i++)
                if ((pol->pcr_mask & (1u << i)) && memcmp(pol->pcrs[i], ev->pcrs[i], 32) != 0 && bl < 180)
                        bl += (size_t)snprintf(bad + bl, sizeof bad - bl, " %u", i);
        if (pol->pcr_mask != 0)
                kwa_check(cs, "tpm.pcrs_policy", 1, bad[0] ? KWA_FAIL : KWA_PASS, "%s%s",
                          bad[0] ? "PCRs differ from the policy:" : "PCR values == policy", bad);
        else
                kwa_check(cs, "tpm.pcrs_policy", 1, KWA_SKIP, "the policy lists no PCR values");
        if (ev->event_log.n == 0) {
                kwa_check(cs, "tpm.event_log", pol->require_event_log, pol->require_event_log ? KWA_FAIL : KWA_SKIP,
                          "no event log in the evidence");
                return;
        }
        uint8_t rep[24][32];
        uint32_t seen = 0;
        size_t nev = 0;
        if (kwa_eventlog_replay(ev->event_log.p, ev->event_log.n, rep, &seen, &nev) != 0) {
                kwa_check(cs, "tpm.event_log", 1, KWA_FAIL, "not a TCG crypto-agile event log with a SHA-256 bank");
                return;
        }
        bad[0] = '\0';
        bl = 0;
        for (unsigned i = 0; i < 24; i++)
                if ((sel & (1u << i)) && (seen & (1u << i)) && memcmp(rep[i], ev->pcrs[i], 32) != 0 && bl < 180)
                        bl += (size_t)snprintf(bad + bl, sizeof bad - bl, " %u", i);
        kwa_check(cs, "tpm.event_log", 1, bad[0] ? KWA_FAIL : KWA_PASS, "%zu events; %s%s", nev,
                  bad[0] ? "replay differs for PCRs" : "replay == quoted PCRs", bad);
}

/* HCLAkPub (RSA JWK) of the runtime JSON == the quoting AK. */
static int hcl_ak_matches(const uint8_t *json, size_t len, const struct kwa_tpm_pub *pub)
{
        cJSON *d = cJSON_ParseWithLength((const char *)json, len);
        const cJSON *keys = cJSON_GetObjectItemCaseSensitive(d, "keys"), *k;
        int ok = 0;
        cJSON_ArrayForEach(k, keys) {
                const char *kid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(k, "kid"));
                const char *n = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(k, "n"));
                if (kid == NULL || n == NULL || strcmp(kid, "HCLAkPub") != 0 || pub->type != 0x0001)
                        continue;
                char b64[1100];
                size_t l = strlen(n), o = 0;
                if (l >= sizeof b64 - 4)
                        break;
                for (size_t i = 0; i < l; i++)   /* base64url -> base64 */
                        b64[o++] = n[i] == '-' ? '+' : n[i] == '_' ? '/' : n[i];
                while (o % 4)
                        b64[o++] = '=';
                uint8_t mod[600];
                size_t ml = 0;
                if (mbedtls_base64_decode(mod, sizeof mod, &ml, (const unsigned char *)b64, o) == 0)
                        ok = ml == pub->n_len && memcmp(mod, pub->n, ml) == 0;   /* lint: allow (public) */
                break;
        }
        cJSON_Delete(d);
        return ok;
}

void kwa_verify(const struct kwa_verify_in *in, struct kwa_checks *cs)
{
        const struct kwa_evidence *ev = in->ev;
        const struct kwa_policy *pol = in->pol;
        uint8_t bind[32], rd[64] = { 0 };
        kwa_binding(in->nonce, in->spki_sha256, bind);
        memcpy(rd, bind, 32);
        int n_ok = mbedtls_ct_memcmp(ev->nonce, in->nonce, 32) == 0;
        kwa_check(cs, "evidence.nonce", 1, n_ok ? KWA_PASS : KWA_FAIL, "%s",
                  n_ok ? "the evidence answers our fresh nonce" : "the evidence answers another nonce");
        int k_ok = mbedtls_ct_memcmp(ev->spki, in->spki_sha256, 32) == 0;
        kwa_check(cs, "evidence.tls_key", 1, k_ok ? KWA_PASS : KWA_FAIL, "%s",
                  k_ok ? "the server names the key of our TLS session"
                       : "the server names another TLS key than the one of our session");
        if (pol->tofu)
                kwa_check(cs, "policy.tofu", 0, KWA_FAIL,
                          "the policy is TRUST ON FIRST USE (copied from an instance, not from the image build)");

        if (ev->snp_present)
                kwa_snp_verify(cs, ev->snp_report.p, ev->snp_report.n, ev->vcek.p, ev->vcek.n, in->anchors,
                               in->at, rd, &pol->snp, "", 1);
        else
                kwa_check(cs, "snp.present", pol->require_snp, pol->require_snp ? KWA_FAIL : KWA_SKIP,
                          "absent: %s", ev->snp_absent);

        struct kwa_tpm_pub pub;
        memset(&pub, 0, sizeof pub);
        int pub_ok = 0;
        if (ev->tpm_present)
                verify_tpm(in, bind, cs, &pub, &pub_ok);
        else
                kwa_check(cs, "tpm.present", pol->require_tpm, pol->require_tpm ? KWA_FAIL : KWA_SKIP,
                          "absent: %s", ev->tpm_absent);

        if (!ev->azure_present) {
                kwa_check(cs, "azure.present", pol->require_azure, pol->require_azure ? KWA_FAIL : KWA_SKIP,
                          "absent: %s", ev->azure_absent);
                return;
        }
        struct kwa_hcl h;
        if (kwa_hcl_parse(ev->hcl.p, ev->hcl.n, &h) != 0) {
                kwa_check(cs, "azure.hcl", 1, KWA_FAIL, "not an HCL report");
                return;
        }
        kwa_snp_verify(cs, h.report, h.report_len, ev->vcek.p, ev->vcek.n, in->anchors, in->at, NULL,
                       ev->snp_present ? NULL : &pol->snp, "azure.", 1);
        struct kwa_snp_report r;
        uint8_t jh[32];
        kwa_sha256(h.json, h.json_len, jh);
        int j_ok = kwa_snp_parse(h.report, h.report_len, &r) == 0 && mbedtls_ct_memcmp(jh, r.report_data, 32) == 0;
        kwa_check(cs, "azure.runtime_data", 1, j_ok ? KWA_PASS : KWA_FAIL, "%s",
                  j_ok ? "SHA-256(runtime JSON) == report_data[0:32]" : "the runtime JSON is not the one the report signs");
        int ak_ok = pub_ok && hcl_ak_matches(h.json, h.json_len, &pub);
        kwa_check(cs, "azure.ak", 1, ak_ok ? KWA_PASS : KWA_FAIL, "%s",
                  ak_ok ? "HCLAkPub == the quoting AK" : "HCLAkPub is not the key that signed the quote");
}
