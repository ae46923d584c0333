#include "server_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "iplimit.h"
#include "timeutil.h"

void srv_log(const server *s, int level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warn", "info", "debug", "stats"};
    if (level > s->cfg.log_level && level != SRV_LOG_STATS)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%02d:%02d:%02d.%03ld rendezvous %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
            ts.tv_nsec / 1000000, names[level], msg);
}

void srv_random_bytes(uint8_t *buf, size_t len)
{
    while (len) {
        ssize_t n = getrandom(buf, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            abort(); /* no entropy source: secrets would be guessable */
        }
        buf += n;
        len -= (size_t)n;
    }
}

uint64_t srv_random64(void)
{
    uint64_t v;
    srv_random_bytes((uint8_t *)&v, sizeof(v));
    return v;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    server *s = w->data;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept(s->tcp_fd, (struct sockaddr *)&ss, &sl);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* libev manual: a level-triggered accept watcher spins on
                 * EMFILE.  Pause it; the tick timer resumes it. */
                srv_log(s, SRV_LOG_WARN, "accept: %s; pausing accepts for a second", strerror(errno));
                ev_io_stop(loop, w);
            }
            return;
        }
        if (s->nconns >= s->cfg.max_conns || set_nonblock(fd) < 0) {
            close(fd);
            continue;
        }
        netaddr remote;
        netaddr_from_sockaddr(&remote, (struct sockaddr *)&ss, sl);
        int v = iplimit_admit(s->ipl, &remote, time_now_ms());
        if (v == IPL_TOO_MANY || v == IPL_TOO_FAST) {
            /* counted, logged at debug only: a flood must not flood the log */
            s->ipl_refused++;
            if (s->cfg.log_level >= SRV_LOG_DEBUG) {
                char as[NETADDR_STRLEN];
                netaddr_format(&remote, as, sizeof(as));
                srv_log(s, SRV_LOG_DEBUG, "connection from %s refused: %s", as,
                        v == IPL_TOO_MANY ? "too many unregistered connections from it"
                                          : "new connections too fast");
            }
            /* one small frame, so the peer can say why (best effort) */
            if (s->refuse_len)
                (void)!send(fd, s->refuse_frame, s->refuse_len, MSG_NOSIGNAL | MSG_DONTWAIT);
            close(fd);
            continue;
        }
        srv_conn_accept(s, fd, &remote); /* marks the connection pending */
    }
}

static void expired_cb(reg_peer *p, void *user)
{
    server *s = user;
    srv_conn *c = p->conn;
    srv_log(s, SRV_LOG_INFO, "peer %s expired (no keepalive)", p->name);
    if (c) {
        c->peer = NULL; /* the registry frees p right after this callback */
        srv_conn_close_after_flush(c);
    }
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    server *s = w->data;
    uint64_t now = time_now_ms();
    registry_expire(s->reg, now, expired_cb, s);
    iplimit_expire(s->ipl, now);
    srv_relay_tick(s, now);
    for (srv_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (!c->peer && !c->rs && !c->closing && now > c->opened_ms + s->cfg.register_deadline_ms) {
            srv_log(s, SRV_LOG_DEBUG, "connection without registration timed out");
            srv_conn_free(c);
        } else if (c->closing && now > c->closing_ms + 5000) {
            srv_conn_free(c); /* a peer that never reads its error */
        }
    }
    if (!ev_is_active(&s->accept_w))
        ev_io_start(loop, &s->accept_w);
}

/* Descriptors the server needs besides its connections: listening and UDP
 * sockets, stdio, a TLS key file being read, libev's own. */
#define SRV_FD_RESERVE 32

/* 15000 connections, or fewer when the open-file limit is lower: at the
 * limit accept() fails with EMFILE (handled, but every connection past it
 * waits in the backlog instead of getting a clear answer). */
static size_t default_max_conns(const server *s)
{
    struct rlimit rl;
    size_t n = 15000;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < n + SRV_FD_RESERVE) {
        n = rl.rlim_cur > 2 * SRV_FD_RESERVE ? (size_t)rl.rlim_cur - SRV_FD_RESERVE
                                             : (size_t)rl.rlim_cur / 2;
        srv_log(s, SRV_LOG_WARN, "open-file limit %llu: at most %zu connections (raise it with "
                                 "ulimit -n for more)", (unsigned long long)rl.rlim_cur, n);
    }
    return n;
}

static void check_max_conns(const server *s)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        s->cfg.max_conns + SRV_FD_RESERVE > rl.rlim_cur)
        srv_log(s, SRV_LOG_WARN, "--max-conns %zu is above the open-file limit %llu: accepts "
                                 "will pause when descriptors run out", s->cfg.max_conns,
                (unsigned long long)rl.rlim_cur);
}

static int open_socket(server *s, int type, char *err, size_t errlen)
{
    int fd = socket(s->cfg.listen.u.sa.sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    char as[NETADDR_STRLEN];
    netaddr_format(&s->cfg.listen, as, sizeof(as));
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (type == SOCK_STREAM)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, &s->cfg.listen.u.sa, s->cfg.listen.len) < 0) {
        int saved = errno;
        snprintf(err, errlen, "cannot bind %s/%s: %s", as, type == SOCK_STREAM ? "tcp" : "udp",
                 strerror(saved));
        close(fd);
        errno = saved; /* server_new retries on EADDRINUSE */
        return -1;
    }
    if (type == SOCK_STREAM && listen(fd, 512) < 0) {
        snprintf(err, errlen, "listen %s: %s", as, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

server *server_new(struct ev_loop *loop, const server_config *cfg, char *err, size_t errlen)
{
    server *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->loop = loop;
    s->cfg = *cfg;
    s->tcp_fd = s->udp_fd = -1;
    if (!s->cfg.keepalive_ms)
        s->cfg.keepalive_ms = 15000;
    if (!s->cfg.expiry_ms)
        s->cfg.expiry_ms = 60000;
    if (!s->cfg.register_deadline_ms)
        s->cfg.register_deadline_ms = 10000;
    if (!s->cfg.max_conns)
        s->cfg.max_conns = default_max_conns(s);
    else
        check_max_conns(s);
    iplimit_config ic = {.max_pending = cfg->per_ip_pending, .rate_per_s = cfg->per_ip_rate};
    ic.hash_seed = srv_random64();
    {
        Punchline__Error e = PUNCHLINE__ERROR__INIT;
        e.code = PUNCHLINE__ERROR_CODE__RATE_LIMITED;
        e.text = "too many connections from your address; retry later";
        Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
        env.body_case = PUNCHLINE__ENVELOPE__BODY_ERROR;
        env.error = &e;
        int n = wire_encode(&env, s->refuse_frame + FRAME_HEADER,
                            sizeof(s->refuse_frame) - FRAME_HEADER);
        if (n > 0) {
            frame_put_header(s->refuse_frame, (uint32_t)n);
            s->refuse_len = (size_t)n + FRAME_HEADER;
        }
    }
    s->ipl = iplimit_new(&ic);
    if (!s->ipl) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    registry_config rc = {.max_peers = cfg->max_peers, .expiry_ms = s->cfg.expiry_ms,
                          .connect_rate = cfg->connect_rate, .connect_burst = 4 * cfg->connect_rate};
    s->reg = registry_new(&rc);
    if (!s->reg) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    srv_random_bytes(s->bind_key, sizeof(s->bind_key));
    if (!s->cfg.relay_off) {
        s->relay = relay_new(&s->cfg.relay, time_now_ms());
        if (!s->relay) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        s->cfg.relay = *relay_get_limits(s->relay);
    }
    /* With port 0, bind UDP to the port TCP got so both share one number;
     * if that UDP port is taken, try another TCP port (a few times). */
    bool any_port = netaddr_port(&cfg->listen) == 0;
    for (int attempt = 0;; attempt++) {
        s->cfg.listen = cfg->listen;
        s->tcp_fd = open_socket(s, SOCK_STREAM, err, errlen);
        if (s->tcp_fd < 0)
            goto fail;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        getsockname(s->tcp_fd, (struct sockaddr *)&ss, &sl);
        netaddr_from_sockaddr(&s->local, (struct sockaddr *)&ss, sl);
        s->cfg.listen = s->local;
        s->udp_fd = open_socket(s, SOCK_DGRAM, err, errlen);
        if (s->udp_fd >= 0)
            break;
        close(s->tcp_fd);
        s->tcp_fd = -1;
        if (!any_port || errno != EADDRINUSE || attempt == 20)
            goto fail;
    }
    ev_io_init(&s->accept_w, accept_cb, s->tcp_fd, EV_READ);
    s->accept_w.data = s;
    ev_io_start(loop, &s->accept_w);
    ev_io_init(&s->udp_w, srv_udp_readable, s->udp_fd, EV_READ);
    s->udp_w.data = s;
    ev_io_start(loop, &s->udp_w);
    ev_timer_init(&s->tick, tick_cb, 1.0, 1.0);
    s->tick.data = s;
    ev_timer_start(loop, &s->tick);
    return s;
fail:
    server_free(s);
    return NULL;
}

void server_free(server *s)
{
    if (!s)
        return;
    while (s->conns)
        srv_conn_free(s->conns);
    if (s->loop) {
        ev_io_stop(s->loop, &s->accept_w);
        ev_io_stop(s->loop, &s->udp_w);
        ev_timer_stop(s->loop, &s->tick);
    }
    if (s->tcp_fd >= 0)
        close(s->tcp_fd);
    if (s->udp_fd >= 0)
        close(s->udp_fd);
    registry_free(s->reg);
    relay_free(s->relay);
    iplimit_free(s->ipl);
    free(s);
}

void server_log_stats(const server *s)
{
    char buf[768];
    size_t largest, queued = server_queued_bytes(s, &largest);
    srv_log(s, SRV_LOG_STATS, "peers registered=%zu, connections=%zu (max %zu), queue memory=%zu "
            "bytes (largest %zu)", registry_count(s->reg), s->nconns, s->cfg.max_conns, queued, largest);
    srv_log(s, SRV_LOG_STATS, "per-source limits: sources=%zu, refused=%llu, tls handshakes=%zu",
            iplimit_sources(s->ipl), (unsigned long long)s->ipl_refused, s->n_tls_hs);
    if (s->relay) {
        relay_format_stats(s->relay, buf, sizeof(buf));
        srv_log(s, SRV_LOG_STATS, "%s", buf);
    } else {
        srv_log(s, SRV_LOG_STATS, "relay: off");
    }
}

const relay_stats *server_relay_stats(const server *s)
{
    return s->relay ? relay_get_stats(s->relay) : NULL;
}

size_t server_queued_bytes(const server *s, size_t *largest)
{
    size_t sum = 0, big = 0;
    for (const srv_conn *c = s->conns; c; c = c->next) {
        sum += c->out_cap;
        big = c->out_cap > big ? c->out_cap : big;
    }
    if (largest)
        *largest = big;
    return sum;
}

void server_local_addr(const server *s, netaddr *out)
{
    *out = s->local;
}
