/* luks2_hdr_test.c - the two LUKS2 header copies read and verified. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "luks2_hdr.h"

#define SIZE 16384u
#define JSON "{\"keyslots\":{},\"tokens\":{},\"segments\":{},\"digests\":{},\"config\":{}}"
#define UUID "8d025a22-9fc0-4f75-a534-a0d419d25180"

static void put_be64(uint8_t *p, uint64_t v)
{
        for (int i = 7; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t)v;
}

/* Writes copy's checksum (SHA-256 with the field zeroed), as cryptsetup does. */
static void seal(uint8_t *copy, uint64_t size)
{
        memset(copy + 448, 0, 64);
        unsigned int n = 0;
        assert_int_equal(EVP_Digest(copy, size, copy + 448, &n, EVP_sha256(), NULL), 1);
        assert_int_equal(n, 32);
}

static void fill_copy(uint8_t *copy, uint64_t size, int secondary, uint64_t seqid, const char *json)
{
        memset(copy, 0, size);
        memcpy(copy, secondary ? "SKUL\xba\xbe" : "LUKS\xba\xbe", 6);
        copy[7] = 2;
        put_be64(copy + 8, size);
        put_be64(copy + 16, seqid);
        strcpy((char *)copy + 72, "sha256");
        strcpy((char *)copy + 168, UUID);
        put_be64(copy + 256, secondary ? size : 0);
        memcpy(copy + 4096, json, strlen(json));
        seal(copy, size);
}

/* Both copies of a valid header (seqid 7) written into b; b. */
static uint8_t *make_into(uint8_t *b)
{
        assert_non_null(b);
        fill_copy(b, SIZE, 0, 7, JSON);
        fill_copy(b + SIZE, SIZE, 1, 7, JSON);
        return b;
}

/* Both copies of a valid header, 2 * SIZE bytes. */
static uint8_t *make(void) { return make_into(malloc(2 * SIZE)); }

/* b (freed here) fails with code, the detail saying want. */
static void fails(uint8_t *b, size_t len, int code, const char *want)
{
        struct kwu_hdr h;
        memset(&h, 0x5a, sizeof h);
        assert_int_equal(kwu_hdr_parse(b, len, &h).code, code);
        for (size_t i = 0; i < sizeof h; i++)
                assert_int_equal(((unsigned char *)&h)[i], 0x5a);   /* untouched */
        if (strstr(kw_err_detail(), want) == NULL)
                fail_msg("detail \"%s\" does not say \"%s\"", kw_err_detail(), want);
        free(b);
}

static void luks2_hdr_parse_valid_copies_accepted(void **state)
{
        (void)state;
        uint8_t *b = make();
        struct kwu_hdr h;
        assert_int_equal(kwu_hdr_parse(b, 2 * SIZE, &h).code, 0);
        assert_string_equal(h.json, JSON);
        assert_int_equal(h.json_len, strlen(JSON));
        assert_int_equal(h.hdr_size, SIZE);
        assert_int_equal(h.seqid, 7);
        assert_string_equal(h.uuid, UUID);
        assert_string_equal(h.label, "");
        assert_int_equal(h.raw_len, 2 * SIZE);
        assert_memory_equal(h.raw, b, 2 * SIZE);
        kwu_hdr_free(&h);
        kwu_hdr_free(&h);      /* twice: zeroed */
        kwu_hdr_free(NULL);
        free(b);
}

static void luks2_hdr_parse_bad_checksum_refused(void **state)
{
        (void)state;
        uint8_t *b = make();
        b[4096 + 2] ^= 1;     /* the primary's JSON, checksum left as it was */
        fails(b, 2 * SIZE, KW_ERR_LUKS_TAMPERED, "primary header copy fails its checksum");
        b = make();
        b[SIZE + 4096 + 2] ^= 1;
        fails(b, 2 * SIZE, KW_ERR_LUKS_TAMPERED, "secondary header copy fails its checksum");
        b = make();
        b[448 + 40] = 1;      /* past the 32 bytes of SHA-256 */
        fails(b, 2 * SIZE, KW_ERR_LUKS_TAMPERED, "primary header copy fails its checksum");
        b = make();
        strcpy((char *)b + 72, "sha1");
        seal(b, SIZE);
        fails(b, 2 * SIZE, KW_ERR_LUKS_TAMPERED, "checksum is not sha256");
}

static void luks2_hdr_parse_copies_disagreeing_refused(void **state)
{
        (void)state;
        /* each copy valid by itself: cryptsetup would pick one; we refuse */
        uint8_t *b = make();
        fill_copy(b + SIZE, SIZE, 1, 7, "{\"keyslots\":{\"0\":{}}}");
        fails(b, 2 * SIZE, KW_ERR_LUKS_TAMPERED, "two header copies differ (seqid 7 and 7)");
        b = make();
        fill_copy(b + SIZE, SIZE, 1, 8, JSON);
        fails(b, 2 * SIZE, KW_ERR_LUKS_TAMPERED, "seqid 7 and 8");
        b = make();
        fill_copy(b + SIZE, SIZE, 0, 7, JSON);   /* primary magic where the secondary goes */
        fails(b, 2 * SIZE, KW_ERR_LUKS_TAMPERED, "secondary header copy has no LUKS2 magic");
        b = make();
        put_be64(b + SIZE + 256, 0);
        seal(b + SIZE, SIZE);
        fails(b, 2 * SIZE, KW_ERR_LUKS_TAMPERED, "secondary header copy records the wrong offset");
}

static void luks2_hdr_parse_json_area_checked(void **state)
{
        (void)state;
        uint8_t *b = make();
        b[4096 + strlen(JSON) + 10] = 'x';    /* hidden bytes after the text */
        seal(b, SIZE);
        fails(b, 2 * SIZE, KW_ERR_LUKS_TAMPERED, "bytes after its JSON text");
        b = make();
        memset(b + 4096, 'a', SIZE - 4096);   /* no NUL at all */
        seal(b, SIZE);
        fails(b, 2 * SIZE, KW_ERR_LUKS_TAMPERED, "holds no JSON text");
        b = make();
        memset(b + 4096, 0, SIZE - 4096);     /* empty */
        seal(b, SIZE);
        fails(b, 2 * SIZE, KW_ERR_LUKS_TAMPERED, "holds no JSON text");
        b = make();
        memset(b + 168, 'u', 40);             /* unterminated UUID */
        seal(b, SIZE);
        fails(b, 2 * SIZE, KW_ERR_LUKS_TAMPERED, "label or UUID is not terminated");
}

static void luks2_hdr_parse_not_luks2(void **state)
{
        (void)state;
        uint8_t *b = make();
        b[0] = 'X';
        fails(b, 2 * SIZE, KW_ERR_LUKS_NOT_LUKS2, "no LUKS header");
        b = make();
        b[7] = 1;
        fails(b, 2 * SIZE, KW_ERR_LUKS_NOT_LUKS2, "LUKS version 1, not 2");
        fails(make(), 2 * SIZE - 1, KW_ERR_LUKS_NOT_LUKS2, "ends inside its LUKS2 header");
        fails(make(), 100, KW_ERR_LUKS_NOT_LUKS2, "no LUKS header");
        b = make();
        put_be64(b + 8, 20000);
        fails(b, 2 * SIZE, KW_ERR_LUKS_TAMPERED, "header size 20000");
        b = make();
        put_be64(b + 8, 1ull << 40);
        fails(b, 2 * SIZE, KW_ERR_LUKS_TAMPERED, "is not one LUKS2 allows");
}

static void luks2_hdr_read_fd_reads_both_copies(void **state)
{
        (void)state;
        uint8_t *b = make();
        int fd = memfd_create("hdr", MFD_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, b, 2 * SIZE), (ssize_t)(2 * SIZE));
        assert_int_equal(write(fd, "data", 4), 4);
        struct kwu_hdr h;
        assert_int_equal(kwu_hdr_read_fd(fd, &h).code, 0);
        assert_string_equal(h.json, JSON);
        kwu_hdr_free(&h);
        /* cut inside the secondary copy */
        assert_int_equal(ftruncate(fd, SIZE + 100), 0);
        assert_int_equal(kwu_hdr_read_fd(fd, &h).code, KW_ERR_LUKS_NOT_LUKS2);
        assert_int_equal(ftruncate(fd, 10), 0);
        assert_int_equal(kwu_hdr_read_fd(fd, &h).code, KW_ERR_LUKS_NOT_LUKS2);
        close(fd);
        assert_int_equal(kwu_hdr_read_fd(-1, &h).code, KW_ERR_INPUT);
        /* a directory cannot be read */
        int dfd = open(".", 0);
        assert_true(dfd >= 0);
        assert_int_equal(kwu_hdr_read_fd(dfd, &h).code, KW_ERR_DEVICE);
        close(dfd);
        free(b);
}

#define JSON2 "{\"keyslots\":{},\"tokens\":{},\"segments\":{},\"digests\":{},\"config\":{ }}"

/* An interrupted update: the newest valid copy wins, the other is rebuilt
 * from it; anything else stays refused. */
static void luks2_hdr_parse_repair_takes_the_newest_valid_copy(void **state)
{
        (void)state;
        struct kwu_hdr h;
        int repaired = -1;
        /* agreeing copies: nothing to repair */
        uint8_t *b = make();
        assert_int_equal(kwu_hdr_parse_repair(b, 2 * SIZE, &h, &repaired).code, 0);
        assert_int_equal(repaired, 0);
        kwu_hdr_free(&h);
        /* the primary written (seqid 8), the secondary not yet */
        fill_copy(b, SIZE, 0, 8, JSON2);
        assert_int_equal(kwu_hdr_parse(b, 2 * SIZE, &h).code, KW_ERR_LUKS_TAMPERED);
        assert_int_equal(kwu_hdr_parse_repair(b, 2 * SIZE, &h, &repaired).code, 0);
        assert_int_equal(repaired, 1);
        assert_string_equal(h.json, JSON2);
        assert_int_equal(h.seqid, 8);
        uint8_t *want = malloc(2 * SIZE);
        assert_non_null(want);
        fill_copy(want, SIZE, 0, 8, JSON2);
        fill_copy(want + SIZE, SIZE, 1, 8, JSON2);
        assert_memory_equal(h.raw, want, 2 * SIZE);   /* the secondary rebuilt */
        kwu_hdr_free(&h);
        /* the secondary newer */
        fill_copy(b, SIZE, 0, 7, JSON);
        fill_copy(b + SIZE, SIZE, 1, 9, JSON2);
        assert_int_equal(kwu_hdr_parse_repair(b, 2 * SIZE, &h, &repaired).code, 0);
        assert_int_equal(h.seqid, 9);
        assert_string_equal(h.json, JSON2);
        kwu_hdr_free(&h);
        /* the primary torn (fails its checksum): the secondary's */
        fill_copy(b + SIZE, SIZE, 1, 7, JSON);
        b[4096 + 3] ^= 1;
        assert_int_equal(kwu_hdr_parse_repair(b, 2 * SIZE, &h, &repaired).code, 0);
        assert_memory_equal(h.raw, make_into(want), 2 * SIZE);
        kwu_hdr_free(&h);
        /* the same seqid, different texts: not an interrupted update */
        fill_copy(b, SIZE, 0, 7, JSON);
        fill_copy(b + SIZE, SIZE, 1, 7, JSON2);
        memset(&h, 0x5a, sizeof h);
        assert_int_equal(kwu_hdr_parse_repair(b, 2 * SIZE, &h, &repaired).code, KW_ERR_LUKS_TAMPERED);
        assert_non_null(strstr(kw_err_detail(), "no newer valid copy"));
        /* both torn */
        fill_copy(b + SIZE, SIZE, 1, 7, JSON);
        b[4096 + 3] ^= 1;
        b[SIZE + 4096 + 3] ^= 1;
        assert_int_equal(kwu_hdr_parse_repair(b, 2 * SIZE, &h, &repaired).code, KW_ERR_LUKS_TAMPERED);
        free(want);
        free(b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(luks2_hdr_parse_valid_copies_accepted),
                cmocka_unit_test(luks2_hdr_parse_bad_checksum_refused),
                cmocka_unit_test(luks2_hdr_parse_copies_disagreeing_refused),
                cmocka_unit_test(luks2_hdr_parse_json_area_checked),
                cmocka_unit_test(luks2_hdr_parse_not_luks2),
                cmocka_unit_test(luks2_hdr_read_fd_reads_both_copies),
                cmocka_unit_test(luks2_hdr_parse_repair_takes_the_newest_valid_copy),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
