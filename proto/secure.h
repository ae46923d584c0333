/* The end-to-end channel of one connection: a DTLS 1.2 session between the
 * two peers' identity keys, carried as datagrams over whichever path is
 * active (direct or relayed, UDP or TCP-framed), so one handshake protects
 * the whole connection across path switches.  A core without I/O and with
 * caller-supplied time (ARCHITECTURE.md rule 2); part of the crypto door:
 * no mbedTLS type appears here.
 *
 * Authentication: the peer must present a certificate whose public key
 * hashes to the expected peer id (given by the rendezvous or pinned by the
 * application); a wrong key, no certificate or no handshake means no
 * application byte either way. */
#ifndef PL_SECURE_H
#define PL_SECURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "identity.h"

enum secure_state { SEC_HANDSHAKE = 0, SEC_OPEN, SEC_FAILED };

typedef struct secure_callbacks {
    /* One datagram (a DTLS record flight or record) to send on the active path. */
    void (*transmit)(void *user, const uint8_t *dgram, size_t len);
    /* One authenticated application record, in arrival order. */
    void (*plain)(void *user, const uint8_t *data, size_t len);
} secure_callbacks;

typedef struct secure_config {
    const identity *self;         /* must outlive the channel */
    bool client;                  /* DTLS client: the controlling peer */
    uint8_t peer_hash[ID_HASH_LEN]; /* expected SHA-256 of the peer's public key */
    uint32_t hs_min_ms;           /* first handshake retransmission; 0 = 250 */
    uint32_t hs_max_ms;           /* give up after the retransmission timer exceeds; 0 = 8000 */
    uint16_t mtu;                 /* largest DTLS datagram; 0 = SECURE_MTU */
    bool no_certificate;          /* tests only: act as a peer that presents none */
} secure_config;

typedef struct secure secure;

secure *secure_new(const secure_config *cfg, const secure_callbacks *cb, void *user);
void secure_free(secure *s);
/* Begin the handshake (the client sends its first flight). */
void secure_start(secure *s, uint64_t now);
/* One received datagram.  Records that fail authentication are dropped. */
void secure_input(secure *s, const uint8_t *dgram, size_t len, uint64_t now);
/* Seal one application record (len <= SECURE_MAX_PLAIN) and transmit it.
 * 0, or -1 when not open or too long. */
int secure_write(secure *s, const uint8_t *data, size_t len, uint64_t now);
/* Retransmit or time out the handshake when its timer is due. */
void secure_tick(secure *s, uint64_t now);
uint64_t secure_next_deadline(const secure *s);  /* UINT64_MAX: nothing due */
int secure_state(const secure *s);
/* Why the channel failed (static or owned by s); "" when it has not. */
const char *secure_error(const secure *s);
/* True when the failure is an authentication failure (wrong or missing peer key). */
bool secure_auth_failed(const secure *s);
/* True when the handshake failed by its retransmission timeout. */
bool secure_timed_out(const secure *s);
/* Cipher suite name once open. */
const char *secure_suite(const secure *s);

/* Largest DTLS datagram (the default mtu), and the largest application
 * record that fits in it after SECURE_OVERHEAD.  A Data packet (1200-byte
 * payload in an envelope of at most ~1245 bytes) stays below it; wrapped in
 * a Secure envelope and a relay header the datagram stays below
 * WIRE_UDP_MAX (PROTOCOL.md 6). */
#define SECURE_MTU 1320
#define SECURE_MAX_PLAIN (SECURE_MTU - SECURE_OVERHEAD)
#define SECURE_OVERHEAD 37        /* DTLS record header 13 + explicit nonce 8 + tag 16 */

#endif
