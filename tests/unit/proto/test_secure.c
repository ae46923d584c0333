#define _GNU_SOURCE
/* The DTLS channel core between two identities over an in-memory link with
 * fake time: handshake, data both ways, wrong key, no certificate, loss. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"
#include "secure.h"

#define QMAX 64

typedef struct side {
    secure *s;
    struct side *other;
    uint8_t q[QMAX][1500]; /* datagrams in flight towards `other` */
    size_t qlen[QMAX];
    size_t nq;
    uint8_t got[8192];     /* application bytes received */
    size_t ngot;
    int drop_next;         /* drop this many of our next datagrams */
    size_t sent;
} side;

static void on_tx(void *u, const uint8_t *d, size_t n)
{
    side *sd = u;
    sd->sent++;
    if (sd->drop_next > 0) {
        sd->drop_next--;
        return;
    }
    cr_assert(sd->nq < QMAX && n <= 1500);
    memcpy(sd->q[sd->nq], d, n);
    sd->qlen[sd->nq++] = n;
}

static void on_plain(void *u, const uint8_t *d, size_t n)
{
    side *sd = u;
    cr_assert(sd->ngot + n <= sizeof(sd->got));
    memcpy(sd->got + sd->ngot, d, n);
    sd->ngot += n;
}

/* Deliver what each side has queued to the other. */
static void deliver(side *a, uint64_t now)
{
    size_t n = a->nq;
    uint8_t(*q)[1500] = malloc(sizeof(a->q));
    size_t ql[QMAX];
    memcpy(q, a->q, sizeof(a->q));
    memcpy(ql, a->qlen, sizeof(ql));
    a->nq = 0;
    for (size_t i = 0; i < n; i++)
        secure_input(a->other->s, q[i], ql[i], now);
    free(q);
}

static identity *ida, *idb, *idc;

static void setup(void)
{
    ida = identity_ephemeral();
    idb = identity_ephemeral();
    idc = identity_ephemeral();
    cr_assert(ida && idb && idc);
}

static void teardown(void)
{
    identity_free(ida);
    identity_free(idb);
    identity_free(idc);
}

/* a = client with key ka expecting hash of eb; b = server likewise. */
static void make(side *a, side *b, const identity *ka, const identity *kb, const identity *a_expects,
                 const identity *b_expects)
{
    memset(a, 0, sizeof(*a));
    memset(b, 0, sizeof(*b));
    a->other = b;
    b->other = a;
    secure_callbacks cb = {.transmit = on_tx, .plain = on_plain};
    secure_config ca = {.self = ka, .client = true};
    memcpy(ca.peer_hash, identity_hash(a_expects), ID_HASH_LEN);
    secure_config cbf = {.self = kb, .client = false};
    memcpy(cbf.peer_hash, identity_hash(b_expects), ID_HASH_LEN);
    a->s = secure_new(&ca, &cb, a);
    b->s = secure_new(&cbf, &cb, b);
    cr_assert(a->s && b->s);
}

/* Run until both settle or fake time passes limit_ms. */
static uint64_t run(side *a, side *b, uint64_t now, uint64_t limit_ms)
{
    uint64_t end = now + limit_ms;
    secure_start(a->s, now);
    while (now < end) {
        deliver(a, now);
        deliver(b, now);
        if (!a->nq && !b->nq) {
            if (secure_state(a->s) != SEC_HANDSHAKE && secure_state(b->s) != SEC_HANDSHAKE)
                break;
            uint64_t d = secure_next_deadline(a->s), e = secure_next_deadline(b->s);
            uint64_t t = d < e ? d : e;
            if (t == UINT64_MAX)
                break;
            now = t > now ? t : now + 1;
            secure_tick(a->s, now);
            secure_tick(b->s, now);
        }
    }
    return now;
}

static void destroy(side *a, side *b)
{
    secure_free(a->s);
    secure_free(b->s);
}

TestSuite(secure, .init = setup, .fini = teardown);

Test(secure, server_refuses_client_without_certificate)
{
    static side a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    a.other = &b;
    b.other = &a;
    secure_callbacks cb = {.transmit = on_tx, .plain = on_plain};
    secure_config ca = {.self = ida, .client = true, .no_certificate = true};
    memcpy(ca.peer_hash, identity_hash(idb), ID_HASH_LEN);
    secure_config cbf = {.self = idb, .client = false};
    memcpy(cbf.peer_hash, identity_hash(ida), ID_HASH_LEN);
    a.s = secure_new(&ca, &cb, &a);
    b.s = secure_new(&cbf, &cb, &b);
    cr_assert(a.s && b.s);
    run(&a, &b, 0, 20000);
    cr_assert_eq(secure_state(b.s), SEC_FAILED);
    cr_assert(secure_auth_failed(b.s), "%s", secure_error(b.s));
    cr_assert(strstr(secure_error(b.s), "no valid certificate"), "%s", secure_error(b.s));
    cr_assert_neq(secure_state(a.s), SEC_OPEN);
    cr_assert_eq(b.ngot, 0);
    destroy(&a, &b);
}

Test(secure, handshake_and_data_both_ways)
{
    static side a, b;
    make(&a, &b, ida, idb, idb, ida);
    run(&a, &b, 1000, 5000);
    cr_assert_eq(secure_state(a.s), SEC_OPEN, "client: %s", secure_error(a.s));
    cr_assert_eq(secure_state(b.s), SEC_OPEN, "server: %s", secure_error(b.s));
    cr_assert_str_neq(secure_suite(a.s), "");
    cr_assert_eq(secure_write(a.s, (const uint8_t *)"hello bob", 9, 1001), 0);
    cr_assert_eq(secure_write(b.s, (const uint8_t *)"hi alice", 8, 1001), 0);
    /* the plaintext never appears in what crosses the link */
    for (size_t i = 0; i < a.nq; i++)
        cr_assert_null(memmem(a.q[i], a.qlen[i], "hello bob", 9));
    deliver(&a, 1002);
    deliver(&b, 1002);
    cr_assert_eq(b.ngot, 9);
    cr_assert_arr_eq(b.got, "hello bob", 9);
    cr_assert_eq(a.ngot, 8);
    cr_assert_arr_eq(a.got, "hi alice", 8);
    destroy(&a, &b);
}

Test(secure, client_refuses_wrong_server_key)
{
    static side a, b;
    make(&a, &b, ida, idc, idb, ida); /* a expects b but talks to c */
    run(&a, &b, 0, 20000);
    cr_assert_eq(secure_state(a.s), SEC_FAILED);
    cr_assert(secure_auth_failed(a.s), "%s", secure_error(a.s));
    cr_assert_neq(secure_state(b.s), SEC_OPEN);
    cr_assert_eq(secure_write(b.s, (const uint8_t *)"x", 1, 1), -1);
    destroy(&a, &b);
}

Test(secure, server_refuses_wrong_client_key)
{
    static side a, b;
    make(&a, &b, idc, idb, idb, ida); /* b expects a but c connects */
    run(&a, &b, 0, 20000);
    cr_assert_eq(secure_state(b.s), SEC_FAILED);
    cr_assert(secure_auth_failed(b.s), "%s", secure_error(b.s));
    cr_assert_neq(secure_state(a.s), SEC_OPEN);
    destroy(&a, &b);
}

Test(secure, handshake_survives_lost_flights)
{
    static side a, b;
    make(&a, &b, ida, idb, idb, ida);
    a.drop_next = 1; /* ClientHello lost */
    b.drop_next = 1; /* first server flight datagram lost */
    uint64_t t = run(&a, &b, 0, 20000);
    cr_assert_eq(secure_state(a.s), SEC_OPEN, "%s", secure_error(a.s));
    cr_assert_eq(secure_state(b.s), SEC_OPEN, "%s", secure_error(b.s));
    cr_assert_geq(t, 250, "a retransmission timer had to fire");
    destroy(&a, &b);
}

Test(secure, handshake_times_out_without_answer)
{
    static side a, b;
    make(&a, &b, ida, idb, idb, ida);
    a.drop_next = 1000;
    uint64_t t = run(&a, &b, 0, 60000);
    cr_assert_eq(secure_state(a.s), SEC_FAILED);
    cr_assert_str_eq(secure_error(a.s), "encryption handshake timed out");
    cr_assert_lt(t, 30000);
    cr_assert_gt(a.sent, 3, "retransmitted before giving up");
    destroy(&a, &b);
}

Test(secure, garbage_and_tampered_records_are_dropped)
{
    static side a, b;
    make(&a, &b, ida, idb, idb, ida);
    run(&a, &b, 0, 5000);
    cr_assert_eq(secure_state(b.s), SEC_OPEN);
    cr_assert_eq(secure_write(a.s, (const uint8_t *)"abcdef", 6, 10), 0);
    cr_assert_eq(a.nq, 1);
    uint8_t rec[1500];
    size_t n = a.qlen[0];
    memcpy(rec, a.q[0], n);
    rec[n - 1] ^= 1; /* flip a tag bit */
    secure_input(b.s, rec, n, 11);
    cr_assert_eq(b.ngot, 0);
    secure_input(b.s, (const uint8_t *)"\x17\xfe\xfd garbage", 12, 11);
    cr_assert_eq(b.ngot, 0);
    cr_assert_eq(secure_state(b.s), SEC_OPEN);
    deliver(&a, 12); /* the genuine record still opens */
    cr_assert_eq(b.ngot, 6);
    /* a replay of it is dropped */
    secure_input(b.s, a.q[0], a.qlen[0], 13);
    cr_assert_eq(b.ngot, 6);
    destroy(&a, &b);
}

/* SECURE_MAX_PLAIN is reachable at the default MTU, and one byte more is
 * refused rather than truncated. */
Test(secure, largest_record_fits_the_mtu)
{
    static side a, b;
    make(&a, &b, ida, idb, idb, ida);
    run(&a, &b, 0, 5000);
    cr_assert_eq(secure_state(a.s), SEC_OPEN);
    static uint8_t big[SECURE_MAX_PLAIN + 1];
    memset(big, 'x', sizeof(big));
    cr_assert_eq(secure_write(a.s, big, SECURE_MAX_PLAIN, 1), 0);
    cr_assert_eq(a.nq, 1);
    cr_assert_leq(a.qlen[0], SECURE_MTU);
    /* SECURE_OVERHEAD is AES-GCM's (explicit nonce 8 + tag 16 + header 13);
     * ChaCha20-Poly1305, preferred, has no explicit nonce: 29 */
    cr_assert(a.qlen[0] == SECURE_MAX_PLAIN + SECURE_OVERHEAD ||
                  a.qlen[0] == SECURE_MAX_PLAIN + SECURE_OVERHEAD - 8,
              "%zu-byte record", (size_t)a.qlen[0]);
    cr_assert_eq(secure_write(a.s, big, SECURE_MAX_PLAIN + 1, 1), -1);
    deliver(&a, 2);
    cr_assert_eq(b.ngot, SECURE_MAX_PLAIN);
    destroy(&a, &b);
}

/* Why handshake records need the session MAC one layer up (wire.h
 * wire_secure_accept): the DTLS core alone cannot tell a spoofed plaintext
 * fatal alert from the peer's during the handshake. */
Test(secure, spoofed_alert_ends_an_unprotected_handshake)
{
    static side a, b;
    make(&a, &b, ida, idb, idb, ida);
    secure_start(a.s, 0);
    cr_assert_gt(a.nq, 0, "ClientHello sent");
    /* epoch 0, seq 0: fatal (2) handshake_failure (40) */
    static const uint8_t alert[] = {21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 40};
    secure_input(a.s, alert, sizeof(alert), 1);
    cr_assert_eq(secure_state(a.s), SEC_FAILED);
    cr_assert(!secure_auth_failed(a.s), "handshake_failure is not an authentication verdict: %s",
              secure_error(a.s));
    destroy(&a, &b);
}
