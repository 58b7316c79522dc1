/*
 * keyward-provision - first-boot set-up of the appliance (docs/provisioning.md).
 *
 * This build has the first parts: finding the provisioning document
 * (source.h) and the data disk (disk.h).  `fetch` looks for the document
 * as the first boot will, logs which source answered (JSON lines on
 * stderr) and writes the document to a new file readable only by its
 * owner, so that an operator can see what an instance was given.
 * `find-disk` says which disk the first boot would take, or why none.
 *
 * Exit status (stable, documented in docs/provisioning.md and --help):
 *   0  done
 *   2  usage error
 *   3  no source has a document
 *   4  a source answered with a document that cannot be used (too large,
 *      not base64)
 *   5  the output file cannot be written (or exists)
 *   6  find-disk --device: the disk holds data
 *   7  find-disk --device: the disk is missing, in use, too small, read-only
 *   1  anything else
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "../server/common/log.h"
#include "disk.h"
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
};

static const char USAGE[] =
        "usage: keyward-provision fetch --out FILE [source options]\n"
        "       keyward-provision find-disk [--device PATH]\n"
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
        "used (too large, not base64, refused ovf-env.xml), 5 the output file cannot be written, 1 anything else.  Details: docs/provisioning.md\n";

static int parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *ret)
{
        char *end = NULL;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || *end != '\0' || errno != 0 || v < lo || v > hi)
                return -1;
        *ret = (unsigned)v;
        return 0;
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

int main(int argc, char **argv)
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
        if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
                fputs(USAGE, stdout);
                return EXIT_DONE;
        }
        int find_disk = argc >= 2 && strcmp(argv[1], "find-disk") == 0;
        if (argc < 2 || (strcmp(argv[1], "fetch") != 0 && !find_disk)) {
                fprintf(stderr, argc < 2 ? "%s" : "keyward-provision: unknown command (see --help)\n", USAGE);
                return EXIT_USAGE;
        }
        kw_log_setup(KW_LOG_INFO, "provision");
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
                        if (parse_uint(optarg, 1, 600000, &s.timeout_ms) != 0) {
                                fprintf(stderr, "keyward-provision: --timeout-ms wants 1..600000\n");
                                return EXIT_USAGE;
                        }
                        break;
                case 'n':
                        if (parse_uint(optarg, 1, 20, &s.attempts) != 0) {
                                fprintf(stderr, "keyward-provision: --attempts wants 1..20\n");
                                return EXIT_USAGE;
                        }
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
