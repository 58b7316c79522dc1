/*
 * ratelimit.h - token-bucket rate limits for the protocol routes (EKM 429
 * TooManyRequests, XKS 429 ThrottlingException).  Lock-free: one atomic
 * compare-and-swap per request.  A limiter with rate 0 always allows.
 */
#ifndef KW_RATELIMIT_H
#define KW_RATELIMIT_H

#include <stdint.h>

struct kw_ratelimit {
        uint64_t rate;          /* tokens per second; 0 = unlimited          */
        uint64_t burst;         /* bucket size in tokens (>= 1)              */
        uint64_t state_;        /* private: packed (time, tokens)            */
};

/* rate per second, burst = max(1, rate) unless given (0 = default). */
void kw_ratelimit_init(struct kw_ratelimit *rl, uint64_t rate, uint64_t burst);
/* 1 when the request may proceed; 0 when over the rate, and then
 * *ret_retry_after_s (may be NULL) is the whole seconds to wait (>= 1). */
int kw_ratelimit_take(struct kw_ratelimit *rl, unsigned *ret_retry_after_s);
/* What take would answer now, without taking a token. */
int kw_ratelimit_peek(const struct kw_ratelimit *rl, unsigned *ret_retry_after_s);

#endif
