#ifndef PL_TIMEUTIL_H
#define PL_TIMEUTIL_H

#include <stdint.h>

/* Monotonic milliseconds.  Only the libev shells read the clock; cores are
 * handed `now` (ARCHITECTURE.md rule 1). */
uint64_t time_now_ms(void);
/* Monotonic microseconds, same clock (the stream core times packets in µs). */
uint64_t time_now_us(void);

#endif
