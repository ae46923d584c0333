/* RTT estimation, NewReno congestion control and pacing for the stream on
 * UDP paths, as RFC 9002 specifies them for QUIC (s5 RTT, s7 congestion
 * control, s7.7 pacing), in bytes and microseconds.  No I/O, no clock.
 *
 * The stream core tells it what it sent, what was acknowledged and what
 * was declared lost; it answers how much may be in flight (cwnd) and when
 * the next packet may leave (pacing: 1.25 x cwnd per smoothed RTT, with a
 * burst allowance of max(10 packets, 1 ms of that rate) so a 1-ms event
 * loop tick does not throttle a fast path). */
#ifndef PL_CONGESTION_H
#define PL_CONGESTION_H

#include <stdbool.h>
#include <stdint.h>

#define CC_MAX_DATAGRAM 1350u            /* bytes a full Data packet costs on the wire */
#define CC_INITIAL_WINDOW (10u * CC_MAX_DATAGRAM) /* RFC 9002 s7.2: 10 x max datagram */
#define CC_MIN_WINDOW (2u * CC_MAX_DATAGRAM)
#define CC_INITIAL_RTT_US 100000u        /* before the first sample (RFC 9002 says 333 ms;
                                            the DTLS handshake already proved the path) */
#define CC_GRANULARITY_US 1000u          /* kGranularity, RFC 9002 s6.1.2 */

typedef struct cc {
    /* RTT, RFC 9002 s5 */
    bool have_rtt;
    uint64_t latest_rtt, smoothed_rtt, rttvar, min_rtt;
    /* NewReno, RFC 9002 s7 */
    uint64_t cwnd, ssthresh;
    uint64_t in_flight;              /* bytes sent, not yet acked or lost */
    uint64_t recovery_start;         /* packets sent before this do not reduce again */
    bool recovering;                 /* recovery_start is valid */
    uint64_t ack_credit;             /* congestion avoidance: acked bytes not yet counted */
    /* pacing */
    uint64_t pace_at;                /* earliest time of the next packet */
    /* statistics */
    uint32_t loss_events;
} cc;

void cc_init(cc *c);
/* A new path: forget RTT and window, keep the statistics. */
void cc_reset(cc *c);

/* RFC 9002 s5.3: a sample from the newest acknowledged packet. */
void cc_rtt_sample(cc *c, uint64_t rtt, uint64_t ack_delay);
/* Probe timeout without backoff (s6.2.1), including max_ack_delay. */
uint64_t cc_pto(const cc *c, uint64_t max_ack_delay);
/* Time threshold for loss (s6.1.2): 9/8 x max(smoothed, latest), at least
 * the granularity. */
uint64_t cc_loss_delay(const cc *c);

/* A packet of `bytes` left at `now`. */
void cc_on_sent(cc *c, uint64_t bytes, uint64_t now);
/* One packet (sent at `sent`) acknowledged; `limited`: the sender was
 * using its window (s7.8: no growth when application-limited). */
void cc_on_acked(cc *c, uint64_t bytes, uint64_t sent, bool limited);
/* Packets were declared lost: `bytes` in all; the newest was sent at
 * `newest_sent`.  One window reduction per round trip (s7.3.2). */
void cc_on_lost(cc *c, uint64_t bytes, uint64_t newest_sent, uint64_t now);
/* Bytes leave flight without a congestion signal (path switch). */
void cc_forget(cc *c, uint64_t bytes);
/* Persistent congestion (s7.6): back to the minimum window. */
void cc_collapse(cc *c);

/* May a packet of `bytes` enter flight now (window)? */
bool cc_window_open(const cc *c, uint64_t bytes);
/* When may the next packet leave (pacing)?  <= now: at once. */
uint64_t cc_pace_time(const cc *c);

#endif
