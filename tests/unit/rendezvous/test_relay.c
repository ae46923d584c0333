/* Unit tests for rendezvous/relay.c: the relay core, with fake time.
 *
 * Rules checked (rendezvous/relay.h, docs/PROTOCOL.md 5): a relayed
 * datagram goes only from one registered side of a paired session to the
 * other (never from or to a third address), every drop is counted by its
 * reason; a bounded session table; a per-session byte quota, after which
 * the session ends; token buckets per session and over all sessions
 * (burst max(rate/4, 64 KiB), refill to the millisecond); idle expiry with
 * one callback per ended session; RelayOpen by MAC, once per side; TCP
 * splice charging; NAT rebinding; and the counters line for the log. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "relay.h"
#include "wire.h"

/* ---- helpers ------------------------------------------------------------ */

#define T0 1000ull
#define SID 0x5e55100000000042ull

static netaddr addr(const char *s)
{
    netaddr a;
    cr_assert_eq(netaddr_parse(s, &a, false), 0, "%s", s);
    return a;
}

static void secret_of(uint8_t out[WIRE_SECRET_LEN], uint8_t seed)
{
    for (size_t i = 0; i < WIRE_SECRET_LEN; i++)
        out[i] = (uint8_t)(seed * 17u + i * 3u + 1u);
}

static relay *new_relay(size_t max_sessions, uint64_t session_bytes, uint64_t session_rate,
                        uint64_t global_rate, uint32_t idle_ms, uint64_t now)
{
    relay_limits lim = {.max_sessions = max_sessions,
                        .session_bytes = session_bytes,
                        .session_rate = session_rate,
                        .global_rate = global_rate,
                        .idle_ms = idle_ms};
    relay *r = relay_new(&lim, now);
    cr_assert_not_null(r);
    return r;
}

/* A session between A (controlling) and B (controlled). */
static relay_session *pair(relay *r, uint64_t id, const netaddr *a, const netaddr *b, uint64_t now)
{
    uint8_t secret[WIRE_SECRET_LEN];
    secret_of(secret, (uint8_t)id);
    relay_session *s = relay_create(r, id, secret, "alice", a, "bob", b, now);
    cr_assert_not_null(s, "relay_create(%llu)", (unsigned long long)id);
    return s;
}

/* Records relay_expire callbacks. */
typedef struct ended_log {
    int calls;
    uint64_t id[8];
    char why[8][32];
} ended_log;

static void on_ended(relay_session *s, const char *why, void *user)
{
    ended_log *l = user;
    cr_assert_lt(l->calls, 8);
    cr_assert_not_null(why);
    l->id[l->calls] = s->id;
    snprintf(l->why[l->calls], sizeof(l->why[0]), "%s", why);
    l->calls++;
}

/* ---- authorization ------------------------------------------------------ */

/* A datagram is forwarded only from one side's registered endpoint to the
 * other side's; a third address (even one port off), an unknown session and
 * a side without a UDP endpoint are dropped and counted. */
Test(relay, udp_forwarded_only_between_the_two_sides)
{
    relay *r = new_relay(0, 0, 0, 0, 0, T0);
    netaddr a = addr("203.0.113.1:6000"), b = addr("198.51.100.2:8000");
    netaddr c = addr("192.0.2.9:9999"), a_port = addr("203.0.113.1:6001");
    pair(r, SID, &a, &b, T0);
    const relay_stats *st = relay_get_stats(r);

    const netaddr *to = relay_route_udp(r, SID, &a, 100, T0);
    cr_assert_not_null(to, "A -> B");
    cr_assert(netaddr_equal(to, &b));
    to = relay_route_udp(r, SID, &b, 200, T0);
    cr_assert_not_null(to, "B -> A");
    cr_assert(netaddr_equal(to, &a));
    cr_assert_eq(st->udp_packets, 2);
    cr_assert_eq(st->udp_bytes, 300);

    cr_assert_null(relay_route_udp(r, SID, &c, 100, T0), "a third address");
    cr_assert_eq(st->drop_bad_source, 1);
    cr_assert_null(relay_route_udp(r, SID, &a_port, 100, T0), "A's IP, another port");
    cr_assert_eq(st->drop_bad_source, 2);

    cr_assert_null(relay_route_udp(r, SID + 1, &a, 100, T0), "unknown session");
    cr_assert_eq(st->drop_unknown_session, 1);
    cr_assert_eq(st->drop_bad_source, 2);

    /* B registered no UDP endpoint: NULL, and an empty netaddr alike */
    netaddr none;
    memset(&none, 0, sizeof(none));
    pair(r, SID + 2, &a, NULL, T0);
    pair(r, SID + 3, &none, &b, T0);
    cr_assert_null(relay_route_udp(r, SID + 2, &a, 100, T0));
    cr_assert_eq(st->drop_no_destination, 1);
    cr_assert_null(relay_route_udp(r, SID + 3, &b, 100, T0));
    cr_assert_eq(st->drop_no_destination, 2);
    cr_assert_null(relay_route_udp(r, SID + 3, &none, 100, T0),
                   "an empty source never matches an empty side");
    cr_assert_eq(st->drop_bad_source, 3);

    cr_assert_eq(st->udp_packets, 2, "no drop was forwarded");
    cr_assert_eq(st->udp_bytes, 300);
    cr_assert_eq(relay_find(r, SID)->bytes, 300, "the session was charged what passed");
    relay_free(r);
}

/* ---- the session table -------------------------------------------------- */

Test(relay, table_limit_and_duplicate_ids)
{
    relay *r = new_relay(2, 0, 0, 0, 0, T0);
    netaddr a = addr("203.0.113.1:6000"), b = addr("198.51.100.2:8000");
    uint8_t secret[WIRE_SECRET_LEN];
    secret_of(secret, 1);
    const relay_stats *st = relay_get_stats(r);
    cr_assert_eq(relay_get_limits(r)->max_sessions, 2);

    relay_session *s1 = pair(r, 1, &a, &b, T0);
    cr_assert_null(relay_create(r, 1, secret, "x", &a, "y", &b, T0), "id 1 is in use");
    cr_assert_null(relay_create(r, 0, secret, "x", &a, "y", &b, T0), "id 0 is no session");
    cr_assert_eq(st->sessions_refused_full, 0, "not refused for a full table");
    cr_assert_eq(st->sessions_active, 1);
    cr_assert_eq(relay_find(r, 1), s1);
    cr_assert_str_eq(s1->name[0], "alice");
    cr_assert_str_eq(s1->name[1], "bob");

    pair(r, 2, &a, &b, T0);
    cr_assert_null(relay_create(r, 3, secret, "x", &a, "y", &b, T0), "table full");
    cr_assert_eq(st->sessions_refused_full, 1);
    cr_assert_null(relay_find(r, 3));
    cr_assert_eq(st->sessions_active, 2);

    relay_remove(r, s1);
    cr_assert_null(relay_find(r, 1));
    cr_assert_eq(st->sessions_active, 1);
    relay_session *s3 = pair(r, 3, &a, &b, T0);
    cr_assert_eq(relay_find(r, 3), s3);
    cr_assert_eq(st->sessions_active, 2);
    cr_assert_eq(st->sessions_created, 3);
    cr_assert_eq(st->sessions_refused_full, 1);
    relay_free(r);
}

/* A full table makes room by removing the oldest session that never
 * relayed a byte, has no relay-tcp side attached and is older than
 * unused_ms (a flood of connect requests must not keep later pairs from the
 * relay); used, attached and young sessions are never removed for it. */
Test(relay, full_table_evicts_the_oldest_unused_session)
{
    relay *r = new_relay(4, 0, 0, 0, 0, T0);
    const uint32_t U = relay_get_limits(r)->unused_ms;
    cr_assert_eq(U, 10000, "default");
    netaddr a = addr("203.0.113.1:6000"), b = addr("198.51.100.2:8000");
    uint8_t secret[WIRE_SECRET_LEN];
    secret_of(secret, 1);
    const relay_stats *st = relay_get_stats(r);
    relay_session *used = pair(r, 1, &a, &b, T0);
    relay_session *tcp = pair(r, 2, &a, &b, T0 + 1);
    pair(r, 3, &a, &b, T0 + 2);         /* unused: the oldest such */
    pair(r, 4, &a, &b, T0 + 3);         /* unused, younger */
    cr_assert_not_null(relay_route_udp(r, 1, &a, 100, T0 + 5), "session 1 relays");
    static int attached;
    tcp->tcp[1] = &attached;            /* a relay-tcp side waits on session 2 */
    (void)used;
    /* too young to be called unused: refused */
    cr_assert_null(relay_create(r, 5, secret, "x", &a, "y", &b, T0 + U - 1));
    cr_assert_eq(st->sessions_refused_full, 1);
    cr_assert_eq(st->sessions_evicted_unused, 0);
    /* now 3 goes, then 4, then nothing is left to evict */
    cr_assert_not_null(relay_create(r, 5, secret, "x", &a, "y", &b, T0 + U + 2));
    cr_assert_null(relay_find(r, 3));
    cr_assert_not_null(relay_create(r, 6, secret, "x", &a, "y", &b, T0 + U + 3));
    cr_assert_null(relay_find(r, 4));
    cr_assert_null(relay_create(r, 7, secret, "x", &a, "y", &b, T0 + U + 4), "5 and 6 are young");
    cr_assert_not_null(relay_find(r, 1), "a session that relayed is kept");
    cr_assert_not_null(relay_find(r, 2), "a session with a relay-tcp side is kept");
    cr_assert_eq(st->sessions_evicted_unused, 2);
    cr_assert_eq(st->sessions_active, 4);
    char buf[1024];
    relay_format_stats(r, buf, sizeof(buf));
    cr_assert_not_null(strstr(buf, "evicted_unused=2"), "%s", buf);
    tcp->tcp[1] = NULL;
    relay_free(r);
}

/* ---- session byte quota ------------------------------------------------- */

/* session_bytes = 1000 and 400-byte datagrams: two pass (800), the third
 * would exceed the quota and is dropped; the session has used up what it may
 * relay and ends at the next expiry pass, as "byte limit reached" (not
 * later as "idle": the refused datagram is not charged, so the session
 * remembers that it hit the limit). */
Test(relay, quota_drop_then_session_ends)
{
    relay *r = new_relay(0, 1000, 0, 0, 5000, T0);
    netaddr a = addr("203.0.113.1:6000"), b = addr("198.51.100.2:8000");
    relay_session *s = pair(r, SID, &a, &b, T0);
    const relay_stats *st = relay_get_stats(r);

    cr_assert_not_null(relay_route_udp(r, SID, &a, 400, T0));
    cr_assert_not_null(relay_route_udp(r, SID, &b, 400, T0 + 1));
    cr_assert_null(relay_route_udp(r, SID, &a, 400, T0 + 2), "800 + 400 > 1000");
    cr_assert_eq(st->drop_quota, 1);
    cr_assert_eq(st->udp_packets, 2);
    cr_assert_eq(s->bytes, 800);

    ended_log log = {0};
    cr_assert_eq(relay_expire(r, T0 + 3, on_ended, &log), 1, "the session is over its quota");
    cr_assert_eq(log.calls, 1);
    cr_assert_eq(log.id[0], SID);
    cr_assert_str_eq(log.why[0], "byte limit reached");
    cr_assert_eq(st->sessions_ended_quota, 1);
    cr_assert_eq(st->sessions_ended_idle, 0);
    cr_assert_eq(st->sessions_active, 0);
    cr_assert_null(relay_find(r, SID));
    relay_free(r);
}

/* The quota filled exactly (400 + 400 + 200 = 1000): the session ends at the
 * next expiry pass with "byte limit reached", before it is idle. */
Test(relay, quota_filled_exactly_ends_session)
{
    relay *r = new_relay(0, 1000, 0, 0, 5000, T0);
    netaddr a = addr("203.0.113.1:6000"), b = addr("198.51.100.2:8000");
    relay_session *s = pair(r, SID, &a, &b, T0);
    pair(r, SID + 1, &a, &b, T0); /* untouched: must survive the pass */
    const relay_stats *st = relay_get_stats(r);

    cr_assert_not_null(relay_route_udp(r, SID, &a, 400, T0));
    cr_assert_not_null(relay_route_udp(r, SID, &b, 400, T0));
    ended_log log = {0};
    cr_assert_eq(relay_expire(r, T0 + 1, on_ended, &log), 0, "800 of 1000: not over");
    cr_assert_not_null(relay_route_udp(r, SID, &a, 200, T0 + 1));
    cr_assert_eq(s->bytes, 1000);
    cr_assert_null(relay_route_udp(r, SID, &a, 1, T0 + 1), "not one byte more");
    cr_assert_eq(st->drop_quota, 1);

    cr_assert_eq(relay_expire(r, T0 + 2, on_ended, &log), 1);
    cr_assert_eq(log.calls, 1);
    cr_assert_eq(log.id[0], SID);
    cr_assert_str_eq(log.why[0], "byte limit reached");
    cr_assert_eq(st->sessions_ended_quota, 1);
    cr_assert_eq(st->sessions_ended_idle, 0);
    cr_assert_eq(st->sessions_active, 1);
    cr_assert_null(relay_find(r, SID));
    cr_assert_not_null(relay_find(r, SID + 1));
    relay_free(r);
}

/* ---- rate limits -------------------------------------------------------- */

/* 100000 B/s per session: the bucket holds max(rate/4, 65536) = 65536
 * bytes, so 65 datagrams of 1000 bytes pass at once and the 66th is
 * refused; 100 ms later 10000 bytes more have accrued: 10 pass, the 11th is
 * refused. */
Test(relay, session_rate_burst_and_refill)
{
    relay *r = new_relay(0, 0, 100000, 0, 0, 0);
    netaddr a = addr("203.0.113.1:6000"), b = addr("198.51.100.2:8000");
    relay_session *s = pair(r, SID, &a, &b, T0);
    const relay_stats *st = relay_get_stats(r);
    cr_assert_eq(s->bucket.cap, 65536);

    int pass = 0;
    while (relay_route_udp(r, SID, &a, 1000, T0) != NULL)
        cr_assert_lt(++pass, 1000, "the rate limit never applies");
    cr_assert_eq(pass, 65);
    cr_assert_eq(st->drop_rate, 1);
    cr_assert_null(relay_route_udp(r, SID, &b, 1000, T0), "the bucket is per session, both ways");
    cr_assert_eq(st->drop_rate, 2);
    cr_assert_eq(s->bytes, 65000, "refused datagrams are not charged");

    pass = 0;
    while (relay_route_udp(r, SID, &a, 1000, T0 + 100) != NULL)
        cr_assert_lt(++pass, 1000);
    cr_assert_eq(pass, 10, "100 ms at 100000 B/s = 10000 bytes");
    cr_assert_eq(st->drop_rate, 3);
    cr_assert_eq(st->udp_packets, 75);

    /* another session has its own full bucket */
    pair(r, SID + 1, &a, &b, T0 + 100);
    cr_assert_not_null(relay_route_udp(r, SID + 1, &a, 1000, T0 + 100));
    relay_free(r);
}

/* A global rate applies across sessions: 100000 B/s over all, no session
 * limit; alternating two sessions, 65 datagrams of 1000 bytes pass in all,
 * then both are refused, and so is a fresh third session. */
Test(relay, global_rate_across_sessions)
{
    relay *r = new_relay(0, 0, 0, 100000, 0, T0);
    netaddr a = addr("203.0.113.1:6000"), b = addr("198.51.100.2:8000");
    netaddr c = addr("192.0.2.3:3000"), d = addr("192.0.2.4:4000");
    pair(r, 1, &a, &b, T0);
    pair(r, 2, &c, &d, T0);
    const relay_stats *st = relay_get_stats(r);

    int pass[2] = {0, 0}, total = 0;
    for (int i = 0; i < 200; i++) {
        int k = i % 2;
        if (relay_route_udp(r, (uint64_t)k + 1, k ? &c : &a, 1000, T0))
            pass[k]++, total++;
    }
    cr_assert_eq(total, 65, "the global bucket holds 65536 bytes");
    cr_assert_eq(pass[0], 33);
    cr_assert_eq(pass[1], 32);
    cr_assert_eq(st->drop_rate, 200 - 65);

    pair(r, 3, &b, &d, T0);
    cr_assert_null(relay_route_udp(r, 3, &b, 1000, T0), "a fresh session, but no global tokens");
    cr_assert_not_null(relay_route_udp(r, 3, &b, 1000, T0 + 10), "10 ms = 1000 bytes");
    cr_assert_null(relay_route_udp(r, 1, &a, 1000, T0 + 10));
    relay_free(r);
}

/* ---- idle expiry -------------------------------------------------------- */

/* idle_ms = 5000: relayed traffic keeps a session alive; it ends once more
 * than 5000 ms have passed since its last relayed byte (not at exactly
 * 5000), with one callback "idle". */
Test(relay, idle_expiry)
{
    relay *r = new_relay(0, 0, 0, 0, 5000, 0);
    netaddr a = addr("203.0.113.1:6000"), b = addr("198.51.100.2:8000");
    netaddr c = addr("192.0.2.9:9999");
    pair(r, 1, &a, &b, 0); /* traffic at 3000 */
    pair(r, 2, &a, &b, 0); /* none */
    const relay_stats *st = relay_get_stats(r);
    cr_assert_eq(st->sessions_active, 2);

    cr_assert_not_null(relay_route_udp(r, 1, &a, 100, 3000));
    /* drops do not count as traffic */
    cr_assert_null(relay_route_udp(r, 2, &c, 100, 3000));

    ended_log log = {0};
    cr_assert_eq(relay_expire(r, 5000, on_ended, &log), 0, "nobody idle for more than 5000 ms");
    cr_assert_eq(relay_expire(r, 7000, on_ended, &log), 1);
    cr_assert_eq(log.calls, 1);
    cr_assert_eq(log.id[0], 2, "only the session without traffic");
    cr_assert_str_eq(log.why[0], "idle");
    cr_assert_eq(st->sessions_active, 1);
    cr_assert_not_null(relay_find(r, 1));
    cr_assert_null(relay_find(r, 2));

    cr_assert_eq(relay_expire(r, 8000, on_ended, &log), 0, "exactly idle_ms is not longer");
    cr_assert_eq(relay_expire(r, 8001, on_ended, &log), 1);
    cr_assert_eq(log.calls, 2);
    cr_assert_eq(log.id[1], 1);
    cr_assert_str_eq(log.why[1], "idle");
    cr_assert_eq(st->sessions_active, 0);
    cr_assert_eq(st->sessions_ended_idle, 2);
    cr_assert_eq(st->sessions_ended_quota, 0);
    cr_assert_null(relay_find(r, 1));
    cr_assert_eq(relay_expire(r, 100000, NULL, NULL), 0);
    relay_free(r);
}

/* ---- RelayOpen ---------------------------------------------------------- */

Test(relay, open_by_mac_once_per_side)
{
    relay *r = new_relay(0, 0, 0, 0, 0, T0);
    netaddr a = addr("203.0.113.1:6000"), b = addr("198.51.100.2:8000");
    relay_session *s = pair(r, SID, &a, &b, T0);
    const relay_stats *st = relay_get_stats(r);
    uint8_t secret[WIRE_SECRET_LEN];
    secret_of(secret, (uint8_t)SID);
    uint8_t mac_a[WIRE_MAC_LEN], mac_b[WIRE_MAC_LEN], bad[WIRE_MAC_LEN];
    wire_relay_mac(secret, SID, PUNCHLINE__ROLE__CONTROLLING, mac_a);
    wire_relay_mac(secret, SID, PUNCHLINE__ROLE__CONTROLLED, mac_b);
    cr_assert_neq(memcmp(mac_a, mac_b, WIRE_MAC_LEN), 0, "the MAC binds the role");

    memcpy(bad, mac_a, WIRE_MAC_LEN);
    bad[WIRE_MAC_LEN - 1] ^= 0x01;
    cr_assert_null(relay_open(r, SID, PUNCHLINE__ROLE__CONTROLLING, bad, WIRE_MAC_LEN), "flipped bit");
    cr_assert_eq(st->tcp_refused, 1);
    cr_assert_null(relay_open(r, SID + 1, PUNCHLINE__ROLE__CONTROLLING, mac_a, WIRE_MAC_LEN),
                   "unknown session");
    cr_assert_eq(st->tcp_refused, 2);
    cr_assert_null(relay_open(r, SID, PUNCHLINE__ROLE__CONTROLLED, mac_a, WIRE_MAC_LEN),
                   "the controlling side's MAC for the controlled role");
    cr_assert_eq(st->tcp_refused, 3);
    cr_assert_null(relay_open(r, SID, PUNCHLINE__ROLE__CONTROLLING, mac_a, WIRE_MAC_LEN - 1),
                   "short MAC");
    cr_assert_null(relay_open(r, SID, PUNCHLINE__ROLE__ROLE_UNKNOWN, mac_a, WIRE_MAC_LEN),
                   "no role");
    cr_assert_eq(st->tcp_refused, 5);

    cr_assert_eq(relay_open(r, SID, PUNCHLINE__ROLE__CONTROLLING, mac_a, WIRE_MAC_LEN), s);
    cr_assert_eq(st->tcp_refused, 5);
    s->tcp[0] = (void *)1; /* the shell attached side 0 */
    cr_assert_null(relay_open(r, SID, PUNCHLINE__ROLE__CONTROLLING, mac_a, WIRE_MAC_LEN),
                   "side 0 taken");
    cr_assert_eq(st->tcp_refused, 6);
    cr_assert_eq(relay_open(r, SID, PUNCHLINE__ROLE__CONTROLLED, mac_b, WIRE_MAC_LEN), s,
                 "side 1 is still free");
    s->tcp[1] = (void *)1;
    cr_assert_null(relay_open(r, SID, PUNCHLINE__ROLE__CONTROLLED, mac_b, WIRE_MAC_LEN));
    cr_assert_eq(st->tcp_refused, 7);
    s->tcp[0] = s->tcp[1] = NULL;
    relay_free(r);
}

/* ---- TCP splice charging ------------------------------------------------ */

Test(relay, charge_tcp_quota_not_charged)
{
    relay *r = new_relay(0, 1000, 0, 0, 0, T0);
    netaddr a = addr("203.0.113.1:6000"), b = addr("198.51.100.2:8000");
    relay_session *s = pair(r, SID, &a, &b, T0);
    const relay_stats *st = relay_get_stats(r);

    cr_assert_eq(relay_charge_tcp(r, s, 600, T0 + 5), RELAY_PASS);
    cr_assert_eq(s->bytes, 600);
    cr_assert_eq(s->last_ms, T0 + 5);
    cr_assert_eq(relay_charge_tcp(r, s, 401, T0 + 6), RELAY_QUOTA);
    cr_assert_eq(s->bytes, 600, "a quota refusal is not charged");
    cr_assert_eq(st->tcp_bytes, 600);
    cr_assert_eq(st->drop_quota, 1);
    cr_assert_eq(relay_charge_tcp(r, s, 400, T0 + 7), RELAY_PASS, "exactly up to the quota");
    cr_assert_eq(s->bytes, 1000);
    cr_assert_eq(st->tcp_bytes, 1000);
    relay_free(r);
}

/* Bytes already read pass and are charged even when the bucket is short;
 * RELAY_RATE asks the shell to pause for as long as the bucket needs. */
Test(relay, charge_tcp_rate_charges_and_asks_to_wait)
{
    relay *r = new_relay(0, 0, 100000, 0, 0, T0);
    netaddr a = addr("203.0.113.1:6000"), b = addr("198.51.100.2:8000");
    relay_session *s = pair(r, SID, &a, &b, T0);
    const relay_stats *st = relay_get_stats(r);

    cr_assert_eq(relay_charge_tcp(r, s, 65536, T0), RELAY_PASS, "a full bucket");
    cr_assert_eq(relay_charge_tcp(r, s, 1000, T0), RELAY_RATE);
    cr_assert_eq(s->bytes, 66536, "charged anyway");
    cr_assert_eq(st->tcp_bytes, 66536);
    cr_assert_eq(st->tcp_rate_pauses, 1);
    cr_assert_eq(st->drop_rate, 0, "nothing was dropped");

    /* 1000 bytes of debt, then 65536 bytes of tokens at 100000 B/s */
    uint32_t w = relay_rate_wait_ms(r, s, 65536, T0);
    cr_assert_eq(w, 666, "(1000 + 65536) bytes at 100000 B/s, rounded up");
    cr_assert_eq(relay_rate_wait_ms(r, s, 1, T0), 11, "the debt is paid back first");
    cr_assert_eq(relay_charge_tcp(r, s, 65536, T0 + w - 2), RELAY_RATE, "early");
    cr_assert_eq(st->tcp_rate_pauses, 2);

    /* unlimited: never RATE, wait is still at least 1 */
    relay *u = new_relay(0, 0, 0, 0, 0, T0);
    relay_session *us = pair(u, SID, &a, &b, T0);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(relay_charge_tcp(u, us, 65536, T0), RELAY_PASS);
    cr_assert_eq(relay_rate_wait_ms(u, us, 65536, T0), 1);
    relay_free(u);
    relay_free(r);
}

/* ---- NAT rebinding ------------------------------------------------------ */

Test(relay, rebind_moves_the_authorized_endpoint)
{
    relay *r = new_relay(0, 0, 0, 0, 0, T0);
    netaddr a = addr("203.0.113.1:6000"), b = addr("198.51.100.2:8000");
    netaddr a2 = addr("203.0.113.1:6123"), c = addr("192.0.2.9:9999");
    pair(r, 1, &a, &b, T0);
    pair(r, 2, &c, &a, T0); /* A on side 1 of another session */
    const relay_stats *st = relay_get_stats(r);

    relay_rebind(r, &a, &a2);
    cr_assert_null(relay_route_udp(r, 1, &a, 100, T0), "the old endpoint is no side any more");
    cr_assert_eq(st->drop_bad_source, 1);
    const netaddr *to = relay_route_udp(r, 1, &a2, 100, T0);
    cr_assert_not_null(to);
    cr_assert(netaddr_equal(to, &b));
    to = relay_route_udp(r, 1, &b, 100, T0);
    cr_assert_not_null(to);
    cr_assert(netaddr_equal(to, &a2), "and B's datagrams go to the new endpoint");
    to = relay_route_udp(r, 2, &c, 100, T0);
    cr_assert_not_null(to);
    cr_assert(netaddr_equal(to, &a2), "every session of A follows");

    netaddr none;
    memset(&none, 0, sizeof(none));
    relay_rebind(r, &none, &c); /* no old endpoint: nothing to move */
    cr_assert_null(relay_route_udp(r, 1, &c, 100, T0));
    relay_free(r);
}

/* ---- counters ----------------------------------------------------------- */

Test(relay, format_stats)
{
    relay *r = new_relay(0, 0, 0, 0, 0, T0);
    netaddr a = addr("203.0.113.1:6000"), b = addr("198.51.100.2:8000");
    pair(r, SID, &a, &b, T0);
    for (int i = 0; i < 3; i++)
        cr_assert_not_null(relay_route_udp(r, SID, &a, 100, T0));
    cr_assert_null(relay_route_udp(r, SID + 1, &a, 100, T0));
    char buf[1024];
    relay_format_stats(r, buf, sizeof(buf));
    cr_assert_not_null(strstr(buf, "udp packets=3 bytes=300"), "%s", buf);
    cr_assert_not_null(strstr(buf, "sessions active=1 created=1"), "%s", buf);
    cr_assert_not_null(strstr(buf, "unknown_session=1"), "%s", buf);

    char small[16];
    relay_format_stats(r, small, sizeof(small));
    cr_assert_eq(strlen(small), sizeof(small) - 1, "truncated, NUL-terminated");
    relay_free(r);
}

/* A sender that always has data gets the configured rate, not twice it:
 * the shell's loop (read a 64 KiB chunk, charge it, pause for
 * relay_rate_wait_ms when asked) over 10 simulated seconds, for one
 * session with a session rate and for 50 sessions under a global rate. */
static uint64_t simulate_tcp(relay *r, relay_session **ss, int n, uint64_t secs)
{
    uint64_t resume[64] = {0}, moved = 0;
    for (uint64_t now = T0; now < T0 + secs * 1000; now++) {
        for (int i = 0; i < n; i++) {
            if (now < resume[i])
                continue;
            moved += 65536;
            if (relay_charge_tcp(r, ss[i], 65536, now) == RELAY_RATE)
                resume[i] = now + relay_rate_wait_ms(r, ss[i], 65536, now);
        }
    }
    return moved;
}

Test(relay, tcp_rates_hold_for_a_greedy_sender)
{
    relay *r = new_relay(0, 0, 1 << 20, 0, 0, T0);
    netaddr a = addr("203.0.113.1:6000"), b = addr("198.51.100.2:8000");
    relay_session *s = pair(r, SID, &a, &b, T0);
    uint64_t moved = simulate_tcp(r, &s, 1, 10);
    /* 10 s at 1 MiB/s plus the initial burst (one bucket, 256 KiB) and
     * one chunk of slack */
    cr_assert_leq(moved, 10 * (1 << 20) + (256 << 10) + 65536, "moved %llu bytes", (unsigned long long)moved);
    cr_assert_geq(moved, 9 * (1 << 20), "moved %llu bytes", (unsigned long long)moved);
    relay_free(r);

    relay *g = new_relay(100, 0, 0, 1 << 20, 0, T0);
    relay_session *many[50];
    for (int i = 0; i < 50; i++) {
        char as[32];
        snprintf(as, sizeof(as), "203.0.113.1:%d", 10000 + i);
        netaddr x = addr(as), y = addr("198.51.100.2:8000");
        many[i] = pair(g, SID + 1 + (uint64_t)i, &x, &y, T0);
    }
    moved = simulate_tcp(g, many, 50, 10);
    /* the global cap holds for all 50 together; the first chunk of each
     * session may go out before the debt stops them */
    cr_assert_leq(moved, 10 * (1 << 20) + 50 * 65536 + (256 << 10), "moved %llu bytes", (unsigned long long)moved);
    relay_free(g);
}
