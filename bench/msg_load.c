/* punchline-msg-load: request/response load generator for the rendezvous
 * UDP port (bench/rendezvous_rate.sh).
 *
 *   punchline-msg-load HOST:PORT SECONDS stun|udpbind [WINDOW]
 *
 * stun     STUN Binding requests (RFC 8489: 20-byte header, random
 *          transaction id); works against any STUN server (coturn too).
 * udpbind  registers a peer (Register, UdpBind with its challenge), then
 *          sends UdpBind refreshes, punchline's UDP keepalive, each answered
 *          with UdpBound.
 * Keeps WINDOW requests in flight (default 256) with sendmmsg/recvmmsg
 * batches, so the figure is the server's answer rate, not socket drops.
 * Prints: mode=M sent=N answered=N seconds=S rate=N (answers per second).
 *
 * TCP modes (bench/msg_load_tcp.c): register, keepalive, stun-tcp, hold. */
#define _GNU_SOURCE
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_peer.h"
#include "msg_load.h"
#include "timeutil.h"

#define BATCH 32

int main(int argc, char **argv)
{
    bench_prog = "punchline-msg-load";
    if (argc < 4 || (strcmp(argv[3], "stun") && strcmp(argv[3], "udpbind") &&
                     !msg_load_tcp_mode(argv[3]))) {
        fprintf(stderr, "Usage: punchline-msg-load HOST:PORT SECONDS stun|udpbind [WINDOW]\n"
                        "       punchline-msg-load HOST:PORT SECONDS register [WINDOW]\n"
                        "       punchline-msg-load HOST:PORT SECONDS keepalive|stun-tcp [CONNS [DEPTH]]\n"
                        "       punchline-msg-load HOST:PORT SECONDS hold N [tcp|udp] [KA_S [WINDOW]]\n");
        return 2;
    }
    netaddr srv;
    if (netaddr_parse(argv[1], &srv, false) != 0) {
        fprintf(stderr, "punchline-msg-load: bad address '%s'\n", argv[1]);
        return 2;
    }
    double seconds = atof(argv[2]);
    if (msg_load_tcp_mode(argv[3])) {
        if (seconds <= 0) {
            fprintf(stderr, "punchline-msg-load: SECONDS > 0\n");
            return 2;
        }
        return msg_load_tcp(&srv, seconds, argv[3], argc - 4, argv + 4);
    }
    bool stun = !strcmp(argv[3], "stun");
    int window = argc > 4 ? atoi(argv[4]) : 256;
    if (seconds <= 0 || window < BATCH) {
        fprintf(stderr, "punchline-msg-load: SECONDS > 0, WINDOW >= %d\n", BATCH);
        return 2;
    }
    static uint8_t req[BATCH][64];
    size_t len;
    int fd;
    bench_peer p;
    if (stun) {
        fd = socket(AF_INET, SOCK_DGRAM, 0);
        int big = 4 << 20;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
        len = 20;
        for (int i = 0; i < BATCH; i++) {
            req[i][0] = 0x00, req[i][1] = 0x01, req[i][2] = 0, req[i][3] = 0; /* Binding, length 0 */
            req[i][4] = 0x21, req[i][5] = 0x12, req[i][6] = 0xA4, req[i][7] = 0x42;
            if (getrandom(req[i] + 8, 12, 0) != 12)
                bench_die("getrandom");
        }
    } else {
        char name[32];
        snprintf(name, sizeof(name), "msg-load-%d", (int)getpid());
        bench_register(&p, &srv, name);
        fd = p.udp;
        /* padded like a real peer's, or the server does not answer it */
        int n = wire_encode_udp_bind(p.token, 0, req[0], sizeof(req[0]));
        if (n <= 0)
            bench_die("encode");
        len = (size_t)n;
        for (int i = 1; i < BATCH; i++)
            memcpy(req[i], req[0], len);
    }
    struct mmsghdr sm[BATCH], rm[BATCH];
    struct iovec sio[BATCH], rio[BATCH];
    static uint8_t rbuf[BATCH][512];
    for (int i = 0; i < BATCH; i++) {
        sio[i] = (struct iovec){.iov_base = req[i], .iov_len = len};
        sm[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &srv.u.sa, .msg_namelen = srv.len,
                                              .msg_iov = &sio[i], .msg_iovlen = 1}};
        rio[i] = (struct iovec){.iov_base = rbuf[i], .iov_len = sizeof(rbuf[i])};
        rm[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &rio[i], .msg_iovlen = 1}};
    }
    uint64_t sent = 0, answered = 0, lost = 0, stall = 0;
    uint64_t t0 = time_now_ms(), end = t0 + (uint64_t)(seconds * 1000);
    for (uint64_t now = t0; now < end; now = time_now_ms()) {
        uint64_t inflight = sent - answered - lost;
        if (inflight + BATCH <= (uint64_t)window) {
            int n = sendmmsg(fd, sm, BATCH, MSG_DONTWAIT);
            if (n > 0)
                sent += (uint64_t)n;
        }
        int r = recvmmsg(fd, rm, BATCH, MSG_DONTWAIT, NULL);
        if (r > 0) {
            answered += (uint64_t)r;
            stall = 0;
        } else if (inflight + BATCH > (uint64_t)window) {
            if (!stall)
                stall = now;
            else if (now - stall > 20) { /* dropped somewhere: write them off */
                lost = sent - answered;
                stall = 0;
            }
            struct pollfd pf = {.fd = fd, .events = POLLIN};
            poll(&pf, 1, 1);
        }
    }
    double secs = (double)(time_now_ms() - t0) / 1000.0;
    printf("mode=%s sent=%llu answered=%llu seconds=%.2f rate=%.0f\n", argv[3],
           (unsigned long long)sent, (unsigned long long)answered, secs, (double)answered / secs);
    return 0;
}
