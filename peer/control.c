/* The peer's control connection to the rendezvous: TCP connect, Register,
 * UdpBind until the server reports our server-reflexive UDP endpoint,
 * keepalives, and the session messages (IncomingConnection, Candidates,
 * PunchStart, Error).  See docs/PROTOCOL.md "Registration". */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "hostaddr.h"
#include "names.h"
#include "crypto.h"
#include "peer_internal.h"

#define REGISTER_TIMEOUT_MS 10000
#define BIND_RTO_FIRST_MS 200
#define BIND_RTO_MAX_MS 2000
#define BIND_GIVEUP_MS 3000      /* no UdpBound by then: register without UDP */
#define RETRY_FIRST_MS 1000      /* re-registration after losing the server: first wait */
#define RETRY_MAX_MS 30000       /* ... doubling up to (jittered +-25%) */

static void ctl_pump(pl_peer *p);
static void ctl_registered(pl_peer *p);
static void ctl_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

static void ctl_fail(pl_peer *p, int status, const char *why_in)
{
    if (p->ctl_state == CTL_FAILED)
        return;
    /* why may point into what ctl_stop() frees (the TLS session's text) */
    char why[256];
    snprintf(why, sizeof(why), "%s", why_in);
    int was = p->ctl_state;
    ctl_stop(p);
    if (p->registered_once && (status == PL_ERR_SERVER || status == PL_ERR_RATE_LIMITED) &&
        !p->replaced && !p->freeing) {
        /* Lost a rendezvous we were registered at (it restarted, a NAT
         * dropped the connection...), or its per-source limit refused our
         * reconnection (many peers behind one address all coming back):
         * register again by ourselves, with
         * jittered exponential backoff so a restarted server is not hit by
         * every peer at once.  Established connections keep their direct
         * paths meanwhile; only requests still waiting for the server fail. */
        uint32_t base = p->retry_ms ? p->retry_ms : RETRY_FIRST_MS, jit;
        crypto_random(&jit, sizeof(jit));
        uint32_t d = base * 3 / 4 + jit % (base / 2 + 1); /* base +- 25% */
        p->retry_ms = base * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : base * 2;
        p->retry_at = peer_now(p) + d;
        p->ctl_state = CTL_RETRY_WAIT;
        plog(&p->log, PL_LOG_WARN, "rendezvous: %s; registering again in %.1f s", why, d / 1000.0);
        for (pl_conn *c = p->conns; c; c = c->next)
            if (c->state == CONN_REQUESTED || c->state == CONN_INCOMING)
                conn_finish(c, status, why);
        ev_init(&p->ctl_timer, ctl_timer_cb);
        p->ctl_timer.data = p;
        ev_timer_set(&p->ctl_timer, d / 1000.0, 0.);
        ev_timer_start(p->loop, &p->ctl_timer);
        return;
    }
    plog(&p->log, PL_LOG_ERROR, "rendezvous: %s", why);
    p->ctl_state = CTL_FAILED;
    /* Connections that still need the rendezvous cannot go on; established
     * ones keep their direct path. */
    for (pl_conn *c = p->conns; c; c = c->next)
        if (c->state < CONN_PUNCHING)
            conn_finish(c, status, why);
    if (p->cfg.on_registered && !p->freeing)
        p->cfg.on_registered(p, status, NULL, p->cfg.user);
    (void)was;
}

void ctl_stop(pl_peer *p)
{
    ev_io_stop(p->loop, &p->tcp_r);
    ev_io_stop(p->loop, &p->tcp_w);
    ev_timer_stop(p->loop, &p->ctl_timer);
    tls_stream_free(p->tls);
    p->tls = NULL;
    if (p->tcp_fd >= 0)
        close(p->tcp_fd);
    p->tcp_fd = -1;
    frame_reader_reset(&p->fr);
    free(p->out);
    p->out = NULL;
    p->out_len = p->out_cap = 0;
}

/* TLS to the rendezvous: drive the handshake; once done the server greets
 * again inside TLS (CTL_HELLO). */
static void tls_step(pl_peer *p)
{
    int rc = tls_stream_handshake(p->tls);
    if (rc == TLS_WANT_READ || rc == TLS_WANT_WRITE) {
        if (rc == TLS_WANT_WRITE)
            ev_io_start(p->loop, &p->tcp_w);
        else
            ev_io_stop(p->loop, &p->tcp_w);
        return;
    }
    if (rc < 0) {
        ctl_fail(p, tls_stream_auth_failed(p->tls) ? PL_ERR_AUTH : PL_ERR_SERVER,
                 tls_stream_error(p->tls));
        return;
    }
    ev_io_stop(p->loop, &p->tcp_w);
    p->ctl_state = CTL_HELLO;
    plog(&p->log, PL_LOG_DEBUG, "TLS to the rendezvous established");
    ev_feed_event(p->loop, &p->tcp_r, EV_READ); /* its greeting may be buffered already */
}

static void ctl_flush(pl_peer *p)
{
    if (p->ctl_state == CTL_TLS) {
        tls_step(p);
        return;
    }
    while (p->out_len) {
        ssize_t n;
        if (p->tls) {
            n = tls_stream_write(p->tls, p->out, p->out_len);
            if (n == TLS_WANT_WRITE || n == TLS_WANT_READ) {
                ev_io_start(p->loop, &p->tcp_w);
                return;
            }
            if (n < 0) {
                ctl_fail(p, PL_ERR_SERVER, tls_stream_error(p->tls));
                return;
            }
        } else if ((n = send(p->tcp_fd, p->out, p->out_len, MSG_NOSIGNAL)) < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                ev_io_start(p->loop, &p->tcp_w);
                return;
            }
            if (errno == EINTR)
                continue;
            ctl_fail(p, PL_ERR_SERVER, strerror(errno));
            return;
        }
        memmove(p->out, p->out + n, p->out_len - (size_t)n);
        p->out_len -= (size_t)n;
    }
    ev_io_stop(p->loop, &p->tcp_w);
}

int ctl_send(pl_peer *p, Punchline__Envelope *env)
{
    uint8_t buf[FRAME_HEADER + FRAME_MAX];
    if (p->tcp_fd < 0)
        return PL_ERR_SERVER;
    int n = wire_encode(env, buf + FRAME_HEADER, FRAME_MAX);
    if (n < 0)
        return PL_ERR_INVALID;
    frame_put_header(buf, (uint32_t)n);
    size_t total = (size_t)n + FRAME_HEADER;
    if (p->out_len + total > p->out_cap) {
        size_t cap = p->out_cap ? p->out_cap : 4096;
        while (cap < p->out_len + total)
            cap *= 2;
        uint8_t *o = realloc(p->out, cap);
        if (!o)
            return PL_ERR_NOMEM;
        p->out = o;
        p->out_cap = cap;
    }
    memcpy(p->out + p->out_len, buf, total);
    p->out_len += total;
    if (p->ctl_state != CTL_CONNECTING && p->ctl_state != CTL_TLS)
        ctl_flush(p);
    return 0;
}

void ctl_send_connect(pl_peer *p, pl_conn *c)
{
    Punchline__ConnectRequest cr = PUNCHLINE__CONNECT_REQUEST__INIT;
    cr.peer_name = c->peer_name;
    cr.request_id = c->request_id;
    cr.transport = c->transport == PL_TRANSPORT_UDP   ? PUNCHLINE__TRANSPORT__UDP
                   : c->transport == PL_TRANSPORT_TCP ? PUNCHLINE__TRANSPORT__TCP
                   : c->transport == PL_TRANSPORT_RELAY ? PUNCHLINE__TRANSPORT__TRANSPORT_RELAY
                                                      : PUNCHLINE__TRANSPORT__TRANSPORT_UNKNOWN;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_CONNECT_REQUEST;
    env.connect_request = &cr;
    plog(&p->log, PL_LOG_INFO, "asking the rendezvous to connect to %s", c->peer_name);
    if (ctl_send(p, &env) < 0)
        conn_finish(c, PL_ERR_SERVER, "control connection down");
}

/* Our candidates for the rendezvous: each interface address with the UDP
 * port and (if TCP punching is on) with the shared TCP port, plus the
 * reflexive address a STUN server told us (stun_client.c).  Storage in the
 * caller's arrays (WIRE_MAX_HOST_CANDIDATES each). */
static size_t fill_candidates(pl_peer *p, Punchline__Candidate *cs, Punchline__Candidate **ptrs,
                              Punchline__Endpoint *eps, uint8_t (*ips)[16])
{
    enum { HALF = (WIRE_MAX_HOST_CANDIDATES - 1) / 2 };
    netaddr hosts[HALF];
    size_t nh = hostaddr_gather(hosts, HALF, p->udp_port);
    if (p->cfg.bind_address) {
        /* bound to one address: that is our only host candidate */
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        getsockname(p->udp_fd, (struct sockaddr *)&ss, &sl);
        netaddr_from_sockaddr(&hosts[0], (struct sockaddr *)&ss, sl);
        nh = netaddr_is_usable_candidate(&hosts[0]) ? 1 : 0;
    }
    size_t n = 0;
    if (p->stun_mapped.len) {
        punchline__candidate__init(&cs[n]);
        netaddr_to_endpoint(&p->stun_mapped, &eps[n], ips[n]);
        cs[n].kind = PUNCHLINE__CANDIDATE_KIND__SERVER_REFLEXIVE;
        cs[n].transport = PUNCHLINE__TRANSPORT__UDP;
        cs[n].endpoint = &eps[n];
        ptrs[n] = &cs[n];
        n++;
    }
    for (int tcp = 0; tcp <= (p->listen_fd >= 0 ? 1 : 0); tcp++) {
        for (size_t i = 0; i < nh; i++, n++) {
            netaddr a = hosts[i];
            a.u.in4.sin_port = htons(tcp ? netaddr_port(&p->tcp_local) : p->udp_port);
            punchline__candidate__init(&cs[n]);
            netaddr_to_endpoint(&a, &eps[n], ips[n]);
            cs[n].kind = PUNCHLINE__CANDIDATE_KIND__HOST;
            cs[n].transport = tcp ? PUNCHLINE__TRANSPORT__TCP : PUNCHLINE__TRANSPORT__UDP;
            cs[n].endpoint = &eps[n];
            ptrs[n] = &cs[n];
        }
    }
    return n;
}

void ctl_send_candidates(pl_peer *p)
{
    if (p->ctl_state < CTL_REGISTERING || p->ctl_state == CTL_FAILED)
        return; /* Register (still to come) carries them */
    Punchline__Candidate cs[WIRE_MAX_HOST_CANDIDATES], *ptrs[WIRE_MAX_HOST_CANDIDATES];
    Punchline__Endpoint eps[WIRE_MAX_HOST_CANDIDATES];
    uint8_t ips[WIRE_MAX_HOST_CANDIDATES][16];
    Punchline__Candidates m = PUNCHLINE__CANDIDATES__INIT;
    m.candidates = ptrs;
    m.n_candidates = fill_candidates(p, cs, ptrs, eps, ips);
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_CANDIDATES;
    env.candidates = &m;
    ctl_send(p, &env);
}

static void send_register(pl_peer *p, const Punchline__ServerHello *hello)
{
    Punchline__Candidate cs[WIRE_MAX_HOST_CANDIDATES], *ptrs[WIRE_MAX_HOST_CANDIDATES];
    Punchline__Endpoint eps[WIRE_MAX_HOST_CANDIDATES];
    uint8_t ips[WIRE_MAX_HOST_CANDIDATES][16];
    size_t n = fill_candidates(p, cs, ptrs, eps, ips);
    Punchline__Register reg = PUNCHLINE__REGISTER__INIT;
    reg.name = p->name;
    reg.client_version = "punchline/" PL_VERSION_STRING;
    reg.candidates = ptrs;
    reg.n_candidates = n;
    /* Proof of possession: our key signs the server's fresh nonce. */
    uint8_t msg[sizeof(REGISTER_SIG_LABEL) + WIRE_NONCE_LEN + NAME_MAX_LEN];
    uint8_t sig[ID_SIG_MAX];
    size_t siglen = 0, publen = 0;
    size_t ml = wire_register_sig_input(hello->nonce.data, p->name, msg, sizeof(msg));
    if (!ml || identity_sign(p->ident, msg, ml, sig, &siglen) != 0) {
        ctl_fail(p, PL_ERR_SYSTEM, "cannot sign the registration");
        return;
    }
    reg.public_key.data = (uint8_t *)identity_pub(p->ident, &publen);
    reg.public_key.len = publen;
    reg.signature.data = sig;
    reg.signature.len = siglen;
    reg.token = p->cfg.auth_token ? (char *)p->cfg.auth_token : "";
    if (hello->token_required && !p->cfg.auth_token)
        plog(&p->log, PL_LOG_WARN, "the rendezvous requires an access token and we have none");
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_REGISTER;
    env.register_ = &reg;
    p->ctl_state = CTL_REGISTERING;
    ctl_send(p, &env);
    plog(&p->log, PL_LOG_DEBUG, "registering as %s with %zu host candidates", p->name, n);
}

/* Padded to WIRE_UDPBIND_MIN: the server answers no datagram with a larger
 * one (anti-amplification, PROTOCOL.md 3), and UdpBound is up to 38 bytes. */
static void send_udp_bind_challenge(pl_peer *p, uint64_t challenge)
{
    uint8_t buf[WIRE_UDPBIND_MIN + 16];
    int n = wire_encode_udp_bind(p->udp_token, challenge, buf, sizeof(buf));
    if (n > 0)
        peer_udp_send(p, &p->server, buf, (size_t)n);
}

static void send_udp_bind(pl_peer *p)
{
    send_udp_bind_challenge(p, 0);
}

void ctl_udp_refresh(pl_peer *p)
{
    uint64_t now = peer_now(p);
    if (p->ctl_state != CTL_REGISTERED || !p->observed_udp.len ||
        (p->udp_refresh_ms && now < p->udp_refresh_ms + 1000))
        return;
    p->udp_refresh_ms = now;
    send_udp_bind(p);
}

static void handle_error(pl_peer *p, const Punchline__Error *e)
{
    int status = conn_error_from_wire(e->code);
    const char *text = e->text && e->text[0] ? e->text : pl_strerror(status);
    if (e->request_id) {
        pl_conn *c = peer_find_request(p, e->request_id);
        if (c)
            conn_finish(c, status, text);
        return;
    }
    if (p->ctl_state == CTL_REGISTERED && e->code == PUNCHLINE__ERROR_CODE__NAME_IN_USE)
        p->replaced = true; /* another instance with our key took the name: do not fight it */
    if (p->ctl_state != CTL_REGISTERED || e->code == PUNCHLINE__ERROR_CODE__BAD_VERSION ||
        e->code == PUNCHLINE__ERROR_CODE__MALFORMED)
        ctl_fail(p, status == PL_ERR_UNKNOWN_PEER ? PL_ERR_SERVER : status, text);
    else
        plog(&p->log, PL_LOG_WARN, "rendezvous: %s", text);
}

static void handle_incoming(pl_peer *p, const Punchline__IncomingConnection *m)
{
    pl_conn *c = peer_find_session(p, m->session_id);
    if (c)
        return; /* duplicate notice */
    c = conn_new(p, m->peer_name, false);
    if (!c)
        return;
    c->session_id = m->session_id;
    plog(&p->log, PL_LOG_INFO, "incoming connection from %s", m->peer_name);
    if (p->cfg.on_incoming)
        p->cfg.on_incoming(p, c, m->peer_name, p->cfg.user);
    if (!c->callbacks_set) {
        plog(&p->log, PL_LOG_INFO, "refusing %s: the application did not accept it", m->peer_name);
        conn_destroy(c);
        return;
    }
    conn_incoming(c, m->session_id);
}

static pl_conn *session_conn(pl_peer *p, uint64_t sid, uint32_t request_id)
{
    pl_conn *c = request_id ? peer_find_request(p, request_id) : NULL;
    if (c && c->state == CONN_REQUESTED) {
        c->session_id = sid;
        return c;
    }
    c = peer_find_session(p, sid);
    return c && c->state == CONN_INCOMING ? c : NULL;
}

static void handle_message(pl_peer *p, Punchline__Envelope *env)
{
    switch (env->body_case) {
    case PUNCHLINE__ENVELOPE__BODY_SERVER_HELLO:
        if (p->ctl_state != CTL_HELLO)
            break;
        if (p->tls_conf && !p->tls) {
            /* This greeting was in clear: switch to TLS, the server greets
             * again inside it with a fresh nonce. */
            if (!env->server_hello->tls_available) {
                ctl_fail(p, PL_ERR_UNSUPPORTED, "the rendezvous offers no TLS (start it with "
                                                "--tls-cert and --tls-key)");
                break;
            }
            p->tls = tls_stream_new(p->tls_conf, p->tcp_fd, p->server_host);
            if (!p->tls) {
                ctl_fail(p, PL_ERR_NOMEM, "cannot set up TLS");
                break;
            }
            p->ctl_state = CTL_TLS;
            tls_step(p);
            break;
        }
        if (!p->tls && env->server_hello->tls_required) {
            ctl_fail(p, PL_ERR_ACCESS, "the rendezvous requires TLS on the control connection: "
                                       "give its CA file or key fingerprint");
            break;
        }
        send_register(p, env->server_hello);
        break;
    case PUNCHLINE__ENVELOPE__BODY_REGISTER_RESULT: {
        const Punchline__RegisterResult *rr = env->register_result;
        if (p->ctl_state != CTL_REGISTERING)
            break;
        if (rr->observed_tcp)
            netaddr_from_endpoint(rr->observed_tcp, &p->observed_tcp);
        p->udp_token = rr->udp_token;
        if (rr->keepalive_ms >= 1000)
            p->server_keepalive_ms = rr->keepalive_ms;
        p->ctl_state = CTL_BINDING;
        p->bind_interval_ms = BIND_RTO_FIRST_MS;
        p->next_bind_ms = 0;
        p->bind_started_ms = peer_now(p);
        break;
    }
    case PUNCHLINE__ENVELOPE__BODY_UDP_BOUND:
        ctl_udp_input(p, env, &p->server);
        break;
    case PUNCHLINE__ENVELOPE__BODY_KEEPALIVE:
        break;
    case PUNCHLINE__ENVELOPE__BODY_ERROR:
        handle_error(p, env->error);
        break;
    case PUNCHLINE__ENVELOPE__BODY_INCOMING:
        handle_incoming(p, env->incoming);
        break;
    case PUNCHLINE__ENVELOPE__BODY_CANDIDATES: {
        const Punchline__Candidates *m = env->candidates;
        pl_conn *c = session_conn(p, m->session_id, m->request_id);
        if (c)
            conn_candidates(c, m);
        break;
    }
    case PUNCHLINE__ENVELOPE__BODY_PUNCH_START: {
        const Punchline__PunchStart *ps = env->punch_start;
        pl_conn *c = session_conn(p, ps->session_id, ps->request_id);
        if (c)
            conn_punch_start(c, ps);
        break;
    }
    default:
        plog(&p->log, PL_LOG_DEBUG, "rendezvous sent unexpected %s", wire_body_name(env));
    }
}

static void tcp_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    pl_peer *p = w->data;
    uint8_t buf[16384];
    ssize_t n;
    if (p->ctl_state == CTL_TLS) {
        tls_step(p);
        if (p->ctl_state != CTL_HELLO)
            return;
    }
    if (p->tls) {
        n = tls_stream_read(p->tls, buf, sizeof(buf));
        if (n == TLS_WANT_READ || n == TLS_WANT_WRITE)
            return;
        if (n <= 0) {
            ctl_fail(p, PL_ERR_SERVER, n == 0 ? "connection closed by the server"
                                              : tls_stream_error(p->tls));
            return;
        }
        ev_feed_event(loop, w, EV_READ); /* mbedTLS may hold more decrypted bytes */
    } else {
        n = recv(p->tcp_fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            ctl_fail(p, PL_ERR_SERVER, n == 0 ? "connection closed by the server" : strerror(errno));
            return;
        }
        if (n < 0)
            return;
    }
    p->last_server_rx_ms = peer_now(p);
    size_t off = 0;
    while (off < (size_t)n && p->ctl_state != CTL_FAILED) {
        size_t used = 0;
        int st = frame_reader_feed(&p->fr, buf + off, (size_t)n - off, &used);
        off += used;
        if (st == FRAME_MORE)
            break;
        if (st != FRAME_READY) {
            ctl_fail(p, PL_ERR_PROTOCOL, "bad frame from the server");
            return;
        }
        Punchline__Envelope *env = NULL;
        uint32_t version = 0;
        int rc = wire_decode(p->fr.buf, p->fr.len, &env, &version);
        frame_reader_next(&p->fr);
        if (rc == WIRE_E_VERSION) {
            char why[128];
            snprintf(why, sizeof(why), "server speaks protocol version %u, we speak %d", version,
                     WIRE_VERSION);
            ctl_fail(p, PL_ERR_BAD_VERSION, why);
            return;
        }
        if (rc != WIRE_OK) {
            ctl_fail(p, PL_ERR_PROTOCOL, "malformed message from the server");
            return;
        }
        bool was_plain = !p->tls;
        handle_message(p, env);
        wire_free(env);
        if (was_plain && p->tls)
            break; /* switched to TLS: nothing plaintext can follow */
    }
    ctl_pump(p);
}

static void tcp_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    pl_peer *p = w->data;
    if (p->ctl_state == CTL_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(p->tcp_fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            char why[160], as[NETADDR_STRLEN];
            netaddr_format(&p->server, as, sizeof(as));
            snprintf(why, sizeof(why), "cannot connect to %s: %s", as, strerror(err));
            ctl_fail(p, PL_ERR_SERVER, why);
            return;
        }
        ev_io_start(p->loop, &p->tcp_r);
        p->ctl_state = CTL_HELLO; /* Register follows the server's nonce */
        ctl_flush(p);
        ctl_pump(p);
        return;
    }
    ctl_flush(p);
}

void ctl_udp_input(pl_peer *p, const Punchline__Envelope *env, const netaddr *from)
{
    if (env->body_case == PUNCHLINE__ENVELOPE__BODY_ERROR) {
        /* Unauthenticated (anyone can spoof the server's address): only a
         * hint.  A real version mismatch also shows on the TCP connection,
         * which does fail the registration. */
        if (env->error->code == PUNCHLINE__ERROR_CODE__BAD_VERSION)
            plog(&p->log, PL_LOG_WARN, "rendezvous (UDP): %s", env->error->text);
        return;
    }
    if (env->body_case != PUNCHLINE__ENVELOPE__BODY_UDP_BOUND)
        return;
    netaddr obs;
    if (netaddr_from_endpoint(env->udp_bound->observed_udp, &obs) != 0)
        return;
    if (env->udp_bound->challenge) {
        /* the server checks that this address is really ours first */
        if (p->udp_token)
            send_udp_bind_challenge(p, env->udp_bound->challenge);
        return;
    }
    if (p->ctl_state == CTL_REGISTERED && !netaddr_equal(&obs, &p->observed_udp)) {
        char as[NETADDR_STRLEN];
        netaddr_format(&obs, as, sizeof(as));
        plog(&p->log, PL_LOG_WARN, "our public UDP endpoint changed to %s (NAT rebinding)", as);
    }
    if (!p->observed_udp.len && p->ctl_state == CTL_REGISTERED) {
        char as[NETADDR_STRLEN];
        netaddr_format(&obs, as, sizeof(as));
        plog(&p->log, PL_LOG_INFO, "UDP works after all; public UDP endpoint %s", as);
    }
    p->observed_udp = obs;
    p->last_server_rx_ms = peer_now(p);
    if (p->ctl_state != CTL_BINDING)
        return;
    ctl_registered(p);
}

/* Registration complete, with a UDP endpoint or (UDP blocked) without. */
static void ctl_registered(pl_peer *p)
{
    p->ctl_state = CTL_REGISTERED;
    p->registered_once = true;
    p->retry_ms = 0; /* the next loss starts the backoff from 1 s again */
    p->next_bind_ms = peer_now(p) + peer_keepalive_ms(p);
    p->next_keepalive_ms = p->next_bind_ms;
    char as[NETADDR_STRLEN] = "none";
    if (p->observed_udp.len) {
        netaddr_format(&p->observed_udp, as, sizeof(as));
        plog(&p->log, PL_LOG_INFO, "registered as %s; public UDP endpoint %s", p->name, as);
    } else {
        plog(&p->log, PL_LOG_WARN,
             "registered as %s without UDP: no UDP answer from the rendezvous in %u s (UDP "
             "blocked?); connections use TCP punching and the TCP relay",
             p->name, BIND_GIVEUP_MS / 1000);
    }
    if (p->cfg.on_registered)
        p->cfg.on_registered(p, 0, as, p->cfg.user);
    for (pl_conn *c = p->conns; c; c = c->next)
        conn_registered(c);
    ctl_pump(p);
}

static void ctl_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    ctl_pump(w->data);
}

/* Registration deadline, UdpBind retransmission and refresh, keepalives. */
static void ctl_pump(pl_peer *p)
{
    uint64_t now = peer_now(p);
    uint64_t next;
    if (p->ctl_state == CTL_FAILED)
        return;
    if (p->ctl_state == CTL_RETRY_WAIT) {
        if (now < p->retry_at) {
            ev_timer_stop(p->loop, &p->ctl_timer);
            ev_timer_set(&p->ctl_timer, (double)(p->retry_at - now) / 1000.0, 0.);
            ev_timer_start(p->loop, &p->ctl_timer);
            return;
        }
        plog(&p->log, PL_LOG_INFO, "connecting to the rendezvous again");
        if (ctl_start(p) < 0)
            ctl_fail(p, PL_ERR_SERVER, "cannot reconnect to the rendezvous");
        return;
    }
    if (p->ctl_state != CTL_REGISTERED) {
        if (now >= p->ctl_started_ms + REGISTER_TIMEOUT_MS) {
            ctl_fail(p, PL_ERR_SERVER,
                     p->ctl_state == CTL_BINDING
                         ? "no UDP answer from the rendezvous (is UDP blocked?)"
                         : "no answer from the rendezvous");
            return;
        }
        next = p->ctl_started_ms + REGISTER_TIMEOUT_MS;
        if (p->ctl_state == CTL_BINDING && now >= p->bind_started_ms + BIND_GIVEUP_MS) {
            ctl_registered(p);
            return;
        }
        if (p->ctl_state == CTL_BINDING) {
            if (now >= p->next_bind_ms) {
                send_udp_bind(p);
                p->next_bind_ms = now + p->bind_interval_ms;
                p->bind_interval_ms = p->bind_interval_ms * 2 > BIND_RTO_MAX_MS
                                          ? BIND_RTO_MAX_MS : p->bind_interval_ms * 2;
            }
            if (p->next_bind_ms < next)
                next = p->next_bind_ms;
        }
    } else {
        uint32_t ka = peer_keepalive_ms(p);
        if (now >= p->last_server_rx_ms + 3 * (uint64_t)ka) {
            ctl_fail(p, PL_ERR_SERVER, "rendezvous stopped answering keepalives");
            return;
        }
        if (now >= p->next_keepalive_ms) {
            Punchline__Keepalive k = PUNCHLINE__KEEPALIVE__INIT;
            k.now_ms = now;
            Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
            env.body_case = PUNCHLINE__ENVELOPE__BODY_KEEPALIVE;
            env.keepalive = &k;
            ctl_send(p, &env);
            /* also refresh the NAT mapping toward the server's UDP port */
            send_udp_bind(p);
            p->next_keepalive_ms = now + ka;
        }
        if (p->ctl_state == CTL_FAILED)
            return;
        next = p->next_keepalive_ms;
    }
    ev_timer_stop(p->loop, &p->ctl_timer);
    ev_timer_set(&p->ctl_timer, next > now ? (double)(next - now) / 1000.0 : 0.001, 0.);
    ev_timer_start(p->loop, &p->ctl_timer);
}

int ctl_start(pl_peer *p)
{
    p->tcp_fd = socket(p->server.u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->tcp_fd < 0) {
        plog(&p->log, PL_LOG_ERROR, "socket: %s", strerror(errno));
        return PL_ERR_SYSTEM;
    }
    /* The control connection leaves from the port TCP punching will use, so
     * the server observes that port's NAT mapping (docs/PROTOCOL.md 4.3). */
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (tcp_link_reuse(p->tcp_fd) == 0 && bind(p->tcp_fd, &p->tcp_local.u.sa, p->tcp_local.len) == 0 &&
        getsockname(p->tcp_fd, (struct sockaddr *)&ss, &sl) == 0) {
        netaddr_from_sockaddr(&p->tcp_local, (struct sockaddr *)&ss, sl);
        peer_listen_start(p);
    } else {
        plog(&p->log, PL_LOG_WARN, "cannot share the TCP port (%s); TCP punching is off",
             strerror(errno));
    }
    frame_reader_init(&p->fr);
    ev_io_init(&p->tcp_r, tcp_read_cb, p->tcp_fd, EV_READ);
    ev_io_init(&p->tcp_w, tcp_write_cb, p->tcp_fd, EV_WRITE);
    ev_init(&p->ctl_timer, ctl_timer_cb);
    p->tcp_r.data = p->tcp_w.data = p->ctl_timer.data = p;
    p->ctl_state = CTL_CONNECTING;
    p->ctl_started_ms = peer_now(p);
    p->last_server_rx_ms = p->ctl_started_ms;
    if (connect(p->tcp_fd, &p->server.u.sa, p->server.len) < 0 && errno != EINPROGRESS) {
        plog(&p->log, PL_LOG_ERROR, "connect to the rendezvous: %s", strerror(errno));
        close(p->tcp_fd);
        p->tcp_fd = -1;
        return PL_ERR_SERVER;
    }
    ev_io_start(p->loop, &p->tcp_w); /* writable = connected (or failed) */
    ctl_pump(p);
    return 0;
}
