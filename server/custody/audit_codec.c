/*
 * audit_codec.c - chain step and batch encoding of audit records (contract
 * and format in audit_codec.h).
 *
 * The decoder reads bytes that whoever holds the database key may have
 * written: the declared raw length is capped before anything is allocated,
 * zlib must produce exactly that many bytes from exactly the stored stream,
 * and the raw bytes go through a bounded reader (every count and index is
 * checked against what is left before it is used).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <zlib.h>

#include "../common/b64.h"
#include "audit_codec.h"

#define VARINT_MAX 10
#define KIND_DICT 0
#define KIND_UUID_LOWER 1
#define KIND_UUID_UPPER 2
#define UUID_TEXT 36
#define UUID_BYTES 16
#define DICT_FIELDS 5   /* actor .. detail always go through the dictionary */

/* ----------------------------------------------------------------- helpers */

void kw_audit_rec_set(struct kw_audit_rec *r, int64_t ts_ms, const char *actor, const char *action,
                      const char *key, const char *result, const char *detail,
                      const char *request_id)
{
        const char *f[KW_AUDIT_FIELDS] = { actor, action, key, result, detail, request_id };
        r->ts_ms = ts_ms;
        for (int i = 0; i < KW_AUDIT_FIELDS; i++) {
                r->f[i] = f[i] != NULL ? f[i] : "";
                r->flen[i] = strlen(r->f[i]);
        }
}

void kw_audit_hex(const uint8_t *p, size_t n, char *out)
{
        static const char hx[] = "0123456789abcdef";
        for (size_t i = 0; i < n; i++) {
                out[2 * i] = hx[p[i] >> 4];
                out[2 * i + 1] = hx[p[i] & 15];
        }
        out[2 * n] = '\0';
}

int kw_audit_unhex32(const char *s, uint8_t out[KW_AUDIT_HASH_LEN])
{
        uint8_t tmp[KW_AUDIT_HASH_LEN];
        if (s == NULL || strnlen(s, 65) != 64)
                return -1;
        for (int i = 0; i < KW_AUDIT_HASH_LEN; i++) {
                int hi = kw_hex_value(s[2 * i]), lo = kw_hex_value(s[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -1;
                tmp[i] = (uint8_t)(hi << 4 | lo);
        }
        memcpy(out, tmp, sizeof tmp);
        return 0;
}

/* ------------------------------------------------------------- chain step */

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
        sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);   /* once: no lookup per record */
}

struct kw_audit_hasher {
        EVP_MD_CTX *ctx;
};

kw_result kw_audit_hasher_new(struct kw_audit_hasher **ret)
{
        pthread_once(&sha256_once, sha256_fetch);
        KW_ENSURE(sha256_md != NULL, KW_ERR_CRYPTO);
        struct kw_audit_hasher *h = calloc(1, sizeof *h);
        KW_ENSURE(h != NULL, KW_ERR_NOMEM);
        h->ctx = EVP_MD_CTX_new();
        if (h->ctx == NULL) {
                free(h);
                KW_BAIL(KW_ERR_NOMEM);
        }
        *ret = h;
        return KW_OK;
}

void kw_audit_hasher_free(struct kw_audit_hasher *h)
{
        if (h == NULL)
                return;
        EVP_MD_CTX_free(h->ctx);
        free(h);
}

kw_result kw_audit_chain_step(struct kw_audit_hasher *h, const uint8_t prev[KW_AUDIT_HASH_LEN],
                              uint64_t seq, const struct kw_audit_rec *r,
                              uint8_t out[KW_AUDIT_HASH_LEN])
{
        uint8_t hdr[16];
        uint64_t ts = (uint64_t)r->ts_ms;
        for (int i = 0; i < 8; i++) {
                hdr[i] = (uint8_t)(seq >> (56 - 8 * i));
                hdr[8 + i] = (uint8_t)(ts >> (56 - 8 * i));
        }
        int ok = EVP_DigestInit_ex(h->ctx, sha256_md, NULL) == 1 &&
                 EVP_DigestUpdate(h->ctx, prev, KW_AUDIT_HASH_LEN) == 1 &&
                 EVP_DigestUpdate(h->ctx, hdr, sizeof hdr) == 1;
        for (int i = 0; ok && i < KW_AUDIT_FIELDS; i++) {
                size_t n = r->flen[i];
                KW_ENSURE(n <= UINT32_MAX, KW_ERR_INPUT);
                uint8_t l[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8),
                                 (uint8_t)n };
                ok = EVP_DigestUpdate(h->ctx, l, 4) == 1 &&
                     (n == 0 || EVP_DigestUpdate(h->ctx, r->f[i], n) == 1);
        }
        unsigned int olen = 0;
        uint8_t tmp[EVP_MAX_MD_SIZE];
        ok = ok && EVP_DigestFinal_ex(h->ctx, tmp, &olen) == 1 && olen == KW_AUDIT_HASH_LEN;
        KW_ENSURE(ok, KW_ERR_CRYPTO);
        memcpy(out, tmp, KW_AUDIT_HASH_LEN);
        return KW_OK;
}

/* ----------------------------------------------------------------- varints */

static size_t varint_put(uint8_t *p, uint64_t v)
{
        size_t n = 0;
        while (v >= 0x80) {
                p[n++] = (uint8_t)(v | 0x80);
                v >>= 7;
        }
        p[n++] = (uint8_t)v;
        return n;
}

static kw_result buf_put_varint(struct kw_buf *b, uint64_t v)
{
        uint8_t tmp[VARINT_MAX];
        return kw_buf_put(b, tmp, varint_put(tmp, v));
}

/* LEB128, at most 10 bytes, the last without its continuation bit and no
 * bits beyond 64; r->off advances only on success. */
static kw_result read_varint(struct kw_reader *r, uint64_t *ret)
{
        uint64_t v = 0;
        size_t off = r->off;
        for (unsigned shift = 0;; shift += 7) {
                KW_ENSURE(r->len - off >= 1, KW_ERR_TRUNCATED);
                uint8_t b = r->p[off++];
                if (shift == 63 && (b & 0x7e) != 0)
                        KW_BAIL(KW_ERR_BAD_ENCODING);   /* more than 64 bits */
                v |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80))
                        break;
                KW_ENSURE(shift < 63, KW_ERR_BAD_ENCODING);
        }
        r->off = off;
        *ret = v;
        return KW_OK;
}

static uint64_t zigzag(uint64_t d) { return (d << 1) ^ (0 - (d >> 63)); }
static uint64_t unzigzag(uint64_t z) { return (z >> 1) ^ (0 - (z & 1)); }

/* ------------------------------------------------------------------- UUIDs */

/* 1 (lower-case) or 2 (upper-case) when s is a canonical 8-4-4-4-12 UUID
 * whose letters all have one case (digits only: lower), else 0. */
static int uuid_kind(const char *s, size_t n, uint8_t out[UUID_BYTES])
{
        if (n != UUID_TEXT)
                return 0;
        int upper = 0, lower = 0;
        size_t o = 0;
        for (size_t i = 0; i < UUID_TEXT;) {
                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (s[i] != '-')
                                return 0;
                        i++;
                        continue;
                }
                int hi = kw_hex_value(s[i]), lo = kw_hex_value(s[i + 1]);
                if (hi < 0 || lo < 0)
                        return 0;
                for (int k = 0; k < 2; k++) {
                        char c = s[i + (size_t)k];
                        upper |= c >= 'A' && c <= 'F';
                        lower |= c >= 'a' && c <= 'f';
                }
                out[o++] = (uint8_t)(hi << 4 | lo);
                i += 2;
        }
        if (upper && lower)
                return 0;
        return upper ? KIND_UUID_UPPER : KIND_UUID_LOWER;
}

static void uuid_text(const uint8_t v[UUID_BYTES], int upper, char out[UUID_TEXT + 1])
{
        const char *hx = upper ? "0123456789ABCDEF" : "0123456789abcdef";
        size_t o = 0;
        for (int i = 0; i < UUID_BYTES; i++) {
                if (i == 4 || i == 6 || i == 8 || i == 10)
                        out[o++] = '-';
                out[o++] = hx[v[i] >> 4];
                out[o++] = hx[v[i] & 15];
        }
        out[o] = '\0';
}

/* ---------------------------------------------------------------- encoder */

/* Reused across batches: a group commit every 50 ms must not allocate and
 * clear zlib's state (a quarter of a megabyte) and its tables each time:
 * that alone cost more than everything else of the flush. */
struct kw_audit_encoder {
        int level;
        int z_ready;
        z_stream z;
        struct kw_buf raw;
        size_t cap;                  /* records the arrays below hold */
        uint32_t *idx;               /* 6 per record */
        uint8_t *kind;
        uint8_t (*uuid)[UUID_BYTES];
        const char **ds;             /* dictionary: distinct strings, in order of first use */
        size_t *dlen;
        size_t dn;
        uint32_t *slot;              /* open addressing: index + 1, 0 = empty */
        size_t nslot;                /* a power of two, > 2 * 6 * cap */
};

kw_result kw_audit_encoder_new(int level, struct kw_audit_encoder **ret)
{
        KW_ENSURE(ret != NULL && level >= -1 && level <= 9, KW_ERR_INPUT);
        struct kw_audit_encoder *e = calloc(1, sizeof *e);
        KW_ENSURE(e != NULL, KW_ERR_NOMEM);
        e->level = level;
        kw_buf_init(&e->raw, KW_AUDIT_BATCH_RAW_MAX);
        if (deflateInit(&e->z, level) != Z_OK) {
                free(e);
                KW_BAIL(KW_ERR_NOMEM);
        }
        e->z_ready = 1;
        *ret = e;
        return KW_OK;
}

/* The per-record arrays (enc_reserve sizes them). */
static void enc_arrays_free(struct kw_audit_encoder *e)
{
        free(e->idx);
        free(e->kind);
        free(e->uuid);
        free(e->ds);
        free(e->dlen);
        free(e->slot);
}


void kw_audit_encoder_free(struct kw_audit_encoder *e)
{
        if (e == NULL)
                return;
        if (e->z_ready)
                deflateEnd(&e->z);
        kw_buf_free(&e->raw);
        enc_arrays_free(e);
        free(e);
}

/* Room for n records (grows only). */
static kw_result enc_reserve(struct kw_audit_encoder *e, size_t n)
{
        if (n <= e->cap)
                return KW_OK;
        size_t nslot = 16;
        while (nslot <= 2 * KW_AUDIT_FIELDS * n)
                nslot <<= 1;
        uint32_t *idx = calloc(n * KW_AUDIT_FIELDS, sizeof *idx);
        uint8_t *kind = calloc(n, 1);
        uint8_t(*uuid)[UUID_BYTES] = calloc(n, sizeof *uuid);
        const char **ds = calloc(n * KW_AUDIT_FIELDS, sizeof *ds);
        size_t *dlen = calloc(n * KW_AUDIT_FIELDS, sizeof *dlen);
        uint32_t *slot = calloc(nslot, sizeof *slot);
        if (idx == NULL || kind == NULL || uuid == NULL || ds == NULL || dlen == NULL || slot == NULL) {
                free(idx);
                free(kind);
                free(uuid);
                free(ds);
                free(dlen);
                free(slot);
                KW_BAIL(KW_ERR_NOMEM);
        }
        enc_arrays_free(e);
        e->idx = idx;
        e->kind = kind;
        e->uuid = uuid;
        e->ds = ds;
        e->dlen = dlen;
        e->slot = slot;
        e->nslot = nslot;
        e->cap = n;
        return KW_OK;
}

static uint64_t str_hash(const char *s, size_t n)
{
        uint64_t h = 1469598103934665603ull;   /* FNV-1a */
        for (size_t i = 0; i < n; i++)
                h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
        return h;
}

/* The dictionary index of s, added when new. */
static uint32_t dict_index(struct kw_audit_encoder *e, const char *s, size_t n)
{
        size_t mask = e->nslot - 1;
        size_t i = (size_t)str_hash(s, n) & mask;
        for (;; i = (i + 1) & mask) {
                uint32_t v = e->slot[i];
                if (v == 0)
                        break;
                if (e->dlen[v - 1] == n && memcmp(e->ds[v - 1], s, n) == 0)
                        return v - 1;
        }
        /* at most 6 strings a record and nslot > 12 * cap: a free slot exists */
        e->ds[e->dn] = s;
        e->dlen[e->dn] = n;
        e->slot[i] = (uint32_t)(e->dn + 1);
        return (uint32_t)e->dn++;
}

static kw_result check_recs(const struct kw_audit_rec *recs, size_t n)
{
        KW_ENSURE(recs != NULL && n >= 1 && n <= KW_AUDIT_BATCH_MAX_RECORDS, KW_ERR_INPUT);
        for (size_t i = 0; i < n; i++)
                for (int k = 0; k < KW_AUDIT_FIELDS; k++)
                        KW_ENSURE(recs[i].f[k] != NULL && recs[i].flen[k] <= KW_AUDIT_FIELD_MAX &&
                                          memchr(recs[i].f[k], '\0', recs[i].flen[k]) == NULL,
                                  KW_ERR_INPUT);
        return KW_OK;
}

/* The raw (uncompressed) encoding of recs into e->raw. */
static kw_result encode_raw(struct kw_audit_encoder *e, const struct kw_audit_rec *recs, size_t n)
{
        e->dn = 0;
        memset(e->slot, 0, e->nslot * sizeof *e->slot);
        for (size_t i = 0; i < n; i++) {
                uint32_t *ix = &e->idx[i * KW_AUDIT_FIELDS];
                for (int k = 0; k < DICT_FIELDS; k++)
                        ix[k] = dict_index(e, recs[i].f[k], recs[i].flen[k]);
                const char *rid = recs[i].f[KW_AUDIT_REQUEST_ID];
                size_t rlen = recs[i].flen[KW_AUDIT_REQUEST_ID];
                e->kind[i] = (uint8_t)uuid_kind(rid, rlen, e->uuid[i]);
                if (e->kind[i] == KIND_DICT)
                        ix[5] = dict_index(e, rid, rlen);
        }
        struct kw_buf *raw = &e->raw;
        kw_buf_reset(raw);
        KW_TRY(buf_put_varint(raw, n));
        KW_TRY(buf_put_varint(raw, e->dn));
        for (size_t i = 0; i < e->dn; i++) {
                KW_TRY(buf_put_varint(raw, e->dlen[i]));
                KW_TRY(kw_buf_put(raw, e->ds[i], e->dlen[i]));
        }
        uint64_t prev = 0;
        uint8_t tmp[DICT_FIELDS * VARINT_MAX + 3 * VARINT_MAX + UUID_BYTES];
        for (size_t i = 0; i < n; i++) {
                const uint32_t *ix = &e->idx[i * KW_AUDIT_FIELDS];
                uint64_t ts = (uint64_t)recs[i].ts_ms;
                size_t t = varint_put(tmp, zigzag(ts - prev));
                prev = ts;
                for (int k = 0; k < DICT_FIELDS; k++)
                        t += varint_put(tmp + t, ix[k]);
                t += varint_put(tmp + t, e->kind[i]);
                if (e->kind[i] == KIND_DICT) {
                        t += varint_put(tmp + t, ix[5]);
                } else {
                        memcpy(tmp + t, e->uuid[i], UUID_BYTES);
                        t += UUID_BYTES;
                }
                KW_TRY(kw_buf_put(raw, tmp, t));
        }
        return KW_OK;
}

static kw_result compress_into(struct kw_audit_encoder *e, struct kw_buf *out)
{
        const struct kw_buf *raw = &e->raw;
        KW_ENSURE(deflateReset(&e->z) == Z_OK, KW_ERR_INTERNAL);
        size_t zcap = (size_t)deflateBound(&e->z, (uLong)raw->len);
        uint8_t hdr[1 + VARINT_MAX];
        hdr[0] = KW_AUDIT_BATCH_FORMAT;
        size_t hn = 1 + varint_put(hdr + 1, raw->len);
        size_t mark = out->len;
        KW_TRY(kw_buf_reserve(out, hn + zcap));
        KW_TRY(kw_buf_put(out, hdr, hn));
        e->z.next_in = raw->p;
        e->z.avail_in = (uInt)raw->len;
        e->z.next_out = out->p + out->len;
        e->z.avail_out = (uInt)zcap;
        if (deflate(&e->z, Z_FINISH) != Z_STREAM_END) {
                out->len = mark;
                kw_err_set_detail("audit batch: zlib could not compress");
                KW_BAIL(KW_ERR_INTERNAL);
        }
        out->len += zcap - e->z.avail_out;
        return KW_OK;
}

kw_result kw_audit_batch_encode(struct kw_audit_encoder *enc, const struct kw_audit_rec *recs,
                                size_t n, struct kw_buf *out)
{
        KW_ENSURE(out != NULL, KW_ERR_INPUT);
        KW_TRY(check_recs(recs, n));
        struct kw_audit_encoder *tmp = NULL;
        if (enc == NULL) {
                KW_TRY(kw_audit_encoder_new(-1, &tmp));
                enc = tmp;
        }
        kw_result r = enc_reserve(enc, n);
        if (kw_ok(r))
                r = encode_raw(enc, recs, n);
        if (kw_ok(r))
                r = compress_into(enc, out);
        if (r.code == KW_ERR_TOO_LARGE && enc->raw.len == enc->raw.max)
                kw_err_set_detail("audit batch: over %u bytes", KW_AUDIT_BATCH_RAW_MAX);
        kw_audit_encoder_free(tmp);
        return r;
}

/* ------------------------------------------------------------------ decode */

#define CORRUPT(...)                                       \
        do {                                               \
                kw_err_set_detail("audit batch: " __VA_ARGS__); \
                KW_BAIL(KW_ERR_DB_CORRUPT);                \
        } while (0)

static kw_result inflate_exact(const uint8_t *z, size_t zlen, uint8_t *raw, size_t raw_len)
{
        uLongf out = (uLongf)raw_len;
        uLong in = (uLong)zlen;
        KW_ENSURE((size_t)in == zlen, KW_ERR_DB_CORRUPT);
        int rc = uncompress2(raw, &out, z, &in);
        if (rc != Z_OK || (size_t)out != raw_len || (size_t)in != zlen)
                CORRUPT("the compressed records do not decompress to their stated length");
        return KW_OK;
}

struct strtab {
        const char **s;
        size_t *len;
        size_t n;
};

static kw_result decode_strings(struct kw_reader *r, size_t n, struct strtab *t, char *mem,
                                size_t *mem_off)
{
        uint64_t nstr;
        if (!kw_ok(read_varint(r, &nstr)) || nstr > (uint64_t)n * KW_AUDIT_FIELDS || nstr == 0)
                CORRUPT("bad dictionary size");
        t->s = calloc((size_t)nstr, sizeof *t->s);
        t->len = calloc((size_t)nstr, sizeof *t->len);
        KW_ENSURE(t->s != NULL && t->len != NULL, KW_ERR_NOMEM);
        for (size_t i = 0; i < nstr; i++) {
                uint64_t len;
                const uint8_t *p;
                if (!kw_ok(read_varint(r, &len)) || len > KW_AUDIT_FIELD_MAX ||
                    !kw_ok(kw_read_bytes(r, (size_t)len, &p)))
                        CORRUPT("bad dictionary string %zu", i);
                if (memchr(p, '\0', (size_t)len) != NULL)
                        CORRUPT("dictionary string %zu holds a NUL", i);
                memcpy(mem + *mem_off, p, (size_t)len);
                mem[*mem_off + (size_t)len] = '\0';
                t->s[i] = mem + *mem_off;
                t->len[i] = (size_t)len;
                *mem_off += (size_t)len + 1;
        }
        t->n = (size_t)nstr;
        return KW_OK;
}

static kw_result decode_records(struct kw_reader *r, const struct strtab *t,
                                struct kw_audit_rec *recs, size_t n, char *mem, size_t *mem_off)
{
        uint64_t prev = 0;
        for (size_t i = 0; i < n; i++) {
                uint64_t z, v[DICT_FIELDS], kind;
                if (!kw_ok(read_varint(r, &z)))
                        CORRUPT("record %zu: bad time", i);
                prev += unzigzag(z);
                recs[i].ts_ms = (int64_t)prev;
                for (int k = 0; k < DICT_FIELDS; k++) {
                        if (!kw_ok(read_varint(r, &v[k])) || v[k] >= t->n)
                                CORRUPT("record %zu: bad string index", i);
                        recs[i].f[k] = t->s[v[k]];
                        recs[i].flen[k] = t->len[v[k]];
                }
                if (!kw_ok(read_varint(r, &kind)))
                        CORRUPT("record %zu: bad request id", i);
                if (kind == KIND_DICT) {
                        uint64_t ix;
                        if (!kw_ok(read_varint(r, &ix)) || ix >= t->n)
                                CORRUPT("record %zu: bad request id index", i);
                        recs[i].f[KW_AUDIT_REQUEST_ID] = t->s[ix];
                        recs[i].flen[KW_AUDIT_REQUEST_ID] = t->len[ix];
                } else if (kind == KIND_UUID_LOWER || kind == KIND_UUID_UPPER) {
                        const uint8_t *u;
                        if (!kw_ok(kw_read_bytes(r, UUID_BYTES, &u)))
                                CORRUPT("record %zu: truncated request id", i);
                        uuid_text(u, kind == KIND_UUID_UPPER, mem + *mem_off);
                        recs[i].f[KW_AUDIT_REQUEST_ID] = mem + *mem_off;
                        recs[i].flen[KW_AUDIT_REQUEST_ID] = UUID_TEXT;
                        *mem_off += UUID_TEXT + 1;
                } else {
                        CORRUPT("record %zu: unknown request id kind %llu", i,
                                (unsigned long long)kind);
                }
        }
        if (kw_reader_left(r) != 0)
                CORRUPT("%zu bytes after the last record", kw_reader_left(r));
        return KW_OK;
}

/* Parses raw into b (b->mem already holds room for every string). */
static kw_result decode_raw(const uint8_t *raw, size_t raw_len, struct kw_audit_batch *b)
{
        struct kw_reader r = kw_reader_init(raw, raw_len);
        uint64_t n;
        if (!kw_ok(read_varint(&r, &n)) || n == 0 || n > KW_AUDIT_BATCH_MAX_RECORDS)
                CORRUPT("bad record count");
        /* strings: at most raw_len bytes plus a NUL each (<= raw_len of them);
         * UUIDs: 37 bytes each */
        b->mem = malloc(2 * raw_len + (size_t)n * (UUID_TEXT + 1));
        b->recs = calloc((size_t)n, sizeof *b->recs);
        KW_ENSURE(b->mem != NULL && b->recs != NULL, KW_ERR_NOMEM);
        struct strtab t = { 0 };
        size_t mem_off = 0;
        kw_result res = decode_strings(&r, (size_t)n, &t, b->mem, &mem_off);
        if (kw_ok(res))
                res = decode_records(&r, &t, b->recs, (size_t)n, b->mem, &mem_off);
        free(t.s);
        free(t.len);
        if (kw_ok(res))
                b->n = (size_t)n;
        return res;
}

kw_result kw_audit_batch_decode(const uint8_t *blob, size_t len, struct kw_audit_batch *ret)
{
        KW_ENSURE(ret != NULL && (blob != NULL || len == 0), KW_ERR_INPUT);
        struct kw_reader r = kw_reader_init(blob, len);
        uint8_t fmt;
        uint64_t raw_len;
        if (!kw_ok(kw_read_u8(&r, &fmt)) || fmt != KW_AUDIT_BATCH_FORMAT)
                CORRUPT("unknown format");
        if (!kw_ok(read_varint(&r, &raw_len)) || raw_len == 0 || raw_len > KW_AUDIT_BATCH_RAW_MAX)
                CORRUPT("bad length");
        uint8_t *raw = malloc((size_t)raw_len);
        KW_ENSURE(raw != NULL, KW_ERR_NOMEM);
        struct kw_audit_batch b = { 0 };
        kw_result res = inflate_exact(r.p + r.off, kw_reader_left(&r), raw, (size_t)raw_len);
        if (kw_ok(res))
                res = decode_raw(raw, (size_t)raw_len, &b);
        free(raw);
        if (!kw_ok(res)) {
                kw_audit_batch_clear(&b);
                return res;
        }
        *ret = b;
        return KW_OK;
}

void kw_audit_batch_clear(struct kw_audit_batch *b)
{
        if (b == NULL)
                return;
        free(b->recs);
        free(b->mem);
        memset(b, 0, sizeof *b);
}
