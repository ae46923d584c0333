/* punchline-share recv: take one offer, answer with what the part file
 * already holds (length and SHA-256), write DATA from where the sender
 * starts, and on DONE compare the whole file's SHA-256, rename, and answer
 * with the verdict.
 *
 *   WAIT_OFFER --OFFER--> HASHING --(part file hashed, ACCEPT sent)-->
 *   WAIT_START --START--> RECEIVING --DONE--> concluded (VERDICT sent)
 *
 * Everything from the sender is hostile: lengths are checked by msg.c, the
 * name by sm_name_check(), every offset and byte count here against the
 * offered size, and any message out of place ends the transfer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"
#include "share.h"

/* A sender that connects but offers nothing is dropped after this. */
#define OFFER_TIMEOUT_S 30.0

typedef enum { R_WAIT_OFFER, R_HASHING, R_WAIT_START, R_RECEIVING } rstate;

typedef struct receiver {
    sf_writer *file;
    char name[SM_MAX_NAME + 1];
    uint64_t size;
    uint64_t start;
    rstate state;
    double t_start;
    ev_timer offer_w;
} receiver;

int recv_prepare(share *sh)
{
    char err[512];
    receiver *r = calloc(1, sizeof(*r));
    if (!r) {
        fprintf(stderr, "punchline-share: out of memory\n");
        return 1;
    }
    sh->state = r;
    if (sf_dir_check(sh->out_dir, err, sizeof(err)) != 0) {
        fprintf(stderr, "punchline-share: %s\n", err);
        return 2;
    }
    return 0;
}

static void recv_free(share *sh)
{
    receiver *r = sh->state;
    if (!r)
        return;
    if (sh->loop)
        ev_timer_stop(sh->loop, &r->offer_w);
    sf_writer_free(r->file);
    free(r);
    sh->state = NULL;
}

static void offer_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    share *sh = w->data;
    share_fail(sh, SM_R_PROTOCOL, "%s connected but offered no file within %.0f s",
               pl_conn_peer_name(sh->conn), OFFER_TIMEOUT_S);
}

/* Hash the part file's content (share_background). */
static int hash_step(share *sh)
{
    receiver *r = sh->state;
    char err[512];
    int rc = sf_writer_step(r->file, err, sizeof(err));
    if (rc < 0)
        share_fail(sh, SM_R_IO, "%s", err);
    return rc;
}

/* Tell the sender what we have. */
static void hash_done(share *sh)
{
    receiver *r = sh->state;
    uint8_t h[SM_HASH_LEN], m[SM_MAX_CONTROL];
    sf_writer_digest_so_far(r->file, h);
    share_ctl(sh, m, sm_encode_accept(m, sizeof(m), sf_writer_have(r->file), h));
    r->state = R_WAIT_START;
}

static void recv_connected(share *sh)
{
    receiver *r = sh->state;
    ev_timer_init(&r->offer_w, offer_timeout_cb, OFFER_TIMEOUT_S, 0.);
    r->offer_w.data = sh;
    ev_timer_start(sh->loop, &r->offer_w);
}

static void on_offer(share *sh, const sm_msg *m)
{
    receiver *r = sh->state;
    char shown[2 * SM_MAX_NAME], size[24], err[512];
    int reason;
    ev_timer_stop(sh->loop, &r->offer_w);
    if (m->version != SM_VERSION) {
        share_fail(sh, SM_R_VERSION, "%s speaks share protocol version %u, we speak %u",
                   pl_conn_peer_name(sh->conn), m->version, SM_VERSION);
        return;
    }
    const char *why = sm_name_check(m->name, m->name_len);
    if (why) {
        sm_printable(m->name, m->name_len, shown, sizeof(shown));
        share_fail(sh, SM_R_BAD_NAME, "refused the file name '%s' from %s: %s", shown,
                   pl_conn_peer_name(sh->conn), why);
        return;
    }
    memcpy(r->name, m->name, m->name_len);
    r->name[m->name_len] = 0;
    r->size = m->size;
    pg_size(r->size, size, sizeof(size));
    share_log(sh, "offer name=%s bytes=%llu (%s) from=%s", r->name, (unsigned long long)r->size,
              size, pl_conn_peer_name(sh->conn));
    if (sf_writer_open(&r->file, sh->out_dir, r->name, r->size, sh->force, &reason, err,
                       sizeof(err)) != 0) {
        share_fail(sh, (uint8_t)reason, "refused %s: %s", r->name, err);
        return;
    }
    if (sf_writer_have(r->file) > 0)
        share_log(sh, "%s holds %llu bytes of an earlier transfer: checking them",
                  sf_writer_part_path(r->file), (unsigned long long)sf_writer_have(r->file));
    r->state = R_HASHING;
    share_background(sh, hash_step, hash_done);
}

static void on_start(share *sh, const sm_msg *m)
{
    receiver *r = sh->state;
    char err[512];
    uint64_t had = sf_writer_have(r->file);
    if (sf_writer_start(r->file, m->offset, err, sizeof(err)) != 0) {
        share_fail(sh, m->offset ? SM_R_PROTOCOL : SM_R_IO, "%s", err);
        return;
    }
    r->start = m->offset;
    if (r->start > 0)
        share_log(sh, "resume name=%s offset=%llu of bytes=%llu", r->name,
                  (unsigned long long)r->start, (unsigned long long)r->size);
    else if (had > 0)
        share_log(sh, "the sender's %s differs from the partial one here: starting over", r->name);
    r->state = R_RECEIVING;
    r->t_start = ev_now(sh->loop);
    pg_begin(&sh->pg, r->name, r->size, r->start, r->t_start);
}

static void on_data(share *sh, const sm_msg *m)
{
    receiver *r = sh->state;
    char err[512];
    uint64_t pos = sf_writer_pos(r->file);
    if (m->data_len > r->size - pos) {
        share_fail(sh, SM_R_PROTOCOL, "%s sent more than the %llu bytes it offered",
                   pl_conn_peer_name(sh->conn), (unsigned long long)r->size);
        return;
    }
    if (sf_writer_write(r->file, m->data, m->data_len, err, sizeof(err)) != 0) {
        share_fail(sh, SM_R_IO, "%s", err);
        return;
    }
    pg_set_done(&sh->pg, pos + m->data_len);
}

static void on_done(share *sh, const sm_msg *m)
{
    receiver *r = sh->state;
    char hex[2 * SM_HASH_LEN + 1], theirs[2 * SM_HASH_LEN + 1], err[512];
    uint8_t h[SM_HASH_LEN], out[SM_MAX_CONTROL];
    double secs = ev_now(sh->loop) - r->t_start;
    uint64_t pos = sf_writer_pos(r->file);
    if (pos != r->size) {
        share_fail(sh, SM_R_PROTOCOL, "%s said done after %llu of %llu bytes",
                   pl_conn_peer_name(sh->conn), (unsigned long long)pos, (unsigned long long)r->size);
        return;
    }
    sf_writer_digest_so_far(r->file, h);
    sm_hex(h, hex);
    sm_hex(m->hash, theirs);
    pg_end(&sh->pg);
    if (memcmp(h, m->hash, SM_HASH_LEN)) {
        share_ctl(sh, out, sm_encode_verdict(out, sizeof(out), false, h));
        sf_writer_discard(r->file);
        share_log(sh, "punchline-share: SHA-256 mismatch: received %s, the sender has %s; "
                      "%s removed", hex, theirs, sf_writer_part_path(r->file));
        share_conclude(sh, 1);
        return;
    }
    if (sf_writer_commit(r->file, sh->force, err, sizeof(err)) != 0) {
        share_fail(sh, SM_R_IO, "%s (the received data stays in %s)", err,
                   sf_writer_part_path(r->file));
        return;
    }
    share_ctl(sh, out, sm_encode_verdict(out, sizeof(out), true, h));
    share_log(sh, "saved %s", sf_writer_final_path(r->file));
    printf("received %s bytes=%llu sha256=%s path=%s MBps=%.2f\n", r->name,
           (unsigned long long)r->size, hex, share_path_name(sh), share_mbps(r->size - r->start, secs));
    fflush(stdout);
    share_conclude(sh, 0);
}

static void recv_message(share *sh, const uint8_t *data, size_t len)
{
    receiver *r = sh->state;
    sm_msg m;
    char text[SM_MAX_TEXT + 1];
    if (sm_decode(data, len, &m) != 0) {
        share_fail(sh, SM_R_PROTOCOL, "malformed message (type %u, %zu bytes) from %s",
                   len ? data[0] : 0, len, pl_conn_peer_name(sh->conn));
        return;
    }
    if (m.type == SM_ERROR) {
        sm_printable(m.text, m.text_len, text, sizeof(text));
        pg_end(&sh->pg);
        share_log(sh, "punchline-share: %s stopped the transfer: %s%s%s", pl_conn_peer_name(sh->conn),
                  sm_reason_text(m.reason), *text ? ": " : "", text);
        if (r->file && sf_writer_pos(r->file) > 0)
            share_log(sh, "%llu bytes kept in %s", (unsigned long long)sf_writer_pos(r->file),
                      sf_writer_part_path(r->file));
        share_conclude(sh, 1);
    } else if (m.type == SM_OFFER && r->state == R_WAIT_OFFER) {
        on_offer(sh, &m);
    } else if (m.type == SM_START && r->state == R_WAIT_START) {
        on_start(sh, &m);
    } else if (m.type == SM_DATA && r->state == R_RECEIVING) {
        on_data(sh, &m);
    } else if (m.type == SM_DONE && r->state == R_RECEIVING) {
        on_done(sh, &m);
    } else {
        share_fail(sh, SM_R_PROTOCOL, "unexpected message type %u from %s", m.type,
                   pl_conn_peer_name(sh->conn));
    }
}

static void recv_writable(share *sh)
{
}

/* Said when a transfer stops half-way: what is kept for the next run. */
static void say_kept(share *sh)
{
    receiver *r = sh->state;
    if (!r->file)
        return;
    uint64_t pos = r->state == R_RECEIVING ? sf_writer_pos(r->file) : sf_writer_have(r->file);
    share_log(sh, "%llu of %llu bytes kept in %s: receive the same file again to resume",
              (unsigned long long)pos, (unsigned long long)r->size, sf_writer_part_path(r->file));
}

static void recv_peer_finished(share *sh)
{
    share_log(sh, "punchline-share: %s ended the connection before the file was complete",
              pl_conn_peer_name(sh->conn));
    say_kept(sh);
    share_conclude(sh, 1);
}

static void recv_closed(share *sh, int status)
{
    receiver *r = sh->state;
    share_log(sh, "punchline-share: connection %s: %s", r->file ? "lost" : "failed",
              pl_strerror(status));
    say_kept(sh);
}

static void recv_interrupted(share *sh)
{
    say_kept(sh);
}

const share_role share_receiver = {
    .connected = recv_connected,
    .message = recv_message,
    .writable = recv_writable,
    .peer_finished = recv_peer_finished,
    .closed = recv_closed,
    .interrupted = recv_interrupted,
    .free = recv_free,
};
