/* punchline-bench-rendezvous: the rendezvous server core (rendezvous_core,
 * the same code punchline-rendezvous runs) with server_config.max_conns
 * settable.  punchline-rendezvous has no flag for it and keeps the default
 * of 15000 open control connections, so bench/peer_memory.sh needs this for
 * more peers than that.  Everything else as punchline-rendezvous's defaults
 * (relay on, same relay limits, no TLS, no tokens).
 *
 *   punchline-bench-rendezvous ADDR:PORT MAX_PEERS MAX_CONNS [EXPIRY_S [KEEPALIVE_S]]
 *
 * Logs at level warn to stderr; SIGUSR1 logs the counters (peers registered,
 * connections); stops on SIGINT/SIGTERM. */
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "server.h"

static void on_usr1(struct ev_loop *loop, ev_signal *w, int revents)
{
    server_log_stats(w->data);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "Usage: punchline-bench-rendezvous ADDR:PORT MAX_PEERS MAX_CONNS "
                        "[EXPIRY_S [KEEPALIVE_S]]\n");
        return 2;
    }
    server_config cfg = {.log_level = SRV_LOG_WARN};
    /* punchline-rendezvous's defaults (rendezvous/main.c) */
    cfg.relay.max_sessions = 1000;
    cfg.relay.session_bytes = 4ULL << 30;
    cfg.relay.session_rate = 16ULL << 20;
    cfg.relay.global_rate = 100ULL << 20;
    cfg.relay.idle_ms = 60000;
    if (netaddr_parse(argv[1], &cfg.listen, false) != 0) {
        fprintf(stderr, "punchline-bench-rendezvous: bad address '%s'\n", argv[1]);
        return 2;
    }
    cfg.max_peers = (size_t)atol(argv[2]);
    cfg.max_conns = (size_t)atol(argv[3]);
    if (argc > 4)
        cfg.expiry_ms = (uint32_t)atoi(argv[4]) * 1000;
    if (argc > 5)
        cfg.keepalive_ms = (uint32_t)atoi(argv[5]) * 1000;
    signal(SIGPIPE, SIG_IGN);
    struct ev_loop *loop = EV_DEFAULT;
    char err[256];
    server *s = server_new(loop, &cfg, err, sizeof(err));
    if (!s) {
        fprintf(stderr, "punchline-bench-rendezvous: %s\n", err);
        return 1;
    }
    ev_signal sint, sterm, susr1;
    ev_signal_init(&susr1, on_usr1, SIGUSR1);
    susr1.data = s;
    ev_signal_start(loop, &susr1);
    ev_signal_init(&sint, on_signal, SIGINT);
    ev_signal_init(&sterm, on_signal, SIGTERM);
    ev_signal_start(loop, &sint);
    ev_signal_start(loop, &sterm);
    ev_run(loop, 0);
    server_free(s);
    ev_loop_destroy(loop);
    return 0;
}
