/* The TCP relay at the rendezvous: a peer opens a fresh TCP connection,
 * sends RelayOpen for its session, and once both peers of the session are
 * attached the server answers RelayReady on both and splices the two
 * connections byte for byte (docs/PROTOCOL.md 5.2).  Backpressure: a side
 * whose partner has RELAY_HIGH bytes queued stops being read until the
 * partner drains below RELAY_LOW, so a receiver that stops reading stalls
 * only its own session.  Limits and counters live in the relay core. */
#include "server_internal.h"

#include <errno.h>
#include <string.h>

#include "timeutil.h"

#define RELAY_HIGH (256 * 1024)
#define RELAY_LOW (64 * 1024)
#define RELAY_CHUNK 65536

relay_session *srv_relay_session(server *s, uint64_t sid, const uint8_t *secret,
                                 const reg_peer *caller, const reg_peer *callee)
{
    if (!s->relay)
        return NULL;
    relay_session *rs = relay_create(s->relay, sid, secret, caller->name, &caller->observed_udp,
                                     callee->name, &callee->observed_udp, time_now_ms());
    if (!rs)
        srv_log(s, SRV_LOG_WARN, "session %016llx: relay table full (%zu sessions); no relay offered",
                (unsigned long long)sid, relay_get_limits(s->relay)->max_sessions);
    return rs;
}

static srv_conn *partner(const srv_conn *c)
{
    return c->rs ? c->rs->tcp[1 - c->rside] : NULL;
}

static void send_ready(srv_conn *c)
{
    Punchline__RelayReady rr = PUNCHLINE__RELAY_READY__INIT;
    rr.session_id = c->rs->id;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_RELAY_READY;
    env.relay_ready = &rr;
    srv_conn_send(c, &env);
    c->spliced = true;
}

static void rate_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    srv_conn *c = w->data;
    c->paused_rate = false;
    if (!c->paused_bp && !c->closing)
        ev_io_start(loop, &c->rio);
}

void srv_relay_open(srv_conn *c, const Punchline__RelayOpen *m)
{
    server *s = c->srv;
    relay_session *rs =
        s->relay ? relay_open(s->relay, m->session_id, m->role, m->mac.data, m->mac.len) : NULL;
    if (!rs) {
        srv_log(s, SRV_LOG_INFO, "relay open for session %016llx refused (%s)",
                (unsigned long long)m->session_id,
                !s->relay ? "relaying is off" : "unknown session, bad MAC or side taken");
        srv_conn_send_error(c, PUNCHLINE__ERROR_CODE__RELAY_REFUSED, 0,
                            "relay refused for this session");
        srv_conn_close_after_flush(c);
        return;
    }
    c->rs = rs;
    c->rside = m->role == PUNCHLINE__ROLE__CONTROLLING ? 0 : 1;
    rs->tcp[c->rside] = c;
    ev_init(&c->rate_w, rate_cb);
    c->rate_w.data = c;
    srv_log(s, SRV_LOG_INFO, "session %016llx: %s attached to the TCP relay", (unsigned long long)rs->id,
            rs->name[c->rside]);
    srv_conn *o = partner(c);
    if (o) {
        rs->spliced = true;
        send_ready(o);
        send_ready(c);
        srv_log(s, SRV_LOG_INFO, "session %016llx: TCP relay %s <-> %s spliced",
                (unsigned long long)rs->id, rs->name[0], rs->name[1]);
    }
}

static void pause_read(srv_conn *c)
{
    ev_io_stop(c->srv->loop, &c->rio);
}

void srv_relay_read(srv_conn *c)
{
    server *s = c->srv;
    uint8_t buf[RELAY_CHUNK];
    srv_conn *o = partner(c);
    if (!c->spliced || !o || o->closing) {
        /* Nothing may arrive before RelayReady; after the partner left,
         * only EOF is expected. */
        ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n > 0 && !c->spliced)
            srv_log(s, SRV_LOG_INFO, "relay connection sent data before RelayReady; closing");
        srv_conn_free(c);
        return;
    }
    ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        srv_conn_free(c); /* the partner gets what is queued, then EOF */
        return;
    }
    if (n < 0)
        return;
    uint64_t now = time_now_ms();
    int v = relay_charge_tcp(s->relay, c->rs, (size_t)n, now);
    if (v == RELAY_QUOTA) {
        srv_log(s, SRV_LOG_INFO, "session %016llx: relay byte limit reached; closing",
                (unsigned long long)c->rs->id);
        srv_conn_close_after_flush(o);
        srv_conn_free(c);
        return;
    }
    if (srv_conn_queue_raw(o, buf, (size_t)n) < 0) {
        srv_conn_close_after_flush(o);
        srv_conn_free(c);
        return;
    }
    if (o->out_len >= RELAY_HIGH) {
        c->paused_bp = true;
        pause_read(c);
    }
    if (v == RELAY_RATE && !c->paused_rate) {
        c->paused_rate = true;
        pause_read(c);
        uint32_t ms = relay_rate_wait_ms(s->relay, c->rs, RELAY_CHUNK, now);
        ev_timer_set(&c->rate_w, ms / 1000.0, 0.);
        ev_timer_start(s->loop, &c->rate_w);
    }
}

void srv_relay_drained(srv_conn *c)
{
    srv_conn *o = partner(c);
    if (!o || !o->paused_bp || c->out_len >= RELAY_LOW)
        return;
    o->paused_bp = false;
    if (!o->paused_rate && !o->closing)
        ev_io_start(o->srv->loop, &o->rio);
}

void srv_relay_detach(srv_conn *c)
{
    if (!c->rs)
        return;
    ev_timer_stop(c->srv->loop, &c->rate_w);
    srv_conn *o = partner(c);
    c->rs->tcp[c->rside] = NULL;
    c->rs = NULL;
    if (o) {
        o->rs->tcp[o->rside] = NULL;
        o->rs = NULL;
        ev_timer_stop(o->srv->loop, &o->rate_w);
        srv_conn_close_after_flush(o);
    }
}

static void ended_cb(relay_session *rs, const char *why, void *user)
{
    server *s = user;
    srv_log(s, SRV_LOG_INFO, "session %016llx (%s -> %s): relay ended: %s, %llu bytes relayed",
            (unsigned long long)rs->id, rs->name[0], rs->name[1], why,
            (unsigned long long)rs->bytes);
    for (int k = 0; k < 2; k++) {
        srv_conn *c = rs->tcp[k];
        if (c) {
            rs->tcp[k] = NULL;
            c->rs = NULL;
            ev_timer_stop(s->loop, &c->rate_w);
            srv_conn_close_after_flush(c);
        }
    }
}

void srv_relay_tick(server *s, uint64_t now)
{
    if (s->relay)
        relay_expire(s->relay, now, ended_cb, s);
}
