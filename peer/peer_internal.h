/* Internals shared by peer.c (the pl_peer shell and UDP socket), control.c
 * (the rendezvous control connection) and conn.c (one pl_conn). */
#ifndef PL_PEER_INTERNAL_H
#define PL_PEER_INTERNAL_H

#include <ev.h>

#include "addr.h"
#include "frame.h"
#include "identity.h"
#include "secure.h"
#include "tls_stream.h"
#include "log.h"
#include "names.h"
#include "pathsel.h"
#include "punch.h"
#include "punchline/punchline.h"
#include "stream.h"
#include "tcp_link.h"
#include "tcp_punch.h"
#include "wire.h"

enum ctl_state {
    CTL_CONNECTING = 0,   /* TCP connect in progress */
    CTL_HELLO,            /* connected, waiting for ServerHello (the nonce to sign) */
    CTL_TLS,              /* TLS handshake with the rendezvous */
    CTL_RETRY_WAIT,       /* lost the rendezvous after registering: reconnect at retry_at */
    CTL_REGISTERING,      /* Register sent, waiting for RegisterResult */
    CTL_BINDING,          /* sending UdpBind until UdpBound */
    CTL_REGISTERED,
    CTL_FAILED
};

enum relay_tcp_state {
    RT_IDLE = 0,            /* not opened (yet) */
    RT_CONNECTING,          /* TCP connect to the rendezvous */
    RT_WAIT_READY,          /* RelayOpen sent, waiting for RelayReady */
    RT_UP,                  /* spliced to the peer */
    RT_FAILED               /* refused, closed or never offered */
};

enum conn_state {
    CONN_WAIT_REGISTER = 0, /* outgoing, before the peer is registered */
    CONN_REQUESTED,         /* ConnectRequest sent, waiting for PunchStart */
    CONN_INCOMING,          /* IncomingConnection seen, waiting for PunchStart */
    CONN_PUNCHING,
    CONN_OPEN,              /* path up */
    CONN_LINGER,            /* both sides finished; answering late retransmissions */
    CONN_CLOSED             /* on_closed pending or delivered */
};

struct pl_conn {
    pl_peer *peer;
    struct pl_conn *next;
    int state;
    char peer_name[NAME_MAX_LEN + 1];
    bool outgoing;
    uint32_t request_id;
    uint64_t session_id;
    bool have_candidates;
    netaddr remote_cands[WIRE_MAX_CANDIDATES];
    int remote_kinds[WIRE_MAX_CANDIDATES];
    bool remote_tcp[WIRE_MAX_CANDIDATES];
    size_t n_remote;
    int transport;            /* PL_TRANSPORT_* asked for (caller) or told (callee) */
    bool want_udp, want_tcp;  /* which punching cores run */
    bool want_relay;          /* relay-first: the relay paths run too */
    bool relay_udp_offered, relay_tcp_offered; /* RELAY candidates from the server */
    punch pr;                 /* relay-udp: checks through the rendezvous */
    bool pr_on;
    tcp_link *rlink;          /* relay-tcp connection to the rendezvous */
    int rt_state;             /* RT_* */
    uint64_t rt_open_at;      /* when to open relay-tcp (UINT64_MAX: never) */
    char rt_why[96];          /* why relay-tcp failed */
    uint64_t repunch_at;      /* next direct punching round (UINT64_MAX: none) */
    uint32_t repunch_ms;      /* current backoff */
    int active;               /* PL_PATH_* carrying the stream, NONE before connected */
    int first_nominated;      /* controlled side: path of the first nomination received */
    uint64_t punch_start_ms;
    uint64_t connected_ms;    /* when the first path came up */
    uint64_t path_ms;         /* when the active path was activated */
    pl_conn_callbacks cb;
    void *user;
    bool callbacks_set;
    uint64_t start_ms;
    uint64_t deadline_ms;     /* connect deadline, then linger end */
    punch pu;                 /* UDP punching */
    tcp_punch tp;             /* TCP punching */
    tcp_link *attempts[TCPP_MAX_CANDS];   /* connecting sockets, by candidate */
    tcp_link *streams[TCPP_MAX_STREAMS];  /* established streams, by tp stream index */
    /* End-to-end channel (secure.h): DTLS over the active path.  Data, Ack
     * and Close travel only inside it. */
    secure *sec;
    bool sec_started;
    bool sec_delivered;       /* the last secure_input delivered an application record */
    uint64_t hs_deadline;     /* channel must be open by then (set at first activation) */
    bool have_key_hash;       /* the rendezvous told us the peer's key hash */
    uint8_t key_hash[ID_HASH_LEN];  /* expected key: pinned, else from PunchStart */
    bool pinned;
    char peer_id[ID_TEXT_LEN + 1];  /* verified id, "" before */
    stream str;               /* the reliable byte stream (stream.h) */
    bool str_blocked;         /* stream_send said AGAIN: report on_writable */
    bool paused;              /* pl_conn_pause(): delivery stopped */
    bool deliver_pending;     /* resumed: deliver from the next pump */
    bool pump_soon;           /* conn_pump_soon() armed the timer at 0 */
    uint64_t nopath_since;    /* connected, but no path up since (0 = a path is up) */
    /* watch_active(): consent on the UDP path that carries the stream */
    uint64_t rx_packets_seen; /* stream packets received at the last look */
    uint64_t data_rx_ms;      /* when stream data last arrived (0 never) */
    uint32_t pu_answers, pr_answers; /* consent answers seen (punch.answers) */
    uint32_t pu_migrations;   /* punch.migrations seen */
    int close_status;
    bool in_callback;         /* defer destruction while the app runs */
    ev_timer timer;
    ev_idle reaper;           /* delivers on_closed from the loop */
};

/* udp_out.c: datagrams queued for one UDP_SEGMENT sendmsg() */
typedef struct udp_batch {
    int depth;                /* peer_udp_batch_begin() nesting; 0 = send at once */
    bool gso_off;             /* the kernel refused UDP_SEGMENT: never again */
    bool short_tail;          /* the last datagram is shorter: the batch is closed */
    netaddr to;
    uint16_t seg;             /* size of every datagram but the last */
    unsigned n;
    size_t len;
    uint8_t *buf;             /* BATCH_MAX_BYTES, allocated on first use */
} udp_batch;

struct pl_peer {
    struct ev_loop *loop;
    pl_logger log;
    char *server_str, *name, *bind_str, *token_str;
    identity *ident;          /* our key; never NULL after pl_peer_new */
    tls_conf *tls_conf;       /* TLS to the rendezvous configured, else NULL */
    tls_stream *tls;          /* the control connection's TLS session */
    char *server_host;        /* host part of cfg->server (TLS name check) */
    /* stun_client.c: reflexive address from a STUN server */
    bool stun_on;
    netaddr stun_server;
    netaddr stun_mapped;      /* len 0 until answered */
    uint8_t stun_tid[12];
    int stun_tries;           /* transmissions of the current transaction; 0 = none open */
    uint32_t stun_rto_ms;
    ev_timer stun_w;
    pl_peer_config cfg;       /* strings point at the copies above */
    netaddr server;
    int udp_fd;
    udp_batch ub;
    ev_io udp_w;
    uint16_t udp_port;
    /* TCP: the control connection, the listener and every punching attempt
     * share one local port, so the rendezvous sees the NAT mapping that
     * attempts will use (the server-reflexive TCP candidate). */
    netaddr tcp_local;
    int listen_fd;
    ev_io listen_w;
    tcp_link *pending;        /* accepted, waiting for a first Probe naming the session */
    size_t npending;
    ev_timer pending_w;
    /* control connection */
    int ctl_state;
    int tcp_fd;
    ev_io tcp_r, tcp_w;
    frame_reader fr;
    uint8_t *out;
    size_t out_len, out_cap;
    ev_timer ctl_timer;
    uint64_t ctl_started_ms;
    uint64_t udp_token;
    bool registered_once;     /* losing the server after this means: register again */
    bool replaced;            /* the server said another registration of our key took over */
    uint32_t retry_ms;        /* re-registration backoff (1 s doubling to 30 s, jittered) */
    uint64_t retry_at;
    uint64_t udp_refresh_ms;  /* last ctl_udp_refresh() UdpBind */
    uint32_t bind_interval_ms;
    uint64_t bind_started_ms;
    uint64_t next_bind_ms, next_keepalive_ms, last_server_rx_ms;
    uint32_t server_keepalive_ms;
    netaddr observed_tcp, observed_udp;
    uint32_t next_request_id;
    pl_conn *conns;
    bool freeing;
};

/* peer.c */
void peer_udp_send(pl_peer *p, const netaddr *to, const uint8_t *buf, size_t len);
/* Between these, peer_udp_send() may hold datagrams back to send them in
 * one segmentation-offload batch; the end sends what is held (udp_out.c). */
void peer_udp_batch_begin(pl_peer *p);
void peer_udp_batch_end(pl_peer *p);
void peer_udp_batch_free(pl_peer *p);
uint64_t peer_now(const pl_peer *p);
/* The same clock in microseconds (the stream core's unit). */
uint64_t peer_now_us(const pl_peer *p);
pl_conn *peer_find_session(pl_peer *p, uint64_t session_id);
pl_conn *peer_find_request(pl_peer *p, uint32_t request_id);
uint32_t peer_keepalive_ms(const pl_peer *p);

/* control.c */
int ctl_start(pl_peer *p);
void ctl_stop(pl_peer *p);
int ctl_send(pl_peer *p, Punchline__Envelope *env);
void ctl_send_connect(pl_peer *p, pl_conn *c);
/* Report our candidates again (after they changed); no-op before Register. */
void ctl_send_candidates(pl_peer *p);
/* A UDP path of ours went quiet: send a UdpBind now (at most once a
 * second), which renews our NAT mapping toward the rendezvous and tells it
 * our new public endpoint if the NAT moved us (relay-udp follows it). */
void ctl_udp_refresh(pl_peer *p);

/* stun_client.c */
void stunc_start(pl_peer *p);
void stunc_stop(pl_peer *p);
/* A STUN datagram on the UDP socket. */
void stunc_input(pl_peer *p, const uint8_t *buf, size_t len, const netaddr *from);
/* A UdpBound/Error datagram from the rendezvous on the UDP socket. */
void ctl_udp_input(pl_peer *p, const Punchline__Envelope *env, const netaddr *from);

/* peer.c: TCP listener */
int peer_listen_start(pl_peer *p);
void peer_listen_stop(pl_peer *p);

/* conn_tcp.c: the TCP punching shell of one conn */
void conn_tcp_start(pl_conn *c, uint64_t now);
void conn_tcp_pump(pl_conn *c, uint64_t now);
void conn_tcp_free(pl_conn *c);
/* A connection accepted for this conn's session: adopt it as a stream and
 * process its first frame. */
void conn_tcp_adopt(pl_conn *c, tcp_link *l, const Punchline__Envelope *first);
/* Send one envelope (UDP datagram bytes incl. marker) on the selected stream. */
void conn_tcp_send(pl_conn *c, const uint8_t *dgram, size_t len);
const netaddr *conn_tcp_remote(const pl_conn *c);
/* Bytes the selected TCP stream has queued and not yet written. */
size_t conn_tcp_backlog(const pl_conn *c);
/* Write what the selected stream has queued now (a Close before freeing). */
void conn_tcp_flush(pl_conn *c);

/* conn_relay.c: the relay paths of one conn */
void conn_relay_start(pl_conn *c, uint64_t now);
void conn_relay_pump(pl_conn *c, uint64_t now);
uint64_t conn_relay_deadline(const pl_conn *c);
void conn_relay_free(pl_conn *c);
/* A relayed datagram (header stripped and decoded) from the rendezvous. */
void conn_relay_udp_input(pl_conn *c, const Punchline__Envelope *env, const netaddr *from);
/* Send one datagram (with marker) on relay-udp / relay-tcp. */
void conn_relay_send(pl_conn *c, int path, const uint8_t *dgram, size_t len);
/* Bytes the relay-tcp connection has queued and not yet written. */
size_t conn_relay_backlog(const pl_conn *c);
void conn_relay_flush(pl_conn *c);
bool conn_relay_up(const pl_conn *c, int path);
bool conn_relay_over(const pl_conn *c, int path);

/* conn.c */
/* Controlled side: a nomination arrived on `path` (the first one decides). */
void conn_note_nomination(pl_conn *c, int path);
/* Data, Ack or Close arrived on a path (PL_PATH_*). */
void conn_data_input(pl_conn *c, const Punchline__Envelope *env, int path, const netaddr *from);
pl_conn *conn_new(pl_peer *p, const char *peer_name, bool outgoing);
/* Registration done: send a waiting ConnectRequest. */
void conn_registered(pl_conn *c);
void conn_incoming(pl_conn *c, uint64_t session_id);
void conn_candidates(pl_conn *c, const Punchline__Candidates *m);
void conn_punch_start(pl_conn *c, const Punchline__PunchStart *m);
/* Run the cores now: state changes, transmissions, re-arm the timer. */
void conn_pump(pl_conn *c);
/* conn_pump() from the loop's next iteration (once, however often called). */
void conn_pump_soon(pl_conn *c);
void conn_udp_input(pl_conn *c, const Punchline__Envelope *env, const netaddr *from);
/* Fail or close: on_closed(status) runs from the loop soon. */
void conn_finish(pl_conn *c, int status, const char *why);
/* Detach from the peer and free without callbacks (pl_peer_free). */
void conn_destroy(pl_conn *c);
int conn_error_from_wire(int code);

#endif
