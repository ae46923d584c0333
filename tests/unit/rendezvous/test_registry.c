/* Unit tests for rendezvous/registry.c and rendezvous/ratelimit.c, with
 * fake time.
 *
 * Rules checked (rendezvous/registry.h): one live registration per name,
 * names of 1..63 bytes of [A-Za-z0-9._-] (punchline.proto Register.name),
 * a bounded table (SERVER_FULL), lookup by name and by UDP token through
 * hash chains that survive removals in any order, expiry after expiry_ms
 * of silence with exactly one callback per expired peer, and a token bucket
 * whose burst and refill rate hold to the millisecond. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"
#include "registry.h"

/* ---- helpers ------------------------------------------------------------ */

static registry *new_registry(size_t max_peers, uint32_t expiry_ms)
{
    registry_config cfg = {.max_peers = max_peers, .expiry_ms = expiry_ms};
    registry *r = registry_new(&cfg);
    cr_assert_not_null(r);
    return r;
}

static void peer_name(char *buf, size_t cap, size_t i)
{
    snprintf(buf, cap, "peer-%zu", i);
}

/* Distinct tokens whose low bits collide (stress for the token hash). */
static uint64_t token_of(size_t i)
{
    return ((uint64_t)(i + 1) << 32) ^ 0xabcdef;
}

static void *conn_of(size_t i)
{
    return (void *)(uintptr_t)(0x1000 + i);
}

/* ---- add / find / remove ------------------------------------------------ */

Test(registry, add_find_remove)
{
    registry *r = new_registry(0, 0);
    reg_peer *p = NULL;
    int conn;
    cr_assert_eq(registry_add(r, "alice", &conn, 42, 1000, &p), REG_OK);
    cr_assert_not_null(p);
    cr_assert_str_eq(p->name, "alice");
    cr_assert_eq(p->conn, &conn);
    cr_assert_eq(p->udp_token, 42);
    cr_assert_eq(p->last_seen_ms, 1000);
    cr_assert_eq(p->observed_udp.len, 0, "no UDP endpoint before UdpBind");
    cr_assert_eq(registry_count(r), 1);

    cr_assert_eq(registry_find(r, "alice"), p);
    cr_assert_null(registry_find(r, "Alice"), "names are case-sensitive");
    cr_assert_null(registry_find(r, "alic"));
    cr_assert_null(registry_find(r, "alice2"));
    cr_assert_null(registry_find(r, ""), "invalid names find nothing");
    cr_assert_null(registry_find(r, NULL));
    cr_assert_eq(registry_find_token(r, 42), p);
    cr_assert_null(registry_find_token(r, 43));
    cr_assert_null(registry_find_token(r, 0));

    registry_remove(r, p);
    cr_assert_eq(registry_count(r), 0);
    cr_assert_null(registry_find(r, "alice"));
    cr_assert_null(registry_find_token(r, 42));
    registry_remove(r, NULL); /* no-op */

    /* the name is free again */
    cr_assert_eq(registry_add(r, "alice", &conn, 43, 2000, &p), REG_OK);
    cr_assert_eq(registry_find_token(r, 43), p);
    registry_free(r);
    registry_free(NULL);
}

/* One live registration per name: a second one is NAME_IN_USE and changes
 * nothing (the first keeps its connection and token). */
Test(registry, name_in_use)
{
    registry *r = new_registry(0, 0);
    reg_peer *p, *q = (reg_peer *)1;
    cr_assert_eq(registry_add(r, "bob", conn_of(1), 1, 0, &p), REG_OK);
    cr_assert_eq(registry_add(r, "bob", conn_of(2), 2, 0, &q), REG_E_NAME_IN_USE);
    cr_assert_null(q, "*out is NULL on failure");
    cr_assert_eq(registry_count(r), 1);
    cr_assert_eq(registry_find(r, "bob")->conn, conn_of(1));
    cr_assert_null(registry_find_token(r, 2));
    cr_assert_eq(registry_add(r, "Bob", conn_of(3), 3, 0, &q), REG_OK, "another name");
    registry_free(r);
}

#define A16 "aaaaaaaaaaaaaaaa"

struct bad_name {
    char s[80];
};

ParameterizedTestParameters(registry, bad_names_refused)
{
    static struct bad_name cases[] = {
        {""}, {A16 A16 A16 A16}, {A16 A16 A16 A16 A16}, {"a b"}, {" a"}, {"a\t"}, {"a\nb"},
        {"\x1b[2J"}, {"a\x7f"}, {"caf\xc3\xa9"}, {"\xff"}, {"a/b"}, {"a:b"}, {"a@b"},
        {"../x"},    {"a,b"}, {"%s%s"},
    };
    return cr_make_param_array(struct bad_name, cases, sizeof(cases) / sizeof(cases[0]));
}

/* Names outside 1..63 bytes of [A-Za-z0-9._-] are BAD_NAME and never
 * stored. */
ParameterizedTest(struct bad_name *c, registry, bad_names_refused)
{
    registry *r = new_registry(0, 0);
    reg_peer *p = (reg_peer *)1;
    cr_assert_eq(registry_add(r, c->s, conn_of(1), 7, 0, &p), REG_E_BAD_NAME, "\"%s\" (%zu bytes)", c->s,
                 strlen(c->s));
    cr_assert_null(p);
    cr_assert_eq(registry_count(r), 0);
    cr_assert_null(registry_find_token(r, 7));
    registry_free(r);
}

Test(registry, name_limits)
{
    registry *r = new_registry(0, 0);
    reg_peer *p;
    cr_assert_eq(registry_add(r, NULL, NULL, 1, 0, &p), REG_E_BAD_NAME);
    cr_assert_eq(registry_add(r, "a", NULL, 2, 0, &p), REG_OK, "one byte");
    cr_assert_eq(registry_add(r, A16 A16 A16 "aaaaaaaaaaaaaaa", NULL, 3, 0, &p), REG_OK, "63 bytes");
    cr_assert_eq(strlen(p->name), 63);
    cr_assert_eq(registry_add(r, "A-z_0.9", NULL, 4, 0, &p), REG_OK, "the whole alphabet");
    cr_assert_eq(registry_count(r), 3);
    registry_free(r);
}

/* The table is bounded: max_peers registrations, then SERVER_FULL, and a
 * removal makes room again. */
Test(registry, full_at_max_peers)
{
    registry *r = new_registry(10, 0);
    reg_peer *peers[10], *p = (reg_peer *)1;
    char name[32];
    for (size_t i = 0; i < 10; i++) {
        peer_name(name, sizeof(name), i);
        cr_assert_eq(registry_add(r, name, conn_of(i), token_of(i), 0, &peers[i]), REG_OK);
    }
    cr_assert_eq(registry_add(r, "one-more", NULL, 99, 0, &p), REG_E_FULL);
    cr_assert_null(p);
    cr_assert_eq(registry_count(r), 10);
    cr_assert_eq(registry_add(r, "peer-3", NULL, 98, 0, &p), REG_E_NAME_IN_USE,
                 "a duplicate is still reported as such when full");
    registry_remove(r, peers[3]);
    cr_assert_eq(registry_add(r, "one-more", NULL, 99, 0, &p), REG_OK);
    cr_assert_eq(registry_count(r), 10);
    registry_free(r);
}

/* ---- hashing ------------------------------------------------------------ */

/* Lookups through every chain while peers are removed in a scrambled
 * order (head, middle and tail of chains): 64 peers in the smallest table
 * guarantee chains, and after each removal every remaining peer is still
 * found by name and token and the removed ones are not. */
Test(registry, chains_survive_removal_in_any_order)
{
    enum { N = 64 };
    registry *r = new_registry(N, 0);
    reg_peer *peers[N];
    char name[32];
    for (size_t i = 0; i < N; i++) {
        peer_name(name, sizeof(name), i);
        cr_assert_eq(registry_add(r, name, conn_of(i), token_of(i), 0, &peers[i]), REG_OK);
    }
    bool gone[N] = {false};
    for (size_t k = 0; k < N; k++) {
        size_t victim = (k * 37 + 11) % N; /* 37 is coprime with 64: a permutation */
        cr_assert_not(gone[victim]);
        registry_remove(r, peers[victim]);
        gone[victim] = true;
        cr_assert_eq(registry_count(r), N - k - 1);
        for (size_t i = 0; i < N; i++) {
            peer_name(name, sizeof(name), i);
            reg_peer *byname = registry_find(r, name), *bytoken = registry_find_token(r, token_of(i));
            if (gone[i]) {
                cr_assert_null(byname, "%s found after removal", name);
                cr_assert_null(bytoken);
            } else {
                cr_assert_eq(byname, peers[i], "%s lost after removing peer-%zu", name, victim);
                cr_assert_eq(bytoken, peers[i]);
            }
        }
    }
    registry_free(r);
}

/* Many peers (5000) hash correctly; removing every other one keeps the
 * rest reachable; registry_free() releases all (ASan build). */
Test(registry, many_peers)
{
    enum { N = 5000 };
    registry *r = new_registry(N, 0);
    reg_peer **peers = calloc(N, sizeof(*peers));
    cr_assert_not_null(peers);
    char name[32];
    for (size_t i = 0; i < N; i++) {
        peer_name(name, sizeof(name), i);
        cr_assert_eq(registry_add(r, name, conn_of(i), token_of(i), i, &peers[i]), REG_OK, "%s", name);
    }
    cr_assert_eq(registry_count(r), N);
    for (size_t i = 0; i < N; i++) {
        peer_name(name, sizeof(name), i);
        cr_assert_eq(registry_find(r, name), peers[i]);
        cr_assert_eq(registry_find_token(r, token_of(i)), peers[i]);
    }
    for (size_t i = 0; i < N; i += 2)
        registry_remove(r, peers[i]);
    cr_assert_eq(registry_count(r), N / 2);
    for (size_t i = 0; i < N; i++) {
        peer_name(name, sizeof(name), i);
        if (i % 2) {
            cr_assert_eq(registry_find(r, name), peers[i], "%s", name);
            cr_assert_eq(registry_find_token(r, token_of(i)), peers[i]);
        } else {
            cr_assert_null(registry_find(r, name), "%s", name);
            cr_assert_null(registry_find_token(r, token_of(i)));
        }
    }
    free(peers);
    registry_free(r); /* frees the 2500 still registered */
}

/* ---- expiry ------------------------------------------------------------- */

typedef struct expired_log {
    char names[16][NAME_MAX_LEN + 1];
    size_t n;
} expired_log;

static void on_expired(reg_peer *p, void *user)
{
    expired_log *l = user;
    cr_assert_lt(l->n, 16);
    /* the peer is still intact while the callback runs */
    cr_assert_not_null(p->conn);
    snprintf(l->names[l->n++], sizeof(l->names[0]), "%s", p->name);
}

static bool logged(const expired_log *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->names[i], name) == 0)
            return true;
    return false;
}

/* A peer silent for expiry_ms is removed at exactly last_seen + expiry_ms,
 * not a millisecond earlier; registry_touch() keeps a peer alive; the
 * callback runs once per expired peer. */
Test(registry, expiry_with_fake_time)
{
    registry *r = new_registry(0, 1000);
    cr_assert_eq(registry_expiry_ms(r), 1000);
    reg_peer *a, *b, *c;
    cr_assert_eq(registry_add(r, "a", conn_of(1), 1, 10000, &a), REG_OK);
    cr_assert_eq(registry_add(r, "b", conn_of(2), 2, 10000, &b), REG_OK);
    cr_assert_eq(registry_add(r, "c", conn_of(3), 3, 10500, &c), REG_OK);
    expired_log log = {.n = 0};

    registry_touch(b, 10900);
    cr_assert_eq(registry_expire(r, 10999, on_expired, &log), 0, "not before expiry_ms");
    cr_assert_eq(log.n, 0);

    cr_assert_eq(registry_expire(r, 11000, on_expired, &log), 1, "exactly at expiry_ms");
    cr_assert_eq(log.n, 1);
    cr_assert(logged(&log, "a"));
    cr_assert_null(registry_find(r, "a"));
    cr_assert_null(registry_find_token(r, 1));
    cr_assert_eq(registry_count(r), 2);

    cr_assert_eq(registry_expire(r, 11000, on_expired, &log), 0, "the callback ran once");
    cr_assert_eq(log.n, 1);

    /* touch with an older time does not move last_seen back */
    registry_touch(c, 10100);
    cr_assert_eq(c->last_seen_ms, 10500);
    cr_assert_eq(registry_expire(r, 11499, on_expired, &log), 0);
    cr_assert_eq(registry_expire(r, 11500, on_expired, &log), 1);
    cr_assert(logged(&log, "c"));
    cr_assert_eq(registry_find(r, "b"), b, "touched at 10900: alive until 11900");

    cr_assert_eq(registry_expire(r, 11900, NULL, NULL), 1, "a NULL callback is allowed");
    cr_assert_eq(registry_count(r), 0);
    cr_assert_eq(log.n, 2);
    registry_free(r);
}

/* Expiry of many peers at once walks chains while removing from them. */
Test(registry, expiry_of_many_peers)
{
    enum { N = 300 };
    registry *r = new_registry(N, 100);
    char name[32];
    reg_peer *p;
    for (size_t i = 0; i < N; i++) {
        peer_name(name, sizeof(name), i);
        cr_assert_eq(registry_add(r, name, conn_of(i), token_of(i), i % 2 ? 0 : 50, &p), REG_OK);
    }
    cr_assert_eq(registry_expire(r, 100, NULL, NULL), N / 2, "the odd half, added at 0");
    for (size_t i = 0; i < N; i++) {
        peer_name(name, sizeof(name), i);
        cr_assert_eq(registry_find(r, name) != NULL, i % 2 == 0, "%s", name);
    }
    cr_assert_eq(registry_expire(r, 150, NULL, NULL), N / 2);
    cr_assert_eq(registry_count(r), 0);
    registry_free(r);
}

/* ---- ratelimit (token bucket) ------------------------------------------- */

/* A full bucket allows `burst` requests at once, then one per 1000/rate ms;
 * partial refills accumulate; idle time never fills beyond the burst. */
Test(ratelimit, burst_then_refill_rate)
{
    ratelimit rl;
    ratelimit_init(&rl, 5, 20, 1000);
    for (int i = 0; i < 20; i++)
        cr_assert(ratelimit_take(&rl, 1000), "burst request %d", i);
    cr_assert_not(ratelimit_take(&rl, 1000), "bucket empty");

    /* 5 per second: one token every 200 ms */
    cr_assert_not(ratelimit_take(&rl, 1100));
    cr_assert_not(ratelimit_take(&rl, 1199));
    cr_assert(ratelimit_take(&rl, 1200), "the partial refills of 1100 and 1199 were kept");
    cr_assert_not(ratelimit_take(&rl, 1200));

    /* one second later: exactly 5 */
    int n = 0;
    while (ratelimit_take(&rl, 2200))
        n++;
    cr_assert_eq(n, 5);

    /* a long idle period refills to the burst and no further */
    n = 0;
    while (ratelimit_take(&rl, 1000000))
        n++;
    cr_assert_eq(n, 20);

    /* a clock going backwards neither refills nor breaks the bucket */
    cr_assert_not(ratelimit_take(&rl, 500));
    cr_assert(ratelimit_take(&rl, 1000200));
}

Test(ratelimit, rate_over_a_long_run)
{
    /* A request every millisecond for 10 s: the burst, then exactly 3 per
     * second (the bucket never fills up, so no refill is lost to the cap). */
    ratelimit rl;
    ratelimit_init(&rl, 3, 2, 0);
    int allowed = 0;
    for (uint64_t t = 0; t <= 10000; t++)
        allowed += ratelimit_take(&rl, t);
    cr_assert_eq(allowed, 2 + 30, "burst 2 + 3/s for 10 s");

    /* With burst 1 the bucket is full between a refill and the next
     * request; what accrues then is lost, as in any token bucket. */
    ratelimit one;
    ratelimit_init(&one, 3, 1, 0);
    allowed = 0;
    for (uint64_t t = 0; t <= 10000; t++)
        allowed += ratelimit_take(&one, t);
    cr_assert_geq(allowed, 30);
    cr_assert_leq(allowed, 31);

    ratelimit zero;
    ratelimit_init(&zero, 1, 0, 0);
    cr_assert(ratelimit_take(&zero, 0), "burst 0 means 1");
    cr_assert_not(ratelimit_take(&zero, 0));
}

/* Each registered peer gets its own connect-request bucket from the
 * registry config. */
Test(ratelimit, per_peer_bucket_from_registry_config)
{
    registry_config cfg = {.connect_rate = 2, .connect_burst = 3};
    registry *r = registry_new(&cfg);
    cr_assert_not_null(r);
    reg_peer *a, *b;
    cr_assert_eq(registry_add(r, "a", NULL, 1, 5000, &a), REG_OK);
    cr_assert_eq(registry_add(r, "b", NULL, 2, 5000, &b), REG_OK);
    for (int i = 0; i < 3; i++)
        cr_assert(ratelimit_take(&a->connect_rl, 5000));
    cr_assert_not(ratelimit_take(&a->connect_rl, 5000));
    cr_assert(ratelimit_take(&b->connect_rl, 5000), "b has its own bucket");
    cr_assert(ratelimit_take(&a->connect_rl, 5500), "2/s: one token after 500 ms");
    cr_assert_not(ratelimit_take(&a->connect_rl, 5500));
    registry_free(r);

    /* defaults: 20 at once, 5 per second */
    registry_config dflt = {0};
    r = registry_new(&dflt);
    cr_assert_eq(registry_add(r, "c", NULL, 3, 0, &a), REG_OK);
    int n = 0;
    while (ratelimit_take(&a->connect_rl, 0))
        n++;
    cr_assert_eq(n, 20);
    cr_assert_eq(registry_expiry_ms(r), 60000);
    registry_free(r);
}
