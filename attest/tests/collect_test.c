/*
 * collect_test.c - the collector's SEV-SNP path against a fake /dev/sev-guest
 * (the ioctl table of collect.h) that answers SNP_GET_EXT_REPORT with a
 * report signed by a test VCEK' of a test chain ARK' -> ASK' -> VCEK'
 * generated here with the openssl command; the evidence document is then
 * checked by the verifier (mbedTLS) with ARK'/ASK' as its only anchors.
 * The TPM path's failure reporting is checked against a TCTI where nothing
 * listens (the quote itself is covered end to end with swtpm in
 * tests/blackbox/test_attest.py).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/sev-guest.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "collect.h"
#include "kwa.h"

static char dir[] = "/tmp/kw-collect-XXXXXX";
static char *ark_pem, *ask_pem;
static uint8_t *vcek_der;
static size_t vcek_len;
static EVP_PKEY *vcek_key;
static const uint8_t chip[64] = { 0xC1, 0x1B, 0x00, 0x42 };
static const uint8_t meas[48] = { 0x4D, 0x45, 0x41, 0x53 };

static int sh(const char *cmd)
{
        char c[4096];
        snprintf(c, sizeof c, "cd %s && ( %s ) >/dev/null 2>&1", dir, cmd);
        return system(c);
}

static char *slurp(const char *name, size_t *ret_len)
{
        char p[256];
        snprintf(p, sizeof p, "%s/%s", dir, name);
        uint8_t *b = NULL;
        size_t n = 0;
        if (kwa_read_file(p, 1 << 20, &b, &n) != 0)
                return NULL;
        if (ret_len)
                *ret_len = n;
        return (char *)b;
}

/* ARK' (RSA-3072, RSA-PSS SHA-384 self-signed) -> ASK' -> VCEK' (P-384, with the AMD extensions) */
static int make_chain(void **state)
{
        (void)state;
        if (mkdtemp(dir) == NULL)
                return -1;
        char hw[64 * 3 + 1] = "";
        for (int i = 0; i < 64; i++)   /* "C1:1B:...": 3 characters a byte, no ':' first */
                snprintf(hw + (i ? 3 * i - 1 : 0), 4, "%s%02X", i ? ":" : "", chip[i]);
        char ext[1024];
        snprintf(ext, sizeof ext,
                 "printf '%%s\\n' '[v]' '1.3.6.1.4.1.3704.1.4=DER:%s' '1.3.6.1.4.1.3704.1.3.1=DER:02:01:03' "
                 "'1.3.6.1.4.1.3704.1.3.2=DER:02:01:00' '1.3.6.1.4.1.3704.1.3.3=DER:02:01:08' "
                 "'1.3.6.1.4.1.3704.1.3.8=DER:02:01:73' > ext.cnf", hw);
        const char *pss = "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:48 -sha384";
        char c[2048];
        if (sh(ext) != 0 || sh("printf '%s\\n' '[v]' 'basicConstraints=CA:TRUE' > ca.cnf") != 0 ||
            sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ark.key") != 0 ||
            sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ask.key") != 0 ||
            sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out vcek.key") != 0)
                return -1;
        snprintf(c, sizeof c, "openssl req -x509 -new -key ark.key -subj /CN=ARK-Test -days 30 %s -out ark.pem", pss);
        if (sh(c) != 0 || sh("openssl req -new -key ask.key -subj /CN=ASK-Test -out ask.csr") != 0)
                return -1;
        snprintf(c, sizeof c, "openssl x509 -req -in ask.csr -CA ark.pem -CAkey ark.key -CAcreateserial -days 30 "
                              "%s -extfile ca.cnf -extensions v -out ask.pem", pss);
        if (sh(c) != 0 || sh("openssl req -new -key vcek.key -subj /CN=VCEK-Test -out vcek.csr") != 0)
                return -1;
        snprintf(c, sizeof c, "openssl x509 -req -in vcek.csr -CA ask.pem -CAkey ask.key -CAcreateserial -days 30 "
                              "%s -extfile ext.cnf -extensions v -outform DER -out vcek.der", pss);
        if (sh(c) != 0)
                return -1;
        ark_pem = slurp("ark.pem", NULL);
        ask_pem = slurp("ask.pem", NULL);
        vcek_der = (uint8_t *)slurp("vcek.der", &vcek_len);
        char kp[256];
        snprintf(kp, sizeof kp, "%s/vcek.key", dir);
        FILE *kf = fopen(kp, "r");
        if (kf == NULL)
                return -1;
        vcek_key = PEM_read_PrivateKey(kf, NULL, NULL, NULL);
        fclose(kf);
        return ark_pem && ask_pem && vcek_der && vcek_key ? 0 : -1;
}

static int free_chain(void **state)
{
        (void)state;
        free(ark_pem);
        free(ask_pem);
        free(vcek_der);
        EVP_PKEY_free(vcek_key);
        char c[300];
        snprintf(c, sizeof c, "rm -rf %s", dir);
        return system(c) == 0 ? 0 : -1;
}

/* ---- the fake device ---- */
struct fake {
        int opened, calls, ext_calls;
        int fail_open;
        int flip_report_bit;   /* corrupt the report after signing */
};

static int fake_open(void *ctx, const char *path)
{
        struct fake *f = ctx;
        if (f->fail_open || strcmp(path, "/fake/sev-guest") != 0)
                return -1;
        f->opened++;
        return 77;
}

static void fake_close(void *ctx, int fd)
{
        (void)ctx;
        assert_int_equal(fd, 77);
}

static void put_le72(uint8_t *out, const BIGNUM *v)
{
        uint8_t be[48];
        memset(out, 0, 72);
        assert_int_equal(BN_bn2binpad(v, be, 48), 48);
        for (int i = 0; i < 48; i++)
                out[i] = be[47 - i];
}

static void sign_report(uint8_t *r)
{
        uint8_t h[48];
        unsigned int hl = 0;
        assert_int_equal(EVP_Digest(r, 0x2A0, h, &hl, EVP_sha384(), NULL), 1);
        EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(vcek_key, NULL);
        uint8_t der[160];
        size_t dl = sizeof der;
        assert_non_null(pc);
        assert_int_equal(EVP_PKEY_sign_init(pc), 1);
        assert_int_equal(EVP_PKEY_sign(pc, der, &dl, h, hl), 1);
        EVP_PKEY_CTX_free(pc);
        const uint8_t *p = der;
        ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)dl);
        assert_non_null(s);
        put_le72(r + 0x2A0, ECDSA_SIG_get0_r(s));
        put_le72(r + 0x2E8, ECDSA_SIG_get0_s(s));
        ECDSA_SIG_free(s);
}

static void le32put(uint8_t *p, uint32_t v)
{
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static int fake_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
        struct fake *f = ctx;
        struct snp_guest_request_ioctl *io = arg;
        assert_int_equal(fd, 77);
        assert_int_equal(io->msg_version, 1);
        f->calls++;
        if (req != SNP_GET_EXT_REPORT)
                return -1;
        struct snp_ext_report_req *er = (void *)(uintptr_t)io->req_data;
        struct snp_report_resp *resp = (void *)(uintptr_t)io->resp_data;
        size_t need = 4096 * 5;   /* more than the collector's first guess: exercises the retry */
        if (f->ext_calls++ == 0 || er->certs_len < need) {
                er->certs_len = (uint32_t)need;
                io->exitinfo2 = (uint64_t)SNP_GUEST_VMM_ERR_INVALID_LEN << 32;
                return -1;
        }
        uint8_t *r = resp->data + 0x20;
        memset(resp->data, 0, sizeof resp->data);
        le32put(resp->data + 4, 1184);
        le32put(r + 0x000, 2);            /* version */
        le32put(r + 0x008, 0x30000);      /* policy: SMT allowed, debug NOT allowed */
        le32put(r + 0x034, 1);            /* ECDSA P-384 SHA-384 */
        memcpy(r + 0x050, er->data.user_data, 64);
        memcpy(r + 0x090, meas, 48);
        uint8_t tcb[8] = { 3, 0, 0, 0, 0, 0, 8, 0x73 };
        memcpy(r + 0x038, tcb, 8);
        memcpy(r + 0x180, tcb, 8);
        memcpy(r + 0x1A0, chip, 64);
        sign_report(r);
        if (f->flip_report_bit)
                r[0x090] ^= 1;
        /* certificate table: VCEK entry, zero entry, then the DER */
        uint8_t *t = (uint8_t *)(uintptr_t)er->certs_address;
        static const uint8_t g[16] = { 0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64,
                                       0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd };
        memset(t, 0, er->certs_len);
        memcpy(t, g, 16);
        le32put(t + 16, 48);
        le32put(t + 20, (uint32_t)vcek_len);
        memcpy(t + 48, vcek_der, vcek_len);
        return 0;
}

static char *collect(struct fake *f, const uint8_t nonce[32], const uint8_t spki[32])
{
        struct kw_attest_cfg cfg = { .tpm_tcti = "", .pcrs = "0,7", .ak_handle = 0x81010002,
                                     .snp_device = "/fake/sev-guest", .tsm_report_dir = "", .event_log = "",
                                     .image_version = "test", .expected_values_id = "" };
        struct kw_attest *a = NULL;
        assert_int_equal(kw_attest_new(&cfg, &a).code, 0);
        struct kw_snp_ops ops = { fake_open, fake_ioctl, fake_close, f };
        kw_attest_set_snp_ops(a, &ops);
        struct kw_buf out;
        kw_buf_init(&out, 1 << 20);
        assert_int_equal(kw_attest_collect(a, nonce, spki, &out, NULL).code, 0);
        kw_attest_free(a);
        char *s = calloc(1, out.len + 1);
        assert_non_null(s);
        memcpy(s, out.p, out.len);
        kw_buf_free(&out);
        return s;
}

static void verify_doc(const char *doc, const uint8_t nonce[32], const uint8_t spki[32], struct kwa_checks *cs,
                       int allow_debug)
{
        struct kwa_evidence ev;
        char err[200];
        assert_int_equal(kwa_evidence_parse(doc, strlen(doc), &ev, err, sizeof err), 0);
        struct kwa_policy pol;
        memset(&pol, 0, sizeof pol);
        uint8_t m[1][48];
        memcpy(m[0], meas, 48);
        pol.require_snp = 1;
        pol.snp = (struct kwa_snp_policy){ .set = 1, .allow_debug = allow_debug, .max_vmpl = 0,
                                           .measurements = m, .n_measurements = 1 };
        pol.snp.min_tcb.snp = 8;
        struct kwa_snp_anchor anchors[2] = { { "test", ark_pem, ask_pem }, { NULL, NULL, NULL } };
        struct kwa_verify_in in = { &ev, &pol, nonce, spki, time(NULL), anchors };
        memset(cs, 0, sizeof *cs);
        kwa_verify(&in, cs);
        kwa_evidence_free(&ev);
}

static enum kwa_status st(const struct kwa_checks *cs, const char *n)
{
        const struct kwa_check *c = kwa_check_find(cs, n);
        return c ? c->status : 0;
}

static void collect_snp_fake_device_report_verifies(void **state)
{
        (void)state;
        struct fake f = { 0 };
        uint8_t nonce[32], spki[32];
        memset(nonce, 0x11, 32);
        memset(spki, 0x22, 32);
        char *doc = collect(&f, nonce, spki);
        assert_int_equal(f.opened, 1);
        assert_int_equal(f.ext_calls, 2);   /* asked for more certificate pages, then answered */
        assert_non_null(strstr(doc, "\"source\":\"sev-guest-ext\""));
        assert_non_null(strstr(doc, "\"tpm\":{\"absent\":\"no TPM configured"));
        static struct kwa_checks cs;
        verify_doc(doc, nonce, spki, &cs, 0);
        const char *pass[] = { "evidence.nonce", "evidence.tls_key", "snp.ark", "snp.ask", "snp.vcek",
                               "snp.chip_id", "snp.tcb", "snp.signature", "snp.report_data", "snp.debug",
                               "snp.measurement", "snp.min_tcb" };
        for (size_t i = 0; i < sizeof pass / sizeof pass[0]; i++) {
                const struct kwa_check *c = kwa_check_find(&cs, pass[i]);
                if (c == NULL || c->status != KWA_PASS)
                        print_message("%s: %s\n", pass[i], c ? c->detail : "missing");
                assert_int_equal(st(&cs, pass[i]), KWA_PASS);
        }
        assert_true(kwa_checks_ok(&cs));
        /* the same document for another nonce: the binding does not hold */
        uint8_t other[32];
        memset(other, 0x12, 32);
        verify_doc(doc, other, spki, &cs, 0);
        assert_int_equal(st(&cs, "snp.report_data"), KWA_FAIL);
        assert_int_equal(st(&cs, "evidence.nonce"), KWA_FAIL);
        free(doc);
}

static void collect_snp_corrupted_report_fails_signature(void **state)
{
        (void)state;
        struct fake f = { .flip_report_bit = 1 };
        uint8_t nonce[32] = { 1 }, spki[32] = { 2 };
        char *doc = collect(&f, nonce, spki);
        static struct kwa_checks cs;
        verify_doc(doc, nonce, spki, &cs, 0);
        assert_int_equal(st(&cs, "snp.signature"), KWA_FAIL);
        assert_int_equal(st(&cs, "snp.measurement"), KWA_FAIL);
        assert_false(kwa_checks_ok(&cs));
        free(doc);
}

static void collect_snp_no_device_says_why(void **state)
{
        (void)state;
        struct fake f = { .fail_open = 1 };
        uint8_t nonce[32] = { 0 }, spki[32] = { 0 };
        char *doc = collect(&f, nonce, spki);
        assert_int_equal(f.calls, 0);
        assert_non_null(strstr(doc, "\"snp\":{\"absent\":\"cannot open /fake/sev-guest"));
        static struct kwa_checks cs;
        verify_doc(doc, nonce, spki, &cs, 0);
        assert_int_equal(st(&cs, "snp.present"), KWA_FAIL);   /* the policy requires SNP */
        free(doc);
}

/* A loopback TCP port where nothing listens (bound, then released). */
static unsigned closed_port(void)
{
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fd >= 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof sa;
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
        close(fd);
        return ntohs(sa.sin_port);
}

/* issue 10: no TPM behind the TCTI.  tpm2-tss writes nothing on stderr (its
 * "ERROR:tcti:..." lines would break the JSON log); the caller gets one
 * detail naming the TCTI, the TSS2 code and what to check; the evidence
 * says "absent" without the TCTI. */
static void collect_tpm_unreachable_is_one_detail_and_silent(void **state)
{
        (void)state;
        char tcti[64], want[256], errpath[64];
        snprintf(tcti, sizeof tcti, "swtpm:host=127.0.0.1,port=%u", closed_port());
        struct kw_attest_cfg cfg = { .tpm_tcti = tcti, .pcrs = "0,7", .ak_handle = 0x81010002,
                                     .snp_device = "", .tsm_report_dir = "", .event_log = "",
                                     .image_version = "test", .expected_values_id = "" };
        struct kw_attest *a = NULL;
        assert_int_equal(kw_attest_new(&cfg, &a).code, 0);
        assert_string_equal(getenv("TSS2_LOG"), "all+NONE");
        snprintf(errpath, sizeof errpath, "%s/stderr", dir);
        int cap = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(cap >= 0);
        fflush(stderr);
        int saved = dup(2);
        assert_true(saved >= 0 && dup2(cap, 2) == 2);
        struct kw_buf out;
        kw_buf_init(&out, 1 << 20);
        uint8_t nonce[32] = { 1 }, spki[32] = { 2 };
        int problem = 0;
        kw_result r = kw_attest_collect(a, nonce, spki, &out, &problem);
        fflush(stderr);
        dup2(saved, 2);
        close(saved);
        close(cap);
        assert_int_equal(r.code, 0);
        struct stat st;
        assert_int_equal(stat(errpath, &st), 0);
        assert_int_equal(st.st_size, 0);   /* nothing from tpm2-tss */
        assert_int_equal(problem, 1);
        snprintf(want, sizeof want, "[attestation] tpm_tcti \"%s\": Tss2_TctiLdr_Initialize: "
                                    "tcti:IO failure (TSS2_RC 0xa000a); is the TPM simulator "
                                    "listening there?", tcti);
        assert_string_equal(kw_err_detail(), want);
        const char *s = NULL;
        assert_int_equal(kw_buf_cstr(&out, &s).code, 0);
        assert_non_null(strstr(s, "\"tpm\":{\"absent\":\"cannot open the TPM: tcti:IO failure"));
        assert_null(strstr(s, tcti));   /* the public evidence does not name it */
        kw_buf_free(&out);
        kw_attest_free(a);

        /* no TPM configured: nothing to report */
        cfg.tpm_tcti = "";
        assert_int_equal(kw_attest_new(&cfg, &a).code, 0);
        kw_buf_init(&out, 1 << 20);
        problem = 7;
        assert_int_equal(kw_attest_collect(a, nonce, spki, &out, &problem).code, 0);
        assert_int_equal(problem, 0);
        kw_buf_free(&out);
        kw_attest_free(a);
}

static void collect_binding_matches_verifier(void **state)
{
        (void)state;
        uint8_t n[32], s[32], a[32], b[32];
        for (int i = 0; i < 32; i++) {
                n[i] = (uint8_t)i;
                s[i] = (uint8_t)(255 - i);
        }
        assert_int_equal(kw_attest_binding(n, s, a).code, 0);   /* OpenSSL */
        kwa_binding(n, s, b);                                   /* mbedTLS */
        assert_memory_equal(a, b, 32);
}

static void collect_pcr_mask_parses_strictly(void **state)
{
        (void)state;
        uint32_t m = 99;
        assert_int_equal(kw_attest_pcr_mask("0,1,2,3,4,7,11", &m), 0);
        assert_int_equal(m, 0x89f);
        const char *bad[] = { "24", "1,,2", "1,", ",1", "1,1", "a", "001" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                m = 99;
                assert_int_equal(kw_attest_pcr_mask(bad[i], &m), -1);
                assert_int_equal(m, 99);
        }
}

int main(void)
{
        unsetenv("TSS2_LOG");   /* as for a server whose operator did not set it */
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(collect_snp_fake_device_report_verifies),
                cmocka_unit_test(collect_snp_corrupted_report_fails_signature),
                cmocka_unit_test(collect_snp_no_device_says_why),
                cmocka_unit_test(collect_tpm_unreachable_is_one_detail_and_silent),
                cmocka_unit_test(collect_binding_matches_verifier),
                cmocka_unit_test(collect_pcr_mask_parses_strictly),
        };
        return cmocka_run_group_tests(tests, make_chain, free_chain);
}
