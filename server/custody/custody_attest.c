/*
 * custody_attest.c - attestation evidence (KW_OP_ATTEST, docs/attestation.md),
 * collected in the custody process: it is the process with the devices
 * (TPM, /dev/sev-guest) and the one the front cannot make do more than a
 * caller could.  The evidence is bound to the TLS key of the configured
 * certificate, which this process reads itself at start-up (before it
 * drops its privileges: the certificate may be readable by root only), so
 * a front cannot obtain evidence bound to a key of its own choosing.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>

#include "../../attest/collect/collect.h"
#include "../common/log.h"
#include "../common/ratelimit.h"
#include "custody.h"
#include "custody_int.h"

#ifndef KEYWARD_VERSION
#define KEYWARD_VERSION "0.0.0-dev"
#endif

static struct {
        struct kw_attest *collector;
        uint8_t spki_sha256[32];
        int ready;
        char why[200];             /* when not ready */
        struct kw_ratelimit rl;
} A;

/* The server certificate of [tls] (PEM chain: the first; or PKCS#12). */
static X509 *tls_certificate(const struct kw_config *cfg)
{
        X509 *x = NULL;
        if (cfg->tls.tls_p12_file != NULL && cfg->tls.tls_p12_file[0] != '\0') {
                FILE *f = fopen(cfg->tls.tls_p12_file, "rb");
                PKCS12 *p12 = f ? d2i_PKCS12_fp(f, NULL) : NULL;
                if (f != NULL)
                        fclose(f);
                EVP_PKEY *pk = NULL;
                if (p12 != NULL)
                        (void)PKCS12_parse(p12, cfg->tls.tls_p12_password ? cfg->tls.tls_p12_password
                                                                         : "",
                                           &pk, &x, NULL);
                EVP_PKEY_free(pk);   /* the front's key: not kept here */
                PKCS12_free(p12);
        } else if (cfg->tls.tls_cert_file != NULL) {
                FILE *f = fopen(cfg->tls.tls_cert_file, "r");
                if (f != NULL) {
                        x = PEM_read_X509(f, NULL, NULL, NULL);
                        fclose(f);
                }
        }
        ERR_clear_error();
        return x;
}

kw_result kw_custody_attest_prepare(const struct kw_config *cfg)
{
        if (!cfg->attestation.enable)
                return KW_OK;
        kw_ratelimit_init(&A.rl, (uint64_t)cfg->attestation.rate_limit, 0);
        X509 *x = tls_certificate(cfg);
        unsigned char *spki = NULL;
        int n = x != NULL ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &spki) : -1;
        unsigned md_len = 0;
        int ok = n > 0 && EVP_Digest(spki, (size_t)n, A.spki_sha256, &md_len, EVP_sha256(), NULL) == 1 &&
                 md_len == 32;
        OPENSSL_free(spki);
        X509_free(x);
        ERR_clear_error();
        if (!ok) {
                snprintf(A.why, sizeof A.why, "cannot read the server certificate of [tls]");
                kw_log(KW_LOG_WARN, "attestation_unavailable", "why", A.why, KW_END);
                return KW_OK;
        }
        struct kw_attest_cfg c = {
                .tpm_tcti = cfg->attestation.tpm_tcti,
                .pcrs = cfg->attestation.pcrs,
                .ak_handle = (uint32_t)strtoul(cfg->attestation.ak_handle, NULL, 16),
                .snp_device = cfg->attestation.snp_device,
                .tsm_report_dir = cfg->attestation.tsm_report_dir,
                .event_log = cfg->attestation.event_log,
                .image_version = KEYWARD_VERSION,
                .expected_values_id = cfg->attestation.expected_values_id,
        };
        kw_result r = kw_attest_new(&c, &A.collector);
        if (r.code != 0) {
                snprintf(A.why, sizeof A.why, "%s", kw_err_detail());
                kw_log(KW_LOG_WARN, "attestation_unavailable", "why", A.why, KW_END);
                return KW_OK;
        }
        A.ready = 1;
        return KW_OK;
}

/*
 * A configured TPM that gives no quote is logged once, as one JSON line, when
 * it happens and again only when the reason changes; its return is logged
 * too.  (The evidence says "absent" on every request; the log should not.)
 */
static void attest_log_tpm(const char *problem)
{
        static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
        static char last[512];
        pthread_mutex_lock(&mu);
        if (problem != NULL && strcmp(problem, last) != 0) {
                kw_log(KW_LOG_WARN, "attestation_tpm_unavailable", "detail", problem, KW_END);
                snprintf(last, sizeof last, "%s", problem);
        } else if (problem == NULL && last[0] != '\0') {
                kw_log(KW_LOG_INFO, "attestation_tpm_available", KW_END);
                last[0] = '\0';
        }
        pthread_mutex_unlock(&mu);
}

kw_result op_attest(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                    struct kw_buf *reply)
{
        (void)c;
        (void)who;
        struct kw_field nonce;
        KW_TRY(kw_msg_get(req, KW_T_NONCE, &nonce));
        KW_ENSURE(nonce.len == KW_ATTEST_NONCE_LEN, KW_ERR_BAD_FIELD);
        if (!A.ready) {
                kw_err_set_detail("%s", A.why[0] ? A.why : "attestation is not enabled");
                KW_BAIL(KW_ERR_UNSUPPORTED);
        }
        if (!kw_ratelimit_take(&A.rl, NULL)) {
                kw_err_set_detail("attestation rate limit exceeded");
                KW_BAIL(KW_ERR_OVERLOAD);
        }
        struct kw_buf ev;
        kw_buf_init(&ev, 512u * 1024u);
        int tpm_problem = 0;
        kw_err_clear_detail();
        kw_result r = kw_attest_collect(A.collector, nonce.p, A.spki_sha256, &ev, &tpm_problem);
        if (r.code == 0)
                attest_log_tpm(tpm_problem ? kw_err_detail() : NULL);
        kw_err_clear_detail();
        if (r.code == 0)
                r = kw_msg_put(reply, KW_T_JSON, ev.p, ev.len);
        kw_buf_free(&ev);
        return r;
}
