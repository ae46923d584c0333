/* Time-limited access tokens for Register (the TURN REST-API pattern,
 * draft-uberti-behave-turn-rest-00): whoever holds the server's secret mints
 * "EXPIRY.MAC" for one peer name, and the server checks it without keeping
 * any per-token state.  No I/O except token_load_secret, and no clock: the
 * caller passes the time in. */
#ifndef PL_TOKEN_H
#define PL_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define TOKEN_MAX_LEN 96
#define TOKEN_SECRET_MIN 16      /* bytes */
#define TOKEN_SECRET_MAX 4096

/* Write the token for `name` valid until `expiry` (unix seconds) into out:
 * "EXPIRY.HEX" where HEX = lowercase hex of the first 16 bytes of
 * HMAC-SHA256(secret, "punchline token v1" || 0x00 || name || 0x00 || EXPIRY in decimal ASCII).
 * Returns 0, or -1 if cap is too small / bad args. */
int token_mint(const uint8_t *secret, size_t secret_len, const char *name, uint64_t expiry, char *out, size_t cap);

/* 0 if `token` is valid for `name` at `now_unix`; else -1 and *why = static English text:
 * "missing token", "malformed token", "token does not match this name or secret", "token expired".
 * Strict parsing: decimal expiry without sign/leading junk and <= 20 digits, one '.', exactly 32 lowercase hex digits,
 * nothing after; MAC compared in constant time (crypto_equal from proto/crypto.h).
 * A token is still valid at now_unix == expiry and expired one second later.
 * The MAC is checked before the expiry, so "token expired" is only ever said
 * of a token this secret really minted for this name.  Leading zeros in the
 * expiry are malformed: token_mint never writes them, and one spelling per
 * token keeps the MAC input unambiguous.  `why` may be NULL. */
int token_check(const uint8_t *secret, size_t secret_len, const char *name, const char *token, uint64_t now_unix, const char **why);

/* Read a secret file: its whole content with one trailing "\n" or "\r\n"
 * stripped (so `echo` and editors can write it); the rest must be
 * TOKEN_SECRET_MIN..TOKEN_SECRET_MAX bytes.  A random text secret
 * (`openssl rand -hex 32`) is the safe choice: a binary one ending in 0x0a
 * would lose that byte here, and any other minter reading the raw file
 * would disagree with this server.  File permissions are the caller's
 * business.
 * On success returns 0 and *secret is malloc'd (the caller frees it).
 * On failure returns -1 and writes a clear reason (with the path and
 * strerror where the system said why) into err. */
int token_load_secret(const char *path, uint8_t **secret, size_t *len, char *err, size_t errlen);

#endif
