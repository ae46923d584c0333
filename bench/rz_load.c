/* punchline-rz-load: one process of the rendezvous load test
 * (bench/rendezvous_load.sh; issue 8, "Load").
 *
 *   punchline-rz-load HOST:PORT --prefix P --first I --count N --total T
 *       [--reg-rate R] [--connect-rate C] [--seconds S] [--keepalive KA_S]
 *       [--go FILE] [--end FILE] [--out FILE]
 *
 * Phase 1, registration: peers P<I> .. P<I+N-1>, R per second (default
 *   1000) on a fixed schedule (open loop: a slow answer does not slow the
 *   next start).  Each is a real peer's exchange: TCP connect, ServerHello,
 *   Register signed with the bench key, RegisterResult, then UdpBind from
 *   its own UDP socket and the challenge round trip until UdpBound.
 *   Latency: connect start -> UdpBound (registered and UDP-bound).
 *   Prints "ready registered=N ..." when all are, then waits for FILE (--go)
 *   to exist, so that several processes start phase 2 together.
 * Phase 2, S seconds (default 60): C ConnectRequests per second (default
 *   500), from its own peers in turn, each to a peer drawn at random from
 *   P0 .. P<T-1> (registered by any process), transport auto.  Latency:
 *   ConnectRequest sent -> the caller's PunchStart.  Every peer stays
 *   registered: a TCP Keepalive and a UdpBind every KA_S s (default 15).
 *   Then 3 s for late answers, and the counters:
 *   "done reg_ok=N ... connects=N punch_caller=N punch_callee=N errors=N ..."
 * --out FILE gets one line per event, for the driver to merge processes:
 *   "r MS" a registration's latency, "c MS" a connect's, "C SID" a session
 *   the caller saw start, "E SID" one the callee saw start, "x CODE" an
 *   error answer.
 * --end FILE: after the "done" line, stay registered (keepalives) until
 *   FILE exists, so the driver can count the server's peers first.
 * Any unexpected message, closed connection or failed registration is
 * counted (reg_fail, closed, unexpected), never ignored. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_peer.h"
#include "timeutil.h"

#define INBUF 2048 /* per connection: partial frames (Candidates is the largest, < 1 KiB) */

enum state { ST_FREE, ST_HELLO, ST_RESULT, ST_UDP, ST_READY, ST_DEAD };

typedef struct rpeer {
    int fd, udp;
    uint8_t st;
    uint16_t have;
    uint64_t token, challenge;
    uint64_t t_start_us;
    uint64_t next_ms;      /* ST_UDP: UdpBind retransmission; ST_READY: keepalive */
    uint8_t in[INBUF];
} rpeer;

typedef struct pending {   /* a ConnectRequest waiting for its PunchStart */
    uint64_t sent_us;
    bool open;
} pending;

static struct {
    netaddr srv;
    int ep;
    rpeer *p;
    size_t n, first, total;
    char prefix[24];
    size_t opened, bound;
    uint64_t reg_fail, closed, unexpected;
    uint64_t keepalives, echoed, udpbinds, udpbound;
    uint64_t connects, punch_caller, punch_callee, incoming, cand_caller, cand_callee;
    uint64_t relay_offered, errors;
    uint64_t err_code[32];
    pending *pend;         /* by request id (one id space per process) */
    size_t npend;
    double *reg_ms, *con_ms;
    size_t nreg, ncon;
    FILE *out;
} g;

static uint64_t now_us(void)
{
    return time_now_us();
}

static void add_sample(double **a, size_t *n, size_t cap, double v)
{
    if (*n < cap)
        (*a)[(*n)++] = v;
}

static int cmp_d(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* "p50=.. p95=.. p99=.. max=.." of n samples (sorted in place) */
static void pct(const char *name, double *a, size_t n)
{
    if (!n) {
        printf(" %s_n=0", name);
        return;
    }
    qsort(a, n, sizeof(*a), cmp_d);
#define Q(q) a[(size_t)((double)(n - 1) * (q))]
    printf(" %s_n=%zu %s_p50_ms=%.2f %s_p95_ms=%.2f %s_p99_ms=%.2f %s_max_ms=%.2f", name, n, name,
           Q(0.50), name, Q(0.95), name, Q(0.99), name, a[n - 1]);
#undef Q
}

static void peer_name(size_t i, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s%zu", g.prefix, i);
}

static void fail_peer(rpeer *c, const char *what)
{
    if (c->st == ST_DEAD)
        return;
    if (c->st != ST_READY)
        g.reg_fail++;
    else
        g.closed++;
    fprintf(stderr, "punchline-rz-load: peer %s%zu: %s\n", g.prefix, g.first + (size_t)(c - g.p),
            what);
    if (c->fd >= 0)
        close(c->fd);
    if (c->udp >= 0)
        close(c->udp);
    c->fd = c->udp = -1;
    c->st = ST_DEAD;
}

static void send_env(rpeer *c, Punchline__Envelope *env)
{
    uint8_t buf[FRAME_HEADER + 512];
    int n = wire_encode(env, buf + FRAME_HEADER, sizeof(buf) - FRAME_HEADER);
    if (n < 0)
        bench_die("encode");
    frame_put_header(buf, (uint32_t)n);
    if (send(c->fd, buf, (size_t)n + FRAME_HEADER, MSG_NOSIGNAL) != n + FRAME_HEADER)
        fail_peer(c, "send on the control connection");
}

static void send_udp_bind(rpeer *c)
{
    uint8_t b[WIRE_UDPBIND_MIN + 16];
    int n = wire_encode_udp_bind(c->token, c->challenge, b, sizeof(b));
    if (n <= 0)
        bench_die("encode");
    send(c->udp, b, (size_t)n, 0); /* a loss is retransmitted by the sweep */
    g.udpbinds++;
}

static void open_peer(rpeer *c)
{
    c->fd = socket(g.srv.u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        bench_die("socket (raise ulimit -n, or split the peers over processes)");
    if (connect(c->fd, &g.srv.u.sa, g.srv.len) < 0 && errno != EINPROGRESS)
        bench_die("connect to the rendezvous");
    c->udp = -1;
    c->st = ST_HELLO;
    c->have = 0;
    c->t_start_us = now_us();
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)(c - g.p) << 1};
    if (epoll_ctl(g.ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        bench_die("epoll_ctl");
    g.opened++;
}

static void count_error(const Punchline__Error *e)
{
    g.errors++;
    g.err_code[(unsigned)e->code < 32 ? (unsigned)e->code : 0]++;
    if (g.out)
        fprintf(g.out, "x %d\n", (int)e->code);
    if (e->request_id && e->request_id <= g.npend && g.pend[e->request_id - 1].open)
        g.pend[e->request_id - 1].open = false;
}

/* One frame on c's control connection. */
static void on_frame(rpeer *c, const uint8_t *body, size_t len)
{
    Punchline__Envelope *e = NULL;
    if (wire_decode(body, len, &e, NULL) != WIRE_OK) {
        fail_peer(c, "undecodable frame");
        return;
    }
    switch (c->st) {
    case ST_HELLO:
        if (e->body_case != PUNCHLINE__ENVELOPE__BODY_SERVER_HELLO ||
            e->server_hello->nonce.len != WIRE_NONCE_LEN) {
            fail_peer(c, "expected ServerHello");
            break;
        } else {
            char name[64];
            peer_name(g.first + (size_t)(c - g.p), name, sizeof(name));
            uint8_t frame[FRAME_HEADER + 512];
            size_t fl = bench_register_frame(e->server_hello->nonce.data, name, "punchline-rz-load",
                                             frame, sizeof(frame));
            if (send(c->fd, frame, fl, MSG_NOSIGNAL) != (ssize_t)fl) {
                fail_peer(c, "send Register");
                break;
            }
            c->st = ST_RESULT;
        }
        break;
    case ST_RESULT:
        if (e->body_case != PUNCHLINE__ENVELOPE__BODY_REGISTER_RESULT) {
            char why[300];
            snprintf(why, sizeof(why), "expected RegisterResult, got %s%s%s", wire_body_name(e),
                     e->body_case == PUNCHLINE__ENVELOPE__BODY_ERROR ? ": " : "",
                     e->body_case == PUNCHLINE__ENVELOPE__BODY_ERROR ? e->error->text : "");
            fail_peer(c, why);
            break;
        }
        c->token = e->register_result->udp_token;
        c->udp = socket(g.srv.u.sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->udp < 0 || connect(c->udp, &g.srv.u.sa, g.srv.len) < 0)
            bench_die("UDP socket (raise ulimit -n, or split the peers over processes)");
        {
            struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)(c - g.p) << 1 | 1};
            if (epoll_ctl(g.ep, EPOLL_CTL_ADD, c->udp, &ev) < 0)
                bench_die("epoll_ctl");
        }
        c->challenge = 0;
        send_udp_bind(c);
        c->st = ST_UDP;
        c->next_ms = time_now_ms() + 1000;
        break;
    default: /* registered: keepalive echoes and session messages */
        switch (e->body_case) {
        case PUNCHLINE__ENVELOPE__BODY_KEEPALIVE:
            g.echoed++;
            break;
        case PUNCHLINE__ENVELOPE__BODY_UDP_BOUND:
            break; /* also sent over TCP after an address change: not here */
        case PUNCHLINE__ENVELOPE__BODY_INCOMING:
            g.incoming++;
            break;
        case PUNCHLINE__ENVELOPE__BODY_CANDIDATES: {
            const Punchline__Candidates *m = e->candidates;
            if (m->request_id)
                g.cand_caller++;
            else
                g.cand_callee++;
            for (size_t i = 0; i < m->n_candidates; i++)
                if (m->request_id && m->candidates[i]->kind == PUNCHLINE__CANDIDATE_KIND__RELAY) {
                    g.relay_offered++;
                    break;
                }
            break;
        }
        case PUNCHLINE__ENVELOPE__BODY_PUNCH_START: {
            const Punchline__PunchStart *m = e->punch_start;
            if (m->role == PUNCHLINE__ROLE__CONTROLLING) {
                uint32_t rid = m->request_id;
                if (!rid || rid > g.npend || !g.pend[rid - 1].open) {
                    g.unexpected++;
                    break;
                }
                g.pend[rid - 1].open = false;
                g.punch_caller++;
                double ms = (double)(now_us() - g.pend[rid - 1].sent_us) / 1000.0;
                add_sample(&g.con_ms, &g.ncon, g.npend, ms);
                if (g.out)
                    fprintf(g.out, "c %.3f\nC %016llx\n", ms, (unsigned long long)m->session_id);
            } else {
                g.punch_callee++;
                if (g.out)
                    fprintf(g.out, "E %016llx\n", (unsigned long long)m->session_id);
            }
            break;
        }
        case PUNCHLINE__ENVELOPE__BODY_ERROR:
            count_error(e->error);
            break;
        default:
            g.unexpected++;
            break;
        }
    }
    wire_free(e);
}

static void on_tcp(rpeer *c)
{
    for (;;) {
        size_t space = INBUF - c->have;
        ssize_t n = recv(c->fd, c->in + c->have, space, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            fail_peer(c, n == 0 ? "closed by the server" : strerror(errno));
            return;
        }
        c->have += (uint16_t)n;
        size_t off = 0;
        while (c->have - off >= FRAME_HEADER) {
            const uint8_t *b = c->in + off;
            size_t body = (size_t)b[0] << 24 | (size_t)b[1] << 16 | (size_t)b[2] << 8 | b[3];
            if (!body || FRAME_HEADER + body > INBUF) {
                fail_peer(c, "bad frame length");
                return;
            }
            if (c->have - off < FRAME_HEADER + body)
                break;
            on_frame(c, b + FRAME_HEADER, body);
            if (c->st == ST_DEAD)
                return;
            off += FRAME_HEADER + body;
        }
        memmove(c->in, c->in + off, c->have - off);
        c->have -= (uint16_t)off;
        if ((size_t)n < space)
            return;
    }
}

static void on_udp(rpeer *c)
{
    uint8_t b[WIRE_UDP_MAX];
    ssize_t n;
    while ((n = recv(c->udp, b, sizeof(b), 0)) > 0) {
        Punchline__Envelope *e = NULL;
        if (wire_decode_udp(b, (size_t)n, &e, NULL) != WIRE_OK)
            continue;
        if (e->body_case == PUNCHLINE__ENVELOPE__BODY_UDP_BOUND) {
            g.udpbound++;
            c->challenge = e->udp_bound->challenge;
            if (c->challenge) {
                send_udp_bind(c); /* prove we receive here */
            } else if (c->st == ST_UDP) {
                c->st = ST_READY;
                c->next_ms = time_now_ms() + 15000;
                g.bound++;
                double ms = (double)(now_us() - c->t_start_us) / 1000.0;
                add_sample(&g.reg_ms, &g.nreg, g.n, ms);
                if (g.out)
                    fprintf(g.out, "r %.3f\n", ms);
            }
        }
        wire_free(e);
    }
}

static void poll_once(int timeout_ms)
{
    struct epoll_event evs[256];
    int k = epoll_wait(g.ep, evs, 256, timeout_ms);
    for (int i = 0; i < k; i++) {
        rpeer *c = &g.p[evs[i].data.u64 >> 1];
        if (c->st == ST_FREE || c->st == ST_DEAD)
            continue;
        if (evs[i].data.u64 & 1)
            on_udp(c);
        else
            on_tcp(c);
    }
}

/* UdpBind retransmissions and keepalives that are due */
static void sweep(uint64_t now, uint64_t ka_ms)
{
    for (size_t i = 0; i < g.n; i++) {
        rpeer *c = &g.p[i];
        if (c->st == ST_UDP && now >= c->next_ms) {
            send_udp_bind(c);
            c->next_ms = now + 1000;
        } else if (c->st == ST_READY && now >= c->next_ms) {
            Punchline__Keepalive k = PUNCHLINE__KEEPALIVE__INIT;
            Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
            env.body_case = PUNCHLINE__ENVELOPE__BODY_KEEPALIVE;
            env.keepalive = &k;
            send_env(c, &env);
            g.keepalives++;
            c->challenge = 0;
            if (c->udp >= 0)
                send_udp_bind(c);
            c->next_ms = now + ka_ms;
        }
    }
}

/* Keep every peer registered (answers, keepalives) until `file` exists;
 * returns at once without a file. */
static void idle_until(const char *file, uint64_t *last_sweep, uint64_t ka_ms)
{
    struct stat st;
    while (file && stat(file, &st) != 0) {
        poll_once(50);
        uint64_t now = time_now_ms();
        if (now - *last_sweep >= 100) {
            sweep(now, ka_ms);
            *last_sweep = now;
        }
    }
}

static uint64_t rnd64(void)
{
    static uint64_t s;
    if (!s && getrandom(&s, sizeof(s), 0) != sizeof(s))
        bench_die("getrandom");
    s ^= s << 13, s ^= s >> 7, s ^= s << 17; /* xorshift64 */
    return s;
}

static int usage(void)
{
    fprintf(stderr,
            "Usage: punchline-rz-load HOST:PORT --prefix P --first I --count N --total T\n"
            "           [--reg-rate R] [--connect-rate C] [--seconds S] [--keepalive KA_S]\n"
            "           [--go FILE] [--end FILE] [--out FILE]\n");
    return 2;
}

int main(int argc, char **argv)
{
    bench_prog = "punchline-rz-load";
    double reg_rate = 1000, con_rate = 500, seconds = 60, ka_s = 15;
    const char *go = NULL, *endf = NULL, *outp = NULL;
    if (argc < 2 || netaddr_parse(argv[1], &g.srv, false) != 0)
        return usage();
    snprintf(g.prefix, sizeof(g.prefix), "ld-");
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        i++;
        if (!strcmp(a, "--prefix"))
            snprintf(g.prefix, sizeof(g.prefix), "%s", v);
        else if (!strcmp(a, "--first"))
            g.first = (size_t)atol(v);
        else if (!strcmp(a, "--count"))
            g.n = (size_t)atol(v);
        else if (!strcmp(a, "--total"))
            g.total = (size_t)atol(v);
        else if (!strcmp(a, "--reg-rate"))
            reg_rate = atof(v);
        else if (!strcmp(a, "--connect-rate"))
            con_rate = atof(v);
        else if (!strcmp(a, "--seconds"))
            seconds = atof(v);
        else if (!strcmp(a, "--keepalive"))
            ka_s = atof(v);
        else if (!strcmp(a, "--go"))
            go = v;
        else if (!strcmp(a, "--end"))
            endf = v;
        else if (!strcmp(a, "--out"))
            outp = v;
        else
            return usage();
    }
    if (!g.n || g.total < 2 || g.first + g.n > g.total || reg_rate <= 0 || con_rate < 0 ||
        seconds < 0 || ka_s <= 0)
        return usage();
    bench_raise_nofile(2 * g.n + 32);
    signal(SIGPIPE, SIG_IGN);
    if (outp && !(g.out = fopen(outp, "w")))
        bench_die("--out");
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    g.p = calloc(g.n, sizeof(*g.p));
    g.npend = (size_t)(con_rate * seconds) + 16;
    g.pend = calloc(g.npend, sizeof(*g.pend));
    g.reg_ms = calloc(g.n, sizeof(double));
    g.con_ms = calloc(g.npend, sizeof(double));
    if (g.ep < 0 || !g.p || !g.pend || !g.reg_ms || !g.con_ms)
        bench_die("setup");
    for (size_t i = 0; i < g.n; i++)
        g.p[i].fd = g.p[i].udp = -1;
    uint64_t ka_ms = (uint64_t)(ka_s * 1000);

    /* phase 1: registrations on a fixed schedule */
    uint64_t t0 = time_now_us(), last_sweep = time_now_ms();
    while (g.bound + g.reg_fail < g.n) {
        uint64_t due = (uint64_t)((double)(time_now_us() - t0) * reg_rate / 1e6) + 1;
        while (g.opened < g.n && g.opened < due)
            open_peer(&g.p[g.opened]);
        poll_once(1);
        uint64_t now = time_now_ms();
        if (now - last_sweep >= 100) {
            sweep(now, ka_ms);
            last_sweep = now;
        }
        if (time_now_us() - t0 > 600000000ull) {
            errno = 0;
            bench_die("registration took over 10 minutes");
        }
    }
    double reg_s = (double)(time_now_us() - t0) / 1e6;
    printf("ready registered=%zu reg_fail=%llu seconds=%.2f\n", g.bound,
           (unsigned long long)g.reg_fail, reg_s);
    fflush(stdout);
    idle_until(go, &last_sweep, ka_ms); /* until the driver says every process is ready */

    /* phase 2: connects at a fixed rate, keepalives, then late answers */
    uint64_t c0 = time_now_us(), end = c0 + (uint64_t)(seconds * 1e6), drain = end + 3000000;
    size_t next_caller = 0;
    for (uint64_t now = c0; now < drain; now = time_now_us()) {
        uint64_t due = now < end ? (uint64_t)((double)(now - c0) * con_rate / 1e6) + 1 : g.connects;
        while (g.connects < due && g.connects < g.npend) {
            rpeer *c = NULL;
            for (size_t k = 0; k < g.n && !c; k++) { /* next live peer */
                rpeer *x = &g.p[next_caller];
                next_caller = (next_caller + 1) % g.n;
                if (x->st == ST_READY)
                    c = x;
            }
            if (!c)
                bench_die("no live peer left to call from");
            size_t me = g.first + (size_t)(c - g.p), to;
            do
                to = (size_t)(rnd64() % g.total);
            while (to == me);
            char name[64];
            peer_name(to, name, sizeof(name));
            Punchline__ConnectRequest cr = PUNCHLINE__CONNECT_REQUEST__INIT;
            cr.peer_name = name;
            cr.request_id = (uint32_t)(++g.connects);
            Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
            env.body_case = PUNCHLINE__ENVELOPE__BODY_CONNECT_REQUEST;
            env.connect_request = &cr;
            g.pend[cr.request_id - 1] = (pending){.sent_us = time_now_us(), .open = true};
            send_env(c, &env);
        }
        poll_once(1);
        uint64_t ms = time_now_ms();
        if (ms - last_sweep >= 100) {
            sweep(ms, ka_ms);
            last_sweep = ms;
        }
    }
    size_t open = 0;
    for (size_t i = 0; i < g.connects; i++)
        open += g.pend[i].open;
    printf("done peers=%zu reg_ok=%zu reg_fail=%llu closed=%llu unexpected=%llu connects=%llu "
           "punch_caller=%llu punch_callee=%llu incoming=%llu cand_caller=%llu cand_callee=%llu "
           "relay_offered=%llu unanswered=%zu errors=%llu",
           g.n, g.bound, (unsigned long long)g.reg_fail, (unsigned long long)g.closed,
           (unsigned long long)g.unexpected, (unsigned long long)g.connects,
           (unsigned long long)g.punch_caller, (unsigned long long)g.punch_callee,
           (unsigned long long)g.incoming, (unsigned long long)g.cand_caller,
           (unsigned long long)g.cand_callee, (unsigned long long)g.relay_offered, open,
           (unsigned long long)g.errors);
    for (int i = 0; i < 32; i++)
        if (g.err_code[i])
            printf(" err%d=%llu", i, (unsigned long long)g.err_code[i]);
    printf(" keepalives=%llu echoed=%llu udpbind=%llu udpbound=%llu reg_seconds=%.2f",
           (unsigned long long)g.keepalives, (unsigned long long)g.echoed,
           (unsigned long long)g.udpbinds, (unsigned long long)g.udpbound, reg_s);
    pct("reg", g.reg_ms, g.nreg);
    pct("connect", g.con_ms, g.ncon);
    printf("\n");
    fflush(stdout);
    if (g.out)
        fclose(g.out);
    idle_until(endf, &last_sweep, ka_ms); /* stay registered until the driver has looked */
    bool ok = !g.reg_fail && !g.closed && !g.unexpected && !g.errors && !open &&
              g.punch_caller == g.connects;
    return ok ? 0 : 1;
}
