#include "tcp_punch.h"

#include <string.h>


#define NEVER UINT64_MAX

static uint32_t dflt(uint32_t v, uint32_t d)
{
    return v ? v : d;
}

void tcpp_init(tcp_punch *t, const tcpp_config *cfg)
{
    memset(t, 0, sizeof(*t));
    t->cfg = *cfg;
    t->cfg.timeout_ms = dflt(cfg->timeout_ms, 10000);
    t->cfg.attempt_initial_ms = dflt(cfg->attempt_initial_ms, 50);
    t->cfg.attempt_max_ms = dflt(cfg->attempt_max_ms, 200);
    t->cfg.keepalive_ms = dflt(cfg->keepalive_ms, 15000);
    t->cfg.path_timeout_ms = dflt(cfg->path_timeout_ms, 30000);
    t->selected = -1;
    t->nominating = -1;
    t->key.session_id = cfg->session_id;
    memcpy(t->key.secret, cfg->secret, WIRE_SECRET_LEN);
    t->key.role = cfg->controlling ? PUNCHLINE__ROLE__CONTROLLING : PUNCHLINE__ROLE__CONTROLLED;
    t->key.tid_seed = cfg->tid_seed;
}

bool tcpp_add_remote(tcp_punch *t, const netaddr *a)
{
    if (t->ncands >= TCPP_MAX_CANDS || !netaddr_is_usable_candidate(a))
        return false;
    for (size_t i = 0; i < t->ncands; i++)
        if (netaddr_equal(&t->cands[i].remote, a))
            return false;
    tcpp_cand *c = &t->cands[t->ncands++];
    memset(c, 0, sizeof(*c));
    c->remote = *a;
    c->next_attempt_ms = NEVER;
    return true;
}

void tcpp_start(tcp_punch *t, uint64_t now)
{
    t->state = TCPP_CHECKING;
    t->start_ms = now;
    for (size_t i = 0; i < t->ncands; i++) {
        t->cands[i].next_attempt_ms = now; /* every candidate at once */
        t->cands[i].interval_ms = t->cfg.attempt_initial_ms;
    }
}

static int new_stream(tcp_punch *t, int cand, const netaddr *remote, uint64_t now)
{
    if (t->state != TCPP_CHECKING)
        return -1; /* already selected (or over): a late duplicate */
    for (int i = 0; i < TCPP_MAX_STREAMS; i++) {
        tcpp_stream *s = &t->streams[i];
        if (s->used)
            continue;
        memset(s, 0, sizeof(*s));
        s->used = true;
        s->cand = cand;
        s->remote = *remote;
        s->established_ms = now;
        s->req_queued = true; /* check the stream at once */
        return i;
    }
    return -1;
}

int tcpp_on_connected(tcp_punch *t, int cand, uint64_t now)
{
    if (cand < 0 || (size_t)cand >= t->ncands)
        return -1;
    tcpp_cand *c = &t->cands[cand];
    c->attempt_open = false;
    int s = new_stream(t, cand, &c->remote, now);
    if (s >= 0) {
        c->established = true;
        c->next_attempt_ms = NEVER;
    }
    return s;
}

void tcpp_on_attempt_failed(tcp_punch *t, int cand, uint64_t now)
{
    if (cand >= 0 && (size_t)cand < t->ncands)
        t->cands[cand].attempt_open = false; /* retried at next_attempt_ms */
}

int tcpp_on_accepted(tcp_punch *t, const netaddr *remote, uint64_t now)
{
    int s = new_stream(t, -1, remote, now);
    if (s < 0)
        return -1;
    /* The 4-tuple is taken now: a connect to the same candidate can only fail. */
    for (size_t i = 0; i < t->ncands; i++) {
        if (netaddr_equal(&t->cands[i].remote, remote)) {
            t->cands[i].established = true;
            t->cands[i].next_attempt_ms = NEVER;
            t->streams[s].cand = (int)i;
        }
    }
    return s;
}

static void fail(tcp_punch *t, int state, const char *why)
{
    t->state = state;
    t->fail_reason = why;
    for (size_t i = 0; i < t->ncands; i++)
        t->cands[i].next_attempt_ms = NEVER;
}

void tcpp_on_stream_closed(tcp_punch *t, int stream, uint64_t now)
{
    if (stream < 0 || stream >= TCPP_MAX_STREAMS || !t->streams[stream].used)
        return;
    tcpp_stream *s = &t->streams[stream];
    s->used = false;
    if (t->state == TCPP_CONNECTED && stream == t->selected) {
        fail(t, TCPP_DEAD, "the TCP connection was closed");
        return;
    }
    if (t->nominating == stream)
        t->nominating = -1;
    if (t->state == TCPP_CHECKING && s->cand >= 0) {
        /* try that candidate again */
        tcpp_cand *c = &t->cands[s->cand];
        c->established = false;
        c->next_attempt_ms = now + c->interval_ms;
    }
}

static void become_connected(tcp_punch *t, int stream, uint64_t now)
{
    t->state = TCPP_CONNECTED;
    t->selected = stream;
    t->connected_ms = now;
    t->last_rx_ms = now;
    t->next_keepalive_ms = now + t->cfg.keepalive_ms;
    for (size_t i = 0; i < t->ncands; i++)
        t->cands[i].next_attempt_ms = NEVER;
}

bool tcpp_input(tcp_punch *t, int stream, const Punchline__Probe *m, uint64_t now)
{
    if (stream < 0 || stream >= TCPP_MAX_STREAMS || !t->streams[stream].used ||
        (t->state != TCPP_CHECKING && t->state != TCPP_CONNECTED) || !probe_authentic(&t->key, m)) {
        t->rejected++;
        return false;
    }
    tcpp_stream *s = &t->streams[stream];
    if (!m->response) {
        s->got_request = true;
        s->resp_queued = true;
        s->resp_tid = m->tid;
        s->resp_nominate = m->nominate;
        if (t->state == TCPP_CONNECTED)
            return true; /* liveness comes only from answers to our checks (RFC 7675) */
        /* A TCP stream carries both directions, and this request proves the
         * peer is at the other end: the nominated stream is selected. */
        if (m->nominate && !t->cfg.controlling) {
            s->nominated = true;
            become_connected(t, stream, now);
        }
        return true;
    }
    if (!probe_tid_ours(&t->key, t->tid_counter, m->tid, (unsigned)stream)) {
        t->rejected++;
        return false;
    }
    s->got_response = true;
    if (t->state == TCPP_CONNECTED) {
        if (stream == t->selected)
            t->last_rx_ms = now;
        return true;
    }
    if (t->cfg.controlling) {
        if (t->nominating < 0) {
            t->nominating = stream;
            s->nominated = true;
            s->req_queued = true; /* the nominating request */
        } else if (t->nominating == stream && m->nominate) {
            become_connected(t, stream, now);
        }
    }
    return true;
}

void tcpp_note_rx(tcp_punch *t, int stream, uint64_t now)
{
    if (t->state == TCPP_CONNECTED && stream == t->selected)
        t->last_rx_ms = now;
}

void tcpp_tick(tcp_punch *t, uint64_t now)
{
    if (t->state == TCPP_CHECKING && now >= t->start_ms + t->cfg.timeout_ms) {
        bool any = false;
        for (int i = 0; i < TCPP_MAX_STREAMS; i++)
            any = any || t->streams[i].used;
        fail(t, TCPP_FAILED, any ? "TCP connected but the check was never answered"
                                 : "no TCP connection could be established");
        return;
    }
    if (t->state != TCPP_CONNECTED)
        return;
    if (now >= t->last_rx_ms + t->cfg.path_timeout_ms) {
        fail(t, TCPP_DEAD, "the TCP path stopped answering");
        return;
    }
    if (now >= t->next_keepalive_ms) {
        t->streams[t->selected].req_queued = true;
        t->next_keepalive_ms = now + t->cfg.keepalive_ms;
    }
}

bool tcpp_poll_action(tcp_punch *t, uint64_t now, tcpp_action *out)
{
    memset(out, 0, sizeof(*out));
    if (t->state == TCPP_CHECKING) {
        for (size_t i = 0; i < t->ncands; i++) {
            tcpp_cand *c = &t->cands[i];
            if (c->established || c->next_attempt_ms > now)
                continue;
            c->attempts++;
            c->attempt_open = true;
            c->next_attempt_ms = now + c->interval_ms;
            c->interval_ms = c->interval_ms * 2 > t->cfg.attempt_max_ms ? t->cfg.attempt_max_ms
                                                                         : c->interval_ms * 2;
            out->kind = TCPP_ACT_CONNECT;
            out->cand = (int)i;
            return true;
        }
        return false;
    }
    /* Selected or over: stop attempts, close every other stream. */
    for (size_t i = 0; i < t->ncands; i++) {
        if (t->cands[i].attempt_open) {
            t->cands[i].attempt_open = false;
            out->kind = TCPP_ACT_ABORT_ATTEMPT;
            out->cand = (int)i;
            return true;
        }
    }
    for (int i = 0; i < TCPP_MAX_STREAMS; i++) {
        tcpp_stream *s = &t->streams[i];
        if (!s->used || s->closing || (t->state == TCPP_CONNECTED && i == t->selected))
            continue;
        s->closing = true;
        s->used = false;
        out->kind = TCPP_ACT_CLOSE_STREAM;
        out->stream = i;
        return true;
    }
    return false;
}

size_t tcpp_poll_transmit(tcp_punch *t, uint64_t now, int *stream, uint8_t *buf, size_t cap)
{
    if (t->state != TCPP_CHECKING && t->state != TCPP_CONNECTED)
        return 0;
    for (int i = 0; i < TCPP_MAX_STREAMS; i++) {
        tcpp_stream *s = &t->streams[i];
        if (!s->used || s->closing)
            continue;
        *stream = i;
        if (s->resp_queued) {
            s->resp_queued = false;
            return probe_encode(&t->key, s->resp_tid, true, s->resp_nominate, &s->remote, false,
                                buf, cap);
        }
        if (s->req_queued) {
            s->req_queued = false;
            t->tid_counter++;
            s->last_tid = probe_tid(&t->key, t->tid_counter, (unsigned)i);
            bool nominate = t->cfg.controlling && t->state == TCPP_CHECKING && t->nominating == i;
            return probe_encode(&t->key, s->last_tid, false, nominate, NULL, false, buf, cap);
        }
    }
    return 0;
}

static bool work_queued(const tcp_punch *t)
{
    for (int i = 0; i < TCPP_MAX_STREAMS; i++) {
        const tcpp_stream *s = &t->streams[i];
        if (s->used && !s->closing && (s->req_queued || s->resp_queued))
            return true;
        if (t->state != TCPP_CHECKING && s->used && !s->closing &&
            !(t->state == TCPP_CONNECTED && i == t->selected))
            return true;
    }
    if (t->state != TCPP_CHECKING)
        for (size_t i = 0; i < t->ncands; i++)
            if (t->cands[i].attempt_open)
                return true;
    return false;
}

uint64_t tcpp_next_deadline(const tcp_punch *t)
{
    if (t->state == TCPP_IDLE)
        return NEVER;
    if (work_queued(t))
        return 0;
    if (t->state == TCPP_CHECKING) {
        uint64_t d = t->start_ms + t->cfg.timeout_ms;
        for (size_t i = 0; i < t->ncands; i++)
            if (!t->cands[i].established && t->cands[i].next_attempt_ms < d)
                d = t->cands[i].next_attempt_ms;
        return d;
    }
    if (t->state == TCPP_CONNECTED) {
        uint64_t d = t->last_rx_ms + t->cfg.path_timeout_ms;
        return t->next_keepalive_ms < d ? t->next_keepalive_ms : d;
    }
    return NEVER;
}

int tcpp_state(const tcp_punch *t)
{
    return t->state;
}

int tcpp_selected(const tcp_punch *t)
{
    return t->state == TCPP_CONNECTED ? t->selected : -1;
}
