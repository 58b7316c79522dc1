/*
 * cli.h - keyward-unlock's command-line program, shared between its files:
 * main.c (options, usage, exit statuses), cli_status.c (status and how a
 * binding is described), cli_volume.c (enroll, open, check, recover).
 */
#ifndef KWU_CLI_H
#define KWU_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "../../server/common/result.h"
#include "luks2_check.h"

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

/* One line on stderr for a failure (what, and the detail); its exit status. */
int kwu_cli_fail(const char *device, kw_result r);
/* What a failure means here, in a few words. */
const char *kwu_cli_headline(int code);
/* "7+11" from a mask ("none" for 0). */
void kwu_cli_mask_text(uint32_t m, char *out, size_t cap);
/* "policy+measurement+tcb_version" from a guest field mask. */
void kwu_cli_snp_fields_text(uint32_t f, char *out, size_t cap);
/* A token's binding in a few words ("TPM2, signed PCR 11", "SEV-SNP, VCEK over ..."). */
void kwu_cli_binding_text(const struct kwu_token *tok, char *out, size_t cap);

int kwu_cmd_status(const struct opts *o);
int kwu_cmd_enroll(const struct opts *o);
int kwu_cmd_open(const struct opts *o);
int kwu_cmd_check(const struct opts *o);
int kwu_cmd_recover(const struct opts *o);

#endif
