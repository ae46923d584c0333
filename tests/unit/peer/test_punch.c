/* Unit tests for peer/punch.c: the UDP hole-punching core, driven with fake
 * time through a tiny simulated network.
 *
 *   A (controlling)                                   B (controlled)
 *   host 192.168.1.10:5000 --[NAT A]-- 203.0.113.1:6000        (A's srflx)
 *   host  10.0.0.20:7000   --[NAT B]-- 198.51.100.2:8000       (B's srflx)
 *
 * Each side knows the other's host and srflx candidates.  Only the srflx
 * addresses are reachable across the simulated internet; a datagram A sends
 * appears at B as coming from A's NAT mapping (and vice versa).  Every
 * datagram punch_poll_transmit() hands out is decoded with wire_decode_udp()
 * and fed to the other side with punch_input(), at once (zero latency).
 * Time only moves when the test moves it: to the earliest
 * punch_next_deadline() of both sides, then punch_tick() and drain.
 *
 * Rules checked (peer/punch.h, docs/PROTOCOL.md): ICE-style checks (RFC 8445
 * s7.2.5) with aggressive nomination (RFC 5245 s8.1.1.2; RFC 8445 kept only
 * regular nomination), peer-reflexive learning
 * (RFC 8445 s7.3.1.3), retransmission pacing (RFC 8445 s14.3 / RFC 5389
 * s7.2.1 style RTO backoff), keepalives and consent freshness (RFC 7675),
 * probe authentication by MAC, and "the core never asks to be woken in the
 * past" (ARCHITECTURE.md rule 1: a deadline in the past is a busy loop). */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

#include "punch.h"

/* ---- helpers: addresses and configuration ------------------------------- */

#define T0 1000000ull /* simulated clocks do not start at zero */
#define SESSION 0x5e55100000000042ull

static netaddr addr(const char *s)
{
    netaddr a;
    cr_assert_eq(netaddr_parse(s, &a, false), 0, "%s", s);
    return a;
}

static const char *fmt(const netaddr *a)
{
    static char buf[4][NETADDR_STRLEN];
    static int i;
    if (!a)
        return "(none)";
    i = (i + 1) % 4;
    netaddr_format(a, buf[i], sizeof(buf[i]));
    return buf[i];
}

static punch_config config(bool controlling)
{
    punch_config c;
    memset(&c, 0, sizeof(c));
    c.session_id = SESSION;
    memset(c.secret, 0x42, sizeof(c.secret));
    c.controlling = controlling;
    c.timeout_ms = 3000;
    c.keepalive_ms = 1000;
    c.path_timeout_ms = 4000;
    c.rto_initial_ms = 50;
    c.rto_max_ms = 500;
    c.tid_seed = controlling ? 0xa5a5a5a5a5a5a5a5ull : 0x5a5a5a5a00000000ull;
    return c;
}

/* ---- helpers: the simulated network -------------------------------------- */

typedef struct sent {
    uint64_t t;
    char from;        /* 'A' or 'B' */
    netaddr to;
    bool response, nominate, delivered;
    uint64_t tid;
} sent;

#define LOG_MAX 4096

typedef struct sim {
    punch a, b;
    uint64_t now;
    netaddr a_host, a_srflx, b_host, b_srflx;
    netaddr a_src, b_src;   /* source address the other side sees */
    netaddr a_addr, b_addr; /* the one address at which each side is reachable */
    /* faults */
    int drop_a_to_b;        /* lose this many more A->B datagrams */
    bool cut_a_to_b, cut_b_to_a;
    bool lose_b_requests;   /* B->A requests lost, B->A responses pass */
    int copies;             /* each delivered datagram arrives this many times */
    sent log[LOG_MAX];
    size_t nlog;
} sim;

static sim S; /* one per test process; too big for the stack */

static void sim_init(sim *s, punch_config ca, punch_config cb)
{
    memset(s, 0, sizeof(*s));
    s->now = T0;
    s->a_host = addr("192.168.1.10:5000");
    s->a_srflx = addr("203.0.113.1:6000");
    s->b_host = addr("10.0.0.20:7000");
    s->b_srflx = addr("198.51.100.2:8000");
    s->a_src = s->a_addr = s->a_srflx;
    s->b_src = s->b_addr = s->b_srflx;
    s->copies = 1;
    punch_init(&s->a, &ca);
    punch_init(&s->b, &cb);
    cr_assert(punch_add_remote(&s->a, &s->b_host, PUNCHLINE__CANDIDATE_KIND__HOST));
    cr_assert(punch_add_remote(&s->a, &s->b_srflx, PUNCHLINE__CANDIDATE_KIND__SERVER_REFLEXIVE));
    cr_assert(punch_add_remote(&s->b, &s->a_host, PUNCHLINE__CANDIDATE_KIND__HOST));
    cr_assert(punch_add_remote(&s->b, &s->a_srflx, PUNCHLINE__CANDIDATE_KIND__SERVER_REFLEXIVE));
}

static void sim_start(sim *s)
{
    punch_start(&s->a, s->now);
    punch_start(&s->b, s->now);
}

/* Take one datagram from `who`, log it, and deliver it if the network lets
 * it through.  Returns false when `who` has nothing to send. */
static bool pump_one(sim *s, char who)
{
    punch *src = who == 'A' ? &s->a : &s->b, *dst = who == 'A' ? &s->b : &s->a;
    uint8_t buf[WIRE_UDP_MAX];
    netaddr to;
    size_t n = punch_poll_transmit(src, s->now, &to, buf, sizeof(buf));
    if (!n)
        return false;

    Punchline__Envelope *e = NULL;
    cr_assert_eq(wire_decode_udp(buf, n, &e, NULL), WIRE_OK, "punch sent an undecodable datagram");
    cr_assert_eq(e->body_case, PUNCHLINE__ENVELOPE__BODY_PROBE);
    const Punchline__Probe *pr = e->probe;
    cr_assert_eq(pr->session_id, SESSION);
    cr_assert_eq(pr->role, who == 'A' ? PUNCHLINE__ROLE__CONTROLLING : PUNCHLINE__ROLE__CONTROLLED);

    bool reach = netaddr_equal(&to, who == 'A' ? &s->b_addr : &s->a_addr);
    bool pass = reach;
    if (who == 'A' && (s->cut_a_to_b || (reach && s->drop_a_to_b > 0)))
        pass = false;
    if (who == 'A' && reach && s->drop_a_to_b > 0)
        s->drop_a_to_b--;
    if (who == 'B' && (s->cut_b_to_a || (s->lose_b_requests && !pr->response)))
        pass = false;

    cr_assert_lt(s->nlog, LOG_MAX, "log full: runaway transmissions?");
    sent *l = &s->log[s->nlog++];
    l->t = s->now;
    l->from = who;
    l->to = to;
    l->response = pr->response;
    l->nominate = pr->nominate;
    l->tid = pr->tid;
    l->delivered = pass;

    for (int i = 0; pass && i < s->copies; i++)
        punch_input(dst, pr, who == 'A' ? &s->a_src : &s->b_src, s->now);
    wire_free(e);
    return true;
}

static void sim_drain(sim *s)
{
    for (int guard = 0;; guard++) {
        cr_assert_lt(guard, 10000, "punch_poll_transmit never runs dry");
        bool a = pump_one(s, 'A');
        bool b = pump_one(s, 'B');
        if (!a && !b)
            return;
    }
}

/* After everything due has been sent, neither side may ask to be woken
 * now or in the past: that would be a busy loop in the libev shell. */
static void assert_deadlines_ahead(const sim *s)
{
    uint64_t da = punch_next_deadline(&s->a), db = punch_next_deadline(&s->b);
    cr_assert(da > s->now, "A deadline %llu is not after now %llu (state %d)", (unsigned long long)da,
              (unsigned long long)s->now, punch_state(&s->a));
    cr_assert(db > s->now, "B deadline %llu is not after now %llu (state %d)", (unsigned long long)db,
              (unsigned long long)s->now, punch_state(&s->b));
}

static bool both_connected(const sim *s)
{
    return punch_state(&s->a) == PUNCH_CONNECTED && punch_state(&s->b) == PUNCH_CONNECTED;
}

/* Advance simulated time event by event until `end` or until done(s). */
static void sim_run(sim *s, uint64_t end, bool (*done)(const sim *))
{
    sim_drain(s);
    for (int guard = 0; !(done && done(s)) && s->now < end; guard++) {
        cr_assert_lt(guard, 100000, "too many wake-ups");
        assert_deadlines_ahead(s);
        uint64_t da = punch_next_deadline(&s->a), db = punch_next_deadline(&s->b);
        uint64_t d = da < db ? da : db;
        s->now = d < end ? d : end;
        punch_tick(&s->a, s->now);
        punch_tick(&s->b, s->now);
        sim_drain(s);
    }
    assert_deadlines_ahead(s);
}

/* Times of the requests (not responses) `who` sent to `to` in [from, until). */
static size_t request_times(const sim *s, char who, const netaddr *to, uint64_t from, uint64_t until,
                            uint64_t *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < s->nlog; i++) {
        const sent *l = &s->log[i];
        if (l->from == who && !l->response && netaddr_equal(&l->to, to) && l->t >= from &&
            l->t < until && n < cap)
            out[n++] = l->t;
    }
    return n;
}

static uint64_t first_nominate_time(const sim *s)
{
    for (size_t i = 0; i < s->nlog; i++)
        if (s->log[i].from == 'A' && s->log[i].nominate && !s->log[i].response)
            return s->log[i].t;
    return UINT64_MAX;
}

/* ---- helpers: hand-made probes ------------------------------------------ */

typedef struct probe_buf {
    Punchline__Probe pr;
    Punchline__Endpoint ep;
    uint8_t ip[16];
    uint8_t mac[WIRE_MAC_LEN];
} probe_buf;

static void make_probe(probe_buf *b, const uint8_t secret[WIRE_SECRET_LEN], uint64_t session,
                       uint64_t tid, bool response, bool nominate, int role, const netaddr *mapped)
{
    Punchline__Probe init = PUNCHLINE__PROBE__INIT;
    b->pr = init;
    b->pr.session_id = session;
    b->pr.tid = tid;
    b->pr.response = response;
    b->pr.nominate = nominate;
    b->pr.role = (Punchline__Role)role;
    if (mapped) {
        netaddr_to_endpoint(mapped, &b->ep, b->ip);
        b->pr.mapped = &b->ep;
    }
    probe_mac(secret, session, tid, response, nominate, role, b->pr.mapped, b->mac);
    b->pr.mac.data = b->mac;
    b->pr.mac.len = WIRE_MAC_LEN;
}

/* Everything punch_input() could change, to prove a rejected probe changed
 * nothing but the rejection counter. */
typedef struct snapshot {
    int state, nominated, selected;
    size_t npairs, nresp;
    bool got_request[PUNCH_MAX_PAIRS], got_response[PUNCH_MAX_PAIRS];
    uint64_t next_send[PUNCH_MAX_PAIRS];
    uint64_t last_rx;
} snapshot;

static snapshot snap(const punch *p)
{
    snapshot s;
    memset(&s, 0, sizeof(s));
    s.state = p->state;
    s.nominated = p->nominated;
    s.selected = p->selected;
    s.npairs = p->npairs;
    s.nresp = p->nresp;
    s.last_rx = p->last_rx_ms;
    for (size_t i = 0; i < p->npairs; i++) {
        s.got_request[i] = p->pairs[i].got_request;
        s.got_response[i] = p->pairs[i].got_response;
        s.next_send[i] = p->pairs[i].next_send_ms;
    }
    return s;
}

static void assert_unchanged(const snapshot *x, const snapshot *y, const char *what)
{
    cr_assert_eq(memcmp(x, y, sizeof(*x)), 0, "%s changed the punch state", what);
}

/* ---- connecting --------------------------------------------------------- */

/* Both sides connect and agree on the pair: each one's selected remote is
 * the other's server-reflexive address, and each learned its own mapping
 * from the responses' `mapped` field. */
Test(punch, both_connect_on_the_same_pair)
{
    sim *s = &S;
    sim_init(s, config(true), config(false));
    cr_assert_eq(punch_state(&s->a), PUNCH_IDLE);
    cr_assert_null(punch_remote(&s->a));
    cr_assert_eq(punch_next_deadline(&s->a), UINT64_MAX, "idle: nothing to do");
    sim_start(s);

    sim_run(s, T0 + 3000, both_connected);
    cr_assert(both_connected(s), "A state %d, B state %d", punch_state(&s->a), punch_state(&s->b));
    cr_assert(netaddr_equal(punch_remote(&s->a), &s->b_srflx), "A selected %s",
              fmt(punch_remote(&s->a)));
    cr_assert(netaddr_equal(punch_remote(&s->b), &s->a_srflx), "B selected %s",
              fmt(punch_remote(&s->b)));
    cr_assert_eq(s->a.pairs[s->a.selected].kind, PUNCHLINE__CANDIDATE_KIND__SERVER_REFLEXIVE);
    cr_assert(netaddr_equal(&s->a.mapped, &s->a_srflx), "A learned %s", fmt(&s->a.mapped));
    cr_assert(netaddr_equal(&s->b.mapped, &s->b_srflx), "B learned %s", fmt(&s->b.mapped));
    cr_assert_eq(s->a.rejected, 0);
    cr_assert_eq(s->b.rejected, 0);
    cr_assert_eq(s->a.npairs, 2, "no peer-reflexive pair when the srflx address is right");
    cr_assert_lt(s->now, T0 + 3000);
}

/* A NAT that drops A's packets until B's side of the hole is open: the
 * first datagrams A->B are lost.  A retransmits its checks at rto_initial,
 * doubling up to rto_max (50, 100, 200, 400, 500, 500 ms), and the session
 * still connects on the srflx pair once the hole is open. */
Test(punch, connects_through_initial_loss_with_paced_retransmissions)
{
    sim *s = &S;
    sim_init(s, config(true), config(false));
    /* Two A->B datagrams per round (A's check and A's answer to B's
     * check): 12 lost = the rounds at +0, 50, 150, 350, 750, 1250 ms. */
    s->drop_a_to_b = 12;
    sim_start(s);
    sim_run(s, T0 + 3000, both_connected);

    cr_assert(both_connected(s), "A state %d, B state %d", punch_state(&s->a), punch_state(&s->b));
    cr_assert(netaddr_equal(punch_remote(&s->a), &s->b_srflx));
    cr_assert(netaddr_equal(punch_remote(&s->b), &s->a_srflx));

    uint64_t nom = first_nominate_time(s);
    cr_assert_neq(nom, UINT64_MAX, "A nominated");
    const uint64_t want[] = {0, 50, 150, 350, 750, 1250, 1750};
    const size_t nwant = sizeof(want) / sizeof(want[0]);
    uint64_t t[64];
    /* ordinary checks on the srflx pair, up to the nomination; and on the
     * unreachable host pair, which is paced the same way */
    const netaddr *targets[] = {&s->b_srflx, &s->b_host};
    for (size_t k = 0; k < 2; k++) {
        size_t n = 0;
        for (size_t i = 0; i < s->nlog && n < 64; i++)
            if (s->log[i].from == 'A' && !s->log[i].response && !s->log[i].nominate &&
                s->log[i].t <= nom && netaddr_equal(&s->log[i].to, targets[k]))
                t[n++] = s->log[i].t;
        /* paced checks due before the nomination (triggered checks, below,
         * let the session connect before the whole schedule has run) */
        size_t due = 0;
        while (due < nwant && T0 + want[due] <= nom)
            due++;
        cr_assert_geq(due, 4, "nominated at +%llu: the losses should have cost several rounds",
                      (unsigned long long)(nom - T0));
        if (k == 1) {
            /* nothing comes from the host pair: pure pacing */
            cr_assert_eq(n, due, "checks to %s before the nomination: %zu", fmt(targets[k]), n);
            for (size_t i = 0; i < n; i++)
                cr_assert_eq(t[i] - T0, want[i], "check %zu to %s at +%llu, want +%llu", i,
                             fmt(targets[k]), (unsigned long long)(t[i] - T0),
                             (unsigned long long)want[i]);
            continue;
        }
        /* the srflx pair: the paced checks, plus triggered checks when B's
         * requests arrived (RFC 8445 s7.3.1.4) */
        for (size_t w = 0; w < due; w++) {
            bool found = false;
            for (size_t i = 0; i < n; i++)
                found |= t[i] - T0 == want[w];
            cr_assert(found, "no paced check to %s at +%llu", fmt(targets[k]),
                      (unsigned long long)want[w]);
        }
        cr_assert_leq(n, 2 * due, "checks to %s: %zu, more than paced + triggered", fmt(targets[k]), n);
    }
    /* every retransmission is a new transaction */
    for (size_t i = 0; i < s->nlog; i++)
        for (size_t j = i + 1; j < s->nlog; j++)
            if (s->log[i].from == 'A' && s->log[j].from == 'A' && !s->log[i].response &&
                !s->log[j].response)
                cr_assert_neq(s->log[i].tid, s->log[j].tid, "tid reused");
    /* the nomination follows the first check that got through at once */
    uint64_t open_t = UINT64_MAX;
    for (size_t i = 0; i < s->nlog && open_t == UINT64_MAX; i++)
        if (s->log[i].from == 'A' && !s->log[i].response && s->log[i].delivered &&
            netaddr_equal(&s->log[i].to, &s->b_srflx))
            open_t = s->log[i].t;
    cr_assert_eq(nom, open_t, "nominated at +%llu, the hole opened at +%llu",
                 (unsigned long long)(nom - T0), (unsigned long long)(open_t - T0));
    /* triggered checks used up the losses faster than pacing alone (+1750) */
    cr_assert_lt(nom, T0 + 1750, "nominated at +%llu", (unsigned long long)(nom - T0));
}

/* Every datagram delivered twice (a duplicating network): still exactly one
 * selected pair on each side, nothing rejected (duplicates are authentic),
 * and the session stays up. */
Test(punch, duplicated_probes_still_one_connection)
{
    sim *s = &S;
    sim_init(s, config(true), config(false));
    s->copies = 2;
    sim_start(s);
    sim_run(s, T0 + 3000, both_connected);
    cr_assert(both_connected(s));
    int sel_a = s->a.selected, sel_b = s->b.selected;
    cr_assert(netaddr_equal(punch_remote(&s->a), &s->b_srflx));
    cr_assert(netaddr_equal(punch_remote(&s->b), &s->a_srflx));

    sim_run(s, s->now + 5500, NULL);
    cr_assert(both_connected(s));
    cr_assert_eq(s->a.selected, sel_a);
    cr_assert_eq(s->b.selected, sel_b);
    cr_assert_eq(s->a.npairs, 2);
    cr_assert_eq(s->b.npairs, 2);
    cr_assert_eq(s->a.rejected, 0);
    cr_assert_eq(s->b.rejected, 0);
}

/* Peer-reflexive (RFC 8445 s7.3.1.3): A sits behind a symmetric NAT, so its
 * datagrams to B come from 203.0.113.1:6123, an address B was never told.
 * B learns it from A's authenticated check, and that pair carries the
 * session (B's candidates for A are both unreachable). */
Test(punch, peer_reflexive_address_is_learned_and_used)
{
    sim *s = &S;
    sim_init(s, config(true), config(false));
    netaddr a_real = addr("203.0.113.1:6123");
    s->a_src = s->a_addr = a_real;
    sim_start(s);
    sim_run(s, T0 + 3000, both_connected);

    cr_assert(both_connected(s), "A state %d, B state %d", punch_state(&s->a), punch_state(&s->b));
    cr_assert_eq(s->b.npairs, 3, "B added one pair");
    const punch_pair *learned = &s->b.pairs[2];
    cr_assert(netaddr_equal(&learned->remote, &a_real), "learned %s", fmt(&learned->remote));
    cr_assert_eq(learned->kind, PUNCHLINE__CANDIDATE_KIND__PEER_REFLEXIVE);
    cr_assert(netaddr_equal(punch_remote(&s->b), &a_real), "B selected %s", fmt(punch_remote(&s->b)));
    cr_assert_eq(s->b.pairs[s->b.selected].kind, PUNCHLINE__CANDIDATE_KIND__PEER_REFLEXIVE);
    cr_assert(netaddr_equal(punch_remote(&s->a), &s->b_srflx));
    cr_assert(netaddr_equal(&s->a.mapped, &a_real), "A learns its real mapping");
}

/* ---- authentication ----------------------------------------------------- */

enum forgery { F_GENUINE, F_WRONG_SECRET, F_WRONG_SESSION, F_OWN_ROLE, F_SHORT_MAC, F_MAC_FLAGS,
               F_MAC_TID, F_NOT_STARTED };

struct forgery_case {
    int kind;
    bool accepted;
    char what[48];
};

ParameterizedTestParameters(auth, forged_probes_ignored)
{
    static struct forgery_case cases[] = {
        {F_GENUINE, true, "genuine request (control)"},
        {F_WRONG_SECRET, false, "MAC under another secret"},
        {F_WRONG_SESSION, false, "another session id"},
        {F_OWN_ROLE, false, "our own role (reflection)"},
        {F_SHORT_MAC, false, "15-byte MAC"},
        {F_MAC_FLAGS, false, "nominate flag not covered by MAC"},
        {F_MAC_TID, false, "tid not covered by MAC"},
        {F_NOT_STARTED, false, "probe before punch_start"},
    };
    return cr_make_param_array(struct forgery_case, cases, sizeof(cases) / sizeof(cases[0]));
}

/* A request from an address B has never seen, so a forgery that got
 * through would also plant a peer-reflexive pair.  Rejected probes return
 * false, bump p->rejected, and change nothing else. */
ParameterizedTest(struct forgery_case *c, auth, forged_probes_ignored)
{
    punch_config cfg = config(false);
    punch b;
    punch_init(&b, &cfg);
    netaddr a_srflx = addr("203.0.113.1:6000"), stranger = addr("198.18.0.9:4444");
    cr_assert(punch_add_remote(&b, &a_srflx, PUNCHLINE__CANDIDATE_KIND__SERVER_REFLEXIVE));
    if (c->kind != F_NOT_STARTED)
        punch_start(&b, T0);

    uint8_t wrong[WIRE_SECRET_LEN];
    memset(wrong, 0x43, sizeof(wrong));
    probe_buf pb;
    uint64_t session = SESSION, tid = 0x1234567800000101ull;
    int role = PUNCHLINE__ROLE__CONTROLLING;
    const uint8_t *key = cfg.secret;
    if (c->kind == F_WRONG_SECRET)
        key = wrong;
    if (c->kind == F_WRONG_SESSION)
        session ^= 1;
    if (c->kind == F_OWN_ROLE)
        role = PUNCHLINE__ROLE__CONTROLLED;
    make_probe(&pb, key, session, tid, false, true, role, NULL);
    if (c->kind == F_SHORT_MAC)
        pb.pr.mac.len = 15;
    if (c->kind == F_MAC_FLAGS)
        pb.pr.nominate = false; /* MAC was computed with nominate = true */
    if (c->kind == F_MAC_TID)
        pb.pr.tid ^= 0x100;

    snapshot before = snap(&b);
    size_t rejected = b.rejected;
    bool used = punch_input(&b, &pb.pr, &stranger, T0 + 10);
    cr_assert_eq(used, c->accepted, "%s", c->what);
    if (c->accepted) {
        cr_assert_eq(b.npairs, 2, "a genuine check from a new address is peer-reflexive");
        cr_assert_eq(b.nresp, 1, "and is answered");
        cr_assert_eq(b.rejected, rejected);
    } else {
        cr_assert_eq(b.rejected, rejected + 1, "%s: rejected counter", c->what);
        snapshot after = snap(&b);
        assert_unchanged(&before, &after, c->what);
    }
}

/* A response must answer a request we sent on that very pair (RFC 8445
 * s7.2.5.2.1, symmetric addresses): unknown tids, tids of another pair and
 * responses from elsewhere are ignored, even with a valid MAC. */
Test(auth, response_with_unknown_tid_ignored)
{
    sim *s = &S;
    sim_init(s, config(true), config(false));
    s->cut_a_to_b = s->cut_b_to_a = true;
    sim_start(s);
    sim_drain(s); /* A's first checks go out (and are lost) */

    uint64_t tid_srflx = 0, tid_host = 0;
    for (size_t i = 0; i < s->nlog; i++) {
        if (s->log[i].from != 'A')
            continue;
        if (netaddr_equal(&s->log[i].to, &s->b_srflx))
            tid_srflx = s->log[i].tid;
        if (netaddr_equal(&s->log[i].to, &s->b_host))
            tid_host = s->log[i].tid;
    }
    cr_assert(tid_srflx && tid_host);
    punch *a = &s->a;
    const uint8_t *key = a->cfg.secret;
    int peer = PUNCHLINE__ROLE__CONTROLLED;
    uint64_t seed = a->cfg.tid_seed;
    size_t srflx_idx = 1;
    struct {
        uint64_t tid;
        const netaddr *from;
        const char *what;
    } bad[] = {
        {seed ^ ((a->tid_counter + 1) << 8 | srflx_idx), &s->b_srflx, "next tid, not sent yet"},
        {seed ^ ((a->tid_counter + 100) << 8 | srflx_idx), &s->b_srflx, "far future tid"},
        {seed ^ (0ull << 8 | srflx_idx), &s->b_srflx, "counter 0 is never used"},
        {0x123, &s->b_srflx, "random tid"},
        {tid_host, &s->b_srflx, "tid of the host pair answered from the srflx address"},
        {tid_srflx, &s->b_host, "srflx tid answered from the host address"},
        {tid_srflx, &s->a_host, "from an address that is not a pair"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        probe_buf pb;
        make_probe(&pb, key, SESSION, bad[i].tid, true, false, peer, &s->a_srflx);
        snapshot before = snap(a);
        size_t rejected = a->rejected;
        cr_assert_not(punch_input(a, &pb.pr, bad[i].from, s->now), "%s", bad[i].what);
        cr_assert_eq(a->rejected, rejected + 1, "%s", bad[i].what);
        snapshot after = snap(a);
        assert_unchanged(&before, &after, bad[i].what);
    }
    /* Control: the real tid from the right address is used and starts the
     * nomination (aggressive nomination, RFC 5245 s8.1.1.2). */
    probe_buf pb;
    make_probe(&pb, key, SESSION, tid_srflx, true, false, peer, &s->a_srflx);
    cr_assert(punch_input(a, &pb.pr, &s->b_srflx, s->now));
    cr_assert(a->pairs[srflx_idx].got_response);
    cr_assert_eq(a->nominated, (int)srflx_idx);
}

/* The MAC covers every field of the probe (docs/PROTOCOL.md "Probe MAC"). */
Test(auth, mac_covers_every_field)
{
    uint8_t key[WIRE_SECRET_LEN], key2[WIRE_SECRET_LEN];
    memset(key, 1, sizeof(key));
    memset(key2, 1, sizeof(key2));
    key2[31] = 2;
    netaddr m = addr("203.0.113.1:6000"), m_port = addr("203.0.113.1:6001"),
            m_ip = addr("203.0.113.2:6000"), m6 = addr("[2001:db8::1]:6000");
    Punchline__Endpoint ep, ep_port, ep_ip, ep6;
    uint8_t b1[16], b2[16], b3[16], b4[16];
    netaddr_to_endpoint(&m, &ep, b1);
    netaddr_to_endpoint(&m_port, &ep_port, b2);
    netaddr_to_endpoint(&m_ip, &ep_ip, b3);
    netaddr_to_endpoint(&m6, &ep6, b4);

    uint8_t base[WIRE_MAC_LEN], again[WIRE_MAC_LEN], v[9][WIRE_MAC_LEN];
    probe_mac(key, 7, 9, true, false, 2, &ep, base);
    probe_mac(key, 7, 9, true, false, 2, &ep, again);
    cr_assert_eq(memcmp(base, again, WIRE_MAC_LEN), 0, "deterministic");
    probe_mac(key2, 7, 9, true, false, 2, &ep, v[0]);
    probe_mac(key, 8, 9, true, false, 2, &ep, v[1]);
    probe_mac(key, 7, 10, true, false, 2, &ep, v[2]);
    probe_mac(key, 7, 9, false, false, 2, &ep, v[3]);
    probe_mac(key, 7, 9, true, true, 2, &ep, v[4]);
    probe_mac(key, 7, 9, true, false, 1, &ep, v[5]);
    probe_mac(key, 7, 9, true, false, 2, &ep_port, v[6]);
    probe_mac(key, 7, 9, true, false, 2, &ep_ip, v[7]);
    probe_mac(key, 7, 9, true, false, 2, NULL, v[8]);
    for (int i = 0; i < 9; i++)
        cr_assert_neq(memcmp(base, v[i], WIRE_MAC_LEN), 0, "variant %d has the same MAC", i);
    uint8_t w6[WIRE_MAC_LEN];
    probe_mac(key, 7, 9, true, false, 2, &ep6, w6);
    cr_assert_neq(memcmp(base, w6, WIRE_MAC_LEN), 0);
}

/* ---- giving up ---------------------------------------------------------- */

/* Nobody answers: PUNCH_FAILED exactly timeout_ms after punch_start, not a
 * millisecond before, and the deadline points at that moment so the shell
 * wakes up on time.  Afterwards the core is silent. */
Test(punch, no_answer_fails_exactly_at_timeout)
{
    sim *s = &S;
    sim_init(s, config(true), config(false));
    s->cut_a_to_b = s->cut_b_to_a = true;
    sim_start(s);

    sim_run(s, T0 + 2999, NULL);
    cr_assert_eq(punch_state(&s->a), PUNCH_CHECKING, "not failed before timeout_ms");
    cr_assert_eq(punch_state(&s->b), PUNCH_CHECKING);
    cr_assert_eq(punch_next_deadline(&s->a), T0 + 3000, "wake-up exactly at the timeout");

    sim_run(s, T0 + 3000, NULL);
    cr_assert_eq(punch_state(&s->a), PUNCH_FAILED);
    cr_assert_eq(punch_state(&s->b), PUNCH_FAILED);
    cr_assert_null(punch_remote(&s->a));
    cr_assert_eq(punch_next_deadline(&s->a), UINT64_MAX);

    for (size_t i = 0; i < s->nlog; i++)
        cr_assert_lt(s->log[i].t, T0 + 3000, "nothing sent once failed");
    netaddr to;
    uint8_t buf[WIRE_UDP_MAX];
    cr_assert_eq(punch_poll_transmit(&s->a, s->now + 10000, &to, buf, sizeof(buf)), 0);

    /* a late genuine check does not revive a failed session */
    probe_buf pb;
    make_probe(&pb, s->b.cfg.secret, SESSION, 77, false, true, PUNCHLINE__ROLE__CONTROLLING, NULL);
    cr_assert_not(punch_input(&s->b, &pb.pr, &s->a_srflx, s->now));
    cr_assert_eq(punch_state(&s->b), PUNCH_FAILED);
    cr_assert_eq(s->b.nresp, 0);
}

/* ---- after connecting: keepalives and dead paths ------------------------- */

/* Once connected each side checks the selected pair every keepalive_ms
 * (RFC 7675 consent), and only that pair. */
Test(punch, keepalives_every_keepalive_ms)
{
    sim *s = &S;
    sim_init(s, config(true), config(false));
    sim_start(s);
    sim_run(s, T0 + 3000, both_connected);
    cr_assert(both_connected(s));
    uint64_t tc = s->now;
    cr_assert_eq(s->a.connected_ms, tc);

    sim_run(s, tc + 5500, NULL);
    cr_assert(both_connected(s));
    uint64_t t[16];
    size_t n = request_times(s, 'A', &s->b_srflx, tc + 1, tc + 5500, t, 16);
    cr_assert_eq(n, 5, "A sent %zu keepalives in 5.5 s", n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(t[i], tc + 1000 * (i + 1), "keepalive %zu at +%llu", i,
                     (unsigned long long)(t[i] - tc));
    n = request_times(s, 'B', &s->a_srflx, tc + 1, tc + 5500, t, 16);
    cr_assert_eq(n, 5, "B keeps its side of the NAT open too");
    cr_assert_eq(request_times(s, 'A', &s->b_host, tc + 1, UINT64_MAX, t, 16), 0,
                 "no more checks on the other pairs");
}

/* The peer goes away: with keepalive_ms = 1000 A keeps checking every second
 * and declares the path dead exactly path_timeout_ms after the last
 * authenticated packet from it, not before. */
Test(punch, silent_peer_is_dead_after_path_timeout)
{
    sim *s = &S;
    sim_init(s, config(true), config(false));
    sim_start(s);
    sim_run(s, T0 + 3000, both_connected);
    cr_assert(both_connected(s));
    sim_run(s, s->now + 2500, NULL);
    cr_assert(both_connected(s));

    s->cut_a_to_b = s->cut_b_to_a = true;
    uint64_t cut = s->now, last = s->a.last_rx_ms;
    cr_assert_lt(last, cut);
    cr_assert_geq(last + 1000, cut, "something was heard within a keepalive interval");

    sim_run(s, last + 3999, NULL);
    cr_assert_eq(punch_state(&s->a), PUNCH_CONNECTED, "not dead before path_timeout_ms");
    cr_assert_leq(punch_next_deadline(&s->a), last + 4000);
    sim_run(s, last + 4000, NULL);
    cr_assert_eq(punch_state(&s->a), PUNCH_DEAD);
    cr_assert_null(punch_remote(&s->a));
    cr_assert_eq(punch_next_deadline(&s->a), UINT64_MAX);

    uint64_t t[16];
    size_t n = request_times(s, 'A', &s->b_srflx, cut, UINT64_MAX, t, 16);
    cr_assert_eq(n, 3, "checks at +1, +2, +3 s of silence, then dead (got %zu)", n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(t[i], last + 1000 * (i + 1));
}

/* With a long keepalive interval, a missed keepalive switches to checks
 * every second (consent freshness, RFC 7675 s5.1) so a dead path is
 * confirmed by several checks before path_timeout_ms. */
Test(punch, missed_keepalive_switches_to_fast_consent_checks)
{
    sim *s = &S;
    punch_config ca = config(true), cb = config(false);
    ca.keepalive_ms = cb.keepalive_ms = 3000;
    ca.path_timeout_ms = cb.path_timeout_ms = 8000;
    sim_init(s, ca, cb);
    sim_start(s);
    sim_run(s, T0 + 3000, both_connected);
    cr_assert(both_connected(s));
    sim_run(s, s->now + 3500, NULL);
    cr_assert(both_connected(s));

    s->cut_a_to_b = s->cut_b_to_a = true;
    uint64_t cut = s->now, last = s->a.last_rx_ms;
    sim_run(s, last + 7999, NULL);
    cr_assert_eq(punch_state(&s->a), PUNCH_CONNECTED, "not dead before path_timeout_ms");
    sim_run(s, last + 8000, NULL);
    cr_assert_eq(punch_state(&s->a), PUNCH_DEAD);

    uint64_t t[16];
    size_t n = request_times(s, 'A', &s->b_srflx, cut, UINT64_MAX, t, 16);
    cr_assert_geq(n, 4, "the missed keepalive and at least 3 fast checks (got %zu)", n);
    cr_assert_eq(t[0], last + 3000, "the regular keepalive, unanswered");
    cr_assert_lt(t[1] - t[0], 3000, "the next check comes sooner than the keepalive interval");
    for (size_t i = 2; i < n; i++)
        cr_assert_eq(t[i] - t[i - 1], 1000, "fast check %zu after %llu ms", i,
                     (unsigned long long)(t[i] - t[i - 1]));
    cr_assert_lt(t[n - 1], last + 8000);
}

/* Consent is refreshed only by the answers to our own checks (RFC 7675
 * s5.1), never by the peer's checks.  Here B's checks are lost while A's
 * get through and are answered: A keeps consent (its keepalives are
 * answered, one per interval), B loses it after path_timeout_ms although it
 * keeps hearing A's checks -- for B the path works in one direction only. */
Test(punch, consent_comes_only_from_answers_to_our_checks)
{
    sim *s = &S;
    sim_init(s, config(true), config(false));
    sim_start(s);
    sim_run(s, T0 + 3000, both_connected);
    cr_assert(both_connected(s));
    s->lose_b_requests = true;
    uint64_t from = s->now, b_last = s->b.last_rx_ms;
    sim_run(s, b_last + 3999, NULL);
    cr_assert_eq(punch_state(&s->b), PUNCH_CONNECTED, "B not dead before path_timeout_ms");
    cr_assert_eq(punch_state(&s->a), PUNCH_CONNECTED, "A heard only answers, and that is consent");
    cr_assert_geq(s->a.last_rx_ms + 1000, s->now, "A's last answer within a keepalive interval");
    cr_assert_eq(s->b.last_rx_ms, b_last, "A's checks did not refresh B's consent");
    uint64_t t[32];
    cr_assert_geq(request_times(s, 'A', &s->b_srflx, from + 1, UINT64_MAX, t, 32), 3,
                  "A kept sending keepalives, one per second");
    sim_run(s, b_last + 4000, NULL);
    cr_assert_eq(punch_state(&s->b), PUNCH_DEAD, "B's own checks were never answered");
}

/* An answer after a missed keepalive restores the normal interval. */
Test(punch, answer_after_missed_keepalive_restores_interval)
{
    sim *s = &S;
    punch_config ca = config(true), cb = config(false);
    ca.keepalive_ms = cb.keepalive_ms = 3000;
    ca.path_timeout_ms = cb.path_timeout_ms = 8000;
    sim_init(s, ca, cb);
    sim_start(s);
    sim_run(s, T0 + 3000, both_connected);
    uint64_t last = s->a.last_rx_ms;
    s->cut_a_to_b = s->cut_b_to_a = true;
    sim_run(s, last + 4500, NULL);
    cr_assert_eq(s->a.pairs[s->a.selected].interval_ms, 1000, "fast checks");
    s->cut_a_to_b = s->cut_b_to_a = false;
    sim_run(s, last + 6500, NULL);
    cr_assert(both_connected(s));
    cr_assert_eq(s->a.pairs[s->a.selected].interval_ms, 3000, "back to keepalive_ms");
    sim_run(s, last + 20000, NULL);
    cr_assert(both_connected(s), "a healthy path stays up");
}

/* ---- data confirms the nominated pair (controlled side) ------------------ */

/* B's own checks never reach A, so B never sees its check answered; A's
 * nomination arrives, and then data from the nominated address is what
 * confirms the pair on B's side (punch.h: punch_data_seen). */
Test(punch, data_seen_confirms_nominated_pair_on_controlled_side)
{
    sim *s = &S;
    sim_init(s, config(true), config(false));
    s->lose_b_requests = true;
    sim_start(s);

    /* before any nomination data confirms nothing */
    cr_assert_not(punch_data_seen(&s->b, &s->a_srflx, s->now));
    cr_assert_eq(punch_state(&s->b), PUNCH_CHECKING);

    sim_run(s, T0 + 500, NULL);
    cr_assert_eq(punch_state(&s->a), PUNCH_CONNECTED, "A's nomination was answered");
    cr_assert_eq(punch_state(&s->b), PUNCH_CHECKING, "B has no answered check of its own");
    cr_assert_geq(s->b.nominated, 0);

    cr_assert_not(punch_data_seen(&s->b, &s->a_host, s->now), "not from the nominated address");
    cr_assert_eq(punch_state(&s->b), PUNCH_CHECKING);
    cr_assert(punch_data_seen(&s->b, &s->a_srflx, s->now));
    cr_assert_eq(punch_state(&s->b), PUNCH_CONNECTED);
    cr_assert(netaddr_equal(punch_remote(&s->b), &s->a_srflx));
    cr_assert_eq(s->b.connected_ms, s->now);

    /* on the selected pair data keeps saying yes; elsewhere no */
    cr_assert(punch_data_seen(&s->a, &s->b_srflx, s->now));
    cr_assert_not(punch_data_seen(&s->a, &s->b_host, s->now));
    sim_run(s, s->now + 100, NULL);
    assert_deadlines_ahead(s);
}

/* The controlling side only trusts its own answered nomination: data from
 * a candidate does not connect it. */
Test(punch, data_does_not_connect_controlling_side)
{
    punch_config cfg = config(true);
    punch a;
    punch_init(&a, &cfg);
    netaddr b = addr("198.51.100.2:8000");
    cr_assert(punch_add_remote(&a, &b, PUNCHLINE__CANDIDATE_KIND__SERVER_REFLEXIVE));
    punch_start(&a, T0);
    cr_assert_not(punch_data_seen(&a, &b, T0 + 1));
    cr_assert_eq(punch_state(&a), PUNCH_CHECKING);
}

/* ---- candidates --------------------------------------------------------- */

/* punch_add_remote(): duplicates and unusable addresses are ignored, the
 * table is bounded (RFC 8445 s19.5.1), and a pair added while checking is
 * probed at once. */
Test(punch, add_remote_filters_and_bounds)
{
    punch_config cfg = config(true);
    punch p;
    punch_init(&p, &cfg);
    netaddr x = addr("198.51.100.2:8000");
    cr_assert(punch_add_remote(&p, &x, PUNCHLINE__CANDIDATE_KIND__HOST));
    cr_assert_not(punch_add_remote(&p, &x, PUNCHLINE__CANDIDATE_KIND__HOST), "duplicate");
    const char *bad[] = {"0.0.0.0:80", "255.255.255.255:80", "224.0.0.1:80", "198.51.100.2:0"};
    for (size_t i = 0; i < 4; i++) {
        netaddr b;
        cr_assert_eq(netaddr_parse(bad[i], &b, false), 0);
        cr_assert_not(punch_add_remote(&p, &b, PUNCHLINE__CANDIDATE_KIND__HOST), "%s", bad[i]);
    }
    cr_assert_eq(p.npairs, 1);
    cr_assert_eq(p.pairs[0].next_send_ms, UINT64_MAX, "not probed before punch_start");

    punch_start(&p, T0);
    cr_assert_eq(p.pairs[0].next_send_ms, T0);
    for (int i = 1; i < PUNCH_MAX_PAIRS + 5; i++) {
        char buf[32];
        snprintf(buf, sizeof(buf), "10.1.%d.%d:9", i / 200, i % 200 + 1);
        netaddr b;
        cr_assert_eq(netaddr_parse(buf, &b, false), 0);
        cr_assert_eq(punch_add_remote(&p, &b, PUNCHLINE__CANDIDATE_KIND__HOST), i < PUNCH_MAX_PAIRS,
                     "pair %d", i);
    }
    cr_assert_eq(p.npairs, PUNCH_MAX_PAIRS);
    cr_assert_leq(p.pairs[PUNCH_MAX_PAIRS - 1].next_send_ms, T0, "triggered at once");
}

/* The usual port-restricted race: A starts first, its first check dies at
 * B's NAT (here: B has not started yet).  B's check reaches A 10 ms later;
 * A answers and checks back at once (a triggered check) instead of waiting
 * for its 50 ms retransmission, so both connect within that one exchange. */
Test(punch, a_request_triggers_an_immediate_check)
{
    sim *s = &S;
    sim_init(s, config(true), config(false));
    punch_start(&s->a, s->now);
    sim_drain(s); /* A's first checks: B is not running yet (rejected) */
    cr_assert_eq(punch_state(&s->a), PUNCH_CHECKING);
    s->now = T0 + 10;
    punch_start(&s->b, s->now);
    sim_run(s, T0 + 3000, both_connected);
    cr_assert(both_connected(s), "A state %d, B state %d", punch_state(&s->a), punch_state(&s->b));
    cr_assert_eq(s->now, T0 + 10, "connected at +%llu, want +10 (no wait for the 50 ms RTO)",
                 (unsigned long long)(s->now - T0));
    /* and the triggered check went out at +10 to B's srflx address */
    bool triggered = false;
    for (size_t i = 0; i < s->nlog; i++)
        triggered |= s->log[i].from == 'A' && !s->log[i].response && !s->log[i].nominate &&
                     s->log[i].t == T0 + 10 && netaddr_equal(&s->log[i].to, &s->b_srflx);
    cr_assert(triggered, "no check from A at +10");
}

/* ---- after connecting: busy paths, suspicion, migration, stalls ----------- */

/* Both sides connected with these keepalive and path timeouts. */
static void sim_connected(sim *s, uint32_t keepalive_ms, uint32_t path_timeout_ms)
{
    punch_config ca = config(true), cb = config(false);
    ca.keepalive_ms = cb.keepalive_ms = keepalive_ms;
    ca.path_timeout_ms = cb.path_timeout_ms = path_timeout_ms;
    sim_init(s, ca, cb);
    sim_start(s);
    sim_run(s, T0 + 3000, both_connected);
    cr_assert(both_connected(s));
}

/* A busy connection (punch_set_busy) checks consent every
 * PUNCH_BUSY_KEEPALIVE_MS instead of keepalive_ms, and goes back to
 * keepalive_ms when idle again (from the next answer on). */
Test(punch, busy_path_checks_consent_more_often)
{
    sim *s = &S;
    sim_connected(s, 10000, 30000);
    uint64_t t0 = s->now;
    punch_set_busy(&s->b, true, t0);
    sim_run(s, t0 + 9000, NULL);
    uint64_t t[16];
    size_t n = request_times(s, 'B', &s->a_srflx, t0 + 1, t0 + 9000, t, 16);
    cr_assert_eq(n, 4, "busy: a check every %d ms, got %zu in 9 s", PUNCH_BUSY_KEEPALIVE_MS, n);
    for (size_t i = 1; i < n; i++)
        cr_assert_eq(t[i] - t[i - 1], PUNCH_BUSY_KEEPALIVE_MS);
    cr_assert_eq(request_times(s, 'A', &s->b_srflx, t0 + 1, t0 + 9000, t, 16), 0,
                 "the idle side keeps its keepalive_ms");
    punch_set_busy(&s->b, false, s->now);
    uint64_t t1 = s->now;
    sim_run(s, t1 + 25000, NULL);
    n = request_times(s, 'B', &s->a_srflx, t1 + 2500, t1 + 25000, t, 16);
    cr_assert_eq(n, 2, "idle again: one check per keepalive_ms (got %zu)", n);
    cr_assert(both_connected(s));
}

/* punch_suspect (the stream waits for an ack that does not come): checks
 * every PUNCH_SUSPECT_MS until one is answered; the answer ends it. */
Test(punch, suspect_checks_fast_until_answered)
{
    sim *s = &S;
    sim_connected(s, 1000, 4000);
    s->cut_a_to_b = true;
    uint64_t t0 = s->now;
    punch_suspect(&s->a, t0);
    cr_assert_eq(s->a.suspect_since, t0);
    sim_run(s, t0 + 800, NULL);
    uint64_t t[16];
    size_t n = request_times(s, 'A', &s->b_srflx, t0 + 1, t0 + 800, t, 16);
    cr_assert_eq(n, 3, "fast checks while suspect (got %zu)", n);
    cr_assert_eq(t[0], t0 + PUNCH_SUSPECT_MS, "PUNCH_SUSPECT_MS after the last check (the nomination)");
    for (size_t i = 1; i < n; i++)
        cr_assert_eq(t[i] - t[i - 1], PUNCH_SUSPECT_MS, "check %zu at +%llu, +%llu", i,
                     (unsigned long long)(t[i - 1] - t0), (unsigned long long)(t[i] - t0));
    cr_assert_not(punch_stalled(&s->a), "not stalled before PUNCH_STALL_MS");
    s->cut_a_to_b = false;
    sim_run(s, t0 + 1100, NULL);
    cr_assert_eq(s->a.suspect_since, 0, "an answer ends the suspicion");
    cr_assert_eq(s->a.pairs[s->a.selected].interval_ms, s->a.cfg.keepalive_ms);
    cr_assert_eq(s->a.migrations, 0);
}

/* A busy path whose checks go unanswered becomes suspect by itself (the
 * side that only receives has no stream signal), stalls PUNCH_STALL_MS
 * later, and is usable again with the next answer. */
Test(punch, busy_path_without_answers_stalls_then_recovers)
{
    sim *s = &S;
    sim_connected(s, 10000, 30000);
    punch_set_busy(&s->b, true, s->now);
    sim_run(s, s->now + 500, NULL);
    s->cut_a_to_b = s->cut_b_to_a = true;
    uint64_t last = s->b.last_rx_ms;
    uint64_t sus = last + PUNCH_BUSY_KEEPALIVE_MS + 1001;
    sim_run(s, sus - 1, NULL);
    cr_assert_eq(s->b.suspect_since, 0);
    sim_run(s, sus, NULL);
    cr_assert_eq(s->b.suspect_since, sus, "suspect a second after the missed busy check");
    sim_run(s, sus + PUNCH_STALL_MS - 1, NULL);
    cr_assert_not(punch_stalled(&s->b));
    sim_run(s, sus + PUNCH_STALL_MS, NULL);
    cr_assert(punch_stalled(&s->b), "stalled PUNCH_STALL_MS after the suspicion began");
    cr_assert_eq(punch_state(&s->b), PUNCH_CONNECTED, "stalled, not dead");
    cr_assert_eq(s->a.suspect_since, 0, "the idle side never suspected anything");
    s->cut_a_to_b = s->cut_b_to_a = false;
    sim_run(s, s->now + PUNCH_SUSPECT_MS, NULL);
    cr_assert_not(punch_stalled(&s->b), "the next answer ends the stall");
    cr_assert(both_connected(s));
}

/* A's NAT loses its mapping and makes a new one on another port (B's side
 * filters nothing here, like a public host).  A only notices that its
 * stream gets no acks (punch_suspect); its checks now reach B from the new
 * address, B checks that address back, finds the old one silent and moves
 * there after PUNCH_MIGRATE_MS (QUIC-style migration, RFC 9000 s9). */
Test(punch, peer_nat_rebinding_migrates_to_the_new_address)
{
    sim *s = &S;
    sim_connected(s, 1000, 4000);
    sim_run(s, s->now + 300, NULL);
    netaddr moved = addr("203.0.113.1:6001");
    s->a_src = s->a_addr = moved;
    uint64_t t0 = s->now;
    punch_suspect(&s->a, t0);
    sim_drain(s);
    cr_assert_eq(s->b.suspect_since, t0, "a check from a new address makes B suspect");
    cr_assert_eq(s->a.suspect_since, 0, "B answered A's check (sent to where it came from)");
    sim_run(s, t0 + PUNCH_MIGRATE_MS - 1, NULL);
    cr_assert(netaddr_equal(punch_remote(&s->b), &s->a_srflx), "no move before PUNCH_MIGRATE_MS");
    sim_run(s, t0 + PUNCH_MIGRATE_MS, NULL);
    cr_assert(netaddr_equal(punch_remote(&s->b), &moved), "B moved to %s", fmt(punch_remote(&s->b)));
    cr_assert_eq(s->b.migrations, 1);
    cr_assert_eq(s->b.suspect_since, 0);
    cr_assert(punch_data_seen(&s->b, &moved, s->now), "data from the new address counts");
    cr_assert_not(punch_data_seen(&s->b, &s->a_srflx, s->now));
    uint64_t t1 = s->now;
    sim_run(s, t1 + 5000, NULL);
    cr_assert(both_connected(s));
    uint64_t t[16];
    cr_assert_eq(request_times(s, 'B', &s->a_srflx, t1 + 1, UINT64_MAX, t, 16), 0,
                 "nothing more to the old address");
    cr_assert_geq(request_times(s, 'B', &moved, t1 + 1, UINT64_MAX, t, 16), 4,
                  "keepalives to the new one");
    cr_assert_eq(s->b.migrations, 1);
}

/* A late check from another address of the peer (one it tried while
 * punching) while the selected pair still answers: B checks both, the
 * selected pair answers, nothing moves. */
Test(punch, late_check_from_another_address_moves_nothing)
{
    sim *s = &S;
    sim_connected(s, 1000, 4000);
    uint64_t t0 = s->now;
    probe_buf pb;
    make_probe(&pb, s->a.cfg.secret, SESSION, 4242, false, false, PUNCHLINE__ROLE__CONTROLLING, NULL);
    cr_assert(punch_input(&s->b, &pb.pr, &s->a_host, t0));
    cr_assert_eq(s->b.suspect_since, t0);
    sim_run(s, t0 + 3 * PUNCH_MIGRATE_MS, NULL);
    cr_assert(netaddr_equal(punch_remote(&s->b), &s->a_srflx));
    cr_assert_eq(s->b.migrations, 0);
    cr_assert_eq(s->b.suspect_since, 0, "the selected pair answered");
    uint64_t t[16];
    cr_assert_eq(request_times(s, 'B', &s->a_host, t0, UINT64_MAX, t, 16), 1,
                 "one triggered check to the other address, not a stream of them");
}
