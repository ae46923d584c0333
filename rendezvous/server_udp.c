/* The rendezvous UDP socket: learns each peer's server-reflexive endpoint,
 * answers STUN Binding requests, and forwards relayed datagrams (relay.h).
 * Datagrams are demultiplexed by first byte (RFC 7983); DTLS and unknown
 * bytes are dropped. */
#define _GNU_SOURCE /* recvmmsg, sendmmsg */
#include "server_internal.h"

#include <errno.h>
#include <string.h>

#include "stun.h"
#include "timeutil.h"

static void udp_reply(server *s, const netaddr *to, Punchline__Envelope *env, size_t req_len)
{
    uint8_t out[WIRE_UDP_MAX];
    int n = wire_encode_udp(env, out, sizeof(out));
    /* Never answer an unauthenticated datagram with more than 3x its size
     * (amplification limit, RFC 9000 s8.1 spirit). */
    if (n < 0 || (size_t)n > 3 * req_len)
        return;
    sendto(s->udp_fd, out, (size_t)n, 0, &to->u.sa, to->len);
}

/* STUN Binding (RFC 8489): any STUN client can learn its server-reflexive
 * address here.  Not STUN, a wrong FINGERPRINT, indications, responses and
 * other methods are dropped silently; unknown comprehension-required
 * attributes get 420 (s6.3.1). */
static void handle_stun(server *s, const uint8_t *buf, size_t len, const netaddr *from)
{
    stun_msg req;
    uint8_t out[256];
    size_t n = 0;
    if (stun_parse(buf, len, &req) != STUN_OK || req.type != STUN_BINDING_REQUEST)
        return;
    if (req.n_unknown)
        n = stun_binding_error(&req, 420, "Unknown Attribute", out, sizeof(out));
    else
        n = stun_binding_success(&req, from, out, sizeof(out));
    /* the same 3x amplification bound as our own replies */
    if (n && n <= 3 * len)
        sendto(s->udp_fd, out, n, 0, &from->u.sa, from->len);
}

/* Returns the relay destination when buf is a relayed datagram to forward
 * (the caller batches those), else handles it and returns NULL. */
static const netaddr *handle_datagram(server *s, const uint8_t *buf, size_t len,
                                      const netaddr *from, uint64_t now)
{
    int cls = wire_classify(buf, len);
    if (cls == WIRE_CLASS_RELAY) {
        /* Forwarded unchanged, only between the two endpoints of a paired
         * session (relay.h); everything else is dropped and counted. */
        uint64_t sid;
        if (s->relay && wire_relay_session(buf, len, &sid))
            return relay_route_udp(s->relay, sid, from, len, now);
        return NULL;
    }
    if (cls == WIRE_CLASS_STUN) {
        handle_stun(s, buf, len, from);
        return NULL;
    }
    if (cls != WIRE_CLASS_PUNCHLINE)
        return NULL;
    Punchline__Envelope *env = NULL;
    uint32_t version = 0;
    int rc = wire_decode_udp(buf, len, &env, &version);
    if (rc == WIRE_E_VERSION) {
        Punchline__Error err = PUNCHLINE__ERROR__INIT;
        err.code = PUNCHLINE__ERROR_CODE__BAD_VERSION;
        err.text = "server speaks protocol version 1";
        Punchline__Envelope r = PUNCHLINE__ENVELOPE__INIT;
        r.body_case = PUNCHLINE__ENVELOPE__BODY_ERROR;
        r.error = &err;
        udp_reply(s, from, &r, len);
        return NULL;
    }
    if (rc != WIRE_OK)
        return NULL;
    if (env->body_case == PUNCHLINE__ENVELOPE__BODY_UDP_BIND) {
        reg_peer *p = registry_find_token(s->reg, env->udp_bind->udp_token);
        if (p) {
            if (!netaddr_equal(&p->observed_udp, from)) {
                char as[NETADDR_STRLEN];
                netaddr_format(from, as, sizeof(as));
                srv_log(s, SRV_LOG_INFO, "peer %s UDP endpoint %s", p->name, as);
                if (s->relay && p->observed_udp.len)
                    relay_rebind(s->relay, &p->observed_udp, from); /* NAT rebinding */
            }
            p->observed_udp = *from;
            registry_touch(p, time_now_ms());
            uint8_t ipbuf[16];
            Punchline__Endpoint ep;
            netaddr_to_endpoint(from, &ep, ipbuf);
            Punchline__UdpBound ub = PUNCHLINE__UDP_BOUND__INIT;
            ub.observed_udp = &ep;
            Punchline__Envelope r = PUNCHLINE__ENVELOPE__INIT;
            r.body_case = PUNCHLINE__ENVELOPE__BODY_UDP_BOUND;
            r.udp_bound = &ub;
            udp_reply(s, from, &r, len);
        }
    }
    wire_free(env);
    return NULL;
}

/* Up to 8 batches of BATCH datagrams per wake-up: recvmmsg in, and the
 * relayed ones out again with one sendmmsg (in place: a relayed datagram is
 * forwarded unchanged).  Other replies go out one by one as they are made. */
#define BATCH 32
#define DGRAM_MAX (WIRE_UDP_MAX + WIRE_RELAY_HDR)

void srv_udp_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    server *s = w->data;
    static uint8_t bufs[BATCH][DGRAM_MAX + 1];
    struct sockaddr_storage ss[BATCH];
    struct iovec iov[BATCH], fiov[BATCH];
    struct mmsghdr in[BATCH], fwd[BATCH];
    netaddr to[BATCH];
    for (int round = 0; round < 8; round++) {
        for (int i = 0; i < BATCH; i++) {
            iov[i] = (struct iovec){.iov_base = bufs[i], .iov_len = sizeof(bufs[i])};
            in[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &ss[i], .msg_namelen = sizeof(ss[i]),
                                                  .msg_iov = &iov[i], .msg_iovlen = 1}};
        }
        int n = recvmmsg(s->udp_fd, in, BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return; /* EAGAIN, or an ICMP error surfaced by the kernel */
        uint64_t now = time_now_ms();
        int nf = 0;
        for (int i = 0; i < n; i++) {
            size_t len = in[i].msg_len;
            if (len > DGRAM_MAX || (in[i].msg_hdr.msg_flags & MSG_TRUNC))
                continue; /* oversized: not ours */
            netaddr from;
            netaddr_from_sockaddr(&from, (struct sockaddr *)&ss[i], in[i].msg_hdr.msg_namelen);
            const netaddr *dst = handle_datagram(s, bufs[i], len, &from, now);
            if (!dst)
                continue;
            to[nf] = *dst;
            fiov[nf] = (struct iovec){.iov_base = bufs[i], .iov_len = len};
            fwd[nf] = (struct mmsghdr){.msg_hdr = {.msg_name = &to[nf].u.sa,
                                                    .msg_namelen = to[nf].len,
                                                    .msg_iov = &fiov[nf], .msg_iovlen = 1}};
            nf++;
        }
        for (int off = 0; off < nf;) {
            int m = sendmmsg(s->udp_fd, fwd + off, (unsigned)(nf - off), MSG_DONTWAIT);
            if (m <= 0)
                break; /* socket buffer full: dropped, like any UDP router */
            off += m;
        }
        if (n < BATCH)
            return;
    }
}
