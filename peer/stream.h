/* The reliable, ordered, flow-controlled byte stream of one connection,
 * carrying length-prefixed application messages, on any path
 * (docs/PROTOCOL.md 6).  Modelled on QUIC's transport (RFC 9000, RFC 9002):
 *
 *  - Data packets carry stream bytes at an offset and a packet number that
 *    is never reused, so every acknowledgement is unambiguous (no Karn's
 *    rule) and a retransmission is simply the lost bytes in a new packet;
 *  - Acks list received packet numbers as ranges (selective), with the
 *    delay the receiver held the ack, its contiguous stream position and
 *    its flow-control limit;
 *  - loss detection by packet threshold (3) and time threshold (9/8 RTT),
 *    probe timeouts for tail loss; NewReno with pacing (congestion.h);
 *  - flow control: the receiver buffers at most recv_limit bytes beyond
 *    what the application consumed, and says so in every Ack; while the
 *    application pauses delivery the window closes and the sender stops.
 *
 * On a TCP path (reliable below) loss detection and congestion control are
 * off: TCP does both; the stream keeps flow control and acknowledgements,
 * so on a switch back to UDP it knows exactly what to resend.
 *
 * Messages: each is a 4-byte big-endian length then its bytes, back to back
 * in the stream, so small messages share packets.
 *
 * No I/O and no clock (ARCHITECTURE.md rule 1): the shell feeds decoded
 * Data/Ack and the time in microseconds, sends what stream_poll_transmit()
 * hands out and calls again at stream_next_deadline().  Memory is bounded:
 * send_limit + recv_limit bytes of buffers (rounded up to powers of two,
 * allocated only as used), a packet record per packet in flight (at most
 * STREAM_MAX_PACKETS) and fixed-size range sets. */
#ifndef PL_STREAM_H
#define PL_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bytering.h"
#include "congestion.h"
#include "ranges.h"
#include "wire.h"

#define STREAM_MSS WIRE_MAX_PAYLOAD        /* payload bytes per packet */
#define STREAM_MIN_BUFFER (128u * 1024)    /* smallest send/recv limit; also the window a
                                              sender may assume before the first Ack */
#define STREAM_DEFAULT_BUFFER (4u * 1024 * 1024)
#define STREAM_MAX_BUFFER (256u * 1024 * 1024)
#define STREAM_MAX_PACKETS 65536u          /* packet records in flight */
#define STREAM_ACK_EVERY 8                 /* ack at least every 8th packet (see PROTOCOL.md 6.3) */
#define STREAM_MAX_ACK_DELAY_US 5000u      /* otherwise within this */
#define STREAM_PACKET_OVERHEAD 100u        /* bytes a packet costs beyond its payload (cc) */

typedef struct stream_callbacks {
    void (*on_message)(void *user, const uint8_t *data, size_t len);
    void (*on_fin)(void *user);
} stream_callbacks;

typedef struct stream_config {
    uint64_t session_id;
    size_t send_limit;  /* bytes queued, unsent + unacknowledged; 0 = default */
    size_t recv_limit;  /* receive window / buffer; 0 = default */
} stream_config;

typedef struct stream_stats {
    uint64_t bytes_queued, bytes_acked;     /* stream bytes (with message headers) */
    uint64_t bytes_received, bytes_delivered;
    uint64_t packets_sent, packets_received, packets_lost, packets_retransmitted;
    uint64_t acks_sent, probes_sent;
    uint64_t srtt_us, min_rtt_us, cwnd, in_flight;
    uint32_t loss_events;
} stream_stats;

typedef struct sent_pkt {
    uint64_t offset;
    uint64_t sent;        /* µs */
    uint32_t len;
    bool in_flight;       /* not yet acknowledged or declared lost */
    bool fin;
} sent_pkt;

typedef struct stream {
    stream_config cfg;
    stream_callbacks cb;
    void *user;
    /* ---- sender ---- */
    bytering sbuf;               /* base: every byte below was acknowledged */
    uint64_t snd_end;            /* end of the queued bytes */
    uint64_t snd_next;           /* first byte never sent */
    uint64_t peer_max;           /* the peer's flow-control limit */
    bool fin_queued, fin_sent, fin_acked, fin_lost;
    ranges rtx;                  /* stream bytes declared lost, to send again */
    bool rtx_overflow;           /* rtx could not hold them all: resend from base */
    sent_pkt *pkts;              /* ring of records for pn_low .. pn_next-1 */
    size_t pcap;                 /* power of two */
    uint64_t pn_next, pn_low;
    uint64_t largest_acked;
    bool any_acked;
    uint64_t last_sent;          /* µs, newest ack-eliciting packet */
    uint32_t pto_count;
    uint32_t probes_due;
    uint64_t loss_time;          /* a packet becomes lost by time then; 0 = none */
    cc cc;
    bool reliable_path;          /* TCP below: no loss detection, no cc */
    bool want_ack;               /* send an Ack at once, even with nothing new */
    /* ---- receiver ---- */
    bytering rbuf;               /* base: consumed by the application */
    uint64_t rcv_next;           /* every byte below was received */
    ranges rcv_ooo;              /* received above rcv_next */
    ranges rcv_pns;              /* received packet numbers */
    bool rcv_any;
    uint64_t rcv_largest, rcv_largest_at;
    uint32_t unacked;            /* packets since our last Ack */
    bool ack_now;
    uint64_t ack_at;             /* delayed ack deadline; 0 = none */
    uint64_t adv_max;            /* max_offset in our last Ack */
    bool final_known, fin_delivered;
    uint64_t final_size;
    bool paused, delivering;
    uint8_t *scratch;            /* a message that wraps around rbuf */
    bool failed;
    const char *fail_reason;
    stream_stats st;
} stream;

/* 0 or PL_ERR_NOMEM. */
int stream_init(stream *s, const stream_config *cfg, const stream_callbacks *cb, void *user);
void stream_free(stream *s);

/* Queue one message (copied, with its 4-byte length).  0, PL_ERR_AGAIN
 * (not enough room: retry when stream_writable()), PL_ERR_STATE (after
 * stream_shutdown), PL_ERR_TOO_BIG. */
int stream_send(stream *s, const void *data, size_t len);
/* Room for a message of PL_MAX_MESSAGE bytes. */
bool stream_writable(const stream *s);
/* End the stream after what is queued. */
int stream_shutdown(stream *s);

void stream_input_data(stream *s, const Punchline__Data *d, uint64_t now);
void stream_input_ack(stream *s, const Punchline__Ack *a, uint64_t now);
/* The next Data or Ack datagram (UDP form, with marker); 0 when nothing is
 * due now. */
size_t stream_poll_transmit(stream *s, uint64_t now, uint8_t *buf, size_t cap);
/* When to call stream_poll_transmit again; UINT64_MAX: only on input. */
uint64_t stream_next_deadline(const stream *s);

/* First path: reliable (TCP) or not. */
void stream_set_reliable(stream *s, bool reliable_path);
/* The connection moved to another path: everything in flight may have been
 * lost with the old one and is sent again; RTT and window start afresh. */
void stream_path_switch(stream *s, bool reliable_path, uint64_t now);
/* Send an Ack now (announces the path; answers a probe). */
void stream_force_ack(stream *s);
/* The path answered again while probe timeouts were backing off (an outage
 * ended: a NAT mapping was renewed, the peer moved to a new address): send
 * one probe now instead of waiting out the backoff.  No-op unless a probe
 * timeout has fired and something is in flight (or flow control blocks). */
void stream_kick(stream *s, uint64_t now);

/* Pause or resume delivery to the application (flow control). */
void stream_set_paused(stream *s, bool paused);
/* Deliver what is complete and not paused (after a resume). */
void stream_deliver(stream *s);

/* Both directions finished: our FIN acknowledged, the peer's delivered. */
bool stream_done(const stream *s);
/* Everything we queued has been acknowledged. */
bool stream_idle(const stream *s);
/* Current probe timeout, ms (for the close linger). */
uint32_t stream_pto_ms(const stream *s);
void stream_get_stats(const stream *s, stream_stats *out);

#endif
