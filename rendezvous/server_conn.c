/* One TCP control connection at the rendezvous: framing, registration,
 * connect requests.  Every reply that ends a conversation (errors about the
 * protocol itself) is flushed before the socket is closed. */
#include "server_internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "identity.h"
#include "iplimit.h"
#include "timeutil.h"
#include "tls_stream.h"
#include "token.h"

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents);

#define SRV_TLS_HANDSHAKES_MAX 256 /* TLS handshakes in progress at once */

/* The nonce a Register on this connection must sign.  Sent at accept, so it
 * costs no round trip (it crosses the peer's first frame); sent again, with
 * a fresh nonce, inside TLS when the peer switches to TLS. */
static void send_hello(srv_conn *c)
{
    server *s = c->srv;
    srv_random_bytes(c->nonce, sizeof(c->nonce));
    Punchline__ServerHello sh = PUNCHLINE__SERVER_HELLO__INIT;
    sh.nonce.data = c->nonce;
    sh.nonce.len = sizeof(c->nonce);
    sh.server_version = "punchline-rendezvous/" PL_VERSION_STRING;
    sh.token_required = s->cfg.auth_secret != NULL;
    sh.tls_available = s->cfg.tls != NULL;
    sh.tls_required = s->cfg.tls_required;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_SERVER_HELLO;
    env.server_hello = &sh;
    srv_conn_send(c, &env);
}

void srv_conn_accept(server *s, int fd, const netaddr *remote)
{
    srv_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        iplimit_release(s->ipl, remote);
        close(fd);
        return;
    }
    c->srv = s;
    c->fd = fd;
    c->ipl_pending = true; /* admitted by iplimit in accept_cb */
    /* Replies are written as they are made (srv_conn_send): without this,
     * Nagle holds the second of two back-to-back frames (Incoming, then
     * Candidates and PunchStart) until the peer's delayed ACK, ~40 ms. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->remote = *remote;
    c->opened_ms = time_now_ms();
    frame_reader_init(&c->fr);
    c->fr.max = SRV_PREAUTH_FRAME_MAX; /* FRAME_MAX once registered */
    ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
    ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
    c->rio.data = c->wio.data = c;
    ev_io_start(s->loop, &c->rio);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    char as[NETADDR_STRLEN];
    netaddr_format(remote, as, sizeof(as));
    srv_log(s, SRV_LOG_DEBUG, "connection from %s", as);
    send_hello(c);
}

void srv_conn_authenticated(srv_conn *c)
{
    if (c->ipl_pending)
        iplimit_release(c->srv->ipl, &c->remote);
    c->ipl_pending = false;
}

void srv_conn_free(srv_conn *c)
{
    server *s = c->srv;
    srv_conn_authenticated(c);
    srv_relay_detach(c);
    if (c->peer) {
        srv_log(s, SRV_LOG_INFO, "peer %s unregistered", c->peer->name);
        registry_remove(s->reg, c->peer);
    }
    ev_io_stop(s->loop, &c->rio);
    ev_io_stop(s->loop, &c->wio);
    if (c->tls_hs)
        s->n_tls_hs--;
    tls_stream_free(c->tls);
    close(c->fd);
    frame_reader_reset(&c->fr);
    free(c->out);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    free(c);
}

void srv_conn_close_after_flush(srv_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->closing_ms = time_now_ms();
    ev_io_stop(c->srv->loop, &c->rio);
    if (c->peer) {
        srv_log(c->srv, SRV_LOG_INFO, "peer %s unregistered", c->peer->name);
        registry_remove(c->srv->reg, c->peer);
        c->peer = NULL;
    }
    /* Freed by the next write-watcher call (conn_flush), never here: callers
     * may still hold c. */
    ev_io_start(c->srv->loop, &c->wio);
}

/* Drive the TLS handshake; when done, greet again inside TLS.  Returns 0,
 * or -1 if the connection was freed. */
static int tls_step(srv_conn *c)
{
    int rc = tls_stream_handshake(c->tls);
    if (rc == TLS_WANT_READ) {
        ev_io_stop(c->srv->loop, &c->wio);
        return 0;
    }
    if (rc == TLS_WANT_WRITE) {
        ev_io_start(c->srv->loop, &c->wio);
        return 0;
    }
    if (rc < 0) {
        char as[NETADDR_STRLEN];
        netaddr_format(&c->remote, as, sizeof(as));
        srv_log(c->srv, SRV_LOG_DEBUG, "TLS handshake with %s failed: %s", as, tls_stream_error(c->tls));
        srv_conn_free(c);
        return -1;
    }
    c->tls_hs = false;
    c->srv->n_tls_hs--;
    c->out_len = 0; /* anything queued in plaintext is void now */
    send_hello(c);
    return -1;      /* the caller must not touch c again either way */
}

/* Returns 0, or -1 if the connection was freed. */
static int conn_flush(srv_conn *c)
{
    if (c->tls && c->tls_hs)
        return tls_step(c);
    while (c->out_len) {
        ssize_t n;
        if (c->tls) {
            n = tls_stream_write(c->tls, c->out, c->out_len);
            if (n == TLS_WANT_WRITE || n == TLS_WANT_READ) {
                ev_io_start(c->srv->loop, &c->wio);
                return 0;
            }
            if (n < 0) {
                srv_conn_free(c);
                return -1;
            }
        } else if ((n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL)) < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                ev_io_start(c->srv->loop, &c->wio);
                return 0;
            }
            if (errno == EINTR)
                continue;
            srv_conn_free(c);
            return -1;
        }
        memmove(c->out, c->out + n, c->out_len - (size_t)n);
        c->out_len -= (size_t)n;
        if (c->rs)
            srv_relay_drained(c);
    }
    ev_io_stop(c->srv->loop, &c->wio);
    if (c->closing) {
        srv_conn_free(c);
        return -1;
    }
    if (!c->rs && c->out) {
        /* drained: an idle control connection keeps no buffer (memory per
         * registered peer, docs/BENCHMARKS.md) */
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
    return 0;
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    conn_flush(w->data);
}

static int out_reserve(srv_conn *c, size_t total)
{
    if (c->out_len + total <= c->out_cap)
        return 0;
    size_t cap = c->out_cap ? c->out_cap : c->rs ? 4096 : 512;
    while (cap < c->out_len + total)
        cap *= 2;
    uint8_t *p = realloc(c->out, cap);
    if (!p)
        return -1;
    c->out = p;
    c->out_cap = cap;
    return 0;
}

int srv_conn_queue_raw(srv_conn *c, const uint8_t *buf, size_t len)
{
    if (c->closing || out_reserve(c, len) < 0)
        return -1;
    memcpy(c->out + c->out_len, buf, len);
    c->out_len += len;
    if (!ev_is_active(&c->wio))
        ev_io_start(c->srv->loop, &c->wio);
    return 0;
}

/* Queue a frame.  A peer that lets SRV_OUT_MAX pile up is not reading: drop it. */
int srv_conn_send(srv_conn *c, Punchline__Envelope *env)
{
    uint8_t buf[FRAME_HEADER + FRAME_MAX];
    int n = wire_encode(env, buf + FRAME_HEADER, FRAME_MAX);
    if (n < 0)
        return -1;
    frame_put_header(buf, (uint32_t)n);
    size_t total = (size_t)n + FRAME_HEADER;
    if (c->closing)
        return -1; /* nothing more after the last word */
    if (c->out_len + total > SRV_OUT_MAX) {
        /* Drop what it never read and close from the write watcher, so the
         * caller's c stays valid until it returns. */
        srv_log(c->srv, SRV_LOG_WARN, "dropping a connection that does not read its replies");
        c->out_len = 0;
        srv_conn_close_after_flush(c);
        /* nothing left to flush, and its socket will not turn writable:
         * close at the next loop iteration, not at the 5 s closing timeout
         * (meanwhile the kernel would take megabytes more of its requests) */
        ev_feed_event(c->srv->loop, &c->wio, EV_WRITE);
        return -1;
    }
    size_t off = 0;
    if (!c->out_len && !c->tls && !c->rs) {
        /* Nothing queued: write now (no watcher round trip, and no buffer
         * kept per idle connection).  Errors are left to the watcher, which
         * frees the connection: callers may still hold c. */
        ssize_t w = send(c->fd, buf, total, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w == (ssize_t)total)
            return 0;
        if (w > 0)
            off = (size_t)w;
    }
    if (out_reserve(c, total - off) < 0)
        return -1;
    memcpy(c->out + c->out_len, buf + off, total - off);
    c->out_len += total - off;
    if (!ev_is_active(&c->wio))
        ev_io_start(c->srv->loop, &c->wio); /* flush from the loop: keeps c valid for callers */
    return 0;
}

void srv_conn_send_error(srv_conn *c, Punchline__ErrorCode code, uint32_t request_id,
                         const char *fmt, ...)
{
    char text[WIRE_MAX_TEXT + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    Punchline__Error err = PUNCHLINE__ERROR__INIT;
    err.code = code;
    err.text = text;
    err.request_id = request_id;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_ERROR;
    env.error = &err;
    srv_conn_send(c, &env);
}

/* Keep the usable UDP and TCP host candidates a peer announced (RELAY ones
 * are ours to make: a peer's are ignored, like unusable addresses and a
 * remote peer's loopback ones, netaddr_candidate_plausible). */
static void store_host_candidates(reg_peer *p, Punchline__Candidate **cands, size_t n)
{
    reg_host tmp[WIRE_MAX_HOST_CANDIDATES];
    size_t k = 0;
    for (size_t i = 0; i < n && k < WIRE_MAX_HOST_CANDIDATES; i++) {
        netaddr a;
        int tr = cands[i]->transport;
        int kind = cands[i]->kind;
        if ((tr != PUNCHLINE__TRANSPORT__UDP && tr != PUNCHLINE__TRANSPORT__TCP) ||
            (kind != PUNCHLINE__CANDIDATE_KIND__HOST &&
             kind != PUNCHLINE__CANDIDATE_KIND__SERVER_REFLEXIVE) ||
            netaddr_from_endpoint(cands[i]->endpoint, &a) != 0 ||
            !netaddr_candidate_plausible(&a, &p->observed_tcp))
            continue;
        tmp[k].addr = a;
        tmp[k].tcp = tr == PUNCHLINE__TRANSPORT__TCP;
        tmp[k].srflx = kind == PUNCHLINE__CANDIDATE_KIND__SERVER_REFLEXIVE;
        k++;
    }
    reg_host *h = k ? malloc(k * sizeof(*h)) : NULL;
    if (k && !h)
        k = 0; /* out of memory: keep the peer, without host candidates */
    if (k)
        memcpy(h, tmp, k * sizeof(*h));
    free(p->host);
    p->host = h;
    p->n_host = k;
}

static void handle_register(srv_conn *c, const Punchline__Register *m)
{
    server *s = c->srv;
    if (c->peer) {
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__MALFORMED, 0, "already registered");
        srv_conn_close_after_flush(c);
        return;
    }
    if (s->cfg.tls_required && !c->tls) {
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__AUTH_FAILED, 0,
                            "this rendezvous requires TLS on the control connection "
                            "(peer: --tls-ca FILE or --tls-fingerprint ID)");
        srv_conn_close_after_flush(c);
        return;
    }
    if (!name_valid_cstr(m->name)) {
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__BAD_NAME, 0,
                            "bad name: use 1-%d characters of A-Z a-z 0-9 . _ -", NAME_MAX_LEN);
        srv_conn_close_after_flush(c);
        return;
    }
    /* The access token first: it costs one HMAC, the signature an ECDSA
     * verify (milliseconds), which only token holders get to spend. */
    const char *why = NULL;
    if (s->cfg.auth_secret &&
        token_check(s->cfg.auth_secret, s->cfg.auth_secret_len, m->name, m->token,
                    (uint64_t)time(NULL), &why) != 0) {
        srv_log(s, SRV_LOG_DEBUG, "registration of %s refused: %s", m->name, why);
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__AUTH_FAILED, 0, "access token: %s", why);
        srv_conn_close_after_flush(c);
        return;
    }
    /* Proof of key possession over this connection's nonce (a Register
     * replayed on another connection fails). */
    uint8_t hash[WIRE_KEY_HASH_LEN];
    uint8_t msg[sizeof(REGISTER_SIG_LABEL) + WIRE_NONCE_LEN + NAME_MAX_LEN];
    size_t ml = wire_register_sig_input(c->nonce, m->name, msg, sizeof(msg));
    if (!m->public_key.len || !m->signature.len ||
        identity_verify(m->public_key.data, m->public_key.len, msg, ml, m->signature.data,
                        m->signature.len, hash) != 0) {
        srv_log(s, SRV_LOG_DEBUG, "registration of %s refused: bad key or signature", m->name);
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__AUTH_FAILED, 0,
                            m->public_key.len ? "registration signature does not verify"
                                              : "registration needs a public key and signature");
        srv_conn_close_after_flush(c);
        return;
    }
    /* A name belongs to the key that holds it.  The same key registering
     * again (a restarted peer) replaces its old registration. */
    reg_peer *old = registry_find(s->reg, m->name);
    if (old && !crypto_equal(old->key_hash, hash, sizeof(hash))) {
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__NAME_IN_USE, 0,
                            "name '%s' is registered by another key", m->name);
        srv_conn_close_after_flush(c);
        return;
    }
    if (old) {
        srv_conn *oc = old->conn;
        srv_log(s, SRV_LOG_INFO, "peer %s registers again with the same key: replacing the old "
                                 "registration", m->name);
        srv_conn_send_error(oc, PUNCHLINE__ERROR_CODE__NAME_IN_USE, 0,
                            "replaced by a newer registration of the same key");
        srv_conn_close_after_flush(oc);
    }
    uint64_t token;
    do
        token = srv_random64();
    while (token == 0 || registry_find_token(s->reg, token));
    reg_peer *p = NULL;
    int rc = registry_add(s->reg, m->name, c, token, time_now_ms(), &p);
    if (rc == REG_E_BAD_NAME) {
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__BAD_NAME, 0,
                            "bad name: use 1-%d characters of A-Z a-z 0-9 . _ -", NAME_MAX_LEN);
    } else if (rc == REG_E_NAME_IN_USE) {
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__NAME_IN_USE, 0, "name '%s' is in use",
                            m->name);
    } else if (rc != REG_OK) {
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__SERVER_FULL, 0, "server full");
    }
    if (rc != REG_OK) {
        srv_conn_close_after_flush(c);
        return;
    }
    c->peer = p;
    c->fr.max = 0; /* FRAME_MAX from here on */
    srv_conn_authenticated(c);
    memcpy(p->key_hash, hash, sizeof(hash));
    p->observed_tcp = c->remote;
    store_host_candidates(p, m->candidates, m->n_candidates);
    uint8_t ipbuf[16];
    Punchline__Endpoint ep;
    netaddr_to_endpoint(&c->remote, &ep, ipbuf);
    Punchline__RegisterResult rr = PUNCHLINE__REGISTER_RESULT__INIT;
    rr.observed_tcp = &ep;
    rr.udp_token = token;
    rr.keepalive_ms = s->cfg.keepalive_ms;
    rr.expiry_ms = s->cfg.expiry_ms;
    rr.server_version = "punchline-rendezvous/" PL_VERSION_STRING;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_REGISTER_RESULT;
    env.register_result = &rr;
    srv_conn_send(c, &env);
    char as[NETADDR_STRLEN];
    netaddr_format(&c->remote, as, sizeof(as));
    srv_log(s, SRV_LOG_INFO, "peer %s registered from %s (%zu host candidates)", p->name, as,
            p->n_host);
}

static void put_candidate(Punchline__Candidate *c, Punchline__Endpoint *ep, uint8_t *ip,
                          const netaddr *a, int kind, int transport)
{
    netaddr_to_endpoint(a, ep, ip);
    punchline__candidate__init(c);
    c->kind = kind;
    c->transport = transport;
    c->endpoint = ep;
}

/* Candidates of p as wire structs; storage lives in the caller's arrays
 * (room for WIRE_MAX_HOST_CANDIDATES + 2).  Server-reflexive first per
 * transport: those are the ones most likely to work across NATs. */
static size_t fill_candidates(const reg_peer *p, Punchline__Candidate *cs, Punchline__Candidate **ptrs,
                              Punchline__Endpoint *eps, uint8_t (*ips)[16])
{
    size_t n = 0;
    for (int tcp = 0; tcp <= 1; tcp++) {
        int tr = tcp ? PUNCHLINE__TRANSPORT__TCP : PUNCHLINE__TRANSPORT__UDP;
        const netaddr *srflx = tcp ? &p->observed_tcp : &p->observed_udp;
        if (netaddr_is_usable_candidate(srflx))
            put_candidate(&cs[n], &eps[n], ips[n], srflx, PUNCHLINE__CANDIDATE_KIND__SERVER_REFLEXIVE, tr), n++;
        /* reflexive addresses the peer learned from a STUN server, unless
         * the same as ours, then its interface addresses */
        for (int srflx_pass = 1; srflx_pass >= 0; srflx_pass--)
            for (size_t i = 0; i < p->n_host; i++)
                if (p->host[i].tcp == (tcp == 1) && p->host[i].srflx == (srflx_pass == 1) &&
                    !(srflx_pass && netaddr_equal(&p->host[i].addr, srflx)))
                    put_candidate(&cs[n], &eps[n], ips[n], &p->host[i].addr,
                                  srflx_pass ? PUNCHLINE__CANDIDATE_KIND__SERVER_REFLEXIVE
                                             : PUNCHLINE__CANDIDATE_KIND__HOST, tr), n++;
    }
    for (size_t i = 0; i < n; i++)
        ptrs[i] = &cs[i];
    return n;
}

/* RELAY candidates: the relay-udp one only if both sides have a UDP
 * endpoint (the server forwards between those two), relay-tcp always.  The
 * endpoint is this server's address as the peer reached it; peers send to
 * the rendezvous address they know (PROTOCOL.md 5). */
static size_t fill_relay(const srv_conn *to, const relay_session *rs, Punchline__Candidate *cs,
                         Punchline__Endpoint *eps, uint8_t (*ips)[16])
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    netaddr local;
    size_t n = 0;
    if (!rs || getsockname(to->fd, (struct sockaddr *)&ss, &sl) < 0)
        return 0;
    netaddr_from_sockaddr(&local, (struct sockaddr *)&ss, sl);
    if (rs->udp[0].len && rs->udp[1].len)
        put_candidate(&cs[n], &eps[n], ips[n], &local, PUNCHLINE__CANDIDATE_KIND__RELAY,
                      PUNCHLINE__TRANSPORT__UDP), n++;
    put_candidate(&cs[n], &eps[n], ips[n], &local, PUNCHLINE__CANDIDATE_KIND__RELAY,
                  PUNCHLINE__TRANSPORT__TCP), n++;
    return n;
}

static void send_session(srv_conn *to, const reg_peer *other, uint64_t sid, const uint8_t *secret,
                         Punchline__Role role, uint32_t request_id, Punchline__Transport transport,
                         const relay_session *rs)
{
    enum { MAXC = WIRE_MAX_HOST_CANDIDATES + 4 };
    Punchline__Candidate cs[MAXC], *ptrs[MAXC];
    Punchline__Endpoint eps[MAXC];
    uint8_t ips[MAXC][16];
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    char name[NAME_MAX_LEN + 1];
    strcpy(name, other->name);

    if (role == PUNCHLINE__ROLE__CONTROLLED) {
        Punchline__IncomingConnection in = PUNCHLINE__INCOMING_CONNECTION__INIT;
        in.session_id = sid;
        in.peer_name = name;
        env.body_case = PUNCHLINE__ENVELOPE__BODY_INCOMING;
        env.incoming = &in;
        srv_conn_send(to, &env);
    }
    Punchline__Candidates cm = PUNCHLINE__CANDIDATES__INIT;
    cm.session_id = sid;
    cm.peer_name = name;
    cm.request_id = request_id;
    cm.n_candidates = 0;
    if (transport != PUNCHLINE__TRANSPORT__TRANSPORT_RELAY)
        cm.n_candidates = fill_candidates(other, cs, ptrs, eps, ips);
    size_t nr = fill_relay(to, rs, cs + cm.n_candidates, eps + cm.n_candidates, ips + cm.n_candidates);
    for (size_t i = cm.n_candidates; i < cm.n_candidates + nr; i++)
        ptrs[i] = &cs[i];
    cm.n_candidates += nr;
    cm.candidates = ptrs;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_CANDIDATES;
    env.candidates = &cm;
    srv_conn_send(to, &env);

    Punchline__PunchStart ps = PUNCHLINE__PUNCH_START__INIT;
    ps.session_id = sid;
    ps.peer_name = name;
    ps.secret.data = (uint8_t *)secret;
    ps.secret.len = WIRE_SECRET_LEN;
    ps.peer_key_hash.data = (uint8_t *)other->key_hash;
    ps.peer_key_hash.len = WIRE_KEY_HASH_LEN;
    ps.role = role;
    ps.request_id = request_id;
    ps.transport = transport;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_PUNCH_START;
    env.punch_start = &ps;
    srv_conn_send(to, &env);
}

static void handle_connect(srv_conn *c, const Punchline__ConnectRequest *m)
{
    server *s = c->srv;
    reg_peer *me = c->peer;
    uint32_t rid = m->request_id;
    if (!ratelimit_take(&me->connect_rl, time_now_ms())) {
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__RATE_LIMITED, rid,
                            "too many connect requests; slow down");
        return;
    }
    if (m->transport != PUNCHLINE__TRANSPORT__TRANSPORT_UNKNOWN &&
        m->transport != PUNCHLINE__TRANSPORT__UDP && m->transport != PUNCHLINE__TRANSPORT__TCP &&
        m->transport != PUNCHLINE__TRANSPORT__TRANSPORT_RELAY) {
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__UNSUPPORTED, rid,
                            "transport %d is not supported by this server", m->transport);
        return;
    }
    if (m->transport == PUNCHLINE__TRANSPORT__TRANSPORT_RELAY && !s->relay) {
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__UNSUPPORTED, rid,
                            "this rendezvous does not relay (started with --no-relay)");
        return;
    }
    if (!name_valid_cstr(m->peer_name)) {
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__BAD_NAME, rid, "bad peer name");
        return;
    }
    if (strcmp(m->peer_name, me->name) == 0) {
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__SELF_CONNECT, rid,
                            "cannot connect to yourself");
        return;
    }
    reg_peer *other = registry_find(s->reg, m->peer_name);
    if (!other || !other->conn || ((srv_conn *)other->conn)->closing) {
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__UNKNOWN_PEER, rid,
                            "unknown peer '%s' (not registered)", m->peer_name);
        return;
    }
    /* A peer without a UDP endpoint (UDP blocked: it gave up binding) can
     * still use TCP punching and the TCP relay; only a UDP-only request needs
     * both endpoints. */
    if (m->transport == PUNCHLINE__TRANSPORT__UDP && (!me->observed_udp.len || !other->observed_udp.len)) {
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__PEER_NOT_READY, rid,
                            "%s has no UDP endpoint at the rendezvous (UDP blocked, or not bound yet)",
                            me->observed_udp.len ? other->name : "you");
        return;
    }
    uint64_t sid;
    do
        sid = srv_random64();
    while (sid == 0 || (s->relay && relay_find(s->relay, sid)));
    uint8_t secret[WIRE_SECRET_LEN];
    srv_random_bytes(secret, sizeof(secret));
    /* UDP- or TCP-only requests never relay: no relay session for them */
    relay_session *rs = m->transport == PUNCHLINE__TRANSPORT__TRANSPORT_UNKNOWN ||
                                m->transport == PUNCHLINE__TRANSPORT__TRANSPORT_RELAY
                            ? srv_relay_session(s, sid, secret, me, other)
                            : NULL;
    if (m->transport == PUNCHLINE__TRANSPORT__TRANSPORT_RELAY && !rs) {
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__SERVER_FULL, rid,
                            "relay table full; try again later");
        return;
    }
    /* Both sides get their messages in the same loop iteration so they start
     * probing at (nearly) the same moment. */
    send_session(other->conn, me, sid, secret, PUNCHLINE__ROLE__CONTROLLED, 0, m->transport, rs);
    send_session(c, other, sid, secret, PUNCHLINE__ROLE__CONTROLLING, rid, m->transport, rs);
    srv_log(s, SRV_LOG_INFO, "session %016llx: %s -> %s%s", (unsigned long long)sid, me->name,
            other->name, rs ? " (relay offered)" : "");
}

static void handle_candidates(srv_conn *c, const Punchline__Candidates *m)
{
    store_host_candidates(c->peer, m->candidates, m->n_candidates);
}

/* Returns 0, or -1 if the connection is closing/freed. */
static int handle_frame(srv_conn *c, const uint8_t *buf, size_t len)
{
    server *s = c->srv;
    Punchline__Envelope *env = NULL;
    uint32_t version = 0;
    int rc = wire_decode(buf, len, &env, &version);
    if (rc == WIRE_E_VERSION) {
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__BAD_VERSION, 0,
                            "server speaks protocol version %d, client sent version %u",
                            WIRE_VERSION, version);
        srv_conn_close_after_flush(c);
        return -1;
    }
    if (rc != WIRE_OK) {
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__MALFORMED, 0, "malformed message");
        srv_conn_close_after_flush(c);
        return -1;
    }
    if (c->peer)
        registry_touch(c->peer, time_now_ms());
    int ret = 0;
    if (!c->peer && env->body_case == PUNCHLINE__ENVELOPE__BODY_RELAY_OPEN && c->tls) {
        /* the splice moves raw bytes: relay connections are plain TCP */
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__RELAY_REFUSED, 0,
                            "relay connections do not run TLS");
        srv_conn_close_after_flush(c);
        ret = -1;
        goto out;
    }
    if (!c->peer && env->body_case == PUNCHLINE__ENVELOPE__BODY_RELAY_OPEN) {
        srv_conn_authenticated(c); /* authenticated by its MAC, or closed */
        srv_relay_open(c, env->relay_open);
        ret = -1; /* no more frames: raw bytes (after RelayReady) or closing */
        goto out;
    }
    if (!c->peer && env->body_case != PUNCHLINE__ENVELOPE__BODY_REGISTER) {
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__NOT_REGISTERED, 0,
                            "register first (got %s)", wire_body_name(env));
        srv_conn_close_after_flush(c);
        ret = -1;
        goto out;
    }
    switch (env->body_case) {
    case PUNCHLINE__ENVELOPE__BODY_REGISTER:
        handle_register(c, env->register_);
        ret = c->closing ? -1 : 0;
        break;
    case PUNCHLINE__ENVELOPE__BODY_KEEPALIVE: {
        Punchline__Keepalive ka = PUNCHLINE__KEEPALIVE__INIT;
        Punchline__Envelope r = PUNCHLINE__ENVELOPE__INIT;
        r.body_case = PUNCHLINE__ENVELOPE__BODY_KEEPALIVE;
        r.keepalive = &ka;
        srv_conn_send(c, &r);
        break;
    }
    case PUNCHLINE__ENVELOPE__BODY_CONNECT_REQUEST:
        handle_connect(c, env->connect_request);
        break;
    case PUNCHLINE__ENVELOPE__BODY_CANDIDATES:
        handle_candidates(c, env->candidates);
        break;
    case PUNCHLINE__ENVELOPE__BODY_CLOSE:
        srv_conn_close_after_flush(c);
        ret = -1;
        break;
    default:
        srv_log(s, SRV_LOG_DEBUG, "unexpected %s on control connection", wire_body_name(env));
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__MALFORMED, 0, "unexpected %s",
                            wire_body_name(env));
        srv_conn_close_after_flush(c);
        ret = -1;
    }
out:
    wire_free(env);
    return ret;
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    srv_conn *c = w->data;
    if (c->rs) {
        srv_relay_read(c);
        return;
    }
    uint8_t buf[16384];
    if (!c->first_seen && c->srv->cfg.tls && !c->peer) {
        /* A TLS ClientHello record starts with 0x16; a punchline frame with
         * a length byte of 0 (frames are at most 16384 bytes). */
        uint8_t b;
        ssize_t k = recv(c->fd, &b, 1, MSG_PEEK);
        if (k == 1 && b == 0x16 && !c->out_len) {
            /* A handshake costs ~5 ms of CPU and ~40 KiB: bound how many
             * run at once, so a flood of ClientHellos cannot eat the server. */
            if (c->srv->n_tls_hs >= SRV_TLS_HANDSHAKES_MAX ||
                !(c->tls = tls_stream_new(c->srv->cfg.tls, c->fd, NULL))) {
                srv_log(c->srv, SRV_LOG_DEBUG, "TLS handshake refused (%zu running)",
                        c->srv->n_tls_hs);
                srv_conn_free(c);
                return;
            }
            c->tls_hs = true;
            c->srv->n_tls_hs++;
        }
        if (k >= 0)
            c->first_seen = true;
    }
    if (c->tls && c->tls_hs) {
        tls_step(c);
        return;
    }
    ssize_t n;
    if (c->tls) {
        n = tls_stream_read(c->tls, buf, sizeof(buf));
        if (n == TLS_WANT_READ || n == TLS_WANT_WRITE)
            return;
        if (n <= 0) {
            srv_conn_free(c);
            return;
        }
        /* mbedTLS may hold more decrypted bytes than one read returned:
         * libev will not report them, so come back at once. */
        ev_feed_event(loop, w, EV_READ);
    } else {
        n = recv(c->fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            srv_conn_free(c);
            return;
        }
        if (n < 0)
            return;
    }
    size_t off = 0;
    while (off < (size_t)n) {
        size_t used = 0;
        int st = frame_reader_feed(&c->fr, buf + off, (size_t)n - off, &used);
        off += used;
        if (st == FRAME_MORE)
            break;
        if (st != FRAME_READY) {
            srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__MALFORMED, 0,
                                st == FRAME_EMPTY ? "empty frame" : "frame larger than %d bytes%s",
                                c->peer ? FRAME_MAX : SRV_PREAUTH_FRAME_MAX,
                                c->peer ? "" : " before registration");
            srv_conn_close_after_flush(c);
            return;
        }
        int rc = handle_frame(c, c->fr.buf, c->fr.len);
        if (rc < 0 && c->rs && !c->closing) {
            /* RelayOpen accepted: nothing may follow it before RelayReady */
            frame_reader_reset(&c->fr);
            if (off < (size_t)n) {
                srv_log(c->srv, SRV_LOG_INFO, "relay connection sent data before RelayReady; closing");
                srv_conn_free(c);
            }
            return;
        }
        if (rc < 0)
            return; /* closing (the frame buffer is freed with the connection) */
        frame_reader_next(&c->fr);
    }
    if (c->closing && !c->out_len)
        srv_conn_free(c);
}
