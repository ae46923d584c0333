/* Unit tests for peer/ranges.c (bounded range sets) and peer/bytering.c
 * (the stream's circular buffers). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "bytering.h"
#include "ranges.h"

static void expect(const ranges *s, size_t n, const uint64_t *lohi)
{
    cr_assert_eq(s->n, n, "%zu ranges, want %zu", s->n, n);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(s->r[i].lo, lohi[2 * i], "range %zu lo %llu", i, (unsigned long long)s->r[i].lo);
        cr_assert_eq(s->r[i].hi, lohi[2 * i + 1], "range %zu hi %llu", i, (unsigned long long)s->r[i].hi);
    }
}

Test(ranges, add_merges_adjacent_and_overlapping)
{
    ranges s;
    ranges_init(&s, 8);
    cr_assert_eq(ranges_add(&s, 10, 20), 0);
    cr_assert_eq(ranges_add(&s, 30, 40), 0);
    expect(&s, 2, (uint64_t[]){10, 20, 30, 40});
    cr_assert_eq(ranges_add(&s, 20, 25), 0); /* adjacent below: merges */
    expect(&s, 2, (uint64_t[]){10, 25, 30, 40});
    cr_assert_eq(ranges_add(&s, 5, 10), 0);
    expect(&s, 2, (uint64_t[]){5, 25, 30, 40});
    cr_assert_eq(ranges_add(&s, 24, 31), 0); /* bridges both */
    expect(&s, 1, (uint64_t[]){5, 40});
    cr_assert_eq(ranges_add(&s, 0, 100), 0); /* swallows */
    expect(&s, 1, (uint64_t[]){0, 100});
    cr_assert_eq(ranges_add(&s, 50, 50), 0); /* empty: no-op */
    expect(&s, 1, (uint64_t[]){0, 100});
    ranges_free(&s);
}

Test(ranges, full_set_refuses_or_evicts)
{
    ranges s;
    ranges_init(&s, 3);
    for (uint64_t i = 0; i < 3; i++)
        cr_assert_eq(ranges_add(&s, i * 10, i * 10 + 5), 0);
    cr_assert_eq(ranges_add(&s, 100, 105), -1, "a 4th range in a set of 3");
    expect(&s, 3, (uint64_t[]){0, 5, 10, 15, 20, 25});
    cr_assert_eq(ranges_add(&s, 5, 10), 0, "a merge needs no room");
    expect(&s, 2, (uint64_t[]){0, 15, 20, 25});
    ranges_add(&s, 30, 35);
    ranges_add_evict(&s, 100, 105);
    expect(&s, 3, (uint64_t[]){20, 25, 30, 35, 100, 105});
    ranges_free(&s);
}

Test(ranges, covers_drop_and_remove)
{
    ranges s;
    ranges_init(&s, 8);
    ranges_add(&s, 10, 20);
    ranges_add(&s, 30, 40);
    cr_assert(ranges_covers(&s, 10, 20));
    cr_assert(ranges_covers(&s, 12, 13));
    cr_assert_not(ranges_covers(&s, 9, 11));
    cr_assert_not(ranges_covers(&s, 19, 31));
    cr_assert_not(ranges_covers(&s, 20, 21));
    cr_assert(ranges_covers(&s, 5, 5), "the empty range");
    cr_assert_eq(ranges_remove(&s, 14, 16), 0); /* split */
    expect(&s, 3, (uint64_t[]){10, 14, 16, 20, 30, 40});
    cr_assert_eq(ranges_remove(&s, 12, 35), 0);
    expect(&s, 2, (uint64_t[]){10, 12, 35, 40});
    ranges_drop_below(&s, 11);
    expect(&s, 2, (uint64_t[]){11, 12, 35, 40});
    ranges_drop_below(&s, 36);
    expect(&s, 1, (uint64_t[]){36, 40});
    ranges_drop_below(&s, 1000);
    expect(&s, 0, NULL);
    ranges_free(&s);
}

/* Random operations against a bitmap model. */
Test(ranges, matches_a_bitmap_model)
{
    enum { N = 512 };
    static bool model[N];
    ranges s;
    ranges_init(&s, 1000);
    uint64_t r = 1;
    for (int op = 0; op < 5000; op++) {
        r = r * 6364136223846793005ull + 1;
        uint64_t lo = (r >> 33) % N, len = (r >> 20) % 20;
        uint64_t hi = lo + len > N ? N : lo + len;
        if ((r >> 10) % 3) {
            cr_assert_eq(ranges_add(&s, lo, hi), 0);
            for (uint64_t i = lo; i < hi; i++)
                model[i] = true;
        } else {
            cr_assert_eq(ranges_remove(&s, lo, hi), 0);
            for (uint64_t i = lo; i < hi; i++)
                model[i] = false;
        }
        for (size_t i = 0; i + 1 < s.n; i++)
            cr_assert_lt(s.r[i].hi, s.r[i + 1].lo, "ranges touch or overlap");
    }
    for (uint64_t i = 0; i < N; i++)
        cr_assert_eq(ranges_covers(&s, i, i + 1), model[i], "bit %llu", (unsigned long long)i);
    ranges_free(&s);
}

Test(bytering, writes_reads_and_wraps)
{
    bytering b;
    bytering_init(&b, 1 << 16);
    static uint8_t data[70000], out[70000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 13 + 7);
    uint64_t w = 0;
    /* write 40000, consume 30000, write 50000 more: wraps */
    cr_assert_eq(bytering_write(&b, 0, data, 40000), 0);
    w = 40000;
    bytering_consume(&b, 30000);
    cr_assert_eq(bytering_write(&b, w, data + 40000 % 1000, 50000), 0);
    bytering_read(&b, 30000, out, 10000);
    cr_assert_eq(memcmp(out, data + 30000, 10000), 0);
    bytering_read(&b, 40000, out, 50000);
    cr_assert_eq(memcmp(out, data + 40000 % 1000, 50000), 0);
    cr_assert_leq(b.cap, (size_t)1 << 16, "grew beyond the limit");
    /* out of range: below base, beyond base + limit */
    cr_assert_eq(bytering_write(&b, 100, data, 1), -1);
    cr_assert_eq(bytering_write(&b, 30000 + (1 << 16) - 1, data, 2), -1);
    cr_assert_eq(bytering_write(&b, 30000 + (1 << 16) - 1, data, 1), 0);
    /* a write at any offset inside the window (the receiver's case) */
    cr_assert_eq(bytering_write(&b, 60000, data, 5), 0);
    bytering_read(&b, 60000, out, 5);
    cr_assert_eq(memcmp(out, data, 5), 0);
    bytering_free(&b);
}

Test(bytering, grows_only_as_written)
{
    bytering b;
    bytering_init(&b, 1 << 24);
    uint8_t x[10] = {1, 2, 3};
    cr_assert_eq(bytering_write(&b, 0, x, sizeof(x)), 0);
    cr_assert_leq(b.cap, 16384, "a 10-byte write allocated %zu", b.cap);
    cr_assert_not_null(bytering_peek(&b, 0, 10));
    bytering_free(&b);
}
