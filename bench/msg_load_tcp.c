/* punchline-msg-load, TCP modes: many non-blocking control connections on
 * one epoll set (bench/rendezvous_tcp_rate.sh, bench/peer_memory.sh).
 *
 *   register  [WINDOW]         whole registrations per second: TCP connect,
 *                              ServerHello, sign, Register, RegisterResult,
 *                              close; WINDOW (default 64) in flight
 *   keepalive [CONNS [DEPTH]]  registers CONNS peers (default 256) over TCP
 *                              only, then keeps DEPTH (default 1) Keepalive
 *                              frames in flight on each; counts the echoes
 *   stun-tcp  [CONNS [DEPTH]]  STUN Binding requests over TCP (RFC 8489
 *                              s6.2.2: messages back to back on the stream),
 *                              for coturn's turnserver; no registration
 *   hold N [tcp|udp] [KA_S [WINDOW]]
 *                              registers N peers (udp: each also binds its own
 *                              UDP socket with padded UdpBind and the
 *                              challenge), prints "held=N ..." once all are
 *                              registered, then keeps them alive (a TCP
 *                              Keepalive and, with udp, a UdpBind every KA_S
 *                              seconds, default 15) for SECONDS
 *
 * The rate modes print one line: mode=M sent=N answered=N seconds=S rate=N
 * gen_cpu_s=S (this process's user+system CPU over the measured seconds),
 * server_cpu_s=S (the same for the process $BENCH_SERVER_PID; -1 without
 * it), and for register sign_us (generator CPU per ECDSA sign) and lat_ms
 * (mean time of one registration). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_peer.h"
#include "msg_load.h"
#include "timeutil.h"

#define INBUF 512   /* per connection: partial frames only (replies are < 200 bytes) */
#define MAX_DEPTH 16

enum kind { K_REGISTER, K_KEEPALIVE, K_STUN_TCP, K_HOLD };
enum state { ST_FREE, ST_HELLO, ST_RESULT, ST_UDP, ST_READY };

typedef struct tconn {
    int fd, udp;
    uint8_t st;
    uint16_t have;
    uint32_t seq;          /* name number */
    uint64_t token, challenge;
    uint64_t t_start_ns;
    uint64_t next_ms;      /* hold: next keepalive; ST_UDP: next UdpBind retransmission */
    uint8_t in[INBUF];
} tconn;

static struct {
    enum kind kind;
    netaddr srv;
    int ep;
    tconn *c;
    size_t n;              /* connections (slots) */
    size_t opened, registered, ready;
    uint32_t depth;
    uint64_t ka_ms;
    bool udp;
    uint64_t sent, answered;      /* rate modes; hold: keepalives sent / echoed */
    uint64_t udp_sent, udp_answered;
    uint64_t sign_ns, signs, lat_ns;
    uint8_t req[MAX_DEPTH * 32];  /* DEPTH copies of the request */
    size_t req_len;               /* one request */
    char name_prefix[24];
} g;

static volatile sig_atomic_t stop;
static void on_term(int sig) { stop = 1; }

static uint64_t now_ns(int clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_self(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds of the server process named by $BENCH_SERVER_PID (utime +
 * stime, all threads), so the server's CPU covers exactly the measured
 * seconds; -1 without it. */
static double cpu_server(void)
{
    const char *pid = getenv("BENCH_SERVER_PID");
    char path[64], buf[1024];
    if (!pid)
        return -1;
    snprintf(path, sizeof(path), "/proc/%s/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void die_conn(const tconn *c, const char *what)
{
    fprintf(stderr, "punchline-msg-load: connection %s%u: %s\n", g.name_prefix, c->seq, what);
    exit(1);
}

static void conn_open(tconn *c)
{
    c->fd = socket(g.srv.u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        bench_die("socket (raise ulimit -n, or split the peers over processes)");
    if (connect(c->fd, &g.srv.u.sa, g.srv.len) < 0 && errno != EINPROGRESS)
        bench_die("connect to the rendezvous");
    c->udp = -1;
    c->st = ST_HELLO;
    c->have = 0;
    c->seq = (uint32_t)g.opened++;
    c->t_start_ns = now_ns(CLOCK_MONOTONIC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)(c - g.c) << 1};
    if (epoll_ctl(g.ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        bench_die("epoll_ctl");
}

static void conn_close(tconn *c)
{
    close(c->fd); /* leaves the epoll set with it */
    if (c->udp >= 0)
        close(c->udp);
    c->fd = c->udp = -1;
    c->st = ST_FREE;
}

static void send_all(tconn *c, int fd, const uint8_t *buf, size_t len)
{
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n != (ssize_t)len) /* a few bytes into an idle socket: never partial */
        die_conn(c, n < 0 ? strerror(errno) : "short send");
}

static void send_udp_bind(tconn *c)
{
    uint8_t b[WIRE_UDPBIND_MIN + 16];
    int n = wire_encode_udp_bind(c->token, c->challenge, b, sizeof(b));
    if (n <= 0)
        bench_die("encode");
    send(c->udp, b, (size_t)n, 0); /* a loss is retransmitted by the sweep */
    g.udp_sent++;
}

static Punchline__Envelope *decode(tconn *c, const uint8_t *body, size_t len, int want)
{
    Punchline__Envelope *e = NULL;
    if (wire_decode(body, len, &e, NULL) != WIRE_OK)
        die_conn(c, "undecodable frame");
    if ((int)e->body_case != want) {
        char why[400];
        snprintf(why, sizeof(why), "expected another message, got %s%s%s", wire_body_name(e),
                 e->body_case == PUNCHLINE__ENVELOPE__BODY_ERROR ? ": " : "",
                 e->body_case == PUNCHLINE__ENVELOPE__BODY_ERROR ? e->error->text : "");
        die_conn(c, why);
    }
    return e;
}

/* One frame for c.  Returns 1 if c was closed (stop reading it). */
static int on_frame(tconn *c, const uint8_t *body, size_t len, unsigned *resend)
{
    if (g.kind == K_STUN_TCP) {
        g.answered++;
        (*resend)++;
        return 0;
    }
    if (c->st == ST_HELLO) {
        Punchline__Envelope *e = decode(c, body, len, PUNCHLINE__ENVELOPE__BODY_SERVER_HELLO);
        if (e->server_hello->nonce.len != WIRE_NONCE_LEN)
            die_conn(c, "bad nonce");
        char name[40];
        snprintf(name, sizeof(name), "%s%u", g.name_prefix, c->seq);
        uint8_t frame[FRAME_HEADER + 512];
        uint64_t t = now_ns(CLOCK_THREAD_CPUTIME_ID);
        size_t fl = bench_register_frame(e->server_hello->nonce.data, name, "punchline-msg-load",
                                         frame, sizeof(frame));
        g.sign_ns += now_ns(CLOCK_THREAD_CPUTIME_ID) - t;
        g.signs++;
        wire_free(e);
        send_all(c, c->fd, frame, fl);
        c->st = ST_RESULT;
        return 0;
    }
    if (c->st == ST_RESULT) {
        Punchline__Envelope *e = decode(c, body, len, PUNCHLINE__ENVELOPE__BODY_REGISTER_RESULT);
        c->token = e->register_result->udp_token;
        wire_free(e);
        g.registered++;
        if (g.kind == K_REGISTER) {
            g.answered++;
            g.lat_ns += now_ns(CLOCK_MONOTONIC) - c->t_start_ns;
            conn_close(c);
            conn_open(c);
            return 1;
        }
        uint64_t now = time_now_ms();
        if (g.kind == K_HOLD && g.udp) {
            c->udp = socket(g.srv.u.sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (c->udp < 0 || connect(c->udp, &g.srv.u.sa, g.srv.len) < 0)
                bench_die("UDP socket (raise ulimit -n, or split the peers over processes)");
            struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)(c - g.c) << 1 | 1};
            if (epoll_ctl(g.ep, EPOLL_CTL_ADD, c->udp, &ev) < 0)
                bench_die("epoll_ctl");
            c->challenge = 0;
            send_udp_bind(c);
            c->st = ST_UDP;
            c->next_ms = now + 1000;
            return 0;
        }
        c->st = ST_READY;
        c->next_ms = now + g.ka_ms;
        g.ready++;
        return 0;
    }
    /* ST_READY (or ST_UDP in hold): Keepalive echoes */
    if (len != g.req_len - FRAME_HEADER) /* not a Keepalive: an Error before a close? */
        decode(c, body, len, PUNCHLINE__ENVELOPE__BODY_KEEPALIVE);
    g.answered++;
    if (g.kind == K_KEEPALIVE)
        (*resend)++;
    return 0;
}

static size_t frame_total(const uint8_t *b, size_t have)
{
    if (g.kind == K_STUN_TCP)
        return have >= 4 ? 20 + ((size_t)b[2] << 8 | b[3]) : 0;
    return have >= 4 ? FRAME_HEADER + ((size_t)b[0] << 24 | (size_t)b[1] << 16 |
                                       (size_t)b[2] << 8 | b[3])
                     : 0;
}

static void on_tcp(tconn *c)
{
    unsigned resend = 0;
    for (;;) {
        size_t space = INBUF - c->have;
        ssize_t n = recv(c->fd, c->in + c->have, space, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        if (n <= 0)
            die_conn(c, n == 0 ? "closed by the server" : strerror(errno));
        c->have += (uint16_t)n;
        size_t off = 0, t;
        while ((t = frame_total(c->in + off, c->have - off)) && t <= c->have - off) {
            size_t hdr = g.kind == K_STUN_TCP ? 0 : FRAME_HEADER;
            if (t == hdr)
                die_conn(c, "empty frame");
            if (on_frame(c, c->in + off + hdr, t - hdr, &resend))
                return;
            off += t;
        }
        if (t > INBUF)
            die_conn(c, "frame larger than the bench buffer");
        memmove(c->in, c->in + off, c->have - off);
        c->have -= (uint16_t)off;
        if ((size_t)n < space) /* drained: saves a recv that would say EAGAIN */
            break;
    }
    if (resend) {
        if (g.kind == K_STUN_TCP) /* a fresh transaction id per request */
            for (unsigned i = 0; i < resend; i++)
                memcpy(g.req + i * g.req_len + 8, &g.sent, 4), g.sent++;
        else
            g.sent += resend;
        send_all(c, c->fd, g.req, resend * g.req_len);
    }
}

static void on_udp(tconn *c)
{
    uint8_t b[WIRE_UDP_MAX];
    ssize_t n;
    while ((n = recv(c->udp, b, sizeof(b), 0)) > 0) {
        Punchline__Envelope *e = NULL;
        if (wire_decode_udp(b, (size_t)n, &e, NULL) != WIRE_OK)
            continue;
        if (e->body_case == PUNCHLINE__ENVELOPE__BODY_UDP_BOUND) {
            g.udp_answered++;
            c->challenge = e->udp_bound->challenge;
            if (c->challenge) {
                send_udp_bind(c); /* prove we receive here */
            } else if (c->st == ST_UDP) {
                c->st = ST_READY;
                c->next_ms = time_now_ms() + g.ka_ms;
                g.ready++;
            }
        }
        wire_free(e);
    }
}

/* hold: UdpBind retransmissions and the keepalives that are due */
static void sweep(uint64_t now)
{
    for (size_t i = 0; i < g.n; i++) {
        tconn *c = &g.c[i];
        if (c->st == ST_UDP && now >= c->next_ms) {
            send_udp_bind(c);
            c->next_ms = now + 1000;
        } else if (c->st == ST_READY && now >= c->next_ms) {
            send_all(c, c->fd, g.req, g.req_len);
            g.sent++;
            if (c->udp >= 0) {
                c->challenge = 0;
                send_udp_bind(c);
            }
            c->next_ms = now + g.ka_ms;
        }
    }
}

static void poll_once(int timeout_ms)
{
    struct epoll_event evs[256];
    int k = epoll_wait(g.ep, evs, 256, timeout_ms);
    for (int i = 0; i < k; i++) {
        tconn *c = &g.c[evs[i].data.u64 >> 1];
        if (c->st == ST_FREE)
            continue;
        if (evs[i].data.u64 & 1)
            on_udp(c);
        else
            on_tcp(c);
    }
}

bool msg_load_tcp_mode(const char *m)
{
    return !strcmp(m, "register") || !strcmp(m, "keepalive") || !strcmp(m, "stun-tcp") ||
           !strcmp(m, "hold");
}

static int usage(void)
{
    fprintf(stderr, "Usage: punchline-msg-load HOST:PORT SECONDS register [WINDOW]\n"
                    "       punchline-msg-load HOST:PORT SECONDS keepalive|stun-tcp [CONNS [DEPTH]]\n"
                    "       punchline-msg-load HOST:PORT SECONDS hold N [tcp|udp] [KA_S [WINDOW]]\n");
    return 2;
}

int msg_load_tcp(const netaddr *srv, double seconds, const char *mode, int argc, char **argv)
{
    g.srv = *srv;
    g.depth = 1;
    g.ka_ms = 15000;
    size_t window = 64;
    if (!strcmp(mode, "register")) {
        g.kind = K_REGISTER;
        if (argc > 0)
            window = (size_t)atol(argv[0]);
        g.n = window;
    } else if (!strcmp(mode, "keepalive") || !strcmp(mode, "stun-tcp")) {
        g.kind = mode[0] == 'k' ? K_KEEPALIVE : K_STUN_TCP;
        g.n = argc > 0 ? (size_t)atol(argv[0]) : 256;
        if (argc > 1)
            g.depth = (uint32_t)atoi(argv[1]);
    } else {
        g.kind = K_HOLD;
        if (argc < 1)
            return usage();
        g.n = (size_t)atol(argv[0]);
        if (argc > 1 && strcmp(argv[1], "tcp") && strcmp(argv[1], "udp"))
            return usage();
        g.udp = argc > 1 && !strcmp(argv[1], "udp");
        if (argc > 2)
            g.ka_ms = (uint64_t)(atof(argv[2]) * 1000);
        if (argc > 3)
            window = (size_t)atol(argv[3]);
    }
    if (!g.n || !window || g.depth < 1 || g.depth > MAX_DEPTH || g.n > 1000000 || !g.ka_ms)
        return usage();
    bench_raise_nofile(g.n * (g.kind == K_HOLD && g.udp ? 2 : 1) + 16);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    snprintf(g.name_prefix, sizeof(g.name_prefix), "ml%x-", (unsigned)getpid());
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    g.c = calloc(g.n, sizeof(*g.c));
    if (g.ep < 0 || !g.c)
        bench_die("setup");
    for (size_t i = 0; i < g.n; i++)
        g.c[i].fd = g.c[i].udp = -1;

    /* the request a rate mode repeats: a Keepalive frame, or a STUN Binding */
    if (g.kind == K_STUN_TCP) {
        g.req_len = 20;
        for (uint32_t i = 0; i < MAX_DEPTH; i++) {
            uint8_t *r = g.req + i * 20;
            memcpy(r, "\x00\x01\x00\x00\x21\x12\xA4\x42", 8);
            for (int j = 8; j < 20; j++)
                r[j] = (uint8_t)rand();
        }
    } else {
        Punchline__Keepalive ka = PUNCHLINE__KEEPALIVE__INIT;
        Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
        env.body_case = PUNCHLINE__ENVELOPE__BODY_KEEPALIVE;
        env.keepalive = &ka;
        int n = wire_encode(&env, g.req + FRAME_HEADER, 28);
        if (n <= 0)
            bench_die("encode");
        frame_put_header(g.req, (uint32_t)n);
        g.req_len = (size_t)n + FRAME_HEADER;
        for (uint32_t i = 1; i < MAX_DEPTH; i++)
            memcpy(g.req + i * g.req_len, g.req, g.req_len);
    }

    if (g.kind == K_REGISTER) {
        for (size_t i = 0; i < g.n; i++)
            conn_open(&g.c[i]);
        double c0 = cpu_self(), s0 = cpu_server();
        uint64_t t0 = time_now_ms(), end = t0 + (uint64_t)(seconds * 1000);
        for (uint64_t now = t0; now < end && !stop; now = time_now_ms())
            poll_once((int)(end - now));
        double secs = (double)(time_now_ms() - t0) / 1000.0, cpu = cpu_self() - c0;
        double scpu = s0 < 0 ? -1 : cpu_server() - s0;
        printf("mode=register sent=%zu answered=%llu seconds=%.2f rate=%.0f gen_cpu_s=%.2f "
               "server_cpu_s=%.2f sign_us=%.0f lat_ms=%.1f window=%zu\n",
               g.opened, (unsigned long long)g.answered, secs, (double)g.answered / secs, cpu, scpu,
               g.signs ? (double)g.sign_ns / 1e3 / (double)g.signs : 0,
               g.answered ? (double)g.lat_ns / 1e6 / (double)g.answered : 0, window);
        return 0;
    }

    if (g.kind == K_STUN_TCP) {
        for (size_t i = 0; i < g.n; i++) {
            tconn *c = &g.c[i];
            c->fd = socket(g.srv.u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (c->fd < 0 || connect(c->fd, &g.srv.u.sa, g.srv.len) < 0)
                bench_die("connect");
            fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
            c->seq = (uint32_t)i;
            c->st = ST_READY;
            struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i << 1};
            if (epoll_ctl(g.ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
                bench_die("epoll_ctl");
        }
        g.ready = g.n;
    } else {
        /* registration phase (keepalive, hold): WINDOW registrations in flight */
        uint64_t t0 = time_now_ms(), last_sweep = t0;
        while (g.ready < g.n && !stop) {
            while (g.opened < g.n && g.opened - g.registered < window)
                conn_open(&g.c[g.opened]);
            poll_once(100);
            uint64_t now = time_now_ms();
            if (g.kind == K_HOLD && now - last_sweep >= 200) {
                sweep(now);
                last_sweep = now;
            }
            if (now - t0 > 600000) {
                errno = 0;
                bench_die("registration phase took over 10 minutes");
            }
        }
        if (g.kind == K_HOLD) {
            printf("held=%zu udp=%d register_s=%.1f\n", g.ready, g.udp,
                   (double)(time_now_ms() - t0) / 1000.0);
            fflush(stdout);
            uint64_t end = time_now_ms() + (uint64_t)(seconds * 1000);
            g.sent = g.answered = 0;
            for (uint64_t now = time_now_ms(); now < end && !stop; now = time_now_ms()) {
                poll_once(200);
                if (now - last_sweep >= 200) {
                    sweep(now);
                    last_sweep = now;
                }
            }
            printf("mode=hold peers=%zu udp=%d keepalives=%llu echoed=%llu udpbind=%llu "
                   "udpbound=%llu\n",
                   g.ready, g.udp, (unsigned long long)g.sent, (unsigned long long)g.answered,
                   (unsigned long long)g.udp_sent, (unsigned long long)g.udp_answered);
            return 0;
        }
    }

    /* keepalive / stun-tcp: DEPTH requests in flight on every connection */
    g.sent = g.answered = 0;
    double c0 = cpu_self(), s0 = cpu_server();
    uint64_t t0 = time_now_ms(), end = t0 + (uint64_t)(seconds * 1000);
    for (size_t i = 0; i < g.n; i++) {
        send_all(&g.c[i], g.c[i].fd, g.req, g.depth * g.req_len);
        g.sent += g.depth;
    }
    for (uint64_t now = t0; now < end && !stop; now = time_now_ms())
        poll_once((int)(end - now));
    double secs = (double)(time_now_ms() - t0) / 1000.0, cpu = cpu_self() - c0;
    double scpu = s0 < 0 ? -1 : cpu_server() - s0;
    printf("mode=%s conns=%zu depth=%u sent=%llu answered=%llu seconds=%.2f rate=%.0f "
           "gen_cpu_s=%.2f server_cpu_s=%.2f\n",
           mode, g.n, g.depth, (unsigned long long)g.sent, (unsigned long long)g.answered, secs,
           (double)g.answered / secs, cpu, scpu);
    return 0;
}
