/*
 * keyward-unlock - the data volume: its LUKS2 header checked before any use,
 * its format with a recovery key, and opening it with that key
 * (docs/unlock.md).  The TPM2 and SEV-SNP bindings (enroll, open, check)
 * come with issue 12's next parts.
 *
 * Exit status (stable, documented in docs/unlock.md and --help):
 *   0  done (status: the header passed every check)
 *   2  usage error
 *   3  the device is missing or cannot be read
 *   4  not a LUKS2 volume
 *   5  the LUKS2 header was refused (tampered or not what enrollment wrote)
 *   6  enroll --format: the device is not blank (its first MiB holds data)
 *   7  the key given does not open the volume
 *   8  no TPM, or the TPM failed
 *   9  the TPM's PCRs differ from those the volume was sealed to (or, for a
 *      signed policy, no signature covers this boot's PCRs)
 *  10  a signed PCR policy's signature does not hold (another key, or forged)
 *  11  open/check: the volume has no TPM2 or SEV-SNP keyslot
 *  12  no SEV-SNP guest device, or its request failed
 *  13  the platform's TCB (or guest SVN) is below the one pinned at enrollment
 *   1  anything else (out of memory, internal error, libcryptsetup failure)
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "luks2_check.h"
#include "luks2_hdr.h"
#include "pcrsig.h"
#include "recovery_key.h"
#include "snp_key.h"
#include "tpm2_seal.h"
#include "volume.h"

enum {
        EXIT_DONE = 0,
        EXIT_OTHER = 1,
        EXIT_USAGE = 2,
        EXIT_DEVICE = 3,
        EXIT_NOT_LUKS2 = 4,
        EXIT_HEADER = 5,
        EXIT_NOT_BLANK = 6,
        EXIT_WRONG_KEY = 7,
        EXIT_TPM = 8,
        EXIT_PCR = 9,
        EXIT_SIGNATURE = 10,
        EXIT_NO_BINDING = 11,
        EXIT_SNP = 12,
        EXIT_SNP_TCB = 13,
};

static const char USAGE[] =
        "usage: keyward-unlock COMMAND [OPTIONS] DEVICE\n"
        "\n"
        "commands:\n"
        "  status DEVICE   the header's keyslots and tokens, what each is bound to, and\n"
        "                  whether the header passes the checks done before any use\n"
        "  enroll --format [--tpm2-public-key PEM] [--tpm2-pcrs LIST] [--snp --snp-tcb HEX] DEVICE\n"
        "                  format a blank DEVICE as the data volume (LUKS2, aes-xts-plain64,\n"
        "                  512-bit key) with a recovery key, printed once on stdout and\n"
        "                  stored nowhere, and a keyslot sealed by the TPM (systemd-tpm2\n"
        "                  token): to a PCR policy the image key signs (--tpm2-public-key,\n"
        "                  over PCR 11 unless --tpm2-public-key-pcrs says otherwise) and/or\n"
        "                  to the current values of literal PCRs (--tpm2-pcrs)\n"
        "  open [--name NAME] DEVICE\n"
        "                  after the header checks, unseal each TPM2 token and open DEVICE:\n"
        "                  with --name as /dev/mapper/NAME, without it only check that the TPM\n"
        "                  opens the volume now (nothing is activated)\n"
        "  check DEVICE    would the volume open now?  After the header checks, each binding\n"
        "                  on its own line: would it open, or why not (nothing activated)\n"
        "  recover [--name NAME] DEVICE\n"
        "                  read a recovery key from stdin and open DEVICE with it, after the\n"
        "                  header checks: with --name as /dev/mapper/NAME, without it only\n"
        "                  check that the key opens the volume (nothing is activated)\n"
        "\n"
        "options:\n"
        "  --json              status: machine-readable output (one JSON object)\n"
        "  --tpm2-pcrs LIST    literal PCRs to seal to, e.g. 7+11 (SHA-256 bank)\n"
        "  --tpm2-public-key PEM   the image's RSA public key signing PCR policies\n"
        "  --tpm2-public-key-pcrs LIST   the PCRs it signs (default 11)\n"
        "  --snp               enroll: also a keyslot whose passphrase the SEV-SNP firmware\n"
        "                      derives (VCEK, over policy + measurement + TCB)\n"
        "  --snp-tcb HEX       the TCB version to pin (16 hex digits)\n"
        "  --snp-vmpl N        the VMPL to bind (default 0)\n"
        "  --snp-bind-image-id also bind the image and family IDs\n"
        "  --snp-device PATH   the guest device (default /dev/sev-guest)\n"
        "  --tpm2-signature FILE   open: the signature of this boot's PCR policy, as\n"
        "                      systemd-measure writes it (default\n"
        "                      /run/systemd/tpm2-pcr-signature.json)\n"
        "  --tpm2-device TCTI  the TPM (default device:/dev/tpmrm0; e.g.\n"
        "                      swtpm:host=127.0.0.1,port=2321)\n"
        "  --extra-keyslot N   accept keyslot N without a token recording it (e.g. the\n"
        "                      passphrase keyslot of a volume enrolled by systemd-cryptenroll);\n"
        "                      repeatable\n"
        "  -h, --help          this text\n"
        "\n"
        "exit status: 0 done (status: header passed), 2 usage, 3 device missing or unreadable,\n"
        "4 not a LUKS2 volume, 5 header refused (tampered or not what enrollment wrote),\n"
        "6 enroll --format: device not blank, 7 the key does not open the volume,\n"
        "8 no TPM or a TPM failure, 9 the PCRs differ from those sealed to (or no\n"
        "signature covers them), 10 the PCR policy's signature does not hold,\n"
        "11 open/check: no TPM2 or SEV-SNP keyslot, 12 no SEV-SNP guest device or its request\n"
        "failed, 13 the platform's TCB is below the pinned one,\n"
        "1 anything else.  Details: docs/unlock.md\n";

struct opts {
        int json;
        int format;
        const char *name;
        uint32_t tpm2_pcrs;
        uint32_t tpm2_pk_pcrs;
        int snp, snp_tcb_set;
        const char *snp_device;
        uint32_t snp_fields, snp_vmpl;
        uint64_t snp_tcb;
        const char *tpm2_device;
        const char *tpm2_public_key;
        const char *tpm2_signature;
        struct kwu_expect exp;
        const char *device;
};

static int exit_for(kw_result r)
{
        switch (r.code) {
        case 0: return EXIT_DONE;
        case KW_ERR_DEVICE: return EXIT_DEVICE;
        case KW_ERR_LUKS_NOT_LUKS2: return EXIT_NOT_LUKS2;
        case KW_ERR_LUKS_TAMPERED: return EXIT_HEADER;
        case KW_ERR_EXISTS: return EXIT_NOT_BLANK;
        case KW_ERR_AUTH: return EXIT_WRONG_KEY;
        case KW_ERR_TPM: return EXIT_TPM;
        case KW_ERR_TPM_POLICY: return EXIT_PCR;
        case KW_ERR_TPM_SIGNATURE: return EXIT_SIGNATURE;
        case KW_ERR_BAD_FIELD: return EXIT_USAGE;
        case KW_ERR_NOT_FOUND: return EXIT_NO_BINDING;
        case KW_ERR_SNP: return EXIT_SNP;
        case KW_ERR_SNP_TCB: return EXIT_SNP_TCB;
        default: return EXIT_OTHER;
        }
}

/* What a failure means here (kw_strerror's sentences are the server's). */
static const char *headline(int code)
{
        switch (code) {
        case KW_ERR_EXISTS: return "the device is not blank";
        case KW_ERR_AUTH: return "wrong key";
        case KW_ERR_IO: return "libcryptsetup failed";
        case KW_ERR_NOT_FOUND: return "no measured binding";
        case KW_ERR_TPM_POLICY: return "not the measured boot this volume was sealed to";
        default: return kw_strerror(code);
        }
}

/* One line on stderr for a failure: what, and the detail. */
static int fail(const char *device, kw_result r)
{
        const char *d = kw_err_detail();
        fprintf(stderr, "keyward-unlock: %s: %s%s%s\n", device, headline(r.code), d[0] ? ": " : "", d);
        return exit_for(r);
}

static void mask_text(uint32_t m, char *out, size_t cap)
{
        size_t n = 0;
        out[0] = '\0';
        for (unsigned i = 0; i < 32 && n + 4 < cap; i++)
                if (m & (1u << i))
                        n += (size_t)snprintf(out + n, cap - n, "%s%u", n ? "+" : "", i);
        if (n == 0)
                snprintf(out, cap, "none");
}

static cJSON *mask_json(uint32_t m)
{
        cJSON *a = cJSON_CreateArray();
        for (unsigned i = 0; a != NULL && i < 32; i++)
                if (m & (1u << i))
                        cJSON_AddItemToArray(a, cJSON_CreateNumber(i));
        return a;
}

static const struct kwu_token *token_of(const struct kwu_layout *l, unsigned slot)
{
        for (unsigned i = 0; i < l->ntokens; i++)
                if (l->tokens[i].keyslots & (1u << slot))
                        return &l->tokens[i];
        return NULL;
}

static void snp_fields_text(uint32_t f, char *out, size_t cap)
{
        static const char *const names[] = { "policy", "image_id", "family_id", "measurement", "guest_svn",
                                             "tcb_version" };
        size_t n = 0;
        out[0] = '\0';
        for (unsigned i = 0; i < 6 && n < cap; i++)
                if (f & (1u << i))
                        n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? "+" : "", names[i]);
}

static void binding_text(const struct kwu_token *tok, char *out, size_t cap)
{
        if (tok->type == KWU_TOKEN_KEYWARD_SNP) {
                char f[96];
                snp_fields_text(tok->snp.fields, f, sizeof f);
                snprintf(out, cap, "SEV-SNP, %s over %s, TCB %016llx, VMPL %u", tok->snp.root == 0 ? "VCEK" : "VMRK",
                         f, (unsigned long long)tok->snp.tcb, tok->snp.vmpl);
                return;
        }
        char a[64] = "", b[64] = "";
        if (tok->has_pubkey) {
                mask_text(tok->pubkey_pcrs, a, sizeof a);
                snprintf(b, sizeof b, "signed PCR %s", a);
        }
        if (tok->pcrs != 0) {
                mask_text(tok->pcrs, a, sizeof a);
                snprintf(out, cap, "TPM2, %s%sPCR %s", b, b[0] ? " + " : "", a);
        } else {
                snprintf(out, cap, "TPM2, %s", b);
        }
}

static void status_text(const char *device, const struct kwu_hdr *h, const struct kwu_layout *l)
{
        printf("device: %s\nuuid: %s\nlabel: %s\nheader: %llu bytes a copy, seqid %llu, both copies agree\n",
               device, h->uuid, h->label[0] ? h->label : "(none)", (unsigned long long)h->hdr_size,
               (unsigned long long)h->seqid);
        printf("data: %s, %u-byte sectors, from byte %llu\n", l->cipher, l->sector_size,
               (unsigned long long)l->data_offset);
        for (unsigned i = 0; i < l->nslots; i++) {
                const struct kwu_keyslot *k = &l->slots[i];
                const struct kwu_token *t = token_of(l, k->id);
                char kdf[48];
                if (k->kdf_hash[0])
                        snprintf(kdf, sizeof kdf, "%s-%s, %llu iterations", k->kdf, k->kdf_hash,
                                 (unsigned long long)k->kdf_cost);
                else
                        snprintf(kdf, sizeof kdf, "%s, time cost %llu", k->kdf, (unsigned long long)k->kdf_cost);
                if (t != NULL)
                        printf("keyslot %u: %s; recorded by token %u (%s)\n", k->id, kdf, t->id,
                               kwu_token_type_name(t->type));
                else
                        printf("keyslot %u: %s; no token (accepted with --extra-keyslot)\n", k->id, kdf);
        }
        for (unsigned i = 0; i < l->ntokens; i++) {
                const struct kwu_token *t = &l->tokens[i];
                char slots[64], pcrs[64], ppcrs[64];
                mask_text(t->keyslots, slots, sizeof slots);
                if (t->type == KWU_TOKEN_SYSTEMD_RECOVERY) {
                        printf("token %u: systemd-recovery, keyslot %s: a recovery key (never stored here)\n", t->id,
                               slots);
                        continue;
                }
                if (t->type == KWU_TOKEN_KEYWARD_SNP) {
                        char what[160];
                        binding_text(t, what, sizeof what);
                        printf("token %u: keyward-snp, keyslot %s: %s\n", t->id, slots, what);
                        continue;
                }
                mask_text(t->pcrs, pcrs, sizeof pcrs);
                mask_text(t->pubkey_pcrs, ppcrs, sizeof ppcrs);
                printf("token %u: systemd-tpm2, keyslot %s: ", t->id, slots);
                if (t->has_pubkey)
                        printf("signed PCR policy over PCR %s, ", ppcrs);
                printf("literal PCRs %s; bank %s, primary key %s, PIN %s\n", pcrs, t->bank, t->primary_alg,
                       t->pin ? "yes" : "no");
        }
        printf("header check: passed\n");
}

static int status_json(const char *device, const struct kwu_hdr *h, const struct kwu_layout *l)
{
        cJSON *o = cJSON_CreateObject();
        cJSON *slots = cJSON_AddArrayToObject(o, "keyslots");
        cJSON *toks = cJSON_AddArrayToObject(o, "tokens");
        cJSON_AddStringToObject(o, "device", device);
        cJSON_AddStringToObject(o, "uuid", h->uuid);
        cJSON_AddStringToObject(o, "label", h->label);
        cJSON_AddNumberToObject(o, "header_size", (double)h->hdr_size);
        cJSON_AddNumberToObject(o, "seqid", (double)h->seqid);
        cJSON_AddStringToObject(o, "cipher", l->cipher);
        cJSON_AddNumberToObject(o, "sector_size", l->sector_size);
        cJSON_AddNumberToObject(o, "data_offset", (double)l->data_offset);
        for (unsigned i = 0; slots != NULL && i < l->nslots; i++) {
                const struct kwu_keyslot *k = &l->slots[i];
                const struct kwu_token *t = token_of(l, k->id);
                cJSON *s = cJSON_CreateObject();
                cJSON_AddItemToArray(slots, s);
                cJSON_AddNumberToObject(s, "id", k->id);
                cJSON_AddStringToObject(s, "kdf", k->kdf);
                if (k->kdf_hash[0])
                        cJSON_AddStringToObject(s, "kdf_hash", k->kdf_hash);
                cJSON_AddNumberToObject(s, "kdf_cost", (double)k->kdf_cost);
                if (t != NULL)
                        cJSON_AddNumberToObject(s, "token", t->id);
                else
                        cJSON_AddNullToObject(s, "token");
        }
        for (unsigned i = 0; toks != NULL && i < l->ntokens; i++) {
                const struct kwu_token *t = &l->tokens[i];
                cJSON *j = cJSON_CreateObject();
                cJSON_AddItemToArray(toks, j);
                cJSON_AddNumberToObject(j, "id", t->id);
                cJSON_AddStringToObject(j, "type", kwu_token_type_name(t->type));
                cJSON_AddItemToObject(j, "keyslots", mask_json(t->keyslots));
                if (t->type == KWU_TOKEN_KEYWARD_SNP) {
                        char f[96], tcb[20];
                        snp_fields_text(t->snp.fields, f, sizeof f);
                        snprintf(tcb, sizeof tcb, "%016llx", (unsigned long long)t->snp.tcb);
                        cJSON_AddStringToObject(j, "root_key", t->snp.root == 0 ? "vcek" : "vmrk");
                        cJSON_AddStringToObject(j, "fields", f);
                        cJSON_AddStringToObject(j, "tcb_version", tcb);
                        cJSON_AddNumberToObject(j, "vmpl", t->snp.vmpl);
                }
                if (t->type != KWU_TOKEN_SYSTEMD_TPM2)
                        continue;
                cJSON_AddItemToObject(j, "pcrs", mask_json(t->pcrs));
                if (t->has_pubkey)
                        cJSON_AddItemToObject(j, "signed_policy_pcrs", mask_json(t->pubkey_pcrs));
                cJSON_AddStringToObject(j, "bank", t->bank);
                cJSON_AddStringToObject(j, "primary_alg", t->primary_alg);
                cJSON_AddBoolToObject(j, "pin", t->pin);
        }
        cJSON_AddStringToObject(o, "header_check", "passed");
        char *text = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (text == NULL)
                return EXIT_OTHER;
        printf("%s\n", text);
        free(text);
        return EXIT_DONE;
}

static int cmd_status(const struct opts *o)
{
        int fd = open(o->device, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                kw_err_set_detail("cannot open it: %s", strerror(errno));
                return fail(o->device, KW_RESULT(KW_ERR_DEVICE));
        }
        struct kwu_hdr h;
        kw_result r = kwu_hdr_read_fd(fd, &h);
        close(fd);
        if (r.code != 0)
                return fail(o->device, r);
        struct kwu_layout *l = calloc(1, sizeof *l);
        r = l != NULL ? kwu_check_json(h.json, h.json_len, h.hdr_size, &o->exp, l) : KW_RESULT(KW_ERR_NOMEM);
        int rc;
        if (r.code != 0)
                rc = fail(o->device, r);
        else if (o->json)
                rc = status_json(o->device, &h, l);
        else {
                status_text(o->device, &h, l);
                rc = EXIT_DONE;
        }
        free(l);
        kwu_hdr_free(&h);
        return rc;
}

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

static int cmd_enroll(const struct opts *o)
{
        if (!o->format) {
                fprintf(stderr, "keyward-unlock enroll: give --format: this build enrolls while it formats a "
                                "blank device\n");
                return EXIT_USAGE;
        }
        if (o->snp && !o->snp_tcb_set) {
                fprintf(stderr, "keyward-unlock enroll: --snp needs --snp-tcb (the TCB version to pin, 16 hex "
                                "digits, from the image's policy or an attestation report)\n");
                return EXIT_USAGE;
        }
        char key[KWU_RECOVERY_KEY_LEN + 1], tpass[KWU_TPM2_PASSPHRASE + 1] = "", spass[KWU_SNP_PASSPHRASE + 1] = "";
        char *token = NULL, *stoken = NULL, uuid[37];
        struct kwu_tpm *t = NULL;
        struct kwu_extra_slot extra[2];
        size_t nextra = 0;
        kw_result r = KW_OK;
        struct kwu_tpm_binding bind = { .pcrs = o->tpm2_pcrs };
        char *pem = NULL;
        if (o->tpm2_public_key != NULL) {
                pem = read_small(o->tpm2_public_key, 16384, &bind.pk_pem_len);
                if (pem == NULL) {
                        fprintf(stderr, "keyward-unlock: cannot read %s: %s\n", o->tpm2_public_key, strerror(errno));
                        return EXIT_USAGE;
                }
                bind.pk_pem = pem;
                bind.pk_pcrs = o->tpm2_pk_pcrs != 0 ? o->tpm2_pk_pcrs : 1u << 11;
        }
        if (uuid_new(uuid) != 0)
                r = KW_RESULT(KW_ERR_RANDOM);
        int tpm = (bind.pcrs | bind.pk_pcrs) != 0;
        if (r.code == 0 && tpm) {
                r = kwu_tpm_open(o->tpm2_device, &t);
                if (r.code == 0)
                        r = kwu_tpm_seal(t, &bind, 1 + (int)nextra, tpass, &token);
                kwu_tpm_close(t);
                extra[nextra] = (struct kwu_extra_slot){ .keyslot = 1 + (int)nextra, .pass = tpass,
                                                         .pass_len = strlen(tpass), .token_json = token };
                nextra++;
        }
        if (r.code == 0 && o->snp) {
                struct kwu_snp_bind sb = { .root = 0, .fields = o->snp_fields, .vmpl = o->snp_vmpl,
                                           .guest_svn = 0, .tcb = o->snp_tcb };
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
        free(stoken);
        free(pem);
        if (r.code != 0)
                return fail(o->device, r);
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

/* What opening through the TPM keeps across tokens. */
struct tpm_open {
        struct kwu_tpm *t;
        struct kw_buf blob, policy, pubkey;
        char *sigfile;
        size_t siglen;
        int sig_tried;
};

static void tpm_open_free(struct tpm_open *c)
{
        kw_buf_free(&c->blob);
        kw_buf_free(&c->policy);
        kw_buf_free(&c->pubkey);
        free(c->sigfile);
        kwu_tpm_close(c->t);
}

/* Unseals tok and opens its keyslot (activated as name, or only tried). */
static kw_result tpm_token_open(const struct opts *o, struct kwu_volume *v, const struct kwu_token *tok,
                                struct tpm_open *c, const char *name)
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
        struct kwu_tpm_token_data d = { .blob_b64 = (const char *)c->blob.p,
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

/* open: the first TPM2 token that opens.  check (all = 1): every binding,
 * one line each, nothing activated. */
static int open_or_check(const struct opts *o, int all)
{
        struct kwu_volume *v = NULL;
        kw_result r = kwu_volume_open(o->device, &o->exp, &v);
        if (r.code != 0)
                return fail(o->device, r);
        const struct kwu_layout *l = kwu_volume_layout(v);
        struct tpm_open c;
        memset(&c, 0, sizeof c);
        kw_buf_init(&c.blob, 32 * 1024);
        kw_buf_init(&c.policy, 256);
        kw_buf_init(&c.pubkey, 32 * 1024);
        kw_result first = KW_RESULT(KW_ERR_NOT_FOUND);
        char first_detail[512] = "";
        int opened = 0;
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
                binding_text(tok, what, sizeof what);
                r = tok->type == KWU_TOKEN_KEYWARD_SNP ? snp_token_open(o, v, tok, all ? NULL : o->name)
                                                       : tpm_token_open(o, v, tok, &c, all ? NULL : o->name);
                if (r.code == 0) {
                        opened++;
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
                               headline(r.code), kw_err_detail());
                if (!all && r.code == KW_ERR_TPM && c.t == NULL)
                        continue;   /* no TPM here: an SEV-SNP binding may still open it */
        }
        int rc = EXIT_DONE;
        if (!opened) {
                if (first.code == KW_ERR_NOT_FOUND)
                        kw_err_set_detail("the volume has no TPM2 or SEV-SNP keyslot (open it with recover)");
                else
                        kw_err_set_detail("%s", first_detail);
                rc = fail(o->device, first.code == KW_ERR_NOT_FOUND ? KW_RESULT(KW_ERR_NOT_FOUND) : first);
        }
        tpm_open_free(&c);
        kwu_volume_close(v);
        return rc;
}

static int cmd_open(const struct opts *o) { return open_or_check(o, 0); }

static int cmd_check(const struct opts *o)
{
        if (o->name != NULL) {
                fprintf(stderr, "keyward-unlock check: activates nothing; --name is for open\n");
                return EXIT_USAGE;
        }
        return open_or_check(o, 1);
}

static int cmd_recover(const struct opts *o)
{
        char line[256], key[KWU_RECOVERY_KEY_LEN + 1];
        size_t n = fread(line, 1, sizeof line - 1, stdin);
        kw_result r = kwu_recovery_key_normalize(line, n, key);
        OPENSSL_cleanse(line, sizeof line);
        if (r.code != 0) {
                fprintf(stderr, "keyward-unlock recover: %s (on stdin)\n", kw_err_detail());
                return EXIT_USAGE;
        }
        struct kwu_volume *v = NULL;
        r = kwu_volume_open(o->device, &o->exp, &v);
        int rc = EXIT_DONE;
        if (r.code != 0) {
                rc = fail(o->device, r);
                goto out;
        }
        const struct kwu_layout *l = kwu_volume_layout(v);
        int tried = 0;
        r = KW_RESULT(KW_ERR_AUTH);
        for (unsigned i = 0; i < l->ntokens && r.code == KW_ERR_AUTH; i++) {
                if (l->tokens[i].type != KWU_TOKEN_SYSTEMD_RECOVERY)
                        continue;
                int slot = __builtin_ctz(l->tokens[i].keyslots);
                tried++;
                r = kwu_volume_unlock(v, slot, key, KWU_RECOVERY_KEY_LEN, o->name);
                if (r.code == 0)
                        printf("the recovery key opens keyslot %d%s%s\n", slot, o->name ? ": activated as /dev/mapper/" : "",
                               o->name ? o->name : " (checked: nothing activated)");
        }
        if (tried == 0)
                kw_err_set_detail("the volume has no recovery keyslot");
        else if (r.code == KW_ERR_AUTH)
                kw_err_set_detail("the recovery key does not open this volume");
        if (r.code != 0)
                rc = fail(o->device, r);
out:
        OPENSSL_cleanse(key, sizeof key);
        kwu_volume_close(v);
        return rc;
}

/* "7+11" or "7,11" to a mask; -1 on anything else. */
static int parse_pcrs(const char *s, uint32_t *ret)
{
        uint32_t m = 0;
        while (*s != '\0') {
                char *end = NULL;
                long n = strtol(s, &end, 10);
                if (end == s || n < 0 || n > 23 || (*end != '\0' && *end != '+' && *end != ','))
                        return -1;
                m |= 1u << n;
                s = *end != '\0' ? end + 1 : end;
                if (*end != '\0' && *s == '\0')
                        return -1;
        }
        if (m == 0)
                return -1;
        *ret = m;
        return 0;
}

static const struct command {
        const char *name;
        int (*run)(const struct opts *o);
} commands[] = {
        { "status", cmd_status },
        { "enroll", cmd_enroll },
        { "recover", cmd_recover },
        { "open", cmd_open },
        { "check", cmd_check },
};

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
                { "json", no_argument, NULL, 'j' },
                { "extra-keyslot", required_argument, NULL, 'x' },
                { "format", no_argument, NULL, 'f' },
                { "name", required_argument, NULL, 'n' },
                { "tpm2-pcrs", required_argument, NULL, 'p' },
                { "tpm2-device", required_argument, NULL, 'd' },
                { "tpm2-public-key", required_argument, NULL, 'k' },
                { "tpm2-public-key-pcrs", required_argument, NULL, 'K' },
                { "tpm2-signature", required_argument, NULL, 's' },
                { "snp", no_argument, NULL, 'S' },
                { "snp-device", required_argument, NULL, 'D' },
                { "snp-tcb", required_argument, NULL, 'T' },
                { "snp-vmpl", required_argument, NULL, 'V' },
                { "snp-bind-image-id", no_argument, NULL, 'I' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        /* tpm2-tss logs to stderr on its own (e.g. "ERROR:tcti:..." when there
         * is no TPM); our one line says what failed.  An operator's TSS2_LOG
         * is kept. */
        (void)setenv("TSS2_LOG", "all+NONE", 0);
        struct opts o;
        memset(&o, 0, sizeof o);
        kwu_expect_default(&o.exp);
        o.tpm2_device = KWU_TPM2_DEFAULT_DEVICE;
        o.tpm2_signature = KWU_PCRSIG_DEFAULT;
        o.snp_device = KWU_SNP_DEFAULT_DEVICE;
        o.snp_fields = KWU_SNP_F_REQUIRED;
        if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
                fputs(USAGE, stdout);
                return EXIT_DONE;
        }
        if (argc < 2) {
                fputs(USAGE, stderr);
                return EXIT_USAGE;
        }
        const struct command *cmd = NULL;
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
                if (strcmp(argv[1], commands[i].name) == 0)
                        cmd = &commands[i];
        if (cmd == NULL) {
                fprintf(stderr, "keyward-unlock: unknown command \"%s\" (see --help)\n", argv[1]);
                return EXIT_USAGE;
        }
        optind = 2;
        int c;
        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
                char *end = NULL;
                long n;
                switch (c) {
                case 'j':
                        o.json = 1;
                        break;
                case 'f':
                        o.format = 1;
                        break;
                case 'd':
                        o.tpm2_device = optarg;
                        break;
                case 'k':
                        o.tpm2_public_key = optarg;
                        break;
                case 's':
                        o.tpm2_signature = optarg;
                        break;
                case 'S':
                        o.snp = 1;
                        break;
                case 'D':
                        o.snp_device = optarg;
                        break;
                case 'I':
                        o.snp_fields |= KWU_SNP_F_IMAGE_ID | KWU_SNP_F_FAMILY_ID;
                        break;
                case 'T':
                        o.snp_tcb = strtoull(optarg, &end, 16);
                        if (strlen(optarg) != 16 || *end != '\0') {
                                fprintf(stderr, "keyward-unlock: --snp-tcb wants the TCB version as 16 hex digits\n");
                                return EXIT_USAGE;
                        }
                        o.snp_tcb_set = 1;
                        break;
                case 'V':
                        n = strtol(optarg, &end, 10);
                        if (end == optarg || *end != '\0' || n < 0 || n > 3) {
                                fprintf(stderr, "keyward-unlock: --snp-vmpl wants 0..3\n");
                                return EXIT_USAGE;
                        }
                        o.snp_vmpl = (uint32_t)n;
                        break;
                case 'K':
                        if (parse_pcrs(optarg, &o.tpm2_pk_pcrs) != 0) {
                                fprintf(stderr, "keyward-unlock: --tpm2-public-key-pcrs wants PCR numbers 0..23 "
                                                "joined by + or , (e.g. 11)\n");
                                return EXIT_USAGE;
                        }
                        break;
                case 'p':
                        if (parse_pcrs(optarg, &o.tpm2_pcrs) != 0) {
                                fprintf(stderr, "keyward-unlock: --tpm2-pcrs wants PCR numbers 0..23 joined by + "
                                                "or , (e.g. 7+11)\n");
                                return EXIT_USAGE;
                        }
                        break;
                case 'n':
                        if (optarg[0] == '\0' || strlen(optarg) > 64 || strchr(optarg, '/') != NULL) {
                                fprintf(stderr, "keyward-unlock: --name wants a device-mapper name (no '/')\n");
                                return EXIT_USAGE;
                        }
                        o.name = optarg;
                        break;
                case 'x':
                        n = strtol(optarg, &end, 10);
                        if (end == optarg || *end != '\0' || n < 0 || n >= KWU_MAX_SLOTS) {
                                fprintf(stderr, "keyward-unlock: --extra-keyslot wants a keyslot number 0..31\n");
                                return EXIT_USAGE;
                        }
                        o.exp.extra_keyslots |= 1u << n;
                        break;
                case 'h':
                        fputs(USAGE, stdout);
                        return EXIT_DONE;
                default:
                        return EXIT_USAGE;
                }
        }
        if (optind != argc - 1) {
                fprintf(stderr, "keyward-unlock %s: give exactly one DEVICE (see --help)\n", cmd->name);
                return EXIT_USAGE;
        }
        o.device = argv[optind];
        return cmd->run(&o);
}
