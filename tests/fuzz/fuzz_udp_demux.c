/* Everything that arrives on a UDP socket, rendezvous or peer: first-byte
 * classification (RFC 7983: STUN / DTLS / punchline / relayed), the relay
 * header, then the decoder each class goes to, with the bounds both sides
 * apply before it (rendezvous/server_udp.c handle_datagram, peer/peer.c
 * udp_read_cb and relay_input).  STUN requests get the server's answer,
 * which may be at most 3 times the request (RFC 9000 s8.1). */
#include "fuzz.h"

#include <string.h>

#include "stun.h"
#include "wire.h"

#define STUN_REPLY_MAX 256 /* server_udp.c */

static void stun_path(const uint8_t *buf, size_t len)
{
    stun_msg req;
    if (stun_parse(buf, len, &req) != STUN_OK || req.type != STUN_BINDING_REQUEST)
        return;
    uint8_t out[STUN_REPLY_MAX];
    netaddr from;
    FUZZ_CHECK(netaddr_parse("[2001:db8::1]:65535", &from, false) == 0);
    size_t n = req.n_unknown ? stun_binding_error(&req, 420, "Unknown Attribute", out, sizeof(out))
                             : stun_binding_success(&req, &from, out, sizeof(out));
    FUZZ_CHECK(n > 0 && n <= 3 * len);
}

static void punchline_path(const uint8_t *buf, size_t len)
{
    Punchline__Envelope *env = NULL;
    int rc = wire_decode_udp(buf, len, &env, NULL);
    FUZZ_CHECK((rc == WIRE_OK) == (env != NULL));
    if (env) {
        fuzz_check_envelope(buf + 1, len - 1, env);
        wire_free(env);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the server reads at most WIRE_UDP_MAX + WIRE_RELAY_HDR */
    if (size > WIRE_UDP_MAX + WIRE_RELAY_HDR)
        return 0;
    int cls = wire_classify(data, size);
    uint64_t sid = 0;
    bool relayed = wire_relay_session(data, size, &sid);
    FUZZ_CHECK(!relayed || cls == WIRE_CLASS_RELAY);
    switch (cls) {
    case WIRE_CLASS_RELAY:
        /* the server forwards it unchanged; the peer takes the inner
         * datagram if it is one of ours */
        if (relayed && size - WIRE_RELAY_HDR <= WIRE_UDP_MAX)
            punchline_path(data + WIRE_RELAY_HDR, size - WIRE_RELAY_HDR);
        break;
    case WIRE_CLASS_STUN:
        FUZZ_CHECK(data[0] <= 3);
        if (size <= WIRE_UDP_MAX)
            stun_path(data, size);
        break;
    case WIRE_CLASS_PUNCHLINE:
        FUZZ_CHECK(data[0] == WIRE_UDP_MARKER);
        if (size <= WIRE_UDP_MAX)
            punchline_path(data, size);
        break;
    case WIRE_CLASS_DTLS:
        FUZZ_CHECK(data[0] >= 20 && data[0] <= 63);
        break; /* dropped: DTLS travels inside Secure envelopes */
    default:
        FUZZ_CHECK(cls == WIRE_CLASS_UNKNOWN);
        FUZZ_CHECK(size == 0 || (data[0] > 3 && data[0] != WIRE_UDP_MARKER &&
                                 data[0] != WIRE_RELAY_MARKER && (data[0] < 20 || data[0] > 63)));
    }
    return 0;
}
