/* The message layer both sides share: version check, first-byte
 * demultiplexing of UDP datagrams (RFC 7983), bounds on every field.
 *
 * UDP datagram:
 *   +------+-----------------------------+
 *   | 0x0C | serialized Envelope ...      |
 *   +------+-----------------------------+
 * RFC 7983 s7 as updated by RFC 9443: 0..3 STUN, 16..19 ZRTP, 20..63 DTLS,
 * 64..79 TURN channels, 64..127 and 192..255 QUIC, 128..191 RTP.  4..15 is
 * unassigned; 0x0C is ours, so one socket can also carry any of the others.
 */
#ifndef PL_WIRE_H
#define PL_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "punchline.pb-c.h"

#define WIRE_VERSION 2           /* 2: the QUIC-style stream (Data/Ack), Datagram */
#define WIRE_UDP_MARKER 0x0C
/* Relayed datagram: 0x0D, the session id (8 bytes big-endian), then a whole
 * punchline datagram (0x0C ...).  See docs/PROTOCOL.md 5.1. */
#define WIRE_RELAY_MARKER 0x0D
#define WIRE_RELAY_HDR 9
#define WIRE_UDP_MAX 1400        /* largest datagram we send or accept */
#define WIRE_MAX_CANDIDATES 32   /* per message (RFC 8445 s19.5.1 spirit) */
#define WIRE_MAX_HOST_CANDIDATES 16
#define WIRE_SECRET_LEN 32
#define WIRE_MAC_LEN 16
#define WIRE_MAX_PAYLOAD 1200    /* Data.payload, Datagram.payload */
#define WIRE_MAX_ACK_RANGES 32   /* Ack.ranges pairs */
#define WIRE_MAX_STREAM_OFFSET (1ull << 62)
#define WIRE_MAX_TEXT 256        /* error text, close reason, client version */
#define WIRE_MAX_KEY 200         /* Register.public_key (DER SubjectPublicKeyInfo) */
#define WIRE_MAX_SIG 80          /* Register.signature (DER ECDSA) */
#define WIRE_MAX_TOKEN 96        /* Register.token */
#define WIRE_NONCE_LEN 32        /* ServerHello.nonce */
#define WIRE_KEY_HASH_LEN 32     /* PunchStart.peer_key_hash */

/* Anti-amplification (docs/PROTOCOL.md 3): the server never answers a UDP
 * datagram with a larger punchline datagram, so a UdpBind is padded up to
 * the size of the largest UdpBound it can get back:
 *   marker 1 + version 2 + body tag/len 2 + observed_udp tag/len 2
 *   + ip tag/len 2 + 16 (IPv6) + port tag 1 + varint 3 (65535)
 *   + challenge tag 1 + fixed64 8                           = 38 bytes.
 * WIRE_UDPBIND_MIN adds a margin (an optional field a later server might
 * add to UdpBound).  tests/unit/proto/test_wire.c encodes the worst case. */
#define WIRE_UDPBOUND_MAX 38
#define WIRE_UDPBIND_MIN 48
#define WIRE_MAX_PADDING 64      /* UdpBind.padding */

enum wire_class { WIRE_CLASS_UNKNOWN = 0, WIRE_CLASS_STUN, WIRE_CLASS_DTLS, WIRE_CLASS_PUNCHLINE,
                  WIRE_CLASS_RELAY };

enum wire_status {
    WIRE_OK = 0,
    WIRE_E_MALFORMED = -1,   /* undecodable, no body, or a field out of bounds */
    WIRE_E_VERSION = -2,     /* decodable but another protocol version */
    WIRE_E_NOSPACE = -3,     /* encode: output buffer too small */
};

/* Classify a UDP datagram by its first byte. */
int wire_classify(const uint8_t *buf, size_t len);

/* Decode a serialized Envelope (TCP frame body, or a UDP datagram after the
 * marker).  On WIRE_OK *out must be released with wire_free().  On
 * WIRE_E_VERSION *version tells the peer's version (nothing to free). */
int wire_decode(const uint8_t *buf, size_t len, Punchline__Envelope **out, uint32_t *version);
/* Decode a whole UDP datagram including the marker byte. */
int wire_decode_udp(const uint8_t *buf, size_t len, Punchline__Envelope **out, uint32_t *version);
void wire_free(Punchline__Envelope *env);

/* Check every bounded field of an already-unpacked envelope. */
int wire_validate(const Punchline__Envelope *env);

/* Serialize env (its version is set to WIRE_VERSION).  Returns bytes written
 * or WIRE_E_NOSPACE. */
int wire_encode(Punchline__Envelope *env, uint8_t *out, size_t cap);
/* The same with the UDP marker in front. */
int wire_encode_udp(Punchline__Envelope *env, uint8_t *out, size_t cap);

const char *wire_body_name(const Punchline__Envelope *env);

/* Encode the UDP datagram UdpBind{token, challenge}, padded with zero bytes
 * to WIRE_UDPBIND_MIN so that the server may answer it (PROTOCOL.md 3).
 * Returns bytes written or WIRE_E_NOSPACE. */
int wire_encode_udp_bind(uint64_t token, uint64_t challenge, uint8_t *out, size_t cap);

/* Relay header: write it in front of an inner datagram (buf needs
 * WIRE_RELAY_HDR bytes), or read the session id of a relayed datagram
 * (false if too short or not one). */
void wire_relay_header(uint8_t *buf, uint64_t session_id);
bool wire_relay_session(const uint8_t *buf, size_t len, uint64_t *session_id);
/* Secure.mac (PROTOCOL.md 4.5): records that are not application data
 * (handshake, change_cipher_spec, alerts) are authenticated with the
 * session secret, so a third host cannot disturb the handshake. */
void wire_secure_mac(const uint8_t secret[WIRE_SECRET_LEN], uint64_t session_id,
                     const uint8_t *dtls, size_t len, uint8_t out[WIRE_MAC_LEN]);
bool wire_secure_needs_mac(const uint8_t *dtls, size_t len);
/* Whether a peer takes m into its channel: WIRE_SECURE_DROP, or
 * WIRE_SECURE_MACED (carried a valid MAC: authenticated already) or
 * WIRE_SECURE_AEAD (application data of an open channel: authenticated
 * only if the channel opens it). */
enum { WIRE_SECURE_DROP = 0, WIRE_SECURE_MACED = 1, WIRE_SECURE_AEAD = 2 };
struct Punchline__Secure;
int wire_secure_accept(const uint8_t secret[WIRE_SECRET_LEN], uint64_t session_id,
                       const struct Punchline__Secure *m, bool channel_open);

/* What Register.signature signs: REGISTER_SIG_LABEL (with its NUL) ||
 * nonce || name.  Returns the length written (cap must hold it all). */
#define REGISTER_SIG_LABEL "punchline register v1"
size_t wire_register_sig_input(const uint8_t nonce[WIRE_NONCE_LEN], const char *name, uint8_t *out,
                               size_t cap);

/* The RelayOpen MAC (first WIRE_MAC_LEN bytes of HMAC-SHA256, PROTOCOL.md 5.2). */
void wire_relay_mac(const uint8_t secret[WIRE_SECRET_LEN], uint64_t session_id, int role,
                    uint8_t out[WIRE_MAC_LEN]);

#endif
