/* punchline-test-flood: hostile load against a running punchline-rendezvous,
 * for tests/integration/test_rendezvous_limits.sh.  Loopback only (sources
 * 127.0.0.x), bounded in count and time, exits by itself.
 *
 *   punchline-test-flood hold ADDR N MS     open N TCP connections, hold them MS
 *                                           ms (never reading), close, exit 0
 *   punchline-test-flood hello ADDR MS      exit 0 if a new connection gets its
 *                                           ServerHello within MS ms
 *   punchline-test-flood stun ADDR MS       exit 0 if a STUN Binding request is
 *                                           answered within MS ms
 *   punchline-test-flood mixed ADDR MS      for MS ms: registrations from 200
 *                                           sources (with --max-peers below their
 *                                           number: SERVER_FULL too), each flooding
 *                                           ConnectRequests and Keepalives without
 *                                           reading a reply; slowloris connections
 *                                           holding a 4 KiB frame (the largest
 *                                           before registration) short of its last
 *                                           byte; UDP garbage, STUN, unknown
 *                                           relay sessions and UdpBinds.  Two
 *                                           honest peers registered before it must
 *                                           then get a Keepalive echoed and a
 *                                           connect request paired with a relay
 *                                           offered: exit 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "bench_peer.h"
#include "frame.h"
#include "stun.h"
#include "timeutil.h"
#include "wire.h"

static netaddr srv;

/* A TCP connection from 127.0.0.src (0: any source), blocking, with a
 * receive timeout; -1 if the connection fails. */
static int tcp_from(int src)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (src) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)src)};
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
            close(fd);
            return -1;
        }
    }
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, &srv.u.sa, srv.len) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The next frame on fd (blocking, the socket's timeout); NULL on close,
 * timeout or garbage. */
static Punchline__Envelope *read_env(int fd)
{
    frame_reader fr;
    frame_reader_init(&fr);
    for (;;) {
        uint8_t b[1];
        if (recv(fd, b, 1, 0) != 1)
            break;
        size_t used;
        int st = frame_reader_feed(&fr, b, 1, &used);
        if (st < 0)
            break;
        if (st == FRAME_READY) {
            Punchline__Envelope *e = NULL;
            if (wire_decode(fr.buf, fr.len, &e, NULL) != WIRE_OK)
                e = NULL;
            frame_reader_reset(&fr);
            return e;
        }
    }
    frame_reader_reset(&fr);
    return NULL;
}

static void send_env(int fd, Punchline__Envelope *env)
{
    uint8_t buf[FRAME_HEADER + 256];
    int n = wire_encode(env, buf + FRAME_HEADER, sizeof(buf) - FRAME_HEADER);
    if (n < 0)
        bench_die("encode");
    frame_put_header(buf, (uint32_t)n);
    (void)!send(fd, buf, (size_t)n + FRAME_HEADER, MSG_NOSIGNAL | MSG_DONTWAIT);
}

enum { REG_OK, REG_REFUSED, REG_FAILED };

/* Register name from 127.0.0.src on a new connection; *fd_out keeps the
 * connection on REG_OK.  *code gets the error code of a refusal. */
static int do_register(int src, const char *name, int *fd_out, int *code)
{
    int fd = tcp_from(src);
    if (fd < 0)
        return REG_FAILED;
    Punchline__Envelope *e = read_env(fd);
    if (!e || e->body_case != PUNCHLINE__ENVELOPE__BODY_SERVER_HELLO) {
        *code = e && e->body_case == PUNCHLINE__ENVELOPE__BODY_ERROR ? (int)e->error->code : 0;
        wire_free(e);
        close(fd);
        return *code ? REG_REFUSED : REG_FAILED;
    }
    uint8_t frame[FRAME_HEADER + 512];
    size_t fl = bench_register_frame(e->server_hello->nonce.data, name, "flood", frame, sizeof(frame));
    wire_free(e);
    (void)!send(fd, frame, fl, MSG_NOSIGNAL);
    e = read_env(fd);
    int rc = REG_FAILED;
    if (e && e->body_case == PUNCHLINE__ENVELOPE__BODY_REGISTER_RESULT) {
        rc = REG_OK;
    } else if (e && e->body_case == PUNCHLINE__ENVELOPE__BODY_ERROR) {
        *code = (int)e->error->code;
        rc = REG_REFUSED;
    }
    wire_free(e);
    if (rc == REG_OK)
        *fd_out = fd;
    else
        close(fd);
    return rc;
}

static void send_connect(int fd, const char *peer, uint32_t rid)
{
    Punchline__ConnectRequest cr = PUNCHLINE__CONNECT_REQUEST__INIT;
    cr.peer_name = (char *)peer;
    cr.request_id = rid;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_CONNECT_REQUEST;
    env.connect_request = &cr;
    send_env(fd, &env);
}

static void send_keepalive(int fd)
{
    Punchline__Keepalive ka = PUNCHLINE__KEEPALIVE__INIT;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_KEEPALIVE;
    env.keepalive = &ka;
    send_env(fd, &env);
}

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* One hostile datagram into b; returns its length. */
static size_t udp_junk(uint8_t *b, uint64_t r)
{
    size_t n = 1 + r % 1400;
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(next_rand() >> 32);
    switch (r >> 40 & 7) {
    case 0: /* STUN Binding request, sometimes with junk attributes */
        b[0] = 0, b[1] = 1, b[4] = 0x21, b[5] = 0x12, b[6] = 0xa4, b[7] = 0x42;
        n = STUN_HEADER + 4 * (r >> 20 & 3);
        b[2] = 0, b[3] = (uint8_t)(n - STUN_HEADER);
        break;
    case 1: /* a relayed datagram for a session that does not exist */
        wire_relay_header(b, next_rand());
        b[WIRE_RELAY_HDR] = WIRE_UDP_MARKER;
        break;
    case 2: { /* a padded UdpBind with an unknown token */
        int k = wire_encode_udp_bind(next_rand(), 0, b, 1400);
        n = k > 0 ? (size_t)k : n;
        break;
    }
    case 3: /* a punchline datagram of garbage */
        b[0] = WIRE_UDP_MARKER;
        break;
    case 4: /* the empty datagram */
        n = 0;
        break;
    default: /* anything */
        break;
    }
    return n;
}

static int mode_mixed(int ms)
{
    enum { MAX_REG = 2000, SLOW = 120, SOURCES = 200 };
    static int reg_fd[MAX_REG];
    int nreg = 0, full = 0, refused = 0, failed = 0, slow = 0;
    uint64_t udp = 0, connects = 0;
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    int big = 1 << 20;
    setsockopt(u, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    uint8_t dg[1500];
    /* the largest frame the server reads before registration (4 KiB) */
    enum { PREAUTH_MAX = 4096 };
    static uint8_t partial[FRAME_HEADER + PREAUTH_MAX];
    frame_put_header(partial, PREAUTH_MAX);
    memset(partial + FRAME_HEADER, 0x62, PREAUTH_MAX);

    /* two honest peers, registered before the flood (new registrations may
     * meet a full table during it: SERVER_FULL is the right answer then) */
    int ha = -1, hb = -1, code = 0;
    if (do_register(1, "honest-a", &ha, &code) != REG_OK ||
        do_register(1, "honest-b", &hb, &code) != REG_OK)
        bench_die("registering the honest peers before the flood");
    /* slowloris: the largest frame short of its last byte, from many sources */
    for (int i = 0; i < SLOW; i++) {
        int fd = tcp_from(2 + i % SOURCES);
        if (fd < 0)
            continue;
        if (send(fd, partial, sizeof(partial) - 1, MSG_NOSIGNAL) > 0)
            slow++;
        /* kept open until exit */
    }
    uint64_t end = time_now_ms() + (uint64_t)ms;
    for (int i = 0; time_now_ms() < end; i++) {
        char name[32];
        snprintf(name, sizeof(name), "flood-%d", i);
        int fd = -1;
        code = 0;
        int rc = nreg < MAX_REG ? do_register(2 + i % SOURCES, name, &fd, &code) : REG_FAILED;
        if (rc == REG_OK)
            reg_fd[nreg++] = fd;
        else if (rc == REG_REFUSED && code == PUNCHLINE__ERROR_CODE__SERVER_FULL)
            full++;
        else if (rc == REG_REFUSED)
            refused++;
        else
            failed++;
        /* every registered flooder: connect requests to a random other one
         * (the first burst pairs, the rest are RATE_LIMITED) and keepalives,
         * replies never read */
        if (nreg > 1) {
            int fd2 = reg_fd[next_rand() % (uint64_t)nreg];
            char peer[32];
            snprintf(peer, sizeof(peer), "flood-%d", (int)(next_rand() % (uint64_t)(i + 1)));
            for (int k = 0; k < 30; k++, connects++)
                send_connect(fd2, peer, (uint32_t)k);
            send_keepalive(fd2);
        }
        for (int k = 0; k < 300; k++) {
            size_t n = udp_junk(dg, next_rand());
            if (sendto(u, dg, n, MSG_DONTWAIT, &srv.u.sa, srv.len) >= 0)
                udp++;
        }
    }
    /* the honest peers are still served: a Keepalive echoed, a connect
     * request paired */
    uint64_t t0 = time_now_ms();
    send_keepalive(ha);
    Punchline__Envelope *e = read_env(ha);
    bool ok = e && e->body_case == PUNCHLINE__ENVELOPE__BODY_KEEPALIVE;
    wire_free(e);
    send_connect(ha, "honest-b", 77);
    int relay = 0;
    for (int k = 0; ok && k < 2; k++) {
        e = read_env(ha);
        ok = e && e->body_case == (k ? PUNCHLINE__ENVELOPE__BODY_PUNCH_START
                                     : PUNCHLINE__ENVELOPE__BODY_CANDIDATES);
        for (size_t i = 0; ok && !k && i < e->candidates->n_candidates; i++)
            relay += e->candidates->candidates[i]->kind == PUNCHLINE__CANDIDATE_KIND__RELAY;
        wire_free(e);
    }
    /* the flood filled the relay table with sessions nobody uses: the
     * honest pair must get a relay all the same (--relay-unused) */
    ok = ok && relay > 0;
    e = ok ? read_env(hb) : NULL;
    ok = e && e->body_case == PUNCHLINE__ENVELOPE__BODY_INCOMING;
    wire_free(e);
    printf("flood: registered=%d server_full=%d refused=%d failed=%d slowloris=%d "
           "connect_requests=%llu udp=%llu; honest peers %s (relay candidates %d) in %llu ms\n",
           nreg, full, refused, failed, slow, (unsigned long long)connects,
           (unsigned long long)udp, ok ? "served" : "NOT served", relay,
           (unsigned long long)(time_now_ms() - t0));
    return ok ? 0 : 1;
}

static int mode_hold(int n, int ms)
{
    int *fds = calloc((size_t)n, sizeof(int));
    int ok = 0;
    if (!fds)
        bench_die("calloc");
    for (int i = 0; i < n; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (fds[i] < 0)
            bench_die("socket");
        /* nonblocking: past the server's accepts the kernel's backlog
         * completes the handshakes */
        if (connect(fds[i], &srv.u.sa, srv.len) == 0 || errno == EINPROGRESS)
            ok++;
    }
    printf("hold: %d connections opened\n", ok);
    fflush(stdout);
    usleep((useconds_t)ms * 1000);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
    return 0;
}

static int mode_hello(int ms)
{
    uint64_t end = time_now_ms() + (uint64_t)ms;
    while (time_now_ms() < end) {
        int fd = tcp_from(0);
        if (fd >= 0) {
            Punchline__Envelope *e = read_env(fd);
            bool ok = e && e->body_case == PUNCHLINE__ENVELOPE__BODY_SERVER_HELLO;
            wire_free(e);
            close(fd);
            if (ok)
                return 0;
        }
        usleep(100 * 1000);
    }
    return 1;
}

static int mode_stun(int ms)
{
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    uint8_t req[STUN_HEADER] = {0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    uint64_t end = time_now_ms() + (uint64_t)ms;
    while (time_now_ms() < end) {
        sendto(u, req, sizeof(req), 0, &srv.u.sa, srv.len);
        struct pollfd p = {.fd = u, .events = POLLIN};
        if (poll(&p, 1, 200) > 0) {
            uint8_t in[256];
            ssize_t n = recv(u, in, sizeof(in), 0);
            stun_msg m;
            if (n > 0 && stun_parse(in, (size_t)n, &m) == STUN_OK && m.type == STUN_BINDING_SUCCESS)
                return 0;
        }
    }
    return 1;
}

int main(int argc, char **argv)
{
    bench_prog = "punchline-test-flood";
    if (argc < 4 || netaddr_parse(argv[2], &srv, false) != 0) {
        fprintf(stderr, "usage: punchline-test-flood hold|hello|stun|mixed ADDR:PORT [N] MS\n");
        return 2;
    }
    if (!strcmp(argv[1], "hold") && argc == 5)
        return mode_hold(atoi(argv[3]), atoi(argv[4]));
    if (!strcmp(argv[1], "hello"))
        return mode_hello(atoi(argv[3]));
    if (!strcmp(argv[1], "stun"))
        return mode_stun(atoi(argv[3]));
    if (!strcmp(argv[1], "mixed"))
        return mode_mixed(atoi(argv[3]));
    fprintf(stderr, "punchline-test-flood: unknown mode %s\n", argv[1]);
    return 2;
}
