/* cli_volume.c - keyward-unlock enroll, open and check (cli.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "cli.h"
#include "unlock_record.h"
#include "luks2_check.h"
#include "pcrsig.h"
#include "recovery_key.h"
#include "snp_key.h"
#include "tpm2_seal.h"
#include "volume.h"

/* A whole small file (at most max bytes), NUL-terminated; NULL with errno. */
static char *read_small(const char *path, size_t max, size_t *ret_len)
{
        FILE *f = fopen(path, "re");
        if (f == NULL)
                return NULL;
        char *b = malloc(max + 1);
        size_t n = b != NULL ? fread(b, 1, max + 1, f) : 0;
        int bad = b == NULL || ferror(f) || n > max;
        fclose(f);
        if (bad) {
                free(b);
                errno = EFBIG;
                return NULL;
        }
        b[n] = '\0';
        *ret_len = n;
        return b;
}

/* A random (version 4) UUID, as libcryptsetup would make: known before the
 * format, because the SEV-SNP passphrase is derived for it. */
static int uuid_new(char out[37])
{
        unsigned char b[16];
        if (RAND_bytes(b, sizeof b) != 1)
                return -1;
        b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
        b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
        snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
                 b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
        return 0;
}

int kwu_cli_tpm_binding(const struct opts *o, struct kwu_tpm_binding *b, char **pem)
{
        memset(b, 0, sizeof *b);
        b->pcrs = o->tpm2_pcrs;
        *pem = NULL;
        if (o->tpm2_public_key == NULL)
                return 0;
        *pem = read_small(o->tpm2_public_key, 16384, &b->pk_pem_len);
        if (*pem == NULL) {
                fprintf(stderr, "keyward-unlock: cannot read %s: %s\n", o->tpm2_public_key, strerror(errno));
                return -1;
        }
        b->pk_pem = *pem;
        b->pk_pcrs = o->tpm2_pk_pcrs != 0 ? o->tpm2_pk_pcrs : 1u << 11;
        return 0;
}

kw_result kwu_cli_snp_binding(const struct opts *o, struct kwu_snp_bind *b)
{
        *b = (struct kwu_snp_bind){ .root = 0, .fields = o->snp_fields, .vmpl = o->snp_vmpl, .tcb = o->snp_tcb };
        if (o->snp_tcb_set && o->snp_vmpl_set)
                return KW_OK;
        struct kwu_snp_platform pf;
        KW_TRY(kwu_snp_platform(NULL, o->snp_device, &pf));
        if (!o->snp_tcb_set)
                b->tcb = pf.committed_tcb;
        if (!o->snp_vmpl_set)
                b->vmpl = pf.vmpl;
        fprintf(stderr, "keyward-unlock: SEV-SNP binding pins TCB %016llx%s and VMPL %u%s\n",
                (unsigned long long)b->tcb, o->snp_tcb_set ? "" : " (the platform's committed TCB, from its report)",
                b->vmpl, o->snp_vmpl_set ? "" : " (this guest's, from its report)");
        return KW_OK;
}

int kwu_cmd_enroll(const struct opts *in)
{
        struct opts copy = *in;
        const struct opts *o = &copy;
        if (copy.tpm2_public_key == NULL && copy.tpm2_pcrs == 0 && !copy.no_tpm2) {
                copy.tpm2_public_key = kwu_image_key_default();   /* when no TPM2 option is given */
                if (copy.tpm2_public_key != NULL)
                        fprintf(stderr, "keyward-unlock: the TPM2 keyslot is sealed to PCR policies signed by the "
                                        "image key %s (found there; --no-tpm2 to leave it out)\n",
                                copy.tpm2_public_key);
        }
        if (copy.no_tpm2 && (copy.tpm2_public_key != NULL || copy.tpm2_pcrs != 0)) {
                fprintf(stderr, "keyward-unlock enroll: --no-tpm2 takes no other TPM2 option\n");
                return EXIT_USAGE;
        }
        if (!o->format) {
                fprintf(stderr, "keyward-unlock enroll: give --format: this build enrolls while it formats a "
                                "blank device\n");
                return EXIT_USAGE;
        }
        char key[KWU_RECOVERY_KEY_LEN + 1], tpass[KWU_TPM2_PASSPHRASE + 1] = "", spass[KWU_SNP_PASSPHRASE + 1] = "";
        char *token = NULL, *ptoken = NULL, *stoken = NULL, uuid[37];
        struct kwu_tpm *t = NULL;
        struct kwu_extra_slot extra[2];
        size_t nextra = 0;
        kw_result r = KW_OK;
        struct kwu_tpm_binding bind;
        char *pem = NULL;
        if (kwu_cli_tpm_binding(o, &bind, &pem) != 0)
                return EXIT_USAGE;
        if (uuid_new(uuid) != 0)
                r = KW_RESULT(KW_ERR_RANDOM);
        int tpm = (bind.pcrs | bind.pk_pcrs) != 0;
        if (r.code == 0 && tpm) {
                r = kwu_tpm_open(o->tpm2_device, &t);
                if (r.code == 0)
                        r = kwu_tpm_seal(t, &bind, 1 + (int)nextra, tpass, &token, &ptoken);
                kwu_tpm_close(t);
                extra[nextra] = (struct kwu_extra_slot){ .keyslot = 1 + (int)nextra, .pass = tpass,
                                                         .pass_len = strlen(tpass), .token_json = token,
                                                         .token2_json = ptoken };
                nextra++;
        }
        if (r.code == 0 && o->snp) {
                struct kwu_snp_bind sb;
                r = kwu_cli_snp_binding(o, &sb);
                if (r.code == 0)
                        r = kwu_snp_passphrase(NULL, o->snp_device, &sb, uuid, spass);
                if (r.code == 0) {
                        stoken = kwu_snp_token_json(&sb, 1 + (int)nextra);
                        if (stoken == NULL)
                                r = KW_RESULT(KW_ERR_NOMEM);
                }
                extra[nextra] = (struct kwu_extra_slot){ .keyslot = 1 + (int)nextra, .pass = spass,
                                                         .pass_len = strlen(spass), .token_json = stoken };
                nextra++;
        }
        if (r.code == 0)
                r = kwu_volume_format(o->device, uuid, extra, nextra, key);
        OPENSSL_cleanse(tpass, sizeof tpass);
        OPENSSL_cleanse(spass, sizeof spass);
        free(token);
        free(ptoken);
        free(stoken);
        free(pem);
        if (r.code != 0)
                return kwu_cli_fail(o->device, r);
        if (!tpm && !o->snp)
                fprintf(stderr, "keyward-unlock: warning: no measured binding enrolled (no TPM2 option, no image "
                                "key found, no --snp): only the recovery key opens this volume, so the "
                                "appliance will not open it at boot by itself\n");
        fprintf(stderr,
                "keyward-unlock: %s formatted; keyslot 0 opens it with the recovery key on stdout%s%s.\n"
                "Store the key offline now: it is shown once and stored nowhere on this machine.\n",
                o->device, tpm ? ", keyslot 1 through this TPM" : "",
                o->snp ? (tpm ? ", keyslot 2 through SEV-SNP" : ", keyslot 1 through SEV-SNP") : "");
        printf("%s\n", key);
        fflush(stdout);
        OPENSSL_cleanse(key, sizeof key);
        return EXIT_DONE;
}

void kwu_cli_tpm_ctx_init(struct kwu_tpm_ctx *c)
{
        memset(c, 0, sizeof *c);
        kw_buf_init(&c->blob, 32 * 1024);
        kw_buf_init(&c->policy, 256);
        kw_buf_init(&c->pubkey, 32 * 1024);
}

void kwu_cli_tpm_ctx_free(struct kwu_tpm_ctx *c)
{
        kw_buf_free(&c->blob);
        kw_buf_free(&c->policy);
        kw_buf_free(&c->pubkey);
        free(c->sigfile);
        kwu_tpm_close(c->t);
        c->t = NULL;
}

/* Unseals tok and opens its keyslot (activated as name, or only tried). */
static kw_result tpm_token_open(const struct opts *o, struct kwu_volume *v, const struct kwu_token *tok,
                                struct kwu_tpm_ctx *c, const char *name)
{
        const struct kwu_hdr *h = kwu_volume_header(v);
        if (c->t == NULL)
                KW_TRY(kwu_tpm_open(o->tpm2_device, &c->t));
        kw_result r = kwu_token_str(h->json, h->json_len, tok->id, "tpm2-blob", &c->blob);
        if (r.code == 0)
                r = kwu_token_str(h->json, h->json_len, tok->id, "tpm2-policy-hash", &c->policy);
        if (r.code == 0 && tok->has_pubkey)
                r = kwu_token_str(h->json, h->json_len, tok->id, "tpm2_pubkey", &c->pubkey);
        if (r.code == 0 && tok->has_pubkey && !c->sig_tried) {
                c->sig_tried = 1;
                c->sigfile = read_small(o->tpm2_signature, KWU_PCRSIG_MAX, &c->siglen);
        }
        KW_TRY(r);
        uint8_t expected[24][32];
        uint32_t emask = 0;
        int have_expected = tok->has_expected &&
                            kwu_token_pcr_values(h->json, h->json_len, tok->expected_token, &emask, expected).code == 0;
        struct kwu_tpm_token_data d = { .expected = have_expected ? (const uint8_t(*)[32])expected : NULL,
                                        .expected_mask = emask,
                                        .blob_b64 = (const char *)c->blob.p,
                                        .policy_hex = (const char *)c->policy.p,
                                        .pubkey_b64 = tok->has_pubkey ? (const char *)c->pubkey.p : NULL,
                                        .sigfile = c->sigfile, .sigfile_len = c->siglen,
                                        .sigfile_name = o->tpm2_signature };
        char pass[KWU_TPM2_PASSPHRASE + 1];
        r = kwu_tpm_unseal(c->t, tok, &d, pass);
        if (r.code == 0)
                r = kwu_volume_unlock(v, __builtin_ctz(tok->keyslots), pass, KWU_TPM2_PASSPHRASE, name);
        OPENSSL_cleanse(pass, sizeof pass);
        return r;
}

/* Derives tok's SEV-SNP passphrase for this volume and opens its keyslot. */
static kw_result snp_token_open(const struct opts *o, struct kwu_volume *v, const struct kwu_token *tok,
                                const char *name)
{
        char pass[KWU_SNP_PASSPHRASE + 1];
        kw_result r = kwu_snp_passphrase(NULL, o->snp_device, &tok->snp, kwu_volume_header(v)->uuid, pass);
        if (r.code == 0)
                r = kwu_volume_unlock(v, __builtin_ctz(tok->keyslots), pass, KWU_SNP_PASSPHRASE, name);
        if (r.code == KW_ERR_AUTH) {
                kw_err_set_detail("the key this VM derives does not open keyslot %d: its launch measurement or "
                                  "policy (or the chip) differ from enrollment",
                                  __builtin_ctz(tok->keyslots));
                r = KW_RESULT(KW_ERR_TPM_POLICY);
        }
        OPENSSL_cleanse(pass, sizeof pass);
        return r;
}

kw_result kwu_cli_binding_open(const struct opts *o, struct kwu_volume *v, const struct kwu_token *tok,
                               struct kwu_tpm_ctx *c, const char *name)
{
        return tok->type == KWU_TOKEN_KEYWARD_SNP ? snp_token_open(o, v, tok, name)
                                                  : tpm_token_open(o, v, tok, c, name);
}

/* open: the first TPM2 token that opens.  check (all = 1): every binding,
 * one line each, nothing activated. */
static int open_or_check(const struct opts *o, int all)
{
        struct kwu_volume *v = NULL;
        kw_result r = kwu_volume_open(o->device, &o->exp, &v);
        if (r.code != 0)
                return kwu_cli_fail(o->device, r);
        const struct kwu_layout *l = kwu_volume_layout(v);
        struct kwu_tpm_ctx c;
        kwu_cli_tpm_ctx_init(&c);
        kw_result first = KW_RESULT(KW_ERR_NOT_FOUND);
        char first_detail[512] = "";
        int opened = 0;
        const struct kwu_token *opener = NULL;
        for (unsigned i = 0; i < l->ntokens && (all || !opened); i++) {
                const struct kwu_token *tok = &l->tokens[i];
                int slot = __builtin_ctz(tok->keyslots);
                char what[96];
                if (tok->type == KWU_TOKEN_SYSTEMD_RECOVERY) {
                        if (all)
                                printf("token %u (recovery key), keyslot %d: opens only with the key (not tried)\n",
                                       tok->id, slot);
                        continue;
                }
                kwu_cli_binding_text(tok, what, sizeof what);
                r = kwu_cli_binding_open(o, v, tok, &c, all ? NULL : o->name);
                if (r.code == 0) {
                        opened++;
                        if (opener == NULL)
                                opener = tok;
                        if (all)
                                printf("token %u (%s), keyslot %d: would open now\n", tok->id, what, slot);
                        else
                                printf("token %u (%s) opens keyslot %d%s%s\n", tok->id,
                                       tok->type == KWU_TOKEN_KEYWARD_SNP ? "SEV-SNP" : "TPM2", slot,
                                       o->name ? ": activated as /dev/mapper/" : "",
                                       o->name ? o->name : " (checked: nothing activated)");
                        continue;
                }
                if (first.code == KW_ERR_NOT_FOUND) {
                        first = r;
                        snprintf(first_detail, sizeof first_detail, "%s", kw_err_detail());
                }
                if (all)
                        printf("token %u (%s), keyslot %d: would NOT open: %s: %s\n", tok->id, what, slot,
                               kwu_cli_headline(r.code), kw_err_detail());
        }
        int rc = EXIT_DONE;
        if (!all && opener != NULL)
                kwu_cli_write_record(o, l, kwu_binding_name(opener->type));
        if (!opened) {
                if (first.code == KW_ERR_NOT_FOUND)
                        kw_err_set_detail("the volume has no TPM2 or SEV-SNP keyslot (open it with recover)");
                else
                        kw_err_set_detail("%s", first_detail);
                rc = kwu_cli_fail(o->device, first.code == KW_ERR_NOT_FOUND ? KW_RESULT(KW_ERR_NOT_FOUND) : first);
        }
        kwu_cli_tpm_ctx_free(&c);
        kwu_volume_close(v);
        return rc;
}

void kwu_cli_write_record(const struct opts *o, const struct kwu_layout *l, const char *binding)
{
        if (o->name == NULL || o->record == NULL || o->record[0] == '\0')
                return;   /* nothing activated, or no record wanted */
        kw_result r = kwu_unlock_record_write(o->record, o->device, o->name, binding, l, time(NULL));
        if (r.code != 0)
                fprintf(stderr, "keyward-unlock: warning: the volume is open but its unlock record "
                                "was not written: %s\n", kw_err_detail());
}

int kwu_cmd_open(const struct opts *o) { return open_or_check(o, 0); }

int kwu_cmd_check(const struct opts *o)
{
        if (o->name != NULL) {
                fprintf(stderr, "keyward-unlock check: activates nothing; --name is for open\n");
                return EXIT_USAGE;
        }
        return open_or_check(o, 1);
}
