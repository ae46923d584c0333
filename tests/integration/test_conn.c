/* The public connection API end to end on loopback, in one process: the
 * real rendezvous server object and two pl_peers on one libev loop.
 *
 * Checked: unreliable datagrams (pl_conn_send_datagram / on_datagram) and
 * their limits; flow control (a paused receiver holds at most recv_window
 * bytes, the sender's queue fills and pl_conn_send says PL_ERR_AGAIN, and
 * after pl_conn_pause(c, 0) everything arrives in order and on_writable
 * fires);
 * the stream counters (pl_conn_get_stats); the same over direct-tcp. */
#include <criterion/criterion.h>
#include <ev.h>
#include <stdio.h>
#include <string.h>

#include "punchline/punchline.h"
#include "server.h"
#include "timeutil.h"

static struct ev_loop *loop;
static server *srv;
static char srv_str[64];

typedef struct side {
    pl_peer *peer;
    pl_conn *conn;
    int registered;
    int connected, closed, close_status, writable, finished;
    uint32_t msgs;           /* messages received, checked in order */
    uint64_t msg_bytes;
    uint32_t dgrams;
    int dgram_bad;
    int pause_on_connect;
} side;

static side alice, bob;

static void on_registered(pl_peer *p, int st, const char *obs, void *user)
{
    side *s = user;
    cr_assert_eq(st, 0, "registration: %s", pl_strerror(st));
    s->registered = 1;
}

static void on_connected(pl_conn *c, const pl_path_info *path, void *user)
{
    side *s = user;
    s->connected = 1;
    if (s->pause_on_connect)
        pl_conn_pause(c, 1);
}

static void on_message(pl_conn *c, const uint8_t *d, size_t len, void *user)
{
    side *s = user;
    uint32_t i;
    cr_assert_geq(len, 4);
    memcpy(&i, d, 4);
    cr_assert_eq(i, s->msgs, "message %u arrived as number %u", i, s->msgs);
    for (size_t k = 4; k < len; k++)
        cr_assert_eq(d[k], (uint8_t)(i + k), "message %u corrupted at %zu", i, k);
    s->msgs++;
    s->msg_bytes += len;
}

static void on_datagram(pl_conn *c, const uint8_t *d, size_t len, void *user)
{
    side *s = user;
    if (len < 9 || memcmp(d, "datagram ", 9) != 0)
        s->dgram_bad++;
    s->dgrams++;
}

static void on_writable(pl_conn *c, void *user)
{
    ((side *)user)->writable++;
}

static void on_peer_finished(pl_conn *c, void *user)
{
    ((side *)user)->finished = 1;
}

static void on_closed(pl_conn *c, int status, void *user)
{
    side *s = user;
    s->closed = 1;
    s->close_status = status;
    s->conn = NULL;
}

static const pl_conn_callbacks cbs = {
    .on_connected = on_connected, .on_message = on_message, .on_datagram = on_datagram,
    .on_writable = on_writable, .on_peer_finished = on_peer_finished, .on_closed = on_closed};

static void on_incoming(pl_peer *p, pl_conn *c, const char *name, void *user)
{
    side *s = user;
    s->conn = c;
    pl_conn_set_callbacks(c, &cbs, s);
}

static void start_peer(side *s, const char *name, size_t window)
{
    memset(s, 0, sizeof(*s));
    pl_peer_config cfg = {.loop = loop, .server = srv_str, .name = name,
                          .on_registered = on_registered, .on_incoming = on_incoming, .user = s,
                          .send_queue_limit = window, .recv_window = window};
    cr_assert_eq(pl_peer_new(&s->peer, &cfg), 0);
}

/* Run the loop until *flag or ms pass. */
static bool run_until(int *flag, int ms)
{
    uint64_t end = time_now_ms() + (uint64_t)ms;
    while (!*flag && time_now_ms() < end)
        ev_run(loop, EVRUN_NOWAIT), ev_sleep(0.0005);
    return *flag != 0;
}

static void run_for(int ms)
{
    uint64_t end = time_now_ms() + (uint64_t)ms;
    while (time_now_ms() < end)
        ev_run(loop, EVRUN_NOWAIT), ev_sleep(0.0005);
}

static void setup(void)
{
    loop = ev_loop_new(EVFLAG_AUTO);
    server_config cfg = {.log_level = SRV_LOG_ERROR, .register_deadline_ms = 1000};
    cr_assert_eq(netaddr_parse("127.0.0.1:0", &cfg.listen, false), 0);
    char err[256];
    srv = server_new(loop, &cfg, err, sizeof(err));
    cr_assert_not_null(srv, "server_new: %s", err);
    netaddr a;
    server_local_addr(srv, &a);
    netaddr_format(&a, srv_str, sizeof(srv_str));
}

static void teardown(void)
{
    pl_peer_free(alice.peer);
    pl_peer_free(bob.peer);
    server_free(srv);
    ev_loop_destroy(loop);
}

TestSuite(conn, .init = setup, .fini = teardown, .timeout = 60);

/* alice calls bob over `transport`; both connected on return. */
static void connect_pair(int transport, size_t window, int bob_pauses)
{
    start_peer(&alice, "alice", window);
    start_peer(&bob, "bob", window);
    bob.pause_on_connect = bob_pauses;
    cr_assert(run_until(&alice.registered, 5000) && run_until(&bob.registered, 5000));
    cr_assert_eq(pl_peer_connect(alice.peer, "bob", transport, &cbs, &alice, &alice.conn), 0);
    cr_assert(run_until(&alice.connected, 10000), "alice did not connect");
    cr_assert(run_until(&bob.connected, 10000), "bob did not connect");
}

Test(conn, datagrams_arrive_and_have_limits)
{
    start_peer(&alice, "alice", 0);
    start_peer(&bob, "bob", 0);
    cr_assert(run_until(&alice.registered, 5000) && run_until(&bob.registered, 5000));
    cr_assert_eq(pl_peer_connect(alice.peer, "bob", PL_TRANSPORT_UDP, &cbs, &alice, &alice.conn), 0);
    cr_assert_eq(pl_conn_send_datagram(alice.conn, "x", 1), PL_ERR_STATE, "before on_connected");
    cr_assert(run_until(&alice.connected, 10000) && run_until(&bob.connected, 10000));
    static uint8_t big[PL_MAX_DATAGRAM + 1];
    cr_assert_eq(pl_conn_send_datagram(alice.conn, big, sizeof(big)), PL_ERR_TOO_BIG);
    memcpy(big, "datagram ", 9);
    cr_assert_eq(pl_conn_send_datagram(alice.conn, big, PL_MAX_DATAGRAM), 0);
    for (int i = 0; i < 49; i++) {
        char d[32];
        int n = snprintf(d, sizeof(d), "datagram %d", i);
        cr_assert_eq(pl_conn_send_datagram(alice.conn, d, (size_t)n), 0);
    }
    run_for(300);
    /* loopback does not lose them, and nothing was retransmitted */
    cr_assert_eq(bob.dgrams, 50, "bob got %u of 50 datagrams", bob.dgrams);
    cr_assert_eq(bob.dgram_bad, 0);
    cr_assert_eq(bob.msgs, 0, "datagrams are not stream messages");
    pl_conn_stats st;
    pl_conn_get_stats(alice.conn, &st);
    cr_assert_eq(st.packets_retransmitted, 0);
}

/* Fill alice's queue with numbered messages (4-byte number, then bytes
 * i + k); returns how many were queued before PL_ERR_AGAIN. */
static uint32_t fill(side *s, uint32_t *next, uint32_t total, size_t len)
{
    static uint8_t m[PL_MAX_MESSAGE];
    uint32_t n = 0;
    while (*next < total) {
        memcpy(m, next, 4);
        for (size_t k = 4; k < len; k++)
            m[k] = (uint8_t)(*next + k);
        int rc = pl_conn_send(s->conn, m, len);
        if (rc == PL_ERR_AGAIN)
            break;
        cr_assert_eq(rc, 0, "pl_conn_send: %s", pl_strerror(rc));
        (*next)++;
        n++;
    }
    return n;
}

static void flow_control_over(int transport)
{
    const size_t window = 128 * 1024, len = 16 * 1024;
    const uint32_t total = 64; /* 1 MiB: 8 windows */
    connect_pair(transport, window, 1);
    uint32_t next = 0;
    fill(&alice, &next, total, len);
    cr_assert_lt(next, total, "a 128 KiB queue took 1 MiB");
    run_for(1000);
    fill(&alice, &next, total, len);
    cr_assert_eq(bob.msgs, 0, "delivered while paused");
    pl_conn_stats sa;
    pl_conn_get_stats(alice.conn, &sa);
    /* bob holds at most his window; alice at most her queue */
    cr_assert_leq(sa.bytes_sent, window, "%llu bytes acknowledged by a paused receiver with a %zu window",
                  (unsigned long long)sa.bytes_sent, window);
    cr_assert_leq(sa.queued, window);
    cr_assert_lt(next, total, "the sender never blocked");
    /* resume: everything arrives, in order; on_writable lets alice finish */
    pl_conn_pause(bob.conn, 0);
    uint64_t end = time_now_ms() + 20000;
    while (bob.msgs < total && time_now_ms() < end) {
        ev_run(loop, EVRUN_NOWAIT);
        fill(&alice, &next, total, len);
    }
    cr_assert_eq(bob.msgs, total, "bob got %u of %u after resuming", bob.msgs, total);
    cr_assert_gt(alice.writable, 0, "no on_writable");
    pl_conn_shutdown(alice.conn);
    pl_conn_shutdown(bob.conn);
    cr_assert(run_until(&alice.closed, 5000) && run_until(&bob.closed, 5000));
    cr_assert_eq(alice.close_status, 0);
    cr_assert_eq(bob.close_status, 0);
}

Test(conn, paused_receiver_bounds_memory_udp)
{
    flow_control_over(PL_TRANSPORT_UDP);
}

Test(conn, paused_receiver_bounds_memory_tcp)
{
    flow_control_over(PL_TRANSPORT_TCP);
}

Test(conn, stats_count_the_stream)
{
    connect_pair(PL_TRANSPORT_UDP, 0, 0);
    uint32_t next = 0;
    fill(&alice, &next, 100, 1000);
    cr_assert_eq(next, 100);
    uint64_t end = time_now_ms() + 5000;
    while (bob.msgs < 100 && time_now_ms() < end)
        ev_run(loop, EVRUN_NOWAIT);
    run_for(50);
    pl_conn_stats sa, sb;
    pl_conn_get_stats(alice.conn, &sa);
    pl_conn_get_stats(bob.conn, &sb);
    cr_assert_eq(bob.msgs, 100);
    cr_assert_eq(sa.bytes_sent, 100 * (1000 + 4), "acknowledged bytes count message headers");
    cr_assert_eq(sb.bytes_received, 100 * (1000 + 4));
    cr_assert_geq(sa.packets_sent, 100 * 1004 / 1200);
    cr_assert_gt(sa.rtt_us, 0);
    cr_assert_lt(sa.rtt_us, 100000, "loopback RTT of %llu µs", (unsigned long long)sa.rtt_us);
    cr_assert_geq(sa.cwnd, 2 * 1350);
    cr_assert_eq(sa.queued, 0);
}
