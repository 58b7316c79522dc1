/*
 * run.h - provisioning from the document to a serving appliance
 * (docs/provisioning.md, "Steps").
 *
 * The steps, in order, each recorded in the journal (journal.h) when it
 * starts and when it is done, and each safe to run again:
 *
 *   disk        find and check the data disk (disk.h)
 *   volume      LUKS2 format and enroll, through keyward-unlock (TPM2 / SEV-SNP
 *               bindings + a recovery key)
 *   filesystem  open, ext4, mount (--no-activate: the data directory stands for
 *               the volume's file system); the journal moves onto the volume
 *   hsm         the HSM link: a local SoftHSM2 token (evaluation) or the
 *               customer's module, token and PIN; the PIN file
 *   tls         the TLS key and certificate (or CSR)
 *   config      keyward.toml, generated XKS credentials, softhsm2.conf
 *   store       keywardd --init as the custody user: master key, database,
 *               first admin credential
 *   services    the units started (systemctl)
 *   keys        the document's initial keys, through the admin API
 *   selftest    XKS and EKM through the real listeners
 *   output      what the customer gets back, once: serial console + a file
 *               only root reads
 *
 * Killed anywhere and run again with the same document, it goes on from
 * the step that was not done and ends in the same state.  A disk is
 * formatted only when it is blank, or when the journal says this run
 * started formatting it.
 */
#ifndef KWP_RUN_H
#define KWP_RUN_H

#include <stdbool.h>

#include "disk.h"
#include "source.h"

/* Exit statuses of `run` beyond the shared ones (main.c). */
enum {
        KWP_EXIT_STEP = 10,          /* a step failed: the message names it           */
        KWP_EXIT_PROVISIONED = 11,   /* already provisioned (no --reprovision)        */
        KWP_EXIT_OTHER_DOC = 12,     /* a run with another document is under way      */
};

struct kwp_run_opts {
        const char *doc_path;        /* NULL: the sources (src)                       */
        struct kwp_sources src;
        struct kwp_disk_cfg disk;
        const char *data_dir;        /* "/var/lib/keyward"                            */
        const char *state_dir;       /* "/run/keyward-provision"                      */
        bool activate;               /* false: --no-activate                          */
        bool reprovision;
        bool if_needed;              /* --if-needed: the boot unit's mode              */
        const char *unlock_bin;      /* "/usr/sbin/keyward-unlock"                    */
        const char *keywardd_bin;    /* "/usr/sbin/keywardd"                          */
        const char *keywardctl_bin;  /* "/usr/bin/keywardctl"                         */
        const char *systemctl;       /* "/usr/bin/systemctl"                          */
        const char *tpm2_device;     /* NULL: the default TPM (unlock, attestation)   */
        const char *snp_device;      /* NULL: keyward-unlock's default                */
        const char *console;         /* "/dev/console"                                */
        const char *softhsm_module;  /* NULL: KWP_SOFTHSM_MODULE                      */
        const char *host;            /* the self-test reaches the listeners here      */
        unsigned service_timeout_ms; /* services to answer: 60000                     */
};

void kwp_run_opts_default(struct kwp_run_opts *o);

/* Runs every step not done yet; the exit status (0, or KWP_EXIT_*, or
 * main.c's). */
int kwp_run(const struct kwp_run_opts *o);

/* Parses and checks a document as `run` would (nothing else is touched);
 * prints warnings; the exit status. */
int kwp_check(const char *path, const char *data_dir);

#endif
