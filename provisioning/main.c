/*
 * keyward-provision - first-boot set-up of the appliance (docs/provisioning.md).
 *
 * This build has the first parts: finding the provisioning document
 * (source.h), the data disk (disk.h) and the final self-test (selftest.h).
 * `fetch` looks for the document as the first boot will, logs which source
 * answered (JSON lines on stderr) and writes the document to a new file
 * readable only by its owner, so that an operator can see what an instance
 * was given.  `find-disk` says which disk the first boot would take, or why
 * none.  `selftest` checks the started appliance through its listeners
 * (/healthz, XKS health signed with SigV4, EKM info), as its clients would.
 *
 * Exit status (stable, documented in docs/provisioning.md and --help):
 *   0  done
 *   2  usage error (selftest: also a --cacert or --secret-file that cannot be used)
 *   3  no source has a document
 *   4  a source answered with a document that cannot be used (too large,
 *      not base64)
 *   5  the output file cannot be written (or exists)
 *   6  find-disk --device: the disk holds data
 *   7  find-disk --device: the disk is missing, in use, too small, read-only
 *   8  selftest: a check failed (the one line names it and says why)
 *   1  anything else
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "../server/common/log.h"
#include "../server/common/secret.h"
#include "cli.h"
#include "disk.h"
#include "selftest.h"
#include "source.h"

enum {
        EXIT_DONE = 0,
        EXIT_OTHER = 1,
        EXIT_USAGE = 2,
        EXIT_NOT_FOUND = 3,
        EXIT_BAD_DOC = 4,
        EXIT_OUTPUT = 5,
        EXIT_DISK_DATA = 6,
        EXIT_DISK_UNUSABLE = 7,
        EXIT_SELFTEST_FAILED = 8,
};

static const char USAGE[] =
        "usage: keyward-provision run [--doc FILE | source options] [options]   (see run --help)\n"
        "       keyward-provision check FILE\n"
        "       keyward-provision fetch --out FILE [source options]\n"
        "       keyward-provision find-disk [--device PATH]\n"
        "       keyward-provision selftest --url https://HOST:PORT (--cacert FILE | --pin-sha256 HEX)\n"
        "                [--xks-prefix PREFIX --access-key-id ID --secret-file FILE [--region R]\n"
        "                 [--service S]] [--ekm-prefix PREFIX] [--timeout-ms N] [--attempts N]\n"
        "\n"
        "commands:\n"
        "  fetch           find the provisioning document as the first boot does and write it\n"
        "                  to FILE (created, mode 0600; never printed): the first source that\n"
        "                  has one wins, in this order: --file, a NoCloud config disk\n"
        "                  (user-data), Azure's provisioning CD (ovf-env.xml CustomData),\n"
        "                  AWS IMDSv2 user data, Azure IMDS userData, GCP metadata user-data\n"
        "  find-disk       the data disk the first boot takes: the first disk by name that\n"
        "                  is not removable or read-only, has no partitions, nothing mounted\n"
        "                  or active on it, at least 32 MiB, its first and last MiB zeros;\n"
        "                  its path and size on stdout.  --device PATH: check that disk\n"
        "                  (--sys-block DIR, --dev-dir DIR: where disks are listed)\n"
        "  selftest        check the started appliance through its listeners, as its clients\n"
        "                  do: GET /healthz; with --xks-prefix, POST PREFIX/kms/xks/v1/health\n"
        "                  signed with SigV4 (the secret access key is the one line of FILE,\n"
        "                  never an argument; region default " KWP_SELFTEST_REGION ", service\n"
        "                  default " KWP_SELFTEST_SERVICE "); with --ekm-prefix (\"\" for none),\n"
        "                  POST /azureekm[/PREFIX]/info without a client certificate (200, or\n"
        "                  EKM's 401 Unauthorized).  The server's certificate is verified with\n"
        "                  --cacert FILE, or pinned with --pin-sha256 (SHA-256 of its DER).\n"
        "                  Connection refused, timeouts, 503 and 429 are retried (--attempts,\n"
        "                  default 10, back-off from 250 ms doubling up to 5 s; --timeout-ms,\n"
        "                  default 5000, each request)\n"
        "\n"
        "source options:\n"
        "  --file PATH         a local document (then no other source is asked)\n"
        "  --nocloud-device DEV  the config disk (default " KWP_NOCLOUD_DEVICE ")\n"
        "  --ovf-device DEV    Azure's provisioning CD (default " KWP_OVF_DEVICE ")\n"
        "  --no-nocloud, --no-ovf   do not look at that device\n"
        "  --aws-url URL       AWS IMDS base URL (default " KWP_AWS_URL ")\n"
        "  --azure-url URL     Azure IMDS base URL (default " KWP_AZURE_URL ")\n"
        "  --gcp-url URL       GCP metadata base URL (default " KWP_GCP_URL ")\n"
        "  --no-aws, --no-azure, --no-gcp   do not ask that cloud\n"
        "  --timeout-ms N      each request, connection included (default 2000)\n"
        "  --attempts N        per source while it fails (default 3; 404 is not a failure)\n"
        "  -h, --help          this text\n"
        "\n"
        "exit status: 0 done, 2 usage, 3 no source has a document (find-disk: no disk\n"
        "qualifies), 6 find-disk --device: the disk holds data, 7 find-disk --device: missing,\n"
        "in use, too small or read-only, 4 a document that cannot be\n"
        "used (too large, not base64, refused ovf-env.xml), 5 the output file cannot be written,\n"
        "8 selftest: a check failed, 1 anything else.  Details: docs/provisioning.md\n";

/* The number optarg of option opt, lo..hi; -1 (said on stderr) otherwise. */
static int opt_uint(const char *opt, unsigned lo, unsigned hi, unsigned *ret)
{
        char *end = NULL;
        errno = 0;
        unsigned long v = strtoul(optarg, &end, 10);
        if (end == optarg || *end != '\0' || errno != 0 || v < lo || v > hi) {
                fprintf(stderr, "keyward-provision: %s wants %u..%u\n", opt, lo, hi);
                return -1;
        }
        *ret = (unsigned)v;
        return 0;
}

/* The options of every command that makes requests: -t --timeout-ms (1 ms
 * to 10 minutes) and -n --attempts (1 to max_attempts); -1 on a bad value. */
static int opt_request(int c, unsigned *timeout_ms, unsigned *attempts, unsigned max_attempts)
{
        return c == 't' ? opt_uint("--timeout-ms", 1, 600000, timeout_ms) : opt_uint("--attempts", 1, max_attempts, attempts);
}

static int write_out(const char *path, const struct kw_buf *doc)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
                fprintf(stderr, "keyward-provision: cannot create %s: %s\n", path, strerror(errno));
                return EXIT_OUTPUT;
        }
        size_t off = 0;
        while (off < doc->len) {
                ssize_t w = write(fd, doc->p + off, doc->len - off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        break;
                off += (size_t)w;
        }
        int ok = off == doc->len && fsync(fd) == 0;
        close(fd);
        if (!ok) {
                fprintf(stderr, "keyward-provision: cannot write %s: %s\n", path, strerror(errno));
                unlink(path);
                return EXIT_OUTPUT;
        }
        return EXIT_DONE;
}

static int cmd_fetch(const struct kwp_sources *s, const char *out)
{
        struct kw_buf doc;
        kw_buf_init(&doc, KWP_DOC_MAX);
        enum kwp_source_kind which = KWP_SRC_NONE;
        kw_result r = kwp_fetch(s, &doc, &which);
        int rc = EXIT_DONE;
        if (r.code != 0) {
                fprintf(stderr, "keyward-provision: %s\n", kw_err_detail());
                rc = r.code == KW_ERR_NOT_FOUND                                   ? EXIT_NOT_FOUND
                     : r.code == KW_ERR_TOO_LARGE || r.code == KW_ERR_BAD_FIELD ? EXIT_BAD_DOC
                                                                                  : EXIT_OTHER;
        } else {
                char n[24];
                snprintf(n, sizeof n, "%zu", doc.len);
                kw_log(KW_LOG_INFO, "provision_document", "source", kwp_source_name(which), "bytes", n, KW_END);
                rc = write_out(out, &doc);
        }
        OPENSSL_cleanse(doc.p, doc.len);
        kw_buf_free(&doc);
        return rc;
}

static int cmd_find_disk(const struct kwp_disk_cfg *dc)
{
        char path[512];
        uint64_t bytes = 0;
        kw_result r = kwp_disk_find(dc, path, sizeof path, &bytes);
        if (r.code != 0) {
                fprintf(stderr, "keyward-provision: %s\n", kw_err_detail());
                return r.code == KW_ERR_NOT_FOUND && dc->device == NULL ? EXIT_NOT_FOUND
                       : r.code == KW_ERR_EXISTS                        ? EXIT_DISK_DATA
                                                                        : EXIT_DISK_UNUSABLE;
        }
        printf("%s %llu\n", path, (unsigned long long)bytes);
        return EXIT_DONE;
}

/* fetch and find-disk: one option table (find-disk takes its three only). */
static int fetch_or_find_disk(int argc, char **argv, int find_disk)
{
        static const struct option longopts[] = {
                { "out", required_argument, NULL, 'o' },
                { "file", required_argument, NULL, 'f' },
                { "nocloud-device", required_argument, NULL, 'c' },
                { "ovf-device", required_argument, NULL, 'v' },
                { "no-nocloud", no_argument, NULL, 'C' },
                { "no-ovf", no_argument, NULL, 'V' },
                { "aws-url", required_argument, NULL, 'a' },
                { "azure-url", required_argument, NULL, 'z' },
                { "gcp-url", required_argument, NULL, 'g' },
                { "no-aws", no_argument, NULL, 'A' },
                { "no-azure", no_argument, NULL, 'Z' },
                { "no-gcp", no_argument, NULL, 'G' },
                { "timeout-ms", required_argument, NULL, 't' },
                { "attempts", required_argument, NULL, 'n' },
                { "device", required_argument, NULL, 'D' },
                { "sys-block", required_argument, NULL, 'S' },
                { "dev-dir", required_argument, NULL, 'E' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        struct kwp_sources s;
        kwp_sources_default(&s);
        struct kwp_disk_cfg dc;
        kwp_disk_cfg_default(&dc);
        int source_opt = 0, disk_opt = 0;
        const char *out = NULL;
        optind = 2;
        int c;
        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
                switch (c) {
                case 'o': out = optarg; break;
                case 'f': s.file = optarg; break;
                case 'c': s.nocloud_device = optarg; break;
                case 'v': s.ovf_device = optarg; break;
                case 'C': s.nocloud_device = NULL; break;
                case 'V': s.ovf_device = NULL; break;
                case 'a': s.aws_url = optarg; break;
                case 'z': s.azure_url = optarg; break;
                case 'g': s.gcp_url = optarg; break;
                case 'A': s.aws_url = NULL; break;
                case 'Z': s.azure_url = NULL; break;
                case 'G': s.gcp_url = NULL; break;
                case 't':
                case 'n':
                        if (opt_request(c, &s.timeout_ms, &s.attempts, 20) != 0)
                                return EXIT_USAGE;
                        break;
                case 'D': dc.device = optarg; disk_opt = 1; break;
                case 'S': dc.sys_block = optarg; disk_opt = 1; break;
                case 'E': dc.dev_dir = optarg; disk_opt = 1; break;
                case 'h': fputs(USAGE, stdout); return EXIT_DONE;
                default: return EXIT_USAGE;
                }
                source_opt |= c != 'D' && c != 'S' && c != 'E' && c != 'o';
        }
        if (find_disk) {
                if (optind != argc || source_opt || out != NULL) {
                        fprintf(stderr, "keyward-provision find-disk: takes --device, --sys-block, --dev-dir only\n");
                        return EXIT_USAGE;
                }
                return cmd_find_disk(&dc);
        }
        if (disk_opt) {
                fprintf(stderr, "keyward-provision fetch: --device, --sys-block and --dev-dir are find-disk's\n");
                return EXIT_USAGE;
        }
        if (optind != argc || out == NULL) {
                fprintf(stderr, "keyward-provision fetch: give --out FILE and no other argument (see --help)\n");
                return EXIT_USAGE;
        }
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                fprintf(stderr, "keyward-provision: libcurl cannot start\n");
                return EXIT_OTHER;
        }
        int rc = cmd_fetch(&s, out);
        curl_global_cleanup();
        return rc;
}

static int main_fetch(int argc, char **argv) { return fetch_or_find_disk(argc, argv, 0); }
static int main_find_disk(int argc, char **argv) { return fetch_or_find_disk(argc, argv, 1); }

/* The checks that passed, for the line on stdout. */
static void print_passed(const struct kwp_selftest_report *rep)
{
        static const enum kwp_selftest_check order[] = { KWP_CHECK_HEALTHZ, KWP_CHECK_XKS, KWP_CHECK_EKM };
        printf("selftest passed:");
        for (size_t i = 0, n = 0; i < sizeof order / sizeof order[0]; i++)
                if (rep->passed & (1u << order[i]))
                        printf("%s %s%s", n++ ? "," : "", kwp_selftest_check_name(order[i]),
                               rep->warned & (1u << order[i]) ? " (with a warning)" : "");
        printf("\n");
}

/*
 * getopt_long takes any unambiguous abbreviation: "--secret X" would be
 * --secret-file with X, the secret itself, as a path (and in a message).
 * selftest takes its long options spelled out only.
 */
static int long_options_exact(int argc, char **argv, const struct option *longopts)
{
        for (int i = 2; i < argc && strcmp(argv[i], "--") != 0; i++) {
                if (strncmp(argv[i], "--", 2) != 0)
                        continue;
                const char *name = argv[i] + 2;
                size_t n = strcspn(name, "=");
                const struct option *o = longopts;
                while (o->name != NULL && !(strlen(o->name) == n && strncmp(o->name, name, n) == 0))
                        o++;
                if (o->name == NULL) {
                        int secret = n == 6 && strncmp(name, "secret", 6) == 0; /* lint: allow (an option name) */
                        fprintf(stderr, "keyward-provision selftest: unknown option %.*s (see --help)%s\n", (int)n + 2,
                                argv[i], secret ? "; the secret access key is never an argument: --secret-file FILE" : "");
                        return -1;
                }
                if (o->has_arg == required_argument && name[n] == '\0')
                        i++;   /* its value, whatever it looks like */
        }
        return 0;
}

/* selftest's options that name a string, and the member each sets. */
static const struct {
        const char *name;
        size_t member;
} selftest_strings[] = {
        { "url", offsetof(struct kwp_selftest_opts, url) },
        { "cacert", offsetof(struct kwp_selftest_opts, cacert) },
        { "pin-sha256", offsetof(struct kwp_selftest_opts, pin_sha256) },
        { "xks-prefix", offsetof(struct kwp_selftest_opts, xks_prefix) },
        { "access-key-id", offsetof(struct kwp_selftest_opts, access_key_id) },
        { "secret-file", offsetof(struct kwp_selftest_opts, secret_file) },
        { "region", offsetof(struct kwp_selftest_opts, region) },
        { "service", offsetof(struct kwp_selftest_opts, service) },
        { "ekm-prefix", offsetof(struct kwp_selftest_opts, ekm_prefix) },
};
#define N_SELFTEST_STRINGS (sizeof selftest_strings / sizeof selftest_strings[0])
#define OPT_STRING 0x100   /* getopt_long's value for selftest_strings[i]: OPT_STRING + i */

static int main_selftest(int argc, char **argv)
{
        struct option longopts[N_SELFTEST_STRINGS + 4];
        for (size_t i = 0; i < N_SELFTEST_STRINGS; i++)
                longopts[i] = (struct option){ selftest_strings[i].name, required_argument, NULL, OPT_STRING + (int)i };
        longopts[N_SELFTEST_STRINGS] = (struct option){ "timeout-ms", required_argument, NULL, 't' };
        longopts[N_SELFTEST_STRINGS + 1] = (struct option){ "attempts", required_argument, NULL, 'n' };
        longopts[N_SELFTEST_STRINGS + 2] = (struct option){ "help", no_argument, NULL, 'h' };
        longopts[N_SELFTEST_STRINGS + 3] = (struct option){ NULL, 0, NULL, 0 };
        if (long_options_exact(argc, argv, longopts) != 0)
                return EXIT_USAGE;
        struct kwp_selftest_opts o;
        kwp_selftest_opts_default(&o);
        optind = 2;
        int c;
        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
                if (c >= OPT_STRING && (size_t)(c - OPT_STRING) < N_SELFTEST_STRINGS) {
                        *(const char **)((char *)&o + selftest_strings[c - OPT_STRING].member) = optarg;
                } else if (c == 't' || c == 'n') {
                        if (opt_request(c, &o.timeout_ms, &o.attempts, 100) != 0)
                                return EXIT_USAGE;
                } else if (c == 'h') {
                        fputs(USAGE, stdout);
                        return EXIT_DONE;
                } else {
                        return EXIT_USAGE;
                }
        }
        if (optind != argc || o.url == NULL) {
                fprintf(stderr, "keyward-provision selftest: give --url and no other argument (see --help)\n");
                return EXIT_USAGE;
        }
        /* the secret access key passes through this process: no core dump of it */
        int locked = 0;
        kw_ignore(kw_secret_init(64 * 1024, &locked));   /* best effort: RLIMIT_MEMLOCK may refuse */
        kw_ignore(kw_secret_harden_process());
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                fprintf(stderr, "keyward-provision: libcurl cannot start\n");
                return EXIT_OTHER;
        }
        struct kwp_selftest_report rep;
        kw_result r = kwp_selftest_run(&o, &rep);
        curl_global_cleanup();
        if (r.code == 0) {
                print_passed(&rep);
                return EXIT_DONE;
        }
        fprintf(stderr, "keyward-provision: selftest: %s\n", rep.why);
        /* options: a wrong one, or a --cacert / --secret-file that cannot be used */
        return rep.failed == KWP_CHECK_OPTIONS ? (r.code == KW_ERR_NOMEM ? EXIT_OTHER : EXIT_USAGE)
               : rep.failed != KWP_CHECK_NONE  ? EXIT_SELFTEST_FAILED
                                               : EXIT_OTHER;
}

/* The subcommands. */
static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
} commands[] = {
        { "run", kwp_cli_run },
        { "check", kwp_cli_check },
        { "fetch", main_fetch },
        { "find-disk", main_find_disk },
        { "selftest", main_selftest },
};

int main(int argc, char **argv)
{
        if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
                fputs(USAGE, stdout);
                return EXIT_DONE;
        }
        for (size_t i = 0; argc >= 2 && i < sizeof commands / sizeof commands[0]; i++) {
                if (strcmp(argv[1], commands[i].name) == 0) {
                        kw_log_setup(KW_LOG_INFO, "provision");
                        return commands[i].run(argc, argv);
                }
        }
        fprintf(stderr, argc < 2 ? "%s" : "keyward-provision: unknown command (see --help)\n", USAGE);
        return EXIT_USAGE;
}
