/* Unit tests for proto/frame.c: TCP framing of the control connection.
 *
 *   | length (32-bit big-endian) | serialized Envelope ... |
 *
 * Rules checked (proto/frame.h, ARCHITECTURE.md rule 4): 1 <= length <=
 * FRAME_MAX, the length is checked before anything is allocated, a reader
 * reports exactly how many input bytes it consumed so several frames can
 * share one read() buffer, and partial frames are visible for slowloris
 * accounting. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

/* ---- helpers ------------------------------------------------------------ */

/* Writes header + body (body[i] = seed + i) into out; returns total bytes. */
static size_t make_frame(uint8_t *out, uint32_t body_len, uint8_t seed)
{
    frame_put_header(out, body_len);
    for (uint32_t i = 0; i < body_len; i++)
        out[FRAME_HEADER + i] = (uint8_t)(seed + i);
    return FRAME_HEADER + (size_t)body_len;
}

static void assert_body(const frame_reader *fr, uint32_t body_len, uint8_t seed)
{
    cr_assert_not_null(fr->buf);
    cr_assert_eq(fr->len, body_len);
    for (uint32_t i = 0; i < body_len; i++)
        cr_assert_eq(fr->buf[i], (uint8_t)(seed + i), "body byte %u", i);
}

/* ---- complete frames ---------------------------------------------------- */

/* One whole frame in one feed is READY and consumes exactly header + body. */
Test(frame, one_frame_in_one_feed)
{
    uint8_t wire[FRAME_HEADER + 5];
    size_t n = make_frame(wire, 5, 'a');
    frame_reader fr;
    frame_reader_init(&fr);
    size_t used = 999;

    cr_assert_eq(frame_reader_feed(&fr, wire, n, &used), FRAME_READY);
    cr_assert_eq(used, n);
    assert_body(&fr, 5, 'a');
    cr_assert_eq(memcmp(fr.buf, "abcde", 5), 0);

    /* Until frame_reader_next() the ready frame stays put and nothing is taken. */
    cr_assert_eq(frame_reader_feed(&fr, wire, n, &used), FRAME_READY);
    cr_assert_eq(used, 0);

    frame_reader_next(&fr);
    cr_assert_null(fr.buf);
    cr_assert_eq(frame_reader_pending(&fr), 0);
    frame_reader_reset(&fr);
}

/* A frame delivered one byte per read() (a slow or hostile sender) still
 * assembles, and every byte is consumed as it arrives. */
Test(frame, split_byte_by_byte)
{
    uint8_t wire[FRAME_HEADER + 300];
    size_t n = make_frame(wire, 300, 7);
    frame_reader fr;
    frame_reader_init(&fr);

    for (size_t i = 0; i < n; i++) {
        size_t used = 0;
        int rc = frame_reader_feed(&fr, wire + i, 1, &used);
        cr_assert_eq(used, 1, "byte %zu consumed", i);
        if (i + 1 < n) {
            cr_assert_eq(rc, FRAME_MORE, "byte %zu", i);
            cr_assert_eq(frame_reader_pending(&fr), i + 1);
        } else {
            cr_assert_eq(rc, FRAME_READY);
        }
    }
    assert_body(&fr, 300, 7);
    frame_reader_reset(&fr);
}

/* Two frames in one buffer: the first feed stops after frame 1 (used says
 * where), the caller feeds the rest after frame_reader_next(). */
Test(frame, two_frames_in_one_buffer)
{
    uint8_t wire[2 * FRAME_HEADER + 10 + 20];
    size_t n1 = make_frame(wire, 10, 1);
    size_t n2 = make_frame(wire + n1, 20, 100);
    size_t total = n1 + n2, off = 0, used = 0;
    frame_reader fr;
    frame_reader_init(&fr);

    cr_assert_eq(frame_reader_feed(&fr, wire, total, &used), FRAME_READY);
    cr_assert_eq(used, n1, "must stop at the end of the first frame");
    assert_body(&fr, 10, 1);
    off += used;
    frame_reader_next(&fr);

    cr_assert_eq(frame_reader_feed(&fr, wire + off, total - off, &used), FRAME_READY);
    cr_assert_eq(used, n2);
    assert_body(&fr, 20, 100);
    off += used;
    cr_assert_eq(off, total);
    frame_reader_next(&fr);

    /* Nothing left: an empty feed is MORE and takes nothing. */
    cr_assert_eq(frame_reader_feed(&fr, wire, 0, &used), FRAME_MORE);
    cr_assert_eq(used, 0);
    frame_reader_reset(&fr);
}

/* Exactly FRAME_MAX is the largest legal frame. */
Test(frame, exactly_frame_max_accepted)
{
    uint8_t *wire = malloc(FRAME_HEADER + FRAME_MAX);
    cr_assert_not_null(wire);
    size_t n = make_frame(wire, FRAME_MAX, 3);
    frame_reader fr;
    frame_reader_init(&fr);
    size_t used = 0;

    cr_assert_eq(frame_reader_feed(&fr, wire, n, &used), FRAME_READY);
    cr_assert_eq(used, n);
    assert_body(&fr, FRAME_MAX, 3);
    frame_reader_reset(&fr);
    free(wire);
}

/* ---- hostile length prefixes (ARCHITECTURE.md rule 4) ------------------- */

/* Length 0 is refused (an Envelope always has a version and a body). */
Test(frame, zero_length_is_empty_error)
{
    uint8_t wire[FRAME_HEADER + 2];
    frame_put_header(wire, 0);
    wire[4] = 0x08;
    wire[5] = 0x01;
    frame_reader fr;
    frame_reader_init(&fr);
    size_t used = 0;

    cr_assert_eq(frame_reader_feed(&fr, wire, sizeof(wire), &used), FRAME_EMPTY);
    cr_assert_eq(used, FRAME_HEADER, "only the header is consumed");
    cr_assert_null(fr.buf);
    frame_reader_reset(&fr);
}

struct too_big_case {
    uint32_t len;
};

ParameterizedTestParameters(frame, too_big_refused_before_allocation)
{
    static struct too_big_case cases[] = {
        {FRAME_MAX + 1}, {FRAME_MAX * 2}, {0x7fffffffu}, {0x80000000u}, {0xffffffffu},
    };
    return cr_make_param_array(struct too_big_case, cases, sizeof(cases) / sizeof(cases[0]));
}

/* A length above FRAME_MAX is refused from the header alone: nothing is
 * allocated (fr.buf stays NULL), and the error is sticky. */
ParameterizedTest(struct too_big_case *c, frame, too_big_refused_before_allocation)
{
    uint8_t wire[FRAME_HEADER + 8] = {0};
    frame_put_header(wire, c->len);
    frame_reader fr;
    frame_reader_init(&fr);
    size_t used = 0;

    cr_assert_eq(frame_reader_feed(&fr, wire, sizeof(wire), &used), FRAME_TOO_BIG, "len %u", c->len);
    cr_assert_eq(used, FRAME_HEADER);
    cr_assert_null(fr.buf, "nothing may be allocated for a refused length");
    cr_assert_eq(fr.need, 0);

    cr_assert_eq(frame_reader_feed(&fr, wire + FRAME_HEADER, 8, &used), FRAME_TOO_BIG,
                 "the caller must drop the connection; the reader stays refused");
    cr_assert_null(fr.buf);
    frame_reader_reset(&fr);
}

/* The same when the hostile header trickles in byte by byte. */
Test(frame, too_big_split_header)
{
    uint8_t hdr[FRAME_HEADER];
    frame_put_header(hdr, 0xffffffffu);
    frame_reader fr;
    frame_reader_init(&fr);
    size_t used = 0;
    for (int i = 0; i < FRAME_HEADER - 1; i++)
        cr_assert_eq(frame_reader_feed(&fr, hdr + i, 1, &used), FRAME_MORE);
    cr_assert_eq(frame_reader_feed(&fr, hdr + 3, 1, &used), FRAME_TOO_BIG);
    cr_assert_null(fr.buf);
    frame_reader_reset(&fr);
}

/* A lower maximum (the server's, before registration): refused from the
 * header, kept across frames, and lifted by setting max to 0. */
Test(frame, lower_maximum_kept_across_frames)
{
    uint8_t wire[FRAME_HEADER + 101];
    frame_reader fr;
    frame_reader_init(&fr);
    fr.max = 100;
    size_t used;
    make_frame(wire, 100, 3);
    cr_assert_eq(frame_reader_feed(&fr, wire, FRAME_HEADER + 100, &used), FRAME_READY);
    assert_body(&fr, 100, 3);
    frame_reader_next(&fr);
    cr_assert_eq(fr.max, 100, "kept by next()");
    make_frame(wire, 101, 4);
    cr_assert_eq(frame_reader_feed(&fr, wire, FRAME_HEADER, &used), FRAME_TOO_BIG);
    cr_assert_null(fr.buf, "nothing allocated");
    frame_reader_reset(&fr);
    cr_assert_eq(fr.max, 100, "kept by reset()");
    fr.max = 0;
    cr_assert_eq(frame_reader_feed(&fr, wire, FRAME_HEADER + 101, &used), FRAME_READY);
    assert_body(&fr, 101, 4);
    frame_reader_reset(&fr);
}

/* ---- partial frames ----------------------------------------------------- */

/* A truncated frame stays MORE and frame_reader_pending() counts every byte
 * held so far (header included), so the server can time out slowloris
 * senders. */
Test(frame, truncated_frame_stays_more_and_pending_counts)
{
    uint8_t wire[FRAME_HEADER + 100];
    make_frame(wire, 100, 9);
    frame_reader fr;
    frame_reader_init(&fr);
    size_t used = 0;

    cr_assert_eq(frame_reader_pending(&fr), 0);
    cr_assert_eq(frame_reader_feed(&fr, wire, 2, &used), FRAME_MORE);
    cr_assert_eq(used, 2);
    cr_assert_eq(frame_reader_pending(&fr), 2, "half a header");

    cr_assert_eq(frame_reader_feed(&fr, wire + 2, 2 + 60, &used), FRAME_MORE);
    cr_assert_eq(used, 62);
    cr_assert_eq(frame_reader_pending(&fr), FRAME_HEADER + 60);

    cr_assert_eq(frame_reader_feed(&fr, wire + 64, 39, &used), FRAME_MORE);
    cr_assert_eq(frame_reader_pending(&fr), FRAME_HEADER + 99, "one byte short");

    cr_assert_eq(frame_reader_feed(&fr, wire + 103, 1, &used), FRAME_READY);
    assert_body(&fr, 100, 9);

    /* reset() discards a half-received frame and frees its buffer */
    frame_reader_next(&fr);
    cr_assert_eq(frame_reader_feed(&fr, wire, 50, &used), FRAME_MORE);
    frame_reader_reset(&fr);
    cr_assert_null(fr.buf);
    cr_assert_eq(frame_reader_pending(&fr), 0);
}

/* ---- frame_put_header --------------------------------------------------- */

struct header_case {
    uint32_t len;
    uint8_t be[4];
};

ParameterizedTestParameters(frame, put_header_big_endian)
{
    static struct header_case cases[] = {
        {1, {0, 0, 0, 1}},
        {255, {0, 0, 0, 0xff}},
        {256, {0, 0, 1, 0}},
        {FRAME_MAX, {0, 0, 0x40, 0}},
        {0x01020304u, {1, 2, 3, 4}},
        {0xffffffffu, {0xff, 0xff, 0xff, 0xff}},
    };
    return cr_make_param_array(struct header_case, cases, sizeof(cases) / sizeof(cases[0]));
}

/* Network byte order on the wire; a header we write reads back as the same
 * length (round trip through the reader for legal lengths). */
ParameterizedTest(struct header_case *c, frame, put_header_big_endian)
{
    uint8_t hdr[FRAME_HEADER];
    frame_put_header(hdr, c->len);
    cr_assert_eq(memcmp(hdr, c->be, 4), 0, "len 0x%x", c->len);

    if (c->len >= 1 && c->len <= FRAME_MAX) {
        frame_reader fr;
        frame_reader_init(&fr);
        size_t used = 0;
        cr_assert_eq(frame_reader_feed(&fr, hdr, sizeof(hdr), &used), FRAME_MORE);
        cr_assert_eq(fr.need, c->len);
        frame_reader_reset(&fr);
    }
}
