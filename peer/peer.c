/* pl_peer: configuration, the one UDP socket every session punches from, and
 * demultiplexing of what arrives on it (RFC 7983 first byte, then session). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "names.h"
#include "peer_internal.h"
#include "timeutil.h"

uint64_t peer_now(const pl_peer *p)
{
    (void)p;
    return time_now_ms();
}

uint32_t peer_keepalive_ms(const pl_peer *p)
{
    uint32_t ka = p->cfg.keepalive_ms;
    if (p->server_keepalive_ms && p->server_keepalive_ms < ka)
        ka = p->server_keepalive_ms;
    return ka;
}

void peer_udp_send(pl_peer *p, const netaddr *to, const uint8_t *buf, size_t len)
{
    ssize_t n = sendto(p->udp_fd, buf, len, 0, &to->u.sa, to->len);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        char as[NETADDR_STRLEN];
        netaddr_format(to, as, sizeof(as));
        plog(&p->log, PL_LOG_DEBUG, "sendto %s: %s", as, strerror(errno));
    }
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
    default: return 0;
    }
}

static void udp_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    pl_peer *p = w->data;
    for (int i = 0; i < 64; i++) {
        uint8_t buf[WIRE_UDP_MAX + 1];
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        ssize_t n = recvfrom(p->udp_fd, buf, sizeof(buf), 0, (struct sockaddr *)&ss, &sl);
        if (n < 0)
            return; /* EAGAIN, or an ICMP error from an unreachable candidate */
        if ((size_t)n > WIRE_UDP_MAX || wire_classify(buf, (size_t)n) != WIRE_CLASS_PUNCHLINE)
            continue; /* STUN and DTLS are not used by this version */
        netaddr from;
        netaddr_from_sockaddr(&from, (struct sockaddr *)&ss, sl);
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
    p->udp_fd = p->tcp_fd = -1;
    p->loop = cfg->loop;
    p->cfg = *cfg;
    p->server_str = dup_opt(cfg->server, &ok);
    p->name = dup_opt(cfg->name, &ok);
    p->bind_str = dup_opt(cfg->bind_address, &ok);
    if (!ok)
        goto fail;
    p->cfg.server = p->server_str;
    p->cfg.name = p->name;
    p->cfg.bind_address = p->bind_str;
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
    ev_io_init(&p->udp_w, udp_read_cb, p->udp_fd, EV_READ);
    p->udp_w.data = p;
    ev_io_start(p->loop, &p->udp_w);
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
    if (p->udp_fd >= 0) {
        ev_io_stop(p->loop, &p->udp_w);
        close(p->udp_fd);
    }
    free(p->server_str);
    free(p->name);
    free(p->bind_str);
    free(p);
}

PL_API const char *pl_peer_name(const pl_peer *p)
{
    return p ? p->name : "";
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
    if (transport == PL_TRANSPORT_TCP || transport == PL_TRANSPORT_RELAY)
        return PL_ERR_UNSUPPORTED;
    if (transport != PL_TRANSPORT_AUTO && transport != PL_TRANSPORT_UDP)
        return PL_ERR_INVALID;
    if (!strcmp(peer_name, p->name))
        return PL_ERR_INVALID;
    if (p->ctl_state == CTL_FAILED)
        return PL_ERR_SERVER;
    pl_conn *c = conn_new(p, peer_name, true);
    if (!c)
        return PL_ERR_NOMEM;
    pl_conn_set_callbacks(c, cb, user);
    if (p->ctl_state == CTL_REGISTERED)
        conn_registered(c);
    conn_pump(c); /* arms the connect deadline */
    if (out)
        *out = c;
    return 0;
}
