#include "crypto.h"
#include "crypto_impl.h"

#include <errno.h>
#include <mbedtls/md.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

int crypto_hmac_sha256(const uint8_t *key, size_t keylen, const uint8_t *data, size_t len,
                       uint8_t *out, size_t outlen)
{
    uint8_t full[32];
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    if (!md || outlen > sizeof(full) || mbedtls_md_hmac(md, key, keylen, data, len, full) != 0)
        return -1;
    memcpy(out, full, outlen);
    return 0;
}

bool crypto_equal(const uint8_t *a, const uint8_t *b, size_t len)
{
    volatile uint8_t acc = 0;
    for (size_t i = 0; i < len; i++)
        acc |= a[i] ^ b[i];
    return acc == 0;
}

void crypto_random(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            abort(); /* without entropy every secret would be guessable */
        }
        p += n;
        len -= (size_t)n;
    }
}

int crypto_rng(void *unused, unsigned char *buf, size_t len)
{
    (void)unused;
    crypto_random(buf, len);
    return 0;
}
