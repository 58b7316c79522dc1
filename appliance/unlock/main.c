/*
 * keyward-unlock - the data volume: its LUKS2 header checked before any use,
 * its format with a recovery key, and opening it with that key
 * (docs/unlock.md), its TPM2 and SEV-SNP bindings (enroll, open, check), and
 * recovery with re-enrollment.
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
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "pcrsig.h"
#include "snp_key.h"
#include "unlock_record.h"
#include "tpm2_seal.h"

static const char USAGE[] =
        "usage: keyward-unlock COMMAND [OPTIONS] DEVICE\n"
        "\n"
        "commands:\n"
        "  status DEVICE   the header's keyslots and tokens, what each is bound to, and\n"
        "                  whether the header passes the checks done before any use\n"
        "  enroll --format [--tpm2-public-key PEM] [--tpm2-pcrs LIST] [--snp] DEVICE\n"
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
        "  recover [--name NAME] [--no-reenroll | --reenroll-all] [binding options] DEVICE\n"
        "                  read a recovery key from stdin and open DEVICE with it, after the\n"
        "                  header checks: with --name as /dev/mapper/NAME, without it only\n"
        "                  check that the key opens the volume (nothing is activated).\n"
        "                  Then re-enroll each TPM2 or SEV-SNP binding that does not open\n"
        "                  now (after an intended change: a new image, firmware, TPM), to\n"
        "                  the policy it recorded; --tpm2-pcrs / --tpm2-public-key give the\n"
        "                  TPM2 binding a new policy, --snp-tcb pins another TCB, --snp adds\n"
        "                  an SEV-SNP binding.  New keyslots are written and tried before\n"
        "                  the old ones are removed; the recovery key stays as it is\n"
        "\n"
        "options:\n"
        "  --json              status: machine-readable output (one JSON object)\n"
        "  --tpm2-pcrs LIST    literal PCRs to seal to, e.g. 7+11 (SHA-256 bank)\n"
        "  --tpm2-public-key PEM   the image's RSA public key signing PCR policies (enroll,\n"
        "                      without any TPM2 option: tpm2-pcr-public-key.pem from\n"
        "                      /etc/systemd, /run/systemd or /usr/lib/systemd when there)\n"
        "  --no-tpm2           enroll: no TPM2 keyslot, even with an image key found\n"
        "  --tpm2-public-key-pcrs LIST   the PCRs it signs (default 11)\n"
        "  --snp               enroll: also a keyslot whose passphrase the SEV-SNP firmware\n"
        "                      derives (VCEK, over policy + measurement + TCB)\n"
        "  --snp-tcb HEX       the TCB version to pin (16 hex digits; default: the\n"
        "                      platform's committed TCB, from its attestation report)\n"
        "  --snp-vmpl N        the VMPL to bind (default: this guest's, from the report)\n"
        "  --snp-bind-image-id also bind the image and family IDs\n"
        "  --snp-device PATH   the guest device (default /dev/sev-guest)\n"
        "  --record PATH       open/recover with --name: where to record which binding\n"
        "                      opened the volume (default /run/keyward/unlock.json, read by\n"
        "                      keywardd for GET /api/v1/status; \"\" = nowhere)\n"
        "  --tpm2-signature FILE   open: the signature of this boot's PCR policy, as\n"
        "                      systemd-measure writes it (default\n"
        "                      /run/systemd/tpm2-pcr-signature.json)\n"
        "  --tpm2-device TCTI  the TPM (default device:/dev/tpmrm0; e.g.\n"
        "                      swtpm:host=127.0.0.1,port=2321)\n"
        "  --extra-keyslot N   accept keyslot N without a token recording it (e.g. the\n"
        "                      passphrase keyslot of a volume enrolled by systemd-cryptenroll);\n"
        "                      repeatable\n"
        "  --no-reenroll       recover: open only, change nothing\n"
        "  --reenroll-all      recover: seal every measured binding again, also those\n"
        "                      that open now\n"
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
const char *kwu_cli_headline(int code)
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
int kwu_cli_fail(const char *device, kw_result r)
{
        const char *d = kw_err_detail();
        fprintf(stderr, "keyward-unlock: %s: %s%s%s\n", device, kwu_cli_headline(r.code), d[0] ? ": " : "", d);
        return exit_for(r);
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
        { "status", kwu_cmd_status },
        { "enroll", kwu_cmd_enroll },
        { "recover", kwu_cmd_recover },
        { "open", kwu_cmd_open },
        { "check", kwu_cmd_check },
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
                { "record", required_argument, NULL, 'R' },
                { "snp-tcb", required_argument, NULL, 'T' },
                { "snp-vmpl", required_argument, NULL, 'V' },
                { "snp-bind-image-id", no_argument, NULL, 'I' },
                { "no-reenroll", no_argument, NULL, 'N' },
                { "no-tpm2", no_argument, NULL, 'O' },
                { "reenroll-all", no_argument, NULL, 'A' },
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
        o.record = KWU_UNLOCK_RECORD_DEFAULT;
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
                case 'N':
                        o.no_reenroll = 1;
                        break;
                case 'O':
                        o.no_tpm2 = 1;
                        break;
                case 'A':
                        o.reenroll_all = 1;
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
                case 'R':
                        o.record = optarg;
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
                        o.snp_vmpl_set = 1;
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
