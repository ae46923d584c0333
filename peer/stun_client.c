/* Reflexive address from a standard STUN server (pl_peer_config.stun_server):
 * Binding requests from the peer's UDP socket, retransmitted 250 ms
 * doubling (RFC 8489 s6.2.1, 7 tries), then refreshed every keepalive
 * interval; a new or changed XOR-MAPPED-ADDRESS becomes a SERVER_REFLEXIVE
 * candidate reported to the rendezvous.  Useful when the rendezvous does
 * not see the address other peers will see (e.g. it sits on the same LAN). */
#include <string.h>

#include "crypto.h"
#include "peer_internal.h"
#include "stun.h"

#define STUN_RTO_FIRST_MS 250
#define STUN_TRIES 7

static void stun_send(pl_peer *p)
{
    uint8_t buf[64];
    size_t n = stun_binding_request(p->stun_tid, buf, sizeof(buf));
    if (n)
        peer_udp_send(p, &p->stun_server, buf, n);
}

static void arm(pl_peer *p, uint32_t ms)
{
    ev_timer_stop(p->loop, &p->stun_w);
    ev_timer_set(&p->stun_w, ms / 1000.0, 0.);
    ev_timer_start(p->loop, &p->stun_w);
}

/* A new transaction (new tid), first transmission. */
static void begin(pl_peer *p)
{
    crypto_random(p->stun_tid, sizeof(p->stun_tid));
    p->stun_tries = 1;
    p->stun_rto_ms = STUN_RTO_FIRST_MS;
    stun_send(p);
    arm(p, p->stun_rto_ms);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    pl_peer *p = w->data;
    if (p->stun_tries == 0 || p->stun_tries >= STUN_TRIES) {
        if (p->stun_tries >= STUN_TRIES) {
            char as[NETADDR_STRLEN];
            netaddr_format(&p->stun_server, as, sizeof(as));
            plog(&p->log, PL_LOG_WARN, "STUN server %s does not answer", as);
        }
        begin(p); /* refresh (or start over) */
        return;
    }
    p->stun_tries++;
    p->stun_rto_ms *= 2;
    stun_send(p);
    arm(p, p->stun_rto_ms);
}

void stunc_start(pl_peer *p)
{
    ev_init(&p->stun_w, timer_cb);
    p->stun_w.data = p;
    p->stun_on = true;
    begin(p);
}

void stunc_stop(pl_peer *p)
{
    if (p->stun_on)
        ev_timer_stop(p->loop, &p->stun_w);
    p->stun_on = false;
}

void stunc_input(pl_peer *p, const uint8_t *buf, size_t len, const netaddr *from)
{
    stun_msg m;
    if (!p->stun_on || p->stun_tries == 0 || !netaddr_equal(from, &p->stun_server) ||
        stun_parse(buf, len, &m) != STUN_OK || m.type != STUN_BINDING_SUCCESS ||
        !crypto_equal(m.tid, p->stun_tid, sizeof(m.tid)) || !m.has_xor_mapped ||
        !netaddr_is_usable_candidate(&m.xor_mapped))
        return;
    p->stun_tries = 0; /* transaction done; the timer now means "refresh" */
    arm(p, peer_keepalive_ms(p));
    if (netaddr_equal(&m.xor_mapped, &p->stun_mapped))
        return;
    char as[NETADDR_STRLEN], ms[NETADDR_STRLEN];
    netaddr_format(&p->stun_server, as, sizeof(as));
    netaddr_format(&m.xor_mapped, ms, sizeof(ms));
    plog(&p->log, PL_LOG_INFO, "STUN server %s: our reflexive address is %s", as, ms);
    p->stun_mapped = m.xor_mapped;
    ctl_send_candidates(p);
}
