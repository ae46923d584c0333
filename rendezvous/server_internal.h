/* Shared between the rendezvous shell files; not used by anything else. */
#ifndef PL_SERVER_INTERNAL_H
#define PL_SERVER_INTERNAL_H

#include <ev.h>

#include "frame.h"
#include "punchline/punchline.h"
#include "registry.h"
#include "server.h"
#include "wire.h"

#define SRV_OUT_MAX (256 * 1024) /* queued bytes per connection before we drop it */
/* Largest frame before a connection registered (or opened a relay): a
 * Register is at most ~1.3 KB (PROTOCOL.md 1.4), and an unauthenticated
 * connection that announces 16 KiB and sends all but one byte must not
 * hold 16 KiB of server memory until the register deadline. */
#define SRV_PREAUTH_FRAME_MAX 4096

typedef struct srv_conn {
    server *srv;
    int fd;
    ev_io rio, wio;
    netaddr remote;
    frame_reader fr;
    reg_peer *peer;              /* NULL until registered */
    uint8_t nonce[WIRE_NONCE_LEN]; /* ServerHello: signed in Register */
    struct tls_stream *tls;      /* TLS on this control connection, else NULL */
    bool tls_hs;                 /* TLS handshake in progress */
    bool first_seen;             /* the peer's first byte was looked at */
    bool ipl_pending;            /* counted as unregistered by its source (iplimit.h) */
    uint64_t opened_ms;
    uint8_t *out;
    size_t out_len, out_cap;
    int closing;                 /* flush then close */
    /* relay connection (server_relay.c): NULL/0 on control connections */
    relay_session *rs;
    int rside;                   /* 0 controlling, 1 controlled */
    bool spliced;                /* raw bytes from here on */
    bool paused_bp;              /* reading stopped: the partner's queue is full */
    bool paused_rate;            /* reading stopped: rate limit, rate_w resumes */
    ev_timer rate_w;
    uint64_t closing_ms;
    struct srv_conn *prev, *next;
} srv_conn;

struct server {
    struct ev_loop *loop;
    server_config cfg;
    registry *reg;
    relay *relay;                /* NULL when relaying is off */
    uint8_t bind_key[32];        /* random: UdpBind return-routability cookies */
    size_t n_tls_hs;             /* control connections in a TLS handshake now */
    struct iplimit *ipl;         /* per-source connection limits */
    uint64_t ipl_refused;        /* connections refused by it (counter) */
    uint8_t refuse_frame[128];   /* Error{RATE_LIMITED}, sent to a refused connection */
    size_t refuse_len;
    int tcp_fd, udp_fd;
    ev_io accept_w, udp_w;
    ev_timer tick;               /* expiry, registration deadlines */
    srv_conn *conns;
    size_t nconns;
    netaddr local;
};

void srv_log(const server *s, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
uint64_t srv_random64(void);
void srv_random_bytes(uint8_t *buf, size_t len);

/* server_conn.c */
void srv_conn_accept(server *s, int fd, const netaddr *remote);
void srv_conn_free(srv_conn *c);
/* The connection stops counting as unregistered for its source address. */
void srv_conn_authenticated(srv_conn *c);
int srv_conn_send(srv_conn *c, Punchline__Envelope *env);
void srv_conn_send_error(srv_conn *c, Punchline__ErrorCode code, uint32_t request_id,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void srv_conn_close_after_flush(srv_conn *c);

/* Append raw bytes to c's queue (relay splice; no size check: the caller
 * applies backpressure).  0 or -1 (out of memory). */
int srv_conn_queue_raw(srv_conn *c, const uint8_t *buf, size_t len);

/* server_relay.c */
/* Create the relay session for a pairing (NULL: relaying off or table full). */
relay_session *srv_relay_session(server *s, uint64_t sid, const uint8_t *secret,
                                 const reg_peer *caller, const reg_peer *callee);
/* First frame of a connection was RelayOpen. */
void srv_relay_open(srv_conn *c, const Punchline__RelayOpen *m);
/* Readable relay connection (instead of the frame reader). */
void srv_relay_read(srv_conn *c);
/* c's queue drained below the low mark: resume its partner. */
void srv_relay_drained(srv_conn *c);
/* c is being freed: detach it from its session and close its partner. */
void srv_relay_detach(srv_conn *c);
/* Tick: end idle and over-limit sessions. */
void srv_relay_tick(server *s, uint64_t now);

/* server_udp.c */
void srv_udp_readable(struct ev_loop *loop, ev_io *w, int revents);

#endif
