#include "addr.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Digits only: strtol alone would take " 80", "+80" or "-0". */
static int parse_port(const char *s, uint16_t *out)
{
    uint32_t v = 0;
    if (!*s || strlen(s) > 5)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (uint32_t)(*s - '0');
    }
    if (v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

int netaddr_parse(const char *s, netaddr *out, bool resolve)
{
    char host[256];
    const char *port_s;
    uint16_t port;

    memset(out, 0, sizeof(*out));
    if (!s)
        return -1;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof(host))
            return -1;
        memcpy(host, s + 1, (size_t)(rb - s - 1));
        host[rb - s - 1] = 0;
        port_s = rb + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || colon == s || (size_t)(colon - s) >= sizeof(host) ||
            memchr(s, ':', (size_t)(colon - s)))
            return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
        port_s = colon + 1;
    }
    if (parse_port(port_s, &port) < 0)
        return -1;
    if (inet_pton(AF_INET, host, &out->u.in4.sin_addr) == 1) {
        out->u.in4.sin_family = AF_INET;
        out->u.in4.sin_port = htons(port);
        out->len = sizeof(out->u.in4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &out->u.in6.sin6_addr) == 1) {
        out->u.in6.sin6_family = AF_INET6;
        out->u.in6.sin6_port = htons(port);
        out->len = sizeof(out->u.in6);
        return 0;
    }
    if (!resolve)
        return -1;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) {
        hints.ai_family = AF_UNSPEC;
        if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
            return -2;
    }
    netaddr_from_sockaddr(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (out->u.sa.sa_family == AF_INET)
        out->u.in4.sin_port = htons(port);
    else
        out->u.in6.sin6_port = htons(port);
    return 0;
}

void netaddr_format(const netaddr *a, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    if (!cap)
        return;
    if (a->len && a->u.sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->u.in4.sin_addr, ip, sizeof(ip));
        snprintf(buf, cap, "%s:%u", ip, ntohs(a->u.in4.sin_port));
    } else if (a->len && a->u.sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->u.in6.sin6_addr, ip, sizeof(ip));
        snprintf(buf, cap, "[%s]:%u", ip, ntohs(a->u.in6.sin6_port));
    } else {
        snprintf(buf, cap, "-");
    }
}

bool netaddr_equal(const netaddr *a, const netaddr *b)
{
    if (!a->len || !b->len || a->u.sa.sa_family != b->u.sa.sa_family)
        return false;
    if (a->u.sa.sa_family == AF_INET)
        return a->u.in4.sin_port == b->u.in4.sin_port &&
               a->u.in4.sin_addr.s_addr == b->u.in4.sin_addr.s_addr;
    return a->u.in6.sin6_port == b->u.in6.sin6_port &&
           memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, 16) == 0;
}

void netaddr_from_sockaddr(netaddr *out, const struct sockaddr *sa, socklen_t len)
{
    memset(out, 0, sizeof(*out));
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        memcpy(&out->u.in4, sa, sizeof(struct sockaddr_in));
        out->len = sizeof(struct sockaddr_in);
    } else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        memcpy(&out->u.in6, sa, sizeof(struct sockaddr_in6));
        out->len = sizeof(struct sockaddr_in6);
    }
}

uint16_t netaddr_port(const netaddr *a)
{
    if (!a->len)
        return 0;
    return ntohs(a->u.sa.sa_family == AF_INET ? a->u.in4.sin_port : a->u.in6.sin6_port);
}

void netaddr_to_endpoint(const netaddr *a, Punchline__Endpoint *ep, uint8_t ipbuf[16])
{
    punchline__endpoint__init(ep);
    if (a->len && a->u.sa.sa_family == AF_INET) {
        memcpy(ipbuf, &a->u.in4.sin_addr, 4);
        ep->ip.len = 4;
    } else if (a->len) {
        memcpy(ipbuf, &a->u.in6.sin6_addr, 16);
        ep->ip.len = 16;
    }
    ep->ip.data = ipbuf;
    ep->port = netaddr_port(a);
}

int netaddr_from_endpoint(const Punchline__Endpoint *ep, netaddr *out)
{
    memset(out, 0, sizeof(*out));
    if (!ep || ep->port == 0 || ep->port > 65535)
        return -1;
    if (ep->ip.len == 4) {
        out->u.in4.sin_family = AF_INET;
        memcpy(&out->u.in4.sin_addr, ep->ip.data, 4);
        out->u.in4.sin_port = htons((uint16_t)ep->port);
        out->len = sizeof(out->u.in4);
        return 0;
    }
    if (ep->ip.len == 16) {
        out->u.in6.sin6_family = AF_INET6;
        memcpy(&out->u.in6.sin6_addr, ep->ip.data, 16);
        out->u.in6.sin6_port = htons((uint16_t)ep->port);
        out->len = sizeof(out->u.in6);
        return 0;
    }
    return -1;
}

bool netaddr_is_loopback(const netaddr *a)
{
    if (a->len && a->u.sa.sa_family == AF_INET)
        return (ntohl(a->u.in4.sin_addr.s_addr) >> 24) == 127;
    if (!a->len)
        return false;
    const struct in6_addr *ip6 = &a->u.in6.sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(ip6) || (IN6_IS_ADDR_V4MAPPED(ip6) && ip6->s6_addr[12] == 127);
}

static bool usable_v4(uint32_t ip)
{
    /* not 0.0.0.0/8 (incl. unspecified), not multicast 224/4, not broadcast */
    return (ip >> 24) != 0 && (ip >> 28) != 0xe && ip != 0xffffffffu;
}

bool netaddr_is_usable_candidate(const netaddr *a)
{
    if (!a->len || netaddr_port(a) == 0)
        return false;
    if (a->u.sa.sa_family == AF_INET)
        return usable_v4(ntohl(a->u.in4.sin_addr.s_addr));
    const struct in6_addr *ip6 = &a->u.in6.sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(ip6)) {
        /* ::ffff:a.b.c.d reaches the IPv4 address: same rules (the trick
         * behind coturn CVE-2020-26262). */
        uint32_t ip;
        memcpy(&ip, &ip6->s6_addr[12], 4);
        return usable_v4(ntohl(ip));
    }
    return !IN6_IS_ADDR_UNSPECIFIED(ip6) && !IN6_IS_ADDR_MULTICAST(ip6);
}

bool netaddr_candidate_plausible(const netaddr *cand, const netaddr *seen_from)
{
    return netaddr_is_usable_candidate(cand) &&
           (!netaddr_is_loopback(cand) || netaddr_is_loopback(seen_from));
}
