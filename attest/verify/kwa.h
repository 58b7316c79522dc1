/*
 * kwa.h - keyward-attest, the verifier (mbedTLS only: it must not trust the
 * server's crypto stack).  Modules:
 *   rd.c       bounded reader (LE/BE) and hex helpers for untrusted bytes
 *   snp_report.c  SEV-SNP report parser (no crypto: the server uses it too)
 *   snp.c      AMD chain (ARK->ASK->VCEK), report checks
 *   tpm.c      TPM2B_PUBLIC / TPMS_ATTEST / TPMT_SIGNATURE parsers, quote checks
 *   eventlog.c TCG crypto-agile event log parser and sha256 replay
 *   hcl.c      Azure HCL report (vTPM NV 0x01400001)
 *   evidence.c evidence JSON -> struct kwa_evidence
 *   policy.c   policy.json (expected values)
 *   policysig.c  policy.json's signature with the image's key (RSA, mbedTLS)
 *   check.c    the check list: each check named, passed/failed/skipped, printed
 *   verify.c   all checks of an evidence document against a policy
 *   net.c      TLS (mbedTLS) GET, the peer certificate's SPKI
 *   main.c     the CLI
 * Parsers return 0 or a negative KWA_E_* and set out-parameters only on
 * success; they never allocate unless documented.
 */
#ifndef KWA_H
#define KWA_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define KWA_MUST_USE __attribute__((warn_unused_result))

enum { KWA_OK = 0, KWA_E_TRUNC = -1, KWA_E_FORMAT = -2, KWA_E_TOO_LARGE = -3, KWA_E_NOMEM = -4,
       KWA_E_CRYPTO = -5, KWA_E_IO = -6 };

/* ---- rd.c ---- */
struct kwa_rd {
        const uint8_t *p;
        size_t len, off;   /* invariant off <= len */
};
static inline struct kwa_rd kwa_rd_init(const void *p, size_t len)
{
        return (struct kwa_rd){ .p = p, .len = len, .off = 0 };
}
KWA_MUST_USE int kwa_rd_u8(struct kwa_rd *r, uint8_t *ret);
KWA_MUST_USE int kwa_rd_u16be(struct kwa_rd *r, uint16_t *ret);
KWA_MUST_USE int kwa_rd_u32be(struct kwa_rd *r, uint32_t *ret);
KWA_MUST_USE int kwa_rd_u64be(struct kwa_rd *r, uint64_t *ret);
KWA_MUST_USE int kwa_rd_u16le(struct kwa_rd *r, uint16_t *ret);
KWA_MUST_USE int kwa_rd_u32le(struct kwa_rd *r, uint32_t *ret);
KWA_MUST_USE int kwa_rd_bytes(struct kwa_rd *r, size_t n, const uint8_t **ret);
/* A TPM2B: u16be size then that many bytes (at most max). */
KWA_MUST_USE int kwa_rd_tpm2b(struct kwa_rd *r, size_t max, const uint8_t **ret, size_t *ret_len);
static inline uint32_t kwa_le32(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t kwa_le64(const uint8_t *p)
{
        return (uint64_t)kwa_le32(p) | (uint64_t)kwa_le32(p + 4) << 32;
}
/* Exactly 2*n hex digits -> out[n]; 0 or -1. */
int kwa_hex_decode(const char *s, uint8_t *out, size_t n);
void kwa_hex_encode(const uint8_t *p, size_t n, char *out /* 2n+1 */);
/* Whole file (at most max bytes) into a malloc'd buffer. */
KWA_MUST_USE int kwa_read_file(const char *path, size_t max, uint8_t **ret, size_t *ret_len);
/* Strict standard base64 -> malloc'd buffer. */
KWA_MUST_USE int kwa_b64_decode(const char *s, uint8_t **ret, size_t *ret_len);
/* SHA-256 / SHA-384 / SHA-1 one-shot (mbedTLS). */
void kwa_sha256(const void *p, size_t n, uint8_t out[32]);
/* binding = SHA-256("KEYWARD-ATTEST-v1\0" || nonce || spki_sha256) */
void kwa_binding(const uint8_t nonce[32], const uint8_t spki_sha256[32], uint8_t out[32]);

/* ---- check.c ---- */
enum kwa_status { KWA_PASS = 1, KWA_FAIL = 2, KWA_SKIP = 3 };
#define KWA_MAX_CHECKS 96
struct kwa_check {
        char name[48];
        enum kwa_status status;
        int required;     /* a FAIL of a required check fails the verification */
        char detail[320];
};
struct kwa_checks {
        struct kwa_check c[KWA_MAX_CHECKS];
        size_t n;
        int print;        /* print each check as it is recorded (human output) */
};
void kwa_check(struct kwa_checks *cs, const char *name, int required, enum kwa_status st,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The named check, or NULL. */
const struct kwa_check *kwa_check_find(const struct kwa_checks *cs, const char *name);
/* 1 when no required check failed. */
int kwa_checks_ok(const struct kwa_checks *cs);
/* Writes the checks as JSON (stdout) / the failing names as one line (stderr). */
void kwa_checks_print_json(const struct kwa_checks *cs, int ok);
void kwa_checks_print_failed(const struct kwa_checks *cs);

/* ---- snp_report.c, snp.c ---- */
#define KWA_SNP_REPORT_LEN 1184
#define KWA_SNP_SIGNED_LEN 0x2A0
struct kwa_snp_report {
        uint32_t version, guest_svn, vmpl, sig_algo;
        uint64_t policy, current_tcb, reported_tcb, committed_tcb, launch_tcb;
        uint8_t report_data[64], measurement[48], host_data[32], id_key_digest[48],
                author_key_digest[48], chip_id[64];
        uint8_t sig_r[72], sig_s[72];   /* little-endian, as in the report */
        const uint8_t *raw;             /* the 1184 bytes (not owned)       */
};
#define KWA_SNP_POLICY_DEBUG (UINT64_C(1) << 19)
KWA_MUST_USE int kwa_snp_parse(const uint8_t *p, size_t n, struct kwa_snp_report *ret);
struct kwa_tcb { unsigned bootloader, tee, snp, microcode, fmc; };
/* product "turin" has its own TCB layout. */
struct kwa_tcb kwa_snp_tcb(uint64_t v, const char *product);

struct kwa_snp_anchor {   /* one product line's trust anchors */
        const char *product;        /* "milan", "genoa", "turin" */
        const char *ark_pem, *ask_pem;
};
/* The anchors built into the binary (attest/trust/amd); ends with { NULL }. */
extern const struct kwa_snp_anchor kwa_amd_anchors[];

struct kwa_snp_policy {
        int set;
        int allow_debug;
        int64_t max_vmpl;          /* -1 = any */
        uint8_t (*measurements)[48];
        size_t n_measurements;     /* 0 = any (a TOFU policy lists the observed one) */
        struct kwa_tcb min_tcb;
        int64_t min_guest_svn;
        char product[16];          /* "" = any built-in */
};
/* All SNP checks ("snp.*") of report + VCEK (DER) against anchors, at time at.
 * expect_rd: the 64 bytes report_data must equal, or NULL (Azure: see hcl). */
void kwa_snp_verify(struct kwa_checks *cs, const uint8_t *report, size_t report_len,
                    const uint8_t *vcek, size_t vcek_len, const struct kwa_snp_anchor *anchors,
                    time_t at, const uint8_t *expect_rd, const struct kwa_snp_policy *pol,
                    const char *prefix, int required);

/* ---- tpm.c ---- */
struct kwa_tpm_pub {
        uint16_t type, name_alg;
        uint32_t attrs;
        uint16_t scheme, scheme_hash;
        uint16_t curve;                   /* ECC */
        uint16_t rsa_bits; uint32_t rsa_exp;
        const uint8_t *x, *y; size_t x_len, y_len;     /* ECC point */
        const uint8_t *n; size_t n_len;                /* RSA modulus */
        const uint8_t *area; size_t area_len;          /* the TPMT_PUBLIC bytes (name) */
};
KWA_MUST_USE int kwa_tpm_pub_parse(const uint8_t *p, size_t n, struct kwa_tpm_pub *ret); /* TPM2B_PUBLIC */
struct kwa_tpm_attest {
        uint32_t magic;
        uint16_t type;
        const uint8_t *extra; size_t extra_len;
        uint64_t clock; uint32_t reset_count, restart_count; uint8_t safe;
        uint16_t sel_hash; uint8_t sel[4]; uint8_t sel_size;   /* first (only) bank */
        uint32_t sel_count;
        const uint8_t *pcr_digest; size_t pcr_digest_len;
};
KWA_MUST_USE int kwa_tpm_attest_parse(const uint8_t *p, size_t n, struct kwa_tpm_attest *ret);
struct kwa_tpm_sig {
        uint16_t alg, hash;
        const uint8_t *r, *s; size_t r_len, s_len;     /* ECDSA */
        const uint8_t *rsa; size_t rsa_len;            /* RSASSA / RSAPSS */
};
KWA_MUST_USE int kwa_tpm_sig_parse(const uint8_t *p, size_t n, struct kwa_tpm_sig *ret);
/* 0 when sig over msg verifies with pub (mbedTLS). */
KWA_MUST_USE int kwa_tpm_sig_verify(const struct kwa_tpm_pub *pub, const struct kwa_tpm_sig *sig,
                                    const uint8_t *msg, size_t msg_len);

/* ---- eventlog.c ---- */
/* Replays the sha256 bank of a TCG PC Client crypto-agile log into pcrs[24]
 * (EV_NO_ACTION skipped; StartupLocality honoured for PCR 0).  ret_seen: mask
 * of PCRs extended at least once.  ret_events: the count. */
KWA_MUST_USE int kwa_eventlog_replay(const uint8_t *p, size_t n, uint8_t pcrs[24][32],
                                     uint32_t *ret_seen, size_t *ret_events);

/* ---- hcl.c ---- */
struct kwa_hcl {
        const uint8_t *report; size_t report_len;   /* the SNP report inside */
        const uint8_t *json; size_t json_len;       /* runtime data (its SHA-256 is report_data[0:32]) */
};
KWA_MUST_USE int kwa_hcl_parse(const uint8_t *p, size_t n, struct kwa_hcl *ret);

/* ---- evidence.c ---- */
struct kwa_blob { uint8_t *p; size_t n; };
struct kwa_evidence {
        int version;
        uint8_t nonce[32], spki[32];
        char image_version[64], expected_id[128];
        int snp_present; char snp_absent[256];
        struct kwa_blob snp_report, vcek, ask, ark;
        int tpm_present; char tpm_absent[256];
        struct kwa_blob ak_public, quote, signature, ek_cert, event_log;
        uint32_t pcr_mask; uint8_t pcrs[24][32];
        int azure_present; char azure_absent[256];
        struct kwa_blob hcl;
};
/* Parses and decodes an evidence document; on failure err names the field. */
KWA_MUST_USE int kwa_evidence_parse(const char *json, size_t len, struct kwa_evidence *ret,
                                    char *err, size_t errsz);
void kwa_evidence_free(struct kwa_evidence *e);

/* ---- policy.c ---- */
/* The "image" member of a policy the image build made (docs/attestation.md):
 * what the build computed, kept for the report; the PCR values the checks
 * use are tpm.pcrs.  A hash not given is all zeros (has_* says which). */
#define KWA_IMAGE_MAX_PHASES 16
struct kwa_image_policy {
        int set;
        char version[64];
        uint8_t verity_root_hash[32], uki_sha256[32];
        int has_authenticode, has_kernel_authenticode, has_pcr_key, has_manifest, has_pcr_signature;
        uint8_t uki_authenticode_sha256[32], kernel_authenticode_sha256[32], pcr_public_key_sha256[32],
                manifest_sha256[32];
        size_t n_pcr11;                                   /* phases of the pcr11 map */
};
struct kwa_policy {
        int tofu;
        int require_snp, require_tpm, require_azure, require_event_log;
        uint32_t pcr_mask; uint8_t pcrs[24][32];          /* expected values */
        int ak_pinned; uint8_t ak_sha256[32];             /* SHA-256 of the TPMT_PUBLIC */
        struct kwa_snp_policy snp;
        struct kwa_image_policy image;
};
KWA_MUST_USE int kwa_policy_parse(const char *json, size_t len, struct kwa_policy *ret,
                                  char *err, size_t errsz);
void kwa_policy_free(struct kwa_policy *p);
/* A trust-on-first-use policy from verified evidence, as JSON (malloc'd). */
KWA_MUST_USE int kwa_policy_from_evidence(const struct kwa_evidence *e, const char *source,
                                          char **ret);

/* ---- policysig.c ---- */
/* RSA PKCS#1 v1.5 SHA-256 signature sig over the exact bytes doc[0..doc_len)
 * with the RSA public key (PEM or DER SubjectPublicKeyInfo, at least 2048
 * bits) key[0..key_len).  0 when it verifies, with ret_key_sha256 the
 * SHA-256 of the key's DER SubjectPublicKeyInfo; else a negative KWA_E_*
 * and err a sentence (KWA_E_CRYPTO: it does not verify). */
KWA_MUST_USE int kwa_policy_sig_verify(const uint8_t *key, size_t key_len, const uint8_t *doc, size_t doc_len,
                                       const uint8_t *sig, size_t sig_len, uint8_t ret_key_sha256[32],
                                       char *err, size_t errsz);

/* ---- verify.c ---- */
struct kwa_verify_in {
        const struct kwa_evidence *ev;
        const struct kwa_policy *pol;
        const uint8_t *nonce;          /* the one we sent (32) */
        const uint8_t *spki_sha256;    /* of the certificate of OUR TLS session (32) */
        time_t at;
        const struct kwa_snp_anchor *anchors;
};
void kwa_verify(const struct kwa_verify_in *in, struct kwa_checks *cs);

/* ---- net.c ---- */
/* GET https://host:port/path over mbedTLS.  ca_file NULL + insecure=1: no
 * certificate check (the binding still ties the evidence to the key).
 * ret_body: malloc'd, NUL-terminated.  err: a sentence. */
KWA_MUST_USE int kwa_https_get(const char *host, const char *port, const char *path,
                               const char *ca_file, int insecure, int *ret_status,
                               char **ret_body, size_t *ret_len, uint8_t ret_spki_sha256[32],
                               char *err, size_t errsz);

#endif
