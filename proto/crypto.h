/* The only door to mbedTLS (ARCHITECTURE.md rule 6): nothing else in the
 * tree includes an mbedTLS header. */
#ifndef PL_CRYPTO_H
#define PL_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* out = first outlen (<= 32) bytes of HMAC-SHA256(key, data).  0 or -1. */
int crypto_hmac_sha256(const uint8_t *key, size_t keylen, const uint8_t *data, size_t len,
                       uint8_t *out, size_t outlen);
/* Constant-time comparison. */
bool crypto_equal(const uint8_t *a, const uint8_t *b, size_t len);
/* Bytes from the kernel's CSPRNG (getrandom); aborts if none is available. */
void crypto_random(void *buf, size_t len);

#endif
