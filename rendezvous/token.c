#include "token.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto.h"
#include "names.h"

/* 16 bytes of MAC is 128 bits: past any online guessing, and it keeps the
 * token short enough to paste into a command line. */
#define TOKEN_MAC_LEN 16
#define TOKEN_EXPIRY_DIGITS 20 /* UINT64_MAX is 20 decimal digits */
/* The version label keeps a token from meaning anything to another user of
 * the same secret, and lets a v2 format never collide with this one. */
static const char token_label[] = "punchline token v1";

static void wipe(void *p, size_t n)
{
    /* volatile: a plain memset before the buffer dies may be optimised away. */
    volatile uint8_t *v = p;
    while (n--)
        *v++ = 0;
}

/* MAC input: label || 0x00 || name || 0x00 || expiry digits.  The name holds
 * no NUL (name_valid), so the separators make the split unambiguous. */
static int token_mac(const uint8_t *secret, size_t secret_len, const char *name,
                     uint64_t expiry, uint8_t mac[TOKEN_MAC_LEN])
{
    uint8_t msg[sizeof(token_label) + NAME_MAX_LEN + 1 + TOKEN_EXPIRY_DIGITS + 1];
    size_t nlen = strlen(name);
    size_t off = 0;

    memcpy(msg, token_label, sizeof(token_label)); /* sizeof counts the 0x00 */
    off += sizeof(token_label);
    memcpy(msg + off, name, nlen);
    off += nlen;
    msg[off++] = 0;
    int d = snprintf((char *)msg + off, sizeof(msg) - off, "%" PRIu64, expiry);
    if (d < 0 || (size_t)d >= sizeof(msg) - off)
        return -1;
    off += (size_t)d;
    return crypto_hmac_sha256(secret, secret_len, msg, off, mac, TOKEN_MAC_LEN);
}

int token_mint(const uint8_t *secret, size_t secret_len, const char *name, uint64_t expiry,
               char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t mac[TOKEN_MAC_LEN];

    if (!secret || !secret_len || !name || !name_valid_cstr(name) || !out)
        return -1;
    if (token_mac(secret, secret_len, name, expiry, mac) != 0)
        return -1;
    int d = snprintf(out, cap, "%" PRIu64 ".", expiry);
    if (d < 0 || (size_t)d + 2 * TOKEN_MAC_LEN + 1 > cap) {
        if (cap)
            out[0] = '\0';
        return -1;
    }
    char *p = out + d;
    for (size_t i = 0; i < TOKEN_MAC_LEN; i++) {
        *p++ = hex[mac[i] >> 4];
        *p++ = hex[mac[i] & 15];
    }
    *p = '\0';
    return 0;
}

/* Only lowercase: one spelling per token, as token_mint writes it. */
static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* "EXPIRY.HEX" -> expiry and MAC, or -1 for anything else.  Never reads past
 * the terminating NUL: each character is checked before the next is read. */
static int token_parse(const char *t, uint64_t *expiry, uint8_t mac[TOKEN_MAC_LEN])
{
    const char *p = t;
    uint64_t v = 0;
    size_t digits = 0;

    while (*p >= '0' && *p <= '9') {
        unsigned dv = (unsigned)(*p - '0');
        if (++digits > TOKEN_EXPIRY_DIGITS || v > (UINT64_MAX - dv) / 10)
            return -1;
        v = v * 10 + dv;
        p++;
    }
    if (digits == 0 || (digits > 1 && t[0] == '0') || *p != '.')
        return -1;
    p++;
    for (size_t i = 0; i < 2 * TOKEN_MAC_LEN; i++) {
        int h = hex_digit(p[i]);
        if (h < 0)
            return -1;
        if (i % 2 == 0)
            mac[i / 2] = (uint8_t)(h << 4);
        else
            mac[i / 2] |= (uint8_t)h;
    }
    if (p[2 * TOKEN_MAC_LEN] != '\0')
        return -1;
    *expiry = v;
    return 0;
}

int token_check(const uint8_t *secret, size_t secret_len, const char *name, const char *token,
                uint64_t now_unix, const char **why)
{
    const char *reason;
    uint64_t expiry;
    uint8_t got[TOKEN_MAC_LEN], want[TOKEN_MAC_LEN];

    if (!token || !*token) {
        reason = "missing token";
        goto fail;
    }
    if (token_parse(token, &expiry, got) != 0) {
        reason = "malformed token";
        goto fail;
    }
    /* An invalid name or no secret can match no token; say so the same way
     * as a wrong MAC rather than tell a client which one it got wrong. */
    if (!secret || !secret_len || !name || !name_valid_cstr(name) ||
        token_mac(secret, secret_len, name, expiry, want) != 0 ||
        !crypto_equal(got, want, TOKEN_MAC_LEN)) {
        reason = "token does not match this name or secret";
        goto fail;
    }
    if (now_unix > expiry) {
        reason = "token expired";
        goto fail;
    }
    return 0;

fail:
    if (why)
        *why = reason;
    return -1;
}

int token_load_secret(const char *path, uint8_t **secret, size_t *len, char *err, size_t errlen)
{
    /* Two bytes of slack for a trailing "\r\n", one more to see a file that
     * is too long without reading all of it. */
    uint8_t buf[TOKEN_SECRET_MAX + 3];
    size_t n = 0;
    uint8_t *copy = NULL;
    int fd = -1;

    if (!path || !secret || !len) {
        snprintf(err, errlen, "secret file: bad arguments");
        return -1;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open secret file %s: %s", path, strerror(errno));
        goto fail;
    }
    while (n < sizeof(buf)) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "cannot read secret file %s: %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > 0 && buf[n - 1] == '\n') {
        n--;
        if (n > 0 && buf[n - 1] == '\r')
            n--;
    }
    if (n > TOKEN_SECRET_MAX) {
        snprintf(err, errlen, "secret file %s is longer than %d bytes", path, TOKEN_SECRET_MAX);
        goto fail;
    }
    if (n < TOKEN_SECRET_MIN) {
        snprintf(err, errlen,
                 "secret file %s holds %zu bytes; needs at least %d (e.g. openssl rand -hex 32)",
                 path, n, TOKEN_SECRET_MIN);
        goto fail;
    }
    copy = malloc(n);
    if (!copy) {
        snprintf(err, errlen, "secret file %s: out of memory", path);
        goto fail;
    }
    memcpy(copy, buf, n);
    wipe(buf, sizeof(buf));
    close(fd);
    *secret = copy;
    *len = n;
    return 0;

fail:
    wipe(buf, sizeof(buf));
    if (fd >= 0)
        close(fd);
    return -1;
}
