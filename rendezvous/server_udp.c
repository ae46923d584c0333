/* The rendezvous UDP socket: learns each peer's server-reflexive endpoint,
 * answers STUN Binding requests, and forwards relayed datagrams (relay.h).
 * Datagrams are demultiplexed by first byte (RFC 7983); DTLS and unknown
 * bytes are dropped. */
#define _GNU_SOURCE /* recvmmsg, sendmmsg */
#include "server_internal.h"

#include <errno.h>
#include <string.h>

#include "crypto.h"
#include "stun.h"
#include "timeutil.h"

#define VERSION_TEXT_(v) #v
#define VERSION_TEXT(v) VERSION_TEXT_(v) /* "2": the macro's value as a string */

/* Answers a punchline datagram of req_len bytes.  The source address of a
 * UDP datagram is unauthenticated, so a reply larger than its request would
 * let a spoofer aim more bytes at a victim than it sends itself (RFC 9000
 * s8.1 allows 3x; punchline's own replies allow 1x, which costs an honest
 * peer only a padded UdpBind, PROTOCOL.md 3).  A larger reply is dropped,
 * never cut; false then (the caller may try a smaller one). */
static bool udp_reply(server *s, const netaddr *to, Punchline__Envelope *env, size_t req_len)
{
    uint8_t out[WIRE_UDP_MAX];
    int n = wire_encode_udp(env, out, sizeof(out));
    if (n < 0 || (size_t)n > req_len)
        return false;
    sendto(s->udp_fd, out, (size_t)n, 0, &to->u.sa, to->len);
    return true;
}

/* STUN Binding (RFC 8489): any STUN client can learn its server-reflexive
 * address here.  Not STUN, a wrong FINGERPRINT, indications, responses and
 * other methods are dropped silently; unknown comprehension-required
 * attributes get 420 (s6.3.1). */
/* Writes the answer into out (STUN_REPLY_MAX bytes); returns its length, 0
 * for none. */
#define STUN_REPLY_MAX 256
static size_t handle_stun(const uint8_t *buf, size_t len, const netaddr *from, uint8_t *out)
{
    stun_msg req;
    size_t n = 0;
    if (stun_parse(buf, len, &req) != STUN_OK || req.type != STUN_BINDING_REQUEST)
        return 0;
    if (req.n_unknown)
        n = stun_binding_error(&req, 420, "Unknown Attribute", out, STUN_REPLY_MAX);
    else
        n = stun_binding_success(&req, from, out, STUN_REPLY_MAX);
    /* RFC 9000 s8.1's 3x bound; the largest answers (IPv6 success, 2.2x of
     * a 20-byte request; 420 naming one attribute, 56 bytes for 24, 2.3x)
     * stay under it, so this only guards later changes. */
    return n && n <= 3 * len ? n : 0;
}

/* Stateless return-routability cookie for (token, address): first 8 bytes
 * of HMAC-SHA256(server key, token || family || ip || port), never 0. */
static uint64_t bind_cookie(const server *s, uint64_t token, const netaddr *a)
{
    uint8_t m[8 + 1 + 16 + 2], mac[8];
    size_t n = 0;
    for (int i = 0; i < 8; i++)
        m[n++] = (uint8_t)(token >> (56 - 8 * i));
    if (a->u.sa.sa_family == AF_INET) {
        m[n++] = 4;
        memcpy(m + n, &a->u.in4.sin_addr, 4), n += 4;
        memcpy(m + n, &a->u.in4.sin_port, 2), n += 2;
    } else {
        m[n++] = 6;
        memcpy(m + n, &a->u.in6.sin6_addr, 16), n += 16;
        memcpy(m + n, &a->u.in6.sin6_port, 2), n += 2;
    }
    crypto_hmac_sha256(s->bind_key, sizeof(s->bind_key), m, n, mac, sizeof(mac));
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | mac[i];
    return v ? v : 1;
}

/* UdpBind: the peer's server-reflexive UDP endpoint.  An address is taken
 * (and relayed traffic follows it) only after it proved it receives: the
 * first UdpBind from a new address gets UdpBound with a challenge, and only
 * a UdpBind echoing it from that address binds (docs/PROTOCOL.md 3).  A
 * UdpBind smaller than its UdpBound (not padded to WIRE_UDPBIND_MIN) still
 * binds and refreshes but gets no answer: UdpBound has nothing to leave
 * out. */
static void handle_udp_bind(server *s, const Punchline__UdpBind *m, const netaddr *from,
                            size_t req_len)
{
    reg_peer *p = registry_find_token(s->reg, m->udp_token);
    if (!p)
        return;
    uint8_t ipbuf[16];
    Punchline__Endpoint ep;
    netaddr_to_endpoint(from, &ep, ipbuf);
    Punchline__UdpBound ub = PUNCHLINE__UDP_BOUND__INIT;
    ub.observed_udp = &ep;
    Punchline__Envelope r = PUNCHLINE__ENVELOPE__INIT;
    r.body_case = PUNCHLINE__ENVELOPE__BODY_UDP_BOUND;
    r.udp_bound = &ub;
    bool known = p->observed_udp.len && netaddr_equal(&p->observed_udp, from);
    if (!known) {
        uint64_t cookie = bind_cookie(s, m->udp_token, from);
        if (m->challenge != cookie) {
            ub.challenge = cookie; /* prove you receive here first */
            udp_reply(s, from, &r, req_len);
            return;
        }
        char as[NETADDR_STRLEN];
        netaddr_format(from, as, sizeof(as));
        srv_log(s, SRV_LOG_INFO, "peer %s UDP endpoint %s", p->name, as);
        if (s->relay && p->observed_udp.len)
            relay_rebind(s->relay, &p->observed_udp, from); /* NAT rebinding */
        p->observed_udp = *from;
    }
    registry_touch(p, time_now_ms());
    udp_reply(s, from, &r, req_len);
}

/* What the batch loop sends for one received datagram. */
typedef struct udp_out {
    const netaddr *to;         /* NULL: nothing (or already answered) */
    const uint8_t *buf;
    size_t len;
} udp_out;

/* Handles one datagram.  Relayed datagrams (forwarded unchanged) and STUN
 * answers (written into reply) come back in *o for the caller to batch;
 * anything else is answered here. */
static void handle_datagram(server *s, const uint8_t *buf, size_t len, const netaddr *from,
                            uint64_t now, uint8_t *reply, udp_out *o)
{
    o->to = NULL;
    int cls = wire_classify(buf, len);
    if (cls == WIRE_CLASS_RELAY) {
        /* Forwarded unchanged, only between the two endpoints of a paired
         * session (relay.h); everything else is dropped and counted. */
        uint64_t sid;
        if (s->relay && wire_relay_session(buf, len, &sid)) {
            o->to = relay_route_udp(s->relay, sid, from, len, now);
            o->buf = buf;
            o->len = len;
        }
        return;
    }
    if (cls == WIRE_CLASS_STUN) {
        o->len = handle_stun(buf, len, from, reply);
        o->to = o->len ? from : NULL;
        o->buf = reply;
        return;
    }
    if (cls != WIRE_CLASS_PUNCHLINE)
        return;
    Punchline__Envelope *env = NULL;
    uint32_t version = 0;
    int rc = wire_decode_udp(buf, len, &env, &version);
    if (rc == WIRE_E_VERSION) {
        /* 42 bytes with the text, 8 without; a request smaller than that
         * gets nothing (the code is what programs check, PROTOCOL.md 1.3) */
        Punchline__Error err = PUNCHLINE__ERROR__INIT;
        err.code = PUNCHLINE__ERROR_CODE__BAD_VERSION;
        err.text = "server speaks protocol version " VERSION_TEXT(WIRE_VERSION);
        Punchline__Envelope r = PUNCHLINE__ENVELOPE__INIT;
        r.body_case = PUNCHLINE__ENVELOPE__BODY_ERROR;
        r.error = &err;
        if (!udp_reply(s, from, &r, len)) {
            err.text = "";
            udp_reply(s, from, &r, len);
        }
        return;
    }
    if (rc != WIRE_OK)
        return;
    if (env->body_case == PUNCHLINE__ENVELOPE__BODY_UDP_BIND)
        handle_udp_bind(s, env->udp_bind, from, len);
    wire_free(env);
}

/* Up to 8 batches of BATCH datagrams per wake-up: recvmmsg in, and the
 * relayed ones (forwarded unchanged, from the receive buffer) and STUN
 * answers out again with one sendmmsg.  Other replies go out one by one as
 * they are made. */
#define BATCH 32
#define DGRAM_MAX (WIRE_UDP_MAX + WIRE_RELAY_HDR)

void srv_udp_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    server *s = w->data;
    static uint8_t bufs[BATCH][DGRAM_MAX + 1], replies[BATCH][STUN_REPLY_MAX];
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
            udp_out o;
            handle_datagram(s, bufs[i], len, &from, now, replies[i], &o);
            if (!o.to)
                continue;
            to[nf] = *o.to;
            fiov[nf] = (struct iovec){.iov_base = (void *)o.buf, .iov_len = o.len};
            fwd[nf] = (struct mmsghdr){.msg_hdr = {.msg_name = &to[nf].u.sa,
                                                    .msg_namelen = to[nf].len,
                                                    .msg_iov = &fiov[nf], .msg_iovlen = 1}};
            nf++;
        }
        for (int off = 0; off < nf;) {
            int m = sendmmsg(s->udp_fd, fwd + off, (unsigned)(nf - off), MSG_DONTWAIT);
            if (m > 0) {
                off += m;
            } else if (m < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
                break; /* socket buffer full: dropped, like any UDP router */
            } else {
                off++; /* this destination failed (unreachable, filtered): skip it */
            }
        }
        if (n < BATCH)
            return;
    }
}
