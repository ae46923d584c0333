/* UDP hole punching core: connectivity checks between our one UDP socket
 * and every remote candidate, nomination, keepalives, dead-path detection.
 * No I/O and no clock: the shell feeds probes and time, and sends what
 * punch_poll_transmit() hands out (ARCHITECTURE.md rule 1).
 *
 * Modelled on ICE (RFC 8445) with aggressive nomination: the controlling
 * side nominates the first pair whose check it sees answered; the controlled
 * side selects the nominated pair once that pair is verified its way too
 * (its own check answered, or data arriving on it).  Every probe carries a
 * truncated HMAC-SHA256 under the session secret, so a third host can
 * neither answer checks nor steer the session (docs/PROTOCOL.md).
 */
#ifndef PL_PUNCH_H
#define PL_PUNCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "probe.h"
#include "wire.h"

#define PUNCH_MAX_PAIRS 40     /* remote candidates incl. peer-reflexive (RFC 8445 s19.5.1) */
#define PUNCH_MAX_RESPONSES 16 /* responses waiting to be sent */
/* Once connected (docs/PROTOCOL.md 4.2): */
#define PUNCH_BUSY_KEEPALIVE_MS 2000 /* consent interval while the connection carries data */
#define PUNCH_SUSPECT_MS 250         /* consent checks while the path is suspect */
#define PUNCH_MIGRATE_MS 1000        /* suspect and unanswered this long: move to the address
                                        the peer now sends from, once verified */
#define PUNCH_STALL_MS 3000          /* suspect and unanswered this long: stalled */

enum punch_state {
    PUNCH_IDLE = 0,       /* created, not started */
    PUNCH_CHECKING,       /* probing */
    PUNCH_CONNECTED,      /* a pair is selected and verified both ways */
    PUNCH_FAILED,         /* no pair worked within timeout_ms */
    PUNCH_DEAD            /* the selected pair stopped answering */
};

typedef struct punch_config {
    uint64_t session_id;
    uint8_t secret[WIRE_SECRET_LEN];
    bool controlling;
    uint32_t timeout_ms;       /* checking gives up after; default 10000 */
    uint32_t keepalive_ms;     /* consent/keepalive interval once connected; default 15000 */
    uint32_t path_timeout_ms;  /* dead after this long without an answer; default 30000 */
    uint32_t rto_initial_ms;   /* first retransmission of a check; default 50 */
    uint32_t rto_max_ms;       /* retransmission backoff cap; default 500 */
    uint64_t tid_seed;         /* random; makes transaction ids unpredictable */
} punch_config;

typedef struct punch_pair {
    netaddr remote;
    int kind;                  /* Punchline__CandidateKind */
    uint64_t last_tid;         /* newest request sent on this pair */
    uint64_t next_send_ms;     /* next request due (UINT64_MAX: none) */
    uint32_t interval_ms;
    bool got_response;         /* our check was answered: both ways work */
    bool got_request;          /* their check reached us */
    uint64_t last_req_sent_ms; /* when we last sent a request on this pair (0 never) */
    uint64_t last_resp_ms;     /* when our last check on this pair was answered (0 never) */
    uint64_t last_req_rx_ms;   /* when their last request arrived on this pair (0 never) */
} punch_pair;

typedef struct punch_response {
    netaddr to;
    uint64_t tid;
    bool nominate;
} punch_response;

typedef struct punch {
    punch_config cfg;
    int state;
    punch_pair pairs[PUNCH_MAX_PAIRS];
    size_t npairs;
    int nominated;             /* pair index, -1 none (controlling: being nominated) */
    int selected;              /* pair index once CONNECTED, else -1 */
    bool nominate_answered;
    uint64_t start_ms;
    uint64_t connected_ms;
    uint64_t last_rx_ms;       /* last authenticated probe from the selected pair */
    bool busy;                 /* punch_set_busy(): keepalives every PUNCH_BUSY_KEEPALIVE_MS */
    uint64_t suspect_since;    /* punch_suspect() or a request from a new address, and no
                                  answer on the selected pair since; 0 = not suspect */
    bool stalled;              /* suspect for PUNCH_STALL_MS (punch_stalled) */
    uint32_t answers;          /* answers to our checks on the selected pair (a counter) */
    uint32_t migrations;       /* times the selected pair moved to a new peer address */
    uint64_t tid_counter;
    punch_response resp[PUNCH_MAX_RESPONSES];
    size_t nresp;
    netaddr mapped;            /* our address as the peer saw it (from responses) */
    size_t rejected;           /* probes dropped: bad MAC, wrong session, reflections */
    probe_key key;
} punch;

void punch_init(punch *p, const punch_config *cfg);
/* Add a remote candidate (duplicates and unusable addresses are ignored).
 * Returns true if added. */
bool punch_add_remote(punch *p, const netaddr *a, int kind);
void punch_start(punch *p, uint64_t now);

/* A decoded Probe arrived from `from`.  Returns true if it authenticated and
 * was used, false if it was ignored. */
bool punch_input(punch *p, const Punchline__Probe *m, const netaddr *from, uint64_t now);
/* Data for this session arrived from `from`: on the controlled side this
 * confirms a nominated pair (the controlling side only sends data after its
 * nomination was answered).  Returns true if `from` is the selected pair. */
bool punch_data_seen(punch *p, const netaddr *from, uint64_t now);
/* Connected: the connection carries data (the stream has bytes in flight,
 * or received some within a keepalive interval).  Consent checks then run
 * every PUNCH_BUSY_KEEPALIVE_MS (if keepalive_ms is longer), so a NAT
 * mapping that was lost or moved is renewed or reported to the peer soon
 * even by a side that only receives. */
void punch_set_busy(punch *p, bool busy, uint64_t now);
/* Connected: the shell has reason to doubt the selected pair (its stream
 * has data out and no acknowledgement comes back).  Consent checks go every
 * PUNCH_SUSPECT_MS until one is answered; a request from the peer from a
 * new address makes the core suspect on its own.  While suspect and without
 * an answer on the selected pair, the core moves (migrates) to a pair on
 * which the peer's own requests now arrive and our check was answered,
 * after PUNCH_MIGRATE_MS; after PUNCH_STALL_MS the pair counts as stalled
 * (punch_stalled). */
void punch_suspect(punch *p, uint64_t now);
/* Connected, but suspect and unanswered for PUNCH_STALL_MS: the path should
 * not carry the stream while another works.  It recovers with the next
 * answer; it is dead at path_timeout_ms as before. */
bool punch_stalled(const punch *p);
/* Advance timers: retransmissions, keepalives, failure and death. */
void punch_tick(punch *p, uint64_t now);
/* Next datagram to send, encoded with the UDP marker.  Returns its length,
 * or 0 when nothing is due.  Call until it returns 0. */
size_t punch_poll_transmit(punch *p, uint64_t now, netaddr *to, uint8_t *buf, size_t cap);
/* Earliest time punch_tick()/punch_poll_transmit() has work; UINT64_MAX none. */
uint64_t punch_next_deadline(const punch *p);

int punch_state(const punch *p);
/* The selected remote address, or NULL before CONNECTED. */
const netaddr *punch_remote(const punch *p);

#endif
