/*
 * ovf_fuzz.c - keyward-provision's CustomData scanner on arbitrary bytes
 * (provisioning/ovf.c).  Invariants: no crash; a result only with a
 * decoded document of at most 3/4 of the input; nothing written to the
 * output on a refusal.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "../../provisioning/ovf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct kw_buf out;
        kw_buf_init(&out, 64 * 1024);
        kw_result r = kwp_ovf_custom_data((const char *)data, size, &out);
        if (r.code == 0 && (out.len == 0 || out.len > size * 3 / 4 + 3))
                abort();
        if (r.code != 0 && (out.len != 0 || (r.code != KW_ERR_NOT_FOUND && r.code != KW_ERR_BAD_FIELD &&
                                              r.code != KW_ERR_TOO_LARGE && r.code != KW_ERR_NOMEM)))
                abort();
        kw_buf_free(&out);
        return 0;
}
