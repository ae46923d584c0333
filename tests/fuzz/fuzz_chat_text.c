/* punchline-chat prints what the remote peer sends (examples/chat,
 * chat_sanitize): whatever the bytes, the printed line holds no terminal
 * control character (C0 but tab, DEL, UTF-8 C1), is as long as the input
 * minus one byte per C1 pair, and keeps every other byte. */
#include "fuzz.h"

#include <string.h>

#include "sanitize.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *out = malloc(size + 1);
    FUZZ_CHECK(out);
    chat_sanitize(data, size, out);
    size_t n = strlen(out), c1 = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)out[i];
        FUZZ_CHECK(b >= 32 || b == '\t');
        FUZZ_CHECK(b != 127);
        FUZZ_CHECK(!(b == 0xC2 && i + 1 < n && (uint8_t)out[i + 1] >= 0x80 &&
                     (uint8_t)out[i + 1] <= 0x9F));
    }
    for (size_t i = 0; i + 1 < size; i++)
        if (data[i] == 0xC2 && data[i + 1] >= 0x80 && data[i + 1] <= 0x9F) {
            c1++;
            i++;
        }
    FUZZ_CHECK(n == size - c1);
    free(out);
    return 0;
}
