/* The rendezvous relay: which sessions may be relayed, between which two
 * endpoints, and how much.  A core without I/O (ARCHITECTURE.md rule 1): the
 * shell (server_udp.c, server_relay.c) asks it where a datagram may go, or
 * whether n bytes of a TCP splice may pass now, and does the sending.
 *
 * Authorization (docs/PROTOCOL.md 5): a session exists only because the
 * rendezvous paired two registered peers.  A relayed datagram is forwarded
 * only if it comes from the UDP endpoint one side of that session registered
 * from, and only to the other side's endpoint; it never goes to an address a
 * client names.  A TCP relay connection joins a session only with a MAC
 * made from the session secret, once per side.
 */
#ifndef PL_RELAY_H
#define PL_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "names.h"
#include "wire.h"

typedef struct relay_limits {
    size_t max_sessions;       /* relayed sessions at once; 0 = 1000 */
    uint64_t session_bytes;    /* bytes relayed per session, then it ends; 0 = no limit */
    uint64_t session_rate;     /* bytes/s per session; 0 = no limit */
    uint64_t global_rate;      /* bytes/s over all sessions; 0 = no limit */
    uint32_t idle_ms;          /* a session with no relayed byte for this long ends; 0 = 60000 */
    uint32_t unused_ms;        /* with the table full, a session that has relayed nothing and
                                  has no relay-tcp side attached this long after its creation
                                  makes room for a new one; 0 = 10000 */
} relay_limits;

typedef struct relay_stats {
    uint64_t udp_packets, udp_bytes;   /* forwarded */
    uint64_t tcp_bytes;                /* spliced */
    uint64_t sessions_created, sessions_active, sessions_refused_full;
    uint64_t sessions_ended_idle, sessions_ended_quota;
    uint64_t sessions_evicted_unused;  /* made room in a full table (never used) */
    uint64_t drop_unknown_session;     /* relayed datagram for no session */
    uint64_t drop_bad_source;          /* from an address that is not a side of the session */
    uint64_t drop_no_destination;      /* the other side has no UDP endpoint */
    uint64_t drop_rate;                /* over the session or global rate */
    uint64_t drop_quota;               /* session byte limit reached */
    uint64_t tcp_refused;              /* RelayOpen refused */
    uint64_t tcp_rate_pauses;          /* a TCP side paused for the rate limit */
} relay_stats;

/* Token bucket in bytes.  tokens may go negative: TCP bytes already read
 * are charged in full, and the debt is paid back before the side reads
 * again, so the long-run rate holds exactly. */
typedef struct relay_bucket {
    uint64_t rate;             /* bytes/s; 0 = unlimited */
    int64_t tokens, cap;
    uint64_t last_ms;
} relay_bucket;

typedef struct relay_session {
    uint64_t id;
    uint8_t secret[WIRE_SECRET_LEN];
    char name[2][NAME_MAX_LEN + 1];    /* [0] controlling, [1] controlled (logs) */
    netaddr udp[2];                    /* each side's UDP endpoint; len 0 = none */
    void *tcp[2];                      /* each side's relay connection (shell), or NULL */
    bool spliced;                      /* both TCP sides attached, RelayReady sent */
    bool over_quota;                   /* hit session_bytes: ends at the next expiry pass */
    uint64_t created_ms, last_ms;
    uint64_t bytes;
    relay_bucket bucket;
    struct relay_session *next;        /* hash chain */
} relay_session;

typedef struct relay relay;

enum relay_verdict { RELAY_PASS = 0, RELAY_RATE = 1, RELAY_QUOTA = 2 };

relay *relay_new(const relay_limits *lim, uint64_t now);
void relay_free(relay *r);
const relay_limits *relay_get_limits(const relay *r);
const relay_stats *relay_get_stats(const relay *r);

/* A session the rendezvous just paired; udp_a/udp_b may be NULL or empty
 * (that side registered no UDP endpoint).  In a full table the oldest
 * session that never relayed a byte (nor has a relay-tcp side waiting) and
 * is older than unused_ms is removed to make room: honest peers use their
 * relay within a second of PunchStart (PROTOCOL.md 5.4), so a flood of
 * connect requests cannot keep later pairs from the relay.  NULL if the
 * table is full all the same (counted) or the id is taken. */
relay_session *relay_create(relay *r, uint64_t id, const uint8_t secret[WIRE_SECRET_LEN],
                            const char *name_a, const netaddr *udp_a, const char *name_b,
                            const netaddr *udp_b, uint64_t now);
relay_session *relay_find(const relay *r, uint64_t id);
/* Remove and free; the shell detaches its connections first. */
void relay_remove(relay *r, relay_session *s);

/* A relayed datagram of len bytes (whole, header included) for session id
 * arrived from `from`.  Returns where to forward it unchanged, or NULL to
 * drop it (the reason is counted). */
const netaddr *relay_route_udp(relay *r, uint64_t id, const netaddr *from, size_t len,
                               uint64_t now);
/* n bytes of a TCP splice for s were read: RELAY_QUOTA (end the session;
 * not charged), else they pass and are charged in full (a bucket may go into
 * debt), and RELAY_RATE asks the shell to pause reading that side for
 * relay_rate_wait_ms(). */
int relay_charge_tcp(relay *r, relay_session *s, size_t n, uint64_t now);
/* After RELAY_RATE: ms until the session and global buckets hold n bytes
 * again (any debt paid back first); at least 1. */
uint32_t relay_rate_wait_ms(const relay *r, const relay_session *s, size_t n, uint64_t now);

/* RelayOpen for session id from `role` (Punchline__Role) with mac: the
 * session if it exists, the MAC verifies and that side has no relay
 * connection yet; else NULL (counted in tcp_refused). */
relay_session *relay_open(relay *r, uint64_t id, int role, const uint8_t *mac, size_t mac_len);

/* A peer's UDP endpoint moved (NAT rebinding, seen by its UdpBind): sessions
 * authorized for `old` follow it to `now_at`. */
void relay_rebind(relay *r, const netaddr *old, const netaddr *now_at);

/* Call ended(s, why, user) for every session idle for longer than idle_ms,
 * then remove it.  Returns how many ended. */
size_t relay_expire(relay *r, uint64_t now,
                    void (*ended)(relay_session *s, const char *why, void *user), void *user);

/* One line of counters for the log ("relay: sessions=... udp_pkts=..."). */
void relay_format_stats(const relay *r, char *buf, size_t cap);

#endif
