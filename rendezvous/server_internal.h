/* Shared between the rendezvous shell files; not used by anything else. */
#ifndef PL_SERVER_INTERNAL_H
#define PL_SERVER_INTERNAL_H

#include <ev.h>

#include "frame.h"
#include "punchline/punchline.h"
#include "registry.h"
#include "server.h"
#include "wire.h"

#define SRV_OUT_MAX (256 * 1024) /* queued bytes per connection before we drop it */

typedef struct srv_conn {
    server *srv;
    int fd;
    ev_io rio, wio;
    netaddr remote;
    frame_reader fr;
    reg_peer *peer;              /* NULL until registered */
    uint64_t opened_ms;
    uint8_t *out;
    size_t out_len, out_cap;
    int closing;                 /* flush then close */
    uint64_t closing_ms;
    struct srv_conn *prev, *next;
} srv_conn;

struct server {
    struct ev_loop *loop;
    server_config cfg;
    registry *reg;
    int tcp_fd, udp_fd;
    ev_io accept_w, udp_w;
    ev_timer tick;               /* expiry, registration deadlines */
    srv_conn *conns;
    size_t nconns;
    netaddr local;
};

void srv_log(const server *s, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
uint64_t srv_random64(void);
void srv_random_bytes(uint8_t *buf, size_t len);

/* server_conn.c */
void srv_conn_accept(server *s, int fd, const netaddr *remote);
void srv_conn_free(srv_conn *c);
int srv_conn_send(srv_conn *c, Punchline__Envelope *env);
void srv_conn_send_error(srv_conn *c, Punchline__ErrorCode code, uint32_t request_id,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void srv_conn_close_after_flush(srv_conn *c);

/* server_udp.c */
void srv_udp_readable(struct ev_loop *loop, ev_io *w, int revents);

#endif
