/*
 * audit_export_fuzz.c - the audit export verifier (server/custody/
 * audit_export_verify.c) on arbitrary file contents: keywardctl audit
 * verify-export reads files that came from anywhere, and the custody process
 * reads back each file it wrote before it prunes.
 *
 * The input is the decompressed content (JSON lines); it is written
 * gzip-compressed to a temporary file, as an export is, and verified.
 * Properties: no crash, leak or out-of-bounds read; a verdict of "intact"
 * means a consistent range (records = last_seq - first_seq + 1); a finding
 * names a line and a reason.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "custody/audit_export.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (path[0] == '\0') {
                snprintf(path, sizeof path, "/tmp/kw-audit-export-fuzz-%d.jsonl.gz", (int)getpid());
        }
        gzFile gz = gzopen(path, "wb1");
        if (gz == NULL)
                abort();
        if (size != 0 && gzwrite(gz, data, (unsigned)size) != (int)size)
                abort();
        if (gzclose(gz) != Z_OK)
                abort();
        struct kw_audit_export_check k;
        kw_result r = kw_audit_export_verify(path, &k);
        unlink(path);
        if (!kw_ok(r))
                return 0;
        if (k.ok) {
                if (k.records == 0 || k.last_seq < k.first_seq ||
                    k.records != k.last_seq - k.first_seq + 1 || k.why[0] != '\0')
                        abort();
        } else if (k.bad_line == 0 || k.why[0] == '\0' || memchr(k.why, '\0', sizeof k.why) == NULL) {
                abort();
        }
        return 0;
}
