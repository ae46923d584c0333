/* TCP hole punching core: paced simultaneous-open attempts from one local
 * port to every remote TCP candidate, authenticated checks on each
 * established stream, and nomination of exactly one stream.  No I/O and no
 * clock: the shell creates/closes sockets when asked (tcpp_poll_action),
 * reports what happened (connected, accepted, failed, closed), carries the
 * frames tcpp_poll_transmit hands out, and feeds back the Probes it reads.
 *
 * Why paced attempts: the first SYN usually reaches the far NAT before the
 * far side has sent its own SYN, and is dropped; the kernel would resend it
 * only after its 1 s initial RTO (RFC 6298).  Closing the attempt and
 * connecting again from the same port every 50..200 ms keeps the time to
 * connect near one round trip.
 *
 * Why a check on each stream: a simultaneous open, a connect racing an
 * accept, and connections to several candidates can leave more than one
 * stream.  Probes (with the session MAC, as on UDP) prove each stream leads
 * to our peer, and the controlling side nominates one; both keep that one
 * and close the rest (docs/PROTOCOL.md, "TCP punching").
 */
#ifndef PL_TCP_PUNCH_H
#define PL_TCP_PUNCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "probe.h"
#include "wire.h"

#define TCPP_MAX_CANDS 17
#define TCPP_MAX_STREAMS 8

enum tcpp_state { TCPP_IDLE = 0, TCPP_CHECKING, TCPP_CONNECTED, TCPP_FAILED, TCPP_DEAD };

enum tcpp_action_kind {
    TCPP_ACT_NONE = 0,
    TCPP_ACT_CONNECT,        /* (re)start an attempt to cand: close the old attempt socket first */
    TCPP_ACT_ABORT_ATTEMPT,  /* stop the attempt to cand (close its socket) */
    TCPP_ACT_CLOSE_STREAM    /* close stream (a duplicate, or the session failed) */
};

typedef struct tcpp_action {
    int kind;
    int cand;
    int stream;
} tcpp_action;

typedef struct tcpp_cand {
    netaddr remote;
    uint64_t next_attempt_ms;  /* UINT64_MAX: no more attempts */
    uint32_t interval_ms;
    uint32_t attempts;
    bool attempt_open;         /* the shell has a socket in SYN_SENT for it */
    bool established;
} tcpp_cand;

typedef struct tcpp_stream {
    bool used;
    bool closing;              /* CLOSE_STREAM emitted */
    int cand;                  /* -1: accepted on the listening socket */
    netaddr remote;
    bool req_queued, resp_queued, nominate_queued;
    uint64_t resp_tid;         /* tid of the request to answer */
    bool resp_nominate;
    uint64_t last_tid;         /* newest request we sent */
    bool got_request;          /* the peer proved itself on this stream */
    bool got_response;         /* our check was answered */
    bool nominated;            /* controlling: nomination sent; controlled: received */
    uint64_t established_ms;
} tcpp_stream;

typedef struct tcpp_config {
    uint64_t session_id;
    uint8_t secret[WIRE_SECRET_LEN];
    bool controlling;
    uint32_t timeout_ms;           /* checking gives up after; default 10000 */
    uint32_t attempt_initial_ms;   /* first re-attempt after; default 50 */
    uint32_t attempt_max_ms;       /* re-attempt interval cap; default 200 */
    uint32_t keepalive_ms;         /* probe on the selected stream; default 15000 */
    uint32_t path_timeout_ms;      /* dead after no answer for; default 30000 */
    uint64_t tid_seed;
} tcpp_config;

typedef struct tcp_punch {
    tcpp_config cfg;
    int state;
    tcpp_cand cands[TCPP_MAX_CANDS];
    size_t ncands;
    tcpp_stream streams[TCPP_MAX_STREAMS];
    int selected;              /* stream index once CONNECTED */
    int nominating;            /* controlling: stream being nominated */
    uint64_t start_ms, connected_ms, last_rx_ms, next_keepalive_ms;
    uint64_t tid_counter;
    size_t rejected;
    const char *fail_reason;   /* static text when FAILED/DEAD */
    probe_key key;
} tcp_punch;

void tcpp_init(tcp_punch *t, const tcpp_config *cfg);
bool tcpp_add_remote(tcp_punch *t, const netaddr *a);
void tcpp_start(tcp_punch *t, uint64_t now);

/* Shell reports. */
/* The attempt to cand completed its handshake: returns the stream index the
 * shell must use from now on, or -1 (close the socket). */
int tcpp_on_connected(tcp_punch *t, int cand, uint64_t now);
/* The attempt to cand failed (RST, unreachable): it is retried on schedule. */
void tcpp_on_attempt_failed(tcp_punch *t, int cand, uint64_t now);
/* A connection for this session arrived on the listening socket (the shell
 * learned the session from its first Probe).  Stream index or -1. */
int tcpp_on_accepted(tcp_punch *t, const netaddr *remote, uint64_t now);
/* The stream hit EOF or an error. */
void tcpp_on_stream_closed(tcp_punch *t, int stream, uint64_t now);
/* A Probe arrived on a stream.  Returns true if it authenticated. */
bool tcpp_input(tcp_punch *t, int stream, const Punchline__Probe *m, uint64_t now);
/* Any authenticated traffic (Data/Ack) on the selected stream refreshes it. */
void tcpp_note_rx(tcp_punch *t, int stream, uint64_t now);

void tcpp_tick(tcp_punch *t, uint64_t now);
/* Next socket action due; kind TCPP_ACT_NONE when there is none. */
bool tcpp_poll_action(tcp_punch *t, uint64_t now, tcpp_action *out);
/* Next Probe envelope (no framing, no UDP marker) to send on *stream. */
size_t tcpp_poll_transmit(tcp_punch *t, uint64_t now, int *stream, uint8_t *buf, size_t cap);
uint64_t tcpp_next_deadline(const tcp_punch *t);

int tcpp_state(const tcp_punch *t);
/* Selected stream index, -1 before CONNECTED. */
int tcpp_selected(const tcp_punch *t);

#endif
