/* Unit tests for proto/addr.c: "HOST:PORT" parsing, printing, comparison,
 * conversion to and from the wire Endpoint, and the candidate filter.
 *
 * Rules checked: IPv6 literals need brackets (RFC 3986 s3.2.2), ports are
 * 0..65535 in text and 1..65535 on the wire, hostnames resolve only when the
 * caller allows it (and then only "localhost" here: no test reaches the
 * network, ARCHITECTURE.md rule 9), and a candidate must not aim our probes
 * at unspecified, multicast or broadcast addresses (RFC 8445 s19.5.1). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

#include "addr.h"

/* ---- helpers ------------------------------------------------------------ */

/* A test-side literal parser, independent of netaddr_parse(). */
static netaddr mk(const char *ip, uint16_t port)
{
    netaddr a;
    memset(&a, 0, sizeof(a));
    if (inet_pton(AF_INET, ip, &a.u.in4.sin_addr) == 1) {
        a.u.in4.sin_family = AF_INET;
        a.u.in4.sin_port = htons(port);
        a.len = sizeof(a.u.in4);
    } else {
        cr_assert_eq(inet_pton(AF_INET6, ip, &a.u.in6.sin6_addr), 1, "bad literal %s", ip);
        a.u.in6.sin6_family = AF_INET6;
        a.u.in6.sin6_port = htons(port);
        a.len = sizeof(a.u.in6);
    }
    return a;
}

static void fmt(const netaddr *a, char out[NETADDR_STRLEN])
{
    netaddr_format(a, out, NETADDR_STRLEN);
}

/* ---- netaddr_parse: accepted forms -------------------------------------- */

struct parse_ok {
    char in[64];
    int family;
    uint16_t port;
    char canonical[64]; /* netaddr_format() of the result */
};

ParameterizedTestParameters(parse, accepted)
{
    static struct parse_ok cases[] = {
        {"1.2.3.4:80", AF_INET, 80, "1.2.3.4:80"},
        {"[::1]:443", AF_INET6, 443, "[::1]:443"},
        {"255.255.255.255:65535", AF_INET, 65535, "255.255.255.255:65535"},
        {"0.0.0.0:0", AF_INET, 0, "0.0.0.0:0"}, /* bind "any, ephemeral" */
        {"[2001:DB8:0:0::1]:1", AF_INET6, 1, "[2001:db8::1]:1"},
        {"[::ffff:10.0.0.1]:9", AF_INET6, 9, "[::ffff:10.0.0.1]:9"},
    };
    return cr_make_param_array(struct parse_ok, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct parse_ok *c, parse, accepted)
{
    netaddr a;
    char buf[NETADDR_STRLEN];
    cr_assert_eq(netaddr_parse(c->in, &a, false), 0, "%s", c->in);
    cr_assert_eq(a.u.sa.sa_family, c->family, "%s", c->in);
    cr_assert_eq(netaddr_port(&a), c->port, "%s", c->in);
    cr_assert_eq(a.len, c->family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
    fmt(&a, buf);
    cr_assert_str_eq(buf, c->canonical);
}

/* ---- netaddr_parse: refused forms --------------------------------------- */

struct parse_bad {
    char in[80];
    bool resolve;
};

ParameterizedTestParameters(parse, refused)
{
    static struct parse_bad cases[] = {
        {"1.2.3.4:", false},          /* missing port */
        {"1.2.3.4", false},           /* no port at all */
        {"1.2.3.4:65536", false},     /* port out of range */
        {"1.2.3.4:99999999999", false},
        {"1.2.3.4:-1", false},
        {"1.2.3.4:80x", false},
        {"1.2.3.4:0x50", false},
        {":80", false},               /* no host */
        {"host", false},              /* no port */
        {"host", true},               /* no port, even when resolving */
        {"::1:80", false},            /* IPv6 without brackets is ambiguous */
        {"::1:80", true},
        {"[::1]80", false},           /* bracket not followed by ':' */
        {"[::1]", false},
        {"[::1:80", false},           /* unclosed bracket */
        {"[]:80", false},
        {"[1.2.3.4.5]:80", false},
        {"1.2.3.256:80", false},
        {"localhost:80", false},      /* a name without resolve=true */
        {"example.invalid:80", false},
        {"", false},
    };
    return cr_make_param_array(struct parse_bad, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct parse_bad *c, parse, refused)
{
    netaddr a;
    memset(&a, 0xab, sizeof(a));
    cr_assert_eq(netaddr_parse(c->in, &a, c->resolve), -1, "'%s' must be a syntax error", c->in);
    cr_assert_eq(a.len, 0, "a failed parse leaves no address");
}

Test(parse, null_string_refused)
{
    netaddr a;
    cr_assert_eq(netaddr_parse(NULL, &a, false), -1);
    cr_assert_eq(a.len, 0);
}

/* With resolve=true a name goes through getaddrinfo (IPv4 preferred).
 * Only "localhost" is used: it resolves from /etc/hosts, never the network. */
Test(parse, localhost_resolves_when_allowed)
{
    netaddr a;
    cr_assert_eq(netaddr_parse("localhost:80", &a, true), 0);
    cr_assert_neq(a.len, 0);
    cr_assert(netaddr_is_loopback(&a));
    cr_assert_eq(netaddr_port(&a), 80);
}

/* ---- netaddr_format ----------------------------------------------------- */

Test(format, v4_v6_and_empty)
{
    char buf[NETADDR_STRLEN];
    netaddr a = mk("192.0.2.1", 5000), b = mk("2001:db8::7", 65535), none;
    memset(&none, 0, sizeof(none));

    fmt(&a, buf);
    cr_assert_str_eq(buf, "192.0.2.1:5000");
    fmt(&b, buf);
    cr_assert_str_eq(buf, "[2001:db8::7]:65535");
    fmt(&none, buf);
    cr_assert_str_eq(buf, "-");
}

/* The longest IPv6 form fits NETADDR_STRLEN; a short buffer is truncated
 * but always NUL-terminated; cap 0 writes nothing. */
Test(format, fits_and_truncates_safely)
{
    char buf[NETADDR_STRLEN];
    netaddr a = mk("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535);
    fmt(&a, buf);
    cr_assert_str_eq(buf, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535");

    char small[6];
    memset(small, 'x', sizeof(small));
    netaddr b = mk("192.0.2.1", 80);
    netaddr_format(&b, small, sizeof(small));
    cr_assert_str_eq(small, "192.0");

    char untouched[2] = {'x', 'y'};
    netaddr_format(&b, untouched, 0);
    cr_assert_eq(untouched[0], 'x');
}

/* ---- netaddr_equal ------------------------------------------------------ */

/* Equality is address family + address + port, nothing else: the padding
 * of sockaddr_in (sin_zero) and kernel-filled fields must not matter. */
Test(equal, compares_address_and_port_only)
{
    netaddr a = mk("10.0.0.1", 80), b = mk("10.0.0.1", 80);
    memset(b.u.in4.sin_zero, 0x5a, sizeof(b.u.in4.sin_zero));
    cr_assert(netaddr_equal(&a, &b));
    cr_assert(netaddr_equal(&b, &a));

    netaddr port = mk("10.0.0.1", 81), ip = mk("10.0.0.2", 80), v6 = mk("::ffff:10.0.0.1", 80);
    cr_assert_not(netaddr_equal(&a, &port));
    cr_assert_not(netaddr_equal(&a, &ip));
    cr_assert_not(netaddr_equal(&a, &v6), "v4-mapped v6 is a different socket address");

    netaddr x = mk("2001:db8::1", 9), y = mk("2001:db8::1", 9), z = mk("2001:db8::2", 9);
    cr_assert(netaddr_equal(&x, &y));
    cr_assert_not(netaddr_equal(&x, &z));

    netaddr e1, e2;
    memset(&e1, 0, sizeof(e1));
    memset(&e2, 0, sizeof(e2));
    cr_assert_not(netaddr_equal(&e1, &e2), "no address equals nothing");
    cr_assert_not(netaddr_equal(&a, &e1));
}

/* ---- wire Endpoint conversion ------------------------------------------- */

/* to_endpoint -> from_endpoint is the identity for v4 and v6, and the raw
 * bytes are in network order (4 or 16 of them). */
Test(endpoint, round_trip_v4)
{
    netaddr a = mk("198.51.100.7", 3478), back;
    Punchline__Endpoint ep;
    uint8_t ipbuf[16];
    netaddr_to_endpoint(&a, &ep, ipbuf);
    cr_assert_eq(ep.ip.len, 4);
    cr_assert_eq(ep.ip.data, ipbuf);
    cr_assert_eq(memcmp(ep.ip.data, (uint8_t[]){198, 51, 100, 7}, 4), 0);
    cr_assert_eq(ep.port, 3478);
    cr_assert_eq(netaddr_from_endpoint(&ep, &back), 0);
    cr_assert(netaddr_equal(&a, &back));
}

Test(endpoint, round_trip_v6)
{
    netaddr a = mk("2001:db8::abcd", 65535), back;
    Punchline__Endpoint ep;
    uint8_t ipbuf[16];
    netaddr_to_endpoint(&a, &ep, ipbuf);
    cr_assert_eq(ep.ip.len, 16);
    cr_assert_eq(ep.ip.data[0], 0x20);
    cr_assert_eq(ep.ip.data[1], 0x01);
    cr_assert_eq(ep.ip.data[15], 0xcd);
    cr_assert_eq(ep.port, 65535);
    cr_assert_eq(netaddr_from_endpoint(&ep, &back), 0);
    cr_assert(netaddr_equal(&a, &back));
    cr_assert_eq(back.len, sizeof(struct sockaddr_in6));
}

struct bad_ep {
    uint8_t iplen;
    uint32_t port;
};

ParameterizedTestParameters(endpoint, from_endpoint_refuses)
{
    static struct bad_ep cases[] = {
        {4, 0},      /* port 0 */
        {16, 0},
        {4, 65536},  /* the wire field is uint32 */
        {4, 70000},
        {16, 0xffffffffu},
        {5, 80},     /* neither IPv4 nor IPv6 */
        {0, 80},
        {3, 80},
        {15, 80},
        {17, 80},
    };
    return cr_make_param_array(struct bad_ep, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct bad_ep *c, endpoint, from_endpoint_refuses)
{
    uint8_t ip[32];
    memset(ip, 1, sizeof(ip));
    Punchline__Endpoint ep = PUNCHLINE__ENDPOINT__INIT;
    ep.ip.data = ip;
    ep.ip.len = c->iplen;
    ep.port = c->port;
    netaddr out;
    memset(&out, 0xab, sizeof(out));
    cr_assert_eq(netaddr_from_endpoint(&ep, &out), -1, "ip len %u port %u", c->iplen, c->port);
    cr_assert_eq(out.len, 0);
}

Test(endpoint, from_null_refused)
{
    netaddr out;
    cr_assert_eq(netaddr_from_endpoint(NULL, &out), -1);
    cr_assert_eq(out.len, 0);
}

/* ---- netaddr_is_usable_candidate (RFC 8445 s19.5.1) ---------------------- */

struct cand_case {
    char ip[48];
    uint16_t port;
    bool usable;
};

ParameterizedTestParameters(candidate, usable)
{
    static struct cand_case cases[] = {
        {"0.0.0.0", 5, false},          /* unspecified */
        {"0.1.2.3", 5, false},          /* "this network" 0/8 */
        {"255.255.255.255", 5, false},  /* limited broadcast */
        {"224.0.0.1", 5, false},        /* multicast 224/4 */
        {"239.255.255.250", 1900, false},
        {"10.0.0.1", 0, false},         /* port 0 */
        {"::", 5, false},               /* unspecified */
        {"ff02::1", 5, false},          /* multicast */
        {"ff0e::1", 5, false},
        {"2001:db8::1", 0, false},
        {"10.0.0.1", 5, true},          /* private LAN: host candidates */
        {"127.0.0.1", 5, true},         /* loopback: same-host peers */
        {"192.168.1.20", 40000, true},
        {"203.0.113.9", 65535, true},
        {"223.255.255.255", 1, true},   /* just below multicast */
        {"::1", 5, true},
        {"2001:db8::1", 5, true},
        {"fe80::1", 5, true},
    };
    return cr_make_param_array(struct cand_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct cand_case *c, candidate, usable)
{
    netaddr a = mk(c->ip, c->port);
    cr_assert_eq(netaddr_is_usable_candidate(&a), c->usable, "%s port %u", c->ip, c->port);
}

Test(candidate, no_address_is_unusable)
{
    netaddr none;
    memset(&none, 0, sizeof(none));
    cr_assert_not(netaddr_is_usable_candidate(&none));
}

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d, RFC 4291 s2.5.5.2) reaches the
 * IPv4 address a.b.c.d from a dual-stack socket (a peer bound to "[::]"), so
 * the IPv4 exclusions must hold in that form too, or a hostile Candidates
 * message can aim our probes at broadcast or multicast after all. */
struct mapped_case {
    char ip[48];
};

ParameterizedTestParameters(candidate, v4_mapped_forms_of_refused_v4)
{
    static struct mapped_case cases[] = {
        {"::ffff:0.0.0.0"}, {"::ffff:255.255.255.255"}, {"::ffff:224.0.0.1"}, {"::ffff:0.1.2.3"},
    };
    return cr_make_param_array(struct mapped_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct mapped_case *c, candidate, v4_mapped_forms_of_refused_v4)
{
    netaddr a = mk(c->ip, 5);
    cr_assert_not(netaddr_is_usable_candidate(&a), "%s must be refused like its IPv4 form", c->ip);
}

/* ---- loopback ----------------------------------------------------------- */

Test(loopback, detects_127_8_and_v6_loopback)
{
    netaddr a = mk("127.0.0.1", 1), b = mk("127.255.0.9", 1), c = mk("::1", 1);
    netaddr d = mk("128.0.0.1", 1), e = mk("::2", 1), none;
    memset(&none, 0, sizeof(none));
    cr_assert(netaddr_is_loopback(&a));
    cr_assert(netaddr_is_loopback(&b));
    cr_assert(netaddr_is_loopback(&c));
    cr_assert_not(netaddr_is_loopback(&d));
    cr_assert_not(netaddr_is_loopback(&e));
    cr_assert_not(netaddr_is_loopback(&none));
}

Test(loopback, v4_mapped_loopback)
{
    netaddr a = mk("::ffff:127.0.0.1", 1), b = mk("::ffff:127.9.9.9", 1), c = mk("::ffff:10.0.0.1", 1);
    cr_assert(netaddr_is_loopback(&a));
    cr_assert(netaddr_is_loopback(&b));
    cr_assert_not(netaddr_is_loopback(&c));
}

/* ---- netaddr_candidate_plausible: what a peer may announce --------------- */

struct plausible_case {
    char cand[48];
    char from[48];
    bool ok;
};

ParameterizedTestParameters(candidate, plausible)
{
    static struct plausible_case cases[] = {
        /* a remote peer's loopback would aim the other peer at its own host */
        {"127.0.0.1", "203.0.113.5", false},
        {"127.0.0.53", "10.0.0.7", false},
        {"::1", "2001:db8::5", false},
        {"::ffff:127.0.0.1", "203.0.113.5", false},
        {"::1", "::ffff:203.0.113.5", false},
        /* a peer on the server's host: same-host peers may use it */
        {"127.0.0.1", "127.0.0.1", true},
        {"::1", "::1", true},
        {"127.0.0.2", "::ffff:127.0.0.1", true},
        /* everything else by netaddr_is_usable_candidate */
        {"10.0.0.1", "203.0.113.5", true},
        {"198.51.100.7", "203.0.113.5", true},
        {"0.0.0.0", "127.0.0.1", false},
        {"224.0.0.1", "127.0.0.1", false},
        {"255.255.255.255", "203.0.113.5", false},
    };
    return cr_make_param_array(struct plausible_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct plausible_case *c, candidate, plausible)
{
    netaddr cand = mk(c->cand, 5), from = mk(c->from, 40000);
    cr_assert_eq(netaddr_candidate_plausible(&cand, &from), c->ok, "%s announced by a peer at %s",
                 c->cand, c->from);
}
