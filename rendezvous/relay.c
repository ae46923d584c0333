#include "relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"

#define RELAY_BUCKETS 1024 /* hash buckets (power of two) */

struct relay {
    relay_limits lim;
    relay_stats st;
    relay_bucket global;
    relay_session *tab[RELAY_BUCKETS];
};

static void bucket_init(relay_bucket *b, uint64_t rate, uint64_t now)
{
    b->rate = rate;
    /* a quarter second of burst, at least 64 KiB (one TCP read or a burst
     * of datagrams) */
    b->cap = rate / 4 > 65536 ? (int64_t)(rate / 4) : 65536;
    b->tokens = b->cap;
    b->last_ms = now;
}

static void bucket_refill(relay_bucket *b, uint64_t now)
{
    if (!b->rate || now <= b->last_ms)
        return;
    uint64_t add = (now - b->last_ms) * b->rate / 1000;
    if (add == 0)
        return; /* keep last_ms so slow rates still accumulate */
    if (add > (uint64_t)(b->cap - b->tokens))
        b->tokens = b->cap;
    else
        b->tokens += (int64_t)add;
    b->last_ms = now;
}

static bool bucket_has(relay_bucket *b, size_t n, uint64_t now)
{
    if (!b->rate)
        return true;
    bucket_refill(b, now);
    /* a chunk larger than the bucket passes when the bucket is full */
    return b->tokens >= ((int64_t)n < b->cap ? (int64_t)n : b->cap);
}

/* Charge n bytes in full; the balance may go negative (debt). */
static void bucket_take(relay_bucket *b, size_t n)
{
    if (b->rate)
        b->tokens -= (int64_t)n;
}

static uint32_t bucket_wait_ms(const relay_bucket *b, size_t n)
{
    if (!b->rate)
        return 0;
    int64_t need = (int64_t)n < b->cap ? (int64_t)n : b->cap;
    if (b->tokens >= need)
        return 0;
    uint64_t ms = (uint64_t)(need - b->tokens) * 1000 / b->rate + 1;
    return ms > 60000 ? 60000 : (uint32_t)ms;
}

static size_t slot(uint64_t id)
{
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdULL;
    id ^= id >> 33;
    return (size_t)(id & (RELAY_BUCKETS - 1));
}

relay *relay_new(const relay_limits *lim, uint64_t now)
{
    relay *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    if (lim)
        r->lim = *lim;
    if (!r->lim.max_sessions)
        r->lim.max_sessions = 1000;
    if (!r->lim.idle_ms)
        r->lim.idle_ms = 60000;
    if (!r->lim.unused_ms)
        r->lim.unused_ms = 10000;
    bucket_init(&r->global, r->lim.global_rate, now);
    return r;
}

void relay_free(relay *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < RELAY_BUCKETS; i++) {
        while (r->tab[i]) {
            relay_session *s = r->tab[i];
            r->tab[i] = s->next;
            free(s);
        }
    }
    free(r);
}

const relay_limits *relay_get_limits(const relay *r)
{
    return &r->lim;
}

const relay_stats *relay_get_stats(const relay *r)
{
    return &r->st;
}

relay_session *relay_find(const relay *r, uint64_t id)
{
    for (relay_session *s = r->tab[slot(id)]; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

/* The oldest session that never carried a byte, has no relay-tcp side and
 * is older than unused_ms, removed; false if there is none.  A scan of the
 * table, only when it is full. */
static bool evict_unused(relay *r, uint64_t now)
{
    relay_session *old = NULL;
    for (size_t i = 0; i < RELAY_BUCKETS; i++)
        for (relay_session *s = r->tab[i]; s; s = s->next)
            if (!s->bytes && !s->tcp[0] && !s->tcp[1] && now >= s->created_ms + r->lim.unused_ms &&
                (!old || s->created_ms < old->created_ms))
                old = s;
    if (!old)
        return false;
    relay_remove(r, old);
    r->st.sessions_evicted_unused++;
    return true;
}

relay_session *relay_create(relay *r, uint64_t id, const uint8_t secret[WIRE_SECRET_LEN],
                            const char *name_a, const netaddr *udp_a, const char *name_b,
                            const netaddr *udp_b, uint64_t now)
{
    if (r->st.sessions_active >= r->lim.max_sessions && !evict_unused(r, now)) {
        r->st.sessions_refused_full++;
        return NULL;
    }
    if (id == 0 || relay_find(r, id))
        return NULL;
    relay_session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->id = id;
    memcpy(s->secret, secret, WIRE_SECRET_LEN);
    snprintf(s->name[0], sizeof(s->name[0]), "%s", name_a ? name_a : "");
    snprintf(s->name[1], sizeof(s->name[1]), "%s", name_b ? name_b : "");
    if (udp_a)
        s->udp[0] = *udp_a;
    if (udp_b)
        s->udp[1] = *udp_b;
    s->created_ms = s->last_ms = now;
    bucket_init(&s->bucket, r->lim.session_rate, now);
    size_t i = slot(id);
    s->next = r->tab[i];
    r->tab[i] = s;
    r->st.sessions_created++;
    r->st.sessions_active++;
    return s;
}

void relay_remove(relay *r, relay_session *s)
{
    for (relay_session **pp = &r->tab[slot(s->id)]; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            r->st.sessions_active--;
            free(s);
            return;
        }
    }
}

/* Byte limit, then session rate, then global rate; charges on PASS. */
static int charge(relay *r, relay_session *s, size_t n, uint64_t now)
{
    if (r->lim.session_bytes && s->bytes + n > r->lim.session_bytes) {
        r->st.drop_quota++;
        s->over_quota = true;
        return RELAY_QUOTA;
    }
    if (!bucket_has(&s->bucket, n, now) || !bucket_has(&r->global, n, now)) {
        r->st.drop_rate++;
        return RELAY_RATE;
    }
    bucket_take(&s->bucket, n);
    bucket_take(&r->global, n);
    s->bytes += n;
    s->last_ms = now;
    return RELAY_PASS;
}

const netaddr *relay_route_udp(relay *r, uint64_t id, const netaddr *from, size_t len,
                               uint64_t now)
{
    relay_session *s = relay_find(r, id);
    if (!s) {
        r->st.drop_unknown_session++;
        return NULL;
    }
    int side;
    if (s->udp[0].len && netaddr_equal(&s->udp[0], from))
        side = 0;
    else if (s->udp[1].len && netaddr_equal(&s->udp[1], from))
        side = 1;
    else {
        r->st.drop_bad_source++;
        return NULL;
    }
    const netaddr *to = &s->udp[1 - side];
    if (!to->len) {
        r->st.drop_no_destination++;
        return NULL;
    }
    if (charge(r, s, len, now) != RELAY_PASS)
        return NULL;
    r->st.udp_packets++;
    r->st.udp_bytes += len;
    return to;
}

int relay_charge_tcp(relay *r, relay_session *s, size_t n, uint64_t now)
{
    if (r->lim.session_bytes && s->bytes + n > r->lim.session_bytes) {
        r->st.drop_quota++;
        s->over_quota = true;
        return RELAY_QUOTA;
    }
    /* The bytes were read already: they pass and are charged; a short
     * bucket only tells the shell to pause reading this side. */
    bool ok = bucket_has(&s->bucket, n, now) && bucket_has(&r->global, n, now);
    bucket_take(&s->bucket, n);
    bucket_take(&r->global, n);
    s->bytes += n;
    s->last_ms = now;
    r->st.tcp_bytes += n;
    if (!ok) {
        r->st.tcp_rate_pauses++;
        return RELAY_RATE;
    }
    return RELAY_PASS;
}

uint32_t relay_rate_wait_ms(const relay *r, const relay_session *s, size_t n, uint64_t now)
{
    relay_bucket a = s->bucket, g = r->global;
    bucket_refill(&a, now);
    bucket_refill(&g, now);
    uint32_t wa = bucket_wait_ms(&a, n), wg = bucket_wait_ms(&g, n);
    uint32_t w = wa > wg ? wa : wg;
    return w ? w : 1;
}

relay_session *relay_open(relay *r, uint64_t id, int role, const uint8_t *mac, size_t mac_len)
{
    relay_session *s = relay_find(r, id);
    int side = role == PUNCHLINE__ROLE__CONTROLLING ? 0 : role == PUNCHLINE__ROLE__CONTROLLED ? 1 : -1;
    uint8_t want[WIRE_MAC_LEN];
    bool ok = s && side >= 0 && mac_len == WIRE_MAC_LEN && !s->tcp[side];
    if (ok) {
        wire_relay_mac(s->secret, s->id, role, want);
        ok = crypto_equal(want, mac, WIRE_MAC_LEN);
    }
    if (!ok) {
        r->st.tcp_refused++;
        return NULL;
    }
    return s;
}

void relay_rebind(relay *r, const netaddr *old, const netaddr *now_at)
{
    if (!old->len)
        return;
    for (size_t i = 0; i < RELAY_BUCKETS; i++)
        for (relay_session *s = r->tab[i]; s; s = s->next)
            for (int k = 0; k < 2; k++)
                if (s->udp[k].len && netaddr_equal(&s->udp[k], old))
                    s->udp[k] = *now_at;
}

size_t relay_expire(relay *r, uint64_t now,
                    void (*ended)(relay_session *s, const char *why, void *user), void *user)
{
    size_t n = 0;
    for (size_t i = 0; i < RELAY_BUCKETS; i++) {
        relay_session **pp = &r->tab[i];
        while (*pp) {
            relay_session *s = *pp;
            const char *why = NULL;
            if (s->over_quota || (r->lim.session_bytes && s->bytes >= r->lim.session_bytes)) {
                why = "byte limit reached";
                r->st.sessions_ended_quota++;
            } else if (now > s->last_ms + r->lim.idle_ms) {
                why = "idle";
                r->st.sessions_ended_idle++;
            }
            if (!why) {
                pp = &s->next;
                continue;
            }
            if (ended)
                ended(s, why, user);
            *pp = s->next;
            r->st.sessions_active--;
            free(s);
            n++;
        }
    }
    return n;
}

void relay_format_stats(const relay *r, char *buf, size_t cap)
{
    const relay_stats *t = &r->st;
    snprintf(buf, cap,
             "relay: sessions active=%llu created=%llu refused_full=%llu ended_idle=%llu "
             "ended_quota=%llu evicted_unused=%llu; udp packets=%llu bytes=%llu; tcp bytes=%llu; drops "
             "unknown_session=%llu bad_source=%llu no_destination=%llu rate=%llu quota=%llu; "
             "tcp_refused=%llu tcp_rate_pauses=%llu",
             (unsigned long long)t->sessions_active, (unsigned long long)t->sessions_created,
             (unsigned long long)t->sessions_refused_full, (unsigned long long)t->sessions_ended_idle,
             (unsigned long long)t->sessions_ended_quota,
             (unsigned long long)t->sessions_evicted_unused, (unsigned long long)t->udp_packets,
             (unsigned long long)t->udp_bytes, (unsigned long long)t->tcp_bytes,
             (unsigned long long)t->drop_unknown_session, (unsigned long long)t->drop_bad_source,
             (unsigned long long)t->drop_no_destination, (unsigned long long)t->drop_rate,
             (unsigned long long)t->drop_quota, (unsigned long long)t->tcp_refused,
             (unsigned long long)t->tcp_rate_pauses);
}
