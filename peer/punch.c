#include "punch.h"

#include <string.h>


#define NEVER UINT64_MAX

static uint32_t dflt(uint32_t v, uint32_t d)
{
    return v ? v : d;
}

void punch_init(punch *p, const punch_config *cfg)
{
    memset(p, 0, sizeof(*p));
    p->cfg = *cfg;
    p->cfg.timeout_ms = dflt(cfg->timeout_ms, 10000);
    p->cfg.keepalive_ms = dflt(cfg->keepalive_ms, 15000);
    p->cfg.path_timeout_ms = dflt(cfg->path_timeout_ms, 30000);
    p->cfg.rto_initial_ms = dflt(cfg->rto_initial_ms, 50);
    p->cfg.rto_max_ms = dflt(cfg->rto_max_ms, 500);
    p->nominated = -1;
    p->selected = -1;
    p->state = PUNCH_IDLE;
    p->key.session_id = cfg->session_id;
    memcpy(p->key.secret, cfg->secret, WIRE_SECRET_LEN);
    p->key.role = cfg->controlling ? PUNCHLINE__ROLE__CONTROLLING : PUNCHLINE__ROLE__CONTROLLED;
    p->key.tid_seed = cfg->tid_seed;
}

/* The consent/keepalive interval on the selected pair. */
static uint32_t keepalive_interval(const punch *p)
{
    return p->busy && p->cfg.keepalive_ms > PUNCH_BUSY_KEEPALIVE_MS ? PUNCH_BUSY_KEEPALIVE_MS
                                                                    : p->cfg.keepalive_ms;
}

static int find_pair(const punch *p, const netaddr *a)
{
    for (size_t i = 0; i < p->npairs; i++)
        if (netaddr_equal(&p->pairs[i].remote, a))
            return (int)i;
    return -1;
}

bool punch_add_remote(punch *p, const netaddr *a, int kind)
{
    if (p->npairs >= PUNCH_MAX_PAIRS || !netaddr_is_usable_candidate(a) || find_pair(p, a) >= 0)
        return false;
    punch_pair *pp = &p->pairs[p->npairs++];
    memset(pp, 0, sizeof(*pp));
    pp->remote = *a;
    pp->kind = kind;
    pp->interval_ms = p->cfg.rto_initial_ms;
    /* A pair added while checking is probed at once (a triggered check). */
    pp->next_send_ms = p->state == PUNCH_CHECKING ? 0 : NEVER;
    return true;
}

void punch_start(punch *p, uint64_t now)
{
    p->state = PUNCH_CHECKING;
    p->start_ms = now;
    for (size_t i = 0; i < p->npairs; i++)
        p->pairs[i].next_send_ms = now; /* every candidate at once */
}

static void queue_response(punch *p, const netaddr *to, uint64_t tid, bool nominate)
{
    if (p->nresp >= PUNCH_MAX_RESPONSES)
        return; /* the requester retransmits */
    p->resp[p->nresp].to = *to;
    p->resp[p->nresp].tid = tid;
    p->resp[p->nresp].nominate = nominate;
    p->nresp++;
}

static void become_connected(punch *p, int idx, uint64_t now)
{
    p->state = PUNCH_CONNECTED;
    p->selected = idx;
    p->connected_ms = now;
    p->last_rx_ms = now;
    for (size_t i = 0; i < p->npairs; i++)
        p->pairs[i].next_send_ms = NEVER;
    p->pairs[idx].interval_ms = keepalive_interval(p);
    p->pairs[idx].next_send_ms = now + p->pairs[idx].interval_ms;
}

static void start_nominating(punch *p, int idx, uint64_t now)
{
    p->nominated = idx;
    /* Stop checking the other pairs; hammer the nominated one. */
    for (size_t i = 0; i < p->npairs; i++)
        p->pairs[i].next_send_ms = NEVER;
    p->pairs[idx].next_send_ms = now;
    p->pairs[idx].interval_ms = p->cfg.rto_initial_ms;
}

void punch_set_busy(punch *p, bool busy, uint64_t now)
{
    if (p->busy == busy)
        return;
    p->busy = busy;
    if (p->state != PUNCH_CONNECTED || !busy)
        return; /* back to keepalive_ms with the next answer */
    punch_pair *pp = &p->pairs[p->selected];
    uint32_t ka = keepalive_interval(p);
    if (pp->interval_ms > ka)
        pp->interval_ms = ka;
    uint64_t t = p->last_rx_ms + ka > now ? p->last_rx_ms + ka : now;
    if (pp->next_send_ms > t)
        pp->next_send_ms = t;
}

void punch_suspect(punch *p, uint64_t now)
{
    if (p->state != PUNCH_CONNECTED)
        return;
    if (!p->suspect_since)
        p->suspect_since = now ? now : 1;
    punch_pair *pp = &p->pairs[p->selected];
    if (pp->interval_ms > PUNCH_SUSPECT_MS)
        pp->interval_ms = PUNCH_SUSPECT_MS;
    uint64_t t = pp->last_req_sent_ms + PUNCH_SUSPECT_MS > now ? pp->last_req_sent_ms + PUNCH_SUSPECT_MS
                                                               : now;
    if (pp->next_send_ms > t)
        pp->next_send_ms = t;
}

bool punch_stalled(const punch *p)
{
    return p->state == PUNCH_CONNECTED && p->stalled;
}

/* The pair the peer now checks us from, if it answered our check since we
 * became suspect (the peer's NAT gave it a new mapping). */
static int migration_target(const punch *p)
{
    int best = -1;
    for (size_t i = 0; i < p->npairs; i++) {
        const punch_pair *pp = &p->pairs[i];
        if ((int)i == p->selected || pp->last_resp_ms < p->suspect_since ||
            pp->last_req_rx_ms < p->suspect_since)
            continue;
        if (best < 0 || pp->last_resp_ms > p->pairs[best].last_resp_ms)
            best = (int)i;
    }
    return best;
}

/* Suspect, the selected pair silent for PUNCH_MIGRATE_MS, and the peer
 * reachable both ways at another address: select that one. */
static void maybe_migrate(punch *p, uint64_t now)
{
    if (p->state != PUNCH_CONNECTED || !p->suspect_since || now < p->suspect_since + PUNCH_MIGRATE_MS)
        return;
    int to = migration_target(p);
    if (to < 0)
        return;
    p->pairs[p->selected].next_send_ms = NEVER;
    p->pairs[p->selected].interval_ms = p->cfg.rto_initial_ms;
    p->selected = to;
    p->last_rx_ms = p->pairs[to].last_resp_ms;
    p->suspect_since = 0;
    p->stalled = false;
    p->migrations++;
    p->pairs[to].interval_ms = keepalive_interval(p);
    p->pairs[to].next_send_ms = now + p->pairs[to].interval_ms;
}

bool punch_input(punch *p, const Punchline__Probe *m, const netaddr *from, uint64_t now)
{
    if (p->state == PUNCH_IDLE || p->state == PUNCH_FAILED || p->state == PUNCH_DEAD ||
        !probe_authentic(&p->key, m)) {
        p->rejected++;
        return false;
    }
    int idx = find_pair(p, from);
    if (!m->response) {
        if (idx < 0) {
            /* Peer-reflexive: the peer reached us from an address it did not
             * know it had (symmetric NAT on its side).  Learn it. */
            if (!punch_add_remote(p, from, PUNCHLINE__CANDIDATE_KIND__PEER_REFLEXIVE))
                return false;
            idx = (int)p->npairs - 1;
        }
        p->pairs[idx].got_request = true;
        p->pairs[idx].last_req_rx_ms = now;
        queue_response(p, from, m->tid, m->nominate);
        if (p->state == PUNCH_CONNECTED) {
            /* Liveness comes only from answers to our checks (RFC 7675).
             * The peer checking us from an address we do not use means its
             * NAT mapping moved (lost and made again on another port), or
             * this is a late check from the punching phase: check that
             * address (at most every PUNCH_SUSPECT_MS), and the selected
             * pair right away; if only the new address answers, we move
             * to it (maybe_migrate), as QUIC does after validating a new
             * peer address (RFC 9000 s9). */
            if (idx != p->selected) {
                punch_pair *np = &p->pairs[idx];
                if (np->next_send_ms == NEVER &&
                    (!np->last_req_sent_ms || now >= np->last_req_sent_ms + PUNCH_SUSPECT_MS))
                    np->next_send_ms = now;
                punch_suspect(p, now);
            }
            return true;
        }
        /* Triggered check (RFC 8445 s7.3.1.4): their request got through,
         * so our NAT now lets this pair in and theirs has an outbound
         * entry: check it now instead of waiting out our retransmission
         * timer (our first check was likely dropped by their NAT). */
        punch_pair *tp = &p->pairs[idx];
        if (!tp->got_response && tp->next_send_ms > now && tp->next_send_ms != NEVER &&
            (p->nominated < 0 || p->nominated == idx))
            tp->next_send_ms = now;
        if (m->nominate && !p->cfg.controlling) {
            p->nominated = idx;
            if (p->pairs[idx].got_response)
                become_connected(p, idx, now);
            else
                p->pairs[idx].next_send_ms = now; /* triggered check */
        }
        return true;
    }
    /* A response: must answer a request we sent on that very pair. */
    if (idx < 0 || !probe_tid_ours(&p->key, p->tid_counter, m->tid, (unsigned)idx)) {
        p->rejected++;
        return false;
    }
    punch_pair *pp = &p->pairs[idx];
    pp->got_response = true;
    pp->last_resp_ms = now;
    if (m->mapped)
        netaddr_from_endpoint(m->mapped, &p->mapped);
    if (p->state == PUNCH_CONNECTED) {
        if (idx == p->selected) {
            p->last_rx_ms = now;
            p->answers++;
            p->suspect_since = 0;
            p->stalled = false;
            pp->interval_ms = keepalive_interval(p);
            pp->next_send_ms = now + pp->interval_ms;
        } else {
            maybe_migrate(p, now);
        }
        return true;
    }
    if (p->cfg.controlling) {
        if (p->nominated < 0)
            start_nominating(p, idx, now);
        else if (p->nominated == idx && m->nominate)
            become_connected(p, idx, now);
    } else if (p->nominated == idx) {
        become_connected(p, idx, now);
    }
    return true;
}

bool punch_data_seen(punch *p, const netaddr *from, uint64_t now)
{
    if (p->state == PUNCH_CHECKING && !p->cfg.controlling && p->nominated >= 0 &&
        netaddr_equal(&p->pairs[p->nominated].remote, from))
        become_connected(p, p->nominated, now);
    return p->state == PUNCH_CONNECTED && netaddr_equal(&p->pairs[p->selected].remote, from);
}

void punch_tick(punch *p, uint64_t now)
{
    if (p->state == PUNCH_CHECKING && now >= p->start_ms + p->cfg.timeout_ms) {
        p->state = PUNCH_FAILED;
        p->nresp = 0;
        return;
    }
    if (p->state != PUNCH_CONNECTED)
        return;
    uint64_t silent = now - p->last_rx_ms;
    if (silent >= p->cfg.path_timeout_ms) {
        p->state = PUNCH_DEAD;
        p->nresp = 0;
        return;
    }
    maybe_migrate(p, now);
    if (p->suspect_since && now >= p->suspect_since + PUNCH_STALL_MS)
        p->stalled = true;
    /* Consent freshness (RFC 7675 spirit): a keepalive went unanswered, so
     * check once a second until an answer comes or the path times out.
     * On a busy path that is a reason for suspicion: the side that only
     * receives (and has nothing in flight to miss) then stalls too, a few
     * seconds after the sending side, and both move to another path. */
    punch_pair *pp = &p->pairs[p->selected];
    if (silent > keepalive_interval(p) + 1000 && pp->interval_ms > 1000) {
        pp->interval_ms = 1000;
        if (pp->next_send_ms > now + 1000)
            pp->next_send_ms = now + 1000;
        if (p->busy)
            punch_suspect(p, now);
    }
}

size_t punch_poll_transmit(punch *p, uint64_t now, netaddr *to, uint8_t *buf, size_t cap)
{
    if (p->nresp) {
        punch_response r = p->resp[0];
        memmove(p->resp, p->resp + 1, (p->nresp - 1) * sizeof(p->resp[0]));
        p->nresp--;
        *to = r.to;
        return probe_encode(&p->key, r.tid, true, r.nominate, &r.to, true, buf, cap);
    }
    if (p->state != PUNCH_CHECKING && p->state != PUNCH_CONNECTED)
        return 0;
    for (size_t i = 0; i < p->npairs; i++) {
        punch_pair *pp = &p->pairs[i];
        if (pp->next_send_ms > now)
            continue;
        p->tid_counter++;
        pp->last_tid = probe_tid(&p->key, p->tid_counter, (unsigned)i);
        pp->last_req_sent_ms = now;
        if (p->state == PUNCH_CHECKING) {
            pp->next_send_ms = now + pp->interval_ms;
            pp->interval_ms = pp->interval_ms * 2 > p->cfg.rto_max_ms ? p->cfg.rto_max_ms
                                                                       : pp->interval_ms * 2;
        } else if ((int)i == p->selected) {
            pp->next_send_ms = now + pp->interval_ms;
        } else {
            pp->next_send_ms = NEVER; /* a triggered check; the peer's next request asks again */
        }
        bool nominate = p->cfg.controlling && p->state == PUNCH_CHECKING && p->nominated == (int)i;
        *to = pp->remote;
        return probe_encode(&p->key, pp->last_tid, false, nominate, NULL, true, buf, cap);
    }
    return 0;
}

uint64_t punch_next_deadline(const punch *p)
{
    if (p->nresp)
        return 0;
    uint64_t d = NEVER;
    if (p->state == PUNCH_CHECKING)
        d = p->start_ms + p->cfg.timeout_ms;
    else if (p->state == PUNCH_CONNECTED)
        d = p->last_rx_ms + p->cfg.path_timeout_ms;
    else
        return NEVER;
    for (size_t i = 0; i < p->npairs; i++)
        if (p->pairs[i].next_send_ms < d)
            d = p->pairs[i].next_send_ms;
    /* when punch_tick() must switch to fast consent checks */
    if (p->state == PUNCH_CONNECTED && p->pairs[p->selected].interval_ms > 1000 &&
        p->last_rx_ms + keepalive_interval(p) + 1001 < d)
        d = p->last_rx_ms + keepalive_interval(p) + 1001;
    /* when a suspect pair may migrate (a target is known) or stalls */
    if (p->state == PUNCH_CONNECTED && p->suspect_since) {
        if (migration_target(p) >= 0 && p->suspect_since + PUNCH_MIGRATE_MS < d)
            d = p->suspect_since + PUNCH_MIGRATE_MS;
        if (!p->stalled && p->suspect_since + PUNCH_STALL_MS < d)
            d = p->suspect_since + PUNCH_STALL_MS;
    }
    return d;
}

int punch_state(const punch *p)
{
    return p->state;
}

const netaddr *punch_remote(const punch *p)
{
    return p->state == PUNCH_CONNECTED ? &p->pairs[p->selected].remote : NULL;
}
