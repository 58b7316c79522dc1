/*
 * dbexport_fuzz.c - the key store export document's parser (server/custody/
 * dbio_parse.c) on arbitrary bytes: keywardctl db import reads a file that
 * came from anywhere (another machine, a copy, a tampered backup).
 *
 * Properties: no crash, leak or out-of-bounds read; a refusal leaves the
 * output empty and says why; an accepted document writes back to a
 * document that parses to the same checksum and writes the same bytes
 * again (the format is a fixed point after one write).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "custody/dbio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct kw_dbio_doc d;
        kw_dbio_doc_init(&d);
        kw_result r = kw_dbio_parse(data, size, &d);
        if (!kw_ok(r)) {
                if (d.nkeys != 0 || d.keys != NULL || d.ntokens != 0 || d.nstores != 0 ||
                    kw_err_detail()[0] == '\0')
                        abort();
                return 0;
        }
        uint8_t a[32], b[32];
        struct kw_buf w1, w2;
        kw_buf_init(&w1, (size_t)KW_DBIO_MAX_BYTES);
        kw_buf_init(&w2, (size_t)KW_DBIO_MAX_BYTES);
        struct kw_dbio_doc back;
        kw_dbio_doc_init(&back);
        if (!kw_ok(kw_dbio_checksum(&d, a)) || !kw_ok(kw_dbio_write(&d, &w1)) ||
            !kw_ok(kw_dbio_parse(w1.p, w1.len, &back)) || !kw_ok(kw_dbio_checksum(&back, b)) ||
            memcmp(a, b, 32) != 0 || !kw_ok(kw_dbio_write(&back, &w2)) || w1.len != w2.len ||
            memcmp(w1.p, w2.p, w1.len) != 0)
                abort();
        kw_buf_free(&w1);
        kw_buf_free(&w2);
        kw_dbio_doc_free(&back);
        kw_dbio_doc_free(&d);
        return 0;
}
