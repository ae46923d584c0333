/* punchline-share: send one file to a peer behind a NAT, or receive one.
 *
 * The output is a contract tools and tests rely on (docs/SHARE.md):
 *   stdout: exactly one final line on success,
 *           "sent NAME bytes=N sha256=HEX path=PATH MBps=X" or
 *           "received NAME bytes=N sha256=HEX path=PATH MBps=X"
 *   stderr: status lines ("connected peer=...", "path peer=...", "resume
 *           name=... offset=N", errors) and, on a terminal, a progress bar.
 * This file: options, the peer and its connection, timers and signals; the
 * directions are send.c and recv.c, the wire format msg.c, files file.c.
 */
#include <ev.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peer_cli.h"
#include "share.h"

#define LINGER_S 10.0              /* wait for the peer's close after the outcome */
#define TICK_S 0.25                /* progress bar redraw */
#define ABORT_S 1.0                /* wait for an aborted connection's close */

static void usage_send(FILE *f)
{
    fprintf(f,
            "Usage: punchline-share send FILE --server HOST:PORT --name NAME --peer NAME\n"
            "                            [--transport auto|udp|tcp|relay] [--peer-id ID]\n"
            "                            [common options]\n"
            "\n"
            "Send FILE to the peer registered as --peer, who runs 'punchline-share recv'.\n"
            "Only FILE's base name travels.  If the receiver holds part of FILE from an\n"
            "interrupted transfer, the transfer resumes where it stopped.  Exits 0 only\n"
            "after the receiver confirmed the SHA-256 of the whole file.\n"
            "\n"
            "  -p, --peer NAME          the receiving peer (required)\n"
            PEER_CLI_HELP_TRANSPORT);
}

static void usage_recv(FILE *f)
{
    fprintf(f,
            "Usage: punchline-share recv --server HOST:PORT --name NAME [--out DIR] [--force]\n"
            "                            [--peer-id ID] [common options]\n"
            "\n"
            "Register NAME, wait for one incoming file, store it in DIR and exit.  The file\n"
            "is written to DIR/.NAME.punchline-part and renamed to DIR/NAME once its SHA-256\n"
            "matches the sender's; an interrupted transfer leaves the part file, and the\n"
            "next transfer of the same file resumes from it.\n"
            "\n"
            "  -o, --out DIR            where to store the file (default: the current directory)\n"
            "  -f, --force              replace an existing DIR/NAME (default: refuse)\n");
}

static void usage_common(FILE *f)
{
    fprintf(f,
            "\n"
            "Common options:\n"
            PEER_CLI_HELP_SERVER_NAME
            "      --peer-id ID         accept only a peer whose key has this id (pinning)\n"
            "  -T, --timeout SEC        give up if not connected within SEC (0 = never;\n"
            "                           default 30 for send, 0 for recv)\n"
            "      --keepalive SEC      keepalive interval on every path (default 15, 1..25)\n"
            "      --path-timeout SEC   a silent path is dead after SEC (default 30)\n"
            PEER_CLI_HELP_IDENTITY
            PEER_CLI_HELP_TOKEN
            "      --tls-ca FILE        TLS to the rendezvous, verified with this CA\n"
            "      --tls-fingerprint ID TLS to the rendezvous, accepting only this key\n"
            "      --stun HOST:PORT     also learn our public UDP address from this STUN server\n"
            "  -v, --verbose            library status on stderr (-vv for debug)\n"
            "  -h, --help               this help\n"
            "\n"
            "Exit status: 0 when the receiver confirmed the file's SHA-256; 1 on any\n"
            "failure (not connected, refused, connection lost, hash mismatch, I/O error);\n"
            "2 for usage errors (bad options, unreadable FILE, unusable DIR); 130 on\n"
            "SIGINT/SIGTERM.  See docs/SHARE.md.\n");
}

static void usage(FILE *f, const char *mode)
{
    if (!mode || !strcmp(mode, "send"))
        usage_send(f);
    if (!mode)
        fputc('\n', f);
    if (!mode || !strcmp(mode, "recv"))
        usage_recv(f);
    usage_common(f);
    if (!mode)
        fprintf(f, "\n       punchline-share --show-id [--identity FILE]   print this peer's id\n");
}

/* The library's log lines go above the progress bar (peer_cli.h). */
static void print_status(const char *line, void *user)
{
    share *sh = user;
    share_log(sh, "%s", line);
}

void share_exit(share *sh, int code)
{
    sh->exit_code = code;
    ev_break(sh->loop, EVBREAK_ALL);
}

const char *share_path_name(const share *sh)
{
    pl_path_info pi;
    pl_conn_path(sh->conn, &pi);
    return pl_path_name(pi.kind);
}

double share_mbps(uint64_t bytes, double seconds)
{
    return seconds > 0 ? (double)bytes / 1e6 / seconds : 0;
}

static void ctl_flush(share *sh)
{
    while (sh->ctl_n && sh->conn) {
        int rc = pl_conn_send(sh->conn, sh->ctl[0], sh->ctl_len[0]);
        if (rc == PL_ERR_AGAIN)
            return;
        if (rc < 0) {
            share_log(sh, "punchline-share: send: %s", pl_strerror(rc));
            share_exit(sh, 1);
            return;
        }
        sh->ctl_n--;
        memmove(sh->ctl[0], sh->ctl[1], sh->ctl_n * sizeof(sh->ctl[0]));
        memmove(sh->ctl_len, sh->ctl_len + 1, sh->ctl_n * sizeof(sh->ctl_len[0]));
    }
    if (!sh->ctl_n && sh->shutdown_wanted && sh->conn) {
        sh->shutdown_wanted = false;
        pl_conn_shutdown(sh->conn);
    }
}

void share_ctl(share *sh, const uint8_t *msg, size_t len)
{
    if (!share_active(sh)) /* what was queued before still goes */
        return;
    if (sh->ctl_n == SHARE_CTL_QUEUE || len == 0 || len > SM_MAX_CONTROL) {
        share_log(sh, "punchline-share: internal error: control queue");
        share_exit(sh, 1);
        return;
    }
    memcpy(sh->ctl[sh->ctl_n], msg, len);
    sh->ctl_len[sh->ctl_n++] = len;
    ctl_flush(sh);
}

bool share_ctl_idle(const share *sh)
{
    return sh->ctl_n == 0;
}

bool share_active(const share *sh)
{
    return sh->conn && !sh->concluded && !sh->aborting;
}

static void work_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    share *sh = w->data;
    int rc = sh->work_step(sh);
    if (rc == 0)
        return;
    ev_idle_stop(loop, w);
    if (rc > 0 && share_active(sh))
        sh->work_done(sh);
}

void share_background(share *sh, int (*step)(share *sh), void (*done)(share *sh))
{
    sh->work_step = step;
    sh->work_done = done;
    ev_idle_init(&sh->work_w, work_cb);
    sh->work_w.data = sh;
    ev_idle_start(sh->loop, &sh->work_w);
}

static void abort_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    share *sh = w->data;
    share_exit(sh, sh->exit_code);
}

/* Abort the connection and exit with code: pl_conn_close() tells the peer
 * (pl_peer_free() alone would leave it to find out by its path timeout), and
 * the loop runs on until its on_closed, at most ABORT_S, so that the notice
 * is really sent. */
static void share_abort(share *sh, int code)
{
    sh->exit_code = code;
    if (!sh->conn || sh->aborting) {
        share_exit(sh, code);
        return;
    }
    sh->aborting = true;
    pl_conn_close(sh->conn);
    ev_timer_stop(sh->loop, &sh->linger_w);
    ev_timer_init(&sh->linger_w, abort_cb, ABORT_S, 0.);
    sh->linger_w.data = sh;
    ev_timer_start(sh->loop, &sh->linger_w);
}

static void linger_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    share *sh = w->data;
    share_abort(sh, sh->exit_code); /* the peer never finished its side */
}

void share_conclude(share *sh, int code)
{
    if (sh->concluded)
        return;
    sh->concluded = true;
    sh->exit_code = code;
    pg_end(&sh->pg);
    ev_timer_stop(sh->loop, &sh->tick_w);
    ev_timer_stop(sh->loop, &sh->timeout_w);
    if (!sh->conn) {
        share_exit(sh, code);
        return;
    }
    sh->shutdown_wanted = true;
    ctl_flush(sh);
    ev_timer_init(&sh->linger_w, linger_cb, LINGER_S, 0.);
    sh->linger_w.data = sh;
    ev_timer_start(sh->loop, &sh->linger_w);
}

void share_fail(share *sh, uint8_t reason, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    pg_end(&sh->pg);
    share_log(sh, "punchline-share: %s", text);
    /* The reason says it; our text may name local paths, so it stays here. */
    uint8_t m[SM_MAX_CONTROL];
    size_t n = sm_encode_error(m, sizeof(m), reason, NULL);
    if (n)
        share_ctl(sh, m, n);
    share_conclude(sh, 1);
}

/* ---- connection callbacks: print, then hand to the role ---------------- */

static void on_connected(pl_conn *c, const pl_path_info *path, void *user)
{
    share *sh = user;
    sh->connected = true;
    ev_timer_stop(sh->loop, &sh->timeout_w);
    share_log(sh, "connected peer=%s path=%s remote=%s ms=%u id=%s", pl_conn_peer_name(c),
              pl_path_name(path->kind), path->remote, path->ms, pl_conn_peer_id(c));
    pg_set_path(&sh->pg, pl_path_name(path->kind));
    sh->role->connected(sh);
}

static void on_path_changed(pl_conn *c, const pl_path_info *path, void *user)
{
    share *sh = user;
    share_log(sh, "path peer=%s path=%s remote=%s ms=%u", pl_conn_peer_name(c),
              pl_path_name(path->kind), path->remote, path->ms);
    pg_set_path(&sh->pg, pl_path_name(path->kind));
}

static void on_message(pl_conn *c, const uint8_t *data, size_t len, void *user)
{
    share *sh = user;
    if (share_active(sh)) /* after the outcome, whatever still arrives is moot */
        sh->role->message(sh, data, len);
}

static void on_writable(pl_conn *c, void *user)
{
    share *sh = user;
    ctl_flush(sh);
    if (share_active(sh) && share_ctl_idle(sh))
        sh->role->writable(sh);
}

static void on_peer_finished(pl_conn *c, void *user)
{
    share *sh = user;
    if (share_active(sh))
        sh->role->peer_finished(sh);
}

static void on_closed(pl_conn *c, int st, void *user)
{
    share *sh = user;
    sh->conn = NULL;
    if (sh->stopping) /* pl_peer_free() after the loop: the outcome is said */
        return;
    if (sh->concluded || sh->aborting) {
        share_exit(sh, sh->exit_code);
        return;
    }
    pg_end(&sh->pg);
    sh->role->closed(sh, st);
    share_exit(sh, 1);
}

static const pl_conn_callbacks conn_cbs = {
    .on_connected = on_connected,
    .on_path_changed = on_path_changed,
    .on_message = on_message,
    .on_writable = on_writable,
    .on_peer_finished = on_peer_finished,
    .on_closed = on_closed,
};

static void on_registered(pl_peer *p, int st, const char *observed, void *user)
{
    share *sh = user;
    if (st < 0) {
        share_log(sh, "punchline-share: registration failed: %s", pl_strerror(st));
        if (!sh->connected)
            share_exit(sh, 1);
        return;
    }
    share_log(sh, "registered name=%s public=%s", pl_peer_name(p), observed);
    if (sh->peer_name && !sh->conn && !sh->connected) {
        pl_conn *c = NULL;
        int rc = pl_peer_connect(p, sh->peer_name, sh->transport, &conn_cbs, sh, &c);
        if (rc < 0) {
            share_log(sh, "punchline-share: connect to %s: %s", sh->peer_name, pl_strerror(rc));
            share_exit(sh, 1);
            return;
        }
        if (sh->peer_id)
            pl_conn_require_peer_id(c, sh->peer_id); /* checked in main() */
        sh->conn = c;
    } else if (!sh->peer_name && !sh->connected) {
        share_log(sh, "waiting for a file for %s", pl_peer_name(p));
    }
}

static void on_incoming(pl_peer *p, pl_conn *c, const char *from, void *user)
{
    share *sh = user;
    if (sh->conn || sh->peer_name || sh->concluded)
        return; /* one transfer per run: leaving callbacks unset refuses it */
    share_log(sh, "incoming connection from %s", from);
    pl_conn_set_callbacks(c, &conn_cbs, sh);
    if (sh->peer_id)
        pl_conn_require_peer_id(c, sh->peer_id);
    sh->conn = c;
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    share *sh = w->data;
    if (sh->peer_name)
        share_log(sh, "punchline-share: not connected to %s within %.0f s", sh->peer_name,
                  sh->timeout_s);
    else
        share_log(sh, "punchline-share: no sender connected within %.0f s", sh->timeout_s);
    share_exit(sh, 1);
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    share *sh = w->data;
    if (sh->role == &share_sender)
        send_progress(sh);
    pg_tick(&sh->pg, ev_now(loop));
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    share *sh = w->data;
    pg_end(&sh->pg);
    share_log(sh, "punchline-share: signal %d, closing", w->signum);
    if (!sh->concluded && !sh->aborting)
        sh->role->interrupted(sh);
    share_abort(sh, 130);
}

/* ---- options ----------------------------------------------------------- */

/* PUNCHLINE_SHARE_TEST_RATE: for tests only (docs/SHARE.md): cap the
 * sender at this many bytes per second, so a test can interrupt a
 * transfer half-way.  -1 if set but not a positive number. */
static double test_rate(void)
{
    const char *s = getenv("PUNCHLINE_SHARE_TEST_RATE");
    if (!s || !*s)
        return 0;
    char *end;
    double v = strtod(s, &end);
    return (*end || !(v >= 1) || !isfinite(v)) ? -1 : v;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"peer", required_argument, 0, 'p'}, {"transport", required_argument, 0, 't'},
        {"out", required_argument, 0, 'o'},  {"force", no_argument, 0, 'f'},
        PEER_CLI_LONG_OPTIONS,
        {"help", no_argument, 0, 'h'},       {0, 0, 0, 0}};
    const char *mode = NULL, *peer_opt = NULL, *transport_opt = NULL, *out_opt = NULL;
    bool force = false;
    share sh = {.exit_code = 1};
    peer_cli o;
    int c, rc;

    peer_cli_init(&o, "punchline-share", 30);
    /* The first word is the direction; the rest are options (and FILE). */
    if (argc >= 2 && (!strcmp(argv[1], "send") || !strcmp(argv[1], "recv"))) {
        mode = argv[1];
        argv[1] = argv[0];
        argv++, argc--;
    }
    while ((c = peer_cli_getopt(&o, argc, argv, PEER_CLI_SHORT_OPTIONS "p:t:o:fh", opts)) != -1) {
        switch (c) {
        case PEER_CLI_BAD: return 2;
        case 'p': peer_opt = optarg; break;
        case 't': transport_opt = optarg; break;
        case 'o': out_opt = optarg; break;
        case 'f': force = true; break;
        case 'h': usage(stdout, mode); return 0;
        default:
            fprintf(stderr, "(see punchline-share%s%s --help)\n", mode ? " " : "", mode ? mode : "");
            return 2;
        }
    }

    /* what each form takes */
    if (!mode && !o.show_id) {
        if (optind < argc)
            fprintf(stderr, "punchline-share: unknown command '%s' (want send or recv)\n", argv[optind]);
        else
            fprintf(stderr, "punchline-share: say send or recv (see --help)\n");
        usage(stderr, NULL);
        return 2;
    }
    if (mode && o.show_id) {
        fprintf(stderr, "punchline-share: --show-id is a form of its own: punchline-share --show-id\n");
        return 2;
    }
    bool sending = mode && !strcmp(mode, "send");
    if (sending) {
        if (optind + 1 != argc) {
            fprintf(stderr, optind == argc ? "punchline-share: send needs one FILE\n"
                                           : "punchline-share: send takes one FILE, got more\n");
            return 2;
        }
        sh.file = argv[optind];
        if (out_opt || force) {
            fprintf(stderr, "punchline-share: --out and --force are for recv\n");
            return 2;
        }
        if (!peer_opt) {
            fprintf(stderr, "punchline-share: send needs --peer NAME (the receiver's name)\n");
            return 2;
        }
        if (transport_opt && (sh.transport = peer_cli_transport(transport_opt)) < 0) {
            fprintf(stderr, "punchline-share: --transport must be auto, udp, tcp or relay\n");
            return 2;
        }
        sh.peer_name = peer_opt;
        sh.test_rate = test_rate();
        if (sh.test_rate < 0) {
            fprintf(stderr, "punchline-share: PUNCHLINE_SHARE_TEST_RATE must be bytes per second (>= 1)\n");
            return 2;
        }
    } else if (mode) {
        if (optind < argc) {
            fprintf(stderr, "punchline-share: unexpected argument '%s' (recv takes no FILE)\n", argv[optind]);
            return 2;
        }
        if (peer_opt || transport_opt) {
            fprintf(stderr, "punchline-share: --peer and --transport are for send (the sender "
                            "chooses the transport)\n");
            return 2;
        }
        sh.out_dir = out_opt ? out_opt : ".";
        sh.force = force;
        if (!o.timeout_set)
            o.timeout_s = 0; /* a receiver waits until a sender comes */
    } else if (optind < argc) {
        fprintf(stderr, "punchline-share: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    rc = peer_cli_check(&o, sh.peer_name, sending ? "punchline-share send --help"
                                                  : "punchline-share recv --help");
    if (rc != 0)
        return rc;
    if (o.show_id)
        return peer_cli_show_id(&o);
    if ((rc = peer_cli_identity(&o, false)) != 0)
        return rc;
    sh.peer_id = o.peer_id;
    sh.timeout_s = o.timeout_s;

    /* Local checks before any network: a bad FILE or DIR is a usage error. */
    pg_init(&sh.pg, isatty(STDERR_FILENO));
    sh.role = sending ? &share_sender : &share_receiver;
    rc = sending ? send_prepare(&sh) : recv_prepare(&sh);
    if (rc != 0) {
        sh.role->free(&sh);
        return rc;
    }

    signal(SIGPIPE, SIG_IGN);
    sh.loop = EV_DEFAULT;
    pl_peer_config cfg = {
        .loop = sh.loop,
        .on_registered = on_registered, .on_incoming = on_incoming, .user = &sh,
    };
    o.print = print_status;
    o.print_user = &sh;
    peer_cli_config(&o, &cfg);
    rc = peer_cli_start(&o, &cfg, &sh.peer);
    if (rc < 0) {
        sh.role->free(&sh);
        return rc == PL_ERR_INVALID || rc == PL_ERR_BAD_NAME ? 2 : 1;
    }
    if (sh.timeout_s > 0) {
        ev_timer_init(&sh.timeout_w, timeout_cb, sh.timeout_s, 0.);
        sh.timeout_w.data = &sh;
        ev_timer_start(sh.loop, &sh.timeout_w);
    }
    if (sh.pg.tty) {
        ev_timer_init(&sh.tick_w, tick_cb, TICK_S, TICK_S);
        sh.tick_w.data = &sh;
        ev_timer_start(sh.loop, &sh.tick_w);
    }
    ev_signal_init(&sh.sigint_w, signal_cb, SIGINT);
    ev_signal_init(&sh.sigterm_w, signal_cb, SIGTERM);
    sh.sigint_w.data = sh.sigterm_w.data = &sh;
    ev_signal_start(sh.loop, &sh.sigint_w);
    ev_signal_start(sh.loop, &sh.sigterm_w);

    ev_run(sh.loop, 0);

    sh.stopping = true;
    ev_idle_stop(sh.loop, &sh.work_w);
    pg_end(&sh.pg);
    pl_peer_free(sh.peer); /* aborts a connection still open (on_closed runs) */
    sh.role->free(&sh);
    return sh.exit_code;
}
