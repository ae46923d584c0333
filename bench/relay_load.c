/* punchline-relay-load: load generator for the rendezvous UDP relay
 * (bench/relay_cost.sh).  Registers two peers at the rendezvous over the
 * real protocol (Register, UdpBind, ConnectRequest), takes the session id
 * from PunchStart, then sends relayed datagrams (0x0D | session id | 0x0C
 * payload) from peer A's UDP socket as fast as the relay forwards them to
 * peer B, keeping at most WINDOW datagrams in flight so the measurement is
 * the relay's forwarding rate, not socket-buffer drops.  Batched with
 * sendmmsg/recvmmsg so the generator is cheaper per packet than the server.
 *
 *   punchline-relay-load [--raw] HOST:PORT SECONDS [PAYLOAD_BYTES] [WINDOW] [PPS]
 *
 * --raw: no punchline at all: two plain UDP sockets say hello to HOST:PORT
 * (punchline-udp-forward, the floor under any relay) and the same load
 * runs through it.
 *
 * PPS > 0 paces the sending to about that many datagrams per second (to
 * compare CPU per packet with another relay at the same load); 0 or absent
 * sends as fast as the window allows (saturation).
 *
 * Prints one line: sent=N received=N seconds=S pps=N mbit=N (payload bits,
 * received per second of load) payload=N window=N. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_peer.h"
#include "timeutil.h"

#define BATCH 64

static netaddr srv;

int main(int argc, char **argv)
{
    bench_prog = "punchline-relay-load";
    bool raw = argc > 1 && !strcmp(argv[1], "--raw");
    if (raw) {
        argv++;
        argc--;
    }
    if (argc < 3 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fprintf(argc < 3 ? stderr : stdout,
                "Usage: punchline-relay-load [--raw] HOST:PORT SECONDS [PAYLOAD_BYTES] [WINDOW] [PPS]\n"
                "Load generator for the rendezvous UDP relay (bench/relay_cost.sh).\n");
        return argc < 3 ? 2 : 0;
    }
    if (netaddr_parse(argv[1], &srv, false) != 0) {
        fprintf(stderr, "punchline-relay-load: bad address '%s'\n", argv[1]);
        return 2;
    }
    double seconds = atof(argv[2]);
    size_t payload = argc > 3 ? (size_t)atoi(argv[3]) : 100;
    int window = argc > 4 ? atoi(argv[4]) : 2048;
    double pps = argc > 5 ? atof(argv[5]) : 0;
    if (seconds <= 0 || payload < 1 || payload > WIRE_UDP_MAX - 1 || window < BATCH || pps < 0) {
        fprintf(stderr, "punchline-relay-load: SECONDS > 0, PAYLOAD_BYTES 1..%d, WINDOW >= %d, PPS >= 0\n",
                WIRE_UDP_MAX - 1, BATCH);
        return 2;
    }
    char na[32], nb[32];
    snprintf(na, sizeof(na), "load-a-%d", (int)getpid());
    snprintf(nb, sizeof(nb), "load-b-%d", (int)getpid());
    bench_peer a = {.tcp = -1}, b = {.tcp = -1};
    uint64_t sid = 0;
    if (raw) {
        /* the forwarder pairs the first two senders: a, then b */
        a.udp = socket(AF_INET, SOCK_DGRAM, 0);
        b.udp = socket(AF_INET, SOCK_DGRAM, 0);
        int big = 4 << 20;
        setsockopt(b.udp, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
        sendto(a.udp, "a", 1, 0, &srv.u.sa, srv.len);
        usleep(20000);
        sendto(b.udp, "b", 1, 0, &srv.u.sa, srv.len);
        usleep(20000);
        char junk[8];
        while (recv(b.udp, junk, sizeof(junk), MSG_DONTWAIT) > 0)
            ; /* a's hello, forwarded */
        goto load;
    }
    bench_register(&a, &srv, na);
    bench_register(&b, &srv, nb);

    Punchline__ConnectRequest cr = PUNCHLINE__CONNECT_REQUEST__INIT;
    cr.peer_name = nb;
    cr.request_id = 1;
    cr.transport = PUNCHLINE__TRANSPORT__TRANSPORT_RELAY;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_CONNECT_REQUEST;
    env.connect_request = &cr;
    bench_send_frame(a.tcp, &env);
    wire_free(bench_expect(a.tcp, &a.fr, PUNCHLINE__ENVELOPE__BODY_CANDIDATES));
    Punchline__Envelope *ps = bench_expect(a.tcp, &a.fr, PUNCHLINE__ENVELOPE__BODY_PUNCH_START);
    sid = ps->punch_start->session_id;
    wire_free(ps);
load:;

    size_t len = WIRE_RELAY_HDR + 1 + payload;
    static uint8_t out[WIRE_RELAY_HDR + WIRE_UDP_MAX];
    wire_relay_header(out, sid);
    out[WIRE_RELAY_HDR] = WIRE_UDP_MARKER;
    memset(out + WIRE_RELAY_HDR + 1, 0x5a, payload);
    struct mmsghdr sm[BATCH], rm[BATCH];
    struct iovec sio[BATCH], rio[BATCH];
    static uint8_t rbuf[BATCH][WIRE_RELAY_HDR + WIRE_UDP_MAX];
    for (int i = 0; i < BATCH; i++) {
        sio[i] = (struct iovec){.iov_base = out, .iov_len = len};
        sm[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &srv.u.sa, .msg_namelen = srv.len,
                                              .msg_iov = &sio[i], .msg_iovlen = 1}};
        rio[i] = (struct iovec){.iov_base = rbuf[i], .iov_len = sizeof(rbuf[i])};
        rm[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &rio[i], .msg_iovlen = 1}};
    }
    uint64_t sent = 0, arrived = 0, lost = 0, stall_since = 0;
    uint64_t t0 = time_now_ms(), end = t0 + (uint64_t)(seconds * 1000);
    for (uint64_t now = t0; now < end; now = time_now_ms()) {
        uint64_t inflight = sent - arrived - lost;
        /* paced: send 8 at a time, no further ahead than the schedule */
        int burst = pps > 0 ? 8 : BATCH;
        bool due = pps <= 0 || (double)sent < (double)(now - t0) / 1000.0 * pps;
        if (due && inflight + BATCH <= (uint64_t)window) {
            int n = sendmmsg(a.udp, sm, (unsigned)burst, MSG_DONTWAIT);
            if (n > 0)
                sent += (uint64_t)n;
        }
        int r = recvmmsg(b.udp, rm, BATCH, MSG_DONTWAIT, NULL);
        if (r > 0) {
            arrived += (uint64_t)r;
            stall_since = 0;
        } else if (pps > 0 && !due) {
            struct pollfd pf = {.fd = b.udp, .events = POLLIN};
            poll(&pf, 1, 1); /* ahead of the schedule: wait for the relay */
        } else if (inflight + BATCH > (uint64_t)window) {
            /* window full and nothing arrives: the relay dropped some;
             * after 20 ms of silence, write them off and go on */
            if (!stall_since) {
                stall_since = now;
            } else if (now - stall_since > 20) {
                lost = sent - arrived;
                stall_since = 0;
            }
            struct pollfd pf = {.fd = b.udp, .events = POLLIN};
            poll(&pf, 1, 1);
        }
    }
    double secs = (double)(time_now_ms() - t0) / 1000.0;
    /* what is still on its way */
    for (;;) {
        struct pollfd pf = {.fd = b.udp, .events = POLLIN};
        if (poll(&pf, 1, 100) <= 0)
            break;
        int r = recvmmsg(b.udp, rm, BATCH, MSG_DONTWAIT, NULL);
        if (r > 0)
            arrived += (uint64_t)r;
    }
    printf("sent=%llu received=%llu seconds=%.2f pps=%.0f mbit=%.1f payload=%zu window=%d\n",
           (unsigned long long)sent, (unsigned long long)arrived, secs, (double)arrived / secs,
           (double)arrived * (double)payload * 8 / secs / 1e6, payload, window);
    if (!raw)
        close(a.tcp), close(b.tcp);
    close(a.udp), close(b.udp);
    return 0;
}
