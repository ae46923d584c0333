/* Per-source limits on new TCP connections at the rendezvous: how many
 * unauthenticated (not yet registered) connections one address may hold,
 * and how fast it may open new ones.  Registered peers do not count: many
 * honest peers can share one address behind a carrier NAT.  IPv6 sources
 * are grouped by /64 (one subscriber usually owns a whole /64).  A core
 * without I/O: the shell passes the time. */
#ifndef PL_IPLIMIT_H
#define PL_IPLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <netinet/in.h>

#include "addr.h"

typedef struct iplimit_config {
    uint32_t max_pending;   /* unregistered connections per source; 0 = 64 */
    uint32_t rate_per_s;    /* new connections per second per source; 0 = 50 */
    uint32_t burst;         /* 0 = 2 x rate_per_s */
    size_t max_sources;     /* sources tracked at once; 0 = 65536 (beyond: admitted untracked) */
    uint64_t hash_seed;     /* random, so sources cannot be chosen to collide */
} iplimit_config;

typedef struct iplimit iplimit;

enum iplimit_verdict { IPL_OK = 0, IPL_TOO_MANY = 1, IPL_TOO_FAST = 2,
                       IPL_UNTRACKED = 3 /* admitted, but the table is full: not limited */ };

iplimit *iplimit_new(const iplimit_config *cfg);
void iplimit_free(iplimit *l);
/* A new connection from a: IPL_OK counts it as pending, IPL_UNTRACKED
 * admits it without counting; IPL_TOO_MANY / IPL_TOO_FAST: close it. */
int iplimit_admit(iplimit *l, const netaddr *a, uint64_t now_ms);
/* A connection admitted from a registered or closed: no longer pending. */
void iplimit_release(iplimit *l, const netaddr *a);
/* Forget sources with nothing pending and a full bucket (call every second). */
void iplimit_expire(iplimit *l, uint64_t now_ms);
size_t iplimit_sources(const iplimit *l);
const iplimit_config *iplimit_get_config(const iplimit *l);

#endif
