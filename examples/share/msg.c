/* punchline-share message codec and file name rule (layouts in msg.h). */
#include "msg.h"

#include <string.h>

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

int sm_decode(const uint8_t *buf, size_t len, sm_msg *out)
{
    memset(out, 0, sizeof(*out));
    if (len < 1)
        return -1;
    out->type = buf[0];
    const uint8_t *p = buf + 1;
    size_t n = len - 1;
    switch (buf[0]) {
    case SM_OFFER:
        if (n < 1 + 8 + 2)
            return -1;
        out->version = p[0];
        out->size = get_u64(p + 1);
        out->name_len = get_u16(p + 9);
        if (out->size > INT64_MAX || out->name_len > SM_MAX_NAME || n != 11 + out->name_len)
            return -1;
        out->name = p + 11;
        return 0;
    case SM_ACCEPT:
        if (n != 8 + SM_HASH_LEN)
            return -1;
        out->offset = get_u64(p);
        memcpy(out->hash, p + 8, SM_HASH_LEN);
        return 0;
    case SM_ERROR:
        if (n < 1 + 2)
            return -1;
        out->reason = p[0];
        out->text_len = get_u16(p + 1);
        if (out->text_len > SM_MAX_TEXT || n != 3 + out->text_len)
            return -1;
        out->text = p + 3;
        return 0;
    case SM_START:
        if (n != 8)
            return -1;
        out->offset = get_u64(p);
        return 0;
    case SM_DATA:
        if (n < 1 || n > SM_MAX_CHUNK)
            return -1;
        out->data = p;
        out->data_len = n;
        return 0;
    case SM_DONE:
        if (n != SM_HASH_LEN)
            return -1;
        memcpy(out->hash, p, SM_HASH_LEN);
        return 0;
    case SM_VERDICT:
        if (n != 1 + SM_HASH_LEN || p[0] > 1)
            return -1;
        out->ok = p[0];
        memcpy(out->hash, p + 1, SM_HASH_LEN);
        return 0;
    default:
        return -1;
    }
}

size_t sm_encode_offer(uint8_t *out, size_t cap, uint64_t size, const char *name, size_t name_len)
{
    size_t n = 1 + 1 + 8 + 2 + name_len;
    if (name_len > SM_MAX_NAME || size > INT64_MAX || cap < n)
        return 0;
    out[0] = SM_OFFER;
    out[1] = SM_VERSION;
    put_u64(out + 2, size);
    put_u16(out + 10, (uint16_t)name_len);
    memcpy(out + 12, name, name_len);
    return n;
}

size_t sm_encode_accept(uint8_t *out, size_t cap, uint64_t offset, const uint8_t hash[SM_HASH_LEN])
{
    if (cap < 1 + 8 + SM_HASH_LEN)
        return 0;
    out[0] = SM_ACCEPT;
    put_u64(out + 1, offset);
    memcpy(out + 9, hash, SM_HASH_LEN);
    return 1 + 8 + SM_HASH_LEN;
}

size_t sm_encode_error(uint8_t *out, size_t cap, uint8_t reason, const char *text)
{
    size_t tl = text ? strlen(text) : 0;
    if (tl > SM_MAX_TEXT)
        tl = SM_MAX_TEXT;
    if (cap < 1 + 1 + 2 + tl)
        return 0;
    out[0] = SM_ERROR;
    out[1] = reason;
    put_u16(out + 2, (uint16_t)tl);
    if (tl)
        memcpy(out + 4, text, tl);
    return 4 + tl;
}

size_t sm_encode_start(uint8_t *out, size_t cap, uint64_t offset)
{
    if (cap < 1 + 8)
        return 0;
    out[0] = SM_START;
    put_u64(out + 1, offset);
    return 9;
}

size_t sm_encode_done(uint8_t *out, size_t cap, const uint8_t hash[SM_HASH_LEN])
{
    if (cap < 1 + SM_HASH_LEN)
        return 0;
    out[0] = SM_DONE;
    memcpy(out + 1, hash, SM_HASH_LEN);
    return 1 + SM_HASH_LEN;
}

size_t sm_encode_verdict(uint8_t *out, size_t cap, bool ok, const uint8_t hash[SM_HASH_LEN])
{
    if (cap < 2 + SM_HASH_LEN)
        return 0;
    out[0] = SM_VERDICT;
    out[1] = ok ? 1 : 0;
    memcpy(out + 2, hash, SM_HASH_LEN);
    return 2 + SM_HASH_LEN;
}

/* Decode one UTF-8 sequence at s (n bytes left): the code point, and its
 * length in *used; -1 for anything RFC 3629 §3 forbids (stray continuation
 * bytes, truncation, overlong forms, surrogates, above U+10FFFF). */
static long utf8_next(const uint8_t *s, size_t n, size_t *used)
{
    uint8_t b = s[0];
    size_t len;
    long cp, min;
    if (b < 0x80) {
        *used = 1;
        return b;
    } else if (b >= 0xC2 && b <= 0xDF) {
        len = 2, cp = b & 0x1F, min = 0x80;
    } else if (b >= 0xE0 && b <= 0xEF) {
        len = 3, cp = b & 0x0F, min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4, cp = b & 0x07, min = 0x10000;
    } else {
        return -1;
    }
    if (n < len)
        return -1;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return -1;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return -1;
    *used = len;
    return cp;
}

const char *sm_name_check(const uint8_t *name, size_t len)
{
    static const char suffix[] = SM_PART_SUFFIX;
    size_t sl = sizeof(suffix) - 1;
    if (len == 0)
        return "the name is empty";
    if (len > SM_MAX_NAME)
        return "the name is longer than 200 bytes";
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return "the name is '.' or '..'";
    for (size_t i = 0, used; i < len; i += used) {
        long cp = utf8_next(name + i, len - i, &used);
        if (cp < 0)
            return "the name is not valid UTF-8";
        if (cp == '/' || cp == '\\')
            return "the name contains a path separator ('/' or '\\')";
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
            return "the name contains control characters";
        if ((cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069))
            return "the name contains bidirectional text controls";
    }
    if (len >= sl && !memcmp(name + len - sl, suffix, sl))
        return "the name ends in " SM_PART_SUFFIX " (punchline-share's partial files)";
    return NULL;
}

void sm_printable(const uint8_t *in, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < cap; i++)
        out[o++] = (in[i] < 0x20 || in[i] >= 0x7F) ? '?' : (char)in[i];
    out[o] = 0;
}

void sm_hex(const uint8_t hash[SM_HASH_LEN], char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < SM_HASH_LEN; i++) {
        out[2 * i] = digits[hash[i] >> 4];
        out[2 * i + 1] = digits[hash[i] & 15];
    }
    out[2 * SM_HASH_LEN] = 0;
}

const char *sm_reason_text(uint8_t reason)
{
    switch (reason) {
    case SM_R_EXISTS: return "a file of that name exists (the receiver may use --force)";
    case SM_R_NO_SPACE: return "not enough free space";
    case SM_R_BAD_NAME: return "file name refused";
    case SM_R_IO: return "read or write error";
    case SM_R_BUSY: return "another transfer of that file is in progress";
    case SM_R_VERSION: return "unsupported protocol version";
    case SM_R_PROTOCOL: return "protocol error";
    case SM_R_CANCELLED: return "cancelled";
    default: return "unknown reason";
    }
}
