/* One framed, non-blocking TCP socket on the libev loop (the same 4-byte
 * length framing as the control connection, proto/frame.h).  Used for TCP
 * punching attempts, punched streams and connections accepted on the
 * peer's listening socket.  Owned by whoever created it; tcp_link_free()
 * may be called from inside its own callbacks (the free is deferred). */
#ifndef PL_TCP_LINK_H
#define PL_TCP_LINK_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "frame.h"

#define TCP_LINK_OUT_MAX (1024 * 1024) /* queued bytes before the link is failed */

typedef struct tcp_link tcp_link;

typedef struct tcp_link_ops {
    /* connect finished: err 0 on success, else an errno value */
    void (*on_connect)(tcp_link *l, int err, void *user);
    /* one frame body; valid only during the call */
    void (*on_frame)(tcp_link *l, const uint8_t *buf, size_t len, void *user);
    /* EOF (err 0), a socket error (errno) or a framing error (-1) */
    void (*on_close)(tcp_link *l, int err, void *user);
    /* optional: the send queue was waiting on the socket and is empty now */
    void (*on_drain)(tcp_link *l, void *user);
} tcp_link_ops;

struct tcp_link {
    struct ev_loop *loop;
    int fd;
    ev_io rio, wio;
    bool connecting;
    bool in_cb, dead;
    netaddr remote;
    frame_reader fr;
    uint8_t *out;
    size_t out_off, out_len, out_cap; /* queued: out[out_off .. out_off + out_len) */
    const tcp_link_ops *ops;
    void *user;
    int tag;                   /* the owner's label (candidate or stream index) */
    uint64_t created_ms;
    struct tcp_link *next;     /* for the owner's lists */
};

/* Set SO_REUSEADDR and SO_REUSEPORT so the control connection, the listener
 * and every punching attempt can share one local port. */
int tcp_link_reuse(int fd);
/* Non-blocking connect from local (its port fixed) to remote.  NULL + errno
 * on immediate failure. */
tcp_link *tcp_link_connect(struct ev_loop *loop, const netaddr *local, const netaddr *remote,
                           const tcp_link_ops *ops, void *user, int tag);
/* Wrap an accepted, connected socket. */
tcp_link *tcp_link_adopt(struct ev_loop *loop, int fd, const netaddr *remote,
                         const tcp_link_ops *ops, void *user, int tag);
/* Queue one frame (body = serialized Envelope).  0, or -1 if the link is
 * dead or its queue overflowed (it is then failed via on_close). */
int tcp_link_send(tcp_link *l, const uint8_t *body, size_t len);
void tcp_link_set_owner(tcp_link *l, const tcp_link_ops *ops, void *user, int tag);
/* Hand what is queued to the socket now, as far as it takes it (for a
 * last message before the link is freed). */
void tcp_link_flush_now(tcp_link *l);
/* Bytes queued and not yet handed to the socket. */
size_t tcp_link_backlog(const tcp_link *l);
void tcp_link_free(tcp_link *l);

#endif
