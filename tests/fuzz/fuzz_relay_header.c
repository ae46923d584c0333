/* Relay header (wire.c, PROTOCOL.md 5.1): 0x0D + session id (8 bytes big
 * endian) + one whole punchline datagram.  Reading it back must give the
 * header that writing it makes, and the inner datagram goes to the peer's
 * decoder (peer.c relay_input) only within WIRE_UDP_MAX. */
#include "fuzz.h"

#include <string.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t sid = 0;
    bool ok = wire_relay_session(data, size, &sid);
    FUZZ_CHECK(ok == (size > WIRE_RELAY_HDR && data[0] == WIRE_RELAY_MARKER));
    if (!ok)
        return 0;
    uint8_t hdr[WIRE_RELAY_HDR];
    wire_relay_header(hdr, sid);
    FUZZ_CHECK(memcmp(hdr, data, WIRE_RELAY_HDR) == 0);
    FUZZ_CHECK(wire_classify(data, size) == WIRE_CLASS_RELAY);
    size_t inner = size - WIRE_RELAY_HDR;
    if (inner <= WIRE_UDP_MAX) {
        Punchline__Envelope *env = NULL;
        if (wire_decode_udp(data + WIRE_RELAY_HDR, inner, &env, NULL) == WIRE_OK) {
            fuzz_check_envelope(data + WIRE_RELAY_HDR + 1, inner - 1, env);
            wire_free(env);
        }
    }
    return 0;
}
