/* The rendezvous UDP socket: learns each peer's server-reflexive endpoint
 * and answers STUN Binding requests.  Datagrams are demultiplexed by first
 * byte (RFC 7983); DTLS and unknown bytes are dropped. */
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

static void handle_datagram(server *s, const uint8_t *buf, size_t len, const netaddr *from)
{
    int cls = wire_classify(buf, len);
    if (cls == WIRE_CLASS_STUN) {
        handle_stun(s, buf, len, from);
        return;
    }
    if (cls != WIRE_CLASS_PUNCHLINE)
        return;
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
        return;
    }
    if (rc != WIRE_OK)
        return;
    if (env->body_case == PUNCHLINE__ENVELOPE__BODY_UDP_BIND) {
        reg_peer *p = registry_find_token(s->reg, env->udp_bind->udp_token);
        if (p) {
            if (!netaddr_equal(&p->observed_udp, from)) {
                char as[NETADDR_STRLEN];
                netaddr_format(from, as, sizeof(as));
                srv_log(s, SRV_LOG_INFO, "peer %s UDP endpoint %s", p->name, as);
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
}

void srv_udp_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    server *s = w->data;
    for (int i = 0; i < 64; i++) {
        uint8_t buf[WIRE_UDP_MAX + 1];
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        ssize_t n = recvfrom(s->udp_fd, buf, sizeof(buf), 0, (struct sockaddr *)&ss, &sl);
        if (n < 0)
            return; /* EAGAIN, or an ICMP error surfaced by the kernel */
        if ((size_t)n > WIRE_UDP_MAX)
            continue; /* oversized: not ours */
        netaddr from;
        netaddr_from_sockaddr(&from, (struct sockaddr *)&ss, sl);
        handle_datagram(s, buf, (size_t)n, &from);
    }
}
