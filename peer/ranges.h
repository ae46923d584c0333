/* A bounded, sorted set of disjoint half-open ranges [lo, hi) of uint64:
 * received packet numbers, received stream bytes, stream bytes to resend.
 * Adjacent and overlapping ranges merge.  The capacity is fixed at init
 * (the set is hostile-input-facing: a peer must not make it grow without
 * bound); what happens when it is full is the caller's choice. */
#ifndef PL_RANGES_H
#define PL_RANGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct range {
    uint64_t lo, hi;
} range;

typedef struct ranges {
    range *r;        /* ascending, disjoint, non-adjacent */
    size_t n;
    size_t cap;      /* allocated */
    size_t max;      /* never more than this many */
} ranges;

/* 0, or -1 without memory.  max >= 1. */
int ranges_init(ranges *s, size_t max);
void ranges_free(ranges *s);
void ranges_clear(ranges *s);
/* Add [lo, hi) (lo < hi).  0, or -1 when it would need one range more than
 * max (or memory): then the set is unchanged. */
int ranges_add(ranges *s, uint64_t lo, uint64_t hi);
/* Like ranges_add, but when full the lowest range is dropped to make room
 * (for sets whose oldest entries matter least). */
void ranges_add_evict(ranges *s, uint64_t lo, uint64_t hi);
/* Is all of [lo, hi) in the set? */
bool ranges_covers(const ranges *s, uint64_t lo, uint64_t hi);
/* Drop everything below x. */
void ranges_drop_below(ranges *s, uint64_t x);
/* Remove [lo, hi) from the set (may split a range: -1 if that needs room
 * the set does not have, and then nothing is removed). */
int ranges_remove(ranges *s, uint64_t lo, uint64_t hi);

#endif
