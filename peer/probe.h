/* The Probe message shared by UDP and TCP punching: its MAC, the checks a
 * received probe must pass, transaction ids, and encoding
 * (docs/PROTOCOL.md 4.1 "Probe MAC"). */
#ifndef PL_PROBE_H
#define PL_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "wire.h"

typedef struct probe_key {
    uint64_t session_id;
    uint8_t secret[WIRE_SECRET_LEN];
    int role;                  /* our Punchline__Role */
    uint64_t tid_seed;         /* random: makes transaction ids unpredictable */
} probe_key;

/* mac = first 16 bytes of HMAC-SHA256(secret, M), M as in PROTOCOL.md 4.1. */
void probe_mac(const uint8_t secret[WIRE_SECRET_LEN], uint64_t session_id, uint64_t tid,
               bool response, bool nominate, int role, const Punchline__Endpoint *mapped,
               uint8_t out[WIRE_MAC_LEN]);
/* Right session, not our own role (a reflection), and a MAC that verifies. */
bool probe_authentic(const probe_key *k, const Punchline__Probe *m);
/* Transaction id number `counter` (>= 1) for slot `idx` (< 256). */
uint64_t probe_tid(const probe_key *k, uint64_t counter, unsigned idx);
/* Could we have issued tid for slot idx, given `counter` ids so far? */
bool probe_tid_ours(const probe_key *k, uint64_t counter, uint64_t tid, unsigned idx);
/* Encode a probe; `mapped` only in responses.  With udp, the datagram marker
 * comes first.  Returns the length, 0 if it does not fit. */
size_t probe_encode(const probe_key *k, uint64_t tid, bool response, bool nominate,
                    const netaddr *mapped, bool udp, uint8_t *buf, size_t cap);

#endif
