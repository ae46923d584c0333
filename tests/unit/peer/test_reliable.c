/* Unit tests for peer/reliable.c: ordered, reliable message delivery over
 * datagrams, driven with fake time.
 *
 * Rules checked (peer/reliable.h): messages are cut into segments of at
 * most WIRE_MAX_PAYLOAD bytes with end_of_message on the last; delivery is
 * exactly once and in order whatever the network does (loss, reordering,
 * duplication); cumulative + selective acks (RFC 2018 spirit); RTT
 * estimation and RTO per RFC 6298 s2 with exponential backoff (s5.5) and
 * Karn's rule (s3); a fixed window; FIN as a segment of its own; hostile
 * peers cannot make us buffer more than PL_MAX_MESSAGE per message. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdlib.h>
#include <string.h>

#include "punchline/punchline.h"
#include "reliable.h"

#define SESSION 0x77ull
#define NEVER UINT64_MAX

/* ---- helpers: deterministic messages and a checking receiver ------------ */

/* Message i: 4-byte big-endian index, then a pattern; length given. */
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

/* Sizes from 4 bytes to 3000 (1..3 segments), some exact segment sizes. */
static size_t msg_len(uint32_t i)
{
    static const size_t special[] = {4, 1023, 1024, 1025, 2048, 3000};
    if (i % 7 == 0)
        return special[(i / 7) % 6];
    return 4 + (i * 2654435761u) % 2997;
}

typedef struct rx {
    uint32_t next;        /* index of the next expected message */
    uint32_t expect_total;
    int fin_calls;
    bool fin_after_all;
    size_t fixed_len;     /* if set, every message has this length */
    size_t (*len_of)(uint32_t i); /* else this (default msg_len) */
    size_t last_len;
} rx;

static void on_message(void *user, const uint8_t *data, size_t len)
{
    rx *x = user;
    cr_assert_geq(len, 4, "message of %zu bytes", len);
    uint32_t i = (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 | data[3];
    cr_assert_eq(i, x->next, "got message %u, expected %u (order or duplicate)", i, x->next);
    size_t want = x->fixed_len ? x->fixed_len : x->len_of ? x->len_of(i) : msg_len(i);
    cr_assert_eq(len, want, "message %u: %zu bytes, want %zu", i, len, want);
    uint8_t *ref = malloc(len);
    cr_assert_not_null(ref);
    fill_msg(ref, i, len);
    cr_assert_eq(memcmp(ref, data, len), 0, "message %u corrupted", i);
    free(ref);
    cr_assert_eq(x->fin_calls, 0, "data after FIN");
    x->last_len = len;
    x->next++;
}

static void on_fin(void *user)
{
    rx *x = user;
    x->fin_calls++;
    x->fin_after_all = x->next == x->expect_total;
}

static void setup(reliable *r, rx *x, size_t queue_limit, uint32_t rto_max)
{
    rel_config cfg = {.session_id = SESSION, .queue_limit = queue_limit, .rto_max_ms = rto_max};
    rel_callbacks cb = {.on_message = on_message, .on_fin = on_fin};
    memset(x, 0, sizeof(*x));
    rel_init(r, &cfg, &cb, x);
}

/* Poll one datagram and decode it; NULL when nothing is due. */
static Punchline__Envelope *poll_env(reliable *r, uint64_t now)
{
    uint8_t buf[WIRE_UDP_MAX];
    size_t n = rel_poll_transmit(r, now, buf, sizeof(buf));
    if (!n)
        return NULL;
    Punchline__Envelope *e = NULL;
    cr_assert_eq(wire_decode_udp(buf, n, &e, NULL), WIRE_OK, "reliable sent an invalid datagram");
    cr_assert(e->body_case == PUNCHLINE__ENVELOPE__BODY_DATA ||
              e->body_case == PUNCHLINE__ENVELOPE__BODY_ACK);
    return e;
}

/* Hand a decoded datagram to the other side. */
static void deliver_env(reliable *dst, const Punchline__Envelope *e, uint64_t now)
{
    if (e->body_case == PUNCHLINE__ENVELOPE__BODY_DATA) {
        cr_assert_eq(e->data->session_id, SESSION);
        rel_input_data(dst, e->data, now);
    } else {
        cr_assert_eq(e->ack->session_id, SESSION);
        rel_input_ack(dst, e->ack, now);
    }
}

static void inject_data(reliable *r, uint32_t seq, const uint8_t *p, size_t len, bool eom, bool fin,
                        uint64_t now)
{
    Punchline__Data d = PUNCHLINE__DATA__INIT;
    d.session_id = SESSION;
    d.seq = seq;
    d.payload.data = (uint8_t *)p;
    d.payload.len = len;
    d.end_of_message = eom;
    d.fin = fin;
    rel_input_data(r, &d, now);
}

static void inject_ack(reliable *r, uint32_t next_seq, uint64_t sack, uint64_t now)
{
    Punchline__Ack a = PUNCHLINE__ACK__INIT;
    a.session_id = SESSION;
    a.next_seq = next_seq;
    a.sack = sack;
    rel_input_ack(r, &a, now);
}

/* Send everything due from `from` straight to `to` (a perfect, instant
 * link); returns the number of datagrams. */
static int pump(reliable *from, reliable *to, uint64_t now)
{
    int n = 0;
    Punchline__Envelope *e;
    while ((e = poll_env(from, now)) != NULL) {
        deliver_env(to, e, now);
        wire_free(e);
        cr_assert_lt(++n, 100000, "poll_transmit never runs dry");
    }
    return n;
}

static size_t count_segments(const reliable *r)
{
    size_t n = 0;
    for (const rel_seg *s = r->head; s; s = s->next)
        n++;
    return n;
}

/* ---- helpers: a lossy, reordering, duplicating network ------------------- */

typedef struct pkt {
    uint64_t at;
    int dst;
    size_t len;
    uint8_t buf[WIRE_UDP_MAX];
} pkt;

#define NET_Q 2048

typedef struct net {
    reliable ep[2];
    rx rx[2];
    uint32_t to_send[2], sent_msgs[2];
    bool shut[2];
    pkt q[NET_Q];
    size_t nq;
    uint64_t now, rng;
    unsigned loss_pct, dup_pct, hold_pct;
    uint32_t latency_ms, hold_ms;
    size_t lost, dups, held, datagrams;
    uint32_t max_srtt[2];   /* largest smoothed RTT each side ever held */
} net;

static net N; /* too big for the stack */

static uint32_t rnd(net *n)
{
    n->rng ^= n->rng << 13;
    n->rng ^= n->rng >> 7;
    n->rng ^= n->rng << 17;
    return (uint32_t)(n->rng >> 11);
}

static void net_enqueue(net *n, int dst, const uint8_t *buf, size_t len, uint64_t at)
{
    cr_assert_lt(n->nq, NET_Q, "network queue overflow");
    pkt *p = &n->q[n->nq++];
    p->at = at;
    p->dst = dst;
    p->len = len;
    memcpy(p->buf, buf, len);
}

static void net_send(net *n, int dst, const uint8_t *buf, size_t len)
{
    n->datagrams++;
    if (rnd(n) % 100 < n->loss_pct) {
        n->lost++;
        return;
    }
    int copies = rnd(n) % 100 < n->dup_pct ? 2 : 1;
    n->dups += (size_t)(copies - 1);
    for (int c = 0; c < copies; c++) {
        uint64_t at = n->now + n->latency_ms;
        if (rnd(n) % 100 < n->hold_pct) { /* held back: arrives after later packets */
            at += 1 + rnd(n) % n->hold_ms;
            n->held++;
        }
        net_enqueue(n, dst, buf, len, at);
    }
}

/* Deliver every packet due by now, earliest first.  Returns how many. */
static int net_deliver(net *n)
{
    int count = 0;
    for (;;) {
        size_t best = n->nq;
        for (size_t i = 0; i < n->nq; i++)
            if (n->q[i].at <= n->now && (best == n->nq || n->q[i].at < n->q[best].at))
                best = i;
        if (best == n->nq)
            return count;
        pkt p = n->q[best];
        n->q[best] = n->q[--n->nq];
        Punchline__Envelope *e = NULL;
        cr_assert_eq(wire_decode_udp(p.buf, p.len, &e, NULL), WIRE_OK);
        deliver_env(&n->ep[p.dst], e, n->now);
        wire_free(e);
        count++;
    }
}

/* The application: queue messages while the sender takes them, then FIN. */
static void net_feed(net *n, int side)
{
    reliable *r = &n->ep[side];
    uint8_t buf[3000];
    while (n->sent_msgs[side] < n->to_send[side]) {
        uint32_t i = n->sent_msgs[side];
        size_t len = msg_len(i);
        fill_msg(buf, i, len);
        int rc = rel_send(r, buf, len);
        if (rc == PL_ERR_AGAIN)
            return;
        cr_assert_eq(rc, 0, "rel_send: %d", rc);
        n->sent_msgs[side]++;
    }
    if (!n->shut[side]) {
        cr_assert_eq(rel_shutdown(r), 0);
        n->shut[side] = true;
    }
}

/* Run until both sides are done; fail if simulated time passes limit_ms
 * (a stall) or a deadline lies in the past (a busy loop). */
static void net_run(net *n, uint64_t limit_ms)
{
    uint8_t buf[WIRE_UDP_MAX];
    for (;;) {
        bool busy = false;
        for (int s = 0; s < 2; s++) {
            net_feed(n, s);
            size_t len;
            while ((len = rel_poll_transmit(&n->ep[s], n->now, buf, sizeof(buf))) > 0) {
                net_send(n, 1 - s, buf, len);
                busy = true;
            }
        }
        if (net_deliver(n) > 0)
            busy = true;
        for (int s = 0; s < 2; s++)
            if (n->ep[s].have_rtt && n->ep[s].srtt_ms > n->max_srtt[s])
                n->max_srtt[s] = n->ep[s].srtt_ms;
        if (rel_done(&n->ep[0]) && rel_done(&n->ep[1]))
            return;
        if (busy)
            continue; /* acks and newly opened window at the same instant */
        uint64_t next = NEVER;
        for (int s = 0; s < 2; s++) {
            uint64_t d = rel_next_deadline(&n->ep[s]);
            cr_assert(d > n->now, "side %d deadline %llu not after now %llu", s, (unsigned long long)d,
                      (unsigned long long)n->now);
            if (d < next)
                next = d;
        }
        for (size_t i = 0; i < n->nq; i++)
            if (n->q[i].at < next)
                next = n->q[i].at;
        cr_assert_neq(next, NEVER, "stalled: nothing in flight, nothing scheduled, not done");
        n->now = next;
        cr_assert_lt(n->now, limit_ms, "not done after %llu ms simulated: delivered %u/%u and %u/%u",
                     (unsigned long long)limit_ms, n->rx[1].next, n->to_send[0], n->rx[0].next,
                     n->to_send[1]);
    }
}

static void net_init(net *n, unsigned loss, unsigned dup, unsigned hold, uint64_t seed, uint32_t msgs_ab,
                     uint32_t msgs_ba, size_t queue_limit)
{
    memset(n, 0, sizeof(*n));
    n->rng = seed | 1;
    n->loss_pct = loss;
    n->dup_pct = dup;
    n->hold_pct = hold;
    n->latency_ms = 10;
    n->hold_ms = 60;
    for (int s = 0; s < 2; s++)
        setup(&n->ep[s], &n->rx[s], queue_limit, 0);
    n->to_send[0] = msgs_ab;
    n->to_send[1] = msgs_ba;
    n->rx[1].expect_total = msgs_ab;
    n->rx[0].expect_total = msgs_ba;
}

static void net_check_complete(net *n)
{
    cr_assert_eq(n->rx[1].next, n->to_send[0], "B got %u of %u", n->rx[1].next, n->to_send[0]);
    cr_assert_eq(n->rx[0].next, n->to_send[1], "A got %u of %u", n->rx[0].next, n->to_send[1]);
    for (int s = 0; s < 2; s++) {
        cr_assert_eq(n->rx[s].fin_calls, 1, "side %d: FIN delivered %d times", s, n->rx[s].fin_calls);
        cr_assert(n->rx[s].fin_after_all, "side %d: FIN before the last message", s);
        cr_assert(rel_done(&n->ep[s]));
        cr_assert(rel_idle(&n->ep[s]));
        cr_assert_not(n->ep[s].failed);
        cr_assert_eq(n->ep[s].queued_bytes, 0);
    }
}

/* ---- ordered delivery --------------------------------------------------- */

static size_t small_len(uint32_t i)
{
    return 4 + i % 60;
}

/* Many messages through a perfect instant link arrive once, in order, with
 * no retransmission. */
Test(reliable, in_order_delivery_perfect_link)
{
    reliable a, b;
    rx xa, xb;
    setup(&a, &xa, 0, 0);
    setup(&b, &xb, 0, 0);
    xb.len_of = small_len;
    uint8_t buf[64];
    uint64_t now = 1000;
    for (uint32_t i = 0; i < 1000; i++) {
        fill_msg(buf, i, small_len(i));
        cr_assert_eq(rel_send(&a, buf, small_len(i)), 0);
        if (i % 50 == 49) {
            pump(&a, &b, now);
            pump(&b, &a, now);
            now += 5;
        }
    }
    for (int k = 0; k < 100 && !rel_idle(&a); k++) {
        pump(&a, &b, now);
        pump(&b, &a, now);
        now += 5;
    }
    cr_assert_eq(xb.next, 1000);
    cr_assert(rel_idle(&a));
    cr_assert_eq(a.retransmits, 0);
    cr_assert_eq(a.queued_bytes, 0);
    rel_free(&a);
    rel_free(&b);
}

/* A 3000-byte message is cut into 1024 + 1024 + 952 with end_of_message on
 * the last segment only, and reassembled into one message. */
Test(reliable, multi_segment_message)
{
    reliable a, b;
    rx xa, xb;
    setup(&a, &xa, 0, 0);
    setup(&b, &xb, 0, 0);
    uint8_t msg[3000];
    fill_msg(msg, 0, sizeof(msg));
    xb.fixed_len = sizeof(msg);
    cr_assert_eq(rel_send(&a, msg, sizeof(msg)), 0);
    cr_assert_eq(count_segments(&a), 3);

    const size_t want_len[] = {1024, 1024, 952};
    for (int i = 0; i < 3; i++) {
        Punchline__Envelope *e = poll_env(&a, 0);
        cr_assert_not_null(e);
        cr_assert_eq(e->body_case, PUNCHLINE__ENVELOPE__BODY_DATA);
        cr_assert_eq(e->data->seq, (uint32_t)i);
        cr_assert_eq(e->data->payload.len, want_len[i]);
        cr_assert_eq(e->data->end_of_message, i == 2, "segment %d eom", i);
        cr_assert_not(e->data->fin);
        cr_assert_eq(xb.next, 0, "nothing delivered before the last segment");
        rel_input_data(&b, e->data, 0);
        wire_free(e);
    }
    cr_assert_eq(xb.next, 1);
    cr_assert_eq(xb.last_len, 3000);
    rel_free(&a);
    rel_free(&b);
}

/* Exactly PL_MAX_MESSAGE bytes (64 segments, the whole window) is a legal
 * message; one byte more is refused at the sender. */
Test(reliable, max_message_exactly_and_one_more)
{
    reliable a, b;
    rx xa, xb;
    setup(&a, &xa, 0, 0);
    setup(&b, &xb, 0, 0);
    uint8_t *msg = malloc(PL_MAX_MESSAGE + 1);
    cr_assert_not_null(msg);
    fill_msg(msg, 0, PL_MAX_MESSAGE);
    xb.fixed_len = PL_MAX_MESSAGE;

    cr_assert_eq(rel_send(&a, msg, PL_MAX_MESSAGE + 1), PL_ERR_TOO_BIG);
    cr_assert_null(a.head, "nothing queued for a refused message");
    cr_assert_eq(a.queued_bytes, 0);

    cr_assert_eq(rel_send(&a, msg, PL_MAX_MESSAGE), 0);
    cr_assert_eq(count_segments(&a), (PL_MAX_MESSAGE + WIRE_MAX_PAYLOAD - 1) / WIRE_MAX_PAYLOAD);
    for (uint64_t now = 0; now < 1000 && xb.next == 0; now += 10) {
        pump(&a, &b, now);
        pump(&b, &a, now);
    }
    cr_assert_eq(xb.next, 1);
    cr_assert_eq(xb.last_len, PL_MAX_MESSAGE);
    cr_assert_not(b.failed);
    cr_assert(rel_idle(&a));
    free(msg);
    rel_free(&a);
    rel_free(&b);
}

/* ---- a hostile network -------------------------------------------------- */

struct lossy_case {
    unsigned loss, dup, hold;
    uint64_t seed;
    uint32_t msgs_ab, msgs_ba;
    size_t queue_limit;
};

ParameterizedTestParameters(reliable, lossy_network_exactly_once_in_order)
{
    static struct lossy_case cases[] = {
        {0, 0, 0, 1, 300, 100, 0},             /* perfect, 10 ms latency */
        {0, 0, 30, 2, 300, 100, 0},            /* reordering only */
        {0, 20, 0, 3, 300, 100, 0},            /* duplication only */
        {5, 0, 0, 4, 300, 100, 0},             /* 5% loss */
        {5, 5, 20, 5, 300, 100, 16384},        /* 5% loss, reorder, dup, small queue */
        {20, 0, 0, 6, 200, 200, 0},            /* 20% loss */
        {20, 10, 30, 7, 200, 200, 8192},       /* everything at once */
        {20, 10, 30, 8, 200, 200, 1},          /* queue limit below one message */
    };
    return cr_make_param_array(struct lossy_case, cases, sizeof(cases) / sizeof(cases[0]));
}

/* Every message arrives exactly once and in order in both directions, the
 * FIN after the last message, and both sides reach rel_done() within a
 * bounded simulated time (a stall fails the test). */
ParameterizedTest(struct lossy_case *c, reliable, lossy_network_exactly_once_in_order)
{
    net *n = &N;
    net_init(n, c->loss, c->dup, c->hold, c->seed, c->msgs_ab, c->msgs_ba, c->queue_limit);
    net_run(n, 600000);
    net_check_complete(n);
    cr_log_info("loss %u%% dup %u%% hold %u%%: done at %llu ms, %zu datagrams, %zu lost, %zu dup, "
                "%zu held, retransmits %u + %u",
                c->loss, c->dup, c->hold, (unsigned long long)n->now, n->datagrams, n->lost, n->dups,
                n->held, n->ep[0].retransmits, n->ep[1].retransmits);
    if (c->loss)
        cr_assert_gt(n->lost, 0, "the network did lose packets");
    if (c->dup)
        cr_assert_gt(n->dups, 0);
    if (c->hold)
        cr_assert_gt(n->held, 0);
    if (!c->loss && !c->hold)
        cr_assert_eq(n->ep[0].retransmits + n->ep[1].retransmits, 0,
                     "no spurious retransmission on a clean link");
    rel_free(&n->ep[0]);
    rel_free(&n->ep[1]);
}

/* ---- sender API --------------------------------------------------------- */

/* The queue limit is enforced (PL_ERR_AGAIN, not writable) and lifts once
 * acknowledgements free the queue.  An empty queue takes any message. */
Test(reliable, queue_limit_again_then_writable_after_acks)
{
    reliable a, b;
    rx xa, xb;
    setup(&a, &xa, 4096, 0);
    setup(&b, &xb, 0, 0);
    uint8_t buf[3000];
    xb.fixed_len = 3000;

    fill_msg(buf, 0, 3000);
    cr_assert_eq(rel_send(&a, buf, 3000), 0);
    cr_assert(rel_writable(&a), "3000 < 4096");
    fill_msg(buf, 1, 3000);
    cr_assert_eq(rel_send(&a, buf, 3000), PL_ERR_AGAIN, "3000 + 3000 > 4096");
    cr_assert_eq(a.queued_bytes, 3000, "a refused message queues nothing");
    cr_assert_eq(count_segments(&a), 3);

    /* segments sent but not yet acked still count */
    Punchline__Envelope *e;
    while ((e = poll_env(&a, 0)) != NULL) {
        rel_input_data(&b, e->data, 0);
        wire_free(e);
    }
    cr_assert_eq(rel_send(&a, buf, 3000), PL_ERR_AGAIN);

    pump(&b, &a, 5); /* the ack */
    cr_assert(rel_idle(&a));
    cr_assert(rel_writable(&a));
    cr_assert_eq(rel_send(&a, buf, 3000), 0);
    pump(&a, &b, 10);
    cr_assert_eq(xb.next, 2);

    /* limit below one message: an empty queue still takes one */
    reliable c;
    rx xc;
    setup(&c, &xc, 100, 0);
    cr_assert_eq(rel_send(&c, buf, 3000), 0);
    cr_assert_not(rel_writable(&c));
    cr_assert_eq(rel_send(&c, buf, 4), PL_ERR_AGAIN);
    rel_free(&a);
    rel_free(&b);
    rel_free(&c);
}

/* After rel_shutdown() nothing more can be sent; shutdown twice queues one
 * FIN; the FIN is a separate segment without payload after the data. */
Test(reliable, send_after_shutdown_is_state_error)
{
    reliable a;
    rx xa;
    setup(&a, &xa, 0, 0);
    uint8_t buf[10] = {0};
    cr_assert_eq(rel_send(&a, buf, sizeof(buf)), 0);
    cr_assert_eq(rel_shutdown(&a), 0);
    cr_assert_not(rel_writable(&a));
    cr_assert_eq(rel_send(&a, buf, sizeof(buf)), PL_ERR_STATE);
    cr_assert_eq(rel_send(&a, buf, PL_MAX_MESSAGE + 1), PL_ERR_STATE);
    cr_assert_eq(rel_shutdown(&a), 0);
    cr_assert_eq(count_segments(&a), 2, "one data segment, one FIN");

    Punchline__Envelope *e = poll_env(&a, 0);
    cr_assert_not(e->data->fin);
    wire_free(e);
    e = poll_env(&a, 0);
    cr_assert(e->data->fin);
    cr_assert_eq(e->data->payload.len, 0);
    cr_assert_eq(e->data->seq, 1);
    wire_free(e);
    cr_assert_null(poll_env(&a, 0));
    rel_free(&a);
}

/* ---- acknowledgements --------------------------------------------------- */

/* An Ack for a sequence number we never assigned is ignored; so is the
 * acknowledgement of segments not transmitted yet (cannot be genuine). */
Test(reliable, ack_for_unsent_seq_ignored)
{
    reliable a;
    rx xa;
    setup(&a, &xa, 0, 0);
    uint8_t buf[100];
    for (uint32_t i = 0; i < 3; i++) {
        fill_msg(buf, i, sizeof(buf));
        cr_assert_eq(rel_send(&a, buf, sizeof(buf)), 0);
    }
    Punchline__Envelope *e = poll_env(&a, 0); /* seq 0 only */
    wire_free(e);

    inject_ack(&a, 5, 0, 10); /* snd_nxt is 3 */
    cr_assert_eq(count_segments(&a), 3, "ack beyond snd_nxt ignored");
    cr_assert_eq(a.queued_bytes, 300);
    inject_ack(&a, 0x80000003u, 0, 10);
    cr_assert_eq(count_segments(&a), 3, "ack far ahead (sequence wrap) ignored");

    inject_ack(&a, 3, 0, 10); /* seqs 1 and 2 were never transmitted */
    cr_assert_eq(count_segments(&a), 2, "only the transmitted segment is released");
    cr_assert_eq(a.snd_una, 1);
    cr_assert_eq(a.queued_bytes, 200);
    rel_free(&a);
}

/* The receiver's Ack: next_seq = first missing, bit i of sack = seq
 * next_seq + 1 + i held out of order.  The sender then retransmits only the
 * hole (RFC 2018 spirit). */
Test(reliable, sack_reports_holes_and_limits_retransmission)
{
    reliable a, b;
    rx xa, xb;
    setup(&a, &xa, 0, 0);
    setup(&b, &xb, 0, 0);
    uint8_t buf[100];
    for (uint32_t i = 0; i < 4; i++) {
        fill_msg(buf, i, 100);
        cr_assert_eq(rel_send(&a, buf, 100), 0);
    }
    xb.fixed_len = 100;
    Punchline__Envelope *seg[4];
    for (int i = 0; i < 4; i++)
        seg[i] = poll_env(&a, 0);
    /* seq 0 lost; 1, 2 and 3 arrive */
    for (int i = 1; i < 4; i++)
        rel_input_data(&b, seg[i]->data, 5);
    cr_assert_eq(xb.next, 0);
    Punchline__Envelope *ack = poll_env(&b, 5);
    cr_assert_eq(ack->body_case, PUNCHLINE__ENVELOPE__BODY_ACK);
    cr_assert_eq(ack->ack->next_seq, 0);
    cr_assert_eq(ack->ack->sack, 0x7, "seqs 1..3 held");
    rel_input_ack(&a, ack->ack, 10);
    wire_free(ack);

    uint64_t rto = rel_next_deadline(&a);
    cr_assert_eq(rto, 0 + (uint64_t)rel_rto(&a), "seq 0 (sent at 0) due again one RTO later");
    Punchline__Envelope *re = poll_env(&a, rto);
    cr_assert_not_null(re);
    cr_assert_eq(re->data->seq, 0);
    cr_assert_null(poll_env(&a, rto), "sacked segments are not retransmitted");
    rel_input_data(&b, re->data, rto);
    cr_assert_eq(xb.next, 4, "the hole filled: all four delivered in order");
    wire_free(re);
    for (int i = 0; i < 4; i++)
        wire_free(seg[i]);
    rel_free(&a);
    rel_free(&b);
}

/* ---- timers (RFC 6298) -------------------------------------------------- */

/* A segment that is never acknowledged is retransmitted at rto, then after
 * 2*rto, 4*rto ... capped at rto_max (RFC 6298 s5.5), and the deadline
 * always names the next retransmission. */
Test(reliable, rto_backoff_observable)
{
    reliable a;
    rx xa;
    setup(&a, &xa, 0, 1000);
    cr_assert_eq(rel_rto(&a), 200, "RFC 6298 s2.1 style initial value (configurable)");
    uint8_t buf[10] = {0};
    cr_assert_eq(rel_send(&a, buf, sizeof(buf)), 0);
    cr_assert_eq(rel_next_deadline(&a), 0, "a new segment is due at once");

    const uint64_t want[] = {0, 200, 600, 1400, 2400, 3400, 4400};
    uint64_t now = 0;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        uint64_t d = rel_next_deadline(&a);
        cr_assert_eq(d, want[i], "transmission %zu due at %llu, want %llu", i, (unsigned long long)d,
                     (unsigned long long)want[i]);
        if (d > 0)
            cr_assert_null(poll_env(&a, d - 1), "nothing a millisecond early");
        now = d;
        Punchline__Envelope *e = poll_env(&a, now);
        cr_assert_not_null(e);
        cr_assert_eq(e->data->seq, 0);
        wire_free(e);
        cr_assert_null(poll_env(&a, now));
    }
    cr_assert_eq(a.retransmits, 6);

    /* Karn (RFC 6298 s3): the ack of a retransmitted segment is no sample */
    inject_ack(&a, 1, 0, now + 5);
    cr_assert(rel_idle(&a));
    cr_assert_eq(rel_rto(&a), 200);
    cr_assert_eq(rel_next_deadline(&a), NEVER);
    rel_free(&a);
}

/* The first clean sample sets SRTT = R, RTTVAR = R/2, RTO = SRTT + 4*RTTVAR
 * (RFC 6298 s2.2). */
Test(reliable, rtt_sample_sets_rto)
{
    reliable a;
    rx xa;
    setup(&a, &xa, 0, 0);
    uint8_t buf[10] = {0};
    cr_assert_eq(rel_send(&a, buf, sizeof(buf)), 0);
    Punchline__Envelope *e = poll_env(&a, 1000);
    wire_free(e);
    inject_ack(&a, 1, 0, 1100);
    cr_assert_eq(a.srtt_ms, 100);
    cr_assert_eq(a.rttvar_ms, 50);
    cr_assert_eq(rel_rto(&a), 300);
    rel_free(&a);
}

/* RTT samples must measure a round trip, not how long a segment waited
 * behind a hole.  seq 0 is lost, 1..9 arrive (and are SACKed 20 ms after
 * they were sent); seq 0 is repaired by its retransmission at 200 ms and
 * the cumulative Ack at 220 ms releases 1..9.  The path's RTT is 20 ms:
 * samples of 220 ms from 1..9 would teach the sender an RTT eleven times
 * too large (RFC 6298 s3 wants unambiguous samples only; on a lossy path
 * that error feeds on itself, see rtt_estimate_stays_near_path_rtt). */
Test(reliable, hole_repair_does_not_inflate_rtt)
{
    reliable a, b;
    rx xa, xb;
    setup(&a, &xa, 0, 0);
    setup(&b, &xb, 0, 0);
    xb.fixed_len = 100;
    uint8_t buf[100];
    Punchline__Envelope *seg[10];
    for (uint32_t i = 0; i < 10; i++) {
        fill_msg(buf, i, sizeof(buf));
        cr_assert_eq(rel_send(&a, buf, sizeof(buf)), 0);
    }
    for (int i = 0; i < 10; i++)
        seg[i] = poll_env(&a, 0);
    for (int i = 1; i < 10; i++) /* seq 0 lost */
        rel_input_data(&b, seg[i]->data, 10);
    Punchline__Envelope *ack = poll_env(&b, 10);
    cr_assert_eq(ack->ack->sack, 0x1ff);
    rel_input_ack(&a, ack->ack, 20);
    wire_free(ack);

    Punchline__Envelope *re = poll_env(&a, 200);
    cr_assert_not_null(re);
    cr_assert_eq(re->data->seq, 0);
    rel_input_data(&b, re->data, 210);
    wire_free(re);
    cr_assert_eq(xb.next, 10);
    ack = poll_env(&b, 210);
    rel_input_ack(&a, ack->ack, 220);
    wire_free(ack);
    cr_assert(rel_idle(&a));

    cr_assert(!a.have_rtt || a.srtt_ms <= 40, "SRTT %u ms on a 20 ms path", a.srtt_ms);
    cr_assert_leq(rel_rto(&a), 200, "RTO %u ms grew past its initial value on a 20 ms path",
                  rel_rto(&a));
    for (int i = 0; i < 10; i++)
        wire_free(seg[i]);
    rel_free(&a);
    rel_free(&b);
}

/* End to end: on a path with a 20 ms RTT and 5% loss, the smoothed RTT
 * must stay in the neighbourhood of 20 ms (here: never above 200 ms).  If
 * the time segments wait behind a hole is counted as RTT, every loss raises
 * the RTO, the next repair takes longer and is counted again: SRTT climbs
 * to seconds and the RTO pins at rto_max. */
Test(reliable, rtt_estimate_stays_near_path_rtt)
{
    net *n = &N;
    net_init(n, 5, 0, 0, 4, 200, 200, 0);
    net_run(n, 600000);
    net_check_complete(n);
    for (int s = 0; s < 2; s++)
        cr_assert_leq(n->max_srtt[s], 200, "side %d: SRTT reached %u ms on a 20 ms path (done at %llu ms)",
                      s, n->max_srtt[s], (unsigned long long)n->now);
    rel_free(&n->ep[0]);
    rel_free(&n->ep[1]);
}

/* ---- path switch -------------------------------------------------------- */

/* Data in flight during a path switch.  20 messages (1..3 segments each)
 * go out on a UDP path; it delivers the first 8 datagrams and then dies,
 * losing everything else in flight, B's ack included.  The connection moves
 * to a new path that loses nothing: rel_path_switch() must send everything
 * unacknowledged once more right away -- on a reliable (TCP) path no timer
 * would ever resend it, and on a UDP path it must not wait for the RTO --
 * so all 20 messages arrive exactly once, in order (on_message checks),
 * and the sender becomes idle.  Afterwards retransmission follows the new
 * path's kind: no timer on TCP, the RTO on UDP. */
static void path_switch_case(bool reliable_path)
{
    reliable a, b;
    rx xa, xb;
    setup(&a, &xa, 0, 0);
    setup(&b, &xb, 0, 0);
    const uint32_t msgs = 20;
    uint8_t buf[3000];
    uint64_t now = 1000;
    for (uint32_t i = 0; i < msgs; i++) {
        fill_msg(buf, i, msg_len(i));
        cr_assert_eq(rel_send(&a, buf, msg_len(i)), 0);
    }
    size_t segs = count_segments(&a);
    cr_assert_gt(segs, msgs, "some messages span several segments");
    cr_assert_leq(segs, REL_WINDOW, "all of them in flight at once");

    /* the old path: 8 datagrams arrive, the rest is lost with it */
    size_t delivered = 0, lost = 0;
    Punchline__Envelope *e;
    while ((e = poll_env(&a, now)) != NULL) {
        cr_assert_eq(e->body_case, PUNCHLINE__ENVELOPE__BODY_DATA);
        if (delivered < 8) {
            deliver_env(&b, e, now);
            delivered++;
        } else {
            lost++;
        }
        wire_free(e);
    }
    cr_assert_eq(delivered + lost, segs, "every segment went out once");
    uint32_t before = xb.next;
    cr_assert_lt(before, msgs);
    e = poll_env(&b, now); /* B's ack: lost too */
    cr_assert_not_null(e);
    cr_assert_eq(e->body_case, PUNCHLINE__ENVELOPE__BODY_ACK);
    wire_free(e);
    cr_assert_eq(count_segments(&a), segs, "nothing acknowledged");
    cr_assert_gt(rel_next_deadline(&a), now + 10, "without a switch nothing is due before the RTO");

    now += 10;
    rel_path_switch(&a, reliable_path);
    rel_path_switch(&b, reliable_path);
    cr_assert_leq(rel_next_deadline(&a), now, "everything unacknowledged is due at once");

    /* the new path loses nothing; all of this happens before the RTO */
    for (int k = 0; k < 5 && !rel_idle(&a); k++) {
        pump(&a, &b, now);
        pump(&b, &a, now);
        now++;
    }
    cr_assert_eq(xb.next, msgs, "%u of %u messages arrived (%u before the switch)", xb.next, msgs,
                 before);
    cr_assert(rel_idle(&a), "stuck: %zu segments unacknowledged", count_segments(&a));
    cr_assert_eq(a.queued_bytes, 0);
    cr_assert_eq(a.retransmits, segs, "each unacknowledged segment sent once more, once");
    cr_assert_eq(pump(&a, &b, now), 0, "nothing left to send");
    cr_assert_eq(rel_next_deadline(&a), NEVER);

    /* one more message: retransmission now follows the new path's kind */
    fill_msg(buf, msgs, msg_len(msgs));
    cr_assert_eq(rel_send(&a, buf, msg_len(msgs)), 0);
    Punchline__Envelope *seg[4];
    size_t n = 0;
    while ((e = poll_env(&a, now)) != NULL) {
        cr_assert_lt(n, 4);
        seg[n++] = e;
    }
    cr_assert_gt(n, 0);
    uint64_t due = rel_next_deadline(&a);
    if (reliable_path) {
        cr_assert_eq(due, NEVER, "no retransmission timer on a reliable path");
    } else {
        /* lost on UDP: resent one RTO later */
        cr_assert_eq(due, now + rel_rto(&a), "RTO armed on a UDP path");
        for (size_t i = 0; i < n; i++)
            wire_free(seg[i]);
        now = due;
        for (n = 0; (e = poll_env(&a, now)) != NULL;) {
            cr_assert_lt(n, 4);
            seg[n++] = e;
        }
        cr_assert_gt(n, 0, "retransmitted at the RTO");
    }
    for (size_t i = 0; i < n; i++) {
        deliver_env(&b, seg[i], now);
        wire_free(seg[i]);
    }
    pump(&b, &a, now);
    cr_assert_eq(xb.next, msgs + 1);
    cr_assert(rel_idle(&a));
    rel_free(&a);
    rel_free(&b);
}

Test(reliable, data_in_flight_during_switch_to_reliable_path)
{
    path_switch_case(true);
}

Test(reliable, data_in_flight_during_switch_to_another_udp_path)
{
    path_switch_case(false);
}

/* ---- receiver ----------------------------------------------------------- */

/* Data beyond the receive window (rcv_nxt + REL_WINDOW and later) is
 * dropped, not stored; the last seq inside the window is kept. */
Test(reliable, data_beyond_window_dropped)
{
    reliable b;
    rx xb;
    setup(&b, &xb, 0, 0);
    uint8_t p[8];
    fill_msg(p, 0, sizeof(p));
    inject_data(&b, REL_WINDOW, p, sizeof(p), true, false, 0);
    cr_assert_null(b.slot[REL_WINDOW % REL_WINDOW], "seq rcv_nxt + window is outside");
    inject_data(&b, 1000000, p, sizeof(p), true, false, 0);
    for (size_t i = 0; i < REL_WINDOW; i++)
        cr_assert_null(b.slot[i]);
    inject_data(&b, REL_WINDOW - 1, p, sizeof(p), true, false, 0);
    cr_assert_not_null(b.slot[(REL_WINDOW - 1) % REL_WINDOW], "last seq inside the window kept");
    cr_assert_eq(xb.next, 0);
    cr_assert(b.ack_due, "out-of-window data is still acknowledged");
    rel_free(&b);
}

/* Duplicates (in order and out of order) are delivered once. */
Test(reliable, duplicates_delivered_once)
{
    reliable b;
    rx xb;
    setup(&b, &xb, 0, 0);
    xb.fixed_len = 8;
    uint8_t m0[8], m1[8];
    fill_msg(m0, 0, 8);
    fill_msg(m1, 1, 8);
    inject_data(&b, 1, m1, 8, true, false, 0);
    inject_data(&b, 1, m1, 8, true, false, 0);
    cr_assert_eq(xb.next, 0);
    inject_data(&b, 0, m0, 8, true, false, 0);
    cr_assert_eq(xb.next, 2);
    inject_data(&b, 0, m0, 8, true, false, 0);
    inject_data(&b, 1, m1, 8, true, false, 0);
    cr_assert_eq(xb.next, 2, "old duplicates ignored (on_message asserts the order)");
    rel_free(&b);
}

/* A peer that never ends its message (segments without end_of_message past
 * PL_MAX_MESSAGE) sets r->failed instead of growing our buffer. */
Test(reliable, peer_message_larger_than_max_fails)
{
    reliable b;
    rx xb;
    setup(&b, &xb, 0, 0);
    uint8_t p[WIRE_MAX_PAYLOAD];
    memset(p, 0x11, sizeof(p));
    uint32_t nseg = PL_MAX_MESSAGE / WIRE_MAX_PAYLOAD;
    for (uint32_t i = 0; i < nseg; i++)
        inject_data(&b, i, p, sizeof(p), false, false, 0);
    cr_assert_not(b.failed, "exactly PL_MAX_MESSAGE so far is fine");
    /* an end_of_message segment already waiting behind the one that fails */
    inject_data(&b, nseg + 1, p, 8, true, false, 0);
    inject_data(&b, nseg, p, 1, false, false, 0);
    cr_assert(b.failed, "one byte more than PL_MAX_MESSAGE");
    cr_assert_leq(b.msg_cap, (size_t)PL_MAX_MESSAGE);
    cr_assert_eq(xb.next, 0, "nothing delivered, not even the tail as a message");
    inject_data(&b, nseg + 2, p, 8, true, false, 0);
    cr_assert_eq(xb.next, 0, "and nothing after failing");
    rel_free(&b);
}

/* FIN: delivered once, after the data; data after it is ignored; rel_done
 * needs both our FIN acknowledged and the peer's FIN received. */
Test(reliable, fin_half_close_and_done)
{
    reliable a, b;
    rx xa, xb;
    setup(&a, &xa, 0, 0);
    setup(&b, &xb, 0, 0);
    xb.expect_total = 1;
    xb.fixed_len = 10;
    uint8_t m[10];
    fill_msg(m, 0, 10);
    cr_assert_eq(rel_send(&a, m, 10), 0);
    cr_assert_eq(rel_shutdown(&a), 0);
    pump(&a, &b, 0);
    pump(&b, &a, 1);
    cr_assert_eq(xb.fin_calls, 1);
    cr_assert(xb.fin_after_all);
    cr_assert(a.fin_acked);
    cr_assert_not(rel_done(&a), "the peer has not finished");
    cr_assert_not(rel_done(&b), "b's own FIN not sent");

    inject_data(&b, 2, m, 10, true, false, 2); /* after FIN */
    inject_data(&b, 1, NULL, 0, false, true, 2); /* FIN again */
    cr_assert_eq(xb.next, 1);
    cr_assert_eq(xb.fin_calls, 1, "FIN delivered once");

    cr_assert_eq(rel_shutdown(&b), 0);
    pump(&b, &a, 3);
    pump(&a, &b, 4);
    cr_assert(rel_done(&a));
    cr_assert(rel_done(&b));
    cr_assert_eq(xa.fin_calls, 1);
    rel_free(&a);
    rel_free(&b);
}

/* Data the peer sent after its FIN (seq beyond the FIN), even when it was
 * already waiting out of order, is never delivered. */
Test(reliable, data_beyond_fin_never_delivered)
{
    reliable b;
    rx xb;
    setup(&b, &xb, 0, 0);
    xb.fixed_len = 10;
    xb.expect_total = 1;
    uint8_t m0[10], m2[10];
    fill_msg(m0, 0, 10);
    fill_msg(m2, 1, 10);
    inject_data(&b, 2, m2, 10, true, false, 0);   /* after the FIN */
    inject_data(&b, 1, NULL, 0, false, true, 0);  /* FIN */
    cr_assert_eq(xb.fin_calls, 0, "seq 0 still missing");
    inject_data(&b, 0, m0, 10, true, false, 0);
    cr_assert_eq(xb.next, 1);
    cr_assert_eq(xb.fin_calls, 1);
    cr_assert(xb.fin_after_all);
    cr_assert_eq(b.rcv_nxt, 2, "delivery stops at the FIN");
    rel_free(&b);
}

/* rel_free releases queued, in-flight and out-of-order segments and a
 * partial message (checked by the ASan build), and may be called twice. */
Test(reliable, free_releases_everything)
{
    reliable a;
    rx xa;
    setup(&a, &xa, 0, 0);
    uint8_t big[3000];
    fill_msg(big, 0, sizeof(big));
    cr_assert_eq(rel_send(&a, big, sizeof(big)), 0);
    cr_assert_eq(rel_shutdown(&a), 0);
    Punchline__Envelope *e = poll_env(&a, 0);
    wire_free(e);
    inject_data(&a, 5, big, 100, true, false, 0);
    inject_data(&a, 0, big, 100, false, false, 0);
    cr_assert_not_null(a.msg, "a partial message is buffered");
    rel_free(&a);
    cr_assert_null(a.head);
    cr_assert_null(a.msg);
    rel_free(&a);
}
