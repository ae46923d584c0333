#include "reliable.h"

#include <stdlib.h>
#include <string.h>

#include "punchline/punchline.h"

#define NEVER UINT64_MAX

/* Sequence numbers wrap at 2^32: compare by signed difference (RFC 1982). */
static bool seq_lt(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) < 0;
}

void rel_init(reliable *r, const rel_config *cfg, const rel_callbacks *cb, void *user)
{
    memset(r, 0, sizeof(*r));
    r->cfg = *cfg;
    if (!r->cfg.queue_limit)
        r->cfg.queue_limit = 1u << 20;
    if (!r->cfg.rto_initial_ms)
        r->cfg.rto_initial_ms = 200;
    if (!r->cfg.rto_min_ms)
        r->cfg.rto_min_ms = 30;
    if (!r->cfg.rto_max_ms)
        r->cfg.rto_max_ms = 4000;
    r->cb = *cb;
    r->user = user;
    r->rto_ms = r->cfg.rto_initial_ms;
}

void rel_free(reliable *r)
{
    while (r->head) {
        rel_seg *n = r->head->next;
        free(r->head);
        r->head = n;
    }
    r->tail = NULL;
    for (size_t i = 0; i < REL_WINDOW; i++) {
        free(r->slot[i]);
        r->slot[i] = NULL;
    }
    free(r->msg);
    r->msg = NULL;
}

static rel_seg *seg_new(size_t len)
{
    rel_seg *s = calloc(1, sizeof(*s) + len);
    if (s)
        s->len = (uint16_t)len;
    return s;
}

static void enqueue(reliable *r, rel_seg *s)
{
    s->seq = r->snd_nxt++;
    if (r->tail)
        r->tail->next = s;
    else
        r->head = s;
    r->tail = s;
    r->queued_bytes += s->len;
}

bool rel_writable(const reliable *r)
{
    return !r->fin_queued && r->queued_bytes < r->cfg.queue_limit;
}

int rel_send(reliable *r, const void *data, size_t len)
{
    if (r->fin_queued)
        return PL_ERR_STATE;
    if (len > PL_MAX_MESSAGE)
        return PL_ERR_TOO_BIG;
    /* An empty queue takes any message so a limit below one message cannot
     * wedge the sender. */
    if (r->queued_bytes && r->queued_bytes + len > r->cfg.queue_limit)
        return PL_ERR_AGAIN;
    const uint8_t *p = data;
    rel_seg *first = NULL, *last = NULL;
    size_t off = 0;
    do {
        size_t n = len - off > WIRE_MAX_PAYLOAD ? WIRE_MAX_PAYLOAD : len - off;
        rel_seg *s = seg_new(n);
        if (!s) {
            while (first) {
                rel_seg *nx = first->next;
                free(first);
                first = nx;
            }
            return PL_ERR_NOMEM;
        }
        if (n)
            memcpy(s->data, p + off, n);
        off += n;
        s->eom = off == len;
        if (last)
            last->next = s;
        else
            first = s;
        last = s;
    } while (off < len);
    while (first) { /* all allocated: now commit them */
        rel_seg *nx = first->next;
        first->next = NULL;
        enqueue(r, first);
        first = nx;
    }
    return 0;
}

int rel_shutdown(reliable *r)
{
    if (r->fin_queued)
        return 0;
    rel_seg *s = seg_new(0);
    if (!s)
        return PL_ERR_NOMEM;
    s->fin = true;
    enqueue(r, s);
    r->fin_queued = true;
    return 0;
}

static void deliver(reliable *r, rel_seg *s)
{
    if (s->fin) {
        r->fin_received = true;
        if (r->cb.on_fin)
            r->cb.on_fin(r->user);
        return;
    }
    if (r->msg_len + s->len > PL_MAX_MESSAGE) {
        r->failed = true; /* the peer sends a message larger than any sender may */
        r->msg_len = 0;
        return;
    }
    if (r->msg_len + s->len > r->msg_cap) {
        size_t cap = r->msg_cap ? r->msg_cap : 1024;
        while (cap < r->msg_len + s->len)
            cap *= 2;
        uint8_t *m = realloc(r->msg, cap);
        if (!m) {
            r->failed = true;
            return;
        }
        r->msg = m;
        r->msg_cap = cap;
    }
    memcpy(r->msg + r->msg_len, s->data, s->len);
    r->msg_len += s->len;
    if (s->eom) {
        size_t n = r->msg_len;
        r->msg_len = 0;
        if (r->cb.on_message)
            r->cb.on_message(r->user, r->msg, n);
    }
}

void rel_input_data(reliable *r, const Punchline__Data *d, uint64_t now)
{
    (void)now;
    r->ack_due = true; /* ack duplicates too: our previous ack may have been lost */
    if (r->failed || seq_lt(d->seq, r->rcv_nxt) || d->seq - r->rcv_nxt >= REL_WINDOW ||
        (r->fin_received))
        return;
    size_t i = d->seq % REL_WINDOW;
    if (r->slot[i])
        return; /* duplicate */
    rel_seg *s = seg_new(d->payload.len);
    if (!s)
        return; /* dropped: the sender retransmits */
    s->seq = d->seq;
    s->eom = d->end_of_message;
    s->fin = d->fin;
    if (d->payload.len)
        memcpy(s->data, d->payload.data, d->payload.len);
    r->slot[i] = s;
    /* Deliver everything now in order.  A callback may not free r (the conn
     * defers its own destruction), so the loop stays valid. */
    while ((s = r->slot[r->rcv_nxt % REL_WINDOW]) != NULL && s->seq == r->rcv_nxt) {
        r->slot[r->rcv_nxt % REL_WINDOW] = NULL;
        r->rcv_nxt++;
        deliver(r, s);
        free(s);
        if (r->fin_received || r->failed)
            break;
    }
}

static void rtt_sample(reliable *r, uint32_t rtt)
{
    /* RFC 6298 s2 */
    if (!r->have_rtt) {
        r->srtt_ms = rtt;
        r->rttvar_ms = rtt / 2;
        r->have_rtt = true;
    } else {
        uint32_t diff = r->srtt_ms > rtt ? r->srtt_ms - rtt : rtt - r->srtt_ms;
        r->rttvar_ms = (3 * r->rttvar_ms + diff) / 4;
        r->srtt_ms = (7 * r->srtt_ms + rtt) / 8;
    }
    uint32_t rto = r->srtt_ms + (4 * r->rttvar_ms > 10 ? 4 * r->rttvar_ms : 10);
    r->rto_ms = rto < r->cfg.rto_min_ms ? r->cfg.rto_min_ms
                : rto > r->cfg.rto_max_ms ? r->cfg.rto_max_ms : rto;
}

void rel_input_ack(reliable *r, const Punchline__Ack *a, uint64_t now)
{
    uint32_t next = a->next_seq;
    if (seq_lt(r->snd_nxt, next))
        return; /* acknowledges what we never sent */
    /* One RTT sample per ack, from the newest segment this ack is the first
     * word on: sent once (Karn's rule) and not already SACKed -- a segment
     * SACKed earlier and covered now only because a hole was repaired would
     * count the repair time as path RTT. */
    uint64_t sample_sent = 0;
    bool sample = false;
    while (r->head && seq_lt(r->head->seq, next)) {
        rel_seg *s = r->head;
        if (s->tx_count == 0)
            break; /* cannot be acked before it was sent */
        if (s->tx_count == 1 && !s->sacked && now >= s->sent_ms)
            sample = true, sample_sent = s->sent_ms;
        if (s->fin)
            r->fin_acked = true;
        r->queued_bytes -= s->len;
        r->head = s->next;
        free(s);
    }
    if (!r->head)
        r->tail = NULL;
    r->snd_una = r->head ? r->head->seq : r->snd_nxt;
    for (rel_seg *s = r->head; s && s->tx_count; s = s->next) {
        uint32_t off = s->seq - next - 1;
        if (s->seq != next && off < 64 && (a->sack >> off) & 1 && !s->sacked) {
            s->sacked = true;
            if (s->tx_count == 1 && now >= s->sent_ms && s->sent_ms >= sample_sent)
                sample = true, sample_sent = s->sent_ms;
        }
    }
    if (sample)
        rtt_sample(r, (uint32_t)(now - sample_sent));
}

static size_t encode_data(const reliable *r, const rel_seg *s, uint8_t *buf, size_t cap)
{
    Punchline__Data d = PUNCHLINE__DATA__INIT;
    d.session_id = r->cfg.session_id;
    d.seq = s->seq;
    d.payload.data = (uint8_t *)s->data;
    d.payload.len = s->len;
    d.end_of_message = s->eom;
    d.fin = s->fin;
    Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
    env.body_case = PUNCHLINE__ENVELOPE__BODY_DATA;
    env.data = &d;
    int n = wire_encode_udp(&env, buf, cap);
    return n > 0 ? (size_t)n : 0;
}

static uint64_t seg_due(const reliable *r, const rel_seg *s)
{
    if (s->sacked)
        return NEVER;
    if (!s->tx_count || s->resend)
        return 0;
    if (r->no_retransmit)
        return NEVER;
    /* exponential backoff per retransmission (RFC 6298 s5.5) */
    uint64_t rto = (uint64_t)r->rto_ms << (s->tx_count - 1 > 6 ? 6 : s->tx_count - 1);
    if (rto > r->cfg.rto_max_ms)
        rto = r->cfg.rto_max_ms;
    return s->sent_ms + rto;
}

size_t rel_poll_transmit(reliable *r, uint64_t now, uint8_t *buf, size_t cap)
{
    if (r->ack_due) {
        Punchline__Ack a = PUNCHLINE__ACK__INIT;
        a.session_id = r->cfg.session_id;
        a.next_seq = r->rcv_nxt;
        for (uint32_t i = 0; i < 64 && i + 1 < REL_WINDOW; i++) {
            rel_seg *s = r->slot[(r->rcv_nxt + 1 + i) % REL_WINDOW];
            if (s && s->seq == r->rcv_nxt + 1 + i)
                a.sack |= 1ull << i;
        }
        Punchline__Envelope env = PUNCHLINE__ENVELOPE__INIT;
        env.body_case = PUNCHLINE__ENVELOPE__BODY_ACK;
        env.ack = &a;
        int n = wire_encode_udp(&env, buf, cap);
        r->ack_due = false;
        if (n > 0)
            return (size_t)n;
    }
    for (rel_seg *s = r->head; s; s = s->next) {
        if (s->seq - r->snd_una >= REL_WINDOW)
            break; /* window full */
        if (seg_due(r, s) > now)
            continue;
        if (s->tx_count)
            r->retransmits++;
        if (s->tx_count < 255)
            s->tx_count++;
        s->resend = false;
        s->sent_ms = now;
        return encode_data(r, s, buf, cap);
    }
    return 0;
}

uint64_t rel_next_deadline(const reliable *r)
{
    if (r->ack_due)
        return 0;
    uint64_t d = NEVER;
    for (const rel_seg *s = r->head; s; s = s->next) {
        if (s->seq - r->snd_una >= REL_WINDOW)
            break;
        uint64_t t = seg_due(r, s);
        if (t < d)
            d = t;
    }
    return d;
}

void rel_set_retransmit(reliable *r, bool on)
{
    if (on && r->no_retransmit)
        for (rel_seg *s = r->head; s; s = s->next)
            if (s->tx_count)
                s->sent_ms = 0; /* due now */
    r->no_retransmit = !on;
}

void rel_path_switch(reliable *r, bool reliable_path)
{
    for (rel_seg *s = r->head; s; s = s->next)
        if (s->tx_count && !s->sacked)
            s->resend = true;
    r->no_retransmit = reliable_path;
}

bool rel_done(const reliable *r)
{
    return r->fin_acked && r->fin_received;
}

bool rel_idle(const reliable *r)
{
    return r->head == NULL;
}

uint32_t rel_rto(const reliable *r)
{
    return r->rto_ms;
}
