/* ratelimit.c - lock-free token bucket (see ratelimit.h).
 *
 * State packs the last refill time (milliseconds, 40 bits) and the tokens
 * in thousandths (24 bits) into one 64-bit word updated with CAS, so the
 * hot path takes no lock. */
#include <time.h>

#include "ratelimit.h"

#define MILLI 1000u
#define TOKENS_BITS 24
#define TOKENS_MASK ((1ull << TOKENS_BITS) - 1)

static uint64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void kw_ratelimit_init(struct kw_ratelimit *rl, uint64_t rate, uint64_t burst)
{
        rl->rate = rate;
        rl->burst = burst ? burst : (rate ? rate : 1);
        /* the packed counter holds up to 2^24 milli-tokens */
        if (rl->burst * MILLI > TOKENS_MASK)
                rl->burst = TOKENS_MASK / MILLI;
        rl->state_ = (now_ms() << TOKENS_BITS) | (rl->burst * MILLI);
}

/* The tokens (milli) in a state at time t, refilled; rl->rate != 0. */
static uint64_t tokens_at(const struct kw_ratelimit *rl, uint64_t state, uint64_t t)
{
        uint64_t cap = rl->burst * MILLI;
        uint64_t last = state >> TOKENS_BITS;
        uint64_t tokens = state & TOKENS_MASK;
        uint64_t dt = t > last ? t - last : 0;
        /* rate tokens per second == rate milli-tokens per millisecond */
        uint64_t add = dt > cap ? cap * rl->rate : dt * rl->rate;
        return tokens + add > cap ? cap : tokens + add;
}

static void retry_after(const struct kw_ratelimit *rl, uint64_t tokens, unsigned *ret)
{
        if (ret == NULL)
                return;
        uint64_t need_ms = (MILLI - tokens + rl->rate - 1) / rl->rate;
        *ret = (unsigned)((need_ms + 999) / 1000);
        if (*ret == 0)
                *ret = 1;
}

int kw_ratelimit_take(struct kw_ratelimit *rl, unsigned *ret_retry_after_s)
{
        if (rl->rate == 0)
                return 1;
        uint64_t old = __atomic_load_n(&rl->state_, __ATOMIC_RELAXED);
        for (;;) {
                uint64_t t = now_ms();
                uint64_t tokens = tokens_at(rl, old, t);
                if (tokens < MILLI) {
                        retry_after(rl, tokens, ret_retry_after_s);
                        return 0;
                }
                uint64_t next = (t << TOKENS_BITS) | (tokens - MILLI);
                if (__atomic_compare_exchange_n(&rl->state_, &old, next, 1, __ATOMIC_RELAXED,
                                                __ATOMIC_RELAXED))
                        return 1;
        }
}

int kw_ratelimit_peek(const struct kw_ratelimit *rl, unsigned *ret_retry_after_s)
{
        if (rl->rate == 0)
                return 1;
        uint64_t tokens = tokens_at(rl, __atomic_load_n(&rl->state_, __ATOMIC_RELAXED), now_ms());
        if (tokens < MILLI) {
                retry_after(rl, tokens, ret_retry_after_s);
                return 0;
        }
        return 1;
}
