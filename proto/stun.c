#include "stun.h"

#include <arpa/inet.h>
#include <string.h>

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

uint32_t stun_fingerprint(const uint8_t *data, size_t len)
{
    uint32_t crc = 0xffffffffu; /* CRC-32 as in ISO 3309 / ITU-T V.42 */
    for (size_t i = 0; i < len; i++) {
        crc ^= data[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
    }
    return (crc ^ 0xffffffffu) ^ 0x5354554eu;
}

/* Comprehension-required attributes (type < 0x8000) a Binding server may
 * meet and can safely ignore or use.  Anything else in that range gets a
 * 420 (RFC 8489 s6.3.1); CHANGE-REQUEST (0x0003, RFC 5780) is deliberately
 * absent: we cannot answer from another address. */
static bool known_required(uint16_t t)
{
    switch (t) {
    case 0x0001: /* MAPPED-ADDRESS */
    case 0x0006: /* USERNAME */
    case 0x0008: /* MESSAGE-INTEGRITY */
    case 0x0009: /* ERROR-CODE */
    case 0x000A: /* UNKNOWN-ATTRIBUTES */
    case 0x0014: /* REALM */
    case 0x0015: /* NONCE */
    case 0x001C: /* MESSAGE-INTEGRITY-SHA256 */
    case 0x001D: /* PASSWORD-ALGORITHM */
    case 0x001E: /* USERHASH */
    case 0x0020: /* XOR-MAPPED-ADDRESS */
    case 0x0024: /* PRIORITY (ICE) */
    case 0x0025: /* USE-CANDIDATE (ICE) */
        return true;
    default:
        return false;
    }
}

static int parse_xor_address(const uint8_t *v, size_t n, const uint8_t *tid, netaddr *out)
{
    memset(out, 0, sizeof(*out));
    if (n < 4)
        return -1;
    uint16_t port = rd16(v + 2) ^ (uint16_t)(STUN_MAGIC >> 16);
    if (v[1] == 0x01 && n == 8) {
        out->u.in4.sin_family = AF_INET;
        out->u.in4.sin_port = htons(port);
        out->u.in4.sin_addr.s_addr = htonl(rd32(v + 4) ^ STUN_MAGIC);
        out->len = sizeof(out->u.in4);
        return 0;
    }
    if (v[1] == 0x02 && n == 20) {
        uint8_t key[16];
        wr32(key, STUN_MAGIC);
        memcpy(key + 4, tid, 12);
        out->u.in6.sin6_family = AF_INET6;
        out->u.in6.sin6_port = htons(port);
        for (int i = 0; i < 16; i++)
            out->u.in6.sin6_addr.s6_addr[i] = v[4 + i] ^ key[i];
        out->len = sizeof(out->u.in6);
        return 0;
    }
    return -1;
}

int stun_parse(const uint8_t *buf, size_t len, stun_msg *out)
{
    memset(out, 0, sizeof(*out));
    /* s5: top two bits zero, magic cookie, length a multiple of 4 that
     * matches the datagram */
    if (len < STUN_HEADER || (buf[0] & 0xc0) || rd32(buf + 4) != STUN_MAGIC)
        return STUN_E_NOT_STUN;
    size_t body = rd16(buf + 2);
    if (body % 4 || STUN_HEADER + body != len)
        return STUN_E_NOT_STUN;
    out->type = rd16(buf);
    memcpy(out->tid, buf + 8, 12);
    out->len = len;
    size_t off = STUN_HEADER;
    while (off < len) {
        if (len - off < 4)
            return STUN_E_MALFORMED;
        uint16_t t = rd16(buf + off), n = rd16(buf + off + 2);
        size_t padded = ((size_t)n + 3) & ~(size_t)3;
        if (padded > len - off - 4)
            return STUN_E_MALFORMED; /* overruns the message */
        const uint8_t *v = buf + off + 4;
        if (out->has_fingerprint)
            return STUN_E_MALFORMED; /* FINGERPRINT must be last (s14.7) */
        switch (t) {
        case STUN_ATTR_FINGERPRINT:
            if (n != 4)
                return STUN_E_MALFORMED;
            out->has_fingerprint = true;
            if (rd32(v) != stun_fingerprint(buf, off)) {
                /* the CRC covers the message up to this attribute, with the
                 * header length already counting it */
                return STUN_E_FINGERPRINT;
            }
            break;
        case STUN_ATTR_MESSAGE_INTEGRITY:
            out->has_integrity = true;
            break;
        case STUN_ATTR_XOR_MAPPED_ADDRESS: {
            /* The first valid one counts (s14: later duplicates are
             * ignored); parsed aside, so that a malformed duplicate cannot
             * clear an address already read (found by tests/fuzz). */
            netaddr a;
            if (!out->has_integrity && !out->has_xor_mapped &&
                parse_xor_address(v, n, out->tid, &a) == 0) {
                out->xor_mapped = a;
                out->has_xor_mapped = true;
            }
            break;
        }
        case STUN_ATTR_SOFTWARE:
            out->software = v;
            out->software_len = n;
            break;
        case STUN_ATTR_USERNAME:
            out->username = v;
            out->username_len = n;
            break;
        default:
            /* after MESSAGE-INTEGRITY everything but FINGERPRINT is ignored
             * (s14.5); before it, unknown required attributes are noted */
            if (t < 0x8000 && !known_required(t) && !out->has_integrity &&
                out->n_unknown < STUN_MAX_UNKNOWN)
                out->unknown[out->n_unknown++] = t;
        }
        off += 4 + padded;
    }
    return STUN_OK;
}

/* Header + room check; returns the write offset after the header. */
static size_t begin(uint16_t type, const stun_msg *req, uint8_t *out, size_t cap)
{
    if (cap < STUN_HEADER)
        return 0;
    wr16(out, type);
    wr16(out + 2, 0);
    wr32(out + 4, STUN_MAGIC);
    memcpy(out + 8, req->tid, 12);
    return STUN_HEADER;
}

static size_t finish(const stun_msg *req, uint8_t *out, size_t off, size_t cap)
{
    if (req->has_fingerprint) {
        if (off + 8 > cap)
            return 0;
        wr16(out + 2, (uint16_t)(off + 8 - STUN_HEADER));
        wr16(out + off, STUN_ATTR_FINGERPRINT);
        wr16(out + off + 2, 4);
        wr32(out + off + 4, stun_fingerprint(out, off));
        return off + 8;
    }
    wr16(out + 2, (uint16_t)(off - STUN_HEADER));
    return off;
}

size_t stun_binding_request(const uint8_t tid[12], uint8_t *out, size_t cap)
{
    stun_msg req = {.has_fingerprint = true};
    memcpy(req.tid, tid, 12);
    size_t off = begin(STUN_BINDING_REQUEST, &req, out, cap);
    return off ? finish(&req, out, off, cap) : 0;
}

size_t stun_binding_success(const stun_msg *req, const netaddr *mapped, uint8_t *out, size_t cap)
{
    size_t off = begin(STUN_BINDING_SUCCESS, req, out, cap);
    bool v4 = mapped->u.sa.sa_family == AF_INET;
    size_t vlen = v4 ? 8 : 20;
    if (!off || !mapped->len || off + 4 + vlen > cap)
        return 0;
    wr16(out + off, STUN_ATTR_XOR_MAPPED_ADDRESS);
    wr16(out + off + 2, (uint16_t)vlen);
    uint8_t *v = out + off + 4;
    v[0] = 0;
    v[1] = v4 ? 0x01 : 0x02;
    wr16(v + 2, netaddr_port(mapped) ^ (uint16_t)(STUN_MAGIC >> 16));
    if (v4) {
        wr32(v + 4, ntohl(mapped->u.in4.sin_addr.s_addr) ^ STUN_MAGIC);
    } else {
        uint8_t key[16];
        wr32(key, STUN_MAGIC);
        memcpy(key + 4, req->tid, 12);
        for (int i = 0; i < 16; i++)
            v[4 + i] = mapped->u.in6.sin6_addr.s6_addr[i] ^ key[i];
    }
    return finish(req, out, off + 4 + vlen, cap);
}

size_t stun_binding_error(const stun_msg *req, int code, const char *reason, uint8_t *out,
                          size_t cap)
{
    size_t off = begin(STUN_BINDING_ERROR, req, out, cap);
    size_t rlen = strlen(reason);
    size_t padded = (4 + rlen + 3) & ~(size_t)3;
    if (!off || off + 4 + padded > cap || code < 300 || code > 699)
        return 0;
    /* ERROR-CODE (s14.8): 21 reserved bits, class (hundreds), number */
    wr16(out + off, STUN_ATTR_ERROR_CODE);
    wr16(out + off + 2, (uint16_t)(4 + rlen));
    memset(out + off + 4, 0, padded);
    out[off + 6] = (uint8_t)(code / 100);
    out[off + 7] = (uint8_t)(code % 100);
    memcpy(out + off + 8, reason, rlen);
    off += 4 + padded;
    if (code == 420 && req->n_unknown) {
        size_t n = req->n_unknown * 2, p = (n + 3) & ~(size_t)3;
        if (off + 4 + p > cap)
            return 0;
        wr16(out + off, STUN_ATTR_UNKNOWN_ATTRIBUTES);
        wr16(out + off + 2, (uint16_t)n);
        memset(out + off + 4, 0, p);
        for (size_t i = 0; i < req->n_unknown; i++)
            wr16(out + off + 4 + 2 * i, req->unknown[i]);
        off += 4 + p;
    }
    return finish(req, out, off, cap);
}
