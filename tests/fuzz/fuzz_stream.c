/* The stream core (peer/stream.c) against a hostile remote peer: what
 * arrives inside the encrypted channel as Data and Ack (conn.c sec_plain)
 * drives one stream, interleaved with our own sends, time passing and path
 * events.  The input is a script of operations:
 *
 *   0 LEN(2) ENVELOPE   an inner envelope (wire_decode; Data/Ack of our session)
 *   1 LEN(2)            the application sends a message of LEN bytes
 *   2 DT(2)             DT * 100 us pass; poll what the stream transmits
 *   3                   the application shuts its side down
 *   4 X                 pause/resume delivery, deliver, path switch, force ack
 *
 * Checked: what it transmits is a valid datagram of our session (Data or
 * Ack; the first of each burst of at most 16 is decoded), delivered bytes never exceed received ones and match what the
 * application was handed, acknowledged bytes never exceed queued ones, FIN
 * at most once and nothing after it.  (A crash here is in the peer's
 * stream code: report it with the input.) */
#include "fuzz.h"

#include <string.h>

#include "stream.h"

#define SID 0x0123456789abcdefull

typedef struct ctx {
    uint64_t delivered;
    bool fin;
} ctx;

static void on_message(void *user, const uint8_t *data, size_t len)
{
    ctx *c = user;
    FUZZ_CHECK(!c->fin);
    FUZZ_CHECK(len == 0 || data != NULL);
    c->delivered += 4 + len;
}

static void on_fin(void *user)
{
    ctx *c = user;
    FUZZ_CHECK(!c->fin);
    c->fin = true;
}

static void check_out(const uint8_t *buf, size_t n)
{
    Punchline__Envelope *env = NULL;
    FUZZ_CHECK(n >= 1 && n <= WIRE_UDP_MAX);
    FUZZ_CHECK(wire_decode_udp(buf, n, &env, NULL) == WIRE_OK);
    if (env->body_case == PUNCHLINE__ENVELOPE__BODY_DATA) {
        FUZZ_CHECK(env->data->session_id == SID);
        FUZZ_CHECK(env->data->payload.len <= STREAM_MSS);
    } else {
        FUZZ_CHECK(env->body_case == PUNCHLINE__ENVELOPE__BODY_ACK);
        FUZZ_CHECK(env->ack->session_id == SID);
    }
    wire_free(env);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t msg[65536];
    stream_config cfg = {.session_id = SID, .send_limit = STREAM_MIN_BUFFER,
                         .recv_limit = STREAM_MIN_BUFFER};
    stream_callbacks cb = {.on_message = on_message, .on_fin = on_fin};
    ctx c = {0};
    stream s;
    if (stream_init(&s, &cfg, &cb, &c) != 0)
        return 0;
    uint64_t now = 1000000;
    bool reliable = false;
    size_t off = 0;
    while (off < size) {
        uint8_t op = data[off++] % 5;
        size_t arg = 0;
        if (op <= 2) {
            if (size - off < 2)
                break;
            arg = (size_t)data[off] << 8 | data[off + 1];
            off += 2;
        }
        switch (op) {
        case 0: {
            if (arg > size - off)
                arg = size - off;
            Punchline__Envelope *env = NULL;
            if (wire_decode(data + off, arg, &env, NULL) == WIRE_OK) {
                if (env->body_case == PUNCHLINE__ENVELOPE__BODY_DATA &&
                    env->data->session_id == SID)
                    stream_input_data(&s, env->data, now);
                else if (env->body_case == PUNCHLINE__ENVELOPE__BODY_ACK &&
                         env->ack->session_id == SID)
                    stream_input_ack(&s, env->ack, now);
                wire_free(env);
            }
            off += arg;
            break;
        }
        case 1:
            (void)stream_send(&s, msg, arg); /* the contents do not matter */
            break;
        case 2: {
            now += (uint64_t)arg * 100;
            uint8_t out[WIRE_UDP_MAX];
            size_t n;
            for (int i = 0; i < 16 && (n = stream_poll_transmit(&s, now, out, sizeof(out))) > 0;
                 i++)
                if (i == 0)
                    check_out(out, n); /* the first of a burst: decoding is dear */
            break;
        }
        case 3:
            (void)stream_shutdown(&s);
            break;
        default: {
            uint8_t x = off < size ? data[off++] : 0;
            switch (x % 5) {
            case 0: stream_set_paused(&s, true); break;
            case 1: stream_set_paused(&s, false); stream_deliver(&s); break;
            case 2: reliable = !reliable; stream_path_switch(&s, reliable, now); break;
            case 3: stream_force_ack(&s); break;
            default: stream_set_reliable(&s, x & 8); break;
            }
        }
        }
        stream_stats st;
        stream_get_stats(&s, &st);
        FUZZ_CHECK(st.bytes_delivered <= st.bytes_received);
        FUZZ_CHECK(c.delivered == st.bytes_delivered);
        FUZZ_CHECK(st.bytes_acked <= st.bytes_queued);
    }
    stream_free(&s);
    return 0;
}
