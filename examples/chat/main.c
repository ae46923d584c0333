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
#include "peer_cli.h"
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
            PEER_CLI_HELP_SERVER_NAME
            "  -p, --peer NAME          connect to NAME instead of waiting\n"
            PEER_CLI_HELP_TRANSPORT
            "  -T, --timeout SEC        give up if not connected within SEC (default 30; 0 = never)\n"
            "      --keepalive SEC      keepalive/consent check interval on every path\n"
            "                           (default 15, 1..25)\n"
            "      --path-timeout SEC   a path that answers nothing for SEC is dead: the\n"
            "                           connection moves to another path, or fails (default 30;\n"
            "                           at least the keepalive + 2)\n"
            PEER_CLI_HELP_IDENTITY
            "      --show-id            print this peer's id (the key's fingerprint) and exit\n"
            "      --peer-id ID         accept only a peer whose key has this id, whatever the\n"
            "                           rendezvous says; anything else fails with exit 1\n"
            PEER_CLI_HELP_TOKEN
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

/* The library's log lines go above the prompt (peer_cli.h). */
static void print_status(const char *line, void *user)
{
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

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"peer", required_argument, 0, 'p'}, {"transport", required_argument, 0, 't'},
        PEER_CLI_LONG_OPTIONS,
        {"help", no_argument, 0, 'h'},       {0, 0, 0, 0}};
    chat ch = {.exit_code = 1};
    peer_cli o;
    int c, rc;

    peer_cli_init(&o, "punchline-chat", 30);
    while ((c = peer_cli_getopt(&o, argc, argv, PEER_CLI_SHORT_OPTIONS "p:t:h", opts)) != -1) {
        switch (c) {
        case PEER_CLI_BAD: return 2;
        case 'p': ch.peer_name = optarg; break;
        case 't':
            ch.transport = peer_cli_transport(optarg);
            if (ch.transport < 0) {
                fprintf(stderr, "punchline-chat: --transport must be auto, udp, tcp or relay\n");
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "punchline-chat: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    /* The key is read (or made) before the other checks, so a bad key file
     * is said first, and --show-id works without --server. */
    if (o.show_id)
        return peer_cli_show_id(&o);
    if ((rc = peer_cli_identity(&o, true)) != 0 ||
        (rc = peer_cli_check(&o, ch.peer_name, "--help")) != 0)
        return rc;
    ch.peer_id = o.peer_id;
    ch.timeout_s = o.timeout_s;
    signal(SIGPIPE, SIG_IGN);
    ch.loop = EV_DEFAULT;
    ch.tty = isatty(STDIN_FILENO) && isatty(STDERR_FILENO);
    fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);

    pl_peer_config cfg = {
        .loop = ch.loop,
        .on_registered = on_registered, .on_incoming = on_incoming, .user = &ch,
    };
    o.print = print_status;
    peer_cli_config(&o, &cfg);
    if (peer_cli_start(&o, &cfg, &ch.peer) < 0)
        return 1;
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
