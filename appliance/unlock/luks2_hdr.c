/* luks2_hdr.c - read and verify the two LUKS2 header copies (luks2_hdr.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "luks2_hdr.h"

/* The binary part of one copy (LUKS2 on-disk format, big-endian). */
#define OFF_MAGIC 0
#define OFF_VERSION 6
#define OFF_HDR_SIZE 8
#define OFF_SEQID 16
#define OFF_LABEL 24
#define LEN_LABEL 48
#define OFF_CSUM_ALG 72
#define LEN_CSUM_ALG 32
#define OFF_UUID 168
#define LEN_UUID 40
#define OFF_HDR_OFFSET 256
#define OFF_CSUM 448
#define LEN_CSUM 64

static const uint8_t MAGIC_PRIMARY[6] = { 'L', 'U', 'K', 'S', 0xba, 0xbe };
static const uint8_t MAGIC_SECONDARY[6] = { 'S', 'K', 'U', 'L', 0xba, 0xbe };

static uint64_t be64(const uint8_t *p)
{
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

static int hdr_size_valid(uint64_t n)
{
        for (uint64_t s = KWU_HDR_MIN; s <= KWU_HDR_MAX; s <<= 1)
                if (n == s)
                        return 1;
        return 0;
}

/* A fixed-size text field: NUL-terminated inside its bytes. */
static int field_text(const uint8_t *p, size_t n) { return memchr(p, '\0', n) != NULL; }

/* SHA-256 of one copy with its checksum field taken as zeros. */
static kw_result copy_digest(const uint8_t *copy, uint64_t size, uint8_t out[32])
{
        static const uint8_t zeros[LEN_CSUM];
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        unsigned int outl = 0;
        int ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
                 EVP_DigestUpdate(md, copy, OFF_CSUM) == 1 &&
                 EVP_DigestUpdate(md, zeros, sizeof zeros) == 1 &&
                 EVP_DigestUpdate(md, copy + OFF_CSUM + LEN_CSUM, size - (OFF_CSUM + LEN_CSUM)) == 1 &&
                 EVP_DigestFinal_ex(md, out, &outl) == 1 && outl == 32;
        EVP_MD_CTX_free(md);
        KW_ENSURE(ok, KW_ERR_CRYPTO);
        return KW_OK;
}

/*
 * Checks one copy at copy (size bytes, size already validated) as the
 * primary (at 0) or the secondary (at size).  *json_len: the length of its
 * JSON text.
 */
static kw_result copy_check(const uint8_t *copy, uint64_t size, int secondary, size_t *json_len)
{
        const char *which = secondary ? "secondary" : "primary";
        if (memcmp(copy + OFF_MAGIC, secondary ? MAGIC_SECONDARY : MAGIC_PRIMARY, 6) != 0) {
                kw_err_set_detail("the %s header copy has no LUKS2 magic", which);
                KW_BAIL(KW_ERR_LUKS_TAMPERED);
        }
        if ((copy[OFF_VERSION] << 8 | copy[OFF_VERSION + 1]) != 2 || be64(copy + OFF_HDR_SIZE) != size) {
                kw_err_set_detail("the %s header copy disagrees on version or size", which);
                KW_BAIL(KW_ERR_LUKS_TAMPERED);
        }
        if (be64(copy + OFF_HDR_OFFSET) != (secondary ? size : 0)) {
                kw_err_set_detail("the %s header copy records the wrong offset", which);
                KW_BAIL(KW_ERR_LUKS_TAMPERED);
        }
        if (!field_text(copy + OFF_CSUM_ALG, LEN_CSUM_ALG) ||
            strcmp((const char *)copy + OFF_CSUM_ALG, "sha256") != 0) {
                kw_err_set_detail("the %s header copy's checksum is not sha256", which);
                KW_BAIL(KW_ERR_LUKS_TAMPERED);
        }
        if (!field_text(copy + OFF_LABEL, LEN_LABEL) || !field_text(copy + OFF_UUID, LEN_UUID)) {
                kw_err_set_detail("the %s header copy's label or UUID is not terminated", which);
                KW_BAIL(KW_ERR_LUKS_TAMPERED);
        }
        uint8_t d[32];
        KW_TRY(copy_digest(copy, size, d));
        /* a checksum, not a secret: it only says the copy is whole */
        int same = memcmp(d, copy + OFF_CSUM, sizeof d) == 0; /* lint: allow (public checksum) */
        for (size_t i = sizeof d; same && i < LEN_CSUM; i++)
                same = copy[OFF_CSUM + i] == 0;
        if (!same) {
                kw_err_set_detail("the %s header copy fails its checksum", which);
                KW_BAIL(KW_ERR_LUKS_TAMPERED);
        }
        const uint8_t *area = copy + KWU_HDR_BIN;
        size_t area_len = (size_t)size - KWU_HDR_BIN;
        const uint8_t *nul = memchr(area, '\0', area_len);
        if (nul == NULL || nul == area) {
                kw_err_set_detail("the %s header copy's JSON area holds no JSON text", which);
                KW_BAIL(KW_ERR_LUKS_TAMPERED);
        }
        for (const uint8_t *p = nul; p < area + area_len; p++)
                if (*p != 0) {
                        kw_err_set_detail("the %s header copy has bytes after its JSON text (offset %zu)",
                                          which, (size_t)(p - copy));
                        KW_BAIL(KW_ERR_LUKS_TAMPERED);
                }
        *json_len = (size_t)(nul - area);
        return KW_OK;
}

kw_result kwu_hdr_parse(const uint8_t *buf, size_t len, struct kwu_hdr *ret)
{
        KW_ENSURE(buf != NULL && ret != NULL, KW_ERR_INPUT);
        if (len < KWU_HDR_BIN || memcmp(buf, MAGIC_PRIMARY, sizeof MAGIC_PRIMARY) != 0) {
                kw_err_set_detail("no LUKS header at the start of the device");
                KW_BAIL(KW_ERR_LUKS_NOT_LUKS2);
        }
        if ((buf[OFF_VERSION] << 8 | buf[OFF_VERSION + 1]) != 2) {
                kw_err_set_detail("LUKS version %u, not 2", (unsigned)(buf[OFF_VERSION] << 8 | buf[OFF_VERSION + 1]));
                KW_BAIL(KW_ERR_LUKS_NOT_LUKS2);
        }
        uint64_t size = be64(buf + OFF_HDR_SIZE);
        if (!hdr_size_valid(size)) {
                kw_err_set_detail("header size %llu is not one LUKS2 allows", (unsigned long long)size);
                KW_BAIL(KW_ERR_LUKS_TAMPERED);
        }
        if (len / 2 < size) {
                kw_err_set_detail("the device ends inside its LUKS2 header (%zu of %llu bytes)", len,
                                  (unsigned long long)(2 * size));
                KW_BAIL(KW_ERR_LUKS_NOT_LUKS2);
        }
        size_t jl1 = 0, jl2 = 0;
        KW_TRY(copy_check(buf, size, 0, &jl1));
        KW_TRY(copy_check(buf + size, size, 1, &jl2));
        if (be64(buf + OFF_SEQID) != be64(buf + size + OFF_SEQID) || jl1 != jl2 ||
            memcmp(buf + KWU_HDR_BIN, buf + size + KWU_HDR_BIN, jl1) != 0 ||
            memcmp(buf + OFF_UUID, buf + size + OFF_UUID, LEN_UUID) != 0) {
                kw_err_set_detail("the two header copies differ (seqid %llu and %llu): one was changed "
                                  "or an update was interrupted (recover rewrites them)",
                                  (unsigned long long)be64(buf + OFF_SEQID),
                                  (unsigned long long)be64(buf + size + OFF_SEQID));
                KW_BAIL(KW_ERR_LUKS_TAMPERED);
        }
        struct kwu_hdr h;
        memset(&h, 0, sizeof h);
        h.json = malloc(jl1 + 1);
        h.raw = malloc((size_t)(2 * size));
        if (h.json == NULL || h.raw == NULL) {
                kwu_hdr_free(&h);
                KW_BAIL(KW_ERR_NOMEM);
        }
        memcpy(h.json, buf + KWU_HDR_BIN, jl1);
        h.json[jl1] = '\0';
        h.json_len = jl1;
        memcpy(h.raw, buf, (size_t)(2 * size));
        h.raw_len = (size_t)(2 * size);
        h.hdr_size = size;
        h.seqid = be64(buf + OFF_SEQID);
        memcpy(h.uuid, buf + OFF_UUID, LEN_UUID);
        memcpy(h.label, buf + OFF_LABEL, LEN_LABEL);
        *ret = h;
        return KW_OK;
}

static void put_be64(uint8_t *p, uint64_t v)
{
        for (int i = 7; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t)v;
}

/* Which copies in buf (2 * size bytes) pass copy_check: bit 0 the
 * primary, bit 1 the secondary. */
static unsigned valid_copies(const uint8_t *buf, uint64_t size)
{
        size_t jl = 0;
        unsigned m = 0;
        if (copy_check(buf, size, 0, &jl).code == 0)
                m |= 1;
        if (copy_check(buf + size, size, 1, &jl).code == 0)
                m |= 2;
        return m;
}

kw_result kwu_hdr_parse_repair(const uint8_t *buf, size_t len, struct kwu_hdr *ret, int *repaired)
{
        KW_ENSURE(buf != NULL && ret != NULL && repaired != NULL, KW_ERR_INPUT);
        *repaired = 0;
        kw_result r = kwu_hdr_parse(buf, len, ret);
        if (r.code != KW_ERR_LUKS_TAMPERED)
                return r;
        char why[256];
        snprintf(why, sizeof why, "%s", kw_err_detail());
        /* the size the copies agree on: the primary's, or where a valid
         * secondary sits when the primary's binary part is torn */
        uint64_t size = len >= KWU_HDR_BIN ? be64(buf + OFF_HDR_SIZE) : 0;
        unsigned valid = hdr_size_valid(size) && len / 2 >= size ? valid_copies(buf, size) : 0;
        for (uint64_t s = KWU_HDR_MIN; valid == 0 && s <= KWU_HDR_MAX && len / 2 >= s; s <<= 1)
                if ((valid = valid_copies(buf, s) & 2) != 0)
                        size = s;
        int use = -1;   /* 0: the primary, 1: the secondary */
        if (valid == 3 && be64(buf + OFF_SEQID) != be64(buf + size + OFF_SEQID))
                use = be64(buf + OFF_SEQID) > be64(buf + size + OFF_SEQID) ? 0 : 1;
        else if (valid == 1 || valid == 2)
                use = valid == 1 ? 0 : 1;
        if (use < 0) {
                kw_err_set_detail("%s; no newer valid copy to rewrite it from", why);
                KW_BAIL(KW_ERR_LUKS_TAMPERED);
        }
        /* the other copy rebuilt from the chosen one: same bytes but its
         * magic, its offset and so its checksum */
        uint8_t *nb = malloc((size_t)(2 * size));
        KW_ENSURE(nb != NULL, KW_ERR_NOMEM);
        const uint8_t *from = buf + (use ? size : 0);
        uint8_t *to = nb + (use ? 0 : size);
        memcpy(nb + (use ? size : 0), from, (size_t)size);
        memcpy(to, from, (size_t)size);
        memcpy(to + OFF_MAGIC, use ? MAGIC_PRIMARY : MAGIC_SECONDARY, 6);
        put_be64(to + OFF_HDR_OFFSET, use ? 0 : size);
        uint8_t d[32];
        r = copy_digest(to, size, d);
        if (r.code == 0) {
                memset(to + OFF_CSUM, 0, LEN_CSUM);
                memcpy(to + OFF_CSUM, d, sizeof d);
                r = kwu_hdr_parse(nb, (size_t)(2 * size), ret);
        }
        free(nb);
        if (r.code == 0)
                *repaired = 1;
        return r;
}

/* pread of exactly n bytes at off; short only at the end of the device. */
static kw_result read_at(int fd, uint8_t *p, size_t n, uint64_t off, size_t *got)
{
        size_t done = 0;
        while (done < n) {
                ssize_t r = pread(fd, p + done, n - done, (off_t)(off + done));
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0) {
                        kw_err_set_detail("cannot read the device: %s", strerror(errno));
                        KW_BAIL(KW_ERR_DEVICE);
                }
                if (r == 0)
                        break;
                done += (size_t)r;
        }
        *got = done;
        return KW_OK;
}

static kw_result read_fd(int fd, struct kwu_hdr *ret, int *repaired)
{
        KW_ENSURE(fd >= 0 && ret != NULL, KW_ERR_INPUT);
        uint8_t first[KWU_HDR_BIN];
        size_t got = 0;
        KW_TRY(read_at(fd, first, sizeof first, 0, &got));
        if (got < sizeof first) {
                kw_err_set_detail("the device is %zu bytes long: too short for a LUKS2 header", got);
                KW_BAIL(KW_ERR_LUKS_NOT_LUKS2);
        }
        uint64_t size = be64(first + OFF_HDR_SIZE);
        if (memcmp(first, MAGIC_PRIMARY, sizeof MAGIC_PRIMARY) != 0 || (!hdr_size_valid(size) && repaired == NULL))
                return kwu_hdr_parse(first, sizeof first, ret);   /* says which */
        if (!hdr_size_valid(size))
                size = KWU_HDR_MAX;   /* torn: read all a secondary copy may need */
        uint8_t *buf = malloc((size_t)(2 * size));
        KW_ENSURE(buf != NULL, KW_ERR_NOMEM);
        kw_result r = read_at(fd, buf, (size_t)(2 * size), 0, &got);
        if (r.code == 0)
                r = repaired != NULL ? kwu_hdr_parse_repair(buf, got, ret, repaired) : kwu_hdr_parse(buf, got, ret);
        free(buf);
        return r;
}

kw_result kwu_hdr_read_fd(int fd, struct kwu_hdr *ret) { return read_fd(fd, ret, NULL); }

kw_result kwu_hdr_read_fd_repair(int fd, struct kwu_hdr *ret, int *repaired)
{
        KW_ENSURE(repaired != NULL, KW_ERR_INPUT);
        return read_fd(fd, ret, repaired);
}

void kwu_hdr_free(struct kwu_hdr *h)
{
        if (h == NULL)
                return;
        free(h->json);
        free(h->raw);
        memset(h, 0, sizeof *h);
}
