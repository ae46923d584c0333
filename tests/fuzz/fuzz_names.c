/* Peer name validation (proto/names.c): 1..63 bytes of [A-Za-z0-9._-], as
 * a counted buffer and as a C string (what protobuf-c hands over). */
#include "fuzz.h"

#include <string.h>

#include "names.h"

static bool reference(const uint8_t *s, size_t len)
{
    if (len < 1 || len > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", s[i]) ||
            s[i] == 0)
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool ok = name_valid((const char *)data, size);
    FUZZ_CHECK(ok == reference(data, size));
    /* as a C string: everything up to the first NUL */
    char *s = malloc(size + 1);
    FUZZ_CHECK(s);
    memcpy(s, data, size);
    s[size] = 0;
    size_t sl = strlen(s);
    FUZZ_CHECK(name_valid_cstr(s) == reference(data, sl));
    if (name_valid_cstr(s))
        FUZZ_CHECK(sl <= NAME_MAX_LEN); /* registry.c strcpy()s it into NAME_MAX_LEN + 1 */
    free(s);
    FUZZ_CHECK(!name_valid_cstr(NULL) && !name_valid(NULL, size));
    return 0;
}
