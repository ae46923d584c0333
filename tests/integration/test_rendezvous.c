/* The rendezvous server on loopback, driven by raw client sockets in the
 * same thread: the test steps the server's libev loop until the reply it
 * expects is readable.  Checks the protocol-level behaviour of
 * docs/PROTOCOL.md sections 1, 3, 4, 5 and 6. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "identity.h"
#include "server.h"
#include "stun.h"
#include "timeutil.h"
#include "tls_stream.h"
#include "token.h"
#include "wire.h"

static struct ev_loop *loop;
static server *srv;
static netaddr srv_addr;
static identity *key_a, *key_b;          /* test identities */
static uint8_t nonces[4096][WIRE_NONCE_LEN]; /* ServerHello nonce per client fd */

static void setup(void)
{
    key_a = identity_ephemeral();
    key_b = identity_ephemeral();
    cr_assert(key_a && key_b);
    loop = ev_loop_new(EVFLAG_AUTO);
    server_config cfg = {.log_level = SRV_LOG_ERROR, .register_deadline_ms = 1000};
    cr_assert_eq(netaddr_parse("127.0.0.1:0", &cfg.listen, false), 0);
    char err[256];
    srv = server_new(loop, &cfg, err, sizeof(err));
    cr_assert_not_null(srv, "server_new: %s", err);
    server_local_addr(srv, &srv_addr);
}

static void teardown(void)
{
    server_free(srv);
    ev_loop_destroy(loop);
    identity_free(key_a);
    identity_free(key_b);
}

TestSuite(rendezvous, .init = setup, .fini = teardown, .timeout = 20);

/* Step the server until fd is readable (or ms pass). */
static bool pump_until_readable(int fd, int ms)
{
    uint64_t end = time_now_ms() + (uint64_t)ms;
    while (time_now_ms() < end) {
        ev_run(loop, EVRUN_NOWAIT);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5) > 0)
            return true;
    }
    return false;
}

static Punchline__Envelope *recv_env(int fd);
static int connect_from(const char *ip);
static void expect_body(int fd, int body);

/* Connect (with this receive buffer if rcvbuf > 0) and read the ServerHello
 * every connection starts with. */
static int tcp_client_rcvbuf(int rcvbuf)
{
    int fd = socket(srv_addr.u.sa.sa_family, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    cr_assert_lt(fd, 4096);
    cr_assert_eq(connect(fd, &srv_addr.u.sa, srv_addr.len), 0, "connect: %s", strerror(errno));
    ev_run(loop, EVRUN_NOWAIT); /* accept */
    Punchline__Envelope *h = recv_env(fd);
    cr_assert_not_null(h);
    cr_assert_eq(h->body_case, PUNCHLINE__ENVELOPE__BODY_SERVER_HELLO, "got %s", wire_body_name(h));
    cr_assert_eq(h->server_hello->nonce.len, WIRE_NONCE_LEN);
    memcpy(nonces[fd], h->server_hello->nonce.data, WIRE_NONCE_LEN);
    wire_free(h);
    return fd;
}

static int tcp_client(void)
{
    return tcp_client_rcvbuf(0);
}

static void send_raw(int fd, const void *buf, size_t len)
{
    cr_assert_eq(send(fd, buf, len, 0), (ssize_t)len);
}

static void send_env(int fd, Punchline__Envelope *env)
{
    uint8_t buf[FRAME_HEADER + FRAME_MAX];
    int n = wire_encode(env, buf + FRAME_HEADER, FRAME_MAX);
    cr_assert_gt(n, 0);
    frame_put_header(buf, (uint32_t)n);
    send_raw(fd, buf, (size_t)n + FRAME_HEADER);
}

/* Read one frame; NULL if the server closed the connection first. */
static Punchline__Envelope *recv_env(int fd)
{
    frame_reader fr;
    frame_reader_init(&fr);
    for (;;) {
        cr_assert(pump_until_readable(fd, 3000), "no reply from the server");
        uint8_t b;
        ssize_t n = recv(fd, &b, 1, 0);
        if (n <= 0) {
            frame_reader_reset(&fr);
            return NULL;
        }
        size_t used;
        int st = frame_reader_feed(&fr, &b, 1, &used);
        cr_assert_geq(st, 0);
        if (st == FRAME_READY) {
            Punchline__Envelope *env = NULL;
            cr_assert_eq(wire_decode(fr.buf, fr.len, &env, NULL), WIRE_OK);
            frame_reader_reset(&fr);
            return env;
        }
    }
}

static void expect_error(int fd, Punchline__ErrorCode code)
{
    Punchline__Envelope *env = recv_env(fd);
    cr_assert_not_null(env, "connection closed without an error message");
    cr_assert_eq(env->body_case, PUNCHLINE__ENVELOPE__BODY_ERROR, "got %s", wire_body_name(env));
    cr_assert_eq(env->error->code, code, "error %d (%s), want %d", env->error->code,
                 env->error->text, code);
    cr_assert_gt(strlen(env->error->text), 0, "error without text");
    wire_free(env);
}

static void expect_closed(int fd)
{
    cr_assert(pump_until_readable(fd, 3000), "server kept the connection open");
    char b;
    cr_assert_leq(recv(fd, &b, 1, 0), 0, "more data where a close was expected");
}

/* The server answers with error `code`, closes, and we close too. */
static void expect_refused(int fd, Punchline__ErrorCode code)
{
    expect_error(fd, code);
    expect_closed(fd);
    close(fd);
}

/* A Register for name by key, signed over nonce (sig and token storage from
 * the caller). */
static void make_register(Punchline__Register *reg, const char *name, const identity *key,
                          const uint8_t *nonce, uint8_t *sig)
{
    punchline__register__init(reg);
    reg->name = (char *)name;
    reg->client_version = "test";
    uint8_t msg[128];
    size_t ml = wire_register_sig_input(nonce, name, msg, sizeof(msg));
    cr_assert_gt(ml, 0);
    size_t sl = 0, pl = 0;
    cr_assert_eq(identity_sign(key, msg, ml, sig, &sl), 0);
    reg->public_key.data = (uint8_t *)identity_pub(key, &pl);
    reg->public_key.len = pl;
    reg->signature.data = sig;
    reg->signature.len = sl;
}

static void send_register(int fd, const char *name, const identity *key, const char *token)
{
    Punchline__Register reg;
    uint8_t sig[ID_SIG_MAX];
    make_register(&reg, name, key, nonces[fd], sig);
    if (token)
        reg.token = (char *)token;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_REGISTER;
    env.register_ = &reg;
    send_env(fd, &env);
}

/* Register name (key_a) with these candidates on fd. */
static void send_register_cands(int fd, const char *name, Punchline__Candidate **cands, size_t n)
{
    Punchline__Register reg;
    uint8_t sig[ID_SIG_MAX];
    make_register(&reg, name, key_a, nonces[fd], sig);
    reg.candidates = cands;
    reg.n_candidates = n;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_REGISTER;
    env.register_ = &reg;
    send_env(fd, &env);
}

static Punchline__RegisterResult *do_register_key(int fd, const char *name, const identity *key,
                                                  Punchline__Envelope **keep)
{
    send_register(fd, name, key, NULL);
    *keep = recv_env(fd);
    cr_assert_not_null(*keep);
    cr_assert_eq((*keep)->body_case, PUNCHLINE__ENVELOPE__BODY_REGISTER_RESULT, "got %s",
                 wire_body_name(*keep));
    return (*keep)->register_result;
}

static Punchline__RegisterResult *do_register(int fd, const char *name, Punchline__Envelope **keep)
{
    /* tests register many names; one key may hold any number of them */
    return do_register_key(fd, name, key_a, keep);
}

/* Bind the UDP side of a registration; returns the UDP socket. */
/* Send UdpBind{token, challenge}, padded as a peer pads it, from u; return
 * the UdpBound (caller frees). */
static Punchline__Envelope *udp_bind_once(int u, uint64_t token, uint64_t challenge)
{
    uint8_t buf[WIRE_UDPBIND_MIN + 16];
    int n = wire_encode_udp_bind(token, challenge, buf, sizeof(buf));
    cr_assert_eq(sendto(u, buf, (size_t)n, 0, &srv_addr.u.sa, srv_addr.len), n);
    cr_assert(pump_until_readable(u, 3000), "no UdpBound");
    uint8_t in[WIRE_UDP_MAX];
    ssize_t r = recv(u, in, sizeof(in), 0);
    Punchline__Envelope *rep = NULL;
    cr_assert_eq(wire_decode_udp(in, (size_t)r, &rep, NULL), WIRE_OK);
    cr_assert_eq(rep->body_case, PUNCHLINE__ENVELOPE__BODY_UDP_BOUND);
    cr_assert_leq((size_t)r, (size_t)n, "UdpBound larger than its request");
    return rep;
}

/* A UDP socket bound at the server for token: the first UdpBind gets a
 * challenge, the echo binds (PROTOCOL.md 3). */
static int udp_bind(uint64_t token, netaddr *observed)
{
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(u, (struct sockaddr *)&a, sizeof(a)), 0);
    Punchline__Envelope *rep = udp_bind_once(u, token, 0);
    uint64_t ch = rep->udp_bound->challenge;
    cr_assert_neq(ch, 0, "a new address must get a challenge first");
    wire_free(rep);
    rep = udp_bind_once(u, token, ch);
    cr_assert_eq(rep->udp_bound->challenge, 0, "the echoed challenge binds");
    cr_assert_eq(netaddr_from_endpoint(rep->udp_bound->observed_udp, observed), 0);
    wire_free(rep);
    /* bound: a plain refresh from the same address needs no challenge */
    rep = udp_bind_once(u, token, 0);
    cr_assert_eq(rep->udp_bound->challenge, 0);
    wire_free(rep);
    return u;
}

Test(rendezvous, other_version_gets_bad_version_then_close)
{
    int fd = tcp_client();
    /* Envelope{version=WIRE_VERSION + 1, register{name="x"}} hand-encoded: a future client */
    const uint8_t frame[] = {0, 0, 0, 7, 0x08, WIRE_VERSION + 1, 0x52, 0x03, 0x0a, 0x01, 'x'};
    send_raw(fd, frame, sizeof(frame));
    expect_refused(fd, PUNCHLINE__ERROR_CODE__BAD_VERSION);
}

Test(rendezvous, oversized_and_empty_frames_are_refused)
{
    const uint8_t big[] = {0xff, 0xff, 0xff, 0xff};
    const uint8_t over[] = {0, 0, (FRAME_MAX + 1) >> 8, (FRAME_MAX + 1) & 0xff};
    const uint8_t empty[] = {0, 0, 0, 0};
    const uint8_t *cases[] = {big, over, empty};
    for (size_t i = 0; i < 3; i++) {
        int fd = tcp_client();
        send_raw(fd, cases[i], 4);
        expect_refused(fd, PUNCHLINE__ERROR_CODE__MALFORMED);
    }
}

Test(rendezvous, garbage_is_malformed)
{
    int fd = tcp_client();
    const uint8_t frame[] = {0, 0, 0, 3, 0xff, 0xff, 0xff};
    send_raw(fd, frame, sizeof(frame));
    expect_refused(fd, PUNCHLINE__ERROR_CODE__MALFORMED);
}

Test(rendezvous, request_before_register_is_refused)
{
    int fd = tcp_client();
    Punchline__ConnectRequest cr = PUNCHLINE__CONNECT_REQUEST__INIT;
    cr.peer_name = "bob";
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_CONNECT_REQUEST;
    env.connect_request = &cr;
    send_env(fd, &env);
    expect_refused(fd, PUNCHLINE__ERROR_CODE__NOT_REGISTERED);
}

Test(rendezvous, register_reports_observed_endpoint_and_udp_binding)
{
    int fd = tcp_client();
    Punchline__Envelope *keep;
    Punchline__RegisterResult *rr = do_register(fd, "alice", &keep);
    struct sockaddr_in local;
    socklen_t sl = sizeof(local);
    getsockname(fd, (struct sockaddr *)&local, &sl);
    netaddr obs;
    cr_assert_eq(netaddr_from_endpoint(rr->observed_tcp, &obs), 0);
    cr_assert_eq(netaddr_port(&obs), ntohs(local.sin_port), "observed TCP port is not ours");
    cr_assert_neq(rr->udp_token, 0);
    cr_assert_gt(rr->keepalive_ms, 0);
    netaddr udp_obs;
    int u = udp_bind(rr->udp_token, &udp_obs);
    getsockname(u, (struct sockaddr *)&local, &sl);
    cr_assert_eq(netaddr_port(&udp_obs), ntohs(local.sin_port), "observed UDP port is not ours");
    wire_free(keep);
    close(u);
    close(fd);
}

Test(rendezvous, keepalive_is_echoed)
{
    int fd = tcp_client();
    Punchline__Envelope *keep;
    do_register(fd, "kim", &keep);
    wire_free(keep);
    Punchline__Keepalive ka = PUNCHLINE__KEEPALIVE__INIT;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_KEEPALIVE;
    env.keepalive = &ka;
    send_env(fd, &env);
    Punchline__Envelope *r = recv_env(fd);
    cr_assert_not_null(r);
    cr_assert_eq(r->body_case, PUNCHLINE__ENVELOPE__BODY_KEEPALIVE);
    wire_free(r);
    close(fd);
}

Test(rendezvous, name_in_use_and_bad_name)
{
    int a = tcp_client();
    Punchline__Envelope *keep;
    do_register(a, "alice", &keep);
    wire_free(keep);

    int b = tcp_client();
    send_register(b, "alice", key_b, NULL); /* another key */
    expect_refused(b, PUNCHLINE__ERROR_CODE__NAME_IN_USE);

    int c = tcp_client();
    send_register(c, "bad name\x01", key_b, NULL);
    expect_refused(c, PUNCHLINE__ERROR_CODE__BAD_NAME);

    /* once the holder leaves, the name is free again */
    close(a);
    for (int i = 0; i < 20; i++)
        ev_run(loop, EVRUN_NOWAIT), usleep(1000);
    int d = tcp_client();
    do_register(d, "alice", &keep);
    wire_free(keep);
    close(d);
}

static void send_connect_tr(int fd, const char *peer, uint32_t rid, Punchline__Transport tr)
{
    Punchline__ConnectRequest cr = PUNCHLINE__CONNECT_REQUEST__INIT;
    cr.peer_name = (char *)peer;
    cr.request_id = rid;
    cr.transport = tr;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_CONNECT_REQUEST;
    env.connect_request = &cr;
    send_env(fd, &env);
}

static void send_connect(int fd, const char *peer, uint32_t rid)
{
    send_connect_tr(fd, peer, rid, PUNCHLINE__TRANSPORT__TRANSPORT_UNKNOWN);
}

Test(rendezvous, connect_errors_carry_the_request_id)
{
    int a = tcp_client();
    Punchline__Envelope *keep;
    Punchline__RegisterResult *rr = do_register(a, "alice", &keep);
    netaddr obs;
    int u = udp_bind(rr->udp_token, &obs);
    wire_free(keep);

    send_connect(a, "nobody", 41);
    Punchline__Envelope *e = recv_env(a);
    cr_assert_not_null(e);
    cr_assert_eq(e->body_case, PUNCHLINE__ENVELOPE__BODY_ERROR);
    cr_assert_eq(e->error->code, PUNCHLINE__ERROR_CODE__UNKNOWN_PEER);
    cr_assert_eq(e->error->request_id, 41);
    cr_assert(strstr(e->error->text, "nobody"), "text names the peer: %s", e->error->text);
    wire_free(e);

    send_connect(a, "alice", 42);
    expect_error(a, PUNCHLINE__ERROR_CODE__SELF_CONNECT);

    /* bob registered but without UDP: a UDP-only connect is not possible */
    int b = tcp_client();
    do_register(b, "bob", &keep);
    wire_free(keep);
    send_connect_tr(a, "bob", 43, PUNCHLINE__TRANSPORT__UDP);
    expect_error(a, PUNCHLINE__ERROR_CODE__PEER_NOT_READY);
    close(b);
    close(u);
    close(a);
}

Test(rendezvous, connect_starts_both_sides)
{
    int a = tcp_client(), b = tcp_client();
    Punchline__Envelope *ka, *kb;
    Punchline__RegisterResult *ra = do_register(a, "alice", &ka);
    Punchline__RegisterResult *rb = do_register(b, "bob", &kb);
    netaddr oa, ob;
    int ua = udp_bind(ra->udp_token, &oa), ub = udp_bind(rb->udp_token, &ob);
    wire_free(ka);
    wire_free(kb);

    send_connect(a, "bob", 7);
    /* bob: IncomingConnection, Candidates, PunchStart(CONTROLLED) */
    Punchline__Envelope *in = recv_env(b), *cb = recv_env(b), *pb = recv_env(b);
    cr_assert_eq(in->body_case, PUNCHLINE__ENVELOPE__BODY_INCOMING);
    cr_assert_str_eq(in->incoming->peer_name, "alice");
    cr_assert_eq(cb->body_case, PUNCHLINE__ENVELOPE__BODY_CANDIDATES);
    cr_assert_geq(cb->candidates->n_candidates, 1);
    netaddr first;
    netaddr_from_endpoint(cb->candidates->candidates[0]->endpoint, &first);
    cr_assert(netaddr_equal(&first, &oa), "first candidate is alice's server-reflexive endpoint");
    cr_assert_eq(pb->body_case, PUNCHLINE__ENVELOPE__BODY_PUNCH_START);
    cr_assert_eq(pb->punch_start->role, PUNCHLINE__ROLE__CONTROLLED);
    /* alice: Candidates, PunchStart(CONTROLLING) with her request id */
    Punchline__Envelope *ca = recv_env(a), *pa = recv_env(a);
    cr_assert_eq(ca->body_case, PUNCHLINE__ENVELOPE__BODY_CANDIDATES);
    cr_assert_eq(ca->candidates->request_id, 7);
    cr_assert_eq(pa->body_case, PUNCHLINE__ENVELOPE__BODY_PUNCH_START);
    cr_assert_eq(pa->punch_start->role, PUNCHLINE__ROLE__CONTROLLING);
    cr_assert_eq(pa->punch_start->request_id, 7);
    cr_assert_eq(pa->punch_start->session_id, pb->punch_start->session_id);
    cr_assert_eq(pa->punch_start->session_id, in->incoming->session_id);
    cr_assert_eq(pa->punch_start->secret.len, WIRE_SECRET_LEN);
    cr_assert_eq(memcmp(pa->punch_start->secret.data, pb->punch_start->secret.data, WIRE_SECRET_LEN), 0);
    wire_free(in), wire_free(cb), wire_free(pb), wire_free(ca), wire_free(pa);
    close(ua), close(ub), close(a), close(b);
}

Test(rendezvous, unregistered_connection_times_out)
{
    int fd = tcp_client();
    /* register_deadline_ms is 1000 in this suite; the tick runs every second */
    expect_closed(fd);
    close(fd);
}

Test(rendezvous, udp_noise_is_ignored_and_server_keeps_serving)
{
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    const uint8_t noise[][8] = {{0}, {0x00, 0x01, 0, 0}, {22, 3, 1}, {0x0c, 0xff, 0xff}, {0x0c}};
    const size_t lens[] = {0, 4, 3, 3, 1};
    for (size_t i = 0; i < 5; i++)
        sendto(u, noise[i], lens[i], 0, &srv_addr.u.sa, srv_addr.len);
    /* unknown token: silently dropped */
    Punchline__UdpBind ubm = PUNCHLINE__UDP_BIND__INIT;
    ubm.udp_token = 12345;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_UDP_BIND;
    env.udp_bind = &ubm;
    uint8_t buf[64];
    int n = wire_encode_udp(&env, buf, sizeof(buf));
    sendto(u, buf, (size_t)n, 0, &srv_addr.u.sa, srv_addr.len);
    cr_assert_not(pump_until_readable(u, 300), "the server answered noise or an unknown token");
    close(u);
    int fd = tcp_client();
    Punchline__Envelope *keep;
    do_register(fd, "still-serving", &keep);
    wire_free(keep);
    close(fd);
}

/* STUN Binding (RFC 8489) on the rendezvous UDP port: the success names
 * the client's own address; an unknown comprehension-required attribute
 * gets 420; a request with a bad FINGERPRINT gets nothing. */
Test(rendezvous, stun_binding_requests_are_answered)
{
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(u, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t sl = sizeof(a);
    getsockname(u, (struct sockaddr *)&a, &sl);

    uint8_t req[20] = {0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    sendto(u, req, sizeof(req), 0, &srv_addr.u.sa, srv_addr.len);
    cr_assert(pump_until_readable(u, 3000), "no STUN answer");
    uint8_t in[256];
    ssize_t n = recv(u, in, sizeof(in), 0);
    stun_msg m;
    cr_assert_eq(stun_parse(in, (size_t)n, &m), STUN_OK);
    cr_assert_eq(m.type, STUN_BINDING_SUCCESS);
    cr_assert_eq(memcmp(m.tid, req + 8, 12), 0);
    cr_assert(m.has_xor_mapped);
    cr_assert_eq(netaddr_port(&m.xor_mapped), ntohs(a.sin_port), "the reflexive port is ours");

    uint8_t unk[28] = {0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42, 7, 7, 7};
    unk[20] = 0x7f, unk[23] = 4;
    sendto(u, unk, sizeof(unk), 0, &srv_addr.u.sa, srv_addr.len);
    cr_assert(pump_until_readable(u, 3000), "no 420");
    n = recv(u, in, sizeof(in), 0);
    cr_assert_eq(stun_parse(in, (size_t)n, &m), STUN_OK);
    cr_assert_eq(m.type, STUN_BINDING_ERROR);
    cr_assert_eq(in[26] * 100 + in[27], 420);

    uint8_t badfp[28] = {0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42, 8, 8, 8};
    badfp[20] = 0x80, badfp[21] = 0x28, badfp[23] = 4, badfp[24] = 1;
    sendto(u, badfp, sizeof(badfp), 0, &srv_addr.u.sa, srv_addr.len);
    cr_assert_not(pump_until_readable(u, 300), "answered a request with a bad FINGERPRINT");
    close(u);
}

/* ---- anti-amplification (docs/PROTOCOL.md 3 and 3.1) --------------------- */

/* A UDP socket on the loopback address of the server's family. */
static int udp_socket(void)
{
    int fam = srv_addr.u.sa.sa_family;
    int u = socket(fam, SOCK_DGRAM, 0);
    cr_assert_geq(u, 0);
    netaddr a;
    cr_assert_eq(netaddr_parse(fam == AF_INET ? "127.0.0.1:0" : "[::1]:0", &a, false), 0);
    cr_assert_eq(bind(u, &a.u.sa, a.len), 0, "bind: %s", strerror(errno));
    return u;
}

/* Sends req (n bytes) from u and checks whatever comes back against the
 * bound of PROTOCOL.md 3: a punchline reply at most 1x its request, a STUN
 * reply at most 3x (RFC 9000 s8.1).  want is the reply expected: a body
 * case for punchline, a STUN message type, or 0 for none.  Returns the reply
 * length (0: none), the reply in in[0..1500). */
static size_t amp_check(const char *what, int u, const uint8_t *req, size_t n, int want,
                        uint8_t *in)
{
    cr_assert_eq(sendto(u, req, n, 0, &srv_addr.u.sa, srv_addr.len), (ssize_t)n);
    size_t r = 0;
    /* a reply comes within a few ms on loopback; "none" waits 300 */
    if (pump_until_readable(u, want ? 3000 : 300)) {
        ssize_t got = recv(u, in, 1500, 0);
        cr_assert_gt(got, 0);
        r = (size_t)got;
    }
    bool stun = n > 0 && req[0] <= 3;
    cr_log_info("%-44s request %3zu B, reply %3zu B, %.2fx", what, n, r, (double)r / (double)n);
    cr_assert_leq(r, (stun ? 3 : 1) * n, "%s: %zu-byte reply to %zu bytes", what, r, n);
    if (!want) {
        cr_assert_eq(r, 0, "%s: answered", what);
        return 0;
    }
    cr_assert_gt(r, 0, "%s: no reply", what);
    if (stun) {
        stun_msg m;
        cr_assert_eq(stun_parse(in, r, &m), STUN_OK, "%s", what);
        cr_assert_eq(m.type, want, "%s: STUN type %04x", what, m.type);
        cr_assert_eq(memcmp(m.tid, req + 8, 12), 0);
    } else {
        Punchline__Envelope *e = NULL;
        cr_assert_eq(wire_decode_udp(in, r, &e, NULL), WIRE_OK, "%s", what);
        cr_assert_eq((int)e->body_case, want, "%s: got %s", what, wire_body_name(e));
        wire_free(e);
    }
    return r;
}

/* The challenge of the UdpBound in in[0..n). */
static uint64_t bound_challenge(const uint8_t *in, size_t n)
{
    Punchline__Envelope *e = NULL;
    cr_assert_eq(wire_decode_udp(in, n, &e, NULL), WIRE_OK);
    uint64_t ch = e->udp_bound->challenge;
    wire_free(e);
    return ch;
}

/* A STUN Binding request with nu unknown comprehension-required attributes
 * (empty values), FINGERPRINT last if fp; returns its length. */
static size_t stun_request(uint8_t *b, uint8_t tid, size_t nu, bool fp)
{
    size_t n = STUN_HEADER;
    memset(b, 0, 128);
    b[1] = 0x01; /* Binding request */
    b[4] = 0x21, b[5] = 0x12, b[6] = 0xa4, b[7] = 0x42;
    memset(b + 8, tid, 12);
    for (size_t i = 0; i < nu; i++, n += 4)
        b[n] = 0x7f, b[n + 1] = (uint8_t)i; /* 0x7f0i, length 0 */
    if (fp) {
        size_t body = n + 8 - STUN_HEADER;
        b[2] = (uint8_t)(body >> 8), b[3] = (uint8_t)body;
        b[n] = 0x80, b[n + 1] = 0x28, b[n + 3] = 4;
        uint32_t crc = stun_fingerprint(b, n);
        b[n + 4] = (uint8_t)(crc >> 24), b[n + 5] = (uint8_t)(crc >> 16);
        b[n + 6] = (uint8_t)(crc >> 8), b[n + 7] = (uint8_t)crc;
        return n + 8;
    }
    b[2] = (uint8_t)((n - STUN_HEADER) >> 8), b[3] = (uint8_t)(n - STUN_HEADER);
    return n;
}

/* Every kind of unauthenticated datagram the server answers, and its
 * nearest neighbours that it must not answer.  Each reply is checked
 * against its bound; the honest, padded UdpBind must get its UdpBound (so
 * the bound cannot hold by the server going quiet). */
static void amplification_cases(void)
{
    const int BOUND = PUNCHLINE__ENVELOPE__BODY_UDP_BOUND, ERR = PUNCHLINE__ENVELOPE__BODY_ERROR;
    int fd = tcp_client();
    Punchline__Envelope *keep;
    uint64_t token = do_register(fd, "amp", &keep)->udp_token;
    wire_free(keep);
    uint8_t req[128], in[1500];
    size_t n, r;

    /* the smallest UdpBind a client can send (14 bytes, no padding): its
     * challenge reply would be 26 (IPv4) or 38 (IPv6) bytes, so none */
    Punchline__UdpBind ub = PUNCHLINE__UDP_BIND__INIT;
    ub.udp_token = token;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_UDP_BIND;
    env.udp_bind = &ub;
    int small = wire_encode_udp(&env, req, sizeof(req));
    cr_assert_eq(small, 14);
    int u = udp_socket();
    amp_check("UdpBind unpadded, new address", u, req, (size_t)small, 0, in);

    /* the peer's padded UdpBind: challenge, then bound, then a refresh */
    n = (size_t)wire_encode_udp_bind(token, 0, req, sizeof(req));
    cr_assert_eq(n, WIRE_UDPBIND_MIN);
    r = amp_check("UdpBind padded, new address (challenge)", u, req, n, BOUND, in);
    uint64_t ch = bound_challenge(in, r);
    cr_assert_neq(ch, 0, "a new address gets a challenge");
    n = (size_t)wire_encode_udp_bind(token, ch, req, sizeof(req));
    r = amp_check("UdpBind padded, challenge echoed (bound)", u, req, n, BOUND, in);
    cr_assert_eq(bound_challenge(in, r), 0, "the honest peer is bound");
    n = (size_t)wire_encode_udp_bind(token, 0, req, sizeof(req));
    r = amp_check("UdpBind padded, refresh", u, req, n, BOUND, in);
    cr_assert_eq(bound_challenge(in, r), 0);
    /* an unpadded refresh from the bound address: UdpBound (17/29 bytes)
     * would be larger than 14, so none */
    wire_encode_udp(&env, req, sizeof(req));
    amp_check("UdpBind unpadded, bound address (refresh)", u, req, (size_t)small, 0, in);
    n = (size_t)wire_encode_udp_bind(token ^ 0x5a5a, 0, req, sizeof(req));
    amp_check("UdpBind padded, unknown token", u, req, n, 0, in);

    /* another protocol version: Error{BAD_VERSION} with its text (42 bytes)
     * when the request is that large, without (8) when it is not, none
     * below 8 bytes */
    n = (size_t)wire_encode_udp_bind(token, 0, req, sizeof(req));
    cr_assert(req[1] == 0x08 && req[2] == WIRE_VERSION, "version is the first field");
    req[2] = WIRE_VERSION + 1;
    r = amp_check("another version, padded UdpBind", u, req, n, ERR, in);
    cr_assert_eq(r, 42);
    Punchline__Envelope *ev = NULL;
    cr_assert_eq(wire_decode_udp(in, r, &ev, NULL), WIRE_OK);
    char want[64];
    snprintf(want, sizeof(want), "server speaks protocol version %d", WIRE_VERSION);
    cr_assert_str_eq(ev->error->text, want);
    wire_free(ev);
    wire_encode_udp(&env, req, sizeof(req));
    req[2] = WIRE_VERSION + 1;
    r = amp_check("another version, unpadded UdpBind", u, req, (size_t)small, ERR, in);
    cr_assert_eq(r, 8, "BAD_VERSION without its text");
    const uint8_t v2[] = {WIRE_UDP_MARKER, 0x08, WIRE_VERSION + 1};
    amp_check("another version, envelope alone", u, v2, sizeof(v2), 0, in);

    /* malformed punchline datagrams are never answered over UDP */
    const uint8_t bad[] = {WIRE_UDP_MARKER, 0xff, 0xff};
    amp_check("malformed punchline, 3 B", u, bad, sizeof(bad), 0, in);
    memset(req, 0xff, sizeof(req));
    req[0] = WIRE_UDP_MARKER;
    amp_check("malformed punchline, 128 B", u, req, sizeof(req), 0, in);
    /* a UdpBind with 65 padding bytes: out of bounds */
    uint8_t zeros[WIRE_MAX_PADDING + 1] = {0};
    ub.padding.data = zeros;
    ub.padding.len = sizeof(zeros);
    n = (size_t)wire_encode_udp(&env, req, sizeof(req));
    amp_check("UdpBind, padding over 64 bytes", u, req, n, 0, in);

    /* STUN (RFC 8489), at most 3x: success 32/44 bytes for 20 */
    n = stun_request(req, 1, 0, false);
    amp_check("STUN Binding", u, req, n, STUN_BINDING_SUCCESS, in);
    n = stun_request(req, 2, 0, true);
    amp_check("STUN Binding + FINGERPRINT", u, req, n, STUN_BINDING_SUCCESS, in);
    n = stun_request(req, 3, 1, false);
    amp_check("STUN unknown attribute (420)", u, req, n, STUN_BINDING_ERROR, in);
    n = stun_request(req, 4, 1, true);
    amp_check("STUN unknown attribute + FINGERPRINT (420)", u, req, n, STUN_BINDING_ERROR, in);
    n = stun_request(req, 5, STUN_MAX_UNKNOWN + 2, false);
    amp_check("STUN 10 unknown attributes (420)", u, req, n, STUN_BINDING_ERROR, in);

    /* relayed datagram for a session that does not exist; DTLS; unknown */
    wire_relay_header(req, 0x1234567890abcdefULL);
    req[WIRE_RELAY_HDR] = WIRE_UDP_MARKER;
    amp_check("relay header, unknown session", u, req, WIRE_RELAY_HDR + 1, 0, in);
    const uint8_t dtls[] = {22, 0xfe, 0xfd, 0, 0}, other[] = {0x99, 1, 2, 3};
    amp_check("DTLS record", u, dtls, sizeof(dtls), 0, in);
    amp_check("unknown first byte", u, other, sizeof(other), 0, in);
    close(u);
    close(fd);
}

Test(rendezvous, udp_replies_never_amplify)
{
    amplification_cases();
}

/* The same over IPv6, where UdpBound is largest (38 bytes with a challenge). */
Test(rendezvous, udp_replies_never_amplify_ipv6)
{
    server_free(srv);
    server_config cfg = {.log_level = SRV_LOG_ERROR, .register_deadline_ms = 1000};
    cr_assert_eq(netaddr_parse("[::1]:0", &cfg.listen, false), 0);
    char err[256];
    srv = server_new(loop, &cfg, err, sizeof(err));
    if (!srv)
        cr_skip_test("no IPv6 loopback here: %s", err);
    server_local_addr(srv, &srv_addr);
    amplification_cases();
}

/* ---- relay (docs/PROTOCOL.md 5) ----------------------------------------- */

typedef struct pair {
    int a, b;            /* control connections: alice (caller), bob */
    int ua, ub;          /* their UDP sockets, bound at the server */
    netaddr oa, ob;
    uint64_t sid;
    uint8_t secret[WIRE_SECRET_LEN];
    size_t relay_udp, relay_tcp; /* RELAY candidates alice got */
    uint64_t token_b;            /* bob's udp_token */
} pair;

/* Caller an and callee bn register (bn optionally without UDP) and an
 * connects to bn. */
static void make_pair_names(pair *p, const char *an, const char *bn, bool bob_udp,
                            Punchline__Transport tr)
{
    Punchline__Envelope *ka, *kb;
    p->a = tcp_client();
    p->b = tcp_client();
    Punchline__RegisterResult *ra = do_register(p->a, an, &ka);
    Punchline__RegisterResult *rb = do_register_key(p->b, bn, key_b, &kb);
    p->ua = udp_bind(ra->udp_token, &p->oa);
    p->ub = bob_udp ? udp_bind(rb->udp_token, &p->ob) : -1;
    p->token_b = rb->udp_token;
    wire_free(ka);
    wire_free(kb);
    send_connect_tr(p->a, bn, 9, tr);
    for (int i = 0; i < 3; i++)
        wire_free(recv_env(p->b)); /* Incoming, Candidates, PunchStart */
    Punchline__Envelope *ca = recv_env(p->a), *pa = recv_env(p->a);
    cr_assert_eq(ca->body_case, PUNCHLINE__ENVELOPE__BODY_CANDIDATES);
    cr_assert_eq(pa->body_case, PUNCHLINE__ENVELOPE__BODY_PUNCH_START);
    p->relay_udp = p->relay_tcp = 0;
    for (size_t i = 0; i < ca->candidates->n_candidates; i++) {
        const Punchline__Candidate *c = ca->candidates->candidates[i];
        if (c->kind == PUNCHLINE__CANDIDATE_KIND__RELAY)
            *(c->transport == PUNCHLINE__TRANSPORT__UDP ? &p->relay_udp : &p->relay_tcp) += 1;
        else
            cr_assert_neq(tr, PUNCHLINE__TRANSPORT__TRANSPORT_RELAY,
                          "a relay-only session must not carry punching candidates");
    }
    p->sid = pa->punch_start->session_id;
    memcpy(p->secret, pa->punch_start->secret.data, WIRE_SECRET_LEN);
    /* the caller learns the key bob registered with: what its DTLS checks */
    cr_assert_eq(pa->punch_start->peer_key_hash.len, ID_HASH_LEN);
    cr_assert_arr_eq(pa->punch_start->peer_key_hash.data, identity_hash(key_b), ID_HASH_LEN);
    wire_free(ca);
    wire_free(pa);
}

/* alice and bob register (bob optionally without UDP) and alice connects. */
static void make_pair(pair *p, bool bob_udp, Punchline__Transport tr)
{
    make_pair_names(p, "alice", "bob", bob_udp, tr);
}

static void free_pair(pair *p)
{
    close(p->a), close(p->b), close(p->ua);
    if (p->ub >= 0)
        close(p->ub);
}

static void send_relayed(int u, uint64_t sid, const char *payload)
{
    uint8_t buf[256];
    size_t n = strlen(payload);
    wire_relay_header(buf, sid);
    buf[WIRE_RELAY_HDR] = WIRE_UDP_MARKER;
    memcpy(buf + WIRE_RELAY_HDR + 1, payload, n);
    cr_assert_eq(sendto(u, buf, WIRE_RELAY_HDR + 1 + n, 0, &srv_addr.u.sa, srv_addr.len),
                 (ssize_t)(WIRE_RELAY_HDR + 1 + n));
}

/* The next datagram on u must be the relayed one with this session and payload. */
static void expect_relayed(int u, uint64_t sid, const char *payload)
{
    cr_assert(pump_until_readable(u, 2000), "nothing relayed");
    uint8_t in[512];
    struct sockaddr_storage from;
    socklen_t fl = sizeof(from);
    ssize_t r = recvfrom(u, in, sizeof(in), 0, (struct sockaddr *)&from, &fl);
    netaddr f;
    netaddr_from_sockaddr(&f, (struct sockaddr *)&from, fl);
    cr_assert(netaddr_equal(&f, &srv_addr), "relayed datagrams come from the server");
    uint64_t got;
    cr_assert(wire_relay_session(in, (size_t)r, &got));
    cr_assert_eq(got, sid);
    cr_assert_eq((size_t)r, WIRE_RELAY_HDR + 1 + strlen(payload), "forwarded unchanged");
    cr_assert_eq(memcmp(in + WIRE_RELAY_HDR + 1, payload, strlen(payload)), 0);
}

Test(rendezvous, relay_udp_forwards_only_between_the_paired_endpoints)
{
    pair p;
    make_pair(&p, true, PUNCHLINE__TRANSPORT__TRANSPORT_UNKNOWN);
    cr_assert_eq(p.relay_udp, 1, "relay-udp offered when both sides have UDP");
    cr_assert_eq(p.relay_tcp, 1, "relay-tcp offered");
    send_relayed(p.ua, p.sid, "a->b");
    expect_relayed(p.ub, p.sid, "a->b");
    send_relayed(p.ub, p.sid, "b->a");
    expect_relayed(p.ua, p.sid, "b->a");

    /* a third host with the real session id, and with guessed ones: nothing
     * goes anywhere, and the counters say why */
    const relay_stats *st = server_relay_stats(srv);
    uint64_t bad0 = st->drop_bad_source, unk0 = st->drop_unknown_session, fw0 = st->udp_packets;
    int x = socket(AF_INET, SOCK_DGRAM, 0);
    for (int i = 0; i < 5; i++)
        send_relayed(x, p.sid, "hijack");
    for (uint64_t g = 1; g <= 5; g++)
        send_relayed(x, p.sid ^ g, "guess");
    cr_assert_not(pump_until_readable(p.ub, 300), "bob got a datagram from a third host");
    cr_assert_not(pump_until_readable(p.ua, 50), "alice got a datagram from a third host");
    cr_assert_not(pump_until_readable(x, 50), "the third host got an answer");
    cr_assert_eq(st->drop_bad_source - bad0, 5);
    cr_assert_eq(st->drop_unknown_session - unk0, 5);
    cr_assert_eq(st->udp_packets, fw0);
    close(x);
    free_pair(&p);
}

Test(rendezvous, relay_only_session_and_peer_without_udp)
{
    pair p;
    make_pair(&p, false, PUNCHLINE__TRANSPORT__TRANSPORT_RELAY);
    cr_assert_eq(p.relay_udp, 0, "no relay-udp when bob has no UDP endpoint");
    cr_assert_eq(p.relay_tcp, 1, "relay-tcp still offered");
    /* alice's relayed datagrams have nowhere to go */
    uint64_t nd0 = server_relay_stats(srv)->drop_no_destination;
    send_relayed(p.ua, p.sid, "nobody there");
    pump_until_readable(p.ua, 100);
    cr_assert_eq(server_relay_stats(srv)->drop_no_destination, nd0 + 1);
    free_pair(&p);
}

static int open_relay(uint64_t sid, const uint8_t *secret, int role, bool good_mac)
{
    int fd = tcp_client();
    Punchline__RelayOpen ro = PUNCHLINE__RELAY_OPEN__INIT;
    uint8_t mac[WIRE_MAC_LEN];
    wire_relay_mac(secret, sid, role, mac);
    if (!good_mac)
        mac[3] ^= 0x40;
    ro.session_id = sid;
    ro.role = role;
    ro.mac.data = mac;
    ro.mac.len = sizeof(mac);
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_RELAY_OPEN;
    env.relay_open = &ro;
    send_env(fd, &env);
    return fd;
}

static void expect_ready(int fd, uint64_t sid)
{
    Punchline__Envelope *e = recv_env(fd);
    cr_assert_not_null(e, "relay connection closed instead of RelayReady");
    cr_assert_eq(e->body_case, PUNCHLINE__ENVELOPE__BODY_RELAY_READY, "got %s", wire_body_name(e));
    cr_assert_eq(e->relay_ready->session_id, sid);
    wire_free(e);
}

/* Read exactly n bytes from fd, stepping the server. */
static void read_exact(int fd, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        cr_assert(pump_until_readable(fd, 3000), "splice stalled after %zu of %zu bytes", got, n);
        ssize_t r = recv(fd, buf + got, n - got, 0);
        cr_assert_gt(r, 0, "relay connection closed after %zu of %zu bytes", got, n);
        got += (size_t)r;
    }
}

Test(rendezvous, relay_tcp_needs_the_session_mac_and_splices_both_ways)
{
    pair p;
    make_pair(&p, true, PUNCHLINE__TRANSPORT__TRANSPORT_UNKNOWN);
    /* refused: bad MAC, unknown session */
    int bad = open_relay(p.sid, p.secret, PUNCHLINE__ROLE__CONTROLLING, false);
    expect_refused(bad, PUNCHLINE__ERROR_CODE__RELAY_REFUSED);
    int unk = open_relay(p.sid ^ 1, p.secret, PUNCHLINE__ROLE__CONTROLLING, true);
    expect_error(unk, PUNCHLINE__ERROR_CODE__RELAY_REFUSED);
    close(unk);

    int ra = open_relay(p.sid, p.secret, PUNCHLINE__ROLE__CONTROLLING, true);
    /* nothing until the other side is attached */
    cr_assert_not(pump_until_readable(ra, 200), "RelayReady before both sides attached");
    /* the same side again: refused (first attach wins) */
    int dup = open_relay(p.sid, p.secret, PUNCHLINE__ROLE__CONTROLLING, true);
    expect_error(dup, PUNCHLINE__ERROR_CODE__RELAY_REFUSED);
    close(dup);
    int rb = open_relay(p.sid, p.secret, PUNCHLINE__ROLE__CONTROLLED, true);
    expect_ready(ra, p.sid);
    expect_ready(rb, p.sid);

    /* 1 MiB each way, bytes unchanged and in order (backpressure on the way) */
    enum { N = 1 << 20 };
    static uint8_t out[N], in[N];
    for (size_t i = 0; i < N; i++)
        out[i] = (uint8_t)(i * 7 + (i >> 11));
    size_t sent = 0, got = 0;
    fcntl(ra, F_SETFL, O_NONBLOCK);
    while (got < N) {
        if (sent < N) {
            ssize_t w = send(ra, out + sent, N - sent, MSG_NOSIGNAL);
            if (w > 0)
                sent += (size_t)w;
        }
        ev_run(loop, EVRUN_NOWAIT);
        ssize_t r = recv(rb, in + got, N - got, MSG_DONTWAIT);
        if (r > 0)
            got += (size_t)r;
    }
    cr_assert_eq(memcmp(in, out, N), 0, "spliced bytes differ");
    send_raw(rb, "pong", 4);
    uint8_t back[4];
    read_exact(ra, back, 4);
    cr_assert_eq(memcmp(back, "pong", 4), 0);
    cr_assert_geq(server_relay_stats(srv)->tcp_bytes, (uint64_t)N + 4);

    /* one side leaves: the other is closed after its queue is flushed */
    close(ra);
    expect_closed(rb);
    close(rb);
    free_pair(&p);
}

Test(rendezvous, relay_off_refuses_relay_only_connects)
{
    server_free(srv);
    server_config cfg = {.log_level = SRV_LOG_ERROR, .relay_off = 1};
    cr_assert_eq(netaddr_parse("127.0.0.1:0", &cfg.listen, false), 0);
    char err[256];
    srv = server_new(loop, &cfg, err, sizeof(err));
    cr_assert_not_null(srv, "server_new: %s", err);
    server_local_addr(srv, &srv_addr);
    int a = tcp_client(), b = tcp_client();
    Punchline__Envelope *ka, *kb;
    Punchline__RegisterResult *ra = do_register(a, "alice", &ka);
    Punchline__RegisterResult *rb = do_register(b, "bob", &kb);
    netaddr oa, ob;
    int ua = udp_bind(ra->udp_token, &oa), ub = udp_bind(rb->udp_token, &ob);
    wire_free(ka);
    wire_free(kb);
    send_connect_tr(a, "bob", 5, PUNCHLINE__TRANSPORT__TRANSPORT_RELAY);
    expect_error(a, PUNCHLINE__ERROR_CODE__UNSUPPORTED);
    /* auto still works, without RELAY candidates */
    send_connect(a, "bob", 6);
    Punchline__Envelope *ca = recv_env(a);
    cr_assert_eq(ca->body_case, PUNCHLINE__ENVELOPE__BODY_CANDIDATES);
    for (size_t i = 0; i < ca->candidates->n_candidates; i++)
        cr_assert_neq(ca->candidates->candidates[i]->kind, PUNCHLINE__CANDIDATE_KIND__RELAY);
    cr_assert_null(server_relay_stats(srv));
    wire_free(ca);
    close(ua), close(ub), close(a), close(b);
}

Test(rendezvous, udp_or_tcp_only_sessions_get_no_relay)
{
    const Punchline__Transport trs[] = {PUNCHLINE__TRANSPORT__UDP, PUNCHLINE__TRANSPORT__TCP};
    for (size_t i = 0; i < 2; i++) {
        uint64_t before = server_relay_stats(srv)->sessions_created;
        pair p;
        make_pair(&p, true, trs[i]);
        cr_assert_eq(p.relay_udp + p.relay_tcp, 0, "transport %d: RELAY candidates offered", trs[i]);
        cr_assert_eq(server_relay_stats(srv)->sessions_created, before, "relay session created");
        free_pair(&p);
        /* let the server see both control connections close (names free again) */
        for (int k = 0; k < 50; k++) {
            ev_run(loop, EVRUN_NOWAIT);
            usleep(1000);
        }
    }
}

/* A UdpBind with bob's token from another address (spoofed, or an attacker
 * that learned the token) only gets a challenge there: bob's relayed traffic
 * keeps going to bob.  A wrong echo binds nothing either. */
Test(rendezvous, udp_bind_from_another_address_needs_the_challenge)
{
    pair p;
    make_pair(&p, true, PUNCHLINE__TRANSPORT__TRANSPORT_UNKNOWN);
    int x = socket(AF_INET, SOCK_DGRAM, 0);
    /* x claims bob's token without the challenge, then with a wrong one */
    Punchline__Envelope *r1 = udp_bind_once(x, p.token_b, 0);
    cr_assert_neq(r1->udp_bound->challenge, 0);
    Punchline__Envelope *r2 = udp_bind_once(x, p.token_b, r1->udp_bound->challenge ^ 1);
    cr_assert_neq(r2->udp_bound->challenge, 0, "a wrong echo does not bind");
    wire_free(r1);
    wire_free(r2);
    /* bob's binding is unchanged: a refresh from his socket needs no challenge */
    Punchline__Envelope *r3 = udp_bind_once(p.ub, p.token_b, 0);
    cr_assert_eq(r3->udp_bound->challenge, 0, "bob's address was moved");
    wire_free(r3);
    /* and the relay still forwards between alice and bob's real sockets */
    send_relayed(p.ua, p.sid, "still to bob");
    expect_relayed(p.ub, p.sid, "still to bob");
    close(x);
    free_pair(&p);
}

/* ---- identity and access control (docs/SECURITY.md) ---------------------- */

Test(rendezvous, register_needs_key_and_valid_signature)
{
    int a = tcp_client();
    Punchline__Register reg = PUNCHLINE__REGISTER__INIT;
    reg.name = "nokey";
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_REGISTER;
    env.register_ = &reg;
    send_env(a, &env);
    expect_refused(a, PUNCHLINE__ERROR_CODE__AUTH_FAILED);

    /* signature by another key than the one presented */
    int b = tcp_client();
    uint8_t sig[ID_SIG_MAX];
    make_register(&reg, "mixed", key_b, nonces[b], sig);
    size_t pl;
    reg.public_key.data = (uint8_t *)identity_pub(key_a, &pl);
    reg.public_key.len = pl;
    send_env(b, &env);
    expect_refused(b, PUNCHLINE__ERROR_CODE__AUTH_FAILED);
}

Test(rendezvous, replayed_register_fails_on_another_connection)
{
    /* A Register recorded on connection 1 (signed over its nonce) ... */
    int a = tcp_client();
    Punchline__Register reg;
    uint8_t sig[ID_SIG_MAX];
    make_register(&reg, "victim", key_a, nonces[a], sig);
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_REGISTER;
    env.register_ = &reg;
    /* ... replayed by someone else on connection 2 */
    int b = tcp_client();
    cr_assert(memcmp(nonces[a], nonces[b], WIRE_NONCE_LEN) != 0, "nonces must be fresh");
    send_env(b, &env);
    expect_refused(b, PUNCHLINE__ERROR_CODE__AUTH_FAILED);
    /* ... and from another address (127.0.0.2) */
    int c = connect_from("127.0.0.2");
    expect_body(c, PUNCHLINE__ENVELOPE__BODY_SERVER_HELLO);
    send_env(c, &env);
    expect_refused(c, PUNCHLINE__ERROR_CODE__AUTH_FAILED);
    /* the genuine one on its own connection works */
    send_env(a, &env);
    Punchline__Envelope *r = recv_env(a);
    cr_assert_not_null(r);
    cr_assert_eq(r->body_case, PUNCHLINE__ENVELOPE__BODY_REGISTER_RESULT, "got %s", wire_body_name(r));
    wire_free(r);
    close(a);
}

Test(rendezvous, same_key_replaces_its_registration_other_key_cannot)
{
    int a = tcp_client();
    Punchline__Envelope *keep;
    do_register_key(a, "carol", key_a, &keep);
    wire_free(keep);
    int b = tcp_client();
    send_register(b, "carol", key_b, NULL);
    expect_refused(b, PUNCHLINE__ERROR_CODE__NAME_IN_USE);
    /* carol restarted: same key, new connection; the old one is told and closed */
    int c = tcp_client();
    do_register_key(c, "carol", key_a, &keep);
    wire_free(keep);
    expect_refused(a, PUNCHLINE__ERROR_CODE__NAME_IN_USE);
    close(c);
}

Test(rendezvous, token_required_when_configured)
{
    /* a second server with an access secret */
    static const uint8_t secret[] = "0123456789abcdef-test-secret";
    server_config cfg = {.log_level = SRV_LOG_ERROR, .auth_secret = secret,
                         .auth_secret_len = sizeof(secret) - 1};
    cr_assert_eq(netaddr_parse("127.0.0.1:0", &cfg.listen, false), 0);
    char err[256];
    server *s2 = server_new(loop, &cfg, err, sizeof(err));
    cr_assert_not_null(s2, "%s", err);
    netaddr keep_addr = srv_addr;
    server_local_addr(s2, &srv_addr); /* tcp_client() connects to srv_addr */

    char tok[TOKEN_MAX_LEN], other[TOKEN_MAX_LEN], old[TOKEN_MAX_LEN];
    uint64_t now = (uint64_t)time(NULL);
    cr_assert_eq(token_mint(secret, sizeof(secret) - 1, "dave", now + 600, tok, sizeof(tok)), 0);
    cr_assert_eq(token_mint(secret, sizeof(secret) - 1, "erin", now + 600, other, sizeof(other)), 0);
    cr_assert_eq(token_mint(secret, sizeof(secret) - 1, "dave", now - 10, old, sizeof(old)), 0);
    const char *bad[] = {NULL, other, old, "123.00"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int fd = tcp_client();
        send_register(fd, "dave", key_a, bad[i]);
        expect_refused(fd, PUNCHLINE__ERROR_CODE__AUTH_FAILED);
    }
    int fd = tcp_client();
    send_register(fd, "dave", key_a, tok);
    Punchline__Envelope *r = recv_env(fd);
    cr_assert_not_null(r);
    cr_assert_eq(r->body_case, PUNCHLINE__ENVELOPE__BODY_REGISTER_RESULT, "got %s", wire_body_name(r));
    wire_free(r);
    close(fd);
    srv_addr = keep_addr;
    server_free(s2);
}

/* One UDP candidate of `kind` at a, storage from the caller. */
static void udp_candidate(Punchline__Candidate *c, Punchline__Endpoint *ep, uint8_t *ip,
                          const netaddr *a, int kind)
{
    punchline__candidate__init(c);
    netaddr_to_endpoint(a, ep, ip);
    c->endpoint = ep;
    c->kind = kind;
    c->transport = PUNCHLINE__TRANSPORT__UDP;
}

/* A reflexive address a peer learned from a STUN server travels to the other
 * peer as SERVER_REFLEXIVE (after the server's own observation), its
 * interface addresses as HOST; a reported reflexive address equal to the
 * observed one is not repeated. */
Test(rendezvous, peer_reported_reflexive_candidates)
{
    int a = tcp_client(), b = tcp_client();
    Punchline__Register reg;
    uint8_t sig[ID_SIG_MAX];
    make_register(&reg, "stunny", key_a, nonces[a], sig);
    netaddr srflx, host;
    cr_assert_eq(netaddr_parse("198.51.100.7:4000", &srflx, false), 0);
    cr_assert_eq(netaddr_parse("10.1.1.1:5000", &host, false), 0);
    Punchline__Candidate cs[2], *ptrs[2] = {&cs[0], &cs[1]};
    Punchline__Endpoint eps[2];
    uint8_t ips[2][16];
    const netaddr *addrs[2] = {&srflx, &host};
    for (int i = 0; i < 2; i++) {
        udp_candidate(&cs[i], &eps[i], ips[i], addrs[i],
                      i == 0 ? PUNCHLINE__CANDIDATE_KIND__SERVER_REFLEXIVE
                             : PUNCHLINE__CANDIDATE_KIND__HOST);
    }
    reg.candidates = ptrs;
    reg.n_candidates = 2;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_REGISTER;
    env.register_ = &reg;
    send_env(a, &env);
    Punchline__Envelope *ka = recv_env(a), *kb;
    cr_assert_eq(ka->body_case, PUNCHLINE__ENVELOPE__BODY_REGISTER_RESULT);
    netaddr oa, ob;
    int ua = udp_bind(ka->register_result->udp_token, &oa);
    wire_free(ka);
    Punchline__RegisterResult *rb = do_register_key(b, "caller", key_b, &kb);
    int ub = udp_bind(rb->udp_token, &ob);
    wire_free(kb);
    send_connect(b, "stunny", 5);
    Punchline__Envelope *ca = recv_env(b);
    cr_assert_eq(ca->body_case, PUNCHLINE__ENVELOPE__BODY_CANDIDATES, "got %s", wire_body_name(ca));
    bool seen_obs = false, seen_srflx = false, seen_host = false;
    size_t pos_obs = 99, pos_srflx = 99;
    for (size_t i = 0; i < ca->candidates->n_candidates; i++) {
        const Punchline__Candidate *c = ca->candidates->candidates[i];
        netaddr x;
        if (c->kind == PUNCHLINE__CANDIDATE_KIND__RELAY || netaddr_from_endpoint(c->endpoint, &x) != 0)
            continue;
        if (netaddr_equal(&x, &oa) && c->kind == PUNCHLINE__CANDIDATE_KIND__SERVER_REFLEXIVE)
            seen_obs = true, pos_obs = i;
        if (netaddr_equal(&x, &srflx)) {
            cr_assert_eq(c->kind, PUNCHLINE__CANDIDATE_KIND__SERVER_REFLEXIVE);
            seen_srflx = true, pos_srflx = i;
        }
        if (netaddr_equal(&x, &host)) {
            cr_assert_eq(c->kind, PUNCHLINE__CANDIDATE_KIND__HOST);
            seen_host = true;
        }
    }
    cr_assert(seen_obs && seen_srflx && seen_host);
    cr_assert_lt(pos_obs, pos_srflx, "the server's own observation comes first");
    wire_free(ca);
    close(a), close(b), close(ua), close(ub);
}

/* ---- TLS on the control connection (PROTOCOL.md 3.2) -------------------- */

typedef struct tls_client {
    int fd;
    tls_conf *conf;
    tls_stream *ts;
    uint8_t nonce[WIRE_NONCE_LEN]; /* from the ServerHello inside TLS */
} tls_client;

/* Step the server until op() stops asking to wait. */
static ssize_t tls_pump(tls_client *t, ssize_t (*op)(tls_client *, void *), void *arg)
{
    uint64_t end = time_now_ms() + 3000;
    for (;;) {
        ssize_t r = op(t, arg);
        if (r != TLS_WANT_READ && r != TLS_WANT_WRITE)
            return r;
        cr_assert_lt(time_now_ms(), end, "TLS stalled");
        ev_run(loop, EVRUN_NOWAIT);
        struct pollfd p = {.fd = t->fd, .events = POLLIN};
        poll(&p, 1, 2);
    }
}

static ssize_t op_handshake(tls_client *t, void *arg)
{
    return tls_stream_handshake(t->ts);
}

static ssize_t op_read1(tls_client *t, void *arg)
{
    return tls_stream_read(t->ts, arg, 1);
}

/* One frame through TLS; NULL when the server closed. */
static Punchline__Envelope *tls_recv_env(tls_client *t)
{
    frame_reader fr;
    frame_reader_init(&fr);
    for (;;) {
        uint8_t b;
        ssize_t n = tls_pump(t, op_read1, &b);
        if (n <= 0) {
            frame_reader_reset(&fr);
            return NULL;
        }
        size_t used;
        int st = frame_reader_feed(&fr, &b, 1, &used);
        cr_assert_geq(st, 0);
        if (st == FRAME_READY) {
            Punchline__Envelope *env = NULL;
            cr_assert_eq(wire_decode(fr.buf, fr.len, &env, NULL), WIRE_OK);
            frame_reader_reset(&fr);
            return env;
        }
    }
}

static void tls_send_env(tls_client *t, Punchline__Envelope *env)
{
    uint8_t buf[FRAME_HEADER + FRAME_MAX];
    int n = wire_encode(env, buf + FRAME_HEADER, FRAME_MAX);
    cr_assert_gt(n, 0);
    frame_put_header(buf, (uint32_t)n);
    size_t off = 0, len = (size_t)n + FRAME_HEADER;
    while (off < len) {
        ssize_t w = tls_stream_write(t->ts, buf + off, len - off);
        if (w == TLS_WANT_WRITE || w == TLS_WANT_READ) {
            ev_run(loop, EVRUN_NOWAIT);
            continue;
        }
        cr_assert_gt(w, 0);
        off += (size_t)w;
    }
}

/* Connect (plaintext ServerHello read by tcp_client), switch to TLS pinning
 * fp, read the ServerHello inside. */
static void tls_connect(tls_client *t, const uint8_t fp[ID_HASH_LEN])
{
    char err[256];
    t->fd = tcp_client();
    fcntl(t->fd, F_SETFL, fcntl(t->fd, F_GETFL) | O_NONBLOCK);
    t->conf = tls_conf_client(NULL, fp, key_a, err, sizeof(err));
    cr_assert_not_null(t->conf, "%s", err);
    t->ts = tls_stream_new(t->conf, t->fd, NULL);
    cr_assert_not_null(t->ts);
    cr_assert_eq(tls_pump(t, op_handshake, NULL), 0, "handshake: %s", tls_stream_error(t->ts));
    Punchline__Envelope *h = tls_recv_env(t);
    cr_assert_not_null(h);
    cr_assert_eq(h->body_case, PUNCHLINE__ENVELOPE__BODY_SERVER_HELLO, "got %s", wire_body_name(h));
    memcpy(t->nonce, h->server_hello->nonce.data, WIRE_NONCE_LEN);
    wire_free(h);
}

static void tls_close(tls_client *t)
{
    tls_stream_free(t->ts);
    tls_conf_free(t->conf);
    close(t->fd);
}

Test(rendezvous, tls_control_connection)
{
    char keyfile[] = "/tmp/pl-rz-tls-XXXXXX", err[256];
    int kfd = mkstemp(keyfile);
    cr_assert_geq(kfd, 0);
    close(kfd);
    unlink(keyfile); /* tls_conf_server_key creates it */
    tls_conf *sconf = tls_conf_server_key(keyfile, err, sizeof(err));
    cr_assert_not_null(sconf, "%s", err);
    uint8_t fp[ID_HASH_LEN];
    tls_conf_fingerprint(sconf, fp);
    server_config cfg = {.log_level = SRV_LOG_ERROR, .tls = sconf, .tls_required = 1};
    cr_assert_eq(netaddr_parse("127.0.0.1:0", &cfg.listen, false), 0);
    server *s2 = server_new(loop, &cfg, err, sizeof(err));
    cr_assert_not_null(s2, "%s", err);
    netaddr keep_addr = srv_addr;
    server_local_addr(s2, &srv_addr);

    /* the server itself refuses a plaintext Register (not only our client) */
    int p = tcp_client();
    send_register(p, "plain", key_a, NULL);
    expect_refused(p, PUNCHLINE__ERROR_CODE__AUTH_FAILED);

    /* inside TLS: a Register signed over the plaintext nonce N1 fails, over
     * the fresh N2 it works */
    tls_client t;
    tls_connect(&t, fp);
    cr_assert(memcmp(nonces[t.fd], t.nonce, WIRE_NONCE_LEN) != 0, "N2 must be fresh");
    Punchline__Register reg;
    uint8_t sig[ID_SIG_MAX];
    make_register(&reg, "tlspeer", key_a, nonces[t.fd], sig);
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_REGISTER;
    env.register_ = &reg;
    tls_send_env(&t, &env);
    Punchline__Envelope *r = tls_recv_env(&t);
    cr_assert_not_null(r);
    cr_assert_eq(r->body_case, PUNCHLINE__ENVELOPE__BODY_ERROR, "got %s", wire_body_name(r));
    cr_assert_eq(r->error->code, PUNCHLINE__ERROR_CODE__AUTH_FAILED);
    wire_free(r);
    tls_close(&t);

    tls_connect(&t, fp);
    make_register(&reg, "tlspeer", key_a, t.nonce, sig);
    tls_send_env(&t, &env);
    r = tls_recv_env(&t);
    cr_assert_not_null(r);
    cr_assert_eq(r->body_case, PUNCHLINE__ENVELOPE__BODY_REGISTER_RESULT, "got %s", wire_body_name(r));
    wire_free(r);
    tls_close(&t);

    /* relay connections are plain TCP: RelayOpen inside TLS is refused */
    tls_connect(&t, fp);
    Punchline__RelayOpen ro = PUNCHLINE__RELAY_OPEN__INIT;
    uint8_t mac[WIRE_MAC_LEN] = {0};
    ro.session_id = 1;
    ro.role = PUNCHLINE__ROLE__CONTROLLING;
    ro.mac.data = mac;
    ro.mac.len = sizeof(mac);
    Punchline__Envelope renv = PUNCHLINE__ENVELOPE__INIT;
    renv.body_case = PUNCHLINE__ENVELOPE__BODY_RELAY_OPEN;
    renv.relay_open = &ro;
    tls_send_env(&t, &renv);
    r = tls_recv_env(&t);
    cr_assert_not_null(r);
    cr_assert_eq(r->body_case, PUNCHLINE__ENVELOPE__BODY_ERROR, "got %s", wire_body_name(r));
    cr_assert_eq(r->error->code, PUNCHLINE__ERROR_CODE__RELAY_REFUSED);
    wire_free(r);
    tls_close(&t);

    srv_addr = keep_addr;
    server_free(s2);
    tls_conf_free(sconf);
    unlink(keyfile);
}

/* Per-source limits (rendezvous/iplimit.h): unregistered connections from
 * one address are capped; registering frees a slot; registered peers from
 * that address never count. */
Test(rendezvous, per_source_pending_cap)
{
    server_free(srv);
    server_config cfg = {.log_level = SRV_LOG_ERROR, .per_ip_pending = 3, .per_ip_rate = 1000};
    cr_assert_eq(netaddr_parse("127.0.0.1:0", &cfg.listen, false), 0);
    char err[256];
    srv = server_new(loop, &cfg, err, sizeof(err));
    cr_assert_not_null(srv, "server_new: %s", err);
    server_local_addr(srv, &srv_addr);

    int c[3];
    for (int i = 0; i < 3; i++)
        c[i] = tcp_client(); /* each got its ServerHello */
    /* a 4th unregistered one from 127.0.0.1 is told why and closed */
    int x = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(connect(x, &srv_addr.u.sa, srv_addr.len), 0);
    expect_refused(x, PUNCHLINE__ERROR_CODE__RATE_LIMITED);
    /* one registers: its slot is free again, and it stays registered */
    Punchline__Envelope *keep;
    do_register(c[0], "capped", &keep);
    wire_free(keep);
    int y = tcp_client();
    close(y);
    for (int i = 0; i < 3; i++)
        close(c[i]);
}

/* Hostile registration input: names that are overlong, not UTF-8 or carry
 * control characters get BAD_NAME; a candidate with port 0 makes the
 * Register MALFORMED (PROTOCOL.md 1.4); unusable candidate addresses
 * (0.0.0.0, multicast, broadcast) are dropped, never passed on. */
Test(rendezvous, hostile_names_and_candidates)
{
    char longname[NAME_MAX_LEN + 2];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    const char *bad[] = {longname, "\xff\xfe", "a\tb", "caf\xc3\xa9", "", "a b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int fd = tcp_client();
        send_register(fd, bad[i], key_a, NULL);
        expect_refused(fd, PUNCHLINE__ERROR_CODE__BAD_NAME);
    }

    int a = tcp_client(), b = tcp_client();
    Punchline__Register reg;
    uint8_t sig[ID_SIG_MAX];
    make_register(&reg, "hostile", key_a, nonces[a], sig);
    const char *addrs[] = {"10.0.0.1:0", "0.0.0.0:5", "224.0.0.1:5", "255.255.255.255:5",
                           "10.0.0.2:7"};
    enum { N = sizeof(addrs) / sizeof(addrs[0]) };
    Punchline__Candidate cs[N], *ptrs[N];
    Punchline__Endpoint eps[N];
    uint8_t ips[N][16];
    netaddr good;
    for (int i = 0; i < N; i++) {
        netaddr x;
        /* port 0 does not parse as an address: build it by hand */
        cr_assert_eq(netaddr_parse(i == 0 ? "10.0.0.1:1" : addrs[i], &x, false), 0, "%s", addrs[i]);
        if (i == 0)
            x.u.in4.sin_port = 0;
        if (i == N - 1)
            good = x;
        udp_candidate(&cs[i], &eps[i], ips[i], &x, PUNCHLINE__CANDIDATE_KIND__HOST);
        ptrs[i] = &cs[i];
    }
    reg.candidates = ptrs;
    reg.n_candidates = N;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_REGISTER;
    env.register_ = &reg;
    send_env(a, &env);
    expect_error(a, PUNCHLINE__ERROR_CODE__MALFORMED); /* the port-0 candidate */
    expect_closed(a);
    close(a);
    a = tcp_client();
    make_register(&reg, "hostile", key_a, nonces[a], sig);
    reg.candidates = ptrs + 1; /* without it */
    reg.n_candidates = N - 1;
    send_env(a, &env);
    Punchline__Envelope *ka = recv_env(a), *kb;
    cr_assert_not_null(ka);
    cr_assert_eq(ka->body_case, PUNCHLINE__ENVELOPE__BODY_REGISTER_RESULT, "got %s", wire_body_name(ka));
    netaddr oa, ob;
    int ua = udp_bind(ka->register_result->udp_token, &oa);
    wire_free(ka);
    Punchline__RegisterResult *rb = do_register_key(b, "victim2", key_b, &kb);
    int ub = udp_bind(rb->udp_token, &ob);
    wire_free(kb);
    send_connect(b, "hostile", 3);
    Punchline__Envelope *ca = recv_env(b);
    cr_assert_eq(ca->body_case, PUNCHLINE__ENVELOPE__BODY_CANDIDATES, "got %s", wire_body_name(ca));
    bool seen_good = false;
    for (size_t i = 0; i < ca->candidates->n_candidates; i++) {
        const Punchline__Candidate *c = ca->candidates->candidates[i];
        netaddr x;
        if (c->kind == PUNCHLINE__CANDIDATE_KIND__RELAY)
            continue;
        cr_assert_eq(netaddr_from_endpoint(c->endpoint, &x), 0);
        cr_assert(netaddr_is_usable_candidate(&x), "unusable candidate passed on");
        if (netaddr_equal(&x, &good))
            seen_good = true;
    }
    cr_assert(seen_good, "the one usable host candidate is passed on");
    wire_free(ca);
    close(a), close(b), close(ua), close(ub);
}

/* ---- hostile input (docs/SECURITY.md, "Hostile input") ------------------- */

/* A frame with this body, length header in front. */
static void send_frame(int fd, const uint8_t *body, size_t len)
{
    uint8_t buf[FRAME_HEADER + FRAME_MAX];
    cr_assert_leq(len, FRAME_MAX);
    frame_put_header(buf, (uint32_t)len);
    memcpy(buf + FRAME_HEADER, body, len);
    send_raw(fd, buf, len + FRAME_HEADER);
}

static void send_keepalive(int fd)
{
    Punchline__Keepalive ka = PUNCHLINE__KEEPALIVE__INIT;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_KEEPALIVE;
    env.keepalive = &ka;
    send_env(fd, &env);
}

static void expect_body(int fd, int body)
{
    Punchline__Envelope *e = recv_env(fd);
    cr_assert_not_null(e, "closed instead of a reply");
    cr_assert_eq((int)e->body_case, body, "got %s", wire_body_name(e));
    wire_free(e);
}

/* After each hostile case: an honest client on a new connection registers
 * a fresh name and has its Keepalive echoed. */
static void expect_still_serving(void)
{
    static int n;
    char name[32];
    snprintf(name, sizeof(name), "honest-%d", ++n);
    int fd = tcp_client();
    Punchline__Envelope *keep;
    do_register_key(fd, name, key_b, &keep);
    wire_free(keep);
    send_keepalive(fd);
    expect_body(fd, PUNCHLINE__ENVELOPE__BODY_KEEPALIVE);
    close(fd);
}

static uint8_t *find_bytes(uint8_t *hay, size_t n, const char *needle, size_t k)
{
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0)
            return hay + i;
    return NULL;
}

/* The Register envelope for name (signed over fd's nonce), encoded into out
 * (no frame header); returns its length.  The signature covers sig_name. */
static size_t register_bytes(int fd, const char *name, const char *sig_name, uint8_t *out,
                             size_t cap)
{
    Punchline__Register reg;
    uint8_t sig[ID_SIG_MAX];
    make_register(&reg, sig_name, key_a, nonces[fd], sig);
    reg.name = (char *)name;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_REGISTER;
    env.register_ = &reg;
    int n = wire_encode(&env, out, cap);
    cr_assert_gt(n, 0);
    return (size_t)n;
}

/* Frames a decoder must refuse (PROTOCOL.md 1.1, 1.3): each gets
 * Error{MALFORMED} and a close, before and after registration, and the
 * server goes on serving.  A registered peer that sends one loses its
 * registration (the name is free again). */
Test(rendezvous, hostile_frames_are_malformed_and_the_server_keeps_serving)
{
    struct { const char *what; uint8_t b[16]; size_t n; } raw[] = {
        {"truncated varint", {0x08, 0x80}, 2},
        {"varint of 11 bytes", {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 11},
        {"field number 0", {0x00, 0x01}, 2},
        {"wire type 7", {0x0f}, 1},
        {"version with the wrong wire type", {0x0d, 2, 0, 0, 0}, 5},
        {"no body", {0x08, WIRE_VERSION}, 2},
        {"unknown body 40", {0x08, WIRE_VERSION, 0xc2, 0x02, 0x00}, 5},
        {"keepalive, length beyond the frame", {0x08, WIRE_VERSION, 0x62, 0x05, 0x08}, 5},
        /* not canonical (PROTOCOL.md 1.3): re-encodes to another size */
        {"version sent twice", {0x08, WIRE_VERSION, 0x08, WIRE_VERSION, 0x62, 0x00}, 6},
        {"padded varint", {0x08, 0x80 | WIRE_VERSION, 0x00, 0x62, 0x00}, 5},
        {"keepalive body twice", {0x08, WIRE_VERSION, 0x62, 0x00, 0x62, 0x00}, 6},
        {"explicit default (now_ms = 0)", {0x08, WIRE_VERSION, 0x62, 0x02, 0x08, 0x00}, 6},
    };
    size_t nraw = sizeof(raw) / sizeof(raw[0]);
    for (size_t i = 0; i < nraw; i++) {
        int fd = tcp_client();
        send_frame(fd, raw[i].b, raw[i].n);
        cr_log_info("before registration: %s", raw[i].what);
        expect_refused(fd, PUNCHLINE__ERROR_CODE__MALFORMED);
    }
    /* the same after registration: refused, closed, and unregistered */
    for (size_t i = 0; i < nraw; i++) {
        int fd = tcp_client();
        Punchline__Envelope *keep;
        do_register(fd, "mal", &keep);
        wire_free(keep);
        send_frame(fd, raw[i].b, raw[i].n);
        cr_log_info("after registration: %s", raw[i].what);
        expect_refused(fd, PUNCHLINE__ERROR_CODE__MALFORMED);
    }
    /* a Register sent twice in one envelope (protobuf merges them) */
    int fd = tcp_client();
    uint8_t b[2 * FRAME_MAX];
    size_t n = register_bytes(fd, "twice", "twice", b, FRAME_MAX);
    cr_assert_eq(b[0], 0x08, "version first");
    memcpy(b + n, b + 2, n - 2);
    send_frame(fd, b, 2 * n - 2);
    expect_refused(fd, PUNCHLINE__ERROR_CODE__MALFORMED);
    expect_still_serving();
}

/* Frame lengths (PROTOCOL.md 1.1): 0, 0xFFFFFFFF and FRAME_MAX + 1 are
 * refused from the header alone; before registration anything above 4096
 * too.  Exactly the maximum is read (and then judged by its content). */

/* n bytes of frame body: a Keepalive, then an unknown field filling the rest
 * (n >= 134). */
static size_t keepalive_padded(uint8_t *b, size_t n)
{
    size_t k = 0;
    b[k++] = 0x08, b[k++] = WIRE_VERSION, b[k++] = 0x62, b[k++] = 0x00;
    b[k++] = 0xa2, b[k++] = 0x06; /* field 100, length-delimited */
    size_t rest = n - k - 2;
    b[k++] = (uint8_t)(0x80 | (rest & 0x7f)), b[k++] = (uint8_t)(rest >> 7);
    memset(b + k, 0, rest);
    return k + rest;
}

Test(rendezvous, frame_lengths_zero_huge_and_just_over_the_maximum)
{
    const uint8_t cases[][4] = {{0, 0, 0, 0},
                                {0xff, 0xff, 0xff, 0xff},
                                {0x80, 0, 0, 0},
                                {0, 0, (FRAME_MAX + 1) >> 8, (FRAME_MAX + 1) & 0xff},
                                {0, 0, 0x10, 0x01}}; /* 4097: over the limit before Register */
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int fd = tcp_client();
        send_raw(fd, cases[i], 4);
        expect_refused(fd, PUNCHLINE__ERROR_CODE__MALFORMED);
    }
    /* 4096 bytes before registration: read whole, then refused as a
     * request before Register */
    static uint8_t big[FRAME_MAX];
    int fd = tcp_client();
    send_frame(fd, big, keepalive_padded(big, 4096));
    expect_refused(fd, PUNCHLINE__ERROR_CODE__NOT_REGISTERED);
    /* registered: up to FRAME_MAX, and still nothing above */
    fd = tcp_client();
    Punchline__Envelope *keep;
    do_register(fd, "big", &keep);
    wire_free(keep);
    send_frame(fd, big, keepalive_padded(big, FRAME_MAX));
    expect_body(fd, PUNCHLINE__ENVELOPE__BODY_KEEPALIVE);
    send_raw(fd, cases[3], 4);
    expect_refused(fd, PUNCHLINE__ERROR_CODE__MALFORMED);
    expect_still_serving();
}

/* Slowloris: connections that send part of a frame (or a trickle of it)
 * and then nothing are closed at the register deadline (1 s in this suite,
 * checked by the 1 s tick), whatever they send meanwhile; an honest peer is
 * served the whole time. */
Test(rendezvous, slowloris_closed_at_the_register_deadline)
{
    enum { N = 6 };
    int slow[N];
    bool open[N];
    uint64_t t0 = time_now_ms();
    for (int i = 0; i < N; i++) {
        slow[i] = tcp_client();
        open[i] = true;
        if (i % 3 == 0) {
            const uint8_t part[] = {0, 0}; /* half a header */
            send_raw(slow[i], part, sizeof(part));
        } else {
            const uint8_t part[] = {0, 0, 0x10, 0, 0x08, WIRE_VERSION}; /* 4 KiB announced */
            send_raw(slow[i], part, sizeof(part));
        }
    }
    expect_still_serving();
    int left = N;
    uint64_t last_trickle = 0;
    while (left && time_now_ms() < t0 + 4000) {
        ev_run(loop, EVRUN_NOWAIT);
        uint64_t now = time_now_ms();
        if (now >= last_trickle + 100) {
            last_trickle = now;
            for (int i = 1; i < N; i += 3) /* a byte of the body every 100 ms */
                if (open[i])
                    (void)!send(slow[i], "x", 1, MSG_NOSIGNAL);
        }
        for (int i = 0; i < N; i++) {
            struct pollfd p = {.fd = slow[i], .events = POLLIN};
            if (!open[i] || poll(&p, 1, 0) <= 0)
                continue;
            char c;
            cr_assert_leq(recv(slow[i], &c, 1, MSG_DONTWAIT), 0, "data to a slow client");
            uint64_t t = time_now_ms() - t0;
            cr_assert_geq(t, 900, "slow connection %d closed after %llu ms: before the deadline", i,
                          (unsigned long long)t);
            open[i] = false;
            left--;
        }
        usleep(2000);
    }
    cr_assert_eq(left, 0, "%d slow connections still open after 4 s", left);
    for (int i = 0; i < N; i++)
        close(slow[i]);
    expect_still_serving();
}

/* Unknown fields are skipped (PROTOCOL.md 1.3): a Register with fields a
 * later version might add still registers. */
Test(rendezvous, unknown_fields_in_register_are_ignored)
{
    int fd = tcp_client();
    uint8_t b[FRAME_MAX];
    size_t n = register_bytes(fd, "future", "future", b, sizeof(b) - 16);
    const uint8_t unknown[] = {0x98, 0x06, 0x05, 0xa2, 0x06, 0x03, 'x', 'y', 'z'}; /* 99, 100 */
    memcpy(b + n, unknown, sizeof(unknown));
    send_frame(fd, b, n + sizeof(unknown));
    expect_body(fd, PUNCHLINE__ENVELOPE__BODY_REGISTER_RESULT);
    close(fd);
}

/* "a\0b" must not register as "a" (protobuf-c cuts strings at a NUL; the
 * canonical-encoding check refuses it, PROTOCOL.md 1.3), even signed for
 * "a"; a ConnectRequest for "bob\0x" is refused the same way. */
Test(rendezvous, name_with_embedded_nul_is_refused)
{
    int fd = tcp_client();
    uint8_t b[FRAME_MAX];
    size_t n = register_bytes(fd, "aXb", "a", b, sizeof(b));
    uint8_t *x = find_bytes(b, n, "aXb", 3);
    cr_assert_not_null(x);
    x[1] = 0;
    send_frame(fd, b, n);
    expect_refused(fd, PUNCHLINE__ERROR_CODE__MALFORMED);

    /* "a" is not registered: connecting to it is UNKNOWN_PEER */
    int c = tcp_client();
    Punchline__Envelope *keep;
    do_register(c, "bob", &keep);
    wire_free(keep);
    send_connect(c, "a", 1);
    expect_error(c, PUNCHLINE__ERROR_CODE__UNKNOWN_PEER);
    /* and bob\0x as a connect target closes the connection as MALFORMED */
    Punchline__ConnectRequest cr = PUNCHLINE__CONNECT_REQUEST__INIT;
    cr.peer_name = "bobXx";
    cr.request_id = 2;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_CONNECT_REQUEST;
    env.connect_request = &cr;
    int m = wire_encode(&env, b, sizeof(b));
    cr_assert_gt(m, 0);
    x = find_bytes(b, (size_t)m, "bobXx", 5);
    x[3] = 0;
    send_frame(c, b, (size_t)m);
    expect_refused(c, PUNCHLINE__ERROR_CODE__MALFORMED);
    expect_still_serving();
}

/* Names (PROTOCOL.md 1.4): every kind of bad name in Register gets
 * BAD_NAME and a close; in a ConnectRequest BAD_NAME with the request id,
 * and the connection stays. */
Test(rendezvous, bad_names_in_connect_requests)
{
    int fd = tcp_client();
    Punchline__Envelope *keep;
    do_register(fd, "namer", &keep);
    wire_free(keep);
    char longname[NAME_MAX_LEN + 2], huge[1000];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    memset(huge, 'h', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = 0;
    const char *bad[] = {longname, huge, "\xff\xfe", "a\tb", "\x1b[31m", "caf\xc3\xa9", "", "a b",
                         "a/b", "a\x7f"};
    for (uint32_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        send_connect(fd, bad[i], 100 + i);
        Punchline__Envelope *e = recv_env(fd);
        cr_assert_not_null(e);
        cr_assert_eq(e->body_case, PUNCHLINE__ENVELOPE__BODY_ERROR, "got %s", wire_body_name(e));
        cr_assert_eq(e->error->code, PUNCHLINE__ERROR_CODE__BAD_NAME, "case %u: %d", i, e->error->code);
        cr_assert_eq(e->error->request_id, 100 + i);
        wire_free(e);
    }
    send_keepalive(fd);
    expect_body(fd, PUNCHLINE__ENVELOPE__BODY_KEEPALIVE);
    close(fd);
}

/* Huge repeated fields: candidate lists are refused before anything is
 * stored: 800 in a Register (13 KB: over the 4 KiB frame limit before
 * registration), 200 (3.4 KB: by the bound of 16), 17; in a Candidates
 * update, 800 (by the bound of 32).  16 are fine, and a later
 * Candidates{session_id = 0} replaces them. */
Test(rendezvous, huge_candidate_lists_are_refused)
{
    enum { MANY = 800 };
    static Punchline__Candidate cs[MANY], *ptrs[MANY];
    static Punchline__Endpoint eps[MANY];
    static uint8_t ips[MANY][16];
    for (int i = 0; i < MANY; i++) {
        netaddr a;
        char s[32];
        snprintf(s, sizeof(s), "10.%d.%d.1:%d", i / 250, i % 250, 1000 + i);
        cr_assert_eq(netaddr_parse(s, &a, false), 0);
        udp_candidate(&cs[i], &eps[i], ips[i], &a, PUNCHLINE__CANDIDATE_KIND__HOST);
        ptrs[i] = &cs[i];
    }
    const size_t counts[] = {MANY, 200, WIRE_MAX_HOST_CANDIDATES + 1};
    for (size_t k = 0; k < 3; k++) {
        int fd = tcp_client();
        send_register_cands(fd, "many", ptrs, counts[k]);
        expect_refused(fd, PUNCHLINE__ERROR_CODE__MALFORMED);
    }
    /* 16 register; a Candidates update with 32 (the bound of that message)
     * keeps the first 16; with 800 it is refused and the registration ends */
    int fd = tcp_client();
    send_register_cands(fd, "many", ptrs, WIRE_MAX_HOST_CANDIDATES);
    expect_body(fd, PUNCHLINE__ENVELOPE__BODY_REGISTER_RESULT);
    Punchline__Candidates cm = PUNCHLINE__CANDIDATES__INIT;
    cm.candidates = ptrs;
    cm.n_candidates = WIRE_MAX_CANDIDATES;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_CANDIDATES;
    env.candidates = &cm;
    send_env(fd, &env); /* 32 (the wire bound): stored, the first 16 kept */
    send_keepalive(fd);
    expect_body(fd, PUNCHLINE__ENVELOPE__BODY_KEEPALIVE);
    cm.n_candidates = MANY;
    send_env(fd, &env);
    expect_refused(fd, PUNCHLINE__ERROR_CODE__MALFORMED);
    expect_still_serving();
}

/* STUN (RFC 8489) at the server: every malformed request is dropped
 * silently; the unknown comprehension-required attribute gets 420; the
 * server answers the next good request. */
Test(rendezvous, stun_hostile_requests)
{
    int u = udp_socket();
    uint8_t req[128], in[1500];
    size_t n = stun_request(req, 9, 0, false);
    struct { const char *what; int byte; uint8_t val; int len_delta; } drop[] = {
        {"bad magic cookie", 7, 0x43, 0},
        {"top bits set", 0, 0x40, 0},
        {"length not a multiple of 4", 3, 2, 2},
        {"length beyond the datagram", 3, 8, 0},
        {"length short of the datagram", 3, 0, 4},
        {"a Binding indication", 1, 0x11, 0},
        {"a Binding success response", 1, 0x01 | 0x00, 0}, /* patched below */
        {"another method (Allocate)", 1, 0x03, 0},
    };
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
        uint8_t b[128];
        memcpy(b, req, n);
        memset(b + n, 0, 8);
        b[drop[i].byte] = drop[i].val;
        if (i == 6)
            b[0] = 0x01; /* 0x0101 */
        amp_check(drop[i].what, u, b, n + (size_t)drop[i].len_delta, 0, in);
    }
    /* an attribute overrunning the message, its padding overrunning it, a
     * bad FINGERPRINT, an attribute after FINGERPRINT */
    uint8_t b[128] = {0};
    memcpy(b, req, n);
    b[3] = 8, b[20] = 0x80, b[21] = 0x22, b[23] = 0x10; /* SOFTWARE, 16 bytes in 4 */
    amp_check("attribute overruns the message", u, b, 28, 0, in);
    b[23] = 0x05;
    amp_check("attribute padding overruns the message", u, b, 28, 0, in);
    n = stun_request(b, 10, 0, true);
    b[n - 1] ^= 1;
    amp_check("bad FINGERPRINT", u, b, n, 0, in);
    n = stun_request(b, 11, 0, true);
    b[3] += 4;
    b[n] = 0x80, b[n + 1] = 0x22, b[n + 2] = 0, b[n + 3] = 0;
    amp_check("attribute after FINGERPRINT", u, b, n + 4, 0, in);
    /* unknown comprehension-required attribute: 420 */
    n = stun_request(b, 12, 1, false);
    amp_check("unknown comprehension-required attribute", u, b, n, STUN_BINDING_ERROR, in);
    cr_assert_eq(in[26] * 100 + in[27], 420);
    /* an unknown comprehension-optional one (>= 0x8000) is ignored */
    n = stun_request(b, 13, 1, false);
    b[20] = 0x80;
    amp_check("unknown optional attribute", u, b, n, STUN_BINDING_SUCCESS, in);
    n = stun_request(b, 14, 0, false);
    amp_check("good request after all that", u, b, n, STUN_BINDING_SUCCESS, in);
    close(u);
    expect_still_serving();
}

/* Candidate addresses (PROTOCOL.md 1.4, SECURITY.md): what a peer
 * announces is passed on only if a peer may probe it.  Unspecified,
 * 0.0.0.0/8, multicast, broadcast (also as IPv4-mapped IPv6), port 0 (the
 * whole Register is MALFORMED: hostile_names_and_candidates) and RELAY
 * candidates (the server makes those) are dropped; loopback only from a
 * peer on the server's own host, which every peer here is (the remote case:
 * tests/unit/proto/test_addr.c, candidate.plausible). */
Test(rendezvous, candidate_address_rules)
{
    struct { const char *addr; int kind, transport; bool kept; } cases[] = {
        {"127.0.0.5:9", PUNCHLINE__CANDIDATE_KIND__HOST, PUNCHLINE__TRANSPORT__UDP, true},
        {"[::1]:9", PUNCHLINE__CANDIDATE_KIND__HOST, PUNCHLINE__TRANSPORT__UDP, true},
        {"[::ffff:127.0.0.1]:9", PUNCHLINE__CANDIDATE_KIND__HOST, PUNCHLINE__TRANSPORT__UDP, true},
        {"10.0.0.3:7", PUNCHLINE__CANDIDATE_KIND__HOST, PUNCHLINE__TRANSPORT__TCP, true},
        {"198.51.100.9:5", PUNCHLINE__CANDIDATE_KIND__SERVER_REFLEXIVE, PUNCHLINE__TRANSPORT__UDP, true},
        {"[2001:db8::1]:5", PUNCHLINE__CANDIDATE_KIND__HOST, PUNCHLINE__TRANSPORT__UDP, true},
        {"[::]:9", PUNCHLINE__CANDIDATE_KIND__HOST, PUNCHLINE__TRANSPORT__UDP, false},
        {"[ff02::1]:9", PUNCHLINE__CANDIDATE_KIND__HOST, PUNCHLINE__TRANSPORT__UDP, false},
        {"[::ffff:0.0.0.0]:9", PUNCHLINE__CANDIDATE_KIND__HOST, PUNCHLINE__TRANSPORT__UDP, false},
        {"[::ffff:224.0.0.1]:9", PUNCHLINE__CANDIDATE_KIND__HOST, PUNCHLINE__TRANSPORT__UDP, false},
        {"[::ffff:255.255.255.255]:9", PUNCHLINE__CANDIDATE_KIND__HOST, PUNCHLINE__TRANSPORT__UDP, false},
        {"0.1.2.3:9", PUNCHLINE__CANDIDATE_KIND__HOST, PUNCHLINE__TRANSPORT__UDP, false},
        {"10.9.9.9:9", PUNCHLINE__CANDIDATE_KIND__RELAY, PUNCHLINE__TRANSPORT__UDP, false},
        {"10.9.9.8:9", PUNCHLINE__CANDIDATE_KIND__HOST, PUNCHLINE__TRANSPORT__TRANSPORT_RELAY, false},
    };
    enum { N = sizeof(cases) / sizeof(cases[0]) };
    cr_assert_leq(N, WIRE_MAX_HOST_CANDIDATES);
    Punchline__Candidate cs[N], *ptrs[N];
    Punchline__Endpoint eps[N];
    uint8_t ips[N][16];
    netaddr addrs[N];
    for (int i = 0; i < N; i++) {
        cr_assert_eq(netaddr_parse(cases[i].addr, &addrs[i], false), 0, "%s", cases[i].addr);
        udp_candidate(&cs[i], &eps[i], ips[i], &addrs[i], cases[i].kind);
        cs[i].transport = cases[i].transport;
        ptrs[i] = &cs[i];
    }
    int a = tcp_client(), b = tcp_client();
    send_register_cands(a, "cands", ptrs, N);
    Punchline__Envelope *ka = recv_env(a), *kb;
    cr_assert_eq(ka->body_case, PUNCHLINE__ENVELOPE__BODY_REGISTER_RESULT, "got %s", wire_body_name(ka));
    wire_free(ka);
    do_register_key(b, "asker", key_b, &kb);
    wire_free(kb);
    send_connect_tr(b, "cands", 3, PUNCHLINE__TRANSPORT__TCP); /* no relay candidates */
    Punchline__Envelope *ca = recv_env(b);
    cr_assert_eq(ca->body_case, PUNCHLINE__ENVELOPE__BODY_CANDIDATES, "got %s", wire_body_name(ca));
    bool seen[N] = {false};
    for (size_t i = 0; i < ca->candidates->n_candidates; i++) {
        const Punchline__Candidate *c = ca->candidates->candidates[i];
        netaddr x;
        cr_assert_neq(c->kind, PUNCHLINE__CANDIDATE_KIND__RELAY, "a RELAY candidate passed on");
        cr_assert_eq(netaddr_from_endpoint(c->endpoint, &x), 0);
        for (int k = 0; k < N; k++)
            if (netaddr_equal(&x, &addrs[k]) && (int)c->transport == cases[k].transport)
                seen[k] = true;
    }
    for (int k = 0; k < N; k++)
        cr_assert_eq(seen[k], cases[k].kept, "%s (%d/%d): %s", cases[k].addr, cases[k].kind,
                     cases[k].transport, cases[k].kept ? "dropped" : "passed on");
    wire_free(ca);
    close(a), close(b);
}

/* count ConnectRequest frames for peer (request ids rid0, rid0 + 1, ...)
 * back to back in out; returns their length. */
static size_t connect_frames(uint8_t *out, size_t cap, const char *peer, uint32_t rid0, int count)
{
    size_t n = 0;
    for (int i = 0; i < count; i++) {
        Punchline__ConnectRequest cr = PUNCHLINE__CONNECT_REQUEST__INIT;
        cr.peer_name = (char *)peer;
        cr.request_id = rid0 + (uint32_t)i;
        Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
        env.body_case = PUNCHLINE__ENVELOPE__BODY_CONNECT_REQUEST;
        env.connect_request = &cr;
        int e = wire_encode(&env, out + n + FRAME_HEADER, cap - n - FRAME_HEADER);
        cr_assert_gt(e, 0);
        frame_put_header(out + n, (uint32_t)e);
        n += FRAME_HEADER + (size_t)e;
    }
    return n;
}

/* A flood of ConnectRequests (200 in one write) from one peer: the first
 * burst (20) pair, the rest get RATE_LIMITED with their request ids; the
 * callee sees only the sessions that were made; another pair connects at
 * once meanwhile. */
Test(rendezvous, connect_flood_is_rate_limited_and_others_unaffected)
{
    enum { FLOOD = 200 };
    int m = tcp_client(), v = tcp_client(), c = tcp_client(), d = tcp_client();
    Punchline__Envelope *k;
    do_register(m, "mallory", &k), wire_free(k);
    do_register_key(v, "victim", key_b, &k), wire_free(k);
    do_register(c, "carol", &k), wire_free(k);
    do_register_key(d, "dave", key_b, &k), wire_free(k);
    uint64_t relay0 = server_relay_stats(srv)->sessions_created;

    static uint8_t flood[FLOOD * 32];
    size_t n = connect_frames(flood, sizeof(flood), "victim", 1000, FLOOD);
    send_raw(m, flood, n);
    uint64_t t0 = time_now_ms();
    send_connect(c, "dave", 7);
    expect_body(c, PUNCHLINE__ENVELOPE__BODY_CANDIDATES);
    expect_body(c, PUNCHLINE__ENVELOPE__BODY_PUNCH_START);
    uint64_t honest_ms = time_now_ms() - t0;
    cr_log_info("honest connect during the flood: %llu ms", (unsigned long long)honest_ms);
    cr_assert_lt(honest_ms, 1000, "an honest connect waited %llu ms", (unsigned long long)honest_ms);

    /* every flood request answered exactly once: a session or RATE_LIMITED */
    static bool answered[FLOOD];
    int sessions = 0, limited = 0;
    while (sessions + limited < FLOOD) {
        Punchline__Envelope *e = recv_env(m);
        cr_assert_not_null(e, "the flooder was disconnected");
        uint32_t rid = 0;
        if (e->body_case == PUNCHLINE__ENVELOPE__BODY_ERROR) {
            cr_assert_eq(e->error->code, PUNCHLINE__ERROR_CODE__RATE_LIMITED);
            rid = e->error->request_id;
            limited++;
        } else if (e->body_case == PUNCHLINE__ENVELOPE__BODY_PUNCH_START) {
            rid = e->punch_start->request_id;
            sessions++;
        } else {
            cr_assert_eq(e->body_case, PUNCHLINE__ENVELOPE__BODY_CANDIDATES, "got %s", wire_body_name(e));
            wire_free(e);
            continue;
        }
        cr_assert(rid >= 1000 && rid < 1000 + FLOOD && !answered[rid - 1000], "request id %u", rid);
        answered[rid - 1000] = true;
        wire_free(e);
    }
    cr_log_info("flood of %d: %d sessions, %d RATE_LIMITED", FLOOD, sessions, limited);
    cr_assert_geq(sessions, 20, "the burst of 20 is served");
    cr_assert_leq(sessions, 22, "rate limit not applied");
    /* the victim heard only of the sessions that were made */
    for (int i = 0; i < sessions; i++) {
        expect_body(v, PUNCHLINE__ENVELOPE__BODY_INCOMING);
        expect_body(v, PUNCHLINE__ENVELOPE__BODY_CANDIDATES);
        expect_body(v, PUNCHLINE__ENVELOPE__BODY_PUNCH_START);
    }
    cr_assert_not(pump_until_readable(v, 200), "more sessions reached the victim");
    cr_assert_eq(server_relay_stats(srv)->sessions_created - relay0, (uint64_t)sessions + 1);
    close(m), close(v), close(c), close(d);
    expect_still_serving();
}

/* Resource limits: registered peers (--max-peers) and open connections
 * (--max-conns).  Over the first, Register gets SERVER_FULL and a close;
 * at the second, a new connection is closed at once.  Both free up. */
Test(rendezvous, max_peers_and_max_conns)
{
    server_free(srv);
    server_config cfg = {.log_level = SRV_LOG_ERROR, .max_peers = 2, .max_conns = 4};
    cr_assert_eq(netaddr_parse("127.0.0.1:0", &cfg.listen, false), 0);
    char err[256];
    srv = server_new(loop, &cfg, err, sizeof(err));
    cr_assert_not_null(srv, "server_new: %s", err);
    server_local_addr(srv, &srv_addr);
    Punchline__Envelope *k;
    int p1 = tcp_client(), p2 = tcp_client(), p3 = tcp_client();
    do_register(p1, "one", &k), wire_free(k);
    do_register(p2, "two", &k), wire_free(k);
    send_register(p3, "three", key_a, NULL);
    expect_refused(p3, PUNCHLINE__ERROR_CODE__SERVER_FULL);
    /* 4 connections at most: the 5th is closed without a ServerHello */
    int c3 = tcp_client(), c4 = tcp_client();
    int x = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(connect(x, &srv_addr.u.sa, srv_addr.len), 0);
    expect_closed(x);
    close(x);
    close(c4);
    close(p2); /* a registered peer leaves: room for both again */
    for (int i = 0; i < 20; i++)
        ev_run(loop, EVRUN_NOWAIT), usleep(1000);
    int p4 = tcp_client();
    do_register(p4, "four", &k), wire_free(k);
    close(p1), close(c3), close(p4);
}

/* A TCP connection from a given loopback address (127.0.0.x); no reads. */
static int connect_from(const char *ip)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, ip, &a.sin_addr);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0, "bind %s: %s", ip, strerror(errno));
    cr_assert_eq(connect(fd, &srv_addr.u.sa, srv_addr.len), 0);
    return fd;
}

/* New connections per source (--per-ip-rate): over the burst, one source's
 * connections get RATE_LIMITED and a close; another source is not
 * affected. */
Test(rendezvous, per_source_connection_rate)
{
    server_free(srv);
    server_config cfg = {.log_level = SRV_LOG_ERROR, .per_ip_rate = 5, .per_ip_pending = 1000};
    cr_assert_eq(netaddr_parse("127.0.0.1:0", &cfg.listen, false), 0);
    char err[256];
    srv = server_new(loop, &cfg, err, sizeof(err));
    cr_assert_not_null(srv, "server_new: %s", err);
    server_local_addr(srv, &srv_addr);
    enum { N = 20 };
    int fds[N], hello = 0, limited = 0;
    for (int i = 0; i < N; i++)
        fds[i] = connect_from("127.0.0.1");
    for (int i = 0; i < N; i++) {
        Punchline__Envelope *e = recv_env(fds[i]);
        cr_assert_not_null(e, "closed without a word");
        if (e->body_case == PUNCHLINE__ENVELOPE__BODY_SERVER_HELLO)
            hello++;
        else if (e->body_case == PUNCHLINE__ENVELOPE__BODY_ERROR &&
                 e->error->code == PUNCHLINE__ERROR_CODE__RATE_LIMITED)
            limited++, expect_closed(fds[i]);
        else
            cr_assert_fail("got %s", wire_body_name(e));
        wire_free(e);
    }
    cr_log_info("%d connections at once from one source: %d served, %d refused", N, hello, limited);
    cr_assert_geq(hello, 10, "the burst (2 x rate) is served");
    cr_assert_gt(limited, 0, "no connection refused");
    /* another source is served at once */
    int o = connect_from("127.0.0.2");
    expect_body(o, PUNCHLINE__ENVELOPE__BODY_SERVER_HELLO);
    close(o);
    for (int i = 0; i < N; i++)
        close(fds[i]);
}

/* Bounded per-connection queues on the TCP relay (PROTOCOL.md 5.2): one
 * session's receiver stops reading; the other session keeps flowing at
 * full speed, the stalled one holds at most RELAY_HIGH + one chunk
 * (buffer: 512 KiB) in the server, and everything arrives, in order, once
 * the receiver reads again. */
Test(rendezvous, relay_tcp_stalled_receiver_stalls_only_its_session, .timeout = 60)
{
    pair p1, p2;
    make_pair_names(&p1, "alice", "bob", true, PUNCHLINE__TRANSPORT__TRANSPORT_RELAY);
    make_pair_names(&p2, "carol", "dave", true, PUNCHLINE__TRANSPORT__TRANSPORT_RELAY);
    int a1 = open_relay(p1.sid, p1.secret, PUNCHLINE__ROLE__CONTROLLING, true);
    int b1 = open_relay(p1.sid, p1.secret, PUNCHLINE__ROLE__CONTROLLED, true);
    expect_ready(a1, p1.sid), expect_ready(b1, p1.sid);
    int a2 = open_relay(p2.sid, p2.secret, PUNCHLINE__ROLE__CONTROLLING, true);
    int b2 = open_relay(p2.sid, p2.secret, PUNCHLINE__ROLE__CONTROLLED, true);
    expect_ready(a2, p2.sid), expect_ready(b2, p2.sid);
    fcntl(a1, F_SETFL, O_NONBLOCK);
    fcntl(a2, F_SETFL, O_NONBLOCK);

    enum { N = 4 << 20, SEND_MAX = 64 << 20 };
    static uint8_t pat[1 << 16], in[1 << 16];
    for (size_t i = 0; i < sizeof(pat); i++)
        pat[i] = (uint8_t)(i * 13 + (i >> 8));
    size_t sent1 = 0, sent2 = 0, got2 = 0, largest = 0;
    uint64_t t0 = time_now_ms();
    while (got2 < N) {
        cr_assert_lt(time_now_ms() - t0, 30000, "the healthy session stalled at %zu of %d", got2, N);
        ssize_t w;
        if (sent1 < SEND_MAX &&
            (w = send(a1, pat + sent1 % sizeof(pat), sizeof(pat) - sent1 % sizeof(pat), MSG_NOSIGNAL)) > 0)
            sent1 += (size_t)w;
        if (sent2 < N &&
            (w = send(a2, pat + sent2 % sizeof(pat), sizeof(pat) - sent2 % sizeof(pat), MSG_NOSIGNAL)) > 0)
            sent2 += (size_t)w;
        ev_run(loop, EVRUN_NOWAIT);
        ssize_t r = recv(b2, in, sizeof(in) - got2 % sizeof(in), MSG_DONTWAIT);
        if (r > 0) {
            cr_assert_eq(memcmp(in, pat + got2 % sizeof(pat), (size_t)r), 0, "session 2 bytes differ");
            got2 += (size_t)r;
        }
        size_t big;
        server_queued_bytes(srv, &big);
        largest = big > largest ? big : largest;
    }
    /* the stalled sender: blocked by its socket buffers, not by the server's memory */
    for (int i = 0; i < 200; i++) {
        ssize_t w = send(a1, pat + sent1 % sizeof(pat), sizeof(pat) - sent1 % sizeof(pat), MSG_NOSIGNAL);
        if (w > 0)
            sent1 += (size_t)w;
        ev_run(loop, EVRUN_NOWAIT);
        size_t big;
        server_queued_bytes(srv, &big);
        largest = big > largest ? big : largest;
    }
    cr_log_info("healthy session: %d bytes in %llu ms; stalled sender wrote %zu bytes; largest "
                "server queue %zu bytes", N, (unsigned long long)(time_now_ms() - t0), sent1, largest);
    cr_assert_lt(sent1, (size_t)SEND_MAX, "the stalled session was never paused");
    cr_assert_leq(largest, (size_t)512 * 1024, "a connection's queue grew to %zu bytes", largest);
    /* the stalled receiver reads again: all of it, in order */
    size_t got1 = 0;
    while (got1 < sent1) {
        cr_assert(pump_until_readable(b1, 3000), "stalled session lost bytes: %zu of %zu", got1, sent1);
        ssize_t r = recv(b1, in, sizeof(in) - got1 % sizeof(in), MSG_DONTWAIT);
        if (r <= 0)
            continue;
        cr_assert_eq(memcmp(in, pat + got1 % sizeof(pat), (size_t)r), 0, "session 1 bytes differ");
        got1 += (size_t)r;
    }
    close(a1), close(b1), close(a2), close(b2);
    free_pair(&p1);
    free_pair(&p2);
}

/* A flood of connect requests fills the relay table with sessions nobody
 * uses; a later honest pair still gets the relay: the oldest session that
 * relayed nothing for --relay-unused (300 ms here) gives way. */
Test(rendezvous, relay_table_flood_does_not_lock_out_later_pairs)
{
    server_free(srv);
    server_config cfg = {.log_level = SRV_LOG_ERROR,
                         .relay = {.max_sessions = 4, .unused_ms = 300}};
    cr_assert_eq(netaddr_parse("127.0.0.1:0", &cfg.listen, false), 0);
    char err[256];
    srv = server_new(loop, &cfg, err, sizeof(err));
    cr_assert_not_null(srv, "server_new: %s", err);
    server_local_addr(srv, &srv_addr);
    int m = tcp_client(), v = tcp_client();
    Punchline__Envelope *k;
    do_register(m, "mallory", &k), wire_free(k);
    do_register_key(v, "victim", key_b, &k), wire_free(k);
    for (uint32_t i = 0; i < 10; i++)
        send_connect_tr(m, "victim", i, PUNCHLINE__TRANSPORT__TRANSPORT_RELAY);
    int sessions = 0, full = 0;
    while (sessions + full < 10) {
        Punchline__Envelope *e = recv_env(m);
        cr_assert_not_null(e);
        if (e->body_case == PUNCHLINE__ENVELOPE__BODY_PUNCH_START)
            sessions++;
        else if (e->body_case == PUNCHLINE__ENVELOPE__BODY_ERROR) {
            cr_assert_eq(e->error->code, PUNCHLINE__ERROR_CODE__SERVER_FULL);
            full++;
        }
        wire_free(e);
    }
    cr_assert_eq(sessions, 4, "the table holds 4");
    /* unused for 300 ms: an honest relay-only pair gets a session */
    for (int i = 0; i < 40; i++)
        ev_run(loop, EVRUN_NOWAIT), usleep(10000);
    pair p;
    make_pair_names(&p, "carol", "dave", true, PUNCHLINE__TRANSPORT__TRANSPORT_RELAY);
    cr_assert_eq(p.relay_tcp, 1, "no relay for a later pair");
    cr_assert_eq(p.relay_udp, 1);
    cr_assert_eq(server_relay_stats(srv)->sessions_evicted_unused, 1);
    /* and the relay works for it */
    send_relayed(p.ua, p.sid, "honest");
    expect_relayed(p.ub, p.sid, "honest");
    free_pair(&p);
    close(m), close(v);
}

/* Bounded per-connection queue on the control connection (PROTOCOL.md 8):
 * a registered peer that sends requests and never reads the answers (here
 * ConnectRequests, each answered with an Error 3x its size) is dropped once
 * 256 KiB of answers wait in the server; the queue never holds more, its
 * registration ends, and others are served. */
/* Give the server's listening socket (found among our descriptors) a small
 * send buffer, which its accepted connections inherit: the kernel then
 * holds kilobytes, not megabytes, before the server's own queue grows. */
static void shrink_server_sndbuf(void)
{
    for (int fd = 3; fd < 1024; fd++) {
        int acc = 0, type = 0, small = 4096;
        socklen_t l = sizeof(acc), tl = sizeof(type);
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        netaddr a;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l) < 0 || !acc ||
            getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM ||
            getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
            continue;
        netaddr_from_sockaddr(&a, (struct sockaddr *)&ss, sl);
        if (netaddr_equal(&a, &srv_addr)) {
            cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
            return;
        }
    }
    cr_assert_fail("the server's listening socket not found");
}

Test(rendezvous, peer_that_never_reads_is_dropped_at_the_queue_limit, .timeout = 60)
{
    shrink_server_sndbuf();
    int m = tcp_client_rcvbuf(4096);
    Punchline__Envelope *k;
    do_register(m, "deaf", &k), wire_free(k);
    int h = tcp_client();
    do_register_key(h, "listener", key_b, &k), wire_free(k);
    fcntl(m, F_SETFL, O_NONBLOCK);
    static uint8_t batch[512 * 32];
    size_t n = connect_frames(batch, sizeof(batch), "nobody", 0x10000000, 512);
    size_t largest = 0, sent = 0, off = 0;
    bool dropped = false;
    uint64_t t0 = time_now_ms();
    while (!dropped && time_now_ms() < t0 + 30000) {
        ssize_t w = send(m, batch + off, n - off, MSG_NOSIGNAL);
        if (w > 0) {
            sent += (size_t)w;
            off = (off + (size_t)w) % n;
        } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            dropped = true; /* EPIPE / ECONNRESET: the server closed */
        }
        ev_run(loop, EVRUN_NOWAIT);
        size_t big;
        server_queued_bytes(srv, &big);
        largest = big > largest ? big : largest;
    }
    cr_log_info("a peer that never reads: dropped=%d after %zu bytes of requests, largest queue "
                "%zu bytes", dropped, sent, largest);
    cr_assert(dropped, "still connected after %zu bytes of unread requests", sent);
    cr_assert_leq(largest, (size_t)256 * 1024);
    close(m);
    send_connect(h, "deaf", 1);
    expect_error(h, PUNCHLINE__ERROR_CODE__UNKNOWN_PEER);
    close(h);
    expect_still_serving();
}

/* TLS handshakes in progress are capped (256): each holds ~40 KiB of mbedTLS
 * state, so a flood of ClientHello starts cannot eat the server.  The 257th
 * connection that starts one is closed; a slot frees when one ends; all of
 * them are closed at the register deadline like any unregistered
 * connection. */
Test(rendezvous, tls_handshakes_in_progress_are_capped, .timeout = 60)
{
    char keyfile[] = "/tmp/pl-rz-tlscap-XXXXXX", err[256];
    int kfd = mkstemp(keyfile);
    cr_assert_geq(kfd, 0);
    close(kfd);
    unlink(keyfile);
    tls_conf *sconf = tls_conf_server_key(keyfile, err, sizeof(err));
    cr_assert_not_null(sconf, "%s", err);
    server_free(srv);
    server_config cfg = {.log_level = SRV_LOG_ERROR, .tls = sconf, .register_deadline_ms = 1500,
                         .per_ip_pending = 1000, .per_ip_rate = 100000};
    cr_assert_eq(netaddr_parse("127.0.0.1:0", &cfg.listen, false), 0);
    srv = server_new(loop, &cfg, err, sizeof(err));
    cr_assert_not_null(srv, "server_new: %s", err);
    server_local_addr(srv, &srv_addr);
    enum { CAP = 256 };
    static int fds[CAP + 1];
    /* a TLS record header (handshake, TLS 1.2) and nothing more */
    const uint8_t start[] = {0x16, 0x03, 0x03, 0x00, 0x40};
    for (int i = 0; i <= CAP; i++) {
        fds[i] = tcp_client();
        send_raw(fds[i], start, sizeof(start));
        for (int k = 0; k < 3; k++)
            ev_run(loop, EVRUN_NOWAIT);
    }
    /* closed at once, not at the register deadline */
    cr_assert(pump_until_readable(fds[CAP], 500), "handshake %d was not refused", CAP + 1);
    char c;
    cr_assert_leq(recv(fds[CAP], &c, 1, 0), 0);
    close(fds[CAP]);
    for (int i = 0; i < CAP; i += 37) {
        struct pollfd p = {.fd = fds[i], .events = POLLIN};
        cr_assert_eq(poll(&p, 1, 0), 0, "handshake %d closed", i);
    }
    /* one ends: room for another */
    close(fds[0]);
    for (int k = 0; k < 20; k++)
        ev_run(loop, EVRUN_NOWAIT), usleep(1000);
    fds[0] = tcp_client();
    send_raw(fds[0], start, sizeof(start));
    cr_assert_not(pump_until_readable(fds[0], 200), "a free slot was refused");
    /* the register deadline ends them all */
    for (int i = 0; i < CAP; i += 51)
        expect_closed(fds[i]);
    for (int i = 0; i < CAP; i++)
        close(fds[i]);
    tls_conf_free(sconf);
    unlink(keyfile);
    expect_still_serving();
}
