/* punchline-rendezvous: the rendezvous server binary. */
#include <ev.h>
#include <getopt.h>
#include <stdbool.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "identity.h"
#include "names.h"
#include "punchline/punchline.h"
#include "server.h"
#include "tls_stream.h"
#include "token.h"
#include "wire.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: punchline-rendezvous [OPTIONS]\n"
            "\n"
            "Rendezvous server for punchline peers: registers peer names, observes each\n"
            "peer's public (server-reflexive) endpoint, and starts hole punching between\n"
            "two peers.  TCP and UDP share one port.\n"
            "\n"
            "Options:\n"
            "  -l, --listen ADDR:PORT   address to listen on (default 0.0.0.0:7350)\n"
            "      --log-level LEVEL    error, warn, info (default) or debug; logs go to stderr\n"
            "      --expiry SEC         drop peers silent for SEC seconds (default 60)\n"
            "      --keepalive SEC      keepalive interval told to peers (default 15)\n"
            "      --max-peers N        registered peers at most (default 10000)\n"
            "      --max-conns N        open TCP connections at most, registered or not\n"
            "                           (default 15000, less if the open-file limit is lower)\n"
            "      --register-timeout SEC\n"
            "                           a new connection must register (or open a relay)\n"
            "                           within SEC seconds (default 10)\n"
            "      --connect-rate N     connect requests per second per peer (default 5,\n"
            "                           bursts of 4x); more get RATE_LIMITED\n"
            "      --per-ip-pending N   unregistered connections one source address (IPv6:\n"
            "                           one /64) may hold (default 64)\n"
            "      --per-ip-rate N      new connections per second per source (default 50,\n"
            "                           bursts of twice that); registered peers never count\n"
            "\n"
            "Relay (for pairs without a direct path; docs/PROTOCOL.md section 5):\n"
            "      --no-relay           do not relay; peers can only connect directly\n"
            "      --relay-sessions N   relayed sessions at once (default 1000)\n"
            "      --relay-session-bytes SIZE\n"
            "                           bytes relayed per session, then it ends (default 4G;\n"
            "                           0 = no limit)\n"
            "      --relay-session-rate SIZE\n"
            "                           bytes per second per session (default 16M; 0 = no limit)\n"
            "      --relay-bandwidth SIZE\n"
            "                           bytes per second over all sessions (default 100M;\n"
            "                           0 = no limit)\n"
            "      --relay-idle SEC     end a session after SEC s without relayed data\n"
            "                           (default 60; peers keep a relay path alive every 15 s)\n"
            "      --relay-unused SEC   with the table full, a session that relayed nothing in\n"
            "                           SEC s since it was made gives way to a new one\n"
            "                           (default 10; peers use theirs within a second)\n"
            "  SIZE is a number with an optional K, M or G suffix (powers of 1024).\n"
            "\n"
            "Access tokens (time-limited, per peer name; the TURN REST-API pattern):\n"
            "      --auth-secret FILE   peers must register with a token minted from the\n"
            "                           secret in FILE (16..4096 bytes, one trailing newline\n"
            "                           ignored; e.g. openssl rand -hex 32 > FILE)\n"
            "      --mint-token NAME    print a token for peer NAME on stdout and exit\n"
            "                           without serving (needs --auth-secret)\n"
            "      --token-ttl SEC      lifetime of a minted token (default 86400; at most\n"
            "                           31536000, one year)\n"
            "\n"
            "TLS on the control connection (peers opt in; relay connections stay plain TCP,\n"
            "they carry only end-to-end encrypted records):\n"
            "      --tls-key FILE       private key (PEM).  Alone: an ECDSA P-256 key, created\n"
            "                           (mode 0600) if missing, with a self-signed certificate\n"
            "                           made at start: peers pin its --show-fingerprint\n"
            "      --tls-cert FILE      certificate chain (PEM, leaf first) for --tls-key, e.g.\n"
            "                           from a CA the peers trust (--tls-ca on their side)\n"
            "      --tls-required       refuse registrations outside TLS\n"
            "      --show-fingerprint   print the TLS key's fingerprint (what peers pin with\n"
            "                           --tls-fingerprint) and exit\n"
            "\n"
            "  -V, --version            print the version and exit\n"
            "  -h, --help               this help\n"
            "\n"
            "SIGUSR1 logs the counters (peers, connections, relayed packets and bytes,\n"
            "refusals and drops by reason) as 'stats' lines, at every log level.\n"
            "Stops cleanly on SIGINT or SIGTERM.  Exit status: 0 after a signal, 1 if it\n"
            "cannot start (bad option, address in use), 2 for usage errors.\n");
}

static int parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    char *end;
    if (!s || !*s || *s == '-')
        return -1;
    unsigned long v = strtoul(s, &end, 10);
    if (*end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* A byte count with an optional K/M/G suffix (powers of 1024). */
static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10, end++;
    else if (*end == 'M' || *end == 'm')
        shift = 20, end++;
    else if (*end == 'G' || *end == 'g')
        shift = 30, end++;
    if (*end || end == s || v > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

static void on_usr1(struct ev_loop *loop, ev_signal *w, int revents)
{
    server_log_stats(w->data);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    fprintf(stderr, "punchline-rendezvous: signal %d, shutting down\n", w->signum);
    ev_break(loop, EVBREAK_ALL);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, 0, 'l'},  {"log-level", required_argument, 0, 'L'},
        {"expiry", required_argument, 0, 'e'},  {"keepalive", required_argument, 0, 'k'},
        {"max-peers", required_argument, 0, 'm'}, {"version", no_argument, 0, 'V'},
        {"max-conns", required_argument, 0, 'M'},
        {"register-timeout", required_argument, 0, 'D'}, {"connect-rate", required_argument, 0, 'c'},
        {"per-ip-pending", required_argument, 0, 'P'}, {"per-ip-rate", required_argument, 0, 'Z'},
        {"help", no_argument, 0, 'h'},          {"no-relay", no_argument, 0, 'R'},
        {"relay-sessions", required_argument, 0, 'S'},
        {"relay-session-bytes", required_argument, 0, 'B'},
        {"relay-session-rate", required_argument, 0, 'r'},
        {"relay-bandwidth", required_argument, 0, 'b'},
        {"relay-idle", required_argument, 0, 'i'}, {"relay-unused", required_argument, 0, 'U'},
        {"auth-secret", required_argument, 0, 'A'},
        {"mint-token", required_argument, 0, 'T'},
        {"token-ttl", required_argument, 0, 't'},
        {"tls-cert", required_argument, 0, 'C'}, {"tls-key", required_argument, 0, 'K'},
        {"tls-required", no_argument, 0, 'Q'}, {"show-fingerprint", no_argument, 0, 'F'},
        {0, 0, 0, 0}};
    server_config cfg = {.log_level = SRV_LOG_INFO};
    cfg.relay.max_sessions = 1000;
    cfg.relay.session_bytes = 4ULL << 30;
    cfg.relay.session_rate = 16ULL << 20;
    cfg.relay.global_rate = 100ULL << 20;
    cfg.relay.idle_ms = 60000;
    uint64_t size;
    const char *listen = "0.0.0.0:7350";
    const char *secret_path = NULL, *mint_name = NULL, *tls_cert = NULL, *tls_key = NULL;
    bool show_fp = false;
    tls_conf *tls = NULL;
    unsigned long token_ttl = 86400;
    uint8_t *secret = NULL;
    size_t secret_len = 0;
    unsigned long v;
    int c;

    while ((c = getopt_long(argc, argv, "l:Vh", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            listen = optarg;
            break;
        case 'L':
            if (!strcmp(optarg, "error")) cfg.log_level = SRV_LOG_ERROR;
            else if (!strcmp(optarg, "warn")) cfg.log_level = SRV_LOG_WARN;
            else if (!strcmp(optarg, "info")) cfg.log_level = SRV_LOG_INFO;
            else if (!strcmp(optarg, "debug")) cfg.log_level = SRV_LOG_DEBUG;
            else {
                fprintf(stderr, "punchline-rendezvous: bad --log-level '%s' (error|warn|info|debug)\n", optarg);
                return 2;
            }
            break;
        case 'e':
            if (parse_uint(optarg, 2, 86400, &v)) {
                fprintf(stderr, "punchline-rendezvous: --expiry takes 2..86400 seconds\n");
                return 2;
            }
            cfg.expiry_ms = (uint32_t)(v * 1000);
            break;
        case 'k':
            if (parse_uint(optarg, 1, 3600, &v)) {
                fprintf(stderr, "punchline-rendezvous: --keepalive takes 1..3600 seconds\n");
                return 2;
            }
            cfg.keepalive_ms = (uint32_t)(v * 1000);
            break;
        case 'm':
            if (parse_uint(optarg, 1, 1000000, &v)) {
                fprintf(stderr, "punchline-rendezvous: --max-peers takes 1..1000000\n");
                return 2;
            }
            cfg.max_peers = v;
            break;
        case 'P':
            if (parse_uint(optarg, 1, 100000, &v)) {
                fprintf(stderr, "punchline-rendezvous: --per-ip-pending takes 1..100000\n");
                return 2;
            }
            cfg.per_ip_pending = (uint32_t)v;
            break;
        case 'Z':
            if (parse_uint(optarg, 1, 1000000, &v)) {
                fprintf(stderr, "punchline-rendezvous: --per-ip-rate takes 1..1000000\n");
                return 2;
            }
            cfg.per_ip_rate = (uint32_t)v;
            break;
        case 'M':
            if (parse_uint(optarg, 1, 1000000, &v)) {
                fprintf(stderr, "punchline-rendezvous: --max-conns takes 1..1000000\n");
                return 2;
            }
            cfg.max_conns = v;
            break;
        case 'D':
            if (parse_uint(optarg, 1, 3600, &v)) {
                fprintf(stderr, "punchline-rendezvous: --register-timeout takes 1..3600 seconds\n");
                return 2;
            }
            cfg.register_deadline_ms = (uint32_t)(v * 1000);
            break;
        case 'c':
            if (parse_uint(optarg, 1, 100000, &v)) {
                fprintf(stderr, "punchline-rendezvous: --connect-rate takes 1..100000\n");
                return 2;
            }
            cfg.connect_rate = (uint32_t)v;
            break;
        case 'R':
            cfg.relay_off = 1;
            break;
        case 'S':
            if (parse_uint(optarg, 1, 1000000, &v)) {
                fprintf(stderr, "punchline-rendezvous: --relay-sessions takes 1..1000000\n");
                return 2;
            }
            cfg.relay.max_sessions = v;
            break;
        case 'B':
        case 'r':
        case 'b':
            if (parse_size(optarg, &size)) {
                fprintf(stderr, "punchline-rendezvous: --%s takes a size like 500K, 16M or 4G (0 = no limit), got '%s'\n",
                        c == 'B' ? "relay-session-bytes" : c == 'r' ? "relay-session-rate" : "relay-bandwidth", optarg);
                return 2;
            }
            if (c == 'B')
                cfg.relay.session_bytes = size;
            else if (c == 'r')
                cfg.relay.session_rate = size;
            else
                cfg.relay.global_rate = size;
            break;
        case 'i':
            if (parse_uint(optarg, 1, 86400, &v)) {
                fprintf(stderr, "punchline-rendezvous: --relay-idle takes 1..86400 seconds\n");
                return 2;
            }
            cfg.relay.idle_ms = (uint32_t)(v * 1000);
            break;
        case 'U':
            if (parse_uint(optarg, 1, 86400, &v)) {
                fprintf(stderr, "punchline-rendezvous: --relay-unused takes 1..86400 seconds\n");
                return 2;
            }
            cfg.relay.unused_ms = (uint32_t)(v * 1000);
            break;
        case 'A':
            secret_path = optarg;
            break;
        case 'C': tls_cert = optarg; break;
        case 'K': tls_key = optarg; break;
        case 'Q': cfg.tls_required = 1; break;
        case 'F': show_fp = true; break;
        case 'T':
            mint_name = optarg;
            break;
        case 't':
            if (parse_uint(optarg, 1, 31536000, &v)) {
                fprintf(stderr, "punchline-rendezvous: --token-ttl takes 1..31536000 seconds, got '%s'\n", optarg);
                return 2;
            }
            token_ttl = v;
            break;
        case 'V':
            printf("punchline-rendezvous %s (protocol %d)\n", PL_VERSION_STRING, WIRE_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "punchline-rendezvous: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (netaddr_parse(listen, &cfg.listen, false) != 0) {
        fprintf(stderr, "punchline-rendezvous: --listen wants IP:PORT, got '%s'\n", listen);
        return 2;
    }
    if (cfg.keepalive_ms && cfg.expiry_ms && cfg.keepalive_ms * 2 > cfg.expiry_ms) {
        fprintf(stderr, "punchline-rendezvous: --expiry must be at least twice --keepalive\n");
        return 2;
    }
    if (mint_name && !secret_path) {
        fprintf(stderr, "punchline-rendezvous: --mint-token needs --auth-secret FILE\n");
        return 2;
    }
    if (mint_name && !name_valid_cstr(mint_name)) {
        fprintf(stderr, "punchline-rendezvous: --mint-token: bad peer name '%s' "
                        "(1..%d characters of A-Z a-z 0-9 . _ -)\n", mint_name, NAME_MAX_LEN);
        return 2;
    }
    if (tls_cert && !tls_key) {
        fprintf(stderr, "punchline-rendezvous: --tls-cert needs --tls-key\n");
        return 2;
    }
    if ((cfg.tls_required || show_fp) && !tls_key) {
        fprintf(stderr, "punchline-rendezvous: --tls-required and --show-fingerprint need --tls-key\n");
        return 2;
    }
    if (tls_key) {
        char terr[512];
        tls = tls_cert ? tls_conf_server(tls_cert, tls_key, terr, sizeof(terr))
                       : tls_conf_server_key(tls_key, terr, sizeof(terr));
        if (!tls) {
            fprintf(stderr, "punchline-rendezvous: %s\n", terr);
            return 2;
        }
        cfg.tls = tls;
        if (show_fp) {
            uint8_t h[ID_HASH_LEN];
            char id[ID_TEXT_LEN + 1];
            tls_conf_fingerprint(tls, h);
            identity_format_id(h, id);
            printf("%s\n", id);
            tls_conf_free(tls);
            return 0;
        }
    }
    if (secret_path) {
        char serr[512];
        struct stat st;
        if (token_load_secret(secret_path, &secret, &secret_len, serr, sizeof(serr)) != 0) {
            fprintf(stderr, "punchline-rendezvous: --auth-secret: %s\n", serr);
            return 2;
        }
        /* Anyone who reads the secret can mint tokens for every name. */
        if (stat(secret_path, &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH)))
            fprintf(stderr, "punchline-rendezvous: warning: secret file %s is readable by "
                            "group or others\n", secret_path);
        cfg.auth_secret = secret;
        cfg.auth_secret_len = secret_len;
    }
    if (mint_name) {
        char tok[TOKEN_MAX_LEN];
        uint64_t expiry = (uint64_t)time(NULL) + token_ttl;
        int rc = token_mint(secret, secret_len, mint_name, expiry, tok, sizeof(tok));
        free(secret);
        if (rc != 0) {
            fprintf(stderr, "punchline-rendezvous: --mint-token: cannot mint a token\n");
            return 1;
        }
        printf("%s\n", tok);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    struct ev_loop *loop = EV_DEFAULT;
    char err[256];
    server *s = server_new(loop, &cfg, err, sizeof(err));
    if (!s) {
        fprintf(stderr, "punchline-rendezvous: %s\n", err);
        free(secret);
        tls_conf_free(tls);
        return 1;
    }
    char as[NETADDR_STRLEN];
    netaddr local;
    server_local_addr(s, &local);
    netaddr_format(&local, as, sizeof(as));
    fprintf(stderr, "punchline-rendezvous %s listening on %s (tcp+udp)\n", PL_VERSION_STRING, as);
    if (cfg.relay_off)
        fprintf(stderr, "punchline-rendezvous: relay off\n");
    if (cfg.auth_secret)
        fprintf(stderr, "punchline-rendezvous: registration needs a token (--auth-secret)\n");
    if (tls) {
        uint8_t h[ID_HASH_LEN];
        char id[ID_TEXT_LEN + 1];
        tls_conf_fingerprint(tls, h);
        identity_format_id(h, id);
        fprintf(stderr, "punchline-rendezvous: TLS %s on the control connection; fingerprint %s\n",
                cfg.tls_required ? "required" : "offered", id);
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
    free(secret); /* after the server: it borrowed the secret and the TLS setup */
    tls_conf_free(tls);
    ev_loop_destroy(loop);
    return 0;
}
