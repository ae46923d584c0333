/* peer/tcp_punch.c with fake time: attempt pacing, stream checks,
 * duplicate-stream resolution (exactly one survives on both sides),
 * timeouts, keepalive and death.  Streams are simulated: a "link" joins a
 * stream index on A with one on B and carries Probe envelopes both ways. */
#include <criterion/criterion.h>
#include <string.h>

#include "tcp_punch.h"

#define SID 0x1122334455667788ull

static netaddr addr(const char *s)
{
    netaddr a;
    cr_assert_eq(netaddr_parse(s, &a, false), 0, "%s", s);
    return a;
}

static void init(tcp_punch *t, bool controlling, uint64_t seed)
{
    tcpp_config cfg = {.session_id = SID, .controlling = controlling, .timeout_ms = 3000,
                       .keepalive_ms = 1000, .path_timeout_ms = 4000, .tid_seed = seed};
    memset(cfg.secret, 7, sizeof(cfg.secret));
    tcpp_init(t, &cfg);
}

/* Count CONNECT actions per candidate at `now`, applying none of them. */
static int drain_connects(tcp_punch *t, uint64_t now, int *per_cand)
{
    tcpp_action a;
    int n = 0;
    while (tcpp_poll_action(t, now, &a)) {
        cr_assert_eq(a.kind, TCPP_ACT_CONNECT);
        if (per_cand)
            per_cand[a.cand]++;
        n++;
    }
    return n;
}

/* Move every queued probe of `from` (on stream fs) to `to` (stream ts). */
static int carry(tcp_punch *from, int fs, tcp_punch *to, int ts, uint64_t now)
{
    uint8_t buf[512];
    int stream, moved = 0;
    size_t n;
    while ((n = tcpp_poll_transmit(from, now, &stream, buf, sizeof(buf))) > 0) {
        if (stream != fs)
            continue; /* another stream: the caller carries it */
        Punchline__Envelope *env = NULL;
        cr_assert_eq(wire_decode(buf, n, &env, NULL), WIRE_OK);
        cr_assert_eq(env->body_case, PUNCHLINE__ENVELOPE__BODY_PROBE);
        tcpp_input(to, ts, env->probe, now);
        wire_free(env);
        moved++;
    }
    return moved;
}

/* Exchange probes on one stream pair until quiet. */
static void settle(tcp_punch *a, int as, tcp_punch *b, int bs, uint64_t now)
{
    for (int i = 0; i < 10; i++)
        if (carry(a, as, b, bs, now) + carry(b, bs, a, as, now) == 0)
            return;
}

Test(tcp_punch, attempts_start_at_once_and_are_paced)
{
    tcp_punch t;
    init(&t, true, 1);
    cr_assert_not(tcpp_add_remote(&t, &(netaddr){0}), "no address: refused");
    netaddr a1 = addr("203.0.113.12:40000"), a2 = addr("10.0.2.2:40000");
    cr_assert(tcpp_add_remote(&t, &a1));
    cr_assert(tcpp_add_remote(&t, &a2));
    cr_assert_not(tcpp_add_remote(&t, &a1), "duplicate refused");
    tcpp_start(&t, 0);
    int per[TCPP_MAX_CANDS] = {0};
    cr_assert_eq(drain_connects(&t, 0, per), 2, "every candidate at once");
    /* re-attempts: +50, +100 (150), +200 (350), +200 (550) ... */
    const uint64_t expect[] = {50, 150, 350, 550, 750};
    uint64_t now = 0;
    for (size_t k = 0; k < sizeof(expect) / sizeof(expect[0]); k++) {
        uint64_t d = tcpp_next_deadline(&t);
        cr_assert_eq(d, expect[k], "attempt %zu due at %llu, want %llu", k + 2,
                     (unsigned long long)d, (unsigned long long)expect[k]);
        cr_assert_eq(drain_connects(&t, d - 1, NULL), 0, "nothing before the deadline");
        now = d;
        cr_assert_eq(drain_connects(&t, now, per), 2);
    }
    cr_assert_eq(per[0], 6);
    cr_assert_eq(per[1], 6);
}

Test(tcp_punch, fails_at_timeout_with_a_reason_and_aborts_attempts)
{
    tcp_punch t;
    init(&t, false, 2);
    netaddr a1 = addr("203.0.113.12:40000");
    tcpp_add_remote(&t, &a1);
    tcpp_start(&t, 0);
    uint64_t now = 0;
    while (tcpp_state(&t) == TCPP_CHECKING) {
        drain_connects(&t, now, NULL);
        uint64_t d = tcpp_next_deadline(&t);
        cr_assert_gt(d, now, "deadline in the past: the shell would spin");
        now = d;
        tcpp_tick(&t, now);
    }
    cr_assert_eq(tcpp_state(&t), TCPP_FAILED);
    cr_assert_eq(now, 3000, "failed at timeout_ms exactly, got %llu", (unsigned long long)now);
    cr_assert_not_null(t.fail_reason);
    cr_assert(strstr(t.fail_reason, "no TCP connection"), "%s", t.fail_reason);
    tcpp_action a;
    cr_assert(tcpp_poll_action(&t, now, &a));
    cr_assert_eq(a.kind, TCPP_ACT_ABORT_ATTEMPT, "the open attempt is closed");
    cr_assert_not(tcpp_poll_action(&t, now, &a));
    cr_assert_eq(tcpp_next_deadline(&t), UINT64_MAX);
}

/* Simultaneous open: each side's attempt completes; one stream each. */
Test(tcp_punch, simultaneous_open_selects_the_same_stream)
{
    tcp_punch a, b;
    init(&a, true, 3);
    init(&b, false, 4);
    netaddr ab = addr("203.0.113.12:40000"), ba = addr("203.0.113.11:40001");
    tcpp_add_remote(&a, &ab);
    tcpp_add_remote(&b, &ba);
    tcpp_start(&a, 0);
    tcpp_start(&b, 0);
    drain_connects(&a, 0, NULL);
    drain_connects(&b, 0, NULL);
    int sa = tcpp_on_connected(&a, 0, 60), sb = tcpp_on_connected(&b, 0, 60);
    cr_assert_geq(sa, 0);
    cr_assert_geq(sb, 0);
    settle(&a, sa, &b, sb, 61);
    cr_assert_eq(tcpp_state(&a), TCPP_CONNECTED);
    cr_assert_eq(tcpp_state(&b), TCPP_CONNECTED);
    cr_assert_eq(tcpp_selected(&a), sa);
    cr_assert_eq(tcpp_selected(&b), sb);
    cr_assert_eq(tcpp_next_deadline(&a), 61 + 1000, "next: keepalive");
}

/* Two streams (a connect and an accept, e.g. LAN and public candidates):
 * the controlling side nominates the first answered one, both close the
 * other, and no attempt is left open. */
Test(tcp_punch, duplicate_streams_resolve_to_exactly_one)
{
    tcp_punch a, b;
    init(&a, true, 5);
    init(&b, false, 6);
    netaddr b_pub = addr("203.0.113.12:40000"), b_lan = addr("10.0.2.2:40000");
    netaddr a_pub = addr("203.0.113.11:40001");
    tcpp_add_remote(&a, &b_pub);
    tcpp_add_remote(&a, &b_lan);
    tcpp_add_remote(&b, &a_pub);
    tcpp_start(&a, 0);
    tcpp_start(&b, 0);
    drain_connects(&a, 0, NULL);
    drain_connects(&b, 0, NULL);
    /* stream 1: A's connect to b_lan was accepted by B's listener */
    int a1 = tcpp_on_connected(&a, 1, 20);
    netaddr a_lan = addr("10.0.1.2:40001");
    int b1 = tcpp_on_accepted(&b, &a_lan, 20);
    /* stream 2: simultaneous open on the public mappings */
    int a2 = tcpp_on_connected(&a, 0, 25);
    int b2 = tcpp_on_connected(&b, 0, 25);
    cr_assert(a1 >= 0 && b1 >= 0 && a2 >= 0 && b2 >= 0 && a1 != a2 && b1 != b2);
    /* stream 2's check is answered first */
    carry(&a, a2, &b, b2, 30);
    carry(&b, b2, &a, a2, 30);
    carry(&a, a2, &b, b2, 31); /* the nomination */
    carry(&b, b2, &a, a2, 31);
    /* stream 1's probes arrive late */
    settle(&a, a1, &b, b1, 32);
    cr_assert_eq(tcpp_selected(&a), a2);
    cr_assert_eq(tcpp_selected(&b), b2, "the controlled side keeps the nominated stream");
    tcpp_action act;
    int closes_a = 0, closes_b = 0;
    while (tcpp_poll_action(&a, 32, &act)) {
        cr_assert_eq(act.kind, TCPP_ACT_CLOSE_STREAM, "A: unexpected action %d", act.kind);
        cr_assert_eq(act.stream, a1);
        closes_a++;
    }
    while (tcpp_poll_action(&b, 32, &act)) {
        cr_assert_neq(act.kind, TCPP_ACT_CONNECT, "no new attempts after selection");
        if (act.kind == TCPP_ACT_CLOSE_STREAM) {
            cr_assert_eq(act.stream, b1);
            closes_b++;
        }
    }
    cr_assert_eq(closes_a, 1);
    cr_assert_eq(closes_b, 1);
    /* a late third stream is refused */
    cr_assert_eq(tcpp_on_accepted(&a, &b_pub, 40), -1);
}

/* An accept from a candidate's address stops the attempts to it (the
 * 4-tuple is in use; connecting again could only fail). */
Test(tcp_punch, accept_from_a_candidate_stops_its_attempts)
{
    tcp_punch b;
    init(&b, false, 7);
    netaddr a_pub = addr("203.0.113.11:40001");
    tcpp_add_remote(&b, &a_pub);
    tcpp_start(&b, 0);
    drain_connects(&b, 0, NULL);
    cr_assert_geq(tcpp_on_accepted(&b, &a_pub, 10), 0);
    cr_assert_eq(drain_connects(&b, 2999, NULL), 0, "no more attempts");
}

Test(tcp_punch, forged_and_reflected_probes_are_ignored)
{
    tcp_punch a, b, evil;
    init(&a, true, 8);
    init(&b, false, 9);
    tcpp_config ec = {.session_id = SID, .controlling = false, .tid_seed = 10};
    memset(ec.secret, 8, sizeof(ec.secret)); /* wrong secret */
    tcpp_init(&evil, &ec);
    netaddr ab = addr("203.0.113.12:40000");
    tcpp_add_remote(&a, &ab);
    tcpp_add_remote(&evil, &ab);
    tcpp_start(&a, 0);
    tcpp_start(&evil, 0);
    drain_connects(&a, 0, NULL);
    drain_connects(&evil, 0, NULL);
    int sa = tcpp_on_connected(&a, 0, 5), se = tcpp_on_connected(&evil, 0, 5);
    /* the impostor's request is refused and never answered */
    carry(&evil, se, &a, sa, 6);
    cr_assert_eq(a.rejected, 1);
    cr_assert_not(a.streams[sa].got_request);
    /* A's own request reflected back at A: same role, refused */
    uint8_t buf[512];
    int stream;
    size_t n = tcpp_poll_transmit(&a, 6, &stream, buf, sizeof(buf));
    cr_assert_gt(n, 0);
    Punchline__Envelope *env = NULL;
    cr_assert_eq(wire_decode(buf, n, &env, NULL), WIRE_OK);
    cr_assert_not(tcpp_input(&a, sa, env->probe, 7));
    wire_free(env);
    cr_assert_eq(tcpp_state(&a), TCPP_CHECKING);
    (void)b;
}

Test(tcp_punch, selected_stream_closing_is_death_and_keepalive_silence_too)
{
    tcp_punch a, b;
    init(&a, true, 11);
    init(&b, false, 12);
    netaddr ab = addr("203.0.113.12:40000"), ba = addr("203.0.113.11:40001");
    tcpp_add_remote(&a, &ab);
    tcpp_add_remote(&b, &ba);
    tcpp_start(&a, 0);
    tcpp_start(&b, 0);
    drain_connects(&a, 0, NULL);
    drain_connects(&b, 0, NULL);
    int sa = tcpp_on_connected(&a, 0, 10), sb = tcpp_on_connected(&b, 0, 10);
    settle(&a, sa, &b, sb, 10);
    cr_assert_eq(tcpp_state(&b), TCPP_CONNECTED);
    /* keepalive every 1000 ms, answered: stays up */
    uint64_t now = 10;
    for (int i = 0; i < 5; i++) {
        now += 1000;
        tcpp_tick(&a, now);
        tcpp_tick(&b, now);
        settle(&a, sa, &b, sb, now);
    }
    cr_assert_eq(tcpp_state(&a), TCPP_CONNECTED);
    /* B goes silent: A is dead after path_timeout_ms (4000) since the last answer */
    uint64_t last = now;
    while (tcpp_state(&a) == TCPP_CONNECTED) {
        uint64_t d = tcpp_next_deadline(&a);
        cr_assert_gt(d, now);
        now = d;
        tcpp_tick(&a, now);
        uint8_t buf[512];
        int s;
        while (tcpp_poll_transmit(&a, now, &s, buf, sizeof(buf)))
            ; /* lost */
    }
    cr_assert_eq(tcpp_state(&a), TCPP_DEAD);
    cr_assert_eq(now, last + 4000);
    /* B: the stream closes under it */
    tcpp_on_stream_closed(&b, sb, now);
    cr_assert_eq(tcpp_state(&b), TCPP_DEAD);
    cr_assert(strstr(b.fail_reason, "closed"), "%s", b.fail_reason);
}

Test(tcp_punch, a_failed_stream_before_selection_is_retried)
{
    tcp_punch a;
    init(&a, true, 13);
    netaddr ab = addr("203.0.113.12:40000");
    tcpp_add_remote(&a, &ab);
    tcpp_start(&a, 0);
    drain_connects(&a, 0, NULL);
    int s = tcpp_on_connected(&a, 0, 10);
    cr_assert_geq(s, 0);
    cr_assert_eq(drain_connects(&a, 2000, NULL), 0, "established: no attempts");
    tcpp_on_stream_closed(&a, s, 2000);
    uint64_t d = tcpp_next_deadline(&a);
    cr_assert(d > 2000 && d < 3000, "retried soon, at %llu", (unsigned long long)d);
    cr_assert_eq(drain_connects(&a, d, NULL), 1);
}
