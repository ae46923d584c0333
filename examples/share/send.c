/* punchline-share send: offer the file, resume where the receiver's part
 * file ends if its prefix hash matches ours, stream the rest as DATA
 * messages under the connection's backpressure, then wait for the verdict.
 *
 *   OFFERED --ACCEPT--> HASHING --(prefix hashed)--> SENDING --(all queued,
 *   DONE sent)--> WAIT_VERDICT --VERDICT--> concluded
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"
#include "share.h"

/* DATA payload per message: 32 KiB amortizes the per-message costs while
 * the default send queue (4 MiB) holds over a hundred of them. */
#define CHUNK 32768

typedef enum { S_IDLE, S_OFFERED, S_HASHING, S_SENDING, S_WAIT_VERDICT } sstate;

typedef struct sender {
    sf_reader *file;
    const char *name;          /* FILE's base name (points into sh->file) */
    uint64_t size;
    uint64_t accept_offset;    /* what the receiver has */
    uint8_t accept_hash[SM_HASH_LEN];
    uint64_t start;            /* where this run's data starts */
    uint8_t digest[SM_HASH_LEN];
    sstate state;
    uint8_t *msg;              /* one DATA message: header + CHUNK */
    size_t msg_len;            /* 0 = none pending; else read, hashed, not yet queued */
    double t_start;
    ev_timer throttle_w;
} sender;

/* The last path component of path (FILE "a/b/c.txt" -> "c.txt"). */
static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int send_prepare(share *sh)
{
    char err[512];
    sender *s = calloc(1, sizeof(*s));
    if (!s || !(s->msg = malloc(SM_DATA_HEADER + CHUNK))) {
        free(s);
        fprintf(stderr, "punchline-share: out of memory\n");
        return 1;
    }
    sh->state = s;
    s->name = base_name(sh->file);
    const char *why = sm_name_check((const uint8_t *)s->name, strlen(s->name));
    if (why) {
        char shown[2 * SM_MAX_NAME];
        sm_printable((const uint8_t *)s->name, strlen(s->name), shown, sizeof(shown));
        fprintf(stderr, "punchline-share: cannot send '%s': %s; rename or link it first\n", shown, why);
        return 2;
    }
    if (sf_reader_open(&s->file, sh->file, err, sizeof(err)) != 0) {
        fprintf(stderr, "punchline-share: %s\n", err);
        return 2;
    }
    s->size = sf_reader_size(s->file);
    return 0;
}

static void send_free(share *sh)
{
    sender *s = sh->state;
    if (!s)
        return;
    if (sh->loop)
        ev_timer_stop(sh->loop, &s->throttle_w);
    sf_reader_free(s->file);
    free(s->msg);
    free(s);
    sh->state = NULL;
}

static void pump(share *sh);

static void throttle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    pump(w->data);
}

/* PUNCHLINE_SHARE_TEST_RATE: seconds to wait before the next chunk. */
static double throttle_wait(share *sh)
{
    sender *s = sh->state;
    double elapsed = ev_now(sh->loop) - s->t_start;
    double sent = (double)(sf_reader_pos(s->file) - s->start);
    double wait = sent / sh->test_rate - elapsed;
    return wait > 0.001 ? wait : 0;
}

/* Queue DATA until the connection is full (on_writable resumes), the test
 * throttle says wait, or the file is done: then DONE. */
static void pump(share *sh)
{
    sender *s = sh->state;
    char err[512];
    while (s->state == S_SENDING && share_active(sh) && share_ctl_idle(sh)) {
        if (!s->msg_len) {
            uint64_t pos = sf_reader_pos(s->file);
            if (pos == s->size) {
                uint8_t m[SM_MAX_CONTROL];
                /* what we read is what we hashed, so a file changed in place
                 * would still "match": refuse to vouch for it */
                if (sf_reader_changed(s->file, err, sizeof(err))) {
                    share_fail(sh, SM_R_IO, "%s", err);
                    return;
                }
                sf_reader_digest_so_far(s->file, s->digest);
                s->state = S_WAIT_VERDICT;
                share_ctl(sh, m, sm_encode_done(m, sizeof(m), s->digest));
                return;
            }
            double wait = sh->test_rate > 0 ? throttle_wait(sh) : 0;
            if (wait > 0) {
                ev_timer_stop(sh->loop, &s->throttle_w);
                ev_timer_set(&s->throttle_w, wait, 0.);
                ev_timer_start(sh->loop, &s->throttle_w);
                return;
            }
            size_t n = s->size - pos < CHUNK ? (size_t)(s->size - pos) : CHUNK;
            s->msg[0] = SM_DATA;
            if (sf_reader_read(s->file, s->msg + SM_DATA_HEADER, n, err, sizeof(err)) != 0) {
                share_fail(sh, SM_R_IO, "%s", err);
                return;
            }
            s->msg_len = SM_DATA_HEADER + n;
        }
        int rc = pl_conn_send(sh->conn, s->msg, s->msg_len);
        if (rc == PL_ERR_AGAIN)
            return; /* on_writable calls pump again */
        if (rc < 0) {
            share_fail(sh, SM_R_IO, "send: %s", pl_strerror(rc));
            return;
        }
        s->msg_len = 0;
        send_progress(sh);
    }
}

void send_progress(share *sh)
{
    sender *s = sh->state;
    if (!s || !s->file || !sh->conn || s->state != S_SENDING)
        return;
    /* what the receiver has acknowledged, not what we queued: the file
     * position less the connection's send queue (its few message headers
     * make this a slight underestimate) */
    pl_conn_stats st;
    pl_conn_get_stats(sh->conn, &st);
    uint64_t pos = sf_reader_pos(s->file);
    pg_set_done(&sh->pg, pos > st.queued ? pos - st.queued : 0);
}

/* The prefix the receiver has is hashed on our side too (share_background). */
static int hash_step(share *sh)
{
    sender *s = sh->state;
    char err[512];
    int rc = sf_reader_step(s->file, err, sizeof(err));
    if (rc < 0)
        share_fail(sh, SM_R_IO, "%s", err);
    return rc;
}

/* Resume if the receiver's prefix is ours, else start over. */
static void hash_done(share *sh)
{
    sender *s = sh->state;
    uint8_t mine[SM_HASH_LEN], m[SM_MAX_CONTROL];
    sf_reader_digest_so_far(s->file, mine);
    if (s->accept_offset > 0 && !memcmp(mine, s->accept_hash, SM_HASH_LEN)) {
        s->start = s->accept_offset;
        share_log(sh, "resume name=%s offset=%llu of bytes=%llu", s->name,
                  (unsigned long long)s->start, (unsigned long long)s->size);
    } else {
        if (s->accept_offset > 0)
            share_log(sh, "the receiver's partial %s (%llu bytes) differs from this file: "
                          "starting over", s->name, (unsigned long long)s->accept_offset);
        s->start = 0;
        sf_reader_rewind(s->file, 0);
    }
    share_ctl(sh, m, sm_encode_start(m, sizeof(m), s->start));
    s->state = S_SENDING;
    s->t_start = ev_now(sh->loop);
    pg_begin(&sh->pg, s->name, s->size, s->start, s->t_start);
    pump(sh);
}

static void send_connected(share *sh)
{
    sender *s = sh->state;
    uint8_t m[SM_MAX_CONTROL];
    ev_timer_init(&s->throttle_w, throttle_cb, 0., 0.);
    s->throttle_w.data = sh;
    share_log(sh, "offer name=%s bytes=%llu", s->name, (unsigned long long)s->size);
    share_ctl(sh, m, sm_encode_offer(m, sizeof(m), s->size, s->name, strlen(s->name)));
    s->state = S_OFFERED;
}

static void verdict(share *sh, const sm_msg *m)
{
    sender *s = sh->state;
    char hex[2 * SM_HASH_LEN + 1], theirs[2 * SM_HASH_LEN + 1];
    double secs = ev_now(sh->loop) - s->t_start;
    sm_hex(s->digest, hex);
    sm_hex(m->hash, theirs);
    pg_end(&sh->pg);
    if (!m->ok || memcmp(m->hash, s->digest, SM_HASH_LEN)) {
        share_log(sh, "punchline-share: the receiver's SHA-256 %s differs from ours %s: "
                      "the transfer failed", theirs, hex);
        share_conclude(sh, 1);
        return;
    }
    printf("sent %s bytes=%llu sha256=%s path=%s MBps=%.2f\n", s->name,
           (unsigned long long)s->size, hex, share_path_name(sh),
           share_mbps(s->size - s->start, secs));
    fflush(stdout);
    share_conclude(sh, 0);
}

static void send_message(share *sh, const uint8_t *data, size_t len)
{
    sender *s = sh->state;
    sm_msg m;
    char text[SM_MAX_TEXT + 1];
    if (sm_decode(data, len, &m) != 0) {
        share_fail(sh, SM_R_PROTOCOL, "malformed message from %s", pl_conn_peer_name(sh->conn));
        return;
    }
    if (m.type == SM_ERROR) {
        sm_printable(m.text, m.text_len, text, sizeof(text));
        pg_end(&sh->pg);
        share_log(sh, "punchline-share: %s refused the transfer: %s%s%s",
                  pl_conn_peer_name(sh->conn), sm_reason_text(m.reason), *text ? ": " : "", text);
        share_conclude(sh, 1);
    } else if (m.type == SM_ACCEPT && s->state == S_OFFERED) {
        if (m.offset > s->size) {
            share_fail(sh, SM_R_PROTOCOL, "receiver claims %llu bytes of a %llu-byte file",
                       (unsigned long long)m.offset, (unsigned long long)s->size);
            return;
        }
        s->accept_offset = m.offset;
        memcpy(s->accept_hash, m.hash, SM_HASH_LEN);
        s->state = S_HASHING;
        sf_reader_rewind(s->file, m.offset);
        if (m.offset > 0)
            share_log(sh, "the receiver has %llu bytes: checking them against this file",
                      (unsigned long long)m.offset);
        share_background(sh, hash_step, hash_done);
    } else if (m.type == SM_VERDICT && s->state == S_WAIT_VERDICT) {
        verdict(sh, &m);
    } else {
        share_fail(sh, SM_R_PROTOCOL, "unexpected message type %u from %s", m.type,
                   pl_conn_peer_name(sh->conn));
    }
}

static void send_writable(share *sh)
{
    pump(sh);
}

static void send_peer_finished(share *sh)
{
    share_fail(sh, SM_R_PROTOCOL, "%s ended the connection before confirming the file",
               pl_conn_peer_name(sh->conn));
}

static void send_closed(share *sh, int status)
{
    share_log(sh, "punchline-share: connection to %s failed: %s", sh->peer_name, pl_strerror(status));
}

static void send_interrupted(share *sh)
{
}

const share_role share_sender = {
    .connected = send_connected,
    .message = send_message,
    .writable = send_writable,
    .peer_finished = send_peer_finished,
    .closed = send_closed,
    .interrupted = send_interrupted,
    .free = send_free,
};
