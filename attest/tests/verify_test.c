/*
 * verify_test.c - the verifier against the real Milan report and VCEK of
 * ../shared/vectors/sev-snp (pinned time; its VCEK expires in 2029), single
 * bit flips in each signed part, the TPM/event-log/policy parsers, and the
 * policy file's signature (RSA keys made here with mbedTLS).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>

#include "kwa.h"

#define PINNED 1704067200 /* 2024-01-01T00:00:00Z */

static uint8_t *report, *vcek;
static size_t report_len, vcek_len;

static int load_vectors(void **state)
{
        (void)state;
        const char *src = getenv("KW_SRCDIR");
        char p[1024];
        snprintf(p, sizeof p, "%s/../shared/vectors/sev-snp/attestation.bin", src ? src : ".");
        if (kwa_read_file(p, 1 << 20, &report, &report_len) != 0)
                return -1;
        snprintf(p, sizeof p, "%s/../shared/vectors/sev-snp/vcek.der", src ? src : ".");
        return kwa_read_file(p, 1 << 20, &vcek, &vcek_len);
}

static int free_vectors(void **state)
{
        (void)state;
        free(report);
        free(vcek);
        return 0;
}

static enum kwa_status status_of(const struct kwa_checks *cs, const char *name)
{
        const struct kwa_check *c = kwa_check_find(cs, name);
        return c ? c->status : 0;
}

static void run(struct kwa_checks *cs, const uint8_t *r, const uint8_t *v, size_t vl,
                const struct kwa_snp_anchor *anchors, time_t at, const struct kwa_snp_policy *pol)
{
        memset(cs, 0, sizeof *cs);
        kwa_snp_verify(cs, r, KWA_SNP_REPORT_LEN, v, vl, anchors, at, NULL, pol, "", 1);
}

static void snp_verify_milan_vector_passes(void **state)
{
        (void)state;
        static struct kwa_checks cs;
        run(&cs, report, vcek, vcek_len, kwa_amd_anchors, PINNED, NULL);
        const char *names[] = { "snp.report", "snp.ark", "snp.ask", "snp.vcek", "snp.chip_id", "snp.tcb",
                                "snp.signature" };
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
                assert_int_equal(status_of(&cs, names[i]), KWA_PASS);
        assert_true(kwa_checks_ok(&cs));
}

static void snp_verify_strict_policy_rejects_debug(void **state)
{
        (void)state;
        static struct kwa_checks cs;
        struct kwa_snp_policy pol;
        memset(&pol, 0, sizeof pol);
        pol.set = 1;
        pol.max_vmpl = 0;
        run(&cs, report, vcek, vcek_len, kwa_amd_anchors, PINNED, &pol);
        assert_int_equal(status_of(&cs, "snp.signature"), KWA_PASS);
        assert_int_equal(status_of(&cs, "snp.debug"), KWA_FAIL);
        assert_false(kwa_checks_ok(&cs));
        pol.allow_debug = 1;
        run(&cs, report, vcek, vcek_len, kwa_amd_anchors, PINNED, &pol);
        assert_true(kwa_checks_ok(&cs));
}

static void snp_verify_policy_measurement_and_tcb(void **state)
{
        (void)state;
        static struct kwa_checks cs;
        uint8_t m[1][48];
        memset(m, 0xAB, sizeof m);
        struct kwa_snp_policy pol;
        memset(&pol, 0, sizeof pol);
        pol.set = pol.allow_debug = 1;
        pol.measurements = m;
        pol.n_measurements = 1;
        pol.min_tcb.snp = 6;   /* the report has snp=5 */
        run(&cs, report, vcek, vcek_len, kwa_amd_anchors, PINNED, &pol);
        assert_int_equal(status_of(&cs, "snp.measurement"), KWA_FAIL);
        assert_int_equal(status_of(&cs, "snp.min_tcb"), KWA_FAIL);
        memcpy(m[0], report + 0x90, 48);
        pol.min_tcb.snp = 5;
        run(&cs, report, vcek, vcek_len, kwa_amd_anchors, PINNED, &pol);
        assert_int_equal(status_of(&cs, "snp.measurement"), KWA_PASS);
        assert_int_equal(status_of(&cs, "snp.min_tcb"), KWA_PASS);
}

static void snp_verify_bit_flip_in_signed_region_fails_signature(void **state)
{
        (void)state;
        static struct kwa_checks cs;
        uint8_t r[KWA_SNP_REPORT_LEN];
        size_t offs[] = { 0x008, 0x050, 0x090, 0x100, 0x29F };
        for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
                memcpy(r, report, sizeof r);
                r[offs[i]] ^= 0x01;
                run(&cs, r, vcek, vcek_len, kwa_amd_anchors, PINNED, NULL);
                assert_int_equal(status_of(&cs, "snp.vcek"), KWA_PASS);
                assert_int_equal(status_of(&cs, "snp.signature"), KWA_FAIL);
                assert_false(kwa_checks_ok(&cs));
        }
        /* chip_id is signed too, and must also match the VCEK */
        memcpy(r, report, sizeof r);
        r[0x1A0] ^= 0x80;
        run(&cs, r, vcek, vcek_len, kwa_amd_anchors, PINNED, NULL);
        assert_int_equal(status_of(&cs, "snp.chip_id"), KWA_FAIL);
        assert_int_equal(status_of(&cs, "snp.signature"), KWA_FAIL);
}

static void snp_verify_bit_flip_in_signature_fails(void **state)
{
        (void)state;
        static struct kwa_checks cs;
        uint8_t r[KWA_SNP_REPORT_LEN];
        size_t offs[] = { 0x2A0, 0x2C0, 0x2E8, 0x310 };
        for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
                memcpy(r, report, sizeof r);
                r[offs[i]] ^= 0x04;
                run(&cs, r, vcek, vcek_len, kwa_amd_anchors, PINNED, NULL);
                assert_int_equal(status_of(&cs, "snp.signature"), KWA_FAIL);
                assert_int_equal(status_of(&cs, "snp.chip_id"), KWA_PASS);
        }
}

static void snp_verify_bit_flip_in_vcek_fails_vcek(void **state)
{
        (void)state;
        static struct kwa_checks cs;
        uint8_t *v = malloc(vcek_len);
        assert_non_null(v);
        size_t offs[] = { vcek_len - 1, vcek_len - 100, 20, 300 };   /* signature, signature, tbs, tbs */
        for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
                memcpy(v, vcek, vcek_len);
                v[offs[i]] ^= 0x01;
                run(&cs, report, v, vcek_len, kwa_amd_anchors, PINNED, NULL);
                assert_int_equal(status_of(&cs, "snp.vcek"), KWA_FAIL);
                assert_false(kwa_checks_ok(&cs));
        }
        free(v);
}

static void snp_verify_bit_flip_in_ask_fails_ask(void **state)
{
        (void)state;
        static struct kwa_checks cs;
        const struct kwa_snp_anchor *milan = &kwa_amd_anchors[0];
        assert_string_equal(milan->product, "milan");
        char *ask = strdup(milan->ask_pem);
        assert_non_null(ask);
        /* a base64 character in the ASK's signature (just before the END line) */
        char *end = strstr(ask, "-----END");
        assert_non_null(end);
        char *c = end - 10;
        while (*c == '\n' || *c == '=')
                c--;
        *c = *c == 'A' ? 'B' : 'A';
        struct kwa_snp_anchor a[2] = { { "milan", milan->ark_pem, ask }, { NULL, NULL, NULL } };
        run(&cs, report, vcek, vcek_len, a, PINNED, NULL);
        assert_int_equal(status_of(&cs, "snp.ask"), KWA_FAIL);
        assert_int_equal(status_of(&cs, "snp.ark"), KWA_PASS);
        assert_false(kwa_checks_ok(&cs));
        free(ask);
}

static void snp_verify_out_of_date_fails_vcek(void **state)
{
        (void)state;
        static struct kwa_checks cs;
        run(&cs, report, vcek, vcek_len, kwa_amd_anchors, 1956528000 /* 2032 */, NULL);
        assert_int_equal(status_of(&cs, "snp.vcek"), KWA_FAIL);
        run(&cs, report, vcek, vcek_len, kwa_amd_anchors, 1600000000 /* 2020, before issue */, NULL);
        assert_int_equal(status_of(&cs, "snp.vcek"), KWA_FAIL);
}

static void snp_parse_rejects_wrong_length(void **state)
{
        (void)state;
        struct kwa_snp_report r;
        r.version = 77;
        assert_int_equal(kwa_snp_parse(report, KWA_SNP_REPORT_LEN - 1, &r), KWA_E_TRUNC);
        assert_int_equal(r.version, 77);
        assert_int_equal(kwa_snp_parse(report, KWA_SNP_REPORT_LEN, &r), 0);
        assert_int_equal(r.version, 2);
        assert_true((r.policy & KWA_SNP_POLICY_DEBUG) != 0);
}

static void tpm_parsers_reject_truncated_and_trailing(void **state)
{
        (void)state;
        /* TPMS_ATTEST of a quote: magic, type, signer(0), extra(2), clock info, fw, 1 sel, digest(32) */
        uint8_t q[128];
        size_t n = 0;
        const uint8_t head[] = { 0xFF, 0x54, 0x43, 0x47, 0x80, 0x18, 0x00, 0x00, 0x00, 0x02, 0xAA, 0xBB };
        memcpy(q, head, sizeof head);
        n = sizeof head;
        memset(q + n, 0, 17 + 8);
        n += 17 + 8;
        const uint8_t sel[] = { 0, 0, 0, 1, 0x00, 0x0B, 3, 0x81, 0x00, 0x00, 0x00, 0x20 };
        memcpy(q + n, sel, sizeof sel);
        n += sizeof sel;
        memset(q + n, 0x5A, 32);
        n += 32;
        struct kwa_tpm_attest a;
        assert_int_equal(kwa_tpm_attest_parse(q, n, &a), 0);
        assert_int_equal(a.magic, 0xFF544347u);
        assert_int_equal(a.extra_len, 2);
        assert_int_equal(a.sel[0], 0x81);
        for (size_t k = 0; k < n; k++)
                assert_int_not_equal(kwa_tpm_attest_parse(q, k, &a), 0);
        q[n] = 0;
        assert_int_equal(kwa_tpm_attest_parse(q, n + 1, &a), KWA_E_FORMAT);
        q[5] = 0x17;   /* TPM_ST_ATTEST_CERTIFY: not a quote */
        assert_int_equal(kwa_tpm_attest_parse(q, n, &a), KWA_E_FORMAT);
        struct kwa_tpm_sig s;
        const uint8_t sig[] = { 0x00, 0x18, 0x00, 0x0B, 0x00, 0x01, 0x07, 0x00, 0x01, 0x09 };
        assert_int_equal(kwa_tpm_sig_parse(sig, sizeof sig, &s), 0);
        assert_int_equal(s.r_len, 1);
        assert_int_not_equal(kwa_tpm_sig_parse(sig, sizeof sig - 1, &s), 0);
        struct kwa_tpm_pub p;
        const uint8_t bad_pub[] = { 0x00, 0x04, 0x00, 0x23, 0x00, 0x0B };
        assert_int_not_equal(kwa_tpm_pub_parse(bad_pub, sizeof bad_pub, &p), 0);
}

static void eventlog_replay_matches_manual_extend(void **state)
{
        (void)state;
        uint8_t log[512];
        size_t n = 0;
#define PUT32(v) do { uint32_t v_ = (v); for (int i_ = 0; i_ < 4; i_++) log[n++] = (uint8_t)(v_ >> (8 * i_)); } while (0)
#define PUT16(v) do { log[n++] = (uint8_t)(v); log[n++] = (uint8_t)((v) >> 8); } while (0)
        PUT32(0); PUT32(3); memset(log + n, 0, 20); n += 20;
        PUT32(16 + 8 + 4 + 4 + 1);
        memcpy(log + n, "Spec ID Event03", 16); n += 16;
        memset(log + n, 0, 8); n += 8;
        PUT32(1); PUT16(0x000B); PUT16(32); log[n++] = 0;
        uint8_t d[32];
        memset(d, 0x11, 32);
        PUT32(7); PUT32(0x80000001); PUT32(1); PUT16(0x000B); memcpy(log + n, d, 32); n += 32; PUT32(2);
        log[n++] = 'h'; log[n++] = 'i';
        uint8_t pcrs[24][32], want[32], m[64];
        uint32_t seen = 0;
        size_t events = 0;
        assert_int_equal(kwa_eventlog_replay(log, n, pcrs, &seen, &events), 0);
        memset(m, 0, 32);
        memcpy(m + 32, d, 32);
        kwa_sha256(m, 64, want);
        assert_memory_equal(pcrs[7], want, 32);
        assert_int_equal(seen, 1u << 7);
        assert_int_equal(events, 1);
        assert_int_not_equal(kwa_eventlog_replay(log, n - 1, pcrs, &seen, &events), 0);
}

static void policy_parse_rejects_unknown_member(void **state)
{
        (void)state;
        struct kwa_policy p;
        char err[200] = "";
        const char *bad = "{\"keyward_policy\":1,\"require\":{\"tpm\":true},\"snp\":{\"allow_debugg\":true}}";
        assert_int_not_equal(kwa_policy_parse(bad, strlen(bad), &p, err, sizeof err), 0);
        assert_non_null(strstr(err, "allow_debugg"));
        const char *ok = "{\"keyward_policy\":1,\"require\":{\"tpm\":true},\"tpm\":{\"pcrs\":{\"7\":"
                         "\"0000000000000000000000000000000000000000000000000000000000000000\"}}}";
        assert_int_equal(kwa_policy_parse(ok, strlen(ok), &p, err, sizeof err), 0);
        assert_int_equal(p.pcr_mask, 1u << 7);
        assert_true(p.require_tpm);
        kwa_policy_free(&p);
}

/* ---- the policy's signature (policysig.c) and the "image" member ---- */

#define HEX64 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define IMAGE_POLICY                                                                                          \
        "{\"keyward_policy\":1,\"tofu\":false,\"comment\":\"c\",\"source\":\"image build\","                 \
        "\"created\":\"2026-01-01T00:00:00Z\",\"require\":{\"snp\":false,\"tpm\":true,\"azure\":false,"       \
        "\"event_log\":true},\"tpm\":{\"pcrs\":{\"4\":\"" HEX64 "\",\"11\":\"" HEX64 "\"}},"                   \
        "\"image\":{\"version\":\"0.1.0\",\"verity_root_hash\":\"" HEX64 "\",\"cmdline\":\"roothash=x ro\","  \
        "\"uki_sha256\":\"" HEX64 "\",\"uki_authenticode_sha256\":\"" HEX64 "\",\"pcr11\":{\"\":\"" HEX64     \
        "\",\"sysinit\":\"" HEX64 "\",\"sysinit:ready\":\"" HEX64 "\"},\"pcr_public_key_sha256\":\"" HEX64    \
        "\",\"pcr_signature\":{\"sha256\":[{\"pcrs\":[11],\"pkfp\":\"ab\",\"pol\":\"cd\",\"sig\":\"ef\"}]},"  \
        "\"manifest_sha256\":\"" HEX64 "\"}}"

struct signer {
        mbedtls_pk_context pk;
        uint8_t pem[2048];
        size_t pem_len;
};
static struct signer key_a, key_b;
static mbedtls_entropy_context ent;
static mbedtls_ctr_drbg_context drbg;

static void signer_make(struct signer *s)
{
        mbedtls_pk_init(&s->pk);
        assert_int_equal(mbedtls_pk_setup(&s->pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)), 0);
        assert_int_equal(mbedtls_rsa_gen_key(mbedtls_pk_rsa(s->pk), mbedtls_ctr_drbg_random, &drbg, 2048, 65537), 0);
        assert_int_equal(mbedtls_pk_write_pubkey_pem(&s->pk, s->pem, sizeof s->pem), 0);
        s->pem_len = strlen((const char *)s->pem);
}

static int signers_setup(void **state)
{
        (void)state;
        mbedtls_entropy_init(&ent);
        mbedtls_ctr_drbg_init(&drbg);
        if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent, (const unsigned char *)"t", 1) != 0)
                return -1;
        signer_make(&key_a);
        signer_make(&key_b);
        return 0;
}

static int signers_teardown(void **state)
{
        (void)state;
        mbedtls_pk_free(&key_a.pk);
        mbedtls_pk_free(&key_b.pk);
        mbedtls_ctr_drbg_free(&drbg);
        mbedtls_entropy_free(&ent);
        return 0;
}

/* RSA PKCS#1 v1.5 SHA-256 over doc, as `openssl dgst -sha256 -sign` makes it. */
static size_t sign(struct signer *s, const char *doc, size_t n, uint8_t sig[512])
{
        uint8_t h[32];
        size_t sl = 0;
        kwa_sha256(doc, n, h);
        assert_int_equal(mbedtls_pk_sign(&s->pk, MBEDTLS_MD_SHA256, h, 32, sig, &sl, mbedtls_ctr_drbg_random, &drbg), 0);
        return sl;
}

static void policy_sig_verify_good_signature_passes(void **state)
{
        (void)state;
        uint8_t sig[512], kh[32] = { 0 }, zero[32] = { 0 };
        char err[300] = "";
        size_t sl = sign(&key_a, IMAGE_POLICY, strlen(IMAGE_POLICY), sig);
        assert_int_equal(kwa_policy_sig_verify(key_a.pem, key_a.pem_len, (const uint8_t *)IMAGE_POLICY,
                                               strlen(IMAGE_POLICY), sig, sl, kh, err, sizeof err), 0);
        assert_memory_not_equal(kh, zero, 32);   /* the key's SPKI hash */
}

static void policy_sig_verify_flipped_byte_in_file_fails(void **state)
{
        (void)state;
        uint8_t sig[512], kh[32] = { 0 }, zero[32] = { 0 };
        char err[300] = "", doc[sizeof IMAGE_POLICY];
        memcpy(doc, IMAGE_POLICY, sizeof doc);
        size_t n = strlen(doc), sl = sign(&key_a, doc, n, sig);
        for (size_t at = 0; at < n; at += n / 7 + 1) {
                doc[at] ^= 0x01;
                assert_int_equal(kwa_policy_sig_verify(key_a.pem, key_a.pem_len, (const uint8_t *)doc, n, sig, sl, kh,
                                                       err, sizeof err), KWA_E_CRYPTO);
                doc[at] ^= 0x01;
        }
        /* a byte added at the end (a newline) is another file too */
        doc[n] = '\n';
        assert_int_equal(kwa_policy_sig_verify(key_a.pem, key_a.pem_len, (const uint8_t *)doc, n + 1, sig, sl, kh,
                                               err, sizeof err), KWA_E_CRYPTO);
        assert_non_null(strstr(err, "does not verify"));
        assert_memory_equal(kh, zero, 32);   /* untouched on failure */
}

static void policy_sig_verify_wrong_key_fails(void **state)
{
        (void)state;
        uint8_t sig[512], kh[32];
        char err[300] = "";
        size_t n = strlen(IMAGE_POLICY), sl = sign(&key_b, IMAGE_POLICY, n, sig);
        assert_int_equal(kwa_policy_sig_verify(key_a.pem, key_a.pem_len, (const uint8_t *)IMAGE_POLICY, n, sig, sl,
                                               kh, err, sizeof err), KWA_E_CRYPTO);
        /* and not a key at all, or an EC key */
        const char *junk = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert_int_equal(kwa_policy_sig_verify((const uint8_t *)junk, strlen(junk), (const uint8_t *)IMAGE_POLICY, n,
                                               sig, sl, kh, err, sizeof err), KWA_E_FORMAT);
}

static void policy_sig_verify_missing_or_cut_signature_fails(void **state)
{
        (void)state;
        uint8_t sig[512], kh[32];
        char err[300] = "";
        size_t n = strlen(IMAGE_POLICY), sl = sign(&key_a, IMAGE_POLICY, n, sig);
        assert_int_equal(kwa_policy_sig_verify(key_a.pem, key_a.pem_len, (const uint8_t *)IMAGE_POLICY, n, sig, 0,
                                               kh, err, sizeof err), KWA_E_CRYPTO);
        assert_int_equal(kwa_policy_sig_verify(key_a.pem, key_a.pem_len, (const uint8_t *)IMAGE_POLICY, n, sig,
                                               sl - 1, kh, err, sizeof err), KWA_E_CRYPTO);
        sig[sl] = 0;
        assert_int_equal(kwa_policy_sig_verify(key_a.pem, key_a.pem_len, (const uint8_t *)IMAGE_POLICY, n, sig,
                                               sl + 1, kh, err, sizeof err), KWA_E_CRYPTO);
}

static void policy_parse_image_member(void **state)
{
        (void)state;
        struct kwa_policy p;
        char err[200] = "";
        assert_int_equal(kwa_policy_parse(IMAGE_POLICY, strlen(IMAGE_POLICY), &p, err, sizeof err), 0);
        assert_true(p.image.set);
        assert_string_equal(p.image.version, "0.1.0");
        assert_int_equal(p.image.n_pcr11, 3);
        assert_true(p.image.has_authenticode && p.image.has_pcr_key && p.image.has_manifest &&
                    p.image.has_pcr_signature);
        assert_int_equal(p.image.verity_root_hash[0], 0x00);
        assert_int_equal(p.image.verity_root_hash[1], 0x11);
        assert_int_equal(p.pcr_mask, (1u << 4) | (1u << 11));
        assert_false(p.ak_pinned);   /* per instance: --ak-sha256 */
        kwa_policy_free(&p);
        /* each change below makes a policy the parser must refuse */
        static const struct { const char *from, *to, *say; } bad[] = {
                { "\"manifest_sha256\"", "\"manifest_sha265\"", "manifest_sha265" },           /* unknown */
                { "\"uki_sha256\":\"00", "\"uki_sha256\":\"0", "uki_sha256" },                 /* 63 hex */
                { "\"verity_root_hash\":\"00", "\"verity_root_hash\":\"000", "verity_root_hash" },   /* 65 */
                { "\"uki_authenticode_sha256\":\"00", "\"uki_authenticode_sha256\":\"zz", "authenticode" },
                { "\"sysinit\":\"00", "\"sysinit\":\"0", "pcr11" },
                { "\"sysinit\":", "\"SysInit\":", "pcr11" },
                { "\"sysinit\":", "\"sysinit:ready\":", "twice" },
                { "\"pcr_signature\":{", "\"pcr_signature\":[{", "" },   /* an array, fixed below */
                { "\"version\":\"0.1.0\"", "\"version\":\"\"", "image.version" },
                { "\"version\":\"0.1.0\"", "\"version\":1", "image.version" },
                { "\"cmdline\":\"roothash=x ro\"", "\"cmdline\":\"a\\nb\"", "cmdline" },
                { "\"tofu\":false", "\"tofu\":true", "tofu" },
                { "\"pcr11\":{", "\"pcr11x\":{", "pcr11x" },
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                char doc[sizeof IMAGE_POLICY + 64];
                const char *at = strstr(IMAGE_POLICY, bad[i].from);
                assert_non_null(at);
                size_t pre = (size_t)(at - IMAGE_POLICY);
                snprintf(doc, sizeof doc, "%.*s%s%s", (int)pre, IMAGE_POLICY, bad[i].to, at + strlen(bad[i].from));
                if (strstr(bad[i].to, "[{") != NULL) {   /* close the array: ...}]}]},"manifest... */
                        char *m = strstr(doc, "}]},\"manifest");
                        assert_non_null(m);
                        memmove(m + 4, m + 3, strlen(m + 3) + 1);
                        m[3] = ']';
                }
                err[0] = '\0';
                memset(&p, 0x5a, sizeof p);
                assert_int_not_equal(kwa_policy_parse(doc, strlen(doc), &p, err, sizeof err), 0);
                assert_non_null(strstr(err, bad[i].say));
                assert_int_equal(((const uint8_t *)&p)[0], 0x5a);   /* untouched */
        }
        /* "image" that is not an object */
        const char *s = "{\"keyward_policy\":1,\"require\":{},\"image\":[]}";
        assert_int_not_equal(kwa_policy_parse(s, strlen(s), &p, err, sizeof err), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(snp_verify_milan_vector_passes),
                cmocka_unit_test(snp_verify_strict_policy_rejects_debug),
                cmocka_unit_test(snp_verify_policy_measurement_and_tcb),
                cmocka_unit_test(snp_verify_bit_flip_in_signed_region_fails_signature),
                cmocka_unit_test(snp_verify_bit_flip_in_signature_fails),
                cmocka_unit_test(snp_verify_bit_flip_in_vcek_fails_vcek),
                cmocka_unit_test(snp_verify_bit_flip_in_ask_fails_ask),
                cmocka_unit_test(snp_verify_out_of_date_fails_vcek),
                cmocka_unit_test(snp_parse_rejects_wrong_length),
                cmocka_unit_test(tpm_parsers_reject_truncated_and_trailing),
                cmocka_unit_test(eventlog_replay_matches_manual_extend),
                cmocka_unit_test(policy_parse_rejects_unknown_member),
                cmocka_unit_test(policy_parse_image_member),
        };
        const struct CMUnitTest sig_tests[] = {
                cmocka_unit_test(policy_sig_verify_good_signature_passes),
                cmocka_unit_test(policy_sig_verify_flipped_byte_in_file_fails),
                cmocka_unit_test(policy_sig_verify_wrong_key_fails),
                cmocka_unit_test(policy_sig_verify_missing_or_cut_signature_fails),
        };
        int failed = cmocka_run_group_tests(tests, load_vectors, free_vectors);
        return failed + cmocka_run_group_tests_name("policy_signature", sig_tests, signers_setup, signers_teardown);
}
