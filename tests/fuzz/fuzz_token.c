/* Access tokens (rendezvous/token.c): Register.name and Register.token come
 * from the network.  Input: name, NUL, token.  A token passes only if the
 * server's secret minted exactly that text for that name and it has not
 * expired; a token it mints always passes. */
#include "fuzz.h"

#include <string.h>

#include "names.h"
#include "token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t secret[] = FUZZ_TOKEN_SECRET;
    const size_t slen = sizeof(secret) - 1;
    if (size > 1024)
        return 0;
    char *buf = malloc(size + 2);
    FUZZ_CHECK(buf);
    memcpy(buf, data, size);
    buf[size] = buf[size + 1] = 0;
    const char *name = buf;
    const char *token = buf + strlen(buf) + 1; /* "" when there is no NUL */
    if (token > buf + size)
        token = buf + size + 1;

    const char *why = NULL;
    int rc = token_check(secret, slen, name, token, FUZZ_TOKEN_NOW, &why);
    FUZZ_CHECK(rc == 0 || rc == -1);
    FUZZ_CHECK(rc == 0 ? why == NULL : why != NULL);
    if (rc == 0) {
        /* EXPIRY.HEX with EXPIRY >= now: the one token minted for it */
        char *end;
        unsigned long long expiry = strtoull(token, &end, 10);
        char minted[TOKEN_MAX_LEN + 1];
        FUZZ_CHECK(*end == '.' && expiry >= FUZZ_TOKEN_NOW);
        FUZZ_CHECK(token_mint(secret, slen, name, expiry, minted, sizeof(minted)) == 0);
        FUZZ_CHECK(strcmp(minted, token) == 0);
        FUZZ_CHECK(name_valid_cstr(name));
    }
    /* minting from the input: valid names only, and what is minted passes
     * until it expires */
    uint64_t expiry = 0;
    for (size_t i = 0; i < 8 && i < size; i++)
        expiry = expiry << 8 | data[size - 1 - i];
    char minted[TOKEN_MAX_LEN + 1];
    int mrc = token_mint(secret, slen, name, expiry, minted, sizeof(minted));
    FUZZ_CHECK(mrc == 0 || !name_valid_cstr(name));
    if (mrc == 0) {
        FUZZ_CHECK(strlen(minted) <= TOKEN_MAX_LEN);
        FUZZ_CHECK(token_check(secret, slen, name, minted, expiry, NULL) == 0);
        FUZZ_CHECK((token_check(secret, slen, name, minted, FUZZ_TOKEN_NOW, NULL) == 0) ==
                   (expiry >= FUZZ_TOKEN_NOW));
        if (expiry < UINT64_MAX)
            FUZZ_CHECK(token_check(secret, slen, name, minted, expiry + 1, NULL) != 0);
    }
    free(buf);
    return 0;
}
