#include "wire.h"

#include "crypto.h"
#include "names.h"

#include <string.h>

int wire_classify(const uint8_t *buf, size_t len)
{
    if (len == 0)
        return WIRE_CLASS_UNKNOWN;
    uint8_t b = buf[0];
    if (b <= 3)
        return WIRE_CLASS_STUN;
    if (b >= 20 && b <= 63)
        return WIRE_CLASS_DTLS;
    if (b == WIRE_UDP_MARKER)
        return WIRE_CLASS_PUNCHLINE;
    if (b == WIRE_RELAY_MARKER)
        return WIRE_CLASS_RELAY;
    return WIRE_CLASS_UNKNOWN;
}

static int check_endpoint(const Punchline__Endpoint *ep, int required)
{
    if (!ep)
        return required ? -1 : 0;
    if (ep->ip.len != 4 && ep->ip.len != 16)
        return -1;
    return ep->port >= 1 && ep->port <= 65535 ? 0 : -1;
}

static int check_candidates(Punchline__Candidate **c, size_t n, size_t max)
{
    if (n > max)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (check_endpoint(c[i]->endpoint, 1) < 0)
            return -1;
    return 0;
}

static int check_text(const char *s, size_t max)
{
    return s && strlen(s) <= max ? 0 : -1;
}

static int check_name(const char *s)
{
    return name_valid_cstr(s) ? 0 : -1;
}

int wire_validate(const Punchline__Envelope *e)
{
    int bad = 0;
    switch (e->body_case) {
    case PUNCHLINE__ENVELOPE__BODY_REGISTER:
        /* the name is checked by the server, which answers BAD_NAME */
        bad = check_text(e->register_->name, 1024) || check_text(e->register_->client_version, WIRE_MAX_TEXT) ||
              e->register_->public_key.len > WIRE_MAX_KEY ||
              e->register_->signature.len > WIRE_MAX_SIG ||
              check_text(e->register_->token, WIRE_MAX_TOKEN) ||
              check_candidates(e->register_->candidates, e->register_->n_candidates,
                               WIRE_MAX_HOST_CANDIDATES);
        break;
    case PUNCHLINE__ENVELOPE__BODY_REGISTER_RESULT:
        bad = check_endpoint(e->register_result->observed_tcp, 0) ||
              check_text(e->register_result->server_version, WIRE_MAX_TEXT);
        break;
    case PUNCHLINE__ENVELOPE__BODY_KEEPALIVE:
        break;
    case PUNCHLINE__ENVELOPE__BODY_UDP_BIND:
        bad = e->udp_bind->padding.len > WIRE_MAX_PADDING;
        break;
    case PUNCHLINE__ENVELOPE__BODY_UDP_BOUND:
        bad = check_endpoint(e->udp_bound->observed_udp, 1);
        break;
    case PUNCHLINE__ENVELOPE__BODY_CONNECT_REQUEST:
        bad = check_text(e->connect_request->peer_name, 1024);
        break;
    case PUNCHLINE__ENVELOPE__BODY_INCOMING:
        bad = check_name(e->incoming->peer_name);
        break;
    case PUNCHLINE__ENVELOPE__BODY_CANDIDATES:
        bad = check_text(e->candidates->peer_name, NAME_MAX_LEN) ||
              check_candidates(e->candidates->candidates, e->candidates->n_candidates,
                               WIRE_MAX_CANDIDATES);
        break;
    case PUNCHLINE__ENVELOPE__BODY_PUNCH_START:
        bad = check_name(e->punch_start->peer_name) ||
              e->punch_start->secret.len != WIRE_SECRET_LEN ||
              (e->punch_start->role != PUNCHLINE__ROLE__CONTROLLING &&
               e->punch_start->role != PUNCHLINE__ROLE__CONTROLLED) ||
              (e->punch_start->peer_key_hash.len != 0 &&
               e->punch_start->peer_key_hash.len != WIRE_KEY_HASH_LEN);
        break;
    case PUNCHLINE__ENVELOPE__BODY_SERVER_HELLO:
        bad = e->server_hello->nonce.len != WIRE_NONCE_LEN ||
              check_text(e->server_hello->server_version, WIRE_MAX_TEXT);
        break;
    case PUNCHLINE__ENVELOPE__BODY_SECURE:
        bad = e->secure->dtls.len == 0 || e->secure->dtls.len > WIRE_UDP_MAX ||
              (e->secure->mac.len != 0 && e->secure->mac.len != WIRE_MAC_LEN);
        break;
    case PUNCHLINE__ENVELOPE__BODY_CLOSE:
        bad = check_text(e->close->reason, WIRE_MAX_TEXT);
        break;
    case PUNCHLINE__ENVELOPE__BODY_ERROR:
        bad = check_text(e->error->text, WIRE_MAX_TEXT);
        break;
    case PUNCHLINE__ENVELOPE__BODY_PROBE:
        bad = e->probe->mac.len != WIRE_MAC_LEN || check_endpoint(e->probe->mapped, 0);
        break;
    case PUNCHLINE__ENVELOPE__BODY_DATA:
        /* the stream's end must be representable: offset + len < 2^62 */
        bad = e->data->payload.len > WIRE_MAX_PAYLOAD || e->data->offset > WIRE_MAX_STREAM_OFFSET;
        break;
    case PUNCHLINE__ENVELOPE__BODY_ACK:
        bad = e->ack->n_ranges > 2 * WIRE_MAX_ACK_RANGES || e->ack->n_ranges % 2 != 0;
        break;
    case PUNCHLINE__ENVELOPE__BODY_DATAGRAM:
        bad = e->datagram->payload.len > WIRE_MAX_PAYLOAD;
        break;
    case PUNCHLINE__ENVELOPE__BODY_RELAY_READY:
        break;
    case PUNCHLINE__ENVELOPE__BODY_RELAY_OPEN:
        bad = e->relay_open->mac.len != WIRE_MAC_LEN ||
              (e->relay_open->role != PUNCHLINE__ROLE__CONTROLLING &&
               e->relay_open->role != PUNCHLINE__ROLE__CONTROLLED);
        break;
    default:
        bad = 1; /* no body, or a message this version does not know */
    }
    return bad ? WIRE_E_MALFORMED : WIRE_OK;
}

int wire_decode(const uint8_t *buf, size_t len, Punchline__Envelope **out, uint32_t *version)
{
    *out = NULL;
    if (version)
        *version = 0;
    Punchline__Envelope *e = punchline__envelope__unpack(NULL, len, buf);
    if (!e)
        return WIRE_E_MALFORMED;
    if (version)
        *version = e->version;
    if (e->version == 0) {
        /* no version at all (e.g. an empty envelope): not a version question */
        punchline__envelope__free_unpacked(e, NULL);
        return WIRE_E_MALFORMED;
    }
    if (e->version != WIRE_VERSION) {
        punchline__envelope__free_unpacked(e, NULL);
        return WIRE_E_VERSION;
    }
    /* Canonical encoding only: what we decoded must re-encode to as many
     * bytes as we got (PROTOCOL.md 1.3; canonical up to field order, which
     * changes no meaning).  protobuf-c silently cuts a string at an
     * embedded NUL ("alice\0x" would read as "alice"); this also refuses
     * repeated singular fields and padded varints, which no honest encoder
     * sends. */
    if (punchline__envelope__get_packed_size(e) != len || wire_validate(e) != WIRE_OK) {
        punchline__envelope__free_unpacked(e, NULL);
        return WIRE_E_MALFORMED;
    }
    *out = e;
    return WIRE_OK;
}

int wire_decode_udp(const uint8_t *buf, size_t len, Punchline__Envelope **out, uint32_t *version)
{
    *out = NULL;
    if (version)
        *version = 0;
    if (wire_classify(buf, len) != WIRE_CLASS_PUNCHLINE)
        return WIRE_E_MALFORMED;
    return wire_decode(buf + 1, len - 1, out, version);
}

void wire_free(Punchline__Envelope *env)
{
    if (env)
        punchline__envelope__free_unpacked(env, NULL);
}

int wire_encode(Punchline__Envelope *env, uint8_t *out, size_t cap)
{
    env->version = WIRE_VERSION;
    size_t n = punchline__envelope__get_packed_size(env);
    if (n > cap || n > (size_t)INT32_MAX)
        return WIRE_E_NOSPACE;
    return (int)punchline__envelope__pack(env, out);
}

int wire_encode_udp(Punchline__Envelope *env, uint8_t *out, size_t cap)
{
    if (cap < 1)
        return WIRE_E_NOSPACE;
    int n = wire_encode(env, out + 1, cap - 1);
    if (n < 0)
        return n;
    out[0] = WIRE_UDP_MARKER;
    return n + 1;
}

int wire_encode_udp_bind(uint64_t token, uint64_t challenge, uint8_t *out, size_t cap)
{
    static uint8_t zeros[WIRE_MAX_PADDING];
    Punchline__UdpBind ub = PUNCHLINE__UDP_BIND__INIT;
    ub.udp_token = token;
    ub.challenge = challenge;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.version = WIRE_VERSION;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_UDP_BIND;
    env.udp_bind = &ub;
    /* marker + envelope without padding; the padding field then costs a tag
     * byte and a one-byte length (< 128) on top of its contents.  A gap of
     * 1 cannot be filled exactly: one byte more than needed is fine. */
    size_t bare = 1 + punchline__envelope__get_packed_size(&env);
    if (bare < WIRE_UDPBIND_MIN) {
        size_t gap = WIRE_UDPBIND_MIN - bare;
        ub.padding.data = zeros;
        ub.padding.len = gap > 2 ? gap - 2 : 1;
    }
    return wire_encode_udp(&env, out, cap);
}

const char *wire_body_name(const Punchline__Envelope *env)
{
    switch (env->body_case) {
    case PUNCHLINE__ENVELOPE__BODY_REGISTER: return "Register";
    case PUNCHLINE__ENVELOPE__BODY_REGISTER_RESULT: return "RegisterResult";
    case PUNCHLINE__ENVELOPE__BODY_KEEPALIVE: return "Keepalive";
    case PUNCHLINE__ENVELOPE__BODY_UDP_BIND: return "UdpBind";
    case PUNCHLINE__ENVELOPE__BODY_UDP_BOUND: return "UdpBound";
    case PUNCHLINE__ENVELOPE__BODY_CONNECT_REQUEST: return "ConnectRequest";
    case PUNCHLINE__ENVELOPE__BODY_INCOMING: return "IncomingConnection";
    case PUNCHLINE__ENVELOPE__BODY_CANDIDATES: return "Candidates";
    case PUNCHLINE__ENVELOPE__BODY_PUNCH_START: return "PunchStart";
    case PUNCHLINE__ENVELOPE__BODY_CLOSE: return "Close";
    case PUNCHLINE__ENVELOPE__BODY_ERROR: return "Error";
    case PUNCHLINE__ENVELOPE__BODY_PROBE: return "Probe";
    case PUNCHLINE__ENVELOPE__BODY_DATA: return "Data";
    case PUNCHLINE__ENVELOPE__BODY_ACK: return "Ack";
    case PUNCHLINE__ENVELOPE__BODY_DATAGRAM: return "Datagram";
    case PUNCHLINE__ENVELOPE__BODY_RELAY_OPEN: return "RelayOpen";
    case PUNCHLINE__ENVELOPE__BODY_RELAY_READY: return "RelayReady";
    case PUNCHLINE__ENVELOPE__BODY_SERVER_HELLO: return "ServerHello";
    case PUNCHLINE__ENVELOPE__BODY_SECURE: return "Secure";
    default: return "unknown";
    }
}

void wire_relay_header(uint8_t *buf, uint64_t session_id)
{
    buf[0] = WIRE_RELAY_MARKER;
    for (int i = 0; i < 8; i++)
        buf[1 + i] = (uint8_t)(session_id >> (56 - 8 * i));
}

bool wire_relay_session(const uint8_t *buf, size_t len, uint64_t *session_id)
{
    if (len < WIRE_RELAY_HDR + 1 || buf[0] != WIRE_RELAY_MARKER)
        return false;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | buf[1 + i];
    *session_id = v;
    return true;
}

void wire_relay_mac(const uint8_t secret[WIRE_SECRET_LEN], uint64_t session_id, int role,
                    uint8_t out[WIRE_MAC_LEN])
{
    static const char label[] = "punchline relay-open v1";
    uint8_t m[sizeof(label) - 1 + 9];
    memcpy(m, label, sizeof(label) - 1);
    for (int i = 0; i < 8; i++)
        m[sizeof(label) - 1 + i] = (uint8_t)(session_id >> (56 - 8 * i));
    m[sizeof(m) - 1] = (uint8_t)role;
    crypto_hmac_sha256(secret, WIRE_SECRET_LEN, m, sizeof(m), out, WIRE_MAC_LEN);
}

void wire_secure_mac(const uint8_t secret[WIRE_SECRET_LEN], uint64_t session_id,
                     const uint8_t *dtls, size_t len, uint8_t out[WIRE_MAC_LEN])
{
    static const char label[] = "punchline secure v1";
    uint8_t buf[sizeof(label) - 1 + 8 + WIRE_UDP_MAX];
    size_t n = sizeof(label) - 1;
    memcpy(buf, label, n);
    for (int i = 7; i >= 0; i--)
        buf[n++] = (uint8_t)(session_id >> (8 * i));
    if (len > WIRE_UDP_MAX)
        len = WIRE_UDP_MAX; /* never: decoding bounds dtls */
    memcpy(buf + n, dtls, len);
    crypto_hmac_sha256(secret, WIRE_SECRET_LEN, buf, n + len, out, WIRE_MAC_LEN);
}

bool wire_secure_needs_mac(const uint8_t *dtls, size_t len)
{
    return len == 0 || dtls[0] != 23; /* anything but a DTLS application_data record */
}

int wire_secure_accept(const uint8_t secret[WIRE_SECRET_LEN], uint64_t session_id,
                       const struct Punchline__Secure *m, bool channel_open)
{
    if (m->session_id != session_id || !m->dtls.len)
        return WIRE_SECURE_DROP;
    if (channel_open && !wire_secure_needs_mac(m->dtls.data, m->dtls.len))
        return WIRE_SECURE_AEAD;
    uint8_t mac[WIRE_MAC_LEN];
    wire_secure_mac(secret, session_id, m->dtls.data, m->dtls.len, mac);
    return m->mac.len == WIRE_MAC_LEN && crypto_equal(mac, m->mac.data, WIRE_MAC_LEN)
               ? WIRE_SECURE_MACED
               : WIRE_SECURE_DROP;
}

size_t wire_register_sig_input(const uint8_t nonce[WIRE_NONCE_LEN], const char *name, uint8_t *out,
                               size_t cap)
{
    size_t nl = strlen(name), n = sizeof(REGISTER_SIG_LABEL) + WIRE_NONCE_LEN + nl;
    if (n > cap)
        return 0;
    memcpy(out, REGISTER_SIG_LABEL, sizeof(REGISTER_SIG_LABEL));
    memcpy(out + sizeof(REGISTER_SIG_LABEL), nonce, WIRE_NONCE_LEN);
    memcpy(out + sizeof(REGISTER_SIG_LABEL) + WIRE_NONCE_LEN, name, nl);
    return n;
}
