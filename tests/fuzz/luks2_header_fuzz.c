/*
 * luks2_header_fuzz.c - keyward-unlock's LUKS2 header reader and checks on
 * arbitrary bytes (appliance/unlock/luks2_hdr.c, luks2_check.c).
 *
 * The first byte picks the mode:
 *   even: the rest is the start of a device: kwu_hdr_parse, then, when the
 *         copies verify, kwu_check_json on their JSON; with bit 1 set,
 *         kwu_hdr_parse_repair instead (recover's reader), whose result
 *         must pass kwu_hdr_parse itself;
 *   odd:  the rest is a JSON area: wrapped in two header copies with valid
 *         checksums (so that mutations reach the JSON checks rather than
 *         stop at the checksum), parsed, then checked.
 * Invariants on success: the JSON text has no NUL and no "cipher_null";
 * every token names existing keyslots, no keyslot is recorded twice, and
 * every keyslot is recorded unless allowed as an extra.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "../../appliance/unlock/luks2_check.h"
#include "../../appliance/unlock/luks2_hdr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SIZE 16384u

static void put_be64(uint8_t *p, uint64_t v)
{
        for (int i = 7; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t)v;
}

static void copy_make(uint8_t *c, int secondary, const uint8_t *json, size_t n)
{
        memset(c, 0, SIZE);
        memcpy(c, secondary ? "SKUL\xba\xbe" : "LUKS\xba\xbe", 6);
        c[7] = 2;
        put_be64(c + 8, SIZE);
        put_be64(c + 16, 1);
        memcpy(c + 72, "sha256", 6);
        memcpy(c + 168, "00000000-0000-0000-0000-000000000000", 36);
        put_be64(c + 256, secondary ? SIZE : 0);
        memcpy(c + 4096, json, n);
        unsigned int l = 0;
        if (EVP_Digest(c, SIZE, c + 448, &l, EVP_sha256(), NULL) != 1)
                abort();
}

static void check_layout(const struct kwu_hdr *h, const struct kwu_expect *exp)
{
        struct kwu_layout l;
        kw_result r = kwu_check_json(h->json, h->json_len, h->hdr_size, exp, &l);
        if (r.code != 0) {
                if (r.code != KW_ERR_LUKS_TAMPERED && r.code != KW_ERR_NOMEM)
                        abort();
                return;
        }
        if (strlen(h->json) != h->json_len || strcasestr(h->json, "cipher_null") != NULL)
                abort();
        uint32_t slots = 0, owned = 0;
        if (l.nslots == 0 || l.nslots > KWU_MAX_SLOTS || l.ntokens > KWU_MAX_SLOTS)
                abort();
        for (unsigned i = 0; i < l.nslots; i++)
                slots |= 1u << l.slots[i].id;
        for (unsigned i = 0; i < l.ntokens; i++) {
                uint32_t k = l.tokens[i].keyslots;
                if (k == 0 || (k & ~slots) || (k & owned))
                        abort();
                if (l.tokens[i].type == KWU_TOKEN_SYSTEMD_TPM2 && l.tokens[i].pcrs == 0 && !l.tokens[i].has_pubkey)
                        abort();
                owned |= k;
        }
        if (slots & ~owned & ~exp->extra_keyslots)
                abort();
        if (l.sector_size != 512 && l.sector_size != 4096)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1)
                return 0;
        struct kwu_expect exp;
        kwu_expect_default(&exp);
        exp.extra_keyslots = data[0] & 0x80 ? 0x3 : 0;   /* sometimes allow slots 0 and 1 */
        struct kwu_hdr h;
        if ((data[0] & 1) == 0) {
                int repaired = 0;
                kw_result r = data[0] & 2 ? kwu_hdr_parse_repair(data + 1, size - 1, &h, &repaired)
                                          : kwu_hdr_parse(data + 1, size - 1, &h);
                if (r.code == 0 && repaired) {
                        struct kwu_hdr again;
                        if (kwu_hdr_parse(h.raw, h.raw_len, &again).code != 0)
                                abort();   /* what recover writes passes every open */
                        kwu_hdr_free(&again);
                }
                if (r.code != 0) {
                        if (r.code != KW_ERR_LUKS_NOT_LUKS2 && r.code != KW_ERR_LUKS_TAMPERED &&
                            r.code != KW_ERR_NOMEM)
                                abort();
                        return 0;
                }
                check_layout(&h, &exp);
                kwu_hdr_free(&h);
                return 0;
        }
        size_t n = size - 1;
        if (n > SIZE - 4096 - 1)
                n = SIZE - 4096 - 1;
        uint8_t *dev = malloc(2 * SIZE);
        if (dev == NULL)
                return 0;
        copy_make(dev, 0, data + 1, n);
        copy_make(dev + SIZE, 1, data + 1, n);
        kw_result r = kwu_hdr_parse(dev, 2 * SIZE, &h);
        /* refused only for a NUL inside the text, or an empty one */
        if (r.code != 0 && (r.code != KW_ERR_LUKS_TAMPERED || (n > 0 && memchr(data + 1, 0, n) == NULL)))
                abort();
        if (r.code == 0) {
                if (memcmp(h.raw, dev, 2 * SIZE) != 0)
                        abort();
                check_layout(&h, &exp);
                kwu_hdr_free(&h);
        }
        free(dev);
        return 0;
}
