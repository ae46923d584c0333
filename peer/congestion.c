#include "congestion.h"

#include <string.h>

void cc_init(cc *c)
{
    memset(c, 0, sizeof(*c));
    cc_reset(c);
}

void cc_reset(cc *c)
{
    uint32_t losses = c->loss_events;
    memset(c, 0, sizeof(*c));
    c->loss_events = losses;
    c->smoothed_rtt = CC_INITIAL_RTT_US;
    c->rttvar = CC_INITIAL_RTT_US / 2;
    c->cwnd = CC_INITIAL_WINDOW;
    c->ssthresh = UINT64_MAX;
}

void cc_rtt_sample(cc *c, uint64_t rtt, uint64_t ack_delay)
{
    c->latest_rtt = rtt;
    if (!c->have_rtt) { /* s5.3: first sample */
        c->have_rtt = true;
        c->min_rtt = rtt;
        c->smoothed_rtt = rtt;
        c->rttvar = rtt / 2;
        return;
    }
    if (rtt < c->min_rtt)
        c->min_rtt = rtt;
    /* the peer's ack delay counts only if it does not push below min_rtt */
    uint64_t adjusted = rtt >= c->min_rtt + ack_delay ? rtt - ack_delay : rtt;
    uint64_t diff = c->smoothed_rtt > adjusted ? c->smoothed_rtt - adjusted : adjusted - c->smoothed_rtt;
    c->rttvar = (3 * c->rttvar + diff) / 4;
    c->smoothed_rtt = (7 * c->smoothed_rtt + adjusted) / 8;
}

uint64_t cc_pto(const cc *c, uint64_t max_ack_delay)
{
    uint64_t v = 4 * c->rttvar;
    if (v < CC_GRANULARITY_US)
        v = CC_GRANULARITY_US;
    return c->smoothed_rtt + v + max_ack_delay;
}

uint64_t cc_loss_delay(const cc *c)
{
    uint64_t r = c->smoothed_rtt > c->latest_rtt ? c->smoothed_rtt : c->latest_rtt;
    r = r * 9 / 8;
    return r < CC_GRANULARITY_US ? CC_GRANULARITY_US : r;
}

void cc_on_sent(cc *c, uint64_t bytes, uint64_t now)
{
    c->in_flight += bytes;
    /* s7.7: interval = smoothed_rtt x size / (1.25 x cwnd) */
    uint64_t interval = c->smoothed_rtt * bytes * 4 / (c->cwnd * 5);
    uint64_t burst = 10 * interval;
    if (burst < 1000)
        burst = 1000;
    uint64_t floor = now > burst ? now - burst : 0; /* idle credit: one burst */
    if (c->pace_at < floor)
        c->pace_at = floor;
    c->pace_at += interval;
}

static void leave_flight(cc *c, uint64_t bytes)
{
    c->in_flight = c->in_flight > bytes ? c->in_flight - bytes : 0;
}

void cc_on_acked(cc *c, uint64_t bytes, uint64_t sent, bool limited)
{
    leave_flight(c, bytes);
    if (c->recovering && sent < c->recovery_start)
        return; /* s7.3.2: no growth for packets sent before recovery began */
    c->recovering = false;
    if (!limited)
        return;
    if (c->cwnd < c->ssthresh) { /* slow start */
        c->cwnd += bytes;
        return;
    }
    /* congestion avoidance: one max datagram per window acknowledged */
    c->ack_credit += bytes;
    if (c->ack_credit >= c->cwnd) {
        c->ack_credit -= c->cwnd;
        c->cwnd += CC_MAX_DATAGRAM;
    }
}

void cc_on_lost(cc *c, uint64_t bytes, uint64_t newest_sent, uint64_t now)
{
    leave_flight(c, bytes);
    if (c->recovering && newest_sent < c->recovery_start)
        return; /* already reduced for this round trip */
    c->recovering = true;
    c->recovery_start = now;
    c->loss_events++;
    c->ssthresh = c->cwnd / 2; /* kLossReductionFactor 0.5 */
    if (c->ssthresh < CC_MIN_WINDOW)
        c->ssthresh = CC_MIN_WINDOW;
    c->cwnd = c->ssthresh;
    c->ack_credit = 0;
}

void cc_forget(cc *c, uint64_t bytes)
{
    leave_flight(c, bytes);
}

void cc_collapse(cc *c)
{
    c->cwnd = CC_MIN_WINDOW;
    c->recovering = false;
}

bool cc_window_open(const cc *c, uint64_t bytes)
{
    return c->in_flight + bytes <= c->cwnd;
}

uint64_t cc_pace_time(const cc *c)
{
    return c->pace_at;
}
