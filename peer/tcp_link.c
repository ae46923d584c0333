#include "tcp_link.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "timeutil.h"

static void destroy(tcp_link *l)
{
    ev_io_stop(l->loop, &l->rio);
    ev_io_stop(l->loop, &l->wio);
    if (l->fd >= 0)
        close(l->fd);
    frame_reader_reset(&l->fr);
    free(l->out);
    free(l);
}

void tcp_link_free(tcp_link *l)
{
    if (!l)
        return;
    if (l->in_cb) {
        /* inside our own callback: stop everything now, free on return */
        l->dead = true;
        ev_io_stop(l->loop, &l->rio);
        ev_io_stop(l->loop, &l->wio);
        return;
    }
    destroy(l);
}

/* Run a callback; returns false if the link was freed by it. */
#define CALL(l, expr)                                                                              \
    do {                                                                                           \
        (l)->in_cb = true;                                                                         \
        expr;                                                                                      \
        (l)->in_cb = false;                                                                        \
        if ((l)->dead) {                                                                           \
            destroy(l);                                                                            \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static void fail(tcp_link *l, int err)
{
    ev_io_stop(l->loop, &l->rio);
    ev_io_stop(l->loop, &l->wio);
    if (l->ops && l->ops->on_close)
        CALL(l, l->ops->on_close(l, err, l->user));
}

/* Send what is queued; true when the queue emptied. */
static bool flush(tcp_link *l)
{
    while (l->out_len) {
        ssize_t n = send(l->fd, l->out + l->out_off, l->out_len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                ev_io_start(l->loop, &l->wio);
                return false;
            }
            if (errno == EINTR)
                continue;
            fail(l, errno);
            return false;
        }
        l->out_off += (size_t)n;
        l->out_len -= (size_t)n;
    }
    l->out_off = 0;
    ev_io_stop(l->loop, &l->wio);
    return true;
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    tcp_link *l = w->data;
    if (l->connecting) {
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err == 0) {
            /* A TCP self-connect (our own address and port as candidate)
             * completes a handshake with ourselves: that is not the peer. */
            struct sockaddr_storage a, b;
            socklen_t al = sizeof(a), bl = sizeof(b);
            netaddr na, nb;
            if (getsockname(l->fd, (struct sockaddr *)&a, &al) == 0 &&
                getpeername(l->fd, (struct sockaddr *)&b, &bl) == 0) {
                netaddr_from_sockaddr(&na, (struct sockaddr *)&a, al);
                netaddr_from_sockaddr(&nb, (struct sockaddr *)&b, bl);
                if (netaddr_equal(&na, &nb))
                    err = ECONNREFUSED;
            } else {
                err = ENOTCONN;
            }
        }
        l->connecting = false;
        ev_io_stop(loop, &l->wio);
        if (err == 0)
            ev_io_start(loop, &l->rio);
        if (l->ops && l->ops->on_connect)
            CALL(l, l->ops->on_connect(l, err, l->user));
        if (err == 0 && l->out_len)
            flush(l);
        return;
    }
    if (flush(l) && l->ops && l->ops->on_drain)
        CALL(l, l->ops->on_drain(l, l->user));
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    tcp_link *l = w->data;
    uint8_t buf[16384];
    ssize_t n = recv(l->fd, buf, sizeof(buf), 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        fail(l, n == 0 ? 0 : errno);
        return;
    }
    size_t off = 0;
    while (off < (size_t)n) {
        size_t used = 0;
        int st = frame_reader_feed(&l->fr, buf + off, (size_t)n - off, &used);
        off += used;
        if (st == FRAME_MORE)
            break;
        if (st != FRAME_READY) {
            fail(l, -1);
            return;
        }
        if (l->ops && l->ops->on_frame)
            CALL(l, l->ops->on_frame(l, l->fr.buf, l->fr.len, l->user));
        frame_reader_next(&l->fr);
        if (!ev_is_active(&l->rio))
            return; /* failed by a send inside the callback */
    }
}

int tcp_link_reuse(int fd)
{
    int one = 1;
    /* Every TCP socket of the peer carries small frames that must not wait
     * for a delayed ACK (Nagle): control messages, probes, DTLS records. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        return -1;
    return setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
}

static tcp_link *link_new(struct ev_loop *loop, int fd, const netaddr *remote,
                          const tcp_link_ops *ops, void *user, int tag)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* see tcp_link_reuse */
    tcp_link *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->loop = loop;
    l->fd = fd;
    l->remote = *remote;
    l->ops = ops;
    l->user = user;
    l->tag = tag;
    l->created_ms = time_now_ms();
    frame_reader_init(&l->fr);
    ev_io_init(&l->rio, read_cb, fd, EV_READ);
    ev_io_init(&l->wio, write_cb, fd, EV_WRITE);
    l->rio.data = l->wio.data = l;
    return l;
}

tcp_link *tcp_link_connect(struct ev_loop *loop, const netaddr *local, const netaddr *remote,
                           const tcp_link_ops *ops, void *user, int tag)
{
    int fd = socket(remote->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    if (tcp_link_reuse(fd) < 0 || (local && bind(fd, &local->u.sa, local->len) < 0) ||
        (connect(fd, &remote->u.sa, remote->len) < 0 && errno != EINPROGRESS)) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    tcp_link *l = link_new(loop, fd, remote, ops, user, tag);
    if (!l) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    l->connecting = true;
    ev_io_start(loop, &l->wio);
    return l;
}

tcp_link *tcp_link_adopt(struct ev_loop *loop, int fd, const netaddr *remote,
                         const tcp_link_ops *ops, void *user, int tag)
{
    tcp_link *l = link_new(loop, fd, remote, ops, user, tag);
    if (l)
        ev_io_start(loop, &l->rio);
    return l;
}

void tcp_link_set_owner(tcp_link *l, const tcp_link_ops *ops, void *user, int tag)
{
    l->ops = ops;
    l->user = user;
    l->tag = tag;
}

int tcp_link_send(tcp_link *l, const uint8_t *body, size_t len)
{
    if (l->dead || len == 0 || len > FRAME_MAX)
        return -1;
    size_t total = len + FRAME_HEADER;
    if (l->out_len + total > TCP_LINK_OUT_MAX)
        return -1; /* the peer is not reading; the owner decides what to do */
    if (l->out_off && l->out_off + l->out_len + total > l->out_cap) {
        memmove(l->out, l->out + l->out_off, l->out_len);
        l->out_off = 0;
    }
    if (l->out_len + total > l->out_cap) {
        size_t cap = l->out_cap ? l->out_cap : 4096;
        while (cap < l->out_len + total)
            cap *= 2;
        uint8_t *o = realloc(l->out, cap);
        if (!o)
            return -1;
        l->out = o;
        l->out_cap = cap;
    }
    frame_put_header(l->out + l->out_off + l->out_len, (uint32_t)len);
    memcpy(l->out + l->out_off + l->out_len + FRAME_HEADER, body, len);
    l->out_len += total;
    if (!l->connecting && !ev_is_active(&l->wio))
        ev_io_start(l->loop, &l->wio); /* flushed from the loop */
    return 0;
}

size_t tcp_link_backlog(const tcp_link *l)
{
    return l ? l->out_len : 0;
}

void tcp_link_flush_now(tcp_link *l)
{
    if (l && !l->dead && !l->connecting && l->out_len)
        flush(l);
}
