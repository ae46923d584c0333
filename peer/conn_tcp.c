/* The TCP punching shell of one pl_conn: turns tcp_punch actions into
 * sockets (attempts from the shared local port, closes), carries its Probe
 * frames, and routes Data/Ack/Close frames of the selected stream to the
 * connection.  Stream and attempt links are labelled with their core index. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>

#include "crypto.h"
#include "peer_internal.h"

static void link_connect_cb(tcp_link *l, int err, void *user);
static void link_frame_cb(tcp_link *l, const uint8_t *buf, size_t len, void *user);
static void link_close_cb(tcp_link *l, int err, void *user);
static void link_drain_cb(tcp_link *l, void *user);

static const tcp_link_ops attempt_ops = {
    .on_connect = link_connect_cb, .on_frame = link_frame_cb, .on_close = link_close_cb};
static const tcp_link_ops stream_ops = {
    .on_frame = link_frame_cb, .on_close = link_close_cb, .on_drain = link_drain_cb};

/* Link tags: attempts are their candidate index, streams 100 + stream index. */
#define STREAM_TAG(i) (100 + (i))

/* How long an attempt may wait for an answer before it is replaced.  All
 * attempts to one candidate share one 4-tuple: a replacement SYN carries a
 * new sequence number, and once the peer's SYN has crossed ours the NATs'
 * conntrack entries (SYN_SENT2) mark it INVALID, and the SYN-ACK meant for
 * the old socket meets a closed one.  So never replace an attempt before
 * the peer could have answered: one peer-to-peer RTT, estimated as 4x our
 * smoothed RTT to the rendezvous (the peer's leg is unknown and may be
 * longer, e.g. behind a second NAT; measured in the lab with delay: 3x was
 * not enough against a double NAT).  Near zero RTT this stays at 50 ms. */
static uint32_t attempt_interval_ms(const pl_peer *p, uint32_t floor_ms)
{
    struct tcp_info ti;
    socklen_t tl = sizeof(ti);
    uint32_t rtt_ms = 0;
    if (p->tcp_fd >= 0 && getsockopt(p->tcp_fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0)
        rtt_ms = ti.tcpi_rtt / 1000;
    uint32_t v = 4 * rtt_ms;
    return v > floor_ms ? v : floor_ms;
}

void conn_tcp_start(pl_conn *c, uint64_t now)
{
    pl_peer *p = c->peer;
    tcpp_config cfg = {
        .session_id = c->session_id,
        .controlling = c->pu.cfg.controlling,
        .timeout_ms = p->cfg.punch_timeout_ms,
        .keepalive_ms = peer_keepalive_ms(p),
        .path_timeout_ms = p->cfg.path_timeout_ms,
        .attempt_initial_ms = attempt_interval_ms(p, 50),
        .attempt_max_ms = attempt_interval_ms(p, 200),
    };
    if (cfg.attempt_initial_ms > 50)
        plog(&p->log, PL_LOG_DEBUG, "tcp attempts to %s paced %u..%u ms (rendezvous RTT)",
             c->peer_name, cfg.attempt_initial_ms, cfg.attempt_max_ms);
    memcpy(cfg.secret, c->pu.cfg.secret, WIRE_SECRET_LEN);
    crypto_random(&cfg.tid_seed, sizeof(cfg.tid_seed));
    tcpp_init(&c->tp, &cfg);
    for (size_t i = 0; i < c->n_remote; i++)
        if (c->remote_tcp[i])
            tcpp_add_remote(&c->tp, &c->remote_cands[i]);
    tcpp_start(&c->tp, now);
}

void conn_tcp_free(pl_conn *c)
{
    for (size_t i = 0; i < TCPP_MAX_CANDS; i++) {
        tcp_link_free(c->attempts[i]);
        c->attempts[i] = NULL;
    }
    for (size_t i = 0; i < TCPP_MAX_STREAMS; i++) {
        tcp_link_free(c->streams[i]);
        c->streams[i] = NULL;
    }
}

/* A stream failed under us (queue overflow, bad frame): tell the core, free it. */
static void drop_stream(pl_conn *c, int s)
{
    tcpp_on_stream_closed(&c->tp, s, peer_now(c->peer));
    tcp_link_free(c->streams[s]);
    c->streams[s] = NULL;
}

static void apply_action(pl_conn *c, const tcpp_action *a)
{
    pl_peer *p = c->peer;
    switch (a->kind) {
    case TCPP_ACT_CONNECT: {
        tcp_link_free(c->attempts[a->cand]); /* a paced retry replaces the old SYN */
        c->attempts[a->cand] =
            tcp_link_connect(p->loop, &p->tcp_local, &c->tp.cands[a->cand].remote, &attempt_ops,
                             c, a->cand);
        if (!c->attempts[a->cand]) {
            char as[NETADDR_STRLEN];
            netaddr_format(&c->tp.cands[a->cand].remote, as, sizeof(as));
            plog(&p->log, PL_LOG_DEBUG, "tcp attempt to %s: %s", as, strerror(errno));
            tcpp_on_attempt_failed(&c->tp, a->cand, peer_now(p));
        }
        break;
    }
    case TCPP_ACT_ABORT_ATTEMPT:
        tcp_link_free(c->attempts[a->cand]);
        c->attempts[a->cand] = NULL;
        break;
    case TCPP_ACT_CLOSE_STREAM:
        tcp_link_free(c->streams[a->stream]);
        c->streams[a->stream] = NULL;
        break;
    default:
        break;
    }
}

void conn_tcp_pump(pl_conn *c, uint64_t now)
{
    tcpp_action a;
    uint8_t buf[WIRE_UDP_MAX];
    int si;
    size_t n;
    tcpp_tick(&c->tp, now);
    while (tcpp_poll_action(&c->tp, now, &a))
        apply_action(c, &a);
    while ((n = tcpp_poll_transmit(&c->tp, now, &si, buf, sizeof(buf))) > 0)
        if (c->streams[si] && tcp_link_send(c->streams[si], buf, n) < 0)
            drop_stream(c, si);
}

static void link_connect_cb(tcp_link *l, int err, void *user)
{
    pl_conn *c = user;
    int cand = l->tag;
    uint64_t now = peer_now(c->peer);
    c->attempts[cand] = NULL;
    if (err) {
        tcpp_on_attempt_failed(&c->tp, cand, now);
        tcp_link_free(l);
    } else {
        int s = tcpp_on_connected(&c->tp, cand, now);
        if (s < 0) {
            tcp_link_free(l);
        } else {
            char as[NETADDR_STRLEN];
            netaddr_format(&l->remote, as, sizeof(as));
            plog(&c->peer->log, PL_LOG_DEBUG, "tcp connected to %s (%s)", as, c->peer_name);
            tcp_link_set_owner(l, &stream_ops, c, STREAM_TAG(s));
            c->streams[s] = l;
        }
    }
    conn_pump(c);
}

static void handle_frame(pl_conn *c, int s, const Punchline__Envelope *env, const netaddr *from)
{
    uint64_t now = peer_now(c->peer);
    if (env->body_case == PUNCHLINE__ENVELOPE__BODY_PROBE) {
        tcpp_input(&c->tp, s, env->probe, now);
        if (tcpp_selected(&c->tp) >= 0)
            conn_note_nomination(c, PL_PATH_DIRECT_TCP);
    } else if (s == tcpp_selected(&c->tp)) {
        tcpp_note_rx(&c->tp, s, now);
        conn_data_input(c, env, PL_PATH_DIRECT_TCP, from);
        return; /* conn_data_input pumps */
    }
    conn_pump(c);
}

static void link_frame_cb(tcp_link *l, const uint8_t *buf, size_t len, void *user)
{
    pl_conn *c = user;
    if (l->tag < STREAM_TAG(0) || c->state == CONN_CLOSED)
        return; /* an attempt never delivers frames before on_connect */
    Punchline__Envelope *env = NULL;
    if (wire_decode(buf, len, &env, NULL) != WIRE_OK) {
        drop_stream(c, l->tag - STREAM_TAG(0)); /* frees l: deferred, we are in its callback */
        conn_pump(c);
        return;
    }
    netaddr from = l->remote;
    handle_frame(c, l->tag - STREAM_TAG(0), env, &from);
    wire_free(env);
}

/* The socket took our backlog: the stream may send more (conn_pump). */
static void link_drain_cb(tcp_link *l, void *user)
{
    pl_conn *c = user;
    if (c->state != CONN_CLOSED)
        conn_pump(c);
}

static void link_close_cb(tcp_link *l, int err, void *user)
{
    pl_conn *c = user;
    uint64_t now = peer_now(c->peer);
    if (l->tag >= STREAM_TAG(0)) {
        int s = l->tag - STREAM_TAG(0);
        c->streams[s] = NULL;
        tcpp_on_stream_closed(&c->tp, s, now);
    } else {
        c->attempts[l->tag] = NULL;
        tcpp_on_attempt_failed(&c->tp, l->tag, now);
    }
    tcp_link_free(l);
    conn_pump(c);
}

void conn_tcp_adopt(pl_conn *c, tcp_link *l, const Punchline__Envelope *first)
{
    int s = tcpp_on_accepted(&c->tp, &l->remote, peer_now(c->peer));
    if (s < 0) {
        tcp_link_free(l);
        return;
    }
    tcp_link_set_owner(l, &stream_ops, c, STREAM_TAG(s));
    c->streams[s] = l;
    netaddr from = l->remote;
    handle_frame(c, s, first, &from);
}

void conn_tcp_send(pl_conn *c, const uint8_t *dgram, size_t len)
{
    int s = tcpp_selected(&c->tp);
    if (s < 0 || !c->streams[s] || len < 2)
        return;
    /* the stream is framed: drop the UDP demultiplexing byte */
    if (tcp_link_send(c->streams[s], dgram + 1, len - 1) < 0)
        drop_stream(c, s);
}

void conn_tcp_flush(pl_conn *c)
{
    int s = tcpp_selected(&c->tp);
    if (s >= 0)
        tcp_link_flush_now(c->streams[s]);
}

size_t conn_tcp_backlog(const pl_conn *c)
{
    int s = tcpp_selected(&c->tp);
    return s >= 0 && c->streams[s] ? tcp_link_backlog(c->streams[s]) : 0;
}

const netaddr *conn_tcp_remote(const pl_conn *c)
{
    int s = tcpp_selected(&c->tp);
    return s >= 0 && c->streams[s] ? &c->streams[s]->remote : NULL;
}
