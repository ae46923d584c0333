#include "registry.h"

#include <stdlib.h>
#include <string.h>

struct registry {
    registry_config cfg;
    size_t count;
    size_t nbuckets;            /* power of two */
    reg_peer **by_name;
    reg_peer **by_token;
};

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    while (*s) {
        h ^= (uint8_t)*s++;
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t hash_token(uint64_t t)
{
    t ^= t >> 33;
    t *= 0xff51afd7ed558ccdull;
    t ^= t >> 33;
    return t;
}

registry *registry_new(const registry_config *cfg)
{
    registry *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->cfg = *cfg;
    if (!r->cfg.max_peers)
        r->cfg.max_peers = 10000;
    if (!r->cfg.expiry_ms)
        r->cfg.expiry_ms = 60000;
    if (!r->cfg.connect_rate)
        r->cfg.connect_rate = 5;
    if (!r->cfg.connect_burst)
        r->cfg.connect_burst = 20;
    r->nbuckets = 64;
    while (r->nbuckets < r->cfg.max_peers && r->nbuckets < (1u << 20))
        r->nbuckets <<= 1;
    r->by_name = calloc(r->nbuckets, sizeof(*r->by_name));
    r->by_token = calloc(r->nbuckets, sizeof(*r->by_token));
    if (!r->by_name || !r->by_token) {
        registry_free(r);
        return NULL;
    }
    return r;
}

void registry_free(registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nbuckets && r->by_name; i++) {
        reg_peer *p = r->by_name[i];
        while (p) {
            reg_peer *n = p->next_by_name;
            free(p->host);
            free(p);
            p = n;
        }
    }
    free(r->by_name);
    free(r->by_token);
    free(r);
}

reg_peer *registry_find(const registry *r, const char *name)
{
    if (!name_valid_cstr(name))
        return NULL;
    for (reg_peer *p = r->by_name[hash_name(name) & (r->nbuckets - 1)]; p; p = p->next_by_name)
        if (strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

reg_peer *registry_find_token(const registry *r, uint64_t token)
{
    for (reg_peer *p = r->by_token[hash_token(token) & (r->nbuckets - 1)]; p; p = p->next_by_token)
        if (p->udp_token == token)
            return p;
    return NULL;
}

int registry_add(registry *r, const char *name, void *conn, uint64_t token, uint64_t now,
                 reg_peer **out)
{
    *out = NULL;
    if (!name_valid_cstr(name))
        return REG_E_BAD_NAME;
    if (registry_find(r, name))
        return REG_E_NAME_IN_USE;
    if (r->count >= r->cfg.max_peers)
        return REG_E_FULL;
    reg_peer *p = calloc(1, sizeof(*p));
    if (!p)
        return REG_E_NOMEM;
    strcpy(p->name, name); /* length checked by name_valid_cstr */
    p->conn = conn;
    p->udp_token = token;
    p->last_seen_ms = now;
    ratelimit_init(&p->connect_rl, r->cfg.connect_rate, r->cfg.connect_burst, now);
    size_t bn = hash_name(name) & (r->nbuckets - 1);
    size_t bt = hash_token(token) & (r->nbuckets - 1);
    p->next_by_name = r->by_name[bn];
    r->by_name[bn] = p;
    p->next_by_token = r->by_token[bt];
    r->by_token[bt] = p;
    r->count++;
    *out = p;
    return REG_OK;
}

void registry_remove(registry *r, reg_peer *p)
{
    if (!p)
        return;
    reg_peer **pp = &r->by_name[hash_name(p->name) & (r->nbuckets - 1)];
    while (*pp && *pp != p)
        pp = &(*pp)->next_by_name;
    if (*pp)
        *pp = p->next_by_name;
    pp = &r->by_token[hash_token(p->udp_token) & (r->nbuckets - 1)];
    while (*pp && *pp != p)
        pp = &(*pp)->next_by_token;
    if (*pp)
        *pp = p->next_by_token;
    r->count--;
    free(p->host);
    free(p);
}

void registry_touch(reg_peer *p, uint64_t now)
{
    if (now > p->last_seen_ms)
        p->last_seen_ms = now;
}

size_t registry_expire(registry *r, uint64_t now, void (*expired)(reg_peer *p, void *user),
                       void *user)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nbuckets; i++) {
        reg_peer *p = r->by_name[i];
        while (p) {
            reg_peer *next = p->next_by_name;
            if (now >= p->last_seen_ms + r->cfg.expiry_ms) {
                if (expired)
                    expired(p, user);
                registry_remove(r, p);
                n++;
            }
            p = next;
        }
    }
    return n;
}

size_t registry_count(const registry *r)
{
    return r->count;
}

uint32_t registry_expiry_ms(const registry *r)
{
    return r->cfg.expiry_ms;
}
