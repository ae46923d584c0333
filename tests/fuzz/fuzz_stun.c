/* STUN parser (proto/stun.c) and the answers built from what it parsed:
 * every answer is itself a well-formed STUN message that our own parser
 * reads back (same transaction id, FINGERPRINT valid if present) and a
 * Binding success carries the mapped address back un-XORed. */
#include "fuzz.h"

#include <string.h>

#include "stun.h"

static void check_reply(const stun_msg *req, const uint8_t *out, size_t n, uint16_t type)
{
    stun_msg back;
    FUZZ_CHECK(n >= STUN_HEADER && n % 4 == 0);
    FUZZ_CHECK(stun_parse(out, n, &back) == STUN_OK);
    FUZZ_CHECK(back.type == type);
    FUZZ_CHECK(memcmp(back.tid, req->tid, 12) == 0);
    FUZZ_CHECK(back.has_fingerprint == req->has_fingerprint);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    stun_msg m;
    int rc = stun_parse(data, size, &m);
    FUZZ_CHECK(rc == STUN_OK || rc == STUN_E_NOT_STUN || rc == STUN_E_MALFORMED ||
               rc == STUN_E_FINGERPRINT);
    if (rc != STUN_OK)
        return 0;
    FUZZ_CHECK(m.len == size && size >= STUN_HEADER && size % 4 == 0);
    FUZZ_CHECK(m.n_unknown <= STUN_MAX_UNKNOWN);
    if (m.software)
        FUZZ_CHECK(m.software >= data + STUN_HEADER &&
                   m.software + m.software_len <= data + size);
    if (m.username)
        FUZZ_CHECK(m.username >= data + STUN_HEADER &&
                   m.username + m.username_len <= data + size);
    if (m.has_xor_mapped)
        FUZZ_CHECK(m.xor_mapped.len != 0);

    uint8_t out[512];
    static const char *const mapped_text[] = {"192.0.2.1:3478", "[2001:db8::2]:1"};
    for (int i = 0; i < 2; i++) {
        netaddr mapped;
        FUZZ_CHECK(netaddr_parse(mapped_text[i], &mapped, false) == 0);
        size_t n = stun_binding_success(&m, &mapped, out, sizeof(out));
        check_reply(&m, out, n, STUN_BINDING_SUCCESS);
        stun_msg back;
        FUZZ_CHECK(stun_parse(out, n, &back) == STUN_OK && back.has_xor_mapped);
        FUZZ_CHECK(netaddr_equal(&back.xor_mapped, &mapped));
    }
    size_t n = stun_binding_error(&m, 420, "Unknown Attribute", out, sizeof(out));
    check_reply(&m, out, n, STUN_BINDING_ERROR);
    /* too small a buffer is refused, never overrun */
    for (size_t cap = 0; cap < n; cap += 7)
        FUZZ_CHECK(stun_binding_error(&m, 420, "Unknown Attribute", out, cap) == 0);
    return 0;
}
