#include "frame.h"

#include <stdlib.h>
#include <string.h>

void frame_reader_init(frame_reader *fr)
{
    memset(fr, 0, sizeof(*fr));
}

void frame_reader_reset(frame_reader *fr)
{
    size_t max = fr->max;
    free(fr->buf);
    frame_reader_init(fr);
    fr->max = max;
}

void frame_reader_next(frame_reader *fr)
{
    frame_reader_reset(fr);
}

size_t frame_reader_pending(const frame_reader *fr)
{
    return fr->hdr_have + fr->have;
}

void frame_put_header(uint8_t out[FRAME_HEADER], uint32_t len)
{
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
}

int frame_reader_feed(frame_reader *fr, const uint8_t *data, size_t len, size_t *used)
{
    size_t off = 0;

    if (fr->buf && fr->have == fr->need) {
        *used = 0;
        return FRAME_READY; /* caller did not call frame_reader_next() */
    }
    while (fr->hdr_have < FRAME_HEADER && off < len)
        fr->hdr[fr->hdr_have++] = data[off++];
    if (fr->hdr_have < FRAME_HEADER) {
        *used = off;
        return FRAME_MORE;
    }
    if (!fr->buf) {
        uint32_t n = (uint32_t)fr->hdr[0] << 24 | (uint32_t)fr->hdr[1] << 16 |
                     (uint32_t)fr->hdr[2] << 8 | fr->hdr[3];
        *used = off;
        if (n == 0)
            return FRAME_EMPTY;
        if (n > FRAME_MAX || (fr->max && n > fr->max))
            return FRAME_TOO_BIG;
        fr->buf = malloc(n);
        if (!fr->buf)
            return FRAME_NOMEM;
        fr->need = n;
        fr->have = 0;
    }
    size_t take = fr->need - fr->have;
    if (take > len - off)
        take = len - off;
    memcpy(fr->buf + fr->have, data + off, take);
    fr->have += take;
    off += take;
    *used = off;
    if (fr->have < fr->need)
        return FRAME_MORE;
    fr->len = fr->need;
    return FRAME_READY;
}
