/*
 * snp.c - SEV-SNP (the report parser is snp_report.c): the AMD chain ARK -> ASK -> VCEK at a
 * given time, the VCEK's hwID/TCB extensions against the report, the
 * report's ECDSA P-384 signature, the binding and the policy.
 * Check names: snp.report, snp.ark, snp.ask, snp.vcek, snp.chip_id, snp.tcb,
 * snp.signature, snp.report_data, snp.debug, snp.vmpl, snp.measurement,
 * snp.min_tcb, snp.guest_svn (prefixed, e.g. "azure.snp.*", by the caller).
 */
#include <stdio.h>
#include <string.h>

#include <mbedtls/asn1.h>
#include <mbedtls/constant_time.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/sha512.h>
#include <mbedtls/x509_crt.h>

#include "kwa.h"

struct kwa_tcb kwa_snp_tcb(uint64_t v, const char *product)
{
        struct kwa_tcb t;
        memset(&t, 0, sizeof t);
        if (product != NULL && strcmp(product, "turin") == 0) {
                t.fmc = (unsigned)(v & 0xff);
                t.bootloader = (unsigned)(v >> 8 & 0xff);
                t.tee = (unsigned)(v >> 16 & 0xff);
                t.snp = (unsigned)(v >> 24 & 0xff);
        } else {
                t.bootloader = (unsigned)(v & 0xff);
                t.tee = (unsigned)(v >> 8 & 0xff);
                t.snp = (unsigned)(v >> 48 & 0xff);
        }
        t.microcode = (unsigned)(v >> 56 & 0xff);
        return t;
}

/* 1 when t lies within the certificate's validity. */
static int crt_valid_at(const mbedtls_x509_crt *c, time_t at)
{
        struct tm tm;
        if (gmtime_r(&at, &tm) == NULL)
                return 0;
        long long now = (long long)(tm.tm_year + 1900) * 10000000000LL + (tm.tm_mon + 1) * 100000000LL +
                        tm.tm_mday * 1000000LL + tm.tm_hour * 10000LL + tm.tm_min * 100LL + tm.tm_sec;
#define XT(x) ((long long)(x).year * 10000000000LL + (x).mon * 100000000LL + (x).day * 1000000LL + \
               (x).hour * 10000LL + (x).min * 100LL + (x).sec)
        return XT(c->valid_from) <= now && now <= XT(c->valid_to);
#undef XT
}

/* 0 when child's signature verifies with parent's key (RSA-PSS, PKCS#1 or ECDSA). */
static int crt_signed_by(const mbedtls_x509_crt *child, const mbedtls_x509_crt *parent)
{
        const mbedtls_md_info_t *md = mbedtls_md_info_from_type(child->sig_md);
        uint8_t h[MBEDTLS_MD_MAX_SIZE];
        if (md == NULL || mbedtls_md(md, child->tbs.p, child->tbs.len, h) != 0)
                return -1;
        return mbedtls_pk_verify_ext(child->sig_pk, child->sig_opts,
                                     (mbedtls_pk_context *)&parent->pk, child->sig_md, h,
                                     mbedtls_md_get_size(md), child->sig.p, child->sig.len) == 0 ? 0 : -1;
}

/* The VCEK's AMD extensions: hwID (raw bytes) and the TCB integers. */
struct vcek_ext {
        const uint8_t *hwid; size_t hwid_len;
        int bl, tee, snp, ucode, fmc;   /* -1 = absent */
};

static int ext_int(const uint8_t *p, size_t n)
{
        unsigned char *q = (unsigned char *)p;
        int v = -1;
        if (mbedtls_asn1_get_int(&q, q + n, &v) != 0 || q != p + n || v < 0 || v > 255)
                return -1;
        return v;
}

static int vcek_ext_parse(const mbedtls_x509_crt *c, struct vcek_ext *ret)
{
        static const uint8_t amd[] = { 0x2b, 0x06, 0x01, 0x04, 0x01, 0x9c, 0x78, 0x01 }; /* 1.3.6.1.4.1.3704.1 */
        struct vcek_ext e = { NULL, 0, -1, -1, -1, -1, -1 };
        unsigned char *p = c->v3_ext.p, *end = c->v3_ext.p + c->v3_ext.len;
        size_t len;
        if (p == NULL || mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
                return -1;
        end = p + len;
        while (p < end) {
                unsigned char *ext_end;
                if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
                        return -1;
                ext_end = p + len;
                size_t oid_len, val_len;
                if (mbedtls_asn1_get_tag(&p, ext_end, &oid_len, MBEDTLS_ASN1_OID) != 0)
                        return -1;
                const unsigned char *oid = p;
                p += oid_len;
                int crit = 0;   /* optional: absent leaves p where it was */
                (void)mbedtls_asn1_get_bool(&p, ext_end, &crit);
                if (mbedtls_asn1_get_tag(&p, ext_end, &val_len, MBEDTLS_ASN1_OCTET_STRING) != 0 ||
                    p + val_len != ext_end)
                        return -1;
                if (oid_len >= sizeof amd + 1 && memcmp(oid, amd, sizeof amd) == 0) {
                        const unsigned char *rest = oid + sizeof amd;
                        size_t rl = oid_len - sizeof amd;
                        if (rl == 1 && rest[0] == 4) {
                                e.hwid = p;
                                e.hwid_len = val_len;
                        } else if (rl == 2 && rest[0] == 3) {
                                int v = ext_int(p, val_len);
                                switch (rest[1]) {
                                case 1: e.bl = v; break;
                                case 2: e.tee = v; break;
                                case 3: e.snp = v; break;
                                case 8: e.ucode = v; break;
                                case 9: e.fmc = v; break;
                                default: break;
                                }
                        }
                }
                p = ext_end;
        }
        *ret = e;
        return 0;
}

/* Little-endian 72-byte field -> big-endian 48 bytes (P-384); -1 if the high bytes are not 0. */
static int le72_to_be48(const uint8_t in[72], uint8_t out[48])
{
        for (size_t i = 48; i < 72; i++)
                if (in[i] != 0)
                        return -1;
        for (size_t i = 0; i < 48; i++)
                out[i] = in[47 - i];
        return 0;
}

static int report_sig_ok(const struct kwa_snp_report *r, const mbedtls_x509_crt *vcek)
{
        if (mbedtls_pk_get_type(&vcek->pk) != MBEDTLS_PK_ECKEY)
                return -1;
        const mbedtls_ecp_keypair *kp = mbedtls_pk_ec(vcek->pk);
        if (kp->grp.id != MBEDTLS_ECP_DP_SECP384R1)
                return -1;
        uint8_t h[64], rb[48], sb[48];
        if (mbedtls_sha512_ret(r->raw, KWA_SNP_SIGNED_LEN, h, 1) != 0 || le72_to_be48(r->sig_r, rb) != 0 ||
            le72_to_be48(r->sig_s, sb) != 0)
                return -1;
        mbedtls_mpi R, S;
        mbedtls_mpi_init(&R);
        mbedtls_mpi_init(&S);
        int rc = -1;
        if (mbedtls_mpi_read_binary(&R, rb, 48) == 0 && mbedtls_mpi_read_binary(&S, sb, 48) == 0)
                rc = mbedtls_ecdsa_verify((mbedtls_ecp_group *)&kp->grp, h, 48, &kp->Q, &R, &S) == 0 ? 0 : -1;
        mbedtls_mpi_free(&R);
        mbedtls_mpi_free(&S);
        return rc;
}

static void name_of(char *out, size_t n, const char *prefix, const char *what)
{
        snprintf(out, n, "%ssnp.%s", prefix, what);
}

void kwa_snp_verify(struct kwa_checks *cs, const uint8_t *report, size_t report_len,
                    const uint8_t *vcek_der, size_t vcek_len, const struct kwa_snp_anchor *anchors,
                    time_t at, const uint8_t *expect_rd, const struct kwa_snp_policy *pol,
                    const char *prefix, int req)
{
        char nm[48];
#define CHECK(what, st, ...)                                                            \
        do {                                                                            \
                name_of(nm, sizeof nm, prefix, what);                                   \
                kwa_check(cs, nm, req, st, __VA_ARGS__);                                \
        } while (0)
        struct kwa_snp_report r;
        if (kwa_snp_parse(report, report_len, &r) != 0) {
                CHECK("report", KWA_FAIL, "not a %d-byte SEV-SNP report (version 2-5)", KWA_SNP_REPORT_LEN);
                return;
        }
        CHECK("report", KWA_PASS, "version %u, signature algorithm %u", r.version, r.sig_algo);
        mbedtls_x509_crt vcek, ark, ask;
        mbedtls_x509_crt_init(&vcek);
        mbedtls_x509_crt_init(&ark);
        mbedtls_x509_crt_init(&ask);
        const char *product = NULL;
        int chain_ok = 0;
        if (vcek_der == NULL || mbedtls_x509_crt_parse_der(&vcek, vcek_der, vcek_len) != 0) {
                CHECK("vcek", KWA_FAIL, "%s", vcek_der == NULL ? "no VCEK certificate in the evidence"
                                                                : "the VCEK is not a valid X.509 certificate");
                goto out;
        }
        /* the product line whose ASK signed this VCEK */
        const char *tried = "";
        for (const struct kwa_snp_anchor *a = anchors; a->product != NULL; a++) {
                if (pol != NULL && pol->set && pol->product[0] && strcmp(pol->product, a->product) != 0)
                        continue;
                mbedtls_x509_crt_free(&ark);
                mbedtls_x509_crt_free(&ask);
                mbedtls_x509_crt_init(&ark);
                mbedtls_x509_crt_init(&ask);
                if (mbedtls_x509_crt_parse(&ark, (const unsigned char *)a->ark_pem, strlen(a->ark_pem) + 1) != 0 ||
                    mbedtls_x509_crt_parse(&ask, (const unsigned char *)a->ask_pem, strlen(a->ask_pem) + 1) != 0)
                        continue;
                tried = a->product;
                if (crt_signed_by(&vcek, &ask) == 0) {
                        product = a->product;
                        break;
                }
        }
        if (product == NULL) {
                CHECK("ark", KWA_SKIP, "no product line's ASK signed the VCEK");
                CHECK("ask", KWA_SKIP, "no product line's ASK signed the VCEK");
                CHECK("vcek", KWA_FAIL, "the VCEK is not signed by the %s ASK%s", tried[0] ? tried : "built-in",
                      pol && pol->product[0] ? "" : " (nor any other built-in one)");
                goto out;
        }
        int ark_ok = crt_signed_by(&ark, &ark) == 0 && crt_valid_at(&ark, at);
        CHECK("ark", ark_ok ? KWA_PASS : KWA_FAIL, "%s ARK (built-in anchor) %s", product,
              ark_ok ? "self-signed, in date" : "not self-signed or out of date");
        int ask_ok = crt_signed_by(&ask, &ark) == 0 && crt_valid_at(&ask, at);
        CHECK("ask", ask_ok ? KWA_PASS : KWA_FAIL, "%s ASK %s", product,
              ask_ok ? "signed by the ARK, in date" : "not signed by the ARK or out of date");
        int vcek_date = crt_valid_at(&vcek, at);
        CHECK("vcek", vcek_date ? KWA_PASS : KWA_FAIL, "signed by the %s ASK, %s", product,
              vcek_date ? "in date" : "OUT OF DATE at the verification time");
        chain_ok = ark_ok && ask_ok && vcek_date;

        struct vcek_ext e;
        if (vcek_ext_parse(&vcek, &e) != 0) {
                CHECK("chip_id", KWA_FAIL, "cannot read the VCEK's extensions");
                CHECK("tcb", KWA_FAIL, "cannot read the VCEK's extensions");
        } else {
                int chip_ok = e.hwid != NULL && e.hwid_len == 64 && mbedtls_ct_memcmp(e.hwid, r.chip_id, 64) == 0;
                CHECK("chip_id", chip_ok ? KWA_PASS : KWA_FAIL, "%s",
                      chip_ok ? "report chip_id == VCEK hwID" : "report chip_id differs from the VCEK hwID");
                struct kwa_tcb t = kwa_snp_tcb(r.reported_tcb, product);
                int is_turin = strcmp(product, "turin") == 0;
                int tcb_ok = e.bl == (int)t.bootloader && e.tee == (int)t.tee && e.snp == (int)t.snp &&
                             e.ucode == (int)t.microcode && (!is_turin || e.fmc == (int)t.fmc);
                CHECK("tcb", tcb_ok ? KWA_PASS : KWA_FAIL,
                      "reported_tcb bl=%u tee=%u snp=%u ucode=%u; VCEK bl=%d tee=%d snp=%d ucode=%d",
                      t.bootloader, t.tee, t.snp, t.microcode, e.bl, e.tee, e.snp, e.ucode);
        }
        int sig_ok = r.sig_algo == 1 && report_sig_ok(&r, &vcek) == 0;
        CHECK("signature", sig_ok ? KWA_PASS : KWA_FAIL, "%s",
              sig_ok ? "ECDSA P-384/SHA-384 by the VCEK" : "the report signature does not verify with the VCEK");
        (void)chain_ok;
out:
        mbedtls_x509_crt_free(&vcek);
        mbedtls_x509_crt_free(&ark);
        mbedtls_x509_crt_free(&ask);
        if (expect_rd != NULL) {
                int rd_ok = mbedtls_ct_memcmp(r.report_data, expect_rd, 64) == 0;
                CHECK("report_data", rd_ok ? KWA_PASS : KWA_FAIL, "%s",
                      rd_ok ? "== binding(nonce, TLS key) || 0^32" : "does not carry this session's binding");
        }
        if (pol == NULL || !pol->set)
                return;
        int dbg = (r.policy & KWA_SNP_POLICY_DEBUG) != 0;
        CHECK("debug", !dbg || pol->allow_debug ? KWA_PASS : KWA_FAIL, "guest policy 0x%llx: debug %s",
              (unsigned long long)r.policy, dbg ? "ALLOWED" : "not allowed");
        int vmpl_ok = pol->max_vmpl < 0 || (int64_t)r.vmpl <= pol->max_vmpl;
        CHECK("vmpl", vmpl_ok ? KWA_PASS : KWA_FAIL, "VMPL %u (policy: at most %lld)", r.vmpl,
              (long long)pol->max_vmpl);
        char mhex[97];
        kwa_hex_encode(r.measurement, 48, mhex);
        int m_ok = pol->n_measurements == 0;
        for (size_t i = 0; i < pol->n_measurements; i++)
                m_ok |= memcmp(pol->measurements[i], r.measurement, 48) == 0; /* lint: allow (public) */
        CHECK("measurement", m_ok ? KWA_PASS : KWA_FAIL, "%s %s", mhex,
              pol->n_measurements == 0 ? "(policy lists none: any)" : m_ok ? "in the allow-list" : "NOT in the allow-list");
        struct kwa_tcb t = kwa_snp_tcb(r.reported_tcb, product ? product : pol->product);
        int tcb_ok = t.bootloader >= pol->min_tcb.bootloader && t.tee >= pol->min_tcb.tee &&
                     t.snp >= pol->min_tcb.snp && t.microcode >= pol->min_tcb.microcode &&
                     t.fmc >= pol->min_tcb.fmc;
        CHECK("min_tcb", tcb_ok ? KWA_PASS : KWA_FAIL, "reported bl=%u tee=%u snp=%u ucode=%u, minimum %u/%u/%u/%u",
              t.bootloader, t.tee, t.snp, t.microcode, pol->min_tcb.bootloader, pol->min_tcb.tee,
              pol->min_tcb.snp, pol->min_tcb.microcode);
        CHECK("guest_svn", (int64_t)r.guest_svn >= pol->min_guest_svn ? KWA_PASS : KWA_FAIL,
              "guest SVN %u, minimum %lld", r.guest_svn, (long long)pol->min_guest_svn);
#undef CHECK
}
