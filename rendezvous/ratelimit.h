/* Token bucket with caller-supplied time (no clock reads). */
#ifndef PL_RATELIMIT_H
#define PL_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct ratelimit {
    uint32_t rate_per_s; /* tokens added per second */
    uint32_t burst;      /* bucket size */
    uint64_t milli;      /* tokens * 1000, to keep sub-token refills */
    uint64_t last_ms;
} ratelimit;

void ratelimit_init(ratelimit *rl, uint32_t rate_per_s, uint32_t burst, uint64_t now_ms);
/* Take one token; false when the bucket is empty. */
bool ratelimit_take(ratelimit *rl, uint64_t now_ms);

#endif
