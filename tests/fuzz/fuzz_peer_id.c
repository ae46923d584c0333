/* Peer id parsing (proto/identity.c identity_parse_id): 52 base32
 * characters, either case; one spelling per id, so a parsed id formats
 * back to the input in lower case, and any hash formats to an id that
 * parses back to it. */
#include "fuzz.h"

#include <ctype.h>
#include <string.h>

#include "identity.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    FUZZ_CHECK(s);
    memcpy(s, data, size);
    s[size] = 0;
    uint8_t hash[ID_HASH_LEN];
    if (identity_parse_id(s, hash) == 0) {
        char text[ID_TEXT_LEN + 1];
        identity_format_id(hash, text);
        FUZZ_CHECK(strlen(s) == ID_TEXT_LEN);
        for (size_t i = 0; i < ID_TEXT_LEN; i++)
            FUZZ_CHECK(text[i] == tolower((unsigned char)s[i]));
    }
    free(s);
    if (size >= ID_HASH_LEN) {
        char text[ID_TEXT_LEN + 1];
        uint8_t back[ID_HASH_LEN];
        identity_format_id(data, text);
        FUZZ_CHECK(strlen(text) == ID_TEXT_LEN);
        FUZZ_CHECK(identity_parse_id(text, back) == 0);
        FUZZ_CHECK(memcmp(back, data, ID_HASH_LEN) == 0);
    }
    return 0;
}
