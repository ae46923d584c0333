/* TCP frame reader (proto/frame.c) as the rendezvous and the peer's links
 * read a control or punched connection: the input is the byte stream,
 * delivered in reads whose sizes the first byte chooses (low 7 bits: 1..128
 * bytes; high bit: the reader has the rendezvous's pre-registration limit,
 * frame_reader.max = 4096), and every complete frame goes through
 * wire_decode (rendezvous/server_conn.c handle_frame, peer/control.c,
 * peer/tcp_link.c). */
#include "fuzz.h"

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* split headers and bodies at every offset */
    size_t chunk = (size_t)(data[0] & 0x7f) + 1;
    size_t max = data[0] & 0x80 ? 4096 : FRAME_MAX;
    data++;
    size--;

    frame_reader fr;
    frame_reader_init(&fr);
    if (max != FRAME_MAX)
        fr.max = max;
    size_t off = 0;
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk;
        const uint8_t *rd = data + off;
        size_t roff = 0;
        int st = FRAME_MORE;
        while (roff < n) {
            size_t used = 0;
            st = frame_reader_feed(&fr, rd + roff, n - roff, &used);
            FUZZ_CHECK(used <= n - roff);
            roff += used;
            FUZZ_CHECK(frame_reader_pending(&fr) <= FRAME_HEADER + max);
            if (st == FRAME_MORE) {
                FUZZ_CHECK(roff == n);
                break;
            }
            if (st != FRAME_READY)
                break;
            FUZZ_CHECK(fr.buf && fr.len >= 1 && fr.len <= max);
            (void)fuzz_decode_envelope(fr.buf, fr.len);
            frame_reader_next(&fr);
        }
        if (st != FRAME_MORE && st != FRAME_READY) {
            FUZZ_CHECK(st == FRAME_EMPTY || st == FRAME_TOO_BIG);
            break; /* the connection is dropped */
        }
        off += n;
    }
    frame_reader_reset(&fr);
    return 0;
}
