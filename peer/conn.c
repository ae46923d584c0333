/* One pl_conn: the punching core and the reliable core on the peer's UDP
 * socket, one timer, and the application's callbacks.  Destruction always
 * happens from an ev_idle watcher, never inside an application callback, so
 * callbacks may call any pl_conn_* function on their own connection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "names.h"
#include "peer_internal.h"

#define LINGER_MIN_MS 200
#define LINGER_MAX_MS 2000
#define REPUNCH_FIRST_MS 5000    /* relay active, direct paths failed: retry after */
#define REPUNCH_MAX_MS 120000    /* backoff cap */
#define HANDSHAKE_DEADLINE_MS 20000 /* path up -> channel open, both sides */
#define TCP_BACKLOG_MAX (256 * 1024) /* stream bytes queued on a TCP path before we wait */


int conn_error_from_wire(int code)
{
    switch (code) {
    case PUNCHLINE__ERROR_CODE__UNKNOWN_PEER: return PL_ERR_UNKNOWN_PEER;
    case PUNCHLINE__ERROR_CODE__NAME_IN_USE: return PL_ERR_NAME_IN_USE;
    case PUNCHLINE__ERROR_CODE__BAD_VERSION: return PL_ERR_BAD_VERSION;
    case PUNCHLINE__ERROR_CODE__RATE_LIMITED: return PL_ERR_RATE_LIMITED;
    case PUNCHLINE__ERROR_CODE__BAD_NAME: return PL_ERR_BAD_NAME;
    case PUNCHLINE__ERROR_CODE__SELF_CONNECT: return PL_ERR_INVALID;
    case PUNCHLINE__ERROR_CODE__SERVER_FULL: return PL_ERR_SERVER_FULL;
    case PUNCHLINE__ERROR_CODE__UNSUPPORTED: return PL_ERR_UNSUPPORTED;
    case PUNCHLINE__ERROR_CODE__PEER_NOT_READY: return PL_ERR_UNKNOWN_PEER;
    case PUNCHLINE__ERROR_CODE__AUTH_FAILED: return PL_ERR_ACCESS;
    default: return PL_ERR_PROTOCOL;
    }
}

static void str_on_message(void *user, const uint8_t *data, size_t len)
{
    pl_conn *c = user;
    if (c->state == CONN_CLOSED || !c->cb.on_message)
        return;
    c->in_callback = true;
    c->cb.on_message(c, data, len, c->user);
    c->in_callback = false;
}

static void str_on_fin(void *user)
{
    pl_conn *c = user;
    plog(&c->peer->log, PL_LOG_DEBUG, "%s finished sending", c->peer_name);
    if (c->state == CONN_CLOSED || !c->cb.on_peer_finished)
        return;
    c->cb.on_peer_finished(c, c->user);
}

static void reaper_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    pl_conn *c = w->data;
    ev_idle_stop(loop, w);
    if (c->cb.on_closed)
        c->cb.on_closed(c, c->close_status, c->user);
    conn_destroy(c);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    conn_pump(w->data);
}

pl_conn *conn_new(pl_peer *p, const char *peer_name, bool outgoing)
{
    pl_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->peer = p;
    snprintf(c->peer_name, sizeof(c->peer_name), "%s", peer_name);
    c->outgoing = outgoing;
    c->start_ms = peer_now(p);
    c->state = outgoing ? CONN_WAIT_REGISTER : CONN_INCOMING;
    c->deadline_ms = c->start_ms + (p->cfg.punch_timeout_ms + 20000);
    ev_init(&c->timer, timer_cb);
    c->timer.data = c;
    ev_idle_init(&c->reaper, reaper_cb);
    c->reaper.data = c;
    stream_config sc = {.send_limit = p->cfg.send_queue_limit, .recv_limit = p->cfg.recv_window};
    stream_callbacks scb = {.on_message = str_on_message, .on_fin = str_on_fin};
    if (stream_init(&c->str, &sc, &scb, c) != 0) {
        stream_free(&c->str);
        free(c);
        return NULL;
    }
    c->next = p->conns;
    p->conns = c;
    return c;
}

void conn_destroy(pl_conn *c)
{
    pl_peer *p = c->peer;
    ev_timer_stop(p->loop, &c->timer);
    ev_idle_stop(p->loop, &c->reaper);
    for (pl_conn **pp = &p->conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    conn_tcp_free(c);
    conn_relay_free(c);
    secure_free(c->sec);
    stream_free(&c->str);
    free(c);
}

static void send_datagram(pl_conn *c, const uint8_t *buf, size_t n)
{
    if (c->active == PL_PATH_DIRECT_UDP)
        peer_udp_send(c->peer, punch_remote(&c->pu), buf, n);
    else if (c->active == PL_PATH_DIRECT_TCP)
        conn_tcp_send(c, buf, n);
    else if (c->active == PL_PATH_RELAY_UDP || c->active == PL_PATH_RELAY_TCP)
        conn_relay_send(c, c->active, buf, n);
}

static void sec_plain(void *user, const uint8_t *data, size_t len);

/* secure.h transmit: one DTLS datagram, wrapped in a Secure envelope, on
 * the active path. */
static void sec_transmit(void *user, const uint8_t *dgram, size_t len)
{
    pl_conn *c = user;
    Punchline__Secure sm = PUNCHLINE__SECURE__INIT;
    uint8_t mac[WIRE_MAC_LEN];
    sm.session_id = c->session_id;
    sm.dtls.data = (uint8_t *)dgram;
    sm.dtls.len = len;
    if (wire_secure_needs_mac(dgram, len)) {
        wire_secure_mac(c->pu.cfg.secret, c->session_id, dgram, len, mac);
        sm.mac.data = mac;
        sm.mac.len = sizeof(mac);
    }
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_SECURE;
    env.secure = &sm;
    uint8_t buf[WIRE_UDP_MAX];
    int n = wire_encode_udp(&env, buf, sizeof(buf));
    if (n > 0 && c->active != PL_PATH_NONE)
        send_datagram(c, buf, (size_t)n);
}

/* Seal one encoded envelope (UDP form, with marker) and send it. */
static void send_sealed(pl_conn *c, const uint8_t *buf, size_t n)
{
    if (!c->sec || secure_state(c->sec) != SEC_OPEN || n < 1)
        return;
    if (secure_write(c->sec, buf + 1, n - 1, peer_now(c->peer)) != 0) /* without the marker */
        plog(&c->peer->log, PL_LOG_WARN, "connection to %s: a %zu-byte record could not be sealed",
             c->peer_name, n - 1);
}

static void send_close(pl_conn *c, const char *reason)
{
    if (c->state < CONN_PUNCHING || c->active == PL_PATH_NONE)
        return;
    Punchline__Close cl = PUNCHLINE__CLOSE__INIT;
    cl.session_id = c->session_id;
    cl.reason = (char *)reason;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_CLOSE;
    env.close = &cl;
    uint8_t buf[WIRE_UDP_MAX];
    int n = wire_encode_udp(&env, buf, sizeof(buf));
    if (n > 0)
        send_sealed(c, buf, (size_t)n);
    /* the connection may be freed before the loop runs again
     * (pl_peer_free): hand the Close to the TCP socket now */
    if (c->active == PL_PATH_DIRECT_TCP)
        conn_tcp_flush(c);
    else if (c->active == PL_PATH_RELAY_TCP)
        conn_relay_flush(c);
}

void conn_finish(pl_conn *c, int status, const char *why)
{
    if (c->state == CONN_CLOSED)
        return;
    if (status != 0)
        plog(&c->peer->log, status == PL_ERR_CLOSED ? PL_LOG_INFO : PL_LOG_WARN,
             "connection to %s: %s%s%s", c->peer_name, pl_strerror(status), why ? ": " : "",
             why ? why : "");
    c->state = CONN_CLOSED;
    c->close_status = status;
    ev_timer_stop(c->peer->loop, &c->timer);
    ev_idle_start(c->peer->loop, &c->reaper);
}

void conn_registered(pl_conn *c)
{
    if (c->state != CONN_WAIT_REGISTER)
        return;
    c->request_id = ++c->peer->next_request_id;
    c->state = CONN_REQUESTED;
    ctl_send_connect(c->peer, c);
}

void conn_incoming(pl_conn *c, uint64_t session_id)
{
    c->session_id = session_id;
    c->str.cfg.session_id = session_id;
    conn_pump(c); /* arms the connect deadline */
}

void conn_candidates(pl_conn *c, const Punchline__Candidates *m)
{
    c->n_remote = 0;
    for (size_t i = 0; i < m->n_candidates && c->n_remote < WIRE_MAX_CANDIDATES; i++) {
        const Punchline__Candidate *cand = m->candidates[i];
        netaddr a;
        if (cand->kind == PUNCHLINE__CANDIDATE_KIND__RELAY) {
            /* the relay is always the rendezvous itself (PROTOCOL.md 5) */
            if (cand->transport == PUNCHLINE__TRANSPORT__UDP)
                c->relay_udp_offered = true;
            else if (cand->transport == PUNCHLINE__TRANSPORT__TCP)
                c->relay_tcp_offered = true;
            continue;
        }
        if ((cand->transport != PUNCHLINE__TRANSPORT__UDP &&
             cand->transport != PUNCHLINE__TRANSPORT__TCP) ||
            netaddr_from_endpoint(cand->endpoint, &a) != 0 || !netaddr_is_usable_candidate(&a))
            continue;
        /* A loopback candidate is only meaningful when the peer shares our
         * host, which the rendezvous can only know if it runs on loopback
         * itself; otherwise it would aim our probes and TCP attempts at our
         * own host's services (an honest server filters these already). */
        if (netaddr_is_loopback(&a) && !netaddr_is_loopback(&c->peer->server))
            continue;
        c->remote_cands[c->n_remote] = a;
        c->remote_kinds[c->n_remote] = cand->kind;
        c->remote_tcp[c->n_remote] = cand->transport == PUNCHLINE__TRANSPORT__TCP;
        c->n_remote++;
    }
    c->have_candidates = true;
}

void conn_punch_start(pl_conn *c, const Punchline__PunchStart *m)
{
    pl_peer *p = c->peer;
    uint64_t now = peer_now(p);
    punch_config pc = {
        .session_id = m->session_id,
        .controlling = m->role == PUNCHLINE__ROLE__CONTROLLING,
        .timeout_ms = p->cfg.punch_timeout_ms,
        .keepalive_ms = peer_keepalive_ms(p),
        .path_timeout_ms = p->cfg.path_timeout_ms,
    };
    memcpy(pc.secret, m->secret.data, WIRE_SECRET_LEN);
    crypto_random(&pc.tid_seed, sizeof(pc.tid_seed));
    if (m->peer_key_hash.len == ID_HASH_LEN && c->pinned &&
        !crypto_equal(m->peer_key_hash.data, c->key_hash, ID_HASH_LEN)) {
        char told[ID_TEXT_LEN + 1], pin[ID_TEXT_LEN + 1], why[300];
        identity_format_id(m->peer_key_hash.data, told);
        identity_format_id(c->key_hash, pin);
        snprintf(why, sizeof(why), "the rendezvous reports peer id %s for %s, but %s is pinned",
                 told, c->peer_name, pin);
        conn_finish(c, PL_ERR_AUTH, why);
        return;
    }
    if (!c->pinned) {
        if (m->peer_key_hash.len != ID_HASH_LEN) {
            conn_finish(c, PL_ERR_AUTH, "the rendezvous sent no key for the peer");
            return;
        }
        memcpy(c->key_hash, m->peer_key_hash.data, ID_HASH_LEN);
    }
    secure_config sc = {.self = p->ident, .client = pc.controlling};
    memcpy(sc.peer_hash, c->key_hash, ID_HASH_LEN);
    secure_callbacks scb = {.transmit = sec_transmit, .plain = sec_plain};
    c->sec = secure_new(&sc, &scb, c);
    if (!c->sec) {
        conn_finish(c, PL_ERR_NOMEM, "cannot set up the encrypted channel");
        return;
    }
    c->session_id = m->session_id;
    c->str.cfg.session_id = m->session_id;
    punch_init(&c->pu, &pc);
    /* The callee follows the transport the caller asked for. */
    int tr = c->outgoing ? c->transport
             : m->transport == PUNCHLINE__TRANSPORT__UDP ? PL_TRANSPORT_UDP
             : m->transport == PUNCHLINE__TRANSPORT__TCP ? PL_TRANSPORT_TCP
             : m->transport == PUNCHLINE__TRANSPORT__TRANSPORT_RELAY ? PL_TRANSPORT_RELAY
                                                         : PL_TRANSPORT_AUTO;
    c->transport = tr;
    c->want_udp = (tr == PL_TRANSPORT_AUTO || tr == PL_TRANSPORT_UDP) && p->observed_udp.len;
    c->want_tcp = (tr == PL_TRANSPORT_AUTO || tr == PL_TRANSPORT_TCP) && p->listen_fd >= 0;
    c->want_relay = tr == PL_TRANSPORT_AUTO || tr == PL_TRANSPORT_RELAY;
    c->repunch_at = UINT64_MAX;
    c->repunch_ms = REPUNCH_FIRST_MS;
    c->punch_start_ms = now;
    c->state = CONN_PUNCHING;
    if (c->want_udp) {
        for (size_t i = 0; i < c->n_remote; i++)
            if (!c->remote_tcp[i])
                punch_add_remote(&c->pu, &c->remote_cands[i], c->remote_kinds[i]);
        punch_start(&c->pu, now);
    }
    if (c->want_tcp)
        conn_tcp_start(c, now);
    conn_relay_start(c, now);
    plog(&p->log, PL_LOG_INFO, "punching to %s (%s%s%s: %zu udp + %zu tcp candidates; relay %s; %s; session %016llx)",
         c->peer_name, c->want_udp ? "udp" : "", c->want_udp && c->want_tcp ? "+" : "",
         c->want_tcp ? "tcp" : !c->want_udp ? "none" : "", c->want_udp ? c->pu.npairs : 0,
         c->want_tcp ? c->tp.ncands : 0,
         !c->want_relay ? "off"
         : c->pr_on && c->relay_tcp_offered ? "udp+tcp"
         : c->pr_on ? "udp"
         : c->relay_tcp_offered ? "tcp" : "not offered",
         pc.controlling ? "controlling" : "controlled", (unsigned long long)c->session_id);
    conn_pump(c);
}

static bool path_up(const pl_conn *c, int path)
{
    if (path == PL_PATH_DIRECT_UDP)
        return c->want_udp && punch_state(&c->pu) == PUNCH_CONNECTED;
    if (path == PL_PATH_DIRECT_TCP)
        return c->want_tcp && tcpp_state(&c->tp) == TCPP_CONNECTED;
    if (path == PL_PATH_RELAY_UDP || path == PL_PATH_RELAY_TCP)
        return conn_relay_up(c, path);
    return false;
}

static bool path_over(const pl_conn *c, int path)
{
    if (path == PL_PATH_DIRECT_UDP)
        return !c->want_udp || punch_state(&c->pu) >= PUNCH_FAILED;
    if (path == PL_PATH_DIRECT_TCP)
        return !c->want_tcp || tcpp_state(&c->tp) >= TCPP_FAILED;
    return conn_relay_over(c, path);
}

/* The punching core of a UDP path, NULL for the others. */
static const punch *udp_core(const pl_conn *c, int path)
{
    return path == PL_PATH_DIRECT_UDP ? &c->pu : path == PL_PATH_RELAY_UDP ? &c->pr : NULL;
}

/* Up for the path choice (pathsel.h).  A UDP path whose consent checks
 * have gone unanswered for PUNCH_STALL_MS while the stream waited on it
 * (punch_stalled) must not carry the stream while another path works; a
 * suspect one (punch_suspect: checks unanswered, not yet stalled) keeps
 * carrying it, but nothing moves to it until it answers again. */
static bool path_usable(const pl_conn *c, int path)
{
    if (!path_up(c, path))
        return false;
    const punch *core = udp_core(c, path);
    if (!core)
        return true;
    if (punch_stalled(core))
        return false;
    return !core->suspect_since || path == c->active;
}

static void view(const pl_conn *c, pathsel_view *v)
{
    for (int p = 0; p < PATHSEL_N; p++) {
        v->up[p] = p != PL_PATH_NONE && path_usable(c, p);
        v->over[p] = p == PL_PATH_NONE || path_over(c, p);
    }
}

static bool is_udp_path(int path)
{
    return path == PL_PATH_DIRECT_UDP || path == PL_PATH_RELAY_UDP;
}

static size_t path_backlog(const pl_conn *c)
{
    if (c->active == PL_PATH_DIRECT_TCP)
        return conn_tcp_backlog(c);
    if (c->active == PL_PATH_RELAY_TCP)
        return conn_relay_backlog(c);
    return 0;
}

/* Make `path` carry the stream: the first time is on_connected, later ones
 * on_path_changed.  On TCP the transport is reliable, so the stream leaves
 * loss recovery and congestion control to it; on a switch, whatever is in
 * flight is sent again on the new path (stream_path_switch). */
static void activate(pl_conn *c, int path)
{
    if (c->active == path)
        return;
    bool first = c->active == PL_PATH_NONE;
    c->active = path;
    if (first)
        stream_set_reliable(&c->str, !is_udp_path(path));
    else
        stream_path_switch(&c->str, !is_udp_path(path), peer_now_us(c->peer));
    c->path_ms = peer_now(c->peer);
    if (first)
        c->connected_ms = c->path_ms;
    if (pathsel_tier(path) == 0)
        c->repunch_ms = REPUNCH_FIRST_MS; /* a later failure retries soon again */
    /* The controlling side announces its choice at once: an Ack on the new
     * path, which the controlled side follows like Data (pathsel_follow),
     * so both report the same path even on an idle connection. */
    if (c->pu.cfg.controlling)
        stream_force_ack(&c->str);
    pl_path_info info;
    pl_conn_path(c, &info);
    plog(&c->peer->log, PL_LOG_INFO, "%s %s via %s %s (%u ms; %u ms after punch start)",
         first ? "path up to" : "path to", c->peer_name, pl_path_name(info.kind), info.remote,
         info.ms, info.punch_ms);
    if (first) {
        /* The encryption handshake runs on this path (and follows later
         * switches); the application hears on_connected when it is done. */
        c->state = CONN_OPEN;
        c->hs_deadline = c->path_ms + HANDSHAKE_DEADLINE_MS;
        if (c->pu.cfg.controlling && !c->sec_started) {
            c->sec_started = true;
            secure_start(c->sec, c->path_ms);
        }
    } else if (c->peer_id[0] && c->cb.on_path_changed) {
        c->cb.on_path_changed(c, &info, c->user);
    }
}

/* The handshake finished: the peer's key is verified; tell the application. */
static void sec_check(pl_conn *c)
{
    if (!c->sec || c->state == CONN_CLOSED)
        return;
    int st = secure_state(c->sec);
    if (st == SEC_FAILED) {
        conn_finish(c, secure_auth_failed(c->sec)  ? PL_ERR_AUTH
                       : secure_timed_out(c->sec) ? PL_ERR_TIMEOUT
                                                  : PL_ERR_PROTOCOL,
                    secure_error(c->sec));
        return;
    }
    if (st != SEC_OPEN || c->peer_id[0])
        return;
    identity_format_id(c->key_hash, c->peer_id);
    pl_path_info info;
    pl_conn_path(c, &info);
    c->connected_ms = peer_now(c->peer);
    plog(&c->peer->log, PL_LOG_INFO, "connected to %s via %s %s: encrypted (%s), peer id %s (%u ms)",
         c->peer_name, pl_path_name(info.kind), info.remote, secure_suite(c->sec), c->peer_id,
         (uint32_t)(c->connected_ms - c->start_ms));
    if (c->cb.on_connected)
        c->cb.on_connected(c, &info, c->user);
}

/* One inner envelope from the encrypted channel (secure.h plain). */
static void sec_plain(void *user, const uint8_t *data, size_t len)
{
    pl_conn *c = user;
    Punchline__Envelope *env = NULL;
    uint64_t now = peer_now_us(c->peer);
    c->sec_delivered = true;
    if (c->state == CONN_CLOSED || wire_decode(data, len, &env, NULL) != WIRE_OK)
        return;
    switch (env->body_case) {
    case PUNCHLINE__ENVELOPE__BODY_DATA:
        if (env->data->session_id == c->session_id)
            stream_input_data(&c->str, env->data, now);
        break;
    case PUNCHLINE__ENVELOPE__BODY_ACK:
        if (env->ack->session_id == c->session_id)
            stream_input_ack(&c->str, env->ack, now);
        break;
    case PUNCHLINE__ENVELOPE__BODY_DATAGRAM:
        if (env->datagram->session_id == c->session_id && c->cb.on_datagram && c->peer_id[0]) {
            c->in_callback = true;
            c->cb.on_datagram(c, env->datagram->payload.data, env->datagram->payload.len, c->user);
            c->in_callback = false;
        }
        break;
    case PUNCHLINE__ENVELOPE__BODY_CLOSE:
        if (c->state != CONN_LINGER)
            conn_finish(c, PL_ERR_CLOSED, env->close->reason[0] ? env->close->reason : "closed by peer");
        break;
    default:
        break;
    }
    wire_free(env);
}

void conn_data_input(pl_conn *c, const Punchline__Envelope *env, int path, const netaddr *from)
{
    uint64_t now = peer_now(c->peer);
    if (c->state < CONN_PUNCHING || c->state == CONN_CLOSED || !c->sec)
        return;
    /* Between peers only the encrypted channel counts: a plain Data, Ack or
     * Close (what version 1 without encryption sent, or an injection) is
     * dropped. */
    if (env->body_case != PUNCHLINE__ENVELOPE__BODY_SECURE)
        return;
    /* UDP records are accepted only from the verified pair (which they can
     * also confirm on the controlled side, see punch_data_seen); TCP ones
     * only from the selected stream (checked by the caller). */
    if (path == PL_PATH_DIRECT_UDP && !punch_data_seen(&c->pu, from, now))
        return;
    if (path == PL_PATH_RELAY_UDP && !punch_data_seen(&c->pr, from, now))
        return;
    if (!path_up(c, path))
        return;
    /* Handshake records, alerts, and anything before our channel is open
     * must carry the session MAC (PROTOCOL.md 4.5): one spoofed alert or
     * ClientHello would otherwise end a handshake.  Application records are
     * authenticated by the channel itself, so they count only once they
     * open (deliver something). */
    const Punchline__Secure *sm = env->secure;
    int acc = wire_secure_accept(c->pu.cfg.secret, c->session_id, sm,
                                 secure_state(c->sec) == SEC_OPEN);
    if (acc == WIRE_SECURE_DROP)
        return;
    bool macd = acc == WIRE_SECURE_MACED;
    /* The controlling side picks the path; the controlled side follows the
     * path authenticated records arrive on (pathsel.h).  A MACed record may
     * move it first (its answer must go back on that path); application
     * data only after it opened. */
    pathsel_view v;
    if (macd && !c->pu.cfg.controlling) {
        view(c, &v);
        if (pathsel_follow(&v, c->active, path))
            activate(c, path);
        if (c->state == CONN_CLOSED)
            return;
    }
    c->sec_delivered = false;
    secure_input(c->sec, sm->dtls.data, sm->dtls.len, now);
    if (!macd && c->sec_delivered && !c->pu.cfg.controlling && c->state != CONN_CLOSED) {
        view(c, &v);
        if (pathsel_follow(&v, c->active, path))
            activate(c, path);
    }
    /* Nothing answers on our active UDP path (suspect), and the peer's
     * records come on another one: the peer moved (its side stalled
     * first); follow it whatever our role and the tier, or our acks keep
     * going where nothing arrives (docs/PROTOCOL.md 5.4). */
    const punch *ac = udp_core(c, c->active);
    if (!macd && c->sec_delivered && c->state != CONN_CLOSED && path != c->active && ac &&
        ac->suspect_since) {
        view(c, &v);
        if (v.up[path])
            activate(c, path);
    }
    sec_check(c);
    /* Bulk data: run the cores once per loop iteration, after every
     * datagram or frame that arrived in it, not once per record (acks and
     * new packets then go out in one batch). */
    if (c->state == CONN_OPEN && c->peer_id[0])
        conn_pump_soon(c);
    else
        conn_pump(c);
}

void conn_pump_soon(pl_conn *c)
{
    if (c->state == CONN_CLOSED || c->pump_soon)
        return;
    c->pump_soon = true;
    ev_timer_stop(c->peer->loop, &c->timer);
    ev_timer_set(&c->timer, 0., 0.);
    ev_timer_start(c->peer->loop, &c->timer);
}

void conn_udp_input(pl_conn *c, const Punchline__Envelope *env, const netaddr *from)
{
    if (c->state < CONN_PUNCHING || c->state == CONN_CLOSED || !c->want_udp)
        return;
    if (env->body_case == PUNCHLINE__ENVELOPE__BODY_PROBE) {
        punch_input(&c->pu, env->probe, from, peer_now(c->peer));
        if (c->pu.nominated >= 0)
            conn_note_nomination(c, PL_PATH_DIRECT_UDP);
        conn_pump(c);
        return;
    }
    conn_data_input(c, env, PL_PATH_DIRECT_UDP, from);
}

/* Why no path could be established, for the error. */
static void fail_reason(const pl_conn *c, char *why, size_t cap)
{
    size_t n = 0;
    why[0] = 0;
#define ADD(...) n += (size_t)snprintf(why + n, n < cap ? cap - n : 0, __VA_ARGS__)
    if (c->want_udp)
        ADD("%sudp: no candidate pair answered", n ? "; " : "");
    if (c->want_tcp)
        ADD("%stcp: %s", n ? "; " : "", c->tp.fail_reason ? c->tp.fail_reason : "failed");
    if (c->want_relay && c->pr_on)
        ADD("%srelay-udp: no answer through the rendezvous", n ? "; " : "");
    if (c->want_relay)
        ADD("%srelay-tcp: %s", n ? "; " : "", c->rt_why[0] ? c->rt_why : "failed");
    if (!n)
        ADD("no transport to try");
#undef ADD
}

void conn_note_nomination(pl_conn *c, int path)
{
    if (!c->pu.cfg.controlling && c->first_nominated == PL_PATH_NONE)
        c->first_nominated = path;
}

/* Which path should carry the stream now?  Called after every core step;
 * the policy is pathsel.c. */
static void choose_path(pl_conn *c)
{
    pathsel_view v;
    view(c, &v);
    if (c->state == CONN_LINGER && c->active != PL_PATH_NONE && !v.up[c->active]) {
        /* Both directions are finished and acknowledged: the peer closing
         * its end of a TCP path during our linger is the normal end, not a
         * reason to move to another path. */
        conn_finish(c, 0, NULL);
        return;
    }
    bool controlling = c->pu.cfg.controlling;
    int want = pathsel_choose(&v, c->active, controlling, c->first_nominated);
    if (want != PL_PATH_NONE) {
        c->nopath_since = 0;
        if (want != c->active)
            activate(c, want);
        return;
    }
    if (!pathsel_all_over(&v)) {
        /* Still trying -- but a connection that had a path and has had
         * none for a whole path timeout is dead, even if some attempt is
         * still pending (a relay-tcp attachment waiting for a peer that
         * vanished, a new punching round towards its old addresses). */
        uint64_t now = peer_now(c->peer);
        if (c->active == PL_PATH_NONE || c->state != CONN_OPEN)
            return;
        if (!c->nopath_since) {
            c->nopath_since = now;
            return;
        }
        if (now - c->nopath_since < c->peer->cfg.path_timeout_ms)
            return;
        char dead[96];
        snprintf(dead, sizeof(dead), "no path to the peer for %u s",
                 (unsigned)((now - c->nopath_since) / 1000));
        conn_finish(c, PL_ERR_PATH_DEAD, dead);
        return;
    }
    char why[400];
    if (c->active == PL_PATH_NONE) {
        fail_reason(c, why, sizeof(why));
        conn_finish(c, PL_ERR_PUNCH_FAILED, why);
    } else {
        conn_finish(c, PL_ERR_PATH_DEAD,
                    c->active == PL_PATH_DIRECT_TCP && c->tp.fail_reason ? c->tp.fail_reason
                    : c->active == PL_PATH_RELAY_TCP && c->rt_why[0] ? c->rt_why
                                                                      : NULL);
    }
}

/* Relay-first: while the relay carries the stream and every direct path has
 * failed, punch again after a backoff (5 s, doubling up to 2 min).  Both
 * sides saw their cores fail at about the same time, so their rounds
 * overlap well within the punch timeout. */
static void maybe_repunch(pl_conn *c, uint64_t now)
{
    if (!c->want_relay || pathsel_tier(c->active) != 1 || (!c->want_udp && !c->want_tcp) ||
        !path_over(c, PL_PATH_DIRECT_UDP) || !path_over(c, PL_PATH_DIRECT_TCP))
        return;
    if (c->repunch_at == UINT64_MAX) {
        c->repunch_at = now + c->repunch_ms;
        return;
    }
    if (now < c->repunch_at)
        return;
    plog(&c->peer->log, PL_LOG_INFO, "punching to %s again (direct paths failed; next retry in %u s)",
         c->peer_name, (c->repunch_ms * 2 > REPUNCH_MAX_MS ? REPUNCH_MAX_MS : c->repunch_ms * 2) / 1000);
    c->repunch_ms = c->repunch_ms * 2 > REPUNCH_MAX_MS ? REPUNCH_MAX_MS : c->repunch_ms * 2;
    c->repunch_at = UINT64_MAX;
    if (c->want_udp) {
        punch_config pc = c->pu.cfg;
        crypto_random(&pc.tid_seed, sizeof(pc.tid_seed));
        punch_init(&c->pu, &pc);
        for (size_t i = 0; i < c->n_remote; i++)
            if (!c->remote_tcp[i])
                punch_add_remote(&c->pu, &c->remote_cands[i], c->remote_kinds[i]);
        punch_start(&c->pu, now);
    }
    if (c->want_tcp) {
        conn_tcp_free(c);
        conn_tcp_start(c, now);
    }
}

/* Consent on the UDP path that carries the stream follows the stream
 * (docs/PROTOCOL.md 4.2):
 *  - busy (bytes in flight, or data received within a keepalive interval):
 *    consent checks every PUNCH_BUSY_KEEPALIVE_MS, so a side that only
 *    receives still renews a lost NAT mapping, or shows the peer its new
 *    one, within seconds;
 *  - the stream's probe timeout fired twice without an acknowledgement:
 *    the path is suspect (fast checks, then migration or stall, punch.h),
 *    and a UdpBind tells the rendezvous where our NAT maps us now;
 *  - an answer after that: send a stream probe at once rather than after
 *    the backed-off probe timeout. */
static void watch_active(pl_conn *c, uint64_t now)
{
    if (c->str.st.packets_received != c->rx_packets_seen) {
        c->rx_packets_seen = c->str.st.packets_received;
        c->data_rx_ms = now;
    }
    bool busy = c->str.pn_low < c->str.pn_next ||
                (c->data_rx_ms && now - c->data_rx_ms < peer_keepalive_ms(c->peer));
    punch *core = NULL;
    uint32_t *seen = NULL;
    if (c->want_udp) {
        punch_set_busy(&c->pu, busy && c->active == PL_PATH_DIRECT_UDP, now);
        if (c->active == PL_PATH_DIRECT_UDP) {
            core = &c->pu;
            seen = &c->pu_answers;
        } else {
            c->pu_answers = c->pu.answers;
        }
    }
    if (c->pr_on) {
        punch_set_busy(&c->pr, busy && c->active == PL_PATH_RELAY_UDP, now);
        if (c->active == PL_PATH_RELAY_UDP) {
            core = &c->pr;
            seen = &c->pr_answers;
        } else {
            c->pr_answers = c->pr.answers;
        }
    }
    if (!core || punch_state(core) != PUNCH_CONNECTED || c->str.reliable_path)
        return;
    if (c->str.pto_count >= 2)
        punch_suspect(core, now);
    if (core->suspect_since)
        ctl_udp_refresh(c->peer);
    if (core->answers != *seen) {
        *seen = core->answers;
        stream_kick(&c->str, peer_now_us(c->peer));
    }
}

/* The direct-udp core moved to the peer's new address (punch.h,
 * maybe_migrate): on the active path, the stream resends what was in
 * flight there and the application hears of the new remote address. */
static void on_migrated(pl_conn *c)
{
    c->pu_migrations = c->pu.migrations;
    if (c->active != PL_PATH_DIRECT_UDP)
        return;
    stream_path_switch(&c->str, false, peer_now_us(c->peer));
    c->path_ms = peer_now(c->peer);
    pl_path_info info;
    pl_conn_path(c, &info);
    plog(&c->peer->log, PL_LOG_INFO, "path to %s moved to %s %s (the peer's NAT mapping changed)",
         c->peer_name, pl_path_name(info.kind), info.remote);
    if (c->peer_id[0] && c->cb.on_path_changed)
        c->cb.on_path_changed(c, &info, c->user);
}

/* Run the cores: state changes, transmissions, timer. */
void conn_pump(pl_conn *c)
{
    pl_peer *p = c->peer;
    uint64_t now = peer_now(p);
    uint8_t buf[WIRE_UDP_MAX];
    netaddr to;
    size_t n;

    c->pump_soon = false;
    if (c->state == CONN_CLOSED)
        return;
    if (c->state < CONN_PUNCHING) {
        if (now >= c->deadline_ms)
            conn_finish(c, PL_ERR_TIMEOUT, "no answer from the rendezvous");
        else {
            ev_timer_stop(p->loop, &c->timer);
            ev_timer_set(&c->timer, (double)(c->deadline_ms - now) / 1000.0, 0.);
            ev_timer_start(p->loop, &c->timer);
        }
        return;
    }
    if (c->state == CONN_OPEN)
        watch_active(c, now);
    if (c->want_udp) {
        punch_tick(&c->pu, now);
        while ((n = punch_poll_transmit(&c->pu, now, &to, buf, sizeof(buf))) > 0)
            peer_udp_send(p, &to, buf, n);
        if (c->pu.migrations != c->pu_migrations) {
            on_migrated(c);
            if (c->state == CONN_CLOSED)
                return;
        }
    }
    if (c->want_tcp)
        conn_tcp_pump(c, now);
    conn_relay_pump(c, now);
    choose_path(c);
    if (c->state == CONN_CLOSED)
        return;
    maybe_repunch(c, now);
    if (c->str.failed) {
        conn_finish(c, PL_ERR_PROTOCOL, c->str.fail_reason);
        return;
    }
    if (c->sec && c->active != PL_PATH_NONE) {
        secure_tick(c->sec, now);
        sec_check(c);
        if (c->state == CONN_CLOSED)
            return;
        if (!c->peer_id[0] && now >= c->hs_deadline) {
            /* e.g. a peer that answers probes but never starts the handshake */
            conn_finish(c, PL_ERR_TIMEOUT, "the encryption handshake did not complete");
            return;
        }
    }
    bool sealed = c->sec && secure_state(c->sec) == SEC_OPEN && c->active != PL_PATH_NONE;
    uint64_t now_us = peer_now_us(p);
    bool backlogged = false;
    if (sealed) {
        if (c->deliver_pending && !c->paused) {
            c->deliver_pending = false;
            stream_deliver(&c->str);
            if (c->state == CONN_CLOSED)
                return;
        }
        /* On a TCP path the socket is the window: stop while it holds a
         * backlog; its drain callback pumps again. */
        peer_udp_batch_begin(p);
        while (!(backlogged = path_backlog(c) >= TCP_BACKLOG_MAX) &&
               (n = stream_poll_transmit(&c->str, now_us, buf, sizeof(buf))) > 0)
            send_sealed(c, buf, n);
        peer_udp_batch_end(p);
        if (c->str.failed) {
            conn_finish(c, PL_ERR_PROTOCOL, c->str.fail_reason);
            return;
        }
    }
    if (c->str_blocked && stream_writable(&c->str)) {
        c->str_blocked = false;
        if (c->cb.on_writable)
            c->cb.on_writable(c, c->user);
        if (c->state == CONN_CLOSED)
            return;
    }
    if (c->state == CONN_OPEN && stream_done(&c->str)) {
        /* Stay a little to re-ack a FIN whose ack got lost (TCP's TIME-WAIT). */
        uint32_t linger = 2 * stream_pto_ms(&c->str);
        linger = linger < LINGER_MIN_MS ? LINGER_MIN_MS : linger > LINGER_MAX_MS ? LINGER_MAX_MS : linger;
        c->state = CONN_LINGER;
        c->deadline_ms = now + linger;
    }
    if (c->state == CONN_LINGER && now >= c->deadline_ms) {
        conn_finish(c, 0, NULL);
        return;
    }
    uint64_t d = c->want_udp ? punch_next_deadline(&c->pu) : UINT64_MAX;
    uint64_t t = c->want_tcp ? tcpp_next_deadline(&c->tp) : UINT64_MAX;
    uint64_t r = UINT64_MAX;
    uint64_t sd = c->sec && c->active != PL_PATH_NONE ? secure_next_deadline(c->sec) : UINT64_MAX;
    if (c->sec && c->active != PL_PATH_NONE && !c->peer_id[0] && c->hs_deadline < sd)
        sd = c->hs_deadline;
    if (sd < r)
        r = sd;
    uint64_t rl = conn_relay_deadline(c);
    if (t < d)
        d = t;
    if (rl < d)
        d = rl;
    if (c->repunch_at < d)
        d = c->repunch_at;
    if (r < d)
        d = r;
    if (c->state == CONN_LINGER && c->deadline_ms < d)
        d = c->deadline_ms;
    if (c->nopath_since && c->nopath_since + p->cfg.path_timeout_ms < d)
        d = c->nopath_since + p->cfg.path_timeout_ms;
    /* the stream keeps time in microseconds (pacing, delayed acks) */
    uint64_t su = sealed && !backlogged ? stream_next_deadline(&c->str) : UINT64_MAX;
    if (d == UINT64_MAX && su == UINT64_MAX) {
        ev_timer_stop(p->loop, &c->timer);
        return;
    }
    double after = d == UINT64_MAX ? 1e9 : d > now ? (double)(d - now) / 1000.0 : 0.001;
    if (su != UINT64_MAX) {
        uint64_t rem = su > now_us + 50 ? su - now_us : 50;
        if ((double)rem / 1e6 < after)
            after = (double)rem / 1e6;
    }
    ev_timer_stop(p->loop, &c->timer);
    ev_timer_set(&c->timer, after, 0.);
    ev_timer_start(p->loop, &c->timer);
}

/* ---- public connection API ---------------------------------------------- */

PL_API void pl_conn_set_callbacks(pl_conn *c, const pl_conn_callbacks *cb, void *user)
{
    if (!c)
        return;
    if (cb)
        c->cb = *cb;
    else
        memset(&c->cb, 0, sizeof(c->cb));
    c->user = user;
    c->callbacks_set = true;
}

PL_API int pl_conn_send(pl_conn *c, const void *data, size_t len)
{
    if (!c || (!data && len))
        return PL_ERR_INVALID;
    if (c->state >= CONN_LINGER)
        return PL_ERR_STATE;
    int rc = stream_send(&c->str, data, len);
    if (rc == PL_ERR_AGAIN)
        c->str_blocked = true;
    if (rc == 0 && c->state == CONN_OPEN)
        conn_pump(c);
    return rc;
}

PL_API int pl_conn_shutdown(pl_conn *c)
{
    if (!c)
        return PL_ERR_INVALID;
    if (c->state >= CONN_LINGER)
        return PL_ERR_STATE;
    int rc = stream_shutdown(&c->str);
    if (rc == 0 && c->state == CONN_OPEN)
        conn_pump(c);
    return rc;
}

PL_API int pl_conn_send_datagram(pl_conn *c, const void *data, size_t len)
{
    if (!c || (!data && len))
        return PL_ERR_INVALID;
    if (len > PL_MAX_DATAGRAM)
        return PL_ERR_TOO_BIG;
    if (c->state != CONN_OPEN || !c->peer_id[0] || c->active == PL_PATH_NONE)
        return PL_ERR_STATE;
    Punchline__Datagram dg = PUNCHLINE__DATAGRAM__INIT;
    dg.session_id = c->session_id;
    dg.payload.data = (uint8_t *)data;
    dg.payload.len = len;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_DATAGRAM;
    env.datagram = &dg;
    uint8_t buf[WIRE_UDP_MAX];
    int n = wire_encode_udp(&env, buf, sizeof(buf));
    if (n <= 0)
        return PL_ERR_TOO_BIG;
    if (path_backlog(c) >= TCP_BACKLOG_MAX)
        return 0; /* dropped, as a congested network would */
    send_sealed(c, buf, (size_t)n);
    return 0;
}

PL_API void pl_conn_pause(pl_conn *c, int paused)
{
    if (!c || c->state == CONN_CLOSED)
        return;
    c->paused = paused != 0;
    stream_set_paused(&c->str, c->paused);
    if (!c->paused) {
        c->deliver_pending = true;
        /* deliver from the loop, not inside this call */
        ev_timer_stop(c->peer->loop, &c->timer);
        ev_timer_set(&c->timer, 0., 0.);
        ev_timer_start(c->peer->loop, &c->timer);
    }
}

PL_API void pl_conn_get_stats(const pl_conn *c, pl_conn_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!c)
        return;
    stream_stats st;
    stream_get_stats(&c->str, &st);
    out->bytes_sent = st.bytes_acked;
    out->bytes_received = st.bytes_delivered;
    out->packets_sent = st.packets_sent;
    out->packets_lost = st.packets_lost;
    out->packets_retransmitted = st.packets_retransmitted;
    out->rtt_us = st.srtt_us;
    out->cwnd = st.cwnd;
    out->queued = c->str.snd_end - c->str.sbuf.base;
}

PL_API void pl_conn_close(pl_conn *c)
{
    if (!c || c->state == CONN_CLOSED)
        return;
    send_close(c, "closed by application");
    conn_finish(c, PL_ERR_CLOSED, NULL);
}

PL_API const char *pl_conn_peer_name(const pl_conn *c)
{
    return c ? c->peer_name : "";
}

PL_API const char *pl_conn_peer_id(const pl_conn *c)
{
    return c ? c->peer_id : "";
}

PL_API int pl_conn_require_peer_id(pl_conn *c, const char *peer_id)
{
    uint8_t h[ID_HASH_LEN];
    if (!c || identity_parse_id(peer_id, h) != 0)
        return PL_ERR_INVALID;
    if (c->sec || c->state >= CONN_PUNCHING)
        return PL_ERR_STATE;
    memcpy(c->key_hash, h, ID_HASH_LEN);
    c->pinned = true;
    return 0;
}

PL_API void pl_conn_path(const pl_conn *c, pl_path_info *out)
{
    memset(out, 0, sizeof(*out));
    const netaddr *r = NULL;
    if (c && c->active == PL_PATH_DIRECT_UDP)
        r = punch_remote(&c->pu);
    else if (c && c->active == PL_PATH_DIRECT_TCP)
        r = conn_tcp_remote(c);
    else if (c && (c->active == PL_PATH_RELAY_UDP || c->active == PL_PATH_RELAY_TCP))
        r = &c->peer->server;
    if (!r) {
        out->kind = PL_PATH_NONE;
        snprintf(out->remote, sizeof(out->remote), "-");
        return;
    }
    out->kind = c->active;
    netaddr_format(r, out->remote, sizeof(out->remote));
    out->ms = (uint32_t)(c->path_ms - c->start_ms);
    out->punch_ms = (uint32_t)(c->path_ms - c->punch_start_ms);
}
