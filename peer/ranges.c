#include "ranges.h"

#include <stdlib.h>
#include <string.h>

#define FIRST_CAP 8

int ranges_init(ranges *s, size_t max)
{
    memset(s, 0, sizeof(*s));
    s->max = max ? max : 1;
    return 0;
}

void ranges_free(ranges *s)
{
    free(s->r);
    memset(s, 0, sizeof(*s));
}

void ranges_clear(ranges *s)
{
    s->n = 0;
}

static int reserve(ranges *s, size_t n)
{
    if (n <= s->cap)
        return 0;
    if (n > s->max)
        return -1;
    size_t cap = s->cap ? s->cap * 2 : FIRST_CAP;
    if (cap < n)
        cap = n;
    if (cap > s->max)
        cap = s->max;
    range *r = realloc(s->r, cap * sizeof(*r));
    if (!r)
        return -1;
    s->r = r;
    s->cap = cap;
    return 0;
}

/* First index whose range ends at or after lo (the first that can touch
 * [lo, ...) or lie above it).  Binary search. */
static size_t first_touching(const ranges *s, uint64_t lo)
{
    size_t a = 0, b = s->n;
    while (a < b) {
        size_t m = a + (b - a) / 2;
        if (s->r[m].hi < lo)
            a = m + 1;
        else
            b = m;
    }
    return a;
}

int ranges_add(ranges *s, uint64_t lo, uint64_t hi)
{
    if (lo >= hi)
        return 0;
    size_t i = first_touching(s, lo);
    /* ranges i..j-1 touch or overlap [lo, hi] and merge into one */
    size_t j = i;
    while (j < s->n && s->r[j].lo <= hi)
        j++;
    if (i == j) { /* a new range at i */
        if (reserve(s, s->n + 1) != 0)
            return -1;
        memmove(&s->r[i + 1], &s->r[i], (s->n - i) * sizeof(range));
        s->r[i] = (range){lo, hi};
        s->n++;
        return 0;
    }
    range m = {s->r[i].lo < lo ? s->r[i].lo : lo, s->r[j - 1].hi > hi ? s->r[j - 1].hi : hi};
    s->r[i] = m;
    memmove(&s->r[i + 1], &s->r[j], (s->n - j) * sizeof(range));
    s->n -= j - i - 1;
    return 0;
}

void ranges_add_evict(ranges *s, uint64_t lo, uint64_t hi)
{
    while (ranges_add(s, lo, hi) != 0) {
        if (s->n == 0)
            return; /* no memory at all */
        memmove(&s->r[0], &s->r[1], (s->n - 1) * sizeof(range));
        s->n--;
    }
}

bool ranges_covers(const ranges *s, uint64_t lo, uint64_t hi)
{
    if (lo >= hi)
        return true;
    size_t i = first_touching(s, lo + 1);
    return i < s->n && s->r[i].lo <= lo && s->r[i].hi >= hi;
}

void ranges_drop_below(ranges *s, uint64_t x)
{
    size_t i = 0;
    while (i < s->n && s->r[i].hi <= x)
        i++;
    if (i) {
        memmove(&s->r[0], &s->r[i], (s->n - i) * sizeof(range));
        s->n -= i;
    }
    if (s->n && s->r[0].lo < x)
        s->r[0].lo = x;
}

int ranges_remove(ranges *s, uint64_t lo, uint64_t hi)
{
    if (lo >= hi)
        return 0;
    size_t i = first_touching(s, lo + 1);
    if (i < s->n && s->r[i].lo < lo && s->r[i].hi > hi) { /* split */
        if (reserve(s, s->n + 1) != 0)
            return -1;
        memmove(&s->r[i + 1], &s->r[i], (s->n - i) * sizeof(range));
        s->n++;
        s->r[i].hi = lo;
        s->r[i + 1].lo = hi;
        return 0;
    }
    size_t w = i;
    for (size_t k = i; k < s->n; k++) {
        range r = s->r[k];
        if (r.lo >= hi) { /* untouched above */
            s->r[w++] = r;
            continue;
        }
        if (r.lo < lo)
            r.hi = lo;       /* keep the part below */
        else if (r.hi > hi)
            r.lo = hi;       /* keep the part above */
        else
            continue;        /* wholly removed */
        s->r[w++] = r;
    }
    s->n = w;
    return 0;
}
