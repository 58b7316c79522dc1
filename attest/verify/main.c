/*
 * main.c - keyward-attest: verify a Keyward server's attestation evidence.
 *
 *   keyward-attest verify https://HOST[:PORT] --policy policy.json [--policy-key KEY.pem [--policy-sig FILE]]
 *                  [--ak-sha256 HEX] [--ca FILE | --insecure-tls] [--at TIME] [--json] [--vcek FILE] [--save FILE]
 *   keyward-attest policy-from https://HOST:PORT [--ca FILE | --insecure-tls] [--at TIME] > policy.json
 *   keyward-attest check-snp REPORT --vcek FILE [--policy policy.json [--policy-key KEY.pem]] [--at TIME] [--json]
 *   keyward-attest show FILE
 *
 * With --policy-key, the policy file's signature (FILE.sig, or --policy-sig)
 * is checked before anything of the file is used; a policy made by the image
 * build (one with "image") is refused without it.
 *
 * Exit: 0 every required check passed; 1 a check failed (named on stderr);
 * 2 usage, file, network or TLS error.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/constant_time.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>

#include "kwa.h"

#define FILE_MAX (4u << 20)
#define SIG_MAX 2048u   /* an RSA signature up to 16384 bits */

struct opts {
        const char *url, *policy, *ca, *at, *vcek, *save, *policy_key, *policy_sig, *ak_sha256;
        int insecure, json;
};

/* What was checked of the policy file before it was used. */
struct policy_origin {
        int signed_ok;                  /* --policy-key given and the signature verified */
        uint8_t key_sha256[32];         /* SHA-256 of the key's SubjectPublicKeyInfo */
        char sig_path[1024];
};

static int usage(FILE *f, int rc)
{
        fprintf(f, "usage:\n"
                   "  keyward-attest verify https://HOST[:PORT] --policy policy.json [--policy-key image-key.pem]\n"
                   "                 [--policy-sig FILE] [--ak-sha256 HEX] [--ca FILE | --insecure-tls]\n"
                   "                 [--at TIME] [--json] [--vcek FILE] [--save FILE]\n"
                   "  keyward-attest policy-from https://HOST[:PORT] [--ca FILE | --insecure-tls] [--at TIME]\n"
                   "  keyward-attest check-snp REPORT --vcek FILE [--policy policy.json [--policy-key KEY]]\n"
                   "                 [--at TIME] [--json]\n"
                   "  keyward-attest show FILE\n"
                   "--policy-key: the image's public key (RSA, PEM), published with the image; the policy's\n"
                   "  signature (--policy-sig, default POLICY.sig) must verify with it. Required for an image policy.\n"
                   "--ak-sha256: the instance's AK (SHA-256 of its TPMT_PUBLIC), as its provisioning printed it.\n"
                   "PORT: 443 when not given.\n"
                   "TIME: seconds since 1970 or YYYY-MM-DDTHH:MM:SSZ (certificate validity time; default now).\n"
                   "Exit status: 0 all required checks passed, 1 a check failed, 2 usage/network/TLS error.\n");
        return rc;
}

static int parse_time(const char *s, time_t *ret)
{
        if (s == NULL) {
                *ret = time(NULL);
                return 0;
        }
        char *end = NULL;
        long long v = strtoll(s, &end, 10);
        if (end != s && *end == '\0' && v >= 0) {
                *ret = (time_t)v;
                return 0;
        }
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
        if (end == NULL || *end != '\0')
                return -1;
        *ret = timegm(&tm);
        return 0;
}

/* https://HOST[:PORT][/] -> host, port (443 when not given; [v6] accepted). */
static int parse_url(const char *url, char *host, size_t hsz, char *port, size_t psz)
{
        if (strncmp(url, "https://", 8) != 0)
                return -1;
        const char *h = url + 8, *colon, *hend;
        if (*h == '[') {
                hend = strchr(h, ']');
                if (hend == NULL || (hend[1] != ':' && hend[1] != '\0' && strcmp(hend + 1, "/") != 0))
                        return -1;
                colon = hend[1] == ':' ? hend + 1 : NULL;
                h++;
        } else {
                colon = strrchr(h, ':');
                hend = colon != NULL ? colon : h + strcspn(h, "/");
                if (colon == NULL && *hend != '\0' && strcmp(hend, "/") != 0)
                        return -1;
        }
        if ((size_t)(hend - h) >= hsz || hend == h || strcspn(h, "/") < (size_t)(hend - h))
                return -1;
        memcpy(host, h, (size_t)(hend - h));
        host[hend - h] = '\0';
        if (colon == NULL) {
                snprintf(port, psz, "443");
                return 0;
        }
        const char *p = colon + 1;
        size_t pl = strspn(p, "0123456789");
        if (pl == 0 || pl >= psz || (p[pl] != '\0' && strcmp(p + pl, "/") != 0))
                return -1;
        memcpy(port, p, pl);
        port[pl] = '\0';
        return 0;
}

/* The policy file's signature checked with --policy-key: 0, or -1 with the
 * reason printed. */
static int check_policy_sig(const struct opts *o, const uint8_t *doc, size_t doc_len, struct policy_origin *org)
{
        uint8_t *key = NULL, *sig = NULL;
        size_t key_len = 0, sig_len = 0;
        char err[300] = "";
        snprintf(org->sig_path, sizeof org->sig_path, "%s%s", o->policy_sig ? o->policy_sig : o->policy,
                 o->policy_sig ? "" : ".sig");
        if (kwa_read_file(o->policy_key, 64u << 10, &key, &key_len) != 0) {
                fprintf(stderr, "keyward-attest: cannot read the policy key %s\n", o->policy_key);
                return -1;
        }
        int r = kwa_read_file(org->sig_path, SIG_MAX, &sig, &sig_len);
        if (r != 0) {
                fprintf(stderr, "keyward-attest: cannot read the policy's signature %s (published with the "
                                "policy; or give its path with --policy-sig): the policy is not used\n",
                        org->sig_path);
                free(key);
                return -1;
        }
        r = kwa_policy_sig_verify(key, key_len, doc, doc_len, sig, sig_len, org->key_sha256, err, sizeof err);
        free(key);
        free(sig);
        if (r != 0) {
                fprintf(stderr, "keyward-attest: the policy %s is NOT signed by %s (signature %s): %s; the "
                                "policy is not used\n", o->policy, o->policy_key, org->sig_path, err);
                return -1;
        }
        org->signed_ok = 1;
        return 0;
}

/* The policy, its signature checked first (--policy-key), then --ak-sha256
 * applied.  0, or -1 with the reason printed (exit 2). */
static int load_policy(const struct opts *o, struct kwa_policy *pol, struct policy_origin *org)
{
        uint8_t *p = NULL;
        size_t n = 0;
        char err[200] = "";
        memset(org, 0, sizeof *org);
        if (kwa_read_file(o->policy, FILE_MAX, &p, &n) != 0) {
                fprintf(stderr, "keyward-attest: cannot read the policy %s\n", o->policy);
                return -1;
        }
        if (o->policy_key != NULL && check_policy_sig(o, p, n, org) != 0) {
                free(p);
                return -1;
        }
        int rc = kwa_policy_parse((const char *)p, n, pol, err, sizeof err);
        free(p);
        if (rc != 0) {
                fprintf(stderr, "keyward-attest: %s: %s\n", o->policy, err);
                return -1;
        }
        if (pol->image.set && !org->signed_ok) {
                fprintf(stderr, "keyward-attest: %s is an image policy: give the image's public key with "
                                "--policy-key image-key.pem (published with the image, beside policy.json and "
                                "policy.json.sig) so that its signature is checked\n", o->policy);
                kwa_policy_free(pol);
                return -1;
        }
        if (o->ak_sha256 != NULL) {
                uint8_t ak[32];
                if (kwa_hex_decode(o->ak_sha256, ak, 32) != 0) {
                        fprintf(stderr, "keyward-attest: --ak-sha256 must be 64 hex digits (the AK pin the "
                                        "instance's provisioning printed)\n");
                        kwa_policy_free(pol);
                        return -1;
                }
                if (pol->ak_pinned && mbedtls_ct_memcmp(ak, pol->ak_sha256, 32) != 0) {
                        fprintf(stderr, "keyward-attest: --ak-sha256 differs from the policy's tpm.ak_sha256: "
                                        "give one of them\n");
                        kwa_policy_free(pol);
                        return -1;
                }
                memcpy(pol->ak_sha256, ak, 32);
                pol->ak_pinned = 1;
        }
        return 0;
}

/* The checks of where the policy comes from, first in the list. */
static void policy_checks(struct kwa_checks *cs, const struct kwa_policy *pol, const struct policy_origin *org,
                          const struct opts *o, const struct kwa_evidence *ev)
{
        char kh[65];
        kwa_hex_encode(org->key_sha256, 32, kh);
        if (org->signed_ok)
                kwa_check(cs, "policy.signature", 1, KWA_PASS, "%s verifies with %s (key sha256 %.16s...)",
                          org->sig_path, o->policy_key, kh);
        else
                kwa_check(cs, "policy.signature", 0, KWA_SKIP, "no --policy-key: the policy's origin is not checked");
        if (!pol->image.set || ev == NULL)
                return;
        int same = strcmp(pol->image.version, ev->image_version) == 0;
        kwa_check(cs, "image.version", 0, same ? KWA_PASS : KWA_FAIL, "policy for image %s, the server says %s",
                  pol->image.version, ev->image_version[0] ? ev->image_version : "(nothing)");
}

static int finish(struct kwa_checks *cs, int json)
{
        int ok = kwa_checks_ok(cs);
        if (json)
                kwa_checks_print_json(cs, ok);
        else
                printf("%s\n", ok ? "VERIFIED: every check the policy requires passed" : "NOT VERIFIED");
        kwa_checks_print_failed(cs);
        return ok ? 0 : 1;
}

/* Fresh nonce, TLS session, evidence.  0, or 2 with the reason printed. */
static int fetch(const struct opts *o, uint8_t nonce[32], uint8_t spki[32], struct kwa_evidence *ev)
{
        char host[256], port[8], path[128], nhex[65], err[600] = "";
        if (parse_url(o->url, host, sizeof host, port, sizeof port) != 0) {
                fprintf(stderr, "keyward-attest: the URL must be https://HOST[:PORT]\n");
                return 2;
        }
        if (o->ca == NULL && !o->insecure) {
                fprintf(stderr, "keyward-attest: give --ca FILE (the server's CA) or --insecure-tls\n");
                return 2;
        }
        mbedtls_entropy_context ent;
        mbedtls_ctr_drbg_context drbg;
        mbedtls_entropy_init(&ent);
        mbedtls_ctr_drbg_init(&drbg);
        int r = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent, (const unsigned char *)"kwa-nonce", 9);
        if (r == 0)
                r = mbedtls_ctr_drbg_random(&drbg, nonce, 32);
        mbedtls_ctr_drbg_free(&drbg);
        mbedtls_entropy_free(&ent);
        if (r != 0) {
                fprintf(stderr, "keyward-attest: no randomness for the nonce\n");
                return 2;
        }
        kwa_hex_encode(nonce, 32, nhex);
        snprintf(path, sizeof path, "/attestation?nonce=%s", nhex);
        int status = 0;
        char *body = NULL;
        size_t len = 0;
        if (kwa_https_get(host, port, path, o->ca, o->insecure, &status, &body, &len, spki, err, sizeof err) != 0) {
                fprintf(stderr, "keyward-attest: %s\n", err);
                return 2;
        }
        if (status != 200) {
                fprintf(stderr, "keyward-attest: GET /attestation answered HTTP %d: %.300s\n", status, body);
                free(body);
                return 2;
        }
        if (o->save != NULL) {
                FILE *f = fopen(o->save, "w");
                if (f == NULL || fwrite(body, 1, len, f) != len || fclose(f) != 0) {
                        fprintf(stderr, "keyward-attest: cannot write %s\n", o->save);
                        free(body);
                        return 2;
                }
        }
        r = kwa_evidence_parse(body, len, ev, err, sizeof err);
        free(body);
        if (r != 0) {
                fprintf(stderr, "keyward-attest: %s\n", err);
                return 2;
        }
        return 0;
}

static int add_vcek(const char *path, struct kwa_evidence *ev)
{
        if (path == NULL)
                return 0;
        uint8_t *p = NULL;
        size_t n = 0;
        if (kwa_read_file(path, FILE_MAX, &p, &n) != 0) {
                fprintf(stderr, "keyward-attest: cannot read %s\n", path);
                return -1;
        }
        free(ev->vcek.p);
        ev->vcek.p = p;
        ev->vcek.n = n;
        return 0;
}

static int cmd_verify(const struct opts *o)
{
        struct kwa_policy pol;
        struct policy_origin org;
        time_t at;
        if (o->policy == NULL || parse_time(o->at, &at) != 0)
                return usage(stderr, 2);
        if (load_policy(o, &pol, &org) != 0)
                return 2;
        uint8_t nonce[32], spki[32];
        struct kwa_evidence ev;
        int rc = fetch(o, nonce, spki, &ev);
        if (rc != 0) {
                kwa_policy_free(&pol);
                return rc;
        }
        if (add_vcek(o->vcek, &ev) != 0) {
                kwa_evidence_free(&ev);
                kwa_policy_free(&pol);
                return 2;
        }
        static struct kwa_checks cs;
        memset(&cs, 0, sizeof cs);
        cs.print = !o->json;
        if (!o->json)
                printf("keyward-attest: %s (image %s)%s\n", o->url, ev.image_version,
                       pol.tofu ? "\n  NOTE: the policy is TRUST ON FIRST USE" : "");
        policy_checks(&cs, &pol, &org, o, &ev);
        struct kwa_verify_in in = { &ev, &pol, nonce, spki, at, kwa_amd_anchors };
        kwa_verify(&in, &cs);
        rc = finish(&cs, o->json);
        kwa_evidence_free(&ev);
        kwa_policy_free(&pol);
        return rc;
}

static int cmd_policy_from(const struct opts *o)
{
        time_t at;
        if (parse_time(o->at, &at) != 0)
                return usage(stderr, 2);
        uint8_t nonce[32], spki[32];
        struct kwa_evidence ev;
        int rc = fetch(o, nonce, spki, &ev);
        if (rc != 0)
                return rc;
        if (add_vcek(o->vcek, &ev) != 0) {
                kwa_evidence_free(&ev);
                return 2;
        }
        /* the evidence must verify in itself (signatures, binding) before we copy its values */
        struct kwa_policy empty;
        memset(&empty, 0, sizeof empty);
        static struct kwa_checks cs;
        memset(&cs, 0, sizeof cs);
        struct kwa_verify_in in = { &ev, &empty, nonce, spki, at, kwa_amd_anchors };
        kwa_verify(&in, &cs);
        /* no AK is pinned yet: that is what this policy will do */
        for (size_t i = 0; i < cs.n; i++)
                if (strcmp(cs.c[i].name, "tpm.ak_pinned") == 0)   /* lint: allow (a check name) */
                        cs.c[i].required = 0;
        if (!kwa_checks_ok(&cs)) {
                kwa_checks_print_failed(&cs);
                kwa_evidence_free(&ev);
                return 1;
        }
        char *out = NULL;
        rc = kwa_policy_from_evidence(&ev, o->url, &out);
        kwa_evidence_free(&ev);
        if (rc != 0)
                return 2;
        printf("%s\n", out);
        free(out);
        fprintf(stderr, "keyward-attest: TRUST ON FIRST USE: this policy copies the values of %s as they are "
                        "now; it proves nothing about them. Use the image build's expected values when you have them.\n",
                o->url);
        return 0;
}

static int cmd_check_snp(const struct opts *o, const char *report)
{
        time_t at;
        if (o->vcek == NULL || parse_time(o->at, &at) != 0)
                return usage(stderr, 2);
        struct kwa_policy pol;
        struct policy_origin org;
        memset(&pol, 0, sizeof pol);
        memset(&org, 0, sizeof org);
        if (o->policy != NULL && load_policy(o, &pol, &org) != 0)
                return 2;
        uint8_t *r = NULL, *v = NULL;
        size_t rn = 0, vn = 0;
        if (kwa_read_file(report, FILE_MAX, &r, &rn) != 0 || kwa_read_file(o->vcek, FILE_MAX, &v, &vn) != 0) {
                fprintf(stderr, "keyward-attest: cannot read %s or %s\n", report, o->vcek);
                free(r);
                kwa_policy_free(&pol);
                return 2;
        }
        static struct kwa_checks cs;
        memset(&cs, 0, sizeof cs);
        cs.print = !o->json;
        if (o->policy != NULL)
                policy_checks(&cs, &pol, &org, o, NULL);
        kwa_snp_verify(&cs, r, rn, v, vn, kwa_amd_anchors, at, NULL, &pol.snp, "", 1);
        free(r);
        free(v);
        kwa_policy_free(&pol);
        return finish(&cs, o->json);
}

static void show_snp(const uint8_t *p, size_t n, const char *indent)
{
        struct kwa_snp_report r;
        if (kwa_snp_parse(p, n, &r) != 0) {
                printf("%snot a valid SEV-SNP report\n", indent);
                return;
        }
        char h[129];
        struct kwa_tcb t = kwa_snp_tcb(r.reported_tcb, NULL);
        printf("%sversion %u  guest_svn %u  vmpl %u  signature_algo %u\n", indent, r.version, r.guest_svn, r.vmpl,
               r.sig_algo);
        printf("%spolicy 0x%llx (debug %s)\n", indent, (unsigned long long)r.policy,
               r.policy & KWA_SNP_POLICY_DEBUG ? "ALLOWED" : "not allowed");
        kwa_hex_encode(r.measurement, 48, h);
        printf("%smeasurement  %s\n", indent, h);
        kwa_hex_encode(r.report_data, 64, h);
        printf("%sreport_data  %s\n", indent, h);
        kwa_hex_encode(r.chip_id, 64, h);
        printf("%schip_id      %s\n", indent, h);
        printf("%sreported_tcb bootloader %u tee %u snp %u microcode %u (Milan/Genoa layout)\n", indent,
               t.bootloader, t.tee, t.snp, t.microcode);
}

static int cmd_show(const char *path)
{
        uint8_t *p = NULL;
        size_t n = 0;
        if (kwa_read_file(path, FILE_MAX, &p, &n) != 0) {
                fprintf(stderr, "keyward-attest: cannot read %s\n", path);
                return 2;
        }
        if (n == KWA_SNP_REPORT_LEN) {
                printf("SEV-SNP report (%s)\n", path);
                show_snp(p, n, "  ");
                free(p);
                return 0;
        }
        struct kwa_evidence ev;
        char err[200] = "", h[65];
        int rc = kwa_evidence_parse((const char *)p, n, &ev, err, sizeof err);
        free(p);
        if (rc != 0) {
                fprintf(stderr, "keyward-attest: %s is neither a 1184-byte report nor evidence: %s\n", path, err);
                return 2;
        }
        printf("evidence v%d, image %s, expected values \"%s\"\n", ev.version, ev.image_version, ev.expected_id);
        kwa_hex_encode(ev.nonce, 32, h);
        printf("  nonce            %s\n", h);
        kwa_hex_encode(ev.spki, 32, h);
        printf("  tls_spki_sha256  %s\n", h);
        if (ev.snp_present) {
                printf("snp: report%s%s\n", ev.vcek.n ? " + VCEK" : "", ev.ask.n ? " + ASK" : "");
                show_snp(ev.snp_report.p, ev.snp_report.n, "  ");
        } else {
                printf("snp: absent (%s)\n", ev.snp_absent);
        }
        if (ev.tpm_present) {
                struct kwa_tpm_pub pub;
                struct kwa_tpm_attest at;
                printf("tpm:\n");
                if (kwa_tpm_pub_parse(ev.ak_public.p, ev.ak_public.n, &pub) == 0) {
                        uint8_t d[32];
                        kwa_sha256(pub.area, pub.area_len, d);
                        kwa_hex_encode(d, 32, h);
                        printf("  AK %s, attributes 0x%08x, sha256 %s\n", pub.type == 1 ? "RSA" : "ECC", pub.attrs, h);
                }
                if (kwa_tpm_attest_parse(ev.quote.p, ev.quote.n, &at) == 0) {
                        kwa_hex_encode(at.extra, at.extra_len > 32 ? 32 : at.extra_len, h);
                        printf("  quote magic 0x%08x type 0x%04x clock %llu resets %u restarts %u\n  extraData %s\n",
                               at.magic, at.type, (unsigned long long)at.clock, at.reset_count, at.restart_count, h);
                }
                for (int i = 0; i < 24; i++)
                        if (ev.pcr_mask & (1u << i)) {
                                kwa_hex_encode(ev.pcrs[i], 32, h);
                                printf("  PCR %2d  %s\n", i, h);
                        }
                printf("  EK certificate: %s; event log: %zu bytes\n", ev.ek_cert.n ? "present" : "absent",
                       ev.event_log.n);
        } else {
                printf("tpm: absent (%s)\n", ev.tpm_absent);
        }
        if (ev.azure_present)
                printf("azure: HCL report, %zu bytes\n", ev.hcl.n);
        else
                printf("azure: absent (%s)\n", ev.azure_absent);
        kwa_evidence_free(&ev);
        return 0;
}

int main(int argc, char **argv)
{
        static const struct option lo[] = {
                { "policy", required_argument, NULL, 'p' }, { "ca", required_argument, NULL, 'c' },
                { "insecure-tls", no_argument, NULL, 'k' }, { "at", required_argument, NULL, 't' },
                { "json", no_argument, NULL, 'j' },         { "vcek", required_argument, NULL, 'v' },
                { "save", required_argument, NULL, 's' },   { "help", no_argument, NULL, 'h' },
                { "policy-key", required_argument, NULL, 'K' }, { "policy-sig", required_argument, NULL, 'S' },
                { "ak-sha256", required_argument, NULL, 'A' },
                { NULL, 0, NULL, 0 },
        };
        struct opts o;
        memset(&o, 0, sizeof o);
        if (argc < 2)
                return usage(stderr, 2);
        const char *cmd = argv[1];
        if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0)
                return usage(stdout, 0);
        optind = 2;
        int c;
        while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
                switch (c) {
                case 'p': o.policy = optarg; break;
                case 'c': o.ca = optarg; break;
                case 'k': o.insecure = 1; break;
                case 't': o.at = optarg; break;
                case 'j': o.json = 1; break;
                case 'v': o.vcek = optarg; break;
                case 's': o.save = optarg; break;
                case 'K': o.policy_key = optarg; break;
                case 'S': o.policy_sig = optarg; break;
                case 'A': o.ak_sha256 = optarg; break;
                case 'h': return usage(stdout, 0);
                default: return usage(stderr, 2);
                }
        }
        if (optind != argc - 1 || (o.ca != NULL && o.insecure) || (o.policy_sig != NULL && o.policy_key == NULL) ||
            (o.policy_key != NULL && o.policy == NULL))
                return usage(stderr, 2);
        const char *arg = argv[optind];
        o.url = arg;
        if (strcmp(cmd, "verify") == 0)
                return cmd_verify(&o);
        if (strcmp(cmd, "policy-from") == 0)
                return cmd_policy_from(&o);
        if (strcmp(cmd, "check-snp") == 0)
                return cmd_check_snp(&o, arg);
        if (strcmp(cmd, "show") == 0)
                return cmd_show(arg);
        return usage(stderr, 2);
}
