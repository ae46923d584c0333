/* The relay paths of one pl_conn (docs/PROTOCOL.md 5):
 *  relay-udp  a second punching core whose only candidate is the rendezvous:
 *             its checks (and later Data/Ack) travel as relayed datagrams
 *             (0x0D | session id | datagram) through the server, so the path
 *             is verified end to end with the session secret and kept alive
 *             by the same consent checks as a direct path.
 *  relay-tcp  a fresh TCP connection to the rendezvous, RelayOpen with a MAC
 *             from the session secret, RelayReady once both peers are
 *             attached, then the direct-tcp framing spliced to the peer.
 * relay-tcp opens at once when relay-udp is not offered (a side without UDP)
 * or not wanted, else after RELAY_TCP_DELAY_MS if relay-udp is not up by
 * then. */
#include <stdio.h>
#include <string.h>

#include "crypto.h"
#include "peer_internal.h"

#define RELAY_TCP_DELAY_MS 1000

static void rlink_connect_cb(tcp_link *l, int err, void *user);
static void rlink_frame_cb(tcp_link *l, const uint8_t *buf, size_t len, void *user);
static void rlink_close_cb(tcp_link *l, int err, void *user);
static void rlink_drain_cb(tcp_link *l, void *user);
static const tcp_link_ops rlink_ops = {.on_connect = rlink_connect_cb,
                                       .on_frame = rlink_frame_cb,
                                       .on_close = rlink_close_cb,
                                       .on_drain = rlink_drain_cb};

static void rt_fail(pl_conn *c, const char *why)
{
    if (c->rt_state == RT_FAILED)
        return;
    plog(&c->peer->log, c->rt_state == RT_UP ? PL_LOG_INFO : PL_LOG_DEBUG,
         "relay-tcp to %s: %s", c->peer_name, why);
    snprintf(c->rt_why, sizeof(c->rt_why), "%s", why);
    c->rt_state = RT_FAILED;
    tcp_link_free(c->rlink);
    c->rlink = NULL;
}

void conn_relay_start(pl_conn *c, uint64_t now)
{
    pl_peer *p = c->peer;
    c->rt_state = RT_IDLE;
    c->rt_open_at = UINT64_MAX;
    if (!c->want_relay)
        return;
    if (c->relay_udp_offered && p->observed_udp.len) {
        punch_config pc = c->pu.cfg;
        crypto_random(&pc.tid_seed, sizeof(pc.tid_seed));
        punch_init(&c->pr, &pc);
        punch_add_remote(&c->pr, &p->server, PUNCHLINE__CANDIDATE_KIND__RELAY);
        punch_start(&c->pr, now);
        c->pr_on = true;
    }
    if (c->relay_tcp_offered)
        c->rt_open_at = c->pr_on ? now + RELAY_TCP_DELAY_MS : now;
    else
        snprintf(c->rt_why, sizeof(c->rt_why), "not offered by the rendezvous");
    if (!c->pr_on && !c->relay_tcp_offered)
        c->rt_state = RT_FAILED;
}

void conn_relay_free(pl_conn *c)
{
    tcp_link_free(c->rlink);
    c->rlink = NULL;
}

static void open_relay_tcp(pl_conn *c)
{
    pl_peer *p = c->peer;
    c->rt_open_at = UINT64_MAX;
    c->rlink = tcp_link_connect(p->loop, NULL, &p->server, &rlink_ops, c, 0);
    if (!c->rlink) {
        rt_fail(c, "cannot open a TCP connection to the rendezvous");
        return;
    }
    c->rt_state = RT_CONNECTING;
}

static void send_relay_keepalive(pl_conn *c)
{
    Punchline__Keepalive k = PUNCHLINE__KEEPALIVE__INIT;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_KEEPALIVE;
    env.keepalive = &k;
    uint8_t buf[64];
    int n = wire_encode(&env, buf, sizeof(buf));
    if (n > 0 && tcp_link_send(c->rlink, buf, (size_t)n) < 0)
        rt_fail(c, "relay connection queue overflow");
}

void conn_relay_pump(pl_conn *c, uint64_t now)
{
    pl_peer *p = c->peer;
    if (!c->want_relay)
        return;
    if (c->pr_on) {
        uint8_t buf[WIRE_RELAY_HDR + WIRE_UDP_MAX];
        netaddr to;
        size_t n;
        punch_tick(&c->pr, now);
        while ((n = punch_poll_transmit(&c->pr, now, &to, buf + WIRE_RELAY_HDR, WIRE_UDP_MAX)) > 0) {
            wire_relay_header(buf, c->session_id);
            peer_udp_send(p, &p->server, buf, n + WIRE_RELAY_HDR);
        }
    }
    /* relay-udp died (the server restarted, our mapping to it changed):
     * both sides see it and fall back to relay-tcp */
    if (c->rt_state == RT_IDLE && c->relay_tcp_offered && c->pr_on &&
        punch_state(&c->pr) >= PUNCH_FAILED)
        c->rt_open_at = now;
    if (c->rt_state == RT_IDLE && now >= c->rt_open_at) {
        if (c->pr_on && punch_state(&c->pr) == PUNCH_CONNECTED)
            c->rt_open_at = UINT64_MAX; /* relay-udp works: no need */
        else
            open_relay_tcp(c);
    }
    /* The rendezvous ends relay sessions idle for a minute; keep ours. */
    if (c->rt_state == RT_UP && now >= c->rt_open_at) {
        send_relay_keepalive(c);
        c->rt_open_at = now + peer_keepalive_ms(p);
    }
}

uint64_t conn_relay_deadline(const pl_conn *c)
{
    uint64_t d = UINT64_MAX;
    if (!c->want_relay)
        return d;
    if (c->pr_on)
        d = punch_next_deadline(&c->pr);
    if ((c->rt_state == RT_IDLE || c->rt_state == RT_UP) && c->rt_open_at < d)
        d = c->rt_open_at;
    return d;
}

bool conn_relay_up(const pl_conn *c, int path)
{
    if (!c->want_relay)
        return false;
    if (path == PL_PATH_RELAY_UDP)
        return c->pr_on && punch_state(&c->pr) == PUNCH_CONNECTED;
    return c->rt_state == RT_UP;
}

bool conn_relay_over(const pl_conn *c, int path)
{
    if (!c->want_relay)
        return true;
    if (path == PL_PATH_RELAY_UDP)
        return !c->pr_on || punch_state(&c->pr) >= PUNCH_FAILED;
    return c->rt_state == RT_FAILED || (c->rt_state == RT_IDLE && c->rt_open_at == UINT64_MAX);
}

void conn_relay_udp_input(pl_conn *c, const Punchline__Envelope *env, const netaddr *from)
{
    if (!c->pr_on || c->state < CONN_PUNCHING || c->state == CONN_CLOSED)
        return;
    if (env->body_case == PUNCHLINE__ENVELOPE__BODY_PROBE) {
        punch_input(&c->pr, env->probe, from, peer_now(c->peer));
        if (c->pr.nominated >= 0)
            conn_note_nomination(c, PL_PATH_RELAY_UDP);
        conn_pump(c);
        return;
    }
    conn_data_input(c, env, PL_PATH_RELAY_UDP, from);
}

void conn_relay_send(pl_conn *c, int path, const uint8_t *dgram, size_t len)
{
    pl_peer *p = c->peer;
    if (path == PL_PATH_RELAY_UDP) {
        uint8_t buf[WIRE_RELAY_HDR + WIRE_UDP_MAX];
        if (len > WIRE_UDP_MAX)
            return;
        wire_relay_header(buf, c->session_id);
        memcpy(buf + WIRE_RELAY_HDR, dgram, len);
        peer_udp_send(p, &p->server, buf, len + WIRE_RELAY_HDR);
    } else if (path == PL_PATH_RELAY_TCP && c->rt_state == RT_UP && len > 1) {
        /* framed like direct-tcp: drop the UDP demultiplexing byte */
        if (tcp_link_send(c->rlink, dgram + 1, len - 1) < 0)
            rt_fail(c, "relay connection queue overflow");
    }
}

/* The socket took our backlog: the stream may send more. */
static void rlink_drain_cb(tcp_link *l, void *user)
{
    pl_conn *c = user;
    if (c->state != CONN_CLOSED)
        conn_pump(c);
}

void conn_relay_flush(pl_conn *c)
{
    if (c->rt_state == RT_UP)
        tcp_link_flush_now(c->rlink);
}

size_t conn_relay_backlog(const pl_conn *c)
{
    return c->rt_state == RT_UP ? tcp_link_backlog(c->rlink) : 0;
}

static void rlink_connect_cb(tcp_link *l, int err, void *user)
{
    pl_conn *c = user;
    if (err) {
        char why[96];
        snprintf(why, sizeof(why), "connect to the rendezvous: %s", strerror(err));
        rt_fail(c, why);
        conn_pump(c);
        return;
    }
    Punchline__RelayOpen ro = PUNCHLINE__RELAY_OPEN__INIT;
    uint8_t mac[WIRE_MAC_LEN];
    int role = c->pu.cfg.controlling ? PUNCHLINE__ROLE__CONTROLLING : PUNCHLINE__ROLE__CONTROLLED;
    wire_relay_mac(c->pu.cfg.secret, c->session_id, role, mac);
    ro.session_id = c->session_id;
    ro.role = role;
    ro.mac.data = mac;
    ro.mac.len = sizeof(mac);
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_RELAY_OPEN;
    env.relay_open = &ro;
    uint8_t buf[128];
    int n = wire_encode(&env, buf, sizeof(buf));
    if (n < 0 || tcp_link_send(l, buf, (size_t)n) < 0) {
        rt_fail(c, "cannot send RelayOpen");
        conn_pump(c);
        return;
    }
    c->rt_state = RT_WAIT_READY;
}

static void rlink_frame_cb(tcp_link *l, const uint8_t *buf, size_t len, void *user)
{
    pl_conn *c = user;
    Punchline__Envelope *env = NULL;
    if (c->state == CONN_CLOSED)
        return;
    if (wire_decode(buf, len, &env, NULL) != WIRE_OK) {
        rt_fail(c, "malformed frame on the relay connection");
        conn_pump(c);
        return;
    }
    if (c->rt_state == RT_WAIT_READY && env->body_case == PUNCHLINE__ENVELOPE__BODY_SERVER_HELLO) {
        wire_free(env); /* every connection to the rendezvous starts with one */
        return;
    }
    if (c->rt_state == RT_WAIT_READY) {
        if (env->body_case == PUNCHLINE__ENVELOPE__BODY_RELAY_READY &&
            env->relay_ready->session_id == c->session_id) {
            c->rt_state = RT_UP;
            c->rt_open_at = peer_now(c->peer) + peer_keepalive_ms(c->peer);
            plog(&c->peer->log, PL_LOG_DEBUG, "relay-tcp to %s ready", c->peer_name);
        } else if (env->body_case == PUNCHLINE__ENVELOPE__BODY_ERROR) {
            char why[96];
            snprintf(why, sizeof(why), "refused by the rendezvous: %s", env->error->text);
            rt_fail(c, why);
        } else {
            rt_fail(c, "unexpected message before RelayReady");
        }
        wire_free(env);
        conn_pump(c);
        return;
    }
    if (c->rt_state == RT_UP) {
        switch (env->body_case) {
        case PUNCHLINE__ENVELOPE__BODY_SECURE:
        case PUNCHLINE__ENVELOPE__BODY_DATA:
        case PUNCHLINE__ENVELOPE__BODY_ACK:
        case PUNCHLINE__ENVELOPE__BODY_CLOSE: {
            netaddr from = l->remote;
            conn_data_input(c, env, PL_PATH_RELAY_TCP, &from);
            wire_free(env);
            return; /* conn_data_input pumps */
        }
        default:
            break; /* keepalives */
        }
    }
    wire_free(env);
}

static void rlink_close_cb(tcp_link *l, int err, void *user)
{
    pl_conn *c = user;
    char why[96];
    snprintf(why, sizeof(why), "%s", err > 0 ? strerror(err) : err < 0 ? "bad framing"
                                     : c->rt_state == RT_UP ? "the relay connection was closed"
                                                            : "closed by the rendezvous");
    rt_fail(c, why);
    conn_pump(c);
}
