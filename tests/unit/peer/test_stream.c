/* Unit tests for peer/stream.c: the reliable, flow-controlled message
 * stream, driven with fake time over a simulated link that loses,
 * duplicates, reorders and delays datagrams.
 *
 * Rules checked (peer/stream.h, docs/PROTOCOL.md 6): every message arrives
 * exactly once, intact and in order, and the FIN after the last, whatever
 * the link does (0-20% loss, duplication, reordering), within a bounded
 * simulated time (no stall); packet numbers are never reused and acks are
 * ranges; loss shrinks the congestion window (RFC 9002 s7.3.2) and acks grow
 * it; the receiver never buffers more than its window, and a paused
 * receiver stops the sender; a path switch loses nothing; hostile input
 * (acks for unsent packets, malformed ranges, data beyond the window, a
 * moved FIN, an oversized message) cannot corrupt the stream. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdlib.h>
#include <string.h>

#include "punchline/punchline.h"
#include "stream.h"

#define NEVER UINT64_MAX
#define MS 1000ull
#define SEC 1000000ull

/* ---- deterministic messages, a checking receiver -------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static size_t msg_len(uint32_t i)
{
    static const size_t special[] = {0, 1, 4, 1195, 1196, 1200, 2400, 65536};
    if (i % 11 == 0)
        return special[(i / 11) % 8];
    return 4 + (i * 2654435761u) % 5000;
}

static void fill_msg(uint8_t *buf, uint32_t i, size_t len)
{
    for (size_t j = 0; j < len; j++)
        buf[j] = (uint8_t)(i * 31u + j * 7u + 1u);
    if (len >= 4) {
        buf[0] = (uint8_t)(i >> 24);
        buf[1] = (uint8_t)(i >> 16);
        buf[2] = (uint8_t)(i >> 8);
        buf[3] = (uint8_t)i;
    }
}

typedef struct end {
    stream s;
    uint32_t next_rx;         /* index of the next expected message */
    uint32_t next_tx, total_tx;
    int fins;
    bool fin_after_all;
    uint32_t expect_rx;
    size_t max_rbuf_used;
} end;

static void on_message(void *user, const uint8_t *data, size_t len)
{
    end *e = user;
    uint32_t i = e->next_rx;
    size_t want = msg_len(i);
    cr_assert_eq(len, want, "message %u: %zu bytes, want %zu", i, len, want);
    static uint8_t ref[PL_MAX_MESSAGE];
    fill_msg(ref, i, len);
    cr_assert_eq(memcmp(ref, data, len), 0, "message %u corrupted (or out of order)", i);
    cr_assert_eq(e->fins, 0, "data after FIN");
    e->next_rx++;
}

static void on_fin(void *user)
{
    end *e = user;
    e->fins++;
    e->fin_after_all = e->next_rx == e->expect_rx;
}

static void end_init(end *e, uint32_t total_tx, uint32_t expect_rx, size_t limit)
{
    memset(e, 0, sizeof(*e));
    stream_config c = {.session_id = 7, .send_limit = limit, .recv_limit = limit};
    stream_callbacks cb = {.on_message = on_message, .on_fin = on_fin};
    cr_assert_eq(stream_init(&e->s, &c, &cb, e), 0);
    e->total_tx = total_tx;
    e->expect_rx = expect_rx;
}

/* Queue as many messages as fit; shut down after the last. */
static void end_fill(end *e)
{
    static uint8_t buf[PL_MAX_MESSAGE];
    while (e->next_tx < e->total_tx) {
        size_t len = msg_len(e->next_tx);
        fill_msg(buf, e->next_tx, len);
        int rc = stream_send(&e->s, buf, len);
        if (rc == PL_ERR_AGAIN)
            return;
        cr_assert_eq(rc, 0);
        e->next_tx++;
    }
    if (!e->s.fin_queued)
        stream_shutdown(&e->s);
}

/* ---- the simulated link ---------------------------------------------------- */

#define QMAX 200000

typedef struct pkt {
    uint64_t at;
    int to;                   /* 0 = a, 1 = b */
    uint16_t len;
    uint8_t data[WIRE_UDP_MAX];
} pkt;

typedef struct link_cfg {
    unsigned loss_pct10;      /* loss in tenths of a percent */
    unsigned dup_pct;
    unsigned reorder_pct;     /* this share gets up to 3 x delay extra */
    uint64_t delay;           /* one-way, µs */
    uint64_t rate_bps;        /* bottleneck (bytes per second), 0 = none */
    size_t queue_bytes;       /* bottleneck buffer (drop-tail) */
} link_cfg;

typedef struct sim {
    end a, b;
    link_cfg cfg;
    pkt *q;
    size_t nq;
    uint64_t now, rng;
    uint64_t busy_until[2];   /* bottleneck, per direction */
    uint64_t sent[2], dropped[2];
    bool cut;                 /* drop everything (a dead path) */
} sim;

static void sim_init(sim *m, const link_cfg *c, uint64_t seed)
{
    memset(&m->cfg, 0, sizeof(m->cfg));
    m->cfg = *c;
    m->q = calloc(QMAX, sizeof(pkt));
    cr_assert_not_null(m->q);
    m->nq = 0;
    m->now = 1000 * MS;
    m->rng = seed;
    memset(m->busy_until, 0, sizeof(m->busy_until));
    memset(m->sent, 0, sizeof(m->sent));
    memset(m->dropped, 0, sizeof(m->dropped));
    m->cut = false;
}

/* A link and two ends: a sends a_msgs messages to b, b sends b_msgs back;
 * limit: both buffers (0 = default). */
static void sim_start(sim *m, link_cfg lc, uint64_t seed, uint32_t a_msgs, uint32_t b_msgs,
                      size_t limit)
{
    sim_init(m, &lc, seed);
    end_init(&m->a, a_msgs, b_msgs, limit);
    end_init(&m->b, b_msgs, a_msgs, limit);
}

static void sim_free(sim *m)
{
    stream_free(&m->a.s);
    stream_free(&m->b.s);
    free(m->q);
}

static void sim_put(sim *m, int to, const uint8_t *d, size_t n, uint64_t at)
{
    cr_assert_lt(m->nq, QMAX, "link queue overflow");
    pkt *p = &m->q[m->nq++];
    p->at = at;
    p->to = to;
    p->len = (uint16_t)n;
    memcpy(p->data, d, n);
}

static void sim_send(sim *m, int to, const uint8_t *d, size_t n)
{
    int dir = to;
    m->sent[dir]++;
    if (m->cut || rng_next(&m->rng) % 1000 < m->cfg.loss_pct10) {
        m->dropped[dir]++;
        return;
    }
    uint64_t at = m->now;
    if (m->cfg.rate_bps) { /* drop-tail bottleneck */
        uint64_t start = m->busy_until[dir] > m->now ? m->busy_until[dir] : m->now;
        uint64_t backlog = (start - m->now) * m->cfg.rate_bps / SEC;
        if (backlog + n > m->cfg.queue_bytes) {
            m->dropped[dir]++;
            return;
        }
        m->busy_until[dir] = start + n * SEC / m->cfg.rate_bps;
        at = m->busy_until[dir];
    }
    at += m->cfg.delay;
    if (m->cfg.reorder_pct && rng_next(&m->rng) % 100 < m->cfg.reorder_pct)
        at += rng_next(&m->rng) % (3 * m->cfg.delay + 1);
    sim_put(m, to, d, n, at);
    if (m->cfg.dup_pct && rng_next(&m->rng) % 100 < m->cfg.dup_pct)
        sim_put(m, to, d, n, at + rng_next(&m->rng) % (m->cfg.delay + 1));
}

static void deliver_to(end *e, const uint8_t *d, size_t n, uint64_t now)
{
    Punchline__Envelope *env = NULL;
    cr_assert_eq(wire_decode_udp(d, n, &env, NULL), WIRE_OK, "stream sent an undecodable datagram");
    if (env->body_case == PUNCHLINE__ENVELOPE__BODY_DATA)
        stream_input_data(&e->s, env->data, now);
    else if (env->body_case == PUNCHLINE__ENVELOPE__BODY_ACK)
        stream_input_ack(&e->s, env->ack, now);
    else
        cr_assert_fail("unexpected body %d", env->body_case);
    wire_free(env);
}

static void pump(sim *m, end *e, int to)
{
    uint8_t buf[WIRE_UDP_MAX];
    size_t n;
    end_fill(e);
    int guard = 0;
    while ((n = stream_poll_transmit(&e->s, m->now, buf, sizeof(buf))) > 0) {
        cr_assert_leq(n, WIRE_UDP_MAX);
        sim_send(m, to, buf, n);
        cr_assert_lt(++guard, 100000, "stream_poll_transmit never stops");
    }
    size_t used = (size_t)(e->s.rcv_next - e->s.rbuf.base);
    for (size_t i = 0; i < e->s.rcv_ooo.n; i++)
        if (e->s.rcv_ooo.r[i].hi - e->s.rbuf.base > used)
            used = (size_t)(e->s.rcv_ooo.r[i].hi - e->s.rbuf.base);
    if (used > e->max_rbuf_used)
        e->max_rbuf_used = used;
}

static bool sim_done(const sim *m)
{
    return stream_done(&m->a.s) && stream_done(&m->b.s);
}

/* One step: deliver what is due, pump both, advance to the next event. */
static void sim_step(sim *m)
{
    for (size_t i = 0; i < m->nq;) {
        if (m->q[i].at <= m->now) {
            pkt p = m->q[i];
            m->q[i] = m->q[--m->nq];
            deliver_to(p.to ? &m->b : &m->a, p.data, p.len, m->now);
        } else {
            i++;
        }
    }
    pump(m, &m->a, 1);
    pump(m, &m->b, 0);
    uint64_t t = NEVER;
    for (size_t i = 0; i < m->nq; i++)
        if (m->q[i].at < t)
            t = m->q[i].at;
    uint64_t da = stream_next_deadline(&m->a.s), db = stream_next_deadline(&m->b.s);
    if (da < t)
        t = da;
    if (db < t)
        t = db;
    if (t == NEVER && sim_done(m))
        return;
    cr_assert_neq(t, NEVER, "deadlock: nothing in flight and no timer (a=%d b=%d)",
                  stream_done(&m->a.s), stream_done(&m->b.s));
    /* a timer in the past after a pump would spin: at least 1 µs on */
    m->now = t > m->now ? t : m->now + 1;
}

/* Run until both streams are done, or fail after `limit` simulated µs. */
static void sim_run(sim *m, uint64_t limit)
{
    uint64_t end_at = m->now + limit;
    while (!sim_done(m)) {
        cr_assert_lt(m->now, end_at, "stalled: a got %u/%u, b got %u/%u after %llu ms",
                     m->a.next_rx, m->a.expect_rx, m->b.next_rx, m->b.expect_rx,
                     (unsigned long long)(limit / MS));
        sim_step(m);
    }
}

static void check_complete(const sim *m)
{
    cr_assert_eq(m->b.next_rx, m->a.total_tx, "b got %u of %u", m->b.next_rx, m->a.total_tx);
    cr_assert_eq(m->a.next_rx, m->b.total_tx, "a got %u of %u", m->a.next_rx, m->b.total_tx);
    cr_assert_eq(m->a.fins, 1);
    cr_assert_eq(m->b.fins, 1);
    cr_assert(m->a.fin_after_all && m->b.fin_after_all, "FIN before the last message");
    cr_assert(!m->a.s.failed && !m->b.s.failed);
}

/* ---- delivery under loss, duplication, reordering ------------------------- */

typedef struct net_case {
    unsigned loss_pct10, dup_pct, reorder_pct;
    uint64_t delay;
    uint32_t msgs;
    const char *name;
} net_case;

ParameterizedTestParameters(stream, delivers_everything_in_order)
{
    static net_case cases[] = {
        {0, 0, 0, 1 * MS, 400, "clean, 1 ms"},
        {10, 0, 0, 5 * MS, 400, "1% loss"},
        {50, 0, 0, 5 * MS, 400, "5% loss"},
        {200, 0, 0, 5 * MS, 200, "20% loss"},
        {20, 0, 0, 40 * MS, 300, "2% loss, 40 ms"},
        {0, 20, 0, 5 * MS, 300, "20% duplicated"},
        {0, 0, 30, 5 * MS, 300, "30% reordered"},
        {50, 10, 20, 10 * MS, 300, "5% loss, dup and reorder"},
        {200, 10, 20, 2 * MS, 150, "20% loss, dup and reorder"},
    };
    return cr_make_param_array(net_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(net_case *c, stream, delivers_everything_in_order)
{
    static sim m;
    sim_start(&m, (link_cfg){.loss_pct10 = c->loss_pct10, .dup_pct = c->dup_pct,
                   .reorder_pct = c->reorder_pct, .delay = c->delay}, 12345 + c->loss_pct10, c->msgs, c->msgs / 4, 0);
    sim_run(&m, 600 * SEC);
    check_complete(&m);
    if (c->loss_pct10)
        cr_assert_gt(m.a.s.st.packets_lost, 0, "%s: losses went unnoticed", c->name);
    cr_assert_eq(m.a.s.st.bytes_acked, m.a.s.st.bytes_queued);
    sim_free(&m);
}

/* Retransmissions get new packet numbers; none is ever reused. */
Test(stream, packet_numbers_are_never_reused)
{
    static sim m;
    sim_start(&m, (link_cfg){.loss_pct10 = 100, .delay = 5 * MS}, 99, 100, 0, 0);
    sim_run(&m, 300 * SEC);
    check_complete(&m);
    cr_assert_gt(m.a.s.st.packets_retransmitted, 0);
    cr_assert_eq(m.a.s.pn_next, m.a.s.st.packets_sent, "one number per packet sent");
    sim_free(&m);
}

/* ---- congestion control ---------------------------------------------------- */

/* Slow start: the window grows with acks on a clean path; one loss halves
 * it once per round trip (RFC 9002 s7.3.2). */
Test(stream, window_grows_then_halves_on_loss)
{
    static sim m;
    sim_start(&m, (link_cfg){.delay = 10 * MS}, 5, 2000, 0, 0);
    for (int i = 0; i < 20000 && m.a.s.cc.cwnd <= 4 * CC_INITIAL_WINDOW; i++)
        sim_step(&m);
    cr_assert_gt(m.a.s.cc.cwnd, 4 * CC_INITIAL_WINDOW, "no slow-start growth");
    cr_assert_eq(m.a.s.cc.loss_events, 0);
    m.cfg.loss_pct10 = 1000; /* everything lost for a moment */
    uint64_t until = m.now + 5 * MS, before = 0;
    while (m.now < until) {
        before = m.a.s.cc.cwnd;
        sim_step(&m);
    }
    m.cfg.loss_pct10 = 0;
    while (m.a.s.cc.loss_events == 0) {
        before = m.a.s.cc.cwnd;
        sim_step(&m);
    }
    cr_assert_eq(m.a.s.cc.loss_events, 1, "one reduction for one loss episode");
    cr_assert_leq(m.a.s.cc.cwnd, before / 2 + CC_MAX_DATAGRAM, "cwnd %llu after %llu",
                  (unsigned long long)m.a.s.cc.cwnd, (unsigned long long)before);
    /* and no second reduction for the rest of that episode */
    until = m.now + 50 * MS;
    while (m.now < until)
        sim_step(&m);
    cr_assert_eq(m.a.s.cc.loss_events, 1, "reduced again within the same episode");
    sim_run(&m, 300 * SEC);
    check_complete(&m);
    sim_free(&m);
}

/* A bottleneck with a small drop-tail buffer: the sender finds the rate
 * (losses, recoveries) and still delivers everything; pacing keeps the
 * sender from overflowing the buffer with one burst per window. */
Test(stream, bottleneck_is_shared_not_flooded)
{
    static sim m;
    link_cfg lc = {.delay = 10 * MS, .rate_bps = 2 * 1000 * 1000, .queue_bytes = 30000};
    sim_start(&m, lc, 6, 1500, 0, 0);
    uint64_t t0 = m.now;
    sim_run(&m, 600 * SEC);
    check_complete(&m);
    double secs = (double)(m.now - t0) / SEC;
    double goodput = (double)m.a.s.st.bytes_acked / secs;
    cr_assert_gt(m.a.s.cc.loss_events, 0, "never probed the bottleneck");
    /* at least 60% of the 2 MB/s bottleneck (the rest: slow start, halving) */
    cr_assert_gt(goodput, 0.6 * 2e6, "goodput %.0f B/s over a 2 MB/s bottleneck", goodput);
    cr_assert_lt((double)m.dropped[1] / (double)m.sent[1], 0.05, "%llu of %llu dropped",
                 (unsigned long long)m.dropped[1], (unsigned long long)m.sent[1]);
    sim_free(&m);
}

/* ---- flow control ---------------------------------------------------------- */

/* The receiver never holds more than its window, even with a sender whose
 * queue is far larger and a lossy link (out-of-order data). */
Test(stream, receiver_buffers_at_most_its_window)
{
    static sim m;
    link_cfg lc = {.loss_pct10 = 50, .delay = 5 * MS};
    sim_init(&m, &lc, 8);
    memset(&m.a, 0, sizeof(m.a));
    stream_config ca = {.session_id = 7, .send_limit = 8u << 20};
    stream_config cb = {.session_id = 7, .recv_limit = STREAM_MIN_BUFFER};
    stream_callbacks scb = {.on_message = on_message, .on_fin = on_fin};
    cr_assert_eq(stream_init(&m.a.s, &ca, &scb, &m.a), 0);
    m.a.total_tx = 600;
    cr_assert_eq(stream_init(&m.b.s, &cb, &scb, &m.b), 0);
    m.b.expect_rx = 600;
    sim_run(&m, 600 * SEC);
    check_complete(&m);
    cr_assert_leq(m.b.max_rbuf_used, STREAM_MIN_BUFFER, "held %zu bytes", m.b.max_rbuf_used);
    sim_free(&m);
}

/* A paused receiver stops the sender once its window is full; resuming
 * delivers everything. */
Test(stream, paused_receiver_stops_the_sender)
{
    static sim m;
    sim_start(&m, (link_cfg){.delay = 2 * MS}, 9, 3000, 0, STREAM_MIN_BUFFER);
    stream_set_paused(&m.b.s, true);
    for (int i = 0; i < 5000; i++)
        sim_step(&m);
    cr_assert_eq(m.b.next_rx, 0, "delivered while paused");
    uint64_t held = m.b.s.rcv_next - m.b.s.rbuf.base;
    cr_assert_gt(held, STREAM_MIN_BUFFER / 2, "window not used (%llu)", (unsigned long long)held);
    cr_assert_leq(held, STREAM_MIN_BUFFER);
    cr_assert_leq(m.a.s.snd_next, m.b.s.rbuf.base + STREAM_MIN_BUFFER, "sent beyond the window");
    /* the sender is still alive: window probes, not silence forever */
    cr_assert_neq(stream_next_deadline(&m.a.s), NEVER);
    stream_set_paused(&m.b.s, false);
    stream_deliver(&m.b.s);
    sim_run(&m, 300 * SEC);
    check_complete(&m);
    sim_free(&m);
}

/* ---- path switches ----------------------------------------------------------- */

/* Mid-transfer the path dies with packets in flight; both sides move to a
 * reliable path (TCP), later back to UDP: nothing lost, duplicated or
 * reordered. */
Test(stream, survives_path_switches)
{
    static sim m;
    sim_start(&m, (link_cfg){.delay = 5 * MS}, 10, 800, 100, 0);
    for (int i = 0; i < 300; i++)
        sim_step(&m);
    cr_assert_gt(m.b.next_rx, 0);
    cr_assert_lt(m.b.next_rx, 800);
    /* the old path loses what it carries */
    m.nq = 0;
    stream_path_switch(&m.a.s, true, m.now);
    stream_path_switch(&m.b.s, true, m.now);
    cr_assert(m.a.s.rtx.n > 0, "in-flight bytes queued for resending");
    for (int i = 0; i < 300; i++)
        sim_step(&m);
    cr_assert_eq(m.a.s.st.packets_lost, 0, "a reliable path declares no loss");
    m.nq = 0;
    stream_path_switch(&m.a.s, false, m.now);
    stream_path_switch(&m.b.s, false, m.now);
    m.cfg.loss_pct10 = 20;
    sim_run(&m, 300 * SEC);
    check_complete(&m);
    sim_free(&m);
}

/* A path that carries nothing for a while (dead), then works again: the
 * probe timeout backs off instead of flooding, and recovery completes. */
Test(stream, probe_timeout_backs_off_on_a_dead_path)
{
    static sim m;
    sim_start(&m, (link_cfg){.delay = 5 * MS}, 11, 200, 0, 0);
    for (int i = 0; i < 50; i++)
        sim_step(&m);
    m.cut = true;
    uint64_t sent0 = m.sent[1];
    uint64_t until = m.now + 30 * SEC;
    while (m.now < until)
        sim_step(&m);
    uint64_t during = m.sent[1] - sent0;
    cr_assert_lt(during, 200, "%llu packets into a dead path in 30 s", (unsigned long long)during);
    cr_assert_geq(m.a.s.pto_count, 3);
    cr_assert_eq(m.a.s.cc.cwnd, CC_MIN_WINDOW, "persistent congestion: minimum window");
    m.cut = false;
    sim_run(&m, 300 * SEC);
    check_complete(&m);
    sim_free(&m);
}

/* After an outage the probe timeout has backed off far; stream_kick (the
 * shell saw the path answer again) sends a probe at once, and only when a
 * probe timeout has fired: a healthy stream is left alone. */
Test(stream, kick_ends_the_backoff_after_an_outage)
{
    static sim m;
    sim_start(&m, (link_cfg){.delay = 5 * MS}, 12, 200, 0, 0);
    for (int i = 0; i < 50; i++)
        sim_step(&m);
    cr_assert_eq(m.a.s.pto_count, 0);
    uint64_t probes = m.a.s.st.probes_sent;
    stream_kick(&m.a.s, m.now);
    cr_assert_eq(m.a.s.probes_due, 0, "no probe timeout fired: nothing to kick");
    cr_assert_eq(m.a.s.st.probes_sent, probes);
    m.cut = true;
    uint64_t until = m.now + 10 * SEC;
    while (m.now < until)
        sim_step(&m);
    pump(&m, &m.a, 1); /* whatever is due now (a probe into the dead path) */
    cr_assert_geq(m.a.s.pto_count, 5);
    cr_assert_gt(stream_next_deadline(&m.a.s), m.now + SEC, "backed off beyond a second: pto_count %u, deadline +%lld us", m.a.s.pto_count, (long long)(stream_next_deadline(&m.a.s) - m.now));
    m.cut = false;
    stream_kick(&m.a.s, m.now);
    cr_assert_eq(stream_next_deadline(&m.a.s), 0, "a probe is due at once");
    uint64_t sent0 = m.sent[1];
    pump(&m, &m.a, 1);
    cr_assert_eq(m.sent[1] - sent0, 1, "exactly one probe");
    uint64_t t0 = m.now;
    while (m.a.s.pto_count && m.now < t0 + SEC)
        sim_step(&m);
    cr_assert_eq(m.a.s.pto_count, 0, "acknowledged within a round trip, not after the backoff");
    cr_assert_lt(m.now - t0, 50 * MS);
    sim_run(&m, 60 * SEC);
    check_complete(&m);
    sim_free(&m);
}

/* ---- hostile input --------------------------------------------------------- */

static Punchline__Data data_pkt(uint64_t pn, uint64_t off, const void *p, size_t n, bool fin)
{
    Punchline__Data d = PUNCHLINE__DATA__INIT;
    d.session_id = 7;
    d.pn = pn;
    d.offset = off;
    d.payload.data = (uint8_t *)p;
    d.payload.len = n;
    d.fin = fin;
    return d;
}

Test(stream, acks_for_unsent_packets_and_bad_ranges_are_ignored)
{
    end e;
    end_init(&e, 0, 0, 0);
    static uint8_t msg[3000];
    cr_assert_eq(stream_send(&e.s, msg, sizeof(msg)), 0);
    uint8_t buf[WIRE_UDP_MAX];
    uint64_t now = 10 * SEC;
    int sent = 0;
    while (stream_poll_transmit(&e.s, now, buf, sizeof(buf)) > 0)
        sent++;
    cr_assert_eq(sent, 3, "3004 bytes in %d packets, want 3", sent);
    uint64_t inflight = e.s.cc.in_flight;
    Punchline__Ack a = PUNCHLINE__ACK__INIT;
    a.pn_next = 100; /* never sent */
    a.stream_next = 3004;
    stream_input_ack(&e.s, &a, now + 10);
    cr_assert_eq(e.s.cc.in_flight, inflight, "ack of unsent packets counted");
    cr_assert_eq(e.s.sbuf.base, 3004, "stream position is taken (it is <= what we sent)");
    a.stream_next = 99999; /* beyond what we sent */
    stream_input_ack(&e.s, &a, now + 10);
    cr_assert_eq(e.s.sbuf.base, 3004);
    /* ranges that run below zero or are adjacent: only the valid part counts */
    uint64_t rr[4] = {0, 0, 5, 5};
    a.pn_next = 3;
    a.first_range = 0; /* pn 2 */
    a.ranges = rr;
    a.n_ranges = 2; /* gap 0: adjacent, malformed */
    stream_input_ack(&e.s, &a, now + 10);
    cr_assert(e.s.pkts[1].in_flight, "pn 1 acked by a malformed range");
    cr_assert_not(e.s.pkts[2].in_flight, "pn 2 (the valid first range) acked");
    a.ranges = rr + 2; /* gap 5 below pn 2: below zero */
    stream_input_ack(&e.s, &a, now + 10);
    cr_assert_eq(e.s.st.packets_lost, 0);
    stream_free(&e.s);
}

Test(stream, data_beyond_the_window_is_not_acknowledged)
{
    end e;
    end_init(&e, 0, 0, STREAM_MIN_BUFFER);
    uint8_t p[100] = {0};
    Punchline__Data d = data_pkt(0, STREAM_MIN_BUFFER - 50, p, sizeof(p), false);
    stream_input_data(&e.s, &d, 1000);
    cr_assert_not(e.s.rcv_any, "a packet beyond the window was recorded as received");
    cr_assert_eq(e.s.st.bytes_received, 0);
    d = data_pkt(1, STREAM_MIN_BUFFER - 100, p, sizeof(p), false);
    stream_input_data(&e.s, &d, 1000);
    cr_assert(e.s.rcv_any);
    stream_free(&e.s);
}

Test(stream, moving_the_fin_fails_the_stream)
{
    end e;
    end_init(&e, 0, 0, 0);
    uint8_t p[10] = {0};
    Punchline__Data d = data_pkt(0, 100, p, sizeof(p), true); /* ends at 110 */
    stream_input_data(&e.s, &d, 1000);
    cr_assert_not(e.s.failed);
    d = data_pkt(1, 200, p, sizeof(p), false); /* beyond the end */
    stream_input_data(&e.s, &d, 1000);
    cr_assert(e.s.failed);
    stream_free(&e.s);
    end_init(&e, 0, 0, 0);
    d = data_pkt(0, 100, p, sizeof(p), true);
    stream_input_data(&e.s, &d, 1000);
    d = data_pkt(1, 50, p, sizeof(p), true); /* another end */
    stream_input_data(&e.s, &d, 1000);
    cr_assert(e.s.failed);
    stream_free(&e.s);
}

Test(stream, oversized_message_length_fails_the_stream)
{
    end e;
    end_init(&e, 0, 0, 0);
    uint8_t hdr[4] = {0, 1, 0, 1}; /* 65537 */
    Punchline__Data d = data_pkt(0, 0, hdr, sizeof(hdr), false);
    stream_input_data(&e.s, &d, 1000);
    cr_assert(e.s.failed);
    cr_assert_eq(e.next_rx, 0);
    stream_free(&e.s);
}

Test(stream, stream_ending_inside_a_message_fails)
{
    end e;
    end_init(&e, 0, 0, 0);
    uint8_t part[6] = {0, 0, 0, 10, 'a', 'b'}; /* a 10-byte message, 2 bytes of it */
    Punchline__Data d = data_pkt(0, 0, part, sizeof(part), true);
    stream_input_data(&e.s, &d, 1000);
    cr_assert(e.s.failed);
    cr_assert_eq(e.fins, 0);
    stream_free(&e.s);
}

/* ---- the sender's queue ------------------------------------------------------ */

Test(stream, send_queue_is_bounded)
{
    end e;
    end_init(&e, 0, 0, STREAM_MIN_BUFFER);
    static uint8_t big[PL_MAX_MESSAGE];
    cr_assert(stream_writable(&e.s));
    cr_assert_eq(stream_send(&e.s, big, sizeof(big)), 0);
    cr_assert_not(stream_writable(&e.s), "room for another 64 KiB message in 128 KiB?");
    cr_assert_eq(stream_send(&e.s, big, sizeof(big) - 8), 0, "exactly fills the queue");
    cr_assert_eq(stream_send(&e.s, big, 1), PL_ERR_AGAIN);
    cr_assert_eq(stream_send(&e.s, big, PL_MAX_MESSAGE + 1), PL_ERR_TOO_BIG);
    stream_shutdown(&e.s);
    cr_assert_eq(stream_send(&e.s, big, 1), PL_ERR_STATE);
    stream_free(&e.s);
}

/* Small messages share packets (the stream is bytes, not segments). */
Test(stream, small_messages_share_packets)
{
    end e;
    end_init(&e, 0, 0, 0);
    uint8_t m[10] = {0};
    for (int i = 0; i < 100; i++)
        cr_assert_eq(stream_send(&e.s, m, sizeof(m)), 0);
    uint8_t buf[WIRE_UDP_MAX];
    int n = 0;
    while (stream_poll_transmit(&e.s, 10 * SEC, buf, sizeof(buf)) > 0)
        n++;
    cr_assert_eq(n, 2, "1400 bytes of 100 messages in %d packets, want 2", n);
    stream_free(&e.s);
}
