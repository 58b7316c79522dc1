/*
 * cli_run.c - `keyward-provision run` and `check`: their options (run.h
 * does the work).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "../server/common/log.h"
#include "cli.h"
#include "run.h"

static const char RUN_USAGE[] =
        "usage: keyward-provision run [--doc FILE | source options] [options]\n"
        "       keyward-provision check FILE\n"
        "\n"
        "run: provision this appliance from its document (docs/provisioning.md): the data\n"
        "disk, its LUKS2 volume and bindings, the HSM link, TLS, the configuration, the key\n"
        "store, the services, the initial keys, a self-test, and what the customer gets back\n"
        "(on the console, once).  Every step is journaled: run again after a stop, it goes\n"
        "on from the step that was not done.\n"
        "\n"
        "  --doc FILE            the document (else: the sources, as fetch looks for them)\n"
        "  --if-needed           the boot unit's mode: exit 0 at once when this appliance was\n"
        "                        provisioned (its journal says so, or a disk holds the data\n"
        "                        volume and no run is under way in this boot)\n"
        "  --reprovision         on a provisioned appliance: apply this document's TLS, server\n"
        "                        tables, key stores and keys (the disk, its bindings and the\n"
        "                        HSM stay: the document must say what the first one did)\n"
        "  --data-dir DIR        where the data volume is mounted (default /var/lib/keyward)\n"
        "  --state-dir DIR       the journal until the volume exists (default\n"
        "                        /run/keyward-provision)\n"
        "  --no-activate         do not open or mount the volume (no device-mapper): DIR\n"
        "                        stands for its file system (tests, and building images)\n"
        "  --console PATH        where the customer's output is written (default /dev/console)\n"
        "  --tpm2-device TCTI    the TPM for keyward-unlock and the server's attestation\n"
        "                        (default device:/dev/tpmrm0)\n"
        "  --snp-device PATH     the SEV-SNP guest device for keyward-unlock\n"
        "  --unlock PATH, --keywardd PATH, --systemctl PATH   the programs run\n"
        "  --softhsm-module PATH the SoftHSM2 module of evaluation mode\n"
        "  --host ADDR           where the self-test reaches the listeners (127.0.0.1)\n"
        "  --sys-block DIR, --dev-dir DIR   where disks are listed (find-disk's)\n"
        "  source options: as for fetch\n"
        "\n"
        "check: parse and check a document as run would, and nothing else.\n"
        "\n"
        "exit status: 0 done, 2 usage, 3 no document, 4 the document is refused (the message\n"
        "is file:line: what), 10 a step failed (the message names it and what to fix),\n"
        "11 already provisioned, 12 a run with another document is under way, 1 other.\n";

int kwp_cli_check(int argc, char **argv)
{
        if (argc != 3 || argv[2][0] == '-') {
                fputs(RUN_USAGE, stderr);
                return 2;
        }
        return kwp_check(argv[2], "/var/lib/keyward");
}

int kwp_cli_run(int argc, char **argv)
{
        enum { O_REPROV = 254, O_IFNEEDED = 255, O_DOC = 256, O_DATA, O_STATE, O_NOACT, O_CONSOLE, O_TPM, O_SNP, O_UNLOCK, O_KWD,
               O_SYSTEMCTL, O_SOFTHSM, O_HOST, O_SYSB, O_DEVD, O_FILE, O_NOCLOUD, O_OVF, O_NONC,
               O_NOOVF, O_AWS, O_AZ, O_GCP, O_NOAWS, O_NOAZ, O_NOGCP, O_TIMEOUT, O_ATTEMPTS };
        static const struct option longopts[] = {
                { "doc", required_argument, NULL, O_DOC },
                { "if-needed", no_argument, NULL, O_IFNEEDED },
                { "reprovision", no_argument, NULL, O_REPROV },
                { "data-dir", required_argument, NULL, O_DATA },
                { "state-dir", required_argument, NULL, O_STATE },
                { "no-activate", no_argument, NULL, O_NOACT },
                { "console", required_argument, NULL, O_CONSOLE },
                { "tpm2-device", required_argument, NULL, O_TPM },
                { "snp-device", required_argument, NULL, O_SNP },
                { "unlock", required_argument, NULL, O_UNLOCK },
                { "keywardd", required_argument, NULL, O_KWD },
                { "systemctl", required_argument, NULL, O_SYSTEMCTL },
                { "softhsm-module", required_argument, NULL, O_SOFTHSM },
                { "host", required_argument, NULL, O_HOST },
                { "sys-block", required_argument, NULL, O_SYSB },
                { "dev-dir", required_argument, NULL, O_DEVD },
                { "file", required_argument, NULL, O_FILE },
                { "nocloud-device", required_argument, NULL, O_NOCLOUD },
                { "ovf-device", required_argument, NULL, O_OVF },
                { "no-nocloud", no_argument, NULL, O_NONC },
                { "no-ovf", no_argument, NULL, O_NOOVF },
                { "aws-url", required_argument, NULL, O_AWS },
                { "azure-url", required_argument, NULL, O_AZ },
                { "gcp-url", required_argument, NULL, O_GCP },
                { "no-aws", no_argument, NULL, O_NOAWS },
                { "no-azure", no_argument, NULL, O_NOAZ },
                { "no-gcp", no_argument, NULL, O_NOGCP },
                { "timeout-ms", required_argument, NULL, O_TIMEOUT },
                { "attempts", required_argument, NULL, O_ATTEMPTS },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        struct kwp_run_opts o;
        kwp_run_opts_default(&o);
        optind = 2;
        int c;
        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
                switch (c) {
                case O_DOC: o.doc_path = optarg; break;
                case O_IFNEEDED: o.if_needed = true; break;
                case O_REPROV: o.reprovision = true; break;
                case O_DATA: o.data_dir = optarg; break;
                case O_STATE: o.state_dir = optarg; break;
                case O_NOACT: o.activate = false; break;
                case O_CONSOLE: o.console = optarg; break;
                case O_TPM: o.tpm2_device = optarg; break;
                case O_SNP: o.snp_device = optarg; break;
                case O_UNLOCK: o.unlock_bin = optarg; break;
                case O_KWD: o.keywardd_bin = optarg; break;
                case O_SYSTEMCTL: o.systemctl = optarg; break;
                case O_SOFTHSM: o.softhsm_module = optarg; break;
                case O_HOST: o.host = optarg; break;
                case O_SYSB: o.disk.sys_block = optarg; break;
                case O_DEVD: o.disk.dev_dir = optarg; break;
                case O_FILE: o.doc_path = optarg; break;
                case O_NOCLOUD: o.src.nocloud_device = optarg; break;
                case O_OVF: o.src.ovf_device = optarg; break;
                case O_NONC: o.src.nocloud_device = NULL; break;
                case O_NOOVF: o.src.ovf_device = NULL; break;
                case O_AWS: o.src.aws_url = optarg; break;
                case O_AZ: o.src.azure_url = optarg; break;
                case O_GCP: o.src.gcp_url = optarg; break;
                case O_NOAWS: o.src.aws_url = NULL; break;
                case O_NOAZ: o.src.azure_url = NULL; break;
                case O_NOGCP: o.src.gcp_url = NULL; break;
                case O_TIMEOUT:
                case O_ATTEMPTS: {
                        char *end = NULL;
                        errno = 0;
                        unsigned long v = strtoul(optarg, &end, 10);
                        unsigned long hi = c == O_TIMEOUT ? 600000 : 20;
                        if (end == optarg || *end != '\0' || errno != 0 || v < 1 || v > hi) {
                                fprintf(stderr, "keyward-provision: --%s wants 1..%lu\n",
                                        c == O_TIMEOUT ? "timeout-ms" : "attempts", hi);
                                return 2;
                        }
                        if (c == O_TIMEOUT)
                                o.src.timeout_ms = (unsigned)v;
                        else
                                o.src.attempts = (unsigned)v;
                        break;
                }
                case 'h': fputs(RUN_USAGE, stdout); return 0;
                default: return 2;
                }
        }
        if (optind != argc) {
                fprintf(stderr, "keyward-provision run: unexpected argument %s (see --help)\n", argv[optind]);
                return 2;
        }
        if (o.data_dir[0] != '/' || o.state_dir[0] != '/') {
                fprintf(stderr, "keyward-provision run: --data-dir and --state-dir must be absolute\n");
                return 2;
        }
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                fprintf(stderr, "keyward-provision: libcurl cannot start\n");
                return 1;
        }
        int rc = kwp_run(&o);
        curl_global_cleanup();
        return rc;
}
