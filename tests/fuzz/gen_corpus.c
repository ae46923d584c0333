/* Writes the seed corpus of every fuzz target (tests/fuzz/corpus/<target>/):
 * one valid message of each kind, made with the real encoders, and the edge
 * cases each decoder must refuse (bounds +-1, wrong versions, non-canonical
 * encodings, truncations, bad lengths).  Seeds start the fuzzer from
 * meaningful inputs; the committed corpus is also what CTest replays.
 *
 *   fuzz-gen-corpus OUTDIR      (scripts/fuzz.sh --seeds runs it)
 *
 * Envelopes are encoded with the tree's WIRE_VERSION: regenerate after a
 * protocol change.  Data and Ack use only the fields every version of them
 * has (session_id, payload, fin). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "addr.h"
#include "frame.h"
#include "fuzz.h"
#include "identity.h"
#include "msg.h"
#include "secure.h"
#include "stun.h"
#include "token.h"
#include "wire.h"

static const char *outdir;

static void put(const char *target, const char *name, const void *buf, size_t len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", outdir, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void put_str(const char *target, const char *name, const char *s)
{
    put(target, name, s, strlen(s));
}

/* ---- envelopes: every kind, on every path that carries it --------------- */

static uint8_t zeros[2048], ones[2048];

/* One envelope's bytes on each path: TCP frame body, UDP datagram, relayed
 * datagram, a framed stream, and (for what peers send each other inside the
 * channel) the inner envelope. */
static void emit_bytes(const char *name, const uint8_t *b, size_t n, bool inner)
{
    uint8_t buf[FRAME_HEADER + FRAME_MAX + WIRE_RELAY_HDR + 2];
    put("envelope_tcp", name, b, n);
    if (inner)
        put("envelope_inner", name, b, n);
    if (n + 1 <= WIRE_UDP_MAX) {
        buf[0] = WIRE_UDP_MARKER;
        memcpy(buf + 1, b, n);
        put("envelope_udp", name, buf, n + 1);
        put("udp_demux", name, buf, n + 1);
        wire_relay_header(buf, 0x0123456789abcdefull);
        buf[WIRE_RELAY_HDR] = WIRE_UDP_MARKER;
        memcpy(buf + WIRE_RELAY_HDR + 1, b, n);
        put("relay_header", name, buf, WIRE_RELAY_HDR + 1 + n);
    }
    if (n <= FRAME_MAX) {
        buf[0] = 127; /* reads of 128 bytes, registered-connection limit */
        frame_put_header(buf + 1, (uint32_t)n);
        memcpy(buf + 1 + FRAME_HEADER, b, n);
        put("frame", name, buf, 1 + FRAME_HEADER + n);
    }
}

static void emit(const char *name, Punchline__Envelope *e, bool inner)
{
    static uint8_t b[FRAME_MAX * 2];
    int n = wire_encode(e, b, sizeof(b));
    if (n < 0) {
        fprintf(stderr, "%s: does not encode\n", name);
        exit(1);
    }
    emit_bytes(name, b, (size_t)n, inner);
}

static Punchline__Envelope env_of(Punchline__Envelope__BodyCase c, void *body)
{
    Punchline__Envelope e = PUNCHLINE__ENVELOPE__INIT;
    e.body_case = c;
    e.register_ = body; /* the body is a union: any member sets it */
    return e;
}

static uint8_t ip4[4] = {192, 0, 2, 7}, ip6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 9},
               ip4mapped[16] = {[10] = 0xff, [11] = 0xff, 10, 0, 0, 1};

static Punchline__Endpoint endpoint(uint8_t *ip, size_t iplen, uint32_t port)
{
    Punchline__Endpoint ep = PUNCHLINE__ENDPOINT__INIT;
    ep.ip.data = ip;
    ep.ip.len = iplen;
    ep.port = port;
    return ep;
}

static void envelopes(void)
{
    memset(ones, 0x41, sizeof(ones));
    Punchline__Envelope e;

    /* Register: IPv4/IPv6/mapped candidates up to the bound of 16 */
    Punchline__Endpoint eps[40];
    Punchline__Candidate cands[40], *cp[40];
    for (int i = 0; i < 40; i++) {
        eps[i] = i % 3 == 0   ? endpoint(ip4, 4, 4000 + i)
                 : i % 3 == 1 ? endpoint(ip6, 16, 65535 - i)
                              : endpoint(ip4mapped, 16, 1 + i);
        punchline__candidate__init(&cands[i]);
        cands[i].kind = (Punchline__CandidateKind)(i % 5);
        cands[i].transport = (Punchline__Transport)(1 + i % 2);
        cands[i].endpoint = &eps[i];
        cp[i] = &cands[i];
    }
    Punchline__Register reg = PUNCHLINE__REGISTER__INIT;
    reg.name = "alice";
    reg.client_version = "punchline/0.1.0";
    reg.public_key.data = ones;
    reg.public_key.len = 91;
    reg.signature.data = ones;
    reg.signature.len = 72;
    reg.candidates = cp;
    reg.n_candidates = 3;
    e = env_of(PUNCHLINE__ENVELOPE__BODY_REGISTER, &reg);
    emit("register", &e, false);
    reg.n_candidates = WIRE_MAX_HOST_CANDIDATES;
    reg.token = "1700003600.00112233445566778899aabbccddeeff";
    emit("register_16_candidates_token", &e, false);
    reg.n_candidates = WIRE_MAX_HOST_CANDIDATES + 1;
    emit("register_17_candidates", &e, false);
    reg.n_candidates = 0;
    reg.public_key.len = WIRE_MAX_KEY + 1;
    emit("register_key_too_long", &e, false);
    reg.public_key.len = 91;
    reg.signature.len = WIRE_MAX_SIG + 1;
    emit("register_sig_too_long", &e, false);
    reg.signature.len = 72;
    reg.name = "bad name\x1b[2J";
    emit("register_bad_name", &e, false);

    /* RegisterResult, Keepalive, UdpBind, UdpBound */
    Punchline__Endpoint tcp_ep = endpoint(ip6, 16, 443);
    Punchline__RegisterResult rr = PUNCHLINE__REGISTER_RESULT__INIT;
    rr.observed_tcp = &tcp_ep;
    rr.udp_token = 0xfeedfacecafebeefull;
    rr.keepalive_ms = 15000;
    rr.expiry_ms = 45000;
    rr.server_version = "punchline/0.1.0";
    e = env_of(PUNCHLINE__ENVELOPE__BODY_REGISTER_RESULT, &rr);
    emit("register_result", &e, false);
    Punchline__Endpoint bad_ep = endpoint(ip6, 5, 443);
    rr.observed_tcp = &bad_ep;
    emit("register_result_ip_len_5", &e, false);

    Punchline__Keepalive ka = PUNCHLINE__KEEPALIVE__INIT;
    ka.now_ms = 123456789;
    e = env_of(PUNCHLINE__ENVELOPE__BODY_KEEPALIVE, &ka);
    emit("keepalive", &e, true);

    uint8_t ub[WIRE_UDP_MAX];
    int n = wire_encode_udp_bind(0xfeedfacecafebeefull, 0x1122334455667788ull, ub, sizeof(ub));
    emit_bytes("udp_bind_padded", ub + 1, (size_t)n - 1, false);
    Punchline__UdpBind bind = PUNCHLINE__UDP_BIND__INIT;
    bind.padding.data = zeros;
    bind.padding.len = WIRE_MAX_PADDING + 1;
    e = env_of(PUNCHLINE__ENVELOPE__BODY_UDP_BIND, &bind);
    emit("udp_bind_padding_65", &e, false);

    Punchline__Endpoint udp_ep = endpoint(ip4, 4, 65535);
    Punchline__UdpBound bound = PUNCHLINE__UDP_BOUND__INIT;
    bound.observed_udp = &udp_ep;
    bound.challenge = 42;
    e = env_of(PUNCHLINE__ENVELOPE__BODY_UDP_BOUND, &bound);
    emit("udp_bound", &e, false);
    Punchline__Endpoint port0 = endpoint(ip4, 4, 0), port_big = endpoint(ip4, 4, 65536);
    bound.observed_udp = &port0;
    emit("udp_bound_port_0", &e, false);
    bound.observed_udp = &port_big;
    emit("udp_bound_port_65536", &e, false);
    bound.observed_udp = NULL;
    emit("udp_bound_no_endpoint", &e, false);

    /* ConnectRequest, IncomingConnection, Candidates, PunchStart */
    Punchline__ConnectRequest cr = PUNCHLINE__CONNECT_REQUEST__INIT;
    cr.peer_name = "bob";
    cr.request_id = 7;
    cr.transport = PUNCHLINE__TRANSPORT__TRANSPORT_RELAY;
    e = env_of(PUNCHLINE__ENVELOPE__BODY_CONNECT_REQUEST, &cr);
    emit("connect_request", &e, false);

    Punchline__IncomingConnection inc = PUNCHLINE__INCOMING_CONNECTION__INIT;
    inc.session_id = 0x0123456789abcdefull;
    inc.peer_name = "Carol_2.x-y";
    e = env_of(PUNCHLINE__ENVELOPE__BODY_INCOMING, &inc);
    emit("incoming", &e, false);

    Punchline__Candidates cs = PUNCHLINE__CANDIDATES__INIT;
    cs.session_id = 0x0123456789abcdefull;
    cs.peer_name = "bob";
    cs.candidates = cp;
    cs.n_candidates = WIRE_MAX_CANDIDATES;
    cs.request_id = 7;
    e = env_of(PUNCHLINE__ENVELOPE__BODY_CANDIDATES, &cs);
    emit("candidates_32", &e, false);
    cs.n_candidates = WIRE_MAX_CANDIDATES + 1;
    emit("candidates_33", &e, false);

    Punchline__PunchStart ps = PUNCHLINE__PUNCH_START__INIT;
    ps.session_id = 0x0123456789abcdefull;
    ps.peer_name = "bob";
    ps.secret.data = ones;
    ps.secret.len = WIRE_SECRET_LEN;
    ps.role = PUNCHLINE__ROLE__CONTROLLED;
    ps.request_id = 7;
    ps.transport = PUNCHLINE__TRANSPORT__UDP;
    ps.peer_key_hash.data = ones;
    ps.peer_key_hash.len = WIRE_KEY_HASH_LEN;
    e = env_of(PUNCHLINE__ENVELOPE__BODY_PUNCH_START, &ps);
    emit("punch_start", &e, false);
    ps.role = PUNCHLINE__ROLE__ROLE_UNKNOWN;
    emit("punch_start_no_role", &e, false);

    /* Close, Error, Probe, RelayOpen, RelayReady, ServerHello, Secure */
    char text[WIRE_MAX_TEXT + 2];
    memset(text, 'x', sizeof(text));
    text[WIRE_MAX_TEXT] = 0;
    Punchline__Close cl = PUNCHLINE__CLOSE__INIT;
    cl.session_id = 0x0123456789abcdefull;
    cl.reason = "bye";
    e = env_of(PUNCHLINE__ENVELOPE__BODY_CLOSE, &cl);
    emit("close", &e, true);
    cl.reason = text;
    emit("close_reason_256", &e, true);
    text[WIRE_MAX_TEXT] = 'x';
    text[WIRE_MAX_TEXT + 1] = 0;
    emit("close_reason_257", &e, true);

    Punchline__Error er = PUNCHLINE__ERROR__INIT;
    er.code = PUNCHLINE__ERROR_CODE__AUTH_FAILED;
    er.text = "bad token";
    er.request_id = 7;
    er.session_id = 1;
    e = env_of(PUNCHLINE__ENVELOPE__BODY_ERROR, &er);
    emit("error", &e, false);
    er.code = (Punchline__ErrorCode)-1;
    emit("error_code_negative", &e, false);

    Punchline__Endpoint mapped = endpoint(ip4mapped, 16, 3478);
    Punchline__Probe pr = PUNCHLINE__PROBE__INIT;
    pr.session_id = 0x0123456789abcdefull;
    pr.tid = 99;
    pr.response = true;
    pr.nominate = true;
    pr.role = PUNCHLINE__ROLE__CONTROLLING;
    pr.mapped = &mapped;
    pr.mac.data = ones;
    pr.mac.len = WIRE_MAC_LEN;
    e = env_of(PUNCHLINE__ENVELOPE__BODY_PROBE, &pr);
    emit("probe", &e, false);
    pr.mac.len = WIRE_MAC_LEN - 1;
    emit("probe_mac_15", &e, false);

    Punchline__RelayOpen ro = PUNCHLINE__RELAY_OPEN__INIT;
    ro.session_id = 0x0123456789abcdefull;
    ro.role = PUNCHLINE__ROLE__CONTROLLED;
    ro.mac.data = ones;
    ro.mac.len = WIRE_MAC_LEN;
    e = env_of(PUNCHLINE__ENVELOPE__BODY_RELAY_OPEN, &ro);
    emit("relay_open", &e, false);

    Punchline__RelayReady rready = PUNCHLINE__RELAY_READY__INIT;
    rready.session_id = 0x0123456789abcdefull;
    e = env_of(PUNCHLINE__ENVELOPE__BODY_RELAY_READY, &rready);
    emit("relay_ready", &e, false);

    Punchline__ServerHello sh = PUNCHLINE__SERVER_HELLO__INIT;
    sh.nonce.data = ones;
    sh.nonce.len = WIRE_NONCE_LEN;
    sh.server_version = "punchline/0.1.0";
    sh.token_required = true;
    sh.tls_available = true;
    e = env_of(PUNCHLINE__ENVELOPE__BODY_SERVER_HELLO, &sh);
    emit("server_hello", &e, false);

    static uint8_t dtls[WIRE_UDP_MAX + 1];
    dtls[0] = 22; /* handshake */
    dtls[1] = 0xfe;
    dtls[2] = 0xfd;
    Punchline__Secure sec = PUNCHLINE__SECURE__INIT;
    sec.session_id = 0x0123456789abcdefull;
    sec.dtls.data = dtls;
    sec.dtls.len = 120;
    sec.mac.data = ones;
    sec.mac.len = WIRE_MAC_LEN;
    e = env_of(PUNCHLINE__ENVELOPE__BODY_SECURE, &sec);
    emit("secure_handshake", &e, false);
    dtls[0] = 23; /* application data: no MAC */
    sec.mac.len = 0;
    emit("secure_appdata", &e, false);
    sec.dtls.len = WIRE_UDP_MAX + 1;
    emit("secure_dtls_1401", &e, false);

    /* Data and Ack: the fields every protocol version of them has */
    Punchline__Data d = PUNCHLINE__DATA__INIT;
    d.session_id = 0x0123456789abcdefull;
    d.payload.data = ones;
    d.payload.len = 5;
    e = env_of(PUNCHLINE__ENVELOPE__BODY_DATA, &d);
    emit("data", &e, true);
    d.payload.len = WIRE_MAX_PAYLOAD;
    emit("data_max_payload", &e, true);
    d.payload.len = WIRE_MAX_PAYLOAD + 1;
    emit("data_payload_too_long", &e, true);
    d.payload.len = 0;
    d.fin = true;
    emit("data_fin", &e, true);
    Punchline__Ack ack = PUNCHLINE__ACK__INIT;
    ack.session_id = 0x0123456789abcdefull;
    e = env_of(PUNCHLINE__ENVELOPE__BODY_ACK, &ack);
    emit("ack", &e, true);

    /* versions: none, no body, a later one, a zero one with a body */
    Punchline__Envelope bare = PUNCHLINE__ENVELOPE__INIT;
    emit("version_only_no_body", &bare, true);
    emit_bytes("empty", zeros, 0, true);
    uint8_t raw[64];
    raw[0] = 0x08; /* field 1 varint: version */
    raw[1] = WIRE_VERSION + 1;
    raw[2] = 0x62; /* field 12 (keepalive), length 0 */
    raw[3] = 0;
    emit_bytes("next_version_keepalive", raw, 4, true);
    raw[1] = 0;
    emit_bytes("version_0_keepalive", raw, 4, true);

    /* non-canonical encodings of a valid Keepalive: fields out of order,
     * repeated, a padded varint, an unknown field */
    raw[0] = 0x62;
    raw[1] = 0;
    raw[2] = 0x08;
    raw[3] = WIRE_VERSION;
    emit_bytes("reordered_fields", raw, 4, true);
    raw[0] = 0x08;
    raw[1] = WIRE_VERSION;
    raw[2] = 0x08;
    raw[3] = WIRE_VERSION;
    raw[4] = 0x62;
    raw[5] = 0;
    emit_bytes("repeated_version", raw, 6, true);
    raw[0] = 0x08;
    raw[1] = 0x80 | WIRE_VERSION;
    raw[2] = 0x00;
    raw[3] = 0x62;
    raw[4] = 0;
    emit_bytes("padded_varint", raw, 5, true);
    raw[0] = 0x08;
    raw[1] = WIRE_VERSION;
    raw[2] = 0x62;
    raw[3] = 0;
    raw[4] = 0xf8; /* field 1023, varint */
    raw[5] = 0x3f;
    raw[6] = 0x01;
    emit_bytes("unknown_field", raw, 7, true);

    /* a string with an embedded NUL: ConnectRequest{peer_name "bob\0x"} */
    cr.peer_name = "bobxx";
    e = env_of(PUNCHLINE__ENVELOPE__BODY_CONNECT_REQUEST, &cr);
    n = wire_encode(&e, raw, sizeof(raw));
    for (int i = 0; i + 1 < n; i++)
        if (raw[i] == 'x' && raw[i + 1] == 'x') {
            raw[i] = 0;
            break;
        }
    emit_bytes("string_embedded_nul", raw, (size_t)n, false);

    /* truncated: a Register cut short */
    static uint8_t big[FRAME_MAX * 2];
    reg.n_candidates = 4;
    reg.name = "alice";
    reg.signature.len = 72;
    e = env_of(PUNCHLINE__ENVELOPE__BODY_REGISTER, &reg);
    n = wire_encode(&e, big, sizeof(big));
    emit_bytes("register_truncated", big, (size_t)n / 2, false);
}

/* ---- TCP streams: several frames, odd read sizes, bad length prefixes --- */

static void frames(void)
{
    static uint8_t s[FRAME_MAX];
    size_t off = 1;
    Punchline__Keepalive ka = PUNCHLINE__KEEPALIVE__INIT;
    Punchline__Envelope e = env_of(PUNCHLINE__ENVELOPE__BODY_KEEPALIVE, &ka);
    Punchline__ConnectRequest cr = PUNCHLINE__CONNECT_REQUEST__INIT;
    cr.peer_name = "bob";
    Punchline__Envelope e2 = env_of(PUNCHLINE__ENVELOPE__BODY_CONNECT_REQUEST, &cr);
    for (int i = 0; i < 4; i++) {
        int n = wire_encode(i % 2 ? &e2 : &e, s + off + FRAME_HEADER, 256);
        frame_put_header(s + off, (uint32_t)n);
        off += FRAME_HEADER + (size_t)n;
    }
    s[0] = 0; /* one-byte reads */
    put("frame", "four_frames_1_byte_reads", s, off);
    s[0] = 2; /* three-byte reads: headers split */
    put("frame", "four_frames_3_byte_reads", s, off);
    frame_put_header(s + off, 0);
    s[0] = 127;
    put("frame", "then_empty_frame", s, off + FRAME_HEADER);
    frame_put_header(s + off, FRAME_MAX + 1);
    put("frame", "then_too_big", s, off + FRAME_HEADER);
    s[0] = 0x80 | 15; /* unregistered: at most 4096 bytes a frame */
    frame_put_header(s + off, 4097);
    put("frame", "unregistered_4097", s, off + FRAME_HEADER);
    frame_put_header(s + off, 4096);
    memset(s + off + FRAME_HEADER, 0, 4096);
    put("frame", "unregistered_4096", s, off + FRAME_HEADER + 4096);
    s[0] = 127;
    frame_put_header(s + off, FRAME_MAX);
    memset(s + off + FRAME_HEADER, 0, 100);
    put("frame", "then_max_frame_cut_short", s, off + FRAME_HEADER + 100);
    put("frame", "header_cut", s, 3);
}

/* ---- STUN ---------------------------------------------------------------- */

static void stun(void)
{
    static const uint8_t tid[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    uint8_t b[512], r[512];
    size_t n = stun_binding_request(tid, b, sizeof(b));
    put("stun", "binding_request_fingerprint", b, n);
    put("udp_demux", "stun_binding_request_fingerprint", b, n);
    b[n - 1] ^= 1;
    put("stun", "bad_fingerprint", b, n);
    /* no FINGERPRINT: header only */
    b[2] = 0;
    b[3] = 0;
    put("stun", "binding_request_bare", b, STUN_HEADER);
    put("udp_demux", "stun_binding_request_bare", b, STUN_HEADER);

    stun_msg req;
    n = stun_binding_request(tid, b, sizeof(b));
    if (stun_parse(b, n, &req) != STUN_OK)
        exit(1);
    netaddr a;
    netaddr_parse("198.51.100.4:40000", &a, false);
    put("stun", "success_ipv4", r, stun_binding_success(&req, &a, r, sizeof(r)));
    netaddr_parse("[2001:db8::4]:40000", &a, false);
    put("stun", "success_ipv6", r, stun_binding_success(&req, &a, r, sizeof(r)));

    /* attributes: unknown required ones (420), USERNAME, SOFTWARE,
     * MESSAGE-INTEGRITY then more, a misplaced FINGERPRINT, an overrun */
    static const uint8_t attrs[] = {
        0x00, 0x03, 0x00, 0x04, 0, 0, 0, 0,          /* CHANGE-REQUEST: unknown */
        0x00, 0x2a, 0x00, 0x01, 0x55, 0, 0, 0,       /* 0x002A, padded */
        0x00, 0x06, 0x00, 0x05, 'a', 'l', 'i', 'c', 'e', 0, 0, 0, /* USERNAME */
        0x80, 0x22, 0x00, 0x03, 'p', 'l', '1', 0,    /* SOFTWARE */
        0x00, 0x08, 0x00, 0x14, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
        20,                                          /* MESSAGE-INTEGRITY */
        0x00, 0x20, 0x00, 0x08, 0, 1, 0, 0, 0, 0, 0, 0, /* XOR-MAPPED after it: ignored */
    };
    memcpy(b + STUN_HEADER, attrs, sizeof(attrs));
    b[2] = 0;
    b[3] = (uint8_t)sizeof(attrs);
    put("stun", "attributes", b, STUN_HEADER + sizeof(attrs));
    put("udp_demux", "stun_attributes", b, STUN_HEADER + sizeof(attrs));
    b[3] = 8;
    put("stun", "unknown_required", b, STUN_HEADER + 8);
    if (stun_parse(b, STUN_HEADER + 8, &req) == STUN_OK)
        put("stun", "error_420", r, stun_binding_error(&req, 420, "Unknown Attribute", r, sizeof(r)));
    b[STUN_HEADER + 3] = 0x40; /* attribute longer than the message */
    put("stun", "attribute_overrun", b, STUN_HEADER + 8);
    b[3] = 6;
    put("stun", "length_not_multiple_of_4", b, STUN_HEADER + 6);
    /* FINGERPRINT followed by another attribute */
    n = stun_binding_request(tid, b, sizeof(b));
    memcpy(b + n, "\x80\x22\x00\x00", 4);
    b[3] += 4;
    put("stun", "fingerprint_not_last", b, n + 4);
}

/* ---- the rest of the UDP demultiplexer and the relay header ------------- */

static void udp(void)
{
    uint8_t b[64] = {22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 3, 1, 2, 3};
    put("udp_demux", "dtls_record", b, 16);
    b[0] = 0x40;
    put("udp_demux", "unknown_first_byte", b, 16);
    wire_relay_header(b, 1);
    put("udp_demux", "relay_header_only", b, WIRE_RELAY_HDR);
    put("relay_header", "header_only", b, WIRE_RELAY_HDR);
    b[WIRE_RELAY_HDR] = WIRE_UDP_MARKER;
    put("relay_header", "marker_only", b, WIRE_RELAY_HDR + 1);
    b[WIRE_RELAY_HDR] = 22;
    put("udp_demux", "relay_of_dtls", b, WIRE_RELAY_HDR + 1);
}

/* ---- names, peer ids, tokens, chat text --------------------------------- */

static void names(void)
{
    char s[80];
    put_str("names", "alice", "alice");
    put_str("names", "all_classes", "Az09._-");
    memset(s, 'a', sizeof(s));
    put("names", "63", s, 63);
    put("names", "64", s, 64);
    put("names", "empty", s, 0);
    put_str("names", "space", "bad name");
    put("names", "embedded_nul", "ab\0cd", 5);
    put_str("names", "non_ascii", "al\xc3\xa9");
    put_str("names", "control", "a\x1b[2J");
}

static void peer_ids(void)
{
    uint8_t hash[ID_HASH_LEN];
    char id[ID_TEXT_LEN + 2];
    identity_hash_pub((const uint8_t *)"fuzz", 4, hash);
    put("peer_id", "hash_bytes", hash, sizeof(hash));
    identity_format_id(hash, id);
    put_str("peer_id", "id", id);
    for (int i = 0; i < ID_TEXT_LEN; i++)
        if (id[i] >= 'a' && id[i] <= 'z' && i % 2)
            id[i] = (char)(id[i] - 'a' + 'A');
    put_str("peer_id", "mixed_case", id);
    put("peer_id", "51_chars", id, ID_TEXT_LEN - 1);
    id[ID_TEXT_LEN] = 'a';
    id[ID_TEXT_LEN + 1] = 0;
    put_str("peer_id", "53_chars", id);
    id[ID_TEXT_LEN] = 0;
    id[ID_TEXT_LEN - 1] = 'b'; /* trailing bits not zero */
    put_str("peer_id", "trailing_bits", id);
    id[0] = '1';
    put_str("peer_id", "bad_char", id);
}

static void tokens(void)
{
    static const uint8_t secret[] = FUZZ_TOKEN_SECRET;
    char t[TOKEN_MAX_LEN + 1], b[256];
    struct {
        const char *name;
        uint64_t expiry;
        const char *file;
    } ok[] = {{"alice", FUZZ_TOKEN_NOW + 3600, "valid"},
              {"alice", FUZZ_TOKEN_NOW - 1, "expired"},
              {"b", UINT64_MAX, "max_expiry"}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        token_mint(secret, sizeof(secret) - 1, ok[i].name, ok[i].expiry, t, sizeof(t));
        int n = snprintf(b, sizeof(b), "%s%c%s", ok[i].name, 0, t);
        put("token", ok[i].file, b, (size_t)n);
    }
    token_mint(secret, sizeof(secret) - 1, "alice", FUZZ_TOKEN_NOW + 3600, t, sizeof(t));
    int n = snprintf(b, sizeof(b), "%s%c%s", "bob", 0, t);
    put("token", "other_name", b, (size_t)n);
    n = snprintf(b, sizeof(b), "%s%c0%s", "alice", 0, t);
    put("token", "leading_zero", b, (size_t)n);
    n = snprintf(b, sizeof(b), "%s%c%sa", "alice", 0, t);
    put("token", "trailing_char", b, (size_t)n);
    n = snprintf(b, sizeof(b), "%s%c123456789012345678901.%s", "alice", 0,
                 "00112233445566778899aabbccddeeff");
    put("token", "21_digits", b, (size_t)n);
    n = snprintf(b, sizeof(b), "%s%c17.00112233445566778899AABBCCDDEEFF", "alice", 0);
    put("token", "upper_hex", b, (size_t)n);
    put("token", "no_token", "alice", 5);
}

static void chat_text(void)
{
    put_str("chat_text", "plain", "hello, world");
    put_str("chat_text", "utf8", "h\xc3\xa9llo \xe2\x82\xac");
    put_str("chat_text", "csi_clear", "\x1b[2J\x1b[H");
    put_str("chat_text", "c1_csi", "\xc2\x9b" "31mred");
    put_str("chat_text", "c2_at_end", "abc\xc2");
    put_str("chat_text", "c2_c2_c1", "\xc2\xc2\x85");
    put("chat_text", "nul_tab_del", "a\0b\tc\x7f", 6);
}

/* punchline-share messages: each type, then bounds and bad names */
static void share(void)
{
    uint8_t b[1024], hash[SM_HASH_LEN];
    memset(hash, 0xab, sizeof(hash));
    size_t n = sm_encode_offer(b, sizeof(b), 123456789, "report.pdf", 10);
    put("share_msg", "offer", b, n);
    b[1] = SM_VERSION + 1;
    put("share_msg", "offer_next_version", b, n);
    b[n] = '!';
    put("share_msg", "offer_trailing_byte", b, n + 1);
    put("share_msg", "offer_cut", b, n - 1);
    static const struct {
        const char *file, *name;
    } names[] = {{"name_dot", "."},
                 {"name_dotdot", ".."},
                 {"name_slash", "a/b"},
                 {"name_backslash", "a\\b"},
                 {"name_bidi", "cod\xe2\x80\xaetxt.exe"},
                 {"name_c1", "a\xc2\x9b"},
                 {"name_overlong_slash", "a\xc0\xaf"},
                 {"name_surrogate", "\xed\xa0\x80"},
                 {"name_above_10ffff", "\xf4\x90\x80\x80"},
                 {"name_part_suffix", "x" SM_PART_SUFFIX},
                 {"name_utf8_ok", "r\xc3\xa9sum\xc3\xa9 \xf0\x9f\x93\x84.txt"}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        n = sm_encode_offer(b, sizeof(b), 1, names[i].name, strlen(names[i].name));
        put("share_msg", names[i].file, b, n);
    }
    char longname[SM_MAX_NAME + 1];
    memset(longname, 'n', sizeof(longname));
    n = sm_encode_offer(b, sizeof(b), 0, longname, SM_MAX_NAME);
    put("share_msg", "offer_name_200", b, n);
    b[11] = SM_MAX_NAME + 1; /* name_len 201, one more byte */
    b[n] = 'n';
    put("share_msg", "offer_name_201", b, n + 1);
    n = sm_encode_offer(b, sizeof(b), 0, "a", 1);
    memset(b + 2, 0xff, 8); /* size above INT64_MAX */
    put("share_msg", "offer_size_huge", b, n);
    put("share_msg", "accept", b, sm_encode_accept(b, sizeof(b), 1u << 20, hash));
    put("share_msg", "error", b, sm_encode_error(b, sizeof(b), SM_R_EXISTS, "exists\x1b[2J"));
    char text[SM_MAX_TEXT + 1];
    memset(text, 't', SM_MAX_TEXT);
    text[SM_MAX_TEXT] = 0;
    n = sm_encode_error(b, sizeof(b), 200, text);
    put("share_msg", "error_text_200_unknown_reason", b, n);
    b[3] = SM_MAX_TEXT + 1;
    b[n] = 't';
    put("share_msg", "error_text_201", b, n + 1);
    put("share_msg", "start", b, sm_encode_start(b, sizeof(b), 4096));
    b[0] = SM_DATA;
    memset(b + 1, 0x5a, 100);
    put("share_msg", "data", b, 101);
    put("share_msg", "data_empty", b, 1);
    put("share_msg", "done", b, sm_encode_done(b, sizeof(b), hash));
    n = sm_encode_verdict(b, sizeof(b), true, hash);
    put("share_msg", "verdict", b, n);
    b[1] = 2;
    put("share_msg", "verdict_ok_2", b, n);
    b[0] = 0;
    put("share_msg", "type_0", b, 1);
    b[0] = SM_VERDICT + 1;
    put("share_msg", "type_8", b, 1);
}

/* ---- stream scripts (fuzz_stream.c): our sends, the peer's Data/Ack ---- */

#define SID 0x0123456789abcdefull

typedef struct script {
    uint8_t b[4096];
    size_t n;
} script;

static void op_env(script *s, Punchline__Envelope *e)
{
    int n = wire_encode(e, s->b + s->n + 3, sizeof(s->b) - s->n - 3);
    if (n < 0)
        exit(1);
    s->b[s->n] = 0;
    s->b[s->n + 1] = (uint8_t)(n >> 8);
    s->b[s->n + 2] = (uint8_t)n;
    s->n += 3 + (size_t)n;
}

static void op_data(script *s, uint64_t pn, uint64_t offset, const void *p, size_t len, bool fin)
{
    Punchline__Data d = PUNCHLINE__DATA__INIT;
    d.session_id = SID;
    d.pn = pn;
    d.offset = offset;
    d.payload.data = (uint8_t *)p;
    d.payload.len = len;
    d.fin = fin;
    Punchline__Envelope e = env_of(PUNCHLINE__ENVELOPE__BODY_DATA, &d);
    op_env(s, &e);
}

static void op_ack(script *s, uint64_t pn_next, uint64_t first, uint64_t *ranges, size_t nr,
                   uint64_t stream_next, bool fin)
{
    Punchline__Ack a = PUNCHLINE__ACK__INIT;
    a.session_id = SID;
    a.pn_next = pn_next;
    a.first_range = first;
    a.ranges = ranges;
    a.n_ranges = nr;
    a.stream_next = stream_next;
    a.max_offset = 1u << 20;
    a.fin_received = fin;
    Punchline__Envelope e = env_of(PUNCHLINE__ENVELOPE__BODY_ACK, &a);
    op_env(s, &e);
}

static void op2(script *s, uint8_t op, uint16_t arg)
{
    s->b[s->n++] = op;
    s->b[s->n++] = (uint8_t)(arg >> 8);
    s->b[s->n++] = (uint8_t)arg;
}

static void op1(script *s, uint8_t op, uint8_t x)
{
    s->b[s->n++] = op;
    s->b[s->n++] = x;
}

static void streams(void)
{
    script s = {0};
    op2(&s, 1, 100); /* send a 100-byte message */
    op2(&s, 2, 10);  /* it goes out as Data pn 0 */
    op_ack(&s, 1, 0, NULL, 0, 104, false);
    op2(&s, 2, 10);
    put("stream", "send_acked", s.b, s.n);

    s.n = 0;
    for (int i = 0; i < 4; i++)
        op2(&s, 1, 1000);
    op2(&s, 2, 10);
    uint64_t r[] = {1, 0};
    op_ack(&s, 4, 0, r, 2, 0, false); /* pn 3 and 1: 0 and 2 missing */
    op2(&s, 2, 400);                  /* loss by time */
    op2(&s, 2, 60000);                /* probe timeout */
    put("stream", "send_ack_ranges_loss", s.b, s.n);

    s.n = 0;
    static const uint8_t hello[] = {0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o', 0, 0, 0, 2, 'h', 'i'};
    op_data(&s, 1, 9, hello + 9, 6, true); /* second message first, with FIN */
    op_data(&s, 0, 0, hello, 9, false);
    op2(&s, 2, 100);
    op_data(&s, 0, 0, hello, 9, false); /* duplicate */
    put("stream", "receive_out_of_order_fin", s.b, s.n);

    s.n = 0;
    op1(&s, 4, 0); /* pause */
    op_data(&s, 0, 0, hello, 15, false);
    op2(&s, 2, 100);
    op1(&s, 4, 1); /* resume */
    op1(&s, 4, 2); /* path switch */
    op2(&s, 1, 50);
    op1(&s, 4, 3); /* force ack */
    op2(&s, 2, 1);
    s.b[s.n++] = 3; /* shutdown */
    op2(&s, 2, 1);
    op_ack(&s, 2, 1, NULL, 0, 54, true);
    put("stream", "pause_switch_shutdown", s.b, s.n);

    s.n = 0;
    op2(&s, 1, 10);
    op2(&s, 2, 1);
    op_ack(&s, 1000, 999, NULL, 0, UINT64_MAX, true); /* acks what was never sent */
    op_data(&s, 0, (1ull << 62) - 2, hello, 4, true);  /* at the end of the offset space */
    op2(&s, 2, 1);
    put("stream", "hostile_ack_and_offset", s.b, s.n);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    outdir = argv[1];
    if (mkdir(outdir, 0755) != 0 && errno != EEXIST) {
        perror(outdir);
        return 1;
    }
    envelopes();
    frames();
    stun();
    udp();
    names();
    peer_ids();
    tokens();
    chat_text();
    share();
    streams();
    return 0;
}
