/* Socket addresses: parsing "HOST:PORT", printing, and conversion to and
 * from the wire Endpoint (raw 4- or 16-byte address + port). */
#ifndef PL_ADDR_H
#define PL_ADDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "punchline.pb-c.h"

typedef struct netaddr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } u;
    socklen_t len; /* 0 = no address */
} netaddr;

#define NETADDR_STRLEN 64 /* "[v6]:port" fits */

/* "1.2.3.4:5", "[::1]:5", or "host:5" when resolve is true (getaddrinfo,
 * blocking, IPv4 preferred).  Returns 0, -1 for bad syntax, -2 when the host
 * does not resolve. */
int netaddr_parse(const char *s, netaddr *out, bool resolve);
/* Writes "IP:PORT" (or "[IP]:PORT"); always NUL-terminates. */
void netaddr_format(const netaddr *a, char *buf, size_t cap);
bool netaddr_equal(const netaddr *a, const netaddr *b);
void netaddr_from_sockaddr(netaddr *out, const struct sockaddr *sa, socklen_t len);
uint16_t netaddr_port(const netaddr *a);

/* Fill a wire Endpoint; ipbuf (16 bytes) backs ep->ip and must outlive ep. */
void netaddr_to_endpoint(const netaddr *a, Punchline__Endpoint *ep, uint8_t ipbuf[16]);
/* 0 on success; -1 if the endpoint is not a 4/16-byte address with a port
 * in 1..65535. */
int netaddr_from_endpoint(const Punchline__Endpoint *ep, netaddr *out);
/* May a peer send probes there?  No unspecified address, port 0, multicast
 * or limited broadcast (RFC 8445 s19.5.1: candidates must not aim our
 * packets at arbitrary targets).  Loopback is allowed: same-host peers. */
bool netaddr_is_usable_candidate(const netaddr *a);
/* 127.0.0.0/8, ::1, and ::ffff:127.x.y.z (which reaches 127.x.y.z). */
bool netaddr_is_loopback(const netaddr *a);
/* May a peer whose control connection comes from seen_from announce cand as
 * one of its own (host or reflexive) candidates?  A usable candidate, and a
 * loopback one only from a peer on the server's own host: anyone else's
 * 127.0.0.1 would aim the other peer's probes and TCP attempts at services
 * on the other peer's own host (docs/SECURITY.md, "Hostile input"). */
bool netaddr_candidate_plausible(const netaddr *cand, const netaddr *seen_from);

#endif
