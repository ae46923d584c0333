#include "probe.h"

#include <string.h>

#include "crypto.h"

void probe_mac(const uint8_t secret[WIRE_SECRET_LEN], uint64_t session_id, uint64_t tid,
               bool response, bool nominate, int role, const Punchline__Endpoint *mapped,
               uint8_t out[WIRE_MAC_LEN])
{
    /* "PLP1" | session_id (8) | tid (8) | flags (1: bit0 response, bit1
     * nominate) | role (1) | mapped ip length (1) | mapped ip (0/4/16) |
     * mapped port (2); integers big-endian */
    uint8_t in[4 + 8 + 8 + 1 + 1 + 1 + 16 + 2];
    size_t n = 4;
    memcpy(in, "PLP1", 4);
    for (int i = 7; i >= 0; i--)
        in[n++] = (uint8_t)(session_id >> (8 * i));
    for (int i = 7; i >= 0; i--)
        in[n++] = (uint8_t)(tid >> (8 * i));
    in[n++] = (uint8_t)((response ? 1 : 0) | (nominate ? 2 : 0));
    in[n++] = (uint8_t)role;
    size_t iplen = mapped && (mapped->ip.len == 4 || mapped->ip.len == 16) ? mapped->ip.len : 0;
    in[n++] = (uint8_t)iplen;
    if (iplen)
        memcpy(in + n, mapped->ip.data, iplen);
    n += iplen;
    uint32_t port = mapped ? mapped->port : 0;
    in[n++] = (uint8_t)(port >> 8);
    in[n++] = (uint8_t)port;
    crypto_hmac_sha256(secret, WIRE_SECRET_LEN, in, n, out, WIRE_MAC_LEN);
}

bool probe_authentic(const probe_key *k, const Punchline__Probe *m)
{
    uint8_t mac[WIRE_MAC_LEN];
    if (m->session_id != k->session_id || m->mac.len != WIRE_MAC_LEN || (int)m->role == k->role)
        return false;
    probe_mac(k->secret, m->session_id, m->tid, m->response, m->nominate, m->role, m->mapped, mac);
    return crypto_equal(mac, m->mac.data, WIRE_MAC_LEN);
}

uint64_t probe_tid(const probe_key *k, uint64_t counter, unsigned idx)
{
    return k->tid_seed ^ (counter << 8 | (idx & 0xff));
}

bool probe_tid_ours(const probe_key *k, uint64_t counter, uint64_t tid, unsigned idx)
{
    uint64_t raw = tid ^ k->tid_seed;
    return (raw & 0xff) == idx && (raw >> 8) != 0 && (raw >> 8) <= counter;
}

size_t probe_encode(const probe_key *k, uint64_t tid, bool response, bool nominate,
                    const netaddr *mapped, bool udp, uint8_t *buf, size_t cap)
{
    Punchline__Probe pr = PUNCHLINE__PROBE__INIT;
    Punchline__Endpoint ep;
    uint8_t ipbuf[16], mac[WIRE_MAC_LEN];
    pr.session_id = k->session_id;
    pr.tid = tid;
    pr.response = response;
    pr.nominate = nominate;
    pr.role = k->role;
    if (mapped) {
        netaddr_to_endpoint(mapped, &ep, ipbuf);
        pr.mapped = &ep;
    }
    probe_mac(k->secret, pr.session_id, tid, response, nominate, pr.role, pr.mapped, mac);
    pr.mac.data = mac;
    pr.mac.len = sizeof(mac);
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_PROBE;
    env.probe = &pr;
    int n = udp ? wire_encode_udp(&env, buf, cap) : wire_encode(&env, buf, cap);
    return n > 0 ? (size_t)n : 0;
}
