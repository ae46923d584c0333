#include "stream.h"

#include <stdlib.h>
#include <string.h>

#include "punchline/punchline.h"

#define NEVER UINT64_MAX
#define MSG_HDR 4
#define RCV_OOO_MAX 256      /* holes the receiver tracks; beyond, packets are dropped unacked */
#define RCV_PNS_MAX 64       /* received packet-number ranges remembered */
#define RTX_MAX 4096         /* lost ranges queued; beyond, resend from the acked point */
#define PTO_PERSISTENT 3     /* consecutive probe timeouts: persistent congestion (s7.6) */
#define FIRST_PCAP 64

static size_t pow2_at_least(size_t v)
{
    size_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

static size_t clamp_limit(size_t v)
{
    if (!v)
        v = STREAM_DEFAULT_BUFFER;
    if (v < STREAM_MIN_BUFFER)
        v = STREAM_MIN_BUFFER;
    if (v > STREAM_MAX_BUFFER)
        v = STREAM_MAX_BUFFER;
    return pow2_at_least(v);
}

int stream_init(stream *s, const stream_config *cfg, const stream_callbacks *cb, void *user)
{
    memset(s, 0, sizeof(*s));
    s->cfg = *cfg;
    s->cfg.send_limit = clamp_limit(cfg->send_limit);
    s->cfg.recv_limit = clamp_limit(cfg->recv_limit);
    s->cb = *cb;
    s->user = user;
    bytering_init(&s->sbuf, s->cfg.send_limit);
    bytering_init(&s->rbuf, s->cfg.recv_limit);
    ranges_init(&s->rtx, RTX_MAX);
    ranges_init(&s->rcv_ooo, RCV_OOO_MAX);
    ranges_init(&s->rcv_pns, RCV_PNS_MAX);
    s->peer_max = STREAM_MIN_BUFFER;
    s->adv_max = s->cfg.recv_limit;
    cc_init(&s->cc);
    s->pkts = calloc(FIRST_PCAP, sizeof(*s->pkts));
    if (!s->pkts)
        return PL_ERR_NOMEM;
    s->pcap = FIRST_PCAP;
    return 0;
}

void stream_free(stream *s)
{
    bytering_free(&s->sbuf);
    bytering_free(&s->rbuf);
    ranges_free(&s->rtx);
    ranges_free(&s->rcv_ooo);
    ranges_free(&s->rcv_pns);
    free(s->pkts);
    free(s->scratch);
    s->pkts = NULL;
    s->scratch = NULL;
}

static void fail(stream *s, const char *why)
{
    if (!s->failed) {
        s->failed = true;
        s->fail_reason = why;
    }
}

/* ---- sending: the application side --------------------------------------- */

static size_t queued(const stream *s)
{
    return (size_t)(s->snd_end - s->sbuf.base);
}

bool stream_writable(const stream *s)
{
    return !s->fin_queued && queued(s) + MSG_HDR + PL_MAX_MESSAGE <= s->cfg.send_limit;
}

int stream_send(stream *s, const void *data, size_t len)
{
    if (s->fin_queued)
        return PL_ERR_STATE;
    if (len > PL_MAX_MESSAGE)
        return PL_ERR_TOO_BIG;
    if (queued(s) + MSG_HDR + len > s->cfg.send_limit)
        return PL_ERR_AGAIN;
    uint8_t hdr[MSG_HDR] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                            (uint8_t)len};
    if (bytering_write(&s->sbuf, s->snd_end, hdr, MSG_HDR) != 0 ||
        bytering_write(&s->sbuf, s->snd_end + MSG_HDR, data, len) != 0)
        return PL_ERR_NOMEM;
    s->snd_end += MSG_HDR + len;
    s->st.bytes_queued += MSG_HDR + len;
    return 0;
}

int stream_shutdown(stream *s)
{
    s->fin_queued = true;
    return 0;
}

/* ---- packet records ------------------------------------------------------ */

static sent_pkt *rec(const stream *s, uint64_t pn)
{
    return &s->pkts[pn & (s->pcap - 1)];
}

/* Room for one more record (grow the ring by doubling). */
static bool rec_room(stream *s)
{
    if (s->pn_next - s->pn_low < s->pcap)
        return true;
    if (s->pcap >= STREAM_MAX_PACKETS)
        return false;
    size_t ncap = s->pcap * 2;
    sent_pkt *n = calloc(ncap, sizeof(*n));
    if (!n)
        return false;
    for (uint64_t pn = s->pn_low; pn < s->pn_next; pn++)
        n[pn & (ncap - 1)] = *rec(s, pn);
    free(s->pkts);
    s->pkts = n;
    s->pcap = ncap;
    return true;
}

static void rec_advance_low(stream *s)
{
    while (s->pn_low < s->pn_next && !rec(s, s->pn_low)->in_flight)
        s->pn_low++;
}

static uint64_t pkt_cost(uint32_t len)
{
    return (uint64_t)len + STREAM_PACKET_OVERHEAD;
}

/* Queue a lost packet's bytes for retransmission. */
static void requeue(stream *s, const sent_pkt *p)
{
    uint64_t lo = p->offset, hi = p->offset + p->len;
    if (lo < s->sbuf.base)
        lo = s->sbuf.base;
    if (lo < hi && ranges_add(&s->rtx, lo, hi) != 0)
        s->rtx_overflow = true;
    if (p->fin && !s->fin_acked)
        s->fin_lost = true;
}

/* ---- acknowledgements in ------------------------------------------------- */

/* RFC 9002 s6.1: packet and time thresholds. */
static void detect_lost(stream *s, uint64_t now)
{
    s->loss_time = 0;
    if (!s->any_acked || s->reliable_path)
        return;
    uint64_t delay = cc_loss_delay(&s->cc);
    uint64_t lost_bytes = 0, newest = 0;
    for (uint64_t pn = s->pn_low; pn < s->largest_acked && pn < s->pn_next; pn++) {
        sent_pkt *p = rec(s, pn);
        if (!p->in_flight)
            continue;
        if (s->largest_acked - pn >= 3 || p->sent + delay <= now) {
            p->in_flight = false;
            lost_bytes += pkt_cost(p->len);
            if (p->sent > newest)
                newest = p->sent;
            s->st.packets_lost++;
            requeue(s, p);
        } else if (!s->loss_time || p->sent + delay < s->loss_time) {
            s->loss_time = p->sent + delay;
        }
    }
    if (lost_bytes)
        cc_on_lost(&s->cc, lost_bytes, newest, now);
    rec_advance_low(s);
}

/* One acknowledged range of packet numbers [lo, hi] (inclusive). */
static void ack_range(stream *s, uint64_t lo, uint64_t hi, bool limited, uint64_t *newest_pn,
                      bool *newly)
{
    if (hi >= s->pn_next)
        hi = s->pn_next - 1;
    if (lo < s->pn_low)
        lo = s->pn_low;
    for (uint64_t pn = lo; pn <= hi && pn >= lo; pn++) {
        sent_pkt *p = rec(s, pn);
        if (!p->in_flight)
            continue;
        p->in_flight = false;
        if (!s->reliable_path)
            cc_on_acked(&s->cc, pkt_cost(p->len), p->sent, limited);
        else
            cc_forget(&s->cc, pkt_cost(p->len));
        *newly = true;
        if (pn > *newest_pn || *newest_pn == NEVER)
            *newest_pn = pn;
    }
}

void stream_input_ack(stream *s, const Punchline__Ack *a, uint64_t now)
{
    /* stream position and flow control first: valid whichever packets the
     * ranges name (e.g. an Ack from the old path after a switch) */
    if (a->stream_next > s->sbuf.base && a->stream_next <= s->snd_next) {
        s->st.bytes_acked += a->stream_next - s->sbuf.base;
        bytering_consume(&s->sbuf, a->stream_next);
        ranges_drop_below(&s->rtx, a->stream_next);
    }
    if (a->max_offset > s->peer_max && a->max_offset <= WIRE_MAX_STREAM_OFFSET)
        s->peer_max = a->max_offset;
    if (a->fin_received && s->fin_sent && s->sbuf.base == s->snd_end)
        s->fin_acked = true;
    if (s->fin_acked)
        s->fin_lost = false;
    if (a->pn_next == 0 || a->pn_next > s->pn_next)
        return; /* acknowledges nothing, or packets we never sent */
    uint64_t largest = a->pn_next - 1;
    bool limited = s->cc.in_flight * 2 >= s->cc.cwnd;
    uint64_t newest = NEVER;
    bool newly = false;
    bool largest_newly = largest >= s->pn_low && rec(s, largest)->in_flight;
    uint64_t largest_sent = largest_newly ? rec(s, largest)->sent : 0;
    if (a->first_range <= largest) {
        uint64_t hi = largest, lo = largest - a->first_range;
        ack_range(s, lo, hi, limited, &newest, &newly);
        for (size_t i = 0; i + 1 < a->n_ranges; i += 2) {
            uint64_t gap = a->ranges[i], run = a->ranges[i + 1];
            if (gap == 0 || gap >= lo)
                break; /* adjacent, or below zero: malformed; keep what was valid */
            hi = lo - gap - 1;
            if (run > hi)
                break;
            lo = hi - run;
            ack_range(s, lo, hi, limited, &newest, &newly);
        }
    }
    if (!s->any_acked || largest > s->largest_acked) {
        s->largest_acked = largest;
        s->any_acked = true;
    }
    if (largest_newly && now >= largest_sent && !s->reliable_path) {
        uint64_t delay = a->ack_delay_us > STREAM_MAX_ACK_DELAY_US ? STREAM_MAX_ACK_DELAY_US
                                                                    : a->ack_delay_us;
        cc_rtt_sample(&s->cc, now - largest_sent, delay);
    }
    if (newly)
        s->pto_count = 0;
    detect_lost(s, now);
    rec_advance_low(s);
}

/* ---- data in ------------------------------------------------------------- */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void window_update_check(stream *s)
{
    uint64_t max = s->rbuf.base + s->cfg.recv_limit;
    if (max - s->adv_max >= s->cfg.recv_limit / 4)
        s->want_ack = true;
}

void stream_deliver(stream *s)
{
    if (s->delivering)
        return;
    s->delivering = true;
    while (!s->paused && !s->failed) {
        uint64_t base = s->rbuf.base;
        uint64_t avail = s->rcv_next - base;
        if (avail < MSG_HDR)
            break;
        uint8_t hdr[MSG_HDR];
        bytering_read(&s->rbuf, base, hdr, MSG_HDR);
        uint32_t len = be32(hdr);
        if (len > PL_MAX_MESSAGE) {
            fail(s, "peer sent an oversized message");
            break;
        }
        if (avail < MSG_HDR + (uint64_t)len)
            break;
        const uint8_t *msg = bytering_peek(&s->rbuf, base + MSG_HDR, len);
        if (!msg) {
            if (!s->scratch && !(s->scratch = malloc(PL_MAX_MESSAGE))) {
                fail(s, "out of memory");
                break;
            }
            bytering_read(&s->rbuf, base + MSG_HDR, s->scratch, len);
            msg = s->scratch;
        }
        if (s->cb.on_message)
            s->cb.on_message(s->user, msg, len);
        bytering_consume(&s->rbuf, base + MSG_HDR + len);
        s->st.bytes_delivered += MSG_HDR + len;
        window_update_check(s);
    }
    if (!s->paused && !s->failed && s->final_known && s->rcv_next == s->final_size &&
        !s->fin_delivered) {
        if (s->rbuf.base != s->final_size) {
            fail(s, "the stream ended inside a message");
        } else {
            s->fin_delivered = true;
            if (s->cb.on_fin)
                s->cb.on_fin(s->user);
        }
    }
    s->delivering = false;
}

/* Place payload bytes; false when they cannot be taken (then the packet is
 * not acknowledged, and the sender will send them again). */
static bool take_bytes(stream *s, const Punchline__Data *d)
{
    uint64_t off = d->offset, end = d->offset + d->payload.len;
    if (end > s->rbuf.base + s->cfg.recv_limit)
        return false; /* beyond the window we gave */
    if (d->fin) {
        if (s->final_known ? s->final_size != end : end < s->rcv_next ||
            (s->rcv_ooo.n && s->rcv_ooo.r[s->rcv_ooo.n - 1].hi > end)) {
            fail(s, "peer changed the end of its stream");
            return false;
        }
        s->final_known = true;
        s->final_size = end;
    } else if (s->final_known && end > s->final_size) {
        fail(s, "peer sent data beyond the end of its stream");
        return false;
    }
    if (end <= s->rcv_next)
        return true; /* all old */
    uint64_t lo = off > s->rcv_next ? off : s->rcv_next;
    if (ranges_covers(&s->rcv_ooo, lo, end))
        return true;
    if (bytering_write(&s->rbuf, lo, d->payload.data + (lo - off), (size_t)(end - lo)) != 0)
        return false;
    s->st.bytes_received += end - lo;
    if (lo > s->rcv_next) {
        size_t n = s->rcv_ooo.n;
        bool extends = n && s->rcv_ooo.r[n - 1].hi == lo;
        if (ranges_add(&s->rcv_ooo, lo, end) != 0)
            return false;
        if (!extends)
            s->ack_now = true; /* a new hole: tell the sender at once (not for
                                  every packet that arrives above it) */
        return true;
    }
    s->rcv_next = end;
    bool repaired = false;
    while (s->rcv_ooo.n && s->rcv_ooo.r[0].lo <= s->rcv_next) {
        if (s->rcv_ooo.r[0].hi > s->rcv_next)
            s->rcv_next = s->rcv_ooo.r[0].hi;
        ranges_drop_below(&s->rcv_ooo, s->rcv_next);
        repaired = true;
    }
    if (repaired)
        s->ack_now = true; /* a hole filled: the sender can move on at once */
    return true;
}

void stream_input_data(stream *s, const Punchline__Data *d, uint64_t now)
{
    if (s->failed)
        return;
    if (!take_bytes(s, d))
        return;
    s->st.packets_received++;
    uint64_t pn = d->pn;
    if (ranges_covers(&s->rcv_pns, pn, pn + 1)) {
        s->ack_now = true; /* a duplicate: our ack may have been lost */
    } else {
        if (!s->rcv_any || pn > s->rcv_largest) {
            if (s->rcv_any && pn != s->rcv_largest + 1)
                s->ack_now = true; /* packets missing below */
            s->rcv_largest = pn;
            s->rcv_largest_at = now;
            s->rcv_any = true;
        } else {
            s->ack_now = true; /* reordered or repaired */
        }
        ranges_add_evict(&s->rcv_pns, pn, pn + 1);
    }
    s->unacked++;
    if (d->ack_now || s->unacked >= STREAM_ACK_EVERY)
        s->ack_now = true;
    else if (!s->ack_at)
        s->ack_at = now + STREAM_MAX_ACK_DELAY_US;
    stream_deliver(s);
}

/* ---- transmit ------------------------------------------------------------ */

static size_t encode_ack(stream *s, uint64_t now, uint8_t *buf, size_t cap)
{
    Punchline__Ack a = PUNCHLINE__ACK__INIT;
    uint64_t rr[2 * WIRE_MAX_ACK_RANGES];
    a.session_id = s->cfg.session_id;
    if (s->rcv_any && s->rcv_pns.n) {
        const ranges *p = &s->rcv_pns;
        size_t top = p->n - 1;
        a.pn_next = s->rcv_largest + 1;
        a.ack_delay_us = now > s->rcv_largest_at ? (uint32_t)(now - s->rcv_largest_at) : 0;
        a.first_range = s->rcv_largest - p->r[top].lo;
        uint64_t lo = p->r[top].lo;
        size_t k = 0;
        for (size_t i = top; i-- > 0 && k < 2 * WIRE_MAX_ACK_RANGES;) {
            rr[k++] = lo - p->r[i].hi;          /* missing numbers */
            rr[k++] = p->r[i].hi - 1 - p->r[i].lo; /* run - 1 */
            lo = p->r[i].lo;
        }
        a.ranges = rr;
        a.n_ranges = k;
    }
    a.stream_next = s->rcv_next;
    a.max_offset = s->rbuf.base + s->cfg.recv_limit;
    a.fin_received = s->final_known && s->rcv_next == s->final_size;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_ACK;
    env.ack = &a;
    int n = wire_encode_udp(&env, buf, cap);
    if (n <= 0)
        return 0;
    s->adv_max = a.max_offset;
    s->unacked = 0;
    s->ack_now = s->want_ack = false;
    s->ack_at = 0;
    s->st.acks_sent++;
    return (size_t)n;
}

static size_t encode_data(stream *s, uint64_t off, uint32_t len, bool fin, bool ack_now,
                          uint64_t now, uint8_t *buf, size_t cap)
{
    if (!rec_room(s))
        return 0;
    uint8_t tmp[STREAM_MSS];
    Punchline__Data d = PUNCHLINE__DATA__INIT;
    d.session_id = s->cfg.session_id;
    d.pn = s->pn_next;
    d.offset = off;
    d.fin = fin;
    d.ack_now = ack_now;
    if (len) {
        const uint8_t *p = bytering_peek(&s->sbuf, off, len);
        if (!p) {
            bytering_read(&s->sbuf, off, tmp, len);
            p = tmp;
        }
        d.payload.data = (uint8_t *)p;
        d.payload.len = len;
    }
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_DATA;
    env.data = &d;
    int n = wire_encode_udp(&env, buf, cap);
    if (n <= 0)
        return 0;
    *rec(s, s->pn_next) = (sent_pkt){.offset = off, .sent = now, .len = len, .in_flight = true, .fin = fin};
    s->pn_next++;
    cc_on_sent(&s->cc, pkt_cost(len), now);
    s->last_sent = now;
    s->st.packets_sent++;
    if (fin)
        s->fin_sent = true;
    return (size_t)n;
}

/* Is there anything to send (retransmission, FIN, new bytes the peer's
 * window admits)? */
static bool have_rtx(const stream *s)
{
    return s->rtx.n > 0 || s->rtx_overflow || (s->fin_lost && !s->fin_acked);
}

static bool have_new(const stream *s)
{
    if (s->snd_next < s->snd_end && s->snd_next < s->peer_max)
        return true;
    return s->fin_queued && !s->fin_sent && s->snd_next == s->snd_end;
}

static bool flow_blocked(const stream *s)
{
    return s->snd_next < s->snd_end && s->snd_next >= s->peer_max;
}

static bool fin_at(const stream *s, uint64_t end)
{
    return s->fin_queued && end == s->snd_end;
}

/* Build the next data packet: lost bytes first, then new ones. */
static size_t next_data(stream *s, uint64_t now, bool probe, uint8_t *buf, size_t cap)
{
    if (s->rtx_overflow && s->rtx.n == 0) {
        s->rtx_overflow = false;
        if (s->sbuf.base < s->snd_next)
            ranges_add(&s->rtx, s->sbuf.base, s->snd_next);
    }
    while (s->rtx.n) {
        range r = s->rtx.r[0];
        if (r.lo < s->sbuf.base)
            r.lo = s->sbuf.base;
        if (r.lo >= r.hi) {
            ranges_drop_below(&s->rtx, r.hi);
            continue;
        }
        uint32_t len = r.hi - r.lo > STREAM_MSS ? STREAM_MSS : (uint32_t)(r.hi - r.lo);
        bool fin = fin_at(s, r.lo + len) && s->snd_next == s->snd_end;
        size_t n = encode_data(s, r.lo, len, fin, probe, now, buf, cap);
        if (n) {
            ranges_drop_below(&s->rtx, r.lo + len);
            s->st.packets_retransmitted++;
            if (fin)
                s->fin_lost = false;
        }
        return n;
    }
    if (s->fin_lost && !s->fin_acked && s->fin_sent) { /* the FIN alone */
        size_t n = encode_data(s, s->snd_end, 0, true, true, now, buf, cap);
        if (n) {
            s->fin_lost = false;
            s->st.packets_retransmitted++;
        }
        return n;
    }
    if (have_new(s)) {
        uint64_t lim = s->snd_end < s->peer_max ? s->snd_end : s->peer_max;
        uint32_t len = lim - s->snd_next > STREAM_MSS ? STREAM_MSS : (uint32_t)(lim - s->snd_next);
        bool fin = fin_at(s, s->snd_next + len);
        /* ask for a quick ack when this packet fills the window or ends
         * what we have, so the sender is not left waiting for a delayed one */
        bool last = s->snd_next + len >= lim;
        bool full = !s->reliable_path && !cc_window_open(&s->cc, pkt_cost(len) + pkt_cost(STREAM_MSS));
        size_t n = encode_data(s, s->snd_next, len, fin, probe || fin || last || full, now, buf, cap);
        if (n)
            s->snd_next += len;
        return n;
    }
    if (probe) {
        /* nothing new: resend the oldest packet in flight, or elicit an Ack
         * (a window probe when flow control blocks us) */
        for (uint64_t pn = s->pn_low; pn < s->pn_next; pn++) {
            sent_pkt *p = rec(s, pn);
            if (p->in_flight && p->offset + p->len > s->sbuf.base) {
                uint64_t lo = p->offset < s->sbuf.base ? s->sbuf.base : p->offset;
                size_t n = encode_data(s, lo, (uint32_t)(p->offset + p->len - lo), p->fin, true, now,
                                       buf, cap);
                if (n)
                    s->st.packets_retransmitted++;
                return n;
            }
        }
        return encode_data(s, s->snd_next, 0, false, true, now, buf, cap);
    }
    return 0;
}

static uint64_t pto_deadline(const stream *s)
{
    if (s->reliable_path)
        return NEVER;
    bool in_flight = s->pn_low < s->pn_next;
    if (!in_flight && !flow_blocked(s))
        return NEVER;
    uint64_t pto = cc_pto(&s->cc, STREAM_MAX_ACK_DELAY_US);
    pto <<= s->pto_count > 10 ? 10 : s->pto_count;
    if (pto > 60000000u)
        pto = 60000000u;
    return s->last_sent + pto;
}

static void timers(stream *s, uint64_t now)
{
    if (s->loss_time && now >= s->loss_time)
        detect_lost(s, now);
    if (!s->loss_time && now >= pto_deadline(s)) {
        s->pto_count++;
        s->probes_due = 1;
        s->st.probes_sent++;
        if (s->pto_count >= PTO_PERSISTENT)
            cc_collapse(&s->cc);
        s->last_sent = now; /* the next PTO counts from the probe */
    }
}

size_t stream_poll_transmit(stream *s, uint64_t now, uint8_t *buf, size_t cap)
{
    if (s->failed)
        return 0;
    if (s->want_ack || s->ack_now || (s->ack_at && now >= s->ack_at))
        return encode_ack(s, now, buf, cap);
    timers(s, now);
    if (s->probes_due) {
        size_t n = next_data(s, now, true, buf, cap);
        s->probes_due--;
        if (n)
            return n;
    }
    if (!have_rtx(s) && !have_new(s))
        return 0;
    if (!s->reliable_path) {
        if (!cc_window_open(&s->cc, pkt_cost(STREAM_MSS)) || cc_pace_time(&s->cc) > now)
            return 0;
    }
    return next_data(s, now, false, buf, cap);
}

uint64_t stream_next_deadline(const stream *s)
{
    if (s->failed)
        return NEVER;
    if (s->want_ack || s->ack_now || s->probes_due)
        return 0;
    uint64_t d = s->ack_at ? s->ack_at : NEVER;
    if ((have_rtx(s) || have_new(s)) &&
        (s->reliable_path || cc_window_open(&s->cc, pkt_cost(STREAM_MSS)))) {
        uint64_t t = s->reliable_path ? 0 : cc_pace_time(&s->cc);
        if (t < d)
            d = t;
    }
    uint64_t t = s->loss_time ? s->loss_time : pto_deadline(s);
    return t < d ? t : d;
}

/* ---- paths ---------------------------------------------------------------- */

void stream_set_reliable(stream *s, bool reliable_path)
{
    s->reliable_path = reliable_path;
}

void stream_path_switch(stream *s, bool reliable_path, uint64_t now)
{
    for (uint64_t pn = s->pn_low; pn < s->pn_next; pn++) {
        sent_pkt *p = rec(s, pn);
        if (p->in_flight) {
            p->in_flight = false;
            requeue(s, p);
        }
    }
    rec_advance_low(s);
    cc_reset(&s->cc);
    s->pto_count = 0;
    s->loss_time = 0;
    s->any_acked = false;
    s->reliable_path = reliable_path;
    s->want_ack = true;
    (void)now;
}

void stream_force_ack(stream *s)
{
    s->want_ack = true;
}

void stream_kick(stream *s, uint64_t now)
{
    if (s->reliable_path || !s->pto_count || s->probes_due ||
        (s->pn_low >= s->pn_next && !flow_blocked(s)))
        return;
    s->probes_due = 1;
    s->st.probes_sent++;
    s->last_sent = now; /* the backoff continues from here until an ack comes */
}

void stream_set_paused(stream *s, bool paused)
{
    s->paused = paused;
    if (!paused)
        window_update_check(s);
}

/* ---- state ----------------------------------------------------------------- */

bool stream_done(const stream *s)
{
    return s->fin_acked && s->fin_delivered;
}

bool stream_idle(const stream *s)
{
    return s->sbuf.base == s->snd_end && (!s->fin_queued || s->fin_acked);
}

uint32_t stream_pto_ms(const stream *s)
{
    return (uint32_t)(cc_pto(&s->cc, STREAM_MAX_ACK_DELAY_US) / 1000);
}

void stream_get_stats(const stream *s, stream_stats *out)
{
    *out = s->st;
    out->srtt_us = s->cc.smoothed_rtt;
    out->min_rtt_us = s->cc.min_rtt;
    out->cwnd = s->cc.cwnd;
    out->in_flight = s->cc.in_flight;
    out->loss_events = s->cc.loss_events;
}
