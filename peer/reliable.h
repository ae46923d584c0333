/* Reliable, ordered message delivery over datagrams: sequence numbers,
 * cumulative + selective acknowledgements, RTT estimation (RFC 6298) and
 * retransmission, a fixed window, and a FIN for half-close.  No congestion
 * control yet (a later issue replaces this with a full stream).
 *
 * No I/O and no clock: the shell feeds Data/Ack messages and time, and sends
 * what rel_poll_transmit() hands out.
 *
 * A message is cut into segments of at most WIRE_MAX_PAYLOAD bytes; the last
 * carries end_of_message.  FIN is a segment of its own after the last data.
 */
#ifndef PL_RELIABLE_H
#define PL_RELIABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define REL_WINDOW 64          /* segments in flight, and receive slots */

typedef struct rel_seg {
    uint32_t seq;
    uint16_t len;
    bool eom, fin;
    bool sacked;
    bool resend;               /* send once more now, even on a reliable path */
    uint8_t tx_count;          /* 0 = never sent */
    uint64_t sent_ms;
    struct rel_seg *next;
    uint8_t data[];
} rel_seg;

typedef struct rel_callbacks {
    void (*on_message)(void *user, const uint8_t *data, size_t len);
    void (*on_fin)(void *user);
} rel_callbacks;

typedef struct rel_config {
    uint64_t session_id;
    size_t queue_limit;        /* bytes queued before rel_send() refuses; default 1 MiB */
    uint32_t rto_initial_ms;   /* default 200 */
    uint32_t rto_min_ms;       /* default 30 */
    uint32_t rto_max_ms;       /* default 4000 */
} rel_config;

typedef struct reliable {
    rel_config cfg;
    rel_callbacks cb;
    void *user;
    /* sender */
    rel_seg *head, *tail;      /* unacknowledged and unsent segments, in seq order */
    uint32_t snd_una;          /* oldest unacknowledged seq */
    uint32_t snd_nxt;          /* next seq to assign */
    size_t queued_bytes;
    bool fin_queued, fin_acked;
    uint32_t srtt_ms, rttvar_ms, rto_ms;
    bool have_rtt;
    uint32_t retransmits;
    /* receiver */
    uint32_t rcv_nxt;
    rel_seg *slot[REL_WINDOW]; /* out-of-order segments, by seq % REL_WINDOW */
    uint8_t *msg;              /* message being reassembled */
    size_t msg_len, msg_cap;
    bool fin_received;
    bool ack_due;
    bool failed;               /* peer violated the protocol (message too big) */
    bool no_retransmit;        /* the path below is reliable (TCP) */
} reliable;

void rel_init(reliable *r, const rel_config *cfg, const rel_callbacks *cb, void *user);
void rel_free(reliable *r);

/* Queue one message (copied).  0, PL_ERR_AGAIN (queue full), PL_ERR_STATE
 * (after rel_shutdown), PL_ERR_TOO_BIG or PL_ERR_NOMEM. */
int rel_send(reliable *r, const void *data, size_t len);
/* Queue a FIN after the data. */
int rel_shutdown(reliable *r);
bool rel_writable(const reliable *r);

void rel_input_data(reliable *r, const Punchline__Data *d, uint64_t now);
void rel_input_ack(reliable *r, const Punchline__Ack *a, uint64_t now);
/* Next Data or Ack datagram (with UDP marker); 0 when nothing is due. */
size_t rel_poll_transmit(reliable *r, uint64_t now, uint8_t *buf, size_t cap);
uint64_t rel_next_deadline(const reliable *r);

/* The path below is reliable (TCP: false) or not (UDP: true, the default).
 * Turning retransmission back on resends everything unacknowledged, since it
 * may have been lost with the old path. */
void rel_set_retransmit(reliable *r, bool on);

/* The connection moved to another path (reliable: TCP).  Everything sent
 * and not yet acknowledged is sent once more on the new path right away,
 * since it may have been lost with the old one (the receiver drops
 * duplicates); then retransmission follows the new path's kind. */
void rel_path_switch(reliable *r, bool reliable_path);

/* Both directions finished: our FIN acknowledged and the peer's received. */
bool rel_done(const reliable *r);
/* Everything we queued has been acknowledged. */
bool rel_idle(const reliable *r);
uint32_t rel_rto(const reliable *r);

#endif
