/*
 * cli.h - keyward-unlock's command-line program, shared between its files:
 * main.c (options, usage, exit statuses), cli_status.c (status and how a
 * binding is described), cli_volume.c (enroll, open, check, and opening
 * through a binding), cli_recover.c (recover and re-enrollment).
 */
#ifndef KWU_CLI_H
#define KWU_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "../../server/common/result.h"
#include "luks2_check.h"
#include "tpm2_seal.h"
#include "volume.h"

/* Exit statuses: stable, documented in docs/unlock.md and --help. */
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

/* The parsed command line (main.c fills it; the commands read it). */
struct opts {
        int json;
        int format;
        const char *name;
        uint32_t tpm2_pcrs;
        uint32_t tpm2_pk_pcrs;
        int snp, snp_tcb_set, snp_vmpl_set;
        int no_reenroll, reenroll_all, no_tpm2;
        const char *snp_device;
        uint32_t snp_fields, snp_vmpl;
        uint64_t snp_tcb;
        const char *tpm2_device;
        const char *tpm2_public_key;
        const char *tpm2_signature;
        const char *record;          /* the unlock record to write ("" = none) */
        struct kwu_expect exp;
        const char *device;
};

/* After the volume was activated as o->name: the unlock record (o->record)
 * saying it opened through binding; a failure is a warning on stderr, not
 * an error (the volume is open). */
void kwu_cli_write_record(const struct opts *o, const struct kwu_layout *l, const char *binding);

/* One line on stderr for a failure (what, and the detail); its exit status. */
int kwu_cli_fail(const char *device, kw_result r);
/* What a failure means here, in a few words. */
const char *kwu_cli_headline(int code);
/* "policy+measurement+tcb_version" from a guest field mask. */
void kwu_cli_snp_fields_text(uint32_t f, char *out, size_t cap);
/* A token's binding in a few words ("TPM2, signed PCR 11", "SEV-SNP, VCEK over ..."). */
void kwu_cli_binding_text(const struct kwu_token *tok, char *out, size_t cap);

/* The TPM2 binding the options ask for (--tpm2-pcrs, --tpm2-public-key,
 * --tpm2-public-key-pcrs), none when neither; *pem holds the key's text (the
 * caller frees it).  -1 after saying on stderr that the key file cannot be
 * read. */
int kwu_cli_tpm_binding(const struct opts *o, struct kwu_tpm_binding *b, char **pem);

/* What opening through TPM2 tokens keeps from one token to the next (the
 * TPM connection, the signature file read once). */
struct kwu_tpm_ctx {
        struct kwu_tpm *t;
        struct kw_buf blob, policy, pubkey;
        char *sigfile;
        size_t siglen;
        int sig_tried;
};
void kwu_cli_tpm_ctx_init(struct kwu_tpm_ctx *c);
void kwu_cli_tpm_ctx_free(struct kwu_tpm_ctx *c);

/* Opens tok's keyslot through its binding (TPM2 unseal or SEV-SNP
 * derivation): activated as name, or only tried when name is NULL. */
KW_MUST_USE kw_result kwu_cli_binding_open(const struct opts *o, struct kwu_volume *v, const struct kwu_token *tok,
                                           struct kwu_tpm_ctx *c, const char *name);

/* A new SEV-SNP binding from the options: the TCB to pin and the VMPL
 * from --snp-tcb / --snp-vmpl, or else from this guest's attestation
 * report (the committed TCB, its VMPL), said on stderr. */
KW_MUST_USE kw_result kwu_cli_snp_binding(const struct opts *o, struct kwu_snp_bind *b);

int kwu_cmd_status(const struct opts *o);
int kwu_cmd_enroll(const struct opts *o);
int kwu_cmd_open(const struct opts *o);
int kwu_cmd_check(const struct opts *o);
int kwu_cmd_recover(const struct opts *o);

#endif
