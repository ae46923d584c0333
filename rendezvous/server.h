/* punchline-rendezvous as an embeddable object on a libev loop. */
#ifndef PL_SERVER_H
#define PL_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "relay.h"

struct ev_loop;

enum srv_log_level { SRV_LOG_ERROR = 0, SRV_LOG_WARN, SRV_LOG_INFO, SRV_LOG_DEBUG,
                     SRV_LOG_STATS /* counters on request: printed at every level */ };

struct tls_conf;

typedef struct server_config {
    netaddr listen;              /* TCP and UDP on this address */
    int log_level;               /* SRV_LOG_*; messages go to stderr */
    uint32_t keepalive_ms;       /* told to peers; 0 = 15000 */
    uint32_t expiry_ms;          /* silence that unregisters; 0 = 60000 */
    uint32_t register_deadline_ms; /* a new connection must register within; 0 = 10000 */
    size_t max_peers;            /* 0 = 10000 */
    size_t max_conns;            /* open TCP connections; 0 = 15000, or less to stay below
                                    the open-file limit (RLIMIT_NOFILE) */
    uint32_t connect_rate;       /* ConnectRequests per second per peer; 0 = 5 (burst 4x) */
    int relay_off;               /* 1: offer no relay (ConnectRequest RELAY gets UNSUPPORTED) */
    relay_limits relay;          /* see relay.h for defaults */
    const struct tls_conf *tls;  /* non-NULL: control connections may run TLS (borrowed) */
    int tls_required;            /* 1: refuse a Register outside TLS */
    uint32_t per_ip_pending;     /* unregistered connections per source address; 0 = 64 */
    uint32_t per_ip_rate;        /* new connections per second per source; 0 = 50 (burst 2x) */
    const uint8_t *auth_secret;  /* non-NULL: Register needs a valid token (token.h); */
    size_t auth_secret_len;      /* borrowed: must outlive the server */
} server_config;

typedef struct server server;

/* Bind and start.  On failure returns NULL and writes a reason to err. */
server *server_new(struct ev_loop *loop, const server_config *cfg, char *err, size_t errlen);
void server_free(server *s);
/* Log the relay counters (SIGUSR1 in punchline-rendezvous). */
void server_log_stats(const server *s);
const relay_stats *server_relay_stats(const server *s);
/* Memory held by the output queues of all TCP connections (replies not
 * yet written, relay bytes waiting for a slow receiver: allocated bytes, not
 * just the queued ones); *largest (if not NULL) gets the largest of one
 * connection.  For the counters and the tests. */
size_t server_queued_bytes(const server *s, size_t *largest);
/* The bound address (useful with port 0). */
void server_local_addr(const server *s, netaddr *out);

#endif
