/* punchline: connect two programs behind NATs directly to each other.
 *
 * The library runs on the caller's libev loop (no hidden threads, no
 * printing).  A pl_peer registers a name at a rendezvous server; a pl_conn is
 * one connection to another named peer, carrying a reliable, ordered stream
 * of messages over the best path found (direct UDP or TCP, else the relay).
 * Every connection is end-to-end encrypted and authenticated (DTLS 1.2
 * between the two peers' identity keys) on every path, relayed or not:
 * on_connected runs only after the peer's key was verified.
 *
 * Conventions: functions return 0 or a negative PL_ERR_* code (see
 * pl_strerror()).  Config structs are deep-copied at creation: nothing they
 * point to needs to outlive the call.  Callbacks get `void *user` last and
 * run on the loop thread; they may call any pl_* function, including
 * pl_conn_close() on their own connection.
 */
#ifndef PUNCHLINE_PUNCHLINE_H
#define PUNCHLINE_PUNCHLINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(PL_BUILDING_LIBRARY)
#define PL_API __attribute__((visibility("default")))
#else
#define PL_API
#endif

struct ev_loop;

#define PL_VERSION_STRING "0.1.0"
/* Largest message pl_conn_send() accepts. */
#define PL_MAX_MESSAGE 65536
/* Largest datagram pl_conn_send_datagram() accepts. */
#define PL_MAX_DATAGRAM 1200
/* Longest peer name (bytes, excluding the NUL); names use [A-Za-z0-9._-]. */
#define PL_MAX_NAME 63
/* A peer id: base32 (lower case, no padding) of the SHA-256 of the peer's
 * public key; PL_ID_LEN characters. */
#define PL_ID_LEN 52

enum pl_error {
    PL_OK = 0,
    PL_ERR_INVALID = -1,        /* bad argument or configuration */
    PL_ERR_NOMEM = -2,
    PL_ERR_SYSTEM = -3,         /* a system call failed; see the log */
    PL_ERR_RESOLVE = -4,        /* rendezvous host name did not resolve */
    PL_ERR_SERVER = -5,         /* rendezvous unreachable or connection lost */
    PL_ERR_UNKNOWN_PEER = -6,   /* no peer of that name is registered */
    PL_ERR_NAME_IN_USE = -7,
    PL_ERR_BAD_VERSION = -8,    /* the other side speaks another protocol version */
    PL_ERR_PROTOCOL = -9,       /* malformed message from the other side */
    PL_ERR_RATE_LIMITED = -10,
    PL_ERR_TIMEOUT = -11,       /* not connected within the connect timeout */
    PL_ERR_PUNCH_FAILED = -12,  /* no direct path could be established */
    PL_ERR_PATH_DEAD = -13,     /* the established path stopped answering */
    PL_ERR_CLOSED = -14,        /* the connection was closed/reset by the peer */
    PL_ERR_AGAIN = -15,         /* send queue full; wait for on_writable */
    PL_ERR_UNSUPPORTED = -16,   /* transport not available (e.g. relay off at the server) */
    PL_ERR_STATE = -17,         /* call not valid in the current state */
    PL_ERR_TOO_BIG = -18,       /* message larger than PL_MAX_MESSAGE */
    PL_ERR_BAD_NAME = -19,
    PL_ERR_SERVER_FULL = -20,
    PL_ERR_IDENTITY = -21,      /* identity key file unreadable, corrupt or too open */
    PL_ERR_AUTH = -22,          /* the peer's key is not the expected peer id, or no certificate */
    PL_ERR_ACCESS = -23         /* the rendezvous refused our signature or access token */
};

/* Static English text for a PL_ERR_* code; never NULL. */
PL_API const char *pl_strerror(int err);

enum pl_log_level { PL_LOG_ERROR = 0, PL_LOG_WARN = 1, PL_LOG_INFO = 2, PL_LOG_DEBUG = 3 };
/* msg is valid only during the call. */
typedef void (*pl_log_fn)(int level, const char *msg, void *user);

enum pl_transport {
    PL_TRANSPORT_AUTO = 0,  /* relay-first: the rendezvous relay carries data while UDP
                               and TCP punching race; moves to a direct path when one
                               is verified, back to the relay if it dies */
    PL_TRANSPORT_UDP = 1,   /* UDP hole punching only */
    PL_TRANSPORT_TCP = 2,   /* TCP simultaneous open only */
    PL_TRANSPORT_RELAY = 3  /* the rendezvous relay only (relay-udp, else relay-tcp) */
};

enum pl_path_kind {
    PL_PATH_NONE = 0,
    PL_PATH_DIRECT_UDP = 1,
    PL_PATH_DIRECT_TCP = 2,
    PL_PATH_RELAY_UDP = 3,
    PL_PATH_RELAY_TCP = 4
};
/* "direct-udp", "direct-tcp", "relay-udp", "relay-tcp" or "none". */
PL_API const char *pl_path_name(int kind);

typedef struct pl_path_info {
    int kind;              /* enum pl_path_kind */
    char remote[64];       /* remote endpoint "IP:PORT" ("[IPv6]:PORT") */
    uint32_t ms;           /* ms from pl_peer_connect()/incoming notice to this path's activation */
    uint32_t punch_ms;     /* ms from the rendezvous' punch start to this path's activation */
} pl_path_info;

typedef struct pl_peer pl_peer;
typedef struct pl_conn pl_conn;

/* Connection callbacks.  Every member may be NULL. */
typedef struct pl_conn_callbacks {
    /* A path is up and verified both ways; messages flow from now on. */
    void (*on_connected)(pl_conn *c, const pl_path_info *path, void *user);
    /* The connection moved to another path, or the path kept its kind and
     * moved to the peer's new address (its NAT gave it a new mapping:
     * docs/PROTOCOL.md 4.2).  path is valid only during the call. */
    void (*on_path_changed)(pl_conn *c, const pl_path_info *path, void *user);
    /* One complete message, in order.  data is valid only during the call. */
    void (*on_message)(pl_conn *c, const uint8_t *data, size_t len, void *user);
    /* Room in the send queue again after pl_conn_send() gave PL_ERR_AGAIN
     * (room for a message of PL_MAX_MESSAGE bytes). */
    void (*on_writable)(pl_conn *c, void *user);
    /* The peer called pl_conn_shutdown(): no more messages will arrive. */
    void (*on_peer_finished)(pl_conn *c, void *user);
    /* Last callback: status is 0 after a graceful close in both directions,
     * else a PL_ERR_* code.  The connection is freed right after it returns;
     * do not use c afterwards. */
    void (*on_closed)(pl_conn *c, int status, void *user);
    /* One unreliable datagram (pl_conn_send_datagram()); may be lost,
     * duplicated or reordered.  data is valid only during the call. */
    void (*on_datagram)(pl_conn *c, const uint8_t *data, size_t len, void *user);
} pl_conn_callbacks;

/* Counters of one connection's stream (pl_conn_get_stats()). */
typedef struct pl_conn_stats {
    uint64_t bytes_sent;          /* stream bytes the peer acknowledged (each message
                                     counts its length + 4, PROTOCOL.md 6.1) */
    uint64_t bytes_received;      /* stream bytes delivered to on_message (likewise) */
    uint64_t packets_sent;        /* stream packets, retransmissions included */
    uint64_t packets_lost;        /* declared lost (UDP paths) */
    uint64_t packets_retransmitted;
    uint64_t rtt_us;              /* smoothed round-trip time (UDP paths) */
    uint64_t cwnd;                /* congestion window, bytes (UDP paths) */
    uint64_t queued;              /* bytes waiting in the send queue */
} pl_conn_stats;

typedef struct pl_peer_config {
    struct ev_loop *loop;        /* required; the library adds watchers to it */
    const char *server;          /* required; rendezvous "HOST:PORT" */
    const char *name;            /* required; this peer's name */
    const char *bind_address;    /* local IPv4 for the UDP socket; NULL = any */
    pl_log_fn log;               /* NULL = silent */
    void *log_user;
    int log_level;               /* highest level passed to log; default ERROR */
    uint32_t keepalive_ms;       /* path and server keepalive; 0 = 15000 (max 25000) */
    uint32_t punch_timeout_ms;   /* give up punching after; 0 = 10000 */
    uint32_t path_timeout_ms;    /* path dead after silence of; 0 = 30000 */
    /* Per-connection memory (docs/PROTOCOL.md 6).  send_queue_limit: bytes
     * queued (unsent + unacknowledged, 4 bytes per message included) before
     * pl_conn_send() says PL_ERR_AGAIN.  recv_window: bytes received and not
     * yet delivered (out of order, or held while paused) -- the flow-control
     * window the peer may fill.  0 = 4 MiB each; at least 128 KiB, at most
     * 256 MiB, rounded up to a power of two; allocated only as used.  A
     * connection's throughput is at most window / round-trip time. */
    size_t send_queue_limit;
    size_t recv_window;
    /* PEM file with this peer's ECDSA P-256 identity key; created (mode
     * 0600) if missing.  NULL = a fresh key in memory for this pl_peer only
     * (its id changes every run).  See pl_identity_default_path(). */
    const char *identity_file;
    /* Access token for a rendezvous started with --auth-secret (minted by
     * `punchline-rendezvous --mint-token NAME`); NULL = none. */
    const char *auth_token;
    /* TLS on the control connection to the rendezvous (which must run with
     * --tls-cert/--tls-key).  Set at most one: a CA file (PEM) to verify
     * the server's certificate chain and host name, or the server key's
     * fingerprint (`punchline-rendezvous --show-fingerprint`).  Both NULL:
     * plain TCP (names and candidates visible on the way to the server;
     * peer-to-peer traffic is end-to-end encrypted either way). */
    const char *server_ca_file;
    const char *server_fingerprint;
    /* A standard STUN server "HOST:PORT" (RFC 8489 Binding, e.g. coturn) to
     * learn one more reflexive UDP address from, reported to the rendezvous
     * as a candidate; for when the rendezvous does not see us as other peers
     * do.  NULL = none (the rendezvous' own observation is used). */
    const char *stun_server;

    /* Registration finished (status 0) or failed (status < 0).  Once
     * registered, a lost rendezvous (closed, silent, restarted) is not a
     * failure: the peer registers again by itself (jittered backoff 1 s
     * doubling to 30 s) and on_registered(0) runs again each time; its
     * established connections keep their direct paths meanwhile.  After a
     * failure the peer stays usable only for pl_peer_free(). */
    void (*on_registered)(pl_peer *p, int status, const char *observed_udp, void *user);
    /* Another peer is connecting.  Call pl_conn_set_callbacks() inside the
     * callback to receive its events; without that the connection is
     * refused.  peer_name is valid only during the call. */
    void (*on_incoming)(pl_peer *p, pl_conn *c, const char *peer_name, void *user);
    void *user;
} pl_peer_config;

/* Create a peer and start registering with the rendezvous.  The host name in
 * cfg->server is resolved here (blocking getaddrinfo).  On success *out owns
 * sockets and watchers on cfg->loop until pl_peer_free(). */
PL_API int pl_peer_new(pl_peer **out, const pl_peer_config *cfg);
/* Close every connection (their on_closed runs with PL_ERR_CLOSED), stop all
 * watchers, release everything.  NULL is a no-op.  Not from a callback of the
 * same peer.  Each remote peer is told with one Close message, sent at once
 * (on TCP paths written to the socket before it is closed); over UDP that
 * datagram may be lost, and then the remote side notices by its path timeout.
 * For a graceful end, pl_conn_shutdown() and wait for on_closed first. */
PL_API void pl_peer_free(pl_peer *p);
/* This peer's name (owned by p). */
PL_API const char *pl_peer_name(const pl_peer *p);
/* This peer's id (PL_ID_LEN characters, owned by p). */
PL_API const char *pl_peer_id(const pl_peer *p);

/* Load (with create != 0: create if missing) the identity key at path and
 * write its peer id (PL_ID_LEN + 1 bytes) to id.  On failure returns
 * PL_ERR_IDENTITY and writes the reason to err. */
PL_API int pl_identity_id(const char *path, int create, char *id, size_t idcap, char *err,
                          size_t errcap);
/* The default identity file: $XDG_CONFIG_HOME/punchline/identity.pem, else
 * ~/.config/punchline/identity.pem.  PL_ERR_INVALID if neither is known. */
PL_API int pl_identity_default_path(char *out, size_t cap);

/* Start connecting to peer_name.  May be called before registration has
 * finished; the request is sent once it has.  cb is copied; user is passed
 * to every callback.  *out (optional) stays valid until on_closed returns. */
PL_API int pl_peer_connect(pl_peer *p, const char *peer_name, int transport,
                           const pl_conn_callbacks *cb, void *user, pl_conn **out);

/* Install callbacks on an incoming connection (inside on_incoming). */
PL_API void pl_conn_set_callbacks(pl_conn *c, const pl_conn_callbacks *cb, void *user);
/* Queue one message (copied).  Allowed before on_connected: it is sent once
 * a path is up.  PL_ERR_AGAIN: queue full, retry after on_writable.
 * PL_ERR_STATE after pl_conn_shutdown(). */
PL_API int pl_conn_send(pl_conn *c, const void *data, size_t len);
/* Send one unreliable datagram of at most PL_MAX_DATAGRAM bytes on the
 * current path, encrypted like the stream but never retransmitted or
 * ordered (for media, game state, ...).  PL_ERR_STATE before on_connected,
 * PL_ERR_TOO_BIG above the limit. */
PL_API int pl_conn_send_datagram(pl_conn *c, const void *data, size_t len);
/* Stop (paused != 0) or resume delivering messages.  While paused, what
 * arrives stays in the connection's receive buffer; once recv_window bytes
 * are held the peer stops sending (flow control), so a slow consumer costs
 * bounded memory.  Delivery resumes from the loop, not inside this call. */
PL_API void pl_conn_pause(pl_conn *c, int paused);
/* The stream's counters so far. */
PL_API void pl_conn_get_stats(const pl_conn *c, pl_conn_stats *out);
/* Half-close: send what is queued, then tell the peer we are finished; keep
 * receiving.  on_closed(0) follows when the peer has finished too. */
PL_API int pl_conn_shutdown(pl_conn *c);
/* Abort now: tell the peer, drop queued data, and run on_closed(PL_ERR_CLOSED)
 * later from the loop (never from inside this call). */
PL_API void pl_conn_close(pl_conn *c);
/* Accept only a peer whose key has this id (pinning: then not even the
 * rendezvous can substitute another key).  Call right after
 * pl_peer_connect() or inside on_incoming.  PL_ERR_INVALID for a malformed
 * id, PL_ERR_STATE once the encryption handshake has begun. */
PL_API int pl_conn_require_peer_id(pl_conn *c, const char *peer_id);
/* The remote peer's name (owned by c). */
PL_API const char *pl_conn_peer_name(const pl_conn *c);
/* The remote peer's id once on_connected has run (its key was verified in
 * the handshake); "" before. */
PL_API const char *pl_conn_peer_id(const pl_conn *c);
/* Current path; kind PL_PATH_NONE before on_connected. */
PL_API void pl_conn_path(const pl_conn *c, pl_path_info *out);

#ifdef __cplusplus
}
#endif
#endif
