/* The peer's UDP sends.  Inside a batch (peer_udp_batch_begin/end: a pump
 * of the stream) consecutive datagrams to one address with one size go out
 * in a single sendmsg() with UDP generic segmentation offload (UDP_SEGMENT,
 * Linux 4.18+): the kernel walks its send path, and a router in between
 * its forwarding path, once per batch instead of once per datagram.  The
 * datagrams on the wire are exactly those of separate sendto() calls.
 * Where GSO is refused (old kernel, a device without it) the batch falls
 * back to one sendto() per datagram, for good. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "peer_internal.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#define BATCH_MAX_SEGS 64        /* UDP_MAX_SEGMENTS in the kernel */
#define BATCH_MAX_BYTES 65000    /* one UDP datagram's worth before segmentation */

static void send_one(pl_peer *p, const netaddr *to, const uint8_t *buf, size_t len)
{
    ssize_t n = sendto(p->udp_fd, buf, len, 0, &to->u.sa, to->len);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        char as[NETADDR_STRLEN];
        netaddr_format(to, as, sizeof(as));
        plog(&p->log, PL_LOG_DEBUG, "sendto %s: %s", as, strerror(errno));
    }
}

static void flush(pl_peer *p)
{
    udp_batch *b = &p->ub;
    if (!b->n)
        return;
    if (b->n == 1 || b->gso_off) {
        for (size_t off = 0; off < b->len; off += b->seg)
            send_one(p, &b->to, b->buf + off, b->len - off < b->seg ? b->len - off : b->seg);
        b->n = 0;
        b->len = 0;
        return;
    }
    struct iovec iov = {.iov_base = b->buf, .iov_len = b->len};
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct msghdr mh = {.msg_name = (void *)&b->to.u.sa,
                        .msg_namelen = b->to.len,
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = ctl.buf,
                        .msg_controllen = sizeof(ctl.buf)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t seg = b->seg;
    memcpy(CMSG_DATA(cm), &seg, sizeof(seg));
    if (sendmsg(p->udp_fd, &mh, 0) < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        if (errno == EIO || errno == EINVAL || errno == ENOPROTOOPT || errno == EOPNOTSUPP) {
            plog(&p->log, PL_LOG_DEBUG, "UDP segmentation offload refused (%s): sending datagrams one by one",
                 strerror(errno));
            b->gso_off = true;
            flush(p); /* one by one now */
            return;
        }
        plog(&p->log, PL_LOG_DEBUG, "sendmsg (%u datagrams): %s", b->n, strerror(errno));
    }
    b->n = 0;
    b->len = 0;
}

void peer_udp_send(pl_peer *p, const netaddr *to, const uint8_t *buf, size_t len)
{
    udp_batch *b = &p->ub;
    if (!b->depth || b->gso_off || len == 0 || len > WIRE_RELAY_HDR + WIRE_UDP_MAX) {
        flush(p);
        send_one(p, to, buf, len);
        return;
    }
    if (!b->buf && !(b->buf = malloc(BATCH_MAX_BYTES))) {
        send_one(p, to, buf, len);
        return;
    }
    /* one batch = one address, one segment size; only the last may be shorter */
    if (b->n && (b->short_tail || len > b->seg || b->n >= BATCH_MAX_SEGS ||
                 b->len + len > BATCH_MAX_BYTES || !netaddr_equal(to, &b->to)))
        flush(p);
    if (!b->n) {
        b->to = *to;
        b->seg = (uint16_t)len;
        b->short_tail = false;
    }
    memcpy(b->buf + b->len, buf, len);
    b->len += len;
    b->n++;
    if (len < b->seg)
        b->short_tail = true;
}

void peer_udp_batch_begin(pl_peer *p)
{
    p->ub.depth++;
}

void peer_udp_batch_end(pl_peer *p)
{
    if (p->ub.depth && --p->ub.depth == 0)
        flush(p);
}

void peer_udp_batch_free(pl_peer *p)
{
    free(p->ub.buf);
    p->ub.buf = NULL;
}
