/* proto/stun.c: parsing checked against the RFC 5769 sample messages
 * (s2.1 request, s2.2 IPv4 response, s2.3 IPv6 response), hostile input
 * refused, and the responses a Binding server builds (RFC 8489). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

#include "stun.h"

/* RFC 5769 s2.1: sample request (108 bytes) */
static const uint8_t rfc_req[] = {
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14,
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
    0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf};

/* RFC 5769 s2.2: sample IPv4 response (80 bytes), mapped 192.0.2.1:32853 */
static const uint8_t rfc_resp4[] = {
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96};

/* RFC 5769 s2.3: sample IPv6 response (96 bytes),
 * mapped [2001:db8:1234:5678:11:2233:4455:6677]:32853 */
static const uint8_t rfc_resp6[] = {
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa,
    0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9, 0x00, 0x08, 0x00, 0x14,
    0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75,
    0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c};

static netaddr addr(const char *s)
{
    netaddr a;
    cr_assert_eq(netaddr_parse(s, &a, false), 0, "%s", s);
    return a;
}

/* ---- RFC 5769 vectors ---------------------------------------------------- */

Test(rfc5769, sample_request)
{
    stun_msg m;
    cr_assert_eq(stun_parse(rfc_req, sizeof(rfc_req), &m), STUN_OK);
    cr_assert_eq(m.type, STUN_BINDING_REQUEST);
    cr_assert_eq(memcmp(m.tid, rfc_req + 8, 12), 0);
    cr_assert(m.has_fingerprint, "FINGERPRINT verified");
    cr_assert(m.has_integrity);
    cr_assert_eq(m.software_len, 16);
    cr_assert_eq(memcmp(m.software, "STUN test client", 16), 0);
    cr_assert_eq(m.username_len, 9);
    cr_assert_eq(memcmp(m.username, "evtj:h6vY", 9), 0);
    cr_assert_eq(m.n_unknown, 0, "PRIORITY is understood, ICE-CONTROLLED is optional");
}

Test(rfc5769, sample_ipv4_response)
{
    stun_msg m;
    cr_assert_eq(stun_parse(rfc_resp4, sizeof(rfc_resp4), &m), STUN_OK);
    cr_assert_eq(m.type, STUN_BINDING_SUCCESS);
    cr_assert(m.has_fingerprint);
    cr_assert(m.has_xor_mapped);
    netaddr want = addr("192.0.2.1:32853");
    cr_assert(netaddr_equal(&m.xor_mapped, &want));
    cr_assert_eq(m.software_len, 11);
    cr_assert_eq(memcmp(m.software, "test vector", 11), 0);
}

Test(rfc5769, sample_ipv6_response)
{
    stun_msg m;
    cr_assert_eq(stun_parse(rfc_resp6, sizeof(rfc_resp6), &m), STUN_OK);
    cr_assert(m.has_xor_mapped);
    netaddr want = addr("[2001:db8:1234:5678:11:2233:4455:6677]:32853");
    char got[NETADDR_STRLEN];
    netaddr_format(&m.xor_mapped, got, sizeof(got));
    cr_assert(netaddr_equal(&m.xor_mapped, &want), "got %s", got);
}

/* Our encoder produces the vector's XOR-MAPPED-ADDRESS bytes exactly. */
Test(rfc5769, xor_mapped_address_encoding_matches)
{
    stun_msg req;
    cr_assert_eq(stun_parse(rfc_req, sizeof(rfc_req), &req), STUN_OK);
    uint8_t out[128];
    netaddr a4 = addr("192.0.2.1:32853"), a6 = addr("[2001:db8:1234:5678:11:2233:4455:6677]:32853");
    size_t n = stun_binding_success(&req, &a4, out, sizeof(out));
    cr_assert_eq(n, 20 + 12 + 8, "header, XOR-MAPPED-ADDRESS, FINGERPRINT (the request had one)");
    cr_assert_eq(memcmp(out + 20, rfc_resp4 + 36, 12), 0, "IPv4 attribute as in RFC 5769 s2.2");
    n = stun_binding_success(&req, &a6, out, sizeof(out));
    cr_assert_eq(n, 20 + 24 + 8);
    cr_assert_eq(memcmp(out + 20, rfc_resp6 + 36, 24), 0, "IPv6 attribute as in RFC 5769 s2.3");
    stun_msg back;
    cr_assert_eq(stun_parse(out, n, &back), STUN_OK, "our response verifies (FINGERPRINT)");
    cr_assert(netaddr_equal(&back.xor_mapped, &a6));
}

/* ---- hostile input -------------------------------------------------------- */

/* Every byte of a vector, flipped, is caught: as a bad header, or by the
 * FINGERPRINT, or as a malformed attribute.  The one exception is the
 * FINGERPRINT's own type field: flipped, it names an unknown optional
 * attribute, and the message is then one without a fingerprint. */
Test(hostile, any_flipped_byte_is_refused)
{
    const struct { const uint8_t *v; size_t n; } vec[] = {
        {rfc_req, sizeof(rfc_req)}, {rfc_resp4, sizeof(rfc_resp4)}, {rfc_resp6, sizeof(rfc_resp6)}};
    for (size_t k = 0; k < 3; k++) {
        for (size_t i = 0; i < vec[k].n; i++) {
            uint8_t b[128];
            memcpy(b, vec[k].v, vec[k].n);
            b[i] ^= 0x40;
            stun_msg m;
            int rc = stun_parse(b, vec[k].n, &m);
            if ((i == vec[k].n - 8 || i == vec[k].n - 7) && rc == STUN_OK)
                cr_assert_not(m.has_fingerprint, "vector %zu: FINGERPRINT type flipped", k);
            else
                cr_assert_neq(rc, STUN_OK, "vector %zu byte %zu", k, i);
        }
    }
}

Test(hostile, every_truncation_is_refused)
{
    for (size_t n = 0; n < sizeof(rfc_req); n++) {
        stun_msg m;
        cr_assert_neq(stun_parse(rfc_req, n, &m), STUN_OK, "prefix of %zu bytes", n);
    }
}

struct bad_case {
    const char *what;
    uint8_t msg[40];
    size_t len;
    int want;
};

ParameterizedTestParameters(hostile, bad_messages)
{
    static struct bad_case cases[] = {
        {"bad magic cookie", {0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x43}, 20, STUN_E_NOT_STUN},
        {"top bits set", {0x40, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42}, 20, STUN_E_NOT_STUN},
        {"length not a multiple of 4", {0, 1, 0, 2, 0x21, 0x12, 0xa4, 0x42}, 22, STUN_E_NOT_STUN},
        {"length beyond the datagram", {0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42}, 20, STUN_E_NOT_STUN},
        {"length short of the datagram", {0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42}, 24, STUN_E_NOT_STUN},
        {"attribute overruns the message",
         {0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42, [20] = 0x80, 0x22, 0x00, 0x10, 'a', 'b', 'c', 'd'},
         28, STUN_E_MALFORMED},
        {"padding overruns the message",
         {0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42, [20] = 0x80, 0x22, 0x00, 0x05, 'a', 'b', 'c', 'd'},
         28, STUN_E_MALFORMED},
        {"FINGERPRINT of the wrong size",
         {0, 1, 0, 12, 0x21, 0x12, 0xa4, 0x42, [20] = 0x80, 0x28, 0x00, 0x08},
         32, STUN_E_MALFORMED},
        {"FINGERPRINT that does not match",
         {0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42, [20] = 0x80, 0x28, 0x00, 0x04, 1, 2, 3, 4},
         28, STUN_E_FINGERPRINT},
    };
    return cr_make_param_array(struct bad_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct bad_case *c, hostile, bad_messages)
{
    stun_msg m;
    cr_assert_eq(stun_parse(c->msg, c->len, &m), c->want, "%s", c->what);
}

Test(hostile, attribute_after_fingerprint_is_refused)
{
    uint8_t b[40] = {0, 1, 0, 16, 0x21, 0x12, 0xa4, 0x42};
    b[20] = 0x80, b[21] = 0x28, b[23] = 4;
    uint32_t fp = stun_fingerprint(b, 20);
    b[24] = (uint8_t)(fp >> 24), b[25] = (uint8_t)(fp >> 16), b[26] = (uint8_t)(fp >> 8), b[27] = (uint8_t)fp;
    b[28] = 0x80, b[29] = 0x22, b[31] = 4; /* SOFTWARE after FINGERPRINT */
    stun_msg m;
    cr_assert_eq(stun_parse(b, 36, &m), STUN_E_MALFORMED);
}

/* ---- responses ------------------------------------------------------------ */

Test(response, unknown_comprehension_required_attribute_gets_420)
{
    uint8_t b[28] = {0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42, 9, 9, 9};
    b[20] = 0x7f, b[21] = 0x00, b[23] = 4; /* type 0x7f00: unknown, required */
    stun_msg req;
    cr_assert_eq(stun_parse(b, sizeof(b), &req), STUN_OK);
    cr_assert_eq(req.n_unknown, 1);
    cr_assert_eq(req.unknown[0], 0x7f00);
    uint8_t out[128];
    size_t n = stun_binding_error(&req, 420, "Unknown Attribute", out, sizeof(out));
    cr_assert_gt(n, 0);
    cr_assert_eq(out[0] << 8 | out[1], STUN_BINDING_ERROR);
    cr_assert_eq(memcmp(out + 8, b + 8, 12), 0, "same transaction id");
    cr_assert_eq(out[20] << 8 | out[21], STUN_ATTR_ERROR_CODE);
    cr_assert_eq(out[26], 4, "class 4");
    cr_assert_eq(out[27], 20, "number 20");
    size_t off = 20 + 4 + ((4 + strlen("Unknown Attribute") + 3) & ~3u);
    cr_assert_eq(out[off] << 8 | out[off + 1], STUN_ATTR_UNKNOWN_ATTRIBUTES);
    cr_assert_eq(out[off + 4] << 8 | out[off + 5], 0x7f00);
    stun_msg back;
    cr_assert_eq(stun_parse(out, n, &back), STUN_OK, "the error response is well formed");
    /* an unknown optional attribute (>= 0x8000) is ignored */
    b[20] = 0x8f;
    cr_assert_eq(stun_parse(b, sizeof(b), &req), STUN_OK);
    cr_assert_eq(req.n_unknown, 0);
}

Test(response, success_without_fingerprint_when_the_request_had_none)
{
    uint8_t b[20] = {0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    stun_msg req;
    cr_assert_eq(stun_parse(b, sizeof(b), &req), STUN_OK);
    netaddr a = addr("203.0.113.7:40000");
    uint8_t out[64];
    size_t n = stun_binding_success(&req, &a, out, sizeof(out));
    cr_assert_eq(n, 32, "header + XOR-MAPPED-ADDRESS: 1.6x the request, under the 3x bound");
    stun_msg back;
    cr_assert_eq(stun_parse(out, n, &back), STUN_OK);
    cr_assert(!back.has_fingerprint);
    cr_assert(netaddr_equal(&back.xor_mapped, &a));
    cr_assert_eq(stun_binding_success(&req, &a, out, 31), 0, "too small a buffer");
}

/* The client side: our request parses as a Binding request with a valid
 * FINGERPRINT, and a server's success answer to it yields the address. */
Test(stun, binding_request_round_trip)
{
    uint8_t tid[12], req[64], resp[128];
    for (int i = 0; i < 12; i++)
        tid[i] = (uint8_t)(0xA0 + i);
    size_t n = stun_binding_request(tid, req, sizeof(req));
    cr_assert_eq(n, 28);
    uint8_t small[27];
    cr_assert_eq(stun_binding_request(tid, small, sizeof(small)), 0);
    stun_msg m;
    cr_assert_eq(stun_parse(req, n, &m), STUN_OK);
    cr_assert_eq(m.type, STUN_BINDING_REQUEST);
    cr_assert(m.has_fingerprint);
    cr_assert_arr_eq(m.tid, tid, 12);
    netaddr mapped;
    cr_assert_eq(netaddr_parse("192.0.2.77:40123", &mapped, false), 0);
    size_t rn = stun_binding_success(&m, &mapped, resp, sizeof(resp));
    cr_assert_gt(rn, 0);
    stun_msg r;
    cr_assert_eq(stun_parse(resp, rn, &r), STUN_OK);
    cr_assert_eq(r.type, STUN_BINDING_SUCCESS);
    cr_assert_arr_eq(r.tid, tid, 12);
    cr_assert(r.has_xor_mapped);
    cr_assert(netaddr_equal(&r.xor_mapped, &mapped));
}

/* Duplicate XOR-MAPPED-ADDRESS (RFC 8489 s14: only the first occurrence
 * counts): a later one, valid or malformed, changes nothing.  A malformed
 * duplicate used to leave has_xor_mapped set with the address cleared
 * (tests/fuzz/corpus/stun/regress_xor_mapped_bad_duplicate). */
Test(hostile, duplicate_xor_mapped_address_first_counts)
{
    uint8_t tid[12] = {0}, resp[128];
    stun_msg req;
    size_t n = stun_binding_request(tid, resp, sizeof(resp));
    cr_assert_eq(stun_parse(resp, n, &req), STUN_OK);
    req.has_fingerprint = false;
    netaddr mapped = addr("192.0.2.77:40123");
    n = stun_binding_success(&req, &mapped, resp, sizeof(resp));
    cr_assert_eq(n, 32);
    static const uint8_t dups[][12] = {
        {0x00, 0x20, 0x00, 0x08, 0x00, 0x05, 0x00, 0x00, 0, 0, 0, 0}, /* family 5 */
        {0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0x00, 0x07, 1, 2, 3, 4}, /* another address */
    };
    for (size_t i = 0; i < 2; i++) {
        uint8_t m[128];
        memcpy(m, resp, n);
        memcpy(m + n, dups[i], sizeof(dups[i]));
        m[3] = (uint8_t)(n + sizeof(dups[i]) - STUN_HEADER);
        stun_msg r;
        cr_assert_eq(stun_parse(m, n + sizeof(dups[i]), &r), STUN_OK);
        cr_assert(r.has_xor_mapped, "case %zu", i);
        cr_assert(netaddr_equal(&r.xor_mapped, &mapped), "case %zu", i);
    }
}
