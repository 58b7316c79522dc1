/*
 * doc_fuzz.c - libFuzzer target for the provisioning document (user data:
 * bytes anyone who can launch the VM chooses).  Each input is parsed and
 * checked as keyward-provision run does; when it passes, the server
 * configuration it makes is written out, read back, and written again: the
 * two texts must be the same (kw_config_write round trip).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../provisioning/doc.h"
#include "common/buf.h"
#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const struct kwp_doc_base base = { .data_dir = "/var/lib/keyward" };
        struct kwp_doc *d = NULL;
        if (!kw_ok(kwp_doc_parse(&base, "fuzz", (const char *)data, size, &d)))
                return 0;
        struct kw_buf a, b;
        kw_buf_init(&a, 1u << 21);
        kw_buf_init(&b, 1u << 21);
        struct kw_config *c = NULL;
        if (!kw_ok(kw_config_write(d->cfg, &a)) || !kw_ok(kw_config_defaults(&c)) ||
            !kw_ok(kw_config_parse("back", (const char *)a.p, a.len, c)) || !kw_ok(kw_config_write(c, &b)) ||
            a.len != b.len || memcmp(a.p, b.p, a.len) != 0)
                abort();
        kw_config_free(c);
        kw_buf_free(&a);
        kw_buf_free(&b);
        kwp_doc_free(d);
        return 0;
}
