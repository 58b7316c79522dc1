/* tpm2_seal.c - systemd-tpm2 sealing and unsealing over tpm2-tss ESYS (tpm2_seal.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "../../server/common/b64.h"
#include "passphrase.h"
#include "pcrsig.h"
#include "tpm2_seal.h"

#define BLOB_MAX 4096u

struct kwu_tpm {
        TSS2_TCTI_CONTEXT *tcti;
        ESYS_CONTEXT *ectx;
};

/* One TSS2_RC conversion: KW_ERR_TPM with what failed and the TSS text. */
static kw_result tpm_fail(const char *what, TSS2_RC rc)
{
        kw_err_set_detail("%s: %s", what, Tss2_RC_Decode(rc));
        KW_BAIL(KW_ERR_TPM);
}

kw_result kwu_tpm_open(const char *tcti, struct kwu_tpm **ret)
{
        KW_ENSURE(tcti != NULL && ret != NULL, KW_ERR_INPUT);
        struct kwu_tpm *t = calloc(1, sizeof *t);
        KW_ENSURE(t != NULL, KW_ERR_NOMEM);
        TSS2_RC rc = Tss2_TctiLdr_Initialize(tcti, &t->tcti);
        if (rc == TSS2_RC_SUCCESS)
                rc = Esys_Initialize(&t->ectx, t->tcti, NULL);
        if (rc != TSS2_RC_SUCCESS) {
                kwu_tpm_close(t);
                kw_err_set_detail("no TPM at %s: %s", tcti, Tss2_RC_Decode(rc));
                KW_BAIL(KW_ERR_TPM);
        }
        *ret = t;
        return KW_OK;
}

void kwu_tpm_close(struct kwu_tpm *t)
{
        if (t == NULL)
                return;
        if (t->ectx != NULL)
                Esys_Finalize(&t->ectx);
        if (t->tcti != NULL)
                Tss2_TctiLdr_Finalize(&t->tcti);
        free(t);
}

static void flush(struct kwu_tpm *t, ESYS_TR *h)
{
        if (*h != ESYS_TR_NONE)
                (void)Esys_FlushContext(t->ectx, *h);
        *h = ESYS_TR_NONE;
}

/* systemd's primary key: the same template gives the same key from the
 * owner seed, which is what lets either tool unseal the other's blob. */
static kw_result make_primary(struct kwu_tpm *t, TPMI_ALG_PUBLIC alg, ESYS_TR *ret)
{
        static const TPM2B_SENSITIVE_CREATE sensitive = { 0 };
        static const TPM2B_DATA outside = { 0 };
        static const TPML_PCR_SELECTION creation = { 0 };
        TPM2B_PUBLIC tmpl = { .size = sizeof(TPMT_PUBLIC) };
        tmpl.publicArea.type = alg;
        tmpl.publicArea.nameAlg = TPM2_ALG_SHA256;
        tmpl.publicArea.objectAttributes = TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT | TPMA_OBJECT_FIXEDTPM |
                                           TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                           TPMA_OBJECT_USERWITHAUTH;
        if (alg == TPM2_ALG_ECC) {
                TPMS_ECC_PARMS *p = &tmpl.publicArea.parameters.eccDetail;
                p->symmetric.algorithm = TPM2_ALG_AES;
                p->symmetric.keyBits.aes = 128;
                p->symmetric.mode.aes = TPM2_ALG_CFB;
                p->scheme.scheme = TPM2_ALG_NULL;
                p->curveID = TPM2_ECC_NIST_P256;
                p->kdf.scheme = TPM2_ALG_NULL;
        } else {
                TPMS_RSA_PARMS *p = &tmpl.publicArea.parameters.rsaDetail;
                p->symmetric.algorithm = TPM2_ALG_AES;
                p->symmetric.keyBits.aes = 128;
                p->symmetric.mode.aes = TPM2_ALG_CFB;
                p->scheme.scheme = TPM2_ALG_NULL;
                p->keyBits = 2048;
        }
        TSS2_RC rc = Esys_CreatePrimary(t->ectx, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                        &sensitive, &tmpl, &outside, &creation, ret, NULL, NULL, NULL, NULL);
        if (rc != TSS2_RC_SUCCESS)
                return tpm_fail(alg == TPM2_ALG_ECC ? "creating the ECC primary key" : "creating the RSA primary key", rc);
        return KW_OK;
}

/* An HMAC session salted with the primary key: parameter encryption both ways. */
static kw_result encryption_session(struct kwu_tpm *t, ESYS_TR primary, ESYS_TR *ret)
{
        static const TPMT_SYM_DEF sym = { .algorithm = TPM2_ALG_AES, .keyBits.aes = 128, .mode.aes = TPM2_ALG_CFB };
        TSS2_RC rc = Esys_StartAuthSession(t->ectx, primary, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                           NULL, TPM2_SE_HMAC, &sym, TPM2_ALG_SHA256, ret);
        if (rc == TSS2_RC_SUCCESS)
                rc = Esys_TRSess_SetAttributes(t->ectx, *ret,
                                               TPMA_SESSION_DECRYPT | TPMA_SESSION_ENCRYPT |
                                                       TPMA_SESSION_CONTINUESESSION,
                                               0xff);
        if (rc != TSS2_RC_SUCCESS) {
                flush(t, ret);
                return tpm_fail("starting the encrypted session", rc);
        }
        return KW_OK;
}

static void pcr_selection(uint32_t pcrs, TPML_PCR_SELECTION *sel)
{
        memset(sel, 0, sizeof *sel);
        sel->count = 1;
        sel->pcrSelections[0].hash = TPM2_ALG_SHA256;
        sel->pcrSelections[0].sizeofSelect = 3;
        for (unsigned i = 0; i < 24; i++)
                if (pcrs & (1u << i))
                        sel->pcrSelections[0].pcrSelect[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* "PCR 7 = <hex>, PCR 11 = <hex>" of the current values, for the message. */
static void pcr_values(struct kwu_tpm *t, uint32_t pcrs, char *out, size_t cap)
{
        TPML_PCR_SELECTION sel;
        pcr_selection(pcrs, &sel);
        TPML_PCR_SELECTION *got = NULL;
        TPML_DIGEST *vals = NULL;
        size_t n = 0;
        out[0] = '\0';
        if (Esys_PCR_Read(t->ectx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &sel, NULL, &got, &vals) !=
            TSS2_RC_SUCCESS)
                return;
        unsigned k = 0;
        for (unsigned i = 0; i < 24 && vals != NULL && k < vals->count; i++) {
                if (!(pcrs & (1u << i)))
                        continue;
                n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%sPCR %u = ", k ? ", " : "", i);
                for (size_t j = 0; j < vals->digests[k].size && n + 3 < cap; j++)
                        n += (size_t)snprintf(out + n, cap - n, "%02x", vals->digests[k].buffer[j]);
                k++;
        }
        Esys_Free(got);
        Esys_Free(vals);
}

/* The current values of pcrs (SHA-256 bank) by index into out; a TPM
 * returns at most eight a read, so it reads until all are in. */
static kw_result pcr_read(struct kwu_tpm *t, uint32_t pcrs, uint8_t (*out)[32])
{
        uint32_t left = pcrs;
        while (left != 0) {
                TPML_PCR_SELECTION sel, *got = NULL;
                TPML_DIGEST *vals = NULL;
                pcr_selection(left, &sel);
                TSS2_RC rc = Esys_PCR_Read(t->ectx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &sel, NULL, &got, &vals);
                if (rc != TSS2_RC_SUCCESS)
                        return tpm_fail("reading the PCRs", rc);
                uint32_t done = 0;
                unsigned k = 0;
                for (unsigned i = 0; i < 24 && got->count == 1 && k < vals->count; i++)
                        if (got->pcrSelections[0].pcrSelect[i / 8] & (1u << (i % 8))) {
                                if ((left & (1u << i)) && vals->digests[k].size == 32) {
                                        memcpy(out[i], vals->digests[k].buffer, 32);
                                        done |= 1u << i;
                                }
                                k++;
                        }
                Esys_Free(got);
                Esys_Free(vals);
                if (done == 0) {
                        kw_err_set_detail("the TPM returns no SHA-256 value for PCR %d", __builtin_ctz(left));
                        KW_BAIL(KW_ERR_TPM);
                }
                left &= ~done;
        }
        return KW_OK;
}

/* PolicyPCR's pcrDigest: SHA-256 over the values of pcrs in index order. */
static void pcr_digest(uint32_t pcrs, const uint8_t (*vals)[32], TPM2B_DIGEST *out)
{
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        unsigned n = 0;
        out->size = 0;
        if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
                goto done;
        for (unsigned i = 0; i < 24; i++)
                if ((pcrs & (1u << i)) && EVP_DigestUpdate(md, vals[i], 32) != 1)
                        goto done;
        if (EVP_DigestFinal_ex(md, out->buffer, &n) == 1)
                out->size = (UINT16)n;
done:
        EVP_MD_CTX_free(md);
}

/* The image key as the TPM takes it (LoadExternal), the way systemd builds
 * it, so that the key's name -- and so the policy -- is the same. */
static void tpm_pubkey(const struct kwu_pubkey *k, TPM2B_PUBLIC *out)
{
        memset(out, 0, sizeof *out);
        out->size = sizeof(TPMT_PUBLIC);
        out->publicArea.type = TPM2_ALG_RSA;
        out->publicArea.nameAlg = TPM2_ALG_SHA256;
        out->publicArea.objectAttributes = TPMA_OBJECT_DECRYPT | TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_USERWITHAUTH;
        out->publicArea.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
        out->publicArea.parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
        out->publicArea.parameters.rsaDetail.keyBits = (TPMI_RSA_KEY_BITS)(k->n_len * 8);
        out->publicArea.parameters.rsaDetail.exponent = 65537;
        out->publicArea.unique.rsa.size = (UINT16)k->n_len;
        memcpy(out->publicArea.unique.rsa.buffer, k->n, k->n_len);
}

/*
 * The policy, as systemd 252 builds it: the signed PCRs first (PolicyPCR
 * over their current values, then PolicyAuthorize under the image key, with
 * a ticket from VerifySignature when a signature file is given, or none in
 * a trial session while sealing), then the literal PCRs (PolicyPCR).
 * *ret: the session (ESYS_TR_NONE for a trial one, flushed), *digest its
 * final digest.
 */
struct policy {
        uint32_t pcrs;                  /* literal                               */
        uint32_t pk_pcrs;               /* signed                                */
        const struct kwu_pubkey *pk;    /* with pk_pcrs                          */
        const char *sigfile;            /* unsealing a signed policy: its text   */
        size_t sigfile_len;
        const TPM2B_DIGEST *literal;    /* trial: the literal PCRs' pcrDigest,
                                         * NULL for their current values         */
};

static kw_result signed_part(struct kwu_tpm *t, ESYS_TR sess, const struct policy *p)
{
        TPM2B_PUBLIC pub;
        tpm_pubkey(p->pk, &pub);
        ESYS_TR key = ESYS_TR_NONE;
        TPM2B_NAME *name = NULL;
        TPM2B_DIGEST *approved = NULL;
        TPMT_TK_VERIFIED *ticket = NULL;
        static const TPMT_TK_VERIFIED no_ticket = { .tag = TPM2_ST_VERIFIED, .hierarchy = TPM2_RH_OWNER };
        static const TPM2B_NONCE no_ref = { 0 };
        TPML_PCR_SELECTION sel;
        pcr_selection(p->pk_pcrs, &sel);
        kw_result r = KW_OK;
        TSS2_RC rc = Esys_LoadExternal(t->ectx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, NULL, &pub, TPM2_RH_OWNER,
                                       &key);
        if (rc == TSS2_RC_SUCCESS)
                rc = Esys_TR_GetName(t->ectx, key, &name);
        if (rc == TSS2_RC_SUCCESS)
                rc = Esys_PolicyPCR(t->ectx, sess, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, NULL, &sel);
        if (rc == TSS2_RC_SUCCESS)
                rc = Esys_PolicyGetDigest(t->ectx, sess, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &approved);
        if (rc != TSS2_RC_SUCCESS)
                r = tpm_fail("the signed PCR policy", rc);
        if (r.code == 0 && p->sigfile != NULL) {
                uint8_t sig[KWU_SIG_MAX];
                size_t sig_len = 0;
                int other = 0;
                r = kwu_pcrsig_find(p->sigfile, p->sigfile_len, "sha256", p->pk_pcrs, p->pk, approved->buffer, sig,
                                    &sig_len, &other);
                if (r.code == KW_ERR_NOT_FOUND) {
                        char now[24 * 72];
                        pcr_values(t, p->pk_pcrs, now, sizeof now);
                        kw_err_set_detail("%s for this boot (%s)",
                                          other ? "the PCR policy is signed by another key than the enrolled one"
                                                : "no signature under the enrolled key",
                                          now);
                        r = KW_RESULT(other ? KW_ERR_TPM_SIGNATURE : KW_ERR_TPM_POLICY);
                }
                if (r.code == 0 && (sig_len != p->pk->n_len || approved->size != 32)) {
                        kw_err_set_detail("the signature is %zu bytes for a %zu-byte key", sig_len, p->pk->n_len);
                        r = KW_RESULT(KW_ERR_TPM_SIGNATURE);
                }
                if (r.code == 0) {
                        TPM2B_DIGEST h = { .size = 32 };
                        TPMT_SIGNATURE ts;
                        memset(&ts, 0, sizeof ts);
                        ts.sigAlg = TPM2_ALG_RSASSA;
                        ts.signature.rsassa.hash = TPM2_ALG_SHA256;
                        ts.signature.rsassa.sig.size = (UINT16)sig_len;
                        memcpy(ts.signature.rsassa.sig.buffer, sig, sig_len);
                        if (EVP_Digest(approved->buffer, approved->size, h.buffer, NULL, EVP_sha256(), NULL) != 1)
                                r = KW_RESULT(KW_ERR_CRYPTO);
                        else if (Esys_VerifySignature(t->ectx, key, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &h, &ts,
                                                      &ticket) != TSS2_RC_SUCCESS) {
                                kw_err_set_detail("the signature for this boot's PCR policy does not verify under "
                                                  "the enrolled key");
                                r = KW_RESULT(KW_ERR_TPM_SIGNATURE);
                        }
                }
        }
        if (r.code == 0) {
                rc = Esys_PolicyAuthorize(t->ectx, sess, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, approved, &no_ref,
                                          name, ticket != NULL ? ticket : &no_ticket);
                if (rc != TSS2_RC_SUCCESS)
                        r = tpm_fail("authorizing the signed PCR policy", rc);
        }
        Esys_Free(ticket);
        Esys_Free(approved);
        Esys_Free(name);
        flush(t, &key);
        return r;
}

static kw_result policy_session(struct kwu_tpm *t, ESYS_TR primary, ESYS_TR enc, TPM2_SE type,
                                const struct policy *p, ESYS_TR *ret, TPM2B_DIGEST **digest)
{
        static const TPMT_SYM_DEF sym = { .algorithm = TPM2_ALG_AES, .keyBits.aes = 128, .mode.aes = TPM2_ALG_CFB };
        TSS2_RC rc = Esys_StartAuthSession(t->ectx, primary, ESYS_TR_NONE, enc, ESYS_TR_NONE, ESYS_TR_NONE, NULL,
                                           type, &sym, TPM2_ALG_SHA256, ret);
        if (rc != TSS2_RC_SUCCESS)
                return tpm_fail("starting the policy session", rc);
        kw_result r = p->pk_pcrs != 0 ? signed_part(t, *ret, p) : KW_OK;
        if (r.code == 0 && p->pcrs != 0) {
                TPML_PCR_SELECTION sel;
                pcr_selection(p->pcrs, &sel);
                rc = Esys_PolicyPCR(t->ectx, *ret, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, p->literal, &sel);
                if (rc != TSS2_RC_SUCCESS)
                        r = tpm_fail("the PCR policy", rc);
        }
        if (r.code == 0) {
                rc = Esys_PolicyGetDigest(t->ectx, *ret, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, digest);
                if (rc != TSS2_RC_SUCCESS)
                        r = tpm_fail("the policy digest", rc);
        }
        if (r.code != 0)
                flush(t, ret);
        return r;
}

/* A policy digest in lower-case hex, as the token carries it ("" if it
 * does not fit, which a TPM2B_DIGEST always does). */
static void digest_hex(const TPM2B_DIGEST *d, char out[2 * sizeof d->buffer + 1])
{
        struct kw_buf b;
        kw_buf_init(&b, 2 * sizeof d->buffer + 1);
        out[0] = '\0';
        if (kw_hex_encode(d->buffer, d->size, &b).code == 0) {
                memcpy(out, b.p, b.len);
                out[b.len] = '\0';
        }
        kw_buf_free(&b);
}

/*
 * The policy digest p gives when its literal PCRs hold vals (a trial
 * session: the TPM takes the pcrDigest as given), in hex.  The signed part
 * needs no values: PolicyAuthorize replaces what came before it.
 */
static kw_result digest_for(struct kwu_tpm *t, ESYS_TR primary, ESYS_TR enc, const struct policy *p,
                            const uint8_t (*vals)[32], char hex[2 * sizeof(TPMU_HA) + 1])
{
        TPM2B_DIGEST lit;
        pcr_digest(p->pcrs, vals, &lit);
        KW_ENSURE(lit.size == 32, KW_ERR_CRYPTO);
        struct policy trial = *p;
        trial.sigfile = NULL;
        trial.literal = &lit;
        ESYS_TR sess = ESYS_TR_NONE;
        TPM2B_DIGEST *d = NULL;
        KW_TRY(policy_session(t, primary, enc, TPM2_SE_TRIAL, &trial, &sess, &d));
        flush(t, &sess);
        digest_hex(d, hex);
        Esys_Free(d);
        return KW_OK;
}

/* Which of pcrs differ between a and b. */
static uint32_t differing(uint32_t pcrs, const uint8_t (*a)[32], const uint8_t (*b)[32])
{
        uint32_t m = 0;
        for (unsigned i = 0; i < 24; i++)
                if ((pcrs & (1u << i)) && memcmp(a[i], b[i], 32) != 0)
                        m |= 1u << i;
        return m;
}

/* The keyward-tpm2-pcrs token: vals of the literal PCRs, for keyslot. */
static char *pcrs_token_json(int keyslot, uint32_t pcrs, const uint8_t (*vals)[32])
{
        cJSON *o = cJSON_CreateObject(), *ks = cJSON_CreateArray(), *v = cJSON_CreateObject();
        char slot[12], idx[4];
        struct kw_buf hex;
        kw_buf_init(&hex, 65);
        snprintf(slot, sizeof slot, "%d", keyslot);
        char *out = NULL;
        int ok = o != NULL && ks != NULL && v != NULL;
        for (unsigned i = 0; ok && i < 24; i++) {
                if (!(pcrs & (1u << i)))
                        continue;
                kw_buf_reset(&hex);
                snprintf(idx, sizeof idx, "%u", i);
                ok = kw_hex_encode(vals[i], 32, &hex).code == 0 && kw_buf_put(&hex, "", 1).code == 0 &&
                     cJSON_AddStringToObject(v, idx, (const char *)hex.p) != NULL;
        }
        if (ok) {
                cJSON_AddStringToObject(o, "type", "keyward-tpm2-pcrs");
                cJSON_AddItemToArray(ks, cJSON_CreateString(slot));
                cJSON_AddItemToObject(o, "keyslots", ks);
                ks = NULL;
                cJSON_AddStringToObject(o, "tpm2-pcr-bank", "sha256");
                cJSON_AddItemToObject(o, "tpm2-pcr-values", v);
                v = NULL;
                out = cJSON_PrintUnformatted(o);
        }
        kw_buf_free(&hex);
        cJSON_Delete(o);
        cJSON_Delete(ks);
        cJSON_Delete(v);
        return out;
}

static char *token_json(int keyslot, const struct kwu_tpm_binding *bind, TPMI_ALG_PUBLIC alg, const uint8_t *blob,
                        size_t blob_len, const TPM2B_DIGEST *policy)
{
        uint32_t pcrs = bind->pcrs;
        struct kw_buf b64, pk64;
        kw_buf_init(&b64, 2 * BLOB_MAX);
        kw_buf_init(&pk64, 32 * 1024);
        char slot[12], hex[2 * sizeof policy->buffer + 1];
        snprintf(slot, sizeof slot, "%d", keyslot);
        digest_hex(policy, hex);
        cJSON *o = cJSON_CreateObject(), *ks = cJSON_CreateArray(), *pa = cJSON_CreateArray();
        char *out = NULL;
        if (o != NULL && ks != NULL && pa != NULL && kw_b64_encode(blob, blob_len, &b64).code == 0 &&
            kw_buf_put(&b64, "", 1).code == 0) {
                cJSON_AddStringToObject(o, "type", "systemd-tpm2");
                cJSON_AddItemToArray(ks, cJSON_CreateString(slot));
                cJSON_AddItemToObject(o, "keyslots", ks);
                ks = NULL;
                cJSON_AddStringToObject(o, "tpm2-blob", (const char *)b64.p);
                for (unsigned i = 0; i < 24; i++)
                        if (pcrs & (1u << i))
                                cJSON_AddItemToArray(pa, cJSON_CreateNumber(i));
                cJSON_AddItemToObject(o, "tpm2-pcrs", pa);
                pa = NULL;
                cJSON_AddStringToObject(o, "tpm2-pcr-bank", "sha256");
                cJSON_AddStringToObject(o, "tpm2-primary-alg", alg == TPM2_ALG_ECC ? "ecc" : "rsa");
                cJSON_AddStringToObject(o, "tpm2-policy-hash", hex);
                cJSON_AddBoolToObject(o, "tpm2-pin", 0);
                int ok = 1;
                if (bind->pk_pcrs != 0) {   /* the PEM text as given, base64, as systemd writes it */
                        cJSON *kp = cJSON_CreateArray();
                        for (unsigned i = 0; kp != NULL && i < 24; i++)
                                if (bind->pk_pcrs & (1u << i))
                                        cJSON_AddItemToArray(kp, cJSON_CreateNumber(i));
                        cJSON_AddItemToObject(o, "tpm2_pubkey_pcrs", kp);
                        ok = kp != NULL &&
                             kw_b64_encode((const uint8_t *)bind->pk_pem, bind->pk_pem_len, &pk64).code == 0 &&
                             kw_buf_put(&pk64, "", 1).code == 0 &&
                             cJSON_AddStringToObject(o, "tpm2_pubkey", (const char *)pk64.p) != NULL;
                }
                out = ok ? cJSON_PrintUnformatted(o) : NULL;
        }
        kw_buf_free(&pk64);
        cJSON_Delete(o);
        cJSON_Delete(ks);
        cJSON_Delete(pa);
        kw_buf_free(&b64);
        return out;
}

kw_result kwu_tpm_seal(struct kwu_tpm *t, const struct kwu_tpm_binding *b, int keyslot,
                       char pass[KWU_TPM2_PASSPHRASE + 1], char **token, char **pcrs_token)
{
        KW_ENSURE(t != NULL && b != NULL && pass != NULL && token != NULL && pcrs_token != NULL &&
                          (b->pcrs | b->pk_pcrs) != 0 &&
                          (b->pcrs | b->pk_pcrs) < (1u << 24) && (b->pk_pcrs == 0) == (b->pk_pem == NULL),
                  KW_ERR_INPUT);
        struct kwu_pubkey pk;
        struct policy p = { .pcrs = b->pcrs, .pk_pcrs = b->pk_pcrs, .pk = &pk };
        if (b->pk_pem != NULL)
                KW_TRY(kwu_pubkey_from_pem(b->pk_pem, b->pk_pem_len, &pk));
        ESYS_TR primary = ESYS_TR_NONE, enc = ESYS_TR_NONE, pol = ESYS_TR_NONE;
        TPM2B_DIGEST *digest = NULL;
        TPM2B_PRIVATE *priv = NULL;
        TPM2B_PUBLIC *pub = NULL;
        TPMI_ALG_PUBLIC alg = TPM2_ALG_ECC;
        TPM2B_SENSITIVE_CREATE sens;
        memset(&sens, 0, sizeof sens);
        uint8_t blob[BLOB_MAX];
        size_t off = 0;
        kw_result r = make_primary(t, alg, &primary);
        if (r.code != 0) {
                alg = TPM2_ALG_RSA;
                r = make_primary(t, alg, &primary);
        }
        if (r.code == 0)
                r = encryption_session(t, primary, &enc);
        /* a trial session where the signed PCRs' values are not today's to
         * check (systemd does the same); a real one otherwise, as some TPMs
         * get trial sessions wrong */
        if (r.code == 0)
                r = policy_session(t, primary, enc, b->pk_pcrs != 0 ? TPM2_SE_TRIAL : TPM2_SE_POLICY, &p, &pol, &digest);
        flush(t, &pol);   /* only its digest is needed to seal */
        /* the literal PCRs' values, recorded for the messages of a later
         * refusal: read again, and only if they give the digest just sealed
         * to (they did not move in between) */
        uint8_t vals[24][32];
        *pcrs_token = NULL;
        if (r.code == 0 && b->pcrs != 0) {
                char want[2 * sizeof(TPMU_HA) + 1], got[2 * sizeof(TPMU_HA) + 1];
                digest_hex(digest, want);
                r = pcr_read(t, b->pcrs, vals);
                if (r.code == 0)
                        r = digest_for(t, primary, enc, &p, (const uint8_t(*)[32])vals, got);
                if (r.code == 0 && strcmp(want, got) != 0) {   /* lint: allow (policy digests are public) */
                        kw_err_set_detail("the PCRs changed while sealing: try again");
                        r = KW_RESULT(KW_ERR_TPM);
                }
                if (r.code == 0 && (*pcrs_token = pcrs_token_json(keyslot, b->pcrs, (const uint8_t(*)[32])vals)) ==
                                           NULL)
                        r = KW_RESULT(KW_ERR_NOMEM);
        }
        if (r.code == 0 && RAND_priv_bytes(sens.sensitive.data.buffer, KWU_TPM2_SECRET) != 1)
                r = KW_RESULT(KW_ERR_RANDOM);
        if (r.code == 0) {
                static const TPM2B_DATA outside = { 0 };
                static const TPML_PCR_SELECTION creation = { 0 };
                TPM2B_PUBLIC tmpl = { .size = sizeof(TPMT_PUBLIC) };
                tmpl.publicArea.type = TPM2_ALG_KEYEDHASH;
                tmpl.publicArea.nameAlg = TPM2_ALG_SHA256;
                tmpl.publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT;
                tmpl.publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
                tmpl.publicArea.unique.keyedHash.size = 32;
                tmpl.publicArea.authPolicy = *digest;
                sens.size = sizeof sens.sensitive;
                sens.sensitive.data.size = KWU_TPM2_SECRET;
                /* the encrypted session carries the secret to the TPM */
                TSS2_RC rc = Esys_Create(t->ectx, primary, enc, ESYS_TR_NONE, ESYS_TR_NONE, &sens, &tmpl, &outside,
                                         &creation, &priv, &pub, NULL, NULL, NULL);
                if (rc != TSS2_RC_SUCCESS)
                        r = tpm_fail("sealing the secret", rc);
        }
        if (r.code == 0 && (Tss2_MU_TPM2B_PRIVATE_Marshal(priv, blob, sizeof blob, &off) != TSS2_RC_SUCCESS ||
                            Tss2_MU_TPM2B_PUBLIC_Marshal(pub, blob, sizeof blob, &off) != TSS2_RC_SUCCESS)) {
                kw_err_set_detail("the sealed object does not marshal into %u bytes", BLOB_MAX);
                r = KW_RESULT(KW_ERR_TPM);
        }
        if (r.code == 0)
                r = kwu_passphrase_b64(sens.sensitive.data.buffer, pass);
        if (r.code == 0) {
                *token = token_json(keyslot, b, alg, blob, off, digest);
                if (*token == NULL)
                        r = KW_RESULT(KW_ERR_NOMEM);
        }
        OPENSSL_cleanse(&sens, sizeof sens);
        if (r.code != 0) {
                OPENSSL_cleanse(pass, KWU_TPM2_PASSPHRASE + 1);
                free(*token);
                *token = NULL;
                free(*pcrs_token);
                *pcrs_token = NULL;
        }
        Esys_Free(digest);
        Esys_Free(priv);
        Esys_Free(pub);
        flush(t, &enc);
        flush(t, &primary);
        return r;
}

/* Marshalled again, the parts give back exactly the bytes they came from:
 * tss2-mu accepts a TPM2B whose size field disagrees with what follows (the
 * fuzzer found one), and such a blob is refused rather than loaded in a
 * form the header does not say. */
static int canonical(const TPM2B_PRIVATE *priv, const TPM2B_PUBLIC *pub, const uint8_t *raw, size_t n)
{
        uint8_t again[BLOB_MAX];
        size_t off = 0;
        return Tss2_MU_TPM2B_PRIVATE_Marshal(priv, again, sizeof again, &off) == TSS2_RC_SUCCESS &&
               Tss2_MU_TPM2B_PUBLIC_Marshal(pub, again, sizeof again, &off) == TSS2_RC_SUCCESS && off == n &&
               memcmp(again, raw, n) == 0;
}

kw_result kwu_tpm_blob_parse(const char *blob_b64, unsigned token_id, TPM2B_PRIVATE *ret_priv,
                             TPM2B_PUBLIC *ret_pub)
{
        KW_ENSURE(blob_b64 != NULL && ret_priv != NULL && ret_pub != NULL, KW_ERR_INPUT);
        struct kw_buf raw;
        kw_buf_init(&raw, BLOB_MAX);
        size_t n = strlen(blob_b64);
        kw_result r = n <= 2 * BLOB_MAX ? kw_b64_decode(blob_b64, n, &raw) : KW_RESULT(KW_ERR_TOO_LARGE);
        TPM2B_PRIVATE priv;
        TPM2B_PUBLIC pub;
        memset(&priv, 0, sizeof priv);
        memset(&pub, 0, sizeof pub);
        size_t off = 0;
        if (r.code != 0 || Tss2_MU_TPM2B_PRIVATE_Unmarshal(raw.p, raw.len, &off, &priv) != TSS2_RC_SUCCESS ||
            Tss2_MU_TPM2B_PUBLIC_Unmarshal(raw.p, raw.len, &off, &pub) != TSS2_RC_SUCCESS || off != raw.len ||
            !canonical(&priv, &pub, raw.p, raw.len)) {
                kw_buf_free(&raw);
                kw_err_set_detail("token %u's tpm2-blob is not a sealed TPM object", token_id);
                KW_BAIL(KW_ERR_LUKS_TAMPERED);
        }
        kw_buf_free(&raw);
        *ret_priv = priv;
        *ret_pub = pub;
        return KW_OK;
}

/*
 * The detail of a refusal for PCRs that moved: with the values recorded at
 * sealing (a keyward-tpm2-pcrs token), and only when they give the token's
 * policy digest (else they were edited and prove nothing), each literal PCR
 * that differs with its expected and current value; without them, the
 * current values.
 */
static void mismatch(struct kwu_tpm *t, ESYS_TR primary, ESYS_TR enc, const struct kwu_token *tok,
                     const struct kwu_tpm_token_data *d, const struct policy *p)
{
        char now[24 * 72], got[2 * sizeof(TPMU_HA) + 1];
        uint8_t cur[24][32];
        if (d->expected == NULL || (d->expected_mask != tok->pcrs) || pcr_read(t, tok->pcrs, cur).code != 0 ||
            digest_for(t, primary, enc, p, d->expected, got).code != 0 ||
            strcmp(got, d->policy_hex) != 0) {   /* lint: allow (policy digests are public) */
                pcr_values(t, tok->pcrs | p->pk_pcrs, now, sizeof now);
                kw_err_set_detail("the PCRs of token %u changed since enrollment (%s); now %s", tok->id,
                                  d->expected == NULL ? "the values sealed to were not recorded"
                                                      : "the values recorded for them do not give its policy",
                                  now);
                return;
        }
        char text[512];
        size_t n = 0;
        struct kw_buf hx;
        kw_buf_init(&hx, 160);
        for (unsigned i = 0; i < 24 && n < sizeof text; i++) {
                if (!(tok->pcrs & (1u << i)) || memcmp(cur[i], d->expected[i], 32) == 0)
                        continue;
                kw_buf_reset(&hx);
                if (kw_hex_encode(d->expected[i], 32, &hx).code != 0 || kw_buf_put(&hx, ", now ", 6).code != 0 ||
                    kw_hex_encode(cur[i], 32, &hx).code != 0 || kw_buf_put(&hx, "", 1).code != 0)
                        break;
                n += (size_t)snprintf(text + n, sizeof text - n, "%sPCR %u: expected %s", n ? "; " : "", i,
                                      (const char *)hx.p);
        }
        kw_buf_free(&hx);
        char same[80];
        kwu_mask_text(tok->pcrs & ~differing(tok->pcrs, cur, d->expected), same, sizeof same);
        kw_err_set_detail("the PCRs of token %u changed since enrollment: %s%s%s", tok->id,
                          n ? text : "no literal PCR differs (its signed part does not hold)",
                          strcmp(same, "none") != 0 ? "; unchanged: PCR " : "",
                          strcmp(same, "none") != 0 ? same : "");
}

kw_result kwu_tpm_unseal(struct kwu_tpm *t, const struct kwu_token *tok, const struct kwu_tpm_token_data *d,
                         char pass[KWU_TPM2_PASSPHRASE + 1])
{
        KW_ENSURE(t != NULL && tok != NULL && d != NULL && d->blob_b64 != NULL && d->policy_hex != NULL &&
                          pass != NULL,
                  KW_ERR_INPUT);
        const char *blob_b64 = d->blob_b64, *policy_hex = d->policy_hex;
        if (tok->pin || strcmp(tok->bank, "sha256") != 0) {
                kw_err_set_detail("token %u needs a PIN or another bank than sha256: not unsealed by this build",
                                  tok->id);
                KW_BAIL(KW_ERR_UNSUPPORTED);
        }
        struct kwu_pubkey pk;
        struct policy p = { .pcrs = tok->pcrs, .pk_pcrs = tok->has_pubkey ? tok->pubkey_pcrs : 0, .pk = &pk };
        if (tok->has_pubkey) {
                if (d->sigfile == NULL) {
                        kw_err_set_detail("token %u has a signed PCR policy and no signature file was found (%s)",
                                          tok->id, d->sigfile_name != NULL ? d->sigfile_name : "none given");
                        KW_BAIL(KW_ERR_TPM_POLICY);
                }
                struct kw_buf pem;
                kw_buf_init(&pem, 32 * 1024);
                kw_result pr = d->pubkey_b64 != NULL ? kw_b64_decode(d->pubkey_b64, strlen(d->pubkey_b64), &pem)
                                                     : KW_RESULT(KW_ERR_MISSING_FIELD);
                if (pr.code == 0)
                        pr = kwu_pubkey_from_pem((const char *)pem.p, pem.len, &pk);
                kw_buf_free(&pem);
                if (pr.code != 0) {
                        kw_err_set_detail("token %u's tpm2_pubkey is not an RSA public key in PEM", tok->id);
                        KW_BAIL(KW_ERR_LUKS_TAMPERED);
                }
                p.sigfile = d->sigfile;
                p.sigfile_len = d->sigfile_len;
        }
        TPM2B_PRIVATE priv;
        TPM2B_PUBLIC pub;
        KW_TRY(kwu_tpm_blob_parse(blob_b64, tok->id, &priv, &pub));
        ESYS_TR primary = ESYS_TR_NONE, enc = ESYS_TR_NONE, pol = ESYS_TR_NONE, obj = ESYS_TR_NONE;
        TPM2B_DIGEST *digest = NULL;
        TPM2B_SENSITIVE_DATA *out = NULL;
        kw_result r = make_primary(t, strcmp(tok->primary_alg, "rsa") == 0 ? TPM2_ALG_RSA : TPM2_ALG_ECC, &primary);
        if (r.code == 0)
                r = encryption_session(t, primary, &enc);
        if (r.code == 0)
                r = policy_session(t, primary, enc, TPM2_SE_POLICY, &p, &pol, &digest);
        if (r.code == 0) {
                char hex[2 * sizeof digest->buffer + 1];
                digest_hex(digest, hex);
                if (strcmp(hex, policy_hex) != 0) {   /* lint: allow (policy digests are public) */
                        mismatch(t, primary, enc, tok, d, &p);
                        r = KW_RESULT(KW_ERR_TPM_POLICY);
                }
        }
        if (r.code == 0) {
                TSS2_RC rc = Esys_Load(t->ectx, primary, enc, ESYS_TR_NONE, ESYS_TR_NONE, &priv, &pub, &obj);
                if (rc != TSS2_RC_SUCCESS)
                        r = tpm_fail("loading the sealed object (another TPM?)", rc);
        }
        if (r.code == 0) {
                TSS2_RC rc = Esys_Unseal(t->ectx, obj, pol, enc, ESYS_TR_NONE, &out);
                if (rc != TSS2_RC_SUCCESS)
                        r = tpm_fail("unsealing", rc);
                else if (out->size != KWU_TPM2_SECRET) {
                        kw_err_set_detail("the sealed secret is %u bytes, not %u", out->size, KWU_TPM2_SECRET);
                        r = KW_RESULT(KW_ERR_LUKS_TAMPERED);
                }
        }
        if (r.code == 0)
                r = kwu_passphrase_b64(out->buffer, pass);
        if (out != NULL)
                OPENSSL_cleanse(out, sizeof *out);   /* tpm2-tss frees without wiping */
        Esys_Free(out);
        Esys_Free(digest);
        flush(t, &obj);
        flush(t, &pol);
        flush(t, &enc);
        flush(t, &primary);
        return r;
}
