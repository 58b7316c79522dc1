/*
 * collect_tpm.c - the TPM2 piece (and the Azure HCL report kept in the vTPM)
 * with tpm2-tss ESYS over any TCTI (tctildr: "device:/dev/tpmrm0",
 * "swtpm:host=127.0.0.1,port=P", ...).
 *
 * The AK lives at a persistent handle.  At first use, when nothing is there,
 * it is created under a storage primary key (SRK, ECC P-256, owner
 * hierarchy with empty auth) as an ECC P-256 ECDSA-SHA256 key with
 * restricted|sign|fixedTPM|fixedParent and made persistent; the transient
 * SRK and AK handles are flushed.  An existing key at the handle (e.g. the
 * Azure vTPM AK at 0x81000003, RSA) is used as it is.
 *
 * TSS2_RC codes are converted once here (KW_ERR_TPM), the original kept in
 * the "absent" reason, which is public text.  When the configured TPM gives
 * no quote, a->tpm_problem says why for the operator (the TCTI string
 * included, which the public reason leaves out); the front logs it as one
 * JSON line.  tpm2-tss's own logger is silenced (kw_collect_tpm_quiet_logs):
 * its "ERROR:tcti:..." lines on stderr would break the JSON log.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "collect_int.h"

#define EK_CERT_RSA_NV 0x01c00002u
#define EK_CERT_ECC_NV 0x01c0000au
#define NV_MAX 16384u              /* bytes read from one NV index */
#define NV_CHUNK 512u
#define EVENT_LOG_MAX (512u * 1024)

struct tpm {
        TSS2_TCTI_CONTEXT *tcti;
        ESYS_CONTEXT *ectx;
};

static void tpm_close(struct tpm *t)
{
        if (t->ectx != NULL)
                Esys_Finalize(&t->ectx);
        if (t->tcti != NULL)
                Tss2_TctiLdr_Finalize(&t->tcti);
}

static void why_rc(char *why, size_t whysz, const char *what, TSS2_RC rc)
{
        snprintf(why, whysz, "%s: %s (TSS2_RC 0x%x)", what, Tss2_RC_Decode(rc), (unsigned)rc);
}

/*
 * tpm2-tss (3.2) logs through its own logger, to stderr, at level ERROR by
 * default, and reads the level from TSS2_LOG at each module's first message.
 * Set before the first TSS call, TSS2_LOG=all+NONE turns it off; an
 * operator's own TSS2_LOG (e.g. all+debug while debugging) is kept.
 *
 * setenv is not safe against a concurrent getenv in glibc only when it
 * frees an environment array it allocated earlier; this is the process's
 * first setenv (nothing else in keywardd calls it), which only allocates,
 * so another thread's getenv sees the old or the new array, both valid.
 */
static void tss_quiet_once(void)
{
        (void)setenv("TSS2_LOG", "all+NONE", 0);
}

void kw_collect_tpm_quiet_logs(void)
{
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, tss_quiet_once);
}

/* What to check for a TCTI that does not open: the device's own error, or
 * whether a simulator listens. */
static void tcti_hint(const char *tcti, char *out, size_t outsz)
{
        out[0] = '\0';
        if (strncmp(tcti, "device", 6) == 0 && (tcti[6] == '\0' || tcti[6] == ':')) {
                const char *dev = tcti[6] == ':' && tcti[7] != '\0' ? tcti + 7 : "/dev/tpmrm0";
                if (access(dev, R_OK | W_OK) != 0)
                        snprintf(out, outsz, "; %.200s: %s (no TPM, or no access for this user: "
                                 "the tss group)", dev, strerror(errno));
        } else if (strncmp(tcti, "swtpm", 5) == 0 || strncmp(tcti, "mssim", 5) == 0) {
                snprintf(out, outsz, "; is the TPM simulator listening there?");
        }
}

/* ECC P-256 templates: the storage key (restricted decrypt, AES-128-CFB) and
 * the AK (restricted sign, ECDSA-SHA256). */
static TPM2B_PUBLIC ecc_template(int ak)
{
        TPM2B_PUBLIC t;
        memset(&t, 0, sizeof t);
        t.publicArea.type = TPM2_ALG_ECC;
        t.publicArea.nameAlg = TPM2_ALG_SHA256;
        t.publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                        TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                                        TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_NODA |
                                        (ak ? TPMA_OBJECT_SIGN_ENCRYPT : TPMA_OBJECT_DECRYPT);
        TPMS_ECC_PARMS *e = &t.publicArea.parameters.eccDetail;
        if (ak) {
                e->symmetric.algorithm = TPM2_ALG_NULL;
                e->scheme.scheme = TPM2_ALG_ECDSA;
                e->scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
        } else {
                e->symmetric.algorithm = TPM2_ALG_AES;
                e->symmetric.keyBits.aes = 128;
                e->symmetric.mode.aes = TPM2_ALG_CFB;
                e->scheme.scheme = TPM2_ALG_NULL;
                t.publicArea.unique.ecc.x.size = 32;
                t.publicArea.unique.ecc.y.size = 32;
        }
        e->curveID = TPM2_ECC_NIST_P256;
        e->kdf.scheme = TPM2_ALG_NULL;
        return t;
}

/* Creates the AK under a fresh SRK and persists it at handle. */
static TSS2_RC ak_create(ESYS_CONTEXT *ectx, uint32_t handle, const char **ret_step)
{
        TPM2B_SENSITIVE_CREATE sens;
        memset(&sens, 0, sizeof sens);
        TPM2B_DATA outside = { .size = 0 };
        TPML_PCR_SELECTION none = { .count = 0 };
        TPM2B_PUBLIC srk_t = ecc_template(0), ak_t = ecc_template(1);
        ESYS_TR srk = ESYS_TR_NONE, ak = ESYS_TR_NONE, persisted = ESYS_TR_NONE;
        TPM2B_PRIVATE *priv = NULL;
        TPM2B_PUBLIC *pub = NULL;
        *ret_step = "CreatePrimary (SRK)";
        TSS2_RC rc = Esys_CreatePrimary(ectx, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                        ESYS_TR_NONE, &sens, &srk_t, &outside, &none, &srk, NULL,
                                        NULL, NULL, NULL);
        if (rc == TSS2_RC_SUCCESS) {
                *ret_step = "Create (AK)";
                rc = Esys_Create(ectx, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sens,
                                 &ak_t, &outside, &none, &priv, &pub, NULL, NULL, NULL);
        }
        if (rc == TSS2_RC_SUCCESS) {
                *ret_step = "Load (AK)";
                rc = Esys_Load(ectx, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, priv, pub, &ak);
        }
        if (rc == TSS2_RC_SUCCESS) {
                *ret_step = "EvictControl (persist AK)";
                rc = Esys_EvictControl(ectx, ESYS_TR_RH_OWNER, ak, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                       ESYS_TR_NONE, handle, &persisted);
        }
        if (ak != ESYS_TR_NONE)
                (void)Esys_FlushContext(ectx, ak);
        if (srk != ESYS_TR_NONE)
                (void)Esys_FlushContext(ectx, srk);
        if (persisted != ESYS_TR_NONE)
                Esys_TR_Close(ectx, &persisted);   /* the object stays in the TPM */
        Esys_Free(priv);   /* wrapped by the TPM's storage key: not a secret outside it */
        Esys_Free(pub);
        return rc;
}

/* Reads a whole NV index (owner auth, else the index's own auth). */
static TSS2_RC nv_read(ESYS_CONTEXT *ectx, uint32_t index, uint8_t **ret, size_t *ret_len)
{
        ESYS_TR nv = ESYS_TR_NONE;
        TSS2_RC rc = Esys_TR_FromTPMPublic(ectx, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nv);
        if (rc != TSS2_RC_SUCCESS)
                return rc;
        TPM2B_NV_PUBLIC *npub = NULL;
        rc = Esys_NV_ReadPublic(ectx, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &npub, NULL);
        size_t size = rc == TSS2_RC_SUCCESS ? npub->nvPublic.dataSize : 0;
        Esys_Free(npub);
        uint8_t *p = NULL;
        if (rc == TSS2_RC_SUCCESS && (size == 0 || size > NV_MAX))
                rc = TSS2_ESYS_RC_BAD_SIZE;
        if (rc == TSS2_RC_SUCCESS && (p = malloc(size)) == NULL)
                rc = TSS2_ESYS_RC_MEMORY;
        for (size_t off = 0; rc == TSS2_RC_SUCCESS && off < size;) {
                uint16_t n = (uint16_t)(size - off > NV_CHUNK ? NV_CHUNK : size - off);
                TPM2B_MAX_NV_BUFFER *data = NULL;
                rc = Esys_NV_Read(ectx, ESYS_TR_RH_OWNER, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                  ESYS_TR_NONE, n, (uint16_t)off, &data);
                if (rc != TSS2_RC_SUCCESS && off == 0)
                        rc = Esys_NV_Read(ectx, nv, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                          ESYS_TR_NONE, n, (uint16_t)off, &data);
                if (rc == TSS2_RC_SUCCESS && (data->size == 0 || data->size > n))
                        rc = TSS2_ESYS_RC_BAD_SIZE;
                if (rc == TSS2_RC_SUCCESS) {
                        memcpy(p + off, data->buffer, data->size);
                        off += data->size;
                }
                Esys_Free(data);
        }
        Esys_TR_Close(ectx, &nv);
        if (rc != TSS2_RC_SUCCESS) {
                free(p);
                return rc;
        }
        *ret = p;
        *ret_len = size;
        return TSS2_RC_SUCCESS;
}

/* Adds name: base64(NV contents) or {"absent":...}... as a plain member
 * (for the EK certificate: "ek_cert" or "ek_cert_absent"). */
KW_MUST_USE static kw_result add_nv(ESYS_CONTEXT *ectx, cJSON *obj, const char *name, uint32_t index,
                                    int *ret_found)
{
        uint8_t *p = NULL;
        size_t n = 0;
        *ret_found = 0;
        if (nv_read(ectx, index, &p, &n) != TSS2_RC_SUCCESS)
                return KW_OK;
        kw_result r = kw_collect_add_b64(obj, name, p, n);
        free(p);
        if (r.code == 0)
                *ret_found = 1;
        return r;
}

KW_MUST_USE static kw_result add_event_log(struct kw_attest *a, cJSON *tpm)
{
        char why[300];
        if (a->event_log[0] == '\0')
                return kw_collect_absent(tpm, "event_log", "no event log configured ([attestation] event_log)");
        int fd = open(a->event_log, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                snprintf(why, sizeof why, "cannot open %.200s: %s", a->event_log, strerror(errno));
                return kw_collect_absent(tpm, "event_log", why);
        }
        uint8_t *p = malloc(EVENT_LOG_MAX);
        size_t n = 0;
        ssize_t k = 0;
        while (p != NULL && n < EVENT_LOG_MAX && (k = read(fd, p + n, EVENT_LOG_MAX - n)) > 0)
                n += (size_t)k;
        close(fd);
        kw_result r;
        if (p == NULL)
                r = KW_RESULT(KW_ERR_NOMEM);
        else if (k < 0 || n == 0 || n == EVENT_LOG_MAX)
                r = kw_collect_absent(tpm, "event_log", k < 0 ? "cannot read the event log"
                                                      : n == 0 ? "the event log is empty"
                                                               : "the event log is over 512 KiB");
        else
                r = kw_collect_add_b64(tpm, "event_log", p, n);
        free(p);
        return r;
}

/* The selection of a->pcr_mask in the sha256 bank. */
static TPML_PCR_SELECTION pcr_selection(uint32_t mask)
{
        TPML_PCR_SELECTION s;
        memset(&s, 0, sizeof s);
        s.count = 1;
        s.pcrSelections[0].hash = TPM2_ALG_SHA256;
        s.pcrSelections[0].sizeofSelect = 3;
        for (unsigned i = 0; i < 24; i++)
                if (mask & (1u << i))
                        s.pcrSelections[0].pcrSelect[i / 8] |= (uint8_t)(1u << (i % 8));
        return s;
}

/* Adds "pcrs": {"<n>": hex, ...} read one PCR at a time. */
KW_MUST_USE static kw_result add_pcrs(ESYS_CONTEXT *ectx, uint32_t mask, cJSON *tpm, TSS2_RC *ret_rc)
{
        cJSON *pcrs = cJSON_AddObjectToObject(tpm, "pcrs");
        KW_ENSURE(pcrs != NULL, KW_ERR_NOMEM);
        *ret_rc = TSS2_RC_SUCCESS;
        for (unsigned i = 0; i < 24; i++) {
                if (!(mask & (1u << i)))
                        continue;
                TPML_PCR_SELECTION sel = pcr_selection(1u << i);
                TPML_DIGEST *vals = NULL;
                TSS2_RC rc = Esys_PCR_Read(ectx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &sel, NULL,
                                           NULL, &vals);
                if (rc == TSS2_RC_SUCCESS && (vals->count != 1 || vals->digests[0].size != 32))
                        rc = TSS2_ESYS_RC_BAD_VALUE;
                kw_result r = KW_OK;
                if (rc == TSS2_RC_SUCCESS) {
                        char name[4];
                        snprintf(name, sizeof name, "%u", i);
                        r = kw_collect_add_hex(pcrs, name, vals->digests[0].buffer, 32);
                }
                Esys_Free(vals);
                KW_TRY(r);
                if (rc != TSS2_RC_SUCCESS) {
                        *ret_rc = rc;
                        return KW_OK;
                }
        }
        return KW_OK;
}

/* The quote and everything around it, into tpm; why set when it fails. */
KW_MUST_USE static kw_result quote(struct kw_attest *a, ESYS_CONTEXT *ectx, const uint8_t bind[32],
                                   cJSON *tpm, char *why, size_t whysz, int *ret_ok)
{
        *ret_ok = 0;
        ESYS_TR ak = ESYS_TR_NONE;
        TSS2_RC rc = Esys_TR_FromTPMPublic(ectx, a->ak_handle, ESYS_TR_NONE, ESYS_TR_NONE,
                                           ESYS_TR_NONE, &ak);
        if (rc != TSS2_RC_SUCCESS) {
                const char *step = "";
                rc = ak_create(ectx, a->ak_handle, &step);
                if (rc != TSS2_RC_SUCCESS) {
                        why_rc(why, whysz, step, rc);
                        return KW_OK;
                }
                rc = Esys_TR_FromTPMPublic(ectx, a->ak_handle, ESYS_TR_NONE, ESYS_TR_NONE,
                                           ESYS_TR_NONE, &ak);
                if (rc != TSS2_RC_SUCCESS) {
                        why_rc(why, whysz, "the new AK is not at its handle", rc);
                        return KW_OK;
                }
        }
        TPM2B_PUBLIC *pub = NULL;
        TPM2B_ATTEST *att = NULL;
        TPMT_SIGNATURE *sig = NULL;
        kw_result r = KW_OK;
        rc = Esys_ReadPublic(ectx, ak, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, NULL, NULL);
        if (rc != TSS2_RC_SUCCESS) {
                why_rc(why, whysz, "ReadPublic (AK)", rc);
                goto out;
        }
        /* the key's own scheme; a key without one signs RSASSA / ECDSA with SHA-256 */
        TPMT_SIG_SCHEME scheme;
        memset(&scheme, 0, sizeof scheme);
        scheme.scheme = TPM2_ALG_NULL;
        const TPMT_PUBLIC *pa = &pub->publicArea;
        if (pa->type == TPM2_ALG_RSA && pa->parameters.rsaDetail.scheme.scheme == TPM2_ALG_NULL) {
                scheme.scheme = TPM2_ALG_RSASSA;
                scheme.details.rsassa.hashAlg = TPM2_ALG_SHA256;
        }
        if (pa->type == TPM2_ALG_ECC && pa->parameters.eccDetail.scheme.scheme == TPM2_ALG_NULL) {
                scheme.scheme = TPM2_ALG_ECDSA;
                scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
        }
        TPM2B_DATA qd = { .size = KW_ATTEST_BIND_LEN };
        memcpy(qd.buffer, bind, KW_ATTEST_BIND_LEN);
        TPML_PCR_SELECTION sel = pcr_selection(a->pcr_mask);
        rc = Esys_Quote(ectx, ak, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &qd, &scheme, &sel,
                        &att, &sig);
        if (rc != TSS2_RC_SUCCESS) {
                why_rc(why, whysz, "Quote", rc);
                goto out;
        }
        uint8_t m[sizeof(TPM2B_PUBLIC) + 8];
        size_t mo = 0;
        rc = Tss2_MU_TPM2B_PUBLIC_Marshal(pub, m, sizeof m, &mo);
        if (rc != TSS2_RC_SUCCESS) {
                why_rc(why, whysz, "marshal AK public", rc);
                goto out;
        }
        KW_TRY_GOTO(r, kw_collect_add_b64(tpm, "ak_public", m, mo), out);
        KW_TRY_GOTO(r, kw_collect_add_b64(tpm, "quote", att->attestationData, att->size), out);
        uint8_t s[sizeof(TPMT_SIGNATURE) + 8];
        size_t so = 0;
        rc = Tss2_MU_TPMT_SIGNATURE_Marshal(sig, s, sizeof s, &so);
        if (rc != TSS2_RC_SUCCESS) {
                why_rc(why, whysz, "marshal signature", rc);
                goto out;
        }
        KW_TRY_GOTO(r, kw_collect_add_b64(tpm, "signature", s, so), out);
        char handle[16];
        snprintf(handle, sizeof handle, "0x%08x", (unsigned)a->ak_handle);
        if (cJSON_AddStringToObject(tpm, "ak_handle", handle) == NULL ||
            cJSON_AddStringToObject(tpm, "pcr_bank", "sha256") == NULL) {
                r = KW_RESULT(KW_ERR_NOMEM);
                goto out;
        }
        KW_TRY_GOTO(r, add_pcrs(ectx, a->pcr_mask, tpm, &rc), out);
        if (rc != TSS2_RC_SUCCESS) {
                why_rc(why, whysz, "PCR_Read", rc);
                goto out;
        }
        int found = 0;
        KW_TRY_GOTO(r, add_nv(ectx, tpm, "ek_cert", EK_CERT_RSA_NV, &found), out);
        if (!found)
                KW_TRY_GOTO(r, add_nv(ectx, tpm, "ek_cert", EK_CERT_ECC_NV, &found), out);
        if (!found)
                KW_TRY_GOTO(r, kw_collect_absent(tpm, "ek_cert_info",
                                                 "no EK certificate at NV 0x01c00002 or 0x01c0000a"), out);
        KW_TRY_GOTO(r, add_event_log(a, tpm), out);
        *ret_ok = 1;
out:
        Esys_Free(pub);
        Esys_Free(att);
        Esys_Free(sig);
        Esys_TR_Close(ectx, &ak);   /* persistent: nothing to flush */
        return r;
}

kw_result kw_collect_tpm(struct kw_attest *a, const uint8_t bind[KW_ATTEST_BIND_LEN], cJSON *doc)
{
        if (a->tpm_tcti[0] == '\0') {
                KW_TRY(kw_collect_absent(doc, "tpm", "no TPM configured ([attestation] tpm_tcti)"));
                return kw_collect_absent(doc, "azure", "no TPM configured");
        }
        char why[400];
        struct tpm t = { 0 };
        const char *step = "Tss2_TctiLdr_Initialize";
        TSS2_RC rc = Tss2_TctiLdr_Initialize(a->tpm_tcti, &t.tcti);
        if (rc == TSS2_RC_SUCCESS) {
                step = "Esys_Initialize";
                rc = Esys_Initialize(&t.ectx, t.tcti, NULL);
        }
        if (rc != TSS2_RC_SUCCESS) {
                tpm_close(&t);
                char hint[300];
                tcti_hint(a->tpm_tcti, hint, sizeof hint);
                snprintf(a->tpm_problem, sizeof a->tpm_problem,
                         "[attestation] tpm_tcti \"%.120s\": %s: %s (TSS2_RC 0x%x)%s",
                         a->tpm_tcti, step, Tss2_RC_Decode(rc), (unsigned)rc, hint);
                why_rc(why, sizeof why, "cannot open the TPM", rc);
                KW_TRY(kw_collect_absent(doc, "tpm", why));
                return kw_collect_absent(doc, "azure", "no TPM");
        }
        kw_result r = KW_OK;
        cJSON *tpm = cJSON_CreateObject();
        int ok = 0;
        if (tpm == NULL)
                r = KW_RESULT(KW_ERR_NOMEM);
        if (r.code == 0)
                r = quote(a, t.ectx, bind, tpm, why, sizeof why, &ok);
        if (r.code == 0 && ok) {
                cJSON_AddItemToObject(doc, "tpm", tpm);
                tpm = NULL; /* transferred */
        } else if (r.code == 0) {
                snprintf(a->tpm_problem, sizeof a->tpm_problem,
                         "[attestation] tpm_tcti \"%.120s\": no quote: %.300s", a->tpm_tcti, why);
                r = kw_collect_absent(doc, "tpm", why);
        }
        cJSON_Delete(tpm);
        if (r.code == 0) {
                cJSON *az = cJSON_CreateObject();
                int found = 0;
                r = az != NULL ? add_nv(t.ectx, az, "hcl_report", KW_HCL_NV_INDEX, &found)
                               : KW_RESULT(KW_ERR_NOMEM);
                if (r.code == 0 && found) {
                        cJSON_AddItemToObject(doc, "azure", az);
                        az = NULL; /* transferred */
                } else if (r.code == 0) {
                        r = kw_collect_absent(doc, "azure", "no HCL report at vTPM NV 0x01400001 "
                                                            "(not an Azure confidential VM)");
                }
                cJSON_Delete(az);
        }
        tpm_close(&t);
        return r;
}
