/* tests/natlab/nfq_delay.c - natlab-nfq-delay: a delay line for the NAT lab.
 *
 *   natlab-nfq-delay --queue N --delay MS [--jitter MS]
 *
 * The lab's kernel has no netem (CONFIG_NET_SCH_NETEM is off) and no nft
 * `queue` statement (CONFIG_NFT_QUEUE is off), but it has NFQUEUE through
 * iptables-nft (xt_NFQUEUE). tests/natlab/lib.sh (natlab_set_delay) sends
 * the packets a lab node receives (and a public host's output) to queue N
 * with `-j NFQUEUE --queue-num N --queue-bypass`, and this program, running
 * in the same network namespace (queues are per namespace), holds each
 * packet for MS milliseconds (plus a uniform random 0..JITTER ms) and then
 * gives it back to the kernel with NF_ACCEPT.
 *
 * How:
 *  - One FIFO of (packet id, release time). A packet's release time is
 *    max(arrival + delay + jitter, release time of the packet before it), so
 *    the FIFO is always in release order, jitter never reorders packets (of a
 *    flow or at all), and the packets due at any moment are a prefix of the
 *    FIFO: one nfq_set_verdict_batch() (accept every id <= the last due one)
 *    releases them all.
 *  - NFQNL_COPY_META: the kernel sends only the metadata (id, hook, ...);
 *    no payload is copied to user space.
 *  - poll() over the queue's netlink socket, a timerfd armed at the head's
 *    release time (CLOCK_MONOTONIC, absolute), and a signalfd for
 *    SIGTERM/SIGINT/SIGHUP.
 *  - On SIGTERM (and SIGINT, SIGHUP) every held packet is accepted at once,
 *    the queue is unbound and the program exits 0. If it dies instead, the
 *    kernel drops what it held and, thanks to --queue-bypass, lets new
 *    packets through undelayed: the lab never turns into a black hole.
 *  - The queue holds at most QMAX packets (kernel queue length set to the
 *    same); beyond that the kernel drops, as a full router buffer would.
 *
 * Loss is not done here: lib.sh drops with `numgen random mod 100 < PCT`.
 * Needs CAP_NET_ADMIN in the namespace (root). Debian: libnetfilter-queue-dev.
 */
#include <arpa/inet.h> /* ntohl */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/netfilter.h> /* NF_ACCEPT */
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <libnetfilter_queue/libnetfilter_queue.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif
#ifndef NETLINK_NO_ENOBUFS
#define NETLINK_NO_ENOBUFS 5
#endif

#define QMAX 8192 /* packets held at once (power of two: ring index mask) */

struct held {
    uint32_t id;
    int64_t due_ns; /* CLOCK_MONOTONIC */
};

static struct held ring[QMAX];
static unsigned ring_head, ring_len;
static int64_t delay_ns, jitter_ns, last_due_ns;
static uint64_t rng_state;
static unsigned long long n_packets, n_overflow;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* xorshift64*: jitter needs no cryptographic randomness. */
static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

/* Called by nfq_handle_packet() for every queued packet. */
static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa, void *data)
{
    (void)msg;
    (void)data;
    struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
    if (!ph)
        return 0;
    uint32_t id = ntohl(ph->packet_id);
    n_packets++;
    if (ring_len == QMAX) {
        /* Cannot happen with the kernel queue capped at QMAX; never leave a
         * packet without a verdict anyway. */
        n_overflow++;
        return nfq_set_verdict(qh, id, NF_DROP, 0, NULL);
    }
    int64_t due = now_ns() + delay_ns;
    if (jitter_ns > 0)
        due += (int64_t)(rng_next() % (uint64_t)(jitter_ns + 1));
    if (due < last_due_ns)
        due = last_due_ns; /* keep release order = arrival order */
    last_due_ns = due;
    ring[(ring_head + ring_len) & (QMAX - 1)] = (struct held){ .id = id, .due_ns = due };
    ring_len++;
    return 0;
}

/* Accept every held packet due at `now` (all of them when now == INT64_MAX)
 * with one batch verdict. */
static void release_due(struct nfq_q_handle *qh, int64_t now)
{
    uint32_t last = 0;
    unsigned n = 0;
    while (ring_len > 0 && ring[ring_head].due_ns <= now) {
        last = ring[ring_head].id;
        ring_head = (ring_head + 1) & (QMAX - 1);
        ring_len--;
        n++;
    }
    if (n > 0 && nfq_set_verdict_batch(qh, last, NF_ACCEPT) < 0)
        fprintf(stderr, "natlab-nfq-delay: batch verdict up to id %" PRIu32 ": %s\n", last,
                strerror(errno));
}

static int arm_timer(int tfd)
{
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    if (ring_len > 0) {
        int64_t due = ring[ring_head].due_ns;
        if (due <= 0)
            due = 1; /* 0 would disarm */
        its.it_value.tv_sec = due / 1000000000;
        its.it_value.tv_nsec = due % 1000000000;
    }
    return timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static int parse_ms(const char *s, const char *what, int64_t *out_ns)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > 60000) {
        fprintf(stderr, "natlab-nfq-delay: %s wants milliseconds 0..60000, got '%s'\n", what, s);
        return -1;
    }
    *out_ns = (int64_t)v * 1000000;
    return 0;
}

static void usage(FILE *f)
{
    fputs("usage: natlab-nfq-delay --queue N --delay MS [--jitter MS]\n"
          "Holds every packet of NFQUEUE queue N for MS ms (+ uniform 0..JITTER ms,\n"
          "never reordering) and then accepts it. Run it as root in the namespace\n"
          "whose rules send packets to the queue (iptables -j NFQUEUE --queue-num N\n"
          "--queue-bypass). SIGTERM/SIGINT accept everything held and exit 0.\n"
          "  -q, --queue N    queue number (0..65535)\n"
          "  -d, --delay MS   delay in milliseconds\n"
          "  -j, --jitter MS  extra uniform random delay 0..MS (default 0)\n"
          "  -h, --help       this text\n",
          f);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "queue", required_argument, NULL, 'q' },  { "delay", required_argument, NULL, 'd' },
        { "jitter", required_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    long queue = -1;
    int have_delay = 0, c;
    while ((c = getopt_long(argc, argv, "q:d:j:h", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'q':
            errno = 0;
            queue = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || queue < 0 || queue > 65535) {
                fprintf(stderr, "natlab-nfq-delay: --queue wants 0..65535, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'd':
            if (parse_ms(optarg, "--delay", &delay_ns) < 0)
                return 2;
            have_delay = 1;
            break;
        case 'j':
            if (parse_ms(optarg, "--jitter", &jitter_ns) < 0)
                return 2;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (queue < 0 || !have_delay || optind != argc) {
        usage(stderr);
        return 2;
    }
    rng_state = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ULL;
    if (!rng_state)
        rng_state = 1;

    int rc = 1, tfd = -1, sfd = -1;
    struct nfq_handle *h = NULL;
    struct nfq_q_handle *qh = NULL;
    static char buf[65536] __attribute__((aligned));

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &sigs, NULL) < 0 || (sfd = signalfd(-1, &sigs, SFD_CLOEXEC)) < 0) {
        perror("natlab-nfq-delay: signalfd");
        goto fail;
    }
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (tfd < 0) {
        perror("natlab-nfq-delay: timerfd_create");
        goto fail;
    }
    h = nfq_open();
    if (!h) {
        perror("natlab-nfq-delay: nfq_open");
        goto fail;
    }
    qh = nfq_create_queue(h, (uint16_t)queue, on_packet, NULL);
    if (!qh) {
        fprintf(stderr, "natlab-nfq-delay: cannot bind queue %ld: %s (root? queue taken?)\n", queue,
                strerror(errno));
        goto fail;
    }
    if (nfq_set_mode(qh, NFQNL_COPY_META, 0) < 0) {
        perror("natlab-nfq-delay: nfq_set_mode");
        goto fail;
    }
    if (nfq_set_queue_maxlen(qh, QMAX) < 0)
        perror("natlab-nfq-delay: nfq_set_queue_maxlen (continuing)");
    int fd = nfq_fd(h);
    /* Metadata messages are ~100 bytes, so the default buffer holds about a
     * thousand; make room for QMAX and never lose the socket to ENOBUFS (a
     * packet whose message was lost would wait forever for its verdict). */
    int one = 1, rcvbuf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
    setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);

    fprintf(stderr, "natlab-nfq-delay: queue %ld, delay %" PRId64 " ms, jitter %" PRId64 " ms\n", queue,
            delay_ns / 1000000, jitter_ns / 1000000);
    for (;;) {
        struct pollfd pfd[3] = {
            { .fd = fd, .events = POLLIN },
            { .fd = tfd, .events = POLLIN },
            { .fd = sfd, .events = POLLIN },
        };
        if (poll(pfd, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            perror("natlab-nfq-delay: poll");
            goto fail;
        }
        if (pfd[2].revents & POLLIN)
            break;
        if (pfd[0].revents & POLLIN) {
            /* Drain what is there without blocking. */
            for (;;) {
                ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
                if (n < 0) {
                    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                        break;
                    if (errno == ENOBUFS) {
                        fprintf(stderr, "natlab-nfq-delay: netlink buffer overrun\n");
                        continue;
                    }
                    perror("natlab-nfq-delay: recv");
                    goto fail;
                }
                nfq_handle_packet(h, buf, (int)n);
            }
        }
        if (pfd[1].revents & POLLIN) {
            uint64_t expirations;
            if (read(tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
                perror("natlab-nfq-delay: timerfd read");
        }
        release_due(qh, now_ns());
        if (arm_timer(tfd) < 0) {
            perror("natlab-nfq-delay: timerfd_settime");
            goto fail;
        }
    }
    rc = 0;
fail:
    if (qh)
        release_due(qh, INT64_MAX); /* never leave held packets behind */
    fprintf(stderr, "natlab-nfq-delay: exiting, %llu packets delayed%s\n", n_packets,
            n_overflow ? " (some dropped: queue full)" : "");
    if (qh)
        nfq_destroy_queue(qh);
    if (h)
        nfq_close(h);
    if (tfd >= 0)
        close(tfd);
    if (sfd >= 0)
        close(sfd);
    return rc;
}
