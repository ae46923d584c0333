/* punchline-udp-forward: the floor under any UDP relay, for
 * bench/relay_cost.sh.  Receives datagrams on one socket and sends each to
 * the other of the first two source addresses it saw (X <-> Y), batched
 * with recvmmsg/sendmmsg like punchline-rendezvous, parsing nothing and
 * checking nothing.  What a relay costs beyond this is its own work.
 *
 *   punchline-udp-forward IP:PORT
 *
 * Runs until SIGTERM/SIGINT. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"

#define BATCH 32

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    stop = 1;
}

int main(int argc, char **argv)
{
    if (argc != 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fprintf(argc != 2 ? stderr : stdout,
                "Usage: punchline-udp-forward IP:PORT\n"
                "Forwards UDP between the first two senders it sees (relay cost floor).\n");
        return argc != 2 ? 2 : 0;
    }
    netaddr at;
    if (netaddr_parse(argv[1], &at, false) != 0) {
        fprintf(stderr, "punchline-udp-forward: bad address '%s'\n", argv[1]);
        return 2;
    }
    int fd = socket(at.u.sa.sa_family, SOCK_DGRAM, 0);
    int big = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    if (fd < 0 || bind(fd, &at.u.sa, at.len) < 0) {
        perror("punchline-udp-forward: bind");
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    struct sockaddr_storage peer[2], from[BATCH];
    int npeers = 0;
    static uint8_t buf[BATCH][2048];
    struct iovec iov[BATCH];
    struct mmsghdr rm[BATCH], sm[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i] = (struct iovec){.iov_base = buf[i], .iov_len = sizeof(buf[i])};
        rm[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &from[i], .msg_iov = &iov[i], .msg_iovlen = 1}};
    }
    while (!stop) {
        for (int i = 0; i < BATCH; i++) {
            rm[i].msg_hdr.msg_namelen = sizeof(from[i]);
            iov[i].iov_len = sizeof(buf[i]);
        }
        int n = recvmmsg(fd, rm, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0)
            continue;
        int k = 0;
        for (int i = 0; i < n; i++) {
            socklen_t fl = rm[i].msg_hdr.msg_namelen;
            int who = -1;
            for (int p = 0; p < npeers; p++)
                if (!memcmp(&peer[p], &from[i], fl))
                    who = p;
            if (who < 0 && npeers < 2) {
                memcpy(&peer[npeers], &from[i], fl);
                who = npeers++;
            }
            if (who < 0 || npeers < 2)
                continue;
            iov[i].iov_len = rm[i].msg_len;
            sm[k] = (struct mmsghdr){.msg_hdr = {.msg_name = &peer[1 - who], .msg_namelen = fl,
                                                 .msg_iov = &iov[i], .msg_iovlen = 1}};
            k++;
        }
        for (int off = 0; off < k;) {
            int s = sendmmsg(fd, sm + off, (unsigned)(k - off), 0);
            if (s <= 0)
                break;
            off += s;
        }
    }
    close(fd);
    return 0;
}
