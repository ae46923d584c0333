/* STUN (RFC 8489) as far as a Binding server and client need it: parse a message with
 * every length checked, verify FINGERPRINT, read XOR-MAPPED-ADDRESS, and
 * build Binding success and error responses.  No I/O; input is hostile.
 *
 *  0                   1                   2                   3
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |0 0|     STUN Message Type     |         Message Length        |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                   Magic Cookie = 0x2112A442                   |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                 Transaction ID (96 bits) ...                  |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  then attributes: type (16) | length (16) | value, padded to 4 bytes
 */
#ifndef PL_STUN_H
#define PL_STUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

#define STUN_HEADER 20
#define STUN_MAGIC 0x2112A442u
#define STUN_BINDING_REQUEST 0x0001
#define STUN_BINDING_INDICATION 0x0011
#define STUN_BINDING_SUCCESS 0x0101
#define STUN_BINDING_ERROR 0x0111

#define STUN_ATTR_MAPPED_ADDRESS 0x0001
#define STUN_ATTR_USERNAME 0x0006
#define STUN_ATTR_MESSAGE_INTEGRITY 0x0008
#define STUN_ATTR_ERROR_CODE 0x0009
#define STUN_ATTR_UNKNOWN_ATTRIBUTES 0x000A
#define STUN_ATTR_XOR_MAPPED_ADDRESS 0x0020
#define STUN_ATTR_SOFTWARE 0x8022
#define STUN_ATTR_FINGERPRINT 0x8028

#define STUN_MAX_UNKNOWN 8

enum stun_status {
    STUN_OK = 0,
    STUN_E_NOT_STUN = -1,    /* first bits, cookie or length say it is no STUN message */
    STUN_E_MALFORMED = -2,   /* an attribute overruns, or a misplaced/short FINGERPRINT */
    STUN_E_FINGERPRINT = -3  /* FINGERPRINT present and wrong: discard silently (s7.3) */
};

typedef struct stun_msg {
    uint16_t type;              /* method and class bits */
    uint8_t tid[12];
    size_t len;                 /* whole message, header included */
    bool has_fingerprint;
    bool has_integrity;
    bool has_xor_mapped;
    netaddr xor_mapped;         /* decoded (un-XORed) */
    const uint8_t *software;    /* points into the buffer */
    size_t software_len;
    const uint8_t *username;
    size_t username_len;
    uint16_t unknown[STUN_MAX_UNKNOWN]; /* comprehension-required types we do not know */
    size_t n_unknown;
} stun_msg;

/* Parse buf[0..len).  Datagrams carry exactly one message: len must equal
 * 20 + the header's length field. */
int stun_parse(const uint8_t *buf, size_t len, stun_msg *out);
/* CRC-32 of data XOR 0x5354554e (RFC 8489 s14.7). */
uint32_t stun_fingerprint(const uint8_t *data, size_t len);

/* A Binding request with transaction id tid and FINGERPRINT (28 bytes), for
 * learning our reflexive address from any STUN server.  0 if cap is too
 * small. */
size_t stun_binding_request(const uint8_t tid[12], uint8_t *out, size_t cap);
/* Binding success to req: XOR-MAPPED-ADDRESS = mapped, FINGERPRINT if the
 * request had one.  Returns the length, 0 if cap is too small. */
size_t stun_binding_success(const stun_msg *req, const netaddr *mapped, uint8_t *out, size_t cap);
/* Binding error to req with ERROR-CODE code/reason; for 420 the request's
 * unknown attributes go in UNKNOWN-ATTRIBUTES. */
size_t stun_binding_error(const stun_msg *req, int code, const char *reason, uint8_t *out,
                          size_t cap);

#endif
