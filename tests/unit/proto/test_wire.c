/* Unit tests for proto/wire.c (message layer) and proto/names.c.
 *
 * Rules checked: first-byte demultiplexing per RFC 7983 s7, the version
 * check, "wire input is hostile" (ARCHITECTURE.md rule 4: every repeated field
 * and every length bounded, see proto/punchline.proto), forward
 * compatibility (unknown fields next to a known body are skipped, as
 * protobuf requires), and the peer-name alphabet.
 *
 * Invalid messages are built with the protobuf-c structs and packed directly
 * (punchline__envelope__pack), or written byte by byte with the tiny encoder
 * below, so that wire_encode() cannot fix the version or refuse them. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "secure.h"
#include "wire.h"

/* ---- helpers: a protobuf encoder for hand-made (hostile) bytes ----------- */

typedef struct pb {
    uint8_t b[4096];
    size_t n;
} pb;

static void pb_varint(pb *p, uint64_t v)
{
    do {
        uint8_t c = v & 0x7f;
        v >>= 7;
        p->b[p->n++] = (uint8_t)(c | (v ? 0x80 : 0));
    } while (v);
}

static void pb_tag(pb *p, uint32_t field, unsigned wiretype)
{
    pb_varint(p, (uint64_t)field << 3 | wiretype);
}

static void pb_uint(pb *p, uint32_t field, uint64_t v)
{
    pb_tag(p, field, 0);
    pb_varint(p, v);
}

static void pb_fixed64(pb *p, uint32_t field, uint64_t v)
{
    pb_tag(p, field, 1);
    for (int i = 0; i < 8; i++)
        p->b[p->n++] = (uint8_t)(v >> (8 * i));
}

static void pb_bytes(pb *p, uint32_t field, const void *data, size_t len)
{
    pb_tag(p, field, 2);
    pb_varint(p, len);
    memcpy(p->b + p->n, data, len);
    p->n += len;
}

/* Decode and release; returns the status and the reported version. */
static int decode(const uint8_t *buf, size_t len, uint32_t *version)
{
    Punchline__Envelope *e = (Punchline__Envelope *)1;
    uint32_t v = 12345;
    int rc = wire_decode(buf, len, &e, &v);
    if (rc == WIRE_OK) {
        cr_assert_not_null(e);
        cr_assert_eq(wire_validate(e), WIRE_OK, "decode must only return valid messages");
        wire_free(e);
    } else {
        cr_assert_null(e, "*out must be NULL on error");
    }
    if (version)
        *version = v;
    return rc;
}

/* ---- helpers: valid messages of every type, built from protobuf-c structs */

enum kind {
    K_REGISTER, K_REGISTER_RESULT, K_KEEPALIVE, K_UDP_BIND, K_UDP_BOUND, K_CONNECT_REQUEST,
    K_INCOMING, K_CANDIDATES, K_PUNCH_START, K_CLOSE, K_ERROR, K_PROBE, K_DATA, K_ACK, K_COUNT
};

#define FX_CANDS 40

typedef struct fixture {
    Punchline__Envelope env;
    Punchline__Register reg;
    Punchline__RegisterResult rr;
    Punchline__Keepalive ka;
    Punchline__UdpBind bind;
    Punchline__UdpBound bound;
    Punchline__ConnectRequest creq;
    Punchline__IncomingConnection inc;
    Punchline__Candidates cands;
    Punchline__PunchStart ps;
    Punchline__Close close;
    Punchline__Error err;
    Punchline__Probe probe;
    Punchline__Data data;
    Punchline__Ack ack;
    Punchline__Endpoint ep[FX_CANDS + 1]; /* ep[0]: single endpoints; ep[1+i]: candidate i */
    uint8_t ip[FX_CANDS + 1][16];
    Punchline__Candidate cand[FX_CANDS];
    Punchline__Candidate *candp[FX_CANDS];
    uint8_t bytes[2048]; /* secret / mac / payload / public key */
    uint64_t ranges[2 * WIRE_MAX_ACK_RANGES + 2]; /* Ack.ranges */
    char text[2048];     /* long strings */
} fixture;

static void fx_endpoint(fixture *f, size_t i, size_t iplen, uint32_t port)
{
    Punchline__Endpoint init = PUNCHLINE__ENDPOINT__INIT;
    f->ep[i] = init;
    for (size_t k = 0; k < 16; k++)
        f->ip[i][k] = (uint8_t)(k == 0 ? 192 : k == 1 ? 0 : k == 2 ? 2 : 1 + i + k);
    f->ep[i].ip.data = f->ip[i];
    f->ep[i].ip.len = iplen;
    f->ep[i].port = port;
}

static void fx_candidates(fixture *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        Punchline__Candidate init = PUNCHLINE__CANDIDATE__INIT;
        f->cand[i] = init;
        f->cand[i].kind = PUNCHLINE__CANDIDATE_KIND__HOST;
        f->cand[i].transport = PUNCHLINE__TRANSPORT__UDP;
        fx_endpoint(f, 1 + i, i % 2 ? 16 : 4, (uint32_t)(40000 + i));
        f->cand[i].endpoint = &f->ep[1 + i];
        f->candp[i] = &f->cand[i];
    }
}

static const char *fx_text(fixture *f, size_t len)
{
    memset(f->text, 't', len);
    f->text[len] = 0;
    return f->text;
}

/* Fill f with a valid envelope of the given kind, every field non-default. */
static void fx_build(fixture *f, int kind)
{
    memset(f, 0, sizeof(*f));
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    f->env = env;
    f->env.version = WIRE_VERSION;
    for (size_t i = 0; i < sizeof(f->bytes); i++)
        f->bytes[i] = (uint8_t)(i * 7 + 1);
    fx_endpoint(f, 0, 4, 3478);

    switch (kind) {
    case K_REGISTER: {
        Punchline__Register m = PUNCHLINE__REGISTER__INIT;
        f->reg = m;
        f->reg.name = "alice";
        f->reg.client_version = "punchline/0.1.0";
        fx_candidates(f, 2);
        f->reg.n_candidates = 2;
        f->reg.candidates = f->candp;
        f->env.body_case = PUNCHLINE__ENVELOPE__BODY_REGISTER;
        f->env.register_ = &f->reg;
        break;
    }
    case K_REGISTER_RESULT: {
        Punchline__RegisterResult m = PUNCHLINE__REGISTER_RESULT__INIT;
        f->rr = m;
        f->rr.observed_tcp = &f->ep[0];
        f->rr.udp_token = 0x1122334455667788ull;
        f->rr.keepalive_ms = 15000;
        f->rr.expiry_ms = 60000;
        f->rr.server_version = "punchline-rendezvous/0.1.0";
        f->env.body_case = PUNCHLINE__ENVELOPE__BODY_REGISTER_RESULT;
        f->env.register_result = &f->rr;
        break;
    }
    case K_KEEPALIVE: {
        Punchline__Keepalive m = PUNCHLINE__KEEPALIVE__INIT;
        f->ka = m;
        f->ka.now_ms = 123456789;
        f->env.body_case = PUNCHLINE__ENVELOPE__BODY_KEEPALIVE;
        f->env.keepalive = &f->ka;
        break;
    }
    case K_UDP_BIND: {
        Punchline__UdpBind m = PUNCHLINE__UDP_BIND__INIT;
        f->bind = m;
        f->bind.udp_token = 0xfedcba9876543210ull;
        f->env.body_case = PUNCHLINE__ENVELOPE__BODY_UDP_BIND;
        f->env.udp_bind = &f->bind;
        break;
    }
    case K_UDP_BOUND: {
        Punchline__UdpBound m = PUNCHLINE__UDP_BOUND__INIT;
        f->bound = m;
        f->bound.observed_udp = &f->ep[0];
        f->env.body_case = PUNCHLINE__ENVELOPE__BODY_UDP_BOUND;
        f->env.udp_bound = &f->bound;
        break;
    }
    case K_CONNECT_REQUEST: {
        Punchline__ConnectRequest m = PUNCHLINE__CONNECT_REQUEST__INIT;
        f->creq = m;
        f->creq.peer_name = "bob";
        f->creq.request_id = 77;
        f->creq.transport = PUNCHLINE__TRANSPORT__UDP;
        f->env.body_case = PUNCHLINE__ENVELOPE__BODY_CONNECT_REQUEST;
        f->env.connect_request = &f->creq;
        break;
    }
    case K_INCOMING: {
        Punchline__IncomingConnection m = PUNCHLINE__INCOMING_CONNECTION__INIT;
        f->inc = m;
        f->inc.session_id = 0x0102030405060708ull;
        f->inc.peer_name = "alice";
        f->env.body_case = PUNCHLINE__ENVELOPE__BODY_INCOMING;
        f->env.incoming = &f->inc;
        break;
    }
    case K_CANDIDATES: {
        Punchline__Candidates m = PUNCHLINE__CANDIDATES__INIT;
        f->cands = m;
        f->cands.session_id = 42;
        f->cands.peer_name = "bob";
        fx_candidates(f, 3);
        f->cands.n_candidates = 3;
        f->cands.candidates = f->candp;
        f->cands.request_id = 77;
        f->env.body_case = PUNCHLINE__ENVELOPE__BODY_CANDIDATES;
        f->env.candidates = &f->cands;
        break;
    }
    case K_PUNCH_START: {
        Punchline__PunchStart m = PUNCHLINE__PUNCH_START__INIT;
        f->ps = m;
        f->ps.session_id = 42;
        f->ps.peer_name = "bob";
        f->ps.secret.data = f->bytes;
        f->ps.secret.len = WIRE_SECRET_LEN;
        f->ps.role = PUNCHLINE__ROLE__CONTROLLING;
        f->ps.request_id = 77;
        f->env.body_case = PUNCHLINE__ENVELOPE__BODY_PUNCH_START;
        f->env.punch_start = &f->ps;
        break;
    }
    case K_CLOSE: {
        Punchline__Close m = PUNCHLINE__CLOSE__INIT;
        f->close = m;
        f->close.session_id = 42;
        f->close.reason = "bye";
        f->env.body_case = PUNCHLINE__ENVELOPE__BODY_CLOSE;
        f->env.close = &f->close;
        break;
    }
    case K_ERROR: {
        Punchline__Error m = PUNCHLINE__ERROR__INIT;
        f->err = m;
        f->err.code = PUNCHLINE__ERROR_CODE__NAME_IN_USE;
        f->err.text = "name in use";
        f->err.request_id = 3;
        f->err.session_id = 9;
        f->env.body_case = PUNCHLINE__ENVELOPE__BODY_ERROR;
        f->env.error = &f->err;
        break;
    }
    case K_PROBE: {
        Punchline__Probe m = PUNCHLINE__PROBE__INIT;
        f->probe = m;
        f->probe.session_id = 42;
        f->probe.tid = 0xdeadbeefcafef00dull;
        f->probe.response = 1;
        f->probe.nominate = 1;
        f->probe.role = PUNCHLINE__ROLE__CONTROLLED;
        f->probe.mapped = &f->ep[0];
        f->probe.mac.data = f->bytes;
        f->probe.mac.len = WIRE_MAC_LEN;
        f->env.body_case = PUNCHLINE__ENVELOPE__BODY_PROBE;
        f->env.probe = &f->probe;
        break;
    }
    case K_DATA: {
        Punchline__Data m = PUNCHLINE__DATA__INIT;
        f->data = m;
        f->data.session_id = 42;
        f->data.pn = 5;
        f->data.offset = 1000;
        f->data.payload.data = f->bytes;
        f->data.payload.len = 100;
        f->env.body_case = PUNCHLINE__ENVELOPE__BODY_DATA;
        f->env.data = &f->data;
        break;
    }
    case K_ACK: {
        Punchline__Ack m = PUNCHLINE__ACK__INIT;
        f->ack = m;
        f->ack.session_id = 42;
        f->ack.pn_next = 10;
        f->ack.first_range = 2;
        f->ack.ranges = f->ranges;
        f->ack.n_ranges = 2;
        f->ranges[0] = 1;
        f->ranges[1] = 3;
        f->ack.stream_next = 5000;
        f->ack.max_offset = 1u << 22;
        f->env.body_case = PUNCHLINE__ENVELOPE__BODY_ACK;
        f->env.ack = &f->ack;
        break;
    }
    default:
        cr_assert_fail("bad kind %d", kind);
    }
}

/* Pack exactly what is in f->env (whatever its version and bounds). */
static size_t fx_pack(const fixture *f, uint8_t *out, size_t cap)
{
    size_t n = punchline__envelope__get_packed_size(&f->env);
    cr_assert_leq(n, cap);
    cr_assert_eq(punchline__envelope__pack(&f->env, out), n);
    return n;
}

/* ---- wire_classify: RFC 7983 s7 first-byte demultiplexing --------------- */

struct classify_case {
    uint8_t first;
    int cls;
};

ParameterizedTestParameters(classify, first_byte)
{
    static struct classify_case cases[] = {
        {0, WIRE_CLASS_STUN},      {1, WIRE_CLASS_STUN},      {2, WIRE_CLASS_STUN},
        {3, WIRE_CLASS_STUN},      {4, WIRE_CLASS_UNKNOWN},   {16, WIRE_CLASS_UNKNOWN}, /* ZRTP */
        {19, WIRE_CLASS_UNKNOWN},  {20, WIRE_CLASS_DTLS},     {22, WIRE_CLASS_DTLS},    /* handshake */
        {23, WIRE_CLASS_DTLS},     {63, WIRE_CLASS_DTLS},     {64, WIRE_CLASS_UNKNOWN}, /* TURN channel */
        {79, WIRE_CLASS_UNKNOWN},  {0x0b, WIRE_CLASS_UNKNOWN}, {0x0c, WIRE_CLASS_PUNCHLINE},
        {0x0d, WIRE_CLASS_RELAY}, {0x0e, WIRE_CLASS_UNKNOWN},
        {0x50, WIRE_CLASS_UNKNOWN}, /* QUIC short header (RFC 9443) */
        {127, WIRE_CLASS_UNKNOWN}, {128, WIRE_CLASS_UNKNOWN}, /* RTP */
        {191, WIRE_CLASS_UNKNOWN}, {255, WIRE_CLASS_UNKNOWN},
    };
    return cr_make_param_array(struct classify_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct classify_case *c, classify, first_byte)
{
    uint8_t buf[4] = {c->first, 0xff, 0xff, 0xff};
    cr_assert_eq(wire_classify(buf, sizeof(buf)), c->cls, "first byte %u", c->first);
    cr_assert_eq(wire_classify(buf, 1), c->cls, "a one-byte datagram classifies too");
}

Test(classify, empty_datagram_is_unknown)
{
    uint8_t buf[1] = {WIRE_UDP_MARKER};
    cr_assert_eq(wire_classify(buf, 0), WIRE_CLASS_UNKNOWN, "len 0 must not read buf[0]");
}

/* ---- encode -> decode round trip for every message type ----------------- */

struct kind_case {
    int kind;
    int body_case;
    char name[24];
};

ParameterizedTestParameters(roundtrip, every_type)
{
    static struct kind_case cases[] = {
        {K_REGISTER, PUNCHLINE__ENVELOPE__BODY_REGISTER, "Register"},
        {K_REGISTER_RESULT, PUNCHLINE__ENVELOPE__BODY_REGISTER_RESULT, "RegisterResult"},
        {K_KEEPALIVE, PUNCHLINE__ENVELOPE__BODY_KEEPALIVE, "Keepalive"},
        {K_UDP_BIND, PUNCHLINE__ENVELOPE__BODY_UDP_BIND, "UdpBind"},
        {K_UDP_BOUND, PUNCHLINE__ENVELOPE__BODY_UDP_BOUND, "UdpBound"},
        {K_CONNECT_REQUEST, PUNCHLINE__ENVELOPE__BODY_CONNECT_REQUEST, "ConnectRequest"},
        {K_INCOMING, PUNCHLINE__ENVELOPE__BODY_INCOMING, "IncomingConnection"},
        {K_CANDIDATES, PUNCHLINE__ENVELOPE__BODY_CANDIDATES, "Candidates"},
        {K_PUNCH_START, PUNCHLINE__ENVELOPE__BODY_PUNCH_START, "PunchStart"},
        {K_CLOSE, PUNCHLINE__ENVELOPE__BODY_CLOSE, "Close"},
        {K_ERROR, PUNCHLINE__ENVELOPE__BODY_ERROR, "Error"},
        {K_PROBE, PUNCHLINE__ENVELOPE__BODY_PROBE, "Probe"},
        {K_DATA, PUNCHLINE__ENVELOPE__BODY_DATA, "Data"},
        {K_ACK, PUNCHLINE__ENVELOPE__BODY_ACK, "Ack"},
    };
    return cr_make_param_array(struct kind_case, cases, sizeof(cases) / sizeof(cases[0]));
}

/* Decoding what we encoded gives the same message: same body, and packing
 * the decoded struct again yields the same bytes (every field survived). */
ParameterizedTest(struct kind_case *c, roundtrip, every_type)
{
    fixture f;
    uint8_t a[WIRE_UDP_MAX], b[WIRE_UDP_MAX];
    fx_build(&f, c->kind);
    f.env.version = 7; /* wire_encode stamps our version */

    int n = wire_encode(&f.env, a, sizeof(a));
    cr_assert_gt(n, 0);
    cr_assert_eq(f.env.version, WIRE_VERSION);

    Punchline__Envelope *e = NULL;
    uint32_t version = 0;
    cr_assert_eq(wire_decode(a, (size_t)n, &e, &version), WIRE_OK, "%s", c->name);
    cr_assert_eq(version, WIRE_VERSION);
    cr_assert_eq((int)e->body_case, c->body_case);
    cr_assert_str_eq(wire_body_name(e), c->name);
    int m = wire_encode(e, b, sizeof(b));
    cr_assert_eq(m, n, "%s re-encodes to the same length", c->name);
    cr_assert_eq(memcmp(a, b, (size_t)n), 0, "%s re-encodes to the same bytes", c->name);
    wire_free(e);

    /* The UDP form: marker byte + the same bytes. */
    int u = wire_encode_udp(&f.env, b, sizeof(b));
    cr_assert_eq(u, n + 1);
    cr_assert_eq(b[0], WIRE_UDP_MARKER);
    cr_assert_eq(memcmp(a, b + 1, (size_t)n), 0);
    cr_assert_eq(wire_decode_udp(b, (size_t)u, &e, NULL), WIRE_OK);
    cr_assert_eq((int)e->body_case, c->body_case);
    wire_free(e);
}

/* Spot checks that values (not just lengths) survive, for the fields the
 * cores depend on. */
Test(roundtrip, field_values)
{
    fixture f;
    uint8_t buf[WIRE_UDP_MAX];
    Punchline__Envelope *e;

    fx_build(&f, K_PROBE);
    int n = wire_encode_udp(&f.env, buf, sizeof(buf));
    cr_assert_eq(wire_decode_udp(buf, (size_t)n, &e, NULL), WIRE_OK);
    cr_assert_eq(e->probe->session_id, 42);
    cr_assert_eq(e->probe->tid, 0xdeadbeefcafef00dull);
    cr_assert(e->probe->response && e->probe->nominate);
    cr_assert_eq(e->probe->role, PUNCHLINE__ROLE__CONTROLLED);
    cr_assert_eq(e->probe->mapped->port, 3478);
    cr_assert_eq(e->probe->mapped->ip.len, 4);
    cr_assert_eq(memcmp(e->probe->mac.data, f.bytes, WIRE_MAC_LEN), 0);
    wire_free(e);

    fx_build(&f, K_CANDIDATES);
    n = wire_encode(&f.env, buf, sizeof(buf));
    cr_assert_eq(wire_decode(buf, (size_t)n, &e, NULL), WIRE_OK);
    cr_assert_eq(e->candidates->n_candidates, 3);
    cr_assert_eq(e->candidates->candidates[1]->endpoint->ip.len, 16);
    cr_assert_eq(e->candidates->candidates[2]->endpoint->port, 40002);
    cr_assert_str_eq(e->candidates->peer_name, "bob");
    wire_free(e);

    fx_build(&f, K_ACK);
    n = wire_encode(&f.env, buf, sizeof(buf));
    cr_assert_eq(wire_decode(buf, (size_t)n, &e, NULL), WIRE_OK);
    cr_assert_eq(e->ack->pn_next, 10);
    cr_assert_eq(e->ack->first_range, 2);
    cr_assert_eq(e->ack->n_ranges, 2);
    cr_assert_eq(e->ack->ranges[0], 1);
    cr_assert_eq(e->ack->ranges[1], 3);
    cr_assert_eq(e->ack->stream_next, 5000);
    cr_assert_eq(e->ack->max_offset, 1u << 22);
    wire_free(e);
}

/* ---- undecodable input -------------------------------------------------- */

/* Every strict prefix of a valid message is refused: a TCP frame or datagram
 * cut short never decodes into something. */
Test(decode, every_truncation_is_malformed)
{
    fixture f;
    uint8_t buf[WIRE_UDP_MAX];
    for (int kind = 0; kind < K_COUNT; kind++) {
        fx_build(&f, kind);
        int n = wire_encode(&f.env, buf, sizeof(buf));
        cr_assert_gt(n, 2);
        for (int cut = 1; cut < n; cut++)
            cr_assert_eq(decode(buf, (size_t)cut, NULL), WIRE_E_MALFORMED, "kind %d cut at %d of %d",
                         kind, cut, n);
        cr_assert_eq(decode(buf, (size_t)n, NULL), WIRE_OK);
    }
}

struct garbage_case {
    uint8_t bytes[24];
    size_t len;
    char what[48];
};

ParameterizedTestParameters(decode, garbage_is_malformed)
{
    static struct garbage_case cases[] = {
        {{0x08, 0x80}, 2, "truncated varint"},
        {{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 12,
         "varint longer than 10 bytes"},
        {{0x08, 0x01, 0x82}, 3, "truncated tag varint"},
        {{0x08, 0x01, 0x82, 0x01}, 4, "tag without length"},
        {{0x08, 0x01, 0x82, 0x01, 0x05, 0x09}, 6, "length beyond the end"},
        {{0x08, 0x01, 0x82, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f}, 9, "4 GiB length"},
        {{0x0a, 0x01, 0x01}, 3, "version with the wrong wire type"},
        {{0x0f}, 1, "wire type 7"},
        {{0x00, 0x01}, 2, "field number 0"},
        {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 8, "all ones"},
        {{0x08, 0x01, 0x09, 0x01, 0x02}, 5, "truncated fixed64"},
        /* Candidates with a candidate whose endpoint is cut inside */
        {{0x08, 0x01, 0x8a, 0x01, 0x06, 0x1a, 0x04, 0x1a, 0x04, 0x0a, 0x04}, 11,
         "nested message length lies"},
    };
    return cr_make_param_array(struct garbage_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct garbage_case *c, decode, garbage_is_malformed)
{
    cr_assert_eq(decode(c->bytes, c->len, NULL), WIRE_E_MALFORMED, "%s", c->what);
}

/* Deterministic fuzzing: random bytes and random mutations of valid
 * messages never crash (ASan build), return one of the three statuses, and
 * only ever hand out messages that pass wire_validate(). */
Test(decode, random_input_never_breaks_contract)
{
    uint64_t s = 0x9e3779b97f4a7c15ull;
    fixture f;
    uint8_t buf[512];
    int counts[3] = {0, 0, 0};
    for (int iter = 0; iter < 20000; iter++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        size_t n;
        if (iter % 2) {
            n = s % 64;
            uint64_t t = s;
            for (size_t i = 0; i < n; i++) {
                t = t * 6364136223846793005ull + 1442695040888963407ull;
                buf[i] = (uint8_t)(t >> 56);
            }
        } else {
            fx_build(&f, (int)(s % K_COUNT));
            int m = wire_encode(&f.env, buf, sizeof(buf));
            cr_assert_gt(m, 0);
            n = (size_t)m;
            buf[(s >> 8) % n] ^= (uint8_t)(1u << ((s >> 20) % 8));
            if ((s >> 30) % 3 == 0)
                buf[(s >> 36) % n] = (uint8_t)(s >> 44);
        }
        int rc = decode(buf, n, NULL);
        cr_assert(rc == WIRE_OK || rc == WIRE_E_MALFORMED || rc == WIRE_E_VERSION, "rc %d", rc);
        counts[rc == WIRE_OK ? 0 : rc == WIRE_E_MALFORMED ? 1 : 2]++;
    }
    cr_assert_gt(counts[0], 0, "some mutations stay valid");
    cr_assert_gt(counts[1], 0, "most garbage is malformed");
}

/* ---- version and body --------------------------------------------------- */

/* Another version is reported as such (so the receiver can answer
 * Error{BAD_VERSION}), with the peer's version number, and nothing to free. */
Test(decode, other_version_reported)
{
    fixture f;
    uint8_t buf[WIRE_UDP_MAX + 1];
    fx_build(&f, K_KEEPALIVE);
    f.env.version = WIRE_VERSION + 1;
    size_t n = fx_pack(&f, buf, sizeof(buf));

    Punchline__Envelope *e = (Punchline__Envelope *)1;
    uint32_t version = 0;
    cr_assert_eq(wire_decode(buf, n, &e, &version), WIRE_E_VERSION);
    cr_assert_eq(version, WIRE_VERSION + 1);
    cr_assert_null(e);
    cr_assert_eq(wire_decode(buf, n, &e, NULL), WIRE_E_VERSION, "version pointer is optional");

    /* the same through the UDP path */
    memmove(buf + 1, buf, n);
    buf[0] = WIRE_UDP_MARKER;
    cr_assert_eq(wire_decode_udp(buf, n + 1, &e, &version), WIRE_E_VERSION);
    cr_assert_eq(version, WIRE_VERSION + 1);
    cr_assert_null(e);

    /* a far-future version with a body we do not even know */
    pb p = {.n = 0};
    pb_uint(&p, 1, 0xffffffffu);
    pb_bytes(&p, 60, "?", 1);
    cr_assert_eq(decode(p.b, p.n, &version), WIRE_E_VERSION);
    cr_assert_eq(version, 0xffffffffu);
}

/* An envelope without a body, or whose only body is a message this version
 * does not know (an unknown field number), carries nothing we can act on. */
Test(decode, no_body_or_unknown_body_is_malformed)
{
    pb p = {.n = 0};
    pb_uint(&p, 1, WIRE_VERSION);
    cr_assert_eq(decode(p.b, p.n, NULL), WIRE_E_MALFORMED, "version only");

    pb_bytes(&p, 40, "\x08\x01", 2); /* "message 40" from a future version */
    cr_assert_eq(decode(p.b, p.n, NULL), WIRE_E_MALFORMED, "unknown message only");

    pb q = {.n = 0};
    pb_uint(&q, 1, WIRE_VERSION);
    pb_uint(&q, 21, 5);
    pb_fixed64(&q, 99, 5);
    cr_assert_eq(decode(q.b, q.n, NULL), WIRE_E_MALFORMED, "only unknown scalar fields");

    fixture f;
    fx_build(&f, K_KEEPALIVE);
    f.env.body_case = PUNCHLINE__ENVELOPE__BODY__NOT_SET;
    cr_assert_eq(wire_validate(&f.env), WIRE_E_MALFORMED);
    cr_assert_str_eq(wire_body_name(&f.env), "unknown");
}

/* Forward compatibility (protobuf rules): fields a later version adds, at
 * the envelope level or inside a known body, are skipped, not refused. */
Test(decode, unknown_fields_next_to_known_body_accepted)
{
    pb inner = {.n = 0};
    pb_uint(&inner, 1, 1234);          /* Keepalive.now_ms */
    pb_uint(&inner, 7, 1);             /* unknown to us */
    pb_bytes(&inner, 8, "future", 6);  /* unknown to us */

    pb p = {.n = 0};
    pb_uint(&p, 1, WIRE_VERSION);
    pb_bytes(&p, 12, inner.b, inner.n); /* keepalive */
    pb_uint(&p, 99, 5);
    pb_bytes(&p, 100, "xyz", 3);
    pb_fixed64(&p, 101, 1);

    Punchline__Envelope *e;
    cr_assert_eq(wire_decode(p.b, p.n, &e, NULL), WIRE_OK);
    cr_assert_eq(e->body_case, PUNCHLINE__ENVELOPE__BODY_KEEPALIVE);
    cr_assert_eq(e->keepalive->now_ms, 1234);
    wire_free(e);
}

/* ---- bounds (wire_validate), through the real decode path --------------- */

enum mutation {
    M_NONE,
    M_CANDS_32, M_CANDS_33, M_REG_CANDS_16, M_REG_CANDS_17,
    M_CAND_IPLEN5, M_CAND_NO_ENDPOINT, M_CAND_PORT0, M_CAND_PORT70000,
    M_EP_IPLEN5, M_EP_IPLEN0, M_EP_V6, M_EP_PORT0, M_EP_PORT1, M_EP_PORT65535, M_EP_PORT65536,
    M_EP_PORT70000, M_EP_ABSENT,
    M_SECRET0, M_SECRET31, M_SECRET33, M_ROLE_UNKNOWN, M_ROLE_7,
    M_MAC0, M_MAC15, M_MAC17,
    M_PAYLOAD_MAX, M_PAYLOAD_OVER, M_FIN_ONLY, M_FIN_WITH_PAYLOAD, M_EMPTY_PAYLOAD,
    M_OFFSET_MAX, M_OFFSET_OVER, M_ACK_RANGES_MAX, M_ACK_RANGES_OVER, M_ACK_RANGES_ODD,
    M_TEXT_256, M_TEXT_257,
    M_PUBKEY_512, M_PUBKEY_513,
    M_CANDS_NAME_63, M_CANDS_NAME_64,
};

/* Apply m to the valid message in f (the endpoint mutations act on the one
 * endpoint of UdpBound / RegisterResult / Probe). */
static void fx_mutate(fixture *f, int kind, int m)
{
    Punchline__Endpoint **single = kind == K_UDP_BOUND        ? &f->bound.observed_udp
                                   : kind == K_REGISTER_RESULT ? &f->rr.observed_tcp
                                   : kind == K_PROBE           ? &f->probe.mapped
                                                               : NULL;
    switch (m) {
    case M_NONE: break;
    case M_CANDS_32: fx_candidates(f, 32); f->cands.n_candidates = 32; break;
    case M_CANDS_33: fx_candidates(f, 33); f->cands.n_candidates = 33; break;
    case M_REG_CANDS_16: fx_candidates(f, 16); f->reg.n_candidates = 16; break;
    case M_REG_CANDS_17: fx_candidates(f, 17); f->reg.n_candidates = 17; break;
    case M_CAND_IPLEN5: f->ep[2].ip.len = 5; break;
    case M_CAND_NO_ENDPOINT: f->cand[1].endpoint = NULL; break;
    case M_CAND_PORT0: f->ep[1].port = 0; break;
    case M_CAND_PORT70000: f->ep[1].port = 70000; break;
    case M_EP_IPLEN5: (*single)->ip.len = 5; break;
    case M_EP_IPLEN0: (*single)->ip.len = 0; break;
    case M_EP_V6: (*single)->ip.len = 16; break;
    case M_EP_PORT0: (*single)->port = 0; break;
    case M_EP_PORT1: (*single)->port = 1; break;
    case M_EP_PORT65535: (*single)->port = 65535; break;
    case M_EP_PORT65536: (*single)->port = 65536; break;
    case M_EP_PORT70000: (*single)->port = 70000; break;
    case M_EP_ABSENT: *single = NULL; break;
    case M_SECRET0: f->ps.secret.len = 0; break;
    case M_SECRET31: f->ps.secret.len = 31; break;
    case M_SECRET33: f->ps.secret.len = 33; break;
    case M_ROLE_UNKNOWN: f->ps.role = PUNCHLINE__ROLE__ROLE_UNKNOWN; break;
    case M_ROLE_7: f->ps.role = (Punchline__Role)7; break;
    case M_MAC0: f->probe.mac.len = 0; break;
    case M_MAC15: f->probe.mac.len = 15; break;
    case M_MAC17: f->probe.mac.len = 17; break;
    case M_PAYLOAD_MAX: f->data.payload.len = WIRE_MAX_PAYLOAD; break;
    case M_PAYLOAD_OVER: f->data.payload.len = WIRE_MAX_PAYLOAD + 1; break;
    case M_FIN_ONLY: f->data.payload.len = 0; f->data.fin = 1; break;
    case M_OFFSET_MAX: f->data.offset = WIRE_MAX_STREAM_OFFSET; break;
    case M_OFFSET_OVER: f->data.offset = WIRE_MAX_STREAM_OFFSET + 1; break;
    case M_ACK_RANGES_MAX: f->ack.n_ranges = 2 * WIRE_MAX_ACK_RANGES; break;
    case M_ACK_RANGES_OVER: f->ack.n_ranges = 2 * WIRE_MAX_ACK_RANGES + 2; break;
    case M_ACK_RANGES_ODD: f->ack.n_ranges = 3; break;
    case M_FIN_WITH_PAYLOAD: f->data.fin = 1; break;
    case M_EMPTY_PAYLOAD: f->data.payload.len = 0; break;
    case M_TEXT_256:
    case M_TEXT_257: {
        char *t = (char *)fx_text(f, m == M_TEXT_256 ? WIRE_MAX_TEXT : WIRE_MAX_TEXT + 1);
        if (kind == K_ERROR)
            f->err.text = t;
        else if (kind == K_CLOSE)
            f->close.reason = t;
        else if (kind == K_REGISTER)
            f->reg.client_version = t;
        else if (kind == K_REGISTER_RESULT)
            f->rr.server_version = t;
        else
            cr_assert_fail("no text field");
        break;
    }
    case M_PUBKEY_512: f->reg.public_key.data = f->bytes; f->reg.public_key.len = WIRE_MAX_KEY; break;
    case M_PUBKEY_513: f->reg.public_key.data = f->bytes; f->reg.public_key.len = WIRE_MAX_KEY + 1; break;
    case M_CANDS_NAME_63: f->cands.peer_name = (char *)fx_text(f, NAME_MAX_LEN); break;
    case M_CANDS_NAME_64: f->cands.peer_name = (char *)fx_text(f, NAME_MAX_LEN + 1); break;
    default: cr_assert_fail("bad mutation %d", m);
    }
}

struct bound_case {
    int kind;
    int mutation;
    int expect;
    char what[56];
};

ParameterizedTestParameters(bounds, validate)
{
    static struct bound_case cases[] = {
        /* repeated fields: at most 32 candidates, 16 host candidates in Register */
        {K_CANDIDATES, M_CANDS_32, WIRE_OK, "32 candidates"},
        {K_CANDIDATES, M_CANDS_33, WIRE_E_MALFORMED, "33 candidates"},
        {K_REGISTER, M_REG_CANDS_16, WIRE_OK, "16 host candidates"},
        {K_REGISTER, M_REG_CANDS_17, WIRE_E_MALFORMED, "17 host candidates"},
        /* every candidate needs an endpoint with a 4/16-byte ip and a port 1..65535 */
        {K_CANDIDATES, M_CAND_IPLEN5, WIRE_E_MALFORMED, "candidate ip 5 bytes"},
        {K_CANDIDATES, M_CAND_NO_ENDPOINT, WIRE_E_MALFORMED, "candidate without endpoint"},
        {K_CANDIDATES, M_CAND_PORT0, WIRE_E_MALFORMED, "candidate port 0"},
        {K_CANDIDATES, M_CAND_PORT70000, WIRE_E_MALFORMED, "candidate port 70000"},
        {K_REGISTER, M_CAND_IPLEN5, WIRE_E_MALFORMED, "host candidate ip 5 bytes"},
        {K_REGISTER, M_CAND_PORT0, WIRE_E_MALFORMED, "host candidate port 0"},
        /* single endpoints */
        {K_UDP_BOUND, M_EP_IPLEN5, WIRE_E_MALFORMED, "UdpBound ip 5 bytes"},
        {K_UDP_BOUND, M_EP_IPLEN0, WIRE_E_MALFORMED, "UdpBound ip empty"},
        {K_UDP_BOUND, M_EP_V6, WIRE_OK, "UdpBound ip 16 bytes"},
        {K_UDP_BOUND, M_EP_PORT0, WIRE_E_MALFORMED, "UdpBound port 0"},
        {K_UDP_BOUND, M_EP_PORT1, WIRE_OK, "UdpBound port 1"},
        {K_UDP_BOUND, M_EP_PORT65535, WIRE_OK, "UdpBound port 65535"},
        {K_UDP_BOUND, M_EP_PORT65536, WIRE_E_MALFORMED, "UdpBound port 65536"},
        {K_UDP_BOUND, M_EP_PORT70000, WIRE_E_MALFORMED, "UdpBound port 70000"},
        {K_UDP_BOUND, M_EP_ABSENT, WIRE_E_MALFORMED, "UdpBound without endpoint"},
        {K_REGISTER_RESULT, M_EP_ABSENT, WIRE_OK, "RegisterResult without observed_tcp"},
        {K_REGISTER_RESULT, M_EP_PORT0, WIRE_E_MALFORMED, "RegisterResult port 0"},
        {K_REGISTER_RESULT, M_EP_IPLEN5, WIRE_E_MALFORMED, "RegisterResult ip 5 bytes"},
        {K_PROBE, M_EP_ABSENT, WIRE_OK, "Probe request without mapped"},
        {K_PROBE, M_EP_IPLEN5, WIRE_E_MALFORMED, "Probe mapped ip 5 bytes"},
        {K_PROBE, M_EP_PORT70000, WIRE_E_MALFORMED, "Probe mapped port 70000"},
        /* secret exactly 32 bytes, mac exactly 16, a real role */
        {K_PUNCH_START, M_SECRET0, WIRE_E_MALFORMED, "secret empty"},
        {K_PUNCH_START, M_SECRET31, WIRE_E_MALFORMED, "secret 31 bytes"},
        {K_PUNCH_START, M_SECRET33, WIRE_E_MALFORMED, "secret 33 bytes"},
        {K_PUNCH_START, M_ROLE_UNKNOWN, WIRE_E_MALFORMED, "role unknown"},
        {K_PUNCH_START, M_ROLE_7, WIRE_E_MALFORMED, "role 7"},
        {K_PROBE, M_MAC0, WIRE_E_MALFORMED, "mac empty"},
        {K_PROBE, M_MAC15, WIRE_E_MALFORMED, "mac 15 bytes"},
        {K_PROBE, M_MAC17, WIRE_E_MALFORMED, "mac 17 bytes"},
        /* Data: payload at most WIRE_MAX_PAYLOAD bytes, offsets below 2^62 */
        {K_DATA, M_PAYLOAD_MAX, WIRE_OK, "payload at the maximum"},
        {K_DATA, M_PAYLOAD_OVER, WIRE_E_MALFORMED, "payload one over"},
        {K_DATA, M_EMPTY_PAYLOAD, WIRE_OK, "empty packet (probe)"},
        {K_DATA, M_FIN_ONLY, WIRE_OK, "fin alone"},
        {K_DATA, M_FIN_WITH_PAYLOAD, WIRE_OK, "fin with the last bytes"},
        {K_DATA, M_OFFSET_MAX, WIRE_OK, "offset 2^62"},
        {K_DATA, M_OFFSET_OVER, WIRE_E_MALFORMED, "offset above 2^62"},
        /* Ack: at most WIRE_MAX_ACK_RANGES (gap, run) pairs */
        {K_ACK, M_ACK_RANGES_MAX, WIRE_OK, "ack ranges at the maximum"},
        {K_ACK, M_ACK_RANGES_OVER, WIRE_E_MALFORMED, "ack ranges one pair over"},
        {K_ACK, M_ACK_RANGES_ODD, WIRE_E_MALFORMED, "ack ranges odd count"},
        /* free text and keys */
        {K_ERROR, M_TEXT_256, WIRE_OK, "error text 256"},
        {K_ERROR, M_TEXT_257, WIRE_E_MALFORMED, "error text 257"},
        {K_CLOSE, M_TEXT_257, WIRE_E_MALFORMED, "close reason 257"},
        {K_REGISTER, M_TEXT_257, WIRE_E_MALFORMED, "client_version 257"},
        {K_REGISTER_RESULT, M_TEXT_257, WIRE_E_MALFORMED, "server_version 257"},
        {K_REGISTER, M_PUBKEY_512, WIRE_OK, "public key 512"},
        {K_REGISTER, M_PUBKEY_513, WIRE_E_MALFORMED, "public key 513"},
        {K_CANDIDATES, M_CANDS_NAME_63, WIRE_OK, "Candidates name 63"},
        {K_CANDIDATES, M_CANDS_NAME_64, WIRE_E_MALFORMED, "Candidates name 64"},
    };
    return cr_make_param_array(struct bound_case, cases, sizeof(cases) / sizeof(cases[0]));
}

/* The same verdict from wire_validate() on the struct and from
 * wire_decode() on the packed bytes (version 1, packed directly). */
ParameterizedTest(struct bound_case *c, bounds, validate)
{
    fixture f;
    uint8_t buf[8192];
    fx_build(&f, c->kind);
    fx_mutate(&f, c->kind, c->mutation);
    cr_assert_eq(wire_validate(&f.env), c->expect, "validate: %s", c->what);
    size_t n = fx_pack(&f, buf, sizeof(buf));
    cr_assert_eq(decode(buf, n, NULL), c->expect, "decode: %s", c->what);
}

/* ---- peer names in IncomingConnection / PunchStart ----------------------- */

#define A16 "aaaaaaaaaaaaaaaa"

struct name_case {
    char s[80];
    size_t len;
    bool valid;
};

#define NAME_CASES                                                                             \
    {"alice", 5, true}, {"a", 1, true}, {"Bob-2.x_Y", 9, true}, {A16 A16 A16 "aaaaaaaaaaaaaaa", 63, true}, \
    {"", 0, false}, {A16 A16 A16 A16, 64, false}, {"ab\0cd", 5, false}, {"\0", 1, false},     \
    {"alice\0", 6, false}, {"a b", 3, false}, {" alice", 6, false}, {"a\tb", 3, false},        \
    {"a\nb", 3, false}, {"a\rb", 3, false}, {"\x1b[31m", 5, false}, {"a\x7f", 2, false},       \
    {"caf\xc3\xa9", 5, false}, {"\xff", 1, false}, {"a/b", 3, false}, {"a:b", 3, false},      \
    {"a@b", 3, false}, {"..%", 3, false}

/* "ab\x00cd" for failure messages. */
static const char *escaped(const struct name_case *c, char out[330])
{
    size_t o = 0;
    for (size_t i = 0; i < c->len; i++) {
        uint8_t ch = (uint8_t)c->s[i];
        if (ch >= 0x21 && ch < 0x7f && ch != '\\')
            out[o++] = (char)ch;
        else
            o += (size_t)snprintf(out + o, 5, "\\x%02x", ch);
    }
    out[o] = 0;
    return out;
}

/* Envelope{version 1, incoming|punch_start{session_id, peer_name, ...}}
 * written by hand so the name bytes (NUL included) go out exactly. */
static size_t name_message(pb *p, int body, const struct name_case *c)
{
    pb inner = {.n = 0};
    uint8_t secret[WIRE_SECRET_LEN];
    memset(secret, 0x5c, sizeof(secret));
    pb_fixed64(&inner, 1, 42);
    pb_bytes(&inner, 2, c->s, c->len);
    if (body == 18) {
        pb_bytes(&inner, 3, secret, sizeof(secret));
        pb_uint(&inner, 4, PUNCHLINE__ROLE__CONTROLLED);
    }
    p->n = 0;
    pb_uint(p, 1, WIRE_VERSION);
    pb_bytes(p, (uint32_t)body, inner.b, inner.n);
    return p->n;
}

ParameterizedTestParameters(names, incoming_connection)
{
    static struct name_case cases[] = {NAME_CASES};
    return cr_make_param_array(struct name_case, cases, sizeof(cases) / sizeof(cases[0]));
}

/* 1..63 bytes of [A-Za-z0-9._-] (punchline.proto, Register.name): anything
 * else would end up in logs and UIs of the receiving peer. */
ParameterizedTest(struct name_case *c, names, incoming_connection)
{
    pb p;
    size_t n = name_message(&p, 16, c);
    char esc[330];
    cr_assert_eq(decode(p.b, n, NULL), c->valid ? WIRE_OK : WIRE_E_MALFORMED,
                 "IncomingConnection peer_name \"%s\" (%zu bytes) must be %s", escaped(c, esc), c->len,
                 c->valid ? "accepted" : "refused");
}

ParameterizedTestParameters(names, punch_start)
{
    static struct name_case cases[] = {NAME_CASES};
    return cr_make_param_array(struct name_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct name_case *c, names, punch_start)
{
    pb p;
    size_t n = name_message(&p, 18, c);
    char esc[330];
    cr_assert_eq(decode(p.b, n, NULL), c->valid ? WIRE_OK : WIRE_E_MALFORMED,
                 "PunchStart peer_name \"%s\" (%zu bytes) must be %s", escaped(c, esc), c->len,
                 c->valid ? "accepted" : "refused");
}

/* names.c itself: name_valid() sees the exact bytes; name_valid_cstr() the
 * C string. */
ParameterizedTestParameters(names, name_valid_table)
{
    static struct name_case cases[] = {NAME_CASES};
    return cr_make_param_array(struct name_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct name_case *c, names, name_valid_table)
{
    char esc[330];
    cr_assert_eq(name_valid(c->s, c->len), c->valid, "name \"%s\" (%zu bytes)", escaped(c, esc), c->len);
    if (strlen(c->s) == c->len) /* no embedded NUL: the C-string form agrees */
        cr_assert_eq(name_valid_cstr(c->s), c->valid);
}

Test(names, null_and_unterminated)
{
    cr_assert_not(name_valid(NULL, 3));
    cr_assert_not(name_valid_cstr(NULL));
    /* A 100-byte name without NUL in the first 64 bytes is refused without
     * reading past NAME_MAX_LEN + 1. */
    char big[100];
    memset(big, 'a', sizeof(big));
    big[99] = 0;
    cr_assert_not(name_valid_cstr(big));
    cr_assert(name_valid(big, NAME_MAX_LEN));
}

/* ---- UDP marker and output space ---------------------------------------- */

/* wire_decode_udp() only takes datagrams that start with 0x0C; STUN, DTLS
 * and anything else sharing the socket is not ours (RFC 7983). */
Test(udp, marker_required)
{
    fixture f;
    uint8_t buf[WIRE_UDP_MAX];
    fx_build(&f, K_KEEPALIVE);
    int n = wire_encode_udp(&f.env, buf, sizeof(buf));
    cr_assert_gt(n, 1);

    Punchline__Envelope *e;
    cr_assert_eq(wire_decode_udp(buf, (size_t)n, &e, NULL), WIRE_OK);
    wire_free(e);

    const uint8_t other[] = {0x00, 0x01, 0x03, 0x16, 0x17, 0x4f, 0x51, 0x80, 0xff};
    for (size_t i = 0; i < sizeof(other); i++) {
        buf[0] = other[i];
        e = (Punchline__Envelope *)1;
        cr_assert_eq(wire_decode_udp(buf, (size_t)n, &e, NULL), WIRE_E_MALFORMED, "first byte 0x%02x",
                     other[i]);
        cr_assert_null(e);
    }
    /* without the marker, the bare envelope is not a datagram of ours either */
    int m = wire_encode(&f.env, buf, sizeof(buf));
    cr_assert_eq(wire_decode_udp(buf, (size_t)m, &e, NULL), WIRE_E_MALFORMED);
    cr_assert_eq(wire_decode_udp(buf, 0, &e, NULL), WIRE_E_MALFORMED, "empty datagram");
    wire_free(NULL); /* documented no-op */
}

/* Encoding never writes past cap: a buffer one byte short is NOSPACE. */
Test(udp, encode_nospace)
{
    fixture f;
    uint8_t buf[WIRE_UDP_MAX + 16];
    fx_build(&f, K_CANDIDATES);
    int n = wire_encode(&f.env, buf, sizeof(buf));
    cr_assert_gt(n, 0);

    memset(buf, 0xee, sizeof(buf));
    cr_assert_eq(wire_encode(&f.env, buf, (size_t)n - 1), WIRE_E_NOSPACE);
    cr_assert_eq(buf[0], 0xee, "nothing written on NOSPACE");
    cr_assert_eq(wire_encode(&f.env, buf, 0), WIRE_E_NOSPACE);
    cr_assert_eq(wire_encode(&f.env, buf, (size_t)n), n, "an exact fit is enough");
    cr_assert_eq(buf[n], 0xee, "no byte past the message");

    cr_assert_eq(wire_encode_udp(&f.env, buf, 0), WIRE_E_NOSPACE);
    cr_assert_eq(wire_encode_udp(&f.env, buf, (size_t)n), WIRE_E_NOSPACE, "marker needs a byte");
    cr_assert_eq(wire_encode_udp(&f.env, buf, (size_t)n + 1), n + 1);
    cr_assert_eq(buf[0], WIRE_UDP_MARKER);
}

/* ---- anti-amplification: UdpBind padding (PROTOCOL.md 3) ---------------- */

/* WIRE_UDPBOUND_MAX is what the worst UdpBound really encodes to: IPv6
 * endpoint, a three-byte port varint, a challenge.  A padded UdpBind is at
 * least that large, so the server's "reply <= request" rule answers it. */
Test(udp, udp_bound_max_is_the_worst_case)
{
    uint8_t ip[16];
    memset(ip, 0xfe, sizeof(ip));
    Punchline__Endpoint ep = PUNCHLINE__ENDPOINT__INIT;
    ep.ip.data = ip;
    ep.ip.len = 16;
    ep.port = 65535;
    Punchline__UdpBound ub = PUNCHLINE__UDP_BOUND__INIT;
    ub.observed_udp = &ep;
    ub.challenge = UINT64_MAX;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_UDP_BOUND;
    env.udp_bound = &ub;
    uint8_t buf[WIRE_UDP_MAX];
    cr_assert_eq(wire_encode_udp(&env, buf, sizeof(buf)), WIRE_UDPBOUND_MAX);
    cr_assert_lt(WIRE_UDPBOUND_MAX, WIRE_UDPBIND_MIN, "the margin");
}

/* Every UdpBind comes out exactly WIRE_UDPBIND_MIN bytes, decodes, carries
 * its token and challenge, and pads with zeros only. */
Test(udp, udp_bind_is_padded_to_the_minimum)
{
    const uint64_t vals[] = {0, 1, 0x0123456789abcdefULL, UINT64_MAX};
    for (size_t i = 0; i < 4; i++) {
        for (size_t j = 0; j < 4; j++) {
            uint8_t buf[WIRE_UDPBIND_MIN + 16];
            int n = wire_encode_udp_bind(vals[i], vals[j], buf, sizeof(buf));
            cr_assert_eq(n, WIRE_UDPBIND_MIN, "token %zu challenge %zu: %d bytes", i, j, n);
            Punchline__Envelope *e = NULL;
            cr_assert_eq(wire_decode_udp(buf, (size_t)n, &e, NULL), WIRE_OK);
            cr_assert_eq(e->body_case, PUNCHLINE__ENVELOPE__BODY_UDP_BIND);
            cr_assert_eq(e->udp_bind->udp_token, vals[i]);
            cr_assert_eq(e->udp_bind->challenge, vals[j]);
            cr_assert_leq(e->udp_bind->padding.len, WIRE_MAX_PADDING);
            for (size_t k = 0; k < e->udp_bind->padding.len; k++)
                cr_assert_eq(e->udp_bind->padding.data[k], 0);
            wire_free(e);
            cr_assert_eq(wire_encode_udp_bind(vals[i], vals[j], buf, WIRE_UDPBIND_MIN - 1),
                         WIRE_E_NOSPACE);
        }
    }
}

/* UdpBind.padding is bounded like every other length (at most 64 bytes). */
Test(bounds, udp_bind_padding)
{
    uint8_t zeros[WIRE_MAX_PADDING + 1] = {0}, buf[256];
    Punchline__UdpBind ub = PUNCHLINE__UDP_BIND__INIT;
    ub.udp_token = 7;
    ub.padding.data = zeros;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.version = WIRE_VERSION;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_UDP_BIND;
    env.udp_bind = &ub;
    for (size_t len = WIRE_MAX_PADDING; len <= WIRE_MAX_PADDING + 1; len++) {
        int want = len <= WIRE_MAX_PADDING ? WIRE_OK : WIRE_E_MALFORMED;
        ub.padding.len = len;
        cr_assert_eq(wire_validate(&env), want, "padding %zu", len);
        size_t n = punchline__envelope__pack(&env, buf);
        cr_assert_eq(decode(buf, n, NULL), want, "padding %zu", len);
    }
}

/* The largest Data segment, as an envelope, fits one sealed record
 * (peer/conn.c seals each envelope into one DTLS record). */
Test(wire, largest_data_envelope_fits_a_secure_record)
{
    static uint8_t payload[WIRE_MAX_PAYLOAD];
    Punchline__Data d = PUNCHLINE__DATA__INIT;
    d.session_id = UINT64_MAX;
    d.pn = UINT64_MAX;
    d.offset = WIRE_MAX_STREAM_OFFSET;
    d.payload.data = payload;
    d.payload.len = sizeof(payload);
    d.fin = true;
    d.ack_now = true;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_DATA;
    env.data = &d;
    uint8_t buf[WIRE_UDP_MAX];
    int n = wire_encode_udp(&env, buf, sizeof(buf));
    cr_assert_gt(n, 0);
    cr_assert_leq((size_t)n - 1, SECURE_MAX_PLAIN, "%d-byte envelope", n - 1);
}

/* Secure.mac (PROTOCOL.md 4.5): which records a peer takes into its channel. */
Test(wire, secure_record_acceptance)
{
    uint8_t secret[WIRE_SECRET_LEN], other[WIRE_SECRET_LEN];
    memset(secret, 7, sizeof(secret));
    memset(other, 8, sizeof(other));
    uint8_t hs[40] = {22, 0xfe, 0xfd}, alert[20] = {21, 0xfe, 0xfd}, app[60] = {23, 0xfe, 0xfd};
    uint8_t mac[WIRE_MAC_LEN];
    Punchline__Secure m = PUNCHLINE__SECURE__INIT;
    m.session_id = 42;

    /* a handshake record: MAC required, open or not */
    m.dtls.data = hs;
    m.dtls.len = sizeof(hs);
    cr_assert(wire_secure_needs_mac(hs, sizeof(hs)));
    cr_assert_eq(wire_secure_accept(secret, 42, &m, false), WIRE_SECURE_DROP, "no MAC");
    cr_assert_eq(wire_secure_accept(secret, 42, &m, true), WIRE_SECURE_DROP, "no MAC, open");
    wire_secure_mac(secret, 42, hs, sizeof(hs), mac);
    m.mac.data = mac;
    m.mac.len = sizeof(mac);
    cr_assert_eq(wire_secure_accept(secret, 42, &m, false), WIRE_SECURE_MACED);
    cr_assert_eq(wire_secure_accept(secret, 43, &m, false), WIRE_SECURE_DROP, "other session");
    cr_assert_eq(wire_secure_accept(other, 42, &m, false), WIRE_SECURE_DROP, "other secret");
    hs[10] ^= 1;
    cr_assert_eq(wire_secure_accept(secret, 42, &m, false), WIRE_SECURE_DROP, "changed record");
    hs[10] ^= 1;
    mac[0] ^= 1;
    cr_assert_eq(wire_secure_accept(secret, 42, &m, false), WIRE_SECURE_DROP, "changed MAC");

    /* an alert: MAC required even on an open channel (a spoofed one would end it) */
    m.dtls.data = alert;
    m.dtls.len = sizeof(alert);
    m.mac.len = 0;
    cr_assert_eq(wire_secure_accept(secret, 42, &m, true), WIRE_SECURE_DROP);

    /* application data: left to the AEAD once open, dropped before */
    m.dtls.data = app;
    m.dtls.len = sizeof(app);
    cr_assert(!wire_secure_needs_mac(app, sizeof(app)));
    cr_assert_eq(wire_secure_accept(secret, 42, &m, true), WIRE_SECURE_AEAD);
    cr_assert_eq(wire_secure_accept(secret, 42, &m, false), WIRE_SECURE_DROP);
}

/* Canonical encoding only (PROTOCOL.md 1.3): what decodes must re-encode to
 * the same size, which refuses what a C decoder would otherwise take in a
 * different meaning or that no honest encoder sends. */
Test(decode, non_canonical_encodings_are_malformed)
{
    pb inner = {.n = 0}, p = {.n = 0};
    /* control: Register{name "a"} decodes */
    pb_bytes(&inner, 1, "a", 1);
    pb_uint(&p, 1, WIRE_VERSION);
    pb_bytes(&p, 10, inner.b, inner.n);
    cr_assert_eq(decode(p.b, p.n, NULL), WIRE_OK);
    /* "a\0b": protobuf-c would hand out "a" */
    inner.n = p.n = 0;
    pb_bytes(&inner, 1, "a\0b", 3);
    pb_uint(&p, 1, WIRE_VERSION);
    pb_bytes(&p, 10, inner.b, inner.n);
    cr_assert_eq(decode(p.b, p.n, NULL), WIRE_E_MALFORMED, "embedded NUL in a name");
    /* the name sent twice (the last one would win) */
    inner.n = p.n = 0;
    pb_bytes(&inner, 1, "mallory", 7);
    pb_bytes(&inner, 1, "alice", 5);
    pb_uint(&p, 1, WIRE_VERSION);
    pb_bytes(&p, 10, inner.b, inner.n);
    cr_assert_eq(decode(p.b, p.n, NULL), WIRE_E_MALFORMED, "a singular field twice");
    /* the version twice; a padded varint; an explicit default value */
    const uint8_t twice[] = {0x08, WIRE_VERSION, 0x08, WIRE_VERSION, 0x62, 0x00};
    const uint8_t padded[] = {0x08, 0x80 | WIRE_VERSION, 0x00, 0x62, 0x00};
    const uint8_t dflt[] = {0x08, WIRE_VERSION, 0x62, 0x02, 0x08, 0x00};
    const uint8_t body2[] = {0x08, WIRE_VERSION, 0x62, 0x00, 0x62, 0x00};
    const uint8_t ok[] = {0x08, WIRE_VERSION, 0x62, 0x00};
    cr_assert_eq(decode(twice, sizeof(twice), NULL), WIRE_E_MALFORMED, "version twice");
    cr_assert_eq(decode(padded, sizeof(padded), NULL), WIRE_E_MALFORMED, "padded varint");
    cr_assert_eq(decode(dflt, sizeof(dflt), NULL), WIRE_E_MALFORMED, "explicit default");
    cr_assert_eq(decode(body2, sizeof(body2), NULL), WIRE_E_MALFORMED, "body twice");
    cr_assert_eq(decode(ok, sizeof(ok), NULL), WIRE_OK);
}
