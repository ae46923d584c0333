/* The rendezvous registry: who is registered, under which name, with which
 * observed endpoints and host candidates.  A core without I/O: the libev
 * shell passes `now` and an opaque connection pointer. */
#ifndef PL_REGISTRY_H
#define PL_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "names.h"
#include "ratelimit.h"
#include "wire.h"

typedef struct reg_host {
    netaddr addr;
    bool tcp;                    /* transport */
    bool srflx;                  /* a reflexive address the peer learned elsewhere (STUN) */
} reg_host;

typedef struct reg_peer {
    char name[NAME_MAX_LEN + 1];
    void *conn;                  /* the shell's control connection */
    uint64_t udp_token;          /* random; identifies UdpBind datagrams */
    uint8_t key_hash[WIRE_KEY_HASH_LEN]; /* SHA-256 of the identity key: owns the name */
    netaddr observed_tcp;
    netaddr observed_udp;        /* len 0 until the first UdpBind */
    struct reg_host *host;       /* the candidates the peer reported (n_host, malloc'd:
                                    most peers send 1-4 of the 16 allowed) */
    size_t n_host;
    uint64_t last_seen_ms;
    ratelimit connect_rl;        /* connect requests from this peer */
    struct reg_peer *next_by_name, *next_by_token;
} reg_peer;

typedef struct registry registry;

enum reg_status { REG_OK = 0, REG_E_NAME_IN_USE = -1, REG_E_FULL = -2, REG_E_BAD_NAME = -3,
                  REG_E_NOMEM = -4 };

typedef struct registry_config {
    size_t max_peers;            /* 0 = 10000 */
    uint32_t expiry_ms;          /* silence after which a peer is dropped; 0 = 60000 */
    uint32_t connect_rate;       /* connect requests per second per peer; 0 = 5 */
    uint32_t connect_burst;      /* 0 = 20 */
} registry_config;

registry *registry_new(const registry_config *cfg);
void registry_free(registry *r);
/* Add name for conn.  token must be unique (random 64 bits). */
int registry_add(registry *r, const char *name, void *conn, uint64_t token, uint64_t now,
                 reg_peer **out);
void registry_remove(registry *r, reg_peer *p);
reg_peer *registry_find(const registry *r, const char *name);
reg_peer *registry_find_token(const registry *r, uint64_t token);
void registry_touch(reg_peer *p, uint64_t now);
/* Call expired(p, user) for each peer silent for longer than expiry_ms, then
 * remove it.  Returns how many were removed. */
size_t registry_expire(registry *r, uint64_t now, void (*expired)(reg_peer *p, void *user),
                       void *user);
size_t registry_count(const registry *r);
uint32_t registry_expiry_ms(const registry *r);

#endif
