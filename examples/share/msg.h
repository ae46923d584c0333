/* The punchline-share application protocol (docs/SHARE.md §"Protocol"): one
 * share message per punchline message, a 1-byte type, then fixed fields,
 * big-endian.  Pure codec: no I/O.  Every decoder takes hostile input: it
 * checks the message length exactly (short or trailing bytes are malformed)
 * and every length field against what is left, and never allocates.
 *
 *  OFFER    sender -> receiver, the first message
 *  +------+---------+------------------+--------------+---------------------+
 *  | 0x01 | version | size (u64)       | name_len u16 | name (name_len)     |
 *  +------+---------+------------------+--------------+---------------------+
 *  ACCEPT   receiver -> sender: what the receiver already has of the file
 *  +------+------------------+----------------------------------------------+
 *  | 0x02 | offset (u64)     | SHA-256 of the first offset bytes (32)       |
 *  +------+------------------+----------------------------------------------+
 *  ERROR    either way, then the sender of it finishes its side
 *  +------+--------+--------------+-----------------------------------------+
 *  | 0x03 | reason | text_len u16 | text (text_len, at most SM_MAX_TEXT)    |
 *  +------+--------+--------------+-----------------------------------------+
 *  START    sender -> receiver: data follows from this offset (ACCEPT's or 0)
 *  +------+------------------+
 *  | 0x04 | offset (u64)     |
 *  +------+------------------+
 *  DATA     sender -> receiver: the next 1..SM_MAX_CHUNK bytes of the file
 *  +------+------------------------------------------------------------------+
 *  | 0x05 | bytes                                                            |
 *  +------+------------------------------------------------------------------+
 *  DONE     sender -> receiver, after the last DATA
 *  +------+----------------------------------------------+
 *  | 0x06 | SHA-256 of the whole file (32)               |
 *  +------+----------------------------------------------+
 *  VERDICT  receiver -> sender, the answer to DONE
 *  +------+----+----------------------------------------------+
 *  | 0x07 | ok | SHA-256 the receiver computed (32)           |
 *  +------+----+----------------------------------------------+
 *  ok = 1: the hashes are equal and the file is in place under its name.
 */
#ifndef SHARE_MSG_H
#define SHARE_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SM_VERSION 1
#define SM_HASH_LEN 32
/* Longest file name (bytes): the part file ".NAME.punchline-part" must stay
 * within NAME_MAX (255). */
#define SM_MAX_NAME 200
#define SM_MAX_TEXT 200            /* ERROR text */
#define SM_MAX_CHUNK 65535         /* DATA payload: 1 + this = PL_MAX_MESSAGE */
/* Largest encoded message other than DATA (an OFFER with the longest name). */
#define SM_MAX_CONTROL (1 + 1 + 8 + 2 + SM_MAX_NAME)
#define SM_PART_SUFFIX ".punchline-part"

enum sm_type {
    SM_OFFER = 1,
    SM_ACCEPT = 2,
    SM_ERROR = 3,
    SM_START = 4,
    SM_DATA = 5,
    SM_DONE = 6,
    SM_VERDICT = 7
};

/* ERROR reasons. */
enum sm_reason {
    SM_R_EXISTS = 1,      /* a file of that name exists at the receiver (no --force) */
    SM_R_NO_SPACE = 2,    /* not enough free space for the rest of the file */
    SM_R_BAD_NAME = 3,    /* the offered name breaks the name rule (sm_name_check) */
    SM_R_IO = 4,          /* a read or write failed */
    SM_R_BUSY = 5,        /* another transfer of that name is writing the part file */
    SM_R_VERSION = 6,     /* unknown protocol version in OFFER */
    SM_R_PROTOCOL = 7,    /* malformed or unexpected message */
    SM_R_CANCELLED = 8    /* the user interrupted */
};

/* One decoded message.  Pointers (name, text, data) point into the buffer
 * given to sm_decode() and are valid as long as it is. */
typedef struct sm_msg {
    uint8_t type;
    uint8_t version;           /* OFFER */
    uint64_t size;             /* OFFER */
    uint64_t offset;           /* ACCEPT, START */
    uint8_t hash[SM_HASH_LEN]; /* ACCEPT (prefix), DONE (file), VERDICT (receiver's) */
    uint8_t reason;            /* ERROR */
    uint8_t ok;                /* VERDICT: 0 or 1 */
    const uint8_t *name;       /* OFFER */
    size_t name_len;
    const uint8_t *text;       /* ERROR: arbitrary bytes, show with sm_printable() */
    size_t text_len;
    const uint8_t *data;       /* DATA */
    size_t data_len;
} sm_msg;

/* Decode one message.  0, or -1 when it is malformed (unknown type, wrong
 * length, a length field past the end, name_len or text_len over the
 * maximum, a DATA message without data, VERDICT ok other than 0/1, an OFFER
 * size above INT64_MAX).  The OFFER name is not checked here: see
 * sm_name_check().  A version other than SM_VERSION decodes (so it can be
 * refused with SM_R_VERSION). */
int sm_decode(const uint8_t *buf, size_t len, sm_msg *out);

/* Encoders: write into out (cap bytes), return the length or 0 if it does
 * not fit or an argument is out of range. */
size_t sm_encode_offer(uint8_t *out, size_t cap, uint64_t size, const char *name, size_t name_len);
size_t sm_encode_accept(uint8_t *out, size_t cap, uint64_t offset, const uint8_t hash[SM_HASH_LEN]);
size_t sm_encode_error(uint8_t *out, size_t cap, uint8_t reason, const char *text);
size_t sm_encode_start(uint8_t *out, size_t cap, uint64_t offset);
size_t sm_encode_done(uint8_t *out, size_t cap, const uint8_t hash[SM_HASH_LEN]);
size_t sm_encode_verdict(uint8_t *out, size_t cap, bool ok, const uint8_t hash[SM_HASH_LEN]);
/* DATA: the header byte only; the caller puts the bytes right after it. */
#define SM_DATA_HEADER 1

/* The file name rule, applied by the receiver to every offered name and by
 * the sender to its own file's base name.  NULL if name is acceptable, else
 * a static reason.  Acceptable: 1..SM_MAX_NAME bytes of valid UTF-8 (no
 * overlong forms, surrogates or code points above U+10FFFF), not "." or
 * "..", no '/' or '\\' (so it is a base name and nothing else), no control
 * characters (C0, DEL, C1 U+0080..U+009F) and no bidirectional controls
 * (U+202A..U+202E, U+2066..U+2069, which can make a name display as
 * another), and not ending in ".punchline-part" (our own part files). */
const char *sm_name_check(const uint8_t *name, size_t len);

/* Copy up to len bytes of untrusted text into out (cap >= 1) for a terminal:
 * bytes < 0x20, 0x7F and every non-ASCII byte become '?'. */
void sm_printable(const uint8_t *in, size_t len, char *out, size_t cap);
/* Lower-case hex of a hash (out: 2 * SM_HASH_LEN + 1 bytes). */
void sm_hex(const uint8_t hash[SM_HASH_LEN], char *out);
/* Static text for an ERROR reason ("unknown reason" for others). */
const char *sm_reason_text(uint8_t reason);

#endif
