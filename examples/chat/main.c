/* punchline-chat: line chat between two peers behind NATs.
 *
 * The output is a contract other tools and tests rely on (README "chat"):
 *   stdout: one line per received message, "<peer-name>: <text>"
 *   stderr: status; exactly one "connected peer=NAME path=PATH remote=IP:PORT ms=N"
 *           line when a path is up, "path peer=..." when it changes later.
 */
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lineedit.h"
#include "sanitize.h"
#include "punchline/punchline.h"

typedef struct chat {
    struct ev_loop *loop;
    pl_peer *peer;
    pl_conn *conn;
    const char *peer_name;     /* --peer, NULL = wait for one incoming */
    const char *peer_id;       /* --peer-id: pinned key, NULL = trust the rendezvous */
    int transport;
    double timeout_s;
    bool connected, stdin_eof, tty;
    int exit_code;
    ev_io in_w;
    ev_timer timeout_w;
    ev_signal sigint_w, sigterm_w;
    char *inbuf;               /* partial stdin line(s) */
    size_t in_len, in_cap;
    size_t in_off;             /* first byte not yet sent */
} chat;

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: punchline-chat --server HOST:PORT --name NAME [--peer NAME]\n"
            "                      [--transport auto|udp|tcp|relay] [--timeout SEC]\n"
            "                      [--keepalive SEC] [--path-timeout SEC] [-v]\n"
            "                      [--identity FILE] [--peer-id ID] [--token TOKEN]\n"
            "                      [--tls-ca FILE | --tls-fingerprint ID] [--stun HOST:PORT]\n"
            "       punchline-chat --show-id [--identity FILE]\n"
            "\n"
            "Chat with another peer through NATs.  Without --peer, register NAME and wait\n"
            "for one incoming connection; with --peer, connect to that peer.\n"
            "\n"
            "Each line on stdin is sent as one message; each received message is printed\n"
            "on stdout as '<peer-name>: <text>' (control characters shown as '?').  Status\n"
            "goes to stderr, including exactly one line\n"
            "  connected peer=NAME path=PATH remote=IP:PORT ms=N\n"
            "when the connection is up (PATH: direct-udp, direct-tcp, relay-udp, relay-tcp),\n"
            "and a line\n"
            "  path peer=NAME path=PATH remote=IP:PORT ms=N\n"
            "each time it moves to another path later (e.g. from the relay to a direct path;\n"
            "ms counts from the start).\n"
            "On end of input the chat finishes sending, waits until the peer has finished\n"
            "too, and exits 0.  On a terminal it runs an interactive prompt.\n"
            "\n"
            "Options:\n"
            "  -s, --server HOST:PORT   rendezvous server (required)\n"
            "  -n, --name NAME          this peer's name: 1-63 of A-Z a-z 0-9 . _ - (required)\n"
            "  -p, --peer NAME          connect to NAME instead of waiting\n"
            "  -t, --transport T        auto (default): start on the rendezvous relay, punch\n"
            "                           UDP and TCP at the same time, move to the direct path\n"
            "                           once it works; udp or tcp: that hole punching only;\n"
            "                           relay: the rendezvous relay only\n"
            "  -T, --timeout SEC        give up if not connected within SEC (default 30; 0 = never)\n"
            "      --keepalive SEC      keepalive/consent check interval on every path\n"
            "                           (default 15, 1..25)\n"
            "      --path-timeout SEC   a path that answers nothing for SEC is dead: the\n"
            "                           connection moves to another path, or fails (default 30;\n"
            "                           at least the keepalive + 2)\n"
            "  -i, --identity FILE      identity key (ECDSA P-256, PEM), created with mode 0600\n"
            "                           if missing (default $XDG_CONFIG_HOME/punchline/\n"
            "                           identity.pem, else ~/.config/punchline/identity.pem)\n"
            "      --show-id            print this peer's id (the key's fingerprint) and exit\n"
            "      --peer-id ID         accept only a peer whose key has this id, whatever the\n"
            "                           rendezvous says; anything else fails with exit 1\n"
            "      --token TOKEN        access token for a rendezvous run with --auth-secret\n"
            "      --tls-ca FILE        talk to the rendezvous over TLS, verifying its\n"
            "                           certificate (and the --server host name) with FILE\n"
            "      --tls-fingerprint ID talk to the rendezvous over TLS, accepting only its key\n"
            "                           (punchline-rendezvous --show-fingerprint)\n"
            "      --stun HOST:PORT     also learn our public UDP address from this STUN\n"
            "                           server (any RFC 8489 server) and offer it to peers\n"
            "  -v, --verbose            more status on stderr (-vv for debug)\n"
            "  -h, --help               this help\n"
            "\n"
            "Every connection is end-to-end encrypted (DTLS 1.2) between the two peers'\n"
            "keys, relayed or direct.  stderr shows this peer's id at start and the peer's\n"
            "verified id in the 'connected' line; compare ids out of band, then pin them\n"
            "with --peer-id.\n"
            "\n"
            "Exit status: 0 after a clean close by both sides; 1 on any failure (not\n"
            "connected in time, unknown peer, wrong peer key, connection lost); 2 for\n"
            "usage errors.\n");
}

static void log_cb(int level, const char *msg, void *user)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    char line[600];
    snprintf(line, sizeof(line), "punchline: %s: %s", names[level], msg);
    le_print(stderr, line);
}

static void finish(chat *ch, int code)
{
    ch->exit_code = code;
    ev_break(ch->loop, EVBREAK_ALL);
}

static void on_message(pl_conn *c, const uint8_t *data, size_t len, void *user)
{
    const char *name = pl_conn_peer_name(c);
    char *line = malloc(strlen(name) + 2 + len + 1);
    if (!line)
        return;
    size_t nl = strlen(name);
    memcpy(line, name, nl);
    memcpy(line + nl, ": ", 2);
    chat_sanitize(data, len, line + nl + 2);
    le_print(stdout, line);
    free(line);
}

static void send_pending(chat *ch);

static void on_connected(pl_conn *c, const pl_path_info *path, void *user)
{
    chat *ch = user;
    ch->connected = true;
    ev_timer_stop(ch->loop, &ch->timeout_w);
    char line[256];
    snprintf(line, sizeof(line), "connected peer=%s path=%s remote=%s ms=%u id=%s",
             pl_conn_peer_name(c), pl_path_name(path->kind), path->remote, path->ms,
             pl_conn_peer_id(c));
    le_print(stderr, line);
}

static void on_path_changed(pl_conn *c, const pl_path_info *path, void *user)
{
    char line[256];
    snprintf(line, sizeof(line), "path peer=%s path=%s remote=%s ms=%u", pl_conn_peer_name(c),
             pl_path_name(path->kind), path->remote, path->ms);
    le_print(stderr, line);
}

static void on_writable(pl_conn *c, void *user)
{
    chat *ch = user;
    send_pending(ch);
}

static void on_peer_finished(pl_conn *c, void *user)
{
    char line[128];
    snprintf(line, sizeof(line), "peer=%s finished sending", pl_conn_peer_name(c));
    le_print(stderr, line);
}

static void on_closed(pl_conn *c, int st, void *user)
{
    chat *ch = user;
    ch->conn = NULL;
    if (st == 0) {
        finish(ch, 0);
        return;
    }
    le_end();
    fprintf(stderr, "punchline-chat: connection to %s failed: %s\n", pl_conn_peer_name(c),
            pl_strerror(st));
    finish(ch, 1);
}

static const pl_conn_callbacks conn_cbs = {
    .on_connected = on_connected,
    .on_path_changed = on_path_changed,
    .on_message = on_message,
    .on_writable = on_writable,
    .on_peer_finished = on_peer_finished,
    .on_closed = on_closed,
};

/* Send every complete line in inbuf; at EOF also the unterminated rest, then
 * half-close.  Stops reading stdin while the library's queue is full. */
static void send_pending(chat *ch)
{
    if (!ch->conn)
        return;
    while (ch->in_off < ch->in_len) {
        char *start = ch->inbuf + ch->in_off;
        size_t avail = ch->in_len - ch->in_off;
        char *nl = memchr(start, '\n', avail);
        size_t len;
        if (nl)
            len = (size_t)(nl - start);
        else if (ch->stdin_eof && avail)
            len = avail;
        else
            break;
        size_t msg_len = len;
        if (msg_len && start[msg_len - 1] == '\r')
            msg_len--;
        if (msg_len > PL_MAX_MESSAGE)
            msg_len = PL_MAX_MESSAGE; /* overlong lines are cut, and said so */
        int rc = pl_conn_send(ch->conn, start, msg_len);
        if (rc == PL_ERR_AGAIN) {
            ev_io_stop(ch->loop, &ch->in_w);
            return; /* resumed by on_writable */
        }
        if (rc < 0) {
            fprintf(stderr, "punchline-chat: send: %s\n", pl_strerror(rc));
            finish(ch, 1);
            return;
        }
        if (len > PL_MAX_MESSAGE)
            fprintf(stderr, "punchline-chat: line longer than %d bytes was cut\n", PL_MAX_MESSAGE);
        ch->in_off += len + (nl ? 1 : 0);
    }
    if (ch->in_off) { /* compact */
        memmove(ch->inbuf, ch->inbuf + ch->in_off, ch->in_len - ch->in_off);
        ch->in_len -= ch->in_off;
        ch->in_off = 0;
    }
    if (ch->stdin_eof) {
        if (ch->in_len == 0)
            pl_conn_shutdown(ch->conn);
        return;
    }
    if (!ev_is_active(&ch->in_w))
        ev_io_start(ch->loop, &ch->in_w);
}

static int append_input(chat *ch, const char *data, size_t n)
{
    if (ch->in_len + n > ch->in_cap) {
        size_t cap = ch->in_cap ? ch->in_cap : 4096;
        while (cap < ch->in_len + n)
            cap *= 2;
        char *b = realloc(ch->inbuf, cap);
        if (!b)
            return -1;
        ch->inbuf = b;
        ch->in_cap = cap;
    }
    memcpy(ch->inbuf + ch->in_len, data, n);
    ch->in_len += n;
    return 0;
}

static void stdin_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    chat *ch = w->data;
    char buf[4096];
    ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        ch->stdin_eof = true;
        ev_io_stop(loop, w);
        send_pending(ch);
        return;
    }
    if (ch->tty) {
        for (ssize_t i = 0; i < n; i++) {
            const char *line;
            size_t len;
            int ev = le_feed((unsigned char)buf[i], &line, &len);
            if (ev == LE_LINE) {
                char shown[600];
                snprintf(shown, sizeof(shown), "%s: %.*s", "you", (int)(len > 500 ? 500 : len), line);
                le_print(stderr, shown);
                if (append_input(ch, line, len) < 0 || append_input(ch, "\n", 1) < 0)
                    finish(ch, 1);
            } else if (ev == LE_EOF) {
                ch->stdin_eof = true;
                ev_io_stop(loop, w);
                le_end();
                break;
            } else if (ev == LE_INTERRUPT) {
                le_end();
                fprintf(stderr, "punchline-chat: interrupted\n");
                finish(ch, 130);
                return;
            }
        }
    } else if (append_input(ch, buf, (size_t)n) < 0) {
        fprintf(stderr, "punchline-chat: out of memory\n");
        finish(ch, 1);
        return;
    }
    send_pending(ch);
}

static void attach(chat *ch, pl_conn *c)
{
    ch->conn = c;
    ev_io_init(&ch->in_w, stdin_cb, STDIN_FILENO, EV_READ);
    ch->in_w.data = ch;
    if (ch->tty)
        ch->tty = le_begin("> ");
    ev_io_start(ch->loop, &ch->in_w);
}

static void on_registered(pl_peer *p, int st, const char *observed, void *user)
{
    chat *ch = user;
    if (st < 0) {
        fprintf(stderr, "punchline-chat: registration failed: %s\n", pl_strerror(st));
        if (!ch->connected)
            finish(ch, 1);
        return;
    }
    char line[160];
    snprintf(line, sizeof(line), "registered name=%s public=%s", pl_peer_name(p), observed);
    le_print(stderr, line);
    if (ch->peer_name && !ch->conn) {
        pl_conn *c = NULL;
        int rc = pl_peer_connect(p, ch->peer_name, ch->transport, &conn_cbs, ch, &c);
        if (rc < 0) {
            fprintf(stderr, "punchline-chat: connect to %s: %s\n", ch->peer_name, pl_strerror(rc));
            finish(ch, 1);
            return;
        }
        if (ch->peer_id)
            pl_conn_require_peer_id(c, ch->peer_id); /* checked in main() */
        attach(ch, c);
    } else if (!ch->peer_name) {
        fprintf(stderr, "waiting for a peer to connect to %s\n", pl_peer_name(p));
    }
}

static void on_incoming(pl_peer *p, pl_conn *c, const char *from, void *user)
{
    chat *ch = user;
    if (ch->conn || ch->peer_name)
        return; /* one conversation at a time: leaving callbacks unset refuses it */
    char line[128];
    snprintf(line, sizeof(line), "incoming connection from %s", from);
    le_print(stderr, line);
    pl_conn_set_callbacks(c, &conn_cbs, ch);
    if (ch->peer_id)
        pl_conn_require_peer_id(c, ch->peer_id);
    attach(ch, c);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    chat *ch = w->data;
    if (ch->tty)
        le_end();
    if (ch->peer_name)
        fprintf(stderr, "punchline-chat: not connected to %s within %.0f s\n", ch->peer_name,
                ch->timeout_s);
    else
        fprintf(stderr, "punchline-chat: no peer connected within %.0f s\n", ch->timeout_s);
    finish(ch, 1);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    chat *ch = w->data;
    le_end();
    fprintf(stderr, "punchline-chat: signal %d, closing\n", w->signum);
    finish(ch, 130);
}

static int parse_transport(const char *s)
{
    if (!strcmp(s, "auto")) return PL_TRANSPORT_AUTO;
    if (!strcmp(s, "udp")) return PL_TRANSPORT_UDP;
    if (!strcmp(s, "tcp")) return PL_TRANSPORT_TCP;
    if (!strcmp(s, "relay")) return PL_TRANSPORT_RELAY;
    return -1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"server", required_argument, 0, 's'}, {"name", required_argument, 0, 'n'},
        {"peer", required_argument, 0, 'p'},   {"transport", required_argument, 0, 't'},
        {"timeout", required_argument, 0, 'T'}, {"verbose", no_argument, 0, 'v'},
        {"keepalive", required_argument, 0, 'K'}, {"path-timeout", required_argument, 0, 'P'},
        {"identity", required_argument, 0, 'i'}, {"show-id", no_argument, 0, 'S'},
        {"peer-id", required_argument, 0, 'I'}, {"token", required_argument, 0, 'k'},
        {"tls-ca", required_argument, 0, 'c'}, {"tls-fingerprint", required_argument, 0, 'f'},
        {"stun", required_argument, 0, 'U'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    const char *identity = NULL, *token = NULL, *tls_ca = NULL, *tls_fp = NULL, *stun = NULL;
    bool show_id = false;
    char idpath[1024], myid[PL_ID_LEN + 1], err[512];
    unsigned long keepalive_s = 0, path_timeout_s = 0;
    chat ch = {.timeout_s = 30, .exit_code = 1};
    const char *server = NULL, *name = NULL;
    int verbosity = PL_LOG_WARN, c;
    char *end;

    while ((c = getopt_long(argc, argv, "s:n:p:t:T:i:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'i': identity = optarg; break;
        case 'S': show_id = true; break;
        case 'I': ch.peer_id = optarg; break;
        case 'k': token = optarg; break;
        case 'c': tls_ca = optarg; break;
        case 'f': tls_fp = optarg; break;
        case 'U': stun = optarg; break;
        case 's': server = optarg; break;
        case 'n': name = optarg; break;
        case 'p': ch.peer_name = optarg; break;
        case 't':
            ch.transport = parse_transport(optarg);
            if (ch.transport < 0) {
                fprintf(stderr, "punchline-chat: --transport must be auto, udp, tcp or relay\n");
                return 2;
            }
            break;
        case 'T':
            ch.timeout_s = strtod(optarg, &end);
            if (*end || ch.timeout_s < 0 || ch.timeout_s > 86400) {
                fprintf(stderr, "punchline-chat: --timeout takes 0..86400 seconds\n");
                return 2;
            }
            break;
        case 'K':
            keepalive_s = strtoul(optarg, &end, 10);
            if (*end || !*optarg || *optarg == '-' || keepalive_s < 1 || keepalive_s > 25) {
                fprintf(stderr, "punchline-chat: --keepalive takes 1..25 seconds\n");
                return 2;
            }
            break;
        case 'P':
            path_timeout_s = strtoul(optarg, &end, 10);
            if (*end || !*optarg || *optarg == '-' || path_timeout_s < 2 || path_timeout_s > 3600) {
                fprintf(stderr, "punchline-chat: --path-timeout takes 2..3600 seconds\n");
                return 2;
            }
            break;
        case 'v': verbosity = verbosity < PL_LOG_DEBUG ? verbosity + 1 : verbosity; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "punchline-chat: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!identity) {
        if (pl_identity_default_path(idpath, sizeof(idpath)) != 0) {
            fprintf(stderr, "punchline-chat: neither XDG_CONFIG_HOME nor HOME is set: "
                            "give the key file with --identity FILE\n");
            return 2;
        }
        identity = idpath;
    }
    if (pl_identity_id(identity, 1, myid, sizeof(myid), err, sizeof(err)) != 0) {
        fprintf(stderr, "punchline-chat: %s\n", err);
        return 1;
    }
    if (show_id) {
        printf("%s\n", myid);
        return 0;
    }
    if (ch.peer_id) {
        /* validate now, so a typo is a usage error and not a failed connection */
        if (strlen(ch.peer_id) != PL_ID_LEN || strspn(ch.peer_id, "abcdefghijklmnopqrstuvwxyz"
                                                                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != PL_ID_LEN) {
            fprintf(stderr, "punchline-chat: --peer-id wants the %d-character id the other side's "
                            "--show-id prints\n", PL_ID_LEN);
            return 2;
        }
    }
    if (tls_ca && tls_fp) {
        fprintf(stderr, "punchline-chat: give --tls-ca or --tls-fingerprint, not both\n");
        return 2;
    }
    if (!server || !name) {
        fprintf(stderr, "punchline-chat: --server and --name are required (see --help)\n");
        return 2;
    }
    if (ch.peer_name && !strcmp(ch.peer_name, name)) {
        fprintf(stderr, "punchline-chat: --peer must differ from --name\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    ch.loop = EV_DEFAULT;
    ch.tty = isatty(STDIN_FILENO) && isatty(STDERR_FILENO);
    fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);

    pl_peer_config cfg = {
        .loop = ch.loop, .server = server, .name = name,
        .log = log_cb, .log_user = &ch, .log_level = verbosity,
        .on_registered = on_registered, .on_incoming = on_incoming, .user = &ch,
        .keepalive_ms = (uint32_t)(keepalive_s * 1000),
        .path_timeout_ms = (uint32_t)(path_timeout_s * 1000),
        .identity_file = identity, .auth_token = token,
        .server_ca_file = tls_ca, .server_fingerprint = tls_fp, .stun_server = stun,
    };
    int rc = pl_peer_new(&ch.peer, &cfg);
    if (rc < 0) {
        fprintf(stderr, "punchline-chat: %s\n", pl_strerror(rc));
        return 1;
    }
    fprintf(stderr, "identity id=%s file=%s\n", pl_peer_id(ch.peer), identity);
    if (ch.timeout_s > 0) {
        ev_timer_init(&ch.timeout_w, timeout_cb, ch.timeout_s, 0.);
        ch.timeout_w.data = &ch;
        ev_timer_start(ch.loop, &ch.timeout_w);
    }
    ev_signal_init(&ch.sigint_w, signal_cb, SIGINT);
    ev_signal_init(&ch.sigterm_w, signal_cb, SIGTERM);
    ch.sigint_w.data = ch.sigterm_w.data = &ch;
    ev_signal_start(ch.loop, &ch.sigint_w);
    ev_signal_start(ch.loop, &ch.sigterm_w);
    atexit(le_end);

    ev_run(ch.loop, 0);

    le_end();
    pl_peer_free(ch.peer); /* aborts a connection still open (on_closed runs) */
    free(ch.inbuf);
    fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) & ~O_NONBLOCK);
    return ch.exit_code;
}
