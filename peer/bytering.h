/* The bytes of one direction of a stream, addressed by stream offset: a
 * circular buffer that holds offsets [base, base + limit) and grows (by
 * doubling, up to limit) only as far as bytes are actually written.  The
 * sender appends and reads back for (re)transmission; the receiver writes
 * at any offset within its window and consumes from base. */
#ifndef PL_BYTERING_H
#define PL_BYTERING_H

#include <stddef.h>
#include <stdint.h>

typedef struct bytering {
    uint8_t *buf;
    size_t cap;       /* allocated, a power of two (0 before the first write) */
    size_t head;      /* index of base in buf */
    uint64_t base;    /* stream offset of the oldest byte held */
    size_t limit;     /* most bytes held at once */
} bytering;

void bytering_init(bytering *b, size_t limit);
void bytering_free(bytering *b);
/* Write len bytes at stream offset off.  Requires off >= base and
 * off + len <= base + limit.  0, or -1 (out of range, or no memory). */
int bytering_write(bytering *b, uint64_t off, const uint8_t *data, size_t len);
/* Copy len bytes from stream offset off (all within what was written). */
void bytering_read(const bytering *b, uint64_t off, uint8_t *out, size_t len);
/* A pointer to the bytes at [off, off + len) if they lie contiguously in
 * the buffer, else NULL (then use bytering_read). */
const uint8_t *bytering_peek(const bytering *b, uint64_t off, size_t len);
/* Forget everything below stream offset to (to >= base). */
void bytering_consume(bytering *b, uint64_t to);

#endif
