#define _GNU_SOURCE
#include "bench_peer.h"
#include "identity.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

const char *bench_prog = "punchline-bench";

void bench_die(const char *what)
{
    fprintf(stderr, "%s: %s%s%s\n", bench_prog, what, errno ? ": " : "",
            errno ? strerror(errno) : "");
    exit(1);
}

void bench_send_frame(int fd, Punchline__Envelope *env)
{
    uint8_t buf[FRAME_HEADER + FRAME_MAX];
    int n = wire_encode(env, buf + FRAME_HEADER, FRAME_MAX);
    if (n < 0)
        bench_die("encode");
    frame_put_header(buf, (uint32_t)n);
    if (send(fd, buf, (size_t)n + FRAME_HEADER, MSG_NOSIGNAL) != n + FRAME_HEADER)
        bench_die("send");
}

/* Blocking read of the next envelope on a control connection. */
static Punchline__Envelope *recv_frame(int fd, frame_reader *fr)
{
    for (;;) {
        uint8_t b;
        ssize_t n = recv(fd, &b, 1, 0);
        if (n <= 0)
            bench_die("control connection closed");
        size_t used;
        int st = frame_reader_feed(fr, &b, 1, &used);
        if (st < 0)
            bench_die("bad frame");
        if (st == FRAME_READY) {
            Punchline__Envelope *env = NULL;
            if (wire_decode(fr->buf, fr->len, &env, NULL) != WIRE_OK)
                bench_die("bad message");
            frame_reader_next(fr);
            return env;
        }
    }
}

Punchline__Envelope *bench_expect(int fd, frame_reader *fr, int body)
{
    Punchline__Envelope *e = recv_frame(fd, fr);
    if ((int)e->body_case != body) {
        errno = 0;
        fprintf(stderr, "got %s\n", wire_body_name(e));
        bench_die("unexpected message from the rendezvous");
    }
    return e;
}

identity *bench_key(void)
{
    /* One key for every bench peer: a key may hold any number of names. */
    static identity *key;
    if (!key && !(key = identity_ephemeral()))
        bench_die("identity key");
    return key;
}

size_t bench_register_frame(const uint8_t *nonce, const char *name, const char *client_version,
                            uint8_t *out, size_t cap)
{
    identity *key = bench_key();
    uint8_t msg[sizeof(REGISTER_SIG_LABEL) + WIRE_NONCE_LEN + 64], sig[ID_SIG_MAX];
    size_t ml = wire_register_sig_input(nonce, name, msg, sizeof(msg));
    size_t sl = 0, pl = 0;
    if (!ml || identity_sign(key, msg, ml, sig, &sl) != 0)
        bench_die("signing the registration");
    Punchline__Register reg = PUNCHLINE__REGISTER__INIT;
    reg.name = (char *)name;
    reg.client_version = (char *)client_version;
    reg.public_key.data = (uint8_t *)identity_pub(key, &pl);
    reg.public_key.len = pl;
    reg.signature.data = sig;
    reg.signature.len = sl;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_REGISTER;
    env.register_ = &reg;
    if (cap < FRAME_HEADER)
        bench_die("encode");
    int n = wire_encode(&env, out + FRAME_HEADER, cap - FRAME_HEADER);
    if (n < 0)
        bench_die("encode");
    frame_put_header(out, (uint32_t)n);
    return (size_t)n + FRAME_HEADER;
}

void bench_register(bench_peer *p, const netaddr *srv, const char *name)
{
    p->tcp = socket(AF_INET, SOCK_STREAM, 0);
    if (p->tcp < 0 || connect(p->tcp, &srv->u.sa, srv->len) < 0)
        bench_die("connect to the rendezvous");
    frame_reader_init(&p->fr);
    Punchline__Envelope *hello = bench_expect(p->tcp, &p->fr, PUNCHLINE__ENVELOPE__BODY_SERVER_HELLO);
    uint8_t frame[FRAME_HEADER + 512];
    size_t fl = bench_register_frame(hello->server_hello->nonce.data, name, "punchline-relay-load",
                                     frame, sizeof(frame));
    wire_free(hello);
    if (send(p->tcp, frame, fl, MSG_NOSIGNAL) != (ssize_t)fl)
        bench_die("send");
    Punchline__Envelope *rr = bench_expect(p->tcp, &p->fr, PUNCHLINE__ENVELOPE__BODY_REGISTER_RESULT);
    uint64_t token = rr->register_result->udp_token;
    p->token = token;
    wire_free(rr);

    p->udp = socket(AF_INET, SOCK_DGRAM, 0);
    int big = 4 << 20;
    setsockopt(p->udp, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    setsockopt(p->udp, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    /* UdpBind until a UdpBound without a challenge (echo the challenge);
     * padded, or the server does not answer (PROTOCOL.md 3) */
    uint64_t challenge = 0;
    for (int tries = 0;; tries++) {
        if (tries == 20)
            bench_die("no UdpBound");
        uint8_t buf[WIRE_UDPBIND_MIN + 16];
        int n = wire_encode_udp_bind(token, challenge, buf, sizeof(buf));
        if (n <= 0)
            bench_die("encode");
        sendto(p->udp, buf, (size_t)n, 0, &srv->u.sa, srv->len);
        struct pollfd pf = {.fd = p->udp, .events = POLLIN};
        if (poll(&pf, 1, 200) <= 0)
            continue;
        uint8_t in[WIRE_UDP_MAX];
        ssize_t r = recv(p->udp, in, sizeof(in), 0);
        Punchline__Envelope *rep = NULL;
        if (r <= 0 || wire_decode_udp(in, (size_t)r, &rep, NULL) != WIRE_OK)
            continue;
        uint64_t ch = rep->body_case == PUNCHLINE__ENVELOPE__BODY_UDP_BOUND ? rep->udp_bound->challenge : 0;
        bool bound = rep->body_case == PUNCHLINE__ENVELOPE__BODY_UDP_BOUND && !ch;
        wire_free(rep);
        if (bound)
            break;
        challenge = ch;
    }
}


void bench_raise_nofile(size_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && need > rl.rlim_cur) {
        fprintf(stderr, "%s: needs %zu file descriptors, the limit is %llu: "
                        "split the peers over several processes\n",
                bench_prog, need, (unsigned long long)rl.rlim_cur);
        exit(2);
    }
}
