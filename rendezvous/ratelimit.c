#include "ratelimit.h"

void ratelimit_init(ratelimit *rl, uint32_t rate_per_s, uint32_t burst, uint64_t now_ms)
{
    rl->rate_per_s = rate_per_s;
    rl->burst = burst ? burst : 1;
    rl->milli = (uint64_t)rl->burst * 1000u;
    rl->last_ms = now_ms;
}

bool ratelimit_take(ratelimit *rl, uint64_t now_ms)
{
    if (now_ms > rl->last_ms) {
        uint64_t add = (now_ms - rl->last_ms) * rl->rate_per_s; /* ms * tokens/s = milli-tokens */
        uint64_t cap = (uint64_t)rl->burst * 1000u;
        rl->milli = rl->milli + add > cap ? cap : rl->milli + add;
        rl->last_ms = now_ms;
    }
    if (rl->milli < 1000u)
        return false;
    rl->milli -= 1000u;
    return true;
}
