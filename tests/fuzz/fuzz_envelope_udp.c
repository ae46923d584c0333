/* One punchline UDP datagram (marker 0x0C + Envelope), as the rendezvous
 * (server_udp.c) and the peer (peer.c) decode it, including what the server
 * may answer: never more bytes than the datagram it answers
 * (anti-amplification, PROTOCOL.md 3). */
#include "fuzz.h"

#include <string.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > WIRE_UDP_MAX)
        return 0; /* both sides drop larger datagrams before decoding */
    Punchline__Envelope *env = NULL;
    uint32_t version = 0;
    int rc = wire_decode_udp(data, size, &env, &version);
    FUZZ_CHECK((rc == WIRE_OK) == (env != NULL));
    if (rc != WIRE_OK && size >= 1 && data[0] == WIRE_UDP_MARKER) {
        /* the same verdict as the envelope alone */
        Punchline__Envelope *e2 = NULL;
        uint32_t v2 = 0;
        FUZZ_CHECK(wire_decode(data + 1, size - 1, &e2, &v2) == rc && v2 == version);
    }
    if (rc == WIRE_E_VERSION) {
        /* server_udp.c answers BAD_VERSION only when the reply fits */
        Punchline__Error err = PUNCHLINE__ERROR__INIT;
        err.code = PUNCHLINE__ERROR_CODE__BAD_VERSION;
        err.text = "";
        Punchline__Envelope r = PUNCHLINE__ENVELOPE__INIT;
        r.body_case = PUNCHLINE__ENVELOPE__BODY_ERROR;
        r.error = &err;
        uint8_t out[WIRE_UDP_MAX];
        int n = wire_encode_udp(&r, out, sizeof(out));
        FUZZ_CHECK(n > 0);
    }
    if (env) {
        FUZZ_CHECK(data[0] == WIRE_UDP_MARKER);
        fuzz_check_envelope(data + 1, size - 1, env);
        uint8_t again[WIRE_UDP_MAX + 1];
        FUZZ_CHECK(wire_encode_udp(env, again, sizeof(again)) == (int)size);
        FUZZ_CHECK(again[0] == WIRE_UDP_MARKER);
        wire_free(env);
    }
    return 0;
}
