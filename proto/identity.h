/* A peer's long-term identity: an ECDSA P-256 key pair, its public key in
 * DER (SubjectPublicKeyInfo), and the peer id derived from it.  Part of the
 * crypto door (ARCHITECTURE.md rule 6): no mbedTLS type appears here.
 *
 * Peer id = base32 (RFC 4648 alphabet, lower case, no padding) of
 * SHA-256(public key DER): 52 characters, copy-pasteable, case-insensitive
 * on input. */
#ifndef PL_IDENTITY_H
#define PL_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ID_HASH_LEN 32
#define ID_TEXT_LEN 52          /* characters of a peer id, without the NUL */
#define ID_PUB_MAX 200          /* DER public key */
#define ID_SIG_MAX 80           /* DER ECDSA-SHA256 signature */

typedef struct identity identity;

/* Load the PEM private key at path.  With create set and no file there,
 * generate a key and store it (mode 0600, parent directory created 0700,
 * atomically: two processes starting at once end up with the same key).
 * An unreadable, corrupt, non-P-256 or group/world-readable file is an
 * error (never replaced).  On failure returns -1 and writes why into err. */
int identity_load(const char *path, bool create, identity **out, char *err, size_t errlen);
/* A fresh key that lives only in memory.  NULL only when out of memory. */
identity *identity_ephemeral(void);
void identity_free(identity *id);

const uint8_t *identity_pub(const identity *id, size_t *len);
const uint8_t *identity_hash(const identity *id);   /* ID_HASH_LEN bytes */
const char *identity_id(const identity *id);        /* ID_TEXT_LEN chars */

/* ECDSA-SHA256 over msg; sig gets at most ID_SIG_MAX bytes.  0 or -1. */
int identity_sign(const identity *id, const uint8_t *msg, size_t len, uint8_t *sig,
                  size_t *siglen);
/* 0 when sig is pub's ECDSA-SHA256 signature over msg and pub is a P-256
 * key; -1 otherwise (any malformed input included).  hash_out (optional)
 * gets the key's hash over its canonical DER, the value peers compare. */
int identity_verify(const uint8_t *pub, size_t publen, const uint8_t *msg, size_t len,
                    const uint8_t *sig, size_t siglen, uint8_t hash_out[ID_HASH_LEN]);

void identity_hash_pub(const uint8_t *pub, size_t len, uint8_t out[ID_HASH_LEN]);
/* out gets ID_TEXT_LEN characters and a NUL. */
void identity_format_id(const uint8_t hash[ID_HASH_LEN], char out[ID_TEXT_LEN + 1]);
/* Parse a peer id (upper or lower case).  0, or -1 if malformed. */
int identity_parse_id(const char *text, uint8_t hash[ID_HASH_LEN]);

/* The default key file: $XDG_CONFIG_HOME/punchline/identity.pem, else
 * $HOME/.config/punchline/identity.pem.  -1 if neither variable is set. */
int identity_default_path(char *out, size_t cap);

#endif
