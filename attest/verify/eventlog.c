/*
 * eventlog.c - TCG PC Client crypto-agile boot event log (the format of
 * /sys/kernel/security/tpm0/binary_bios_measurements), little-endian:
 * a TCG_PCR_EVENT header carrying "Spec ID Event03" (the digest sizes of
 * each algorithm), then TCG_PCR_EVENT2 records.  Replays the SHA-256 bank.
 */
#include <string.h>

#include "kwa.h"

#define EV_NO_ACTION 0x00000003u
#define ALG_SHA256 0x000B
#define MAX_ALGS 8
#define MAX_EVENT 0x100000u
#define MAX_EVENTS 100000u

#define TRY(x)                          \
        do {                            \
                int e_ = (x);           \
                if (e_ != 0)            \
                        return e_;      \
        } while (0)

int kwa_eventlog_replay(const uint8_t *p, size_t n, uint8_t pcrs[24][32], uint32_t *ret_seen,
                        size_t *ret_events)
{
        struct kwa_rd r = kwa_rd_init(p, n);
        uint32_t idx, type, size, nalg;
        const uint8_t *b, *ev;
        /* header: TCG_PCR_EVENT with the SHA-1 layout */
        TRY(kwa_rd_u32le(&r, &idx));
        TRY(kwa_rd_u32le(&r, &type));
        TRY(kwa_rd_bytes(&r, 20, &b));
        TRY(kwa_rd_u32le(&r, &size));
        if (type != EV_NO_ACTION || size > 4096)
                return KWA_E_FORMAT;
        TRY(kwa_rd_bytes(&r, size, &ev));
        struct kwa_rd h = kwa_rd_init(ev, size);
        TRY(kwa_rd_bytes(&h, 16, &b));
        if (memcmp(b, "Spec ID Event03", 16) != 0)
                return KWA_E_FORMAT;   /* SHA-1-only logs are not supported */
        TRY(kwa_rd_bytes(&h, 8, &b));  /* platformClass, version, errata, uintnSize */
        TRY(kwa_rd_u32le(&h, &nalg));
        if (nalg == 0 || nalg > MAX_ALGS)
                return KWA_E_FORMAT;
        uint16_t alg[MAX_ALGS], dsz[MAX_ALGS];
        for (uint32_t i = 0; i < nalg; i++) {
                TRY(kwa_rd_u16le(&h, &alg[i]));
                TRY(kwa_rd_u16le(&h, &dsz[i]));
                if (dsz[i] == 0 || dsz[i] > 64)
                        return KWA_E_FORMAT;
        }
        uint8_t v[24][32];
        memset(v, 0, sizeof v);
        uint32_t seen = 0;
        size_t events = 0;
        while (r.off < r.len) {
                uint32_t count;
                TRY(kwa_rd_u32le(&r, &idx));
                TRY(kwa_rd_u32le(&r, &type));
                TRY(kwa_rd_u32le(&r, &count));
                if (count > MAX_ALGS || ++events > MAX_EVENTS)
                        return KWA_E_FORMAT;
                const uint8_t *d256 = NULL;
                for (uint32_t i = 0; i < count; i++) {
                        uint16_t a;
                        size_t j;
                        TRY(kwa_rd_u16le(&r, &a));
                        for (j = 0; j < nalg && alg[j] != a; j++)
                                ;
                        if (j == nalg)
                                return KWA_E_FORMAT;   /* a digest of unknown size */
                        TRY(kwa_rd_bytes(&r, dsz[j], &b));
                        if (a == ALG_SHA256 && dsz[j] == 32)
                                d256 = b;
                }
                TRY(kwa_rd_u32le(&r, &size));
                if (size > MAX_EVENT)
                        return KWA_E_TOO_LARGE;
                TRY(kwa_rd_bytes(&r, size, &ev));
                if (idx >= 24)
                        return KWA_E_FORMAT;
                if (type == EV_NO_ACTION) {
                        /* StartupLocality: PCR 0 starts at 00..00 || locality */
                        if (idx == 0 && size == 17 && memcmp(ev, "StartupLocality", 16) == 0 &&
                            !(seen & 1u))
                                v[0][31] = ev[16];
                        continue;
                }
                if (d256 == NULL)
                        return KWA_E_FORMAT;   /* the log has no SHA-256 bank */
                uint8_t m[64];
                memcpy(m, v[idx], 32);
                memcpy(m + 32, d256, 32);
                kwa_sha256(m, 64, v[idx]);
                seen |= 1u << idx;
        }
        memcpy(pcrs, v, sizeof v);
        *ret_seen = seen;
        *ret_events = events;
        return 0;
}
