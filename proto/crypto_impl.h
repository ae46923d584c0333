/* Private to the crypto door (crypto.c, identity.c, secure.c): the only
 * header besides those .c files that names mbedTLS types. */
#ifndef PL_CRYPTO_IMPL_H
#define PL_CRYPTO_IMPL_H

#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include "identity.h"

struct identity {
    mbedtls_pk_context pk;
    mbedtls_x509_crt cert;      /* self-signed, made at load: DTLS needs one */
    uint8_t pub[ID_PUB_MAX];
    size_t publen;
    uint8_t hash[ID_HASH_LEN];
    char id[ID_TEXT_LEN + 1];
};

/* SHA-256 of pk's canonical DER public key (identity.c).  0 or -1. */
int pk_hash(mbedtls_pk_context *pk, uint8_t out[ID_HASH_LEN]);
/* True when pk's key hashes to `expected` (constant-time compare): how both
 * the DTLS channel and the pinned TLS client recognise the key they want. */
bool pk_matches(mbedtls_pk_context *pk, const uint8_t expected[ID_HASH_LEN]);
/* mbedTLS f_rng on the kernel's CSPRNG. */
int crypto_rng(void *unused, unsigned char *buf, size_t len);

#endif
