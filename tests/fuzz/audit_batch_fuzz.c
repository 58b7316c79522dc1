/*
 * audit_batch_fuzz.c - the key-use audit batch decoder (server/custody/
 * audit_codec.c) on arbitrary bytes: a batch is read back from the database,
 * where whoever holds the database key can write anything.
 *
 * Properties: decoding never reads out of bounds or leaks; a decoded batch
 * has 1..KW_AUDIT_BATCH_MAX_RECORDS records whose fields are NUL-terminated,
 * at most KW_AUDIT_FIELD_MAX bytes and NUL-free; encoding it again and
 * decoding that gives the same records (the encoding loses nothing), and
 * each record can be chain-hashed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "custody/audit_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_or_abort(const struct kw_audit_batch *a, const struct kw_audit_batch *b)
{
        if (a->n != b->n)
                abort();
        for (size_t i = 0; i < a->n; i++) {
                if (a->recs[i].ts_ms != b->recs[i].ts_ms)
                        abort();
                for (int k = 0; k < KW_AUDIT_FIELDS; k++)
                        if (a->recs[i].flen[k] != b->recs[i].flen[k] ||
                            memcmp(a->recs[i].f[k], b->recs[i].f[k], a->recs[i].flen[k]) != 0)
                                abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct kw_audit_batch b = { 0 };
        if (kw_audit_batch_decode(data, size, &b).code != 0) {
                if (b.recs != NULL || b.mem != NULL || b.n != 0)
                        abort();
                return 0;
        }
        if (b.n == 0 || b.n > KW_AUDIT_BATCH_MAX_RECORDS)
                abort();
        struct kw_audit_hasher *h = NULL;
        if (kw_audit_hasher_new(&h).code != 0)
                abort();
        uint8_t prev[KW_AUDIT_HASH_LEN] = { 0 };
        for (size_t i = 0; i < b.n; i++) {
                for (int k = 0; k < KW_AUDIT_FIELDS; k++) {
                        const struct kw_audit_rec *r = &b.recs[i];
                        if (r->f[k] == NULL || r->flen[k] > KW_AUDIT_FIELD_MAX ||
                            r->f[k][r->flen[k]] != '\0' || memchr(r->f[k], '\0', r->flen[k]) != NULL)
                                abort();
                }
                if (kw_audit_chain_step(h, prev, i + 1, &b.recs[i], prev).code != 0)
                        abort();
        }
        kw_audit_hasher_free(h);
        struct kw_buf out;
        kw_buf_init(&out, 64u << 20);
        if (kw_audit_batch_encode(NULL, b.recs, b.n, &out).code != 0)
                abort();
        struct kw_audit_batch b2 = { 0 };
        if (kw_audit_batch_decode(out.p, out.len, &b2).code != 0)
                abort();
        same_or_abort(&b, &b2);
        kw_audit_batch_clear(&b2);
        kw_buf_free(&out);
        kw_audit_batch_clear(&b);
        return 0;
}
