/* punchline-share: the state both directions share (options, the peer and
 * its one connection, timers, the progress bar), and the glue main.c gives
 * the two roles (send.c, recv.c).  A role gets the connection's events
 * through its share_role table and ends the run with share_conclude()
 * (outcome known: finish our side, wait for the peer's) or share_exit()
 * (stop now).
 */
#ifndef SHARE_SHARE_H
#define SHARE_SHARE_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"
#include "progress.h"
#include "punchline/punchline.h"

#define SHARE_CTL_QUEUE 4          /* control messages waiting for queue room */

typedef struct share share;

/* A direction's handlers; main.c calls them from the connection callbacks. */
typedef struct share_role {
    void (*connected)(share *sh);
    void (*message)(share *sh, const uint8_t *data, size_t len);
    void (*writable)(share *sh);   /* after main.c flushed its control queue */
    void (*peer_finished)(share *sh);
    /* The connection ended (status: PL_ERR_*) before the role concluded. */
    void (*closed)(share *sh, int status);
    /* SIGINT/SIGTERM: say what is left behind; main.c exits 130 after. */
    void (*interrupted)(share *sh);
    void (*free)(share *sh);
} share_role;

struct share {
    struct ev_loop *loop;
    pl_peer *peer;
    pl_conn *conn;
    const share_role *role;
    void *state;               /* the role's own struct */
    /* options */
    const char *peer_name;     /* send: --peer */
    const char *peer_id;       /* --peer-id, NULL = trust the rendezvous */
    int transport;
    double timeout_s;
    const char *file;          /* send: FILE */
    const char *out_dir;       /* recv: --out (default ".") */
    bool force;                /* recv: --force */
    double test_rate;          /* send: PUNCHLINE_SHARE_TEST_RATE bytes/s, 0 = off */
    /* run state */
    bool connected;
    bool concluded;            /* the outcome is known; waiting for the close */
    bool stopping;             /* the loop has ended: on_closed is moot */
    bool aborting;             /* pl_conn_close() called, exiting on its on_closed */
    int exit_code;
    uint8_t ctl[SHARE_CTL_QUEUE][SM_MAX_CONTROL];
    size_t ctl_len[SHARE_CTL_QUEUE];
    unsigned ctl_n;
    bool shutdown_wanted;      /* pl_conn_shutdown once ctl is flushed */
    ev_timer timeout_w, tick_w, linger_w;
    ev_idle work_w;            /* share_background() */
    int (*work_step)(share *sh);
    void (*work_done)(share *sh);
    ev_signal sigint_w, sigterm_w;
    progress pg;
};

extern const share_role share_sender;
extern const share_role share_receiver;
/* Set up the role's state (sh->state) before connecting: open the file /
 * nothing yet.  0, or exit status 1/2 after printing why. */
int send_prepare(share *sh);
/* Sender: move the progress bar to what the receiver acknowledged. */
void send_progress(share *sh);
int recv_prepare(share *sh);

/* A control message (ACCEPT, ERROR, START, DONE, VERDICT): sent now, or
 * queued in order until the connection has room.  Data must not overtake
 * it: a role sends DATA only when share_ctl_idle(). */
void share_ctl(share *sh, const uint8_t *msg, size_t len);
bool share_ctl_idle(const share *sh);
/* The connection is there and the outcome still open: the role may act. */
bool share_active(const share *sh);
/* The outcome is known (final line printed or failure said): finish our
 * side of the connection and exit with code once the peer finished too (or
 * after a grace period). */
void share_conclude(share *sh, int code);
/* Send ERROR(reason, text) to the peer, say "punchline-share: <text>" on
 * stderr (fmt), and conclude with exit 1. */
void share_fail(share *sh, uint8_t reason, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Long work (hashing what a part file holds) in slices, whenever the loop
 * is idle, so the connection keeps being served: step(sh) until it returns
 * 1 (then done(sh) runs) or -1 (it has failed and said so; done is not
 * called). */
void share_background(share *sh, int (*step)(share *sh), void (*done)(share *sh));
/* Stop the loop now with this exit code. */
void share_exit(share *sh, int code);
/* A status line on stderr, above the progress bar. */
#define share_log(sh, ...) pg_print(&(sh)->pg, __VA_ARGS__)
/* The current path's name ("direct-udp", ...). */
const char *share_path_name(const share *sh);
/* The final line's rate: bytes over seconds, in MB/s (10^6). */
double share_mbps(uint64_t bytes, double seconds);

#endif
