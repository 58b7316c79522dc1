/*
 * tpm.c - bounded parsers of the TPM 2.0 structures of a quote (TPM2B_PUBLIC,
 * TPMS_ATTEST, TPMT_SIGNATURE; big-endian, Part 2 of the TPM 2.0 library
 * spec) and the signature check with mbedTLS.  A structure must be consumed
 * exactly; unknown algorithms are rejected.
 */
#include <string.h>

#include <mbedtls/ecdsa.h>
#include <mbedtls/md.h>
#include <mbedtls/rsa.h>

#include "kwa.h"

#define ALG_RSA 0x0001
#define ALG_SHA1 0x0004
#define ALG_SHA256 0x000B
#define ALG_SHA384 0x000C
#define ALG_SHA512 0x000D
#define ALG_NULL 0x0010
#define ALG_RSASSA 0x0014
#define ALG_RSAPSS 0x0016
#define ALG_ECDSA 0x0018
#define ALG_ECC 0x0023
#define ALG_AES 0x0006

#define TRY(x)                          \
        do {                            \
                int e_ = (x);           \
                if (e_ != 0)            \
                        return e_;      \
        } while (0)

static int rd_alg_with_hash(struct kwa_rd *r, uint16_t *ret_alg, uint16_t *ret_hash)
{
        uint16_t alg, hash = ALG_NULL;
        TRY(kwa_rd_u16be(r, &alg));
        if (alg != ALG_NULL)
                TRY(kwa_rd_u16be(r, &hash));
        *ret_alg = alg;
        *ret_hash = hash;
        return 0;
}

static int rd_sym(struct kwa_rd *r)
{
        uint16_t alg, bits, mode;
        TRY(kwa_rd_u16be(r, &alg));
        if (alg == ALG_NULL)
                return 0;
        if (alg != ALG_AES)
                return KWA_E_FORMAT;
        TRY(kwa_rd_u16be(r, &bits));
        TRY(kwa_rd_u16be(r, &mode));
        return 0;
}

int kwa_tpm_pub_parse(const uint8_t *p, size_t n, struct kwa_tpm_pub *ret)
{
        struct kwa_rd outer = kwa_rd_init(p, n);
        const uint8_t *area;
        size_t area_len;
        TRY(kwa_rd_tpm2b(&outer, 1024, &area, &area_len));
        if (outer.off != outer.len)
                return KWA_E_FORMAT;
        struct kwa_rd r = kwa_rd_init(area, area_len);
        struct kwa_tpm_pub k;
        memset(&k, 0, sizeof k);
        const uint8_t *auth;
        size_t auth_len;
        TRY(kwa_rd_u16be(&r, &k.type));
        TRY(kwa_rd_u16be(&r, &k.name_alg));
        TRY(kwa_rd_u32be(&r, &k.attrs));
        TRY(kwa_rd_tpm2b(&r, 64, &auth, &auth_len));
        TRY(rd_sym(&r));
        if (k.type == ALG_RSA) {
                TRY(rd_alg_with_hash(&r, &k.scheme, &k.scheme_hash));
                TRY(kwa_rd_u16be(&r, &k.rsa_bits));
                TRY(kwa_rd_u32be(&r, &k.rsa_exp));
                TRY(kwa_rd_tpm2b(&r, 512, &k.n, &k.n_len));
                if (k.n_len == 0 || k.n_len * 8 != k.rsa_bits)
                        return KWA_E_FORMAT;
        } else if (k.type == ALG_ECC) {
                uint16_t kdf, kdf_hash;
                TRY(rd_alg_with_hash(&r, &k.scheme, &k.scheme_hash));
                if (k.scheme != ALG_NULL && k.scheme != ALG_ECDSA)
                        return KWA_E_FORMAT;   /* ECDAA/ECSCHNORR carry more fields */
                TRY(kwa_rd_u16be(&r, &k.curve));
                TRY(rd_alg_with_hash(&r, &kdf, &kdf_hash));
                TRY(kwa_rd_tpm2b(&r, 128, &k.x, &k.x_len));
                TRY(kwa_rd_tpm2b(&r, 128, &k.y, &k.y_len));
        } else {
                return KWA_E_FORMAT;
        }
        if (r.off != r.len)
                return KWA_E_FORMAT;
        k.area = area;
        k.area_len = area_len;
        *ret = k;
        return 0;
}

int kwa_tpm_attest_parse(const uint8_t *p, size_t n, struct kwa_tpm_attest *ret)
{
        struct kwa_rd r = kwa_rd_init(p, n);
        struct kwa_tpm_attest a;
        memset(&a, 0, sizeof a);
        const uint8_t *signer;
        size_t signer_len;
        uint64_t fw;
        TRY(kwa_rd_u32be(&r, &a.magic));
        TRY(kwa_rd_u16be(&r, &a.type));
        TRY(kwa_rd_tpm2b(&r, 68, &signer, &signer_len));
        TRY(kwa_rd_tpm2b(&r, 64, &a.extra, &a.extra_len));
        TRY(kwa_rd_u64be(&r, &a.clock));
        TRY(kwa_rd_u32be(&r, &a.reset_count));
        TRY(kwa_rd_u32be(&r, &a.restart_count));
        TRY(kwa_rd_u8(&r, &a.safe));
        TRY(kwa_rd_u64be(&r, &fw));
        if (a.type != 0x8018)   /* TPM_ST_ATTEST_QUOTE: the only body we parse */
                return KWA_E_FORMAT;
        TRY(kwa_rd_u32be(&r, &a.sel_count));
        if (a.sel_count > 16)
                return KWA_E_FORMAT;
        for (uint32_t i = 0; i < a.sel_count; i++) {
                uint16_t hash;
                uint8_t size;
                const uint8_t *sel;
                TRY(kwa_rd_u16be(&r, &hash));
                TRY(kwa_rd_u8(&r, &size));
                if (size > 4)
                        return KWA_E_FORMAT;
                TRY(kwa_rd_bytes(&r, size, &sel));
                if (i == 0) {
                        a.sel_hash = hash;
                        a.sel_size = size;
                        memcpy(a.sel, sel, size);
                }
        }
        TRY(kwa_rd_tpm2b(&r, 64, &a.pcr_digest, &a.pcr_digest_len));
        if (r.off != r.len)
                return KWA_E_FORMAT;
        *ret = a;
        return 0;
}

int kwa_tpm_sig_parse(const uint8_t *p, size_t n, struct kwa_tpm_sig *ret)
{
        struct kwa_rd r = kwa_rd_init(p, n);
        struct kwa_tpm_sig s;
        memset(&s, 0, sizeof s);
        TRY(kwa_rd_u16be(&r, &s.alg));
        if (s.alg == ALG_RSASSA || s.alg == ALG_RSAPSS) {
                TRY(kwa_rd_u16be(&r, &s.hash));
                TRY(kwa_rd_tpm2b(&r, 512, &s.rsa, &s.rsa_len));
        } else if (s.alg == ALG_ECDSA) {
                TRY(kwa_rd_u16be(&r, &s.hash));
                TRY(kwa_rd_tpm2b(&r, 128, &s.r, &s.r_len));
                TRY(kwa_rd_tpm2b(&r, 128, &s.s, &s.s_len));
        } else {
                return KWA_E_FORMAT;
        }
        if (r.off != r.len)
                return KWA_E_FORMAT;
        *ret = s;
        return 0;
}

static mbedtls_md_type_t md_of(uint16_t alg)
{
        switch (alg) {
        case ALG_SHA256: return MBEDTLS_MD_SHA256;
        case ALG_SHA384: return MBEDTLS_MD_SHA384;
        case ALG_SHA512: return MBEDTLS_MD_SHA512;
        default: return MBEDTLS_MD_NONE;   /* SHA-1 is not accepted for quotes */
        }
}

static int verify_ecdsa(const struct kwa_tpm_pub *pub, const struct kwa_tpm_sig *sig, const uint8_t *h,
                        size_t hl)
{
        mbedtls_ecp_group_id gid = pub->curve == 0x0003 ? MBEDTLS_ECP_DP_SECP256R1
                                   : pub->curve == 0x0004 ? MBEDTLS_ECP_DP_SECP384R1
                                                          : MBEDTLS_ECP_DP_NONE;
        if (gid == MBEDTLS_ECP_DP_NONE || pub->x_len > 66 || pub->y_len > 66 || pub->x_len != pub->y_len)
                return -1;
        uint8_t pt[1 + 2 * 66];
        pt[0] = 0x04;
        memcpy(pt + 1, pub->x, pub->x_len);
        memcpy(pt + 1 + pub->x_len, pub->y, pub->y_len);
        mbedtls_ecp_group grp;
        mbedtls_ecp_point Q;
        mbedtls_mpi R, S;
        mbedtls_ecp_group_init(&grp);
        mbedtls_ecp_point_init(&Q);
        mbedtls_mpi_init(&R);
        mbedtls_mpi_init(&S);
        int rc = -1;
        if (mbedtls_ecp_group_load(&grp, gid) == 0 &&
            mbedtls_ecp_point_read_binary(&grp, &Q, pt, 1 + pub->x_len + pub->y_len) == 0 &&
            mbedtls_ecp_check_pubkey(&grp, &Q) == 0 && mbedtls_mpi_read_binary(&R, sig->r, sig->r_len) == 0 &&
            mbedtls_mpi_read_binary(&S, sig->s, sig->s_len) == 0)
                rc = mbedtls_ecdsa_verify(&grp, h, hl, &Q, &R, &S) == 0 ? 0 : -1;
        mbedtls_ecp_group_free(&grp);
        mbedtls_ecp_point_free(&Q);
        mbedtls_mpi_free(&R);
        mbedtls_mpi_free(&S);
        return rc;
}

static int verify_rsa(const struct kwa_tpm_pub *pub, const struct kwa_tpm_sig *sig, mbedtls_md_type_t md,
                      const uint8_t *h, size_t hl)
{
        uint32_t e = pub->rsa_exp ? pub->rsa_exp : 65537;
        uint8_t eb[4] = { (uint8_t)(e >> 24), (uint8_t)(e >> 16), (uint8_t)(e >> 8), (uint8_t)e };
        if (sig->rsa_len != pub->n_len)
                return -1;
        mbedtls_rsa_context rsa;
        mbedtls_rsa_init(&rsa, sig->alg == ALG_RSAPSS ? MBEDTLS_RSA_PKCS_V21 : MBEDTLS_RSA_PKCS_V15, md);
        int rc = -1;
        if (mbedtls_rsa_import_raw(&rsa, pub->n, pub->n_len, NULL, 0, NULL, 0, NULL, 0, eb, 4) == 0 &&
            mbedtls_rsa_complete(&rsa) == 0) {
                if (sig->alg == ALG_RSAPSS)
                        rc = mbedtls_rsa_rsassa_pss_verify_ext(&rsa, NULL, NULL, MBEDTLS_RSA_PUBLIC, md,
                                                               (unsigned)hl, h, md, MBEDTLS_RSA_SALT_LEN_ANY,
                                                               sig->rsa);
                else
                        rc = mbedtls_rsa_rsassa_pkcs1_v15_verify(&rsa, NULL, NULL, MBEDTLS_RSA_PUBLIC, md,
                                                                 (unsigned)hl, h, sig->rsa);
                rc = rc == 0 ? 0 : -1;
        }
        mbedtls_rsa_free(&rsa);
        return rc;
}

int kwa_tpm_sig_verify(const struct kwa_tpm_pub *pub, const struct kwa_tpm_sig *sig, const uint8_t *msg,
                       size_t msg_len)
{
        mbedtls_md_type_t md = md_of(sig->hash);
        const mbedtls_md_info_t *mi = mbedtls_md_info_from_type(md);
        uint8_t h[MBEDTLS_MD_MAX_SIZE];
        if (mi == NULL || mbedtls_md(mi, msg, msg_len, h) != 0)
                return KWA_E_CRYPTO;
        size_t hl = mbedtls_md_get_size(mi);
        int rc;
        if (pub->type == ALG_ECC && sig->alg == ALG_ECDSA)
                rc = verify_ecdsa(pub, sig, h, hl);
        else if (pub->type == ALG_RSA && (sig->alg == ALG_RSASSA || sig->alg == ALG_RSAPSS))
                rc = verify_rsa(pub, sig, md, h, hl);
        else
                rc = -1;
        return rc == 0 ? 0 : KWA_E_CRYPTO;
}
