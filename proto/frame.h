/* TCP framing for the control connection.
 *
 *   0                   1                   2                   3
 *   +-------+-------+-------+-------+-------------------------------+
 *   |     length (32-bit big-endian) |  serialized Envelope ...     |
 *   +-------+-------+-------+-------+-------------------------------+
 *
 * length counts the Envelope bytes only; 1 <= length <= FRAME_MAX.  The
 * length is checked before anything is allocated (ARCHITECTURE.md rule 4).
 */
#ifndef PL_FRAME_H
#define PL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER 4
#define FRAME_MAX 16384

enum frame_status {
    FRAME_MORE = 0,      /* everything consumed, frame not complete yet */
    FRAME_READY = 1,     /* a frame is in fr->buf / fr->len */
    FRAME_TOO_BIG = -1,  /* length prefix above FRAME_MAX: close the connection */
    FRAME_EMPTY = -2,    /* length prefix 0: close the connection */
    FRAME_NOMEM = -3
};

typedef struct frame_reader {
    uint8_t hdr[FRAME_HEADER];
    size_t hdr_have;
    uint8_t *buf;   /* body of the current frame, allocated once its length is known */
    size_t need;    /* body length announced by the header */
    size_t have;    /* body bytes received so far */
    size_t len;     /* valid when FRAME_READY */
    size_t max;     /* largest body accepted (FRAME_TOO_BIG above); 0 = FRAME_MAX.
                       Set after init; kept by reset and next */
} frame_reader;

void frame_reader_init(frame_reader *fr);
void frame_reader_reset(frame_reader *fr);
/* Consume bytes from data; *used tells how many.  Call again with the rest
 * after FRAME_READY (and frame_reader_next).  Errors are sticky in the sense
 * that the caller must drop the connection. */
int frame_reader_feed(frame_reader *fr, const uint8_t *data, size_t len, size_t *used);
/* Release the ready frame and get ready for the next header. */
void frame_reader_next(frame_reader *fr);
/* Bytes of a partially received frame (for slowloris accounting). */
size_t frame_reader_pending(const frame_reader *fr);

void frame_put_header(uint8_t out[FRAME_HEADER], uint32_t len);

#endif
