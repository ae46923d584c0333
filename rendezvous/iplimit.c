/* Per-source connection limits (iplimit.h): a chained hash table of
 * sources, each with a pending count and a token bucket. */
#include "iplimit.h"

#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"

typedef struct src {
    uint8_t key[16];            /* IPv4 mapped into ::ffff:0:0/96; IPv6 /64 */
    uint32_t pending;
    ratelimit rl;
    struct src *next;
} src;

struct iplimit {
    iplimit_config cfg;
    src **buckets;
    size_t nbuckets, n;
};

static void key_of(const netaddr *a, uint8_t k[16])
{
    memset(k, 0, 16);
    if (a->u.sa.sa_family == AF_INET) {
        k[10] = k[11] = 0xff;
        memcpy(k + 12, &a->u.in4.sin_addr, 4);
    } else if (IN6_IS_ADDR_V4MAPPED(&a->u.in6.sin6_addr)) {
        /* an IPv4 client of a dual-stack socket: one key per IPv4 address,
         * not one /64 for the whole IPv4 internet */
        memcpy(k, &a->u.in6.sin6_addr, 16);
    } else {
        memcpy(k, &a->u.in6.sin6_addr, 8); /* the /64 */
    }
}

/* FNV-1a seeded with a secret and a final mix: sources an attacker picks
 * cannot be steered into one chain. */
static size_t hash_of(const iplimit *l, const uint8_t k[16])
{
    uint64_t h = 1469598103934665603ull ^ l->cfg.hash_seed;
    for (int i = 0; i < 16; i++)
        h = (h ^ k[i]) * 1099511628211ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (size_t)(h % l->nbuckets);
}

iplimit *iplimit_new(const iplimit_config *cfg)
{
    iplimit *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->cfg = *cfg;
    if (!l->cfg.max_pending)
        l->cfg.max_pending = 64;
    if (!l->cfg.rate_per_s)
        l->cfg.rate_per_s = 50;
    if (!l->cfg.burst)
        l->cfg.burst = 2 * l->cfg.rate_per_s;
    if (!l->cfg.max_sources)
        l->cfg.max_sources = 65536;
    l->nbuckets = 4096;
    l->buckets = calloc(l->nbuckets, sizeof(*l->buckets));
    if (!l->buckets) {
        free(l);
        return NULL;
    }
    return l;
}

void iplimit_free(iplimit *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->nbuckets; i++)
        for (src *s = l->buckets[i], *nx; s; s = nx) {
            nx = s->next;
            free(s);
        }
    free(l->buckets);
    free(l);
}

static src *find(const iplimit *l, const uint8_t k[16])
{
    for (src *s = l->buckets[hash_of(l, k)]; s; s = s->next)
        if (!memcmp(s->key, k, 16))
            return s;
    return NULL;
}

int iplimit_admit(iplimit *l, const netaddr *a, uint64_t now_ms)
{
    uint8_t k[16];
    key_of(a, k);
    src *s = find(l, k);
    if (!s) {
        /* Full (a flood from very many sources): admit untracked rather
         * than lock every new honest peer out; release ignores it. */
        if (l->n >= l->cfg.max_sources)
            return IPL_UNTRACKED;
        s = calloc(1, sizeof(*s));
        if (!s)
            return IPL_UNTRACKED;
        memcpy(s->key, k, 16);
        ratelimit_init(&s->rl, l->cfg.rate_per_s, l->cfg.burst, now_ms);
        size_t b = hash_of(l, k);
        s->next = l->buckets[b];
        l->buckets[b] = s;
        l->n++;
    }
    if (s->pending >= l->cfg.max_pending)
        return IPL_TOO_MANY;
    if (!ratelimit_take(&s->rl, now_ms))
        return IPL_TOO_FAST;
    s->pending++;
    return IPL_OK;
}

void iplimit_release(iplimit *l, const netaddr *a)
{
    uint8_t k[16];
    key_of(a, k);
    src *s = find(l, k);
    if (s && s->pending)
        s->pending--;
}

void iplimit_expire(iplimit *l, uint64_t now_ms)
{
    for (size_t i = 0; i < l->nbuckets; i++) {
        for (src **pp = &l->buckets[i]; *pp;) {
            src *s = *pp;
            /* idle long enough that its bucket would be full again */
            bool idle = !s->pending &&
                        now_ms - s->rl.last_ms >= 1000ull * l->cfg.burst / l->cfg.rate_per_s + 1000;
            if (idle) {
                *pp = s->next;
                free(s);
                l->n--;
            } else {
                pp = &s->next;
            }
        }
    }
}

size_t iplimit_sources(const iplimit *l)
{
    return l->n;
}

const iplimit_config *iplimit_get_config(const iplimit *l)
{
    return &l->cfg;
}
