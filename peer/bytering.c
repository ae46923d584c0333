#include "bytering.h"

#include <stdlib.h>
#include <string.h>

#define FIRST_CAP 16384

void bytering_init(bytering *b, size_t limit)
{
    memset(b, 0, sizeof(*b));
    b->limit = limit;
}

void bytering_free(bytering *b)
{
    free(b->buf);
    b->buf = NULL;
    b->cap = 0;
}

/* Make room for offsets [base, base + need): double, re-linearize. */
static int grow(bytering *b, size_t need)
{
    size_t cap = b->cap ? b->cap : FIRST_CAP;
    while (cap < need)
        cap *= 2;
    if (cap == b->cap)
        return 0;
    uint8_t *n = malloc(cap);
    if (!n)
        return -1;
    if (b->cap) { /* old contents, base first */
        size_t first = b->cap - b->head;
        memcpy(n, b->buf + b->head, first);
        memcpy(n + first, b->buf, b->head);
    }
    free(b->buf);
    b->buf = n;
    b->cap = cap;
    b->head = 0;
    return 0;
}

int bytering_write(bytering *b, uint64_t off, const uint8_t *data, size_t len)
{
    if (off < b->base || off - b->base > b->limit || len > b->limit - (off - b->base))
        return -1;
    size_t end = (size_t)(off - b->base) + len;
    if (end > b->cap && grow(b, end) != 0)
        return -1;
    if (!len)
        return 0;
    size_t i = (b->head + (size_t)(off - b->base)) & (b->cap - 1);
    size_t first = b->cap - i < len ? b->cap - i : len;
    memcpy(b->buf + i, data, first);
    memcpy(b->buf, data + first, len - first);
    return 0;
}

void bytering_read(const bytering *b, uint64_t off, uint8_t *out, size_t len)
{
    if (!len)
        return;
    size_t i = (b->head + (size_t)(off - b->base)) & (b->cap - 1);
    size_t first = b->cap - i < len ? b->cap - i : len;
    memcpy(out, b->buf + i, first);
    memcpy(out + first, b->buf, len - first);
}

const uint8_t *bytering_peek(const bytering *b, uint64_t off, size_t len)
{
    if (!b->cap)
        return NULL;
    size_t i = (b->head + (size_t)(off - b->base)) & (b->cap - 1);
    return b->cap - i >= len ? b->buf + i : NULL;
}

void bytering_consume(bytering *b, uint64_t to)
{
    if (to <= b->base)
        return;
    if (b->cap)
        b->head = (b->head + (size_t)(to - b->base)) & (b->cap - 1);
    b->base = to;
}
