/* pl_peer: configuration, the one UDP socket every session punches from, and
 * demultiplexing of what arrives on it (RFC 7983 first byte, then session). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "names.h"
#include "identity.h"
#include "peer_internal.h"
#include "timeutil.h"

uint64_t peer_now(const pl_peer *p)
{
    (void)p;
    return time_now_ms();
}

uint64_t peer_now_us(const pl_peer *p)
{
    (void)p;
    return time_now_us();
}

uint32_t peer_keepalive_ms(const pl_peer *p)
{
    uint32_t ka = p->cfg.keepalive_ms;
    if (p->server_keepalive_ms && p->server_keepalive_ms < ka)
        ka = p->server_keepalive_ms;
    return ka;
}

pl_conn *peer_find_session(pl_peer *p, uint64_t session_id)
{
    for (pl_conn *c = p->conns; c; c = c->next)
        if (c->session_id == session_id && c->state != CONN_CLOSED && session_id)
            return c;
    return NULL;
}

pl_conn *peer_find_request(pl_peer *p, uint32_t request_id)
{
    for (pl_conn *c = p->conns; c; c = c->next)
        if (c->outgoing && c->request_id == request_id && c->state != CONN_CLOSED)
            return c;
    return NULL;
}

static uint64_t envelope_session(const Punchline__Envelope *env)
{
    switch (env->body_case) {
    case PUNCHLINE__ENVELOPE__BODY_PROBE: return env->probe->session_id;
    case PUNCHLINE__ENVELOPE__BODY_DATA: return env->data->session_id;
    case PUNCHLINE__ENVELOPE__BODY_ACK: return env->ack->session_id;
    case PUNCHLINE__ENVELOPE__BODY_CLOSE: return env->close->session_id;
    case PUNCHLINE__ENVELOPE__BODY_SECURE: return env->secure->session_id;
    default: return 0;
    }
}

/* A relayed datagram: only from the rendezvous, and the session in the
 * relay header must be the one inside. */
static void relay_input(pl_peer *p, uint64_t sid, const uint8_t *buf, size_t len,
                        const netaddr *from)
{
    Punchline__Envelope *env = NULL;
    if (!netaddr_equal(from, &p->server) || len > WIRE_UDP_MAX ||
        wire_decode_udp(buf, len, &env, NULL) != WIRE_OK)
        return;
    pl_conn *c = envelope_session(env) == sid ? peer_find_session(p, sid) : NULL;
    if (c)
        conn_relay_udp_input(c, env, from);
    wire_free(env);
}

static void udp_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    pl_peer *p = w->data;
    for (int i = 0; i < 64; i++) {
        uint8_t buf[WIRE_RELAY_HDR + WIRE_UDP_MAX + 1];
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        ssize_t n = recvfrom(p->udp_fd, buf, sizeof(buf), 0, (struct sockaddr *)&ss, &sl);
        if (n < 0)
            return; /* EAGAIN, or an ICMP error from an unreachable candidate */
        netaddr from;
        netaddr_from_sockaddr(&from, (struct sockaddr *)&ss, sl);
        uint64_t rsid;
        if (wire_relay_session(buf, (size_t)n, &rsid)) {
            relay_input(p, rsid, buf + WIRE_RELAY_HDR, (size_t)n - WIRE_RELAY_HDR, &from);
            if (p->freeing)
                return;
            continue;
        }
        int cls = (size_t)n > WIRE_UDP_MAX ? WIRE_CLASS_UNKNOWN : wire_classify(buf, (size_t)n);
        if (cls == WIRE_CLASS_STUN) {
            stunc_input(p, buf, (size_t)n, &from);
            continue;
        }
        if (cls != WIRE_CLASS_PUNCHLINE)
            continue; /* DTLS records travel inside Secure envelopes */
        Punchline__Envelope *env = NULL;
        if (wire_decode_udp(buf, (size_t)n, &env, NULL) != WIRE_OK)
            continue;
        uint64_t sid = envelope_session(env);
        if (sid) {
            pl_conn *c = peer_find_session(p, sid);
            if (c)
                conn_udp_input(c, env, &from);
        } else if (netaddr_equal(&from, &p->server)) {
            ctl_udp_input(p, env, &from);
        }
        wire_free(env);
        if (p->freeing)
            return;
    }
}

static char *dup_opt(const char *s, bool *ok)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *ok = false;
    return d;
}

PL_API int pl_peer_new(pl_peer **out, const pl_peer_config *cfg)
{
    if (!out)
        return PL_ERR_INVALID;
    *out = NULL;
    if (!cfg || !cfg->loop || !cfg->server || !cfg->name)
        return PL_ERR_INVALID;
    if (!name_valid_cstr(cfg->name))
        return PL_ERR_BAD_NAME;
    pl_peer *p = calloc(1, sizeof(*p));
    if (!p)
        return PL_ERR_NOMEM;
    int rc = PL_ERR_NOMEM;
    bool ok = true;
    p->udp_fd = p->tcp_fd = p->listen_fd = -1;
    p->loop = cfg->loop;
    p->cfg = *cfg;
    p->server_str = dup_opt(cfg->server, &ok);
    p->name = dup_opt(cfg->name, &ok);
    p->bind_str = dup_opt(cfg->bind_address, &ok);
    p->token_str = dup_opt(cfg->auth_token, &ok);
    if (!ok)
        goto fail;
    p->cfg.server = p->server_str;
    p->cfg.name = p->name;
    p->cfg.bind_address = p->bind_str;
    p->cfg.auth_token = p->token_str;
    p->cfg.identity_file = NULL; /* used only here */
    if (!p->cfg.keepalive_ms)
        p->cfg.keepalive_ms = 15000;
    if (p->cfg.keepalive_ms > 25000)
        p->cfg.keepalive_ms = 25000; /* NAT UDP mappings often last only 30 s */
    if (!p->cfg.punch_timeout_ms)
        p->cfg.punch_timeout_ms = 10000;
    if (!p->cfg.path_timeout_ms)
        p->cfg.path_timeout_ms = 30000;
    if (p->cfg.path_timeout_ms < p->cfg.keepalive_ms + 2000)
        p->cfg.path_timeout_ms = p->cfg.keepalive_ms + 2000; /* room for one lost keepalive */
    p->log.fn = cfg->log;
    p->log.user = cfg->log_user;
    p->log.level = cfg->log_level;

    if (cfg->auth_token && strlen(cfg->auth_token) > WIRE_MAX_TOKEN) {
        plog(&p->log, PL_LOG_ERROR, "access token longer than %d characters", WIRE_MAX_TOKEN);
        rc = PL_ERR_INVALID;
        goto fail;
    }
    if (cfg->identity_file) {
        char err[400];
        if (identity_load(cfg->identity_file, true, &p->ident, err, sizeof(err)) != 0) {
            plog(&p->log, PL_LOG_ERROR, "%s", err);
            rc = PL_ERR_IDENTITY;
            goto fail;
        }
    } else if (!(p->ident = identity_ephemeral())) {
        goto fail;
    }
    if (cfg->server_ca_file || cfg->server_fingerprint) {
        char err[400];
        uint8_t fp[ID_HASH_LEN];
        if (cfg->server_ca_file && cfg->server_fingerprint) {
            plog(&p->log, PL_LOG_ERROR, "give the rendezvous' CA file or its fingerprint, not both");
            rc = PL_ERR_INVALID;
            goto fail;
        }
        if (cfg->server_fingerprint && identity_parse_id(cfg->server_fingerprint, fp) != 0) {
            plog(&p->log, PL_LOG_ERROR, "bad rendezvous fingerprint '%s' (want %d base32 characters)",
                 cfg->server_fingerprint, ID_TEXT_LEN);
            rc = PL_ERR_INVALID;
            goto fail;
        }
        p->tls_conf = tls_conf_client(cfg->server_ca_file, cfg->server_fingerprint ? fp : NULL, p->ident, err,
                                      sizeof(err));
        if (!p->tls_conf) {
            plog(&p->log, PL_LOG_ERROR, "%s", err);
            rc = PL_ERR_INVALID;
            goto fail;
        }
        const char *colon = strrchr(cfg->server, ':');
        size_t hl = colon ? (size_t)(colon - cfg->server) : strlen(cfg->server);
        if (hl >= 2 && cfg->server[0] == '[' && cfg->server[hl - 1] == ']')
            p->server_host = strndup(cfg->server + 1, hl - 2);
        else
            p->server_host = strndup(cfg->server, hl);
        if (!p->server_host)
            goto fail;
    }
    p->cfg.server_ca_file = p->cfg.server_fingerprint = NULL; /* used only here */
    plog(&p->log, PL_LOG_INFO, "peer id %s (%s)", identity_id(p->ident),
         cfg->identity_file ? cfg->identity_file : "ephemeral key");
    int pr = netaddr_parse(cfg->server, &p->server, true);
    if (pr != 0) {
        rc = pr == -2 ? PL_ERR_RESOLVE : PL_ERR_INVALID;
        plog(&p->log, PL_LOG_ERROR, "bad rendezvous address '%s' (want HOST:PORT)", cfg->server);
        goto fail;
    }
    netaddr bind_addr;
    memset(&bind_addr, 0, sizeof(bind_addr));
    if (cfg->bind_address) {
        char tmp[128];
        snprintf(tmp, sizeof(tmp), "%s:0", cfg->bind_address);
        if (netaddr_parse(strchr(cfg->bind_address, ':') ? cfg->bind_address : tmp, &bind_addr,
                          false) != 0) {
            rc = PL_ERR_INVALID;
            plog(&p->log, PL_LOG_ERROR, "bad bind address '%s'", cfg->bind_address);
            goto fail;
        }
    } else {
        bind_addr.u.sa.sa_family = p->server.u.sa.sa_family;
        bind_addr.len = p->server.len;
    }
    p->udp_fd = socket(bind_addr.u.sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->udp_fd < 0 || bind(p->udp_fd, &bind_addr.u.sa, bind_addr.len) < 0) {
        plog(&p->log, PL_LOG_ERROR, "UDP socket: %s", strerror(errno));
        rc = PL_ERR_SYSTEM;
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(p->udp_fd, (struct sockaddr *)&ss, &sl);
    netaddr local;
    netaddr_from_sockaddr(&local, (struct sockaddr *)&ss, sl);
    p->udp_port = netaddr_port(&local);
    p->tcp_local = bind_addr; /* port 0 until the control socket is bound */
    if (p->tcp_local.u.sa.sa_family == AF_INET)
        p->tcp_local.u.in4.sin_port = 0;
    else
        p->tcp_local.u.in6.sin6_port = 0;
    ev_io_init(&p->udp_w, udp_read_cb, p->udp_fd, EV_READ);
    p->udp_w.data = p;
    ev_io_start(p->loop, &p->udp_w);
    if (cfg->stun_server) {
        if (netaddr_parse(cfg->stun_server, &p->stun_server, true) != 0 ||
            p->stun_server.u.sa.sa_family != p->server.u.sa.sa_family) {
            plog(&p->log, PL_LOG_ERROR, "bad STUN server '%s' (want HOST:PORT, same address "
                                        "family as the rendezvous)", cfg->stun_server);
            rc = PL_ERR_INVALID;
            goto fail;
        }
        stunc_start(p);
    }
    p->cfg.stun_server = NULL; /* used only here */
    rc = ctl_start(p);
    if (rc < 0)
        goto fail;
    *out = p;
    return 0;
fail:
    pl_peer_free(p);
    return rc;
}

PL_API void pl_peer_free(pl_peer *p)
{
    if (!p)
        return;
    p->freeing = true;
    while (p->conns) {
        pl_conn *c = p->conns;
        if (c->state != CONN_CLOSED) {
            pl_conn_close(c);
            if (c->cb.on_closed)
                c->cb.on_closed(c, PL_ERR_CLOSED, c->user);
        }
        conn_destroy(c);
    }
    ctl_stop(p);
    stunc_stop(p);
    peer_listen_stop(p);
    if (p->udp_fd >= 0) {
        ev_io_stop(p->loop, &p->udp_w);
        close(p->udp_fd);
    }
    peer_udp_batch_free(p);
    free(p->server_str);
    free(p->name);
    free(p->bind_str);
    free(p->token_str);
    free(p->server_host);
    tls_conf_free(p->tls_conf);
    identity_free(p->ident);
    free(p);
}

PL_API const char *pl_peer_name(const pl_peer *p)
{
    return p ? p->name : "";
}

PL_API const char *pl_peer_id(const pl_peer *p)
{
    return p && p->ident ? identity_id(p->ident) : "";
}

PL_API int pl_identity_id(const char *path, int create, char *id, size_t idcap, char *err,
                          size_t errcap)
{
    identity *ident = NULL;
    char why[400];
    if (!id || idcap < PL_ID_LEN + 1) {
        if (err && errcap)
            snprintf(err, errcap, "id buffer too small");
        return PL_ERR_INVALID;
    }
    if (identity_load(path, create != 0, &ident, why, sizeof(why)) != 0) {
        if (err && errcap)
            snprintf(err, errcap, "%s", why);
        return PL_ERR_IDENTITY;
    }
    snprintf(id, idcap, "%s", identity_id(ident));
    identity_free(ident);
    return 0;
}

PL_API int pl_identity_default_path(char *out, size_t cap)
{
    return out && identity_default_path(out, cap) == 0 ? 0 : PL_ERR_INVALID;
}

PL_API int pl_peer_connect(pl_peer *p, const char *peer_name, int transport,
                           const pl_conn_callbacks *cb, void *user, pl_conn **out)
{
    if (out)
        *out = NULL;
    if (!p || !peer_name)
        return PL_ERR_INVALID;
    if (!name_valid_cstr(peer_name))
        return PL_ERR_BAD_NAME;
    if (transport != PL_TRANSPORT_AUTO && transport != PL_TRANSPORT_UDP &&
        transport != PL_TRANSPORT_TCP && transport != PL_TRANSPORT_RELAY)
        return PL_ERR_INVALID;
    if (transport == PL_TRANSPORT_TCP && p->listen_fd < 0)
        return PL_ERR_UNSUPPORTED; /* no shared TCP port (see the log) */
    if (!strcmp(peer_name, p->name))
        return PL_ERR_INVALID;
    if (p->ctl_state == CTL_FAILED)
        return PL_ERR_SERVER;
    pl_conn *c = conn_new(p, peer_name, true);
    if (!c)
        return PL_ERR_NOMEM;
    pl_conn_set_callbacks(c, cb, user);
    c->transport = transport;
    if (p->ctl_state == CTL_REGISTERED)
        conn_registered(c);
    conn_pump(c); /* arms the connect deadline */
    if (out)
        *out = c;
    return 0;
}

/* ---- TCP listener: inbound punching connections --------------------------
 * A connection accepted here belongs to no session until its first frame, a
 * Probe, names one.  Until then it waits in p->pending (at most
 * PENDING_MAX, each at most PENDING_MS). */

#define PENDING_MAX 16
#define PENDING_MS 5000

static void pending_remove(pl_peer *p, tcp_link *l)
{
    for (tcp_link **pp = &p->pending; *pp; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            l->next = NULL;
            p->npending--;
            return;
        }
    }
}

static void pending_frame_cb(tcp_link *l, const uint8_t *buf, size_t len, void *user)
{
    pl_peer *p = user;
    Punchline__Envelope *env = NULL;
    pending_remove(p, l);
    pl_conn *c = NULL;
    if (wire_decode(buf, len, &env, NULL) == WIRE_OK &&
        env->body_case == PUNCHLINE__ENVELOPE__BODY_PROBE)
        c = peer_find_session(p, env->probe->session_id);
    if (c && c->state == CONN_PUNCHING && c->want_tcp)
        conn_tcp_adopt(c, l, env); /* the conn owns l now */
    else
        tcp_link_free(l);
    wire_free(env);
}

static void pending_close_cb(tcp_link *l, int err, void *user)
{
    pending_remove(user, l);
    tcp_link_free(l);
}

static const tcp_link_ops pending_ops = {.on_frame = pending_frame_cb,
                                         .on_close = pending_close_cb};

static void pending_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    pl_peer *p = w->data;
    uint64_t now = peer_now(p);
    for (tcp_link *l = p->pending, *next; l; l = next) {
        next = l->next;
        if (now >= l->created_ms + PENDING_MS) {
            pending_remove(p, l);
            tcp_link_free(l);
        }
    }
    if (!p->pending)
        ev_timer_stop(loop, w);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    pl_peer *p = w->data;
    for (int i = 0; i < 16; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept(p->listen_fd, (struct sockaddr *)&ss, &sl);
        if (fd >= 0 && (fcntl(fd, F_SETFL, O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)) {
            close(fd);
            continue;
        }
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                plog(&p->log, PL_LOG_WARN, "accept: %s", strerror(errno));
            return;
        }
        netaddr remote;
        netaddr_from_sockaddr(&remote, (struct sockaddr *)&ss, sl);
        tcp_link *l = p->npending < PENDING_MAX
                          ? tcp_link_adopt(loop, fd, &remote, &pending_ops, p, 0) : NULL;
        if (!l) {
            close(fd); /* nobody punches with that many half-open streams */
            continue;
        }
        l->next = p->pending;
        p->pending = l;
        p->npending++;
        if (!ev_is_active(&p->pending_w))
            ev_timer_again(loop, &p->pending_w);
    }
}

int peer_listen_start(pl_peer *p)
{
    if (p->listen_fd >= 0)
        return 0; /* already listening (a re-registration) */
    p->listen_fd = socket(p->tcp_local.u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->listen_fd < 0 || tcp_link_reuse(p->listen_fd) < 0 ||
        bind(p->listen_fd, &p->tcp_local.u.sa, p->tcp_local.len) < 0 ||
        listen(p->listen_fd, 16) < 0) {
        plog(&p->log, PL_LOG_WARN, "TCP listener on the punching port: %s; TCP punching is off",
             strerror(errno));
        if (p->listen_fd >= 0)
            close(p->listen_fd);
        p->listen_fd = -1;
        return PL_ERR_SYSTEM;
    }
    ev_io_init(&p->listen_w, accept_cb, p->listen_fd, EV_READ);
    p->listen_w.data = p;
    ev_io_start(p->loop, &p->listen_w);
    ev_init(&p->pending_w, pending_timer_cb);
    p->pending_w.repeat = 1.0;
    p->pending_w.data = p;
    return 0;
}

void peer_listen_stop(pl_peer *p)
{
    if (p->listen_fd >= 0) {
        ev_io_stop(p->loop, &p->listen_w);
        ev_timer_stop(p->loop, &p->pending_w);
        close(p->listen_fd);
        p->listen_fd = -1;
    }
    while (p->pending) {
        tcp_link *l = p->pending;
        p->pending = l->next;
        tcp_link_free(l);
    }
    p->npending = 0;
}
